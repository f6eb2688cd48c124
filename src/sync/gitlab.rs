//! GitLab REST v4: the issues of one project (`project_key` = the project's
//! full path, `group/subgroup/project`, or its numeric id).
//!
//! - `GET {base_url}/api/v4/projects/{id}/issues?scope=all&state=all&order_by=updated_at&sort=asc&per_page=100&updated_after=...`:
//!   the path is percent-encoded into one segment (`group%2Fproject`);
//!   `state=all` brings closed issues too; `updated_after` means "updated at or
//!   after" and is sent truncated to the second, so nothing between two
//!   seconds is lost (the cursor skips what was already stored). A `base_url`
//!   that already ends in `/api/v4` is taken as is.
//! - Pages follow the `Link: <...>; rel="next"` URL when it stays on the origin
//!   of the page that gave it; otherwise (no `Link`, or one pointing elsewhere,
//!   as GitLab behind a misconfigured proxy sends) the `X-Next-Page` number,
//!   empty on the last page, replaces `page` in the current URL, so the token
//!   never goes to another host. Past 10,000 rows GitLab leaves out `X-Total`,
//!   `X-Total-Pages` and `rel="last"`, so they are never needed; `X-Total` is
//!   only reported as the expected total when present.
//! - Auth: `PRIVATE-TOKEN: TOKEN` (a personal, project or group access token
//!   with `read_api`).
//! - Estimate (`estimate_field`): empty or `weight` takes the issue weight
//!   (a paid-tier field; `null` on Free); `time_estimate` takes
//!   `time_stats.time_estimate`, converted from seconds to hours;
//!   `label:PREFIX` takes a label such as `size::3` (`label:size::`). A weight
//!   or time estimate of 0 leaves the item unestimated: 0 is GitLab's "not
//!   set" for time estimates, and a score needs a positive size. Any other
//!   `estimate_field` is refused before the first request.
//! - Parent: none. An issue's `epic` is a group-level object with its own iid
//!   space, not an issue of the project, so it cannot be an item key here;
//!   `parent_key` stays empty, except for an issue whose description holds a
//!   split note (written by write-back): the item it names is its parent.
//! - Write-back: `POST {base_url}/api/v4/projects/{id}/issues` with `{title,
//!   description}` and the estimate as `weight` (rounded: weights are whole
//!   numbers, at least 1) or as a label (`labels`, comma-separated); a time
//!   estimate cannot be set on create and is left out. GitLab answers 201
//!   with the issue, mapped as a sync maps it.
//! - Removals: an issue moved to another project is closed by GitLab and
//!   listed with `moved_to_id` (when the token can read the new issue); such
//!   a closed issue is marked removed as moved, on any sync. A deleted issue
//!   is simply no longer listed: only a full sync finds it.
//! - Rate limits: GitLab sends `RateLimit-*` and `Retry-After` mostly on 429,
//!   sometimes not at all. `RateLimit-Remaining`/`RateLimit-Reset` (Unix
//!   seconds) are read here; `Retry-After` and a bare 429 are the shared
//!   client's.

use reqwest::header::{ACCEPT, HeaderMap, HeaderName, HeaderValue};
use reqwest::{StatusCode, Url};
use serde::Deserialize;

use super::github::estimate_from_labels;
use super::http::{Fetched, none_remaining, unix_reset};
use super::{
    Connector, PAGE_SIZE, Page, RateLimit, Removed, SyncError, header_value, join_url, next_link,
    parse_json, parse_time, short_number,
};
use crate::domain::{Item, ItemState, RemovalReason, Source, Time};
use crate::refine::split::note_parent;

/// The GitLab connector.
pub struct GitLab;

