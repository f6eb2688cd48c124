//! The `plumbline` binary, end to end: client commands against a real
//! sidecar on 127.0.0.1:0, and the demo.

use crate::common::*;
use plumbline::proto as pb;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_commands_print_what_the_server_holds() {
    let s = start_with_fixture().await;
    let url = s.server().url();
    let url = url.as_str();

    // rank --json lists the same keys, in the same order, as RankItems.
    let ranked = cli_json(&["rank", "--json", "-n", "100", "--server", url]).await;
    let cli_keys: Vec<&str> = ranked
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["item_key"].as_str().unwrap())
        .collect();
    let grpc = full_ranking(&s, false).await;
    assert_eq!(cli_keys, keys(&grpc));
    assert_eq!(ranked[0]["rank"], 1);

    // explain --json carries the same value and terms as GetItemScore.
    let top = cli_keys[0].to_string();
    let explained = cli_json(&["explain", &top, "--json", "--server", url]).await;
    let score = item_score(&s, &top).await;
    assert_eq!(explained["value"].as_f64(), Some(score.value));
    assert_eq!(
        explained["terms"].as_array().unwrap().len(),
        score.terms.len()
    );

    // observe reaches the target: the metric's gap is 0 in its answer and in `metrics`.
    let observed = cli_json(&[
        "observe",
        "conv",
        "3.5",
        "--at",
        "2026-11-20T09:00:00Z",
        "--json",
        "--server",
        url,
    ])
    .await;
    assert_eq!(observed[0]["id"], "conv");
    assert_eq!(observed[0]["gap"].as_f64(), Some(0.0));
    let metrics = cli_json(&["metrics", "--json", "--server", url]).await;
    let conv = metrics
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "conv")
        .unwrap();
    assert_eq!(conv["current_value"].as_f64(), Some(3.5));

    // link and unlink.
    let linked = cli_json(&[
        "link",
        "ops/3",
        "H-2",
        "-c",
        "0.5",
        "-r",
        "cuts toil",
        "--json",
        "--server",
        url,
    ])
    .await;
    assert_eq!(linked[0]["origin"], "api");
    assert_eq!(linked[0]["contribution"].as_f64(), Some(0.5));
    let out = run_cli(&["link", "ops/3", "H-2", "--remove", "--server", url]).await;
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("unlinked ops/3 from H-2"));

    // listings.
    let items = cli_json(&["items", "--source", "ops", "--json", "--server", url]).await;
    let item_keys: Vec<&str> = items
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["key"].as_str().unwrap())
        .collect();
    assert_eq!(item_keys, ["ops/1", "ops/2", "ops/3"]);
    let goals = cli_json(&["goals", "--json", "--server", url]).await;
    assert_eq!(
        goals.as_array().unwrap().len(),
        s.model()
            .list_goals(plumbline::proto::ListGoalsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .goals
            .len()
    );
    let hyps = cli_json(&["hypotheses", "--json", "--server", url]).await;
    let ids: Vec<&str> = hyps
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["H-1", "H-2", "H-3"]);

    // the table output is the default.
    let out = run_cli(&["rank", "--server", url]).await;
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("value/size") && table.contains(&top),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_are_sentences_and_exit_non_zero() {
    let s = start_with_fixture().await;
    let url = s.server().url();

    let out = run_cli(&["explain", "nope/1", "--server", &url]).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err, "error: item \"nope/1\" not found\n");

    let out = run_cli(&["link", "web/1", "H-1", "-c", "1.5", "--server", &url]).await;
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: invalid argument:\n  - contribution: must be in (0, 1]\n"
    );

    let out = run_cli(&[
        "observe",
        "conv",
        "2.0",
        "--at",
        "yesterday",
        "--server",
        &url,
    ])
    .await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("RFC 3339"));

    // Nothing listens on port 9 of loopback.
    let out = run_cli(&["rank", "--server", "http://127.0.0.1:9"]).await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("cannot reach plumbline at http://127.0.0.1:9")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_prints_a_ranked_explained_backlog_with_every_flag() {
    let out = run_cli(&["demo"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("Ranked backlog"), "{text}");
    for needle in [
        "Why #1:",
        "Why #3:",
        "term value",
        "unaligned",
        "unestimated",
        "stale_metric",
        "web/418",
        "Splitting the biggest item:",
        "best first slice",
        "Goal roll-up:",
        "items that serve no goal",
        "Validated after release:",
        "H-4: release close:web/426",
        "Segment roll-up:",
        "mobile-shoppers Mobile shoppers",
        "pay-on-phone",
        "UNDERSERVED",
        "segments no open item serves: partner-devs",
        "validated",
        "7 customer insights",
        "demand",
        "1 cust / 1 seg, critical",
        "Asked for, not aligned",
        "web/462  Dark mode for the merchant admin  (3 cust / 2 seg, nice_to_have)",
    ] {
        assert!(
            text.contains(needle),
            "demo output lacks {needle:?}:\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_and_sync_commands_drive_a_tracker_sync() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let mock = MockServer::start().await;
    let body = std::fs::read_to_string(format!(
        "{}/tests/fixtures/github/issues-page2.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    Mock::given(method("GET"))
        .and(path("/repos/acme/shop/issues"))
        .respond_with(ResponseTemplate::new(200).set_body_string(body))
        .mount(&mock)
        .await;
    let s = TestServer::start().await;
    let url = s.server().url();
    let url = url.as_str();

    let out = run_cli(&[
        "sources",
        "add",
        "gh",
        "--kind",
        "github",
        "--url",
        &mock.uri(),
        "--project",
        "acme/shop",
        "--server",
        url,
    ])
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("plumbline sync gh"));

    // Not a terminal: plain progress lines, then the summary.
    let out = run_cli(&["sync", "gh", "--server", url]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("page 1: 2 items, 2 new or changed"), "{text}");
    assert!(
        text.contains("gh: synced 1 pages in 1 requests; 2 items new or changed"),
        "{text}"
    );

    let sources = cli_json(&["sources", "list", "--json", "--server", url]).await;
    assert_eq!(sources[0]["id"], "gh");
    assert_eq!(sources[0]["sync_state"], "succeeded");
    assert_eq!(sources[0]["cursor_time"], "2026-11-05T13:00:00Z");

    let events = run_cli(&["sync", "gh", "--json", "--server", url]).await;
    let last: Value = serde_json::from_str(
        String::from_utf8_lossy(&events.stdout)
            .lines()
            .last()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        (last["event"].as_str(), last["upserted"].as_i64()),
        (Some("done"), Some(0))
    );

    let out = run_cli(&["sources", "remove", "gh", "--server", url]).await;
    assert!(!out.status.success(), "items still there: needs --force");
    // plumbline's own message, without the gRPC library's generic text for
    // FAILED_PRECONDITION ("The system is not in a state required ...").
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: source \"gh\" still has 2 items; delete with force to remove them too\n"
    );
    let out = run_cli(&["sources", "remove", "gh", "--force", "--server", url]).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("removed source gh and 2 items"));
}

/// A sidecar that dies (SIGKILL) while `plumbline sync` streams its progress:
/// the CLI says that the sidecar went away and that the sync resumes from its
/// cursor, not the transport's "h2 protocol error", and exits non-zero; run
/// again with nothing listening, it says the same in its own words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_dying_mid_sync_is_told_as_a_lost_connection_that_resumes() {
    use plumbline::proto as pb;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer};

    let mock = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/repos/acme/shop/issues"))
        .respond_with(crate::slow_github::github_like(mock.uri()))
        .mount(&mock)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let db = crate::common::test_db(dir.path(), "plumbline.sqlite");
    let (mut server, url) = tokio::task::block_in_place(|| spawn_server(&db));
    let channel = tonic::transport::Channel::from_shared(url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    pb::source_service_client::SourceServiceClient::new(channel)
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

    let mut cli = tokio::process::Command::new(env!("CARGO_BIN_EXE_plumbline"))
        .args(["sync", "gh", "--server", &url])
        .env_remove("PLUMBLINE_SERVER")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(cli.stdout.take().unwrap()).lines();
    // The first page is stored (of five, 300 ms each): the sidecar dies.
    let first = lines.next_line().await.unwrap().expect("a progress line");
    assert!(first.starts_with("page 1: 100 items"), "{first}");
    server.kill().unwrap();
    server.wait().unwrap();

    let mut stderr = String::new();
    cli.stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    let status = cli.wait().await.unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("error: the sidecar went away during the sync: the connection was lost"),
        "{stderr}"
    );
    assert!(
        stderr.contains("run `plumbline sync gh` again")
            && stderr.contains("resumes from its cursor"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("h2 protocol error") && !stderr.contains("Unknown error"),
        "{stderr}"
    );

    // Nothing listens there now.
    let out = run_cli(&["sync", "gh", "--server", &url]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!(
            "error: cannot reach plumbline at {url} (connection refused"
        )),
        "{err}"
    );
    assert!(
        err.contains("Nothing was synced; `plumbline sync gh` resumes from its cursor"),
        "{err}"
    );
}

