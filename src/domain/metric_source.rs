//! Where a metric's observations come from: the kind of source and its
//! settings, as plain data (serde, so that the value model file's
//! `[metrics.source]` table, the store's JSON column and the checks share
//! one shape). Fetching lives in `crate::metric_source`; secrets are never
//! here, only the names of the environment variables that hold them.

use serde::{Deserialize, Serialize};

/// A metric's source: what to fetch and how often.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MetricSource {
    HttpJson(HttpJsonSpec),
    Csv(CsvSpec),
    Posthog(PosthogSpec),
    Prometheus(PrometheusSpec),
    Sql(SqlSpec),
}

/// GET a URL that answers JSON; the points are the array an RFC 6901 JSON
/// Pointer names, each an object with a time and a value field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct HttpJsonSpec {
    pub url: String,
    /// RFC 6901 pointer to the array of points; "" is the whole document.
    #[serde(default)]
    pub points_pointer: String,
    /// Field of a point holding its time (RFC 3339, a date, or Unix seconds).
    #[serde(default = "default_time_field")]
    pub time_field: String,
    /// Field of a point holding its value (a JSON number).
    #[serde(default = "default_value_field")]
    pub value_field: String,
    /// Query parameter that carries the time of the last stored observation
    /// (RFC 3339), so that only new points are asked for; unset: all are
    /// fetched and the older ones skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_param: Option<String>,
    /// A header sent with every request, its value read from `header_env`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_minutes: Option<u32>,
}

/// `at,value` rows from a local file or an http(s) URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CsvSpec {
    /// A path on the server's file system, or an http(s) URL.
    pub location: String,
    /// As [`HttpJsonSpec::since_param`], for a URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_param: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_minutes: Option<u32>,
}

/// A trend or HogQL query through PostHog's query API
/// (`POST /api/projects/{project_id}/query/`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PosthogSpec {
    /// `https://us.posthog.com`, `https://eu.posthog.com` or a self-hosted one.
    pub base_url: String,
    pub project_id: String,
    /// Variable holding a personal API key (scope `query:read`).
    pub api_key_env: String,
    /// A HogQL query returning rows of (time, value); `{since}` in it is
    /// the time of the last stored observation, passed as a query value.
    /// Exactly one of `hogql` and `trend_event`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hogql: Option<String>,
    /// A daily trend of this event (`TrendsQuery`, one series).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trend_event: Option<String>,
    /// The trend's math: `total` (default), `dau`, `weekly_active`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trend_math: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_minutes: Option<u32>,
}

/// How a Prometheus source authenticates: `{ token_env = "..." }` for
/// `Authorization: Bearer`, `{ username = "...", password_env = "..." }`
/// for Basic. The secret is read from the named variable at each pull.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PrometheusAuth {
    Bearer(BearerAuth),
    Basic(BasicAuth),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BearerAuth {
    pub token_env: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub username: String,
    pub password_env: String,
}

/// A PromQL expression over `/api/v1/query_range` (the keys are those of
/// the prometheus fetcher's README section).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PrometheusSpec {
    pub base_url: String,
    pub query: String,
    /// The resolution, as people write it: `1d`, `6h`, `15m`.
    pub step: String,
    /// How far back the first pull reaches (`90d` when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookback: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<PrometheusAuth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_minutes: Option<u32>,
}

/// A read-only query against PostgreSQL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SqlSpec {
    /// Variable holding the DSN (it holds the password).
    pub dsn_env: String,
    /// Returns rows of (time, value); `:since` is bound to the time of the
    /// last stored observation.
    pub query: String,
    /// The session's `statement_timeout` (`30s` when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement_timeout: Option<String>,
    /// The limit on connecting (`10s` when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_minutes: Option<u32>,
}

/// A duration as the settings write it (`1d`, `90d`, `30s`): whole
/// seconds, at least one, at most `max_secs`.
pub fn parse_setting_duration(text: &str, max_secs: u64) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(text.trim())
        .map_err(|e| format!("{text:?} is not a duration such as 1d, 6h or 30s: {e}"))?;
    if d.subsec_nanos() != 0 || d.as_secs() == 0 || d.as_secs() > max_secs {
        return Err(format!(
            "{text:?} must be a whole number of seconds between 1s and {}d",
            max_secs / 86_400
        ));
    }
    Ok(d)
}

fn default_time_field() -> String {
    "at".into()
}
fn default_value_field() -> String {
    "value".into()
}

