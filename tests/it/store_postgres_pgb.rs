//! The PostgreSQL store's customers, insights, ranking history, validation
//! and API token calls against the SQLite store's, the specification: the
//! same calls with the same inputs on a fresh database of each give the same
//! answers (errors compared by their kind), written out as a transcript.
//! PostgreSQL is the real server of [`realdeps`](super::realdeps); each
//! test gets a schema of its own in its database (the tests' role may not
//! create databases), which is what a fresh database is to the store.

use std::fmt::Debug;

use chrono::{Duration, TimeZone, Utc};
use plumbline::domain::history::{RankingSnapshot, SnapshotOrigin, SnapshotSummary};
use plumbline::domain::{
    ApiToken, DesiredOutcome, Direction, Evidence, EvidenceMethod, EvidenceOutcome, Experiment,
    HypothesisStatus, Importance, Insight, InsightKind, Metric, Release, ReleaseOrigin, Role,
    Segment, SurveyWave, Time,
};
use plumbline::store::{
    Changed, CustomerStore, PostgresStore, SnapshotRetention, Store, StoreError, TokenStore,
};

use super::realdeps::StorePair as Pair;

async fn pair(test: &str) -> Option<Pair> {
    super::realdeps::store_pair(test, "pgb").await
}

impl Pair {
    /// Runs plain SQL (literals only, explicit columns) on both databases.
    async fn both(&self, sql: &str) {
        self.raw_pg.batch_execute(sql).await.unwrap();
        let c = rusqlite::Connection::open(&self.lite_path).unwrap();
        c.execute_batch(sql).unwrap();
    }
}

/// What the change log holds, in commit order.
async fn logged(s: &PostgresStore) -> Vec<Changed> {
    s.changes_after(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.changed)
        .collect()
}

fn kind(e: &StoreError) -> &'static str {
    e.kind()
}

/// One call's answer as a line of the transcript.
fn line<T: Debug>(call: &str, r: Result<T, StoreError>) -> String {
    match r {
        Ok(v) => format!("{call} -> {v:?}"),
        Err(e) => format!("{call} -> error {}", kind(&e)),
    }
}

fn at(day: u32, hour: u32) -> Time {
    Utc.with_ymd_and_hms(2026, 11, day, hour, 0, 0).unwrap()
}

// ------------------------------------------------------------- customers

fn segment(id: &str, name: &str, created: Time) -> Segment {
    Segment {
        id: id.into(),
        name: name.into(),
        description: format!("about {name}"),
        weight: 1.5,
        create_time: created,
        update_time: created,
    }
}

fn metric(id: &str) -> Metric {
    Metric {
        id: id.into(),
        name: format!("satisfaction of {id}"),
        unit: "score".into(),
        direction: Direction::HigherIsBetter,
        baseline: 4.0,
        target: 8.0,
        cadence: None,
        source: None,
        create_time: at(1, 0),
        update_time: at(1, 0),
    }
}

fn outcome(id: &str, segment_id: &str) -> DesiredOutcome {
    DesiredOutcome {
        id: id.into(),
        segment_id: segment_id.into(),
        statement: format!("minimize the time to {id}"),
        create_time: at(1, 0),
        update_time: at(1, 0),
    }
}

fn wave(outcome_id: &str, when: Time, satisfaction: f64) -> SurveyWave {
    SurveyWave {
        outcome_id: outcome_id.into(),
        at: when,
        importance: 7.5,
        satisfaction,
        respondents: 40,
    }
}

