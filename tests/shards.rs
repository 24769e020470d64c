//! End-to-end tests of a sharded store (SPEC's "Shards"), against real
//! processes: the family's six-node scenario with a seventh node and a
//! reshard, causality across shards, nodes killed in every shard, and a
//! reshard while clients write.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use awc::http::Method;
use serde_json::{json, Value};

use common::{wait_until, Body, Options, Reply, TestCluster, DEADLINE};

/// Six nodes started with `SHARD_COUNT=2`.
async fn six_nodes_two_shards() -> TestCluster {
    Options::default().env("SHARD_COUNT", 2).start(6).await
}

async fn shard_get(c: &TestCluster, i: usize, path: &str) -> Reply {
    let r = c
        .request(
            i,
            Method::GET,
            &format!("/key-value-store-shard/{path}"),
            &[],
            Body::None,
        )
        .await;
    assert_eq!(r.status, 200, "GET {path} at node {i}: {r:?}");
    r.assert_json();
    r
}

async fn shard_ids(c: &TestCluster, i: usize) -> Vec<u64> {
    let r = shard_get(c, i, "shard-ids").await;
    assert_eq!(r.body["message"], "Shard IDs retrieved successfully");
    r.body["shard-ids"]
        .as_array()
        .expect("a list of shard ids")
        .iter()
        .map(|id| id.as_u64().expect("a shard id"))
        .collect()
}

async fn node_shard(c: &TestCluster, i: usize) -> Value {
    let r = shard_get(c, i, "node-shard-id").await;
    assert_eq!(
        r.body["message"],
        "Shard ID of the node retrieved successfully"
    );
    r.body["shard-id"].clone()
}

async fn members(c: &TestCluster, i: usize, id: u64) -> Vec<String> {
    let r = shard_get(c, i, &format!("shard-id-members/{id}")).await;
    assert_eq!(
        r.body["message"],
        "Members of shard ID retrieved successfully"
    );
    serde_json::from_value(r.body["shard-id-members"].clone()).expect("a list of members")
}

async fn key_count(c: &TestCluster, i: usize, id: u64) -> u64 {
    let r = shard_get(c, i, &format!("shard-id-key-count/{id}")).await;
    assert_eq!(
        r.body["message"],
        "Key count of shard ID retrieved successfully"
    );
    r.body["shard-id-key-count"].as_u64().expect("a key count")
}

async fn reshard(c: &TestCluster, i: usize, count: u64) -> Reply {
    c.request(
        i,
        Method::PUT,
        "/key-value-store-shard/reshard",
        &[],
        Body::Json(json!({"shard-count": count})),
    )
    .await
}

/// Asks node `at` to place node `who` in shard `id` (add-member).
async fn add_member(c: &TestCluster, at: usize, id: u64, who: usize) -> Reply {
    c.request(
        at,
        Method::PUT,
        &format!("/key-value-store-shard/add-member/{id}"),
        &[],
        Body::Json(json!({"socket-address": c.addr(who)})),
    )
    .await
}

/// Puts `key` at node `i`, which must accept it; returns the answer.
async fn put(c: &TestCluster, i: usize, key: &str, value: Value, ctx: &Value) -> Reply {
    let r = c.put(i, key, value, ctx).await;
    assert!(
        r.status == 200 || r.status == 201,
        "PUT {key} at node {i}: {r:?}"
    );
    r
}

/// Waits until every node prints a view of `n` nodes.
async fn wait_view_size(c: &TestCluster, at: &[usize], n: usize) {
    wait_until(DEADLINE, &format!("views of {n} nodes"), || async {
        let mut all = true;
        for &i in at {
            let view = c.try_view(i).await.unwrap_or_default();
            all &= view.split(',').filter(|a| !a.is_empty()).count() == n;
        }
        all
    })
    .await;
}

