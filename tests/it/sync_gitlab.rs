//! GitLab sync end to end: recorded-shape GitLab REST v4 answers served by a
//! local HTTP mock (wiremock on 127.0.0.1), a real server and SQLite file, and
//! the sync driven through the gRPC SyncService.
//!
//! What every tracker must do (paging, the boundary duplicate, 304, refusals,
//! rate limits, retries, malformed answers, resuming) is checked for GitLab by
//! the conformance suite (`conformance/`); this file holds GitLab's quirks.

use crate::common::*;
use plumbline::proto as pb;
use tonic::Code;
use wiremock::matchers::{header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN_VAR: &str = "PLB_TEST_GITLAB_TOKEN";
const TOKEN: &str = "glpat-testtoken0123456789";
const PROJECT: &str = "acme/platform/shop";
/// The project path is one percent-encoded segment.
const ISSUES: &str = "/api/v4/projects/acme%2Fplatform%2Fshop/issues";

/// The issues of two fixtures, as one JSON array.
fn concat(a: &str, b: &str) -> String {
    let mut v: Vec<serde_json::Value> =
        serde_json::from_str(&fixture(&format!("gitlab/{a}"))).unwrap();
    v.extend(
        serde_json::from_str::<Vec<serde_json::Value>>(&fixture(&format!("gitlab/{b}"))).unwrap(),
    );
    serde_json::to_string(&v).unwrap()
}

/// A 200 the way GitLab sends one, without pagination headers.
fn json(body: String) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .insert_header("content-type", "application/json")
        .insert_header("cache-control", "max-age=0, private, must-revalidate")
        .insert_header("vary", "Origin, Accept-Encoding")
        .insert_header("x-request-id", "01JD5W7Z3Q8K2M4N6P8R0T2V4X")
        .insert_header("x-runtime", "0.084211")
        .set_body_string(body)
}

/// GitLab's offset-pagination headers for `page` of `total_pages` (100 per
/// page). `total` is left out, like `x-total-pages`, when `None` (GitLab omits
/// both past 10,000 rows).
fn paged(
    resp: ResponseTemplate,
    page: u32,
    total_pages: u32,
    total: Option<u64>,
) -> ResponseTemplate {
    let next = if page < total_pages {
        (page + 1).to_string()
    } else {
        String::new()
    };
    let prev = if page > 1 {
        (page - 1).to_string()
    } else {
        String::new()
    };
    let mut r = resp
        .insert_header("x-page", page.to_string().as_str())
        .insert_header("x-per-page", "100")
        .insert_header("x-next-page", next.as_str())
        .insert_header("x-prev-page", prev.as_str());
    if let Some(t) = total {
        r = r
            .insert_header("x-total", t.to_string().as_str())
            .insert_header("x-total-pages", total_pages.to_string().as_str());
    }
    r
}

/// The URL of `page` as GitLab writes it in `Link`: the request's parameters
/// plus the route's `id`, sorted.
fn link_url(mock: &MockServer, page: u32) -> String {
    format!(
        "{}{ISSUES}?id=acme%2Fplatform%2Fshop&order_by=updated_at&page={page}&per_page=100&scope=all&sort=asc&state=all",
        mock.uri()
    )
}

/// A server with a GitLab source pointing at `mock`.
async fn setup(mock: &MockServer) -> TestServer {
    set_test_token(TOKEN_VAR, TOKEN);
    let s = TestServer::start().await;
    value_model_for_rules(&s).await;
    create_source(&s, gitlab_source("gl", &mock.uri(), "")).await;
    s
}

fn gitlab_source(id: &str, base_url: &str, estimate_field: &str) -> pb::Source {
    pb::Source {
        id: id.into(),
        kind: pb::TrackerKind::Gitlab as i32,
        base_url: base_url.into(),
        project_key: PROJECT.into(),
        token_env: TOKEN_VAR.into(),
        estimate_field: estimate_field.into(),
        ..Default::default()
    }
}

