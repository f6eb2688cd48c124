//! The engine's answers to score queries, as view types: a ranking page and
//! an item's score, each a plain value that owns its data. The API layer
//! translates these to proto; it never holds the index's read guard nor
//! builds the index's cursor types, so the index can change its internals
//! without the API following.

use std::cmp::Reverse;
use std::collections::HashMap;

use chrono::Utc;

use super::{Engine, Error, Result, missing_item};
use crate::domain::{Demand, Time};
use crate::index::{OrdF64, RankQuery, ScoreIndex};

pub use crate::index::Narrow;
use crate::score::{Score, Term};

pub use crate::index::RankOrder;

/// Where a ranking page continues: after the item with this key and
/// ranking number, which had this rank.
#[derive(Debug, Clone, PartialEq)]
pub struct RankCursor {
    /// The last returned item's value density or value (by the order).
    pub ranking_number: f64,
    pub item_key: String,
    /// The last returned item's rank, so the next page numbers on.
    pub rank: u32,
}

/// One ranking query.
#[derive(Debug, Clone)]
pub struct RankRequest {
    pub order: RankOrder,
    pub source_id: Option<String>,
    pub label: Option<String>,
    pub include_closed: bool,
    /// Continue after this position; `None` for the first page.
    pub after: Option<RankCursor>,
    pub limit: usize,
    /// Whether each score carries its terms (the full view).
    pub with_terms: bool,
    /// The web view's narrower filters (text, closed only, a goal's items).
    pub narrow: Narrow,
}

/// One page of a ranking.
#[derive(Debug, Clone)]
pub struct RankPage {
    pub items: Vec<RankedView>,
    /// Set when more items follow.
    pub next: Option<RankCursor>,
}

/// A ranked item: its rank (from 1) and its score.
#[derive(Debug, Clone)]
pub struct RankedView {
    pub rank: u32,
    pub score: ScoreView,
}

/// An item's score as served: the numbers, what the data lacks, and (when
/// asked for) the terms that explain it.
#[derive(Debug, Clone)]
pub struct ScoreView {
    pub item_key: String,
    pub title: String,
    pub value: f64,
    pub size: f64,
    pub value_density: f64,
    /// No link to any hypothesis.
    pub unaligned: bool,
    /// No estimate: the size is the default.
    pub unestimated: bool,
    /// Some term's metric has no observation within its cadence.
    pub stale_metric: bool,
    /// Empty unless terms were asked for.
    pub terms: Vec<TermView>,
    /// The customers who asked for the item: beside the score, never in it.
    pub demand: Demand,
    /// Asked for by enough distinct customers, but linked to no hypothesis.
    pub asked_for_not_aligned: bool,
}

/// One term of a score, with whether its metric is stale.
#[derive(Debug, Clone)]
pub struct TermView {
    pub term: Term,
    pub metric_stale: bool,
    /// The hypothesis has neither insights nor observations behind it.
    pub hypothesis_unsupported: bool,
}

/// The ids of the metrics that are stale as of one moment, worked out once
/// per query: every item served shares the same few metrics, and a
/// staleness check (a map lookup and date arithmetic) per term of each of
/// 50 items cost more than the rest of the conversion.
struct StaleMetrics<'a> {
    /// In id order, as the index keeps its metrics.
    ids: Vec<&'a str>,
}

impl<'a> StaleMetrics<'a> {
    fn new(ix: &'a ScoreIndex, now: Time) -> Self {
        let mut ids: Vec<&str> = ix
            .metrics()
            .filter(|m| m.stale(now))
            .map(|m| m.metric.id.as_str())
            .collect();
        // `metrics()` iterates in id order already; sorting keeps the binary
        // search right should that ever change.
        ids.sort_unstable();
        StaleMetrics { ids }
    }

    fn contains(&self, metric_id: &str) -> bool {
        !self.ids.is_empty() && self.ids.binary_search(&metric_id).is_ok()
    }
}

