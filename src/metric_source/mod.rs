//! Metrics that flow in: pull a metric's observations from where they
//! already live (a JSON endpoint, a CSV file, PostHog; Prometheus and SQL in
//! their own modules) instead of waiting for someone to call
//! `RecordObservations`.
//!
//! Each kind's fetcher knows one dialect and answers [`RawPoint`]s as
//! fetched, unchecked; the [`Puller`] does the rest the same way for every
//! kind: ask only for what is newer than the last stored observation, refuse
//! points that cannot be true (in the future beyond the clock skew, NaN,
//! infinite, too large, not a number) and report them, and hand the rest to
//! the engine, which stores them with the pull's status in one transaction
//! and rescores what they reach, as any observation. A failed pull stores
//! nothing but its status. HTTP goes through the sync's shared polite client
//! ([`crate::sync::http`]) and so through the outbound policy; secrets come
//! only from the variables a source names, which the policy must allow, and
//! every error is scrubbed of them before it is logged, stored or returned.

pub mod csv;
pub mod http_json;
pub mod posthog;
pub mod prometheus;
pub mod sql;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use parking_lot::Mutex;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{StatusCode, Url};

use crate::domain::{MAX_CLOCK_SKEW, Metric, MetricSource, Observation, Time};
use crate::engine::{Engine, MetricView, quote};
use crate::lifecycle::Lifecycle;
use crate::sync::http::{Fetched, HttpClient};
use crate::sync::{Connector, Page, SyncError, redact};

/// One point as a source answered it: not yet checked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RawPoint {
    pub at: crate::domain::Time,
    pub value: f64,
}

/// Why a fetch failed. Says the source kind and the cause; never a secret
/// (the shared client keeps only a service's documented error message, and
/// the [`Puller`] scrubs every known secret before the error goes anywhere).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// What the prometheus and sql fetchers say: the service's own message
    /// (PromQL's parse error, PostgreSQL's with its SQLSTATE), scrubbed.
    #[error("{kind} metric source: {message}")]
    Source { kind: &'static str, message: String },
    /// The request failed for now: unreachable, 5xx after the retries,
    /// rate limits that did not end. Trying again later may work.
    #[error("{kind} source: {cause}")]
    Request { kind: &'static str, cause: String },
    /// The service refused the request (401, 403, 404, another 4xx): the
    /// settings or the key must change first.
    #[error("{kind} source: {cause}")]
    Rejected { kind: &'static str, cause: String },
    /// The answer was not in the shape the settings describe.
    #[error("{kind} source: malformed answer: {cause}")]
    Malformed { kind: &'static str, cause: String },
    /// A variable the source names is unset or not Unicode.
    #[error(
        "{kind} source: the environment variable {var} {problem}; set it where the server runs"
    )]
    MissingSecret {
        kind: &'static str,
        var: String,
        problem: &'static str,
    },
    /// The server's outbound policy refused the variable or the host.
    #[error("{kind} source: refused by the server's outbound policy: {detail}; nothing was sent")]
    Refused { kind: &'static str, detail: String },
    /// A local file could not be read.
    #[error("{kind} source: cannot read {path}: {cause}")]
    File {
        kind: &'static str,
        path: String,
        cause: String,
    },
    /// The settings cannot be used as they are.
    #[error("{kind} source: {detail}")]
    Config { kind: &'static str, detail: String },
    /// More points in one answer than one pull stores.
    #[error(
        "{kind} source: more than {max} points in one answer; pull more often or narrow the query"
    )]
    TooMany { kind: &'static str, max: usize },
}

impl FetchError {
    /// Whether the source's settings (or the server's) must change before
    /// a pull can succeed, as opposed to a failure that may pass.
    pub fn needs_change(&self) -> bool {
        !matches!(
            self,
            FetchError::Request { .. } | FetchError::Malformed { .. }
        )
    }
}

/// The most points one pull takes.
pub const MAX_POINTS: usize = 100_000;
/// The most refusals one pull reports one by one (the count is exact).
pub const MAX_REPORTED: usize = 20;

/// What a fetcher of this module's kinds answers: the points it could read,
/// and those it could not (a value that is not a number, a time it cannot
/// read), each as a sentence, for the pull's report.
#[derive(Debug, Default)]
pub struct Batch {
    pub points: Vec<RawPoint>,
    pub unreadable: Vec<String>,
}

impl Batch {
    /// The points of a fetcher that refuses what it cannot read itself
    /// (prometheus, sql).
    pub fn of(points: Vec<RawPoint>) -> Batch {
        Batch {
            points,
            unreadable: Vec::new(),
        }
    }

    fn push_unreadable(&mut self, why: String) {
        self.unreadable.push(why);
    }
}

/// Reads a point's time: RFC 3339, `YYYY-MM-DD HH:MM:SS` (UTC), a date
/// (midnight UTC), or Unix seconds.
pub fn parse_time(s: &str) -> Option<Time> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for f in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(Utc.from_utc_datetime(&t));
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Some(Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0)?));
    }
    s.parse::<f64>().ok().and_then(unix_seconds)
}

