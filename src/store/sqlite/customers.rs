//! The customer tables (migration 0011): segments, desired outcomes and
//! survey waves; an outcome's waves are also its metric's observations.

use std::collections::BTreeSet;

use async_trait::async_trait;
use rusqlite::{Connection, params};

use super::conn::Attempt;
use super::{SqliteStore, nanos, observation_summary, put_metric, query_all, time};
use crate::domain::{DesiredOutcome, Metric, ObservationSummary, Segment, SurveyWave};
use crate::store::{CustomerLoad, CustomerStore, Result};

pub(super) fn put_segment(conn: &Connection, s: &Segment) -> Attempt<()> {
    conn.prepare_cached(
        "INSERT INTO segments (id, name, description, weight, create_time, update_time) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, description = excluded.description, \
         weight = excluded.weight, update_time = excluded.update_time",
    )?
    .execute(params![
        s.id,
        s.name,
        s.description,
        s.weight,
        nanos(&s.create_time),
        nanos(&s.update_time)
    ])?;
    Ok(())
}

pub(super) fn put_outcome(conn: &Connection, o: &DesiredOutcome) -> Attempt<()> {
    conn.prepare_cached(
        "INSERT INTO desired_outcomes (id, segment_id, statement, create_time, update_time) \
         VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (id) DO UPDATE SET segment_id = excluded.segment_id, \
         statement = excluded.statement, update_time = excluded.update_time",
    )?
    .execute(params![
        o.id,
        o.segment_id,
        o.statement,
        nanos(&o.create_time),
        nanos(&o.update_time)
    ])?;
    Ok(())
}

/// Puts waves and their observations; the metrics touched, in id order.
pub(super) fn put_waves(conn: &Connection, waves: &[SurveyWave]) -> Attempt<BTreeSet<String>> {
    let mut wave = conn.prepare_cached(
        "INSERT INTO survey_waves (outcome_id, at, importance, satisfaction, respondents) \
         VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (outcome_id, at) DO UPDATE SET importance = excluded.importance, \
         satisfaction = excluded.satisfaction, respondents = excluded.respondents",
    )?;
    let mut obs = conn.prepare_cached(
        "INSERT INTO observations (metric_id, observe_time, value) VALUES (?1, ?2, ?3) \
         ON CONFLICT (metric_id, observe_time) DO UPDATE SET value = excluded.value",
    )?;
    let mut touched = BTreeSet::new();
    for w in waves {
        let at = nanos(&w.at);
        wave.execute(params![
            w.outcome_id,
            at,
            w.importance,
            w.satisfaction,
            w.respondents
        ])?;
        obs.execute(params![w.outcome_id, at, w.satisfaction])?;
        touched.insert(w.outcome_id.clone());
    }
    Ok(touched)
}

/// Deletes an outcome, its waves, its metric and the metric's observations.
pub(super) fn delete_outcome(conn: &Connection, id: &str) -> Attempt<()> {
    conn.execute("DELETE FROM survey_waves WHERE outcome_id = ?1", [id])?;
    conn.execute("DELETE FROM desired_outcomes WHERE id = ?1", [id])?;
    conn.execute("DELETE FROM metrics WHERE id = ?1", [id])?;
    Ok(())
}

#[async_trait]
impl CustomerStore for SqliteStore {
    async fn load_customers(&self) -> Result<CustomerLoad> {
        self.db
            .read("read segments and desired outcomes", |c| {
                let segments = query_all(c, "SELECT * FROM segments ORDER BY id", [], |r| {
                    Ok(Segment {
                        id: r.get("id")?,
                        name: r.get("name")?,
                        description: r.get("description")?,
                        weight: r.get("weight")?,
                        create_time: time(r.get("create_time")?),
                        update_time: time(r.get("update_time")?),
                    })
                })?;
                let outcomes =
                    query_all(c, "SELECT * FROM desired_outcomes ORDER BY id", [], |r| {
                        Ok(DesiredOutcome {
                            id: r.get("id")?,
                            segment_id: r.get("segment_id")?,
                            statement: r.get("statement")?,
                            create_time: time(r.get("create_time")?),
                            update_time: time(r.get("update_time")?),
                        })
                    })?;
                let waves = query_all(
                    c,
                    "SELECT * FROM survey_waves ORDER BY outcome_id, at",
                    [],
                    |r| {
                        Ok(SurveyWave {
                            outcome_id: r.get("outcome_id")?,
                            at: time(r.get("at")?),
                            importance: r.get("importance")?,
                            satisfaction: r.get("satisfaction")?,
                            respondents: r.get("respondents")?,
                        })
                    },
                )?;
                Ok(CustomerLoad {
                    segments,
                    outcomes,
                    waves,
                })
            })
            .await
    }

    async fn put_segment(&self, s: &Segment) -> Result<()> {
        let s = s.clone();
        self.db
            .write("store a segment", move |tx| put_segment(tx, &s))
            .await
    }

    async fn delete_segment(&self, id: &str) -> Result<()> {
        let id = id.to_string();
        self.db
            .write("delete a segment", move |tx| {
                tx.execute("DELETE FROM segments WHERE id = ?1", [&id])?;
                Ok(())
            })
            .await
    }

    async fn put_outcome(&self, o: &DesiredOutcome, m: &Metric) -> Result<()> {
        let (o, m) = (o.clone(), m.clone());
        self.db
            .write("store a desired outcome", move |tx| {
                put_metric(tx, &m)?;
                put_outcome(tx, &o)
            })
            .await
    }

    async fn delete_outcome(&self, id: &str) -> Result<()> {
        let id = id.to_string();
        self.db
            .write("delete a desired outcome", move |tx| {
                delete_outcome(tx, &id)
            })
            .await
    }

    async fn record_waves(
        &self,
        waves: &[SurveyWave],
        metrics: &[Metric],
    ) -> Result<Vec<(String, ObservationSummary)>> {
        let (waves, metrics) = (waves.to_vec(), metrics.to_vec());
        self.db
            .write("record survey waves", move |tx| {
                for m in &metrics {
                    put_metric(tx, m)?;
                }
                let touched = put_waves(tx, &waves)?;
                let mut out = Vec::with_capacity(touched.len());
                for m in &touched {
                    out.push((m.clone(), observation_summary(tx, m)?));
                }
                Ok(out)
            })
            .await
    }
}
