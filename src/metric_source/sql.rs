//! The `sql` metric source: a query against PostgreSQL that returns rows of
//! (time, value), run read-only and time-limited.
//!
//! The connection string (DSN) comes from an environment variable the
//! outbound policy allows; it is read at each pull, and no message shows it
//! or its password (every message is scrubbed of both). The query names the
//! last stored observation time as `:since`, which is rewritten to
//! `$1::timestamptz` outside string literals, quoted identifiers, comments
//! and `::` casts ([`bind_since`]); a query with its own `$n` placeholders is
//! refused, so that `:since` is the one way in. When nothing is stored yet,
//! `:since` is the Unix epoch.
//!
//! Read-only twice over: the session is opened with
//! `default_transaction_read_only=on`, and the statement runs in a
//! `READ ONLY` transaction, so a query that writes (an `INSERT ...
//! RETURNING`, `nextval`, a function that writes) is refused by the server.
//! Time-limited by the server's `statement_timeout` (the spec's), a connect
//! timeout, and a client-side deadline over the whole pull. Rows are read
//! through a portal at most [`MAX_ROWS`] + 1 at a time, so a query that
//! returns too many is refused without being read whole.
//!
//! TLS: rustls (through tokio-postgres-rustls, with aws-lc-rs, the provider
//! reqwest already builds) verifying against the system's roots. The DSN's
//! `sslmode` holds for a loopback host or a Unix socket; to any other host
//! the connection requires TLS (`sslmode=prefer`, the default, becomes
//! `require`; `disable` is refused), so a password never crosses a network
//! in the clear.
//!
//! Time columns: `timestamptz`, `timestamp` (read as UTC) and `date`
//! (midnight UTC). Value columns: `float8`, `float4`, `int2`, `int4`,
//! `int8` and `numeric`; a NULL value is passed on as NaN, which the
//! framework refuses and reports.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDate, NaiveDateTime, TimeZone, Utc};

use tokio_postgres::types::{FromSql, Type};

use super::{FetchError, RawPoint};
use crate::domain::Time;
use crate::outbound::OutboundPolicy;

/// The most rows one pull reads.
pub const MAX_ROWS: usize = 100_000;

/// The longest query text accepted.
pub const MAX_QUERY_BYTES: usize = 64 << 10;

/// The server-side limit on the statement, unless the spec says otherwise.
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

/// The limit on opening the connection, unless the spec says otherwise.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

const KIND: &str = "sql";

/// What the message of a secret is replaced by.
const HIDDEN: &str = "[hidden]";

/// One metric's SQL settings.
#[derive(Debug, Clone)]
pub struct SqlSpec {
    /// The environment variable holding the PostgreSQL DSN (`key=value`
    /// pairs or a `postgresql://` URL); one the outbound policy allows.
    pub dsn_env: String,
    /// The query: rows of (time, value), `:since` for the last stored
    /// observation time.
    pub query: String,
    pub statement_timeout: Duration,
    pub connect_timeout: Duration,
    /// Which variables the spec may name.
    pub outbound: Arc<OutboundPolicy>,
}

impl SqlSpec {
    /// The rows of the query with `:since` bound to `since` (the epoch when
    /// `None`), in the order the query gives them. `now` is not used: the
    /// query says which rows it returns, and the framework refuses points
    /// in the future.
    pub async fn fetch(
        &self,
        since: Option<Time>,
        _now: Time,
    ) -> Result<Vec<RawPoint>, FetchError> {
        let sql = bind_since(&self.query).map_err(|m| error(m, &[]))?;
        self.outbound
            .check_token_env(&self.dsn_env)
            .map_err(|e| error(e.to_string(), &[]))?;
        let dsn = std::env::var(&self.dsn_env)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| {
                error(
                    format!(
                        "the environment variable {} that the source names for its DSN is not set",
                        self.dsn_env
                    ),
                    &[],
                )
            })?;
        let mut config = tokio_postgres::Config::from_str(&dsn).map_err(|_| {
            error(
                format!(
                    "the value of {} is not a PostgreSQL connection string (key=value pairs, or a postgresql:// URL)",
                    self.dsn_env
                ),
                &[&dsn],
            )
        })?;
        let password = config
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .unwrap_or_default();
        let secrets = [dsn.as_str(), password.as_str()];
        self.limit(&mut config).map_err(|m| error(m, &secrets))?;
        let since = since.unwrap_or(chrono::DateTime::UNIX_EPOCH);
        let deadline = self.connect_timeout + self.statement_timeout + Duration::from_secs(5);
        match tokio::time::timeout(deadline, run(&config, &sql, since)).await {
            Ok(Ok(points)) => Ok(points),
            Ok(Err(Failure::Settings(message))) => Err(error(message, &secrets)),
            Ok(Err(Failure::Transient(message))) => Err(FetchError::Request {
                kind: KIND,
                cause: scrub(message, &secrets),
            }),
            Err(_) => Err(FetchError::Request {
                kind: KIND,
                cause: format!(
                    "the pull took longer than {}s (connect timeout plus statement_timeout); the server did not cut it",
                    deadline.as_secs()
                ),
            }),
        }
    }

    /// Read-only, time-limited, UTC; TLS required off the machine.
    fn limit(&self, config: &mut tokio_postgres::Config) -> Result<(), String> {
        crate::pg::require_tls_off_loopback(config, &format!("the DSN in {}", self.dsn_env))?;
        let ms = self.statement_timeout.as_millis().max(1);
        let own = format!(
            "-c default_transaction_read_only=on -c statement_timeout={ms} -c TimeZone=UTC"
        );
        let options = match config.get_options() {
            Some(given) if !given.trim().is_empty() => format!("{given} {own}"),
            _ => own,
        };
        config
            .options(&options)
            .connect_timeout(self.connect_timeout)
            .application_name("plumbline");
        Ok(())
    }
}

