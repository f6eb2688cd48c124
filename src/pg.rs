//! What plumbline's two PostgreSQL clients share (the `sql` metric source
//! and the PostgreSQL store): TLS through rustls verified against the
//! system's roots, the rule that a password never crosses a network in the
//! clear, which failures are transient, and how a server's error reads.

use std::sync::{Arc, OnceLock};

use tokio_postgres::config::{Host, SslMode};

/// Whether every host of `config` is on this machine (loopback or a Unix
/// socket).
pub fn is_local(config: &tokio_postgres::Config) -> bool {
    // No host at all (only `hostaddr=`) is judged by the addresses; with
    // neither, nothing says it is this machine.
    let hosts = config.get_hosts();
    let addrs = config.get_hostaddrs();
    if hosts.is_empty() && addrs.is_empty() {
        return false;
    }
    hosts.iter().all(|h| match h {
        Host::Unix(_) => true,
        Host::Tcp(name) => is_loopback(name),
    }) && addrs.iter().all(|a| a.is_loopback())
}

/// To a host that is not on this machine the connection requires TLS:
/// `sslmode=prefer` (the default) becomes `require`, `disable` is refused
/// with a message naming `what` (never the DSN itself).
pub fn require_tls_off_loopback(
    config: &mut tokio_postgres::Config,
    what: &str,
) -> Result<(), String> {
    if is_local(config) {
        return Ok(());
    }
    match config.get_ssl_mode() {
        SslMode::Disable => Err(format!(
            "{what} says sslmode=disable for a host that is not loopback; a password must not cross a network in the clear, use sslmode=require"
        )),
        SslMode::Prefer => {
            config.ssl_mode(SslMode::Require);
            Ok(())
        }
        _ => Ok(()),
    }
}

/// A connection that could not be made or was lost (refused, reset,
/// timed out, unreachable), or a server that says "not now": SQLSTATE
/// classes 08 (connection exception) and 53 (insufficient resources), and
/// 57P01-57P03 (shut down, crashed, not accepting connections yet). TLS
/// and authentication failures are the settings' and stay so.
pub fn is_transient(e: &tokio_postgres::Error) -> bool {
    use std::io::ErrorKind::*;
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        return code.starts_with("08")
            || code.starts_with("53")
            || ["57P01", "57P02", "57P03"].contains(&code);
    }
    if e.is_closed() {
        return true;
    }
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                ConnectionRefused
                    | ConnectionReset
                    | ConnectionAborted
                    | NotConnected
                    | BrokenPipe
                    | TimedOut
                    | UnexpectedEof
                    | HostUnreachable
                    | NetworkUnreachable
                    | AddrNotAvailable
            );
        }
        cause = c.source();
    }
    false
}

pub fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// rustls with aws-lc-rs and the system's roots, built once.
pub fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_native_certs::load_native_certs().certs {
                // A system root rustls cannot read is skipped, as browsers do.
                let _ = roots.add(cert);
            }
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map(|b| Arc::new(b.with_root_certificates(roots).with_no_client_auth()))
                .map_err(|e| format!("TLS could not be set up: {e}"))
        })
        .clone()
}

/// A PostgreSQL error as a person reads it: the server's message, detail
/// and hint (with its SQLSTATE), or the client's error.
pub fn describe(e: tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut text = format!(
            "PostgreSQL: {} (SQLSTATE {})",
            db.message(),
            db.code().code()
        );
        if let Some(detail) = db.detail() {
            text.push_str(&format!("; {detail}"));
        }
        if let Some(hint) = db.hint() {
            text.push_str(&format!("; hint: {hint}"));
        }
        if *db.code() == tokio_postgres::error::SqlState::QUERY_CANCELED {
            text.push_str("; the statement ran past statement_timeout and was cut");
        }
        if *db.code() == tokio_postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION {
            text.push_str("; the transaction is read-only");
        }
        return text;
    }
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(&format!(": {more}"));
        }
        cause = c.source();
    }
    text
}
