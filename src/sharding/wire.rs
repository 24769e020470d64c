//! What the nodes of a sharded store send each other: the map's pings
//! and the reshard's steps, their deadlines and credentials.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::address::SocketAddress;
use crate::causal::{Dot, ReplicaId, Retired, VectorClock};
use crate::node::Node;
use crate::shard::{ShardId, ShardMap};
use crate::store::{Key, Version};
use crate::transport::Credentials;

/// Where the map's replica-to-replica endpoints live.
pub const SHARD_PREFIX: &str = "/internal/v1/shard";

/// How often every node is pinged.
pub(super) const PING_INTERVAL: Duration = Duration::from_millis(500);

/// Deadline of a ping.
pub(super) const PING_DEADLINE: Duration = Duration::from_millis(1500);

/// Deadline of a reshard step at one node (a hand-off sends every moving
/// key).
pub(super) const STEP_DEADLINE: Duration = Duration::from_secs(120);

/// Versions sent in one hand-off request.
pub(super) const IMPORT_BATCH: usize = 5000;

/// A ping: the sender and the map it holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Ping {
    /// The sender.
    pub from: SocketAddress,
    /// Its map (`None`: an unsharded node asking).
    pub map: Option<ShardMap>,
    /// The incarnations its group retired, with the last write of each
    /// (see [`crate::causal::Knowledge`]): the other groups drop them from
    /// the dependencies they hand out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retired: Vec<Retired>,
    /// Who sends it: see [`Runner`].
    #[serde(default)]
    pub runner: Runner,
}

/// Which run of a node a ping or its answer comes from, and the
/// incarnations that run has been. A sharded node keeps its state in
/// memory, so a node heard under a newer run than before restarted and
/// lost what it held: every incarnation of a group at its address that is
/// not one of this run's ended, and the writes that no member of the
/// group got were lost with it (see `Replica::note_restarted`). Empty
/// from a node that does not say.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Runner {
    /// When the node started (ms since the Unix epoch) in the high bits,
    /// random low bits: a later run of a node has a larger number (unless
    /// its clock went back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<u64>,
    /// The incarnations of this run, oldest first (the last ones: see
    /// `Node::incarnations`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ids: Vec<ReplicaId>,
}

/// The answer to a ping: the map the receiver holds (`None`: unsharded),
/// and its group's retired incarnations.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Pong {
    /// The receiver's map.
    pub map: Option<ShardMap>,
    /// The incarnations the receiver's group retired (see [`Ping`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retired: Vec<Retired>,
    /// Who answers it: see [`Runner`].
    #[serde(default)]
    pub runner: Runner,
    /// Whether the receiver's replica holds its shard's state (it is not
    /// still copying it); absent from an older version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<bool>,
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

/// Versions rescued from a node that left its group, for a member of
/// their keys' shard to take in (see `Replica::take_rescued`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Rescue {
    /// The versions.
    pub versions: Vec<(Key, Version)>,
    /// The node's last write in the group it left: with the versions
    /// taken in, its writes up to there count as applied in that group
    /// (see `Replica::take_rescued`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writer: Option<Dot>,
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
    /// No member of this shard answered, so its keys could not move.
    Unreachable(ShardId),
    /// The members of this shard that answered are all still copying its
    /// state (none holds its keys), so its keys could not move.
    Unready(ShardId),
}

/// Credentials for a map request (no shard group: map requests cross
/// groups).
pub(super) fn credentials(node: &Node) -> Credentials {
    Credentials {
        token: node.config.cluster_token.clone(),
        group: None,
        epoch: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_and_pongs_without_a_runner_or_readiness_still_decode() {
        let ping: Ping = serde_json::from_str(r#"{"from":"10.10.0.2:8085","map":null}"#).unwrap();
        assert_eq!(ping.runner, Runner::default());
        let pong: Pong = serde_json::from_str(r#"{"map":null}"#).unwrap();
        assert_eq!(pong.runner, Runner::default());
        assert_eq!(pong.ready, None, "an older node does not say");
        // And a runner goes out and comes back as it was.
        let runner = Runner {
            run: Some(42),
            ids: vec![ReplicaId::new("10.10.0.2:8085", "s1e0.a")],
        };
        let pong = Pong {
            map: None,
            retired: Vec::new(),
            runner: runner.clone(),
            ready: Some(false),
        };
        let text = serde_json::to_string(&pong).unwrap();
        let back: Pong = serde_json::from_str(&text).unwrap();
        assert_eq!(back.runner, runner);
        assert_eq!(back.ready, Some(false));
    }
}
