//! The `prometheus` metric source: one PromQL expression evaluated over
//! Prometheus' HTTP API (`GET /api/v1/query_range`), one point per step.
//!
//! Shaped by how Prometheus evaluates a range query: it evaluates the
//! expression at `start`, `start + step`, ... up to `end`, so the points
//! fall on the grid that `start` sets. `start` is therefore aligned to a
//! multiple of the step since the Unix epoch (with a step of 1d: midnight
//! UTC), whatever `since` is, so two pulls see the same evaluation times
//! and an incremental pull asks for the grid times from `since` on: the
//! last stored point again (a value corrected since replaces it; the same
//! value is not stored twice), then only what is new.
//! Prometheus answers at most 11,000 points per series, so a pull reaches
//! at most [`MAX_STEPS`] steps back. The answer is Prometheus' documented
//! JSON (`status`, `data.resultType` = `matrix`, `values` as
//! `[unix_seconds, "text"]`, where the text may be `NaN`, `+Inf` or `-Inf`;
//! errors as `status: error` with `errorType` and `error`). An expression
//! that yields more than one series is an error naming it: which series is
//! the metric is the user's choice (aggregate with `sum`, or filter by
//! label), not ours.
//!
//! HTTP goes through the shared polite client ([`HttpClient`]: timeouts,
//! retries with backoff, rate limits waited out, the outbound policy on
//! every address), as the trackers' does. Credentials come from named
//! environment variables the outbound policy allows, are marked sensitive
//! in the header, and are scrubbed from every message.

use std::time::Duration;

use base64::Engine as _;
use reqwest::Url;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

use super::{FetchError, RawPoint};
use crate::domain::{Source, Time};
use crate::sync::http::{Fetched, HttpClient};
use crate::sync::{Connector, Page, SyncError};

/// The most steps one pull spans: Prometheus refuses a range query of more
/// than 11,000 points per series.
pub const MAX_STEPS: i64 = 11_000;

/// The largest answer read, in bytes. One series of [`MAX_STEPS`] points
/// is well under 1 MiB; more means the query or the server is not what the
/// source says.
pub const MAX_ANSWER_BYTES: usize = 8 << 20;

/// The longest expression sent: it travels in the URL, and Prometheus (Go's
/// HTTP server) refuses request heads above 1 MiB.
pub const MAX_QUERY_BYTES: usize = 16 << 10;

/// The look-back of a first pull (no stored observation yet), unless the
/// spec says otherwise; bounded by [`MAX_STEPS`] steps.
pub const DEFAULT_LOOKBACK: Duration = Duration::from_secs(90 * 86_400);

const KIND: &str = "prometheus";

/// How a request authenticates: the secret is read from the named
/// environment variable at each pull, never stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpAuth {
    /// `Authorization: Bearer <value of token_env>`.
    Bearer { token_env: String },
    /// `Authorization: Basic base64(username:<value of password_env>)`.
    Basic {
        username: String,
        password_env: String,
    },
}

/// One metric's Prometheus settings, with the client that fetches them.
#[derive(Debug, Clone)]
pub struct PrometheusSpec {
    /// The server's root (`https://prometheus.example.com` or with a path
    /// prefix such as `/prometheus`); `/api/v1/query_range` is appended.
    pub base_url: Url,
    /// The PromQL expression; it must yield one series.
    pub query: String,
    /// The resolution: a whole number of seconds, at least one.
    pub step: Duration,
    /// How far back a first pull reaches.
    pub lookback: Duration,
    pub auth: Option<HttpAuth>,
    /// The shared polite client; its outbound policy decides the addresses
    /// and the variables.
    pub http: HttpClient,
}

/// Reads a step as people write it (`1d`, `6h`, `15m`): a whole number of
/// seconds, at least one second, at most one year.
pub fn parse_step(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text.trim())
        .map_err(|e| format!("step {text:?} is not a duration such as 1d, 6h or 15m: {e}"))?;
    if d.subsec_nanos() != 0 || d.as_secs() == 0 || d.as_secs() > 366 * 86_400 {
        return Err(format!(
            "step {text:?} must be a whole number of seconds between 1s and 366d"
        ));
    }
    Ok(d)
}

