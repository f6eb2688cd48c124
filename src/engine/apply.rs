//! `ApplyValueModel`: make the store match a value model file. The API
//! layer reads and checks each entry of the file on its own (the rules of
//! every other RPC); here the whole file is checked against the model it
//! would leave (references, the goal tree, what prune would delete), a plan
//! is made field by field, and the plan is written in one store
//! transaction and then applied to the index, as every other write is.
//!
//! Planning reads the index and, for observations, items and evidence, the
//! store, all under the write lock, so that the plan shown is the plan
//! written. Violations name the file's field paths (`hypotheses[3].goal`),
//! which the API places at a line and column.

use std::collections::{HashMap, HashSet};

use chrono::Utc;

use super::{
    Engine, Error, FieldViolation, Result, check_outbound, facts_of, parent_cycles, quote,
};
use crate::domain::{
    Goal, GoalLevel, Hypothesis, Item, Link, LinkOrigin, Metric, Observation, Source, Time,
    TrackerKind,
};
use crate::index::ScoreIndex;
use crate::store::ModelWrite;

/// A metric of the file with its observations.
#[derive(Debug, Clone)]
pub struct DesiredMetric {
    pub metric: Metric,
    pub observations: Vec<Observation>,
}

/// A hypothesis of the file; confidence and status are the file's only when
/// it sets them (otherwise validation owns them once it exists).
#[derive(Debug, Clone)]
pub struct DesiredHypothesis {
    pub hypothesis: Hypothesis,
    pub confidence_set: bool,
    pub status_set: bool,
}

/// A link of an item of the file: (hypothesis, contribution, rationale).
pub type DesiredLink = (String, f64, String);

#[derive(Debug, Clone)]
pub struct DesiredItem {
    pub item: Item,
    pub links: Vec<DesiredLink>,
}

/// What a value model file asks for, each entry checked on its own.
#[derive(Debug, Clone, Default)]
pub struct Desired {
    pub sources: Vec<Source>,
    pub goals: Vec<Goal>,
    pub metrics: Vec<DesiredMetric>,
    pub hypotheses: Vec<DesiredHypothesis>,
    pub items: Vec<DesiredItem>,
    pub segments: Vec<crate::domain::Segment>,
    pub outcomes: Vec<super::customer::DesiredCustomerOutcome>,
    /// Created or replaced by (source, id); never deleted by apply.
    pub insights: Vec<crate::domain::Insight>,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct ApplyOptions {
    /// Plan only.
    pub dry_run: bool,
    /// Also delete the sources, goals, metrics and hypotheses not in the file.
    pub prune: bool,
    /// Let prune delete what other data still needs.
    pub force: bool,
    /// Whether the caller may create, change or delete sources (admin).
    pub may_change_sources: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create,
    Update,
    Delete,
}

/// One field of an update, as the file writes its values.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldChange {
    pub field: String,
    pub old: String,
    pub new: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlannedChange {
    pub action: Action,
    /// source, goal, metric, observation, hypothesis, item or link.
    pub kind: &'static str,
    pub id: String,
    pub fields: Vec<FieldChange>,
    /// For deletes: what goes with it.
    pub note: String,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    pub changes: Vec<PlannedChange>,
    /// Whether the plan was written.
    pub applied: bool,
    /// The plan touches a source and the caller may not change sources:
    /// nothing was written.
    pub needs_admin: bool,
}

/// What the current model holds, for `ExportValueModel`.
#[derive(Debug, Clone, Default)]
pub struct ModelExport {
    pub sources: Vec<Source>,
    /// Parents before children, then by id.
    pub goals: Vec<Goal>,
    pub metrics: Vec<(Metric, Vec<(Time, f64)>)>,
    pub hypotheses: Vec<Hypothesis>,
    pub customers: super::customer::CustomerExport,
    /// Only when asked for (`include_insights`).
    pub insights: Vec<crate::domain::Insight>,
}

/// Reads the planning needs from the store before the index is looked at.
struct Stored {
    observations: HashMap<String, HashMap<Time, f64>>,
    items: Vec<Option<Item>>,
    evidence: HashMap<String, usize>,
    /// The stored insights of the file's keys.
    insights: HashMap<(String, String), crate::domain::Insight>,
}

/// Collects the field changes of an update.
#[derive(Default)]
struct Diff(Vec<FieldChange>);

impl Diff {
    fn text(&mut self, field: &str, old: &str, new: &str) {
        if old != new {
            self.0.push(FieldChange {
                field: field.into(),
                old: format!("{old:?}"),
                new: format!("{new:?}"),
            });
        }
    }

    /// `==`, not bits: SQLite stores -0.0 as 0.0, so a file's -0 would plan
    /// a change on every apply (NaN never gets this far).
    fn number(&mut self, field: &str, old: f64, new: f64) {
        if old != new {
            self.0.push(FieldChange {
                field: field.into(),
                old: old.to_string(),
                new: new.to_string(),
            });
        }
    }

