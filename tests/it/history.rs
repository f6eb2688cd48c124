//! Since the last refinement (issue 19): ranking snapshots taken on demand,
//! in the background only when the ranking changed, and at shutdown; kept
//! across restarts within their bound; and the ranking now compared with a
//! past one: what entered, left (and why) and moved, with the term that
//! moved it and its exact numbers.

use std::time::Duration;

use chrono::Utc;
use pb::history_service_client::HistoryServiceClient;
use plumbline::proto as pb;
use tonic::Code;
use tonic::transport::Channel;

use crate::common::*;

fn history(s: &TestServer) -> HistoryServiceClient<Channel> {
    HistoryServiceClient::new(s.channel.clone())
}

async fn take(s: &TestServer, note: &str) -> pb::RankingSnapshot {
    history(s)
        .take_ranking_snapshot(pb::TakeRankingSnapshotRequest { note: note.into() })
        .await
        .expect("TakeRankingSnapshot")
        .into_inner()
        .snapshot
        .expect("snapshot")
}

async fn snapshots(s: &TestServer) -> Vec<pb::RankingSnapshot> {
    history(s)
        .list_ranking_snapshots(pb::ListRankingSnapshotsRequest {
            page_size: 1000,
            page_token: String::new(),
        })
        .await
        .expect("ListRankingSnapshots")
        .into_inner()
        .snapshots
}

async fn compare(s: &TestServer, top_n: i32) -> pb::CompareRankingResponse {
    history(s)
        .compare_ranking(pb::CompareRankingRequest {
            since: Some(ts(Utc::now())),
            top_n,
            source_id: String::new(),
        })
        .await
        .expect("CompareRanking")
        .into_inner()
}

/// Polls `done` until it holds, failing after 30 s: waits for background
/// work without assuming how long it takes.
async fn until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !done().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the background task has looked at the ranking `n` more
/// times.
async fn checks(s: &TestServer, n: u64) {
    let from = s.server().historian().checks();
    until("background checks", async || {
        s.server().historian().checks() >= from + n
    })
    .await;
}

/// A push source `web`; goal G; metrics m1, m2 (0 -> 10); hypotheses H1
/// (m1), H2 and H3 (m2), each worth 0.25 while no observation is recorded.
async fn model(s: &TestServer) {
    create_source(
        s,
        pb::Source {
            id: "web".into(),
            kind: pb::TrackerKind::Push as i32,
            ..Default::default()
        },
    )
    .await;
    create_goal(s, goal("G", pb::GoalLevel::Strategic, "", None)).await;
    for m in ["m1", "m2"] {
        create_metric(s, metric(m, 0.0, 10.0)).await;
    }
    for (h, m) in [("H1", "m1"), ("H2", "m2"), ("H3", "m2")] {
        create_hypothesis(s, hypothesis(h, "G", m, 0.5, 0.5)).await;
    }
}

fn term<'a>(score: &'a pb::ItemScore, h: &str) -> &'a pb::ScoreTerm {
    score
        .terms
        .iter()
        .find(|t| t.hypothesis_id == h)
        .unwrap_or_else(|| panic!("{} has no term {h}", score.item_key))
}

fn keys_of(list: &[pb::RankingChange]) -> Vec<(&str, i32, i32)> {
    list.iter()
        .map(|c| (c.item_key.as_str(), c.old_rank, c.new_rank))
        .collect()
}

