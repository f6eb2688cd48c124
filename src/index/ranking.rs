//! One ranking of the index: every scored item at its place, highest number
//! first, ties broken by key.
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
//! rebuilds `base` in one merge that copies the runs between changes
//! wholesale, about a millisecond at 100,000 items, where thousands of
//! removals and insertions in a tree of 100,000 cost a cache miss each.
//! `base` is also rebuilt once the changes kept aside grow past a small
//! fraction of it, so reads never wade through many of them.

use std::borrow::Borrow;
use std::cmp::{Ordering, Reverse};
use std::collections::BTreeSet;
use std::iter::Peekable;
use std::ops::Bound;
use std::sync::Arc;

use super::{Key, OrdF64};

/// A place in a ranking: the number, highest first, then the key. The
/// key's first eight bytes, big-endian, come in between: they order the
/// same way as the key and settle most ties (many items share a score)
/// without a string comparison.
pub(super) type Ranked = (Reverse<OrdF64>, u64, Key);

fn key_prefix(key: &str) -> u64 {
    let mut b = [0u8; 8];
    let n = key.len().min(8);
    b[..n].copy_from_slice(&key.as_bytes()[..n]);
    u64::from_be_bytes(b)
}

/// A place borrowing its key, to look for in a ranking.
type Place<'k> = (Reverse<OrdF64>, u64, &'k Key);

fn place(number: f64, key: &Key) -> Place<'_> {
    (Reverse(OrdF64(number)), key_prefix(key), key)
}

/// The place of `key` at `number`.
pub(super) fn ranked(number: f64, key: &Key) -> Ranked {
    (Reverse(OrdF64(number)), key_prefix(key), key.clone())
}

/// The place a page of a ranking continues after, from its number and key.
pub(super) fn position(number: Reverse<OrdF64>, key: &str) -> Ranked {
    (number, key_prefix(key), Arc::from(key))
}

