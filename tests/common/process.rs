//! Process control of a test cluster's replicas: kill, restart, pause,
//! add, and waiting for a process to serve.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use awc::http::Method;
use serde_json::json;

use super::cluster::{free_ports, Replica, SpawnError};
use super::{request_with_timeout, Body, TestCluster, POLL, POLL_REQUEST_TIMEOUT, SHORT_DEADLINE};

impl TestCluster {
    /// SIGKILLs replica `i` and reaps it.
    pub fn kill(&mut self, i: usize) {
        let replica = &mut self.replicas[i];
        let mut child = replica
            .child
            .take()
            .unwrap_or_else(|| panic!("replica {i} is not running"));
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        replica.paused = false;
    }

    /// Sends SIGTERM to replica `i` (a graceful stop); see [`Self::wait_exit`].
    pub fn terminate(&self, i: usize) {
        signal(self.pid(i), "TERM");
    }

    /// The exit status of replica `i` if its process has exited (it is
    /// left for [`Self::wait_exit`] to reap), `None` while it runs.
    pub fn exit_status(&mut self, i: usize) -> Option<std::process::ExitStatus> {
        let child = self.replicas[i].child.as_mut().expect("started");
        child.try_wait().expect("try_wait")
    }

    /// Waits (up to `timeout`) for replica `i` to exit by itself (after a
    /// signal the test sent); returns its exit status.
    pub async fn wait_exit(&mut self, i: usize, timeout: Duration) -> std::process::ExitStatus {
        let mut child = self.replicas[i].child.take().expect("running");
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "replica {i} did not exit within {timeout:?} of SIGTERM"
            );
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts a fresh process for replica `i` (killed before), at the same
    /// address and with the same `VIEW`, and waits until it is synced.
    pub async fn restart(&mut self, i: usize) {
        assert!(
            self.replicas[i].child.is_none(),
            "replica {i} is still running"
        );
        let deadline = Instant::now() + SHORT_DEADLINE;
        loop {
            self.spawn_process(i);
            match self.await_ready(i).await {
                Ok(()) => return,
                // The port was grabbed meanwhile (e.g. as the source port of
                // an outgoing connection); it frees up again soon.
                Err(SpawnError::PortTaken) if Instant::now() < deadline => {
                    self.replicas[i].child = None;
                    actix_rt::time::sleep(Duration::from_millis(200)).await;
                }
                Err(SpawnError::PortTaken) => {
                    panic!("replica {i} cannot bind {} again", self.addr(i))
                }
                Err(SpawnError::Other(e)) => panic!("replica {i} did not restart: {e}"),
            }
        }
    }

    /// Stops replica `i` with SIGSTOP.
    pub fn pause(&mut self, i: usize) {
        signal(self.pid(i), "STOP");
        self.replicas[i].paused = true;
    }

    /// Resumes replica `i` with SIGCONT.
    pub fn resume(&mut self, i: usize) {
        signal(self.pid(i), "CONT");
        self.replicas[i].paused = false;
    }

    /// Starts a new replica whose `VIEW` lists every replica of the cluster
    /// (killed ones included) plus itself, as when a container is added;
    /// waits until it is synced and returns its index.
    pub async fn add_replica(&mut self) -> usize {
        self.add_replica_with(true).await
    }

    /// Like [`Self::add_replica`], for a replica started without the
    /// environment variable `variable` the others have (a node started
    /// without `SHARD_COUNT`, say).
    pub async fn add_replica_without(&mut self, variable: &str) -> usize {
        let options = self.options.clone();
        self.options.env.retain(|(k, _)| k != variable);
        // A node joining a sharded store keeps its state in memory, as
        // every sharded node does.
        self.options.in_memory |= variable == "SHARD_COUNT";
        let i = self.add_replica_with(true).await;
        self.options = options;
        i
    }

    /// Starts a new replica whose `VIEW` names only itself (to be added to
    /// the others through the view API); returns its index once it serves.
    pub async fn add_lone_replica(&mut self) -> usize {
        self.add_replica_with(false).await
    }

    async fn add_replica_with(&mut self, knows_others: bool) -> usize {
        for _ in 0..5 {
            let port = free_ports(1)[0];
            let addr = format!("127.0.0.1:{port}");
            let mut view: Vec<String> = if knows_others {
                self.replicas.iter().map(|r| r.addr.clone()).collect()
            } else {
                Vec::new()
            };
            view.push(addr.clone());
            self.replicas.push(Replica {
                addr,
                view: view.join(","),
                child: None,
                paused: false,
                logs: Vec::new(),
            });
            let i = self.replicas.len() - 1;
            self.spawn_process(i);
            match self.await_ready(i).await {
                Ok(()) => return i,
                Err(SpawnError::PortTaken) => {
                    self.replicas.pop();
                }
                Err(SpawnError::Other(e)) => panic!("new replica {i} did not start: {e}"),
            }
        }
        panic!("could not find a free port for a new replica");
    }

