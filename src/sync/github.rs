//! GitHub REST: the issues of one repository (`project_key` = `owner/repo`).
//!
//! - `GET /repos/{owner}/{repo}/issues?state=all&sort=updated&direction=asc&per_page=100&since=...`:
//!   without `state=all` only open issues come back; `since` means "updated at
//!   or after".
//! - The list holds pull requests too; they carry a `pull_request` key and are
//!   skipped.
//! - Pages follow the `Link: <...>; rel="next"` URL exactly as given (it may
//!   switch to `/repositories/{id}/issues`), but only on the source's origin:
//!   a Link elsewhere ends the sync ([`super::same_origin_page`]).
//! - Auth: `Authorization: Bearer TOKEN`; ETags make an unchanged answer a
//!   304 that does not count against the rate limit.
//! - Labels: objects with a `name`, or plain strings (the API description
//!   allows both); both are read.
//! - Estimate: from a label such as `size:3` (`estimate_field` =
//!   `label:size:`, the default), since GitHub issues have no estimate field.
//! - Parent: GitHub issues have no parent field here; an issue whose body
//!   holds a split note (`Split from web/1 by task: slice 1 of 3.`, written
//!   by write-back) gets the item it names as parent.
//! - Write-back: `POST /repos/{owner}/{repo}/issues` with `{title, body,
//!   labels}`, the estimate as a label (`size:4`); GitHub answers 201 with
//!   the issue, mapped as a sync maps it.
//! - Rate limits: `X-RateLimit-Remaining: 0` with `X-RateLimit-Reset` (Unix
//!   seconds) on a 403/429 or on the window's last answer; the secondary
//!   limit's `Retry-After` is the shared client's.

use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use reqwest::{StatusCode, Url};
use serde::Deserialize;

use super::http::{Fetched, none_remaining, unix_reset};
use super::{
    Connector, PAGE_SIZE, Page, RateLimit, SyncError, header_value, join_url, next_link,
    parse_json, parse_time, short_number,
};
use crate::domain::{Item, ItemState, RemovalReason, Source, Time};
use crate::refine::split::note_parent;

/// The GitHub connector.
pub struct GitHub;

#[derive(Debug, Deserialize)]
struct Issue {
    number: u64,
    title: String,
    body: Option<String>,
    html_url: String,
    state: String,
    #[serde(default)]
    labels: Vec<Label>,
    created_at: Option<String>,
    updated_at: Option<String>,
    closed_at: Option<String>,
    pull_request: Option<serde_json::Value>,
    /// The reaction rollup GitHub's issue listings carry (`total_count`,
    /// `+1`, `-1`, `laugh`, `hooray`, `confused`, `heart`, `rocket`,
    /// `eyes`); absent from some enterprise versions.
    reactions: Option<Reactions>,
}

/// The part of GitHub's reaction rollup kept: the thumbs-up, GitHub's own
/// "upvote" (the `reactions-+1` sort of issue searches). Other reactions
/// are moods, not demand, and a thumbs-down is not a vote against.
#[derive(Debug, Deserialize)]
struct Reactions {
    #[serde(rename = "+1", default, deserialize_with = "super::lenient_count")]
    plus_one: Option<u64>,
}

/// A label as GitHub's API description allows it: an object with a `name`
/// (what the issues endpoints answer today) or a plain string. A label
/// without a name is dropped rather than failing the page.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Label {
    Name(String),
    Object { name: Option<String> },
}

impl Label {
    fn into_name(self) -> Option<String> {
        match self {
            Label::Name(n) => Some(n),
            Label::Object { name } => name,
        }
    }
}

/// The estimate carried by a label `<prefix><number>` (e.g. `size:3`).
pub fn estimate_from_labels(labels: &[String], prefix: &str) -> Option<f64> {
    labels.iter().find_map(|l| {
        let n: f64 = l.strip_prefix(prefix)?.trim().parse().ok()?;
        (n.is_finite() && n > 0.0).then_some(n)
    })
}

impl Connector for GitHub {
    fn headers(
        &self,
        source: &Source,
        token: Option<&str>,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, SyncError> {
        let mut h = vec![
            (
                ACCEPT,
                HeaderValue::from_static("application/vnd.github+json"),
            ),
            (
                HeaderName::from_static("x-github-api-version"),
                HeaderValue::from_static("2022-11-28"),
            ),
        ];
        if let Some(t) = token {
            h.push((AUTHORIZATION, header_value(source, &format!("Bearer {t}"))?));
        }
        Ok(h)
    }

    fn first_url(
        &self,
        source: &Source,
        since: Option<Time>,
        _now: Time,
    ) -> Result<Url, SyncError> {
        let mut url = issues_url(source)?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("state", "all")
                .append_pair("sort", "updated")
                .append_pair("direction", "asc")
                .append_pair("per_page", &PAGE_SIZE.to_string());
            if let Some(t) = since {
                q.append_pair(
                    "since",
                    &t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                );
            }
        }
        Ok(url)
    }

