//! Items pushed by integrations: push sources (no tracker, never synced,
//! link rules still apply), `UpsertItems` with an update mask, and the
//! README's Python integration run against a real server.

use std::path::{Path, PathBuf};

use plumbline::auth::{Role, tokens};
use plumbline::proto as pb;
use plumbline::proto::backlog_service_client::BacklogServiceClient;
use plumbline::proto::scoring_service_client::ScoringServiceClient;
use plumbline::proto::source_service_client::SourceServiceClient;
use plumbline::proto::split_service_client::SplitServiceClient;
use plumbline::proto::value_model_service_client::ValueModelServiceClient;
use tonic::Code;
use tonic::metadata::{Ascii, MetadataValue};

use crate::common::*;

pub(crate) fn push_source(id: &str) -> pb::Source {
    pb::Source {
        id: id.into(),
        kind: pb::TrackerKind::Push as i32,
        ..Default::default()
    }
}

async fn get_source(s: &TestServer, id: &str) -> pb::Source {
    s.sources()
        .get_source(pb::GetSourceRequest { id: id.into() })
        .await
        .expect("GetSource")
        .into_inner()
        .source
        .expect("source")
}

async fn try_create(s: &TestServer, src: pb::Source) -> Result<pb::Source, tonic::Status> {
    s.sources()
        .create_source(pb::CreateSourceRequest { source: Some(src) })
        .await
        .map(|r| r.into_inner().source.unwrap_or_default())
}

async fn upsert_masked(
    s: &TestServer,
    items: Vec<pb::Item>,
    paths: &[&str],
) -> Result<pb::UpsertItemsResponse, tonic::Status> {
    s.backlog()
        .upsert_items(pb::UpsertItemsRequest {
            items,
            update_mask: mask(paths),
        })
        .await
        .map(|r| r.into_inner())
}

/// (hypothesis id, origin) of an item's links.
async fn links_of(s: &TestServer, key: &str) -> Vec<(String, i32)> {
    s.backlog()
        .list_links(pb::ListLinksRequest {
            item_key: key.into(),
            ..Default::default()
        })
        .await
        .expect("ListLinks")
        .into_inner()
        .links
        .into_iter()
        .map(|l| (l.hypothesis_id, l.origin))
        .collect()
}

const RULE: i32 = pb::LinkOrigin::Rule as i32;

