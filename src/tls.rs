//! Who may connect: TLS and mutual TLS on the gRPC listener (`[tls]`), the
//! same files read for the CLI as a TLS client, and the rule that keeps a
//! port from being opened to the network by accident ([`check_exposure`]).
//!
//! TLS itself is tonic's (rustls, with the aws-lc-rs provider that reqwest
//! already builds), set on the server builder rather than in a custom
//! acceptor so that it composes with whatever wraps the accepted TCP
//! streams. The files are read and checked here first, with rustls, only so
//! that a mistake reads as one sentence naming one file and what is wrong
//! with it (missing, not PEM, a key that does not match its certificate)
//! instead of a handshake failure later.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// How long a client may take to finish its TLS handshake before its
/// connection is closed, so that a connection that never speaks does not
/// hold a handshake task.
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// TLS on the gRPC listener (`[tls]` in the config file). Off unless `cert`
/// and `key` are both set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM file with the server's certificate, then any intermediates.
    pub cert: Option<PathBuf>,
    /// PEM file with the private key of `cert` (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// PEM file with the CA certificates that sign client certificates; when
    /// set, every client must present a certificate signed by one of them
    /// (mutual TLS, as service meshes do).
    pub client_ca: Option<PathBuf>,
}

/// A TLS file that cannot be used, or settings that do not fit together.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("[tls] {set} is set but {missing} is not: TLS needs both the certificate and its key")]
    Incomplete {
        set: &'static str,
        missing: &'static str,
    },
    #[error(
        "[tls] client_ca is set but cert and key are not: mutual TLS needs the server's own certificate and key too"
    )]
    ClientCaWithoutIdentity,
    #[error(
        "{flag} is given without {missing}: a client certificate needs its key and the other way round"
    )]
    ClientIdentityIncomplete {
        flag: &'static str,
        missing: &'static str,
    },
    #[error("the {what} file {} does not exist", path.display())]
    Missing { what: &'static str, path: PathBuf },
    #[error("cannot read the {what} file {}: {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the {what} file {} holds no PEM {expected} (a block starting with -----BEGIN {marker})", path.display())]
    NoPem {
        what: &'static str,
        path: PathBuf,
        expected: &'static str,
        marker: &'static str,
    },
    #[error("the {what} file {} is not valid PEM: {source}", path.display())]
    BadPem {
        what: &'static str,
        path: PathBuf,
        source: pem::Error,
    },
    #[error("the private key in {} does not match the certificate in {}", key.display(), cert.display())]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("cannot use the key {} with the certificate {}: {source}", key.display(), cert.display())]
    BadIdentity {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
    #[error("the CA file {} holds no certificate usable as a trust anchor: {reason}", path.display())]
    BadCa { path: PathBuf, reason: String },
    #[error("TLS settings refused: {0}")]
    Tonic(#[source] tonic::transport::Error),
}

impl TlsConfig {
    /// Whether TLS is configured (both `cert` and `key`; [`TlsConfig::check`]
    /// refuses one without the other).
    pub fn enabled(&self) -> bool {
        self.cert.is_some() && self.key.is_some()
    }

    /// Settings that fit together: `cert` and `key` both or neither, and
    /// `client_ca` only with them. Reads no file.
    pub fn check(&self) -> Result<(), TlsError> {
        match (&self.cert, &self.key) {
            (Some(_), None) => Err(TlsError::Incomplete {
                set: "cert",
                missing: "key",
            }),
            (None, Some(_)) => Err(TlsError::Incomplete {
                set: "key",
                missing: "cert",
            }),
            (None, None) if self.client_ca.is_some() => Err(TlsError::ClientCaWithoutIdentity),
            _ => Ok(()),
        }
    }

    /// The listener's TLS settings, its files read and checked; `None` when
    /// TLS is off.
    pub fn server(&self) -> Result<Option<ServerTlsConfig>, TlsError> {
        self.check()?;
        let (Some(cert), Some(key)) = (&self.cert, &self.key) else {
            return Ok(None);
        };
        let identity = read_identity(cert, key)?;
        let mut tls = ServerTlsConfig::new()
            .identity(identity)
            .timeout(HANDSHAKE_TIMEOUT);
        if let Some(ca) = &self.client_ca {
            tls = tls.client_ca_root(read_ca(ca, "client CA")?);
        }
        Ok(Some(tls))
    }

    /// The same certificate, key and client CA as a rustls server config,
    /// for the web view's HTTPS listener (axum has no TLS of its own, so
    /// the web listener runs the handshake itself with tokio-rustls);
    /// `None` when TLS is off. ALPN offers HTTP/2 and HTTP/1.1.
    pub fn rustls_server(&self) -> Result<Option<Arc<rustls::ServerConfig>>, TlsError> {
        self.check()?;
        let (Some(cert), Some(key)) = (&self.cert, &self.key) else {
            return Ok(None);
        };
        // Checked (and explained) as for the gRPC listener first.
        read_identity(cert, key)?;
        let chain = certificates("certificate", cert, &read("certificate", cert)?)?;
        let private =
            PrivateKeyDer::from_pem_slice(&read("private key", key)?).map_err(|source| {
                TlsError::BadPem {
                    what: "private key",
                    path: key.to_path_buf(),
                    source,
                }
            })?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let bad = |source: rustls::Error| TlsError::BadIdentity {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            source,
        };
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(bad)?;
        let builder = match &self.client_ca {
            Some(ca) => {
                let roots = ca_roots(ca, "client CA")?;
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .map_err(|e| TlsError::BadCa {
                    path: ca.to_path_buf(),
                    reason: e.to_string(),
                })?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_single_cert(chain, private).map_err(bad)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Some(Arc::new(config)))
    }
}

/// The CLI's TLS settings as a client of an `https://` server.
#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    /// CA certificates to trust instead of the system's (a private CA).
    pub ca_cert: Option<PathBuf>,
    /// The client's certificate, for a server that asks for one (mTLS).
    pub client_cert: Option<PathBuf>,
    /// The key of `client_cert`.
    pub client_key: Option<PathBuf>,
}

impl ClientTls {
    /// The client's TLS settings, its files read and checked: the system's
    /// trusted CAs, or only `ca_cert` when given; a client certificate when
    /// given.
    pub fn config(&self) -> Result<ClientTlsConfig, TlsError> {
        let mut tls = ClientTlsConfig::new().timeout(HANDSHAKE_TIMEOUT);
        tls = match &self.ca_cert {
            Some(ca) => tls.ca_certificate(read_ca(ca, "CA certificate")?),
            None => tls.with_native_roots(),
        };
        match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => tls = tls.identity(read_identity(cert, key)?),
            (Some(_), None) => {
                return Err(TlsError::ClientIdentityIncomplete {
                    flag: "--client-cert",
                    missing: "--client-key",
                });
            }
            (None, Some(_)) => {
                return Err(TlsError::ClientIdentityIncomplete {
                    flag: "--client-key",
                    missing: "--client-cert",
                });
            }
            (None, None) => {}
        }
        Ok(tls)
    }
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => TlsError::Missing {
            what,
            path: path.to_path_buf(),
        },
        _ => TlsError::Read {
            what,
            path: path.to_path_buf(),
            source,
        },
    })
}

