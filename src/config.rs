//! One configuration, merged from (lowest to highest precedence) built-in
//! defaults, a TOML file, `PLUMBLINE_*` environment variables and flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

pub use crate::limits::LimitsConfig;

/// Settings of the sidecar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address the gRPC server listens on.
    pub listen: SocketAddr,
    /// Path of the SQLite database file (created if missing), or a
    /// `postgres://` DSN, which selects the PostgreSQL backend (see
    /// `[store] url_env` to keep the password out of the command line).
    pub db: PathBuf,
    /// Size used for items without an estimate (> 0).
    pub default_size: f64,
    /// Which storage backend holds the data (`[store]` in the file).
    #[serde(default)]
    pub store: StoreConfig,
    /// Tracker sync settings (`[sync]` in the file).
    #[serde(default)]
    pub sync: SyncConfig,
    /// Value validation settings (`[validation]` in the file).
    #[serde(default)]
    pub validation: ValidationConfig,
    /// TLS on the gRPC listener (`[tls]` in the file).
    #[serde(default)]
    pub tls: TlsConfig,
    /// Who may call (`[auth]` in the file).
    #[serde(default)]
    pub auth: crate::auth::AuthConfig,
    /// Listen on a non-loopback address with neither auth nor TLS (behind a
    /// proxy or mesh that provides both); `serve --insecure`.
    #[serde(default)]
    pub insecure: bool,
    /// Which secrets and hosts sources may use (`[outbound]` in the file).
    #[serde(default)]
    pub outbound: OutboundConfig,
    /// What one client may consume (`[limits]` in the file).
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Pulls of metric sources (`[pulls]` in the file).
    #[serde(default)]
    pub pulls: PullsConfig,
    /// The web view (`[web]` in the file).
    #[serde(default)]
    pub web: crate::web::WebConfig,
    /// Ranking snapshots (`[history]` in the file).
    #[serde(default)]
    pub history: crate::history::HistoryConfig,
    /// How demand is flagged (`[insights]` in the file).
    #[serde(default)]
    pub insights: InsightsConfig,
}

/// How the ranking flags demand (issue 21).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InsightsConfig {
    /// Distinct customers from which an item linked to no hypothesis is
    /// flagged "asked for, not aligned" (at least 1).
    pub asked_for_customers: u32,
}

impl Default for InsightsConfig {
    fn default() -> Self {
        InsightsConfig {
            asked_for_customers: crate::engine::DEFAULT_ASKED_FOR_CUSTOMERS,
        }
    }
}

/// Pulls of metric sources: the background scheduler and what a source may
/// read on the server itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PullsConfig {
    /// Seconds between looks for metrics whose poll interval has passed;
    /// 0 turns background pulls off (PullMetric still pulls).
    pub tick_secs: u64,
    /// Pulls running at once in the background.
    pub concurrency: usize,
    /// The directory local CSV files of csv sources may be read from (and
    /// below); unset: csv sources take only http(s) URLs.
    pub csv_dir: Option<PathBuf>,
}

impl Default for PullsConfig {
    fn default() -> Self {
        PullsConfig {
            tick_secs: 30,
            concurrency: 4,
            csv_dir: None,
        }
    }
}

impl PullsConfig {
    /// No background pulls: for tests and the demo.
    pub fn manual() -> Self {
        PullsConfig {
            tick_secs: 0,
            ..PullsConfig::default()
        }
    }
}

/// The outbound policy: what the operator lets sources use. It lives here,
/// in the server's configuration, and not in the API: a caller who may
/// create sources must not be able to send any environment variable to any
/// host. See [`crate::outbound`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundConfig {
    /// A source's `token_env` may name a variable starting with this prefix
    /// (empty: none by prefix, only `token_envs`). The config loader never
    /// reads such variables as settings, even when the prefix starts with
    /// `PLUMBLINE_`.
    pub token_env_prefix: String,
    /// Further variable names a source's `token_env` may name, exactly.
    pub token_envs: Vec<String>,
    /// Host names, IP addresses and CIDR ranges (`10.0.0.0/8`) sources may
    /// reach although they are private, loopback, link-local or otherwise
    /// not public; without them only public addresses are reached.
    pub allow_hosts: Vec<String>,
}

impl Default for OutboundConfig {
    fn default() -> Self {
        OutboundConfig {
            token_env_prefix: DEFAULT_TOKEN_ENV_PREFIX.into(),
            token_envs: Vec::new(),
            allow_hosts: Vec::new(),
        }
    }
}

