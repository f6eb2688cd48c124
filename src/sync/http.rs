//! The one HTTP client every connector shares: timeouts, a User-Agent,
//! conditional requests, and politeness. It waits out rate limits instead of
//! failing: the standard `Retry-After` and a bare 429 here, each tracker's
//! own headers (`X-RateLimit-*`, `RateLimit-*`) through its connector's
//! [`Connector::rate_limit`] hook, so that one place knows one tracker's
//! dialect. Every such wait lasts at least a minimum delay and only so many
//! come for one request, so a tracker that answers `Retry-After: 0` forever ends
//! the sync with an error instead of a tight loop. It retries
//! transient failures of reads (5xx, timeouts, connection resets) with bounded
//! exponential backoff and full jitter, and turns 401/403/404 into errors that
//! name the source and the cause, never the token nor the tracker's body (only
//! its documented error message, sanitized: [`super::redact`]). Writes
//! (`post_json`) are retried only when the tracker surely did not apply them.
//!
//! Credentials never leave the source's origin. A read follows a redirect
//! only within its origin (scheme, host and port): reqwest strips only
//! `Authorization` on a redirect to another host, not GitLab's `PRIVATE-TOKEN`
//! or Redmine's `X-Redmine-API-Key`, so a redirect elsewhere is not followed
//! at all and ends the sync with an error naming the origin. A write follows
//! no redirect: a 301/302 would repeat a POST as a GET, and a 307 would send
//! the create again, neither of which the tracker asked for knowingly.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{StatusCode, Url};

use super::redact::{secrets_of, summary};
use super::{Connector, RateLimit, RateLimitStop, SyncError, SyncEvent};
use crate::domain::Time;
use crate::outbound::{OutboundPolicy, PolicyResolver, Refused, refusal_in};

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
    /// Rate-limit answers to one request waited out before the
    /// sync fails: a tracker that says "slow down" forever is not obeyed
    /// forever.
    pub max_rate_limit_waits: u32,
    /// The shortest wait after a rate-limit answer, whatever it says
    /// (`Retry-After: 0`, a reset already past).
    pub min_rate_limit_delay: Duration,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            timeout: Duration::from_secs(30),
            max_retries: 5,
            backoff_base: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_rate_limit_wait: Duration::from_secs(15 * 60),
            max_rate_limit_waits: 10,
            min_rate_limit_delay: Duration::from_secs(1),
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

/// Redirects one read follows, all within its origin.
const MAX_REDIRECTS: usize = 5;
/// The largest answer read: a tracker page or a metric source's answer is a
/// few MiB at most, and a server (or a man in the middle of a plain-http
/// one) that sends more must not make plumbline hold it all in memory.
pub const MAX_RESPONSE_BYTES: usize = 32 << 20;
/// The most of an error answer read for its message.
const MAX_ERROR_BODY_BYTES: usize = 64 << 10;

