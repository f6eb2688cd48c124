//! `WatchRanking`: push the watched top N each time a write changes it.
//!
//! The engine bumps a `watch` counter on every index change. A watch ranks
//! only when its client is ready for a message: the stream is polled when
//! HTTP/2 has window to send in, and then re-ranks from memory at the
//! latest version and sends a message only when its top N differs (rank,
//! key or value density), with the moves. So changes that come while a
//! client does not read coalesce into one update and cost nothing until it
//! reads, and what a watch holds is bounded whatever its client does: the
//! keys, ranks and densities it last sent, and the one message HTTP/2 may
//! hold for it.
//!
//! Each watch has a guard task of the server's [`Lifecycle`]: it ends the
//! stream with UNAVAILABLE (retry elsewhere) when the server stops, since a
//! watch never ends by itself and an open stream keeps hyper's graceful
//! shutdown waiting; and with RESOURCE_EXHAUSTED when a change has waited
//! unread for `[limits] watch_unread_timeout_ms`; with UNAUTHENTICATED when
//! the token it was opened with is revoked. The guard holds the
//! watch's place under `[limits] max_watchers`.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Semaphore;
use tokio_stream::Stream;
use tokio_stream::wrappers::WatchStream;
use tokio_util::sync::{CancellationToken, DropGuard};
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

/// What a watch remembers of an item it sent: enough to say what moved.
#[derive(Debug, Clone)]
pub struct Sent {
    key: String,
    rank: i32,
    value_density: f64,
}

fn item_key(r: &pb::RankedItem) -> String {
    r.score
        .as_ref()
        .map(|s| s.item_key.clone())
        .unwrap_or_default()
}

fn density(r: &pb::RankedItem) -> f64 {
    r.score.as_ref().map_or(0.0, |s| s.value_density)
}

/// What a watch remembers of the items it sent.
pub fn sent(items: &[pb::RankedItem]) -> Vec<Sent> {
    items
        .iter()
        .map(|r| Sent {
            key: item_key(r),
            rank: r.rank,
            value_density: density(r),
        })
        .collect()
}

/// What moved between what was sent and the top N now, in new-rank order,
/// then the items that left.
pub fn changes(old: &[Sent], new: &[pb::RankedItem]) -> Vec<pb::RankChange> {
    let before: HashMap<&str, &Sent> = old.iter().map(|o| (o.key.as_str(), o)).collect();
    let mut after = std::collections::HashSet::new();
    let mut out = Vec::new();
    for r in new {
        let k = item_key(r);
        let d = density(r);
        match before.get(k.as_str()) {
            Some(o) if o.rank == r.rank && o.value_density.to_bits() == d.to_bits() => {}
            o => out.push(pb::RankChange {
                item_key: k.clone(),
                old_rank: o.map_or(0, |o| o.rank),
                new_rank: r.rank,
                old_value_density: o.map_or(0.0, |o| o.value_density),
                new_value_density: d,
            }),
        }
        after.insert(k);
    }
    for o in old {
        if !after.contains(&o.key) {
            out.push(pb::RankChange {
                item_key: o.key.clone(),
                old_rank: o.rank,
                new_rank: 0,
                old_value_density: o.value_density,
                new_value_density: 0.0,
            });
        }
    }
    out
}

/// What a watch's stream and its guard share.
#[derive(Default)]
struct Shared {
    /// What the client was last sent; emptied when the watch ends.
    sent: Vec<Sent>,
    /// The engine version the stream last ranked at.
    ranked_at: u64,
    /// Set when the guard ended the watch: the client reads it next.
    ending: Option<Status>,
    /// The stream's task, to wake when the guard ends the watch.
    waker: Option<Waker>,
}

/// The client's side of a watch: ranks when polled, that is when HTTP/2
/// has room to send.
struct RankingWatch {
    engine: Arc<Engine>,
    query: RankRequest,
    versions: WatchStream<u64>,
    shared: Arc<Mutex<Shared>>,
    first: bool,
    done: bool,
    /// Tells the guard the client went away.
    _gone: DropGuard,
}