/// The default of `outbound.token_env_prefix`.
pub const DEFAULT_TOKEN_ENV_PREFIX: &str = "PLUMBLINE_SECRET_";

/// Variables of the `PLUMBLINE_` family that are not settings of the
/// server, without the prefix: the CLI's own (its server, API token and TLS
/// client files; `PLUMBLINE_LOG*` are skipped apart).
const NOT_SETTINGS: [&str; 6] = [
    "server",
    "token",
    "token_file",
    "ca_cert",
    "client_cert",
    "client_key",
];

/// Whether `name` is one of the CLI's own variables ([`NOT_SETTINGS`],
/// `PLUMBLINE_LOG*`), which hold the CLI's API token and keys: never a
/// source's token.
pub fn is_cli_variable(name: &str) -> bool {
    name.strip_prefix("PLUMBLINE_").is_some_and(|rest| {
        let k = rest.to_ascii_lowercase();
        NOT_SETTINGS.contains(&k.as_str()) || k.starts_with("log")
    })
}

pub use crate::tls::TlsConfig;

/// Where the data lives and what a write's acknowledgement promises.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// The storage backend: `sqlite` (the file at `db`, the default) or
    /// `postgres`, which a `postgres://` `db` or `url_env` selects.
    pub backend: StoreBackend,
    /// The name of an environment variable holding the PostgreSQL DSN
    /// (`postgres://user:password@host:port/db`), so that the password
    /// shows in no process list, configuration file or log. Selects the
    /// PostgreSQL backend; `db` is then not read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url_env: Option<String>,
    /// PostgreSQL: connections each sidecar keeps open, at most.
    pub max_connections: usize,
    /// PostgreSQL: how often a sidecar reads the change log when no
    /// notification woke it (a lost NOTIFY, an engine without LISTEN), in
    /// milliseconds.
    pub follow_poll_ms: u64,
    /// PostgreSQL: how long a sidecar's hold on a kind of background work
    /// (a source's sync, a metric's pull, validation, snapshots) lasts
    /// without renewal, in seconds: when it dies, another sidecar takes the
    /// work over within about this long.
    pub lease_secs: u64,
    /// When an acknowledged write is on disk. `normal` (the default): a
    /// process crash loses nothing acknowledged, a power cut or OS crash
    /// may lose the last transactions (never corrupts the file); `full`
    /// also survives those, at the cost of an fsync per write.
    pub synchronous: Synchronous,
    /// How long a write waits for another process's lock on the database
    /// before failing with UNAVAILABLE, in milliseconds.
    pub busy_timeout_ms: u64,
    /// Largest size the database file may grow to, in MiB; 0 for no limit.
    /// A write past it fails with RESOURCE_EXHAUSTED, as on a full disk.
    pub max_size_mib: u64,
    /// How often the database file is checked (still the file that was
    /// opened; writable again after a failure), in milliseconds.
    pub check_interval_ms: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: StoreBackend::default(),
            url_env: None,
            max_connections: 8,
            follow_poll_ms: 1000,
            lease_secs: 30,
            synchronous: Synchronous::default(),
            busy_timeout_ms: 5000,
            max_size_mib: 0,
            check_interval_ms: 5000,
        }
    }
}

/// SQLite's `synchronous` setting, in WAL mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// fsync at checkpoints only: durable across a process crash; a power
    /// cut or OS crash may lose the transactions the OS had not yet written
    /// out (typically the last seconds), never corrupts the file. The
    /// default: a write costs no fsync, and tracker items come back with
    /// the next sync.
    #[default]
    Normal,
    /// fsync the WAL at every commit: durable across a power cut too.
    Full,
}

/// A storage backend, by its name in the configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// The embedded SQLite file at `db`.
    #[default]
    Sqlite,
    /// A PostgreSQL database, shared by any number of sidecars.
    Postgres,
}

/// When and how releases are validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValidationConfig {
    /// Seconds between automatic validations of releases whose after-window
    /// has closed; 0 turns them off.
    pub interval_secs: u64,
    /// Days of observations before a release that count.
    pub before_days: i64,
    /// Days after a release before it is validated.
    pub after_days: i64,
    /// Releases closer than this many days share one step (confounded).
    pub min_separation_days: i64,
    /// Observations needed on each side of a step.
    pub min_points: usize,
}

