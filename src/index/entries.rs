//! The index's entries: one per item key, kept in a slab so that the
//! rankings and the contribution maps name an entry by its slot (four
//! bytes, no reference count), and a rescore of many items reads them in
//! memory order instead of hashing each key.
//!
//! Each key also has a label: an integer that orders as the keys do, which
//! the rankings break ties with instead of comparing keys. A new key takes
//! the label halfway between its neighbours'; when there is no room left
//! between them, every label is respaced (linear, and rare: labels start
//! 2^32 apart). Keys added in bulk (a sync's new items) wait unlabelled
//! until the next rescore, which labels them all in one sorted merge.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use std::sync::OnceLock;

use super::links::Linked;
use super::{ItemFacts, Key, Slot};
use crate::score::Score;

/// The gap between neighbouring labels after a respacing, at most. Tests
/// use a small one, so that respacing happens in them all the time.
const LABEL_SPACING: u64 = if cfg!(test) { 4 } else { 1 << 32 };

/// A set of slots, as bits.
#[derive(Debug, Default)]
pub(super) struct SlotSet(Vec<u64>);

impl SlotSet {
    /// An empty set with room for the slots below `n`.
    pub fn with_room(n: usize) -> Self {
        SlotSet(vec![0; n.div_ceil(64)])
    }

    pub fn contains(&self, s: Slot) -> bool {
        self.0
            .get(s as usize / 64)
            .is_some_and(|w| w & (1 << (s % 64)) != 0)
    }

    /// Adds `s`; true when it was not in the set.
    pub fn insert(&mut self, s: Slot) -> bool {
        let i = s as usize / 64;
        if i >= self.0.len() {
            self.0.resize(i + 1, 0);
        }
        let bit = 1u64 << (s % 64);
        let new = self.0[i] & bit == 0;
        self.0[i] |= bit;
        new
    }

    /// The slots in the set, in order.
    pub fn iter(&self) -> impl Iterator<Item = Slot> + '_ {
        self.0.iter().enumerate().flat_map(|(i, &w)| {
            let mut w = w;
            std::iter::from_fn(move || {
                let bit = w.trailing_zeros();
                (w != 0).then(|| {
                    w &= w - 1;
                    (i * 64) as Slot + bit
                })
            })
        })
    }
}

/// Everything the index holds about one item key. The fields a rescore
/// reads come first, so that they share the entry's first cache lines; the
/// facts it does not read (title, labels, ...) are boxed apart, which keeps
/// a rescore of many entries from streaming them through the cache.
#[derive(Debug)]
#[repr(C)]
pub(super) struct Entry {
    /// The item's estimate, a copy of its facts' (see [`Entry::set_facts`]).
    pub(super) estimate: Option<f64>,
    /// (value, value density) the item is ranked with; present once scored
    /// (exactly when `facts` is, outside a deferred upsert).
    pub(super) ranked: Option<(f64, f64)>,
    /// Ordered by hypothesis id, as the score's terms are.
    pub(super) links: Vec<Linked>,
    /// Orders as the key does among the entries' (see [`Entries`]); 0
    /// until labelled.
    pub(super) label: u64,
    /// `None` for links whose item is not (or no longer) known.
    pub(super) facts: Option<Box<ItemFacts>>,
    /// The explained score, built on first read after each rescore.
    pub(super) explained: OnceLock<Box<Score>>,
    pub(super) key: Key,
}

impl Entry {
    pub(super) fn new(key: Key) -> Self {
        Entry {
            estimate: None,
            ranked: None,
            links: Vec::new(),
            label: 0,
            facts: None,
            explained: OnceLock::new(),
            key,
        }
    }

    /// Sets the item's facts; false when it had them already.
    pub(super) fn set_facts(&mut self, facts: ItemFacts) -> bool {
        self.estimate = facts.estimate;
        match &mut self.facts {
            Some(f) => {
                **f = facts;
                false
            }
            None => {
                self.facts = Some(Box::new(facts));
                true
            }
        }
    }

    pub(super) fn link_position(&self, hypothesis_id: &str) -> Result<usize, usize> {
        self.links
            .binary_search_by(|l| (*l.hypothesis_id).cmp(hypothesis_id))
    }
}

#[derive(Debug, Default)]
pub(super) struct Entries {
    slab: Vec<Option<Entry>>,
    /// Empty slots, reused first.
    free: Vec<Slot>,
    slots: HashMap<Key, Slot, foldhash::fast::RandomState>,
    /// The labelled keys, in order.
    ordered: BTreeMap<Key, Slot>,
    /// Slots of entries added since the last labelling (some may have gone
    /// since).
    unlabelled: Vec<Slot>,
}