async fn customers<S: CustomerStore + Store>(s: &S) -> Vec<String> {
    let mut out = Vec::new();
    // Bytewise, "B" sorts before "a".
    for seg in [
        segment("smb", "small", at(1, 0)),
        segment("B2B", "business", at(1, 0)),
        segment("a-team", "team", at(1, 0)),
    ] {
        out.push(line("put_segment", s.put_segment(&seg).await));
    }
    // An update keeps the create time.
    out.push(line(
        "put_segment again",
        s.put_segment(&Segment {
            update_time: at(3, 0),
            ..segment("smb", "small firms", at(2, 0))
        })
        .await,
    ));
    out.push(line(
        "put_outcome",
        s.put_outcome(&outcome("onboard", "smb"), &metric("onboard"))
            .await,
    ));
    out.push(line(
        "put_outcome Export",
        s.put_outcome(&outcome("Export", "B2B"), &metric("Export"))
            .await,
    ));
    out.push(line(
        "put_outcome of a missing segment",
        s.put_outcome(&outcome("lost", "nope"), &metric("lost"))
            .await,
    ));
    let waves = [
        wave("onboard", at(5, 0), 3.0),
        wave("onboard", at(4, 0), 2.0),
        wave("Export", at(4, 0), 6.0),
    ];
    out.push(line("record_waves", s.record_waves(&waves, &[]).await));
    // The same wave again replaces it (and its observation).
    out.push(line(
        "record_waves again",
        s.record_waves(&[wave("onboard", at(5, 0), 3.5)], &[metric("onboard")])
            .await,
    ));
    out.push(line(
        "record_waves of a missing outcome",
        s.record_waves(
            &[wave("onboard", at(6, 0), 9.0), wave("nope", at(5, 0), 1.0)],
            &[],
        )
        .await,
    ));
    out.push(line("load_customers", s.load_customers().await));
    out.push(line(
        "list_observations",
        s.list_observations("onboard").await,
    ));
    out.push(line("delete_segment in use", s.delete_segment("smb").await));
    out.push(line("delete_outcome", s.delete_outcome("onboard").await));
    out.push(line(
        "list_observations after",
        s.list_observations("onboard").await,
    ));
    out.push(line("delete_segment", s.delete_segment("smb").await));
    out.push(line(
        "delete_segment missing",
        s.delete_segment("smb").await,
    ));
    out.push(line("load_customers after", s.load_customers().await));
    out
}

#[tokio::test]
async fn customers_on_postgresql_answer_as_on_sqlite() {
    let Some(p) = pair("customers_on_postgresql_answer_as_on_sqlite").await else {
        return;
    };
    let (pg, lite) = (customers(&p.pg).await, customers(&p.lite).await);
    assert_eq!(pg, lite);
    // Each write that succeeded, and none that failed, is in the change
    // log as a change of the model, for the other sidecars to read back.
    assert_eq!(logged(&p.pg).await, vec![Changed::model(); 11]);
    // The transcript says what it should.
    assert!(
        lite[4].ends_with("-> ()") && lite[6].ends_with("error conflict"),
        "{lite:#?}"
    );
    let load = &lite[10];
    assert!(load.find("\"B2B\"") < load.find("\"a-team\""), "{load}");
    assert!(load.contains("name: \"small firms\""), "{load}");
    // A call with a bad wave writes none of its waves.
    assert!(!load.contains("satisfaction: 9.0"), "{load}");
}

// -------------------------------------------------------------- insights

fn insight(external_id: &str, customer: &str, text: &str) -> Insight {
    Insight {
        source: "zendesk".into(),
        external_id: external_id.into(),
        kind: InsightKind::Ticket,
        text: text.into(),
        time: Some(at(2, 9)),
        url: format!("https://example.zendesk.com/tickets/{external_id}"),
        customer: customer.into(),
        segment_id: "smb".into(),
        importance: Some(Importance::Critical),
        item_keys: vec!["gh/1".into(), "gh/2".into()],
        hypothesis_ids: vec!["h1".into()],
        outcome_ids: Vec::new(),
    }
}

async fn insights<S: Store>(s: &S) -> Vec<String> {
    let mut out = Vec::new();
    let first = [
        insight("10", "cust-a", "the export is unusable"),
        insight("9", "cust-b", "we need SSO"),
        Insight {
            importance: None,
            time: None,
            kind: InsightKind::Quote,
            source: "Zoom".into(),
            ..insight("1", "cust-a", "onboarding took a week")
        },
    ];
    out.push(line("record", s.record_insights(&first, at(3, 0)).await));
    out.push(line(
        "record again",
        s.record_insights(&[insight("10", "cust-c", "the export is slow")], at(4, 0))
            .await,
    ));
    let keys = [
        ("zendesk".to_string(), "9".to_string()),
        ("zendesk".to_string(), "missing".to_string()),
        ("zendesk".to_string(), "10".to_string()),
    ];
    out.push(line("get", s.get_insights(&keys).await));
    out.push(line("all", s.list_all_insights().await));
    out.push(line("forget", s.forget_customer("cust-a").await));
    out.push(line("forget again", s.forget_customer("cust-a").await));
    out.push(line("all after", s.list_all_insights().await));
    out
}

