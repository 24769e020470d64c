//! Client operations: reads and writes under a causal context, the pulls a
//! waiting client triggers, and the hand-over when the replica stops.

use std::sync::Arc;

use crate::address::SocketAddress;
use crate::causal::{CausalContext, Dot, ReplicaId, VectorClock};
use crate::store::tables::value_written_again;
use crate::store::{etag, Key, Value, Version};

use super::message::{Request, Write};
use super::outputs::{
    Condition, Effect, Handover, Learned, Outcome, ReadResult, Wait, WriteResult,
};
use super::state::{single, Replica};
use super::timing::Millis;

impl Replica {
    /// The writes of `clock` that are not applied here.
    pub fn lacks(&self, clock: &VectorClock) -> VectorClock {
        self.known.missing(clock)
    }

    /// A request that asks `peer` for the writes it has applied (a
    /// heartbeat, answered with its clock).
    pub fn clock_request(&self, peer: &SocketAddress) -> Request {
        self.heartbeat_for(peer)
    }

    /// The writes `context` names that are not applied here.
    pub fn missing(&self, context: &CausalContext) -> VectorClock {
        self.lacks(context.clock())
    }

    /// Whether a client request with `context` can be served now; if so,
    /// the context without the retired incarnations it names, if any.
    pub(super) fn admit(&self, context: &CausalContext) -> Result<Option<VectorClock>, Wait> {
        if self.is_removed() {
            return Err(Wait::Removed);
        }
        if !self.is_ready() {
            return Err(Wait::NotReady);
        }
        let through = context.clock().get(&ReplicaId::shard_map());
        if self.map_version > 0 && through > self.map_version {
            return Err(Wait::MapBehind(through));
        }
        let missing = self.missing(context);
        if !missing.is_empty() {
            return Err(Wait::Missing(missing));
        }
        Ok(self.prune(context.clock()))
    }

    /// Sharded: this node holds version `version` of the shard map. Every
    /// answer carries it from now on (as an entry of the foreign
    /// frontier, which what a client learns includes), and a request whose
    /// context went through a newer map waits until this node holds that
    /// one: its key may have moved since this node's map, to a shard whose
    /// writes this replica would take for another group's (see "Across
    /// shards" in [`crate::causal`]).
    pub fn note_map_version(&mut self, version: u64) {
        if version <= self.map_version {
            return;
        }
        self.map_version = version;
        let mut entry = VectorClock::new();
        entry.set(ReplicaId::shard_map(), version);
        self.known.note_foreign(&entry);
        self.progress += 1;
    }

    /// Sharded: the version of the shard map held here (0 unsharded).
    pub fn map_version(&self) -> u64 {
        self.map_version
    }

    /// `clock` without the entries that retirement made pointless (see
    /// [`crate::causal::Knowledge::prune`]), or `None` if it has none. An
    /// entry naming a retired writer of a sibling held here is kept: a
    /// write replaces a sibling only if its context names it, and a client
    /// that read one must be able to.
    fn prune(&self, clock: &VectorClock) -> Option<VectorClock> {
        (self.known).prune_keeping(clock, |id| self.store.holds_siblings_by(id))
    }

    /// What a client learns from the version with `dot`: nothing when its
    /// writer is retired (every member has it), unless it is a sibling.
    pub(super) fn learn(&self, dot: &Dot) -> VectorClock {
        let mut clock = single(dot);
        // Sharded: what the writes applied here depended on in other
        // shards, which the dot alone does not tell their members.
        clock.merge(self.known.foreign());
        self.prune(&clock).unwrap_or(clock)
    }

    /// Reads `key` of the default table for a client whose context is
    /// satisfied here.
    pub fn read(&self, key: &Key, context: &CausalContext) -> Result<ReadResult, Wait> {
        self.read_in(None, key.clone(), context)
    }

    /// Reads the stored key `key` for a client whose context is satisfied
    /// (`pruned`: see [`Learned::pruned`]).
    pub(super) fn read_stored(
        &self,
        key: &Key,
        pruned: Option<VectorClock>,
    ) -> Result<ReadResult, Wait> {
        let mut result = ReadResult::absent(pruned);
        if let Some(entry) = self.store.entry(key) {
            let dot = entry.dot();
            result.etag = (!entry.is_tombstone()).then(|| etag(&dot));
            result.value = entry.value();
            result.learned.clock = self.learn(&dot);
        }
        Ok(result)
    }

