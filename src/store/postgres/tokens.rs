//! API tokens on PostgreSQL (see the SQLite backend's `tokens.rs`).

use async_trait::async_trait;

use super::PostgresStore;
use crate::domain::{ApiToken, Time};
use crate::store::{Result, StoreError, TokenStore};

fn not_yet<T>() -> Result<T> {
    Err(StoreError::Backend {
        doing: "tokens".into(),
        source: "not implemented on PostgreSQL yet".into(),
    })
}

#[async_trait]
impl TokenStore for PostgresStore {
    async fn put_token(&self, t: &ApiToken) -> Result<()> {
        let _ = t;
        not_yet()
    }

    async fn list_tokens(&self) -> Result<Vec<ApiToken>> {
        not_yet()
    }

    async fn revoke_token(&self, id: &str, at: Time) -> Result<bool> {
        let _ = (id, at);
        not_yet()
    }
}
