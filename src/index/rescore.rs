//! Rescoring: the model parts a rescore reads, one entry's value and
//! density, and many entries' at once, looking every hypothesis up once by
//! the address of its shared id string and splitting the work over two
//! threads when it is large. The rescores of [`ScoreIndex`] are here too;
//! which items a change reaches is `reach.rs`'s job, and moving them in the
//! rankings `moves.rs`'s.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use rustc_hash::FxBuildHasher;

use super::entries::Entry;
use super::links::Linked;
use super::moves::Rankings;
use super::strings::Strings;
use super::{MetricEntry, ScoreIndex, Slot};
use crate::domain::Hypothesis;
use crate::score::{self, TermRef};

/// What one hypothesis brings to each of its terms.
#[derive(Debug, Clone, Copy)]
pub(super) struct HypothesisTerms<'a> {
    h: &'a Hypothesis,
    goal_weight: f64,
    gap: f64,
    confidence: f64,
    contribution_total: Option<f64>,
}

/// The model parts a rescore reads, borrowed apart from the entries it
/// writes.
pub(super) struct Model<'a> {
    pub(super) goal_weights: &'a HashMap<String, f64>,
    pub(super) metrics: &'a BTreeMap<String, MetricEntry>,
    pub(super) hypotheses: &'a BTreeMap<String, Hypothesis>,
    pub(super) contribution_totals: &'a HashMap<String, f64>,
}

impl<'a> Model<'a> {
    fn terms_of(&self, h: &'a Hypothesis) -> HypothesisTerms<'a> {
        HypothesisTerms {
            h,
            goal_weight: self.goal_weights.get(&h.goal_id).copied().unwrap_or(0.0),
            gap: self.metrics.get(&h.metric_id).map_or(0.0, |m| m.gap),
            confidence: score::effective_confidence(h.status, h.confidence),
            contribution_total: self.contribution_totals.get(&h.id).copied(),
        }
    }

    pub(super) fn lookup(&self, hypothesis_id: &str) -> Option<HypothesisTerms<'a>> {
        self.hypotheses.get(hypothesis_id).map(|h| self.terms_of(h))
    }

    /// Every hypothesis' terms, for rescoring many items, found by the id
    /// string the links share.
    pub(super) fn link_terms(&self, strings: &Strings) -> LinkTerms<'a> {
        LinkTerms {
            by_address: self
                .hypotheses
                .values()
                .filter_map(|h| {
                    Some((id_address(strings.shared(h.id.as_str())?), self.terms_of(h)))
                })
                .collect(),
            #[cfg(debug_assertions)]
            hypotheses: self.hypotheses,
        }
    }
}

/// Where a shared id string sits: the same for every link to one
/// hypothesis, since [`Strings`] hands out one copy of each.
fn id_address(id: &Arc<str>) -> usize {
    Arc::as_ptr(id).cast::<u8>() as usize
}

/// Every hypothesis' terms by the address of its id string as the links
/// hold it (see [`Strings`]): a rescore of many items hashes an address
/// per link instead of an id. A hypothesis no link names is left out.
pub(super) struct LinkTerms<'a> {
    by_address: HashMap<usize, HypothesisTerms<'a>, FxBuildHasher>,
    #[cfg(debug_assertions)]
    hypotheses: &'a BTreeMap<String, Hypothesis>,
}

impl<'a> LinkTerms<'a> {
    fn get(&self, l: &Linked) -> Option<HypothesisTerms<'a>> {
        let terms = self.by_address.get(&id_address(&l.hypothesis_id)).copied();
        #[cfg(debug_assertions)]
        debug_assert_eq!(
            terms.map(|t| t.h.id.as_str()),
            self.hypotheses
                .get(&*l.hypothesis_id)
                .map(|h| h.id.as_str()),
            "a link's id string is the one the strings hold"
        );
        terms
    }
}

/// What rescoring one entry did.
enum Rescored {
    /// Not an item (links only): nothing scored.
    NotItem,
    /// Scored; value and density are what they were.
    Same,
    Moved(Moved),
}

/// How a rescore changed an item's numbers.
pub(super) struct Moved {
    pub(super) slot: Slot,
    pub(super) label: u64,
    /// (value, value density) it was ranked with, if it was.
    pub(super) old: Option<(f64, f64)>,
    pub(super) value: f64,
    pub(super) density: f64,
}

