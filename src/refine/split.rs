//! Splitting: "break things down smaller" (VALUE-MODEL.md). From an item's
//! score terms, checklist and children, propose plans that cut it into
//! slices, each with its own value and size, and name the slice worth
//! shipping first. Pure: the engine gathers the data and does the writes.
//!
//! The rules (the README states them too):
//! - BY_HYPOTHESIS, when the item serves >= 2 hypotheses: one slice per score
//!   term; the slice's value is that term's value, and it carries that link
//!   with its original contribution. The slice values add up to the item's
//!   value exactly, in term order.
//! - BY_TASK, when the body has >= 2 open checklist tasks: one slice per open
//!   task; each gets `value / n` and every link with `contribution / n`.
//!   Checklist tasks carry no value information of their own, so sharing
//!   equally is the only split the data supports.
//! - BY_CHILD, when other items name this item as their parent: one slice per
//!   child, with the child's own score value, size and links.
//! - Slice sizes: the child's size for BY_CHILD; otherwise the item's size
//!   divided equally among the slices.
//! - The best slice has the highest value density (ties: lowest index); the
//!   value concentration is the best slice's value over the sum of the slice
//!   values (0 when that sum is 0).
//! - Plans are listed hypothesis, task, child; an item is oversized when its
//!   size is above the threshold (default 8).

use crate::domain::{ChecklistTask, item_key};

/// The size above which an item is flagged as oversized, unless the caller
/// names another threshold.
pub const DEFAULT_SIZE_THRESHOLD: f64 = 8.0;

/// The longest title an item may have (what `UpsertItems` accepts), so that a
/// slice made from a long hypothesis statement is still a valid item.
pub const MAX_TITLE_BYTES: usize = 4096;

/// How a plan cuts an item into slices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PlanKind {
    ByHypothesis,
    ByTask,
    ByChild,
}

impl PlanKind {
    /// Every kind, in the order plans are listed.
    pub const ALL: [PlanKind; 3] = [PlanKind::ByHypothesis, PlanKind::ByTask, PlanKind::ByChild];

    /// The word used in messages and slice notes: `hypothesis`, `task`, `child`.
    pub fn as_str(self) -> &'static str {
        match self {
            PlanKind::ByHypothesis => "hypothesis",
            PlanKind::ByTask => "task",
            PlanKind::ByChild => "child",
        }
    }

    pub fn parse(s: &str) -> Option<PlanKind> {
        PlanKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// A link a slice carries: the hypothesis and the contribution.
#[derive(Debug, Clone, PartialEq)]
pub struct SliceLink {
    pub hypothesis_id: String,
    pub contribution: f64,
}

/// A hypothesis the item serves: one term of its score.
#[derive(Debug, Clone, PartialEq)]
pub struct ServedHypothesis {
    pub hypothesis_id: String,
    /// The hypothesis' statement, the slice's title.
    pub statement: String,
    /// The contribution recorded on the item's link.
    pub contribution: f64,
    /// The term's value.
    pub value: f64,
}

/// An item whose parent is the item being split, with its own score.
#[derive(Debug, Clone, PartialEq)]
pub struct Child {
    pub key: String,
    pub title: String,
    pub value: f64,
    /// > 0: the estimate, or the default size.
    pub size: f64,
    pub links: Vec<SliceLink>,
}

/// What planning needs to know about one item.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitSubject {
    pub source_id: String,
    pub external_id: String,
    /// The item's score value.
    pub value: f64,
    /// > 0: the estimate, or the default size.
    pub size: f64,
    /// Its score terms, in term (hypothesis-id) order.
    pub hypotheses: Vec<ServedHypothesis>,
    /// The checklist of its body, done tasks included (they never become
    /// slices).
    pub tasks: Vec<ChecklistTask>,
    /// Its children, in key order.
    pub children: Vec<Child>,
}

/// One slice of a plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Slice {
    /// The child's key for BY_CHILD; otherwise the key the slice gets when
    /// the plan is applied.
    pub item_key: String,
    pub title: String,
    pub value: f64,
    pub size: f64,
    pub value_density: f64,
    pub links: Vec<SliceLink>,
}

/// A way to cut an item into slices.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub kind: PlanKind,
    /// Never empty.
    pub slices: Vec<Slice>,
    /// The slice with the highest value density; ties go to the lowest index.
    pub best_slice_index: usize,
    /// Best slice value / sum of slice values, in [0, 1]; 0 when the sum is 0.
    pub value_concentration: f64,
}

impl Plan {
    pub fn best_slice(&self) -> Option<&Slice> {
        self.slices.get(self.best_slice_index)
    }
}

