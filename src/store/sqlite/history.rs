//! The ranking's history in SQLite: one row per snapshot, its items one JSON
//! array (see migration 0010 for why), thinned by the retention rules in the
//! transaction that adds a snapshot, so the table never outgrows its bound.

use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};

use super::conn::Attempt;
use super::{enum_str, json, nanos, parse_enum, parse_json, text, time};
use crate::domain::Time;
use crate::domain::history::{RankingSnapshot, SnapshotSummary};
use crate::store::SnapshotRetention;

const NANOS_PER_DAY: i64 = 86_400 * 1_000_000_000;

const SUMMARY_COLUMNS: &str = "id, take_time, origin, note, top_n, item_count";

fn summary_from_row(r: &Row<'_>) -> Attempt<SnapshotSummary> {
    Ok(SnapshotSummary {
        id: r.get("id")?,
        take_time: time(r.get("take_time")?),
        origin: parse_enum(text(r, "origin")?)?,
        note: r.get("note")?,
        top_n: r.get("top_n")?,
        item_count: r.get("item_count")?,
    })
}

/// Adds `snap` (its id is assigned) and [`prune`]s; answers the stored
/// summary.
pub(super) fn put(
    tx: &Transaction<'_>,
    snap: &RankingSnapshot,
    keep: &SnapshotRetention,
) -> Attempt<SnapshotSummary> {
    let s = &snap.summary;
    tx.prepare_cached(
        "INSERT INTO ranking_snapshots (take_time, origin, note, top_n, item_count, items) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        nanos(&s.take_time),
        enum_str(&s.origin),
        s.note,
        s.top_n,
        snap.items.len() as i64,
        json(&snap.items),
    ])?;
    let id = tx.last_insert_rowid();
    prune(tx, keep)?;
    Ok(SnapshotSummary {
        id,
        item_count: snap.items.len() as u32,
        ..s.clone()
    })
}

/// Applies the retention rules `keep`: past `daily_before`, only one
/// snapshot of each UTC day stays, the day's last one taken on purpose
/// (a refinement meeting's) if any, else its last; then the oldest go until at most
/// `max_snapshots` remain. Answers how many went.
pub(super) fn prune(tx: &Transaction<'_>, keep: &SnapshotRetention) -> Attempt<usize> {
    let thinned = tx
        .prepare_cached(
            "DELETE FROM ranking_snapshots WHERE id IN ( \
           SELECT id FROM ( \
             SELECT id, ROW_NUMBER() OVER ( \
               PARTITION BY take_time / ?2 \
               ORDER BY origin = 'explicit' DESC, take_time DESC, id DESC) AS nth \
             FROM ranking_snapshots WHERE take_time < ?1) \
           WHERE nth > 1)",
        )?
        .execute(params![nanos(&keep.daily_before), NANOS_PER_DAY])?;
    let over = tx
        .prepare_cached(
            "DELETE FROM ranking_snapshots WHERE id IN ( \
           SELECT id FROM ranking_snapshots ORDER BY take_time DESC, id DESC LIMIT -1 OFFSET ?1)",
        )?
        .execute(params![keep.max_snapshots.max(1) as i64])?;
    Ok(thinned + over)
}

/// Newest first, after (older than) the snapshot `before_id` when given.
pub(super) fn list(
    conn: &Connection,
    before_id: Option<i64>,
    limit: usize,
) -> Attempt<Vec<SnapshotSummary>> {
    super::query_all(
        conn,
        &format!(
            "SELECT {SUMMARY_COLUMNS} FROM ranking_snapshots WHERE id < ?1 \
             ORDER BY id DESC LIMIT ?2"
        ),
        params![before_id.unwrap_or(i64::MAX), limit as i64],
        summary_from_row,
    )
}

/// The last snapshot taken at or before `at` (the newest when `None`).
pub(super) fn at(conn: &Connection, at: Option<Time>) -> Attempt<Option<RankingSnapshot>> {
    let at = at.as_ref().map_or(i64::MAX, nanos);
    let row = conn
        .prepare_cached(&format!(
            "SELECT {SUMMARY_COLUMNS}, items FROM ranking_snapshots WHERE take_time <= ?1 \
             ORDER BY take_time DESC, id DESC LIMIT 1"
        ))?
        .query_row(params![at], |r| {
            Ok((summary_from_row(r), r.get::<_, String>("items")?))
        })
        .optional()?;
    let Some((summary, items)) = row else {
        return Ok(None);
    };
    Ok(Some(RankingSnapshot {
        summary: summary?,
        items: parse_json(&items)?,
    }))
}

