//! Redmine REST: the issues of one project (`project_key` = the project's
//! identifier, e.g. `shop`, or its numeric id).
//!
//! - `GET /issues.json?project_id=KEY&status_id=*&sort=updated_on&limit=100&offset=N&updated_on=%3E%3D2024-01-02T03:04:05Z`:
//!   without `status_id=*` only open issues come back. `sort=updated_on` is
//!   ascending (Redmine breaks ties by id). The `updated_on` filter `>=` takes
//!   a UTC timestamp and is inclusive to the second. Issues of subprojects
//!   come too, as in Redmine's own issue list of the project.
//! - Pages by offset: the answer says `total_count`, `offset` and `limit`
//!   (the server caps `limit` at 100); the next page is the current URL with
//!   `offset` + `limit` while that is below `total_count`.
//! - Auth: `X-Redmine-API-Key: KEY`, the user's API access key (an
//!   administrator must enable the REST API).
//! - Who the key is: Redmine answers a wrong key (or any key, with the REST
//!   API disabled) as its anonymous user, so a public project syncs "fine"
//!   and only a write-back fails. `GET /users/current.json` answers 401 for
//!   the anonymous user (403 with the REST API disabled) and the user
//!   otherwise: it is asked when a source with a key is added or its
//!   credentials change, and before a sync (see [`super::identity`]).
//! - State: `status.is_closed` (recent Redmine, 5.1 on). Older Redmine does
//!   not send it; then an issue is closed when it has a `closed_on` and its
//!   status is not one of Redmine's default open ones (New, In Progress,
//!   Resolved, Feedback): `closed_on` alone is not enough, since Redmine keeps
//!   it when an issue is reopened. Only closed issues get a close time.
//! - Labels: Redmine issues have none, so the tracker name (`Bug`, `Feature`)
//!   and the category name, when set, stand in as labels for link rules and
//!   filters. Body-line link rules read the description.
//! - Parent: `parent.id` becomes the parent key `SOURCE/ID`.
//! - Estimate: `estimate_field` empty or `estimated_hours` reads
//!   `estimated_hours`; `cf_ID` (e.g. `cf_12`) reads custom field ID, whose
//!   value Redmine sends as a string (`"5"`, `""` when unset). Empty,
//!   non-numeric and non-positive values leave the issue unestimated; any
//!   other `estimate_field` fails the sync before its first request.
//! - Write-back: `POST /issues.json` with `{"issue": {project_id, subject,
//!   description, parent_issue_id, estimated_hours}}` (or the estimate as
//!   `custom_fields: [{id, value}]` for `cf_ID`); Redmine answers 201 with
//!   `{"issue": {...}}`, mapped as a sync maps it.

use reqwest::Url;
use reqwest::header::{ACCEPT, HeaderName, HeaderValue};
use serde::Deserialize;

use super::http::Fetched;
use super::{
    Connector, PAGE_SIZE, Page, SyncError, header_value, join_url, parse_json, parse_time,
    short_number,
};
use crate::domain::{Item, ItemState, RemovalReason, Source, Time};

/// The Redmine connector.
pub struct Redmine;

#[derive(Debug, Deserialize)]
struct IssueList {
    issues: Vec<Issue>,
    total_count: Option<u64>,
    offset: Option<u64>,
    limit: Option<u64>,
}

/// `GET /users/current.json`: the user the key authenticates as. Only the
/// login is read; the answer also holds the user's API key, which is never
/// kept.
#[derive(Debug, Deserialize)]
struct CurrentUser {
    user: UserLogin,
}

#[derive(Debug, Deserialize)]
struct UserLogin {
    login: String,
}

/// The answer to a create: the issue, wrapped.
#[derive(Debug, Deserialize)]
struct Created {
    issue: Issue,
}

