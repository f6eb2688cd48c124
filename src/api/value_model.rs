//! `plumbline.v1.ValueModelService`: goals, metrics (with their
//! observations) and hypotheses.

use std::sync::Arc;

use chrono::Utc;
use tonic::{Request, Response};

use super::Reply;
use super::convert::{self, Check, require_id, required};
use super::mask::{MaskField, fields_to_update};
use super::page::{self, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, PageToken};
use crate::domain;
use crate::engine::{Engine, Error};
use crate::proto as pb;

/// Most observations one `RecordObservations` call takes.
const MAX_OBSERVATIONS: usize = 10_000;

/// `plumbline.v1.ValueModelService`; the puller runs `PullMetric`.
#[derive(Clone)]
pub struct ValueModelApi(pub Arc<Engine>, pub Arc<crate::metric_source::Puller>);

impl ValueModelApi {
    fn metric_pb(&self, m: &crate::engine::MetricView, now: chrono::DateTime<Utc>) -> pb::Metric {
        super::pull::metric_pb(&self.1, m, now)
    }

    fn goal_pb(&self, g: domain::Goal) -> pb::Goal {
        let v = self.0.goal_view(g);
        convert::goal_to_pb(&v.goal, v.effective_weight)
    }

    fn hypothesis_pb(&self, h: domain::Hypothesis) -> pb::Hypothesis {
        let v = self.0.hypothesis_view(h);
        pb::Hypothesis {
            unsupported: v.unsupported,
            ..convert::hypothesis_to_pb(&v.hypothesis, v.value)
        }
    }
}

/// Why setting a metric's source needs admin: the server then fetches on
/// its own, with secrets the operator allowed (a header, a token, a DSN),
/// at the place the source names, as a tracker source does.
const METRIC_SOURCE_NEEDS_ADMIN: &str =
    "setting a metric's source (the server fetches from it with the operator's secrets)";

#[tonic::async_trait]
impl pb::value_model_service_server::ValueModelService for ValueModelApi {
    type PullMetricStream = super::pull::PullStream;

    async fn pull_metric(
        &self,
        req: Request<pb::PullMetricRequest>,
    ) -> Reply<Self::PullMetricStream> {
        super::pull::pull_metric(self.1.clone(), req.into_inner().metric_id).await
    }

    async fn create_goal(
        &self,
        req: Request<pb::CreateGoalRequest>,
    ) -> Reply<pb::CreateGoalResponse> {
        let g = convert::goal_from_pb(required("goal", req.get_ref().goal.as_ref())?, "goal")?;
        let g = self.0.create_goal(g).await?;
        Ok(Response::new(pb::CreateGoalResponse {
            goal: Some(self.goal_pb(g)),
        }))
    }

    async fn get_goal(&self, req: Request<pb::GetGoalRequest>) -> Reply<pb::GetGoalResponse> {
        require_id("id", &req.get_ref().id)?;
        let g = self.0.get_goal(&req.get_ref().id)?;
        Ok(Response::new(pb::GetGoalResponse {
            goal: Some(self.goal_pb(g)),
        }))
    }

