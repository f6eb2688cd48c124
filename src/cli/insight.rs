//! `plumbline insights add|list|forget|import`: customer evidence, who asked
//! for what, through a running server's `InsightService`.
//!
//! `import` reads a CSV (header row) or JSON lines file and stores it whole
//! or not at all: every line is parsed and checked here first (with the
//! same checks the server makes, [`Insight::problems`]), every bad line is
//! reported with its line number and field, and only a file without one is
//! sent, in one `RecordInsights` call (one transaction). What only the
//! server can check (that the items and hypotheses named exist) comes back
//! as `insights[i].field` and is reported at the line it came from. Parsing
//! is split from I/O ([`parse`] takes the text) so that it is tested
//! without a server.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};
use tonic_types::StatusExt;

use super::Conn;
use super::args;
use super::client::{connect, rpc_error};
use super::output::{clip, print_rows_or};
use crate::domain::{Importance, Insight, InsightKind, MAX_INSIGHTS_PER_CALL};
use crate::proto as pb;
use pb::insight_service_client::InsightServiceClient;

/// The largest file `insights import` reads: one call carries it all, and
/// gRPC's default message limit is 4 MiB.
pub const MAX_IMPORT_BYTES: u64 = 3 << 20;

#[derive(Debug, Subcommand)]
pub enum InsightsCommand {
    /// Record one insight (RecordInsights): a quote, ticket, interview
    /// note, survey answer or vote, from one customer, linked to items,
    /// hypotheses or desired outcomes.
    Add(AddArgs),
    /// List insights (ListInsights), by item, hypothesis, customer or
    /// segment.
    List(ListArgs),
    /// Erase every insight of one customer (ForgetCustomer; admin); prints
    /// how many.
    Forget {
        /// The customer's pseudonymous id, as recorded.
        customer: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Record the insights of a CSV (header row) or JSON lines file, all or
    /// none: every bad line is reported by line number and field and then
    /// nothing is written. Columns: source, external_id, kind, text, date,
    /// url, customer, segment, importance, items, hypotheses, outcomes (in
    /// CSV, several ids separated by spaces or ';'; in JSON lines, arrays).
    Import(ImportArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum KindArg {
    Quote,
    Ticket,
    InterviewNote,
    SurveyAnswer,
    Vote,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ImportanceArg {
    NotImportant,
    NiceToHave,
    Important,
    Critical,
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// Where it came from ("zendesk", "interviews", a tracker source id).
    #[arg(long)]
    source: String,
    /// Its id at the source; recording the same source and id again
    /// replaces it.
    #[arg(long)]
    id: String,
    /// The customer's pseudonymous id (your team's choice).
    #[arg(long)]
    customer: String,
    #[arg(long, value_enum, default_value = "quote")]
    kind: KindArg,
    /// What the customer said (at most 4 KiB).
    #[arg(long, default_value = "")]
    text: String,
    /// When they said it: RFC 3339 or a date (2026-11-20).
    #[arg(long, value_parser = args::time)]
    date: Option<prost_types::Timestamp>,
    /// An http(s) link to it at the source.
    #[arg(long, default_value = "")]
    url: String,
    /// The customer's segment id.
    #[arg(long, default_value = "")]
    segment: String,
    #[arg(long, value_enum)]
    importance: Option<ImportanceArg>,
    /// An item it asks for (SOURCE/EXTERNAL_ID); repeatable.
    #[arg(long = "item")]
    items: Vec<String>,
    /// A hypothesis it supports; repeatable.
    #[arg(long = "hypothesis")]
    hypotheses: Vec<String>,
    /// A desired outcome it speaks to; repeatable.
    #[arg(long = "outcome")]
    outcomes: Vec<String>,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only insights linked to this item.
    #[arg(long)]
    item: Option<String>,
    /// Only insights linked to this hypothesis.
    #[arg(long)]
    hypothesis: Option<String>,
    /// Only this customer's insights.
    #[arg(long)]
    customer: Option<String>,
    /// Only insights of this segment.
    #[arg(long)]
    segment: Option<String>,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FileFormat {
    /// Comma-separated with a header row naming the columns.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The file (at most 3 MiB and 2000 insights).
    file: PathBuf,
    /// The file's format; by default from its extension (.csv, .jsonl).
    #[arg(long, value_enum)]
    format: Option<FileFormat>,
    /// Check the file and print what would be recorded; send nothing
    /// (whether the items and hypotheses named exist is checked only by
    /// the server, on a real import).
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    conn: Conn,
}

/// A line refused, and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Refusal {
    pub line: u64,
    /// The column (`customer`, `items`), or `line` for the line as a whole.
    pub field: String,
    pub reason: String,
}

impl Refusal {
    fn new(line: u64, field: &str, reason: impl Into<String>) -> Self {
        Refusal {
            line,
            field: field.to_string(),
            reason: reason.into(),
        }
    }
}

/// Insights read from a file, each with its line.
#[derive(Debug, Default)]
pub struct Parsed {
    pub insights: Vec<(u64, Insight)>,
    pub refused: Vec<Refusal>,
}

/// The column a domain field is read from, for messages.
fn column_of(field: &str) -> &str {
    let base = field.split('[').next().unwrap_or(field);
    match base {
        "segment_id" => "segment",
        "item_keys" => "items",
        "hypothesis_ids" => "hypotheses",
        "outcome_ids" => "outcomes",
        "insight_time" => "date",
        other => other,
    }
}

/// The text fields of one line, by column, before they are typed.
#[derive(Debug, Default)]
struct Raw {
    source: String,
    external_id: String,
    kind: String,
    text: String,
    date: String,
    url: String,
    customer: String,
    segment: String,
    importance: String,
    items: Vec<String>,
    hypotheses: Vec<String>,
    outcomes: Vec<String>,
}

fn typed(line: u64, raw: Raw, refused: &mut Vec<Refusal>) -> Option<Insight> {
    let before = refused.len();
    let kind = if raw.kind.trim().is_empty() {
        Some(InsightKind::Quote)
    } else {
        InsightKind::parse(&raw.kind)
    };
    if kind.is_none() {
        refused.push(Refusal::new(
            line,
            "kind",
            format!(
                "{:?} is not one of quote, ticket, interview_note, survey_answer, vote",
                clip(&raw.kind, 40)
            ),
        ));
    }
    let importance = if raw.importance.trim().is_empty() {
        None
    } else {
        let i = Importance::parse(&raw.importance);
        if i.is_none() {
            refused.push(Refusal::new(
                line,
                "importance",
                format!(
                    "{:?} is not one of not_important, nice_to_have, important, critical",
                    clip(&raw.importance, 40)
                ),
            ));
        }
        i
    };
    let time = if raw.date.trim().is_empty() {
        None
    } else {
        match args::time(raw.date.trim()) {
            Ok(ts) => crate::api::from_timestamp(&ts),
            Err(e) => {
                refused.push(Refusal::new(line, "date", e));
                None
            }
        }
    };
    let insight = Insight {
        source: raw.source,
        external_id: raw.external_id,
        kind: kind.unwrap_or(InsightKind::Quote),
        text: raw.text,
        time,
        url: raw.url,
        customer: raw.customer,
        segment_id: raw.segment,
        importance,
        item_keys: raw.items,
        hypothesis_ids: raw.hypotheses,
        outcome_ids: raw.outcomes,
    };
    for (field, reason) in insight.problems() {
        refused.push(Refusal::new(line, column_of(&field), reason));
    }
    (refused.len() == before).then_some(insight)
}

/// Several ids in one CSV cell: separated by spaces, ';' or ','.
fn ids(cell: &str) -> Vec<String> {
    cell.split([' ', ';', ','])
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

const COLUMNS: [&str; 12] = [
    "source",
    "external_id",
    "kind",
    "text",
    "date",
    "url",
    "customer",
    "segment",
    "importance",
    "items",
    "hypotheses",
    "outcomes",
];

fn parse_csv(text: &str) -> Parsed {
    let mut p = Parsed::default();
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(text.as_bytes());
    let headers = match reader.headers() {
        Ok(h) => h.clone(),
        Err(e) => {
            p.refused.push(Refusal::new(
                1,
                "line",
                format!("cannot read the header: {e}"),
            ));
            return p;
        }
    };
    let names: Vec<String> = headers
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    for n in &names {
        if !COLUMNS.contains(&n.as_str()) {
            p.refused.push(Refusal::new(
                1,
                "line",
                format!(
                    "unknown column {n:?}; the columns are {}",
                    COLUMNS.join(", ")
                ),
            ));
        }
    }
    for required in ["source", "external_id", "customer"] {
        if !names.iter().any(|n| n == required) {
            p.refused.push(Refusal::new(
                1,
                "line",
                format!("the header must name the column {required}"),
            ));
        }
    }
    if !p.refused.is_empty() {
        return p;
    }
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |pos| pos.line());
                p.refused.push(Refusal::new(line, "line", e.to_string()));
                continue;
            }
        };
        let line = record.position().map_or(0, |pos| pos.line());
        if record.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        if record.len() != names.len() {
            p.refused.push(Refusal::new(
                line,
                "line",
                format!(
                    "has {} fields where the header has {}",
                    record.len(),
                    names.len()
                ),
            ));
            continue;
        }
        let mut raw = Raw::default();
        for (name, cell) in names.iter().zip(record.iter()) {
            let v = cell.trim().to_string();
            match name.as_str() {
                "source" => raw.source = v,
                "external_id" => raw.external_id = v,
                "kind" => raw.kind = v,
                // The text is kept as written, spaces and all.
                "text" => raw.text = cell.to_string(),
                "date" => raw.date = v,
                "url" => raw.url = v,
                "customer" => raw.customer = v,
                "segment" => raw.segment = v,
                "importance" => raw.importance = v,
                "items" => raw.items = ids(&v),
                "hypotheses" => raw.hypotheses = ids(&v),
                _ => raw.outcomes = ids(&v),
            }
        }
        if let Some(i) = typed(line, raw, &mut p.refused) {
            p.insights.push((line, i));
        }
    }
    p
}

fn parse_jsonl(text: &str) -> Parsed {
    let mut p = Parsed::default();
    for (n, l) in text.lines().enumerate() {
        let line = n as u64 + 1;
        if l.trim().is_empty() {
            continue;
        }
        let v: Value = match serde_json::from_str(l) {
            Ok(Value::Object(o)) => Value::Object(o),
            Ok(_) => {
                p.refused
                    .push(Refusal::new(line, "line", "is not a JSON object"));
                continue;
            }
            Err(e) => {
                p.refused
                    .push(Refusal::new(line, "line", format!("is not JSON: {e}")));
                continue;
            }
        };
        let before = p.refused.len();
        if let Some(o) = v.as_object() {
            for k in o.keys() {
                if !COLUMNS.contains(&k.as_str()) {
                    p.refused.push(Refusal::new(
                        line,
                        k,
                        format!("is not a field; the fields are {}", COLUMNS.join(", ")),
                    ));
                }
            }
        }
        let mut text_of = |k: &str| -> String {
            match &v[k] {
                Value::Null => String::new(),
                Value::String(s) => s.clone(),
                Value::Number(n) if k == "external_id" => n.to_string(),
                _ => {
                    p.refused.push(Refusal::new(line, k, "must be a string"));
                    String::new()
                }
            }
        };
        let mut raw = Raw {
            source: text_of("source"),
            external_id: text_of("external_id"),
            kind: text_of("kind"),
            text: text_of("text"),
            date: text_of("date"),
            url: text_of("url"),
            customer: text_of("customer"),
            segment: text_of("segment"),
            importance: text_of("importance"),
            ..Raw::default()
        };
        for (k, slot) in [
            ("items", &mut raw.items),
            ("hypotheses", &mut raw.hypotheses),
            ("outcomes", &mut raw.outcomes),
        ] {
            match &v[k] {
                Value::Null => {}
                Value::Array(a) if a.iter().all(Value::is_string) => {
                    *slot = a
                        .iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect();
                }
                _ => p
                    .refused
                    .push(Refusal::new(line, k, "must be an array of strings")),
            }
        }
        if p.refused.len() > before {
            continue;
        }
        if let Some(i) = typed(line, raw, &mut p.refused) {
            p.insights.push((line, i));
        }
    }
    p
}

/// Reads `text` as `format`: the insights with their lines, and every line
/// refused. More than [`MAX_INSIGHTS_PER_CALL`] insights, or one (source,
/// external id) twice, are refusals too, since the file goes in one call.
pub fn parse(text: &str, format: FileFormat) -> Parsed {
    let mut p = match format {
        FileFormat::Csv => parse_csv(text),
        FileFormat::Jsonl => parse_jsonl(text),
    };
    let mut seen = std::collections::HashMap::new();
    for (line, i) in &p.insights {
        if let Some(first) = seen.insert(i.key(), *line) {
            p.refused.push(Refusal::new(
                *line,
                "external_id",
                format!(
                    "{:?} from {:?} is on line {first} already",
                    clip(&i.external_id, 40),
                    i.source
                ),
            ));
        }
    }
    if p.insights.len() > MAX_INSIGHTS_PER_CALL {
        p.refused.push(Refusal::new(
            p.insights[MAX_INSIGHTS_PER_CALL].0,
            "line",
            format!("a file holds at most {MAX_INSIGHTS_PER_CALL} insights; split it"),
        ));
    }
    p.refused.sort();
    p
}

fn format_of(path: &Path, format: Option<FileFormat>) -> FileFormat {
    if let Some(f) = format {
        return f;
    }
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("csv") => FileFormat::Csv,
        Some("jsonl" | "ndjson" | "json") => FileFormat::Jsonl,
        _ => args::usage_error(
            &["insights", "import"],
            format!(
                "{}: cannot tell the format from the extension; name it with --format csv or --format jsonl",
                path.display()
            ),
        ),
    }
}