/// Why a pull of this kind failed, as a message for people (scrubbed by
/// the caller): one that may pass by itself (the server cannot be reached,
/// is shutting down or out of resources: UNAVAILABLE, tried again at the
/// next interval), or one that needs the settings, the query or the
/// database to change (FAILED_PRECONDITION).
enum Failure {
    Transient(String),
    Settings(String),
}

impl Failure {
    fn of(e: tokio_postgres::Error) -> Failure {
        if crate::pg::is_transient(&e) {
            Failure::Transient(crate::pg::describe(e))
        } else {
            Failure::Settings(crate::pg::describe(e))
        }
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure::Settings(message)
    }
}

/// Connects, runs the query in a read-only transaction, reads the rows.
async fn run(
    config: &tokio_postgres::Config,
    sql: &str,
    since: Time,
) -> Result<Vec<RawPoint>, Failure> {
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new((*crate::pg::tls_config()?).clone());
    let (mut client, connection) = config.connect(tls).await.map_err(Failure::of)?;
    let driver = tokio::spawn(connection);
    let result = query(&mut client, sql, since).await;
    drop(client);
    // The connection ends once the client is gone; its own error (a reset
    // after the answer) changes nothing of the answer.
    let _ = driver.await;
    result
}

async fn query(
    client: &mut tokio_postgres::Client,
    sql: &str,
    since: Time,
) -> Result<Vec<RawPoint>, Failure> {
    let tx = client
        .build_transaction()
        .read_only(true)
        .start()
        .await
        .map_err(Failure::of)?;
    let statement = tx.prepare(sql).await.map_err(Failure::of)?;
    let columns = statement.columns();
    if columns.len() != 2 {
        return Err(Failure::Settings(format!(
            "the query returns {} columns; it must return two, the time and the value",
            columns.len()
        )));
    }
    let (time, value) = (&columns[0], &columns[1]);
    if ![Type::TIMESTAMPTZ, Type::TIMESTAMP, Type::DATE].contains(time.type_()) {
        return Err(Failure::Settings(format!(
            "the query's first column {:?} is of type {}; the time must be timestamptz, timestamp or date",
            time.name(),
            time.type_()
        )));
    }
    if ![
        Type::FLOAT8,
        Type::FLOAT4,
        Type::INT2,
        Type::INT4,
        Type::INT8,
        Type::NUMERIC,
    ]
    .contains(value.type_())
    {
        return Err(Failure::Settings(format!(
            "the query's second column {:?} is of type {}; the value must be float8, float4, int2, int4, int8 or numeric",
            value.name(),
            value.type_()
        )));
    }
    let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = if statement.params().is_empty() {
        Vec::new()
    } else {
        vec![&since]
    };
    let portal = tx.bind(&statement, &params).await.map_err(Failure::of)?;
    let rows = tx
        .query_portal(&portal, (MAX_ROWS + 1) as i32)
        .await
        .map_err(Failure::of)?;
    if rows.len() > MAX_ROWS {
        return Err(Failure::Settings(format!(
            "the query returns more than {MAX_ROWS} rows; narrow it with :since (WHERE day > :since) or a LIMIT"
        )));
    }
    let mut points = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let at = read_time(row, time.type_())
            .map_err(|e| Failure::Settings(format!("row {}: {e}", i + 1)))?;
        let value = read_value(row, value.type_())
            .map_err(|e| Failure::Settings(format!("row {}: {e}", i + 1)))?;
        points.push(RawPoint { at, value });
    }
    // Read-only: nothing to keep.
    tx.rollback().await.map_err(Failure::of)?;
    Ok(points)
}

