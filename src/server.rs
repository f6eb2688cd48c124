//! Wiring: open the store, rebuild the index, serve the services with
//! health and reflection, and shut down gracefully.
//!
//! Shutdown, in order (both `serve`'s SIGTERM/SIGINT and
//! [`RunningServer::shutdown`] take this one path):
//! 1. health says NOT_SERVING and its `Watch` streams end; the
//!    [`Lifecycle`] stops: tonic accepts no new connection and sends
//!    GOAWAY, and every long task sees the signal at once: `WatchRanking`
//!    streams end with UNAVAILABLE, a sync stores the pages in hand and ends
//!    as interrupted, the background loops return, the web view stops
//!    accepting and its event streams end;
//! 2. in-flight calls finish and their connections close;
//! 3. every tracked task has ended;
//! 4. the store closes, so nothing writes to a closed store.
//!
//! Steps 2 and 3 share one grace period ([`SHUTDOWN_GRACE`]); past it the
//! store closes anyway and the shutdown fails naming what still ran.

mod store_health;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::{JoinError, JoinHandle};
use tokio::time::Instant;

use crate::api::{
    BacklogApi, RollupApi, ScoringApi, SourceApi, SplitApi, SyncApi, ValidationApi, ValueModelApi,
};
use crate::config::Config;
use crate::engine::Engine;
use crate::lifecycle::{Lifecycle, StillRunning};
use crate::proto as pb;
use crate::store::{Store, StoreError};
use crate::sync::{SyncError, Syncer, http::HttpClient};