    /// Puts `value` (or deletes, for `None`) at `key` for a client whose
    /// context is satisfied here.
    pub fn write(
        &mut self,
        key: Key,
        value: Option<Value>,
        context: &CausalContext,
    ) -> Result<WriteResult, Wait> {
        self.write_if(key, value, context, &Condition::Any)
    }

    /// [`Replica::write`] if `condition` holds for the key's version here,
    /// once the context is satisfied (else [`Outcome::Unmet`], nothing
    /// written). Judged here alone: a write made concurrently at another
    /// replica may meet the same condition there.
    pub fn write_if(
        &mut self,
        key: Key,
        value: Option<Value>,
        context: &CausalContext,
        condition: &Condition,
    ) -> Result<WriteResult, Wait> {
        self.write_in(None, key, value, context, condition)
    }

    /// [`Replica::write_if`] at the stored key `key`, for a client whose
    /// context is satisfied (`pruned`: see [`Learned::pruned`]); the write
    /// also depends on `created`, its table's creation.
    pub(super) fn write_stored(
        &mut self,
        key: Key,
        value: Option<Value>,
        context: &CausalContext,
        condition: &Condition,
        pruned: Option<VectorClock>,
        created: Option<Dot>,
    ) -> Result<WriteResult, Wait> {
        let current = self.store.entry(&key);
        let existed = current.is_some_and(|e| !e.is_tombstone());
        let current_dot = current.map(|e| e.dot());
        let current_etag = current_dot.as_ref().filter(|_| existed).map(etag);
        let unmet = !condition.holds(current_etag.as_deref());
        if unmet || (value.is_none() && !existed) {
            let clock = match &current_dot {
                Some(dot) => self.learn(dot),
                None => VectorClock::new(),
            };
            let outcome = if unmet {
                Outcome::Unmet
            } else {
                Outcome::NotFound
            };
            return Ok(WriteResult {
                etag: current_etag,
                outcome,
                learned: Learned { clock, pruned },
            });
        }
        let mut deps = pruned.as_ref().unwrap_or(context.clock()).clone();
        if let Some(created) = &created {
            deps.observe(created);
        }
        let is_delete = value.is_none();
        let dot = self.issue(key, value, deps);
        let outcome = match (is_delete, existed) {
            (true, _) => Outcome::Deleted,
            (false, true) => Outcome::Updated,
            (false, false) => Outcome::Created,
        };
        Ok(WriteResult {
            etag: (!is_delete).then(|| etag(&dot)),
            outcome,
            learned: Learned {
                clock: self.with_map_version(single(&dot)),
                pruned,
            },
        })
    }

    /// Sharded: `clock` with the version of the shard map held here (see
    /// [`Replica::note_map_version`]).
    pub(super) fn with_map_version(&self, mut clock: VectorClock) -> VectorClock {
        if self.map_version > 0 {
            clock.set(ReplicaId::shard_map(), self.map_version);
        }
        clock
    }

    /// Issues a write made here: stamps it with the next dot of this
    /// incarnation and a Lamport time above everything applied here (so
    /// above its causal past), applies it, and queues it for every trusted
    /// member. Returns its dot.
    pub(super) fn issue(&mut self, key: Key, value: Option<Value>, deps: VectorClock) -> Dot {
        self.issue_as(|_| key, value, deps)
    }

