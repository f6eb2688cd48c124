//! The `sql` metric source against the real PostgreSQL of Debian's package
//! ([`super::realdeps`]): a table of daily values pulled first whole then
//! incrementally through `:since`, the column types, errors that never show
//! the DSN or its password, the read-only session and the statement
//! timeout. The tests' role owns its tables and may write to them, so only
//! the source's read-only session stops a write.

use std::sync::Arc;
use std::time::Duration;

use plumbline::metric_source::sql::SqlSpec;
use plumbline::metric_source::{FetchError, RawPoint};
use plumbline::outbound::OutboundPolicy;

use super::realdeps::{self, PG_PASSWORD, day, require};

/// A spec reading the DSN from `var`, set to `dsn` (names only one test
/// uses, so parallel tests do not meet).
fn spec(var: &str, dsn: &str, query: &str) -> SqlSpec {
    // SAFETY: every test sets its own variables.
    unsafe { std::env::set_var(var, dsn) };
    SqlSpec {
        dsn_env: var.into(),
        query: query.into(),
        statement_timeout: Duration::from_secs(30),
        connect_timeout: Duration::from_secs(10),
        outbound: Arc::new(OutboundPolicy::default()),
    }
}

fn pairs(points: &[RawPoint]) -> Vec<(i64, f64)> {
    points.iter().map(|p| (p.at.timestamp(), p.value)).collect()
}

fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

/// The error's message, checked to hold neither the DSN nor the password.
fn secret_free(e: FetchError, dsn: &str) -> String {
    let m = e.to_string();
    // "sql metric source: " for what the settings must fix, "sql source: "
    // for what may pass (an unreachable server).
    assert!(
        m.starts_with("sql metric source: ") || m.starts_with("sql source: "),
        "{m}"
    );
    assert!(!m.contains(PG_PASSWORD), "the password leaked: {m}");
    assert!(!m.contains(dsn), "the DSN leaked: {m}");
    assert!(!m.contains("password="), "the DSN leaked: {m}");
    m
}

#[tokio::test]
async fn sql_pulls_daily_values_then_only_rows_after_since() {
    let Some(pg) = require(
        "sql_pulls_daily_values_then_only_rows_after_since",
        realdeps::postgres().await,
    ) else {
        return;
    };
    let db = pg.owner().await;
    db.batch_execute(
        "CREATE TABLE daily_signups (day date PRIMARY KEY, signups numeric(12,2) NOT NULL);",
    )
    .await
    .expect("table");
    let history: Vec<(chrono::DateTime<chrono::Utc>, f64)> = (0..10)
        .map(|i| (day(10 - i), 100.0 + 1.25 * i as f64))
        .collect();
    for (at, v) in &history {
        db.execute(
            "INSERT INTO daily_signups VALUES ($1::timestamptz::date, $2::float8::numeric)",
            &[at, v],
        )
        .await
        .expect("row");
    }
    let s = spec(
        "PLUMBLINE_SECRET_PG_DAILY_T",
        &pg.dsn(),
        "SELECT day, signups FROM daily_signups WHERE day > :since ORDER BY day;",
    );
    let expected: Vec<(i64, f64)> = history.iter().map(|(a, v)| (a.timestamp(), *v)).collect();
    let first = s.fetch(None, now()).await.expect("first pull");
    assert_eq!(pairs(&first), expected);

    let since = history[6].0;
    let next = s.fetch(Some(since), now()).await.expect("incremental");
    assert_eq!(pairs(&next), expected[7..].to_vec());

    // A row added since: the next pull has it alone.
    db.execute(
        "INSERT INTO daily_signups VALUES ($1::timestamptz::date, 999)",
        &[&day(0)],
    )
    .await
    .expect("row");
    let newest = s.fetch(Some(history[9].0), now()).await.expect("pull");
    assert_eq!(pairs(&newest), vec![(day(0).timestamp(), 999.0)]);
}

