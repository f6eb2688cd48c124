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
    /// Path of the SQLite database file (created if missing).
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
    /// What one client may consume (`[limits]` in the file).
    #[serde(default)]
    pub limits: LimitsConfig,
}

/// Where the data lives.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// The storage backend; `sqlite` (the file at `db`) is the only one.
    pub backend: StoreBackend,
}

/// A storage backend, by its name in the configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// The embedded SQLite file at `db`.
    #[default]
    Sqlite,
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
            before_days: 28,
            after_days: 28,
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
            limits: LimitsConfig::default(),
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
        // PLUMBLINE_SERVER and PLUMBLINE_LOG* belong to the CLI, not here;
        // nested keys use a double underscore: PLUMBLINE_SYNC__INTERVAL_SECS.
        let env = Env::prefixed("PLUMBLINE_")
            .ignore(&["server", "log", "log_format"])
            .split("__");
        let cfg: Config = fig
            .merge(env)
            .merge(Serialized::defaults(overrides))
            .extract()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        if !crate::domain::is_valid_estimate(cfg.default_size) {
            return Err(ConfigError::Invalid(format!(
                "default_size must be a number from {} to {}, got {}",
                crate::domain::MIN_ESTIMATE,
                crate::domain::MAX_ESTIMATE,
                cfg.default_size
            )));
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_file_which_beats_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.toml");
        std::fs::write(&f, "db = \"/tmp/x.sqlite\"\ndefault_size = 5.0\n").unwrap();
        let cfg = Config::load(
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
        let cfg = Config::load(Some(&f), Overrides::default()).unwrap();
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
        let err = Config::load(Some(&f), Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("colour"), "{err}");
        let err =
            Config::load(Some(&dir.path().join("nope.toml")), Overrides::default()).unwrap_err();
        assert!(matches!(err, ConfigError::MissingFile(_)));
        let err = Config::load(
            None,
            Overrides {
                default_size: Some(0.0),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("default_size"));
    }

    #[test]
    fn store_backend_is_sqlite_unless_named_and_unknown_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.toml");
        std::fs::write(&f, "[store]\nbackend = \"sqlite\"\n").unwrap();
        let cfg = Config::load(Some(&f), Overrides::default()).unwrap();
        assert_eq!(cfg.store.backend, StoreBackend::Sqlite);
        assert_eq!(Config::default().store.backend, StoreBackend::Sqlite);
        std::fs::write(&f, "[store]\nbackend = \"postgres\"\n").unwrap();
        let err = Config::load(Some(&f), Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("postgres") && err.contains("sqlite"),
            "the error names the value and what is accepted: {err}"
        );
    }
}
