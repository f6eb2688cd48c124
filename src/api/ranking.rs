//! What `RankItems` and `WatchRanking` share: reading a ranking order from a
//! request and turning the engine's ranked views into served items. Both
//! services import this module; neither imports the other.

use super::convert;
use crate::engine::{Error, RankOrder, RankedView, Result};
use crate::proto as pb;

/// The ranking order a request names.
pub(super) fn rank_order(order: i32) -> Result<RankOrder> {
    match pb::RankOrder::try_from(order) {
        Ok(pb::RankOrder::Unspecified | pb::RankOrder::ValueDensity) => Ok(RankOrder::ValueDensity),
        Ok(pb::RankOrder::Value) => Ok(RankOrder::Value),
        Err(_) => Err(Error::invalid("order", "is not a known order")),
    }
}

/// Ranked views as served items.
pub(super) fn ranked_items(items: Vec<RankedView>) -> Vec<pb::RankedItem> {
    items
        .into_iter()
        .map(|r| pb::RankedItem {
            rank: r.rank as i32,
            score: Some(convert::score_to_pb(r.score)),
        })
        .collect()
}
