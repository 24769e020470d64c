//! Drives a sharded store: the shard map's exchange between nodes, the
//! replica each node runs for its shard, requests relayed to the shard
//! that holds their key, `add-member`, and the reshard.
//!
//! # The map
//!
//! Every node pings every other node of the map twice a second with the
//! map it holds; either side keeps the newer of the two (see
//! [`crate::shard::ShardMap::newer_than`]), so a change made at one node reaches all.
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
//!
//! # What lives where
//!
//! `wire.rs` the messages, deadlines and credentials; `fit.rs` the replica
//! a node runs under a map, and what a new map changes; `gossip.rs` the
//! pings, a node finding the sharded store, and the map changes a request
//! makes (add-member, a view change); `reshard.rs` the reshard's steps;
//! `relay.rs` client requests relayed to their key's shard, `batch.rs`
//! those of one key carried to a member in batches and `batch_wire.rs`
//! their layout; `rescue.rs` what a node cut off during a reshard alone
//! may hold.

mod batch;
mod batch_wire;
mod fit;
mod gossip;
mod relay;
mod rescue;
mod reshard;
mod wire;

pub use batch::BATCH_PATH;
pub use batch_wire::{decode_batch, encode_answer, Relayed};
pub use fit::{install, start};
pub use gossip::{add_member, add_node, on_ping, remove_node, spawn};
pub use relay::{relay, relay_alone};
pub use rescue::absorb;
pub use reshard::{receive, reshard, run_step};
pub use wire::{Done, Import, Ping, Pong, Refused, Rescue, Runner, Step, SHARD_PREFIX};
