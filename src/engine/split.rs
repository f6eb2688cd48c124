//! Splitting use cases: gather what the pure planner in
//! [`crate::refine::split`] needs (the item's body from the store; its score,
//! its hypotheses and its children from the index), and apply a plan by
//! creating its slices and moving the item's links to them in one
//! transaction, then updating the index the same way.

use std::collections::BTreeMap;

use chrono::Utc;

use super::{Engine, Error, Result, facts_of, not_found};
use crate::domain::{Item, ItemState, Link, LinkOrigin, item_key};
use crate::index::ScoreIndex;
use crate::refine::split::{
    self, Child, PlanKind, Proposal, ServedHypothesis, SliceLink, SplitSubject,
};

/// The longest external id an item may have (what `UpsertItems` accepts).
const MAX_EXTERNAL_ID: usize = 256;

/// What applying a split plan did.
#[derive(Debug, Clone, PartialEq)]
pub struct AppliedSplit {
    /// The slices in slice order: created by this call, or found from an
    /// earlier application of the same plan.
    pub items: Vec<Item>,
    /// How many of them this call created.
    pub created: usize,
}

/// The planner's view of `item`: its score terms with their hypotheses'
/// statements, its checklist, and its children with their own scores.
fn subject(ix: &ScoreIndex, item: &Item) -> Result<SplitSubject> {
    let key = item.key();
    let score = ix.score(&key).ok_or_else(|| not_found("item", &key))?;
    let hypotheses = score
        .terms
        .iter()
        .map(|t| ServedHypothesis {
            hypothesis_id: t.hypothesis_id.clone(),
            statement: ix
                .hypothesis(&t.hypothesis_id)
                .map(|h| h.statement.clone())
                .unwrap_or_default(),
            contribution: t.contribution,
            value: t.value,
        })
        .collect();
    let children = ix
        .children_of(&key)
        .into_iter()
        .filter_map(|k| {
            let (facts, s) = (ix.item(&k)?, ix.score(&k)?);
            Some(Child {
                title: facts.title.clone(),
                value: s.value,
                size: s.size,
                links: ix
                    .links_of_item(&k)
                    .map(|l| SliceLink {
                        hypothesis_id: l.hypothesis_id.clone(),
                        contribution: l.contribution,
                    })
                    .collect(),
                key: k,
            })
        })
        .collect();
    Ok(SplitSubject {
        source_id: item.source_id.clone(),
        external_id: item.external_id.clone(),
        value: score.value,
        size: score.size,
        hypotheses,
        tasks: item.tasks(),
        children,
    })
}

/// Why `kind` has no plan for `s`.
fn no_plan(key: &str, kind: PlanKind, s: &SplitSubject) -> Error {
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    Error::FailedPrecondition(match kind {
        PlanKind::ByHypothesis => format!(
            "item {key:?} serves {}; splitting by hypothesis needs at least 2",
            plural(s.hypotheses.len(), "hypothesis", "hypotheses")
        ),
        PlanKind::ByTask => format!(
            "item {key:?} has {}; splitting by task needs at least 2",
            plural(
                s.tasks.iter().filter(|t| !t.done).count(),
                "open checklist task",
                "open checklist tasks"
            )
        ),
        PlanKind::ByChild => format!("item {key:?} has no children"),
    })
}

/// Keys of the slices an earlier split of `item` created: `-s1`, `-s2`, ...
/// as long as they exist and name `item` as their parent.
fn existing_slices(ix: &ScoreIndex, item: &Item) -> Vec<String> {
    let key = item.key();
    let mut out = Vec::new();
    for n in 1.. {
        let k = item_key(
            &item.source_id,
            &split::slice_external_id(&item.external_id, n),
        );
        match ix.item(&k) {
            Some(f) if f.parent_key == key => out.push(k),
            _ => break,
        }
    }
    out
}

impl Engine {
    /// The split plans of an item; `size_threshold` (> 0) decides whether it
    /// is oversized. NOT_FOUND for an unknown item.
    pub async fn propose_splits(&self, key: &str, size_threshold: f64) -> Result<Proposal> {
        let item = self.stored_item(key).await?;
        let ix = self.read();
        Ok(split::propose(&subject(&ix, &item)?, size_threshold))
    }

