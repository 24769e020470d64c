//! What a node alone may hold when it leaves its shard group without a
//! reshard's hand-off (it was cut off while the store was resharded
//! without it): the versions of its own writes that no member staying in
//! its group is known to have applied (see
//! `Replica::rescued_on_leaving`), sent to a member of each key's shard,
//! which writes again those that would have won and that it did not apply
//! itself. A node that took part in the reshard's hand-off rescues only
//! its writes made after it: the others reached the keys' new shards with
//! the hand-off, where a key deleted is left out, and writing its value
//! again there would bring it back.
//!
//! Clients may hold contexts naming those writes under their old names,
//! which the members of the group the node left will never receive: the
//! node's last write goes with the versions, and the members count every
//! write of it up to there as applied once they hold what was written
//! again (see `Replica::take_rescued` and `Write::covers`), so such a
//! context is met rather than waited for until it fails.

use std::sync::Arc;

use tracing::{info, warn};

use super::wire::{credentials, Done, Rescue, PING_DEADLINE, PING_INTERVAL, SHARD_PREFIX};
use crate::node::Node;
use crate::replica::Rescued;
use crate::shard::{ShardId, ShardMap};
use crate::store::tables::is_table;
use crate::store::{Key, Version};
use crate::transport;

/// Sends versions rescued from the replica this node just left to a live
/// member of each key's shard under `map`, which writes again those that
/// it lacks (retried a few times: the shard's members may be out of reach
/// for a while).
///
/// Every shard is sent the node's last write (`writer`), with no version if
/// none of its keys is there: the one whose group the node left counts the
/// node's writes up to it as applied once it took the versions in.
pub(super) async fn rescue(node: Arc<Node>, map: ShardMap, Rescued { versions, writer }: Rescued) {
    let mut by_shard: std::collections::BTreeMap<ShardId, Vec<(Key, Version)>> = map
        .shards
        .keys()
        .map(|&shard| (shard, Vec::new()))
        .collect();
    // The tables' own keys are kept by every shard's group already.
    for (key, version) in versions.into_iter().filter(|(k, _)| !is_table(k.as_str())) {
        by_shard
            .entry(map.shard_of(key.as_str()))
            .or_default()
            .push((key, version));
    }
    let path = format!("{SHARD_PREFIX}/rescue");
    for (shard, versions) in by_shard {
        if versions.is_empty() && writer.is_none() {
            continue;
        }
        let count = versions.len();
        let rescue = Rescue {
            versions,
            writer: writer.clone(),
        };
        let mut done = false;
        for attempt in 0..RESCUE_ATTEMPTS {
            let Some(cluster) = node.cluster() else {
                return;
            };
            for to in cluster.targets(shard) {
                let answer: Result<Done, String> = transport::post_json(
                    &to,
                    &path,
                    &rescue,
                    &credentials(&node),
                    PING_DEADLINE * 4,
                )
                .await;
                if matches!(answer, Ok(Done { error: None })) {
                    info!(shard, versions = count, member = %to, "versions this node alone may hold handed to their shard");
                    done = true;
                    break;
                }
            }
            if done {
                break;
            }
            tokio::time::sleep(PING_INTERVAL * (attempt + 1)).await;
        }
        if !done {
            warn!(
                shard,
                versions = count,
                "could not hand the versions this node alone may hold to their shard"
            );
        }
    }
}

/// How many rounds a rescue tries every member of a shard.
const RESCUE_ATTEMPTS: u32 = 20;

/// Takes in rescued versions of keys this node serves.
pub fn absorb(node: &Node, rescue: Rescue) -> Result<usize, String> {
    let Some(cluster) = node.cluster() else {
        return Err("this node is not sharded".into());
    };
    node.with_replica(|replica, _| {
        let group = replica.me().id.group();
        if let Some((key, _)) = rescue
            .versions
            .iter()
            .find(|(key, _)| !cluster.serves(key.as_str(), Some(group)).1)
        {
            return Err(format!("this node does not serve {key}'s shard"));
        }
        if !replica.is_ready() {
            return Err("this node's replica is not ready".into());
        }
        Ok(replica.take_rescued(rescue.versions, rescue.writer))
    })
}
