//! Tests of the store: the conflict rule, deltas, copies and their merge,
//! tombstone collection and the slot table.

use super::*;
use crate::causal::{Dot, ReplicaId, VectorClock};

fn key(k: &str) -> Key {
    Key::parse(k).unwrap()
}
fn val(json: &str) -> Option<Value> {
    Value::from_json(json).unwrap()
}
fn id(name: &str) -> ReplicaId {
    ReplicaId::parse(name).unwrap()
}
fn ver(value: Option<Value>, origin: &str, n: u64, lamport: u64) -> Version {
    Version {
        value,
        dot: Dot::new(id(origin), n),
        lamport,
    }
}
fn clock(entries: &[(&str, u64)]) -> VectorClock {
    entries.iter().map(|(n, c)| (id(n), *c)).collect()
}
fn held(s: &Store) -> Vec<(Key, Version)> {
    let mut all: Vec<(Key, Version)> = s.iter().map(|e| (e.to_key(), e.to_version())).collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

#[test]
fn later_write_beats_earlier_whatever_the_arrival_order() {
    let old = ver(val("1"), "a", 1, 1);
    let new = ver(val("2"), "b", 1, 2);
    let mut s1 = Store::new();
    s1.apply(key("k"), old.clone());
    s1.apply(key("k"), new.clone());
    let mut s2 = Store::new();
    s2.apply(key("k"), new.clone());
    s2.apply(key("k"), old);
    assert_eq!(s1.get(&key("k")), Some(new.clone()));
    assert_eq!(s2.get(&key("k")), Some(new));
}

#[test]
fn concurrent_writes_and_deletes_resolve_by_one_rule() {
    let put = ver(val("1"), "a", 1, 5);
    let del = ver(None, "b", 1, 5);
    let mut s1 = Store::new();
    s1.apply(key("k"), put.clone());
    s1.apply(key("k"), del.clone());
    let mut s2 = Store::new();
    s2.apply(key("k"), del);
    s2.apply(key("k"), put);
    assert_eq!(s1.get(&key("k")), s2.get(&key("k")));
    // Same lamport: the larger dot ("b" > "a") wins, so the delete wins.
    assert!(s1.get(&key("k")).unwrap().is_tombstone());
    assert_eq!((s1.len(), s1.tombstones()), (0, 1));
}

#[test]
fn delta_lists_only_unseen_versions() {
    let mut s = Store::new();
    s.apply(key("x"), ver(val("1"), "a", 1, 1));
    s.apply(key("y"), ver(val("2"), "a", 2, 2));
    s.apply(key("z"), ver(val("3"), "b", 1, 3));
    let seen = clock(&[("a", 1)]);
    let mut delta = s.delta(|w| Some(seen.get(w)));
    delta.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        delta.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        ["y", "z"]
    );
    // A writer the asker has no need of is skipped.
    let delta = s.delta(|w| (w.as_str() == "a").then(|| seen.get(w)));
    assert_eq!(delta.len(), 1);
    // An overwritten version is not listed under its old write.
    s.apply(key("y"), ver(val("4"), "b", 2, 4));
    let delta = s.delta(|w| (w.as_str() == "a").then_some(0));
    assert_eq!(
        delta.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        ["x"]
    );
}

/// Merges `theirs` (with what its replica has seen) into `mine` (with what
/// this one has seen), a page of `page` keys at a time; returns the values
/// either side reports for replay, given the Lamport time of the newest
/// delete each side forgot (`here`, `there`). Merges each page both ways,
/// as versions ([`Store::merge_page`]) and as the image a reply carries
/// ([`Store::merge_image`], after a trip through JSON), and checks that
/// both come to the same.
fn merge(
    mine: &mut Store,
    (seen_here, here): (&VectorClock, u64),
    theirs: &Store,
    (seen_there, there): (&VectorClock, u64),
    page: usize,
) -> Vec<(Key, Version)> {
    let mut twin = mine.clone();
    let mine_replays = merge_by(
        mine, seen_here, here, theirs, seen_there, there, page, false,
    );
    let twin_replays = merge_by(
        &mut twin, seen_here, here, theirs, seen_there, there, page, true,
    );
    assert_eq!(held(mine), held(&twin), "a page merged as an image differs");
    assert_eq!(mine.tombstones(), twin.tombstones());
    assert_eq!(mine_replays, twin_replays);
    mine_replays
}

