//! The value model as code: the public TOML format a team keeps its
//! sources, goals, metrics, hypotheses (and, for push sources, items and
//! their links) in, reviewed like any other file (README, "Value model as
//! code"). This module only reads and writes the text: [`parse`] turns it
//! into plain [`File`] data, [`Locator`] turns a field path
//! (`hypotheses[3].expected_effect`) back into `line:column`, and
//! [`render`] writes a [`File`] out again. Checking the values and planning
//! the change are the API's and the engine's (`api/apply.rs`,
//! `engine/apply.rs`), so the rules stay the ones every RPC applies.
//!
//! Spans come from the `toml` crate's own parser (`toml::de::DeTable`,
//! which keeps the byte range of every key and value), not from a parser
//! of our own: the data is read with serde, and the spanned tree is only
//! walked to place an error.

use std::ops::Range;

use serde::{Deserialize, Deserializer, Serialize};
use toml::value::Datetime;

/// The commented starter file that `plumbline init` writes: one strategic
/// goal, one metric, one hypothesis. It applies cleanly on an empty server
/// (a test checks).
pub const STARTER: &str = include_str!("starter.toml");

/// A value model file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourceEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub goals: Vec<GoalEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<MetricEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hypotheses: Vec<HypothesisEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<ItemEntry>,
    /// Customer segments (`[[segments]]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<SegmentEntry>,
    /// Desired outcomes with their survey waves (`[[outcomes]]`,
    /// `[[outcomes.waves]]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outcomes: Vec<OutcomeEntry>,
    /// Customer evidence (`[[insights]]`); export writes them only when
    /// asked, and apply never deletes one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub insights: Vec<InsightEntry>,
}

impl File {
    /// How many entries the file holds, observations and links included:
    /// what the size bound counts.
    pub fn entry_count(&self) -> usize {
        self.sources.len()
            + self.goals.len()
            + self.hypotheses.len()
            + self
                .metrics
                .iter()
                .map(|m| 1 + m.observations.len())
                .sum::<usize>()
            + self.items.iter().map(|i| 1 + i.links.len()).sum::<usize>()
            + self.segments.len()
            + self
                .outcomes
                .iter()
                .map(|o| 1 + o.waves.len())
                .sum::<usize>()
            + self.insights.len()
    }
}

fn is_empty(s: &str) -> bool {
    s.is_empty()
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourceEntry {
    pub id: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub base_url: String,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub project_key: String,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub token_env: String,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub estimate_field: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_rules: Option<LinkRulesEntry>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LinkRulesEntry {
    #[serde(default, skip_serializing_if = "is_empty")]
    pub label_prefix: String,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub body_keyword: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub disabled: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GoalEntry {
    pub id: String,
    pub title: String,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub description: String,
    pub level: String,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub parent: String,
    #[serde(default = "unspecified", skip_serializing_if = "is_unspecified")]
    pub key_value_area: String,
    #[serde(default = "one", deserialize_with = "number")]
    pub weight: f64,
}

fn unspecified() -> String {
    "unspecified".into()
}

fn is_unspecified(s: &str) -> bool {
    s == "unspecified"
}

fn one() -> f64 {
    1.0
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricEntry {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub unit: String,
    #[serde(deserialize_with = "number")]
    pub baseline: f64,
    #[serde(deserialize_with = "number")]
    pub target: f64,
    /// Expected days between observations; unset: never stale.
    #[serde(
        default,
        deserialize_with = "optional_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub cadence_days: Option<f64>,
    /// Where the observations are pulled from (`[metrics.source]`, a
    /// `kind` and its settings; README "Metrics that flow in").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<crate::domain::MetricSource>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub observations: Vec<ObservationEntry>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ObservationEntry {
    pub at: Datetime,
    #[serde(deserialize_with = "number")]
    pub value: f64,
}

/// A customer segment: its weight is its share of customers or revenue,
/// relative to the other segments.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentEntry {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub description: String,
    #[serde(deserialize_with = "number")]
    pub weight: f64,
}

/// A desired outcome of a segment; its id is also the id of the metric
/// that backs it (which hypotheses name).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OutcomeEntry {
    pub id: String,
    pub segment: String,
    pub statement: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waves: Vec<WaveEntry>,
}

/// One survey wave of a desired outcome.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WaveEntry {
    pub at: Datetime,
    #[serde(deserialize_with = "number")]
    pub importance: f64,
    #[serde(deserialize_with = "number")]
    pub satisfaction: f64,
    pub respondents: i64,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HypothesisEntry {
    pub id: String,
    pub statement: String,
    pub goal: String,
    pub metric: String,
    #[serde(deserialize_with = "number")]
    pub expected_effect: f64,
    /// Unset: 0.5 on creation, then left to validation.
    #[serde(
        default,
        deserialize_with = "optional_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub confidence: Option<f64>,
    /// Unset: proposed on creation, then left to validation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ItemEntry {
    pub source: String,
    pub id: String,
    pub title: String,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub body: String,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub url: String,
    #[serde(default = "open", skip_serializing_if = "is_open")]
    pub state: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    #[serde(
        default,
        deserialize_with = "optional_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub estimate: Option<f64>,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub parent: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<Datetime>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<LinkEntry>,
}

fn open() -> String {
    "open".into()
}

/// One insight: who asked for what (README, "Who asked for what").
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InsightEntry {
    pub source: String,
    pub id: String,
    pub customer: String,
    #[serde(default = "quote_kind", skip_serializing_if = "is_quote")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<Datetime>,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub url: String,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub segment: String,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub importance: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hypotheses: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outcomes: Vec<String>,
}

fn quote_kind() -> String {
    "quote".into()
}

fn is_quote(s: &str) -> bool {
    s == "quote"
}

fn is_open(s: &str) -> bool {
    s == "open"
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LinkEntry {
    pub hypothesis: String,
    #[serde(deserialize_with = "number")]
    pub contribution: f64,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub rationale: String,
}

/// A TOML integer or float as f64: people write `baseline = 50`.
struct NumberVisitor;

impl serde::de::Visitor<'_> for NumberVisitor {
    type Value = f64;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a number")
    }

    fn visit_f64<E>(self, v: f64) -> Result<f64, E> {
        Ok(v)
    }

    fn visit_i64<E>(self, v: i64) -> Result<f64, E> {
        Ok(v as f64)
    }

    fn visit_u64<E>(self, v: u64) -> Result<f64, E> {
        Ok(v as f64)
    }
}

fn number<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    d.deserialize_any(NumberVisitor)
}

