//! Drives a sharded store: the shard map's exchange between nodes, the
//! replica each node runs for its shard, requests relayed to the shard
//! that holds their key, `add-member`, and the reshard.
//!
//! # The map
//!
//! Every node pings every other node of the map twice a second with the
//! map it holds; either side keeps the newer of the two (see
//! [`ShardMap::newer_than`]), so a change made at one node reaches all.
//! The pings also tell which nodes are up. A node that starts without
//! `SHARD_COUNT` asks the nodes of its `VIEW` for their map first: if they
//! have one, it joins the map as a node placed in no shard, and waits for
//! `add-member`.
//!
//! # A node's replica
//!
//! A node runs one replica, of its shard's group, whose view is the
//! shard's members: replication, the delivery buffer, failure detection,
//! readmission and the state copy are the unsharded protocol, within the
//! group. Replica-to-replica requests name the sender's group and a
//! replica answers only its own group's, so groups never mix. When the map
//! places the node in another group (add-member, a reshard), the node
//! starts a new replica, a new incarnation named after the group, which
//! joins the group's members and copies their state.
//!
//! # Resharding
//!
//! The node that takes a reshard coordinates it, one at a time, in three
//! steps sent to every live node:
//!
//! 1. **Prepare** the new map. From then on, writes to keys that change
//!    shard (and every write at a node that changes shard) wait; reads go
//!    on.
//! 2. **Hand off.** A node that changes shard waits until its group's
//!    members hold its writes. Every node then sends its versions of the
//!    keys that change shard to every member of their new shard, which
//!    keeps them aside. Since every member of the old shard sends what it
//!    holds and writes to those keys wait, every acknowledged write of a
//!    moving key reaches every member of its new shard.
//! 3. **Commit.** Each node holds the new map, merges what it was handed
//!    and forgets the keys it no longer holds, in one step under its
//!    replica's lock (or starts its new group's replica with them); the
//!    writes that waited go where their key now lives.
//!
//! A node that misses the commit learns the map by ping and does the same.
//! If a step fails the coordinator aborts: the prepared map is dropped and
//! nothing moved.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::address::SocketAddress;
use crate::causal::VectorClock;
use crate::node::Node;
use crate::replica::Replica;
use crate::shard::{Cluster, ReshardError, ShardId, ShardMap};
use crate::store::{Key, Version};
use crate::transport::{self, Credentials, Forwarded};

/// Where the map's replica-to-replica endpoints live.
pub const SHARD_PREFIX: &str = "/internal/v1/shard";

/// How often every node is pinged.
const PING_INTERVAL: Duration = Duration::from_millis(500);

/// Deadline of a ping.
const PING_DEADLINE: Duration = Duration::from_millis(1500);

/// Deadline of a reshard step at one node (a hand-off sends every moving
/// key).
const STEP_DEADLINE: Duration = Duration::from_secs(120);

/// Versions sent in one hand-off request.
const IMPORT_BATCH: usize = 5000;

/// The group name of a node placed in no shard: it replicates with no one.
const UNPLACED: &str = "unplaced";

/// A ping: the sender and the map it holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Ping {
    /// The sender.
    pub from: SocketAddress,
    /// Its map (`None`: an unsharded node asking).
    pub map: Option<ShardMap>,
}

/// The answer to a ping: the map the receiver holds (`None`: unsharded).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Pong {
    /// The receiver's map.
    pub map: Option<ShardMap>,
}

/// A reshard step: the map it is for.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Step {
    /// The map being moved to.
    pub map: ShardMap,
}

/// Versions handed to a member of their new shard.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Import {
    /// The map version of the reshard.
    pub epoch: u64,
    /// The versions.
    pub versions: Vec<(Key, Version)>,
    /// What they may depend on.
    pub depends: VectorClock,
}

/// A step's answer.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Done {
    /// Why it failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Why a reshard or add-member was not done.
#[derive(Debug)]
pub enum Refused {
    /// Fewer than two live nodes per shard.
    NotEnoughNodes,
    /// Bad input (a count of 0, a shard that does not exist).
    Bad(String),
    /// No such shard.
    NoSuchShard(ShardId),
    /// Another reshard is under way.
    Busy(String),
    /// A step failed at a node; nothing moved.
    Failed(String),
}

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