fn kind_pb(k: InsightKind) -> pb::InsightKind {
    match k {
        InsightKind::Quote => pb::InsightKind::Quote,
        InsightKind::Ticket => pb::InsightKind::Ticket,
        InsightKind::InterviewNote => pb::InsightKind::InterviewNote,
        InsightKind::SurveyAnswer => pb::InsightKind::SurveyAnswer,
        InsightKind::Vote => pb::InsightKind::Vote,
    }
}

fn to_pb(i: &Insight) -> pb::Insight {
    pb::Insight {
        source: i.source.clone(),
        external_id: i.external_id.clone(),
        kind: kind_pb(i.kind) as i32,
        text: i.text.clone(),
        insight_time: i.time.as_ref().map(crate::api::timestamp),
        url: i.url.clone(),
        customer: i.customer.clone(),
        segment_id: i.segment_id.clone(),
        importance: crate::api::importance_to_pb(i.importance) as i32,
        item_keys: i.item_keys.clone(),
        hypothesis_ids: i.hypothesis_ids.clone(),
        outcome_ids: i.outcome_ids.clone(),
    }
}

fn print_refusals(refused: &[Refusal]) {
    for r in refused {
        eprintln!("line {}: {}: {}", r.line, r.field, r.reason);
    }
}

async fn import(a: ImportArgs) -> Result<()> {
    let format = format_of(&a.file, a.format);
    let meta =
        std::fs::metadata(&a.file).with_context(|| format!("cannot read {}", a.file.display()))?;
    if meta.len() > MAX_IMPORT_BYTES {
        anyhow::bail!(
            "{} is {} bytes; at most {MAX_IMPORT_BYTES} are imported at once (one call, stored whole): split it",
            a.file.display(),
            meta.len()
        );
    }
    // Read through the bound as well: a pipe or /dev/stdin says 0 bytes.
    let mut bytes = Vec::new();
    {
        use std::io::Read;
        std::fs::File::open(&a.file)
            .with_context(|| format!("cannot read {}", a.file.display()))?
            .take(MAX_IMPORT_BYTES + 1)
            .read_to_end(&mut bytes)
            .with_context(|| format!("cannot read {}", a.file.display()))?;
    }
    if bytes.len() as u64 > MAX_IMPORT_BYTES {
        anyhow::bail!(
            "{} holds more than {MAX_IMPORT_BYTES} bytes; at most that many are imported at once (one call, stored whole): split it",
            a.file.display()
        );
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("cannot read {} as UTF-8 text", a.file.display()))?;
    let parsed = parse(&text, format);
    if !parsed.refused.is_empty() {
        print_refusals(&parsed.refused);
        anyhow::bail!(
            "{} bad line(s) in {}; nothing was recorded",
            parsed
                .refused
                .iter()
                .map(|r| r.line)
                .collect::<std::collections::BTreeSet<_>>()
                .len(),
            a.file.display()
        );
    }
    if parsed.insights.is_empty() {
        anyhow::bail!("{} holds no insight", a.file.display());
    }
    if a.dry_run {
        let n = parsed.insights.len();
        if a.conn.json {
            println!("{}", json!({ "dry_run": true, "insights": n }));
        } else {
            println!("{n} insight(s) read; nothing sent (--dry-run)");
        }
        return Ok(());
    }
    let mut c = InsightServiceClient::new(connect(&a.conn.server).await?);
    let answer = c
        .record_insights(pb::RecordInsightsRequest {
            insights: parsed.insights.iter().map(|(_, i)| to_pb(i)).collect(),
        })
        .await;
    let r = match answer {
        Ok(r) => r.into_inner(),
        Err(status) => {
            let lines = server_refusals(&status, &parsed.insights);
            if lines.is_empty() {
                return Err(rpc_error(status));
            }
            print_refusals(&lines);
            anyhow::bail!(
                "the server refused {} line(s) of {}; nothing was recorded",
                lines
                    .iter()
                    .map(|r| r.line)
                    .collect::<std::collections::BTreeSet<_>>()
                    .len(),
                a.file.display()
            );
        }
    };
    print_counts(a.conn.json, &r);
    Ok(())
}

