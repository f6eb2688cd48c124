//! Tracker sync: pull backlog items from each source's tracker into the
//! store, incrementally and politely; and write-back ([`write`]): create the
//! slices of a split as issues in the tracker.
//!
//! One [`Connector`] per tracker knows its HTTP dialect (URLs, auth header,
//! pagination, field mapping); the [`Syncer`] drives any of them the same
//! way: ask for what changed since the source's cursor (ascending by update
//! time), skip what the cursor says is stored and unchanged (and let the
//! engine compare the boundary items that inclusive time filters return with
//! the stored ones, since coarse tracker times cannot tell an edit within
//! the cursor's second), and store each page together with the advanced cursor in one transaction,
//! so a sync killed anywhere resumes where it stopped.

pub mod github;
pub mod gitlab;
pub mod http;
pub mod identity;
pub mod jira;
pub mod redact;
pub mod redmine;
pub mod write;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{StatusCode, Url};

use crate::domain::{
    Item, Removal, RemovalReason, Source, SyncRunState, SyncState, Time, TrackerKind, item_key,
};
use crate::engine::Engine;
use crate::lifecycle::Lifecycle;
use crate::outbound::OutboundPolicy;
use http::{Fetched, HttpClient};

/// Items per page asked of every tracker (the most each allows).
pub const PAGE_SIZE: usize = 100;

/// At most this many items a completed full sync did not return are asked
/// about one by one (deleted or moved?); the rest are marked as not
/// returned, so that a project emptied at once costs no flood of requests.
const MAX_PROBES: usize = 25;

/// The most characters of a removal's detail (where a moved item went, what
/// the tracker said) that are kept.
const MAX_DETAIL: usize = 240;

/// Parsed pages the fetcher may hold ready while the writer stores others:
/// enough to keep the writer busy, few enough to bound memory (a page of
/// 100 items is a few hundred kB at most).
const PAGES_AHEAD: usize = 16;

/// At most this many pages are stored in one transaction. The writer takes
/// the pages already waiting, so a writer that keeps up stores each page on
/// its own, and one that falls behind commits less often: each commit
/// writes every B-tree page it touched once, however many items touched it.
const PAGES_PER_COMMIT: usize = 16;

/// What is wrong with a token variable, for [`SyncError::MissingToken`].
fn token_var_problem(e: &std::env::VarError) -> &'static str {
    match e {
        std::env::VarError::NotPresent => "is not set",
        std::env::VarError::NotUnicode(_) => "is not valid Unicode",
    }
}

/// Why a sync failed. Messages name the source and the cause; they never
/// hold a token.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(
        "source {source_id:?}: the tracker refused the credentials (401): {message}; check the token in the environment variable the source names"
    )]
    Unauthorized { source_id: String, message: String },
    /// The tracker would answer the source's requests as its anonymous
    /// user, though the source names a token: the key is wrong or revoked,
    /// or the tracker ignores keys (Redmine with its REST API disabled).
    /// Redmine answers a wrong key on a public project as anonymous (200),
    /// so only its "who am I" endpoint tells ([`identity`]).
    #[error(
        "source {source_id:?}: the tracker does not accept the key in {var}: {endpoint} answered {status} ({message}), so every request would run as the anonymous user (public issues only, no write-back); check the key (Redmine: My account, API access key) and that the tracker's REST API is enabled (Redmine: Administration, Settings, API)"
    )]
    Anonymous {
        source_id: String,
        var: String,
        endpoint: String,
        status: u16,
        message: String,
    },
    #[error(
        "source {source_id:?}: access denied (403): {message}; the token may lack a scope or the project is private"
    )]
    Forbidden { source_id: String, message: String },
    #[error(
        "source {source_id:?}: {} ({status}) at {url}: {message}; check base_url and project_key",
        if *.status == 410 { "gone" } else { "not found" }
    )]
    NotFound {
        source_id: String,
        url: String,
        message: String,
        /// 404, or 410 (GitHub's "deleted").
        status: u16,
    },
    #[error("source {source_id:?}: the tracker answered HTTP {status}: {message}")]
    Http {
        source_id: String,
        status: u16,
        message: String,
    },
    /// The tracker could not be reached, or kept failing. `source` is the
    /// last transport error, when there was one (a 5xx has none).
    #[error("source {source_id:?}: {detail}")]
    Transport {
        source_id: String,
        detail: String,
        #[source]
        source: Option<reqwest::Error>,
    },
    /// A redirect that was not followed: to another origin, or any answer
    /// to a write (see [`http`]).
    #[error("source {source_id:?}: {detail}")]
    Redirected { source_id: String, detail: String },
    /// A next page at another origin than the source's: not fetched, since
    /// every request carries the token.
    #[error(
        "source {source_id:?}: the tracker named its next page at another origin ({to}) than the source's ({expected}); not followed, so that the token never leaves the source's origin; check base_url"
    )]
    OtherOrigin {
        source_id: String,
        to: String,
        expected: String,
    },
    /// The server's outbound policy does not let the source use its token
    /// variable or reach its host ([`crate::outbound`]): nothing was sent.
    #[error(
        "source {source_id:?}: refused by the server's outbound policy: {detail}; nothing was sent"
    )]
    Refused { source_id: String, detail: String },
    #[error("source {source_id:?}: {why}")]
    RateLimited {
        source_id: String,
        why: RateLimitStop,
    },
    /// `source` is the JSON error, when the body did not parse; `None` when
    /// it parsed but made no sense (e.g. a page token that repeats).
    #[error("source {source_id:?}: malformed response from {url}: {detail}")]
    Malformed {
        source_id: String,
        url: String,
        detail: String,
        #[source]
        source: Option<serde_json::Error>,
    },
    /// `source` says whether the variable is unset or not Unicode.
    #[error(
        "source {source_id:?}: the environment variable {var} that holds its token {}",
        token_var_problem(.source)
    )]
    MissingToken {
        source_id: String,
        var: String,
        #[source]
        source: std::env::VarError,
    },
    /// `source` is the URL error when the setting did not make a URL.
    #[error("source {source_id:?}: {detail}")]
    Config {
        source_id: String,
        detail: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    #[error(
        "source {source_id:?}: interrupted: the server is shutting down; the pages stored so far are kept and the next sync resumes from there"
    )]
    Interrupted { source_id: String },
    /// The source is a push source ([`TrackerKind::Push`]): there is no
    /// tracker to sync from or write to. `action` says what was refused.
    #[error(
        "source {source_id:?} is a push source: an integration sends its items with UpsertItems, so plumbline {action}"
    )]
    PushSource {
        source_id: String,
        action: &'static str,
    },
    #[error("a sync of source {0:?} is already running")]
    AlreadyRunning(String),
    /// Another sidecar of the shared database holds the source's sync
    /// lease (or took it while this sync ran).
    #[error("a sync of source {0:?} is running on another sidecar sharing the database")]
    RunningElsewhere(String),
    #[error("a split of item {} is already being applied", crate::engine::quote(.0))]
    SplitRunning(String),
    /// The HTTP client or a request body could not be built: a bug or a
    /// broken TLS setup, not the tracker's fault.
    #[error("cannot build the HTTP client or request: {0}")]
    Client(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error(transparent)]
    Engine(#[from] crate::engine::Error),
}

