//! Every replica's data: kept by `stop`, found again by `start` and
//! `restart`, deleted by `stop --purge` (and `remove`), refused under
//! another address.
//!
//! Whether a replica really comes back with its keys and identity is the
//! node's part (DATA_DIR); the tests that check it say so when they fail.

use std::fs;

use serde_json::{json, Value};

use crate::store::Store;
use crate::support::{free_ports, get, health, listening, pid_running, put, wait_for};
use crate::{binary, DEADLINE, EXIT_FAIL, EXIT_USAGE};

const NAMES: [&str; 3] = [
    "causalkv-replica1",
    "causalkv-replica2",
    "causalkv-replica3",
];

/// Writes `n` keys spread over the replicas; waits until every replica
/// holds them all. Returns the keys, their values and the last context.
fn write_keys(store: &Store, n: usize) -> (Vec<(String, Value)>, Value) {
    let mut ctx = json!("");
    let mut written = Vec::new();
    for i in 0..n {
        let (key, value) = (format!("key{i}"), json!({"n": i}));
        ctx = put(&store.host((i % 3) as u16), &key, value.clone(), &ctx);
        written.push((key, value));
    }
    for i in 0..3 {
        let host = store.host(i);
        wait_for(&format!("{host} to hold {n} keys"), DEADLINE, || {
            (health(&host)?["keys"] == json!(n)).then_some(())
        });
    }
    (written, ctx)
}

/// The replica id `/health` reports (`address#incarnation`).
fn identity(host: &str) -> String {
    let body = health(host).unwrap_or_else(|| panic!("{host} does not answer /health"));
    body["replica"]
        .as_str()
        .unwrap_or_else(|| panic!("no replica id in {body}"))
        .to_string()
}

/// Asserts that `host` serves every key, without a context and with `ctx`.
fn assert_holds(host: &str, written: &[(String, Value)], ctx: &Value, after: &str) {
    for (key, value) in written {
        for context in [&json!(""), ctx] {
            let (status, body) =
                get(host, key, context).unwrap_or_else(|| panic!("GET {key} at {host}: no answer"));
            assert_eq!(
                (status, &body["value"]),
                (200, value),
                "{key} at {host} after {after} (context {context}): {body}; \
                 the replica must come back with its data (DATA_DIR)"
            );
        }
    }
}

#[test]
fn stop_then_start_brings_every_replicas_data_back() {
    let mut store = Store::start();
    let (written, ctx) = write_keys(&store, 6);
    let ids: Vec<String> = (0..3).map(|i| identity(&store.host(i))).collect();

    let run = store.stop().expect(0);
    assert!(run.stdout.contains("The data is kept in"), "{}", run.stdout);
    for name in NAMES {
        assert!(store.data_dir(name).is_dir(), "stop keeps {name}'s data");
    }

    let run = store.start_again();
    for i in 0..3 {
        let host = store.host(i);
        assert_holds(&host, &written, &ctx, "stop and start");
        assert_eq!(
            identity(&host),
            ids[i as usize],
            "{host} came back as another replica after stop and start: \
             it must keep its identity in DATA_DIR"
        );
    }
    assert!(
        run.stdout
            .contains("Started on the data of an earlier run: causalkv-replica1, causalkv-replica2, causalkv-replica3."),
        "{}",
        run.stdout
    );
    store.stop().expect(0);
}

#[test]
fn kill_and_restart_bring_a_replica_back_at_its_address_with_its_data_dir() {
    let store = Store::start();
    let (h1, h2) = (store.host(0), store.host(1));
    let (written, ctx) = write_keys(&store, 3);
    let before = store.state()["replicas"][1].clone();
    let pid2 = store.replicas()[1].2;

    // kill: SIGKILL, nothing more; status shows it down, with its data.
    let run = store.run(&["kill", "replica2"]).expect(0);
    assert!(
        run.stdout.contains(&format!(
            "causalkv-replica2: killed (SIGKILL to pid {pid2})"
        )),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("restart replica2"), "{}", run.stdout);
    assert!(!pid_running(pid2), "pid {pid2} survived kill");
    assert!(!listening(&h2), "{h2} still answers after kill");
    assert!(
        store.data_dir(NAMES[1]).is_dir(),
        "kill keeps the data directory"
    );
    let run = store.run(&["status"]).expect(EXIT_FAIL);
    let row = run
        .stdout
        .lines()
        .find(|l| l.starts_with(NAMES[1]))
        .unwrap_or_else(|| panic!("status lacks replica2:\n{}", run.stdout));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[2], "down", "{row}");
    assert!(row.contains("data/causalkv-replica2"), "{row}");
    assert!(
        run.stdout.contains("2 of 3 replicas are up"),
        "{}",
        run.stdout
    );
    // Killing it again changes nothing.
    let run = store.run(&["kill", "2"]).expect(0);
    assert!(run.stdout.contains("was not running"), "{}", run.stdout);

    // A write it misses while down.
    let ctx = put(&h1, "missed", json!("while down"), &ctx);

    // restart: the same address, port and data directory; ready again.
    let run = store.run(&["restart", "replica2"]).expect(0);
    assert!(
        run.stdout.contains("Restarted causalkv-replica2"),
        "{}",
        run.stdout
    );
    let after = store.state()["replicas"][1].clone();
    for field in ["name", "address", "port", "data_dir", "log", "binary"] {
        assert_eq!(after[field], before[field], "restart changed {field}");
    }
    let pid = after["pid"].as_u64().expect("pid");
    assert!(pid != pid2 && pid_running(pid), "restarted as pid {pid}");
    assert_holds(&h2, &written, &ctx, "kill and restart");
    wait_for(
        "the write it missed at the restarted replica",
        DEADLINE,
        || {
            let (status, body) = get(&h2, "missed", &json!(""))?;
            (status == 200 && body["value"] == json!("while down")).then_some(())
        },
    );
    let log = fs::read_to_string(after["log"].as_str().unwrap()).expect("log");
    assert!(
        log.contains("dockerRun.py restart causalkv-replica2"),
        "the log goes on after the killed run's:\n{log}"
    );

    // restart of a running replica: a graceful stop first.
    let run = store.run(&["restart", "1", "--grace", "20"]).expect(0);
    assert!(
        run.stdout.contains("causalkv-replica1: stopped."),
        "{}",
        run.stdout
    );
    let run = store.run(&["status"]).expect(0);
    assert!(
        run.stdout.contains("All 3 replicas are up and ready"),
        "{}",
        run.stdout
    );
}

