//! Shards in the simulated cluster: two shards, each a simulated cluster of
//! its own group, and clients that carry one context from one to the
//! other (what `crate::sharding` does over HTTP). Causality across shards
//! under partitions, and keys handed from one shard to the other (a
//! reshard's hand-off) while a member of the old shard is cut off.

use super::sim::{for_seeds, key, Op, Sim, CALM, LOSSY};
use crate::causal::VectorClock;
use crate::store::{Key, Version};

/// Two shards of three replicas each, settled, with `sessions` idle
/// sessions each (session `s` of one is session `s` of the other).
fn two_shards(seed: u64, sessions: usize) -> (Sim, Sim) {
    let mut a = Sim::new_shard(seed, 3, CALM, "s1e1").with_sessions(sessions, 0);
    let mut b = Sim::new_shard(seed + 1_000, 3, CALM, "s2e1").with_sessions(sessions, 0);
    a.settle(CALM);
    b.settle(CALM);
    (a, b)
}

/// Session `s` takes its context from one shard to the other.
fn carry(from: &Sim, to: &mut Sim, s: usize) {
    to.sessions[s].ctx = from.sessions[s].ctx.clone();
}

#[test]
fn a_read_in_one_shard_hands_over_what_its_value_depended_on_in_another() {
    for_seeds(10, |seed| {
        let (mut a, mut b) = two_shards(seed, 2);
        let (x, y) = (key("x"), key("y"));
        // Replica 2 of shard A is cut off: it will lack x's write.
        a.group = vec![0, 0, 1];
        let x1 = a.client(0, 0, &Op::Put(x.clone())).expect("served");
        // Session 0 writes y in shard B having written x: served at once,
        // though B's replicas know nothing of A's writes (per-shard wait).
        carry(&a, &mut b, 0);
        let y1 = b.client(0, 0, &Op::Put(y.clone())).expect("no wait for A");
        b.run(2_000);
        // Session 1 reads y elsewhere in B, with no context of its own...
        assert_eq!(b.client(1, 1, &Op::Get(y.clone())), Ok(y1));
        // ...and then x at the cut-off replica of A: not the old x.
        carry(&b, &mut a, 1);
        let stale = a.client(1, 2, &Op::Get(x.clone()));
        assert!(
            matches!(stale, Err(super::Wait::Missing(_))),
            "the cut-off replica must wait for x1, not answer {stale:?}"
        );
        a.group = vec![0, 0, 0];
        assert_eq!(a.until_served(1, 2, Op::Get(x)), x1);
        a.settle(LOSSY);
        b.settle(LOSSY);
    });
}

#[test]
fn another_shards_entries_never_hold_writes_in_the_buffer() {
    for_seeds(10, |seed| {
        let (mut a, mut b) = two_shards(seed, 1);
        for k in 0..5 {
            a.until_served(0, k % 3, Op::Put(key(&format!("a{k}"))));
        }
        // Every write in B depends on A's writes; B applies them all.
        carry(&a, &mut b, 0);
        for k in 0..5 {
            b.until_served(0, k % 3, Op::Put(key(&format!("b{k}"))));
        }
        b.settle(LOSSY);
        for i in 0..3 {
            let r = b.replica(i);
            assert_eq!(r.stats().buffered, 0);
            assert_eq!(r.store().len(), 5);
            // A's incarnations are no entry of B's clocks, but every
            // replica of B knows what its writes depended on in A.
            assert!(r
                .known()
                .clock()
                .iter()
                .all(|(id, _)| id.group() == Some("s2e1")));
            let frontier = r.known().foreign();
            assert!(frontier.iter().all(|(id, _)| id.group() == Some("s1e1")));
            assert!(!frontier.is_empty());
        }
    });
}

/// What every live replica of `from` hands over of the keys `moving` names,
/// merged by the conflict rule (as a new shard's member keeps it).
fn hand_off(from: &Sim, moving: &[Key]) -> (Vec<(Key, Version)>, VectorClock) {
    let mut merged: std::collections::BTreeMap<Key, Version> = Default::default();
    let mut depends = VectorClock::new();
    for i in from.live() {
        let (versions, clock) = from
            .replica(i)
            .export(|k| moving.iter().any(|m| m.as_str() == k));
        for (key, version) in versions {
            match merged.get(&key) {
                Some(held) if !version.supersedes(held) => {}
                _ => {
                    merged.insert(key, version);
                }
            }
        }
        depends.merge(&clock);
    }
    (merged.into_iter().collect(), depends)
}