impl SyncError {
    /// The same error with every value of `secrets` (a source's token and
    /// the forms it is sent in) replaced in its messages: applied where an
    /// error leaves a sync, before it is logged, stored or returned. The
    /// causes kept as sources are reqwest's and serde's errors, which name
    /// URLs and positions, not tokens.
    pub fn redacted(self, secrets: &[String]) -> SyncError {
        use redact::scrub;
        if secrets.is_empty() {
            return self;
        }
        let s = |t: String| scrub(&t, secrets);
        match self {
            SyncError::Unauthorized { source_id, message } => SyncError::Unauthorized {
                source_id,
                message: s(message),
            },
            SyncError::Forbidden { source_id, message } => SyncError::Forbidden {
                source_id,
                message: s(message),
            },
            SyncError::Anonymous {
                source_id,
                var,
                endpoint,
                status,
                message,
            } => SyncError::Anonymous {
                source_id,
                var,
                endpoint: s(endpoint),
                status,
                message: s(message),
            },
            SyncError::NotFound {
                source_id,
                url,
                message,
                status,
            } => SyncError::NotFound {
                source_id,
                url: s(url),
                message: s(message),
                status,
            },
            SyncError::Http {
                source_id,
                status,
                message,
            } => SyncError::Http {
                source_id,
                status,
                message: s(message),
            },
            SyncError::Transport {
                source_id,
                detail,
                source,
            } => SyncError::Transport {
                source_id,
                detail: s(detail),
                source,
            },
            SyncError::Redirected { source_id, detail } => SyncError::Redirected {
                source_id,
                detail: s(detail),
            },
            SyncError::Refused { source_id, detail } => SyncError::Refused {
                source_id,
                detail: s(detail),
            },
            SyncError::OtherOrigin {
                source_id,
                to,
                expected,
            } => SyncError::OtherOrigin {
                source_id,
                to: s(to),
                expected: s(expected),
            },
            SyncError::Malformed {
                source_id,
                url,
                detail,
                source,
            } => SyncError::Malformed {
                source_id,
                url: s(url),
                detail: s(detail),
                source,
            },
            SyncError::Config {
                source_id,
                detail,
                source,
            } => SyncError::Config {
                source_id,
                detail: s(detail),
                source,
            },
            other => other,
        }
    }
}

/// The secrets of `source` to scrub from its errors: its token, and the forms
/// its connector sends it in (`Bearer X`, Jira's `Basic` of `email:token`).
pub fn source_secrets(source: &Source) -> Vec<String> {
    let Ok(Some(token)) = source_token(source) else {
        return Vec::new();
    };
    let Some(conn) = connector(source.kind) else {
        return vec![token];
    };
    let mut secrets = conn
        .headers(source, Some(&token))
        .map(|h| redact::secrets_of(&h))
        .unwrap_or_default();
    secrets.push(token);
    redact::secret_set(secrets)
}

/// Refuses a stored source that the outbound policy does not allow (one
/// created before the policy, or before the operator narrowed it), before
/// anything is sent: its token variable, or its base_url's user, password
/// or address host. A host name is checked as it resolves.
pub fn check_source(policy: &OutboundPolicy, source: &Source) -> Result<(), SyncError> {
    let refused = |detail: String| SyncError::Refused {
        source_id: source.id.clone(),
        detail,
    };
    policy
        .check_token_env(&source.token_env)
        .map_err(|e| refused(format!("token_env refused: {e}")))?;
    if let Ok(url) = Url::parse(&source.base_url) {
        policy
            .check_url(&url)
            .map_err(|e| refused(format!("base_url refused: {e}")))?;
    }
    Ok(())
}

/// Checks that a next page stays at the origin (scheme, host, port) of the
/// sync's first request, which the source's `base_url` gave: every
/// connector's pages pass here, so no tracker answer can send the token
/// elsewhere.
pub fn same_origin_page(source: &Source, first: &Url, next: &Url) -> Result<(), SyncError> {
    if next.origin() == first.origin() {
        return Ok(());
    }
    Err(SyncError::OtherOrigin {
        source_id: source.id.clone(),
        to: next.origin().ascii_serialization(),
        expected: first.origin().ascii_serialization(),
    })
}

/// Why the shared client stopped waiting out a tracker's rate limit.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RateLimitStop {
    /// One wait would be longer than `sync.max_wait_secs`.
    #[error(
        "rate limited until {until}, longer than the configured maximum wait (sync.max_wait_secs)"
    )]
    TooLong { until: Time },
    /// The tracker answered "slow down" again after every wait: a
    /// misbehaving tracker (or proxy) is not waited out forever.
    #[error(
        "the tracker kept answering HTTP {status} (rate limited) to the same request: {answers} answers over {waited_secs:.1} s; gave up after {waits} waits (sync.max_rate_limit_waits)"
    )]
    TooOften {
        status: u16,
        answers: u32,
        waits: u32,
        waited_secs: f64,
    },
}

/// When a tracker says to come back, as its connector reads its own
/// rate-limit headers ([`Connector::rate_limit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimit {
    /// At this time (the reset of the tracker's window).
    Until(Time),
    /// After this long.
    After(std::time::Duration),
}

impl RateLimit {
    /// The time to come back, never before `now`.
    pub fn at(self, now: Time) -> Time {
        match self {
            RateLimit::Until(t) => t.max(now),
            RateLimit::After(d) => {
                now + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::days(1))
            }
        }
    }
}

/// Progress of a sync, in the order it happens.
#[derive(Debug, Clone, PartialEq)]
pub enum SyncEvent {
    PageFetched {
        page: u32,
        item_count: u32,
        upserted: u32,
        total_upserted: u32,
        requests: u32,
        expected_total: Option<u64>,
    },
    RateLimitWait {
        until: Time,
        reason: String,
    },
}

/// What a finished sync did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncSummary {
    pub pages: u32,
    pub requests: u32,
    pub upserted: u32,
    pub not_modified: bool,
    /// Items marked removed: those the tracker said are gone (GitLab's
    /// moved issues) and, after a completed full sync, those it no longer
    /// returned.
    pub removed: u32,
    /// What the sync did that may not be what was meant (a source without a
    /// token that the tracker answers as anonymous).
    pub warnings: Vec<String>,
}

/// One page of tracker items, mapped to the domain.
#[derive(Debug, Default)]
pub struct Page {
    pub items: Vec<Item>,
    /// The next page's URL, exactly as the tracker gave it or built from its
    /// pagination fields; `None` on the last page.
    pub next: Option<Url>,
    /// The tracker's total, when it says.
    pub expected_total: Option<u64>,
    /// Issues of the page that the tracker says left the project, by
    /// external id (GitLab's moved issues, listed closed with
    /// `moved_to_id`): marked removed, not stored as items.
    pub removed: Vec<Removed>,
}

/// An issue a page says left the project.
#[derive(Debug)]
pub struct Removed {
    pub external_id: String,
    pub reason: RemovalReason,
    pub detail: String,
    /// When the tracker last updated it: the cursor moves past it, so an
    /// incremental sync does not read it again.
    pub update_time: Option<Time>,
}

