//! End-to-end tests of a store's life beyond a test run of minutes,
//! against real replica processes: a graceful stop hands its
//! writes over, suspects are forgotten and deletes collected, an evicted or
//! long-partitioned replica comes back without bringing anything deleted
//! back, metadata stays bounded over many restarts, readiness is honest and
//! incarnations are 64 random bits.

mod common;

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use awc::http::Method;
use serde_json::{json, Value};

use common::{
    health_count, kv_path, request_with_timeout, suspects, timed, wait_for, Body, Options,
    TestCluster, DEADLINE,
};

/// The expected contents as `wait_contents` takes them.
type Contents = Vec<(String, Option<Value>)>;

/// Puts `key = value` at replica `i` with context `ctx`, which must be
/// accepted; returns the new context.
async fn put(c: &TestCluster, i: usize, key: &str, value: Value, ctx: &Value) -> Value {
    let r = c.put(i, key, value, ctx).await;
    assert!(
        r.status == 200 || r.status == 201,
        "PUT {key} at replica {i}: {r:?}"
    );
    r.ctx()
}

/// Puts `<prefix><n> = n` for `n` in `0..count` at replica `i`, one
/// session; returns what was written and the session's context.
async fn put_keys(c: &TestCluster, i: usize, prefix: &str, count: usize) -> (Contents, Value) {
    let mut ctx = json!("");
    let mut written = Vec::new();
    for n in 0..count {
        let key = format!("{prefix}{n}");
        ctx = put(c, i, &key, json!(n), &ctx).await;
        written.push((key, Some(json!(n))));
    }
    (written, ctx)
}

/// Deletes every key of `keys` at replica `i`, carrying `ctx` along; each
/// must exist there. Returns the same keys, expected absent.
async fn delete_keys(c: &TestCluster, i: usize, keys: &Contents, mut ctx: Value) -> Contents {
    for (key, _) in keys {
        let r = c.delete(i, key, &ctx).await;
        assert_eq!(r.status, 200, "DELETE {key} at replica {i}: {r:?}");
        ctx = r.ctx();
    }
    keys.iter().map(|(k, _)| (k.clone(), None)).collect()
}

/// Whether `/health` lists `address` in its view string.
fn in_view(health: &Value, address: &str) -> bool {
    health["view"]
        .as_str()
        .unwrap_or_else(|| panic!("/health has no view: {health}"))
        .split(',')
        .any(|a| a == address)
}

/// Checks that an incarnation id is `<address>#<16 lowercase hex digits>`.
fn assert_incarnation(id: &Value, address: &str) {
    let id = id
        .as_str()
        .unwrap_or_else(|| panic!("replica id {id} is not a string"));
    let (addr, bits) = id
        .split_once('#')
        .unwrap_or_else(|| panic!("replica id {id:?} has no '#'"));
    assert_eq!(addr, address, "replica id {id:?}");
    assert!(
        bits.len() == 16 && bits.chars().all(|d| matches!(d, '0'..='9' | 'a'..='f')),
        "replica id {id:?} does not end in 16 lowercase hex digits"
    );
}

