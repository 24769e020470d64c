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
//! A replica that joins between the stable clock and the end of the round
//! had no say in it, though it may hold what the round would forget: the
//! round (and the clock) is dropped, and the next one counts it.
//!
//! Writes of an incarnation retired when the stable clock is taken are
//! stable at its last write: every member had applied them when it was
//! retired, and every replica vetted since holds them. One retired later
//! waits for the next clock: the barrier of the round in progress was taken
//! before, and a write concurrent with its deletes may still be on its way.

use tracing::debug;

use crate::causal::VectorClock;

use super::state::{Replica, Stable};
use super::timing::Millis;

/// Tombstones walked per tick while a collection round lasts.
const GC_BATCH: usize = 1 << 16;

/// The state of tombstone collection.
impl Replica {
    /// Walks a batch of the round in progress; every gc interval, starts
    /// the round whose barrier passed and sets the next barrier.
    pub(super) fn collect_tombstones(&mut self, now: Millis) {
        // A copy being merged relies on the store's slots staying put.
        if !self.is_synced() || self.transfer.is_some() {
            return;
        }
        let view = &self.view;
        let silent = |stable: &Stable| {
            view.known()
                .any(|(a, p)| !stable.had_say.contains(&(a.clone(), p.id.clone())))
        };
        if self.gc.round.as_ref().is_some_and(silent) {
            self.gc.round = None;
        }
        if self
            .gc
            .barrier
            .as_ref()
            .is_some_and(|(stable, _)| silent(stable))
        {
            self.gc.barrier = None;
        }
        if let Some(stable) = self.gc.round.take() {
            let collected = self
                .store
                .collect_tombstones(GC_BATCH, |id| stable.clock.get(id));
            if collected.forgotten > 0 {
                debug!(forgotten = collected.forgotten, "forgot stable tombstones");
                self.collected.merge(&collected.deletes);
                self.collected_lamport = self.collected_lamport.max(collected.lamport);
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
                if self.known.covers(&needed) {
                    self.gc.round = Some(stable);
                }
            }
        }
        if !self.store.has_collectable() {
            return;
        }
        let Some(clocks) = self.view.reported_clocks() else {
            return;
        };
        let mine = self.known.clock();
        let mut needed = mine.clone();
        let mut stable: VectorClock = mine
            .iter()
            .map(|(id, n)| {
                let least = clocks.iter().map(|c| c.get(id)).min().unwrap_or(n);
                (id.clone(), n.min(least))
            })
            .collect();
        for (id, retired) in self.known.retired() {
            if self.known.is_retired(&id) {
                stable.set(id, retired.last);
            }
        }
        for clock in clocks {
            needed.merge(clock);
        }
        let had_say = self
            .view
            .known()
            .map(|(a, p)| (a.clone(), p.id.clone()))
            .collect();
        let stable = Stable {
            clock: stable,
            had_say,
        };
        self.gc.barrier = Some((stable, needed));
    }
}
