//! The tracker conformance suite: one set of sync cases, run against every
//! connector. Each tracker describes only its HTTP dialect ([`Tracker`]: its
//! issue shape from `tests/fixtures/<tracker>/`, how a request names its time
//! filter and page, how an answer pages on, its error bodies); the mock
//! ([`Served`]) then behaves like that tracker over a list of issues: it
//! filters by the requested time (inclusive, so the boundary item comes back),
//! sorts ascending by update time, pages by [`PAGE`] and, where the tracker
//! sends validators, answers a matching `If-None-Match` with 304. The cases
//! are written once, down to a real server process killed mid-sync; each
//! tracker's file ends with `conformance_cases!(Tracker)`, which makes a
//! `#[tokio::test]` of every case, so a new connector plugs in with one file.
//! What only one tracker does stays in its `sync_<tracker>.rs`.

/// Generates one `#[tokio::test]` per case of the suite for `$tracker`;
/// each tracker's file calls it once.
macro_rules! conformance_cases {
    ($tracker:ty) => {
        mod cases {
        conformance_cases!(@cases $tracker;
            multi_page,
            incremental_with_boundary_duplicate,
            same_second_edit_at_the_cursor,
            unchanged_resync_costs_one_request,
            unauthorized,
            forbidden,
            not_found,
            missing_token_named,
            rate_limited_then_success,
            server_errors_retried,
            malformed_json_writes_nothing,
            resume_after_failure_stores_nothing_twice,
            rate_limited_forever_is_bounded,
            full_sync_marks_what_the_tracker_no_longer_returns,
            failed_full_sync_marks_nothing,
        );
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn killed_mid_sync_resumes_after_restart() {
            crate::conformance::killed_mid_sync_resumes_after_restart::<$tracker>().await
        }
        }
    };
    (@cases $tracker:ty; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                crate::conformance::$case::<$tracker>().await
            }
        )*
    };
}

pub mod github;
pub mod gitlab;
pub mod jira;
pub mod redmine;
mod removal;

pub use removal::{
    failed_full_sync_marks_nothing, full_sync_marks_what_the_tracker_no_longer_returns,
};

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, TimeZone, Utc};
use plumbline::proto as pb;
use serde_json::Value;
use tonic::Code;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::common::*;

/// Issues per page in the mock's answers: small, so that a handful of
/// issues spans several pages.
pub const PAGE: usize = 2;

/// One issue on the mock tracker: its number and what changes.
#[derive(Debug, Clone)]
pub struct Issue {
    pub n: u64,
    pub title: String,
    pub updated: DateTime<Utc>,
}

/// What a list request asks for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Query {
    /// Items updated at or after this time; `None` asks for all.
    pub since: Option<DateTime<Utc>>,
    /// The page asked for, from 0.
    pub page: usize,
}

/// One tracker's HTTP dialect, as the mock needs it.
pub trait Tracker: Send + Sync + Default + 'static {
    /// The source's id (item keys are `{id}/{external id}`).
    const ID: &'static str;
    /// The variable that holds the token, and its value (in `TEST_TOKENS`).
    const TOKEN: (&'static str, &'static str);
    /// Whether the tracker sends `ETag`s on list answers (then an unchanged
    /// re-sync is a 304).
    const SENDS_ETAG: bool;

    /// The source to create, pointing at the mock at `uri`.
    fn source(&self, uri: &str) -> pb::Source;
    /// The path of list requests on the mock.
    fn list_path(&self) -> String;
    /// The external id of issue `n` (`"11"`, `"OPS-11"`).
    fn external_id(&self, n: u64) -> String;
    /// Issue `issue` in the tracker's JSON shape.
    fn issue(&self, issue: &Issue) -> Value;
    /// What `req` asks for.
    fn query(&self, req: &Request) -> Query;
    /// A 200 with page `query.page` holding `issues` of `total` matching ones;
    /// `more` when another page follows.
    fn page(&self, req: &Request, issues: Vec<Value>, more: bool, total: usize)
    -> ResponseTemplate;
    /// The tracker's answer with `status` (401, 403, 404, 429, 500...), with
    /// its real body and headers.
    fn error(&self, status: u16) -> ResponseTemplate;
    /// What of the tracker's own reason in [`error`](Self::error)`(status)`
    /// must reach the person reading the sync's error.
    fn says(&self, status: u16) -> &'static str;
    /// The path of issue `n` on its own (what is asked of an issue a full
    /// sync no longer returned).
    fn issue_path(&self, n: u64) -> String;
    /// The tracker's answer there for a deleted issue, with its real
    /// status and body.
    fn deleted(&self) -> ResponseTemplate;
    /// The path and answer of the endpoint that says who the token is, for
    /// a tracker that plumbline asks (Redmine); not a list request.
    fn identity(&self) -> Option<(String, ResponseTemplate)> {
        None
    }
}