#[tokio::test]
async fn insights_on_postgresql_answer_as_on_sqlite_and_a_forgotten_customer_is_unreadable() {
    let Some(p) = pair("insights_on_postgresql").await else {
        return;
    };
    let (pg, lite) = (insights(&p.pg).await, insights(&p.lite).await);
    assert_eq!(pg, lite);
    assert_eq!(logged(&p.pg).await, vec![Changed::model(); 4]);
    assert!(lite[4].ends_with("-> 1"), "{lite:#?}");
    // Nothing of the forgotten customer is readable through SQL: no row
    // of any table holds their id or their words.
    let left: i64 = p
        .raw_pg
        .query_one(
            "SELECT COUNT(*) FROM insights WHERE customer = 'cust-a' \
             OR text LIKE '%onboarding%' OR external_id = '1'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
    let tables: Vec<String> = p
        .raw_pg
        .query(
            "SELECT table_name::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND data_type = 'text' \
             GROUP BY table_name",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for t in tables {
        let n: i64 = p
            .raw_pg
            .query_one(
                &format!(
                    "SELECT COUNT(*) FROM {t} AS r WHERE r::text LIKE '%cust-a%' \
                     OR r::text LIKE '%onboarding took%'"
                ),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 0, "table {t} still holds the forgotten customer");
    }
}

#[tokio::test]
async fn text_with_nul_is_stored_with_a_replacement_character_and_found_again() {
    let Some(p) = pair("text_with_nul").await else {
        return;
    };
    let i = Insight {
        external_id: "n\0ul".into(),
        ..insight("x", "cust\0z", "a\0b")
    };
    p.pg.record_insights(&[i], at(3, 0)).await.unwrap();
    let got =
        p.pg.get_insights(&[("zendesk".into(), "n\0ul".into())])
            .await
            .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].text, "a\u{FFFD}b");
    assert_eq!(got[0].customer, "cust\u{FFFD}z");
    assert_eq!(p.pg.forget_customer("cust\0z").await.unwrap(), 1);
    let seg = segment("s\0", "na\0me", at(1, 0));
    p.pg.put_segment(&seg).await.unwrap();
    p.pg.delete_segment("s\0").await.unwrap();
    assert!(p.pg.load_customers().await.unwrap().segments.is_empty());
}

// ------------------------------------------------------------ validation

fn evidence(subject: &str, reason: &str, recorded: Time) -> Evidence {
    Evidence {
        hypothesis_id: "h1".into(),
        subject_id: subject.into(),
        method: EvidenceMethod::BeforeAfter,
        outcome: EvidenceOutcome::Supports,
        realized_effect: Some(0.25),
        expected_effect: 0.2,
        confounded: true,
        step: Some(0.3),
        step_se: None,
        delivered: Some(1.0),
        log_likelihood_ratio: 0.7,
        points_before: 14,
        points_after: 14,
        confidence_before: 0.5,
        confidence_after: 0.6,
        status_after: HypothesisStatus::Testing,
        reason: reason.into(),
        record_time: recorded,
    }
}

fn experiment(id: &str, hypothesis_id: &str, when: Time) -> Experiment {
    Experiment {
        id: id.into(),
        hypothesis_id: hypothesis_id.into(),
        lift: 0.12,
        ci_low: 0.01,
        ci_high: 0.2,
        time: when,
        source: "optimizely".into(),
    }
}

fn release(id: &str, when: Time, note: &str) -> Release {
    Release {
        id: id.into(),
        time: when,
        item_keys: vec!["gh/1".into()],
        origin: ReleaseOrigin::Api,
        note: note.into(),
    }
}

/// What the calls under test read but do not write (the value model's
/// rows are the other half of the backend's).
const VALIDATION_ROWS: &str = "
INSERT INTO sources (id, kind, base_url, project_key, token_env, link_rules, estimate_field,
  create_time, update_time) VALUES ('gh', 'github', 'https://api.github.com', 'o/r', '', '[]', '', 0, 0);