/// One tracker's HTTP dialect.
pub trait Connector: Send + Sync {
    /// Headers of every request: auth built from `token` (when the source
    /// names one) and the tracker's Accept/version headers.
    fn headers(
        &self,
        source: &Source,
        token: Option<&str>,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, SyncError>;

    /// The first page of "everything updated at or after `since`" (all when
    /// `None`), closed items included, ascending by update time.
    fn first_url(&self, source: &Source, since: Option<Time>, now: Time) -> Result<Url, SyncError>;

    /// Maps one answer to items and the next page.
    fn parse_page(&self, source: &Source, fetched: &Fetched) -> Result<Page, SyncError>;

    /// This tracker's own rate-limit dialect (`X-RateLimit-*`,
    /// `RateLimit-*`), read from any answer: on an answer that is not a
    /// success, `Some` means "rate limited, come back then"; on a success,
    /// `Some` means "that was the last request of the window, wait before
    /// the next". The standard `Retry-After`, a bare 429, the minimum delay
    /// and the bound on waits are the shared client's ([`http`]); this
    /// hook only knows the headers. `None` (the default): no dialect.
    fn rate_limit(&self, _status: StatusCode, _headers: &HeaderMap) -> Option<RateLimit> {
        None
    }

    /// The URL of one issue (by external id), asked about an item that a
    /// completed full sync did not return, to tell why it went; `None`: the
    /// tracker has no such answer, and the item is marked
    /// [`RemovalReason::NotReturned`].
    fn issue_url(&self, _source: &Source, _external_id: &str) -> Result<Option<Url>, SyncError> {
        Ok(None)
    }

    /// The source's own listing narrowed to one issue, for a tracker whose
    /// single-issue answer cannot say whether the issue is still in the
    /// source's project (Redmine names a project by id and name, the source
    /// by identifier, and subprojects are in the listing). Asked before
    /// [`issue_url`](Self::issue_url); an issue it lists is still there (an
    /// offset page shifted by an edit during the sync skipped it) and is not
    /// marked. `None` (the default): [`removal_of`](Self::removal_of) tells.
    fn listed_issue_url(
        &self,
        _source: &Source,
        _external_id: &str,
    ) -> Result<Option<Url>, SyncError> {
        Ok(None)
    }

    /// What a success answer to [`issue_url`](Self::issue_url) says of an
    /// issue the full listing left out: moved (with where), or `None` when
    /// it is still in the source's project (then it is not marked). The
    /// shared client followed any redirect within the origin, so `asked`
    /// may differ from `fetched.url`.
    fn removal_of(
        &self,
        _source: &Source,
        _asked: &Url,
        _fetched: &Fetched,
    ) -> Option<(RemovalReason, String)> {
        Some((RemovalReason::NotReturned, String::new()))
    }

    /// Whether a 404 to [`issue_url`](Self::issue_url) means the issue was
    /// deleted; `false` where it may as well have moved somewhere the token
    /// cannot read (GitHub, which says 410 for deleted).
    fn not_found_is_deleted(&self) -> bool {
        true
    }

    /// The endpoint that answers who the token authenticates as, for a
    /// tracker that answers a rejected token as its anonymous user instead
    /// of refusing it (Redmine); `None` (the default) where a wrong token is
    /// refused on every request anyway (GitHub, GitLab and Jira answer 401).
    fn identity_url(&self, _source: &Source) -> Result<Option<Url>, SyncError> {
        Ok(None)
    }

    /// The user an answer of [`identity_url`](Self::identity_url) names (its
    /// login), and nothing else of it: Redmine's answer holds the API key.
    fn parse_identity(&self, source: &Source, _fetched: &Fetched) -> Result<String, SyncError> {
        Err(SyncError::Config {
            source_id: source.id.clone(),
            detail: "this tracker has no identity endpoint".into(),
            source: None,
        })
    }

    /// The URL and JSON body that create one issue under `parent` in the
    /// source's project: `title`, `body` (kept whole, so its first line can
    /// mark where the issue came from) and, where the tracker holds one, the
    /// estimate in the field `estimate_field` names.
    fn create_issue_request(
        &self,
        source: &Source,
        _parent: &Item,
        _title: &str,
        _body: &str,
        _estimate: Option<f64>,
    ) -> Result<(Url, serde_json::Value), SyncError> {
        Err(not_writable(source))
    }

    /// Maps the answer to a create request (`request`, the body sent) to the
    /// created item, as a sync would map it.
    fn parse_created(
        &self,
        source: &Source,
        _request: &serde_json::Value,
        _fetched: &Fetched,
    ) -> Result<Item, SyncError> {
        Err(not_writable(source))
    }
}

/// The error of a connector that cannot create issues.
fn not_writable(source: &Source) -> SyncError {
    SyncError::Config {
        source_id: source.id.clone(),
        detail: "creating issues in this tracker is not supported".into(),
        source: None,
    }
}

/// The token of a source, read from the environment variable it names at
/// each use (never stored); `None` when it names none.
pub fn source_token(source: &Source) -> Result<Option<String>, SyncError> {
    if source.token_env.is_empty() {
        return Ok(None);
    }
    std::env::var(&source.token_env)
        .map(Some)
        .map_err(|e| SyncError::MissingToken {
            source_id: source.id.clone(),
            var: source.token_env.clone(),
            source: e,
        })
}

/// `n` as short as it reads well: at most two decimals, no trailing zeros
/// (`4`, `2.5`, `1.33`). For estimates written into labels.
pub fn short_number(n: f64) -> String {
    let s = format!("{n:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" {
        "0".into()
    } else {
        s.to_string()
    }
}

/// The connector of a tracker kind; `None` for [`TrackerKind::Push`],
/// which has no tracker to talk to, so that every caller says what a push
/// source means for it.
pub fn connector(kind: TrackerKind) -> Option<Box<dyn Connector>> {
    match kind {
        TrackerKind::Github => Some(Box::new(github::GitHub)),
        TrackerKind::Gitlab => Some(Box::new(gitlab::GitLab)),
        TrackerKind::Jira => Some(Box::new(jira::Jira)),
        TrackerKind::Redmine => Some(Box::new(redmine::Redmine)),
        TrackerKind::Push => None,
    }
}

/// Parses tracker times: RFC 3339 (`2024-01-02T03:04:05Z`, with offset or
/// fraction) and Jira's `2023-06-24T19:24:50.000+0000` (no colon in the
/// offset), which RFC 3339 parsers reject.
pub fn parse_time(s: &str) -> Option<Time> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z")
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Parses a JSON body, with an error that names the source and URL.
pub fn parse_json<T: serde::de::DeserializeOwned>(
    source: &Source,
    fetched: &Fetched,
) -> Result<T, SyncError> {
    // serde's message quotes the values it did not expect; the tracker's
    // body is not shown, only where it went wrong.
    serde_json::from_slice(&fetched.body).map_err(|e| SyncError::Malformed {
        source_id: source.id.clone(),
        url: shown_url(&fetched.url),
        detail: format!(
            "not the expected JSON ({} error at line {} column {})",
            match e.classify() {
                serde_json::error::Category::Io => "read",
                serde_json::error::Category::Syntax => "syntax",
                serde_json::error::Category::Data => "data",
                serde_json::error::Category::Eof => "end-of-input",
            },
            e.line(),
            e.column()
        ),
        source: Some(e),
    })
}

/// `url` as an error may show it: without the user and password a
/// `base_url` may carry.
pub fn shown_url(url: &Url) -> String {
    let mut u = url.clone();
    // Both fail only for URLs that cannot have credentials at all.
    let _ = u.set_password(None);
    let _ = u.set_username("");
    u.to_string()
}

/// The base URL of a source joined with `path`, with an error naming it.
pub fn join_url(source: &Source, path: &str) -> Result<Url, SyncError> {
    let base = format!("{}/", source.base_url.trim_end_matches('/'));
    Url::parse(&base)
        .and_then(|b| b.join(path.trim_start_matches('/')))
        .map_err(|e| SyncError::Config {
            source_id: source.id.clone(),
            detail: format!("bad base_url or project_key: {e}"),
            source: Some(Box::new(e)),
        })
}

/// The `rel="next"` target of an RFC 8288 `Link` header, exactly as given.
pub fn next_link(fetched: &Fetched) -> Option<Url> {
    let link = fetched.header("link")?;
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let is_next = params
            .split(';')
            .any(|p| matches!(p.trim().split_once('='), Some(("rel", v)) if v.trim_matches('"').split_whitespace().any(|r| r == "next")));
        if !is_next {
            return None;
        }
        Url::parse(target.trim().trim_start_matches('<').trim_end_matches('>')).ok()
    })
}

