//! The web view over plain HTTP (and HTTPS with `[tls]`): the pages read the engine (the demo
//! product, loaded through gRPC), sign-in and its cookie, CSRF and origin
//! checks, the role a split needs, the bound on live streams, and the
//! refusal of an exposed listener. The browser's own view is in
//! `browser.rs`.

use std::net::SocketAddr;

use plumbline::auth::Role;
use plumbline::auth::tokens;
use reqwest::StatusCode;
use reqwest::redirect::Policy;

use crate::common::*;

/// A server with the demo product; `auth` tokens (read, write) when asked.
pub struct WebServer {
    pub s: TestServer,
    pub web: String,
    pub read: String,
    pub write: String,
    _dir: tempfile::TempDir,
}

/// Starts a server with the demo product loaded; with `auth`, restarts it
/// with auth on and a read and a write token.
pub async fn demo_server(
    auth: bool,
    change: impl FnOnce(&mut plumbline::config::Config),
) -> WebServer {
    let dir = tempfile::tempdir().expect("temporary folder");
    let db = crate::common::test_db(dir.path(), "web.sqlite");
    let db1 = db.clone();
    // The demo's sources name PLUMBLINE_SECRET_* tokens: the default policy.
    let s = TestServer::start_with_config(move |c| {
        c.db = db1;
        c.outbound = Default::default();
    })
    .await;
    plumbline::cli::load_sample(&s.server().url())
        .await
        .expect("the demo product loads");
    s.stop().await;
    let (mut read, mut write) = (String::new(), String::new());
    if auth {
        let store = crate::common::open_store(&db).await;
        read = tokens::create_in(&*store, "viewer", Role::Read)
            .await
            .expect("token")
            .1;
        write = tokens::create_in(&*store, "po", Role::Write)
            .await
            .expect("token")
            .1;
        store.close().await;
    }
    let s = TestServer::start_with_config(move |c| {
        c.db = db;
        c.outbound = Default::default();
        c.auth.enabled = auth;
        change(c);
    })
    .await;
    let web = s.server().web_url().expect("the web view is on");
    WebServer {
        s,
        web,
        read,
        write,
        _dir: dir,
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("client")
}

async fn get(url: &str) -> (StatusCode, String) {
    let r = client().get(url).send().await.expect("GET");
    let status = r.status();
    (status, r.text().await.expect("body"))
}

/// The values of `attr` in `html`, in order (the pages' data attributes).
fn attrs(html: &str, attr: &str) -> Vec<String> {
    let pat = format!("{attr}=\"");
    html.match_indices(&pat)
        .map(|(i, _)| {
            let rest = &html[i + pat.len()..];
            rest[..rest.find('"').expect("closing quote")].to_string()
        })
        .collect()
}

/// The CSRF token of the first form in `html`.
fn csrf(html: &str) -> String {
    let i = html
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF token");
    let rest = &html[i + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').expect("quote")].to_string()
}

#[tokio::test]
async fn the_backlog_page_shows_the_ranking_the_api_serves_and_filters_it() {
    let w = demo_server(false, |_| {}).await;
    let (status, html) = get(&format!("{}/", w.web)).await;
    assert_eq!(status, StatusCode::OK);
    let api = rank(&w.s, pb_rank(20)).await;
    let page_keys = attrs(&html, "data-key");
    assert_eq!(
        page_keys[..20],
        keys(&api)[..],
        "the page ranks as RankItems does"
    );
    assert!(html.contains("id=\"unit\""), "the value unit is explained");
    assert_eq!(html.matches("id=\"unit\"").count(), 1, "once");

    // By label: only the items with it, in ranking order.
    let (_, html) = get(&format!("{}/?label=payments", w.web)).await;
    let labelled = attrs(&html, "data-key");
    let mut req = pb_rank(100);
    req.label = "payments".into();
    assert_eq!(labelled, keys(&rank(&w.s, req).await));
    assert!(!labelled.is_empty() && labelled.len() < page_keys.len());

    // Text search matches titles, case-insensitively.
    let (_, html) = get(&format!("{}/?q=AUTOCOMPLETE", w.web)).await;
    assert_eq!(attrs(&html, "data-key"), ["web/415"]);

    // By goal: the open items its roll-up lists, in ranking order.
    let mut rollups =
        plumbline::proto::rollup_service_client::RollupServiceClient::new(w.s.channel.clone());
    let serving: Vec<String> = rollups
        .get_goal_rollup(plumbline::proto::GetGoalRollupRequest {
            goal_id: "G1.1".into(),
            item_limit: 1000,
        })
        .await
        .expect("GetGoalRollup")
        .into_inner()
        .rollup
        .expect("rollup")
        .items
        .into_iter()
        .map(|i| i.item_key)
        .collect();
    let (_, html) = get(&format!("{}/?goal=G1.1", w.web)).await;
    let by_goal = attrs(&html, "data-key");
    let ranked = keys(&rank(&w.s, pb_rank(100)).await);
    let expected: Vec<String> = ranked.into_iter().filter(|k| serving.contains(k)).collect();
    assert_eq!(by_goal, expected);
    assert!(!by_goal.is_empty() && by_goal.len() < page_keys.len());

    // Closed only: the demo's closed items, and none of the open ones.
    let (_, html) = get(&format!("{}/?state=closed", w.web)).await;
    let closed = attrs(&html, "data-key");
    assert!(!closed.is_empty(), "the demo has closed items");
    assert!(closed.iter().all(|k| !page_keys.contains(k)), "{closed:?}");

    // The fragment is the same rows without the page around them.
    let (status, frag) = get(&format!("{}/fragments/backlog?label=payments", w.web)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(attrs(&frag, "data-key"), labelled);
    assert!(!frag.contains("<html"));

    // A bad filter names itself.
    let (status, html) = get(&format!("{}/?order=alphabetical", w.web)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("order: must be density or value"), "{html}");
}

fn pb_rank(n: i32) -> plumbline::proto::RankItemsRequest {
    plumbline::proto::RankItemsRequest {
        page_size: n,
        ..Default::default()
    }
}

#[tokio::test]
async fn the_backlog_pages_by_fifty_on_the_server() {
    let w = demo_server(false, |_| {}).await;
    // Enough items for two pages.
    let items: Vec<_> = (0..60)
        .map(|i| item("web", &format!("9{i:03}"), &format!("Filler {i}")))
        .collect();
    upsert(&w.s, items).await;
    let (_, first) = get(&format!("{}/?state=all", w.web)).await;
    let first_keys = attrs(&first, "data-key");
    assert_eq!(first_keys.len(), 50);
    assert!(first.contains("rel=\"next\""));
    let (_, second) = get(&format!("{}/?state=all&page=2", w.web)).await;
    let second_ranks = attrs(&second, "data-rank");
    assert_eq!(second_ranks.first().map(String::as_str), Some("51"));
    assert!(second.contains("rel=\"prev\""));
    let all = rank(
        &w.s,
        plumbline::proto::RankItemsRequest {
            page_size: 200,
            include_closed: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        [first_keys, attrs(&second, "data-key")].concat(),
        keys(&all)
    );
}

#[tokio::test]
async fn the_item_page_draws_terms_that_add_up_to_the_value() {
    let w = demo_server(false, |_| {}).await;
    let key = "web/415";
    let (status, html) = get(&format!("{}/items/web%2F415", w.web)).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    let score = item_score(&w.s, key).await;
    let exact: Vec<f64> = attrs(&html, "class=\"term\" data-exact")
        .iter()
        .map(|v| v.parse().unwrap())
        .collect();
    let terms: Vec<f64> = score.terms.iter().map(|t| t.value).collect();
    assert_eq!(exact, terms, "every term as the engine returns it");
    assert!(terms.len() >= 2, "a term per link");
    let value: f64 = attrs(&html, "id=\"value\" data-exact")[0].parse().unwrap();
    assert_eq!(value, score.value);
    // The printed numbers add up exactly to the printed value.
    let shown: Vec<i64> = attrs(&html, "data-shown")
        .iter()
        .map(|v| v.replace('.', "").parse().unwrap())
        .collect();
    let i = html.find("id=\"value\"").unwrap();
    let printed = &html[html[i..].find('>').unwrap() + i + 1..];
    let printed: i64 = printed[..printed.find('<').unwrap()]
        .replace('.', "")
        .parse()
        .unwrap();
    assert_eq!(shown.iter().sum::<i64>(), printed);
    // Links with their rationale, hypotheses' status and confidence.
    assert!(html.contains("id=\"links\""));
    assert!(html.contains("H-1"));
    // Unknown items are 404 with the key named.
    let (status, html) = get(&format!("{}/items/web%2Fnope", w.web)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(html.contains("web/nope"), "{html}");
}

#[tokio::test]
async fn the_goals_page_shows_the_tree_with_coverage() {
    let w = demo_server(false, |_| {}).await;
    let (status, html) = get(&format!("{}/goals", w.web)).await;
    assert_eq!(status, StatusCode::OK);
    let tree =
        plumbline::proto::rollup_service_client::RollupServiceClient::new(w.s.channel.clone())
            .get_goal_tree(plumbline::proto::GetGoalTreeRequest::default())
            .await
            .expect("GetGoalTree")
            .into_inner();
    let ids: Vec<String> = tree.goals.iter().map(|g| g.goal_id.clone()).collect();
    assert_eq!(attrs(&html, "data-goal"), ids);
    assert!(html.contains("Unaligned items"));
}

#[tokio::test]
async fn the_segments_page_shows_the_roll_up_by_segment() {
    let w = demo_server(false, |_| {}).await;
    let (status, html) = get(&format!("{}/segments", w.web)).await;
    assert_eq!(status, StatusCode::OK);
    let t =
        plumbline::proto::customer_service_client::CustomerServiceClient::new(w.s.channel.clone())
            .roll_up_by_segment(plumbline::proto::RollUpBySegmentRequest::default())
            .await
            .expect("RollUpBySegment")
            .into_inner();
    let ids: Vec<String> = t
        .segments
        .iter()
        .map(|r| r.segment.clone().unwrap_or_default().id)
        .collect();
    assert_eq!(attrs(&html, "data-segment"), ids);
    let outcomes: Vec<String> = t
        .segments
        .iter()
        .flat_map(|r| r.outcomes.iter().map(|o| o.id.clone()))
        .collect();
    assert_eq!(attrs(&html, "data-outcome"), outcomes);
    assert_eq!(html.matches("class=\"underserved\"").count(), 2);
    assert!(html.contains("13.5"), "first-api-call: 8.3 + 5.2");
    assert!(html.contains("Unserved segments"));
}

async fn sign_in(w: &WebServer, token: &str) -> String {
    sign_in_at(&w.web, token).await.0
}

/// Signs in at the web view `web`: the session cookie (name=value) and the
/// whole Set-Cookie header.
async fn sign_in_at(web: &str, token: &str) -> (String, String) {
    sign_in_via(&client(), web, token).await
}

async fn sign_in_via(c: &reqwest::Client, web: &str, token: &str) -> (String, String) {
    let page = c
        .get(format!("{web}/signin"))
        .send()
        .await
        .expect("GET /signin")
        .text()
        .await
        .expect("body");
    let r = c
        .post(format!("{web}/signin"))
        .header("origin", web)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string([("token", token), ("csrf", &csrf(&page))]).unwrap())
        .send()
        .await
        .expect("POST /signin");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let cookie = r
        .headers()
        .get("set-cookie")
        .expect("a session cookie")
        .to_str()
        .unwrap()
        .to_string();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie} lacks {attr}");
    }
    assert!(
        !cookie.contains(token) && !cookie.contains(&token[token.len() - 20..]),
        "the cookie never holds the token"
    );
    (cookie.split(';').next().unwrap().to_string(), cookie)
}

#[tokio::test]
async fn with_auth_a_session_is_needed_and_a_read_token_cannot_split() {
    let w = demo_server(true, |_| {}).await;
    // No session: the pages send to the sign-in page, the rest is 401.
    let (status, _) = get(&format!("{}/", w.web)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _) = get(&format!("{}/events", w.web)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // A wrong token is refused on the page.
    let (_, page) = get(&format!("{}/signin", w.web)).await;
    let r = client()
        .post(format!("{}/signin", w.web))
        .header("origin", &w.web)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            serde_urlencoded::to_string([("token", "plb_nope_nope"), ("csrf", &csrf(&page))])
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let cookie = sign_in(&w, &w.read).await;
    let item = client()
        .get(format!("{}/items/web%2F412", w.web))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(item.status(), StatusCode::OK);
    let html = item.text().await.unwrap();
    let token = csrf(&html);
    let split = |cookie: String, origin: &str, csrf: String| {
        let url = format!("{}/items/web%2F412/split", w.web);
        let origin = origin.to_string();
        async move {
            client()
                .post(url)
                .header("cookie", cookie)
                .header("origin", origin)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(
                    serde_urlencoded::to_string([("kind", "task"), ("csrf", csrf.as_str())])
                        .unwrap(),
                )
                .send()
                .await
                .unwrap()
        }
    };
    let r = split(cookie.clone(), &w.web, token.clone()).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("needs the write role") && body.contains("viewer"),
        "{body}"
    );

    let cookie = sign_in(&w, &w.write).await;
    let html = client()
        .get(format!("{}/items/web%2F412", w.web))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let token = csrf(&html);
    // A write token is not offered write-back (an admin's call), and a
    // form that asks for it anyway is refused, naming the role.
    assert!(!html.contains("write-back-task"), "no write-back for write");
    let r = client()
        .post(format!("{}/items/web%2F412/split", w.web))
        .header("cookie", &cookie)
        .header("origin", &w.web)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            serde_urlencoded::to_string([
                ("kind", "task"),
                ("csrf", token.as_str()),
                ("write_back", "on"),
            ])
            .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let body = r.text().await.unwrap();
    assert!(body.contains("needs the admin role"), "{body}");
    // From another site, or without the session's CSRF token: refused.
    let r = split(cookie.clone(), "http://evil.example", token.clone()).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = split(cookie.clone(), &w.web, "forged".into()).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // A write token with the right form applies it.
    let r = split(cookie.clone(), &w.web, token).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let to = r.headers()["location"].to_str().unwrap().to_string();
    let html = client()
        .get(format!("{}{to}", w.web))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("id=\"applied\""));
    assert!(html.contains("web/412-s1"), "the slices are listed: {html}");
}

#[tokio::test]
async fn live_streams_are_bounded_and_end_with_the_server() {
    let w = demo_server(false, |c| c.web.max_event_streams = 2).await;
    let open = |n: usize| {
        let url = format!("{}/events", w.web);
        async move {
            let r = client().get(url).send().await.expect("GET /events");
            (n, r)
        }
    };
    let (_, mut a) = open(1).await;
    let (_, b) = open(2).await;
    assert_eq!(a.status(), StatusCode::OK);
    assert_eq!(b.status(), StatusCode::OK);
    assert_eq!(a.headers()["content-type"], "text/event-stream");
    let (_, c) = open(3).await;
    assert_eq!(c.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(c.text().await.unwrap().contains("max_event_streams"));
    // A change reaches an open stream as one "ranking" event.
    let hello = a.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&hello).contains("event: hello"));
    record(&w.s, vec![observation("checkout-conversion", 2.9, None)]).await;
    let mut got = String::new();
    while !got.contains("event: ranking") {
        let chunk = a.chunk().await.unwrap().expect("an event");
        got.push_str(&String::from_utf8_lossy(&chunk));
    }
    // Closing one makes room for another.
    drop(b);
    let mut reopened = None;
    for _ in 0..100 {
        let (_, r) = open(4).await;
        if r.status() == StatusCode::OK {
            reopened = Some(r);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(reopened.is_some(), "a closed stream frees its place");
    // The server stops with streams open: they end, the shutdown completes.
    w.s.stop().await;
    assert!(a.chunk().await.map_or(true, |c| c.is_none()));
}

#[tokio::test]
async fn an_exposed_web_listener_needs_a_tls_proxy_declared_with_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = plumbline::config::Config {
        db: dir.path().join("x.sqlite"),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..Default::default()
    };
    config.web.listen = SocketAddr::from(([0, 0, 0, 0], 0));
    let err = plumbline::server::start(&config)
        .await
        .err()
        .expect("refused");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("web view") && msg.contains("plain HTTP"),
        "{msg}"
    );
    // Auth does not make plain HTTP safe: still refused.
    config.auth.enabled = true;
    let err = plumbline::server::start(&config)
        .await
        .err()
        .expect("refused with auth on");
    assert!(format!("{err:#}").contains("cleartext"), "{err:#}");
    // Behind a TLS-terminating proxy (--insecure) it starts.
    config.insecure = true;
    let s = plumbline::server::start(&config)
        .await
        .expect("starts with --insecure");
    assert!(s.web_url().is_some());
    s.shutdown().await.unwrap();
    // Turned off, there is none.
    config.web.enabled = false;
    let s = plumbline::server::start(&config).await.expect("starts");
    assert!(s.web_url().is_none());
    s.shutdown().await.unwrap();
}