    fn other<T: PartialEq>(&mut self, field: &str, old: &T, new: &T, show: impl Fn(&T) -> String) {
        if old != new {
            self.0.push(FieldChange {
                field: field.into(),
                old: show(old),
                new: show(new),
            });
        }
    }
}

fn name<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        other => format!("{other:?}"),
    }
}

fn opt_number(v: &Option<f64>) -> String {
    v.map_or_else(|| "unset".into(), |x| x.to_string())
}

fn opt_time(v: &Option<Time>) -> String {
    v.map_or_else(
        || "unset".into(),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
    )
}

fn cadence_days(c: &Option<chrono::Duration>) -> String {
    c.and_then(|d| d.num_nanoseconds())
        .map_or_else(|| "unset".into(), |n| (n as f64 / 86_400e9).to_string())
}

fn level_rank(l: GoalLevel) -> u8 {
    match l {
        GoalLevel::Strategic => 0,
        GoalLevel::Intermediate => 1,
        GoalLevel::Tactical => 2,
    }
}

/// Violations for ids a file defines twice.
fn duplicates<'a>(kind: &str, ids: impl Iterator<Item = &'a str>, out: &mut Vec<FieldViolation>) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, id) in ids.enumerate() {
        if let Some(first) = seen.insert(id, i) {
            out.push(FieldViolation::new(
                format!("{kind}[{i}].id"),
                format!(
                    "{} is defined twice (also {kind}[{first}]); ids must be unique",
                    quote(id)
                ),
            ));
        }
    }
}

impl Engine {
    /// Plans `desired` against the model and, unless `opts.dry_run` (or
    /// the plan is empty), writes the plan in one transaction and applies
    /// it to the index. INVALID_ARGUMENT lists every problem of the file;
    /// FAILED_PRECONDITION every deletion prune may not make without force.
    pub async fn apply_value_model(&self, d: Desired, opts: ApplyOptions) -> Result<Plan> {
        let mut violations = Vec::new();
        for (i, s) in d.sources.iter().enumerate() {
            if let Err(Error::InvalidArgument(v)) = check_outbound(&self.outbound, s) {
                violations.extend(v.into_iter().map(|v| {
                    let field = v.field.replacen("source.", &format!("sources[{i}]."), 1);
                    FieldViolation::new(field, v.description)
                }));
            }
        }
        for (i, dm) in d.metrics.iter().enumerate() {
            if let Err(Error::InvalidArgument(v)) = self.check_metric_source(&dm.metric) {
                violations.extend(v.into_iter().map(|v| {
                    let field = v.field.replacen("metric.", &format!("metrics[{i}]."), 1);
                    FieldViolation::new(field, v.description)
                }));
            }
        }
        duplicates(
            "sources",
            d.sources.iter().map(|s| s.id.as_str()),
            &mut violations,
        );
        duplicates(
            "goals",
            d.goals.iter().map(|g| g.id.as_str()),
            &mut violations,
        );
        duplicates(
            "metrics",
            d.metrics.iter().map(|m| m.metric.id.as_str()),
            &mut violations,
        );
        duplicates(
            "hypotheses",
            d.hypotheses.iter().map(|h| h.hypothesis.id.as_str()),
            &mut violations,
        );
        let keys: Vec<String> = d.items.iter().map(|it| it.item.key()).collect();
        {
            let mut seen: HashMap<&str, usize> = HashMap::new();
            for (i, k) in keys.iter().enumerate() {
                if let Some(first) = seen.insert(k, i) {
                    violations.push(FieldViolation::new(
                        format!("items[{i}].id"),
                        format!(
                            "item {} is also items[{first}]; keys must be unique",
                            quote(k)
                        ),
                    ));
                }
            }
        }

        let _w = self.write_lock().await?;
        let stored = self.read_stored(&d, &keys, opts).await?;
        let now = Utc::now();
        let (mut plan, write) = {
            let ix = self.read();
            self.plan(&ix, &d, &stored, opts, now, &mut violations)?
        };
        if !violations.is_empty() {
            return Err(Error::InvalidArgument(violations));
        }
        // Sources and metric sources make the server reach out with the
        // operator's secrets: admin only, as in their RPCs.
        let touches_secrets = plan.changes.iter().any(|c| match c.kind {
            "source" => true,
            "metric" => match c.action {
                Action::Create => d
                    .metrics
                    .iter()
                    .any(|dm| dm.metric.id == c.id && dm.metric.source.is_some()),
                Action::Update => c
                    .fields
                    .iter()
                    .any(|f| f.field == "source" || f.field.starts_with("source.")),
                Action::Delete => false,
            },
            _ => false,
        });
        plan.needs_admin = !opts.may_change_sources && touches_secrets;
        if opts.dry_run || plan.changes.is_empty() || plan.needs_admin {
            return Ok(plan);
        }
        let summaries = self.store.apply_model(&write).await?;
        let source_items: Vec<(String, Vec<String>)> = {
            let ix = self.read_unflushed();
            write
                .delete_sources
                .iter()
                .map(|s| (s.clone(), ix.item_keys_of_source(s)))
                .collect()
        };
        if !write.delete_sources.is_empty() {
            let prefixes: Vec<String> = write
                .delete_sources
                .iter()
                .map(|s| crate::domain::item_key(s, ""))
                .collect();
            self.splits
                .write()
                .retain(|k, _| !prefixes.iter().any(|p| k.starts_with(p)));
        }
        self.applied_customers(&write);
        let mut ix = self.write_index();
        for s in &write.sources {
            ix.put_source(s.clone());
        }
        for g in &write.goals {
            ix.put_goal(g.clone());
        }
        for m in &write.metrics {
            ix.put_metric(m.clone());
        }
        for (id, s) in &summaries {
            ix.set_observations(id, s.clone());
        }
        for h in &write.hypotheses {
            ix.put_hypothesis(h.clone());
        }
        if !write.items.is_empty() || !write.links.is_empty() {
            let facts = write
                .items
                .iter()
                .map(|it| (it.key(), facts_of(it)))
                .collect();
            ix.defer_upsert(facts, &write.remove_links, write.links.clone());
            ix.flush();
        }
        drop(ix);
        self.put_insights_in_memory(&write.insights);
        let mut ix = self.write_index();
        for h in &write.delete_hypotheses {
            ix.remove_hypothesis(h);
        }
        for m in write.delete_metrics.iter().chain(&write.delete_outcomes) {
            ix.remove_metric(m);
        }
        for g in &write.delete_goals {
            ix.remove_goal(g);
        }
        for (s, keys) in &source_items {
            for k in keys {
                ix.remove_item(k);
            }
            ix.remove_source(s);
            ix.forget_removed_of_source(s);
        }
        plan.applied = true;
        Ok(plan)
    }

