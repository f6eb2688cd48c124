//! `plumbline.v1.CustomerService`: segments, desired outcomes and their
//! survey waves, and the roll-up by segment. Validation and proto <->
//! domain translation of these messages live here too (the model file's
//! `[[segments]]` and `[[outcomes]]` go through the same functions).

use std::sync::Arc;

use chrono::Utc;
use tonic::{Request, Response};

use super::Reply;
use super::convert::{self, Check, require_id, required};
use super::page::{self, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, PageToken};
use crate::domain::{DesiredOutcome, MAX_SEGMENT_WEIGHT, SURVEY_SCALE, Segment, SurveyWave, Time};
use crate::engine::{Engine, Error, OutcomeView, Result, SegmentRollupView};
use crate::proto as pb;

/// Most waves one call records.
pub const MAX_WAVES: usize = 10_000;
/// Longest name or statement, in bytes.
const MAX_LINE: usize = 1024;
/// Longest description, in bytes.
const MAX_DESCRIPTION: usize = 64 * 1024;

pub fn segment_to_pb(s: &Segment) -> pb::Segment {
    pb::Segment {
        id: s.id.clone(),
        name: s.name.clone(),
        description: s.description.clone(),
        weight: s.weight,
        create_time: Some(convert::timestamp(&s.create_time)),
        update_time: Some(convert::timestamp(&s.update_time)),
    }
}

/// A segment from the API: id, one-line name, weight in (0, 1e6].
pub fn segment_from_pb(p: &pb::Segment, prefix: &str) -> Result<Segment> {
    let mut c = Check::new(prefix);
    c.id("id", &p.id);
    c.line("name", &p.name, true, MAX_LINE);
    c.text("description", &p.description, false, MAX_DESCRIPTION);
    if !(p.weight.is_finite() && p.weight > 0.0 && p.weight <= MAX_SEGMENT_WEIGHT) {
        c.fail("weight", "must be a number above 0 and at most 1e6");
    }
    let now = Utc::now();
    c.finish(Segment {
        id: p.id.clone(),
        name: p.name.clone(),
        description: p.description.clone(),
        weight: p.weight,
        create_time: now,
        update_time: now,
    })
}

pub fn wave_to_pb(w: &SurveyWave) -> pb::SurveyWave {
    pb::SurveyWave {
        outcome_id: w.outcome_id.clone(),
        survey_time: Some(convert::timestamp(&w.at)),
        importance: w.importance,
        satisfaction: w.satisfaction,
        respondents: w.respondents.min(i32::MAX as u32) as i32,
    }
}

/// A survey wave: a time not in the future (`now` is the server's clock),
/// importance and satisfaction in [0, 10], at least one respondent.
pub fn wave_from_pb(p: &pb::SurveyWave, c: &mut Check, now: Time) -> Option<SurveyWave> {
    let before = c.violations.len();
    c.id("outcome_id", &p.outcome_id);
    let at = match p.survey_time.as_ref() {
        None => {
            c.fail("survey_time", "is required");
            None
        }
        Some(ts) => c
            .time("survey_time", Some(ts))
            .and_then(|t| c.not_future("survey_time", t, now)),
    };
    for (name, v) in [
        ("importance", p.importance),
        ("satisfaction", p.satisfaction),
    ] {
        if !(v.is_finite() && (0.0..=SURVEY_SCALE).contains(&v)) {
            c.fail(name, "must be a number from 0 to 10");
        }
    }
    if p.respondents < 1 {
        c.fail("respondents", "must be at least 1");
    }
    (c.violations.len() == before).then(|| SurveyWave {
        outcome_id: p.outcome_id.clone(),
        at: at.unwrap_or(now),
        importance: p.importance,
        satisfaction: p.satisfaction,
        respondents: p.respondents as u32,
    })
}