fn read_time(row: &tokio_postgres::Row, ty: &Type) -> Result<Time, String> {
    let at = if *ty == Type::TIMESTAMPTZ {
        row.try_get::<_, Option<chrono::DateTime<Utc>>>(0)
            .map_err(|e| e.to_string())?
    } else if *ty == Type::TIMESTAMP {
        row.try_get::<_, Option<NaiveDateTime>>(0)
            .map_err(|e| e.to_string())?
            .map(|t| Utc.from_utc_datetime(&t))
    } else {
        row.try_get::<_, Option<NaiveDate>>(0)
            .map_err(|e| e.to_string())?
            .map(|d| Utc.from_utc_datetime(&d.and_time(chrono::NaiveTime::MIN)))
    };
    at.ok_or_else(|| "the time is NULL".to_string())
}

fn read_value(row: &tokio_postgres::Row, ty: &Type) -> Result<f64, String> {
    let e = |e: tokio_postgres::Error| e.to_string();
    let v = match *ty {
        Type::FLOAT8 => row.try_get::<_, Option<f64>>(1).map_err(e)?,
        Type::FLOAT4 => row.try_get::<_, Option<f32>>(1).map_err(e)?.map(f64::from),
        Type::INT2 => row.try_get::<_, Option<i16>>(1).map_err(e)?.map(f64::from),
        Type::INT4 => row.try_get::<_, Option<i32>>(1).map_err(e)?.map(f64::from),
        Type::INT8 => row
            .try_get::<_, Option<i64>>(1)
            .map_err(e)?
            .map(|v| v as f64),
        _ => row
            .try_get::<_, Option<Numeric>>(1)
            .map_err(e)?
            .map(|n| n.0),
    };
    // NULL: not a number, refused and reported by the framework.
    Ok(v.unwrap_or(f64::NAN))
}

/// A `numeric` read as the nearest f64: tokio-postgres has no numeric type
/// of its own without a decimal crate, and a metric's value is an f64
/// anyway. The binary format is PostgreSQL's `numeric_send`: digit count,
/// weight, sign, display scale, then base-10000 digits.
struct Numeric(f64);

impl<'a> FromSql<'a> for Numeric {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let word = |i: usize| -> Result<u16, Box<dyn std::error::Error + Sync + Send>> {
            raw.get(i * 2..i * 2 + 2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]))
                .ok_or_else(|| "numeric value cut short".into())
        };
        let ndigits = word(0)? as usize;
        let weight = word(1)? as i16;
        let sign = word(2)?;
        match sign {
            0xC000 => return Ok(Numeric(f64::NAN)),
            0xD000 => return Ok(Numeric(f64::INFINITY)),
            0xF000 => return Ok(Numeric(f64::NEG_INFINITY)),
            0x0000 | 0x4000 => {}
            _ => return Err("numeric value with an unknown sign".into()),
        }
        let mut value = 0.0f64;
        for i in 0..ndigits {
            let digit = f64::from(word(4 + i)?);
            value += digit * 10f64.powi(4 * (i32::from(weight) - i as i32));
        }
        Ok(Numeric(if sign == 0x4000 { -value } else { value }))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }
}

