//! Joining: announcing a replica, vetting it, and deciding who copies whom.
//!
//! A replica *forgets* on purpose: tombstones once every replica it knows
//! applied the delete, incarnations once every replica it knows applied
//! their writes. What it forgot is its *floor*: the newest forgotten delete
//! of each writer ([`Replica::collected`]) and every retired incarnation
//! with its last write. A replica that holds its floor (has applied all of
//! it) can take this one's writes and deltas safely: nothing it holds was
//! deleted here and forgotten, and no dependency this replica stopped
//! naming is missing there. One that does not may hold a value deleted
//! here, or miss writes a pruned dependency stands for.
//!
//! The other way round, a replica that lacks this one's floor may hold
//! writes concurrent with a delete this one forgot: by the conflict rule
//! the delete may win, but here the write would meet no tombstone.
//!
//! So replicas exchange writes only after a join, in which each learns the
//! other's clock, retirements and collected deletes, and only while each
//! holds the other's floor (the peer is *vetted* and *covered*, together
//! *trusted*):
//!
//! - the one that joins is vetted by the other if it holds the other's
//!   floor; if not, it copies the other's state ([`super::transfer`]) and
//!   joins again once it has;
//! - the other checks the same the other way round and, if it lacks the
//!   joiner's floor, copies the joiner's state.
//!
//! A replica joins when it starts, when it finds a seed it does not know,
//! and whenever a peer refuses it with [`Refusal::Rejoin`]: after it was
//! forgotten, evicted and re-added, or restarted. Replicas that stay in
//! each other's views (members and suspects) never need to: each forgot
//! only what the other had applied.
//!
//! # Starting
//!
//! A starting replica joins every address of its `VIEW` and copies the
//! state of the first member that answers it holds one (it is *ready*). If
//! every member answers it holds none (a new store, every replica
//! starting), or none holding one answers within the start-up grace, it
//! starts with an empty state; once one holding a copy has answered, it
//! waits for a copy however long that takes. Until then it serves no
//! client and gives no copy. The identity it drew is checked by every
//! member it joins: one that knows writes of that identity refuses it
//! ([`Refusal::IdentityInUse`]) and the joiner draws another.

use std::collections::{BTreeMap, BTreeSet};

use tracing::{debug, info, warn};

use crate::address::SocketAddress;
use crate::causal::{ReplicaId, Retired, Retirement, VectorClock};

use super::message::{Member, Refusal, Reply, Request, ViewChange};
use super::outputs::Effect;
use super::peer::Heard;
use super::state::{Replica, Sync};
use super::timing::Millis;

impl Replica {
    /// Whether a replica that applied `clock` and retired `retired` holds
    /// everything this replica forgot.
    fn holds_floor(&self, clock: &VectorClock, retired: &[Retired]) -> bool {
        let theirs: BTreeMap<&ReplicaId, &Retirement> =
            retired.iter().map(|(i, r)| (i, r)).collect();
        let count = |id: &ReplicaId| clock.get(id).max(theirs.get(id).map_or(0, |r| r.last));
        // Another shard group's retirements are that group's floor, not
        // this one's.
        let foreign = |id: &ReplicaId| self.known.is_foreign(id);
        self.collected.iter().all(|(id, n)| count(id) >= n)
            && self
                .known
                .retired()
                .all(|(id, r)| foreign(&id) || count(&id) >= r.last)
    }

    /// Whether this replica holds the floor of a replica that forgot
    /// deletes up to `collected` and retired `retired`.
    fn holds_floor_of(&self, collected: &VectorClock, retired: &[Retired]) -> bool {
        self.known.covers(collected)
            && retired
                .iter()
                .all(|(id, r)| self.known.satisfies(id, r.last))
    }

    /// Whether this replica lacks writes that `retired` says every replica
    /// should have: clients' contexts may no longer name them.
    fn lacks_retired(&self, retired: &[Retired]) -> bool {
        retired
            .iter()
            .any(|(id, r)| !self.known.satisfies(id, r.last))
    }

