//! Jira Cloud REST v3: the issues of one project (`project_key` = `OPS`).
//!
//! - `GET /rest/api/3/search/jql?jql=...&fields=...&maxResults=100`: the
//!   enhanced search. It returns only issue ids unless `fields` names what we
//!   map, so it always does.
//! - JQL: `project = "OPS" ORDER BY updated ASC`; incrementally
//!   `project = "OPS" AND updated >= "-Nm" ORDER BY updated ASC`. JQL dates
//!   have minute granularity and are read in the Jira user's time zone, which
//!   we do not know; a relative time ("N minutes ago", N = whole minutes from
//!   the cursor to now rounded up, plus one for clock skew) needs neither. The
//!   overlap it brings back is skipped by the [`Syncer`](super::Syncer).
//! - Pages: the answer is `{"issues": [...], "nextPageToken": "...",
//!   "isLast": false}`; the next page is the same URL plus `nextPageToken`.
//!   The last page has `isLast: true` and no token. There is no total.
//! - Auth: the token variable holds `email:api_token` for Jira Cloud, sent as
//!   `Authorization: Basic base64(email:api_token)`; a value without `:` is a
//!   bearer token (Data Center personal access token, OAuth).
//! - Fields: `summary`, `description` (Atlassian Document Format in v3,
//!   flattened to text with task items as `- [ ]`/`- [x]` lines),
//!   `status.statusCategory.key` (`done` is closed), `labels`, `created`,
//!   `updated`, `resolutiondate` (the close time; `statuscategorychangedate`
//!   when a workflow closes without a resolution), `parent.key`.
//! - Estimate: `estimate_field` names the field, by default
//!   `customfield_10016` (story points, a number or null);
//!   `timeoriginalestimate` (seconds) becomes hours; `label:PREFIX` reads a
//!   label such as `size:3`, as for GitHub.
//! - Write-back: `POST /rest/api/3/issue` with `{"fields": {project: {key},
//!   parent: {key}, summary, issuetype: {name: "Sub-task"}, description}}`,
//!   the description as Atlassian Document Format, one paragraph per line.
//!   The estimate is sent only as a label (`estimate_field` `label:PREFIX`):
//!   story points and time estimates are often not on a sub-task's create
//!   screen, and Jira refuses a field that is not. Jira answers 201 with only
//!   `{id, key, self}`, so the item is built from the fields sent and the
//!   key, with the URL `{base_url}/browse/{key}`.

use base64::Engine as _;
use chrono::Datelike;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use serde_json::Value;

use super::github::estimate_from_labels;
use super::http::Fetched;
use super::{
    Connector, PAGE_SIZE, Page, RateLimit, SyncError, header_value, join_url, parse_json,
    parse_time, short_number,
};
use crate::domain::{Item, ItemState, RemovalReason, Source, Time, item_key};

/// The Jira connector.
pub struct Jira;

/// The estimate field of a source whose `estimate_field` is empty.
pub const DEFAULT_ESTIMATE_FIELD: &str = "customfield_10016";

/// The fields every search asks for, before the estimate field.
const FIELDS: &str = concat!(
    "summary,description,status,labels,created,updated,",
    "resolutiondate,statuscategorychangedate,parent,issuetype,votes"
);

const NEXT_PAGE_TOKEN: &str = "nextPageToken";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SearchResults {
    issues: Vec<Issue>,
    next_page_token: Option<String>,
    is_last: Option<bool>,
}

/// The answer to a create.
#[derive(Debug, Deserialize)]
struct Created {
    key: String,
}

#[derive(Debug, Deserialize)]
struct Issue {
    key: String,
    #[serde(default)]
    fields: Fields,
}

