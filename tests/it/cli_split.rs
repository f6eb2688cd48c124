//! `plumbline split` end to end: the binary against a real sidecar on
//! 127.0.0.1:0, proposing plans (JSON and table), applying one twice (also
//! with `--write-back`, against a local mock of GitHub), and its errors.

use crate::common::*;
use plumbline::proto as pb;
use serde_json::Value;

/// The token variable of the write-back tests' GitHub source.
const TOKEN_VAR: &str = "PLB_TEST_CLI_WRITE_BACK_TOKEN";

async fn stdout(args: &[&str]) -> String {
    let out = run_cli(args).await;
    assert!(
        out.status.success(),
        "plumbline {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Goal G (effective weight 1); metric m, unobserved, gap 1; H-1 worth
/// 1 x 1 x 0.5 x 0.4 = 0.2 and H-2 worth 1 x 1 x 0.25 x 0.4 = 0.1. Item web/7,
/// estimate 10, links H-1 (0.5) and H-2 (0.2): terms 0.1 and 0.02, value
/// 0.12; two open checklist tasks and a done one.
async fn model(s: &TestServer) {
    create_source(s, github_source("web")).await;
    create_goal(s, goal("G", pb::GoalLevel::Strategic, "", None)).await;
    create_metric(s, metric("m", 0.0, 10.0)).await;
    create_hypothesis(s, hypothesis("H-1", "G", "m", 0.5, 0.4)).await;
    create_hypothesis(s, hypothesis("H-2", "G", "m", 0.25, 0.4)).await;
    upsert(
        s,
        vec![pb::Item {
            body: "- [ ] Backend\n- [ ] Frontend\n- [x] Research".into(),
            ..estimated(item("web", "7", "Saved carts"), 10.0)
        }],
    )
    .await;
    link(s, "web/7", "H-1", 0.5).await;
    link(s, "web/7", "H-2", 0.2).await;
}

#[track_caller]
fn close(v: &Value, want: f64) {
    let got = v.as_f64().unwrap_or_else(|| panic!("{v} is not a number"));
    assert!((got - want).abs() < 1e-12, "{got} != {want}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_proposes_plans_and_applies_one_once() {
    let s = TestServer::start().await;
    model(&s).await;
    let url = s.server().url();
    let url = url.as_str();

    let p = cli_json(&["split", "web/7", "--json", "--server", url]).await;
    assert_eq!(p["item_key"], "web/7");
    close(&p["value"], 0.12);
    assert_eq!(p["oversized"], true, "10 > 8");
    let plans = p["plans"].as_array().unwrap();
    let kinds: Vec<&str> = plans.iter().map(|x| x["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["hypothesis", "task"]);
    let h = &plans[0];
    close(&h["slices"][0]["value"], 0.1);
    close(&h["slices"][1]["value"], 0.02);
    close(&h["slices"][0]["size"], 5.0);
    assert_eq!(h["best_slice_index"], 0);
    assert_eq!(h["slices"][0]["best"], true);
    assert_eq!(h["slices"][1]["best"], false);
    close(&h["value_concentration"], 0.1 / 0.12);
    assert_eq!(h["slices"][1]["links"][0]["hypothesis_id"], "H-2");
    let t = &plans[1];
    assert_eq!(t["slices"][1]["title"], "Frontend");
    close(&t["slices"][1]["links"][0]["contribution"], 0.25);

    let p = cli_json(&[
        "split",
        "web/7",
        "--threshold",
        "10",
        "--json",
        "--server",
        url,
    ])
    .await;
    assert_eq!(p["oversized"], false, "10 is not above 10");

    // The table marks the best slice and shows the concentration.
    let table = stdout(&["split", "web/7", "--server", url]).await;
    assert!(table.contains("OVERSIZED"), "{table}");
    assert!(table.contains("by hypothesis: 2 slices"), "{table}");
    assert!(
        table.contains("best first slice #1 (★), value concentration 83.3%"),
        "{table}"
    );
    assert!(table.contains("by task: 2 slices"), "{table}");
    let best_row = table
        .lines()
        .find(|l| l.contains("web/7-s1") && l.contains("H-1"))
        .unwrap_or_else(|| panic!("no row for the first slice: {table}"));
    assert!(best_row.contains('★'), "{best_row}");
    assert!(
        !table
            .lines()
            .any(|l| l.contains("web/7-s2") && l.contains("H-2") && l.contains('★')),
        "only the best slice is marked: {table}"
    );

    // Apply by task, then again: the second run creates nothing.
    let r = cli_json(&[
        "split", "web/7", "--apply", "task", "--json", "--server", url,
    ])
    .await;
    assert_eq!(r["created_count"], 2);
    assert_eq!(r["plan"], "task");
    let created: Vec<&str> = r["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["key"].as_str().unwrap())
        .collect();
    assert_eq!(created, ["web/7-s1", "web/7-s2"]);
    close(&r["items"][0]["estimate"], 5.0);
    assert_eq!(r["items"][1]["parent_key"], "web/7");
    let slice = item_score(&s, "web/7-s2").await.value;
    assert!((slice - 0.06).abs() < 1e-12, "{slice}");
    assert_eq!(item_score(&s, "web/7").await.value, 0.0);

    let again = stdout(&["split", "web/7", "--apply", "task", "--server", url]).await;
    assert!(
        again.contains("already split by task into 2 items; nothing created"),
        "{again}"
    );
    assert_eq!(all_items(&s, "web").await.len(), 3);

    // Errors are sentences on stderr with a non-zero exit.
    let out = run_cli(&["split", "web/99", "--server", url]).await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("item \"web/99\" not found"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run_cli(&["split", "web/7", "--threshold", "0", "--server", url]).await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("- size_threshold: must be a positive"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run_cli(&["split", "web/7", "--apply", "child", "--server", url]).await;
    assert!(!out.status.success(), "children cannot be applied");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_write_back_creates_the_slices_in_the_tracker_once() {
    use wiremock::matchers::{header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    set_test_token(TOKEN_VAR, "ghp_clitoken");
    let mock = MockServer::start().await;
    // GitHub answers 201 with the issue; one mock per slice, each matching
    // the body that slice must send.
    let issue = |n: u64, title: &str, note: &str| {
        ResponseTemplate::new(201).set_body_json(serde_json::json!({
            "number": n, "title": title, "body": note, "state": "open",
            "html_url": format!("https://github.com/acme/shop/issues/{n}"),
            "labels": [{"name": "size:5"}],
            "created_at": "2026-11-20T10:00:00Z", "updated_at": "2026-11-20T10:00:00Z",
        }))
    };
    for (n, title) in [(41, "Backend"), (42, "Frontend")] {
        let note = format!("Split from gh/7 by task: slice {} of 2.", n - 40);
        Mock::given(method("POST"))
            .and(path("/repos/acme/shop/issues"))
            .and(header("authorization", "Bearer ghp_clitoken"))
            .and(wiremock::matchers::body_partial_json(
                serde_json::json!({"title": title, "body": note, "labels": ["size:5"]}),
            ))
            .respond_with(issue(n, title, &note))
            .expect(1)
            .mount(&mock)
            .await;
    }
    let s = saved_carts_on(&mock, "- [ ] Backend\n- [ ] Frontend", 10.0).await;
    let url = s.server().url();
    let url = url.as_str();

    let out = stdout(&[
        "split",
        "gh/7",
        "--apply",
        "task",
        "--write-back",
        "--server",
        url,
    ])
    .await;
    assert!(
        out.contains("split gh/7 by task into 2 items, created in the tracker"),
        "{out}"
    );
    assert!(
        out.contains("https://github.com/acme/shop/issues/42"),
        "{out}"
    );
    let again = cli_json(&[
        "split",
        "gh/7",
        "--apply",
        "task",
        "--write-back",
        "--json",
        "--server",
        url,
    ])
    .await;
    assert_eq!(again["created_count"], 0);
    assert_eq!(again["write_back"], true);
    assert_eq!(again["items"][0]["key"], "gh/41");

    // --write-back only goes with --apply.
    let out = run_cli(&["split", "gh/7", "--write-back", "--server", url]).await;
    assert!(!out.status.success());
    mock.verify().await;
    s.stop().await;
}

/// After a write-back that stopped partway, the retry creates only the
/// missing slices; the CLI says how many items the plan holds and how many
/// this call created (not "split into 2 items" above a list of 3), marks the
/// new ones, and its JSON carries both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_write_back_reports_the_plan_and_what_this_call_created() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, Respond, ResponseTemplate};

    /// GitHub's create: 201 with the issue, numbered from 51; the second
    /// call fails with a 502 (which plumbline does not send again).
    struct Creates(std::sync::atomic::AtomicU64);
    impl Respond for Creates {
        fn respond(&self, req: &wiremock::Request) -> ResponseTemplate {
            let call = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if call == 1 {
                return ResponseTemplate::new(502).set_body_string("Bad Gateway");
            }
            let sent: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
            let n = 51 + call - u64::from(call > 1);
            ResponseTemplate::new(201).set_body_json(serde_json::json!({
                "number": n, "title": sent["title"], "body": sent["body"], "state": "open",
                "html_url": format!("https://github.com/acme/shop/issues/{n}"),
                "labels": sent["labels"].as_array().unwrap().iter()
                    .map(|l| serde_json::json!({"name": l})).collect::<Vec<_>>(),
                "created_at": "2026-11-20T10:00:00Z", "updated_at": "2026-11-20T10:00:00Z",
            }))
        }
    }
    set_test_token(TOKEN_VAR, "ghp_clitoken");
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/repos/acme/shop/issues"))
        .respond_with(Creates(0.into()))
        .expect(4)
        .mount(&mock)
        .await;
    let s = saved_carts_on(&mock, "- [ ] Backend\n- [ ] Frontend\n- [ ] Docs", 9.0).await;
    let url = s.server().url();
    let args = [
        "split",
        "gh/7",
        "--apply",
        "task",
        "--write-back",
        "--server",
        url.as_str(),
    ];
    let out = run_cli(&args).await;
    assert!(!out.status.success(), "slice 2 failed with a 502");

    let out = stdout(&args).await;
    assert!(
        out.contains(
            "split gh/7 by task into 3 items: this call created 2 in the tracker (marked new), \
             the other 1 came from an earlier call that stopped partway"
        ),
        "{out}"
    );
    let table_rows: Vec<&str> = out.lines().filter(|l| l.contains("gh/5")).collect();
    assert_eq!(table_rows.len(), 3, "{out}");
    assert!(!table_rows[0].contains("yes"), "gh/51 is not new: {out}");
    assert!(
        table_rows[1].contains("yes") && table_rows[2].contains("yes"),
        "{out}"
    );

    let mut json_args = args.to_vec();
    json_args.push("--json");
    let again = cli_json(&json_args).await;
    assert_eq!(again["created_count"], 0);
    assert_eq!(again["items"].as_array().unwrap().len(), 3);
    mock.verify().await;
    s.stop().await;
}

/// A server with the GitHub source `gh` at `mock` and its item gh/7,
/// "Saved carts", with `body` and `estimate`.
async fn saved_carts_on(mock: &wiremock::MockServer, body: &str, estimate: f64) -> TestServer {
    let s = TestServer::start().await;
    create_source(
        &s,
        pb::Source {
            id: "gh".into(),
            kind: pb::TrackerKind::Github as i32,
            base_url: mock.uri(),
            project_key: "acme/shop".into(),
            token_env: TOKEN_VAR.into(),
            ..Default::default()
        },
    )
    .await;
    upsert(
        &s,
        vec![pb::Item {
            body: body.into(),
            ..estimated(item("gh", "7", "Saved carts"), estimate)
        }],
    )
    .await;
    s
}