#[actix_web::test]
async fn the_family_scenario_six_nodes_a_seventh_added_then_three_shards() {
    let mut c = six_nodes_two_shards().await;
    wait_view_size(&c, &[0, 1, 2, 3, 4, 5], 6).await;
    // Two shards, three members each, the same answer everywhere.
    for i in 0..6 {
        assert_eq!(shard_ids(&c, i).await, vec![1, 2]);
    }
    let mut sizes = BTreeMap::new();
    for id in [1, 2] {
        let m = members(&c, 0, id).await;
        sizes.insert(id, m.len());
        for addr in &m {
            let i = (0..6)
                .find(|&i| c.addr(i) == addr)
                .expect("a member is a node");
            assert_eq!(node_shard(&c, i).await, json!(id));
        }
    }
    assert_eq!(sizes.values().sum::<usize>(), 6);
    assert!(sizes.values().all(|&n| n >= 2), "{sizes:?}");

    // 600 keys through every node: each answer names the key's shard.
    let mut ctx = json!("");
    let mut shard_of = BTreeMap::new();
    for k in 0..600 {
        let key = format!("key{k}");
        let r = put(&c, k % 6, &key, json!(format!("value{k}")), &ctx).await;
        assert_eq!(r.status, 201, "{r:?}");
        let shard = r.body["shard-id"].as_u64().expect("shard-id in the answer");
        shard_of.insert(key, shard);
        ctx = r.ctx();
    }
    let counts = [key_count(&c, 3, 1).await, key_count(&c, 3, 2).await];
    assert_eq!(counts.iter().sum::<u64>(), 600);
    for (i, id) in [1u64, 2].iter().enumerate() {
        let expected = shard_of.values().filter(|s| *s == id).count() as u64;
        assert_eq!(counts[i], expected, "shard {id}");
        // The family's bound on spread: within 25% of the mean.
        assert!((225..=375).contains(&counts[i]), "{counts:?}");
    }

    // A seventh node, started without SHARD_COUNT, joins the view and
    // waits for add-member; then holds its shard's keys.
    let seventh = c.add_replica_without("SHARD_COUNT").await;
    wait_view_size(&c, &[0, seventh], 7).await;
    assert_eq!(node_shard(&c, seventh).await, Value::Null);
    let r = add_member(&c, 1, 2, seventh).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["message"], "Node added to shard successfully");
    wait_until(DEADLINE, "the seventh node placed in shard 2", || async {
        shard_get(&c, seventh, "node-shard-id").await.body["shard-id"] == json!(2)
    })
    .await;
    assert!(members(&c, 0, 2)
        .await
        .contains(&c.addr(seventh).to_string()));
    let expected = counts[1];
    wait_until(
        DEADLINE,
        "the seventh node holding its shard's keys",
        || async { key_count(&c, seventh, 2).await == expected },
    )
    .await;

    // Ten shards need twenty nodes; three are done.
    let r = reshard(&c, 4, 10).await;
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(
        r.body,
        json!({"message": "Not enough nodes to provide fault-tolerance with the given shard count!"})
    );
    let r = reshard(&c, 4, 3).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["message"], "Resharding done successfully");
    for i in 0..7 {
        assert_eq!(shard_ids(&c, i).await, vec![1, 2, 3], "node {i}");
    }
    let mut placed = BTreeSet::new();
    let mut total = 0;
    for id in [1, 2, 3] {
        let m = members(&c, 5, id).await;
        assert!(m.len() >= 2, "shard {id}: {m:?}");
        placed.extend(m);
        total += key_count(&c, 5, id).await;
    }
    assert_eq!(placed.len(), 7, "every node placed once: {placed:?}");
    assert_eq!(total, 600);
    // Every node serves in its new shard: none was taken for removed by
    // what its old group decided.
    for i in 0..7 {
        wait_until(
            DEADLINE,
            &format!("node {i} ready in its shard"),
            || async {
                let h = c.health(i).await;
                h["ready"] == json!(true) && h["removed"] == json!(false)
            },
        )
        .await;
    }
    // Every key is still readable, at any node, with the writer's context
    // and without one.
    for k in (0..600).step_by(7) {
        let key = format!("key{k}");
        for (i, context) in [(k % 7, &ctx), ((k + 3) % 7, &json!(""))] {
            let r = c.get(i, &key, context).await;
            assert_eq!(r.status, 200, "{key} at node {i}: {r:?}");
            assert_eq!(r.body["value"], json!(format!("value{k}")));
        }
    }
}

#[actix_web::test]
async fn a_context_from_one_shard_is_honoured_in_another() {
    let mut c = six_nodes_two_shards().await;
    wait_view_size(&c, &[0, 1, 2, 3, 4, 5], 6).await;
    // Two keys in different shards.
    let shard_of = |r: &Reply| r.body["shard-id"].as_u64().unwrap();
    let probe = put(&c, 0, "x", json!("x0"), &json!("")).await;
    let x_shard = shard_of(&probe);
    let mut y = None;
    for k in 0..100 {
        let key = format!("y{k}");
        let r = c.get(0, &key, &json!("")).await;
        if r.body["shard-id"].as_u64() != Some(x_shard) {
            y = Some(key);
            break;
        }
    }
    let y = y.expect("a key in the other shard");
    let x_nodes = nodes_of(&c, x_shard).await;
    let y_nodes = nodes_of(&c, 3 - x_shard).await;
    // One member of x's shard misses the next write of x for a while.
    let lagging = x_nodes[1];
    c.pause(lagging);
    let ctx = put(&c, x_nodes[0], "x", json!("x1"), &probe.ctx())
        .await
        .ctx();
    // y is written by a client that saw x1.
    put(&c, y_nodes[0], &y, json!("y1"), &ctx).await;
    // Another client reads y without any context: what it learns names
    // x's write too, so the lagging member does not serve it x0.
    let read = common::wait_for(DEADLINE, "y1 replicated in its shard", || async {
        let r = c.get(y_nodes[1], &y, &json!("")).await;
        if r.status == 200 {
            Ok(r)
        } else {
            Err(format!("{r:?}"))
        }
    })
    .await;
    assert_eq!(read.body["value"], json!("y1"));
    // What it learned names x1's write (the context is opaque to clients;
    // the test looks inside to be sure the dependency travelled).
    let x1 = ctx
        .as_object()
        .expect("a context is an object")
        .iter()
        .max_by_key(|(_, n)| n.as_u64())
        .map(|(id, n)| (id.clone(), n.as_u64().unwrap()))
        .expect("x1's writer");
    let learned = read.ctx();
    assert!(
        learned.get(&x1.0).and_then(Value::as_u64) >= Some(x1.1),
        "reading y1 must hand over its dependency {x1:?}: {learned}"
    );
    c.resume(lagging);
    let r = c.get(lagging, "x", &read.ctx()).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["value"], json!("x1"), "the read of y1 must carry x1");
    // Relayed through a node of the other shard, the same.
    let r = c.get(y_nodes[2], "x", &read.ctx()).await;
    assert_eq!(r.body["value"], json!("x1"), "{r:?}");
}