/// The first page of a full sync: every GitLab parameter, no
/// `updated_after`, no `page`, the token in `PRIVATE-TOKEN`.
fn first_page() -> wiremock::MockBuilder {
    Mock::given(method("GET"))
        .and(path(ISSUES))
        .and(query_param("scope", "all"))
        .and(query_param("state", "all"))
        .and(query_param("order_by", "updated_at"))
        .and(query_param("sort", "asc"))
        .and(query_param("per_page", "100"))
        .and(query_param_is_missing("updated_after"))
        .and(query_param_is_missing("page"))
        .and(header("private-token", TOKEN))
}

/// Two pages with everything GitLab sends below 10,000 rows: `Link` (next,
/// prev, first, last), `x-next-page` and the totals.
async fn mount_two_pages(mock: &MockServer) {
    let (p1, p2) = (link_url(mock, 1), link_url(mock, 2));
    first_page()
        .respond_with(
            paged(json(fixture("gitlab/issues-page1.json")), 1, 2, Some(4))
                .insert_header(
                    "link",
                    format!("<{p2}>; rel=\"next\", <{p1}>; rel=\"first\", <{p2}>; rel=\"last\"")
                        .as_str(),
                )
                .insert_header("etag", "W/\"6f1b2c0e4d9a3b7c\""),
        )
        .mount(mock)
        .await;
    // Only the Link URL carries `id`: page 2 is fetched exactly as linked.
    Mock::given(method("GET"))
        .and(path(ISSUES))
        .and(query_param("page", "2"))
        .and(query_param("id", PROJECT))
        .and(header("private-token", TOKEN))
        .respond_with(
            paged(json(fixture("gitlab/issues-page2.json")), 2, 2, Some(4)).insert_header(
                "link",
                format!("<{p1}>; rel=\"prev\", <{p1}>; rel=\"first\", <{p2}>; rel=\"last\"")
                    .as_str(),
            ),
        )
        .mount(mock)
        .await;
}

