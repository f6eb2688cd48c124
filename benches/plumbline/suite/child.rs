//! Start-up and memory, measured on a child `plumbline serve` process: the
//! real binary with a fresh heap, so that its VmHWM is the server's alone.
//! Each figure's baseline is the same child on an empty database.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use super::{BenchError, Figure, Options, Result, Target, median, ms};
use plumbline::proto as pb;
use plumbline::proto::scoring_service_client::ScoringServiceClient;

/// Longest a child may take to answer SERVING.
const START_TIMEOUT: Duration = Duration::from_secs(600);

/// Kills the child when dropped, so no server outlives the benchmark.
pub(super) struct Server {
    pub(super) child: Child,
    pub(super) url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(l.local_addr()?.port())
}

/// Spawns `plumbline serve` on `db` and waits until health answers
/// SERVING; returns it with the time from spawn.
pub(super) async fn start(exe: &Path, db: &Path) -> Result<(Server, Duration)> {
    start_with(exe, db, &[]).await
}

/// [`start`] with more settings in the environment (after, so overriding,
/// the defaults). A `postgres://` database is given as an operator would,
/// in a named variable (`[store] url_env`), not on the command line.
pub(super) async fn start_with(
    exe: &Path,
    db: &Path,
    env: &[(&str, &str)],
) -> Result<(Server, Duration)> {
    let port = free_port()?;
    let listen = format!("127.0.0.1:{port}");
    let mut command = Command::new(exe);
    command.arg("serve").arg("--listen").arg(&listen);
    if plumbline::config::is_postgres_url(db) {
        command
            .env("PLUMBLINE_DATABASE_URL", db)
            .env("PLUMBLINE_STORE__URL_ENV", "PLUMBLINE_DATABASE_URL");
    } else {
        command.arg("--db").arg(db);
    }
    let t = Instant::now();
    let child = command
        .env("PLUMBLINE_SYNC__INTERVAL_SECS", "0")
        .env("PLUMBLINE_VALIDATION__INTERVAL_SECS", "0")
        .env("PLUMBLINE_WEB__LISTEN", "127.0.0.1:0")
        .env("PLUMBLINE_LOG", "warn")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let mut server = Server {
        child,
        url: format!("http://{listen}"),
    };
    loop {
        if let Some(status) = server.child.try_wait()? {
            return Err(BenchError::Check(format!(
                "`plumbline serve` exited with {status} before serving"
            )));
        }
        if serving(&server.url).await {
            return Ok((server, t.elapsed()));
        }
        if t.elapsed() > START_TIMEOUT {
            return Err(BenchError::Check(format!(
                "`plumbline serve` did not answer SERVING within {START_TIMEOUT:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn serving(url: &str) -> bool {
    let Ok(endpoint) = Channel::from_shared(url.to_string()) else {
        return false;
    };
    let Ok(ch) = endpoint.connect().await else {
        return false;
    };
    HealthClient::new(ch)
        .check(HealthCheckRequest::default())
        .await
        .is_ok_and(|r| r.into_inner().status == ServingStatus::Serving as i32)
}

/// The child's peak resident set (VmHWM), in bytes.
pub(super) fn peak_rss(pid: u32) -> Result<u64> {
    proc_status_kb(pid, "VmHWM:")
}

/// The child's resident set now (VmRSS), in bytes.
pub(super) fn rss(pid: u32) -> Result<u64> {
    proc_status_kb(pid, "VmRSS:")
}

fn proc_status_kb(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| BenchError::Check(format!("no {field} in /proc/PID/status")))
}

/// Serves some rankings, so the peak includes answering calls, then reads
/// the peak RSS.
async fn serve_and_measure(server: &Server) -> Result<u64> {
    let ch = Channel::from_shared(server.url.clone())
        .map_err(|e| BenchError::Check(e.to_string()))?
        .connect()
        .await?;
    let mut scoring = ScoringServiceClient::new(ch);
    for _ in 0..100 {
        scoring
            .rank_items(pb::RankItemsRequest {
                page_size: 50,
                view: pb::ScoreView::Full as i32,
                ..Default::default()
            })
            .await?;
    }
    peak_rss(server.child.id())
}

/// Figures 4 and 7.
pub async fn startup_and_rss(opts: &Options, dir: &Path, db: &Path) -> Result<(Figure, Figure)> {
    let n = opts.items;
    let empty = dir.join("empty.sqlite");
    let reps = if n > 200_000 { 1 } else { 3 };
    let (mut base_t, mut full_t) = (Vec::new(), Vec::new());
    let (mut base_rss, mut full_rss) = (0, 0);
    for _ in 0..reps {
        let (s, took) = start(&opts.exe, &empty).await?;
        base_t.push(took);
        base_rss = serve_and_measure(&s).await?;
        drop(s);
        let (s, took) = start(&opts.exe, db).await?;
        full_t.push(took);
        full_rss = serve_and_measure(&s).await?;
        drop(s);
    }
    let mb = |b: u64| b as f64 / 1e6;
    Ok((
        Figure::new(
            "startup_to_serving",
            ms(median(full_t)),
            "ms",
            ms(median(base_t)),
            "the same on an empty database",
            Target::Below(500.0),
            n,
        ),
        Figure::new(
            "peak_rss",
            mb(full_rss),
            "MB",
            mb(base_rss),
            "the same on an empty database",
            Target::AtMost(150.0),
            n,
        ),
    ))
}