INSERT INTO items (key, source_id, external_id, title, body, url, state, labels, parent_key,
  close_time) VALUES
  ('gh/b', 'gh', 'b', 't', '', '', 'closed', '[]', '', 500),
  ('gh/B', 'gh', 'B', 't', '', '', 'closed', '[]', '', 700),
  ('gh/a', 'gh', 'a', 't', '', '', 'closed', '[]', '', NULL),
  ('gh/c', 'gh', 'c', 't', '', '', 'open', '[]', '', 900);
INSERT INTO goals (id, title, description, level, parent_id, key_value_area, weight, create_time,
  update_time) VALUES ('g1', 'grow', '', 'company', '', 'current_value', 1, 0, 0);
INSERT INTO metrics (id, name, unit, direction, baseline, target, create_time, update_time)
  VALUES ('m1', 'signups', 'count', 'higher_is_better', 1, 2, 0, 0);
INSERT INTO hypotheses (id, statement, goal_id, metric_id, expected_effect, confidence, status,
  create_time, update_time) VALUES ('h1', 'sso sells', 'g1', 'm1', 0.2, 0.5, 'testing', 0, 0);
INSERT INTO observations (metric_id, observe_time, value) VALUES
  ('m1', 300, 2.5), ('m1', 100, 1.5), ('m1', 200, -0.0);
";

async fn validation<S: Store>(s: &S) -> Vec<String> {
    let mut out = Vec::new();
    for r in [
        release("r-late", at(9, 0), "second"),
        release("r-early", at(2, 0), "first"),
        release("R-late", at(9, 0), "same time"),
    ] {
        out.push(line("put_release", s.put_release(&r).await));
    }
    // A release stored again is kept as it was.
    out.push(line(
        "put_release again",
        s.put_release(&release("r-late", at(3, 0), "changed")).await,
    ));
    out.push(line("list_releases", s.list_releases().await));
    out.push(line("closed_items", s.closed_items().await));
    out.push(line(
        "put_experiment",
        s.put_experiment(&experiment("e2", "h1", at(4, 0))).await,
    ));
    out.push(line(
        "put_experiment E1",
        s.put_experiment(&experiment("E1", "h1", at(4, 0))).await,
    ));
    out.push(line(
        "put_experiment again",
        s.put_experiment(&experiment("e2", "h1", at(5, 0))).await,
    ));
    out.push(line(
        "put_experiment of a missing hypothesis",
        s.put_experiment(&experiment("e3", "nope", at(5, 0))).await,
    ));
    out.push(line("list_experiments", s.list_experiments().await));
    out.push(line("list_observations", s.list_observations("m1").await));
    out.push(line(
        "list_observations of none",
        s.list_observations("nope").await,
    ));
    out.push(line(
        "record_evidence",
        s.record_evidence(
            &[
                evidence("r-late", "first look", at(10, 0)),
                evidence("experiment:e2", "ab", at(10, 0)),
                evidence("R-late", "other", at(11, 0)),
            ],
            &[],
        )
        .await,
    ));
    // The same hypothesis and subject again replaces it.
    out.push(line(
        "record_evidence again",
        s.record_evidence(
            &[Evidence {
                confounded: false,
                step_se: Some(0.05),
                ..evidence("r-late", "second look", at(12, 0))
            }],
            &[],
        )
        .await,
    ));
    out.push(line(
        "record_evidence of a missing hypothesis",
        s.record_evidence(
            &[
                evidence("r-early", "one call, all or nothing", at(12, 0)),
                Evidence {
                    hypothesis_id: "nope".into(),
                    ..evidence("r-late", "x", at(12, 0))
                },
            ],
            &[],
        )
        .await,
    ));
    out.push(line("list_evidence h1", s.list_evidence(Some("h1")).await));
    out.push(line("list_evidence all", s.list_evidence(None).await));
    out.push(line(
        "list_evidence none",
        s.list_evidence(Some("nope")).await,
    ));
    out
}

