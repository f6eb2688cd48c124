//! Redmine sync end to end: recorded-shape Redmine answers served by a local
//! HTTP mock (wiremock on 127.0.0.1), a real server and SQLite file, and the
//! sync driven through the gRPC SyncService. Redmine is mounted under a
//! sub-path (`/redmine`), as it often is behind a reverse proxy.
//!
//! What every tracker must do (paging, the boundary duplicate, 304, refusals,
//! rate limits, retries, malformed answers, resuming) is checked for Redmine by
//! the conformance suite (`conformance/`); this file holds Redmine's quirks.

use std::collections::HashMap;

use crate::common::*;
use plumbline::proto as pb;
use tonic::Code;
use wiremock::matchers::{header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN_VAR: &str = "PLB_TEST_REDMINE_TOKEN";
/// Redmine API keys are 40 hex digits.
const TOKEN: &str = "3f9c2b7a1e8d4c6b5a0f9e8d7c6b5a4f3e2d1c0b";
const ISSUES: &str = "/redmine/issues.json";

fn fixture_json(name: &str) -> serde_json::Value {
    serde_json::from_str(&fixture(&format!("redmine/{name}"))).unwrap()
}

/// A 200 as Redmine (Rails) sends it.
fn json(body: String) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .insert_header("content-type", "application/json; charset=utf-8")
        .insert_header("cache-control", "max-age=0, private, must-revalidate")
        .insert_header("x-request-id", "0b5c6f1e-7d7e-4c1e-9a53-3c2d1f0e9b8a")
        .set_body_string(body)
}

/// A list answer of `issues` with Redmine's pagination fields.
fn list(issues: Vec<serde_json::Value>, total: usize, offset: usize) -> String {
    serde_json::json!({
        "issues": issues,
        "total_count": total,
        "offset": offset,
        "limit": 100,
    })
    .to_string()
}

fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn secs(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .timestamp()
}

/// A plain open support request `id`, updated at `updated`, built on issue
/// 315 of page 2.
fn plain_issue(id: usize, updated: &str) -> serde_json::Value {
    let mut v = fixture_json("issues-page2.json")["issues"][2].clone();
    v["id"] = id.into();
    v["subject"] = format!("Support request {id}").into();
    v["description"] = "Customer asks about delivery times.".into();
    v["estimated_hours"] = serde_json::Value::Null;
    v["created_on"] = updated.into();
    v["updated_on"] = updated.into();
    v["custom_fields"][0]["value"] = "".into();
    v
}

/// Page 1 as Redmine answers it: a full page of 100. The fixture holds its
/// interesting last three issues (311-313); in front of them come 97 plain
/// support requests (201-297), updated earlier.
fn page1() -> String {
    let mut page = fixture_json("issues-page1.json");
    let base = chrono::DateTime::parse_from_rfc3339("2026-10-01T00:00:00Z").unwrap();
    let mut issues: Vec<serde_json::Value> = (1..=97)
        .map(|n| {
            let t = base + chrono::Duration::hours(n as i64);
            plain_issue(200 + n, &rfc3339(t.into()))
        })
        .collect();
    issues.extend(page["issues"].as_array().unwrap().iter().cloned());
    page["issues"] = issues.into();
    page.to_string()
}

/// A server with a Redmine source `rm` pointing at `mock`.
async fn setup(mock: &MockServer) -> TestServer {
    setup_with(mock, "").await
}

async fn setup_with(mock: &MockServer, estimate_field: &str) -> TestServer {
    mount_current_user(mock).await;
    setup_source(mock, estimate_field).await
}

/// A server with the Redmine source `rm`, whatever `mock` answers to who
/// its key is.
async fn setup_source(mock: &MockServer, estimate_field: &str) -> TestServer {
    set_test_token(TOKEN_VAR, TOKEN);
    let s = TestServer::start().await;
    value_model_for_rules(&s).await;
    create_source(
        &s,
        pb::Source {
            id: "rm".into(),
            kind: pb::TrackerKind::Redmine as i32,
            base_url: format!("{}/redmine", mock.uri()),
            project_key: "shop".into(),
            token_env: TOKEN_VAR.into(),
            estimate_field: estimate_field.into(),
            ..Default::default()
        },
    )
    .await;
    s
}

