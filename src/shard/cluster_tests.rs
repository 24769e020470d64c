//! Tests of a node's view of the sharded store (`cluster.rs`): which maps
//! it adopts, the reshard it prepared, the keys handed to it and the
//! changes it must make again.

use super::cluster::*;
use super::map::{Change, ShardMap};
use crate::address::SocketAddress;
use crate::causal::VectorClock;
use crate::causal::{Dot, ReplicaId};
use crate::store::Value;
use crate::store::{Key, Version};
use std::collections::BTreeSet;
use std::time::Duration;

fn nodes(n: usize) -> Vec<SocketAddress> {
    (0..n)
        .map(|i| SocketAddress::parse(&format!("10.10.0.{}:8085", i + 2)).unwrap())
        .collect()
}

#[test]
fn only_a_newer_map_is_adopted_and_it_ends_the_reshard_it_completes() {
    let view = nodes(6);
    let map = ShardMap::initial(&view, 2);
    let cluster = Cluster::new(view[0].clone(), map.clone(), Duration::from_secs(3));
    assert!(!cluster.adopt(map.clone()));
    let live: BTreeSet<_> = view.iter().cloned().collect();
    let next = map.resharded(3, &live, &view[0]).unwrap();
    cluster.prepare(next.clone()).unwrap();
    // Another coordinator's reshard is refused meanwhile.
    let other = map.resharded(2, &live, &view[1]).unwrap();
    assert!(cluster.prepare(other).is_err());
    let moving: Vec<String> = (0..200)
        .map(|i| format!("k{i}"))
        .filter(|k| cluster.is_moving(k))
        .collect();
    assert!(!moving.is_empty() && moving.len() < 200);
    // Another coordinator's abort of the same version leaves it be.
    cluster.abort(&map.resharded(3, &live, &view[2]).unwrap());
    assert_eq!(cluster.pending(), Some(next.clone()));
    assert!(cluster.expire_pending(Duration::from_secs(60)).is_none());
    assert!(cluster.adopt(next.clone()));
    assert!(cluster.pending().is_none());
    assert!(!cluster.is_moving(&moving[0]));
    assert_eq!(cluster.map(), next);
}

/// A version of key `k` written by a member of shard 1.
fn handed_version() -> (Key, Version) {
    let version = Version {
        value: Value::from_json("\"v\"").unwrap(),
        dot: Dot::new(ReplicaId::parse("a#s1e1.x").unwrap(), 1),
        lamport: 1,
    };
    (Key::parse("k").unwrap(), version)
}

#[test]
fn another_change_of_the_reshards_version_loses_to_it_whoever_made_it() {
    // Two maps of one version: the reshard's, and one that adds a node,
    // made meanwhile by a node the reshard left out. Whichever address
    // sorts first, the reshard's wins: the other is held until the
    // reshard commits, and the keys handed over are taken in then.
    let view = nodes(12);
    let map = ShardMap::initial(&view[..6], 2);
    let live: BTreeSet<_> = view[..6].iter().cloned().collect();
    let next = map.resharded(3, &live, &view[1]).unwrap();
    let new = SocketAddress::parse("10.10.0.99:8085").unwrap();
    // 10.10.0.4 sorts after the reshard's 10.10.0.3, 10.10.0.10 before.
    for by in [&view[2], &view[8]] {
        let cluster = Cluster::new(view[0].clone(), map.clone(), Duration::from_secs(3));
        cluster.prepare(next.clone()).unwrap();
        let (key, version) = handed_version();
        (cluster.receive(next.epoch, vec![(key, version)], &VectorClock::new())).unwrap();
        let rival = map.with_node(&new, by).unwrap();
        assert_eq!(rival.epoch, next.epoch);
        assert!(
            next.newer_than(&rival) && !rival.newer_than(&next),
            "made by {by}"
        );
        assert!(cluster.adopt(rival.clone()), "newer than the map held");
        assert_eq!(cluster.pending(), Some(next.clone()), "made by {by}");
        assert!(cluster.adopt(next.clone()));
        assert!(!cluster.adopt(rival.clone()));
        assert!(cluster.pending().is_none());
        assert_eq!(cluster.take_incoming(&next).live.len(), 1, "made by {by}");
    }
}

