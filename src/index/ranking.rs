//! One ranking of the index: every scored item at its place, highest number
//! first, ties broken by key. A place holds the item's key label (an
//! integer the index keeps in key order) and slot rather than its key, so
//! that places are small and compared without reading any key.
//!
//! A ranking is a sorted vector (`base`) plus the changes made since it was
//! last folded into it: `fresh`, the current places not in `base`, also
//! sorted; and `moved`, the slots whose place in `base` (if they have one)
//! is no longer current. Reads merge the two vectors, skipping the moved
//! slots' places in `base`; nothing is hashed.
//!
//! A write that moves k items sorts their k new places and merges them
//! with `fresh` (dropping their old places there): O(k log k + |fresh|),
//! however long the ranking. `base` is rebuilt, in one pass, only once the
//! changes kept aside reach a quarter of it. So an observation that moves
//! a tenth of 100,000 items costs a sort of 10,000 places and a merge of
//! fresh, under a millisecond; and repeated observations of one metric,
//! which move the same items each time, keep `fresh` at that tenth and
//! never pay for the whole.

use std::cmp::Ordering;
use std::iter::Peekable;

use super::Slot;
use super::entries::SlotSet;

/// A place in a ranking: the number, as an integer that orders highest
/// first; the item's key label, an integer that orders as the keys do;
/// and the item's slot in the index. Places compare as plain integers:
/// no key is read, and no reference count touched, to sort or merge them.
pub(super) type Ranked = (u64, u64, Slot);

/// `number` as an integer in ranking order: highest first, in
/// [`f64::total_cmp`]'s order.
fn number_order(number: f64) -> u64 {
    let b = number.to_bits() as i64;
    let ordered = (b ^ ((((b >> 63) as u64) >> 1) as i64)) as u64 ^ (1 << 63);
    !ordered
}

/// The place of the item in `slot`, labelled `label`, at `number`.
pub(super) fn ranked(number: f64, label: u64, slot: Slot) -> Ranked {
    (number_order(number), label, slot)
}

/// The place a page continues after: past every place at `number` whose
/// key label is `label` or lower.
pub(super) fn after_label(number: f64, label: u64) -> Ranked {
    (number_order(number), label, Slot::MAX)
}

/// One item's move in a ranking: from its old place (if it had one) to
/// its new one (if it keeps one).
pub(super) struct Move {
    pub old: Option<f64>,
    pub new: Option<f64>,
    pub label: u64,
    pub slot: Slot,
}

/// Changes kept aside beyond which `base` is rebuilt: a quarter of it, and
/// never fewer than this many.
const FOLD_MIN: usize = 1024;

/// Up to this many new places are inserted into `fresh` one by one;
/// more are merged with it into a new vector.
const INSERT_MAX: usize = 8;

#[derive(Debug, Default)]
pub(super) struct Ranking {
    /// Sorted places; those of the slots in `moved` are not current.
    base: Vec<Ranked>,
    /// Slots whose current place, if they have one, is in `fresh`, and
    /// whose place in `base`, if they have one, is not current.
    moved: SlotSet,
    /// How many slots `moved` holds.
    moved_count: usize,
    /// Sorted current places of the slots in `moved`.
    fresh: Vec<Ranked>,
}

impl Ranking {
    /// A ranking of `places`, in any order, one per item.
    #[cfg(test)]
    pub fn build(mut places: Vec<Ranked>) -> Self {
        places.sort_unstable();
        Ranking {
            base: places,
            ..Ranking::default()
        }
    }