/// How long a shutdown waits for calls, streams and tasks to end. A sync
/// only finishes the commit it is in and a watch ends at once, so this
/// bounds the unexpected: a unary call stuck in the store, a client that
/// never reads its last message.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr} for the web view ([web] listen, --web-listen)")]
    WebBind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "refusing to serve the web view on {0} ([web] listen): without [tls] it speaks plain HTTP, so sign-in tokens and session cookies would cross the network in cleartext. Listen on 127.0.0.1 (the default), or serve HTTPS with `[tls] cert` and `key` (the web view uses the gRPC listener's certificate), or, with a TLS-terminating proxy in front that reaches this address, start with `--insecure` and name the proxy's host in `[web] allowed_hosts`"
    )]
    WebExposure(SocketAddr),
    #[error("invalid [web] setting: {0}")]
    WebConfig(String),
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot create the database folder {path}")]
    DbDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot open the database {path}")]
    Store { path: String, source: StoreError },
    #[error("cannot load the model from the database")]
    Load(#[source] crate::engine::Error),
    #[error("cannot load the API tokens from the database")]
    Tokens(#[source] StoreError),
    #[error("reflection setup failed")]
    Reflection(#[source] tonic_reflection::server::Error),
    #[error("cannot set up tracker sync")]
    Sync(#[source] SyncError),
    #[error(transparent)]
    OpenListener(#[from] crate::tls::OpenListener),
    #[error("cannot set up TLS")]
    Tls(#[source] crate::tls::TlsError),
    #[error("invalid [outbound] setting")]
    Outbound(#[source] crate::outbound::PolicyError),
    #[error("gRPC transport failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("the shutdown did not finish in {secs} s; {0}", secs = SHUTDOWN_GRACE.as_secs())]
    Shutdown(#[from] StillRunning),
}

/// What health reports on: the server as a whole (`""`) and each service.
const HEALTH_NAMES: [&str; 14] = [
    "",
    "plumbline.v1.SourceService",
    "plumbline.v1.BacklogService",
    "plumbline.v1.ValueModelService",
    "plumbline.v1.ScoringService",
    "plumbline.v1.SyncService",
    "plumbline.v1.RollupService",
    "plumbline.v1.SplitService",
    "plumbline.v1.ValidationService",
    "plumbline.v1.TokenService",
    "plumbline.v1.ModelFileService",
    "plumbline.v1.InsightService",
    "plumbline.v1.HistoryService",
    "plumbline.v1.CustomerService",
];

/// A server running in the background of this process.
pub struct RunningServer {
    addr: SocketAddr,
    /// The web view's address, when it is on.
    web_addr: Option<SocketAddr>,
    /// `https` when the listener serves TLS.
    scheme: &'static str,
    engine: Arc<Engine>,
    syncer: Arc<Syncer>,
    historian: Arc<crate::history::Historian>,
    store: Arc<dyn Store>,
    lifecycle: Lifecycle,
    health: tonic_health::server::HealthReporter,
    /// Keeps health NOT_SERVING while the store cannot write.
    store_health: store_health::StoreHealth,
    /// Serves until the lifecycle stops and every connection has closed.
    task: JoinHandle<Result<(), ServerError>>,
}

impl RunningServer {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR` of the web view (`https://` with TLS), when it is on.
    pub fn web_url(&self) -> Option<String> {
        self.web_addr.map(|a| format!("{}://{a}", self.scheme))
    }

    /// `http://ADDR` (`https://` with TLS), for clients.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// The engine, for in-process inspection (tests, benchmarks).
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Serves until `signal` resolves, then shuts down gracefully; if the
    /// server fails first, stops the rest the same way and returns its error.
    pub async fn run_until(
        mut self,
        signal: impl std::future::Future<Output = ()>,
    ) -> Result<(), ServerError> {
        let served = tokio::select! {
            joined = &mut self.task => Some(joined),
            () = signal => None,
        };
        self.stop(served).await
    }

    /// The ranking snapshots' taker, for in-process inspection (tests).
    pub fn historian(&self) -> &Arc<crate::history::Historian> {
        &self.historian
    }

    /// The syncer, for in-process syncs (tests, benchmarks).
    pub fn syncer(&self) -> &Arc<Syncer> {
        &self.syncer
    }

    /// Stops accepting calls, ends streams and long tasks, waits for them
    /// and for in-flight calls, then closes the store (see the module doc).
    pub async fn shutdown(self) -> Result<(), ServerError> {
        self.stop(None).await
    }

    /// The one shutdown path; `served` is how the serving task ended, when
    /// it ended before the shutdown began.
    async fn stop(
        mut self,
        served: Option<Result<Result<(), ServerError>, JoinError>>,
    ) -> Result<(), ServerError> {
        let started = Instant::now();
        let deadline = started + SHUTDOWN_GRACE;
        tracing::info!(
            tasks = self.lifecycle.running().len(),
            "stopping: no new calls; streams, syncs and background work told to end"
        );
        // A health `Watch` never ends by itself either: say NOT_SERVING to
        // the watchers (load balancers), then drop the statuses, which ends
        // their streams.
        self.store_health.stop().await;
        for name in HEALTH_NAMES {
            self.health
                .set_service_status(name, tonic_health::ServingStatus::NotServing)
                .await;
            self.health.clear_service_status(name).await;
        }
        self.lifecycle.stop();
        let served = match served {
            Some(joined) => joined,
            None => match tokio::time::timeout_at(deadline, &mut self.task).await {
                Ok(joined) => joined,
                Err(_) => {
                    tracing::warn!(
                        grace_secs = SHUTDOWN_GRACE.as_secs(),
                        "gRPC connections still open after the grace period; no longer waiting for them"
                    );
                    self.task.abort();
                    Ok(Ok(()))
                }
            },
        };
        let served = served.unwrap_or_else(|e| {
            tracing::error!(error = %e, "server task failed");
            Ok(())
        });
        let waited = self.lifecycle.wait_until(deadline).await;
        if let Err(e) = &waited {
            tracing::warn!(still_running = ?e.0, "closing the store with tasks still running");
        }
        self.store.close().await;
        tracing::info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "store closed; shutdown complete"
        );
        served?;
        Ok(waited?)
    }
}

/// Opens the store that `config.store` names (at `config.db`), rebuilds the
/// index and starts serving on `config.listen` in a background task.
pub async fn start(config: &Config) -> Result<RunningServer, ServerError> {
    let exposure = crate::tls::check_exposure(
        config.listen,
        config.auth.enabled,
        config.tls.enabled(),
        config.insecure,
    )?;
    if exposure == crate::tls::Exposure::Insecure {
        tracing::warn!(listen = %config.listen, "--insecure: serving a non-loopback address with neither authentication nor TLS; anyone who reaches it can read and change everything");
    }
    let web_exposure = if config.web.enabled {
        Some(
            // Without [tls] the web view serves plain HTTP: off loopback, a
            // sign-in token and the session cookie would cross the network
            // in cleartext, whatever [auth] says. [tls] makes it HTTPS; or
            // a TLS-terminating proxy in front, which --insecure declares.
            crate::tls::check_exposure(
                config.web.listen,
                false,
                config.tls.enabled(),
                config.insecure,
            )
            .map_err(|e| ServerError::WebExposure(e.listen))?,
        )
    } else {
        None
    };
    let tls = config.tls.server().map_err(ServerError::Tls)?;
    let web_tls = if config.web.enabled {
        config.tls.rustls_server().map_err(ServerError::Tls)?
    } else {
        None
    };
    let sqlite = config.backend() == crate::config::StoreBackend::Sqlite;
    if let Some(dir) = config
        .db
        .parent()
        .filter(|d| sqlite && !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir).map_err(|source| ServerError::DbDir {
            path: dir.display().to_string(),
            source,
        })?;
    }
    let store = crate::store::open(config)
        .await
        .map_err(|source| ServerError::Store {
            path: config.db_display(),
            source,
        })?;
    let outbound = Arc::new(
        crate::outbound::OutboundPolicy::new(&config.outbound).map_err(ServerError::Outbound)?,
    );
    let started = std::time::Instant::now();
    let engine = Arc::new(
        Engine::open(store.clone(), config.default_size)
            .await
            .map_err(ServerError::Load)?
            .with_outbound(outbound.clone())
            .with_asked_for_customers(config.insights.asked_for_customers),
    );
    tracing::info!(
        items = engine.read().item_count(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "index rebuilt from the store"
    );

    let http = HttpClient::new(config.sync.http_options(), outbound).map_err(ServerError::Sync)?;
    let lifecycle = Lifecycle::new();
    let puller = Arc::new(crate::metric_source::Puller::new(
        engine.clone(),
        http.clone(),
        lifecycle.clone(),
        crate::metric_source::PullOptions {
            csv_dir: config.pulls.csv_dir.clone(),
            windows: Some(config.validation.windows()),
        },
    ));
    let syncer = Arc::new(
        Syncer::new(engine.clone(), http)
            .within(lifecycle.clone())
            .with_lease(Duration::from_secs(config.store.lease_secs)),
    );
    let historian = Arc::new(crate::history::Historian::new(
        engine.clone(),
        config.history.clone(),
    ));
    let tokens = crate::auth::start(store.clone(), &config.auth, &lifecycle)
        .await
        .map_err(ServerError::Tokens)?;

    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServerError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServerError::Bind {
        addr: config.listen,
        source,
    })?;

    let web_listener =
        match web_exposure {
            Some(_) => Some(crate::web::WebListener::bind(&config.web).await.map_err(
                |source| ServerError::WebBind {
                    addr: config.web.listen,
                    source,
                },
            )?),
            None => None,
        };
    let web_addr = web_listener.as_ref().map(|l| l.local_addr());

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    for name in HEALTH_NAMES {
        health_reporter
            .set_service_status(name, tonic_health::ServingStatus::Serving)
            .await;
    }
    let reflection = config.auth.reflection != crate::auth::ReflectionAccess::Off;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(ServerError::Reflection)?;
    let reflection_v1 = reflection.then_some(reflection_v1);
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(ServerError::Reflection)?;
    let reflection_v1alpha = reflection.then_some(reflection_v1alpha);

    let scheme = if tls.is_some() { "https" } else { "http" };
    let cors = crate::web::grpc_web_cors(&config.web).map_err(ServerError::WebConfig)?;
    // HTTP/1.1 too: gRPC-Web from browsers (tonic-web) beside plain gRPC.
    let mut builder = config
        .limits
        .apply(tonic::transport::Server::builder())
        .accept_http1(true);
    if let Some(tls) = tls {
        builder = builder
            .tls_config(tls)
            .map_err(|e| ServerError::Tls(crate::tls::TlsError::Tonic(e)))?;
    }
    // Layers added first are outermost: the limits bound every call,
    // floods of bad tokens included, before auth looks at it; CORS answers
    // gRPC-Web preflights (which carry no token) before auth too, and
    // tonic-web turns gRPC-Web into gRPC for everything inside.
    let router = builder
        .layer(crate::limits::layers(&config.limits))
        .layer(cors)
        .layer(tonic_web::GrpcWebLayer::new())
        .timeout(Duration::from_secs(30))
        .trace_fn(|req| tracing::info_span!("rpc", method = %req.uri().path()))
        .layer(crate::auth::AuthLayer::new(
            tokens.clone(),
            config.auth.reflection,
        ))
        .add_service(health_service)
        .add_optional_service(reflection_v1)
        .add_optional_service(reflection_v1alpha)
        .add_service(pb::source_service_server::SourceServiceServer::new(
            SourceApi(syncer.clone()),
        ))
        .add_service(pb::backlog_service_server::BacklogServiceServer::new(
            BacklogApi(engine.clone(), config.limits.response_bytes()),
        ))
        .add_service(
            pb::value_model_service_server::ValueModelServiceServer::new(ValueModelApi(
                engine.clone(),
                puller.clone(),
            )),
        )
        .add_service(pb::scoring_service_server::ScoringServiceServer::new(
            ScoringApi(
                engine.clone(),
                lifecycle.clone(),
                crate::api::Watchers::new(&config.limits),
            ),
        ))
        .add_service(pb::sync_service_server::SyncServiceServer::new(SyncApi(
            syncer.clone(),
        )))
        .add_service(pb::rollup_service_server::RollupServiceServer::new(
            RollupApi(engine.clone()),
        ))
        .add_service(pb::validation_service_server::ValidationServiceServer::new(
            ValidationApi {
                engine: engine.clone(),
                windows: config.validation.windows(),
            },
        ))
        .add_service(pb::split_service_server::SplitServiceServer::new(SplitApi(
            syncer.clone(),
        )))
        .add_service(pb::token_service_server::TokenServiceServer::new(
            crate::api::TokenApi(tokens.clone()),
        ))
        .add_service(pb::model_file_service_server::ModelFileServiceServer::new(
            crate::api::ModelFileApi(engine.clone()),
        ))
        .add_service(pb::insight_service_server::InsightServiceServer::new(
            crate::api::InsightApi(engine.clone()),
        ))
        .add_service(pb::history_service_server::HistoryServiceServer::new(
            crate::api::HistoryApi(historian.clone()),
        ))
        .add_service(pb::customer_service_server::CustomerServiceServer::new(
            crate::api::CustomerApi(engine.clone()),
        ));
    if let Some(listener) = web_listener {
        crate::web::serve(
            listener,
            &config.web,
            crate::web::WebParts {
                engine: engine.clone(),
                syncer: syncer.clone(),
                tokens,
                lifecycle: lifecycle.clone(),
                tls: web_tls,
                limits: config.limits.clone(),
            },
        );
    }

    lifecycle.spawn(
        "background ranking snapshots",
        crate::history::background_snapshots(
            historian.clone(),
            lifecycle.clone(),
            Duration::from_secs(config.store.lease_secs),
        ),
    );
    if config.validation.interval_secs > 0 {
        lifecycle.spawn(
            "background validation",
            background_validation(
                engine.clone(),
                config.validation.clone(),
                lifecycle.clone(),
                Duration::from_secs(config.store.lease_secs),
            ),
        );
    }
    if config.sync.interval_secs > 0 {
        lifecycle.spawn(
            "background sync",
            background_sync(
                syncer.clone(),
                Duration::from_secs(config.sync.interval_secs),
                (config.sync.full_interval_secs > 0)
                    .then(|| Duration::from_secs(config.sync.full_interval_secs)),
            ),
        );
    }
    if config.pulls.tick_secs > 0 {
        lifecycle.spawn(
            "background metric pulls",
            crate::metric_source::background_pulls(
                puller.clone(),
                Duration::from_secs(config.pulls.tick_secs),
                config.pulls.concurrency,
                Duration::from_secs(config.store.lease_secs),
            ),
        );
    }
    // On a shared database, follow the other sidecars' writes.
    let replica = if store.is_shared() {
        let (tx, rx) = tokio::sync::watch::channel(crate::engine::FollowHealth::InStep);
        let (engine, stop) = (engine.clone(), lifecycle.token().clone());
        let poll = Duration::from_millis(config.store.follow_poll_ms.max(1));
        lifecycle.spawn("change log follower", async move {
            engine.follow(poll, tx, stop).await;
        });
        Some(rx)
    } else {
        None
    };
    let store_health = store_health::StoreHealth::follow(
        store.clone(),
        replica,
        health_reporter.clone(),
        &HEALTH_NAMES,
        Duration::from_millis(config.store.check_interval_ms),
        &lifecycle,
    );
    // TCP_NODELAY: without it a response longer than one segment waits out
    // the client's delayed ACK (40 ms on Linux) before its last bytes go.
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let incoming = crate::limits::Incoming::new(incoming, &config.limits);
    // Stopping the lifecycle is what stops accepting: one signal for all.
    let stop_accepting = lifecycle.token().clone().cancelled_owned();
    let task = tokio::spawn(async move {
        router
            .serve_with_incoming_shutdown(incoming, stop_accepting)
            .await
            .map_err(ServerError::from)
    });
    if let Some(web) = web_addr {
        tracing::info!(url = %format!("{scheme}://{web}/"), "web view: the refinement room");
    }
    tracing::info!(%addr, %scheme, web = ?web_addr, db = %config.db_display(), "plumbline serving");
    Ok(RunningServer {
        addr,
        web_addr,
        scheme,
        engine,
        syncer,
        historian,
        store,
        lifecycle,
        health: health_reporter,
        store_health,
        task,
    })
}

/// Syncs every tracker source (push sources have none) at start and then
/// every `interval`, skipping a source whose previous sync is still
/// running, until the server stops (a sync under way then stores the pages
/// in hand and ends).
async fn background_sync(syncer: Arc<Syncer>, interval: Duration, full_every: Option<Duration>) {
    let lifecycle = syncer.lifecycle().clone();
    // When each source last had a full sync (or was first seen): counted
    // from start-up, so a restart does not begin with full syncs of all.
    let mut last_full: std::collections::HashMap<String, tokio::time::Instant> =
        std::collections::HashMap::new();
    loop {
        // Push sources have no tracker: their items come from UpsertItems.
        let ids: Vec<String> = syncer
            .engine()
            .read()
            .sources()
            .filter(|s| s.kind.is_tracker())
            .map(|s| s.id.clone())
            .collect();
        for id in ids {
            if lifecycle.is_stopping() {
                return;
            }
            if syncer.is_running(&id) {
                continue;
            }
            let now = tokio::time::Instant::now();
            let since_full = now - *last_full.entry(id.clone()).or_insert(now);
            let full = full_every.is_some_and(|every| since_full >= every);
            // On a shared database each sidecar's loop comes round: a
            // source another sidecar synced within the interval waits, so
            // that N sidecars do not sync it N times.
            if !full && syncer.engine().store().is_shared() {
                let recent = syncer
                    .engine()
                    .sync_state(&id)
                    .await
                    .ok()
                    .and_then(|s| s.last_finish_time)
                    .is_some_and(|t| {
                        chrono::Utc::now()
                            .signed_duration_since(t)
                            .to_std()
                            .unwrap_or_default()
                            < interval
                    });
                if recent {
                    continue;
                }
            }
            match syncer.sync(&id, full, &|_| {}).await {
                Ok(s) => {
                    if full {
                        last_full.insert(id.clone(), now);
                    }
                    tracing::info!(source = %id, full, pages = s.pages, upserted = s.upserted, "background sync done")
                }
                Err(SyncError::Interrupted { .. }) => return,
                // Another sidecar of the shared database syncs it.
                Err(SyncError::RunningElsewhere(_)) => {}
                Err(e) => tracing::warn!(source = %id, error = %e, "background sync failed"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            () = lifecycle.cancelled() => return,
        }
    }
}

/// Validates releases whose after-window has closed, every interval, until
/// the server stops. Evidence moves a hypothesis once, so re-runs are
/// harmless; a run under way finishes (its evidence is written in one
/// transaction), then the loop ends.
async fn background_validation(
    engine: Arc<Engine>,
    config: crate::config::ValidationConfig,
    lifecycle: Lifecycle,
    lease: Duration,
) {
    let windows = config.windows();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(config.interval_secs)) => {}
            () = lifecycle.cancelled() => return,
        }
        let validated = crate::lease::run_leased(
            engine.store().as_ref(),
            "validation",
            lease,
            engine.validate_releases(&windows, chrono::Utc::now(), false, false),
        )
        .await;
        let Some(validated) = validated else { continue };
        match validated {
            Ok(ev) if !ev.is_empty() => tracing::info!(evidence = ev.len(), "releases validated"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "automatic validation failed"),
        }
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM (what process managers send),
/// which it listens for from the moment it is called.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    // Registered now, not when first polled: a signal that lands between
    // this call and the server's first poll (while it starts) is kept, not
    // left to the default action that kills the process mid-start.
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let listen = |kind: SignalKind, name: &'static str| {
            let registered = signal(kind);
            async move {
                match registered {
                    Ok(mut s) => {
                        s.recv().await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot listen for {name}");
                        std::future::pending::<()>().await;
                    }
                }
            }
        };
        let int = listen(SignalKind::interrupt(), "SIGINT");
        let term = listen(SignalKind::terminate(), "SIGTERM");
        async move {
            tokio::select! {
                _ = int => tracing::info!("SIGINT received, shutting down"),
                _ = term => tracing::info!("SIGTERM received, shutting down"),
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
        tracing::info!("Ctrl-C received, shutting down");
    }
}
