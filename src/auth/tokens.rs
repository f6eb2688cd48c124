//! API tokens: made, kept, checked and revoked.
//!
//! A token is `plb_<id>_<secret>`: 6 random bytes of public id (12 hex
//! digits), by which it is found, and 32 random bytes of secret (64 hex
//! digits), of which only the SHA-256 is stored. A fast hash is enough here,
//! unlike for passwords: the secret has 256 bits from the OS's random source,
//! so no dictionary or brute force over its hash can succeed, and stretching
//! (bcrypt, argon2) would only slow every call down. The stored hash is
//! compared in constant time, so the time a refusal takes says nothing of how
//! much of a guess was right.
//!
//! The server holds the live tokens in memory (loaded at start) and checks a
//! call without touching the store. Its own `TokenService` writes update the
//! memory at once; tokens created or revoked on the same database by the
//! offline CLI (`plumbline tokens ... --db`) reach it by a refresh from the
//! store every [`REFRESH_EVERY`], and a token with an unknown id triggers an
//! early refresh, at most one per [`MIN_REFRESH_GAP`], so that a flood of
//! made-up tokens cannot hammer the store.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;

use super::Role;
use super::layer::Caller;
use crate::domain::{ApiToken, has_control};
use crate::engine::{Error, Result, quote};
use crate::lifecycle::Lifecycle;
use crate::store::{Store, StoreError};

/// How every token begins, so that a secret scanner (and a person) can tell
/// a plumbline token from other strings.
pub const TOKEN_PREFIX: &str = "plb_";
/// Bytes of public id.
const ID_BYTES: usize = 6;
/// Bytes of secret: 256 bits, beyond any brute force.
const SECRET_BYTES: usize = 32;
/// The longest a revocation by the offline CLI takes to reach a running
/// server.
pub const REFRESH_EVERY: Duration = Duration::from_secs(2);
/// The shortest time between two refreshes caused by unknown token ids.
pub const MIN_REFRESH_GAP: Duration = Duration::from_secs(1);
/// Longest token name, in characters.
pub const MAX_NAME_CHARS: usize = 64;

/// A live token as the check needs it.
#[derive(Debug, Clone)]
struct Live {
    name: Arc<str>,
    role: Role,
    secret_hash: [u8; 32],
    /// Cancelled when the token stops being live (revoked here, or found
    /// revoked by a refresh), so that a long call made with it (an open
    /// `WatchRanking`) ends too.
    revoked: CancellationToken,
}

impl Live {
    fn new(name: Arc<str>, role: Role, secret_hash: [u8; 32]) -> Self {
        Live {
            name,
            role,
            secret_hash,
            revoked: CancellationToken::new(),
        }
    }
}

/// What a presented token turned out to be.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// A live token: who is calling.
    Valid(Caller),
    /// No `authorization` metadata.
    Missing,
    /// `authorization` is there but not `Bearer plb_<id>_<secret>`.
    Malformed,
    /// Well formed, but no live token has this id and secret.
    Unknown {
        /// No live token has the id at all (a refresh may find it).
        unknown_id: bool,
    },
}

/// The live tokens of a server, in memory, backed by the store.
pub struct Tokens {
    enabled: bool,
    store: Arc<dyn Store>,
    live: RwLock<HashMap<String, Live>>,
    last_refresh: Mutex<Instant>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("enabled", &self.enabled)
            .field("live", &self.live.read().len())
            .finish()
    }
}

impl Tokens {
    /// Loads the live tokens from the store. With `enabled` false, calls
    /// are not checked, but `TokenService` still manages tokens (so that
    /// they can be made before auth is turned on).
    pub async fn load(
        store: Arc<dyn Store>,
        enabled: bool,
    ) -> std::result::Result<Self, StoreError> {
        let tokens = Tokens {
            enabled,
            store,
            live: RwLock::new(HashMap::new()),
            last_refresh: Mutex::new(Instant::now()),
        };
        tokens.refresh().await?;
        Ok(tokens)
    }

    /// Whether calls need a token.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// How many live tokens there are.
    pub fn live_count(&self) -> usize {
        self.live.read().len()
    }