impl Default for ValidationConfig {
    fn default() -> Self {
        ValidationConfig {
            interval_secs: 3600,
            // Six weeks a side: six points of a weekly metric, so that the
            // noise can be estimated and a step told from it (README).
            before_days: 42,
            after_days: 42,
            min_separation_days: 3,
            min_points: 3,
        }
    }
}

impl ValidationConfig {
    /// No automatic runs: for tests and the demo.
    pub fn manual() -> Self {
        ValidationConfig {
            interval_secs: 0,
            ..ValidationConfig::default()
        }
    }

    pub fn windows(&self) -> crate::refine::validate::Windows {
        crate::refine::validate::Windows {
            before: chrono::Duration::days(self.before_days.max(0)),
            after: chrono::Duration::days(self.after_days.max(0)),
            min_separation: chrono::Duration::days(self.min_separation_days.max(0)),
            min_points: self.min_points.max(1),
        }
    }
}

/// How the sidecar talks to trackers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncConfig {
    /// Seconds between background syncs of every source; 0 turns them off.
    pub interval_secs: u64,
    /// Seconds (of the server's uptime) between background syncs of a
    /// source that are full rather than incremental; 0 never. An
    /// incremental sync sees only issues whose update time moved; a full
    /// one also sees what changed without moving it (GitHub's reaction
    /// counts) and what the tracker no longer returns.
    pub full_interval_secs: u64,
    /// Timeout of one HTTP request, in seconds.
    pub timeout_secs: u64,
    /// Retries of a request after a transient failure.
    pub max_retries: u32,
    /// First backoff step in milliseconds (doubles per retry, with jitter).
    pub backoff_ms: u64,
    /// Longest wait for a rate limit before a sync gives up, in seconds.
    pub max_wait_secs: u64,
    /// Rate-limit answers to one request waited out before a sync
    /// gives up.
    pub max_rate_limit_waits: u32,
    /// Shortest wait after a rate-limit answer, in milliseconds, even when
    /// the tracker says `Retry-After: 0`.
    pub min_rate_limit_delay_ms: u64,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            interval_secs: 900,
            full_interval_secs: 86_400,
            timeout_secs: 30,
            max_retries: 5,
            backoff_ms: 500,
            max_wait_secs: 900,
            max_rate_limit_waits: 10,
            min_rate_limit_delay_ms: 1000,
        }
    }
}

impl SyncConfig {
    /// No background sync and quick retries: for tests and the demo.
    pub fn manual() -> Self {
        SyncConfig {
            interval_secs: 0,
            backoff_ms: 10,
            min_rate_limit_delay_ms: 10,
            ..SyncConfig::default()
        }
    }

    pub fn http_options(&self) -> crate::sync::http::HttpOptions {
        use std::time::Duration;
        crate::sync::http::HttpOptions {
            timeout: Duration::from_secs(self.timeout_secs.max(1)),
            max_retries: self.max_retries,
            backoff_base: Duration::from_millis(self.backoff_ms),
            max_backoff: Duration::from_secs(30),
            max_rate_limit_wait: Duration::from_secs(self.max_wait_secs),
            max_rate_limit_waits: self.max_rate_limit_waits,
            min_rate_limit_delay: Duration::from_millis(self.min_rate_limit_delay_ms),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            db: PathBuf::from("plumbline.sqlite"),
            default_size: 3.0,
            store: StoreConfig::default(),
            sync: SyncConfig::default(),
            validation: ValidationConfig::default(),
            tls: TlsConfig::default(),
            auth: Default::default(),
            insecure: false,
            outbound: OutboundConfig::default(),
            limits: LimitsConfig::default(),
            pulls: PullsConfig::default(),
            web: Default::default(),
            insights: InsightsConfig::default(),
            history: Default::default(),
        }
    }
}