/// One item's move in a ranking: from its old place (if it had one) to
/// its new one (if it keeps one).
pub(super) struct Move<'a> {
    pub old: Option<f64>,
    pub new: Option<f64>,
    pub key: &'a Key,
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
        sort(&mut places);
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
    pub fn apply<'a>(&mut self, moves: impl IntoIterator<Item = Move<'a>>) {
        let moves = moves.into_iter();
        let mut added = Vec::with_capacity(moves.size_hint().0);
        let mut removed = Vec::new();
        for m in moves {
            if m.old.map(f64::to_bits) == m.new.map(f64::to_bits) {
                continue;
            }
            // (The emptiness checks spare a key's reference count, on a
            // cache line of its own, in the common bulk case.)
            if let Some(old) = m.old {
                let was_fresh = !self.fresh.is_empty() && self.fresh.remove(&ranked(old, m.key));
                if !was_fresh {
                    debug_assert!(self.base.binary_search(&ranked(old, m.key)).is_ok());
                    removed.push(place(old, m.key));
                }
            }
            if let Some(new) = m.new {
                // Back at its place in `base`: that place is the item's again.
                let revived = !self.gone.is_empty() && self.gone.remove(&ranked(new, m.key));
                if !revived {
                    added.push(ranked(new, m.key));
                }
            }
        }
        let aside = self.fresh.len() + self.gone.len() + added.len() + removed.len();
        if aside > REBUILD_MIN.max(self.base.len() / 32) {
            self.rebuild(added, removed);
        } else {
            self.fresh.extend(added);
            self.gone
                .extend(removed.into_iter().map(|(n, p, k)| (n, p, k.clone())));
        }
    }

    /// Makes `base` the current places: drops the gone ones and merges the
    /// fresh and `added` ones in, copying the runs between them wholesale.
    fn rebuild(&mut self, mut added: Vec<Ranked>, removed: Vec<Place<'_>>) {
        added.extend(std::mem::take(&mut self.fresh));
        sort(&mut added);
        let gone = std::mem::take(&mut self.gone);
        let mut removed: Vec<Place<'_>> = removed;
        removed.extend(gone.iter().map(|(n, p, k)| (*n, *p, k)));
        sort(&mut removed);
        let old = std::mem::take(&mut self.base);
        let mut base = Vec::with_capacity(old.len() - removed.len() + added.len());
        let mut old = old.into_iter();
        let mut removed = removed.into_iter().peekable();
        let mut added = added.into_iter().peekable();
        loop {
            let rest = old.as_slice();
            let front = rest.first();
            if let (Some(r), Some(f)) = (removed.peek(), front)
                && is_at(r, f)
            {
                old.next();
                removed.next();
                continue;
            }
            if let Some(a) = added.next_if(|a| front.is_none_or(|f| a < f)) {
                base.push(a);
                continue;
            }
            if front.is_none() {
                break;
            }
            // Up to the next place that goes or comes, `base` stays.
            let run = removed
                .peek()
                .map_or(rest.len(), |r| gallop(rest, |x| (x.0, x.1, &x.2) < *r))
                .min(added.peek().map_or(rest.len(), |a| gallop(rest, |x| x < a)));
            debug_assert!(run > 0, "a gone place is not in base");
            base.extend(old.by_ref().take(run.max(1)));
        }
        debug_assert!(removed.next().is_none() && added.next().is_none());
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

/// Sorts places: by number and key prefix as plain integers first, then
/// each run that ties on both by the whole key. The same order as sorting
/// the tuples, for a fraction of the comparisons' cost.
fn sort<K: Borrow<Key>>(places: &mut [(Reverse<OrdF64>, u64, K)]) {
    fn bits<K>(r: &(Reverse<OrdF64>, u64, K)) -> (u64, u64) {
        // `total_cmp`'s order as an unsigned integer, reversed.
        let b = r.0.0.0.to_bits() as i64;
        let ordered = (b ^ ((((b >> 63) as u64) >> 1) as i64)) as u64 ^ (1 << 63);
        (!ordered, r.1)
    }
    places.sort_unstable_by_key(bits);
    for run in places.chunk_by_mut(|a, b| bits(a) == bits(b)) {
        if run.len() > 1 {
            run.sort_unstable_by(|a, b| a.2.borrow().cmp(b.2.borrow()));
        }
    }
}

/// How many of `sorted`'s first places come before `bound`, looked for
/// from the front: changes are usually close together.
fn gallop(sorted: &[Ranked], before: impl Fn(&Ranked) -> bool) -> usize {
    let mut hi = 1;
    while hi < sorted.len() && before(&sorted[hi]) {
        hi *= 2;
    }
    let lo = hi / 2;
    let hi = hi.min(sorted.len());
    lo + sorted[lo..hi].partition_point(before)
}

/// Whether `place` is `r`.
fn is_at(place: &Place<'_>, r: &Ranked) -> bool {
    place.0 == r.0 && place.1 == r.1 && (Arc::ptr_eq(place.2, &r.2) || **place.2 == *r.2)
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
    }

    fn op() -> impl Strategy<Value = Op> {
        let set = (0..3000usize, prop::option::weighted(0.9, 0..40u8));
        prop_oneof![
            4 => set.clone().prop_map(|(i, n)| Op::Set(i, n)),
            1 => prop::collection::vec(set, 0..2500).prop_map(Op::Bulk),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// The integer sort orders exactly as the tuples do, negative
        /// numbers, zeros and ties included.
        #[test]
        fn sorting_orders_as_the_tuples_do(
            places in prop::collection::vec(
                (prop_oneof![any::<f64>().prop_filter("not NaN", |f| !f.is_nan()), Just(0.0), Just(-0.0), 0.0..2.0f64],
                 prop::sample::select(vec!["s/1", "s/10", "s/100", "s/1000000", "s/10000000", "s/10000001", "t"])),
                0..300,
            ),
        ) {
            let mut got: Vec<Ranked> = places
                .iter()
                .map(|(n, k)| ranked(*n, &Arc::from(*k)))
                .collect();
            let mut want = got.clone();
            want.sort_unstable();
            sort(&mut got);
            prop_assert_eq!(got, want);
        }

        /// Whatever the writes, the ranking reads as the sorted set of the
        /// current places, from the start and after any place.
        #[test]
        fn reads_as_the_sorted_current_places(
            initial in prop::collection::vec(prop::option::of(0..40u8), 3000),
            ops in prop::collection::vec(op(), 1..12),
            probes in prop::collection::vec((0..40u8, 0..3000usize), 4),
        ) {
            let keys: Vec<Key> = (0..3000).map(|i| Arc::from(format!("s/{i:05}"))).collect();
            let number = |n: u8| f64::from(n) / 8.0;
            let mut current: BTreeMap<usize, u8> = initial
                .iter()
                .enumerate()
                .filter_map(|(i, n)| Some((i, (*n)?)))
                .collect();
            let mut ranking =
                Ranking::build(current.iter().map(|(i, n)| ranked(number(*n), &keys[*i])).collect());
            for op in ops {
                let changes = match op {
                    Op::Set(i, n) => vec![(i, n)],
                    Op::Bulk(v) => {
                        // One move per item in a batch, as the index makes.
                        let mut seen = std::collections::HashSet::new();
                        v.into_iter().filter(|(i, _)| seen.insert(*i)).collect()
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
                    key: &keys[*i],
                }));
                let want: BTreeSet<Ranked> =
                    current.iter().map(|(i, n)| ranked(number(*n), &keys[*i])).collect();
                prop_assert_eq!(ranking.len(), want.len());
                let got: Vec<&Ranked> = ranking.after(None).collect();
                prop_assert_eq!(got, want.iter().collect::<Vec<_>>());
                for (n, i) in &probes {
                    let from = position(Reverse(OrdF64(number(*n))), &keys[*i]);
                    let got: Vec<&Ranked> = ranking.after(Some(&from)).collect();
                    let want: Vec<&Ranked> =
                        want.range((Bound::Excluded(&from), Bound::Unbounded)).collect();
                    prop_assert_eq!(got, want);
                }
            }
        }
    }
}
