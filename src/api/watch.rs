//! `WatchRanking`: push the watched top N each time a write changes it.
//!
//! The engine bumps a `watch` counter on every index change; a watcher wakes,
//! re-ranks from memory and sends a message only when its top N differs
//! (rank, key or value density), with the moves. Bursts of writes coalesce:
//! a watcher that wakes late sees the latest state once.
//!
//! A watch is the one call that never ends by itself, and an open stream
//! keeps hyper's graceful shutdown waiting on its connection: so each
//! watcher is a task of the server's [`Lifecycle`], and ends its stream with
//! UNAVAILABLE (retry elsewhere) when the server stops.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::page;
use super::ranking::{rank_order, ranked_items};
use crate::engine::{Engine, RankRequest, Result};
use crate::lifecycle::Lifecycle;
use crate::proto as pb;

pub type RankingStream =
    Pin<Box<dyn Stream<Item = std::result::Result<pb::WatchRankingResponse, Status>> + Send>>;

fn snapshot(engine: &Engine, req: &RankRequest) -> Vec<pb::RankedItem> {
    // A watch ranks from the top, without a cursor, which cannot fail.
    engine
        .rank(req)
        .map_or_else(|_| Vec::new(), |page| ranked_items(page.items))
}

/// What moved between two snapshots of the top N, in new-rank order, then
/// the items that left.
pub fn changes(old: &[pb::RankedItem], new: &[pb::RankedItem]) -> Vec<pb::RankChange> {
    let key = |r: &pb::RankedItem| {
        r.score
            .as_ref()
            .map(|s| s.item_key.clone())
            .unwrap_or_default()
    };
    let density = |r: &pb::RankedItem| r.score.as_ref().map_or(0.0, |s| s.value_density);
    let before: HashMap<String, &pb::RankedItem> = old.iter().map(|r| (key(r), r)).collect();
    let after: HashMap<String, &pb::RankedItem> = new.iter().map(|r| (key(r), r)).collect();
    let mut out = Vec::new();
    for r in new {
        let k = key(r);
        match before.get(&k) {
            Some(o) if o.rank == r.rank && density(o).to_bits() == density(r).to_bits() => {}
            o => out.push(pb::RankChange {
                item_key: k,
                old_rank: o.map_or(0, |o| o.rank),
                new_rank: r.rank,
                old_value_density: o.map_or(0.0, |o| density(o)),
                new_value_density: density(r),
            }),
        }
    }
    for o in old {
        let k = key(o);
        if !after.contains_key(&k) {
            out.push(pb::RankChange {
                item_key: k,
                old_rank: o.rank,
                new_rank: 0,
                old_value_density: density(o),
                new_value_density: 0.0,
            });
        }
    }
    out
}

/// Starts a watch; the stream ends when the client goes away or the server
/// stops.
pub fn watch_ranking(
    engine: Arc<Engine>,
    lifecycle: &Lifecycle,
    r: pb::WatchRankingRequest,
) -> Result<RankingStream> {
    let size = page::page_size(r.page_size, 20, page::MAX_PAGE_SIZE)?;
    let order = rank_order(r.order)?;
    let query = RankRequest {
        order,
        source_id: (!r.source_id.is_empty()).then_some(r.source_id),
        label: (!r.label.is_empty()).then_some(r.label),
        include_closed: r.include_closed,
        after: None,
        limit: size,
        with_terms: false,
    };
    let mut changed = engine.subscribe();
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let stop = lifecycle.token().clone();
    lifecycle.spawn("WatchRanking stream", async move {
        changed.mark_unchanged();
        let mut last = snapshot(&engine, &query);
        let first = pb::WatchRankingResponse {
            items: last.clone(),
            changes: Vec::new(),
        };
        if tx.send(Ok(first)).await.is_err() {
            return;
        }
        loop {
            tokio::select! {
                () = tx.closed() => return,
                r = changed.changed() => if r.is_err() { return },
                () = stop.cancelled() => {
                    // Not `send`: a reader that stopped reading must not hold
                    // the shutdown up; its stream then just ends.
                    let _ = tx.try_send(Err(Status::unavailable(
                        "the server is shutting down; watch again on the next one",
                    )));
                    return;
                }
            }
            let now = snapshot(&engine, &query);
            let moved = changes(&last, &now);
            if moved.is_empty() {
                continue;
            }
            last = now.clone();
            if tx
                .send(Ok(pb::WatchRankingResponse {
                    items: now,
                    changes: moved,
                }))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    Ok(Box::pin(ReceiverStream::new(rx)))
}