/// A header value that must be valid, with an error naming the source.
pub fn header_value(source: &Source, value: &str) -> Result<HeaderValue, SyncError> {
    let mut v = HeaderValue::from_str(value).map_err(|e| SyncError::Config {
        source_id: source.id.clone(),
        detail: "the token holds characters not allowed in an HTTP header".into(),
        // The error names no part of the value, so it cannot leak the token.
        source: Some(Box::new(e)),
    })?;
    v.set_sensitive(true);
    Ok(v)
}

/// Runs syncs: at most one at a time per source.
pub struct Syncer {
    engine: Arc<Engine>,
    http: HttpClient,
    /// The server's stop signal, which every sync listens to between pages,
    /// and its task tracker, which syncs started in the background of a
    /// call are spawned through.
    lifecycle: Lifecycle,
    running: Mutex<HashSet<String>>,
    /// Whose keys were recently confirmed by the tracker ([`identity`]).
    identities: identity::Confirmed,
    /// Items whose split is being applied ([`Syncer::apply_split`]).
    splitting: Mutex<HashSet<String>>,
    /// How long a source's sync lease lasts unrenewed on a shared
    /// database ([`crate::lease`]).
    lease: std::time::Duration,
}

/// Removes a source from the running set when its sync ends, however it ends.
struct RunningGuard<'a> {
    syncer: &'a Syncer,
    source_id: String,
}

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        self.syncer.running.lock().remove(&self.source_id);
    }
}

impl Syncer {
    pub fn new(engine: Arc<Engine>, http: HttpClient) -> Self {
        Syncer {
            engine,
            http,
            lifecycle: Lifecycle::default(),
            running: Mutex::new(HashSet::new()),
            identities: identity::Confirmed::default(),
            splitting: Mutex::new(HashSet::new()),
            lease: std::time::Duration::from_secs(30),
        }
    }

    /// The same syncer with sync leases lasting `ttl` unrenewed.
    pub fn with_lease(mut self, ttl: std::time::Duration) -> Self {
        self.lease = ttl;
        self
    }