impl PrometheusSpec {
    /// The points of the query's one series at the grid times after `since`
    /// (or, when `None`, from `now - lookback`) up to `now`, oldest first.
    pub async fn fetch(&self, since: Option<Time>, now: Time) -> Result<Vec<RawPoint>, FetchError> {
        let step = self.step.as_secs() as i64;
        if step == 0 || self.step.subsec_nanos() != 0 {
            return Err(self.error(format!(
                "step must be a whole number of seconds, at least 1s (got {:?})",
                self.step
            )));
        }
        if self.query.trim().is_empty() || self.query.len() > MAX_QUERY_BYTES {
            return Err(self.error(format!(
                "query must be a PromQL expression of 1 to {MAX_QUERY_BYTES} bytes"
            )));
        }
        let Some((start, end)) = window(since, now, step, self.lookback) else {
            return Ok(Vec::new());
        };
        let url = self.url(start, end, step)?;
        let headers = self.headers()?;
        let mut requests = 0;
        let fetched = self
            .http
            .get(&Dialect, KIND, &url, &headers, None, &|_| {}, &mut requests)
            .await
            .map_err(|e| self.http_error(e))?;
        self.parse(&fetched)
    }

    fn url(&self, start: i64, end: i64, step: i64) -> Result<Url, FetchError> {
        let mut url = self.base_url.clone();
        if url.cannot_be_a_base() {
            return Err(self.error(format!("base_url {} is not an http(s) URL", self.base_url)));
        }
        let path = format!("{}/api/v1/query_range", url.path().trim_end_matches('/'));
        url.set_path(&path);
        url.set_query(None);
        url.query_pairs_mut()
            .append_pair("query", &self.query)
            .append_pair("start", &start.to_string())
            .append_pair("end", &end.to_string())
            .append_pair("step", &step.to_string());
        Ok(url)
    }