#[tokio::test]
async fn pages_are_locked_down_and_bounded() {
    let w = demo_server(false, |c| c.web.max_body_bytes = 2048).await;
    let r = client().get(format!("{}/", w.web)).send().await.unwrap();
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");

    // A URL that is not http(s) is never linked.
    let mut evil = item("web", "666", "Looks harmless");
    evil.url = "javascript:alert(1)".into();
    upsert(&w.s, vec![evil]).await;
    let (_, html) = get(&format!("{}/?q=harmless", w.web)).await;
    assert_eq!(attrs(&html, "data-key"), ["web/666"]);
    assert!(!html.contains("javascript:"), "{html}");
    let (_, html) = get(&format!("{}/items/web%2F666", w.web)).await;
    assert!(!html.contains("javascript:"));

    // A body past [web] max_body_bytes is refused before a handler reads it.
    let html = get(&format!("{}/items/web%2F412", w.web)).await.1;
    let big = "x".repeat(4096);
    let r = client()
        .post(format!("{}/items/web%2F412/split", w.web))
        .header("origin", &w.web)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            serde_urlencoded::to_string([("kind", "task"), ("csrf", &csrf(&html)), ("pad", &big)])
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(w.s.server().engine().item_title("web/412-s1").is_empty());

    // Unknown assets are a plain 404.
    let (status, _) = get(&format!("{}/assets/nope.js", w.web)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = get(&format!("{}/assets/app.js", w.web)).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn the_metrics_and_hypotheses_pages_show_trends_and_evidence() {
    let w = demo_server(false, |_| {}).await;
    let evidence = plumbline::proto::validation_service_client::ValidationServiceClient::new(
        w.s.channel.clone(),
    )
    .validate_releases(plumbline::proto::ValidateReleasesRequest {
        include_open_windows: false,
        as_of: None,
        dry_run: false,
    })
    .await
    .expect("ValidateReleases")
    .into_inner()
    .evidence;
    assert!(
        !evidence.is_empty(),
        "the demo's closed release is validated"
    );

    let (status, html) = get(&format!("{}/metrics", w.web)).await;
    assert_eq!(status, StatusCode::OK);
    let metrics = w.s.server().engine().list_metrics(None, 100);
    assert_eq!(
        html.matches("<section class=\"metric\"").count(),
        metrics.len()
    );
    assert_eq!(
        html.matches("<svg").count(),
        metrics.len(),
        "a chart per metric"
    );
    // The validated release is marked on its metric's chart.
    let release = &evidence[0].subject_id;
    assert!(html.contains(release.as_str()), "{release} on a chart");

    let (status, html) = get(&format!("{}/hypotheses", w.web)).await;
    assert_eq!(status, StatusCode::OK);
    let e = &evidence[0];
    let section = &html[html
        .find(&format!("id=\"hyp-{}\"", e.hypothesis_id))
        .expect("its section")..];
    let section = &section[..section.find("</section>").unwrap()];
    assert!(section.contains(release.as_str()), "{section}");
    assert!(
        section.contains(&format!(
            "{:.2} → {:.2}",
            e.confidence_before, e.confidence_after
        )),
        "the confidence it moved: {section}"
    );
    // Every demo metric is observed: no hypothesis is unsupported, until
    // one bets on a metric nobody has measured and nobody asked about.
    assert!(!html.contains("class=\"flag unsupported\""));
    create_metric(&w.s, metric("unmeasured", 0.0, 1.0)).await;
    create_hypothesis(&w.s, hypothesis("H-99", "G1", "unmeasured", 0.1, 0.5)).await;
    let (_, html) = get(&format!("{}/hypotheses", w.web)).await;
    let section = &html[html.find("id=\"hyp-H-99\"").expect("its section")..];
    let section = &section[..section.find("</section>").unwrap()];
    assert!(section.contains("class=\"flag unsupported\""), "{section}");
}

/// A gRPC-Web call (binary, over HTTP/1.1) as a browser makes it: the
/// answer's message and its grpc-status.
async fn grpc_web_call<T: prost::Message + Default>(
    url: &str,
    method: &str,
    request: impl prost::Message,
    origin: Option<&str>,
) -> (Option<T>, String, reqwest::header::HeaderMap) {
    let body = request.encode_to_vec();
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(body.len() as u32).to_be_bytes());
    framed.extend_from_slice(&body);
    let mut req = reqwest::Client::builder()
        .http1_only()
        .build()
        .unwrap()
        .post(format!("{url}/{method}"))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .body(framed);
    if let Some(o) = origin {
        req = req.header("origin", o);
    }
    let r = req.send().await.expect("a gRPC-Web answer");
    assert_eq!(r.status(), StatusCode::OK);
    let headers = r.headers().clone();
    let bytes = r.bytes().await.unwrap();
    let (mut message, mut status) = (
        None,
        headers
            .get("grpc-status")
            .map(|v| v.to_str().unwrap().to_string()),
    );
    let mut rest = &bytes[..];
    while rest.len() >= 5 {
        let flag = rest[0];
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        let frame = &rest[5..5 + len];
        if flag & 0x80 == 0 {
            message = Some(T::decode(frame).expect("a message"));
        } else {
            let trailers = String::from_utf8_lossy(frame).to_string();
            status = trailers
                .lines()
                .find_map(|l| l.strip_prefix("grpc-status:").map(|s| s.trim().to_string()));
        }
        rest = &rest[5 + len..];
    }
    (message, status.unwrap_or_default(), headers)
}

#[tokio::test]
async fn grpc_web_serves_browsers_from_the_allowed_origins_only() {
    let tracker = "https://tracker.example.com";
    let w = demo_server(false, |c| c.web.cors_allow_origins = vec![tracker.into()]).await;
    let url = w.s.server().url();
    let (answer, status, headers) = grpc_web_call::<plumbline::proto::RankItemsResponse>(
        &url,
        "plumbline.v1.ScoringService/RankItems",
        pb_rank(10),
        Some(tracker),
    )
    .await;
    assert_eq!(status, "0");
    let ranked: Vec<String> = answer
        .expect("a RankItemsResponse")
        .items
        .iter()
        .map(|i| i.score.as_ref().unwrap().item_key.clone())
        .collect();
    assert_eq!(ranked, keys(&rank(&w.s, pb_rank(10)).await));
    assert_eq!(headers["access-control-allow-origin"], tracker);

    // Preflights: answered for the allowed origin, not for another.
    let preflight = |origin: &'static str| {
        let url = format!("{url}/plumbline.v1.ScoringService/RankItems");
        async move {
            reqwest::Client::new()
                .request(reqwest::Method::OPTIONS, url)
                .header("origin", origin)
                .header("access-control-request-method", "POST")
                .header(
                    "access-control-request-headers",
                    "content-type,x-grpc-web,authorization",
                )
                .send()
                .await
                .unwrap()
        }
    };
    let ok = preflight(tracker).await;
    assert!(ok.status().is_success());
    assert_eq!(ok.headers()["access-control-allow-origin"], tracker);
    let allowed = ok.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(
        allowed.contains("authorization") && allowed.contains("x-grpc-web"),
        "{allowed}"
    );
    let other = preflight("https://evil.example").await;
    assert!(other.headers().get("access-control-allow-origin").is_none());

    // A bad origin in the setting is refused at start, named.
    let dir = tempfile::tempdir().unwrap();
    let mut config = plumbline::config::Config {
        db: dir.path().join("x.sqlite"),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        web: plumbline::web::WebConfig::on_free_port(),
        ..Default::default()
    };
    config.web.cors_allow_origins = vec!["https://tracker.example.com/path".into()];
    let err = plumbline::server::start(&config)
        .await
        .err()
        .expect("refused");
    assert!(format!("{err}").contains("web.cors_allow_origins"), "{err}");
}

