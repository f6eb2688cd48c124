//! `plumbline.v1.RollupService`: the goal tree with coverage, read from the
//! in-memory index.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::page;
use crate::engine::{Engine, Error};
use crate::index::ScoreIndex;
use crate::proto as pb;
use crate::refine::rollup::{self, GoalInput, HypothesisInput, ItemInput, Tree};

/// The roll-up of the whole tree from the index.
pub fn tree_of(ix: &ScoreIndex) -> Tree {
    let goals: Vec<GoalInput> = ix
        .goals()
        .map(|g| GoalInput {
            id: g.id.clone(),
            parent_id: g.parent_id.clone(),
            effective_weight: ix.goal_weight(&g.id),
        })
        .collect();
    let hyps: Vec<HypothesisInput> = ix
        .hypotheses()
        .map(|h| HypothesisInput {
            id: h.id.clone(),
            goal_id: h.goal_id.clone(),
            metric_id: h.metric_id.clone(),
            gap: ix.metric(&h.metric_id).map_or(0.0, |m| m.gap),
        })
        .collect();
    let items: Vec<ItemInput> = ix
        .open_item_scores()
        .into_iter()
        .map(|(key, s)| ItemInput {
            key: key.to_string(),
            value_density: s.value_density,
            terms: s
                .terms
                .iter()
                .map(|t| (t.hypothesis_id.clone(), t.value))
                .collect(),
        })
        .collect();
    rollup::rollup(&goals, &hyps, &items)
}

fn rollup_pb(r: &rollup::GoalRollup, ix: &ScoreIndex, limit: usize) -> pb::GoalRollup {
    let goal = ix.goal(&r.goal_id);
    pb::GoalRollup {
        goal_id: r.goal_id.clone(),
        title: goal.map(|g| g.title.clone()).unwrap_or_default(),
        parent_id: goal.map(|g| g.parent_id.clone()).unwrap_or_default(),
        depth: r.depth as i32,
        effective_weight: ix.goal_weight(&r.goal_id),
        weighted_gap: r.weighted_gap,
        addressed: r.addressed,
        coverage: r.coverage,
        unserved: r.unserved,
        item_count: r.items.len() as i32,
        items: r
            .items
            .iter()
            .take(limit)
            .map(|s| pb::ServingItem {
                item_key: s.key.clone(),
                title: ix.item(&s.key).map(|f| f.title.clone()).unwrap_or_default(),
                value_for_goal: s.value_for_goal,
                value_density: s.value_density,
            })
            .collect(),
    }
}

/// `plumbline.v1.RollupService`.
#[derive(Clone)]
pub struct RollupApi(pub Arc<Engine>);

#[tonic::async_trait]
impl pb::rollup_service_server::RollupService for RollupApi {
    async fn get_goal_rollup(
        &self,
        req: Request<pb::GetGoalRollupRequest>,
    ) -> Result<Response<pb::GetGoalRollupResponse>, Status> {
        let r = req.into_inner();
        let limit = page::page_size(r.item_limit, 20, 1000)
            .map_err(|_| Error::invalid("item_limit", "must not be negative"))?;
        let ix = self.0.read();
        if ix.goal(&r.goal_id).is_none() {
            return Err(if r.goal_id.is_empty() {
                Error::invalid("goal_id", "is required")
            } else {
                Error::NotFound(format!("goal {:?} not found", r.goal_id))
            }
            .into());
        }
        let tree = tree_of(&ix);
        let found = tree.goals.iter().find(|g| g.goal_id == r.goal_id);
        Ok(Response::new(pb::GetGoalRollupResponse {
            rollup: found.map(|g| rollup_pb(g, &ix, limit)),
        }))
    }

    async fn get_goal_tree(
        &self,
        req: Request<pb::GetGoalTreeRequest>,
    ) -> Result<Response<pb::GetGoalTreeResponse>, Status> {
        let r = req.into_inner();
        let limit = page::page_size(r.items_per_goal, 5, 100)
            .map_err(|_| Error::invalid("items_per_goal", "must not be negative"))?;
        let ix = self.0.read();
        let tree = tree_of(&ix);
        Ok(Response::new(pb::GetGoalTreeResponse {
            goals: tree
                .goals
                .iter()
                .map(|g| rollup_pb(g, &ix, limit))
                .collect(),
            unserved_goal_ids: tree.unserved_goal_ids,
            unaligned_item_count: tree.unaligned_item_keys.len() as i32,
            unaligned_item_keys: tree.unaligned_item_keys.into_iter().take(1000).collect(),
        }))
    }
}
