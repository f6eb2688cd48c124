//! Splitting use cases: gather what the pure planner in
//! [`crate::refine::split`] needs (the item's body from the store; its score,
//! its hypotheses and its children from the index), and apply a plan by
//! creating its slices and moving the item's links to them in one
//! transaction, then updating the index the same way. Slices made in a
//! tracker (write-back, in [`crate::sync`]) go through the same steps:
//! [`Engine::start_split`], the tracker calls, [`Engine::finish_split`].

use std::collections::{BTreeMap, BTreeSet};

use chrono::Utc;

use super::{Engine, Error, Result, facts_of, missing_item, not_found, quote};
use crate::domain::{Item, ItemSplit, ItemState, Link, LinkOrigin, item_key};
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
    /// The keys of those this call created, in slice order; the others
    /// were made by an earlier call (one that stopped partway, or the same
    /// plan applied before).
    pub created: Vec<String>,
}

/// The planner's view of `item`: its score terms with their hypotheses'
/// statements, its checklist, and its children with their own scores.
fn subject(ix: &ScoreIndex, item: &Item) -> Result<SplitSubject> {
    let key = item.key();
    let score = ix.score(&key).ok_or_else(|| missing_item(ix, &key))?;
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
                        hypothesis_id: l.hypothesis_id.to_string(),
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
            "item {} serves {}; splitting by hypothesis needs at least 2",
            quote(key),
            plural(s.hypotheses.len(), "hypothesis", "hypotheses")
        ),
        PlanKind::ByTask => format!(
            "item {} has {}; splitting by task needs at least 2",
            quote(key),
            plural(
                s.tasks.iter().filter(|t| !t.done).count(),
                "open checklist task",
                "open checklist tasks"
            )
        ),
        PlanKind::ByChild => format!("item {} has no children", quote(key)),
    })
}

/// Why a closed item is not split: its slices would be open items under a
/// closed parent, which is no backlog (the work is done) and which trackers
/// refuse (Redmine answers 422, "An open issue cannot be attached to a
/// closed parent task"). Slices found from an earlier, partial application
/// are named, so that the reader knows what already exists.
fn closed_item(key: &str, found: &BTreeMap<usize, Item>) -> Error {
    let earlier = if found.is_empty() {
        String::new()
    } else {
        let keys: Vec<String> = found.values().map(Item::key).collect();
        format!(" (slices made before it was closed: {})", keys.join(", "))
    };
    Error::FailedPrecondition(format!(
        "item {} is closed: its slices would be open items under a closed parent, which trackers refuse (Redmine: an open issue cannot be attached to a closed parent task); reopen it in its tracker to split it{earlier}",
        quote(key)
    ))
}

/// One slice of a plan about to be applied.
#[derive(Debug, Clone, PartialEq)]
pub struct DraftSlice {
    /// The slice's place in the plan, from 1.
    pub n: usize,
    pub title: String,
    /// The slice note ([`split::slice_note`]), the whole body of a slice.
    pub body: String,
    pub size: f64,
    /// The links the slice gets once every slice exists.
    pub links: Vec<SliceLink>,
    /// The item made for this slice by an earlier application that stopped
    /// partway (a tracker failed), if any.
    pub existing: Option<Item>,
}

/// A plan of an item, ready to be applied: its slices in order.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitDraft {
    /// The item being split.
    pub item: Item,
    pub kind: PlanKind,
    pub slices: Vec<DraftSlice>,
}

/// Where applying a plan starts from.
#[derive(Debug, Clone, PartialEq)]
pub enum SplitStart {
    /// The plan was applied before: its slices, nothing to create.
    Done(AppliedSplit),
    /// Slices to create (those without an `existing` item).
    Draft(Box<SplitDraft>),
}