/// Asserts that `v` (the JSON of a `plumbline.v1.NAME`) holds every field
/// of the message by its proto name, in nested messages too: a field added
/// to the API and forgotten by the CLI's `--json` fails here.
fn assert_every_field(v: &Value, name: &str, at: &str) {
    use prost_reflect::DescriptorPool;
    let pool = DescriptorPool::decode(plumbline::proto::FILE_DESCRIPTOR_SET).unwrap();
    let desc = pool
        .get_message_by_name(&format!("plumbline.v1.{name}"))
        .unwrap();
    check_fields(&desc, v, at);
}

fn check_fields(desc: &prost_reflect::MessageDescriptor, v: &Value, at: &str) {
    if desc.full_name().starts_with("google.protobuf.") {
        return;
    }
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("{at}: {} is not an object: {v}", desc.full_name()));
    for f in desc.fields() {
        let fv = obj.get(f.name()).unwrap_or_else(|| {
            panic!(
                "{at}: field {} of {} is missing from the JSON: {v}",
                f.name(),
                desc.full_name()
            )
        });
        if let prost_reflect::Kind::Message(m) = f.kind()
            && !f.is_map()
        {
            let here = format!("{at}.{}", f.name());
            match fv {
                Value::Null => {}
                Value::Array(items) => items.iter().for_each(|e| check_fields(&m, e, &here)),
                other => check_fields(&m, other, &here),
            }
        }
    }
}