#[test]
fn a_change_made_here_is_lost_only_when_another_map_of_its_version_replaces_it() {
    let view = nodes(8);
    let map = ShardMap::initial(&view[..6], 2);
    let me = &view[0];
    let cluster = Cluster::new(me.clone(), map.clone(), Duration::from_secs(3));
    let added = Change::AddNode(view[6].clone());
    let mine = map.changed(&added, me).unwrap();
    assert!(cluster.adopt(mine.clone()));
    // A later map (built on this one) keeps the change.
    let later = mine
        .changed(&Change::AddNode(view[7].clone()), &view[1])
        .unwrap();
    assert_eq!(cluster.lost_changes(&mine, &later), []);
    // A map of the same version made elsewhere without it, by a larger
    // address or by a reshard, loses it: once.
    let live: BTreeSet<_> = view[..6].iter().cloned().collect();
    let rivals = [
        map.changed(&Change::RemoveNode(view[5].clone()), &view[3])
            .unwrap(),
        map.resharded(3, &live, &view[1]).unwrap(),
    ];
    for rival in rivals {
        assert!(rival.newer_than(&mine));
        cluster.note_made(mine.epoch, added.clone());
        assert_eq!(
            cluster.lost_changes(&mine, &rival),
            std::slice::from_ref(&added)
        );
        assert_eq!(cluster.lost_changes(&mine, &rival), [], "given once");
    }
    // A map made elsewhere loses nothing made here.
    cluster.note_made(mine.epoch, added.clone());
    let theirs = map.changed(&added, &view[2]).unwrap();
    let reshard = map.resharded(3, &live, &view[1]).unwrap();
    assert_eq!(cluster.lost_changes(&theirs, &reshard), []);
    assert_eq!(cluster.lost_changes(&mine, &mine), []);
    // A change whose map was not held is not made again.
    cluster.forget_made(mine.epoch, &added);
    let reshard = map.resharded(3, &live, &view[1]).unwrap();
    assert_eq!(cluster.lost_changes(&mine, &reshard), []);
}

#[test]
fn a_map_that_replaces_the_reshard_drops_what_was_handed_over_for_it() {
    // Another coordinator's reshard of the same version, made by a
    // larger address, ends the one prepared here: the keys handed over
    // for it are placed by a map that will never be held.
    let view = nodes(6);
    let map = ShardMap::initial(&view, 2);
    let live: BTreeSet<_> = view.iter().cloned().collect();
    let next = map.resharded(3, &live, &view[1]).unwrap();
    let rival = map.resharded(1, &live, &view[4]).unwrap();
    assert!(rival.newer_than(&next));
    let cluster = Cluster::new(view[0].clone(), map.clone(), Duration::from_secs(3));
    cluster.prepare(next.clone()).unwrap();
    let (key, version) = handed_version();
    (cluster.receive(next.epoch, vec![(key, version)], &VectorClock::new())).unwrap();
    assert!(cluster.adopt(rival.clone()));
    assert!(cluster.pending().is_none());
    assert!(cluster.take_incoming(&rival).live.is_empty());
    assert!(cluster.take_incoming(&next).live.is_empty());
    assert_eq!(cluster.map(), rival);
}

#[test]
fn a_node_heard_under_another_run_than_before_restarted() {
    let view = nodes(2);
    let cluster = Cluster::new(
        view[0].clone(),
        ShardMap::initial(&view, 1),
        Duration::from_secs(3),
    );
    let other = Cluster::new(
        view[1].clone(),
        ShardMap::initial(&view, 1),
        Duration::from_secs(3),
    );
    assert_ne!(cluster.run(), other.run(), "each start draws its run");
    assert!(
        other.run() >> 16 >= cluster.run() >> 16,
        "a later start, a larger run"
    );
    assert!(
        !cluster.note_run(&view[1], 7),
        "first heard: nothing to compare"
    );
    assert!(!cluster.note_run(&view[1], 7));
    assert!(cluster.note_run(&view[1], 8), "another run: a restart");
    assert!(!cluster.note_run(&view[1], 8));
    assert!(
        !cluster.note_run(&view[1], 7),
        "a late message of the run before"
    );
    assert!(!cluster.note_run(&view[1], 8));
    assert!(cluster.note_run(&view[1], 10), "a newer run again");
    assert!(
        !cluster.note_run(&view[1], 9),
        "an older run never heard: a late message too"
    );
    assert!(!cluster.note_run(&view[1], 10));
}

