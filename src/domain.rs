//! Plain types of the value model (see VALUE-MODEL.md): sources, items, goals,
//! metrics, hypotheses and links. No I/O lives here, so the score and the
//! store can both speak these types without knowing about each other.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

mod customer;
pub mod history;
mod insight;
mod metric_source;
pub use customer::{
    DesiredOutcome, MAX_OUTCOMES, MAX_SEGMENT_WEIGHT, MAX_SEGMENTS, MAX_WAVES_PER_OUTCOME,
    OUTCOME_UNIT, SURVEY_SCALE, Segment, SurveyWave,
};
pub use insight::{
    Demand, Importance, Insight, InsightKind, MAX_CUSTOMER, MAX_INSIGHT_TARGETS, MAX_INSIGHT_TEXT,
    MAX_INSIGHT_URL, MAX_INSIGHTS_PER_CALL,
};
pub use metric_source::{
    BasicAuth, BearerAuth, CsvSpec, HttpJsonSpec, MetricSource, PosthogSpec, PrometheusAuth,
    PrometheusSpec, SqlSpec, parse_setting_duration,
};

/// A point in time, always UTC, kept to the nanosecond so that what is stored
/// reads back bit for bit.
pub type Time = DateTime<Utc>;

/// The kind of tracker a source connects to, or [`TrackerKind::Push`] for
/// a source whose items an integration sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackerKind {
    Github,
    Gitlab,
    Jira,
    Redmine,
    /// Items pushed through the API (`UpsertItems`) by an integration:
    /// no tracker, so no base URL, token or estimate field, and never
    /// synced; its link rules apply to the items pushed.
    Push,
}

impl TrackerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TrackerKind::Github => "github",
            TrackerKind::Gitlab => "gitlab",
            TrackerKind::Jira => "jira",
            TrackerKind::Redmine => "redmine",
            TrackerKind::Push => "push",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "github" => Some(TrackerKind::Github),
            "gitlab" => Some(TrackerKind::Gitlab),
            "jira" => Some(TrackerKind::Jira),
            "redmine" => Some(TrackerKind::Redmine),
            "push" => Some(TrackerKind::Push),
            _ => None,
        }
    }

    /// Whether plumbline pulls this kind's items from a tracker (every kind
    /// but [`TrackerKind::Push`]).
    pub fn is_tracker(self) -> bool {
        !matches!(self, TrackerKind::Push)
    }
}

/// Rules that turn tracker data into links (applied by sync).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct LinkRules {
    pub label_prefix: String,
    pub body_keyword: String,
    pub disabled: bool,
}

/// A connection to one tracker project. Holds the *name* of the variable that
/// holds the token, never the token.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    pub id: String,
    pub kind: TrackerKind,
    pub base_url: String,
    pub project_key: String,
    pub token_env: String,
    pub link_rules: LinkRules,
    pub estimate_field: String,
    pub create_time: Time,
    pub update_time: Time,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemState {
    Open,
    Closed,
}

/// Why an item left its tracker's backlog (see [`Removal`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemovalReason {
    /// The tracker said it was deleted (gone, 404/410 where it answers so).
    Deleted,
    /// The tracker said it moved to another project (GitLab's
    /// `moved_to_id`); `detail` names where, when the tracker says.
    Moved,
    /// A full sync that completed did not return it: deleted, moved out of
    /// the project, or hidden from the token; the tracker's listing does
    /// not say which.
    NotReturned,
}

/// An item that its tracker no longer returns: kept in the store (releases
/// and evidence still name it) but out of the ranking, roll-ups, watches
/// and split candidates, until the tracker returns it again.
#[derive(Debug, Clone, PartialEq)]
pub struct Removal {
    pub remove_time: Time,
    pub reason: RemovalReason,
    /// What the tracker said beyond the reason (where a moved item went);
    /// empty when it said nothing more.
    pub detail: String,
}

/// A "- [ ] task" line of an item's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChecklistTask {
    pub text: String,
    pub done: bool,
}

