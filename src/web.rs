//! The refinement room: a web view of the ranking, served by `plumbline
//! serve` on its own listener (`[web]`), for the shared screen of a
//! refinement meeting.
//!
//! Shaped as the gRPC side is: the pages read the [`Engine`] directly, with
//! the calls the gRPC services use, and translate its view types to HTML
//! (askama templates compiled into the binary, with the CSS and the one
//! small script embedded too: no CDN, no Node build). Around them:
//! - the listener reuses [`crate::limits::Incoming`] (connection limit,
//!   idle timeout); request bodies are bounded by `[web] max_body_bytes`;
//! - [`session`]: with `[auth] enabled`, a sign-in page trades an API token
//!   for a random session id in an HttpOnly, SameSite=Strict cookie (the
//!   token itself never leaves the form); every form that changes data
//!   carries a CSRF token and its Origin/Referer is checked;
//! - [`events`]: `/events`, server-sent events fed by the engine's change
//!   counter (what `WatchRanking` follows), coalesced, at most
//!   `[web] max_event_streams` at once;
//! - shutdown: the server runs as a task of the server's [`Lifecycle`],
//!   stops accepting when it stops, and event streams end at once;
//! - [`grpc_web_cors`]: not this listener's: the CORS allow-list of the
//!   gRPC listener's gRPC-Web (browser-based tracker plugins).

mod events;
mod learning;
mod pages;
mod segments;
mod session;
mod since;
mod view;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::auth::Tokens;
use crate::engine::Engine;
use crate::lifecycle::Lifecycle;

/// The web view's settings (`[web]` in the config file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    /// Serve the web view. On by default: on loopback it shows what the
    /// CLI shows to whoever may run it.
    pub enabled: bool,
    /// Address the web view listens on (`serve --web-listen`). It serves
    /// plain HTTP, so a non-loopback address needs `--insecure` (a
    /// TLS-terminating proxy in front): sign-in tokens and session cookies
    /// must not cross a network in cleartext.
    pub listen: SocketAddr,
    /// Host names (`refine.example.com`, with `:port` if not the default)
    /// the pages answer to besides loopback ones (`localhost`, `127.0.0.1`,
    /// `[::1]`) and the listen address: what a proxy in front sends. Any
    /// other Host is refused, so that a page of another site whose name was
    /// re-pointed at this machine (DNS rebinding) cannot read or drive it.
    pub allowed_hosts: Vec<String>,
    /// Largest request body (a sign-in or split form), in bytes.
    pub max_body_bytes: usize,
    /// Connections open at once; the next waits in the listen backlog.
    pub max_connections: usize,
    /// Open `/events` streams (live pages) at once; one more is refused
    /// with 503.
    pub max_event_streams: usize,
    /// How long a sign-in lasts, in seconds.
    pub session_ttl_secs: u64,
    /// Sessions held at once; the oldest goes when one more signs in.
    pub max_sessions: usize,
    /// Origins (`https://tracker.example.com`) whose pages may call the
    /// gRPC API from a browser with gRPC-Web (served on the gRPC listener
    /// beside plain gRPC); empty: none. Auth applies as to any call.
    pub cors_allow_origins: Vec<String>,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 16 * 1024,
            max_connections: 256,
            max_event_streams: 64,
            session_ttl_secs: 8 * 3600,
            max_sessions: 1024,
            cors_allow_origins: Vec::new(),
            allowed_hosts: Vec::new(),
        }
    }
}

impl WebConfig {
    /// The defaults on 127.0.0.1 with a free port: tests, the demo.
    pub fn on_free_port() -> WebConfig {
        WebConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..WebConfig::default()
        }
    }
}

