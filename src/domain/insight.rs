//! Insights (issue 21): pieces of customer evidence, who asked for what.
//!
//! An insight is kept by `(source, external_id)`, the key recording is
//! idempotent on. Its checks live here, as plain functions over plain data,
//! so that the API and the CLI's file import refuse the same things with the
//! same field names (the import reports them per line before it sends
//! anything).

use serde::{Deserialize, Serialize};

use super::{Time, has_control, is_valid_id};

/// Most insights one `RecordInsights` call (and one imported file) holds:
/// an import is one call, so that a file is stored whole or not at all,
/// and 2,000 insights of bounded text stay under gRPC's 4 MiB message.
pub const MAX_INSIGHTS_PER_CALL: usize = 2_000;
/// Most bytes of an insight's text (a quote, a ticket's gist, a note).
pub const MAX_INSIGHT_TEXT: usize = 4 * 1024;
/// Most bytes of an insight's link.
pub const MAX_INSIGHT_URL: usize = 2048;
/// Most bytes of a customer's pseudonymous id.
pub const MAX_CUSTOMER: usize = 128;
/// Most targets of each kind (items, hypotheses, outcomes) one insight names.
pub const MAX_INSIGHT_TARGETS: usize = 50;

/// What kind of evidence an insight is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InsightKind {
    Quote,
    Ticket,
    InterviewNote,
    SurveyAnswer,
    Vote,
}

impl InsightKind {
    pub const ALL: [InsightKind; 5] = [
        InsightKind::Quote,
        InsightKind::Ticket,
        InsightKind::InterviewNote,
        InsightKind::SurveyAnswer,
        InsightKind::Vote,
    ];

    /// The word files and the CLI use (`interview_note`).
    pub fn as_str(self) -> &'static str {
        match self {
            InsightKind::Quote => "quote",
            InsightKind::Ticket => "ticket",
            InsightKind::InterviewNote => "interview_note",
            InsightKind::SurveyAnswer => "survey_answer",
            InsightKind::Vote => "vote",
        }
    }

    /// Reads a word as [`as_str`](Self::as_str) writes it (case and `-`
    /// or space for `_` forgiven).
    pub fn parse(s: &str) -> Option<InsightKind> {
        let s = normalize(s);
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// How much the customer said it matters to them; ordered, so that the
/// highest importance behind an item is a `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Importance {
    NotImportant,
    NiceToHave,
    Important,
    Critical,
}