#[tokio::test]
async fn releases_experiments_and_evidence_on_postgresql_answer_as_on_sqlite() {
    let Some(p) = pair("releases_experiments_and_evidence_on_postgresql").await else {
        return;
    };
    p.both(VALIDATION_ROWS).await;
    let (pg, lite) = (validation(&p.pg).await, validation(&p.lite).await);
    assert_eq!(pg, lite);
    // Releases, experiments and evidence are read from the store when asked
    // for: no other sidecar needs to hear of them.
    assert_eq!(logged(&p.pg).await, Vec::new());
    assert!(lite[4].contains("note: \"first\""), "{lite:#?}");
    assert!(!lite[4].contains("changed"), "{lite:#?}");
    assert!(lite[8].ends_with("error conflict"), "{lite:#?}");
    assert!(lite[9].ends_with("error conflict"), "{lite:#?}");
    // A call with bad evidence writes none of its evidence.
    assert!(!lite.concat().contains("all or nothing"), "{lite:#?}");
}

// ---------------------------------------------------------------- tokens

fn token(id: &str, name: &str, created: Time) -> ApiToken {
    ApiToken {
        id: id.into(),
        name: name.into(),
        role: Role::Write,
        secret_hash: [id.len() as u8; 32],
        create_time: created,
        revoke_time: None,
    }
}

async fn tokens<S: TokenStore>(s: &S) -> Vec<String> {
    let mut out = Vec::new();
    for t in [
        token("ta", "ci", at(2, 0)),
        token("Tb", "deploy", at(2, 0)),
        token("old", "ops", at(1, 0)),
    ] {
        out.push(line("put_token", s.put_token(&t).await));
    }
    out.push(line(
        "put_token of a live name",
        s.put_token(&token("tc", "ci", at(3, 0))).await,
    ));
    out.push(line(
        "put_token of a used id",
        s.put_token(&token("ta", "other", at(3, 0))).await,
    ));
    out.push(line("list_tokens", s.list_tokens().await));
    out.push(line("revoke", s.revoke_token("ta", at(4, 0)).await));
    out.push(line("revoke again", s.revoke_token("ta", at(5, 0)).await));
    out.push(line(
        "revoke missing",
        s.revoke_token("nope", at(5, 0)).await,
    ));
    // A revoked token's name may be given again.
    out.push(line(
        "put_token of a revoked name",
        s.put_token(&token("tc", "ci", at(6, 0))).await,
    ));
    out.push(line("list_tokens after", s.list_tokens().await));
    out
}

#[tokio::test]
async fn api_tokens_on_postgresql_answer_as_on_sqlite() {
    let Some(p) = pair("api_tokens_on_postgresql").await else {
        return;
    };
    let (pg, lite) = (tokens(&p.pg).await, tokens(&p.lite).await);
    assert_eq!(pg, lite);
    assert!(lite[3].ends_with("error conflict"), "{lite:#?}");
    assert!(lite[4].ends_with("error conflict"), "{lite:#?}");
    assert!(lite[9].ends_with("-> ()"), "{lite:#?}");
}

// --------------------------------------------------------------- history
// The SQLite backend's two retention tests (src/store/sqlite/history.rs),
// run on both.

fn snapshot(when: Time) -> RankingSnapshot {
    RankingSnapshot {
        summary: SnapshotSummary {
            id: 0,
            take_time: when,
            origin: SnapshotOrigin::Background,
            note: String::new(),
            top_n: 10,
            item_count: 0,
        },
        items: Vec::new(),
    }
}

async fn kept<S: Store>(s: &S) -> Vec<Time> {
    s.list_ranking_snapshots(None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.take_time)
        .collect()
}

