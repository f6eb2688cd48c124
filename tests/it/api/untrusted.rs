//! Input no client should be trusted with (issue 15, "Numbers and tokens
//! that cannot be trusted"): numbers that would make a score non-finite or
//! meaningless, forged page tokens, control characters and parent cycles,
//! and errors that would quote a huge input back.

use crate::common::*;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use plumbline::proto as pb;
use tonic::Code;

async fn upsert_items(s: &TestServer, items: Vec<pb::Item>) -> Result<(), tonic::Status> {
    s.backlog()
        .upsert_items(pb::UpsertItemsRequest {
            items,
            update_mask: None,
        })
        .await
        .map(|_| ())
}

#[tokio::test]
async fn estimates_outside_their_bounds_are_refused() {
    let s = TestServer::start().await;
    create_source(&s, github_source("web")).await;
    // 5e-324 used to give a value density of +Infinity, ranked first.
    for bad in [5e-324, 0.001, 1e7, f64::INFINITY, -1.0] {
        assert_invalid(
            upsert_items(&s, vec![estimated(item("web", "1", "Tiny"), bad)]).await,
            &["items[0].estimate"],
        );
    }
    upsert(
        &s,
        vec![
            estimated(item("web", "1", "Smallest"), 0.01),
            estimated(item("web", "2", "Largest"), 1e6),
        ],
    )
    .await;
    let r = full_ranking(&s, false).await;
    for it in &r.items {
        let sc = it.score.as_ref().expect("score");
        assert!(
            sc.value_density.is_finite() && sc.size.is_finite(),
            "{sc:?}"
        );
    }
}

#[tokio::test]
async fn goal_weights_are_bounded_so_siblings_cannot_overflow() {
    let s = TestServer::start().await;
    use pb::GoalLevel::Strategic;
    for bad in [1e308, 1e6 + 1.0, f64::NAN, -1.0] {
        assert_invalid(
            s.model()
                .create_goal(pb::CreateGoalRequest {
                    goal: Some(goal("S-a", Strategic, "", Some(bad))),
                })
                .await,
            &["goal.weight"],
        );
    }
    // Two siblings at the largest weight share the weight evenly; two of
    // 1e308 used to overflow their sum and zero every effective weight.
    create_goal(&s, goal("S-a", Strategic, "", Some(1e6))).await;
    create_goal(&s, goal("S-b", Strategic, "", Some(1e6))).await;
    let got = s
        .model()
        .get_goal(pb::GetGoalRequest { id: "S-a".into() })
        .await
        .expect("GetGoal")
        .into_inner()
        .goal
        .expect("goal");
    assert_eq!(got.effective_weight, 0.5);
}

#[tokio::test]
async fn metric_numbers_are_bounded() {
    let s = TestServer::start().await;
    assert_invalid(
        s.model()
            .create_metric(pb::CreateMetricRequest {
                metric: Some(metric("huge", 1e308, -1e308)),
            })
            .await,
        &["metric.baseline", "metric.target"],
    );
    assert_invalid(
        s.model()
            .create_metric(pb::CreateMetricRequest {
                metric: Some(metric("huge", 0.0, 1e12 + 1.0)),
            })
            .await,
        &["metric.target"],
    );
    create_metric(&s, metric("wide", -1e12, 1e12)).await;
    assert_invalid(
        s.model()
            .record_observations(pb::RecordObservationsRequest {
                observations: vec![observation("wide", -1e13, None)],
            })
            .await,
        &["observations[0].value"],
    );
    record(&s, vec![observation("wide", 1e12, None)]).await;
}

/// The decoded JSON of a page token, changed by `edit`, encoded again.
fn forge(token: &str, edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let bytes = URL_SAFE_NO_PAD.decode(token).expect("base64");
    let mut json: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
    edit(&mut json);
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&json).expect("json"))
}

#[tokio::test]
async fn forged_ranking_tokens_are_refused() {
    let s = start_with_fixture().await;
    let first = rank(
        &s,
        pb::RankItemsRequest {
            page_size: 2,
            ..Default::default()
        },
    )
    .await;
    let token = first.next_page_token.clone();
    assert!(!token.is_empty());
    let page = |t: String| {
        let mut client = s.scoring();
        async move {
            client
                .rank_items(pb::RankItemsRequest {
                    page_size: 2,
                    page_token: t,
                    ..Default::default()
                })
                .await
                .map(|r| r.into_inner())
        }
    };
    // The honest token numbers on.
    let second = page(token.clone()).await.expect("second page");
    let ranks: Vec<i32> = second.items.iter().map(|i| i.rank).collect();
    assert_eq!(ranks, [3, 4]);

    // A rank of u32::MAX used to wrap to 0; i32::MAX served negative ranks.
    for r in [u32::MAX as u64, i32::MAX as u64, 1000] {
        assert_invalid(
            page(forge(&token, |j| j["r"] = r.into())).await,
            &["page_token"],
        );
    }
    // A ranking number that is not a number, a key longer than any key.
    assert_invalid(
        page(forge(&token, |j| j["v"] = f64::NAN.to_bits().into())).await,
        &["page_token"],
    );
    assert_invalid(
        page(forge(&token, |j| j["k"] = "k".repeat(5000).into())).await,
        &["page_token"],
    );
}

