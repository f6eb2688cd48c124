//! The csv kind: `at,value` rows (a header row is allowed) from a local file
//! under the server's `[pulls] csv_dir`, or from an http(s) URL through the
//! shared client. The csv crate reads the rows (quoting, CRLF).

use std::path::Path;

use super::{Batch, FetchError, RawPoint, get, parse_time, request_url};
use crate::domain::{CsvSpec, Time};
use crate::sync::http::HttpClient;

const KIND: &str = "csv";

/// The most bytes of a local file read.
const MAX_FILE_BYTES: u64 = 64 << 20;

/// One csv source with what it fetches through.
pub struct Csv<'a> {
    pub spec: &'a CsvSpec,
    pub http: &'a HttpClient,
    pub label: &'a str,
    /// Where local files may be; `None`: none may be read.
    pub csv_dir: Option<&'a Path>,
}

impl Csv<'_> {
    pub async fn fetch(&self, since: Option<Time>, now: Time) -> Result<Vec<RawPoint>, FetchError> {
        Ok(self.fetch_batch(since, now).await?.points)
    }

    pub async fn fetch_batch(&self, since: Option<Time>, _now: Time) -> Result<Batch, FetchError> {
        let loc = self.spec.location.trim();
        let body = if loc.starts_with("http://") || loc.starts_with("https://") {
            let url = request_url(KIND, loc, self.spec.since_param.as_deref(), since)?;
            get(self.http, KIND, self.label, &url, &[]).await?.body
        } else {
            let path = self.allowed(loc)?;
            tokio::task::spawn_blocking(move || read_bounded(&path))
                .await
                .map_err(|e| FetchError::File {
                    kind: KIND,
                    path: loc.to_string(),
                    cause: e.to_string(),
                })?
                .map_err(|cause| FetchError::File {
                    kind: KIND,
                    path: loc.to_string(),
                    cause,
                })?
        };
        parse(&body)
    }

    /// The file's real path, if it lies under the allowed directory: a
    /// caller who may write metrics must not read any file of the server.
    fn allowed(&self, loc: &str) -> Result<std::path::PathBuf, FetchError> {
        let Some(dir) = self.csv_dir else {
            return Err(FetchError::Config {
                kind: KIND,
                detail: "local files are off on this server: set [pulls] csv_dir to the directory they may be read from, or give an http(s) URL".into(),
            });
        };
        let file = |cause: String| FetchError::File {
            kind: KIND,
            path: loc.to_string(),
            cause,
        };
        let dir = dir.canonicalize().map_err(|e| {
            file(format!(
                "the csv_dir {} is not readable: {e}",
                dir.display()
            ))
        })?;
        let asked = Path::new(loc);
        let asked = if asked.is_absolute() {
            asked.to_path_buf()
        } else {
            dir.join(asked)
        };
        // First by the path's text alone, so that asking for a file
        // elsewhere says nothing of whether it exists (a missing one and a
        // present one answer alike), then for real, symlinks resolved.
        let mut lexical = std::path::PathBuf::new();
        for c in asked.components() {
            match c {
                std::path::Component::ParentDir => {
                    lexical.pop();
                }
                std::path::Component::CurDir => {}
                other => lexical.push(other),
            }
        }
        let real = if lexical.starts_with(&dir) {
            asked.canonicalize().map_err(|e| file(e.to_string()))?
        } else {
            lexical
        };
        if !real.starts_with(&dir) {
            return Err(FetchError::Config {
                kind: KIND,
                detail: format!(
                    "{} is outside the server's csv_dir; only files under it may be read",
                    crate::engine::quote(loc)
                ),
            });
        }
        Ok(real)
    }
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    f.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| e.to_string())?;
    if out.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("larger than {MAX_FILE_BYTES} bytes"));
    }
    Ok(out)
}

/// The rows of a CSV body: `at,value`, a header row allowed (a first row
/// whose time does not read is taken as one). Pure.
pub fn parse(body: &[u8]) -> Result<Batch, FetchError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(body);
    let mut batch = Batch::default();
    for (i, row) in reader.records().enumerate() {
        let row = row.map_err(|e| FetchError::Malformed {
            kind: KIND,
            cause: format!("not CSV: {e}"),
        })?;
        let line = row.position().map(|p| p.line()).unwrap_or(i as u64 + 1);
        let (Some(at), Some(value)) = (row.get(0), row.get(1)) else {
            batch.push_unreadable(format!("line {line}: expected two columns, at and value"));
            continue;
        };
        let Some(t) = parse_time(at) else {
            if i == 0 {
                continue; // a header row
            }
            batch.push_unreadable(format!(
                "line {line}: {} is not a time",
                crate::engine::quote(at)
            ));
            continue;
        };
        match value.parse::<f64>() {
            Ok(v) => batch.points.push(RawPoint { at: t, value: v }),
            Err(_) => batch.push_unreadable(format!(
                "line {line}: {} is not a number",
                crate::engine::quote(value)
            )),
        }
        if batch.points.len() + batch.unreadable.len() > super::MAX_POINTS {
            return Err(FetchError::TooMany {
                kind: KIND,
                max: super::MAX_POINTS,
            });
        }
    }
    Ok(batch)
}
