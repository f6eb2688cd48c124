//! `plumbline release|experiment|validate|evidence`: value checked after
//! release. A deploy pipeline records what it shipped, an experimentation
//! platform its A/B results; `validate` turns releases and observations into
//! evidence and prints each verdict with the numbers it rests on; `evidence`
//! tells a hypothesis' story, release by release.

use anyhow::Result;
use clap::Args;
use serde_json::{Value, json};

use super::Conn;
use super::args;
use super::client::{connect, rpc_error};
use super::json;
use super::output::{enum_name, format_number, print_rows, print_rows_or, time};
use crate::proto as pb;
use pb::validation_service_client::ValidationServiceClient;

#[derive(Debug, Args)]
pub struct ReleaseArgs {
    /// Keys of the released items, SOURCE/EXTERNAL_ID (e.g. web/412 web/415).
    #[arg(required = true, value_name = "ITEM")]
    items: Vec<String>,
    /// Release id, so that a pipeline that retries records it once (e.g.
    /// deploy-2026-11-20.3) [default: generated].
    #[arg(long)]
    id: Option<String>,
    /// When it shipped, RFC 3339 or a date (e.g. 2026-11-20T09:00:00Z)
    /// [default: now].
    #[arg(long, value_parser = args::time)]
    at: Option<prost_types::Timestamp>,
    /// A note kept with the release (e.g. "v2.3.0").
    #[arg(long, default_value = "")]
    note: String,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Debug, Args)]
pub struct ExperimentArgs {
    /// Hypothesis id the experiment tested (e.g. H-1).
    hypothesis: String,
    /// Measured absolute lift on the hypothesis' metric, in its unit (e.g.
    /// 0.4 for +0.4 points of conversion).
    #[arg(long, allow_negative_numbers = true)]
    lift: f64,
    /// Confidence interval of the lift, LOW HIGH (e.g. --ci 0.1 0.7).
    #[arg(long, num_args = 2, value_names = ["LOW", "HIGH"], allow_negative_numbers = true, required = true)]
    ci: Vec<f64>,
    /// When the result was read, RFC 3339 or a date [default: now].
    #[arg(long, value_parser = args::time)]
    at: Option<prost_types::Timestamp>,
    /// Where it came from (e.g. "optimizely checkout-test-7").
    #[arg(long, default_value = "")]
    source: String,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Print what a validation would conclude now, store nothing and move
    /// no hypothesis.
    #[arg(long)]
    dry_run: bool,
    /// Validate as of this time (replaying a history imported after the
    /// fact), RFC 3339 or a date (e.g. 2026-11-30) [default: now].
    #[arg(long, value_parser = args::time)]
    as_of: Option<prost_types::Timestamp>,
    /// Also releases whose after-window has not closed yet.
    #[arg(long)]
    open: bool,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Debug, Args)]
pub struct EvidenceArgs {
    /// Hypothesis id (e.g. H-1).
    hypothesis: String,
    #[command(flatten)]
    conn: Conn,
}

async fn client(conn: &Conn) -> Result<ValidationServiceClient<super::client::Client>> {
    Ok(ValidationServiceClient::new(connect(&conn.server).await?))
}

pub async fn release(a: ReleaseArgs) -> Result<()> {
    let r = client(&a.conn)
        .await?
        .record_release(pb::RecordReleaseRequest {
            release_id: a.id.unwrap_or_default(),
            item_keys: a.items,
            release_time: a.at,
            note: a.note,
        })
        .await
        .map_err(rpc_error)?
        .into_inner()
        .release
        .unwrap_or_default();
    if a.conn.json {
        let out = json::message("Release", &r);
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "recorded release {} at {}: {}{}",
            r.id,
            time(r.release_time.as_ref()).as_str().unwrap_or("now"),
            r.item_keys.join(", "),
            if r.note.is_empty() {
                String::new()
            } else {
                format!(" ({})", r.note)
            }
        );
        println!("`plumbline validate` judges it once its metrics' after-window has closed");
    }
    Ok(())
}

pub async fn experiment(a: ExperimentArgs) -> Result<()> {
    // clap takes exactly two numbers; their order is ours to check.
    let (low, high) = match a.ci.as_slice() {
        [low, high] => (*low, *high),
        _ => args::usage_error(
            &["experiment"],
            "--ci takes two numbers, LOW HIGH (e.g. --ci 0.1 0.7)",
        ),
    };
    if low > high {
        args::usage_error(
            &["experiment"],
            format!("--ci {low} {high}: LOW must not exceed HIGH (e.g. --ci 0.1 0.7)"),
        );
    }
    if !(low..=high).contains(&a.lift) {
        args::usage_error(
            &["experiment"],
            format!("--lift {} must lie within --ci {low} {high}", a.lift),
        );
    }
    let e = client(&a.conn)
        .await?
        .record_experiment_result(pb::RecordExperimentResultRequest {
            hypothesis_id: a.hypothesis,
            lift: a.lift,
            ci_low: low,
            ci_high: high,
            result_time: a.at,
            source: a.source,
        })
        .await
        .map_err(rpc_error)?
        .into_inner()
        .evidence
        .unwrap_or_default();
    if a.conn.json {
        println!("{}", serde_json::to_string_pretty(&evidence_row(&e, true))?);
    } else {
        print_rows(false, &[evidence_row(&e, false)], EVIDENCE_COLUMNS);
        println!("{READING}");
    }
    Ok(())
}