/// Unix seconds (fractions allowed) as a time.
pub fn unix_seconds(x: f64) -> Option<Time> {
    if !x.is_finite() || x.abs() > 1e11 {
        return None;
    }
    let secs = x.floor();
    let nanos = ((x - secs) * 1e9).round().min(999_999_999.0) as u32;
    DateTime::from_timestamp(secs as i64, nanos)
}

/// A JSON value as a point's time.
pub fn json_time(v: &serde_json::Value) -> Option<Time> {
    match v {
        serde_json::Value::String(s) => parse_time(s),
        serde_json::Value::Number(n) => n.as_f64().and_then(unix_seconds),
        _ => None,
    }
}

/// A JSON value shown in a refusal: short, one line.
pub fn shown(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => quote(s),
        other => {
            let s = other.to_string();
            if s.chars().count() > 64 {
                format!("{}…", s.chars().take(64).collect::<String>())
            } else {
                s
            }
        }
    }
}

/// The time given to a source as "since": RFC 3339 in UTC, to the second
/// or finer when the stored time has a fraction.
pub fn since_text(t: Time) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// The value of the variable `var` that the source names, after the
/// outbound policy allowed it.
pub fn secret(http: &HttpClient, kind: &'static str, var: &str) -> Result<String, FetchError> {
    http.outbound()
        .check_token_env(var)
        .map_err(|r| FetchError::Refused {
            kind,
            detail: r.to_string(),
        })?;
    std::env::var(var).map_err(|e| FetchError::MissingSecret {
        kind,
        var: var.to_string(),
        problem: match e {
            std::env::VarError::NotPresent => "is not set",
            std::env::VarError::NotUnicode(_) => "is not valid Unicode",
        },
    })
}

/// A header value from a secret; the value is never shown.
pub fn secret_header(kind: &'static str, value: &str) -> Result<HeaderValue, FetchError> {
    let mut v = HeaderValue::from_str(value).map_err(|_| FetchError::Config {
        kind,
        detail: "the header's value from its variable is not a valid HTTP header value".into(),
    })?;
    v.set_sensitive(true);
    Ok(v)
}

/// An http(s) URL of the settings, with `since_param` set to `since`.
pub fn request_url(
    kind: &'static str,
    url: &str,
    since_param: Option<&str>,
    since: Option<Time>,
) -> Result<Url, FetchError> {
    let mut u = Url::parse(url.trim()).map_err(|e| FetchError::Config {
        kind,
        detail: format!("the URL is not valid: {e}"),
    })?;
    if let (Some(p), Some(t)) = (since_param, since) {
        u.query_pairs_mut().append_pair(p, &since_text(t));
    }
    Ok(u)
}

