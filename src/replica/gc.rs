//! Forgetting tombstones that can no longer be resurrected.
//!
//! A tombstone may go once every replica that could still hold the value
//! it deleted has applied the delete, and no write concurrent with it can
//! still arrive. Every gc interval this replica takes the clocks its
//! members and suspects last reported: their meet (with its own) is
//! *stable*, their join is *needed*. Once this replica has applied
//! everything needed (so every write those replicas had made by then is
//! here), tombstones whose delete the stable clock counts are forgotten:
//! in batches, one per tick, walking only the tombstones. A replica
//! forgotten after the suspect timeout has no say; if it comes back it
//! lacks this replica's floor and copies its state (see [`super::join`]).
//!
//! Writes of a retired incarnation are stable at its last write: every
//! member had applied them when it was retired, and every replica vetted
//! since holds them.

use tracing::debug;

use crate::causal::{Knowledge, ReplicaId, VectorClock};

use super::{Millis, Replica};

/// Tombstones walked per tick while a collection round lasts.
const GC_BATCH: usize = 1 << 16;

/// The state of tombstone collection.
#[derive(Debug)]
pub(super) struct Gc {
    last_round: Millis,
    /// The stable clock taken last time, and what must be applied before
    /// it may be used.
    barrier: Option<(VectorClock, VectorClock)>,
    /// The stable clock of the round in progress.
    round: Option<VectorClock>,
}

impl Gc {
    pub(super) fn new(now: Millis) -> Self {
        Gc {
            last_round: now,
            barrier: None,
            round: None,
        }
    }
}

/// How many writes of `id` every replica that could hold old data has
/// applied, by a round's `stable` clock.
fn stable_count(known: &Knowledge, stable: &VectorClock, id: &ReplicaId) -> u64 {
    match known.retirement(id) {
        Some(r) if known.is_retired(id) => r.last,
        _ => stable.get(id),
    }
}

impl Replica {
    /// Walks a batch of the round in progress; every gc interval, starts
    /// the round whose barrier passed and sets the next barrier.
    pub(super) fn collect_tombstones(&mut self, now: Millis) {
        // A copy being merged relies on the store's slots staying put.
        if !self.is_synced() || self.transfer.is_some() {
            return;
        }
        if let Some(stable) = self.gc.round.take() {
            let known = &self.known;
            let collected = self
                .store
                .collect_tombstones(GC_BATCH, |id| stable_count(known, &stable, id));
            if collected.forgotten > 0 {
                debug!(forgotten = collected.forgotten, "forgot stable tombstones");
                self.collected.merge(&collected.deletes);
            }
            if !collected.done {
                self.gc.round = Some(stable);
            }
        }
        if now.saturating_sub(self.gc.last_round) < self.timing.gc_interval {
            return;
        }
        self.gc.last_round = now;
        if self.gc.round.is_none() {
            if let Some((stable, needed)) = self.gc.barrier.take() {
                if self.known.has_applied(&needed) {
                    self.gc.round = Some(stable);
                }
            }
        }
        if self.store.tombstones() == 0 {
            return;
        }
        let Some(clocks) = self.view.reported_clocks() else {
            return;
        };
        let mine = self.known.clock();
        let mut needed = mine.clone();
        let stable: VectorClock = mine
            .iter()
            .map(|(id, n)| {
                let least = clocks.iter().map(|c| c.get(id)).min().unwrap_or(n);
                (id.clone(), n.min(least))
            })
            .collect();
        for clock in clocks {
            needed.merge(clock);
        }
        self.gc.barrier = Some((stable, needed));
    }
}
