//! SplitService over gRPC against a real server with a temporary SQLite
//! file: the plans of an item worked out by hand, the oversized flag,
//! applying a plan by hypothesis and by task (keys, parents, estimates,
//! links, the ranking, idempotence, a restart), and the error codes.

use crate::common::*;
use plumbline::proto as pb;
use plumbline::proto::split_service_client::SplitServiceClient;
use tonic::Code;
use tonic::transport::Channel;

fn split(s: &TestServer) -> SplitServiceClient<Channel> {
    SplitServiceClient::new(s.channel.clone())
}

const BODY: &str = "Let shoppers pay in one step.\n\
- [ ] Design the form\n\
- [x] Spike the payment API\n\
- [ ] Build the API\n\
- [ ] Wire the UI\n";

/// One strategic goal G (effective weight 1), two metrics and two
/// hypotheses, and four items of source `web`:
/// - conv: baseline 2, target 4, observed 3 -> gap 0.5;
///   nps: baseline 30, target 50, unobserved -> gap 1;
/// - H-1 on conv: effect 0.4, confidence 0.5 -> value 1 x 0.5 x 0.4 x 0.5 = 0.1;
///   H-2 on nps: effect 0.3, confidence 0.8 -> value 1 x 1 x 0.3 x 0.8 = 0.24;
/// - web/1, estimate 12, links H-1 (0.5) and H-2 (0.25); three open tasks
///   and one done. Terms 0.1 x 0.5 = 0.05 and 0.24 x 0.25 = 0.06, value 0.11;
/// - web/2, child of web/1, estimate 2, H-1 (0.5): H-1's contributions add up
///   to 1, so no scaling: value 0.05, density 0.025;
/// - web/3, child of web/1, estimate 4, H-2 (0.5): value 0.12, density 0.03;
/// - web/4, unestimated, unlinked: value 0, size 3.
async fn model(s: &TestServer) {
    create_source(s, github_source("web")).await;
    create_goal(s, goal("G", pb::GoalLevel::Strategic, "", None)).await;
    create_metric(s, metric("conv", 2.0, 4.0)).await;
    record(s, vec![observation("conv", 3.0, None)]).await;
    create_metric(s, metric("nps", 30.0, 50.0)).await;
    create_hypothesis(s, hypothesis("H-1", "G", "conv", 0.4, 0.5)).await;
    create_hypothesis(s, hypothesis("H-2", "G", "nps", 0.3, 0.8)).await;
    let parent = pb::Item {
        body: BODY.into(),
        ..estimated(item("web", "1", "One-step checkout"), 12.0)
    };
    let child = |id: &str, title: &str, estimate: f64| pb::Item {
        parent_key: "web/1".into(),
        ..estimated(item("web", id, title), estimate)
    };
    upsert(
        s,
        vec![
            parent,
            child("2", "Save the card", 2.0),
            child("3", "Apple Pay button", 4.0),
            item("web", "4", "Rename the repo"),
        ],
    )
    .await;
    link(s, "web/1", "H-1", 0.5).await;
    link(s, "web/1", "H-2", 0.25).await;
    link(s, "web/2", "H-1", 0.5).await;
    link(s, "web/3", "H-2", 0.5).await;
}

const H1: f64 = 0.1 * 0.5;
const H2: f64 = 0.24 * 0.25;
const VALUE: f64 = H1 + H2;

#[track_caller]
fn close(got: f64, want: f64) {
    assert!((got - want).abs() < 1e-12, "{got} != {want}");
}

async fn propose(s: &TestServer, key: &str, threshold: Option<f64>) -> pb::ProposeSplitsResponse {
    propose_result(s, key, threshold)
        .await
        .expect("ProposeSplits")
}

