//! Rescued writes: a former incarnation's writes kept on a disk it could
//! not trust, and writes rescued from a node that left its shard group,
//! written again and counted where contexts name them.

use super::tests::{addr, deliver_writes, exchange, heartbeat, key, pair, run, value};
use super::*;
use crate::causal::{CausalContext, Dot, ReplicaId};

/// A version of `json` written by `writer` as its `n`th write.
fn written_by(writer: &ReplicaId, json: &str, n: u64) -> crate::store::Version {
    crate::store::Version {
        value: value(json),
        dot: Dot::new(writer.clone(), n),
        lamport: 100 + n,
    }
}

#[test]
fn a_former_incarnations_writes_kept_on_disk_are_written_again_once_ready() {
    let a = addr("10.0.0.1:8085");
    let mut r = Replica::new(
        a.clone(),
        "new",
        std::slice::from_ref(&a),
        Timing::default(),
        0,
    );
    let old = crate::causal::ReplicaId::parse("10.0.0.1:8085#old").unwrap();
    let version = |v: &str, n: u64| crate::store::Version {
        value: value(v),
        dot: Dot::new(old.clone(), n),
        lamport: n,
    };
    r.rescue_when_ready(Rescued {
        versions: vec![
            (key("k"), version("1", 3)),
            (
                key("gone"),
                crate::store::Version {
                    value: None,
                    dot: Dot::new(old.clone(), 4),
                    lamport: 4,
                },
            ),
        ],
        writer: None,
    });
    run(&mut r, 0, 200);
    assert!(r.is_ready());
    let held = r.store().get(&key("k")).expect("written again");
    assert_eq!(held.value, value("1"));
    assert_eq!(
        held.dot.replica,
        r.me().id,
        "as this incarnation's own write"
    );
    assert!(
        r.store().get(&key("gone")).is_none(),
        "a delete of nothing is not written"
    );
}

#[test]
fn a_former_incarnations_writes_count_as_applied_at_every_member_once_taken_in() {
    let (mut a, mut b) = pair();
    // a's former incarnation wrote 1..=4: b applied the first only; its
    // disk, not trusted, still held k2 and k3 as their winners (k4 was
    // overwritten there by a write of b's).
    let old = ReplicaId::new("10.0.0.1:8085", "old");
    let version = |json: &str, n: u64| written_by(&old, json, n);
    b.store.apply(key("k1"), version("1", 1));
    b.known.observe(&Dot::new(old.clone(), 1));
    a.pull_from(&b.me().address.clone(), 2);
    exchange(&mut a, &mut b, 2);
    assert!(a.known().satisfies(&old, 1) && !a.known().satisfies(&old, 2));
    a.rescue_when_ready(Rescued {
        versions: vec![(key("k2"), version("2", 2)), (key("k3"), version("3", 3))],
        writer: Some(Dot::new(old.clone(), 4)),
    });
    a.tick(10);
    assert!(
        a.known().satisfies(&old, 4),
        "a context naming any write of the former incarnation is met here"
    );
    assert!(!b.known().satisfies(&old, 2));
    deliver_writes(&mut a, &mut b, 20);
    assert_eq!(b.store().get(&key("k3")).and_then(|v| v.value), value("3"));
    assert!(
        b.known().satisfies(&old, 4),
        "and at the member, with the last write taken in"
    );
}

