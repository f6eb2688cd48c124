//! "Since the last refinement": a past top N against the current one, as
//! the items that entered, left or moved, each with the score terms that
//! changed, largest change first. Pure: the engine hands in both rankings
//! and what it knows now of the items that left.

use std::collections::HashMap;

use crate::domain::history::{SnapshotItem, SnapshotTerm};

/// Why an item left the top N.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeftReason {
    Closed,
    Released,
    Removed,
    PushedOut,
    Gone,
}

/// What the engine knows now of an item that left the top N.
#[derive(Debug, Clone, PartialEq)]
pub struct LeftNow {
    pub reason: LeftReason,
    /// When it was closed or removed, which release listed it.
    pub detail: String,
    /// Its rank in the whole current ranking (pushed out only).
    pub current_rank: u32,
    /// Its score now, when it still has one (closed or pushed out).
    pub item: Option<SnapshotItem>,
}

/// How a term changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TermChangeKind {
    LinkAdded,
    LinkRemoved,
    Changed,
    /// The item was not in the old top N: its term as it is now.
    Current,
}

/// One factor of a term, before and after.
#[derive(Debug, Clone, PartialEq)]
pub struct FactorChange {
    pub name: &'static str,
    pub old: f64,
    pub new: f64,
}

/// One term that changed.
#[derive(Debug, Clone, PartialEq)]
pub struct TermChange {
    pub hypothesis_id: String,
    pub old_value: f64,
    pub new_value: f64,
    pub kind: TermChangeKind,
    /// Largest relative change first.
    pub factors: Vec<FactorChange>,
}

/// Value, size and density at one time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Numbers {
    pub value: f64,
    pub size: f64,
    pub value_density: f64,
}

impl From<&SnapshotItem> for Numbers {
    fn from(i: &SnapshotItem) -> Self {
        Numbers {
            value: i.value,
            size: i.size,
            value_density: i.value_density,
        }
    }
}

/// An item that entered, left or moved.
#[derive(Debug, Clone, PartialEq)]
pub struct RankingChange {
    pub item_key: String,
    pub title: String,
    /// 0 when it entered.
    pub old_rank: u32,
    /// 0 when it left.
    pub new_rank: u32,
    /// Left items only.
    pub left: Option<LeftNow>,
    /// `None` when it entered (not known).
    pub old: Option<Numbers>,
    /// `None` when it has no score now.
    pub new: Option<Numbers>,
    /// Largest change first.
    pub terms: Vec<TermChange>,
}

/// The three groups, each in the order a reader scans it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Comparison {
    /// By new rank.
    pub entered: Vec<RankingChange>,
    /// By old rank.
    pub left: Vec<RankingChange>,
    /// By new rank.
    pub moved: Vec<RankingChange>,
}

impl RankingChange {
    /// One line for people: why it left, then the term that changed most
    /// (old -> new, with the factor that moved it), then a size change;
    /// for an item that entered, its largest term now.
    pub fn why(&self) -> String {
        let mut parts = Vec::new();
        if let Some(l) = &self.left {
            parts.push(match l.reason {
                LeftReason::PushedOut if l.current_rank > 0 => {
                    format!("pushed out (now #{})", l.current_rank)
                }
                LeftReason::PushedOut => "pushed out".into(),
                LeftReason::Closed
                | LeftReason::Released
                | LeftReason::Removed
                | LeftReason::Gone => l.detail.clone(),
            });
        }
        if let Some(t) = self.terms.first() {
            parts.push(t.describe());
        }
        if let (Some(o), Some(n)) = (self.old, self.new)
            && o.size != n.size
        {
            parts.push(format!("size {} -> {}", num(o.size), num(n.size)));
        }
        if parts.is_empty() {
            parts.push("no term of its own changed: others moved".into());
        }
        parts.join("; ")
    }
}

impl TermChange {
    /// `H-1 0.15 -> 0.03 (gap 1 -> 0.2)`, `H-3 linked: 0 -> 0.05`.
    pub fn describe(&self) -> String {
        let (o, n, h) = (
            num(self.old_value),
            num(self.new_value),
            &self.hypothesis_id,
        );
        match self.kind {
            TermChangeKind::LinkAdded => format!("{h} linked: 0 -> {n}"),
            TermChangeKind::LinkRemoved => format!("{h} unlinked: {o} -> 0"),
            TermChangeKind::Current => format!("{h} {n} now"),
            TermChangeKind::Changed => match self.factors.first() {
                Some(f) => format!(
                    "{h} {o} -> {n} ({} {} -> {})",
                    f.name,
                    num(f.old),
                    num(f.new)
                ),
                None => format!("{h} {o} -> {n}"),
            },
        }
    }
}

fn num(f: f64) -> String {
    crate::chart::format_number(f)
}