/// The shared client's HTTP error, said for a metric source.
pub fn from_sync(kind: &'static str, e: SyncError) -> FetchError {
    let rejected = |cause: String| FetchError::Rejected { kind, cause };
    match e {
        SyncError::Unauthorized { message, .. } => rejected(format!(
            "the service refused the credentials (401): {message}; check the key in the variable the source names"
        )),
        SyncError::Forbidden { message, .. } => rejected(format!(
            "access denied (403): {message}; the key may lack a scope"
        )),
        SyncError::NotFound {
            url,
            message,
            status,
            ..
        } => rejected(format!(
            "not found ({status}) at {url}: {message}; check the URL"
        )),
        SyncError::Http {
            status, message, ..
        } => rejected(format!("the service answered HTTP {status}: {message}")),
        SyncError::Redirected { detail, .. } => rejected(detail),
        SyncError::Transport { detail, .. } => FetchError::Request {
            kind,
            cause: detail,
        },
        SyncError::RateLimited { why, .. } => FetchError::Request {
            kind,
            cause: why.to_string(),
        },
        SyncError::Refused { detail, .. } => FetchError::Refused { kind, detail },
        SyncError::Malformed { detail, .. } => FetchError::Malformed {
            kind,
            cause: detail,
        },
        other => FetchError::Request {
            kind,
            cause: other.to_string(),
        },
    }
}

/// The shared client needs a [`Connector`] for a tracker's own rate-limit
/// headers; metric sources have none beyond the standard `Retry-After`,
/// which the client reads itself. The item methods are never called.
struct NoDialect;

impl Connector for NoDialect {
    fn headers(
        &self,
        _source: &crate::domain::Source,
        _token: Option<&str>,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, SyncError> {
        Ok(Vec::new())
    }
    fn first_url(
        &self,
        source: &crate::domain::Source,
        _since: Option<Time>,
        _now: Time,
    ) -> Result<Url, SyncError> {
        Err(SyncError::Config {
            source_id: source.id.clone(),
            detail: "a metric source has no item listing".into(),
            source: None,
        })
    }
    fn parse_page(
        &self,
        _source: &crate::domain::Source,
        _fetched: &Fetched,
    ) -> Result<Page, SyncError> {
        Ok(Page::default())
    }
    fn rate_limit(
        &self,
        _status: StatusCode,
        _headers: &HeaderMap,
    ) -> Option<crate::sync::RateLimit> {
        None
    }
}

/// GET through the shared client.
pub async fn get(
    http: &HttpClient,
    kind: &'static str,
    label: &str,
    url: &Url,
    headers: &[(HeaderName, HeaderValue)],
) -> Result<Fetched, FetchError> {
    let mut requests = 0;
    http.get(
        &NoDialect,
        label,
        url,
        headers,
        None,
        &|_| {},
        &mut requests,
    )
    .await
    .map_err(|e| from_sync(kind, e))
}

/// POST JSON through the shared client (a query: PostHog's query API).
pub async fn post_json(
    http: &HttpClient,
    kind: &'static str,
    label: &str,
    url: &Url,
    headers: &[(HeaderName, HeaderValue)],
    body: &serde_json::Value,
) -> Result<Fetched, FetchError> {
    let mut requests = 0;
    http.post_json(
        &NoDialect,
        label,
        url,
        headers,
        body,
        &|_| {},
        &mut requests,
    )
    .await
    .map_err(|e| from_sync(kind, e))
}

/// Progress of a pull.
#[derive(Debug, Clone, PartialEq)]
pub enum PullEvent {
    /// The source answered; `refused` holds the first reasons.
    Fetched {
        points: u32,
        refused: Vec<String>,
        refused_count: u32,
    },
}

/// What a finished pull did.
#[derive(Debug, Clone)]
pub struct PullSummary {
    pub stored: u32,
    pub refused: u32,
    pub metric: MetricView,
}

/// Why a pull did not run or failed.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("metric {} has no source: its observations are recorded through the API; give it a source first", quote(.0))]
    NoSource(String),
    #[error("a pull of metric {} is already running", quote(.0))]
    AlreadyRunning(String),
    /// `needs_change`: the settings (or the key) must change first
    /// ([`FetchError::needs_change`]).
    #[error("metric {}: {error}", quote(.metric_id))]
    Fetch {
        metric_id: String,
        error: String,
        needs_change: bool,
    },
    #[error("metric {}: interrupted: the server is shutting down; nothing of this pull was stored", quote(.0))]
    Interrupted(String),
    #[error(transparent)]
    Engine(#[from] crate::engine::Error),
}

/// Where local CSV files may be read from, and what pulls may reach.
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// Local CSV files only under this directory; `None`: no local files.
    pub csv_dir: Option<std::path::PathBuf>,
    /// Release validation windows: closed windows are validated after a pull.
    pub windows: Option<crate::refine::validate::Windows>,
}