#[actix_web::test]
async fn a_node_of_every_shard_killed_the_others_serve_every_key() {
    let mut c = six_nodes_two_shards().await;
    wait_view_size(&c, &[0, 1, 2, 3, 4, 5], 6).await;
    let mut ctx = json!("");
    for k in 0..60 {
        ctx = put(&c, k % 6, &format!("k{k}"), json!(k), &ctx).await.ctx();
    }
    let (one, two) = (nodes_of(&c, 1).await, nodes_of(&c, 2).await);
    c.kill(one[0]);
    c.kill(two[0]);
    let alive: Vec<usize> = (0..6).filter(|i| *i != one[0] && *i != two[0]).collect();
    wait_view_size(&c, &alive, 4).await;
    for k in 0..60 {
        let i = alive[k % 4];
        let r = c.get(i, &format!("k{k}"), &ctx).await;
        assert_eq!(r.status, 200, "k{k} at node {i}: {r:?}");
        assert_eq!(r.body["value"], json!(k));
    }
    for k in 0..20 {
        ctx = put(&c, alive[k % 4], &format!("k{k}"), json!(k + 100), &ctx)
            .await
            .ctx();
    }
    for k in 0..20 {
        let r = c.get(alive[(k + 1) % 4], &format!("k{k}"), &ctx).await;
        assert_eq!(r.body["value"], json!(k + 100), "{r:?}");
    }
}

#[actix_web::test]
async fn a_reshard_while_clients_write_loses_no_acknowledged_write() {
    let mut c = six_nodes_two_shards().await;
    wait_view_size(&c, &[0, 1, 2, 3, 4, 5], 6).await;
    let addrs: Vec<String> = (0..6).map(|i| c.addr(i).to_string()).collect();
    let acked: Arc<Mutex<BTreeMap<String, (Value, Value)>>> = Arc::default();
    let failed: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Two writers, each in its own thread and keys, carrying its context.
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (addrs, acked, failed, stop) =
                (addrs.clone(), acked.clone(), failed.clone(), stop.clone());
            std::thread::spawn(move || {
                actix_rt::System::new().block_on(async move {
                    let mut ctx = json!("");
                    for n in 0..2000 {
                        if stop.load(std::sync::atomic::Ordering::Relaxed) {
                            break;
                        }
                        let key = format!("w{w}k{}", n % 97);
                        let value = json!(format!("{w}-{n}"));
                        let at = &addrs[(n * 5 + w) % addrs.len()];
                        let body = json!({"value": value, "causal-metadata": ctx});
                        match common::request(
                            at,
                            Method::PUT,
                            &common::kv_path(&key),
                            &[],
                            Body::Json(body),
                        )
                        .await
                        {
                            Ok(r) if r.status == 200 || r.status == 201 => {
                                ctx = r.ctx();
                                acked.lock().unwrap().insert(key, (value, ctx.clone()));
                            }
                            Ok(r) => failed.lock().unwrap().push(format!("{key}: {r:?}")),
                            Err(e) => failed.lock().unwrap().push(format!("{key}: {e}")),
                        }
                    }
                })
            })
        })
        .collect();
    let wait_writes = |n: usize| {
        let acked = acked.clone();
        async move {
            wait_until(DEADLINE, "writes going on", || {
                let acked = acked.clone();
                async move { acked.lock().unwrap().len() >= n }
            })
            .await
        }
    };
    wait_writes(40).await;
    for (count, at) in [(3, 2), (2, 5)] {
        let r = reshard(&c, at, count).await;
        assert_eq!(r.status, 200, "reshard to {count}: {r:?}");
        tokio_sleep(Duration::from_millis(300)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        w.join().expect("writer");
    }
    let failed = failed.lock().unwrap().clone();
    assert!(
        failed.is_empty(),
        "writes failed during the reshard: {failed:?}"
    );
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 40);
    for (n, (key, (value, ctx))) in acked.iter().enumerate() {
        let r = c.get(n % 6, key, ctx).await;
        assert_eq!(r.status, 200, "{key}: {r:?}");
        assert_eq!(
            &r.body["value"], value,
            "{key} lost its last acknowledged write"
        );
    }
    let total: u64 = {
        let mut total = 0;
        for id in shard_ids(&c, 0).await {
            total += key_count(&c, 0, id).await;
        }
        total
    };
    assert_eq!(total, acked.len() as u64, "every key held once");
    c.kill(5);
}