/// A backlog item. Its key is `SOURCE/EXTERNAL_ID`.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub source_id: String,
    pub external_id: String,
    pub title: String,
    pub body: String,
    pub url: String,
    pub state: ItemState,
    pub labels: Vec<String>,
    pub estimate: Option<f64>,
    pub parent_key: String,
    pub create_time: Option<Time>,
    pub update_time: Option<Time>,
    pub close_time: Option<Time>,
    /// The tracker's demand signal (GitHub +1 reactions, GitLab upvotes,
    /// Jira votes) as the last sync saw it; `None` where it exposes none.
    /// Shown beside the score, never in it.
    pub votes: Option<u64>,
}

impl Item {
    pub fn key(&self) -> String {
        item_key(&self.source_id, &self.external_id)
    }

    /// The bytes of the item's text (title, body, ids, labels, url): what
    /// a page of items is bounded by, short of encoding them.
    pub fn text_len(&self) -> usize {
        [
            &self.source_id,
            &self.external_id,
            &self.title,
            &self.body,
            &self.url,
            &self.parent_key,
        ]
        .iter()
        .map(|s| s.len())
        .chain(self.labels.iter().map(String::len))
        .sum()
    }

    /// Checklist tasks of the body, in order.
    pub fn tasks(&self) -> Vec<ChecklistTask> {
        parse_checklist(&self.body)
    }
}

pub fn item_key(source_id: &str, external_id: &str) -> String {
    format!("{source_id}/{external_id}")
}

/// Parses GitHub-flavoured task list lines: `- [ ] text`, `* [x] text`.
pub fn parse_checklist(body: &str) -> Vec<ChecklistTask> {
    body.lines()
        .filter_map(|line| {
            let line = line.trim_start();
            let rest = line
                .strip_prefix("- [")
                .or_else(|| line.strip_prefix("* ["))
                .or_else(|| line.strip_prefix("+ ["))?;
            let mut chars = rest.chars();
            let mark = chars.next()?;
            let rest = chars.as_str().strip_prefix("] ")?;
            let done = match mark {
                ' ' => false,
                'x' | 'X' => true,
                _ => return None,
            };
            let text = rest.trim();
            (!text.is_empty()).then(|| ChecklistTask {
                text: text.to_string(),
                done,
            })
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GoalLevel {
    Strategic,
    Intermediate,
    Tactical,
}

impl GoalLevel {
    /// The level a parent of a goal at this level must have.
    pub fn parent_level(self) -> Option<GoalLevel> {
        match self {
            GoalLevel::Strategic => None,
            GoalLevel::Intermediate => Some(GoalLevel::Strategic),
            GoalLevel::Tactical => Some(GoalLevel::Intermediate),
        }
    }
}

/// The four Key Value Areas of Evidence-Based Management.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyValueArea {
    Unspecified,
    CurrentValue,
    UnrealizedValue,
    TimeToMarket,
    AbilityToInnovate,
}

/// A node of the goal tree.
#[derive(Debug, Clone, PartialEq)]
pub struct Goal {
    pub id: String,
    pub title: String,
    pub description: String,
    pub level: GoalLevel,
    /// Empty for strategic goals.
    pub parent_id: String,
    pub key_value_area: KeyValueArea,
    /// Relative weight among siblings, >= 0.
    pub weight: f64,
    pub create_time: Time,
    pub update_time: Time,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    HigherIsBetter,
    LowerIsBetter,
}

impl Direction {
    /// The direction implied by a baseline and a target that differ.
    pub fn implied(baseline: f64, target: f64) -> Direction {
        if target > baseline {
            Direction::HigherIsBetter
        } else {
            Direction::LowerIsBetter
        }
    }
}

/// A Key Value Measure.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub id: String,
    pub name: String,
    pub unit: String,
    pub direction: Direction,
    pub baseline: f64,
    pub target: f64,
    /// Expected time between observations; `None` means never stale.
    pub cadence: Option<chrono::Duration>,
    /// Where its observations are pulled from; `None`: they are recorded
    /// through the API only.
    pub source: Option<MetricSource>,
    pub create_time: Time,
    pub update_time: Time,
}

/// What the last pulls of a metric's source did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PullStatus {
    pub metric_id: String,
    /// When the last pull ended, successful or not.
    pub last_pull_time: Option<Time>,
    /// When the last successful pull ended.
    pub last_success_time: Option<Time>,
    /// Points the last successful pull stored (new or corrected).
    pub last_stored: u32,
    /// Points the last pull refused (future, NaN, not a number).
    pub last_refused: u32,
    /// Why the last pull failed, or what it refused; empty when all went well.
    /// Never holds a secret.
    pub last_error: String,
}