    /// The same syncer, stopping its syncs when `lifecycle` stops (without
    /// it, a syncer's syncs run to their end).
    pub fn within(mut self, lifecycle: Lifecycle) -> Self {
        self.lifecycle = lifecycle;
        self
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Every secret known to the server that an error of `source` must not
    /// show: the source's token in the forms it is sent in, and the value
    /// of every variable the outbound policy lets sources name.
    pub fn secrets(&self, source: &Source) -> Vec<String> {
        let mut all = source_secrets(source);
        all.extend(self.http.outbound().known_secrets());
        redact::secret_set(all)
    }

    /// A sync error of `source` as it may be shown again: scrubbed of every
    /// known secret and of credential-like words. Errors are scrubbed
    /// before they are stored; this covers those a database kept from
    /// before, and secrets set since.
    pub fn shown_error(&self, source: &Source, stored: &str) -> String {
        if stored.is_empty() {
            return String::new();
        }
        redact::redact_text(stored, &self.secrets(source))
    }

    /// The lifetime syncs run within: spawn a sync that outlives its caller
    /// through it, so that a shutdown waits for the sync.
    pub fn lifecycle(&self) -> &Lifecycle {
        &self.lifecycle
    }

    /// Whether a sync of `source_id` is under way.
    pub fn is_running(&self, source_id: &str) -> bool {
        self.running.lock().contains(source_id)
    }

    /// Syncs one source now. `full` ignores the cursor. Progress goes to
    /// `events`. Fails with [`SyncError::AlreadyRunning`] if another sync of
    /// the source is under way, and with [`SyncError::Interrupted`] when
    /// the server stops first (after storing the pages in hand).
    pub async fn sync(
        &self,
        source_id: &str,
        full: bool,
        events: &(dyn Fn(SyncEvent) + Send + Sync),
    ) -> Result<SyncSummary, SyncError> {
        let source = self.engine.get_source(source_id)?;
        // Refused before anything is recorded: a push source has no sync
        // state to keep.
        if !source.kind.is_tracker() {
            return Err(SyncError::PushSource {
                source_id: source_id.to_string(),
                action: "never syncs it",
            });
        }
        if self.lifecycle.is_stopping() {
            return Err(SyncError::Interrupted {
                source_id: source_id.to_string(),
            });
        }
        if !self.running.lock().insert(source_id.to_string()) {
            return Err(SyncError::AlreadyRunning(source_id.to_string()));
        }
        let _guard = RunningGuard {
            syncer: self,
            source_id: source_id.to_string(),
        };
        // On a shared database, one sidecar syncs a source at a time.
        let store = self.engine.store().clone();
        crate::lease::run_leased(
            store.as_ref(),
            &format!("sync:{source_id}"),
            self.lease,
            self.sync_held(&source, full, events),
        )
        .await
        .unwrap_or_else(|| Err(SyncError::RunningElsewhere(source_id.to_string())))
    }

    /// [`sync`](Self::sync) once the source is this sidecar's to sync.
    async fn sync_held(
        &self,
        source: &Source,
        full: bool,
        events: &(dyn Fn(SyncEvent) + Send + Sync),
    ) -> Result<SyncSummary, SyncError> {
        let source_id = source.id.as_str();
        let mut state = self.engine.sync_state(source_id).await?;
        state.state = SyncRunState::Running;
        state.last_start_time = Some(Utc::now());
        self.engine.save_sync_state(&state).await?;

        let mut summary = SyncSummary::default();
        let result = self
            .run(source, full, &mut state, &mut summary, events)
            .await
            .map_err(|e| e.redacted(&self.secrets(source)));
        state.last_finish_time = Some(Utc::now());
        state.last_request_count = summary.requests as i64;
        state.last_upserted_count = summary.upserted as i64;
        match &result {
            Ok(()) => {
                state.state = SyncRunState::Succeeded;
                state.last_error.clear();
            }
            Err(e) => {
                state.state = SyncRunState::Failed;
                state.last_error = e.to_string();
                if matches!(e, SyncError::Interrupted { .. }) {
                    tracing::info!(
                        source = source_id,
                        pages = summary.pages,
                        "sync stopped for shutdown"
                    );
                } else {
                    tracing::warn!(source = source_id, error = %e, "sync failed");
                }
            }
        }
        // The source may have been deleted meanwhile; then there is no state to keep.
        if let Err(e) = self.engine.save_sync_state(&state).await {
            tracing::warn!(source = source_id, error = %e, "cannot save the sync state");
        }
        result.map(|()| summary)
    }

    /// The page loop, in two halves that overlap: [`Self::fetch_pages`] fetches
    /// and parses the next pages while [`Self::store_pages`] writes earlier
    /// ones. The channel between them holds at most [`PAGES_AHEAD`] pages
    /// and keeps their order; the writer alone moves the cursor and stores
    /// whole pages with it in one transaction, so a failure on either side
    /// leaves the store at the end of the last page written, and a resume
    /// starts there.
    async fn run(
        &self,
        source: &Source,
        full: bool,
        state: &mut SyncState,
        summary: &mut SyncSummary,
        events: &(dyn Fn(SyncEvent) + Send + Sync),
    ) -> Result<(), SyncError> {
        check_source(self.http.outbound(), source)?;
        let conn = connector(source.kind).ok_or_else(|| SyncError::PushSource {
            source_id: source.id.clone(),
            action: "never syncs it",
        })?;
        let token = source_token(source)?;
        let headers = conn.headers(source, token.as_deref())?;
        // A tracker that answers a rejected key as anonymous is asked who
        // the key is first (see `identity`).
        let mut asked = summary.requests;
        let identity = self.identity(source, events, &mut asked).await;
        summary.requests = asked;
        match identity {
            Ok(identity::Identity::NoToken) => {
                let w = identity::no_token_warning(source);
                tracing::warn!("{w}");
                summary.warnings.push(w);
            }
            Ok(_) => {}
            // An identity endpoint that a proxy hides or answers oddly does
            // not say the key is wrong: the sync goes on, and says so. A
            // key answered as anonymous, a missing variable, an unreachable
            // tracker fail the sync as they would fail its listing.
            Err(
                e @ (SyncError::NotFound { .. }
                | SyncError::Http { .. }
                | SyncError::Malformed { .. }),
            ) => {
                let w = format!(
                    "could not check who the key authenticates as: {}; the sync went on, and a key the tracker answers as anonymous syncs only public issues",
                    e.redacted(&self.secrets(source))
                );
                tracing::warn!("{w}");
                summary.warnings.push(w);
            }
            Err(e) => return Err(e),
        }
        if full {
            state.cursor = Default::default();
            state.etag.clear();
            state.etag_url.clear();
        }
        let first = conn.first_url(source, state.cursor.time, Utc::now())?;
        // A validator is only sent for the first page, and only when it was
        // kept for this very URL.
        let conditional = (!state.etag.is_empty() && state.etag_url == first.as_str())
            .then(|| state.etag.clone());
        let requests = AtomicU32::new(summary.requests);
        let (tx, rx) = tokio::sync::mpsc::channel(PAGES_AHEAD);
        let fetch = self.fetch_pages(
            source,
            conn.as_ref(),
            &headers,
            (first.clone(), conditional),
            events,
            &requests,
            tx,
        );
        // The keys a full sync returned, to mark the others removed once it
        // completes. A full sync cut short (failed, interrupted) marks
        // nothing, and the incremental sync that resumes it does not know
        // what the first part returned, so it marks nothing either.
        let mut returned = HashSet::new();
        let result = {
            let store = self.store_pages(full, &first, state, summary, events, rx, &mut returned);
            tokio::pin!(fetch, store);
            // The writer ends the sync. On its error the fetcher is dropped at
            // once, mid-request or mid-wait; on its success the fetcher has
            // already sent its last page.
            let mut fetching = true;
            loop {
                tokio::select! {
                    () = &mut fetch, if fetching => fetching = false,
                    r = &mut store => break r,
                }
            }
        };
        summary.requests = requests.load(Ordering::Relaxed);
        result?;
        if full && !summary.not_modified {
            if returned.is_empty() {
                // A tracker that lists nothing to a token that lost its
                // access (or a project emptied by mistake) must not empty
                // the backlog: nothing is marked.
                tracing::warn!(
                    source = source.id.as_str(),
                    "the full sync returned no item; none is marked removed"
                );
            } else {
                let missing = self.engine.unreturned(&source.id, &returned);
                let removals = self
                    .why_removed(source, conn.as_ref(), &headers, missing, events, summary)
                    .await;
                summary.removed += self.engine.mark_removed(removals).await? as u32;
            }
        }
        Ok(())
    }

    /// Asks the tracker about each item a completed full sync did not
    /// return (the first [`MAX_PROBES`] of them; the rest are marked
    /// [`RemovalReason::NotReturned`]): deleted, moved (and where), or still
    /// in the project after all (then it is not marked). A question that
    /// fails tells nothing: the item is marked as not returned.
    async fn why_removed(
        &self,
        source: &Source,
        conn: &dyn Connector,
        headers: &[(HeaderName, HeaderValue)],
        missing: Vec<String>,
        events: &(dyn Fn(SyncEvent) + Send + Sync),
        summary: &mut SyncSummary,
    ) -> Vec<(String, Removal)> {
        let prefix = item_key(&source.id, "");
        let mut out = Vec::with_capacity(missing.len());
        // A question that failed (rate limited, refused, unreachable) would
        // fail again: the rest are marked without asking.
        let mut asking = true;
        for (i, key) in missing.into_iter().enumerate() {
            let external_id = key.strip_prefix(&prefix).unwrap_or(&key).to_string();
            let not_returned = (RemovalReason::NotReturned, String::new());
            if !asking || i >= MAX_PROBES || self.lifecycle.is_stopping() {
                out.push((key, not_returned));
                continue;
            }
            match self
                .still_listed(source, conn, headers, &external_id, events, summary)
                .await
            {
                Ok(true) => {
                    tracing::info!(
                        source = source.id.as_str(),
                        item = key.as_str(),
                        "the full listing left out an item the project still lists (a page shifted during the sync); not marked"
                    );
                    continue;
                }
                Ok(false) => {}
                Err(e) => {
                    self.probe_failed(source, &key, e);
                    asking = false;
                    out.push((key, not_returned));
                    continue;
                }
            }
            let url = match conn.issue_url(source, &external_id) {
                Ok(Some(url)) => url,
                _ => {
                    out.push((key, not_returned));
                    continue;
                }
            };
            let fetched = self
                .http
                .get(
                    conn,
                    &source.id,
                    &url,
                    headers,
                    None,
                    events,
                    &mut summary.requests,
                )
                .await;
            let why = match fetched {
                Ok(f) => conn.removal_of(source, &url, &f),
                Err(SyncError::NotFound {
                    status, message, ..
                }) => {
                    let reason = if status == 410 || conn.not_found_is_deleted() {
                        RemovalReason::Deleted
                    } else {
                        RemovalReason::NotReturned
                    };
                    let said = if message.is_empty() {
                        format!("the tracker answers HTTP {status}")
                    } else {
                        format!("the tracker answers HTTP {status}: {message}")
                    };
                    Some((reason, redact::scrub(&said, &self.secrets(source))))
                }
                Err(e) => {
                    self.probe_failed(source, &key, e);
                    asking = false;
                    Some(not_returned)
                }
            };
            if let Some(w) = why {
                out.push((key, w));
            }
        }
        let now = Utc::now();
        out.into_iter()
            .map(|(k, (reason, detail))| {
                // A tracker's words, bounded like every shown answer.
                let detail = match detail.char_indices().nth(MAX_DETAIL) {
                    Some((cut, _)) => format!("{}…", &detail[..cut]),
                    None => detail,
                };
                let r = Removal {
                    remove_time: now,
                    reason,
                    detail,
                };
                (k, r)
            })
            .collect()
    }

    /// Whether the source's listing narrowed to `external_id`
    /// ([`Connector::listed_issue_url`]) still lists it; `false` where the
    /// tracker has no such listing.
    async fn still_listed(
        &self,
        source: &Source,
        conn: &dyn Connector,
        headers: &[(HeaderName, HeaderValue)],
        external_id: &str,
        events: &(dyn Fn(SyncEvent) + Send + Sync),
        summary: &mut SyncSummary,
    ) -> Result<bool, SyncError> {
        let Some(url) = conn.listed_issue_url(source, external_id)? else {
            return Ok(false);
        };
        let fetched = self
            .http
            .get(
                conn,
                &source.id,
                &url,
                headers,
                None,
                events,
                &mut summary.requests,
            )
            .await?;
        let page = conn.parse_page(source, &fetched)?;
        Ok(page.items.iter().any(|it| it.external_id == external_id))
    }

    fn probe_failed(&self, source: &Source, key: &str, e: SyncError) {
        tracing::info!(
            source = source.id.as_str(),
            item = key,
            error = %e.redacted(&self.secrets(source)),
            "cannot ask the tracker why an item went; it and the rest are marked as not returned"
        );
    }

    /// Fetches and parses pages from `first` on, sending each to the writer
    /// in order, until the last page, a 304 or a failure, which is sent too.
    /// Stops early when the writer is gone.
    #[allow(clippy::too_many_arguments)]
    async fn fetch_pages(
        &self,
        source: &Source,
        conn: &dyn Connector,
        headers: &[(HeaderName, HeaderValue)],
        (first, conditional): (Url, Option<String>),
        events: &(dyn Fn(SyncEvent) + Send + Sync),
        total_requests: &AtomicU32,
        tx: tokio::sync::mpsc::Sender<Fetch>,
    ) {
        let origin = first.clone();
        // The pages asked for in this sync: a tracker (or a proxy) that names
        // a page already fetched as the next one (an offset answer whose
        // `offset` never moves, a cursor that repeats) would be asked the
        // same pages forever. At most one URL per page, ~100 bytes each.
        let mut asked = std::collections::HashSet::from([first.clone()]);
        let mut url = first;
        let mut conditional = conditional;
        let mut requests = total_requests.load(Ordering::Relaxed);
        loop {
            let fetched = self
                .http
                .get(
                    conn,
                    &source.id,
                    &url,
                    headers,
                    conditional.take().as_deref(),
                    events,
                    &mut requests,
                )
                .await;
            total_requests.store(requests, Ordering::Relaxed);
            let (msg, next) = match fetched {
                Ok(f) if f.not_modified() => (Fetch::NotModified, None),
                Ok(f) => match conn
                    .parse_page(source, &f)
                    .and_then(|page| match &page.next {
                        Some(n) => same_origin_page(source, &origin, n).map(|()| page),
                        None => Ok(page),
                    })
                    .and_then(|page| match &page.next {
                        Some(n) if !asked.insert(n.clone()) => Err(SyncError::Malformed {
                            source_id: source.id.clone(),
                            url: shown_url(&f.url),
                            detail: format!(
                                "the tracker named a page it had already answered as the next one ({}); stopped instead of asking it again forever",
                                shown_url(n)
                            ),
                            source: None,
                        }),
                        _ => Ok(page),
                    }) {
                    Ok(page) => {
                        let next = page.next.clone();
                        let etag = f.etag().map(str::to_string);
                        (
                            Fetch::Page {
                                page,
                                etag,
                                requests,
                            },
                            next,
                        )
                    }
                    Err(e) => (Fetch::Failed(e), None),
                },
                Err(e) => (Fetch::Failed(e), None),
            };
            if tx.send(msg).await.is_err() {
                return; // the writer stopped
            }
            match next {
                Some(n) => url = n,
                None => return,
            }
        }
    }

    /// Stores the pages [`fetch_pages`](Self::fetch_pages) sends, in order,
    /// and reports each. The pages already waiting (up to
    /// [`PAGES_PER_COMMIT`]) are stored together, with the cursor after the
    /// last of them, in one transaction. In a full sync, the key of every
    /// item the tracker returned goes to `returned`.
    #[allow(clippy::too_many_arguments)]
    async fn store_pages(
        &self,
        full: bool,
        first: &Url,
        state: &mut SyncState,
        summary: &mut SyncSummary,
        events: &(dyn Fn(SyncEvent) + Send + Sync),
        mut rx: tokio::sync::mpsc::Receiver<Fetch>,
        returned: &mut HashSet<String>,
    ) -> Result<(), SyncError> {
        let mut first_etag: Option<String> = None;
        // What ended the last group without belonging to it.
        let mut held: Option<Fetch> = None;
        loop {
            let mut group = Vec::new();
            let interrupted = || SyncError::Interrupted {
                source_id: state.source_id.clone(),
            };
            // Cancellation point: between commits, never inside one. What
            // was stored stays with its cursor; the pages in flight are
            // fetched again by the next sync.
            if self.lifecycle.is_stopping() {
                return Err(interrupted());
            }
            let next = match held.take() {
                Some(f) => Some(f),
                None => tokio::select! {
                    f = rx.recv() => f,
                    () = self.lifecycle.cancelled() => return Err(interrupted()),
                },
            };
            match next {
                Some(Fetch::Page {
                    page,
                    etag,
                    requests,
                }) => group.push((page, etag, requests)),
                Some(Fetch::NotModified) => {
                    summary.not_modified = true;
                    return Ok(());
                }
                Some(Fetch::Failed(e)) => return Err(e),
                // The fetcher always ends with a last page, a 304 or a failure.
                None => {
                    return Err(SyncError::Transport {
                        source_id: state.source_id.clone(),
                        detail: "the page fetcher stopped without a last page".into(),
                        source: None,
                    });
                }
            }
            while group.len() < PAGES_PER_COMMIT
                && group.last().is_some_and(|(p, _, _)| p.next.is_some())
            {
                match rx.try_recv() {
                    Ok(Fetch::Page {
                        page,
                        etag,
                        requests,
                    }) => group.push((page, etag, requests)),
                    Ok(other) => {
                        held = Some(other);
                        break;
                    }
                    Err(_) => break,
                }
            }

            let mut fresh_pages = Vec::with_capacity(group.len());
            let mut item_counts = Vec::with_capacity(group.len());
            let now = Utc::now();
            let mut removed = Vec::new();
            for (page, etag, _) in &mut group {
                let gone = std::mem::take(&mut page.removed);
                let past: Vec<(&str, Option<Time>)> = gone
                    .iter()
                    .filter(|r| full || !state.cursor.stored_before(r.update_time))
                    .map(|r| (r.external_id.as_str(), r.update_time))
                    .collect();
                state.cursor.advance(past);
                for r in gone {
                    let key = item_key(&state.source_id, &r.external_id);
                    if full {
                        returned.insert(key.clone());
                    }
                    let removal = Removal {
                        remove_time: now,
                        reason: r.reason,
                        detail: r.detail,
                    };
                    removed.push((key, removal));
                }
                if full {
                    returned.extend(page.items.iter().map(Item::key));
                }
                item_counts.push(page.items.len() as u32);
                if summary.pages + fresh_pages.len() as u32 == 0 {
                    first_etag = etag.take();
                }
                // Items at the cursor's instant go on: the engine compares
                // each with the stored one and writes only what changed, so
                // an edit within the tracker's time grain is not lost and an
                // unchanged boundary item is counted as unchanged.
                let fresh: Vec<Item> = std::mem::take(&mut page.items)
                    .into_iter()
                    .filter(|it| full || !state.cursor.stored_before(it.update_time))
                    .collect();
                state.cursor.advance(
                    fresh
                        .iter()
                        .map(|it| (it.external_id.as_str(), it.update_time)),
                );
                fresh_pages.push(fresh);
            }
            let (counts, removed) = self
                .engine
                .apply_sync_pages_removing(fresh_pages, removed, state)
                .await?;
            summary.removed += removed as u32;
            for (((page, _, requests), counts), &item_count) in
                group.iter().zip(counts).zip(&item_counts)
            {
                summary.pages += 1;
                let upserted = (counts.created + counts.updated) as u32;
                summary.upserted += upserted;
                events(SyncEvent::PageFetched {
                    page: summary.pages,
                    item_count,
                    upserted,
                    total_upserted: summary.upserted,
                    requests: *requests,
                    expected_total: page.expected_total,
                });
            }
            let (Some((last, _, _)), Some(&last_count)) = (group.last(), item_counts.last()) else {
                unreachable!("a group holds at least the page it started with")
            };
            if last.next.is_none() {
                // A validator is only trusted for a one-page answer that
                // was not full: then any change shows on that page.
                match first_etag {
                    Some(tag) if summary.pages == 1 && (last_count as usize) < PAGE_SIZE => {
                        state.etag = tag;
                        state.etag_url = first.to_string();
                    }
                    _ => {
                        state.etag.clear();
                        state.etag_url.clear();
                    }
                }
                return Ok(());
            }
        }
    }
}

/// What the page fetcher hands the page writer, in page order.
enum Fetch {
    /// A parsed page, its validator, and the requests sent up to it.
    Page {
        page: Page,
        etag: Option<String>,
        requests: u32,
    },
    /// The first page did not change since the stored validator.
    NotModified,
    /// Fetching or parsing failed; the sync stops after the pages before.
    Failed(SyncError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracker_times_parse() {
        let want = DateTime::parse_from_rfc3339("2023-06-24T19:24:50Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(parse_time("2023-06-24T19:24:50Z"), Some(want));
        assert_eq!(parse_time("2023-06-24T19:24:50.000+0000"), Some(want));
        assert_eq!(parse_time("2023-06-24T21:24:50.000+0200"), Some(want));
        assert_eq!(parse_time("2023-06-24T21:24:50+02:00"), Some(want));
        assert_eq!(parse_time("yesterday"), None);
    }
}

#[cfg(test)]
mod source_chain_tests {
    use std::error::Error as _;

    use super::*;

    fn source(base_url: &str) -> Source {
        Source {
            id: "s".into(),
            kind: TrackerKind::Github,
            base_url: base_url.into(),
            project_key: "acme/shop".into(),
            token_env: String::new(),
            link_rules: Default::default(),
            estimate_field: String::new(),
            create_time: Utc::now(),
            update_time: Utc::now(),
        }
    }

    #[test]
    fn parse_and_url_errors_keep_their_cause() {
        let fetched = Fetched {
            url: Url::parse("http://127.0.0.1/x").unwrap(),
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: b"[{".to_vec(),
        };
        let err = parse_json::<Vec<serde_json::Value>>(&source("http://127.0.0.1"), &fetched)
            .unwrap_err();
        let cause = err.source().expect("the JSON error");
        assert!(
            cause.downcast_ref::<serde_json::Error>().is_some(),
            "{cause}"
        );

        let err = join_url(&source("not a url"), "x").unwrap_err();
        assert!(err.source().is_some(), "the URL error: {err}");
    }

    #[tokio::test]
    async fn transport_errors_keep_the_reqwest_error() {
        // A port nothing listens on: the connection is refused at once.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
        drop(listener);
        let http = HttpClient::new(
            http::HttpOptions {
                max_retries: 0,
                ..Default::default()
            },
            Arc::new(
                OutboundPolicy::new(&crate::config::OutboundConfig {
                    allow_hosts: vec!["127.0.0.1".into()],
                    ..Default::default()
                })
                .unwrap(),
            ),
        )
        .unwrap();
        let mut requests = 0;
        let err = http
            .get(
                &github::GitHub,
                "s",
                &url,
                &[],
                None,
                &|_| {},
                &mut requests,
            )
            .await
            .unwrap_err();
        let cause = err.source().expect("the transport error");
        let reqwest_err = cause
            .downcast_ref::<reqwest::Error>()
            .expect("a reqwest error");
        assert!(reqwest_err.is_connect(), "{reqwest_err}");
    }
}

#[cfg(test)]
mod link_tests {
    use super::*;

    fn fetched(link: &str) -> Fetched {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("link", HeaderValue::from_str(link).unwrap());
        Fetched {
            url: Url::parse("http://127.0.0.1/").unwrap(),
            status: reqwest::StatusCode::OK,
            headers,
            body: Vec::new(),
        }
    }

    #[test]
    fn not_found_names_its_status() {
        let e = |status| {
            SyncError::NotFound {
                source_id: "gh".into(),
                url: "https://api.github.com/repos/a/b/issues/7".into(),
                message: "This issue was deleted".into(),
                status,
            }
            .to_string()
        };
        assert!(e(404).contains(": not found (404) at "), "{}", e(404));
        assert!(e(410).contains(": gone (410) at "), "{}", e(410));
    }

    #[test]
    fn the_next_link_is_taken_exactly_as_given() {
        let f = fetched(
            "<https://api.github.com/repositories/42/issues?page=2&per_page=100>; rel=\"next\", \
             <https://api.github.com/repositories/42/issues?page=9>; rel=\"last\"",
        );
        assert_eq!(
            next_link(&f).unwrap().as_str(),
            "https://api.github.com/repositories/42/issues?page=2&per_page=100"
        );
        assert_eq!(
            next_link(&fetched("<https://x/a?page=1>; rel=\"prev\"")),
            None
        );
        assert_eq!(
            next_link(&fetched("<https://x/a?page=3>; rel=\"prev next\"")).map(|u| u.to_string()),
            Some("https://x/a?page=3".into())
        );
    }
}

#[cfg(test)]
mod write_tests {
    use super::*;
    use crate::domain::{LinkRules, TrackerKind};

    fn source(kind: TrackerKind, estimate_field: &str) -> Source {
        Source {
            id: "s".into(),
            kind,
            base_url: "https://tracker.example".into(),
            project_key: match kind {
                TrackerKind::Redmine => "shop",
                TrackerKind::Jira => "OPS",
                TrackerKind::Github | TrackerKind::Gitlab => "acme/shop",
                TrackerKind::Push => "",
            }
            .into(),
            token_env: "T".into(),
            link_rules: LinkRules::default(),
            estimate_field: estimate_field.into(),
            create_time: Utc::now(),
            update_time: Utc::now(),
        }
    }

    fn parent(external_id: &str) -> Item {
        Item {
            source_id: "s".into(),
            external_id: external_id.into(),
            title: "parent".into(),
            body: String::new(),
            url: String::new(),
            state: crate::domain::ItemState::Open,
            labels: Vec::new(),
            estimate: None,
            parent_key: String::new(),
            create_time: None,
            update_time: None,
            close_time: None,
            votes: None,
        }
    }

    #[test]
    fn short_numbers_keep_at_most_two_decimals() {
        assert_eq!(short_number(4.0), "4");
        assert_eq!(short_number(2.5), "2.5");
        assert_eq!(short_number(12.0 / 9.0), "1.33");
        assert_eq!(short_number(0.001), "0");
    }

    #[test]
    fn estimates_go_where_each_source_reads_them_back() {
        let create = |kind, field: &str, est: Option<f64>| {
            connector(kind)
                .unwrap()
                .create_issue_request(&source(kind, field), &parent("7"), "t", "b", est)
                .unwrap()
                .1
        };
        let gl = TrackerKind::Gitlab;
        assert_eq!(create(gl, "", Some(2.4))["weight"], 2);
        assert_eq!(create(gl, "", Some(0.3))["weight"], 1, "at least 1");
        assert_eq!(create(gl, "label:size::", Some(1.5))["labels"], "size::1.5");
        let te = create(gl, "time_estimate", Some(3.0));
        assert!(te.get("weight").is_none() && te.get("labels").is_none());
        assert!(create(gl, "", None).get("weight").is_none());
        assert_eq!(
            create(TrackerKind::Github, "label:pts:", Some(3.0))["labels"],
            serde_json::json!(["pts:3"])
        );
        let rm = create(TrackerKind::Redmine, "cf_12", Some(2.5));
        assert_eq!(
            rm["issue"]["custom_fields"],
            serde_json::json!([{"id": 12, "value": "2.5"}])
        );
        assert!(rm["issue"].get("estimated_hours").is_none());
        let jira = |field: &str| create(TrackerKind::Jira, field, Some(4.0));
        assert!(jira("").get("fields").unwrap().get("labels").is_none());
        assert_eq!(
            jira("label:size:")["fields"]["labels"],
            serde_json::json!(["size:4"])
        );
        // A Redmine parent must be a Redmine issue id.
        let err = connector(TrackerKind::Redmine)
            .unwrap()
            .create_issue_request(
                &source(TrackerKind::Redmine, ""),
                &parent("7-s1"),
                "t",
                "b",
                None,
            )
            .unwrap_err();
        assert!(err.to_string().contains("not a Redmine issue"), "{err}");
    }

    #[test]
    fn jira_descriptions_are_one_paragraph_per_line_and_read_back_the_same() {
        let text = "Split from ops/OPS-7 by task: slice 1 of 2.\n\nSecond line";
        let doc = jira::adf_paragraphs(text);
        assert_eq!(
            doc["content"].as_array().unwrap().len(),
            2,
            "no empty paragraph"
        );
        assert_eq!(
            jira::adf_to_text(&doc),
            "Split from ops/OPS-7 by task: slice 1 of 2.\nSecond line"
        );
    }
}

#[cfg(test)]
mod origin_tests {
    use super::*;

    #[test]
    fn next_pages_keep_the_first_origin_and_urls_shown_drop_credentials() {
        let mut source = link_source();
        source.id = "s".into();
        let first = Url::parse("https://tracker.example/api/x?page=1").unwrap();
        let same = Url::parse("https://tracker.example:443/repositories/1?page=2").unwrap();
        assert!(same_origin_page(&source, &first, &same).is_ok());
        for other in [
            "http://tracker.example/api/x?page=2",
            "https://tracker.example:8443/api/x?page=2",
            "https://evil.example/api/x?page=2",
        ] {
            let err = same_origin_page(&source, &first, &Url::parse(other).unwrap()).unwrap_err();
            assert!(
                matches!(err, SyncError::OtherOrigin { .. }),
                "{other}: {err}"
            );
        }
        let u = Url::parse("https://me:pw@tracker.example/a?b=1").unwrap();
        assert_eq!(shown_url(&u), "https://tracker.example/a?b=1");
    }

    fn link_source() -> Source {
        Source {
            id: String::new(),
            kind: TrackerKind::Github,
            base_url: "https://tracker.example".into(),
            project_key: "a/b".into(),
            token_env: String::new(),
            link_rules: Default::default(),
            estimate_field: String::new(),
            create_time: Utc::now(),
            update_time: Utc::now(),
        }
    }
}

/// A tracker's count (votes, reactions) read leniently: a non-negative
/// whole number, or nothing. A hostile or odd value (`-1`, `1.5`, `"3"`, a
/// number past u64) is dropped, so that one issue's odd count does not fail
/// the page and with it the whole sync; labels are read as leniently.
pub(crate) fn lenient_count<'de, D>(d: D) -> Result<Option<u64>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::Deserialize;
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Number(n) => n.as_u64(),
        _ => None,
    })
}

#[cfg(test)]
mod lenient_count_tests {
    #[derive(serde::Deserialize)]
    struct Votes {
        #[serde(default, deserialize_with = "super::lenient_count")]
        votes: Option<u64>,
    }

    #[test]
    fn odd_counts_are_dropped_not_fatal() {
        let read = |json: &str| serde_json::from_str::<Votes>(json).expect(json).votes;
        assert_eq!(read(r#"{"votes": 3}"#), Some(3));
        assert_eq!(read(r#"{}"#), None);
        for odd in [
            "-1",
            "1.5",
            "\"3\"",
            "null",
            "1e30",
            "[1]",
            "18446744073709551616",
        ] {
            assert_eq!(read(&format!(r#"{{"votes": {odd}}}"#)), None, "{odd}");
        }
    }
}
