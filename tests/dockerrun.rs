//! Tests of `dockerRun.py` and of the container files in `docker/`.
//!
//! The script runs end to end in local mode against the binary cargo built
//! for the tests (`--binary`), with its state in a temporary directory and
//! its replicas on free loopback ports: start, write and read across
//! replicas, add, remove, status, logs, a second start, stop, and that no
//! process it started is left. A stand-in replica whose readiness the test
//! switches shows that a replica counts as up only once `GET /ready` says
//! so (or, for a build without `/ready`, once `/health` says synced), and
//! that `status` shows readiness as it changes. Its error paths (a taken
//! port, an unknown replica, missing tools, a replica that does not come
//! up) must fail with a clear message and a documented exit code. Docker mode cannot run
//! without a Docker engine; its commands are checked through `--dry-run`.
//!
//! The Dockerfile, docker-compose.yml and the Kubernetes manifests are
//! checked line by line, and structurally: parsed as YAML by Python's
//! `yaml` module, which the tests install (PyYAML) if it is missing, and
//! fail if they cannot.
//!
//! Every wait polls with a deadline; nothing sleeps to synchronise.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Deadline for anything the cluster must get done (start-up, joins, views).
const DEADLINE: Duration = Duration::from_secs(60);

/// Deadline for one run of the script.
const SCRIPT_DEADLINE: Duration = Duration::from_secs(180);

/// How often waits poll.
const POLL: Duration = Duration::from_millis(100);

/// Exit codes documented in dockerRun.py.
const EXIT_FAIL: i32 = 1;
const EXIT_USAGE: i32 = 2;
const EXIT_MISSING_TOOL: i32 = 3;
const EXIT_PORT_IN_USE: i32 = 4;
const EXIT_NOT_RUNNING: i32 = 5;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_causalkv")
}

// ----- running the script --------------------------------------------------

/// The outcome of one run of the script.
#[derive(Debug)]
struct Run {
    args: Vec<String>,
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Asserts the exit code, showing everything the script printed if not.
    fn expect(self, code: i32) -> Run {
        assert_eq!(
            self.code, code,
            "dockerRun.py {:?} exited with {} (expected {code})\n--- stdout\n{}\n--- stderr\n{}",
            self.args, self.code, self.stdout, self.stderr
        );
        self
    }

    /// The one-line error the script printed (first line of stderr).
    fn error_line(&self) -> &str {
        self.stderr
            .lines()
            .find(|l| l.contains("error:"))
            .unwrap_or_else(|| {
                panic!(
                    "no error line in stderr of {:?}: {}",
                    self.args, self.stderr
                )
            })
    }
}

/// How to run the script: which python, which environment.
struct Script {
    python: PathBuf,
    /// `Some(dir)`: PATH is exactly this directory (to hide tools).
    path: Option<PathBuf>,
    env: Vec<(String, String)>,
}

impl Script {
    fn new() -> Script {
        Script {
            python: PathBuf::from("python3"),
            path: None,
            env: Vec::new(),
        }
    }

    /// A script whose PATH holds only `dir` (no cargo, no docker unless put
    /// there), run by the absolute path of the real python.
    fn with_path(dir: &Path) -> Script {
        Script {
            python: real_python(),
            path: Some(dir.to_path_buf()),
            env: Vec::new(),
        }
    }

    fn env(mut self, key: &str, value: &str) -> Script {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Runs `python3 dockerRun.py ARGS` in the repository, with a deadline.
    fn run(&self, args: &[&str]) -> Run {
        let out_dir = tempfile::Builder::new()
            .prefix("dockerrun-out-")
            .tempdir()
            .expect("temporary directory");
        let out = out_dir.path().join("stdout");
        let err = out_dir.path().join("stderr");
        let mut command = Command::new(&self.python);
        command
            .arg(repo().join("dockerRun.py"))
            .args(args)
            .current_dir(repo())
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out).expect("stdout file"))
            .stderr(fs::File::create(&err).expect("stderr file"));
        for key in [
            "CAUSALKV_BIN",
            "RUST_LOG",
            "CLUSTER_TOKEN",
            "CAUSAL_WAIT_MS",
            "MAX_BODY_BYTES",
            "HEARTBEAT_INTERVAL_MS",
            "FAILURE_TIMEOUT_MS",
            "SUSPECT_TIMEOUT_MS",
            "HANDOVER_TIMEOUT_MS",
            "WORKERS",
        ] {
            command.env_remove(key);
        }
        if let Some(path) = &self.path {
            command.env("PATH", path);
        }
        for (key, value) in &self.env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("cannot run python3");
        let deadline = Instant::now() + SCRIPT_DEADLINE;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for dockerRun.py") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "dockerRun.py {args:?} did not finish within {SCRIPT_DEADLINE:?}; stdout so far:\n{}",
                    fs::read_to_string(&out).unwrap_or_default()
                );
            }
            std::thread::sleep(POLL);
        };
        Run {
            args: args.iter().map(|a| a.to_string()).collect(),
            code: status.code().unwrap_or(-1),
            stdout: fs::read_to_string(&out).unwrap_or_default(),
            stderr: fs::read_to_string(&err).unwrap_or_default(),
        }
    }
}

/// The absolute path of the python interpreter behind `python3` (PATH shims
/// such as pyenv's need PATH themselves).
fn real_python() -> PathBuf {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3 is needed to test dockerRun.py");
    assert!(out.status.success(), "python3 does not run");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// Writes an executable shell script.
fn write_executable(path: &Path, text: &str) {
    fs::write(path, text).expect("write script");
    let status = Command::new("chmod")
        .arg("+x")
        .arg(path)
        .status()
        .expect("chmod");
    assert!(status.success());
}

// ----- ports and processes -------------------------------------------------

/// A base port with `n` consecutive free loopback ports, outside the
/// ephemeral range (so outgoing connections do not grab them meanwhile).
fn free_ports(n: u16) -> u16 {
    use rand::RngExt;
    let mut rng = rand::rng();
    for _ in 0..200 {
        let base = rng.random_range(20_000..32_000);
        let listeners: Vec<_> = (0..n)
            .map_while(|i| TcpListener::bind(("127.0.0.1", base + i)).ok())
            .collect();
        if listeners.len() == n as usize {
            return base;
        }
    }
    panic!("no {n} consecutive free ports found");
}

/// Whether something accepts connections at `addr`.
fn listening(addr: &str) -> bool {
    let addr: SocketAddr = addr.parse().expect("socket address");
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

/// Whether `pid` is a live process (a zombie waiting to be reaped is not).
fn pid_running(pid: u64) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().next())
                .unwrap_or("?");
            state != "Z" && state != "X"
        }
        Err(_) => {
            if Path::new("/proc/self").exists() {
                false
            } else {
                Command::new("kill")
                    .args(["-0", &pid.to_string()])
                    .status()
                    .map(|s| s.success())
                    .unwrap_or(false)
            }
        }
    }
}