#[derive(Debug, Deserialize)]
struct Votes {
    #[serde(default, deserialize_with = "super::lenient_count")]
    votes: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
struct Fields {
    summary: Option<String>,
    description: Option<Value>,
    status: Option<Status>,
    #[serde(default)]
    labels: Vec<String>,
    created: Option<String>,
    updated: Option<String>,
    resolutiondate: Option<String>,
    statuscategorychangedate: Option<String>,
    parent: Option<Parent>,
    /// `{"votes": N, "hasVoted": bool, "self": URL}`; absent when voting
    /// is off for the site.
    votes: Option<Votes>,
    /// Every other field, the estimate field among them.
    #[serde(flatten)]
    rest: serde_json::Map<String, Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Status {
    status_category: Option<StatusCategory>,
}

#[derive(Debug, Deserialize)]
struct StatusCategory {
    key: String,
}

#[derive(Debug, Deserialize)]
struct Parent {
    key: String,
}

/// Where a source's estimate comes from.
#[derive(Debug, Clone, PartialEq)]
enum Estimate {
    /// A numeric field (story points).
    Field(String),
    /// `timeoriginalestimate`: seconds, reported in hours.
    Seconds(String),
    /// A label `<prefix><number>`.
    Label(String),
}

impl Estimate {
    fn of(source: &Source) -> Result<Self, SyncError> {
        let f = source.estimate_field.trim();
        if let Some(prefix) = f.strip_prefix("label:") {
            return Ok(Estimate::Label(if prefix.is_empty() {
                "size:".into()
            } else {
                prefix.into()
            }));
        }
        if f.is_empty() {
            return Ok(Estimate::Field(DEFAULT_ESTIMATE_FIELD.into()));
        }
        if !f.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(SyncError::Config {
                source_id: source.id.clone(),
                detail: format!(
                    "estimate_field {f:?} must be a Jira field id (e.g. customfield_10016, timeoriginalestimate) or label:PREFIX"
                ),
                source: None,
            });
        }
        Ok(
            if f == "timeoriginalestimate" || f == "aggregatetimeoriginalestimate" {
                Estimate::Seconds(f.into())
            } else {
                Estimate::Field(f.into())
            },
        )
    }

    /// The field to add to the search, if any.
    fn field(&self) -> Option<&str> {
        match self {
            Estimate::Field(f) | Estimate::Seconds(f) => Some(f),
            Estimate::Label(_) => None,
        }
    }

    fn value(&self, fields: &Fields) -> Option<f64> {
        let n = match self {
            Estimate::Label(prefix) => return estimate_from_labels(&fields.labels, prefix),
            Estimate::Field(f) => number(fields.rest.get(f)?)?,
            Estimate::Seconds(f) => number(fields.rest.get(f)?)? / 3600.0,
        };
        (n.is_finite() && n > 0.0).then_some(n)
    }
}

/// A number field's value: a JSON number, a numeric string, or a select
/// option whose `value` is one.
fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        Value::Object(o) => number(o.get("value")?),
        _ => None,
    }
}

/// `s` as a JQL string literal.
fn jql_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Whole minutes from `since` to `now`, rounded up, plus one: a relative JQL
/// time that reaches back to `since` whatever the user's time zone.
fn minutes_back(since: Time, now: Time) -> i64 {
    let millis = (now - since).num_milliseconds().max(0);
    (millis + 59_999) / 60_000 + 1
}

/// `url` with its `nextPageToken` set to `token`.
fn with_page_token(url: &Url, token: &str) -> Url {
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != NEXT_PAGE_TOKEN)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut next = url.clone();
    next.query_pairs_mut()
        .clear()
        .extend_pairs(pairs)
        .append_pair(NEXT_PAGE_TOKEN, token);
    next
}

impl Connector for Jira {
    fn headers(
        &self,
        source: &Source,
        token: Option<&str>,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, SyncError> {
        let mut h = vec![(ACCEPT, HeaderValue::from_static("application/json"))];
        if let Some(t) = token.map(str::trim) {
            let value = if t.contains(':') {
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(t)
                )
            } else {
                format!("Bearer {t}")
            };
            h.push((AUTHORIZATION, header_value(source, &value)?));
        }
        Ok(h)
    }