/// Values given as flags; `None` leaves the lower layers' value.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_size: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insecure: Option<bool>,
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Merges the layers. `file`, when given, must exist.
    pub fn load(file: Option<&Path>, overrides: Overrides) -> Result<Config, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(f) = file {
            if !f.exists() {
                return Err(ConfigError::MissingFile(f.to_path_buf()));
            }
            fig = fig.merge(Toml::file(f));
        }
        // Nested keys use a double underscore: PLUMBLINE_SYNC__INTERVAL_SECS.
        // The CLI's variables and token variables are not settings; which
        // names are token variables is itself a setting, so it is read
        // first with the default prefix skipped, then everything with the
        // configured names skipped too.
        let outbound: OutboundConfig = fig
            .clone()
            .merge(settings_env(&OutboundConfig::default(), None))
            .extract_inner("outbound")
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let store: StoreConfig = fig
            .clone()
            .merge(settings_env(&outbound, None))
            .extract_inner("store")
            .unwrap_or_default();
        let mut cfg: Config = fig
            .merge(settings_env(&outbound, store.url_env.as_deref()))
            .merge(Serialized::defaults(overrides))
            .extract()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        crate::outbound::OutboundPolicy::new(&cfg.outbound)
            .map_err(|e| ConfigError::Invalid(format!("outbound: {e}")))?;
        if !crate::domain::is_valid_estimate(cfg.default_size) {
            return Err(ConfigError::Invalid(format!(
                "default_size must be a number from {} to {}, got {}",
                crate::domain::MIN_ESTIMATE,
                crate::domain::MAX_ESTIMATE,
                cfg.default_size
            )));
        }
        cfg.store.backend = store_backend(&cfg)?;
        if let Some(name) = &cfg.store.url_env {
            // A variable a source may name as its tracker token would let
            // an admin send the database's password to a tracker.
            let prefix = &cfg.outbound.token_env_prefix;
            if (!prefix.is_empty() && name.starts_with(prefix.as_str()))
                || cfg.outbound.token_envs.iter().any(|t| t == name)
            {
                return Err(ConfigError::Invalid(format!(
                    "store.url_env names {name}, a variable sources may use as a tracker token \
                     ([outbound] token_env_prefix / token_envs); hold the DSN in a variable of \
                     its own, e.g. PLUMBLINE_DATABASE_URL"
                )));
            }
        }
        cfg.postgres_dsn()?;
        if !(1..=3600).contains(&cfg.store.lease_secs) {
            return Err(ConfigError::Invalid(format!(
                "store.lease_secs must be from 1 to 3600, got {}",
                cfg.store.lease_secs
            )));
        }
        if !(10..=60_000).contains(&cfg.store.follow_poll_ms) {
            return Err(ConfigError::Invalid(format!(
                "store.follow_poll_ms must be from 10 to 60000, got {}",
                cfg.store.follow_poll_ms
            )));
        }
        // Two at least: a write holds one for its turn and needs another.
        if cfg.store.max_connections < 2 || cfg.store.max_connections > 256 {
            return Err(ConfigError::Invalid(format!(
                "store.max_connections must be from 2 to 256, got {}",
                cfg.store.max_connections
            )));
        }
        cfg.tls
            .check()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        cfg.history.check().map_err(ConfigError::Invalid)?;
        Ok(cfg)
    }
}

/// Whether `db` names a PostgreSQL database (`postgres://` or
/// `postgresql://`, the schemes libpq takes).
pub fn is_postgres_url(db: &Path) -> bool {
    let text = db.to_string_lossy();
    ["postgres://", "postgresql://"].iter().any(|p| {
        text.get(..p.len())
            .is_some_and(|h| h.eq_ignore_ascii_case(p))
    })
}

/// The backend the settings select. `db` is the path of a SQLite file or a
/// `postgres://` DSN; any other URL (`mysql://`, `sqlite://...`) is refused:
/// taken as a path, it would create a file in a folder named after the
/// scheme, and two servers given the same URL would silently share it.
/// Messages show only the scheme or the variable's name: a DSN may hold a
/// password.
fn store_backend(cfg: &Config) -> Result<StoreBackend, ConfigError> {
    if let Some(name) = &cfg.store.url_env {
        if name.trim().is_empty() {
            return Err(ConfigError::Invalid(
                "store.url_env must name an environment variable (e.g. PLUMBLINE_DATABASE_URL)"
                    .into(),
            ));
        }
        return Ok(StoreBackend::Postgres);
    }
    if is_postgres_url(&cfg.db) {
        return Ok(StoreBackend::Postgres);
    }
    if cfg.store.backend == StoreBackend::Postgres {
        return Err(ConfigError::Invalid(
            "store.backend = \"postgres\" needs the database's DSN: db = \"postgres://...\" or \
             store.url_env naming the variable that holds it"
                .into(),
        ));
    }
    check_db_path(&cfg.db)?;
    Ok(StoreBackend::Sqlite)
}

fn check_db_path(db: &Path) -> Result<(), ConfigError> {
    let text = db.to_string_lossy();
    if text.trim().is_empty() {
        return Err(ConfigError::Invalid(
            "db must be the path of the SQLite file (e.g. plumbline.sqlite) or a postgres:// DSN"
                .into(),
        ));
    }
    if let Some((scheme, _)) = text.split_once("://") {
        let is_scheme = scheme
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        if is_scheme {
            return Err(ConfigError::Invalid(format!(
                "db is a {scheme}:// URL: plumbline stores its data in an embedded SQLite file \
                 (give the file's path, e.g. --db /var/lib/plumbline/plumbline.sqlite) or in \
                 PostgreSQL (a postgres:// DSN)"
            )));
        }
    }
    Ok(())
}

