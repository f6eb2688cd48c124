//! TLS and mutual TLS on the listener, the CLI as a TLS client, and `serve`
//! refusing a non-loopback address with neither auth nor TLS. Certificates
//! are made here (rcgen): a CA, a server certificate for 127.0.0.1 and
//! localhost, a client certificate, and a second CA that nobody trusts.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use plumbline::config::{Config, TlsConfig};
use plumbline::server::{self, RunningServer};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// PEM files of a small private PKI, in a temporary folder.
pub(crate) struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    pub(crate) fn new() -> Pki {
        let dir = tempfile::tempdir().expect("temporary folder");
        let write = |name: &str, pem: &str| std::fs::write(dir.path().join(name), pem).unwrap();
        let ours = ca("plumbline test CA");
        let other = ca("somebody else's CA");
        write("ca.pem", &ours.pem());
        write("other-ca.pem", &other.pem());
        let (cert, key) = leaf(&ours, &["127.0.0.1", "localhost"], false);
        write("server.pem", &cert);
        write("server.key", &key);
        let (cert, key) = leaf(&ours, &["integration"], true);
        write("client.pem", &cert);
        write("client.key", &key);
        let (cert, key) = leaf(&other, &["intruder"], true);
        write("other-client.pem", &cert);
        write("other-client.key", &key);
        Pki { dir }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap()
    }

    /// `[tls]` with the server certificate, and `client_ca` when `mtls`.
    pub(crate) fn server_tls(&self, mtls: bool) -> TlsConfig {
        TlsConfig {
            cert: Some(self.path("server.pem")),
            key: Some(self.path("server.key")),
            client_ca: mtls.then(|| self.path("ca.pem")),
        }
    }

    /// A client trusting `ca_file`, with the certificate `identity`
    /// (`"client"` or `"other-client"`) when given.
    fn client(&self, ca_file: &str, identity: Option<&str>) -> ClientTlsConfig {
        let mut tls =
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(self.read(ca_file)));
        if let Some(name) = identity {
            tls = tls.identity(Identity::from_pem(
                self.read(&format!("{name}.pem")),
                self.read(&format!("{name}.key")),
            ));
        }
        tls
    }
}

fn ca_params(name: &str) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    CertifiedIssuer::self_signed(ca_params(name), KeyPair::generate().unwrap()).unwrap()
}

/// A certificate signed by `issuer` for `names`, and its key, as PEM.
fn leaf(issuer: &CertifiedIssuer<'_, KeyPair>, names: &[&str], client: bool) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut p =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name.push(DnType::CommonName, names[0]);
    p.extended_key_usages = vec![if client {
        ExtendedKeyUsagePurpose::ClientAuth
    } else {
        ExtendedKeyUsagePurpose::ServerAuth
    }];
    let cert = p.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// A server in this process on 127.0.0.1:0 with `tls`, and its folder.
async fn start(tls: TlsConfig) -> (RunningServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        db: crate::common::test_db(dir.path(), "plumbline.sqlite"),
        sync: plumbline::config::SyncConfig::manual(),
        validation: plumbline::config::ValidationConfig::manual(),
        tls,
        web: plumbline::web::WebConfig::on_free_port(),
        ..Config::default()
    };
    (server::start(&config).await.expect("server starts"), dir)
}

/// Connects to `url` and asks health; the error as text when either fails.
async fn probe(url: String, tls: Option<ClientTlsConfig>) -> Result<(), String> {
    let mut endpoint = Endpoint::from_shared(url)
        .unwrap()
        .connect_timeout(std::time::Duration::from_secs(10))
        .timeout(std::time::Duration::from_secs(10));
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls).unwrap();
    }
    let channel = endpoint.connect().await.map_err(|e| format!("{e:?}"))?;
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map_err(|e| format!("{e:?}"))?;
    Ok(())
}