    async fn list_goals(&self, req: Request<pb::ListGoalsRequest>) -> Reply<pb::ListGoalsResponse> {
        let r = req.get_ref();
        let size = page::page_size(r.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
        let fingerprint = format!("ListGoals|{}", r.parent_id);
        let token = PageToken::decode(&r.page_token, &fingerprint)?;
        let parent = (!r.parent_id.is_empty()).then_some(r.parent_id.as_str());
        let (page, next) = page::paginate(
            |after, limit| self.0.list_goals(parent, after, limit),
            |g| g.goal.id.clone(),
            token,
            &fingerprint,
            size,
        );
        Ok(Response::new(pb::ListGoalsResponse {
            goals: page
                .iter()
                .map(|g| convert::goal_to_pb(&g.goal, g.effective_weight))
                .collect(),
            next_page_token: next,
        }))
    }

    async fn update_goal(
        &self,
        req: Request<pb::UpdateGoalRequest>,
    ) -> Reply<pb::UpdateGoalResponse> {
        let r = req.get_ref();
        let incoming = required("goal", r.goal.as_ref())?;
        require_id("goal.id", &incoming.id)?;
        let fields = fields_to_update(incoming, r.update_mask.as_ref(), goal_field_set)?;
        let g = self
            .0
            .update_goal(&incoming.id, |g| {
                let mut p = convert::goal_to_pb(g, 0.0);
                for f in &fields {
                    copy_goal_field(&mut p, incoming, *f);
                }
                let updated = convert::goal_from_pb(&p, "goal")?;
                *g = domain::Goal {
                    create_time: g.create_time,
                    ..updated
                };
                Ok(())
            })
            .await?;
        Ok(Response::new(pb::UpdateGoalResponse {
            goal: Some(self.goal_pb(g)),
        }))
    }

    async fn delete_goal(
        &self,
        req: Request<pb::DeleteGoalRequest>,
    ) -> Reply<pb::DeleteGoalResponse> {
        require_id("id", &req.get_ref().id)?;
        self.0.delete_goal(&req.get_ref().id).await?;
        Ok(Response::new(pb::DeleteGoalResponse {}))
    }

    async fn create_metric(
        &self,
        req: Request<pb::CreateMetricRequest>,
    ) -> Reply<pb::CreateMetricResponse> {
        if req
            .get_ref()
            .metric
            .as_ref()
            .is_some_and(|m| m.source.is_some())
        {
            crate::auth::require(&req, crate::auth::Role::Admin, METRIC_SOURCE_NEEDS_ADMIN)?;
        }
        let m =
            convert::metric_from_pb(required("metric", req.get_ref().metric.as_ref())?, "metric")?;
        let m = self.0.create_metric(m).await?;
        Ok(Response::new(pb::CreateMetricResponse {
            metric: Some(self.metric_pb(&m, Utc::now())),
        }))
    }

    async fn get_metric(&self, req: Request<pb::GetMetricRequest>) -> Reply<pb::GetMetricResponse> {
        require_id("id", &req.get_ref().id)?;
        let m = self.0.get_metric(&req.get_ref().id)?;
        Ok(Response::new(pb::GetMetricResponse {
            metric: Some(self.metric_pb(&m, Utc::now())),
        }))
    }

    async fn list_metrics(
        &self,
        req: Request<pb::ListMetricsRequest>,
    ) -> Reply<pb::ListMetricsResponse> {
        let r = req.get_ref();
        let size = page::page_size(r.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
        let token = PageToken::decode(&r.page_token, "ListMetrics")?;
        let now = Utc::now();
        let (page, next) = page::paginate(
            |after, limit| self.0.list_metrics(after, limit),
            |m| m.metric.id.clone(),
            token,
            "ListMetrics",
            size,
        );
        Ok(Response::new(pb::ListMetricsResponse {
            metrics: page.iter().map(|m| self.metric_pb(m, now)).collect(),
            next_page_token: next,
        }))
    }

    async fn update_metric(
        &self,
        req: Request<pb::UpdateMetricRequest>,
    ) -> Reply<pb::UpdateMetricResponse> {
        let r = req.get_ref();
        let incoming = required("metric", r.metric.as_ref())?;
        require_id("metric.id", &incoming.id)?;
        let fields = fields_to_update(incoming, r.update_mask.as_ref(), metric_field_set)?;
        if fields.contains(&MetricField::Source) {
            crate::auth::require(&req, crate::auth::Role::Admin, METRIC_SOURCE_NEEDS_ADMIN)?;
        }
        let m = self
            .0
            .update_metric(&incoming.id, |m| {
                let entry = crate::engine::MetricView {
                    metric: m.clone(),
                    observations: Default::default(),
                    gap: 0.0,
                };
                let mut p = convert::metric_to_pb(&entry, Utc::now());
                for f in &fields {
                    copy_metric_field(&mut p, incoming, *f);
                }
                // A direction not written by this update is re-derived from
                // baseline and target.
                if !fields.contains(&MetricField::Direction) {
                    p.direction = 0;
                }
                let updated = convert::metric_from_pb(&p, "metric")?;
                *m = domain::Metric {
                    create_time: m.create_time,
                    ..updated
                };
                Ok(())
            })
            .await?;
        Ok(Response::new(pb::UpdateMetricResponse {
            metric: Some(self.metric_pb(&m, Utc::now())),
        }))
    }

    async fn delete_metric(
        &self,
        req: Request<pb::DeleteMetricRequest>,
    ) -> Reply<pb::DeleteMetricResponse> {
        require_id("id", &req.get_ref().id)?;
        self.0.delete_metric(&req.get_ref().id).await?;
        Ok(Response::new(pb::DeleteMetricResponse {}))
    }

    async fn record_observations(
        &self,
        req: Request<pb::RecordObservationsRequest>,
    ) -> Reply<pb::RecordObservationsResponse> {
        let r = req.into_inner();
        if r.observations.is_empty() {
            return Err(
                Error::invalid("observations", "at least one observation is required").into(),
            );
        }
        if r.observations.len() > MAX_OBSERVATIONS {
            return Err(Error::invalid(
                "observations",
                format!("at most {MAX_OBSERVATIONS} per call"),
            )
            .into());
        }
        let now = Utc::now();
        let mut obs = Vec::with_capacity(r.observations.len());
        let mut violations = Vec::new();
        for (i, p) in r.observations.iter().enumerate() {
            let mut c = Check::new(format!("observations[{i}]"));
            if let Some(o) = convert::observation_from_pb(p, &mut c, now) {
                obs.push(o);
            }
            violations.extend(c.violations);
        }
        if !violations.is_empty() {
            return Err(Error::InvalidArgument(violations).into());
        }
        let n = obs.len();
        let metrics = self.0.record_observations(obs).await?;
        Ok(Response::new(pb::RecordObservationsResponse {
            recorded_count: n as i32,
            metrics: metrics.iter().map(|m| self.metric_pb(m, now)).collect(),
        }))
    }

    async fn create_hypothesis(
        &self,
        req: Request<pb::CreateHypothesisRequest>,
    ) -> Reply<pb::CreateHypothesisResponse> {
        let h = convert::hypothesis_from_pb(
            required("hypothesis", req.get_ref().hypothesis.as_ref())?,
            "hypothesis",
        )?;
        let h = self.0.create_hypothesis(h).await?;
        Ok(Response::new(pb::CreateHypothesisResponse {
            hypothesis: Some(self.hypothesis_pb(h)),
        }))
    }

    async fn get_hypothesis(
        &self,
        req: Request<pb::GetHypothesisRequest>,
    ) -> Reply<pb::GetHypothesisResponse> {
        require_id("id", &req.get_ref().id)?;
        let h = self.0.get_hypothesis(&req.get_ref().id)?;
        Ok(Response::new(pb::GetHypothesisResponse {
            hypothesis: Some(self.hypothesis_pb(h)),
        }))
    }

    async fn list_hypotheses(
        &self,
        req: Request<pb::ListHypothesesRequest>,
    ) -> Reply<pb::ListHypothesesResponse> {
        let r = req.get_ref();
        let size = page::page_size(r.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
        let fingerprint = format!("ListHypotheses|{}|{}", r.goal_id, r.metric_id);
        let token = PageToken::decode(&r.page_token, &fingerprint)?;
        let goal = (!r.goal_id.is_empty()).then_some(r.goal_id.as_str());
        let metric = (!r.metric_id.is_empty()).then_some(r.metric_id.as_str());
        let (page, next) = page::paginate(
            |after, limit| self.0.list_hypotheses(goal, metric, after, limit),
            |h| h.hypothesis.id.clone(),
            token,
            &fingerprint,
            size,
        );
        Ok(Response::new(pb::ListHypothesesResponse {
            hypotheses: page
                .iter()
                .map(|h| pb::Hypothesis {
                    unsupported: h.unsupported,
                    ..convert::hypothesis_to_pb(&h.hypothesis, h.value)
                })
                .collect(),
            next_page_token: next,
        }))
    }

    async fn update_hypothesis(
        &self,
        req: Request<pb::UpdateHypothesisRequest>,
    ) -> Reply<pb::UpdateHypothesisResponse> {
        let r = req.get_ref();
        let incoming = required("hypothesis", r.hypothesis.as_ref())?;
        require_id("hypothesis.id", &incoming.id)?;
        let fields = fields_to_update(incoming, r.update_mask.as_ref(), hypothesis_field_set)?;
        let h = self
            .0
            .update_hypothesis(&incoming.id, |h| {
                let mut p = convert::hypothesis_to_pb(h, 0.0);
                for f in &fields {
                    copy_hypothesis_field(&mut p, incoming, *f);
                }
                let updated = convert::hypothesis_from_pb(&p, "hypothesis")?;
                *h = domain::Hypothesis {
                    create_time: h.create_time,
                    ..updated
                };
                Ok(())
            })
            .await?;
        Ok(Response::new(pb::UpdateHypothesisResponse {
            hypothesis: Some(self.hypothesis_pb(h)),
        }))
    }

    async fn delete_hypothesis(
        &self,
        req: Request<pb::DeleteHypothesisRequest>,
    ) -> Reply<pb::DeleteHypothesisResponse> {
        let r = req.get_ref();
        require_id("id", &r.id)?;
        self.0.delete_hypothesis(&r.id, r.force).await?;
        Ok(Response::new(pb::DeleteHypothesisResponse {}))
    }
}

/// The fields of a Goal that UpdateGoal writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GoalField {
    Title,
    Description,
    Level,
    ParentId,
    KeyValueArea,
    Weight,
}

impl MaskField for GoalField {
    const PATHS: &'static [(&'static str, Self)] = &[
        ("title", GoalField::Title),
        ("description", GoalField::Description),
        ("level", GoalField::Level),
        ("parent_id", GoalField::ParentId),
        ("key_value_area", GoalField::KeyValueArea),
        ("weight", GoalField::Weight),
    ];
}

