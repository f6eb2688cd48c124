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
            // Ranks are at most the number of items (checked on every
            // token), far below i32::MAX.
            rank: i32::try_from(r.rank).unwrap_or(i32::MAX),
            score: Some(convert::score_to_pb(r.score)),
        })
        .collect()
}
