//! Items: idempotent upserts with change counts, batches that write nothing when one item is bad, gets, and filtered pages.

use crate::common::*;
use plumbline::proto as pb;
use tonic::Code;

#[tokio::test]
async fn upsert_items_is_idempotent_and_counts_changes() {
    let s = TestServer::start().await;
    create_source(&s, github_source("web")).await;
    let t = prost_types::Timestamp {
        seconds: 1_700_000_000,
        nanos: 123_456_789,
    };
    let batch = vec![
        pb::Item {
            create_time: Some(t),
            update_time: Some(t),
            body: "Why\n\n- [ ] design\n- [x] build\n* [ ] ship\nnot a task".into(),
            parent_key: "web/0".into(),
            ..labelled(estimated(item("web", "1", "One"), 2.5), &["b", "a"])
        },
        item("web", "2", "Two"),
        closed(pb::Item {
            close_time: Some(t),
            ..estimated(item("web", "3", "Three"), 1.0)
        }),
    ];
    let first = upsert(&s, batch.clone()).await;
    assert_eq!(
        (
            first.created_count,
            first.updated_count,
            first.unchanged_count
        ),
        (3, 0, 0)
    );
    let keys: Vec<&str> = first.items.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(keys, ["web/1", "web/2", "web/3"], "SOURCE/EXTERNAL_ID");
    let one = &first.items[0];
    assert_eq!(
        one.tasks,
        [
            pb::ChecklistTask {
                text: "design".into(),
                done: false
            },
            pb::ChecklistTask {
                text: "build".into(),
                done: true
            },
            pb::ChecklistTask {
                text: "ship".into(),
                done: false
            },
        ]
    );
    assert_eq!(first.items[1].state, pb::ItemState::Open as i32, "default");
    assert_eq!(first.items[1].estimate, None);

    // Read back exactly what was sent (times to the nanosecond).
    let got = get_item(&s, "web/1").await.unwrap();
    assert_eq!(got, first.items[0]);
    assert_eq!(got.create_time, Some(t));
    assert_eq!(got.labels, ["b", "a"]);
    assert_eq!(got.estimate, Some(2.5));
    assert_eq!(got.parent_key, "web/0");
    assert_eq!(got.tasks.len(), 3);
    let three = get_item(&s, "web/3").await.unwrap();
    assert_eq!(three.state, pb::ItemState::Closed as i32);
    assert_eq!(three.close_time, Some(t));

    // The same batch again changes nothing and rescores nothing.
    let rescored = s.rescored();
    let again = upsert(&s, batch.clone()).await;
    assert_eq!(
        (
            again.created_count,
            again.updated_count,
            again.unchanged_count
        ),
        (0, 0, 3)
    );
    assert_eq!(again.items, first.items);
    assert_eq!(s.rescored(), rescored);

    // A key given explicitly (equal to SOURCE/EXTERNAL_ID) is accepted.
    let mut with_keys = batch.clone();
    with_keys[1].key = "web/2".into();
    let r = upsert(&s, with_keys).await;
    assert_eq!(r.unchanged_count, 3);

    // One changed, one new, two untouched.
    let mut changed = batch.clone();
    changed[1].title = "Two, renamed".into();
    changed.push(item("web", "4", "Four"));
    let r = upsert(&s, changed).await;
    assert_eq!(
        (r.created_count, r.updated_count, r.unchanged_count),
        (1, 1, 2)
    );
    assert_eq!(get_item(&s, "web/2").await.unwrap().title, "Two, renamed");
    assert_eq!(get_item(&s, "web/4").await.unwrap().title, "Four");

    assert_invalid(
        s.backlog()
            .upsert_items(pb::UpsertItemsRequest {
                items: vec![],
                update_mask: None,
            })
            .await,
        &["items"],
    );
    assert_invalid(
        s.backlog()
            .upsert_items(pb::UpsertItemsRequest {
                items: vec![pb::Item {
                    key: "web/other".into(),
                    ..item("web", "9", "Nine")
                }],
                update_mask: None,
            })
            .await,
        &["items[0].key"],
    );
}