/// The URL `req` was sent to, with the host and port it was sent to (the
/// mock's `Request::url` holds neither), for `Link` headers.
/// The value of query parameter `name` of a request the mock received.
pub fn param(req: &Request, name: &str) -> Option<String> {
    req.url
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

pub fn sent_to(req: &Request) -> wiremock::http::Url {
    let mut url = req.url.clone();
    if let Some(host) = req.headers.get("host").and_then(|h| h.to_str().ok()) {
        let base = wiremock::http::Url::parse(&format!("http://{host}/")).unwrap();
        url.set_host(base.host_str()).unwrap();
        url.set_port(base.port()).unwrap();
    }
    url
}

/// The mock tracker: serves its issues as `T` would.
pub struct Served<T: Tracker> {
    tracker: T,
    issues: Arc<Mutex<Vec<Issue>>>,
    /// How long each page takes.
    delay: std::time::Duration,
}

impl<T: Tracker> Respond for Served<T> {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let q = self.tracker.query(req);
        let mut matching: Vec<Issue> = self
            .issues
            .lock()
            .unwrap()
            .iter()
            .filter(|i| q.since.is_none_or(|s| i.updated >= s))
            .cloned()
            .collect();
        matching.sort_by_key(|i| (i.updated, i.n));
        let total = matching.len();
        let pages: Vec<&[Issue]> = matching.chunks(PAGE).collect();
        let page = pages.get(q.page).copied().unwrap_or_default();
        let more = q.page + 1 < pages.len();
        // A validator of what this answer holds, as a tracker computes it:
        // Redmine (Rails) and GitHub digest the body, GitLab's API too
        // (Rack::ETag), so an edit changes it even within the same second.
        let etag = format!(
            "W/\"{}\"",
            page.iter()
                .map(|i| format!("{}@{}:{}", i.n, i.updated.timestamp_millis(), i.title))
                .collect::<Vec<_>>()
                .join("-")
        );
        if T::SENDS_ETAG
            && req
                .headers
                .get("if-none-match")
                .is_some_and(|v| v.to_str().ok() == Some(etag.as_str()))
        {
            return ResponseTemplate::new(304).insert_header("etag", etag.as_str());
        }
        let body = page.iter().map(|i| self.tracker.issue(i)).collect();
        let resp = self
            .tracker
            .page(req, body, more, total)
            .set_delay(self.delay);
        if T::SENDS_ETAG {
            resp.insert_header("etag", etag.as_str())
        } else {
            resp
        }
    }
}

/// A test's world: the mock tracker with its issues and a server with a
/// source pointing at it.
pub struct World<T: Tracker> {
    pub tracker: T,
    pub mock: MockServer,
    pub s: TestServer,
    pub issues: Arc<Mutex<Vec<Issue>>>,
}

/// The `n`th test time: 2026-11-01 plus `n` hours.
pub fn at(n: u64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap() + Duration::hours(n as i64)
}

