//! Shards: the key space split over groups of replicas.
//!
//! - `placement.rs` maps a key to its partition and a partition to its
//!   shard for a given shard count, the same way on every node (the choice
//!   of fixed partitions, and why it moves the fewest keys, is explained
//!   there).
//! - `map.rs`: the shard map every node holds: the shards, their members
//!   and the group each replicates as; how nodes are dealt to shards.
//! - `cluster.rs`: what one node knows of the others: the map it holds,
//!   who answered lately, a reshard it prepared and the keys handed to it.
//!
//! The talking (map exchange, forwarding, the reshard's steps) is
//! `crate::sharding`'s.

pub mod cluster;
#[cfg(test)]
mod cluster_tests;
pub mod map;
pub mod placement;

pub use cluster::Cluster;
pub use map::{Change, ReshardError, Shard, ShardId, ShardMap};
pub use placement::{partition, Layout, MAX_SHARDS, PARTITIONS};
