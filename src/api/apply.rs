//! ModelFileService: the value model as code. A file is read
//! ([`crate::model`]), each entry is checked with the same conversions as
//! the RPC that creates it (their field names renamed to the file's), the
//! engine plans and applies it, and every error is placed at
//! `FILE:LINE:COLUMN` in the file.

use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::convert::{self, Check};
use super::{Reply, bounded_violations};
use crate::auth::Role;
use crate::domain::{
    Direction, Goal, GoalLevel, Hypothesis, HypothesisStatus, Importance, Insight, InsightKind,
    Item, ItemState, KeyValueArea, LinkRules, Metric, Source,
};
use crate::engine::{
    Action, ApplyOptions, Desired, DesiredHypothesis, DesiredItem, DesiredMetric, Engine, Error,
    FieldViolation, ModelExport, Plan,
};
use crate::model::{self, File, Locator};
use crate::proto as pb;
use pb::model_file_service_server::ModelFileService;

pub struct ModelFileApi(pub std::sync::Arc<Engine>);

#[tonic::async_trait]
impl ModelFileService for ModelFileApi {
    async fn apply_value_model(
        &self,
        request: Request<pb::ApplyValueModelRequest>,
    ) -> Reply<pb::ApplyValueModelResponse> {
        // Sources name trackers and token variables: admin only, as in
        // SourceService. Asked here, refused only if the plan has one.
        let admin = crate::auth::require(
            &request,
            Role::Admin,
            "a value model file that creates, changes or deletes a source, or sets a metric's source",
        );
        let may_change_sources = admin.is_ok();
        let r = request.into_inner();
        let file_name = if r.file_name.is_empty() {
            "value model".to_string()
        } else {
            // Only to place errors; bounded so a message stays small.
            r.file_name.chars().take(256).collect()
        };
        if r.document.len() > crate::limits::MAX_VALUE_MODEL_BYTES {
            return Err(Status::invalid_argument(format!(
                "document: {file_name}: {} bytes is over the limit of {} bytes; split the model or leave out old observations",
                r.document.len(),
                crate::limits::MAX_VALUE_MODEL_BYTES
            )));
        }
        let file = model::parse(&r.document).map_err(|e| {
            let at = e.at.map_or_else(String::new, |p| format!(":{p}"));
            let line = format!("{file_name}{at}: {}", e.message);
            let mut details = ErrorDetails::new();
            details.add_bad_request_violation("document", line.clone());
            Status::with_error_details(Code::InvalidArgument, line, details)
        })?;
        if file.entry_count() > crate::limits::MAX_VALUE_MODEL_ENTRIES {
            return Err(Status::invalid_argument(format!(
                "document: {file_name}: {} entries (observations and links included) is over the limit of {}",
                file.entry_count(),
                crate::limits::MAX_VALUE_MODEL_ENTRIES
            )));
        }
        let locator = Locator::new(&r.document);
        let place = |violations: Vec<FieldViolation>| -> Status {
            placed(&file_name, &locator, violations)
        };
        let (desired, mut violations) = desired(&file);
        let opts = ApplyOptions {
            dry_run: r.dry_run,
            prune: r.prune,
            force: r.force,
            may_change_sources,
        };
        if !violations.is_empty() {
            // The file's references too, in the same answer: a dry run of
            // what stands, whose own findings on a field already refused
            // (or on a goal's parent when its level was) add nothing.
            let check = ApplyOptions {
                dry_run: true,
                ..opts
            };
            if let Err(Error::InvalidArgument(more)) =
                self.0.apply_value_model(desired, check).await
            {
                let known: std::collections::HashSet<String> =
                    violations.iter().map(|v| v.field.clone()).collect();
                let said = |field: &str| {
                    known.contains(field)
                        || (field.ends_with(".parent")
                            && known.contains(&field.replace(".parent", ".level")))
                };
                violations.extend(more.into_iter().filter(|v| !said(&v.field)));
            }
            return Err(place(violations));
        }
        let plan = match self.0.apply_value_model(desired, opts).await {
            Ok(p) => p,
            Err(Error::InvalidArgument(v)) => return Err(place(v)),
            Err(e) => return Err(e.into()),
        };
        if plan.needs_admin {
            admin?;
        }
        Ok(Response::new(plan_to_pb(plan)))
    }

