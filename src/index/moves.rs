//! Ranking moves: the two rankings updated together with the numbers a
//! rescore moved (on two threads when many moved), and the relabelling of
//! both when new keys respaced every label.

use super::ScoreIndex;
use super::ranking::{Move, Ranking};
use super::rescore::{Moved, both};

/// Above this many moved items the two rankings are updated on two
/// threads.
const PARALLEL_MOVES: usize = 4096;

/// The two rankings, updated together.
pub(super) struct Rankings<'a> {
    pub(super) by_density: &'a mut Ranking,
    pub(super) by_value: &'a mut Ranking,
}

impl Rankings<'_> {
    /// Moves each item to its new place in both rankings.
    pub(super) fn apply(&mut self, moved: Vec<Moved>) {
        if moved.is_empty() {
            return;
        }
        let (by_density, by_value) = (&mut *self.by_density, &mut *self.by_value);
        let moved = &moved;
        let mut density = move || {
            by_density.apply(moved.iter().map(|m| Move {
                old: m.old.map(|(_, d)| d),
                new: Some(m.density),
                label: m.label,
                slot: m.slot,
            }))
        };
        let mut value = move || {
            by_value.apply(moved.iter().map(|m| Move {
                old: m.old.map(|(v, _)| v),
                new: Some(m.value),
                label: m.label,
                slot: m.slot,
            }))
        };
        if moved.len() < PARALLEL_MOVES {
            density();
            value();
        } else {
            both(density, value);
        }
    }
}

impl ScoreIndex {
    /// Labels the entries added since the last rescore (they are about to
    /// be ranked), relabelling the rankings when every label changed.
    pub(super) fn label_new_entries(&mut self) {
        if self.entries.label_new() {
            let entries = &self.entries;
            let label_of = |slot| entries.at(slot).map_or(0, |e| e.label);
            self.by_density.relabel(label_of);
            self.by_value.relabel(label_of);
        }
    }
}
