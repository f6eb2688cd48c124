//! Jira Cloud's dialect for the conformance suite: the enhanced JQL search
//! (`{"issues", "nextPageToken", "isLast"}`, issues shaped like
//! `tests/fixtures/jira/`), a relative `updated >= "-Nm"` in the JQL as the
//! time filter, opaque page tokens, no ETags, and Jira's error bodies.

use chrono::{Duration, Utc};
use plumbline::proto as pb;
use serde_json::Value;
use wiremock::{Request, ResponseTemplate};

use super::{Issue, Query, Tracker, param};
use crate::common::fixture;

#[derive(Default)]
pub struct Jira;

fn json_error(messages: &[&str]) -> String {
    serde_json::json!({"errorMessages": messages, "errors": {}}).to_string()
}

impl Tracker for Jira {
    const ID: &'static str = "ops";
    const TOKEN: (&'static str, &'static str) =
        ("PLB_TEST_JIRA_TOKEN", "me@example.com:jira-api-token");
    const SENDS_ETAG: bool = false;

    fn source(&self, uri: &str) -> pb::Source {
        pb::Source {
            id: Self::ID.into(),
            kind: pb::TrackerKind::Jira as i32,
            base_url: format!("{uri}/"),
            project_key: "OPS".into(),
            token_env: Self::TOKEN.0.into(),
            ..Default::default()
        }
    }

    fn list_path(&self) -> String {
        "/rest/api/3/search/jql".into()
    }

    fn external_id(&self, n: u64) -> String {
        format!("OPS-{n}")
    }

    fn issue(&self, i: &Issue) -> Value {
        let page: Value = serde_json::from_str(&fixture("jira/search-page2.json")).unwrap();
        let mut v = page["issues"][0].clone();
        v["id"] = (10_000 + i.n).to_string().into();
        v["key"] = format!("OPS-{}", i.n).into();
        v["self"] = format!(
            "https://acme.atlassian.net/rest/api/3/issue/{}",
            10_000 + i.n
        )
        .into();
        let f = &mut v["fields"];
        f["summary"] = i.title.clone().into();
        f["description"] = Value::Null;
        f["labels"] = serde_json::json!([]);
        f["updated"] = i
            .updated
            .format("%Y-%m-%dT%H:%M:%S%.3f%z")
            .to_string()
            .into();
        if let Some(o) = f.as_object_mut() {
            o.remove("parent");
        }
        v
    }

    /// `updated >= "-Nm"` reaches back N minutes from the mock's clock.
    fn query(&self, req: &Request) -> Query {
        let jql = param(req, "jql").unwrap_or_default();
        let since = jql
            .split_once("updated >= \"-")
            .and_then(|(_, r)| r.split_once("m\""))
            .and_then(|(n, _)| n.parse::<i64>().ok())
            .map(|minutes| Utc::now() - Duration::minutes(minutes));
        let page = param(req, "nextPageToken")
            .map_or(0, |t| t.trim_start_matches("page-").parse().unwrap());
        Query { since, page }
    }

    fn page(
        &self,
        req: &Request,
        issues: Vec<Value>,
        more: bool,
        _total: usize,
    ) -> ResponseTemplate {
        let mut body = serde_json::json!({ "issues": issues, "isLast": !more });
        if more {
            body["nextPageToken"] = format!("page-{}", self.query(req).page + 1).into();
        }
        ResponseTemplate::new(200)
            .insert_header("content-type", "application/json;charset=UTF-8")
            .set_body_json(body)
    }

    fn issue_path(&self, n: u64) -> String {
        format!("/rest/api/3/issue/{}", self.external_id(n))
    }

    fn deleted(&self) -> ResponseTemplate {
        ResponseTemplate::new(404)
            .insert_header("content-type", "application/json;charset=UTF-8")
            .set_body_string(json_error(&[
                "Issue does not exist or you do not have permission to see it.",
            ]))
    }

    fn error(&self, status: u16) -> ResponseTemplate {
        let body = match status {
            401 => fixture("jira/error-401.json"),
            403 => json_error(&["You do not have permission to browse issues in this project."]),
            404 => json_error(&["The requested resource could not be found."]),
            429 => String::new(),
            _ => json_error(&["Internal server error"]),
        };
        let resp = ResponseTemplate::new(status)
            .insert_header("content-type", "application/json;charset=UTF-8")
            .set_body_string(body);
        if status == 429 {
            resp.insert_header("retry-after", "0")
                .insert_header("x-ratelimit-reason", "jira-burst-based")
        } else {
            resp
        }
    }

    fn says(&self, status: u16) -> &'static str {
        match status {
            401 => "You are not authenticated",
            403 => "You do not have permission to browse issues",
            404 => "could not be found",
            _ => "",
        }
    }
}

conformance_cases!(super::Jira);
