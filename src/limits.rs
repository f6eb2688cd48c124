//! What one client may consume: the `[limits]` settings and the pieces that
//! enforce them around the gRPC server, so that no handler has to.
//!
//! - [`Incoming`] wraps the accepted TCP connections: at most
//!   `max_connections` at once (the next one waits in the listen backlog,
//!   not in our descriptors), a connection that sends nothing for
//!   `idle_timeout_ms` is closed, and running out of file descriptors is
//!   logged (rate-limited) and waited out instead of spinning on `accept`.
//!   It yields plain IO types that implement tonic's `Connected`, so TLS can
//!   sit on top.
//! - [`layers`] is the tower stack in front of every service: a global
//!   concurrency limit with load shedding past it (UNAVAILABLE: see
//!   [`GrpcLimits`]) and the rewrite of tonic's statuses for over-size and
//!   undecodable requests to the codes other gRPC servers use.
//! - HTTP/2 settings (streams per connection, keepalive) are the builder's
//!   ([`LimitsConfig::apply`]); the watcher's own bounds are in
//!   `api/watch.rs`, the response byte bound in the list handlers.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_stream::Stream;
use tokio_util::sync::PollSemaphore;
use tonic::codegen::http;
use tonic::transport::server::{Connected, TcpConnectInfo};
use tonic::{Code, Status};
use tower::ServiceBuilder;
use tower::layer::util::{Identity, Stack};
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;
use tower::load_shed::error::Overloaded;

/// Most bytes of a value model file (`ApplyValueModel`): the gRPC message
/// bound (4 MiB) less room for the other fields.
pub const MAX_VALUE_MODEL_BYTES: usize = (4 << 20) - 4096;
/// Most entries of a value model file, observations and links included:
/// one plan and one transaction stay a few seconds of work at most.
pub const MAX_VALUE_MODEL_ENTRIES: usize = 50_000;

/// What one client may consume; every bound has a default that is safe on
/// a small host (1,024 file descriptors, a few hundred MB of memory).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// HTTP/2 streams (calls and watches) one connection may have open at
    /// once (`SETTINGS_MAX_CONCURRENT_STREAMS`); the client queues the rest.
    pub max_concurrent_streams: u32,
    /// Connections open at once; the next one waits in the listen backlog
    /// until one closes. Keep it well under the process's file descriptor
    /// limit (`ulimit -n`): the database and the trackers need some too.
    pub max_connections: usize,
    /// A connection that sends no byte for this many milliseconds is closed;
    /// 0 never closes one. Live clients answer the keepalive pings, so keep
    /// it above `keepalive_interval_secs`.
    pub idle_timeout_ms: u64,
    /// Seconds between HTTP/2 keepalive pings on a connection that sends
    /// nothing; 0 sends none.
    pub keepalive_interval_secs: u64,
    /// Seconds to wait for a ping's answer before the connection is closed.
    pub keepalive_timeout_secs: u64,
    /// Calls handled at once across all connections; a call past it is
    /// refused at once with UNAVAILABLE (retry with backoff) instead of
    /// queueing. Streams count only until their first message.
    pub max_concurrent_requests: usize,
    /// Largest encoded response carrying item bodies, in bytes: a
    /// `ListItems` page ends early, with a next page token, rather than
    /// pass it; a `BatchGetItems` of several items past it is refused.
    /// gRPC clients refuse messages over 4 MiB by default.
    pub max_response_bytes: usize,
    /// A `WatchRanking` stream whose client has not taken a pending update
    /// for this many milliseconds ends with RESOURCE_EXHAUSTED.
    pub watch_unread_timeout_ms: u64,
    /// `WatchRanking` streams open at once across all clients; one more is
    /// refused with RESOURCE_EXHAUSTED.
    pub max_watchers: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_concurrent_streams: 100,
            max_connections: 512,
            idle_timeout_ms: 60_000,
            keepalive_interval_secs: 20,
            keepalive_timeout_secs: 20,
            max_concurrent_requests: 256,
            max_response_bytes: 4 << 20,
            watch_unread_timeout_ms: 30_000,
            max_watchers: 4096,
        }
    }
}

fn nonzero_ms(ms: u64) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(ms))
}