async fn one_a_day_and_never_more_than_the_maximum<S: Store>(store: &S) -> Vec<String> {
    let mut out = Vec::new();
    let now = Utc.with_ymd_and_hms(2026, 12, 6, 12, 0, 0).unwrap();
    let keep = SnapshotRetention {
        max_snapshots: 6,
        daily_before: now - Duration::days(14),
    };
    // Three a day, 20 and 19 days ago (4h apart), then three today.
    let mut times = Vec::new();
    for days in [20, 19] {
        for h in [0, 4, 8] {
            times.push(now - Duration::days(days) + Duration::hours(h));
        }
    }
    times.extend([0, 1, 2].map(|m| now + Duration::minutes(m)));
    for t in &times {
        let put = store.put_ranking_snapshot(&snapshot(*t), &keep).await;
        out.push(line("put", put.map(|s| (s.take_time, s.item_count))));
    }
    // The last of each old day, and the three recent ones.
    let mut want = vec![times[8], times[7], times[6], times[5], times[2]];
    assert_eq!(kept(store).await, want);
    // Past the maximum, the oldest go.
    let tighter = SnapshotRetention {
        max_snapshots: 3,
        ..keep
    };
    let newest = now + Duration::minutes(5);
    store
        .put_ranking_snapshot(&snapshot(newest), &tighter)
        .await
        .unwrap();
    want.insert(0, newest);
    want.truncate(3);
    assert_eq!(kept(store).await, want);
    let first = store.earliest_ranking_snapshot().await.unwrap().unwrap();
    assert_eq!(first.take_time, want[2]);
    let at = store
        .ranking_snapshot_at(Some(now + Duration::seconds(90)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(at.summary.take_time, times[7]);
    assert!(
        store
            .ranking_snapshot_at(Some(now - Duration::days(30)))
            .await
            .unwrap()
            .is_none()
    );
    // Paging: older than the newest.
    let newest_id = store.list_ranking_snapshots(None, 1).await.unwrap()[0].id;
    let page = store
        .list_ranking_snapshots(Some(newest_id), 1)
        .await
        .unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].take_time, want[1]);
    // Time passing alone: two days on, the three kept (all of today) are
    // past the daily bound and thin to the day's last, without a new
    // snapshot.
    let later = SnapshotRetention {
        max_snapshots: 6,
        daily_before: now + Duration::days(2),
    };
    assert_eq!(store.prune_ranking_snapshots(&later).await.unwrap(), 2);
    assert_eq!(kept(store).await, vec![newest]);
    out.push(line(
        "prune again",
        store.prune_ranking_snapshots(&later).await,
    ));
    out
}

async fn a_day_keeps_its_refinement_snapshot<S: Store>(store: &S) -> Vec<String> {
    let now = Utc.with_ymd_and_hms(2026, 12, 6, 12, 0, 0).unwrap();
    let keep = SnapshotRetention {
        max_snapshots: 100,
        daily_before: now - Duration::days(14),
    };
    // Midnight UTC, 20 days before: the three below fall on that day.
    let day = Utc.with_ymd_and_hms(2026, 11, 16, 0, 0, 0).unwrap();
    let meeting = RankingSnapshot {
        summary: SnapshotSummary {
            origin: SnapshotOrigin::Explicit,
            note: "refinement".into(),
            ..snapshot(day + Duration::hours(10)).summary
        },
        items: Vec::new(),
    };
    store.put_ranking_snapshot(&meeting, &keep).await.unwrap();
    for h in [14, 18] {
        store
            .put_ranking_snapshot(&snapshot(day + Duration::hours(h)), &keep)
            .await
            .unwrap();
    }
    let kept = store.list_ranking_snapshots(None, 100).await.unwrap();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0].note, "refinement");
    let full = store.ranking_snapshot_at(None).await.unwrap().unwrap();
    vec![format!(
        "{:?} {} {} {:?}",
        full.summary.origin, full.summary.note, full.summary.top_n, full.items
    )]
}

#[tokio::test]
async fn past_the_daily_bound_one_a_day_stays_and_never_more_than_the_maximum_on_postgresql() {
    let Some(p) = pair("history retention on postgresql").await else {
        return;
    };
    let pg = one_a_day_and_never_more_than_the_maximum(&p.pg).await;
    let lite = one_a_day_and_never_more_than_the_maximum(&p.lite).await;
    assert_eq!(pg, lite);
}

#[tokio::test]
async fn a_day_thinned_keeps_its_refinement_snapshot_on_postgresql() {
    let Some(p) = pair("history refinement on postgresql").await else {
        return;
    };
    let pg = a_day_keeps_its_refinement_snapshot(&p.pg).await;
    let lite = a_day_keeps_its_refinement_snapshot(&p.lite).await;
    assert_eq!(pg, lite);
}
