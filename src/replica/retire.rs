//! Retiring the incarnations of replicas that are gone.
//!
//! Every incarnation that ever wrote has an entry in the clocks, and every
//! restart of a replica without its data is a new incarnation. An
//! incarnation is *gone* once its address is held by a newer incarnation
//! (it ended: it will never write again) or its address is no longer a
//! member or suspect (forgotten or removed: it might still be alive,
//! behind a long partition). A gone incarnation whose writes every member
//! and suspect has applied (by the clocks they last reported) is retired:
//! its entry leaves this replica's clock for the retirement record of
//! [`crate::causal::Knowledge`], and with it every heartbeat, pull and
//! context this replica hands out. A replica that retires an incarnation
//! tells each peer whose clock still names it, in the heartbeats it sends
//! that peer (so the list is as short as that peer's clock); the peer
//! retires it too once it has applied the same writes.
//!
//! Worked example. Three replicas A, B, C; C restarts as C2.
//!
//! | step | event                          | A's clock            | A's record |
//! |------|--------------------------------|----------------------|------------|
//! | 1    | C wrote 4 times, all applied   | `{A:9, B:3, C:4}`    |            |
//! | 2    | C2 joins (copies A's state)    | `{A:9, B:3, C:4}`    |            |
//! | 3    | B and C2 report `C:4`          | `{A:9, B:3}`         | `C: 4, ended` |
//! | 4    | C2 writes                      | `{A:9, B:3, C2:1}`   | `C: 4, ended` |
//!
//! After step 3, a client context `{C:4, A:2}` is satisfied at A and is
//! answered as `{A:2}`; B, told of the retirement by A's heartbeats,
//! drops `C` as soon as it has applied `C:4`.

use tracing::info;

use crate::causal::{ReplicaId, Retired, Retirement, VectorClock};

use crate::address::SocketAddress;

use super::state::Replica;

impl Replica {
    /// This replica's retirements of the incarnations `clock` names.
    pub(super) fn retirements_for(&self, clock: Option<&VectorClock>) -> Vec<Retired> {
        let Some(clock) = clock else {
            return Vec::new();
        };
        clock
            .iter()
            .filter_map(|(id, _)| {
                let retired = self.known.retirement(id)?;
                self.known.is_retired(id).then(|| (id.clone(), retired))
            })
            .collect()
    }

    /// This replica's retirements of the incarnations `peer` last reported
    /// applying: what a heartbeat to it (or an answer) tells.
    pub(super) fn retirements_told(&self, peer: &SocketAddress) -> Vec<Retired> {
        self.retirements_for(self.view.peer(peer).and_then(|p| p.clock.as_ref()))
    }

    /// `clock` with the retirements a peer told of as entries: what the
    /// peer has applied.
    pub(super) fn with_retirements(&self, clock: VectorClock, retired: &[Retired]) -> VectorClock {
        let mut clock = clock;
        for (id, r) in retired {
            if clock.get(id) < r.last {
                clock.set(id.clone(), r.last);
            }
        }
        clock
    }

    /// Notes the incarnations a peer retired as gone: they are retired here
    /// once this replica's members have their writes too.
    pub(super) fn adopt(&mut self, retired: &[Retired]) {
        for (id, r) in retired {
            if *id != self.me.id && !self.known.is_retired(id) {
                let ended = self.told_gone.entry(id.clone()).or_default();
                *ended |= r.ended;
            }
        }
    }

    /// Counts the writes of the incarnations a copy (or a delta) of
    /// another replica's state holds as retired: the copy carried them.
    pub(super) fn count_retired(&mut self, retired: &[Retired]) {
        let clock: VectorClock = retired
            .iter()
            .filter(|(id, _)| *id != self.me.id)
            .map(|(id, r)| (id.clone(), r.last))
            .collect();
        self.known.merge(&clock);
        self.adopt(retired);
    }

    /// Retires the incarnations that are gone and whose writes every
    /// member and suspect has applied.
    pub(super) fn retire_gone(&mut self) {
        if !self.is_synced() || self.transfer.is_some() {
            return;
        }
        let candidates: Vec<(ReplicaId, u64, bool)> = self
            .known
            .clock()
            .iter()
            .filter(|(id, _)| **id != self.me.id)
            .filter_map(|(id, n)| self.gone(id).map(|ended| (id.clone(), n, ended)))
            // Every member and suspect applied exactly what is applied
            // here: none lacks a write, and none holds one this replica
            // lacks (it pulls that first).
            .filter(|(id, n, _)| {
                self.view
                    .known()
                    .all(|(_, p)| p.clock.as_ref().is_some_and(|c| c.get(id) == *n))
            })
            .collect();
        for (id, last, ended) in candidates {
            info!(replica = %id, last, ended, "incarnation retired");
            self.known.retire(&id, Retirement { last, ended });
            self.collected.set(id.clone(), 0);
            self.told_gone.remove(&id);
            self.write_orphans_again(&id, last);
        }
        let clock = self.known.clock();
        self.told_gone.retain(|id, _| clock.get(id) > 0);
    }

    /// Writes again, as this replica's own, the versions of `id` the store
    /// holds past `last`, the writes its retirement counts. They came in a
    /// copy whose pages were newer than the clock it accounted for, from a
    /// giver that ended before this replica pulled what that clock lacked:
    /// held but counted nowhere, they would never spread, and the replicas
    /// holding them would differ for good from those that do not. Written
    /// again, they spread like any write (the conflict rule then sees them
    /// as this replica's writes, above everything applied here).
    fn write_orphans_again(&mut self, id: &ReplicaId, last: u64) {
        let orphans = self.store.delta(|origin| (origin == id).then_some(last));
        let written = self.write_again(orphans);
        if written > 0 {
            info!(replica = %id, last, written, "versions past a retirement written again");
        }
    }

    /// Whether `id` is gone: `Some(true)` if it ended (its address has a
    /// newer incarnation, here or at a peer that retired it),
    /// `Some(false)` if its address is no longer known or a peer retired
    /// it, `None` if it may still be the incarnation at a known address.
    fn gone(&self, id: &ReplicaId) -> Option<bool> {
        let told = self.told_gone.get(id).copied();
        let address = id.address();
        if address == self.me.address.as_str() {
            return Some(true);
        }
        let here = match self.view.known().find(|(a, _)| a.as_str() == address) {
            None => Some(false),
            Some((_, peer)) => match &peer.id {
                Some(current) if current != id => Some(true),
                _ => None,
            },
        };
        match (here, told) {
            (Some(a), Some(b)) => Some(a || b),
            (here, told) => here.or(told),
        }
    }
}