impl LimitsConfig {
    /// The HTTP/2 settings on tonic's server builder.
    pub fn apply<L>(&self, builder: tonic::transport::Server<L>) -> tonic::transport::Server<L> {
        let keepalive = nonzero_ms(self.keepalive_interval_secs.saturating_mul(1000));
        builder
            .max_concurrent_streams(Some(self.max_concurrent_streams.max(1)))
            .http2_keepalive_interval(keepalive)
            .http2_keepalive_timeout(
                keepalive.map(|_| Duration::from_secs(self.keepalive_timeout_secs.max(1))),
            )
    }

    /// The idle timeout of a connection, if any.
    pub fn idle_timeout(&self) -> Option<Duration> {
        nonzero_ms(self.idle_timeout_ms)
    }

    /// How long a watcher may leave an update unread, if bounded.
    pub fn watch_unread_timeout(&self) -> Option<Duration> {
        nonzero_ms(self.watch_unread_timeout_ms)
    }

    /// The byte bound of a list response (at least 1 KiB, so that a page
    /// always has room for its token).
    pub fn response_bytes(&self) -> usize {
        self.max_response_bytes.max(1024)
    }
}

// ----- connections -----

/// Accept errors between two warnings about running out of descriptors.
const FD_WARNING_EVERY: Duration = Duration::from_secs(10);
/// The pause after an accept error, so that a full descriptor table is not
/// retried in a busy loop.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The accepted connections of a listener, within the connection limit and
/// closed when idle (see the module doc).
pub struct Incoming<S> {
    inner: S,
    permits: PollSemaphore,
    permit: Option<OwnedSemaphorePermit>,
    idle: Option<Duration>,
    backoff: Option<Pin<Box<Sleep>>>,
    last_warning: Option<Instant>,
    suppressed: u64,
}

impl<S> Incoming<S> {
    /// Wraps `inner` (tonic's `TcpIncoming`) with `config`'s limits.
    pub fn new(inner: S, config: &LimitsConfig) -> Self {
        Incoming {
            inner,
            permits: PollSemaphore::new(Arc::new(Semaphore::new(config.max_connections.max(1)))),
            permit: None,
            idle: config.idle_timeout(),
            backoff: None,
            last_warning: None,
            suppressed: 0,
        }
    }

    fn accept_failed(&mut self, e: &io::Error) {
        // EMFILE / ENFILE: the process or the system is out of descriptors.
        if matches!(e.raw_os_error(), Some(23 | 24)) {
            let now = Instant::now();
            if self
                .last_warning
                .is_none_or(|t| now.duration_since(t) >= FD_WARNING_EVERY)
            {
                tracing::warn!(
                    error = %e,
                    since_last_warning = self.suppressed,
                    "cannot accept connections: out of file descriptors; raise `ulimit -n` or lower [limits] max_connections"
                );
                self.last_warning = Some(now);
                self.suppressed = 0;
            } else {
                self.suppressed += 1;
            }
        } else {
            tracing::debug!(error = %e, "accepting a connection failed");
        }
        self.backoff = Some(Box::pin(tokio::time::sleep(ACCEPT_BACKOFF)));
    }
}

impl<S> Stream for Incoming<S>
where
    S: Stream<Item = io::Result<TcpStream>> + Unpin,
{
    type Item = io::Result<Conn>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(b) = this.backoff.as_mut() {
                ready!(b.as_mut().poll(cx));
                this.backoff = None;
            }
            // Over the limit, the next connection waits in the kernel's
            // listen backlog, not in a descriptor of ours.
            let permit = match this.permit.take() {
                Some(p) => p,
                None => match ready!(this.permits.poll_acquire(cx)) {
                    Some(p) => p,
                    None => return Poll::Ready(None),
                },
            };
            match Pin::new(&mut this.inner).poll_next(cx) {
                Poll::Pending => {
                    this.permit = Some(permit);
                    return Poll::Pending;
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Ready(Some(Ok(io))) => {
                    return Poll::Ready(Some(Ok(Conn {
                        io,
                        idle: this.idle.map(|d| (d, Box::pin(tokio::time::sleep(d)))),
                        _permit: permit,
                    })));
                }
                Poll::Ready(Some(Err(e))) => {
                    this.permit = Some(permit);
                    this.accept_failed(&e);
                }
            }
        }
    }
}

