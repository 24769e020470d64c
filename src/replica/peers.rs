//! Requests from peers, replies to this replica's own requests, and the
//! delivery of writes that arrive.
//!
//! A request is heard only from a replica that joined: a member or
//! suspect this replica knows (by address and incarnation). Anything else
//! is refused with [`Refusal::Rejoin`], and a join follows. Heartbeats,
//! pulls and replication batches further need the sender to be *trusted*
//! (each holds everything the other forgot; see [`super::join`]), and
//! pulls and replication batches need this replica to hold a copy of the
//! state (a starting replica's store is a copy in progress).
//!
//! A replica refused as removed from the view answers with a join (it
//! carries the view changes this replica knows: the one that added it
//! back, if it heard it) and serves no client until the replicas that
//! refused it hear it again.

use tracing::{debug, info, warn};

use crate::address::SocketAddress;
use crate::causal::{Retired, VectorClock};

use super::message::{Kind, Member, Refusal, Reply, Request, StateTransfer, Versions, Write};
use super::peer::Heard;
use super::state::Replica;
use super::timing::Millis;

impl Replica {
    /// Handles a request from a peer and returns the reply.
    pub fn handle(&mut self, request: Request, now: Millis) -> Reply {
        let from = request.from().clone();
        match request {
            Request::Join {
                clock,
                retired,
                collected,
                fresh,
                decisions,
                ..
            } => {
                self.learn_decisions(decisions, now);
                self.on_join(&from, clock, retired, collected, fresh, now)
            }
            Request::Snapshot { cursor, fresh, .. } => self.page(cursor, fresh),
            Request::ViewChange { decision, .. } => {
                if self.view.touch(&from, now) == Heard::Evicted {
                    return self.refuse(Refusal::Removed);
                }
                self.apply_decision(decision, now);
                self.ack()
            }
            Request::Replicate { writes, .. } => {
                // A starting replica may lack what a write's dependencies
                // no longer name: it takes writes once it holds a copy.
                if let Err(refusal) = self.hear_trusted(&from, now) {
                    return self.refuse(refusal);
                }
                if !self.is_synced() {
                    return self.refuse(Refusal::NotReady);
                }
                self.receive(writes, now);
                self.ack()
            }
            Request::Heartbeat {
                clock,
                retired,
                decided,
                ..
            } => {
                if let Err(refusal) = self.hear_trusted(&from, now) {
                    return self.refuse(refusal);
                }
                self.on_heartbeat(&from.address, clock, retired, decided, now);
                Reply::Heartbeat {
                    from: self.me.clone(),
                    clock: self.known.clock().clone(),
                    retired: self.retirements_told(&from.address),
                    decided: self.decided,
                }
            }
            Request::Pull { clock, .. } => {
                if let Err(refusal) = self.hear_trusted(&from, now) {
                    return self.refuse(refusal);
                }
                // A starting replica's store is a copy in progress.
                if !self.is_synced() {
                    return self.refuse(Refusal::NotReady);
                }
                Reply::Pull {
                    from: self.me.clone(),
                    state: self.delta_for(&from.address, &clock),
                }
            }
        }
    }

    fn ack(&self) -> Reply {
        Reply::Ack {
            from: self.me.clone(),
        }
    }

    fn refuse(&self, reason: Refusal) -> Reply {
        Reply::Refused {
            from: self.me.clone(),
            reason,
        }
    }

    /// Hears `from` if it joined and is trusted.
    fn hear_trusted(&mut self, from: &Member, now: Millis) -> Result<(), Refusal> {
        match self.hear(from, now) {
            Heard::Evicted => Err(Refusal::Removed),
            Heard::Unknown => Err(Refusal::Rejoin),
            _ if !self.view.peer(&from.address).is_some_and(|p| p.trusted()) => {
                Err(Refusal::Rejoin)
            }
            _ => Ok(()),
        }
    }