    fn issue_url(&self, source: &Source, external_id: &str) -> Result<Option<Url>, SyncError> {
        if external_id.is_empty() || !external_id.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(None);
        }
        let mut url = issues_url(source)?;
        url.path_segments_mut()
            .map_err(|()| bad_base(source))?
            .push(external_id);
        Ok(Some(url))
    }

    /// GitHub answers a transferred issue with 301 to its new place (which
    /// the client follows within api.github.com), a deleted one with 410.
    fn removal_of(
        &self,
        _source: &Source,
        asked: &Url,
        fetched: &Fetched,
    ) -> Option<(RemovalReason, String)> {
        if fetched.url.path() == asked.path() {
            return None; // still there
        }
        let now_at = serde_json::from_slice::<serde_json::Value>(&fetched.body)
            .ok()
            .and_then(|v| v["html_url"].as_str().map(str::to_string));
        Some((
            RemovalReason::Moved,
            match now_at {
                Some(u) => format!("transferred; now {u}"),
                None => "transferred to another repository".into(),
            },
        ))
    }

    fn not_found_is_deleted(&self) -> bool {
        // 404 also answers an issue transferred where the token cannot read.
        false
    }

    fn parse_page(&self, source: &Source, fetched: &Fetched) -> Result<Page, SyncError> {
        let issues: Vec<Issue> = parse_json(source, fetched)?;
        let prefix = label_prefix(source);
        let items = issues
            .into_iter()
            .filter(|i| i.pull_request.is_none())
            .map(|i| issue_item(source, &prefix, i))
            .collect();
        Ok(Page {
            items,
            next: next_link(fetched),
            expected_total: None,
            removed: Vec::new(),
        })
    }

    fn rate_limit(&self, status: StatusCode, headers: &HeaderMap) -> Option<RateLimit> {
        // The primary limit: `X-RateLimit-Remaining: 0` until
        // `X-RateLimit-Reset` (Unix seconds), on the refused request (403 or
        // 429) or on the window's last success. A refusal without a reset
        // waits a minute, as GitHub's docs advise. (The secondary limit
        // sends the standard `Retry-After`, which the shared client reads.)
        if !none_remaining(headers, "x-ratelimit-remaining") {
            return None;
        }
        unix_reset(headers, "x-ratelimit-reset").or_else(|| {
            (!status.is_success()).then_some(RateLimit::After(std::time::Duration::from_secs(60)))
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
        let labels: Vec<String> = estimate
            .filter(|e| e.is_finite() && *e > 0.0)
            .map(|e| format!("{}{}", label_prefix(source), short_number(e)))
            .into_iter()
            .collect();
        Ok((
            issues_url(source)?,
            serde_json::json!({ "title": title, "body": body, "labels": labels }),
        ))
    }

    fn parse_created(
        &self,
        source: &Source,
        _request: &serde_json::Value,
        fetched: &Fetched,
    ) -> Result<Item, SyncError> {
        let issue: Issue = parse_json(source, fetched)?;
        Ok(issue_item(source, &label_prefix(source), issue))
    }
}

/// `{base}/repos/{owner}/{repo}/issues`, after checking `project_key`.
/// The error of a base_url that cannot take path segments.
pub(super) fn bad_base(source: &Source) -> SyncError {
    SyncError::Config {
        source_id: source.id.clone(),
        detail: "base_url cannot be a base for paths".into(),
        source: None,
    }
}

fn issues_url(source: &Source) -> Result<Url, SyncError> {
    let repo = source.project_key.trim_matches('/');
    if repo.split('/').count() != 2 || repo.split('/').any(str::is_empty) {
        return Err(SyncError::Config {
            source_id: source.id.clone(),
            detail: format!(
                "project_key {:?} must be OWNER/REPO for GitHub",
                source.project_key
            ),
            source: None,
        });
    }
    join_url(source, &format!("repos/{repo}/issues"))
}

/// The prefix of estimate labels: `estimate_field` `label:PREFIX`, else
/// `size:`.
fn label_prefix(source: &Source) -> String {
    match source.estimate_field.strip_prefix("label:") {
        Some(p) if !p.is_empty() => p.to_string(),
        _ => "size:".to_string(),
    }
}

/// One issue as an item.
fn issue_item(source: &Source, prefix: &str, i: Issue) -> Item {
    let labels: Vec<String> = i.labels.into_iter().filter_map(Label::into_name).collect();
    let body = i.body.unwrap_or_default();
    Item {
        source_id: source.id.clone(),
        external_id: i.number.to_string(),
        title: i.title,
        parent_key: note_parent(&body, &source.id).unwrap_or_default(),
        body,
        url: i.html_url,
        state: if i.state == "closed" {
            ItemState::Closed
        } else {
            ItemState::Open
        },
        estimate: estimate_from_labels(&labels, prefix),
        labels,
        create_time: i.created_at.as_deref().and_then(parse_time),
        update_time: i.updated_at.as_deref().and_then(parse_time),
        close_time: i.closed_at.as_deref().and_then(parse_time),
        votes: i.reactions.and_then(|r| r.plus_one),
    }
}
