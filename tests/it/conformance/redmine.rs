//! Redmine's dialect for the conformance suite: `{"issues", "total_count",
//! "offset", "limit"}` (issues shaped like `tests/fixtures/redmine/`) under
//! a sub-path, `updated_on=>=` as the time filter, offset pages, ETags (Rails
//! sends them), and Redmine's (or its proxy's) error bodies.

use chrono::{DateTime, Utc};
use plumbline::proto as pb;
use serde_json::Value;
use wiremock::{Request, ResponseTemplate};

use super::{Issue, PAGE, Query, Tracker, param};
use crate::common::fixture;

#[derive(Default)]
pub struct Redmine;

impl Tracker for Redmine {
    const ID: &'static str = "rm";
    const TOKEN: (&'static str, &'static str) = (
        "PLB_TEST_REDMINE_TOKEN",
        "3f9c2b7a1e8d4c6b5a0f9e8d7c6b5a4f3e2d1c0b",
    );
    const SENDS_ETAG: bool = true;

    fn source(&self, uri: &str) -> pb::Source {
        pb::Source {
            id: Self::ID.into(),
            kind: pb::TrackerKind::Redmine as i32,
            base_url: format!("{uri}/redmine"),
            project_key: "shop".into(),
            token_env: Self::TOKEN.0.into(),
            ..Default::default()
        }
    }

    fn list_path(&self) -> String {
        "/redmine/issues.json".into()
    }

    fn identity(&self) -> Option<(String, ResponseTemplate)> {
        Some((
            "/redmine/users/current.json".into(),
            ResponseTemplate::new(200)
                .insert_header("content-type", "application/json; charset=utf-8")
                .set_body_string(fixture("redmine/users-current.json")),
        ))
    }

    fn external_id(&self, n: u64) -> String {
        n.to_string()
    }

    fn issue(&self, i: &Issue) -> Value {
        let page: Value = serde_json::from_str(&fixture("redmine/issues-page2.json")).unwrap();
        let mut v = page["issues"][0].clone();
        v["id"] = i.n.into();
        v["subject"] = i.title.clone().into();
        v["description"] = "".into();
        v["updated_on"] = i
            .updated
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            .into();
        if let Some(o) = v.as_object_mut() {
            o.remove("parent");
        }
        v
    }

    fn query(&self, req: &Request) -> Query {
        let since = param(req, "updated_on").map(|f| {
            DateTime::parse_from_rfc3339(f.trim_start_matches(">="))
                .unwrap()
                .with_timezone(&Utc)
        });
        let offset: usize = param(req, "offset").map_or(0, |o| o.parse().unwrap());
        Query {
            since,
            page: offset / PAGE,
        }
    }

    /// Redmine caps `limit` at its own maximum and says so in the answer;
    /// here the cap is [`PAGE`].
    fn page(
        &self,
        req: &Request,
        issues: Vec<Value>,
        _more: bool,
        total: usize,
    ) -> ResponseTemplate {
        let body = serde_json::json!({
            "issues": issues,
            "total_count": total,
            "offset": self.query(req).page * PAGE,
            "limit": PAGE,
        });
        ResponseTemplate::new(200)
            .insert_header("content-type", "application/json; charset=utf-8")
            .set_body_json(body)
    }

    fn issue_path(&self, n: u64) -> String {
        format!("/redmine/issues/{n}.json")
    }

    fn deleted(&self) -> ResponseTemplate {
        // Redmine's API answers a missing issue with an empty 404.
        ResponseTemplate::new(404).insert_header("content-type", "application/json; charset=utf-8")
    }

    fn error(&self, status: u16) -> ResponseTemplate {
        let (body, kind) = match status {
            401 => (fixture("redmine/error-401.html"), "text/html"),
            403 | 404 | 429 => (String::new(), "application/json; charset=utf-8"),
            _ => (
                "<html><body><h1>Internal error</h1></body></html>".to_string(),
                "text/html; charset=utf-8",
            ),
        };
        ResponseTemplate::new(status)
            .insert_header("content-type", kind)
            .set_body_string(body)
    }

    fn says(&self, _status: u16) -> &'static str {
        // Redmine's front proxy answers 401 with an HTML page, and Redmine
        // the others with an empty body: no HTML is quoted, the status
        // line says it all.
        "no message"
    }
}

conformance_cases!(super::Redmine);