/// Issues `1..=count`, issue `n` updated at [`at`]`(n)`.
pub fn issues(count: u64) -> Vec<Issue> {
    (1..=count)
        .map(|n| Issue {
            n,
            title: format!("Issue {n}"),
            updated: at(n),
        })
        .collect()
}

impl<T: Tracker> World<T> {
    /// A mock serving `issues` (after any failure mounted later with
    /// [`fail`](Self::fail)) and a server with the source.
    pub async fn start(issues: Vec<Issue>) -> Self {
        Self::start_with(issues, |_| {}).await
    }

    /// As [`start`](Self::start), with sync settings changed by `change`.
    pub async fn start_with(
        issues: Vec<Issue>,
        change: impl FnOnce(&mut plumbline::config::SyncConfig),
    ) -> Self {
        let (var, token) = T::TOKEN;
        set_test_token(var, token);
        let tracker = T::default();
        let mock = MockServer::start().await;
        let issues = Arc::new(Mutex::new(issues));
        let s = TestServer::start_with_config(|c| change(&mut c.sync)).await;
        let world = World {
            tracker,
            mock,
            s,
            issues,
        };
        world.serve().await;
        create_source(&world.s, world.tracker.source(&world.mock.uri())).await;
        world
    }

    /// Mounts the tracker's normal answers (below any failure mounted
    /// before, which wiremock tries first).
    async fn serve(&self) {
        if let Some((at, answer)) = self.tracker.identity() {
            Mock::given(method("GET"))
                .and(path(at))
                .respond_with(answer)
                .mount(&self.mock)
                .await;
        }
        Mock::given(method("GET"))
            .and(path(self.tracker.list_path()))
            .respond_with(Served {
                tracker: T::default(),
                issues: self.issues.clone(),
                delay: std::time::Duration::ZERO,
            })
            .with_priority(10)
            .mount(&self.mock)
            .await;
    }

    /// The next `times` list requests asking for page `page` (from 0) get
    /// `answer` instead; `None` times: every one.
    pub async fn fail(&self, page: usize, answer: ResponseTemplate, times: Option<u64>) {
        let tracker = T::default();
        let m = Mock::given(method("GET"))
            .and(path(self.tracker.list_path()))
            .and(move |req: &Request| tracker.query(req).page == page)
            .respond_with(answer)
            .with_priority(1);
        match times {
            Some(n) => m.up_to_n_times(n).mount(&self.mock).await,
            None => m.mount(&self.mock).await,
        }
    }

    /// Removes every failure: the tracker answers normally again.
    pub async fn heal(&self) {
        self.mock.reset().await;
        self.serve().await;
    }

    /// Adds or changes an issue on the tracker.
    pub fn put(&self, issue: Issue) {
        let mut all = self.issues.lock().unwrap();
        all.retain(|i| i.n != issue.n);
        all.push(issue);
    }

    pub async fn sync(&self) -> SyncRun {
        run_sync(&self.s, T::ID, false).await
    }

    /// The item keys of issues `ns`.
    pub fn keys(&self, ns: impl IntoIterator<Item = u64>) -> Vec<String> {
        ns.into_iter()
            .map(|n| format!("{}/{}", T::ID, self.tracker.external_id(n)))
            .collect()
    }

    /// The stored items as (key, title), in key order.
    pub async fn stored(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = all_items(&self.s, T::ID)
            .await
            .into_iter()
            .map(|i| (i.key, i.title))
            .collect();
        v.sort();
        v
    }

    pub async fn cursor(&self) -> Option<i64> {
        sync_status(&self.s, T::ID)
            .await
            .cursor_time
            .map(|t| t.seconds)
    }

