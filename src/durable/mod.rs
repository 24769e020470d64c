//! Durable replicas: a replica's state kept under `DATA_DIR`.
//!
//! The state lives in `DATA_DIR/db`, a [fjall] database (an LSM tree with
//! a checksummed journal) with two keyspaces: `data`, every key's winning
//! version (tombstones included, laid out by `codec.rs`), and `meta`, the rest of
//! the replica's state ([`Saved`](crate::replica::saved::Saved)) and a
//! record of the last run. After every step of the replica the node stages
//! what changed ([`Disk::save`]); the steps staged are committed together
//! as one atomic batch, and answers to clients and writes to peers wait
//! until the batch holding their step is durable: fsynced (group commit)
//! under `DURABILITY=fsync`, written to the OS under `DURABILITY=os`. Acknowledged therefore means kept, and the count of
//! this replica's own writes on disk is never behind an event id anyone
//! has seen: a replica restarted on its disk keeps its identity safely.
//!
//! # When the state is not trusted
//!
//! A restarted replica takes a new incarnation, with an empty store that
//! copies a member's, when what its disk holds may not be all it
//! acknowledged or was copying: the state was not whole (it was still
//! copying its first state, or merging a copy), or under `os` the machine
//! restarted since a run that did not stop cleanly (a power cut may have
//! lost writes the OS had not written yet, which peers may hold). When
//! the state was a merge in progress, the versions the former
//! incarnation wrote are read first and written again by the new one once
//! it is ready ([`crate::replica::Replica::rescue_when_ready`]): those the
//! members never applied may be held nowhere else. A torn
//! journal tail is truncated and logged; other damage stops the replica
//! with a one-line error naming the file, unless `--discard-corrupt-state`
//! says to discard it.
//!
//! # Bounded disk
//!
//! Keys overwritten, and tombstones collected in memory, are overwritten
//! and removed on disk too; the tree's compaction reclaims their space, and
//! the journal is trimmed once the tree holds what it recorded.
//!
//! [fjall]: https://docs.rs/fjall

mod codec;
mod db;
mod disk;
mod durable_step;
mod layout;
mod open;
mod sync;

pub use codec::{encode, Decoder};
pub use disk::{Disk, Status, RESERVE};
pub use layout::Durability;
pub use open::{open, OpenError, Opened};