/// A slice an earlier application made, found by the note in its body.
struct Found {
    item: Item,
    note: split::Note,
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
    ///   item as parent, the plan's title, the slice note as body and the
    ///   slice size as estimate;
    /// - by hypothesis, slice n gets the link to hypothesis n with its
    ///   contribution; by task, every slice gets every link with its
    ///   contribution divided by the number of slices;
    /// - the item's own links are removed.
    ///
    /// The carried links are API links (sync's link rules never remove
    /// them). Applying the same plan again finds the slices by their notes
    /// and returns them with `created` 0. A plan by child, a plan that does
    /// not apply, an item split before by the other plan or partly into a
    /// tracker, a closed item (unless the plan was applied before it closed:
    /// that answers its slices), or a slice key taken by another item are
    /// FAILED_PRECONDITION.
    pub async fn apply_split(&self, key: &str, kind: PlanKind) -> Result<AppliedSplit> {
        let _w = self.write_lock().await?;
        let draft = match self.start_split(key, kind).await? {
            SplitStart::Done(applied) => return Ok(applied),
            SplitStart::Draft(d) => *d,
        };
        let partial: Vec<String> = draft
            .slices
            .iter()
            .filter_map(|s| s.existing.as_ref().map(Item::key))
            .collect();
        if !partial.is_empty() {
            return Err(Error::FailedPrecondition(format!(
                "item {} was partly split by {} in its tracker ({}); apply the plan again with write-back to create the rest there",
                quote(key),
                kind.as_str(),
                partial.join(", ")
            )));
        }
        let now = Utc::now();
        let item = &draft.item;
        let mut items = Vec::with_capacity(draft.slices.len());
        {
            let ix = self.read();
            for slice in &draft.slices {
                let external_id = split::slice_external_id(&item.external_id, slice.n);
                if external_id.len() > MAX_EXTERNAL_ID {
                    return Err(Error::FailedPrecondition(format!(
                        "the slice ids of item {} would be longer than {MAX_EXTERNAL_ID} characters",
                        quote(key)
                    )));
                }
                let slice_key = item_key(&item.source_id, &external_id);
                if ix.item(&slice_key).is_some() {
                    return Err(Error::FailedPrecondition(format!(
                        "item {} already exists and is not a slice of {}",
                        quote(&slice_key),
                        quote(key)
                    )));
                }
                items.push(Item {
                    source_id: item.source_id.clone(),
                    external_id,
                    title: slice.title.clone(),
                    body: slice.body.clone(),
                    url: String::new(),
                    state: ItemState::Open,
                    labels: Vec::new(),
                    estimate: Some(slice.size),
                    parent_key: key.to_string(),
                    create_time: Some(now),
                    update_time: Some(now),
                    close_time: None,
                    votes: None,
                });
            }
        }
        self.finish_split_locked(&draft, items).await
    }

    /// The first step of applying a plan, for callers that create the slices
    /// elsewhere (in a tracker): the slices found from an earlier application
    /// of the same plan, complete ([`SplitStart::Done`]) or partial, and the
    /// plan's slices. Writes nothing. The errors of
    /// [`apply_split`](Self::apply_split), except for slice keys.
    pub async fn start_split(&self, key: &str, kind: PlanKind) -> Result<SplitStart> {
        let item = self.stored_item(key).await?;
        if kind == PlanKind::ByChild {
            return Err(Error::FailedPrecondition(format!(
                "the children of item {} already exist as items; only plans by hypothesis or by task can be applied",
                quote(key)
            )));
        }
        let found = self.found_slices(&item).await?;
        if let Some(other) = found.iter().find(|f| f.note.kind != kind) {
            let keys: Vec<String> = found
                .iter()
                .filter(|f| f.note.kind == other.note.kind)
                .map(|f| f.item.key())
                .collect();
            return Err(Error::FailedPrecondition(format!(
                "item {} was already split by {} into {}",
                quote(key),
                other.note.kind.as_str(),
                keys.join(", ")
            )));
        }
        let totals: BTreeSet<usize> = found.iter().map(|f| f.note.total).collect();
        // Slice n's item; the first by key when a tracker holds copies.
        let mut by_n: BTreeMap<usize, Item> = BTreeMap::new();
        for f in found {
            by_n.entry(f.note.n).or_insert(f.item);
        }
        if let [total] = totals.iter().copied().collect::<Vec<_>>()[..]
            && (1..=total).all(|n| by_n.contains_key(&n))
        {
            return Ok(SplitStart::Done(AppliedSplit {
                items: by_n.into_values().collect(),
                created: Vec::new(),
            }));
        }

        if item.state == ItemState::Closed {
            return Err(closed_item(key, &by_n));
        }
        let ix = self.read();
        let subject = subject(&ix, &item)?;
        let plan = split::plan(&subject, kind).ok_or_else(|| no_plan(key, kind, &subject))?;
        let total = plan.slices.len();
        if totals.iter().any(|t| *t != total) {
            let keys: Vec<String> = by_n.values().map(Item::key).collect();
            return Err(Error::FailedPrecondition(format!(
                "item {} was partly split by {} into {}, and its plan has changed since: it now has {total} slices",
                quote(key),
                kind.as_str(),
                keys.join(", ")
            )));
        }
        let slices = plan
            .slices
            .iter()
            .enumerate()
            .map(|(i, slice)| DraftSlice {
                n: i + 1,
                title: slice.title.clone(),
                body: split::slice_note(key, kind, i + 1, total),
                size: slice.size,
                links: slice.links.clone(),
                existing: by_n.remove(&(i + 1)),
            })
            .collect();
        Ok(SplitStart::Draft(Box::new(SplitDraft {
            item,
            kind,
            slices,
        })))
    }

