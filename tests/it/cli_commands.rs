//! The commands that make the whole API reachable from the `plumbline`
//! binary, end to end against a real sidecar: the value model one resource
//! at a time, sources and items, releases, experiments, validation and
//! evidence, observations from a file, completions and man pages. Each
//! checks what the server holds afterwards through gRPC, not only what the
//! command printed.

use crate::common::*;
use pb::validation_service_client::ValidationServiceClient;
use plumbline::proto as pb;
use serde_json::Value;

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

async fn get_goal(s: &TestServer, id: &str) -> pb::Goal {
    s.model()
        .get_goal(pb::GetGoalRequest { id: id.into() })
        .await
        .unwrap()
        .into_inner()
        .goal
        .unwrap()
}

async fn get_hypothesis(s: &TestServer, id: &str) -> pb::Hypothesis {
    s.model()
        .get_hypothesis(pb::GetHypothesisRequest { id: id.into() })
        .await
        .unwrap()
        .into_inner()
        .hypothesis
        .unwrap()
}

async fn get_metric(s: &TestServer, id: &str) -> pb::Metric {
    s.model()
        .get_metric(pb::GetMetricRequest { id: id.into() })
        .await
        .unwrap()
        .into_inner()
        .metric
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_server_says_what_to_do_next() {
    let s = TestServer::start().await;
    let url = s.server().url();
    for (args, hint) in [
        (
            &["goals"][..],
            "no goals yet: write a product file with `plumbline init`, then `plumbline apply`",
        ),
        (&["metrics"][..], "no metrics yet"),
        (&["hypotheses"][..], "no hypotheses yet"),
        (&["rank"][..], "no items here yet"),
        (&["items"][..], "no items here yet"),
        (&["links"][..], "no links yet"),
        (&["sources", "list"][..], "no sources yet"),
        (&["validate"][..], "nothing new to validate"),
    ] {
        let mut a = args.to_vec();
        a.extend(["--server", &url]);
        let out = run_cli(&a).await;
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let text = stdout(&out);
        assert!(text.starts_with(hint), "{args:?} printed {text:?}");
        assert!(!text.contains('┌'), "{args:?} printed a table: {text}");
        // Scripts get an empty array, not a sentence.
        a.push("--json");
        assert_eq!(cli_json(&a).await, Value::Array(vec![]), "{args:?}");
    }
    let out = run_cli(&["goals", "--tree", "--server", &url]).await;
    assert!(stdout(&out).starts_with("no goals yet"), "{}", stdout(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_value_model_is_built_changed_and_removed_from_the_cli() {
    let s = TestServer::start().await;
    let url = s.server().url();
    let url = url.as_str();

    // add: a root is strategic, its child one level below without --level.
    let g = cli_json(&[
        "goals",
        "add",
        "grow",
        "--title",
        "Grow revenue",
        "--area",
        "unrealized-value",
        "--weight",
        "3",
        "--json",
        "--server",
        url,
    ])
    .await;
    assert_eq!(g["level"], "strategic");
    assert_eq!(g["weight"].as_f64(), Some(3.0));
    let child = cli_json(&[
        "goals",
        "add",
        "conv-up",
        "--title",
        "More checkouts",
        "--parent",
        "grow",
        "--json",
        "--server",
        url,
    ])
    .await;
    assert_eq!(child["level"], "intermediate");
    assert_eq!(child["parent_id"], "grow");

    let m = cli_json(&[
        "metrics",
        "add",
        "conv",
        "--name",
        "Checkout conversion",
        "--unit",
        "%",
        "--baseline",
        "2.1",
        "--target",
        "3.5",
        "--cadence",
        "7d",
        "--json",
        "--server",
        url,
    ])
    .await;
    assert_eq!(m["cadence"].as_f64(), Some(7.0 * 86_400.0));
    assert_eq!(m["direction"], "higher_is_better");
    // A negative baseline is a number, not a flag.
    let churn = cli_json(&[
        "metrics",
        "add",
        "churn",
        "--name",
        "Net churn",
        "--baseline",
        "-2",
        "--target",
        "-5",
        "--json",
        "--server",
        url,
    ])
    .await;
    assert_eq!(churn["baseline"].as_f64(), Some(-2.0));
    assert_eq!(churn["direction"], "lower_is_better");

    let h = cli_json(&[
        "hypotheses",
        "add",
        "H-1",
        "--goal",
        "conv-up",
        "--metric",
        "conv",
        "--effect",
        "0.3",
        "--statement",
        "We believe one-click checkout lifts conversion",
        "--check",
        "2027-01-31",
        "--json",
        "--server",
        url,
    ])
    .await;
    assert_eq!(h["confidence"].as_f64(), Some(0.5));
    assert_eq!(h["status"], "proposed");
    assert_eq!(h["check_time"], "2027-01-31T00:00:00Z");

    // update: only the flags given change (an update mask of exactly those).
    let before = get_goal(&s, "grow").await;
    cli_json(&[
        "goals", "update", "grow", "--weight", "2", "--json", "--server", url,
    ])
    .await;
    let after = get_goal(&s, "grow").await;
    assert_eq!(after.weight, Some(2.0));
    assert_eq!(after.title, before.title);
    assert_eq!(after.key_value_area, before.key_value_area);

    let before = get_hypothesis(&s, "H-1").await;
    cli_json(&[
        "hypotheses",
        "update",
        "H-1",
        "--confidence",
        "0.7",
        "--status",
        "testing",
        "--json",
        "--server",
        url,
    ])
    .await;
    let after = get_hypothesis(&s, "H-1").await;
    assert_eq!(after.confidence, Some(0.7));
    assert_eq!(after.status, pb::HypothesisStatus::Testing as i32);
    assert_eq!(after.statement, before.statement);
    assert_eq!(after.expected_effect, before.expected_effect);
    assert_eq!(after.check_time, before.check_time);

    // An empty value clears a text field, which a mask-less update cannot.
    cli_json(&[
        "metrics", "update", "conv", "--unit", "", "--target", "4", "--json", "--server", url,
    ])
    .await;
    let conv = get_metric(&s, "conv").await;
    assert_eq!(
        (conv.unit.as_str(), conv.target, conv.baseline),
        ("", 4.0, 2.1)
    );
    assert_eq!(conv.name, "Checkout conversion");

    // An update without a change is a usage error, before any call.
    let out = run_cli(&["goals", "update", "grow", "--server", url]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    // get, and the listing that the bare command still prints.
    let got = cli_json(&["hypotheses", "get", "H-1", "--json", "--server", url]).await;
    assert_eq!(got["id"], "H-1");
    let listed = cli_json(&["goals", "--json", "--server", url]).await;
    assert_eq!(listed.as_array().unwrap().len(), 2);
    let listed = cli_json(&["goals", "list", "--json", "--server", url]).await;
    assert_eq!(listed.as_array().unwrap().len(), 2);
    let out = run_cli(&["goals", "--tree", "--server", url]).await;
    assert!(stdout(&out).contains("coverage"), "{}", stdout(&out));
    let rollup = cli_json(&["goals", "rollup", "grow", "--json", "--server", url]).await;
    assert_eq!(rollup["goal_id"], "grow");

    // Errors name what is wrong, with exit 1.
    let out = run_cli(&["goals", "get", "nope", "--server", url]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("\"nope\" not found"),
        "{}",
        stderr(&out)
    );
    let out = run_cli(&[
        "hypotheses",
        "add",
        "H-2",
        "--goal",
        "grow",
        "--metric",
        "nope",
        "--effect",
        "0.3",
        "--statement",
        "x",
        "--server",
        url,
    ])
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("hypothesis.metric_id"),
        "{}",
        stderr(&out)
    );

    // remove: refused while something depends on it, then in order.
    let out = run_cli(&["metrics", "remove", "conv", "--server", url]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    create_source(&s, github_source("web")).await;
    upsert(&s, vec![item("web", "1", "One-click checkout")]).await;
    link(&s, "web/1", "H-1", 1.0).await;
    let out = run_cli(&["hypotheses", "remove", "H-1", "--server", url]).await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "a linked hypothesis stays without --force"
    );
    let out = run_cli(&["hypotheses", "remove", "H-1", "--force", "--server", url]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "removed hypothesis H-1\n");
    for args in [
        &["metrics", "remove", "conv"][..],
        &["goals", "remove", "conv-up"][..],
        &["goals", "remove", "grow"][..],
    ] {
        let mut a = args.to_vec();
        a.extend(["--server", url]);
        let out = run_cli(&a).await;
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }
    let left = s
        .model()
        .list_goals(pb::ListGoalsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(left.goals.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_items_and_links_are_reachable_from_the_cli() {
    let s = start_with_fixture().await;
    let url = s.server().url();
    let url = url.as_str();

    // sources update changes the flags given, and keeps the other link rules.
    let before = s
        .sources()
        .get_source(pb::GetSourceRequest { id: "web".into() })
        .await
        .unwrap()
        .into_inner()
        .source
        .unwrap();
    let out = run_cli(&[
        "sources",
        "update",
        "web",
        "--token-env",
        "PLB_TEST_OTHER",
        "--label-prefix",
        "hyp:",
        "--server",
        url,
    ])
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let got = cli_json(&["sources", "get", "web", "--json", "--server", url]).await;
    assert_eq!(got["token_env"], "PLB_TEST_OTHER");
    assert_eq!(got["project_key"], before.project_key.as_str());
    assert_eq!(got["link_rules"]["label_prefix"], "hyp:");
    assert_eq!(
        got["link_rules"]["body_keyword"],
        before.link_rules.as_ref().unwrap().body_keyword.as_str()
    );
    assert_eq!(got["sync_state"], "never");
    let out = run_cli(&["sources", "update", "web", "--server", url]).await;
    assert_eq!(
        out.status.code(),
        Some(2),
        "nothing to update is a usage error"
    );

    // The rank table states the unit of value once, under it.
    let out = run_cli(&["rank", "--server", url]).await;
    assert!(
        stdout(&out).trim_end().ends_with("that per unit of size"),
        "{}",
        stdout(&out)
    );

    // items get: one key (GetItem) and several (BatchGetItems), in order.
    let one = cli_json(&["items", "get", "web/1", "--json", "--server", url]).await;
    assert_eq!(one[0]["key"], "web/1");
    assert_eq!(one[0]["labels"], serde_json::json!(["checkout", "ux"]));
    let two = cli_json(&["items", "get", "ops/2", "web/3", "--json", "--server", url]).await;
    let keys: Vec<&str> = two
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["ops/2", "web/3"]);
    let out = run_cli(&["items", "get", "web/99", "--server", url]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("web/99"), "{}", stderr(&out));
    // The listing flags still work on the bare command.
    let listed = cli_json(&["items", "--source", "ops", "--json", "--server", url]).await;
    assert_eq!(listed.as_array().unwrap().len(), 3);

    // items upsert creates, then replaces.
    let created = cli_json(&[
        "items",
        "upsert",
        "web/7",
        "--title",
        "Saved carts",
        "--estimate",
        "2",
        "--label",
        "checkout",
        "--label",
        "ux",
        "--json",
        "--server",
        url,
    ])
    .await;
    assert_eq!(created["result"], "created");
    let it = get_item(&s, "web/7").await.unwrap();
    assert_eq!((it.estimate, it.labels.len()), (Some(2.0), 2));
    let replaced = cli_json(&[
        "items",
        "upsert",
        "web/7",
        "--title",
        "Saved carts",
        "--state",
        "closed",
        "--json",
        "--server",
        url,
    ])
    .await;
    assert_eq!(replaced["result"], "updated");
    let it = get_item(&s, "web/7").await.unwrap();
    assert_eq!(it.state, pb::ItemState::Closed as i32);
    // --only sends an update mask: the estimate changes, the rest stays,
    // and no --title is needed.
    let masked = cli_json(&[
        "items",
        "upsert",
        "web/7",
        "--only",
        "estimate",
        "--estimate",
        "5",
        "--json",
        "--server",
        url,
    ])
    .await;
    assert_eq!(masked["result"], "updated");
    let it = get_item(&s, "web/7").await.unwrap();
    assert_eq!(
        (it.estimate, it.state, it.title.as_str()),
        (Some(5.0), pb::ItemState::Closed as i32, "Saved carts")
    );
    let out = run_cli(&[
        "items", "upsert", "web/7", "--only", "nope", "--server", url,
    ])
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("update_mask"), "{}", stderr(&out));
    let out = run_cli(&["items", "upsert", "web7", "--title", "x", "--server", url]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("SOURCE/EXTERNAL_ID"),
        "{}",
        stderr(&out)
    );

    // links, filtered either way.
    let links = cli_json(&["links", "--hypothesis", "H-1", "--json", "--server", url]).await;
    let mut items: Vec<&str> = links
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["item_key"].as_str().unwrap())
        .collect();
    items.sort();
    assert_eq!(items, ["ops/2", "web/1", "web/3"]);
    let links = cli_json(&["links", "--item", "ops/2", "--json", "--server", url]).await;
    assert_eq!(links.as_array().unwrap().len(), 2);
}

fn validation(s: &TestServer) -> ValidationServiceClient<tonic::transport::Channel> {
    ValidationServiceClient::new(s.channel.clone())
}

async fn stored_evidence(s: &TestServer, h: &str) -> Vec<pb::Evidence> {
    validation(s)
        .get_hypothesis_evidence(pb::GetHypothesisEvidenceRequest {
            hypothesis_id: h.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .evidence
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releases_are_recorded_validated_and_explained_from_the_cli() {
    let s = start_with_fixture().await;
    let url = s.server().url();
    let url = url.as_str();

    // conv moves from 2.2 to 2.9 when web/1 (half of H-1) ships.
    let mut obs: Vec<pb::Observation> = (16..=30)
        .map(|d| observation("conv", 2.2, Some(days_ago(d))))
        .collect();
    obs.extend((1..=14).map(|d| observation("conv", 2.9, Some(days_ago(d)))));
    record(&s, obs).await;
    let at = chrono::Utc::now() - chrono::Duration::days(15);
    let at = at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let r = cli_json(&[
        "release", "web/1", "--id", "deploy-1", "--at", &at, "--note", "v2.3.0", "--json",
        "--server", url,
    ])
    .await;
    assert_eq!(r["id"], "deploy-1");
    assert_eq!(r["item_keys"], serde_json::json!(["web/1"]));
    assert_eq!(r["origin"], "api");
    assert_eq!(r["note"], "v2.3.0");

    // A dry run prints the verdict and stores nothing.
    let confidence = get_hypothesis(&s, "H-1").await.confidence;
    let out = run_cli(&["validate", "--open", "--dry-run", "--server", url]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("dry run: nothing is stored"), "{text}");
    // This server honours it, so no warning that it did not.
    assert!(
        !stderr(&out).contains("does not know --dry-run"),
        "{}",
        stderr(&out)
    );
    assert!(
        text.contains("deploy-1") && text.contains(" ± ") && text.contains(" -> "),
        "{text}"
    );
    assert!(stored_evidence(&s, "H-1").await.is_empty());
    assert_eq!(get_hypothesis(&s, "H-1").await.confidence, confidence);

    // The real run stores it and moves H-1; --json has every field.
    let v = cli_json(&["validate", "--open", "--json", "--server", url]).await;
    let e = v
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["hypothesis_id"] == "H-1")
        .unwrap_or_else(|| panic!("no verdict on H-1: {v}"));
    assert_eq!(e["subject_id"], "deploy-1");
    assert_eq!(e["method"], "before_after");
    assert_eq!(e["delivered"].as_f64(), Some(0.5));
    for field in [
        "step",
        "step_se",
        "log_likelihood_ratio",
        "confidence_before",
        "confidence_after",
        "outcome",
    ] {
        assert!(!e[field].is_null(), "{field} missing: {e}");
    }
    let stored = stored_evidence(&s, "H-1").await;
    assert_eq!(stored.len(), 1);
    assert_eq!(
        get_hypothesis(&s, "H-1").await.confidence,
        Some(stored[0].confidence_after)
    );

    // An experiment result, then the story of H-1 oldest first.
    let ex = cli_json(&[
        "experiment",
        "H-1",
        "--lift",
        "0.4",
        "--ci",
        "0.1",
        "0.7",
        "--source",
        "ab-7",
        "--json",
        "--server",
        url,
    ])
    .await;
    assert_eq!(ex["method"], "experiment");
    assert_eq!(ex["step"].as_f64(), Some(0.4));
    let story = cli_json(&["evidence", "H-1", "--json", "--server", url]).await;
    let subjects: Vec<&str> = story
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["subject_id"].as_str().unwrap())
        .collect();
    assert_eq!(subjects.len(), 2);
    assert_eq!(subjects[0], "deploy-1");
    assert!(subjects[1].starts_with("experiment:H-1"), "{subjects:?}");
    let out = run_cli(&["evidence", "H-1", "--server", url]).await;
    let text = stdout(&out);
    assert!(text.starts_with("H-1: We believe H-1"), "{text}");
    assert!(text.contains("metric conv: steps in %"), "{text}");
    assert!(text.contains("deploy-1") && text.contains("LLR"), "{text}");

    // Errors: an unknown hypothesis (exit 1, named); a bad --ci or --at is a
    // usage error (exit 2) naming the flag, and nothing is called.
    for args in [
        &["experiment", "H-9", "--lift", "0.4", "--ci", "0.1", "0.7"][..],
        &["evidence", "H-9"][..],
    ] {
        let mut a = args.to_vec();
        a.extend(["--server", url]);
        let out = run_cli(&a).await;
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert_eq!(
            stderr(&out),
            "error: hypothesis \"H-9\" not found\n",
            "{args:?}"
        );
    }
    for (args, flag) in [
        (
            &["experiment", "H-1", "--lift", "0.4", "--ci", "0.7", "0.1"][..],
            "--ci",
        ),
        (
            &["experiment", "H-1", "--lift", "0.4", "--ci", "low", "0.7"][..],
            "--ci",
        ),
        (
            &["experiment", "H-1", "--lift", "0.4", "--ci", "0.1"][..],
            "--ci",
        ),
        (
            &["experiment", "H-1", "--lift", "0.9", "--ci", "0.1", "0.7"][..],
            "--lift",
        ),
        (&["release", "web/1", "--at", "yesterday"][..], "--at"),
        (&["validate", "--as-of", "2026-02-30"][..], "--as-of"),
    ] {
        let mut a = args.to_vec();
        a.extend(["--server", url]);
        let out = run_cli(&a).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(flag), "{args:?}: {}", stderr(&out));
    }
    assert_eq!(stored_evidence(&s, "H-1").await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observations_load_from_a_file_and_bad_lines_are_reported() {
    let s = start_with_fixture().await;
    let url = s.server().url();
    let url = url.as_str();
    let dir = tempfile::tempdir().unwrap();
    let count = |m: pb::Metric| m.observation_count;
    let before = count(get_metric(&s, "conv").await);

    let csv = dir.path().join("kpis.csv");
    std::fs::write(
        &csv,
        "metric,value,at\n\
         conv,2.2,2026-11-01\n\
         conv,abc,2026-11-02\n\
         nope,1,2026-11-02\n\
         conv,2.3,2099-01-01\n\
         lead,9,2026-11-03T08:00:00Z\n\
         conv,2.4,2026-11-04\n",
    )
    .unwrap();
    let out = run_cli(&["observe", "--file", csv.to_str().unwrap(), "--server", url]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    let file = csv.display().to_string();
    for line in [
        format!("{file}:3: value: \"abc\" is not a number"),
        format!("{file}:4: metric: no metric with id \"nope\""),
        format!("{file}:5: at: "),
    ] {
        assert!(err.contains(&line), "stderr lacks {line:?}:\n{err}");
    }
    assert!(err.contains("3 of 6 lines"), "{err}");
    assert!(
        stdout(&out).contains("recorded 3 observations of 2 metrics"),
        "{}",
        stdout(&out)
    );
    // The good lines are recorded, even those after bad ones.
    assert_eq!(count(get_metric(&s, "conv").await), before + 2);
    assert_eq!(get_metric(&s, "lead").await.current_value, Some(9.0));

    // JSON lines with --json: the same report, for scripts.
    let jsonl = dir.path().join("kpis.data");
    std::fs::write(
        &jsonl,
        "{\"metric\":\"nps\",\"value\":45,\"at\":\"2026-11-05\"}\n\
         {\"metric\":\"nps\",\"value\":\"high\"}\n",
    )
    .unwrap();
    let out = run_cli(&[
        "observe",
        "--file",
        jsonl.to_str().unwrap(),
        "--format",
        "jsonl",
        "--json",
        "--server",
        url,
    ])
    .await;
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["recorded_count"], 1);
    assert_eq!(report["refused"][0]["line"], 2);
    assert_eq!(report["refused"][0]["field"], "value");

    // A clean file succeeds; a file of unknown format is a usage error.
    let good = dir.path().join("good.jsonl");
    // Without `at`: now, so that it becomes the current value.
    std::fs::write(&good, "{\"metric\":\"nps\",\"value\":46}\n").unwrap();
    let out = run_cli(&["observe", "--file", good.to_str().unwrap(), "--server", url]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(get_metric(&s, "nps").await.current_value, Some(46.0));
    let out = run_cli(&[
        "observe",
        "--file",
        jsonl.to_str().unwrap(),
        "--server",
        url,
    ])
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--format"), "{}", stderr(&out));
    // Neither a value nor a file, or both: usage errors.
    let out = run_cli(&["observe", "--server", url]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let good = good.to_str().unwrap();
    let out = run_cli(&["observe", "conv", "2", "--file", good, "--server", url]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_and_man_pages_name_every_command() {
    let top: Vec<&str> = vec![
        "serve",
        "demo",
        "rank",
        "explain",
        "items",
        "goals",
        "metrics",
        "hypotheses",
        "link",
        "links",
        "observe",
        "release",
        "experiment",
        "validate",
        "evidence",
        "sources",
        "sync",
        "trend",
        "split",
        "tokens",
        "completions",
        "man",
    ];
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let out = run_cli(&["completions", shell]).await;
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let script = stdout(&out);
        for name in top
            .iter()
            .chain(&["add", "update", "remove", "rollup", "upsert"])
        {
            assert!(script.contains(name), "{shell} completion lacks {name}");
        }
        if shell == "bash" {
            // The script parses.
            let path = dir.path().join("plumbline.bash");
            std::fs::write(&path, &script).unwrap();
            let check = std::process::Command::new("bash")
                .arg("-n")
                .arg(&path)
                .output()
                .unwrap();
            assert!(
                check.status.success(),
                "{}",
                String::from_utf8_lossy(&check.stderr)
            );
        }
    }
    let out = run_cli(&["completions", "tcsh"]).await;
    assert_eq!(out.status.code(), Some(2));

    let out = run_cli(&["man"]).await;
    assert!(out.status.success());
    let page = stdout(&out);
    assert!(
        page.starts_with(".ie") || page.contains(".TH plumbline"),
        "{page}"
    );
    for name in &top {
        assert!(
            page.contains(&format!("plumbline\\-{name}")),
            "man page lacks {name}"
        );
    }
    let pages = dir.path().join("man1");
    let out = run_cli(&["man", "--dir", pages.to_str().unwrap()]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    for page in [
        "plumbline.1",
        "plumbline-goals-add.1",
        "plumbline-validate.1",
        "plumbline-observe.1",
    ] {
        assert!(pages.join(page).exists(), "{page} not written");
    }
}