#[actix_web::test]
async fn an_unsharded_store_is_one_shard_and_refuses_resharding() {
    let c = TestCluster::start(3).await;
    assert_eq!(shard_ids(&c, 0).await, vec![1]);
    assert_eq!(node_shard(&c, 1).await, json!(1));
    assert_eq!(members(&c, 2, 1).await.len(), 3);
    c.put(0, "a", json!(1), &json!("")).await;
    wait_until(DEADLINE, "the key counted", || async {
        key_count(&c, 1, 1).await == 1
    })
    .await;
    let r = c.put(0, "b", json!(2), &json!("")).await;
    assert!(
        r.body.get("shard-id").is_none(),
        "unsharded answers are as before: {r:?}"
    );
    let r = reshard(&c, 0, 2).await;
    assert_eq!(r.status, 400, "{r:?}");
    r.assert_json();
    let r = c
        .request(
            0,
            Method::GET,
            "/key-value-store-shard/shard-id-members/7",
            &[],
            Body::None,
        )
        .await;
    assert_eq!(r.status, 404, "{r:?}");
    r.assert_json();
}

/// A node with a `DATA_DIR` whose `VIEW` names a sharded store refuses to
/// join it (a sharded node keeps its state in memory only, as `SHARD_COUNT`
/// with `DATA_DIR` is refused at start): it stops with a clear error
/// instead of becoming a node whose disk the store does not account for.
#[actix_rt::test]
async fn a_node_with_a_data_dir_refuses_to_join_a_sharded_store() {
    let c = six_nodes_two_shards().await;
    let addr = format!("127.0.0.1:{}", common::free_ports(1)[0]);
    let view: Vec<String> = (0..c.len())
        .map(|i| c.addr(i).to_string())
        .chain([addr.clone()])
        .collect();
    let data = c.log_dir().join("seventh-data");
    let log = c.log_dir().join("seventh.log");
    let out = std::fs::File::create(&log).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_causalkv"))
        .env_clear()
        .env("SOCKET_ADDRESS", &addr)
        .env("VIEW", view.join(","))
        .env("DATA_DIR", &data)
        .stdin(std::process::Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("spawn causalkv");
    let deadline = std::time::Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "the node did not stop: {}",
                std::fs::read_to_string(&log).unwrap()
            );
        }
        tokio_sleep(Duration::from_millis(50)).await;
    };
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(2), "{text}");
    assert!(
        text.contains("causalkv: DATA_DIR") && text.contains("sharded"),
        "{text}"
    );
    // The store goes on without it.
    assert_eq!(shard_ids(&c, 0).await, vec![1, 2]);
}

/// The indexes of the members of shard `id`.
async fn nodes_of(c: &TestCluster, id: u64) -> Vec<usize> {
    let m = members(c, 0, id).await;
    (0..c.len())
        .filter(|&i| m.contains(&c.addr(i).to_string()))
        .collect()
}

async fn tokio_sleep(d: Duration) {
    actix_rt::time::sleep(d).await;
}

#[actix_web::test]
async fn concurrent_reshards_are_refused_never_interleaved() {
    let c = six_nodes_two_shards().await;
    wait_view_size(&c, &[0, 1, 2, 3, 4, 5], 6).await;
    let mut ctx = json!("");
    for k in 0..120 {
        ctx = put(&c, k % 6, &format!("k{k}"), json!(k), &ctx).await.ctx();
    }
    // Two reshards at once, at two nodes, to two different counts.
    let (a, b) = futures_util::future::join(reshard(&c, 0, 3), reshard(&c, 3, 1)).await;
    for r in [&a, &b] {
        assert!(
            [200, 409, 503].contains(&r.status),
            "a reshard answers done, busy or undone: {r:?}"
        );
        r.assert_json();
    }
    // Whatever happened, the store holds one placement everywhere and
    // every key once.
    let ids = shard_ids(&c, 0).await;
    let expected: Vec<u64> = match (a.status, b.status) {
        (200, 200) => panic!("two reshards at once both done: {a:?} {b:?}"),
        (200, _) => vec![1, 2, 3],
        (_, 200) => vec![1],
        _ => vec![1, 2],
    };
    assert_eq!(ids, expected, "{a:?} {b:?}");
    for i in 1..6 {
        wait_until(DEADLINE, "every node holding the same shards", || async {
            shard_ids(&c, i).await == expected
        })
        .await;
    }
    let mut total = 0;
    for id in &ids {
        total += key_count(&c, 0, *id).await;
    }
    assert_eq!(total, 120);
    for k in (0..120).step_by(11) {
        let r = c.get(k % 6, &format!("k{k}"), &ctx).await;
        assert_eq!(r.body["value"], json!(k), "{r:?}");
    }
    // And a reshard afterwards is not refused for good.
    let r = reshard(&c, 5, 2).await;
    assert_eq!(r.status, 200, "{r:?}");
}

