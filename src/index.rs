//! The in-memory score index: the whole value model except item bodies and
//! observation history, with every item's score and two orderings (by value
//! density and by value). `RankItems` reads only this.
//!
//! Every mutation works out which items its change can reach and rescores only
//! those: an observation reaches the items linked to the hypotheses that
//! measure its metric; a link reaches its item (or every item of its
//! hypothesis, when the contributions to it are over-subscribed); a goal
//! weight reaches the items of hypotheses under goals whose effective weight
//! moved. The index is rebuilt from the store at start-up.
//!
//! Shaped for 100,000s of items: an item's facts, links and ranking numbers
//! live in one entry, in a slab (`index/entries.rs`); the rankings and the
//! hypotheses' contribution maps name it by slot. A rescore computes value
//! and density only, and touches the rankings only when they moved; the
//! explained [`Score`] (terms with their ids) is built when first read and
//! kept until the next rescore, since few items are ever explained. Many
//! rescores look each hypothesis up once and read the entries in slot
//! order, on two threads when they are many; the rankings take their moves
//! in one batch. At start-up, [`IndexBuilder`] indexes rows while more are
//! read.
//!
//! A sync can [`defer`](ScoreIndex::defer_upsert) the rescoring its pages
//! cause until [`flush`](ScoreIndex::flush), so that a page linking to an
//! over-subscribed hypothesis does not rescore that hypothesis' every item
//! once per page.

mod entries;
mod ranking;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, OnceLock};

use rustc_hash::FxBuildHasher;

use entries::Entries;
use ranking::{Move, Ranking, after_label};

use crate::domain::{
    Goal, Hypothesis, ItemState, Link, LinkOrigin, Metric, ObservationSummary, Source, Time,
};
use crate::score::{self, Score, TermRef};

/// What the score and the ranking filters need of an item.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemFacts {
    pub source_id: String,
    pub title: String,
    pub state: ItemState,
    pub labels: Vec<String>,
    pub estimate: Option<f64>,
    /// Key of the parent item; empty when it has none. Lets splitting find
    /// an item's children without a SQL round trip.
    pub parent_key: String,
}

/// A metric with its latest observation and current gap.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricEntry {
    pub metric: Metric,
    pub observations: ObservationSummary,
    pub gap: f64,
}

impl MetricEntry {
    fn new(metric: Metric, observations: ObservationSummary) -> Self {
        let gap = score::gap(
            metric.baseline,
            metric.target,
            observations.latest.map(|(_, v)| v),
        );
        MetricEntry {
            metric,
            observations,
            gap,
        }
    }

    /// No observation within the metric's cadence, as of `now`.
    pub fn stale(&self, now: Time) -> bool {
        match (self.metric.cadence, self.observations.latest) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(cadence), Some((at, _))) => at + cadence < now,
        }
    }
}

/// A total order on f64 for the rankings (scores are never NaN).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OrdF64(pub f64);

impl Eq for OrdF64 {}
impl PartialOrd for OrdF64 {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for OrdF64 {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// Position in a ranking: higher number first, ties broken by item key.
pub type RankKey = (Reverse<OrdF64>, String);

/// Which number a ranking orders by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RankOrder {
    ValueDensity,
    Value,
}

/// A ranking request against the index.
#[derive(Debug, Clone, Default)]
pub struct RankQuery {
    pub source_id: Option<String>,
    pub label: Option<String>,
    pub include_closed: bool,
    /// Continue after this position (exclusive).
    pub after: Option<RankKey>,
    pub limit: usize,
}

/// The whole model as read from the store at start-up.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub sources: Vec<Source>,
    pub goals: Vec<Goal>,
    pub metrics: Vec<(Metric, ObservationSummary)>,
    pub hypotheses: Vec<Hypothesis>,
    pub items: Vec<(String, ItemFacts)>,
    pub links: Vec<Link>,
}

/// An item key, shared by the entry maps and the contribution maps.
type Key = Arc<str>;

/// Where an entry sits in the index's slab of entries.
type Slot = u32;

/// One item's link to a hypothesis, as the hypothesis' contribution map
/// keeps it.
#[derive(Debug, Clone, Copy)]
struct Contribution {
    slot: Slot,
    amount: f64,
}

/// A link as the index keeps it. Its item is the entry it sits in, and its
/// hypothesis id and rationale are shared with every link that has the same
/// (the rule links' rationale is one sentence): at 100,000 items that is a
/// fifth of the index's memory, not repeated per link.
#[derive(Debug, Clone)]
struct Linked {
    hypothesis_id: Arc<str>,
    contribution: f64,
    origin: LinkOrigin,
    rationale: Arc<str>,
    create_time: Time,
    update_time: Time,
}

impl Linked {
    fn new(link: &Link, strings: &mut Strings) -> Self {
        Linked {
            hypothesis_id: strings.get(&link.hypothesis_id),
            contribution: link.contribution,
            origin: link.origin,
            rationale: strings.get(&link.rationale),
            create_time: link.create_time,
            update_time: link.update_time,
        }
    }