#[tokio::test]
async fn a_batch_with_a_bad_estimate_writes_nothing() {
    let s = TestServer::start().await;
    create_source(&s, github_source("web")).await;
    upsert(&s, vec![item("web", "1", "Existing")]).await;
    assert_invalid(
        s.backlog()
            .upsert_items(pb::UpsertItemsRequest {
                items: vec![
                    item("web", "new", "Good"),
                    estimated(item("web", "bad", "Bad"), -1.0),
                    pb::Item {
                        title: "Existing, changed".into(),
                        ..item("web", "1", "")
                    },
                ],
                update_mask: None,
            })
            .await,
        &["items[1].estimate"],
    );
    assert_code(get_item(&s, "web/new").await, Code::NotFound);
    assert_code(get_item(&s, "web/bad").await, Code::NotFound);
    assert_eq!(get_item(&s, "web/1").await.unwrap().title, "Existing");

    // Several bad fields in several items are all reported.
    assert_invalid(
        s.backlog()
            .upsert_items(pb::UpsertItemsRequest {
                items: vec![
                    estimated(item("web", "x", ""), 0.0),
                    item("web", "has space", "t"),
                ],
                update_mask: None,
            })
            .await,
        &[
            "items[0].title",
            "items[0].estimate",
            "items[1].external_id",
        ],
    );
}

#[tokio::test]
async fn a_batch_with_an_unknown_source_writes_nothing() {
    let s = TestServer::start().await;
    create_source(&s, github_source("web")).await;
    assert_invalid(
        s.backlog()
            .upsert_items(pb::UpsertItemsRequest {
                items: vec![item("nope", "1", "Orphan"), item("web", "1", "Good")],
                update_mask: None,
            })
            .await,
        &["items[0].source_id"],
    );
    assert_code(get_item(&s, "web/1").await, Code::NotFound);
    assert_code(get_item(&s, "nope/1").await, Code::NotFound);
}

#[tokio::test]
async fn a_batch_with_a_key_twice_writes_nothing() {
    let s = TestServer::start().await;
    create_source(&s, github_source("web")).await;
    assert_invalid(
        s.backlog()
            .upsert_items(pb::UpsertItemsRequest {
                items: vec![
                    item("web", "1", "First"),
                    item("web", "2", "Other"),
                    item("web", "1", "Again"),
                ],
                update_mask: None,
            })
            .await,
        &["items[2].external_id"],
    );
    for k in ["web/1", "web/2"] {
        assert_code(get_item(&s, k).await, Code::NotFound);
    }
    let listed = s
        .backlog()
        .list_items(pb::ListItemsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.items.is_empty());
}

#[tokio::test]
async fn get_and_batch_get_items() {
    let s = start_with_fixture().await;
    let one = get_item(&s, "web/1").await.unwrap();
    assert_eq!(one.key, "web/1");
    assert_eq!(one.source_id, "web");
    assert_eq!(one.external_id, "1");
    assert_eq!(one.title, "One-click checkout");
    assert_eq!(one.estimate, Some(2.0));
    assert_eq!(one.labels, ["checkout", "ux"]);

    let status = assert_code(get_item(&s, "web/99").await, Code::NotFound);
    assert!(status.message().contains("web/99"), "{status:?}");
    assert_invalid(get_item(&s, "").await, &["key"]);

    let batch = s
        .backlog()
        .batch_get_items(pb::BatchGetItemsRequest {
            keys: vec!["web/3".into(), "ops/1".into(), "web/1".into()],
        })
        .await
        .unwrap()
        .into_inner();
    let got: Vec<&str> = batch.items.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(got, ["web/3", "ops/1", "web/1"], "request order kept");
    assert_eq!(batch.items[2], one);

    let status = assert_code(
        s.backlog()
            .batch_get_items(pb::BatchGetItemsRequest {
                keys: vec!["web/1".into(), "ops/77".into(), "web/2".into()],
            })
            .await,
        Code::NotFound,
    );
    assert!(status.message().contains("ops/77"), "{status:?}");
    assert_invalid(
        s.backlog()
            .batch_get_items(pb::BatchGetItemsRequest {
                keys: vec!["web/1".into(), String::new()],
            })
            .await,
        &["keys[1]"],
    );
}