fn goal_field_set(p: &pb::Goal, f: GoalField) -> bool {
    match f {
        GoalField::Title => !p.title.is_empty(),
        GoalField::Description => !p.description.is_empty(),
        GoalField::Level => p.level != 0,
        GoalField::ParentId => !p.parent_id.is_empty(),
        GoalField::KeyValueArea => p.key_value_area != 0,
        GoalField::Weight => p.weight.is_some(),
    }
}

fn copy_goal_field(p: &mut pb::Goal, i: &pb::Goal, f: GoalField) {
    match f {
        GoalField::Title => p.title = i.title.clone(),
        GoalField::Description => p.description = i.description.clone(),
        GoalField::Level => p.level = i.level,
        GoalField::ParentId => p.parent_id = i.parent_id.clone(),
        GoalField::KeyValueArea => p.key_value_area = i.key_value_area,
        GoalField::Weight => p.weight = i.weight,
    }
}

/// The fields of a Metric that UpdateMetric writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MetricField {
    Name,
    Unit,
    Direction,
    Baseline,
    Target,
    Cadence,
    Source,
}

impl MaskField for MetricField {
    const PATHS: &'static [(&'static str, Self)] = &[
        ("name", MetricField::Name),
        ("unit", MetricField::Unit),
        ("direction", MetricField::Direction),
        ("baseline", MetricField::Baseline),
        ("target", MetricField::Target),
        ("cadence", MetricField::Cadence),
        ("source", MetricField::Source),
    ];
}