/// The term inputs of `e`'s links, in hypothesis-id order (`lookup` gives
/// each hypothesis' part; links to unknown hypotheses count for nothing).
pub(super) fn term_inputs<'e, 'm: 'e>(
    e: &'e Entry,
    lookup: impl Fn(&Linked) -> Option<HypothesisTerms<'m>> + 'e,
) -> impl Iterator<Item = TermRef<'e>> {
    e.links.iter().filter_map(move |l| {
        let t = lookup(l)?;
        Some(TermRef {
            hypothesis_id: &t.h.id,
            goal_id: &t.h.goal_id,
            goal_weight: t.goal_weight,
            metric_id: &t.h.metric_id,
            gap: t.gap,
            expected_effect: t.h.expected_effect,
            confidence: t.confidence,
            contribution: l.contribution,
            contribution_total: t.contribution_total.unwrap_or(l.contribution),
        })
    })
}

/// Recomputes `e`'s value and density and forgets its explained score.
fn rescore_entry<'m>(
    slot: Slot,
    e: &mut Entry,
    lookup: impl Fn(&Linked) -> Option<HypothesisTerms<'m>>,
    default_size: f64,
) -> Rescored {
    if e.facts.is_none() {
        return Rescored::NotItem;
    }
    let (value, density) =
        score::value_and_density(e.estimate, default_size, term_inputs(e, lookup));
    e.explained.take();
    let old = e.ranked.replace((value, density));
    match old {
        Some((v, d)) if v.to_bits() == value.to_bits() && d.to_bits() == density.to_bits() => {
            Rescored::Same
        }
        _ => Rescored::Moved(Moved {
            slot,
            label: e.label,
            old,
            value,
            density,
        }),
    }
}

/// Runs `a` here and `b` on a second thread at the same time: for the few
/// changes that reach every item, on a machine with a core to spare. If no
/// thread can be had, `b` runs here after `a`.
pub(super) fn both<A, B: Send>(a: impl FnOnce() -> A, b: impl FnOnce() -> B + Send) -> (A, B) {
    let slot = parking_lot::Mutex::new(Some(b));
    let run_b = || {
        let b = slot.lock().take();
        b.map(|b| b())
    };
    std::thread::scope(|s| {
        let other = std::thread::Builder::new()
            .name("plumbline-index".into())
            .spawn_scoped(s, run_b);
        let ra = a();
        let rb = match other {
            Ok(h) => h
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Err(_) => None,
        };
        let rb = rb
            .or_else(run_b)
            .unwrap_or_else(|| unreachable!("`b` runs on the other thread or here"));
        (ra, rb)
    })
}

/// Above this many entries a rescore of all of them is split over two
/// threads. Measured at 100,000 items on two cores: a tenth of them
/// rescore faster on one thread (the second costs a thread start and
/// shares the memory bandwidth), all of them faster on two. Tests use a
/// small one, so that their products take both paths.
const PARALLEL_MIN: usize = if cfg!(test) { 4096 } else { 16_384 };

/// Entries a rescore reads ahead of scoring them.
const READ_AHEAD: usize = 64;

/// Rescores `entries`; returns how many were items and how the numbers of
/// those that moved changed.
pub(super) fn rescore_entries(
    mut entries: Vec<(Slot, &mut Entry)>,
    all: &LinkTerms<'_>,
    default_size: f64,
) -> (u64, Vec<Moved>) {
    let run = |part: &mut [(Slot, &mut Entry)], mut moved: Vec<Moved>| {
        let mut items = 0;
        for chunk in part.chunks_mut(READ_AHEAD) {
            // Entries far apart each miss the cache: read the chunk's
            // entries and links first, loads that overlap one another,
            // instead of one after the other in the loop below.
            for (_, e) in chunk.iter() {
                std::hint::black_box((e.ranked, e.links.first().map(|l| l.contribution)));
            }
            for (slot, e) in chunk {
                match rescore_entry(*slot, e, |l| all.get(l), default_size) {
                    Rescored::NotItem => {}
                    Rescored::Same => items += 1,
                    Rescored::Moved(m) => {
                        items += 1;
                        moved.push(m);
                    }
                }
            }
        }
        (items, moved)
    };
    // Room for every entry to move, so that neither vector grows (a copy
    // each time) and the halves join without one.
    let moved = Vec::with_capacity(entries.len());
    if entries.len() < PARALLEL_MIN {
        return run(&mut entries, moved);
    }
    let mid = entries.len() / 2;
    let (a, b) = entries.split_at_mut(mid);
    let rest = Vec::with_capacity(b.len());
    let ((n1, mut m1), (n2, m2)) = both(|| run(a, moved), || run(b, rest));
    m1.extend(m2);
    (n1 + n2, m1)
}

