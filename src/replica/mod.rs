//! The replication protocol as a state machine: inputs in, effects out.
//!
//! A [`Replica`] owns one replica's state: its store, the writes it has
//! applied (a vector clock), its delivery buffer and its view. It never
//! does I/O and never reads the time. Inputs are client operations,
//! requests from peers, replies to its own requests, and `tick(now)`;
//! outputs are [`Effect`]s (queue a write for a peer, send a request, drop a
//! queue) collected in an outbox that the caller drains. The HTTP server
//! drives it with real sockets and a real clock; the simulated cluster in
//! the tests drives it with a deterministic, adversarial network.
//!
//! # How a write travels
//!
//! A client write is applied locally, acknowledged, and queued once per
//! member of the view ([`Effect::Replicate`]). Receivers hold it in their
//! [`DeliveryBuffer`] until it is deliverable (see [`crate::causal`] for
//! the rule and a worked example), then apply it through the store's
//! conflict rule. Queues retry until the peer acknowledges or leaves the
//! view, so a write is never dropped while its target is a member.
//!
//! Three mechanisms repair what queues cannot:
//!
//! - **Pull on demand.** A client request whose context names writes not
//!   applied here waits, and [`Replica::catch_up`] asks every live peer for
//!   what this replica lacks. Writes stuck in the buffer trigger the same.
//! - **Anti-entropy.** Heartbeats carry each replica's applied clock. When
//!   a peer reports writes this replica still lacks a moment later, it
//!   pulls them ([`Request::Pull`]): the peer sends every version made by a
//!   write this replica has not counted, plus its clock, and the merge
//!   brings this replica to (at least) the peer's state. This is how a
//!   replica that was cut off, or missed a queue that was dropped, catches
//!   up, in both directions.
//! - **State transfer.** A starting replica announces itself to every
//!   address of `VIEW` ([`Request::Join`]) and copies the full state of the
//!   first member that answers ([`Request::Snapshot`]).
//!
//! # Membership
//!
//! Heartbeats go to every member; a member silent for the failure timeout
//! becomes a suspect and leaves the view, its queue dropped. Suspects keep
//! being probed and the first reply readmits them; any request from an
//! unknown replica adds it. An operator's view change is relayed to every
//! member, in order and retried until each acknowledges it (a change lost
//! on the way would leave the views different for good); changes are
//! numbered, so one sent again is applied once. An address removed that way
//! is refused until it joins again.
//!
//! # Implementation caveats
//!
//! - State lives in memory. A restarted replica is a new incarnation with
//!   an empty store that copies the state of a live member.
//! - Tombstones are forgotten only once every member and suspect reported
//!   having applied the delete and this replica has applied everything
//!   they had reported by then (so no concurrent write is still on its
//!   way). A replica suspected down forever blocks that, by design.
//! - Views are decided locally: under a partial partition two replicas may
//!   disagree about a third until the links heal.
//! - Operator changes are ordered per replica that made them, not across
//!   replicas: if one replica removes an address and another adds it back
//!   while the removal is still on its way to a third (cut off or down),
//!   the third may apply them in the wrong order and keep its view apart.
//!   Lamport-stamped changes, copied to joining replicas, would close this.

mod membership;
pub mod message;
#[cfg(test)]
mod sim;
mod sync;
#[cfg(test)]
mod tests;
pub mod view;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use tracing::{debug, info, warn};

use crate::address::SocketAddress;
use crate::causal::{CausalContext, DeliveryBuffer, ReplicaId, VectorClock};
use crate::store::{Key, Store, Value};

pub use message::{Kind, Member, Reply, Request, StateTransfer, Versions, ViewChange, Write};
pub use view::{Heard, View};

/// Milliseconds on the driver's monotonic clock.
pub type Millis = u64;

/// The protocol's timing, in milliseconds of the driver's clock.
#[derive(Clone, Debug)]
pub struct Timing {
    /// How often each member is sent a heartbeat.
    pub heartbeat_interval: Millis,
    /// How long a member may stay silent before it leaves the view.
    pub failure_timeout: Millis,
    /// How often replicas suspected down are probed.
    pub probe_interval: Millis,
    /// How long writes a peer reported may stay missing before pulling them.
    pub pull_after: Millis,
    /// The least time between two pulls from one peer.
    pub pull_interval: Millis,
    /// How often a starting replica repeats its join announcements.
    pub join_retry: Millis,
    /// How long a starting replica waits for any member before it starts
    /// alone with an empty state.
    pub startup_grace: Millis,
    /// How often tombstones are considered for forgetting.
    pub gc_interval: Millis,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            heartbeat_interval: 250,
            failure_timeout: 3000,
            probe_interval: 1000,
            pull_after: 500,
            pull_interval: 200,
            join_retry: 500,
            startup_grace: 3000,
            gc_interval: 5000,
        }
    }
}