#[actix_web::test]
async fn a_view_change_during_a_reshard_and_the_reshard_both_hold_when_both_are_answered_done() {
    let c = Options::default().env("SHARD_COUNT", 2).start(7).await;
    let all: Vec<usize> = (0..7).collect();
    wait_view_size(&c, &all, 7).await;
    let mut ctx = json!("");
    for k in 0..2_000 {
        ctx = put(&c, k % 7, &format!("k{k}"), json!(k), &ctx).await.ctx();
    }
    // Of two maps of one version, the one made by the larger address
    // wins: the reshard is coordinated by the largest, the view DELETE
    // sent to the smallest, so that a DELETE made on the map the reshard
    // started from would lose to it (and the removed node come back).
    let by_addr = |i: &&usize| c.addr(**i).to_string();
    let coordinator = *all.iter().max_by_key(by_addr).expect("nodes");
    let at = *all.iter().min_by_key(by_addr).expect("nodes");
    let gone = *all
        .iter()
        .find(|i| ![coordinator, at].contains(i))
        .expect("a third node");
    let delete = async {
        // Once the reshard has begun (and, unless it is very quick, is
        // under way).
        tokio_sleep(Duration::from_millis(30)).await;
        c.change_view(at, false, c.addr(gone)).await
    };
    let (done, deleted) = futures_util::future::join(reshard(&c, coordinator, 3), delete).await;
    assert!(
        [200, 409, 503].contains(&done.status),
        "a reshard answers done, busy or undone: {done:?}"
    );
    assert_eq!(deleted.status, 200, "{deleted:?}");
    let others: Vec<usize> = all.iter().copied().filter(|&i| i != gone).collect();
    let expected: Vec<u64> = if done.status == 200 {
        vec![1, 2, 3]
    } else {
        vec![1, 2]
    };
    for &i in &others {
        wait_until(
            DEADLINE,
            &format!("node {i}: the reshard's shards, and the removed node in none of them"),
            || async {
                let ids = shard_ids(&c, i).await;
                let mut out = ids == expected;
                for id in ids {
                    out &= !members(&c, i, id).await.contains(&c.addr(gone).to_string());
                }
                out
            },
        )
        .await;
    }
    for k in (0..2_000).step_by(37) {
        let i = others[k % others.len()];
        let r = c.get(i, &format!("k{k}"), &ctx).await;
        assert_eq!(r.body["value"], json!(k), "k{k} at node {i}: {r:?}");
    }
}

/// Sends view DELETEs of a node of each shard at once, to `at[0]` and
/// `at[1]`, and checks both hold at every node left.
async fn two_view_changes_at_once(at: impl Fn(&[usize], &[usize]) -> [usize; 2]) {
    let c = six_nodes_two_shards().await;
    wait_view_size(&c, &[0, 1, 2, 3, 4, 5], 6).await;
    let (one, two) = (nodes_of(&c, 1).await, nodes_of(&c, 2).await);
    let gone = [one[2], two[2]];
    let at = at(&one, &two);
    let (a, b) = futures_util::future::join(
        c.change_view(at[0], false, c.addr(gone[0])),
        c.change_view(at[1], false, c.addr(gone[1])),
    )
    .await;
    assert_eq!((a.status, b.status), (200, 200), "{a:?} {b:?}");
    for i in (0..6).filter(|i| !gone.contains(i)) {
        wait_until(
            DEADLINE,
            &format!("node {i}: both nodes out of the shards"),
            || async {
                let mut out = true;
                for id in [1, 2] {
                    let held = members(&c, i, id).await;
                    out &= gone.iter().all(|g| !held.contains(&c.addr(*g).to_string()));
                }
                out
            },
        )
        .await;
    }
}

#[actix_web::test]
async fn view_changes_sent_at_once_to_one_node_both_hold() {
    // Made at once on two workers of one node, two changes could each take
    // the map's next version: then only one would stay at the nodes,
    // though both were answered as done.
    two_view_changes_at_once(|one, _| [one[0], one[0]]).await;
}

#[actix_web::test]
async fn view_changes_sent_at_once_to_two_nodes_both_hold() {
    // Each node makes the map's next version with its own change; of the
    // two, the one made by the larger address stays everywhere, and the
    // other node makes its change again on it.
    two_view_changes_at_once(|one, two| [one[0], two[0]]).await;
}

#[actix_web::test]
async fn a_node_deleted_from_the_view_leaves_its_shard() {
    let c = six_nodes_two_shards().await;
    wait_view_size(&c, &[0, 1, 2, 3, 4, 5], 6).await;
    let shard_one = nodes_of(&c, 1).await;
    let gone = shard_one[2];
    let at = nodes_of(&c, 2).await[0];
    let r = c.change_view(at, false, c.addr(gone)).await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = c.change_view(at, false, c.addr(gone)).await;
    assert_eq!(r.status, 404, "{r:?}");
    wait_until(DEADLINE, "the node out of its shard everywhere", || async {
        let mut out = true;
        for i in (0..6).filter(|i| *i != gone) {
            out &= !members(&c, i, 1).await.contains(&c.addr(gone).to_string());
        }
        out
    })
    .await;
    wait_until(DEADLINE, "the node itself placed in no shard", || async {
        node_shard(&c, gone).await == Value::Null
    })
    .await;
    assert!(
        !c.view(at).await.contains(c.addr(gone)),
        "a removed node stays out of the view"
    );
    // Added back as a node, then placed again: it copies its shard's keys.
    let r = c.change_view(at, true, c.addr(gone)).await;
    assert!(r.status == 201 || r.status == 404, "{r:?}");
    let ctx = put(&c, shard_one[0], "after", json!(1), &json!(""))
        .await
        .ctx();
    let r = add_member(&c, at, 1, gone).await;
    assert_eq!(r.status, 200, "{r:?}");
    wait_until(DEADLINE, "the node back in shard 1", || async {
        node_shard(&c, gone).await == json!(1)
    })
    .await;
    let r = c.get(gone, "after", &ctx).await;
    assert_eq!(r.status, 200, "{r:?}");
}

