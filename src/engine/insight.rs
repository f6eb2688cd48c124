//! Insights: who asked for what (issue 21). Recorded in one store
//! transaction per call, then kept in memory only as far as demand needs
//! them (customer, segment, importance, targets), so that a ranking page
//! can show each item's demand without SQL; the texts stay in the store.
//!
//! Insights stand beside the score and never enter it: nothing here
//! touches the index's scores, and a property test (`tests/it/insights.rs`)
//! ranks before and after recording them.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::Utc;

use super::{Engine, Error, FieldViolation, Result, quote};
use crate::domain::{Demand, Importance, Insight, MAX_INSIGHTS_PER_CALL};
use crate::index::ScoreIndex;

/// The key an insight is kept and paged by: `SOURCE/EXTERNAL_ID` (a
/// source is an id, so it holds no `/`, and the key orders as the pair).
pub fn insight_key(source: &str, external_id: &str) -> String {
    format!("{source}/{external_id}")
}

/// What demand needs of one insight.
#[derive(Debug, Clone, PartialEq)]
struct Facts {
    customer: String,
    segment_id: String,
    importance: Option<Importance>,
    item_keys: Vec<String>,
    hypothesis_ids: Vec<String>,
}

impl Facts {
    fn of(i: &Insight) -> Facts {
        Facts {
            customer: i.customer.clone(),
            segment_id: i.segment_id.clone(),
            importance: i.importance,
            item_keys: i.item_keys.clone(),
            hypothesis_ids: i.hypothesis_ids.clone(),
        }
    }
}

/// Every insight's facts, with the reverse maps a listing and demand use.
#[derive(Debug, Default)]
pub(super) struct InsightBook {
    facts: BTreeMap<String, Facts>,
    by_item: HashMap<String, BTreeSet<String>>,
    by_hypothesis: HashMap<String, BTreeSet<String>>,
}

impl InsightBook {
    pub(super) fn new(insights: &[Insight]) -> InsightBook {
        let mut book = InsightBook::default();
        for i in insights {
            book.put(i);
        }
        book
    }

    fn put(&mut self, i: &Insight) {
        let key = insight_key(&i.source, &i.external_id);
        self.remove(&key);
        let f = Facts::of(i);
        for k in &f.item_keys {
            self.by_item
                .entry(k.clone())
                .or_default()
                .insert(key.clone());
        }
        for h in &f.hypothesis_ids {
            self.by_hypothesis
                .entry(h.clone())
                .or_default()
                .insert(key.clone());
        }
        self.facts.insert(key, f);
    }

    fn remove(&mut self, key: &str) {
        let Some(old) = self.facts.remove(key) else {
            return;
        };
        for (map, targets) in [
            (&mut self.by_item, &old.item_keys),
            (&mut self.by_hypothesis, &old.hypothesis_ids),
        ] {
            for t in targets {
                if let Some(set) = map.get_mut(t) {
                    set.remove(key);
                    if set.is_empty() {
                        map.remove(t);
                    }
                }
            }
        }
    }

    /// The demand behind an item (votes left to the caller).
    fn demand(&self, item_key: &str) -> Demand {
        let mut d = Demand::default();
        let Some(keys) = self.by_item.get(item_key) else {
            return d;
        };
        let mut customers = BTreeSet::new();
        let mut segments = BTreeSet::new();
        for f in keys.iter().filter_map(|k| self.facts.get(k)) {
            d.insights += 1;
            customers.insert(f.customer.as_str());
            if !f.segment_id.is_empty() {
                segments.insert(f.segment_id.as_str());
            }
            d.highest_importance = d.highest_importance.max(f.importance);
        }
        d.customers = u32::try_from(customers.len()).unwrap_or(u32::MAX);
        d.segments = u32::try_from(segments.len()).unwrap_or(u32::MAX);
        d
    }

    fn has_item(&self, item_key: &str) -> bool {
        self.by_item.contains_key(item_key)
    }

    fn has_hypothesis(&self, hypothesis_id: &str) -> bool {
        self.by_hypothesis.contains_key(hypothesis_id)
    }
}

/// Which insights a listing takes; every filter given must hold.
#[derive(Debug, Clone, Default)]
pub struct InsightFilter {
    pub item_key: Option<String>,
    pub hypothesis_id: Option<String>,
    pub customer: Option<String>,
    pub segment_id: Option<String>,
}

impl InsightFilter {
    /// Whether a stored insight matches: checked again on the rows read
    /// from the store, which a write may have changed since the keys were
    /// chosen from memory.
    pub fn matches(&self, i: &Insight) -> bool {
        self.item_key
            .as_ref()
            .is_none_or(|k| i.item_keys.contains(k))
            && self
                .hypothesis_id
                .as_ref()
                .is_none_or(|h| i.hypothesis_ids.contains(h))
            && self.customer.as_ref().is_none_or(|c| &i.customer == c)
            && self.segment_id.as_ref().is_none_or(|s| &i.segment_id == s)
    }
}