/// Runs pulls: one at a time per metric, within the server's lifecycle.
pub struct Puller {
    engine: Arc<Engine>,
    http: HttpClient,
    lifecycle: Lifecycle,
    options: PullOptions,
    running: Mutex<HashSet<String>>,
}

struct Running<'a>(&'a Puller, String);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.lock().remove(&self.1);
    }
}

impl Puller {
    pub fn new(
        engine: Arc<Engine>,
        http: HttpClient,
        lifecycle: Lifecycle,
        options: PullOptions,
    ) -> Self {
        Puller {
            engine,
            http,
            lifecycle,
            options,
            running: Mutex::new(HashSet::new()),
        }
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    pub fn lifecycle(&self) -> &Lifecycle {
        &self.lifecycle
    }

    pub fn is_running(&self, metric_id: &str) -> bool {
        self.running.lock().contains(metric_id)
    }

    /// Every secret an error of `source` must not show: the values of the
    /// variables it names, and every secret the outbound policy knows.
    fn secrets(&self, source: &MetricSource) -> Vec<String> {
        let mut all: Vec<String> = source
            .secret_vars()
            .into_iter()
            .filter_map(|v| std::env::var(v).ok())
            .collect();
        all.extend(self.http.outbound().known_secrets());
        redact::secret_set(all)
    }

    /// A stored pull error as it may be shown again: scrubbed of every
    /// known secret (one set since the error was stored included).
    pub fn shown_error(&self, source: Option<&MetricSource>, stored: &str) -> String {
        if stored.is_empty() {
            return String::new();
        }
        let secrets = match source {
            Some(s) => self.secrets(s),
            None => redact::secret_set(self.http.outbound().known_secrets()),
        };
        redact::redact_text(stored, &secrets)
    }

    /// The prometheus fetcher's settings from the metric's, with the shared
    /// client.
    fn prometheus(
        &self,
        s: &crate::domain::PrometheusSpec,
    ) -> Result<prometheus::PrometheusSpec, FetchError> {
        const KIND: &str = "prometheus";
        let config = |detail: String| FetchError::Config { kind: KIND, detail };
        let base_url = Url::parse(s.base_url.trim())
            .map_err(|e| config(format!("base_url is not a valid URL: {e}")))?;
        let step = crate::domain::parse_setting_duration(&s.step, 366 * 86_400).map_err(config)?;
        let lookback = match &s.lookback {
            None => prometheus::DEFAULT_LOOKBACK,
            Some(l) => {
                crate::domain::parse_setting_duration(l, 100 * 366 * 86_400).map_err(config)?
            }
        };
        let auth = s.auth.as_ref().map(|a| match a {
            crate::domain::PrometheusAuth::Bearer(b) => prometheus::HttpAuth::Bearer {
                token_env: b.token_env.clone(),
            },
            crate::domain::PrometheusAuth::Basic(b) => prometheus::HttpAuth::Basic {
                username: b.username.clone(),
                password_env: b.password_env.clone(),
            },
        });
        Ok(prometheus::PrometheusSpec {
            base_url,
            query: s.query.clone(),
            step,
            lookback,
            auth,
            http: self.http.clone(),
        })
    }

    /// The sql fetcher's settings from the metric's, with the outbound policy.
    fn sql(&self, s: &crate::domain::SqlSpec) -> Result<sql::SqlSpec, FetchError> {
        let timeout = |t: &Option<String>, default| match t {
            None => Ok(default),
            Some(t) => crate::domain::parse_setting_duration(t, 3600).map_err(|detail| {
                FetchError::Config {
                    kind: "sql",
                    detail,
                }
            }),
        };
        Ok(sql::SqlSpec {
            dsn_env: s.dsn_env.clone(),
            query: s.query.clone(),
            statement_timeout: timeout(&s.statement_timeout, sql::DEFAULT_STATEMENT_TIMEOUT)?,
            connect_timeout: timeout(&s.connect_timeout, sql::DEFAULT_CONNECT_TIMEOUT)?,
            outbound: self.http.outbound().clone(),
        })
    }

    /// Fetches one metric's source with this module's fetchers.
    async fn fetch(
        &self,
        metric: &Metric,
        source: &MetricSource,
        since: Option<Time>,
        now: Time,
    ) -> Result<Batch, PullError> {
        let label = format!("metric {}", metric.id);
        let fetched = match source {
            MetricSource::HttpJson(s) => {
                http_json::HttpJson {
                    spec: s,
                    http: &self.http,
                    label: &label,
                }
                .fetch_batch(since, now)
                .await
            }
            MetricSource::Csv(s) => {
                csv::Csv {
                    spec: s,
                    http: &self.http,
                    label: &label,
                    csv_dir: self.options.csv_dir.as_deref(),
                }
                .fetch_batch(since, now)
                .await
            }
            MetricSource::Posthog(s) => {
                posthog::Posthog {
                    spec: s,
                    http: &self.http,
                    label: &label,
                }
                .fetch_batch(since, now)
                .await
            }
            MetricSource::Prometheus(s) => match self.prometheus(s) {
                Ok(spec) => spec.fetch(since, now).await.map(Batch::of),
                Err(e) => Err(e),
            },
            MetricSource::Sql(s) => match self.sql(s) {
                Ok(spec) => spec.fetch(since, now).await.map(Batch::of),
                Err(e) => Err(e),
            },
        };
        fetched.map_err(|e| PullError::Fetch {
            metric_id: metric.id.clone(),
            error: redact::redact_text(&e.to_string(), &self.secrets(source)),
            needs_change: e.needs_change(),
        })
    }

    /// Pulls one metric now: fetches what is newer than its last stored
    /// observation, checks each point, stores the good ones with the pull's
    /// status in one transaction, and validates releases whose window has
    /// closed. A failed pull stores only its status (the error, scrubbed).
    pub async fn pull(
        &self,
        metric_id: &str,
        events: &(dyn Fn(PullEvent) + Send + Sync),
    ) -> Result<PullSummary, PullError> {
        let view = self.engine.get_metric(metric_id)?;
        let Some(source) = view.metric.source.clone() else {
            return Err(PullError::NoSource(metric_id.to_string()));
        };
        {
            let mut running = self.running.lock();
            if !running.insert(metric_id.to_string()) {
                return Err(PullError::AlreadyRunning(metric_id.to_string()));
            }
        }
        let _running = Running(self, metric_id.to_string());
        let since = view.observations.latest.map(|(t, _)| t);
        let now = Utc::now();
        let fetched = tokio::select! {
            r = self.fetch(&view.metric, &source, since, now) => r,
            () = self.lifecycle.cancelled() => Err(PullError::Interrupted(metric_id.to_string())),
        };
        let batch = match fetched {
            Ok(b) => b,
            Err(e) => {
                if let PullError::Fetch { error, .. } = &e {
                    tracing::warn!(metric = metric_id, kind = source.kind(), error = %error, "metric pull failed");
                    self.engine
                        .record_pull_failure(metric_id, error.clone(), Utc::now())
                        .await?;
                }
                return Err(e);
            }
        };
        let checked = check_points(metric_id, batch, since, Utc::now());
        let refused_count = checked.refused.len() as u32;
        events(PullEvent::Fetched {
            points: checked.fetched,
            refused: checked.refused.iter().take(MAX_REPORTED).cloned().collect(),
            refused_count,
        });
        let note = if checked.refused.is_empty() {
            String::new()
        } else {
            let first: Vec<&str> = checked.refused.iter().take(3).map(String::as_str).collect();
            redact::redact_text(
                &format!(
                    "{} source: {refused_count} point(s) refused, not stored: {}",
                    source.kind(),
                    first.join("; ")
                ),
                &self.secrets(&source),
            )
        };
        let (stored, metric) = self
            .engine
            .record_pull(
                metric_id,
                checked.observations,
                refused_count,
                note,
                Utc::now(),
            )
            .await?;
        if stored > 0
            && let Some(windows) = &self.options.windows
        {
            // As the background validation does: evidence moves a
            // hypothesis once, so a re-run is harmless.
            match self
                .engine
                .validate_releases(windows, Utc::now(), false, false)
                .await
            {
                Ok(ev) if !ev.is_empty() => {
                    tracing::info!(
                        metric = metric_id,
                        evidence = ev.len(),
                        "releases validated after a pull"
                    )
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "validation after a pull failed"),
            }
        }
        Ok(PullSummary {
            stored,
            refused: refused_count,
            metric,
        })
    }
}

/// The metrics whose poll interval has passed since their last pull (or
/// that were never pulled), as of `now`. Pure.
pub fn due(
    metrics: impl Iterator<Item = (String, u32)>,
    last_pull: impl Fn(&str) -> Option<Time>,
    now: Time,
) -> Vec<String> {
    metrics
        .filter(|(id, minutes)| {
            last_pull(id).is_none_or(|t| now - t >= chrono::Duration::minutes(i64::from(*minutes)))
        })
        .map(|(id, _)| id)
        .collect()
}

/// Pulls every metric whose poll interval has passed, every `tick`, at
/// most `concurrency` at once, skipping one whose pull is still running,
/// until the server stops (a pull under way then ends without storing).
pub async fn background_pulls(
    puller: Arc<Puller>,
    tick: std::time::Duration,
    concurrency: usize,
    lease: std::time::Duration,
) {
    let limit = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let lifecycle = puller.lifecycle().clone();
    loop {
        let ids = {
            let ix = puller.engine().read();
            let with_interval: Vec<(String, u32)> = ix
                .metrics()
                .filter_map(|m| {
                    let minutes = m.metric.source.as_ref()?.poll_minutes()?;
                    Some((m.metric.id.clone(), minutes))
                })
                .collect();
            drop(ix);
            due(
                with_interval.into_iter(),
                |id| {
                    puller
                        .engine()
                        .pull_status(id)
                        .and_then(|p| p.last_pull_time)
                },
                Utc::now(),
            )
        };
        for id in ids {
            if lifecycle.is_stopping() {
                return;
            }
            if puller.is_running(&id) {
                continue;
            }
            let permit = tokio::select! {
                p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
                () = lifecycle.cancelled() => return,
            };
            let p = puller.clone();
            lifecycle.spawn(format!("background pull of metric {}", quote(&id)), async move {
                let _permit = permit;
                let store = p.engine().store().clone();
                let pulled = crate::lease::run_leased(
                    store.as_ref(),
                    &format!("pull:{id}"),
                    lease,
                    p.pull(&id, &|_| {}),
                )
                .await;
                // Another sidecar holds this metric's pulls.
                let Some(pulled) = pulled else { return };
                match pulled {
                    Ok(s) => tracing::info!(metric = %id, stored = s.stored, refused = s.refused, "background pull done"),
                    Err(PullError::Interrupted(_) | PullError::AlreadyRunning(_)) => {}
                    Err(e) => tracing::warn!(metric = %id, error = %e, "background pull failed"),
                }
            });
        }
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            () = lifecycle.cancelled() => return,
        }
    }
}