/// One measured value of a metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub metric_id: String,
    pub value: f64,
    pub observe_time: Time,
}

/// The latest observation of a metric and how many there are.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ObservationSummary {
    pub latest: Option<(Time, f64)>,
    pub count: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HypothesisStatus {
    Proposed,
    Testing,
    Validated,
    Invalidated,
}

/// A falsifiable value bet.
#[derive(Debug, Clone, PartialEq)]
pub struct Hypothesis {
    pub id: String,
    pub statement: String,
    pub goal_id: String,
    pub metric_id: String,
    /// In (0, 1]: the share of the metric's gap the change should close.
    pub expected_effect: f64,
    /// In [0, 1].
    pub confidence: f64,
    pub status: HypothesisStatus,
    pub check_time: Option<Time>,
    pub create_time: Time,
    pub update_time: Time,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkOrigin {
    Api,
    Rule,
}

/// An item's share in delivering a hypothesis.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    pub item_key: String,
    pub hypothesis_id: String,
    /// In (0, 1].
    pub contribution: f64,
    pub origin: LinkOrigin,
    pub rationale: String,
    pub create_time: Time,
    pub update_time: Time,
}

/// What is remembered of an item split into slices (`ApplySplit`): the
/// plan's word (`hypothesis`, `task`) and the hypotheses whose links moved
/// from the item to its slices. Its sources' link rules never link the item
/// to those hypotheses again, whatever a sync reads in its body or labels
/// later: the slices carry them.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemSplit {
    pub item_key: String,
    pub plan_kind: String,
    /// Sorted, without duplicates.
    pub hypothesis_ids: Vec<String>,
    pub create_time: Time,
}

impl ItemSplit {
    /// Whether the split moved the item's link to `hypothesis_id`.
    pub fn moved(&self, hypothesis_id: &str) -> bool {
        self.hypothesis_ids
            .binary_search_by(|h| h.as_str().cmp(hypothesis_id))
            .is_ok()
    }
}

/// Where a source's incremental sync stands: every item the tracker updated
/// before `time` is in the store, and so are those updated exactly at `time`
/// whose external ids are in `ids` (tracker time filters are inclusive).
///
/// An item at `time` may still have changed since it was stored: tracker
/// times are coarse (Redmine's and GitHub's are whole seconds), so an edit
/// within the cursor's second keeps the same update time. Such boundary
/// items are therefore never skipped here but compared with the stored
/// item when the page is written, and written only if they differ.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SyncCursor {
    pub time: Option<Time>,
    pub ids: Vec<String>,
}

impl SyncCursor {
    /// Whether an item updated at `updated` was stored by an earlier page or
    /// sync and cannot have changed since: updated strictly before the
    /// cursor (Jira's minute-grained filter returns such items). An item
    /// updated at the cursor's instant is not: it may have been edited
    /// again within the tracker's time grain.
    pub fn stored_before(&self, updated: Option<Time>) -> bool {
        matches!((self.time, updated), (Some(c), Some(u)) if u < c)
    }

    /// The cursor after items with these update times were stored.
    pub fn advance<'a>(&mut self, items: impl IntoIterator<Item = (&'a str, Option<Time>)>) {
        for (id, updated) in items {
            let Some(u) = updated else { continue };
            match self.time {
                Some(c) if u < c => {}
                Some(c) if u == c => {
                    if !self.ids.iter().any(|i| i == id) {
                        self.ids.push(id.to_string());
                    }
                }
                _ => {
                    self.time = Some(u);
                    self.ids = vec![id.to_string()];
                }
            }
        }
        self.ids.sort();
    }
}