#[test]
fn a_former_incarnations_write_the_members_had_applied_is_not_written_again() {
    let (mut ra, mut rb) = pair();
    let ctx = CausalContext::empty();
    // A writes k, which B applies, then overwrites... and B deletes it.
    let written = ra.write(key("k"), value("1"), &ctx).unwrap();
    deliver_writes(&mut ra, &mut rb, 10);
    let dot = written
        .learned
        .clock
        .iter()
        .next()
        .map(|(id, n)| Dot::new(id.clone(), n))
        .unwrap();
    rb.write(key("k"), None, &ctx).unwrap();
    let old = rb.store().get(&key("k"));
    assert!(old.as_ref().is_some_and(|v| v.value.is_none()));
    // B, as if started again and ready, is handed A's version to rescue:
    // B had applied it, so it stays deleted.
    rb.rescue_when_ready(Rescued {
        versions: vec![(
            key("k"),
            crate::store::Version {
                value: value("1"),
                dot,
                // Above the delete: only having applied it keeps it out.
                lamport: 100,
            },
        )],
        writer: None,
    });
    run(&mut rb, 20, 200);
    assert_eq!(rb.store().get(&key("k")), old);
}

#[test]
fn rescued_writes_count_as_applied_at_every_member_once_taken_in() {
    let (mut a, mut b) = pair();
    // A node that left the group wrote 1..=3; none of them reached it.
    let left = ReplicaId::new("10.0.0.9:8085", "left");
    let version = |json: &str, n: u64| written_by(&left, json, n);
    // Its first write reached a only.
    a.store.apply(key("k1"), version("1", 1));
    a.known.observe(&Dot::new(left.clone(), 1));
    let rescued = vec![(key("k2"), version("2", 2)), (key("k3"), version("3", 3))];
    assert_eq!(a.take_rescued(rescued, Some(Dot::new(left.clone(), 3))), 2);
    assert!(a.known().satisfies(&left, 3) && !a.known().satisfies(&left, 4));
    deliver_writes(&mut a, &mut b, 10);
    assert_eq!(b.store().get(&key("k2")).and_then(|v| v.value), value("2"));
    assert!(
        !b.known().satisfies(&left, 1),
        "counted before b holds left:1, which a held"
    );
    // b gets what a held (a pull), then counts them all.
    b.pull_from(&a.me().address.clone(), 20);
    exchange(&mut b, &mut a, 20);
    b.deliver(20);
    assert_eq!(b.store().get(&key("k1")).and_then(|v| v.value), value("1"));
    assert!(
        b.known().satisfies(&left, 3),
        "a context naming left:3 is met at b"
    );
    assert_eq!(b.store().get(&key("k3")).and_then(|v| v.value), value("3"));

    // Nothing left to write again: the next write carries the count.
    assert_eq!(
        a.take_rescued(Vec::new(), Some(Dot::new(left.clone(), 5))),
        0
    );
    assert!(a.known().satisfies(&left, 5));
    deliver_writes(&mut a, &mut b, 30);
    assert!(!b.known().satisfies(&left, 5));
    a.write(key("z"), value("1"), &CausalContext::empty())
        .unwrap();
    deliver_writes(&mut a, &mut b, 40);
    assert!(b.known().satisfies(&left, 5));
}

#[test]
fn a_rescued_version_of_a_write_applied_here_is_never_written_again() {
    let (mut a, mut b) = pair();
    let ctx = CausalContext::empty();
    // a writes k; b applies it, deletes k, and forgets the tombstone (as
    // once every replica applied the delete).
    a.write(key("k"), value("1"), &ctx).unwrap();
    deliver_writes(&mut a, &mut b, 10);
    let version = a.store().get(&key("k")).unwrap();
    b.write(key("k"), None, &ctx).unwrap();
    assert_eq!(b.forget_keys(|k| k != "k"), 1);
    // a, which never applied the delete, rescues its version of k.
    assert_eq!(b.take_rescued(vec![(key("k"), version)], None), 0);
    assert!(
        b.store().get(&key("k")).is_none(),
        "a deleted value came back"
    );
}

/// The keys of the versions `rescued` holds, sorted.
fn rescued_keys(rescued: Rescued) -> Vec<String> {
    let mut keys: Vec<String> = (rescued.versions.iter())
        .map(|(k, _)| k.to_string())
        .collect();
    keys.sort();
    keys
}