/// The argv[0] of a live process.
fn pid_argv0(pid: u64) -> Option<String> {
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let first = cmdline.split(|b| *b == 0).next()?;
    (!first.is_empty()).then(|| String::from_utf8_lossy(first).into_owned())
}

/// Polls `probe` until it returns `Some`, or panics naming `what`.
fn wait_for<T>(what: &str, deadline: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + deadline;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(
            Instant::now() < end,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(POLL);
    }
}

// ----- HTTP ----------------------------------------------------------------

/// One HTTP request to `host` (`ip:port`); `None` if it did not answer.
fn http(method: &str, host: &str, path: &str, body: Option<&Value>) -> Option<(u16, Value)> {
    thread_local! {
        static AGENT: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(Duration::from_secs(2)))
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
    }
    let request = ureq::http::Request::builder()
        .method(method)
        .uri(format!("http://{host}{path}"));
    let sent = AGENT.with(|agent| {
        match body {
            Some(body) => agent.run(
                request
                    .header("content-type", "application/json")
                    .body(body.to_string())
                    .ok()?,
            ),
            None => agent.run(request.body(()).ok()?),
        }
        .ok()
    });
    let mut response = sent?;
    let status = response.status().as_u16();
    let bytes = response.body_mut().read_to_vec().ok()?;
    Some((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

fn health(host: &str) -> Option<Value> {
    match http("GET", host, "/health", None) {
        Some((200, body)) => Some(body),
        _ => None,
    }
}

fn view_of(host: &str) -> Option<BTreeSet<String>> {
    let body = health(host)?;
    Some(
        body["view"]
            .as_str()?
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
    )
}

fn put(host: &str, key: &str, value: Value, ctx: &Value) -> Value {
    let (status, body) = http(
        "PUT",
        host,
        &format!("/key-value-store/{key}"),
        Some(&json!({"value": value, "causal-metadata": ctx})),
    )
    .unwrap_or_else(|| panic!("PUT {key} at {host}: no answer"));
    assert!(
        matches!(status, 200 | 201),
        "PUT {key} at {host}: {status} {body}"
    );
    body["causal-metadata"].clone()
}

fn get(host: &str, key: &str, ctx: &Value) -> Option<(u16, Value)> {
    http(
        "GET",
        host,
        &format!("/key-value-store/{key}"),
        Some(&json!({"causal-metadata": ctx})),
    )
}

// ----- a store started by the script ---------------------------------------

/// A store started with `dockerRun.py start` in a private state directory.
/// Dropping it runs `dockerRun.py stop` (and, should that fail, kills what
/// the state file lists, after checking each PID still runs our binary).
struct Store {
    script: Script,
    dir: tempfile::TempDir,
    base: u16,
    start: Run,
    stopped: bool,
    /// Every replica PID seen in the state file (removed replicas included).
    seen: RefCell<BTreeSet<u64>>,
}

impl Store {
    /// Starts three replicas on free ports (again on other ports if one
    /// was taken meanwhile).
    fn start() -> Store {
        for _ in 0..5 {
            let dir = tempfile::Builder::new()
                .prefix("dockerrun-state-")
                .tempdir()
                .expect("temporary directory");
            let base = free_ports(5);
            let script = Script::new().env("WORKERS", "2");
            let state_dir = dir.path().to_str().expect("utf-8 path").to_string();
            let base_text = base.to_string();
            let start = script.run(&[
                "--state-dir",
                &state_dir,
                "start",
                "--mode",
                "local",
                "--binary",
                binary(),
                "--base-port",
                &base_text,
            ]);
            if start.code == EXIT_PORT_IN_USE {
                eprintln!(
                    "a port was taken meanwhile ({}); trying others",
                    start.stderr.trim()
                );
                continue;
            }
            let store = Store {
                script,
                dir,
                base,
                start,
                stopped: false,
                seen: RefCell::default(),
            };
            assert_eq!(
                store.start.code, 0,
                "start failed\n--- stdout\n{}\n--- stderr\n{}",
                store.start.stdout, store.start.stderr
            );
            return store;
        }
        panic!("could not find free ports for the store");
    }

    fn state_dir(&self) -> &str {
        self.dir.path().to_str().expect("utf-8 path")
    }

    fn run(&self, args: &[&str]) -> Run {
        let mut all = vec!["--state-dir", self.state_dir()];
        all.extend_from_slice(args);
        self.script.run(&all)
    }

    fn state_path(&self) -> PathBuf {
        self.dir.path().join("state.json")
    }

    fn state(&self) -> Value {
        let text = fs::read_to_string(self.state_path()).expect("state file");
        serde_json::from_str(&text).expect("state file is JSON")
    }

    /// (name, address, pid) of each replica in the state file.
    fn replicas(&self) -> Vec<(String, String, u64)> {
        let replicas: Vec<(String, String, u64)> = self.state()["replicas"]
            .as_array()
            .expect("replicas")
            .iter()
            .map(|r| {
                (
                    r["name"].as_str().expect("name").to_string(),
                    r["address"].as_str().expect("address").to_string(),
                    r["pid"].as_u64().expect("pid"),
                )
            })
            .collect();
        self.seen.borrow_mut().extend(replicas.iter().map(|r| r.2));
        replicas
    }

    fn stop(&mut self) -> Run {
        let run = self.run(&["stop"]);
        self.stopped = run.code == 0;
        run
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Show what the replicas said, for the failing test.
            if let Ok(entries) = fs::read_dir(self.dir.path()) {
                for entry in entries.flatten() {
                    let path = entry.path();
                    if path.extension().is_some_and(|e| e == "log") {
                        let text = fs::read_to_string(&path).unwrap_or_default();
                        let tail: Vec<&str> = text.lines().rev().take(15).collect();
                        eprintln!("--- tail of {}", path.display());
                        for line in tail.iter().rev() {
                            eprintln!("{line}");
                        }
                    }
                }
            }
        }
        if self.stopped {
            return;
        }
        let mut pids = self.seen.borrow().clone();
        pids.extend(
            fs::read_to_string(self.state_path())
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .and_then(|s| s["replicas"].as_array().cloned())
                .unwrap_or_default()
                .iter()
                .filter_map(|r| r["pid"].as_u64()),
        );
        let run = self.run(&["stop", "--grace", "2"]);
        if run.code != 0 {
            eprintln!("dockerRun.py stop failed in cleanup: {}", run.stderr);
        }
        for pid in pids {
            if pid_running(pid) && pid_argv0(pid).as_deref() == Some(binary()) {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
    }
}

// ----- the end-to-end test -------------------------------------------------

#[test]
fn local_store_lifecycle() {
    let mut store = Store::start();
    let base = store.base;
    let addr = |i: u16| format!("127.0.0.1:{}", base + i);
    let (a1, a2, a3, a4) = (addr(0), addr(1), addr(2), addr(3));

    // start: three replicas, each answering /health, told how to reach them.
    let out = &store.start.stdout;
    assert!(out.contains("causalkv is running: 3 replicas"), "{out}");
    assert!(
        out.contains(&format!("curl -s -X PUT http://{a1}/key-value-store/")),
        "{out}"
    );
    let replicas = store.replicas();
    assert_eq!(
        replicas.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
        [
            "causalkv-replica1",
            "causalkv-replica2",
            "causalkv-replica3"
        ]
    );
    assert_eq!(
        replicas.iter().map(|r| r.1.clone()).collect::<Vec<_>>(),
        [a1.clone(), a2.clone(), a3.clone()]
    );
    assert_eq!(
        store.state()["settings"],
        json!({"WORKERS": "2"}),
        "settings are passed on"
    );
    let all3: BTreeSet<String> = [&a1, &a2, &a3].into_iter().cloned().collect();
    for (name, address, pid) in &replicas {
        assert!(pid_running(*pid), "{name} (pid {pid}) is not running");
        assert_eq!(
            pid_argv0(*pid).as_deref(),
            Some(binary()),
            "{name} runs --binary"
        );
        let body = health(address).unwrap_or_else(|| panic!("{name} does not answer /health"));
        assert_eq!(body["status"], json!("ok"), "{body}");
        assert_eq!(body["synced"], json!(true), "{body}");
        wait_for(
            &format!("{name} to list all three replicas"),
            DEADLINE,
            || (view_of(address)? == all3).then_some(()),
        );
    }

    // Write through one replica, read through the others with the context.
    let ctx = put(&a1, "k1", json!("v1"), &json!(""));
    for host in [&a2, &a3] {
        let (status, body) = get(host, "k1", &ctx).expect("GET k1");
        assert_eq!(
            (status, &body["value"]),
            (200, &json!("v1")),
            "GET k1 at {host}: {body}"
        );
        assert_eq!(body["causal-metadata"], ctx, "a read adds nothing new");
    }
    let ctx = put(&a2, "k2", json!({"n": 2}), &ctx);
    let (status, body) = get(&a3, "k2", &ctx).expect("GET k2");
    assert_eq!((status, &body["value"]), (200, &json!({"n": 2})), "{body}");

    // add: a fourth replica joins and copies the state.
    let run = store.run(&["add"]).expect(0);
    assert!(
        run.stdout.contains("Added causalkv-replica4"),
        "{}",
        run.stdout
    );
    let replicas = store.replicas();
    assert_eq!(replicas.len(), 4);
    assert_eq!(replicas[3].1, a4, "the fourth takes the next port");
    let pid4 = replicas[3].2;
    // The copied state: readable without any context...
    for (key, value) in [("k1", json!("v1")), ("k2", json!({"n": 2}))] {
        wait_for(&format!("{key} at the added replica"), DEADLINE, || {
            let (status, body) = get(&a4, key, &json!(""))?;
            (status == 200 && body["value"] == value).then_some(())
        });
    }
    // ...and with it.
    let (status, body) = get(&a4, "k1", &ctx).expect("GET k1 at the new replica");
    assert_eq!((status, &body["value"]), (200, &json!("v1")), "{body}");
    let all4: BTreeSet<String> = [&a1, &a2, &a3, &a4].into_iter().cloned().collect();
    for host in [&a1, &a2, &a3, &a4] {
        wait_for(&format!("{host} to list four replicas"), DEADLINE, || {
            (view_of(host)? == all4).then_some(())
        });
    }
    // The new replica takes writes that reach the others.
    let ctx = put(&a4, "k3", json!(3), &ctx);
    let (status, body) = get(&a1, "k3", &ctx).expect("GET k3");
    assert_eq!((status, &body["value"]), (200, &json!(3)), "{body}");

    // An unknown NAME fails clearly and changes nothing.
    for command in ["remove", "logs"] {
        let run = store.run(&[command, "nosuch"]).expect(EXIT_USAGE);
        let line = run.error_line();
        assert!(line.contains("no replica named 'nosuch'"), "{line}");
        assert!(
            line.contains("causalkv-replica1"),
            "lists the known names: {line}"
        );
    }
    assert_eq!(store.replicas().len(), 4);

    // remove: replica2 leaves the others' views and stops.
    let pid2 = store.replicas()[1].2;
    let run = store.run(&["remove", "causalkv-replica2"]).expect(0);
    assert!(
        run.stdout.contains("Removed causalkv-replica2"),
        "{}",
        run.stdout
    );
    assert_eq!(
        store
            .replicas()
            .iter()
            .map(|r| r.0.as_str())
            .collect::<Vec<_>>(),
        [
            "causalkv-replica1",
            "causalkv-replica3",
            "causalkv-replica4"
        ]
    );
    assert!(
        !pid_running(pid2),
        "the removed replica (pid {pid2}) still runs"
    );
    let rest: BTreeSet<String> = [&a1, &a3, &a4].into_iter().cloned().collect();
    for host in [&a1, &a3, &a4] {
        wait_for(
            &format!("{host} to drop the removed replica"),
            DEADLINE,
            || (view_of(host)? == rest).then_some(()),
        );
    }
    assert!(
        !listening(&a2),
        "nothing listens at the removed replica's address"
    );

    // status: every replica, its address, up, its view and key count.
    for host in [&a1, &a3, &a4] {
        wait_for(&format!("{host} to hold the three keys"), DEADLINE, || {
            (health(host)?["keys"] == json!(3)).then_some(())
        });
    }
    let run = store.run(&["status"]).expect(0);
    let header = run
        .stdout
        .lines()
        .find(|l| l.starts_with("NAME"))
        .unwrap_or_else(|| panic!("status has no header:\n{}", run.stdout));
    let columns: Vec<&str> = header.split_whitespace().collect();
    assert_eq!(
        columns,
        ["NAME", "ADDRESS", "STATUS", "READY", "PID", "KEYS", "VIEW"],
        "{header}"
    );
    assert!(
        run.stdout.contains("All 3 replicas are up and ready"),
        "{}",
        run.stdout
    );
    for (name, address) in [
        ("causalkv-replica1", &a1),
        ("causalkv-replica3", &a3),
        ("causalkv-replica4", &a4),
    ] {
        let line = run
            .stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("status does not mention {name}:\n{}", run.stdout));
        assert!(line.contains(address.as_str()), "{line}");
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cells[2..4], ["up", "yes"], "up and ready: {line}");
        assert!(
            line.contains(&format!("{a1},{a3},{a4}")),
            "shows the view: {line}"
        );
        assert!(
            line.split_whitespace().any(|w| w == "3"),
            "shows 3 keys: {line}"
        );
    }
    assert!(!run.stdout.contains("causalkv-replica2"), "{}", run.stdout);

    // logs: the replica's own log.
    let run = store.run(&["logs", "causalkv-replica1"]).expect(0);
    assert!(
        run.stdout.contains(&a1),
        "the log names its address:\n{}",
        run.stdout
    );
    let run = store.run(&["logs", "replica3", "--tail", "1"]).expect(0);
    assert_eq!(run.stdout.lines().count(), 1, "{}", run.stdout);

    // A second start starts nothing (not even on other ports).
    let other = free_ports(3);
    let other_text = other.to_string();
    let before = store.replicas();
    let run = store
        .run(&[
            "start",
            "--mode",
            "local",
            "--binary",
            binary(),
            "--base-port",
            &other_text,
        ])
        .expect(0);
    assert!(run.stdout.contains("already running"), "{}", run.stdout);
    assert!(
        run.stdout.contains("causalkv-replica4"),
        "shows the status: {}",
        run.stdout
    );
    assert_eq!(store.replicas(), before);
    assert!(!listening(&format!("127.0.0.1:{other}")), "no second store");

    // stop: nothing it started is left.
    let all_pids: Vec<u64> = before.iter().map(|r| r.2).chain([pid2, pid4]).collect();
    let run = store.stop().expect(0);
    assert!(run.stdout.contains("Stopped."), "{}", run.stdout);
    for pid in all_pids {
        assert!(!pid_running(pid), "pid {pid} still runs after stop");
    }
    assert!(!store.state_path().exists(), "stop removes the state file");
    for host in [&a1, &a2, &a3, &a4] {
        assert!(!listening(host), "{host} still answers after stop");
    }
    let run = store.run(&["status"]).expect(EXIT_NOT_RUNNING);
    assert!(
        run.error_line().contains("no store is running"),
        "{}",
        run.stderr
    );
    let run = store.run(&["stop"]).expect(0);
    assert!(run.stdout.contains("Nothing to stop"), "{}", run.stdout);
}

// ----- error paths ---------------------------------------------------------

#[test]
fn taken_port_is_refused_before_anything_starts() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let base = free_ports(3);
    let _taken = TcpListener::bind(("127.0.0.1", base + 1)).expect("take a port");
    let base_text = base.to_string();
    let run = Script::new()
        .run(&[
            "--state-dir",
            dir.path().to_str().unwrap(),
            "--mode",
            "local",
            "--binary",
            binary(),
            "--base-port",
            &base_text,
        ])
        .expect(EXIT_PORT_IN_USE);
    let line = run.error_line();
    assert!(
        line.contains(&format!("port {} is already in use", base + 1)),
        "{line}"
    );
    assert!(line.contains("--base-port"), "says how to avoid it: {line}");
    assert!(
        !dir.path().join("state.json").exists(),
        "no store was recorded"
    );
    assert!(
        !listening(&format!("127.0.0.1:{base}")),
        "no replica was started on the free port before it"
    );
}

