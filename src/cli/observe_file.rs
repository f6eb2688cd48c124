//! `plumbline observe --file FILE`: many observations at once, from CSV
//! (header `metric,value,at`) or JSON lines (`{"metric":..,"value":..,"at":..}`).
//!
//! `RecordObservations` is all or nothing per call, and a data export has a
//! bad line now and then; one bad line must not cost the others. So the
//! file is read and checked line by line first (parsing here, the metric
//! ids against the server's list), then sent in batches within the server's
//! bounds; a batch the server refuses has the lines its field violations
//! name (`observations[i].value`) taken out and is sent again. Every refused
//! line is reported with its line number, field and reason, and any refusal
//! makes the command exit 1 after the rest is recorded.
//!
//! Parsing is split from I/O ([`parse`] takes the text) so that it is tested
//! without a server.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;

use anyhow::{Context, Result};
use clap::ValueEnum;
use prost::Message;
use serde_json::{Value, json};

use super::Conn;
use super::args;
use super::client::{all_pages, connect, metric_row, rpc_error};
use super::output::print_rows;
use crate::proto as pb;
use pb::value_model_service_client::ValueModelServiceClient;

/// Most observations one call carries: the server's bound.
const BATCH: usize = 10_000;
/// Most encoded bytes one call carries, well under gRPC's 4 MiB default.
const BATCH_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FileFormat {
    /// Comma-separated, header `metric,value,at` (`at` optional).
    Csv,
    /// One JSON object per line: {"metric": "conv", "value": 2.3, "at": "2026-11-20"}.
    Jsonl,
}

/// One observation read from the file, with the line it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub line: u64,
    pub observation: pb::Observation,
}

/// A line that was not recorded, and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Refusal {
    pub line: u64,
    /// `metric`, `value`, `at`, or `line` for the line as a whole.
    pub field: String,
    pub reason: String,
}

impl Refusal {
    fn new(line: u64, field: &str, reason: impl Into<String>) -> Self {
        Refusal {
            line,
            field: field.to_string(),
            reason: reason.into(),
        }
    }
}

/// The format `--format` names, or the one the file's extension implies.
fn format_of(path: &Path, format: Option<FileFormat>) -> FileFormat {
    if let Some(f) = format {
        return f;
    }
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("csv") => FileFormat::Csv,
        Some("jsonl" | "ndjson" | "json") => FileFormat::Jsonl,
        _ => args::usage_error(
            &["observe"],
            format!(
                "--file {}: cannot tell the format from the extension; name it with --format csv or --format jsonl",
                path.display()
            ),
        ),
    }
}

/// Reads every line of `text` as `format`: the observations, and the lines
/// refused with their reasons.
/// The largest file `observe --file` reads (256 MiB, millions of lines).
pub const MAX_FILE_BYTES: u64 = 256 << 20;

pub fn parse(text: &str, format: FileFormat) -> (Vec<Line>, Vec<Refusal>) {
    // Spreadsheets and some editors write a byte order mark first (the csv
    // crate skips it itself; serde_json would not).
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let (lines, mut refused) = match format {
        FileFormat::Csv => parse_csv(text),
        FileFormat::Jsonl => parse_jsonl(text),
    };
    // One observation per (metric, time): the server keeps the last, so a
    // second line for the same time would silently replace the first. Lines
    // without `at` are all "now", one time for the whole call.
    let mut first: HashMap<(String, Option<(i64, i32)>), u64> = HashMap::new();
    let mut kept = Vec::with_capacity(lines.len());
    for l in lines {
        let t = l.observation.observe_time.map(|t| (t.seconds, t.nanos));
        let k = (l.observation.metric_id.clone(), t);
        match first.get(&k) {
            Some(earlier) => refused.push(Refusal::new(
                l.line,
                "at",
                if t.is_some() {
                    format!(
                        "line {earlier} already has an observation of {:?} at this time",
                        l.observation.metric_id
                    )
                } else {
                    format!(
                        "line {earlier} already has an observation of {:?} without `at`; \
                         both would be recorded at the server's now, one replacing the \
                         other: give each line its time",
                        l.observation.metric_id
                    )
                },
            )),
            None => {
                first.insert(k, l.line);
                kept.push(l);
            }
        }
    }
    (kept, refused)
}