    /// [`Replica::issue`] at the key `key` makes of the write's dot.
    pub(super) fn issue_as(
        &mut self,
        key: impl FnOnce(&Dot) -> Key,
        value: Option<Value>,
        deps: VectorClock,
    ) -> Dot {
        let dot = self.known.increment(&self.me.id);
        let key = key(&dot);
        self.known.note_foreign(&deps);
        // A write that counts rescued writes as applied (see
        // `Replica::take_rescued`) depends on all that was applied here
        // then: a member counts them only once it holds what this replica
        // did.
        let mut deps = deps;
        let covers = std::mem::take(&mut self.to_cover);
        deps.merge(&covers.deps);
        self.lamport += 1;
        let write = Write {
            key: key.clone(),
            value,
            dot: dot.clone(),
            deps: deps.without(&self.me.id),
            lamport: self.lamport,
            covers: covers.dots,
        };
        self.store.apply(key, write.version());
        self.writes_issued += 1;
        self.progress += 1;
        // Queued even for no peer: the effect is also the record of a write
        // issued here (the simulated cluster audits by it).
        let to: Vec<SocketAddress> = self.view.trusted().cloned().collect();
        self.outbox.push(Effect::Replicate {
            to,
            write: Arc::new(write),
        });
        dot
    }

    /// Writes `versions` again as this replica's own, each whose key still
    /// holds it (one overwritten since is left alone): above everything
    /// applied here, they spread and win like new writes. Returns how many
    /// were written.
    pub(super) fn write_again(&mut self, versions: Vec<(Key, Version)>) -> usize {
        let mut written = 0;
        for (key, version) in versions {
            if self.store.get(&key).as_ref() == Some(&version) {
                let value = value_written_again(&key, &version);
                self.issue(key, value, VectorClock::new());
                written += 1;
            }
        }
        written
    }

    /// A client waits for `wanted`: ask every live peer that may have the
    /// missing writes for them (at most one pull per peer at a time). When
    /// no member can have them, the seeds are asked to join: a replica
    /// holding them may be one this replica forgot.
    pub fn catch_up(&mut self, wanted: &VectorClock, now: Millis) {
        let missing = self.known.missing(wanted);
        if missing.is_empty() {
            return;
        }
        // Peers known to hold some of it first; if none is known to, ask all.
        let holders: Vec<SocketAddress> = self
            .view
            .peers()
            .filter(|(_, p)| {
                p.clock
                    .as_ref()
                    .is_some_and(|c| !missing.meet(c).is_empty())
            })
            .map(|(a, _)| a.clone())
            .collect();
        let targets: Vec<SocketAddress> = if holders.is_empty() {
            self.probe_seeds(now, true);
            self.view.peers().map(|(a, _)| a.clone()).collect()
        } else {
            holders
        };
        for peer in targets {
            self.pull_from(&peer, now);
        }
    }

    /// The replica stops taking writes (it is shutting down); reads go on.
    pub fn stop_taking_writes(&mut self) {
        self.draining = true;
    }

    /// How far the hand-over of this incarnation's writes has got.
    pub fn handover(&self) -> Handover {
        let written = self.known.clock().get(&self.me.id);
        let mut handover = Handover {
            written,
            held_by: Vec::new(),
            lacking: Vec::new(),
            best: 0,
        };
        for (address, peer) in self.view.peers() {
            let have = peer.applied(&self.me.id);
            handover.best = handover.best.max(have);
            match have >= written {
                true => handover.held_by.push(address.clone()),
                false => handover.lacking.push(address.clone()),
            }
        }
        handover
    }

    /// How many replicas, this one included, are known to have applied
    /// this replica's write number `n` (by the clocks they last reported),
    /// and how many replicas count: the members and the suspects (a member
    /// that merely stopped answering still counts, so `all` never shrinks
    /// to whoever is up).
    pub fn holders(&self, n: u64) -> (usize, usize) {
        let (mut held, mut members) = (1, 1);
        for (_, peer) in self.view.peers().chain(self.view.suspects()) {
            members += 1;
            held += (peer.applied(&self.me.id) >= n) as usize;
        }
        (held, members)
    }

    /// Asks every member for its applied clock now (heartbeats out of
    /// turn), so that the hand-over learns soon what each holds.
    pub fn ask_clocks(&mut self, now: Millis) {
        let mut targets = Vec::new();
        for (address, peer) in self.view.peers_mut() {
            if !peer.heartbeat_in_flight {
                peer.heartbeat_in_flight = true;
                peer.last_heartbeat = Some(now);
                targets.push(address.clone());
            }
        }
        for address in targets {
            let request = self.heartbeat_for(&address);
            self.send(&address, request);
        }
    }
}