/// The query with `:since` as `$1::timestamptz`. Only where SQL would read
/// a name: not in '...' or E'...' strings, "quoted identifiers", $tag$
/// dollar-quoted $tag$ strings, -- and /* */ comments, nor after `::` (a
/// cast). Hand-written because a full SQL parser (sqlparser) would refuse
/// valid PostgreSQL it does not know, and this needs only the lexical
/// layer. A `$n` placeholder of the query's own is refused.
pub fn bind_since(query: &str) -> Result<String, String> {
    let query = query.trim().trim_end_matches(';').trim_end();
    if query.is_empty() {
        return Err("the query is empty".into());
    }
    if query.len() > MAX_QUERY_BYTES {
        return Err(format!("the query is longer than {MAX_QUERY_BYTES} bytes"));
    }
    let b = query.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80;
    let mut out = String::with_capacity(query.len() + 16);
    let mut i = 0;
    let mut copied = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'\'' | b'"' => {
                // Doubled quotes stay inside; a backslash escape only in
                // E'...' strings, but skipping \' is harmless elsewhere
                // because standard strings end at the next lone quote.
                let escapes = c == b'\'' && i > 0 && matches!(b[i - 1], b'E' | b'e');
                i += 1;
                while i < b.len() {
                    if escapes && b[i] == b'\\' {
                        i += 2;
                        continue;
                    }
                    if b[i] == c {
                        if b.get(i + 1) == Some(&c) {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i += 1;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            b'$' if i > 0 && ident(b[i - 1]) => i += 1,
            b'$' => {
                if b.get(i + 1).is_some_and(u8::is_ascii_digit) {
                    return Err(
                        "the query has a $n placeholder; write :since for the last stored observation time, it is the only parameter"
                            .into(),
                    );
                }
                // $tag$ ... $tag$, or a lone $ (an operator).
                let tag_end = b[i + 1..]
                    .iter()
                    .position(|&x| !ident(x))
                    .map(|p| i + 1 + p);
                match tag_end {
                    Some(end) if b[end] == b'$' => {
                        let tag = &query[i..=end];
                        match query[end + 1..].find(tag) {
                            Some(p) => i = end + 1 + p + tag.len(),
                            None => i = b.len(),
                        }
                    }
                    _ => i += 1,
                }
            }
            b':' if b.get(i + 1) == Some(&b':') => i += 2,
            b':' if query[i + 1..].starts_with("since")
                && !b.get(i + 6).is_some_and(|&x| ident(x) || x == b'$') =>
            {
                out.push_str(&query[copied..i]);
                out.push_str("$1::timestamptz");
                i += 6;
                copied = i;
            }
            _ if ident(c) => {
                // A whole word, so that a `$` inside it is not a tag.
                while i < b.len() && (ident(b[i]) || b[i] == b'$') {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    out.push_str(&query[copied.min(query.len())..]);
    Ok(out)
}

/// The error, with the DSN and its password scrubbed from the message.
fn error(message: String, secrets: &[&str]) -> FetchError {
    FetchError::Source {
        kind: KIND,
        message: scrub(message, secrets),
    }
}

fn scrub(mut message: String, secrets: &[&str]) -> String {
    for s in secrets.iter().filter(|s| s.len() >= 3) {
        message = message.replace(s, HIDDEN);
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_is_bound_where_sql_reads_it() {
        assert_eq!(
            bind_since("SELECT day, v FROM daily WHERE day > :since ORDER BY day;").unwrap(),
            "SELECT day, v FROM daily WHERE day > $1::timestamptz ORDER BY day"
        );
        assert_eq!(
            bind_since("SELECT day, v FROM t WHERE day>:since AND note <> ':since' -- :since\n")
                .unwrap(),
            "SELECT day, v FROM t WHERE day>$1::timestamptz AND note <> ':since' -- :since"
        );
        for untouched in [
            "SELECT x::since FROM t",
            "SELECT \":since\" FROM t",
            "SELECT $$ :since $$, $a$ :since $a$ FROM t",
            "SELECT 1 /* :since /* nested */ :since */",
            "SELECT :sinceday FROM t",
            "SELECT E'\\' :since' FROM t",
        ] {
            assert_eq!(bind_since(untouched).unwrap(), untouched);
        }
        assert!(bind_since("SELECT day, v FROM t WHERE day > $1").is_err());
        assert!(bind_since("  ;").is_err());
        assert_eq!(
            bind_since("SELECT a$1 FROM t").unwrap(),
            "SELECT a$1 FROM t"
        );
    }

    #[test]
    fn numerics_decode() {
        // 12345.678: ndigits 3, weight 1, sign +, dscale 3; 1 2345 6780.
        let raw: Vec<u8> = [3u16, 1, 0, 3, 1, 2345, 6780]
            .iter()
            .flat_map(|w| w.to_be_bytes())
            .collect();
        let n = Numeric::from_sql(&Type::NUMERIC, &raw).unwrap();
        assert!((n.0 - 12345.678).abs() < 1e-9);
        let neg: Vec<u8> = [1u16, (-1i16) as u16, 0x4000, 2, 5000]
            .iter()
            .flat_map(|w| w.to_be_bytes())
            .collect();
        assert_eq!(Numeric::from_sql(&Type::NUMERIC, &neg).unwrap().0, -0.5);
        let nan: Vec<u8> = [0u16, 0, 0xC000, 0]
            .iter()
            .flat_map(|w| w.to_be_bytes())
            .collect();
        assert!(Numeric::from_sql(&Type::NUMERIC, &nan).unwrap().0.is_nan());
    }
}