    /// Handles the reply to a request this replica sent to `to` (or the
    /// failure to get one).
    pub fn on_reply(
        &mut self,
        to: &SocketAddress,
        kind: Kind,
        result: Result<Reply, String>,
        now: Millis,
    ) {
        self.clear_in_flight(to, kind);
        if kind == Kind::ViewChange {
            // A refusal is an answer too: retrying cannot change it.
            self.on_relay_reply(to, result.is_ok(), now);
        }
        let reply = match result {
            Ok(reply) => reply,
            Err(error) => {
                debug!(peer = %to, kind = kind.as_str(), %error, "request failed");
                if kind == Kind::Snapshot {
                    self.on_page_failed(to, now);
                }
                return;
            }
        };
        if let Reply::Refused { reason, .. } = &reply {
            debug!(peer = %to, kind = kind.as_str(), reason = reason.as_str(), "peer refused this replica");
            self.on_refused(to, kind, *reason, now);
            return;
        }
        if matches!(kind, Kind::Heartbeat | Kind::Pull | Kind::Join)
            && self.removed_by.remove(to).is_some()
        {
            info!(peer = %to, "a member that removed this replica hears it again");
        }
        if let Reply::Join {
            from,
            view,
            ready,
            vetted,
            clock,
            retired,
            decisions,
        } = reply
        {
            self.learn_decisions(decisions, now);
            return self.on_join_reply(&from, view, ready, vetted, clock, retired, now);
        }
        if let Reply::Snapshot { from, page } = reply {
            // The copy checks its giver itself (see `accept_page`).
            return self.accept_page(&from, page, now);
        }
        match self.hear(reply.from(), now) {
            Heard::Evicted | Heard::Unknown => return,
            _ => {}
        }
        match reply {
            Reply::Ack { .. }
            | Reply::Refused { .. }
            | Reply::Join { .. }
            | Reply::Snapshot { .. } => {}
            Reply::Heartbeat {
                from,
                clock,
                retired,
                decided,
            } => self.on_heartbeat(&from.address, clock, retired, decided, now),
            Reply::Pull { from, state } => {
                // A peer that lost this replica's trust since the pull was
                // sent (removed and added back, forgotten and met again)
                // may hold what this replica forgot: its state is copied,
                // not merged.
                let trusted = self.view.member(&from.address).is_some_and(|p| p.trusted());
                if trusted {
                    self.merge_delta(state, now);
                }
            }
        }
    }

    fn clear_in_flight(&mut self, to: &SocketAddress, kind: Kind) {
        match kind {
            Kind::Heartbeat | Kind::Pull => {
                if let Some(peer) = self.view.peer_mut(to) {
                    if kind == Kind::Heartbeat {
                        peer.heartbeat_in_flight = false;
                    } else {
                        peer.pull_in_flight = false;
                    }
                }
            }
            Kind::Join => self.join_answered(),
            Kind::Snapshot | Kind::Replicate | Kind::ViewChange => {}
        }
    }

    /// A peer refused a request of `kind`.
    fn on_refused(&mut self, to: &SocketAddress, kind: Kind, reason: Refusal, now: Millis) {
        match reason {
            // A join carries every view change this replica knows: if it
            // knows the one that added it back, the peer learns it so.
            Refusal::Removed => {
                if self.removed_by.insert(to.clone(), now).is_none() {
                    warn!(peer = %to, "a member removed this replica from the view; serving no client until it hears this replica again");
                }
                // A refusal is a sign of life: the refuser is not forgotten
                // (and dropped from `removed_by`) while it keeps refusing.
                if let Some(peer) = self.view.peer_mut(to) {
                    peer.last_heard = now;
                }
                self.rejoin(to, now);
            }
            Refusal::Rejoin => self.rejoin(to, now),
            Refusal::NotReady => {
                if kind == Kind::Snapshot {
                    self.abandon_transfer(to);
                }
            }
            Refusal::IdentityInUse => self.identity_taken(),
        }
    }

    /// Records a sign of life from a known `member`.
    pub(super) fn hear(&mut self, member: &Member, now: Millis) -> Heard {
        let heard = self.view.touch(member, now);
        if heard == Heard::Readmitted {
            info!(peer = %member.address, "replica is back; readmitted to the view");
        }
        heard
    }

    /// What a heartbeat (sent or answered) of `peer` tells: the
    /// retirements it made, whether it knows other view changes, and the
    /// clock it has applied.
    fn on_heartbeat(
        &mut self,
        peer: &SocketAddress,
        clock: VectorClock,
        retired: Vec<Retired>,
        decided: u64,
        now: Millis,
    ) {
        self.adopt(&retired);
        self.catch_up_decisions(peer, decided, now);
        let reported = self.with_retirements(clock, &retired);
        self.note_clock(peer, reported, now);
    }

    /// Records the applied clock `peer` reported, to pull what it has and
    /// this replica still lacks a moment later.
    pub(super) fn note_clock(&mut self, peer: &SocketAddress, clock: VectorClock, now: Millis) {
        let known = &self.known;
        let Some(state) = self.view.peer_mut(peer) else {
            return;
        };
        let resolved = state
            .lag
            .as_ref()
            .is_none_or(|(_, target)| known.covers(target));
        if resolved {
            state.lag = (!known.covers(&clock)).then(|| (now, clock.clone()));
        }
        state.clock = Some(clock);
    }

