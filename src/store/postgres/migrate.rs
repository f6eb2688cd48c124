//! The PostgreSQL schema's migrations (`migrations/postgres/`, one file per
//! step, never edited once landed), applied at open. Each step runs in its
//! own transaction and is recorded in `schema_migrations`; the whole run
//! holds a session advisory lock, so that replicas starting together
//! migrate once: the others wait on the lock, then find nothing to do.

use super::conn::{Attempt, Fail};

/// Every step, in order: (version, name, SQL).
const STEPS: &[(i64, &str, &str)] = &[
    (
        1,
        "initial",
        include_str!("../../../migrations/postgres/0001_initial.sql"),
    ),
    (
        2,
        "replicas",
        include_str!("../../../migrations/postgres/0002_replicas.sql"),
    ),
];

/// The advisory lock's key: any constant the database's other users do
/// not take ("plumbline" in ASCII, truncated to 63 bits).
const LOCK_KEY: i64 = 0x706c_756d_626c_696e;

/// The schema version of an up-to-date database.
#[cfg(test)]
pub(super) fn latest() -> i64 {
    STEPS.len() as i64
}

/// Brings the schema up to date on `client`, under the advisory lock.
pub(super) async fn run(client: &mut deadpool_postgres::Object) -> Attempt<()> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .await?;
    let outcome = apply(client).await;
    // Released even when a step failed; a connection that cannot say so
    // drops the lock when it closes.
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await;
    outcome?;
    unlocked?;
    Ok(())
}

async fn apply(client: &mut deadpool_postgres::Object) -> Attempt<()> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (\
                 version BIGINT PRIMARY KEY, \
                 name TEXT NOT NULL, \
                 applied_time BIGINT NOT NULL)",
        )
        .await?;
    let applied: Option<i64> = client
        .query_one("SELECT MAX(version) FROM schema_migrations", &[])
        .await?
        .get(0);
    let applied = applied.unwrap_or(0);
    let known = STEPS.last().map_or(0, |s| s.0);
    if applied > known {
        return Err(Fail::Migrate(
            format!(
                "the database's schema is at version {applied}, newer than this plumbline \
                 knows ({known}); run the newer plumbline, or restore a backup"
            )
            .into(),
        ));
    }
    for (version, name, sql) in STEPS.iter().filter(|s| s.0 > applied) {
        let tx = client.transaction().await?;
        tx.batch_execute(sql).await.map_err(|e| {
            Fail::Migrate(format!("step {version} ({name}): {}", crate::pg::describe(e)).into())
        })?;
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_time) VALUES ($1, $2, $3)",
            &[version, name, &now],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(version, name, "PostgreSQL schema migrated");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{STEPS, latest};

    /// `apply` runs the steps after the stored version in order, so a
    /// step numbered out of order or twice would be skipped.
    #[test]
    fn steps_are_numbered_one_to_latest_in_order() {
        let versions: Vec<i64> = STEPS.iter().map(|s| s.0).collect();
        assert_eq!(versions, (1..=latest()).collect::<Vec<_>>());
    }
}
