//! Translation between proto messages and domain types. Conversions into the
//! domain validate every field and report each bad one by its path, so a
//! client learns all its mistakes from one call.

use chrono::{DateTime, Utc};

use crate::domain::{
    self, BasicAuth, BearerAuth, ChecklistTask, CsvSpec, Direction, Goal, GoalLevel, HttpJsonSpec,
    Hypothesis, HypothesisStatus, Item, ItemState, KeyValueArea, Link, LinkOrigin, LinkRules,
    Metric, MetricSource, Observation, PosthogSpec, PrometheusAuth, PrometheusSpec, Removal,
    RemovalReason, Source, SqlSpec, Time, TrackerKind,
};
use crate::engine::MetricView;
use crate::engine::{Error, FieldViolation, Result, ScoreView};
use crate::proto as pb;

/// Collects field violations under a path prefix.
pub struct Check {
    prefix: String,
    pub violations: Vec<FieldViolation>,
}

impl Check {
    pub fn new(prefix: impl Into<String>) -> Self {
        Check {
            prefix: prefix.into(),
            violations: Vec::new(),
        }
    }

    pub fn field(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    pub fn fail(&mut self, name: &str, description: impl Into<String>) {
        let field = self.field(name);
        self.violations
            .push(FieldViolation::new(field, description));
    }

    pub fn id(&mut self, name: &str, value: &str) {
        if value.is_empty() {
            self.fail(name, "is required");
        } else if !domain::is_valid_id(value) {
            self.fail(
                name,
                "must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
            );
        }
    }

    /// Free text kept as written (bodies, descriptions, statements).
    pub fn text(&mut self, name: &str, value: &str, required: bool, max: usize) {
        if required && value.trim().is_empty() {
            self.fail(name, "is required");
        } else if value.len() > max {
            self.fail(name, format!("is longer than {max} bytes"));
        }
    }

    /// One line naming or setting something (a title, a key, a rule): free
    /// text without control characters, which no tracker produces there.
    pub fn line(&mut self, name: &str, value: &str, required: bool, max: usize) {
        let before = self.violations.len();
        self.text(name, value, required, max);
        if self.violations.len() == before && domain::has_control(value) {
            self.fail(
                name,
                "must not contain control characters (NUL, newline, escape, ...)",
            );
        }
    }

    /// A title: one line, where a tab is allowed. GitHub, GitLab and Jira
    /// keep a tab typed or pasted into a title, so a sync brings them, and
    /// the API takes what a sync does.
    pub fn title(&mut self, name: &str, value: &str, required: bool, max: usize) {
        let before = self.violations.len();
        self.text(name, value, required, max);
        if self.violations.len() == before && value.chars().any(|c| c != '\t' && c.is_control()) {
            self.fail(
                name,
                "must not contain control characters other than tab (NUL, newline, escape, ...)",
            );
        }
    }

    /// A number in the unit of a metric: finite and at most
    /// [`domain::MAX_METRIC_MAGNITUDE`] either side of 0.
    pub fn metric_number(&mut self, name: &str, value: f64) {
        if !(value.is_finite() && value.abs() <= domain::MAX_METRIC_MAGNITUDE) {
            self.fail(name, "must be a finite number from -1e12 to 1e12");
        }
    }

    pub fn unit_interval(&mut self, name: &str, value: f64, allow_zero: bool) {
        let ok = value.is_finite()
            && value <= 1.0
            && if allow_zero {
                value >= 0.0
            } else {
                value > 0.0
            };
        if !ok {
            self.fail(
                name,
                if allow_zero {
                    "must be in [0, 1]"
                } else {
                    "must be in (0, 1]"
                },
            );
        }
    }

    pub fn time(&mut self, name: &str, ts: Option<&prost_types::Timestamp>) -> Option<Time> {
        let ts = ts?;
        match from_timestamp(ts) {
            Some(t) => Some(t),
            None => {
                self.fail(name, "must be a valid time between 1678 and 2261");
                None
            }
        }
    }

    /// A time that must not lie in the future: at most
    /// [`domain::MAX_CLOCK_SKEW`] after `now` (the server's clock), so a
    /// client whose clock runs a little ahead is not refused.
    pub fn not_future(&mut self, name: &str, t: Time, now: Time) -> Option<Time> {
        if t <= now + domain::MAX_CLOCK_SKEW {
            return Some(t);
        }
        self.fail(
            name,
            format!(
                "{} is in the future (the server's clock is {}; at most {} s of clock skew is allowed)",
                t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                domain::MAX_CLOCK_SKEW.num_seconds()
            ),
        );
        None
    }

    pub fn finish<T>(self, value: T) -> Result<T> {
        if self.violations.is_empty() {
            Ok(value)
        } else {
            Err(Error::InvalidArgument(self.violations))
        }
    }
}

pub fn timestamp(t: &Time) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

pub fn from_timestamp(ts: &prost_types::Timestamp) -> Option<Time> {
    if !(0..1_000_000_000).contains(&ts.nanos) {
        return None;
    }
    let t = DateTime::<Utc>::from_timestamp(ts.seconds, ts.nanos as u32)?;
    t.timestamp_nanos_opt().map(|_| t)
}

const MAX_TEXT: usize = 1 << 20;
const MAX_SHORT: usize = 1024;

// ----- sources -----

pub fn source_to_pb(s: &Source) -> pb::Source {
    pb::Source {
        id: s.id.clone(),
        kind: match s.kind {
            TrackerKind::Github => pb::TrackerKind::Github,
            TrackerKind::Gitlab => pb::TrackerKind::Gitlab,
            TrackerKind::Jira => pb::TrackerKind::Jira,
            TrackerKind::Redmine => pb::TrackerKind::Redmine,
            TrackerKind::Push => pb::TrackerKind::Push,
        } as i32,
        base_url: s.base_url.clone(),
        project_key: s.project_key.clone(),
        token_env: s.token_env.clone(),
        link_rules: Some(pb::LinkRules {
            label_prefix: s.link_rules.label_prefix.clone(),
            body_keyword: s.link_rules.body_keyword.clone(),
            disabled: s.link_rules.disabled,
        }),
        estimate_field: s.estimate_field.clone(),
        create_time: Some(timestamp(&s.create_time)),
        update_time: Some(timestamp(&s.update_time)),
    }
}

pub fn source_from_pb(p: &pb::Source, prefix: &str) -> Result<Source> {
    let mut c = Check::new(prefix);
    c.id("id", &p.id);
    let kind = match pb::TrackerKind::try_from(p.kind) {
        Ok(pb::TrackerKind::Github) => Some(TrackerKind::Github),
        Ok(pb::TrackerKind::Gitlab) => Some(TrackerKind::Gitlab),
        Ok(pb::TrackerKind::Jira) => Some(TrackerKind::Jira),
        Ok(pb::TrackerKind::Redmine) => Some(TrackerKind::Redmine),
        Ok(pb::TrackerKind::Push) => Some(TrackerKind::Push),
        _ => {
            c.fail("kind", "must be one of GITHUB, GITLAB, JIRA, REDMINE, PUSH");
            None
        }
    };
    if kind == Some(TrackerKind::Push) {
        // Nothing of a tracker's connection means anything here: refused
        // rather than ignored, so that a caller who meant a tracker learns
        // it now, not when no sync ever comes.
        let no_tracker = "must be empty for a PUSH source: plumbline does not reach a tracker for it, an integration sends its items with UpsertItems";
        if !p.base_url.is_empty() {
            c.fail("base_url", no_tracker);
        }
        if !p.token_env.is_empty() {
            c.fail("token_env", no_tracker);
        }
        if !p.estimate_field.is_empty() {
            c.fail(
                "estimate_field",
                "must be empty for a PUSH source: its items carry their estimate (Item.estimate)",
            );
        }
        c.line("project_key", &p.project_key, false, MAX_SHORT);
    } else {
        if !(p.base_url.starts_with("http://") || p.base_url.starts_with("https://"))
            || p.base_url.len() > MAX_SHORT
            || p.base_url.chars().any(char::is_whitespace)
        {
            c.fail("base_url", "must be an http:// or https:// URL");
        }
        if domain::has_control(&p.base_url) {
            c.fail("base_url", "must not contain control characters");
        }
        c.line("project_key", &p.project_key, true, MAX_SHORT);
        if !p.token_env.is_empty() && !domain::is_valid_env_name(&p.token_env) {
            c.fail(
                "token_env",
                "must be the NAME of an environment variable (A-Z, 0-9, _), not the token itself",
            );
        }
    }
    let rules = p.link_rules.clone().unwrap_or_default();
    c.line("link_rules.label_prefix", &rules.label_prefix, false, 64);
    c.line("link_rules.body_keyword", &rules.body_keyword, false, 64);
    c.line("estimate_field", &p.estimate_field, false, 256);
    let now = Utc::now();
    c.finish(())?;
    Ok(Source {
        id: p.id.clone(),
        kind: kind.unwrap_or(TrackerKind::Github),
        base_url: p.base_url.trim_end_matches('/').to_string(),
        project_key: p.project_key.clone(),
        token_env: p.token_env.clone(),
        link_rules: LinkRules {
            label_prefix: rules.label_prefix,
            body_keyword: rules.body_keyword,
            disabled: rules.disabled,
        },
        estimate_field: p.estimate_field.clone(),
        create_time: now,
        update_time: now,
    })
}

// ----- items -----

pub fn item_to_pb(it: &Item) -> pb::Item {
    pb::Item {
        key: it.key(),
        source_id: it.source_id.clone(),
        external_id: it.external_id.clone(),
        title: it.title.clone(),
        body: it.body.clone(),
        url: it.url.clone(),
        state: match it.state {
            ItemState::Open => pb::ItemState::Open,
            ItemState::Closed => pb::ItemState::Closed,
        } as i32,
        labels: it.labels.clone(),
        estimate: it.estimate,
        parent_key: it.parent_key.clone(),
        create_time: it.create_time.as_ref().map(timestamp),
        update_time: it.update_time.as_ref().map(timestamp),
        close_time: it.close_time.as_ref().map(timestamp),
        tasks: it
            .tasks()
            .into_iter()
            .map(|ChecklistTask { text, done }| pb::ChecklistTask { text, done })
            .collect(),
        removal: None,
        votes: it.votes,
    }
}

/// An item as the API shows it, with its removal when its tracker no
/// longer returns it.
pub fn item_with_removal_to_pb(it: &Item, removal: Option<&Removal>) -> pb::Item {
    let mut p = item_to_pb(it);
    p.removal = removal.map(|r| pb::Removal {
        remove_time: Some(timestamp(&r.remove_time)),
        reason: match r.reason {
            RemovalReason::Deleted => pb::RemovalReason::Deleted,
            RemovalReason::Moved => pb::RemovalReason::Moved,
            RemovalReason::NotReturned => pb::RemovalReason::NotReturned,
        } as i32,
        detail: r.detail.clone(),
    });
    p
}

pub fn item_state_from_pb(state: i32, c: &mut Check, name: &str) -> Option<ItemState> {
    match pb::ItemState::try_from(state) {
        Ok(pb::ItemState::Unspecified) => None,
        Ok(pb::ItemState::Open) => Some(ItemState::Open),
        Ok(pb::ItemState::Closed) => Some(ItemState::Closed),
        Err(_) => {
            c.fail(name, "must be OPEN or CLOSED");
            None
        }
    }
}

/// Validates one item of an upsert; `prefix` is e.g. `items[3]`.
/// An item's id in its tracker: required, short, one word.
pub fn check_external_id(external_id: &str, c: &mut Check) {
    if external_id.trim().is_empty() {
        c.fail("external_id", "is required");
    } else if external_id.len() > 256
        || external_id
            .chars()
            .any(|ch| ch.is_control() || ch.is_whitespace())
    {
        c.fail(
            "external_id",
            "must be at most 256 characters, without spaces or control characters",
        );
    }
}

pub fn item_from_pb(p: &pb::Item, c: &mut Check) -> Option<Item> {
    let before = c.violations.len();
    c.id("source_id", &p.source_id);
    check_external_id(&p.external_id, c);
    if !p.key.is_empty() && p.key != domain::item_key(&p.source_id, &p.external_id) {
        c.fail(
            "key",
            "is output only; leave it empty or equal to SOURCE/EXTERNAL_ID",
        );
    }
    c.title("title", &p.title, true, MAX_SHORT * 4);
    c.text("body", &p.body, false, MAX_TEXT);
    c.line("url", &p.url, false, MAX_SHORT * 2);
    let state = item_state_from_pb(p.state, c, "state").unwrap_or(ItemState::Open);
    if p.labels.len() > 100 {
        c.fail("labels", "at most 100 labels");
    }
    for (i, l) in p.labels.iter().enumerate() {
        if l.trim().is_empty() || l.len() > 256 {
            c.fail(&format!("labels[{i}]"), "must be 1-256 bytes and not blank");
        } else if domain::has_control(l) {
            c.fail(
                &format!("labels[{i}]"),
                "must not contain control characters",
            );
        }
    }
    if let Some(e) = p.estimate
        && !domain::is_valid_estimate(e)
    {
        c.fail(
            "estimate",
            "must be a size from 0.01 to 1e6; leave it unset for unestimated items",
        );
    }
    c.line("parent_key", &p.parent_key, false, MAX_SHORT);
    if !p.parent_key.is_empty() && p.parent_key == domain::item_key(&p.source_id, &p.external_id) {
        c.fail(
            "parent_key",
            "names the item itself; an item cannot be its own parent",
        );
    }
    let create_time = c.time("create_time", p.create_time.as_ref());
    let update_time = c.time("update_time", p.update_time.as_ref());
    let close_time = c.time("close_time", p.close_time.as_ref());
    if c.violations.len() > before {
        return None;
    }
    Some(Item {
        source_id: p.source_id.clone(),
        external_id: p.external_id.clone(),
        title: p.title.clone(),
        body: p.body.clone(),
        url: p.url.clone(),
        state,
        labels: p.labels.clone(),
        estimate: p.estimate,
        parent_key: p.parent_key.clone(),
        create_time,
        update_time,
        close_time,
        votes: p.votes,
    })
}

// ----- goals -----

pub fn goal_to_pb(g: &Goal, effective_weight: f64) -> pb::Goal {
    pb::Goal {
        id: g.id.clone(),
        title: g.title.clone(),
        description: g.description.clone(),
        level: match g.level {
            GoalLevel::Strategic => pb::GoalLevel::Strategic,
            GoalLevel::Intermediate => pb::GoalLevel::Intermediate,
            GoalLevel::Tactical => pb::GoalLevel::Tactical,
        } as i32,
        parent_id: g.parent_id.clone(),
        key_value_area: match g.key_value_area {
            KeyValueArea::Unspecified => pb::KeyValueArea::Unspecified,
            KeyValueArea::CurrentValue => pb::KeyValueArea::CurrentValue,
            KeyValueArea::UnrealizedValue => pb::KeyValueArea::UnrealizedValue,
            KeyValueArea::TimeToMarket => pb::KeyValueArea::TimeToMarket,
            KeyValueArea::AbilityToInnovate => pb::KeyValueArea::AbilityToInnovate,
        } as i32,
        weight: Some(g.weight),
        effective_weight,
        create_time: Some(timestamp(&g.create_time)),
        update_time: Some(timestamp(&g.update_time)),
    }
}

pub fn goal_from_pb(p: &pb::Goal, prefix: &str) -> Result<Goal> {
    let mut c = Check::new(prefix);
    c.id("id", &p.id);
    c.title("title", &p.title, true, MAX_SHORT);
    c.text("description", &p.description, false, MAX_TEXT);
    let level = match pb::GoalLevel::try_from(p.level) {
        Ok(pb::GoalLevel::Strategic) => GoalLevel::Strategic,
        Ok(pb::GoalLevel::Intermediate) => GoalLevel::Intermediate,
        Ok(pb::GoalLevel::Tactical) => GoalLevel::Tactical,
        _ => {
            c.fail("level", "must be STRATEGIC, INTERMEDIATE or TACTICAL");
            GoalLevel::Strategic
        }
    };
    if !p.parent_id.is_empty() && !domain::is_valid_id(&p.parent_id) {
        c.fail("parent_id", "is not a valid goal id");
    }
    let kva = match pb::KeyValueArea::try_from(p.key_value_area) {
        Ok(pb::KeyValueArea::Unspecified) => KeyValueArea::Unspecified,
        Ok(pb::KeyValueArea::CurrentValue) => KeyValueArea::CurrentValue,
        Ok(pb::KeyValueArea::UnrealizedValue) => KeyValueArea::UnrealizedValue,
        Ok(pb::KeyValueArea::TimeToMarket) => KeyValueArea::TimeToMarket,
        Ok(pb::KeyValueArea::AbilityToInnovate) => KeyValueArea::AbilityToInnovate,
        Err(_) => {
            c.fail("key_value_area", "is not a known key value area");
            KeyValueArea::Unspecified
        }
    };
    let weight = p.weight.unwrap_or(1.0);
    if !(0.0..=domain::MAX_GOAL_WEIGHT).contains(&weight) {
        c.fail("weight", "must be a number from 0 to 1e6");
    }
    let now = Utc::now();
    c.finish(Goal {
        id: p.id.clone(),
        title: p.title.clone(),
        description: p.description.clone(),
        level,
        parent_id: p.parent_id.clone(),
        key_value_area: kva,
        weight,
        create_time: now,
        update_time: now,
    })
}

// ----- metrics -----

pub fn metric_to_pb(m: &MetricView, now: Time) -> pb::Metric {
    let x = &m.metric;
    pb::Metric {
        id: x.id.clone(),
        name: x.name.clone(),
        unit: x.unit.clone(),
        direction: match x.direction {
            Direction::HigherIsBetter => pb::MetricDirection::HigherIsBetter,
            Direction::LowerIsBetter => pb::MetricDirection::LowerIsBetter,
        } as i32,
        baseline: x.baseline,
        target: x.target,
        cadence: x.cadence.map(|d| prost_types::Duration {
            seconds: d.num_seconds(),
            nanos: d.subsec_nanos(),
        }),
        current_value: m.observations.latest.map(|(_, v)| v),
        last_observe_time: m.observations.latest.map(|(t, _)| timestamp(&t)),
        observation_count: m.observations.count,
        gap: m.gap,
        stale: m.stale(now),
        create_time: Some(timestamp(&x.create_time)),
        update_time: Some(timestamp(&x.update_time)),
        source: x.source.as_ref().map(metric_source_to_pb),
        pull_status: None,
    }
}

/// A pull status for the API; the error was scrubbed before it was stored.
pub fn pull_status_to_pb(p: &crate::domain::PullStatus) -> pb::MetricPullStatus {
    pb::MetricPullStatus {
        last_pull_time: p.last_pull_time.as_ref().map(timestamp),
        last_success_time: p.last_success_time.as_ref().map(timestamp),
        last_stored_count: p.last_stored.min(i32::MAX as u32) as i32,
        last_refused_count: p.last_refused.min(i32::MAX as u32) as i32,
        last_error: p.last_error.clone(),
    }
}

/// A duration of the settings (`1d`) for the API; `None` when unset.
fn setting_duration_pb(text: Option<&str>) -> Option<prost_types::Duration> {
    let d = crate::domain::parse_setting_duration(text?, u64::MAX).ok()?;
    Some(prost_types::Duration {
        seconds: d.as_secs().min(i64::MAX as u64) as i64,
        nanos: 0,
    })
}

/// A duration from the API as the settings write it (`1day`); a negative
/// or fractional one is kept as seconds, for the checks to refuse.
fn setting_duration_text(d: Option<&prost_types::Duration>) -> Option<String> {
    let d = d?;
    if d.seconds <= 0 || d.nanos != 0 {
        return Some(format!("{}s", d.seconds));
    }
    Some(humantime::format_duration(std::time::Duration::from_secs(d.seconds as u64)).to_string())
}

fn none_if_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

pub fn metric_source_to_pb(s: &MetricSource) -> pb::MetricSource {
    use pb::metric_source::Kind;
    let o = |v: &Option<String>| v.clone().unwrap_or_default();
    let kind = match s {
        MetricSource::HttpJson(h) => Kind::HttpJson(pb::HttpJsonMetricSource {
            url: h.url.clone(),
            points_pointer: h.points_pointer.clone(),
            time_field: h.time_field.clone(),
            value_field: h.value_field.clone(),
            since_param: o(&h.since_param),
            header_name: o(&h.header_name),
            header_env: o(&h.header_env),
        }),
        MetricSource::Csv(c) => Kind::Csv(pb::CsvMetricSource {
            location: c.location.clone(),
            since_param: o(&c.since_param),
        }),
        MetricSource::Posthog(p) => Kind::Posthog(pb::PosthogMetricSource {
            base_url: p.base_url.clone(),
            project_id: p.project_id.clone(),
            api_key_env: p.api_key_env.clone(),
            hogql: o(&p.hogql),
            trend_event: o(&p.trend_event),
            trend_math: o(&p.trend_math),
        }),
        MetricSource::Prometheus(p) => {
            let (bearer_token_env, basic_username, basic_password_env) = match &p.auth {
                None => Default::default(),
                Some(PrometheusAuth::Bearer(b)) => {
                    (b.token_env.clone(), String::new(), String::new())
                }
                Some(PrometheusAuth::Basic(b)) => {
                    (String::new(), b.username.clone(), b.password_env.clone())
                }
            };
            Kind::Prometheus(pb::PrometheusMetricSource {
                base_url: p.base_url.clone(),
                query: p.query.clone(),
                step: setting_duration_pb(Some(&p.step)),
                lookback: setting_duration_pb(p.lookback.as_deref()),
                bearer_token_env,
                basic_username,
                basic_password_env,
            })
        }
        MetricSource::Sql(q) => Kind::Sql(pb::SqlMetricSource {
            dsn_env: q.dsn_env.clone(),
            query: q.query.clone(),
            statement_timeout: setting_duration_pb(q.statement_timeout.as_deref()),
            connect_timeout: setting_duration_pb(q.connect_timeout.as_deref()),
        }),
    };
    pb::MetricSource {
        poll_interval: s.poll_minutes().map(|m| prost_types::Duration {
            seconds: i64::from(m) * 60,
            nanos: 0,
        }),
        kind: Some(kind),
    }
}

/// A metric source from the API, checked; violations are named under
/// `{c's prefix}.source`.
pub fn metric_source_from_pb(p: &pb::MetricSource, c: &mut Check) -> Option<MetricSource> {
    use pb::metric_source::Kind;
    let poll_minutes = match &p.poll_interval {
        None => None,
        Some(d) if d.seconds >= 60 && d.seconds <= 366 * 86_400 && d.nanos == 0 => {
            Some((d.seconds / 60) as u32)
        }
        Some(_) => {
            c.fail(
                "source.poll_interval",
                "must be whole seconds between one minute and a year",
            );
            None
        }
    };
    let (field, source) = match &p.kind {
        None => {
            c.fail(
                "source",
                "name a kind: http_json, csv, posthog, prometheus or sql",
            );
            return None;
        }
        Some(Kind::HttpJson(h)) => (
            "source.http_json",
            MetricSource::HttpJson(HttpJsonSpec {
                url: h.url.clone(),
                points_pointer: h.points_pointer.clone(),
                time_field: if h.time_field.is_empty() {
                    "at".into()
                } else {
                    h.time_field.clone()
                },
                value_field: if h.value_field.is_empty() {
                    "value".into()
                } else {
                    h.value_field.clone()
                },
                since_param: none_if_empty(&h.since_param),
                header_name: none_if_empty(&h.header_name),
                header_env: none_if_empty(&h.header_env),
                poll_minutes,
            }),
        ),
        Some(Kind::Csv(x)) => (
            "source.csv",
            MetricSource::Csv(CsvSpec {
                location: x.location.clone(),
                since_param: none_if_empty(&x.since_param),
                poll_minutes,
            }),
        ),
        Some(Kind::Posthog(x)) => (
            "source.posthog",
            MetricSource::Posthog(PosthogSpec {
                base_url: x.base_url.clone(),
                project_id: x.project_id.clone(),
                api_key_env: x.api_key_env.clone(),
                hogql: none_if_empty(&x.hogql),
                trend_event: none_if_empty(&x.trend_event),
                trend_math: none_if_empty(&x.trend_math),
                poll_minutes,
            }),
        ),
        Some(Kind::Prometheus(x)) => {
            let auth = match (
                x.bearer_token_env.is_empty(),
                x.basic_username.is_empty() && x.basic_password_env.is_empty(),
            ) {
                (true, true) => None,
                (false, true) => Some(PrometheusAuth::Bearer(BearerAuth {
                    token_env: x.bearer_token_env.clone(),
                })),
                (true, false) => Some(PrometheusAuth::Basic(BasicAuth {
                    username: x.basic_username.clone(),
                    password_env: x.basic_password_env.clone(),
                })),
                (false, false) => {
                    c.fail(
                        "source.prometheus.bearer_token_env",
                        "bearer and basic auth exclude each other: set one",
                    );
                    None
                }
            };
            (
                "source.prometheus",
                MetricSource::Prometheus(PrometheusSpec {
                    base_url: x.base_url.clone(),
                    query: x.query.clone(),
                    step: setting_duration_text(x.step.as_ref()).unwrap_or_default(),
                    lookback: setting_duration_text(x.lookback.as_ref()),
                    auth,
                    poll_minutes,
                }),
            )
        }
        Some(Kind::Sql(x)) => (
            "source.sql",
            MetricSource::Sql(SqlSpec {
                dsn_env: x.dsn_env.clone(),
                query: x.query.clone(),
                statement_timeout: setting_duration_text(x.statement_timeout.as_ref()),
                connect_timeout: setting_duration_text(x.connect_timeout.as_ref()),
                poll_minutes,
            }),
        ),
    };
    let before = c.violations.len();
    for (name, why) in source.problems() {
        if name == "poll_minutes" {
            continue;
        }
        c.fail(&format!("{field}.{name}"), why);
    }
    (c.violations.len() == before).then_some(source)
}

pub fn metric_from_pb(p: &pb::Metric, prefix: &str) -> Result<Metric> {
    let mut c = Check::new(prefix);
    c.id("id", &p.id);
    c.title("name", &p.name, true, MAX_SHORT);
    c.line("unit", &p.unit, false, 64);
    c.metric_number("baseline", p.baseline);
    c.metric_number("target", p.target);
    if p.baseline == p.target {
        c.fail("target", "must differ from the baseline");
    }
    let implied = Direction::implied(p.baseline, p.target);
    let direction = match pb::MetricDirection::try_from(p.direction) {
        Ok(pb::MetricDirection::Unspecified) => implied,
        Ok(pb::MetricDirection::HigherIsBetter) => Direction::HigherIsBetter,
        Ok(pb::MetricDirection::LowerIsBetter) => Direction::LowerIsBetter,
        Err(_) => {
            c.fail("direction", "is not a known direction");
            implied
        }
    };
    if direction != implied && p.baseline != p.target {
        c.fail(
            "direction",
            "disagrees with baseline and target (higher is better needs target > baseline)",
        );
    }
    let cadence = match &p.cadence {
        None => None,
        Some(d)
            if d.seconds > 0
                && d.seconds < 100 * 365 * 86_400
                && (0..1_000_000_000).contains(&d.nanos) =>
        {
            Some(
                chrono::Duration::seconds(d.seconds)
                    + chrono::Duration::nanoseconds(d.nanos as i64),
            )
        }
        Some(_) => {
            c.fail("cadence", "must be a positive duration under 100 years");
            None
        }
    };
    let source = p
        .source
        .as_ref()
        .and_then(|s| metric_source_from_pb(s, &mut c));
    let now = Utc::now();
    c.finish(Metric {
        id: p.id.clone(),
        name: p.name.clone(),
        unit: p.unit.clone(),
        direction,
        baseline: p.baseline,
        target: p.target,
        cadence,
        source,
        create_time: now,
        update_time: now,
    })
}

/// An observation; unset `observe_time` means `now` (the server's clock),
/// and one after `now` beyond the allowed clock skew is refused.
pub fn observation_from_pb(p: &pb::Observation, c: &mut Check, now: Time) -> Option<Observation> {
    let before = c.violations.len();
    c.id("metric_id", &p.metric_id);
    c.metric_number("value", p.value);
    let t = c
        .time("observe_time", p.observe_time.as_ref())
        .and_then(|t| c.not_future("observe_time", t, now));
    (c.violations.len() == before).then(|| Observation {
        metric_id: p.metric_id.clone(),
        value: p.value,
        observe_time: t.unwrap_or(now),
    })
}

// ----- hypotheses -----

/// `value` is the hypothesis value from the index (output only).
pub fn hypothesis_to_pb(h: &Hypothesis, value: f64) -> pb::Hypothesis {
    pb::Hypothesis {
        id: h.id.clone(),
        statement: h.statement.clone(),
        goal_id: h.goal_id.clone(),
        metric_id: h.metric_id.clone(),
        expected_effect: h.expected_effect,
        confidence: Some(h.confidence),
        status: match h.status {
            HypothesisStatus::Proposed => pb::HypothesisStatus::Proposed,
            HypothesisStatus::Testing => pb::HypothesisStatus::Testing,
            HypothesisStatus::Validated => pb::HypothesisStatus::Validated,
            HypothesisStatus::Invalidated => pb::HypothesisStatus::Invalidated,
        } as i32,
        check_time: h.check_time.as_ref().map(timestamp),
        value,
        create_time: Some(timestamp(&h.create_time)),
        update_time: Some(timestamp(&h.update_time)),
        unsupported: false,
    }
}

pub fn hypothesis_from_pb(p: &pb::Hypothesis, prefix: &str) -> Result<Hypothesis> {
    let mut c = Check::new(prefix);
    c.id("id", &p.id);
    c.text("statement", &p.statement, true, MAX_TEXT);
    c.id("goal_id", &p.goal_id);
    c.id("metric_id", &p.metric_id);
    c.unit_interval("expected_effect", p.expected_effect, false);
    let confidence = p.confidence.unwrap_or(0.5);
    c.unit_interval("confidence", confidence, true);
    let status = match pb::HypothesisStatus::try_from(p.status) {
        Ok(pb::HypothesisStatus::Unspecified | pb::HypothesisStatus::Proposed) => {
            HypothesisStatus::Proposed
        }
        Ok(pb::HypothesisStatus::Testing) => HypothesisStatus::Testing,
        Ok(pb::HypothesisStatus::Validated) => HypothesisStatus::Validated,
        Ok(pb::HypothesisStatus::Invalidated) => HypothesisStatus::Invalidated,
        Err(_) => {
            c.fail("status", "is not a known status");
            HypothesisStatus::Proposed
        }
    };
    let check_time = c.time("check_time", p.check_time.as_ref());
    let now = Utc::now();
    c.finish(Hypothesis {
        id: p.id.clone(),
        statement: p.statement.clone(),
        goal_id: p.goal_id.clone(),
        metric_id: p.metric_id.clone(),
        expected_effect: p.expected_effect,
        confidence,
        status,
        check_time,
        create_time: now,
        update_time: now,
    })
}

// ----- links and scores -----

pub fn link_to_pb(l: &Link) -> pb::Link {
    pb::Link {
        item_key: l.item_key.clone(),
        hypothesis_id: l.hypothesis_id.clone(),
        contribution: l.contribution,
        origin: match l.origin {
            LinkOrigin::Api => pb::LinkOrigin::Api,
            LinkOrigin::Rule => pb::LinkOrigin::Rule,
        } as i32,
        rationale: l.rationale.clone(),
        create_time: Some(timestamp(&l.create_time)),
        update_time: Some(timestamp(&l.update_time)),
    }
}

/// An item's score as served; its flags in flag order.
pub fn score_to_pb(v: ScoreView) -> pb::ItemScore {
    let mut flags = Vec::new();
    if v.unaligned {
        flags.push(pb::ScoreFlag::Unaligned as i32);
    }
    if v.unestimated {
        flags.push(pb::ScoreFlag::Unestimated as i32);
    }
    if v.stale_metric {
        flags.push(pb::ScoreFlag::StaleMetric as i32);
    }
    if v.asked_for_not_aligned {
        flags.push(pb::ScoreFlag::AskedForNotAligned as i32);
    }
    let demand = demand_to_pb(&v.demand);
    pb::ItemScore {
        item_key: v.item_key,
        title: v.title,
        value: v.value,
        size: v.size,
        value_density: v.value_density,
        flags,
        terms: v
            .terms
            .into_iter()
            .map(|t| pb::ScoreTerm {
                hypothesis_id: t.term.hypothesis_id,
                goal_id: t.term.goal_id,
                goal_weight: t.term.goal_weight,
                metric_id: t.term.metric_id,
                gap: t.term.gap,
                expected_effect: t.term.expected_effect,
                confidence: t.term.confidence,
                contribution: t.term.contribution,
                effective_contribution: t.term.effective_contribution,
                value: t.term.value,
                metric_stale: t.metric_stale,
                hypothesis_unsupported: t.hypothesis_unsupported,
            })
            .collect(),
        demand: Some(demand),
    }
}

/// An importance on the wire; `None` is UNSPECIFIED.
pub fn importance_to_pb(i: Option<domain::Importance>) -> pb::Importance {
    use domain::Importance as I;
    match i {
        None => pb::Importance::Unspecified,
        Some(I::NotImportant) => pb::Importance::NotImportant,
        Some(I::NiceToHave) => pb::Importance::NiceToHave,
        Some(I::Important) => pb::Importance::Important,
        Some(I::Critical) => pb::Importance::Critical,
    }
}

/// The customers behind an item, as served beside its score.
pub fn demand_to_pb(d: &domain::Demand) -> pb::Demand {
    let count = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
    pb::Demand {
        insight_count: count(d.insights),
        distinct_customers: count(d.customers),
        distinct_segments: count(d.segments),
        highest_importance: importance_to_pb(d.highest_importance) as i32,
        votes: d.votes,
    }
}

/// The value of a required message field, or INVALID_ARGUMENT naming it.
pub fn required<'a, T>(field: &str, v: Option<&'a T>) -> Result<&'a T> {
    v.ok_or_else(|| Error::invalid(field, "is required"))
}

