//! The PostgreSQL store's core calls (items, links, the value model, sync
//! state, metric pulls, start-up's load) against the SQLite store, the
//! specification: the same calls with the same inputs on both give the
//! same answers, the same errors and the same data read back at start-up.
//! PostgreSQL is the real one of Debian's package ([`super::realdeps`]);
//! each test gets a schema of its own in the shared server.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use plumbline::domain::*;
use plumbline::store::{Batch, ItemFilter, ModelWrite, Store, StoreError};

use super::realdeps;

type Pair = realdeps::StorePair;

async fn pair(test: &str) -> Option<Pair> {
    realdeps::store_pair(test, "core").await
}

/// A time with nanoseconds, so that a rounding would show.
fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_780_000_000 + secs, 123_456_789)
        .unwrap()
}

fn source(id: &str) -> Source {
    Source {
        id: id.into(),
        kind: TrackerKind::Github,
        base_url: "https://api.github.com".into(),
        project_key: format!("acme/{id}"),
        token_env: "GITHUB_TOKEN".into(),
        link_rules: LinkRules {
            label_prefix: "value:".into(),
            body_keyword: "Value:".into(),
            disabled: false,
        },
        estimate_field: String::new(),
        create_time: at(0),
        update_time: at(1),
    }
}

fn goal(id: &str, parent: &str) -> Goal {
    Goal {
        id: id.into(),
        title: format!("goal {id}"),
        description: "why".into(),
        level: if parent.is_empty() {
            GoalLevel::Strategic
        } else {
            GoalLevel::Intermediate
        },
        parent_id: parent.into(),
        key_value_area: KeyValueArea::CurrentValue,
        weight: 0.5,
        create_time: at(2),
        update_time: at(3),
    }
}

fn metric(id: &str) -> Metric {
    Metric {
        id: id.into(),
        name: format!("metric {id}"),
        unit: "%".into(),
        direction: Direction::HigherIsBetter,
        baseline: 10.0,
        target: 20.0,
        cadence: Some(chrono::Duration::nanoseconds(86_400_000_000_001)),
        source: None,
        create_time: at(4),
        update_time: at(5),
    }
}

fn hypothesis(id: &str, goal: &str, metric: &str) -> Hypothesis {
    Hypothesis {
        id: id.into(),
        statement: format!("{id} moves {metric}"),
        goal_id: goal.into(),
        metric_id: metric.into(),
        expected_effect: 0.3,
        confidence: 0.6,
        status: HypothesisStatus::Testing,
        check_time: Some(at(6)),
        create_time: at(7),
        update_time: at(8),
    }
}

fn item(source: &str, id: &str, title: &str) -> Item {
    Item {
        source_id: source.into(),
        external_id: id.into(),
        title: title.into(),
        body: format!("body of {id}\n- [ ] a task"),
        url: format!("https://example.test/{id}"),
        state: ItemState::Open,
        labels: vec!["bug".into(), format!("l{}", id.len())],
        estimate: Some(0.1 + id.len() as f64 / 3.0),
        parent_key: String::new(),
        create_time: Some(at(10)),
        update_time: Some(at(11)),
        close_time: None,
        votes: Some(3),
    }
}

fn link(item_key: &str, hypothesis: &str, contribution: f64, t: i64) -> Link {
    Link {
        item_key: item_key.into(),
        hypothesis_id: hypothesis.into(),
        contribution,
        origin: LinkOrigin::Api,
        rationale: format!("because {t}"),
        create_time: at(t),
        update_time: at(t + 1),
    }
}

fn kind(e: &StoreError) -> &'static str {
    e.kind()
}

/// A call's answer as the transcript records it (errors by their kind).
fn said<T: std::fmt::Debug>(r: Result<T, StoreError>) -> String {
    match r {
        Ok(v) => format!("{v:?}"),
        Err(e) => format!("Err({})", kind(&e)),
    }
}