#[tokio::test]
async fn since_names_what_entered_left_and_moved_and_the_term_that_moved_it() {
    let s = TestServer::start().await;
    model(&s).await;
    let items = (1..=7).map(|n| estimated(item("web", &n.to_string(), &format!("Item {n}")), 1.0));
    upsert(&s, items.collect()).await;
    // a 0.15, b 0.125, c 0.1, d 0.075; e, f, g unlinked.
    for (k, h, c) in [
        ("web/1", "H1", 0.6),
        ("web/2", "H2", 0.5),
        ("web/3", "H1", 0.4),
        ("web/4", "H2", 0.3),
    ] {
        link(&s, k, h, c).await;
    }
    let a_before = item_score(&s, "web/1").await;
    let c_before = item_score(&s, "web/3").await;
    let snap = take(&s, "refinement 1").await;
    assert_eq!((snap.item_count, snap.top_n), (7, 200));
    assert_eq!(snap.origin(), pb::SnapshotOrigin::Explicit);
    assert_eq!(snap.note, "refinement 1");

    // Nothing changed yet: nothing to list.
    let same = compare(&s, 4).await;
    assert!(
        same.entered.is_empty() && same.left.is_empty() && same.moved.is_empty(),
        "{same:?}"
    );

    // m1 observed at 8: H1's gap 1 -> 0.2, so a and c lose 80%.
    record(&s, vec![observation("m1", 8.0, None)]).await;
    // b halves its size and serves H3 too.
    upsert(&s, vec![estimated(item("web", "2", "Item 2"), 0.5)]).await;
    link(&s, "web/2", "H3", 0.2).await;
    // c closes; d closes and is released.
    upsert(
        &s,
        vec![
            closed(estimated(item("web", "3", "Item 3"), 1.0)),
            closed(estimated(item("web", "4", "Item 4"), 1.0)),
        ],
    )
    .await;
    pb::validation_service_client::ValidationServiceClient::new(s.channel.clone())
        .record_release(pb::RecordReleaseRequest {
            release_id: "rel-1".into(),
            item_keys: vec!["web/4".into()],
            release_time: None,
            note: String::new(),
        })
        .await
        .expect("RecordRelease");
    // e and f (H3) and g (H2) rise past a; no hypothesis gets more than
    // a whole contribution, so no other term is scaled.
    link(&s, "web/5", "H3", 0.3).await;
    link(&s, "web/6", "H3", 0.3).await;
    link(&s, "web/7", "H2", 0.15).await;
    let a_after = item_score(&s, "web/1").await;
    let b_after = item_score(&s, "web/2").await;
    let c_after = item_score(&s, "web/3").await;

    let r = compare(&s, 4).await;
    assert_eq!(r.top_n, 4);
    assert_eq!(r.snapshot.as_ref().map(|s| s.id), Some(snap.id));
    assert_eq!(
        keys_of(&r.entered),
        vec![("web/5", 0, 2), ("web/6", 0, 3), ("web/7", 0, 4)]
    );
    assert_eq!(r.entered[0].terms[0].kind(), pb::TermChangeKind::Current);
    assert_eq!(r.entered[0].terms[0].hypothesis_id, "H3");
    assert_eq!(keys_of(&r.moved), vec![("web/2", 2, 1)]);
    let b = &r.moved[0];
    assert_eq!((b.old_size, b.new_size), (1.0, 0.5));
    assert_eq!(b.new_value_density, b_after.value_density);
    assert_eq!(b.terms.len(), 1, "only the new link changed: {:?}", b.terms);
    assert_eq!(b.terms[0].kind(), pb::TermChangeKind::LinkAdded);
    assert_eq!(b.terms[0].hypothesis_id, "H3");
    assert_eq!(
        (b.terms[0].old_value, b.terms[0].new_value),
        (0.0, term(&b_after, "H3").value)
    );

    assert_eq!(
        keys_of(&r.left),
        vec![("web/1", 1, 0), ("web/3", 3, 0), ("web/4", 4, 0)]
    );
    let a = &r.left[0];
    assert_eq!(a.left_reason(), pb::LeftReason::PushedOut);
    assert_eq!(a.current_rank, 5);
    assert_eq!(a.terms.len(), 1);
    let t = &a.terms[0];
    assert_eq!(
        (t.hypothesis_id.as_str(), t.kind(), t.old_value, t.new_value),
        (
            "H1",
            pb::TermChangeKind::Changed,
            term(&a_before, "H1").value,
            term(&a_after, "H1").value
        )
    );
    assert_eq!(t.factors.len(), 1, "{:?}", t.factors);
    assert_eq!(
        (
            t.factors[0].name.as_str(),
            t.factors[0].old_value,
            t.factors[0].new_value
        ),
        ("gap", term(&a_before, "H1").gap, term(&a_after, "H1").gap)
    );
    assert_eq!((t.factors[0].old_value, t.factors[0].new_value), (1.0, 0.2));
    assert_eq!((a.old_value, a.new_value), (a_before.value, a_after.value));
    let c = &r.left[1];
    assert_eq!(c.left_reason(), pb::LeftReason::Closed);
    assert_eq!(c.current_rank, 0);
    assert_eq!(
        (c.terms[0].old_value, c.terms[0].new_value),
        (term(&c_before, "H1").value, term(&c_after, "H1").value)
    );
    let d = &r.left[2];
    assert_eq!(d.left_reason(), pb::LeftReason::Released);
    assert!(d.left_detail.contains("rel-1"), "{}", d.left_detail);
    assert!(
        d.terms.is_empty(),
        "d's score did not change: {:?}",
        d.terms
    );

    // The CLI prints the same groups, the why column naming the term.
    let url = s.server().url();
    let date = snap
        .take_time
        .as_ref()
        .map(|t| {
            chrono::DateTime::from_timestamp(t.seconds + 1, 0)
                .unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        })
        .unwrap();
    let out = run_cli(&["since", &date, "--top", "4", "--server", &url]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for want in [
        "entered",
        "web/5",
        "moved",
        "#2 -> #1",
        "H3 linked: 0 -> 0.05",
        "size 1 -> 0.5",
        "left",
        "pushed out (now #5); H1 0.15 -> 0.03 (gap 1 -> 0.2)",
        "released in rel-1",
        "closed",
    ] {
        assert!(text.contains(want), "no {want:?} in:\n{text}");
    }
    let json = cli_json(&["since", &date, "--top", "4", "--server", &url, "--json"]).await;
    assert_eq!(json["left"][0]["left_reason"], "pushed_out", "{json}");

    // The web view's page shows the same three groups.
    let web = s.server().web_url().expect("the web view is on");
    let page = reqwest::get(format!("{web}/since?date={date}&top=4"))
        .await
        .expect("the since page answers");
    assert_eq!(page.status(), 200);
    let body = page.text().await.unwrap();
    for want in [
        "id=\"entered\"",
        "data-key=\"web/5\"",
        "pushed out (now #5)",
        "released in rel-1",
        "H3 linked: 0 → 0.05; size 1 → 0.5",
    ] {
        assert!(body.contains(want), "no {want:?} in the page:\n{body}");
    }
    let early = reqwest::get(format!("{web}/since?date=2020-01-01"))
        .await
        .unwrap();
    assert_eq!(early.status(), 409);
    let text = early.text().await.unwrap();
    assert!(text.contains("the earliest is from"), "{text}");
    let bad = reqwest::get(format!("{web}/since?date=2020-01-01&top=5000"))
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    // A date before the first snapshot, a future one, a top N out of
    // bounds.
    let early = history(&s)
        .compare_ranking(pb::CompareRankingRequest {
            since: Some(days_ago(1)),
            top_n: 4,
            source_id: String::new(),
        })
        .await;
    let status = assert_code(early, Code::FailedPrecondition);
    let first = output_time(snap.take_time.as_ref());
    assert!(
        status.message().contains(&first),
        "{} (want {first})",
        status.message()
    );
    let out = run_cli(&["since", "2020-01-01", "--server", &url]).await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&first),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let future = history(&s)
        .compare_ranking(pb::CompareRankingRequest {
            since: Some(ts(Utc::now() + chrono::Duration::days(2))),
            top_n: 4,
            source_id: String::new(),
        })
        .await;
    assert_invalid(future, &["since"]);
    for top_n in [-1, 1001] {
        let bad = history(&s)
            .compare_ranking(pb::CompareRankingRequest {
                since: Some(ts(Utc::now())),
                top_n,
                source_id: String::new(),
            })
            .await;
        assert_invalid(bad, &["top_n"]);
    }
    let missing = history(&s)
        .compare_ranking(pb::CompareRankingRequest::default())
        .await;
    assert_invalid(missing, &["since"]);
}