    /// The list requests the mock received, in order.
    pub async fn list_requests(&self) -> Vec<Request> {
        let list = self.tracker.list_path();
        self.mock
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.url.path() == list)
            .collect()
    }

    /// The queries the mock received, in order.
    pub async fn queries(&self) -> Vec<Query> {
        self.list_requests()
            .await
            .iter()
            .map(|r| self.tracker.query(r))
            .collect()
    }

    /// Asserts that `run` failed with `code` and a message naming the source
    /// and holding `needle`, never the token, and that the status says so.
    pub async fn assert_failed(&self, run: &SyncRun, code: Code, needle: &str) {
        let err = run.error();
        assert_eq!(err.code(), code, "{err:?}");
        let msg = err.message();
        assert!(
            msg.contains(&format!("{:?}", T::ID)) && msg.contains(needle),
            "{needle:?} not in {msg:?}"
        );
        assert!(!msg.contains(T::TOKEN.1), "the token leaked: {msg}");
        let st = sync_status(&self.s, T::ID).await;
        assert_eq!(st.state, pb::SyncState::Failed as i32);
        assert!(st.last_error.contains(needle), "{}", st.last_error);
        assert!(!st.last_error.contains(T::TOKEN.1));
    }
}

/// Pages are followed to the end; every item lands once, mapped; the cursor
/// ends at the last update.
pub async fn multi_page<T: Tracker>() {
    let w = World::<T>::start(issues(5)).await;
    let run = w.sync().await;
    let done = run.done();
    assert_eq!((done.pages, done.requests, done.upserted_count), (3, 3, 5));
    assert_eq!(
        run.pages.iter().map(|p| p.item_count).collect::<Vec<_>>(),
        [2, 2, 1]
    );
    let pages: Vec<usize> = w.queries().await.iter().map(|q| q.page).collect();
    assert_eq!(pages, [0, 1, 2]);
    assert!(w.queries().await.iter().all(|q| q.since.is_none()));
    let mut want: Vec<(String, String)> = w
        .keys(1..=5)
        .into_iter()
        .zip((1..=5).map(|n| format!("Issue {n}")))
        .collect();
    want.sort();
    assert_eq!(w.stored().await, want);
    assert_eq!(w.cursor().await, Some(at(5).timestamp()));
    let st = sync_status(&w.s, T::ID).await;
    assert_eq!(
        (st.state, st.last_request_count, st.last_upserted_count),
        (pb::SyncState::Succeeded as i32, 3, 5)
    );
}

/// An incremental sync asks from the cursor; the boundary item the inclusive
/// filter returns again is not stored twice.
pub async fn incremental_with_boundary_duplicate<T: Tracker>() {
    let w = World::<T>::start(issues(3)).await;
    w.sync().await.done();
    w.put(Issue {
        n: 4,
        title: "Issue 4".into(),
        updated: at(4),
    });
    w.put(Issue {
        n: 2,
        title: "Issue 2, renamed".into(),
        updated: at(5),
    });
    let before = w.queries().await.len();
    let run = w.sync().await;
    let qs = w.queries().await;
    let since = qs[before].since.expect("an incremental query");
    assert!(
        since <= at(3) && since > at(3) - Duration::minutes(3),
        "asked since {since}, the cursor is {}",
        at(3)
    );
    // Issue 3 (the boundary) came back; 4 and 2 are new or changed.
    assert_eq!(
        (run.done().pages, run.done().upserted_count),
        (2, 2),
        "the boundary item is skipped"
    );
    let stored = w.stored().await;
    assert_eq!(stored.len(), 4);
    assert!(stored.contains(&(w.keys([2])[0].clone(), "Issue 2, renamed".into())));
    assert_eq!(w.cursor().await, Some(at(5).timestamp()));
}

