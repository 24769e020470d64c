//! Keys moving between shards: what a replica hands to a key's new shard
//! when the store is resharded, what it takes in, and what it forgets.
//!
//! Versions cross shards as they are, with the dot of the write that made
//! them: a replica of the new shard counts no write of another shard
//! group, so the version is merged by the conflict rule alone and the dot
//! stays a foreign entry in the contexts of those who read it. What the
//! exporting replicas had applied (their clock and foreign frontier) joins
//! the importer's foreign frontier, so that every dependency a moved
//! version may have is still handed to its readers.

use crate::causal::{Retired, VectorClock};
use crate::store::{Key, Version};

use super::state::Replica;

impl Replica {
    /// The versions (tombstones included) of every key `moving` names,
    /// with what they may depend on: this replica's applied clock and
    /// foreign frontier.
    pub fn export(&self, moving: impl Fn(&str) -> bool) -> (Vec<(Key, Version)>, VectorClock) {
        let versions = self
            .store
            .iter()
            .filter(|entry| moving(entry.key()))
            .map(|entry| (entry.to_key(), entry.to_version()))
            .collect();
        let mut depends = self.known.clock().clone();
        depends.merge(self.known.foreign());
        (versions, depends)
    }

    /// Merges versions another shard handed over by the conflict rule;
    /// `depends` (what they may depend on) joins the foreign frontier.
    pub fn import(&mut self, versions: Vec<(Key, Version)>, depends: &VectorClock) {
        self.known.note_foreign(depends);
        for (key, version) in versions {
            self.lamport = self.lamport.max(version.lamport);
            self.store.apply(key, version);
        }
        self.progress += 1;
    }

    /// The incarnations of this replica's group it retired, with the last
    /// write of each (for the other groups of a sharded store).
    pub fn own_retired(&self) -> Vec<Retired> {
        self.known
            .retired()
            .filter(|(id, _)| !self.known.is_foreign(id))
            .collect()
    }

    /// Takes another group's retirements: its incarnations' writes up to
    /// `last` are applied by every member there, so the entries naming
    /// them leave the foreign frontier and the contexts answered here.
    pub fn retire_foreign(&mut self, retired: &[Retired]) {
        for (id, retirement) in retired {
            if self.known.is_foreign(id) {
                self.known.retire_foreign(id, *retirement);
            }
        }
    }

    /// Forgets, without tombstones, the keys `keep` refuses (moved to
    /// another shard); returns how many.
    pub fn forget_keys(&mut self, keep: impl Fn(&str) -> bool) -> usize {
        let forgotten = self.store.retain_keys(keep);
        if forgotten > 0 {
            self.progress += 1;
        }
        forgotten
    }
}