/// One observation from its three fields as text; `at` empty means now.
fn observation(line: u64, metric: &str, value: &str, at: &str) -> Result<Line, Vec<Refusal>> {
    let mut refused = Vec::new();
    if metric.is_empty() {
        refused.push(Refusal::new(line, "metric", "is required"));
    }
    let value = match value.parse::<f64>() {
        Ok(v) if v.is_finite() => Some(v),
        Ok(_) => {
            refused.push(Refusal::new(line, "value", "must be a finite number"));
            None
        }
        Err(_) if value.is_empty() => {
            refused.push(Refusal::new(line, "value", "is required"));
            None
        }
        Err(_) => {
            refused.push(Refusal::new(
                line,
                "value",
                format!("{value:?} is not a number"),
            ));
            None
        }
    };
    let at = if at.is_empty() {
        None
    } else {
        match args::time(at) {
            Ok(t) => Some(t),
            Err(e) => {
                refused.push(Refusal::new(line, "at", e));
                None
            }
        }
    };
    match value {
        Some(value) if refused.is_empty() => Ok(Line {
            line,
            observation: pb::Observation {
                metric_id: metric.to_string(),
                value,
                observe_time: at,
            },
        }),
        _ => Err(refused),
    }
}

fn parse_csv(text: &str) -> (Vec<Line>, Vec<Refusal>) {
    let mut out = Vec::new();
    let mut refused = Vec::new();
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = match reader.headers() {
        Ok(h) => h.clone(),
        Err(e) => {
            refused.push(Refusal::new(
                1,
                "line",
                format!("cannot read the header: {e}"),
            ));
            return (out, refused);
        }
    };
    let col = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let (Some(metric), Some(value)) = (col("metric"), col("value")) else {
        refused.push(Refusal::new(
            1,
            "line",
            format!(
                "the header must name the columns metric and value (and optionally at), e.g. metric,value,at; it reads {:?}",
                headers.iter().collect::<Vec<_>>().join(",")
            ),
        ));
        return (out, refused);
    };
    let at = col("at");
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                refused.push(Refusal::new(line, "line", e.to_string()));
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        if record.iter().all(str::is_empty) {
            continue;
        }
        if record.len() != headers.len() {
            refused.push(Refusal::new(
                line,
                "line",
                format!(
                    "has {} fields where the header has {}",
                    record.len(),
                    headers.len()
                ),
            ));
            continue;
        }
        let field = |i: Option<usize>| i.and_then(|i| record.get(i)).unwrap_or_default();
        match observation(line, field(Some(metric)), field(Some(value)), field(at)) {
            Ok(l) => out.push(l),
            Err(r) => refused.extend(r),
        }
    }
    (out, refused)
}

fn parse_jsonl(text: &str) -> (Vec<Line>, Vec<Refusal>) {
    let mut out = Vec::new();
    let mut refused = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i as u64 + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let obj = match serde_json::from_str::<Value>(raw) {
            Ok(Value::Object(o)) => o,
            Ok(_) => {
                refused.push(Refusal::new(
                    line,
                    "line",
                    "is not a JSON object such as {\"metric\": \"conv\", \"value\": 2.3}",
                ));
                continue;
            }
            Err(e) => {
                refused.push(Refusal::new(line, "line", format!("is not JSON: {e}")));
                continue;
            }
        };
        if let Some(k) = obj
            .keys()
            .find(|k| !["metric", "value", "at"].contains(&k.as_str()))
        {
            refused.push(Refusal::new(
                line,
                k,
                "is not a field of an observation (metric, value, at)",
            ));
            continue;
        }
        let text_of = |key: &str| -> Result<String, Refusal> {
            match obj.get(key) {
                None | Some(Value::Null) => Ok(String::new()),
                Some(Value::String(s)) => Ok(s.trim().to_string()),
                // A value may be written as a number or a string.
                Some(Value::Number(n)) if key == "value" => Ok(n.to_string()),
                Some(_) => Err(Refusal::new(
                    line,
                    key,
                    if key == "value" {
                        "must be a number"
                    } else {
                        "must be a string"
                    },
                )),
            }
        };
        let fields = (text_of("metric"), text_of("value"), text_of("at"));
        let (metric, value, at) = match fields {
            (Ok(m), Ok(v), Ok(a)) => (m, v, a),
            (m, v, a) => {
                refused.extend([m.err(), v.err(), a.err()].into_iter().flatten());
                continue;
            }
        };
        match observation(line, &metric, &value, &at) {
            Ok(l) => out.push(l),
            Err(r) => refused.extend(r),
        }
    }
    (out, refused)
}

