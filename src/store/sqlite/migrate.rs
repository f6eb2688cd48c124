//! The SQLite schema's migrations (`migrations/sqlite/`, one file per step,
//! never edited once landed), applied at open by `rusqlite_migration`, which
//! keeps the schema version in SQLite's `user_version`.
//!
//! Databases written before plumbline moved to rusqlite were migrated by
//! sqlx, which records its steps in a `_sqlx_migrations` table and leaves
//! `user_version` at 0. Such a file is adopted: the steps sqlx recorded as
//! applied become the `user_version`, so that none is applied twice and the
//! data stays. The table itself is left in place, untouched.

use rusqlite::{Connection, OptionalExtension};
use rusqlite_migration::{M, Migrations};

use super::conn::{Attempt, Fail};

/// Every step, in order; step `n` (1-based) is `migrations/sqlite/000n_*.sql`,
/// which sqlx recorded as version `n`.
const STEPS: &[M<'static>] = &[
    M::up(include_str!("../../../migrations/sqlite/0001_initial.sql")),
    M::up(include_str!(
        "../../../migrations/sqlite/0002_sync_state.sql"
    )),
    M::up(include_str!(
        "../../../migrations/sqlite/0003_releases_evidence.sql"
    )),
    M::up(include_str!(
        "../../../migrations/sqlite/0004_drop_links_by_hypothesis.sql"
    )),
    M::up(include_str!(
        "../../../migrations/sqlite/0005_api_tokens.sql"
    )),
    M::up(include_str!(
        "../../../migrations/sqlite/0006_item_splits.sql"
    )),
    M::up(include_str!(
        "../../../migrations/sqlite/0007_item_removals.sql"
    )),
    M::up(include_str!(
        "../../../migrations/sqlite/0008_evidence_posterior.sql"
    )),
    M::up(include_str!(
        "../../../migrations/sqlite/0009_metric_sources.sql"
    )),
    M::up(include_str!(
        "../../../migrations/sqlite/0010_ranking_snapshots.sql"
    )),
    M::up(include_str!(
        "../../../migrations/sqlite/0011_customers.sql"
    )),
    M::up(include_str!("../../../migrations/sqlite/0012_insights.sql")),
];

/// The schema version of an up-to-date database.
#[cfg(test)]
pub(super) fn latest() -> i64 {
    STEPS.len() as i64
}