async fn try_apply(
    s: &TestServer,
    key: &str,
    kind: pb::SplitPlanKind,
) -> Result<pb::ApplySplitResponse, tonic::Status> {
    split(s)
        .apply_split(pb::ApplySplitRequest {
            item_key: key.into(),
            plan_kind: kind as i32,
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner())
}

async fn apply(s: &TestServer, key: &str, kind: pb::SplitPlanKind) -> pb::ApplySplitResponse {
    try_apply(s, key, kind).await.expect("ApplySplit")
}

/// (hypothesis id, contribution, origin) of an item's links.
async fn links_of(s: &TestServer, key: &str) -> Vec<(String, f64, i32)> {
    s.backlog()
        .list_links(pb::ListLinksRequest {
            item_key: key.into(),
            ..Default::default()
        })
        .await
        .expect("ListLinks")
        .into_inner()
        .links
        .into_iter()
        .map(|l| (l.hypothesis_id, l.contribution, l.origin))
        .collect()
}

async fn ranking(s: &TestServer) -> Vec<String> {
    keys(
        &rank(
            s,
            pb::RankItemsRequest {
                page_size: 100,
                ..Default::default()
            },
        )
        .await,
    )
}

fn slice_keys(plan: &pb::SplitPlan) -> Vec<&str> {
    plan.slices.iter().map(|x| x.item_key.as_str()).collect()
}

fn item_keys(r: &pb::ApplySplitResponse) -> Vec<&str> {
    r.items.iter().map(|i| i.key.as_str()).collect()
}

#[tokio::test]
async fn plans_by_hypothesis_task_and_child_match_the_hand_computation() {
    let s = TestServer::start().await;
    model(&s).await;
    let p = propose(&s, "web/1", None).await;
    assert_eq!(p.item_key, "web/1");
    assert_eq!(p.title, "One-step checkout");
    close(p.value, VALUE);
    assert_eq!(p.size, 12.0);
    close(p.value_density, VALUE / 12.0);
    assert_eq!(p.size_threshold, 8.0, "the default threshold");
    assert!(p.oversized, "12 > 8");
    let kinds: Vec<i32> = p.plans.iter().map(|x| x.kind).collect();
    assert_eq!(
        kinds,
        [
            pb::SplitPlanKind::ByHypothesis as i32,
            pb::SplitPlanKind::ByTask as i32,
            pb::SplitPlanKind::ByChild as i32
        ]
    );

    // By hypothesis: one slice per link, the term's value, half the size each.
    let h = &p.plans[0];
    assert_eq!(slice_keys(h), ["web/1-s1", "web/1-s2"]);
    assert_eq!(
        h.slices[0].title,
        "We believe H-1 will move conv toward its target."
    );
    close(h.slices[0].value, H1);
    close(h.slices[1].value, H2);
    assert_eq!(h.slices[0].size, 6.0);
    assert_eq!(h.slices[1].size, 6.0);
    close(h.slices[0].value_density, H1 / 6.0);
    close(h.slices[1].value_density, H2 / 6.0);
    assert_eq!(
        h.slices[0].links,
        [pb::SliceLink {
            hypothesis_id: "H-1".into(),
            contribution: 0.5
        }]
    );
    assert_eq!(
        h.slices[1].links,
        [pb::SliceLink {
            hypothesis_id: "H-2".into(),
            contribution: 0.25
        }]
    );
    assert_eq!(
        h.best_slice_index, 1,
        "H-2's slice is denser: 0.01 > 0.0083"
    );
    close(h.value_concentration, H2 / VALUE);

    // By task: three open tasks (the done one is no slice), value and size
    // shared equally, every link with a third of its contribution.
    let t = &p.plans[1];
    let titles: Vec<&str> = t.slices.iter().map(|x| x.title.as_str()).collect();
    assert_eq!(titles, ["Design the form", "Build the API", "Wire the UI"]);
    assert_eq!(slice_keys(t), ["web/1-s1", "web/1-s2", "web/1-s3"]);
    for x in &t.slices {
        close(x.value, VALUE / 3.0);
        assert_eq!(x.size, 4.0);
        close(x.value_density, VALUE / 12.0);
        let links: Vec<(&str, f64)> = x
            .links
            .iter()
            .map(|l| (l.hypothesis_id.as_str(), l.contribution))
            .collect();
        assert_eq!(links, [("H-1", 0.5 / 3.0), ("H-2", 0.25 / 3.0)]);
    }
    assert_eq!(t.best_slice_index, 0, "equal densities: the first");
    close(t.value_concentration, 1.0 / 3.0);

    // By child: the children's own scores.
    let c = &p.plans[2];
    assert_eq!(slice_keys(c), ["web/2", "web/3"]);
    assert_eq!(c.slices[0].title, "Save the card");
    close(c.slices[0].value, 0.05);
    assert_eq!(c.slices[0].size, 2.0);
    close(c.slices[0].value_density, 0.025);
    close(c.slices[1].value, 0.12);
    assert_eq!(c.slices[1].size, 4.0);
    close(c.slices[1].value_density, 0.03);
    assert_eq!(c.slices[1].links[0].hypothesis_id, "H-2");
    assert_eq!(c.best_slice_index, 1, "0.03 > 0.025");
    close(c.value_concentration, 0.12 / 0.17);
    s.stop().await;
}

#[tokio::test]
async fn the_oversized_flag_follows_the_threshold_even_without_plans() {
    let s = TestServer::start().await;
    model(&s).await;
    assert!(
        !propose(&s, "web/1", Some(12.0)).await.oversized,
        "12 is not above 12"
    );
    let p = propose(&s, "web/1", Some(11.5)).await;
    assert!(p.oversized);
    assert_eq!(p.size_threshold, 11.5);

    // web/2: one hypothesis, no tasks, no children -> no plan.
    let p = propose(&s, "web/2", None).await;
    assert!(p.plans.is_empty());
    assert!(!p.oversized, "2 <= 8");
    let p = propose(&s, "web/2", Some(1.5)).await;
    assert!(p.plans.is_empty());
    assert!(p.oversized, "2 > 1.5");

    // An unestimated item counts with the default size.
    let p = propose(&s, "web/4", Some(2.5)).await;
    assert_eq!(p.size, DEFAULT_SIZE);
    assert!(p.oversized);
    assert_eq!(p.value, 0.0);
    s.stop().await;
}

#[tokio::test]
async fn applying_by_hypothesis_moves_each_link_to_its_slice() {
    let s = TestServer::start().await;
    model(&s).await;
    assert_eq!(
        ranking(&s).await,
        ["web/3", "web/2", "web/1", "web/4"],
        "before: 0.03, 0.025, 0.0092, 0"
    );

    let r = apply(&s, "web/1", pb::SplitPlanKind::ByHypothesis).await;
    assert_eq!(r.created_count, 2);
    assert_eq!(item_keys(&r), ["web/1-s1", "web/1-s2"]);
    for (i, it) in r.items.iter().enumerate() {
        assert_eq!(it.source_id, "web");
        assert_eq!(it.external_id, format!("1-s{}", i + 1));
        assert_eq!(it.parent_key, "web/1");
        assert_eq!(it.estimate, Some(6.0));
        assert_eq!(it.state, pb::ItemState::Open as i32);
    }
    assert_eq!(
        r.items[1].title,
        "We believe H-2 will move nps toward its target."
    );
    // Stored, not just answered.
    let stored = get_item(&s, "web/1-s2").await.expect("slice stored");
    assert_eq!(stored.parent_key, "web/1");
    assert_eq!(stored.estimate, Some(6.0));

    let api = pb::LinkOrigin::Api as i32;
    assert_eq!(links_of(&s, "web/1-s1").await, [("H-1".into(), 0.5, api)]);
    assert_eq!(links_of(&s, "web/1-s2").await, [("H-2".into(), 0.25, api)]);
    assert!(links_of(&s, "web/1").await.is_empty(), "the links moved");

    // Each slice scores exactly its plan value; the original scores 0.
    close(item_score(&s, "web/1-s1").await.value, H1);
    close(item_score(&s, "web/1-s2").await.value, H2);
    let original = item_score(&s, "web/1").await;
    assert_eq!(original.value, 0.0);
    assert!(original.flags.contains(&(pb::ScoreFlag::Unaligned as i32)));
    let after = ranking(&s).await;
    assert_eq!(
        after,
        ["web/3", "web/2", "web/1-s2", "web/1-s1", "web/1", "web/4"],
        "0.03, 0.025, 0.01, 0.0083, then the zeros by key"
    );

    // The same plan again creates nothing and returns the same slices.
    let again = apply(&s, "web/1", pb::SplitPlanKind::ByHypothesis).await;
    assert_eq!(again.created_count, 0);
    assert_eq!(item_keys(&again), ["web/1-s1", "web/1-s2"]);
    assert_eq!(all_items(&s, "web").await.len(), 6);

    // Another plan on top of it is refused, naming the first split.
    let refused = assert_code(
        try_apply(&s, "web/1", pb::SplitPlanKind::ByTask).await,
        Code::FailedPrecondition,
    );
    assert!(
        refused.message().contains("already split by hypothesis"),
        "{refused:?}"
    );

    // The slices are children now; the hypothesis plan is gone with the links.
    let p = propose(&s, "web/1", None).await;
    let kinds: Vec<i32> = p.plans.iter().map(|x| x.kind).collect();
    assert_eq!(
        kinds,
        [
            pb::SplitPlanKind::ByTask as i32,
            pb::SplitPlanKind::ByChild as i32
        ]
    );
    assert_eq!(
        slice_keys(&p.plans[1]),
        ["web/1-s1", "web/1-s2", "web/2", "web/3"]
    );

    // Store and index told the same story: a restart ranks the same.
    let s = s.restart().await;
    assert_eq!(ranking(&s).await, after);
    close(item_score(&s, "web/1-s2").await.value, H2);
    s.stop().await;
}

#[tokio::test]
async fn applying_by_task_shares_every_link_among_the_open_tasks() {
    let s = TestServer::start().await;
    model(&s).await;
    let r = apply(&s, "web/1", pb::SplitPlanKind::ByTask).await;
    assert_eq!(r.created_count, 3);
    assert_eq!(item_keys(&r), ["web/1-s1", "web/1-s2", "web/1-s3"]);
    let titles: Vec<&str> = r.items.iter().map(|i| i.title.as_str()).collect();
    assert_eq!(titles, ["Design the form", "Build the API", "Wire the UI"]);
    let api = pb::LinkOrigin::Api as i32;
    for it in &r.items {
        assert_eq!(it.parent_key, "web/1");
        assert_eq!(it.estimate, Some(4.0));
        assert!(it.tasks.is_empty(), "a slice is not split again by task");
        assert_eq!(
            links_of(&s, &it.key).await,
            [
                ("H-1".into(), 0.5 / 3.0, api),
                ("H-2".into(), 0.25 / 3.0, api)
            ]
        );
        close(item_score(&s, &it.key).await.value, VALUE / 3.0);
    }
    assert!(links_of(&s, "web/1").await.is_empty());
    // The children keep their scores: the contributions to each hypothesis
    // add up as before.
    close(item_score(&s, "web/2").await.value, 0.05);
    close(item_score(&s, "web/3").await.value, 0.12);
    assert_eq!(
        ranking(&s).await,
        [
            "web/3", "web/2", "web/1-s1", "web/1-s2", "web/1-s3", "web/1", "web/4"
        ]
    );

    let again = apply(&s, "web/1", pb::SplitPlanKind::ByTask).await;
    assert_eq!(again.created_count, 0);
    assert_eq!(item_keys(&again), ["web/1-s1", "web/1-s2", "web/1-s3"]);
    assert_eq!(all_items(&s, "web").await.len(), 7);
    assert_code(
        try_apply(&s, "web/1", pb::SplitPlanKind::ByHypothesis).await,
        Code::FailedPrecondition,
    );
    s.stop().await;
}

#[tokio::test]
async fn errors_name_the_problem() {
    let s = TestServer::start().await;
    model(&s).await;
    assert_code(propose_result(&s, "web/99", None).await, Code::NotFound);
    assert_code(
        try_apply(&s, "web/99", pb::SplitPlanKind::ByTask).await,
        Code::NotFound,
    );

    // Children already exist: nothing to create.
    assert_code(
        try_apply(&s, "web/1", pb::SplitPlanKind::ByChild).await,
        Code::FailedPrecondition,
    );
    // Plans that do not apply.
    let one = assert_code(
        try_apply(&s, "web/2", pb::SplitPlanKind::ByHypothesis).await,
        Code::FailedPrecondition,
    );
    assert!(one.message().contains("serves 1 hypothesis;"), "{one:?}");
    assert_code(
        try_apply(&s, "web/2", pb::SplitPlanKind::ByTask).await,
        Code::FailedPrecondition,
    );

    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert_invalid(
            propose_result(&s, "web/1", Some(bad)).await,
            &["size_threshold"],
        );
    }
    assert_invalid(propose_result(&s, "", None).await, &["item_key"]);
    assert_invalid(
        propose_result(&s, "", Some(0.0)).await,
        &["item_key", "size_threshold"],
    );
    assert_invalid(
        try_apply(&s, "web/1", pb::SplitPlanKind::Unspecified).await,
        &["plan_kind"],
    );
    assert_invalid(
        split(&s)
            .apply_split(pb::ApplySplitRequest {
                item_key: "web/1".into(),
                plan_kind: 42,
                ..Default::default()
            })
            .await,
        &["plan_kind"],
    );
    assert_invalid(
        try_apply(&s, "", pb::SplitPlanKind::Unspecified).await,
        &["item_key", "plan_kind"],
    );

    // A slice key taken by an unrelated item: refused, nothing changes.
    upsert(&s, vec![item("web", "1-s2", "Unrelated")]).await;
    assert_code(
        try_apply(&s, "web/1", pb::SplitPlanKind::ByHypothesis).await,
        Code::FailedPrecondition,
    );
    assert!(get_item(&s, "web/1-s1").await.is_err(), "no slice created");
    assert_eq!(links_of(&s, "web/1").await.len(), 2, "links untouched");
    s.stop().await;
}

async fn propose_result(
    s: &TestServer,
    key: &str,
    threshold: Option<f64>,
) -> Result<pb::ProposeSplitsResponse, tonic::Status> {
    split(s)
        .propose_splits(pb::ProposeSplitsRequest {
            item_key: key.into(),
            size_threshold: threshold,
        })
        .await
        .map(|r| r.into_inner())
}
