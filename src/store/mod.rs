//! Versioned values and tombstones, and the one rule that resolves
//! concurrent writes.
//!
//! Every key holds one [`Version`]: the value (or a tombstone for a delete),
//! the [`Dot`](crate::causal::Dot) of the write that produced it, and that write's Lamport
//! timestamp. Of two versions of a key, the one with the larger
//! `(lamport, dot)` wins. A write's Lamport timestamp is larger than that of
//! every write in its causal past, so a write always beats what it
//! overwrote, and concurrent writes are ordered the same way everywhere.
//! The rule is a maximum, so it does not care in which order versions
//! arrive: replicas that hold the same writes hold the same contents.
//!
//! What lives where:
//!
//! - [`value`]: keys, values, versions and the conflict rule.
//! - `table`: the [`Store`] itself, laid out for memory.
//! - `origins`: the writers, and per writer the versions it made, so that
//!   "what does a replica that has seen this clock lack" is answered
//!   without a scan.
//! - `copy`: the store copied to another replica in pages, and the merge
//!   of such a copy; `image`: a page, and its form on the wire.
//! - `gc`: tombstones, forgotten a batch at a time.
//! - [`tables`]: named key spaces in the one store, and siblings;
//!   `registry`: the store's book of them; `table_keys`: what the store
//!   does with their keys.

mod copy;
mod gc;
mod image;
mod origins;
mod registry;
mod table;
mod table_keys;
pub mod tables;
pub mod value;

pub use copy::Marks;
pub use gc::Collected;
pub use image::Image;
pub use table::{Entry, Store};
pub use tables::{Sibling, Table, TableInfo, TableName};
pub use value::{etag, Key, KeyError, Value, Version, MAX_KEY_CHARS};

#[cfg(test)]
mod tests;