#[actix_web::test]
async fn writes_acknowledged_just_before_sigterm_reach_the_other_replicas() {
    const HANDOVER_MS: u64 = 5000;
    let mut c = Options::default()
        .env("HANDOVER_TIMEOUT_MS", HANDOVER_MS)
        .start(3)
        .await;
    let addr = c.addr(0).to_string();
    let acked: RefCell<Contents> = RefCell::new(Vec::new());
    let signalled = Cell::new(false);
    let (refused_503, after_signal_ok) = (Cell::new(0usize), Cell::new(0usize));

    // Streams of PUTs of distinct keys, each back to back, until replica 0
    // is gone (several, so that writes are in flight when the signal comes).
    let writer = |w: usize| {
        let (addr, acked, signalled) = (&addr, &acked, &signalled);
        let (refused_503, after_signal_ok) = (&refused_503, &after_signal_ok);
        async move {
            let start = Instant::now();
            let mut refused = false;
            for n in 0usize.. {
                assert!(start.elapsed() < DEADLINE, "replica 0 never went away");
                let key = format!("term{w}-{n}");
                let body = Body::Json(json!({"value": n, "causal-metadata": ""}));
                let timeout = Duration::from_secs(5);
                let sent =
                    request_with_timeout(addr, Method::PUT, &kv_path(&key), &[], body, timeout)
                        .await;
                match sent {
                    Ok(r) if r.status == 200 || r.status == 201 => {
                        assert!(!refused, "a write accepted after one was refused: {r:?}");
                        if signalled.get() {
                            after_signal_ok.set(after_signal_ok.get() + 1);
                        }
                        acked.borrow_mut().push((key, Some(json!(n))));
                    }
                    Ok(r) => {
                        assert!(signalled.get(), "PUT {key} refused before SIGTERM: {r:?}");
                        assert_eq!(r.status, 503, "PUT {key} while stopping: {r:?}");
                        r.assert_json();
                        assert_eq!(r.body["error"], "Replica is shutting down", "{r:?}");
                        refused = true;
                        refused_503.set(refused_503.get() + 1);
                    }
                    // Refused (or cut off) once the listener is closed.
                    Err(e) => {
                        assert!(signalled.get(), "PUT {key} failed before SIGTERM: {e}");
                        return;
                    }
                }
            }
        }
    };
    let writers = futures_util::future::join_all((0..4).map(writer));
    // SIGTERM once writes flow.
    let stopper = async {
        wait_for(DEADLINE, "40 writes acknowledged", || async {
            let n = acked.borrow().len();
            if n >= 40 {
                Ok(())
            } else {
                Err(format!("{n} acknowledged"))
            }
        })
        .await;
        c.terminate(0);
        signalled.set(true);
    };
    futures_util::future::join(writers, stopper).await;
    let acked = acked.into_inner();
    eprintln!(
        "{} writes acknowledged ({} after the signal was sent), {} refused with 503",
        acked.len(),
        after_signal_ok.get(),
        refused_503.get()
    );

    let status = c
        .wait_exit(
            0,
            Duration::from_millis(HANDOVER_MS) + Duration::from_secs(12),
        )
        .await;
    assert!(status.success(), "replica 0 exited with {status:?}");
    let log = c.log_text(0);
    assert!(
        log.contains("handing over what was acknowledged"),
        "replica 0's log does not mention the hand-over"
    );
    assert!(
        log.contains("acknowledged write is held by") && !log.contains("could not hand over"),
        "replica 0's log does not say every write was handed over"
    );
    c.wait_contents(&[1, 2], &acked).await;
}

#[actix_web::test]
async fn a_stopping_replica_waits_for_stalled_members_to_hold_its_writes() {
    const HANDOVER_MS: u64 = 8000;
    // Peers stalled (SIGSTOP) but not long enough to leave the view.
    let mut c = Options::default()
        .failure_timeout_ms(10_000)
        .env("HANDOVER_TIMEOUT_MS", HANDOVER_MS)
        .start(3)
        .await;
    c.pause(1);
    c.pause(2);
    let (mut keys, _) = put_keys(&c, 0, "stalled", 10).await;
    c.terminate(0);
    // While it waits for them, it refuses writes and is not ready.
    let late = Cell::new(0);
    let r = wait_for(DEADLINE, "a PUT refused while stopping", || async {
        let key = format!("late{}", late.get());
        let r = c.put(0, &key, json!(1), &json!("")).await;
        if r.status == 503 {
            return Ok(r);
        }
        assert!(r.status == 201, "PUT {key} while stopping: {r:?}");
        late.set(late.get() + 1);
        Err(format!("{r:?}"))
    })
    .await;
    keys.extend((0..late.get()).map(|n| (format!("late{n}"), Some(json!(1)))));
    r.assert_json();
    assert_eq!(r.body["error"], "Replica is shutting down", "{r:?}");
    // And it stays (not ready) while its peers cannot take the writes: an
    // observation window, not a synchronisation.
    let window = Instant::now();
    while window.elapsed() < Duration::from_millis(1500) {
        let status = c.exit_status(0);
        assert!(
            status.is_none(),
            "replica 0 exited ({status:?}) before the hand-over"
        );
        let ready = c.try_ready(0).await.expect("/ready while stopping");
        assert_eq!(ready.status, 503, "{ready:?}");
        actix_rt::time::sleep(common::POLL).await;
    }

    c.resume(1);
    c.resume(2);
    let status = c
        .wait_exit(
            0,
            Duration::from_millis(HANDOVER_MS) + Duration::from_secs(12),
        )
        .await;
    assert!(status.success(), "replica 0 exited with {status:?}");
    assert!(
        c.log_text(0)
            .contains("every acknowledged write is held by every member"),
        "replica 0's log does not say its writes were handed over"
    );
    c.wait_contents(&[1, 2], &keys).await;
}

