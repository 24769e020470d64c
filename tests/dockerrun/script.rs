//! Running `dockerRun.py` with a deadline and capturing what it printed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::{repo, POLL, SCRIPT_DEADLINE};

/// The outcome of one run of the script.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) args: Vec<String>,
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    /// Asserts the exit code, showing everything the script printed if not.
    pub(crate) fn expect(self, code: i32) -> Run {
        assert_eq!(
            self.code, code,
            "dockerRun.py {:?} exited with {} (expected {code})\n--- stdout\n{}\n--- stderr\n{}",
            self.args, self.code, self.stdout, self.stderr
        );
        self
    }

    /// The one-line error the script printed (first line of stderr).
    pub(crate) fn error_line(&self) -> &str {
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
pub(crate) struct Script {
    pub(crate) python: PathBuf,
    /// `Some(dir)`: PATH is exactly this directory (to hide tools).
    pub(crate) path: Option<PathBuf>,
    pub(crate) env: Vec<(String, String)>,
}

impl Script {
    pub(crate) fn new() -> Script {
        Script {
            python: PathBuf::from("python3"),
            path: None,
            env: Vec::new(),
        }
    }

    /// A script whose PATH holds only `dir` (no cargo, no docker unless put
    /// there), run by the absolute path of the real python.
    pub(crate) fn with_path(dir: &Path) -> Script {
        Script {
            python: real_python(),
            path: Some(dir.to_path_buf()),
            env: Vec::new(),
        }
    }

    pub(crate) fn env(mut self, key: &str, value: &str) -> Script {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Runs `python3 dockerRun.py ARGS` in the repository, with a deadline.
    pub(crate) fn run(&self, args: &[&str]) -> Run {
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
            "DURABILITY",
            "DATA_DIR",
            "DISCARD_CORRUPT_STATE",
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
pub(crate) fn real_python() -> PathBuf {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3 is needed to test dockerRun.py");
    assert!(out.status.success(), "python3 does not run");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// Writes an executable shell script.
pub(crate) fn write_executable(path: &Path, text: &str) {
    fs::write(path, text).expect("write script");
    let status = Command::new("chmod")
        .arg("+x")
        .arg(path)
        .status()
        .expect("chmod");
    assert!(status.success());
}
