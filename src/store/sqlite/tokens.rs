//! The `api_tokens` table (migration 0005).

use async_trait::async_trait;
use rusqlite::params;

use super::conn::Fail;
use super::{SqliteStore, enum_str, nanos, opt_time, parse_enum, query_all, text, time};
use crate::domain::{ApiToken, Time};
use crate::store::{Result, TokenStore};

#[async_trait]
impl TokenStore for SqliteStore {
    async fn put_token(&self, t: &ApiToken) -> Result<()> {
        let t = t.clone();
        self.db
            .write("store an API token", move |tx| {
                tx.prepare_cached(
                    "INSERT INTO api_tokens (id, name, role, secret_hash, create_time, revoke_time) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![
                    t.id,
                    t.name,
                    enum_str(&t.role),
                    &t.secret_hash[..],
                    nanos(&t.create_time),
                    t.revoke_time.as_ref().map(nanos),
                ])?;
                Ok(())
            })
            .await
    }

    async fn list_tokens(&self) -> Result<Vec<ApiToken>> {
        self.db
            .read("list API tokens", |c| {
                query_all(
                    c,
                    "SELECT * FROM api_tokens ORDER BY create_time, id",
                    [],
                    |r| {
                        let hash: Vec<u8> = r.get("secret_hash")?;
                        Ok(ApiToken {
                            id: r.get("id")?,
                            name: r.get("name")?,
                            role: parse_enum(text(r, "role")?)?,
                            secret_hash: hash.try_into().map_err(|_| {
                                Fail::Corrupt("an API token's hash is not 32 bytes".into())
                            })?,
                            create_time: time(r.get("create_time")?),
                            revoke_time: opt_time(r.get("revoke_time")?),
                        })
                    },
                )
            })
            .await
    }

    async fn revoke_token(&self, id: &str, at: Time) -> Result<bool> {
        let id = id.to_string();
        self.db
            .write("revoke an API token", move |tx| {
                let n = tx.execute(
                    "UPDATE api_tokens SET revoke_time = ?2 WHERE id = ?1 AND revoke_time IS NULL",
                    params![id, nanos(&at)],
                )?;
                Ok(n > 0)
            })
            .await
    }
}