/// Compares `old` with `new` (each a top N in rank order, the first rank
/// 1); `left_now` says what is known now of an item of `old` missing from
/// `new`. Items at the same rank in both are not listed.
pub fn compare(
    old: &[SnapshotItem],
    new: &[SnapshotItem],
    mut left_now: impl FnMut(&SnapshotItem) -> LeftNow,
) -> Comparison {
    let rank_of = |items: &[SnapshotItem]| -> HashMap<String, u32> {
        items
            .iter()
            .enumerate()
            .map(|(i, it)| (it.key.clone(), rank(i)))
            .collect()
    };
    let old_ranks = rank_of(old);
    let new_ranks = rank_of(new);
    let mut out = Comparison::default();
    for (i, it) in new.iter().enumerate() {
        let new_rank = rank(i);
        match old_ranks.get(&it.key) {
            None => out.entered.push(RankingChange {
                item_key: it.key.clone(),
                title: it.title.clone(),
                old_rank: 0,
                new_rank,
                left: None,
                old: None,
                new: Some(it.into()),
                terms: current_terms(&it.terms),
            }),
            Some(&old_rank) if old_rank != new_rank => {
                let before = &old[old_rank as usize - 1];
                out.moved.push(RankingChange {
                    item_key: it.key.clone(),
                    title: it.title.clone(),
                    old_rank,
                    new_rank,
                    left: None,
                    old: Some(before.into()),
                    new: Some(it.into()),
                    terms: term_changes(&before.terms, &it.terms),
                });
            }
            Some(_) => {}
        }
    }
    for (i, before) in old.iter().enumerate() {
        if new_ranks.contains_key(&before.key) {
            continue;
        }
        let now = left_now(before);
        let terms = match &now.item {
            Some(it) => term_changes(&before.terms, &it.terms),
            None => Vec::new(),
        };
        out.left.push(RankingChange {
            item_key: before.key.clone(),
            title: now
                .item
                .as_ref()
                .map_or_else(|| before.title.clone(), |it| it.title.clone()),
            old_rank: rank(i),
            new_rank: 0,
            old: Some(before.into()),
            new: now.item.as_ref().map(Numbers::from),
            left: Some(now),
            terms,
        });
    }
    out
}

fn rank(index: usize) -> u32 {
    // A top N holds at most 1000 items.
    u32::try_from(index + 1).unwrap_or(u32::MAX)
}

/// An entered item's terms as they are now, largest first.
fn current_terms(terms: &[SnapshotTerm]) -> Vec<TermChange> {
    let mut out: Vec<TermChange> = terms
        .iter()
        .map(|t| TermChange {
            hypothesis_id: t.hypothesis_id.clone(),
            old_value: 0.0,
            new_value: t.value,
            kind: TermChangeKind::Current,
            factors: Vec::new(),
        })
        .collect();
    sort_terms(&mut out);
    out
}

/// The terms that differ between `old` and `new` (each in hypothesis-id
/// order or any order), largest change of value first.
pub fn term_changes(old: &[SnapshotTerm], new: &[SnapshotTerm]) -> Vec<TermChange> {
    let new_by_id: HashMap<&str, &SnapshotTerm> =
        new.iter().map(|t| (t.hypothesis_id.as_str(), t)).collect();
    let old_ids: HashMap<&str, ()> = old.iter().map(|t| (t.hypothesis_id.as_str(), ())).collect();
    let mut out = Vec::new();
    for o in old {
        match new_by_id.get(o.hypothesis_id.as_str()) {
            None => out.push(TermChange {
                hypothesis_id: o.hypothesis_id.clone(),
                old_value: o.value,
                new_value: 0.0,
                kind: TermChangeKind::LinkRemoved,
                factors: Vec::new(),
            }),
            Some(n) => {
                let factors = factor_changes(o, n);
                if o.value != n.value || !factors.is_empty() {
                    out.push(TermChange {
                        hypothesis_id: o.hypothesis_id.clone(),
                        old_value: o.value,
                        new_value: n.value,
                        kind: TermChangeKind::Changed,
                        factors,
                    });
                }
            }
        }
    }
    for n in new {
        if !old_ids.contains_key(n.hypothesis_id.as_str()) {
            out.push(TermChange {
                hypothesis_id: n.hypothesis_id.clone(),
                old_value: 0.0,
                new_value: n.value,
                kind: TermChangeKind::LinkAdded,
                factors: Vec::new(),
            });
        }
    }
    sort_terms(&mut out);
    out
}

fn sort_terms(terms: &mut [TermChange]) {
    terms.sort_by(|a, b| {
        let (da, db) = (
            (a.new_value - a.old_value).abs(),
            (b.new_value - b.old_value).abs(),
        );
        db.total_cmp(&da)
            .then_with(|| a.hypothesis_id.cmp(&b.hypothesis_id))
    });
}

