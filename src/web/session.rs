//! Who is looking: with `[auth] enabled`, a sign-in page trades an API
//! token for a session, and [`gate`] lets a request through only with a
//! live one; with auth off every request passes as an anonymous viewer.
//!
//! - The cookie holds a random session id (32 bytes from the OS), never the
//!   token: HttpOnly (no script reads it), SameSite=Strict (no other site's
//!   request carries it), `Secure` when `[tls]` is on, and it expires with
//!   the session. Sessions live in memory only: a restart signs everyone
//!   out, which is the safe direction.
//! - A session ends at its expiry, at sign-out, and as soon as its token is
//!   revoked (the token's revocation signal is checked on every request).
//! - Every state-changing request (any method but GET and HEAD) must come
//!   from this site (Origin, else Referer, naming the request's Host), and
//!   every form carries a CSRF token tied to the session (an anonymous one
//!   per server with auth off, so that a page on another site cannot drive
//!   a loopback sidecar either); [`check_csrf`] compares it in constant
//!   time.
//!
//! The one cookie is read by hand (a split on `;`): a cookie crate would
//! add a dependency for a single lookup of a value we wrote ourselves.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use askama::Template;
use axum::Form;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;
use parking_lot::Mutex;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::WebState;
use super::view::{Message, html};
use crate::auth::tokens::Verdict;
use crate::auth::{Caller, Role};

/// The session cookie's name.
const COOKIE: &str = "plumbline_session";

/// One signed-in browser.
struct Session {
    caller: Caller,
    csrf: String,
    expires: Instant,
}

/// The sessions of one server, in memory.
pub(crate) struct Sessions {
    enabled: bool,
    ttl: Duration,
    max: usize,
    live: Mutex<HashMap<String, Session>>,
    /// The CSRF token of forms with auth off.
    anonymous_csrf: String,
}

/// Who a request is from, as the handlers see it.
#[derive(Clone)]
pub(crate) struct Viewer {
    /// `None` with auth off.
    pub caller: Option<Caller>,
    /// What this viewer's forms carry.
    pub csrf: String,
}

impl Viewer {
    /// Whether this viewer may do what needs `role` (anyone with auth off).
    pub fn may(&self, role: Role) -> bool {
        self.caller.as_ref().is_none_or(|c| c.role >= role)
    }

    /// Whether there is a session (auth on): the pages show a sign-out.
    pub fn signed_in(&self) -> bool {
        self.caller.is_some()
    }
}

/// 32 random bytes from the OS, URL-safe base64.
fn random_id() -> String {
    let mut bytes = [0u8; 32];
    // The OS random source failing is not something a server can go on
    // without: every session id would be guessable.
    #[allow(clippy::expect_used)]
    getrandom::fill(&mut bytes).expect("the OS random number source is available");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl Sessions {
    pub fn new(enabled: bool, ttl: Duration, max: usize) -> Self {
        Sessions {
            enabled,
            ttl,
            max,
            live: Mutex::new(HashMap::new()),
            anonymous_csrf: random_id(),
        }
    }

    /// A new session for `caller`; returns its id.
    fn open(&self, caller: Caller) -> String {
        let id = random_id();
        let now = Instant::now();
        let mut live = self.live.lock();
        live.retain(|_, s| s.expires > now && !s.caller.revoked.is_cancelled());
        if live.len() >= self.max
            && let Some(oldest) = live
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
        {
            live.remove(&oldest);
        }
        live.insert(
            id.clone(),
            Session {
                caller,
                csrf: random_id(),
                expires: now + self.ttl,
            },
        );
        id
    }

    /// The live session `id` names, if any; drops it if expired or revoked.
    fn viewer(&self, id: &str) -> Option<Viewer> {
        let mut live = self.live.lock();
        let s = live.get(id)?;
        if s.expires <= Instant::now() || s.caller.revoked.is_cancelled() {
            live.remove(id);
            return None;
        }
        Some(Viewer {
            caller: Some(s.caller.clone()),
            csrf: s.csrf.clone(),
        })
    }

    fn close(&self, id: &str) {
        self.live.lock().remove(id);
    }
}

/// The session id in the request's cookie, if any.
fn session_id(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

/// Whether the request's Host is one this server answers to: a loopback
/// name or address (any port: the page may come through a forwarded
/// port), the listen address, or one of `allowed` (exactly, port included
/// if given there). Without it a DNS-rebinding page of another site, whose
/// name now points at this machine, would pass the Origin check (Origin and
/// Host would both be its name) and read or drive the pages.
pub(crate) fn host_allowed(headers: &HeaderMap, allowed: &[String], listen: SocketAddr) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let host = host.trim().to_ascii_lowercase();
    if allowed.contains(&host) {
        return true;
    }
    // Name without the port: `[::1]:8080` -> `[::1]`, `localhost:8080` -> `localhost`.
    let name = match host.rsplit_once(':') {
        Some((n, port))
            if !n.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && !n.ends_with(':') =>
        {
            n
        }
        _ => host.as_str(),
    };
    if allowed.iter().any(|a| a == name) {
        return true;
    }
    if name == "localhost" || name.ends_with(".localhost") {
        return true;
    }
    let literal = name.trim_start_matches('[').trim_end_matches(']');
    match literal.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.to_canonical().is_loopback() || ip == listen.ip(),
        Err(_) => false,
    }
}

