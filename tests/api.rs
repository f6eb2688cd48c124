//! Every RPC of the four plumbline services, through the generated clients
//! against a real server with a temporary SQLite file, including the error
//! codes and the `google.rpc.BadRequest` field violations.

mod common;

use common::*;
use plumbline::proto as pb;
use tonic::Code;

// ===== sources =====

#[tokio::test]
async fn sources_are_created_read_and_listed_page_by_page() {
    let s = TestServer::start().await;
    let created = create_source(
        &s,
        pb::Source {
            base_url: "https://api.github.com/".into(),
            link_rules: Some(pb::LinkRules {
                label_prefix: "hyp:".into(),
                ..Default::default()
            }),
            ..github_source("web")
        },
    )
    .await;
    assert_eq!(created.id, "web");
    assert_eq!(created.kind, pb::TrackerKind::Github as i32);
    assert_eq!(
        created.base_url, "https://api.github.com",
        "trailing slash trimmed"
    );
    assert_eq!(created.project_key, "acme/web");
    assert_eq!(created.token_env, "GITHUB_TOKEN");
    assert_eq!(created.link_rules.as_ref().unwrap().label_prefix, "hyp:");
    assert!(created.create_time.is_some());
    assert_eq!(created.create_time, created.update_time);

    let got = s
        .sources()
        .get_source(pb::GetSourceRequest { id: "web".into() })
        .await
        .unwrap()
        .into_inner()
        .source
        .unwrap();
    assert_eq!(got, created);

    create_source(&s, jira_source("ops")).await;
    create_source(&s, github_source("api")).await;

    // page_size 1 walks every source, in id order, then stops.
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut calls = 0;
    loop {
        let page = s
            .sources()
            .list_sources(pb::ListSourcesRequest {
                page_size: 1,
                page_token: token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        calls += 1;
        assert!(page.sources.len() <= 1);
        seen.extend(page.sources.into_iter().map(|s| s.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
        assert!(calls < 10, "pagination does not end");
    }
    assert_eq!(seen, ["api", "ops", "web"]);

    let all = s
        .sources()
        .list_sources(pb::ListSourcesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.sources.len(), 3);
    assert!(all.next_page_token.is_empty());

    assert_code(
        s.sources()
            .get_source(pb::GetSourceRequest { id: "nope".into() })
            .await,
        Code::NotFound,
    );
    assert_invalid(
        s.sources()
            .get_source(pb::GetSourceRequest { id: String::new() })
            .await,
        &["id"],
    );
    assert_invalid(
        s.sources()
            .list_sources(pb::ListSourcesRequest {
                page_size: -1,
                ..Default::default()
            })
            .await,
        &["page_size"],
    );
    assert_invalid(
        s.sources()
            .list_sources(pb::ListSourcesRequest {
                page_token: "not-a-token".into(),
                ..Default::default()
            })
            .await,
        &["page_token"],
    );
}

#[tokio::test]
async fn creating_a_source_twice_is_already_exists() {
    let s = TestServer::start().await;
    create_source(&s, github_source("web")).await;
    assert_code(
        s.sources()
            .create_source(pb::CreateSourceRequest {
                source: Some(jira_source("web")),
            })
            .await,
        Code::AlreadyExists,
    );
    // The first one is untouched.
    let got = s
        .sources()
        .get_source(pb::GetSourceRequest { id: "web".into() })
        .await
        .unwrap()
        .into_inner()
        .source
        .unwrap();
    assert_eq!(got.kind, pb::TrackerKind::Github as i32);
}

#[tokio::test]
async fn a_token_in_token_env_is_refused() {
    let s = TestServer::start().await;
    assert_invalid(
        s.sources()
            .create_source(pb::CreateSourceRequest {
                source: Some(pb::Source {
                    token_env: "ghp_abc123".into(),
                    ..github_source("web")
                }),
            })
            .await,
        &["source.token_env"],
    );
    assert_code(
        s.sources()
            .get_source(pb::GetSourceRequest { id: "web".into() })
            .await,
        Code::NotFound,
    );
    // Every bad field is named at once.
    assert_invalid(
        s.sources()
            .create_source(pb::CreateSourceRequest {
                source: Some(pb::Source {
                    id: "-bad".into(),
                    kind: 0,
                    base_url: "ftp://x".into(),
                    project_key: String::new(),
                    token_env: "ghp_abc123".into(),
                    ..Default::default()
                }),
            })
            .await,
        &[
            "source.id",
            "source.kind",
            "source.base_url",
            "source.project_key",
            "source.token_env",
        ],
    );
    assert_invalid(
        s.sources()
            .create_source(pb::CreateSourceRequest { source: None })
            .await,
        &["source"],
    );

    // Also on update.
    create_source(&s, github_source("web")).await;
    assert_invalid(
        s.sources()
            .update_source(pb::UpdateSourceRequest {
                source: Some(pb::Source {
                    token_env: "ghp_abc123".into(),
                    ..github_source("web")
                }),
                update_mask: mask(&["token_env"]),
            })
            .await,
        &["source.token_env"],
    );
}

#[tokio::test]
async fn update_source_changes_only_the_masked_fields() {
    let s = TestServer::start().await;
    let before = create_source(&s, github_source("web")).await;
    let after = s
        .sources()
        .update_source(pb::UpdateSourceRequest {
            source: Some(pb::Source {
                id: "web".into(),
                kind: pb::TrackerKind::Gitlab as i32,
                base_url: "https://ghe.example.com/api/v3".into(),
                project_key: "someone/else".into(),
                token_env: "OTHER_TOKEN".into(),
                ..Default::default()
            }),
            update_mask: mask(&["base_url"]),
        })
        .await
        .unwrap()
        .into_inner()
        .source
        .unwrap();
    assert_eq!(after.base_url, "https://ghe.example.com/api/v3");
    assert_eq!(after.kind, before.kind);
    assert_eq!(after.project_key, before.project_key);
    assert_eq!(after.token_env, before.token_env);
    assert_eq!(after.link_rules, before.link_rules);
    assert_eq!(after.estimate_field, before.estimate_field);
    assert_eq!(after.create_time, before.create_time);
    let (b, a) = (before.update_time.unwrap(), after.update_time.unwrap());
    assert!((a.seconds, a.nanos) >= (b.seconds, b.nanos));

    let got = s
        .sources()
        .get_source(pb::GetSourceRequest { id: "web".into() })
        .await
        .unwrap()
        .into_inner()
        .source
        .unwrap();
    assert_eq!(got, after);

    // An empty mask updates every mutable field.
    let all = s
        .sources()
        .update_source(pb::UpdateSourceRequest {
            source: Some(jira_source("web")),
            update_mask: None,
        })
        .await
        .unwrap()
        .into_inner()
        .source
        .unwrap();
    assert_eq!(all.kind, pb::TrackerKind::Jira as i32);
    assert_eq!(all.project_key, "WEB");
    assert_eq!(all.estimate_field, "customfield_10016");
    assert_eq!(all.create_time, before.create_time);

    assert_code(
        s.sources()
            .update_source(pb::UpdateSourceRequest {
                source: Some(github_source("nope")),
                update_mask: mask(&["base_url"]),
            })
            .await,
        Code::NotFound,
    );
}

#[tokio::test]
async fn update_source_with_an_unknown_mask_path_is_invalid() {
    let s = TestServer::start().await;
    let before = create_source(&s, github_source("web")).await;
    for bad in [&["colour"][..], &["base_url", "id"], &["create_time"]] {
        let status = s
            .sources()
            .update_source(pb::UpdateSourceRequest {
                source: Some(pb::Source {
                    base_url: "https://changed.example".into(),
                    ..github_source("web")
                }),
                update_mask: mask(bad),
            })
            .await
            .expect_err("unknown mask path");
        assert_eq!(status.code(), Code::InvalidArgument);
        let fields = bad_fields(&status);
        assert!(!fields.is_empty());
        assert!(
            fields.iter().all(|f| f == "update_mask"),
            "{fields:?} for {bad:?}"
        );
    }
    let got = s
        .sources()
        .get_source(pb::GetSourceRequest { id: "web".into() })
        .await
        .unwrap()
        .into_inner()
        .source
        .unwrap();
    assert_eq!(got, before, "a refused update changes nothing");
}

#[tokio::test]
async fn delete_source_needs_force_while_it_has_items() {
    let s = start_with_fixture().await;
    let status = assert_code(
        s.sources()
            .delete_source(pb::DeleteSourceRequest {
                id: "ops".into(),
                force: false,
            })
            .await,
        Code::FailedPrecondition,
    );
    assert!(status.message().contains("ops"), "{status:?}");
    assert!(get_item(&s, "ops/1").await.is_ok());

    let deleted = s
        .sources()
        .delete_source(pb::DeleteSourceRequest {
            id: "ops".into(),
            force: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.deleted_item_count, 3);
    assert_code(
        s.sources()
            .get_source(pb::GetSourceRequest { id: "ops".into() })
            .await,
        Code::NotFound,
    );
    for k in ["ops/1", "ops/2", "ops/3"] {
        assert_code(get_item(&s, k).await, Code::NotFound);
        assert_code(
            s.scoring()
                .get_item_score(pb::GetItemScoreRequest { item_key: k.into() })
                .await,
            Code::NotFound,
        );
    }
    // Their links went with them; the other items are untouched.
    let links = s
        .backlog()
        .list_links(pb::ListLinksRequest::default())
        .await
        .unwrap()
        .into_inner()
        .links;
    assert!(links.iter().all(|l| l.item_key.starts_with("web/")));
    assert_eq!(links.len(), 4);
    let ranking = rank(&s, pb::RankItemsRequest::default()).await;
    assert_eq!(
        keys(&ranking),
        ["web/2", "web/1", "web/3", "web/4", "web/6"]
    );
    // Without ops/2, H-1's contributions add up to 0.75 and web/1 keeps 0.09.
    assert!((item_score(&s, "web/1").await.value - 0.09).abs() < 1e-12);

    // An empty source goes without force.
    create_source(&s, github_source("empty")).await;
    let r = s
        .sources()
        .delete_source(pb::DeleteSourceRequest {
            id: "empty".into(),
            force: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.deleted_item_count, 0);
    assert_code(
        s.sources()
            .delete_source(pb::DeleteSourceRequest {
                id: "empty".into(),
                force: false,
            })
            .await,
        Code::NotFound,
    );
}

// ===== items =====

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
            .upsert_items(pb::UpsertItemsRequest { items: vec![] })
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

// ===== goals =====

fn goal_weights(goals: &[pb::Goal]) -> Vec<(String, f64)> {
    goals
        .iter()
        .map(|g| (g.id.clone(), g.effective_weight))
        .collect()
}

async fn list_goals(s: &TestServer, parent: &str, page_size: i32) -> Vec<pb::Goal> {
    let mut out = Vec::new();
    let mut token = String::new();
    for _ in 0..50 {
        let page = s
            .model()
            .list_goals(pb::ListGoalsRequest {
                parent_id: parent.into(),
                page_size,
                page_token: token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        if page_size > 0 {
            assert!(page.goals.len() <= page_size as usize);
        }
        out.extend(page.goals);
        if page.next_page_token.is_empty() {
            return out;
        }
        token = page.next_page_token;
    }
    panic!("pagination does not end");
}

#[tokio::test]
async fn goals_crud_and_effective_weights() {
    use pb::GoalLevel::{Intermediate, Strategic, Tactical};
    let s = TestServer::start().await;
    let a = create_goal(&s, goal("S-a", Strategic, "", Some(3.0))).await;
    assert_eq!(a.effective_weight, 1.0, "the only strategic goal");
    assert_eq!(a.weight, Some(3.0));
    assert_eq!(a.level, Strategic as i32);
    assert_eq!(a.key_value_area, pb::KeyValueArea::UnrealizedValue as i32);
    create_goal(&s, goal("S-b", Strategic, "", Some(1.0))).await;
    let get = |id: &'static str| {
        let mut c = s.model();
        async move {
            c.get_goal(pb::GetGoalRequest { id: id.into() })
                .await
                .map(|r| r.into_inner().goal.unwrap())
        }
    };
    assert_eq!(get("S-a").await.unwrap().effective_weight, 0.75);
    assert_eq!(get("S-b").await.unwrap().effective_weight, 0.25);

    // Unset weight means 1; children split their parent's weight.
    let ia = create_goal(&s, goal("I-a", Intermediate, "S-a", None)).await;
    assert_eq!(ia.weight, Some(1.0));
    assert_eq!(ia.effective_weight, 0.75);
    create_goal(&s, goal("I-b", Intermediate, "S-a", Some(3.0))).await;
    let t = create_goal(&s, goal("T-a", Tactical, "I-b", None)).await;
    assert_eq!(t.effective_weight, 0.5625);

    let all = list_goals(&s, "", 1).await;
    assert_eq!(
        goal_weights(&all),
        [
            ("I-a".to_string(), 0.1875),
            ("I-b".to_string(), 0.5625),
            ("S-a".to_string(), 0.75),
            ("S-b".to_string(), 0.25),
            ("T-a".to_string(), 0.5625),
        ]
    );
    let children: Vec<String> = list_goals(&s, "S-a", 0)
        .await
        .into_iter()
        .map(|g| g.id)
        .collect();
    assert_eq!(children, ["I-a", "I-b"]);
    let first = s
        .model()
        .list_goals(pb::ListGoalsRequest {
            parent_id: "S-a".into(),
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.goals.len(), 1);
    assert_invalid(
        s.model()
            .list_goals(pb::ListGoalsRequest {
                parent_id: "S-b".into(),
                page_size: 1,
                page_token: first.next_page_token,
            })
            .await,
        &["page_token"],
    );

    // Level rules.
    assert_invalid(
        s.model()
            .create_goal(pb::CreateGoalRequest {
                goal: Some(goal("I-x", Intermediate, "", None)),
            })
            .await,
        &["goal.parent_id"],
    );
    assert_invalid(
        s.model()
            .create_goal(pb::CreateGoalRequest {
                goal: Some(goal("T-x", Tactical, "S-a", None)),
            })
            .await,
        &["goal.parent_id"],
    );
    assert_invalid(
        s.model()
            .create_goal(pb::CreateGoalRequest {
                goal: Some(goal("S-x", Strategic, "S-a", None)),
            })
            .await,
        &["goal.parent_id"],
    );
    assert_invalid(
        s.model()
            .create_goal(pb::CreateGoalRequest {
                goal: Some(goal("I-x", Intermediate, "missing", None)),
            })
            .await,
        &["goal.parent_id"],
    );
    assert_invalid(
        s.model()
            .create_goal(pb::CreateGoalRequest {
                goal: Some(pb::Goal {
                    title: String::new(),
                    ..goal("S-x", pb::GoalLevel::Unspecified, "", Some(-1.0))
                }),
            })
            .await,
        &["goal.title", "goal.level", "goal.weight"],
    );
    assert_code(get("I-x").await, Code::NotFound);
    assert_code(
        s.model()
            .create_goal(pb::CreateGoalRequest {
                goal: Some(goal("S-a", Strategic, "", None)),
            })
            .await,
        Code::AlreadyExists,
    );

    // Update: only the masked field changes, weights follow.
    let updated = s
        .model()
        .update_goal(pb::UpdateGoalRequest {
            goal: Some(pb::Goal {
                title: "ignored".into(),
                ..goal("S-b", Strategic, "", Some(3.0))
            }),
            update_mask: mask(&["weight"]),
        })
        .await
        .unwrap()
        .into_inner()
        .goal
        .unwrap();
    assert_eq!(updated.weight, Some(3.0));
    assert_eq!(updated.title, "Goal S-b");
    assert_eq!(updated.effective_weight, 0.5);
    assert_eq!(get("S-a").await.unwrap().effective_weight, 0.5);
    assert_eq!(get("T-a").await.unwrap().effective_weight, 0.375);
    assert_invalid(
        s.model()
            .update_goal(pb::UpdateGoalRequest {
                goal: Some(goal("S-b", Strategic, "", None)),
                update_mask: mask(&["colour"]),
            })
            .await,
        &["update_mask"],
    );
    // A goal with children cannot change level.
    assert_code(
        s.model()
            .update_goal(pb::UpdateGoalRequest {
                goal: Some(goal("I-b", Tactical, "I-a", None)),
                update_mask: mask(&["level", "parent_id"]),
            })
            .await,
        Code::FailedPrecondition,
    );
    assert_code(
        s.model()
            .update_goal(pb::UpdateGoalRequest {
                goal: Some(goal("nope", Strategic, "", None)),
                update_mask: mask(&["weight"]),
            })
            .await,
        Code::NotFound,
    );

    // Delete: refused while children exist.
    assert_code(
        s.model()
            .delete_goal(pb::DeleteGoalRequest { id: "S-a".into() })
            .await,
        Code::FailedPrecondition,
    );
    s.model()
        .delete_goal(pb::DeleteGoalRequest { id: "I-a".into() })
        .await
        .unwrap();
    assert_code(get("I-a").await, Code::NotFound);
    assert_eq!(
        get("I-b").await.unwrap().effective_weight,
        0.5,
        "now the only child"
    );
    assert_code(
        s.model()
            .delete_goal(pb::DeleteGoalRequest { id: "I-a".into() })
            .await,
        Code::NotFound,
    );
}

// ===== metrics =====

#[tokio::test]
async fn metrics_crud_and_observations() {
    let s = TestServer::start().await;
    let conv = create_metric(&s, metric("conv", 2.1, 3.5)).await;
    assert_eq!(conv.direction, pb::MetricDirection::HigherIsBetter as i32);
    assert_eq!(conv.gap, 1.0);
    assert_eq!(conv.current_value, None);
    assert_eq!(conv.observation_count, 0);
    assert!(!conv.stale, "no cadence: never stale");
    let lead = create_metric(&s, metric("lead", 10.0, 4.0)).await;
    assert_eq!(lead.direction, pb::MetricDirection::LowerIsBetter as i32);

    assert_invalid(
        s.model()
            .create_metric(pb::CreateMetricRequest {
                metric: Some(metric("flat", 2.0, 2.0)),
            })
            .await,
        &["metric.target"],
    );
    assert_invalid(
        s.model()
            .create_metric(pb::CreateMetricRequest {
                metric: Some(pb::Metric {
                    direction: pb::MetricDirection::HigherIsBetter as i32,
                    ..metric("odd", 10.0, 4.0)
                }),
            })
            .await,
        &["metric.direction"],
    );
    assert_invalid(
        s.model()
            .create_metric(pb::CreateMetricRequest {
                metric: Some(pb::Metric {
                    cadence: Some(prost_types::Duration {
                        seconds: -5,
                        nanos: 0,
                    }),
                    ..metric("neg", 0.0, 1.0)
                }),
            })
            .await,
        &["metric.cadence"],
    );
    assert_code(
        s.model()
            .create_metric(pb::CreateMetricRequest {
                metric: Some(metric("conv", 1.0, 2.0)),
            })
            .await,
        Code::AlreadyExists,
    );

    // Observations move current value and gap.
    let t0 = days_ago(2);
    let r = record(&s, vec![observation("conv", 2.8, Some(t0))]).await;
    assert_eq!(r.recorded_count, 1);
    assert_eq!(r.metrics.len(), 1);
    let m = &r.metrics[0];
    assert_eq!(m.id, "conv");
    assert_eq!(m.current_value, Some(2.8));
    assert!((m.gap - 0.5).abs() < 1e-9, "gap {}", m.gap);
    assert_eq!(m.observation_count, 1);
    assert_eq!(m.last_observe_time, Some(t0));
    let get = |id: &'static str| {
        let mut c = s.model();
        async move {
            c.get_metric(pb::GetMetricRequest { id: id.into() })
                .await
                .map(|r| r.into_inner().metric.unwrap())
        }
    };
    let got = get("conv").await.unwrap();
    assert_eq!(got.current_value, Some(2.8));
    assert!((got.gap - 0.5).abs() < 1e-9);

    // All or nothing: an unknown metric fails the whole batch.
    assert_code(
        s.model()
            .record_observations(pb::RecordObservationsRequest {
                observations: vec![
                    observation("conv", 3.0, None),
                    observation("missing", 1.0, None),
                ],
            })
            .await,
        Code::NotFound,
    );
    let got = get("conv").await.unwrap();
    assert_eq!(got.current_value, Some(2.8));
    assert_eq!(got.observation_count, 1);

    // The latest by time wins, whatever the request order; the same time
    // replaces the value.
    let r = record(
        &s,
        vec![
            observation("conv", 3.2, Some(days_ago(1))),
            observation("conv", 2.5, Some(days_ago(3))),
            observation("lead", 7.0, None),
        ],
    )
    .await;
    assert_eq!(r.recorded_count, 3);
    let ids: Vec<&str> = r.metrics.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["conv", "lead"]);
    assert_eq!(r.metrics[0].current_value, Some(3.2));
    assert_eq!(r.metrics[0].observation_count, 3);
    assert!((r.metrics[1].gap - 0.5).abs() < 1e-9, "lower is better");
    let r = record(&s, vec![observation("conv", 2.8, Some(t0))]).await;
    assert_eq!(r.metrics[0].observation_count, 3, "same time replaces");
    assert_eq!(r.metrics[0].current_value, Some(3.2));

    assert_invalid(
        s.model()
            .record_observations(pb::RecordObservationsRequest {
                observations: vec![
                    observation("conv", f64::NAN, None),
                    observation("", 1.0, None),
                ],
            })
            .await,
        &["observations[0].value", "observations[1].metric_id"],
    );
    assert_invalid(
        s.model()
            .record_observations(pb::RecordObservationsRequest::default())
            .await,
        &["observations"],
    );

    // Update: the masked field only; gap follows the new target.
    let updated = s
        .model()
        .update_metric(pb::UpdateMetricRequest {
            metric: Some(pb::Metric {
                name: "ignored".into(),
                ..metric("conv", 0.0, 4.9)
            }),
            update_mask: mask(&["target"]),
        })
        .await
        .unwrap()
        .into_inner()
        .metric
        .unwrap();
    assert_eq!(updated.target, 4.9);
    assert_eq!(updated.baseline, 2.1);
    assert_eq!(updated.name, "Metric conv");
    assert_eq!(updated.current_value, Some(3.2));
    assert_eq!(updated.observation_count, 3, "observations kept");
    assert!((updated.gap - (4.9 - 3.2) / (4.9 - 2.1)).abs() < 1e-9);
    assert_invalid(
        s.model()
            .update_metric(pb::UpdateMetricRequest {
                metric: Some(metric("conv", 0.0, 2.1)),
                update_mask: mask(&["target"]),
            })
            .await,
        &["metric.target"],
    );
    assert_invalid(
        s.model()
            .update_metric(pb::UpdateMetricRequest {
                metric: Some(metric("conv", 0.0, 2.1)),
                update_mask: mask(&["observation_count"]),
            })
            .await,
        &["update_mask"],
    );

    // List, page by page.
    create_metric(&s, metric("arr", 100.0, 200.0)).await;
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = s
            .model()
            .list_metrics(pb::ListMetricsRequest {
                page_size: 1,
                page_token: token,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.metrics.len() <= 1);
        seen.extend(page.metrics.into_iter().map(|m| m.id));
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(seen, ["arr", "conv", "lead"]);

    // Delete takes the observations with it.
    s.model()
        .delete_metric(pb::DeleteMetricRequest { id: "lead".into() })
        .await
        .unwrap();
    assert_code(get("lead").await, Code::NotFound);
    assert_code(
        s.model()
            .delete_metric(pb::DeleteMetricRequest { id: "lead".into() })
            .await,
        Code::NotFound,
    );
    let again = create_metric(&s, metric("lead", 10.0, 4.0)).await;
    assert_eq!(again.observation_count, 0);
    assert_eq!(again.current_value, None);
}

// ===== hypotheses =====

#[tokio::test]
async fn hypotheses_crud_and_forced_delete() {
    use pb::GoalLevel::Strategic;
    let s = TestServer::start().await;
    create_goal(&s, goal("S", Strategic, "", None)).await;
    create_goal(&s, goal("S2", Strategic, "", None)).await;
    create_metric(&s, metric("conv", 2.1, 3.5)).await;
    create_metric(&s, metric("lead", 10.0, 4.0)).await;

    assert_invalid(
        s.model()
            .create_hypothesis(pb::CreateHypothesisRequest {
                hypothesis: Some(hypothesis("H-0", "S", "conv", 0.0, 0.5)),
            })
            .await,
        &["hypothesis.expected_effect"],
    );
    assert_invalid(
        s.model()
            .create_hypothesis(pb::CreateHypothesisRequest {
                hypothesis: Some(hypothesis("H-0", "S", "conv", 0.5, 1.5)),
            })
            .await,
        &["hypothesis.confidence"],
    );
    assert_invalid(
        s.model()
            .create_hypothesis(pb::CreateHypothesisRequest {
                hypothesis: Some(hypothesis("H-0", "nope", "nada", 0.5, 0.5)),
            })
            .await,
        &["hypothesis.goal_id", "hypothesis.metric_id"],
    );

    let h1 = create_hypothesis(
        &s,
        pb::Hypothesis {
            confidence: None,
            ..hypothesis("H-1", "S", "conv", 0.4, 0.0)
        },
    )
    .await;
    assert_eq!(h1.confidence, Some(0.5), "unset means 0.5");
    assert_eq!(h1.status, pb::HypothesisStatus::Proposed as i32);
    // Goal weight 0.5 (two equal strategic goals) x gap 1 x 0.4 x 0.5.
    assert!((h1.value - 0.1).abs() < 1e-12, "value {}", h1.value);
    create_hypothesis(&s, hypothesis("H-2", "S2", "conv", 0.2, 0.9)).await;
    create_hypothesis(&s, hypothesis("H-3", "S", "lead", 0.3, 0.9)).await;
    assert_code(
        s.model()
            .create_hypothesis(pb::CreateHypothesisRequest {
                hypothesis: Some(hypothesis("H-1", "S", "conv", 0.4, 0.5)),
            })
            .await,
        Code::AlreadyExists,
    );
    let got = s
        .model()
        .get_hypothesis(pb::GetHypothesisRequest { id: "H-1".into() })
        .await
        .unwrap()
        .into_inner()
        .hypothesis
        .unwrap();
    assert_eq!(got, h1);

    let list = |goal_id: &'static str, metric_id: &'static str| {
        let c = s.model();
        async move {
            let mut c = c;
            let mut seen = Vec::new();
            let mut token = String::new();
            loop {
                let page = c
                    .list_hypotheses(pb::ListHypothesesRequest {
                        goal_id: goal_id.into(),
                        metric_id: metric_id.into(),
                        page_size: 1,
                        page_token: token,
                    })
                    .await
                    .unwrap()
                    .into_inner();
                assert!(page.hypotheses.len() <= 1);
                seen.extend(page.hypotheses.into_iter().map(|h| h.id));
                token = page.next_page_token;
                if token.is_empty() {
                    return seen;
                }
            }
        }
    };
    assert_eq!(list("", "").await, ["H-1", "H-2", "H-3"]);
    assert_eq!(list("S", "").await, ["H-1", "H-3"]);
    assert_eq!(list("", "conv").await, ["H-1", "H-2"]);
    assert_eq!(list("S", "conv").await, ["H-1"]);

    // Update: status only; validated counts with confidence 1.
    let v = s
        .model()
        .update_hypothesis(pb::UpdateHypothesisRequest {
            hypothesis: Some(pb::Hypothesis {
                status: pb::HypothesisStatus::Validated as i32,
                ..hypothesis("H-1", "S2", "lead", 0.9, 0.1)
            }),
            update_mask: mask(&["status"]),
        })
        .await
        .unwrap()
        .into_inner()
        .hypothesis
        .unwrap();
    assert_eq!(v.status, pb::HypothesisStatus::Validated as i32);
    assert_eq!(v.confidence, Some(0.5));
    assert_eq!(v.goal_id, "S");
    assert_eq!(v.expected_effect, 0.4);
    assert!((v.value - 0.2).abs() < 1e-12, "value {}", v.value);
    assert_eq!(v.create_time, h1.create_time);
    assert_invalid(
        s.model()
            .update_hypothesis(pb::UpdateHypothesisRequest {
                hypothesis: Some(hypothesis("H-1", "S", "conv", 0.0, 0.5)),
                update_mask: mask(&["expected_effect"]),
            })
            .await,
        &["hypothesis.expected_effect"],
    );
    assert_invalid(
        s.model()
            .update_hypothesis(pb::UpdateHypothesisRequest {
                hypothesis: Some(hypothesis("H-1", "S", "missing", 0.5, 0.5)),
                update_mask: mask(&["metric_id"]),
            })
            .await,
        &["hypothesis.metric_id"],
    );
    assert_invalid(
        s.model()
            .update_hypothesis(pb::UpdateHypothesisRequest {
                hypothesis: Some(hypothesis("H-1", "S", "conv", 0.5, 0.5)),
                update_mask: mask(&["value"]),
            })
            .await,
        &["update_mask"],
    );

    // The model's references hold.
    assert_code(
        s.model()
            .delete_goal(pb::DeleteGoalRequest { id: "S".into() })
            .await,
        Code::FailedPrecondition,
    );
    assert_code(
        s.model()
            .delete_metric(pb::DeleteMetricRequest { id: "conv".into() })
            .await,
        Code::FailedPrecondition,
    );

    // Delete with links needs force; force takes the links too.
    create_source(&s, github_source("web")).await;
    upsert(
        &s,
        vec![estimated(item("web", "1", "A"), 1.0), item("web", "2", "B")],
    )
    .await;
    link(&s, "web/1", "H-1", 1.0).await;
    link(&s, "web/2", "H-1", 0.5).await;
    link(&s, "web/1", "H-2", 0.5).await;
    assert_code(
        s.model()
            .delete_hypothesis(pb::DeleteHypothesisRequest {
                id: "H-1".into(),
                force: false,
            })
            .await,
        Code::FailedPrecondition,
    );
    assert_eq!(item_score(&s, "web/1").await.terms.len(), 2);
    s.model()
        .delete_hypothesis(pb::DeleteHypothesisRequest {
            id: "H-1".into(),
            force: true,
        })
        .await
        .unwrap();
    assert_code(
        s.model()
            .get_hypothesis(pb::GetHypothesisRequest { id: "H-1".into() })
            .await,
        Code::NotFound,
    );
    let links = s
        .backlog()
        .list_links(pb::ListLinksRequest {
            hypothesis_id: "H-1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .links;
    assert!(links.is_empty());
    let all: Vec<(String, String)> = s
        .backlog()
        .list_links(pb::ListLinksRequest::default())
        .await
        .unwrap()
        .into_inner()
        .links
        .into_iter()
        .map(|l| (l.item_key, l.hypothesis_id))
        .collect();
    assert_eq!(all, [("web/1".to_string(), "H-2".to_string())]);
    let web1 = item_score(&s, "web/1").await;
    let hyps: Vec<&str> = web1
        .terms
        .iter()
        .map(|t| t.hypothesis_id.as_str())
        .collect();
    assert_eq!(hyps, ["H-2"]);
    let web2 = item_score(&s, "web/2").await;
    assert!(web2.terms.is_empty());
    assert_eq!(web2.value, 0.0);
    assert!(web2.flags.contains(&(pb::ScoreFlag::Unaligned as i32)));

    // Without links, no force is needed.
    s.model()
        .delete_hypothesis(pb::DeleteHypothesisRequest {
            id: "H-3".into(),
            force: false,
        })
        .await
        .unwrap();
    assert_code(
        s.model()
            .delete_hypothesis(pb::DeleteHypothesisRequest {
                id: "H-3".into(),
                force: false,
            })
            .await,
        Code::NotFound,
    );
}

// ===== links =====

async fn list_links(
    s: &TestServer,
    item_key: &str,
    hypothesis_id: &str,
    page_size: i32,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut token = String::new();
    for _ in 0..50 {
        let page = s
            .backlog()
            .list_links(pb::ListLinksRequest {
                item_key: item_key.into(),
                hypothesis_id: hypothesis_id.into(),
                page_size,
                page_token: token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        if page_size > 0 {
            assert!(page.links.len() <= page_size as usize);
        }
        out.extend(
            page.links
                .into_iter()
                .map(|l| (l.item_key, l.hypothesis_id)),
        );
        if page.next_page_token.is_empty() {
            return out;
        }
        token = page.next_page_token;
    }
    panic!("pagination does not end");
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[tokio::test]
async fn link_unlink_and_list_links() {
    let s = start_with_fixture().await;

    // A new link: contribution 0 means 1; origin API.
    let l = link(&s, "web/6", "H-3", 0.0).await;
    assert_eq!(l.item_key, "web/6");
    assert_eq!(l.hypothesis_id, "H-3");
    assert_eq!(l.contribution, 1.0);
    assert_eq!(l.origin, pb::LinkOrigin::Api as i32);
    assert_eq!(l.rationale, "web/6 serves H-3");
    assert!(l.create_time.is_some());
    // Linking again updates the link and keeps its creation time.
    let again = s
        .backlog()
        .link_item(pb::LinkItemRequest {
            item_key: "web/6".into(),
            hypothesis_id: "H-3".into(),
            contribution: 0.5,
            rationale: "half of it".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .link
        .unwrap();
    assert_eq!(again.contribution, 0.5);
    assert_eq!(again.rationale, "half of it");
    assert_eq!(again.create_time, l.create_time);
    let listed = s
        .backlog()
        .list_links(pb::ListLinksRequest {
            item_key: "web/6".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .links;
    assert_eq!(listed, std::slice::from_ref(&again));

    assert_eq!(
        list_links(&s, "", "H-1", 0).await,
        pairs(&[("ops/2", "H-1"), ("web/1", "H-1"), ("web/3", "H-1")])
    );
    assert_eq!(
        list_links(&s, "ops/2", "", 1).await,
        pairs(&[("ops/2", "H-1"), ("ops/2", "H-2")])
    );
    assert_eq!(
        list_links(&s, "ops/2", "H-2", 0).await,
        pairs(&[("ops/2", "H-2")])
    );
    let every = pairs(&[
        ("ops/1", "H-3"),
        ("ops/2", "H-1"),
        ("ops/2", "H-2"),
        ("web/1", "H-1"),
        ("web/2", "H-2"),
        ("web/3", "H-1"),
        ("web/5", "H-2"),
        ("web/6", "H-3"),
    ]);
    for size in [0, 1, 3, 8] {
        assert_eq!(
            list_links(&s, "", "", size).await,
            every,
            "page size {size}"
        );
    }
    assert!(list_links(&s, "web/4", "", 0).await.is_empty());

    // A page token belongs to its filters.
    let first = s
        .backlog()
        .list_links(pb::ListLinksRequest {
            hypothesis_id: "H-1".into(),
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_invalid(
        s.backlog()
            .list_links(pb::ListLinksRequest {
                hypothesis_id: "H-2".into(),
                page_size: 1,
                page_token: first.next_page_token,
                ..Default::default()
            })
            .await,
        &["page_token"],
    );

    // Errors.
    assert_code(
        s.backlog()
            .link_item(pb::LinkItemRequest {
                item_key: "web/99".into(),
                hypothesis_id: "H-1".into(),
                contribution: 0.5,
                ..Default::default()
            })
            .await,
        Code::NotFound,
    );
    assert_code(
        s.backlog()
            .link_item(pb::LinkItemRequest {
                item_key: "web/1".into(),
                hypothesis_id: "H-99".into(),
                contribution: 0.5,
                ..Default::default()
            })
            .await,
        Code::NotFound,
    );
    for bad in [1.5, -0.1, f64::NAN] {
        assert_invalid(
            s.backlog()
                .link_item(pb::LinkItemRequest {
                    item_key: "web/1".into(),
                    hypothesis_id: "H-1".into(),
                    contribution: bad,
                    ..Default::default()
                })
                .await,
            &["contribution"],
        );
    }
    assert_invalid(
        s.backlog().link_item(pb::LinkItemRequest::default()).await,
        &["item_key", "hypothesis_id"],
    );
    assert_eq!(
        list_links(&s, "web/1", "", 0).await,
        pairs(&[("web/1", "H-1")]),
        "refused links change nothing"
    );

    // Unlink.
    s.backlog()
        .unlink_item(pb::UnlinkItemRequest {
            item_key: "ops/2".into(),
            hypothesis_id: "H-1".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        list_links(&s, "", "H-1", 0).await,
        pairs(&[("web/1", "H-1"), ("web/3", "H-1")])
    );
    assert_eq!(
        list_links(&s, "ops/2", "", 0).await,
        pairs(&[("ops/2", "H-2")])
    );
    let ops2 = item_score(&s, "ops/2").await;
    assert_eq!(ops2.terms.len(), 1);
    assert_eq!(ops2.terms[0].hypothesis_id, "H-2");
    assert_code(
        s.backlog()
            .unlink_item(pb::UnlinkItemRequest {
                item_key: "ops/2".into(),
                hypothesis_id: "H-1".into(),
            })
            .await,
        Code::NotFound,
    );
    assert_invalid(
        s.backlog()
            .unlink_item(pb::UnlinkItemRequest {
                item_key: String::new(),
                hypothesis_id: "H-1".into(),
            })
            .await,
        &["item_key"],
    );
}

// ===== scoring =====

/// The terms' values added in order from 0.0, as the contract says.
fn fold_terms(s: &pb::ItemScore) -> f64 {
    s.terms.iter().fold(0.0, |acc, t| acc + t.value)
}

fn flags(s: &pb::ItemScore) -> Vec<pb::ScoreFlag> {
    s.flags
        .iter()
        .map(|f| pb::ScoreFlag::try_from(*f).expect("known flag"))
        .collect()
}

#[tokio::test]
async fn item_scores_are_explained_and_add_up_exactly() {
    let s = start_with_fixture().await;

    // web/1 by hand: goal weight 0.75 (I-conv, only child of S-growth with
    // weight 3 of 4) x gap 1 (conv has no observation) x effect 0.4 x
    // confidence 0.6 x contribution 0.5 = 0.09.
    let web1 = item_score(&s, "web/1").await;
    assert_eq!(web1.item_key, "web/1");
    assert_eq!(web1.title, "One-click checkout");
    assert_eq!(web1.terms.len(), 1);
    let t = &web1.terms[0];
    assert_eq!(t.hypothesis_id, "H-1");
    assert_eq!(t.goal_id, "I-conv");
    assert_eq!(t.metric_id, "conv");
    assert_eq!(t.goal_weight, 0.75);
    assert_eq!(t.gap, 1.0);
    assert_eq!(t.expected_effect, 0.4);
    assert_eq!(t.confidence, 0.6);
    assert_eq!(t.contribution, 0.5);
    assert_eq!(t.effective_contribution, 0.5);
    assert!(!t.metric_stale);
    let by_hand = 0.75 * 1.0 * 0.4 * 0.6 * 0.5;
    assert!((web1.value - 0.09).abs() < 1e-12, "value {}", web1.value);
    assert!((t.value - by_hand).abs() < 1e-15);
    assert_eq!(web1.size, 2.0);
    assert!((web1.value_density - 0.045).abs() < 1e-12);
    assert!(flags(&web1).is_empty(), "{:?}", web1.flags);

    // ops/2 has two terms, in hypothesis-id order.
    let ops2 = item_score(&s, "ops/2").await;
    let hyps: Vec<&str> = ops2
        .terms
        .iter()
        .map(|t| t.hypothesis_id.as_str())
        .collect();
    assert_eq!(hyps, ["H-1", "H-2"]);
    assert_eq!(ops2.terms[1].goal_weight, 0.25);
    assert_eq!(ops2.terms[1].confidence, 0.8);
    assert!((ops2.value - 0.07).abs() < 1e-12, "value {}", ops2.value);

    // For every item: terms add up to the value bit for bit, and density is
    // value / size bit for bit.
    let expected_values = [
        ("web/1", 0.09),
        ("web/2", 0.05),
        ("web/3", 0.045),
        ("web/4", 0.0),
        ("web/5", 0.025),
        ("web/6", 0.0),
        ("ops/1", 0.075),
        ("ops/2", 0.07),
        ("ops/3", 0.0),
    ];
    for (key, value) in expected_values {
        let sc = item_score(&s, key).await;
        assert_eq!(
            fold_terms(&sc).to_bits(),
            sc.value.to_bits(),
            "{key}: terms {:?} do not add up to {}",
            sc.terms,
            sc.value
        );
        assert_eq!(
            sc.value_density.to_bits(),
            (sc.value / sc.size).to_bits(),
            "{key}"
        );
        assert!((sc.value - value).abs() < 1e-12, "{key}: {}", sc.value);
        for t in &sc.terms {
            let product =
                t.goal_weight * t.gap * t.expected_effect * t.confidence * t.effective_contribution;
            assert!((t.value - product).abs() < 1e-15, "{key}: {t:?}");
        }
    }

    assert_code(
        s.scoring()
            .get_item_score(pb::GetItemScoreRequest {
                item_key: "web/99".into(),
            })
            .await,
        Code::NotFound,
    );
    assert_invalid(
        s.scoring()
            .get_item_score(pb::GetItemScoreRequest::default())
            .await,
        &["item_key"],
    );
}

#[tokio::test]
async fn score_flags_tell_what_the_data_lacks() {
    let s = start_with_fixture().await;

    let web4 = item_score(&s, "web/4").await;
    assert_eq!(
        flags(&web4),
        [pb::ScoreFlag::Unaligned, pb::ScoreFlag::Unestimated]
    );
    assert_eq!(web4.size, DEFAULT_SIZE, "unestimated uses the default size");
    assert_eq!(web4.value, 0.0);
    assert!(web4.terms.is_empty());

    let web6 = item_score(&s, "web/6").await;
    assert_eq!(flags(&web6), [pb::ScoreFlag::Unaligned]);
    assert_eq!(web6.size, 1.0);

    // nps has a 1-day cadence and its only observation is 10 days old.
    let nps = s
        .model()
        .get_metric(pb::GetMetricRequest { id: "nps".into() })
        .await
        .unwrap()
        .into_inner()
        .metric
        .unwrap();
    assert!(nps.stale);
    assert_eq!(nps.gap, 0.5);
    let ops1 = item_score(&s, "ops/1").await;
    assert_eq!(flags(&ops1), [pb::ScoreFlag::StaleMetric]);
    assert!(ops1.terms[0].metric_stale);
    assert_eq!(ops1.terms[0].gap, 0.5);
    assert_eq!(ops1.terms[0].confidence, 1.0, "H-3 is validated");

    // An unestimated, linked item is flagged UNESTIMATED only.
    upsert(&s, vec![item("web", "4", "Refactor logging")]).await;
    link(&s, "web/4", "H-2", 0.0).await;
    let web4 = item_score(&s, "web/4").await;
    assert_eq!(flags(&web4), [pb::ScoreFlag::Unestimated]);
    assert_eq!(web4.size, 3.0);
    assert_eq!(web4.value_density.to_bits(), (web4.value / 3.0).to_bits());

    // A fresh observation clears the stale flag.
    record(&s, vec![observation("nps", 40.0, None)]).await;
    let ops1 = item_score(&s, "ops/1").await;
    assert!(flags(&ops1).is_empty(), "{:?}", ops1.flags);
    assert!(!ops1.terms[0].metric_stale);
}

fn assert_ranks_from_one(r: &pb::RankItemsResponse) {
    let ranks: Vec<i32> = r.items.iter().map(|i| i.rank).collect();
    let want: Vec<i32> = (1..=r.items.len() as i32).collect();
    assert_eq!(ranks, want);
}

#[tokio::test]
async fn rank_items_orders_by_density_then_key() {
    let s = start_with_fixture().await;
    let r = rank(&s, pb::RankItemsRequest::default()).await;
    assert_eq!(keys(&r), FIXTURE_DENSITY_ORDER);
    assert_ranks_from_one(&r);
    assert!(r.next_page_token.is_empty());
    // Basic view: no terms, but value, size, density and flags.
    for it in &r.items {
        let sc = it.score.as_ref().unwrap();
        assert!(sc.terms.is_empty());
        assert_eq!(sc.value_density.to_bits(), (sc.value / sc.size).to_bits());
    }
    let first = r.items[0].score.as_ref().unwrap();
    assert_eq!(first.title, "Faster CI");
    assert!((first.value_density - 0.05).abs() < 1e-12);
    // web/1 and web/3 tie exactly on density; the key breaks the tie.
    let d1 = r.items[1].score.as_ref().unwrap().value_density;
    let d3 = r.items[2].score.as_ref().unwrap().value_density;
    assert_eq!(d1.to_bits(), d3.to_bits());
    // The order is (density desc, key asc) throughout.
    let scores: Vec<&pb::ItemScore> = r.items.iter().map(|i| i.score.as_ref().unwrap()).collect();
    for w in scores.windows(2) {
        assert!(
            w[0].value_density > w[1].value_density
                || (w[0].value_density == w[1].value_density && w[0].item_key < w[1].item_key),
            "{} before {}",
            w[0].item_key,
            w[1].item_key
        );
    }
    let web4 = scores.iter().find(|s| s.item_key == "web/4").unwrap();
    assert_eq!(
        flags(web4),
        [pb::ScoreFlag::Unaligned, pb::ScoreFlag::Unestimated]
    );

    // Explicit VALUE_DENSITY is the default order.
    let explicit = rank(
        &s,
        pb::RankItemsRequest {
            order: pb::RankOrder::ValueDensity as i32,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(explicit, r);

    // Full view carries the same terms as GetItemScore.
    let full = full_ranking(&s, false).await;
    assert_eq!(keys(&full), FIXTURE_DENSITY_ORDER);
    for it in &full.items {
        let sc = it.score.as_ref().unwrap();
        assert_eq!(sc, &item_score(&s, &sc.item_key).await);
    }
    // The basic view, encoded straight from the index, is the full view
    // without terms, field for field, on every page.
    let mut basic = Vec::new();
    let mut token = String::new();
    loop {
        let page = rank(
            &s,
            pb::RankItemsRequest {
                page_size: 2,
                page_token: token,
                ..Default::default()
            },
        )
        .await;
        basic.extend(page.items);
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    let mut without_terms = full.items.clone();
    for it in &mut without_terms {
        it.score.as_mut().unwrap().terms.clear();
    }
    assert_eq!(basic, without_terms);
    assert!(
        basic
            .iter()
            .any(|i| !i.score.as_ref().unwrap().flags.is_empty()),
        "the fixture has flagged items"
    );

    assert_invalid(
        s.scoring()
            .rank_items(pb::RankItemsRequest {
                order: 42,
                ..Default::default()
            })
            .await,
        &["order"],
    );
    assert_invalid(
        s.scoring()
            .rank_items(pb::RankItemsRequest {
                view: 42,
                ..Default::default()
            })
            .await,
        &["view"],
    );
}

#[tokio::test]
async fn rank_items_by_value() {
    let s = start_with_fixture().await;
    let r = rank(
        &s,
        pb::RankItemsRequest {
            order: pb::RankOrder::Value as i32,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(keys(&r), FIXTURE_VALUE_ORDER);
    assert_ranks_from_one(&r);
    let values: Vec<f64> = r
        .items
        .iter()
        .map(|i| i.score.as_ref().unwrap().value)
        .collect();
    assert!(values.windows(2).all(|w| w[0] >= w[1]), "{values:?}");
}

async fn walk_ranking(s: &TestServer, req: pb::RankItemsRequest) -> Vec<pb::RankedItem> {
    let mut out = Vec::new();
    let mut req = req;
    for _ in 0..50 {
        let page = rank(s, req.clone()).await;
        assert!(page.items.len() <= req.page_size as usize);
        out.extend(page.items);
        if page.next_page_token.is_empty() {
            return out;
        }
        req.page_token = page.next_page_token;
    }
    panic!("pagination does not end");
}

#[tokio::test]
async fn rank_items_pages_walk_the_whole_ranking() {
    let s = start_with_fixture().await;
    for (order, include_closed) in [
        (pb::RankOrder::Unspecified, false),
        (pb::RankOrder::Value, false),
        (pb::RankOrder::ValueDensity, true),
    ] {
        let whole = rank(
            &s,
            pb::RankItemsRequest {
                order: order as i32,
                include_closed,
                ..Default::default()
            },
        )
        .await;
        let walked = walk_ranking(
            &s,
            pb::RankItemsRequest {
                page_size: 2,
                order: order as i32,
                include_closed,
                ..Default::default()
            },
        )
        .await;
        let ranks: Vec<i32> = walked.iter().map(|i| i.rank).collect();
        let n = if include_closed {
            FIXTURE_ITEMS
        } else {
            FIXTURE_ITEMS - 1
        };
        assert_eq!(ranks, (1..=n as i32).collect::<Vec<_>>(), "{order:?}");
        let mut walked_keys: Vec<String> = walked
            .iter()
            .map(|i| i.score.as_ref().unwrap().item_key.clone())
            .collect();
        assert_eq!(walked, whole.items, "{order:?}: pages equal one big page");
        walked_keys.sort();
        walked_keys.dedup();
        assert_eq!(walked_keys.len(), n, "no duplicates");
    }

    // With closed items, web/5 (density 0.025) sits between ops/2 and ops/1.
    let with_closed = rank(
        &s,
        pb::RankItemsRequest {
            include_closed: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        keys(&with_closed),
        [
            "web/2", "web/1", "web/3", "ops/2", "web/5", "ops/1", "ops/3", "web/4", "web/6"
        ]
    );

    // A ranking token belongs to its order and filters.
    let first = rank(
        &s,
        pb::RankItemsRequest {
            page_size: 2,
            ..Default::default()
        },
    )
    .await;
    for other in [
        pb::RankItemsRequest {
            order: pb::RankOrder::Value as i32,
            ..Default::default()
        },
        pb::RankItemsRequest {
            include_closed: true,
            ..Default::default()
        },
        pb::RankItemsRequest {
            label: "checkout".into(),
            ..Default::default()
        },
    ] {
        assert_invalid(
            s.scoring()
                .rank_items(pb::RankItemsRequest {
                    page_size: 2,
                    page_token: first.next_page_token.clone(),
                    ..other
                })
                .await,
            &["page_token"],
        );
    }
    // A list token is not a ranking token.
    let list_token = s
        .backlog()
        .list_items(pb::ListItemsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .next_page_token;
    assert_invalid(
        s.scoring()
            .rank_items(pb::RankItemsRequest {
                page_token: list_token,
                ..Default::default()
            })
            .await,
        &["page_token"],
    );
    // The second page continues the ranks.
    let second = rank(
        &s,
        pb::RankItemsRequest {
            page_size: 2,
            page_token: first.next_page_token.clone(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(keys(&second), ["web/3", "ops/2"]);
    let ranks: Vec<i32> = second.items.iter().map(|i| i.rank).collect();
    assert_eq!(ranks, [3, 4]);
}

#[tokio::test]
async fn rank_items_filters_by_source_and_label() {
    let s = start_with_fixture().await;
    let ops = rank(
        &s,
        pb::RankItemsRequest {
            source_id: "ops".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(keys(&ops), ["ops/2", "ops/1", "ops/3"]);
    assert_ranks_from_one(&ops);

    let checkout = rank(
        &s,
        pb::RankItemsRequest {
            label: "checkout".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(keys(&checkout), ["web/1", "web/3", "ops/2"]);
    assert_ranks_from_one(&checkout);

    let both = walk_ranking(
        &s,
        pb::RankItemsRequest {
            source_id: "web".into(),
            label: "checkout".into(),
            page_size: 1,
            order: pb::RankOrder::Value as i32,
            ..Default::default()
        },
    )
    .await;
    let got: Vec<(i32, String)> = both
        .iter()
        .map(|i| (i.rank, i.score.as_ref().unwrap().item_key.clone()))
        .collect();
    assert_eq!(got, [(1, "web/1".to_string()), (2, "web/3".to_string())]);

    // Closed items only with include_closed.
    let closed_web = rank(
        &s,
        pb::RankItemsRequest {
            source_id: "web".into(),
            include_closed: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        keys(&closed_web),
        ["web/2", "web/1", "web/3", "web/5", "web/4", "web/6"]
    );
    let none = rank(
        &s,
        pb::RankItemsRequest {
            source_id: "nope".into(),
            ..Default::default()
        },
    )
    .await;
    assert!(none.items.is_empty());
    assert!(none.next_page_token.is_empty());
}

#[tokio::test]
async fn reaching_the_target_zeroes_the_linked_value_and_moves_the_rank() {
    let s = start_with_fixture().await;
    let before = rank(&s, pb::RankItemsRequest::default()).await;
    let pos = |r: &pb::RankItemsResponse, k: &str| {
        r.items
            .iter()
            .find(|i| i.score.as_ref().unwrap().item_key == k)
            .map(|i| i.rank)
            .unwrap()
    };
    assert_eq!(pos(&before, "web/1"), 2);

    // Halfway: the conv part of each linked item halves.
    let r = record(&s, vec![observation("conv", 2.8, Some(days_ago(1)))]).await;
    assert!((r.metrics[0].gap - 0.5).abs() < 1e-9);
    let web1 = item_score(&s, "web/1").await;
    assert!((web1.terms[0].gap - 0.5).abs() < 1e-9);
    assert!((web1.value - 0.045).abs() < 1e-9);

    // Target reached: conv's part is zero.
    let r = record(&s, vec![observation("conv", 3.5, None)]).await;
    assert_eq!(r.metrics[0].gap, 0.0);
    let web1 = item_score(&s, "web/1").await;
    assert_eq!(web1.value, 0.0);
    assert_eq!(web1.terms[0].gap, 0.0);
    assert_eq!(web1.terms[0].value, 0.0);
    assert!(
        !flags(&web1).contains(&pb::ScoreFlag::Unaligned),
        "still linked"
    );
    let ops2 = item_score(&s, "ops/2").await;
    assert_eq!(ops2.terms[0].value, 0.0, "H-1 part");
    assert!((ops2.value - 0.025).abs() < 1e-12, "only H-2 remains");

    let after = rank(&s, pb::RankItemsRequest::default()).await;
    assert_eq!(
        keys(&after),
        [
            "web/2", "ops/1", "ops/2", "ops/3", "web/1", "web/3", "web/4", "web/6"
        ]
    );
    assert_eq!(pos(&after, "web/1"), 5);

    // Overshooting keeps it at zero.
    record(&s, vec![observation("conv", 4.0, None)]).await;
    assert_eq!(item_score(&s, "web/1").await.value, 0.0);
}

#[tokio::test]
async fn a_validated_hypothesis_counts_with_confidence_one() {
    let s = start_with_fixture().await;
    let before = item_score(&s, "web/2").await;
    assert_eq!(before.terms[0].confidence, 0.8);
    let h = s
        .model()
        .update_hypothesis(pb::UpdateHypothesisRequest {
            hypothesis: Some(pb::Hypothesis {
                status: pb::HypothesisStatus::Validated as i32,
                ..hypothesis("H-2", "S-speed", "lead", 0.5, 0.8)
            }),
            update_mask: mask(&["status"]),
        })
        .await
        .unwrap()
        .into_inner()
        .hypothesis
        .unwrap();
    assert_eq!(h.confidence, Some(0.8), "stored confidence kept");
    let after = item_score(&s, "web/2").await;
    assert_eq!(after.terms[0].confidence, 1.0);
    // 0.25 x 1 x 0.5 x 1 x 0.5
    assert!(
        (after.value - 0.0625).abs() < 1e-12,
        "value {}",
        after.value
    );
    assert!(after.value > before.value);

    // Invalidated counts with confidence 0.
    s.model()
        .update_hypothesis(pb::UpdateHypothesisRequest {
            hypothesis: Some(pb::Hypothesis {
                status: pb::HypothesisStatus::Invalidated as i32,
                ..hypothesis("H-2", "S-speed", "lead", 0.5, 0.8)
            }),
            update_mask: mask(&["status"]),
        })
        .await
        .unwrap();
    let after = item_score(&s, "web/2").await;
    assert_eq!(after.terms[0].confidence, 0.0);
    assert_eq!(after.value, 0.0);
}

#[tokio::test]
async fn oversubscribed_contributions_are_scaled_down() {
    let s = start_with_fixture().await;
    // H-1 had 0.5 + 0.25 + 0.25 = 1; web/6 adds 1, so each is divided by 2.
    link(&s, "web/6", "H-1", 1.0).await;
    let web1 = item_score(&s, "web/1").await;
    assert_eq!(web1.terms[0].contribution, 0.5);
    assert_eq!(web1.terms[0].effective_contribution, 0.25);
    assert!((web1.value - 0.045).abs() < 1e-12);
    let web6 = item_score(&s, "web/6").await;
    assert_eq!(web6.terms[0].effective_contribution, 0.5);
    // Removing it restores the others.
    s.backlog()
        .unlink_item(pb::UnlinkItemRequest {
            item_key: "web/6".into(),
            hypothesis_id: "H-1".into(),
        })
        .await
        .unwrap();
    let web1 = item_score(&s, "web/1").await;
    assert_eq!(web1.terms[0].effective_contribution, 0.5);
    assert!((web1.value - 0.09).abs() < 1e-12);
}

#[tokio::test]
async fn goal_weight_changes_reach_the_scores() {
    let s = start_with_fixture().await;
    // S-growth 3 -> 1: both strategic goals weigh 0.5.
    s.model()
        .update_goal(pb::UpdateGoalRequest {
            goal: Some(goal("S-growth", pb::GoalLevel::Strategic, "", Some(1.0))),
            update_mask: mask(&["weight"]),
        })
        .await
        .unwrap();
    let web1 = item_score(&s, "web/1").await;
    assert_eq!(web1.terms[0].goal_weight, 0.5);
    assert!((web1.value - 0.06).abs() < 1e-12);
    let web2 = item_score(&s, "web/2").await;
    assert_eq!(web2.terms[0].goal_weight, 0.5);
    assert!((web2.value - 0.1).abs() < 1e-12);
}

// ===== incremental rescoring =====

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
            .upsert_items(pb::UpsertItemsRequest { items })
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

// ===== regressions: read-modify-write updates, page tokens across methods, link rules =====

/// Fields outside the update mask never decide the outcome: a client that
/// reads a metric, flips baseline and target and sends it back with mask
/// ["baseline", "target"] (AIP-134 read-modify-write) gets the direction
/// re-derived, not refused.
#[tokio::test]
async fn update_metric_ignores_fields_outside_the_mask() {
    let s = TestServer::start().await;
    let read = create_metric(&s, metric("lead", 4.0, 10.0)).await;
    assert_eq!(read.direction, pb::MetricDirection::HigherIsBetter as i32);
    let updated = s
        .model()
        .update_metric(pb::UpdateMetricRequest {
            metric: Some(pb::Metric {
                baseline: 10.0,
                target: 4.0,
                ..read
            }),
            update_mask: mask(&["baseline", "target"]),
        })
        .await
        .expect("fields outside the mask are ignored")
        .into_inner()
        .metric
        .unwrap();
    assert_eq!(updated.direction, pb::MetricDirection::LowerIsBetter as i32);
}

/// A page token of one list call is refused by another, even when both
/// have no filters (ListSources and ListMetrics).
#[tokio::test]
async fn a_page_token_of_another_method_is_refused() {
    let s = start_with_fixture().await;
    let token = s
        .sources()
        .list_sources(pb::ListSourcesRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .next_page_token;
    assert!(!token.is_empty());
    assert_invalid(
        s.model()
            .list_metrics(pb::ListMetricsRequest {
                page_size: 10,
                page_token: token,
            })
            .await,
        &["page_token"],
    );
}

/// An item pushed with the label "hypothesis:H-1" and the body line
/// "Hypothesis: H-2 (0.5)" is linked by its source's rules, with origin RULE.
#[tokio::test]
async fn link_rules_link_items_on_upsert() {
    let s = start_with_fixture().await;
    upsert(
        &s,
        vec![pb::Item {
            body: "Context\nHypothesis: H-2 (0.5)\n".into(),
            ..labelled(item("web", "20", "Ruled"), &["hypothesis:H-1"])
        }],
    )
    .await;
    let links = s
        .backlog()
        .list_links(pb::ListLinksRequest {
            item_key: "web/20".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .links;
    let got: Vec<(&str, f64, i32)> = links
        .iter()
        .map(|l| (l.hypothesis_id.as_str(), l.contribution, l.origin))
        .collect();
    let rule = pb::LinkOrigin::Rule as i32;
    assert_eq!(got, [("H-1", 1.0, rule), ("H-2", 0.5, rule)]);
}

/// A rule-made link disappears with its label; a link made through the API
/// survives every upsert, even when a body line names the same hypothesis.
#[tokio::test]
async fn rule_links_follow_the_tracker_and_never_touch_api_links() {
    let s = start_with_fixture().await;
    upsert(
        &s,
        vec![labelled(item("web", "21", "Ruled"), &["hypothesis:H-1"])],
    )
    .await;
    link(&s, "web/21", "H-2", 0.4).await;
    upsert(
        &s,
        vec![pb::Item {
            body: "Hypothesis: H-2 (0.9)\n".into(),
            ..item("web", "21", "Ruled, relabelled")
        }],
    )
    .await;
    let links = s
        .backlog()
        .list_links(pb::ListLinksRequest {
            item_key: "web/21".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .links;
    let got: Vec<(&str, f64, i32)> = links
        .iter()
        .map(|l| (l.hypothesis_id.as_str(), l.contribution, l.origin))
        .collect();
    assert_eq!(got, [("H-2", 0.4, pb::LinkOrigin::Api as i32)]);
    let score = item_score(&s, "web/21").await;
    let terms: Vec<(&str, f64)> = score
        .terms
        .iter()
        .map(|t| (t.hypothesis_id.as_str(), t.contribution))
        .collect();
    assert_eq!(terms, [("H-2", 0.4)]);
}