#[test]
fn a_node_rescues_only_its_writes_no_member_staying_in_its_group_applied() {
    let (mut a, mut b) = pair();
    let ctx = CausalContext::empty();
    a.write(key("k1"), value("1"), &ctx).unwrap();
    a.write(key("k2"), value("2"), &ctx).unwrap();
    deliver_writes(&mut a, &mut b, 10);
    // b tells a what it applied; a's next write never reaches it.
    heartbeat(&b, &mut a, 20);
    a.write(key("k3"), value("3"), &ctx).unwrap();
    let b_address = b.me().address.clone();
    assert_eq!(
        rescued_keys(a.rescued_on_leaving(std::slice::from_ref(&b_address), 0, |_| true)),
        ["k3"]
    );
    // No member stays in the group: every write of its own is rescued.
    assert_eq!(
        rescued_keys(a.rescued_on_leaving(&[], 0, |_| true)),
        ["k1", "k2", "k3"]
    );
}

#[test]
fn a_node_that_took_part_in_the_reshard_rescues_none_of_the_writes_it_handed_off() {
    // a and b are a group that a reshard breaks up; their keys move to
    // another shard. a writes k and m; b applies both, then deletes k: a
    // delete that never reaches a.
    let (mut a, mut b) = pair();
    let ctx = CausalContext::empty();
    a.write(key("k"), value("1"), &ctx).unwrap();
    a.write(key("m"), value("2"), &ctx).unwrap();
    deliver_writes(&mut a, &mut b, 10);
    b.write(key("k"), None, &ctx).unwrap();
    // The hand-off: both hand over their versions; the new shard keeps
    // the winner of each key, a key deleted left out (as a node does).
    let handed_here = a.known().count(&a.me().id);
    let mut winners: std::collections::BTreeMap<_, crate::store::Version> = Default::default();
    let mut depends = crate::causal::VectorClock::new();
    for r in [&a, &b] {
        let (versions, clock) = r.export(|_| true);
        for (k, v) in versions {
            if winners.get(&k).is_none_or(|held| v.supersedes(held)) {
                winners.insert(k, v);
            }
        }
        depends.merge(&clock);
    }
    let (deleted, taken): (Vec<_>, Vec<_>) =
        winners.into_iter().partition(|(_, v)| v.is_tombstone());
    let new_shard = |remembers_deletes: bool| {
        let at = addr("10.0.0.3:8085");
        let mut c = Replica::new(at.clone(), "s2e1.c", &[at], Timing::default(), 0);
        run(&mut c, 0, 10);
        assert!(c.is_ready());
        c.import(taken.clone(), &depends);
        if remembers_deletes {
            c.note_handed_deletes(deleted.clone(), 10);
        }
        c
    };
    // a leaves its group having taken part: nothing of what it handed
    // over is rescued, and the deleted value stays deleted.
    let rescued = a.rescued_on_leaving(&[], handed_here, |_| true);
    assert!(rescued.versions.is_empty(), "{:?}", rescued.versions);
    let mut c = new_shard(true);
    c.take_rescued(rescued.versions, rescued.writer);
    assert!(
        c.store().get(&key("k")).is_none(),
        "a deleted value came back"
    );
    assert_eq!(c.store().get(&key("m")).and_then(|v| v.value), value("2"));
    // Had it been cut off instead, it would rescue its versions: the new
    // shard, remembering that k was handed over deleted, writes none again.
    let rescued = a.rescued_on_leaving(&[], 0, |_| true);
    assert_eq!(rescued.versions.len(), 2);
    let mut c = new_shard(true);
    assert_eq!(
        c.take_rescued(rescued.versions.clone(), rescued.writer.clone()),
        0
    );
    assert!(
        c.store().get(&key("k")).is_none(),
        "a deleted value came back"
    );
    // Either guard alone keeps k deleted; without both, it comes back.
    let mut c = new_shard(false);
    c.take_rescued(rescued.versions, rescued.writer);
    assert!(c.store().get(&key("k")).is_some());
    // A write made after the hand-off is still rescued; so are its writes
    // to keys that stay in the shard (they were not handed over).
    a.write(key("n"), value("3"), &ctx).unwrap();
    assert_eq!(
        rescued_keys(a.rescued_on_leaving(&[], handed_here, |_| true)),
        ["n"]
    );
    assert_eq!(
        rescued_keys(a.rescued_on_leaving(&[], handed_here, |_| false)),
        ["k", "m", "n"]
    );
}