/// Why the schema could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub(super) enum MigrateError {
    #[error(
        "the database records sqlx migration {version} as failed; restore a backup or finish it by hand"
    )]
    SqlxDirty { version: i64 },
    #[error(
        "the database's sqlx migrations are {found:?}, not 1 to {count} in order; it was not written by plumbline"
    )]
    SqlxGaps { found: Vec<i64>, count: usize },
    #[error(
        "the database is at schema version {found}, newer than this plumbline knows ({known}); upgrade plumbline"
    )]
    Newer { found: i64, known: usize },
    #[error(transparent)]
    Step(#[from] rusqlite_migration::Error),
    #[error(transparent)]
    Sql(#[from] rusqlite::Error),
}

/// Brings the schema up to date, adopting a database migrated by sqlx.
pub(super) fn run(conn: &mut Connection) -> Attempt<()> {
    run_steps(conn).map_err(|e| match e {
        // Busy and unreadable files are told by their own meaning.
        MigrateError::Sql(e) => Fail::Sql(e),
        other => Fail::Migrate(other),
    })
}

fn run_steps(conn: &mut Connection) -> Result<(), MigrateError> {
    adopt_sqlx(conn)?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > STEPS.len() as i64 {
        return Err(MigrateError::Newer {
            found: version,
            known: STEPS.len(),
        });
    }
    Migrations::from_slice(STEPS).to_latest(conn)?;
    Ok(())
}

/// Sets `user_version` from sqlx's records when they exist and
/// `user_version` was never set.
fn adopt_sqlx(conn: &mut Connection) -> Result<(), MigrateError> {
    let tx = conn.transaction()?;
    let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let has_sqlx = tx
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
            [],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    if version != 0 || !has_sqlx {
        return Ok(());
    }
    let mut applied = Vec::new();
    {
        let mut stmt =
            tx.prepare("SELECT version, success FROM _sqlx_migrations ORDER BY version")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let (v, success): (i64, bool) = (r.get(0)?, r.get(1)?);
            if !success {
                return Err(MigrateError::SqlxDirty { version: v });
            }
            applied.push(v);
        }
    }
    if applied.iter().zip(1..).any(|(&v, want)| v != want) {
        return Err(MigrateError::SqlxGaps {
            found: applied,
            count: STEPS.len(),
        });
    }
    if applied.len() > STEPS.len() {
        return Err(MigrateError::Newer {
            found: applied.len() as i64,
            known: STEPS.len(),
        });
    }
    tx.pragma_update(None, "user_version", applied.len() as i64)?;
    tx.commit()?;
    if !applied.is_empty() {
        tracing::info!(
            steps = applied.len(),
            "adopted a database migrated by sqlx; its schema version is now kept in user_version"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_steps_are_valid() {
        Migrations::from_slice(STEPS).validate().unwrap();
    }

    /// Step 6 finds the splits applied before it by their slices' notes and
    /// drops the rule links a sync had given such an item back.
    #[test]
    fn splits_applied_before_step_6_are_remembered() {
        let mut conn = Connection::open_in_memory().unwrap();
        Migrations::from_slice(&STEPS[..5])
            .to_latest(&mut conn)
            .unwrap();
        conn.execute_batch(
            "INSERT INTO sources VALUES ('rm', 'redmine', 'https://r', 'shop', '', '{}', '', 0, 0);
             INSERT INTO goals VALUES ('G', 'g', '', 'strategic', '', '', 1, 0, 0);
             INSERT INTO metrics VALUES ('m', 'm', '', 'increase', 0, 1, NULL, 0, 0);
             INSERT INTO hypotheses VALUES ('H-1', 's', 'G', 'm', 0.5, 0.5, 'proposed', NULL, 0, 0),
                                           ('H-2', 's', 'G', 'm', 0.5, 0.5, 'proposed', NULL, 0, 0),
                                           ('H-3', 's', 'G', 'm', 0.5, 0.5, 'proposed', NULL, 0, 0);
             INSERT INTO items (key, source_id, external_id, title, body, url, state, labels, parent_key) VALUES
               ('rm/7', 'rm', '7', 'split', 'Hypothesis: H-1', '', 'open', '[]', ''),
               ('rm/501', 'rm', '501', 'a', 'Split from rm/7 by hypothesis: slice 1 of 2.', '', 'open', '[]', 'rm/7'),
               ('rm/502', 'rm', '502', 'b', 'x' || char(13, 10) || 'Split from rm/7 by hypothesis: slice 2 of 2.', '', 'open', '[]', 'rm/7'),
               ('rm/8', 'rm', '8', 'half', 'Hypothesis: H-3', '', 'open', '[]', ''),
               ('rm/601', 'rm', '601', 'c', 'Split from rm/8 by task: slice 1 of 2.', '', 'open', '[]', 'rm/8'),
               ('rm/9', 'rm', '9', 'child', 'Split from rm/7 by task: slice 1 of 2.', '', 'open', '[]', 'rm/8');
             INSERT INTO links VALUES
               ('rm/7', 'H-1', 1, 'rule', '', 0, 0),
               ('rm/7', 'H-3', 1, 'api', '', 0, 0),
               ('rm/501', 'H-1', 0.5, 'api', '', 0, 0),
               ('rm/502', 'H-2', 0.25, 'api', '', 0, 0),
               ('rm/8', 'H-3', 1, 'rule', '', 0, 0),
               ('rm/9', 'H-2', 1, 'api', '', 0, 0);",
        )
        .unwrap();
        Migrations::from_slice(STEPS).to_latest(&mut conn).unwrap();
        let splits: Vec<(String, String, String)> = conn
            .prepare("SELECT item_key, plan_kind, hypothesis_ids FROM item_splits")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        // rm/8's slice has no link yet (a split left partway), and rm/9's
        // note names another parent than its own.
        assert_eq!(
            splits,
            [(
                "rm/7".to_string(),
                "hypothesis".to_string(),
                r#"["H-1","H-2"]"#.to_string()
            )]
        );
        let links: Vec<(String, String)> = conn
            .prepare("SELECT item_key, hypothesis_id FROM links ORDER BY 1, 2")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        let want = [
            ("rm/501", "H-1"),
            ("rm/502", "H-2"),
            ("rm/7", "H-3"),
            ("rm/8", "H-3"),
            ("rm/9", "H-2"),
        ];
        assert_eq!(
            links,
            want.map(|(a, b)| (a.to_string(), b.to_string())),
            "rm/7's rule link to H-1 went; its API link to another hypothesis stays"
        );
    }
}