fn optional_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    number(d).map(Some)
}

/// A place in the text, 1-based, as editors and compilers show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// The line and column (in characters) of byte `offset` of `text`.
pub fn position(text: &str, offset: usize) -> Position {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Position {
        line: before.matches('\n').count() + 1,
        column: before[line_start..].chars().count() + 1,
    }
}

/// Why a file could not be read as the format: a TOML syntax error, or a
/// key or type the format does not have. serde stops at the first one.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    pub at: Option<Position>,
    pub message: String,
}

/// Reads a value model file.
pub fn parse(text: &str) -> Result<File, ParseError> {
    toml::from_str(text).map_err(|e| ParseError {
        at: e.span().map(|s| position(text, s.start)),
        // The crate's message repeats the source line with a caret; the
        // first line is the cause.
        message: e.message().lines().next().unwrap_or("").trim().to_string(),
    })
}

/// Places field paths of a parsed file (`goals[2].parent`) in its text.
pub struct Locator<'a> {
    text: &'a str,
    tree: Option<toml::Spanned<toml::de::DeTable<'a>>>,
}

impl<'a> Locator<'a> {
    pub fn new(text: &'a str) -> Self {
        Locator {
            text,
            tree: toml::de::DeTable::parse(text).ok(),
        }
    }

    /// Where `path` is written: the value of its last segment, or the
    /// nearest enclosing entry the file has (a missing field is placed at
    /// its table).
    pub fn locate(&self, path: &str) -> Option<Position> {
        let tree = self.tree.as_ref()?;
        let mut span: Range<usize> = tree.span();
        let mut table = Some(tree.get_ref());
        let mut value: Option<&toml::de::DeValue<'_>> = None;
        for seg in segments(path) {
            let next = match (seg, table, value) {
                (Segment::Key(k), Some(t), _) => t.get(k),
                (Segment::Key(k), None, Some(toml::de::DeValue::Table(t))) => t.get(k),
                (Segment::Index(i), _, Some(toml::de::DeValue::Array(a))) => a.get(i),
                _ => None,
            };
            let Some(next) = next else { break };
            span = next.span();
            table = None;
            value = Some(next.get_ref());
        }
        Some(position(self.text, span.start))
    }
}

enum Segment<'p> {
    Key(&'p str),
    Index(usize),
}

/// `a[1].b` -> Key(a), Index(1), Key(b).
fn segments(path: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (key, rest) = part.split_once('[').unwrap_or((part, ""));
        if !key.is_empty() {
            out.push(Segment::Key(key));
        }
        for idx in rest.split('[') {
            if let Ok(i) = idx.trim_end_matches(']').parse() {
                out.push(Segment::Index(i));
            }
        }
    }
    out
}

