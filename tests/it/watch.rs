//! WatchRanking: the top N now, then again with what moved after each write
//! that changes it; and `plumbline rank --watch`.

use crate::common::*;
use plumbline::proto as pb;
use std::time::Duration;

fn keys_of(items: &[pb::RankedItem]) -> Vec<String> {
    items
        .iter()
        .map(|r| r.score.as_ref().unwrap().item_key.clone())
        .collect()
}

#[tokio::test]
async fn watchers_get_the_ranking_then_each_change() {
    let s = start_with_fixture().await;
    let mut stream = s
        .scoring()
        .watch_ranking(pb::WatchRankingRequest {
            page_size: 3,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert_eq!(keys_of(&first.items), FIXTURE_DENSITY_ORDER[..3]);
    assert!(first.changes.is_empty());

    // A write that does not touch the top 3 sends nothing; one that does, sends.
    upsert(&s, vec![item("web", "99", "Unrelated and unlinked")]).await;
    // web/2 serves H-2 on "lead"; reaching lead's target zeroes its value.
    record(&s, vec![observation("lead", 4.0, Some(days_ago(0)))]).await;
    let next = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let now = keys_of(&next.items);
    assert!(!now.contains(&"web/2".to_string()), "{now:?}");
    let left = next
        .changes
        .iter()
        .find(|c| c.item_key == "web/2")
        .expect("web/2 moved");
    assert_eq!((left.old_rank, left.new_rank), (1, 0));
    assert!(left.old_value_density > 0.0);
    let entered: Vec<&pb::RankChange> = next.changes.iter().filter(|c| c.old_rank == 0).collect();
    assert_eq!(
        entered.len(),
        1,
        "one item took the free place: {:?}",
        next.changes
    );
    assert_eq!(next.items.len(), 3);
}

#[tokio::test]
async fn a_bad_watch_request_is_refused() {
    let s = start_with_fixture().await;
    let err = s
        .scoring()
        .watch_ranking(pb::WatchRankingRequest {
            page_size: -1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rank_watch_prints_updates_live() {
    let s = start_with_fixture().await;
    let url = s.server().url();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_plumbline"))
        .args(["rank", "--watch", "-n", "3", "--server", &url])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let mut seen = Vec::new();
    // The first table, then a change after the observation.
    let mut recorded = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let line = tokio::time::timeout_at(deadline, lines.next_line())
            .await
            .expect("output in time")
            .unwrap()
            .expect("a line");
        if line.contains("web/1") && !recorded {
            recorded = true;
            record(&s, vec![observation("lead", 4.0, Some(days_ago(0)))]).await;
        }
        seen.push(line.clone());
        if line.contains("web/2") && line.contains("left the top 3") {
            break;
        }
    }
    child.kill().await.unwrap();
    assert!(
        seen.iter().any(|l| l.contains("value/size")),
        "a table was printed: {seen:?}"
    );
}