/// The CORS layer of the gRPC listener for gRPC-Web callers: preflights
/// answered for `cors_allow_origins` only (before auth, which a preflight
/// cannot pass: it carries no token), POST with the gRPC-Web headers, and
/// the gRPC status headers exposed. An origin that is not
/// `scheme://host[:port]` is refused, naming it.
pub fn grpc_web_cors(config: &WebConfig) -> Result<tower_http::cors::CorsLayer, String> {
    use axum::http::{HeaderName, HeaderValue, Method, header};
    let mut origins = Vec::new();
    for o in &config.cors_allow_origins {
        let rest = o
            .strip_prefix("https://")
            .or_else(|| o.strip_prefix("http://"))
            .filter(|r| !r.is_empty() && !r.contains('/') && !r.contains('*'));
        let value = rest.and_then(|_| HeaderValue::from_str(o).ok()).ok_or_else(|| {
            format!(
                "web.cors_allow_origins: {} is not an origin like https://tracker.example.com (scheme, host, optional port; no path, no wildcard)",
                crate::engine::quote(o)
            )
        })?;
        origins.push(value);
    }
    Ok(tower_http::cors::CorsLayer::new()
        .allow_origin(tower_http::cors::AllowOrigin::list(origins))
        .allow_methods([Method::POST])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            HeaderName::from_static("x-grpc-web"),
            HeaderName::from_static("x-user-agent"),
            HeaderName::from_static("grpc-timeout"),
        ])
        .expose_headers([
            HeaderName::from_static("grpc-status"),
            HeaderName::from_static("grpc-message"),
            HeaderName::from_static("grpc-status-details-bin"),
        ])
        .max_age(std::time::Duration::from_secs(600)))
}

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct WebState {
    engine: Arc<Engine>,
    /// Applies splits (one at a time per item, as ApplySplit does), with
    /// write-back to the tracker when an admin asks.
    syncer: Arc<crate::sync::Syncer>,
    tokens: Arc<Tokens>,
    sessions: Arc<session::Sessions>,
    lifecycle: Lifecycle,
    streams: Arc<Semaphore>,
    max_streams: usize,
    /// `Secure` on the session cookie.
    secure_cookie: bool,
    /// Host names the pages answer to beyond loopback and the listen
    /// address (`[web] allowed_hosts`), lowercase.
    allowed_hosts: Arc<Vec<String>>,
    /// The bound address, whose literal Host is always allowed.
    listen: SocketAddr,
}

/// A bound web listener, not yet serving.
pub struct WebListener {
    listener: TcpListener,
    addr: SocketAddr,
}

impl WebListener {
    /// Binds `config.listen`.
    pub async fn bind(config: &WebConfig) -> std::io::Result<WebListener> {
        let listener = TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        Ok(WebListener { listener, addr })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

/// What the web view serves from.
pub struct WebParts {
    pub engine: Arc<Engine>,
    pub syncer: Arc<crate::sync::Syncer>,
    pub tokens: Arc<Tokens>,
    pub lifecycle: Lifecycle,
    /// `[tls]`'s certificate: the web view speaks HTTPS with it, and the
    /// session cookie is marked `Secure`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub limits: crate::limits::LimitsConfig,
}

/// Serves the web view on `listener` as a task of `parts.lifecycle` until
/// it stops.
pub fn serve(listener: WebListener, config: &WebConfig, parts: WebParts) {
    let max_streams = config.max_event_streams.clamp(1, Semaphore::MAX_PERMITS);
    let state = WebState {
        engine: parts.engine,
        syncer: parts.syncer,
        sessions: Arc::new(session::Sessions::new(
            parts.tokens.enabled(),
            std::time::Duration::from_secs(config.session_ttl_secs.max(60)),
            config.max_sessions.max(1),
        )),
        tokens: parts.tokens,
        lifecycle: parts.lifecycle.clone(),
        streams: Arc::new(Semaphore::new(max_streams)),
        max_streams,
        secure_cookie: parts.tls.is_some(),
        allowed_hosts: Arc::new(
            config
                .allowed_hosts
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
        ),
        listen: listener.addr,
    };
    let app = router(state, config, &parts.limits);
    let limits = crate::limits::LimitsConfig {
        max_connections: config.max_connections,
        ..parts.limits
    };
    let incoming =
        tonic::transport::server::TcpIncoming::from(listener.listener).with_nodelay(Some(true));
    let (handshaken, ready) = tokio::sync::mpsc::channel(HANDSHAKES_READY);
    let incoming = Listener {
        incoming: crate::limits::Incoming::new(incoming, &limits),
        addr: listener.addr,
        tls: parts.tls.map(|config| Handshakes {
            acceptor: tokio_rustls::TlsAcceptor::from(config),
            handshaken,
            ready,
        }),
    };
    let lifecycle = parts.lifecycle;
    let stop = lifecycle.token().clone().cancelled_owned();
    lifecycle.spawn("web server", async move {
        if let Err(e) = axum::serve(incoming, app)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::error!(error = %e, "the web server failed");
        }
    });
}

fn router(state: WebState, config: &WebConfig, limits: &crate::limits::LimitsConfig) -> Router {
    Router::new()
        .route("/", get(pages::backlog))
        .route("/fragments/backlog", get(pages::backlog_rows))
        .route("/items/{key}", get(pages::item))
        .route("/items/{key}/split", post(pages::apply_split))
        .route("/goals", get(pages::goals))
        .route("/since", get(since::since))
        .route("/metrics", get(learning::metrics))
        .route("/hypotheses", get(learning::hypotheses))
        .route("/segments", get(segments::segments))
        .route("/events", get(events::events))
        .route("/signin", get(session::signin_page).post(session::signin))
        .route("/signout", post(session::signout))
        .route("/assets/app.css", get(pages::css))
        .route("/assets/app.js", get(pages::js))
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            session::gate,
        ))
        .layer(axum::middleware::from_fn(security_headers))
        .layer(DefaultBodyLimit::max(config.max_body_bytes.max(1024)))
        .layer(tower::limit::ConcurrencyLimitLayer::new(
            limits.max_concurrent_requests.max(1),
        ))
        .with_state(state)
}

