//! One ranking of the index: every scored item at its place, highest number
//! first, ties broken by key. A place holds the item's key label (an
//! integer the index keeps in key order) and slot rather than its key, so
//! that places are small and compared without reading any key.
//!
//! A ranking is a sorted vector (`base`) plus the changes made since it was
//! last rebuilt: `gone` holds the places in `base` that are no longer any
//! item's, and `fresh` the current places that are not in `base`. All three
//! are sorted the same way, so reads and rebuilds merge them in one pass,
//! and nothing is hashed.
//!
//! This shape is for the two kinds of writes the index sees. A change that
//! reaches a few items costs a few operations on the small `gone` and
//! `fresh` trees, however long the ranking. A change that reaches thousands
//! of items (an observation of a metric a tenth of the backlog depends on)
//! rebuilds `base` in one merge, under a millisecond at 100,000 items,
//! where thousands of removals and insertions in a tree of 100,000 cost a
//! cache miss each.
//! `base` is also rebuilt once the changes kept aside grow past a small
//! fraction of it, so reads never wade through many of them.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::iter::Peekable;
use std::ops::Bound;

use super::Slot;

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

/// Changes kept aside beyond which `base` is rebuilt: a 32nd of it, and
/// never fewer than this many.
const REBUILD_MIN: usize = 1024;

#[derive(Debug, Default)]
pub(super) struct Ranking {
    /// Sorted places, some of them gone.
    base: Vec<Ranked>,
    /// Places in `base` that are no longer an item's.
    gone: BTreeSet<Ranked>,
    /// Current places that are not in `base`.
    fresh: BTreeSet<Ranked>,
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
        self.base.len() - self.gone.len() + self.fresh.len()
    }

    /// Applies `moves`, at most one per item, each item's `old` being its
    /// current place here.
    pub fn apply(&mut self, moves: impl IntoIterator<Item = Move>) {
        let moves = moves.into_iter();
        let mut added = Vec::with_capacity(moves.size_hint().0);
        let mut removed = Vec::with_capacity(moves.size_hint().0);
        for m in moves {
            if m.old.map(f64::to_bits) == m.new.map(f64::to_bits) {
                continue;
            }
            if let Some(old) = m.old {
                let old = ranked(old, m.label, m.slot);
                let was_fresh = !self.fresh.is_empty() && self.fresh.remove(&old);
                if !was_fresh {
                    debug_assert!(self.base.binary_search(&old).is_ok());
                    removed.push(old);
                }
            }
            if let Some(new) = m.new {
                let new = ranked(new, m.label, m.slot);
                // Back at its place in `base`: that place is the item's again.
                let revived = !self.gone.is_empty() && self.gone.remove(&new);
                if !revived {
                    added.push(new);
                }
            }
        }
        let aside = self.fresh.len() + self.gone.len() + added.len() + removed.len();
        if aside > REBUILD_MIN.max(self.base.len() / 32) {
            self.rebuild(added, removed);
        } else {
            self.fresh.extend(added);
            self.gone.extend(removed);
        }
    }

    /// Gives every place the label `label_of` its slot now has. The labels
    /// must order as the old ones did (they are respaced, not reordered).
    pub fn relabel(&mut self, label_of: impl Fn(Slot) -> u64) {
        if !self.gone.is_empty() || !self.fresh.is_empty() {
            self.rebuild(Vec::new(), Vec::new());
        }
        for r in &mut self.base {
            r.1 = label_of(r.2);
        }
        debug_assert!(self.base.is_sorted());
    }

    /// Makes `base` the current places: drops the gone ones and merges the
    /// fresh and `added` ones in, in one pass over `base`. The places that
    /// go are known by their slot (`base` holds at most one place per
    /// slot: an item's place there either is its current one or is gone),
    /// so only the places that come need sorting.
    fn rebuild(&mut self, mut added: Vec<Ranked>, removed: Vec<Ranked>) {
        added.extend(std::mem::take(&mut self.fresh));
        added.sort_unstable();
        let gone = std::mem::take(&mut self.gone);
        let going = || removed.iter().chain(&gone).map(|r| r.2 as usize);
        let mut bits = vec![0u64; going().max().map_or(0, |s| s / 64 + 1)];
        for s in going() {
            bits[s / 64] |= 1 << (s % 64);
        }
        let goes = |s: usize| bits.get(s / 64).is_some_and(|w| w & (1 << (s % 64)) != 0);
        let old = std::mem::take(&mut self.base);
        let left = old.len() - removed.len() - gone.len() + added.len();
        let mut base = Vec::with_capacity(left);
        let mut added = added.into_iter().peekable();
        for r in &old {
            if goes(r.2 as usize) {
                continue;
            }
            while let Some(a) = added.next_if(|a| a < r) {
                base.push(a);
            }
            base.push(*r);
        }
        base.extend(added);
        debug_assert_eq!(base.len(), left, "each going place was in base once");
        self.base = base;
    }

    /// The places after `after` (all of them without it), in order.
    pub fn after<'s>(&'s self, after: Option<&Ranked>) -> impl Iterator<Item = &'s Ranked> + 's {
        let (from, gone, fresh) = match after {
            Some(a) => {
                let range = (Bound::Excluded(a), Bound::Unbounded);
                (
                    self.base.partition_point(|r| r <= a),
                    self.gone.range(range),
                    self.fresh.range(range),
                )
            }
            None => (0, self.gone.range::<Ranked, _>(..), self.fresh.range(..)),
        };
        let base = Without {
            all: self.base[from..].iter(),
            gone: gone.peekable(),
        };
        Merge {
            a: base.peekable(),
            b: fresh.peekable(),
        }
    }
}

/// The places of `all` that are not in `gone` (a sorted subset of it).
struct Without<A, G: Iterator> {
    all: A,
    gone: Peekable<G>,
}

impl<'r, A, G> Iterator for Without<A, G>
where
    A: Iterator<Item = &'r Ranked>,
    G: Iterator<Item = &'r Ranked>,
{
    type Item = &'r Ranked;

    fn next(&mut self) -> Option<&'r Ranked> {
        loop {
            let r = self.all.next()?;
            if self.gone.next_if(|g| *g == r).is_none() {
                return Some(r);
            }
        }
    }
}

/// Two sorted iterators as one.
struct Merge<A: Iterator, B: Iterator> {
    a: Peekable<A>,
    b: Peekable<B>,
}

impl<'r, A, B> Iterator for Merge<A, B>
where
    A: Iterator<Item = &'r Ranked>,
    B: Iterator<Item = &'r Ranked>,
{
    type Item = &'r Ranked;

    fn next(&mut self) -> Option<&'r Ranked> {
        match (self.a.peek(), self.b.peek()) {
            (Some(a), Some(b)) => match a.cmp(b) {
                Ordering::Greater => self.b.next(),
                _ => self.a.next(),
            },
            (Some(_), None) => self.a.next(),
            (None, _) => self.b.next(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

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
