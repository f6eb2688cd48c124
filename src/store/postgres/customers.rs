//! Segments, desired outcomes and survey waves on PostgreSQL (see the
//! SQLite backend's `customers.rs`); an outcome's waves are also its
//! metric's observations. Every write is logged as a change of the model,
//! which the other sidecars of the database read back whole.

use std::collections::BTreeSet;

use async_trait::async_trait;

use super::conn::{Attempt, Fail, Tx};
use super::{PostgresStore, observation_summary, put_metric};
use super::{nanos, pg_text, time};
use crate::domain::{DesiredOutcome, Metric, ObservationSummary, Segment, SurveyWave};
use crate::store::{Changed, CustomerLoad, CustomerStore, Result};

pub(super) async fn put_segment(tx: &Tx<'_>, s: &Segment) -> Attempt<()> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO segments (id, name, description, weight, create_time, update_time) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, \
             description = EXCLUDED.description, weight = EXCLUDED.weight, \
             update_time = EXCLUDED.update_time",
        )
        .await?;
    tx.execute(
        &stmt,
        &[
            &pg_text(&s.id),
            &pg_text(&s.name),
            &pg_text(&s.description),
            &s.weight,
            &nanos(&s.create_time),
            &nanos(&s.update_time),
        ],
    )
    .await?;
    Ok(())
}

pub(super) async fn put_outcome(tx: &Tx<'_>, o: &DesiredOutcome) -> Attempt<()> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO desired_outcomes (id, segment_id, statement, create_time, update_time) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (id) DO UPDATE SET segment_id = EXCLUDED.segment_id, \
             statement = EXCLUDED.statement, update_time = EXCLUDED.update_time",
        )
        .await?;
    tx.execute(
        &stmt,
        &[
            &pg_text(&o.id),
            &pg_text(&o.segment_id),
            &pg_text(&o.statement),
            &nanos(&o.create_time),
            &nanos(&o.update_time),
        ],
    )
    .await?;
    Ok(())
}

/// Stores waves with their observations; answers the metrics touched, in
/// id order.
pub(super) async fn put_waves(tx: &Tx<'_>, waves: &[SurveyWave]) -> Attempt<BTreeSet<String>> {
    let wave = tx
        .prepare_cached(
            "INSERT INTO survey_waves (outcome_id, at, importance, satisfaction, respondents) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (outcome_id, at) DO UPDATE SET importance = EXCLUDED.importance, \
             satisfaction = EXCLUDED.satisfaction, respondents = EXCLUDED.respondents",
        )
        .await?;
    let obs = tx
        .prepare_cached(
            "INSERT INTO observations (metric_id, observe_time, value) VALUES ($1, $2, $3) \
             ON CONFLICT (metric_id, observe_time) DO UPDATE SET value = EXCLUDED.value",
        )
        .await?;
    let mut touched = BTreeSet::new();
    for w in waves {
        let id = pg_text(&w.outcome_id);
        let at = nanos(&w.at);
        tx.execute(
            &wave,
            &[
                &id,
                &at,
                &w.importance,
                &w.satisfaction,
                &i64::from(w.respondents),
            ],
        )
        .await?;
        tx.execute(&obs, &[&id, &at, &w.satisfaction]).await?;
        touched.insert(w.outcome_id.clone());
    }
    Ok(touched)
}

/// Deletes an outcome, its waves, its metric and the metric's observations.
pub(super) async fn delete_outcome(tx: &Tx<'_>, id: &str) -> Attempt<()> {
    let id = pg_text(id);
    for sql in [
        "DELETE FROM survey_waves WHERE outcome_id = $1",
        "DELETE FROM desired_outcomes WHERE id = $1",
        "DELETE FROM metrics WHERE id = $1",
    ] {
        let stmt = tx.prepare_cached(sql).await?;
        tx.execute(&stmt, &[&id]).await?;
    }
    Ok(())
}

fn respondents(n: i64) -> Attempt<u32> {
    u32::try_from(n).map_err(|_| Fail::Corrupt(format!("a survey wave of {n} respondents").into()))
}

