//! Jira Cloud sync end to end: recorded-shape answers of the enhanced JQL
//! search (`/rest/api/3/search/jql`, ADF descriptions, token pagination)
//! served by a local HTTP mock (wiremock on 127.0.0.1), a real server and
//! SQLite file, and the sync driven through the gRPC SyncService.
//!
//! What every tracker must do (paging, the boundary duplicate, 304, refusals,
//! rate limits, retries, malformed answers, resuming) is checked for Jira by
//! the conformance suite (`conformance/`); this file holds Jira's quirks.

use crate::common::*;
use chrono::{DateTime, Duration, Utc};
use plumbline::proto as pb;
use wiremock::matchers::{header, method, path, query_param, query_param_is_missing};
use wiremock::{Match, Mock, MockServer, Request, ResponseTemplate};

const TOKEN_VAR: &str = "PLB_TEST_JIRA_TOKEN";
const TOKEN: &str = "me@example.com:jira-api-token";
/// `Basic ` and base64 of TOKEN, worked out independently
/// (`printf %s me@example.com:jira-api-token | base64`).
const BASIC: &str = "Basic bWVAZXhhbXBsZS5jb206amlyYS1hcGktdG9rZW4=";
const SEARCH: &str = "/rest/api/3/search/jql";
/// The `nextPageToken` of search-page1.json.
const PAGE2_TOKEN: &str = "CAEaAggDIgwKBDEwMTMSBE9QUy0xMw";
const FIELDS: &str = concat!(
    "summary,description,status,labels,created,updated,",
    "resolutiondate,statuscategorychangedate,parent,issuetype,votes"
);

fn json(body: String) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .insert_header("content-type", "application/json;charset=UTF-8")
        .insert_header("x-arequestid", "4c1f2d3e-5a6b-4c7d-8e9f-0a1b2c3d4e5f")
        .set_body_string(body)
}

fn time(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .with_timezone(&Utc)
}

fn secs(rfc3339: &str) -> i64 {
    time(rfc3339).timestamp()
}

/// The JQL of a request.
fn jql_of(req: &Request) -> Option<String> {
    req.url
        .query_pairs()
        .find(|(k, _)| k == "jql")
        .map(|(_, v)| v.into_owned())
}

/// Matches the search's JQL: project OPS ascending by update time, and either
/// no time filter (`since` = None) or `updated >= "-Nm"` reaching back to
/// between one and two minutes before `since` (whole minutes rounded up,
/// plus one).
struct Jql {
    since: Option<DateTime<Utc>>,
}

fn jql_all() -> Jql {
    Jql { since: None }
}

fn jql_since(rfc3339: &str) -> Jql {
    Jql {
        since: Some(time(rfc3339)),
    }
}