impl ScoreIndex {
    /// Rescores one item, looking its hypotheses up one by one.
    pub(super) fn rescore(&mut self, key: &str) {
        self.label_new_entries();
        let Some(slot) = self.entries.slot(key) else {
            return;
        };
        let Some(e) = self.entries.at_mut(slot) else {
            return;
        };
        let model = Model {
            goal_weights: &self.goal_weights,
            metrics: &self.metrics,
            hypotheses: &self.hypotheses,
            contribution_totals: &self.contribution_totals,
        };
        let mut rankings = Rankings {
            by_density: &mut self.by_density,
            by_value: &mut self.by_value,
        };
        match rescore_entry(
            slot,
            e,
            |l| model.lookup(&l.hypothesis_id),
            self.default_size,
        ) {
            Rescored::NotItem => {}
            Rescored::Same => self.rescored += 1,
            Rescored::Moved(m) => {
                self.rescored += 1;
                rankings.apply(vec![m]);
            }
        }
    }

    /// Rescores the entries in `slots` once each, in memory order, on two
    /// threads when they are many (slots freed since they were listed are
    /// skipped; one reused by another entry rescores that entry, which is
    /// harmless), looking every hypothesis up once for all of them.
    pub(super) fn rescore_slots(&mut self, mut slots: Vec<Slot>) {
        if slots.is_empty() {
            return;
        }
        self.label_new_entries();
        self.entries.sort_slots(&mut slots);
        let model = Model {
            goal_weights: &self.goal_weights,
            metrics: &self.metrics,
            hypotheses: &self.hypotheses,
            contribution_totals: &self.contribution_totals,
        };
        let all = model.link_terms(&self.strings);
        let mut rankings = Rankings {
            by_density: &mut self.by_density,
            by_value: &mut self.by_value,
        };
        let (items, moved) =
            rescore_entries(self.entries.select_mut(&slots), &all, self.default_size);
        self.rescored += items;
        rankings.apply(moved);
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{big_snapshot, same_scores_and_rankings};
    use super::*;
    use crate::domain::{Link, LinkOrigin, ObservationSummary};
    use chrono::Utc;

    #[test]
    fn a_change_reaching_many_items_ranks_like_a_rebuild() {
        // 15,000 items: an observation of "m" reaches enough of them to be
        // rescored on two threads and to fold the rankings; a goal weight
        // change reaches every item.
        let mut ix = ScoreIndex::from_snapshot(3.0, big_snapshot(15_000, 7));
        let summary = |v: f64| ObservationSummary {
            latest: Some((Utc::now(), v)),
            count: 1,
        };
        let before = ix.rescored_count();
        ix.set_observations("m", summary(0.4));
        assert!(ix.rescored_count() - before >= PARALLEL_MIN as u64);
        let mut fresh = big_snapshot(15_000, 7);
        fresh.metrics[0].1 = summary(0.4);
        same_scores_and_rankings(&ix, &ScoreIndex::from_snapshot(3.0, fresh));

        // A few items only: item by item.
        let before = ix.rescored_count();
        ix.put_link(Link {
            item_key: "s/00001".into(),
            hypothesis_id: "H-5".into(),
            contribution: 0.3,
            origin: LinkOrigin::Api,
            rationale: String::new(),
            create_time: Utc::now(),
            update_time: Utc::now(),
        });
        assert!(ix.rescored_count() > before);
        let mut fresh = big_snapshot(15_000, 7);
        fresh.metrics[0].1 = summary(0.4);
        fresh
            .links
            .push(ix.link("s/00001", "H-5").unwrap().to_link());
        same_scores_and_rankings(&ix, &ScoreIndex::from_snapshot(3.0, fresh));
    }

    #[test]
    fn rescoring_everything_changes_nothing() {
        let mut ix = ScoreIndex::from_snapshot(3.0, big_snapshot(2000, 3));
        let before = ix.rescored_count();
        ix.rescore_all();
        assert_eq!(ix.rescored_count() - before, 2000);
        same_scores_and_rankings(&ix, &ScoreIndex::from_snapshot(3.0, big_snapshot(2000, 3)));
    }
}
