//! PullMetric against the real Prometheus and the real PostgreSQL (see
//! realdeps.rs), through the server as a client calls it: the same point
//! pulled twice is stored once, a corrected value for the same time replaces
//! the old one, bad points are refused and reported, an unreachable source
//! stores nothing and says why without its secret, and the score of the
//! items the metric reaches changes after a pull.
//!
//! Both components are shared by the tests of one run; each test uses its
//! own series or table.

use tonic::Code;

use super::metric_pull::{get_metric, gone_url, observations, pull, set_source};
use super::realdeps::{self, day, free_port, require, signups_history};
use crate::common::*;
use plumbline::proto as pb;

const DAY: i64 = 86_400;

fn prometheus_source(base_url: &str, query: &str) -> pb::MetricSource {
    pb::MetricSource {
        poll_interval: None,
        kind: Some(pb::metric_source::Kind::Prometheus(
            pb::PrometheusMetricSource {
                base_url: base_url.into(),
                query: query.into(),
                step: Some(prost_types::Duration {
                    seconds: DAY,
                    nanos: 0,
                }),
                // The history is dated around a fixed day of 2026.
                lookback: Some(prost_types::Duration {
                    seconds: 400 * DAY,
                    nanos: 0,
                }),
                ..Default::default()
            },
        )),
    }
}

fn sql_source(dsn_env: &str, query: &str) -> pb::MetricSource {
    pb::MetricSource {
        poll_interval: None,
        kind: Some(pb::metric_source::Kind::Sql(pb::SqlMetricSource {
            dsn_env: dsn_env.into(),
            query: query.into(),
            ..Default::default()
        })),
    }
}

/// A goal, a hypothesis on `metric_id` and one item linked to it: the
/// item's value is proportional to the metric's gap.
async fn item_on(s: &TestServer, metric_id: &str) -> String {
    create_goal(s, goal("G", pb::GoalLevel::Strategic, "", None)).await;
    create_hypothesis(s, hypothesis("H", "G", metric_id, 0.5, 0.5)).await;
    create_source(
        s,
        pb::Source {
            id: "app".into(),
            kind: pb::TrackerKind::Push as i32,
            ..Default::default()
        },
    )
    .await;
    upsert(s, vec![item("app", "1", "Faster sign-up")]).await;
    link(s, "app/1", "H", 1.0).await;
    "app/1".into()
}

/// The pull fails with `code`, names the metric and `cause`, never shows
/// `secret`, and leaves the stored observations as they were; the pull
/// status keeps the cause.
async fn assert_pull_fails(s: &TestServer, id: &str, code: Code, cause: &str, secret: &str) {
    let before = observations(s, id).await;
    let e = pull(s, id).await.expect_err("the pull fails");
    assert_eq!(e.code(), code, "{e:?}");
    let msg = e.message();
    assert!(msg.contains(&format!("metric \"{id}\"")), "{msg}");
    assert!(msg.contains(cause), "{msg}");
    assert!(
        secret.is_empty() || !msg.contains(secret),
        "the secret shows: {msg}"
    );
    assert_eq!(observations(s, id).await, before, "stored points changed");
    let st = get_metric(s, id).await.pull_status.expect("status");
    assert!(st.last_error.contains(cause), "{st:?}");
    assert!(
        secret.is_empty() || !st.last_error.contains(secret),
        "{st:?}"
    );
}

#[tokio::test]
async fn prometheus_pull_stores_a_point_once_replaces_a_corrected_one_and_moves_the_score() {
    let Some(prom) = require(
        "prometheus_pull_stores_a_point_once_replaces_a_corrected_one_and_moves_the_score",
        realdeps::prometheus().await,
    ) else {
        return;
    };
    let s = TestServer::start().await;
    let query = r#"signups{env="test"}"#;
    create_metric(
        &s,
        pb::Metric {
            source: Some(prometheus_source(&prom.base_url, query)),
            ..metric("signups", 100.0, 200.0)
        },
    )
    .await;
    let key = item_on(&s, "signups").await;
    let before = item_score(&s, &key).await.value;

    let history = signups_history();
    let (_, done) = pull(&s, "signups").await.expect("first pull");
    assert_eq!(done.stored_count as usize, history.len());
    let last = history.last().unwrap().1;
    // Gap from 1 (the baseline) to (200 - 113.5) / 100.
    let after = item_score(&s, &key).await.value;
    let gap = (200.0 - last) / 100.0;
    assert!(
        before > 0.0 && (after - before * gap).abs() < 1e-9,
        "before {before}, after {after}, gap {gap}"
    );

    // The next pull asks again from the last stored point, which comes back
    // as it was: stored once.
    let stored = observations(&s, "signups").await;
    let (_, again) = pull(&s, "signups").await.expect("second pull");
    assert_eq!((again.stored_count, again.refused_count), (0, 0));
    assert_eq!(observations(&s, "signups").await, stored);
    assert_eq!(item_score(&s, &key).await.value, after);

    // The operator corrects the expression: the point at the same time
    // comes back with another value and replaces the old one.
    set_source(
        &s,
        "signups",
        prometheus_source(&prom.base_url, &format!("{query} * 1.5")),
    )
    .await;
    let (_, corrected) = pull(&s, "signups")
        .await
        .expect("pull after the correction");
    assert_eq!(corrected.stored_count, 1, "the last point replaced");
    let m = corrected.metric.expect("metric");
    assert_eq!(m.observation_count as usize, history.len());
    assert_eq!(m.current_value, Some(last * 1.5));
    let now = observations(&s, "signups").await;
    assert_eq!(now.len(), stored.len());
    assert_eq!(now[..now.len() - 1], stored[..stored.len() - 1]);
    assert_eq!(now.last().unwrap(), &(stored.last().unwrap().0, last * 1.5));
    let corrected_score = item_score(&s, &key).await.value;
    let gap = (200.0 - last * 1.5) / 100.0;
    assert!(
        (corrected_score - before * gap).abs() < 1e-9,
        "before {before}, after the correction {corrected_score}, gap {gap}"
    );
}