impl Match for Jql {
    fn matches(&self, req: &Request) -> bool {
        let Some(jql) = jql_of(req) else {
            return false;
        };
        let Some(since) = self.since else {
            return jql == r#"project = "OPS" ORDER BY updated ASC"#;
        };
        let minutes = jql
            .strip_prefix(r#"project = "OPS" AND updated >= "-"#)
            .and_then(|r| r.strip_suffix(r#"m" ORDER BY updated ASC"#))
            .and_then(|n| n.parse::<i64>().ok());
        let Some(minutes) = minutes else {
            return false;
        };
        if since >= Utc::now() {
            return minutes == 1;
        }
        // The connector's clock read a moment before ours.
        let reach = Utc::now() - Duration::minutes(minutes);
        reach <= since - Duration::seconds(55) && reach > since - Duration::seconds(120)
    }
}

/// A server with a Jira source pointing at `mock`; the estimate field is
/// left empty (story points, customfield_10016).
async fn setup(mock: &MockServer) -> TestServer {
    set_test_token(TOKEN_VAR, TOKEN);
    let s = TestServer::start().await;
    value_model_for_rules(&s).await;
    create_source(
        &s,
        pb::Source {
            id: "ops".into(),
            kind: pb::TrackerKind::Jira as i32,
            base_url: format!("{}/", mock.uri()),
            project_key: "OPS".into(),
            token_env: TOKEN_VAR.into(),
            ..Default::default()
        },
    )
    .await;
    s
}

/// Page 1 (no token) hands over a nextPageToken; page 2 is the last.
async fn mount_two_pages(mock: &MockServer) {
    Mock::given(method("GET"))
        .and(path(SEARCH))
        .and(jql_all())
        .and(query_param("fields", format!("{FIELDS},customfield_10016")))
        .and(query_param("maxResults", "100"))
        .and(query_param_is_missing("nextPageToken"))
        .and(header("authorization", BASIC))
        .and(header("accept", "application/json"))
        .respond_with(json(fixture("jira/search-page1.json")))
        .mount(mock)
        .await;
    Mock::given(method("GET"))
        .and(path(SEARCH))
        .and(jql_all())
        .and(query_param("fields", format!("{FIELDS},customfield_10016")))
        .and(query_param("maxResults", "100"))
        .and(query_param("nextPageToken", PAGE2_TOKEN))
        .and(header("authorization", BASIC))
        .respond_with(json(fixture("jira/search-page2.json")))
        .mount(mock)
        .await;
}

async fn links_of(s: &TestServer, key: &str) -> Vec<(String, f64)> {
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
        .map(|l| {
            assert_eq!(l.origin, pb::LinkOrigin::Rule as i32);
            (l.hypothesis_id, l.contribution)
        })
        .collect()
}

#[tokio::test]
async fn a_multi_page_sync_follows_the_page_token_and_maps_every_field() {
    let mock = MockServer::start().await;
    mount_two_pages(&mock).await;
    let s = setup(&mock).await;

    let run = run_sync(&s, "ops", false).await;
    let done = run.done();
    assert_eq!((done.pages, done.requests, done.upserted_count), (2, 2, 5));
    assert_eq!(
        run.pages.iter().map(|p| p.item_count).collect::<Vec<_>>(),
        [3, 2]
    );

    // The second request is the first plus the token; the first has none.
    let reqs = mock.received_requests().await.unwrap();
    assert_eq!(reqs.len(), 2);
    let query =
        |r: &Request| -> Vec<(String, String)> { r.url.query_pairs().into_owned().collect() };
    let (q1, mut q2) = (query(&reqs[0]), query(&reqs[1]));
    assert!(q1.iter().all(|(k, _)| k != "nextPageToken"), "{q1:?}");
    assert_eq!(q2.pop(), Some(("nextPageToken".into(), PAGE2_TOKEN.into())));
    assert_eq!(q1, q2);

    let items = all_items(&s, "ops").await;
    let item_keys: Vec<&str> = items.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(
        item_keys,
        [
            "ops/OPS-11",
            "ops/OPS-12",
            "ops/OPS-13",
            "ops/OPS-14",
            "ops/OPS-15"
        ]
    );

    let one = &items[0];
    assert_eq!(one.external_id, "OPS-11");
    assert_eq!(one.title, "One-page checkout on mobile");
    assert_eq!(one.url, format!("{}/browse/OPS-11", mock.uri()));
    assert_eq!(one.state, pb::ItemState::Open as i32, "In Progress is open");
    assert_eq!(one.estimate, Some(5.0), "story points");
    assert_eq!(one.labels, ["checkout", "hypothesis:H-1"]);
    assert_eq!(one.parent_key, "ops/OPS-10", "the epic");
    assert_eq!(
        one.create_time.as_ref().map(|t| t.seconds),
        Some(secs("2026-10-01T08:00:00Z")),
        "+0200 offset"
    );
    assert_eq!(one.close_time, None);
    // The ADF description is text, and its task list a checklist.
    assert_eq!(
        one.body,
        "Make checkout fit one screen.\n- [ ] merge address and payment steps\n- [x] measure drop-off per step\n- [ ] keep form state on reload"
    );
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

    let two = &items[1];
    assert_eq!(
        two.body,
        "Why\nHypothesis: H-2 (0.5)\nSuggested by @Dana Reyes\nafter the October usability test.\n- postcode lookup\n- street suggestions"
    );
    assert!(two.tasks.is_empty());
    assert_eq!(two.estimate, Some(2.0));

    let sub = &items[2];
    assert_eq!(sub.parent_key, "ops/OPS-11", "a subtask's parent");
    assert_eq!(sub.body, "", "null description");
    assert_eq!(sub.state, pb::ItemState::Open as i32, "In Review is open");
    assert_eq!(
        sub.update_time.as_ref().map(|t| t.seconds),
        Some(secs("2026-11-03T11:30:00Z")),
        "13:30+0200"
    );

    let done_item = &items[3];
    assert_eq!(done_item.state, pb::ItemState::Closed as i32);
    assert_eq!(
        done_item.close_time.as_ref().map(|t| t.seconds),
        Some(secs("2026-11-04T12:00:00Z")),
        "resolutiondate"
    );
    assert_eq!(done_item.parent_key, "");
    assert_eq!(items[4].estimate, None, "null story points");

    // Link rules ran: a label and a description line.
    assert_eq!(links_of(&s, "ops/OPS-11").await, [("H-1".to_string(), 1.0)]);
    assert_eq!(links_of(&s, "ops/OPS-12").await, [("H-2".to_string(), 0.5)]);
    assert!(links_of(&s, "ops/OPS-15").await.is_empty());

    // The synced items rank; linked ones lead; the done one is left out.
    let ranked = keys(
        &rank(
            &s,
            pb::RankItemsRequest {
                page_size: 10,
                ..Default::default()
            },
        )
        .await,
    );
    assert_eq!(ranked.len(), 4, "{ranked:?}");
    let mut lead = ranked[..2].to_vec();
    lead.sort();
    assert_eq!(lead, ["ops/OPS-11", "ops/OPS-12"], "{ranked:?}");

    let st = sync_status(&s, "ops").await;
    assert_eq!(st.state, pb::SyncState::Succeeded as i32);
    assert_eq!(
        st.cursor_time.map(|t| t.seconds),
        Some(secs("2026-11-05T13:00:00Z"))
    );
    assert_eq!(st.last_request_count, 2);
}

#[tokio::test]
async fn an_incremental_sync_asks_relative_to_the_cursor_and_skips_the_overlap() {
    let mock = MockServer::start().await;
    mount_two_pages(&mock).await;
    let s = setup(&mock).await;
    run_sync(&s, "ops", false).await.done();

    Mock::given(method("GET"))
        .and(path(SEARCH))
        .and(jql_since("2026-11-05T13:00:00Z"))
        .and(query_param_is_missing("nextPageToken"))
        .and(header("authorization", BASIC))
        .respond_with(json(fixture("jira/search-since.json")))
        .expect(1)
        .mount(&mock)
        .await;
    let run = run_sync(&s, "ops", false).await;
    let done = run.done();
    assert_eq!(
        (done.pages, done.requests, done.upserted_count),
        (1, 1, 1),
        "only OPS-16 is new; OPS-15 is the overlap"
    );
    assert_eq!(run.pages[0].item_count, 2);
    let items = all_items(&s, "ops").await;
    assert_eq!(items.len(), 6);
    let new = items.iter().find(|i| i.key == "ops/OPS-16").unwrap();
    assert_eq!(
        (new.estimate, new.body.as_str()),
        (Some(8.0), "Let people pay without an account.")
    );
    assert_eq!(
        sync_status(&s, "ops").await.cursor_time.map(|t| t.seconds),
        Some(secs("2026-11-06T14:00:00Z"))
    );
    // Only the first sync asked without a time filter.
    let reqs = mock.received_requests().await.unwrap();
    let filtered: Vec<bool> = reqs
        .iter()
        .map(|r| jql_of(r).unwrap().contains("updated >= \"-"))
        .collect();
    assert_eq!(filtered, [false, false, true]);
}

#[tokio::test]
async fn rate_limits_and_busy_answers_are_waited_out() {
    let mock = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(SEARCH))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "1")
                .insert_header("x-ratelimit-reason", "jira-burst-based")
                .set_body_string(""),
        )
        .up_to_n_times(1)
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path(SEARCH))
        .respond_with(ResponseTemplate::new(503).insert_header("retry-after", "0"))
        .up_to_n_times(1)
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path(SEARCH))
        .respond_with(json(fixture("jira/search-page2.json")))
        .mount(&mock)
        .await;
    let s = setup(&mock).await;
    let started = std::time::Instant::now();
    let run = run_sync(&s, "ops", false).await;
    assert_eq!((run.done().requests, run.done().upserted_count), (3, 2));
    assert_eq!(run.waits.len(), 2, "each wait is reported: {:?}", run.waits);
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(900),
        "Retry-After: 1 was honoured"
    );
}

