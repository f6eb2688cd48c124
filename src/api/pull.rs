//! `PullMetric` of `plumbline.v1.ValueModelService`: run a pull of a
//! metric's source and stream its progress, as `SyncSource` does for a
//! tracker (the handler in `value_model.rs` calls [`pull_metric`]).

use std::pin::Pin;
use std::sync::Arc;

use tokio_stream::Stream;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{Response, Status};

use super::convert::{self, Check};
use crate::engine::quote;
use crate::metric_source::{PullError, PullEvent, Puller};
use crate::proto as pb;

pub type PullStream = Pin<Box<dyn Stream<Item = Result<pb::PullMetricResponse, Status>> + Send>>;

/// Maps a pull failure to a status: the settings or the access are
/// FAILED_PRECONDITION (the caller must change something), a source that
/// failed is UNAVAILABLE (trying again may help).
pub fn pull_status(e: PullError) -> Status {
    match e {
        PullError::Engine(e) => e.into(),
        PullError::AlreadyRunning(_) => Status::aborted(e.to_string()),
        PullError::NoSource(_)
        | PullError::Fetch {
            needs_change: true, ..
        } => Status::failed_precondition(e.to_string()),
        PullError::Fetch { .. } | PullError::Interrupted(_) => Status::unavailable(e.to_string()),
    }
}

/// A metric as the API shows it: with its last pull status.
pub fn metric_pb(
    puller: &Puller,
    m: &crate::engine::MetricView,
    now: crate::domain::Time,
) -> pb::Metric {
    let mut p = convert::metric_to_pb(m, now);
    p.pull_status = puller.engine().pull_status(&m.metric.id).map(|mut s| {
        // Scrubbed again as it is shown, as a sync's stored error is.
        s.last_error = puller.shown_error(m.metric.source.as_ref(), &s.last_error);
        convert::pull_status_to_pb(&s)
    });
    p
}

pub async fn pull_metric(
    puller: Arc<Puller>,
    metric_id: String,
) -> Result<Response<PullStream>, Status> {
    let mut c = Check::new("");
    c.id("metric_id", &metric_id);
    c.finish(())?;
    let m = puller.engine().get_metric(&metric_id)?;
    // Refused on the call itself, not as the stream's last message.
    if m.metric.source.is_none() {
        return Err(pull_status(PullError::NoSource(metric_id)));
    }
    if puller.is_running(&metric_id) {
        return Err(pull_status(PullError::AlreadyRunning(metric_id)));
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let what = format!("pull of metric {} (PullMetric call)", quote(&metric_id));
    let p = puller.clone();
    puller.lifecycle().spawn(what, async move {
        let events_tx = tx.clone();
        let send = move |e: PullEvent| {
            let PullEvent::Fetched {
                points,
                refused,
                refused_count,
            } = e;
            let _ = events_tx.send(Ok(pb::PullMetricResponse {
                event: Some(pb::pull_metric_response::Event::Fetched(pb::PullFetched {
                    point_count: points.min(i32::MAX as u32) as i32,
                    refused,
                    refused_count: refused_count.min(i32::MAX as u32) as i32,
                })),
            }));
        };
        let last = match p.pull(&metric_id, &send).await {
            Ok(s) => Ok(pb::PullMetricResponse {
                event: Some(pb::pull_metric_response::Event::Done(pb::PullDone {
                    stored_count: s.stored.min(i32::MAX as u32) as i32,
                    refused_count: s.refused.min(i32::MAX as u32) as i32,
                    metric: Some(metric_pb(&p, &s.metric, chrono::Utc::now())),
                })),
            }),
            Err(e) => Err(pull_status(e)),
        };
        let _ = tx.send(last);
    });
    Ok(Response::new(Box::pin(UnboundedReceiverStream::new(rx))))
}