impl Config {
    /// The backend these settings select: PostgreSQL when `store.url_env`
    /// is set, `db` is a `postgres://` URL, or `store.backend` says so
    /// (a configuration built in code need not set `store.backend`).
    pub fn backend(&self) -> StoreBackend {
        if self.store.url_env.is_some() || is_postgres_url(&self.db) {
            StoreBackend::Postgres
        } else {
            self.store.backend
        }
    }

    /// The PostgreSQL DSN the settings name (from `store.url_env`'s
    /// variable, else `db`), `None` for SQLite. The error names the
    /// variable, never its value.
    pub fn postgres_dsn(&self) -> Result<Option<String>, ConfigError> {
        if self.backend() != StoreBackend::Postgres {
            return Ok(None);
        }
        let Some(name) = &self.store.url_env else {
            return Ok(Some(self.db.to_string_lossy().into_owned()));
        };
        match std::env::var(name) {
            Ok(v) if is_postgres_url(Path::new(&v)) => Ok(Some(v)),
            Ok(v) if v.trim().is_empty() => Err(ConfigError::Invalid(format!(
                "store.url_env names {name}, which is empty; set it to the database's postgres:// DSN"
            ))),
            Ok(_) => Err(ConfigError::Invalid(format!(
                "{name} (store.url_env) does not hold a postgres:// or postgresql:// DSN"
            ))),
            Err(_) => Err(ConfigError::Invalid(format!(
                "store.url_env names {name}, which is not set; set it to the database's postgres:// DSN"
            ))),
        }
    }

    /// Where the data is, for logs and messages: the SQLite path, or the
    /// PostgreSQL host, port, user and database without the password.
    pub fn db_display(&self) -> String {
        match self.postgres_dsn() {
            Ok(Some(dsn)) => redact_dsn(&dsn),
            Ok(None) => self.db.display().to_string(),
            Err(_) => "(PostgreSQL, DSN not readable)".into(),
        }
    }
}

/// A DSN as it may be shown: user, hosts, ports and database, never the
/// password or other parameters.
pub fn redact_dsn(dsn: &str) -> String {
    use std::str::FromStr;
    let dsn = match dsn.split_once("://") {
        Some((scheme, rest)) => format!("{}://{rest}", scheme.to_ascii_lowercase()),
        None => dsn.to_string(),
    };
    let Ok(c) = tokio_postgres::Config::from_str(&dsn) else {
        return "postgres://(a DSN that does not parse)".into();
    };
    let hosts: Vec<String> = c
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let host = match h {
                tokio_postgres::config::Host::Tcp(n) => n.clone(),
                #[cfg(unix)]
                tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
            };
            match c.get_ports().get(i).or(c.get_ports().first()) {
                Some(port) => format!("{host}:{port}"),
                None => host,
            }
        })
        .collect();
    format!(
        "postgres://{}@{}/{}",
        c.get_user().unwrap_or(""),
        hosts.join(","),
        c.get_dbname().unwrap_or("")
    )
}

