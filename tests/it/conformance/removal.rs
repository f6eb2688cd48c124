//! The removal cases of the conformance suite: what a tracker no longer
//! returns leaves the ranking once a full sync completes, stays readable
//! (with when and why, and in the release history), and comes back when the
//! tracker returns it; a full sync cut short marks nothing.

use pb::validation_service_client::ValidationServiceClient;
use plumbline::proto as pb;
use tonic::Code;
use wiremock::Mock;
use wiremock::matchers::{method, path};

use super::{Issue, Tracker, World, at, issues};
use crate::common::*;

/// Items of the source as ListItems shows them, with removed ones when
/// `include_removed`, as (key, removal reason) in key order.
async fn listed<T: Tracker>(w: &World<T>, include_removed: bool) -> Vec<(String, i32)> {
    let r =
        w.s.backlog()
            .list_items(pb::ListItemsRequest {
                source_id: T::ID.into(),
                page_size: 1000,
                include_removed,
                ..Default::default()
            })
            .await
            .expect("ListItems")
            .into_inner();
    let mut v: Vec<(String, i32)> = r
        .items
        .into_iter()
        .map(|i| (i.key, i.removal.map_or(0, |r| r.reason)))
        .collect();
    v.sort();
    v
}

/// The item keys of the whole ranking, closed items included.
async fn ranked(s: &TestServer) -> Vec<String> {
    let mut k = keys(&full_ranking(s, true).await);
    k.sort();
    k
}

/// The releases the trend of metric `m` marks, as (release id, hypotheses).
async fn trend_releases(s: &TestServer, m: &str) -> Vec<(String, Vec<String>)> {
    ValidationServiceClient::new(s.channel.clone())
        .get_metric_trend(pb::GetMetricTrendRequest {
            metric_id: m.into(),
        })
        .await
        .expect("GetMetricTrend")
        .into_inner()
        .releases
        .into_iter()
        .map(|r| (r.release.expect("release").id, r.hypothesis_ids))
        .collect()
}

