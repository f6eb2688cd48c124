//! Three `plumbline serve` processes on one PostgreSQL database: a write
//! acknowledged by any of them shows in every other's ranking, and when the
//! one running the background sync is killed mid-way, another takes the
//! sync over from its cursor, and all converge on the same ranking with
//! nothing lost or doubled. Runs in the PostgreSQL pass of the suite
//! (`scripts/with-postgres.sh`).

use std::time::{Duration, Instant};

use tonic::transport::Channel;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer};

use crate::common::{ServerChild, on_postgres, pg_query, spawn_server_with, test_db};
use crate::slow_github::{TOTAL, github_like};
use plumbline::proto as pb;

/// Every page of the ranking (open and closed), as the bytes of the
/// answers: what "the same ranking" means, byte for byte.
async fn ranking(channel: &Channel) -> (Vec<u8>, usize) {
    use prost::Message;
    let mut client = pb::scoring_service_client::ScoringServiceClient::new(channel.clone());
    let (mut bytes, mut count, mut token) = (Vec::new(), 0, String::new());
    loop {
        let page = client
            .rank_items(pb::RankItemsRequest {
                page_size: 500,
                page_token: token.clone(),
                include_closed: true,
                ..Default::default()
            })
            .await
            .expect("RankItems")
            .into_inner();
        count += page.items.len();
        // The token names the replica's position only; the items are what
        // must agree.
        for it in &page.items {
            bytes.extend(it.encode_to_vec());
        }
        if page.next_page_token.is_empty() {
            return (bytes, count);
        }
        token = page.next_page_token;
    }
}

