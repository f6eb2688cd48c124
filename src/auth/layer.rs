//! The tower layer that checks every call's token before any service sees
//! it: one place, applied to the whole router in `server.rs`.
//!
//! It answers refused calls itself (UNAUTHENTICATED: no, malformed, unknown
//! or revoked token; PERMISSION_DENIED: a role too low, or a method that is
//! in no role), puts the [`Caller`] in the request's extensions for checks
//! that depend on the request's content, and logs the token's name and the
//! method of every write and admin call. The check is a hash and a map
//! lookup in memory; only a token with an unknown id may wait for a refresh
//! from the store, rate-limited in [`Tokens::claim_refresh`].

use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::Status;
use tonic::codegen::http::{Request, Response, header::AUTHORIZATION};
use tonic::codegen::{BoxFuture, Service};

use super::methods::{self, Access};
use super::tokens::{Tokens, Verdict};
use super::{ReflectionAccess, Role};

/// Who is calling: the token's name and role, for handlers that check
/// more than the method ([`super::require`]).
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: Arc<str>,
    pub role: Role,
    /// Cancelled when the token is revoked: a stream opened with it ends.
    pub revoked: tokio_util::sync::CancellationToken,
}

/// How to send a token, for every UNAUTHENTICATED message.
const HOW_TO_SEND: &str = "send `authorization: Bearer plb_...` metadata (the CLI reads \
     PLUMBLINE_TOKEN or --token-file); an admin makes tokens with `plumbline tokens create`";

/// Checks the token of every call; see the module doc.
#[derive(Debug, Clone)]
pub struct AuthLayer {
    tokens: Arc<Tokens>,
    reflection: ReflectionAccess,
}

impl AuthLayer {
    pub fn new(tokens: Arc<Tokens>, reflection: ReflectionAccess) -> Self {
        AuthLayer { tokens, reflection }
    }
}

impl<S> tower_layer::Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> AuthService<S> {
        AuthService {
            inner,
            tokens: self.tokens.clone(),
            reflection: self.reflection,
        }
    }
}

/// The service [`AuthLayer`] wraps around the router.
#[derive(Debug, Clone)]
pub struct AuthService<S> {
    inner: S,
    tokens: Arc<Tokens>,
    reflection: ReflectionAccess,
}

/// What to do with a call.
enum Decision {
    Allow(Option<Caller>),
    Refuse(Status),
    /// The token's id is unknown here and a refresh is allowed: it may have
    /// been created by the offline CLI since the last one.
    RefreshFirst,
}

fn decide(
    tokens: &Tokens,
    reflection: ReflectionAccess,
    path: &str,
    authorization: Option<&[u8]>,
    may_refresh: bool,
) -> Decision {
    let need = match methods::access(path, reflection) {
        Access::Open => return Decision::Allow(None),
        Access::Needs(role) => Some(role),
        Access::Denied => None,
    };
    let caller = match tokens.check(authorization) {
        Verdict::Valid(caller) => caller,
        Verdict::Missing => {
            return Decision::Refuse(Status::unauthenticated(format!(
                "this server needs an API token: {HOW_TO_SEND}"
            )));
        }
        Verdict::Malformed => {
            return Decision::Refuse(Status::unauthenticated(format!(
                "the authorization metadata is not a plumbline token (`Bearer plb_<id>_<secret>`): \
                 {HOW_TO_SEND}"
            )));
        }
        Verdict::Unknown { unknown_id: true } if may_refresh && tokens.claim_refresh() => {
            return Decision::RefreshFirst;
        }
        Verdict::Unknown { .. } => {
            return Decision::Refuse(Status::unauthenticated(format!(
                "the API token is unknown or revoked: {HOW_TO_SEND}"
            )));
        }
    };
    match need {
        None => Decision::Refuse(Status::permission_denied(format!(
            "{path} is not open to any role"
        ))),
        Some(need) if caller.role < need => Decision::Refuse(Status::permission_denied(format!(
            "{path} needs the {} role; the token {:?} has the {} role",
            need.as_str(),
            &*caller.name,
            caller.role.as_str()
        ))),
        Some(need) => {
            if methods::is_logged(need) {
                tracing::info!(token = %caller.name, role = caller.role.as_str(), method = path, "authorized call");
            }
            Decision::Allow(Some(caller))
        }
    }
}

impl<S, B, R> Service<Request<B>> for AuthService<S>
where
    S: Service<Request<B>, Response = Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if !self.tokens.enabled() {
            return Box::pin(self.inner.call(req));
        }
        let decision = decide(
            &self.tokens,
            self.reflection,
            req.uri().path(),
            req.headers().get(AUTHORIZATION).map(|v| v.as_bytes()),
            true,
        );
        match decision {
            Decision::Allow(caller) => {
                if let Some(caller) = caller {
                    req.extensions_mut().insert(caller);
                }
                Box::pin(self.inner.call(req))
            }
            Decision::Refuse(status) => Box::pin(std::future::ready(Ok(status.into_http()))),
            Decision::RefreshFirst => {
                // The service readied by poll_ready stays here for this call;
                // the clone serves the next one (tower's usual swap).
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                let tokens = self.tokens.clone();
                let reflection = self.reflection;
                Box::pin(async move {
                    if let Err(e) = tokens.refresh().await {
                        tracing::warn!(error = %e, "cannot refresh API tokens from the store");
                    }
                    let decision = decide(
                        &tokens,
                        reflection,
                        req.uri().path(),
                        req.headers().get(AUTHORIZATION).map(|v| v.as_bytes()),
                        false,
                    );
                    match decision {
                        Decision::Allow(caller) => {
                            if let Some(caller) = caller {
                                req.extensions_mut().insert(caller);
                            }
                            inner.call(req).await
                        }
                        Decision::Refuse(status) => Ok(status.into_http()),
                        Decision::RefreshFirst => {
                            unreachable!("decide refreshes only when allowed")
                        }
                    }
                })
            }
        }
    }
}