    fn view<'a>(&'a self, item_key: &'a str) -> LinkRef<'a> {
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

/// One shared copy of each hypothesis id and rationale the links use.
#[derive(Debug, Default)]
struct Strings {
    set: HashSet<Arc<str>, FxBuildHasher>,
    /// Size after the last sweep of strings no link holds any more.
    swept_at: usize,
}

impl Strings {
    fn get(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.set.get(s) {
            return a.clone();
        }
        if self.set.len() >= 1024.max(2 * self.swept_at) {
            self.set.retain(|a| Arc::strong_count(a) > 1);
            self.swept_at = self.set.len();
        }
        let a: Arc<str> = Arc::from(s);
        self.set.insert(a.clone());
        a
    }
}
/// Everything the index holds about one item key. The fields a rescore
/// reads come first, so that they share the entry's first cache lines; the
/// facts it does not read (title, labels, ...) are boxed apart, which keeps
/// a rescore of many entries from streaming them through the cache.
#[derive(Debug)]
#[repr(C)]
struct Entry {
    /// The item's estimate, a copy of its facts' (see [`Entry::set_facts`]).
    estimate: Option<f64>,
    /// (value, value density) the item is ranked with; present once scored
    /// (exactly when `facts` is, outside a deferred upsert).
    ranked: Option<(f64, f64)>,
    /// Ordered by hypothesis id, as the score's terms are.
    links: Vec<Linked>,
    /// Orders as the key does among the entries' (see [`Entries`]); 0
    /// until labelled.
    label: u64,
    /// `None` for links whose item is not (or no longer) known.
    facts: Option<Box<ItemFacts>>,
    /// The explained score, built on first read after each rescore.
    explained: OnceLock<Box<Score>>,
    key: Key,
}

impl Entry {
    fn new(key: Key) -> Self {
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
    fn set_facts(&mut self, facts: ItemFacts) -> bool {
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

    fn link_position(&self, hypothesis_id: &str) -> Result<usize, usize> {
        self.links
            .binary_search_by(|l| (*l.hypothesis_id).cmp(hypothesis_id))
    }
}

/// What one hypothesis brings to each of its terms.
#[derive(Debug, Clone, Copy)]
struct HypothesisTerms<'a> {
    h: &'a Hypothesis,
    goal_weight: f64,
    gap: f64,
    confidence: f64,
    contribution_total: Option<f64>,
}

/// The model parts a rescore reads, borrowed apart from the entries it
/// writes.
struct Model<'a> {
    goal_weights: &'a HashMap<String, f64>,
    metrics: &'a BTreeMap<String, MetricEntry>,
    hypotheses: &'a BTreeMap<String, Hypothesis>,
    contribution_totals: &'a HashMap<String, f64>,
}

impl<'a> Model<'a> {
    fn terms_of(&self, h: &'a Hypothesis) -> HypothesisTerms<'a> {
        HypothesisTerms {
            h,
            goal_weight: self.goal_weights.get(&h.goal_id).copied().unwrap_or(0.0),
            gap: self.metrics.get(&h.metric_id).map_or(0.0, |m| m.gap),
            confidence: score::effective_confidence(h.status, h.confidence),
            contribution_total: self.contribution_totals.get(&h.id).copied(),
        }
    }

    fn lookup(&self, hypothesis_id: &str) -> Option<HypothesisTerms<'a>> {
        self.hypotheses.get(hypothesis_id).map(|h| self.terms_of(h))
    }

    /// Every hypothesis' terms, for rescoring many items, found by the id
    /// string the links share.
    fn link_terms(&self, strings: &Strings) -> LinkTerms<'a> {
        LinkTerms {
            by_address: self
                .hypotheses
                .values()
                .filter_map(|h| {
                    Some((
                        id_address(strings.set.get(h.id.as_str())?),
                        self.terms_of(h),
                    ))
                })
                .collect(),
            #[cfg(debug_assertions)]
            hypotheses: self.hypotheses,
        }
    }
}

/// Where a shared id string sits: the same for every link to one
/// hypothesis, since [`Strings`] hands out one copy of each.
fn id_address(id: &Arc<str>) -> usize {
    Arc::as_ptr(id).cast::<u8>() as usize
}

/// Every hypothesis' terms by the address of its id string as the links
/// hold it (see [`Strings`]): a rescore of many items hashes an address
/// per link instead of an id. A hypothesis no link names is left out.
struct LinkTerms<'a> {
    by_address: HashMap<usize, HypothesisTerms<'a>, FxBuildHasher>,
    #[cfg(debug_assertions)]
    hypotheses: &'a BTreeMap<String, Hypothesis>,
}

impl<'a> LinkTerms<'a> {
    fn get(&self, l: &Linked) -> Option<HypothesisTerms<'a>> {
        let terms = self.by_address.get(&id_address(&l.hypothesis_id)).copied();
        #[cfg(debug_assertions)]
        debug_assert_eq!(
            terms.map(|t| t.h.id.as_str()),
            self.hypotheses
                .get(&*l.hypothesis_id)
                .map(|h| h.id.as_str()),
            "a link's id string is the one the strings hold"
        );
        terms
    }
}

/// What rescoring one entry did.
enum Rescored {
    /// Not an item (links only): nothing scored.
    NotItem,
    /// Scored; value and density are what they were.
    Same,
    Moved(Moved),
}

/// How a rescore changed an item's numbers.
struct Moved {
    slot: Slot,
    label: u64,
    /// (value, value density) it was ranked with, if it was.
    old: Option<(f64, f64)>,
    value: f64,
    density: f64,
}

/// The term inputs of `e`'s links, in hypothesis-id order (`lookup` gives
/// each hypothesis' part; links to unknown hypotheses count for nothing).
fn term_inputs<'e, 'm: 'e>(
    e: &'e Entry,
    lookup: impl Fn(&Linked) -> Option<HypothesisTerms<'m>> + 'e,
) -> impl Iterator<Item = TermRef<'e>> {
    e.links.iter().filter_map(move |l| {
        let t = lookup(l)?;
        Some(TermRef {
            hypothesis_id: &t.h.id,
            goal_id: &t.h.goal_id,
            goal_weight: t.goal_weight,
            metric_id: &t.h.metric_id,
            gap: t.gap,
            expected_effect: t.h.expected_effect,
            confidence: t.confidence,
            contribution: l.contribution,
            contribution_total: t.contribution_total.unwrap_or(l.contribution),
        })
    })
}

/// Recomputes `e`'s value and density and forgets its explained score.
fn rescore_entry<'m>(
    slot: Slot,
    e: &mut Entry,
    lookup: impl Fn(&Linked) -> Option<HypothesisTerms<'m>>,
    default_size: f64,
) -> Rescored {
    if e.facts.is_none() {
        return Rescored::NotItem;
    }
    let (value, density) =
        score::value_and_density(e.estimate, default_size, term_inputs(e, lookup));
    e.explained.take();
    let old = e.ranked.replace((value, density));
    match old {
        Some((v, d)) if v.to_bits() == value.to_bits() && d.to_bits() == density.to_bits() => {
            Rescored::Same
        }
        _ => Rescored::Moved(Moved {
            slot,
            label: e.label,
            old,
            value,
            density,
        }),
    }
}

/// Runs `a` here and `b` on a second thread at the same time: for the few
/// changes that reach every item, on a machine with a core to spare. If no
/// thread can be had, `b` runs here after `a`.
fn both<A, B: Send>(a: impl FnOnce() -> A, b: impl FnOnce() -> B + Send) -> (A, B) {
    let slot = std::sync::Mutex::new(Some(b));
    let run_b = || {
        let b = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
        b.map(|b| b())
    };
    std::thread::scope(|s| {
        let other = std::thread::Builder::new()
            .name("plumbline-index".into())
            .spawn_scoped(s, run_b);
        let ra = a();
        let rb = match other {
            Ok(h) => h
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Err(_) => None,
        };
        let rb = rb
            .or_else(run_b)
            .unwrap_or_else(|| unreachable!("`b` runs on the other thread or here"));
        (ra, rb)
    })
}

/// Above this many entries a rescore of all of them is split over two
/// threads. Measured at 100,000 items on two cores: a tenth of them
/// rescore faster on one thread (the second costs a thread start and
/// shares the memory bandwidth), all of them faster on two. Tests use a
/// small one, so that their products take both paths.
const PARALLEL_MIN: usize = if cfg!(test) { 4096 } else { 16_384 };

/// Entries a rescore reads ahead of scoring them.
const READ_AHEAD: usize = 64;

