//! GitHub sync end to end: recorded-shape GitHub answers served by a local
//! HTTP mock (wiremock on 127.0.0.1), a real server and SQLite file, and the
//! sync driven through the gRPC SyncService.
//!
//! What every tracker must do (paging, the boundary duplicate, 304, refusals,
//! rate limits, retries, malformed answers, resuming) is checked for GitHub by
//! the conformance suite (`conformance/`); this file holds GitHub's quirks.

use crate::common::*;
use plumbline::proto as pb;
use tonic::Code;
use wiremock::matchers::{header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN_VAR: &str = "PLB_TEST_GITHUB_TOKEN";
const TOKEN: &str = "ghp_testtoken0123456789";
const ISSUES: &str = "/repos/acme/shop/issues";

fn json(body: String) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .insert_header("content-type", "application/json; charset=utf-8")
        .insert_header("x-ratelimit-limit", "5000")
        .insert_header("x-ratelimit-remaining", "4990")
        .insert_header("x-ratelimit-reset", "4102444800")
        .set_body_string(body)
}

/// A server with a GitHub source pointing at `mock`.
async fn setup(mock: &MockServer) -> TestServer {
    set_test_token(TOKEN_VAR, TOKEN);
    let s = TestServer::start().await;
    value_model_for_rules(&s).await;
    create_source(
        &s,
        pb::Source {
            id: "gh".into(),
            kind: pb::TrackerKind::Github as i32,
            base_url: mock.uri(),
            project_key: "acme/shop".into(),
            token_env: TOKEN_VAR.into(),
            ..Default::default()
        },
    )
    .await;
    s
}