async fn load(tx: &Tx<'_>) -> Attempt<CustomerLoad> {
    let stmt = tx
        .prepare_cached("SELECT * FROM segments ORDER BY id COLLATE \"C\"")
        .await?;
    let segments = tx
        .query(&stmt, &[])
        .await?
        .iter()
        .map(|r| {
            Ok(Segment {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                description: r.try_get("description")?,
                weight: r.try_get("weight")?,
                create_time: time(r.try_get("create_time")?),
                update_time: time(r.try_get("update_time")?),
            })
        })
        .collect::<Attempt<Vec<_>>>()?;
    let stmt = tx
        .prepare_cached("SELECT * FROM desired_outcomes ORDER BY id COLLATE \"C\"")
        .await?;
    let outcomes = tx
        .query(&stmt, &[])
        .await?
        .iter()
        .map(|r| {
            Ok(DesiredOutcome {
                id: r.try_get("id")?,
                segment_id: r.try_get("segment_id")?,
                statement: r.try_get("statement")?,
                create_time: time(r.try_get("create_time")?),
                update_time: time(r.try_get("update_time")?),
            })
        })
        .collect::<Attempt<Vec<_>>>()?;
    let stmt = tx
        .prepare_cached("SELECT * FROM survey_waves ORDER BY outcome_id COLLATE \"C\", at")
        .await?;
    let waves = tx
        .query(&stmt, &[])
        .await?
        .iter()
        .map(|r| {
            Ok(SurveyWave {
                outcome_id: r.try_get("outcome_id")?,
                at: time(r.try_get("at")?),
                importance: r.try_get("importance")?,
                satisfaction: r.try_get("satisfaction")?,
                respondents: respondents(r.try_get("respondents")?)?,
            })
        })
        .collect::<Attempt<Vec<_>>>()?;
    Ok(CustomerLoad {
        segments,
        outcomes,
        waves,
    })
}

async fn record_waves(
    tx: &Tx<'_>,
    waves: &[SurveyWave],
    metrics: &[Metric],
) -> Attempt<Vec<(String, ObservationSummary)>> {
    for m in metrics {
        put_metric(tx, m).await?;
    }
    let touched = put_waves(tx, waves).await?;
    let mut out = Vec::with_capacity(touched.len());
    for m in touched {
        let summary = observation_summary(tx, &m).await?;
        out.push((m, summary));
    }
    Ok(out)
}

#[async_trait]
impl CustomerStore for PostgresStore {
    async fn load_customers(&self) -> Result<CustomerLoad> {
        self.db
            .read("read segments and desired outcomes", (), |tx, ()| {
                Box::pin(load(tx))
            })
            .await
    }

    async fn put_segment(&self, s: &Segment) -> Result<()> {
        self.db
            .write_logged("store a segment", &Changed::model(), s, |tx, s| {
                Box::pin(put_segment(tx, s))
            })
            .await
    }

    async fn delete_segment(&self, id: &str) -> Result<()> {
        self.db
            .write_logged("delete a segment", &Changed::model(), id, |tx, id| {
                Box::pin(async move {
                    let stmt = tx
                        .prepare_cached("DELETE FROM segments WHERE id = $1")
                        .await?;
                    tx.execute(&stmt, &[&pg_text(id)]).await?;
                    Ok(())
                })
            })
            .await
    }

    async fn put_outcome(&self, o: &DesiredOutcome, m: &Metric) -> Result<()> {
        self.db
            .write_logged(
                "store a desired outcome",
                &Changed::model(),
                (o, m),
                |tx, (o, m)| {
                    Box::pin(async move {
                        put_metric(tx, m).await?;
                        put_outcome(tx, o).await
                    })
                },
            )
            .await
    }

    async fn delete_outcome(&self, id: &str) -> Result<()> {
        self.db
            .write_logged(
                "delete a desired outcome",
                &Changed::model(),
                id,
                |tx, id| Box::pin(delete_outcome(tx, id)),
            )
            .await
    }

    async fn record_waves(
        &self,
        waves: &[SurveyWave],
        metrics: &[Metric],
    ) -> Result<Vec<(String, ObservationSummary)>> {
        self.db
            .write_logged(
                "record survey waves",
                &Changed::model(),
                (waves, metrics),
                |tx, (w, m)| Box::pin(record_waves(tx, w, m)),
            )
            .await
    }
}