#[actix_web::test]
async fn a_reshard_right_after_nodes_die_deals_only_the_living() {
    let mut c = six_nodes_two_shards().await;
    wait_view_size(&c, &[0, 1, 2, 3, 4, 5], 6).await;
    let mut ctx = json!("");
    for k in 0..60 {
        ctx = put(&c, k % 6, &format!("k{k}"), json!(k), &ctx).await.ctx();
    }
    // A node of each shard dies; at once (well within the failure
    // timeout), a reshard to two shards of the four left.
    let (one, two) = (nodes_of(&c, 1).await, nodes_of(&c, 2).await);
    c.kill(one[0]);
    c.kill(two[0]);
    let alive: Vec<usize> = (0..6).filter(|i| *i != one[0] && *i != two[0]).collect();
    let r = reshard(&c, alive[0], 2).await;
    assert_eq!(r.status, 200, "{r:?}");
    let mut placed = 0;
    for id in [1, 2] {
        let m = members(&c, alive[1], id).await;
        assert!(
            m.iter().all(|a| a != c.addr(one[0]) && a != c.addr(two[0])),
            "{m:?}"
        );
        placed += m.len();
    }
    assert_eq!(placed, 4);
    for k in 0..60 {
        let r = c.get(alive[k % 4], &format!("k{k}"), &ctx).await;
        assert_eq!(r.body["value"], json!(k), "{r:?}");
    }
    // Three shards need six live nodes.
    let r = reshard(&c, alive[0], 3).await;
    assert_eq!(r.status, 400, "{r:?}");
}

#[actix_web::test]
async fn a_reshard_is_refused_while_no_member_of_a_shard_answers() {
    let mut c = six_nodes_two_shards().await;
    wait_view_size(&c, &[0, 1, 2, 3, 4, 5], 6).await;
    let mut ctx = json!("");
    for k in 0..30 {
        ctx = put(&c, k % 6, &format!("k{k}"), json!(k), &ctx).await.ctx();
    }
    // Every member of shard 2 is cut off (killed here): nobody could hand
    // its keys over, so a reshard would serve them from replicas that
    // never held them.
    let two = nodes_of(&c, 2).await;
    for &i in &two {
        c.kill(i);
    }
    let alive: Vec<usize> = (0..6).filter(|i| !two.contains(i)).collect();
    let r = reshard(&c, alive[0], 1).await;
    assert_eq!(r.status, 503, "{r:?}");
    assert!(
        r.body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("shard 2"),
        "{r:?}"
    );
    // A new member of shard 2, with nobody to copy the shard's state from:
    // it answers, but holds none of the shard's keys, which a reshard would
    // then serve as absent.
    let new = c.add_replica_without("SHARD_COUNT").await;
    let r = add_member(&c, alive[0], 2, new).await;
    assert_eq!(r.status, 200, "{r:?}");
    wait_until(DEADLINE, "the new node placed in shard 2", || async {
        node_shard(&c, new).await == json!(2)
    })
    .await;
    let r = reshard(&c, alive[0], 1).await;
    assert_eq!(r.status, 503, "{r:?}");
    let error = r.body["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("shard 2") && error.contains("copying"),
        "{r:?}"
    );
    // Nothing moved: both shards are still there, shard 1 with its keys.
    assert_eq!(shard_ids(&c, alive[1]).await, vec![1, 2]);
    let layout = causalkv::shard::Layout::new(2);
    for k in (0..30).filter(|k| layout.shard_of(&format!("k{k}")) == 0) {
        let r = c.get(alive[k % 3], &format!("k{k}"), &ctx).await;
        assert_eq!(r.body["value"], json!(k), "{r:?}");
    }
}

async fn table_request(
    c: &TestCluster,
    i: usize,
    method: Method,
    path: &str,
    body: Value,
) -> Reply {
    let r = c.request(i, method, path, &[], Body::Json(body)).await;
    r.assert_json();
    r
}

/// The tables node `i` lists, as `name -> (siblings, keys)`.
async fn tables_at(c: &TestCluster, i: usize, ctx: &Value) -> BTreeMap<String, (bool, u64)> {
    let body = json!({"causal-metadata": ctx});
    let r = table_request(c, i, Method::GET, "/tables", body).await;
    assert_eq!(r.status, 200, "{r:?}");
    r.body["tables"]
        .as_array()
        .expect("a list of tables")
        .iter()
        .map(|t| {
            let name = t["name"].as_str().expect("a name").to_string();
            let keys = t["keys"].as_u64().expect("a count");
            (name, (t["siblings"].as_bool().expect("a setting"), keys))
        })
        .collect()
}