/// Page 1 links to page 2 through the `/repositories/{id}` form GitHub uses.
async fn mount_two_pages(mock: &MockServer) {
    let next = format!(
        "{}/repositories/42/issues?state=all&sort=updated&direction=asc&per_page=100&page=2",
        mock.uri()
    );
    let last = format!(
        "{}/repositories/42/issues?state=all&sort=updated&direction=asc&per_page=100&page=2",
        mock.uri()
    );
    Mock::given(method("GET"))
        .and(path(ISSUES))
        .and(query_param("state", "all"))
        .and(query_param("sort", "updated"))
        .and(query_param("direction", "asc"))
        .and(query_param("per_page", "100"))
        .and(query_param_is_missing("since"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .and(header("accept", "application/vnd.github+json"))
        .respond_with(
            json(fixture("github/issues-page1.json"))
                .insert_header(
                    "link",
                    format!("<{next}>; rel=\"next\", <{last}>; rel=\"last\"").as_str(),
                )
                .insert_header("etag", "W/\"page1\""),
        )
        .mount(mock)
        .await;
    Mock::given(method("GET"))
        .and(path("/repositories/42/issues"))
        .and(query_param("page", "2"))
        .respond_with(json(fixture("github/issues-page2.json")))
        .mount(mock)
        .await;
}

#[tokio::test]
async fn a_multi_page_sync_maps_every_field_and_skips_pull_requests() {
    let mock = MockServer::start().await;
    mount_two_pages(&mock).await;
    let s = setup(&mock).await;

    let run = run_sync(&s, "gh", false).await;
    let done = run.done();
    assert_eq!((done.pages, done.requests, done.upserted_count), (2, 2, 4));
    assert_eq!(
        run.pages.iter().map(|p| p.item_count).collect::<Vec<_>>(),
        [2, 2],
        "the PR is not an item"
    );

    let items = all_items(&s, "gh").await;
    let keys: Vec<&str> = items.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(keys, ["gh/11", "gh/13", "gh/14", "gh/15"]);
    let one = &items[0];
    assert_eq!(one.title, "One-page checkout on mobile");
    assert_eq!(one.url, "https://github.com/acme/shop/issues/11");
    assert_eq!(one.estimate, Some(5.0), "from the size:5 label");
    assert_eq!(one.labels, ["checkout", "size:5", "hypothesis:H-1"]);
    let tasks: Vec<(&str, bool)> = one
        .tasks
        .iter()
        .map(|t| (t.text.as_str(), t.done))
        .collect();
    assert_eq!(
        tasks,
        [
            ("merge address and payment steps", false),
            ("measure drop-off per step", true),
            ("keep form state on reload", false)
        ]
    );
    let closed = &items[2];
    assert_eq!(closed.state, pb::ItemState::Closed as i32);
    assert_eq!(
        closed.close_time.as_ref().map(|t| t.seconds),
        Some(secs("2026-11-04T12:00:00Z"))
    );
    assert_eq!(items[3].estimate, None);

    // Link rules ran on the synced items: a label and a body line.
    let l1 = s
        .backlog()
        .list_links(pb::ListLinksRequest {
            item_key: "gh/11".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .links;
    assert_eq!(
        (
            l1[0].hypothesis_id.as_str(),
            l1[0].contribution,
            l1[0].origin
        ),
        ("H-1", 1.0, pb::LinkOrigin::Rule as i32)
    );
    let l3 = s
        .backlog()
        .list_links(pb::ListLinksRequest {
            item_key: "gh/13".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .links;
    assert_eq!(
        (l3[0].hypothesis_id.as_str(), l3[0].contribution),
        ("H-2", 0.5)
    );

    // The synced items rank, and the linked ones lead.
    let ranked = keys_of(
        &rank(
            &s,
            pb::RankItemsRequest {
                page_size: 10,
                ..Default::default()
            },
        )
        .await,
    );
    assert_eq!(ranked.len(), 3, "closed gh/14 is left out");
    assert_eq!(
        ranked,
        ["gh/11", "gh/13", "gh/15"],
        "linked items lead; unlinked gh/15 is last"
    );

    let st = sync_status(&s, "gh").await;
    assert_eq!(st.state, pb::SyncState::Succeeded as i32);
    assert_eq!(
        st.cursor_time.map(|t| t.seconds),
        Some(secs("2026-11-05T13:00:00Z"))
    );
    assert_eq!(st.last_request_count, 2);
}

fn keys_of(r: &pb::RankItemsResponse) -> Vec<String> {
    keys(r)
}

fn secs(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .timestamp()
}

/// GitHub's two limits, both waited out: the secondary one (403 with
/// `Retry-After`) and the primary one (403 with `X-RateLimit-Remaining: 0`
/// and the window's reset, here already past, so only the minimum delay),
/// which only the GitHub connector's rate-limit hook recognizes; and the
/// last request of a window (remaining 0 on a 200) waits for its reset.
#[tokio::test]
async fn both_rate_limits_are_waited_out_not_failed() {
    let mock = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(ISSUES))
        .respond_with(
            ResponseTemplate::new(403)
                .insert_header("retry-after", "1")
                .set_body_string(fixture("github/error-403-rate-limit.json")),
        )
        .up_to_n_times(1)
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path(ISSUES))
        .respond_with(
            ResponseTemplate::new(403)
                .insert_header("x-ratelimit-limit", "5000")
                .insert_header("x-ratelimit-remaining", "0")
                .insert_header("x-ratelimit-reset", "1700000000")
                .set_body_string(
                    r#"{"message":"API rate limit exceeded for user ID 1.","documentation_url":"https://docs.github.com/rest/overview/resources-in-the-rest-api#rate-limiting"}"#,
                ),
        )
        .up_to_n_times(1)
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path(ISSUES))
        .respond_with(
            json(fixture("github/issues-page2.json"))
                .insert_header("x-ratelimit-remaining", "0")
                .insert_header("x-ratelimit-reset", "1700000000"),
        )
        .mount(&mock)
        .await;
    let s = setup(&mock).await;
    let run = run_sync(&s, "gh", false).await;
    assert_eq!((run.done().requests, run.done().upserted_count), (3, 2));
    let reasons: Vec<&str> = run.waits.iter().map(|w| w.reason.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "the tracker's rate limit",
            "the tracker's rate limit",
            "rate limit window used up"
        ],
        "each wait is reported"
    );
}

/// A GitHub issue with only the fields the connector reads.
fn issue(number: u64, title: &str, updated: &str) -> serde_json::Value {
    serde_json::json!({
        "number": number,
        "title": title,
        "body": null,
        "html_url": format!("https://github.com/acme/shop/issues/{number}"),
        "state": "open",
        "labels": [],
        "created_at": "2026-11-01T00:00:00Z",
        "updated_at": updated,
        "closed_at": null,
    })
}

#[tokio::test]
async fn pages_fetched_ahead_are_stored_in_order_up_to_a_failure() {
    // Pages are fetched while earlier ones are written. Page 3 changes an
    // item of page 1, and page 4 fails for good, likely while page 3 is
    // still being written: pages 1 to 3 must all land, in order, with the
    // cursor at the end of page 3.
    let mock = MockServer::start().await;
    let pages = [
        vec![
            issue(1, "first", "2026-11-02T10:00:00Z"),
            issue(2, "second", "2026-11-02T11:00:00Z"),
        ],
        vec![issue(3, "third", "2026-11-02T12:00:00Z")],
        vec![
            issue(1, "first, renamed", "2026-11-02T13:00:00Z"),
            issue(4, "fourth", "2026-11-02T14:00:00Z"),
        ],
    ];
    for (i, body) in pages.iter().enumerate() {
        let next = format!("{}/repositories/42/issues?page={}", mock.uri(), i + 2);
        let m = if i == 0 {
            Mock::given(method("GET"))
                .and(path(ISSUES))
                .and(query_param_is_missing("since"))
        } else {
            Mock::given(method("GET"))
                .and(path("/repositories/42/issues"))
                .and(query_param("page", (i + 1).to_string().as_str()))
        };
        m.respond_with(
            json(serde_json::to_string(body).unwrap())
                .insert_header("link", format!("<{next}>; rel=\"next\"").as_str()),
        )
        .mount(&mock)
        .await;
    }
    Mock::given(method("GET"))
        .and(path("/repositories/42/issues"))
        .and(query_param("page", "4"))
        .respond_with(ResponseTemplate::new(404).set_body_string(r#"{"message":"Not Found"}"#))
        .mount(&mock)
        .await;
    let s = setup(&mock).await;
    let run = run_sync(&s, "gh", false).await;
    assert_eq!(
        run.error().code(),
        Code::FailedPrecondition,
        "{:?}",
        run.error()
    );
    let pages: Vec<(i32, i32)> = run
        .pages
        .iter()
        .map(|p| (p.page, p.upserted_count))
        .collect();
    assert_eq!(
        pages,
        [(1, 2), (2, 1), (3, 2)],
        "every fetched page, in order"
    );
    let items: Vec<(String, String)> = all_items(&s, "gh")
        .await
        .into_iter()
        .map(|i| (i.key, i.title))
        .collect();
    assert_eq!(
        items,
        [
            ("gh/1".to_string(), "first, renamed".to_string()),
            ("gh/2".into(), "second".into()),
            ("gh/3".into(), "third".into()),
            ("gh/4".into(), "fourth".into()),
        ]
    );
    let status = sync_status(&s, "gh").await;
    assert_eq!(
        status.cursor_time.map(|t| t.seconds),
        Some(secs("2026-11-02T14:00:00Z")),
        "the cursor stops at the last item of page 3"
    );

    // The resume asks from there and gets only the boundary item back.
    Mock::given(method("GET"))
        .and(path(ISSUES))
        .and(query_param("since", "2026-11-02T14:00:00Z"))
        .respond_with(json(
            serde_json::to_string(&[issue(4, "fourth", "2026-11-02T14:00:00Z")]).unwrap(),
        ))
        .mount(&mock)
        .await;
    let resumed = run_sync(&s, "gh", false).await;
    assert_eq!(resumed.done().upserted_count, 0, "nothing stored twice");
}

/// Answers the issues and says so on a channel the moment a request
/// arrives, before the answer's delay runs out.
struct Announced {
    arrived: tokio::sync::mpsc::UnboundedSender<()>,
    answer: ResponseTemplate,
}

impl wiremock::Respond for Announced {
    fn respond(&self, _: &wiremock::Request) -> ResponseTemplate {
        let _ = self.arrived.send(());
        self.answer.clone()
    }
}

#[tokio::test]
async fn two_syncs_of_one_source_never_run_at_once() {
    let mock = MockServer::start().await;
    let (arrived, mut first_request) = tokio::sync::mpsc::unbounded_channel();
    // The first sync's answer takes 2 s; the second sync starts once the
    // first one's request has arrived, and is refused without a request of
    // its own, long before that answer.
    Mock::given(method("GET"))
        .and(path(ISSUES))
        .respond_with(Announced {
            arrived,
            answer: json(fixture("github/issues-page2.json"))
                .set_delay(std::time::Duration::from_secs(2)),
        })
        .mount(&mock)
        .await;
    let s = setup(&mock).await;
    let (a, b) = tokio::join!(run_sync(&s, "gh", false), async {
        // The first sync is running once its request reached the tracker.
        first_request
            .recv()
            .await
            .expect("the first sync's request");
        run_sync(&s, "gh", false).await
    });
    assert_eq!(a.done().upserted_count, 2);
    assert_eq!(b.error().code(), Code::Aborted);
    assert_eq!(mock.received_requests().await.unwrap().len(), 1);
}

/// 5,000 issues over 50 pages: all land and rank; a second sync of the
/// unchanged project costs one request.
#[tokio::test]
async fn five_thousand_items_sync_and_rank_and_a_resync_costs_one_request() {
    let mock = MockServer::start().await;
    let base = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap();
    let template: serde_json::Value =
        serde_json::from_str::<Vec<serde_json::Value>>(&fixture("github/issues-page2.json"))
            .unwrap()[1]
            .clone();
    let total = 5_000usize;
    let pages = total / 100;
    let issue = |n: usize| {
        let mut v = template.clone();
        v["number"] = n.into();
        v["title"] = format!("Issue {n}").into();
        v["updated_at"] = (base + chrono::Duration::minutes(n as i64))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            .into();
        v["labels"] = serde_json::json!([{"name": format!("size:{}", 1 + n % 8)}, {"name": if n.is_multiple_of(3) { "hypothesis:H-1" } else { "misc" }}]);
        v
    };
    for p in 0..pages {
        let items: Vec<serde_json::Value> = (0..100).map(|i| issue(p * 100 + i + 1)).collect();
        let mut resp = json(serde_json::to_string(&items).unwrap());
        if p + 1 < pages {
            resp = resp.insert_header(
                "link",
                format!(
                    "<{}/repositories/42/issues?page={}>; rel=\"next\"",
                    mock.uri(),
                    p + 2
                )
                .as_str(),
            );
        }
        let m = if p == 0 {
            Mock::given(method("GET"))
                .and(path(ISSUES))
                .and(query_param_is_missing("since"))
        } else {
            Mock::given(method("GET"))
                .and(path("/repositories/42/issues"))
                .and(query_param("page", (p + 1).to_string().as_str()))
        };
        m.respond_with(resp).mount(&mock).await;
    }
    let last = base + chrono::Duration::minutes(total as i64);
    // The boundary item comes back as it was: compared, not written again.
    let last_item = serde_json::to_string(&[issue(total)]).unwrap();
    Mock::given(method("GET"))
        .and(path(ISSUES))
        .and(query_param(
            "since",
            last.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                .as_str(),
        ))
        .respond_with(json(last_item))
        .mount(&mock)
        .await;

    let s = setup(&mock).await;
    let first = run_sync(&s, "gh", false).await;
    assert_eq!(
        (first.done().pages, first.done().upserted_count),
        (pages as i32, total as i32)
    );
    assert_eq!(all_items(&s, "gh").await.len(), total);
    let top = rank(
        &s,
        pb::RankItemsRequest {
            page_size: 5,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(top.items.len(), 5);
    assert!(
        top.items[0].score.as_ref().unwrap().value > 0.0,
        "rule-linked items rank first"
    );

    let before = mock.received_requests().await.unwrap().len();
    let second = run_sync(&s, "gh", false).await;
    assert_eq!(
        (second.done().requests, second.done().upserted_count),
        (1, 0)
    );
    assert_eq!(mock.received_requests().await.unwrap().len() - before, 1);
}

/// A server with `sync` and a GitHub source `gh` on a mock answering one
/// page of issues to every listing.
async fn background_server(sync: plumbline::config::SyncConfig) -> (MockServer, TestServer) {
    let mock = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(ISSUES))
        .respond_with(json(fixture("github/issues-page2.json")))
        .mount(&mock)
        .await;
    set_test_token(TOKEN_VAR, TOKEN);
    let s = TestServer::start_with_sync(sync).await;
    create_source(
        &s,
        pb::Source {
            id: "gh".into(),
            kind: pb::TrackerKind::Github as i32,
            base_url: mock.uri(),
            project_key: "acme/shop".into(),
            token_env: TOKEN_VAR.into(),
            ..Default::default()
        },
    )
    .await;
    (mock, s)
}

/// With an interval set, the server syncs every source by itself.
#[tokio::test]
async fn the_background_sync_pulls_without_being_asked() {
    let (_mock, s) = background_server(plumbline::config::SyncConfig {
        interval_secs: 1,
        ..plumbline::config::SyncConfig::manual()
    })
    .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if all_items(&s, "gh").await.len() == 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no background sync within 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let st = sync_status(&s, "gh").await;
    assert!(matches!(
        pb::SyncState::try_from(st.state),
        Ok(pb::SyncState::Succeeded | pb::SyncState::Running)
    ));
}

/// With `full_interval_secs`, a background sync is full now and then: a
/// request without `since`, which sees what an incremental one cannot (a
/// reaction count that did not move `updated_at`).
#[tokio::test]
async fn the_background_sync_is_full_every_full_interval() {
    let (mock, _s) = background_server(plumbline::config::SyncConfig {
        interval_secs: 1,
        full_interval_secs: 2,
        ..plumbline::config::SyncConfig::manual()
    })
    .await;
    // The first syncs: the first one has no cursor yet, the next ones ask
    // with `since`; then a full one asks without it again.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let asked: Vec<bool> = mock
            .received_requests()
            .await
            .unwrap()
            .iter()
            .map(|r| r.url.query_pairs().any(|(k, _)| k == "since"))
            .collect();
        // An incremental request, then a later one without `since`.
        if let Some(first_incremental) = asked.iter().position(|&since| since)
            && asked[first_incremental..].iter().any(|&since| !since)
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no full background sync within 30 s: {asked:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn sync_rpcs_validate_their_input() {
    let mock = MockServer::start().await;
    let s = setup(&mock).await;
    assert_eq!(
        run_sync(&s, "nope", false).await.error().code(),
        Code::NotFound
    );
    assert_eq!(
        run_sync(&s, "bad id!", false).await.error().code(),
        Code::InvalidArgument
    );
    let st = sync_status(&s, "gh").await;
    assert_eq!(st.state, pb::SyncState::Never as i32);
    assert_eq!(st.cursor_time, None);
    let err = s
        .sync()
        .get_sync_status(pb::GetSyncStatusRequest {
            source_id: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

/// GitHub's API description allows a label to be a plain string as well as
/// an object; a page holding both kinds is read whole, and a string label
/// links and estimates as an object label does.
#[tokio::test]
async fn labels_given_as_plain_strings_are_read_like_label_objects() {
    let mock = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(ISSUES))
        .respond_with(json(fixture("github/issues-string-labels.json")))
        .mount(&mock)
        .await;
    let s = setup(&mock).await;

    let run = run_sync(&s, "gh", false).await;
    assert_eq!(run.done().upserted_count, 2, "the page is not malformed");
    let items = all_items(&s, "gh").await;
    let got: Vec<(&str, Vec<&str>, Option<f64>)> = items
        .iter()
        .map(|i| {
            (
                i.key.as_str(),
                i.labels.iter().map(String::as_str).collect(),
                i.estimate,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "gh/21",
                vec!["checkout", "size:2", "hypothesis:H-1"],
                Some(2.0)
            ),
            ("gh/22", vec!["payments", "size:3"], Some(3.0)),
        ]
    );
    let links = s
        .backlog()
        .list_links(pb::ListLinksRequest {
            item_key: "gh/21".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .links;
    assert_eq!(links.len(), 1);
    assert_eq!(links[0].hypothesis_id, "H-1", "the string label links");
}

/// An answer larger than the shared client reads (32 MiB) fails the sync
/// with what happened, instead of being held in memory whole.
#[tokio::test]
async fn an_answer_past_the_size_bound_is_not_read() {
    let mock = MockServer::start().await;
    let s = setup(&mock).await;
    let huge = format!(
        "[{}]",
        " ".repeat(plumbline::sync::http::MAX_RESPONSE_BYTES)
    );
    Mock::given(method("GET"))
        .and(path(ISSUES))
        .respond_with(json(huge))
        .mount(&mock)
        .await;
    let run = run_sync(&s, "gh", true).await;
    let err = run.error();
    assert!(
        err.message().contains("larger than") && err.message().contains("not read"),
        "{err:?}"
    );
    assert!(all_items(&s, "gh").await.is_empty());
}

/// An issue with GitHub's reaction rollup.
fn reacted(number: u64, updated: &str, plus_one: u64, heart: u64) -> serde_json::Value {
    let mut i = issue(number, &format!("issue {number}"), updated);
    i["reactions"] = serde_json::json!({
        "url": format!("https://api.github.com/repos/acme/shop/issues/{number}/reactions"),
        "total_count": plus_one + heart + 1,
        "+1": plus_one,
        "-1": 1,
        "laugh": 0,
        "hooray": 0,
        "confused": 0,
        "heart": heart,
        "rocket": 0,
        "eyes": 0
    });
    i
}

async fn votes_of(s: &TestServer) -> Vec<(String, Option<u64>)> {
    all_items(s, "gh")
        .await
        .into_iter()
        .map(|i| (i.key, i.votes))
        .collect()
}

/// GitHub's +1 reactions arrive with the first sync, stand beside the
/// score (never in it), and follow the tracker on later syncs: an
/// incremental one sees the issues GitHub returns as updated since the
/// cursor; a reaction alone does not move `updated_at`, so a full sync is
/// what catches a count that changed on an otherwise untouched issue.
#[tokio::test]
async fn reaction_counts_arrive_with_sync_and_follow_the_tracker() {
    let mock = MockServer::start().await;
    let first = serde_json::json!([
        reacted(1, "2026-11-02T10:00:00Z", 3, 2),
        reacted(2, "2026-11-02T11:00:00Z", 0, 0),
        issue(3, "no rollup", "2026-11-02T12:00:00Z"),
    ]);
    Mock::given(method("GET"))
        .and(path(ISSUES))
        .and(query_param_is_missing("since"))
        .respond_with(json(first.to_string()))
        .mount(&mock)
        .await;
    let s = setup(&mock).await;
    let before = full_ranking(&s, true).await;
    assert_eq!(run_sync(&s, "gh", false).await.done().upserted_count, 3);
    assert_eq!(
        votes_of(&s).await,
        [
            ("gh/1".into(), Some(3)),
            ("gh/2".into(), Some(0)),
            ("gh/3".into(), None)
        ],
        "the thumbs-up count, not hearts or the total"
    );
    let score = item_score(&s, "gh/1").await;
    assert_eq!(score.demand.as_ref().unwrap().votes, Some(3));
    assert_eq!(score.value, 0.0, "votes are not value");
    assert!(before.items.is_empty());

    // Incremental: GitHub returns what changed since the cursor, here
    // issue 1 edited and up-voted twice more.
    mock.reset().await;
    Mock::given(method("GET"))
        .and(path(ISSUES))
        .and(query_param("since", "2026-11-02T12:00:00Z"))
        .respond_with(json(
            serde_json::json!([
                issue(3, "no rollup", "2026-11-02T12:00:00Z"),
                reacted(1, "2026-11-03T09:00:00Z", 5, 2),
            ])
            .to_string(),
        ))
        .mount(&mock)
        .await;
    assert_eq!(run_sync(&s, "gh", false).await.done().upserted_count, 1);
    assert_eq!(votes_of(&s).await[0], ("gh/1".into(), Some(5)));

    // A full sync sees a count that changed without `updated_at` moving.
    mock.reset().await;
    Mock::given(method("GET"))
        .and(path(ISSUES))
        .and(query_param_is_missing("since"))
        .respond_with(json(
            serde_json::json!([
                reacted(2, "2026-11-02T11:00:00Z", 4, 0),
                issue(3, "no rollup", "2026-11-02T12:00:00Z"),
                reacted(1, "2026-11-03T09:00:00Z", 5, 2),
            ])
            .to_string(),
        ))
        .mount(&mock)
        .await;
    assert_eq!(run_sync(&s, "gh", true).await.done().upserted_count, 1);
    assert_eq!(
        votes_of(&s).await,
        [
            ("gh/1".into(), Some(5)),
            ("gh/2".into(), Some(4)),
            ("gh/3".into(), None)
        ]
    );
    let s = s.restart().await;
    assert_eq!(
        item_score(&s, "gh/2").await.demand.unwrap().votes,
        Some(4),
        "votes are stored and loaded into the index at start"
    );
}