    fn first_url(&self, source: &Source, since: Option<Time>, now: Time) -> Result<Url, SyncError> {
        let project = source.project_key.trim();
        if project.is_empty() {
            return Err(SyncError::Config {
                source_id: source.id.clone(),
                detail: "project_key must be the Jira project key (e.g. OPS)".into(),
                source: None,
            });
        }
        let estimate = Estimate::of(source)?;
        let mut jql = format!("project = {}", jql_string(project));
        if let Some(t) = since {
            jql.push_str(&format!(" AND updated >= \"-{}m\"", minutes_back(t, now)));
        }
        jql.push_str(" ORDER BY updated ASC");
        let fields = match estimate.field() {
            Some(f) => format!("{FIELDS},{f}"),
            None => FIELDS.to_string(),
        };
        let mut url = join_url(source, "rest/api/3/search/jql")?;
        url.query_pairs_mut()
            .append_pair("jql", &jql)
            .append_pair("fields", &fields)
            .append_pair("maxResults", &PAGE_SIZE.to_string());
        Ok(url)
    }

    fn issue_url(&self, source: &Source, external_id: &str) -> Result<Option<Url>, SyncError> {
        if external_id.is_empty() || !external_id.contains('-') {
            return Ok(None);
        }
        let mut url = join_url(source, "rest/api/3/issue/")?;
        url.path_segments_mut()
            .map_err(|()| super::github::bad_base(source))?
            .pop_if_empty()
            .push(external_id);
        url.query_pairs_mut().append_pair("fields", "project");
        Ok(Some(url))
    }

    /// Jira answers an old key of a moved issue with the issue under its
    /// new key (in its new project); a deleted issue, or one the token may
    /// not see, is 404.
    fn removal_of(
        &self,
        _source: &Source,
        asked: &Url,
        fetched: &Fetched,
    ) -> Option<(RemovalReason, String)> {
        let v: serde_json::Value = serde_json::from_slice(&fetched.body).ok()?;
        let key = v["key"].as_str()?;
        let asked_key = asked.path_segments()?.next_back()?;
        // A move always gives the issue a new key; the project is not
        // compared, since the source may name it by key, id or name, in
        // any case.
        if key.eq_ignore_ascii_case(asked_key) {
            return None; // still there
        }
        Some((RemovalReason::Moved, format!("moved; now {key}")))
    }

    fn rate_limit(&self, status: StatusCode, headers: &HeaderMap) -> Option<RateLimit> {
        // Jira Cloud's 429 names its reset as an ISO 8601 time, not Unix
        // seconds; it usually sends `Retry-After` too, which wins.
        if status != StatusCode::TOO_MANY_REQUESTS {
            return None;
        }
        let reset = headers.get("x-ratelimit-reset")?.to_str().ok()?;
        parse_time(reset.trim()).map(RateLimit::Until)
    }

    fn parse_page(&self, source: &Source, fetched: &Fetched) -> Result<Page, SyncError> {
        let results: SearchResults = parse_json(source, fetched)?;
        let estimate = Estimate::of(source)?;
        let base = source.base_url.trim_end_matches('/');
        let items = results
            .issues
            .into_iter()
            .map(|i| {
                let f = i.fields;
                let estimate = estimate.value(&f);
                let closed = f
                    .status
                    .as_ref()
                    .and_then(|s| s.status_category.as_ref())
                    .is_some_and(|c| c.key == "done");
                let close_time = closed
                    .then(|| {
                        f.resolutiondate
                            .as_deref()
                            .or(f.statuscategorychangedate.as_deref())
                            .and_then(parse_time)
                    })
                    .flatten();
                Item {
                    source_id: source.id.clone(),
                    url: format!("{base}/browse/{}", i.key),
                    title: f.summary.unwrap_or_default(),
                    body: f
                        .description
                        .as_ref()
                        .map(description_text)
                        .unwrap_or_default(),
                    state: if closed {
                        ItemState::Closed
                    } else {
                        ItemState::Open
                    },
                    estimate,
                    parent_key: f
                        .parent
                        .as_ref()
                        .map(|p| item_key(&source.id, &p.key))
                        .unwrap_or_default(),
                    create_time: f.created.as_deref().and_then(parse_time),
                    update_time: f.updated.as_deref().and_then(parse_time),
                    close_time,
                    votes: f.votes.and_then(|v| v.votes),
                    labels: f.labels,
                    external_id: i.key,
                }
            })
            .collect();
        let next = match results.next_page_token.filter(|t| !t.is_empty()) {
            Some(_) if results.is_last == Some(true) => None,
            Some(token) => {
                let current = fetched
                    .url
                    .query_pairs()
                    .find(|(k, _)| k == NEXT_PAGE_TOKEN)
                    .map(|(_, v)| v.into_owned());
                if current.as_deref() == Some(token.as_str()) {
                    return Err(SyncError::Malformed {
                        source_id: source.id.clone(),
                        url: super::shown_url(&fetched.url),
                        detail: "the tracker gave the same nextPageToken again".into(),
                        source: None,
                    });
                }
                Some(with_page_token(&fetched.url, &token))
            }
            None => None,
        };
        Ok(Page {
            items,
            next,
            expected_total: None,
            removed: Vec::new(),
        })
    }