#[test]
fn replica_that_does_not_come_up_is_reported_with_its_log() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let fake = dir.path().join("broken-causalkv");
    write_executable(
        &fake,
        "#!/bin/sh\necho 'causalkv: invalid configuration: VIEW: boom' >&2\nexit 2\n",
    );
    let state = dir.path().join("state");
    let base = free_ports(3).to_string();
    let run = Script::new()
        .run(&[
            "--state-dir",
            state.to_str().unwrap(),
            "start",
            "--mode",
            "local",
            "--binary",
            fake.to_str().unwrap(),
            "--base-port",
            &base,
        ])
        .expect(EXIT_FAIL);
    let line = run.error_line();
    assert!(line.contains("causalkv-replica1"), "{line}");
    assert!(line.contains("did not come up"), "{line}");
    assert!(line.contains("exited with status 2"), "{line}");
    assert!(
        run.stderr.contains("VIEW: boom"),
        "shows the log's tail: {}",
        run.stderr
    );
    assert!(
        !state.join("state.json").exists(),
        "a failed start leaves no store behind"
    );
}

/// A stand-in replica (a Python script) whose readiness the test controls
/// through files in its working directory, the state directory:
/// `not-ready` makes it not ready; `old` makes it a build without `/ready`
/// (404), whose `/health` then says `"synced": false` while `not-ready`
/// exists. `/health` itself always answers 200, as a live replica's does.
const FAKE_REPLICA: &str = r#"
import json, os
from http.server import BaseHTTPRequestHandler, HTTPServer

