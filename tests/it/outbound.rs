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
    let all: Vec<String> = crate::common::stored_rows(&s.config.db)
        .into_iter()
        .filter(|(t, _)| t == "sync_state")
        .map(|(_, row)| row)
        .collect();
    assert_eq!(all.len(), 2);
    for e in all {
        leaks(&e);
    }
}

// ----- the outbound policy: which variables and hosts sources may use -----

/// A listener that answers every request like an empty GitHub page, and
/// records what it receives.
async fn listener() -> MockServer {
    let mock = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200).set_body_string("[]"))
        .mount(&mock)
        .await;
    mock
}

fn github(id: &str, base_url: &str, token_env: &str) -> pb::Source {
    pb::Source {
        id: id.into(),
        kind: pb::TrackerKind::Github as i32,
        base_url: base_url.into(),
        project_key: "acme/shop".into(),
        token_env: token_env.into(),
        ..Default::default()
    }
}

async fn try_create(
    s: &TestServer,
    src: pb::Source,
) -> Result<tonic::Response<pb::CreateSourceResponse>, tonic::Status> {
    s.sources()
        .create_source(pb::CreateSourceRequest { source: Some(src) })
        .await
}

/// The reproduction: any upper-case variable could be named and its value
/// sent to the caller's listener. Now a variable outside the policy is
/// refused when the source is created or updated, naming the setting that
/// would allow it, and the listener receives nothing.
#[tokio::test]
async fn a_token_variable_outside_the_policy_is_refused() {
    let mock = listener().await;
    let s = TestServer::start().await;
    for var in ["AWS_SECRET_ACCESS_KEY", "PLB_OTHER_SECRET", "HOME"] {
        let r = try_create(&s, github("leak", &format!("{}/ok", mock.uri()), var)).await;
        let msg = r.as_ref().map_err(|e| e.message().to_string()).unwrap_err();
        assert!(
            msg.contains(var) && msg.contains("outbound.token_env_prefix"),
            "{msg}"
        );
        assert_invalid(r, &["source.token_env"]);
    }
    // Nor can an allowed source be pointed at another variable later.
    create_source(&s, github("ok", &mock.uri(), "PLB_TEST_GITHUB_TOKEN")).await;
    let r = s
        .sources()
        .update_source(pb::UpdateSourceRequest {
            source: Some(pb::Source {
                id: "ok".into(),
                token_env: "AWS_SECRET_ACCESS_KEY".into(),
                ..Default::default()
            }),
            update_mask: mask(&["token_env"]),
        })
        .await;
    assert_invalid(r, &["source.token_env"]);
    let r = s
        .sources()
        .update_source(pb::UpdateSourceRequest {
            source: Some(pb::Source {
                id: "ok".into(),
                base_url: "http://169.254.169.254/latest".into(),
                ..Default::default()
            }),
            update_mask: mask(&["base_url"]),
        })
        .await;
    assert_invalid(r, &["source.base_url"]);
    assert!(received(&mock).await.is_empty());
}

/// With the default policy (public hosts only, `PLUMBLINE_SECRET_*`
/// tokens): the metadata address, `[::1]`, `0x7f.1` (127.0.0.1), a
/// loopback address in IPv6 form and credentials in the URL are refused,
/// each naming `source.base_url`; a public host and a token variable of the
/// prefix are accepted.
#[tokio::test]
async fn private_addresses_and_userinfo_are_refused_by_default() {
    let mock = listener().await;
    let s = TestServer::start_with_config(|c| c.outbound = Default::default()).await;
    let port = mock.address().port();
    for url in [
        "http://169.254.169.254/latest".to_string(),
        "http://[::1]:1".to_string(),
        "http://0x7f.1:22".to_string(),
        format!("http://0x7f.1:{port}/ok"),
        format!("http://127.0.0.1:{port}/ok"),
        format!("http://[::ffff:127.0.0.1]:{port}/ok"),
        "http://10.0.0.1/".to_string(),
        "http://0.0.0.0:80/".to_string(),
        "https://me:ghp_secret@api.github.com".to_string(),
    ] {
        let r = try_create(&s, github("x", &url, "")).await;
        assert_invalid(r, &["source.base_url"]);
    }
    // The issue's reproduction, whole: both fields are named.
    let r = try_create(
        &s,
        github("x", &format!("{}/ok", mock.uri()), "PLB_OTHER_SECRET"),
    )
    .await;
    assert_invalid(r, &["source.token_env", "source.base_url"]);
    let r = try_create(
        &s,
        github("gh", "https://api.github.com", "PLUMBLINE_SECRET_GITHUB"),
    )
    .await;
    assert!(r.is_ok(), "{r:?}");
    assert!(received(&mock).await.is_empty());
}

