//! Real components for the metric-source tests: a Prometheus server over a
//! data directory with a known history (written by `promtool tsdb
//! create-blocks-from openmetrics`, so the expected observations are
//! exact), and a PostgreSQL server made by `initdb` in a temporary folder
//! (and a second one speaking TLS with a self-signed certificate).
//! Both listen on a free loopback port, run from Debian's packages
//! (`scripts/test-deps.sh` installs them), never as system services, and
//! are stopped by pid when the last test holding them lets go (a static
//! would never be dropped, and the servers would outlive the tests).
//!
//! When the binaries are absent the tests are skipped with the reason, and
//! fail when `CI=true` ([`require`]), as the Python integration does.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use tokio::sync::Mutex;

/// The component, or the test is skipped (locally) or fails (`CI=true`).
pub fn require<T>(test: &str, found: Result<T, String>) -> Option<T> {
    match found {
        Ok(t) => Some(t),
        Err(why) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true, so {test} must run, but {why}; scripts/test-deps.sh installs it")
        }
        Err(why) => {
            eprintln!("skipped {test}: {why} (scripts/test-deps.sh installs it)");
            None
        }
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A child process stopped by pid when dropped: SIGINT first (PostgreSQL's
/// fast shutdown, Prometheus' clean one), SIGKILL after a grace period.
struct Stopped(Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        let pid = self.0.id().to_string();
        let _ = Command::new("kill").args(["-INT", &pid]).status();
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn find_binary(name: &str, dirs: &[PathBuf]) -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(dirs.iter().cloned())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| format!("{name} is not installed"))
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// The tests' "today", fixed: the fetchers take `now` as an argument, so
/// nothing depends on the clock (nor on a test running across midnight).
/// Prometheus keeps the history with a retention of 100 years.
pub fn today() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 11, 0, 0, 0).unwrap()
}

/// Midnight UTC, `days_ago` days before [`today`].
pub fn day(days_ago: i64) -> DateTime<Utc> {
    today() - chrono::Duration::days(days_ago)
}

// ---------------------------------------------------------------- Prometheus

/// The history written into Prometheus: `signups{env="test"}` at midnight
/// UTC of each of the ten days before [`today`] (value `100 + 1.5 i` on the
/// i-th, oldest first), one `signups{env="other"}` (so that `signups` alone
/// is two series), and `odd`: 1, NaN and +Inf on the three days before
/// [`today`].
pub fn signups_history() -> Vec<(DateTime<Utc>, f64)> {
    (0..10)
        .map(|i| (day(10 - i), 100.0 + 1.5 * i as f64))
        .collect()
}

pub struct Prometheus {
    _process: Stopped,
    pub base_url: String,
    pub port: u16,
    _dir: tempfile::TempDir,
}

static PROMETHEUS: Mutex<Weak<Prometheus>> = Mutex::const_new(Weak::new());

/// The shared Prometheus, started when no test holds it.
pub async fn prometheus() -> Result<Arc<Prometheus>, String> {
    let mut slot = PROMETHEUS.lock().await;
    if let Some(p) = slot.upgrade() {
        return Ok(p);
    }
    let p = Arc::new(start_prometheus().await?);
    *slot = Arc::downgrade(&p);
    Ok(p)
}