address = os.environ["SOCKET_ADDRESS"]
host, port = os.environ.get("LISTEN_ADDRESS", address).rsplit(":", 1)

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        old, not_ready = os.path.exists("old"), os.path.exists("not-ready")
        if self.path == "/health":
            status = 200
            body = {"status": "ok", "synced": not (old and not_ready), "keys": 0,
                    "view": os.environ["VIEW"]}
        elif self.path == "/ready" and not old and not_ready:
            status = 503
            body = {"ready": False, "error": "copying the state from 127.0.0.1:1",
                    "message": "Error in GET"}
        elif self.path == "/ready" and not old:
            status, body = 200, {"ready": True}
        else:
            status, body = 404, {"error": "no such endpoint", "message": "Error in GET"}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass

print(f"fake replica at {address}", flush=True)
HTTPServer((host, int(port)), Handler).serve_forever()
"#;

/// Stops whatever a state directory's store still runs when dropped, so
/// that a failing test leaves no replica behind.
struct StopOnDrop(String);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = Script::new().run(&["--state-dir", &self.0, "stop", "--grace", "2"]);
    }
}

#[test]
fn replicas_count_as_up_only_once_ready() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let fake = dir.path().join("fake-causalkv");
    write_executable(
        &fake,
        &format!("#!{}\n{FAKE_REPLICA}", real_python().display()),
    );
    let fake = fake.to_str().unwrap();
    let state = dir.path().join("state");
    fs::create_dir(&state).unwrap();
    let flag = |name: &str, on: bool| {
        let path = state.join(name);
        if on {
            fs::write(&path, "").unwrap();
        } else {
            let _ = fs::remove_file(&path);
        }
    };
    let state_dir = state.to_str().unwrap();
    let _cleanup = StopOnDrop(state_dir.to_string());
    let script = Script::new();
    let run = |args: &[&str]| {
        let mut all = vec!["--state-dir", state_dir];
        all.extend_from_slice(args);
        script.run(&all)
    };
    let start = |n: &str, timeout: &str| {
        let base = free_ports(2).to_string();
        let run = run(&[
            "start",
            "--mode",
            "local",
            "--binary",
            fake,
            "-n",
            n,
            "--base-port",
            &base,
            "--timeout",
            timeout,
        ]);
        (run, format!("127.0.0.1:{base}"))
    };

    // A replica that answers /health but never /ready does not come up.
    flag("not-ready", true);
    let (failed, first) = start("1", "2");
    let failed = failed.expect(EXIT_FAIL);
    let line = failed.error_line();
    assert!(line.contains("did not come up within 2s"), "{line}");
    assert!(
        line.contains("not ready: copying the state from 127.0.0.1:1"),
        "says why, in the replica's words: {line}"
    );
    assert!(!state.join("state.json").exists(), "no store is left");
    wait_for("the fake replica to be stopped", DEADLINE, || {
        (!listening(&first)).then_some(())
    });

    // Ready: up. Then `status` shows readiness as it changes.
    flag("not-ready", false);
    let (started, _) = start("2", "20");
    started.expect(0);
    let status = run(&["status"]).expect(0);
    assert!(
        status.stdout.contains("All 2 replicas are up and ready"),
        "{}",
        status.stdout
    );
    flag("not-ready", true);
    let status = run(&["status"]).expect(EXIT_FAIL);
    for name in ["causalkv-replica1", "causalkv-replica2"] {
        let line = status
            .stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no line for {name}:\n{}", status.stdout));
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cells[2..4], ["up", "no"], "{line}");
        assert!(
            status.stdout.contains(&format!(
                "{name} is not ready: copying the state from 127.0.0.1:1"
            )),
            "{}",
            status.stdout
        );
    }
    assert!(
        status.stdout.contains("2 of 2 replicas are up, 0 ready."),
        "{}",
        status.stdout
    );

    // A build without /ready: ready once /health says synced.
    flag("old", true);
    let status = run(&["status"]).expect(EXIT_FAIL);
    assert!(
        status.stdout.contains(
            "causalkv-replica1 is not ready: still copying the state (/health: synced false)"
        ),
        "{}",
        status.stdout
    );
    flag("not-ready", false);
    let status = run(&["status"]).expect(0);
    assert!(
        status.stdout.contains("All 2 replicas are up and ready"),
        "{}",
        status.stdout
    );
    run(&["stop", "--grace", "5"]).expect(0);
}