/// The oldest snapshot kept.
pub(super) fn earliest(conn: &Connection) -> Attempt<Option<SnapshotSummary>> {
    let row = conn
        .prepare_cached(&format!(
            "SELECT {SUMMARY_COLUMNS} FROM ranking_snapshots ORDER BY take_time, id LIMIT 1"
        ))?
        .query_row([], |r| Ok(summary_from_row(r)))
        .optional()?;
    row.transpose()
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone, Utc};

    use super::super::SqliteStore;
    use crate::domain::history::{RankingSnapshot, SnapshotOrigin, SnapshotSummary};
    use crate::store::{SnapshotRetention, Store};

    fn snapshot(at: crate::domain::Time) -> RankingSnapshot {
        RankingSnapshot {
            summary: SnapshotSummary {
                id: 0,
                take_time: at,
                origin: SnapshotOrigin::Background,
                note: String::new(),
                top_n: 10,
                item_count: 0,
            },
            items: Vec::new(),
        }
    }

    #[tokio::test]
    async fn past_the_daily_bound_one_a_day_stays_and_never_more_than_the_maximum() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("h.sqlite"))
            .await
            .unwrap();
        let now = Utc.with_ymd_and_hms(2026, 12, 6, 12, 0, 0).unwrap();
        let keep = SnapshotRetention {
            max_snapshots: 6,
            daily_before: now - Duration::days(14),
        };
        // Three a day, 20 and 19 days ago (4h apart), then three today.
        let mut times = Vec::new();
        for days in [20, 19] {
            for h in [0, 4, 8] {
                times.push(now - Duration::days(days) + Duration::hours(h));
            }
        }
        times.extend([0, 1, 2].map(|m| now + Duration::minutes(m)));
        for t in &times {
            store
                .put_ranking_snapshot(&snapshot(*t), &keep)
                .await
                .unwrap();
        }
        let kept: Vec<_> = store
            .list_ranking_snapshots(None, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.take_time)
            .collect();
        // The last of each old day, and the three recent ones.
        let mut want = vec![times[8], times[7], times[6], times[5], times[2]];
        assert_eq!(kept, want);
        // Past the maximum, the oldest go.
        let tighter = SnapshotRetention {
            max_snapshots: 3,
            ..keep
        };
        let newest = now + Duration::minutes(5);
        store
            .put_ranking_snapshot(&snapshot(newest), &tighter)
            .await
            .unwrap();
        want.insert(0, newest);
        want.truncate(3);
        let kept: Vec<_> = store
            .list_ranking_snapshots(None, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.take_time)
            .collect();
        assert_eq!(kept, want);
        let first = store.earliest_ranking_snapshot().await.unwrap().unwrap();
        assert_eq!(first.take_time, want[2]);
        let at = store
            .ranking_snapshot_at(Some(now + Duration::seconds(90)))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(at.summary.take_time, times[7]);
        // Time passing alone: two days on, the three kept (all of today)
        // are past the daily bound and thin to the day's last, without a
        // new snapshot.
        let later = SnapshotRetention {
            max_snapshots: 6,
            daily_before: now + Duration::days(2),
        };
        assert_eq!(store.prune_ranking_snapshots(&later).await.unwrap(), 2);
        let kept: Vec<_> = store
            .list_ranking_snapshots(None, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.take_time)
            .collect();
        assert_eq!(kept, vec![newest]);
    }

    #[tokio::test]
    async fn a_day_thinned_keeps_its_refinement_snapshot_over_later_background_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("h.sqlite"))
            .await
            .unwrap();
        let now = Utc.with_ymd_and_hms(2026, 12, 6, 12, 0, 0).unwrap();
        let keep = SnapshotRetention {
            max_snapshots: 100,
            daily_before: now - Duration::days(14),
        };
        // Midnight UTC, 20 days before: the three below fall on that day.
        let day = Utc.with_ymd_and_hms(2026, 11, 16, 0, 0, 0).unwrap();
        let meeting = RankingSnapshot {
            summary: SnapshotSummary {
                origin: SnapshotOrigin::Explicit,
                note: "refinement".into(),
                ..snapshot(day + Duration::hours(10)).summary
            },
            items: Vec::new(),
        };
        store.put_ranking_snapshot(&meeting, &keep).await.unwrap();
        for h in [14, 18] {
            store
                .put_ranking_snapshot(&snapshot(day + Duration::hours(h)), &keep)
                .await
                .unwrap();
        }
        let kept = store.list_ranking_snapshots(None, 100).await.unwrap();
        assert_eq!(kept.len(), 1, "{kept:?}");
        assert_eq!(kept[0].note, "refinement");
    }
}
