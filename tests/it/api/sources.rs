//! Sources: create, read, list page by page, masked updates, forced delete.

use crate::common::*;
use plumbline::proto as pb;
use tonic::Code;

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
