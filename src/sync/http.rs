//! The one HTTP client every connector shares: timeouts, a User-Agent,
//! conditional requests, and politeness. It waits out rate limits (Retry-After,
//! X-RateLimit-Remaining/Reset, RateLimit-Reset) instead of failing, retries
//! transient failures of reads (5xx, timeouts, connection resets) with bounded
//! exponential backoff and full jitter, and turns 401/403/404 into errors that
//! name the source and the cause, never the token. Writes (`post_json`) are
//! retried only when the tracker surely did not apply them.

use std::time::Duration;

use chrono::Utc;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{StatusCode, Url};

use super::{SyncError, SyncEvent};
use crate::domain::Time;

/// Politeness settings.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Whole-request timeout.
    pub timeout: Duration,
    /// Retries of one request after a transient failure.
    pub max_retries: u32,
    /// First backoff step; doubles per retry, capped at `max_backoff`.
    pub backoff_base: Duration,
    pub max_backoff: Duration,
    /// The longest a rate limit may make us wait before we give up.
    pub max_rate_limit_wait: Duration,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            timeout: Duration::from_secs(30),
            max_retries: 5,
            backoff_base: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_rate_limit_wait: Duration::from_secs(15 * 60),
        }
    }
}

/// A successful (2xx or 304) answer.
#[derive(Debug)]
pub struct Fetched {
    pub url: Url,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Fetched {
    pub fn not_modified(&self) -> bool {
        self.status == StatusCode::NOT_MODIFIED
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn etag(&self) -> Option<&str> {
        self.header("etag")
    }
}

/// Whether a request may be sent again when the tracker may have received it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replay {
    /// Reads: sending again changes nothing.
    Safe,
    /// Creates: sending again could make a duplicate.
    Unsafe,
}

/// The shared client.
#[derive(Debug, Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    options: HttpOptions,
}