/// INVALID_ARGUMENT unless `id` is a well-formed id.
pub fn require_id(field: &str, id: &str) -> Result<()> {
    let mut c = Check::new("");
    c.id(field, id);
    c.finish(())
}

#[cfg(test)]
mod bounds {
    //! Every number the API accepts keeps every score finite and in range:
    //! values generated across and beyond each bound go through the same
    //! conversions the handlers use, and whatever they accept is scored.

    use super::*;
    use crate::score::{self, TermInput};
    use proptest::prelude::*;

    /// Mostly numbers inside the accepted ranges and at their edges; some
    /// hostile ones (subnormal, huge, infinite, NaN) that must be refused.
    fn number() -> impl Strategy<Value = f64> {
        prop_oneof![
            3 => 0.0..=1.0f64,
            2 => 0.01..=1e6f64,
            2 => -1e12..=1e12f64,
            2 => prop::sample::select(vec![
                0.0, 5e-324, 0.01, 1.0, 1e6, -1e12, 1e12, 1e308, -1e308, f64::MAX,
                f64::INFINITY, f64::NAN,
            ]),
            1 => any::<f64>(),
        ]
    }

    fn goal(i: usize, weight: f64) -> Result<Goal> {
        goal_from_pb(
            &pb::Goal {
                id: format!("g{i}"),
                title: "Goal".into(),
                level: pb::GoalLevel::Strategic as i32,
                weight: Some(weight),
                ..Default::default()
            },
            "goal",
        )
    }