/// How long writes stuck in the delivery buffer wait between two rounds of
/// pulls for their prerequisites.
const STUCK_BUFFER_RETRY: Millis = 1000;

/// How many DNS answers in a row must omit a member (with `VIEW_DNS`)
/// before it leaves the view.
pub const DNS_MISSES_TO_LEAVE: u32 = 3;

/// Something the driver must do on the replica's behalf.
#[derive(Clone, Debug)]
pub enum Effect {
    /// Append `write` to the ordered replication queue of each peer of `to`.
    Replicate {
        /// The peers.
        to: Vec<SocketAddress>,
        /// The write.
        write: Arc<Write>,
    },
    /// Send `request` to `to` and hand the reply (or the failure) back
    /// through [`Replica::on_reply`].
    Send {
        /// The peer.
        to: SocketAddress,
        /// The request.
        request: Request,
    },
    /// Discard the replication queue of a peer that left the view.
    DropQueue {
        /// The peer.
        peer: SocketAddress,
    },
}

/// The result of a client read.
#[derive(Clone, Debug, PartialEq)]
pub struct ReadResult {
    /// The value, or `None` when the key is absent or deleted.
    pub value: Option<Value>,
    /// What reading taught the client (the dot of the version read).
    pub learned: VectorClock,
}

/// The result of a client write.
#[derive(Clone, Debug, PartialEq)]
pub enum WriteResult {
    /// A put to a key that was absent.
    Created {
        /// The write's own dot.
        learned: VectorClock,
    },
    /// A put to a key that existed.
    Updated {
        /// The write's own dot.
        learned: VectorClock,
    },
    /// A delete of a key that existed.
    Deleted {
        /// The delete's own dot.
        learned: VectorClock,
    },
    /// A delete of a key that was absent: nothing was written.
    NotFound {
        /// The dot of the tombstone found, if any.
        learned: VectorClock,
    },
}

/// Progress of the state transfer a replica makes when it starts.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Sync {
    /// Announcing itself and waiting for a member's snapshot.
    Joining {
        started: Millis,
        last_attempt: Option<Millis>,
        joins_in_flight: usize,
        snapshot_in_flight: bool,
    },
    /// Holds (at least) the state of a member it copied, or started alone.
    Synced,
}

/// Counters describing a replica, for health and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Live keys.
    pub keys: usize,
    /// Tombstones held.
    pub tombstones: usize,
    /// Writes waiting in the delivery buffer.
    pub buffered: usize,
    /// Members, this replica included.
    pub view_size: usize,
    /// Whether the start-up state transfer is done.
    pub synced: bool,
    /// Writes issued here since start.
    pub writes_issued: u64,
    /// Writes from elsewhere applied here since start.
    pub writes_applied: u64,
}

/// Operator view changes (numbered) relayed to one member and not
/// acknowledged yet, oldest first. They go one at a time, so that they
/// apply in order.
#[derive(Debug, Default)]
struct Relays {
    changes: VecDeque<(u64, ViewChange)>,
    in_flight: bool,
    retry_at: Millis,
}

/// One replica's protocol state.
#[derive(Debug)]
pub struct Replica {
    me: Member,
    timing: Timing,
    applied: VectorClock,
    lamport: u64,
    store: Store,
    buffer: DeliveryBuffer<Write>,
    buffer_stuck_since: Option<Millis>,
    next_stuck_pull: Millis,
    view: View,
    sync: Sync,
    outbox: Vec<Effect>,
    relays: BTreeMap<SocketAddress, Relays>,
    dns_misses: BTreeMap<SocketAddress, u32>,
    view_changes: u64,
    relayed: BTreeMap<ReplicaId, u64>,
    progress: u64,
    gc_barrier: Option<(VectorClock, VectorClock)>,
    last_gc: Millis,
    writes_issued: u64,
    writes_applied: u64,
}