#[test]
fn missing_tools_and_bad_arguments_fail_clearly() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let state = dir.path().join("state");
    let state = state.to_str().unwrap();
    let empty = dir.path().join("empty-path");
    fs::create_dir(&empty).unwrap();
    // Free ports: the script checks them before anything else.
    let base = free_ports(3).to_string();
    let base = base.as_str();

    // No cargo (and no docker): local mode cannot build.
    let run = Script::with_path(&empty)
        .run(&["--state-dir", state, "--base-port", base])
        .expect(EXIT_MISSING_TOOL);
    assert!(run.stdout.contains("Mode: local"), "{}", run.stdout);
    assert!(
        run.error_line().contains("cargo not found"),
        "{}",
        run.stderr
    );
    assert!(
        run.error_line().contains("--binary"),
        "says the way out: {}",
        run.stderr
    );

    // No docker at all, docker mode requested.
    let run = Script::with_path(&empty)
        .run(&[
            "--state-dir",
            state,
            "--base-port",
            base,
            "--mode",
            "docker",
        ])
        .expect(EXIT_MISSING_TOOL);
    assert!(
        run.error_line().contains("docker is not installed"),
        "{}",
        run.stderr
    );

    // A docker client without an engine (as on a machine with the CLI only).
    let fake_bin = dir.path().join("fake-docker-bin");
    fs::create_dir(&fake_bin).unwrap();
    write_executable(
        &fake_bin.join("docker"),
        "#!/bin/sh\necho 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock. \
         Is the docker daemon running?' >&2\nexit 1\n",
    );
    let run = Script::with_path(&fake_bin)
        .run(&[
            "--state-dir",
            state,
            "--base-port",
            base,
            "--mode",
            "docker",
        ])
        .expect(EXIT_MISSING_TOOL);
    assert!(
        run.error_line()
            .contains("Docker engine is not reachable: Cannot connect"),
        "{}",
        run.stderr
    );
    // ...so auto mode picks local (and here fails on the missing binary).
    let run = Script::with_path(&fake_bin)
        .run(&[
            "--state-dir",
            state,
            "--base-port",
            base,
            "--binary",
            "/nonexistent/causalkv",
        ])
        .expect(EXIT_USAGE);
    assert!(
        run.stdout.contains("Mode: local (no Docker engine"),
        "{}",
        run.stdout
    );
    assert!(
        run.error_line()
            .contains("--binary /nonexistent/causalkv: no such file"),
        "{}",
        run.stderr
    );
    let run = Script::with_path(&fake_bin)
        .env("CAUSALKV_BIN", "/nonexistent/causalkv")
        .run(&["--state-dir", state, "--base-port", base, "--mode", "local"])
        .expect(EXIT_USAGE);
    assert!(run.error_line().contains("CAUSALKV_BIN"), "{}", run.stderr);

    // Nothing running: commands that need a store say so.
    for args in [
        vec!["status"],
        vec!["add"],
        vec!["remove", "x"],
        vec!["logs", "x"],
    ] {
        let mut all = vec!["--state-dir", state];
        all.extend(args);
        let run = Script::new().run(&all).expect(EXIT_NOT_RUNNING);
        assert!(
            run.error_line().contains("no store is running"),
            "{}",
            run.stderr
        );
    }
    // Start-only options elsewhere, unknown commands.
    let run = Script::new()
        .run(&["--state-dir", state, "--binary", "x", "status"])
        .expect(EXIT_USAGE);
    assert!(
        run.stderr.contains("--binary only applies to start"),
        "{}",
        run.stderr
    );
    let run = Script::new().run(&["frobnicate"]).expect(EXIT_USAGE);
    assert!(run.stderr.contains("invalid choice"), "{}", run.stderr);
    assert!(!Path::new(state).join("state.json").exists());
}

#[test]
fn help_lists_commands_and_exit_codes() {
    let run = Script::new().run(&["--help"]).expect(0);
    for word in [
        "start",
        "status",
        "add",
        "remove",
        "logs",
        "stop",
        "--mode",
        "--binary",
        "--base-port",
        "--state-dir",
        "Exit codes",
    ] {
        assert!(
            run.stdout.contains(word),
            "--help lacks {word}:\n{}",
            run.stdout
        );
    }
    let doc = fs::read_to_string(repo().join("dockerRun.py")).unwrap();
    assert!(
        doc.starts_with("#!/usr/bin/env python3\n\"\"\""),
        "shebang and module docstring"
    );
}

#[test]
fn docker_mode_commands_follow_the_kevindb_layout() {
    // No Docker engine is needed for a dry run: it only prints the commands.
    let dir = tempfile::tempdir().expect("temporary directory");
    let empty = dir.path().join("empty-path");
    fs::create_dir(&empty).unwrap();
    let run = Script::with_path(&empty)
        .env("CLUSTER_TOKEN", "s3cret")
        .run(&[
            "--state-dir",
            dir.path().to_str().unwrap(),
            "start",
            "--mode",
            "docker",
            "--dry-run",
        ])
        .expect(0);
    let out = &run.stdout;
    let repo_dir = repo();
    let dockerfile = repo_dir.join("docker").join("Dockerfile");
    assert!(
        out.contains(&format!(
            "+ docker build --tag causalkv:latest --file {} {}",
            dockerfile.display(),
            repo_dir.display()
        )),
        "{out}"
    );
    assert!(
        out.contains("+ docker network create --subnet 10.10.0.0/16 causalkv-net"),
        "{out}"
    );
    let view = "10.10.0.2:8085,10.10.0.3:8085,10.10.0.4:8085";
    for i in 1..=3 {
        let ip = format!("10.10.0.{}", 1 + i);
        let expected = format!(
            "+ docker run --detach --name causalkv-replica{i} --hostname causalkv-replica{i} \
             --network causalkv-net --ip {ip} --publish 127.0.0.1:{}:8085 \
             --env SOCKET_ADDRESS={ip}:8085 --env VIEW={view} --env CLUSTER_TOKEN causalkv:latest",
            8081 + i
        );
        assert!(out.contains(&expected), "missing:\n{expected}\nin:\n{out}");
    }
    assert!(!out.contains("s3cret"), "the token stays off command lines");
    assert!(
        !dir.path().join("state.json").exists(),
        "a dry run records nothing"
    );

    // Another subnet (for machines where 10.10.0.0/16 is taken).
    let state = dir.path().to_str().unwrap();
    let run = Script::with_path(&empty)
        .run(&[
            "--state-dir",
            state,
            "start",
            "--mode",
            "docker",
            "--dry-run",
            "--subnet",
            "172.30.0.0/24",
            "-n",
            "2",
            "--base-port",
            "9000",
        ])
        .expect(0);
    assert!(
        run.stdout
            .contains("--ip 172.30.0.3 --publish 127.0.0.1:9001:8085 --env SOCKET_ADDRESS=172.30.0.3:8085 --env VIEW=172.30.0.2:8085,172.30.0.3:8085 causalkv:latest"),
        "{}",
        run.stdout
    );
    let run = Script::with_path(&empty)
        .run(&[
            "--state-dir",
            state,
            "--mode",
            "docker",
            "--dry-run",
            "--subnet",
            "10.10.0.1/16",
        ])
        .expect(EXIT_USAGE);
    assert!(
        run.error_line().contains("--subnet 10.10.0.1/16"),
        "{}",
        run.stderr
    );
}