/// An outcome for the API; its waves only `with_waves` (one outcome's
/// answers), so that a list or a roll-up stays small however long the
/// survey history.
pub fn outcome_to_pb(v: &OutcomeView, with_waves: bool) -> pb::DesiredOutcome {
    let o = &v.outcome;
    let f = v.figures;
    pb::DesiredOutcome {
        id: o.id.clone(),
        segment_id: o.segment_id.clone(),
        statement: o.statement.clone(),
        waves: if with_waves {
            v.waves.iter().map(wave_to_pb).collect()
        } else {
            Vec::new()
        },
        importance: f.map(|f| f.importance),
        satisfaction: f.map(|f| f.satisfaction),
        gap: f.map(|f| f.gap),
        opportunity: f.map(|f| f.opportunity),
        underserved: f.is_some_and(|f| f.underserved),
        wave_count: v.waves.len().min(i32::MAX as usize) as i32,
        respondents: f.map_or(0, |f| f.respondents.min(i32::MAX as u32) as i32),
        create_time: Some(convert::timestamp(&o.create_time)),
        update_time: Some(convert::timestamp(&o.update_time)),
    }
}

/// A desired outcome from the API: id (which its metric takes), segment
/// id, a one-line statement (its metric's name).
pub fn outcome_from_pb(p: &pb::DesiredOutcome, prefix: &str) -> Result<DesiredOutcome> {
    let mut c = Check::new(prefix);
    c.id("id", &p.id);
    c.id("segment_id", &p.segment_id);
    c.title("statement", &p.statement, true, MAX_LINE);
    let now = Utc::now();
    c.finish(DesiredOutcome {
        id: p.id.clone(),
        segment_id: p.segment_id.clone(),
        statement: p.statement.clone(),
        create_time: now,
        update_time: now,
    })
}

fn rollup_to_pb(v: SegmentRollupView) -> pb::SegmentRollup {
    pb::SegmentRollup {
        segment: Some(segment_to_pb(&v.segment)),
        share: v.share,
        outcomes: v.outcomes.iter().map(|o| outcome_to_pb(o, false)).collect(),
        weighted_gap: v.weighted_gap,
        addressed: v.addressed,
        coverage: v.coverage,
        unserved: v.unserved,
        item_count: v.item_count.min(i32::MAX as usize) as i32,
        items: v
            .items
            .into_iter()
            .zip(v.item_titles)
            .map(|(s, title)| pb::ServingItem {
                item_key: s.key,
                title,
                value_for_goal: s.value_for_goal,
                value_density: s.value_density,
            })
            .collect(),
    }
}

/// `plumbline.v1.CustomerService`.
#[derive(Clone)]
pub struct CustomerApi(pub Arc<Engine>);

#[tonic::async_trait]
impl pb::customer_service_server::CustomerService for CustomerApi {
    async fn upsert_segment(
        &self,
        req: Request<pb::UpsertSegmentRequest>,
    ) -> Reply<pb::UpsertSegmentResponse> {
        let r = req.into_inner();
        let s = segment_from_pb(required("segment", r.segment.as_ref())?, "segment")?;
        let (s, created) = self.0.upsert_segment(s).await?;
        Ok(Response::new(pb::UpsertSegmentResponse {
            segment: Some(segment_to_pb(&s)),
            created,
        }))
    }

    async fn get_segment(
        &self,
        req: Request<pb::GetSegmentRequest>,
    ) -> Reply<pb::GetSegmentResponse> {
        let r = req.get_ref();
        require_id("id", &r.id)?;
        Ok(Response::new(pb::GetSegmentResponse {
            segment: Some(segment_to_pb(&self.0.get_segment(&r.id)?)),
        }))
    }