/// The split proposal for one item.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    pub value: f64,
    pub size: f64,
    pub value_density: f64,
    pub size_threshold: f64,
    /// size > size_threshold.
    pub oversized: bool,
    /// In the order of [`PlanKind::ALL`]; empty when no plan applies.
    pub plans: Vec<Plan>,
}

/// Every plan that applies to `subject`, and whether it is oversized.
pub fn propose(subject: &SplitSubject, size_threshold: f64) -> Proposal {
    Proposal {
        value: subject.value,
        size: subject.size,
        value_density: subject.value / subject.size,
        size_threshold,
        oversized: subject.size > size_threshold,
        plans: PlanKind::ALL
            .into_iter()
            .filter_map(|k| plan(subject, k))
            .collect(),
    }
}

/// The plan of one kind, if it applies to `subject`.
pub fn plan(subject: &SplitSubject, kind: PlanKind) -> Option<Plan> {
    let slices = match kind {
        PlanKind::ByHypothesis => by_hypothesis(subject)?,
        PlanKind::ByTask => by_task(subject)?,
        PlanKind::ByChild => by_child(subject)?,
    };
    Some(finish(kind, slices))
}

fn by_hypothesis(s: &SplitSubject) -> Option<Vec<Slice>> {
    let n = s.hypotheses.len();
    if n < 2 {
        return None;
    }
    let size = s.size / n as f64;
    Some(
        s.hypotheses
            .iter()
            .enumerate()
            .map(|(i, h)| Slice {
                item_key: slice_key(s, i + 1),
                title: clip_title(&h.statement),
                value: h.value,
                size,
                value_density: h.value / size,
                links: vec![SliceLink {
                    hypothesis_id: h.hypothesis_id.clone(),
                    contribution: h.contribution,
                }],
            })
            .collect(),
    )
}

fn by_task(s: &SplitSubject) -> Option<Vec<Slice>> {
    let open: Vec<&ChecklistTask> = s.tasks.iter().filter(|t| !t.done).collect();
    let n = open.len();
    if n < 2 {
        return None;
    }
    let share = n as f64;
    let (value, size) = (s.value / share, s.size / share);
    let links: Vec<SliceLink> = s
        .hypotheses
        .iter()
        .map(|h| SliceLink {
            hypothesis_id: h.hypothesis_id.clone(),
            contribution: h.contribution / share,
        })
        .collect();
    Some(
        open.iter()
            .enumerate()
            .map(|(i, t)| Slice {
                item_key: slice_key(s, i + 1),
                title: clip_title(&t.text),
                value,
                size,
                value_density: value / size,
                links: links.clone(),
            })
            .collect(),
    )
}

fn by_child(s: &SplitSubject) -> Option<Vec<Slice>> {
    if s.children.is_empty() {
        return None;
    }
    Some(
        s.children
            .iter()
            .map(|c| Slice {
                item_key: c.key.clone(),
                title: c.title.clone(),
                value: c.value,
                size: c.size,
                value_density: c.value / c.size,
                links: c.links.clone(),
            })
            .collect(),
    )
}

fn finish(kind: PlanKind, slices: Vec<Slice>) -> Plan {
    let best = best_slice_index(&slices);
    let total = slices.iter().fold(0.0, |acc, s| acc + s.value);
    let best_value = slices.get(best).map_or(0.0, |s| s.value);
    let value_concentration = if total > 0.0 { best_value / total } else { 0.0 };
    Plan {
        kind,
        slices,
        best_slice_index: best,
        value_concentration,
    }
}

/// The index of the slice with the highest value density; the first one
/// when several tie (0 for an empty list).
pub fn best_slice_index(slices: &[Slice]) -> usize {
    let mut best = 0;
    let mut best_density = f64::NEG_INFINITY;
    for (i, s) in slices.iter().enumerate() {
        if s.value_density > best_density {
            (best, best_density) = (i, s.value_density);
        }
    }
    best
}

/// The external id of slice `n` (from 1) of an item: `{external_id}-s{n}`.
pub fn slice_external_id(external_id: &str, n: usize) -> String {
    format!("{external_id}-s{n}")
}

fn slice_key(s: &SplitSubject, n: usize) -> String {
    item_key(&s.source_id, &slice_external_id(&s.external_id, n))
}

/// The first line of a slice's body, which records how it was made, so that
/// applying a plan again can tell its own slices from another plan's.
pub fn slice_note(item_key: &str, kind: PlanKind, n: usize, total: usize) -> String {
    format!(
        "Split from {item_key} by {}: slice {n} of {total}.",
        kind.as_str()
    )
}

