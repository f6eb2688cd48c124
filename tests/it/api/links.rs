//! Links between items and hypotheses: link, unlink, and filtered lists.

use crate::common::*;
use plumbline::proto as pb;
use tonic::Code;

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