pub async fn validate(a: ValidateArgs) -> Result<()> {
    let ev = client(&a.conn)
        .await?
        .validate_releases(pb::ValidateReleasesRequest {
            include_open_windows: a.open,
            as_of: a.as_of,
            dry_run: a.dry_run,
        })
        .await
        .map_err(rpc_error)?
        .into_inner();
    if a.dry_run && !ev.dry_run {
        // A server from before dry_run ignored it: what it answered was
        // stored. Say so loudly rather than print it as a preview.
        eprintln!(
            "warning: the server does not know --dry-run (it is older than this client) and \
             validated for real: the verdicts below were stored and the hypotheses moved"
        );
    }
    let ev = ev.evidence;
    let rows: Vec<Value> = ev.iter().map(|e| evidence_row(e, a.conn.json)).collect();
    if a.dry_run && !a.conn.json {
        println!("dry run: nothing is stored and no hypothesis moves");
    }
    print_rows_or(
        a.conn.json,
        &rows,
        EVIDENCE_COLUMNS,
        "nothing new to validate: record releases with `plumbline release ITEM...` (or close items in \
their tracker) and the metrics with `plumbline observe`; a release is judged once the after-window \
of its metrics has closed (--open judges it now)",
    );
    if !rows.is_empty() && !a.conn.json {
        println!("{READING}");
    }
    Ok(())
}

pub async fn evidence(a: EvidenceArgs) -> Result<()> {
    let channel = connect(&a.conn.server).await?;
    // The hypothesis first: an unknown id is NOT_FOUND with its name, and
    // the header says where the story starts.
    let mut model = pb::value_model_service_client::ValueModelServiceClient::new(channel.clone());
    let h = model
        .get_hypothesis(pb::GetHypothesisRequest {
            id: a.hypothesis.clone(),
        })
        .await
        .map_err(rpc_error)?
        .into_inner()
        .hypothesis
        .unwrap_or_default();
    let mut ev = ValidationServiceClient::new(channel)
        .get_hypothesis_evidence(pb::GetHypothesisEvidenceRequest {
            hypothesis_id: a.hypothesis.clone(),
        })
        .await
        .map_err(rpc_error)?
        .into_inner()
        .evidence;
    // The API answers newest first; a story reads oldest first, each row's
    // confidence starting where the one before ended.
    ev.reverse();
    let rows: Vec<Value> = ev.iter().map(|e| evidence_row(e, a.conn.json)).collect();
    if a.conn.json {
        print_rows(true, &rows, EVIDENCE_COLUMNS);
        return Ok(());
    }
    // The metric's unit, which the steps are in; the story is told without
    // it if the metric cannot be read.
    let unit = match model
        .get_metric(pb::GetMetricRequest {
            id: h.metric_id.clone(),
        })
        .await
    {
        Ok(m) => m.into_inner().metric.map(|m| m.unit).unwrap_or_default(),
        Err(_) => String::new(),
    };
    println!(
        "{}: {} (confidence now {}, {})",
        h.id,
        h.statement,
        format_number(h.confidence.unwrap_or(0.5)),
        enum_name(h.status().as_str_name(), "HYPOTHESIS_STATUS_")
    );
    println!(
        "metric {}{}",
        h.metric_id,
        if unit.is_empty() {
            String::new()
        } else {
            format!(": steps in {unit}")
        }
    );
    print_rows_or(
        false,
        &rows,
        EVIDENCE_COLUMNS,
        &format!(
            "no evidence for {} yet: release items linked to it (`plumbline release ITEM...`), observe its \
metric, then `plumbline validate`; or record an A/B result with `plumbline experiment {} --lift X --ci LOW HIGH`",
            h.id, h.id
        ),
    );
    if !rows.is_empty() {
        println!("oldest first. {READING}");
    }
    Ok(())
}

/// How to read the evidence columns, printed under each table.
const READING: &str = "step ± se: the fitted step (or A/B lift) in the metric's unit; delivered: the share \
of the hypothesis the release shipped; LLR: what the evidence added to the log-odds, \
confidence after = logistic(logit(before) + LLR)";

const EVIDENCE_COLUMNS: &[(&str, &str)] = &[
    ("hypothesis", "hypothesis_id"),
    ("release", "subject_id"),
    ("method", "method"),
    ("outcome", "outcome"),
    ("step ± se", "step_cell"),
    ("realized", "realized_effect"),
    ("expected", "expected_effect"),
    ("delivered", "delivered"),
    ("points", "points_cell"),
    ("LLR", "log_likelihood_ratio"),
    ("confidence", "confidence_cell"),
    ("status", "status_cell"),
    ("note", "note_cell"),
];

/// Every field of the evidence; for the table, also the cells that join
/// several of them.
fn evidence_row(e: &pb::Evidence, json: bool) -> Value {
    let row = json::message("Evidence", e);
    if json {
        return row;
    }
    let step = match (e.step, e.step_se) {
        (Some(s), Some(se)) => format!("{} ± {}", format_number(s), format_number(se)),
        (Some(s), None) => format_number(s),
        (None, _) => "—".to_string(),
    };
    let mut note = e.reason.clone();
    if e.confounded {
        note = if note.is_empty() {
            "confounded".to_string()
        } else {
            format!("confounded: {note}")
        };
    }
    let status = e
        .status_after
        .strip_prefix("HYPOTHESIS_STATUS_")
        .unwrap_or(&e.status_after)
        .to_ascii_lowercase();
    json::with(
        row,
        json!({
            "step_cell": step,
            "points_cell": format!("{} / {}", e.points_before, e.points_after),
            "confidence_cell": format!(
                "{} -> {}",
                format_number(e.confidence_before),
                format_number(e.confidence_after)
            ),
            "status_cell": status,
            "note_cell": note,
        }),
    )
}
