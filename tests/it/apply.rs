//! The value model as code: `plumbline init`, `apply` and `export` through the
//! real binary, and `ApplyValueModel` at the RPC level (idempotence,
//! atomicity, errors placed at line and column).

use crate::common::*;
use plumbline::proto as pb;
use plumbline::proto::model_file_service_client::ModelFileServiceClient;
use tonic::Code;
use tonic_types::StatusExt;

fn model_files(s: &TestServer) -> ModelFileServiceClient<tonic::transport::Channel> {
    ModelFileServiceClient::new(s.channel.clone())
}

async fn apply_doc(
    s: &TestServer,
    document: &str,
    dry_run: bool,
    prune: bool,
    force: bool,
) -> Result<pb::ApplyValueModelResponse, tonic::Status> {
    model_files(s)
        .apply_value_model(pb::ApplyValueModelRequest {
            document: document.to_string(),
            file_name: "product.toml".into(),
            dry_run,
            prune,
            force,
        })
        .await
        .map(|r| r.into_inner())
}

/// The whole model, state and observations included.
async fn export_doc(s: &TestServer) -> String {
    export_with(s, true, true).await
}

async fn export_with(s: &TestServer, include_state: bool, include_observations: bool) -> String {
    model_files(s)
        .export_value_model(pb::ExportValueModelRequest {
            include_state,
            include_observations,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .document
}

async fn goal_ids(s: &TestServer) -> Vec<String> {
    s.model()
        .list_goals(pb::ListGoalsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .goals
        .into_iter()
        .map(|g| g.id)
        .collect()
}

async fn metric_ids(s: &TestServer) -> Vec<String> {
    s.model()
        .list_metrics(pb::ListMetricsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .metrics
        .into_iter()
        .map(|m| m.id)
        .collect()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// What a user appends to the starter file: a push source with two items
/// linked to the starter's hypotheses, and one more hypothesis.
const EDIT: &str = r#"
[[sources]]
id = "web"
kind = "push"

[[hypotheses]]
id = "H2"
statement = "Saved cards make repeat buyers finish."
goal = "G1"
metric = "checkout_conversion"
expected_effect = 0.2
confidence = 0.7

[[items]]
source = "web"
id = "1"
title = "One-page checkout"
estimate = 5
links = [{ hypothesis = "H1", contribution = 0.8, rationale = "the bet itself" }]

[[items]]
source = "web"
id = "2"
title = "Saved cards"
estimate = 1
links = [{ hypothesis = "H2", contribution = 1.0 }]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_edit_plan_apply_rank_export_and_apply_again_plans_nothing() {
    let s = TestServer::start().await;
    let url = s.server().url();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("product.toml");
    let f = file.to_str().unwrap();

    let out = run_cli(&["init", f]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    // init never overwrites without --force.
    let again = run_cli(&["init", f]).await;
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );

    let mut text = std::fs::read_to_string(&file).unwrap();
    text = text.replace("expected_effect = 0.3 ", "expected_effect = 0.4 ");
    text.push_str(EDIT);
    std::fs::write(&file, &text).unwrap();

    // The dry run shows the plan and writes nothing.
    let out = run_cli(&["apply", f, "--dry-run", "--server", &url]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let plan = stdout(&out);
    for needle in [
        "Plan for",
        "10 to create, 0 to update, 0 to delete",
        "+ source web",
        "+ goal G1",
        "+ metric checkout_conversion",
        "+ observation checkout_conversion@2026-01-05T00:00:00Z",
        "+ hypothesis H1",
        "+ item web/1",
        "+ link web/1->H1",
        "Dry run: nothing was written",
    ] {
        assert!(plan.contains(needle), "plan lacks {needle:?}:\n{plan}");
    }
    assert!(goal_ids(&s).await.is_empty());
    let v = cli_json(&["apply", f, "--dry-run", "--json", "--server", &url]).await;
    assert_eq!(v["applied"], false);
    assert_eq!(v["changes"][0]["action"], "create");
    assert_eq!(v["changes"][0]["kind"], "source");
    assert_eq!(v["changes"][0]["id"], "web");

    let out = run_cli(&["apply", f, "--server", &url]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("Applied."), "{}", stdout(&out));

    // The items are ranked: web/2 (value 0.2 x 0.7 x gap, size 1) before
    // web/1 (0.4 x 0.5 x 0.8 x gap, size 5).
    let ranked = cli_json(&["rank", "--json", "--server", &url]).await;
    let keys: Vec<&str> = ranked
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["item_key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["web/2", "web/1"]);

    // Applying the same file again plans nothing.
    let out = run_cli(&["apply", f, "--server", &url]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("nothing to change"),
        "{}",
        stdout(&out)
    );

    // An edit is planned field by field, old -> new.
    std::fs::write(
        &file,
        text.replace("expected_effect = 0.4 ", "expected_effect = 0.25 "),
    )
    .unwrap();
    let out = run_cli(&["apply", f, "--dry-run", "--server", &url]).await;
    let plan = stdout(&out);
    assert!(
        plan.contains("0 to create, 1 to update, 0 to delete"),
        "{plan}"
    );
    assert!(plan.contains("~ hypothesis H1"), "{plan}");
    assert!(plan.contains("expected_effect: 0.4 -> 0.25"), "{plan}");

    // Export, then apply the export: nothing to change.
    let exported = dir.path().join("exported.toml");
    let e = exported.to_str().unwrap();
    let out = run_cli(&["export", "--out", e, "--server", &url]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run_cli(&["apply", e, "--server", &url]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("nothing to change"),
        "{}",
        stdout(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_with_three_errors_reports_all_three_with_line_and_column() {
    let s = TestServer::start().await;
    let url = s.server().url();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        r#"[[goals]]
id = "G1"
title = "Grow"
level = "strategy"

[[metrics]]
id = "m"
name = "M"
baseline = 1
target = 2

[[hypotheses]]
id = "H1"
statement = "S"
goal = "G1"
metric = "nope"
expected_effect = 1.5
"#,
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let out = run_cli(&["apply", f, "--server", &url]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("has 3 errors; nothing was written"), "{err}");
    // Value errors and a reference the model lacks, in the order of the file.
    let lines: Vec<&str> = err.lines().skip(1).collect();
    assert_eq!(
        lines,
        [
            format!("{f}:4:9: goals[0].level: must be strategic, intermediate or tactical"),
            format!("{f}:16:10: hypotheses[0].metric: no metric with id \"nope\""),
            format!("{f}:17:19: hypotheses[0].expected_effect: must be in (0, 1]"),
        ],
        "{err}"
    );
    assert!(goal_ids(&s).await.is_empty());
    assert!(metric_ids(&s).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn references_the_model_lacks_are_placed_and_refused_with_field_violations() {
    let s = TestServer::start().await;
    let doc = r#"[[goals]]
id = "G2"
title = "Child"
level = "intermediate"
parent = "G9"

[[hypotheses]]
id = "H1"
statement = "S"
goal = "G2"
metric = "nope"
expected_effect = 0.5
"#;
    let status = apply_doc(&s, doc, false, false, false).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let lines: Vec<&str> = status.message().lines().collect();
    assert_eq!(
        lines,
        [
            "product.toml:5:10: goals[0].parent: no goal with id \"G9\" in the file or on the server",
            "product.toml:11:10: hypotheses[0].metric: no metric with id \"nope\"",
        ],
        "{status:?}"
    );
    let br = status.get_details_bad_request().expect("field violations");
    let fields: Vec<&str> = br
        .field_violations
        .iter()
        .map(|v| v.field.as_str())
        .collect();
    assert_eq!(fields, ["goals[0].parent", "hypotheses[0].metric"]);
    assert!(
        br.field_violations[0]
            .description
            .starts_with("product.toml:5:10: ")
    );
    assert!(goal_ids(&s).await.is_empty());
}

const MODEL: &str = r#"
[[goals]]
id = "G1"
title = "Grow"
level = "strategic"
weight = 0.30000000000000004

[[metrics]]
id = "m1"
name = "M1"
baseline = 0.1
target = 0.7000000000000001
cadence_days = 0.3333333333333333
observations = [
  { at = 2026-01-05T10:00:00.123456789Z, value = 0.2 },
  { at = 2026-01-06T10:00:00Z, value = 0.30000000000000004 },
]

[[metrics]]
id = "m2"
name = "M2"
baseline = 10
target = 5

[[hypotheses]]
id = "H1"
statement = "S1"
goal = "G1"
metric = "m1"
expected_effect = 0.3333333333333333
confidence = 0.1

[[hypotheses]]
id = "H2"
statement = "S2"
goal = "G1"
metric = "m2"
expected_effect = 1
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applying_twice_or_applying_the_export_plans_nothing_and_floats_round_trip() {
    let s = TestServer::start().await;
    let first = apply_doc(&s, MODEL, false, false, false).await.unwrap();
    assert!(first.applied);
    assert_eq!(first.changes.len(), 7, "{first:?}");
    let again = apply_doc(&s, MODEL, false, false, false).await.unwrap();
    assert!(again.changes.is_empty(), "{again:?}");
    assert!(!again.applied);

    let exported = export_doc(&s).await;
    assert!(
        exported.contains("weight = 0.30000000000000004"),
        "{exported}"
    );
    assert!(
        exported.contains("2026-01-05T10:00:00.123456789Z"),
        "{exported}"
    );
    let back = apply_doc(&s, &exported, false, true, false).await.unwrap();
    assert!(back.changes.is_empty(), "{back:?}\n{exported}");

    // The same after a restart: what the store read back is what was written.
    let s = s.restart().await;
    let after = apply_doc(&s, &exported, true, true, false).await.unwrap();
    assert!(after.changes.is_empty(), "{after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_whose_later_step_fails_writes_nothing() {
    if crate::common::skip_on_postgres("the failure is injected with a SQLite trigger") {
        return;
    }
    let s = TestServer::start().await;
    // The last writes of the plan (hypotheses) fail in the store.
    let db = rusqlite::Connection::open(s.db_path()).unwrap();
    db.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
    db.execute_batch(
        "CREATE TRIGGER refuse_hypotheses BEFORE INSERT ON hypotheses \
         BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
    )
    .unwrap();
    let status = apply_doc(&s, MODEL, false, false, false).await.unwrap_err();
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    // Neither the store nor the index holds the goals and metrics written
    // before the failing step.
    assert!(goal_ids(&s).await.is_empty());
    assert!(metric_ids(&s).await.is_empty());
    let n: i64 = db
        .query_row(
            "SELECT (SELECT COUNT(*) FROM goals) + (SELECT COUNT(*) FROM metrics) + (SELECT COUNT(*) FROM observations)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 0);
    // Once the failure is gone the same file applies whole.
    db.execute_batch("DROP TRIGGER refuse_hypotheses").unwrap();
    let plan = apply_doc(&s, MODEL, false, false, false).await.unwrap();
    assert_eq!(plan.changes.len(), 7);
    assert_eq!(goal_ids(&s).await, ["G1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_without_force_refuses_to_delete_a_metric_that_hypotheses_use() {
    let s = TestServer::start().await;
    let url = s.server().url();
    apply_doc(&s, MODEL, false, false, false).await.unwrap();
    // The file drops metric m2 and its hypothesis H2.
    let without = MODEL
        .split("\n[[")
        .filter(|part| !part.contains("id = \"m2\"") && !part.contains("id = \"H2\""))
        .collect::<Vec<_>>()
        .join("\n[[");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("product.toml");
    std::fs::write(&file, &without).unwrap();
    let f = file.to_str().unwrap();

    // Without --prune nothing is deleted.
    let out = run_cli(&["apply", f, "--server", &url]).await;
    assert!(
        stdout(&out).contains("nothing to change"),
        "{}",
        stdout(&out)
    );

    let out = run_cli(&["apply", f, "--prune", "--server", &url]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("metric \"m2\" is still measured by hypotheses \"H2\""),
        "{err}"
    );
    assert!(err.contains("force"), "{err}");
    assert_eq!(metric_ids(&s).await, ["m1", "m2"]);

    let out = run_cli(&[
        "apply",
        f,
        "--prune",
        "--force",
        "--dry-run",
        "--server",
        &url,
    ])
    .await;
    let plan = stdout(&out);
    assert!(plan.contains("- hypothesis H2"), "{plan}");
    assert!(plan.contains("- metric m2"), "{plan}");
    assert_eq!(metric_ids(&s).await, ["m1", "m2"]);

    let out = run_cli(&["apply", f, "--prune", "--force", "--server", &url]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(metric_ids(&s).await, ["m1"]);
    let again = apply_doc(&s, &without, false, true, false).await.unwrap();
    assert!(again.changes.is_empty(), "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_starter_file_applies_cleanly_on_an_empty_server() {
    let s = TestServer::start().await;
    let plan = apply_doc(&s, plumbline::model::STARTER, false, false, false)
        .await
        .unwrap();
    assert!(plan.applied);
    assert_eq!(goal_ids(&s).await, ["G1"]);
    assert!(
        apply_doc(&s, plumbline::model::STARTER, false, false, false)
            .await
            .unwrap()
            .changes
            .is_empty()
    );
}

const SOURCED: &str = r#"
[[metrics]]
id = "conv"
name = "Checkout conversion"
unit = "%"
baseline = 2.1
target = 3.5

[metrics.source]
kind = "posthog"
base_url = "https://eu.posthog.com"
project_id = "4242"
api_key_env = "PLB_TEST_POSTHOG_KEY"
trend_event = "purchase"
poll_minutes = 60
"#;

#[tokio::test]
async fn a_metric_source_is_planned_applied_and_exported() {
    let s = TestServer::start().await;
    let r = apply_doc(&s, SOURCED, false, false, false).await.unwrap();
    assert!(r.applied);
    let m = s
        .model()
        .get_metric(pb::GetMetricRequest { id: "conv".into() })
        .await
        .unwrap()
        .into_inner()
        .metric
        .unwrap();
    let src = m.source.expect("a source");
    assert_eq!(src.poll_interval.map(|d| d.seconds), Some(3600));
    assert!(
        matches!(src.kind, Some(pb::metric_source::Kind::Posthog(p)) if p.trend_event == "purchase")
    );

    // The export round-trips; a changed setting is an update of `source`.
    let exported = export_doc(&s).await;
    assert!(exported.contains("[metrics.source]"), "{exported}");
    let again = apply_doc(&s, &exported, true, false, false).await.unwrap();
    assert!(again.changes.is_empty(), "{again:?}");
    let changed = apply_doc(
        &s,
        &SOURCED.replace("purchase", "signup"),
        true,
        false,
        false,
    )
    .await
    .unwrap();
    assert_eq!(changed.changes.len(), 1, "{changed:?}");
    assert_eq!(changed.changes[0].fields[0].field, "source");

    // Bad settings are placed at their line; a variable the policy does not
    // allow is refused.
    let e = apply_doc(
        &s,
        &SOURCED.replace("\"4242\"", "\"abc\""),
        false,
        false,
        false,
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("metrics[0].source.project_id"),
        "{}",
        e.message()
    );
    let e = apply_doc(
        &s,
        &SOURCED.replace("PLB_TEST_POSTHOG_KEY", "HOME"),
        false,
        false,
        false,
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("HOME"), "{}", e.message());
}

/// What validation learned is not undone by the file: the default export
/// leaves confidence, status and observations out, and applying it after a
/// hypothesis' confidence moved plans nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_export_leaves_state_and_observations_to_the_server() {
    let s = TestServer::start().await;
    apply_doc(&s, MODEL, false, false, false).await.unwrap();
    let plain = export_with(&s, false, false).await;
    assert!(
        !plain.contains("confidence")
            && !plain.contains("status")
            && !plain.contains("observations"),
        "{plain}"
    );
    // Validation (or a person) moves a confidence.
    s.model()
        .update_hypothesis(pb::UpdateHypothesisRequest {
            hypothesis: Some(pb::Hypothesis {
                id: "H1".into(),
                confidence: Some(0.73),
                ..Default::default()
            }),
            update_mask: mask(&["confidence"]),
        })
        .await
        .expect("UpdateHypothesis");
    let plan = apply_doc(&s, &plain, false, true, false).await.unwrap();
    assert!(plan.changes.is_empty(), "{plan:?}");
    let h = s
        .model()
        .get_hypothesis(pb::GetHypothesisRequest { id: "H1".into() })
        .await
        .unwrap()
        .into_inner()
        .hypothesis
        .unwrap();
    assert_eq!(h.confidence, Some(0.73));
    // With state, the export carries it, and applying it plans nothing either.
    let full = export_with(&s, true, false).await;
    assert!(full.contains("confidence = 0.73"), "{full}");
    let plan = apply_doc(&s, &full, false, true, false).await.unwrap();
    assert!(plan.changes.is_empty(), "{plan:?}");
}

/// A file may not write a tracker's items, nor turn a push source into a
/// tracker source; prune judges what goes with a deletion after the plan
/// (a hypothesis moved to another metric does not hold the old one, an
/// empty goal subtree goes without --force) and asks --force for a metric's
/// observations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_keeps_to_what_it_owns_and_prune_weighs_the_plan() {
    let s = TestServer::start().await;
    create_source(&s, github_source("web")).await;
    let tracker_item = r#"
[[sources]]
id = "web"
kind = "github"
base_url = "https://api.github.com"
project_key = "acme/web"
token_env = "GITHUB_TOKEN"

[[items]]
source = "web"
id = "1"
title = "Synced from GitHub"
"#;
    let st = apply_doc(&s, tracker_item, true, false, false)
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&st), ["items[0].source"], "{st:?}");
    assert!(st.message().contains("push sources only"), "{st:?}");

    let push = "[[sources]]\nid = \"ideas\"\nkind = \"push\"\n";
    apply_doc(&s, push, false, false, false).await.unwrap();
    let to_github = "[[sources]]\nid = \"ideas\"\nkind = \"github\"\nbase_url = \"https://api.github.com\"\nproject_key = \"acme/ideas\"\n";
    let st = apply_doc(&s, to_github, true, false, false)
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&st), ["sources[0].kind"], "{st:?}");

    // G1 > G2 (empty subtree), m1 with observations, m2 without, H1 on m2.
    let model = r#"
[[goals]]
id = "G0"
title = "Keep"
level = "strategic"

[[goals]]
id = "G1"
title = "Drop"
level = "strategic"

[[goals]]
id = "G2"
title = "Drop too"
level = "intermediate"
parent = "G1"

[[metrics]]
id = "m1"
name = "M1"
baseline = 0
target = 1
observations = [{ at = 2026-01-05T10:00:00Z, value = 0.2 }]

[[metrics]]
id = "m2"
name = "M2"
baseline = 0
target = 1

[[metrics]]
id = "m3"
name = "M3"
baseline = 0
target = 1

[[hypotheses]]
id = "H1"
statement = "S1"
goal = "G0"
metric = "m2"
expected_effect = 0.5
"#;
    apply_doc(&s, model, false, false, false).await.unwrap();
    // H1 moves to m3; m2 and the G1 subtree are dropped: no --force needed.
    let moved = model
        .split("\n[[")
        .filter(|p| {
            !p.contains("id = \"G1\"") && !p.contains("id = \"G2\"") && !p.contains("id = \"m2\"")
        })
        .collect::<Vec<_>>()
        .join("\n[[")
        .replace("metric = \"m2\"", "metric = \"m3\"");
    let with_sources = format!(
        "{push}\n{tracker_source}\n{moved}",
        tracker_source = &tracker_item[..tracker_item.find("[[items]]").unwrap()]
    );
    let plan = apply_doc(&s, &with_sources, true, true, false)
        .await
        .unwrap();
    let deleted: Vec<String> = plan
        .changes
        .iter()
        .filter(|c| c.action == pb::PlannedAction::Delete as i32)
        .map(|c| format!("{} {}", c.kind, c.id))
        .collect();
    assert_eq!(deleted, ["metric m2", "goal G2", "goal G1"], "{plan:?}");
    // Dropping m1, which has an observation, needs --force.
    let no_m1 = with_sources
        .split("\n[[")
        .filter(|p| !p.contains("id = \"m1\""))
        .collect::<Vec<_>>()
        .join("\n[[");
    let st = apply_doc(&s, &no_m1, true, true, false).await.unwrap_err();
    assert_eq!(st.code(), tonic::Code::FailedPrecondition);
    assert!(
        st.message()
            .contains("metric \"m1\" still has 1 observations"),
        "{st:?}"
    );
    apply_doc(&s, &no_m1, true, true, true).await.unwrap();
}

/// Many long errors stay one INVALID_ARGUMENT: the status is bounded in
/// bytes as well as in count, so the client never sees a broken stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_with_many_long_errors_is_one_bounded_invalid_argument() {
    let s = TestServer::start().await;
    let mut doc = String::from(
        "[[sources]]\nid = \"web\"\nkind = \"github\"\nbase_url = \"https://api.github.com\"\nproject_key = \"acme/web\"\n",
    );
    for i in 0..60 {
        doc.push_str(&format!(
            "\n[[items]]\nsource = \"web\"\nid = \"{i}\"\ntitle = \"{}\"\n",
            "x".repeat(40)
        ));
    }
    let st = apply_doc(&s, &doc, true, false, false).await.unwrap_err();
    assert_eq!(st.code(), tonic::Code::InvalidArgument, "{st:?}");
    assert!(st.message().contains("more errors"), "{}", st.message());
    let fields = bad_fields(&st);
    assert!(!fields.is_empty() && fields.len() < 60, "{fields:?}");
    assert!(fields.iter().all(|f| f.ends_with(".source")), "{fields:?}");
    assert!(st.message().len() <= 4096, "{}", st.message().len());
}