    pub(super) fn spawn_process(&mut self, i: usize) {
        let dir = self.log_dir().to_path_buf();
        let options = self.options.clone();
        let replica = &mut self.replicas[i];
        let log = dir.join(format!(
            "replica-{i}-{}-run{}.log",
            replica.addr.replace([':', '.'], "_"),
            replica.logs.len()
        ));
        let out = File::create(&log).expect("create log file");
        let err = out.try_clone().expect("clone log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_causalkv"));
        command
            .env_clear()
            .env("SOCKET_ADDRESS", &replica.addr)
            .env("VIEW", &replica.view)
            .env("RUST_LOG", "info,causalkv=debug")
            .env("RUST_BACKTRACE", "1")
            .env(
                "HEARTBEAT_INTERVAL_MS",
                options.heartbeat_interval_ms.to_string(),
            )
            .env("FAILURE_TIMEOUT_MS", options.failure_timeout_ms.to_string())
            .env("WORKERS", options.workers.to_string())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        if let Some(ms) = options.causal_wait_ms {
            command.env("CAUSAL_WAIT_MS", ms.to_string());
        }
        if let Some(bytes) = options.max_body_bytes {
            command.env("MAX_BODY_BYTES", bytes.to_string());
        }
        if options.listen_on_socket_address {
            command.env("LISTEN_ADDRESS", &replica.addr);
        }
        if let Some(token) = &options.token {
            command.env("CLUSTER_TOKEN", token);
        }
        for (k, v) in &options.env {
            command.env(k, v);
        }
        if let Some(data) = durable_dir(&dir, i, &options) {
            command.env("DATA_DIR", data);
        }
        let child = command.spawn().expect("spawn causalkv");
        replica.logs.push(log);
        replica.child = Some(child);
        replica.paused = false;
    }

    pub(super) fn stop_process(&mut self, i: usize) {
        if let Some(mut child) = self.replicas[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits until replica `i` answers `/health` with `synced: true`,
    /// noticing if its process exits first.
    pub(super) async fn await_ready(&mut self, i: usize) -> Result<(), SpawnError> {
        self.await_health(i, true).await
    }

    /// Waits until replica `i` answers `/health` with a 200 (whatever it
    /// says), noticing if its process exits first.
    pub(super) async fn await_answer(&mut self, i: usize) -> Result<(), SpawnError> {
        self.await_health(i, false).await
    }

    /// Waits until replica `i` answers `/health` with a 200, and with
    /// `synced: true` if `synced`, noticing if its process exits first.
    pub(super) async fn await_health(&mut self, i: usize, synced: bool) -> Result<(), SpawnError> {
        let deadline = Instant::now() + SHORT_DEADLINE;
        let addr = self.addr(i).to_string();
        loop {
            let child = self.replicas[i].child.as_mut().expect("spawned");
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.replicas[i].child = None;
                let log = std::fs::read_to_string(self.log(i)).unwrap_or_default();
                if log.contains("cannot listen") || log.contains("in use") {
                    return Err(SpawnError::PortTaken);
                }
                return Err(SpawnError::Other(format!(
                    "process exited with {status}; log {}:\n{log}",
                    self.log(i).display()
                )));
            }
            let last = match request_with_timeout(
                &addr,
                Method::GET,
                "/health",
                &[],
                Body::None,
                POLL_REQUEST_TIMEOUT,
            )
            .await
            {
                Ok(r) if r.status == 200 && (!synced || r.body["synced"] == json!(true)) => {
                    return Ok(())
                }
                Ok(r) => format!("{} {}", r.status, r.text),
                Err(e) => e,
            };
            if Instant::now() > deadline {
                return Err(SpawnError::Other(format!(
                    "not ready after {SHORT_DEADLINE:?} (last: {last}); log {}",
                    self.log(i).display()
                )));
            }
            actix_rt::time::sleep(POLL).await;
        }
    }
}

/// The last `n` lines of a file.
pub(super) fn tail(path: &Path, n: usize) -> String {
    let mut text = String::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.read_to_string(&mut text);
    }
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Sends `kill -<sig> <pid>`.
fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{sig} {pid} failed");
}

/// Whether every replica of an unsharded test cluster keeps its state on
/// disk: `CAUSALKV_TEST_DATA_DIR=1` runs a suite against durable replicas
/// (each in a `DATA_DIR` of its own under the cluster's log directory,
/// kept across its restarts). Sharded replicas keep their state in memory.
pub fn durable_replicas() -> bool {
    std::env::var("CAUSALKV_TEST_DATA_DIR").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The `DATA_DIR` of replica `i`, when [`durable_replicas`] says so and the
/// test asks for neither memory only, its own `DATA_DIR` nor `SHARD_COUNT`.
fn durable_dir(logs: &Path, i: usize, options: &super::Options) -> Option<std::path::PathBuf> {
    let set = |name: &str| options.env.iter().any(|(k, _)| k == name);
    let durable = durable_replicas() && !options.in_memory;
    (durable && !set("DATA_DIR") && !set("SHARD_COUNT")).then(|| logs.join(format!("data-{i}")))
}
