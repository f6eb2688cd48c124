//! Sync pages stored together in one transaction (what the sync does when
//! pages wait for the writer): each page is counted as if stored on its
//! own, an item on two pages ends as its last version with the rule links
//! of that version, and the store and the index agree after a restart.

use crate::bench::suite::synth;
use chrono::{TimeZone, Utc};
use plumbline::domain::{Item, ItemState, SyncState};
use plumbline::engine::{Engine, UpsertCounts};

fn item(n: u32, title: &str, labels: &[&str]) -> Item {
    let t = Utc.with_ymd_and_hms(2026, 11, 2, 10, 0, n).unwrap();
    Item {
        source_id: "gh".into(),
        external_id: n.to_string(),
        title: title.into(),
        body: String::new(),
        url: format!("https://github.com/acme/bench/issues/{n}"),
        state: ItemState::Open,
        labels: labels.iter().map(|l| l.to_string()).collect(),
        estimate: Some(2.0),
        parent_key: String::new(),
        create_time: Some(t),
        update_time: Some(t),
        close_time: None,
        votes: None,
    }
}

fn counts(created: usize, updated: usize, unchanged: usize) -> UpsertCounts {
    UpsertCounts {
        created,
        updated,
        unchanged,
    }
}

/// Rule links as (item key, hypothesis id), sorted.
fn stored_links(links: &[plumbline::domain::Link]) -> Vec<(String, String)> {
    let mut out: Vec<_> = links
        .iter()
        .map(|l| (l.item_key.clone(), l.hypothesis_id.clone()))
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn pages_stored_together_count_and_link_as_if_stored_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = crate::common::test_db(dir.path(), "plumbline.sqlite");
    let store = crate::common::open_store(&path).await;
    let source = synth::source("gh", "http://127.0.0.1:9");
    synth::write_model(&*store, 1, std::slice::from_ref(&source))
        .await
        .unwrap();
    let engine = Engine::open(store.clone(), 3.0).await.unwrap();

    let mut state = SyncState::never("gh");
    state.etag = "W/\"page-3\"".into();
    let pages = vec![
        vec![
            item(1, "first", &["hypothesis:H-001"]),
            item(2, "second", &["hypothesis:H-002"]),
        ],
        vec![
            // Item 1 again, moved to another hypothesis, then again unchanged.
            item(1, "first, moved", &["hypothesis:H-003"]),
            item(3, "third", &[]),
        ],
        vec![
            item(1, "first, moved", &["hypothesis:H-003"]),
            item(2, "second", &["hypothesis:H-002"]),
        ],
    ];
    let got = engine.apply_sync_pages(pages, &state).await.unwrap();
    assert_eq!(
        got,
        [counts(2, 0, 0), counts(1, 1, 0), counts(0, 0, 2)],
        "each page counted against the versions before it"
    );

    let want_links = vec![
        ("gh/1".to_string(), "H-003".to_string()),
        ("gh/2".into(), "H-002".into()),
    ];
    {
        let ix = engine.read();
        assert_eq!(ix.item_count(), 3);
        assert_eq!(ix.item("gh/1").unwrap().title, "first, moved");
        let mut links: Vec<(String, String)> = ["gh/1", "gh/2", "gh/3"]
            .iter()
            .flat_map(|k| {
                ix.links_of_item(k)
                    .map(|l| (k.to_string(), l.hypothesis_id.to_string()))
                    .collect::<Vec<_>>()
            })
            .collect();
        links.sort();
        assert_eq!(links, want_links, "the index links the last versions");
    }
    let stored = store
        .get_items(&["gh/1".into(), "gh/2".into(), "gh/3".into()])
        .await
        .unwrap();
    assert_eq!(stored[0].as_ref().unwrap().title, "first, moved");
    assert!(stored.iter().all(Option::is_some));
    let saved = store.get_sync_state("gh").await.unwrap().unwrap();
    assert_eq!(saved.etag, state.etag, "the state is saved with the pages");
    drop(engine);
    store.close().await;

    // After a restart the store gives the same items and links.
    let store = crate::common::open_store(&path).await;
    let (_, items, links) = store.load().await.unwrap().collect_all().await.unwrap();
    assert_eq!(items.len(), 3);
    assert_eq!(stored_links(&links), want_links);
    store.close().await;
}

#[tokio::test]
async fn a_failed_write_stores_none_of_the_pages() {
    let dir = tempfile::tempdir().unwrap();
    let path = crate::common::test_db(dir.path(), "plumbline.sqlite");
    let store = crate::common::open_store(&path).await;
    let source = synth::source("gh", "http://127.0.0.1:9");
    synth::write_model(&*store, 1, std::slice::from_ref(&source))
        .await
        .unwrap();
    let engine = Engine::open(store.clone(), 3.0).await.unwrap();

    // A state for a source that does not exist violates its foreign key at
    // the end of the transaction, after both pages' items were written.
    let state = SyncState::never("nope");
    let pages = vec![vec![item(1, "first", &[])], vec![item(2, "second", &[])]];
    let err = engine.apply_sync_pages(pages, &state).await.unwrap_err();
    // The store says what the failure means and keeps the database's own
    // words as its source.
    assert!(
        matches!(
            &err,
            plumbline::engine::Error::Store(plumbline::store::StoreError::Conflict { .. })
        ),
        "{err:?}"
    );
    let chain = std::iter::successors(Some(&err as &dyn std::error::Error), |e| e.source())
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ");
    assert!(chain.to_lowercase().contains("foreign key"), "{chain}");
    assert_eq!(engine.read().item_count(), 0, "the index took nothing");
    let stored = store
        .get_items(&["gh/1".into(), "gh/2".into()])
        .await
        .unwrap();
    assert!(stored.iter().all(Option::is_none), "the store took nothing");

    // The write connection is usable again afterwards.
    let got = engine
        .apply_sync_pages(vec![vec![item(1, "first", &[])]], &SyncState::never("gh"))
        .await
        .unwrap();
    assert_eq!(got, [counts(1, 0, 0)]);

    // A closed store takes no more writes.
    store.close().await;
    let err = store
        .upsert_items(vec![item(3, "third", &[])], &[], &[], None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("closed"), "{err}");
}