/// The body of `resp`, read chunk by chunk up to `cap` bytes: `Ok(None)`
/// when it is larger (the rest is not read).
async fn read_capped(
    mut resp: reqwest::Response,
    cap: usize,
) -> Result<Option<Vec<u8>>, reqwest::Error> {
    if resp.content_length().is_some_and(|n| n > cap as u64) {
        return Ok(None);
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if body.len() + chunk.len() > cap {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

/// The shared client.
#[derive(Debug, Clone)]
pub struct HttpClient {
    /// Reads: redirects followed within the origin only.
    client: reqwest::Client,
    /// Writes: no redirect followed.
    writer: reqwest::Client,
    options: HttpOptions,
    /// Where requests may go.
    outbound: Arc<OutboundPolicy>,
}

impl HttpClient {
    /// A client whose requests go only where `outbound` allows.
    pub fn new(options: HttpOptions, outbound: Arc<OutboundPolicy>) -> Result<Self, SyncError> {
        let build = |policy| {
            reqwest::Client::builder()
                .user_agent(concat!(
                    "plumbline/",
                    env!("CARGO_PKG_VERSION"),
                    " (+https://github.com/plumbline)"
                ))
                .timeout(options.timeout)
                .connect_timeout(Duration::from_secs(10))
                .redirect(policy)
                .dns_resolver(PolicyResolver(outbound.clone()))
                .build()
                .map_err(|e| SyncError::Client(Box::new(e)))
        };
        Ok(HttpClient {
            client: build(same_origin_redirects())?,
            writer: build(reqwest::redirect::Policy::none())?,
            options,
            outbound,
        })
    }

    /// What a request's errors and logs must not show: the secrets its
    /// headers carry, and every secret the outbound policy knows (read from
    /// the environment only when a tracker's message is to be shown).
    fn with_known_secrets(&self, own: &[String]) -> Vec<String> {
        let mut all = own.to_vec();
        all.extend(self.outbound.known_secrets());
        super::redact::secret_set(all)
    }

    /// The outbound policy every request of this client obeys.
    pub fn outbound(&self) -> &Arc<OutboundPolicy> {
        &self.outbound
    }

    /// GETs `url` with `headers` (auth among them) and, when given,
    /// `If-None-Match`. Waits out rate limits and retries transient failures;
    /// reports waits through `events`. `requests` counts every attempt.
    #[allow(clippy::too_many_arguments)]
    pub async fn get(
        &self,
        conn: &dyn Connector,
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
        let secrets = secrets_of(headers);
        self.send(
            conn,
            source_id,
            url,
            (Replay::Safe, &secrets),
            build,
            events,
            requests,
        )
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
    #[allow(clippy::too_many_arguments)]
    pub async fn post_json(
        &self,
        conn: &dyn Connector,
        source_id: &str,
        url: &Url,
        headers: &[(HeaderName, HeaderValue)],
        body: &serde_json::Value,
        events: &(dyn Fn(SyncEvent) + Send + Sync),
        requests: &mut u32,
    ) -> Result<Fetched, SyncError> {
        let bytes = serde_json::to_vec(body).map_err(|e| SyncError::Client(Box::new(e)))?;
        let build = || {
            let mut req = self.writer.post(url.clone());
            for (k, v) in headers {
                req = req.header(k, v);
            }
            req.header(
                reqwest::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )
            .body(bytes.clone())
        };
        let secrets = secrets_of(headers);
        self.send(
            conn,
            source_id,
            url,
            (Replay::Unsafe, &secrets),
            build,
            events,
            requests,
        )
        .await
    }

    /// Sends what `build` makes until it succeeds, fails for good, or may
    /// not be sent again under `replay`. Rate-limit answers are waited out,
    /// each wait at least [`HttpOptions::min_rate_limit_delay`], at most
    /// [`HttpOptions::max_rate_limit_waits`] times per request: a tracker that
    /// answers `Retry-After: 0` (or a reset already past) forever would
    /// otherwise be hammered in a tight loop. `secrets` (what the request's
    /// auth header carries), and every secret the outbound policy knows, are
    /// scrubbed from any message of the tracker.
    #[allow(clippy::too_many_arguments)]
    async fn send(
        &self,
        conn: &dyn Connector,
        source_id: &str,
        url: &Url,
        (replay, secrets): (Replay, &[String]),
        build: impl Fn() -> reqwest::RequestBuilder,
        events: &(dyn Fn(SyncEvent) + Send + Sync),
        requests: &mut u32,
    ) -> Result<Fetched, SyncError> {
        let mut attempt: u32 = 0;
        let mut limited = RateLimitRun::default();
        let refused = |r: Refused| SyncError::Refused {
            source_id: source_id.into(),
            detail: r.to_string(),
        };
        loop {
            // Before every attempt: a redirect or a next page never reaches
            // here with another host, but the check costs nothing.
            self.outbound.check_url(url).map_err(refused)?;
            *requests += 1;
            // What went wrong, its cause, and whether the tracker may have
            // applied it.
            let (transient, cause, maybe_applied) = match build().send().await {
                Ok(resp) => {
                    let status = resp.status();
                    let headers = resp.headers().clone();
                    let final_url = resp.url().clone();
                    let dialect = conn.rate_limit(status, &headers);
                    // A rate-limit answer means the request was not applied.
                    if let Some(come_back) = rate_limit_wait(status, &headers, dialect) {
                        let until =
                            self.bounded_wait(source_id, status, come_back, &mut limited)?;
                        self.wait_until(source_id, until, "the tracker's rate limit", events)
                            .await?;
                        continue;
                    }
                    // A redirect the client did not follow: to another
                    // origin, past the bound, or any for a write.
                    if status.is_redirection() && status != StatusCode::NOT_MODIFIED {
                        return Err(not_followed(
                            source_id, replay, status, &final_url, &headers,
                        ));
                    }
                    if status.is_success() || status == StatusCode::NOT_MODIFIED {
                        match read_capped(resp, MAX_RESPONSE_BYTES).await {
                            Ok(None) => {
                                return Err(SyncError::Malformed {
                                    source_id: source_id.into(),
                                    url: strip_query(url),
                                    detail: format!(
                                        "the answer is larger than {MAX_RESPONSE_BYTES} bytes; not read"
                                    ),
                                    source: None,
                                });
                            }
                            Ok(Some(b)) => {
                                // Spend the last request of a window, then wait
                                // for the next one instead of being refused.
                                if let Some(reset) = dialect {
                                    let reset = reset.at(Utc::now());
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
                                    body: b,
                                });
                            }
                            Err(e) => (
                                format!("HTTP {status}, answer cut off: {}", describe(&e)),
                                Some(e),
                                true,
                            ),
                        }
                    } else {
                        let body = read_capped(resp, MAX_ERROR_BODY_BYTES)
                            .await
                            .ok()
                            .flatten()
                            .map(|b| String::from_utf8_lossy(&b).into_owned())
                            .unwrap_or_default();
                        let message = summary(&body, &self.with_known_secrets(secrets));
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
                                    status: status.as_u16(),
                                });
                            }
                            s if s.is_server_error() || s == StatusCode::REQUEST_TIMEOUT => {
                                (format!("HTTP {s}: {message}"), None, true)
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
                Err(e) => {
                    // The policy's resolver refused every address of the host.
                    if let Some(r) = refusal_in(&e) {
                        return Err(refused(r));
                    }
                    // A connection that failed was never used: nothing was sent.
                    let applied = !e.is_connect();
                    (describe(&e), Some(e), applied)
                }
            };
            if maybe_applied && replay == Replay::Unsafe {
                return Err(SyncError::Transport {
                    source_id: source_id.into(),
                    detail: format!(
                        "{transient} (not retried: the tracker may have applied the request; check it before trying again)"
                    ),
                    source: cause,
                });
            }
            if attempt >= self.options.max_retries {
                return Err(SyncError::Transport {
                    source_id: source_id.into(),
                    detail: format!("{transient} (gave up after {} attempts)", attempt + 1),
                    source: cause,
                });
            }
            attempt += 1;
            tracing::warn!(source = source_id, attempt, error = %transient, "transient tracker failure; retrying");
            self.backoff(attempt).await;
        }
    }

    /// Counts one more rate-limit answer to the request and says until when to
    /// wait for it: at least the minimum delay from now, so that
    /// `Retry-After: 0` or a reset already past still paces the requests;
    /// or fails once the waits run out.
    fn bounded_wait(
        &self,
        source_id: &str,
        status: StatusCode,
        come_back: Time,
        run: &mut RateLimitRun,
    ) -> Result<Time, SyncError> {
        run.answers += 1;
        if run.answers > self.options.max_rate_limit_waits {
            return Err(SyncError::RateLimited {
                source_id: source_id.into(),
                why: RateLimitStop::TooOften {
                    status: status.as_u16(),
                    answers: run.answers,
                    waits: run.answers - 1,
                    waited_secs: run.since.elapsed().as_secs_f64(),
                },
            });
        }
        let earliest = Utc::now()
            + chrono::Duration::from_std(self.options.min_rate_limit_delay)
                .unwrap_or(chrono::Duration::seconds(1));
        Ok(come_back.max(earliest))
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
                why: RateLimitStop::TooLong { until },
            });
        }
        tokio::time::sleep(wait).await;
        Ok(())
    }
}