/// An edit within the cursor's instant (Redmine's and GitHub's times are
/// whole seconds) is stored, not skipped as the boundary duplicate: the
/// boundary item is compared with what is stored. Unchanged, it is still
/// not written again, and where the tracker sends validators the sync after
/// is a 304 again.
pub async fn same_second_edit_at_the_cursor<T: Tracker>() {
    let mut start = issues(3);
    start[2].title = "first".into();
    let w = World::<T>::start(start).await;
    w.sync().await.done();
    // Unchanged: nothing written (and the validator of this answer kept).
    let d = w.sync().await.done().clone();
    assert_eq!((d.requests, d.upserted_count), (1, 0));
    w.put(Issue {
        n: 3,
        title: "second".into(),
        updated: at(3),
    });
    let d = w.sync().await.done().clone();
    assert_eq!(
        (d.requests, d.upserted_count, d.not_modified),
        (1, 1, false),
        "the same-second edit is read and stored"
    );
    let key = w.keys([3])[0].clone();
    assert!(
        w.stored().await.contains(&(key.clone(), "second".into())),
        "{:?}",
        w.stored().await
    );
    assert_eq!(w.cursor().await, Some(at(3).timestamp()));
    // The boundary item, unchanged, is not counted or written again.
    let d = w.sync().await.done().clone();
    assert_eq!((d.requests, d.upserted_count), (1, 0));
    let d = w.sync().await.done().clone();
    assert_eq!((d.upserted_count, d.not_modified), (0, T::SENDS_ETAG));
    assert!(w.stored().await.contains(&(key, "second".into())));
}

/// A re-sync of an unchanged project costs one request; where the tracker
/// sends validators, the next one is a 304.
pub async fn unchanged_resync_costs_one_request<T: Tracker>() {
    let w = World::<T>::start(issues(3)).await;
    w.sync().await.done();
    let second = w.sync().await;
    let d = second.done();
    assert_eq!(
        (d.requests, d.upserted_count, d.not_modified),
        (1, 0, false)
    );
    let third = w.sync().await;
    let d = third.done();
    assert_eq!(d.requests, 1);
    assert_eq!(d.upserted_count, 0);
    assert_eq!(
        d.not_modified,
        T::SENDS_ETAG,
        "a 304 where validators are sent"
    );
    assert_eq!(w.stored().await.len(), 3);
}

/// 401, 403 and 404 stop the sync at once with an error naming the source
/// and the cause, without the token; nothing is retried or stored.
pub async fn refused<T: Tracker>(status: u16, needle: &str) -> (World<T>, SyncRun) {
    let w = World::<T>::start(issues(3)).await;
    w.fail(0, w.tracker.error(status), None).await;
    let run = w.sync().await;
    w.assert_failed(&run, Code::FailedPrecondition, needle)
        .await;
    let msg = run.error().message();
    assert!(
        msg.contains(w.tracker.says(status)),
        "the tracker's reason: {msg}"
    );
    assert!(run.waits.is_empty(), "a refusal is not a rate limit");
    let received = w.list_requests().await;
    assert_eq!(received.len(), 1, "not retried");
    assert!(
        !received[0].url.as_str().contains(T::TOKEN.1),
        "the token goes in a header, never the URL"
    );
    assert!(w.stored().await.is_empty());
    assert_eq!(w.cursor().await, None);
    (w, run)
}

pub async fn unauthorized<T: Tracker>() {
    refused::<T>(401, "(401)").await;
}

pub async fn forbidden<T: Tracker>() {
    refused::<T>(403, "(403)").await;
}

/// A 404 names the URL asked, without its query, and the settings to check.
pub async fn not_found<T: Tracker>() {
    let (w, run) = refused::<T>(404, "not found (404)").await;
    let msg = run.error().message();
    assert!(
        msg.contains(&w.tracker.list_path()) && msg.contains("project_key"),
        "{msg}"
    );
    assert!(
        !msg.contains('?'),
        "the URL is shown without its query: {msg}"
    );
}

/// A source whose token variable is unset fails before any request, naming
/// the variable.
pub async fn missing_token_named<T: Tracker>() {
    let w = World::<T>::start(issues(3)).await;
    w.s.sources()
        .update_source(pb::UpdateSourceRequest {
            source: Some(pb::Source {
                id: T::ID.into(),
                token_env: "PLB_TEST_UNSET_TOKEN".into(),
                ..Default::default()
            }),
            update_mask: mask(&["token_env"]),
        })
        .await
        .unwrap();
    let run = w.sync().await;
    w.assert_failed(&run, Code::FailedPrecondition, "PLB_TEST_UNSET_TOKEN")
        .await;
    assert!(w.queries().await.is_empty(), "no request without a token");
}