/// The server's field violations (`insights[3].item_keys[0]`) at the lines
/// the insights came from.
fn server_refusals(status: &tonic::Status, insights: &[(u64, Insight)]) -> Vec<Refusal> {
    let Some(bad) = status.get_details_bad_request() else {
        return Vec::new();
    };
    let mut out: Vec<Refusal> = bad
        .field_violations
        .iter()
        .filter_map(|v| {
            let rest = v.field.strip_prefix("insights[")?;
            let (n, field) = rest.split_once("].")?;
            let (line, _) = insights.get(n.parse::<usize>().ok()?)?;
            Some(Refusal::new(*line, column_of(field), v.description.clone()))
        })
        .collect();
    out.sort();
    out
}

fn print_counts(json: bool, r: &pb::RecordInsightsResponse) {
    if json {
        println!(
            "{}",
            json!({
                "created": r.created_count,
                "updated": r.updated_count,
                "unchanged": r.unchanged_count,
            })
        );
    } else {
        println!(
            "recorded: {} new, {} changed, {} unchanged",
            r.created_count, r.updated_count, r.unchanged_count
        );
    }
}

async fn add(a: AddArgs) -> Result<()> {
    let kind = match a.kind {
        KindArg::Quote => pb::InsightKind::Quote,
        KindArg::Ticket => pb::InsightKind::Ticket,
        KindArg::InterviewNote => pb::InsightKind::InterviewNote,
        KindArg::SurveyAnswer => pb::InsightKind::SurveyAnswer,
        KindArg::Vote => pb::InsightKind::Vote,
    };
    let importance = match a.importance {
        None => pb::Importance::Unspecified,
        Some(ImportanceArg::NotImportant) => pb::Importance::NotImportant,
        Some(ImportanceArg::NiceToHave) => pb::Importance::NiceToHave,
        Some(ImportanceArg::Important) => pb::Importance::Important,
        Some(ImportanceArg::Critical) => pb::Importance::Critical,
    };
    let mut c = InsightServiceClient::new(connect(&a.conn.server).await?);
    let r = c
        .record_insights(pb::RecordInsightsRequest {
            insights: vec![pb::Insight {
                source: a.source,
                external_id: a.id,
                kind: kind as i32,
                text: a.text,
                insight_time: a.date,
                url: a.url,
                customer: a.customer,
                segment_id: a.segment,
                importance: importance as i32,
                item_keys: a.items,
                hypothesis_ids: a.hypotheses,
                outcome_ids: a.outcomes,
            }],
        })
        .await
        .map_err(rpc_error)?
        .into_inner();
    print_counts(a.conn.json, &r);
    Ok(())
}