impl Entries {
    pub fn slot(&self, key: &str) -> Option<Slot> {
        self.slots.get(key).copied()
    }

    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.at(self.slot(key)?)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Entry> {
        let slot = self.slot(key)?;
        self.at_mut(slot)
    }

    pub fn at(&self, slot: Slot) -> Option<&Entry> {
        self.slab.get(slot as usize)?.as_ref()
    }

    pub fn at_mut(&mut self, slot: Slot) -> Option<&mut Entry> {
        self.slab.get_mut(slot as usize)?.as_mut()
    }

    pub fn values(&self) -> impl Iterator<Item = &Entry> {
        self.slab.iter().flatten()
    }

    /// Every entry with its slot, in slot order.
    pub fn with_slots_mut(&mut self) -> impl Iterator<Item = (Slot, &mut Entry)> {
        self.slab
            .iter_mut()
            .enumerate()
            .filter_map(|(i, e)| Some((i as Slot, e.as_mut()?)))
    }

    /// Sorts `slots` and drops repeats and slots past the slab (they name
    /// no entry). Many slots (a rescore reaching thousands of items) are
    /// set as bits over the slab and read back in order: linear, where a
    /// sort is not.
    pub fn sort_slots(&self, slots: &mut Vec<Slot>) {
        let len = self.slab.len();
        if slots.len() < len.div_ceil(64) {
            slots.sort_unstable();
            slots.dedup();
            slots.truncate(slots.partition_point(|&s| (s as usize) < len));
            return;
        }
        let mut set = SlotSet::with_room(len);
        for &s in slots.iter() {
            if (s as usize) < len {
                set.insert(s);
            }
        }
        slots.clear();
        slots.extend(set.iter());
    }

    /// The entries in `slots` (sorted, each once), with their slots; empty
    /// slots are left out.
    pub fn select_mut(&mut self, slots: &[Slot]) -> Vec<(Slot, &mut Entry)> {
        debug_assert!(slots.windows(2).all(|w| w[0] < w[1]));
        let mut out = Vec::with_capacity(slots.len());
        let (mut rest, mut first) = (&mut self.slab[..], 0usize);
        for &slot in slots {
            let Some(skip) = (slot as usize).checked_sub(first) else {
                continue;
            };
            let Some((e, tail)) = std::mem::take(&mut rest)
                .get_mut(skip..)
                .and_then(|r| r.split_first_mut())
            else {
                break;
            };
            if let Some(e) = e.as_mut() {
                out.push((slot, e));
            }
            rest = tail;
            first = slot as usize + 1;
        }
        out
    }

    /// Room for `n` more entries.
    pub fn reserve(&mut self, n: usize) {
        self.slab.reserve(n);
        self.slots.reserve(n);
    }

    /// Adds an entry for `key`, which has none; it is labelled by the next
    /// [`label_new`](Self::label_new).
    pub fn add(&mut self, key: Key) -> Slot {
        let e = Entry::new(key.clone());
        let slot = match self.free.pop() {
            Some(s) => {
                self.slab[s as usize] = Some(e);
                s
            }
            None => {
                let s = Slot::try_from(self.slab.len())
                    .ok()
                    .filter(|s| *s < Slot::MAX)
                    .expect("fewer than 2^32 - 1 index entries: each takes memory");
                self.slab.push(Some(e));
                s
            }
        };
        self.slots.insert(key, slot);
        self.unlabelled.push(slot);
        slot
    }

    /// Takes out `key`'s entry, freeing its slot and label.
    pub fn remove(&mut self, key: &str) -> Option<Entry> {
        let slot = self.slots.remove(key)?;
        self.ordered.remove(key);
        self.free.push(slot);
        self.slab[slot as usize].take()
    }

    fn label(&self, slot: Slot) -> u64 {
        self.at(slot).map_or(0, |e| e.label)
    }

    /// The label of `key`, or of the greatest key before it when it has
    /// none; 0 (below every label) when there is no such key.
    pub fn label_up_to(&self, key: &str) -> u64 {
        self.ordered
            .range::<str, _>((Bound::Unbounded, Bound::Included(key)))
            .next_back()
            .map_or(0, |(_, s)| self.label(*s))
    }