/// Outcome of the last sync of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncRunState {
    Never,
    Running,
    Succeeded,
    Failed,
}

/// A source's sync state, kept in the store with each page.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncState {
    pub source_id: String,
    pub cursor: SyncCursor,
    /// Validator of the last single-page incremental answer, and its URL.
    pub etag: String,
    pub etag_url: String,
    pub state: SyncRunState,
    pub last_start_time: Option<Time>,
    pub last_finish_time: Option<Time>,
    pub last_error: String,
    pub last_request_count: i64,
    pub last_upserted_count: i64,
}

impl SyncState {
    /// The state of a source that was never synced.
    pub fn never(source_id: &str) -> Self {
        SyncState {
            source_id: source_id.to_string(),
            cursor: SyncCursor::default(),
            etag: String::new(),
            etag_url: String::new(),
            state: SyncRunState::Never,
            last_start_time: None,
            last_finish_time: None,
            last_error: String::new(),
            last_request_count: 0,
            last_upserted_count: 0,
        }
    }
}

/// Where a release came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseOrigin {
    /// Named through the API (a deploy pipeline).
    Api,
    /// An item closed in its tracker; id `close:<item key>`.
    Tracker,
}

/// Items that reached users at a time.
#[derive(Debug, Clone, PartialEq)]
pub struct Release {
    pub id: String,
    pub time: Time,
    pub item_keys: Vec<String>,
    pub origin: ReleaseOrigin,
    pub note: String,
}

/// An A/B result for a hypothesis, in its metric's unit.
#[derive(Debug, Clone, PartialEq)]
pub struct Experiment {
    pub id: String,
    pub hypothesis_id: String,
    pub lift: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    pub time: Time,
    pub source: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvidenceMethod {
    BeforeAfter,
    Experiment,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvidenceOutcome {
    Supports,
    Refutes,
    Inconclusive,
    InsufficientData,
}

/// What one release (or experiment) says about one hypothesis, and what it
/// did to the hypothesis' confidence and status.
#[derive(Debug, Clone, PartialEq)]
pub struct Evidence {
    pub hypothesis_id: String,
    /// A release id, or `experiment:<id>`.
    pub subject_id: String,
    pub method: EvidenceMethod,
    pub outcome: EvidenceOutcome,
    pub realized_effect: Option<f64>,
    pub expected_effect: f64,
    pub confounded: bool,
    pub step: Option<f64>,
    /// Standard error of `step`, same unit.
    pub step_se: Option<f64>,
    /// `d`: how much of the hypothesis the release (group) delivered.
    pub delivered: Option<f64>,
    /// What this evidence added to the hypothesis' log-odds (0 when it did
    /// not move it).
    pub log_likelihood_ratio: f64,
    pub points_before: i64,
    pub points_after: i64,
    pub confidence_before: f64,
    pub confidence_after: f64,
    pub status_after: HypothesisStatus,
    pub reason: String,
    pub record_time: Time,
}

/// Label prefix and body keyword used when a source leaves them empty.
pub const DEFAULT_LABEL_PREFIX: &str = "hypothesis:";
pub const DEFAULT_BODY_KEYWORD: &str = "Hypothesis";

/// The links an item's tracker data asks for under a source's rules, as
/// hypothesis id -> contribution: a label `<prefix><id>` links with
/// contribution 1; a body line `<keyword>: <id>` or `<keyword>: <id> (0.5)`
/// links with the contribution in parentheses. A body line wins over a label
/// for the same hypothesis. Malformed ids or contributions are skipped.
pub fn rule_links(
    rules: &LinkRules,
    labels: &[String],
    body: &str,
) -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    if rules.disabled {
        return out;
    }
    let prefix = if rules.label_prefix.is_empty() {
        DEFAULT_LABEL_PREFIX
    } else {
        &rules.label_prefix
    };
    let keyword = if rules.body_keyword.is_empty() {
        DEFAULT_BODY_KEYWORD
    } else {
        &rules.body_keyword
    };
    for label in labels {
        if let Some(id) = label.strip_prefix(prefix).map(str::trim)
            && is_valid_id(id)
        {
            out.insert(id.to_string(), 1.0);
        }
    }
    for line in body.lines() {
        let line = line.trim().trim_start_matches(['-', '*', '>']).trim();
        let Some(head) = line.get(..keyword.len()) else {
            continue;
        };
        if !head.eq_ignore_ascii_case(keyword) {
            continue;
        }
        let Some(rest) = line[keyword.len()..].trim_start().strip_prefix(':') else {
            continue;
        };
        let rest = rest.trim();
        let (id, tail) = rest
            .split_once(|c: char| c.is_whitespace() || c == '(')
            .unwrap_or((rest, ""));
        if !is_valid_id(id) {
            continue;
        }
        let tail = tail.trim_start_matches(|c: char| c.is_whitespace() || c == '(');
        let contribution = match tail.split_once(')') {
            Some((n, _)) => match n.trim().parse::<f64>() {
                Ok(c) if c > 0.0 && c <= 1.0 => c,
                _ => continue,
            },
            None => 1.0,
        };
        out.insert(id.to_string(), contribution);
    }
    out
}

/// Whether `id` is a usable id for a source, goal, metric or hypothesis:
/// 1 to 64 characters of letters, digits, `.`, `_` and `-`, starting with a
/// letter or digit. Keeps ids safe in item keys, URLs and CLI arguments.
pub fn is_valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphanumeric() => {}
        _ => return false,
    }
    id.len() <= 64 && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Whether `name` looks like an environment variable name (`GITHUB_TOKEN`).