#[test]
fn keys_handed_to_another_shard_keep_every_acknowledged_write_despite_a_partition() {
    for_seeds(10, |seed| {
        let (mut a, mut b) = two_shards(seed, 3);
        let moving: Vec<Key> = (0..6).map(|k| key(&format!("m{k}"))).collect();
        // Sessions write the moving keys, each at one replica a round; one
        // replica of A is cut off for the last round, so the last writes
        // of some keys are only there, and of the others only elsewhere.
        let mut last = std::collections::BTreeMap::new();
        for round in 0..3 {
            if round == 2 {
                a.group = vec![0, 0, 1];
            }
            for (n, k) in moving.iter().enumerate() {
                let (s, at) = (n % 3, (n + round) % 3);
                let value = a.until_served(s, at, Op::Put(k.clone()));
                last.insert(k.clone(), (s, value));
            }
            a.run(2_000);
        }
        // The hand-off: every replica of A sends what it holds, every
        // replica of B takes it in; A forgets the keys.
        let (versions, depends) = hand_off(&a, &moving);
        // B's audits hold its replicas to the writes issued: A's writes of
        // the moving keys are B's now.
        for w in a.log.iter().filter(|w| moving.contains(&w.key)) {
            b.issued.insert(w.version.dot.clone(), b.log.len());
            b.log.push(w.clone());
        }
        for i in 0..3 {
            b.replica_mut(i).import(versions.clone(), &depends);
            let forgotten = a
                .replica_mut(i)
                .forget_keys(|k| !moving.iter().any(|m| m.as_str() == k));
            assert!(forgotten > 0);
        }
        // Every session reads its last write of each key in B, anywhere,
        // with its context (which names A's writes: foreign to B).
        for (k, (s, value)) in &last {
            carry(&a, &mut b, *s);
            for i in 0..3 {
                assert_eq!(
                    b.client(*s, i, &Op::Get(k.clone())),
                    Ok(value.clone()),
                    "{k} at B's replica {i}"
                );
            }
        }
        // A write after the move supersedes the moved version everywhere.
        carry(&a, &mut b, 0);
        let newer = b.client(0, 1, &Op::Put(moving[0].clone())).expect("served");
        b.settle(LOSSY);
        for i in 0..3 {
            assert_eq!(b.replica(i).store().value(&moving[0]), newer);
        }
    });
}

#[test]
fn a_context_from_a_newer_shard_map_waits_at_a_node_that_holds_an_older_one() {
    for_seeds(5, |seed| {
        let (mut a, _) = two_shards(seed, 1);
        let x = key("x");
        // Replicas 0 and 1 hold version 3 of the map; replica 2 was cut
        // off and still holds version 2, under which x may have lived in
        // another shard (whose writes it would take for another group's).
        for i in 0..3 {
            a.replica_mut(i)
                .note_map_version(if i == 2 { 2 } else { 3 });
        }
        let x1 = a.client(0, 0, &Op::Put(x.clone())).expect("served");
        let map = crate::causal::ReplicaId::shard_map();
        let through = a.sessions[0].ctx.get(map.as_str()).and_then(|n| n.as_u64());
        assert_eq!(
            through,
            Some(3),
            "a write's answer names the map it went through"
        );
        a.run(2_000);
        let stale = a.client(0, 2, &Op::Get(x.clone()));
        assert_eq!(stale, Err(super::Wait::MapBehind(3)));
        // Once it holds that map, it serves.
        a.replica_mut(2).note_map_version(3);
        assert_eq!(a.client(0, 2, &Op::Get(x)), Ok(x1));
    });
}

#[test]
fn a_table_write_names_the_shard_map_it_went_through_as_a_write_to_the_default_table_does() {
    use super::Condition;
    use crate::causal::CausalContext;
    use crate::store::{TableName, Value};
    for_seeds(3, |seed| {
        let (mut a, _) = two_shards(seed, 1);
        for i in 0..3 {
            a.replica_mut(i).note_map_version(3);
        }
        let map = crate::causal::ReplicaId::shard_map();
        let through = |learned: &super::Learned| learned.clock.get(&map);
        let none = CausalContext::parse(None).expect("no context");
        for (table, siblings) in [("plain", false), ("many", true)] {
            let name = TableName::parse(table).expect("a valid name");
            let created = (a.replica_mut(0).create_table(&name, siblings, &none)).expect("served");
            assert_eq!(through(&created.learned), 3, "create {table}");
            a.flush(0);
            let value = Value::from_json("\"v\"").expect("json");
            let wrote = (a.replica_mut(0))
                .write_in(Some(&name), key("x"), value, &none, &Condition::Any)
                .expect("served");
            assert_eq!(through(&wrote.learned), 3, "a write in {table}");
            a.flush(0);
            let dropped = (a.replica_mut(0).drop_table(&name, "next", &none)).expect("served");
            assert_eq!(through(&dropped.learned), 3, "drop {table}");
            a.flush(0);
        }
    });
}
