//! State transfer on join, and the merges behind anti-entropy.
//!
//! Both rest on one fact: a replica's store and its applied clock describe
//! a causally closed set of writes. The union of two such sets is causally
//! closed too, and the winner of each key in the union is the larger of the
//! two winners. So a replica that lacks writes another has needs only the
//! versions made by writes it has not counted, plus the other's clock.

use tracing::info;

use crate::address::SocketAddress;

use super::{Member, Millis, Replica, Request, StateTransfer, Sync, Versions};

impl Replica {
    /// What a replica that has applied `since` lacks of this one's state.
    pub(super) fn delta_state(&self, since: &crate::causal::VectorClock) -> StateTransfer {
        StateTransfer {
            versions: Versions::List(self.store.delta(since)),
            clock: self.applied.clone(),
            lamport: self.lamport,
            pending: self
                .buffer
                .iter()
                .filter(|w| !since.contains(&w.dot))
                .cloned()
                .collect(),
        }
    }

    /// The whole state: every version (tombstones included), the clock,
    /// and the writes still waiting for their dependencies.
    pub(super) fn snapshot_state(&self) -> StateTransfer {
        StateTransfer {
            versions: Versions::Image(self.store.image()),
            clock: self.applied.clone(),
            lamport: self.lamport,
            pending: self.buffer.iter().cloned().collect(),
        }
    }

    /// Merges what a peer sent in answer to a pull.
    pub(super) fn merge_delta(&mut self, state: StateTransfer, now: Millis) {
        if state.clock.covered_by(&self.applied) && state.pending.is_empty() {
            return;
        }
        for (key, version) in state.versions.into_list() {
            if !self.applied.contains(&version.dot) {
                self.store.apply(key, version);
            }
        }
        self.absorb(state.clock, state.lamport, state.pending, now);
    }

    /// Adopts a peer's clock and pending writes after merging its versions.
    fn absorb(
        &mut self,
        clock: crate::causal::VectorClock,
        lamport: u64,
        pending: Vec<super::Write>,
        now: Millis,
    ) {
        if !clock.covered_by(&self.applied) {
            self.applied.merge(&clock);
            self.progress += 1;
        }
        self.lamport = self.lamport.max(lamport);
        for write in pending {
            self.buffer.insert(write, &self.applied);
        }
        self.deliver(now);
    }

    /// While joining: announce this replica to every member, retrying, and
    /// give up waiting (start alone) once the start-up grace has passed
    /// with nobody answering.
    pub(super) fn maybe_join(&mut self, now: Millis) {
        let Sync::Joining {
            started,
            last_attempt,
            joins_in_flight,
            snapshot_in_flight,
        } = &mut self.sync
        else {
            return;
        };
        let peers: Vec<SocketAddress> = self.view.peers().map(|(a, _)| a.clone()).collect();
        if peers.is_empty() {
            info!("no other member in the view; starting with an empty state");
            self.sync = Sync::Synced;
            return;
        }
        if *snapshot_in_flight {
            return;
        }
        if now.saturating_sub(*started) >= self.timing.startup_grace && *joins_in_flight == 0 {
            info!("no member answered; starting with an empty state");
            self.sync = Sync::Synced;
            return;
        }
        let retry_due =
            last_attempt.is_none_or(|t| now.saturating_sub(t) >= self.timing.join_retry);
        if *joins_in_flight > 0 || !retry_due {
            return;
        }
        *last_attempt = Some(now);
        *joins_in_flight = peers.len();
        for peer in peers {
            let request = Request::Join {
                from: self.me.clone(),
            };
            self.send(&peer, request);
        }
    }

    /// A member answered this replica's join with its view: learn the
    /// members it did not know (and announce itself to them), and copy the
    /// state of the first member that answered.
    pub(super) fn on_join_reply(&mut self, from: &Member, view: Vec<SocketAddress>, now: Millis) {
        for address in view {
            if !self.view.contains(&address) && self.view.learn(&address, now) {
                info!(peer = %address, "learned of a member while joining");
                let request = Request::Join {
                    from: self.me.clone(),
                };
                self.send(&address, request);
            }
        }
        if let Sync::Joining {
            snapshot_in_flight, ..
        } = &mut self.sync
        {
            if !*snapshot_in_flight {
                *snapshot_in_flight = true;
                let request = Request::Snapshot {
                    from: self.me.clone(),
                };
                self.send(&from.address, request);
            }
        }
    }

    /// A member's full state arrived: merge it and serve as synced.
    pub(super) fn on_snapshot(&mut self, from: &Member, state: StateTransfer, now: Millis) {
        let keys = state.versions.len();
        self.store
            .merge_snapshot(state.versions.into_list(), &state.clock);
        self.absorb(state.clock, state.lamport, state.pending, now);
        if self.sync != Sync::Synced {
            info!(peer = %from.address, keys, "copied the state of a member; synced");
            self.sync = Sync::Synced;
        }
    }
}
