//! Where a source's credentials and a tracker's answers may go (issue 15):
//! a token never crosses origins, whether a tracker redirects or names its
//! next page elsewhere, and a tracker's error body never reaches a caller,
//! the sync state or the log beyond a short, sanitized message. Two local
//! mocks each time: the tracker, and an "other host" that records whatever
//! arrives.

use crate::common::*;
use plumbline::proto as pb;
use tonic::Code;
use wiremock::matchers::{any, method};
use wiremock::{Mock, MockServer, ResponseTemplate};

const GITLAB_VAR: &str = "PLB_TEST_GITLAB_TOKEN";
const GITLAB_TOKEN: &str = "glpat-testtoken0123456789";
const REDMINE_VAR: &str = "PLB_TEST_REDMINE_TOKEN";
const REDMINE_TOKEN: &str = "3f9c2b7a1e8d4c6b5a0f9e8d7c6b5a4f3e2d1c0b";
const GITHUB_VAR: &str = "PLB_TEST_GITHUB_TOKEN";
const GITHUB_TOKEN: &str = "ghp_testtoken0123456789";

fn source(id: &str, kind: pb::TrackerKind, mock: &MockServer, var: &str) -> pb::Source {
    pb::Source {
        id: id.into(),
        kind: kind as i32,
        base_url: mock.uri(),
        project_key: match kind {
            pb::TrackerKind::Redmine => "shop".into(),
            _ => "acme/shop".into(),
        },
        token_env: var.into(),
        ..Default::default()
    }
}

/// Everything the other host received, as (path, header names).
async fn received(other: &MockServer) -> Vec<(String, Vec<String>)> {
    other
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|r| {
            (
                r.url.path().to_string(),
                r.headers.keys().map(|k| k.to_string()).collect(),
            )
        })
        .collect()
}

/// A sync of a source whose tracker answers every request with `302` to the
/// other host fails, naming the other origin, and the other host receives
/// nothing: no request, so no `PRIVATE-TOKEN` or `X-Redmine-API-Key`.
async fn redirect_to_other_host_is_refused(
    kind: pb::TrackerKind,
    var: &'static str,
    token: &'static str,
) {
    set_test_token(var, token);
    let tracker = MockServer::start().await;
    let other = MockServer::start().await;
    Mock::given(any())
        .respond_with(
            ResponseTemplate::new(302)
                .insert_header("location", format!("{}/stolen?x=1", other.uri()).as_str()),
        )
        .mount(&tracker)
        .await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200).set_body_string("[]"))
        .mount(&other)
        .await;
    let s = TestServer::start().await;
    create_source(&s, source("t", kind, &tracker, var)).await;
    let run = run_sync(&s, "t", true).await;
    let err = run.error();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains("another origin") && err.message().contains(&other.uri()),
        "{}",
        err.message()
    );
    assert!(!err.message().contains(token));
    assert_eq!(
        received(&other).await,
        Vec::new(),
        "the other host was asked"
    );
    let st = sync_status(&s, "t").await;
    assert!(
        st.last_error.contains("another origin"),
        "{}",
        st.last_error
    );
}

#[tokio::test]
async fn a_gitlab_redirect_to_another_host_is_not_followed() {
    redirect_to_other_host_is_refused(pb::TrackerKind::Gitlab, GITLAB_VAR, GITLAB_TOKEN).await;
}

#[tokio::test]
async fn a_redmine_redirect_to_another_host_is_not_followed() {
    redirect_to_other_host_is_refused(pb::TrackerKind::Redmine, REDMINE_VAR, REDMINE_TOKEN).await;
}

/// A redirect within the tracker's origin is still followed, with the token.
#[tokio::test]
async fn a_redirect_within_the_origin_is_followed() {
    set_test_token(GITLAB_VAR, GITLAB_TOKEN);
    let tracker = MockServer::start().await;
    Mock::given(wiremock::matchers::path_regex("^/moved/"))
        .and(wiremock::matchers::header("private-token", GITLAB_TOKEN))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "application/json")
                .set_body_string("[]"),
        )
        .mount(&tracker)
        .await;
    Mock::given(wiremock::matchers::path_regex("^/api/"))
        .respond_with(ResponseTemplate::new(301).insert_header(
            "location",
            format!("{}/moved/issues", tracker.uri()).as_str(),
        ))
        .mount(&tracker)
        .await;
    let s = TestServer::start().await;
    create_source(
        &s,
        source("gl", pb::TrackerKind::Gitlab, &tracker, GITLAB_VAR),
    )
    .await;
    let run = run_sync(&s, "gl", true).await;
    assert_eq!(run.done().requests, 1, "{run:?}");
}