    fn create_issue_request(
        &self,
        source: &Source,
        parent: &Item,
        title: &str,
        body: &str,
        estimate: Option<f64>,
    ) -> Result<(Url, Value), SyncError> {
        let project = source.project_key.trim();
        if project.is_empty() {
            return Err(SyncError::Config {
                source_id: source.id.clone(),
                detail: "project_key must be the Jira project key (e.g. OPS)".into(),
                source: None,
            });
        }
        let mut fields = serde_json::json!({
            "project": { "key": project },
            "parent": { "key": parent.external_id },
            "summary": title,
            "issuetype": { "name": SUBTASK_TYPE },
            "description": adf_paragraphs(body),
        });
        if let (Estimate::Label(prefix), Some(e)) = (
            Estimate::of(source)?,
            estimate.filter(|e| e.is_finite() && *e > 0.0),
        ) {
            fields["labels"] = serde_json::json!([format!("{prefix}{}", short_number(e))]);
        }
        Ok((
            join_url(source, "rest/api/3/issue")?,
            serde_json::json!({ "fields": fields }),
        ))
    }

    fn parse_created(
        &self,
        source: &Source,
        request: &Value,
        fetched: &Fetched,
    ) -> Result<Item, SyncError> {
        let created: Created = parse_json(source, fetched)?;
        let sent = &request["fields"];
        let labels: Vec<String> = sent["labels"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l.as_str().map(str::to_string))
            .collect();
        let estimate = match Estimate::of(source)? {
            Estimate::Label(prefix) => estimate_from_labels(&labels, &prefix),
            Estimate::Field(_) | Estimate::Seconds(_) => None,
        };
        Ok(Item {
            source_id: source.id.clone(),
            url: format!(
                "{}/browse/{}",
                source.base_url.trim_end_matches('/'),
                created.key
            ),
            title: sent["summary"].as_str().unwrap_or_default().to_string(),
            body: description_text(&sent["description"]),
            state: ItemState::Open,
            labels,
            estimate,
            parent_key: sent["parent"]["key"]
                .as_str()
                .map(|k| item_key(&source.id, k))
                .unwrap_or_default(),
            create_time: None,
            update_time: None,
            close_time: None,
            votes: None,
            external_id: created.key,
        })
    }
}

/// The issue type of the sub-tasks write-back creates (Jira's default name).
const SUBTASK_TYPE: &str = "Sub-task";

/// Plain text as an Atlassian Document Format document: one paragraph per
/// non-empty line (ADF text nodes may not be empty).
pub fn adf_paragraphs(text: &str) -> Value {
    let content: Vec<Value> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::json!({"type": "paragraph", "content": [{"type": "text", "text": l}]}))
        .collect();
    serde_json::json!({ "type": "doc", "version": 1, "content": content })
}

/// An issue description as plain text: v3 sends Atlassian Document Format,
/// v2 and Data Center a string.
fn description_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(_) => adf_to_text(v),
        _ => String::new(),
    }
}

