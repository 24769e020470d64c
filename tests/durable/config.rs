//! Configuration errors of durable replicas: each stops the process at
//! once with one line.

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

pub fn a_data_dir_of_another_address_is_refused() {
    let mut cluster = Cluster::start(1, Data::Durable);
    let r = client::put(cluster.addr(0), "owned", &json!("by the first"), &json!("")).expect("PUT");
    assert_eq!(r.status, 201, "{r:?}");
    let id = cluster.replica_id(0);
    cluster.kill(0);

    let other = format!("127.0.0.1:{}", free_ports(1)[0]);
    let env = [("SOCKET_ADDRESS", other.as_str()), ("VIEW", other.as_str())];
    let (status, stderr) = cluster.run_to_exit(0, &env, &[], EXIT);
    assert!(
        !status.success(),
        "a data directory of {} used at {other} must be refused; stderr: {stderr}",
        cluster.addr(0)
    );
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("causalkv: "))
        .collect();
    assert_eq!(
        errors.len(),
        1,
        "exactly one stderr line must start `causalkv: `; stderr:\n{stderr}"
    );
    assert!(
        errors[0].contains("SOCKET_ADDRESS"),
        "the error must name SOCKET_ADDRESS: {}",
        errors[0]
    );

    // The directory is still its owner's.
    cluster.restart(0);
    assert_eq!(cluster.replica_id(0), id);
    client::wait_contents(
        &cluster.addrs(),
        &[("owned".to_string(), Some(json!("by the first")))],
    );
}