#[tokio::test]
async fn grpc_web_calls_need_a_token_when_auth_is_on() {
    let w = demo_server(true, |_| {}).await;
    let url = w.s.server().url();
    let (answer, status, _) = grpc_web_call::<plumbline::proto::RankItemsResponse>(
        &url,
        "plumbline.v1.ScoringService/RankItems",
        pb_rank(10),
        None,
    )
    .await;
    assert!(answer.is_none());
    assert_eq!(status, "16", "UNAUTHENTICATED");
}

/// With `[tls]` the web view speaks HTTPS with the gRPC listener's
/// certificate (so it may listen off loopback), marks the session cookie
/// `Secure`, answers nothing in plain HTTP, and a client that never
/// finishes its handshake holds up no one else.
#[tokio::test]
async fn with_tls_on_the_web_view_is_https_and_the_session_cookie_is_secure() {
    let pki = crate::tls::Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let db = crate::common::test_db(dir.path(), "tls.sqlite");
    let store = crate::common::open_store(&db).await;
    let read = tokens::create_in(&*store, "viewer", Role::Read)
        .await
        .expect("token")
        .1;
    store.close().await;
    let mut config = plumbline::config::Config {
        db,
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        tls: pki.server_tls(false),
        web: plumbline::web::WebConfig::on_free_port(),
        ..Default::default()
    };
    config.auth.enabled = true;
    let s = plumbline::server::start(&config).await.expect("starts");
    let web = s.web_url().expect("the web view is on");
    assert!(web.starts_with("https://127.0.0.1:"), "{web}");
    let ca =
        reqwest::Certificate::from_pem(&std::fs::read(pki.path("ca.pem")).unwrap()).expect("CA");
    let https = reqwest::Client::builder()
        .redirect(Policy::none())
        .tls_certs_only([ca])
        .build()
        .expect("client");

    // A connection that opens and never says anything.
    let port = web.rsplit(':').next().unwrap().parse::<u16>().unwrap();
    let _silent = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let (_, set_cookie) = sign_in_via(&https, &web, &read).await;
    assert!(set_cookie.contains("; Secure"), "{set_cookie}");

    // Plain HTTP to the same port gets no page.
    let plain = web.replace("https://", "http://");
    match client().get(format!("{plain}/signin")).send().await {
        Ok(r) => panic!("plain HTTP answered {}", r.status()),
        Err(e) => assert!(!e.is_status(), "{e}"),
    }
    // A client that does not trust the certificate is refused.
    assert!(client().get(format!("{web}/signin")).send().await.is_err());
    s.shutdown().await.unwrap();

    // With [tls] client_ca, the pages too need a client certificate.
    config.tls = pki.server_tls(true);
    let s = plumbline::server::start(&config).await.expect("starts");
    let web = s.web_url().unwrap();
    assert!(https.get(format!("{web}/signin")).send().await.is_err());
    let mut pem = std::fs::read(pki.path("client.pem")).unwrap();
    pem.extend(std::fs::read(pki.path("client.key")).unwrap());
    let ca =
        reqwest::Certificate::from_pem(&std::fs::read(pki.path("ca.pem")).unwrap()).expect("CA");
    let mtls = reqwest::Client::builder()
        .redirect(Policy::none())
        .tls_certs_only([ca])
        .identity(reqwest::Identity::from_pem(&pem).expect("identity"))
        .build()
        .expect("client");
    let r = mtls.get(format!("{web}/signin")).send().await.expect("GET");
    assert_eq!(r.status(), StatusCode::OK);
    s.shutdown().await.unwrap();

    // Off loopback it starts without --insecure: the pages are HTTPS.
    config.web.listen = SocketAddr::from(([0, 0, 0, 0], 0));
    let s = plumbline::server::start(&config)
        .await
        .expect("an exposed HTTPS web view starts");
    s.shutdown().await.unwrap();
}