/// The certificates of a PEM file: at least one, every block valid.
fn certificates(
    what: &'static str,
    path: &Path,
    bytes: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::BadPem {
            what,
            path: path.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoPem {
            what,
            path: path.to_path_buf(),
            expected: "certificate",
            marker: "CERTIFICATE-----",
        });
    }
    Ok(certs)
}

/// A certificate with its key, checked to belong together.
fn read_identity(cert: &Path, key: &Path) -> Result<Identity, TlsError> {
    let cert_pem = read("certificate", cert)?;
    let key_pem = read("private key", key)?;
    let chain = certificates("certificate", cert, &cert_pem)?;
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|source| match source {
        pem::Error::NoItemsFound => TlsError::NoPem {
            what: "private key",
            path: key.to_path_buf(),
            expected: "private key",
            marker: "PRIVATE KEY----- or -----BEGIN RSA PRIVATE KEY-----",
        },
        source => TlsError::BadPem {
            what: "private key",
            path: key.to_path_buf(),
            source,
        },
    })?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    rustls::sign::CertifiedKey::from_der(chain, private, &provider).map_err(
        |source| match source {
            rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                TlsError::KeyMismatch {
                    cert: cert.to_path_buf(),
                    key: key.to_path_buf(),
                }
            }
            source => TlsError::BadIdentity {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
                source,
            },
        },
    )?;
    Ok(Identity::from_pem(cert_pem, key_pem))
}

/// CA certificates to trust, each one usable as a trust anchor (tonic would
/// skip one that is not, silently trusting less than the file says).
fn read_ca(path: &Path, what: &'static str) -> Result<Certificate, TlsError> {
    ca_roots(path, what)?;
    Ok(Certificate::from_pem(read(what, path)?))
}