/// Counts of a `RecordInsights` call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordCounts {
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
}

impl Engine {
    /// Records insights all or none: each one's own problems and every
    /// item or hypothesis it names that does not exist are INVALID_ARGUMENT
    /// naming `insights[i].field`, and then nothing is written. An insight
    /// stored the same already is left as it is; a changed one replaces it.
    /// `wire` holds what the caller found reading each insight (by index,
    /// already named `insights[i].field`), reported first, in one answer
    /// with the rest.
    pub async fn record_insights(
        &self,
        insights: Vec<Insight>,
        wire: Vec<Vec<FieldViolation>>,
    ) -> Result<RecordCounts> {
        if insights.is_empty() {
            return Err(Error::invalid("insights", "at least one insight"));
        }
        if insights.len() > MAX_INSIGHTS_PER_CALL {
            return Err(Error::invalid(
                "insights",
                format!("at most {MAX_INSIGHTS_PER_CALL} per call"),
            ));
        }
        let _w = self.write_lock().await?;
        let mut violations = Vec::new();
        {
            let ix = self.read();
            let customers = self.customers.read();
            let mut seen = BTreeSet::new();
            let mut wire = wire.into_iter();
            for (n, i) in insights.iter().enumerate() {
                let at = |f: &str| format!("insights[{n}].{f}");
                let read = wire.next().unwrap_or_default();
                let own = i.problems();
                let clean = own.is_empty() && read.is_empty();
                violations.extend(read);
                violations.extend(own.into_iter().map(|(f, d)| FieldViolation::new(at(&f), d)));
                if !seen.insert(insight_key(&i.source, &i.external_id)) {
                    violations.push(FieldViolation::new(
                        at("external_id"),
                        format!(
                            "{} from {} appears twice in this call",
                            quote(&i.external_id),
                            quote(&i.source)
                        ),
                    ));
                }
                if clean {
                    violations.extend(missing_targets(&ix, &customers, i, &at));
                }
            }
        }
        if !violations.is_empty() {
            return Err(Error::InvalidArgument(violations));
        }
        let keys: Vec<(String, String)> = insights.iter().map(Insight::key).collect();
        let stored: HashMap<(String, String), Insight> = self
            .store
            .get_insights(&keys)
            .await?
            .into_iter()
            .map(|i| (i.key(), i))
            .collect();
        let mut counts = RecordCounts::default();
        let mut write = Vec::new();
        for i in insights {
            match stored.get(&i.key()) {
                Some(old) if *old == i => counts.unchanged += 1,
                Some(_) => {
                    counts.updated += 1;
                    write.push(i);
                }
                None => {
                    counts.created += 1;
                    write.push(i);
                }
            }
        }
        if !write.is_empty() {
            self.store.record_insights(&write, Utc::now()).await?;
            let mut book = self.insights.write();
            for i in &write {
                book.put(i);
            }
            drop(book);
            self.changes.send_modify(|v| *v += 1);
        }
        Ok(counts)
    }

    /// Puts insights just stored (by a value model file) in memory.
    pub(super) fn put_insights_in_memory(&self, insights: &[Insight]) {
        if insights.is_empty() {
            return;
        }
        let mut book = self.insights.write();
        for i in insights {
            book.put(i);
        }
    }

    /// Every stored insight, by key: for `ExportValueModel` when asked.
    pub async fn all_insights(&self) -> Result<Vec<Insight>> {
        Ok(self.store.list_all_insights().await?)
    }