#[allow(clippy::too_many_arguments)]
fn merge_by(
    mine: &mut Store,
    seen_here: &VectorClock,
    here: u64,
    theirs: &Store,
    seen_there: &VectorClock,
    there: u64,
    page: usize,
    as_image: bool,
) -> Vec<(Key, Version)> {
    let mut marks = Marks::default();
    let mut cursor = Some(0);
    let mut replays = Vec::new();
    while let Some(start) = cursor {
        let (image, next) = theirs.image_page(start, page, usize::MAX);
        let seen = |d: &Dot| seen_here.contains(d);
        replays.extend(match as_image {
            true => mine.merge_image(&through_the_wire(&image), seen, &mut marks, here),
            false => mine.merge_page(image.iter().collect(), seen, &mut marks, here),
        });
        cursor = next;
    }
    let mut cursor = Some(0);
    while let Some(start) = cursor {
        let count = |w: &ReplicaId| seen_there.get(w);
        cursor = mine.sweep(start, 2, &marks, count, there, &mut replays);
    }
    replays.sort_by(|a, b| a.0.cmp(&b.0));
    replays
}

/// `image` printed as a reply carries it and read back.
fn through_the_wire(image: &Image) -> Image {
    let text = serde_json::to_vec(image).unwrap();
    serde_json::from_slice(&text).unwrap()
}

#[test]
fn a_merged_copy_brings_back_nothing_either_side_deleted() {
    // Both saw a:1 (x) and a:2 (y). Here, y was deleted (b:1) and the
    // tombstone forgotten; there, x was deleted (c:1) and forgotten.
    let mut mine = Store::new();
    mine.apply(key("x"), ver(val("1"), "a", 1, 1));
    mine.apply(key("only-here"), ver(val("5"), "b", 2, 3));
    let seen_here = clock(&[("a", 2), ("b", 2)]);
    let mut theirs = Store::new();
    theirs.apply(key("y"), ver(val("2"), "a", 2, 2));
    theirs.apply(key("only-there"), ver(val("6"), "c", 2, 3));
    let seen_there = clock(&[("a", 2), ("c", 2)]);
    merge(&mut mine, (&seen_here, 0), &theirs, (&seen_there, 0), 1);
    assert_eq!(
        held(&mine)
            .iter()
            .map(|(k, _)| k.as_str())
            .collect::<Vec<_>>(),
        ["only-here", "only-there"]
    );
    // The other way round gives the same contents.
    let mut mine2 = Store::new();
    mine2.apply(key("x"), ver(val("1"), "a", 1, 1));
    mine2.apply(key("only-here"), ver(val("5"), "b", 2, 3));
    merge(&mut theirs, (&seen_there, 0), &mine2, (&seen_here, 0), 3);
    assert_eq!(held(&theirs), held(&mine));
}

#[test]
fn a_merged_copy_keeps_what_the_other_side_never_saw_and_resolves_the_rest() {
    let mut mine = Store::new();
    mine.apply(key("k"), ver(val("1"), "a", 1, 1));
    mine.apply(key("new"), ver(val("7"), "a", 2, 2));
    let mut theirs = Store::new();
    theirs.apply(key("k"), ver(val("2"), "b", 1, 2));
    let replays = merge(
        &mut mine,
        (&clock(&[("a", 2)]), 0),
        &theirs,
        (&clock(&[("a", 1), ("b", 1)]), 0),
        10,
    );
    assert!(replays.is_empty(), "no delete was forgotten");
    assert_eq!(mine.value(&key("k")), val("2"));
    assert_eq!(mine.value(&key("new")), val("7"));
}

