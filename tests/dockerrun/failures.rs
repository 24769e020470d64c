//! A taken port and a replica that does not come up fail clearly, leaving nothing behind.

use std::net::TcpListener;

use crate::script::{write_executable, Script};
use crate::support::{free_ports, listening};
use crate::{binary, EXIT_FAIL, EXIT_PORT_IN_USE};

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
