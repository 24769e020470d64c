//! End-to-end test harness: real `causalkv` processes on 127.0.0.1.
//!
//! A [`TestCluster`] spawns replicas of the binary cargo built for the
//! tests, each on a free port, with its log captured to a file in a
//! temporary directory. Replicas can be killed (SIGKILL), restarted (a new
//! process at the same address), paused and resumed (SIGSTOP/SIGCONT), and
//! new ones added. Every wait polls with a deadline; nothing sleeps to
//! synchronize. Every child is killed when the cluster is dropped; if the
//! test is failing then, the log directory is kept and its path and the
//! tail of every log are printed.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fs::File;
use std::future::Future;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use awc::http::Method;
use serde_json::{json, Value};

/// Generous deadline for anything a loaded 2-core machine must get done
/// (cluster formation, failure detection, convergence).
pub const DEADLINE: Duration = Duration::from_secs(40);

/// Deadline for things that should be quick (a replica starting).
pub const SHORT_DEADLINE: Duration = Duration::from_secs(20);

/// How often waits poll.
pub const POLL: Duration = Duration::from_millis(60);

/// Time allowed for one HTTP request made by the tests (above the
/// replicas' causal wait, so a 503 is seen rather than a client timeout).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Time allowed for one polling request (a paused replica must not stall
/// a wait for long).
pub const POLL_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// How the replicas of a cluster are configured.
#[derive(Clone, Debug)]
pub struct Options {
    /// `CAUSAL_WAIT_MS` (unset: the binary's default).
    pub causal_wait_ms: Option<u64>,
    /// `MAX_BODY_BYTES` (unset: the binary's default).
    pub max_body_bytes: Option<usize>,
    /// `HEARTBEAT_INTERVAL_MS`.
    pub heartbeat_interval_ms: u64,
    /// `FAILURE_TIMEOUT_MS`.
    pub failure_timeout_ms: u64,
    /// `CLUSTER_TOKEN`.
    pub token: Option<String>,
    /// `WORKERS`.
    pub workers: usize,
    /// Whether to set `LISTEN_ADDRESS` to the replica's own address
    /// (instead of the default `0.0.0.0:<port>`).
    pub listen_on_socket_address: bool,
    /// Further environment variables.
    pub env: Vec<(String, String)>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            causal_wait_ms: None,
            max_body_bytes: None,
            heartbeat_interval_ms: 150,
            failure_timeout_ms: 1500,
            token: None,
            workers: 2,
            listen_on_socket_address: false,
            env: Vec::new(),
        }
    }
}

impl Options {
    /// Sets `CAUSAL_WAIT_MS`.
    pub fn causal_wait_ms(mut self, ms: u64) -> Self {
        self.causal_wait_ms = Some(ms);
        self
    }

    /// Sets `MAX_BODY_BYTES`.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = Some(bytes);
        self
    }

    /// Sets `FAILURE_TIMEOUT_MS`.
    pub fn failure_timeout_ms(mut self, ms: u64) -> Self {
        self.failure_timeout_ms = ms;
        self
    }

    /// Sets `CLUSTER_TOKEN`.
    pub fn token(mut self, token: &str) -> Self {
        self.token = Some(token.to_string());
        self
    }

    /// Sets `WORKERS`.
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers;
        self
    }

    /// Sets `LISTEN_ADDRESS` to each replica's `SOCKET_ADDRESS`.
    pub fn listen_on_socket_address(mut self) -> Self {
        self.listen_on_socket_address = true;
        self
    }

    /// Sets a further environment variable (e.g. `SUSPECT_TIMEOUT_MS`).
    pub fn env(mut self, name: &str, value: impl ToString) -> Self {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    /// Starts `n` replicas with these options.
    pub async fn start(self, n: usize) -> TestCluster {
        TestCluster::start_with(n, self).await
    }
}

