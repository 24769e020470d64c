//! The shard map's exchange: pings between every two nodes, a node
//! without `SHARD_COUNT` finding the sharded store, and the map changes
//! made by a request (add-member, a view change) sent to every node.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tracing::{error, info, warn};

use super::fit::install;
use super::wire::{
    credentials, Ping, Pong, Refused, Runner, PING_DEADLINE, PING_INTERVAL, SHARD_PREFIX,
};
use crate::address::SocketAddress;
use crate::causal::Retired;
use crate::node::Node;
use crate::replica::Replica;
use crate::shard::{Change, Cluster, ShardId, ShardMap};
use crate::transport;

/// Answers a ping: records the sender, takes its map if newer, adds it to
/// the map if it is new, and returns the map held.
pub fn on_ping(node: &Node, ping: Ping) -> Pong {
    let Some(cluster) = node.cluster() else {
        return Pong {
            map: None,
            retired: Vec::new(),
            runner: Runner::default(),
            ready: None,
        };
    };
    cluster.heard(&ping.from);
    heard_run(node, cluster, &ping.from, ping.runner);
    if let Some(map) = ping.map {
        install(node, map);
    }
    // A node not in the map yet is added to it, but not while a reshard
    // is prepared: the map that adds it would take the reshard's version
    // (see [`change`]). The next ping after the reshard adds it.
    let held = cluster.map();
    if cluster.pending().is_none() {
        if let Some(with) = held.with_node_heard(&ping.from, cluster.me()) {
            install(node, with);
        }
    }
    take_retired(node, ping.retired);
    Pong {
        map: Some(cluster.map()),
        retired: retired_here(node),
        runner: runner_here(node, cluster),
        ready: Some(node.read_replica(Replica::is_ready)),
    }
}

/// Which run of this node speaks, and its incarnation (see [`Runner`]).
fn runner_here(node: &Node, cluster: &Cluster) -> Runner {
    Runner {
        run: Some(cluster.run()),
        ids: node.incarnations(),
    }
}

/// Notes the run a message of node `from` came from: if `from` restarted
/// since it was last heard, its former incarnations in this node's group
/// ended (see [`Replica::note_restarted`]).
fn heard_run(node: &Node, cluster: &Cluster, from: &SocketAddress, runner: Runner) {
    let Some(run) = runner.run.filter(|_| !runner.ids.is_empty()) else {
        return;
    };
    if cluster.note_run(from, run) {
        info!(node = %from, "node restarted: its incarnations of former runs ended");
        node.with_replica(|r, _| r.note_restarted(from, &runner.ids));
    }
}

/// The incarnations this node's group retired, for the other groups.
fn retired_here(node: &Node) -> Vec<Retired> {
    node.read_replica(Replica::own_retired)
}

/// Takes another group's retired incarnations (nothing to do if none).
fn take_retired(node: &Node, retired: Vec<Retired>) {
    // Only what teaches this replica something takes its write lock.
    let news = node.read_replica(|r| {
        retired.iter().any(|(id, theirs)| {
            let known = r.known().retirement(id);
            r.known().is_foreign(id) && known.is_none_or(|k| k.merge(*theirs) != k)
        })
    });
    if news {
        node.with_replica(|r, _| r.retire_foreign(&retired));
    }
}

/// Makes `node` a node of the sharded store whose map is `map`, placed in
/// no shard yet (a node started without `SHARD_COUNT`).
fn join_sharded_store(node: &Node, map: ShardMap) {
    if let Some(disk) = node.disk() {
        // As `SHARD_COUNT` with `DATA_DIR` is refused at start: a sharded
        // node keeps its state in memory only.
        let dir = disk.dir().display();
        error!(%dir, "the store of VIEW is sharded; a sharded node keeps its state in memory only");
        eprintln!(
            "causalkv: DATA_DIR ({dir}): the store of VIEW is sharded, and a sharded node keeps its state in memory only: start this node without DATA_DIR"
        );
        std::process::exit(2);
    }
    let me = node.config.socket_address.clone();
    let timeout = Duration::from_millis(node.config.timing.failure_timeout);
    let unplaced = ShardMap {
        epoch: 0,
        ..map.clone()
    };
    node.set_cluster(Cluster::new(me.clone(), unplaced, timeout));
    info!(
        shards = map.count(),
        "the store is sharded: this node waits for add-member"
    );
    install(node, map);
}