#[tokio::test]
async fn a_push_source_has_no_tracker_and_is_never_synced() {
    let s = TestServer::start().await;
    let created = try_create(&s, push_source("plugin")).await.unwrap();
    assert_eq!(created.kind, pb::TrackerKind::Push as i32);
    assert_eq!(
        (created.base_url.as_str(), created.token_env.as_str()),
        ("", "")
    );
    // A project key is optional, and kept when given.
    let named = try_create(
        &s,
        pb::Source {
            project_key: "acme/roadmap".into(),
            ..push_source("roadmap")
        },
    )
    .await
    .unwrap();
    assert_eq!(named.project_key, "acme/roadmap");

    let listed = s
        .sources()
        .list_sources(pb::ListSourcesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .sources;
    assert_eq!(listed, [created.clone(), named]);

    // What belongs to a tracker is refused on a push source, naming it.
    let tracker_fields = pb::Source {
        base_url: "https://api.github.com".into(),
        token_env: "PLUMBLINE_SECRET_X".into(),
        estimate_field: "weight".into(),
        ..push_source("other")
    };
    let st = try_create(&s, tracker_fields).await.unwrap_err();
    assert_eq!(st.code(), Code::InvalidArgument);
    assert_eq!(
        bad_fields(&st),
        [
            "source.base_url",
            "source.token_env",
            "source.estimate_field"
        ]
    );
    assert!(st.message().contains("PUSH"), "{}", st.message());
    // A tracker still needs its URL and project.
    assert_invalid(
        try_create(
            &s,
            pb::Source {
                kind: pb::TrackerKind::Github as i32,
                ..push_source("gh")
            },
        )
        .await,
        &["source.base_url", "source.project_key"],
    );
    // A tracker source does not turn into a push source (its sync history
    // and cursor would outlive their tracker), nor the other way round (the
    // first full sync would mark every pushed item removed).
    create_source(&s, github_source("web")).await;
    let st = s
        .sources()
        .update_source(pb::UpdateSourceRequest {
            source: Some(push_source("web")),
            update_mask: mask(&["kind", "base_url", "token_env"]),
        })
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&st), ["source.kind"], "{st:?}");
    assert!(st.message().contains("create a new source"), "{st:?}");
    let st = s
        .sources()
        .update_source(pb::UpdateSourceRequest {
            source: Some(github_source("plugin")),
            update_mask: mask(&["kind", "base_url", "project_key", "token_env"]),
        })
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&st), ["source.kind"], "{st:?}");
    assert_eq!(
        get_source(&s, "web").await.kind,
        pb::TrackerKind::Github as i32
    );
    assert_eq!(
        get_source(&s, "plugin").await.kind,
        pb::TrackerKind::Push as i32
    );

    // SyncSource is refused on the call itself, and records nothing.
    for id in ["plugin"] {
        let st = s
            .sync()
            .sync_source(pb::SyncSourceRequest {
                source_id: id.into(),
                full: true,
            })
            .await
            .map(|_| ())
            .unwrap_err();
        assert_eq!(st.code(), Code::FailedPrecondition, "{st:?}");
        assert!(
            st.message().contains("push source") && st.message().contains("UpsertItems"),
            "says why: {}",
            st.message()
        );
        assert_eq!(
            sync_status(&s, id).await.state,
            pb::SyncState::Never as i32,
            "a refused sync is not a failed one"
        );
    }
    // The syncer itself, which the background sync calls, refuses it too.
    let e = s
        .server()
        .syncer()
        .sync("plugin", true, &|_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(e, plumbline::sync::SyncError::PushSource { .. }),
        "{e:?}"
    );
    assert_eq!(
        sync_status(&s, "plugin").await.state,
        pb::SyncState::Never as i32
    );
    // Stored as a push source: a restart reads it back as one.
    let s = s.restart().await;
    let back = s
        .sources()
        .get_source(pb::GetSourceRequest {
            id: "plugin".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .source
        .unwrap();
    assert_eq!(back, created);
}

#[tokio::test]
async fn pushed_items_follow_link_rules_and_split_without_write_back_only() {
    let s = TestServer::start().await;
    value_model_for_rules(&s).await;
    try_create(&s, push_source("plugin")).await.unwrap();
    let body = "Hypothesis: H-2 (0.5)\n- [ ] a\n- [ ] b\n- [ ] c";
    let it = pb::Item {
        body: body.into(),
        ..labelled(item("plugin", "7", "Seven"), &["hypothesis:H-1"])
    };
    upsert(&s, vec![it]).await;
    assert_eq!(
        links_of(&s, "plugin/7").await,
        [("H-1".to_string(), RULE), ("H-2".to_string(), RULE)]
    );
    // A masked change of the labels moves the rule links with it.
    upsert_masked(
        &s,
        vec![labelled(item("plugin", "7", ""), &["ux"])],
        &["labels"],
    )
    .await
    .unwrap();
    assert_eq!(links_of(&s, "plugin/7").await, [("H-2".to_string(), RULE)]);

    let apply = |write_back| pb::ApplySplitRequest {
        item_key: "plugin/7".into(),
        plan_kind: pb::SplitPlanKind::ByTask as i32,
        write_back,
    };
    let mut split = SplitServiceClient::new(s.channel.clone());
    let st = split.apply_split(apply(true)).await.unwrap_err();
    assert_eq!(st.code(), Code::FailedPrecondition, "{st:?}");
    assert!(
        st.message().contains("push source") && st.message().contains("without write-back"),
        "{}",
        st.message()
    );
    let applied = split.apply_split(apply(false)).await.unwrap().into_inner();
    assert_eq!(applied.items.len(), 3);
}

#[tokio::test]
async fn a_masked_upsert_changes_only_the_named_fields() {
    let s = TestServer::start().await;
    try_create(&s, push_source("plugin")).await.unwrap();
    let full = pb::Item {
        body: "Why: checkout".into(),
        parent_key: "plugin/1".into(),
        ..estimated(
            labelled(item("plugin", "2", "Two"), &["ux", "checkout"]),
            5.0,
        )
    };
    upsert(&s, vec![item("plugin", "1", "One"), full.clone()]).await;

    // Close it: only state and close_time are sent.
    let closed_at = days_ago(1);
    let close = pb::Item {
        close_time: Some(closed_at),
        ..closed(pb::Item {
            source_id: "plugin".into(),
            external_id: "2".into(),
            ..Default::default()
        })
    };
    let r = upsert_masked(&s, vec![close], &["state", "close_time"])
        .await
        .unwrap();
    assert_eq!((r.created_count, r.updated_count), (0, 1));
    let got = get_item(&s, "plugin/2").await.unwrap();
    assert_eq!(got.state, pb::ItemState::Closed as i32);
    assert_eq!(got.close_time, Some(closed_at));
    assert_eq!(got.title, "Two");
    assert_eq!(got.labels, ["ux", "checkout"]);
    assert_eq!(got.estimate, Some(5.0));
    assert_eq!(got.body, "Why: checkout");
    assert_eq!(got.parent_key, "plugin/1");
    assert_eq!(r.items[0], got);

    // Change the estimate; the labels stay.
    let mut est = estimated(item("plugin", "2", ""), 8.0);
    est.labels = vec!["ignored".into()];
    upsert_masked(&s, vec![est.clone()], &["estimate"])
        .await
        .unwrap();
    let got = get_item(&s, "plugin/2").await.unwrap();
    assert_eq!(got.estimate, Some(8.0));
    assert_eq!(got.labels, ["ux", "checkout"], "not in the mask");
    // The same again changes nothing.
    let again = upsert_masked(&s, vec![est], &["estimate"]).await.unwrap();
    assert_eq!(again.unchanged_count, 1);
    // Named with no value, it is cleared.
    upsert_masked(&s, vec![item("plugin", "2", "")], &["estimate"])
        .await
        .unwrap();
    assert_eq!(get_item(&s, "plugin/2").await.unwrap().estimate, None);

    // "*" is the whole item, as no mask is.
    upsert_masked(&s, vec![item("plugin", "2", "Two again")], &["*"])
        .await
        .unwrap();
    let got = get_item(&s, "plugin/2").await.unwrap();
    assert_eq!(got.title, "Two again");
    assert!(got.labels.is_empty() && got.parent_key.is_empty());
    assert_eq!(got.state, pb::ItemState::Open as i32);

    // A new item takes the named fields; it needs its title in the mask.
    let new = estimated(labelled(item("plugin", "3", "Three"), &["api"]), 2.0);
    let st = upsert_masked(&s, vec![new.clone()], &["labels", "estimate"])
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&st), ["items[0].title"]);
    assert!(st.message().contains("update_mask"), "{}", st.message());
    assert_code(get_item(&s, "plugin/3").await, Code::NotFound);
    let r = upsert_masked(&s, vec![new], &["title", "labels"])
        .await
        .unwrap();
    assert_eq!(r.created_count, 1);
    let got = get_item(&s, "plugin/3").await.unwrap();
    assert_eq!((got.title.as_str(), got.estimate), ("Three", None));
    assert_eq!(got.labels, ["api"]);

    // The merged item is checked whole: a bad value in a named field is
    // refused, and nothing of the batch is written.
    let st = upsert_masked(
        &s,
        vec![
            estimated(item("plugin", "1", ""), 3.0),
            estimated(item("plugin", "2", ""), 0.0),
        ],
        &["estimate"],
    )
    .await
    .unwrap_err();
    assert_eq!(bad_fields(&st), ["items[1].estimate"]);
    assert_eq!(get_item(&s, "plugin/1").await.unwrap().estimate, None);
}

