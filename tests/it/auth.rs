//! Who may call: with `[auth] enabled`, every call but health needs an API
//! token whose role covers the method; without it, nothing changes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use plumbline::auth::{ReflectionAccess, Role, tokens};
use plumbline::proto as pb;
use plumbline::proto::source_service_client::SourceServiceClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::common::{TestServer, assert_code, create_source, github_source, item, rank, upsert};

/// Sends `authorization: Bearer <token>` on every call.
#[derive(Clone)]
struct Bearer(MetadataValue<Ascii>);

impl Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

type Authed = InterceptedService<Channel, Bearer>;

fn with_token(s: &TestServer, token: &str) -> Authed {
    let v = format!("Bearer {token}").parse().expect("ascii token");
    InterceptedService::new(s.channel.clone(), Bearer(v))
}

/// A server with auth on, and one token of each role made in its database
/// before it started (as `plumbline tokens create --db` does).
struct AuthServer {
    s: TestServer,
    read: String,
    write: String,
    admin: String,
    db: PathBuf,
    // Holds the database's folder for the test's length.
    _dir: tempfile::TempDir,
}

async fn start(reflection: ReflectionAccess) -> AuthServer {
    let dir = tempfile::tempdir().expect("temporary folder");
    let db = crate::common::test_db(dir.path(), "auth.sqlite");
    let store = crate::common::open_store(&db).await;
    let mut made = Vec::new();
    for (name, role) in [("r", Role::Read), ("w", Role::Write), ("a", Role::Admin)] {
        let (_, text) = tokens::create_in(&*store, name, role).await.expect("token");
        made.push(text);
    }
    store.close().await;
    let db2 = db.clone();
    let s = TestServer::start_with_config(move |c| {
        c.db = db2;
        c.auth.enabled = true;
        c.auth.reflection = reflection;
    })
    .await;
    let [read, write, admin] = <[String; 3]>::try_from(made).expect("three tokens");
    AuthServer {
        s,
        read,
        write,
        admin,
        db,
        _dir: dir,
    }
}

/// The source `web` with two items, made with the admin token.
async fn source_with_items(a: &AuthServer) {
    let mut sources = SourceServiceClient::new(with_token(&a.s, &a.admin));
    sources
        .create_source(pb::CreateSourceRequest {
            source: Some(github_source("web")),
        })
        .await
        .expect("admin creates a source");
    let mut backlog =
        pb::backlog_service_client::BacklogServiceClient::new(with_token(&a.s, &a.write));
    backlog
        .upsert_items(pb::UpsertItemsRequest {
            items: vec![item("web", "1", "One"), item("web", "2", "Two")],
            update_mask: None,
        })
        .await
        .expect("write token upserts items");
}

fn rank_req() -> pb::RankItemsRequest {
    pb::RankItemsRequest {
        page_size: 10,
        ..Default::default()
    }
}

async fn rank_with(s: &TestServer, token: &str) -> Result<pb::RankItemsResponse, Status> {
    pb::scoring_service_client::ScoringServiceClient::new(with_token(s, token))
        .rank_items(rank_req())
        .await
        .map(|r| r.into_inner())
}