impl Replica {
    /// A new incarnation of the replica at `address`, whose `VIEW` is
    /// `initial`, drawing its identity from `incarnation`.
    pub fn new(
        address: SocketAddress,
        incarnation: &str,
        initial: &[SocketAddress],
        timing: Timing,
        now: Millis,
    ) -> Self {
        let me = Member {
            id: ReplicaId::new(address.as_str(), incarnation),
            address: address.clone(),
        };
        let view = View::new(address, initial, now);
        let sync = Sync::Joining {
            started: now,
            last_attempt: None,
            joins_in_flight: 0,
            snapshot_in_flight: false,
        };
        Replica {
            me,
            timing,
            applied: VectorClock::new(),
            lamport: 0,
            store: Store::new(),
            buffer: DeliveryBuffer::new(),
            buffer_stuck_since: None,
            next_stuck_pull: 0,
            view,
            sync,
            outbox: Vec::new(),
            relays: BTreeMap::new(),
            dns_misses: BTreeMap::new(),
            view_changes: 0,
            relayed: BTreeMap::new(),
            progress: 0,
            gc_barrier: None,
            last_gc: now,
            writes_issued: 0,
            writes_applied: 0,
        }
    }

    /// This incarnation.
    pub fn me(&self) -> &Member {
        &self.me
    }

    /// The writes applied here.
    pub fn applied(&self) -> &VectorClock {
        &self.applied
    }

    /// The store (read-only).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The view.
    pub fn view(&self) -> &View {
        &self.view
    }

    /// Whether the start-up state transfer is done.
    pub fn is_synced(&self) -> bool {
        self.sync == Sync::Synced
    }

    /// A number that grows whenever writes are applied; waiters compare it.
    pub fn progress(&self) -> u64 {
        self.progress
    }

    /// Counters for health and metrics.
    pub fn stats(&self) -> Stats {
        Stats {
            keys: self.store.len(),
            tombstones: self.store.tombstones(),
            buffered: self.buffer.len(),
            view_size: self.view.len(),
            synced: self.is_synced(),
            writes_issued: self.writes_issued,
            writes_applied: self.writes_applied,
        }
    }