/// A rate-limit answer is waited out (and reported), then the sync goes on.
pub async fn rate_limited_then_success<T: Tracker>() {
    let w = World::<T>::start(issues(3)).await;
    w.fail(1, w.tracker.error(429), Some(1)).await;
    let run = w.sync().await;
    let d = run.done();
    assert_eq!((d.pages, d.requests, d.upserted_count), (2, 3, 3));
    assert_eq!(run.waits.len(), 1, "{:?}", run.waits);
    assert_eq!(w.stored().await.len(), 3);
}

/// Transient server errors are retried with backoff.
pub async fn server_errors_retried<T: Tracker>() {
    let w = World::<T>::start(issues(3)).await;
    w.fail(0, w.tracker.error(500), Some(1)).await;
    w.fail(
        0,
        ResponseTemplate::new(502).set_body_string("<html>Bad Gateway</html>"),
        Some(1),
    )
    .await;
    let run = w.sync().await;
    let d = run.done();
    assert_eq!((d.requests, d.upserted_count), (4, 3));
}

/// A malformed answer stops the sync with a clear error and writes nothing.
pub async fn malformed_json_writes_nothing<T: Tracker>() {
    let w = World::<T>::start(issues(3)).await;
    w.fail(
        0,
        ResponseTemplate::new(200)
            .insert_header("content-type", "application/json")
            .set_body_string(r#"{"issues": [{"id": 1, "title": "#),
        None,
    )
    .await;
    let run = w.sync().await;
    w.assert_failed(&run, Code::Unavailable, "malformed").await;
    assert!(w.stored().await.is_empty());
    assert_eq!(w.cursor().await, None);
}

/// A sync that fails for good on page 2 keeps page 1 and its cursor; the
/// resumed sync asks from there and stores nothing twice.
pub async fn resume_after_failure_stores_nothing_twice<T: Tracker>() {
    let w = World::<T>::start(issues(5)).await;
    w.fail(1, w.tracker.error(500), None).await;
    let first = w.sync().await;
    assert_eq!(first.error().code(), Code::Unavailable);
    assert_eq!(first.pages.len(), 1, "page 1 was stored before the failure");
    assert_eq!(w.stored().await.len(), 2);
    assert_eq!(w.cursor().await, Some(at(2).timestamp()));

    w.heal().await;
    let second = w.sync().await;
    let q = w.queries().await[0];
    assert!(q.since.is_some_and(|s| s <= at(2)), "{q:?}");
    assert_eq!(
        second.done().upserted_count,
        3,
        "issue 2 is not stored twice"
    );
    let mut want = w.keys(1..=5);
    want.sort();
    let got: Vec<String> = w.stored().await.into_iter().map(|(k, _)| k).collect();
    assert_eq!(got, want);
    assert_eq!(w.cursor().await, Some(at(5).timestamp()));
}

/// A tracker that answers 429 `Retry-After: 0` forever is not obeyed
/// forever: after `max_rate_limit_waits` waits the sync fails, saying so.
pub async fn rate_limited_forever_is_bounded<T: Tracker>() {
    let w = World::<T>::start_with(issues(3), |c| {
        c.max_rate_limit_waits = 3;
        c.min_rate_limit_delay_ms = 20;
    })
    .await;
    w.fail(
        0,
        w.tracker.error(429).insert_header("retry-after", "0"),
        None,
    )
    .await;
    let started = std::time::Instant::now();
    // Unbounded, the sync would never end: fail instead of hanging.
    let run = tokio::time::timeout(std::time::Duration::from_secs(20), w.sync())
        .await
        .expect("the sync ends after the bounded waits");
    w.assert_failed(&run, Code::Unavailable, "kept answering HTTP 429")
        .await;
    assert!(
        run.error().message().contains("3 waits"),
        "{:?}",
        run.error()
    );
    assert_eq!(run.waits.len(), 3);
    assert_eq!(w.queries().await.len(), 4, "one request and three retries");
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(60),
        "each wait lasts the minimum delay"
    );
    assert!(w.stored().await.is_empty());
}

