//! `plumbline.v1.SplitService`: validate, call the engine's split use cases
//! (through the [`Syncer`], which can also write the slices to a tracker),
//! and translate the planner's plain data to proto.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::convert::{self, Check};
use super::sync::sync_status;
use crate::proto as pb;
use crate::refine::split::{self, Plan, PlanKind, Proposal, Slice, SliceLink};
use crate::sync::Syncer;

/// `plumbline.v1.SplitService`. It holds the [`Syncer`] for its shared HTTP
/// client (write-back) and reaches the engine through it.
#[derive(Clone)]
pub struct SplitApi(pub Arc<Syncer>);

fn kind_to_pb(k: PlanKind) -> pb::SplitPlanKind {
    match k {
        PlanKind::ByHypothesis => pb::SplitPlanKind::ByHypothesis,
        PlanKind::ByTask => pb::SplitPlanKind::ByTask,
        PlanKind::ByChild => pb::SplitPlanKind::ByChild,
    }
}

fn link_pb(l: &SliceLink) -> pb::SliceLink {
    pb::SliceLink {
        hypothesis_id: l.hypothesis_id.clone(),
        contribution: l.contribution,
    }
}

fn slice_pb(s: &Slice) -> pb::Slice {
    pb::Slice {
        item_key: s.item_key.clone(),
        title: s.title.clone(),
        value: s.value,
        size: s.size,
        value_density: s.value_density,
        links: s.links.iter().map(link_pb).collect(),
    }
}

fn plan_pb(p: &Plan) -> pb::SplitPlan {
    pb::SplitPlan {
        kind: kind_to_pb(p.kind) as i32,
        slices: p.slices.iter().map(slice_pb).collect(),
        best_slice_index: p.best_slice_index as i32,
        value_concentration: p.value_concentration,
    }
}

fn proposal_pb(key: &str, title: String, p: &Proposal) -> pb::ProposeSplitsResponse {
    pb::ProposeSplitsResponse {
        item_key: key.to_string(),
        title,
        value: p.value,
        size: p.size,
        value_density: p.value_density,
        size_threshold: p.size_threshold,
        oversized: p.oversized,
        plans: p.plans.iter().map(plan_pb).collect(),
    }
}

#[tonic::async_trait]
impl pb::split_service_server::SplitService for SplitApi {
    async fn propose_splits(
        &self,
        req: Request<pb::ProposeSplitsRequest>,
    ) -> std::result::Result<Response<pb::ProposeSplitsResponse>, Status> {
        let r = req.get_ref();
        let mut c = Check::new("");
        if r.item_key.is_empty() {
            c.fail("item_key", "is required");
        }
        if let Some(t) = r.size_threshold
            && !(t.is_finite() && t > 0.0)
        {
            c.fail(
                "size_threshold",
                format!(
                    "must be a positive number; leave it unset for the default of {}",
                    split::DEFAULT_SIZE_THRESHOLD
                ),
            );
        }
        c.finish(())?;
        let threshold = r.size_threshold.unwrap_or(split::DEFAULT_SIZE_THRESHOLD);
        let engine = self.0.engine();
        let proposal = engine.propose_splits(&r.item_key, threshold).await?;
        let title = engine.item_title(&r.item_key);
        Ok(Response::new(proposal_pb(&r.item_key, title, &proposal)))
    }

    async fn apply_split(
        &self,
        req: Request<pb::ApplySplitRequest>,
    ) -> std::result::Result<Response<pb::ApplySplitResponse>, Status> {
        let r = req.get_ref();
        if r.write_back {
            // The layer let a write through; write-back reaches the tracker.
            crate::auth::require(&req, crate::auth::Role::Admin, "ApplySplit with write_back")?;
        }
        let kind = {
            let mut c = Check::new("");
            if r.item_key.is_empty() {
                c.fail("item_key", "is required");
            }
            let kind = match pb::SplitPlanKind::try_from(r.plan_kind) {
                Ok(pb::SplitPlanKind::ByHypothesis) => Some(PlanKind::ByHypothesis),
                Ok(pb::SplitPlanKind::ByTask) => Some(PlanKind::ByTask),
                Ok(pb::SplitPlanKind::ByChild) => Some(PlanKind::ByChild),
                Ok(pb::SplitPlanKind::Unspecified) => {
                    c.fail("plan_kind", "is required: BY_HYPOTHESIS or BY_TASK");
                    None
                }
                Err(_) => {
                    c.fail("plan_kind", "is not a known plan kind");
                    None
                }
            };
            c.finish(())?;
            // `kind` is only None when a violation was reported above.
            kind.unwrap_or(PlanKind::ByHypothesis)
        };
        let applied = self
            .0
            .apply_split(&r.item_key, kind, r.write_back)
            .await
            .map_err(sync_status)?;
        Ok(Response::new(pb::ApplySplitResponse {
            items: applied.items.iter().map(convert::item_to_pb).collect(),
            created_count: applied.created.len() as i32,
            created_item_keys: applied.created,
        }))
    }
}
