//! Fitting a node's replica to the shard map: the replica a node starts
//! with, and what a new map changes (keys taken in or forgotten, members
//! left out, or a new replica in another group).

use tracing::info;

use crate::address::SocketAddress;
use crate::node::Node;
use crate::replica::{Millis, Replica, Rescued};
use crate::shard::cluster::Handed;
use crate::shard::ShardMap;
use crate::store::tables::is_table;

/// The group name of a node placed in no shard: it replicates with no one.
const UNPLACED: &str = "unplaced";

/// The incarnation name of a new replica in group `group`.
fn incarnation_in(group: &str) -> String {
    format!("{group}.{}", crate::incarnation::fresh())
}

/// The map, the incarnation and the view of a node started with
/// `SHARD_COUNT`: every node computes the same map from the same `VIEW`.
pub fn start(
    me: &SocketAddress,
    view: &[SocketAddress],
    count: u32,
) -> (ShardMap, String, Vec<SocketAddress>) {
    let map = ShardMap::initial(view, count);
    let (incarnation, members) = placement_of(&map, me);
    (map, incarnation, members)
}

/// The incarnation and view of a new replica for `me` under `map`.
fn placement_of(map: &ShardMap, me: &SocketAddress) -> (String, Vec<SocketAddress>) {
    match map.shard_of_node(me).and_then(|id| map.shard(id)) {
        Some(shard) => (incarnation_in(&shard.group), shard.members.clone()),
        None => (incarnation_in(UNPLACED), vec![me.clone()]),
    }
}

/// A new replica for `node` under `map`, holding what was handed over.
fn new_replica(node: &Node, map: &ShardMap, handed: Handed, now: Millis) -> Replica {
    let me = &node.config.socket_address;
    let (incarnation, members) = placement_of(map, me);
    let mut replica = Replica::new(
        me.clone(),
        &incarnation,
        &members,
        node.config.timing.clone(),
        node.now(),
    );
    take_in(&mut replica, handed, now);
    replica
}

/// Merges what a reshard handed over into `replica`.
fn take_in(replica: &mut Replica, handed: Handed, now: Millis) {
    if !handed.live.is_empty() {
        replica.import(handed.live, &handed.depends);
    }
    replica.note_handed_deletes(handed.deleted, now);
}

/// Whether this node's replica is the one its shard's group needs now.
fn group_of(map: &ShardMap, me: &SocketAddress) -> String {
    map.shard_of_node(me)
        .and_then(|id| map.shard(id))
        .map_or_else(|| UNPLACED.to_string(), |s| s.group.clone())
}

/// Holds `map` if it is newer than the node's, and makes the node's
/// replica fit it: merges what was handed over for it, forgets the keys
/// it no longer holds, leaves out members that left, or starts a new
/// replica in the node's new group. Returns whether the map was newer.
pub fn install(node: &Node, map: ShardMap) -> bool {
    let Some(cluster) = node.cluster() else {
        return false;
    };
    let me = cluster.me().clone();
    let mut adopted = false;
    let mut rescued = Rescued::default();
    node.replace_replica(|replica, now| {
        let before = cluster.map();
        if !cluster.adopt(map.clone()) {
            return None;
        }
        adopted = true;
        // Made again at the next ping (see `gossip::redo`).
        cluster.redo_later(cluster.lost_changes(&before, &map));
        let handed = cluster.take_incoming(&map);
        let group = group_of(&map, &me);
        replica.note_map_version(map.epoch);
        if replica.me().id.group() != Some(group.as_str()) {
            info!(epoch = map.epoch, %group, keys = handed.live.len(), "this node changes shard group");
            // The members that stay in the group it leaves, if it goes on.
            let staying = (map.shards.values())
                .find(|s| replica.me().id.group() == Some(s.group.as_str()))
                .map(|s| s.members.clone())
                .unwrap_or_default();
            let (old, new) = (before.layout(), map.layout());
            rescued = replica.rescued_on_leaving(&staying, cluster.handed_off(&map), |key| {
                old.moves(key, &new)
            });
            let mut new = new_replica(node, &map, handed, now);
            new.note_map_version(map.epoch);
            return Some(new);
        }
        take_in(replica, handed, now);
        let mine = map.shard_of_node(&me)?;
        if before.count() != map.count() {
            let layout = map.layout();
            let forgotten =
                replica.forget_keys(|key| is_table(key) || layout.shard_of(key) + 1 == mine);
            info!(epoch = map.epoch, forgotten, "keys handed to other shards forgotten");
        }
        let members = map.shard(mine).map(|s| s.members.clone()).unwrap_or_default();
        let gone: Vec<SocketAddress> = replica
            .view()
            .peers()
            .chain(replica.view().suspects())
            .map(|(a, _)| a.clone())
            .filter(|a| !members.contains(a))
            .collect();
        for address in &members {
            replica.allow(address);
        }
        for address in gone {
            replica.leave_out(address, now);
        }
        None
    });
    if adopted {
        info!(epoch = map.epoch, shards = map.count(), "shard map updated");
        // Wakes the requests that waited for this map (see
        // `Replica::note_map_version`).
        node.with_replica(|_, _| ());
    }
    if !rescued.is_empty() {
        if let Some(node) = node.shared() {
            actix_rt::spawn(super::rescue::rescue(node, map, rescued));
        }
    }
    adopted
}