/// Everything start-up would read, in one order whatever the backend's.
async fn loaded(s: &dyn Store) -> String {
    let (model, mut items, mut links) = s.load().await.unwrap().collect_all().await.unwrap();
    items.sort_by(|a, b| a.key.cmp(&b.key));
    links.sort_by(|a, b| (&a.item_key, &a.hypothesis_id).cmp(&(&b.item_key, &b.hypothesis_id)));
    let mut removed = model.removed.clone();
    removed.sort_by(|a, b| a.0.cmp(&b.0));
    format!(
        "sources {:?}\ngoals {:?}\nmetrics {:?}\nhypotheses {:?}\nremoved {removed:?}\nitems {items:?}\nlinks {links:?}",
        model.sources, model.goals, model.metrics, model.hypotheses
    )
}

fn sorted(mut links: Vec<Link>) -> Vec<Link> {
    links.sort_by(|a, b| (&a.item_key, &a.hypothesis_id).cmp(&(&b.item_key, &b.hypothesis_id)));
    links
}

/// Every core call, in an order that exercises replaces, removes,
/// restores, splits and deletes; the transcript of their answers.
async fn script(s: &dyn Store) -> Vec<String> {
    let mut out = Vec::new();
    let mut say = |what: &str, answer: String| out.push(format!("{what}: {answer}"));

    say("source gh", said(s.put_source(&source("gh")).await));
    say("source gl", said(s.put_source(&source("gl")).await));
    let mut gh = source("gh");
    gh.project_key = "acme/renamed".into();
    gh.create_time = at(99); // kept: the stored create time stays
    say("source gh again", said(s.put_source(&gh).await));
    say("goal G", said(s.put_goal(&goal("G", "")).await));
    say("goal G2", said(s.put_goal(&goal("G2", "G")).await));
    say("goal beta", said(s.put_goal(&goal("beta", "G")).await));
    say("source Zed", said(s.put_source(&source("Zed")).await));
    say("metric Z", said(s.put_metric(&metric("Z")).await));
    say("metric m", said(s.put_metric(&metric("m")).await));
    say("metric n", said(s.put_metric(&metric("n")).await));
    let obs = |m: &str, t: i64, v: f64| Observation {
        metric_id: m.into(),
        value: v,
        observe_time: at(t),
    };
    say(
        "observations",
        said(
            s.record_observations(&[
                obs("n", 1, 1.0),
                obs("m", 2, 2.0),
                obs("m", 1, 3.0),
                obs("m", 2, 4.0),
            ])
            .await,
        ),
    );
    say(
        "hypothesis H",
        said(s.put_hypothesis(&hypothesis("H", "G", "m")).await),
    );
    say(
        "hypothesis K",
        said(s.put_hypothesis(&hypothesis("K", "G2", "n")).await),
    );
    say(
        "hypothesis h2",
        said(s.put_hypothesis(&hypothesis("h2", "beta", "Z")).await),
    );
    let mut h = hypothesis("H", "G", "m");
    h.confidence = 0.75;
    h.create_time = at(100);
    say("hypothesis H again", said(s.put_hypothesis(&h).await));

    // A sync page: items (one key twice: the later wins), links, a state.
    let mut twice = item("gh", "1", "first title");
    twice.votes = None;
    let page = vec![
        twice,
        item("gh", "2", "two"),
        item("gh", "10", "ten"),
        item("gh", "1", "second title"),
        item("gl", "a", "gitlab a"),
        item("gh", "a-team", "lower case"),
        item("gh", "B2B", "upper case"),
    ];
    let mut state = SyncState::never("gh");
    state.cursor = SyncCursor {
        time: Some(at(11)),
        ids: vec!["1".into(), "2".into()],
    };
    state.state = SyncRunState::Running;
    state.last_start_time = Some(at(12));
    state.last_request_count = 4;
    let links = [
        link("gh/1", "H", 0.5, 20),
        link("gh/2", "H", 0.25, 21),
        link("gh/2", "K", 0.75, 22),
        link("gh/1", "H", 0.6, 23), // the same link again: the later wins, first create time
    ];
    say(
        "page 1",
        said(s.upsert_items(page, &[], &links, Some(&state)).await),
    );
    say("sync state", said(s.get_sync_state("gh").await));
    say("sync state of gl", said(s.get_sync_state("gl").await));
    // The next page: a link removed, one replaced (its create time kept).
    let mut closed = item("gh", "2", "two, closed");
    closed.state = ItemState::Closed;
    closed.close_time = Some(at(30));
    closed.labels = vec!["done".into()];
    state.cursor.time = Some(at(31));
    say(
        "page 2",
        said(
            s.upsert_items(
                vec![closed],
                &[("gh/2".into(), "K".into()), ("gh/9".into(), "K".into())],
                &[link("gh/1", "K", 0.4, 40), link("gh/1", "H", 0.9, 41)],
                Some(&state),
            )
            .await,
        ),
    );
    say(
        "links of gh/1, gh/2, nope",
        said(
            s.links_of_items(&["gh/1".into(), "gh/2".into(), "nope".into()])
                .await
                .map(sorted),
        ),
    );
    say(
        "get items",
        said(
            s.get_items(&["gh/10".into(), "nope".into(), "gh/1".into()])
                .await,
        ),
    );
    say(
        "body search",
        said(s.items_with_body_text("gh", "of 1").await),
    );
    say(
        "body search, empty",
        said(s.items_with_body_text("gh", "").await),
    );

    // Removal and restore.
    let removal = Removal {
        remove_time: at(50),
        reason: RemovalReason::Moved,
        detail: "to acme/other".into(),
    };
    say(
        "remove gh/10",
        said(
            s.upsert_and_remove_items(
                Vec::new(),
                &[],
                &[],
                None,
                &[],
                &[("gh/10".into(), removal.clone())],
            )
            .await,
        ),
    );
    say(
        "list default",
        said(
            s.list_items(&ItemFilter::default(), None, 100, usize::MAX)
                .await,
        ),
    );
    say(
        "list with removed",
        said(
            s.list_items(
                &ItemFilter {
                    include_removed: true,
                    ..ItemFilter::default()
                },
                None,
                100,
                usize::MAX,
            )
            .await,
        ),
    );
    say("loaded after removal", loaded(s).await);
    say(
        "restore gh/10",
        said(
            s.upsert_and_remove_items(
                vec![item("gh", "10", "ten again")],
                &[],
                &[],
                None,
                &["gh/10".into()],
                &[],
            )
            .await,
        ),
    );

    // Filters, paging and the byte bound.
    for (name, filter) in [
        (
            "source gh",
            ItemFilter {
                source_id: Some("gh".into()),
                ..ItemFilter::default()
            },
        ),
        (
            "closed",
            ItemFilter {
                state: Some(ItemState::Closed),
                ..ItemFilter::default()
            },
        ),
        (
            "label bug",
            ItemFilter {
                label: Some("bug".into()),
                ..ItemFilter::default()
            },
        ),
        (
            "label none",
            ItemFilter {
                label: Some("l9".into()),
                ..ItemFilter::default()
            },
        ),
    ] {
        say(
            name,
            said(s.list_items(&filter, None, 100, usize::MAX).await),
        );
    }
    let keys = |r: Result<Vec<Item>, StoreError>| {
        said(r.map(|v| v.iter().map(Item::key).collect::<Vec<_>>()))
    };
    let all = ItemFilter::default();
    say(
        "after gh/1, 2",
        keys(s.list_items(&all, Some("gh/1"), 2, usize::MAX).await),
    );
    say(
        "limit 0",
        keys(s.list_items(&all, None, 0, usize::MAX).await),
    );
    say("max bytes 0", keys(s.list_items(&all, None, 100, 0).await));
    say("max bytes 1", keys(s.list_items(&all, None, 100, 1).await));
    let first = s.get_items(&["gh/1".into()]).await.unwrap()[0]
        .clone()
        .unwrap();
    let bound = first.text_len() + 1;
    say(
        "max bytes past one",
        keys(s.list_items(&all, None, 100, bound).await),
    );

    // A split: slices, links moved, the record replaced by a later one.
    let split = ItemSplit {
        item_key: "gh/1".into(),
        plan_kind: "hypothesis".into(),
        hypothesis_ids: vec!["H".into(), "K".into()],
        create_time: at(60),
    };
    say(
        "split",
        said(
            s.apply_split(
                vec![item("gh", "1-1", "slice 1"), item("gh", "1-2", "slice 2")],
                &[("gh/1".into(), "H".into()), ("gh/1".into(), "K".into())],
                &[link("gh/1-1", "H", 0.9, 61), link("gh/1-2", "K", 0.4, 62)],
                &split,
            )
            .await,
        ),
    );
    let mut again = split.clone();
    again.plan_kind = "task".into();
    again.hypothesis_ids = vec!["K".into()];
    say(
        "split again",
        said(s.apply_split(Vec::new(), &[], &[], &again).await),
    );
    say("splits", said(s.list_item_splits().await));

    // Links one by one.
    say(
        "put link",
        said(s.put_link(&link("gl/a", "K", 0.2, 70)).await),
    );
    say(
        "put link again",
        said(s.put_link(&link("gl/a", "K", 0.3, 71)).await),
    );
    say("delete link", said(s.delete_link("gh/1-1", "H").await));
    say(
        "delete no link",
        said(s.delete_link("gh/1-1", "nope").await),
    );

    // Metric pulls.
    let pull = PullStatus {
        metric_id: "n".into(),
        last_pull_time: Some(at(80)),
        last_success_time: Some(at(80)),
        last_stored: 2,
        last_refused: 1,
        last_error: "one refused".into(),
    };
    say(
        "pull",
        said(
            s.record_pull(&[obs("n", 5, 5.0), obs("n", 6, 6.0)], &pull)
                .await,
        ),
    );
    let failed = PullStatus {
        metric_id: "m".into(),
        last_pull_time: Some(at(81)),
        last_error: "HTTP 503".into(),
        ..PullStatus::default()
    };
    say("failed pull", said(s.record_pull(&[], &failed).await));
    let z = PullStatus {
        metric_id: "Z".into(),
        last_pull_time: Some(at(82)),
        ..PullStatus::default()
    };
    say(
        "pull of Z",
        said(s.record_pull(&[obs("Z", 1, 1.5)], &z).await),
    );
    say("pulls", said(s.list_metric_pulls().await));
    say("loaded", loaded(s).await);

    // A whole model in one call.
    let mut m2 = metric("m2");
    m2.cadence = None;
    let write = ModelWrite {
        sources: vec![source("push")],
        goals: vec![goal("G3", "G")],
        metrics: vec![m2],
        observations: vec![obs("m2", 1, 0.5), obs("m", 9, 9.0)],
        hypotheses: vec![hypothesis("H3", "G3", "m2")],
        items: vec![item("push", "p1", "pushed")],
        links: vec![link("push/p1", "H3", 1.0, 90)],
        remove_links: vec![("gl/a".into(), "K".into())],
        delete_hypotheses: vec!["H".into()],
        delete_metrics: Vec::new(),
        delete_goals: Vec::new(),
        delete_sources: vec!["gl".into()],
        ..ModelWrite::default()
    };
    say("apply model", said(s.apply_model(&write).await));
    say("delete hypothesis K", said(s.delete_hypothesis("K").await));
    say("delete metric n", said(s.delete_metric("n").await));
    say("delete goal G2", said(s.delete_goal("G2").await));
    say("delete source gh", said(s.delete_source("gh").await));
    say("delete source nope", said(s.delete_source("nope").await));
    let mut st = SyncState::never("push");
    st.last_error = "none".into();
    say("put sync state", said(s.put_sync_state(&st).await));
    say("sync state", said(s.get_sync_state("push").await));
    say(
        "sync state of gh, gone with it",
        said(s.get_sync_state("gh").await),
    );
    say("loaded at the end", loaded(s).await);
    out
}