#[tokio::test]
async fn prometheus_pull_refuses_nan_and_infinity_and_an_unreachable_server_stores_nothing() {
    let Some(prom) = require(
        "prometheus_pull_refuses_nan_and_infinity_and_an_unreachable_server_stores_nothing",
        realdeps::prometheus().await,
    ) else {
        return;
    };
    let s = TestServer::start().await;
    // `odd` holds 1, NaN and +Inf on the three days before the tests' today.
    create_metric(
        &s,
        pb::Metric {
            source: Some(prometheus_source(&prom.base_url, "odd")),
            ..metric("odd", 0.0, 10.0)
        },
    )
    .await;
    let (fetched, done) = pull(&s, "odd").await.expect("pull");
    assert_eq!(fetched.iter().map(|f| f.point_count).sum::<i32>(), 3);
    let refused: Vec<&String> = fetched.iter().flat_map(|f| &f.refused).collect();
    assert_eq!(
        (done.stored_count, done.refused_count),
        (1, 2),
        "{refused:?}"
    );
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert_eq!(
        observations(&s, "odd").await,
        vec![(day(3).timestamp(), 1.0)]
    );
    let st = get_metric(&s, "odd").await.pull_status.expect("status");
    assert_eq!(st.last_refused_count, 2);
    assert!(st.last_error.contains("2 point(s) refused"), "{st:?}");

    // The server stops answering (a port nobody listens on): nothing stored,
    // the cause named.
    set_source(&s, "odd", prometheus_source(&gone_url(), "odd")).await;
    assert_pull_fails(&s, "odd", Code::Unavailable, "could not be reached", "").await;
    assert_eq!(
        observations(&s, "odd").await,
        vec![(day(3).timestamp(), 1.0)]
    );
}

/// The tests of this file that read the real PostgreSQL name its DSN
/// through this variable.
const PG_DSN_ENV: &str = "PLB_TEST_PULL_REAL_SQL_DSN";
/// A DSN of a port nobody listens on, with the real password in it.
const PG_GONE_DSN_ENV: &str = "PLB_TEST_PULL_REAL_SQL_GONE_DSN";

/// Points the variables at `pg`, the shared server this test holds: it is
/// started again (on another port) once no test holds it, so the value is
/// set by every test, while it holds the server, not once per run.
fn set_pg_vars(pg: &realdeps::Postgres) {
    static SETTING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = SETTING.lock().unwrap_or_else(|e| e.into_inner());
    let gone = pg.dsn().replace(
        &format!("port={}", pg.port),
        &format!("port={}", free_port()),
    );
    // SAFETY: as in metric_pull.rs' PostgreSQL test: only this file's tests
    // read these variables, and every test that holds the server sets the
    // same value.
    unsafe {
        std::env::set_var(PG_DSN_ENV, pg.dsn());
        std::env::set_var(PG_GONE_DSN_ENV, gone);
    }
}