impl Stream for RankingWatch {
    type Item = std::result::Result<pb::WatchRankingResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            let ended = this.shared.lock().ending.take();
            if let Some(status) = ended {
                this.done = true;
                return Poll::Ready(Some(Err(status)));
            }
            let version = match Pin::new(&mut this.versions).poll_next(cx) {
                Poll::Ready(Some(v)) => v,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => {
                    let mut shared = this.shared.lock();
                    if shared.ending.is_some() {
                        continue;
                    }
                    shared.waker = Some(cx.waker().clone());
                    return Poll::Pending;
                }
            };
            let now = snapshot(&this.engine, &this.query);
            let mut shared = this.shared.lock();
            shared.ranked_at = version;
            let moved = if this.first {
                this.first = false;
                Vec::new()
            } else {
                let moved = changes(&shared.sent, &now);
                if moved.is_empty() {
                    continue;
                }
                moved
            };
            shared.sent = sent(&now);
            return Poll::Ready(Some(Ok(pb::WatchRankingResponse {
                items: now,
                changes: moved,
            })));
        }
    }
}

/// Ends a watch with `status`: its client reads it next.
fn end(shared: &Mutex<Shared>, status: Status) {
    let waker = {
        let mut s = shared.lock();
        s.ending = Some(status);
        s.sent = Vec::new();
        s.waker.take()
    };
    if let Some(w) = waker {
        w.wake();
    }
}

/// Starts a watch; the stream ends when the client goes away, leaves a
/// change unread too long, the server stops, or `revoked` (the caller's
/// token, with auth on) is cancelled.
pub fn watch_ranking(
    engine: Arc<Engine>,
    lifecycle: &Lifecycle,
    watchers: &Watchers,
    r: pb::WatchRankingRequest,
    revoked: Option<CancellationToken>,
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
        narrow: Default::default(),
    };
    let Ok(place) = watchers.open.clone().try_acquire_owned() else {
        return Err(Status::resource_exhausted(format!(
            "{} watches are open, the most this server allows ([limits] max_watchers); close one or retry later",
            watchers.max
        )));
    };
    let unread = watchers.unread;
    let shared = Arc::new(Mutex::new(Shared::default()));
    let gone = CancellationToken::new();
    let stream = RankingWatch {
        versions: WatchStream::new(engine.subscribe()),
        engine: engine.clone(),
        query,
        shared: shared.clone(),
        first: true,
        done: false,
        _gone: gone.clone().drop_guard(),
    };
    let mut changed = engine.subscribe();
    let stop = lifecycle.token().clone();
    // Without auth nothing revokes the watch: a token never cancelled.
    let revoked = revoked.unwrap_or_default();
    lifecycle.spawn("WatchRanking stream", async move {
        let _place = place;
        loop {
            tokio::select! {
                () = stop.cancelled() => return end(&shared, Status::unavailable(
                    "the server is shutting down; watch again on the next one",
                )),
                () = revoked.cancelled() => return end(&shared, Status::unauthenticated(
                    "the token this watch was opened with has been revoked",
                )),
                () = gone.cancelled() => return,
                r = changed.changed() => if r.is_err() { return },
            }
            let Some(limit) = unread else { continue };
            let version = *changed.borrow_and_update();
            // The client has `limit` to be ready for this change.
            tokio::select! {
                () = stop.cancelled() => return end(&shared, Status::unavailable(
                    "the server is shutting down; watch again on the next one",
                )),
                () = revoked.cancelled() => return end(&shared, Status::unauthenticated(
                    "the token this watch was opened with has been revoked",
                )),
                () = gone.cancelled() => return,
                () = tokio::time::sleep(limit) => {}
            }
            if shared.lock().ranked_at < version {
                let ms = limit.as_millis() as u64;
                tracing::info!(
                    unread_ms = ms,
                    "ending a WatchRanking stream whose client does not read its updates"
                );
                return end(&shared, Status::resource_exhausted(format!(
                    "this watch's client left an update unread for {ms} ms, so the server ended it ([limits] watch_unread_timeout_ms); watch again"
                )));
            }
        }
    });
    Ok(Box::pin(stream))
}
