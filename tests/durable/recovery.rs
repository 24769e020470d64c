//! A replica whose data directory was wiped, and a replica without one:
//! both come back as a new incarnation and copy every key.

use serde_json::{json, Value};

use crate::client;
use crate::harness::{Cluster, Data};

/// Writes `n` keys `<prefix><j>` through the replicas in turn (and deletes
/// every fifth again), carrying the context; returns what each key holds
/// and the last context.
pub fn write_keys(
    cluster: &Cluster,
    prefix: &str,
    n: usize,
    value: impl Fn(usize) -> Value,
) -> (Vec<(String, Option<Value>)>, Value) {
    let mut ctx = json!("");
    let mut expected = Vec::new();
    for j in 0..n {
        let key = format!("{prefix}{j}");
        let addr = cluster.addr(j % cluster.len());
        let r = client::put(addr, &key, &value(j), &ctx)
            .unwrap_or_else(|e| panic!("PUT {key} at {addr}: {e}"));
        assert_eq!(r.status, 201, "PUT {key} at {addr}: {r:?}");
        ctx = r.ctx();
        if j % 5 == 4 {
            let addr = cluster.addr((j + 1) % cluster.len());
            let r = client::delete(addr, &key, &ctx)
                .unwrap_or_else(|e| panic!("DELETE {key} at {addr}: {e}"));
            assert_eq!(r.status, 200, "DELETE {key} at {addr}: {r:?}");
            ctx = r.ctx();
            expected.push((key, None));
        } else {
            expected.push((key, Some(value(j))));
        }
    }
    (expected, ctx)
}

/// Asserts replica at `addr` serves `ctx` (no 503) on a read of each key
/// and the read sees what `expected` says.
pub fn assert_context_served(addr: &str, ctx: &Value, expected: &[(String, Option<Value>)]) {
    for (key, want) in expected {
        let r = client::get(addr, key, ctx).unwrap_or_else(|e| panic!("GET {key} at {addr}: {e}"));
        let seen = match r.status {
            200 => Some(r.body["value"].clone()),
            404 => None,
            _ => panic!("GET {key} at {addr} with the writer's context: {r:?}"),
        };
        assert_eq!(&seen, want, "GET {key} at {addr} with the writer's context");
    }
}

pub fn a_wiped_data_dir_comes_back_as_a_new_incarnation_with_every_key() {
    let mut cluster = Cluster::start(3, Data::Durable);
    let (expected, ctx) = write_keys(&cluster, "wiped-", 30, |j| json!({"j": j}));
    client::wait_contents(&cluster.addrs(), &expected);
    let before = cluster.replica_id(2);

    cluster.kill(2);
    let dir = cluster.data_dir(2).to_path_buf();
    std::fs::remove_dir_all(&dir).expect("rm -rf the data directory");
    cluster.restart(2);

    let after = cluster.replica_id(2);
    assert_eq!(client::split_id(&after).0, cluster.addr(2), "{after}");
    assert_ne!(
        client::split_id(&after).1,
        client::split_id(&before).1,
        "a replica whose data directory was wiped must take a new incarnation"
    );
    assert!(
        dir.join("db").is_dir(),
        "{} was not recreated",
        dir.display()
    );
    client::wait_contents(&[cluster.addr(2).to_string()], &expected);
    assert_context_served(cluster.addr(2), &ctx, &expected);
    cluster.wait_views();

    // The new incarnation is durable in turn.
    cluster.kill(2);
    cluster.restart(2);
    assert_eq!(cluster.replica_id(2), after);
    client::wait_contents(&[cluster.addr(2).to_string()], &expected);
}

pub fn without_data_dir_a_restart_takes_a_new_incarnation() {
    let mut cluster = Cluster::start(2, Data::Memory);
    let (expected, _) = write_keys(&cluster, "memory-", 6, |j| json!(format!("m{j}")));
    client::wait_contents(&cluster.addrs(), &expected);
    let health = cluster.health(1);
    assert_eq!(health["durability"]["mode"], json!("memory"), "{health}");
    assert_eq!(health["durability"]["data-dir"], Value::Null, "{health}");
    let before = cluster.replica_id(1);

    cluster.kill(1);
    cluster.restart(1);

    let after = cluster.replica_id(1);
    assert_eq!(client::split_id(&after).0, cluster.addr(1), "{after}");
    assert_ne!(
        client::split_id(&after).1,
        client::split_id(&before).1,
        "without DATA_DIR a restarted replica must take a new incarnation"
    );
    client::wait_contents(&[cluster.addr(1).to_string()], &expected);
}