/// A delete of "k" a reshard handed over, and the value it saw, rescued
/// from a node cut off during the reshard.
fn handed_delete_and_value_it_saw() -> (
    crate::store::Version,
    Vec<(crate::store::Key, crate::store::Version)>,
) {
    let (deleter, left) = (
        ReplicaId::new("10.0.0.8:8085", "s3e1.d"),
        ReplicaId::new("10.0.0.9:8085", "s3e1.l"),
    );
    let delete = crate::store::Version {
        value: None,
        dot: Dot::new(deleter, 5),
        lamport: 105,
    };
    (delete, vec![(key("k"), written_by(&left, "1", 1))])
}

#[test]
fn keys_a_reshard_handed_over_deleted_are_remembered_for_a_while() {
    let (mut a, _) = pair();
    let (delete, seen) = handed_delete_and_value_it_saw();
    a.note_handed_deletes(vec![(key("k"), delete)], 0);
    // A value the delete saw (it ranks below it) is not written again...
    let rescued = || seen.clone();
    assert_eq!(a.take_rescued(rescued(), None), 0);
    assert!(a.store().get(&key("k")).is_none());
    // ...until the record is dropped, at the next reshard after the time.
    a.note_handed_deletes(Vec::new(), reshard::HANDED_DELETES_KEPT + 1);
    assert_eq!(a.take_rescued(rescued(), None), 1);
    assert_eq!(a.store().get(&key("k")).and_then(|v| v.value), value("1"));
}

#[test]
fn a_member_that_joins_after_a_reshard_takes_the_deletes_it_handed_over() {
    let (mut a, mut b) = pair();
    let (delete, seen) = handed_delete_and_value_it_saw();
    a.note_handed_deletes(vec![(key("k"), delete.clone())], 0);
    b.note_handed_deletes(vec![(key("k"), delete)], 0);
    // C joins the group an hour less a minute later, copying A's state.
    let late = reshard::HANDED_DELETES_KEPT - 60_000;
    let c_addr = addr("10.0.0.3:8085");
    let view = [
        a.me().address.clone(),
        b.me().address.clone(),
        c_addr.clone(),
    ];
    let mut c = Replica::new(c_addr, "c", &view, Timing::default(), late);
    let mut now = late;
    while !c.is_ready() && now < late + 5_000 {
        for r in [&mut a, &mut b, &mut c] {
            r.tick(now);
        }
        exchange(&mut c, &mut a, now);
        exchange(&mut c, &mut b, now);
        exchange(&mut a, &mut c, now);
        exchange(&mut b, &mut c, now);
        exchange(&mut a, &mut b, now);
        exchange(&mut b, &mut a, now);
        now += 50;
    }
    assert!(c.is_ready(), "C copied A's state");
    // A value the delete saw, rescued from a node cut off during the
    // reshard, does not come back at C...
    let rescued = || seen.clone();
    assert_eq!(c.take_rescued(rescued(), None), 0);
    assert!(c.store().get(&key("k")).is_none());
    // ...for what was left of the hour (give or take the copy's time),
    // not an hour from the copy.
    run(
        &mut c,
        reshard::HANDED_DELETES_KEPT + 1_000,
        reshard::HANDED_DELETES_KEPT + 1_000,
    );
    assert_eq!(c.take_rescued(rescued(), None), 1);
}