#[actix_web::test]
async fn tables_live_in_every_shard_and_keep_their_keys_through_a_reshard() {
    let c = six_nodes_two_shards().await;
    wait_view_size(&c, &[0, 1, 2, 3, 4, 5], 6).await;
    let r = table_request(&c, 0, Method::PUT, "/tables/users", json!({})).await;
    assert_eq!(r.status, 201, "{r:?}");
    let mut ctx = r.ctx();
    let r = table_request(
        &c,
        3,
        Method::PUT,
        "/tables/users",
        json!({"causal-metadata": ctx}),
    )
    .await;
    assert_eq!(r.status, 200, "created once for the whole store: {r:?}");
    // Keys of the table spread over both shards, written at any node.
    for k in 0..40 {
        let path = format!("/tables/users/key-value-store/u{k}");
        let body = json!({"value": k, "causal-metadata": ctx});
        let r = table_request(&c, k % 6, Method::PUT, &path, body).await;
        assert_eq!(r.status, 201, "{r:?}");
        assert!(r.body["shard-id"].is_u64(), "{r:?}");
        ctx = r.ctx();
    }
    let shards: BTreeSet<u64> = {
        let mut seen = BTreeSet::new();
        for k in 0..40 {
            let path = format!("/tables/users/key-value-store/u{k}");
            let r = table_request(
                &c,
                (k + 1) % 6,
                Method::GET,
                &path,
                json!({"causal-metadata": ctx}),
            )
            .await;
            assert_eq!(r.body["value"], json!(k), "{r:?}");
            seen.insert(r.body["shard-id"].as_u64().expect("a shard"));
        }
        seen
    };
    assert_eq!(shards.len(), 2, "the table's keys live in both shards");
    for i in 0..6 {
        assert_eq!(tables_at(&c, i, &ctx).await["users"], (false, 40));
    }
    // The default store keeps its own key of the same name.
    let r = c.get(2, "u1", &ctx).await;
    assert_eq!(r.status, 404, "{r:?}");
    // A reshard to three shards: every new shard holds the table.
    let r = reshard(&c, 4, 3).await;
    assert_eq!(r.status, 200, "{r:?}");
    for k in 0..40 {
        let path = format!("/tables/users/key-value-store/u{k}");
        let r = table_request(
            &c,
            k % 6,
            Method::GET,
            &path,
            json!({"causal-metadata": ctx}),
        )
        .await;
        assert_eq!(r.body["value"], json!(k), "after the reshard: {r:?}");
    }
    for i in 0..6 {
        assert_eq!(tables_at(&c, i, &ctx).await["users"], (false, 40));
    }
    // Dropped everywhere: every shard forgets it.
    let r = table_request(
        &c,
        1,
        Method::DELETE,
        "/tables/users",
        json!({"causal-metadata": ctx}),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    ctx = r.ctx();
    for i in 0..6 {
        assert!(tables_at(&c, i, &ctx).await.is_empty());
        let path = "/tables/users/key-value-store/u7";
        let r = table_request(&c, i, Method::GET, path, json!({"causal-metadata": ctx})).await;
        assert_eq!(r.status, 404, "{r:?}");
        assert_eq!(r.body["error"], "Table does not exist");
    }
}

/// Many requests relayed at once (so in batches) are each answered as the
/// key's shard answers it: writes, reads, deletes, conditions, bad bodies
/// and keys of a table.
#[actix_web::test]
async fn requests_relayed_together_are_each_answered_as_their_shard_answers() {
    let c = six_nodes_two_shards().await;
    wait_view_size(&c, &[0, 1, 2, 3, 4, 5], 6).await;
    let home = node_shard(&c, 0).await.as_u64().unwrap();
    // Keys of the other shard: node 0 relays every request for them.
    let mut keys = Vec::new();
    for k in 0.. {
        let key = format!("far{k}");
        let r = c.get(0, &key, &json!("")).await;
        assert_eq!(r.status, 404, "{r:?}");
        if r.body["shard-id"].as_u64() != Some(home) {
            keys.push(key);
        }
        if keys.len() == 40 {
            break;
        }
    }
    let none = json!("");
    let puts = (keys.iter().enumerate()).map(|(i, k)| put(&c, 0, k, json!(i), &none));
    let written = futures_util::future::join_all(puts).await;
    let mut ctx = serde_json::Map::new();
    for (r, k) in written.iter().zip(&keys) {
        assert_eq!(r.status, 201, "PUT {k}: {r:?}");
        assert_eq!(r.body["message"], "Added successfully");
        assert_ne!(r.body["shard-id"].as_u64(), Some(home), "{r:?}");
        ctx.extend(r.ctx().as_object().unwrap().clone());
    }
    let ctx = Value::Object(ctx);
    // Reads, conditional writes, deletes and bad bodies, all at once.
    let etag = c.get(0, &keys[0], &ctx).await.etag.expect("an entity tag");
    let asks = keys.iter().enumerate().map(|(i, k)| {
        let (c, ctx, etag) = (&c, ctx.clone(), etag.clone());
        async move {
            let path = format!("/key-value-store/{k}");
            match i % 5 {
                0 => c.get(0, k, &ctx).await,
                1 => {
                    let body = Body::Json(json!({"value": "no", "causal-metadata": ctx}));
                    c.request(0, Method::PUT, &path, &[("if-none-match", "*")], body)
                        .await
                }
                2 => {
                    let body = Body::Json(json!({"causal-metadata": ctx}));
                    c.request(0, Method::DELETE, &path, &[], body).await
                }
                3 => {
                    c.request(0, Method::PUT, &path, &[], Body::Raw(b"{no".to_vec()))
                        .await
                }
                _ => {
                    let header = [("if-none-match", etag.as_str())];
                    let body = Body::Json(json!({"causal-metadata": ctx}));
                    c.request(0, Method::GET, &path, &header, body).await
                }
            }
        }
    });
    let answers = futures_util::future::join_all(asks).await;
    for (i, (r, k)) in answers.iter().zip(&keys).enumerate() {
        match i % 5 {
            0 => {
                assert_eq!(r.status, 200, "GET {k}: {r:?}");
                assert_eq!(r.body["value"], json!(i), "GET {k}");
            }
            1 => assert_eq!(r.status, 412, "PUT If-None-Match: * of {k}: {r:?}"),
            2 => assert_eq!(
                (r.status, &r.body["message"]),
                (200, &json!("Deleted successfully")),
                "{r:?}"
            ),
            3 => {
                assert_eq!(r.status, 400, "a bad body for {k}: {r:?}");
                r.assert_json();
            }
            _ if i == 0 => {}
            _ => assert_eq!(r.status, 200, "GET {k} whose tag differs: {r:?}"),
        }
    }
    // The first key's own tag: 304, tag kept.
    let header = [("if-none-match", etag.as_str())];
    let body = Body::Json(json!({"causal-metadata": ctx}));
    let path = format!("/key-value-store/{}", keys[0]);
    let r = c.request(0, Method::GET, &path, &header, body).await;
    assert_eq!(
        (r.status, r.etag.as_deref()),
        (304, Some(etag.as_str())),
        "{r:?}"
    );
    // Nothing the failed requests carried was stored.
    for (i, k) in keys
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 5 == 1 || i % 5 == 3)
    {
        let r = c.get(3, k, &ctx).await;
        assert_eq!(r.body["value"], json!(i), "{k}: {r:?}");
    }
}

