//! Tables and siblings in the simulated cluster: writes on both sides of a
//! partition, lossy links and any delivery order, then every replica holds
//! the same tables and the same siblings, and a write that saw the
//! siblings replaces them everywhere.

use std::collections::BTreeSet;

use serde_json::Value as Json;

use super::sim::{for_seeds, key, sim_timing, Sim, CALM, LOSSY};
use super::{Condition, Outcome, TableOutcome};
use crate::causal::CausalContext;
use crate::store::{Key, TableName, Value};

/// A client's context, as it would send it.
#[derive(Clone, Default)]
struct Client(Json);

impl Client {
    fn ctx(&self) -> CausalContext {
        CausalContext::parse(Some(&self.0)).expect("metadata round-trips")
    }
    fn learn(&mut self, learned: &super::Learned) {
        let ctx = self.ctx();
        self.0 = learned.metadata(&ctx).to_value();
    }
}

fn name(text: &str) -> TableName {
    TableName::parse(text).expect("a valid name")
}

fn value(text: &str) -> Option<Value> {
    Value::from_json(&format!("\"{text}\"")).expect("json")
}

fn create(sim: &mut Sim, i: usize, c: &mut Client, table: &str, siblings: bool) -> TableOutcome {
    let ctx = c.ctx();
    let result = sim
        .replica_mut(i)
        .create_table(&name(table), siblings, &ctx)
        .expect("served");
    sim.flush(i);
    c.learn(&result.learned);
    result.outcome
}

fn put(sim: &mut Sim, i: usize, c: &mut Client, table: &str, k: &Key, v: Option<&str>) -> Outcome {
    put_if(sim, i, c, table, k, v, Condition::Any)
}

fn put_if(
    sim: &mut Sim,
    i: usize,
    c: &mut Client,
    table: &str,
    k: &Key,
    v: Option<&str>,
    condition: Condition,
) -> Outcome {
    let ctx = c.ctx();
    let result = sim
        .replica_mut(i)
        .write_in(
            Some(&name(table)),
            k.clone(),
            v.and_then(value),
            &ctx,
            &condition,
        )
        .expect("served");
    sim.flush(i);
    c.learn(&result.learned);
    result.outcome
}

/// The values replica `i` answers for `k` of `table`, as a set (one for a
/// single value, none for an absent key), teaching `c` what it read.
fn read(sim: &Sim, i: usize, c: &mut Client, table: &str, k: &Key) -> BTreeSet<String> {
    let ctx = c.ctx();
    let read = sim
        .replica(i)
        .read_in(Some(&name(table)), k.clone(), &ctx)
        .expect("served");
    assert!(!read.no_table, "replica {i} lacks table {table}");
    c.learn(&read.learned);
    assert!(read.value.is_none() || read.siblings.is_empty());
    read.value
        .into_iter()
        .chain(read.siblings)
        .map(|v| v.as_json().to_string())
        .collect()
}

fn set(values: &[&str]) -> BTreeSet<String> {
    values.iter().map(|v| format!("\"{v}\"")).collect()
}

/// A settled store of three replicas where replica `i` created table
/// `table`, and the context of its creation.
fn with_table(seed: u64, i: usize, table: &str, siblings: bool) -> (Sim, Client) {
    let mut sim = Sim::new(seed, 3, CALM);
    sim.settle(CALM);
    let mut admin = Client::default();
    assert_eq!(
        create(&mut sim, i, &mut admin, table, siblings),
        TableOutcome::Created
    );
    sim.settle(CALM);
    (sim, admin)
}

/// Asserts that each replica, read by a new client, answers `values` for
/// `k` of `table`.
fn every_replica_reads(sim: &Sim, table: &str, k: &Key, values: &[&str]) {
    for i in 0..3 {
        let mut fresh = Client::default();
        assert_eq!(
            read(sim, i, &mut fresh, table, k),
            set(values),
            "replica {i}"
        );
    }
}

