//! What the store promises when its file fails under it: a deleted
//! database, a full one, one held by another process. Each write fails
//! with a status that says what to do, health says NOT_SERVING while
//! writes cannot succeed (reads go on from memory), and no write is
//! acknowledged that a restart would not find. (A read-only database is
//! covered by the store's unit tests: chmod does not stop root, and a
//! read-only mount is not available here.)

use std::path::Path;
use std::time::Duration;

use plumbline::proto as pb;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::common::*;

/// The health of the server (`""`) and of one service, as probes see them.
pub(crate) async fn health(s: &TestServer) -> [i32; 2] {
    let mut client = HealthClient::new(s.channel.clone());
    let mut out = [0; 2];
    for (i, service) in ["", "plumbline.v1.BacklogService"].into_iter().enumerate() {
        out[i] = client
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("health answers")
            .into_inner()
            .status;
    }
    out
}

/// Waits until both statuses are `want` (the periodic check runs every
/// 50 ms here); fails after a minute, a bound far from the expected time.
pub(crate) async fn wait_for_health(s: &TestServer, want: ServingStatus) {
    let want = [want as i32; 2];
    for _ in 0..1200 {
        if health(s).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("health stayed {:?}, not {want:?}", health(s).await);
}

async fn start(change: impl FnOnce(&mut plumbline::config::StoreConfig)) -> TestServer {
    TestServer::start_with_config(|c| {
        c.store.check_interval_ms = 50;
        change(&mut c.store);
    })
    .await
}

fn remove_database(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        // -shm and -wal may be absent; the main file must not be.
        if let Err(e) = std::fs::remove_file(&p)
            && suffix.is_empty()
        {
            panic!("rm {p:?}: {e}");
        }
    }
}

async fn try_create_goal(s: &TestServer, id: &str) -> Result<pb::Goal, tonic::Status> {
    s.model()
        .create_goal(pb::CreateGoalRequest {
            goal: Some(goal(id, pb::GoalLevel::Strategic, "", Some(1.0))),
        })
        .await
        .map(|r| r.into_inner().goal.expect("goal"))
}

#[tokio::test]
async fn a_deleted_database_refuses_writes_and_a_restart_finds_none_acknowledged() {
    if crate::common::skip_on_postgres("faults of the SQLite file (deleted, full, locked)") {
        return;
    }
    let s = start(|_| {}).await;
    create_goal(&s, goal("before", pb::GoalLevel::Strategic, "", Some(1.0))).await;
    assert_eq!(health(&s).await, [ServingStatus::Serving as i32; 2]);

    remove_database(&s.db_path());
    let refused = assert_code(try_create_goal(&s, "after").await, Code::FailedPrecondition);
    assert!(refused.message().contains("restart"), "{refused:?}");
    wait_for_health(&s, ServingStatus::NotServing).await;
    // Reads go on from memory.
    let kept = s
        .model()
        .get_goal(pb::GetGoalRequest {
            id: "before".into(),
        })
        .await
        .expect("reads are answered from memory");
    assert_eq!(kept.into_inner().goal.expect("goal").id, "before");
    assert_code(try_create_goal(&s, "later").await, Code::FailedPrecondition);

    // The restart opens the path afresh: the deleted file's data is gone
    // with it, and nothing acknowledged after the deletion was lost, since
    // nothing was acknowledged.
    let s = s.restart().await;
    assert_eq!(health(&s).await, [ServingStatus::Serving as i32; 2]);
    for id in ["after", "later"] {
        let missing = s
            .model()
            .get_goal(pb::GetGoalRequest { id: id.into() })
            .await;
        assert_code(missing, Code::NotFound);
    }
    create_goal(&s, goal("again", pb::GoalLevel::Strategic, "", Some(1.0))).await;
    s.stop().await;
}

#[tokio::test]
async fn health_notices_a_deleted_database_without_a_write() {
    if crate::common::skip_on_postgres("faults of the SQLite file (deleted, full, locked)") {
        return;
    }
    let s = start(|_| {}).await;
    assert_eq!(health(&s).await, [ServingStatus::Serving as i32; 2]);
    remove_database(&s.db_path());
    wait_for_health(&s, ServingStatus::NotServing).await;
    assert_code(try_create_goal(&s, "g").await, Code::FailedPrecondition);
    s.stop().await;
}

#[tokio::test]
async fn a_full_database_is_resource_exhausted_until_space_is_freed() {
    if crate::common::skip_on_postgres("faults of the SQLite file (deleted, full, locked)") {
        return;
    }
    let s = start(|c| c.max_size_mib = 1).await;
    create_source(&s, github_source("gh")).await;
    let body = "x".repeat(100 << 10);
    let mut written = 0;
    let refused = loop {
        assert!(written < 20, "1 MiB holds fewer than 20 bodies of 100 KiB");
        let it = pb::Item {
            body: body.clone(),
            ..item("gh", &written.to_string(), "big")
        };
        match s
            .backlog()
            .upsert_items(pb::UpsertItemsRequest {
                items: vec![it],
                update_mask: None,
            })
            .await
        {
            Ok(_) => written += 1,
            Err(status) => break status,
        }
    };
    assert!(written > 0);
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("free disk space"), "{refused:?}");
    wait_for_health(&s, ServingStatus::NotServing).await;
    assert_eq!(full_ranking(&s, false).await.items.len(), written);

    // Deleting the items frees their pages: that write succeeds, and
    // health and the next writes follow.
    s.sources()
        .delete_source(pb::DeleteSourceRequest {
            id: "gh".into(),
            force: true,
        })
        .await
        .expect("a delete needs no new space");
    wait_for_health(&s, ServingStatus::Serving).await;
    create_source(&s, github_source("gh")).await;
    upsert(&s, vec![item("gh", "1", "small")]).await;
    s.stop().await;
}

#[tokio::test]
async fn a_database_held_by_another_process_is_unavailable_until_it_lets_go() {
    if crate::common::skip_on_postgres("faults of the SQLite file (deleted, full, locked)") {
        return;
    }
    let s = start(|c| c.busy_timeout_ms = 200).await;
    create_goal(&s, goal("before", pb::GoalLevel::Strategic, "", Some(1.0))).await;

    let other = rusqlite::Connection::open(s.db_path()).expect("a second connection");
    other
        .execute_batch("BEGIN EXCLUSIVE")
        .expect("the other connection takes the write lock");
    let refused = assert_code(try_create_goal(&s, "held").await, Code::Unavailable);
    assert!(refused.message().contains("retry"), "{refused:?}");
    wait_for_health(&s, ServingStatus::NotServing).await;

    // Letting go is enough: the periodic check's empty write succeeds.
    other.execute_batch("COMMIT").expect("commit");
    drop(other);
    wait_for_health(&s, ServingStatus::Serving).await;
    create_goal(&s, goal("after", pb::GoalLevel::Strategic, "", Some(1.0))).await;
    s.stop().await;
}