/// The full sync's two pages: offset 0 and offset 100, open and closed
/// issues, no time filter.
async fn mount_two_pages(mock: &MockServer) {
    Mock::given(method("GET"))
        .and(path(ISSUES))
        .and(query_param("project_id", "shop"))
        .and(query_param("status_id", "*"))
        .and(query_param("sort", "updated_on"))
        .and(query_param("limit", "100"))
        .and(query_param("offset", "0"))
        .and(query_param_is_missing("updated_on"))
        .and(header("x-redmine-api-key", TOKEN))
        .respond_with(json(page1()))
        .mount(mock)
        .await;
    Mock::given(method("GET"))
        .and(path(ISSUES))
        .and(query_param("project_id", "shop"))
        .and(query_param("status_id", "*"))
        .and(query_param("sort", "updated_on"))
        .and(query_param("limit", "100"))
        .and(query_param("offset", "100"))
        .and(query_param_is_missing("updated_on"))
        .and(header("x-redmine-api-key", TOKEN))
        .respond_with(json(fixture("redmine/issues-page2.json")))
        .mount(mock)
        .await;
}

async fn items_by_key(s: &TestServer) -> HashMap<String, pb::Item> {
    all_items(s, "rm")
        .await
        .into_iter()
        .map(|i| (i.key.clone(), i))
        .collect()
}