#[tokio::test]
async fn sql_reads_the_time_and_value_types_it_documents() {
    let Some(pg) = require(
        "sql_reads_the_time_and_value_types_it_documents",
        realdeps::postgres().await,
    ) else {
        return;
    };
    let db = pg.owner().await;
    db.batch_execute(
        "CREATE TABLE typed (d date, ts timestamp, tz timestamptz, f8 float8, f4 real,
                             i2 smallint, i4 integer, i8 bigint, n numeric, label text);
         INSERT INTO typed VALUES
           ('2026-03-01', '2026-03-01 12:30:00', '2026-03-01 12:30:00+02', 1.5, 2.5,
            3, 4, 9007199254740993, -12345.678, 'x'),
           ('2026-03-02', '2026-03-02 00:00:00', '2026-03-02 00:00:00+00', 'NaN', NULL,
            NULL, NULL, NULL, 'NaN', 'y');",
    )
    .await
    .expect("table");
    let var = "PLUMBLINE_SECRET_PG_TYPES_T";
    let dsn = pg.dsn();
    let at = |s: &str| {
        chrono::DateTime::parse_from_rfc3339(s)
            .expect("time")
            .timestamp()
    };
    let run = |q: &str| {
        let s = spec(var, &dsn, q);
        async move { s.fetch(None, now()).await }
    };
    let p = run("SELECT d, f8 FROM typed ORDER BY d")
        .await
        .expect("date, float8");
    assert_eq!(p[0].at.timestamp(), at("2026-03-01T00:00:00Z"));
    assert_eq!(p[0].value, 1.5);
    assert!(
        p[1].value.is_nan(),
        "NaN is passed on for the framework to refuse"
    );
    let p = run("SELECT ts, f4 FROM typed ORDER BY d")
        .await
        .expect("timestamp, real");
    assert_eq!(
        p[0].at.timestamp(),
        at("2026-03-01T12:30:00Z"),
        "timestamp is UTC"
    );
    assert_eq!(p[0].value, 2.5);
    assert!(p[1].value.is_nan(), "NULL is not a number");
    let p = run("SELECT tz, i2 FROM typed ORDER BY d")
        .await
        .expect("timestamptz, int2");
    assert_eq!(p[0].at.timestamp(), at("2026-03-01T10:30:00Z"));
    assert_eq!(p[0].value, 3.0);
    let p = run("SELECT d, i4 FROM typed ORDER BY d")
        .await
        .expect("int4");
    assert_eq!(p[0].value, 4.0);
    let p = run("SELECT d, i8 FROM typed ORDER BY d")
        .await
        .expect("int8");
    assert_eq!(p[0].value, 9007199254740993i64 as f64);
    let p = run("SELECT d, n FROM typed ORDER BY d")
        .await
        .expect("numeric");
    assert!((p[0].value + 12345.678).abs() < 1e-9, "{}", p[0].value);
    assert!(p[1].value.is_nan());
    // An expression of the query's own, with a cast and :since in a string.
    let p = run("SELECT d::timestamptz AS at, sum(i4)::numeric / 2 FROM typed WHERE label <> ':since' AND d > :since GROUP BY d ORDER BY d")
        .await
        .expect("expression");
    assert_eq!(pairs(&p)[0], (at("2026-03-01T00:00:00Z"), 2.0));

    for (q, says) in [
        (
            "SELECT d, label FROM typed",
            "second column \"label\" is of type text",
        ),
        (
            "SELECT label, f8 FROM typed",
            "first column \"label\" is of type text",
        ),
        ("SELECT d, f8, i4 FROM typed", "returns 3 columns"),
        ("SELECT d, f8 FROM typed WHERE d > $1", "$n placeholder"),
    ] {
        let m = secret_free(run(q).await.expect_err("refused"), &dsn);
        assert!(m.contains(says), "{q}: {m}");
    }
}

#[tokio::test]
async fn sql_errors_never_show_the_dsn_or_its_password() {
    let Some(pg) = require(
        "sql_errors_never_show_the_dsn_or_its_password",
        realdeps::postgres().await,
    ) else {
        return;
    };
    let dsn = pg.dsn();
    // Bad SQL: the server's message.
    let bad = spec(
        "PLUMBLINE_SECRET_PG_ERR_T",
        &dsn,
        "SELECT day, v FROM no_such_table WHERE day > :since",
    );
    let m = secret_free(bad.fetch(None, now()).await.expect_err("refused"), &dsn);
    assert!(
        m.contains("relation \"no_such_table\" does not exist"),
        "{m}"
    );
    assert!(m.contains("42P01"), "{m}");

    // A wrong password.
    let wrong = pg.dsn_with("not-the-password-77");
    let s = spec(
        "PLUMBLINE_SECRET_PG_WRONGPW_T",
        &wrong,
        "SELECT now(), 1.0::float8",
    );
    let e = s.fetch(None, now()).await.expect_err("refused");
    assert!(e.needs_change(), "a wrong password needs a change: {e}");
    let m = secret_free(e, &wrong);
    assert!(m.contains("password authentication failed"), "{m}");
    assert!(!m.contains("not-the-password-77"), "{m}");

    // Nothing listening.
    let port = realdeps::free_port();
    let gone = dsn.replace(&format!("port={}", pg.port), &format!("port={port}"));
    let s = spec(
        "PLUMBLINE_SECRET_PG_GONE_T",
        &gone,
        "SELECT now(), 1.0::float8",
    );
    let e = s.fetch(None, now()).await.expect_err("unreachable");
    assert!(!e.needs_change(), "unreachable may pass: {e}");
    let m = secret_free(e, &gone);
    assert!(m.to_lowercase().contains("connect"), "{m}");

    // A DSN that does not parse, with a password in it.
    let garbled = format!("host=127.0.0.1 password={PG_PASSWORD} port=notaport");
    let s = spec(
        "PLUMBLINE_SECRET_PG_GARBLED_T",
        &garbled,
        "SELECT now(), 1.0::float8",
    );
    let m = secret_free(s.fetch(None, now()).await.expect_err("refused"), &garbled);
    assert!(m.contains("PLUMBLINE_SECRET_PG_GARBLED_T"), "{m}");

    // Plain text to a host off the machine is refused before connecting.
    let remote = format!("host=192.0.2.10 sslmode=disable password={PG_PASSWORD}");
    let s = spec(
        "PLUMBLINE_SECRET_PG_REMOTE_T",
        &remote,
        "SELECT now(), 1.0::float8",
    );
    let m = secret_free(s.fetch(None, now()).await.expect_err("refused"), &remote);
    assert!(m.contains("sslmode=require"), "{m}");

    // A variable that is not set, and one the policy does not allow.
    let mut s = spec(
        "PLUMBLINE_SECRET_PG_SET_T",
        &dsn,
        "SELECT now(), 1.0::float8",
    );
    s.dsn_env = "PLUMBLINE_SECRET_PG_NEVER_SET_T".into();
    let m = secret_free(s.fetch(None, now()).await.expect_err("unset"), &dsn);
    assert!(m.contains("PLUMBLINE_SECRET_PG_NEVER_SET_T"), "{m}");
    assert!(m.ends_with("is not set"), "{m}");
    s.dsn_env = "HOME".into();
    let m = secret_free(s.fetch(None, now()).await.expect_err("refused"), &dsn);
    assert!(m.contains("HOME is not one sources may name"), "{m}");
}