impl HttpClient {
    pub fn new(options: HttpOptions) -> Result<Self, SyncError> {
        let client = reqwest::Client::builder()
            .user_agent(concat!(
                "plumbline/",
                env!("CARGO_PKG_VERSION"),
                " (+https://github.com/plumbline)"
            ))
            .timeout(options.timeout)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| SyncError::Client(e.to_string()))?;
        Ok(HttpClient { client, options })
    }

    /// GETs `url` with `headers` (auth among them) and, when given,
    /// `If-None-Match`. Waits out rate limits and retries transient failures;
    /// reports waits through `events`. `requests` counts every attempt.
    pub async fn get(
        &self,
        source_id: &str,
        url: &Url,
        headers: &[(HeaderName, HeaderValue)],
        if_none_match: Option<&str>,
        events: &(dyn Fn(SyncEvent) + Send + Sync),
        requests: &mut u32,
    ) -> Result<Fetched, SyncError> {
        let build = || {
            let mut req = self.client.get(url.clone());
            for (k, v) in headers {
                req = req.header(k, v);
            }
            if let Some(tag) = if_none_match {
                req = req.header(reqwest::header::IF_NONE_MATCH, tag);
            }
            req
        };
        self.send(source_id, url, Replay::Safe, build, events, requests)
            .await
    }

    /// POSTs `body` as JSON (`Content-Type: application/json`) to `url` with
    /// `headers`, as politely as [`get`](Self::get): rate limits are waited
    /// out and 401/403/404 become the same errors. But a POST creates
    /// something, and a duplicate is worse than an error, so it is sent again
    /// only when the tracker surely did not apply it: after a rate-limit
    /// answer (429, or 403/503 with `Retry-After`) and after a connection
    /// that failed before the request went out. A timeout, a 5xx or an answer
    /// cut off is returned as an error at once.
    pub async fn post_json(
        &self,
        source_id: &str,
        url: &Url,
        headers: &[(HeaderName, HeaderValue)],
        body: &serde_json::Value,
        events: &(dyn Fn(SyncEvent) + Send + Sync),
        requests: &mut u32,
    ) -> Result<Fetched, SyncError> {
        let bytes = serde_json::to_vec(body).map_err(|e| SyncError::Client(e.to_string()))?;
        let build = || {
            let mut req = self.client.post(url.clone());
            for (k, v) in headers {
                req = req.header(k, v);
            }
            req.header(
                reqwest::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )
            .body(bytes.clone())
        };
        self.send(source_id, url, Replay::Unsafe, build, events, requests)
            .await
    }

    /// Sends what `build` makes until it succeeds, fails for good, or may
    /// not be sent again under `replay`.
    async fn send(
        &self,
        source_id: &str,
        url: &Url,
        replay: Replay,
        build: impl Fn() -> reqwest::RequestBuilder,
        events: &(dyn Fn(SyncEvent) + Send + Sync),
        requests: &mut u32,
    ) -> Result<Fetched, SyncError> {
        let mut attempt: u32 = 0;
        loop {
            *requests += 1;
            // What went wrong, and whether the tracker may have applied it.
            let (transient, maybe_applied) = match build().send().await {
                Ok(resp) => {
                    let status = resp.status();
                    let headers = resp.headers().clone();
                    let final_url = resp.url().clone();
                    // A rate-limit answer means the request was not applied.
                    if let Some(until) = rate_limit_wait(status, &headers) {
                        self.wait_until(source_id, until, "the tracker's rate limit", events)
                            .await?;
                        continue;
                    }
                    if status.is_success() || status == StatusCode::NOT_MODIFIED {
                        match resp.bytes().await {
                            Ok(b) => {
                                // Spend the last request of a window, then wait
                                // for the next one instead of being refused.
                                if remaining_is_zero(&headers)
                                    && let Some(reset) = reset_time(&headers)
                                {
                                    events(SyncEvent::RateLimitWait {
                                        until: reset,
                                        reason: "rate limit window used up".into(),
                                    });
                                    self.sleep_until(source_id, reset).await?;
                                }
                                return Ok(Fetched {
                                    url: final_url,
                                    status,
                                    headers,
                                    body: b.to_vec(),
                                });
                            }
                            Err(e) => (
                                format!("HTTP {status}, answer cut off: {}", describe(&e)),
                                true,
                            ),
                        }
                    } else {
                        let body = resp.text().await.unwrap_or_default();
                        let message = tracker_message(&body);
                        match status {
                            StatusCode::UNAUTHORIZED => {
                                return Err(SyncError::Unauthorized {
                                    source_id: source_id.into(),
                                    message,
                                });
                            }
                            StatusCode::FORBIDDEN => {
                                return Err(SyncError::Forbidden {
                                    source_id: source_id.into(),
                                    message,
                                });
                            }
                            StatusCode::NOT_FOUND | StatusCode::GONE => {
                                return Err(SyncError::NotFound {
                                    source_id: source_id.into(),
                                    url: strip_query(url),
                                    message,
                                });
                            }
                            s if s.is_server_error()
                                || s == StatusCode::TOO_MANY_REQUESTS
                                || s == StatusCode::REQUEST_TIMEOUT =>
                            {
                                (format!("HTTP {s}: {message}"), true)
                            }
                            s => {
                                return Err(SyncError::Http {
                                    source_id: source_id.into(),
                                    status: s.as_u16(),
                                    message,
                                });
                            }
                        }
                    }
                }
                // A connection that failed was never used: nothing was sent.
                Err(e) => (describe(&e), !e.is_connect()),
            };
            if maybe_applied && replay == Replay::Unsafe {
                return Err(SyncError::Transport {
                    source_id: source_id.into(),
                    detail: format!(
                        "{transient} (not retried: the tracker may have applied the request; check it before trying again)"
                    ),
                });
            }
            if attempt >= self.options.max_retries {
                return Err(SyncError::Transport {
                    source_id: source_id.into(),
                    detail: format!("{transient} (gave up after {} attempts)", attempt + 1),
                });
            }
            attempt += 1;
            tracing::warn!(source = source_id, attempt, error = %transient, "transient tracker failure; retrying");
            self.backoff(attempt).await;
        }
    }

    async fn backoff(&self, attempt: u32) {
        let cap = self
            .options
            .backoff_base
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.options.max_backoff);
        // Full jitter: anywhere in [0, cap], so that many clients spread out.
        let millis = cap.as_millis() as u64;
        tokio::time::sleep(Duration::from_millis(fastrand::u64(0..=millis))).await;
    }

    async fn wait_until(
        &self,
        source_id: &str,
        until: Time,
        reason: &str,
        events: &(dyn Fn(SyncEvent) + Send + Sync),
    ) -> Result<(), SyncError> {
        events(SyncEvent::RateLimitWait {
            until,
            reason: reason.into(),
        });
        tracing::info!(source = source_id, %until, "rate limited; waiting");
        self.sleep_until(source_id, until).await
    }

    async fn sleep_until(&self, source_id: &str, until: Time) -> Result<(), SyncError> {
        let wait = (until - Utc::now()).to_std().unwrap_or_default();
        if wait > self.options.max_rate_limit_wait {
            return Err(SyncError::RateLimited {
                source_id: source_id.into(),
                until,
            });
        }
        tokio::time::sleep(wait).await;
        Ok(())
    }
}