fn secs(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .timestamp()
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

fn item_keys(items: &[pb::Item]) -> Vec<&str> {
    items.iter().map(|i| i.key.as_str()).collect()
}

#[tokio::test]
async fn a_multi_page_sync_follows_link_and_maps_every_field() {
    let mock = MockServer::start().await;
    mount_two_pages(&mock).await;
    let s = setup(&mock).await;

    let run = run_sync(&s, "gl", false).await;
    let done = run.done();
    assert_eq!((done.pages, done.requests, done.upserted_count), (2, 2, 4));
    assert_eq!(
        run.pages
            .iter()
            .map(|p| (p.item_count, p.expected_total))
            .collect::<Vec<_>>(),
        [(2, 4), (2, 4)],
        "x-total is the expected total"
    );
    let sent = mock.received_requests().await.unwrap();
    assert!(
        sent.iter()
            .all(|r| !r.headers.contains_key("authorization")),
        "GitLab's token goes in PRIVATE-TOKEN only"
    );

    let items = all_items(&s, "gl").await;
    assert_eq!(item_keys(&items), ["gl/11", "gl/13", "gl/14", "gl/15"]);
    let one = &items[0];
    assert_eq!(one.external_id, "11", "the project-scoped iid, not the id");
    assert_eq!(one.title, "One-page checkout on mobile");
    assert_eq!(one.url, "https://gitlab.com/acme/platform/shop/-/issues/11");
    assert_eq!(one.state, pb::ItemState::Open as i32);
    assert_eq!(one.estimate, Some(5.0), "the weight, by default");
    assert_eq!(one.labels, ["checkout", "hypothesis:H-1", "size::3"]);
    assert_eq!(
        one.parent_key, "",
        "a group-level epic is not a parent item"
    );
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
    assert_eq!(items[1].estimate, None, "weight null");
    let closed = &items[2];
    assert_eq!(closed.state, pb::ItemState::Closed as i32);
    assert_eq!(
        closed.close_time.as_ref().map(|t| t.seconds),
        Some(secs("2026-11-04T12:00:00Z"))
    );
    assert_eq!(closed.estimate, Some(2.0));
    let last = &items[3];
    assert_eq!(last.body, "", "a null description is an empty body");
    assert_eq!(last.estimate, None, "weight 0 is unestimated");
    assert_eq!(
        last.update_time.as_ref().map(|t| (t.seconds, t.nanos)),
        Some((secs("2026-11-05T13:00:00Z"), 412_000_000)),
        "milliseconds are kept"
    );

    // Link rules ran on the synced items: a label and a description line.
    assert_eq!(
        links_of(&s, "gl/11").await,
        [("H-1".to_string(), 1.0, pb::LinkOrigin::Rule as i32)]
    );
    assert_eq!(
        links_of(&s, "gl/13").await,
        [("H-2".to_string(), 0.5, pb::LinkOrigin::Rule as i32)]
    );
    assert!(links_of(&s, "gl/15").await.is_empty());

    // The synced items rank, and the linked ones lead.
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
    assert_eq!(
        ranked,
        ["gl/11", "gl/13", "gl/15"],
        "closed gl/14 is left out; unlinked gl/15 is last"
    );

    let st = sync_status(&s, "gl").await;
    assert_eq!(st.state, pb::SyncState::Succeeded as i32);
    assert_eq!(
        st.cursor_time.map(|t| t.seconds),
        Some(secs("2026-11-05T13:00:00Z"))
    );
    assert_eq!((st.last_request_count, st.last_upserted_count), (2, 4));
}

/// Past 10,000 rows GitLab sends neither `Link` totals nor `x-total`; with no
/// `Link` at all, `x-next-page` alone drives the paging, and the filters of
/// the first URL are kept on every page.
#[tokio::test]
async fn without_link_headers_x_next_page_drives_the_paging() {
    let mock = MockServer::start().await;
    first_page()
        .respond_with(paged(json(fixture("gitlab/issues-page1.json")), 1, 2, None))
        .expect(1)
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path(ISSUES))
        .and(query_param("page", "2"))
        .and(query_param("scope", "all"))
        .and(query_param("state", "all"))
        .and(query_param("order_by", "updated_at"))
        .and(query_param("sort", "asc"))
        .and(query_param("per_page", "100"))
        .and(header("private-token", TOKEN))
        .respond_with(paged(json(fixture("gitlab/issues-page2.json")), 2, 2, None))
        .expect(1)
        .mount(&mock)
        .await;
    let s = setup(&mock).await;

    let run = run_sync(&s, "gl", false).await;
    assert_eq!(
        (
            run.done().pages,
            run.done().requests,
            run.done().upserted_count
        ),
        (2, 2, 4)
    );
    assert_eq!(
        run.pages
            .iter()
            .map(|p| p.expected_total)
            .collect::<Vec<_>>(),
        [0, 0],
        "no x-total, no expected total"
    );
    assert_eq!(
        item_keys(&all_items(&s, "gl").await),
        ["gl/11", "gl/13", "gl/14", "gl/15"]
    );
}

/// A `Link` to another origin (GitLab behind a proxy that rewrites its host)
/// is not followed, so the token never leaves for it: `x-next-page` on the
/// source's own origin is used instead.
#[tokio::test]
async fn a_link_to_another_origin_is_not_followed() {
    let mock = MockServer::start().await;
    let elsewhere = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(json("[]".into()))
        .mount(&elsewhere)
        .await;
    first_page()
        .respond_with(
            paged(json(fixture("gitlab/issues-page1.json")), 1, 2, Some(4)).insert_header(
                "link",
                format!("<{}>; rel=\"next\"", link_url(&elsewhere, 2)).as_str(),
            ),
        )
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path(ISSUES))
        .and(query_param("page", "2"))
        .and(query_param_is_missing("id"))
        .and(header("private-token", TOKEN))
        .respond_with(paged(
            json(fixture("gitlab/issues-page2.json")),
            2,
            2,
            Some(4),
        ))
        .expect(1)
        .mount(&mock)
        .await;
    let s = setup(&mock).await;

    let run = run_sync(&s, "gl", false).await;
    assert_eq!((run.done().pages, run.done().upserted_count), (2, 4));
    assert_eq!(
        elsewhere.received_requests().await.unwrap().len(),
        0,
        "nothing, and no token, went to the other origin"
    );
}