    /// The auth header, from the environment variable the spec names (one
    /// the outbound policy allows).
    fn headers(&self) -> Result<Vec<(HeaderName, HeaderValue)>, FetchError> {
        let Some(auth) = &self.auth else {
            return Ok(Vec::new());
        };
        let var = match auth {
            HttpAuth::Bearer { token_env } => token_env,
            HttpAuth::Basic { password_env, .. } => password_env,
        };
        self.http
            .outbound()
            .check_token_env(var)
            .map_err(|e| self.error(e.to_string()))?;
        let secret = std::env::var(var).ok().filter(|v| !v.is_empty()).ok_or_else(|| {
            self.error(format!(
                "the environment variable {var} that the source names for its credentials is not set"
            ))
        })?;
        let value = match auth {
            HttpAuth::Bearer { .. } => format!("Bearer {secret}"),
            HttpAuth::Basic { username, .. } => format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{secret}"))
            ),
        };
        let mut value = HeaderValue::from_str(&value).map_err(|_| {
            self.error(format!(
                "the value of {var} cannot go in an HTTP header (a control character or a line break)"
            ))
        })?;
        value.set_sensitive(true);
        Ok(vec![(AUTHORIZATION, value)])
    }

    fn parse(&self, fetched: &Fetched) -> Result<Vec<RawPoint>, FetchError> {
        if fetched.body.len() > MAX_ANSWER_BYTES {
            return Err(self.error(format!(
                "the answer to the query {:?} is {} bytes, more than {MAX_ANSWER_BYTES} this source reads; narrow the query",
                self.query,
                fetched.body.len()
            )));
        }
        let answer: Answer = serde_json::from_slice(&fetched.body).map_err(|e| {
            self.error(format!(
                "{} did not answer with Prometheus' query JSON: {e}",
                self.base_url
            ))
        })?;
        if answer.status != "success" {
            return Err(self.error(format!(
                "Prometheus refused the query {:?}: {}: {}",
                self.query,
                answer.error_type.as_deref().unwrap_or("error"),
                answer.error.as_deref().unwrap_or("no message")
            )));
        }
        let data = answer
            .data
            .ok_or_else(|| self.error("the answer has no data".into()))?;
        if data.result_type != "matrix" {
            return Err(self.error(format!(
                "the query {:?} yields a {}, not a range of values (matrix)",
                self.query, data.result_type
            )));
        }
        let series: Vec<Series> = serde_json::from_value(data.result).map_err(|e| {
            self.error(format!(
                "the answer's series are not Prometheus' matrix: {e}"
            ))
        })?;
        match series.len() {
            0 => return Ok(Vec::new()),
            1 => {}
            n => {
                let labels: Vec<String> =
                    series.iter().take(3).map(|s| labels(&s.metric)).collect();
                return Err(self.error(format!(
                    "the query {:?} yields {n} series ({}{}), a metric needs one; aggregate it (sum(...)) or select one by its labels",
                    self.query,
                    labels.join(", "),
                    if n > 3 { ", ..." } else { "" }
                )));
            }
        }
        let values = &series[0].values;
        if values.len() as i64 > MAX_STEPS + 1 {
            return Err(self.error(format!(
                "the query {:?} answered {} points, more than the {} one pull asks for",
                self.query,
                values.len(),
                MAX_STEPS + 1
            )));
        }
        values
            .iter()
            .map(|(ts, text)| {
                let at = time_of(*ts).ok_or_else(|| {
                    self.error(format!("the answer holds a time out of range: {ts}"))
                })?;
                // Prometheus writes values as Go's strconv.FormatFloat:
                // "NaN", "+Inf", "-Inf" or a decimal, which Rust's parser
                // reads except for the "+Inf" spelling.
                let value = match text.as_str() {
                    "+Inf" => f64::INFINITY,
                    t => t.parse::<f64>().map_err(|_| {
                        self.error(format!(
                            "the answer holds a value that is not a number: {t:?}"
                        ))
                    })?,
                };
                Ok(RawPoint { at, value })
            })
            .collect()
    }

    fn http_error(&self, e: SyncError) -> FetchError {
        let at = self.base_url.as_str();
        // Failures that may pass by themselves (unreachable, 5xx or rate
        // limits past the retries) are the framework's transient kind, as
        // the HTTP kinds' are: UNAVAILABLE, not "change the settings".
        let transient = match &e {
            SyncError::Transport { .. } | SyncError::RateLimited { .. } => true,
            SyncError::Http { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        };
        let message = match e {
            SyncError::Http {
                status, message, ..
            } => format!(
                "Prometheus at {at} answered HTTP {status} to the query {:?}: {message}",
                self.query
            ),
            SyncError::Unauthorized { message, .. } => format!(
                "Prometheus at {at} refused the credentials (401): {message}; check the variable the source's auth names"
            ),
            SyncError::Forbidden { message, .. } => {
                format!("Prometheus at {at} denied access (403): {message}")
            }
            SyncError::NotFound { url, .. } => format!(
                "nothing answers the query API at {url} (404); check base_url (with its path prefix, if Prometheus runs under one)"
            ),
            SyncError::Transport { detail, .. } => {
                format!("Prometheus at {at} could not be reached: {detail}")
            }
            other => other.to_string(),
        };
        if transient {
            return FetchError::Request {
                kind: KIND,
                cause: message,
            };
        }
        self.error(message)
    }

    fn error(&self, message: String) -> FetchError {
        FetchError::Source {
            kind: KIND,
            message,
        }
    }
}

/// The grid times of one pull, as Unix seconds: the first multiple of
/// `step` at or after `since` (or at or after `now - lookback`), at most
/// [`MAX_STEPS`] steps before the last multiple at or before `now`. `None`
/// when no grid time is left.
fn window(since: Option<Time>, now: Time, step: i64, lookback: Duration) -> Option<(i64, i64)> {
    let end = now.timestamp().div_euclid(step) * step;
    let earliest = end - MAX_STEPS * step;
    let start = match since {
        Some(t) if t.timestamp() < earliest => earliest,
        // At `since` itself: the last stored point is asked again, so that
        // a value Prometheus has since corrected (samples that arrived
        // late) replaces it; the same value is not stored twice.
        Some(t) => ceil_to(t.timestamp(), step),
        None => {
            let back = i64::try_from(lookback.as_secs()).unwrap_or(i64::MAX);
            // Clamped first, so that no arithmetic below can overflow.
            let from = now.timestamp().saturating_sub(back).max(earliest);
            ceil_to(from, step)
        }
    };
    let start = start.max(earliest);
    (start <= end).then_some((start, end))
}

/// The first multiple of `step` at or after `t`.
fn ceil_to(t: i64, step: i64) -> i64 {
    t.div_euclid(step) * step + if t.rem_euclid(step) == 0 { 0 } else { step }
}