// ----- the container files -------------------------------------------------

/// Dockerfile instructions: (keyword, arguments, line of the keyword),
/// continuation lines joined, comments dropped.
fn dockerfile_instructions(text: &str) -> Vec<(String, String, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        if line.is_empty() || line.starts_with('#') {
            i += 1;
            continue;
        }
        let start = i;
        let mut joined = String::new();
        loop {
            let part = lines[i].trim();
            if !part.starts_with('#') {
                let (part, more) = match part.strip_suffix('\\') {
                    Some(p) => (p, true),
                    None => (part, false),
                };
                joined.push_str(part.trim());
                joined.push(' ');
                if !more {
                    break;
                }
            }
            i += 1;
            assert!(i < lines.len(), "Dockerfile ends inside a continued line");
        }
        i += 1;
        let joined = joined.trim().to_string();
        let (keyword, args) = joined.split_once(' ').unwrap_or((&joined, ""));
        out.push((keyword.to_ascii_uppercase(), args.trim().to_string(), start));
    }
    out
}

#[test]
fn dockerfile_builds_the_locked_release_binary_and_runs_it_unprivileged() {
    let text = fs::read_to_string(repo().join("docker/Dockerfile")).expect("docker/Dockerfile");
    let lines: Vec<&str> = text.lines().collect();
    let instructions = dockerfile_instructions(&text);
    let find = |kw: &str| -> Vec<&(String, String, usize)> {
        instructions.iter().filter(|i| i.0 == kw).collect()
    };

    // Multi-stage: a Rust builder, a slim Debian runtime.
    let froms = find("FROM");
    assert_eq!(froms.len(), 2, "two stages: {froms:?}");
    let builder: Vec<&str> = froms[0].1.split_whitespace().collect();
    assert!(
        builder[0].starts_with("rust:") && builder[0].contains("bookworm"),
        "{builder:?}"
    );
    assert_eq!(&builder[1..], ["AS", "builder"], "{builder:?}");
    assert_eq!(froms[1].1, "debian:bookworm-slim");

    // The build command, exactly, in the builder stage.
    let runtime_start = froms[1].2;
    let builds: Vec<_> = find("RUN")
        .into_iter()
        .filter(|r| r.1.contains("cargo build"))
        .collect();
    assert_eq!(builds.len(), 1, "{builds:?}");
    assert_eq!(builds[0].1, "cargo build --release --locked --bin causalkv");
    assert!(
        builds[0].2 < runtime_start,
        "the build runs in the builder stage"
    );
    assert!(
        find("COPY")
            .iter()
            .any(|c| c.1 == "--from=builder /src/target/release/causalkv /usr/local/bin/causalkv"),
        "the runtime takes the builder's release binary"
    );
    assert_eq!(find("WORKDIR")[0].1, "/src");

    // Port, user, health check, entry point.
    assert_eq!(
        find("EXPOSE")
            .iter()
            .map(|e| e.1.as_str())
            .collect::<Vec<_>>(),
        ["8085"]
    );
    let users = find("USER");
    assert_eq!(users.len(), 1);
    let user = users[0].1.split(':').next().unwrap();
    assert!(
        !["root", "0", ""].contains(&user),
        "runs as non-root: {user}"
    );
    assert!(users[0].2 > runtime_start);
    let health = find("HEALTHCHECK");
    assert_eq!(health.len(), 1);
    assert!(
        health[0].1.contains("CMD") && health[0].1.contains("/health"),
        "{health:?}"
    );
    assert!(health[0].1.contains("curl"), "{health:?}");
    assert!(
        find("RUN")
            .iter()
            .any(|r| r.2 > runtime_start && r.1.contains("install") && r.1.contains("curl")),
        "the health check's curl is installed in the runtime stage"
    );
    assert!(find("ENTRYPOINT")[0].1.contains("/usr/local/bin/causalkv"));

    // Configured only through the environment at run time: nothing baked in.
    for kw in ["ENV", "ARG"] {
        for i in find(kw) {
            for var in ["SOCKET_ADDRESS", "VIEW"] {
                assert!(
                    !i.1.split(['=', ' ']).any(|w| w == var),
                    "{kw} bakes in {var}: {i:?}"
                );
            }
        }
    }

    // The files it copies exist and are not excluded from the context.
    for c in find("COPY").iter().filter(|c| !c.1.starts_with("--from")) {
        let parts: Vec<&str> = c.1.split_whitespace().collect();
        for source in &parts[..parts.len() - 1] {
            assert!(
                repo().join(source).exists(),
                "COPY source {source} is missing"
            );
        }
    }
    let ignore = fs::read_to_string(repo().join(".dockerignore")).expect(".dockerignore");
    let patterns: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_end_matches('/'))
        .collect();
    for excluded in ["target", ".git", ".causalkv-run"] {
        assert!(
            patterns.contains(&excluded),
            ".dockerignore lacks {excluded}: {patterns:?}"
        );
    }
    for needed in ["src", "Cargo.toml", "Cargo.lock"] {
        assert!(
            !patterns.contains(&needed),
            ".dockerignore excludes {needed}"
        );
    }

    // Every instruction is explained by a comment right above it.
    for (keyword, args, line) in &instructions {
        assert!(
            *line > 0 && lines[line - 1].trim_start().starts_with('#'),
            "{keyword} {args} (line {}) has no comment above it",
            line + 1
        );
    }
}