/// GitLab's 429s: with `Retry-After` and the `RateLimit-*` set, with only
/// `RateLimit-Reset`, and bare (as Rack::Attack often sends them). Each is
/// waited out and reported; none fails the sync.
#[tokio::test]
async fn rate_limits_are_waited_out_with_or_without_headers() {
    let mock = MockServer::start().await;
    let reset = chrono::Utc::now().timestamp() + 1;
    let reset_time = chrono::DateTime::from_timestamp(reset, 0)
        .unwrap()
        .to_rfc2822();
    Mock::given(method("GET"))
        .and(path(ISSUES))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("content-type", "text/plain")
                .insert_header("retry-after", "0")
                .insert_header("ratelimit-name", "throttle_authenticated_api")
                .insert_header("ratelimit-limit", "2000")
                .insert_header("ratelimit-observed", "2001")
                .insert_header("ratelimit-remaining", "0")
                .insert_header("ratelimit-reset", reset.to_string().as_str())
                .insert_header("ratelimit-resettime", reset_time.as_str())
                .set_body_string(fixture("gitlab/error-429.txt")),
        )
        .up_to_n_times(1)
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path(ISSUES))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("ratelimit-remaining", "0")
                .insert_header("ratelimit-reset", reset.to_string().as_str())
                .set_body_string(fixture("gitlab/error-429.txt")),
        )
        .up_to_n_times(1)
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path(ISSUES))
        .respond_with(ResponseTemplate::new(429).set_body_string(fixture("gitlab/error-429.txt")))
        .up_to_n_times(1)
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path(ISSUES))
        .respond_with(paged(
            json(fixture("gitlab/issues-page2.json")),
            1,
            1,
            Some(2),
        ))
        .mount(&mock)
        .await;
    let s = setup(&mock).await;
    let started = chrono::Utc::now().timestamp();

    let run = run_sync(&s, "gl", false).await;
    assert_eq!(
        (
            run.done().requests,
            run.done().pages,
            run.done().upserted_count
        ),
        (4, 1, 2)
    );
    let until: Vec<i64> = run
        .waits
        .iter()
        .map(|w| w.until.as_ref().expect("until").seconds)
        .collect();
    assert_eq!(until.len(), 3, "each wait is reported: {:?}", run.waits);
    assert!(until[0] <= started + 1, "Retry-After: 0 -> now: {until:?}");
    assert!(until[1] >= reset, "until RateLimit-Reset: {until:?}");
    // No headers: the minimum delay (sync.min_rate_limit_delay_ms), after
    // the wait before it.
    assert!(
        until[2] >= until[1],
        "no headers -> a short pause: {until:?}"
    );
    assert_eq!(all_items(&s, "gl").await.len(), 2);
}

