//! `status` lists the store's tables, shown with stand-in replicas whose
//! `GET /tables` the test controls: the tables of a ready replica, none,
//! nothing at all for a build without tables (404), a note when no ready
//! replica answers, and no section while no replica is ready.

use std::fs;

use crate::readiness::{StopOnDrop, FAKE_REPLICA};
use crate::script::{real_python, write_executable, Script};
use crate::support::free_ports;
use crate::EXIT_FAIL;

#[test]
fn status_lists_the_tables_of_a_ready_replica() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let fake = dir.path().join("fake-causalkv");
    write_executable(
        &fake,
        &format!("#!{}\n{FAKE_REPLICA}", real_python().display()),
    );
    let state = dir.path().join("state");
    fs::create_dir(&state).unwrap();
    let state_dir = state.to_str().unwrap();
    let _cleanup = StopOnDrop(state_dir.to_string());
    let script = Script::new();
    let run = |args: &[&str]| {
        let mut all = vec!["--state-dir", state_dir];
        all.extend_from_slice(args);
        script.run(&all)
    };
    let flag = |name: &str, on: bool| {
        let path = state.join(name);
        if on {
            fs::write(&path, "").unwrap();
        } else {
            let _ = fs::remove_file(&path);
        }
    };
    let base = free_ports(2).to_string();
    run(&[
        "start",
        "--mode",
        "local",
        "--binary",
        fake.to_str().unwrap(),
        "-n",
        "2",
        "--base-port",
        &base,
        "--timeout",
        "20",
    ])
    .expect(0);
    let status = |code: i32| {
        let out = run(&["status"]).expect(code).stdout;
        assert!(out.contains("NAME "), "the replicas come first:\n{out}");
        out
    };

    // A build without tables (404): the status it always had, no section.
    let out = status(0);
    assert!(!out.contains("Tables"), "{out}");
    assert!(out.contains("All 2 replicas are up and ready"), "{out}");

    // Tables: one row each, in the order the store sorted them, between
    // the replicas and the summary.
    fs::write(
        state.join("tables.json"),
        r#"[{"name": "carts", "siblings": true, "keys": 3},
            {"name": "orders_2024", "siblings": false, "keys": 12}]"#,
    )
    .unwrap();
    let out = status(0);
    let lines: Vec<&str> = out.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("Tables ("))
        .unwrap_or_else(|| panic!("no tables section:\n{out}"));
    assert_eq!(
        lines[at],
        "Tables (2 tables besides the default one, as causalkv-replica1 sees them):"
    );
    assert_eq!(
        lines[at + 1..at + 4],
        [
            "TABLE        SIBLINGS  KEYS",
            "carts        yes       3",
            "orders_2024  no        12",
        ],
        "{out}"
    );
    assert!(
        lines[at + 4..]
            .iter()
            .any(|l| l.contains("All 2 replicas are up and ready")),
        "the summary still ends it:\n{out}"
    );

    fs::write(state.join("tables.json"), "[]").unwrap();
    let out = status(0);
    assert!(
        out.contains("Tables: none besides the default one (as causalkv-replica1 sees them)."),
        "{out}"
    );

    // No ready replica answers usefully: said so; the exit code is the
    // replicas' alone.
    flag("tables-fail", true);
    let out = status(0);
    assert!(
        out.contains("Tables: no ready replica answered GET /tables."),
        "{out}"
    );
    flag("tables-fail", false);

    // No replica ready: nobody is asked.
    flag("not-ready", true);
    let out = status(EXIT_FAIL);
    assert!(!out.contains("Tables"), "{out}");
    assert!(out.contains("2 of 2 replicas are up, 0 ready."), "{out}");
    flag("not-ready", false);

    run(&["stop", "--grace", "5"]).expect(0);
    let out = run(&["status"]).expect(crate::EXIT_NOT_RUNNING);
    assert!(!out.stdout.contains("Tables"), "{out:?}");
}