/// One replica process of a cluster.
struct Replica {
    /// `127.0.0.1:<port>`.
    addr: String,
    /// The `VIEW` it was (last) started with.
    view: String,
    /// The running process, if any.
    child: Option<Child>,
    /// Whether it is stopped with SIGSTOP.
    paused: bool,
    /// The log of each process started at this address, oldest first.
    logs: Vec<PathBuf>,
}

/// Why a replica did not come up.
enum SpawnError {
    /// Its port was taken (the only failure worth retrying).
    PortTaken,
    /// Anything else.
    Other(String),
}

/// A set of replica processes forming one store.
pub struct TestCluster {
    options: Options,
    dir: Option<tempfile::TempDir>,
    replicas: Vec<Replica>,
}

impl TestCluster {
    /// Starts `n` replicas with the default test options.
    pub async fn start(n: usize) -> TestCluster {
        Options::default().start(n).await
    }

    /// Starts `n` replicas whose `VIEW` lists all of them, and waits until
    /// each is synced and every view lists all of them.
    pub async fn start_with(n: usize, options: Options) -> TestCluster {
        assert!(n > 0, "a cluster needs a replica");
        let mut cluster = TestCluster::empty(options);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let addrs: Vec<String> = free_ports(n)
                .into_iter()
                .map(|p| format!("127.0.0.1:{p}"))
                .collect();
            let view = addrs.join(",");
            cluster.replicas = addrs
                .iter()
                .map(|addr| Replica {
                    addr: addr.clone(),
                    view: view.clone(),
                    child: None,
                    paused: false,
                    logs: Vec::new(),
                })
                .collect();
            for i in 0..n {
                cluster.spawn_process(i);
            }
            let mut port_taken = false;
            for i in 0..n {
                match cluster.await_ready(i).await {
                    Ok(()) => {}
                    Err(SpawnError::PortTaken) => port_taken = true,
                    Err(SpawnError::Other(e)) => panic!("replica {i} did not start: {e}"),
                }
            }
            if !port_taken {
                break;
            }
            assert!(attempt < 5, "could not find free ports for {n} replicas");
            eprintln!("a port was taken; starting the cluster again on other ports");
            for i in 0..n {
                cluster.stop_process(i);
            }
        }
        let expected = cluster.expected_view(&(0..n).collect::<Vec<_>>());
        cluster
            .wait_views(&(0..n).collect::<Vec<_>>(), &expected)
            .await;
        cluster
    }

    /// A cluster with no replica yet, and its log directory.
    fn empty(options: Options) -> TestCluster {
        let dir = tempfile::Builder::new()
            .prefix("causalkv-e2e-")
            .tempdir()
            .expect("cannot create a temporary directory");
        TestCluster {
            options,
            dir: Some(dir),
            replicas: Vec::new(),
        }
    }

    /// Starts one replica whose `VIEW` also names `others` (addresses that
    /// may not answer), and returns as soon as it answers HTTP at all,
    /// without waiting for it to hold the state (so that the test sees it
    /// while it is still starting).
    pub async fn start_lone_with_seeds(options: Options, others: &[String]) -> TestCluster {
        let mut cluster = TestCluster::empty(options);
        for _ in 0..5 {
            let addr = format!("127.0.0.1:{}", free_ports(1)[0]);
            let mut view = vec![addr.clone()];
            view.extend(others.iter().cloned());
            cluster.replicas = vec![Replica {
                addr,
                view: view.join(","),
                child: None,
                paused: false,
                logs: Vec::new(),
            }];
            let spawned = Instant::now();
            cluster.spawn_process(0);
            match cluster.await_answer(0).await {
                Ok(()) => {
                    eprintln!(
                        "a lone replica answered {:?} after it was spawned",
                        spawned.elapsed()
                    );
                    return cluster;
                }
                Err(SpawnError::PortTaken) => {}
                Err(SpawnError::Other(e)) => panic!("replica did not start: {e}"),
            }
        }
        panic!("could not find a free port for a lone replica");
    }

    /// The options the replicas were started with.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Number of replicas ever started (killed ones included).
    pub fn len(&self) -> usize {
        self.replicas.len()
    }

    /// `127.0.0.1:<port>` of replica `i`.
    pub fn addr(&self, i: usize) -> &str {
        &self.replicas[i].addr
    }

    /// The directory holding the logs.
    pub fn log_dir(&self) -> &Path {
        self.dir.as_ref().expect("log directory").path()
    }

    /// The log of the current (or last) process of replica `i`.
    pub fn log(&self, i: usize) -> &Path {
        self.replicas[i].logs.last().expect("replica was started")
    }

    /// The process id of replica `i`.
    pub fn pid(&self, i: usize) -> u32 {
        self.replicas[i]
            .child
            .as_ref()
            .unwrap_or_else(|| panic!("replica {i} is not running"))
            .id()
    }

    /// The view string SPEC prints for the replicas `members`: addresses
    /// ordered by IP numerically, then port.
    pub fn expected_view(&self, members: &[usize]) -> String {
        let mut addrs: Vec<std::net::SocketAddr> = members
            .iter()
            .map(|&i| self.addr(i).parse().expect("socket address"))
            .collect();
        addrs.sort_by_key(|a| (a.ip(), a.port()));
        addrs
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A typed client talking to replica `i` only.
    pub fn client(&self, i: usize) -> causalkv::client::Client {
        causalkv::client::Client::with_timeout([self.addr(i).to_string()], REQUEST_TIMEOUT)
    }

    // ----- process control -------------------------------------------------

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

    fn spawn_process(&mut self, i: usize) {
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
        let child = command.spawn().expect("spawn causalkv");
        replica.logs.push(log);
        replica.child = Some(child);
        replica.paused = false;
    }

    fn stop_process(&mut self, i: usize) {
        if let Some(mut child) = self.replicas[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits until replica `i` answers `/health` with `synced: true`,
    /// noticing if its process exits first.
    async fn await_ready(&mut self, i: usize) -> Result<(), SpawnError> {
        self.await_health(i, true).await
    }

    /// Waits until replica `i` answers `/health` with a 200 (whatever it
    /// says), noticing if its process exits first.
    async fn await_answer(&mut self, i: usize) -> Result<(), SpawnError> {
        self.await_health(i, false).await
    }

    /// Waits until replica `i` answers `/health` with a 200, and with
    /// `synced: true` if `synced`, noticing if its process exits first.
    async fn await_health(&mut self, i: usize, synced: bool) -> Result<(), SpawnError> {
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

    // ----- requests ----------------------------------------------------------

    /// Sends a request to replica `i`.
    pub async fn request(
        &self,
        i: usize,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Body,
    ) -> Reply {
        request(self.addr(i), method.clone(), path, headers, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {path} at replica {i}: {e}"))
    }

    /// `PUT /key-value-store/<key>` with `{"value": value, "causal-metadata": ctx}`.
    pub async fn put(&self, i: usize, key: &str, value: Value, ctx: &Value) -> Reply {
        let body = json!({"value": value, "causal-metadata": ctx});
        self.request(i, Method::PUT, &kv_path(key), &[], Body::Json(body))
            .await
    }

    /// `GET /key-value-store/<key>` with `{"causal-metadata": ctx}`.
    pub async fn get(&self, i: usize, key: &str, ctx: &Value) -> Reply {
        let body = json!({"causal-metadata": ctx});
        self.request(i, Method::GET, &kv_path(key), &[], Body::Json(body))
            .await
    }

    /// `DELETE /key-value-store/<key>` with `{"causal-metadata": ctx}`.
    pub async fn delete(&self, i: usize, key: &str, ctx: &Value) -> Reply {
        let body = json!({"causal-metadata": ctx});
        self.request(i, Method::DELETE, &kv_path(key), &[], Body::Json(body))
            .await
    }

    /// The view string replica `i` prints.
    pub async fn view(&self, i: usize) -> String {
        let r = self
            .request(i, Method::GET, "/key-value-store-view", &[], Body::None)
            .await;
        assert_eq!(r.status, 200, "view GET at replica {i}: {r:?}");
        r.body["view"]
            .as_str()
            .unwrap_or_else(|| panic!("view is not a string: {r:?}"))
            .to_string()
    }

    /// The view string replica `i` prints, or why it could not be had
    /// quickly (for polling).
    pub async fn try_view(&self, i: usize) -> Result<String, String> {
        let r = request_with_timeout(
            self.addr(i),
            Method::GET,
            "/key-value-store-view",
            &[],
            Body::None,
            POLL_REQUEST_TIMEOUT,
        )
        .await?;
        match r.body["view"].as_str() {
            Some(v) if r.status == 200 => Ok(v.to_string()),
            _ => Err(format!("{} {}", r.status, r.text)),
        }
    }

    /// A GET without context that gives up quickly (for polling).
    pub async fn try_get(&self, i: usize, key: &str) -> Result<Reply, String> {
        request_with_timeout(
            self.addr(i),
            Method::GET,
            &kv_path(key),
            &[],
            Body::Json(json!({"causal-metadata": ""})),
            POLL_REQUEST_TIMEOUT,
        )
        .await
    }

    /// `/health` of replica `i`.
    pub async fn health(&self, i: usize) -> Value {
        let r = self
            .request(i, Method::GET, "/health", &[], Body::None)
            .await;
        assert_eq!(r.status, 200, "health of replica {i}: {r:?}");
        r.body
    }

    /// `/health` of replica `i`, or why it could not be had quickly (for
    /// polling).
    pub async fn try_health(&self, i: usize) -> Result<Value, String> {
        let r = request_with_timeout(
            self.addr(i),
            Method::GET,
            "/health",
            &[],
            Body::None,
            POLL_REQUEST_TIMEOUT,
        )
        .await?;
        if r.status == 200 && r.body.is_object() {
            Ok(r.body)
        } else {
            Err(format!("health of replica {i}: {} {}", r.status, r.text))
        }
    }

    /// `GET /ready` at replica `i`, giving up quickly (for polling).
    pub async fn try_ready(&self, i: usize) -> Result<Reply, String> {
        request_with_timeout(
            self.addr(i),
            Method::GET,
            "/ready",
            &[],
            Body::None,
            POLL_REQUEST_TIMEOUT,
        )
        .await
    }

    /// The value of the unlabelled metric `name` in `/metrics` of replica `i`.
    pub async fn metric(&self, i: usize, name: &str) -> Result<f64, String> {
        let r = request_with_timeout(
            self.addr(i),
            Method::GET,
            "/metrics",
            &[],
            Body::None,
            POLL_REQUEST_TIMEOUT,
        )
        .await?;
        if r.status != 200 {
            return Err(format!("metrics of replica {i}: {} {}", r.status, r.text));
        }
        r.text
            .lines()
            .find_map(|line| {
                let (metric, value) = line.split_once(' ')?;
                (metric == name).then(|| value.trim().parse::<f64>().ok())?
            })
            .ok_or_else(|| format!("no metric {name} at replica {i}"))
    }

    /// `PUT` (`add`) or `DELETE` (`!add`) of `address` through
    /// `/key-value-store-view` at replica `i`.
    pub async fn change_view(&self, i: usize, add: bool, address: &str) -> Reply {
        let method = if add { Method::PUT } else { Method::DELETE };
        let body = Body::Json(json!({"socket-address": address}));
        self.request(i, method, "/key-value-store-view", &[], body)
            .await
    }

    /// The whole log of the current (or last) process of replica `i`.
    pub fn log_text(&self, i: usize) -> String {
        std::fs::read_to_string(self.log(i)).unwrap_or_default()
    }

    // ----- waits -----------------------------------------------------------

    /// Waits until `check` accepts `/health` of every replica of `at`
    /// (`Err` says why not); `what` names the wait in a failure.
    pub async fn wait_health<F>(&self, at: &[usize], what: &str, timeout: Duration, check: F)
    where
        F: Fn(usize, &Value) -> Result<(), String>,
    {
        let check = &check;
        wait_for(timeout, &format!("{what} at {at:?}"), || async move {
            for &i in at {
                let health = self.try_health(i).await?;
                check(i, &health).map_err(|e| format!("replica {i}: {e}; health {health}"))?;
            }
            Ok(())
        })
        .await
    }

    /// Waits until every replica of `at` answers `/ready` with 200.
    pub async fn wait_ready(&self, at: &[usize]) {
        wait_for(DEADLINE, &format!("/ready 200 at {at:?}"), || async move {
            for &i in at {
                let r = self.try_ready(i).await?;
                if r.status != 200 || r.body["ready"] != json!(true) {
                    return Err(format!("replica {i}: /ready {} {}", r.status, r.text));
                }
            }
            Ok(())
        })
        .await
    }

    /// Waits until every replica of `at` prints `expected` as its view.
    pub async fn wait_views(&self, at: &[usize], expected: &str) {
        self.wait_views_within(at, expected, DEADLINE).await
    }

    /// Waits up to `timeout` until every replica of `at` prints `expected`
    /// as its view.
    pub async fn wait_views_within(&self, at: &[usize], expected: &str, timeout: Duration) {
        wait_for(
            timeout,
            &format!("views at {at:?} to be {expected}"),
            || async move {
                let mut seen = Vec::new();
                for &i in at {
                    seen.push(self.try_view(i).await.unwrap_or_else(|e| format!("<{e}>")));
                }
                if seen.iter().all(|v| v == expected) {
                    Ok(())
                } else {
                    Err(format!("views: {seen:?}"))
                }
            },
        )
        .await
    }

    /// Waits until, at every replica of `at`, a GET of each key without
    /// context answers as `expected` says: `Some(v)` for 200 with value `v`,
    /// `None` for 404.
    pub async fn wait_contents(&self, at: &[usize], expected: &[(String, Option<Value>)]) {
        wait_for(DEADLINE, &format!("contents at {at:?}"), || async move {
            for &i in at {
                for (key, want) in expected {
                    let r = self.try_get(i, key).await?;
                    let ok = match want {
                        Some(v) => r.status == 200 && r.body.get("value") == Some(v),
                        None => r.status == 404,
                    };
                    if !ok {
                        return Err(format!(
                            "replica {i} key {key:?}: want {want:?}, got {} {}",
                            r.status, r.text
                        ));
                    }
                }
            }
            Ok(())
        })
        .await
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for i in 0..self.replicas.len() {
            self.stop_process(i);
        }
        if std::thread::panicking() {
            if let Some(dir) = self.dir.take() {
                let path = dir.keep();
                eprintln!("\n=== replica logs kept in {} ===", path.display());
                for (i, replica) in self.replicas.iter().enumerate() {
                    for log in &replica.logs {
                        eprintln!(
                            "--- replica {i} ({}) log {} (last lines) ---",
                            replica.addr,
                            log.display()
                        );
                        eprintln!("{}", tail(log, 60));
                    }
                }
            }
        }
    }
}

/// The addresses `/health` lists as suspects.
pub fn suspects(health: &Value) -> Vec<String> {
    health["suspects"]
        .as_array()
        .unwrap_or_else(|| panic!("/health has no suspects list: {health}"))
        .iter()
        .map(|s| s.as_str().expect("a suspect is an address").to_string())
        .collect()
}

/// A numeric field of `/health`.
pub fn health_count(health: &Value, field: &str) -> u64 {
    health[field]
        .as_u64()
        .unwrap_or_else(|| panic!("/health field {field:?} is not a count: {health}"))
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

/// Sends `kill -<sig> <pid>`.
fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{sig} {pid} failed");
}

/// `n` distinct ports that were free a moment ago and were never handed
/// out before in this test process (so that a replica killed by one test,
/// and still probed by its cluster, never shares an address with a
/// replica of another test running in parallel).
pub fn free_ports(n: usize) -> Vec<u16> {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
    let mut listeners = Vec::new();
    let mut ports = Vec::new();
    while ports.len() < n {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local addr").port();
        // Keep every listener open until all ports are chosen, so that
        // the same port is not returned twice.
        listeners.push(listener);
        if handed_out.insert(port) {
            ports.push(port);
        }
    }
    ports
}

// ----- HTTP ---------------------------------------------------------------------

/// A request body.
pub enum Body {
    /// No body.
    None,
    /// A JSON body (`Content-Type: application/json`).
    Json(Value),
    /// Raw bytes sent with `Content-Type: application/json`.
    Raw(Vec<u8>),
}

/// An answer.
#[derive(Clone, Debug)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The `Content-Type` header.
    pub content_type: Option<String>,
    /// The body as JSON (`Value::Null` if it is not JSON).
    pub body: Value,
    /// The body as text.
    pub text: String,
}

impl Reply {
    /// The `causal-metadata` of the body (`Value::Null` if absent).
    pub fn ctx(&self) -> Value {
        self.body
            .get("causal-metadata")
            .cloned()
            .unwrap_or(Value::Null)
    }

    /// Asserts the body is JSON and says so in its `Content-Type`.
    pub fn assert_json(&self) -> &Self {
        assert!(
            self.content_type
                .as_deref()
                .is_some_and(|t| t.starts_with("application/json")),
            "Content-Type is not application/json: {self:?}"
        );
        assert!(
            serde_json::from_str::<Value>(&self.text).is_ok(),
            "body is not JSON: {self:?}"
        );
        self
    }
}

/// The path of `key`: `/key-value-store/<key percent-encoded as one segment>`.
pub fn kv_path(key: &str) -> String {
    format!("/key-value-store/{}", encode(key))
}

/// Percent-encodes `text` as one URL path segment or query value.
pub fn encode(text: &str) -> String {
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(text, SEGMENT).to_string()
}

/// Sends one request to `addr` with the default test timeout.
pub async fn request(
    addr: &str,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Body,
) -> Result<Reply, String> {
    request_with_timeout(addr, method, path, headers, body, REQUEST_TIMEOUT).await
}

/// Sends one request to `addr` on a fresh connection.
pub async fn request_with_timeout(
    addr: &str,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Body,
    timeout: Duration,
) -> Result<Reply, String> {
    let http = awc::Client::builder()
        .connector(awc::Connector::new().timeout(Duration::from_secs(5)))
        .disable_redirects()
        .timeout(timeout)
        .finish();
    let mut request = http.request(method, format!("http://{addr}{path}"));
    for (name, value) in headers {
        request = request.insert_header((*name, *value));
    }
    let sent = match body {
        Body::None => request.send().await,
        Body::Json(value) => request.send_json(&value).await,
        Body::Raw(bytes) => {
            request
                .insert_header(("content-type", "application/json"))
                .send_body(bytes)
                .await
        }
    };
    let mut response = sent.map_err(|e| e.to_string())?;
    let bytes = response
        .body()
        .limit(64 << 20)
        .await
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    Ok(Reply {
        status: response.status().as_u16(),
        content_type: response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    })
}

// ----- waiting ------------------------------------------------------------------

/// Polls `check` every [`POLL`] until it returns `Ok`, and returns that;
/// panics after `timeout` with `what` and the last `Err` it returned.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) => {
                if start.elapsed() > timeout {
                    panic!("timed out after {timeout:?} waiting for {what}; last: {last}");
                }
            }
        }
        actix_rt::time::sleep(POLL).await;
    }
}

/// Polls `check` every [`POLL`] until it returns `true`; panics after
/// `timeout` naming `what`.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_for(timeout, what, || {
        let fut = check();
        async move {
            if fut.await {
                Ok(())
            } else {
                Err("condition false".to_string())
            }
        }
    })
    .await
}

/// Runs `f` and returns its output and how long it took.
pub async fn timed<T>(f: impl Future<Output = T>) -> (T, Duration) {
    let start = Instant::now();
    let out = f.await;
    (out, start.elapsed())
}