/// Rate-limit answers to one request so far, and since when.
struct RateLimitRun {
    answers: u32,
    since: std::time::Instant,
}

impl Default for RateLimitRun {
    fn default() -> Self {
        RateLimitRun {
            answers: 0,
            since: std::time::Instant::now(),
        }
    }
}

/// When an answer says "slow down", the time to try again. A 429 always
/// does; a 403 or 503 does with the standard `Retry-After`; any failure
/// does when the tracker's own dialect (`dialect`, from its connector)
/// says so. `Retry-After` wins over the dialect; a 429 with neither (GitLab
/// often sends none) comes back after the minimum delay.
fn rate_limit_wait(
    status: StatusCode,
    headers: &HeaderMap,
    dialect: Option<RateLimit>,
) -> Option<Time> {
    if status.is_success() || status == StatusCode::NOT_MODIFIED {
        return None;
    }
    let retry_after = headers.get("retry-after").and_then(|v| v.to_str().ok());
    let limited = status == StatusCode::TOO_MANY_REQUESTS
        || (retry_after.is_some()
            && (status == StatusCode::FORBIDDEN || status == StatusCode::SERVICE_UNAVAILABLE))
        || dialect.is_some();
    if !limited {
        return None;
    }
    let now = Utc::now();
    let standard = retry_after.and_then(|v| {
        let v = v.trim();
        if let Ok(secs) = v.parse::<u64>() {
            return Some(RateLimit::After(std::time::Duration::from_secs(
                secs.min(86_400),
            )));
        }
        chrono::DateTime::parse_from_rfc2822(v)
            .ok()
            .map(|t| RateLimit::Until(t.with_timezone(&Utc)))
    });
    Some(
        standard
            .or(dialect)
            .map_or(now, |come_back| come_back.at(now)),
    )
}