    /// The stored observations of the file's metrics, the stored items of
    /// its keys, and the evidence count of each hypothesis prune would
    /// delete. The caller holds the write lock.
    async fn read_stored(
        &self,
        d: &Desired,
        keys: &[String],
        opts: ApplyOptions,
    ) -> Result<Stored> {
        let (metric_ids, pruned): (Vec<String>, Vec<String>) = {
            let ix = self.read_unflushed();
            let metric_ids = d
                .metrics
                .iter()
                .filter(|m| !m.observations.is_empty() && ix.metric(&m.metric.id).is_some())
                .map(|m| m.metric.id.clone())
                .collect();
            let in_file: HashSet<&str> = d
                .hypotheses
                .iter()
                .map(|h| h.hypothesis.id.as_str())
                .collect();
            let pruned = if opts.prune {
                ix.hypotheses()
                    .filter(|h| !in_file.contains(h.id.as_str()))
                    .map(|h| h.id.clone())
                    .collect()
            } else {
                Vec::new()
            };
            (metric_ids, pruned)
        };
        let mut observations = HashMap::new();
        for id in metric_ids {
            let points = self.store.list_observations(&id).await?;
            observations.insert(id, points.into_iter().collect());
        }
        let mut evidence = HashMap::new();
        for id in pruned {
            let n = self.store.list_evidence(Some(&id)).await?.len();
            evidence.insert(id, n);
        }
        let items = self.stored_items(keys).await?;
        let insight_keys: Vec<(String, String)> =
            d.insights.iter().map(crate::domain::Insight::key).collect();
        let insights = if insight_keys.is_empty() {
            HashMap::new()
        } else {
            self.store
                .get_insights(&insight_keys)
                .await?
                .into_iter()
                .map(|i| (i.key(), i))
                .collect()
        };
        Ok(Stored {
            observations,
            items,
            evidence,
            insights,
        })
    }