    /// Checks the value of an `authorization` header, in memory.
    pub fn check(&self, authorization: Option<&[u8]>) -> Verdict {
        let Some(value) = authorization else {
            return Verdict::Missing;
        };
        let Some((id, secret)) = parse_bearer(value) else {
            return Verdict::Malformed;
        };
        let live = self.live.read();
        let Some(t) = live.get(id) else {
            return Verdict::Unknown { unknown_id: true };
        };
        if bool::from(hash(secret).ct_eq(&t.secret_hash)) {
            Verdict::Valid(Caller {
                name: t.name.clone(),
                role: t.role,
                revoked: t.revoked.clone(),
            })
        } else {
            Verdict::Unknown { unknown_id: false }
        }
    }

    /// Claims an early refresh when the last one is older than
    /// [`MIN_REFRESH_GAP`]; false when the caller must not refresh.
    pub fn claim_refresh(&self) -> bool {
        let mut last = self.last_refresh.lock();
        if last.elapsed() < MIN_REFRESH_GAP {
            return false;
        }
        *last = Instant::now();
        true
    }

    /// Reads the live tokens from the store again.
    pub async fn refresh(&self) -> std::result::Result<(), StoreError> {
        let all = self.store.list_tokens().await?;
        let mut live = self.live.write();
        let mut old = std::mem::take(&mut *live);
        for t in all.into_iter().filter(|t| t.revoke_time.is_none()) {
            let mut entry = Live::new(t.name.into(), t.role, t.secret_hash);
            if let Some(was) = old.remove(&t.id) {
                // The same token: calls made with it keep their handle.
                entry.revoked = was.revoked;
            }
            live.insert(t.id, entry);
        }
        // What is no longer live was revoked (or deleted) elsewhere.
        for gone in old.into_values() {
            gone.revoked.cancel();
        }
        drop(live);
        *self.last_refresh.lock() = Instant::now();
        Ok(())
    }

    /// Refreshes every [`REFRESH_EVERY`] until the server stops; a failed
    /// refresh keeps the tokens in memory and is logged.
    pub async fn refresh_until_stopped(self: Arc<Self>, lifecycle: Lifecycle) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(REFRESH_EVERY) => {}
                () = lifecycle.cancelled() => return,
            }
            if let Err(e) = self.refresh().await {
                tracing::warn!(error = %e, "cannot refresh API tokens from the store; keeping those in memory");
            }
        }
    }

    /// Creates a token; returns it with the token text, shown only now.
    pub async fn create(&self, name: &str, role: Role) -> Result<(ApiToken, String)> {
        let (token, text) = create_in(self.store.as_ref(), name, role).await?;
        self.live.write().insert(
            token.id.clone(),
            Live::new(token.name.as_str().into(), role, token.secret_hash),
        );
        Ok((token, text))
    }

    /// Every token (revoked ones only with `include_revoked`), oldest first.
    pub async fn list(&self, include_revoked: bool) -> Result<Vec<ApiToken>> {
        let mut all = self.store.list_tokens().await?;
        all.retain(|t| include_revoked || t.revoke_time.is_none());
        Ok(all)
    }

    /// Revokes the live token with this id or name; refused from the next
    /// call on.
    pub async fn revoke(&self, id_or_name: &str) -> Result<ApiToken> {
        let token = revoke_in(self.store.as_ref(), id_or_name).await?;
        if let Some(gone) = self.live.write().remove(&token.id) {
            gone.revoked.cancel();
        }
        Ok(token)
    }
}

/// Checks a token name: 1 to [`MAX_NAME_CHARS`] characters, no control
/// characters (it is printed in logs and tables).
pub fn check_name(name: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(Error::invalid("name", "is required"));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(Error::invalid(
            "name",
            format!("is longer than {MAX_NAME_CHARS} characters"),
        ));
    }
    if has_control(name) {
        return Err(Error::invalid("name", "must not hold control characters"));
    }
    Ok(())
}