#[actix_web::test]
async fn a_replica_removed_for_good_is_forgotten_and_its_deletes_collected() {
    let mut c = Options::default()
        .env("SUSPECT_TIMEOUT_MS", 3000)
        .start(3)
        .await;
    c.kill(2);
    let gone = c.addr(2).to_string();

    // Replica 0 lists it as a suspect (out of the view), then forgets it;
    // watched while the deletes are made.
    let watch = async {
        let listed = Cell::new(false);
        let (listed, gone) = (&listed, &gone);
        wait_for(DEADLINE, "replica 2 a suspect, then forgotten", || async {
            let h = c.try_health(0).await?;
            if suspects(&h).contains(gone) {
                assert!(!in_view(&h, gone), "a suspect is in the view: {h}");
                listed.set(true);
                return Err(format!("still a suspect: {h}"));
            }
            if listed.get() {
                Ok(())
            } else {
                Err(format!("not a suspect yet: {h}"))
            }
        })
        .await
    };
    let writes = async {
        let (keys, ctx) = put_keys(&c, 0, "gone", 30).await;
        let deleted = delete_keys(&c, 0, &keys, ctx).await;
        // Nothing is collected while replica 2 may still hold a say.
        let tombstones = health_count(&c.health(0).await, "tombstones");
        assert!(
            tombstones > 0,
            "deletes collected before replica 2 was forgotten"
        );
        deleted
    };
    let ((), deleted) = futures_util::future::join(watch, writes).await;

    c.wait_health(&[0, 1], "tombstones collected", DEADLINE, |_, h| {
        match (suspects(h).contains(&gone), health_count(h, "tombstones")) {
            (false, 0) => Ok(()),
            (listed, n) => Err(format!("suspect: {listed}, {n} tombstones")),
        }
    })
    .await;
    for i in [0, 1] {
        assert_eq!(c.metric(i, "causalkv_tombstones").await, Ok(0.0));
    }
    c.wait_contents(&[0, 1], &deleted).await;
}

#[actix_web::test]
async fn deleting_a_suspect_from_the_view_answers_200_and_reaches_every_member() {
    // The default suspect timeout (minutes): only the DELETE forgets it.
    let mut c = TestCluster::start(3).await;
    c.kill(2);
    let gone = c.addr(2).to_string();
    c.wait_health(&[0, 1], "replica 2 a suspect", DEADLINE, |_, h| {
        if suspects(h).contains(&gone) && !in_view(h, &gone) {
            Ok(())
        } else {
            Err("not a suspect".into())
        }
    })
    .await;

    let r = c.change_view(0, false, &gone).await;
    r.assert_json();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.body["message"],
        "Replica deleted successfully from the view"
    );
    c.wait_health(&[0, 1], "replica 2 forgotten", DEADLINE, |_, h| {
        if suspects(h).contains(&gone) || in_view(h, &gone) {
            Err("still known".into())
        } else {
            Ok(())
        }
    })
    .await;
    for i in [0, 1] {
        let r = c.change_view(i, false, &gone).await;
        assert_eq!(r.status, 404, "second DELETE at replica {i}: {r:?}");
        assert_eq!(
            r.body["error"], "Socket address does not exist in the view",
            "{r:?}"
        );
    }
    c.wait_views(&[0, 1], &c.expected_view(&[0, 1])).await;
}

#[actix_web::test]
async fn an_evicted_replica_added_back_brings_back_nothing_deleted() {
    let mut c = Options::default()
        .env("SUSPECT_TIMEOUT_MS", 6000)
        .causal_wait_ms(1000)
        .start(3)
        .await;
    let evicted = c.addr(2).to_string();
    let (keys, ctx) = put_keys(&c, 0, "evict", 20).await;
    c.wait_contents(&[2], &keys).await;

    c.pause(2);
    c.wait_views(&[0], &c.expected_view(&[0, 1])).await;
    let r = c.change_view(0, false, &evicted).await;
    assert_eq!(r.status, 200, "DELETE of the suspect from the view: {r:?}");
    let deleted = delete_keys(&c, 0, &keys, ctx).await;
    c.wait_health(&[0, 1], "tombstones collected", DEADLINE, |_, h| {
        match (
            in_view(h, &evicted) || suspects(h).contains(&evicted),
            health_count(h, "tombstones"),
        ) {
            (false, 0) => Ok(()),
            (known, n) => Err(format!("replica 2 known: {known}, {n} tombstones")),
        }
    })
    .await;

    // Back, it is refused as removed and serves no client: what it holds
    // may be what the others deleted and forgot.
    c.resume(2);
    c.wait_health(&[2], "refused as removed", DEADLINE, |_, h| {
        match h["removed"].as_bool() {
            Some(true) => Ok(()),
            other => Err(format!("removed: {other:?}")),
        }
    })
    .await;
    let (some, _) = keys.first().expect("keys were written");
    let r = c.get(2, some, &json!("")).await;
    assert_eq!(r.status, 503, "GET at the removed replica: {r:?}");
    assert_eq!(
        r.body["error"], "Replica was removed from the view: it serves again once added back",
        "{r:?}"
    );
    let r = c.change_view(1, true, &evicted).await;
    assert_eq!(r.status, 201, "PUT of replica 2 back into the view: {r:?}");
    c.wait_views(&[0, 1, 2], &c.expected_view(&[0, 1, 2])).await;
    c.wait_contents(&[0, 1, 2], &deleted).await;

    let ctx = put(&c, 0, "after", json!("readmitted"), &json!("")).await;
    let r = c.get(2, "after", &ctx).await;
    assert_eq!(r.status, 200, "GET at the re-added replica: {r:?}");
    assert_eq!(r.body["value"], "readmitted", "{r:?}");
    // Still nothing back once the write went round.
    c.wait_contents(&[0, 1, 2], &deleted).await;
}

