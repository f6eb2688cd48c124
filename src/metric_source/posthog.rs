//! The posthog kind: a HogQL or trend query through PostHog's query API,
//! `POST {base_url}/api/projects/{project_id}/query/` with a personal API
//! key as `Authorization: Bearer` (PostHog's API docs, "API queries").
//!
//! A HogQL query answers `{"columns": [...], "results": [[time, value],
//! ...], ...}`; the first two columns are the point. `{since}` in the query
//! is a HogQL placeholder, given in the request's `values`. A trend
//! (`TrendsQuery`, daily) answers `{"results": [{"days": [...], "data":
//! [...], ...}]}`; its date range starts at the last stored observation.

use serde_json::json;

use super::{
    Batch, FetchError, RawPoint, json_time, post_json, secret, secret_header, shown, since_text,
};
use crate::domain::{PosthogSpec, Time};
use crate::sync::http::HttpClient;

const KIND: &str = "posthog";

/// One PostHog source with the client it fetches through.
pub struct Posthog<'a> {
    pub spec: &'a PosthogSpec,
    pub http: &'a HttpClient,
    pub label: &'a str,
}

impl Posthog<'_> {
    pub async fn fetch(&self, since: Option<Time>, now: Time) -> Result<Vec<RawPoint>, FetchError> {
        Ok(self.fetch_batch(since, now).await?.points)
    }

    pub async fn fetch_batch(&self, since: Option<Time>, _now: Time) -> Result<Batch, FetchError> {
        let s = self.spec;
        let key = secret(self.http, KIND, &s.api_key_env)?;
        let url = reqwest::Url::parse(s.base_url.trim())
            .and_then(|u| u.join(&format!("api/projects/{}/query/", s.project_id)))
            .map_err(|e| FetchError::Config {
                kind: KIND,
                detail: format!("base_url and project_id do not make a URL: {e}"),
            })?;
        let headers = vec![(
            reqwest::header::AUTHORIZATION,
            secret_header(KIND, &format!("Bearer {key}"))?,
        )];
        let body = request_body(s, since);
        let fetched = post_json(self.http, KIND, self.label, &url, &headers, &body).await?;
        parse(s, &fetched.body)
    }
}

/// The query the settings ask, starting at `since`. Pure.
pub fn request_body(s: &PosthogSpec, since: Option<Time>) -> serde_json::Value {
    // Before any observation: everything PostHog keeps (its default
    // retention is years, not decades).
    let since_s = since
        .map(since_text)
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into());
    if let Some(q) = &s.hogql {
        json!({
            "query": {"kind": "HogQLQuery", "query": q, "values": {"since": since_s}},
            "name": "plumbline metric pull",
        })
    } else {
        let event = s.trend_event.clone().unwrap_or_default();
        let math = s.trend_math.clone().unwrap_or_else(|| "total".into());
        let date_from = since
            .map(|t| t.format("%Y-%m-%d").to_string())
            .unwrap_or_else(|| "all".into());
        json!({
            "query": {
                "kind": "TrendsQuery",
                "series": [{"kind": "EventsNode", "event": event, "math": math}],
                "interval": "day",
                "dateRange": {"date_from": date_from},
            },
            "name": "plumbline metric pull",
        })
    }
}

fn malformed(cause: impl Into<String>) -> FetchError {
    FetchError::Malformed {
        kind: KIND,
        cause: cause.into(),
    }
}

/// The points of PostHog's answer. Pure.
pub fn parse(s: &PosthogSpec, body: &[u8]) -> Result<Batch, FetchError> {
    let doc: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| malformed(format!("not JSON: {e}")))?;
    let results = doc
        .get("results")
        .and_then(|r| r.as_array())
        .ok_or_else(|| malformed("no results array"))?;
    let mut batch = Batch::default();
    let mut push = |i: usize, t: Option<&serde_json::Value>, v: Option<&serde_json::Value>| {
        let Some(at) = t.and_then(json_time) else {
            batch.push_unreadable(format!(
                "row [{i}]: {} is not a time",
                t.map(shown).unwrap_or_else(|| "missing".into())
            ));
            return;
        };
        match v.and_then(|v| v.as_f64()) {
            Some(value) => batch.points.push(RawPoint { at, value }),
            None => batch.push_unreadable(format!(
                "row [{i}]: {} is not a number",
                v.map(shown).unwrap_or_else(|| "missing".into())
            )),
        }
    };
    if s.hogql.is_some() {
        if results.len() > super::MAX_POINTS {
            return Err(FetchError::TooMany {
                kind: KIND,
                max: super::MAX_POINTS,
            });
        }
        for (i, row) in results.iter().enumerate() {
            let row = row
                .as_array()
                .ok_or_else(|| malformed(format!("row [{i}] is not an array")))?;
            push(i, row.first(), row.get(1));
        }
    } else {
        let series = results
            .first()
            .ok_or_else(|| malformed("the trend has no series"))?;
        let days = series
            .get("days")
            .and_then(|d| d.as_array())
            .ok_or_else(|| malformed("the trend's series has no days"))?;
        let data = series
            .get("data")
            .and_then(|d| d.as_array())
            .ok_or_else(|| malformed("the trend's series has no data"))?;
        if days.len() != data.len() {
            return Err(malformed("the trend's days and data differ in length"));
        }
        if days.len() > super::MAX_POINTS {
            return Err(FetchError::TooMany {
                kind: KIND,
                max: super::MAX_POINTS,
            });
        }
        for (i, (d, v)) in days.iter().zip(data).enumerate() {
            push(i, Some(d), Some(v));
        }
    }
    Ok(batch)
}