#[derive(Debug, Deserialize)]
struct Issue {
    iid: u64,
    title: String,
    description: Option<String>,
    web_url: String,
    state: String,
    #[serde(default)]
    labels: Vec<String>,
    created_at: Option<String>,
    updated_at: Option<String>,
    closed_at: Option<String>,
    weight: Option<f64>,
    time_stats: Option<TimeStats>,
    /// Set on an issue moved to another project (the new issue's global
    /// id), when the token can read the new issue; GitLab closes the old
    /// one. A moved issue reopened later keeps it, so only a closed one
    /// counts as moved.
    #[serde(default)]
    moved_to_id: Option<u64>,
    /// Thumbs-up award emoji on the issue, as the issues list counts them.
    #[serde(default, deserialize_with = "super::lenient_count")]
    upvotes: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct TimeStats {
    /// Seconds; 0 when not set.
    time_estimate: Option<f64>,
}

/// Where a source's estimates come from.
#[derive(Debug, Clone, PartialEq)]
enum EstimateFrom {
    Weight,
    TimeEstimate,
    Label(String),
}

impl EstimateFrom {
    fn of(source: &Source) -> Result<Self, SyncError> {
        match source.estimate_field.trim() {
            "" | "weight" => Ok(EstimateFrom::Weight),
            "time_estimate" => Ok(EstimateFrom::TimeEstimate),
            f => match f.strip_prefix("label:") {
                Some("") => Ok(EstimateFrom::Label("size:".into())),
                Some(prefix) => Ok(EstimateFrom::Label(prefix.to_string())),
                None => Err(SyncError::Config {
                    source_id: source.id.clone(),
                    detail: format!(
                        "estimate_field {:?} is not a GitLab estimate; use \"weight\" (the default), \"time_estimate\" or \"label:PREFIX\"",
                        source.estimate_field
                    ),
                    source: None,
                }),
            },
        }
    }

    fn estimate(&self, issue: &Issue) -> Option<f64> {
        let positive = |n: f64| (n.is_finite() && n > 0.0).then_some(n);
        match self {
            EstimateFrom::Weight => issue.weight.and_then(positive),
            EstimateFrom::TimeEstimate => issue
                .time_stats
                .as_ref()
                .and_then(|t| t.time_estimate)
                .and_then(positive)
                .map(|secs| secs / 3600.0),
            EstimateFrom::Label(prefix) => estimate_from_labels(&issue.labels, prefix),
        }
    }
}

/// Percent-encodes a project path into one URL path segment: everything but
/// RFC 3986 unreserved characters, so `/` becomes `%2F`.
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The next page: the `Link` target when it stays on this page's origin,
/// else the `X-Next-Page` number in place of `page` in this page's URL.
fn next_page(fetched: &Fetched) -> Option<Url> {
    if let Some(link) = next_link(fetched)
        && link.origin() == fetched.url.origin()
    {
        return Some(link);
    }
    let next: u64 = fetched.header("x-next-page")?.trim().parse().ok()?;
    let current: u64 = fetched
        .header("x-page")
        .and_then(|p| p.trim().parse().ok())
        .or_else(|| {
            fetched
                .url
                .query_pairs()
                .find(|(k, _)| k == "page")
                .and_then(|(_, v)| v.parse().ok())
        })
        .unwrap_or(1);
    // A next page that does not move forward would loop forever.
    if next <= current {
        return None;
    }
    let mut url = fetched.url.clone();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != "page")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    url.query_pairs_mut()
        .clear()
        .extend_pairs(pairs)
        .append_pair("page", &next.to_string());
    Some(url)
}

impl Connector for GitLab {
    fn headers(
        &self,
        source: &Source,
        token: Option<&str>,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, SyncError> {
        let mut h = vec![(ACCEPT, HeaderValue::from_static("application/json"))];
        if let Some(t) = token {
            h.push((
                HeaderName::from_static("private-token"),
                header_value(source, t)?,
            ));
        }
        Ok(h)
    }

    fn first_url(
        &self,
        source: &Source,
        since: Option<Time>,
        _now: Time,
    ) -> Result<Url, SyncError> {
        EstimateFrom::of(source)?;
        let mut url = issues_url(source)?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("scope", "all")
                .append_pair("state", "all")
                .append_pair("order_by", "updated_at")
                .append_pair("sort", "asc")
                .append_pair("per_page", &PAGE_SIZE.to_string());
            if let Some(t) = since {
                q.append_pair(
                    "updated_after",
                    &t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                );
            }
        }
        Ok(url)
    }

