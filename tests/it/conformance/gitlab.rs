//! GitLab's dialect for the conformance suite: a bare JSON array of issues
//! (shaped like `tests/fixtures/gitlab/`), `updated_after=` as the time
//! filter, offset pages with `Link` and `X-Next-Page`, ETags, and GitLab's
//! error bodies.

use chrono::{DateTime, Utc};
use plumbline::proto as pb;
use serde_json::Value;
use wiremock::{Request, ResponseTemplate};

use super::{Issue, PAGE, Query, Tracker, param};
use crate::common::fixture;

#[derive(Default)]
pub struct GitLab;

impl Tracker for GitLab {
    const ID: &'static str = "gl";
    const TOKEN: (&'static str, &'static str) =
        ("PLB_TEST_GITLAB_TOKEN", "glpat-testtoken0123456789");
    const SENDS_ETAG: bool = true;

    fn source(&self, uri: &str) -> pb::Source {
        pb::Source {
            id: Self::ID.into(),
            kind: pb::TrackerKind::Gitlab as i32,
            base_url: uri.into(),
            project_key: "acme/platform/shop".into(),
            token_env: Self::TOKEN.0.into(),
            ..Default::default()
        }
    }

    fn list_path(&self) -> String {
        "/api/v4/projects/acme%2Fplatform%2Fshop/issues".into()
    }

    fn external_id(&self, n: u64) -> String {
        n.to_string()
    }

    fn issue(&self, i: &Issue) -> Value {
        let page: Vec<Value> = serde_json::from_str(&fixture("gitlab/issues-page2.json")).unwrap();
        let mut v = page[0].clone();
        v["iid"] = i.n.into();
        v["id"] = (150_000_000 + i.n).into();
        v["title"] = i.title.clone().into();
        v["description"] = Value::Null;
        v["state"] = "opened".into();
        v["closed_at"] = Value::Null;
        v["labels"] = serde_json::json!([]);
        v["web_url"] = format!("https://gitlab.com/acme/platform/shop/-/issues/{}", i.n).into();
        v["updated_at"] = i
            .updated
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            .into();
        v
    }

    fn query(&self, req: &Request) -> Query {
        Query {
            since: param(req, "updated_after").map(|s| {
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
        total: usize,
    ) -> ResponseTemplate {
        let page = self.query(req).page + 1;
        let total_pages = total.div_ceil(PAGE).max(1);
        let with_page = |p: usize| {
            let mut u = super::sent_to(req);
            let pairs: Vec<(String, String)> = u
                .query_pairs()
                .filter(|(k, _)| k != "page")
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            u.query_pairs_mut()
                .clear()
                .extend_pairs(pairs)
                .append_pair("page", &p.to_string());
            u
        };
        let mut links = vec![
            format!("<{}>; rel=\"first\"", with_page(1)),
            format!("<{}>; rel=\"last\"", with_page(total_pages)),
        ];
        if more {
            links.insert(0, format!("<{}>; rel=\"next\"", with_page(page + 1)));
        }
        ResponseTemplate::new(200)
            .insert_header("content-type", "application/json")
            .insert_header("link", links.join(", ").as_str())
            .insert_header("x-page", page.to_string().as_str())
            .insert_header("x-per-page", PAGE.to_string().as_str())
            .insert_header(
                "x-next-page",
                if more {
                    (page + 1).to_string()
                } else {
                    String::new()
                }
                .as_str(),
            )
            .insert_header("x-total", total.to_string().as_str())
            .insert_header("x-total-pages", total_pages.to_string().as_str())
            .set_body_json(issues)
    }

    fn issue_path(&self, n: u64) -> String {
        format!("{}/{n}", self.list_path())
    }

    fn deleted(&self) -> ResponseTemplate {
        ResponseTemplate::new(404)
            .insert_header("content-type", "application/json")
            .set_body_string(r#"{"message":"404 Not found"}"#)
    }

    fn error(&self, status: u16) -> ResponseTemplate {
        let (body, kind) = match status {
            401 => (fixture("gitlab/error-401.json"), "application/json"),
            403 => (fixture("gitlab/error-403-scope.json"), "application/json"),
            404 => (fixture("gitlab/error-404-project.json"), "application/json"),
            429 => (fixture("gitlab/error-429.txt"), "text/plain"),
            _ => (fixture("gitlab/error-500.json"), "application/json"),
        };
        ResponseTemplate::new(status)
            .insert_header("content-type", kind)
            .set_body_string(body)
    }

    fn says(&self, status: u16) -> &'static str {
        match status {
            401 => "401 Unauthorized",
            403 => "insufficient_scope",
            404 => "404 Project Not Found",
            _ => "",
        }
    }
}

conformance_cases!(super::GitLab);