/// What every answer carries: a content security policy that allows only
/// this server's own script and styles (inline `style` attributes draw the
/// bars), and no framing (the apply button cannot be clickjacked).
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; \
     base-uri 'none'; object-src 'none'";

async fn security_headers(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::{HeaderValue, header};
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    res
}

/// The web listener as axum sees it: the connections
/// [`crate::limits::Incoming`] lets through, in TLS when `[tls]` is on.
struct Listener {
    incoming: crate::limits::Incoming<tonic::transport::server::TcpIncoming>,
    addr: SocketAddr,
    tls: Option<Handshakes>,
}

/// TLS handshakes run in tasks of their own, so that a client that never
/// finishes its handshake holds one connection (counted by `Incoming`'s
/// limit) for at most [`crate::tls::HANDSHAKE_TIMEOUT`], and never the
/// accept loop.
struct Handshakes {
    acceptor: tokio_rustls::TlsAcceptor,
    handshaken: tokio::sync::mpsc::Sender<(WebIo, SocketAddr)>,
    ready: tokio::sync::mpsc::Receiver<(WebIo, SocketAddr)>,
}

/// Finished handshakes waiting for the accept loop; a full queue makes the
/// handshake tasks wait (each holds its connection's permit meanwhile).
const HANDSHAKES_READY: usize = 64;

type WebIo = tokio_util::either::Either<
    crate::limits::Conn,
    tokio_rustls::server::TlsStream<crate::limits::Conn>,
>;

impl axum::serve::Listener for Listener {
    type Io = WebIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        use tokio_stream::StreamExt;
        use tokio_util::either::Either;
        loop {
            let next = match &mut self.tls {
                None => self.incoming.next().await,
                Some(tls) => tokio::select! {
                    Some(done) = tls.ready.recv() => return done,
                    next = self.incoming.next() => next,
                },
            };
            match next {
                Some(Ok(conn)) => {
                    use tonic::transport::server::Connected;
                    let peer = conn.connect_info().remote_addr().unwrap_or(self.addr);
                    let Some(tls) = &self.tls else {
                        return (Either::Left(conn), peer);
                    };
                    let (acceptor, done) = (tls.acceptor.clone(), tls.handshaken.clone());
                    tokio::spawn(async move {
                        let shake = acceptor.accept(conn);
                        match tokio::time::timeout(crate::tls::HANDSHAKE_TIMEOUT, shake).await {
                            Ok(Ok(stream)) => {
                                let _ = done.send((Either::Right(stream), peer)).await;
                            }
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "web view: TLS handshake failed");
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "web view: TLS handshake timed out");
                            }
                        }
                    });
                }
                // Accept errors are logged and backed off by `Incoming`.
                Some(Err(_)) => continue,
                // A TCP listener's stream never ends; should it, accept
                // nothing more and let the shutdown end the server.
                None => std::future::pending::<()>().await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}
