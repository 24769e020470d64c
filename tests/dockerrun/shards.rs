//! Sharded stores (`--shards N`): end to end in local mode (start, the
//! shard layout, status, add into a shard, restart, remove, stop), the
//! refusals (too few replicas, --durability), and the family's six-node
//! docker layout through dry runs.
//!
//! Sharded replicas keep their state in memory only (the replica refuses
//! SHARD_COUNT with DATA_DIR): the tests check that no replica gets a data
//! directory or DURABILITY, in the state file and in each process's
//! environment.

use std::collections::BTreeMap;
use std::fs;

use serde_json::{json, Value};

use crate::script::Script;
use crate::store::Store;
use crate::support::{
    free_ports, get, get_json, health, listening, pid_environ, pid_running, put_json, wait_for,
};
use crate::{binary, DEADLINE, EXIT_USAGE};

const SHARD_API: &str = "/key-value-store-shard";

/// The shard a node reports (`null` when it is in none).
fn node_shard(host: &str) -> Value {
    let (status, body) = get_json(host, &format!("{SHARD_API}/node-shard-id"))
        .unwrap_or_else(|| panic!("{host} does not answer node-shard-id"));
    assert_eq!(status, 200, "node-shard-id at {host}: {body}");
    body["shard-id"].clone()
}

/// The members of shard `id`, as `host` knows them.
fn members(host: &str, id: u64) -> Vec<String> {
    let (status, body) = get_json(host, &format!("{SHARD_API}/shard-id-members/{id}"))
        .unwrap_or_else(|| panic!("{host} does not answer shard-id-members/{id}"));
    assert_eq!(status, 200, "shard-id-members/{id} at {host}: {body}");
    serde_json::from_value(body["shard-id-members"].clone()).expect("a list of members")
}

/// The status line of replica `name`, split into its cells.
fn status_row<'a>(stdout: &'a str, name: &str) -> Vec<&'a str> {
    stdout
        .lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("status does not list {name}:\n{stdout}"))
        .split_whitespace()
        .collect()
}

/// The row of shard `id` in status's table of shards: (keys, members).
fn shard_row(stdout: &str, id: u64) -> (String, String) {
    let mut lines = stdout
        .lines()
        .skip_while(|l| l.split_whitespace().collect::<Vec<_>>() != ["SHARD", "KEYS", "MEMBERS"]);
    assert!(
        lines.next().is_some(),
        "status has no table of shards:\n{stdout}"
    );
    let cells: Vec<&str> = lines
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.first() == Some(&id.to_string().as_str()))
        .unwrap_or_else(|| panic!("no row for shard {id}:\n{stdout}"));
    (cells[1].to_string(), cells[2..].join(" "))
}

/// Asserts that a replica process runs without DATA_DIR and DURABILITY,
/// and with SHARD_COUNT=2 or without SHARD_COUNT.
fn assert_memory_only(pid: u64, shard_count: bool) {
    let env = pid_environ(pid);
    assert!(!env.is_empty(), "cannot read the environment of pid {pid}");
    for name in ["DATA_DIR=", "DURABILITY="] {
        assert!(
            !env.iter().any(|e| e.starts_with(name)),
            "pid {pid} got {name}: {env:?}"
        );
    }
    assert_eq!(
        env.iter().any(|e| e == "SHARD_COUNT=2"),
        shard_count,
        "SHARD_COUNT of pid {pid}: {env:?}"
    );
    if !shard_count {
        assert!(
            !env.iter().any(|e| e.starts_with("SHARD_COUNT=")),
            "{env:?}"
        );
    }
}

