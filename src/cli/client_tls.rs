//! The CLI as a TLS client: `--ca-cert`, `--client-cert` and `--client-key`
//! (or their `PLUMBLINE_*` variables), read once at start and applied by
//! [`super::client::connect`] to every `https://` server URL.
//!
//! The flags are global, so they are kept here rather than threaded through
//! every command's arguments to the one function that connects.

use std::path::PathBuf;
use std::sync::OnceLock;

use anyhow::{Context, Result};
use clap::Args;
use tonic::transport::Endpoint;

use crate::tls::ClientTls;

/// TLS settings for `https://` server URLs.
#[derive(Debug, Args, Clone, Default)]
pub struct ClientTlsArgs {
    /// PEM file of the CA that signed the server's certificate (a private
    /// CA), trusted instead of the system's CAs; for https:// server URLs.
    #[arg(long, global = true, env = "PLUMBLINE_CA_CERT", value_name = "PATH")]
    ca_cert: Option<PathBuf>,
    /// PEM file of this client's certificate, for a server that requires one
    /// (mutual TLS); with --client-key.
    #[arg(
        long,
        global = true,
        env = "PLUMBLINE_CLIENT_CERT",
        value_name = "PATH"
    )]
    client_cert: Option<PathBuf>,
    /// PEM file of the private key of --client-cert.
    #[arg(long, global = true, env = "PLUMBLINE_CLIENT_KEY", value_name = "PATH")]
    client_key: Option<PathBuf>,
}

static SETTINGS: OnceLock<ClientTls> = OnceLock::new();

/// Keeps the command line's TLS settings for [`apply`]; the first call wins.
pub fn set(args: ClientTlsArgs) {
    let _ = SETTINGS.set(ClientTls {
        ca_cert: args.ca_cert,
        client_cert: args.client_cert,
        client_key: args.client_key,
    });
}

/// The endpoint with TLS when `url` is `https://` (the files read now, so a
/// mistake names its file); a plain `http://` endpoint is left as it is.
pub fn apply(endpoint: Endpoint, url: &str) -> Result<Endpoint> {
    if endpoint.uri().scheme_str() != Some("https") {
        return Ok(endpoint);
    }
    let settings = SETTINGS.get().cloned().unwrap_or_default();
    let tls = settings.config()?;
    endpoint
        .tls_config(tls)
        .with_context(|| format!("cannot set up TLS for {url}"))
}