#[test]
fn versions_handed_over_keep_the_winner_and_only_for_the_reshard_prepared() {
    let view = nodes(4);
    let map = ShardMap::initial(&view, 2);
    let cluster = Cluster::new(view[0].clone(), map.clone(), Duration::from_secs(3));
    let version = |lamport: u64, v: &str| Version {
        value: Value::from_json(&format!("\"{v}\"")).unwrap(),
        dot: Dot::new(ReplicaId::parse("a#s1e1.x").unwrap(), lamport),
        lamport,
    };
    let key = Key::parse("k").unwrap();
    let none = VectorClock::new();
    assert!(cluster
        .receive(2, vec![(key.clone(), version(1, "a"))], &none)
        .is_err());
    let live: BTreeSet<_> = view.iter().cloned().collect();
    let next = map.resharded(1, &live, &view[0]).unwrap();
    cluster.prepare(next.clone()).unwrap();
    cluster
        .receive(next.epoch, vec![(key.clone(), version(5, "new"))], &none)
        .unwrap();
    cluster
        .receive(next.epoch, vec![(key.clone(), version(3, "old"))], &none)
        .unwrap();
    // A key whose winner is a delete is not taken in at all.
    let gone = Key::parse("gone").unwrap();
    let deleted = Version {
        value: None,
        ..version(9, "x")
    };
    let handed = vec![(gone.clone(), version(2, "y")), (gone, deleted)];
    cluster.receive(next.epoch, handed, &none).unwrap();
    let versions = cluster.take_incoming(&next).live;
    assert_eq!(versions, vec![(key, version(5, "new"))]);
}

#[test]
fn a_reshard_whose_coordinator_went_away_expires() {
    let view = nodes(4);
    let map = ShardMap::initial(&view, 1);
    let cluster = Cluster::new(view[0].clone(), map.clone(), Duration::from_secs(3));
    let live: BTreeSet<_> = view.iter().cloned().collect();
    let next = map.resharded(2, &live, &view[1]).unwrap();
    cluster.prepare(next.clone()).unwrap();
    assert!(cluster.is_moving("k1") || cluster.is_moving("k2") || cluster.is_moving("k3"));
    assert_eq!(cluster.expire_pending(Duration::ZERO), Some(next));
    assert!(cluster.pending().is_none());
    assert!(!cluster.is_moving("k1"));
}

#[test]
fn relaying_nodes_spread_over_a_shards_members_and_each_keeps_to_one() {
    let view = nodes(12);
    let map = ShardMap::initial(&view, 2);
    let other = |me: &SocketAddress| {
        let mine = map.shard_of_node(me).expect("placed");
        *map.shards.keys().find(|&&s| s != mine).expect("two shards")
    };
    let mut firsts = BTreeSet::new();
    for me in &view {
        let cluster = Cluster::new(me.clone(), map.clone(), Duration::from_secs(3));
        for n in &view {
            cluster.heard(n);
        }
        let shard = other(me);
        let targets = cluster.targets(shard);
        assert_eq!(targets, cluster.targets(shard), "the same member each time");
        assert_eq!(targets.len(), 6, "every member of the shard, once");
        firsts.insert(targets[0].clone());
    }
    assert!(firsts.len() >= 3, "relays all went to {firsts:?}");
}

#[test]
fn silent_nodes_are_not_live_and_are_tried_last() {
    let view = nodes(4);
    let map = ShardMap::initial(&view, 1);
    let cluster = Cluster::new(view[0].clone(), map, Duration::from_secs(3));
    cluster.heard(&view[2]);
    assert_eq!(
        cluster.live(),
        [view[0].clone(), view[2].clone()].into_iter().collect()
    );
    assert_eq!(
        cluster.targets(1),
        vec![view[2].clone(), view[1].clone(), view[3].clone()]
    );
}

#[test]
fn a_hand_off_is_counted_only_for_the_map_it_was_made_for() {
    let view = nodes(6);
    let map = ShardMap::initial(&view, 2);
    let cluster = Cluster::new(view[0].clone(), map.clone(), Duration::from_secs(3));
    let live: BTreeSet<_> = view.iter().cloned().collect();
    let next = map.resharded(3, &live, &view[0]).unwrap();
    assert_eq!(cluster.handed_off(&next), 0, "no hand-off yet");
    cluster.note_handed_off(&next, 7);
    assert_eq!(cluster.handed_off(&next), 7);
    // Given up, the reshard's hand-off no longer counts.
    cluster.prepare(next.clone()).unwrap();
    cluster.abort(&next);
    assert_eq!(cluster.handed_off(&next), 0);
    cluster.note_handed_off(&next, 7);
    // The same version by another coordinator, or a later one: none.
    let rival = map.resharded(3, &live, &view[1]).unwrap();
    assert_eq!(cluster.handed_off(&rival), 0);
    let later = next.resharded(2, &live, &view[0]).unwrap();
    assert_eq!(cluster.handed_off(&later), 0);
}