#[test]
fn kill_then_restart_keeps_the_replicas_identity() {
    let store = Store::start();
    let (h1, h2) = (store.host(0), store.host(1));
    let (written, ctx) = write_keys(&store, 4);
    let (id1, id2) = (identity(&h1), identity(&h2));

    store.run(&["kill", "replica2"]).expect(0);
    store.run(&["restart", "replica2"]).expect(0);
    assert_holds(&h2, &written, &ctx, "kill and restart");
    assert_eq!(
        identity(&h2),
        id2,
        "replica2 came back as another replica after kill and restart: \
         it must keep its identity in DATA_DIR"
    );

    store.run(&["restart", "replica1"]).expect(0);
    assert_holds(&h1, &written, &ctx, "restart");
    assert_eq!(
        identity(&h1),
        id1,
        "replica1 came back as another replica after a graceful restart: \
         it must keep its identity in DATA_DIR"
    );
    // Its writes are stamped with the id it had: the causal-metadata it
    // hands out names it as before.
    let ctx = put(&h2, "after", json!(1), &ctx);
    let ids: Vec<&String> = ctx.as_object().expect("context").keys().collect();
    assert!(
        ids.contains(&&id2),
        "a write at replica2 after its restart is not stamped {id2}: {ctx}"
    );
}

#[test]
fn stop_purge_deletes_every_replicas_data() {
    let mut store = Store::start();
    write_keys(&store, 2);
    for name in NAMES {
        fs::write(store.data_dir(name).join("marker"), name).expect("write into the data dir");
    }

    // A plain stop keeps the data; `stop --purge` with nothing running
    // still deletes it.
    store.stop().expect(0);
    for name in NAMES {
        assert!(store.data_dir(name).join("marker").exists());
    }
    let run = store.run(&["stop", "--purge"]).expect(0);
    assert!(run.stdout.contains("Nothing to stop"), "{}", run.stdout);
    assert!(
        run.stdout.contains("Deleted the data of every replica"),
        "{}",
        run.stdout
    );
    assert!(!store.dir.path().join("data").exists(), "data is left");

    // Started afresh: no keys.
    store.start_again();
    for i in 0..3 {
        let host = store.host(i);
        assert_eq!(health(&host).expect("health")["keys"], json!(0), "{host}");
        let (status, _) = get(&host, "key0", &json!("")).expect("GET key0");
        assert_eq!(status, 404, "key0 at {host} after purge");
    }

    // `stop --purge` of a running store stops it, then deletes the data.
    let pids: Vec<u64> = store.replicas().iter().map(|r| r.2).collect();
    let run = store.run(&["stop", "--purge"]);
    store.stopped = run.code == 0;
    let run = run.expect(0);
    assert!(run.stdout.contains("Stopped."), "{}", run.stdout);
    assert!(
        run.stdout.contains("Deleted the data of every replica"),
        "{}",
        run.stdout
    );
    for pid in pids {
        assert!(!pid_running(pid), "pid {pid} runs after stop --purge");
    }
    assert!(!store.dir.path().join("data").exists(), "data is left");
    assert!(!store.state_path().exists());
    let run = store.run(&["stop", "--purge"]).expect(0);
    assert!(run.stdout.contains("No data to delete"), "{}", run.stdout);
}

#[test]
fn data_written_at_another_address_is_refused() {
    let mut store = Store::start();
    write_keys(&store, 1);
    store.stop().expect(0);
    // What the replica left in its data directory (written here too, so
    // that the check does not depend on what the node writes there).
    fs::write(store.data_dir(NAMES[1]).join("written-by-test"), "").unwrap();

    // The same state directory on other ports: replica2's data was written
    // at base + 1.
    let other = free_ports(3);
    let other_text = other.to_string();
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
        .expect(EXIT_USAGE);
    let line = run.error_line();
    // The directory is shown relative to the working directory when it is
    // below its parent, so only its end is compared.
    assert!(
        line.contains(&format!(
            "data/causalkv-replica1) belongs to 127.0.0.1:{}, not 127.0.0.1:{other}",
            store.base
        )) || line.contains(&format!(
            "data/causalkv-replica2) belongs to 127.0.0.1:{}, not 127.0.0.1:{}",
            store.base + 1,
            other + 1
        )),
        "{line}"
    );
    assert!(
        line.contains(&format!("--base-port {}", store.base)),
        "{line}"
    );
    assert!(line.contains("stop --purge"), "{line}");
    assert!(!store.state_path().exists(), "nothing was started");
    for port in other..other + 3 {
        assert!(!listening(&format!("127.0.0.1:{port}")));
    }

    // Once purged, the other ports are fine.
    store.run(&["stop", "--purge"]).expect(0);
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
    store.stopped = false;
    assert!(
        run.stdout.contains("causalkv is running: 3 replicas"),
        "{}",
        run.stdout
    );
    store.run(&["stop"]).expect(0);
    store.stopped = true;
}