/// `X-RateLimit-Remaining: 0` (GitHub) or `RateLimit-Remaining: 0` (GitLab).
fn remaining_is_zero(headers: &HeaderMap) -> bool {
    ["x-ratelimit-remaining", "ratelimit-remaining"]
        .iter()
        .any(|h| headers.get(*h).and_then(|v| v.to_str().ok()).map(str::trim) == Some("0"))
}

/// When a response says "slow down", the time to try again.
fn rate_limit_wait(status: StatusCode, headers: &HeaderMap) -> Option<Time> {
    let limited = status == StatusCode::TOO_MANY_REQUESTS
        || (status == StatusCode::FORBIDDEN
            && (headers.contains_key("retry-after") || remaining_is_zero(headers)))
        || (status == StatusCode::SERVICE_UNAVAILABLE && headers.contains_key("retry-after"));
    if !limited {
        return None;
    }
    let now = Utc::now();
    if let Some(v) = headers.get("retry-after").and_then(|v| v.to_str().ok()) {
        if let Ok(secs) = v.trim().parse::<u64>() {
            return Some(now + chrono::Duration::seconds(secs.min(86_400) as i64));
        }
        if let Ok(t) = chrono::DateTime::parse_from_rfc2822(v.trim()) {
            return Some(t.with_timezone(&Utc).max(now));
        }
    }
    // No usable header (GitLab often sends none): a short pause, then retry.
    Some(reset_time(headers).unwrap_or(now + chrono::Duration::seconds(1)))
}

/// X-RateLimit-Reset (GitHub) or RateLimit-Reset (GitLab): Unix seconds.
fn reset_time(headers: &HeaderMap) -> Option<Time> {
    let v = headers
        .get("x-ratelimit-reset")
        .or_else(|| headers.get("ratelimit-reset"))?
        .to_str()
        .ok()?;
    let secs: i64 = v.trim().parse().ok()?;
    let now = Utc::now();
    // Some trackers send seconds-until-reset rather than an epoch time.
    if secs < 1_000_000_000 {
        return Some(now + chrono::Duration::seconds(secs));
    }
    chrono::DateTime::from_timestamp(secs, 0).map(|t| t.max(now))
}