#[actix_web::test]
async fn a_live_replica_removed_and_added_back_serves_again_at_once() {
    let c = Options::default().start(3).await;
    let removed = c.addr(2).to_string();
    let ctx = put(&c, 0, "before", json!("x"), &json!("")).await;
    let r = c.change_view(0, false, &removed).await;
    assert_eq!(r.status, 200, "DELETE of replica 2 from the view: {r:?}");
    c.wait_views(&[0, 1], &c.expected_view(&[0, 1])).await;
    c.wait_health(&[2], "told it was removed", DEADLINE, |_, h| {
        match h["removed"].as_bool() {
            Some(true) => Ok(()),
            other => Err(format!("removed: {other:?}")),
        }
    })
    .await;
    let r = c.change_view(0, true, &removed).await;
    assert_eq!(r.status, 201, "PUT of replica 2 back into the view: {r:?}");
    // A client at the re-added replica is served as soon as it is heard
    // again (the request waits that long, well within the causal wait).
    let r = c.get(2, "before", &ctx).await;
    assert_eq!(r.status, 200, "GET at the re-added replica: {r:?}");
    assert_eq!(r.body["value"], "x", "{r:?}");
    c.wait_views(&[0, 1, 2], &c.expected_view(&[0, 1, 2])).await;
}

#[actix_web::test]
async fn a_replica_paused_past_the_suspect_timeout_comes_back_without_resurrection_and_serves_the_latest_context(
) {
    let mut c = Options::default()
        .env("SUSPECT_TIMEOUT_MS", 3000)
        .start(3)
        .await;
    let away = c.addr(2).to_string();
    let (keys, ctx) = put_keys(&c, 0, "part", 10).await;
    c.wait_contents(&[2], &keys).await;

    // The stand-in for a long partition: silent past the failure and the
    // suspect timeouts (seen as its outcome: forgotten, deletes collected).
    c.pause(2);
    let deleted = delete_keys(&c, 0, &keys, ctx).await;
    c.wait_health(
        &[0, 1],
        "replica 2 forgotten, tombstones collected",
        DEADLINE,
        |_, h| match (
            in_view(h, &away) || suspects(h).contains(&away),
            health_count(h, "tombstones"),
        ) {
            (false, 0) => Ok(()),
            (known, n) => Err(format!("replica 2 known: {known}, {n} tombstones")),
        },
    )
    .await;

    c.resume(2);
    let ctx = put(&c, 0, "latest", json!("after the partition"), &json!("")).await;
    let (r, took) = timed(c.get(2, "latest", &ctx)).await;
    eprintln!("the returning replica answered the latest context in {took:?}");
    assert_eq!(
        r.status, 200,
        "GET with the latest context at replica 2: {r:?}"
    );
    assert_eq!(r.body["value"], "after the partition", "{r:?}");

    let mut expected = deleted;
    expected.push(("latest".into(), Some(json!("after the partition"))));
    c.wait_contents(&[0, 1, 2], &expected).await;
    c.wait_views(&[0, 1, 2], &c.expected_view(&[0, 1, 2])).await;
    c.wait_contents(&[0, 1, 2], &expected).await;
}