/// Whether a state-changing request comes from this site: its Origin (or,
/// without one, its Referer) names the Host it was sent to.
fn same_site(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let from = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok());
    let Some(from) = from else { return false };
    let Some(rest) = from
        .strip_prefix("http://")
        .or_else(|| from.strip_prefix("https://"))
    else {
        return false;
    };
    rest.split('/').next() == Some(host)
}

/// Lets a request through with its [`Viewer`], or answers it: the sign-in
/// page for a page without a session, 401 for anything else, 403 for a
/// state-changing request from another site.
pub(crate) async fn gate(State(state): State<WebState>, mut req: Request, next: Next) -> Response {
    if !host_allowed(req.headers(), &state.allowed_hosts, state.listen) {
        return refuse(
            StatusCode::MISDIRECTED_REQUEST,
            "Refused: unknown host name",
            "This server answers to its loopback names, its listen address and the names in [web] allowed_hosts; the name this page was reached by is none of them.",
        );
    }
    let path = req.uri().path();
    if path.starts_with("/assets/") {
        return next.run(req).await;
    }
    if !matches!(*req.method(), Method::GET | Method::HEAD) && !same_site(req.headers()) {
        return refuse(
            StatusCode::FORBIDDEN,
            "Refused: not from this site",
            "A form that changes data must be sent from this site's own pages (the request's Origin or Referer did not name this server). Open the page again and retry.",
        );
    }
    let sessions = &state.sessions;
    let viewer = if !sessions.enabled {
        Some(Viewer {
            caller: None,
            csrf: sessions.anonymous_csrf.clone(),
        })
    } else {
        session_id(req.headers()).and_then(|id| sessions.viewer(id))
    };
    match viewer {
        Some(v) => {
            req.extensions_mut().insert(v);
            next.run(req).await
        }
        None if path == "/signin" => {
            req.extensions_mut().insert(Viewer {
                caller: None,
                csrf: sessions.anonymous_csrf.clone(),
            });
            next.run(req).await
        }
        None if *req.method() == Method::GET
            && path != "/events"
            && !path.starts_with("/fragments/") =>
        {
            Redirect::to("/signin").into_response()
        }
        None => refuse(
            StatusCode::UNAUTHORIZED,
            "Sign-in needed",
            "Sign in with an API token to see this page.",
        ),
    }
}

/// An error page with `status`.
pub(crate) fn refuse(status: StatusCode, title: &str, detail: &str) -> Response {
    let page = Message {
        title,
        detail,
        signed_in: false,
        csrf: "",
    };
    (status, html(page.render())).into_response()
}

/// Whether `given` is this viewer's CSRF token (constant time).
pub(crate) fn check_csrf(viewer: &Viewer, given: &str) -> bool {
    bool::from(viewer.csrf.as_bytes().ct_eq(given.as_bytes()))
}