    fn rate_limit(&self, status: StatusCode, headers: &HeaderMap) -> Option<RateLimit> {
        // `RateLimit-Reset` (Unix seconds) counts when the window is used up
        // (`RateLimit-Remaining: 0`) or on a 429, which may carry the reset
        // alone. A bare 429 is the shared client's.
        if none_remaining(headers, "ratelimit-remaining") || status == StatusCode::TOO_MANY_REQUESTS
        {
            unix_reset(headers, "ratelimit-reset")
        } else {
            None
        }
    }

    fn issue_url(&self, source: &Source, external_id: &str) -> Result<Option<Url>, SyncError> {
        if external_id.is_empty() || !external_id.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(None);
        }
        let mut url = issues_url(source)?;
        url.path_segments_mut()
            .map_err(|()| super::github::bad_base(source))?
            .push(external_id);
        Ok(Some(url))
    }

    /// A moved issue stays in the project, closed, with `moved_to_id` (so
    /// the listing returns it); a deleted one is 404.
    fn removal_of(
        &self,
        _source: &Source,
        _asked: &Url,
        fetched: &Fetched,
    ) -> Option<(RemovalReason, String)> {
        let v: serde_json::Value = serde_json::from_slice(&fetched.body).ok()?;
        let to = v["moved_to_id"].as_u64()?;
        (v["state"] == "closed").then(|| {
            (
                RemovalReason::Moved,
                format!("moved to the issue with global id {to}"),
            )
        })
    }

    fn parse_page(&self, source: &Source, fetched: &Fetched) -> Result<Page, SyncError> {
        let estimate = EstimateFrom::of(source)?;
        let issues: Vec<Issue> = parse_json(source, fetched)?;
        let mut removed = Vec::new();
        let mut items = Vec::with_capacity(issues.len());
        for i in issues {
            match i.moved_to_id {
                Some(to) if i.state == "closed" => removed.push(Removed {
                    external_id: i.iid.to_string(),
                    reason: RemovalReason::Moved,
                    detail: format!("moved to the issue with global id {to}"),
                    update_time: i.updated_at.as_deref().and_then(parse_time),
                }),
                _ => items.push(issue_item(source, &estimate, i)),
            }
        }
        Ok(Page {
            removed,
            items,
            next: next_page(fetched),
            expected_total: fetched
                .header("x-total")
                .and_then(|t| t.trim().parse().ok()),
        })
    }

    fn create_issue_request(
        &self,
        source: &Source,
        _parent: &Item,
        title: &str,
        body: &str,
        estimate: Option<f64>,
    ) -> Result<(Url, serde_json::Value), SyncError> {
        let from = EstimateFrom::of(source)?;
        let mut req = serde_json::json!({ "title": title, "description": body });
        if let Some(e) = estimate.filter(|e| e.is_finite() && *e > 0.0) {
            match from {
                EstimateFrom::Weight => req["weight"] = (e.round().max(1.0) as u64).into(),
                EstimateFrom::Label(prefix) => {
                    req["labels"] = format!("{prefix}{}", short_number(e)).into()
                }
                EstimateFrom::TimeEstimate => {}
            }
        }
        Ok((issues_url(source)?, req))
    }

    fn parse_created(
        &self,
        source: &Source,
        _request: &serde_json::Value,
        fetched: &Fetched,
    ) -> Result<Item, SyncError> {
        let issue: Issue = parse_json(source, fetched)?;
        Ok(issue_item(source, &EstimateFrom::of(source)?, issue))
    }
}

/// `{base}/api/v4/projects/{id}/issues`, after checking `project_key`.
fn issues_url(source: &Source) -> Result<Url, SyncError> {
    let project = source.project_key.trim().trim_matches('/');
    if project.is_empty() || project.split('/').any(|s| s.trim().is_empty()) {
        return Err(SyncError::Config {
            source_id: source.id.clone(),
            detail: format!(
                "project_key {:?} must be a GitLab project path (GROUP/PROJECT, subgroups allowed) or numeric id",
                source.project_key
            ),
            source: None,
        });
    }
    let api = if source.base_url.trim_end_matches('/').ends_with("/api/v4") {
        ""
    } else {
        "api/v4/"
    };
    join_url(
        source,
        &format!("{api}projects/{}/issues", encode_segment(project)),
    )
}

