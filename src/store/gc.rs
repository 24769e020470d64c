//! Tombstones (and the deletes of a table with siblings), forgotten a
//! batch at a time.
//!
//! The store keeps the slots that became tombstones in a list, so that
//! collection walks the tombstones, not every key, and does so in batches:
//! the replica asks for one batch per tick while a collection round lasts,
//! so that no round holds the replica's lock for long however many
//! tombstones there are. An entry whose slot has since been overwritten by
//! a value, or forgotten, is dropped from the list when the walk meets it.

use crate::causal::{ReplicaId, VectorClock};

use super::table::Store;

/// What one batch of tombstone collection did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Collected {
    /// How many tombstones were forgotten.
    pub forgotten: usize,
    /// The newest forgotten delete of each writer: a replica that has not
    /// applied these may still hold what they deleted.
    pub deletes: VectorClock,
    /// The largest Lamport time of a forgotten tombstone (a delete in a
    /// table without siblings).
    pub lamport: u64,
    /// Whether the round has walked every tombstone.
    pub done: bool,
}

impl Store {
    /// Walks the next `budget` tombstones of the round in progress (a new
    /// round starts after the last one finished) and forgets those whose
    /// delete every replica has applied and after which no concurrent write
    /// can still arrive: `stable(writer)` counts those deletes.
    pub fn collect_tombstones(
        &mut self,
        budget: usize,
        stable: impl Fn(&ReplicaId) -> u64,
    ) -> Collected {
        let mut collected = Collected::default();
        let start = self.gc_cursor.min(self.tombs.len());
        let end = start.saturating_add(budget).min(self.tombs.len());
        let mut kept = start;
        for read in start..end {
            let i = self.tombs[read];
            let slot = &self.slots[i as usize];
            let marker = slot.is_marker();
            if !slot.is_tombstone() && !marker {
                continue;
            }
            let (origin, counter, lamport) = (slot.origin, slot.counter, slot.lamport);
            let id = self.origins.id(origin);
            if counter <= stable(id) {
                // A delete, among siblings or not, that a replica out of
                // the view now may still lack: one that comes back holding
                // what it deleted must copy a member's state, not take its
                // current versions (which no longer say what the delete
                // replaced), so the delete counts in what was forgotten.
                if collected.deletes.get(id) < counter {
                    collected.deletes.set(id.clone(), counter);
                }
                // Only a tombstone's time bounds the values a copy writes
                // again (see `merge_page`): a delete among siblings removes
                // what it saw, whatever its time.
                if !marker {
                    collected.lamport = collected.lamport.max(lamport);
                }
                self.remove_at(i);
                collected.forgotten += 1;
            } else {
                self.tombs[kept] = i;
                kept += 1;
            }
        }
        self.tombs.drain(kept..end);
        self.gc_cursor = kept;
        if self.gc_cursor >= self.tombs.len() {
            self.gc_cursor = 0;
            collected.done = true;
            self.compact_tombs();
        }
        collected
    }

    /// Whether anything may be collected: a tombstone, or a delete among
    /// siblings.
    pub fn has_collectable(&self) -> bool {
        !self.tombs.is_empty()
    }

    /// Drops duplicate and stale entries once the list has grown well past
    /// the tombstones it names.
    fn compact_tombs(&mut self) {
        if self.tombs.len() <= 2 * self.tombstones + 1024 {
            return;
        }
        let slots = &self.slots;
        self.tombs.retain(|&i| {
            let slot = &slots[i as usize];
            slot.is_tombstone() || slot.is_marker()
        });
        self.tombs.sort_unstable();
        self.tombs.dedup();
    }
}