/// Rejects values that look like a pasted token instead.
pub fn is_valid_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_uppercase() || c == '_')
        && name.len() <= 128
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

// The bounds of the numbers the model takes. With them every score is
// finite and means something: each term is a product of factors in [0, 1]
// (sibling-normalized goal weights, gaps, effects, confidences,
// contributions), so an item's value is at most its number of hypotheses,
// and a size of at least `MIN_ESTIMATE` keeps its value density finite.
// The API refuses numbers outside them; sizes out of range that a tracker
// sends count as unestimated.

/// Smallest size an item can have, in the team's unit (points, days).
pub const MIN_ESTIMATE: f64 = 0.01;
/// Largest size an item can have.
pub const MAX_ESTIMATE: f64 = 1e6;
/// Largest goal weight; the sum of any number of siblings stays finite.
pub const MAX_GOAL_WEIGHT: f64 = 1e6;
/// Largest magnitude of a metric's baseline, target or observation (and of
/// a lift, which is in the metric's unit), so that differences between
/// them stay finite.
pub const MAX_METRIC_MAGNITUDE: f64 = 1e12;

/// How far ahead of the server's clock a time sent by a client may lie and
/// still count as "now": clocks of clients and servers drift apart by
/// seconds, rarely by minutes. An observation dated later than the server's
/// clock plus this is refused (it would become the metric's current value
/// before it was measured), and so is a `ValidateReleases` `as_of` beyond it.
pub const MAX_CLOCK_SKEW: chrono::Duration = chrono::Duration::minutes(5);

/// Whether `estimate` is a size an item can count with.
pub fn is_valid_estimate(estimate: f64) -> bool {
    (MIN_ESTIMATE..=MAX_ESTIMATE).contains(&estimate)
}

/// Whether `s` holds a control character (C0, DEL or C1): no tracker puts
/// one in an id, key, title or setting, and a NUL or an escape there breaks
/// logs, terminals and the CLI's tables.
pub fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// What an API token may do; each role may do everything of the ones
/// before it (`Read < Write < Admin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Get, List, Rank, Watch, Explain: reads of the model and the ranking.
    Read,
    /// Also items, links, observations, releases, splits.
    Write,
    /// Also sources, syncs, write-back and tokens.
    Admin,
}

