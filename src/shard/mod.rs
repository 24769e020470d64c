//! Shards: the key space split over groups of replicas.
//!
//! `placement.rs` maps a key to its partition and a partition to its shard
//! for a given shard count, the same way on every node (the choice of fixed
//! partitions, and why it moves the fewest keys, is explained there).

pub mod placement;

pub use placement::{partition, Layout, MAX_SHARDS, PARTITIONS};