#[tokio::test]
async fn a_bad_upsert_mask_is_refused_naming_update_mask() {
    let s = TestServer::start().await;
    try_create(&s, push_source("plugin")).await.unwrap();
    upsert(&s, vec![item("plugin", "1", "One")]).await;
    for paths in [
        &["state", "nope"][..],
        &["key"],
        &["source_id"],
        &["removal"],
        &["tasks"],
        &["*", "title"],
    ] {
        let st = upsert_masked(&s, vec![closed(item("plugin", "1", ""))], paths)
            .await
            .unwrap_err();
        assert_eq!(st.code(), Code::InvalidArgument, "{paths:?}");
        assert_eq!(bad_fields(&st), ["update_mask"], "{paths:?}");
    }
    assert_eq!(
        get_item(&s, "plugin/1").await.unwrap().state,
        pb::ItemState::Open as i32
    );
    // Which item it is is still checked, with or without a mask.
    let st = upsert_masked(&s, vec![item("plugin", "", "")], &["state"])
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&st), ["items[0].external_id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_adds_a_push_source_and_refuses_to_sync_it() {
    let s = TestServer::start().await;
    let url = s.server().url();
    let url = url.as_str();
    let added = cli_json(&[
        "sources", "add", "plugin", "--kind", "push", "--json", "--server", url,
    ])
    .await;
    assert_eq!(added["kind"], "push");
    assert_eq!(added["base_url"], "");
    let out = run_cli(&[
        "sources", "add", "plugin2", "--kind", "push", "--server", url,
    ])
    .await;
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("added push source plugin2"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let out = run_cli(&[
        "sources",
        "add",
        "bad",
        "--kind",
        "push",
        "--url",
        "https://api.github.com",
        "--server",
        url,
    ])
    .await;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("base_url"), "{err}");

    // A tracker kind still needs --url and --project: a usage error.
    let out = run_cli(&["sources", "add", "gh", "--kind", "github", "--server", url]).await;
    assert_eq!(out.status.code(), Some(2));

    let out = run_cli(&["sync", "plugin", "--server", url]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("push source"), "{err}");
}

