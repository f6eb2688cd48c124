//! Who a source's key authenticates as. Redmine answers a request with a
//! wrong key (or any key, with its REST API disabled) as its anonymous user:
//! on a public project the sync "succeeds" with the public issues, and only
//! a later write-back fails with 401. Its `GET /users/current.json` answers
//! 401 for the anonymous user, so that request tells a rejected key apart.
//!
//! It is asked when a source with a key is added or its credentials change
//! (a rejected key refuses the change; a check that cannot be made is a
//! warning), and before a sync, unless the tracker confirmed the same key
//! at the same URL within the last [`RECHECK`]: a resync stays one request,
//! and a key revoked meanwhile is found within the hour. Only a SHA-256 of
//! the URL and key is kept, never the key. Trackers that refuse a wrong
//! token on every request (GitHub, GitLab, Jira: 401) are not asked.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use super::{SyncError, SyncEvent, Syncer, check_source, connector, source_token};
use crate::domain::Source;

/// How long a key the tracker confirmed is taken as confirmed.
pub const RECHECK: Duration = Duration::from_secs(3600);

/// What the tracker said about a source's key.
#[derive(Debug, Clone, PartialEq)]
pub enum Identity {
    /// The tracker refuses a wrong token on every request: nothing to ask.
    NotAsked,
    /// The source names no token: the tracker answers as its anonymous user.
    NoToken,
    /// The key authenticates as this user (login).
    User(String),
}

/// A key the tracker confirmed.
#[derive(Debug)]
struct Confirmation {
    /// SHA-256 of the source's URL and key.
    print: [u8; 32],
    login: String,
    at: Instant,
}

/// Keys recently confirmed, by source id.
#[derive(Debug, Default)]
pub struct Confirmed(Mutex<HashMap<String, Confirmation>>);

impl Confirmed {
    fn fresh(&self, source_id: &str, print: &[u8; 32]) -> Option<String> {
        let map = self.0.lock();
        let c = map.get(source_id)?;
        (&c.print == print && c.at.elapsed() < RECHECK).then(|| c.login.clone())
    }

    fn put(&self, source_id: &str, print: [u8; 32], login: &str) {
        self.0.lock().insert(
            source_id.to_string(),
            Confirmation {
                print,
                login: login.to_string(),
                at: Instant::now(),
            },
        );
    }
}

fn fingerprint(source: &Source, token: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(source.base_url.as_bytes());
    h.update([0]);
    h.update(token.as_bytes());
    h.finalize().into()
}

/// The warning for a source that names no token, on a tracker that answers
/// it as its anonymous user.
pub fn no_token_warning(source: &Source) -> String {
    format!(
        "source {:?} names no token: the tracker answers it as its anonymous user, so only the issues of public projects are synced and write-back is refused; set token_env to a variable holding an API key unless that is meant",
        source.id
    )
}

impl Syncer {
    /// Who `source`'s key authenticates as: one GET of the tracker's
    /// identity endpoint, unless the same key at the same URL was confirmed
    /// within [`RECHECK`]. A key the tracker answers as anonymous (401, or
    /// 403 with Redmine's REST API disabled) is [`SyncError::Anonymous`].
    /// `requests` counts the request made.
    pub async fn identity(
        &self,
        source: &Source,
        events: &(dyn Fn(SyncEvent) + Send + Sync),
        requests: &mut u32,
    ) -> Result<Identity, SyncError> {
        let Some(conn) = connector(source.kind) else {
            return Ok(Identity::NotAsked);
        };
        let Some(url) = conn.identity_url(source)? else {
            return Ok(Identity::NotAsked);
        };
        let Some(token) = source_token(source)? else {
            return Ok(Identity::NoToken);
        };
        let print = fingerprint(source, &token);
        if let Some(login) = self.identities.fresh(&source.id, &print) {
            return Ok(Identity::User(login));
        }
        let headers = conn.headers(source, Some(&token))?;
        let anonymous = |status: u16, message: String| SyncError::Anonymous {
            source_id: source.id.clone(),
            var: source.token_env.clone(),
            endpoint: url.path().to_string(),
            status,
            message,
        };
        let fetched = self
            .http
            .get(
                conn.as_ref(),
                &source.id,
                &url,
                &headers,
                None,
                events,
                requests,
            )
            .await
            .map_err(|e| match e {
                SyncError::Unauthorized { message, .. } => anonymous(401, message),
                SyncError::Forbidden { message, .. } => anonymous(403, message),
                other => other,
            })?;
        let login = conn.parse_identity(source, &fetched)?;
        self.identities.put(&source.id, print, &login);
        Ok(Identity::User(login))
    }

    /// The check made when a source is added or its credentials change,
    /// before it is stored: a key the tracker rejects is an error; no key at
    /// all, or a check that cannot be made now (variable unset, tracker
    /// unreachable, unexpected answer), is a warning returned for the caller
    /// to show, and the next sync checks again. Errors are scrubbed of the
    /// source's secrets.
    pub async fn check_new_source(&self, source: &Source) -> Result<Vec<String>, SyncError> {
        // A push source has no tracker to ask.
        let Some(conn) = connector(source.kind) else {
            return Ok(Vec::new());
        };
        if conn.identity_url(source)?.is_none() {
            return Ok(Vec::new());
        }
        if check_source(self.http.outbound(), source).is_err() {
            // Nothing is sent; storing the source refuses it, in its words.
            return Ok(Vec::new());
        }
        let secrets = self.secrets(source);
        let mut requests = 0;
        match self.identity(source, &|_| {}, &mut requests).await {
            Ok(Identity::User(login)) => {
                tracing::info!(source = %source.id, user = %login, "the tracker accepts the source's key");
                Ok(Vec::new())
            }
            Ok(Identity::NotAsked) => Ok(Vec::new()),
            Ok(Identity::NoToken) => {
                let w = no_token_warning(source);
                tracing::warn!("{w}");
                Ok(vec![w])
            }
            Err(e @ SyncError::Anonymous { .. }) => Err(e.redacted(&secrets)),
            Err(e) => {
                let w = format!(
                    "could not check who the key authenticates as: {}; the next sync checks again",
                    e.redacted(&secrets)
                );
                tracing::warn!("{w}");
                Ok(vec![w])
            }
        }
    }
}