/// The points of a pull after the checks.
#[derive(Debug, Default)]
pub struct Checked {
    /// Points the source answered (readable or not).
    pub fetched: u32,
    /// To store: one per time (the last answered wins), at or after `since`.
    pub observations: Vec<Observation>,
    /// Why each refused point was refused.
    pub refused: Vec<String>,
}

/// Checks the points of a pull: a time more than the clock skew after
/// `now`, a value that is NaN, infinite or beyond 1e12 in size, or one that
/// was not a number (`unreadable`) is refused. Points older than `since`
/// (the last stored observation) are skipped: they were stored by earlier
/// pulls. Pure, so that it is tested without a source.
pub fn check_points(metric_id: &str, batch: Batch, since: Option<Time>, now: Time) -> Checked {
    let mut out = Checked {
        fetched: (batch.points.len() + batch.unreadable.len()).min(u32::MAX as usize) as u32,
        refused: batch.unreadable,
        ..Checked::default()
    };
    let mut by_time: BTreeMap<Time, f64> = BTreeMap::new();
    for p in batch.points {
        let at = since_text(p.at);
        if p.at > now + MAX_CLOCK_SKEW {
            out.refused.push(format!(
                "the point at {at} is in the future (the server's clock is {}; at most {} s of clock skew is allowed)",
                now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                MAX_CLOCK_SKEW.num_seconds()
            ));
        } else if !p.value.is_finite() {
            out.refused.push(format!(
                "the point at {at} has the value {}, not a finite number",
                p.value
            ));
        } else if p.value.abs() > 1e12 {
            out.refused.push(format!(
                "the point at {at} has the value {}, beyond 1e12 in size",
                p.value
            ));
        } else if since.is_none_or(|s| p.at >= s) {
            by_time.insert(p.at, p.value);
        }
    }
    out.observations = by_time
        .into_iter()
        .map(|(t, v)| Observation {
            metric_id: metric_id.to_string(),
            value: v,
            observe_time: t,
        })
        .collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Time {
        parse_time(s).expect("time")
    }

    #[test]
    fn times_in_the_shapes_sources_send() {
        assert_eq!(t("2026-11-01"), t("2026-11-01T00:00:00Z"));
        assert_eq!(t("2026-11-01 12:00:00"), t("2026-11-01T12:00:00Z"));
        assert_eq!(t("2026-11-01T13:00:00+01:00"), t("2026-11-01T12:00:00Z"));
        assert_eq!(t("1793534400"), t("2026-11-01T12:00:00Z"));
        assert!(parse_time("yesterday").is_none());
    }

    #[test]
    fn bad_points_are_refused_old_ones_skipped_and_a_time_kept_once() {
        let now = t("2026-12-01T00:00:00Z");
        let batch = Batch {
            points: vec![
                RawPoint {
                    at: t("2026-10-01"),
                    value: 1.0,
                },
                RawPoint {
                    at: t("2026-11-01"),
                    value: 2.0,
                },
                RawPoint {
                    at: t("2026-11-02"),
                    value: f64::NAN,
                },
                RawPoint {
                    at: t("2026-11-03"),
                    value: f64::INFINITY,
                },
                RawPoint {
                    at: t("2026-12-02"),
                    value: 3.0,
                },
                RawPoint {
                    at: t("2026-11-04"),
                    value: 4.0,
                },
                RawPoint {
                    at: t("2026-11-04"),
                    value: 5.0,
                },
            ],
            unreadable: vec!["row 3: \"n/a\" is not a number".into()],
        };
        let c = check_points("m", batch, Some(t("2026-11-01")), now);
        assert_eq!(c.fetched, 8);
        assert_eq!(c.refused.len(), 4, "{:?}", c.refused);
        assert!(c.refused[1].contains("NaN"), "{:?}", c.refused);
        assert!(c.refused[3].contains("future"), "{:?}", c.refused);
        let kept: Vec<(Time, f64)> = c
            .observations
            .iter()
            .map(|o| (o.observe_time, o.value))
            .collect();
        assert_eq!(kept, vec![(t("2026-11-01"), 2.0), (t("2026-11-04"), 5.0)]);
    }
}