    /// Takes the effects produced so far.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.outbox)
    }

    // ----- client operations ---------------------------------------------

    /// The writes `context` names that are not applied here.
    pub fn missing(&self, context: &CausalContext) -> VectorClock {
        context.clock().missing_from(&self.applied)
    }

    /// Reads `key` for a client whose context is satisfied here; otherwise
    /// returns the missing writes.
    pub fn read(&self, key: &Key, context: &CausalContext) -> Result<ReadResult, VectorClock> {
        let missing = self.missing(context);
        if !missing.is_empty() {
            return Err(missing);
        }
        Ok(match self.store.entry(key) {
            Some(entry) => ReadResult {
                value: entry.value(),
                learned: single(&entry.dot()),
            },
            None => ReadResult {
                value: None,
                learned: VectorClock::new(),
            },
        })
    }

    /// Puts `value` (or deletes, for `None`) at `key` for a client whose
    /// context is satisfied here; otherwise returns the missing writes.
    pub fn write(
        &mut self,
        key: Key,
        value: Option<Value>,
        context: &CausalContext,
    ) -> Result<WriteResult, VectorClock> {
        let missing = self.missing(context);
        if !missing.is_empty() {
            return Err(missing);
        }
        let current = self.store.entry(&key);
        let existed = current.is_some_and(|e| !e.is_tombstone());
        if value.is_none() && !existed {
            let learned = current.map(|e| single(&e.dot())).unwrap_or_default();
            return Ok(WriteResult::NotFound { learned });
        }
        // Stamp the write: the next dot of this incarnation, and a Lamport
        // time above everything applied here (so above its causal past).
        let dot = self.applied.increment(&self.me.id);
        self.lamport += 1;
        let write = Write {
            key: key.clone(),
            value,
            dot: dot.clone(),
            deps: context.clock().clone().without(&self.me.id),
            lamport: self.lamport,
        };
        let is_delete = write.value.is_none();
        self.store.apply(key, write.version());
        self.writes_issued += 1;
        self.progress += 1;
        let to: Vec<SocketAddress> = self.view.peers().map(|(a, _)| a.clone()).collect();
        if !to.is_empty() {
            self.outbox.push(Effect::Replicate {
                to,
                write: Arc::new(write),
            });
        }
        let learned = single(&dot);
        Ok(match (is_delete, existed) {
            (true, _) => WriteResult::Deleted { learned },
            (false, true) => WriteResult::Updated { learned },
            (false, false) => WriteResult::Created { learned },
        })
    }

    /// A client waits for `wanted`: ask every live peer that may have the
    /// missing writes for them (at most one pull per peer at a time).
    pub fn catch_up(&mut self, wanted: &VectorClock, now: Millis) {
        let missing = wanted.missing_from(&self.applied);
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
            self.view.peers().map(|(a, _)| a.clone()).collect()
        } else {
            holders
        };
        for peer in targets {
            self.pull_from(&peer, now);
        }
    }

    // ----- requests from peers -------------------------------------------

    /// Handles a request from a peer and returns the reply.
    pub fn handle(&mut self, request: Request, now: Millis) -> Reply {
        let from = request.from().clone();
        if let Request::Join { .. } = &request {
            // A join is how an evicted address comes back.
            self.view.pardon(&from);
        }
        if self.hear(&from, now) == Heard::Evicted && !matches!(request, Request::Snapshot { .. }) {
            return Reply::Refused {
                from: self.me.clone(),
                reason: "removed from the view; join again".into(),
            };
        }
        match request {
            Request::Replicate { writes, .. } => {
                self.receive(writes, now);
                Reply::Ack {
                    from: self.me.clone(),
                }
            }
            Request::Heartbeat { clock, .. } => {
                self.note_clock(&from.address, clock, now);
                Reply::Heartbeat {
                    from: self.me.clone(),
                    clock: self.applied.clone(),
                }
            }
            Request::Pull { clock, .. } => Reply::Pull {
                from: self.me.clone(),
                state: self.delta_state(&clock),
            },
            Request::Join { .. } => Reply::Join {
                from: self.me.clone(),
                view: self.view.addresses(),
            },
            Request::Snapshot { .. } => Reply::Snapshot {
                from: self.me.clone(),
                state: self.snapshot_state(),
            },
            Request::ViewChange { change, seq, .. } => {
                // A change sent again after a lost acknowledgement may come
                // after later ones: apply each change once.
                let last = self.relayed.entry(from.id.clone()).or_default();
                if seq == 0 || seq > *last {
                    *last = seq.max(*last);
                    self.apply_view_change(change, now);
                }
                Reply::Ack {
                    from: self.me.clone(),
                }
            }
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
                return;
            }
        };
        if let Reply::Refused { reason, .. } = &reply {
            debug!(peer = %to, %reason, "peer refused this replica");
            return;
        }
        if self.hear(reply.from(), now) == Heard::Evicted {
            return;
        }
        match reply {
            Reply::Ack { .. } | Reply::Refused { .. } => {}
            Reply::Heartbeat { from, clock } => self.note_clock(&from.address, clock, now),
            Reply::Pull { state, .. } => self.merge_delta(state, now),
            Reply::Join { from, view } => self.on_join_reply(&from, view, now),
            Reply::Snapshot { from, state } => self.on_snapshot(&from, state, now),
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
            Kind::Join => {
                if let Sync::Joining {
                    joins_in_flight, ..
                } = &mut self.sync
                {
                    *joins_in_flight = joins_in_flight.saturating_sub(1);
                }
            }
            Kind::Snapshot => {
                if let Sync::Joining {
                    snapshot_in_flight, ..
                } = &mut self.sync
                {
                    *snapshot_in_flight = false;
                }
            }
            Kind::Replicate | Kind::ViewChange => {}
        }
    }

    /// Records a sign of life from `member`.
    fn hear(&mut self, member: &Member, now: Millis) -> Heard {
        let heard = self.view.hear_from(member, now);
        match heard {
            Heard::Readmitted => {
                info!(peer = %member.address, "replica is back; readmitted to the view")
            }
            Heard::Added => {
                info!(peer = %member.address, id = %member.id, "replica joined the view")
            }
            _ => {}
        }
        heard
    }

    /// Records the applied clock `peer` reported, to pull what it has and
    /// this replica still lacks a moment later.
    fn note_clock(&mut self, peer: &SocketAddress, clock: VectorClock, now: Millis) {
        let applied = &self.applied;
        let Some(state) = self.view.peer_mut(peer) else {
            return;
        };
        let resolved = state
            .lag
            .as_ref()
            .is_none_or(|(_, target)| target.covered_by(applied));
        if resolved {
            state.lag = (!clock.covered_by(applied)).then(|| (now, clock.clone()));
        }
        state.clock = Some(clock);
    }

    /// Buffers writes from a peer and applies every write that becomes
    /// deliverable.
    fn receive(&mut self, writes: Vec<Write>, now: Millis) {
        for write in writes {
            self.buffer.insert(write, &self.applied);
        }
        self.deliver(now);
    }

    /// Applies buffered writes in causal order, as far as possible.
    fn deliver(&mut self, now: Millis) {
        let ready = self.buffer.drain_deliverable(&mut self.applied);
        if !ready.is_empty() {
            self.progress += 1;
            self.writes_applied += ready.len() as u64;
        }
        for write in ready {
            debug!(key = %write.key, dot = %write.dot, "applied write");
            self.lamport = self.lamport.max(write.lamport);
            let version = write.version();
            self.store.apply(write.key, version);
        }
        if self.buffer.is_empty() {
            self.buffer_stuck_since = None;
        } else if self.buffer_stuck_since.is_none() {
            self.buffer_stuck_since = Some(now);
        }
    }

    fn send(&mut self, to: &SocketAddress, request: Request) {
        self.outbox.push(Effect::Send {
            to: to.clone(),
            request,
        });
    }

    fn pull_from(&mut self, peer: &SocketAddress, now: Millis) {
        // A joining replica waits for its snapshot: a pull from its empty
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
        if state.pull_in_flight || recent {
            return;
        }
        state.pull_in_flight = true;
        state.last_pull = Some(now);
        let request = Request::Pull {
            from: self.me.clone(),
            clock: self.applied.clone(),
        };
        self.send(peer, request);
    }

    // ----- time ----------------------------------------------------------

    /// Advances time: joins, failure detection, heartbeats, probes,
    /// retries of relayed view changes, anti-entropy pulls and tombstone
    /// collection.
    pub fn tick(&mut self, now: Millis) {
        self.maybe_join(now);

        for peer in self.view.expire(now, self.timing.failure_timeout) {
            warn!(%peer, "replica stopped answering; removed from the view");
            self.outbox.push(Effect::DropQueue { peer });
        }

        let heartbeat = Request::Heartbeat {
            from: self.me.clone(),
            clock: self.applied.clone(),
        };
        let (interval, probe) = (self.timing.heartbeat_interval, self.timing.probe_interval);
        let mut targets = Vec::new();
        for (address, peer) in self.view.peers_mut() {
            if due(peer, now, interval) {
                targets.push(address.clone());
            }
        }
        for (address, peer) in self.view.suspects_mut() {
            if due(peer, now, probe) {
                targets.push(address.clone());
            }
        }
        for address in targets {
            self.send(&address, heartbeat.clone());
        }

        let unacknowledged: Vec<SocketAddress> = self.relays.keys().cloned().collect();
        for address in unacknowledged {
            self.send_relay(&address, Some(now));
        }

        // Pull what peers reported having a while ago and is still missing.
        let mut lagging = Vec::new();
        for (address, peer) in self.view.peers() {
            if let Some((since, target)) = &peer.lag {
                if now.saturating_sub(*since) >= self.timing.pull_after
                    && !target.covered_by(&self.applied)
                {
                    lagging.push(address.clone());
                }
            }
        }
        for address in lagging {
            self.pull_from(&address, now);
        }

        // Writes stuck in the buffer: their prerequisites are somewhere.
        // Ask again at most every few pull intervals: prerequisites lost
        // with a crashed replica may never come.
        if let Some(since) = self.buffer_stuck_since {
            if now.saturating_sub(since) >= self.timing.pull_after && now >= self.next_stuck_pull {
                self.next_stuck_pull = now + STUCK_BUFFER_RETRY;
                let wanted = self.buffer.wanted(&self.applied);
                self.catch_up(&wanted, now);
            }
        }

        if now.saturating_sub(self.last_gc) >= self.timing.gc_interval {
            self.last_gc = now;
            self.collect_tombstones();
        }
    }

    /// Forgets tombstones that can no longer be resurrected: see the
    /// module's caveats for the rule.
    fn collect_tombstones(&mut self) {
        if let Some((stable, needed)) = self.gc_barrier.take() {
            if needed.covered_by(&self.applied) {
                let forgotten = self.store.forget_tombstones(&stable);
                if forgotten > 0 {
                    debug!(forgotten, "forgot stable tombstones");
                }
            }
        }
        if self.store.tombstones() == 0 {
            return;
        }
        if let Some(clocks) = self.view.reported_clocks() {
            let mut stable = self.applied.clone();
            let mut needed = self.applied.clone();
            for clock in clocks {
                stable = stable.meet(clock);
                needed.merge(clock);
            }
            self.gc_barrier = Some((stable, needed));
        }
    }
}

fn due(peer: &mut view::Peer, now: Millis, interval: Millis) -> bool {
    let due = !peer.heartbeat_in_flight
        && peer
            .last_heartbeat
            .is_none_or(|t| now.saturating_sub(t) >= interval);
    if due {
        peer.heartbeat_in_flight = true;
        peer.last_heartbeat = Some(now);
    }
    due
}

fn single(dot: &crate::causal::Dot) -> VectorClock {
    let mut clock = VectorClock::new();
    clock.observe(dot);
    clock
}
