//! Siblings (SPEC's "Tables and conditional writes"): in a table created
//! with `{"siblings": true}`, concurrent writes to a key are all kept and a
//! GET answers 300 with every value until a write whose context covers
//! them replaces them all, everywhere; tables without the setting, and the
//! default store, keep the single-winner rule.
//!
//! # How the writes are made concurrent
//!
//! The harness has no network switch for processes it spawns (the fault
//! suite's network namespaces need root), but it can stop a replica with
//! SIGSTOP and resume it with SIGCONT. Stopping alone is not enough: a
//! stopped process's kernel still accepts connections and buffers what a
//! peer sends, so a write replicated to a stopped replica would be applied
//! the moment it resumes, possibly before the competing write reaches it.
//! So [`write_concurrently`] makes sure nothing carrying the first write is
//! ever sent to the other side before the second write is taken:
//!
//! 1. replicas 1 and 2 are stopped, and the test waits until replica 0's
//!    view has dropped them (the failure detector): from then on replica 0
//!    queues its writes for no one (it only probes the suspects, with
//!    heartbeats that carry clocks, never writes);
//! 2. the first value of every key is written at replica 0;
//! 3. replica 0 is stopped, then 1 and 2 resumed: they may learn from the
//!    buffered heartbeats that replica 0 has writes they lack, but can only
//!    fetch them from replica 0, which is stopped;
//! 4. the second value of every key is written at replica 1 (no context),
//!    and spreads to replica 2;
//! 5. replica 0 is resumed; the replicas readmit each other, exchange what
//!    the other side missed, and converge.
//!
//! Each first write precedes its competitor in real time, and replica 1 has
//! not applied it when it takes the second one, so neither depends on the
//! other. The test does not take that on trust: the second PUT must answer
//! 201 "Added successfully" (the key was absent at replica 1, so it had
//! not seen the first write); if one answers 200 the run was not
//! concurrent after all and is retried with fresh keys (a bounded number
//! of times).

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::common::{wait_for, Reply, TestCluster, DEADLINE};
use crate::tables::{
    assert_listing, create_new, delete_in, entry, get_in, list, put_in, try_get_in, wait_key,
    wait_listing,
};
use crate::{assert_write, fields, not_found};

/// One key to write concurrently: where, and the value written at replica
/// 0 (`first`) and at replica 1 (`second`).
#[derive(Clone, Debug)]
struct Conflict {
    table: Option<&'static str>,
    key: String,
    first: Value,
    second: Value,
}

/// The contexts the two concurrent writes of a [`Conflict`] returned.
#[derive(Clone, Debug)]
struct Written {
    conflict: Conflict,
    /// Returned by the write at replica 0.
    first_ctx: Value,
    /// Returned by the write at replica 1.
    second_ctx: Value,
}

/// How many times a run that turned out not to be concurrent is retried.
const ATTEMPTS: usize = 3;

/// Writes `first` at replica 0 and `second` at replica 1 for every
/// conflict, concurrently (see the module's doc), in a 3-replica cluster
/// whose tables already exist at every replica; returns once all three
/// replicas are back in each other's views. `None` if some second write
/// found the first one already there (not concurrent: try again with
/// other keys).
async fn write_concurrently(c: &mut TestCluster, conflicts: &[Conflict]) -> Option<Vec<Written>> {
    assert_eq!(c.len(), 3, "the scenario uses replicas 0 | 1, 2");
    c.pause(1);
    c.pause(2);
    // Replica 0 no longer queues writes for 1 and 2.
    c.wait_views(&[0], &c.expected_view(&[0])).await;
    let mut first = Vec::new();
    for w in conflicts {
        let r = put_in(c, 0, w.table, &w.key, w.first.clone(), &json!("")).await;
        first.push(assert_write(&r, 201, "Added successfully"));
    }
    c.pause(0);
    c.resume(1);
    c.resume(2);
    let mut written = Vec::new();
    let mut concurrent = true;
    for (w, first_ctx) in conflicts.iter().zip(first) {
        let r = put_in(c, 1, w.table, &w.key, w.second.clone(), &json!("")).await;
        let second_ctx = match r.status {
            201 => assert_write(&r, 201, "Added successfully"),
            200 => {
                eprintln!(
                    "{:?} in {:?}: replica 1 already had the first write ({r:?}); \
                     not concurrent",
                    w.key, w.table
                );
                concurrent = false;
                assert_write(&r, 200, "Updated successfully")
            }
            _ => panic!("PUT {:?} in {:?} at replica 1: {r:?}", w.key, w.table),
        };
        written.push(Written {
            conflict: w.clone(),
            first_ctx,
            second_ctx,
        });
    }
    c.resume(0);
    c.wait_views(&[0, 1, 2], &c.expected_view(&[0, 1, 2])).await;
    concurrent.then_some(written)
}