/// Waits until every replica answers the same ranking, at most `bound`;
/// answers it and its item count.
async fn converged(channels: &[&Channel], bound: Duration) -> (Vec<u8>, usize) {
    let until = Instant::now() + bound;
    loop {
        let mut all = Vec::new();
        for c in channels {
            all.push(ranking(c).await);
        }
        if all.windows(2).all(|w| w[0] == w[1]) {
            return all.swap_remove(0);
        }
        assert!(
            Instant::now() < until,
            "the replicas did not agree within {bound:?}: counts {:?}",
            all.iter().map(|r| r.1).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A new database on the suite's PostgreSQL, with the folder its test
/// server keeps its files in; `None` (with a note) outside the PostgreSQL
/// pass of the suite.
fn shared_database() -> Option<(tempfile::TempDir, std::path::PathBuf)> {
    if !on_postgres() {
        eprintln!("skipped: runs in the PostgreSQL pass of the suite (scripts/with-postgres.sh)");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = test_db(dir.path(), "unused.sqlite");
    Some((dir, db))
}

async fn connect(url: &str) -> Channel {
    Channel::from_shared(url.to_string())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn count(db: &std::path::Path, sql: &str) -> usize {
    pg_query(db, sql)[0].parse().expect("a count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_converge_on_writes_through_each_and_on_a_sync_whose_runner_is_killed() {
    let Some((_dir, db)) = shared_database() else {
        return;
    };
    let tracker = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/repos/acme/shop/issues"))
        .respond_with(github_like(tracker.uri()))
        .mount(&tracker)
        .await;
    // Short leases and background syncs every second, so that a takeover
    // happens within the test's time.
    let env = [
        ("PLUMBLINE_STORE__LEASE_SECS", "2"),
        ("PLUMBLINE_STORE__FOLLOW_POLL_MS", "200"),
        ("PLUMBLINE_SYNC__INTERVAL_SECS", "1"),
    ];
    let mut replicas: Vec<(ServerChild, Channel)> = Vec::new();
    for _ in 0..3 {
        let (child, url) = tokio::task::block_in_place(|| spawn_server_with(&db, &env));
        replicas.push((child, connect(&url).await));
    }
    let [a, b, c] = [&replicas[0].1, &replicas[1].1, &replicas[2].1].map(Clone::clone);

    // Writes through each replica: the model on A, items on B, a link on C.
    let mut model = pb::value_model_service_client::ValueModelServiceClient::new(a.clone());
    model
        .create_goal(pb::CreateGoalRequest {
            goal: Some(crate::common::goal(
                "G",
                pb::GoalLevel::Strategic,
                "",
                Some(1.0),
            )),
        })
        .await
        .unwrap();
    model
        .create_metric(pb::CreateMetricRequest {
            metric: Some(crate::common::metric("M", 10.0, 20.0)),
        })
        .await
        .unwrap();
    model
        .create_hypothesis(pb::CreateHypothesisRequest {
            hypothesis: Some(crate::common::hypothesis("H", "G", "M", 0.5, 0.8)),
        })
        .await
        .unwrap();
    pb::source_service_client::SourceServiceClient::new(b.clone())
        .create_source(pb::CreateSourceRequest {
            source: Some(crate::push::push_source("push")),
        })
        .await
        .unwrap();
    pb::backlog_service_client::BacklogServiceClient::new(b.clone())
        .upsert_items(pb::UpsertItemsRequest {
            items: (1..=3)
                .map(|n| crate::common::item("push", &n.to_string(), &format!("Push {n}")))
                .collect(),
            update_mask: None,
        })
        .await
        .unwrap();
    // C links an item B wrote: C's write is checked against B's item.
    pb::backlog_service_client::BacklogServiceClient::new(c.clone())
        .link_item(pb::LinkItemRequest {
            item_key: "push/2".into(),
            hypothesis_id: "H".into(),
            contribution: 1.0,
            rationale: "serves H".into(),
        })
        .await
        .expect("C sees the item B wrote and the hypothesis A wrote");
    let (_, n) = converged(&[&a, &b, &c], Duration::from_secs(10)).await;
    assert_eq!(n, 3);
    let top = pb::scoring_service_client::ScoringServiceClient::new(a.clone())
        .rank_items(pb::RankItemsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        top.items[0].score.as_ref().unwrap().item_key,
        "push/2",
        "A ranks first the item C linked"
    );

    // A tracker source: the background sync runs on exactly one replica.
    pb::source_service_client::SourceServiceClient::new(c.clone())
        .create_source(pb::CreateSourceRequest {
            source: Some(pb::Source {
                id: "gh".into(),
                kind: pb::TrackerKind::Github as i32,
                base_url: tracker.uri(),
                project_key: "acme/shop".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    // Two pages or more stored (of five, 300 ms each): kill the holder.
    let until = Instant::now() + Duration::from_secs(30);
    let holder = loop {
        let stored = count(&db, "SELECT count(*) FROM items WHERE source_id = 'gh'");
        let holder = pg_query(&db, "SELECT holder FROM leases WHERE name = 'sync:gh'");
        if (200..TOTAL).contains(&stored) && !holder.is_empty() {
            break holder[0].clone();
        }
        assert!(
            Instant::now() < until && stored < TOTAL,
            "the sync did not get two pages in ({stored} stored)"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let pid: u32 = holder.split('-').next().unwrap().parse().unwrap();
    let victim = replicas
        .iter()
        .position(|(child, _)| child.id() == pid)
        .expect("the lease holder is one of the replicas");
    let (mut killed, _) = replicas.remove(victim);
    killed.kill().expect("SIGKILL");
    killed.wait().unwrap();
    let killed_at = Instant::now();
    let stored_at_kill = count(&db, "SELECT count(*) FROM items WHERE source_id = 'gh'");

    // Another replica takes the sync over within the lease time (2 s)
    // plus its loop (1 s), and finishes it.
    let until = Instant::now() + Duration::from_secs(60);
    let takeover = loop {
        let holder = pg_query(&db, "SELECT holder FROM leases WHERE name = 'sync:gh'");
        if holder
            .first()
            .is_some_and(|h| !h.starts_with(&format!("{pid}-")))
        {
            break killed_at.elapsed();
        }
        assert!(Instant::now() < until, "no replica took the sync over");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let until = Instant::now() + Duration::from_secs(60);
    while count(&db, "SELECT count(*) FROM items WHERE source_id = 'gh'") < TOTAL {
        assert!(
            Instant::now() < until,
            "the sync did not finish after the takeover"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "killed the sync's runner at {stored_at_kill} of {TOTAL} items; taken over after {takeover:?}"
    );
    let remaining: Vec<&Channel> = replicas.iter().map(|(_, c)| c).collect();
    let (_, n) = converged(&remaining, Duration::from_secs(20)).await;
    assert_eq!(n, TOTAL + 3, "every item once: nothing lost or doubled");
    assert_eq!(count(&db, "SELECT count(*) FROM items"), TOTAL + 3);
    assert_eq!(count(&db, "SELECT count(*) FROM links"), 1);
}

/// A TCP forwarder on 127.0.0.1 to the database, which the test can cut
/// (every connection and the listener closed) and mend (listening again
/// on the same port): a database that becomes unreachable and comes back.
struct Cable {
    port: u16,
    to: std::net::SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    connections: std::sync::Arc<parking_lot::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Cable {
    async fn new(to: std::net::SocketAddr) -> Cable {
        let mut cable = Cable {
            port: 0,
            to,
            tasks: Vec::new(),
            connections: Default::default(),
        };
        cable.mend().await;
        cable
    }

    async fn mend(&mut self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("the cable listens");
        self.port = listener.local_addr().unwrap().port();
        let (to, connections) = (self.to, self.connections.clone());
        self.tasks.push(tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                connections.lock().push(task.abort_handle());
            }
        }));
    }

    fn cut(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
        for c in self.connections.lock().drain(..) {
            c.abort();
        }
    }
}

/// Health says NOT_SERVING while the database cannot be reached (writes
/// cannot succeed, the change log cannot be followed), and SERVING again
/// once it can; reads are answered from memory meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_not_serving_while_the_database_is_unreachable() {
    use tonic_health::pb::health_check_response::ServingStatus;
    let Some((_dir, db)) = shared_database() else {
        return;
    };
    let mut url = url::Url::parse(&db.to_string_lossy()).unwrap();
    let to: std::net::SocketAddr =
        format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432))
            .parse()
            .unwrap();
    let mut cable = Cable::new(to).await;
    url.set_port(Some(cable.port)).unwrap();
    let through = std::path::PathBuf::from(url.as_str());
    let s = crate::common::TestServer::start_with_config(|c| {
        c.db = through;
        c.store.check_interval_ms = 50;
        c.store.follow_poll_ms = 50;
        // Short, so that the cut shows soon, yet long enough for a
        // connection on a loaded machine.
        c.store.busy_timeout_ms = 2000;
    })
    .await;
    crate::common::create_source(&s, crate::push::push_source("push")).await;
    crate::common::upsert(&s, vec![crate::common::item("push", "1", "One")]).await;
    crate::store_faults::wait_for_health(&s, ServingStatus::Serving).await;

    cable.cut();
    crate::store_faults::wait_for_health(&s, ServingStatus::NotServing).await;
    // Reads are answered from memory.
    let ranked = s
        .scoring()
        .rank_items(pb::RankItemsRequest::default())
        .await
        .expect("RankItems answers from memory");
    assert_eq!(ranked.into_inner().items.len(), 1);
    let refused = s
        .model()
        .create_goal(pb::CreateGoalRequest {
            goal: Some(crate::common::goal(
                "G",
                pb::GoalLevel::Strategic,
                "",
                Some(1.0),
            )),
        })
        .await
        .expect_err("a write cannot succeed");
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    let password = url.password().unwrap().to_string();
    assert!(!refused.message().contains(&password), "{refused:?}");

    cable.mend().await;
    crate::store_faults::wait_for_health(&s, ServingStatus::Serving).await;
    crate::common::create_goal(
        &s,
        crate::common::goal("G", pb::GoalLevel::Strategic, "", Some(1.0)),
    )
    .await;
    s.stop().await;
}

/// Two sidecars changing the same item and the same hypothesis, one field
/// each, back to back (B's write follows A's acknowledgement at once, before
/// B could have heard of it), and linking the same item at once: neither
/// write's effect is lost, and both sidecars end with the same answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_writing_the_same_rows_lose_neither_write() {
    use crate::common::{TestServer, create_source, goal, hypothesis, item, mask, metric};
    let Some((_dir, db)) = shared_database() else {
        return;
    };
    let (d1, d2) = (db.clone(), db.clone());
    let a = TestServer::start_with_config(move |c| c.db = d1).await;
    let b = TestServer::start_with_config(move |c| c.db = d2).await;
    create_source(&a, crate::push::push_source("push")).await;
    crate::common::create_goal(&a, goal("G", pb::GoalLevel::Strategic, "", Some(1.0))).await;
    crate::common::create_metric(&a, metric("M", 10.0, 20.0)).await;
    for h in ["H1", "H2", "H3"] {
        crate::common::create_hypothesis(&a, hypothesis(h, "G", "M", 0.5, 0.5)).await;
    }
    crate::common::upsert(&a, vec![item("push", "1", "First")]).await;

    let (mut a_backlog, mut a_model) = (a.backlog(), a.model());
    let (mut b_backlog, mut b_model) = (b.backlog(), b.model());
    for n in 0..10 {
        a_backlog
            .upsert_items(pb::UpsertItemsRequest {
                items: vec![item("push", "1", &format!("Title {n}"))],
                update_mask: mask(&["title"]),
            })
            .await
            .expect("A's title");
        let mut it = item("push", "1", "");
        it.estimate = Some(1.0 + n as f64);
        b_backlog
            .upsert_items(pb::UpsertItemsRequest {
                items: vec![it],
                update_mask: mask(&["estimate"]),
            })
            .await
            .expect("B's estimate");
        a_model
            .update_hypothesis(pb::UpdateHypothesisRequest {
                hypothesis: Some(pb::Hypothesis {
                    id: "H1".into(),
                    statement: format!("Statement {n}"),
                    ..Default::default()
                }),
                update_mask: mask(&["statement"]),
            })
            .await
            .expect("A's statement");
        b_model
            .update_hypothesis(pb::UpdateHypothesisRequest {
                hypothesis: Some(pb::Hypothesis {
                    id: "H1".into(),
                    confidence: Some(0.1 + n as f64 / 100.0),
                    ..Default::default()
                }),
                update_mask: mask(&["confidence"]),
            })
            .await
            .expect("B's confidence");
        // What the store holds now has both writes of the round.
        let item = pg_query(
            &db,
            "SELECT title || '|' || estimate FROM items WHERE key = 'push/1'",
        );
        assert_eq!(item, [format!("Title {n}|{}", 1.0 + n as f64)], "round {n}");
        let h = pg_query(
            &db,
            "SELECT statement || '|' || confidence FROM hypotheses WHERE id = 'H1'",
        );
        assert_eq!(
            h,
            [format!("Statement {n}|{}", 0.1 + n as f64 / 100.0)],
            "round {n}"
        );
    }
    // Links to one item from both at once.
    let (la, lb) = tokio::join!(
        a_backlog.link_item(pb::LinkItemRequest {
            item_key: "push/1".into(),
            hypothesis_id: "H2".into(),
            contribution: 0.5,
            rationale: "from A".into(),
        }),
        b_backlog.link_item(pb::LinkItemRequest {
            item_key: "push/1".into(),
            hypothesis_id: "H3".into(),
            contribution: 0.5,
            rationale: "from B".into(),
        })
    );
    la.expect("A's link");
    lb.expect("B's link");
    for s in [&a, &b] {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let it = crate::common::get_item(s, "push/1").await.unwrap();
            let h = s
                .model()
                .get_hypothesis(pb::GetHypothesisRequest { id: "H1".into() })
                .await
                .unwrap()
                .into_inner()
                .hypothesis
                .unwrap();
            let links = s
                .backlog()
                .list_links(pb::ListLinksRequest {
                    item_key: "push/1".into(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .links;
            if it.title == "Title 9"
                && it.estimate == Some(10.0)
                && h.statement == "Statement 9"
                && h.confidence == Some(0.1 + 9.0 / 100.0)
                && links.len() == 2
            {
                break;
            }
            assert!(
                Instant::now() < until,
                "the replicas do not agree: {it:?} {h:?} {links:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    a.stop().await;
    b.stop().await;
}

/// Sidecars starting together on a new database migrate it once: the
/// others wait on the migration lock, then find nothing to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecars_starting_together_migrate_once() {
    let Some((_dir, db)) = shared_database() else {
        return;
    };
    let dsn = db.to_string_lossy().into_owned();
    let config = plumbline::config::StoreConfig::default();
    let mut opening = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (dsn, config) = (dsn.clone(), config.clone());
        opening
            .spawn(async move { plumbline::store::PostgresStore::open_dsn(&dsn, &config).await });
    }
    while let Some(opened) = opening.join_next().await {
        let store = opened.unwrap().expect("every sidecar opens the database");
        plumbline::store::Store::close(&store).await;
    }
    let steps = pg_query(
        &db,
        "SELECT count(*) || '/' || count(DISTINCT version) FROM schema_migrations",
    );
    let dir_steps = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .unwrap()
        .count();
    assert_eq!(
        steps,
        [format!("{dir_steps}/{dir_steps}")],
        "each step applied once"
    );
}