/// A new replica for `node` under `map`, holding `versions`.
fn new_replica(
    node: &Node,
    map: &ShardMap,
    versions: Vec<(Key, Version)>,
    depends: &VectorClock,
) -> Replica {
    let me = &node.config.socket_address;
    let (incarnation, members) = placement_of(map, me);
    let mut replica = Replica::new(
        me.clone(),
        &incarnation,
        &members,
        node.config.timing.clone(),
        node.now(),
    );
    if !versions.is_empty() {
        replica.import(versions, depends);
    }
    replica
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
    node.replace_replica(|replica, _| {
        let before = cluster.map();
        if !cluster.adopt(map.clone()) {
            return None;
        }
        adopted = true;
        let (versions, depends) = cluster.take_incoming(map.epoch);
        let group = group_of(&map, &me);
        if replica.me().id.group() != Some(group.as_str()) {
            info!(epoch = map.epoch, %group, keys = versions.len(), "this node changes shard group");
            return Some(new_replica(node, &map, versions, &depends));
        }
        if !versions.is_empty() {
            replica.import(versions, &depends);
        }
        let mine = map.shard_of_node(&me)?;
        if before.count() != map.count() {
            let layout = map.layout();
            let forgotten = replica.forget_keys(|key| layout.shard_of(key) + 1 == mine);
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
        for address in gone {
            replica.view_remove(address);
        }
        None
    });
    if adopted {
        info!(epoch = map.epoch, shards = map.count(), "shard map updated");
    }
    adopted
}

/// Answers a ping: records the sender, takes its map if newer, adds it to
/// the map if it is new, and returns the map held.
pub fn on_ping(node: &Node, ping: Ping) -> Pong {
    let Some(cluster) = node.cluster() else {
        return Pong { map: None };
    };
    cluster.heard(&ping.from);
    if let Some(map) = ping.map {
        install(node, map);
    }
    let held = cluster.map();
    if let Some(with) = held.with_node(&ping.from, cluster.me()) {
        install(node, with);
    }
    Pong {
        map: Some(cluster.map()),
    }
}

/// Makes `node` a node of the sharded store whose map is `map`, placed in
/// no shard yet (a node started without `SHARD_COUNT`).
fn join_sharded_store(node: &Node, map: ShardMap) {
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
    };
    let credentials = Credentials {
        token: node.config.cluster_token.clone(),
        group: None,
    };
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
    let map = cluster.map();
    let me = cluster.me().clone();
    let mut nodes: BTreeSet<SocketAddress> = map.nodes.clone();
    nodes.extend(map.shards.values().flat_map(|s| s.members.iter().cloned()));
    nodes.remove(&me);
    let credentials = Credentials {
        token: node.config.cluster_token.clone(),
        group: None,
    };
    let ping = Ping {
        from: me,
        map: Some(map),
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
            (to, pong)
        }
    });
    for (to, pong) in futures_util::future::join_all(pings).await {
        if let Ok(pong) = pong {
            cluster.heard(&to);
            if let Some(map) = pong.map {
                install(node, map);
            }
        }
    }
}

/// Credentials for a map request.
fn credentials(node: &Node) -> Credentials {
    Credentials {
        token: node.config.cluster_token.clone(),
        group: None,
    }
}

