//! `WatchRanking`: push the watched top N each time a write changes it.
//!
//! The engine bumps a `watch` counter on every index change; a watcher wakes,
//! re-ranks from memory and sends a message only when its top N differs
//! (rank, key or value density), with the moves. Bursts of writes coalesce:
//! a watcher that wakes late sees the latest state once.
//!
//! What a watcher may hold is bounded whatever its client does: at most one
//! message waits for the client (a channel of one), and the next one is
//! computed only once the client has taken it, from the latest state, so
//! changes that come while a client does not read coalesce into one update
//! and cost nothing until it reads. A client that leaves a message unread
//! for `[limits] watch_unread_timeout_ms` has its watch ended with
//! RESOURCE_EXHAUSTED, and at most `[limits] max_watchers` watches are open
//! at once.
//!
//! A watch is the one call that never ends by itself, and an open stream
//! keeps hyper's graceful shutdown waiting on its connection: so each
//! watcher is a task of the server's [`Lifecycle`], and ends its stream with
//! UNAVAILABLE (retry elsewhere) when the server stops.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tokio_stream::Stream;
use tonic::Status;

use super::page;
use super::ranking::{rank_order, ranked_items};
use crate::engine::{Engine, RankRequest};
use crate::lifecycle::Lifecycle;
use crate::limits::LimitsConfig;
use crate::proto as pb;

/// What all watches share: how many may be open, and how long one may leave
/// an update unread.
#[derive(Debug, Clone)]
pub struct Watchers {
    open: Arc<Semaphore>,
    max: usize,
    unread: Option<Duration>,
}

impl Watchers {
    pub fn new(config: &LimitsConfig) -> Self {
        let max = config.max_watchers.clamp(1, Semaphore::MAX_PERMITS);
        Watchers {
            open: Arc::new(Semaphore::new(max)),
            max,
            unread: config.watch_unread_timeout(),
        }
    }

    /// Watches open now.
    pub fn open(&self) -> usize {
        self.max - self.open.available_permits()
    }
}

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

/// How a watch ended, when the server ended it; its client reads this
/// status in place of whatever message was still waiting.
type Ending = Arc<Mutex<Option<Status>>>;

/// The client's side of a watch: the one message waiting, then the status
/// the server ended the watch with, if it did.
struct WatchStream {
    rx: mpsc::Receiver<pb::WatchRankingResponse>,
    ending: Ending,
    done: bool,
}

impl Stream for WatchStream {
    type Item = std::result::Result<pb::WatchRankingResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        let ended = self.ending.lock().take();
        if let Some(status) = ended {
            self.done = true;
            return Poll::Ready(Some(Err(status)));
        }
        match ready!(self.rx.poll_recv(cx)) {
            Some(message) => Poll::Ready(Some(Ok(message))),
            None => {
                self.done = true;
                let ended = self.ending.lock().take();
                Poll::Ready(ended.map(Err))
            }
        }
    }
}

/// Starts a watch; the stream ends when the client goes away, leaves an
/// update unread too long, or the server stops.
pub fn watch_ranking(
    engine: Arc<Engine>,
    lifecycle: &Lifecycle,
    watchers: &Watchers,
    r: pb::WatchRankingRequest,
) -> std::result::Result<RankingStream, Status> {
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
    let Ok(place) = watchers.open.clone().try_acquire_owned() else {
        return Err(Status::resource_exhausted(format!(
            "{} watches are open, the most this server allows ([limits] max_watchers); close one or retry later",
            watchers.max
        )));
    };
    let unread = watchers.unread;
    let mut changed = engine.subscribe();
    let (tx, rx) = mpsc::channel(1);
    let ending = Ending::default();
    let end = ending.clone();
    let stop = lifecycle.token().clone();
    lifecycle.spawn("WatchRanking stream", async move {
        let _place = place;
        let shutting_down = || {
            // Not a message: a reader that stopped reading must not hold the
            // shutdown up; it reads this status in place of what waits.
            *end.lock() = Some(Status::unavailable(
                "the server is shutting down; watch again on the next one",
            ));
        };
        let unread_too_long = || {
            let ms = unread.map_or(0, |d| d.as_millis() as u64);
            tracing::info!(
                unread_ms = ms,
                "ending a WatchRanking stream whose client does not read its updates"
            );
            *end.lock() = Some(Status::resource_exhausted(format!(
                "this watch's client left an update unread for {ms} ms, so the server ended it ([limits] watch_unread_timeout_ms); watch again"
            )));
        };
        // When the message waiting now must have been taken by.
        let deadline = |sent: Instant| sent + unread.unwrap_or(Duration::from_secs(86_400 * 365));
        changed.mark_unchanged();
        let mut last = snapshot(&engine, &query);
        let first = pb::WatchRankingResponse {
            items: last.clone(),
            changes: Vec::new(),
        };
        if tx.send(first).await.is_err() {
            return;
        }
        let mut taken_by = deadline(Instant::now());
        let mut taken = false;
        loop {
            // Wait for a change, and meanwhile for the client to take the
            // message waiting.
            tokio::select! {
                () = stop.cancelled() => return shutting_down(),
                () = tx.closed() => return,
                r = changed.changed() => if r.is_err() { return },
                r = tokio::time::timeout_at(taken_by, tx.reserve()), if !taken => match r {
                    Ok(Ok(_room)) => {
                        taken = true;
                        continue;
                    }
                    Ok(Err(_)) => return,
                    Err(_) => return unread_too_long(),
                },
            }
            // A change: once the client has room for it, say what moved
            // between what it has and the state now.
            let room = tokio::select! {
                () = stop.cancelled() => return shutting_down(),
                r = tokio::time::timeout_at(taken_by, tx.reserve()) => match r {
                    Ok(Ok(room)) => room,
                    Ok(Err(_)) => return,
                    Err(_) => return unread_too_long(),
                },
            };
            changed.mark_unchanged();
            let now = snapshot(&engine, &query);
            let moved = changes(&last, &now);
            if moved.is_empty() {
                taken = true;
                continue;
            }
            last = now.clone();
            room.send(pb::WatchRankingResponse {
                items: now,
                changes: moved,
            });
            taken_by = deadline(Instant::now());
            taken = false;
        }
    });
    Ok(Box::pin(WatchStream {
        rx,
        ending,
        done: false,
    }))
}