impl MetricSource {
    /// The kind's name, as in the file and in errors.
    pub fn kind(&self) -> &'static str {
        match self {
            MetricSource::HttpJson(_) => "http_json",
            MetricSource::Csv(_) => "csv",
            MetricSource::Posthog(_) => "posthog",
            MetricSource::Prometheus(_) => "prometheus",
            MetricSource::Sql(_) => "sql",
        }
    }

    /// Minutes between background pulls; `None`: only when asked.
    pub fn poll_minutes(&self) -> Option<u32> {
        match self {
            MetricSource::HttpJson(s) => s.poll_minutes,
            MetricSource::Csv(s) => s.poll_minutes,
            MetricSource::Posthog(s) => s.poll_minutes,
            MetricSource::Prometheus(s) => s.poll_minutes,
            MetricSource::Sql(s) => s.poll_minutes,
        }
    }

    /// The environment variables the source names (whose values are
    /// secrets), for the outbound policy's check and for scrubbing.
    pub fn secret_vars(&self) -> Vec<&str> {
        match self {
            MetricSource::HttpJson(s) => s.header_env.as_deref().into_iter().collect(),
            MetricSource::Csv(_) => Vec::new(),
            MetricSource::Posthog(s) => vec![s.api_key_env.as_str()],
            MetricSource::Prometheus(s) => match &s.auth {
                None => Vec::new(),
                Some(PrometheusAuth::Bearer(b)) => vec![b.token_env.as_str()],
                Some(PrometheusAuth::Basic(b)) => vec![b.password_env.as_str()],
            },
            MetricSource::Sql(s) => vec![s.dsn_env.as_str()],
        }
    }

    /// What is wrong with the settings, as (field, description), field
    /// names relative to the source. Empty when it may be stored.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut v: Vec<(&'static str, String)> = Vec::new();
        let mut url = |field: &'static str, s: &str, allow_path: bool| {
            let t = s.trim();
            if t.is_empty() {
                v.push((field, "is required".into()));
            } else if t.len() > 2048 || t.chars().any(char::is_control) {
                v.push((field, "must be one line of at most 2048 characters".into()));
            } else if t.starts_with("http://") || t.starts_with("https://") {
                if reqwest::Url::parse(t).is_err() {
                    v.push((field, "is not a valid URL".into()));
                }
            } else if !allow_path {
                v.push((field, "must be an http(s) URL".into()));
            }
        };
        match self {
            MetricSource::HttpJson(s) => {
                url("url", &s.url, false);
                if !(s.points_pointer.is_empty() || s.points_pointer.starts_with('/')) {
                    v.push((
                        "points_pointer",
                        "must be an RFC 6901 JSON Pointer: empty or starting with '/'".into(),
                    ));
                }
                if s.time_field.is_empty() {
                    v.push(("time_field", "is required".into()));
                }
                if s.value_field.is_empty() {
                    v.push(("value_field", "is required".into()));
                }
                if s.header_name.is_some() != s.header_env.is_some() {
                    v.push((
                        "header_env",
                        "header_name and header_env go together: name the header and the variable holding its value".into(),
                    ));
                }
                if let Some(h) = &s.header_name
                    && reqwest::header::HeaderName::from_bytes(h.as_bytes()).is_err()
                {
                    v.push(("header_name", "is not a valid HTTP header name".into()));
                }
            }
            MetricSource::Csv(s) => url("location", &s.location, true),
            MetricSource::Posthog(s) => {
                url("base_url", &s.base_url, false);
                if s.project_id.is_empty() || !s.project_id.chars().all(|c| c.is_ascii_digit()) {
                    v.push(("project_id", "must be PostHog's numeric project id".into()));
                }
                if s.api_key_env.is_empty() {
                    v.push((
                        "api_key_env",
                        "is required: the variable holding a personal API key".into(),
                    ));
                }
                match (&s.hogql, &s.trend_event) {
                    (Some(q), None) if !q.trim().is_empty() => {}
                    (None, Some(e)) if !e.trim().is_empty() => {}
                    _ => v.push(("hogql", "set exactly one of hogql and trend_event".into())),
                }
            }
            MetricSource::Prometheus(s) => {
                url("base_url", &s.base_url, false);
                if s.query.trim().is_empty() {
                    v.push(("query", "is required: a PromQL expression".into()));
                }
                if let Err(e) = parse_setting_duration(&s.step, 366 * 86_400) {
                    v.push(("step", e));
                }
                if let Some(l) = &s.lookback
                    && let Err(e) = parse_setting_duration(l, 100 * 366 * 86_400)
                {
                    v.push(("lookback", e));
                }
                if let Some(PrometheusAuth::Basic(b)) = &s.auth
                    && (b.username.is_empty() || b.username.contains(':'))
                {
                    v.push(("auth.username", "must be a user name without ':'".into()));
                }
            }
            MetricSource::Sql(s) => {
                if s.dsn_env.is_empty() {
                    v.push((
                        "dsn_env",
                        "is required: the variable holding the DSN".into(),
                    ));
                }
                if s.query.trim().is_empty() {
                    v.push(("query", "is required".into()));
                }
                for (field, t) in [
                    ("statement_timeout", &s.statement_timeout),
                    ("connect_timeout", &s.connect_timeout),
                ] {
                    if let Some(t) = t
                        && let Err(e) = parse_setting_duration(t, 3600)
                    {
                        v.push((field, e));
                    }
                }
            }
        }
        for var in self.secret_vars() {
            if var.is_empty() || !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                v.push((
                    "env",
                    format!("{var:?} is not an environment variable name"),
                ));
            }
        }
        if self.poll_minutes() == Some(0) {
            v.push((
                "poll_minutes",
                "must be at least 1 (unset: pull only when asked)".into(),
            ));
        }
        v
    }
}
