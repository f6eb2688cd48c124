//! `plumbline.v1.SyncService`: run a sync and stream its progress, or read
//! a source's sync state.

use std::pin::Pin;
use std::sync::Arc;

use tokio_stream::Stream;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{Request, Response, Status};

use super::convert::{Check, timestamp};
use crate::domain::SyncRunState;
use crate::engine::quote;
use crate::proto as pb;
use crate::sync::{SyncError, SyncEvent, Syncer};

/// Maps a sync failure to a status: problems of configuration or access are
/// FAILED_PRECONDITION, the tracker misbehaving is UNAVAILABLE.
pub fn sync_status(e: SyncError) -> Status {
    match e {
        SyncError::Engine(e) => e.into(),
        SyncError::AlreadyRunning(_)
        | SyncError::RunningElsewhere(_)
        | SyncError::SplitRunning(_) => Status::aborted(e.to_string()),
        // `Http` is a 4xx that retrying cannot fix (bad query, unknown project).
        SyncError::Unauthorized { .. }
        | SyncError::Anonymous { .. }
        | SyncError::Forbidden { .. }
        | SyncError::NotFound { .. }
        | SyncError::Http { .. }
        | SyncError::MissingToken { .. }
        | SyncError::Redirected { .. }
        | SyncError::Refused { .. }
        | SyncError::OtherOrigin { .. }
        | SyncError::PushSource { .. }
        | SyncError::Config { .. } => Status::failed_precondition(e.to_string()),
        // The server is going away: the caller may sync again on the next.
        SyncError::Interrupted { .. }
        | SyncError::Transport { .. }
        | SyncError::RateLimited { .. }
        | SyncError::Malformed { .. } => Status::unavailable(e.to_string()),
        SyncError::Client(_) => Status::internal(e.to_string()),
    }
}

fn event_pb(e: SyncEvent) -> pb::SyncSourceResponse {
    use pb::sync_source_response::Event;
    let event = match e {
        SyncEvent::PageFetched {
            page,
            item_count,
            upserted,
            total_upserted,
            requests,
            expected_total,
        } => Event::PageFetched(pb::PageFetched {
            page: page as i32,
            item_count: item_count as i32,
            upserted_count: upserted as i32,
            total_upserted: total_upserted as i32,
            total_requests: requests as i32,
            expected_total: expected_total.unwrap_or(0).min(i32::MAX as u64) as i32,
        }),
        SyncEvent::RateLimitWait { until, reason } => Event::RateLimitWait(pb::RateLimitWait {
            until: Some(timestamp(&until)),
            reason,
        }),
    };
    pb::SyncSourceResponse { event: Some(event) }
}

/// `plumbline.v1.SyncService`.
#[derive(Clone)]
pub struct SyncApi(pub Arc<Syncer>);

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::SyncSourceResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::sync_service_server::SyncService for SyncApi {
    type SyncSourceStream = EventStream;

    async fn sync_source(
        &self,
        req: Request<pb::SyncSourceRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let r = req.into_inner();
        let mut c = Check::new("");
        c.id("source_id", &r.source_id);
        c.finish(())?;
        let source = self.0.engine().get_source(&r.source_id)?;
        // Refused on the call itself, not as the stream's last message.
        if !source.kind.is_tracker() {
            return Err(sync_status(SyncError::PushSource {
                source_id: r.source_id,
                action: "never syncs it",
            }));
        }
        if self.0.is_running(&r.source_id) {
            return Err(sync_status(SyncError::AlreadyRunning(r.source_id)));
        }
        // Unbounded: one event per page, and the sync must never block on a
        // slow reader.
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let syncer = self.0.clone();
        // The sync runs to its end even if the client goes away: every page
        // it stores is consistent, and stopping halfway gains nothing. Only
        // the server stopping ends it early, after the pages in hand; the
        // shutdown waits for it, so its last status reaches the client.
        let what = format!("sync of source {} (SyncSource call)", quote(&r.source_id));
        self.0.lifecycle().spawn(what, async move {
            let events_tx = tx.clone();
            let send = move |e: SyncEvent| {
                let _ = events_tx.send(Ok(event_pb(e)));
            };
            let last = match syncer.sync(&r.source_id, r.full, &send).await {
                Ok(s) => Ok(pb::SyncSourceResponse {
                    event: Some(pb::sync_source_response::Event::Done(pb::SyncDone {
                        pages: s.pages as i32,
                        requests: s.requests as i32,
                        upserted_count: s.upserted as i32,
                        not_modified: s.not_modified,
                        removed_count: s.removed as i32,
                        warnings: s.warnings,
                    })),
                }),
                Err(e) => Err(sync_status(e)),
            };
            let _ = tx.send(last);
        });
        Ok(Response::new(Box::pin(UnboundedReceiverStream::new(rx))))
    }

    async fn get_sync_status(
        &self,
        req: Request<pb::GetSyncStatusRequest>,
    ) -> Result<Response<pb::GetSyncStatusResponse>, Status> {
        let id = req.into_inner().source_id;
        let mut c = Check::new("");
        c.id("source_id", &id);
        c.finish(())?;
        let source = self.0.engine().get_source(&id)?;
        let mut st = self.0.engine().sync_state(&id).await?;
        // Scrubbed as it is shown: a database may hold an error stored
        // before errors were scrubbed.
        st.last_error = self.0.shown_error(&source, &st.last_error);
        let state = match (self.0.is_running(&id), st.state) {
            (true, _) => SyncRunState::Running,
            // Stored as running, but no sync runs: the server stopped mid-way.
            (false, SyncRunState::Running) => {
                st.last_error = "interrupted: the server stopped during the sync; \
                                 the next sync resumes from the cursor"
                    .into();
                SyncRunState::Failed
            }
            (false, s) => s,
        };
        Ok(Response::new(pb::GetSyncStatusResponse {
            status: Some(pb::SyncStatus {
                source_id: id,
                state: match state {
                    SyncRunState::Never => pb::SyncState::Never,
                    SyncRunState::Running => pb::SyncState::Running,
                    SyncRunState::Succeeded => pb::SyncState::Succeeded,
                    SyncRunState::Failed => pb::SyncState::Failed,
                } as i32,
                cursor_time: st.cursor.time.as_ref().map(timestamp),
                last_start_time: st.last_start_time.as_ref().map(timestamp),
                last_finish_time: st.last_finish_time.as_ref().map(timestamp),
                last_error: st.last_error,
                last_request_count: st.last_request_count as i32,
                last_upserted_count: st.last_upserted_count as i32,
            }),
        }))
    }
}