async fn list_all_items(s: &TestServer, req: pb::ListItemsRequest) -> Vec<String> {
    let mut out = Vec::new();
    let mut req = req;
    for _ in 0..50 {
        let page = s
            .backlog()
            .list_items(req.clone())
            .await
            .unwrap()
            .into_inner();
        if req.page_size > 0 {
            assert!(page.items.len() <= req.page_size as usize);
        }
        out.extend(page.items.into_iter().map(|i| i.key));
        if page.next_page_token.is_empty() {
            return out;
        }
        req.page_token = page.next_page_token;
    }
    panic!("pagination does not end");
}

#[tokio::test]
async fn list_items_filters_and_pages() {
    let s = start_with_fixture().await;
    let all = [
        "ops/1", "ops/2", "ops/3", "web/1", "web/2", "web/3", "web/4", "web/5", "web/6",
    ];
    assert_eq!(
        list_all_items(&s, pb::ListItemsRequest::default()).await,
        all
    );
    for size in [1, 2, 4, 9, 10] {
        let walked = list_all_items(
            &s,
            pb::ListItemsRequest {
                page_size: size,
                ..Default::default()
            },
        )
        .await;
        assert_eq!(walked, all, "page size {size}");
    }
    assert_eq!(
        list_all_items(
            &s,
            pb::ListItemsRequest {
                source_id: "ops".into(),
                page_size: 2,
                ..Default::default()
            }
        )
        .await,
        ["ops/1", "ops/2", "ops/3"]
    );
    assert_eq!(
        list_all_items(
            &s,
            pb::ListItemsRequest {
                state: pb::ItemState::Closed as i32,
                ..Default::default()
            }
        )
        .await,
        ["web/5"]
    );
    assert_eq!(
        list_all_items(
            &s,
            pb::ListItemsRequest {
                source_id: "web".into(),
                state: pb::ItemState::Open as i32,
                page_size: 2,
                ..Default::default()
            }
        )
        .await,
        ["web/1", "web/2", "web/3", "web/4", "web/6"]
    );
    assert_eq!(
        list_all_items(
            &s,
            pb::ListItemsRequest {
                label: "checkout".into(),
                page_size: 1,
                ..Default::default()
            }
        )
        .await,
        ["ops/2", "web/1", "web/3"]
    );
    assert!(
        list_all_items(
            &s,
            pb::ListItemsRequest {
                label: "nobody-uses-this".into(),
                ..Default::default()
            }
        )
        .await
        .is_empty()
    );

    // A token only works with the filters it was made for.
    let first = s
        .backlog()
        .list_items(pb::ListItemsRequest {
            source_id: "web".into(),
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.items.len(), 2);
    assert!(!first.next_page_token.is_empty());
    for other in [
        pb::ListItemsRequest {
            source_id: "ops".into(),
            ..Default::default()
        },
        pb::ListItemsRequest {
            source_id: "web".into(),
            label: "checkout".into(),
            ..Default::default()
        },
        pb::ListItemsRequest {
            source_id: "web".into(),
            state: pb::ItemState::Open as i32,
            ..Default::default()
        },
    ] {
        assert_invalid(
            s.backlog()
                .list_items(pb::ListItemsRequest {
                    page_token: first.next_page_token.clone(),
                    page_size: 2,
                    ..other
                })
                .await,
            &["page_token"],
        );
    }
    assert_invalid(
        s.backlog()
            .list_items(pb::ListItemsRequest {
                page_token: "%%%".into(),
                ..Default::default()
            })
            .await,
        &["page_token"],
    );
    assert_invalid(
        s.backlog()
            .list_items(pb::ListItemsRequest {
                state: 42,
                ..Default::default()
            })
            .await,
        &["state"],
    );
}