/// Runs [`write_concurrently`] with the conflicts `make(attempt)` names
/// (fresh keys each attempt) until a run is concurrent.
async fn concurrent_run(
    c: &mut TestCluster,
    make: impl Fn(usize) -> Vec<Conflict>,
) -> Vec<Written> {
    for attempt in 0..ATTEMPTS {
        if let Some(written) = write_concurrently(c, &make(attempt)).await {
            return written;
        }
    }
    panic!("no run of {ATTEMPTS} made the writes concurrent");
}

/// The values as a set (JSON texts), to compare regardless of order.
fn as_set(values: &[Value]) -> BTreeSet<String> {
    values.iter().map(|v| v.to_string()).collect()
}

/// Asserts a 300 with exactly `values` (in any order, each once) and the
/// SPEC's fields; returns the context.
fn assert_siblings(r: &Reply, values: &[Value], what: &str) -> Value {
    r.assert_json();
    assert_eq!(r.status, 300, "{what}: {r:?}");
    assert_eq!(
        fields(r),
        ["causal-metadata", "doesExist", "message", "values"],
        "{what}: {r:?}"
    );
    assert_eq!(r.body["doesExist"], json!(true), "{what}: {r:?}");
    assert_eq!(
        r.body["message"],
        json!("Retrieved successfully"),
        "{what}: {r:?}"
    );
    let got = r.body["values"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: values is not an array: {r:?}"));
    assert_eq!(got.len(), values.len(), "{what}: each value once: {r:?}");
    assert_eq!(as_set(got), as_set(values), "{what}: {r:?}");
    let ctx = r.ctx();
    assert!(
        ctx.as_object().is_some_and(|o| !o.is_empty()),
        "{what}: a 300 carries the context of the values: {r:?}"
    );
    ctx
}

/// Waits until every replica of `at` answers a GET of the conflict's key
/// without context with a 300 holding both values; returns replica
/// `at[0]`'s answer.
async fn wait_siblings(c: &TestCluster, at: &[usize], w: &Conflict) -> Reply {
    let both = [w.first.clone(), w.second.clone()];
    let both = &both;
    wait_for(
        DEADLINE,
        &format!("{:?} in {:?} to hold both values at {at:?}", w.key, w.table),
        || async move {
            let mut first = None;
            for &i in at {
                let r = try_get_in(c, i, w.table, &w.key).await?;
                let ok = r.status == 300
                    && r.body["values"]
                        .as_array()
                        .is_some_and(|v| v.len() == 2 && as_set(v) == as_set(both));
                if !ok {
                    return Err(format!("replica {i}: {} {}", r.status, r.text));
                }
                first.get_or_insert(r);
            }
            Ok(first.expect("at least one replica"))
        },
    )
    .await
}

/// Waits until every replica of `at` answers a GET of the conflict's key
/// without context with a 200 and the same value; returns that value.
async fn wait_one_winner(c: &TestCluster, at: &[usize], w: &Conflict) -> Value {
    wait_for(
        DEADLINE,
        &format!("{:?} in {:?} to agree at {at:?}", w.key, w.table),
        || async move {
            let mut seen = Vec::new();
            for &i in at {
                let r = try_get_in(c, i, w.table, &w.key).await?;
                if r.status != 200 {
                    return Err(format!("replica {i}: {} {}", r.status, r.text));
                }
                seen.push(r.body["value"].clone());
            }
            if seen.iter().all(|v| *v == seen[0]) {
                Ok(seen[0].clone())
            } else {
                Err(format!("replicas disagree: {seen:?}"))
            }
        },
    )
    .await
}

/// In a siblings table, two writes made concurrently at replicas that had
/// not seen each other's are both kept: once they have spread, every
/// replica answers 300 with both values (also when given either writer's
/// context, which it must wait for); a 300 that learns nothing new echoes
/// the context. A PUT whose context includes a 300's metadata replaces
/// both, everywhere (every replica then answers 200 with the one value);
/// a DELETE likewise deletes both. The listing counts a key with siblings
/// once.
#[actix_web::test]
async fn concurrent_writes_in_a_siblings_table_are_all_kept_until_a_covering_write() {
    let mut c = TestCluster::start(3).await;
    let created = create_new(&c, 0, "sib", true, &json!("")).await;
    let _ = created;
    wait_listing(&c, &[0, 1, 2], &json!([entry("sib", true, 0)])).await;

    let written = concurrent_run(&mut c, |attempt| {
        ["put", "del"]
            .iter()
            .map(|name| Conflict {
                table: Some("sib"),
                key: format!("{name}{attempt}"),
                first: json!({"from": 0, "key": name}),
                second: json!(["from 1", name]),
            })
            .collect()
    })
    .await;
    let (put, del) = (&written[0], &written[1]);

    for w in [put, del] {
        let conflict = &w.conflict;
        let both = [conflict.first.clone(), conflict.second.clone()];
        let first = wait_siblings(&c, &[0, 1, 2], conflict).await;
        let m = assert_siblings(&first, &both, "the first 300");
        // Every replica, given either writer's context, answers the same.
        for i in 0..3 {
            for ctx in [&w.first_ctx, &w.second_ctx] {
                let r = get_in(&c, i, conflict.table, &conflict.key, ctx).await;
                assert_siblings(&r, &both, &format!("{:?} at replica {i}", conflict.key));
            }
            // A 300 that learns nothing new echoes the context.
            let r = get_in(&c, i, conflict.table, &conflict.key, &m).await;
            let echoed = assert_siblings(&r, &both, &format!("{:?} at {i}", conflict.key));
            assert_eq!(
                echoed, m,
                "a read that adds nothing echoes the context: {r:?}"
            );
        }
    }

    // A PUT covering both siblings (at the replica that took neither).
    let key = &put.conflict.key;
    let m = assert_siblings(
        &get_in(&c, 0, Some("sib"), key, &put.second_ctx).await,
        &[put.conflict.first.clone(), put.conflict.second.clone()],
        "the siblings to resolve",
    );
    let r = put_in(&c, 2, Some("sib"), key, json!("resolved"), &m).await;
    let resolved = assert_write(&r, 200, "Updated successfully");
    for i in 0..3 {
        let r = get_in(&c, i, Some("sib"), key, &resolved).await;
        r.assert_json();
        assert_eq!(
            r.status, 200,
            "after the covering PUT, at replica {i}: {r:?}"
        );
        assert_eq!(
            r.body,
            json!({"message": "Retrieved successfully", "causal-metadata": resolved, "value": "resolved"}),
            "at replica {i}"
        );
    }
    wait_key(&c, &[0, 1, 2], Some("sib"), key, Some(json!("resolved"))).await;

    // A DELETE covering both siblings.
    let key = &del.conflict.key;
    let m = assert_siblings(
        &get_in(&c, 1, Some("sib"), key, &del.first_ctx).await,
        &[del.conflict.first.clone(), del.conflict.second.clone()],
        "the siblings to delete",
    );
    let r = delete_in(&c, 0, Some("sib"), key, &m).await;
    let deleted = assert_write(&r, 200, "Deleted successfully");
    for i in 0..3 {
        let r = get_in(&c, i, Some("sib"), key, &deleted).await;
        r.assert_json();
        assert_eq!(
            r.status, 404,
            "after the covering DELETE, at replica {i}: {r:?}"
        );
        assert_eq!(r.body, not_found("GET", &deleted), "at replica {i}");
    }
    wait_key(&c, &[0, 1, 2], Some("sib"), key, None).await;

    // One live key left (the resolved one).
    let r = get_in(&c, 0, Some("sib"), &put.conflict.key, &deleted).await;
    let ctx = r.ctx();
    for i in 0..3 {
        assert_listing(&list(&c, i, &ctx).await, &json!([entry("sib", true, 1)]));
    }
}

/// Without the setting, the same concurrent writes keep one winner: in a
/// table created without siblings and in the default store, every replica
/// answers 200 with one value, the same everywhere (one of the two written),
/// also when given either writer's context; never a 300.
#[actix_web::test]
async fn concurrent_writes_without_the_setting_keep_one_winner_everywhere() {
    let mut c = TestCluster::start(3).await;
    let m = create_new(&c, 0, "plain", false, &json!("")).await;
    // Asked for explicitly, with `"siblings": false`, and by default.
    let r = crate::tables::create(
        &c,
        1,
        "plain2",
        crate::common::Body::Json(json!({"causal-metadata": m})),
    )
    .await;
    crate::tables::assert_table_put(&r, 201, &entry("plain2", false, 0));
    wait_listing(
        &c,
        &[0, 1, 2],
        &json!([entry("plain", false, 0), entry("plain2", false, 0)]),
    )
    .await;

    let written = concurrent_run(&mut c, |attempt| {
        [Some("plain"), Some("plain2"), None]
            .into_iter()
            .map(|table| Conflict {
                table,
                key: format!("k{attempt}"),
                first: json!(format!("{table:?} at replica 0")),
                second: json!(format!("{table:?} at replica 1")),
            })
            .collect()
    })
    .await;

    for w in &written {
        let conflict = &w.conflict;
        let winner = wait_one_winner(&c, &[0, 1, 2], conflict).await;
        assert!(
            winner == conflict.first || winner == conflict.second,
            "{:?} in {:?} converged to {winner}, which nobody wrote",
            conflict.key,
            conflict.table
        );
        // Every replica has both writes (it waits for the one named) and
        // keeps the same winner.
        for i in 0..3 {
            for ctx in [&w.first_ctx, &w.second_ctx] {
                let r = get_in(&c, i, conflict.table, &conflict.key, ctx).await;
                r.assert_json();
                assert_eq!(
                    r.status, 200,
                    "{:?} in {:?} at replica {i}: {r:?}",
                    conflict.key, conflict.table
                );
                assert_eq!(fields(&r), ["causal-metadata", "message", "value"], "{r:?}");
                assert_eq!(r.body["value"], winner, "replica {i}: {r:?}");
            }
        }
    }
}

/// In a siblings table, writes that follow each other causally (each
/// carrying the context of the one before, at whichever replica) are never
/// siblings: a GET answers a plain 200 with the last value, everywhere.
#[actix_web::test]
async fn causally_ordered_writes_in_a_siblings_table_are_not_siblings() {
    let c = TestCluster::start(2).await;
    let mut m = create_new(&c, 0, "seq", true, &json!("")).await;
    let t = Some("seq");
    for n in 0..6 {
        let r = put_in(&c, n % 2, t, "k", json!(n), &m).await;
        m = assert_write(
            &r,
            if n == 0 { 201 } else { 200 },
            if n == 0 {
                "Added successfully"
            } else {
                "Updated successfully"
            },
        );
        // Read back at the other replica: one value.
        let r = get_in(&c, (n + 1) % 2, t, "k", &m).await;
        r.assert_json();
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(
            r.body,
            json!({"message": "Retrieved successfully", "causal-metadata": m, "value": n})
        );
    }
    // A delete then a put after it: one value again, not a sibling of the
    // tombstone.
    let r = delete_in(&c, 1, t, "k", &m).await;
    m = assert_write(&r, 200, "Deleted successfully");
    let r = put_in(&c, 0, t, "k", json!("back"), &m).await;
    m = assert_write(&r, 201, "Added successfully");
    for i in 0..2 {
        let r = get_in(&c, i, t, "k", &m).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.body["value"], json!("back"), "{r:?}");
    }
    wait_key(&c, &[0, 1], t, "k", Some(json!("back"))).await;
}

/// The same technique on the default store alone (needs no table): the two
/// writes are concurrent, and every replica keeps the same one winner,
/// also when given either writer's context.
#[actix_web::test]
async fn concurrent_writes_in_the_default_store_keep_one_winner_everywhere() {
    let mut c = TestCluster::start(3).await;
    let written = concurrent_run(&mut c, |attempt| {
        vec![Conflict {
            table: None,
            key: format!("k{attempt}"),
            first: json!("at replica 0"),
            second: json!({"at": "replica 1"}),
        }]
    })
    .await;
    let w = &written[0];
    let winner = wait_one_winner(&c, &[0, 1, 2], &w.conflict).await;
    assert!(
        winner == w.conflict.first || winner == w.conflict.second,
        "converged to {winner}, which nobody wrote"
    );
    for i in 0..3 {
        for ctx in [&w.first_ctx, &w.second_ctx] {
            let r = get_in(&c, i, None, &w.conflict.key, ctx).await;
            r.assert_json();
            assert_eq!(r.status, 200, "replica {i}: {r:?}");
            assert_eq!(r.body["value"], winner, "replica {i}: {r:?}");
        }
    }
}
