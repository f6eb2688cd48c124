//! `plumbline.v1.ValidationService`: releases, experiments, evidence and
//! metric trends.

use std::sync::Arc;

use chrono::Utc;
use tonic::{Request, Response, Status};

use super::convert::{Check, timestamp};
use crate::domain::{
    Evidence, EvidenceMethod, EvidenceOutcome, Experiment, HypothesisStatus, Release, ReleaseOrigin,
};
use crate::engine::{Engine, Error, TouchedRelease};
use crate::proto as pb;
use crate::refine::validate::Windows;

/// `plumbline.v1.ValidationService`.
#[derive(Clone)]
pub struct ValidationApi {
    pub engine: Arc<Engine>,
    pub windows: Windows,
}

fn status_name(s: HypothesisStatus) -> String {
    match s {
        HypothesisStatus::Proposed => pb::HypothesisStatus::Proposed,
        HypothesisStatus::Testing => pb::HypothesisStatus::Testing,
        HypothesisStatus::Validated => pb::HypothesisStatus::Validated,
        HypothesisStatus::Invalidated => pb::HypothesisStatus::Invalidated,
    }
    .as_str_name()
    .to_string()
}

pub fn evidence_pb(e: &Evidence) -> pb::Evidence {
    pb::Evidence {
        hypothesis_id: e.hypothesis_id.clone(),
        subject_id: e.subject_id.clone(),
        method: match e.method {
            EvidenceMethod::BeforeAfter => pb::EvidenceMethod::BeforeAfter,
            EvidenceMethod::Experiment => pb::EvidenceMethod::Experiment,
        } as i32,
        outcome: match e.outcome {
            EvidenceOutcome::Supports => pb::EvidenceOutcome::Supports,
            EvidenceOutcome::Refutes => pb::EvidenceOutcome::Refutes,
            EvidenceOutcome::Inconclusive => pb::EvidenceOutcome::Inconclusive,
            EvidenceOutcome::InsufficientData => pb::EvidenceOutcome::InsufficientData,
        } as i32,
        realized_effect: e.realized_effect,
        expected_effect: e.expected_effect,
        confounded: e.confounded,
        step: e.step,
        step_se: e.step_se,
        delivered: e.delivered,
        log_likelihood_ratio: e.log_likelihood_ratio,
        points_before: e.points_before as i32,
        points_after: e.points_after as i32,
        confidence_before: e.confidence_before,
        confidence_after: e.confidence_after,
        status_after: status_name(e.status_after),
        reason: e.reason.clone(),
        record_time: Some(timestamp(&e.record_time)),
    }
}

fn release_pb(r: &Release) -> pb::Release {
    pb::Release {
        id: r.id.clone(),
        item_keys: r.item_keys.clone(),
        release_time: Some(timestamp(&r.time)),
        origin: match r.origin {
            ReleaseOrigin::Api => pb::ReleaseOrigin::Api,
            ReleaseOrigin::Tracker => pb::ReleaseOrigin::Tracker,
        } as i32,
        note: r.note.clone(),
    }
}

fn marker_pb(r: &TouchedRelease) -> pb::ReleaseMarker {
    pb::ReleaseMarker {
        release: Some(release_pb(&r.release)),
        hypothesis_ids: r.hypothesis_ids.clone(),
    }
}

#[tonic::async_trait]
impl pb::validation_service_server::ValidationService for ValidationApi {
    async fn record_release(
        &self,
        req: Request<pb::RecordReleaseRequest>,
    ) -> Result<Response<pb::RecordReleaseResponse>, Status> {
        let r = req.into_inner();
        let mut c = Check::new("");
        if !r.release_id.is_empty() && !crate::domain::is_valid_id(&r.release_id) {
            c.fail(
                "release_id",
                "must be 1-64 letters, digits, '.', '_' or '-'",
            );
        }
        if r.item_keys.is_empty() {
            c.fail("item_keys", "name at least one released item");
        }
        if r.item_keys.len() > 1000 {
            c.fail("item_keys", "at most 1000 items per release");
        }
        // A release is recorded once it has happened: one dated beyond the
        // clock skew would put observations still to come in its window.
        let now = Utc::now();
        let time = c
            .time("release_time", r.release_time.as_ref())
            .and_then(|t| c.not_future("release_time", t, now))
            .unwrap_or(now);
        c.text("note", &r.note, false, 4096);
        c.finish(())?;
        let release = Release {
            id: r.release_id,
            time,
            item_keys: r.item_keys,
            origin: ReleaseOrigin::Api,
            note: r.note,
        };
        let release = self.engine.record_release(release).await?;
        Ok(Response::new(pb::RecordReleaseResponse {
            release: Some(release_pb(&release)),
        }))
    }