async fn links_of(s: &TestServer, key: &str) -> Vec<(String, f64, i32)> {
    s.backlog()
        .list_links(pb::ListLinksRequest {
            item_key: key.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .links
        .into_iter()
        .map(|l| (l.hypothesis_id, l.contribution, l.origin))
        .collect()
}

/// The requests the mock received for issues (not who the key is).
async fn requests(mock: &MockServer) -> Vec<wiremock::Request> {
    mock.received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.url.path() != CURRENT_USER)
        .collect()
}

const CURRENT_USER: &str = "/redmine/users/current.json";

/// Redmine's answer to who the key is: the user, for the test key.
async fn mount_current_user(mock: &MockServer) {
    Mock::given(method("GET"))
        .and(path(CURRENT_USER))
        .and(header("x-redmine-api-key", TOKEN))
        .respond_with(json(fixture("redmine/users-current.json")))
        .mount(mock)
        .await;
}

#[tokio::test]
async fn a_multi_page_sync_pages_by_offset_and_maps_every_field() {
    let mock = MockServer::start().await;
    mount_two_pages(&mock).await;
    let s = setup(&mock).await;

    let run = run_sync(&s, "rm", false).await;
    let done = run.done();
    assert_eq!(
        (done.pages, done.requests, done.upserted_count),
        (2, 2, 103)
    );
    assert_eq!(
        run.pages
            .iter()
            .map(|p| (p.item_count, p.expected_total))
            .collect::<Vec<_>>(),
        [(100, 103), (3, 103)],
        "total_count is the expected total"
    );

    // Page 2 is page 1's URL with offset 100; closed issues are asked for.
    let reqs = requests(&mock).await;
    assert_eq!(reqs.len(), 2);
    let query = |r: &wiremock::Request| -> HashMap<String, String> {
        r.url.query_pairs().into_owned().collect()
    };
    let (q1, q2) = (query(&reqs[0]), query(&reqs[1]));
    assert_eq!(q1["offset"], "0");
    assert_eq!(q2["offset"], "100");
    for q in [&q1, &q2] {
        assert_eq!(q["status_id"], "*", "closed issues are included");
        assert_eq!(q["sort"], "updated_on", "ascending");
        assert_eq!(q["limit"], "100");
        assert_eq!(q["project_id"], "shop");
        assert!(!q.contains_key("updated_on"), "a first sync asks for all");
    }
    assert_eq!(reqs[1].url.path(), ISSUES);
    assert!(reqs.iter().all(|r| r.headers["x-redmine-api-key"] == TOKEN));

    let items = items_by_key(&s).await;
    assert_eq!(items.len(), 103);
    let one = &items["rm/311"];
    assert_eq!(one.title, "One-page checkout on mobile");
    assert_eq!(one.url, format!("{}/redmine/issues/311", mock.uri()));
    assert_eq!(one.state, pb::ItemState::Open as i32);
    assert_eq!(one.labels, ["Feature", "Checkout"], "tracker and category");
    assert_eq!(one.estimate, Some(5.0), "from estimated_hours");
    assert_eq!(one.parent_key, "");
    assert_eq!(
        one.create_time.as_ref().map(|t| t.seconds),
        Some(secs("2026-10-01T08:00:00Z"))
    );
    assert_eq!(
        one.update_time.as_ref().map(|t| t.seconds),
        Some(secs("2026-11-01T09:00:00Z"))
    );
    assert_eq!(one.close_time, None);
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

    let child = &items["rm/312"];
    assert_eq!(child.parent_key, "rm/311", "parent.id in this source");
    assert_eq!(child.labels, ["Bug"], "no category");
    assert_eq!(child.body, "", "a null description");
    assert_eq!(child.estimate, None, "estimated_hours null");

    let closed = &items["rm/313"];
    assert_eq!(closed.state, pb::ItemState::Closed as i32);
    assert_eq!(
        closed.close_time.as_ref().map(|t| t.seconds),
        Some(secs("2026-11-03T11:30:00Z"))
    );
    let rejected = &items["rm/317"];
    assert_eq!(rejected.state, pb::ItemState::Closed as i32, "is_closed");
    assert_eq!(rejected.estimate, None, "0 hours is no estimate");
    let resolved = &items["rm/314"];
    assert_eq!(
        resolved.state,
        pb::ItemState::Open as i32,
        "Resolved is an open status in Redmine"
    );
    assert_eq!(resolved.estimate, Some(8.0));
    assert_eq!(items["rm/315"].estimate, Some(0.5));
    assert_eq!(items["rm/315"].labels, ["Support"]);
    assert_eq!(items["rm/201"].title, "Support request 201");

    // Link rules read the descriptions.
    let rule = pb::LinkOrigin::Rule as i32;
    assert_eq!(
        links_of(&s, "rm/311").await,
        [("H-1".to_string(), 0.5, rule)]
    );
    assert_eq!(
        links_of(&s, "rm/314").await,
        [("H-2".to_string(), 1.0, rule)]
    );
    assert!(links_of(&s, "rm/315").await.is_empty());

    // The synced items rank: linked ones lead, closed ones are left out.
    let ranked = keys(
        &rank(
            &s,
            pb::RankItemsRequest {
                page_size: 200,
                ..Default::default()
            },
        )
        .await,
    );
    assert_eq!(ranked.len(), 101, "rm/313 and rm/317 are closed");
    assert_eq!(ranked[..2], ["rm/311", "rm/314"]);

    let st = sync_status(&s, "rm").await;
    assert_eq!(st.state, pb::SyncState::Succeeded as i32);
    assert_eq!(
        st.cursor_time.map(|t| t.seconds),
        Some(secs("2026-11-05T13:00:00Z"))
    );
    assert_eq!(st.last_request_count, 2);
}

#[tokio::test]
async fn a_rejected_query_and_an_unknown_project_fail_clearly() {
    let mock = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(ISSUES))
        .respond_with(
            ResponseTemplate::new(422)
                .insert_header("content-type", "application/json; charset=utf-8")
                .set_body_string(fixture("redmine/error-422.json")),
        )
        .expect(1)
        .mount(&mock)
        .await;
    let s = setup(&mock).await;
    let run = run_sync(&s, "rm", false).await;
    let err = run.error();
    assert_eq!(
        err.code(),
        Code::FailedPrecondition,
        "retrying cannot fix it"
    );
    assert!(
        err.message().contains("422") && err.message().contains("Updated is invalid"),
        "{err:?}"
    );
    assert!(all_items(&s, "rm").await.is_empty());

    // A project_id Redmine does not know (or hides) is an empty 404.
    mock.reset().await;
    Mock::given(method("GET"))
        .and(path(ISSUES))
        .respond_with(ResponseTemplate::new(404))
        .expect(1)
        .mount(&mock)
        .await;
    let run = run_sync(&s, "rm", false).await;
    let err = run.error();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("/redmine/issues.json")
            && err.message().contains("project_key")
            && !err.message().contains("updated_on"),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_unknown_estimate_field_fails_before_any_request() {
    let mock = MockServer::start().await;
    let s = setup_with(&mock, "story_points").await;
    let run = run_sync(&s, "rm", false).await;
    let err = run.error();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("story_points") && err.message().contains("cf_ID"),
        "{err:?}"
    );
    assert!(requests(&mock).await.is_empty());
}