fn row(i: &pb::Insight, json: bool) -> Value {
    let mut v = super::json::message("Insight", i);
    if !json {
        v["text"] = Value::String(clip(&i.text, 50));
        v["targets"] = Value::String(
            i.item_keys
                .iter()
                .chain(&i.hypothesis_ids)
                .chain(&i.outcome_ids)
                .cloned()
                .collect::<Vec<_>>()
                .join(" "),
        );
    }
    v
}

async fn list(a: ListArgs) -> Result<()> {
    let mut c = InsightServiceClient::new(connect(&a.conn.server).await?);
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let r = c
            .list_insights(pb::ListInsightsRequest {
                item_key: a.item.clone().unwrap_or_default(),
                hypothesis_id: a.hypothesis.clone().unwrap_or_default(),
                customer: a.customer.clone().unwrap_or_default(),
                segment_id: a.segment.clone().unwrap_or_default(),
                page_size: 1000,
                page_token: token,
            })
            .await
            .map_err(rpc_error)?
            .into_inner();
        all.extend(r.insights);
        if r.next_page_token.is_empty() {
            break;
        }
        token = r.next_page_token;
    }
    let rows: Vec<Value> = all.iter().map(|i| row(i, a.conn.json)).collect();
    print_rows_or(
        a.conn.json,
        &rows,
        &[
            ("source", "source"),
            ("id", "external_id"),
            ("kind", "kind"),
            ("customer", "customer"),
            ("segment", "segment_id"),
            ("importance", "importance"),
            ("for", "targets"),
            ("text", "text"),
        ],
        "no insight matches",
    );
    Ok(())
}