/// What a slice note says: the split item, the plan kind, and the slice's
/// place (`n` of `total`, n from 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub item_key: String,
    pub kind: PlanKind,
    pub n: usize,
    pub total: usize,
}

/// The text every note of a split of `item_key` starts with; what a search
/// for earlier slices looks for.
pub fn note_prefix(item_key: &str) -> String {
    format!("Split from {item_key} by ")
}

/// Parses one line written by [`slice_note`] (surrounding blanks allowed).
pub fn parse_note(line: &str) -> Option<Note> {
    let rest = line.trim().strip_prefix("Split from ")?;
    let (item_key, rest) = rest.rsplit_once(" by ")?;
    let (word, rest) = rest.split_once(": slice ")?;
    let (n, total) = rest.strip_suffix('.')?.split_once(" of ")?;
    let (n, total): (usize, usize) = (n.parse().ok()?, total.parse().ok()?);
    (!item_key.is_empty() && n >= 1 && n <= total).then_some(Note {
        item_key: item_key.to_string(),
        kind: PlanKind::parse(word)?,
        n,
        total,
    })
}

/// The note of a split of `item_key` in a slice's body: on any line, since
/// a tracker or a person may add text around it.
pub fn find_note(body: &str, item_key: &str) -> Option<Note> {
    body.lines()
        .filter_map(parse_note)
        .find(|note| note.item_key == item_key)
}

/// The key of the item a body's note says it was split from, when that item
/// is in source `source_id`: the parent of a slice written to a tracker that
/// has no parent field of its own.
pub fn note_parent(body: &str, source_id: &str) -> Option<String> {
    body.lines()
        .filter_map(parse_note)
        .map(|note| note.item_key)
        .find(|key| {
            key.strip_prefix(source_id)
                .and_then(|rest| rest.strip_prefix('/'))
                .is_some_and(|id| !id.is_empty())
        })
}