    /// The plan and what it writes; pushes the file's violations.
    fn plan(
        &self,
        ix: &ScoreIndex,
        d: &Desired,
        stored: &Stored,
        opts: ApplyOptions,
        now: Time,
        violations: &mut Vec<FieldViolation>,
    ) -> Result<(Plan, ModelWrite)> {
        let mut changes = Vec::new();
        let mut w = ModelWrite::default();
        let create = |kind: &'static str, id: &str| PlannedChange {
            action: Action::Create,
            kind,
            id: id.to_string(),
            fields: Vec::new(),
            note: String::new(),
        };
        let update = |kind: &'static str, id: &str, fields: Vec<FieldChange>| PlannedChange {
            action: Action::Update,
            kind,
            id: id.to_string(),
            fields,
            note: String::new(),
        };

        // What the model holds after the plan, for references.
        let file_sources: HashSet<&str> = d.sources.iter().map(|s| s.id.as_str()).collect();
        let file_goals: HashMap<&str, GoalLevel> =
            d.goals.iter().map(|g| (g.id.as_str(), g.level)).collect();
        // A desired outcome of the file is a metric too.
        let file_metrics: HashSet<&str> = d
            .metrics
            .iter()
            .map(|m| m.metric.id.as_str())
            .chain(d.outcomes.iter().map(|o| o.outcome.id.as_str()))
            .collect();
        let file_hyps: HashSet<&str> = d
            .hypotheses
            .iter()
            .map(|h| h.hypothesis.id.as_str())
            .collect();
        let keep = !opts.prune;
        let source_after =
            |id: &str| file_sources.contains(id) || (keep && ix.source(id).is_some());
        let source_kind_after = |id: &str| -> Option<TrackerKind> {
            d.sources
                .iter()
                .find(|s| s.id == id)
                .map(|s| s.kind)
                .or_else(|| ix.source(id).filter(|_| keep).map(|s| s.kind))
        };
        let goal_level_after = |id: &str| -> Option<GoalLevel> {
            file_goals
                .get(id)
                .copied()
                .or_else(|| ix.goal(id).filter(|_| keep).map(|g| g.level))
        };
        let metric_after =
            |id: &str| file_metrics.contains(id) || (keep && ix.metric(id).is_some());
        let hyp_after = |id: &str| file_hyps.contains(id) || (keep && ix.hypothesis(id).is_some());

        // Sources.
        for (i, s) in d.sources.iter().enumerate() {
            if let Some(old) = ix.source(&s.id)
                && (old.kind == TrackerKind::Push) != (s.kind == TrackerKind::Push)
            {
                // As UpdateSource: a tracker's first full sync would mark
                // every pushed item removed, and a push source has no sync
                // history or cursor to carry.
                violations.push(FieldViolation::new(
                    format!("sources[{i}].kind"),
                    "a push source cannot become a tracker source, nor a tracker source a push \
                     source; use a new source id instead",
                ));
            }
            match ix.source(&s.id) {
                None => {
                    changes.push(create("source", &s.id));
                    w.sources.push(Source {
                        create_time: now,
                        update_time: now,
                        ..s.clone()
                    });
                }
                Some(old) => {
                    let mut f = Diff::default();
                    f.other("kind", &old.kind, &s.kind, |k| k.as_str().to_string());
                    f.text("base_url", &old.base_url, &s.base_url);
                    f.text("project_key", &old.project_key, &s.project_key);
                    f.text("token_env", &old.token_env, &s.token_env);
                    f.text("estimate_field", &old.estimate_field, &s.estimate_field);
                    let (a, b) = (&old.link_rules, &s.link_rules);
                    f.text("link_rules.label_prefix", &a.label_prefix, &b.label_prefix);
                    f.text("link_rules.body_keyword", &a.body_keyword, &b.body_keyword);
                    f.other(
                        "link_rules.disabled",
                        &a.disabled,
                        &b.disabled,
                        bool::to_string,
                    );
                    if !f.0.is_empty() {
                        changes.push(update("source", &s.id, f.0));
                        w.sources.push(Source {
                            create_time: old.create_time,
                            update_time: now,
                            ..s.clone()
                        });
                    }
                }
            }
        }

        // Goals, parents first.
        let mut order: Vec<usize> = (0..d.goals.len()).collect();
        order.sort_by_key(|&i| (level_rank(d.goals[i].level), i));
        for i in order {
            let g = &d.goals[i];
            let parent_problem = match g.level.parent_level() {
                None if g.parent_id.is_empty() => None,
                None => Some("a strategic goal has no parent; leave it empty".to_string()),
                Some(_) if g.parent_id.is_empty() => {
                    Some("intermediate and tactical goals need a parent goal".to_string())
                }
                Some(want) => match goal_level_after(&g.parent_id) {
                    None => Some(format!(
                        "no goal with id {} in the file{}",
                        quote(&g.parent_id),
                        if keep { " or on the server" } else { "" }
                    )),
                    Some(l) if l != want => Some(format!(
                        "the parent of a {} goal must be {}, and {} is {}",
                        name(&g.level),
                        name(&want),
                        quote(&g.parent_id),
                        name(&l)
                    )),
                    Some(_) => None,
                },
            };
            if let Some(p) = parent_problem {
                violations.push(FieldViolation::new(format!("goals[{i}].parent"), p));
            }
            match ix.goal(&g.id) {
                None => {
                    changes.push(create("goal", &g.id));
                    w.goals.push(Goal {
                        create_time: now,
                        update_time: now,
                        ..g.clone()
                    });
                }
                Some(old) => {
                    let mut f = Diff::default();
                    f.text("title", &old.title, &g.title);
                    f.text("description", &old.description, &g.description);
                    f.other("level", &old.level, &g.level, name);
                    f.text("parent", &old.parent_id, &g.parent_id);
                    f.other(
                        "key_value_area",
                        &old.key_value_area,
                        &g.key_value_area,
                        name,
                    );
                    f.number("weight", old.weight, g.weight);
                    if !f.0.is_empty() {
                        changes.push(update("goal", &g.id, f.0));
                        w.goals.push(Goal {
                            create_time: old.create_time,
                            update_time: now,
                            ..g.clone()
                        });
                    }
                }
            }
        }
        // Goals the file leaves alone keep a parent of the right level.
        if keep {
            for c in ix
                .goals()
                .filter(|c| !file_goals.contains_key(c.id.as_str()))
            {
                let Some(i) = d.goals.iter().position(|g| g.id == c.parent_id) else {
                    continue;
                };
                if c.level.parent_level() != Some(d.goals[i].level) {
                    violations.push(FieldViolation::new(
                        format!("goals[{i}].level"),
                        format!(
                            "goal {} (not in the file) is a {} child of it, so it must stay {}",
                            quote(&c.id),
                            name(&c.level),
                            c.level
                                .parent_level()
                                .map_or_else(String::new, |l| name(&l))
                        ),
                    ));
                }
            }
        }

        // Metrics and their observations.
        for (i, dm) in d.metrics.iter().enumerate() {
            let m = &dm.metric;
            match ix.metric(&m.id) {
                None => {
                    changes.push(create("metric", &m.id));
                    w.metrics.push(Metric {
                        create_time: now,
                        update_time: now,
                        ..m.clone()
                    });
                }
                Some(old) => {
                    let old = &old.metric;
                    let mut f = Diff::default();
                    f.text("name", &old.name, &m.name);
                    f.text("unit", &old.unit, &m.unit);
                    f.number("baseline", old.baseline, m.baseline);
                    f.number("target", old.target, m.target);
                    // Days in a file are a float: a cadence set to the
                    // nanosecond over the API comes back within a few ns.
                    let same_cadence = match (old.cadence, m.cadence) {
                        (Some(a), Some(b)) => (a - b).abs() <= chrono::Duration::microseconds(1),
                        (a, b) => a == b,
                    };
                    if !same_cadence {
                        f.other("cadence_days", &old.cadence, &m.cadence, cadence_days);
                    }
                    f.other("source", &old.source, &m.source, |s| match s {
                        None => "none".into(),
                        Some(s) => serde_json::to_string(s).unwrap_or_default(),
                    });
                    if !f.0.is_empty() {
                        changes.push(update("metric", &m.id, f.0));
                        w.metrics.push(Metric {
                            create_time: old.create_time,
                            update_time: now,
                            ..m.clone()
                        });
                    }
                }
            }
            let before = stored.observations.get(&m.id);
            let mut seen: HashMap<Time, usize> = HashMap::new();
            for (j, o) in dm.observations.iter().enumerate() {
                let at = o
                    .observe_time
                    .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
                if let Some(first) = seen.insert(o.observe_time, j) {
                    violations.push(FieldViolation::new(
                        format!("metrics[{i}].observations[{j}].at"),
                        format!("{at} is also observations[{first}]; one value per time"),
                    ));
                    continue;
                }
                let id = format!("{}@{at}", m.id);
                match before.and_then(|b| b.get(&o.observe_time)) {
                    None => changes.push(create("observation", &id)),
                    // `==`, as in Diff::number: -0 is stored as 0.
                    Some(v) if *v == o.value => continue,
                    Some(v) => changes.push(update(
                        "observation",
                        &id,
                        vec![FieldChange {
                            field: "value".into(),
                            old: v.to_string(),
                            new: o.value.to_string(),
                        }],
                    )),
                }
                w.observations.push(o.clone());
            }
        }

        // Hypotheses.
        for (i, dh) in d.hypotheses.iter().enumerate() {
            let h = &dh.hypothesis;
            if goal_level_after(&h.goal_id).is_none() {
                violations.push(FieldViolation::new(
                    format!("hypotheses[{i}].goal"),
                    format!("no goal with id {}", quote(&h.goal_id)),
                ));
            }
            if !metric_after(&h.metric_id) {
                violations.push(FieldViolation::new(
                    format!("hypotheses[{i}].metric"),
                    format!("no metric with id {}", quote(&h.metric_id)),
                ));
            }
            match ix.hypothesis(&h.id) {
                None => {
                    changes.push(create("hypothesis", &h.id));
                    w.hypotheses.push(Hypothesis {
                        create_time: now,
                        update_time: now,
                        ..h.clone()
                    });
                }
                Some(old) => {
                    let mut new = Hypothesis {
                        create_time: old.create_time,
                        update_time: now,
                        check_time: old.check_time,
                        ..h.clone()
                    };
                    if !dh.confidence_set {
                        new.confidence = old.confidence;
                    }
                    if !dh.status_set {
                        new.status = old.status;
                    }
                    let mut f = Diff::default();
                    f.text("statement", &old.statement, &new.statement);
                    f.text("goal", &old.goal_id, &new.goal_id);
                    f.text("metric", &old.metric_id, &new.metric_id);
                    f.number("expected_effect", old.expected_effect, new.expected_effect);
                    f.number("confidence", old.confidence, new.confidence);
                    f.other("status", &old.status, &new.status, name);
                    if !f.0.is_empty() {
                        changes.push(update("hypothesis", &h.id, f.0));
                        w.hypotheses.push(new);
                    }
                }
            }
        }

        // Items and their links.
        let items: Vec<&Item> = d.items.iter().map(|it| &it.item).collect();
        violations.extend(parent_cycles(ix, &items).into_iter().map(|v| {
            FieldViolation::new(v.field.replace(".parent_key", ".parent"), v.description)
        }));
        for (i, di) in d.items.iter().enumerate() {
            let it = &di.item;
            let key = it.key();
            if !source_after(&it.source_id) {
                violations.push(FieldViolation::new(
                    format!("items[{i}].source"),
                    format!("no source with id {}", quote(&it.source_id)),
                ));
            } else if let Some(kind) = source_kind_after(&it.source_id)
                && kind != TrackerKind::Push
            {
                // A tracker owns its items: a file that wrote them would
                // wipe what the file leaves out (body, labels, estimate) and
                // be undone by the next sync.
                violations.push(FieldViolation::new(
                    format!("items[{i}].source"),
                    format!(
                        "{} is a {} source, whose items come from its tracker; a value model \
                         file lists items of push sources only (link a tracker item with \
                         `plumbline link` or LinkItem)",
                        quote(&it.source_id),
                        kind.as_str()
                    ),
                ));
            }
            if ix.removal(&key).is_some() {
                violations.push(FieldViolation::new(
                    format!("items[{i}].id"),
                    format!(
                        "item {} was removed from its tracker; it comes back when a sync returns it",
                        quote(&key)
                    ),
                ));
            }
            match stored.items.get(i).and_then(Option::as_ref) {
                None => {
                    changes.push(create("item", &key));
                    w.items.push(it.clone());
                }
                Some(old) => {
                    let mut f = Diff::default();
                    f.text("title", &old.title, &it.title);
                    f.text("body", &old.body, &it.body);
                    f.text("url", &old.url, &it.url);
                    f.other("state", &old.state, &it.state, name);
                    f.other("labels", &old.labels, &it.labels, |l| format!("{l:?}"));
                    f.other("estimate", &old.estimate, &it.estimate, opt_number);
                    f.text("parent", &old.parent_key, &it.parent_key);
                    f.other("closed_at", &old.close_time, &it.close_time, opt_time);
                    if !f.0.is_empty() {
                        changes.push(update("item", &key, f.0));
                        w.items.push(Item {
                            create_time: old.create_time,
                            update_time: old.update_time,
                            votes: old.votes,
                            ..it.clone()
                        });
                    }
                }
            }
            let mut seen: HashMap<&str, usize> = HashMap::new();
            for (j, (hyp, contribution, rationale)) in di.links.iter().enumerate() {
                if let Some(first) = seen.insert(hyp, j) {
                    violations.push(FieldViolation::new(
                        format!("items[{i}].links[{j}].hypothesis"),
                        format!(
                            "{} is also links[{first}]; one link per hypothesis",
                            quote(hyp)
                        ),
                    ));
                    continue;
                }
                if !hyp_after(hyp) {
                    violations.push(FieldViolation::new(
                        format!("items[{i}].links[{j}].hypothesis"),
                        format!("no hypothesis with id {}", quote(hyp)),
                    ));
                    continue;
                }
                let id = format!("{key}->{hyp}");
                let existing = ix.link(&key, hyp).map(|l| l.to_link());
                let create_time = match &existing {
                    None => {
                        changes.push(create("link", &id));
                        now
                    }
                    Some(old) => {
                        let mut f = Diff::default();
                        f.number("contribution", old.contribution, *contribution);
                        f.text("rationale", &old.rationale, rationale);
                        f.other("origin", &old.origin, &LinkOrigin::Api, name);
                        if f.0.is_empty() {
                            continue;
                        }
                        changes.push(update("link", &id, f.0));
                        old.create_time
                    }
                };
                w.links.push(Link {
                    item_key: key.clone(),
                    hypothesis_id: hyp.clone(),
                    contribution: *contribution,
                    origin: LinkOrigin::Api,
                    rationale: rationale.clone(),
                    create_time,
                    update_time: now,
                });
            }
        }

        // Items written get their sources' rule links, as UpsertItems
        // gives them; the file's own links come after and win.
        if !w.items.is_empty() {
            let (remove, put) = self.rule_link_changes_in(ix, &w.items, &[], &hyp_after);
            w.remove_links = remove;
            w.links.splice(0..0, put);
        }

        // Insights: created or replaced by (source, id), never deleted
        // (erasing is ForgetCustomer's). The items and hypotheses they
        // name must exist once the plan is applied.
        let file_items: HashSet<String> = d.items.iter().map(|it| it.item.key()).collect();
        // A segment or outcome an insight names exists once the file is
        // applied: the file's own, or a stored one prune keeps.
        let file_segments: HashSet<&str> = d.segments.iter().map(|s| s.id.as_str()).collect();
        let file_outcomes: HashSet<&str> =
            d.outcomes.iter().map(|o| o.outcome.id.as_str()).collect();
        let customers = self.customers.read();
        let mut seen_insights: HashMap<(String, String), usize> = HashMap::new();
        for (i, ins) in d.insights.iter().enumerate() {
            let at = |f: &str| format!("insights[{i}].{f}");
            if let Some(first) = seen_insights.insert(ins.key(), i) {
                violations.push(FieldViolation::new(
                    at("id"),
                    format!(
                        "{} from {} is also insights[{first}]; (source, id) must be unique",
                        quote(&ins.external_id),
                        quote(&ins.source)
                    ),
                ));
            }
            // An insight stored as it is written is left alone: what it
            // names may have been deleted since (a segment, a hypothesis),
            // and an exported file must still apply as a no-op.
            if stored.insights.get(&ins.key()) == Some(ins) {
                continue;
            }
            for (j, k) in ins.item_keys.iter().enumerate() {
                if !file_items.contains(k) && ix.item(k).is_none() && ix.removal(k).is_none() {
                    violations.push(FieldViolation::new(
                        at(&format!("items[{j}]")),
                        format!("no item {}", quote(k)),
                    ));
                }
            }
            for (j, h) in ins.hypothesis_ids.iter().enumerate() {
                if !hyp_after(h) {
                    violations.push(FieldViolation::new(
                        at(&format!("hypotheses[{j}]")),
                        format!("no hypothesis {}", quote(h)),
                    ));
                }
            }
            violations.extend(super::insight::segment_and_outcome_problems(
                &|id| file_segments.contains(id) || (!opts.prune && customers.has_segment(id)),
                &|id| file_outcomes.contains(id) || (!opts.prune && customers.has_outcome(id)),
                ins,
                &at("segment"),
                &|n| at(&format!("outcomes[{n}]")),
            ));
            let id = crate::engine::insight_key(&ins.source, &ins.external_id);
            match stored.insights.get(&ins.key()) {
                None => {
                    changes.push(create("insight", &id));
                    w.insights.push(ins.clone());
                }
                Some(old) if old == ins => {}
                Some(old) => {
                    let mut f = Diff::default();
                    f.other("kind", &old.kind, &ins.kind, |k| k.as_str().to_string());
                    f.text("text", &old.text, &ins.text);
                    f.other("date", &old.time, &ins.time, opt_time);
                    f.text("url", &old.url, &ins.url);
                    f.text("customer", &old.customer, &ins.customer);
                    f.text("segment", &old.segment_id, &ins.segment_id);
                    f.other("importance", &old.importance, &ins.importance, |i| {
                        i.map_or(String::new(), |i| i.as_str().to_string())
                    });
                    f.other("items", &old.item_keys, &ins.item_keys, |l| {
                        format!("{l:?}")
                    });
                    f.other(
                        "hypotheses",
                        &old.hypothesis_ids,
                        &ins.hypothesis_ids,
                        |l| format!("{l:?}"),
                    );
                    f.other("outcomes", &old.outcome_ids, &ins.outcome_ids, |l| {
                        format!("{l:?}")
                    });
                    changes.push(update("insight", &id, f.0));
                    w.insights.push(ins.clone());
                }
            }
        }

        drop(customers);

        // Prune: what the server holds and the file does not.
        let mut refusals = Vec::new();
        self.plan_customers(
            ix,
            d,
            opts,
            now,
            &mut changes,
            &mut w,
            violations,
            &mut refusals,
        );
        if opts.prune {
            let delete = |kind: &'static str, id: &str, note: String| PlannedChange {
                action: Action::Delete,
                kind,
                id: id.to_string(),
                fields: Vec::new(),
                note,
            };
            let mut hyps: Vec<&Hypothesis> = ix
                .hypotheses()
                .filter(|h| !file_hyps.contains(h.id.as_str()))
                .collect();
            hyps.sort_by(|a, b| a.id.cmp(&b.id));
            for h in hyps {
                let links = ix.link_count_of_hypothesis(&h.id);
                let evidence = stored.evidence.get(&h.id).copied().unwrap_or(0);
                let note = match (links, evidence) {
                    (0, 0) => String::new(),
                    _ => format!("{links} links and {evidence} evidence records go with it"),
                };
                if !note.is_empty() && !opts.force {
                    refusals.push(format!(
                        "hypothesis {} still has {links} item links and {evidence} evidence records",
                        quote(&h.id)
                    ));
                }
                changes.push(delete("hypothesis", &h.id, note));
                w.delete_hypotheses.push(h.id.clone());
            }
            let mut metrics: Vec<&Metric> = ix
                .metrics()
                .map(|m| &m.metric)
                .filter(|m| !file_metrics.contains(m.id.as_str()) && !self.is_outcome_metric(&m.id))
                .collect();
            metrics.sort_by(|a, b| a.id.cmp(&b.id));
            for m in metrics {
                // Hypotheses the file keeps measure what the file says
                // (a reference to a pruned metric is refused above); those
                // it drops go with the metric.
                let users: Vec<&str> = ix
                    .hypotheses()
                    .filter(|h| h.metric_id == m.id && !file_hyps.contains(h.id.as_str()))
                    .map(|h| h.id.as_str())
                    .collect();
                let observations = ix.metric(&m.id).map_or(0, |e| e.observations.count);
                if observations > 0 && !opts.force {
                    refusals.push(format!(
                        "metric {} still has {observations} observations",
                        quote(&m.id)
                    ));
                }
                if !users.is_empty() && !opts.force {
                    refusals.push(format!(
                        "metric {} is still measured by hypotheses {}",
                        quote(&m.id),
                        users
                            .iter()
                            .map(|u| quote(u))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                changes.push(delete(
                    "metric",
                    &m.id,
                    if observations > 0 {
                        format!("its {observations} observations go with it")
                    } else {
                        String::new()
                    },
                ));
                w.delete_metrics.push(m.id.clone());
            }
            let mut goals: Vec<&Goal> = ix
                .goals()
                .filter(|g| !file_goals.contains_key(g.id.as_str()))
                .collect();
            // Children first.
            goals.sort_by(|a, b| {
                level_rank(b.level)
                    .cmp(&level_rank(a.level))
                    .then_with(|| a.id.cmp(&b.id))
            });
            for g in goals {
                // Child goals the file drops are deleted in this plan too
                // (children first), and those it keeps name their parents
                // in the file; hypotheses the file keeps serve what the file
                // says. What goes with the goal: the hypotheses it drops.
                let served = ix
                    .hypotheses()
                    .filter(|h| h.goal_id == g.id && !file_hyps.contains(h.id.as_str()))
                    .count();
                if served > 0 && !opts.force {
                    refusals.push(format!(
                        "goal {} still has {served} hypotheses",
                        quote(&g.id)
                    ));
                }
                changes.push(delete("goal", &g.id, String::new()));
                w.delete_goals.push(g.id.clone());
            }
            let mut sources: Vec<&Source> = ix
                .sources()
                .filter(|s| !file_sources.contains(s.id.as_str()))
                .collect();
            sources.sort_by(|a, b| a.id.cmp(&b.id));
            for s in sources {
                let n = ix.item_keys_of_source(&s.id).len() + ix.removed_count_of_source(&s.id);
                if n > 0 && !opts.force {
                    refusals.push(format!("source {} still has {n} items", quote(&s.id)));
                }
                let note = if n > 0 {
                    format!("its {n} items and their links go with it")
                } else {
                    String::new()
                };
                changes.push(delete("source", &s.id, note));
                w.delete_sources.push(s.id.clone());
            }
        }
        if !refusals.is_empty() && violations.is_empty() {
            return Err(Error::FailedPrecondition(format!(
                "prune would delete what other data still needs: {}; apply with force to delete it too, or keep it in the file",
                refusals.join("; ")
            )));
        }
        Ok((
            Plan {
                changes,
                applied: false,
                needs_admin: false,
            },
            w,
        ))
    }

    /// The current model, for `ExportValueModel`.
    pub async fn export_value_model(&self) -> Result<ModelExport> {
        let (sources, goals, metrics, hypotheses) = {
            let ix = self.read();
            let mut sources: Vec<Source> = ix.sources().cloned().collect();
            sources.sort_by(|a, b| a.id.cmp(&b.id));
            let mut goals: Vec<Goal> = ix.goals().cloned().collect();
            goals.sort_by(|a, b| {
                level_rank(a.level)
                    .cmp(&level_rank(b.level))
                    .then_with(|| a.id.cmp(&b.id))
            });
            // An outcome's metric is written with its outcome.
            let mut metrics: Vec<Metric> = ix
                .metrics()
                .filter(|m| !self.is_outcome_metric(&m.metric.id))
                .map(|m| m.metric.clone())
                .collect();
            metrics.sort_by(|a, b| a.id.cmp(&b.id));
            let mut hypotheses: Vec<Hypothesis> = ix.hypotheses().cloned().collect();
            hypotheses.sort_by(|a, b| a.id.cmp(&b.id));
            (sources, goals, metrics, hypotheses)
        };
        let mut with_obs = Vec::with_capacity(metrics.len());
        for m in metrics {
            let points = self.store.list_observations(&m.id).await?;
            with_obs.push((m, points));
        }
        Ok(ModelExport {
            sources,
            goals,
            metrics: with_obs,
            hypotheses,
            customers: self.export_customers(),
            insights: Vec::new(),
        })
    }
}