/// `estimate_field`: the weight by default, `time_estimate` in hours, or a
/// scoped label; anything else is refused before any request.
#[tokio::test]
async fn estimates_come_from_weight_time_estimate_or_a_label() {
    let mock = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(ISSUES))
        .respond_with(paged(
            json(concat("issues-page1.json", "issues-page2.json")),
            1,
            1,
            Some(4),
        ))
        .mount(&mock)
        .await;
    let s = setup(&mock).await;
    for (id, field) in [
        ("glw", "weight"),
        ("glt", "time_estimate"),
        ("gll", "label:size::"),
    ] {
        create_source(&s, gitlab_source(id, &mock.uri(), field)).await;
    }
    let mut by_source = Vec::new();
    for id in ["gl", "glw", "glt", "gll"] {
        assert_eq!(run_sync(&s, id, false).await.done().upserted_count, 4);
        let estimates: Vec<Option<f64>> = all_items(&s, id)
            .await
            .into_iter()
            .map(|i| i.estimate)
            .collect();
        by_source.push((id, estimates));
    }
    assert_eq!(
        by_source,
        [
            // iids 11, 13, 14, 15: weight 5, null, 2, 0.
            ("gl", vec![Some(5.0), None, Some(2.0), None]),
            ("glw", vec![Some(5.0), None, Some(2.0), None]),
            // 28800 s, 5400 s, 7200 s, 0.
            ("glt", vec![Some(8.0), Some(1.5), Some(2.0), None]),
            // size::3, none, size::1, none.
            ("gll", vec![Some(3.0), None, Some(1.0), None]),
        ]
    );

    let before = mock.received_requests().await.unwrap().len();
    create_source(&s, gitlab_source("glx", &mock.uri(), "story_points")).await;
    let run = run_sync(&s, "glx", false).await;
    assert_eq!(run.error().code(), Code::FailedPrecondition);
    assert!(
        run.error().message().contains("\"story_points\"")
            && run.error().message().contains("time_estimate"),
        "{:?}",
        run.error()
    );
    assert_eq!(
        mock.received_requests().await.unwrap().len(),
        before,
        "no request for a source that cannot be mapped"
    );
}

/// A numeric project id needs no encoding, and a `base_url` that already
/// names the API root is not extended twice.
#[tokio::test]
async fn a_numeric_project_id_and_an_api_root_base_url_work() {
    let mock = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v4/projects/4242/issues"))
        .and(query_param("scope", "all"))
        .and(header("private-token", TOKEN))
        .respond_with(paged(
            json(fixture("gitlab/issues-page2.json")),
            1,
            1,
            Some(2),
        ))
        .expect(1)
        .mount(&mock)
        .await;
    let s = setup(&mock).await;
    create_source(
        &s,
        pb::Source {
            project_key: "4242".into(),
            ..gitlab_source("gln", &format!("{}/api/v4/", mock.uri()), "")
        },
    )
    .await;
    let run = run_sync(&s, "gln", false).await;
    assert_eq!(run.done().upserted_count, 2);
    assert_eq!(item_keys(&all_items(&s, "gln").await), ["gln/14", "gln/15"]);
}

/// GitLab's `upvotes` arrive with sync and follow the tracker on the next.
#[tokio::test]
async fn upvotes_arrive_with_sync_and_update_on_the_next() {
    let mock = MockServer::start().await;
    let with_upvotes = |n: u64| {
        let mut v: Vec<serde_json::Value> =
            serde_json::from_str(&concat("issues-page1.json", "issues-page2.json")).unwrap();
        v[0]["upvotes"] = n.into();
        serde_json::to_string(&v).unwrap()
    };
    Mock::given(method("GET"))
        .and(path(ISSUES))
        .respond_with(paged(json(with_upvotes(7)), 1, 1, Some(4)))
        .mount(&mock)
        .await;
    let s = setup(&mock).await;
    run_sync(&s, "gl", false).await.done();
    let votes =
        |items: Vec<pb::Item>| -> Vec<Option<u64>> { items.iter().map(|i| i.votes).collect() };
    assert_eq!(
        votes(all_items(&s, "gl").await),
        [Some(7), Some(0), Some(0), Some(0)]
    );
    mock.reset().await;
    Mock::given(method("GET"))
        .and(path(ISSUES))
        .respond_with(paged(json(with_upvotes(9)), 1, 1, Some(4)))
        .mount(&mock)
        .await;
    run_sync(&s, "gl", true).await.done();
    assert_eq!(votes(all_items(&s, "gl").await)[0], Some(9));
}