/// The `PLUMBLINE_*` variables read as settings: all but the CLI's own and
/// the token variables `outbound` (and the default policy) lets sources
/// name, so that exporting a tracker token or the CLI's API token never
/// breaks `serve` as an unknown setting. Any other unknown name (a typo)
/// is still refused.
fn settings_env(outbound: &OutboundConfig, dsn_env: Option<&str>) -> Env {
    const FAMILY: &str = "PLUMBLINE_";
    // Keys are matched without the family prefix, in lower case.
    let strip = |name: &str| {
        name.strip_prefix(FAMILY)
            .filter(|rest| !rest.is_empty())
            .map(str::to_ascii_lowercase)
    };
    let secret_prefixes: Vec<String> = [DEFAULT_TOKEN_ENV_PREFIX, &outbound.token_env_prefix]
        .into_iter()
        .filter_map(strip)
        .collect();
    let secret_names: Vec<String> = outbound
        .token_envs
        .iter()
        .map(String::as_str)
        .chain(dsn_env)
        .filter_map(strip)
        .collect();
    Env::prefixed(FAMILY)
        .filter(move |key| {
            let k = key.as_str().to_ascii_lowercase();
            let cli = NOT_SETTINGS.contains(&k.as_str()) || k.starts_with("log");
            let secret = secret_prefixes.iter().any(|p| k.starts_with(p.as_str()))
                || secret_names.contains(&k);
            !(cli || secret)
        })
        .split("__")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_or_an_empty_path_is_not_a_database_file() {
        for (db, says) in [
            ("postgres://me:s3cret-pw@127.0.0.1:5432/plb", "postgres://"),
            ("postgresql://db.internal/plb", "postgresql://"),
            ("sqlite:///tmp/x.sqlite", "sqlite://"),
            ("", "path of the SQLite file"),
        ] {
            let e = check_db_path(Path::new(db)).expect_err(db).to_string();
            assert!(e.contains(says), "{db}: {e}");
            assert!(!e.contains("s3cret"), "{e}");
        }
        for ok in ["plumbline.sqlite", "/var/lib/p/x.sqlite", "./a:b/c.sqlite"] {
            check_db_path(Path::new(ok)).expect(ok);
        }
    }

    /// [`Config::load`] with the environment held still: figment's `Jail`
    /// takes a lock while a test changes the process environment, so this
    /// load never sees another test's variables.
    #[allow(clippy::result_large_err)]
    fn load(file: Option<&Path>, overrides: Overrides) -> Result<Config, ConfigError> {
        let mut out = None;
        figment::Jail::expect_with(|_| {
            out = Some(Config::load(file, overrides));
            Ok(())
        });
        out.expect("the jail ran the load")
    }

    #[test]
    fn flags_beat_file_which_beats_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.toml");
        std::fs::write(&f, "db = \"/tmp/x.sqlite\"\ndefault_size = 5.0\n").unwrap();
        let cfg = load(
            Some(&f),
            Overrides {
                default_size: Some(2.0),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(cfg.db, PathBuf::from("/tmp/x.sqlite"));
        assert_eq!(cfg.default_size, 2.0);
        assert_eq!(cfg.listen, Config::default().listen);
    }

    #[test]
    // figment's Jail closure returns figment's own (large) error type.
    #[allow(clippy::result_large_err)]
    fn sync_settings_come_from_file_and_env() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.toml");
        std::fs::write(&f, "[sync]\ninterval_secs = 60\n").unwrap();
        let cfg = load(Some(&f), Overrides::default()).unwrap();
        assert_eq!(cfg.sync.interval_secs, 60);
        assert_eq!(cfg.sync.max_retries, SyncConfig::default().max_retries);
        figment::Jail::expect_with(|jail| {
            jail.set_env("PLUMBLINE_SYNC__MAX_RETRIES", "2");
            jail.set_env("PLUMBLINE_SERVER", "http://elsewhere:1");
            let cfg = Config::load(None, Overrides::default()).unwrap();
            assert_eq!(cfg.sync.max_retries, 2);
            Ok(())
        });
    }

    #[test]
    fn bad_config_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.toml");
        std::fs::write(&f, "colour = \"blue\"\n").unwrap();
        let err = load(Some(&f), Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("colour"), "{err}");
        let err = load(Some(&dir.path().join("nope.toml")), Overrides::default()).unwrap_err();
        assert!(matches!(err, ConfigError::MissingFile(_)));
        let err = load(
            None,
            Overrides {
                default_size: Some(0.0),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("default_size"));
        std::fs::write(&f, "[history]\ntop_n = 5000\n").unwrap();
        let err = load(Some(&f), Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("history.top_n"), "{err}");
    }

    #[test]
    // figment's Jail closure returns figment's own (large) error type.
    #[allow(clippy::result_large_err)]
    fn store_durability_and_limits_come_from_file_and_env() {
        let d = StoreConfig::default();
        assert_eq!(d.synchronous, Synchronous::Normal);
        assert_eq!((d.busy_timeout_ms, d.max_size_mib), (5000, 0));
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.toml");
        std::fs::write(
            &f,
            "[store]\nsynchronous = \"full\"\nbusy_timeout_ms = 200\n",
        )
        .unwrap();
        let cfg = load(Some(&f), Overrides::default()).unwrap();
        assert_eq!(cfg.store.synchronous, Synchronous::Full);
        assert_eq!(cfg.store.busy_timeout_ms, 200);
        assert_eq!(cfg.store.check_interval_ms, d.check_interval_ms);
        figment::Jail::expect_with(|jail| {
            jail.set_env("PLUMBLINE_STORE__MAX_SIZE_MIB", "64");
            let cfg = Config::load(None, Overrides::default()).unwrap();
            assert_eq!(cfg.store.max_size_mib, 64);
            Ok(())
        });
        std::fs::write(&f, "[store]\nsynchronous = \"off\"\n").unwrap();
        let err = load(Some(&f), Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("off") && err.contains("full"), "{err}");
    }

    #[test]
    // figment's Jail closure returns figment's own (large) error type.
    #[allow(clippy::result_large_err)]
    fn tls_needs_cert_and_key_and_the_client_tls_env_is_not_a_setting() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.toml");
        std::fs::write(&f, "[tls]\ncert = \"/etc/plumbline/cert.pem\"\n").unwrap();
        let err = load(Some(&f), Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("cert is set but key is not"), "{err}");
        std::fs::write(
            &f,
            "[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\nclient_ca = \"ca.pem\"\n",
        )
        .unwrap();
        let cfg = load(Some(&f), Overrides::default()).unwrap();
        assert!(cfg.tls.enabled());
        assert_eq!(cfg.tls.client_ca, Some(PathBuf::from("ca.pem")));
        assert!(!Config::default().tls.enabled());
        assert!(!Config::default().auth.enabled);
        assert!(!Config::default().insecure);
        figment::Jail::expect_with(|jail| {
            jail.set_env("PLUMBLINE_CA_CERT", "/tmp/ca.pem");
            jail.set_env("PLUMBLINE_CLIENT_CERT", "/tmp/c.pem");
            jail.set_env("PLUMBLINE_CLIENT_KEY", "/tmp/k.pem");
            let cfg = Config::load(None, Overrides::default()).unwrap();
            assert!(!cfg.tls.enabled());
            Ok(())
        });
    }

    #[test]
    // figment's Jail closure returns figment's own (large) error type.
    #[allow(clippy::result_large_err)]
    fn auth_is_off_by_default_and_the_client_token_is_no_setting() {
        assert!(!Config::default().auth.enabled);
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.toml");
        std::fs::write(&f, "[auth]\nenabled = true\nreflection = \"off\"\n").unwrap();
        let cfg = load(Some(&f), Overrides::default()).unwrap();
        assert!(cfg.auth.enabled);
        assert_eq!(cfg.auth.reflection, crate::auth::ReflectionAccess::Off);
        figment::Jail::expect_with(|jail| {
            // A client's credentials in the server's environment are not
            // unknown settings (the config refuses those).
            jail.set_env("PLUMBLINE_TOKEN", "plb_x_y");
            jail.set_env("PLUMBLINE_TOKEN_FILE", "/tmp/t");
            jail.set_env("PLUMBLINE_AUTH__ENABLED", "true");
            let cfg = Config::load(None, Overrides::default()).unwrap();
            assert!(cfg.auth.enabled);
            assert_eq!(cfg.auth.reflection, crate::auth::ReflectionAccess::Read);
            Ok(())
        });
    }

    #[test]
    fn store_backend_is_sqlite_unless_a_postgres_dsn_is_given_and_unknown_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.toml");
        std::fs::write(&f, "[store]\nbackend = \"sqlite\"\n").unwrap();
        let cfg = load(Some(&f), Overrides::default()).unwrap();
        assert_eq!(cfg.store.backend, StoreBackend::Sqlite);
        assert_eq!(Config::default().store.backend, StoreBackend::Sqlite);
        // Postgres named without saying where is refused, naming both ways.
        std::fs::write(&f, "[store]\nbackend = \"postgres\"\n").unwrap();
        let err = load(Some(&f), Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("postgres://") && err.contains("url_env"),
            "{err}"
        );
        std::fs::write(&f, "[store]\nbackend = \"mysql\"\n").unwrap();
        let err = load(Some(&f), Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("mysql") && err.contains("sqlite") && err.contains("postgres"),
            "the error names the value and what is accepted: {err}"
        );
        // A postgres:// db selects PostgreSQL; its password shows nowhere.
        let cfg = load(
            None,
            Overrides {
                db: Some("postgres://plb:s3cret-pw@db.internal:6432/value".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(cfg.store.backend, StoreBackend::Postgres);
        assert_eq!(cfg.db_display(), "postgres://plb@db.internal:6432/value");
        assert_eq!(
            redact_dsn("host=h port=1 user=u password=s3cret-pw dbname=d"),
            "postgres://u@h:1/d"
        );
    }

    #[test]
    #[allow(clippy::result_large_err)]
    fn url_env_reads_the_dsn_from_its_variable_and_never_from_a_token_variable() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("PLUMBLINE_STORE__URL_ENV", "PLUMBLINE_DATABASE_URL");
            // Named by url_env, the variable is not taken for a setting.
            jail.set_env(
                "PLUMBLINE_DATABASE_URL",
                "postgres://u:s3cret@127.0.0.1/plb",
            );
            let cfg = Config::load(None, Overrides::default()).unwrap();
            assert_eq!(cfg.store.backend, StoreBackend::Postgres);
            assert_eq!(
                cfg.postgres_dsn().unwrap().as_deref(),
                Some("postgres://u:s3cret@127.0.0.1/plb")
            );
            jail.set_env("PLUMBLINE_DATABASE_URL", "/var/lib/p.sqlite");
            let err = Config::load(None, Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("PLUMBLINE_DATABASE_URL") && err.contains("postgres://"),
                "{err}"
            );
            jail.clear_env();
            jail.set_env("PLUMBLINE_STORE__URL_ENV", "UNSET_DSN_VAR");
            let err = Config::load(None, Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("UNSET_DSN_VAR") && err.contains("not set"),
                "{err}"
            );
            // A variable sources may name as a token is refused.
            jail.set_env("PLUMBLINE_SECRET_DSN", "postgres://u:s3cret@127.0.0.1/plb");
            jail.set_env("PLUMBLINE_STORE__URL_ENV", "PLUMBLINE_SECRET_DSN");
            let err = Config::load(None, Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("tracker token") && !err.contains("s3cret"),
                "{err}"
            );
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)]
    fn token_and_cli_variables_are_not_read_as_settings_but_typos_are_refused() {
        figment::Jail::expect_with(|jail| {
            for var in [
                "PLUMBLINE_SECRET_GITHUB",
                "PLUMBLINE_TOKEN",
                "PLUMBLINE_TOKEN_FILE",
                "PLUMBLINE_CA_CERT",
                "PLUMBLINE_CLIENT_CERT",
                "PLUMBLINE_CLIENT_KEY",
                "PLUMBLINE_SERVER",
                "PLUMBLINE_LOG",
                "PLUMBLINE_LOG_FORMAT",
                "PLUMBLINE_TRACKER_JIRA",
                "PLUMBLINE_GITHUB_TOKEN",
            ] {
                jail.set_env(var, "ghp_not_a_setting");
            }
            // A prefix of the family and a listed name, set in the file.
            jail.create_file(
                "p.toml",
                "[outbound]\ntoken_env_prefix = \"PLUMBLINE_TRACKER_\"\ntoken_envs = [\"PLUMBLINE_GITHUB_TOKEN\"]\n",
            )?;
            jail.set_env("PLUMBLINE_SYNC__MAX_RETRIES", "2");
            let cfg = Config::load(Some(Path::new("p.toml")), Overrides::default()).unwrap();
            assert_eq!(cfg.sync.max_retries, 2);
            assert_eq!(cfg.outbound.token_env_prefix, "PLUMBLINE_TRACKER_");
            // Without the file, PLUMBLINE_TRACKER_JIRA is an unknown setting.
            let err = Config::load(None, Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("tracker_jira") || err.contains("github_token"),
                "{err}"
            );
            // The prefix may come from the environment too.
            jail.set_env("PLUMBLINE_OUTBOUND__TOKEN_ENV_PREFIX", "PLUMBLINE_TRACKER_");
            jail.set_env("PLUMBLINE_OUTBOUND__TOKEN_ENVS", "[PLUMBLINE_GITHUB_TOKEN]");
            let cfg = Config::load(None, Overrides::default()).unwrap();
            assert_eq!(cfg.outbound.token_envs, ["PLUMBLINE_GITHUB_TOKEN"]);
            // A typo is still refused, naming it.
            jail.set_env("PLUMBLINE_SYNC__MAX_RETRYS", "2");
            let err = Config::load(None, Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains("max_retrys"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn the_outbound_policy_is_checked_when_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.toml");
        std::fs::write(&f, "[outbound]\nallow_hosts = [\"10.0.0.0/33\"]\n").unwrap();
        let err = load(Some(&f), Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("10.0.0.0/33"), "{err}");
        let cfg = load(None, Overrides::default()).unwrap();
        assert_eq!(cfg.outbound, OutboundConfig::default());
        assert_eq!(cfg.outbound.token_env_prefix, "PLUMBLINE_SECRET_");
    }
}