#[tokio::test]
async fn sql_pull_stores_a_row_once_replaces_a_corrected_one_and_moves_the_score() {
    let Some(pg) = require(
        "sql_pull_stores_a_row_once_replaces_a_corrected_one_and_moves_the_score",
        realdeps::postgres().await,
    ) else {
        return;
    };
    set_pg_vars(&pg);
    let db = pg.owner().await;
    db.batch_execute("CREATE TABLE pull_real_daily (day date PRIMARY KEY, v float8 NOT NULL);")
        .await
        .expect("table");
    for (d, v) in [(5, 2.0), (4, 2.5), (3, 3.0)] {
        db.execute(
            "INSERT INTO pull_real_daily VALUES ($1::timestamptz::date, $2)",
            &[&day(d), &v],
        )
        .await
        .expect("row");
    }
    let s = TestServer::start().await;
    // `>=`: the last stored day comes back on every pull.
    create_metric(
        &s,
        pb::Metric {
            source: Some(sql_source(
                PG_DSN_ENV,
                "SELECT day, v FROM pull_real_daily WHERE day >= :since ORDER BY day",
            )),
            ..metric("pg", 2.0, 4.0)
        },
    )
    .await;
    let key = item_on(&s, "pg").await;
    let before = item_score(&s, &key).await.value;
    let (_, done) = pull(&s, "pg").await.expect("first pull");
    assert_eq!(done.stored_count, 3);
    let after = item_score(&s, &key).await.value;
    // Gap from 1 (the baseline) to 0.5 (3 of 2..4).
    assert!(
        before > 0.0 && (before - 2.0 * after).abs() < 1e-9,
        "before {before}, after {after}"
    );

    let stored = observations(&s, "pg").await;
    let (_, again) = pull(&s, "pg").await.expect("second pull");
    assert_eq!((again.stored_count, again.refused_count), (0, 0));
    assert_eq!(observations(&s, "pg").await, stored);

    // The row of the last day is corrected in the database.
    db.execute(
        "UPDATE pull_real_daily SET v = 3.5 WHERE day = $1::timestamptz::date",
        &[&day(3)],
    )
    .await
    .expect("update");
    let (_, corrected) = pull(&s, "pg").await.expect("pull after the correction");
    assert_eq!(corrected.stored_count, 1);
    let m = corrected.metric.expect("metric");
    assert_eq!((m.observation_count, m.current_value), (3, Some(3.5)));
    assert_eq!(
        observations(&s, "pg").await,
        vec![
            (day(5).timestamp(), 2.0),
            (day(4).timestamp(), 2.5),
            (day(3).timestamp(), 3.5)
        ]
    );
    // Gap 0.25 now: half the score after the first pull.
    let corrected_score = item_score(&s, &key).await.value;
    assert!(
        (after - 2.0 * corrected_score).abs() < 1e-9,
        "after {after}, corrected {corrected_score}"
    );
}

#[tokio::test]
async fn sql_pull_refuses_bad_rows_and_an_unreachable_database_stores_nothing() {
    let Some(pg) = require(
        "sql_pull_refuses_bad_rows_and_an_unreachable_database_stores_nothing",
        realdeps::postgres().await,
    ) else {
        return;
    };
    set_pg_vars(&pg);
    let db = pg.owner().await;
    db.batch_execute("CREATE TABLE pull_real_bad (at timestamptz PRIMARY KEY, v float8);")
        .await
        .expect("table");
    // A good row, NaN, NULL, and a row dated a year after the real today.
    let future = chrono::Utc::now() + chrono::Duration::days(365);
    for (at, v) in [
        (day(4), Some(2.5)),
        (day(3), Some(f64::NAN)),
        (day(2), None),
        (future, Some(3.0)),
    ] {
        db.execute("INSERT INTO pull_real_bad VALUES ($1, $2)", &[&at, &v])
            .await
            .expect("row");
    }
    let s = TestServer::start().await;
    create_metric(
        &s,
        pb::Metric {
            source: Some(sql_source(
                PG_DSN_ENV,
                "SELECT at, v FROM pull_real_bad WHERE at > :since ORDER BY at",
            )),
            ..metric("pg", 2.0, 4.0)
        },
    )
    .await;
    let (fetched, done) = pull(&s, "pg").await.expect("pull");
    let refused: Vec<&String> = fetched.iter().flat_map(|f| &f.refused).collect();
    assert_eq!(
        (done.stored_count, done.refused_count),
        (1, 3),
        "{refused:?}"
    );
    assert!(
        refused.iter().any(|r| r.contains("in the future")),
        "{refused:?}"
    );
    assert_eq!(
        observations(&s, "pg").await,
        vec![(day(4).timestamp(), 2.5)]
    );
    let st = get_metric(&s, "pg").await.pull_status.expect("status");
    assert_eq!(st.last_refused_count, 3);

    // The database goes away: nothing stored, the cause named, and neither
    // the DSN nor its password shown.
    set_source(
        &s,
        "pg",
        sql_source(
            PG_GONE_DSN_ENV,
            "SELECT at, v FROM pull_real_bad WHERE at > :since ORDER BY at",
        ),
    )
    .await;
    assert_pull_fails(
        &s,
        "pg",
        Code::Unavailable,
        "Connection refused",
        realdeps::PG_PASSWORD,
    )
    .await;
    assert_eq!(
        observations(&s, "pg").await,
        vec![(day(4).timestamp(), 2.5)]
    );
}