/// Whether `python3` can import the `yaml` module.
fn python_has_yaml() -> bool {
    Command::new("python3")
        .args(["-c", "import yaml"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `program args`, returning what went wrong if it did.
fn run_quietly(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {args:?} exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Makes Python's `yaml` module importable, installing PyYAML if it is
/// missing (`apt-get install python3-yaml` as root, else `pip install
/// --user`); panics, saying how to install it, if that fails. Never skips.
fn ensure_python_yaml() {
    static INSTALLED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let outcome = INSTALLED.get_or_init(|| {
        if python_has_yaml() {
            return Ok(());
        }
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        let mut tried = Vec::new();
        let attempts: Vec<(&str, Vec<&str>)> = if root {
            vec![
                ("apt-get", vec!["install", "-y", "-q", "python3-yaml"]),
                ("apt-get", vec!["update", "-q"]),
                ("apt-get", vec!["install", "-y", "-q", "python3-yaml"]),
            ]
        } else {
            vec![(
                "python3",
                vec![
                    "-m",
                    "pip",
                    "install",
                    "--user",
                    "--break-system-packages",
                    "pyyaml",
                ],
            )]
        };
        for (program, args) in attempts {
            eprintln!("note: Python's yaml module is missing; running {program} {args:?}");
            if let Err(e) = run_quietly(program, &args) {
                tried.push(e);
            }
            if python_has_yaml() {
                return Ok(());
            }
        }
        Err(format!(
            "Python's yaml module is needed to check the YAML files and could not be \
             installed (install python3-yaml or `pip install pyyaml`): {tried:?}"
        ))
    });
    if let Err(why) = outcome {
        panic!("{why}");
    }
}

/// The documents of a YAML file as JSON, parsed by Python's `yaml` module
/// (installed first if missing).
fn yaml_documents(path: &Path) -> Vec<Value> {
    ensure_python_yaml();
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml\n\
             print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None]))",
        ])
        .arg(path)
        .output()
        .expect("python3");
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        panic!("{} is not valid YAML:\n{err}", path.display());
    }
    serde_json::from_slice(&out.stdout).expect("JSON from python")
}

/// Asserts that `text` holds every line in `needles` (trimmed, exact).
fn assert_lines(file: &str, text: &str, needles: &[&str]) {
    let lines: BTreeSet<&str> = text.lines().map(str::trim).collect();
    for needle in needles {
        assert!(lines.contains(needle), "{file} lacks the line {needle:?}");
    }
}

#[test]
fn compose_file_runs_three_replicas_on_the_kevindb_subnet() {
    let path = repo().join("docker/docker-compose.yml");
    let text = fs::read_to_string(&path).expect("docker/docker-compose.yml");
    assert!(!text.contains('\t'), "YAML must not contain tabs");
    assert_lines(
        "docker-compose.yml",
        &text,
        &[
            "services:",
            "replica1:",
            "replica2:",
            "replica3:",
            "ipv4_address: 10.10.0.2",
            "ipv4_address: 10.10.0.3",
            "ipv4_address: 10.10.0.4",
            "- \"127.0.0.1:8082:8085\"",
            "- \"127.0.0.1:8083:8085\"",
            "- \"127.0.0.1:8084:8085\"",
            "SOCKET_ADDRESS: 10.10.0.2:8085",
            "SOCKET_ADDRESS: 10.10.0.3:8085",
            "SOCKET_ADDRESS: 10.10.0.4:8085",
            "- subnet: 10.10.0.0/16",
            "healthcheck:",
            "dockerfile: docker/Dockerfile",
            "SUSPECT_TIMEOUT_MS: ${SUSPECT_TIMEOUT_MS:-600000}",
            "HANDOVER_TIMEOUT_MS: ${HANDOVER_TIMEOUT_MS:-5000}",
            "stop_grace_period: 20s",
        ],
    );
    assert!(
        text.contains("http://127.0.0.1:8085/ready"),
        "healthy means ready"
    );

    let docs = yaml_documents(&path);
    assert_eq!(docs.len(), 1);
    let compose = &docs[0];
    let services = compose["services"].as_object().expect("services");
    assert_eq!(services.len(), 3);
    let view = "10.10.0.2:8085,10.10.0.3:8085,10.10.0.4:8085";
    for i in 1..=3 {
        let s = &services[&format!("replica{i}")];
        let ip = format!("10.10.0.{}", 1 + i);
        assert_eq!(s["container_name"], json!(format!("causalkv-replica{i}")));
        assert_eq!(s["image"], json!("causalkv:latest"));
        assert_eq!(s["build"]["context"], json!(".."));
        assert_eq!(s["build"]["dockerfile"], json!("docker/Dockerfile"));
        assert_eq!(s["networks"]["causalkv-net"]["ipv4_address"], json!(ip));
        assert_eq!(s["ports"], json!([format!("127.0.0.1:{}:8085", 8081 + i)]));
        assert_eq!(
            s["environment"]["SOCKET_ADDRESS"],
            json!(format!("{ip}:8085"))
        );
        assert_eq!(s["environment"]["VIEW"], json!(view));
        let test = s["healthcheck"]["test"]
            .as_array()
            .expect("healthcheck test");
        assert_eq!(test[0], json!("CMD"));
        assert!(test
            .iter()
            .any(|a| a.as_str().is_some_and(|a| a.ends_with("/ready"))));
        for key in ["interval", "timeout", "retries", "start_period"] {
            assert!(!s["healthcheck"][key].is_null(), "healthcheck.{key}");
        }
        // Optional settings pass through from the shell; the two chosen
        // with stop_grace_period have a default there, overridable too.
        let env = s["environment"].as_object().unwrap();
        let mut defaults = BTreeSet::new();
        for (key, value) in env {
            if ["SOCKET_ADDRESS", "VIEW"].contains(&key.as_str()) {
                continue;
            }
            match value.as_str() {
                None => assert!(value.is_null(), "{key} is passed through, not set: {value}"),
                Some(text) => {
                    let default = text
                        .strip_prefix(&format!("${{{key}:-"))
                        .and_then(|t| t.strip_suffix('}'))
                        .unwrap_or_else(|| panic!("{key} is not ${{{key}:-default}}: {text}"));
                    defaults.insert((key.as_str(), default.parse::<u64>().expect("a number")));
                }
            }
        }
        let defaults: Vec<_> = defaults.into_iter().collect();
        assert_eq!(
            defaults,
            [
                ("HANDOVER_TIMEOUT_MS", 5000),
                ("SUSPECT_TIMEOUT_MS", 600_000)
            ]
        );
        // The hand-over and the 10 s to finish requests fit in the grace.
        let grace: u64 = s["stop_grace_period"]
            .as_str()
            .and_then(|g| g.strip_suffix('s'))
            .and_then(|g| g.parse().ok())
            .expect("stop_grace_period in seconds");
        assert!(5000 / 1000 + 10 < grace, "stop_grace_period {grace}s");
    }
    let net = &compose["networks"]["causalkv-net"];
    assert_eq!(net["name"], json!("causalkv-net"));
    assert_eq!(net["ipam"]["config"], json!([{"subnet": "10.10.0.0/16"}]));
}