    async fn list_segments(
        &self,
        req: Request<pb::ListSegmentsRequest>,
    ) -> Reply<pb::ListSegmentsResponse> {
        let r = req.get_ref();
        let size = page::page_size(r.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
        let fingerprint = "ListSegments".to_string();
        let token = PageToken::decode(&r.page_token, &fingerprint)?;
        let (page, next) = page::paginate(
            |after, limit| self.0.list_segments(after, limit),
            |s| s.id.clone(),
            token,
            &fingerprint,
            size,
        );
        Ok(Response::new(pb::ListSegmentsResponse {
            segments: page.iter().map(segment_to_pb).collect(),
            next_page_token: next,
        }))
    }

    async fn delete_segment(
        &self,
        req: Request<pb::DeleteSegmentRequest>,
    ) -> Reply<pb::DeleteSegmentResponse> {
        let r = req.get_ref();
        require_id("id", &r.id)?;
        self.0.delete_segment(&r.id).await?;
        Ok(Response::new(pb::DeleteSegmentResponse {}))
    }

    async fn upsert_desired_outcome(
        &self,
        req: Request<pb::UpsertDesiredOutcomeRequest>,
    ) -> Reply<pb::UpsertDesiredOutcomeResponse> {
        let r = req.into_inner();
        let o = outcome_from_pb(required("outcome", r.outcome.as_ref())?, "outcome")?;
        let (v, created) = self.0.upsert_outcome(o).await?;
        Ok(Response::new(pb::UpsertDesiredOutcomeResponse {
            outcome: Some(outcome_to_pb(&v, true)),
            created,
        }))
    }

    async fn get_desired_outcome(
        &self,
        req: Request<pb::GetDesiredOutcomeRequest>,
    ) -> Reply<pb::GetDesiredOutcomeResponse> {
        let r = req.get_ref();
        require_id("id", &r.id)?;
        Ok(Response::new(pb::GetDesiredOutcomeResponse {
            outcome: Some(outcome_to_pb(&self.0.get_outcome(&r.id)?, true)),
        }))
    }

    async fn list_desired_outcomes(
        &self,
        req: Request<pb::ListDesiredOutcomesRequest>,
    ) -> Reply<pb::ListDesiredOutcomesResponse> {
        let r = req.get_ref();
        let size = page::page_size(r.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
        let fingerprint = format!("ListDesiredOutcomes|{}", r.segment_id);
        let token = PageToken::decode(&r.page_token, &fingerprint)?;
        let segment = (!r.segment_id.is_empty()).then_some(r.segment_id.as_str());
        let (page, next) = page::paginate(
            |after, limit| self.0.list_outcomes(segment, after, limit),
            |v| v.outcome.id.clone(),
            token,
            &fingerprint,
            size,
        );
        Ok(Response::new(pb::ListDesiredOutcomesResponse {
            outcomes: page.iter().map(|o| outcome_to_pb(o, false)).collect(),
            next_page_token: next,
        }))
    }

    async fn delete_desired_outcome(
        &self,
        req: Request<pb::DeleteDesiredOutcomeRequest>,
    ) -> Reply<pb::DeleteDesiredOutcomeResponse> {
        let r = req.get_ref();
        require_id("id", &r.id)?;
        self.0.delete_outcome(&r.id).await?;
        Ok(Response::new(pb::DeleteDesiredOutcomeResponse {}))
    }

    async fn record_survey_wave(
        &self,
        req: Request<pb::RecordSurveyWaveRequest>,
    ) -> Reply<pb::RecordSurveyWaveResponse> {
        let r = req.into_inner();
        if r.waves.is_empty() {
            return Err(Error::invalid("waves", "at least one wave is required").into());
        }
        if r.waves.len() > MAX_WAVES {
            return Err(Error::invalid("waves", format!("at most {MAX_WAVES} per call")).into());
        }
        let now = Utc::now();
        let mut waves = Vec::with_capacity(r.waves.len());
        let mut violations = Vec::new();
        for (i, p) in r.waves.iter().enumerate() {
            let mut c = Check::new(format!("waves[{i}]"));
            if let Some(w) = wave_from_pb(p, &mut c, now) {
                waves.push(w);
            }
            violations.extend(c.violations);
        }
        if !violations.is_empty() {
            return Err(Error::InvalidArgument(violations).into());
        }
        let (stored, views) = self.0.record_survey_waves(waves).await?;
        Ok(Response::new(pb::RecordSurveyWaveResponse {
            stored: stored.min(i32::MAX as usize) as i32,
            outcomes: views.iter().map(|o| outcome_to_pb(o, false)).collect(),
        }))
    }

    async fn roll_up_by_segment(
        &self,
        req: Request<pb::RollUpBySegmentRequest>,
    ) -> Reply<pb::RollUpBySegmentResponse> {
        let r = req.get_ref();
        let limit = page::page_size(r.items_per_segment, 5, 100)
            .map_err(|_| Error::invalid("items_per_segment", "must not be negative"))?;
        let tree = self.0.segment_rollup(limit);
        Ok(Response::new(pb::RollUpBySegmentResponse {
            segments: tree.segments.into_iter().map(rollup_to_pb).collect(),
            unserved_segment_ids: tree.unserved_segment_ids,
        }))
    }
}