    async fn record_experiment_result(
        &self,
        req: Request<pb::RecordExperimentResultRequest>,
    ) -> Result<Response<pb::RecordExperimentResultResponse>, Status> {
        let r = req.into_inner();
        let mut c = Check::new("");
        c.id("hypothesis_id", &r.hypothesis_id);
        c.metric_number("lift", r.lift);
        c.metric_number("ci_low", r.ci_low);
        c.metric_number("ci_high", r.ci_high);
        if !(r.ci_low <= r.lift && r.lift <= r.ci_high) {
            c.fail("lift", "must lie within [ci_low, ci_high]");
        }
        let now = Utc::now();
        let time = c
            .time("result_time", r.result_time.as_ref())
            .and_then(|t| c.not_future("result_time", t, now))
            .unwrap_or(now);
        c.text("source", &r.source, false, 1024);
        c.finish(())?;
        let e = Experiment {
            id: format!("{}-{}", r.hypothesis_id, time.format("%Y%m%dT%H%M%S%.9fZ")),
            hypothesis_id: r.hypothesis_id,
            lift: r.lift,
            ci_low: r.ci_low,
            ci_high: r.ci_high,
            time,
            source: r.source,
        };
        let ev = self.engine.record_experiment(e).await?;
        Ok(Response::new(pb::RecordExperimentResultResponse {
            evidence: Some(evidence_pb(&ev)),
        }))
    }

    async fn validate_releases(
        &self,
        req: Request<pb::ValidateReleasesRequest>,
    ) -> Result<Response<pb::ValidateReleasesResponse>, Status> {
        let r = req.into_inner();
        let now = Utc::now();
        let mut c = Check::new("");
        let as_of = c
            .time("as_of", r.as_of.as_ref())
            .and_then(|t| c.not_future("as_of", t, now))
            .unwrap_or(now);
        c.finish(())?;
        let ev = self
            .engine
            .validate_releases(&self.windows, as_of, r.include_open_windows, r.dry_run)
            .await?;
        Ok(Response::new(pb::ValidateReleasesResponse {
            evidence: ev.iter().map(evidence_pb).collect(),
            dry_run: r.dry_run,
        }))
    }

    async fn get_hypothesis_evidence(
        &self,
        req: Request<pb::GetHypothesisEvidenceRequest>,
    ) -> Result<Response<pb::GetHypothesisEvidenceResponse>, Status> {
        let id = req.into_inner().hypothesis_id;
        let mut c = Check::new("");
        c.id("hypothesis_id", &id);
        c.finish(())?;
        let ev = self.engine.hypothesis_evidence(&id).await?;
        Ok(Response::new(pb::GetHypothesisEvidenceResponse {
            evidence: ev.iter().map(evidence_pb).collect(),
        }))
    }

    async fn get_metric_trend(
        &self,
        req: Request<pb::GetMetricTrendRequest>,
    ) -> Result<Response<pb::GetMetricTrendResponse>, Status> {
        let id = req.into_inner().metric_id;
        if id.is_empty() {
            return Err(Error::invalid("metric_id", "is required").into());
        }
        let (entry, points, releases) = self.engine.metric_trend(&id).await?;
        Ok(Response::new(pb::GetMetricTrendResponse {
            metric_id: id,
            baseline: entry.metric.baseline,
            target: entry.metric.target,
            unit: entry.metric.unit,
            points: points
                .iter()
                .map(|(t, v)| pb::TrendPoint {
                    observe_time: Some(timestamp(t)),
                    value: *v,
                })
                .collect(),
            releases: releases.iter().map(marker_pb).collect(),
        }))
    }
}