#[test]
fn kubernetes_manifests_describe_a_three_replica_statefulset() {
    let dir = repo().join("docker/k8s");
    let read = |name: &str| {
        fs::read_to_string(dir.join(name)).unwrap_or_else(|_| panic!("docker/k8s/{name}"))
    };
    let (service, statefulset, pdb) = (
        read("service.yaml"),
        read("statefulset.yaml"),
        read("pdb.yaml"),
    );
    for (name, text) in [
        ("service.yaml", &service),
        ("statefulset.yaml", &statefulset),
        ("pdb.yaml", &pdb),
    ] {
        assert!(!text.contains('\t'), "{name} contains tabs");
    }
    assert_lines(
        "service.yaml",
        &service,
        &[
            "kind: Service",
            "name: causalkv-headless",
            "clusterIP: None",
            "publishNotReadyAddresses: true",
            "port: 8085",
        ],
    );
    assert_lines(
        "statefulset.yaml",
        &statefulset,
        &[
            "kind: StatefulSet",
            "replicas: 3",
            "serviceName: causalkv-headless",
            "fieldPath: status.podIP",
            "- name: SOCKET_ADDRESS",
            "value: \"$(POD_IP):8085\"",
            "- name: VIEW",
            "- name: VIEW_DNS",
            "value: \"causalkv-headless.$(POD_NAMESPACE).svc.cluster.local:8085\"",
            "readinessProbe:",
            "livenessProbe:",
            "path: /ready",
            "path: /health",
            "- name: SUSPECT_TIMEOUT_MS",
            "- name: HANDOVER_TIMEOUT_MS",
            "containerPort: 8085",
            "runAsNonRoot: true",
        ],
    );
    assert_lines(
        "pdb.yaml",
        &pdb,
        &[
            "apiVersion: policy/v1",
            "kind: PodDisruptionBudget",
            "minAvailable: 2",
        ],
    );

    let (services, sets, pdbs) = (
        yaml_documents(&dir.join("service.yaml")),
        yaml_documents(&dir.join("statefulset.yaml")),
        yaml_documents(&dir.join("pdb.yaml")),
    );
    for doc in services.iter().chain(&sets).chain(&pdbs) {
        for key in ["apiVersion", "kind", "metadata"] {
            assert!(!doc[key].is_null(), "every object has {key}: {doc}");
        }
        assert!(doc["metadata"]["name"].is_string(), "named: {doc}");
        assert!(
            doc["metadata"]["namespace"].is_null(),
            "namespace comes from kubectl -n"
        );
    }

    assert_eq!(sets.len(), 1);
    let set = &sets[0];
    assert_eq!(
        (set["apiVersion"].as_str(), set["kind"].as_str()),
        (Some("apps/v1"), Some("StatefulSet"))
    );
    let spec = &set["spec"];
    assert_eq!(spec["replicas"], json!(3));
    assert_eq!(spec["serviceName"], json!("causalkv-headless"));
    let pod_labels = spec["template"]["metadata"]["labels"]
        .as_object()
        .expect("pod labels");
    let selects_pods = |selector: &Value| {
        let selector = selector.as_object().expect("selector");
        !selector.is_empty() && selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v))
    };
    assert!(selects_pods(&spec["selector"]["matchLabels"]));
    let containers = spec["template"]["spec"]["containers"]
        .as_array()
        .expect("containers");
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    assert_eq!(c["ports"][0]["containerPort"], json!(8085));
    let port_name = c["ports"][0]["name"].clone();
    // Traffic only to replicas that hold the state; restarts only when the
    // process stops serving.
    for (probe, path) in [("readinessProbe", "/ready"), ("livenessProbe", "/health")] {
        assert_eq!(c[probe]["httpGet"]["path"], json!(path), "{probe}");
        let port = &c[probe]["httpGet"]["port"];
        assert!(
            port == &json!(8085) || port == &port_name,
            "{probe} port {port}"
        );
    }
    let env: Vec<&Value> = c["env"].as_array().expect("env").iter().collect();
    let position = |name: &str| env.iter().position(|e| e["name"] == json!(name));
    let var = |name: &str| env[position(name).unwrap_or_else(|| panic!("env {name}"))];
    assert_eq!(
        var("POD_IP")["valueFrom"]["fieldRef"]["fieldPath"],
        json!("status.podIP")
    );
    assert_eq!(
        var("POD_NAMESPACE")["valueFrom"]["fieldRef"]["fieldPath"],
        json!("metadata.namespace")
    );
    assert_eq!(var("SOCKET_ADDRESS")["value"], json!("$(POD_IP):8085"));
    assert_eq!(var("VIEW")["value"], json!("$(POD_IP):8085"));
    assert_eq!(
        var("VIEW_DNS")["value"],
        json!("causalkv-headless.$(POD_NAMESPACE).svc.cluster.local:8085")
    );
    // $(VAR) only expands variables defined earlier in the list.
    for (user, used) in [
        ("SOCKET_ADDRESS", "POD_IP"),
        ("VIEW", "POD_IP"),
        ("VIEW_DNS", "POD_NAMESPACE"),
    ] {
        assert!(
            position(used) < position(user),
            "{used} must come before {user}"
        );
    }
    for e in &env {
        if let Some(value) = e["value"].as_str() {
            assert!(!value.is_empty(), "empty {e}");
        }
    }
    assert_eq!(
        spec["template"]["spec"]["securityContext"]["runAsNonRoot"],
        json!(true)
    );
    let millis = |name: &str| -> u64 {
        var(name)["value"]
            .as_str()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} is a number of ms"))
    };
    assert!(
        millis("SUSPECT_TIMEOUT_MS") >= 300_000,
        "a suspect outlives Kubernetes' 300 s toleration of an unreachable node"
    );
    // The hand-over and the 10 s to finish requests fit in the grace.
    let grace = spec["template"]["spec"]["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("terminationGracePeriodSeconds");
    assert!(
        millis("HANDOVER_TIMEOUT_MS") / 1000 + 10 < grace,
        "terminationGracePeriodSeconds {grace}"
    );

    let headless = services
        .iter()
        .find(|s| s["metadata"]["name"] == json!("causalkv-headless"))
        .expect("the headless service");
    assert_eq!(headless["kind"], json!("Service"));
    assert_eq!(headless["spec"]["clusterIP"], json!("None"));
    assert_eq!(headless["spec"]["publishNotReadyAddresses"], json!(true));
    assert_eq!(headless["spec"]["ports"][0]["port"], json!(8085));
    for s in &services {
        assert!(
            selects_pods(&s["spec"]["selector"]),
            "service selects the pods: {s}"
        );
        let target = &s["spec"]["ports"][0]["targetPort"];
        assert!(
            target == &json!(8085) || target == &port_name,
            "targetPort {target}"
        );
    }

    assert_eq!(pdbs.len(), 1);
    let pdb = &pdbs[0];
    assert_eq!(pdb["apiVersion"], json!("policy/v1"));
    assert_eq!(pdb["kind"], json!("PodDisruptionBudget"));
    assert_eq!(pdb["spec"]["minAvailable"], json!(2));
    assert!(selects_pods(&pdb["spec"]["selector"]["matchLabels"]));
}