#[tokio::test]
async fn a_tls_server_answers_only_clients_that_trust_its_ca() {
    let pki = Pki::new();
    let (server, _dir) = start(pki.server_tls(false)).await;
    let url = server.url();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");

    probe(url.clone(), Some(pki.client("ca.pem", None)))
        .await
        .expect("a client that trusts the CA is answered");
    let plain = format!("http://{}", server.local_addr());
    assert!(
        probe(plain, None).await.is_err(),
        "a plaintext client must not be answered"
    );
    assert!(
        probe(url.clone(), Some(pki.client("other-ca.pem", None)))
            .await
            .is_err(),
        "a client that does not trust the server's CA must refuse it"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn mutual_tls_refuses_clients_without_a_certificate_from_the_client_ca() {
    let pki = Pki::new();
    let (server, _dir) = start(pki.server_tls(true)).await;
    let url = server.url();
    probe(url.clone(), Some(pki.client("ca.pem", Some("client"))))
        .await
        .expect("a client with a certificate from the client CA is answered");
    assert!(
        probe(url.clone(), Some(pki.client("ca.pem", None)))
            .await
            .is_err(),
        "a client without a certificate must be refused"
    );
    assert!(
        probe(
            url.clone(),
            Some(pki.client("ca.pem", Some("other-client")))
        )
        .await
        .is_err(),
        "a client with a certificate from another CA must be refused"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn unusable_tls_files_stop_the_start_with_the_file_named() {
    let pki = Pki::new();
    let mismatched = TlsConfig {
        cert: Some(pki.path("server.pem")),
        key: Some(pki.path("client.key")),
        client_ca: None,
    };
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        db: dir.path().join("plumbline.sqlite"),
        tls: mismatched,
        web: plumbline::web::WebConfig::on_free_port(),
        ..Config::default()
    };
    let err = refusal(&config).await;
    assert!(
        err.contains("does not match") && err.contains("client.key") && err.contains("server.pem"),
        "{err}"
    );

    let mut config = config;
    config.tls = TlsConfig {
        cert: Some(pki.path("server.pem")),
        key: Some(pki.path("server.key")),
        client_ca: Some(pki.path("server.key")),
    };
    let err = refusal(&config).await;
    assert!(
        err.contains("server.key") && err.contains("no PEM certificate"),
        "{err}"
    );
}

/// Why `config` does not start, with every cause.
async fn refusal(config: &Config) -> String {
    let Err(e) = server::start(config).await else {
        panic!("the server must not start");
    };
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

// ----- the binary -----

/// The binary with `args` and no client or server settings from the
/// environment.
fn plumbline(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_plumbline"));
    cmd.args(args)
        .env_remove("PLUMBLINE_SERVER")
        .env_remove("PLUMBLINE_CA_CERT")
        .env_remove("PLUMBLINE_CLIENT_CERT")
        .env_remove("PLUMBLINE_CLIENT_KEY")
        .env_remove("PLUMBLINE_INSECURE")
        .env("PLUMBLINE_SYNC__INTERVAL_SECS", "0")
        .env("PLUMBLINE_VALIDATION__INTERVAL_SECS", "0")
        .env("PLUMBLINE_WEB__LISTEN", "127.0.0.1:0");
    cmd
}

/// A `serve` child that has logged that it serves, the port it bound, and
/// its log lines up to then.
struct Served {
    child: Child,
    port: u16,
    log: Vec<String>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `serve` with `args` (JSON logs) and waits for "plumbline serving".
fn serve(args: &[&str]) -> Served {
    let mut child = plumbline(&["serve", "--log-format", "json"])
        .args(args)
        .env("PLUMBLINE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut log = Vec::new();
    let port = loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("serve ended before serving: {log:#?}"))
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        log.push(line);
        if v["fields"]["message"] == "plumbline serving" {
            let addr: std::net::SocketAddr = v["fields"]["addr"].as_str().unwrap().parse().unwrap();
            break addr.port();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Served { child, port, log }
}

/// Runs `serve` with `args`, which must end by itself: its exit status and
/// its log. A server that starts instead is stopped and fails the test.
fn refused(args: &[&str]) -> (std::process::ExitStatus, String) {
    let mut child = plumbline(&["serve"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let mut log = String::new();
    for line in std::io::BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        if line.contains("plumbline serving") {
            let _ = child.kill();
            let _ = child.wait();
            panic!("serve {args:?} started: {log}{line}");
        }
        log.push_str(&line);
        log.push('\n');
    }
    (child.wait().unwrap(), log)
}

async fn output(mut cmd: Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || cmd.output().expect("the binary runs"))
        .await
        .unwrap()
}

#[tokio::test]
async fn serve_refuses_every_address_without_auth_or_tls_unless_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.sqlite");
    let db = db.to_str().unwrap();
    let (status, err) = tokio::task::spawn_blocking({
        let db = db.to_string();
        move || refused(&["--listen", "0.0.0.0:0", "--db", &db])
    })
    .await
    .unwrap();
    assert!(!status.success(), "must not serve 0.0.0.0 in the open");
    for way in [
        "[auth] enabled = true",
        "[tls] cert",
        "--insecure",
        "0.0.0.0:0",
    ] {
        assert!(err.contains(way), "the refusal names {way}: {err}");
    }
    assert!(!Path::new(db).exists(), "refused before opening the store");

    let served = tokio::task::spawn_blocking({
        let db = db.to_string();
        move || serve(&["--listen", "0.0.0.0:0", "--db", &db, "--insecure"])
    })
    .await
    .unwrap();
    assert!(
        served
            .log
            .iter()
            .any(|l| l.contains("WARN") && l.contains("--insecure")),
        "--insecure on a non-loopback address is logged as a warning: {:#?}",
        served.log
    );
    probe(format!("http://127.0.0.1:{}", served.port), None)
        .await
        .expect("it serves");
}

#[tokio::test]
async fn serve_with_tls_listens_everywhere_and_the_cli_trusts_its_ca() {
    let pki = Pki::new();
    let config = pki.path("plumbline.toml");
    std::fs::write(
        &config,
        format!(
            "[tls]\ncert = {:?}\nkey = {:?}\n",
            pki.path("server.pem"),
            pki.path("server.key")
        ),
    )
    .unwrap();
    let db = pki.path("p.sqlite");
    let args: Vec<String> = [
        "--config",
        config.to_str().unwrap(),
        "--listen",
        "0.0.0.0:0",
        "--db",
        db.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let served = tokio::task::spawn_blocking(move || {
        serve(&args.iter().map(String::as_str).collect::<Vec<_>>())
    })
    .await
    .unwrap();
    let url = format!("https://127.0.0.1:{}", served.port);
    let ca = pki.path("ca.pem");
    let ca = ca.to_str().unwrap();

    let out = output(plumbline(&[
        "metrics",
        "--json",
        "--server",
        &url,
        "--ca-cert",
        ca,
    ]))
    .await;
    assert!(
        out.status.success(),
        "--ca-cert: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut cmd = plumbline(&["metrics", "--json", "--server", &url]);
    cmd.env("PLUMBLINE_CA_CERT", ca);
    let out = output(cmd).await;
    assert!(
        out.status.success(),
        "PLUMBLINE_CA_CERT: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = output(plumbline(&["metrics", "--json", "--server", &url])).await;
    assert!(
        !out.status.success(),
        "the system's CAs do not know the test CA"
    );
    let out = output(plumbline(&[
        "metrics",
        "--server",
        &url,
        "--ca-cert",
        pki.path("nope.pem").to_str().unwrap(),
    ]))
    .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("nope.pem") && err.contains("does not exist"),
        "{err}"
    );
}

#[tokio::test]
async fn the_cli_presents_its_client_certificate_to_a_mutual_tls_server() {
    let pki = Pki::new();
    let (server, _dir) = start(pki.server_tls(true)).await;
    let url = server.url();
    let p = |name: &str| pki.path(name).to_str().unwrap().to_string();
    let mut cmd = plumbline(&[
        "metrics",
        "--json",
        "--server",
        &url,
        "--ca-cert",
        &p("ca.pem"),
    ]);
    cmd.env("PLUMBLINE_CLIENT_CERT", p("client.pem"))
        .env("PLUMBLINE_CLIENT_KEY", p("client.key"));
    let out = output(cmd).await;
    assert!(
        out.status.success(),
        "with a client certificate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = output(plumbline(&[
        "metrics",
        "--json",
        "--server",
        &url,
        "--ca-cert",
        &p("ca.pem"),
    ]))
    .await;
    assert!(!out.status.success(), "without a client certificate");
    let out = output(plumbline(&[
        "metrics",
        "--server",
        &url,
        "--ca-cert",
        &p("ca.pem"),
        "--client-cert",
        &p("client.pem"),
    ]))
    .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--client-key"),
        "{err}"
    );
    server.shutdown().await.unwrap();
}
