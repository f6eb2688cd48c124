//! `plumbline tokens create|list|revoke`: API tokens through a running
//! server's `TokenService` (with an admin token), or, with `--db`, straight
//! in a database file: how the first admin token is made when auth is on
//! and no token exists yet. A running server on that file sees the change
//! within a few seconds (`auth::tokens::REFRESH_EVERY`).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::Value;

use super::Conn;
use super::client::{connect, rpc_error};
use super::output::print_rows;
use crate::api::token_to_pb;
use crate::auth::{Role, tokens};
use crate::proto as pb;
use pb::token_service_client::TokenServiceClient;

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Create a token and print it, the only time it is shown (on stdout
    /// alone, e.g. `export PLUMBLINE_TOKEN=$(plumbline tokens create ...)`).
    Create(CreateArgs),
    /// List tokens, without their secrets.
    List {
        /// Also list revoked tokens.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        offline: Offline,
        #[command(flatten)]
        conn: Conn,
    },
    /// Revoke a token by id or name; a running server refuses it within
    /// seconds.
    Revoke {
        /// The token's id or name.
        token: String,
        #[command(flatten)]
        offline: Offline,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RoleArg {
    /// Get, List, Rank, Watch, Explain.
    Read,
    /// Also items, links, goals, metrics, hypotheses, observations,
    /// releases, splits.
    Write,
    /// Also sources, syncs, write-back and tokens.
    Admin,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Role {
        match r {
            RoleArg::Read => Role::Read,
            RoleArg::Write => Role::Write,
            RoleArg::Admin => Role::Admin,
        }
    }
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// A name for the token, unique among live tokens (who or what uses
    /// it); the server log names it on every write.
    #[arg(long)]
    name: String,
    /// What the token may do.
    #[arg(long, value_enum)]
    role: RoleArg,
    #[command(flatten)]
    offline: Offline,
    #[command(flatten)]
    conn: Conn,
}

/// Work on the database file instead of a server.
#[derive(Debug, Args)]
pub struct Offline {
    /// Write straight to this database (the server's `db`: a SQLite file,
    /// or a postgres:// DSN) instead of calling a server: for the first
    /// admin token.
    #[arg(long, value_name = "PATH|DSN")]
    db: Option<PathBuf>,
}

/// Opens the database at `db`; only `create` may make a new file (the first
/// token before the server ever ran), and says so, since a mistyped path
/// would otherwise give a token no server knows.
async fn open_store(
    db: &std::path::Path,
    create: bool,
) -> Result<std::sync::Arc<dyn crate::store::Store>> {
    let postgres = crate::config::is_postgres_url(db);
    if !postgres && !db.exists() {
        if !create {
            anyhow::bail!(
                "no database at {}; give the path the server's `db` setting names",
                db.display()
            );
        }
        eprintln!(
            "note: no database at {}; creating it (a server started with this `db` will use the token)",
            db.display()
        );
    }
    let config = crate::config::Config {
        db: db.to_path_buf(),
        ..Default::default()
    };
    crate::store::open(&config)
        .await
        .with_context(|| format!("cannot open the database {}", config.db_display()))
}

/// Every field of a token (never its secret, which the answer holds only
/// at creation).
fn row(t: &pb::ApiToken) -> Value {
    super::json::message("ApiToken", t)
}

pub async fn run(command: TokensCommand) -> Result<()> {
    match command {
        TokensCommand::Create(a) => create(a).await,
        TokensCommand::List { all, offline, conn } => list(all, offline, &conn).await,
        TokensCommand::Revoke {
            token,
            offline,
            conn,
        } => revoke(&token, offline, &conn).await,
    }
}

async fn create(a: CreateArgs) -> Result<()> {
    let role = Role::from(a.role);
    let (token, secret) = match &a.offline.db {
        Some(db) => {
            let store = open_store(db, true).await?;
            let made = tokens::create_in(store.as_ref(), &a.name, role).await;
            store.close().await;
            let (t, secret) = made.map_err(|e| rpc_error(e.into()))?;
            (token_to_pb(&t), secret)
        }
        None => {
            let mut c = TokenServiceClient::new(connect(&a.conn.server).await?);
            let r = c
                .create_token(pb::CreateTokenRequest {
                    name: a.name.clone(),
                    role: role_pb(role) as i32,
                })
                .await
                .map_err(rpc_error)?
                .into_inner();
            (r.token.unwrap_or_default(), r.secret)
        }
    };
    if a.conn.json {
        let mut v = row(&token);
        v["token"] = Value::String(secret);
        println!("{v}");
    } else {
        eprintln!(
            "created the {} token {:?} (id {}); it is shown only now, keep it:",
            role.as_str(),
            token.name,
            token.id
        );
        println!("{secret}");
    }
    Ok(())
}

fn role_pb(role: Role) -> pb::TokenRole {
    match role {
        Role::Read => pb::TokenRole::Read,
        Role::Write => pb::TokenRole::Write,
        Role::Admin => pb::TokenRole::Admin,
    }
}

async fn list(all: bool, offline: Offline, conn: &Conn) -> Result<()> {
    let tokens = match &offline.db {
        Some(db) => {
            let store = open_store(db, false).await?;
            let listed = store.list_tokens().await;
            store.close().await;
            let mut listed = listed.context("cannot list the tokens")?;
            listed.retain(|t| all || t.revoke_time.is_none());
            listed.iter().map(token_to_pb).collect()
        }
        None => {
            let mut c = TokenServiceClient::new(connect(&conn.server).await?);
            c.list_tokens(pb::ListTokensRequest {
                include_revoked: all,
            })
            .await
            .map_err(rpc_error)?
            .into_inner()
            .tokens
        }
    };
    let rows: Vec<Value> = tokens.iter().map(row).collect();
    print_rows(
        conn.json,
        &rows,
        &[
            ("id", "id"),
            ("name", "name"),
            ("role", "role"),
            ("created", "create_time"),
            ("revoked", "revoke_time"),
        ],
    );
    Ok(())
}

async fn revoke(which: &str, offline: Offline, conn: &Conn) -> Result<()> {
    let token = match &offline.db {
        Some(db) => {
            let store = open_store(db, false).await?;
            let done = tokens::revoke_in(store.as_ref(), which).await;
            store.close().await;
            token_to_pb(&done.map_err(|e| rpc_error(e.into()))?)
        }
        None => {
            let mut c = TokenServiceClient::new(connect(&conn.server).await?);
            c.revoke_token(pb::RevokeTokenRequest {
                token: which.to_string(),
            })
            .await
            .map_err(rpc_error)?
            .into_inner()
            .token
            .unwrap_or_default()
        }
    };
    if conn.json {
        println!("{}", row(&token));
    } else {
        println!("revoked the token {:?} (id {})", token.name, token.id);
    }
    Ok(())
}