#[derive(Debug, Deserialize)]
struct Issue {
    id: u64,
    subject: String,
    description: Option<String>,
    status: Option<Status>,
    tracker: Option<Named>,
    category: Option<Named>,
    parent: Option<IdRef>,
    estimated_hours: Option<f64>,
    #[serde(default)]
    custom_fields: Vec<CustomField>,
    created_on: Option<String>,
    updated_on: Option<String>,
    closed_on: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Status {
    name: String,
    is_closed: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct Named {
    name: String,
}

#[derive(Debug, Deserialize)]
struct IdRef {
    id: u64,
}

#[derive(Debug, Deserialize)]
struct CustomField {
    id: u64,
    /// A string for single-value fields, an array for multi-value ones.
    #[serde(default)]
    value: serde_json::Value,
}

/// Where a source's estimates come from.
#[derive(Debug, Clone, Copy, PartialEq)]
enum EstimateField {
    EstimatedHours,
    CustomField(u64),
}

impl EstimateField {
    fn of(source: &Source) -> Result<Self, SyncError> {
        let f = source.estimate_field.trim();
        if f.is_empty() || f == "estimated_hours" {
            return Ok(EstimateField::EstimatedHours);
        }
        match f.strip_prefix("cf_").map(str::parse::<u64>) {
            Some(Ok(id)) => Ok(EstimateField::CustomField(id)),
            _ => Err(SyncError::Config {
                source_id: source.id.clone(),
                detail: format!(
                    "estimate_field {:?} must be empty, estimated_hours or cf_ID (a custom field id, e.g. cf_12) for Redmine",
                    source.estimate_field
                ),
                source: None,
            }),
        }
    }
}

/// A positive, finite estimate.
fn positive(n: f64) -> Option<f64> {
    (n.is_finite() && n > 0.0).then_some(n)
}

/// The estimate a custom field value carries: Redmine sends `"5"`, `"2.5"`
/// or `""`.
fn custom_value_estimate(value: &serde_json::Value) -> Option<f64> {
    match value {
        serde_json::Value::String(s) => s.trim().parse().ok().and_then(positive),
        serde_json::Value::Number(n) => n.as_f64().and_then(positive),
        _ => None,
    }
}

/// Statuses Redmine creates as open; with `closed_on`, any other counts as
/// closed on a Redmine too old to say `is_closed`.
const DEFAULT_OPEN_STATUSES: [&str; 4] = ["new", "in progress", "resolved", "feedback"];

fn is_closed(status: Option<&Status>, closed_on: Option<Time>) -> bool {
    match status.and_then(|s| s.is_closed) {
        Some(closed) => closed,
        None => {
            closed_on.is_some()
                && !status.is_some_and(|s| {
                    DEFAULT_OPEN_STATUSES.contains(&s.name.trim().to_lowercase().as_str())
                })
        }
    }
}

/// The page after `current`: its URL with `offset` moved on by the page's
/// limit, while items remain.
fn next_url(current: &Url, list: &IssueList) -> Option<Url> {
    if list.issues.is_empty() {
        return None;
    }
    let offset = list
        .offset
        .or_else(|| query_u64(current, "offset"))
        .unwrap_or(0);
    let limit = list
        .limit
        .or_else(|| query_u64(current, "limit"))
        .filter(|&l| l > 0)
        .unwrap_or(PAGE_SIZE as u64);
    let next = offset + limit;
    let more = match list.total_count {
        Some(total) => next < total,
        // No total (a proxy or plugin dropped it): a full page may have more.
        None => list.issues.len() as u64 >= limit,
    };
    if !more {
        return None;
    }
    let pairs: Vec<(String, String)> = current
        .query_pairs()
        .filter(|(k, _)| k != "offset")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut url = current.clone();
    url.query_pairs_mut()
        .clear()
        .extend_pairs(pairs)
        .append_pair("offset", &next.to_string());
    Some(url)
}

fn query_u64(url: &Url, key: &str) -> Option<u64> {
    url.query_pairs()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| v.parse().ok())
}

impl Connector for Redmine {
    fn headers(
        &self,
        source: &Source,
        token: Option<&str>,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, SyncError> {
        let mut h = vec![(ACCEPT, HeaderValue::from_static("application/json"))];
        if let Some(t) = token {
            h.push((
                HeaderName::from_static("x-redmine-api-key"),
                header_value(source, t)?,
            ));
        }
        Ok(h)
    }

    fn identity_url(&self, source: &Source) -> Result<Option<Url>, SyncError> {
        join_url(source, "users/current.json").map(Some)
    }

    fn parse_identity(&self, source: &Source, fetched: &Fetched) -> Result<String, SyncError> {
        let current: CurrentUser = parse_json(source, fetched)?;
        Ok(current.user.login)
    }

    fn first_url(
        &self,
        source: &Source,
        since: Option<Time>,
        _now: Time,
    ) -> Result<Url, SyncError> {
        let project = project(source)?;
        EstimateField::of(source)?;
        let mut url = join_url(source, "issues.json")?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("project_id", project)
                .append_pair("status_id", "*")
                .append_pair("sort", "updated_on")
                .append_pair("limit", &PAGE_SIZE.to_string())
                .append_pair("offset", "0");
            if let Some(t) = since {
                q.append_pair(
                    "updated_on",
                    &format!(">={}", t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                );
            }
        }
        Ok(url)
    }

    fn issue_url(&self, source: &Source, external_id: &str) -> Result<Option<Url>, SyncError> {
        if external_id.is_empty() || !external_id.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(None);
        }
        join_url(source, &format!("issues/{external_id}.json")).map(Some)
    }