#[test]
fn values_that_may_have_met_a_forgotten_delete_are_reported_for_replay() {
    // There, k was deleted (lamport 9) and the tombstone forgotten; here,
    // k was written concurrently (lamport 5), unseen there. Here also
    // holds j written later (lamport 12), and there holds m (lamport 3),
    // unseen here, while here forgot a delete of lamport 4.
    let mut mine = Store::new();
    mine.apply(key("k"), ver(val("1"), "b", 1, 5));
    mine.apply(key("j"), ver(val("2"), "b", 2, 12));
    let mut theirs = Store::new();
    theirs.apply(key("m"), ver(val("3"), "c", 1, 3));
    let replays = merge(
        &mut mine,
        (&clock(&[("b", 2)]), 4),
        &theirs,
        (&clock(&[("c", 1)]), 9),
        10,
    );
    let keys: Vec<&str> = replays.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["k", "m"], "j is above every forgotten delete");
    assert_eq!(mine.len(), 3, "all are kept");
}

#[test]
fn stable_tombstones_are_forgotten_a_batch_at_a_time() {
    let mut s = Store::new();
    for i in 0..10 {
        s.apply(key(&format!("k{i}")), ver(None, "a", i + 1, i + 1));
    }
    s.apply(key("j"), ver(None, "b", 1, 20));
    let stable = clock(&[("a", 7)]);
    let mut total = 0;
    let mut rounds = 0;
    loop {
        let c = s.collect_tombstones(3, |w| stable.get(w));
        total += c.forgotten;
        rounds += 1;
        if c.done {
            break;
        }
    }
    assert_eq!(total, 7);
    assert!(rounds >= 3, "the round was done in batches");
    assert_eq!(s.tombstones(), 4);
    assert!(s.get(&key("j")).is_some() && s.get(&key("k9")).is_some());
    assert!(s.get(&key("k0")).is_none());
    // The next round takes the rest once stable.
    let c = s.collect_tombstones(100, |_| 100);
    assert_eq!(
        (c.forgotten, c.done, c.deletes),
        (4, true, clock(&[("a", 10), ("b", 1)]))
    );
    assert_eq!(s.tombstones(), 0);
}

#[test]
fn a_tombstone_overwritten_by_a_value_is_not_collected() {
    let mut s = Store::new();
    s.apply(key("k"), ver(None, "a", 1, 1));
    s.apply(key("k"), ver(val("1"), "a", 2, 2));
    let c = s.collect_tombstones(10, |_| 100);
    assert_eq!((c.forgotten, s.len()), (0, 1));
}

#[test]
fn slots_of_forgotten_keys_are_reused() {
    let mut s = Store::new();
    for i in 0..100 {
        s.apply(key(&format!("k{i}")), ver(None, "a", i + 1, i + 1));
    }
    assert_eq!(s.collect_tombstones(1000, |_| 100).forgotten, 100);
    assert_eq!((s.len(), s.tombstones(), s.iter().count()), (0, 0, 0));
    for i in 0..100 {
        s.apply(key(&format!("n{i}")), ver(val("1"), "b", i + 1, i + 1));
    }
    assert_eq!(s.slots.len(), 100, "vacant slots are filled first");
    assert_eq!(s.len(), 100);
    assert!(s.value(&key("n99")).is_some() && s.get(&key("k1")).is_none());
}

#[test]
fn pages_cover_every_version_once() {
    let mut s = Store::new();
    for i in 0..25u64 {
        let value = if i % 5 == 0 {
            None
        } else {
            val(&i.to_string())
        };
        s.apply(key(&format!("k{i}")), ver(value, "a", i + 1, i + 1));
    }
    s.collect_tombstones(100, |_| 3); // leave a few vacant slots
    let mut copied = Vec::new();
    let mut cursor = Some(0);
    let mut pages = 0;
    while let Some(start) = cursor {
        let (image, next) = s.image_page(start, 4, usize::MAX);
        assert!(image.len() <= 4);
        copied.extend(image.iter());
        cursor = next;
        pages += 1;
    }
    copied.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(copied, held(&s));
    assert!(pages >= 6);
}