/// Sends `map` to every other node of it now (a change made here).
async fn announce(node: &Node, map: &ShardMap) {
    let me = node.config.socket_address.clone();
    let mut nodes: BTreeSet<SocketAddress> = map.nodes.clone();
    nodes.extend(map.shards.values().flat_map(|s| s.members.iter().cloned()));
    nodes.remove(&me);
    let ping = Ping {
        from: me,
        map: Some(map.clone()),
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
    let map = cluster.map();
    if map.shard(id).is_none() {
        return Err(Refused::NoSuchShard(id));
    }
    if let Some(next) = map.with_member(id, &address, cluster.me()) {
        install(node, next.clone());
        announce(node, &next).await;
    }
    Ok(())
}

/// Adds `address` to the store's nodes, placed in no shard (a view PUT);
/// returns whether it was new.
pub async fn add_node(node: &Node, address: SocketAddress) -> bool {
    let Some(cluster) = node.cluster() else {
        return false;
    };
    match cluster.map().with_node(&address, cluster.me()) {
        Some(next) => {
            install(node, next.clone());
            announce(node, &next).await;
            true
        }
        None => false,
    }
}

/// Removes `address` from the store (a view DELETE); returns whether it
/// was a node of it.
pub async fn remove_node(node: &Node, address: SocketAddress) -> bool {
    let Some(cluster) = node.cluster() else {
        return false;
    };
    match cluster.map().without_node(&address, cluster.me()) {
        Some(next) => {
            install(node, next.clone());
            announce(node, &next).await;
            true
        }
        None => false,
    }
}

/// Posts a reshard step to `to` (this node's own steps are run by the
/// caller).
async fn step(node: &Node, to: &SocketAddress, name: &str, map: &ShardMap) -> Result<(), String> {
    let body = Step { map: map.clone() };
    let done: Done = transport::post_json(
        to,
        &format!("{SHARD_PREFIX}/{name}"),
        &body,
        &credentials(node),
        STEP_DEADLINE,
    )
    .await
    .map_err(|e| format!("{to}: {e}"))?;
    match done.error {
        None => Ok(()),
        Some(e) => Err(format!("{to}: {e}")),
    }
}

/// Runs step `name` at every node of `nodes` at once (this one locally).
async fn everywhere(
    node: &Node,
    nodes: &BTreeSet<SocketAddress>,
    name: &str,
    map: &ShardMap,
) -> Result<(), String> {
    let me = &node.config.socket_address;
    let runs = nodes.iter().map(|to| async move {
        if to == me {
            run_step(node, name, map.clone())
                .await
                .map_err(|e| format!("{to}: {e}"))
        } else {
            step(node, to, name, map).await
        }
    });
    let failures: Vec<String> = futures_util::future::join_all(runs)
        .await
        .into_iter()
        .filter_map(Result::err)
        .collect();
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}

/// Runs the reshard step `name` for `map` here.
pub async fn run_step(node: &Node, name: &str, map: ShardMap) -> Result<(), String> {
    match name {
        "prepare" => prepare(node, map),
        "handoff" => hand_off(node, map).await,
        "commit" => {
            commit(node, map).await;
            Ok(())
        }
        "abort" => {
            if let Some(cluster) = node.cluster() {
                cluster.abort(&map);
            }
            Ok(())
        }
        other => Err(format!("no reshard step {other:?}")),
    }
}

/// Reshards the store to `count` shards (see the module doc); answers
/// once every live node holds the new map.
pub async fn reshard(node: &Node, count: u32) -> Result<(), Refused> {
    let Some(cluster) = node.cluster() else {
        return Err(Refused::Bad(
            "the store is not sharded (start it with SHARD_COUNT)".into(),
        ));
    };
    let Ok(_one_at_a_time) = cluster.resharding.try_lock() else {
        return Err(Refused::Busy(
            "a reshard coordinated by this node is under way".into(),
        ));
    };
    if let Some(pending) = cluster.pending() {
        return Err(Refused::Busy(format!(
            "a reshard to map version {} (by {}) is under way",
            pending.epoch, pending.by
        )));
    }
    let map = cluster.map();
    let live = cluster.live();
    let next = map
        .resharded(count, &live, cluster.me())
        .map_err(|e| match e {
            ReshardError::NotEnoughNodes => Refused::NotEnoughNodes,
            ReshardError::BadCount => Refused::Bad(format!(
                "shard-count must be between 1 and {}",
                crate::shard::MAX_SHARDS
            )),
        })?;
    info!(
        from = map.count(),
        to = count,
        epoch = next.epoch,
        "resharding"
    );
    let started = std::time::Instant::now();
    let result = async {
        everywhere(node, &live, "prepare", &next).await?;
        everywhere(node, &live, "handoff", &next).await
    }
    .await;
    if let Err(e) = result {
        node.metrics
            .shards
            .reshards
            .with_label_values(&["failed"])
            .inc();
        warn!(error = %e, "reshard failed; aborting");
        let _ = everywhere(node, &live, "abort", &next).await;
        return Err(Refused::Failed(e));
    }
    if let Err(e) = everywhere(node, &live, "commit", &next).await {
        // The map is committed where it reached; the others learn it by
        // ping and merge what they were handed then.
        warn!(error = %e, "the commit did not reach every node; they will learn the map by ping");
    }
    announce(node, &next).await;
    node.metrics
        .shards
        .reshards
        .with_label_values(&["done"])
        .inc();
    info!(epoch = next.epoch, shards = count, elapsed = ?started.elapsed(), "reshard done");
    Ok(())
}

/// Step 1: holds `map` as the reshard under way (under the replica's lock,
/// so that no write to a moving key is half made).
fn prepare(node: &Node, map: ShardMap) -> Result<(), String> {
    let Some(cluster) = node.cluster() else {
        return Err("this node is not sharded".into());
    };
    if !map.newer_than(&cluster.map()) {
        return Err(format!(
            "map version {} is not newer than the one held",
            map.epoch
        ));
    }
    node.with_replica(|_, _| cluster.prepare(map))
}

/// Step 2: hands this node's versions of the keys that change shard to
/// every member of their new shard.
async fn hand_off(node: &Node, map: ShardMap) -> Result<(), String> {
    let Some(cluster) = node.cluster() else {
        return Err("this node is not sharded".into());
    };
    if cluster.pending().is_none_or(|p| p.epoch != map.epoch) {
        return Err(format!(
            "no reshard to map version {} is prepared here",
            map.epoch
        ));
    }
    let before = cluster.map();
    let me = cluster.me().clone();
    let Some(old_shard) = before.shard_of_node(&me) else {
        return Ok(());
    };
    if map.shard_of_node(&me) != Some(old_shard) && !node.writes_held_by_members().await {
        warn!("leaving the shard before every member confirmed holding this node's writes");
    }
    let (old, new) = (before.layout(), map.layout());
    let (versions, depends) =
        node.read_replica(|replica| replica.export(|key| old.shard_of(key) != new.shard_of(key)));
    let mut by_shard: std::collections::BTreeMap<ShardId, Vec<(Key, Version)>> = Default::default();
    for (key, version) in versions {
        by_shard
            .entry(new.shard_of(key.as_str()) + 1)
            .or_default()
            .push((key, version));
    }
    let moved: usize = by_shard.values().map(Vec::len).sum();
    for (shard, versions) in by_shard {
        let members = map
            .shard(shard)
            .map(|s| s.members.clone())
            .unwrap_or_default();
        for batch in versions.chunks(IMPORT_BATCH) {
            let import = Import {
                epoch: map.epoch,
                versions: batch.to_vec(),
                depends: depends.clone(),
            };
            for member in &members {
                if *member == me {
                    cluster.receive(import.epoch, import.versions.clone(), &import.depends)?;
                    continue;
                }
                let done: Done = transport::post_json(
                    member,
                    &format!("{SHARD_PREFIX}/import"),
                    &import,
                    &credentials(node),
                    STEP_DEADLINE,
                )
                .await
                .map_err(|e| format!("handing keys to {member}: {e}"))?;
                if let Some(e) = done.error {
                    return Err(format!("handing keys to {member}: {e}"));
                }
            }
        }
    }
    node.metrics.shards.handed_off.inc_by(moved as u64);
    info!(
        epoch = map.epoch,
        versions = moved,
        "keys handed to their new shards"
    );
    Ok(())
}

/// Keeps versions handed over for the reshard prepared here.
pub fn receive(node: &Node, import: Import) -> Result<(), String> {
    let Some(cluster) = node.cluster() else {
        return Err("this node is not sharded".into());
    };
    let count = import.versions.len() as u64;
    cluster.receive(import.epoch, import.versions, &import.depends)?;
    node.metrics.shards.received.inc_by(count);
    Ok(())
}

/// Step 3: holds the new map and fits the replica to it; answers once the
/// replica serves (or a moment has passed).
async fn commit(node: &Node, map: ShardMap) {
    install(node, map);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !node.read_replica(Replica::is_ready) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Relays a client request for a key of shard `shard` to its members,
/// trying the next when one cannot be reached.
pub async fn relay(
    node: &Node,
    shard: ShardId,
    method: actix_web::http::Method,
    path_and_query: &str,
    headers: &[(String, String)],
    body: actix_web::web::Bytes,
) -> Result<Forwarded, String> {
    let Some(cluster) = node.cluster() else {
        return Err("this node is not sharded".into());
    };
    let targets = cluster.targets(shard);
    if targets.is_empty() {
        return Err(format!(
            "shard {shard} has no other member to serve the request"
        ));
    }
    let deadline = node.config.causal_wait + Duration::from_secs(5);
    let mut last = String::new();
    for to in targets {
        match transport::forward(
            &to,
            method.clone(),
            path_and_query,
            headers,
            body.clone(),
            deadline,
        )
        .await
        {
            Ok(answer) => {
                cluster.heard(&to);
                relayed(node, shard, "ok");
                return Ok(answer);
            }
            Err(e) => last = format!("{to}: {e}"),
        }
    }
    relayed(node, shard, "failed");
    Err(format!(
        "no member of shard {shard} could be reached ({last})"
    ))
}

fn relayed(node: &Node, shard: ShardId, outcome: &str) {
    node.metrics
        .shards
        .relayed
        .with_label_values(&[&shard.to_string(), outcome])
        .inc();
}
