//! Printing: every client command builds JSON rows once, then prints them as
//! a table for people or as JSON for scripts, so both always agree.

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{Cell, CellAlignment, ContentArrangement, Table};
use serde_json::Value;

/// Turns `SCORE_FLAG_STALE_METRIC` into `stale_metric`.
pub fn enum_name(full: &str, prefix: &str) -> String {
    full.strip_prefix(prefix)
        .unwrap_or(full)
        .to_ascii_lowercase()
}

/// A proto timestamp as RFC 3339, or null.
pub fn time(ts: Option<&prost_types::Timestamp>) -> Value {
    ts.and_then(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
        .map_or(Value::Null, |t| {
            Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        })
}

fn cell_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        // Text from trackers and callers (titles, quotes) may hold escape
        // sequences that would drive the terminal: shown as U+FFFD.
        Value::String(s) => s
            .chars()
            .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
            .collect(),
        Value::Bool(b) => if *b { "yes" } else { "" }.to_string(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => format_number(f),
            _ => n.to_string(),
        },
        Value::Array(a) => a.iter().map(cell_text).collect::<Vec<_>>().join(", "),
        Value::Object(_) => v.to_string(),
    }
}

pub use crate::chart::format_number;

/// Shortens text for a table cell.
pub fn clip(s: &str, max: usize) -> String {
    let s = s.lines().next().unwrap_or_default();
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// Prints `rows` as a table of `columns` (header, field), or as a JSON array.
pub fn print_rows(json: bool, rows: &[Value], columns: &[(&str, &str)]) {
    if json {
        println!("{}", serde_json::to_string_pretty(rows).unwrap_or_default());
        return;
    }
    println!("{}", table(rows, columns));
}

/// Prints `rows` as [`print_rows`] does, but a table without rows as `hint`
/// instead: what to do next on a server that holds none yet. `--json`
/// prints `[]`, which scripts expect.
pub fn print_rows_or(json: bool, rows: &[Value], columns: &[(&str, &str)], hint: &str) {
    if rows.is_empty() && !json {
        println!("{hint}");
        return;
    }
    print_rows(json, rows, columns);
}

/// Prints one resource: a one-row table, or a JSON object with `--json`.
pub fn print_one(json: bool, row: &Value, columns: &[(&str, &str)]) {
    if json {
        println!("{}", serde_json::to_string_pretty(row).unwrap_or_default());
        return;
    }
    println!("{}", table(std::slice::from_ref(row), columns));
}

/// A table of `rows`; numeric columns align right.
pub fn table(rows: &[Value], columns: &[(&str, &str)]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic);
    t.set_header(columns.iter().map(|(h, _)| Cell::new(h)));
    for r in rows {
        t.add_row(columns.iter().map(|(_, f)| {
            let v = &r[*f];
            let c = Cell::new(cell_text(v));
            if v.is_number() {
                c.set_alignment(CellAlignment::Right)
            } else {
                c
            }
        }));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_never_reach_the_terminal() {
        let hostile = Value::String("Pay\u{1b}[2J now\u{7}\r".into());
        assert_eq!(cell_text(&hostile), "Pay\u{FFFD}[2J now\u{FFFD}\u{FFFD}");
    }

    #[test]
    fn numbers_and_names_read_well() {
        assert_eq!(format_number(0.1250), "0.125");
        assert_eq!(format_number(3.0), "3");
        assert_eq!(format_number(0.0), "0");
        assert_eq!(format_number(0.00012), "0.00012");
        assert_eq!(format_number(0.000123456), "0.000123");
        assert_eq!(format_number(0.009664), "0.00966");
        assert_eq!(format_number(0.7038), "0.704");
        assert_eq!(format_number(1234.56), "1235");
        assert_eq!(format_number(123456.0), "123456");
        assert_eq!(format_number(-0.5), "-0.5");
        assert_eq!(format_number(9.996), "10");
        assert_eq!(format_number(-1e-20), "0");
        assert_eq!(
            enum_name("SCORE_FLAG_STALE_METRIC", "SCORE_FLAG_"),
            "stale_metric"
        );
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("ab\ncd", 4), "ab");
    }
}