// ----- the README's Python integration -----

/// The Python example, as a file and as the README shows it.
const PYTHON_EXAMPLE: &str = "examples/python/integration.py";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_readme_shows_the_python_example_as_it_is_tested() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let script = std::fs::read_to_string(repo().join(PYTHON_EXAMPLE)).expect("the example");
    let blocks: Vec<&str> = readme
        .split("```python\n")
        .skip(1)
        .filter_map(|rest| rest.split("\n```").next())
        .collect();
    assert!(
        blocks.iter().any(|b| format!("{b}\n") == script),
        "README.md must show {PYTHON_EXAMPLE} exactly, in a ```python block"
    );
}

/// The Python of `scripts/python-env.sh`, or why there is none. Its stamp
/// file is written last, so a half-made environment counts as none.
fn python_env() -> Result<PathBuf, String> {
    let venv = repo().join("target/py");
    if venv.join(".requirements").is_file() {
        Ok(venv.join("bin/python"))
    } else {
        Err(format!(
            "no Python environment at {} (run `bash scripts/python-env.sh`)",
            venv.display()
        ))
    }
}

/// Runs `cmd` off the async runtime (the server under test lives on it)
/// and requires success.
async fn run_ok(mut cmd: std::process::Command) -> String {
    let what = format!("{cmd:?}");
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .unwrap_or_else(|e| panic!("{what} does not start: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_integration_example_runs_against_a_real_server() {
    let python = match python_env() {
        Ok(p) => p,
        Err(why) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true, so the Python integration must run, but {why}; .ci/run makes it")
        }
        Err(why) => {
            eprintln!("skipped python_integration_example_runs_against_a_real_server: {why}");
            return;
        }
    };
    // A server with auth on and an admin token (registering a source needs
    // admin), made in its database before it starts.
    let dir = tempfile::tempdir().expect("temporary folder");
    let db = crate::common::test_db(dir.path(), "py.sqlite");
    let store = crate::common::open_store(&db).await;
    let (_, token) = tokens::create_in(&*store, "plugin", Role::Admin)
        .await
        .expect("token");
    store.close().await;
    let s = TestServer::start_with_config(|c| {
        c.db = db;
        c.auth.enabled = true;
    })
    .await;
    let bearer: MetadataValue<Ascii> = format!("Bearer {token}").parse().expect("ascii");
    let authed = move |mut req: tonic::Request<()>| {
        req.metadata_mut().insert("authorization", bearer.clone());
        Ok(req)
    };
    let mut model = ValueModelServiceClient::with_interceptor(s.channel.clone(), authed.clone());
    model
        .create_goal(pb::CreateGoalRequest {
            goal: Some(goal("G", pb::GoalLevel::Strategic, "", None)),
        })
        .await
        .expect("CreateGoal");
    model
        .create_metric(pb::CreateMetricRequest {
            metric: Some(metric("conversion", 2.0, 4.0)),
        })
        .await
        .expect("CreateMetric");
    for (id, effect) in [("H-1", 0.5), ("H-2", 0.2)] {
        model
            .create_hypothesis(pb::CreateHypothesisRequest {
                hypothesis: Some(hypothesis(id, "G", "conversion", effect, 0.5)),
            })
            .await
            .expect("CreateHypothesis");
    }

    // Stubs from proto/, as the example's header says.
    let gen_dir = tempfile::tempdir().expect("temporary folder");
    let mut protos: Vec<PathBuf> = std::fs::read_dir(repo().join("proto/plumbline/v1"))
        .expect("proto/")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "proto"))
        // protoc wants them under the -I path as written.
        .map(|p| {
            p.strip_prefix(repo())
                .expect("under the repo")
                .to_path_buf()
        })
        .collect();
    protos.sort();
    let mut protoc = std::process::Command::new(&python);
    protoc
        .current_dir(repo())
        .args(["-m", "grpc_tools.protoc", "-I", "proto"])
        .arg(format!("--python_out={}", gen_dir.path().display()))
        .arg(format!("--grpc_python_out={}", gen_dir.path().display()))
        .args(&protos);
    run_ok(protoc).await;

    let example = || {
        let mut cmd = std::process::Command::new(&python);
        cmd.arg(repo().join(PYTHON_EXAMPLE))
            .env("PYTHONPATH", gen_dir.path())
            .env("PLUMBLINE_SERVER", s.server().url())
            .env("PLUMBLINE_TOKEN", &token);
        cmd
    };
    let printed = run_ok(example()).await;
    assert!(
        printed.starts_with("items: 3 new, 0 changed, 0 unchanged\n"),
        "{printed}"
    );
    // A second run finds its source registered and changes nothing: not
    // even R-3, which the first run closed, is reopened on the way.
    let again = run_ok(example()).await;
    assert!(
        again.starts_with("items: 0 new, 0 changed, 3 unchanged\n"),
        "{again}"
    );
    assert_eq!(
        again.lines().skip(1).collect::<Vec<_>>(),
        printed.lines().skip(1).collect::<Vec<_>>()
    );

    // What the script did, read back through the API.
    let mut backlog = BacklogServiceClient::with_interceptor(s.channel.clone(), authed.clone());
    let source = SourceServiceClient::with_interceptor(s.channel.clone(), authed.clone())
        .get_source(pb::GetSourceRequest {
            id: "roadmap".into(),
        })
        .await
        .expect("the source is registered")
        .into_inner()
        .source
        .unwrap_or_default();
    assert_eq!(source.kind, pb::TrackerKind::Push as i32);
    let items = backlog
        .batch_get_items(pb::BatchGetItemsRequest {
            keys: ["roadmap/R-1", "roadmap/R-2", "roadmap/R-3"]
                .map(String::from)
                .to_vec(),
        })
        .await
        .expect("the items are stored")
        .into_inner()
        .items;
    assert_eq!(items[0].labels, ["mobile", "hypothesis:H-1"]);
    assert_eq!(items[1].estimate, Some(5.0));
    assert_eq!(
        (
            items[2].state,
            items[2].title.as_str(),
            items[2].labels.len()
        ),
        (pb::ItemState::Closed as i32, "Old banner", 1),
        "closed by the masked upsert, the rest kept"
    );
    let links: Vec<(String, String, i32)> = backlog
        .list_links(pb::ListLinksRequest::default())
        .await
        .expect("ListLinks")
        .into_inner()
        .links
        .into_iter()
        .map(|l| (l.item_key, l.hypothesis_id, l.origin))
        .collect();
    assert_eq!(
        links,
        [
            (
                "roadmap/R-1".into(),
                "H-1".into(),
                pb::LinkOrigin::Rule as i32
            ),
            (
                "roadmap/R-2".into(),
                "H-2".into(),
                pb::LinkOrigin::Api as i32
            ),
        ]
    );
    // It printed the ranking the server holds: open items, best first.
    let ranking = ScoringServiceClient::with_interceptor(s.channel.clone(), authed)
        .rank_items(pb::RankItemsRequest {
            source_id: "roadmap".into(),
            page_size: 10,
            ..Default::default()
        })
        .await
        .expect("RankItems")
        .into_inner();
    let expected: Vec<String> = ranking
        .items
        .iter()
        .map(|r| {
            let sc = r.score.clone().unwrap_or_default();
            format!(
                "{}. {} value/size {:.3} {}",
                r.rank, sc.item_key, sc.value_density, sc.title
            )
        })
        .collect();
    assert_eq!(expected.len(), 2);
    assert_eq!(printed.lines().skip(1).collect::<Vec<_>>(), expected);
}

