//! Releases, experiments, observations and evidence on PostgreSQL (see the
//! SQLite backend's trait impl).

use tokio_postgres::Row;

use super::conn::{Attempt, Tx};
use super::{enum_str, json, nanos, parse_enum, parse_json, pg_text, time};
use crate::domain::{Evidence, Experiment, Hypothesis, Release, Time};

/// Stores a release; one already stored under its id is kept as it is.
pub(super) async fn put_release(tx: &Tx<'_>, r: &Release) -> Attempt<()> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO releases (id, release_time, item_keys, origin, note, create_time) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
        )
        .await?;
    tx.execute(
        &stmt,
        &[
            &pg_text(&r.id),
            &nanos(&r.time),
            &json(&r.item_keys),
            &enum_str(&r.origin),
            &pg_text(&r.note),
            &nanos(&chrono::Utc::now()),
        ],
    )
    .await?;
    Ok(())
}

pub(super) async fn list_releases(tx: &Tx<'_>) -> Attempt<Vec<Release>> {
    let stmt = tx
        .prepare_cached("SELECT * FROM releases ORDER BY release_time, id COLLATE \"C\"")
        .await?;
    tx.query(&stmt, &[])
        .await?
        .iter()
        .map(|r| {
            Ok(Release {
                id: r.try_get("id")?,
                time: time(r.try_get("release_time")?),
                item_keys: parse_json(r.try_get("item_keys")?)?,
                origin: parse_enum(r.try_get("origin")?)?,
                note: r.try_get("note")?,
            })
        })
        .collect()
}

/// The closed items that have a close time, by key.
pub(super) async fn closed_items(tx: &Tx<'_>) -> Attempt<Vec<(String, Time)>> {
    let stmt = tx
        .prepare_cached(
            "SELECT key, close_time FROM items WHERE state = 'closed' AND close_time IS NOT NULL \
             ORDER BY key COLLATE \"C\"",
        )
        .await?;
    tx.query(&stmt, &[])
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, time(r.try_get(1)?))))
        .collect()
}

/// Stores an experiment; an id already stored is a conflict.
pub(super) async fn put_experiment(tx: &Tx<'_>, e: &Experiment) -> Attempt<()> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO experiments (id, hypothesis_id, lift, ci_low, ci_high, result_time, source) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .await?;
    tx.execute(
        &stmt,
        &[
            &pg_text(&e.id),
            &pg_text(&e.hypothesis_id),
            &e.lift,
            &e.ci_low,
            &e.ci_high,
            &nanos(&e.time),
            &pg_text(&e.source),
        ],
    )
    .await?;
    Ok(())
}

pub(super) async fn list_experiments(tx: &Tx<'_>) -> Attempt<Vec<Experiment>> {
    let stmt = tx
        .prepare_cached("SELECT * FROM experiments ORDER BY result_time, id COLLATE \"C\"")
        .await?;
    tx.query(&stmt, &[])
        .await?
        .iter()
        .map(|r| {
            Ok(Experiment {
                id: r.try_get("id")?,
                hypothesis_id: r.try_get("hypothesis_id")?,
                lift: r.try_get("lift")?,
                ci_low: r.try_get("ci_low")?,
                ci_high: r.try_get("ci_high")?,
                time: time(r.try_get("result_time")?),
                source: r.try_get("source")?,
            })
        })
        .collect()
}

/// A metric's observations, oldest first.
pub(super) async fn list_observations(tx: &Tx<'_>, metric_id: &str) -> Attempt<Vec<(Time, f64)>> {
    let stmt = tx
        .prepare_cached(
            "SELECT observe_time, value FROM observations WHERE metric_id = $1 \
             ORDER BY observe_time",
        )
        .await?;
    tx.query(&stmt, &[&pg_text(metric_id)])
        .await?
        .iter()
        .map(|r| Ok((time(r.try_get(0)?), r.try_get(1)?)))
        .collect()
}