    proptest! {
        #[test]
        fn accepted_numbers_give_finite_scores_in_range(
            weights in prop::collection::vec(number(), 1..5),
            (baseline, target, current) in (number(), number(), number()),
            effects in prop::collection::vec((number(), number(), number()), 1..5),
            estimate in number(),
        ) {
            let goals: Vec<Goal> = weights
                .iter()
                .enumerate()
                .filter_map(|(i, w)| goal(i, *w).ok())
                .collect();
            for g in &goals {
                prop_assert!((0.0..=domain::MAX_GOAL_WEIGHT).contains(&g.weight));
            }
            let goal_weights = score::effective_goal_weights(&goals);
            let sum: f64 = goal_weights.values().sum();
            for w in goal_weights.values() {
                prop_assert!(w.is_finite() && (0.0..=1.0).contains(w), "weight {}", w);
            }
            // Siblings share a weight of 1, unless none weighs anything (two
            // of 1e308 once overflowed their sum and all weighed 0).
            if goals.iter().any(|g| g.weight > 0.0) {
                prop_assert!((sum - 1.0).abs() < 1e-9, "weights sum to {}", sum);
            } else {
                prop_assert_eq!(sum, 0.0);
            }

            let metric = metric_from_pb(
                &pb::Metric {
                    id: "m".into(),
                    name: "Metric".into(),
                    baseline,
                    target,
                    ..Default::default()
                },
                "metric",
            );
            let mut c = Check::new("");
            let observed = observation_from_pb(
                &pb::Observation { metric_id: "m".into(), value: current, observe_time: None },
                &mut c,
                Utc::now(),
            );
            let gap = match &metric {
                Ok(m) => {
                    prop_assert!((m.target - m.baseline).is_finite() && m.target != m.baseline);
                    score::gap(m.baseline, m.target, observed.map(|o| o.value))
                }
                Err(_) => 0.0,
            };
            prop_assert!((0.0..=1.0).contains(&gap), "gap {}", gap);

            // One hypothesis per accepted (effect, confidence), each with
            // one link of the accepted contribution.
            let goal_weight = goal_weights.values().next().copied().unwrap_or(0.0);
            let mut inputs = Vec::new();
            for (i, (effect, confidence, contribution)) in effects.iter().enumerate() {
                let h = hypothesis_from_pb(
                    &pb::Hypothesis {
                        id: format!("h{i}"),
                        statement: "We believe".into(),
                        goal_id: "g0".into(),
                        metric_id: "m".into(),
                        expected_effect: *effect,
                        confidence: Some(*confidence),
                        ..Default::default()
                    },
                    "hypothesis",
                );
                // As LinkItem checks it.
                let mut c = Check::new("");
                c.unit_interval("contribution", *contribution, false);
                if let (Ok(h), true) = (h, c.violations.is_empty()) {
                    inputs.push(TermInput {
                        hypothesis_id: h.id,
                        goal_id: "g0".into(),
                        goal_weight,
                        metric_id: "m".into(),
                        gap,
                        expected_effect: h.expected_effect,
                        confidence: score::effective_confidence(h.status, h.confidence),
                        contribution: *contribution,
                        contribution_total: *contribution,
                    });
                }
            }
            let terms = inputs.len() as f64;

            let mut c = Check::new("");
            let item = item_from_pb(
                &pb::Item {
                    source_id: "web".into(),
                    external_id: "1".into(),
                    title: "Item".into(),
                    estimate: Some(estimate),
                    ..Default::default()
                },
                &mut c,
            );
            let estimate = item.and_then(|it| it.estimate);
            let s = score::score_item(estimate, 3.0, inputs);
            prop_assert!(s.value.is_finite() && (0.0..=terms).contains(&s.value), "value {}", s.value);
            prop_assert!(
                (domain::MIN_ESTIMATE..=domain::MAX_ESTIMATE).contains(&s.size),
                "size {}", s.size
            );
            prop_assert!(
                s.value_density.is_finite() && s.value_density >= 0.0,
                "density {}", s.value_density
            );
            for t in &s.terms {
                prop_assert!(t.value.is_finite() && (0.0..=1.0).contains(&t.value));
            }
        }

        /// The same through the index: a whole accepted model, every
        /// score and the ranking finite and in range.
        #[test]
        fn an_accepted_model_ranks_with_finite_numbers(
            weights in prop::collection::vec(number(), 1..4),
            metrics in prop::collection::vec((number(), number(), number()), 1..4),
            hypotheses in prop::collection::vec((0..4usize, 0..4usize, number(), number()), 1..6),
            estimates in prop::collection::vec(prop::option::of(number()), 1..8),
            links in prop::collection::vec((0..8usize, 0..6usize, number()), 0..16),
        ) {
            let now = Utc::now();
            let mut ix = crate::index::ScoreIndex::new(3.0);
            let mut goal_ids = Vec::new();
            for (i, w) in weights.iter().enumerate() {
                if let Ok(g) = goal(i, *w) {
                    goal_ids.push(g.id.clone());
                    ix.put_goal(g);
                }
            }
            let mut metric_ids = Vec::new();
            for (i, (baseline, target, current)) in metrics.iter().enumerate() {
                let m = pb::Metric {
                    id: format!("m{i}"),
                    name: "Metric".into(),
                    baseline: *baseline,
                    target: *target,
                    ..Default::default()
                };
                let mut c = Check::new("");
                let o = observation_from_pb(
                    &pb::Observation { metric_id: m.id.clone(), value: *current, observe_time: None },
                    &mut c,
                    now,
                );
                if let Ok(m) = metric_from_pb(&m, "metric") {
                    metric_ids.push(m.id.clone());
                    ix.put_metric(m);
                    if let Some(o) = o {
                        ix.set_observations(
                            &o.metric_id,
                            domain::ObservationSummary { latest: Some((now, o.value)), count: 1 },
                        );
                    }
                }
            }
            // One goal and one metric that are always there, so that every
            // case has hypotheses to link (rejecting cases would be slow).
            if goal_ids.is_empty() {
                let g = goal(9, 1.0).expect("a weight of 1 is accepted");
                goal_ids.push(g.id.clone());
                ix.put_goal(g);
            }
            if metric_ids.is_empty() {
                let m = pb::Metric {
                    id: "m9".into(),
                    name: "Metric".into(),
                    baseline: 0.0,
                    target: 1.0,
                    ..Default::default()
                };
                let m = metric_from_pb(&m, "metric").expect("0 to 1 is accepted");
                metric_ids.push(m.id.clone());
                ix.put_metric(m);
            }
            let mut hypothesis_ids = Vec::new();
            for (i, (g, m, effect, confidence)) in hypotheses.iter().enumerate() {
                let h = pb::Hypothesis {
                    id: format!("h{i}"),
                    statement: "We believe".into(),
                    goal_id: goal_ids[g % goal_ids.len()].clone(),
                    metric_id: metric_ids[m % metric_ids.len()].clone(),
                    expected_effect: *effect,
                    confidence: Some(*confidence),
                    ..Default::default()
                };
                if let Ok(h) = hypothesis_from_pb(&h, "hypothesis") {
                    hypothesis_ids.push(h.id.clone());
                    ix.put_hypothesis(h);
                }
            }
            let mut keys = Vec::new();
            for (i, estimate) in estimates.iter().enumerate() {
                let mut c = Check::new("");
                let it = item_from_pb(
                    &pb::Item {
                        source_id: "web".into(),
                        external_id: i.to_string(),
                        title: "Item".into(),
                        estimate: *estimate,
                        ..Default::default()
                    },
                    &mut c,
                );
                if let Some(it) = it {
                    keys.push(it.key());
                    ix.put_item(it.key(), crate::index::ItemFacts {
                        source_id: it.source_id,
                        title: it.title,
                        state: it.state,
                        labels: it.labels,
                        estimate: it.estimate,
                        parent_key: it.parent_key,
                        votes: None,
                    });
                }
            }
            for (item, hyp, contribution) in &links {
                // As LinkItem checks it.
                let mut c = Check::new("");
                c.unit_interval("contribution", *contribution, false);
                if keys.is_empty() || hypothesis_ids.is_empty() || !c.violations.is_empty() {
                    continue;
                }
                ix.put_link(Link {
                    item_key: keys[item % keys.len()].clone(),
                    hypothesis_id: hypothesis_ids[hyp % hypothesis_ids.len()].clone(),
                    contribution: *contribution,
                    origin: LinkOrigin::Api,
                    rationale: String::new(),
                    create_time: now,
                    update_time: now,
                });
            }
            for g in &goal_ids {
                let w = ix.goal_weight(g);
                prop_assert!(w.is_finite() && (0.0..=1.0).contains(&w), "goal weight {}", w);
            }
            for k in &keys {
                let s = ix.score(k).expect("every item is scored");
                let most = ix.links_of_item(k).count() as f64;
                prop_assert!(s.value.is_finite() && (0.0..=most).contains(&s.value), "value {}", s.value);
                prop_assert!(s.value_density.is_finite() && s.value_density >= 0.0, "density {}", s.value_density);
            }
            let ranked = ix.rank(
                crate::index::RankOrder::ValueDensity,
                &crate::index::RankQuery {
                    source_id: None,
                    label: None,
                    include_closed: true,
                    after: None,
                    limit: keys.len() + 1,
                    narrow: Default::default(),
                },
            );
            prop_assert_eq!(ranked.len(), keys.len());
            for (_, s) in ranked {
                prop_assert!(s.value_density.is_finite());
            }
        }
    }
}