#[tokio::test]
async fn a_rejected_query_names_jiras_reason_and_is_not_retried() {
    let mock = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(SEARCH))
        .respond_with(
            ResponseTemplate::new(400).set_body_string(fixture("jira/error-400-jql.json")),
        )
        .expect(1)
        .mount(&mock)
        .await;
    let s = setup(&mock).await;
    let run = run_sync(&s, "ops", false).await;
    let msg = run.error().message();
    assert!(
        msg.contains("400")
            && msg.contains("The value 'OPS' does not exist for the field 'project'."),
        "{msg}"
    );
}

#[tokio::test]
async fn an_original_estimate_in_seconds_becomes_hours_and_a_full_sync_ignores_the_cursor() {
    let mock = MockServer::start().await;
    mount_two_pages(&mock).await;
    let s = setup(&mock).await;
    run_sync(&s, "ops", false).await.done();
    s.sources()
        .update_source(pb::UpdateSourceRequest {
            source: Some(pb::Source {
                id: "ops".into(),
                estimate_field: "timeoriginalestimate".into(),
                ..Default::default()
            }),
            update_mask: mask(&["estimate_field"]),
        })
        .await
        .unwrap();

    // A full sync asks for everything again, with the new field.
    Mock::given(method("GET"))
        .and(path(SEARCH))
        .and(jql_all())
        .and(query_param(
            "fields",
            format!("{FIELDS},timeoriginalestimate"),
        ))
        .and(query_param_is_missing("nextPageToken"))
        .respond_with(json(fixture("jira/search-page2.json")))
        .expect(1)
        .mount(&mock)
        .await;
    let run = run_sync(&s, "ops", true).await;
    assert_eq!(
        (run.done().upserted_count, run.done().removed_count),
        (1, 3),
        "OPS-14 (older than the cursor) changed; OPS-15 did not; \
         OPS-11..13, no longer listed, answer 404 and are removed"
    );
    assert_eq!(
        run.done().requests,
        1 + 3,
        "the listing, then one question each"
    );
    let items = all_items(&s, "ops").await;
    let estimate = |key: &str| items.iter().find(|i| i.key == key).unwrap().estimate;
    assert_eq!(estimate("ops/OPS-14"), Some(8.0), "28800 seconds");
    assert_eq!(estimate("ops/OPS-15"), None, "no original estimate");
}