/// GitHub's `Link: <other>; rel="next"` is not followed: the sync fails
/// naming the other origin, and the other host receives nothing.
#[tokio::test]
async fn a_github_next_link_to_another_origin_is_not_followed() {
    set_test_token(GITHUB_VAR, GITHUB_TOKEN);
    let tracker = MockServer::start().await;
    let other = MockServer::start().await;
    let issue = serde_json::json!([{
        "number": 1, "title": "one", "body": null,
        "html_url": "https://github.com/acme/shop/issues/1", "state": "open",
        "labels": [], "created_at": "2026-11-01T00:00:00Z",
        "updated_at": "2026-11-01T00:00:00Z", "closed_at": null
    }]);
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "application/json")
                .insert_header(
                    "link",
                    format!(
                        "<{}/repositories/42/issues?page=2&per_page=100>; rel=\"next\"",
                        other.uri()
                    )
                    .as_str(),
                )
                .set_body_json(issue),
        )
        .mount(&tracker)
        .await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200).set_body_string("[]"))
        .mount(&other)
        .await;
    let s = TestServer::start().await;
    create_source(
        &s,
        source("gh", pb::TrackerKind::Github, &tracker, GITHUB_VAR),
    )
    .await;
    let run = run_sync(&s, "gh", true).await;
    let err = run.error();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains("next page at another origin")
            && err.message().contains(&other.uri()),
        "{}",
        err.message()
    );
    assert_eq!(
        received(&other).await,
        Vec::new(),
        "the other host was asked"
    );
}

/// A tracker's error body that echoes the token and internal data reaches
/// neither the RPC error, nor `GetSyncStatus.last_error`, nor the stored
/// state (read again after a restart); the documented `message` does, with
/// the token and credential-like values redacted.
#[tokio::test]
async fn error_bodies_never_reach_callers_or_the_store() {
    set_test_token(GITHUB_VAR, GITHUB_TOKEN);
    let tracker = MockServer::start().await;
    let plain = format!(
        "INTERNAL-ONLY-DATA: db_password=hunter2 token={GITHUB_TOKEN}\n{}",
        "x".repeat(300)
    );
    Mock::given(wiremock::matchers::path("/repos/acme/plain/issues"))
        .respond_with(ResponseTemplate::new(404).set_body_string(plain))
        .mount(&tracker)
        .await;
    let echo = serde_json::json!({
        "message": format!("Not Found for Bearer {GITHUB_TOKEN}\u{1b}[31m db_password=hunter2"),
        "internal": "INTERNAL-ONLY-DATA",
    });
    Mock::given(wiremock::matchers::path("/repos/acme/echo/issues"))
        .respond_with(ResponseTemplate::new(404).set_body_json(echo))
        .mount(&tracker)
        .await;
    let s = TestServer::start().await;
    for (id, repo) in [("plain", "acme/plain"), ("echo", "acme/echo")] {
        create_source(
            &s,
            pb::Source {
                project_key: repo.into(),
                ..source(id, pb::TrackerKind::Github, &tracker, GITHUB_VAR)
            },
        )
        .await;
    }
    let leaks = |text: &str| {
        for leak in [
            GITHUB_TOKEN,
            "hunter2",
            "INTERNAL-ONLY-DATA",
            "xxxxx",
            "\u{1b}",
        ] {
            assert!(!text.contains(leak), "{leak:?} leaked: {text:?}");
        }
    };
    let plain = run_sync(&s, "plain", true).await;
    let msg = plain.error().message().to_string();
    assert_eq!(plain.error().code(), Code::FailedPrecondition);
    assert!(
        msg.contains("not found (404)") && msg.contains("no message"),
        "{msg}"
    );
    leaks(&msg);
    let echo = run_sync(&s, "echo", true).await;
    let msg = echo.error().message().to_string();
    assert!(msg.contains("Not Found for [redacted]"), "{msg}");
    leaks(&msg);
    for id in ["plain", "echo"] {
        leaks(&sync_status(&s, id).await.last_error);
    }
    let s = s.restart().await;
    for id in ["plain", "echo"] {
        let stored = sync_status(&s, id).await.last_error;
        assert!(stored.contains("not found (404)"), "{stored}");
        leaks(&stored);
    }
    let db = rusqlite::Connection::open(s.db_path()).unwrap();
    let all: Vec<String> = db
        .prepare("SELECT last_error FROM sync_state")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(all.len(), 2);
    for e in all {
        leaks(&e);
    }
}