/// Starts the pings (and, for a node started without `SHARD_COUNT`, asks
/// the nodes of its `VIEW` whether the store is sharded first).
pub fn spawn(node: Arc<Node>) {
    actix_rt::spawn(async move {
        if node.cluster().is_none() {
            discover(&node).await;
        }
        let mut interval = tokio::time::interval(PING_INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            if node.cluster().is_none() {
                // Unsharded: look again now and then, for a node that
                // started before the store's other nodes answered.
                if node.now() < 10_000 {
                    discover(&node).await;
                }
                continue;
            }
            ping_all(&node).await;
        }
    });
}

/// Asks every other node of `VIEW` for its map; joins the first one
/// given.
async fn discover(node: &Arc<Node>) {
    let me = node.config.socket_address.clone();
    let ping = Ping {
        from: me.clone(),
        map: None,
        retired: Vec::new(),
        runner: Runner::default(),
    };
    let credentials = credentials(node);
    let asks = node.config.view.iter().filter(|a| **a != me).map(|to| {
        let ping = ping.clone();
        let credentials = credentials.clone();
        async move {
            transport::post_json::<_, Pong>(
                to,
                &format!("{SHARD_PREFIX}/ping"),
                &ping,
                &credentials,
                PING_DEADLINE,
            )
            .await
            .ok()
            .and_then(|pong| pong.map)
        }
    });
    let maps = futures_util::future::join_all(asks).await;
    if let Some(map) = maps.into_iter().flatten().max_by(|a, b| {
        if a.newer_than(b) {
            std::cmp::Ordering::Greater
        } else {
            std::cmp::Ordering::Less
        }
    }) {
        if node.cluster().is_none() {
            join_sharded_store(node, map);
        }
    }
}

/// How long a prepared reshard may wait for its commit or abort before
/// this node gives it up (its coordinator went away mid-way).
const PENDING_TIMEOUT: Duration = Duration::from_secs(300);

/// Pings every other node of the map at once.
async fn ping_all(node: &Arc<Node>) {
    let Some(cluster) = node.cluster() else {
        return;
    };
    if let Some(map) = cluster.expire_pending(PENDING_TIMEOUT) {
        warn!(epoch = map.epoch, by = %map.by, "a prepared reshard was neither committed nor aborted in time: given up");
    }
    let lost = cluster.take_redo();
    if !lost.is_empty() {
        actix_rt::spawn(redo(node.clone(), lost));
    }
    probe(node).await;
}

/// The nodes that answered a [`probe`], this one included.
#[derive(Debug, Default)]
pub(super) struct Probed {
    pub answered: BTreeSet<SocketAddress>,
    /// Those of them whose replica holds its shard's state (not still
    /// copying it); a node of an older version that does not say counts.
    pub holding: BTreeSet<SocketAddress>,
}

/// Pings every other node of the map at once, takes the newer maps they
/// hold, and returns the nodes that answered, this one included. Each
/// answer is taken as it comes: a node out of reach (its ping waits for
/// the deadline) holds back no newer map that another brings.
pub(super) async fn probe(node: &Node) -> Probed {
    let Some(cluster) = node.cluster() else {
        return Probed::default();
    };
    let map = cluster.map();
    let me = cluster.me().clone();
    let mut nodes: BTreeSet<SocketAddress> = map.nodes.clone();
    nodes.extend(map.shards.values().flat_map(|s| s.members.iter().cloned()));
    nodes.remove(&me);
    let credentials = credentials(node);
    let ping = Ping {
        from: me,
        map: Some(map),
        retired: retired_here(node),
        runner: runner_here(node, cluster),
    };
    let pings = nodes.into_iter().map(|to| {
        let ping = ping.clone();
        let credentials = credentials.clone();
        async move {
            let pong = transport::post_json::<_, Pong>(
                &to,
                &format!("{SHARD_PREFIX}/ping"),
                &ping,
                &credentials,
                PING_DEADLINE,
            )
            .await;
            let pong = pong.ok()?;
            cluster.heard(&to);
            heard_run(node, cluster, &to, pong.runner);
            if let Some(map) = pong.map {
                install(node, map);
            }
            take_retired(node, pong.retired);
            Some((to, pong.ready != Some(false)))
        }
    });
    let me = cluster.me().clone();
    let mut probed = Probed::default();
    if node.read_replica(Replica::is_ready) {
        probed.holding.insert(me.clone());
    }
    probed.answered.insert(me);
    for (to, holding) in futures_util::future::join_all(pings)
        .await
        .into_iter()
        .flatten()
    {
        if holding {
            probed.holding.insert(to.clone());
        }
        probed.answered.insert(to);
    }
    probed
}

