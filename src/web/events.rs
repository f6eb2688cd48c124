//! `/events`: server-sent events that tell an open page the ranking may
//! have changed, fed by the engine's change counter (the one `WatchRanking`
//! follows). The page re-fetches what it shows; the event carries only the
//! engine's version, so that one stream costs the server a counter and a
//! timer, whatever is ranked.
//!
//! Changes are coalesced: after a change the stream waits [`COALESCE`] and
//! sends one event for everything that came meanwhile (a sync's burst of
//! pages is one event). At most `[web] max_event_streams` are open at once;
//! one more is answered 503. A stream ends when the server stops (so that
//! the graceful shutdown does not wait on it), when the session's token is
//! revoked, and when its connection has sent nothing for `[limits]
//! idle_timeout_ms` (the browser's EventSource then reconnects, and the
//! page's script re-fetches on the new stream's `hello`).

use std::convert::Infallible;
use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};

use super::WebState;
use super::session::{Viewer, refuse};

/// How long a stream gathers changes before it sends one event.
pub const COALESCE: Duration = Duration::from_millis(40);

/// `GET /events`.
pub(crate) async fn events(
    State(state): State<WebState>,
    Extension(viewer): Extension<Viewer>,
) -> Response {
    let Ok(place) = state.streams.clone().try_acquire_owned() else {
        let detail = format!(
            "{} live pages are open, the most this server allows ([web] max_event_streams); this page will not update by itself until one closes. Reload to try again.",
            state.max_streams
        );
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "Too many live pages",
            &detail,
        );
    };
    let mut changed = state.engine.subscribe();
    let stop = state.lifecycle.token().clone();
    let revoked = viewer.caller.map(|c| c.revoked).unwrap_or_default();
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    state.lifecycle.spawn("web event stream", async move {
        let _place = place;
        let first = *changed.borrow_and_update();
        if tx
            .send(Event::default().event("hello").data(first.to_string()))
            .await
            .is_err()
        {
            return;
        }
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = revoked.cancelled() => return,
                () = tx.closed() => return,
                r = changed.changed() => if r.is_err() { return },
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(COALESCE) => {}
            }
            let version = *changed.borrow_and_update();
            let event = Event::default().event("ranking").data(version.to_string());
            if tx.send(event).await.is_err() {
                return;
            }
        }
    });
    let stream = tokio_stream::StreamExt::map(
        tokio_stream::wrappers::ReceiverStream::new(rx),
        Ok::<Event, Infallible>,
    );
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}