#[tokio::test]
async fn revoking_the_token_ends_its_sessions_and_live_streams() {
    let w = demo_server(true, |_| {}).await;
    let cookie = sign_in(&w, &w.read).await;
    let page = |cookie: String| {
        let url = format!("{}/", w.web);
        async move {
            client()
                .get(url)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(page(cookie.clone()).await, StatusCode::OK);
    let mut events = client()
        .get(format!("{}/events", w.web))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), StatusCode::OK);
    assert!(String::from_utf8_lossy(&events.chunk().await.unwrap().unwrap()).contains("hello"));

    // Revoked in the database (as `plumbline tokens revoke --db` does); the
    // server reads it on its next refresh.
    let store = crate::common::open_store(&w.s.config.db).await;
    tokens::revoke_in(&*store, "viewer").await.expect("revoked");
    store.close().await;
    let mut refused = false;
    for _ in 0..100 {
        if page(cookie.clone()).await == StatusCode::SEE_OTHER {
            refused = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(refused, "the session ended with its token");
    // The stream opened with it has ended too.
    let mut rest = String::new();
    while let Some(chunk) = events.chunk().await.unwrap() {
        rest.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(!rest.contains("event: ranking"), "{rest}");
}

/// DNS rebinding: a page of another site whose name now points at this
/// machine sends that name as Host (and as Origin, so the Origin check
/// alone would pass it). Only loopback names, the listen address and
/// `[web] allowed_hosts` are answered.
#[tokio::test]
async fn a_host_name_the_server_does_not_know_is_refused() {
    let w = demo_server(false, |c| {
        c.web.allowed_hosts = vec!["refine.example.com".into()]
    })
    .await;
    let port = w
        .web
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_string();
    let get = |host: String| {
        let url = format!("{}/", w.web);
        async move {
            client()
                .get(url)
                .header("host", host)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(get(format!("rebind.attacker.example:{port}")).await, 421);
    assert_eq!(get(format!("localhost:{port}")).await, 200);
    assert_eq!(get(format!("127.0.0.1:{port}")).await, 200);
    assert_eq!(get("refine.example.com".into()).await, 200);
    // A state-changing form from the rebound name is refused before the
    // Origin check could be fooled.
    let r = client()
        .post(format!("{}/items/web%2F418/split", w.web))
        .header("host", format!("rebind.attacker.example:{port}"))
        .header("origin", format!("http://rebind.attacker.example:{port}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("plan=0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 421);
}
