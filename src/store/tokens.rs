//! Where API tokens are kept: a trait of its own beside [`Store`](super::Store)
//! (which requires it), so that the token table's few calls stay apart from
//! the value model's.

use async_trait::async_trait;

use super::Result;
use crate::domain::{ApiToken, Time};

#[async_trait]
pub trait TokenStore: Send + Sync + 'static {
    /// Stores a new token; a live token of the same name (or id) is a
    /// [`Conflict`](super::StoreError::Conflict).
    async fn put_token(&self, token: &ApiToken) -> Result<()>;
    /// Every token, revoked ones too, by creation time.
    async fn list_tokens(&self) -> Result<Vec<ApiToken>>;
    /// Marks the live token of this id as revoked at `at`; returns whether
    /// there was one.
    async fn revoke_token(&self, id: &str, at: Time) -> Result<bool>;
}
