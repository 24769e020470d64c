//! Write concern: a write answered only once `W` replicas hold it, and a
//! 503 that says the write is kept when they do not in time.

use serde_json::json;

use crate::client::{self, REQUEST};
use crate::common::Reply;
use crate::harness::{Cluster, Data};

fn put_with(addr: &str, key: &str, query: &str, value: i64) -> Reply {
    let body = json!({"value": value, "causal-metadata": ""});
    let path = format!("{}{query}", crate::common::kv_path(key));
    client::call("PUT", addr, &path, Some(&body), REQUEST).expect("PUT")
}

pub fn a_write_waits_for_its_concern_and_is_kept_when_it_is_not_met() {
    let mut cluster = Cluster::start_with(3, Data::Durable, &[("CAUSAL_WAIT_MS", "1500")]);
    cluster.wait_views();
    let a = cluster.addr(0).to_string();
    for (i, query) in ["?w=all", "?w=majority", "?w=3", "?w=1"].iter().enumerate() {
        let r = put_with(&a, &format!("k{i}"), query, 1);
        assert_eq!(r.status, 201, "{query}: {r:?}");
        if *query == "?w=all" {
            // Held by every replica when answered: each holds it at once.
            for j in 1..3 {
                let got = client::peek(cluster.addr(j), "k0").expect("GET");
                assert_eq!(got.status, 200, "replica {j} lacks a w=all write: {got:?}");
            }
        }
    }
    for bad in ["?w=0", "?w=most", "?w="] {
        let r = put_with(&a, "bad", bad, 1);
        assert_eq!(r.status, 400, "{bad}: {r:?}");
        assert_eq!(
            r.body["error"],
            json!("Write concern must be a positive number, majority or all")
        );
    }

    // One replica down: `all` cannot be met; the write is made all the same.
    cluster.kill(2);
    let r = put_with(&a, "short", "?w=all", 7);
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(
        r.body["error"],
        json!("Write concern not met: the write is kept here and will still spread")
    );
    assert_eq!(r.body["replicas-needed"], json!(3), "{r:?}");
    assert!(r.body["causal-metadata"].is_object(), "{r:?}");
    let got = client::get(&a, "short", &r.body["causal-metadata"]).expect("GET");
    assert_eq!(
        (got.status, &got.body["value"]),
        (200, &json!(7)),
        "{got:?}"
    );
    // Two of three still make a majority.
    let r = put_with(&a, "two", "?w=majority", 2);
    assert_eq!(r.status, 201, "{r:?}");

    // Back up: the kept write reaches it.
    cluster.restart(2);
    client::wait_contents(&cluster.addrs(), &[("short".to_string(), Some(json!(7)))]);
}