/// Creates a token straight in `store`: what `TokenService` does, and what
/// the offline CLI does for the first admin token.
pub async fn create_in(store: &dyn Store, name: &str, role: Role) -> Result<(ApiToken, String)> {
    check_name(name)?;
    if store
        .list_tokens()
        .await?
        .iter()
        .any(|t| t.revoke_time.is_none() && t.name == name)
    {
        return Err(Error::AlreadyExists(format!(
            "a live token is already named {}; revoke it first or choose another name",
            quote(name)
        )));
    }
    let mut id = [0u8; ID_BYTES];
    let mut secret = [0u8; SECRET_BYTES];
    getrandom::fill(&mut id)
        .and_then(|()| getrandom::fill(&mut secret))
        .map_err(|e| {
            Error::FailedPrecondition(format!(
                "the operating system's random source failed ({e}); no token was made"
            ))
        })?;
    let (id, secret) = (hex(&id), hex(&secret));
    let token = ApiToken {
        id,
        name: name.to_string(),
        role,
        secret_hash: hash(&secret),
        create_time: chrono::Utc::now(),
        revoke_time: None,
    };
    match store.put_token(&token).await {
        Ok(()) => {}
        // Another writer took the name between the check and the write.
        Err(StoreError::Conflict { .. }) => {
            return Err(Error::AlreadyExists(format!(
                "a live token is already named {}",
                quote(name)
            )));
        }
        Err(e) => return Err(e.into()),
    }
    let text = format!("{TOKEN_PREFIX}{}_{secret}", token.id);
    Ok((token, text))
}

/// Revokes the live token with this id or name, straight in `store`.
pub async fn revoke_in(store: &dyn Store, id_or_name: &str) -> Result<ApiToken> {
    let found = store
        .list_tokens()
        .await?
        .into_iter()
        .find(|t| t.revoke_time.is_none() && (t.id == id_or_name || t.name == id_or_name));
    let Some(mut token) = found else {
        return Err(Error::NotFound(format!(
            "no live token has the id or name {}",
            quote(id_or_name)
        )));
    };
    let now = chrono::Utc::now();
    if !store.revoke_token(&token.id, now).await? {
        return Err(Error::NotFound(format!(
            "the token {} was revoked meanwhile",
            quote(&token.name)
        )));
    }
    token.revoke_time = Some(now);
    Ok(token)
}

fn hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `Bearer plb_<id>_<secret>` (the scheme in any case, RFC 6750) as
/// (id, secret).
fn parse_bearer(value: &[u8]) -> Option<(&str, &str)> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let (id, secret) = token.trim().strip_prefix(TOKEN_PREFIX)?.split_once('_')?;
    (is_hex(id, ID_BYTES * 2) && is_hex(secret, SECRET_BYTES * 2)).then_some((id, secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_values_parse_only_in_the_token_shape() {
        let id = "0123456789ab";
        let secret = "f".repeat(64);
        let good = format!("Bearer plb_{id}_{secret}");
        assert_eq!(parse_bearer(good.as_bytes()), Some((id, secret.as_str())));
        let lower = format!("bearer plb_{id}_{secret}");
        assert!(parse_bearer(lower.as_bytes()).is_some());
        for bad in [
            format!("plb_{id}_{secret}"),
            format!("Basic plb_{id}_{secret}"),
            format!("Bearer {id}_{secret}"),
            format!("Bearer plb_{id}_{}", &secret[1..]),
            format!("Bearer plb_{id}_{}G", &secret[1..]),
            format!("Bearer plb_{}_{secret}", &id[1..]),
            "Bearer ".to_string(),
        ] {
            assert_eq!(parse_bearer(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn names_are_bounded_and_printable() {
        assert!(check_name("ci-bot").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("  ").is_err());
        assert!(check_name("a\nb").is_err());
        assert!(check_name(&"x".repeat(65)).is_err());
        assert!(check_name(&"é".repeat(64)).is_ok());
    }

    #[test]
    fn hex_is_lowercase_and_two_digits_a_byte() {
        assert_eq!(hex(&[0, 1, 0xab, 0xff]), "0001abff");
    }
}