    /// A replica joins this one: check its identity, add it, vet it, and
    /// copy its state if this replica lacks what it forgot.
    pub(super) fn on_join(
        &mut self,
        from: &Member,
        clock: VectorClock,
        retired: Vec<Retired>,
        collected: VectorClock,
        fresh: bool,
        now: Millis,
    ) -> Reply {
        // Writes under the identity of a joiner that wrote nothing yet:
        // another process drew the same identity (or this is the late join
        // of an incarnation that ended).
        let ended = self.known.retirement(&from.id).is_some_and(|r| r.ended);
        let taken = fresh && self.known.count(&from.id) > 0;
        if from.id != self.me.id && (ended || taken) {
            warn!(peer = %from.address, id = %from.id, "a replica joined with an identity that wrote what it does not hold; refused");
            return Reply::Refused {
                from: self.me.clone(),
                reason: Refusal::IdentityInUse,
            };
        }
        // A join is how an evicted address comes back: a new incarnation
        // undoes the removal, as if an operator added it back.
        if self.view.pardon(from, fresh) {
            self.decide(ViewChange::Add(from.address.clone()));
        }
        let heard = self.hear_join(from, now);
        match heard {
            Heard::Evicted => {
                return Reply::Refused {
                    from: self.me.clone(),
                    reason: Refusal::Removed,
                }
            }
            Heard::Added => info!(peer = %from.address, id = %from.id, "replica joined the view"),
            Heard::Readmitted => {
                info!(peer = %from.address, "replica is back; readmitted to the view")
            }
            _ => {}
        }
        let vetted = self.holds_floor(&clock, &retired);
        let covered = self.holds_floor_of(&collected, &retired);
        if let Some(peer) = self.view.peer_mut(&from.address) {
            peer.vetted = vetted;
            peer.covered = covered;
        }
        debug!(peer = %from.address, vetted, covered, "a replica joined this one");
        // The joiner forgot what this replica still holds: copy its state.
        if self.is_synced() && !clock.is_empty() && !covered {
            let blocking = self.lacks_retired(&retired);
            self.start_transfer(&from.address, blocking, now);
        }
        Reply::Join {
            from: self.me.clone(),
            view: self.view.addresses(),
            ready: self.is_ready() && !self.draining,
            vetted,
            clock: self.known.clock().clone(),
            retired: self.known.retired().collect(),
            decisions: self.decisions(),
        }
    }

    /// Hears `from`, adding it if it is unknown. A new incarnation at a
    /// known address loses what was queued for the old one: the new one
    /// copies the state instead, and is not vetted yet.
    fn hear_join(&mut self, from: &Member, now: Millis) -> Heard {
        let previous = self.view.peer(&from.address).and_then(|p| p.id.clone());
        let heard = self.view.hear_from(from, now);
        if heard == Heard::Evicted {
            return heard;
        }
        if previous.is_some_and(|id| id != from.id) {
            info!(peer = %from.address, id = %from.id, "replica restarted as a new incarnation");
            self.outbox.push(Effect::DropQueue {
                peer: from.address.clone(),
            });
        }
        self.note_ended_before(from);
        heard
    }

    /// Notes that every other incarnation of this group that this replica
    /// counts at `from`'s address ended: `from` joined there after them.
    fn note_ended_before(&mut self, from: &Member) {
        self.note_ended_at(&from.address, std::slice::from_ref(&from.id));
    }

    /// The node at `address` restarted (a sharded node heard under a newer
    /// run than before: it kept nothing across the restart), and has been
    /// the incarnations `this_run` since: every other incarnation of this
    /// group at that address ended, wherever the shard map placed the node
    /// since. A node the map moved to another group before it restarted
    /// never joins this one again, so without this its incarnation here
    /// would be retired as not ended once its address left the view. An
    /// incarnation of the new run is left alone: one the node left for
    /// another group may still be handing on its writes.
    pub fn note_restarted(&mut self, address: &SocketAddress, this_run: &[ReplicaId]) {
        self.note_ended_at(address, this_run);
    }