fn same(lite: &[String], pg: &[String]) {
    for (l, p) in lite.iter().zip(pg) {
        assert_eq!(p, l, "PostgreSQL (left) and SQLite (right) differ");
    }
    assert_eq!(lite.len(), pg.len());
}

#[tokio::test]
async fn every_core_call_answers_as_sqlite_does() {
    let Some(p) = pair("every_core_call_answers_as_sqlite_does").await else {
        return;
    };
    let lite = script(&p.lite).await;
    let pg = script(&p.pg).await;
    // The script's steps succeed: a transcript of errors would also match.
    for line in &lite {
        let errs = ["delete no link", "sync state of"];
        assert!(
            !line.contains("Err(") || errs.iter().any(|e| line.starts_with(e)),
            "{line}"
        );
    }
    same(&lite, &pg);
}

/// Writes the model forbids are refused the same way, and a call that
/// fails part-way leaves nothing behind.
async fn refusals(s: &dyn Store) -> Vec<String> {
    let mut out = Vec::new();
    let mut say = |what: &str, answer: String| out.push(format!("{what}: {answer}"));
    s.put_source(&source("gh")).await.unwrap();
    s.put_goal(&goal("G", "")).await.unwrap();
    s.put_metric(&metric("m")).await.unwrap();
    s.put_hypothesis(&hypothesis("H", "G", "m")).await.unwrap();
    say(
        "item of an unknown source",
        said(
            s.upsert_items(vec![item("nope", "1", "x")], &[], &[], None)
                .await,
        ),
    );
    say(
        "a page whose last link names no hypothesis",
        said(
            s.upsert_items(
                vec![item("gh", "1", "x"), item("gh", "2", "y")],
                &[],
                &[link("gh/1", "H", 0.5, 1), link("gh/2", "nope", 0.5, 2)],
                Some(&SyncState::never("gh")),
            )
            .await,
        ),
    );
    say(
        "nothing of it stored",
        said(s.get_items(&["gh/1".into()]).await),
    );
    say("nor its sync state", said(s.get_sync_state("gh").await));
    say(
        "link to no item",
        said(s.put_link(&link("gh/9", "H", 0.5, 3)).await),
    );
    say(
        "hypothesis of no goal",
        said(s.put_hypothesis(&hypothesis("K", "nope", "m")).await),
    );
    say(
        "metric a hypothesis names",
        said(s.delete_metric("m").await),
    );
    say("goal a hypothesis names", said(s.delete_goal("G").await));
    say(
        "sync state of no source",
        said(s.put_sync_state(&SyncState::never("nope")).await),
    );
    say(
        "pull of no metric",
        said(
            s.record_pull(
                &[],
                &PullStatus {
                    metric_id: "nope".into(),
                    ..PullStatus::default()
                },
            )
            .await,
        ),
    );
    let bad = ModelWrite {
        goals: vec![goal("G9", "")],
        hypotheses: vec![hypothesis("H9", "G9", "nope")],
        ..ModelWrite::default()
    };
    say(
        "a model write failing late",
        said(s.apply_model(&bad).await),
    );
    say("loaded", loaded(s).await);
    out
}

