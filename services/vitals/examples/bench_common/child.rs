//! `vitals serve` in its own process (as in production), its memory, and the GetScore
//! load of 64 clients, shared by `getscore_bench` and `scale_bench`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vitals_proto::scoring::v1 as spb;
use vitals_proto::scoring::v1::scoring_service_client::ScoringServiceClient;

use super::{Error, Rng, connect, serving};

/// `vitals serve` in its own process (auth off), as it runs in production.
pub struct ChildServer {
    pub bin: PathBuf,
    pub child: tokio::process::Child,
    pub addr: SocketAddr,
}

/// How to start a [`ChildServer`].
#[derive(Clone, Debug, Default)]
pub struct ChildOptions {
    /// `--score-cache-entries` (default: the binary's).
    pub cache_entries: Option<u64>,
    /// The server runtime's worker threads, through `TOKIO_WORKER_THREADS` (default:
    /// tokio's, one per core).
    pub threads: Option<usize>,
    /// More environment variables (settings of `vitals serve`).
    pub env: Vec<(String, String)>,
    /// Where its log (stderr) goes; discarded when unset.
    pub log: Option<PathBuf>,
}

impl ChildServer {
    /// Starts `bin serve` on a free loopback port over `database_url`; returns once its
    /// health check says SERVING (within `start_timeout`: migrations run first).
    pub async fn start(
        bin: &Path,
        database_url: &str,
        options: &ChildOptions,
        start_timeout: Duration,
    ) -> Result<Self, Error> {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let mut cmd = tokio::process::Command::new(bin);
        cmd.arg("serve")
            .env("VITALS_LISTEN", addr.to_string())
            .env("DATABASE_URL", database_url)
            .env("VITALS_AUTH", "off")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true);
        match &options.log {
            Some(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| format!("cannot open the server log {}: {e}", path.display()))?;
                cmd.stderr(Stdio::from(file));
            }
            None => {
                cmd.stderr(Stdio::null());
            }
        }
        // The server's runtime: tokio's default (one worker per core), or `threads`
        // through the variable tokio reads, never this process's own setting.
        cmd.env_remove("TOKIO_WORKER_THREADS");
        if let Some(n) = options.threads {
            cmd.env("TOKIO_WORKER_THREADS", n.max(1).to_string());
        }
        if let Some(n) = options.cache_entries {
            cmd.arg("--score-cache-entries").arg(n.to_string());
        }
        for (k, v) in &options.env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let deadline = Instant::now() + start_timeout;
        loop {
            if let Some(status) = child.try_wait()? {
                return Err(
                    format!("{} serve exited while starting: {status}", bin.display()).into(),
                );
            }
            if serving(addr).await {
                return Ok(Self {
                    bin: bin.to_path_buf(),
                    child,
                    addr,
                });
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} serve did not start within {} s",
                    bin.display(),
                    start_timeout.as_secs()
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Its process id (0 once it has exited).
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// Kills the process (SIGKILL: nothing of the bench is left to drain) and waits for it.
    pub async fn stop(mut self) -> Result<(), Error> {
        self.child.kill().await?;
        Ok(())
    }
}

/// Resident memory of a process from `/proc/<pid>/status`: (VmRSS, VmHWM, the peak
/// since the start or the last [`reset_peak`]) in bytes.
pub fn memory(pid: &str) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Resets the peak resident memory (VmHWM) of a process to its current RSS (Linux:
/// `5` written to `/proc/<pid>/clear_refs`), so that the next [`memory`] gives the peak
/// of what ran in between. Returns false when the kernel refused.
pub fn reset_peak(pid: &str) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// Bytes as GiB.
pub fn gib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1u32 << 30)
}

/// `clients` clients, one HTTP/2 connection each to `addr`, calling GetScore (full view,
/// the profile scorecard) on pseudo-random `accounts` until `end`; the latencies (µs) of
/// the calls started after `record_from`, and the errors among those.
pub async fn get_score_load(
    addr: SocketAddr,
    accounts: &Arc<Vec<String>>,
    clients: u32,
    (record_from, end): (Instant, Instant),
) -> Result<(Vec<u32>, u64), Error> {
    let mut tasks = Vec::new();
    for c in 0..clients {
        let mut client = ScoringServiceClient::new(connect(addr).await?);
        let accounts = accounts.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng::new(1000 + u64::from(c));
            let mut lat: Vec<u32> = Vec::with_capacity(100_000);
            let mut errors = 0u64;
            loop {
                if Instant::now() >= end {
                    break;
                }
                let id = accounts[rng.below(accounts.len() as u64) as usize].clone();
                let t = Instant::now();
                let r = client
                    .get_score(spb::GetScoreRequest {
                        account_id: id,
                        scorecard: String::new(),
                        as_of: None,
                    })
                    .await;
                let us = t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                if t >= record_from {
                    match r {
                        Ok(_) => lat.push(us),
                        Err(_) => errors += 1,
                    }
                }
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (lat, e) = t.await?;
        all.extend(lat);
        errors += e;
    }
    Ok((all, errors))
}
