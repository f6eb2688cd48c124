//! Who may call: API tokens with roles, checked by one tower layer in front
//! of every service.
//!
//! - [`methods`]: the one table from a gRPC method to the role it needs;
//!   a method missing from it is refused (deny by default), and a unit test
//!   checks that every method of every plumbline service is in it.
//! - [`tokens`]: the tokens in memory (loaded at start, refreshed from the
//!   store so that the offline CLI's changes reach a running server), their
//!   creation, listing and revocation, and the check of a presented token.
//! - [`layer`]: the tower layer that reads `authorization: Bearer ...`,
//!   answers UNAUTHENTICATED or PERMISSION_DENIED itself, and logs the
//!   token's name on every write.
//!
//! With `[auth] enabled = false` (the default: a sidecar on loopback, the
//! demo) the layer passes every call through and nothing changes for
//! callers.

pub mod layer;
pub mod methods;
pub mod tokens;

use serde::{Deserialize, Serialize};

pub use crate::domain::Role;
pub use layer::{AuthLayer, Caller};
pub use tokens::Tokens;

/// Who may call (`[auth]` in the config file).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Require an API token (`authorization: Bearer ...`) on every call
    /// but health. Off by default: the sidecar listens on loopback, where
    /// the pod or host is the boundary; turn it on for any shared listener.
    pub enabled: bool,
    /// Who may use server reflection when auth is on: `open` (anyone),
    /// `read` (any valid token; the default), or `off` (not served, with
    /// auth on or off).
    pub reflection: ReflectionAccess,
}

/// Who may use server reflection.
///
/// `read` is the default: the schema is no secret (it ships in `proto/`),
/// but a caller without a token should not get a map of every method to
/// probe, while anyone holding a token keeps grpcurl and buf curl working.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReflectionAccess {
    /// Served to anyone, token or not.
    Open,
    /// Served to callers with a valid token of any role.
    #[default]
    Read,
    /// Not served at all.
    Off,
}

/// Refuses a call unless its caller has at least `need`, for checks that
/// depend on the request's content (the layer sees only the method): e.g.
/// `ApplySplit` is a write, but with `write_back` it reaches the tracker,
/// which is an admin's call. Without auth (no [`Caller`] on the request)
/// every call passes.
pub fn require<T>(
    request: &tonic::Request<T>,
    need: Role,
    what: &str,
) -> Result<(), tonic::Status> {
    match request.extensions().get::<Caller>() {
        Some(c) if c.role < need => Err(tonic::Status::permission_denied(format!(
            "{what} needs the {} role; the token {:?} has the {} role",
            need.as_str(),
            &*c.name,
            c.role.as_str()
        ))),
        _ => Ok(()),
    }
}

/// Loads the API tokens for a server and, with auth on, keeps them fresh
/// from the store until the server stops.
pub async fn start(
    store: std::sync::Arc<dyn crate::store::Store>,
    config: &AuthConfig,
    lifecycle: &crate::lifecycle::Lifecycle,
) -> Result<std::sync::Arc<Tokens>, crate::store::StoreError> {
    let tokens = std::sync::Arc::new(Tokens::load(store, config.enabled).await?);
    if config.enabled && tokens.live_count() == 0 {
        tracing::warn!(
            "auth is on and no API token exists, so every call but health is refused; \
             make the first admin token with `plumbline tokens create --db DB --name NAME --role admin`"
        );
    }
    if config.enabled {
        lifecycle.spawn(
            "API token refresh",
            tokens.clone().refresh_until_stopped(lifecycle.clone()),
        );
    }
    Ok(tokens)
}
