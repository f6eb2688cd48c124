//! Link storage: how the index keeps a link (in its item's entry, with
//! shared strings, and in its hypothesis' contribution map), how it lends
//! one out ([`LinkRef`]), and the writes that change links and
//! contribution totals without rescoring anything (the callers work out
//! what a change reaches, see `reach.rs`).

use std::collections::BTreeSet;
use std::sync::Arc;

use super::strings::Strings;
use super::{ScoreIndex, Slot};
use crate::domain::{Link, LinkOrigin, Time};

/// One item's link to a hypothesis, as the hypothesis' contribution map
/// keeps it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Contribution {
    pub(super) slot: Slot,
    pub(super) amount: f64,
}

/// A link as the index keeps it. Its item is the entry it sits in, and its
/// hypothesis id and rationale are shared with every link that has the same
/// (the rule links' rationale is one sentence): at 100,000 items that is a
/// fifth of the index's memory, not repeated per link.
#[derive(Debug, Clone)]
pub(super) struct Linked {
    pub(super) hypothesis_id: Arc<str>,
    pub(super) contribution: f64,
    origin: LinkOrigin,
    rationale: Arc<str>,
    create_time: Time,
    update_time: Time,
}

impl Linked {
    pub(super) fn new(link: &Link, strings: &mut Strings) -> Self {
        Linked {
            hypothesis_id: strings.get(&link.hypothesis_id),
            contribution: link.contribution,
            origin: link.origin,
            rationale: strings.get(&link.rationale),
            create_time: link.create_time,
            update_time: link.update_time,
        }
    }

    pub(super) fn view<'a>(&'a self, item_key: &'a str) -> LinkRef<'a> {
        LinkRef {
            item_key,
            hypothesis_id: &self.hypothesis_id,
            contribution: self.contribution,
            origin: self.origin,
            rationale: &self.rationale,
            create_time: self.create_time,
            update_time: self.update_time,
        }
    }
}

/// A link in the index, borrowed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkRef<'a> {
    pub item_key: &'a str,
    pub hypothesis_id: &'a str,
    pub contribution: f64,
    pub origin: LinkOrigin,
    pub rationale: &'a str,
    pub create_time: Time,
    pub update_time: Time,
}

impl LinkRef<'_> {
    pub fn to_link(&self) -> Link {
        Link {
            item_key: self.item_key.to_string(),
            hypothesis_id: self.hypothesis_id.to_string(),
            contribution: self.contribution,
            origin: self.origin,
            rationale: self.rationale.to_string(),
            create_time: self.create_time,
            update_time: self.update_time,
        }
    }
}

impl ScoreIndex {
    /// Puts a link into the entry and contribution maps (no rescoring).
    pub(super) fn insert_link(&mut self, link: Link) {
        let slot = match self.entries.slot(&link.item_key) {
            Some(slot) => slot,
            None => self.entries.add(Arc::from(link.item_key.as_str())),
        };
        let Some(e) = self.entries.at_mut(slot) else {
            return; // added just above
        };
        self.contributions
            .entry(link.hypothesis_id.clone())
            .or_default()
            .insert(
                e.key.clone(),
                Contribution {
                    slot,
                    amount: link.contribution,
                },
            );
        let linked = Linked::new(&link, &mut self.strings);
        match e.link_position(&link.hypothesis_id) {
            Ok(i) => e.links[i] = linked,
            Err(i) => {
                // Items have a link or two: grow by one, not to four.
                e.links.reserve_exact(1);
                e.links.insert(i, linked);
            }
        }
    }

    /// Takes a link out of the entry and contribution maps (no rescoring).
    pub(super) fn delete_link(&mut self, item_key: &str, hypothesis_id: &str) {
        if let Some(e) = self.entries.get_mut(item_key)
            && let Ok(i) = e.link_position(hypothesis_id)
        {
            e.links.remove(i);
        }
        if let Some(m) = self.contributions.get_mut(hypothesis_id) {
            m.remove(item_key);
        }
        self.drop_if_empty(item_key);
    }

    /// Forgets an entry that is neither an item nor holds links.
    pub(super) fn drop_if_empty(&mut self, key: &str) {
        if self
            .entries
            .get(key)
            .is_some_and(|e| e.facts.is_none() && e.links.is_empty())
        {
            self.entries.remove(key);
        }
    }

    /// Applies link changes to the maps; returns the hypotheses and the
    /// items they touch.
    pub(super) fn change_links(
        &mut self,
        remove: &[(String, String)],
        put: Vec<Link>,
    ) -> (BTreeSet<String>, Vec<Slot>) {
        let mut hyps: BTreeSet<String> = BTreeSet::new();
        let mut items: Vec<Slot> = Vec::with_capacity(remove.len() + put.len());
        for (item, hyp) in remove {
            items.extend(self.entries.slot(item));
            self.delete_link(item, hyp);
            hyps.insert(hyp.clone());
        }
        for link in put {
            hyps.insert(link.hypothesis_id.clone());
            let item = link.item_key.clone();
            self.insert_link(link);
            items.extend(self.entries.slot(&item));
        }
        (hyps, items)
    }

    /// Sums a hypothesis' contributions again (in item-key order) and
    /// returns the new total.
    pub(super) fn refresh_contribution_total(&mut self, hypothesis_id: &str) -> f64 {
        let total = self
            .contributions
            .get(hypothesis_id)
            .into_iter()
            .flat_map(|m| m.values())
            .fold(0.0, |acc, c| acc + c.amount);
        self.contribution_totals
            .insert(hypothesis_id.to_string(), total);
        total
    }
}
