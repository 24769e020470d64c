//! Configuration errors of durable replicas: each stops the process at
//! once with one line.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::client;
use crate::common::free_ports;
use crate::harness::{Cluster, Data};

/// How long a misconfigured process may take to exit.
const EXIT: Duration = Duration::from_secs(15);

pub fn a_bogus_durability_exits_at_once() {
    let mut cluster = Cluster::new(1, Data::Durable);
    type Form<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str]);
    let forms: [Form; 2] = [
        (&[("DURABILITY", "bogus")], &[]),
        (&[], &["--durability", "bogus"]),
    ];
    for (env, args) in forms {
        let (status, stderr) = cluster.run_to_exit(0, env, args, EXIT);
        assert!(
            !status.success(),
            "{env:?} {args:?}: exited successfully; stderr: {stderr}"
        );
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(
            lines.len(),
            1,
            "{env:?} {args:?}: stderr must be one line, got {stderr:?}"
        );
        assert!(
            lines[0].contains("DURABILITY"),
            "{env:?} {args:?}: the error must name DURABILITY: {stderr:?}"
        );
    }
}

/// A replica that moved (its data directory used at another address, as
/// a pod re-created with another IP) keeps the keys it holds, under a new
/// incarnation at its new address: it never writes under the old identity.
pub fn a_data_dir_moved_to_another_address_keeps_its_keys_under_a_new_incarnation() {
    let mut cluster = Cluster::start(1, Data::Durable);
    let r = client::put(cluster.addr(0), "owned", &json!("by the first"), &json!("")).expect("PUT");
    assert_eq!(r.status, 201, "{r:?}");
    let id = cluster.replica_id(0);
    cluster.kill(0);

    let other = format!("127.0.0.1:{}", free_ports(1)[0]);
    let mut moved = Child(
        Command::new(env!("CARGO_BIN_EXE_causalkv"))
            .env("SOCKET_ADDRESS", &other)
            .env("VIEW", &other)
            .env("DATA_DIR", cluster.data_dir(0))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the node starts"),
    );
    let got = client::poll(Duration::from_secs(30), "the moved replica serving", || {
        if let Ok(Some(status)) = moved.0.try_wait() {
            panic!("the replica exited with {status} at its new address");
        }
        let r = client::peek(&other, "owned")?;
        match r.status {
            200 => Ok(r),
            status => Err(format!("{status}")),
        }
    });
    assert_eq!(got.body["value"], json!("by the first"), "{got:?}");
    let r = client::put(&other, "after the move", &json!(1), &got.ctx()).expect("PUT");
    assert_eq!(r.status, 201, "{r:?}");
    let names: Vec<String> = r.ctx().as_object().unwrap().keys().cloned().collect();
    assert!(
        names.iter().any(|n| n.starts_with(&format!("{other}#"))),
        "the write at {other} was made under {names:?}"
    );
    // The old identity is named with its one write, or not at all once the
    // replica retired it (it is gone and every member holds its writes).
    assert!(
        names
            .iter()
            .all(|n| *n == id || n.starts_with(&format!("{other}#"))),
        "{names:?}"
    );
    if let Some(n) = r.ctx().get(&id) {
        assert_eq!(n, &json!(1), "the old identity wrote again: {}", r.ctx());
    }
    drop(moved);
}

/// Kills the child it holds when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