#[tokio::test]
async fn estimates_can_come_from_a_string_custom_field() {
    let mock = MockServer::start().await;
    mount_two_pages(&mock).await;
    let s = setup_with(&mock, "cf_12").await;
    run_sync(&s, "rm", false).await.done();
    let items = items_by_key(&s).await;
    let est = |k: &str| items[k].estimate;
    assert_eq!(est("rm/311"), Some(3.0), "\"3\", not the 5 estimated hours");
    assert_eq!(est("rm/313"), Some(2.0));
    assert_eq!(est("rm/314"), Some(8.0));
    assert_eq!(est("rm/312"), None, "an empty value");
    assert_eq!(est("rm/315"), None, "\"n/a\" is no number");
    assert_eq!(est("rm/317"), None, "\"0\" is no estimate");
    assert_eq!(est("rm/201"), None);
}

#[tokio::test]
async fn an_older_redmine_without_is_closed_reads_closed_on_and_the_status() {
    let mock = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(ISSUES))
        .respond_with(json(fixture("redmine/issues-redmine-5.0.json")))
        .mount(&mock)
        .await;
    let s = setup(&mock).await;
    run_sync(&s, "rm", false).await.done();
    let items = items_by_key(&s).await;
    let state = |k: &str| {
        let it = &items[k];
        (
            it.state == pb::ItemState::Closed as i32,
            it.close_time.as_ref().map(|t| t.seconds),
        )
    };
    assert_eq!(state("rm/41"), (true, Some(secs("2023-03-01T10:00:00Z"))));
    assert_eq!(
        state("rm/42"),
        (false, None),
        "reopened: Redmine keeps closed_on, the status is open"
    );
    assert_eq!(
        state("rm/43"),
        (true, Some(secs("2023-03-06T10:00:00Z"))),
        "a custom closed status"
    );
    assert_eq!(state("rm/44"), (false, None));
    assert_eq!(items["rm/44"].body, "", "no description key at all");
    assert_eq!(items["rm/42"].estimate, Some(1.5));
}

/// 1,000 issues over 10 offset pages: all land, the loop stops at
/// total_count, and a second sync of the unchanged project costs one request.
#[tokio::test]
async fn a_thousand_issues_sync_by_offset_and_a_resync_costs_one_request() {
    let mock = MockServer::start().await;
    let base = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap();
    let updated = |n: usize| rfc3339((base + chrono::Duration::minutes(n as i64)).into());
    let total = 1_000usize;
    for p in 0..total / 100 {
        let issues = (1..=100)
            .map(|i| {
                let n = p * 100 + i;
                let mut v = plain_issue(n, &updated(n));
                v["estimated_hours"] = (1 + n % 8).into();
                v
            })
            .collect();
        Mock::given(method("GET"))
            .and(path(ISSUES))
            .and(query_param_is_missing("updated_on"))
            .and(query_param("offset", (p * 100).to_string().as_str()))
            .respond_with(json(list(issues, total, p * 100)))
            .expect(1)
            .mount(&mock)
            .await;
    }
    // The boundary issue comes back as it was: compared, not written again.
    let mut last = plain_issue(total, &updated(total));
    last["estimated_hours"] = (1 + total % 8).into();
    Mock::given(method("GET"))
        .and(path(ISSUES))
        .and(query_param(
            "updated_on",
            format!(">={}", updated(total)).as_str(),
        ))
        .and(query_param("offset", "0"))
        .respond_with(json(list(vec![last], 1, 0)))
        .expect(1)
        .mount(&mock)
        .await;

    let s = setup(&mock).await;
    let first = run_sync(&s, "rm", false).await;
    assert_eq!(
        (
            first.done().pages,
            first.done().requests,
            first.done().upserted_count
        ),
        (10, 10, total as i32)
    );
    assert_eq!(all_items(&s, "rm").await.len(), total);

    let before = requests(&mock).await.len();
    let second = run_sync(&s, "rm", false).await;
    assert_eq!(
        (second.done().requests, second.done().upserted_count),
        (1, 0)
    );
    assert_eq!(requests(&mock).await.len() - before, 1);
}

const WRONG_VAR: &str = "PLB_TEST_REDMINE_WRONG_KEY";
const WRONG_KEY: &str = "0badc0ffee0badc0ffee0badc0ffee0badc0ffee";