impl Role {
    /// The role's name as the CLI and messages spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        }
    }
}

/// An API token as stored: never the secret, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    /// Public id, the first part of the token as sent (`plb_<id>_<secret>`).
    pub id: String,
    /// Unique among live tokens; what the log names on each write.
    pub name: String,
    pub role: Role,
    pub secret_hash: [u8; 32],
    pub create_time: Time,
    pub revoke_time: Option<Time>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checklist_lines_are_parsed_in_order() {
        let body = "Intro\n- [ ] first step\n  - [x] nested done\n* [X] star\n- [] not a task\n- [ ]   \n- [y] no\ntext";
        let tasks = parse_checklist(body);
        assert_eq!(
            tasks,
            vec![
                ChecklistTask {
                    text: "first step".into(),
                    done: false
                },
                ChecklistTask {
                    text: "nested done".into(),
                    done: true
                },
                ChecklistTask {
                    text: "star".into(),
                    done: true
                },
            ]
        );
    }

    #[test]
    fn link_rules_read_labels_and_body_lines() {
        let rules = LinkRules::default();
        let labels = vec![
            "hypothesis:H-1".to_string(),
            "hypothesis:H-3".into(),
            "bug".into(),
            "hypothesis:bad id".into(),
        ];
        let body = "Why\nHypothesis: H-2 (0.5)\n- hypothesis: H-3 (0.25)\nHypothesis: H-4\nHypothesis: H-5 (7)\nHypothesis H-6";
        let got = rule_links(&rules, &labels, body);
        let want: Vec<(&str, f64)> = vec![("H-1", 1.0), ("H-2", 0.5), ("H-3", 0.25), ("H-4", 1.0)];
        assert_eq!(
            got.iter()
                .map(|(k, v)| (k.as_str(), *v))
                .collect::<Vec<_>>(),
            want
        );
        let custom = LinkRules {
            label_prefix: "value/".into(),
            body_keyword: "Serves".into(),
            disabled: false,
        };
        let got = rule_links(
            &custom,
            &["value/H-9".into(), "hypothesis:H-1".into()],
            "Serves: H-8 (0.3)",
        );
        assert_eq!(got.len(), 2);
        assert_eq!(got["H-8"], 0.3);
        let off = LinkRules {
            disabled: true,
            ..LinkRules::default()
        };
        assert!(rule_links(&off, &labels, body).is_empty());
    }

    #[test]
    fn cursor_skips_only_older_items_and_advances() {
        let t = |s: i64| chrono::DateTime::from_timestamp(s, 0).unwrap();
        let mut c = SyncCursor::default();
        assert!(!c.stored_before(Some(t(10))));
        c.advance([("1", Some(t(10))), ("2", Some(t(20))), ("3", Some(t(20)))]);
        assert_eq!(c.time, Some(t(20)));
        assert_eq!(c.ids, vec!["2".to_string(), "3".into()]);
        assert!(c.stored_before(Some(t(15))), "older than the cursor");
        assert!(
            !c.stored_before(Some(t(20))),
            "at the cursor: compared with the stored item, never skipped"
        );
        assert!(!c.stored_before(Some(t(21))), "updated again");
        assert!(!c.stored_before(None), "no update time");
        c.advance([("4", Some(t(20)))]);
        assert_eq!(c.ids.len(), 3);
        c.advance([("5", Some(t(5)))]);
        assert_eq!(
            c.time,
            Some(t(20)),
            "older items never move the cursor back"
        );
    }

    #[test]
    fn ids_and_env_names() {
        assert!(is_valid_id("H-12"));
        assert!(is_valid_id("web.v2_x"));
        assert!(!is_valid_id(""));
        assert!(!is_valid_id("-x"));
        assert!(!is_valid_id("a/b"));
        assert!(!is_valid_id(&"a".repeat(65)));
        assert!(is_valid_env_name("GITHUB_TOKEN"));
        assert!(!is_valid_env_name("ghp_abcdef123"));
        assert!(!is_valid_env_name("1TOKEN"));
    }
}