/// A reset header in Unix seconds (`X-RateLimit-Reset`, `RateLimit-Reset`),
/// as a time to come back; a small number is taken as seconds from now,
/// since some trackers and proxies send that instead. For connectors'
/// [`Connector::rate_limit`] hooks.
pub fn unix_reset(headers: &HeaderMap, name: &str) -> Option<RateLimit> {
    let secs: i64 = headers.get(name)?.to_str().ok()?.trim().parse().ok()?;
    if secs < 1_000_000_000 {
        return Some(RateLimit::After(std::time::Duration::from_secs(
            secs.max(0) as u64,
        )));
    }
    chrono::DateTime::from_timestamp(secs, 0).map(RateLimit::Until)
}

/// Whether the header `name` says no request is left in the window.
pub fn none_remaining(headers: &HeaderMap, name: &str) -> bool {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        == Some("0")
}

/// Follows a redirect only to the origin of the first request, at most
/// [`MAX_REDIRECTS`] times; stops otherwise, so that the 3xx itself comes
/// back and [`not_followed`] names it.
fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let same = attempt
            .previous()
            .first()
            .is_some_and(|first| first.origin() == attempt.url().origin());
        if same && attempt.previous().len() <= MAX_REDIRECTS {
            attempt.follow()
        } else {
            attempt.stop()
        }
    })
}

/// The error for a redirect answer that was not followed (see the module
/// docs): it names the origin the tracker pointed to, never the whole
/// `Location` (whose query may hold anything).
fn not_followed(
    source_id: &str,
    replay: Replay,
    status: StatusCode,
    at: &Url,
    headers: &HeaderMap,
) -> SyncError {
    let to = headers
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|l| at.join(l).ok());
    let to_origin = to.as_ref().map_or_else(
        || "nowhere".to_string(),
        |u| u.origin().ascii_serialization(),
    );
    if replay == Replay::Unsafe {
        return SyncError::Redirected {
            source_id: source_id.into(),
            detail: format!(
                "the tracker answered a create request with a redirect (HTTP {}) to {to_origin}; write-back follows no redirect, so nothing was sent there; check base_url, and whether the tracker created the issue before trying again",
                status.as_u16()
            ),
        };
    }
    let detail = match &to {
        Some(u) if u.origin() == at.origin() => format!(
            "the tracker redirected (HTTP {}) more than {MAX_REDIRECTS} times within {to_origin}; check base_url",
            status.as_u16()
        ),
        _ => format!(
            "the tracker redirected (HTTP {}) to another origin ({to_origin}); not followed, so that the token never leaves the source's origin; check base_url",
            status.as_u16()
        ),
    };
    SyncError::Redirected {
        source_id: source_id.into(),
        detail,
    }
}