#[tokio::test]
async fn bad_writes_fail_as_on_sqlite_and_leave_nothing() {
    let Some(p) = pair("bad_writes_fail_as_on_sqlite_and_leave_nothing").await else {
        return;
    };
    let lite = refusals(&p.lite).await;
    let pg = refusals(&p.pg).await;
    same(&lite, &pg);
    let conflicts = lite.iter().filter(|l| l.ends_with("Err(conflict)")).count();
    assert_eq!(conflicts, 9, "{lite:#?}");
}

#[tokio::test]
async fn text_with_nul_is_stored_with_a_replacement_character() {
    let Some(p) = pair("text_with_nul_is_stored_with_a_replacement_character").await else {
        return;
    };
    let s = &p.pg;
    s.put_source(&source("gh")).await.unwrap();
    let mut it = item("gh", "1", "a\0title");
    it.body = "body\0".into();
    it.labels = vec!["x\0y".into()];
    s.upsert_items(vec![it], &[], &[], None).await.unwrap();
    let back = s.get_items(&["gh/1".into()]).await.unwrap()[0]
        .clone()
        .unwrap();
    assert_eq!(back.title, "a\u{FFFD}title");
    assert_eq!(back.body, "body\u{FFFD}");
    assert_eq!(back.labels, vec!["x\u{FFFD}y".to_string()]);
    let found = s
        .list_items(
            &ItemFilter {
                label: Some("x\0y".into()),
                ..ItemFilter::default()
            },
            None,
            10,
            usize::MAX,
        )
        .await
        .unwrap();
    assert_eq!(found.len(), 1, "the label filter reads the stored label");
    let found = s.items_with_body_text("gh", "body\0").await.unwrap();
    assert_eq!(found.len(), 1, "and the body search the stored body");
}