/// Rescores `entries`; returns how many were items and how the numbers of
/// those that moved changed.
fn rescore_entries(
    mut entries: Vec<(Slot, &mut Entry)>,
    all: &LinkTerms<'_>,
    default_size: f64,
) -> (u64, Vec<Moved>) {
    let run = |part: &mut [(Slot, &mut Entry)], mut moved: Vec<Moved>| {
        let mut items = 0;
        for chunk in part.chunks_mut(READ_AHEAD) {
            // Entries far apart each miss the cache: read the chunk's
            // entries and links first, loads that overlap one another,
            // instead of one after the other in the loop below.
            for (_, e) in chunk.iter() {
                std::hint::black_box((e.ranked, e.links.first().map(|l| l.contribution)));
            }
            for (slot, e) in chunk {
                match rescore_entry(*slot, e, |l| all.get(l), default_size) {
                    Rescored::NotItem => {}
                    Rescored::Same => items += 1,
                    Rescored::Moved(m) => {
                        items += 1;
                        moved.push(m);
                    }
                }
            }
        }
        (items, moved)
    };
    // Room for every entry to move, so that neither vector grows (a copy
    // each time) and the halves join without one.
    let moved = Vec::with_capacity(entries.len());
    if entries.len() < PARALLEL_MIN {
        return run(&mut entries, moved);
    }
    let mid = entries.len() / 2;
    let (a, b) = entries.split_at_mut(mid);
    let rest = Vec::with_capacity(b.len());
    let ((n1, mut m1), (n2, m2)) = both(|| run(a, moved), || run(b, rest));
    m1.extend(m2);
    (n1 + n2, m1)
}

/// Above this many moved items the two rankings are updated on two
/// threads.
const PARALLEL_MOVES: usize = 4096;

/// The two rankings, updated together.
struct Rankings<'a> {
    by_density: &'a mut Ranking,
    by_value: &'a mut Ranking,
}