fn strip_query(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    super::shown_url(&u)
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
            None,
        );
        assert!(matches!(secs(t), Some(29..=30)));
        let t = rate_limit_wait(
            StatusCode::FORBIDDEN,
            &headers(&[("retry-after", "5")]),
            None,
        );
        assert!(matches!(secs(t), Some(4..=5)));
        // Retry-After as an HTTP date.
        let when = (now + chrono::Duration::seconds(120)).to_rfc2822();
        let t = rate_limit_wait(
            StatusCode::SERVICE_UNAVAILABLE,
            &headers(&[("retry-after", &when)]),
            None,
        );
        assert!(matches!(secs(t), Some(118..=120)));
        // A tracker's dialect makes a 403 a rate limit; Retry-After wins.
        let reset = RateLimit::Until(now + chrono::Duration::seconds(60));
        let t = rate_limit_wait(StatusCode::FORBIDDEN, &HeaderMap::new(), Some(reset));
        assert!(matches!(secs(t), Some(59..=60)));
        let t = rate_limit_wait(
            StatusCode::TOO_MANY_REQUESTS,
            &headers(&[("retry-after", "2")]),
            Some(reset),
        );
        assert!(matches!(secs(t), Some(1..=2)));
        // A 429 without headers comes back at once (the minimum delay is
        // the caller's).
        let t = rate_limit_wait(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new(), None);
        assert!(matches!(secs(t), Some(0)));
        // A plain 403 or 503, or a success, is not a rate limit.
        assert_eq!(
            rate_limit_wait(StatusCode::FORBIDDEN, &HeaderMap::new(), None),
            None
        );
        assert_eq!(
            rate_limit_wait(StatusCode::SERVICE_UNAVAILABLE, &HeaderMap::new(), None),
            None
        );
        assert_eq!(
            rate_limit_wait(
                StatusCode::OK,
                &headers(&[("retry-after", "5")]),
                Some(reset)
            ),
            None
        );
    }

    #[test]
    fn reset_headers_may_be_epochs_or_deltas() {
        let now = Utc::now();
        let delta = unix_reset(&headers(&[("ratelimit-reset", "42")]), "ratelimit-reset")
            .unwrap()
            .at(now);
        assert_eq!((delta - now).num_seconds(), 42);
        let past = unix_reset(
            &headers(&[("x-ratelimit-reset", "1700000000")]),
            "x-ratelimit-reset",
        )
        .unwrap();
        assert_eq!(past.at(now), now, "a reset in the past means now");
        assert!(none_remaining(
            &headers(&[("ratelimit-remaining", "0")]),
            "ratelimit-remaining"
        ));
        assert!(!none_remaining(
            &headers(&[("x-ratelimit-remaining", "10")]),
            "x-ratelimit-remaining"
        ));
    }

    #[test]
    fn rate_limit_waits_are_paced_and_bounded() {
        let client = HttpClient::new(
            HttpOptions {
                max_rate_limit_waits: 2,
                min_rate_limit_delay: Duration::from_millis(1500),
                ..HttpOptions::default()
            },
            Arc::default(),
        )
        .unwrap();
        let mut run = RateLimitRun::default();
        let now = Utc::now();
        // "Come back now" still waits the minimum delay.
        let until = client
            .bounded_wait("s", StatusCode::TOO_MANY_REQUESTS, now, &mut run)
            .unwrap();
        assert!((until - now).num_milliseconds() >= 1500);
        // A later time is kept.
        let later = now + chrono::Duration::seconds(10);
        let until = client
            .bounded_wait("s", StatusCode::TOO_MANY_REQUESTS, later, &mut run)
            .unwrap();
        assert_eq!(until, later);
        // The third answer ends it, saying what happened.
        let err = client
            .bounded_wait("s", StatusCode::TOO_MANY_REQUESTS, now, &mut run)
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("kept answering HTTP 429")
                && msg.contains("3 answers")
                && msg.contains("2 waits"),
            "{msg}"
        );
    }
}