    /// Notes that every incarnation of this group at `address` but those
    /// of `except` ended. The view forgets an incarnation as soon as its
    /// address leaves the view (the shard map moved it, an operator
    /// removed it), so the fact is written down here: the incarnation's
    /// retirement, now or later, says it ended, and the other shard
    /// groups then stop naming its writes that never reached this group
    /// (lost with it) in what they answer.
    fn note_ended_at(&mut self, address: &SocketAddress, except: &[ReplicaId]) {
        let address = address.as_str();
        let at_address = |id: &ReplicaId| {
            id.address() == address && !except.contains(id) && !self.known.is_foreign(id)
        };
        let counted: Vec<ReplicaId> = (self.known.clock().iter().map(|(id, _)| id))
            .filter(|id| at_address(id))
            .cloned()
            .collect();
        let retired: Vec<Retired> = (self.known.retired())
            .filter(|(id, r)| !r.ended && at_address(id) && self.known.is_retired(id))
            .collect();
        for id in counted {
            self.told_gone.insert(id, true);
        }
        for (id, r) in retired {
            self.known.retire(&id, Retirement { ended: true, ..r });
        }
    }

    /// A join this replica sent was answered (or failed).
    pub(super) fn join_answered(&mut self) {
        if let Sync::Joining {
            joins_in_flight, ..
        } = &mut self.sync
        {
            *joins_in_flight = joins_in_flight.saturating_sub(1);
        }
    }

