//! The http_json kind: GET a URL that answers JSON; an RFC 6901 JSON Pointer
//! (serde_json's `Value::pointer`) names the array of points, each an
//! object with a time field and a value field.

use super::{
    Batch, FetchError, RawPoint, get, json_time, request_url, secret, secret_header, shown,
};
use crate::domain::{HttpJsonSpec, Time};
use crate::sync::http::HttpClient;

const KIND: &str = "http_json";

/// One http_json source with the client it fetches through.
pub struct HttpJson<'a> {
    pub spec: &'a HttpJsonSpec,
    pub http: &'a HttpClient,
    /// Who fetches, for the client's logs ("metric conversion").
    pub label: &'a str,
}

impl HttpJson<'_> {
    /// The points the source answers (asking only for those since `since`
    /// when the settings name a query parameter for it).
    pub async fn fetch(&self, since: Option<Time>, now: Time) -> Result<Vec<RawPoint>, FetchError> {
        Ok(self.fetch_batch(since, now).await?.points)
    }

    /// As [`fetch`](Self::fetch), with the points that could not be read.
    pub async fn fetch_batch(&self, since: Option<Time>, _now: Time) -> Result<Batch, FetchError> {
        let s = self.spec;
        let url = request_url(KIND, &s.url, s.since_param.as_deref(), since)?;
        let mut headers = Vec::new();
        if let (Some(name), Some(var)) = (&s.header_name, &s.header_env) {
            let value = secret(self.http, KIND, var)?;
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                FetchError::Config {
                    kind: KIND,
                    detail: "header_name is not a valid HTTP header name".into(),
                }
            })?;
            headers.push((name, secret_header(KIND, &value)?));
        }
        let fetched = get(self.http, KIND, self.label, &url, &headers).await?;
        parse(s, &fetched.body)
    }
}

/// The points of an answer, as the settings describe them. Pure.
pub fn parse(s: &HttpJsonSpec, body: &[u8]) -> Result<Batch, FetchError> {
    let doc: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| FetchError::Malformed {
            kind: KIND,
            cause: format!("not JSON: {e}"),
        })?;
    let points = doc
        .pointer(&s.points_pointer)
        .ok_or_else(|| FetchError::Malformed {
            kind: KIND,
            cause: format!(
                "nothing at the JSON Pointer {} (points_pointer)",
                crate::engine::quote(&s.points_pointer)
            ),
        })?
        .as_array()
        .ok_or_else(|| FetchError::Malformed {
            kind: KIND,
            cause: format!(
                "the value at the JSON Pointer {} is not an array (points_pointer)",
                crate::engine::quote(&s.points_pointer)
            ),
        })?;
    if points.len() > super::MAX_POINTS {
        return Err(FetchError::TooMany {
            kind: KIND,
            max: super::MAX_POINTS,
        });
    }
    let mut batch = Batch::default();
    for (i, p) in points.iter().enumerate() {
        let Some(at) = p.get(&s.time_field).and_then(json_time) else {
            batch.push_unreadable(format!(
                "point [{i}]: field {} is not a time: {}",
                crate::engine::quote(&s.time_field),
                p.get(&s.time_field)
                    .map(shown)
                    .unwrap_or_else(|| "missing".into())
            ));
            continue;
        };
        match p.get(&s.value_field) {
            Some(serde_json::Value::Number(n)) => match n.as_f64() {
                Some(value) => batch.points.push(RawPoint { at, value }),
                None => batch.push_unreadable(format!("point [{i}]: value {n} is not a number")),
            },
            other => batch.push_unreadable(format!(
                "point [{i}]: field {} is not a number: {}",
                crate::engine::quote(&s.value_field),
                other.map(shown).unwrap_or_else(|| "missing".into())
            )),
        }
    }
    Ok(batch)
}
