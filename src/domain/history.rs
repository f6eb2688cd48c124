//! The ranking's history: a snapshot is the top N of the value-density
//! ranking at one time, each item with the terms of its score, so that a
//! later comparison can say not only what moved but which term moved it.
//!
//! A snapshot's items are stored as one serialized blob (short field names,
//! numbers as their bits so that they read back exactly): a snapshot is
//! always written, read and pruned whole, and never queried inside.

use serde::{Deserialize, Serialize};

use super::{ItemState, Time};

/// Most terms an item keeps in a snapshot (its largest); beyond that the
/// blob would grow with a pathological item's links, and the rest are
/// summed into nothing a comparison names.
pub const MAX_SNAPSHOT_TERMS: usize = 32;

/// Why a snapshot was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotOrigin {
    /// The background task, because the ranking changed.
    Background,
    /// Asked for (TakeRankingSnapshot).
    Explicit,
    /// At shutdown, because the ranking changed.
    Shutdown,
}

/// A snapshot without its items.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotSummary {
    pub id: i64,
    pub take_time: Time,
    pub origin: SnapshotOrigin,
    pub note: String,
    /// The bound it was taken with.
    pub top_n: u32,
    pub item_count: u32,
}

/// A snapshot with its items, in rank order (the first is rank 1).
#[derive(Debug, Clone, PartialEq)]
pub struct RankingSnapshot {
    pub summary: SnapshotSummary,
    pub items: Vec<SnapshotItem>,
}

/// One ranked item as it stood.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotItem {
    #[serde(rename = "k")]
    pub key: String,
    #[serde(rename = "t")]
    pub title: String,
    #[serde(rename = "st")]
    pub state: ItemState,
    #[serde(rename = "v", with = "bits")]
    pub value: f64,
    #[serde(rename = "s", with = "bits")]
    pub size: f64,
    #[serde(rename = "d", with = "bits")]
    pub value_density: f64,
    /// In the score's order (by hypothesis id), at most
    /// [`MAX_SNAPSHOT_TERMS`].
    #[serde(rename = "x", default)]
    pub terms: Vec<SnapshotTerm>,
}

/// One term of an item's score: one link's part of its value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotTerm {
    #[serde(rename = "h")]
    pub hypothesis_id: String,
    #[serde(rename = "w", with = "bits")]
    pub goal_weight: f64,
    #[serde(rename = "g", with = "bits")]
    pub gap: f64,
    #[serde(rename = "e", with = "bits")]
    pub expected_effect: f64,
    #[serde(rename = "c", with = "bits")]
    pub confidence: f64,
    #[serde(rename = "l", with = "bits")]
    pub contribution: f64,
    #[serde(rename = "el", with = "bits")]
    pub effective_contribution: f64,
    #[serde(rename = "v", with = "bits")]
    pub value: f64,
}

impl SnapshotTerm {
    /// The factors a comparison names, by name.
    pub fn factors(&self) -> [(&'static str, f64); 6] {
        [
            ("goal_weight", self.goal_weight),
            ("gap", self.gap),
            ("expected_effect", self.expected_effect),
            ("confidence", self.confidence),
            ("contribution", self.contribution),
            ("effective_contribution", self.effective_contribution),
        ]
    }
}

impl From<&crate::score::Term> for SnapshotTerm {
    fn from(t: &crate::score::Term) -> Self {
        SnapshotTerm {
            hypothesis_id: t.hypothesis_id.clone(),
            goal_weight: t.goal_weight,
            gap: t.gap,
            expected_effect: t.expected_effect,
            confidence: t.confidence,
            contribution: t.contribution,
            effective_contribution: t.effective_contribution,
            value: t.value,
        }
    }
}

/// A score's terms as a snapshot keeps them: its largest
/// [`MAX_SNAPSHOT_TERMS`], in hypothesis-id order.
pub fn snapshot_terms(terms: &[crate::score::Term]) -> Vec<SnapshotTerm> {
    if terms.len() <= MAX_SNAPSHOT_TERMS {
        return terms.iter().map(SnapshotTerm::from).collect();
    }
    let mut largest: Vec<&crate::score::Term> = terms.iter().collect();
    largest.sort_by(|a, b| b.value.total_cmp(&a.value));
    largest.truncate(MAX_SNAPSHOT_TERMS);
    largest.sort_by(|a, b| a.hypothesis_id.cmp(&b.hypothesis_id));
    largest.into_iter().map(SnapshotTerm::from).collect()
}

/// Numbers as their IEEE 754 bits: JSON text of a float may read back one
/// unit in the last place off, and a comparison must not report a change
/// that is only a round trip through the store.
mod bits {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(v.to_bits())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(f64::from_bits(u64::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_read_back_bit_for_bit() {
        let item = SnapshotItem {
            key: "gh/1".into(),
            title: "Checkout".into(),
            state: ItemState::Open,
            value: 0.1 + 0.2,
            size: 3.0,
            value_density: (0.1 + 0.2) / 3.0,
            terms: vec![SnapshotTerm {
                hypothesis_id: "H-1".into(),
                goal_weight: 1.0 / 3.0,
                gap: 0.7,
                expected_effect: 0.25,
                confidence: 0.6,
                contribution: 0.5,
                effective_contribution: 0.5,
                value: 0.1 + 0.2,
            }],
        };
        let json = serde_json::to_string(&vec![item.clone()]).unwrap();
        let back: Vec<SnapshotItem> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, vec![item]);
    }
}