proptest::proptest! {
    /// The store behaves as a map that keeps the winner of each key,
    /// through inserts, overwrites, tombstones and forgetting them; and
    /// its delta finds what a scan finds.
    #[test]
    fn store_matches_a_plain_map(ops in proptest::collection::vec(
        (0u8..40, proptest::option::of(0u32..1000), 0u8..3, 1u64..400, 0u8..8),
        1..400,
    ), probe in 0u64..400) {
        let origins = ["a", "b", "c"];
        let mut s = Store::new();
        let mut model: std::collections::BTreeMap<Key, Version> = Default::default();
        for (n, (k, value, origin, lamport, forget)) in ops.into_iter().enumerate() {
            let k = key(&format!("key{k}"));
            // Every write has a dot of its own, as in the store's use.
            let counter = n as u64 + 1;
            if forget == 0 {
                let before = model.len();
                model.retain(|_, v| !(v.is_tombstone() && v.dot.counter <= lamport));
                let mut forgotten = 0;
                loop {
                    let c = s.collect_tombstones(7, |_| lamport);
                    forgotten += c.forgotten;
                    if c.done { break; }
                }
                proptest::prop_assert_eq!(forgotten, before - model.len());
                continue;
            }
            let v = ver(value.map(|n| val(&n.to_string()).unwrap()), origins[origin as usize], counter, lamport);
            let wins = model.get(&k).is_none_or(|cur| v.supersedes(cur));
            if wins {
                model.insert(k.clone(), v.clone());
            }
            proptest::prop_assert_eq!(s.apply(k, v), wins);
        }
        let expected: Vec<(Key, Version)> = model.clone().into_iter().collect();
        proptest::prop_assert_eq!(held(&s), expected);
        for (k, v) in &model {
            proptest::prop_assert_eq!(s.get(k), Some(v.clone()));
        }
        let live = model.values().filter(|v| !v.is_tombstone()).count();
        proptest::prop_assert_eq!((s.len(), s.tombstones()), (live, model.len() - live));
        let mut delta = s.delta(|_| Some(probe));
        delta.sort_by(|a, b| a.0.cmp(&b.0));
        let scanned: Vec<(Key, Version)> = model.into_iter().filter(|(_, v)| v.dot.counter > probe).collect();
        proptest::prop_assert_eq!(delta, scanned);
    }
}

#[test]
fn an_image_holds_every_version() {
    let mut s = Store::new();
    s.apply(key("a"), ver(val(r#"{"x":"é"}"#), "r1", 1, 1));
    s.apply(key("gone"), ver(None, "r2", 1, 2));
    s.apply(key("b"), ver(val("[1]"), "r1", 2, 3));
    let mut copied: Vec<(Key, Version)> = s.image().iter().collect();
    copied.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(copied, held(&s));
    assert_eq!(s.image().len(), 3);
}

#[test]
fn a_sweep_spends_little_on_slots_the_copy_touched() {
    // A store of 64 keys, all carried by a copy (marked): a budget of 64
    // sweeps them all in one batch.
    let mut theirs = Store::new();
    for n in 1..=64u64 {
        theirs.apply(key(&format!("k{n}")), ver(val("1"), "a", n, n));
    }
    let mut mine = Store::new();
    let mut marks = Marks::default();
    let (image, _) = theirs.image_page(0, usize::MAX, usize::MAX);
    mine.merge_image(&image, |_| false, &mut marks, 0);
    let mut replays = Vec::new();
    assert_eq!(mine.sweep(0, 64, &marks, |_| 0, 0, &mut replays), None);
    // None carried (no marks): each costs SWEPT_SLOT_COST, so the same
    // budget sweeps 2 of them.
    let unmarked = Marks::default();
    let next = mine.sweep(
        0,
        2 * copy::SWEPT_SLOT_COST,
        &unmarked,
        |_| 0,
        0,
        &mut replays,
    );
    assert_eq!(next, Some(2));
    // A batch always gets on by at least a slot.
    assert_eq!(mine.sweep(5, 1, &unmarked, |_| 0, 0, &mut replays), Some(6));
    assert_eq!(mine.len(), 64);
}