/// A member refuses (503) a page of its state to a node holding a newer
/// shard map than its own: under that map it may be about to take in
/// keys handed to its shard, which a copy made before would miss for
/// good (the copier's clock would cover their writes).
#[actix_web::test]
async fn a_member_gives_its_state_only_to_a_node_whose_map_it_holds() {
    let c = six_nodes_two_shards().await;
    wait_view_size(&c, &[0, 1, 2, 3, 4, 5], 6).await;
    let health = c.health(0).await;
    let replica = health["replica"].as_str().expect("a replica id");
    let group = replica
        .split_once('#')
        .and_then(|(_, inc)| inc.split_once('.'))
        .map(|(group, _)| group)
        .expect("an incarnation named after its group");
    let page = |epoch: &'static str| {
        let c = &c;
        async move {
            let headers = [("x-causalkv-group", group), ("x-causalkv-map-epoch", epoch)];
            let body = Body::Raw(b"{}".to_vec());
            c.request(0, Method::POST, "/internal/v1/snapshot", &headers, body)
                .await
        }
    };
    let newer = page("1000000").await;
    assert_eq!(newer.status, 503, "{newer:?}");
    newer.assert_json();
    assert!(newer.text.contains("shard map"), "{newer:?}");
    // The map it holds (or an older one): the request is looked at (and
    // this one's body is refused).
    let same = page("1").await;
    assert_eq!(same.status, 400, "{same:?}");
}

/// A request relayed as often as allowed reaches a node whose shard map
/// does not place its key there. In a reshard, that node's map may be the
/// older one (the relaying node's placed the key there), so it waits for
/// its map to catch up and then serves the request; with no reshard
/// coming, it fails once the wait is over (503, not a hang).
#[actix_web::test]
async fn a_request_relayed_twice_waits_for_a_lagging_map_instead_of_failing() {
    let c = Options::default().env("SHARD_COUNT", 2).start(4).await;
    wait_view_size(&c, &[0, 1, 2, 3], 4).await;
    let here = node_shard(&c, 0).await;
    let mut elsewhere = None;
    for n in 0..100 {
        let key = format!("k{n}");
        let r = put(&c, 0, &key, json!(n), &json!("")).await;
        if r.body["shard-id"] != here {
            elsewhere = Some((key, json!(n), r.ctx()));
            break;
        }
    }
    let (key, value, ctx) = elsewhere.expect("a key of the other shard among 100");
    // As the second relay of the request would send it.
    let get = || {
        let path = format!("/key-value-store/{key}");
        let body = Body::Json(json!({ "causal-metadata": ctx }));
        let c = &c;
        async move {
            c.request(0, Method::GET, &path, &[("x-causalkv-hops", "2")], body)
                .await
        }
    };
    let start = std::time::Instant::now();
    let r = get().await;
    assert_eq!(r.status, 503, "no map change came: {r:?}");
    r.assert_json();
    assert!(
        start.elapsed() >= Duration::from_secs(4),
        "it waited for the map first ({:?})",
        start.elapsed()
    );
    // A reshard to one shard places every key at node 0 while it waits.
    let later = async {
        tokio_sleep(Duration::from_millis(300)).await;
        reshard(&c, 1, 1).await
    };
    let (r, resharded) = futures_util::future::join(get(), later).await;
    assert_eq!(resharded.status, 200, "{resharded:?}");
    assert_eq!(r.status, 200, "served once the map placed the key: {r:?}");
    assert_eq!(r.body["value"], value, "{r:?}");
}
