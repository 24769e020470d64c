//! Durable replicas as real processes on 127.0.0.1: each with its own
//! `DATA_DIR`, killed with SIGKILL (one or all at the same instant),
//! restarted on the same address and directory, or started to see it
//! refuse to start. Every wait polls with a deadline; every child is
//! killed when the cluster is dropped, and if the test is failing then,
//! the directory with the logs and data is kept and the log tails printed.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::client;
use crate::common::{free_ports, DEADLINE, POLL, SHORT_DEADLINE};

/// Where the replicas of a cluster keep their state.
pub enum Data {
    /// No `DATA_DIR`: memory only.
    Memory,
    /// `DATA_DIR` = `<the cluster's temporary directory>/data-<i>`.
    Durable,
    /// `DATA_DIR` = `<root>/data-<i>` (a file system the test made).
    Under(PathBuf),
}

/// One replica: its address, directory and processes.
struct Node {
    addr: String,
    data_dir: Option<PathBuf>,
    child: Option<Child>,
    /// The stderr (the log) of each process started here, oldest first.
    logs: Vec<PathBuf>,
}

/// Why a process did not come up.
enum SpawnError {
    /// Its port was taken (worth trying again).
    PortTaken,
    /// It exited: its status and log.
    Exited(ExitStatus, String),
    Other(String),
}

impl std::fmt::Display for SpawnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpawnError::PortTaken => write!(f, "its port was taken"),
            SpawnError::Exited(status, log) => {
                write!(f, "process exited with {status}; log:\n{log}")
            }
            SpawnError::Other(e) => write!(f, "{e}"),
        }
    }
}

/// A set of replica processes forming one store.
pub struct Cluster {
    dir: Option<tempfile::TempDir>,
    view: String,
    nodes: Vec<Node>,
    /// Settings every process of the cluster gets.
    env: Vec<(String, String)>,
}

impl Cluster {
    /// Starts `n` replicas whose `VIEW` lists all of them; waits until
    /// each is ready and every view lists all of them.
    pub fn start(n: usize, data: Data) -> Cluster {
        Cluster::start_with(n, data, &[])
    }

    /// Starts `n` replicas with `env` added to their settings.
    pub fn start_with(n: usize, data: Data, env: &[(&str, &str)]) -> Cluster {
        let mut cluster = Cluster::new(n, data);
        cluster.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for attempt in 1..=5 {
            for i in 0..n {
                cluster.spawn(i, &[], &[]);
            }
            let mut port_taken = false;
            for i in 0..n {
                match cluster.await_ready(i) {
                    Ok(()) => {}
                    Err(SpawnError::PortTaken) => port_taken = true,
                    Err(e) => panic!("replica {i} did not start: {e}"),
                }
            }
            if !port_taken {
                cluster.wait_views();
                return cluster;
            }
            assert!(attempt < 5, "could not find free ports for {n} replicas");
            eprintln!("a port was taken; starting the cluster again on other ports");
            cluster.kill_all();
            // The directories hold state recorded for the old addresses.
            for node in &cluster.nodes {
                if let Some(dir) = &node.data_dir {
                    let _ = std::fs::remove_dir_all(dir);
                }
            }
            cluster.assign_addresses();
        }
        unreachable!("the loop returns or panics")
    }

