//! The reshard: the coordinator's three steps (prepare, hand off, commit)
//! and each node's part in them (see the module doc of `crate::sharding`).

use std::collections::BTreeSet;
use std::time::Duration;

use tracing::{info, warn};

use super::fit::install;
use super::gossip::{announce, probe};
use super::wire::{
    credentials, Done, Import, Refused, Step, IMPORT_BATCH, SHARD_PREFIX, STEP_DEADLINE,
};
use crate::address::SocketAddress;
use crate::node::Node;
use crate::replica::Replica;
use crate::shard::{ReshardError, ShardId, ShardMap};
use crate::store::tables::is_table;
use crate::store::{Key, Version};
use crate::transport;

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
    // Who is up now, not a failure timeout ago: a node killed a moment
    // before would make the reshard fail. (The answers may bring a newer
    // map: the reshard starts from the map held after them.)
    let before = cluster.map();
    let mut probed = probe(node).await;
    if !cluster.with_map(|m| m.same_version(&before)) {
        // An answer brought a newer map: the nodes pinged with the older
        // one may not hold it yet, and would refuse a reshard built on it.
        probed = probe(node).await;
    }
    let live = probed.answered;
    let map = cluster.map();
    // A shard whose members answer but all still copy its state (they
    // restarted, and nobody is left to copy from) has nobody to hand its
    // keys over either.
    let unready = map.shards.iter().find(|(_, s)| {
        s.members.iter().any(|m| live.contains(m))
            && !s.members.iter().any(|m| probed.holding.contains(m))
    });
    if let Some((&id, _)) = unready {
        return Err(Refused::Unready(id));
    }
    let next = map
        .resharded(count, &live, cluster.me())
        .map_err(|e| match e {
            ReshardError::NotEnoughNodes => Refused::NotEnoughNodes,
            ReshardError::BadCount => Refused::Bad(format!(
                "shard-count must be between 1 and {}",
                crate::shard::MAX_SHARDS
            )),
            ReshardError::Unreachable(id) => Refused::Unreachable(id),
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
    node.with_replica(|_, _| {
        // Built on the map held here: a map changed here meanwhile (a node
        // added or removed) has the version the reshard's would take.
        let held = cluster.map();
        if map.epoch != held.epoch + 1 {
            return Err(format!(
                "map version {} is not the one after the version held here ({}): the map changed meanwhile",
                map.epoch, held.epoch
            ));
        }
        cluster.prepare(map)
    })
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
    if map.shard_of_node(&me) != Some(old_shard) {
        // This node leaves its shard: the members that stay must hold its
        // writes to the keys that stay, or they would be lost with its
        // replica. (Keys that move are handed over below, by every member.)
        let stay: Vec<SocketAddress> = map
            .shard(old_shard)
            .map(|s| s.members.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|m| *m != me && before.shard_of_node(m) == Some(old_shard))
            .collect();
        if !node.writes_held_by(&stay).await {
            return Err(format!(
                "the members staying in shard {old_shard} ({stay:?}) did not confirm holding this node's writes in time"
            ));
        }
    }
    let (old, new) = (before.layout(), map.layout());
    // Every shard keeps the tables' own keys: they go to every new shard.
    let ((versions, depends), own) = node.read_replica(|replica| {
        let own = replica.known().count(&replica.me().id);
        let moving = |key: &str| is_table(key) || old.moves(key, &new);
        (replica.export(moving), own)
    });
    let mut by_shard: std::collections::BTreeMap<ShardId, Vec<(Key, Version)>> = Default::default();
    for (key, version) in versions {
        if is_table(key.as_str()) {
            for shard in map.shards.keys() {
                let copy = (key.clone(), version.clone());
                by_shard.entry(*shard).or_default().push(copy);
            }
            continue;
        }
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
            if members.contains(&me) {
                cluster.receive(import.epoch, import.versions.clone(), &import.depends)?;
            }
            // To every other member at once.
            let path = format!("{SHARD_PREFIX}/import");
            let credentials = credentials(node);
            let sends = members.iter().filter(|m| **m != me).map(|member| {
                let (import, path, credentials) = (&import, &path, &credentials);
                async move {
                    let done: Done =
                        transport::post_json(member, path, import, credentials, STEP_DEADLINE)
                            .await
                            .map_err(|e| format!("handing keys to {member}: {e}"))?;
                    match done.error {
                        Some(e) => Err(format!("handing keys to {member}: {e}")),
                        None => Ok(()),
                    }
                }
            });
            for sent in futures_util::future::join_all(sends).await {
                sent?;
            }
        }
    }
    // Its writes so far reached the keys' new shards (or, for the keys
    // that stay, the members that stay): none is left to rescue should it
    // leave its group (see `Replica::rescued_on_leaving`).
    cluster.note_handed_off(&map, own);
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