/// The answer to a form whose CSRF token is missing or wrong.
pub(crate) fn bad_csrf() -> Response {
    refuse(
        StatusCode::FORBIDDEN,
        "Refused: the form has expired",
        "This form's security token does not match your session (it was opened before a sign-in, a sign-out or a restart). Open the page again and retry.",
    )
}

#[derive(Template)]
#[template(path = "signin.html")]
struct SignIn<'a> {
    csrf: &'a str,
    error: Option<&'a str>,
    signed_in: bool,
}

/// `GET /signin`.
pub(crate) async fn signin_page(
    State(state): State<WebState>,
    axum::Extension(viewer): axum::Extension<Viewer>,
) -> Response {
    if !state.sessions.enabled {
        return Redirect::to("/").into_response();
    }
    html(
        SignIn {
            csrf: &viewer.csrf,
            error: None,
            signed_in: viewer.signed_in(),
        }
        .render(),
    )
    .into_response()
}

#[derive(Deserialize)]
pub(crate) struct SignInForm {
    token: String,
    csrf: String,
}

/// `POST /signin`: a valid token opens a session.
pub(crate) async fn signin(
    State(state): State<WebState>,
    axum::Extension(viewer): axum::Extension<Viewer>,
    Form(form): Form<SignInForm>,
) -> Response {
    if !state.sessions.enabled {
        return Redirect::to("/").into_response();
    }
    if !check_csrf(&viewer, &form.csrf) {
        return bad_csrf();
    }
    let bearer = format!("Bearer {}", form.token.trim());
    let caller = match state.tokens.check(Some(bearer.as_bytes())) {
        Verdict::Valid(c) => c,
        _ => {
            let page = SignIn {
                csrf: &viewer.csrf,
                error: Some(
                    "That is not a live API token. Paste the whole token (plb_...) that `plumbline tokens create` printed; an admin can make one.",
                ),
                signed_in: false,
            };
            return (StatusCode::UNAUTHORIZED, html(page.render())).into_response();
        }
    };
    tracing::info!(token = %caller.name, role = caller.role.as_str(), "web sign-in");
    let id = state.sessions.open(caller);
    let secure = if state.secure_cookie { "; Secure" } else { "" };
    let cookie = format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        state.sessions.ttl.as_secs()
    );
    ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
}

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    csrf: String,
}

/// `POST /signout`.
pub(crate) async fn signout(
    State(state): State<WebState>,
    axum::Extension(viewer): axum::Extension<Viewer>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    if !check_csrf(&viewer, &form.csrf) {
        return bad_csrf();
    }
    if let Some(id) = session_id(&headers) {
        state.sessions.close(id);
    }
    let cookie = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    ([(header::SET_COOKIE, cookie)], Redirect::to("/signin")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn only_a_request_naming_this_host_is_same_site() {
        let host = ("host", "127.0.0.1:8080");
        assert!(same_site(&headers(&[
            host,
            ("origin", "http://127.0.0.1:8080")
        ])));
        assert!(same_site(&headers(&[
            host,
            ("referer", "http://127.0.0.1:8080/items/a")
        ])));
        assert!(!same_site(&headers(&[
            host,
            ("origin", "http://evil.example")
        ])));
        assert!(!same_site(&headers(&[
            host,
            ("origin", "http://127.0.0.1:8080.evil.example")
        ])));
        assert!(!same_site(&headers(&[host, ("origin", "null")])));
        assert!(!same_site(&headers(&[host])));
        // The Origin wins over a Referer that would pass.
        assert!(!same_site(&headers(&[
            host,
            ("origin", "http://evil.example"),
            ("referer", "http://127.0.0.1:8080/")
        ])));
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let h = headers(&[("cookie", "a=1; plumbline_session=xyz; b=2")]);
        assert_eq!(session_id(&h), Some("xyz"));
        let h = headers(&[("cookie", "plumbline_sessionx=1")]);
        assert_eq!(session_id(&h), None);
    }
}