/// Sources stored before the policy (or before the operator narrowed it)
/// are refused when they sync, with an error that says why, and nothing is
/// sent: not by the token variable, not to the address.
#[tokio::test]
async fn a_stored_source_outside_the_policy_is_refused_at_sync() {
    set_test_token(GITHUB_VAR, GITHUB_TOKEN);
    let mock = listener().await;
    let mut s = TestServer::start().await;
    create_source(&s, github("tok", &mock.uri(), GITHUB_VAR)).await;
    create_source(&s, github("addr", &mock.uri(), "")).await;
    // The same database under the default policy.
    s.config.outbound = plumbline::config::OutboundConfig::default();
    let s = s.restart().await;
    for (id, want) in [
        (
            "tok",
            "token_env refused: the environment variable PLB_TEST_GITHUB_TOKEN",
        ),
        ("addr", "base_url refused: 127.0.0.1 is a loopback address"),
    ] {
        let run = run_sync(&s, id, true).await;
        let err = run.error();
        assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
        assert!(
            err.message().contains("outbound policy") && err.message().contains(want),
            "{}",
            err.message()
        );
        let status = sync_status(&s, id).await;
        assert!(status.last_error.contains(want), "{}", status.last_error);
    }
    assert!(received(&mock).await.is_empty());
}

/// A host name is checked on the addresses it resolves to, as the client
/// connects: `localhost` resolves to a loopback address, so a source
/// naming it reaches nothing until the operator lists it (or the address).
#[tokio::test]
async fn a_name_that_resolves_to_loopback_is_refused_unless_listed() {
    let mock = listener().await;
    let url = format!("http://localhost:{}", mock.address().port());
    let s = TestServer::start_with_config(|c| {
        c.outbound = plumbline::config::OutboundConfig::default();
    })
    .await;
    // A name is not refused when stored: what it resolves to may change.
    create_source(&s, github("lh", &url, "")).await;
    let run = run_sync(&s, "lh", true).await;
    let err = run.error();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message()
            .contains("localhost resolves only to addresses sources may not reach")
            && err.message().contains("loopback")
            && err.message().contains("outbound.allow_hosts"),
        "{}",
        err.message()
    );
    assert_eq!(run.pages.len(), 0);
    assert!(received(&mock).await.is_empty());
    s.stop().await;

    // Listed by name, it is reached.
    let s = TestServer::start_with_config(|c| {
        c.outbound = plumbline::config::OutboundConfig {
            allow_hosts: vec!["localhost".into()],
            ..Default::default()
        };
    })
    .await;
    create_source(&s, github("lh", &url, "")).await;
    let run = run_sync(&s, "lh", true).await;
    assert_eq!(run.done().pages, 1);
    assert!(!received(&mock).await.is_empty());
}

/// Every secret the server knows (the value of every variable the policy
/// lets sources name) is scrubbed from a sync's errors, not only the
/// source's own token: a tracker that echoes another source's Jira token
/// (which looks like no credential) shows `[redacted]`.
#[tokio::test]
async fn every_known_secret_is_scrubbed_from_errors() {
    set_test_token(GITHUB_VAR, GITHUB_TOKEN);
    let jira_token = "me@example.com:jira-api-token";
    set_test_token("PLB_TEST_JIRA_TOKEN", jira_token);
    let tracker = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(404).set_body_json(serde_json::json!({
            "message": format!("no repository; last caller sent {jira_token}")
        })))
        .mount(&tracker)
        .await;
    let s = TestServer::start().await;
    create_source(
        &s,
        source("gh", pb::TrackerKind::Github, &tracker, GITHUB_VAR),
    )
    .await;
    let run = run_sync(&s, "gh", true).await;
    let msg = run.error().message().to_string();
    assert!(
        msg.contains("last caller sent [redacted]") && !msg.contains("jira-api-token"),
        "{msg}"
    );
    let stored = sync_status(&s, "gh").await.last_error;
    assert!(!stored.contains("jira-api-token"), "{stored}");
}

/// A database written before errors were scrubbed may hold a leaked error;
/// it is scrubbed as it is served, of known secrets and credential-like
/// words.
#[tokio::test]
async fn an_error_stored_before_scrubbing_is_scrubbed_when_served() {
    set_test_token(GITHUB_VAR, GITHUB_TOKEN);
    let tracker = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(500))
        .mount(&tracker)
        .await;
    let s = TestServer::start_with_config(|c| c.sync.max_retries = 0).await;
    create_source(
        &s,
        source("gh", pb::TrackerKind::Github, &tracker, GITHUB_VAR),
    )
    .await;
    run_sync(&s, "gh", true).await.error();
    let leaked = format!(
        "source \"gh\": not found (404) at {}/repos/acme/shop/issues: echo Bearer {GITHUB_TOKEN} INTERNAL: db_password=hunter2",
        tracker.uri()
    );
    let n = crate::common::execute_sql(
        &s.config.db,
        "UPDATE sync_state SET last_error = $1 WHERE source_id = 'gh'",
        &leaked,
    );
    assert_eq!(n, 1);
    let shown = sync_status(&s, "gh").await.last_error;
    assert!(
        !shown.contains(GITHUB_TOKEN) && !shown.contains("hunter2"),
        "{shown}"
    );
    assert!(shown.contains("not found (404)"), "{shown}");
}