/// One issue as an item.
fn issue_item(source: &Source, estimate: &EstimateFrom, i: Issue) -> Item {
    let estimate = estimate.estimate(&i);
    let body = i.description.unwrap_or_default();
    Item {
        source_id: source.id.clone(),
        external_id: i.iid.to_string(),
        estimate,
        title: i.title,
        parent_key: note_parent(&body, &source.id).unwrap_or_default(),
        body,
        url: i.web_url,
        state: if i.state == "closed" {
            ItemState::Closed
        } else {
            ItemState::Open
        },
        labels: i.labels,
        create_time: i.created_at.as_deref().and_then(parse_time),
        update_time: i.updated_at.as_deref().and_then(parse_time),
        close_time: i.closed_at.as_deref().and_then(parse_time),
        votes: i.upvotes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{LinkRules, TrackerKind};
    use chrono::{TimeZone, Utc};
    use reqwest::StatusCode;
    use reqwest::header::HeaderMap;

    fn source(base_url: &str, project_key: &str, estimate_field: &str) -> Source {
        Source {
            id: "gl".into(),
            kind: TrackerKind::Gitlab,
            base_url: base_url.into(),
            project_key: project_key.into(),
            token_env: String::new(),
            link_rules: LinkRules::default(),
            estimate_field: estimate_field.into(),
            create_time: Utc::now(),
            update_time: Utc::now(),
        }
    }

    fn fetched(url: &str, headers: &[(&'static str, &str)], body: &str) -> Fetched {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        Fetched {
            url: Url::parse(url).unwrap(),
            status: StatusCode::OK,
            headers: h,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn the_first_url_encodes_the_project_path_into_one_segment() {
        let since = Utc.with_ymd_and_hms(2026, 11, 5, 13, 0, 0).unwrap()
            + chrono::Duration::milliseconds(412);
        let url = GitLab
            .first_url(
                &source("https://gitlab.com/", "/acme/platform/shop/", ""),
                Some(since),
                Utc::now(),
            )
            .unwrap();
        assert_eq!(
            url.as_str(),
            "https://gitlab.com/api/v4/projects/acme%2Fplatform%2Fshop/issues?scope=all&state=all&order_by=updated_at&sort=asc&per_page=100&updated_after=2026-11-05T13%3A00%3A00Z"
        );
        let url = GitLab
            .first_url(
                &source("https://git.example.com/gitlab/api/v4", "4242", ""),
                None,
                Utc::now(),
            )
            .unwrap();
        assert_eq!(
            url.as_str(),
            "https://git.example.com/gitlab/api/v4/projects/4242/issues?scope=all&state=all&order_by=updated_at&sort=asc&per_page=100"
        );
        let url = GitLab
            .first_url(
                &source("https://git.example.com/gitlab", "my.group/a b+c", ""),
                None,
                Utc::now(),
            )
            .unwrap();
        assert_eq!(
            url.path(),
            "/gitlab/api/v4/projects/my.group%2Fa%20b%2Bc/issues"
        );
    }

    #[test]
    fn bad_project_keys_and_estimate_fields_are_refused() {
        for key in ["", "/", "acme//shop", "acme/ /shop"] {
            let err = GitLab
                .first_url(&source("https://gitlab.com", key, ""), None, Utc::now())
                .unwrap_err();
            assert!(
                matches!(&err, SyncError::Config { detail, .. } if detail.contains("project_key")),
                "{key:?}: {err}"
            );
        }
        let err = GitLab
            .first_url(
                &source("https://gitlab.com", "acme/shop", "story_points"),
                None,
                Utc::now(),
            )
            .unwrap_err();
        assert!(err.to_string().contains("\"story_points\""), "{err}");
    }

    #[test]
    fn the_token_goes_in_a_sensitive_private_token_header() {
        let h = GitLab
            .headers(&source("https://gitlab.com", "a/b", ""), Some("glpat-x"))
            .unwrap();
        let (_, v) = h.iter().find(|(k, _)| k == "private-token").unwrap();
        assert_eq!(v.to_str().unwrap(), "glpat-x");
        assert!(v.is_sensitive());
        assert!(!h.iter().any(|(k, _)| k == "authorization"));
    }

    #[test]
    fn x_next_page_replaces_the_page_and_keeps_the_filters() {
        let f = fetched(
            "https://gitlab.com/api/v4/projects/a%2Fb/issues?scope=all&page=2&updated_after=2026-01-01T00%3A00%3A00Z",
            &[("x-next-page", "3"), ("x-page", "2")],
            "[]",
        );
        assert_eq!(
            next_page(&f).unwrap().as_str(),
            "https://gitlab.com/api/v4/projects/a%2Fb/issues?scope=all&updated_after=2026-01-01T00%3A00%3A00Z&page=3"
        );
        // The last page: empty X-Next-Page.
        let last = fetched(
            "https://gitlab.com/api/v4/projects/a%2Fb/issues?page=3",
            &[("x-next-page", ""), ("x-page", "3")],
            "[]",
        );
        assert_eq!(next_page(&last), None);
        // A next page that does not move forward is not followed.
        let stuck = fetched(
            "https://gitlab.com/api/v4/projects/a%2Fb/issues?page=3",
            &[("x-next-page", "3")],
            "[]",
        );
        assert_eq!(next_page(&stuck), None);
    }

    #[test]
    fn a_link_to_another_origin_is_not_followed() {
        let f = fetched(
            "https://gitlab.example.com/api/v4/projects/a%2Fb/issues?per_page=100",
            &[
                (
                    "link",
                    "<http://gitlab-internal:8080/api/v4/projects/a%2Fb/issues?page=2&per_page=100>; rel=\"next\"",
                ),
                ("x-next-page", "2"),
                ("x-page", "1"),
            ],
            "[]",
        );
        assert_eq!(
            next_page(&f).unwrap().as_str(),
            "https://gitlab.example.com/api/v4/projects/a%2Fb/issues?per_page=100&page=2"
        );
        let same = fetched(
            "https://gitlab.example.com/api/v4/projects/a%2Fb/issues?per_page=100",
            &[(
                "link",
                "<https://gitlab.example.com/api/v4/projects/a%2Fb/issues?id=7&page=2&per_page=100>; rel=\"next\"",
            )],
            "[]",
        );
        assert_eq!(
            next_page(&same).unwrap().as_str(),
            "https://gitlab.example.com/api/v4/projects/a%2Fb/issues?id=7&page=2&per_page=100"
        );
    }

    #[test]
    fn estimates_come_from_the_configured_field() {
        let body = r#"[
            {"iid": 1, "title": "a", "description": null, "web_url": "u", "state": "opened",
             "labels": ["size::2"], "weight": 3, "time_stats": {"time_estimate": 5400}},
            {"iid": 2, "title": "b", "description": "d", "web_url": "u", "state": "closed",
             "labels": [], "weight": 0, "time_stats": {"time_estimate": 0}},
            {"iid": 3, "title": "c", "web_url": "u", "state": "opened"}
        ]"#;
        let f = fetched("https://gitlab.com/api/v4/projects/1/issues", &[], body);
        let estimates = |field: &str| -> Vec<Option<f64>> {
            GitLab
                .parse_page(&source("https://gitlab.com", "1", field), &f)
                .unwrap()
                .items
                .into_iter()
                .map(|i| i.estimate)
                .collect()
        };
        assert_eq!(estimates(""), [Some(3.0), None, None]);
        assert_eq!(estimates("weight"), [Some(3.0), None, None]);
        assert_eq!(estimates("time_estimate"), [Some(1.5), None, None]);
        assert_eq!(estimates("label:size::"), [Some(2.0), None, None]);
    }
}