    /// A member answered this replica's join: learn the members it did not
    /// know (and join them), vet the member, and copy its state if this
    /// replica is starting, or if it lacks what the member forgot.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_join_reply(
        &mut self,
        from: &Member,
        view: Vec<SocketAddress>,
        ready: bool,
        vetted: bool,
        clock: VectorClock,
        retired: Vec<Retired>,
        now: Millis,
    ) {
        let heard = self.hear_join(from, now);
        if heard == Heard::Evicted {
            return;
        }
        if heard == Heard::Added {
            info!(peer = %from.address, id = %from.id, "replica joined the view");
        }
        // A starting replica, or one that meets a member it did not know
        // (a seed, after a long partition), learns the members it lacks; a
        // member's view seen in a mere handshake may be stale.
        if !self.is_synced() || heard == Heard::Added {
            for address in view {
                if !self.view.contains(&address) && self.view.learn(&address, now) {
                    info!(peer = %address, "learned of a member while joining");
                    let request = self.join_request();
                    self.send(&address, request);
                }
            }
        }
        let synced = self.is_synced();
        let holds = !synced || self.holds_floor(&clock, &retired);
        if let Some(peer) = self.view.peer_mut(&from.address) {
            peer.vetted = holds;
            peer.covered = vetted;
        }
        debug!(peer = %from.address, ready, vetted, holds, "a member answered this replica's join");
        if let Sync::Joining {
            not_ready,
            seen_ready,
            ..
        } = &mut self.sync
        {
            *seen_ready |= ready;
            if !ready {
                // Starting too (it holds nothing), or busy copying state.
                if clock.is_empty() && retired.is_empty() {
                    not_ready.insert(from.address.clone());
                }
                return;
            }
            self.start_transfer(&from.address, true, now);
        } else if !vetted && ready {
            info!(peer = %from.address, "this replica lacks what a member forgot; copying its state");
            let blocking = self.lacks_retired(&retired);
            self.start_transfer(&from.address, blocking, now);
        }
    }

    /// A peer asked this replica to join it first.
    pub(super) fn rejoin(&mut self, peer: &SocketAddress, now: Millis) {
        let retry = self.timing.join_retry;
        let last = self.rejoined.get(peer).copied();
        if last.is_some_and(|t| now.saturating_sub(t) < retry) {
            return;
        }
        self.rejoined.insert(peer.clone(), now);
        let request = self.join_request();
        self.send(peer, request);
    }

    /// While joining: announce this replica to every member, retrying, and
    /// start with an empty state once every member said it holds none, or
    /// the start-up grace passed with none holding one answering.
    pub(super) fn maybe_join(&mut self, now: Millis) {
        if self.transfer.is_some() {
            return;
        }
        // Everyone who may hold the state: members, suspects (a member
        // that did not answer yet is one), and the seeds not known.
        let mut targets: Vec<SocketAddress> = self.view.known().map(|(a, _)| a.clone()).collect();
        let unknown = self
            .seeds
            .iter()
            .filter(|a| !self.view.knows(a) && !self.view.is_evicted(a));
        targets.extend(unknown.cloned());
        let members: Vec<SocketAddress> = self.view.peers().map(|(a, _)| a.clone()).collect();
        let Sync::Joining {
            started,
            last_attempt,
            joins_in_flight,
            not_ready,
            seen_ready,
        } = &mut self.sync
        else {
            return;
        };
        if targets.is_empty() {
            return self.start_empty("no other replica in the view");
        }
        if !*seen_ready && !members.is_empty() && members.iter().all(|p| not_ready.contains(p)) {
            return self.start_empty("every member is starting too");
        }
        let waited = now.saturating_sub(*started) >= self.timing.startup_grace;
        if waited && !*seen_ready && *joins_in_flight == 0 {
            return self.start_empty("no member holding the state answered");
        }
        let retry_due =
            last_attempt.is_none_or(|t| now.saturating_sub(t) >= self.timing.join_retry);
        if *joins_in_flight > 0 || !retry_due {
            return;
        }
        *last_attempt = Some(now);
        *joins_in_flight = targets.len();
        not_ready.clear();
        let request = self.join_request();
        for target in targets {
            self.send(&target, request.clone());
        }
    }

    /// Serves from an empty state (a new store), and says why.
    fn start_empty(&mut self, why: &str) {
        info!(why, "starting with an empty state");
        self.sync = Sync::Synced;
        self.progress += 1;
    }

    /// Sends a join to every seed that is neither a member nor a suspect
    /// (nor removed by an operator): replicas that forgot each other, or
    /// never met, find each other this way. At most every seed interval,
    /// unless `soon` (a client waits for writes no member holds; then at
    /// most every join retry).
    pub(super) fn probe_seeds(&mut self, now: Millis, soon: bool) {
        let wait = if soon {
            self.timing.join_retry
        } else {
            self.timing.seed_interval
        };
        if !self.is_synced() || now.saturating_sub(self.last_seed_probe) < wait {
            return;
        }
        self.last_seed_probe = now;
        // An address an operator added (and did not remove since) is a
        // seed too: forgotten after a long silence, it is still meant to
        // be in the view, and may be in no one's `VIEW`. Under `VIEW_DNS`,
        // DNS alone says who the seeds are.
        let added = self.decisions.values().filter_map(|d| match &d.change {
            ViewChange::Add(address) if *address != self.me.address && !self.dns => Some(address),
            _ => None,
        });
        let candidates: BTreeSet<&SocketAddress> = self.seeds.iter().chain(added).collect();
        let unknown: Vec<SocketAddress> = candidates
            .into_iter()
            .filter(|a| !self.view.knows(a) && !self.view.is_evicted(a))
            .cloned()
            .collect();
        if unknown.is_empty() {
            return;
        }
        let request = self.join_request();
        for address in unknown {
            self.send(&address, request.clone());
        }
    }

    /// A member refused this replica's identity.
    pub(super) fn identity_taken(&mut self) {
        if self.is_synced() || self.writes_issued > 0 {
            warn!(id = %self.me.id, "a member holds writes of this replica's identity that it lacks");
            return;
        }
        if !self.outbox.iter().any(|e| matches!(e, Effect::Reincarnate)) {
            self.outbox.push(Effect::Reincarnate);
        }
    }

    /// Takes a new identity (drawn by the driver after
    /// [`Effect::Reincarnate`]); only before it wrote or copied anything.
    pub fn reincarnate(&mut self, incarnation: &str) {
        if self.is_synced() || self.writes_issued > 0 || self.transfer.is_some() {
            return;
        }
        let id = ReplicaId::new(self.me.address.as_str(), incarnation);
        warn!(old = %self.me.id, new = %id, "identity in use; took a new one");
        self.me.id = id;
    }

    /// A join announcing this replica and what it knows.
    pub(super) fn join_request(&self) -> Request {
        Request::Join {
            from: self.me.clone(),
            clock: self.known.clock().clone(),
            retired: self.known.retired().collect(),
            collected: self.collected.clone(),
            fresh: !self.is_synced(),
            decisions: self.decisions(),
        }
    }
}