    /// Buffers writes from a peer and applies every write that becomes
    /// deliverable.
    fn receive(&mut self, writes: Vec<Write>, now: Millis) {
        for write in writes {
            self.buffer.insert(write, &self.known);
        }
        self.deliver(now);
    }

    /// Applies buffered writes in causal order, as far as possible.
    pub(super) fn deliver(&mut self, now: Millis) {
        let ready = self.buffer.drain_deliverable(&mut self.known);
        if !ready.is_empty() {
            self.progress += 1;
            self.writes_applied += ready.len() as u64;
        }
        for write in ready {
            debug!(key = %write.key, dot = %write.dot, "applied write");
            self.lamport = self.lamport.max(write.lamport);
            self.known.note_foreign(&write.deps);
            let version = write.version();
            self.store.apply(write.key, version);
        }
        if self.buffer.is_empty() {
            self.buffer_stuck_since = None;
        } else if self.buffer_stuck_since.is_none() {
            self.buffer_stuck_since = Some(now);
        }
    }

    pub(super) fn pull_from(&mut self, peer: &SocketAddress, now: Millis) {
        // A joining replica waits for its copy: a pull from its empty
        // clock would ask a member for its whole state once more.
        if !self.is_synced() {
            return;
        }
        let interval = self.timing.pull_interval;
        let Some(state) = self.view.peer_mut(peer) else {
            return;
        };
        let recent = state
            .last_pull
            .is_some_and(|t| now.saturating_sub(t) < interval);
        // Only a trusted peer's versions may be merged (see `on_reply`).
        if state.pull_in_flight || recent || !state.trusted() {
            return;
        }
        state.pull_in_flight = true;
        state.last_pull = Some(now);
        let request = Request::Pull {
            from: self.me.clone(),
            clock: self.known.clock().clone(),
        };
        self.send(peer, request);
    }

    /// What the trusted peer at `peer`, which has applied `clock`, lacks of
    /// this replica's state. Writers the clock does not name and that are
    /// retired here are skipped: a trusted peer holds all of their writes.
    fn delta_for(&self, peer: &SocketAddress, clock: &VectorClock) -> StateTransfer {
        let recorded = self.view.peer(peer).and_then(|p| p.clock.as_ref());
        let since = |id: &crate::causal::ReplicaId| {
            let told = recorded.map_or(0, |c| c.get(id));
            let named = clock.get(id);
            if named == 0 && told == 0 && self.known.is_retired(id) {
                return None;
            }
            Some(named.max(told))
        };
        StateTransfer {
            versions: Versions::List(self.store.delta(since)),
            clock: self.known.clock().clone(),
            lamport: self.lamport,
            pending: self
                .buffer
                .iter()
                .filter(|w| since(&w.dot.replica).is_some_and(|n| n < w.dot.counter))
                .cloned()
                .collect(),
            retired: self.retirements_for(Some(clock)),
            foreign: self.known.foreign().clone(),
        }
    }

    /// Merges what a peer sent in answer to a pull. The store holds the
    /// winner of its keys over this replica's writes; the union with the
    /// peer's versions this replica has not seen holds the winner over
    /// both.
    ///
    /// The peer's retirements of incarnations this replica named come with
    /// the versions of theirs it lacked: they count as applied.
    fn merge_delta(&mut self, state: StateTransfer, now: Millis) {
        if state.versions.is_empty() && self.known.covers(&state.clock) && state.pending.is_empty()
        {
            self.count_retired(&state.retired);
            return;
        }
        self.known.note_foreign(&state.foreign);
        for (key, version) in state.versions.into_list() {
            if !self.known.applied_here(&version.dot) {
                self.lamport = self.lamport.max(version.lamport);
                self.store.apply(key, version);
            }
        }
        self.count_retired(&state.retired);
        self.absorb(&state.clock, state.lamport, state.pending, now);
    }

    /// Adopts a peer's clock and pending writes after merging its versions.
    pub(super) fn absorb(
        &mut self,
        clock: &VectorClock,
        lamport: u64,
        pending: Vec<Write>,
        now: Millis,
    ) {
        if !self.known.covers(clock) {
            self.known.merge(clock);
            self.progress += 1;
        }
        self.lamport = self.lamport.max(lamport);
        for write in pending {
            self.buffer.insert(write, &self.known);
        }
        self.deliver(now);
    }
}