/// RFC 3339 to the second, as messages print times.
fn output_time(t: Option<&prost_types::Timestamp>) -> String {
    let t = t.expect("time");
    chrono::DateTime::from_timestamp(t.seconds, 0)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[tokio::test]
async fn the_background_takes_a_snapshot_only_when_the_ranking_changed_and_they_survive_a_restart()
{
    let s = TestServer::start_with_config(|c| {
        c.history.interval_secs = 1;
        c.history.top_n = 10;
    })
    .await;
    // An empty ranking with no snapshot: nothing to keep.
    checks(&s, 2).await;
    assert!(snapshots(&s).await.is_empty());

    model(&s).await;
    upsert(&s, vec![item("web", "1", "One"), item("web", "2", "Two")]).await;
    link(&s, "web/1", "H1", 1.0).await;
    until("a background snapshot", async || {
        snapshots(&s).await.len() == 1
    })
    .await;
    let first = snapshots(&s).await.remove(0);
    assert_eq!(first.origin(), pb::SnapshotOrigin::Background);
    assert_eq!((first.item_count, first.top_n), (2, 10));

    // A write that moves nothing in the ranking (an unused metric): the
    // background looks, and takes nothing.
    create_metric(&s, metric("unused", 0.0, 1.0)).await;
    checks(&s, 2).await;
    assert_eq!(snapshots(&s).await.len(), 1);

    // One that does.
    record(&s, vec![observation("m1", 5.0, None)]).await;
    until("a second snapshot", async || snapshots(&s).await.len() == 2).await;
    let kept = snapshots(&s).await;

    // Unchanged over a restart: the stored snapshot is the reference, so
    // neither shutdown nor the first looks after start take another.
    let s = s.restart().await;
    checks(&s, 2).await;
    assert_eq!(snapshots(&s).await, kept);
    let r = compare(&s, 10).await;
    assert_eq!(r.snapshot.as_ref().map(|x| x.id), Some(kept[0].id));
    assert!(
        r.moved.is_empty() && r.entered.is_empty() && r.left.is_empty(),
        "{r:?}"
    );
}

#[tokio::test]
async fn shutdown_takes_a_snapshot_when_the_ranking_changed() {
    let s = TestServer::start().await; // [history] interval: an hour
    model(&s).await;
    upsert(&s, vec![item("web", "1", "One")]).await;
    let s = s.restart().await;
    let list = snapshots(&s).await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0].origin(), pb::SnapshotOrigin::Shutdown);
    // Unchanged since: the next shutdown takes none.
    let s = s.restart().await;
    assert_eq!(snapshots(&s).await, list);
}

