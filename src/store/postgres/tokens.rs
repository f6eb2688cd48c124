//! API tokens on PostgreSQL (see the SQLite backend's `tokens.rs`). Names
//! are unique among live tokens (a partial unique index): a second live
//! token of a name is a [`StoreError::Conflict`](crate::store::StoreError),
//! as on SQLite.

use async_trait::async_trait;

use super::PostgresStore;
use super::conn::{Attempt, Fail, Tx};
use super::{enum_str, nanos, opt_time, parse_enum, pg_text, time};
use crate::domain::{ApiToken, Time};
use crate::store::{Result, TokenStore};

async fn put(tx: &Tx<'_>, t: &ApiToken) -> Attempt<()> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO api_tokens (id, name, role, secret_hash, create_time, revoke_time) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .await?;
    tx.execute(
        &stmt,
        &[
            &pg_text(&t.id),
            &pg_text(&t.name),
            &enum_str(&t.role),
            &&t.secret_hash[..],
            &nanos(&t.create_time),
            &t.revoke_time.as_ref().map(nanos),
        ],
    )
    .await?;
    Ok(())
}

async fn list(tx: &Tx<'_>) -> Attempt<Vec<ApiToken>> {
    let stmt = tx
        .prepare_cached("SELECT * FROM api_tokens ORDER BY create_time, id COLLATE \"C\"")
        .await?;
    tx.query(&stmt, &[])
        .await?
        .iter()
        .map(|r| {
            let hash: Vec<u8> = r.try_get("secret_hash")?;
            Ok(ApiToken {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                role: parse_enum(r.try_get("role")?)?,
                secret_hash: hash
                    .try_into()
                    .map_err(|_| Fail::Corrupt("an API token's hash is not 32 bytes".into()))?,
                create_time: time(r.try_get("create_time")?),
                revoke_time: opt_time(r.try_get("revoke_time")?),
            })
        })
        .collect()
}

async fn revoke(tx: &Tx<'_>, id: &str, at: &Time) -> Attempt<bool> {
    let stmt = tx
        .prepare_cached(
            "UPDATE api_tokens SET revoke_time = $2 WHERE id = $1 AND revoke_time IS NULL",
        )
        .await?;
    Ok(tx.execute(&stmt, &[&pg_text(id), &nanos(at)]).await? > 0)
}

#[async_trait]
impl TokenStore for PostgresStore {
    async fn put_token(&self, t: &ApiToken) -> Result<()> {
        self.db
            .write("store an API token", t, |tx, t| Box::pin(put(tx, t)))
            .await
    }

    async fn list_tokens(&self) -> Result<Vec<ApiToken>> {
        self.db
            .read("list API tokens", (), |tx, ()| Box::pin(list(tx)))
            .await
    }

    async fn revoke_token(&self, id: &str, at: Time) -> Result<bool> {
        self.db
            .write("revoke an API token", (id, at), |tx, (id, at)| {
                Box::pin(revoke(tx, id, at))
            })
            .await
    }
}