/// Partitions replica 0 from the others, and writes "a" to `k` of `table`
/// at replica 0 and "b" at replica `b_at`, each by a client that knows
/// only `admin`'s context.
fn write_a_and_b_apart(sim: &mut Sim, admin: &Client, table: &str, k: &Key, b_at: usize) {
    sim.group = vec![0, 1, 1];
    let (mut a, mut b) = (admin.clone(), admin.clone());
    put(sim, 0, &mut a, table, k, Some("a"));
    put(sim, b_at, &mut b, table, k, Some("b"));
}

#[test]
fn concurrent_writes_in_a_table_with_siblings_are_all_kept_and_a_covering_write_replaces_them() {
    for_seeds(10, |seed| {
        let (mut sim, admin) = with_table(seed, 0, "t", true);
        let k = key("k");
        sim.group = vec![0, 1, 1];
        let (mut a, mut b, mut c) = (admin.clone(), admin.clone(), admin.clone());
        assert_eq!(
            put(&mut sim, 0, &mut a, "t", &k, Some("a")),
            Outcome::Created
        );
        assert_eq!(
            put(&mut sim, 1, &mut b, "t", &k, Some("b")),
            Outcome::Created
        );
        sim.run(2000);
        // Same side, but without b's context: concurrent with b too.
        assert_eq!(
            put(&mut sim, 2, &mut c, "t", &k, Some("c")),
            Outcome::Updated
        );
        sim.settle(LOSSY);
        let mut reader = Client::default();
        for i in 0..3 {
            assert_eq!(
                read(&sim, i, &mut reader, "t", &k),
                set(&["a", "b", "c"]),
                "replica {i}"
            );
        }
        // One context covers all three: a write with it replaces them.
        assert_eq!(
            put(&mut sim, 1, &mut reader, "t", &k, Some("z")),
            Outcome::Updated
        );
        sim.settle(LOSSY);
        every_replica_reads(&sim, "t", &k, &["z"]);
        // A write that saw only some of the values keeps the others.
        sim.group = vec![0, 1, 1];
        let mut d = reader.clone();
        assert_eq!(
            put(&mut sim, 0, &mut d, "t", &k, Some("d")),
            Outcome::Updated
        );
        let mut e = reader.clone();
        assert_eq!(put(&mut sim, 2, &mut e, "t", &k, None), Outcome::Deleted);
        sim.settle(LOSSY);
        for i in 0..3 {
            let mut fresh = Client::default();
            let got = read(&sim, i, &mut fresh, "t", &k);
            assert_eq!(got, set(&["d"]), "the delete was concurrent with d");
        }
    });
}

#[test]
fn a_table_without_siblings_resolves_concurrent_writes_by_the_conflict_rule() {
    for_seeds(10, |seed| {
        let (mut sim, admin) = with_table(seed, 1, "plain", false);
        let k = key("k");
        write_a_and_b_apart(&mut sim, &admin, "plain", &k, 1);
        sim.settle(LOSSY);
        let mut reader = Client::default();
        let one = read(&sim, 0, &mut reader, "plain", &k);
        assert_eq!(one.len(), 1);
        for i in 1..3 {
            assert_eq!(read(&sim, i, &mut reader, "plain", &k), one);
        }
    });
}

#[test]
fn create_only_writes_on_both_sides_of_a_partition_become_siblings() {
    for_seeds(10, |seed| {
        let (mut sim, admin) = with_table(seed, 0, "t", true);
        let k = key("k");
        sim.group = vec![0, 1, 1];
        let (mut a, mut b) = (admin.clone(), admin.clone());
        let absent = Condition::Absent;
        assert_eq!(
            put_if(&mut sim, 0, &mut a, "t", &k, Some("a"), absent.clone()),
            Outcome::Created
        );
        assert_eq!(
            put_if(&mut sim, 1, &mut b, "t", &k, Some("b"), absent.clone()),
            Outcome::Created
        );
        sim.run(2000);
        let mut late = admin.clone();
        assert_eq!(
            put_if(&mut sim, 2, &mut late, "t", &k, Some("c"), absent.clone()),
            Outcome::Unmet,
            "replica 2 holds b"
        );
        sim.settle(LOSSY);
        for i in 0..3 {
            let mut reader = Client::default();
            assert_eq!(read(&sim, i, &mut reader, "t", &k), set(&["a", "b"]));
        }
    });
}