    /// Items ranked.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.after(None).count()
    }

    /// Applies `moves`, at most one per item, each item's `old` being its
    /// current place here.
    pub fn apply(&mut self, moves: impl IntoIterator<Item = Move>) {
        let moves = moves.into_iter();
        let mut added = Vec::with_capacity(moves.size_hint().0);
        // Slots whose place in `fresh` is no longer current.
        let mut leaving: Option<SlotSet> = None;
        for m in moves {
            if m.old.map(f64::to_bits) == m.new.map(f64::to_bits) {
                continue;
            }
            if let Some(old) = m.old {
                if self.moved.contains(m.slot) {
                    debug_assert!(
                        self.fresh
                            .binary_search(&ranked(old, m.label, m.slot))
                            .is_ok()
                    );
                    leaving.get_or_insert_default().insert(m.slot);
                } else {
                    debug_assert!(
                        self.base
                            .binary_search(&ranked(old, m.label, m.slot))
                            .is_ok()
                    );
                }
            }
            if self.moved.insert(m.slot) {
                self.moved_count += 1;
            }
            if let Some(new) = m.new {
                added.push(ranked(new, m.label, m.slot));
            }
        }
        if let Some(leaving) = leaving {
            self.fresh.retain(|r| !leaving.contains(r.2));
        }
        // A place's number and label settle its order (one place per key):
        // compared as one integer, a sort takes a fraction of the time.
        added.sort_unstable_by_key(|r| (u128::from(r.0) << 64) | u128::from(r.1));
        if added.len() <= INSERT_MAX {
            // A write or two: in place, without a new vector.
            for r in added {
                let at = self.fresh.partition_point(|x| *x < r);
                self.fresh.insert(at, r);
            }
        } else {
            self.fresh = merge(std::mem::take(&mut self.fresh), added);
        }
        if self.fresh.len() + self.moved_count > FOLD_MIN.max(self.base.len() / 4) {
            self.fold();
        }
    }

    /// Gives every place the label `label_of` its slot now has. The labels
    /// must order as the old ones did (they are respaced, not reordered).
    pub fn relabel(&mut self, label_of: impl Fn(Slot) -> u64) {
        self.fold();
        for r in &mut self.base {
            r.1 = label_of(r.2);
        }
        debug_assert!(self.base.is_sorted());
    }

    /// Makes `base` the current places, in one pass over it.
    fn fold(&mut self) {
        if self.moved_count == 0 {
            return;
        }
        let moved = std::mem::take(&mut self.moved);
        self.moved_count = 0;
        let base = std::mem::take(&mut self.base)
            .into_iter()
            .filter(|r| !moved.contains(r.2));
        let fresh = std::mem::take(&mut self.fresh);
        self.base = merge(base, fresh);
    }

    /// The places after `after` (all of them without it), in order.
    pub fn after<'s>(&'s self, after: Option<&Ranked>) -> impl Iterator<Item = &'s Ranked> + 's {
        let (b, f) = match after {
            Some(a) => (
                self.base.partition_point(|r| r <= a),
                self.fresh.partition_point(|r| r <= a),
            ),
            None => (0, 0),
        };
        let base = self.base[b..].iter().filter(|r| !self.moved.contains(r.2));
        Merge {
            a: base.peekable(),
            b: self.fresh[f..].iter().peekable(),
        }
    }
}

/// Two sorted runs of places as one sorted vector.
fn merge(a: impl IntoIterator<Item = Ranked>, b: Vec<Ranked>) -> Vec<Ranked> {
    let merged = Merge {
        a: a.into_iter().peekable(),
        b: b.into_iter().peekable(),
    };
    let (low, high) = merged.size_hint();
    let mut out = Vec::with_capacity(high.unwrap_or(low));
    out.extend(merged);
    out
}

/// Two sorted iterators as one; of two equal items, `a`'s comes first.
struct Merge<A: Iterator, B: Iterator> {
    a: Peekable<A>,
    b: Peekable<B>,
}