impl Importance {
    pub const ALL: [Importance; 4] = [
        Importance::NotImportant,
        Importance::NiceToHave,
        Importance::Important,
        Importance::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Importance::NotImportant => "not_important",
            Importance::NiceToHave => "nice_to_have",
            Importance::Important => "important",
            Importance::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Importance> {
        let s = normalize(s);
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

fn normalize(s: &str) -> String {
    s.trim().to_ascii_lowercase().replace(['-', ' '], "_")
}

/// One piece of customer evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Insight {
    /// Where it came from: "zendesk", "interviews", or a tracker source id
    /// (id rules).
    pub source: String,
    /// Its id at the source (external id rules).
    pub external_id: String,
    pub kind: InsightKind,
    pub text: String,
    /// When the customer said it; `None` when unknown.
    pub time: Option<Time>,
    /// An http(s) link to it at the source; empty when none.
    pub url: String,
    /// The pseudonymous id the team chose for the customer; nothing else
    /// of the customer is stored.
    pub customer: String,
    /// The customer's segment (id rules); empty when unknown.
    pub segment_id: String,
    /// `None` when the customer did not say.
    pub importance: Option<Importance>,
    /// Item keys (`SOURCE/EXTERNAL_ID`) it asks for.
    pub item_keys: Vec<String>,
    pub hypothesis_ids: Vec<String>,
    /// Desired outcomes (ids) it speaks to.
    pub outcome_ids: Vec<String>,
}

impl Insight {
    /// `(source, external_id)`: what recording is idempotent on.
    pub fn key(&self) -> (String, String) {
        (self.source.clone(), self.external_id.clone())
    }

    /// Every problem of the insight's own fields, as (field, description),
    /// fields named as in the API (`customer`, `item_keys[2]`). Whether the
    /// items and hypotheses named exist is the engine's check.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut fail = |f: &str, d: &str| out.push((f.to_string(), d.to_string()));
        id_problem(&self.source, "source", &mut fail);
        if self.external_id.trim().is_empty() {
            fail("external_id", "is required");
        } else if self.external_id.len() > 256
            || self
                .external_id
                .chars()
                .any(|c| c.is_control() || c.is_whitespace())
        {
            fail(
                "external_id",
                "must be at most 256 characters, without spaces or control characters",
            );
        }
        if self.text.len() > MAX_INSIGHT_TEXT {
            fail("text", &format!("is longer than {MAX_INSIGHT_TEXT} bytes"));
        } else if self.kind != InsightKind::Vote && self.text.trim().is_empty() {
            fail("text", "is required (only a vote may have no text)");
        }
        if !self.url.is_empty() {
            if self.url.len() > MAX_INSIGHT_URL {
                fail("url", &format!("is longer than {MAX_INSIGHT_URL} bytes"));
            } else if has_control(&self.url)
                || !(self.url.starts_with("https://") || self.url.starts_with("http://"))
                || reqwest::Url::parse(&self.url).is_err()
            {
                fail("url", "must be an http:// or https:// URL");
            }
        }
        if self.customer.trim().is_empty() {
            fail(
                "customer",
                "is required: the pseudonymous id your team uses",
            );
        } else if self.customer.len() > MAX_CUSTOMER {
            fail("customer", &format!("is longer than {MAX_CUSTOMER} bytes"));
        } else if has_control(&self.customer) {
            fail("customer", "must not contain control characters");
        } else if self.customer.trim() != self.customer {
            // " acme" and "acme" would be two customers, and forgetting one
            // would leave the other.
            fail("customer", "must not start or end with spaces");
        }
        if !self.segment_id.is_empty() {
            id_problem(&self.segment_id, "segment_id", &mut fail);
        }
        let lists: [(&str, &Vec<String>); 3] = [
            ("item_keys", &self.item_keys),
            ("hypothesis_ids", &self.hypothesis_ids),
            ("outcome_ids", &self.outcome_ids),
        ];
        for (name, list) in lists {
            if list.len() > MAX_INSIGHT_TARGETS {
                fail(name, &format!("at most {MAX_INSIGHT_TARGETS}"));
                continue;
            }
            for (i, v) in list.iter().enumerate() {
                let field = format!("{name}[{i}]");
                if name == "item_keys" {
                    let ok = v.split_once('/').is_some_and(|(s, e)| {
                        is_valid_id(s)
                            && !e.is_empty()
                            && e.len() <= 256
                            && !e.chars().any(|c| c.is_control() || c.is_whitespace())
                    });
                    if !ok {
                        fail(&field, "must be an item key SOURCE/EXTERNAL_ID");
                    }
                } else {
                    id_problem(v, &field, &mut fail);
                }
                if list[..i].contains(v) {
                    fail(&field, "appears twice");
                }
            }
        }
        out
    }
}

fn id_problem(v: &str, field: &str, fail: &mut impl FnMut(&str, &str)) {
    if v.is_empty() {
        fail(field, "is required");
    } else if !is_valid_id(v) {
        fail(
            field,
            "must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
        );
    }
}

/// What the ranking shows of the customers behind an item: beside the
/// score, never in it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Demand {
    /// Insights linked to the item.
    pub insights: u32,
    /// Distinct customers among them.
    pub customers: u32,
    /// Distinct segments among them (insights without one not counted).
    pub segments: u32,
    /// The highest importance any of them gave; `None` when none did.
    pub highest_importance: Option<Importance>,
    /// The tracker's demand signal on the item (GitHub +1 reactions,
    /// GitLab upvotes, Jira votes); `None` where it exposes none.
    pub votes: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quote() -> Insight {
        Insight {
            source: "zendesk".into(),
            external_id: "T-1".into(),
            kind: InsightKind::Quote,
            text: "I cannot pay on my phone".into(),
            time: None,
            url: "https://example.zendesk.com/tickets/1".into(),
            customer: "cust-7".into(),
            segment_id: "mobile".into(),
            importance: Some(Importance::Critical),
            item_keys: vec!["gh/12".into()],
            hypothesis_ids: vec!["H-1".into()],
            outcome_ids: vec![],
        }
    }

    #[test]
    fn a_good_insight_has_no_problem_and_each_bad_field_is_named() {
        assert!(quote().problems().is_empty());
        let mut bad = quote();
        bad.url = "javascript:alert(1)".into();
        bad.customer = String::new();
        bad.item_keys = vec!["nokey".into(), "gh/1".into(), "gh/1".into()];
        bad.segment_id = "no spaces".into();
        let fields: Vec<String> = bad.problems().into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            [
                "url",
                "customer",
                "segment_id",
                "item_keys[0]",
                "item_keys[2]"
            ]
        );
    }

    #[test]
    fn words_read_back_and_importance_is_ordered() {
        for k in InsightKind::ALL {
            assert_eq!(InsightKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(
            InsightKind::parse("Interview note"),
            Some(InsightKind::InterviewNote)
        );
        assert_eq!(
            Importance::parse("nice-to-have"),
            Some(Importance::NiceToHave)
        );
        assert!(Importance::Critical > Importance::Important);
        assert!(Importance::NiceToHave > Importance::NotImportant);
    }
}