/// The CA certificates of a file as trust anchors, every one usable.
fn ca_roots(path: &Path, what: &'static str) -> Result<rustls::RootCertStore, TlsError> {
    let pem = read(what, path)?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates(what, path, &pem)? {
        roots.add(cert).map_err(|e| TlsError::BadCa {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    }
    Ok(roots)
}

/// How exposed a listener is, once [`check_exposure`] has let it start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposure {
    /// A loopback address: only this host can connect.
    Loopback,
    /// Reachable from the network, with auth or TLS.
    Protected,
    /// Reachable from the network with neither, because the operator said
    /// `--insecure`.
    Insecure,
}

/// A non-loopback listener with neither auth nor TLS, not allowed by
/// `--insecure`.
#[derive(Debug, thiserror::Error)]
#[error(
    "refusing to listen on {listen} with neither authentication nor TLS: any process that can reach that address could read and change the backlog and its sources. Either listen on 127.0.0.1, or turn on tokens with `[auth] enabled = true` (and create one with `plumbline tokens create`), or serve TLS with `[tls] cert` and `key`, or, behind a proxy or mesh that authenticates and encrypts for you, start with `--insecure`"
)]
pub struct OpenListener {
    pub listen: SocketAddr,
}

/// Whether the listener may start: a loopback address always may; any other
/// only with auth or TLS, or when the operator says `insecure`. Loopback is
/// 127.0.0.0/8 and ::1 (also as ::ffff:127.x.y.z); 0.0.0.0 and :: are every
/// address, not loopback.
pub fn check_exposure(
    listen: SocketAddr,
    auth: bool,
    tls: bool,
    insecure: bool,
) -> Result<Exposure, OpenListener> {
    if listen.ip().to_canonical().is_loopback() {
        Ok(Exposure::Loopback)
    } else if auth || tls {
        Ok(Exposure::Protected)
    } else if insecure {
        Ok(Exposure::Insecure)
    } else {
        Err(OpenListener { listen })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_loopback_listens_without_auth_or_tls() {
        for a in [
            "127.0.0.1:1",
            "127.1.2.3:1",
            "[::1]:1",
            "[::ffff:127.0.0.1]:1",
        ] {
            assert_eq!(
                check_exposure(addr(a), false, false, false).unwrap(),
                Exposure::Loopback,
                "{a}"
            );
        }
        for a in [
            "0.0.0.0:1",
            "[::]:1",
            "10.0.0.1:1",
            "192.168.1.2:1",
            "[fe80::1]:1",
        ] {
            let err = check_exposure(addr(a), false, false, false).unwrap_err();
            let msg = err.to_string();
            for way in ["[auth] enabled = true", "[tls] cert", "--insecure"] {
                assert!(msg.contains(way), "{a}: {msg}");
            }
            assert_eq!(
                check_exposure(addr(a), true, false, false).unwrap(),
                Exposure::Protected
            );
            assert_eq!(
                check_exposure(addr(a), false, true, false).unwrap(),
                Exposure::Protected
            );
            assert_eq!(
                check_exposure(addr(a), false, false, true).unwrap(),
                Exposure::Insecure
            );
        }
    }

    #[test]
    fn cert_and_key_come_together() {
        let p = |s: &str| Some(PathBuf::from(s));
        let only_cert = TlsConfig {
            cert: p("c.pem"),
            ..Default::default()
        };
        let msg = only_cert.check().unwrap_err().to_string();
        assert!(msg.contains("cert is set but key is not"), "{msg}");
        let only_key = TlsConfig {
            key: p("k.pem"),
            ..Default::default()
        };
        assert!(only_key.check().is_err());
        let only_ca = TlsConfig {
            client_ca: p("ca.pem"),
            ..Default::default()
        };
        assert!(
            only_ca
                .check()
                .unwrap_err()
                .to_string()
                .contains("client_ca")
        );
        assert!(TlsConfig::default().check().is_ok());
        assert!(!TlsConfig::default().enabled());
        assert!(matches!(TlsConfig::default().server(), Ok(None)));
    }

    #[test]
    fn unusable_files_are_named_with_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let not_pem = dir.path().join("notes.txt");
        std::fs::write(&not_pem, "hello\n").unwrap();
        let tls = |cert: &Path, key: &Path| TlsConfig {
            cert: Some(cert.to_path_buf()),
            key: Some(key.to_path_buf()),
            client_ca: None,
        };
        let msg = tls(&missing, &not_pem).server().unwrap_err().to_string();
        assert!(
            msg.contains("does not exist") && msg.contains("nope.pem"),
            "{msg}"
        );
        let msg = tls(&not_pem, &not_pem).server().unwrap_err().to_string();
        assert!(
            msg.contains("notes.txt") && msg.contains("no PEM certificate"),
            "{msg}"
        );
    }
}