fn time_of(ts: f64) -> Option<Time> {
    if !ts.is_finite() {
        return None;
    }
    let millis = (ts * 1000.0).round();
    if millis.abs() > 1e15 {
        return None;
    }
    chrono::DateTime::from_timestamp_millis(millis as i64)
}

fn labels(metric: &serde_json::Map<String, serde_json::Value>) -> String {
    let inner: Vec<String> = metric
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                v.as_str()
                    .map_or_else(|| v.to_string(), |s| format!("{s:?}"))
            )
        })
        .collect();
    format!("{{{}}}", inner.join(","))
}

/// Prometheus' answer envelope (its HTTP API documentation, "Format
/// overview").
#[derive(Deserialize)]
struct Answer {
    status: String,
    data: Option<Data>,
    #[serde(rename = "errorType")]
    error_type: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct Series {
    #[serde(default)]
    metric: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    values: Vec<(f64, String)>,
}

/// The shared client asks its caller for a rate-limit dialect; Prometheus
/// has none beyond the standard `Retry-After` the client reads itself. The
/// tracker methods are never called for a metric source.
struct Dialect;

impl Connector for Dialect {
    fn headers(
        &self,
        source: &Source,
        _token: Option<&str>,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, SyncError> {
        Err(not_a_tracker(source))
    }

    fn first_url(&self, source: &Source, _: Option<Time>, _: Time) -> Result<Url, SyncError> {
        Err(not_a_tracker(source))
    }

    fn parse_page(&self, source: &Source, _: &Fetched) -> Result<Page, SyncError> {
        Err(not_a_tracker(source))
    }

    fn rate_limit(&self, _: reqwest::StatusCode, _: &HeaderMap) -> Option<crate::sync::RateLimit> {
        None
    }
}

fn not_a_tracker(source: &Source) -> SyncError {
    SyncError::Config {
        source_id: source.id.clone(),
        detail: "a Prometheus metric source is not a tracker".into(),
        source: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(s: i64) -> Time {
        chrono::Utc.timestamp_opt(s, 0).unwrap()
    }

    const DAY: i64 = 86_400;

    #[test]
    fn an_incremental_window_starts_at_the_grid_time_of_since() {
        let now = t(100 * DAY + 3600);
        // On the grid: since itself, asked again for a corrected value.
        assert_eq!(
            window(Some(t(97 * DAY)), now, DAY, DEFAULT_LOOKBACK),
            Some((97 * DAY, 100 * DAY))
        );
        // Off the grid: the next grid time, not since + step.
        assert_eq!(
            window(Some(t(97 * DAY + 5)), now, DAY, DEFAULT_LOOKBACK),
            Some((98 * DAY, 100 * DAY))
        );
        assert_eq!(
            window(Some(t(100 * DAY)), now, DAY, DEFAULT_LOOKBACK),
            Some((100 * DAY, 100 * DAY))
        );
        assert_eq!(
            window(Some(t(100 * DAY + 5)), now, DAY, DEFAULT_LOOKBACK),
            None
        );
    }

    #[test]
    fn a_first_window_reaches_back_the_lookback_within_max_steps() {
        let now = t(100 * DAY + 3600);
        assert_eq!(
            window(None, now, DAY, Duration::from_secs(10 * DAY as u64)),
            Some((91 * DAY, 100 * DAY))
        );
        let (start, end) = window(None, now, 60, Duration::from_secs(100 * DAY as u64)).unwrap();
        assert_eq!((end - start) / 60, MAX_STEPS);
    }

    #[test]
    fn windows_at_the_ends_of_time_do_not_overflow() {
        let now = t(100 * DAY + 3600);
        let far = window(None, now, DAY, Duration::MAX).unwrap();
        assert_eq!(far, (100 * DAY - MAX_STEPS * DAY, 100 * DAY));
        let before = window(None, t(-5 * DAY), 366 * DAY, Duration::MAX);
        assert!(before.is_some());
        let since = chrono::DateTime::<chrono::Utc>::MIN_UTC;
        assert_eq!(window(Some(since), now, DAY, Duration::ZERO), Some(far));
    }

    #[test]
    fn steps_are_whole_seconds() {
        assert_eq!(parse_step("1d"), Ok(Duration::from_secs(86_400)));
        assert!(parse_step("500ms").is_err());
        assert!(parse_step("0s").is_err());
        assert!(parse_step("daily").is_err());
    }
}
