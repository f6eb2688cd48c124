//! `plumbline.v1.RollupService`: the goal tree with coverage, as the engine
//! rolls it up from the in-memory index.

use std::sync::Arc;

use tonic::{Request, Response};

use super::{Reply, page};
use crate::engine::{Engine, Error, GoalRollupView};
use crate::proto as pb;

fn rollup_pb(v: GoalRollupView) -> pb::GoalRollup {
    let r = v.rollup;
    pb::GoalRollup {
        goal_id: r.goal_id,
        title: v.title,
        parent_id: v.parent_id,
        depth: r.depth as i32,
        effective_weight: v.effective_weight,
        weighted_gap: r.weighted_gap,
        addressed: r.addressed,
        coverage: r.coverage,
        unserved: r.unserved,
        item_count: v.item_count as i32,
        items: r
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

/// `plumbline.v1.RollupService`.
#[derive(Clone)]
pub struct RollupApi(pub Arc<Engine>);

#[tonic::async_trait]
impl pb::rollup_service_server::RollupService for RollupApi {
    async fn get_goal_rollup(
        &self,
        req: Request<pb::GetGoalRollupRequest>,
    ) -> Reply<pb::GetGoalRollupResponse> {
        let r = req.into_inner();
        let limit = page::page_size(r.item_limit, 20, 1000)
            .map_err(|_| Error::invalid("item_limit", "must not be negative"))?;
        let rollup = self.0.goal_rollup(&r.goal_id, limit)?;
        Ok(Response::new(pb::GetGoalRollupResponse {
            rollup: rollup.map(rollup_pb),
        }))
    }

    async fn get_goal_tree(
        &self,
        req: Request<pb::GetGoalTreeRequest>,
    ) -> Reply<pb::GetGoalTreeResponse> {
        let r = req.into_inner();
        let limit = page::page_size(r.items_per_goal, 5, 100)
            .map_err(|_| Error::invalid("items_per_goal", "must not be negative"))?;
        let tree = self.0.goal_tree(limit);
        Ok(Response::new(pb::GetGoalTreeResponse {
            goals: tree.goals.into_iter().map(rollup_pb).collect(),
            unserved_goal_ids: tree.unserved_goal_ids,
            unaligned_item_count: tree.unaligned_item_keys.len() as i32,
            unaligned_item_keys: tree.unaligned_item_keys.into_iter().take(1000).collect(),
        }))
    }
}