fn metric_field_set(p: &pb::Metric, f: MetricField) -> bool {
    match f {
        MetricField::Name => !p.name.is_empty(),
        MetricField::Unit => !p.unit.is_empty(),
        MetricField::Direction => p.direction != 0,
        MetricField::Baseline => p.baseline != 0.0,
        MetricField::Target => p.target != 0.0,
        MetricField::Cadence => p.cadence.is_some(),
        MetricField::Source => p.source.is_some(),
    }
}

fn copy_metric_field(p: &mut pb::Metric, i: &pb::Metric, f: MetricField) {
    match f {
        MetricField::Name => p.name = i.name.clone(),
        MetricField::Unit => p.unit = i.unit.clone(),
        MetricField::Direction => p.direction = i.direction,
        MetricField::Baseline => p.baseline = i.baseline,
        MetricField::Target => p.target = i.target,
        MetricField::Cadence => p.cadence = i.cadence,
        MetricField::Source => p.source = i.source.clone(),
    }
}

/// The fields of a Hypothesis that UpdateHypothesis writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HypothesisField {
    Statement,
    GoalId,
    MetricId,
    ExpectedEffect,
    Confidence,
    Status,
    CheckTime,
}

impl MaskField for HypothesisField {
    const PATHS: &'static [(&'static str, Self)] = &[
        ("statement", HypothesisField::Statement),
        ("goal_id", HypothesisField::GoalId),
        ("metric_id", HypothesisField::MetricId),
        ("expected_effect", HypothesisField::ExpectedEffect),
        ("confidence", HypothesisField::Confidence),
        ("status", HypothesisField::Status),
        ("check_time", HypothesisField::CheckTime),
    ];
}

fn hypothesis_field_set(p: &pb::Hypothesis, f: HypothesisField) -> bool {
    match f {
        HypothesisField::Statement => !p.statement.is_empty(),
        HypothesisField::GoalId => !p.goal_id.is_empty(),
        HypothesisField::MetricId => !p.metric_id.is_empty(),
        HypothesisField::ExpectedEffect => p.expected_effect != 0.0,
        HypothesisField::Confidence => p.confidence.is_some(),
        HypothesisField::Status => p.status != 0,
        HypothesisField::CheckTime => p.check_time.is_some(),
    }
}

fn copy_hypothesis_field(p: &mut pb::Hypothesis, i: &pb::Hypothesis, f: HypothesisField) {
    match f {
        HypothesisField::Statement => p.statement = i.statement.clone(),
        HypothesisField::GoalId => p.goal_id = i.goal_id.clone(),
        HypothesisField::MetricId => p.metric_id = i.metric_id.clone(),
        HypothesisField::ExpectedEffect => p.expected_effect = i.expected_effect,
        HypothesisField::Confidence => p.confidence = i.confidence,
        HypothesisField::Status => p.status = i.status,
        HypothesisField::CheckTime => p.check_time = i.check_time,
    }
}