    /// Labels the entries added since the last call; true when every label
    /// was given anew (the rankings must then be relabelled).
    pub fn label_new(&mut self) -> bool {
        if self.unlabelled.is_empty() {
            return false;
        }
        // A slot freed and reused is listed twice, for its latest entry.
        let mut slots = std::mem::take(&mut self.unlabelled);
        slots.sort_unstable();
        slots.dedup();
        let mut new: Vec<(Key, Slot)> = slots
            .into_iter()
            .filter_map(|s| {
                let e = self.at(s)?;
                (e.label == 0).then(|| (e.key.clone(), s))
            })
            .collect();
        if new.len() * 16 <= self.ordered.len() {
            let mut respace = false;
            for (key, slot) in new {
                // Once respacing, the rest wait for it.
                let label = if respace { None } else { self.between(&key) };
                match label {
                    Some(label) => {
                        if let Some(e) = self.at_mut(slot) {
                            e.label = label;
                        }
                    }
                    None => respace = true,
                }
                self.ordered.insert(key, slot);
            }
            if respace {
                self.respace();
            }
            return respace;
        }
        // Many new keys: one merge of the sorted lists, then labels anew.
        new.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let old = std::mem::take(&mut self.ordered);
        let (mut old, mut new) = (old.into_iter().peekable(), new.into_iter().peekable());
        let merged = std::iter::from_fn(|| match (old.peek(), new.peek()) {
            (Some(o), Some(n)) if n.0 < o.0 => new.next(),
            (Some(_), _) => old.next(),
            (None, _) => new.next(),
        });
        self.ordered = merged.collect();
        self.respace();
        true
    }

    /// A free label between `key`'s neighbours' (`key` not yet in
    /// `ordered`), if there is one.
    fn between(&self, key: &str) -> Option<u64> {
        let below = self.label_up_to(key);
        let above = self
            .ordered
            .range::<str, _>((Bound::Excluded(key), Bound::Unbounded))
            .next()
            .map(|(_, s)| self.label(*s));
        match above {
            Some(above) => (above - below >= 2).then(|| below + (above - below) / 2),
            None => below.checked_add(LABEL_SPACING),
        }
    }

    /// Labels every key anew, evenly spaced in key order.
    fn respace(&mut self) {
        let n = self.ordered.len() as u64;
        let spacing = (u64::MAX / (n + 1)).min(LABEL_SPACING);
        for (i, slot) in self.ordered.values().enumerate() {
            if let Some(Some(e)) = self.slab.get_mut(*slot as usize) {
                e.label = (i as u64 + 1) * spacing;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::Arc;

    /// Every entry is labelled, labels are unique and above 0, and they
    /// order as the keys do.
    fn labels_order_as_keys(entries: &Entries) -> Result<(), TestCaseError> {
        let mut by_key: Vec<(&str, u64)> = entries.values().map(|e| (&*e.key, e.label)).collect();
        by_key.sort_unstable();
        prop_assert_eq!(by_key.len(), entries.ordered.len());
        for w in by_key.windows(2) {
            prop_assert!(w[0].1 < w[1].1, "{:?} then {:?}", w[0], w[1]);
        }
        prop_assert!(by_key.first().is_none_or(|f| f.1 > 0));
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Few slots are sorted, many set as bits: either way the result
        /// is the slab's slots among them, sorted, each once.
        #[test]
        fn slots_sort_and_dedup(
            n in 0..300usize,
            // Fewer slots than the slab has words are sorted.
            slots in prop_oneof![
                prop::collection::vec(0..320u32, 0..5),
                prop::collection::vec(0..320u32, 0..400),
            ],
        ) {
            let mut entries = Entries::default();
            for i in 0..n {
                entries.add(Arc::from(format!("k{i}")));
            }
            let mut want: Vec<Slot> = slots.iter().copied().filter(|&s| (s as usize) < n).collect();
            want.sort_unstable();
            want.dedup();
            let mut got = slots;
            entries.sort_slots(&mut got);
            prop_assert_eq!(got, want);
        }

        /// Keys added a few or many at a time, and removed, in any order:
        /// the labels keep the key order, and `label_up_to` finds the
        /// label of a key or of the greatest one before it.
        #[test]
        fn labels_keep_key_order(
            batches in prop::collection::vec(
                (
                    // Few keys at a time are labelled one by one, many in a merge.
                    prop_oneof![
                        prop::collection::vec(0..400u32, 0..8),
                        prop::collection::vec(0..400u32, 0..120),
                    ],
                    prop::collection::vec(0..400u32, 0..10),
                ),
                1..20,
            ),
            probes in prop::collection::vec(0..400u32, 8),
        ) {
            let key = |i: u32| format!("k{i:03}");
            let mut entries = Entries::default();
            for (add, remove) in batches {
                for i in add {
                    if entries.slot(&key(i)).is_none() {
                        entries.add(Arc::from(key(i)));
                    }
                }
                entries.label_new();
                labels_order_as_keys(&entries)?;
                for i in remove {
                    entries.remove(&key(i));
                }
                labels_order_as_keys(&entries)?;
                for p in &probes {
                    let k = key(*p);
                    let want = entries
                        .values()
                        .filter(|e| *e.key <= *k)
                        .max_by(|a, b| a.key.cmp(&b.key))
                        .map_or(0, |e| e.label);
                    prop_assert_eq!(entries.label_up_to(&k), want);
                }
            }
        }
    }
}