fn factor_changes(old: &SnapshotTerm, new: &SnapshotTerm) -> Vec<FactorChange> {
    let mut out: Vec<FactorChange> = old
        .factors()
        .into_iter()
        .zip(new.factors())
        .filter(|((_, o), (_, n))| o != n)
        .map(|((name, o), (_, n))| FactorChange {
            name,
            old: o,
            new: n,
        })
        .collect();
    let relative = |f: &FactorChange| {
        let scale = f.old.abs().max(f.new.abs());
        if scale > 0.0 {
            (f.new - f.old).abs() / scale
        } else {
            0.0
        }
    };
    out.sort_by(|a, b| relative(b).total_cmp(&relative(a)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ItemState;

    fn term(h: &str, gap: f64, value: f64) -> SnapshotTerm {
        SnapshotTerm {
            hypothesis_id: h.into(),
            goal_weight: 1.0,
            gap,
            expected_effect: 0.5,
            confidence: 0.5,
            contribution: 1.0,
            effective_contribution: 1.0,
            value,
        }
    }

    fn item(key: &str, terms: Vec<SnapshotTerm>) -> SnapshotItem {
        let value: f64 = terms.iter().map(|t| t.value).sum();
        SnapshotItem {
            key: key.into(),
            title: key.to_uppercase(),
            state: ItemState::Open,
            value,
            size: 1.0,
            value_density: value,
            terms,
        }
    }

    fn pushed_out(it: &SnapshotItem) -> LeftNow {
        LeftNow {
            reason: LeftReason::PushedOut,
            detail: String::new(),
            current_rank: 9,
            item: Some(it.clone()),
        }
    }

    #[test]
    fn entered_left_and_moved_with_the_terms_that_changed() {
        let old = vec![
            item("a", vec![term("H-1", 0.8, 0.4)]),
            item("b", vec![term("H-1", 0.8, 0.3)]),
            item("c", vec![term("H-2", 0.5, 0.2)]),
        ];
        let new = vec![
            item("b", vec![term("H-1", 0.8, 0.3), term("H-3", 0.9, 0.25)]),
            item("d", vec![term("H-2", 0.5, 0.28)]),
            item("a", vec![term("H-1", 0.2, 0.1)]),
        ];
        let cmp = compare(&old, &new, |it| LeftNow {
            reason: LeftReason::Closed,
            detail: "closed".into(),
            current_rank: 0,
            item: Some(it.clone()),
        });
        assert_eq!(cmp.entered.len(), 1);
        assert_eq!(
            (cmp.entered[0].item_key.as_str(), cmp.entered[0].new_rank),
            ("d", 2)
        );
        assert_eq!(cmp.entered[0].terms[0].kind, TermChangeKind::Current);
        assert_eq!(cmp.left.len(), 1);
        assert_eq!(cmp.left[0].item_key, "c");
        assert_eq!(
            cmp.left[0].left.as_ref().unwrap().reason,
            LeftReason::Closed
        );
        assert!(cmp.left[0].terms.is_empty(), "its terms did not change");
        let moved: Vec<(&str, u32, u32)> = cmp
            .moved
            .iter()
            .map(|m| (m.item_key.as_str(), m.old_rank, m.new_rank))
            .collect();
        assert_eq!(moved, vec![("b", 2, 1), ("a", 1, 3)]);
        // b rose because of a new link; a fell because H-1's gap closed.
        assert_eq!(cmp.moved[0].terms[0].kind, TermChangeKind::LinkAdded);
        assert_eq!(cmp.moved[0].terms.len(), 1);
        let a = &cmp.moved[1].terms[0];
        assert_eq!((a.old_value, a.new_value), (0.4, 0.1));
        assert_eq!(a.factors[0].name, "gap");
        assert_eq!((a.factors[0].old, a.factors[0].new), (0.8, 0.2));
    }

    #[test]
    fn unchanged_items_are_not_listed_and_terms_sort_by_change() {
        let old = vec![item(
            "a",
            vec![term("H-1", 0.8, 0.4), term("H-2", 0.5, 0.1)],
        )];
        let same = compare(&old, &old, pushed_out);
        assert_eq!(same, Comparison::default());
        let changes = term_changes(
            &[term("H-1", 0.8, 0.4), term("H-2", 0.5, 0.1)],
            &[term("H-1", 0.7, 0.35), term("H-3", 0.5, 0.2)],
        );
        let order: Vec<(&str, TermChangeKind)> = changes
            .iter()
            .map(|t| (t.hypothesis_id.as_str(), t.kind))
            .collect();
        assert_eq!(
            order,
            vec![
                ("H-3", TermChangeKind::LinkAdded),
                ("H-2", TermChangeKind::LinkRemoved),
                ("H-1", TermChangeKind::Changed),
            ]
        );
    }
}