#[actix_web::test]
async fn many_restarts_keep_clocks_and_contexts_small() {
    const ROUNDS: usize = 12;
    const BOUND: usize = 3 + 2;
    // Restarts without a disk: each one a new incarnation to retire.
    let mut c = TestCluster::start_with(3, Options::default().in_memory()).await;
    let mut written: Contents = Vec::new();
    let mut first_ctx = Value::Null;
    for round in 0..ROUNDS {
        let i = round % 3;
        let (keys, ctx) = put_keys(&c, i, &format!("r{round}k"), 3).await;
        if round == 0 {
            first_ctx = ctx;
        }
        // Memory only: let the writes reach the others before the SIGKILL.
        let others: Vec<usize> = (0..3).filter(|&j| j != i).collect();
        c.wait_contents(&others, &keys).await;
        written.extend(keys);
        c.kill(i);
        c.restart(i).await;
        c.wait_ready(&[i]).await;
    }

    // And one write by each live incarnation, so the session learns them.
    for i in 0..3 {
        let (keys, _) = put_keys(&c, i, &format!("live{i}k"), 1).await;
        written.extend(keys);
    }

    c.wait_health(&[0, 1, 2], "small clocks", DEADLINE, |_, h| {
        match health_count(h, "clock") as usize {
            n if n <= BOUND => Ok(()),
            n => Err(format!("{n} clock entries")),
        }
    })
    .await;
    let retired: Vec<u64> = {
        let mut r = Vec::new();
        for i in 0..3 {
            r.push(health_count(&c.health(i).await, "retired"));
        }
        r
    };
    eprintln!("incarnations retired at each replica: {retired:?}");
    assert!(
        retired.iter().all(|&n| n > 0),
        "nothing retired: {retired:?}"
    );

    // A context naming a retired incarnation is served, not refused.
    for i in 0..3 {
        let r = c.get(i, "r0k0", &first_ctx).await;
        assert_eq!(
            r.status, 200,
            "GET with a retired incarnation's context: {r:?}"
        );
    }

    // A fresh session reads everything, passing its context back each time.
    let mut ctx = json!("");
    for (n, (key, want)) in written.iter().enumerate() {
        let r = c.get(n % 3, key, &ctx).await;
        assert_eq!(r.status, 200, "GET {key} at replica {}: {r:?}", n % 3);
        assert_eq!(Some(&r.body["value"]), want.as_ref(), "{r:?}");
        ctx = r.ctx();
    }
    let entries = ctx.as_object().map_or(0, |o| o.len());
    eprintln!("the session's final context: {ctx}");
    assert!(
        (1..=BOUND).contains(&entries),
        "the session's context has {entries} entries: {ctx}"
    );
}

#[actix_web::test]
async fn a_replica_that_holds_no_state_is_not_ready_and_says_why() {
    let cluster = TestCluster::start(2).await;
    for i in 0..2 {
        let r = cluster.try_ready(i).await.expect("/ready");
        assert_eq!(r.status, 200, "/ready of a cluster member: {r:?}");
        assert_eq!(r.body["ready"], true, "{r:?}");
        assert_eq!(r.body["replica"], cluster.health(i).await["replica"]);
    }

    // Its VIEW names a replica nobody runs: it waits for it (the start-up
    // grace, ~3 s; the failure timeout is longer, so that the silent one
    // stays in its view meanwhile) before it starts a new store on its own.
    let nobody = format!("127.0.0.1:{}", common::free_ports(1)[0]);
    let options = Options::default().failure_timeout_ms(5000);
    let lone = TestCluster::start_lone_with_seeds(options, &[nobody]).await;
    let r = lone.try_ready(0).await.expect("/ready");
    r.assert_json();
    assert_eq!(r.status, 503, "/ready right after start: {r:?}");
    assert_eq!(r.body["ready"], false, "{r:?}");
    assert!(
        r.body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "/ready does not say why: {r:?}"
    );
    let h = lone.try_health(0).await.expect("/health answers 200");
    assert_eq!(h["ready"], false, "{h}");

    let (_, took) = timed(lone.wait_ready(&[0])).await;
    eprintln!("the lone replica was ready {took:?} after its first answer");
    let h = lone.health(0).await;
    assert_eq!(h["ready"], true, "{h}");
    assert_eq!(h["synced"], true, "{h}");
}

#[actix_web::test]
async fn incarnations_are_64_random_bits_and_change_on_restart() {
    // Restarts without a disk (with one, a replica keeps its identity).
    let mut c = TestCluster::start_with(2, Options::default().in_memory()).await;
    let mut seen = Vec::new();
    for round in 0..3 {
        if round > 0 {
            c.kill(1);
            c.restart(1).await;
        }
        let id = c.health(1).await["replica"].clone();
        assert_incarnation(&id, c.addr(1));
        let ready = c.try_ready(1).await.expect("/ready");
        assert_eq!(
            ready.body["replica"], id,
            "/ready names another incarnation"
        );
        assert!(
            !seen.contains(&id),
            "incarnation {id} again after a restart"
        );
        seen.push(id);
    }
    assert_incarnation(&c.health(0).await["replica"], c.addr(0));
}