#[tokio::test]
async fn sql_queries_run_read_only_and_are_cut_at_the_statement_timeout() {
    let Some(pg) = require(
        "sql_queries_run_read_only_and_are_cut_at_the_statement_timeout",
        realdeps::postgres().await,
    ) else {
        return;
    };
    let db = pg.owner().await;
    db.batch_execute(
        "CREATE TABLE written (day date, v float8);
         CREATE SEQUENCE bumped;
         CREATE FUNCTION scribble() RETURNS float8 LANGUAGE sql
           AS 'INSERT INTO written VALUES (current_date, 1) RETURNING v';",
    )
    .await
    .expect("setup");
    let dsn = pg.dsn();
    for (q, var) in [
        (
            "INSERT INTO written VALUES (current_date, 7) RETURNING day, v",
            "PLUMBLINE_SECRET_PG_RO1_T",
        ),
        (
            "SELECT now(), nextval('bumped')::float8",
            "PLUMBLINE_SECRET_PG_RO2_T",
        ),
        ("SELECT now(), scribble()", "PLUMBLINE_SECRET_PG_RO3_T"),
    ] {
        let s = spec(var, &dsn, q);
        let m = secret_free(s.fetch(None, now()).await.expect_err("refused"), &dsn);
        assert!(m.contains("read-only transaction"), "{q}: {m}");
        assert!(m.contains("25006"), "{q}: {m}");
    }
    let rows = db
        .query_one("SELECT count(*) FROM written", &[])
        .await
        .expect("count");
    assert_eq!(rows.get::<_, i64>(0), 0, "nothing was written");
    let seq = db
        .query_one("SELECT last_value, is_called FROM bumped", &[])
        .await
        .expect("sequence");
    assert!(!seq.get::<_, bool>(1), "the sequence did not move");

    // A statement that would sleep a minute is cut by the server.
    let mut s = spec(
        "PLUMBLINE_SECRET_PG_SLOW_T",
        &dsn,
        "SELECT now(), 1.0::float8 FROM pg_sleep(60)",
    );
    s.statement_timeout = Duration::from_millis(300);
    let m = secret_free(s.fetch(None, now()).await.expect_err("cut"), &dsn);
    assert!(m.contains("statement timeout"), "{m}");
    assert!(m.contains("57014"), "{m}");
}

#[tokio::test]
async fn sql_verifies_the_certificate_of_a_server_that_speaks_tls() {
    let Some(pg) = require(
        "sql_verifies_the_certificate_of_a_server_that_speaks_tls",
        realdeps::postgres_tls().await,
    ) else {
        return;
    };
    let query = "SELECT now(), 1.0::float8";
    // Its certificate is self-signed: rustls refuses it, whether TLS is
    // required or only preferred (the default) and offered.
    for (mode, var) in [
        ("require", "PLUMBLINE_SECRET_PG_TLS_REQ_T"),
        ("prefer", "PLUMBLINE_SECRET_PG_TLS_PREF_T"),
    ] {
        let dsn = format!("{} sslmode={mode}", pg.dsn());
        let m = secret_free(
            spec(var, &dsn, query)
                .fetch(None, now())
                .await
                .expect_err("refused"),
            &dsn,
        );
        assert!(m.contains("TLS"), "{mode}: {m}");
        assert!(m.contains("UnknownIssuer"), "{mode}: {m}");
    }
    // Without TLS, on loopback, the same server answers.
    let dsn = format!("{} sslmode=disable", pg.dsn());
    let points = spec("PLUMBLINE_SECRET_PG_TLS_OFF_T", &dsn, query)
        .fetch(None, now())
        .await
        .expect("plain on loopback");
    assert_eq!(points.len(), 1);
}