/// Splits `lines` into batches of at most [`BATCH`] observations and
/// [`BATCH_BYTES`] encoded bytes.
fn batches(lines: Vec<Line>) -> Vec<Vec<Line>> {
    let mut out: Vec<Vec<Line>> = Vec::new();
    let mut bytes = 0;
    for l in lines {
        let size = l.observation.encoded_len() + 4;
        match out.last_mut() {
            Some(b) if b.len() < BATCH && bytes + size <= BATCH_BYTES => {
                bytes += size;
                b.push(l);
            }
            _ => {
                bytes = size;
                out.push(vec![l]);
            }
        }
    }
    out
}

/// The API's name of an observation field as the file's column.
fn column(api_field: &str) -> &str {
    match api_field {
        "metric_id" => "metric",
        "observe_time" => "at",
        "value" => "value",
        _ => "line",
    }
}

/// The lines of `batch` that the server's refusal names, with the reasons;
/// empty when it names none.
fn named_refusals(status: &tonic::Status, batch: &[Line]) -> Vec<(usize, Refusal)> {
    use tonic_types::StatusExt;
    let line_of = |i: usize| batch.get(i).map(|l| l.line);
    // `observations[12].value` -> (12, "value").
    let index = |s: &str| -> Option<(usize, String)> {
        let rest = s.strip_prefix("observations[")?;
        let (i, rest) = rest.split_once(']')?;
        let field = rest.trim_start_matches('.').split([':', ' ']).next()?;
        Some((i.parse().ok()?, field.to_string()))
    };
    let mut out = Vec::new();
    if let Some(br) = status.get_details_bad_request() {
        for v in br.field_violations {
            if let Some((i, f)) = index(&v.field)
                && let Some(line) = line_of(i)
            {
                out.push((i, Refusal::new(line, column(&f), v.description)));
            }
        }
    } else if let Some((i, _)) = index(status.message())
        && let Some(line) = line_of(i)
    {
        // NOT_FOUND "observations[3]: metric "x" not found": a metric
        // deleted since the check.
        let reason = status
            .message()
            .split_once(": ")
            .map_or(status.message(), |(_, r)| r);
        out.push((i, Refusal::new(line, "metric", reason)));
    }
    out
}