    /// Stores slices created in a tracker before the rest of their plan
    /// could be, without links (the item keeps its own until every slice
    /// exists), so that applying the plan again finds them and creates only
    /// the others.
    pub async fn store_partial_split(&self, slices: &[Item]) -> Result<()> {
        let _w = self.write_lock().await?;
        self.store
            .upsert_items(slices.to_vec(), &[], &[], None)
            .await?;
        let mut ix = self.write_index();
        for it in slices {
            ix.put_item(it.key(), facts_of(it));
        }
        Ok(())
    }

    /// The last step of applying a plan: stores `items`, one per slice of
    /// `draft` in slice order, gives each the links of its slice and removes
    /// the split item's own, in one transaction. `created` is how many of
    /// them this application created: those of the slices without an
    /// `existing` item.
    pub async fn finish_split(&self, draft: &SplitDraft, items: Vec<Item>) -> Result<AppliedSplit> {
        let _w = self.write_lock().await?;
        self.finish_split_locked(draft, items).await
    }

    async fn finish_split_locked(
        &self,
        draft: &SplitDraft,
        items: Vec<Item>,
    ) -> Result<AppliedSplit> {
        let created: Vec<String> = draft
            .slices
            .iter()
            .zip(&items)
            .filter(|(slice, _)| slice.existing.is_none())
            .map(|(_, it)| it.key())
            .collect();
        let key = draft.item.key();
        let kind = draft.kind;
        let now = Utc::now();
        let (remove, put) = {
            let ix = self.read();
            let originals: BTreeMap<&str, crate::index::LinkRef<'_>> = ix
                .links_of_item(&key)
                .map(|l| (l.hypothesis_id, l))
                .collect();
            let mut put = Vec::new();
            for (slice, it) in draft.slices.iter().zip(&items) {
                for l in &slice.links {
                    let carried = format!("carried over from {key}, split by {}", kind.as_str());
                    let rationale = match originals.get(l.hypothesis_id.as_str()) {
                        Some(o) if !o.rationale.is_empty() => format!("{carried}: {}", o.rationale),
                        _ => carried,
                    };
                    put.push(Link {
                        item_key: it.key(),
                        hypothesis_id: l.hypothesis_id.to_string(),
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
                .map(|h| (key.clone(), h.to_string()))
                .collect();
            (remove, put)
        };
        // Every hypothesis the item's value moved away from: its own links
        // and those its slices now carry.
        let moved: BTreeSet<String> = remove
            .iter()
            .map(|(_, h)| h.clone())
            .chain(put.iter().map(|l| l.hypothesis_id.clone()))
            .collect();
        let record = ItemSplit {
            item_key: key.clone(),
            plan_kind: kind.as_str().to_string(),
            hypothesis_ids: moved.into_iter().collect(),
            create_time: now,
        };
        self.store
            .apply_split(items.clone(), &remove, &put, &record)
            .await?;
        self.splits.write().insert(key.clone(), record);
        let mut ix = self.write_index();
        for it in &items {
            ix.put_item(it.key(), facts_of(it));
        }
        ix.apply_links(&remove, put);
        Ok(AppliedSplit { created, items })
    }

    /// The slices an earlier application of a plan of `item` made: items of
    /// its source, other than itself, whose body holds a note of its split.
    async fn found_slices(&self, item: &Item) -> Result<Vec<Found>> {
        let key = item.key();
        let candidates = self
            .store
            .items_with_body_text(&item.source_id, &split::note_prefix(&key))
            .await?;
        // A removed slice (deleted in its tracker) is not part of the plan
        // any more: a retry makes it again rather than bring back a row the
        // store keeps only for its history.
        let ix = self.read();
        Ok(candidates
            .into_iter()
            .filter(|c| c.key() != key && ix.removal(&c.key()).is_none())
            .filter_map(|c| {
                let note = split::find_note(&c.body, &key)?;
                Some(Found { item: c, note })
            })
            .collect())
    }

    /// One item from the store (its body lives only there).
    async fn stored_item(&self, key: &str) -> Result<Item> {
        self.get_items(&[key.to_string()])
            .await?
            .pop()
            .ok_or_else(|| not_found("item", key))
    }
}