/// The tracker's own error message from a JSON error body, shortened.
fn tracker_message(body: &str) -> String {
    let from_json = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            for key in ["message", "error", "errorMessages", "errors"] {
                match &v[key] {
                    serde_json::Value::String(s) => return Some(s.clone()),
                    serde_json::Value::Array(a) if !a.is_empty() => {
                        return Some(
                            a.iter()
                                .map(|x| x.as_str().map_or(x.to_string(), str::to_string))
                                .collect::<Vec<_>>()
                                .join("; "),
                        );
                    }
                    _ => {}
                }
            }
            None
        });
    let text = from_json.unwrap_or_else(|| body.trim().to_string());
    let mut short: String = text.chars().take(200).collect();
    if short.is_empty() {
        short = "no message".into();
    }
    short
}

fn strip_query(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.to_string()
}

fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "transport error"
    };
    // reqwest's Display includes the URL, which never carries a token here.
    format!("{kind}: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn rate_limit_answers_say_when_to_come_back() {
        let now = Utc::now();
        let secs = |t: Option<Time>| t.map(|t| (t - now).num_seconds());
        // Retry-After in seconds, on 429 and on a 403 secondary limit.
        let t = rate_limit_wait(
            StatusCode::TOO_MANY_REQUESTS,
            &headers(&[("retry-after", "30")]),
        );
        assert!(matches!(secs(t), Some(29..=30)));
        let t = rate_limit_wait(StatusCode::FORBIDDEN, &headers(&[("retry-after", "5")]));
        assert!(matches!(secs(t), Some(4..=5)));
        // Retry-After as an HTTP date.
        let when = (now + chrono::Duration::seconds(120)).to_rfc2822();
        let t = rate_limit_wait(
            StatusCode::SERVICE_UNAVAILABLE,
            &headers(&[("retry-after", &when)]),
        );
        assert!(matches!(secs(t), Some(118..=120)));
        // GitHub's primary limit: 403 with remaining 0 and an epoch reset.
        let reset = (now.timestamp() + 60).to_string();
        let t = rate_limit_wait(
            StatusCode::FORBIDDEN,
            &headers(&[
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", &reset),
            ]),
        );
        assert!(matches!(secs(t), Some(58..=60)));
        // A 429 without headers still backs off briefly.
        let t = rate_limit_wait(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new());
        assert!(matches!(secs(t), Some(0..=1)));
        // A plain 403 or 503 is not a rate limit.
        assert_eq!(
            rate_limit_wait(StatusCode::FORBIDDEN, &HeaderMap::new()),
            None
        );
        assert_eq!(
            rate_limit_wait(StatusCode::SERVICE_UNAVAILABLE, &HeaderMap::new()),
            None
        );
        assert_eq!(
            rate_limit_wait(StatusCode::OK, &headers(&[("retry-after", "5")])),
            None
        );
    }

    #[test]
    fn reset_headers_may_be_epochs_or_deltas() {
        let now = Utc::now();
        let delta = reset_time(&headers(&[("ratelimit-reset", "42")])).unwrap();
        assert!(matches!((delta - now).num_seconds(), 41..=42));
        let past = reset_time(&headers(&[("x-ratelimit-reset", "1700000000")])).unwrap();
        assert!(past >= now, "a reset in the past means now");
        assert!(remaining_is_zero(&headers(&[("ratelimit-remaining", "0")])));
        assert!(!remaining_is_zero(&headers(&[(
            "x-ratelimit-remaining",
            "10"
        )])));
    }

    #[test]
    fn tracker_messages_are_read_from_their_error_bodies() {
        assert_eq!(
            tracker_message(r#"{"message":"Bad credentials","documentation_url":"x"}"#),
            "Bad credentials"
        );
        assert_eq!(
            tracker_message(r#"{"errorMessages":["No project 'X'","Second"],"errors":{}}"#),
            "No project 'X'; Second"
        );
        assert_eq!(
            tracker_message(r#"{"errors":["Updated is invalid"]}"#),
            "Updated is invalid"
        );
        assert_eq!(tracker_message(""), "no message");
        assert_eq!(tracker_message(&"x".repeat(500)).len(), 200);
    }
}
