//! GitHub's dialect for the conformance suite: a bare JSON array of issues
//! (shaped like `tests/fixtures/github/`), `since=` as the time filter,
//! `Link: <...>; rel="next"` pages, ETags, and GitHub's error bodies.

use chrono::{DateTime, Utc};
use plumbline::proto as pb;
use serde_json::Value;
use wiremock::{Request, ResponseTemplate};

use super::{Issue, Query, Tracker, param};
use crate::common::fixture;

#[derive(Default)]
pub struct GitHub;

impl Tracker for GitHub {
    const ID: &'static str = "gh";
    const TOKEN: (&'static str, &'static str) =
        ("PLB_TEST_GITHUB_TOKEN", "ghp_testtoken0123456789");
    const SENDS_ETAG: bool = true;

    fn source(&self, uri: &str) -> pb::Source {
        pb::Source {
            id: Self::ID.into(),
            kind: pb::TrackerKind::Github as i32,
            base_url: uri.into(),
            project_key: "acme/shop".into(),
            token_env: Self::TOKEN.0.into(),
            ..Default::default()
        }
    }

    fn list_path(&self) -> String {
        "/repos/acme/shop/issues".into()
    }

    fn external_id(&self, n: u64) -> String {
        n.to_string()
    }

    fn issue(&self, i: &Issue) -> Value {
        let page: Vec<Value> = serde_json::from_str(&fixture("github/issues-page2.json")).unwrap();
        let mut v = page[1].clone();
        v["number"] = i.n.into();
        v["id"] = (2_000_000_000 + i.n).into();
        v["title"] = i.title.clone().into();
        v["body"] = Value::Null;
        v["labels"] = serde_json::json!([]);
        v["html_url"] = format!("https://github.com/acme/shop/issues/{}", i.n).into();
        v["updated_at"] = i
            .updated
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            .into();
        v
    }

    fn query(&self, req: &Request) -> Query {
        Query {
            since: param(req, "since").map(|s| {
                DateTime::parse_from_rfc3339(&s)
                    .unwrap()
                    .with_timezone(&Utc)
            }),
            page: param(req, "page").map_or(0, |p| p.parse::<usize>().unwrap() - 1),
        }
    }

    fn page(
        &self,
        req: &Request,
        issues: Vec<Value>,
        more: bool,
        _total: usize,
    ) -> ResponseTemplate {
        let mut resp = ResponseTemplate::new(200)
            .insert_header("content-type", "application/json; charset=utf-8")
            .insert_header("x-ratelimit-limit", "5000")
            .insert_header("x-ratelimit-remaining", "4990")
            .insert_header("x-ratelimit-reset", "4102444800")
            .set_body_json(issues);
        if more {
            let mut next = super::sent_to(req);
            let page = self.query(req).page + 2;
            let pairs: Vec<(String, String)> = next
                .query_pairs()
                .filter(|(k, _)| k != "page")
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            next.query_pairs_mut()
                .clear()
                .extend_pairs(pairs)
                .append_pair("page", &page.to_string());
            resp = resp.insert_header("link", format!("<{next}>; rel=\"next\"").as_str());
        }
        resp
    }

    fn issue_path(&self, n: u64) -> String {
        format!("/repos/acme/shop/issues/{n}")
    }

    fn deleted(&self) -> ResponseTemplate {
        ResponseTemplate::new(410)
            .insert_header("content-type", "application/json; charset=utf-8")
            .set_body_string(r#"{"message":"This issue was deleted","documentation_url":"https://docs.github.com/rest/issues/issues#get-an-issue","status":"410"}"#)
    }

    fn error(&self, status: u16) -> ResponseTemplate {
        let body = match status {
            401 => fixture("github/error-401.json"),
            403 => r#"{"message":"Resource not accessible by personal access token","documentation_url":"https://docs.github.com/rest/issues/issues#list-repository-issues","status":"403"}"#.into(),
            404 => r#"{"message":"Not Found","documentation_url":"https://docs.github.com/rest/issues/issues#list-repository-issues","status":"404"}"#.into(),
            429 => fixture("github/error-403-rate-limit.json"),
            _ => String::new(),
        };
        let resp = ResponseTemplate::new(status)
            .insert_header("content-type", "application/json; charset=utf-8")
            .set_body_string(body);
        if status == 429 {
            resp.insert_header("retry-after", "0")
        } else {
            resp
        }
    }

    fn says(&self, status: u16) -> &'static str {
        match status {
            401 => "Bad credentials",
            403 => "Resource not accessible by personal access token",
            404 => "Not Found",
            _ => "",
        }
    }
}

conformance_cases!(super::GitHub);