/// Redmine on a public project: issues answer anyone, a wrong key included
/// (as the anonymous user), and `/users/current.json` answers 401 to
/// anyone but a known key, as Redmine's `require_login` does for the API.
async fn mount_public_project(mock: &MockServer) {
    mount_current_user(mock).await;
    Mock::given(method("GET"))
        .and(path(CURRENT_USER))
        .respond_with(
            ResponseTemplate::new(401)
                .insert_header("www-authenticate", "Basic realm=\"Redmine API\"")
                .insert_header("content-type", "text/html"),
        )
        .with_priority(10)
        .mount(mock)
        .await;
    Mock::given(method("GET"))
        .and(path(ISSUES))
        .respond_with(json(list(
            vec![plain_issue(201, "2026-11-02T09:00:00Z")],
            1,
            0,
        )))
        .mount(mock)
        .await;
}

fn redmine_source(token_env: &str, mock: &MockServer) -> pb::Source {
    pb::Source {
        id: "rm".into(),
        kind: pb::TrackerKind::Redmine as i32,
        base_url: format!("{}/redmine", mock.uri()),
        project_key: "shop".into(),
        token_env: token_env.into(),
        ..Default::default()
    }
}

/// A wrong key on a public project: Redmine would answer every request as
/// anonymous (200), so the sync would "succeed" and only a write-back fail.
/// Adding the source with it is refused, naming the variable (never the key)
/// and what to check; so is changing a source to it; and a source whose key
/// could not be checked when it was added fails its sync, storing nothing.
#[tokio::test]
async fn a_key_redmine_answers_as_anonymous_is_refused_when_added_and_synced() {
    set_test_token(WRONG_VAR, WRONG_KEY);
    let mock = MockServer::start().await;
    mount_public_project(&mock).await;
    let s = TestServer::start().await;

    let err = assert_code(
        s.sources()
            .create_source(pb::CreateSourceRequest {
                source: Some(redmine_source(WRONG_VAR, &mock)),
            })
            .await,
        Code::FailedPrecondition,
    );
    let msg = err.message();
    assert!(
        msg.starts_with(&format!(
            "source \"rm\": the tracker does not accept the key in {WRONG_VAR}: /redmine/users/current.json answered 401"
        )),
        "{msg}"
    );
    assert!(msg.contains("anonymous user"), "{msg}");
    assert!(!msg.contains(WRONG_KEY), "never the key: {msg}");
    assert_code(
        s.sources()
            .get_source(pb::GetSourceRequest { id: "rm".into() })
            .await,
        Code::NotFound,
    );

    // The CLI says the same, in plumbline's words.
    let out = run_cli(&[
        "sources",
        "add",
        "rm",
        "--kind",
        "redmine",
        "--url",
        &format!("{}/redmine", mock.uri()),
        "--project",
        "shop",
        "--token-env",
        WRONG_VAR,
        "--server",
        &s.server().url(),
    ])
    .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: source \"rm\": the tracker does not accept the key"),
        "{stderr}"
    );

    // A good key is accepted; changing to the wrong one is refused.
    set_test_token(TOKEN_VAR, TOKEN);
    let made = s
        .sources()
        .create_source(pb::CreateSourceRequest {
            source: Some(redmine_source(TOKEN_VAR, &mock)),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(made.warnings.is_empty(), "{:?}", made.warnings);
    let err = assert_code(
        s.sources()
            .update_source(pb::UpdateSourceRequest {
                source: Some(pb::Source {
                    id: "rm".into(),
                    token_env: WRONG_VAR.into(),
                    ..Default::default()
                }),
                update_mask: mask(&["token_env"]),
            })
            .await,
        Code::FailedPrecondition,
    );
    assert!(err.message().contains(WRONG_VAR), "{err:?}");
    s.stop().await;

    // Added while Redmine could not say (its identity endpoint 404 behind a
    // proxy): a warning, and the sync checks and fails, naming the source.
    let mock = MockServer::start().await;
    let s = TestServer::start().await;
    let made = s
        .sources()
        .create_source(pb::CreateSourceRequest {
            source: Some(redmine_source(WRONG_VAR, &mock)),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(made.warnings.len(), 1);
    assert!(
        made.warnings[0].starts_with("could not check who the key authenticates as"),
        "{:?}",
        made.warnings
    );
    mount_public_project(&mock).await;
    let run = run_sync(&s, "rm", false).await;
    assert_eq!(run.error().code(), Code::FailedPrecondition);
    assert!(
        run.error()
            .message()
            .starts_with("source \"rm\": the tracker does not accept the key"),
        "{:?}",
        run.error()
    );
    assert!(all_items(&s, "rm").await.is_empty(), "nothing stored");
    let st = sync_status(&s, "rm").await;
    assert_eq!(st.state, pb::SyncState::Failed as i32);
    assert!(st.last_error.contains("anonymous user"), "{st:?}");
    assert!(
        requests(&mock).await.is_empty(),
        "no issue was asked for with a rejected key"
    );
    s.stop().await;
}

/// A source configured without a key on purpose syncs a public project as
/// Redmine's anonymous user, with a warning when it is added and when it
/// syncs (in the answer and on the CLI's stderr); no identity is asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_without_a_key_syncs_as_anonymous_with_a_warning() {
    let mock = MockServer::start().await;
    mount_public_project(&mock).await;
    let s = TestServer::start().await;
    let made = s
        .sources()
        .create_source(pb::CreateSourceRequest {
            source: Some(redmine_source("", &mock)),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(made.warnings.len(), 1);
    assert!(
        made.warnings[0].starts_with(
            "source \"rm\" names no token: the tracker answers it as its anonymous user"
        ),
        "{:?}",
        made.warnings
    );
    let run = run_sync(&s, "rm", false).await;
    assert_eq!(run.done().warnings, made.warnings);
    assert_eq!(run.done().requests, 1, "no identity asked without a key");

    let url = s.server().url();
    let out = run_cli(&["sync", "rm", "--server", &url]).await;
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("warning: source \"rm\" names no token"),
        "{stderr}"
    );
    let out = run_cli(&[
        "sources",
        "add",
        "rm2",
        "--kind",
        "redmine",
        "--url",
        &format!("{}/redmine", mock.uri()),
        "--project",
        "shop",
        "--server",
        &url,
    ])
    .await;
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("warning: source \"rm2\" names no token"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let asked = mock
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path() == CURRENT_USER)
        .count();
    assert_eq!(asked, 0);
    s.stop().await;
}

/// A Redmine (or a proxy in front of it) that ignores `offset` answers page
/// 1 to every request, with `offset: 0` and a total above it: the next page
/// it implies is one already fetched. The sync stops with a malformed-answer
/// error after two requests instead of asking the same page forever, and
/// stores nothing of the page that repeats the loop.
#[tokio::test]
async fn a_tracker_that_answers_the_same_page_again_is_not_asked_forever() {
    let mock = MockServer::start().await;
    let mut first = fixture_json("issues-page1.json");
    first["total_count"] = 250.into();
    first["offset"] = 0.into();
    Mock::given(method("GET"))
        .and(path(ISSUES))
        .respond_with(json(first.to_string()))
        .mount(&mock)
        .await;
    let s = setup(&mock).await;

    // Without the check this sync never ends.
    let run = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        run_sync(&s, "rm", false),
    )
    .await
    .expect("the sync stops by itself");
    let err = run.error();
    // A malformed answer is UNAVAILABLE, as the other malformed answers.
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(
        err.message()
            .contains("named a page it had already answered"),
        "{}",
        err.message()
    );
    let reqs = requests(&mock).await;
    assert_eq!(
        reqs.len(),
        2,
        "page 1, then the page it named once; no more"
    );
}

/// A Redmine behind a proxy that hides `/users/current.json` (404) is not
/// refused for it: the sync goes on and warns that the key could not be
/// checked. Only a key answered as anonymous fails the sync.
#[tokio::test]
async fn a_hidden_identity_endpoint_is_a_warning_not_a_failed_sync() {
    let mock = MockServer::start().await;
    mount_two_pages(&mock).await;
    let s = setup_source(&mock, "").await;
    let run = run_sync(&s, "rm", false).await;
    let done = run.done();
    assert_eq!(done.upserted_count, 103);
    assert!(
        done.warnings
            .iter()
            .any(|w| w.contains("could not check who the key authenticates as")),
        "{:?}",
        done.warnings
    );
    assert!(done.warnings.iter().all(|w| !w.contains(TOKEN)));
}