#[test]
fn a_table_dropped_on_one_side_is_gone_everywhere_with_its_keys_and_comes_back_empty() {
    for_seeds(10, |seed| {
        let (mut sim, admin) = with_table(seed, 0, "t", false);
        let (k, j) = (key("k"), key("j"));
        put(&mut sim, 0, &mut admin.clone(), "t", &k, Some("before"));
        sim.settle(CALM);
        sim.group = vec![0, 1, 1];
        // One side drops the table; the other writes to it meanwhile.
        let mut dropper = admin.clone();
        let ctx = dropper.ctx();
        let dropped = sim
            .replica_mut(0)
            .drop_table(&name("t"), "next", &ctx)
            .expect("served");
        sim.flush(0);
        dropper.learn(&dropped.learned);
        assert_eq!(dropped.outcome, TableOutcome::Dropped);
        put(&mut sim, 1, &mut admin.clone(), "t", &j, Some("during"));
        sim.settle(LOSSY);
        sim.run(2 * super::Timing::default().gc_interval.max(1000));
        for i in 0..3 {
            let r = sim.replica(i);
            assert!(r.store().table(&name("t")).is_none(), "replica {i}");
            let kept = r
                .store()
                .iter()
                .filter(|e| {
                    matches!(
                        crate::store::tables::kind(e.key()),
                        crate::store::tables::Kind::Data { .. }
                    )
                })
                .count();
            assert_eq!(kept, 0, "replica {i} still holds keys of the dropped table");
        }
        // Created again, it starts empty everywhere.
        assert_eq!(
            create(&mut sim, 2, &mut dropper, "t", false),
            TableOutcome::Created
        );
        sim.settle(LOSSY);
        for i in 0..3 {
            let mut reader = dropper.clone();
            assert!(read(&sim, i, &mut reader, "t", &k).is_empty());
            assert!(read(&sim, i, &mut reader, "t", &j).is_empty());
        }
    });
}

#[test]
fn a_delete_among_siblings_is_forgotten_once_every_replica_applied_it() {
    for_seeds(5, |seed| {
        let (mut sim, admin) = with_table(seed, 0, "t", true);
        let k = key("k");
        let (mut a, mut b) = (admin.clone(), admin.clone());
        put(&mut sim, 0, &mut a, "t", &k, Some("a"));
        put(&mut sim, 1, &mut b, "t", &k, Some("b"));
        sim.settle(LOSSY);
        let mut reader = Client::default();
        assert_eq!(read(&sim, 2, &mut reader, "t", &k).len(), 2);
        assert_eq!(
            put(&mut sim, 2, &mut reader, "t", &k, None),
            Outcome::Deleted
        );
        sim.settle(LOSSY);
        let table = sim
            .replica(0)
            .store()
            .table(&name("t"))
            .cloned()
            .expect("live");
        let base = table.key(&k);
        let held = |sim: &Sim| -> usize {
            (0..3)
                .map(|i| sim.replica(i).store().siblings(&base).len())
                .sum()
        };
        assert_eq!(held(&sim), 3, "the delete's marker, at each replica");
        let gc = super::Timing::default().gc_interval;
        sim.run(4 * gc.max(1000));
        assert_eq!(held(&sim), 0, "the marker outlived the delete's spread");
        for i in 0..3 {
            let mut fresh = Client::default();
            assert!(read(&sim, i, &mut fresh, "t", &k).is_empty());
        }
    });
}