/// A masked upsert checks what it brings, not what was stored: a GitHub
/// issue whose size label says 2,000,000 is stored with that estimate by
/// sync (the API would refuse it), and closing it with a `state` mask must
/// neither fail on it nor drop it. Errors of the named fields still count,
/// all of them at once.
#[tokio::test]
async fn a_masked_upsert_keeps_a_stored_value_the_api_would_refuse() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let mock = MockServer::start().await;
    let issue = serde_json::json!([{
        "number": 7,
        "title": "Bulk import",
        "body": null,
        "html_url": "https://github.com/acme/shop/issues/7",
        "state": "open",
        "labels": [{"name": "size:2000000"}, {"name": "import"}],
        "created_at": "2026-10-01T08:00:00Z",
        "updated_at": "2026-11-05T13:00:00Z",
        "closed_at": null
    }]);
    Mock::given(method("GET"))
        .and(path("/repos/acme/shop/issues"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "application/json")
                .set_body_json(issue),
        )
        .mount(&mock)
        .await;
    set_test_token("PLB_TEST_GITHUB_TOKEN", "ghp_testtoken0123456789");
    let s = TestServer::start().await;
    create_source(
        &s,
        pb::Source {
            id: "gh".into(),
            kind: pb::TrackerKind::Github as i32,
            base_url: mock.uri(),
            project_key: "acme/shop".into(),
            token_env: "PLB_TEST_GITHUB_TOKEN".into(),
            ..Default::default()
        },
    )
    .await;
    run_sync(&s, "gh", true).await.done();
    let stored = get_item(&s, "gh/7").await.expect("synced");
    assert_eq!(stored.estimate, Some(2_000_000.0));

    let close = pb::Item {
        source_id: "gh".into(),
        external_id: "7".into(),
        state: pb::ItemState::Closed as i32,
        close_time: Some(days_ago(1)),
        ..Default::default()
    };
    upsert_masked(&s, vec![close.clone()], &["state", "close_time"])
        .await
        .expect("closing does not touch the estimate");
    let got = get_item(&s, "gh/7").await.unwrap();
    assert_eq!(got.state, pb::ItemState::Closed as i32);
    assert_eq!(got.estimate, Some(2_000_000.0));
    assert_eq!(got.labels, ["size:2000000", "import"]);

    // A bad value the request does bring is refused, with every error.
    let mut bad = close;
    bad.estimate = Some(-1.0);
    bad.labels = vec![" ".into()];
    let st = upsert_masked(&s, vec![bad], &["estimate", "labels"])
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::InvalidArgument);
    let mut fields = bad_fields(&st);
    fields.sort();
    assert_eq!(fields, ["items[0].estimate", "items[0].labels[0]"]);
}

/// A NUL in an item's body (the API refuses it in titles and labels; a
/// tracker's JSON can carry `\u0000` anywhere) is kept as U+FFFD on both
/// stores, so that the same item written again is unchanged, and a restart
/// reads back what was served.
#[tokio::test]
async fn a_nul_in_an_items_text_is_kept_as_a_replacement_character() {
    let s = TestServer::start().await;
    create_source(&s, push_source("push")).await;
    let mut it = item("push", "1", "A title");
    it.body = "line\0two".into();
    let first = upsert(&s, vec![it.clone()]).await;
    assert_eq!(first.created_count, 1);
    let again = upsert(&s, vec![it]).await;
    assert_eq!(again.unchanged_count, 1, "{again:?}");
    let s = s.restart().await;
    let stored = get_item(&s, "push/1").await.unwrap();
    assert_eq!(stored.body, "line\u{FFFD}two");
    s.stop().await;
}