    /// The source's listing (its project and subprojects, every status)
    /// narrowed to one issue with Redmine's `issue_id` filter.
    fn listed_issue_url(
        &self,
        source: &Source,
        external_id: &str,
    ) -> Result<Option<Url>, SyncError> {
        if external_id.is_empty() || !external_id.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(None);
        }
        let mut url = join_url(source, "issues.json")?;
        url.query_pairs_mut()
            .append_pair("project_id", project(source)?)
            .append_pair("status_id", "*")
            .append_pair("issue_id", external_id);
        Ok(Some(url))
    }

    /// Redmine has no deletion feed: a deleted issue is 404. One the
    /// project's listing left out but that still answers has moved to a
    /// project outside it; the answer names that project.
    fn removal_of(
        &self,
        _source: &Source,
        _asked: &Url,
        fetched: &Fetched,
    ) -> Option<(RemovalReason, String)> {
        let v: serde_json::Value = serde_json::from_slice(&fetched.body).unwrap_or_default();
        let project = &v["issue"]["project"];
        Some((
            RemovalReason::Moved,
            match (project["name"].as_str(), project["id"].as_u64()) {
                (Some(name), Some(id)) => format!("now in project {name:?} (id {id})"),
                (Some(name), None) => format!("now in project {name:?}"),
                _ => "now in another project".into(),
            },
        ))
    }