fn each(v: &Value) -> &Vec<Value> {
    v.as_array().unwrap_or_else(|| panic!("not a list: {v}"))
}

/// Every `--json` command prints every field the API answers (issue 16:
/// `items --json` left out the body and the parent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_json_output_carries_every_field_of_the_answer() {
    let s = start_with_fixture().await;
    upsert(
        &s,
        vec![pb::Item {
            body: "Pay in one step.\n- [ ] Form\n- [ ] API".into(),
            parent_key: "web/1".into(),
            ..estimated(item("web", "77", "Child with a body"), 4.0)
        }],
    )
    .await;
    link(&s, "web/77", "H-1", 0.5).await;
    link(&s, "web/77", "H-2", 0.5).await;
    let url = s.server().url();
    let url = url.as_str();
    let run = |args: &[&str]| {
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        all.extend([
            "--json".to_string(),
            "--server".to_string(),
            url.to_string(),
        ]);
        all
    };
    async fn json_of(args: Vec<String>) -> Value {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        cli_json(&refs).await
    }

    let items = json_of(run(&["items", "--source", "web"])).await;
    let child = each(&items)
        .iter()
        .find(|i| i["key"] == "web/77")
        .expect("web/77 listed");
    assert_eq!(child["body"], "Pay in one step.\n- [ ] Form\n- [ ] API");
    assert_eq!(child["parent_key"], "web/1");
    assert_eq!(child["tasks_open"], 2);
    for i in each(&items) {
        assert_every_field(i, "Item", "items");
    }
    for r in each(&json_of(run(&["rank", "-n", "5"])).await) {
        assert_every_field(r, "ItemScore", "rank");
        assert!(r["rank"].as_i64().is_some());
    }
    assert_every_field(
        &json_of(run(&["explain", "web/77"])).await,
        "ItemScore",
        "explain",
    );
    for g in each(&json_of(run(&["goals"])).await) {
        assert_every_field(g, "Goal", "goals");
    }
    assert_every_field(
        &json_of(run(&["goals", "--tree"])).await,
        "GetGoalTreeResponse",
        "goals --tree",
    );
    for m in each(&json_of(run(&["metrics"])).await) {
        assert_every_field(m, "Metric", "metrics");
    }
    for h in each(&json_of(run(&["hypotheses"])).await) {
        assert_every_field(h, "Hypothesis", "hypotheses");
    }
    for l in each(&json_of(run(&["link", "ops/3", "H-2", "-c", "0.5"])).await) {
        assert_every_field(l, "Link", "link");
    }
    for m in each(&json_of(run(&["observe", "conv", "2.5"])).await) {
        assert_every_field(m, "Metric", "observe");
    }
    assert_every_field(
        &json_of(run(&["trend", "conv"])).await,
        "GetMetricTrendResponse",
        "trend",
    );
    for src in each(&json_of(run(&["sources", "list"])).await) {
        assert_every_field(src, "Source", "sources list");
        assert_every_field(&src["sync_status"], "SyncStatus", "sources list");
    }
    let proposal = json_of(run(&["split", "web/77"])).await;
    assert_every_field(&proposal, "ProposeSplitsResponse", "split");
    assert!(!each(&proposal["plans"]).is_empty());
    let applied = json_of(run(&["split", "web/77", "--apply", "hypothesis"])).await;
    assert_every_field(&applied, "ApplySplitResponse", "split --apply");
    assert_eq!(
        applied["created_item_keys"],
        serde_json::json!(["web/77-s1", "web/77-s2"])
    );
    s.stop().await;
}