    async fn export_value_model(
        &self,
        request: Request<pb::ExportValueModelRequest>,
    ) -> Reply<pb::ExportValueModelResponse> {
        let r = request.into_inner();
        let mut export = self.0.export_value_model().await?;
        if r.include_insights {
            export.insights = self.0.all_insights().await?;
        }
        if !r.include_observations {
            for (_, points) in &mut export.metrics {
                points.clear();
            }
            // A desired outcome's survey waves are its observations.
            for (_, waves) in &mut export.customers.outcomes {
                waves.clear();
            }
        }
        let header = format!(
            "plumbline value model, exported {}.\nApply with `plumbline apply FILE`; the format is in the README, \"Value model as code\".",
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        let file = export_file(&export, r.include_state);
        if file.entry_count() > crate::limits::MAX_VALUE_MODEL_ENTRIES {
            return Err(Status::failed_precondition(format!(
                "the model has {} entries, more than a value model file may hold ({}); export \
                 it without include_observations (apply never deletes observations)",
                file.entry_count(),
                crate::limits::MAX_VALUE_MODEL_ENTRIES
            )));
        }
        let document = model::render(&file, &header)
            .map_err(|e| Status::internal(format!("cannot write the model as TOML: {e}")))?;
        if document.len() > crate::limits::MAX_VALUE_MODEL_BYTES {
            return Err(Status::failed_precondition(format!(
                "the exported model is {} bytes, more than a value model file may be ({}); \
                 export it without include_observations (apply never deletes observations)",
                document.len(),
                crate::limits::MAX_VALUE_MODEL_BYTES
            )));
        }
        Ok(Response::new(pb::ExportValueModelResponse { document }))
    }
}

/// INVALID_ARGUMENT placing each violation in the file: the message has one
/// line per violation (`FILE:LINE:COL: PATH: PROBLEM`), the details one
/// field violation each (field = PATH, description = `FILE:LINE:COL: PROBLEM`).
fn placed(file_name: &str, locator: &Locator<'_>, mut violations: Vec<FieldViolation>) -> Status {
    // In the order of the file, as a compiler lists errors.
    let mut placed: Vec<(Option<model::Position>, FieldViolation)> = violations
        .drain(..)
        .map(|v| (locator.locate(&v.field), v))
        .collect();
    placed.sort_by_key(|(p, _)| p.map_or((usize::MAX, 0), |p| (p.line, p.column)));
    // Each description with its place, within the bounds of one status.
    let (placed, more) = bounded_violations(
        placed
            .into_iter()
            .map(|(p, v)| {
                let at = p.map_or_else(|| file_name.to_string(), |p| format!("{file_name}:{p}"));
                FieldViolation::new(v.field, format!("{at}: {}", v.description))
            })
            .collect(),
    );
    let mut lines = Vec::with_capacity(placed.len() + 1);
    let mut details = ErrorDetails::new();
    for v in placed {
        // `FILE:LINE:COL: PATH: PROBLEM`, from `FILE:LINE:COL: PROBLEM`.
        let line = match v.description.split_once(": ") {
            Some((at, problem)) => format!("{at}: {}: {problem}", v.field),
            None => format!("{}: {}", v.field, v.description),
        };
        lines.push(line);
        details.add_bad_request_violation(v.field, v.description);
    }
    if more > 0 {
        lines.push(format!("and {more} more errors"));
    }
    Status::with_error_details(Code::InvalidArgument, lines.join("\n"), details)
}

/// The proto enum value named `name` (`github` -> TRACKER_KIND_GITHUB).
fn enum_value(name: &str, prefix: &str, parse: impl Fn(&str) -> Option<i32>) -> Option<i32> {
    let full = format!("{prefix}{}", name.to_ascii_uppercase());
    parse(&full).filter(|v| *v != 0)
}

/// Renames the proto field names of `from` (under `prefix`) to the file's.
fn renamed(prefix: &str, from: Vec<FieldViolation>, names: &[(&str, &str)]) -> Vec<FieldViolation> {
    from.into_iter()
        .map(|mut v| {
            for (proto, file) in names {
                let old = format!("{prefix}.{proto}");
                if v.field == old || v.field.starts_with(&format!("{old}.")) {
                    v.field = v.field.replacen(&old, &format!("{prefix}.{file}"), 1);
                }
            }
            v
        })
        .collect()
}

/// Keeps the first violation of each field (a file's own check and the
/// RPC's may both complain about an unknown enum name).
fn first_per_field(v: Vec<FieldViolation>) -> Vec<FieldViolation> {
    let mut seen = std::collections::HashSet::new();
    v.into_iter()
        .filter(|x| seen.insert(x.field.clone()))
        .collect()
}

fn time_of(
    d: &toml::value::Datetime,
    field: String,
    violations: &mut Vec<FieldViolation>,
) -> Option<prost_types::Timestamp> {
    match model::time(d) {
        Some(t) => Some(convert::timestamp(&t)),
        None => {
            violations.push(FieldViolation::new(
                field,
                "must be a date and time with an offset, like 2026-01-05T09:00:00Z",
            ));
            None
        }
    }
}

fn invalid_of(e: Error) -> Vec<FieldViolation> {
    match e {
        Error::InvalidArgument(v) => v,
        other => vec![FieldViolation::new("", other.to_string())],
    }
}

/// Checks every entry of `file` on its own and turns it into domain
/// values, with the violations of every entry. An entry that fails its
/// checks still stands in the result, made of what the file says (or a
/// default), so that the references of the whole file can be checked in
/// the same answer; such a result is only ever planned as a dry run.
fn desired(file: &File) -> (Desired, Vec<FieldViolation>) {
    let mut v: Vec<FieldViolation> = Vec::new();
    let mut d = Desired::default();
    let now = chrono::Utc::now();
    for (i, s) in file.sources.iter().enumerate() {
        let prefix = format!("sources[{i}]");
        let kind = enum_value(&s.kind, "TRACKER_KIND_", |n| {
            pb::TrackerKind::from_str_name(n).map(|k| k as i32)
        });
        if kind.is_none() {
            v.push(FieldViolation::new(
                format!("{prefix}.kind"),
                format!("{} is not a source kind", crate::engine::quote(&s.kind)),
            ));
        }
        let rules = s.link_rules.clone().unwrap_or_default();
        let p = pb::Source {
            id: s.id.clone(),
            kind: kind.unwrap_or(0),
            base_url: s.base_url.clone(),
            project_key: s.project_key.clone(),
            token_env: s.token_env.clone(),
            link_rules: Some(pb::LinkRules {
                label_prefix: rules.label_prefix.clone(),
                body_keyword: rules.body_keyword.clone(),
                disabled: rules.disabled,
            }),
            estimate_field: s.estimate_field.clone(),
            ..Default::default()
        };
        match convert::source_from_pb(&p, &prefix) {
            Ok(src) => d.sources.push(Source {
                link_rules: LinkRules {
                    label_prefix: rules.label_prefix,
                    body_keyword: rules.body_keyword,
                    disabled: rules.disabled,
                },
                ..src
            }),
            Err(e) => {
                v.extend(invalid_of(e));
                d.sources.push(Source {
                    id: s.id.clone(),
                    kind: crate::domain::TrackerKind::parse(&s.kind)
                        .unwrap_or(crate::domain::TrackerKind::Github),
                    base_url: s.base_url.clone(),
                    project_key: s.project_key.clone(),
                    token_env: s.token_env.clone(),
                    link_rules: LinkRules::default(),
                    estimate_field: s.estimate_field.clone(),
                    create_time: now,
                    update_time: now,
                });
            }
        }
    }
    for (i, g) in file.goals.iter().enumerate() {
        let prefix = format!("goals[{i}]");
        let level = enum_value(&g.level, "GOAL_LEVEL_", |n| {
            pb::GoalLevel::from_str_name(n).map(|k| k as i32)
        });
        if level.is_none() {
            v.push(FieldViolation::new(
                format!("{prefix}.level"),
                "must be strategic, intermediate or tactical",
            ));
        }
        let kva = pb::KeyValueArea::from_str_name(&format!(
            "KEY_VALUE_AREA_{}",
            g.key_value_area.to_ascii_uppercase()
        ));
        if kva.is_none() {
            v.push(FieldViolation::new(
                format!("{prefix}.key_value_area"),
                "must be current_value, unrealized_value, time_to_market, ability_to_innovate or unspecified",
            ));
        }
        let p = pb::Goal {
            id: g.id.clone(),
            title: g.title.clone(),
            description: g.description.clone(),
            level: level.unwrap_or(0),
            parent_id: g.parent.clone(),
            key_value_area: kva.map_or(0, |k| k as i32),
            weight: Some(g.weight),
            ..Default::default()
        };
        match convert::goal_from_pb(&p, &prefix) {
            Ok(goal) => d.goals.push(goal),
            Err(e) => {
                v.extend(renamed(&prefix, invalid_of(e), &[("parent_id", "parent")]));
                d.goals.push(Goal {
                    id: g.id.clone(),
                    title: g.title.clone(),
                    description: String::new(),
                    level: parse_snake(&g.level).unwrap_or(GoalLevel::Strategic),
                    parent_id: g.parent.clone(),
                    key_value_area: KeyValueArea::Unspecified,
                    weight: 1.0,
                    create_time: now,
                    update_time: now,
                });
            }
        }
    }
    for (i, m) in file.metrics.iter().enumerate() {
        let prefix = format!("metrics[{i}]");
        let cadence = match m.cadence_days {
            None => None,
            Some(days) if days.is_finite() && days > 0.0 && days < 36_500.0 => {
                let nanos = (days * 86_400e9).round() as i64;
                Some(prost_types::Duration {
                    seconds: nanos.div_euclid(1_000_000_000),
                    nanos: nanos.rem_euclid(1_000_000_000) as i32,
                })
            }
            Some(_) => {
                v.push(FieldViolation::new(
                    format!("{prefix}.cadence_days"),
                    "must be a positive number of days under 100 years",
                ));
                None
            }
        };
        let p = pb::Metric {
            id: m.id.clone(),
            name: m.name.clone(),
            unit: m.unit.clone(),
            baseline: m.baseline,
            target: m.target,
            cadence,
            ..Default::default()
        };
        let metric = match convert::metric_from_pb(&p, &prefix) {
            Ok(metric) => metric,
            Err(e) => {
                v.extend(renamed(
                    &prefix,
                    invalid_of(e),
                    &[("cadence", "cadence_days")],
                ));
                Metric {
                    id: m.id.clone(),
                    name: m.name.clone(),
                    unit: String::new(),
                    direction: Direction::implied(m.baseline, m.target),
                    baseline: m.baseline,
                    target: m.target,
                    cadence: None,
                    source: None,
                    create_time: now,
                    update_time: now,
                }
            }
        };
        let mut metric = metric;
        if let Some(src) = &m.source {
            let problems = src.problems();
            if problems.is_empty() {
                metric.source = Some(src.clone());
            }
            for (field, why) in problems {
                v.push(FieldViolation::new(format!("{prefix}.source.{field}"), why));
            }
        }
        let mut observations = Vec::with_capacity(m.observations.len());
        for (j, o) in m.observations.iter().enumerate() {
            let oprefix = format!("{prefix}.observations[{j}]");
            let Some(at) = time_of(&o.at, format!("{oprefix}.at"), &mut v) else {
                continue;
            };
            let mut c = Check::new(oprefix.clone());
            let p = pb::Observation {
                metric_id: m.id.clone(),
                value: o.value,
                observe_time: Some(at),
            };
            match convert::observation_from_pb(&p, &mut c, now) {
                Some(obs) => observations.push(obs),
                None => v.extend(renamed(
                    &oprefix,
                    c.violations,
                    &[("observe_time", "at"), ("metric_id", "value")],
                )),
            }
        }
        d.metrics.push(DesiredMetric {
            metric,
            observations,
        });
    }
    for (i, h) in file.hypotheses.iter().enumerate() {
        let prefix = format!("hypotheses[{i}]");
        let status = match &h.status {
            None => Some(0),
            Some(s) => enum_value(s, "HYPOTHESIS_STATUS_", |n| {
                pb::HypothesisStatus::from_str_name(n).map(|k| k as i32)
            }),
        };
        if status.is_none() {
            v.push(FieldViolation::new(
                format!("{prefix}.status"),
                "must be proposed, testing, validated or invalidated",
            ));
        }
        let p = pb::Hypothesis {
            id: h.id.clone(),
            statement: h.statement.clone(),
            goal_id: h.goal.clone(),
            metric_id: h.metric.clone(),
            expected_effect: h.expected_effect,
            confidence: h.confidence,
            status: status.unwrap_or(0),
            ..Default::default()
        };
        match convert::hypothesis_from_pb(&p, &prefix) {
            Ok(hypothesis) => d.hypotheses.push(DesiredHypothesis {
                hypothesis,
                confidence_set: h.confidence.is_some(),
                status_set: h.status.is_some(),
            }),
            Err(e) => {
                v.extend(renamed(
                    &prefix,
                    invalid_of(e),
                    &[("goal_id", "goal"), ("metric_id", "metric")],
                ));
                d.hypotheses.push(DesiredHypothesis {
                    hypothesis: Hypothesis {
                        id: h.id.clone(),
                        statement: h.statement.clone(),
                        goal_id: h.goal.clone(),
                        metric_id: h.metric.clone(),
                        expected_effect: 1.0,
                        confidence: 0.5,
                        status: HypothesisStatus::Proposed,
                        check_time: None,
                        create_time: now,
                        update_time: now,
                    },
                    confidence_set: false,
                    status_set: false,
                });
            }
        }
    }
    for (i, it) in file.items.iter().enumerate() {
        let prefix = format!("items[{i}]");
        let state = enum_value(&it.state, "ITEM_STATE_", |n| {
            pb::ItemState::from_str_name(n).map(|k| k as i32)
        });
        if state.is_none() {
            v.push(FieldViolation::new(
                format!("{prefix}.state"),
                "must be open or closed",
            ));
        }
        let close_time = it
            .closed_at
            .as_ref()
            .and_then(|d| time_of(d, format!("{prefix}.closed_at"), &mut v));
        let p = pb::Item {
            source_id: it.source.clone(),
            external_id: it.id.clone(),
            title: it.title.clone(),
            body: it.body.clone(),
            url: it.url.clone(),
            state: state.unwrap_or(0),
            labels: it.labels.clone(),
            estimate: it.estimate,
            parent_key: it.parent.clone(),
            close_time,
            ..Default::default()
        };
        let mut c = Check::new(prefix.clone());
        let item = convert::item_from_pb(&p, &mut c);
        v.extend(renamed(
            &prefix,
            c.violations,
            &[
                ("source_id", "source"),
                ("external_id", "id"),
                ("parent_key", "parent"),
                ("close_time", "closed_at"),
            ],
        ));
        let mut links = Vec::with_capacity(it.links.len());
        for (j, l) in it.links.iter().enumerate() {
            let mut c = Check::new(format!("{prefix}.links[{j}]"));
            c.id("hypothesis", &l.hypothesis);
            c.unit_interval("contribution", l.contribution, false);
            c.text("rationale", &l.rationale, false, 1 << 16);
            links.push((l.hypothesis.clone(), l.contribution, l.rationale.clone()));
            v.extend(c.violations);
        }
        let item = item.unwrap_or_else(|| Item {
            source_id: it.source.clone(),
            external_id: it.id.clone(),
            title: it.title.clone(),
            body: String::new(),
            url: String::new(),
            state: ItemState::Open,
            labels: Vec::new(),
            estimate: None,
            parent_key: String::new(),
            create_time: None,
            update_time: None,
            close_time: None,
            votes: None,
        });
        d.items.push(DesiredItem { item, links });
    }
    for (i, seg) in file.segments.iter().enumerate() {
        let prefix = format!("segments[{i}]");
        let p = pb::Segment {
            id: seg.id.clone(),
            name: seg.name.clone(),
            description: seg.description.clone(),
            weight: seg.weight,
            ..Default::default()
        };
        match super::customer::segment_from_pb(&p, &prefix) {
            Ok(x) => d.segments.push(x),
            Err(e) => {
                v.extend(invalid_of(e));
                d.segments.push(crate::domain::Segment {
                    id: seg.id.clone(),
                    name: seg.name.clone(),
                    description: String::new(),
                    weight: 1.0,
                    create_time: now,
                    update_time: now,
                });
            }
        }
    }
    for (i, o) in file.outcomes.iter().enumerate() {
        let prefix = format!("outcomes[{i}]");
        let p = pb::DesiredOutcome {
            id: o.id.clone(),
            segment_id: o.segment.clone(),
            statement: o.statement.clone(),
            ..Default::default()
        };
        let outcome = match super::customer::outcome_from_pb(&p, &prefix) {
            Ok(x) => x,
            Err(e) => {
                v.extend(renamed(
                    &prefix,
                    invalid_of(e),
                    &[("segment_id", "segment")],
                ));
                crate::domain::DesiredOutcome {
                    id: o.id.clone(),
                    segment_id: o.segment.clone(),
                    statement: o.statement.clone(),
                    create_time: now,
                    update_time: now,
                }
            }
        };
        let mut waves = Vec::with_capacity(o.waves.len());
        for (j, w) in o.waves.iter().enumerate() {
            let wprefix = format!("{prefix}.waves[{j}]");
            let Some(at) = time_of(&w.at, format!("{wprefix}.at"), &mut v) else {
                continue;
            };
            let mut c = Check::new(wprefix.clone());
            let p = pb::SurveyWave {
                outcome_id: o.id.clone(),
                survey_time: Some(at),
                importance: w.importance,
                satisfaction: w.satisfaction,
                respondents: w.respondents.clamp(0, i32::MAX as i64) as i32,
            };
            match super::customer::wave_from_pb(&p, &mut c, now) {
                Some(x) => waves.push(x),
                None => v.extend(renamed(
                    &wprefix,
                    c.violations,
                    &[("survey_time", "at"), ("outcome_id", "importance")],
                )),
            }
        }
        d.outcomes
            .push(crate::engine::DesiredCustomerOutcome { outcome, waves });
    }
    for (i, e) in file.insights.iter().enumerate() {
        let prefix = format!("insights[{i}]");
        let kind = InsightKind::parse(&e.kind).unwrap_or_else(|| {
            v.push(FieldViolation::new(
                format!("{prefix}.kind"),
                "must be quote, ticket, interview_note, survey_answer or vote",
            ));
            InsightKind::Quote
        });
        let importance = if e.importance.is_empty() {
            None
        } else {
            let i = Importance::parse(&e.importance);
            if i.is_none() {
                v.push(FieldViolation::new(
                    format!("{prefix}.importance"),
                    "must be not_important, nice_to_have, important or critical",
                ));
            }
            i
        };
        let time = e.date.as_ref().and_then(|d| match model::time(d) {
            Some(t) if t <= now + crate::domain::MAX_CLOCK_SKEW => Some(t),
            Some(_) => {
                v.push(FieldViolation::new(
                    format!("{prefix}.date"),
                    "is in the future",
                ));
                None
            }
            None => {
                v.push(FieldViolation::new(
                    format!("{prefix}.date"),
                    "must be a date and time with an offset, like 2026-01-05T09:00:00Z",
                ));
                None
            }
        });
        let insight = Insight {
            source: e.source.clone(),
            external_id: e.id.clone(),
            kind,
            text: e.text.clone(),
            time,
            url: e.url.clone(),
            customer: e.customer.clone(),
            segment_id: e.segment.clone(),
            importance,
            item_keys: e.items.clone(),
            hypothesis_ids: e.hypotheses.clone(),
            outcome_ids: e.outcomes.clone(),
        };
        for (field, problem) in insight.problems() {
            let (base, rest) = field
                .split_once('[')
                .map_or((field.as_str(), ""), |(b, _)| (b, &field[b.len()..]));
            let name = match base {
                "external_id" => "id",
                "segment_id" => "segment",
                "item_keys" => "items",
                "hypothesis_ids" => "hypotheses",
                "outcome_ids" => "outcomes",
                other => other,
            };
            v.push(FieldViolation::new(
                format!("{prefix}.{name}{rest}"),
                problem,
            ));
        }
        d.insights.push(insight);
    }
    (d, first_per_field(v))
}

/// A domain enum from its snake_case name.
fn parse_snake<T: serde::de::DeserializeOwned>(name: &str) -> Option<T> {
    serde_json::from_value(serde_json::Value::String(name.to_string())).ok()
}

fn plan_to_pb(plan: Plan) -> pb::ApplyValueModelResponse {
    pb::ApplyValueModelResponse {
        changes: plan
            .changes
            .into_iter()
            .map(|c| pb::PlannedChange {
                action: match c.action {
                    Action::Create => pb::PlannedAction::Create,
                    Action::Update => pb::PlannedAction::Update,
                    Action::Delete => pb::PlannedAction::Delete,
                } as i32,
                kind: c.kind.to_string(),
                id: c.id,
                fields: c
                    .fields
                    .into_iter()
                    .map(|f| pb::FieldChange {
                        field: f.field,
                        old_value: f.old,
                        new_value: f.new,
                    })
                    .collect(),
                note: c.note,
            })
            .collect(),
        applied: plan.applied,
    }
}

fn snake<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

/// The model as a file: what applying it back plans nothing for.
fn export_file(e: &ModelExport, include_state: bool) -> File {
    File {
        sources: e
            .sources
            .iter()
            .map(|s| model::SourceEntry {
                id: s.id.clone(),
                kind: s.kind.as_str().to_string(),
                base_url: s.base_url.clone(),
                project_key: s.project_key.clone(),
                token_env: s.token_env.clone(),
                estimate_field: s.estimate_field.clone(),
                link_rules: (s.link_rules != LinkRules::default()).then(|| model::LinkRulesEntry {
                    label_prefix: s.link_rules.label_prefix.clone(),
                    body_keyword: s.link_rules.body_keyword.clone(),
                    disabled: s.link_rules.disabled,
                }),
            })
            .collect(),
        goals: e
            .goals
            .iter()
            .map(|g| model::GoalEntry {
                id: g.id.clone(),
                title: g.title.clone(),
                description: g.description.clone(),
                level: snake(&g.level),
                parent: g.parent_id.clone(),
                key_value_area: snake(&g.key_value_area),
                weight: g.weight,
            })
            .collect(),
        metrics: e
            .metrics
            .iter()
            .map(|(m, points)| model::MetricEntry {
                id: m.id.clone(),
                name: m.name.clone(),
                unit: m.unit.clone(),
                baseline: m.baseline,
                target: m.target,
                cadence_days: m
                    .cadence
                    .and_then(|c| c.num_nanoseconds())
                    .map(|n| n as f64 / 86_400e9),
                source: m.source.clone(),
                observations: points
                    .iter()
                    .map(|(t, value)| model::ObservationEntry {
                        at: model::datetime(t),
                        value: *value,
                    })
                    .collect(),
            })
            .collect(),
        hypotheses: e
            .hypotheses
            .iter()
            .map(|h| model::HypothesisEntry {
                id: h.id.clone(),
                statement: h.statement.clone(),
                goal: h.goal_id.clone(),
                metric: h.metric_id.clone(),
                expected_effect: h.expected_effect,
                confidence: include_state.then_some(h.confidence),
                status: include_state.then(|| snake(&h.status)),
            })
            .collect(),
        items: Vec::new(),
        segments: e
            .customers
            .segments
            .iter()
            .map(|s| model::SegmentEntry {
                id: s.id.clone(),
                name: s.name.clone(),
                description: s.description.clone(),
                weight: s.weight,
            })
            .collect(),
        outcomes: e
            .customers
            .outcomes
            .iter()
            .map(|(o, waves)| model::OutcomeEntry {
                id: o.id.clone(),
                segment: o.segment_id.clone(),
                statement: o.statement.clone(),
                waves: waves
                    .iter()
                    .map(|w| model::WaveEntry {
                        at: model::datetime(&w.at),
                        importance: w.importance,
                        satisfaction: w.satisfaction,
                        respondents: w.respondents as i64,
                    })
                    .collect(),
            })
            .collect(),
        insights: e
            .insights
            .iter()
            .map(|i| model::InsightEntry {
                source: i.source.clone(),
                id: i.external_id.clone(),
                customer: i.customer.clone(),
                kind: i.kind.as_str().to_string(),
                text: i.text.clone(),
                date: i.time.as_ref().map(model::datetime),
                url: i.url.clone(),
                segment: i.segment_id.clone(),
                importance: i
                    .importance
                    .map_or(String::new(), |v| v.as_str().to_string()),
                items: i.item_keys.clone(),
                hypotheses: i.hypothesis_ids.clone(),
                outcomes: i.outcome_ids.clone(),
            })
            .collect(),
    }
}