/// Sends `map` to every other node of it now (a change made here).
pub(super) async fn announce(node: &Node, map: &ShardMap) {
    let me = node.config.socket_address.clone();
    let mut nodes: BTreeSet<SocketAddress> = map.nodes.clone();
    nodes.extend(map.shards.values().flat_map(|s| s.members.iter().cloned()));
    nodes.remove(&me);
    let ping = Ping {
        from: me,
        map: Some(map.clone()),
        retired: retired_here(node),
        runner: (node.cluster()).map_or_else(Runner::default, |c| runner_here(node, c)),
    };
    let credentials = credentials(node);
    let path = format!("{SHARD_PREFIX}/ping");
    let sends = nodes
        .iter()
        .map(|to| transport::post_json::<_, Pong>(to, &path, &ping, &credentials, PING_DEADLINE));
    futures_util::future::join_all(sends).await;
}

/// Places `address` in shard `id` (`add-member`), and tells every node.
pub async fn add_member(node: &Node, id: ShardId, address: SocketAddress) -> Result<(), Refused> {
    let Some(cluster) = node.cluster() else {
        return Err(Refused::Bad(
            "the store is not sharded (start it with SHARD_COUNT)".into(),
        ));
    };
    if cluster.map().shard(id).is_none() {
        return Err(Refused::NoSuchShard(id));
    }
    change(node, Change::AddMember(id, address)).await?;
    Ok(())
}

/// Longest a change of the map asked of this node (a view PUT or DELETE,
/// add-member) waits for a reshard under way to end.
const CHANGE_WAIT: Duration = Duration::from_secs(60);

/// Makes the change `make` to the map held (if it changes anything),
/// holds the new map and sends it to every node; returns whether there
/// was one.
///
/// Not while a reshard is prepared here: the new map would take the
/// version the reshard's has, and of two maps of one version only one
/// stays, so either the change or the reshard would be lost though both
/// were answered as done. The change waits for the reshard to end (at
/// most [`CHANGE_WAIT`], then it is refused), and is made on the map the
/// reshard left. A reshard prepared after the change was made here is
/// refused instead (see `prepare` in `sharding::reshard`).
async fn change(node: &Node, change: Change) -> Result<bool, Refused> {
    let Some(cluster) = node.cluster() else {
        return Ok(false);
    };
    let deadline = std::time::Instant::now() + CHANGE_WAIT;
    loop {
        while let Some(pending) = cluster.pending() {
            if std::time::Instant::now() >= deadline {
                return Err(Refused::Busy(format!(
                    "a reshard to map version {} (by {}) is under way; try again once it is done",
                    pending.epoch, pending.by
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let Some(next) = cluster.map().changed(&change, cluster.me()) else {
            return Ok(false);
        };
        cluster.note_made(next.epoch, change.clone());
        if install(node, next.clone()) {
            announce(node, &next).await;
            return Ok(true);
        }
        cluster.forget_made(next.epoch, &change);
        // Another map took the version `next` has between the two steps
        // above (a change made at once on another worker, or a map
        // learned from a node): announced, `next` would split the nodes
        // between two maps of one version, and the change be lost where
        // the other stays. It is made again on the map held now.
    }
}

/// Makes again the changes asked of this node whose map lost to another
/// of its version (see [`Cluster::lost_changes`]): they were answered as
/// done.
async fn redo(node: Arc<Node>, lost: Vec<Change>) {
    for lost in lost {
        info!(change = ?lost, "a map change made here lost to another of its version: made again");
        if let Err(why) = change(&node, lost.clone()).await {
            error!(change = ?lost, ?why, "a map change lost to another could not be made again");
        }
    }
}

/// Adds `address` to the store's nodes, placed in no shard (a view PUT);
/// returns whether it was new.
pub async fn add_node(node: &Node, address: SocketAddress) -> Result<bool, Refused> {
    change(node, Change::AddNode(address)).await
}

/// Removes `address` from the store (a view DELETE); returns whether it
/// was a node of it.
pub async fn remove_node(node: &Node, address: SocketAddress) -> Result<bool, Refused> {
    change(node, Change::RemoveNode(address)).await
}