async fn start_prometheus() -> Result<Prometheus, String> {
    let prometheus = find_binary("prometheus", &[])?;
    let promtool = find_binary("promtool", &[])?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut om = String::from("# HELP signups Daily signups.\n# TYPE signups gauge\n");
    for (at, v) in signups_history() {
        om.push_str(&format!("signups{{env=\"test\"}} {v} {}\n", at.timestamp()));
    }
    om.push_str(&format!(
        "signups{{env=\"other\"}} 1 {}\n",
        day(10).timestamp()
    ));
    om.push_str("# HELP odd Odd values.\n# TYPE odd gauge\n");
    for (i, v) in ["1", "NaN", "+Inf"].iter().enumerate() {
        om.push_str(&format!("odd {v} {}\n", day(3 - i as i64).timestamp()));
    }
    om.push_str("# EOF\n");
    let history = dir.path().join("history.om");
    std::fs::write(&history, om).map_err(|e| e.to_string())?;
    let data = dir.path().join("data");
    let out = Command::new(&promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&history)
        .arg(&data)
        .output()
        .map_err(|e| format!("promtool did not run: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "promtool tsdb create-blocks-from openmetrics failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let config = dir.path().join("prometheus.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 1h\n").map_err(|e| e.to_string())?;
    let port = free_port();
    let log = dir.path().join("prometheus.log");
    let logfile = std::fs::File::create(&log).map_err(|e| e.to_string())?;
    let child = Command::new(&prometheus)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        // The history is older than the default retention of 15 days.
        .arg("--storage.tsdb.retention.time=100y")
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(logfile.try_clone().map_err(|e| e.to_string())?)
        .stderr(logfile)
        .spawn()
        .map_err(|e| format!("prometheus did not start: {e}"))?;
    let mut process = Stopped(child);
    let base_url = format!("http://127.0.0.1:{port}");
    let ready = format!("{base_url}/-/ready");
    let client = reqwest::Client::new();
    let until = Instant::now() + Duration::from_secs(90);
    loop {
        if let Ok(r) = client.get(&ready).send().await
            && r.status().is_success()
        {
            break;
        }
        if let Ok(Some(status)) = process.0.try_wait() {
            return Err(format!("prometheus exited ({status}):\n{}", tail(&log)));
        }
        if Instant::now() > until {
            return Err(format!("prometheus was not ready in 90s:\n{}", tail(&log)));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(Prometheus {
        _process: process,
        base_url,
        port,
        _dir: dir,
    })
}

/// A GET sent to `port` on loopback and its answer (status, body), by
/// hand: the auth proxy of the tests forwards with it from inside a
/// wiremock responder, which is not async.
pub fn forward_get(port: u16, path_and_query: &str) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("prometheus reachable");
    write!(
        s,
        "GET {path_and_query} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .expect("request sent");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("answer read");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP answer");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    (status, raw[split + 4..].to_vec())
}

// ---------------------------------------------------------------- PostgreSQL

/// The role the tests' DSNs log in as, with a password (scram-sha-256 over
/// TCP); it may write, so that only the read-only session stops a write.
pub const PG_USER: &str = "metrics_reader";
pub const PG_PASSWORD: &str = "pw-Zq81-not-in-any-message";
pub const PG_DATABASE: &str = "metrics";
const PG_SUPERUSER_PASSWORD: &str = "superuser-pw-71x";

pub struct Postgres {
    _process: Stopped,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Postgres {
    /// A DSN of the reader with `password`.
    pub fn dsn_with(&self, password: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={PG_USER} password={password} dbname={PG_DATABASE} connect_timeout=10",
            self.port
        )
    }

    pub fn dsn(&self) -> String {
        self.dsn_with(PG_PASSWORD)
    }

    /// A connection of the reader (the database's owner, so its tables'
    /// too) for setting up, without the read-only session of the source.
    pub async fn owner(&self) -> tokio_postgres::Client {
        connect(self.port, PG_USER, PG_PASSWORD, PG_DATABASE)
            .await
            .expect("the tests' role connects")
    }
}

async fn connect(
    port: u16,
    user: &str,
    password: &str,
    db: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={port} user={user} password={password} dbname={db}"),
        tokio_postgres::NoTls,
    )
    .await?;
    tokio::spawn(conn);
    Ok(client)
}

static POSTGRES: Mutex<Weak<Postgres>> = Mutex::const_new(Weak::new());
static POSTGRES_TLS: Mutex<Weak<Postgres>> = Mutex::const_new(Weak::new());

/// The shared PostgreSQL, started when no test holds it.
pub async fn postgres() -> Result<Arc<Postgres>, String> {
    shared_postgres(&POSTGRES, false).await
}

/// A second one that speaks TLS with a self-signed certificate for
/// 127.0.0.1, which no system root signs.
pub async fn postgres_tls() -> Result<Arc<Postgres>, String> {
    shared_postgres(&POSTGRES_TLS, true).await
}

async fn shared_postgres(slot: &Mutex<Weak<Postgres>>, tls: bool) -> Result<Arc<Postgres>, String> {
    let mut slot = slot.lock().await;
    if let Some(p) = slot.upgrade() {
        return Ok(p);
    }
    let p = Arc::new(start_postgres(tls).await?);
    *slot = Arc::downgrade(&p);
    Ok(p)
}

/// Debian's server binaries, newest version first.
fn pg_bin_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| rd.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    dirs.sort();
    dirs.reverse();
    dirs
}

/// `cmd` as an unprivileged user when we are root: initdb and postgres
/// refuse to run as root. `nobody` exists on every Debian system.
fn unprivileged(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
            .arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

async fn start_postgres(tls: bool) -> Result<Postgres, String> {
    let dirs = pg_bin_dirs();
    let initdb = find_binary("initdb", &dirs)?;
    let server = initdb.with_file_name("postgres");
    if !server.is_file() {
        return Err(format!("{} is missing", server.display()));
    }
    // Short, under /tmp: the socket path must fit 107 bytes, and nobody
    // must be able to reach it.
    let dir = tempfile::Builder::new()
        .prefix("plumbline-pg")
        .tempdir_in("/tmp")
        .map_err(|e| e.to_string())?;
    let pwfile = dir.path().join("pw");
    std::fs::write(&pwfile, PG_SUPERUSER_PASSWORD).map_err(|e| e.to_string())?;
    let (cert, key) = (dir.path().join("server.crt"), dir.path().join("server.key"));
    if tls {
        let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()])
            .map_err(|e| e.to_string())?;
        std::fs::write(&cert, made.cert.pem()).map_err(|e| e.to_string())?;
        std::fs::write(&key, made.signing_key.serialize_pem()).map_err(|e| e.to_string())?;
        // PostgreSQL refuses a key others may read.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| e.to_string())?;
    }
    if is_root() {
        let mut owned = vec![dir.path().to_path_buf(), pwfile.clone()];
        if tls {
            owned.extend([cert.clone(), key.clone()]);
        }
        for p in &owned {
            let ok = Command::new("chown")
                .args(["nobody:nogroup"])
                .arg(p)
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if !ok {
                return Err(format!("could not give {} to nobody", p.display()));
            }
        }
    }
    let data = dir.path().join("data");
    let out = unprivileged(&initdb)
        .arg("-D")
        .arg(&data)
        .args([
            "-U",
            "postgres",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        ])
        .arg(format!("--pwfile={}", pwfile.display()))
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .map_err(|e| format!("initdb did not run: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let port = free_port();
    let log = dir.path().join("postgres.log");
    let logfile = std::fs::File::create(&log).map_err(|e| e.to_string())?;
    let child = unprivileged(&server)
        .arg("-D")
        .arg(&data)
        .arg("-k")
        .arg(dir.path())
        .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
        .args(["-c", "fsync=off"])
        .args(if tls {
            vec![
                "-c".to_string(),
                "ssl=on".to_string(),
                "-c".to_string(),
                format!("ssl_cert_file={}", cert.display()),
                "-c".to_string(),
                format!("ssl_key_file={}", key.display()),
            ]
        } else {
            Vec::new()
        })
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .stdin(Stdio::null())
        .stdout(logfile.try_clone().map_err(|e| e.to_string())?)
        .stderr(logfile)
        .spawn()
        .map_err(|e| format!("postgres did not start: {e}"))?;
    let mut process = Stopped(child);
    let until = Instant::now() + Duration::from_secs(60);
    let admin = loop {
        match connect(port, "postgres", PG_SUPERUSER_PASSWORD, "postgres").await {
            Ok(c) => break c,
            Err(_) if Instant::now() < until => {}
            Err(e) => {
                return Err(format!(
                    "postgres was not ready in 60s: {e}\n{}",
                    tail(&log)
                ));
            }
        }
        if let Ok(Some(status)) = process.0.try_wait() {
            return Err(format!("postgres exited ({status}):\n{}", tail(&log)));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // One statement each: CREATE DATABASE cannot run in the implicit
    // transaction of a multi-statement query.
    for statement in [
        format!("CREATE ROLE {PG_USER} LOGIN PASSWORD '{PG_PASSWORD}'"),
        format!("CREATE DATABASE {PG_DATABASE} OWNER {PG_USER}"),
    ] {
        admin
            .batch_execute(&statement)
            .await
            .map_err(|e| format!("setting up the database failed: {e:?}"))?;
    }
    Ok(Postgres {
        _process: process,
        port,
        _dir: dir,
    })
}

// ------------------------------------------------- the stores side by side

/// A PostgreSQL store on a schema of its own of the shared server (the
/// tests' role owns the database, so it may create schemas, not
/// databases: a fresh schema is what a fresh database is to the store),
/// and a SQLite store in a temporary folder, the specification; with a
/// plain connection to each database for what the calls under test do not
/// write.
pub struct StorePair {
    pub pg: plumbline::store::PostgresStore,
    pub lite: plumbline::store::SqliteStore,
    /// The owner's connection, its `search_path` on the schema.
    pub raw_pg: tokio_postgres::Client,
    pub lite_path: PathBuf,
    _dir: tempfile::TempDir,
    _server: Arc<Postgres>,
}

/// A [`StorePair`] on a new schema named after `prefix`; `None` (with the
/// reason) where PostgreSQL cannot run, see [`require`].
pub async fn store_pair(test: &str, prefix: &str) -> Option<StorePair> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static SCHEMAS: AtomicU32 = AtomicU32::new(0);
    let server = require(test, postgres().await)?;
    let schema = format!(
        "{prefix}_{}_{}",
        std::process::id(),
        SCHEMAS.fetch_add(1, Ordering::Relaxed)
    );
    let raw_pg = server.owner().await;
    raw_pg
        .batch_execute(&format!(
            "CREATE SCHEMA {schema}; SET search_path TO {schema}"
        ))
        .await
        .expect("the schema is created");
    let dsn = format!("{} options='-c search_path={schema}'", server.dsn());
    let pg =
        plumbline::store::PostgresStore::open_dsn(&dsn, &plumbline::config::StoreConfig::default())
            .await
            .expect("the PostgreSQL store opens");
    // A database made with a language's locale orders text by its rules
    // ("a-team" before "B2B"); SQLite orders bytewise ("B2B" first). The
    // tests' server has no locale, so every text column of the schema is
    // given the ICU root collation, and the answers must still come in
    // SQLite's order.
    let columns = raw_pg
        .query(
            "SELECT table_name::text, column_name::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND data_type = 'text'",
            &[],
        )
        .await
        .expect("the columns are listed");
    for c in columns {
        let (table, column): (String, String) = (c.get(0), c.get(1));
        raw_pg
            .batch_execute(&format!(
                "ALTER TABLE {table} ALTER COLUMN {column} TYPE text COLLATE \"und-x-icu\""
            ))
            .await
            .expect("the collation is set");
    }
    let dir = tempfile::tempdir().expect("a temporary folder");
    let lite_path = dir.path().join("spec.sqlite");
    let lite = plumbline::store::SqliteStore::open(&lite_path)
        .await
        .expect("the SQLite store opens");
    Some(StorePair {
        pg,
        lite,
        raw_pg,
        lite_path,
        _dir: dir,
        _server: server,
    })
}