/// Atlassian Document Format as plain text: text nodes joined, one line per
/// paragraph, heading and list item (`- ` or `1. `), task items as
/// `- [ ] text` / `- [x] text` so that checklists parse, quotes as `> `.
pub fn adf_to_text(doc: &Value) -> String {
    let mut out = String::new();
    render(doc, &mut out);
    let lines: Vec<&str> = out.lines().map(str::trim_end).collect();
    lines.join("\n").trim_matches('\n').to_string()
}

fn render_children(node: &Value, out: &mut String) {
    if let Some(children) = node["content"].as_array() {
        for c in children {
            render(c, out);
        }
    }
}

/// Starts a new line unless `out` is at the start of one.
fn start_line(out: &mut String) {
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
}

/// Appends the lines of `inner`, the first after `first`, the others after
/// `rest`.
fn push_prefixed(out: &mut String, inner: &str, first: &str, rest: &str) {
    start_line(out);
    for (i, line) in inner.trim_matches('\n').lines().enumerate() {
        if line.trim().is_empty() {
            out.push('\n');
            continue;
        }
        out.push_str(if i == 0 { first } else { rest });
        out.push_str(line);
        out.push('\n');
    }
}

fn render(node: &Value, out: &mut String) {
    let attrs = &node["attrs"];
    let attr = |k: &str| attrs[k].as_str().unwrap_or_default();
    match node["type"].as_str().unwrap_or_default() {
        "text" => out.push_str(node["text"].as_str().unwrap_or_default()),
        "hardBreak" => out.push('\n'),
        "mention" | "status" | "placeholder" => out.push_str(attr("text")),
        "emoji" => out.push_str(if attr("text").is_empty() {
            attr("shortName")
        } else {
            attr("text")
        }),
        "inlineCard" => out.push_str(attr("url")),
        "blockCard" | "embedCard" => {
            start_line(out);
            out.push_str(attr("url"));
            out.push('\n');
        }
        "date" => {
            let ms = attrs["timestamp"]
                .as_str()
                .and_then(|s| s.parse::<i64>().ok())
                .or_else(|| attrs["timestamp"].as_i64());
            if let Some(t) = ms.and_then(chrono::DateTime::from_timestamp_millis) {
                out.push_str(&format!("{:04}-{:02}-{:02}", t.year(), t.month(), t.day()));
            }
        }
        "paragraph" | "heading" | "codeBlock" => {
            start_line(out);
            render_children(node, out);
            out.push('\n');
        }
        "rule" => {
            start_line(out);
            out.push_str("---\n");
        }
        "bulletList" | "orderedList" => {
            let ordered = node["type"] == "orderedList";
            let mut n = attrs["order"].as_u64().unwrap_or(1);
            for item in node["content"].as_array().into_iter().flatten() {
                let mut inner = String::new();
                render_children(item, &mut inner);
                if inner.trim().is_empty() {
                    continue;
                }
                let marker = if ordered {
                    format!("{n}. ")
                } else {
                    "- ".to_string()
                };
                push_prefixed(out, &inner, &marker, &" ".repeat(marker.len()));
                n += 1;
            }
        }
        "taskItem" | "blockTaskItem" => {
            let mut inner = String::new();
            render_children(node, &mut inner);
            let text = inner.split_whitespace().collect::<Vec<_>>().join(" ");
            start_line(out);
            out.push_str(if attr("state") == "DONE" {
                "- [x] "
            } else {
                "- [ ] "
            });
            out.push_str(&text);
            out.push('\n');
        }
        "blockquote" => {
            let mut inner = String::new();
            render_children(node, &mut inner);
            push_prefixed(out, &inner, "> ", "> ");
        }
        "tableRow" => {
            let cells: Vec<String> = node["content"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|cell| {
                    let mut inner = String::new();
                    render_children(cell, &mut inner);
                    inner.split_whitespace().collect::<Vec<_>>().join(" ")
                })
                .collect();
            start_line(out);
            out.push_str(&cells.join(" | "));
            out.push('\n');
        }
        // doc, taskList, panel, expand, table, layouts, media captions, and
        // node types this code does not know: their content.
        _ => render_children(node, out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{LinkRules, TrackerKind, parse_checklist};
    use chrono::{DateTime, Utc};
    use reqwest::StatusCode;
    use reqwest::header::HeaderMap;

    #[test]
    fn a_429_names_its_reset_as_an_iso_time() {
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-reset", "2026-12-04T10:15:00Z".parse().unwrap());
        let want = DateTime::parse_from_rfc3339("2026-12-04T10:15:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            Jira.rate_limit(StatusCode::TOO_MANY_REQUESTS, &h),
            Some(RateLimit::Until(want))
        );
        // Only a 429 is Jira's rate limit; a 200 with the header is not.
        assert_eq!(Jira.rate_limit(StatusCode::OK, &h), None);
        assert_eq!(
            Jira.rate_limit(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new()),
            None
        );
    }
    use serde_json::json;

    fn source(estimate_field: &str) -> Source {
        let now = Utc::now();
        Source {
            id: "ops".into(),
            kind: TrackerKind::Jira,
            base_url: "https://acme.atlassian.net".into(),
            project_key: "OPS".into(),
            token_env: "JIRA_TOKEN".into(),
            link_rules: LinkRules::default(),
            estimate_field: estimate_field.into(),
            create_time: now,
            update_time: now,
        }
    }

    fn t(s: &str) -> Time {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn jql(url: &Url) -> String {
        url.query_pairs()
            .find(|(k, _)| k == "jql")
            .map(|(_, v)| v.into_owned())
            .unwrap()
    }

    fn fetched(url: &Url, body: Value) -> Fetched {
        Fetched {
            url: url.clone(),
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: serde_json::to_vec(&body).unwrap(),
        }
    }

    #[test]
    fn email_and_api_token_is_basic_auth_and_anything_else_a_bearer_token() {
        let s = source("");
        let h = Jira
            .headers(&s, Some("me@example.com:jira-api-token\n"))
            .unwrap();
        let auth = &h.iter().find(|(k, _)| k == AUTHORIZATION).unwrap().1;
        assert_eq!(
            auth.to_str().unwrap(),
            "Basic bWVAZXhhbXBsZS5jb206amlyYS1hcGktdG9rZW4="
        );
        assert!(auth.is_sensitive());
        let h = Jira.headers(&s, Some("NjE0MzIxOkRDLXBhdA")).unwrap();
        let auth = &h.iter().find(|(k, _)| k == AUTHORIZATION).unwrap().1;
        assert_eq!(auth.to_str().unwrap(), "Bearer NjE0MzIxOkRDLXBhdA");
        let h = Jira.headers(&s, None).unwrap();
        assert_eq!(h.len(), 1, "anonymous: Accept only");
        assert!(Jira.headers(&s, Some("bad\u{1}token")).is_err());
    }

    #[test]
    fn the_search_asks_for_the_fields_it_maps_and_reaches_back_to_the_cursor() {
        let now = t("2026-11-23T16:40:30Z");
        let url = Jira.first_url(&source(""), None, now).unwrap();
        assert_eq!(url.path(), "/rest/api/3/search/jql");
        assert_eq!(jql(&url), "project = \"OPS\" ORDER BY updated ASC");
        let q: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert!(q.contains(&("fields".into(), format!("{FIELDS},customfield_10016"))));
        assert!(q.contains(&("maxResults".into(), "100".into())));

        let cases = [
            ("2026-11-23T16:39:00Z", 3), // 1.5 minutes: 2, plus 1
            ("2026-11-23T16:38:30Z", 3), // exactly 2 minutes
            ("2026-11-23T16:40:30Z", 1), // now
            ("2026-11-23T16:45:00Z", 1), // a cursor ahead of our clock
            ("2026-11-22T16:40:30Z", 1441),
        ];
        for (since, minutes) in cases {
            let url = Jira.first_url(&source(""), Some(t(since)), now).unwrap();
            assert_eq!(
                jql(&url),
                format!("project = \"OPS\" AND updated >= \"-{minutes}m\" ORDER BY updated ASC"),
                "since {since}"
            );
        }

        let mut odd = source("timeoriginalestimate");
        odd.project_key = "A\"B\\".into();
        let url = Jira.first_url(&odd, None, now).unwrap();
        assert_eq!(jql(&url), "project = \"A\\\"B\\\\\" ORDER BY updated ASC");
        assert!(
            url.query_pairs()
                .any(|(k, v)| k == "fields" && v.ends_with(",timeoriginalestimate"))
        );
        let url = Jira.first_url(&source("label:pts:"), None, now).unwrap();
        assert!(url.query_pairs().any(|(k, v)| k == "fields" && v == FIELDS));
        assert!(Jira.first_url(&source("Story Points"), None, now).is_err());
        let mut empty = source("");
        empty.project_key = " ".into();
        assert!(Jira.first_url(&empty, None, now).is_err());
    }

    #[test]
    fn the_next_page_is_the_first_url_plus_the_token() {
        let s = source("");
        let first = Jira.first_url(&s, None, Utc::now()).unwrap();
        let page = Jira
            .parse_page(
                &s,
                &fetched(
                    &first,
                    json!({"issues": [], "nextPageToken": "CAEaAggD", "isLast": false}),
                ),
            )
            .unwrap();
        let second = page.next.unwrap();
        let q: Vec<(String, String)> = second.query_pairs().into_owned().collect();
        let mut want: Vec<(String, String)> = first.query_pairs().into_owned().collect();
        want.push(("nextPageToken".into(), "CAEaAggD".into()));
        assert_eq!(q, want);

        // The token replaces the previous one.
        let page = Jira
            .parse_page(
                &s,
                &fetched(&second, json!({"issues": [], "nextPageToken": "CAEaAggG"})),
            )
            .unwrap();
        let third = page.next.unwrap();
        let tokens: Vec<String> = third
            .query_pairs()
            .filter(|(k, _)| k == "nextPageToken")
            .map(|(_, v)| v.into_owned())
            .collect();
        assert_eq!(tokens, ["CAEaAggG"]);

        // The same token again would loop forever.
        assert!(matches!(
            Jira.parse_page(
                &s,
                &fetched(&third, json!({"issues": [], "nextPageToken": "CAEaAggG"}))
            ),
            Err(SyncError::Malformed { .. })
        ));
        // The last page: no token, or isLast.
        for body in [
            json!({"issues": [], "isLast": true}),
            json!({"issues": [], "nextPageToken": "x", "isLast": true}),
            json!({"issues": [], "nextPageToken": ""}),
        ] {
            assert!(
                Jira.parse_page(&s, &fetched(&first, body))
                    .unwrap()
                    .next
                    .is_none()
            );
        }
        // An answer without issues is not a page.
        assert!(
            Jira.parse_page(&s, &fetched(&first, json!({"errorMessages": []})))
                .is_err()
        );
    }

    #[test]
    fn estimates_come_from_the_named_field() {
        let issue = |fields: Value| json!({"issues": [{"id": "1", "key": "OPS-1", "fields": fields}], "isLast": true});
        let estimate = |field: &str, fields: Value| {
            let s = source(field);
            let url = Jira.first_url(&s, None, Utc::now()).unwrap();
            Jira.parse_page(&s, &fetched(&url, issue(fields)))
                .unwrap()
                .items[0]
                .estimate
        };
        assert_eq!(estimate("", json!({"customfield_10016": 5.0})), Some(5.0));
        assert_eq!(estimate("", json!({"customfield_10016": null})), None);
        assert_eq!(estimate("", json!({"customfield_10016": 0})), None);
        assert_eq!(estimate("", json!({})), None);
        assert_eq!(
            estimate("customfield_10026", json!({"customfield_10026": "2.5"})),
            Some(2.5)
        );
        assert_eq!(
            estimate(
                "customfield_10050",
                json!({"customfield_10050": {"value": "8", "id": "10021"}})
            ),
            Some(8.0)
        );
        assert_eq!(
            estimate(
                "timeoriginalestimate",
                json!({"timeoriginalestimate": 5400})
            ),
            Some(1.5)
        );
        assert_eq!(
            estimate("label:size:", json!({"labels": ["size:3", "ux"]})),
            Some(3.0)
        );
    }

    #[test]
    fn adf_becomes_text_with_checklists() {
        let doc = json!({
            "type": "doc",
            "version": 1,
            "content": [
                {"type": "heading", "attrs": {"level": 2}, "content": [{"type": "text", "text": "Why"}]},
                {"type": "paragraph", "content": [
                    {"type": "text", "text": "Hypothesis", "marks": [{"type": "strong"}]},
                    {"type": "text", "text": ": H-2 (0.5)"},
                    {"type": "hardBreak"},
                    {"type": "text", "text": "asked by "},
                    {"type": "mention", "attrs": {"id": "5b10ac8d82e05b22cc7d4ef5", "text": "@Jane Doe"}},
                    {"type": "text", "text": " "},
                    {"type": "emoji", "attrs": {"shortName": ":tada:", "text": "🎉"}},
                    {"type": "text", "text": " by "},
                    {"type": "date", "attrs": {"timestamp": "1795305600000"}}
                ]},
                {"type": "bulletList", "content": [
                    {"type": "listItem", "content": [
                        {"type": "paragraph", "content": [{"type": "text", "text": "see "}, {"type": "inlineCard", "attrs": {"url": "https://example.com/spec"}}]},
                        {"type": "orderedList", "attrs": {"order": 3}, "content": [
                            {"type": "listItem", "content": [{"type": "paragraph", "content": [{"type": "text", "text": "third"}]}]},
                            {"type": "listItem", "content": [{"type": "paragraph", "content": [{"type": "text", "text": "fourth"}]}]}
                        ]}
                    ]}
                ]},
                {"type": "taskList", "attrs": {"localId": "a1"}, "content": [
                    {"type": "taskItem", "attrs": {"localId": "t1", "state": "TODO"}, "content": [{"type": "text", "text": "merge steps"}]},
                    {"type": "taskItem", "attrs": {"localId": "t2", "state": "DONE"}, "content": [{"type": "text", "text": "measure "}, {"type": "text", "text": "drop-off", "marks": [{"type": "em"}]}]},
                    {"type": "taskList", "attrs": {"localId": "a2"}, "content": [
                        {"type": "taskItem", "attrs": {"localId": "t3", "state": "TODO"}, "content": [{"type": "text", "text": "nested"}]}
                    ]}
                ]},
                {"type": "blockquote", "content": [{"type": "paragraph", "content": [{"type": "text", "text": "quoted"}]}]},
                {"type": "mediaSingle", "content": [{"type": "media", "attrs": {"id": "abc", "type": "file", "collection": ""}}]},
                {"type": "rule"},
                {"type": "table", "content": [
                    {"type": "tableRow", "content": [
                        {"type": "tableHeader", "content": [{"type": "paragraph", "content": [{"type": "text", "text": "step"}]}]},
                        {"type": "tableHeader", "content": [{"type": "paragraph", "content": [{"type": "text", "text": "drop"}]}]}
                    ]}
                ]},
                {"type": "codeBlock", "attrs": {"language": "sql"}, "content": [{"type": "text", "text": "select 1;"}]},
                {"type": "paragraph"}
            ]
        });
        let text = adf_to_text(&doc);
        assert_eq!(
            text,
            "Why\nHypothesis: H-2 (0.5)\nasked by @Jane Doe 🎉 by 2026-11-22\n- see https://example.com/spec\n  3. third\n  4. fourth\n- [ ] merge steps\n- [x] measure drop-off\n- [ ] nested\n> quoted\n---\nstep | drop\nselect 1;"
        );
        let tasks: Vec<(String, bool)> = parse_checklist(&text)
            .into_iter()
            .map(|t| (t.text, t.done))
            .collect();
        assert_eq!(
            tasks,
            [
                ("merge steps".to_string(), false),
                ("measure drop-off".into(), true),
                ("nested".into(), false)
            ]
        );
        assert_eq!(description_text(&Value::Null), "");
        assert_eq!(description_text(&json!("h1. wiki text")), "h1. wiki text");
        assert_eq!(
            adf_to_text(&json!({"type": "doc", "version": 1, "content": []})),
            ""
        );
    }
}
