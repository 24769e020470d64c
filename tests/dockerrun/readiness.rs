//! A replica counts as up only once it is ready, shown with a stand-in replica.

use std::fs;

use crate::script::{real_python, write_executable, Script};
use crate::support::{free_ports, listening, wait_for};
use crate::{DEADLINE, EXIT_FAIL};

/// A stand-in replica (a Python script) whose readiness the test controls
/// through files in its working directory, the state directory:
/// `not-ready` makes it not ready; `old` makes it a build without `/ready`
/// (404), whose `/health` then says `"synced": false` while `not-ready`
/// exists. `/health` itself always answers 200, as a live replica's does.
/// `GET /tables` answers 404 (a build without tables) unless `tables.json`
/// exists: then 200 with that list as `"tables"` (or 500 while
/// `tables-fail` exists).
pub(crate) const FAKE_REPLICA: &str = r#"
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
        elif self.path == "/tables" and os.path.exists("tables-fail"):
            status, body = 500, {"error": "boom", "message": "Error in GET"}
        elif self.path == "/tables" and os.path.exists("tables.json"):
            with open("tables.json") as f:
                tables = json.load(f)
            status = 200
            body = {"message": "Retrieved successfully", "tables": tables, "causal-metadata": {}}
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
pub(crate) struct StopOnDrop(pub(crate) String);

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