#[tokio::test]
async fn control_characters_are_refused_in_names_keys_and_rules() {
    let s = TestServer::start().await;
    create_source(&s, github_source("web")).await;
    assert_invalid(
        upsert_items(
            &s,
            vec![
                item("web", "1", "NUL\0here"),
                pb::Item {
                    parent_key: "web/\u{1b}[2J".into(),
                    ..item("web", "2", "Escape in parent")
                },
                labelled(item("web", "3", "C1 in a label"), &["a\u{85}b"]),
            ],
        )
        .await,
        &[
            "items[0].title",
            "items[1].parent_key",
            "items[2].labels[0]",
        ],
    );
    // A tab, as trackers keep it in titles; bodies as they come.
    upsert(
        &s,
        vec![pb::Item {
            body: "line\r\n\tindented\0nul".into(),
            ..item("web", "1", "Tab\there")
        }],
    )
    .await;
    assert_eq!(get_item(&s, "web/1").await.unwrap().title, "Tab\there");

    let mut src = github_source("ops");
    src.project_key = "acme/ops\0".into();
    src.link_rules = Some(pb::LinkRules {
        label_prefix: "hyp\n".into(),
        body_keyword: "Hyp\u{7f}".into(),
        disabled: false,
    });
    assert_invalid(
        s.sources()
            .create_source(pb::CreateSourceRequest { source: Some(src) })
            .await,
        &[
            "source.project_key",
            "source.link_rules.label_prefix",
            "source.link_rules.body_keyword",
        ],
    );
    assert_invalid(
        s.model()
            .create_goal(pb::CreateGoalRequest {
                goal: Some(pb::Goal {
                    title: "Grow\0".into(),
                    ..goal("S-a", pb::GoalLevel::Strategic, "", None)
                }),
            })
            .await,
        &["goal.title"],
    );
}

#[tokio::test]
async fn an_item_cannot_be_its_own_parent_or_ancestor() {
    let s = TestServer::start().await;
    create_source(&s, github_source("web")).await;
    let child_of = |id: &str, parent: &str| pb::Item {
        parent_key: parent.into(),
        ..item("web", id, "Item")
    };
    assert_invalid(
        upsert_items(&s, vec![child_of("1", "web/1")]).await,
        &["items[0].parent_key"],
    );
    // A cycle within one batch: both items name it.
    assert_invalid(
        upsert_items(&s, vec![child_of("1", "web/2"), child_of("2", "web/1")]).await,
        &["items[0].parent_key", "items[1].parent_key"],
    );
    // A cycle with stored items, two levels up.
    upsert(&s, vec![child_of("1", "web/2"), child_of("2", "web/3")]).await;
    assert_invalid(
        upsert_items(&s, vec![child_of("3", "web/1")]).await,
        &["items[0].parent_key"],
    );
    // Moving an item so the chain no longer closes is fine.
    upsert(&s, vec![child_of("2", ""), child_of("3", "web/1")]).await;
    assert_eq!(get_item(&s, "web/3").await.unwrap().parent_key, "web/1");
}

#[tokio::test]
async fn errors_quote_long_input_briefly() {
    let s = TestServer::start().await;
    // A 15,000-character key used to make a header clients refuse
    // (RESOURCE_EXHAUSTED on the client); 1 MiB gave a 917 KB header.
    for len in [15_000, 1 << 20] {
        let key = "k".repeat(len);
        let status = assert_code(get_item(&s, &key).await, Code::NotFound);
        assert!(
            status.message().len() < 120,
            "{} bytes: {}",
            status.message().len(),
            status.message()
        );
        assert!(status.message().contains('…'), "{}", status.message());
    }
    // A batch of many bad items names the first few, not all of them.
    create_source(&s, github_source("web")).await;
    let bad: Vec<pb::Item> = (0..1000).map(|i| item("web", &i.to_string(), "")).collect();
    let status = assert_code(upsert_items(&s, bad).await, Code::InvalidArgument);
    assert_eq!(bad_fields(&status).len(), 20);
    assert!(
        status.message().ends_with("and 980 more"),
        "{}",
        status.message()
    );
}
