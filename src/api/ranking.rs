//! What `RankItems` and `WatchRanking` share: reading a ranking order from a
//! request and turning ranked entries into served items. Both services
//! import this module; neither imports the other.

use crate::engine::{Error, Result};
use crate::index::RankOrder;
use crate::proto as pb;

use super::convert;

/// The ranking order a request names.
pub(super) fn rank_order(order: i32) -> Result<RankOrder> {
    match pb::RankOrder::try_from(order) {
        Ok(pb::RankOrder::Unspecified | pb::RankOrder::ValueDensity) => Ok(RankOrder::ValueDensity),
        Ok(pb::RankOrder::Value) => Ok(RankOrder::Value),
        Err(_) => Err(Error::invalid("order", "is not a known order")),
    }
}

/// Each ranked entry's rank (numbered from `rank_before + 1`), key, title
/// and score: what both views of a page are made of.
fn page_entries<'a>(
    ix: &'a crate::index::ScoreIndex,
    ranked: &'a [(crate::index::RankKey, &'a crate::score::Score)],
    rank_before: usize,
) -> impl Iterator<Item = (i32, &'a str, &'a str, &'a crate::score::Score)> {
    ranked
        .iter()
        .enumerate()
        .map(move |(i, ((_, key), score))| {
            let title = ix.item(key).map(|f| f.title.as_str()).unwrap_or_default();
            ((rank_before + i + 1) as i32, key.as_str(), title, *score)
        })
}

/// Ranked entries as served, numbered from `rank_before + 1`.
pub(super) fn ranked_items(
    ix: &crate::index::ScoreIndex,
    ranked: &[(crate::index::RankKey, &crate::score::Score)],
    rank_before: usize,
    full: bool,
    now: crate::domain::Time,
) -> Vec<pb::RankedItem> {
    let stale = convert::StaleMetrics::new(ix, now);
    page_entries(ix, ranked, rank_before)
        .map(|(rank, key, title, score)| pb::RankedItem {
            rank,
            score: Some(convert::score_to_pb(key, title, score, &stale, full)),
        })
        .collect()
}
