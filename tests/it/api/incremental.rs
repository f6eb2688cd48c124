//! Incremental rescoring, and the limits on batch sizes.

use crate::common::*;
use plumbline::proto as pb;
use tonic::Code;

#[tokio::test]
async fn an_observation_rescores_only_the_items_that_depend_on_its_metric() {
    let s = start_with_fixture().await;
    assert_eq!(s.server().engine().read().item_count(), FIXTURE_ITEMS);

    // conv is measured by H-1 only, which web/1, web/3 and ops/2 link to:
    // K = 3 of N = 9 items.
    let before = s.rescored();
    record(&s, vec![observation("conv", 2.8, Some(days_ago(1)))]).await;
    assert_eq!(s.rescored() - before, 3);

    // An observation that leaves the gap where it was rescores nothing.
    let before = s.rescored();
    record(&s, vec![observation("conv", 2.8, None)]).await;
    assert_eq!(s.rescored() - before, 0);

    // lead reaches web/2, web/5 (closed items too) and ops/2.
    let before = s.rescored();
    record(&s, vec![observation("lead", 7.0, None)]).await;
    assert_eq!(s.rescored() - before, 3);

    // A metric no hypothesis measures rescores nothing.
    create_metric(&s, metric("unused", 0.0, 1.0)).await;
    let before = s.rescored();
    record(&s, vec![observation("unused", 0.5, None)]).await;
    assert_eq!(s.rescored() - before, 0);

    // A link within capacity reaches its item only.
    let before = s.rescored();
    s.backlog()
        .unlink_item(pb::UnlinkItemRequest {
            item_key: "web/3".into(),
            hypothesis_id: "H-1".into(),
        })
        .await
        .unwrap();
    assert_eq!(s.rescored() - before, 1);

    // An item edit reaches that item only; an unchanged upsert nothing.
    let before = s.rescored();
    upsert(&s, vec![estimated(item("web", "6", "Rename repo"), 2.0)]).await;
    assert_eq!(s.rescored() - before, 1);
    let before = s.rescored();
    upsert(&s, vec![estimated(item("web", "6", "Rename repo"), 2.0)]).await;
    assert_eq!(s.rescored() - before, 0);
}

#[tokio::test]
async fn batch_limits_are_enforced() {
    let s = TestServer::start().await;
    create_source(&s, github_source("web")).await;
    let items: Vec<pb::Item> = (0..1001)
        .map(|i| item("web", &i.to_string(), "t"))
        .collect();
    assert_invalid(
        s.backlog()
            .upsert_items(pb::UpsertItemsRequest {
                items,
                update_mask: None,
            })
            .await,
        &["items"],
    );
    assert_code(get_item(&s, "web/0").await, Code::NotFound);
    let items: Vec<pb::Item> = (0..1000)
        .map(|i| item("web", &i.to_string(), "t"))
        .collect();
    assert_eq!(upsert(&s, items).await.created_count, 1000);
    let keys: Vec<String> = (0..1001).map(|i| format!("web/{}", i % 1000)).collect();
    assert_invalid(
        s.backlog()
            .batch_get_items(pb::BatchGetItemsRequest { keys: keys.clone() })
            .await,
        &["keys"],
    );
    let got = s
        .backlog()
        .batch_get_items(pb::BatchGetItemsRequest {
            keys: keys[..1000].to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.items.len(), 1000);
    assert_eq!(got.items[999].key, "web/999");
    // RankItems caps the page at 1000.
    let r = rank(
        &s,
        pb::RankItemsRequest {
            page_size: 5000,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(r.items.len(), 1000);
}