/// Stores evidence (replacing the same hypothesis and subject) and the
/// hypotheses it updated (through [`super::put_hypothesis`]).
pub(super) async fn record_evidence(
    tx: &Tx<'_>,
    evidence: &[Evidence],
    hypotheses: &[Hypothesis],
) -> Attempt<()> {
    let put = tx
        .prepare_cached(
            "INSERT INTO evidence (hypothesis_id, subject_id, method, outcome, realized_effect, \
             expected_effect, confounded, step, points_before, points_after, confidence_before, \
             confidence_after, status_after, reason, record_time, step_se, delivered, \
             log_likelihood_ratio) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) \
             ON CONFLICT (hypothesis_id, subject_id) DO UPDATE SET method = EXCLUDED.method, \
             outcome = EXCLUDED.outcome, realized_effect = EXCLUDED.realized_effect, \
             expected_effect = EXCLUDED.expected_effect, confounded = EXCLUDED.confounded, \
             step = EXCLUDED.step, points_before = EXCLUDED.points_before, \
             points_after = EXCLUDED.points_after, confidence_before = EXCLUDED.confidence_before, \
             confidence_after = EXCLUDED.confidence_after, status_after = EXCLUDED.status_after, \
             reason = EXCLUDED.reason, record_time = EXCLUDED.record_time, \
             step_se = EXCLUDED.step_se, delivered = EXCLUDED.delivered, \
             log_likelihood_ratio = EXCLUDED.log_likelihood_ratio",
        )
        .await?;
    for e in evidence {
        tx.execute(
            &put,
            &[
                &pg_text(&e.hypothesis_id),
                &pg_text(&e.subject_id),
                &enum_str(&e.method),
                &enum_str(&e.outcome),
                &e.realized_effect,
                &e.expected_effect,
                &e.confounded,
                &e.step,
                &e.points_before,
                &e.points_after,
                &e.confidence_before,
                &e.confidence_after,
                &enum_str(&e.status_after),
                &pg_text(&e.reason),
                &nanos(&e.record_time),
                &e.step_se,
                &e.delivered,
                &e.log_likelihood_ratio,
            ],
        )
        .await?;
    }
    for h in hypotheses {
        super::put_hypothesis(tx, h).await?;
    }
    Ok(())
}

fn evidence_from_row(r: &Row) -> Attempt<Evidence> {
    Ok(Evidence {
        hypothesis_id: r.try_get("hypothesis_id")?,
        subject_id: r.try_get("subject_id")?,
        method: parse_enum(r.try_get("method")?)?,
        outcome: parse_enum(r.try_get("outcome")?)?,
        realized_effect: r.try_get("realized_effect")?,
        expected_effect: r.try_get("expected_effect")?,
        confounded: r.try_get("confounded")?,
        step: r.try_get("step")?,
        step_se: r.try_get("step_se")?,
        delivered: r.try_get("delivered")?,
        log_likelihood_ratio: r.try_get("log_likelihood_ratio")?,
        points_before: r.try_get("points_before")?,
        points_after: r.try_get("points_after")?,
        confidence_before: r.try_get("confidence_before")?,
        confidence_after: r.try_get("confidence_after")?,
        status_after: parse_enum(r.try_get("status_after")?)?,
        reason: r.try_get("reason")?,
        record_time: time(r.try_get("record_time")?),
    })
}

/// Evidence newest first (of one hypothesis, or of all).
pub(super) async fn list_evidence(
    tx: &Tx<'_>,
    hypothesis_id: Option<&str>,
) -> Attempt<Vec<Evidence>> {
    let rows = match hypothesis_id {
        Some(h) => {
            let stmt = tx
                .prepare_cached(
                    "SELECT * FROM evidence WHERE hypothesis_id = $1 \
                     ORDER BY record_time DESC, subject_id COLLATE \"C\"",
                )
                .await?;
            tx.query(&stmt, &[&pg_text(h)]).await?
        }
        None => {
            let stmt = tx
                .prepare_cached(
                    "SELECT * FROM evidence ORDER BY record_time DESC, \
                     hypothesis_id COLLATE \"C\", subject_id COLLATE \"C\"",
                )
                .await?;
            tx.query(&stmt, &[]).await?
        }
    };
    rows.iter().map(evidence_from_row).collect()
}
