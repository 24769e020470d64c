//! The durability modes, and how the database under `DATA_DIR` is laid
//! out: its directory, keyspaces and records.

use serde::{Deserialize, Serialize};

/// When a write is acknowledged, with a data directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// After a (group-committed) fsync of the journal: survives a power
    /// cut.
    Fsync,
    /// After the journal write reaches the OS: survives any crash of the
    /// process, not a power cut.
    Os,
}

impl Durability {
    /// The mode named `text` (`fsync` or `os`).
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "fsync" => Ok(Durability::Fsync),
            "os" => Ok(Durability::Os),
            other => Err(format!("must be fsync or os, not {other:?}")),
        }
    }

    /// The mode's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Durability::Fsync => "fsync",
            Durability::Os => "os",
        }
    }
}

/// The database's directory under `DATA_DIR`.
pub(super) const DB: &str = "db";
/// The keyspace of versions.
pub(super) const DATA: &str = "data";
/// The keyspace of the replica's state and the run record.
pub(super) const META: &str = "meta";
/// The key of the saved state in [`META`].
pub(super) const REPLICA: &str = "replica";
/// The key of the run record in [`META`].
pub(super) const RUN: &str = "run";

/// The key of the number of the last step written, in [`META`] (every
/// batch writes the number of its last step).
pub(super) const BATCH: &str = "batch";

/// The file, beside the database, where the sync thread notes the number
/// of the last step it knows durable: a journal that comes back without
/// it was damaged, not torn (see `open.rs`).
pub(super) const SYNCED: &str = "synced-batch";

/// The prefix of the applied clock's records in [`META`], one per writer.
pub(super) const CLOCK: &str = "clock/";

/// The key of `id`'s clock record.
pub(super) fn clock_key(id: &crate::causal::ReplicaId) -> Box<[u8]> {
    format!("{CLOCK}{}", id.as_str()).into_bytes().into()
}

/// The record of a run: which boot of the machine it ran in, and whether
/// it stopped cleanly.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Run {
    pub(super) boot: String,
    pub(super) clean: bool,
    /// Whether it ran under `DURABILITY=os`.
    pub(super) os: bool,
}

impl Run {
    pub(super) fn current(clean: bool, mode: Durability) -> Run {
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|t| t.trim().to_string())
            .unwrap_or_default();
        Run {
            boot,
            clean,
            os: mode == Durability::Os,
        }
    }

    pub(super) fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("the run record prints")
    }
}

/// Free bytes on the file system of `dir` (`u64::MAX` if it cannot tell).
pub(super) fn free_space(dir: &std::path::Path) -> u64 {
    match rustix::fs::statvfs(dir) {
        Ok(s) => s.f_bavail.saturating_mul(s.f_frsize),
        Err(_) => u64::MAX,
    }
}
