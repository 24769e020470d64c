//! The script end to end in local mode: start, use, add, remove, status, logs, stop.

use std::collections::BTreeSet;

use serde_json::json;

use crate::store::Store;
use crate::support::{
    free_ports, get, health, listening, pid_argv0, pid_running, put, view_of, wait_for,
};
use crate::{binary, DEADLINE, EXIT_NOT_RUNNING, EXIT_USAGE};

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
    // Each replica has a data directory of its own, passed as DATA_DIR.
    assert!(
        out.contains("Data: each replica keeps its state in"),
        "says where the data lives: {out}"
    );
    for (i, (name, _, _)) in replicas.iter().enumerate() {
        let dir = store.data_dir(name);
        assert!(dir.is_dir(), "{} was not made", dir.display());
        assert_eq!(
            store.state()["replicas"][i]["data_dir"],
            json!(dir.to_str().unwrap()),
            "the state records {name}'s data directory"
        );
    }
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
    for command in ["remove", "logs", "restart", "kill"] {
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
    // Out of the store for good: its data goes too.
    assert!(
        run.stdout.contains("causalkv-replica2's data"),
        "{}",
        run.stdout
    );
    assert!(
        !store.data_dir("causalkv-replica2").exists(),
        "remove deletes the removed replica's data"
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
        ["NAME", "ADDRESS", "STATUS", "READY", "PID", "KEYS", "DATA", "VIEW"],
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
        assert!(
            line.contains(&format!("data/{name}")),
            "shows its data directory: {line}"
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
    assert!(run.stdout.contains("The data is kept in"), "{}", run.stdout);
    for name in [
        "causalkv-replica1",
        "causalkv-replica3",
        "causalkv-replica4",
    ] {
        assert!(store.data_dir(name).is_dir(), "stop keeps {name}'s data");
    }
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