/// One accepted connection: holds its place under the connection limit
/// and ends when it has sent nothing for the idle timeout.
pub struct Conn {
    io: TcpStream,
    idle: Option<(Duration, Pin<Box<Sleep>>)>,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if let Some((d, timer)) = this.idle.as_mut()
                    && buf.filled().len() > before
                {
                    timer.as_mut().reset(Instant::now() + *d);
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                let Some((d, timer)) = this.idle.as_mut() else {
                    return Poll::Pending;
                };
                ready!(timer.as_mut().poll(cx));
                let idle_ms = d.as_millis() as u64;
                tracing::debug!(
                    idle_ms,
                    peer = ?this.io.peer_addr().ok(),
                    "closing a connection that sent nothing"
                );
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the connection was idle past [limits] idle_timeout_ms",
                )))
            }
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl Connected for Conn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

// ----- calls -----

/// The tower stack in front of every service, outermost first: the status
/// rewrite ([`GrpcLimits`]), load shedding, and the global concurrency
/// limit it sheds past.
pub type Layers = ServiceBuilder<
    Stack<GlobalConcurrencyLimitLayer, Stack<LoadShedLayer, Stack<GrpcLimitsLayer, Identity>>>,
>;

/// The cross-cutting limits on calls, as tower layers for the server.
pub fn layers(config: &LimitsConfig) -> Layers {
    ServiceBuilder::new()
        .layer(GrpcLimitsLayer)
        .layer(LoadShedLayer::new())
        .layer(GlobalConcurrencyLimitLayer::new(
            config.max_concurrent_requests.max(1),
        ))
}

/// Layer of [`GrpcLimits`].
#[derive(Debug, Clone, Copy)]
pub struct GrpcLimitsLayer;

impl<S> tower::Layer<S> for GrpcLimitsLayer {
    type Service = GrpcLimits<S>;

    fn layer(&self, inner: S) -> GrpcLimits<S> {
        GrpcLimits { inner }
    }
}

/// Gives the statuses of refused calls the codes clients act on:
///
/// - a call shed past the concurrency limit is UNAVAILABLE: it was not
///   started, and UNAVAILABLE is the code gRPC clients' retry policies and
///   libraries retry with backoff by default (tonic's RESOURCE_EXHAUSTED is
///   not retried, and reads as a quota of the caller's);
/// - a request over the size limit is RESOURCE_EXHAUSTED, as grpc-go and
///   grpc-java answer (tonic says OUT_OF_RANGE);
/// - a request that does not decode is INVALID_ARGUMENT, the caller's
///   fault (tonic says INTERNAL).
///
/// The last two only for unary requests, whose status comes in the
/// response headers; plumbline has no client-streaming calls.
#[derive(Debug, Clone)]
pub struct GrpcLimits<S> {
    inner: S,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<S, B, RB> tower::Service<http::Request<B>> for GrpcLimits<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    RB: Default,
{
    type Response = http::Response<RB>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<http::Response<RB>, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let fut = self.inner.call(req);
        Box::pin(async move {
            match fut.await {
                Ok(mut response) => {
                    rewrite_refusal(response.headers_mut());
                    Ok(response)
                }
                Err(e) => {
                    let e: BoxError = e.into();
                    if e.is::<Overloaded>() {
                        Ok(Status::unavailable(
                            "the server is at its limit of concurrent calls ([limits] max_concurrent_requests); retry with backoff",
                        )
                        .into_http())
                    } else {
                        Err(e)
                    }
                }
            }
        })
    }
}

/// The start of tonic's message for a request over the size limit.
const TOO_LARGE: &str = "Error, decoded message length too large";
/// The start of prost's message for bytes that are not the message.
const UNDECODABLE: &str = "failed to decode Protobuf message";