    /// A cluster of `n` replicas that are not started yet.
    pub fn new(n: usize, data: Data) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("causalkv-durable-")
            .tempdir()
            .expect("cannot create a temporary directory");
        let nodes = (0..n)
            .map(|i| Node {
                addr: String::new(),
                data_dir: match &data {
                    Data::Memory => None,
                    Data::Durable => Some(dir.path().join(format!("data-{i}"))),
                    Data::Under(root) => Some(root.join(format!("data-{i}"))),
                },
                child: None,
                logs: Vec::new(),
            })
            .collect();
        let mut cluster = Cluster {
            dir: Some(dir),
            view: String::new(),
            nodes,
            env: Vec::new(),
        };
        cluster.assign_addresses();
        cluster
    }

    fn assign_addresses(&mut self) {
        let ports = free_ports(self.nodes.len());
        for (node, port) in self.nodes.iter_mut().zip(ports) {
            node.addr = format!("127.0.0.1:{port}");
        }
        let mut ports: Vec<u16> = self
            .nodes
            .iter()
            .map(|n| n.addr.rsplit(':').next().unwrap().parse().unwrap())
            .collect();
        // SPEC: the view lists members by IP, then port (all are 127.0.0.1).
        ports.sort_unstable();
        self.view = ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// `127.0.0.1:<port>` of replica `i`.
    pub fn addr(&self, i: usize) -> &str {
        &self.nodes[i].addr
    }

    /// Every replica's address.
    pub fn addrs(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.addr.clone()).collect()
    }

    /// The `DATA_DIR` of replica `i`.
    pub fn data_dir(&self, i: usize) -> &Path {
        self.nodes[i]
            .data_dir
            .as_deref()
            .unwrap_or_else(|| panic!("replica {i} has no DATA_DIR"))
    }

    /// The log (stderr) of the current or last process of replica `i`.
    pub fn log_text(&self, i: usize) -> String {
        let log = self.nodes[i].logs.last().expect("replica was started");
        std::fs::read_to_string(log).unwrap_or_default()
    }

    /// Starts a process for replica `i`, with `env` on top of the usual
    /// settings and `args` on its command line.
    fn spawn(&mut self, i: usize, env: &[(&str, &str)], args: &[&str]) {
        let dir = self.dir.as_ref().expect("directory").path().to_path_buf();
        let view = self.view.clone();
        let common_env = self.env.clone();
        let node = &mut self.nodes[i];
        assert!(node.child.is_none(), "replica {i} is still running");
        let run = node.logs.len();
        let log = dir.join(format!("replica-{i}-run{run}.stderr"));
        let out = dir.join(format!("replica-{i}-run{run}.stdout"));
        let mut command = Command::new(env!("CARGO_BIN_EXE_causalkv"));
        command
            .env_clear()
            .env("SOCKET_ADDRESS", &node.addr)
            .env("VIEW", &view)
            .env("RUST_LOG", "info,causalkv=debug")
            .env("RUST_BACKTRACE", "1")
            .env("HEARTBEAT_INTERVAL_MS", "150")
            .env("FAILURE_TIMEOUT_MS", "1500")
            .env("WORKERS", "2")
            .args(args)
            .stdin(Stdio::null())
            .stdout(File::create(&out).expect("create stdout file"))
            .stderr(File::create(&log).expect("create log file"));
        if let Some(data_dir) = &node.data_dir {
            command.env("DATA_DIR", data_dir);
        }
        for (k, v) in &common_env {
            command.env(k, v);
        }
        for (k, v) in env {
            command.env(k, v);
        }
        node.child = Some(command.spawn().expect("spawn causalkv"));
        node.logs.push(log);
    }

    /// Waits until replica `i` answers `/ready` with 200, noticing if its
    /// process exits first.
    fn await_ready(&mut self, i: usize) -> Result<(), SpawnError> {
        let deadline = Instant::now() + SHORT_DEADLINE;
        let max_polls = (SHORT_DEADLINE.as_millis() / POLL.as_millis()) as usize + 1;
        let mut last = String::new();
        for _ in 0..max_polls {
            let child = self.nodes[i].child.as_mut().expect("spawned");
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.nodes[i].child = None;
                let log = self.log_text(i);
                if log.contains("cannot listen") || log.contains("in use") {
                    return Err(SpawnError::PortTaken);
                }
                return Err(SpawnError::Exited(status, log));
            }
            match client::call("GET", self.addr(i), "/ready", None, client::POLLING) {
                Ok(r) if r.status == 200 && r.body["ready"] == json!(true) => return Ok(()),
                Ok(r) => last = format!("{} {}", r.status, r.text),
                Err(e) => last = e,
            }
            if Instant::now() > deadline {
                break;
            }
            std::thread::sleep(POLL);
        }
        Err(SpawnError::Other(format!(
            "not ready after {SHORT_DEADLINE:?} (last: {last})"
        )))
    }

    /// Waits until every replica prints the whole view.
    pub fn wait_views(&self) {
        let expected = self.view.clone();
        client::poll(DEADLINE, "every replica to print the whole view", || {
            let mut seen = Vec::new();
            for node in &self.nodes {
                let r = client::call(
                    "GET",
                    &node.addr,
                    "/key-value-store-view",
                    None,
                    client::POLLING,
                )?;
                seen.push(r.body["view"].as_str().unwrap_or_default().to_string());
            }
            if seen.iter().all(|v| *v == expected) {
                Ok(())
            } else {
                Err(format!("views {seen:?}, expected {expected}"))
            }
        })
    }

    /// Starts replica `i` again (same address, directory and `VIEW`) with
    /// `env` and `args` added, and waits until it is ready.
    pub fn restart_with(&mut self, i: usize, env: &[(&str, &str)], args: &[&str]) {
        let deadline = Instant::now() + SHORT_DEADLINE;
        for _ in 0..50 {
            self.spawn(i, env, args);
            match self.await_ready(i) {
                Ok(()) => return,
                // The port was grabbed meanwhile (e.g. as the source port
                // of an outgoing connection); it frees up again soon.
                Err(SpawnError::PortTaken) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(SpawnError::PortTaken) => {
                    panic!("replica {i} cannot bind {} again", self.addr(i))
                }
                Err(e) => panic!("replica {i} did not restart: {e}"),
            }
        }
        panic!("replica {i} cannot bind {} again", self.addr(i));
    }

    /// Starts replica `i` again: `Ok` once it is ready, or its exit
    /// status and log if it exits first.
    pub fn try_restart(&mut self, i: usize) -> Result<(), (ExitStatus, String)> {
        for _ in 0..50 {
            self.spawn(i, &[], &[]);
            match self.await_ready(i) {
                Ok(()) => return Ok(()),
                Err(SpawnError::Exited(status, log)) => return Err((status, log)),
                Err(SpawnError::PortTaken) => std::thread::sleep(Duration::from_millis(200)),
                Err(e) => panic!("replica {i} did not restart: {e}"),
            }
        }
        panic!("replica {i} cannot bind {} again", self.addr(i));
    }

    /// Starts replica `i` again and waits until it is ready.
    pub fn restart(&mut self, i: usize) {
        self.restart_with(i, &[], &[]);
    }

    /// Starts every replica again at once, then waits until each is ready.
    pub fn restart_all(&mut self) {
        for i in 0..self.len() {
            self.spawn(i, &[], &[]);
        }
        for i in 0..self.len() {
            match self.await_ready(i) {
                Ok(()) => {}
                Err(SpawnError::PortTaken) => self.restart(i),
                Err(e) => panic!("replica {i} did not restart: {e}"),
            }
        }
    }

    /// SIGKILLs replica `i` and reaps it.
    pub fn kill(&mut self, i: usize) {
        let mut child = self.nodes[i]
            .child
            .take()
            .unwrap_or_else(|| panic!("replica {i} is not running"));
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
    }

    /// SIGKILLs every running replica (all signals sent before any is
    /// reaped, so they die at the same instant), then reaps them.
    pub fn kill_all(&mut self) {
        let mut children: Vec<Child> = self
            .nodes
            .iter_mut()
            .filter_map(|n| n.child.take())
            .collect();
        for child in &mut children {
            let _ = child.kill();
        }
        for mut child in children {
            let _ = child.wait();
        }
    }

    /// Starts replica `i` with `env` and `args` added, expecting it to exit
    /// by itself within `timeout`; returns its exit status and stderr.
    pub fn run_to_exit(
        &mut self,
        i: usize,
        env: &[(&str, &str)],
        args: &[&str],
        timeout: Duration,
    ) -> (ExitStatus, String) {
        self.spawn(i, env, args);
        let deadline = Instant::now() + timeout;
        let max_polls = (timeout.as_millis() / 20) as usize + 1;
        for _ in 0..max_polls {
            let child = self.nodes[i].child.as_mut().expect("spawned");
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.nodes[i].child = None;
                return (status, self.log_text(i));
            }
            if Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut child = self.nodes[i].child.take().expect("spawned");
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "replica {i} with {env:?} {args:?} kept running for {timeout:?} instead of exiting; log:\n{}",
            self.log_text(i)
        );
    }

    /// `/health` of replica `i` (must answer 200).
    pub fn health(&self, i: usize) -> Value {
        let r = client::call("GET", self.addr(i), "/health", None, client::REQUEST)
            .unwrap_or_else(|e| panic!("health of replica {i}: {e}"));
        assert_eq!(r.status, 200, "health of replica {i}: {r:?}");
        r.body
    }

    /// The replica id (`addr#incarnation`) replica `i` reports in `/health`.
    pub fn replica_id(&self, i: usize) -> String {
        let health = self.health(i);
        health["replica"]
            .as_str()
            .unwrap_or_else(|| panic!("/health of replica {i} has no replica id: {health}"))
            .to_string()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill_all();
        if std::thread::panicking() {
            if let Some(dir) = self.dir.take() {
                let path = dir.keep();
                eprintln!("\n=== logs and data kept in {} ===", path.display());
                for (i, node) in self.nodes.iter().enumerate() {
                    for log in &node.logs {
                        eprintln!(
                            "--- replica {i} ({}) log {} (last lines) ---\n{}",
                            node.addr,
                            log.display(),
                            tail(log, 60)
                        );
                    }
                }
            }
        }
    }
}

/// The last `n` lines of a file.
fn tail(path: &Path, n: usize) -> String {
    let mut text = String::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.read_to_string(&mut text);
    }
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