/// Start-up reads a big table in chunks (never all at once), every row
/// once, and a hint of how many items come.
#[tokio::test]
async fn load_streams_items_and_links_in_chunks() {
    let Some(p) = pair("load_streams_items_and_links_in_chunks").await else {
        return;
    };
    const N: usize = 20_000;
    let mut expected_items = BTreeMap::new();
    for s in [&p.pg as &dyn Store, &p.lite] {
        s.put_source(&source("gh")).await.unwrap();
        s.put_goal(&goal("G", "")).await.unwrap();
        s.put_metric(&metric("m")).await.unwrap();
        s.put_hypothesis(&hypothesis("H", "G", "m")).await.unwrap();
        for chunk in (0..N).collect::<Vec<_>>().chunks(2500) {
            let items: Vec<Item> = chunk
                .iter()
                .map(|i| item("gh", &i.to_string(), &format!("item {i}")))
                .collect();
            let links: Vec<Link> = chunk
                .iter()
                .filter(|i| *i % 2 == 0)
                .map(|i| link(&format!("gh/{i}"), "H", 0.5, 1))
                .collect();
            s.upsert_items(items, &[], &links, None).await.unwrap();
        }
        let removal = Removal {
            remove_time: at(1),
            reason: RemovalReason::NotReturned,
            detail: String::new(),
        };
        s.upsert_and_remove_items(Vec::new(), &[], &[], None, &[], &[("gh/0".into(), removal)])
            .await
            .unwrap();
    }
    let mut load = p.pg.load().await.unwrap();
    assert_eq!(load.item_count_hint, N);
    let (mut item_batches, mut link_batches) = (0, 0);
    let (mut items, mut links) = (Vec::new(), Vec::new());
    while let Some(batch) = load.next_batch().await {
        match batch.unwrap() {
            Batch::Items(v) => {
                item_batches += 1;
                assert!(v.len() < N / 2, "a chunk of {} items", v.len());
                items.extend(v);
            }
            Batch::Links(v) => {
                link_batches += 1;
                links.extend(v);
            }
        }
    }
    assert!(item_batches >= 3, "{item_batches} item chunks");
    assert!(link_batches >= 2, "{link_batches} link chunks");
    assert_eq!(items.len(), N - 1, "every item but the removed one");
    assert_eq!(links.len(), N / 2 - 1, "every link but the removed item's");
    for it in &items {
        expected_items.insert(it.key.clone(), it.clone());
    }
    assert_eq!(expected_items.len(), N - 1, "no item twice");
    assert_eq!(loaded(&p.pg).await, loaded(&p.lite).await);
}