    /// Keys of the insights `filter` takes after `after`, in key order, at
    /// most `limit`.
    pub fn insight_keys(
        &self,
        filter: &InsightFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Vec<String> {
        use std::ops::Bound::{Excluded, Unbounded};
        let book = self.insights.read();
        // From the page's start on, not from the first key: listing every
        // page costs one pass, not one per page.
        let from = after.map_or(Unbounded, Excluded);
        let set = match (&filter.item_key, &filter.hypothesis_id) {
            (Some(i), _) => Some(book.by_item.get(i)),
            (None, Some(h)) => Some(book.by_hypothesis.get(h)),
            (None, None) => None,
        };
        let candidates: Box<dyn Iterator<Item = &String>> = match set {
            Some(Some(keys)) => Box::new(keys.range::<str, _>((from, Unbounded))),
            Some(None) => Box::new(std::iter::empty()),
            None => Box::new(
                book.facts
                    .range::<str, _>((from, Unbounded))
                    .map(|(k, _)| k),
            ),
        };
        candidates
            .filter(|k| {
                book.facts.get(*k).is_some_and(|f| {
                    filter
                        .item_key
                        .as_ref()
                        .is_none_or(|i| f.item_keys.contains(i))
                        && filter
                            .hypothesis_id
                            .as_ref()
                            .is_none_or(|h| f.hypothesis_ids.contains(h))
                        && filter.customer.as_ref().is_none_or(|c| &f.customer == c)
                        && filter
                            .segment_id
                            .as_ref()
                            .is_none_or(|s| &f.segment_id == s)
                })
            })
            .take(limit)
            .cloned()
            .collect()
    }

    /// The stored insights of these keys (as [`insight_key`] makes them),
    /// in the keys' order; a key forgotten meanwhile is left out.
    pub async fn get_insights(&self, keys: &[String]) -> Result<Vec<Insight>> {
        let pairs: Vec<(String, String)> = keys
            .iter()
            .filter_map(|k| k.split_once('/'))
            .map(|(s, e)| (s.to_string(), e.to_string()))
            .collect();
        Ok(self.store.get_insights(&pairs).await?)
    }

    /// Erases every insight of `customer` from the store, then from memory;
    /// answers how many.
    pub async fn forget_customer(&self, customer: &str) -> Result<u64> {
        if customer.is_empty() {
            return Err(Error::invalid("customer", "is required"));
        }
        let _w = self.write_lock().await?;
        let n = self.store.forget_customer(customer).await?;
        let mut book = self.insights.write();
        let gone: Vec<String> = book
            .facts
            .iter()
            .filter(|(_, f)| f.customer == customer)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &gone {
            book.remove(k);
        }
        drop(book);
        self.changes.send_modify(|v| *v += 1);
        Ok(n)
    }

    /// The demand behind each of these items (votes from the index).
    pub fn demand_of(&self, ix: &ScoreIndex, item_key: &str) -> Demand {
        let mut d = self.insights.read().demand(item_key);
        d.votes = ix.item(item_key).and_then(|f| f.votes);
        d
    }

    /// Whether an item is asked for by at least the configured number of
    /// distinct customers (`[insights] asked_for_customers`) yet linked to
    /// no hypothesis.
    pub fn asked_for_not_aligned(&self, ix: &ScoreIndex, item_key: &str, d: &Demand) -> bool {
        d.customers >= self.asked_for_customers && ix.links_of_item(item_key).next().is_none()
    }

    /// Whether a hypothesis has neither insights (on it, or on an item
    /// linked to it) nor observations of its metric behind it.
    pub fn hypothesis_unsupported(&self, ix: &ScoreIndex, hypothesis_id: &str) -> bool {
        let Some(h) = ix.hypothesis(hypothesis_id) else {
            return false;
        };
        let observed = ix
            .metric(&h.metric_id)
            .is_some_and(|m| m.observations.count > 0);
        if observed {
            return false;
        }
        let book = self.insights.read();
        !(book.has_hypothesis(hypothesis_id)
            || ix
                .item_keys_of_hypothesis(hypothesis_id)
                .any(|k| book.has_item(k)))
    }
}

/// The items and hypotheses an insight names that do not exist.
fn missing_targets(
    ix: &ScoreIndex,
    customers: &super::Customers,
    i: &Insight,
    at: &impl Fn(&str) -> String,
) -> Vec<FieldViolation> {
    let mut out = Vec::new();
    for (n, k) in i.item_keys.iter().enumerate() {
        if ix.item(k).is_none() && ix.removal(k).is_none() {
            out.push(FieldViolation::new(
                at(&format!("item_keys[{n}]")),
                format!("no item {}", quote(k)),
            ));
        }
    }
    for (n, h) in i.hypothesis_ids.iter().enumerate() {
        if ix.hypothesis(h).is_none() {
            out.push(FieldViolation::new(
                at(&format!("hypothesis_ids[{n}]")),
                format!("no hypothesis {}", quote(h)),
            ));
        }
    }
    out.extend(segment_and_outcome_problems(
        &|id| customers.has_segment(id),
        &|id| customers.has_outcome(id),
        i,
        &at("segment_id"),
        &|n| at(&format!("outcome_ids[{n}]")),
    ));
    out
}

/// What is wrong with the segment and desired outcomes an insight names:
/// each must exist (`has_segment`, `has_outcome`: in the model, or, for a
/// value model file, once the file is applied). `segment_field` and
/// `outcome_field` name the fields as the caller's input does (the API's
/// `segment_id`, a value model file's `segment`). RecordInsights and value
/// model files both ask here.
pub(super) fn segment_and_outcome_problems(
    has_segment: &dyn Fn(&str) -> bool,
    has_outcome: &dyn Fn(&str) -> bool,
    insight: &Insight,
    segment_field: &str,
    outcome_field: &dyn Fn(usize) -> String,
) -> Vec<FieldViolation> {
    let mut out = Vec::new();
    if !insight.segment_id.is_empty() && !has_segment(&insight.segment_id) {
        out.push(FieldViolation::new(
            segment_field,
            format!("no segment {}", quote(&insight.segment_id)),
        ));
    }
    for (n, o) in insight.outcome_ids.iter().enumerate() {
        if !has_outcome(o) {
            out.push(FieldViolation::new(
                outcome_field(n),
                format!("no desired outcome {}", quote(o)),
            ));
        }
    }
    out
}