async fn forget(customer: &str, conn: &Conn) -> Result<()> {
    let mut c = InsightServiceClient::new(connect(&conn.server).await?);
    let r = c
        .forget_customer(pb::ForgetCustomerRequest {
            customer: customer.to_string(),
        })
        .await
        .map_err(rpc_error)?
        .into_inner();
    if conn.json {
        println!("{}", json!({ "forgotten": r.forgotten_count }));
    } else {
        println!(
            "erased {} insight(s) of customer {customer:?}",
            r.forgotten_count
        );
    }
    Ok(())
}

pub async fn run(command: InsightsCommand) -> Result<()> {
    match command {
        InsightsCommand::Add(a) => add(a).await,
        InsightsCommand::List(a) => list(a).await,
        InsightsCommand::Forget { customer, conn } => forget(&customer, &conn).await,
        InsightsCommand::Import(a) => import(a).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_with_bad_lines_names_each_line_and_field() {
        let text = "source,external_id,kind,text,customer,segment,importance,items\n\
                    zendesk,T-1,quote,\"I want to pay by phone, fast\",c1,mobile,critical,web/1 web/2\n\
                    zendesk,T-2,shout,loud,c2,,,web/1\n\
                    zendesk,T-3,quote,hi,,,sometimes,web/1\n\
                    zendesk,T-1,quote,again,c3,,,\n";
        let p = parse(text, FileFormat::Csv);
        assert_eq!(p.insights.len(), 2, "{p:?}");
        assert_eq!(p.insights[0].1.item_keys, ["web/1", "web/2"]);
        assert_eq!(p.insights[0].1.text, "I want to pay by phone, fast");
        let got: Vec<(u64, &str)> = p
            .refused
            .iter()
            .map(|r| (r.line, r.field.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (3, "kind"),
                (4, "customer"),
                (4, "importance"),
                (5, "external_id")
            ]
        );
    }

    #[test]
    fn json_lines_read_arrays_and_refuse_wrong_types() {
        let text = r#"{"source":"interviews","external_id":"i-1","kind":"interview_note","text":"n","customer":"c1","items":["web/1"],"date":"2026-11-02"}
{"source":"interviews","external_id":"i-2","text":"n","customer":"c1","items":"web/1"}

not json"#;
        let p = parse(text, FileFormat::Jsonl);
        assert_eq!(p.insights.len(), 1);
        assert!(p.insights[0].1.time.is_some());
        let got: Vec<(u64, &str)> = p
            .refused
            .iter()
            .map(|r| (r.line, r.field.as_str()))
            .collect();
        assert_eq!(got, [(2, "items"), (4, "line")]);
    }
}