#[tokio::test]
async fn retention_keeps_the_newest_within_the_bound_and_lists_page_by_page() {
    let s = TestServer::start_with_config(|c| c.history.max_snapshots = 3).await;
    model(&s).await;
    upsert(&s, vec![item("web", "1", "One")]).await;
    let mut ids = Vec::new();
    for n in 0..5 {
        upsert(&s, vec![item("web", &format!("{}", 10 + n), "More")]).await;
        link(&s, &format!("web/{}", 10 + n), "H1", 1.0).await;
        ids.push(take(&s, &format!("meeting {n}")).await.id);
    }
    // Unchanged since the last: that one is answered, nothing is stored,
    // so a caller taking snapshots in a loop evicts no history.
    let again = take(&s, "meeting 4 again").await;
    assert_eq!(again.id, ids[4]);
    let kept: Vec<i64> = snapshots(&s).await.iter().map(|x| x.id).collect();
    assert_eq!(kept, vec![ids[4], ids[3], ids[2]]);

    let first = history(&s)
        .list_ranking_snapshots(pb::ListRankingSnapshotsRequest {
            page_size: 2,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.snapshots.len(), 2);
    let second = history(&s)
        .list_ranking_snapshots(pb::ListRankingSnapshotsRequest {
            page_size: 2,
            page_token: first.next_page_token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        second.snapshots.iter().map(|x| x.id).collect::<Vec<_>>(),
        vec![ids[2]]
    );
    assert!(second.next_page_token.is_empty());
    let bad = history(&s)
        .list_ranking_snapshots(pb::ListRankingSnapshotsRequest {
            page_size: 2,
            page_token: "nonsense".into(),
        })
        .await;
    assert_invalid(bad, &["page_token"]);
    let long = history(&s)
        .take_ranking_snapshot(pb::TakeRankingSnapshotRequest {
            note: "x".repeat(201),
        })
        .await;
    assert_invalid(long, &["note"]);

    let out = run_cli(&["history", "list", "--server", &s.server().url()]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("meeting 4"));
}

/// An item its tracker no longer returns left the top N as removed, saying
/// how and when; the ones still there are unchanged.
#[tokio::test]
async fn an_item_removed_from_its_tracker_left_as_removed() {
    use crate::conformance::github::GitHub;
    use crate::conformance::{Tracker, World, issues};
    let w = World::<GitHub>::start(issues(3)).await;
    w.sync().await.done();
    let s = &w.s;
    create_goal(s, goal("G", pb::GoalLevel::Strategic, "", None)).await;
    create_metric(s, metric("m1", 0.0, 10.0)).await;
    create_hypothesis(s, hypothesis("H1", "G", "m1", 0.5, 0.5)).await;
    let keys = w.keys([1, 2, 3]);
    for (k, c) in keys.iter().zip([0.5, 0.3, 0.2]) {
        link(s, k, "H1", c).await;
    }
    take(s, "before the sync").await;
    w.issues.lock().unwrap().retain(|i| i.n != 1);
    assert_eq!(run_sync(s, GitHub::ID, true).await.done().removed_count, 1);
    let r = compare(s, 3).await;
    assert!(r.entered.is_empty(), "{:?}", r.entered);
    assert_eq!(keys_of(&r.left), vec![(keys[0].as_str(), 1, 0)]);
    let gone = &r.left[0];
    assert_eq!(gone.left_reason(), pb::LeftReason::Removed);
    assert!(
        gone.left_detail
            .contains("removed from its tracker (not returned by a full sync)"),
        "{}",
        gone.left_detail
    );
    assert_eq!((gone.new_value, gone.current_rank), (0.0, 0));
    assert_eq!(
        keys_of(&r.moved),
        vec![(keys[1].as_str(), 2, 1), (keys[2].as_str(), 3, 2)]
    );
    assert!(r.moved.iter().all(|m| m.terms.is_empty()), "{:?}", r.moved);
    assert_eq!(r.moved[0].why, "no term of its own changed: others moved");
}

/// One source's items are compared within the snapshot's own cut: with a
/// top 3 of the whole backlog stored, the source's items below that cut
/// were never in it, and do not "enter" when nothing changed.
#[tokio::test]
async fn a_comparison_of_one_source_stays_within_the_snapshot_cut() {
    let s = TestServer::start_with_config(|c| c.history.top_n = 3).await;
    model(&s).await;
    create_source(
        &s,
        pb::Source {
            id: "app".into(),
            kind: pb::TrackerKind::Push as i32,
            ..Default::default()
        },
    )
    .await;
    upsert(
        &s,
        vec![
            item("web", "1", "One"),
            item("web", "2", "Two"),
            item("app", "1", "App one"),
            item("app", "2", "App two"),
            item("app", "3", "App three"),
        ],
    )
    .await;
    link(&s, "web/1", "H1", 1.0).await;
    link(&s, "app/1", "H2", 1.0).await;
    link(&s, "web/2", "H3", 1.0).await;
    let snap = take(&s, "refinement").await;
    assert_eq!(snap.item_count, 3, "{snap:?}");
    let app = |top_n| {
        let mut h = history(&s);
        async move {
            h.compare_ranking(pb::CompareRankingRequest {
                since: Some(ts(Utc::now())),
                top_n,
                source_id: "app".into(),
            })
            .await
            .expect("CompareRanking")
            .into_inner()
        }
    };
    let r = app(3).await;
    assert!(
        r.entered.is_empty() && r.left.is_empty() && r.moved.is_empty(),
        "nothing changed: {r:?}"
    );
    // app/2 rises into the top 3 (a link worth more than web/2's): it
    // entered, and web/2 left the cut, which this source's view ignores.
    create_hypothesis(&s, hypothesis("H4", "G", "m1", 0.9, 0.9)).await;
    link(&s, "app/2", "H4", 1.0).await;
    let r = app(3).await;
    assert_eq!(
        keys_of(&r.entered).first().map(|k| k.0),
        Some("app/2"),
        "{r:?}"
    );
}