#[test]
fn a_table_created_on_both_sides_of_a_partition_is_one_table_keeping_every_key() {
    for_seeds(10, |seed| {
        let mut sim = Sim::new(seed, 3, CALM);
        sim.settle(CALM);
        sim.group = vec![0, 1, 1];
        let (mut a, mut b) = (Client::default(), Client::default());
        assert_eq!(
            create(&mut sim, 0, &mut a, "t", false),
            TableOutcome::Created
        );
        assert_eq!(
            create(&mut sim, 1, &mut b, "t", false),
            TableOutcome::Created
        );
        let (ka, kb) = (key("ka"), key("kb"));
        put(&mut sim, 0, &mut a, "t", &ka, Some("a"));
        put(&mut sim, 1, &mut b, "t", &kb, Some("b"));
        sim.settle(LOSSY);
        sim.run(2 * super::Timing::default().gc_interval.max(1000));
        for i in 0..3 {
            let mut reader = Client::default();
            assert_eq!(
                read(&sim, i, &mut reader, "t", &ka),
                set(&["a"]),
                "replica {i}"
            );
            assert_eq!(
                read(&sim, i, &mut reader, "t", &kb),
                set(&["b"]),
                "replica {i}"
            );
        }
        // Dropped, then created again on both sides: one empty table.
        let mut admin = Client::default();
        let ctx = admin.ctx();
        let next = format!("id{}", sim.fresh());
        let dropped = sim
            .replica_mut(2)
            .drop_table(&name("t"), &next, &ctx)
            .expect("served");
        sim.flush(2);
        admin.learn(&dropped.learned);
        sim.settle(CALM);
        sim.group = vec![0, 1, 1];
        let (mut c, mut d) = (admin.clone(), admin.clone());
        assert_eq!(
            create(&mut sim, 0, &mut c, "t", false),
            TableOutcome::Created
        );
        assert_eq!(
            create(&mut sim, 2, &mut d, "t", false),
            TableOutcome::Created
        );
        put(&mut sim, 0, &mut c, "t", &ka, Some("c"));
        put(&mut sim, 2, &mut d, "t", &kb, Some("d"));
        sim.settle(LOSSY);
        for i in 0..3 {
            let mut reader = Client::default();
            assert_eq!(
                read(&sim, i, &mut reader, "t", &ka),
                set(&["c"]),
                "replica {i}"
            );
            assert_eq!(
                read(&sim, i, &mut reader, "t", &kb),
                set(&["d"]),
                "replica {i}"
            );
        }
    });
}

#[test]
fn a_replica_that_missed_a_chain_of_replacing_writes_removes_what_they_replaced() {
    for_seeds(10, |seed| {
        let (mut sim, admin) = with_table(seed, 0, "t", true);
        let k = key("k");
        // X is written at replica 2 and reaches everyone.
        put(&mut sim, 2, &mut admin.clone(), "t", &k, Some("x"));
        sim.settle(LOSSY);
        // Replica 1 is cut off long enough to be suspected (no write is
        // queued for it then: it catches up by pulls, from current versions).
        sim.group = vec![0, 1, 0];
        sim.run(2 * sim_timing().failure_timeout + 1000);
        // At replica 0: a delete that saw X, then a write that saw only
        // the delete (a reader there learns the delete, not X).
        let mut deleter = Client::default();
        assert_eq!(read(&sim, 0, &mut deleter, "t", &k), set(&["x"]));
        assert_eq!(
            put(&mut sim, 0, &mut deleter, "t", &k, None),
            Outcome::Deleted
        );
        let mut writer = Client::default();
        assert!(read(&sim, 0, &mut writer, "t", &k).is_empty());
        put(&mut sim, 0, &mut writer, "t", &k, Some("y"));
        sim.settle(LOSSY);
        for i in 0..3 {
            let mut fresh = Client::default();
            assert_eq!(
                read(&sim, i, &mut fresh, "t", &k),
                set(&["y"]),
                "replica {i}"
            );
        }
    });
}

#[test]
fn a_sibling_written_again_is_deleted_by_a_client_that_saw_the_original() {
    for_seeds(5, |seed| {
        let (mut sim, admin) = with_table(seed, 0, "t", true);
        let k = key("k");
        let mut writer = admin.clone();
        assert_eq!(
            put(&mut sim, 0, &mut writer, "t", &k, Some("x")),
            Outcome::Created
        );
        sim.settle(CALM);
        // Replica 1 writes the sibling again under a dot of its own (as a
        // merge's replay does), and it spreads.
        let held: Vec<(Key, crate::store::Version)> = {
            let store = sim.replica(1).store();
            let base = store.table(&name("t")).expect("the table").key(&k);
            (store.siblings(&base).iter())
                .map(|e| (e.to_key(), e.to_version()))
                .collect()
        };
        assert_eq!(held.len(), 1);
        assert_eq!(sim.replica_mut(1).write_again(held), 1);
        sim.flush(1);
        sim.settle(CALM);
        // A client that saw only the original deletes the key: at every
        // replica, nothing is left.
        assert_eq!(
            put(&mut sim, 2, &mut writer, "t", &k, None),
            Outcome::Deleted
        );
        sim.settle(CALM);
        for i in 0..3 {
            let mut reader = Client::default();
            assert_eq!(read(&sim, i, &mut reader, "t", &k), set(&[]), "replica {i}");
        }
    });
}