/// The server, a real process, is killed (SIGKILL) two pages into a sync;
/// restarted on the same SQLite file, it shows the sync as interrupted,
/// kept whole pages only, and the next sync resumes from the cursor,
/// storing nothing twice and losing nothing.
pub async fn killed_mid_sync_resumes_after_restart<T: Tracker>() {
    use pb::sync_service_client::SyncServiceClient;
    use tonic::transport::Channel;
    const TOTAL: u64 = 40;
    let (var, token) = T::TOKEN;
    set_test_token(var, token);
    let tracker = T::default();
    let mock = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(tracker.list_path()))
        .respond_with(Served {
            tracker: T::default(),
            issues: Arc::new(Mutex::new(issues(TOTAL))),
            delay: std::time::Duration::from_millis(100),
        })
        .mount(&mock)
        .await;
    if let Some((at, answer)) = tracker.identity() {
        Mock::given(method("GET"))
            .and(path(at))
            .respond_with(answer)
            .mount(&mock)
            .await;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("plumbline.sqlite");

    let (mut first, url) = tokio::task::block_in_place(|| crate::common::spawn_server(&db));
    let channel = Channel::from_shared(url).unwrap().connect().await.unwrap();
    pb::source_service_client::SourceServiceClient::new(channel.clone())
        .create_source(pb::CreateSourceRequest {
            source: Some(tracker.source(&mock.uri())),
        })
        .await
        .unwrap();
    let sync = |channel: Channel| async move {
        SyncServiceClient::new(channel)
            .sync_source(pb::SyncSourceRequest {
                source_id: T::ID.into(),
                full: false,
            })
            .await
            .unwrap()
            .into_inner()
    };
    let mut stream = sync(channel.clone()).await;
    // Two pages in, kill the server hard.
    let mut pages = 0;
    while pages < 2 {
        if let Some(pb::sync_source_response::Event::PageFetched(_)) =
            stream.message().await.unwrap().unwrap().event
        {
            pages += 1;
        }
    }
    first.kill().unwrap();
    first.wait().unwrap();
    drop(stream);

    let (mut second, url) = tokio::task::block_in_place(|| crate::common::spawn_server(&db));
    let channel = Channel::from_shared(url).unwrap().connect().await.unwrap();
    let mut backlog = pb::backlog_service_client::BacklogServiceClient::new(channel.clone());
    let list = pb::ListItemsRequest {
        source_id: T::ID.into(),
        page_size: 1000,
        ..Default::default()
    };
    let stored = backlog
        .list_items(list.clone())
        .await
        .unwrap()
        .into_inner()
        .items
        .len();
    assert!(
        (2 * PAGE..TOTAL as usize).contains(&stored) && stored % PAGE == 0,
        "whole pages were kept: {stored}"
    );
    let status = SyncServiceClient::new(channel.clone())
        .get_sync_status(pb::GetSyncStatusRequest {
            source_id: T::ID.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!(
        status.state,
        pb::SyncState::Failed as i32,
        "an interrupted sync is not shown as running"
    );
    assert!(
        status.last_error.contains("interrupted"),
        "{}",
        status.last_error
    );

    let mut stream = sync(channel.clone()).await;
    let done = loop {
        match stream.message().await.unwrap().expect("a done event").event {
            Some(pb::sync_source_response::Event::Done(d)) => break d,
            _ => continue,
        }
    };
    assert_eq!(
        done.upserted_count as usize,
        TOTAL as usize - stored,
        "nothing stored twice, nothing lost"
    );
    let items = backlog.list_items(list).await.unwrap().into_inner().items;
    assert_eq!(items.len(), TOTAL as usize);
    second.kill().unwrap();
    second.wait().unwrap();
}