/// An issue deleted in the tracker (or moved out of the project: the
/// listing no longer holds it) stays active through incremental syncs,
/// which cannot see it go; a full sync marks it removed: out of the
/// ranking and of the default listing, shown with its reason, its release
/// still marked on its metric's trend. Returned again later (restored,
/// moved back, so updated), it is active again with its link.
pub async fn full_sync_marks_what_the_tracker_no_longer_returns<T: Tracker>() {
    let w = World::<T>::start(issues(5)).await;
    w.sync().await.done();
    let k = w.keys(1..=5);
    let gone = k[2].clone();
    create_goal(&w.s, goal("G", pb::GoalLevel::Strategic, "", None)).await;
    create_metric(&w.s, metric("conv", 2.0, 3.0)).await;
    create_hypothesis(&w.s, hypothesis("H", "G", "conv", 0.2, 0.5)).await;
    link(&w.s, &gone, "H", 1.0).await;
    record(&w.s, vec![observation("conv", 2.0, Some(days_ago(20)))]).await;
    ValidationServiceClient::new(w.s.channel.clone())
        .record_release(pb::RecordReleaseRequest {
            release_id: "rel-3".into(),
            item_keys: vec![gone.clone()],
            release_time: Some(days_ago(10)),
            note: String::new(),
        })
        .await
        .expect("RecordRelease");
    let value_before = item_score(&w.s, &gone).await.value;
    assert!(value_before > 0.0, "the link gives the item value");

    // Deleted in the tracker: the listing no longer holds it, and the
    // issue itself answers as the tracker answers a deleted one.
    w.issues.lock().unwrap().retain(|i| i.n != 3);
    Mock::given(method("GET"))
        .and(path(w.tracker.issue_path(3)))
        .respond_with(w.tracker.deleted())
        .mount(&w.mock)
        .await;
    let run = w.sync().await;
    assert_eq!(
        run.done().removed_count,
        0,
        "an incremental sync cannot see it go"
    );
    assert!(ranked(&w.s).await.contains(&gone));

    let run = run_sync(&w.s, T::ID, true).await;
    assert_eq!(run.done().removed_count, 1);
    let item = get_item(&w.s, &gone)
        .await
        .expect("a removed item still reads");
    let removal = item.removal.expect("shown as removed");
    assert_eq!(removal.reason, pb::RemovalReason::Deleted as i32);
    assert!(removal.remove_time.is_some());
    assert_eq!(item.title, "Issue 3", "kept as it was");
    assert!(!ranked(&w.s).await.contains(&gone), "out of the ranking");
    let active: Vec<String> = listed(&w, false)
        .await
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let mut want = k.clone();
    want.retain(|x| *x != gone);
    want.sort();
    assert_eq!(active, want, "left out of ListItems by default");
    let all = listed(&w, true).await;
    assert_eq!(all.len(), 5);
    assert!(all.contains(&(gone.clone(), pb::RemovalReason::Deleted as i32)));
    let err = assert_code(
        w.s.scoring()
            .get_item_score(pb::GetItemScoreRequest {
                item_key: gone.clone(),
            })
            .await,
        Code::FailedPrecondition,
    );
    assert!(
        err.message().contains(&gone) && err.message().contains("(deleted)"),
        "{err:?}"
    );
    let err = assert_code(
        w.s.backlog()
            .link_item(pb::LinkItemRequest {
                item_key: gone.clone(),
                hypothesis_id: "H".into(),
                contribution: 0.5,
                rationale: String::new(),
            })
            .await,
        Code::FailedPrecondition,
    );
    assert!(
        err.message().contains("removed from its tracker"),
        "{err:?}"
    );
    // The release history still knows what the release served.
    // (A tracker whose mock issues are closed adds the close as a release.)
    let releases = trend_releases(&w.s, "conv").await;
    assert!(
        releases.contains(&("rel-3".to_string(), vec!["H".to_string()])),
        "{releases:?}"
    );
    // A second full sync changes nothing.
    assert_eq!(run_sync(&w.s, T::ID, true).await.done().removed_count, 0);

    // Restored in the tracker, so updated: active again, with its link.
    w.put(Issue {
        n: 3,
        title: "Issue 3".into(),
        updated: at(6),
    });
    let run = w.sync().await;
    assert_eq!(run.done().removed_count, 0);
    let item = get_item(&w.s, &gone).await.unwrap();
    assert_eq!(item.removal, None, "active again");
    assert!(ranked(&w.s).await.contains(&gone));
    assert_eq!(item_score(&w.s, &gone).await.value, value_before);
    assert_eq!(listed(&w, false).await.len(), 5);
}

/// A full sync that fails part-way marks nothing, nor does the incremental
/// sync that resumes it (it cannot know what the first part returned); the
/// next full sync that completes does.
pub async fn failed_full_sync_marks_nothing<T: Tracker>() {
    let w = World::<T>::start(issues(5)).await;
    w.sync().await.done();
    let k = w.keys(1..=5);
    w.issues.lock().unwrap().retain(|i| i.n != 1);
    // Page 0 holds issues 2 and 3; page 1 is refused.
    w.fail(1, w.tracker.error(401), None).await;
    let run = run_sync(&w.s, T::ID, true).await;
    assert_eq!(
        run.error().code(),
        Code::FailedPrecondition,
        "{:?}",
        run.error()
    );
    assert_eq!(run.pages.len(), 1, "one page stored before the failure");
    assert_eq!(listed(&w, false).await.len(), 5, "nothing marked");
    assert!(ranked(&w.s).await.contains(&k[0]));

    w.heal().await;
    let run = w.sync().await;
    assert_eq!(run.done().removed_count, 0, "the resume marks nothing");
    assert_eq!(get_item(&w.s, &k[0]).await.unwrap().removal, None);

    let run = run_sync(&w.s, T::ID, true).await;
    assert_eq!(run.done().removed_count, 1);
    assert!(get_item(&w.s, &k[0]).await.unwrap().removal.is_some());
}