#[test]
fn a_sibling_whose_writer_retired_is_replaced_by_a_write_that_read_it() {
    for_seeds(3, |seed| {
        let (mut sim, admin) = with_table(seed, 0, "t", true);
        let k = key("k");
        write_a_and_b_apart(&mut sim, &admin, "t", &k, 2);
        sim.settle(CALM);
        // Replica 2 restarts without its state: its former incarnation,
        // b's writer, is retired once every member holds its writes.
        let writer = sim.replica(2).me().id.clone();
        sim.crash(2);
        sim.settle(CALM);
        let deadline = sim.now + 60_000;
        while !(0..3).all(|i| sim.replica(i).known().is_retired(&writer)) {
            assert!(sim.now < deadline, "the writer is never retired");
            sim.run(500);
        }
        let mut reader = Client::default();
        assert_eq!(read(&sim, 0, &mut reader, "t", &k), set(&["a", "b"]));
        put(&mut sim, 1, &mut reader, "t", &k, Some("z"));
        sim.settle(CALM);
        every_replica_reads(&sim, "t", &k, &["z"]);
    });
}

#[test]
fn a_replica_back_after_its_incarnation_was_retired_drops_its_siblings_replaced_meanwhile() {
    for_seeds(5, |seed| {
        let (mut sim, admin) = with_table(seed, 0, "t", true);
        let k = key("k");
        put(&mut sim, 0, &mut admin.clone(), "t", &k, Some("a"));
        sim.settle(CALM);
        let writer = sim.replica(0).me().id.clone();
        // Replica 0 is cut off; at replica 1, a client that read "a"
        // replaces it with "b".
        sim.group = vec![0, 1, 1];
        let mut replacer = Client::default();
        assert_eq!(read(&sim, 1, &mut replacer, "t", &k), set(&["a"]));
        put(&mut sim, 1, &mut replacer, "t", &k, Some("b"));
        // Past the suspect timeout, the others forget replica 0 and retire
        // its incarnation (not ended: it may come back, as it does).
        let deadline = sim.now + 120_000;
        while !(1..3).all(|i| sim.replica(i).known().is_retired(&writer)) {
            assert!(sim.now < deadline, "replica 0 is never retired");
            sim.run(500);
        }
        // A client of replica 1 deletes k: its context no longer names
        // replica 0's incarnation; the delete has seen "a" only through
        // "b", which it replaces.
        let mut deleter = Client::default();
        assert_eq!(read(&sim, 1, &mut deleter, "t", &k), set(&["b"]));
        assert_eq!(
            put(&mut sim, 1, &mut deleter, "t", &k, None),
            Outcome::Deleted
        );
        assert_eq!(deleter.ctx().clock().get(&writer), 0);
        let deadline = sim.now + 2_000;
        let mut peer = Client::default();
        while !read(&sim, 2, &mut peer, "t", &k).is_empty() {
            assert!(sim.now < deadline, "replica 2 never applies the delete");
            sim.run(50);
        }
        // Every member applied the delete: they forget it (replica 0 is no
        // member now), and with it the last record that "a" was replaced.
        let deadline = sim.now + 30_000;
        while (1..3).any(|i| sim.replica(i).store().has_collectable()) {
            assert!(sim.now < deadline, "the delete is never forgotten");
            sim.run(500);
        }
        // Back, replica 0 must not take the others' current versions as
        // all it lacks (its queued writes went when it was forgotten): it
        // lacks a delete they forgot, so it copies their state, and "a"
        // goes.
        sim.group = vec![0, 0, 0];
        sim.settle(CALM);
        every_replica_reads(&sim, "t", &k, &[]);
    });
}