/// Cuts a title to [`MAX_TITLE_BYTES`] on a character boundary.
fn clip_title(s: &str) -> String {
    let s = s.trim();
    if s.len() <= MAX_TITLE_BYTES {
        return s.to_string();
    }
    let mut end = MAX_TITLE_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hyp(id: &str, contribution: f64, value: f64) -> ServedHypothesis {
        ServedHypothesis {
            hypothesis_id: id.into(),
            statement: format!("We believe {id} moves the metric"),
            contribution,
            value,
        }
    }

    fn task(text: &str, done: bool) -> ChecklistTask {
        ChecklistTask {
            text: text.into(),
            done,
        }
    }

    fn child(key: &str, value: f64, size: f64) -> Child {
        Child {
            key: key.into(),
            title: format!("child {key}"),
            value,
            size,
            links: vec![SliceLink {
                hypothesis_id: "H-1".into(),
                contribution: 0.5,
            }],
        }
    }

    /// The item of the README example: two hypotheses (0.05 + 0.06), three
    /// open tasks and one done, two children, size 12.
    fn subject() -> SplitSubject {
        SplitSubject {
            source_id: "web".into(),
            external_id: "1".into(),
            value: 0.05 + 0.06,
            size: 12.0,
            hypotheses: vec![hyp("H-1", 0.5, 0.05), hyp("H-2", 0.25, 0.06)],
            tasks: vec![
                task("Design the form", false),
                task("Spike", true),
                task("Build the API", false),
                task("Wire the UI", false),
            ],
            children: vec![child("web/2", 0.05, 2.0), child("web/3", 0.12, 4.0)],
        }
    }

    #[test]
    fn plans_of_an_item_that_has_everything() {
        let p = propose(&subject(), DEFAULT_SIZE_THRESHOLD);
        assert!(p.oversized, "12 > 8");
        assert_eq!(p.value_density, (0.05 + 0.06) / 12.0);
        let kinds: Vec<PlanKind> = p.plans.iter().map(|p| p.kind).collect();
        assert_eq!(kinds, PlanKind::ALL, "fixed order");

        let h = &p.plans[0];
        let keys: Vec<&str> = h.slices.iter().map(|s| s.item_key.as_str()).collect();
        assert_eq!(keys, ["web/1-s1", "web/1-s2"]);
        assert_eq!(h.slices[0].title, "We believe H-1 moves the metric");
        assert_eq!(h.slices[0].value, 0.05);
        assert_eq!(h.slices[1].value, 0.06);
        assert_eq!(h.slices[0].size, 6.0);
        assert!((h.slices[1].value_density - 0.01).abs() < 1e-15);
        assert_eq!(
            h.slices[1].links,
            [SliceLink {
                hypothesis_id: "H-2".into(),
                contribution: 0.25
            }]
        );
        assert_eq!(h.best_slice_index, 1, "H-2 is denser");
        assert_eq!(h.value_concentration, 0.06 / (0.05 + 0.06));

        let t = &p.plans[1];
        let titles: Vec<&str> = t.slices.iter().map(|s| s.title.as_str()).collect();
        assert_eq!(
            titles,
            ["Design the form", "Build the API", "Wire the UI"],
            "done tasks are not slices"
        );
        for s in &t.slices {
            assert_eq!(s.value, (0.05 + 0.06) / 3.0);
            assert_eq!(s.size, 4.0);
            let contributions: Vec<f64> = s.links.iter().map(|l| l.contribution).collect();
            assert_eq!(contributions, [0.5 / 3.0, 0.25 / 3.0]);
        }
        assert_eq!(t.slices[2].item_key, "web/1-s3");
        assert_eq!(t.best_slice_index, 0, "all equal: the first");
        assert!((t.value_concentration - 1.0 / 3.0).abs() < 1e-15);

        let c = &p.plans[2];
        assert_eq!(c.slices[0].item_key, "web/2");
        assert_eq!(c.slices[1].size, 4.0, "the child's own size");
        assert_eq!(c.slices[0].value_density, 0.025);
        assert_eq!(c.best_slice_index, 1, "0.03 beats 0.025");
        assert_eq!(c.value_concentration, 0.12 / (0.05 + 0.12));
    }

    #[test]
    fn an_item_with_one_of_each_has_no_plan_but_keeps_its_flag() {
        let s = SplitSubject {
            hypotheses: vec![hyp("H-1", 1.0, 0.2)],
            tasks: vec![task("only open one", false), task("done", true)],
            children: vec![],
            ..subject()
        };
        let p = propose(&s, 10.0);
        assert!(p.plans.is_empty());
        assert!(p.oversized, "12 > 10");
        assert!(
            !propose(&s, 12.0).oversized,
            "at the threshold is not above it"
        );
        assert_eq!(plan(&s, PlanKind::ByHypothesis), None);
    }

    #[test]
    fn a_single_child_is_a_plan() {
        let s = SplitSubject {
            children: vec![child("web/9", 0.0, 1.0)],
            ..subject()
        };
        let c = plan(&s, PlanKind::ByChild).unwrap();
        assert_eq!(c.slices.len(), 1);
        assert_eq!(c.value_concentration, 0.0, "no value: concentration 0");
    }

    #[test]
    fn density_ties_go_to_the_lowest_index() {
        let s = SplitSubject {
            children: vec![
                child("a", 0.01, 1.0),
                child("b", 0.02, 1.0),
                child("c", 0.04, 2.0),
            ],
            ..subject()
        };
        let c = plan(&s, PlanKind::ByChild).unwrap();
        assert_eq!(c.best_slice_index, 1, "b and c tie at 0.02; b comes first");
    }

    #[test]
    fn notes_name_the_item_the_plan_kind_and_the_place() {
        let note = slice_note("web/1", PlanKind::ByTask, 2, 3);
        assert_eq!(note, "Split from web/1 by task: slice 2 of 3.");
        assert!(note.starts_with(&note_prefix("web/1")));
        let want = Note {
            item_key: "web/1".into(),
            kind: PlanKind::ByTask,
            n: 2,
            total: 3,
        };
        assert_eq!(parse_note(&note), Some(want.clone()));
        let body = format!("{note}\r\nmore text");
        assert_eq!(find_note(&body, "web/1"), Some(want.clone()));
        assert_eq!(find_note(&body, "web/10"), None, "another item's note");
        assert_eq!(
            find_note(&format!("Edited on top.\n\n  {note}  "), "web/1"),
            Some(want),
            "found on any line"
        );
        assert_eq!(find_note("edited", "web/1"), None);
        // A key may hold " by " itself; the last one separates the kind.
        let odd = slice_note("ops/A by B", PlanKind::ByHypothesis, 1, 2);
        assert_eq!(parse_note(&odd).unwrap().item_key, "ops/A by B");
        for bad in [
            "Split from web/1 by task: slice 4 of 3.",
            "Split from web/1 by task: slice 0 of 3.",
            "Split from web/1 by size: slice 1 of 3.",
            "Split from web/1 by task: slice 1 of 3",
            "Split from  by task: slice 1 of 3.",
        ] {
            assert_eq!(parse_note(bad), None, "{bad}");
        }
        assert_eq!(note_parent(&body, "web"), Some("web/1".into()));
        assert_eq!(note_parent(&body, "we"), None, "another source");
        assert_eq!(note_parent("no note", "web"), None);
        assert_eq!(slice_external_id("OPS-12", 3), "OPS-12-s3");
    }

    #[test]
    fn long_titles_are_clipped_on_a_character_boundary() {
        let statement = "é".repeat(MAX_TITLE_BYTES);
        let s = SplitSubject {
            hypotheses: vec![
                ServedHypothesis {
                    statement,
                    ..hyp("H-1", 1.0, 0.1)
                },
                hyp("H-2", 1.0, 0.1),
            ],
            ..subject()
        };
        let h = plan(&s, PlanKind::ByHypothesis).unwrap();
        assert_eq!(h.slices[0].title.len(), MAX_TITLE_BYTES);
        assert!(h.slices[0].title.chars().all(|c| c == 'é'));
    }

    prop_compose! {
        fn any_subject()(
            parts in prop::collection::vec((0.001..=1.0f64, 0.0..=1.0f64), 0..6),
            size in 0.1..40.0f64,
            tasks in prop::collection::vec(any::<bool>(), 0..8),
            children in prop::collection::vec((0.0..=1.0f64, 0.1..20.0f64), 0..5),
        ) -> SplitSubject {
            let hypotheses: Vec<ServedHypothesis> = parts
                .iter()
                .enumerate()
                .map(|(i, (c, v))| hyp(&format!("H-{i}"), *c, *v))
                .collect();
            SplitSubject {
                source_id: "s".into(),
                external_id: "7".into(),
                // As the score adds its terms: in order, left to right.
                value: hypotheses.iter().fold(0.0, |acc, h| acc + h.value),
                size,
                hypotheses,
                tasks: tasks.iter().enumerate().map(|(i, d)| task(&format!("t{i}"), *d)).collect(),
                children: children.iter().enumerate().map(|(i, (v, z))| child(&format!("s/c{i}"), *v, *z)).collect(),
            }
        }
    }

    proptest! {
        #[test]
        fn hypothesis_slices_add_up_to_the_item_value_exactly(s in any_subject()) {
            if let Some(h) = plan(&s, PlanKind::ByHypothesis) {
                let sum = h.slices.iter().fold(0.0, |acc, x| acc + x.value);
                prop_assert_eq!(sum.to_bits(), s.value.to_bits());
                prop_assert_eq!(h.slices.len(), s.hypotheses.len());
            } else {
                prop_assert!(s.hypotheses.len() < 2);
            }
        }

        #[test]
        fn every_plan_is_well_formed(s in any_subject(), threshold in 0.1..50.0f64) {
            let p = propose(&s, threshold);
            prop_assert_eq!(p.oversized, s.size > threshold);
            let kinds: Vec<PlanKind> = p.plans.iter().map(|p| p.kind).collect();
            let mut sorted = kinds.clone();
            sorted.sort();
            sorted.dedup();
            prop_assert_eq!(&kinds, &sorted, "fixed order, each kind once");
            for plan in &p.plans {
                prop_assert!(!plan.slices.is_empty());
                prop_assert!((0.0..=1.0).contains(&plan.value_concentration), "{}", plan.value_concentration);
                let best = plan.best_slice().unwrap();
                for (i, x) in plan.slices.iter().enumerate() {
                    prop_assert!(x.size > 0.0);
                    prop_assert_eq!(x.value_density, x.value / x.size);
                    prop_assert!(x.value_density <= best.value_density);
                    if i < plan.best_slice_index {
                        prop_assert!(x.value_density < best.value_density, "ties go to the lowest index");
                    }
                }
                if plan.kind != PlanKind::ByChild {
                    let size: f64 = plan.slices.iter().map(|x| x.size).sum();
                    prop_assert!((size - s.size).abs() <= 1e-9 * s.size, "sizes share the item's size");
                }
            }
        }

        #[test]
        fn task_slices_share_value_and_contributions_equally(s in any_subject()) {
            let open = s.tasks.iter().filter(|t| !t.done).count();
            match plan(&s, PlanKind::ByTask) {
                None => prop_assert!(open < 2),
                Some(t) => {
                    prop_assert_eq!(t.slices.len(), open);
                    let value: f64 = t.slices.iter().map(|x| x.value).sum();
                    prop_assert!((value - s.value).abs() <= 1e-12);
                    for h in &s.hypotheses {
                        let total: f64 = t.slices.iter()
                            .flat_map(|x| &x.links)
                            .filter(|l| l.hypothesis_id == h.hypothesis_id)
                            .map(|l| l.contribution)
                            .sum();
                        prop_assert!((total - h.contribution).abs() <= 1e-12);
                    }
                }
            }
        }
    }
}