#[allow(
    clippy::too_many_arguments,
    reason = "one private helper of two callers"
)]
fn score_view(
    engine: &Engine,
    ix: &ScoreIndex,
    key: &str,
    title: &str,
    s: &Score,
    stale: &StaleMetrics<'_>,
    with_terms: bool,
    unsupported: &mut HashMap<String, bool>,
) -> ScoreView {
    let demand = engine.demand_of(ix, key);
    ScoreView {
        asked_for_not_aligned: engine.asked_for_not_aligned(ix, key, &demand),
        demand,
        item_key: key.to_owned(),
        title: title.to_owned(),
        value: s.value,
        size: s.size,
        value_density: s.value_density,
        unaligned: s.unaligned(),
        unestimated: !s.estimated,
        stale_metric: s.terms.iter().any(|t| stale.contains(&t.metric_id)),
        terms: if with_terms {
            s.terms
                .iter()
                .map(|t| TermView {
                    term: t.clone(),
                    metric_stale: stale.contains(&t.metric_id),
                    // Once per hypothesis a query: the check may walk
                    // every item linked to it.
                    hypothesis_unsupported: *unsupported
                        .entry(t.hypothesis_id.clone())
                        .or_insert_with(|| engine.hypothesis_unsupported(ix, &t.hypothesis_id)),
                })
                .collect()
        } else {
            Vec::new()
        },
    }
}

impl Engine {
    /// One page of the ranking `req` asks for. INVALID_ARGUMENT naming
    /// `page_token` if the cursor's rank is more than the ranking holds (a
    /// forged or corrupted token).
    pub fn rank(&self, req: &RankRequest) -> Result<RankPage> {
        let (after, rank_before) = match &req.after {
            Some(c) => (
                Some((Reverse(OrdF64(c.ranking_number)), c.item_key.clone())),
                c.rank,
            ),
            None => (None, 0),
        };
        let query = RankQuery {
            source_id: req.source_id.clone(),
            label: req.label.clone(),
            include_closed: req.include_closed,
            after,
            limit: req.limit + 1,
            narrow: req.narrow.clone(),
        };
        let ix = self.read();
        let bad_rank = || {
            Error::invalid(
                "page_token",
                "holds a rank beyond the ranking; start again without a token",
            )
        };
        if rank_before as usize > ix.item_count() {
            return Err(bad_rank());
        }
        let mut ranked = ix.rank(req.order, &query);
        let more = ranked.len() > req.limit;
        ranked.truncate(req.limit);
        let stale = StaleMetrics::new(&ix, Utc::now());
        // The rank of the n-th item of this page (from 1); checked, so that a
        // token's rank can never wrap.
        let rank_at = |n: usize| {
            u32::try_from(n)
                .ok()
                .and_then(|n| rank_before.checked_add(n))
                .ok_or_else(bad_rank)
        };
        let mut unsupported = HashMap::new();
        let items = ranked
            .iter()
            .enumerate()
            .map(|(i, ((_, key), score))| {
                let title = ix.item(key).map(|f| f.title.as_str()).unwrap_or_default();
                Ok(RankedView {
                    rank: rank_at(i + 1)?,
                    score: score_view(
                        self,
                        &ix,
                        key,
                        title,
                        score,
                        &stale,
                        req.with_terms,
                        &mut unsupported,
                    ),
                })
            })
            .collect::<Result<Vec<RankedView>>>()?;
        let next = match (more, ranked.last()) {
            (true, Some(((Reverse(OrdF64(v)), key), _))) => Some(RankCursor {
                ranking_number: *v,
                item_key: key.clone(),
                rank: rank_at(items.len())?,
            }),
            _ => None,
        };
        Ok(RankPage { items, next })
    }

    /// An item's score with its terms; NOT_FOUND for an unknown item,
    /// FAILED_PRECONDITION (saying when and why) for one removed from its
    /// tracker, which has no score.
    pub fn item_score(&self, key: &str) -> Result<ScoreView> {
        let ix = self.read();
        let (Some(facts), Some(score)) = (ix.item(key), ix.score(key)) else {
            return Err(missing_item(&ix, key));
        };
        let stale = StaleMetrics::new(&ix, Utc::now());
        Ok(score_view(
            self,
            &ix,
            key,
            &facts.title,
            score,
            &stale,
            true,
            &mut HashMap::new(),
        ))
    }
}