pub async fn run(path: &Path, format: Option<FileFormat>, conn: &Conn) -> Result<()> {
    let format = format_of(path, format);
    // The file is read whole; a bound keeps that honest on a laptop.
    if let Ok(meta) = std::fs::metadata(path)
        && meta.len() > MAX_FILE_BYTES
    {
        anyhow::bail!(
            "--file {} is {} bytes; at most {MAX_FILE_BYTES} are read at once: split it",
            path.display(),
            meta.len()
        );
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read --file {}", path.display()))?;
    let (lines, mut refused) = parse(&text, format);
    let total = lines.len()
        + refused
            .iter()
            .map(|r| r.line)
            .collect::<BTreeSet<_>>()
            .len();

    let c = ValueModelServiceClient::new(connect(&conn.server).await?);
    let known: HashSet<String> = all_pages(
        0,
        |page_token| {
            let mut c = c.clone();
            let req = pb::ListMetricsRequest {
                page_size: 1000,
                page_token,
            };
            async move { c.list_metrics(req).await }
        },
        |r: pb::ListMetricsResponse| (r.metrics, r.next_page_token),
    )
    .await?
    .into_iter()
    .map(|m| m.id)
    .collect();
    let (lines, unknown): (Vec<Line>, Vec<Line>) = lines
        .into_iter()
        .partition(|l| known.contains(&l.observation.metric_id));
    refused.extend(unknown.into_iter().map(|l| {
        Refusal::new(
            l.line,
            "metric",
            format!(
                "no metric with id {:?} (`plumbline metrics` lists them)",
                l.observation.metric_id
            ),
        )
    }));

    let mut recorded = 0usize;
    let mut metrics: std::collections::BTreeMap<String, pb::Metric> = Default::default();
    let mut c = c;
    for mut batch in batches(lines) {
        while !batch.is_empty() {
            let req = pb::RecordObservationsRequest {
                observations: batch.iter().map(|l| l.observation.clone()).collect(),
            };
            match c.record_observations(req).await {
                Ok(r) => {
                    let r = r.into_inner();
                    recorded += r.recorded_count.max(0) as usize;
                    for m in r.metrics {
                        metrics.insert(m.id.clone(), m);
                    }
                    break;
                }
                Err(status) => {
                    let named = named_refusals(&status, &batch);
                    if named.is_empty() {
                        // Nothing to take out: the batch as a whole was
                        // refused (or the connection failed).
                        if matches!(
                            status.code(),
                            tonic::Code::InvalidArgument
                                | tonic::Code::NotFound
                                | tonic::Code::FailedPrecondition
                        ) {
                            let reason =
                                super::status::describe(&status, super::status::Doing::Call);
                            refused.extend(
                                batch
                                    .iter()
                                    .map(|l| Refusal::new(l.line, "line", reason.clone())),
                            );
                            break;
                        }
                        return Err(rpc_error(status)).with_context(|| {
                            format!(
                                "{recorded} observations were recorded before the error; running the file again records the lines with `at` once more, harmlessly (an observation at the same time replaces the old one), and those without `at` again at a new now"
                            )
                        });
                    }
                    let out: HashSet<usize> = named.iter().map(|(i, _)| *i).collect();
                    refused.extend(named.into_iter().map(|(_, r)| r));
                    batch = batch
                        .into_iter()
                        .enumerate()
                        .filter(|(i, _)| !out.contains(i))
                        .map(|(_, l)| l)
                        .collect();
                }
            }
        }
    }
    refused.sort();
    refused.dedup();
    let refused_lines = refused
        .iter()
        .map(|r| r.line)
        .collect::<BTreeSet<_>>()
        .len();
    let file = path.display();
    if conn.json {
        let out = json!({
            "file": file.to_string(),
            "recorded_count": recorded,
            "refused_line_count": refused_lines,
            "refused": refused.iter().map(|r| json!({"line": r.line, "field": r.field, "reason": r.reason})).collect::<Vec<_>>(),
            "metrics": metrics.values().map(metric_row).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for r in &refused {
            eprintln!("{file}:{}: {}: {}", r.line, r.field, r.reason);
        }
        if !metrics.is_empty() {
            let rows: Vec<Value> = metrics.values().map(metric_row).collect();
            print_rows(false, &rows, super::client::METRIC_COLUMNS);
        }
        println!(
            "recorded {recorded} observations of {} metrics from {file}; refused {refused_lines} of {total} lines",
            metrics.len()
        );
    }
    if refused_lines > 0 {
        anyhow::bail!(
            "{refused_lines} of {total} lines of {file} were refused (each is listed above)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_lines_are_read_or_refused_with_line_and_field() {
        let text = "metric,value,at\n\
                    conv,2.3,2026-11-20\n\
                    conv,abc,2026-11-21\n\
                    ,1,\n\
                    lead,7,yesterday\n\
                    lead,6\n\
                    \"nps\",\"41.5\",2026-11-22T10:00:00Z\n";
        let (lines, refused) = parse(text, FileFormat::Csv);
        assert_eq!(
            lines.iter().map(|l| l.line).collect::<Vec<_>>(),
            [2, 7],
            "{refused:?}"
        );
        assert_eq!(lines[1].observation.metric_id, "nps");
        assert_eq!(lines[1].observation.value, 41.5);
        let got: Vec<(u64, &str)> = refused.iter().map(|r| (r.line, r.field.as_str())).collect();
        assert_eq!(got, [(3, "value"), (4, "metric"), (5, "at"), (6, "line")]);
        assert!(refused[0].reason.contains("\"abc\" is not a number"));
    }

    #[test]
    fn a_csv_without_the_columns_is_refused_at_its_header() {
        let (lines, refused) = parse("name,amount\nconv,1\n", FileFormat::Csv);
        assert!(lines.is_empty());
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].line, 1);
        assert!(refused[0].reason.contains("metric and value"));
        // `at` is optional (now), the order free.
        let (lines, refused) = parse("value,metric\n2,conv\n", FileFormat::Csv);
        assert!(refused.is_empty());
        assert_eq!(lines[0].observation.observe_time, None);
        // A spreadsheet's byte order mark and CRLF line ends.
        let (lines, refused) = parse(
            "\u{feff}metric,value,at\r\nconv,2,2026-11-20\r\n",
            FileFormat::Csv,
        );
        assert!(refused.is_empty(), "{refused:?}");
        assert_eq!(lines[0].observation.value, 2.0);
    }

    #[test]
    fn json_lines_are_read_or_refused_with_line_and_field() {
        let text = "{\"metric\":\"conv\",\"value\":2.3,\"at\":\"2026-11-20\"}\n\
                    \n\
                    {\"metric\":\"conv\",\"value\":\"x\"}\n\
                    not json\n\
                    {\"metric\":\"conv\",\"value\":1,\"when\":\"today\"}\n\
                    {\"metric\":\"conv\",\"value\":true}\n\
                    {\"metric\":\"lead\",\"value\":\"7\"}\n";
        let (lines, refused) = parse(text, FileFormat::Jsonl);
        assert_eq!(lines.iter().map(|l| l.line).collect::<Vec<_>>(), [1, 7]);
        let (bom, none) = parse(&format!("\u{feff}{text}"), FileFormat::Jsonl);
        assert_eq!((bom.len(), none.len()), (2, 4), "{none:?}");
        let got: Vec<(u64, &str)> = refused.iter().map(|r| (r.line, r.field.as_str())).collect();
        assert_eq!(got, [(3, "value"), (4, "line"), (5, "when"), (6, "value")]);
    }

    #[test]
    fn a_second_line_for_the_same_metric_and_time_is_refused_naming_the_first() {
        let text = "metric,value,at\n\
                    conv,1,2026-11-20\n\
                    lead,5,2026-11-20\n\
                    conv,2,2026-11-20T00:00:00Z\n\
                    conv,3,2026-11-21\n";
        let (lines, refused) = parse(text, FileFormat::Csv);
        assert_eq!(lines.iter().map(|l| l.line).collect::<Vec<_>>(), [2, 3, 5]);
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert_eq!((refused[0].line, refused[0].field.as_str()), (4, "at"));
        assert!(
            refused[0].reason.contains("line 2 already has"),
            "{refused:?}"
        );
    }

    #[test]
    fn batches_stay_within_the_server_bounds() {
        let line = |i: u64| Line {
            line: i,
            observation: pb::Observation {
                metric_id: "m".repeat(64),
                value: 1.0,
                observe_time: None,
            },
        };
        let b = batches((0..25_000).map(line).collect());
        assert!(b.iter().all(|b| b.len() <= BATCH));
        assert!(b.iter().all(|b| {
            b.iter()
                .map(|l| l.observation.encoded_len() + 4)
                .sum::<usize>()
                <= BATCH_BYTES
        }));
        assert_eq!(b.iter().map(Vec::len).sum::<usize>(), 25_000);
    }
}
