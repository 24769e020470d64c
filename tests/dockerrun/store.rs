//! A store started by the script in a private state directory, stopped when dropped.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::script::{Run, Script};
use crate::support::{free_ports, pid_argv0, pid_running};
use crate::{binary, EXIT_PORT_IN_USE};

/// A store started with `dockerRun.py start` in a private state directory.
/// Dropping it runs `dockerRun.py stop` (and, should that fail, kills what
/// the state file lists, after checking each PID still runs our binary).
pub(crate) struct Store {
    pub(crate) script: Script,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) base: u16,
    pub(crate) start: Run,
    /// Arguments `start` was given beyond the usual ones (e.g. `--shards 2`).
    pub(crate) extra: Vec<String>,
    pub(crate) stopped: bool,
    /// Every replica PID seen in the state file (removed replicas included).
    pub(crate) seen: RefCell<BTreeSet<u64>>,
}

impl Store {
    /// Starts three replicas on free ports (again on other ports if one
    /// was taken meanwhile).
    pub(crate) fn start() -> Store {
        Store::start_with(&[], 5)
    }

    /// Like [`Store::start`], with `extra` arguments to `start` (e.g.
    /// `["--shards", "2", "-n", "4"]`) and `ports` consecutive free ports
    /// from the base port (for the replicas and those added later).
    pub(crate) fn start_with(extra: &[&str], ports: u16) -> Store {
        let extra: Vec<String> = extra.iter().map(|a| a.to_string()).collect();
        for _ in 0..5 {
            let dir = tempfile::Builder::new()
                .prefix("dockerrun-state-")
                .tempdir()
                .expect("temporary directory");
            let base = free_ports(ports);
            let script = Script::new().env("WORKERS", "2");
            let state_dir = dir.path().to_str().expect("utf-8 path").to_string();
            let mut args = vec!["--state-dir".to_string(), state_dir];
            args.extend(start_args(base));
            args.extend(extra.iter().cloned());
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let start = script.run(&args);
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
                extra: extra.clone(),
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

    pub(crate) fn state_dir(&self) -> &str {
        self.dir.path().to_str().expect("utf-8 path")
    }

    pub(crate) fn run(&self, args: &[&str]) -> Run {
        let mut all = vec!["--state-dir", self.state_dir()];
        all.extend_from_slice(args);
        self.script.run(&all)
    }

    pub(crate) fn state_path(&self) -> PathBuf {
        self.dir.path().join("state.json")
    }

    pub(crate) fn state(&self) -> Value {
        let text = fs::read_to_string(self.state_path()).expect("state file");
        serde_json::from_str(&text).expect("state file is JSON")
    }

    /// (name, address, pid) of each replica in the state file.
    pub(crate) fn replicas(&self) -> Vec<(String, String, u64)> {
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

    pub(crate) fn stop(&mut self) -> Run {
        let run = self.run(&["stop"]);
        self.stopped = run.code == 0;
        run
    }

    /// `start` again, exactly as the first time (same ports, same state
    /// directory), after a `stop`; asserts that it succeeded.
    pub(crate) fn start_again(&mut self) -> Run {
        let mut args = start_args(self.base);
        args.extend(self.extra.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.stopped = false;
        self.run(&args).expect(0)
    }

    /// The client address of the replica at `index` (0-based), by the ports
    /// `start` gives them.
    pub(crate) fn host(&self, index: u16) -> String {
        format!("127.0.0.1:{}", self.base + index)
    }

    /// Where `start` keeps the data of replica `name`.
    pub(crate) fn data_dir(&self, name: &str) -> PathBuf {
        self.dir.path().join("data").join(name)
    }
}

/// `start` in local mode with the binary cargo built, on ports from `base`.
fn start_args(base: u16) -> Vec<String> {
    [
        "start",
        "--mode",
        "local",
        "--binary",
        binary(),
        "--base-port",
    ]
    .into_iter()
    .map(str::to_string)
    .chain([base.to_string()])
    .collect()
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
