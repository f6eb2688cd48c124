//! `plumbline.v1.HistoryService`: ranking snapshots taken and listed, and
//! the ranking now compared with a past one ("since last refinement").

use std::sync::Arc;

use tonic::{Request, Response};

use super::Reply;
use super::convert::{self, Check};
use super::page::{self, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, PageToken};
use crate::domain::history::{SnapshotOrigin, SnapshotSummary};
use crate::engine::{Error, SinceView};
use crate::history::Historian;
use crate::proto as pb;
use crate::refine::since::{LeftReason, RankingChange, TermChangeKind};

/// `plumbline.v1.HistoryService`.
#[derive(Clone)]
pub struct HistoryApi(pub Arc<Historian>);

/// Longest note a snapshot keeps, in characters.
const MAX_NOTE: usize = 200;
/// Top N compared when the request leaves it 0.
const DEFAULT_COMPARE_TOP: usize = 20;

#[tonic::async_trait]
impl pb::history_service_server::HistoryService for HistoryApi {
    async fn take_ranking_snapshot(
        &self,
        req: Request<pb::TakeRankingSnapshotRequest>,
    ) -> Reply<pb::TakeRankingSnapshotResponse> {
        let note = req.into_inner().note;
        if note.chars().count() > MAX_NOTE || note.chars().any(char::is_control) {
            return Err(Error::invalid(
                "note",
                "must be at most 200 characters without control characters",
            )
            .into());
        }
        let s = self.0.take(note).await?;
        Ok(Response::new(pb::TakeRankingSnapshotResponse {
            snapshot: Some(summary_to_pb(&s)),
        }))
    }

    async fn list_ranking_snapshots(
        &self,
        req: Request<pb::ListRankingSnapshotsRequest>,
    ) -> Reply<pb::ListRankingSnapshotsResponse> {
        let r = req.get_ref();
        let size = page::page_size(r.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
        const FINGERPRINT: &str = "ListRankingSnapshots";
        let before = match PageToken::decode(&r.page_token, FINGERPRINT)? {
            Some(t) => Some(t.k.parse::<i64>().map_err(|_| {
                Error::invalid(
                    "page_token",
                    "not a page token from this call; start again without one",
                )
            })?),
            None => None,
        };
        let mut list = self
            .0
            .engine()
            .list_ranking_snapshots(before, size + 1)
            .await?;
        let next = if list.len() > size {
            list.truncate(size);
            list.last().map_or_else(String::new, |last| {
                PageToken {
                    q: FINGERPRINT.into(),
                    k: last.id.to_string(),
                    ..Default::default()
                }
                .encode()
            })
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListRankingSnapshotsResponse {
            snapshots: list.iter().map(summary_to_pb).collect(),
            next_page_token: next,
        }))
    }

    async fn compare_ranking(
        &self,
        req: Request<pb::CompareRankingRequest>,
    ) -> Reply<pb::CompareRankingResponse> {
        let r = req.into_inner();
        let now = chrono::Utc::now();
        let mut check = Check::new("");
        let since = match r.since.as_ref() {
            None => {
                check.fail("since", "is required");
                None
            }
            Some(ts) => check
                .time("since", Some(ts))
                .and_then(|t| check.not_future("since", t, now)),
        };
        let top_n = match r.top_n {
            0 => DEFAULT_COMPARE_TOP,
            n if (1..=crate::engine::MAX_TOP_N as i32).contains(&n) => n as usize,
            _ => {
                check.fail("top_n", "must be 1..1000 (0 for 20)");
                0
            }
        };
        if !r.source_id.is_empty() {
            check.id("source_id", &r.source_id);
        }
        let since = check.finish(since)?.unwrap_or(now);
        // Within the allowed clock skew, a time just ahead means "now".
        let view = self
            .0
            .engine()
            .compare_ranking(
                since.min(now),
                top_n,
                (!r.source_id.is_empty()).then_some(r.source_id.as_str()),
            )
            .await?;
        Ok(Response::new(since_to_pb(view)))
    }
}

pub fn summary_to_pb(s: &SnapshotSummary) -> pb::RankingSnapshot {
    pb::RankingSnapshot {
        id: s.id,
        take_time: Some(convert::timestamp(&s.take_time)),
        origin: match s.origin {
            SnapshotOrigin::Background => pb::SnapshotOrigin::Background,
            SnapshotOrigin::Explicit => pb::SnapshotOrigin::Explicit,
            SnapshotOrigin::Shutdown => pb::SnapshotOrigin::Shutdown,
        } as i32,
        note: s.note.clone(),
        top_n: i32::try_from(s.top_n).unwrap_or(i32::MAX),
        item_count: i32::try_from(s.item_count).unwrap_or(i32::MAX),
    }
}

fn since_to_pb(v: SinceView) -> pb::CompareRankingResponse {
    let changes = |list: Vec<RankingChange>| list.into_iter().map(change_to_pb).collect();
    pb::CompareRankingResponse {
        snapshot: Some(summary_to_pb(&v.snapshot)),
        top_n: i32::try_from(v.top_n).unwrap_or(i32::MAX),
        compare_time: Some(convert::timestamp(&v.compare_time)),
        entered: changes(v.changes.entered),
        left: changes(v.changes.left),
        moved: changes(v.changes.moved),
    }
}

fn rank(r: u32) -> i32 {
    i32::try_from(r).unwrap_or(i32::MAX)
}

fn change_to_pb(c: RankingChange) -> pb::RankingChange {
    let (reason, detail, current_rank) = match &c.left {
        Some(l) => (
            match l.reason {
                LeftReason::Closed => pb::LeftReason::Closed,
                LeftReason::Released => pb::LeftReason::Released,
                LeftReason::Removed => pb::LeftReason::Removed,
                LeftReason::PushedOut => pb::LeftReason::PushedOut,
                LeftReason::Gone => pb::LeftReason::Gone,
            },
            l.detail.clone(),
            l.current_rank,
        ),
        None => (pb::LeftReason::Unspecified, String::new(), 0),
    };
    let why = c.why();
    let old = c.old.unwrap_or(NO_NUMBERS);
    let new = c.new.unwrap_or(NO_NUMBERS);
    pb::RankingChange {
        item_key: c.item_key,
        title: c.title,
        old_rank: rank(c.old_rank),
        new_rank: rank(c.new_rank),
        current_rank: rank(current_rank),
        left_reason: reason as i32,
        left_detail: detail,
        old_value: old.value,
        new_value: new.value,
        old_size: old.size,
        new_size: new.size,
        old_value_density: old.value_density,
        new_value_density: new.value_density,
        terms: c
            .terms
            .into_iter()
            .map(|t| pb::TermChange {
                hypothesis_id: t.hypothesis_id,
                old_value: t.old_value,
                new_value: t.new_value,
                kind: match t.kind {
                    TermChangeKind::LinkAdded => pb::TermChangeKind::LinkAdded,
                    TermChangeKind::LinkRemoved => pb::TermChangeKind::LinkRemoved,
                    TermChangeKind::Changed => pb::TermChangeKind::Changed,
                    TermChangeKind::Current => pb::TermChangeKind::Current,
                } as i32,
                factors: t
                    .factors
                    .into_iter()
                    .map(|f| pb::FactorChange {
                        name: f.name.to_owned(),
                        old_value: f.old,
                        new_value: f.new,
                    })
                    .collect(),
            })
            .collect(),
        why,
    }
}

const NO_NUMBERS: crate::refine::since::Numbers = crate::refine::since::Numbers {
    value: 0.0,
    size: 0.0,
    value_density: 0.0,
};