#[cfg(test)]
mod clock {
    //! Times from the future: the skew bound is inclusive, and a refusal
    //! names the field and says the server's clock and the bound.

    use super::*;

    #[test]
    fn a_time_up_to_the_skew_after_now_is_accepted_and_one_beyond_refused() {
        let now = DateTime::from_timestamp(1_764_979_200, 0).expect("a valid time"); // 2025-12-06
        let mut c = Check::new("observations[3]");
        assert_eq!(c.not_future("observe_time", now, now), Some(now));
        let edge = now + domain::MAX_CLOCK_SKEW;
        assert_eq!(c.not_future("observe_time", edge, now), Some(edge));
        assert!(c.violations.is_empty());

        let beyond = edge + chrono::Duration::nanoseconds(1);
        assert_eq!(c.not_future("observe_time", beyond, now), None);
        assert_eq!(c.violations.len(), 1);
        assert_eq!(c.violations[0].field, "observations[3].observe_time");
        assert_eq!(
            c.violations[0].description,
            "2025-12-06T00:05:00.000000001Z is in the future (the server's clock is \
             2025-12-06T00:00:00Z; at most 300 s of clock skew is allowed)"
        );
    }

    #[test]
    fn an_unset_observe_time_is_now_and_a_future_one_is_refused() {
        let now = Utc::now();
        let o = |t: Option<Time>| pb::Observation {
            metric_id: "m".into(),
            value: 1.0,
            observe_time: t.as_ref().map(timestamp),
        };
        let mut c = Check::new("");
        let got = observation_from_pb(&o(None), &mut c, now).expect("accepted");
        assert_eq!(got.observe_time, now);
        let next_year = now + chrono::Duration::days(365);
        assert_eq!(observation_from_pb(&o(Some(next_year)), &mut c, now), None);
        let fields: Vec<&str> = c.violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["observe_time"]);
    }
}