    fn parse_page(&self, source: &Source, fetched: &Fetched) -> Result<Page, SyncError> {
        let list: IssueList = parse_json(source, fetched)?;
        let estimate_field = EstimateField::of(source)?;
        let next = next_url(&fetched.url, &list);
        let expected_total = list.total_count;
        let items = list
            .issues
            .into_iter()
            .map(|i| issue_item(source, estimate_field, i))
            .collect();
        Ok(Page {
            items,
            next,
            expected_total,
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
    ) -> Result<(Url, serde_json::Value), SyncError> {
        let project = project(source)?;
        let estimate_field = EstimateField::of(source)?;
        let parent_id: u64 = parent.external_id.parse().map_err(|e| SyncError::Config {
            source_id: source.id.clone(),
            detail: format!(
                "item {:?} is not a Redmine issue (its id is not a number), so it cannot be a parent",
                parent.key()
            ),
            source: Some(Box::new(e)),
        })?;
        let mut issue = serde_json::json!({
            "project_id": project,
            "subject": title,
            "description": body,
            "parent_issue_id": parent_id,
        });
        if let Some(e) = estimate.and_then(positive) {
            match estimate_field {
                EstimateField::EstimatedHours => issue["estimated_hours"] = e.into(),
                EstimateField::CustomField(id) => {
                    issue["custom_fields"] =
                        serde_json::json!([{ "id": id, "value": short_number(e) }])
                }
            }
        }
        Ok((
            join_url(source, "issues.json")?,
            serde_json::json!({ "issue": issue }),
        ))
    }

    fn parse_created(
        &self,
        source: &Source,
        _request: &serde_json::Value,
        fetched: &Fetched,
    ) -> Result<Item, SyncError> {
        let created: Created = parse_json(source, fetched)?;
        Ok(issue_item(
            source,
            EstimateField::of(source)?,
            created.issue,
        ))
    }
}

/// The project identifier or id of a source, checked.
fn project(source: &Source) -> Result<&str, SyncError> {
    let project = source.project_key.trim();
    if project.is_empty() || project.contains(['/', ',', '?', '#']) {
        return Err(SyncError::Config {
            source_id: source.id.clone(),
            detail: format!(
                "project_key {:?} must be a Redmine project identifier or id",
                source.project_key
            ),
            source: None,
        });
    }
    Ok(project)
}

/// One issue as an item.
fn issue_item(source: &Source, estimate_field: EstimateField, i: Issue) -> Item {
    let base = source.base_url.trim_end_matches('/');
    let closed_on = i.closed_on.as_deref().and_then(parse_time);
    let closed = is_closed(i.status.as_ref(), closed_on);
    let labels: Vec<String> = [i.tracker, i.category]
        .into_iter()
        .flatten()
        .map(|n| n.name)
        .filter(|n| !n.trim().is_empty())
        .collect();
    let estimate = match estimate_field {
        EstimateField::EstimatedHours => i.estimated_hours.and_then(positive),
        EstimateField::CustomField(id) => i
            .custom_fields
            .iter()
            .find(|f| f.id == id)
            .and_then(|f| custom_value_estimate(&f.value)),
    };
    Item {
        source_id: source.id.clone(),
        external_id: i.id.to_string(),
        title: i.subject,
        body: i.description.unwrap_or_default(),
        url: format!("{base}/issues/{}", i.id),
        state: if closed {
            ItemState::Closed
        } else {
            ItemState::Open
        },
        labels,
        estimate,
        parent_key: i
            .parent
            .map(|p| crate::domain::item_key(&source.id, &p.id.to_string()))
            .unwrap_or_default(),
        create_time: i.created_on.as_deref().and_then(parse_time),
        update_time: i.updated_on.as_deref().and_then(parse_time),
        close_time: if closed { closed_on } else { None },
        votes: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(n: usize, total: Option<u64>, offset: Option<u64>, limit: Option<u64>) -> IssueList {
        IssueList {
            issues: (0..n)
                .map(|i| Issue {
                    id: i as u64 + 1,
                    subject: format!("Issue {i}"),
                    description: None,
                    status: None,
                    tracker: None,
                    category: None,
                    parent: None,
                    estimated_hours: None,
                    custom_fields: Vec::new(),
                    created_on: None,
                    updated_on: None,
                    closed_on: None,
                })
                .collect(),
            total_count: total,
            offset,
            limit,
        }
    }

    #[test]
    fn the_next_page_moves_the_offset_and_keeps_the_rest_of_the_query() {
        let url = Url::parse(
            "https://redmine.example.com/issues.json?project_id=shop&status_id=*&sort=updated_on&limit=100&offset=100&updated_on=%3E%3D2024-01-02T03%3A04%3A05Z",
        )
        .unwrap();
        let next = next_url(&url, &list(100, Some(250), Some(100), Some(100))).unwrap();
        let pairs: Vec<(String, String)> = next
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let want: Vec<(String, String)> = [
            ("project_id", "shop"),
            ("status_id", "*"),
            ("sort", "updated_on"),
            ("limit", "100"),
            ("updated_on", ">=2024-01-02T03:04:05Z"),
            ("offset", "200"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(pairs, want);
        assert_eq!(next.path(), "/issues.json");
        // The last page: 200 + 100 reaches the total.
        assert_eq!(
            next_url(&next, &list(50, Some(250), Some(200), Some(100))),
            None
        );
    }

    #[test]
    fn the_server_limit_wins_and_a_missing_total_falls_back_to_full_pages() {
        let url = Url::parse("https://r.example/issues.json?limit=100&offset=0").unwrap();
        // A server capped lower than asked: step by what it used.
        let next = next_url(&url, &list(25, Some(60), Some(0), Some(25))).unwrap();
        assert_eq!(query_u64(&next, "offset"), Some(25));
        // No metadata at all: a full page asks for more, a short one stops.
        let next = next_url(&url, &list(100, None, None, None)).unwrap();
        assert_eq!(query_u64(&next, "offset"), Some(100));
        assert_eq!(next_url(&url, &list(99, None, None, None)), None);
        // An empty page never loops, whatever the total says.
        assert_eq!(
            next_url(&url, &list(0, Some(500), Some(0), Some(100))),
            None
        );
    }

    #[test]
    fn estimates_come_from_estimated_hours_or_a_string_custom_field() {
        let source = |f: &str| Source {
            id: "rm".into(),
            kind: crate::domain::TrackerKind::Redmine,
            base_url: "https://r.example".into(),
            project_key: "shop".into(),
            token_env: String::new(),
            link_rules: Default::default(),
            estimate_field: f.into(),
            create_time: chrono::Utc::now(),
            update_time: chrono::Utc::now(),
        };
        assert_eq!(
            EstimateField::of(&source("")).unwrap(),
            EstimateField::EstimatedHours
        );
        assert_eq!(
            EstimateField::of(&source("estimated_hours")).unwrap(),
            EstimateField::EstimatedHours
        );
        assert_eq!(
            EstimateField::of(&source("cf_12")).unwrap(),
            EstimateField::CustomField(12)
        );
        for bad in ["cf_", "cf_x", "story_points", "label:size:"] {
            let e = EstimateField::of(&source(bad)).unwrap_err().to_string();
            assert!(e.contains(bad) && e.contains("cf_ID"), "{e}");
        }
        use serde_json::json;
        assert_eq!(custom_value_estimate(&json!("5")), Some(5.0));
        assert_eq!(custom_value_estimate(&json!(" 2.5 ")), Some(2.5));
        assert_eq!(custom_value_estimate(&json!(3)), Some(3.0));
        for none in [
            json!(""),
            json!("n/a"),
            json!("0"),
            json!("-1"),
            json!(null),
            json!(["5"]),
        ] {
            assert_eq!(custom_value_estimate(&none), None, "{none}");
        }
    }

    #[test]
    fn closed_comes_from_is_closed_or_closed_on_with_a_closed_status() {
        let t = parse_time("2026-11-03T11:30:00Z");
        let st = |name: &str, is_closed: Option<bool>| Status {
            name: name.into(),
            is_closed,
        };
        assert!(is_closed(Some(&st("Done", Some(true))), None));
        assert!(
            !is_closed(Some(&st("Closed", Some(false))), t),
            "is_closed wins"
        );
        // Redmine < 5.1: closed_on, kept when reopened, plus the status name.
        assert!(is_closed(Some(&st("Closed", None)), t));
        assert!(is_closed(Some(&st("Erledigt", None)), t));
        assert!(!is_closed(Some(&st("In Progress", None)), t), "reopened");
        assert!(!is_closed(Some(&st("Resolved", None)), t));
        assert!(!is_closed(Some(&st("Closed", None)), None));
    }
}