/// Writes `file` in the format [`parse`] reads, under a header comment.
/// Floats are written in Rust's shortest form that reads back to the same
/// bits, so a file exported and applied again plans nothing.
pub fn render(file: &File, header: &str) -> Result<String, toml::ser::Error> {
    let body = toml::to_string(file)?;
    let mut out = String::new();
    for line in header.lines() {
        out.push_str("# ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&body);
    Ok(out)
}

/// A TOML datetime from a time (UTC, to the nanosecond the store keeps).
pub fn datetime(t: &chrono::DateTime<chrono::Utc>) -> Datetime {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
        .parse()
        .unwrap_or_else(|e| unreachable!("RFC 3339 from chrono is a TOML datetime: {e}"))
}

/// The time a TOML datetime names; `None` unless it has a date, a time
/// and an offset (a local time names no instant).
pub fn time(d: &Datetime) -> Option<chrono::DateTime<chrono::Utc>> {
    d.offset?;
    d.time?;
    chrono::DateTime::parse_from_rfc3339(&d.to_string())
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_starter_file_parses_with_one_of_each() {
        let f = parse(STARTER).unwrap();
        assert_eq!(f.goals.len(), 1);
        assert_eq!(f.metrics.len(), 1);
        assert_eq!(f.hypotheses.len(), 1);
    }

    #[test]
    fn paths_are_placed_on_their_line_and_column() {
        let text = "[[goals]]\nid = \"G1\"\n\n[[goals]]\nid = \"G2\"\n  weight = 3\n";
        let l = Locator::new(text);
        assert_eq!(
            l.locate("goals[1].weight"),
            Some(Position {
                line: 6,
                column: 12
            })
        );
        assert_eq!(l.locate("goals[0].id").map(|p| p.line), Some(2));
        // A missing field is placed at its entry's header.
        assert_eq!(l.locate("goals[1].title").map(|p| p.line), Some(4));
    }

    #[test]
    fn paths_into_inline_arrays_and_tables_are_placed() {
        let text = "[[items]]\nsource = \"web\"\nlinks = [\n  { hypothesis = \"H1\" },\n  { hypothesis = \"H2\", contribution = 2 },\n]\n";
        let l = Locator::new(text);
        assert_eq!(
            l.locate("items[0].links[1].contribution"),
            Some(Position {
                line: 5,
                column: 39
            })
        );
        assert_eq!(
            l.locate("items[0].links[0].hypothesis"),
            Some(Position {
                line: 4,
                column: 18
            })
        );
    }

    #[test]
    fn a_syntax_error_has_a_position() {
        let e = parse("[[goals]]\nid = \n").unwrap_err();
        assert_eq!(e.at.map(|p| p.line), Some(2), "{e:?}");
    }

    #[test]
    fn a_metric_source_reads_and_round_trips() {
        let text = r#"
[[metrics]]
id = "conv"
name = "Conversion"
baseline = 2.1
target = 3.5

[metrics.source]
kind = "http_json"
url = "https://stats.example.com/conv"
points_pointer = "/data/points"
poll_minutes = 60
"#;
        let f = parse(text).expect("parses");
        let Some(crate::domain::MetricSource::HttpJson(h)) = &f.metrics[0].source else {
            panic!("an http_json source: {:?}", f.metrics[0].source);
        };
        assert_eq!(h.points_pointer, "/data/points");
        assert_eq!(h.time_field, "at");
        assert_eq!(h.poll_minutes, Some(60));
        let back = parse(&render(&f, "").expect("renders")).expect("reads back");
        assert_eq!(back, f);
        // A misspelt setting is an error, not silently ignored.
        let e = parse(&text.replace("points_pointer", "points_ptr")).unwrap_err();
        assert!(format!("{e:?}").contains("points_ptr"), "{e:?}");
    }

    #[test]
    fn floats_and_times_round_trip_exactly() {
        let t = chrono::DateTime::from_timestamp(1_700_000_000, 123_456_789).unwrap();
        let f = File {
            metrics: vec![MetricEntry {
                id: "m".into(),
                name: "M".into(),
                unit: String::new(),
                baseline: 0.1 + 0.2,
                target: 1e-7,
                cadence_days: Some(1.0 / 3.0),
                source: None,
                observations: vec![ObservationEntry {
                    at: datetime(&t),
                    value: 12345.678901234567,
                }],
            }],
            ..File::default()
        };
        let text = render(&f, "test").unwrap();
        let back = parse(&text).unwrap();
        assert_eq!(back, f, "{text}");
        assert_eq!(time(&back.metrics[0].observations[0].at), Some(t));
    }
}