/// Rewrites a trailers-only status of tonic's codec (see [`GrpcLimits`]).
fn rewrite_refusal(headers: &mut http::HeaderMap) {
    if !headers.contains_key("grpc-status") {
        return;
    }
    let Some(status) = Status::from_header_map(headers) else {
        return;
    };
    let rewritten = match status.code() {
        Code::OutOfRange if status.message().starts_with(TOO_LARGE) => {
            Status::resource_exhausted(format!("the request is too large: {}", status.message()))
        }
        Code::Internal if status.message().starts_with(UNDECODABLE) => {
            Status::invalid_argument(format!(
                "the request is not a valid message of this method ({}); check that the client uses plumbline's protos",
                status.message()
            ))
        }
        _ => return,
    };
    if rewritten.add_header(headers).is_err() {
        tracing::warn!("could not rewrite the status of a refused request");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers_of(status: Status) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        status.add_header(&mut h).unwrap();
        h
    }

    #[test]
    fn codec_refusals_get_the_codes_other_servers_use_and_nothing_else_changes() {
        let mut h = headers_of(Status::out_of_range(format!(
            "{TOO_LARGE}: found 5000000 bytes, the limit is: 4194304 bytes"
        )));
        rewrite_refusal(&mut h);
        let s = Status::from_header_map(&h).unwrap();
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert!(s.message().contains("4194304"), "{}", s.message());

        let mut h = headers_of(Status::internal(format!(
            "{UNDECODABLE}: invalid wire type value: 7"
        )));
        rewrite_refusal(&mut h);
        assert_eq!(
            Status::from_header_map(&h).unwrap().code(),
            Code::InvalidArgument
        );

        for other in [
            Status::internal("storage failure; see the server log"),
            Status::out_of_range("rank past the end"),
        ] {
            let mut h = headers_of(other.clone());
            rewrite_refusal(&mut h);
            let s = Status::from_header_map(&h).unwrap();
            assert_eq!((s.code(), s.message()), (other.code(), other.message()));
        }
    }

    #[tokio::test]
    async fn a_call_past_the_concurrency_limit_is_shed_with_unavailable() {
        use tower::{Service, ServiceExt};
        let (release, released) = tokio::sync::watch::channel(false);
        let slow = tower::service_fn(move |_req: http::Request<()>| {
            let mut released = released.clone();
            async move {
                let _ = released.wait_for(|r| *r).await;
                Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
            }
        });
        let config = LimitsConfig {
            max_concurrent_requests: 1,
            ..LimitsConfig::default()
        };
        let mut svc = layers(&config).service(slow);
        let first = svc.ready().await.unwrap().call(http::Request::new(()));
        let first = tokio::spawn(first);
        let second = svc
            .ready()
            .await
            .unwrap()
            .call(http::Request::new(()))
            .await
            .unwrap();
        let status = Status::from_header_map(second.headers()).expect("a status");
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        release.send(true).unwrap();
        let first = first.await.unwrap().unwrap();
        assert!(Status::from_header_map(first.headers()).is_none());
    }

    #[tokio::test]
    async fn accept_errors_are_waited_out_and_connections_past_the_limit_wait() {
        use tokio_stream::StreamExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut accepted = Vec::new();
        let mut clients = Vec::new();
        for _ in 0..2 {
            clients.push(TcpStream::connect(addr).await.unwrap());
            accepted.push(Ok(listener.accept().await.unwrap().0));
        }
        let emfile = || Err(io::Error::from_raw_os_error(24));
        let inner = tokio_stream::iter([emfile(), emfile()].into_iter().chain(accepted));
        let config = LimitsConfig {
            max_connections: 1,
            ..LimitsConfig::default()
        };
        let mut incoming = Incoming::new(inner, &config);
        // The errors are logged and waited out, never handed on.
        let first = incoming.next().await.unwrap().unwrap();
        assert_eq!(
            incoming.suppressed, 1,
            "the second error in a row is not logged"
        );
        // The second connection waits for the first to close.
        let waited = tokio::time::timeout(Duration::from_millis(200), incoming.next()).await;
        assert!(waited.is_err(), "a connection past the limit was handed on");
        drop(first);
        incoming.next().await.unwrap().unwrap();
    }

    #[test]
    fn limits_come_from_the_file_and_unknown_ones_are_refused() {
        use crate::config::{Config, Overrides};
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.toml");
        std::fs::write(&f, "[limits]\nmax_watchers = 7\nidle_timeout_ms = 0\n").unwrap();
        let cfg = Config::load(Some(&f), Overrides::default()).unwrap();
        assert_eq!(cfg.limits.max_watchers, 7);
        assert_eq!(cfg.limits.idle_timeout(), None);
        assert_eq!(
            cfg.limits.max_concurrent_streams,
            LimitsConfig::default().max_concurrent_streams
        );
        std::fs::write(&f, "[limits]\nmax_sockets = 7\n").unwrap();
        let err = Config::load(Some(&f), Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_sockets"), "{err}");
    }
}
