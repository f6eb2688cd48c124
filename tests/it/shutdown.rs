//! Graceful shutdown: on SIGTERM the server stops accepting calls, ends its
//! `WatchRanking` streams, lets a sync finish the page it is storing, waits
//! for all of it, closes the store and exits with success within seconds;
//! a restart on the same file resumes the sync, losing and doubling nothing.
//! The server runs as a real process (the binary, its signal handling and
//! its exit code are what is tested), against the slow GitHub-shaped tracker
//! of [`super::slow_github`].

use std::collections::HashSet;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use plumbline::proto as pb;
use tonic::Code;
use tonic::transport::Channel;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer};

use super::slow_github::{TOTAL, github_like};
use crate::common::TestServer;
use crate::common::spawn_server;

/// How long after SIGTERM the process may take to exit: the page being
/// stored, the streams' last messages and closing SQLite, with room for a
/// loaded machine.
const EXIT_BOUND: Duration = Duration::from_secs(5);

/// Waits up to `bound` for `child` to exit; kills it if it does not, so that
/// a failing test leaves no process behind.
fn wait_exit(child: &mut Child, bound: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + bound;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("child status") {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

fn signal(child: &Child, name: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .expect("kill runs")
        .success();
    assert!(ok, "SIG{name} was delivered");
}

fn sigterm(child: &Child) {
    signal(child, "TERM");
}

async fn stored_keys(channel: &Channel) -> Vec<String> {
    pb::backlog_service_client::BacklogServiceClient::new(channel.clone())
        .list_items(pb::ListItemsRequest {
            source_id: "gh".into(),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .items
        .into_iter()
        .map(|i| format!("{}/{}", i.source_id, i.external_id))
        .collect()
}

fn sync_request() -> pb::SyncSourceRequest {
    pb::SyncSourceRequest {
        source_id: "gh".into(),
        full: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_watches_stops_a_sync_at_a_page_and_a_restart_resumes_it() {
    use pb::sync_source_response::Event;
    let mock = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/repos/acme/shop/issues"))
        .respond_with(github_like(mock.uri()))
        .mount(&mock)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let db = crate::common::test_db(dir.path(), "plumbline.sqlite");

    let (mut first, url) = tokio::task::block_in_place(|| spawn_server(&db));
    let channel = Channel::from_shared(url).unwrap().connect().await.unwrap();
    pb::source_service_client::SourceServiceClient::new(channel.clone())
        .create_source(pb::CreateSourceRequest {
            source: Some(pb::Source {
                id: "gh".into(),
                kind: pb::TrackerKind::Github as i32,
                base_url: mock.uri(),
                project_key: "acme/shop".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    // A watcher that stays connected for as long as the server lets it.
    let mut watch = pb::scoring_service_client::ScoringServiceClient::new(channel.clone())
        .watch_ranking(pb::WatchRankingRequest {
            page_size: 5,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    watch.message().await.unwrap().expect("the first ranking");
    let mut sync = pb::sync_service_client::SyncServiceClient::new(channel.clone())
        .sync_source(sync_request())
        .await
        .unwrap()
        .into_inner();
    // Two pages in (of five, 300 ms each), the process manager says stop.
    let mut reported = 0;
    let mut pages = 0;
    while pages < 2 {
        if let Some(Event::PageFetched(p)) = sync.message().await.unwrap().unwrap().event {
            pages += 1;
            reported = p.total_upserted as usize;
        }
    }
    sigterm(&first);
    let signalled = Instant::now();

    let exited = tokio::task::spawn_blocking(move || {
        let status = wait_exit(&mut first, EXIT_BOUND);
        (status, signalled.elapsed())
    });
    // The sync reports every page it stored, then how it ended.
    let sync_end = tokio::time::timeout(EXIT_BOUND, async {
        loop {
            match sync.message().await {
                Ok(Some(pb::SyncSourceResponse {
                    event: Some(Event::PageFetched(p)),
                })) => reported = p.total_upserted as usize,
                Ok(Some(other)) => break Ok(other),
                Ok(None) => panic!("the sync stream ended without a last event or status"),
                Err(status) => break Err(status),
            }
        }
    });
    // The watcher's stream ends; it does not hold the server up.
    let watch_end = tokio::time::timeout(EXIT_BOUND, async {
        loop {
            match watch.message().await {
                Ok(Some(_)) => continue, // the sync's pages moved the ranking
                Ok(None) => break None,
                Err(status) => break Some(status),
            }
        }
    });
    let (exited, sync_end, watch_end) = tokio::join!(exited, sync_end, watch_end);
    let (status, took) = exited.unwrap();
    let status = status.unwrap_or_else(|| {
        panic!("the server did not exit within {EXIT_BOUND:?} of SIGTERM (killed)")
    });
    assert!(status.success(), "the server exits with success: {status}");

    let sync_end = sync_end.expect("the sync stream ended");
    let status = sync_end.expect_err("the sync was interrupted, not done");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains("interrupted"), "{status:?}");
    let watch_end = watch_end.expect("the watch stream ended");
    let status = watch_end.expect("the watch ends with a status saying why");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    eprintln!("exited {took:?} after SIGTERM, {reported} of {TOTAL} items stored");
    assert!(
        (200..TOTAL).contains(&reported),
        "two pages or more, not all, were stored before the stop: {reported}"
    );

    let (mut second, url) = tokio::task::block_in_place(|| spawn_server(&db));
    let channel = Channel::from_shared(url).unwrap().connect().await.unwrap();
    let stored = stored_keys(&channel).await;
    assert_eq!(
        stored.len(),
        reported,
        "every page reported is stored, and nothing after"
    );
    let state = pb::sync_service_client::SyncServiceClient::new(channel.clone())
        .get_sync_status(pb::GetSyncStatusRequest {
            source_id: "gh".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!(state.state, pb::SyncState::Failed as i32);
    assert!(state.last_error.contains("interrupted"), "{state:?}");

    let mut sync = pb::sync_service_client::SyncServiceClient::new(channel.clone())
        .sync_source(sync_request())
        .await
        .unwrap()
        .into_inner();
    let done = loop {
        match sync.message().await.unwrap().expect("a done event").event {
            Some(Event::Done(d)) => break d,
            _ => continue,
        }
    };
    assert_eq!(
        done.upserted_count as usize,
        TOTAL - reported,
        "the resume starts where the stop left off"
    );
    let after = stored_keys(&channel).await;
    let distinct: HashSet<&String> = after.iter().collect();
    assert_eq!((after.len(), distinct.len()), (TOTAL, TOTAL));
    assert!(
        stored.iter().all(|k| distinct.contains(k)),
        "what was stored before the stop is kept"
    );
    sigterm(&second);
    let status = tokio::task::block_in_place(|| wait_exit(&mut second, EXIT_BOUND));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}

/// `RunningServer::shutdown` (the in-process path tests and the demo use)
/// goes the same way: an open watch does not keep it from finishing.
#[tokio::test]
async fn an_open_watch_does_not_hold_up_an_in_process_shutdown() {
    let s = TestServer::start().await;
    let mut watch = s
        .scoring()
        .watch_ranking(pb::WatchRankingRequest::default())
        .await
        .unwrap()
        .into_inner();
    watch.message().await.unwrap().expect("the first ranking");
    tokio::time::timeout(EXIT_BOUND, s.stop())
        .await
        .expect("the shutdown finished in time");
    let end = tokio::time::timeout(EXIT_BOUND, watch.message())
        .await
        .expect("the stream ended");
    let status = end.expect_err("the watch ends with a status saying why");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
}

/// A health watcher (a load balancer following the server) hears that it
/// stops serving, and its stream ends, so it does not hold the shutdown up.
#[tokio::test]
async fn a_health_watcher_hears_not_serving_and_does_not_hold_up_a_shutdown() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    let s = TestServer::start().await;
    let mut health = HealthClient::new(s.channel.clone())
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = health.message().await.unwrap().expect("the status now");
    assert_eq!(first.status, ServingStatus::Serving as i32);
    tokio::time::timeout(EXIT_BOUND, s.stop())
        .await
        .expect("the shutdown finished in time");
    let mut heard = Vec::new();
    while let Some(m) = tokio::time::timeout(EXIT_BOUND, health.message())
        .await
        .expect("the stream ended")
        .unwrap()
    {
        heard.push(m.status);
    }
    assert_eq!(heard, [ServingStatus::NotServing as i32]);
}

/// The background sync is a task the shutdown waits for: it stores the
/// pages in hand, records how it ended, and only then does the store close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_waits_for_the_background_sync_to_record_its_stop() {
    use plumbline::config::{Config, SyncConfig, ValidationConfig};
    let mock = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/repos/acme/shop/issues"))
        .respond_with(github_like(mock.uri()))
        .mount(&mock)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        db: crate::common::test_db(dir.path(), "plumbline.sqlite"),
        sync: SyncConfig {
            interval_secs: 1,
            ..SyncConfig::manual()
        },
        validation: ValidationConfig::manual(),
        outbound: crate::common::test_outbound(),
        limits: Default::default(),
        web: plumbline::web::WebConfig::on_free_port(),
        ..Config::default()
    };
    let server = plumbline::server::start(&config).await.unwrap();
    let channel = Channel::from_shared(server.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    pb::source_service_client::SourceServiceClient::new(channel.clone())
        .create_source(pb::CreateSourceRequest {
            source: Some(pb::Source {
                id: "gh".into(),
                kind: pb::TrackerKind::Github as i32,
                base_url: mock.uri(),
                project_key: "acme/shop".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    // The loop picks the source up at its next round, within a second.
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.engine().read().item_count() < 100 {
        assert!(Instant::now() < deadline, "no background sync within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let syncer = server.syncer().clone();
    assert!(syncer.is_running("gh"), "the sync is under way");
    tokio::time::timeout(EXIT_BOUND, server.shutdown())
        .await
        .expect("the shutdown finished in time")
        .expect("a clean shutdown");
    assert!(
        !syncer.is_running("gh"),
        "the sync ended before the store closed"
    );

    config.sync = SyncConfig::manual();
    let server = plumbline::server::start(&config).await.unwrap();
    let channel = Channel::from_shared(server.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let stored = stored_keys(&channel).await.len();
    assert!(
        (100..TOTAL).contains(&stored) && stored % 100 == 0,
        "whole pages, not all: {stored}"
    );
    let state = pb::sync_service_client::SyncServiceClient::new(channel)
        .get_sync_status(pb::GetSyncStatusRequest {
            source_id: "gh".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    // Written by the sync as it stopped, while the store was still open.
    assert!(state.last_finish_time.is_some(), "{state:?}");
    assert_eq!(state.last_upserted_count as usize, stored, "{state:?}");
    assert!(
        state.last_error.contains("shutting down"),
        "{}",
        state.last_error
    );
    server.shutdown().await.unwrap();
}

/// Ctrl-C (SIGINT) takes the same path as SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_stops_a_server_with_an_open_watch_the_same_way() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, url) = tokio::task::block_in_place(|| {
        spawn_server(&crate::common::test_db(dir.path(), "plumbline.sqlite"))
    });
    let channel = Channel::from_shared(url).unwrap().connect().await.unwrap();
    let mut watch = pb::scoring_service_client::ScoringServiceClient::new(channel)
        .watch_ranking(pb::WatchRankingRequest::default())
        .await
        .unwrap()
        .into_inner();
    watch.message().await.unwrap().expect("the first ranking");
    signal(&child, "INT");
    let status = tokio::task::block_in_place(|| wait_exit(&mut child, EXIT_BOUND));
    assert!(
        status.is_some_and(|s| s.success()),
        "exits with success within {EXIT_BOUND:?}: {status:?}"
    );
    let end = tokio::time::timeout(EXIT_BOUND, watch.message())
        .await
        .expect("the stream ended");
    assert_eq!(end.expect_err("a status").code(), Code::Unavailable);
}

/// What the lifecycle cannot end, a client holding a reflection stream open
/// (it ends when the client's side does), delays the shutdown by the grace
/// period at most: the shutdown is bounded whatever the clients do.
#[tokio::test]
async fn a_stream_the_server_cannot_end_delays_the_shutdown_by_the_grace_at_most() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    let s = TestServer::start().await;
    let (requests, rx) = tokio::sync::mpsc::channel(1);
    let mut stream = ServerReflectionClient::new(s.channel.clone())
        .server_reflection_info(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    requests
        .send(ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        })
        .await
        .unwrap();
    stream
        .message()
        .await
        .unwrap()
        .expect("a reflection answer");
    let started = Instant::now();
    tokio::time::timeout(plumbline::server::SHUTDOWN_GRACE + EXIT_BOUND, s.stop())
        .await
        .expect("the shutdown is bounded by its grace period");
    assert!(started.elapsed() >= plumbline::server::SHUTDOWN_GRACE);
    drop(requests); // held open until here on purpose
}