    /// Creates the slices of one plan of an item as items, moves the item's
    /// links to them, and stores it all in one transaction:
    /// - slice n is `{external_id}-s{n}` of the same source, open, with the
    ///   item as parent, the plan's title and the slice size as estimate;
    /// - by hypothesis, slice n gets the link to hypothesis n with its
    ///   contribution; by task, every slice gets every link with its
    ///   contribution divided by the number of slices;
    /// - the item's own links are removed.
    ///
    /// The carried links are API links (sync's link rules never remove
    /// them). Applying the same plan again finds the slices by key and
    /// returns them with `created` 0. A plan by child, a plan that does not
    /// apply, an item split before by the other plan, or a slice key taken
    /// by another item are FAILED_PRECONDITION.
    pub async fn apply_split(&self, key: &str, kind: PlanKind) -> Result<AppliedSplit> {
        let _w = self.writes.lock().await;
        let item = self.stored_item(key).await?;
        if kind == PlanKind::ByChild {
            return Err(Error::FailedPrecondition(format!(
                "the children of item {key:?} already exist as items; only plans by hypothesis or by task can be applied"
            )));
        }
        let existing = existing_slices(&self.read(), &item);
        if !existing.is_empty() {
            let items = self.get_items(&existing).await?;
            if let Some(other) = items
                .first()
                .and_then(|s| split::note_kind(&s.body, key))
                .filter(|k| *k != kind)
            {
                return Err(Error::FailedPrecondition(format!(
                    "item {key:?} was already split by {} into {}",
                    other.as_str(),
                    existing.join(", ")
                )));
            }
            return Ok(AppliedSplit { items, created: 0 });
        }

        let now = Utc::now();
        let (items, remove, put) = {
            let ix = self.read();
            let subject = subject(&ix, &item)?;
            let plan = split::plan(&subject, kind).ok_or_else(|| no_plan(key, kind, &subject))?;
            let originals: BTreeMap<&str, &Link> = ix
                .links_of_item(key)
                .map(|l| (l.hypothesis_id.as_str(), l))
                .collect();
            let total = plan.slices.len();
            let mut items = Vec::with_capacity(total);
            let mut put = Vec::new();
            for (i, slice) in plan.slices.iter().enumerate() {
                let n = i + 1;
                let external_id = split::slice_external_id(&item.external_id, n);
                if external_id.len() > MAX_EXTERNAL_ID {
                    return Err(Error::FailedPrecondition(format!(
                        "the slice ids of item {key:?} would be longer than {MAX_EXTERNAL_ID} characters"
                    )));
                }
                if ix.item(&slice.item_key).is_some() {
                    return Err(Error::FailedPrecondition(format!(
                        "item {:?} already exists and is not a slice of {key:?}",
                        slice.item_key
                    )));
                }
                items.push(Item {
                    source_id: item.source_id.clone(),
                    external_id,
                    title: slice.title.clone(),
                    body: split::slice_note(key, kind, n, total),
                    url: String::new(),
                    state: ItemState::Open,
                    labels: Vec::new(),
                    estimate: Some(slice.size),
                    parent_key: key.to_string(),
                    create_time: Some(now),
                    update_time: Some(now),
                    close_time: None,
                });
                for l in &slice.links {
                    let carried = format!("carried over from {key}, split by {}", kind.as_str());
                    let rationale = match originals.get(l.hypothesis_id.as_str()) {
                        Some(o) if !o.rationale.is_empty() => format!("{carried}: {}", o.rationale),
                        _ => carried,
                    };
                    put.push(Link {
                        item_key: slice.item_key.clone(),
                        hypothesis_id: l.hypothesis_id.clone(),
                        contribution: l.contribution,
                        origin: LinkOrigin::Api,
                        rationale,
                        create_time: now,
                        update_time: now,
                    });
                }
            }
            let remove: Vec<(String, String)> = originals
                .keys()
                .map(|h| (key.to_string(), h.to_string()))
                .collect();
            (items, remove, put)
        };
        self.store.upsert_items(&items, &remove, &put, None).await?;
        let mut ix = self.write_index();
        for it in &items {
            ix.put_item(it.key(), facts_of(it));
        }
        ix.apply_links(&remove, put);
        Ok(AppliedSplit {
            created: items.len(),
            items,
        })
    }

    /// One item from the store (its body lives only there).
    async fn stored_item(&self, key: &str) -> Result<Item> {
        self.get_items(&[key.to_string()])
            .await?
            .pop()
            .ok_or_else(|| not_found("item", key))
    }
}