impl<T: Ord, A, B> Iterator for Merge<A, B>
where
    A: Iterator<Item = T>,
    B: Iterator<Item = T>,
{
    type Item = T;

    fn next(&mut self) -> Option<T> {
        match (self.a.peek(), self.b.peek()) {
            (Some(a), Some(b)) => match a.cmp(b) {
                Ordering::Greater => self.b.next(),
                _ => self.a.next(),
            },
            (Some(_), None) => self.a.next(),
            (None, _) => self.b.next(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let (a_low, a_high) = self.a.size_hint();
        let (b_low, b_high) = self.b.size_hint();
        (
            a_low.saturating_add(b_low),
            a_high.zip(b_high).and_then(|(a, b)| a.checked_add(b)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};
    use std::ops::Bound;

    #[derive(Debug, Clone)]
    enum Op {
        /// Item `i` to number `n` (`None`: out of the ranking).
        Set(usize, Option<u8>),
        /// Many items at once, so that `base` is rebuilt.
        Bulk(Vec<(usize, Option<u8>)>),
        /// Every key label respaced (multiplied by this).
        Relabel(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        let set = (0..3000usize, prop::option::weighted(0.9, 0..40u8));
        prop_oneof![
            4 => set.clone().prop_map(|(i, n)| Op::Set(i, n)),
            1 => prop::collection::vec(set, 0..2500).prop_map(Op::Bulk),
            1 => (2..5u64).prop_map(Op::Relabel),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// The number's integer orders as `total_cmp` does, reversed:
        /// negative numbers, zeros and ties included.
        #[test]
        fn number_order_is_total_cmp_reversed(
            a in prop_oneof![any::<f64>().prop_filter("not NaN", |f| !f.is_nan()), Just(0.0), Just(-0.0), 0.0..2.0f64],
            b in prop_oneof![any::<f64>().prop_filter("not NaN", |f| !f.is_nan()), Just(0.0), Just(-0.0), 0.0..2.0f64],
        ) {
            prop_assert_eq!(number_order(a).cmp(&number_order(b)), b.total_cmp(&a));
        }

        /// Whatever the writes, the ranking reads as the sorted set of the
        /// current places, from the start and after any place.
        #[test]
        fn reads_as_the_sorted_current_places(
            initial in prop::collection::vec(prop::option::of(0..40u8), 3000),
            ops in prop::collection::vec(op(), 1..12),
            probes in prop::collection::vec((0..40u8, 0..3000usize), 4),
        ) {
            // Item i sits in slot i with key label (i + 1) x scale.
            let mut scale = 1u64;
            let label = |i: usize, scale: u64| (i as u64 + 1) * scale;
            let number = |n: u8| f64::from(n) / 8.0;
            let mut current: BTreeMap<usize, u8> = initial
                .iter()
                .enumerate()
                .filter_map(|(i, n)| Some((i, (*n)?)))
                .collect();
            let mut ranking =
                Ranking::build(current.iter().map(|(i, n)| ranked(number(*n), label(*i, scale), *i as Slot)).collect());
            for op in ops {
                let changes = match op {
                    Op::Set(i, n) => vec![(i, n)],
                    Op::Bulk(v) => {
                        // One move per item in a batch, as the index makes.
                        let mut seen = std::collections::HashSet::new();
                        v.into_iter().filter(|(i, _)| seen.insert(*i)).collect()
                    }
                    Op::Relabel(by) => {
                        scale *= by;
                        ranking.relabel(|slot| label(slot as usize, scale));
                        Vec::new()
                    }
                };
                let moves: Vec<(Option<u8>, Option<u8>, usize)> = changes
                    .into_iter()
                    .map(|(i, n)| {
                        let old = match n {
                            Some(n) => current.insert(i, n),
                            None => current.remove(&i),
                        };
                        (old, n, i)
                    })
                    .collect();
                ranking.apply(moves.iter().map(|(o, n, i)| Move {
                    old: o.map(number),
                    new: n.map(number),
                    label: label(*i, scale),
                    slot: *i as Slot,
                }));
                let want: BTreeSet<Ranked> =
                    current.iter().map(|(i, n)| ranked(number(*n), label(*i, scale), *i as Slot)).collect();
                prop_assert_eq!(ranking.len(), want.len());
                let got: Vec<&Ranked> = ranking.after(None).collect();
                prop_assert_eq!(got, want.iter().collect::<Vec<_>>());
                for (n, i) in &probes {
                    // After an item's key, or after a label between two
                    // items' (a key no item has).
                    let from = after_label(number(*n), label(*i, scale) - (*i as u64 % 2));
                    let got: Vec<&Ranked> = ranking.after(Some(&from)).collect();
                    let want: Vec<&Ranked> =
                        want.range((Bound::Excluded(&from), Bound::Unbounded)).collect();
                    prop_assert_eq!(got, want);
                }
            }
        }
    }
}