/// Jira's `fields.votes.votes` arrive with sync and follow the tracker on
/// the next; an issue without the field (voting off) has none.
#[tokio::test]
async fn votes_arrive_with_sync_and_update_on_the_next() {
    let mock = MockServer::start().await;
    let with_votes = |n: u64| {
        let mut v: serde_json::Value =
            serde_json::from_str(&fixture("jira/search-page2.json")).unwrap();
        v["issues"][0]["fields"]["votes"] = serde_json::json!({
            "self": "https://acme.atlassian.net/rest/api/3/issue/OPS-13/votes",
            "votes": n,
            "hasVoted": false
        });
        v.to_string()
    };
    Mock::given(method("GET"))
        .and(path(SEARCH))
        .respond_with(json(with_votes(4)))
        .mount(&mock)
        .await;
    let s = setup(&mock).await;
    run_sync(&s, "ops", false).await.done();
    let items = all_items(&s, "ops").await;
    assert_eq!(items[0].votes, Some(4), "{:?}", items[0].key);
    assert!(items[1..].iter().all(|i| i.votes.is_none()));
    mock.reset().await;
    Mock::given(method("GET"))
        .and(path(SEARCH))
        .respond_with(json(with_votes(6)))
        .mount(&mock)
        .await;
    run_sync(&s, "ops", true).await.done();
    assert_eq!(all_items(&s, "ops").await[0].votes, Some(6));
}