#[tokio::test]
async fn without_a_valid_token_calls_are_unauthenticated_and_health_stays_open() {
    let a = start(ReflectionAccess::Read).await;
    let mut scoring = a.s.scoring();
    let st = assert_code(scoring.rank_items(rank_req()).await, Code::Unauthenticated);
    assert!(
        st.message().contains("authorization: Bearer") && st.message().contains("PLUMBLINE_TOKEN"),
        "says how to send a token: {}",
        st.message()
    );
    let forged = format!("plb_{}_{}", "0".repeat(12), "0".repeat(64));
    for bad in ["nonsense", forged.as_str(), &a.read[..a.read.len() - 1]] {
        let st = assert_code(rank_with(&a.s, bad).await, Code::Unauthenticated);
        assert!(!st.message().contains(bad), "never echoes the token");
    }
    // The right id with a wrong secret.
    let wrong_secret = format!("{}{}", &a.read[..a.read.len() - 64], "a".repeat(64));
    assert_code(rank_with(&a.s, &wrong_secret).await, Code::Unauthenticated);

    let health = HealthClient::new(a.s.channel.clone())
        .check(HealthCheckRequest::default())
        .await
        .expect("health needs no token")
        .into_inner();
    assert_eq!(
        health.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    a.s.stop().await;
}

/// The reproduction of issue 15: an unrelated process could delete a source
/// with all its items.
#[tokio::test]
async fn a_read_token_ranks_but_cannot_delete_a_source_or_its_items() {
    let a = start(ReflectionAccess::Read).await;
    source_with_items(&a).await;
    assert_eq!(
        rank_with(&a.s, &a.read)
            .await
            .expect("read ranks")
            .items
            .len(),
        2
    );

    for token in [None, Some(&a.read), Some(&a.write)] {
        let req = pb::DeleteSourceRequest {
            id: "web".into(),
            force: true,
        };
        let r = match token {
            None => a.s.sources().delete_source(req).await.map(|_| ()),
            Some(t) => SourceServiceClient::new(with_token(&a.s, t))
                .delete_source(req)
                .await
                .map(|_| ()),
        };
        let want = if token.is_none() {
            Code::Unauthenticated
        } else {
            Code::PermissionDenied
        };
        let st = assert_code(r, want);
        if token.is_some() {
            assert!(
                st.message().contains("DeleteSource") && st.message().contains("admin role"),
                "names the method and the role needed: {}",
                st.message()
            );
        }
    }
    assert_eq!(
        rank_with(&a.s, &a.read).await.expect("read").items.len(),
        2,
        "no item was deleted"
    );
    a.s.stop().await;
}

#[tokio::test]
async fn a_read_token_compares_rankings_but_cannot_take_a_snapshot() {
    use pb::history_service_client::HistoryServiceClient;
    let a = start(ReflectionAccess::Read).await;
    source_with_items(&a).await;
    let take = |token: &str| {
        let mut c = HistoryServiceClient::new(with_token(&a.s, token));
        async move {
            c.take_ranking_snapshot(pb::TakeRankingSnapshotRequest::default())
                .await
                .map(|r| r.into_inner())
        }
    };
    let st = assert_code(take(&a.read).await, Code::PermissionDenied);
    assert!(
        st.message().contains("TakeRankingSnapshot") && st.message().contains("write role"),
        "{}",
        st.message()
    );
    take(&a.write)
        .await
        .expect("a write token takes a snapshot");
    let mut read = HistoryServiceClient::new(with_token(&a.s, &a.read));
    let list = read
        .list_ranking_snapshots(pb::ListRankingSnapshotsRequest::default())
        .await
        .expect("a read token lists snapshots")
        .into_inner();
    assert_eq!(list.snapshots.len(), 1, "the read token's call took none");
    read.compare_ranking(pb::CompareRankingRequest {
        since: Some(crate::common::ts(chrono::Utc::now())),
        top_n: 5,
        source_id: String::new(),
    })
    .await
    .expect("a read token compares");
    a.s.stop().await;
}

#[tokio::test]
async fn a_write_token_upserts_items_but_cannot_create_sources_sync_or_write_back() {
    let a = start(ReflectionAccess::Read).await;
    source_with_items(&a).await;
    let st = assert_code(
        SourceServiceClient::new(with_token(&a.s, &a.write))
            .create_source(pb::CreateSourceRequest {
                source: Some(github_source("other")),
            })
            .await,
        Code::PermissionDenied,
    );
    assert!(
        st.message().contains("\"w\"") && st.message().contains("write role"),
        "names the token and its role: {}",
        st.message()
    );
    assert_code(
        pb::sync_service_client::SyncServiceClient::new(with_token(&a.s, &a.write))
            .sync_source(pb::SyncSourceRequest {
                source_id: "web".into(),
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
    );
    let st = assert_code(
        pb::split_service_client::SplitServiceClient::new(with_token(&a.s, &a.write))
            .apply_split(pb::ApplySplitRequest {
                item_key: "web/1".into(),
                plan_kind: pb::SplitPlanKind::ByTask as i32,
                write_back: true,
            })
            .await,
        Code::PermissionDenied,
    );
    assert!(st.message().contains("write_back"), "{}", st.message());
    // A read token cannot write.
    assert_code(
        pb::backlog_service_client::BacklogServiceClient::new(with_token(&a.s, &a.read))
            .upsert_items(pb::UpsertItemsRequest {
                items: vec![item("web", "3", "Three")],
                update_mask: None,
            })
            .await,
        Code::PermissionDenied,
    );
    a.s.stop().await;
}

#[tokio::test]
async fn a_value_model_file_that_touches_a_source_needs_an_admin_token() {
    let a = start(ReflectionAccess::Read).await;
    source_with_items(&a).await;
    let files = |token: &str| {
        pb::model_file_service_client::ModelFileServiceClient::new(with_token(&a.s, token))
    };
    let apply = |document: &str| pb::ApplyValueModelRequest {
        document: document.into(),
        file_name: "product.toml".into(),
        ..Default::default()
    };
    let goal = "[[goals]]\nid = \"G1\"\ntitle = \"Grow\"\nlevel = \"strategic\"\n";
    let with_source = format!(
        "{goal}\n[[sources]]\nid = \"other\"\nkind = \"github\"\nbase_url = \"http://127.0.0.1:9\"\nproject_key = \"a/b\"\n"
    );
    let st = assert_code(
        files(&a.write).apply_value_model(apply(&with_source)).await,
        Code::PermissionDenied,
    );
    assert!(st.message().contains("admin role"), "{}", st.message());
    // Nothing of the file was written, the goal neither.
    let goals =
        pb::value_model_service_client::ValueModelServiceClient::new(with_token(&a.s, &a.read))
            .list_goals(pb::ListGoalsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .goals;
    assert!(goals.is_empty(), "{goals:?}");
    // A read token cannot apply at all; a write token can, without sources.
    assert_code(
        files(&a.read).apply_value_model(apply(goal)).await,
        Code::PermissionDenied,
    );
    let plan = files(&a.write)
        .apply_value_model(apply(goal))
        .await
        .unwrap()
        .into_inner();
    assert!(plan.applied);
    // And an admin can apply the source.
    assert!(
        files(&a.admin)
            .apply_value_model(apply(&with_source))
            .await
            .unwrap()
            .into_inner()
            .applied
    );
    a.s.stop().await;
}

#[tokio::test]
async fn an_admin_manages_tokens_and_a_revoked_token_is_refused_at_once() {
    let a = start(ReflectionAccess::Read).await;
    source_with_items(&a).await;
    let mut admin = pb::token_service_client::TokenServiceClient::new(with_token(&a.s, &a.admin));
    let made = admin
        .create_token(pb::CreateTokenRequest {
            name: "ci".into(),
            role: pb::TokenRole::Read as i32,
        })
        .await
        .expect("admin creates a token")
        .into_inner();
    assert!(made.secret.starts_with("plb_"), "{}", made.secret);
    assert_eq!(
        rank_with(&a.s, &made.secret)
            .await
            .expect("usable at once")
            .items
            .len(),
        2
    );
    assert_code(
        admin
            .create_token(pb::CreateTokenRequest {
                name: "ci".into(),
                role: pb::TokenRole::Admin as i32,
            })
            .await,
        Code::AlreadyExists,
    );
    crate::common::assert_invalid(
        admin
            .create_token(pb::CreateTokenRequest {
                name: "ci\n2".into(),
                role: pb::TokenRole::Read as i32,
            })
            .await,
        &["name"],
    );
    // Only an admin manages tokens.
    assert_code(
        pb::token_service_client::TokenServiceClient::new(with_token(&a.s, &a.write))
            .list_tokens(pb::ListTokensRequest::default())
            .await,
        Code::PermissionDenied,
    );
    let listed = admin
        .list_tokens(pb::ListTokensRequest::default())
        .await
        .expect("list")
        .into_inner();
    let names: Vec<&str> = listed.tokens.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["r", "w", "a", "ci"]);
    assert!(!format!("{listed:?}").contains(&made.secret[made.secret.len() - 64..]));

    let revoked = admin
        .revoke_token(pb::RevokeTokenRequest { token: "ci".into() })
        .await
        .expect("revoke by name")
        .into_inner();
    assert!(revoked.token.expect("token").revoke_time.is_some());
    assert_code(rank_with(&a.s, &made.secret).await, Code::Unauthenticated);
    assert_code(
        admin
            .revoke_token(pb::RevokeTokenRequest { token: "ci".into() })
            .await,
        Code::NotFound,
    );
    // An admin can do what the others cannot.
    SourceServiceClient::new(with_token(&a.s, &a.admin))
        .delete_source(pb::DeleteSourceRequest {
            id: "web".into(),
            force: true,
        })
        .await
        .expect("admin deletes a source");
    a.s.stop().await;
}

/// Runs the binary with `env` set (and no credentials from the test's own
/// environment).
async fn cli(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_plumbline"))
            .args(&args)
            .env_remove("PLUMBLINE_SERVER")
            .env_remove("PLUMBLINE_TOKEN")
            .env_remove("PLUMBLINE_TOKEN_FILE")
            .envs(env)
            .output()
            .expect("the binary runs")
    })
    .await
    .expect("join")
}

/// Polls until `rank` with `token` gets `code`, for at most 20 s (the
/// refresh bound is 2 s; the margin is for a loaded machine).
async fn until_code(s: &TestServer, token: &str, code: Code) {
    for _ in 0..100 {
        match rank_with(s, token).await {
            Err(st) if st.code() == code => return,
            Ok(_) if code == Code::Ok => return,
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    panic!("the server never answered {code:?}");
}

#[tokio::test]
async fn tokens_made_or_revoked_offline_reach_a_running_server() {
    let a = start(ReflectionAccess::Read).await;
    let db = a.db.to_str().expect("utf-8 path");
    let out = cli(
        &[
            "tokens", "create", "--name", "late", "--role", "read", "--db", db,
        ],
        &[],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let late = String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string();
    // An unknown id makes the server look in the store (at most once a
    // second), and the periodic refresh finds it anyway.
    until_code(&a.s, &late, Code::Ok).await;

    let out = cli(&["tokens", "revoke", "late", "--db", db], &[]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    until_code(&a.s, &late, Code::Unauthenticated).await;

    // A mistyped path is refused rather than made into a new database.
    let missing = a._dir.path().join("typo.sqlite");
    let out = cli(
        &[
            "tokens",
            "revoke",
            "late",
            "--db",
            missing.to_str().expect("utf-8"),
        ],
        &[],
    )
    .await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no database"));
    assert!(!missing.exists());
    a.s.stop().await;
}

#[tokio::test]
async fn the_cli_sends_the_token_from_the_environment_or_a_file() {
    let a = start(ReflectionAccess::Read).await;
    source_with_items(&a).await;
    let url = a.s.server().url();
    let rank_args = ["rank", "--server", url.as_str(), "--json"];

    let out = cli(&rank_args, &[]).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("PLUMBLINE_TOKEN"), "{err}");

    let out = cli(&rank_args, &[("PLUMBLINE_TOKEN", &a.read)]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A refusal names its kind, then plumbline's own reason.
    let out = cli(
        &["sources", "remove", "web", "--force", "--server", &url],
        &[("PLUMBLINE_TOKEN", &a.read)],
    )
    .await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: permission denied: /plumbline.v1.SourceService/DeleteSource needs the admin role"),
        "{err}"
    );

    let file = a._dir.path().join("token");
    std::fs::write(&file, format!("{}\n", a.read)).expect("token file");
    let f = file.to_str().expect("utf-8");
    let out = cli(&["--token-file", f, "rank", "--server", &url], &[]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(&rank_args, &[("PLUMBLINE_TOKEN_FILE", f)]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The tokens commands through the server, with the admin token.
    let admin = [("PLUMBLINE_TOKEN", a.admin.as_str())];
    let out = cli(
        &[
            "tokens", "create", "--server", &url, "--name", "bot", "--role", "write",
        ],
        &admin,
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bot = String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string();
    assert!(bot.starts_with("plb_"), "{bot}");
    let out = cli(&["tokens", "list", "--server", &url, "--json"], &admin).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = String::from_utf8(out.stdout).expect("utf-8");
    assert!(listed.contains("\"bot\""), "{listed}");
    for secret in [&bot, &a.admin, &a.read] {
        assert!(
            !listed.contains(&secret[secret.len() - 64..]),
            "no secret in the list"
        );
    }
    let out = cli(&["tokens", "revoke", "--server", &url, "bot"], &admin).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_code(rank_with(&a.s, &bot).await, Code::Unauthenticated);
    a.s.stop().await;
}

#[tokio::test]
async fn reflection_follows_the_setting() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    async fn list<T>(mut c: ServerReflectionClient<T>) -> Result<(), Status>
    where
        T: tonic::client::GrpcService<tonic::body::Body> + Send,
        T::Error: Into<tonic::codegen::StdError>,
        T::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
        <T::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
    {
        let req = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut stream = c
            .server_reflection_info(tokio_stream::iter(vec![req]))
            .await?
            .into_inner();
        stream.message().await?.expect("a response");
        Ok(())
    }
    let a = start(ReflectionAccess::Read).await;
    assert_code(
        list(ServerReflectionClient::new(a.s.channel.clone())).await,
        Code::Unauthenticated,
    );
    list(ServerReflectionClient::new(with_token(&a.s, &a.read)))
        .await
        .expect("any token may reflect");
    a.s.stop().await;

    let a = start(ReflectionAccess::Open).await;
    list(ServerReflectionClient::new(a.s.channel.clone()))
        .await
        .expect("open to all");
    a.s.stop().await;

    let a = start(ReflectionAccess::Off).await;
    assert_code(
        list(ServerReflectionClient::new(with_token(&a.s, &a.admin))).await,
        Code::Unimplemented,
    );
    a.s.stop().await;
}

#[tokio::test]
async fn with_auth_off_everything_works_as_before() {
    let s = TestServer::start().await;
    assert!(!s.config.auth.enabled, "off by default");
    create_source(&s, github_source("web")).await;
    upsert(&s, vec![item("web", "1", "One")]).await;
    assert_eq!(rank(&s, rank_req()).await.items.len(), 1);
    s.sources()
        .delete_source(pb::DeleteSourceRequest {
            id: "web".into(),
            force: true,
        })
        .await
        .expect("no token needed");
    s.stop().await;
}

/// Whether `needle` occurs in the file's bytes (or in its WAL).
fn file_holds(path: &Path, needle: &str) -> bool {
    if plumbline::config::is_postgres_url(path) {
        return crate::common::stored_rows(path)
            .iter()
            .any(|(_, row)| row.contains(needle));
    }
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    [path.to_path_buf(), PathBuf::from(wal)].iter().any(|p| {
        std::fs::read(p)
            .map(|bytes| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
            .unwrap_or(false)
    })
}

/// The real binary with auth on: the secret is in no log line nor in the
/// database file, and each write's log line names the token.
#[tokio::test]
async fn the_secret_is_in_no_log_nor_the_database_and_writes_log_the_token_name() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().expect("temporary folder");
    let db = crate::common::test_db(dir.path(), "p.sqlite");
    let d = db.to_str().expect("utf-8");
    let out = cli(
        &[
            "tokens", "create", "--name", "deployer", "--role", "admin", "--db", d,
        ],
        &[],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string();
    let secret = token[token.len() - 64..].to_string();

    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_plumbline"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--db",
            d,
            "--log-format",
            "json",
        ])
        .env("PLUMBLINE_SYNC__INTERVAL_SECS", "0")
        .env("PLUMBLINE_WEB__LISTEN", "127.0.0.1:0")
        .env("PLUMBLINE_AUTH__ENABLED", "true")
        // The source below names GITHUB_TOKEN, which the default outbound
        // policy (PLUMBLINE_SECRET_*) does not allow.
        .env("PLUMBLINE_OUTBOUND__TOKEN_ENVS", "[GITHUB_TOKEN]")
        .env("PLUMBLINE_LOG", "debug")
        .env_remove("PLUMBLINE_TOKEN")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("server starts");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let mut log = Vec::new();
    let addr = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("server log");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        log.push(line);
        if v["fields"]["message"] == "plumbline serving" {
            break v["fields"]["addr"].as_str().expect("addr").to_string();
        }
    };
    let url = format!("http://{addr}");
    let channel = Channel::from_shared(url.clone())
        .expect("url")
        .connect()
        .await
        .expect("connects");
    let v = format!("Bearer {token}").parse().expect("ascii");
    let mut sources = SourceServiceClient::new(InterceptedService::new(channel, Bearer(v)));
    sources
        .create_source(pb::CreateSourceRequest {
            source: Some(github_source("web")),
        })
        .await
        .expect("the admin token creates a source");
    let out = cli(
        &["tokens", "list", "--server", &url],
        &[("PLUMBLINE_TOKEN", &token)],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&secret));

    // The write's log line, then stop the server to have every line.
    let _ = child.kill();
    let _ = child.wait();
    log.extend(rx.iter());
    let log = log.join("\n");
    assert!(!log.contains(&secret), "the secret is in the log");
    assert!(
        log.lines()
            .any(|l| l.contains("deployer") && l.contains("CreateSource")),
        "the write's log line names the token and the method: {log}"
    );
    assert!(!file_holds(&db, &secret), "the secret is in the database");
    assert!(
        file_holds(&db, "deployer"),
        "the check can see the file's text"
    );
}

/// An open WatchRanking ends when the token it was opened with is revoked:
/// at once when revoked through this server, and within the refresh period
/// when revoked offline (another process, the same database). A watch
/// opened with a token still live keeps running.
#[tokio::test]
async fn a_watch_ends_when_its_token_is_revoked() {
    let a = start(ReflectionAccess::Read).await;
    source_with_items(&a).await;
    let mut admin = pb::token_service_client::TokenServiceClient::new(with_token(&a.s, &a.admin));
    let mut made = Vec::new();
    for name in ["watcher", "offline", "kept"] {
        let t = admin
            .create_token(pb::CreateTokenRequest {
                name: name.into(),
                role: pb::TokenRole::Read as i32,
            })
            .await
            .expect("admin creates a token")
            .into_inner();
        made.push(t.secret);
    }
    let watch = |token: &str| {
        let mut c = pb::scoring_service_client::ScoringServiceClient::new(with_token(&a.s, token));
        async move {
            let mut stream = c
                .watch_ranking(pb::WatchRankingRequest {
                    page_size: 5,
                    ..Default::default()
                })
                .await
                .expect("watch opens")
                .into_inner();
            let first = stream.message().await.expect("first update");
            assert!(first.is_some());
            stream
        }
    };
    let mut watched = watch(&made[0]).await;
    let mut offline = watch(&made[1]).await;
    let mut kept = watch(&made[2]).await;

    admin
        .revoke_token(pb::RevokeTokenRequest {
            token: "watcher".into(),
        })
        .await
        .expect("revoke");
    let ended = tokio::time::timeout(Duration::from_secs(5), watched.message())
        .await
        .expect("the watch ends at once");
    let st = ended.expect_err("ended with a status");
    assert_eq!(st.code(), Code::Unauthenticated, "{st:?}");
    assert!(st.message().contains("revoked"), "{}", st.message());

    let db = a.db.to_str().expect("utf-8 path");
    let out = cli(&["tokens", "revoke", "offline", "--db", db], &[]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ended = tokio::time::timeout(Duration::from_secs(20), offline.message())
        .await
        .expect("the watch ends after the next refresh");
    assert_eq!(
        ended.expect_err("ended with a status").code(),
        Code::Unauthenticated
    );

    // The third watch was not touched: it still gets updates.
    pb::backlog_service_client::BacklogServiceClient::new(with_token(&a.s, &a.write))
        .upsert_items(pb::UpsertItemsRequest {
            items: vec![item("web", "3", "Three")],
            update_mask: None,
        })
        .await
        .expect("write token upserts");
    let next = tokio::time::timeout(Duration::from_secs(10), kept.message())
        .await
        .expect("an update");
    assert!(next.expect("no error").is_some());
    a.s.stop().await;
}

/// A metric's source makes the server fetch on its own with secrets the
/// operator allowed: setting one needs admin, over the RPCs and in a value
/// model file, as a tracker source does. A write token still manages
/// metrics without one.
#[tokio::test]
async fn setting_a_metric_source_needs_an_admin_token() {
    let a = start(ReflectionAccess::Read).await;
    let model = |token: &str| {
        pb::value_model_service_client::ValueModelServiceClient::new(with_token(&a.s, token))
    };
    let source = pb::MetricSource {
        poll_interval: None,
        kind: Some(pb::metric_source::Kind::HttpJson(
            pb::HttpJsonMetricSource {
                url: "https://stats.example.com/api/conversion".into(),
                points_pointer: "/points".into(),
                ..Default::default()
            },
        )),
    };
    let with_source = pb::Metric {
        source: Some(source.clone()),
        ..crate::common::metric("conv", 2.0, 3.0)
    };
    let st = assert_code(
        model(&a.write)
            .create_metric(pb::CreateMetricRequest {
                metric: Some(with_source.clone()),
            })
            .await,
        Code::PermissionDenied,
    );
    assert!(st.message().contains("metric's source"), "{}", st.message());
    // Without a source a write token creates it; adding one later is refused.
    model(&a.write)
        .create_metric(pb::CreateMetricRequest {
            metric: Some(crate::common::metric("conv", 2.0, 3.0)),
        })
        .await
        .expect("a write token creates a metric without a source");
    assert_code(
        model(&a.write)
            .update_metric(pb::UpdateMetricRequest {
                metric: Some(pb::Metric {
                    id: "conv".into(),
                    source: Some(source.clone()),
                    ..Default::default()
                }),
                update_mask: crate::common::mask(&["source"]),
            })
            .await,
        Code::PermissionDenied,
    );
    let doc = "[[metrics]]\nid = \"conv2\"\nname = \"C\"\nbaseline = 1\ntarget = 2\n\n[metrics.source]\nkind = \"http_json\"\nurl = \"https://stats.example.com/api/c\"\npoints_pointer = \"/points\"\n";
    let files = |token: &str| {
        pb::model_file_service_client::ModelFileServiceClient::new(with_token(&a.s, token))
    };
    assert_code(
        files(&a.write)
            .apply_value_model(pb::ApplyValueModelRequest {
                document: doc.into(),
                file_name: "product.toml".into(),
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
    );
    // An admin may.
    model(&a.admin)
        .update_metric(pb::UpdateMetricRequest {
            metric: Some(pb::Metric {
                id: "conv".into(),
                source: Some(source),
                ..Default::default()
            }),
            update_mask: crate::common::mask(&["source"]),
        })
        .await
        .expect("an admin sets a metric's source");
    a.s.stop().await;
}