/// A `--db` URL that is not PostgreSQL's is refused before anything is
/// created (it used to become a SQLite file in a folder named after the
/// scheme), naming the scheme; a PostgreSQL DSN whose server cannot be
/// reached fails naming the host, never the password, and creates nothing.
#[test]
fn serve_refuses_a_database_url_without_creating_anything_or_showing_its_password() {
    let dir = tempfile::tempdir().expect("dir");
    for (db, says) in [
        (
            "mysql://plb:pw-9f3k-secret@127.0.0.1:3306/plumbline",
            "mysql://",
        ),
        (
            "postgres://plb:pw-9f3k-secret@127.0.0.1:9/plumbline",
            "postgres://plb@127.0.0.1:9/plumbline",
        ),
    ] {
        let mut out = std::process::Command::new(env!("CARGO_BIN_EXE_plumbline"))
            .args(["serve", "--listen", "127.0.0.1:0", "--db", db])
            .current_dir(dir.path())
            .env_remove("PLUMBLINE_SERVER")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the binary runs");
        // Before the check it served (on a SQLite file under "mysql:"):
        // stopped after a while so that the test fails instead of hanging.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while out.try_wait().expect("wait").is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = out.kill();
        let out = out.wait_with_output().expect("output");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{stdout}\n{stderr}");
        assert!(stderr.contains(says), "{stderr}");
        assert!(
            !stderr.contains("pw-9f3k-secret") && !stdout.contains("pw-9f3k-secret"),
            "{stdout}\n{stderr}"
        );
    }
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "created {left:?}");
}