impl Rankings<'_> {
    /// Moves each item to its new place in both rankings.
    fn apply(&mut self, moved: Vec<Moved>) {
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

/// Builds an index from the stored model while it is being read, so that
/// reading rows and indexing them overlap at start-up: items and links may
/// come in any order and in chunks, and [`finish`](Self::finish) scores
/// every item once. The result equals [`ScoreIndex::from_snapshot`] of the
/// same rows (later rows win, as in a snapshot).
#[derive(Debug)]
pub struct IndexBuilder {
    ix: ScoreIndex,
}

impl IndexBuilder {
    pub fn new(default_size: f64) -> Self {
        IndexBuilder {
            ix: ScoreIndex::new(default_size),
        }
    }

    /// Sources, goals, metrics with their observations, and hypotheses.
    pub fn model(
        &mut self,
        sources: Vec<Source>,
        goals: Vec<Goal>,
        metrics: Vec<(Metric, ObservationSummary)>,
        hypotheses: Vec<Hypothesis>,
    ) {
        let ix = &mut self.ix;
        ix.sources = sources.into_iter().map(|s| (s.id.clone(), s)).collect();
        ix.goals = goals.into_iter().map(|g| (g.id.clone(), g)).collect();
        ix.goal_weights = score::effective_goal_weights(ix.goals.values());
        ix.metrics = metrics
            .into_iter()
            .map(|(m, o)| (m.id.clone(), MetricEntry::new(m, o)))
            .collect();
        ix.hypotheses = hypotheses.into_iter().map(|h| (h.id.clone(), h)).collect();
    }

    /// Room for `n` more entries.
    pub fn reserve(&mut self, n: usize) {
        self.ix.entries.reserve(n);
    }

    pub fn items(&mut self, items: impl IntoIterator<Item = (String, ItemFacts)>) {
        let ix = &mut self.ix;
        for (key, facts) in items {
            match ix.entries.get_mut(key.as_str()) {
                Some(e) => {
                    if e.set_facts(facts) {
                        ix.item_count += 1;
                    }
                }
                None => {
                    let slot = ix.entries.add(Arc::from(key));
                    if let Some(e) = ix.entries.at_mut(slot)
                        && e.set_facts(facts)
                    {
                        ix.item_count += 1;
                    }
                }
            }
        }
    }

    /// Links, kept in arrival order until [`finish`](Self::finish) sorts
    /// each item's.
    pub fn links(&mut self, links: impl IntoIterator<Item = Link>) {
        let ix = &mut self.ix;
        for link in links {
            let linked = Linked::new(&link, &mut ix.strings);
            let key = link.item_key;
            match ix.entries.get_mut(key.as_str()) {
                Some(e) => e.links.push(linked),
                None => {
                    let slot = ix.entries.add(Arc::from(key));
                    if let Some(e) = ix.entries.at_mut(slot) {
                        e.links.push(linked);
                    }
                }
            }
        }
    }

    /// Sorts the links, totals the contributions, scores every item once
    /// and builds the rankings.
    pub fn finish(self) -> ScoreIndex {
        let mut ix = self.ix;
        // Each item's links by hypothesis, and each hypothesis'
        // contributions built in one sorted pass.
        let mut per_hypothesis: HashMap<String, Vec<(Key, Contribution)>, FxBuildHasher> =
            HashMap::default();
        for (slot, e) in ix.entries.with_slots_mut() {
            e.links.shrink_to_fit();
            if e.links.len() > 1 {
                // Stable, after a reverse: of two links to one hypothesis
                // the later one wins, as `insert_link` would have it.
                e.links.reverse();
                e.links
                    .sort_by(|a, b| a.hypothesis_id.cmp(&b.hypothesis_id));
                e.links.dedup_by(|a, b| a.hypothesis_id == b.hypothesis_id);
            }
            for l in &e.links {
                let pair = (
                    e.key.clone(),
                    Contribution {
                        slot,
                        amount: l.contribution,
                    },
                );
                match per_hypothesis.get_mut(&*l.hypothesis_id) {
                    Some(v) => v.push(pair),
                    None => {
                        per_hypothesis.insert(l.hypothesis_id.to_string(), vec![pair]);
                    }
                }
            }
        }
        for (h, pairs) in per_hypothesis {
            ix.contributions
                .insert(h.clone(), pairs.into_iter().collect());
            ix.refresh_contribution_total(&h);
        }
        // Label the keys, score everything, then build the rankings in
        // one sorted pass each.
        ix.entries.label_new();
        let model = Model {
            goal_weights: &ix.goal_weights,
            metrics: &ix.metrics,
            hypotheses: &ix.hypotheses,
            contribution_totals: &ix.contribution_totals,
        };
        let all = model.link_terms(&ix.strings);
        let (items, moved) =
            rescore_entries(ix.entries.with_slots_mut().collect(), &all, ix.default_size);
        ix.rescored += items;
        Rankings {
            by_density: &mut ix.by_density,
            by_value: &mut ix.by_value,
        }
        .apply(moved);
        ix
    }
}

/// The in-memory model and scores.
#[derive(Debug)]
pub struct ScoreIndex {
    default_size: f64,
    sources: BTreeMap<String, Source>,
    goals: BTreeMap<String, Goal>,
    goal_weights: HashMap<String, f64>,
    metrics: BTreeMap<String, MetricEntry>,
    hypotheses: BTreeMap<String, Hypothesis>,
    /// item key -> facts, links and score
    entries: Entries,
    /// Entries that are items (have facts).
    item_count: usize,
    /// hypothesis id -> item key -> contribution, in item-key order
    contributions: HashMap<String, BTreeMap<Key, Contribution>>,
    /// hypothesis id -> sum of contributions, added in item-key order
    contribution_totals: HashMap<String, f64>,
    by_density: Ranking,
    by_value: Ranking,
    /// Deferred by `defer_upsert`: hypotheses whose links changed and items
    /// whose facts or links did, not yet rescored.
    deferred_hypotheses: BTreeSet<String>,
    /// Slots (some maybe freed or reused since: rescoring them is harmless).
    deferred_items: Vec<Slot>,
    /// Shared hypothesis ids and rationales of the links.
    strings: Strings,
    rescored: u64,
}

impl ScoreIndex {
    /// An empty index; unestimated items count with `default_size` (> 0).
    pub fn new(default_size: f64) -> Self {
        ScoreIndex {
            default_size,
            sources: BTreeMap::new(),
            goals: BTreeMap::new(),
            goal_weights: HashMap::new(),
            metrics: BTreeMap::new(),
            hypotheses: BTreeMap::new(),
            entries: Entries::default(),
            item_count: 0,
            contributions: HashMap::new(),
            contribution_totals: HashMap::new(),
            by_density: Ranking::default(),
            by_value: Ranking::default(),
            deferred_hypotheses: BTreeSet::new(),
            deferred_items: Vec::new(),
            strings: Strings::default(),
            rescored: 0,
        }
    }

    /// Builds the index from a snapshot, scoring every item once.
    pub fn from_snapshot(default_size: f64, snap: Snapshot) -> Self {
        let mut b = IndexBuilder::new(default_size);
        b.model(snap.sources, snap.goals, snap.metrics, snap.hypotheses);
        b.items(snap.items);
        b.links(snap.links);
        b.finish()
    }

    // ----- reads -----

    /// How many item scores have been computed since start; lets tests see
    /// that a write rescored only what it reaches.
    pub fn rescored_count(&self) -> u64 {
        self.rescored
    }

    pub fn source(&self, id: &str) -> Option<&Source> {
        self.sources.get(id)
    }

    pub fn sources(&self) -> impl Iterator<Item = &Source> {
        self.sources.values()
    }

    pub fn goal(&self, id: &str) -> Option<&Goal> {
        self.goals.get(id)
    }

    pub fn goals(&self) -> impl Iterator<Item = &Goal> {
        self.goals.values()
    }

    pub fn goal_weight(&self, id: &str) -> f64 {
        self.goal_weights.get(id).copied().unwrap_or(0.0)
    }

    pub fn metric(&self, id: &str) -> Option<&MetricEntry> {
        self.metrics.get(id)
    }

    pub fn metrics(&self) -> impl Iterator<Item = &MetricEntry> {
        self.metrics.values()
    }

    pub fn hypothesis(&self, id: &str) -> Option<&Hypothesis> {
        self.hypotheses.get(id)
    }

    pub fn hypotheses(&self) -> impl Iterator<Item = &Hypothesis> {
        self.hypotheses.values()
    }

    /// goal weight x gap x expected effect x effective confidence.
    pub fn hypothesis_value(&self, h: &Hypothesis) -> f64 {
        score::hypothesis_value(
            self.goal_weight(&h.goal_id),
            self.metrics.get(&h.metric_id).map_or(0.0, |m| m.gap),
            h.expected_effect,
            score::effective_confidence(h.status, h.confidence),
        )
    }

    pub fn item(&self, key: &str) -> Option<&ItemFacts> {
        self.entries.get(key)?.facts.as_deref()
    }

    pub fn item_count(&self) -> usize {
        self.item_count
    }

    /// The known items, in no particular order.
    fn items(&self) -> impl Iterator<Item = (&str, &ItemFacts)> {
        self.entries
            .values()
            .filter_map(|e| Some((&*e.key, e.facts.as_deref()?)))
    }

    /// Keys of the items whose parent is `parent_key` (itself excluded),
    /// sorted. A scan: children are asked for one item at a time.
    pub fn children_of(&self, parent_key: &str) -> Vec<String> {
        let mut keys: Vec<String> = self
            .items()
            .filter(|(k, f)| f.parent_key == parent_key && *k != parent_key)
            .map(|(k, _)| k.to_string())
            .collect();
        keys.sort();
        keys
    }

    /// Keys of a source's items, sorted.
    pub fn item_keys_of_source(&self, source_id: &str) -> Vec<String> {
        let mut keys: Vec<String> = self
            .items()
            .filter(|(_, f)| f.source_id == source_id)
            .map(|(k, _)| k.to_string())
            .collect();
        keys.sort();
        keys
    }

    pub fn link(&self, item_key: &str, hypothesis_id: &str) -> Option<LinkRef<'_>> {
        let e = self.entries.get(item_key)?;
        let l = e.links.get(e.link_position(hypothesis_id).ok()?)?;
        Some(l.view(&e.key))
    }

    /// Links of one item, by hypothesis id.
    pub fn links_of_item(&self, item_key: &str) -> impl Iterator<Item = LinkRef<'_>> {
        self.entries
            .get(item_key)
            .into_iter()
            .flat_map(|e| e.links.iter().map(|l| l.view(&e.key)))
    }

    /// Links to one hypothesis, by item key.
    pub fn links_of_hypothesis(&self, hypothesis_id: &str) -> Vec<LinkRef<'_>> {
        self.contributions
            .get(hypothesis_id)
            .into_iter()
            .flat_map(|m| m.keys())
            .filter_map(|k| self.link(k, hypothesis_id))
            .collect()
    }

    /// How many links point at one hypothesis.
    pub fn link_count_of_hypothesis(&self, hypothesis_id: &str) -> usize {
        self.contributions.get(hypothesis_id).map_or(0, |m| m.len())
    }

    /// Every link, ordered by (item key, hypothesis id).
    pub fn all_links(&self) -> Vec<LinkRef<'_>> {
        let mut entries: Vec<&Entry> = self
            .entries
            .values()
            .filter(|e| !e.links.is_empty())
            .collect();
        entries.sort_by(|a, b| a.key.cmp(&b.key));
        entries
            .into_iter()
            .flat_map(|e| e.links.iter().map(|l| l.view(&e.key)))
            .collect()
    }

    pub fn score(&self, item_key: &str) -> Option<&Score> {
        self.explained(self.entries.get(item_key)?)
    }

    /// The explained score of an item, built from the model now (what its
    /// last rescore computed, since every change rescores what it reaches).
    fn explained<'s>(&'s self, e: &'s Entry) -> Option<&'s Score> {
        debug_assert!(!self.has_deferred(), "flush before reading scores");
        e.facts.as_ref()?;
        e.ranked?;
        let score = e.explained.get_or_init(|| {
            let model = self.model();
            let mut s = score::empty_score();
            score::rescore_into(
                &mut s,
                e.estimate,
                self.default_size,
                term_inputs(e, |l| model.lookup(&l.hypothesis_id)),
            );
            Box::new(s)
        });
        Some(score)
    }

    fn model(&self) -> Model<'_> {
        Model {
            goal_weights: &self.goal_weights,
            metrics: &self.metrics,
            hypotheses: &self.hypotheses,
            contribution_totals: &self.contribution_totals,
        }
    }

    /// Scores of the open items (the backlog), in key order.
    pub fn open_item_scores(&self) -> Vec<(&str, &Score)> {
        debug_assert!(!self.has_deferred(), "flush before reading scores");
        let mut out: Vec<(&str, &Score)> = self
            .entries
            .values()
            .filter(|e| e.facts.as_ref().is_some_and(|f| f.state == ItemState::Open))
            .filter_map(|e| Some((&*e.key, self.explained(e)?)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(b.0));
        out
    }

    /// Items in ranking order, after `query.after`, filtered, at most
    /// `query.limit`, with the position to continue from.
    pub fn rank(&self, order: RankOrder, query: &RankQuery) -> Vec<(RankKey, &Score)> {
        debug_assert!(!self.has_deferred(), "flush before ranking");
        let ranking = match order {
            RankOrder::ValueDensity => &self.by_density,
            RankOrder::Value => &self.by_value,
        };
        // After the page's last key, or the greatest key before it if it
        // is gone.
        let after = query
            .after
            .as_ref()
            .map(|(v, k)| after_label(v.0.0, self.entries.label_up_to(k)));
        ranking
            .after(after.as_ref())
            .filter_map(|&(_, _, slot)| {
                let e = self.entries.at(slot)?;
                let f = e.facts.as_ref()?;
                let keep = (query.include_closed || f.state == ItemState::Open)
                    && query.source_id.as_ref().is_none_or(|s| *s == f.source_id)
                    && query.label.as_ref().is_none_or(|l| f.labels.contains(l));
                keep.then_some(e)
            })
            .take(query.limit)
            .filter_map(|e| {
                let (value, density) = e.ranked?;
                let number = match order {
                    RankOrder::ValueDensity => density,
                    RankOrder::Value => value,
                };
                Some((
                    (Reverse(OrdF64(number)), String::from(&*e.key)),
                    self.explained(e)?,
                ))
            })
            .collect()
    }

    /// Whether a metric has no observation within its cadence as of `now`.
    pub fn metric_is_stale(&self, metric_id: &str, now: Time) -> bool {
        self.metrics.get(metric_id).is_some_and(|m| m.stale(now))
    }

    // ----- writes: each rescores only what it reaches -----

    pub fn put_source(&mut self, source: Source) {
        self.sources.insert(source.id.clone(), source);
    }

    pub fn remove_source(&mut self, id: &str) {
        self.sources.remove(id);
    }

    /// Inserts or replaces a goal; rescores the items whose goal weight moved.
    pub fn put_goal(&mut self, goal: Goal) {
        self.flush();
        self.goals.insert(goal.id.clone(), goal);
        self.refresh_goal_weights();
    }

    pub fn remove_goal(&mut self, id: &str) {
        self.flush();
        self.goals.remove(id);
        self.refresh_goal_weights();
    }

    /// Inserts or replaces a metric definition, keeping its observations.
    pub fn put_metric(&mut self, metric: Metric) {
        self.flush();
        let obs = self
            .metrics
            .get(&metric.id)
            .map(|m| m.observations.clone())
            .unwrap_or_default();
        let id = metric.id.clone();
        self.metrics
            .insert(id.clone(), MetricEntry::new(metric, obs));
        self.rescore_metric_dependents(&id);
    }

    /// New latest observation and count of a metric.
    pub fn set_observations(&mut self, metric_id: &str, observations: ObservationSummary) {
        self.flush();
        let Some(entry) = self.metrics.get(metric_id) else {
            return;
        };
        let updated = MetricEntry::new(entry.metric.clone(), observations);
        let gap_moved = updated.gap.to_bits() != entry.gap.to_bits();
        self.metrics.insert(metric_id.to_string(), updated);
        if gap_moved {
            self.rescore_metric_dependents(metric_id);
        }
    }

    pub fn remove_metric(&mut self, id: &str) {
        self.flush();
        self.metrics.remove(id);
        self.rescore_metric_dependents(id);
    }

    pub fn put_hypothesis(&mut self, h: Hypothesis) {
        self.flush();
        let id = h.id.clone();
        self.hypotheses.insert(id.clone(), h);
        self.rescore_hypothesis_items(&id);
    }

    /// Removes a hypothesis and every link to it.
    pub fn remove_hypothesis(&mut self, id: &str) {
        self.flush();
        self.hypotheses.remove(id);
        let items = self.contributions.remove(id).unwrap_or_default();
        self.contribution_totals.remove(id);
        for (k, c) in &items {
            if let Some(e) = self.entries.at_mut(c.slot)
                && let Ok(i) = e.link_position(id)
            {
                e.links.remove(i);
            }
            self.drop_if_empty(k);
        }
        self.rescore_slots(items.values().map(|c| c.slot).collect());
    }

    /// Inserts or replaces an item's facts and rescores it.
    pub fn put_item(&mut self, key: String, facts: ItemFacts) {
        self.flush();
        if self.set_facts(key.as_str(), facts) {
            self.rescore(&key);
        }
    }

    /// Removes an item, its links and its score.
    pub fn remove_item(&mut self, key: &str) {
        self.flush();
        let Some(slot) = self.entries.slot(key) else {
            return;
        };
        let Some(e) = self.entries.remove(key) else {
            return;
        };
        if e.facts.is_some() {
            self.item_count -= 1;
        }
        if let Some((value, density)) = e.ranked {
            let gone = |old| Move {
                old: Some(old),
                new: None,
                label: e.label,
                slot,
            };
            self.by_density.apply([gone(density)]);
            self.by_value.apply([gone(value)]);
        }
        for l in &e.links {
            if let Some(m) = self.contributions.get_mut(&*l.hypothesis_id) {
                m.remove(key);
            }
            self.after_link_change(&l.hypothesis_id, key);
        }
    }

    /// Inserts or replaces a link.
    pub fn put_link(&mut self, link: Link) {
        self.flush();
        let (item, hyp) = (link.item_key.clone(), link.hypothesis_id.clone());
        self.insert_link(link);
        self.after_link_change(&hyp, &item);
    }

    pub fn remove_link(&mut self, item_key: &str, hypothesis_id: &str) {
        self.flush();
        self.delete_link(item_key, hypothesis_id);
        self.after_link_change(hypothesis_id, item_key);
    }

    /// Removes and puts many links at once, rescoring each affected item
    /// once: a sync page that links dozens of items to one over-subscribed
    /// hypothesis rescores that hypothesis' items once, not once per link.
    pub fn apply_links(&mut self, remove: &[(String, String)], put: Vec<Link>) {
        self.flush();
        let (hyps, mut items) = self.change_links(remove, put);
        for h in &hyps {
            let before = self.contribution_totals.get(h).copied().unwrap_or(0.0);
            let after = self.refresh_contribution_total(h);
            if before > 1.0 || after > 1.0 {
                items.extend(self.slots_of_hypothesis(h));
            }
        }
        self.rescore_slots(items);
    }

    /// Like `put_item` for each item and then `apply_links`, but leaves the
    /// rescoring to [`flush`](Self::flush): until then, scores and rankings
    /// are stale (facts and links are not). For a sync, whose pages each
    /// link to many over-subscribed hypotheses: one flush at the end
    /// rescores each reached item once instead of once per page. Every
    /// other write flushes first.
    pub fn defer_upsert(
        &mut self,
        items: Vec<(String, ItemFacts)>,
        remove: &[(String, String)],
        put: Vec<Link>,
    ) {
        for (key, facts) in items {
            if self.set_facts(&key, facts)
                && let Some(slot) = self.entries.slot(&key)
            {
                self.deferred_items.push(slot);
            }
        }
        let (hyps, items) = self.change_links(remove, put);
        self.deferred_hypotheses.extend(hyps);
        self.deferred_items.extend(items);
    }

    /// Whether [`defer_upsert`](Self::defer_upsert) left work for
    /// [`flush`](Self::flush).
    pub fn has_deferred(&self) -> bool {
        !self.deferred_items.is_empty() || !self.deferred_hypotheses.is_empty()
    }

    /// Does the rescoring deferred by [`defer_upsert`](Self::defer_upsert):
    /// afterwards every score equals what the writes done one by one would
    /// have left.
    pub fn flush(&mut self) {
        if !self.has_deferred() {
            return;
        }
        let mut items = std::mem::take(&mut self.deferred_items);
        for h in std::mem::take(&mut self.deferred_hypotheses) {
            let before = self.contribution_totals.get(&h).copied().unwrap_or(0.0);
            let after = self.refresh_contribution_total(&h);
            if before > 1.0 || after > 1.0 {
                items.extend(self.slots_of_hypothesis(&h));
            }
        }
        self.rescore_slots(items);
    }

    /// Recomputes every item's score (what a change reaching every item
    /// costs); the result equals a rebuild.
    pub fn rescore_all(&mut self) {
        self.flush();
        self.label_new_entries();
        let model = Model {
            goal_weights: &self.goal_weights,
            metrics: &self.metrics,
            hypotheses: &self.hypotheses,
            contribution_totals: &self.contribution_totals,
        };
        let all = model.link_terms(&self.strings);
        let mut rankings = Rankings {
            by_density: &mut self.by_density,
            by_value: &mut self.by_value,
        };
        let (items, moved) = rescore_entries(
            self.entries.with_slots_mut().collect(),
            &all,
            self.default_size,
        );
        self.rescored += items;
        rankings.apply(moved);
    }

    // ----- internals -----

    /// Sets an item's facts; false when they were already these.
    fn set_facts(&mut self, key: &str, facts: ItemFacts) -> bool {
        if let Some(e) = self.entries.get_mut(key) {
            if e.facts.as_deref() == Some(&facts) {
                return false;
            }
            if e.set_facts(facts) {
                self.item_count += 1;
            }
            return true;
        }
        let slot = self.entries.add(Arc::from(key));
        if let Some(e) = self.entries.at_mut(slot)
            && e.set_facts(facts)
        {
            self.item_count += 1;
        }
        true
    }

    /// Puts a link into the entry and contribution maps (no rescoring).
    fn insert_link(&mut self, link: Link) {
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
    fn delete_link(&mut self, item_key: &str, hypothesis_id: &str) {
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
    fn drop_if_empty(&mut self, key: &str) {
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
    fn change_links(
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

    fn after_link_change(&mut self, hypothesis_id: &str, item_key: &str) {
        let before = self
            .contribution_totals
            .get(hypothesis_id)
            .copied()
            .unwrap_or(0.0);
        let after = self.refresh_contribution_total(hypothesis_id);
        if before > 1.0 || after > 1.0 {
            // Over-subscribed before or after: every co-contributor's
            // effective contribution moved.
            self.rescore_hypothesis_items(hypothesis_id);
        }
        if self.item(item_key).is_some() {
            self.rescore(item_key);
        }
    }

    fn refresh_contribution_total(&mut self, hypothesis_id: &str) -> f64 {
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

    fn refresh_goal_weights(&mut self) {
        let new = score::effective_goal_weights(self.goals.values());
        let moved: BTreeSet<String> = new
            .iter()
            .filter(|(id, w)| self.goal_weights.get(*id).map(|o| o.to_bits()) != Some(w.to_bits()))
            .map(|(id, _)| id.clone())
            .chain(
                self.goal_weights
                    .keys()
                    .filter(|id| !new.contains_key(*id))
                    .cloned(),
            )
            .collect();
        self.goal_weights = new;
        let hyps: Vec<String> = self
            .hypotheses
            .values()
            .filter(|h| moved.contains(&h.goal_id))
            .map(|h| h.id.clone())
            .collect();
        for h in hyps {
            self.rescore_hypothesis_items(&h);
        }
    }

    fn rescore_metric_dependents(&mut self, metric_id: &str) {
        // An item serving two of the metric's hypotheses is listed twice
        // and rescored once.
        let items: Vec<Slot> = self
            .hypotheses
            .values()
            .filter(|h| h.metric_id == metric_id)
            .filter_map(|h| self.contributions.get(&h.id))
            .flat_map(|m| m.values().map(|c| c.slot))
            .collect();
        self.rescore_slots(items);
    }

    /// The slots of the items linked to a hypothesis.
    fn slots_of_hypothesis(&self, hypothesis_id: &str) -> impl Iterator<Item = Slot> + '_ {
        self.contributions
            .get(hypothesis_id)
            .into_iter()
            .flat_map(|m| m.values().map(|c| c.slot))
    }

    fn rescore_hypothesis_items(&mut self, hypothesis_id: &str) {
        let items = self.slots_of_hypothesis(hypothesis_id).collect();
        self.rescore_slots(items);
    }

    /// Labels the entries added since the last rescore (they are about to
    /// be ranked), relabelling the rankings when every label changed.
    fn label_new_entries(&mut self) {
        if self.entries.label_new() {
            let entries = &self.entries;
            let label_of = |slot| entries.at(slot).map_or(0, |e| e.label);
            self.by_density.relabel(label_of);
            self.by_value.relabel(label_of);
        }
    }

    /// Rescores one item, looking its hypotheses up one by one.
    fn rescore(&mut self, key: &str) {
        self.label_new_entries();
        let Some(slot) = self.entries.slot(key) else {
            return;
        };
        let Some(e) = self.entries.at_mut(slot) else {
            return;
        };
        let model = Model {
            goal_weights: &self.goal_weights,
            metrics: &self.metrics,
            hypotheses: &self.hypotheses,
            contribution_totals: &self.contribution_totals,
        };
        let mut rankings = Rankings {
            by_density: &mut self.by_density,
            by_value: &mut self.by_value,
        };
        match rescore_entry(
            slot,
            e,
            |l| model.lookup(&l.hypothesis_id),
            self.default_size,
        ) {
            Rescored::NotItem => {}
            Rescored::Same => self.rescored += 1,
            Rescored::Moved(m) => {
                self.rescored += 1;
                rankings.apply(vec![m]);
            }
        }
    }

    /// Rescores the entries in `slots` once each, in memory order, on two
    /// threads when they are many (slots freed since they were listed are
    /// skipped; one reused by another entry rescores that entry, which is
    /// harmless), looking every hypothesis up once for all of them.
    fn rescore_slots(&mut self, mut slots: Vec<Slot>) {
        if slots.is_empty() {
            return;
        }
        self.label_new_entries();
        self.entries.sort_slots(&mut slots);
        let model = Model {
            goal_weights: &self.goal_weights,
            metrics: &self.metrics,
            hypotheses: &self.hypotheses,
            contribution_totals: &self.contribution_totals,
        };
        let all = model.link_terms(&self.strings);
        let mut rankings = Rankings {
            by_density: &mut self.by_density,
            by_value: &mut self.by_value,
        };
        let (items, moved) =
            rescore_entries(self.entries.select_mut(&slots), &all, self.default_size);
        self.rescored += items;
        rankings.apply(moved);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Direction, GoalLevel, HypothesisStatus, KeyValueArea, LinkOrigin};
    use chrono::Utc;

    fn snapshot(links: Vec<Link>) -> Snapshot {
        let now = Utc::now();
        let goal = Goal {
            id: "G".into(),
            title: "G".into(),
            description: String::new(),
            level: GoalLevel::Strategic,
            parent_id: String::new(),
            key_value_area: KeyValueArea::CurrentValue,
            weight: 1.0,
            create_time: now,
            update_time: now,
        };
        let metric = Metric {
            id: "m".into(),
            name: "m".into(),
            unit: String::new(),
            direction: Direction::HigherIsBetter,
            baseline: 0.0,
            target: 1.0,
            cadence: None,
            create_time: now,
            update_time: now,
        };
        let hyp = |id: &str| Hypothesis {
            id: id.into(),
            statement: id.into(),
            goal_id: "G".into(),
            metric_id: "m".into(),
            expected_effect: 0.5,
            confidence: 0.5,
            status: HypothesisStatus::Testing,
            check_time: None,
            create_time: now,
            update_time: now,
        };
        let items = (0..40)
            .map(|i| {
                (
                    format!("s/{i:02}"),
                    ItemFacts {
                        source_id: "s".into(),
                        title: format!("item {i}"),
                        state: ItemState::Open,
                        labels: vec![],
                        estimate: Some(1.0 + (i % 5) as f64),
                        parent_key: String::new(),
                    },
                )
            })
            .collect();
        Snapshot {
            goals: vec![goal],
            metrics: vec![(metric, Default::default())],
            hypotheses: vec![hyp("H-1"), hyp("H-2")],
            items,
            links,
            ..Default::default()
        }
    }

    fn link(i: usize, h: &str, c: f64) -> Link {
        let now = Utc::now();
        Link {
            item_key: format!("s/{i:02}"),
            hypothesis_id: h.into(),
            contribution: c,
            origin: LinkOrigin::Rule,
            rationale: String::new(),
            create_time: now,
            update_time: now,
        }
    }

    #[test]
    fn batched_links_score_like_a_rebuild_and_rescore_each_item_once() {
        // Start with some links, then a batch that over-subscribes H-1 and
        // removes two links.
        let initial: Vec<Link> = (0..10).map(|i| link(i, "H-2", 0.05)).collect();
        let mut ix = ScoreIndex::from_snapshot(3.0, snapshot(initial.clone()));
        let batch: Vec<Link> = (0..30).map(|i| link(i, "H-1", 0.3)).collect();
        let remove = vec![
            ("s/01".to_string(), "H-2".to_string()),
            ("s/02".to_string(), "H-2".to_string()),
        ];
        let before = ix.rescored_count();
        ix.apply_links(&remove, batch.clone());
        assert_eq!(ix.rescored_count() - before, 30, "each touched item once");

        let mut all: Vec<Link> = initial
            .into_iter()
            .filter(|l| !matches!(l.item_key.as_str(), "s/01" | "s/02"))
            .collect();
        all.extend(batch);
        let rebuilt = ScoreIndex::from_snapshot(3.0, snapshot(all));
        for i in 0..40 {
            let k = format!("s/{i:02}");
            assert_eq!(ix.score(&k), rebuilt.score(&k), "{k}");
        }
        let q = RankQuery {
            limit: 40,
            ..Default::default()
        };
        let a: Vec<String> = ix
            .rank(RankOrder::ValueDensity, &q)
            .into_iter()
            .map(|(k, _)| k.1)
            .collect();
        let b: Vec<String> = rebuilt
            .rank(RankOrder::ValueDensity, &q)
            .into_iter()
            .map(|(k, _)| k.1)
            .collect();
        assert_eq!(a, b);
    }

    /// A product of `n` items over two metrics and six hypotheses, with
    /// links drawn from `seed`; over-subscribed hypotheses included.
    fn big_snapshot(n: usize, seed: u64) -> Snapshot {
        let mut snap = snapshot(vec![]);
        let now = Utc::now();
        let mut m2 = snap.metrics[0].0.clone();
        m2.id = "m2".into();
        snap.metrics.push((m2, Default::default()));
        let base = snap.hypotheses[0].clone();
        snap.hypotheses = (0..6)
            .map(|h| Hypothesis {
                id: format!("H-{h}"),
                metric_id: if h < 2 { "m".into() } else { "m2".into() },
                expected_effect: 0.1 + 0.1 * h as f64,
                ..base.clone()
            })
            .collect();
        let mut rng = fastrand::Rng::with_seed(seed);
        snap.items = (0..n)
            .map(|i| {
                (
                    format!("s/{i:05}"),
                    ItemFacts {
                        source_id: "s".into(),
                        title: format!("item {i}"),
                        state: if i % 7 == 0 {
                            ItemState::Closed
                        } else {
                            ItemState::Open
                        },
                        labels: vec![],
                        estimate: (i % 4 != 0).then(|| [1.0, 2.0, 3.0, 5.0][rng.usize(..4)]),
                        parent_key: String::new(),
                    },
                )
            })
            .collect();
        snap.links = (0..n)
            .flat_map(|i| {
                let hyps: Vec<usize> = (0..rng.usize(0..3)).map(|_| rng.usize(..6)).collect();
                let c = [0.1, 0.25, 0.5, 1.0][rng.usize(..4)];
                hyps.into_iter().map(move |h| Link {
                    item_key: format!("s/{i:05}"),
                    hypothesis_id: format!("H-{h}"),
                    contribution: c,
                    origin: LinkOrigin::Rule,
                    rationale: String::new(),
                    create_time: now,
                    update_time: now,
                })
            })
            .collect();
        snap
    }

    fn same_scores_and_rankings(a: &ScoreIndex, b: &ScoreIndex) {
        assert_eq!(a.item_count(), b.item_count());
        for (k, _) in a.items() {
            assert_eq!(a.score(k), b.score(k), "{k}");
        }
        for order in [RankOrder::ValueDensity, RankOrder::Value] {
            let q = RankQuery {
                include_closed: true,
                limit: usize::MAX,
                ..Default::default()
            };
            let ka: Vec<RankKey> = a.rank(order, &q).into_iter().map(|(k, _)| k).collect();
            let kb: Vec<RankKey> = b.rank(order, &q).into_iter().map(|(k, _)| k).collect();
            assert_eq!(ka.len(), a.item_count());
            assert_eq!(ka, kb, "{order:?}");
        }
    }

    #[test]
    fn a_change_reaching_many_items_ranks_like_a_rebuild() {
        // 15,000 items: an observation of "m" reaches enough of them to be
        // rescored on two threads and to fold the rankings; a goal weight
        // change reaches every item.
        let mut ix = ScoreIndex::from_snapshot(3.0, big_snapshot(15_000, 7));
        let summary = |v: f64| ObservationSummary {
            latest: Some((Utc::now(), v)),
            count: 1,
        };
        let before = ix.rescored_count();
        ix.set_observations("m", summary(0.4));
        assert!(ix.rescored_count() - before >= PARALLEL_MIN as u64);
        let mut fresh = big_snapshot(15_000, 7);
        fresh.metrics[0].1 = summary(0.4);
        same_scores_and_rankings(&ix, &ScoreIndex::from_snapshot(3.0, fresh));

        // A few items only: item by item.
        let before = ix.rescored_count();
        ix.put_link(Link {
            item_key: "s/00001".into(),
            hypothesis_id: "H-5".into(),
            contribution: 0.3,
            origin: LinkOrigin::Api,
            rationale: String::new(),
            create_time: Utc::now(),
            update_time: Utc::now(),
        });
        assert!(ix.rescored_count() > before);
        let mut fresh = big_snapshot(15_000, 7);
        fresh.metrics[0].1 = summary(0.4);
        fresh
            .links
            .push(ix.link("s/00001", "H-5").unwrap().to_link());
        same_scores_and_rankings(&ix, &ScoreIndex::from_snapshot(3.0, fresh));
    }

    #[test]
    fn rescoring_everything_changes_nothing() {
        let mut ix = ScoreIndex::from_snapshot(3.0, big_snapshot(2000, 3));
        let before = ix.rescored_count();
        ix.rescore_all();
        assert_eq!(ix.rescored_count() - before, 2000);
        same_scores_and_rankings(&ix, &ScoreIndex::from_snapshot(3.0, big_snapshot(2000, 3)));
    }

    #[test]
    fn deferred_upserts_end_where_item_by_item_ones_do() {
        // Pages of items with links to over-subscribed hypotheses, applied
        // eagerly to one index and deferred (then flushed) on another.
        let start = || {
            let mut s = big_snapshot(600, 11);
            s.items.truncate(300);
            s.links.retain(|l| l.item_key.as_str() < "s/00300");
            ScoreIndex::from_snapshot(3.0, s)
        };
        let full = big_snapshot(600, 11);
        let (mut eager, mut deferred) = (start(), start());
        for page in full.items[300..].chunks(50) {
            let keys: Vec<&String> = page.iter().map(|(k, _)| k).collect();
            let links: Vec<Link> = full
                .links
                .iter()
                .filter(|l| keys.contains(&&l.item_key))
                .cloned()
                .collect();
            // Also drop one old link per page, as a rule that no longer
            // applies would.
            let old = eager.all_links()[0];
            let remove = vec![(old.item_key.to_string(), old.hypothesis_id.to_string())];
            for (k, f) in page {
                eager.put_item(k.clone(), f.clone());
            }
            eager.apply_links(&remove, links.clone());
            deferred.defer_upsert(page.to_vec(), &remove, links);
            assert!(deferred.has_deferred());
        }
        deferred.flush();
        assert!(!deferred.has_deferred());
        same_scores_and_rankings(&eager, &deferred);
        // The deferred index did less work for the same result.
        assert!(deferred.rescored_count() < eager.rescored_count());
    }

    #[test]
    fn items_added_between_others_one_by_one_rank_and_page_like_a_rebuild() {
        // Every fourth item first, then the rest one at a time from the
        // end, three between each two ranked items. The tests' label
        // spacing is small, so the labels are respaced again and again.
        let late = |k: &str| !k["s/".len()..].parse::<usize>().is_ok_and(|i| i % 4 == 0);
        let full = big_snapshot(600, 5);
        let mut start = big_snapshot(600, 5);
        start.items.retain(|(k, _)| !late(k));
        start.links.retain(|l| !late(&l.item_key));
        let mut ix = ScoreIndex::from_snapshot(3.0, start);
        let summary = |v: f64| ObservationSummary {
            latest: Some((Utc::now(), v)),
            count: 1,
        };
        let mut last = None;
        for (n, (k, f)) in full.items.iter().rev().filter(|(k, _)| late(k)).enumerate() {
            ix.put_item(k.clone(), f.clone());
            let links = full
                .links
                .iter()
                .filter(|l| l.item_key == *k)
                .cloned()
                .collect();
            ix.apply_links(&[], links);
            if n % 60 == 59 {
                let v = n as f64 / 1000.0;
                ix.set_observations("m", summary(v));
                last = Some(v);
            }
        }
        let mut want = big_snapshot(600, 5);
        want.metrics[0].1 = summary(last.unwrap());
        let mut rebuilt = ScoreIndex::from_snapshot(3.0, want);
        same_scores_and_rankings(&ix, &rebuilt);

        let all = |ix: &ScoreIndex, order| -> Vec<RankKey> {
            let q = RankQuery {
                include_closed: true,
                limit: usize::MAX,
                ..Default::default()
            };
            ix.rank(order, &q).into_iter().map(|(k, _)| k).collect()
        };
        let gone = "s/00100";
        let tokens: Vec<RankKey> = [RankOrder::ValueDensity, RankOrder::Value]
            .into_iter()
            .map(|o| all(&ix, o).into_iter().find(|k| k.1 == gone).unwrap())
            .collect();
        ix.remove_item(gone);
        rebuilt.remove_item(gone);
        for (order, token) in [RankOrder::ValueDensity, RankOrder::Value]
            .into_iter()
            .zip(tokens)
        {
            let want = all(&rebuilt, order);
            // Page by page, each after the last one's token.
            let (mut pages, mut after) = (Vec::new(), None);
            loop {
                let q = RankQuery {
                    include_closed: true,
                    limit: 7,
                    after: after.clone(),
                    ..Default::default()
                };
                let page: Vec<RankKey> = ix.rank(order, &q).into_iter().map(|(k, _)| k).collect();
                let Some(last) = page.last() else { break };
                after = Some(last.clone());
                pages.extend(page);
            }
            assert_eq!(pages, want, "{order:?}");
            // A token on an item removed since continues after its place.
            let q = RankQuery {
                include_closed: true,
                limit: usize::MAX,
                after: Some(token.clone()),
                ..Default::default()
            };
            let got: Vec<RankKey> = ix.rank(order, &q).into_iter().map(|(k, _)| k).collect();
            let rest: Vec<RankKey> = want.into_iter().filter(|k| *k > token).collect();
            assert!(!rest.is_empty());
            assert_eq!(got, rest, "{order:?}");
        }
    }
}
