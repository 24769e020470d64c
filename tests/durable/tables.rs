//! Tables and siblings on disk: every replica killed at once and started
//! again on its directory keeps its tables, their keys and the siblings of
//! a key, and a dropped table stays dropped.

use std::time::Duration;

use serde_json::{json, Value};

use crate::client::{self, call, REQUEST};
use crate::common::Reply;
use crate::harness::{Cluster, Data};

fn at(addr: &str, method: &str, path: &str, body: Value) -> Reply {
    call(method, addr, path, Some(&body), REQUEST)
        .unwrap_or_else(|e| panic!("{method} {path} at {addr}: {e}"))
}

fn merge(a: &Value, b: &Value) -> Value {
    causalkv::client::merge_contexts(a, b).expect("contexts merge")
}

/// The values replica `addr` answers for `path` with `ctx`, sorted.
fn values(addr: &str, path: &str, ctx: &Value) -> (u16, Vec<String>) {
    let r = at(addr, "GET", path, json!({"causal-metadata": ctx}));
    let mut got: Vec<String> = match r.status {
        200 => vec![r.body["value"].to_string()],
        300 => r.body["values"]
            .as_array()
            .expect("values")
            .iter()
            .map(Value::to_string)
            .collect(),
        _ => Vec::new(),
    };
    got.sort();
    (r.status, got)
}

pub fn tables_and_siblings_survive_every_replica_killed_at_once() {
    let mut cluster = Cluster::start(3, Data::Durable);
    let a = cluster.addr(0).to_string();
    let r = at(&a, "PUT", "/tables/carts", json!({"siblings": true}));
    assert_eq!(r.status, 201, "{r:?}");
    let created = r.ctx();
    let r = at(
        &a,
        "PUT",
        "/tables/gone",
        json!({"causal-metadata": created}),
    );
    assert_eq!(r.status, 201, "{r:?}");
    // Two writes that saw only the creation: siblings, at two replicas.
    let path = "/tables/carts/key-value-store/cart";
    let mut ctx = created.clone();
    for (i, v) in [(1, "apple"), (2, "pear")] {
        let body = json!({"value": v, "causal-metadata": created});
        let r = at(cluster.addr(i), "PUT", path, body);
        assert!(r.status == 200 || r.status == 201, "{r:?}");
        ctx = merge(&ctx, &r.ctx());
    }
    let r = at(
        &a,
        "DELETE",
        "/tables/gone",
        json!({"causal-metadata": ctx}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    ctx = merge(&ctx, &r.ctx());
    let both = vec!["\"apple\"".to_string(), "\"pear\"".to_string()];
    for addr in cluster.addrs() {
        assert_eq!(values(&addr, path, &ctx), (300, both.clone()), "at {addr}");
    }

    cluster.kill_all();
    cluster.restart_all();
    for addr in cluster.addrs() {
        assert_eq!(
            values(&addr, path, &ctx),
            (300, both.clone()),
            "after restart at {addr}"
        );
        let r = at(&addr, "GET", "/tables", json!({"causal-metadata": ctx}));
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(
            r.body["tables"],
            json!([{"name": "carts", "siblings": true, "keys": 1}]),
            "at {addr}"
        );
    }
    // The siblings resolve after the restart as before it.
    let r = at(
        cluster.addr(2),
        "PUT",
        path,
        json!({"value": "both", "causal-metadata": ctx}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let resolved = merge(&ctx, &r.ctx());
    client::poll(
        Duration::from_secs(30),
        "the covering write everywhere",
        || {
            for addr in cluster.addrs() {
                let got = values(&addr, path, &resolved);
                if got != (200, vec!["\"both\"".to_string()]) {
                    return Err(format!("{addr} answers {got:?}"));
                }
            }
            Ok(())
        },
    );
}