#[test]
fn sharded_store_in_local_mode_start_status_add_restart_remove_stop() {
    // Four replicas in two shards; ports for two more added later.
    let mut store = Store::start_with(&["--shards", "2", "-n", "4"], 8);
    let host = |i: u16| store.host(i);
    let (a1, a2, a3, a4, a5, a6) = (host(0), host(1), host(2), host(3), host(4), host(5));

    // start: two shards, the replicas dealt to them in address order.
    let out = store.start.stdout.clone();
    assert!(
        out.contains("causalkv is running: 4 replicas, local processes, 2 shards."),
        "{out}"
    );
    assert!(
        out.contains("Shard 1: causalkv-replica1, causalkv-replica3"),
        "{out}"
    );
    assert!(
        out.contains("Shard 2: causalkv-replica2, causalkv-replica4"),
        "{out}"
    );
    assert!(out.contains("NOT DURABLE"), "says so plainly: {out}");
    assert!(out.contains("in memory only"), "{out}");
    // The state records that the store is sharded, and the first VIEW.
    let state = store.state();
    assert_eq!(state["shards"], json!(2));
    assert_eq!(
        state["shard_view"],
        json!([&a1, &a2, &a3, &a4].map(String::as_str).join(","))
    );
    let replicas = store.replicas();
    assert_eq!(replicas.len(), 4);
    for (i, (name, address, pid)) in replicas.iter().enumerate() {
        assert_eq!(address, &host(i as u16));
        let record = &state["replicas"][i];
        assert!(
            record["data_dir"].is_null(),
            "{name} has no data directory: {record}"
        );
        assert_eq!(record["shard_count"], json!(2), "{record}");
        assert_memory_only(*pid, true);
    }
    assert!(
        !store.dir.path().join("data").exists(),
        "no data directory is made for a sharded store"
    );
    for (address, shard) in [(&a1, 1), (&a2, 2), (&a3, 1), (&a4, 2)] {
        assert_eq!(node_shard(address), json!(shard), "{address}");
    }

    // Writes through every replica; each answer names the key's shard.
    let mut ctx = json!("");
    let mut keys: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for k in 0..30u16 {
        let key = format!("key{k}");
        let at = host(k % 4);
        let (status, body) = put_json(
            &at,
            &format!("/key-value-store/{key}"),
            &json!({"value": format!("value{k}"), "causal-metadata": ctx}),
        )
        .unwrap_or_else(|| panic!("PUT {key} at {at}: no answer"));
        assert!(
            matches!(status, 200 | 201),
            "PUT {key} at {at}: {status} {body}"
        );
        let shard = body["shard-id"].as_u64().expect("shard-id in the answer");
        keys.entry(shard).or_default().push(key);
        ctx = body["causal-metadata"].clone();
    }
    let count = |id: u64| keys.get(&id).map_or(0, Vec::len);
    assert_eq!(count(1) + count(2), 30);
    for (address, shard) in [(&a1, 1), (&a2, 2), (&a3, 1), (&a4, 2)] {
        wait_for(
            &format!(
                "{address} to hold the {} keys of shard {shard}",
                count(shard)
            ),
            DEADLINE,
            || (health(address)?["keys"] == json!(count(shard))).then_some(()),
        );
    }

    // status: each replica's shard, and per shard its members and keys.
    let run = store.run(&["status"]).expect(0);
    let header = status_row(&run.stdout, "NAME");
    assert_eq!(
        header,
        ["NAME", "ADDRESS", "STATUS", "READY", "SHARD", "PID", "KEYS", "DATA", "VIEW"],
        "{}",
        run.stdout
    );
    for (name, shard) in [
        ("causalkv-replica1", "1"),
        ("causalkv-replica2", "2"),
        ("causalkv-replica3", "1"),
        ("causalkv-replica4", "2"),
    ] {
        let row = status_row(&run.stdout, name);
        assert_eq!(row[2..5], ["up", "yes", shard], "{}", run.stdout);
        assert_eq!(row[7], "memory", "{}", run.stdout);
    }
    assert!(run.stdout.contains("sharded"), "{}", run.stdout);
    assert_eq!(
        shard_row(&run.stdout, 1),
        (
            count(1).to_string(),
            "causalkv-replica1, causalkv-replica3".to_string()
        )
    );
    assert_eq!(
        shard_row(&run.stdout, 2),
        (
            count(2).to_string(),
            "causalkv-replica2, causalkv-replica4".to_string()
        )
    );
    assert!(
        run.stdout
            .contains("All 4 replicas are up and ready and agree on the shard map"),
        "{}",
        run.stdout
    );

    // add: started without SHARD_COUNT, placed in the shard with the
    // fewest members (a tie: the lowest id), holding its keys.
    let run = store.run(&["add"]).expect(0);
    assert!(
        run.stdout.contains("Adding causalkv-replica5") && run.stdout.contains("to shard 1"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("Added causalkv-replica5"),
        "{}",
        run.stdout
    );
    let replicas = store.replicas();
    assert_eq!(replicas.len(), 5);
    assert_eq!(replicas[4].1, a5, "the fifth takes the next port");
    assert_memory_only(replicas[4].2, false);
    assert!(store.state()["replicas"][4]["shard_count"].is_null());
    assert_eq!(node_shard(&a5), json!(1));
    wait_for("the others to list the fifth in shard 1", DEADLINE, || {
        [&a1, &a2, &a3, &a4]
            .iter()
            .all(|h| members(h, 1).contains(&a5))
            .then_some(())
    });
    wait_for("the fifth to hold shard 1's keys", DEADLINE, || {
        (health(&a5)?["keys"] == json!(count(1))).then_some(())
    });
    let key = &keys[&1][0];
    let (status, body) = get(&a5, key, &ctx).expect("GET at the added replica");
    assert_eq!(status, 200, "{body}");

    // add --shard ID: into that shard; an unknown shard is refused.
    let run = store.run(&["add", "--shard", "2"]).expect(0);
    assert!(run.stdout.contains("to shard 2"), "{}", run.stdout);
    assert_eq!(node_shard(&a6), json!(2));
    let run = store.run(&["add", "--shard", "7"]).expect(EXIT_USAGE);
    assert!(
        run.error_line().contains("--shard 7: no such shard"),
        "{}",
        run.stderr
    );
    assert_eq!(store.replicas().len(), 6, "a refused add starts nothing");
    let run = store.run(&["status"]).expect(0);
    assert_eq!(
        shard_row(&run.stdout, 1).1,
        "causalkv-replica1, causalkv-replica3, causalkv-replica5"
    );
    assert_eq!(
        shard_row(&run.stdout, 2).1,
        "causalkv-replica2, causalkv-replica4, causalkv-replica6"
    );
    assert_eq!(status_row(&run.stdout, "causalkv-replica6")[4], "2");

    // restart: a first replica again with SHARD_COUNT and the first VIEW,
    // an added one without; each comes back empty and copies its shard.
    for (name, address, first) in [("replica1", &a1, true), ("replica5", &a5, false)] {
        let run = store.run(&["restart", name, "--grace", "10"]).expect(0);
        assert!(run.stdout.contains("in shard 1"), "{}", run.stdout);
        let pid = store
            .replicas()
            .into_iter()
            .find(|r| &r.1 == address)
            .expect("still in the state")
            .2;
        assert_memory_only(pid, first);
        if first {
            assert!(
                pid_environ(pid).contains(&format!(
                    "VIEW={}",
                    [&a1, &a2, &a3, &a4].map(String::as_str).join(",")
                )),
                "restarted with the first VIEW"
            );
        }
        assert_eq!(node_shard(address), json!(1));
        wait_for(
            &format!("{name} to copy shard 1's keys again"),
            DEADLINE,
            || (health(address)?["keys"] == json!(count(1))).then_some(()),
        );
    }

    // remove: out of its shard and stopped.
    let pid6 = store.replicas()[5].2;
    let run = store
        .run(&["remove", "replica6", "--grace", "10"])
        .expect(0);
    assert!(
        run.stdout.contains("Removed causalkv-replica6"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("Shard 2 now: causalkv-replica2, causalkv-replica4"),
        "{}",
        run.stdout
    );
    assert!(!pid_running(pid6), "the removed replica still runs");
    wait_for("shard 2 without the removed replica", DEADLINE, || {
        (!members(&a1, 2).contains(&a6)).then_some(())
    });

    // stop: nothing left, and it says the keys were in memory.
    let pids: Vec<u64> = store.replicas().iter().map(|r| r.2).collect();
    let run = store.stop().expect(0);
    assert!(run.stdout.contains("in memory only"), "{}", run.stdout);
    for pid in pids {
        assert!(!pid_running(pid), "pid {pid} still runs after stop");
    }
    for address in [&a1, &a2, &a3, &a4, &a5, &a6] {
        assert!(!listening(address), "{address} still answers after stop");
    }
    assert!(!store.state_path().exists());
    assert!(!store.dir.path().join("data").exists());
}

#[test]
fn sharded_start_refuses_too_few_replicas_and_durability() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let state = dir.path().to_str().unwrap();
    let base = free_ports(6);
    let base_text = base.to_string();
    let start = |extra: &[&str]| {
        let mut args = vec![
            "--state-dir",
            state,
            "start",
            "--mode",
            "local",
            "--binary",
            binary(),
            "--base-port",
            &base_text,
        ];
        args.extend_from_slice(extra);
        Script::new().run(&args).expect(EXIT_USAGE)
    };
    let run = start(&["--shards", "3", "-n", "4"]);
    let line = run.error_line();
    assert!(
        line.contains("--shards 3 needs at least 6 replicas") && line.contains("-n is 4"),
        "{line}"
    );
    let run = start(&["--shards", "2", "--durability", "os"]);
    assert!(
        run.error_line()
            .contains("--durability does not apply to a sharded store"),
        "{}",
        run.stderr
    );
    let run = start(&["--shards", "0"]);
    assert!(
        run.error_line().contains("--shards must be at least 1"),
        "{}",
        run.stderr
    );
    assert!(
        !dir.path().join("state.json").exists(),
        "nothing was recorded"
    );
    for i in 0..6 {
        assert!(
            !listening(&format!("127.0.0.1:{}", base + i)),
            "nothing was started"
        );
    }
    // --shard belongs to add, --shards to start.
    let run = Script::new()
        .run(&["--state-dir", state, "--shards", "2", "status"])
        .expect(EXIT_USAGE);
    assert!(
        run.stderr.contains("--shards only applies to start"),
        "{}",
        run.stderr
    );
}

#[test]
fn sharded_dry_runs_follow_the_family_six_node_layout() {
    // No Docker engine is needed for a dry run: it only prints the commands.
    let dir = tempfile::tempdir().expect("temporary directory");
    let empty = dir.path().join("empty-path");
    fs::create_dir(&empty).unwrap();
    let state = dir.path().join("state");
    let state = state.to_str().unwrap();
    let run = Script::with_path(&empty)
        .env("DURABILITY", "os")
        .run(&[
            "--state-dir",
            state,
            "--mode",
            "docker",
            "--dry-run",
            "--shards",
            "2",
            "-n",
            "6",
        ])
        .expect(0);
    let out = &run.stdout;
    let view =
        "10.10.0.2:8085,10.10.0.3:8085,10.10.0.4:8085,10.10.0.5:8085,10.10.0.6:8085,10.10.0.7:8085";
    // 10.10.0.2-7 inside; host ports 8082-8084 and 8086-8088 (8085 skipped).
    for (i, port) in [
        (1, 8082),
        (2, 8083),
        (3, 8084),
        (4, 8086),
        (5, 8087),
        (6, 8088),
    ] {
        let ip = format!("10.10.0.{}", 1 + i);
        let expected = format!(
            "+ docker run --detach --name causalkv-replica{i} --hostname causalkv-replica{i} \
             --network causalkv-net --ip {ip} --publish 127.0.0.1:{port}:8085 \
             --env SOCKET_ADDRESS={ip}:8085 --env VIEW={view} --env SHARD_COUNT=2 causalkv:latest\n"
        );
        assert!(out.contains(&expected), "missing:\n{expected}\nin:\n{out}");
    }
    assert!(
        !out.contains("8085:8085"),
        "8085 is skipped on the host: {out}"
    );
    let commands: Vec<&str> = out.lines().filter(|l| l.starts_with("+ ")).collect();
    assert_eq!(commands.len(), 8, "build, network and six runs: {out}");
    for word in ["volume", "DATA_DIR", "DURABILITY"] {
        assert!(
            !commands.iter().any(|c| c.contains(word)),
            "a sharded replica gets no {word}: {out}"
        );
    }
    assert!(out.contains("in memory only"), "{out}");
    assert!(
        run.stderr
            .contains("DURABILITY from the environment is not passed on"),
        "{}",
        run.stderr
    );

    // Local mode: the same host ports on 127.0.0.1, no data directory.
    let run = Script::new()
        .run(&[
            "--state-dir",
            state,
            "--mode",
            "local",
            "--binary",
            binary(),
            "--dry-run",
            "--shards",
            "2",
            "-n",
            "6",
        ])
        .expect(0);
    let out = &run.stdout;
    let view = [8082, 8083, 8084, 8086, 8087, 8088]
        .map(|p| format!("127.0.0.1:{p}"))
        .join(",");
    for port in [8082, 8083, 8084, 8086, 8087, 8088] {
        let line = out
            .lines()
            .find(|l| l.contains(&format!("SOCKET_ADDRESS=127.0.0.1:{port} ")))
            .unwrap_or_else(|| panic!("no command for port {port}:\n{out}"));
        assert!(line.contains(&format!(" VIEW={view} ")), "{line}");
        assert!(line.contains(" SHARD_COUNT=2 "), "{line}");
    }
    assert!(
        out.lines()
            .filter(|l| l.starts_with("+ "))
            .all(|l| !l.contains("DATA_DIR") && !l.contains("mkdir")),
        "no data directory: {out}"
    );

    // Without -n: two replicas per shard.
    let run = Script::with_path(&empty)
        .run(&[
            "--state-dir",
            state,
            "--mode",
            "docker",
            "--dry-run",
            "--shards",
            "2",
        ])
        .expect(0);
    assert_eq!(
        run.stdout.matches("+ docker run ").count(),
        4,
        "{}",
        run.stdout
    );
    assert!(
        !dir.path().join("state").exists(),
        "a dry run makes nothing"
    );
}

#[test]
fn help_explains_sharded_stores() {
    let run = Script::new().run(&["--help"]).expect(0);
    let text = run.stdout.split_whitespace().collect::<Vec<_>>().join(" ");
    for words in [
        "--shards N",
        "IN MEMORY ONLY",
        "no data directory, no volume and no DURABILITY",
        "SKIPPING 8085",
        "8082-8084 and 8086-8088",
        "add --shard ID",
    ] {
        assert!(
            text.contains(words),
            "--help lacks {words:?}:\n{}",
            run.stdout
        );
    }
    let run = Script::new().run(&["add", "--help"]).expect(0);
    let text = run.stdout.split_whitespace().collect::<Vec<_>>().join(" ");
    for words in ["--shard ID", "fewest members", "without SHARD_COUNT"] {
        assert!(
            text.contains(words),
            "add --help lacks {words:?}:\n{}",
            run.stdout
        );
    }
}
