//! The replication protocol as a state machine: inputs in, effects out.
//!
//! A [`Replica`] owns one replica's state: its store, what it has applied
//! ([`Knowledge`]), its delivery buffer and its view. It never does I/O and
//! never reads the time. Inputs are client operations, requests from
//! peers, replies to its own requests, and `tick(now)`; outputs are
//! [`Effect`]s (queue a write for peers, send a request, drop a queue)
//! collected in an outbox that the caller drains. The HTTP server drives it
//! with real sockets and a real clock; the simulated cluster in the tests
//! drives it with a deterministic, adversarial network.
//!
//! # How a write travels
//!
//! A client write is applied locally, acknowledged, and queued once per
//! vetted member of the view ([`Effect::Replicate`]). Receivers hold it in
//! their [`DeliveryBuffer`] until it is deliverable (see [`crate::causal`]
//! for the rule and a worked example), then apply it through the store's
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
//!   write this replica has not counted, plus its clock. This is how a
//!   replica that was cut off, or missed a queue that was dropped, catches
//!   up, in both directions.
//! - **State transfer.** A starting replica announces itself to every
//!   address of `VIEW` ([`Request::Join`]) and copies the whole state of the
//!   first member that holds one, a page at a time (`transfer.rs`).
//!
//! # Forgetting safely
//!
//! A replica forgets things for good: tombstones once every member and
//! suspect applied the delete (`gc.rs`), replicas silent for longer than
//! the suspect timeout, and the incarnations of replicas that are gone once
//! every member applied their writes (`retire.rs`). Each is decided among
//! the replicas it knows; one it had forgotten, evicted, or never seen may
//! still hold what was forgotten (an old value whose delete was collected,
//! writes of a retired incarnation it never got). Handing it writes or
//! deltas could resurrect the value or apply a write before the
//! dependencies it no longer names. So replicas exchange writes only once
//! they have *joined* each other and each holds everything the other
//! forgot (`join.rs`); otherwise the one that lacks it copies the other's
//! state first and merges it by a rule that drops what the other deleted
//! ([`crate::store`]'s merge).
//!
//! # Membership
//!
//! Heartbeats go to every member; a member silent for the failure timeout
//! becomes a suspect and leaves the view, its queue dropped. Suspects keep
//! being probed and the first reply readmits them; a suspect silent for the
//! suspect timeout is forgotten. The addresses of `VIEW` (and of
//! `VIEW_DNS`), and those an operator added and did not remove since, are
//! seeds: one that is not known is sent a join now and then, so that
//! replicas that forgot each other across a long partition find each other
//! again. An operator's view change is relayed to every member,
//! in order and retried until each acknowledges it (a change lost on the way
//! would leave the views different for good). Changes are stamped, so one
//! sent again changes nothing and every replica agrees on the last change
//! of each address; they also travel in joins, so a replica that was away
//! learns them when it meets the others again. An address removed that way
//! is refused until it joins again; a replica refused so serves no client
//! until the replicas that refused it hear it again (its store may lack
//! what they forgot since, and its clients' contexts may no longer name
//! it).
//!
//! # Implementation caveats
//!
//! - State lives in memory. A restarted replica is a new incarnation with
//!   an empty store that copies the state of a live member.
//! - Views are decided locally: under a partial partition two replicas may
//!   disagree about a third until the links heal.
//! - A replica cut off for longer than the suspect timeout serves what it
//!   has until it meets the others again, and so does one restarted while
//!   cut off from every member (past the start-up grace it starts a store
//!   of its own). A client that crosses the partition with a context
//!   pruned of an incarnation the others retired meanwhile may read there
//!   what that incarnation overwrote. Once the replicas meet, the one that
//!   lacks what the other forgot stops answering until it has copied it.
//! - An operator's view change is acknowledged once the replica that took
//!   it applied it; if that replica dies before relaying it to any member,
//!   the change is lost.

mod client;
mod gc;
mod join;
mod membership;
pub mod message;
mod peers;
#[cfg(test)]
mod regressions;
mod retire;
#[cfg(test)]
mod sim;
#[cfg(test)]
mod sim_chaos;
#[cfg(test)]
mod sim_tests;
#[cfg(test)]
mod tests;
mod tick;
mod transfer;
pub mod view;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use crate::address::SocketAddress;
use crate::causal::{CausalContext, DeliveryBuffer, Knowledge, Metadata, ReplicaId, VectorClock};
use crate::store::{Store, Value};

pub use message::{
    Decision, Kind, Member, Page, Refusal, Reply, Request, Start, StateTransfer, Versions,
    ViewChange, Write,
};
pub use view::{Heard, View};

use gc::Gc;
use transfer::Transfer;

/// Milliseconds on the driver's monotonic clock.
pub type Millis = u64;

/// The protocol's pace: timings in milliseconds of the driver's clock, and
/// how much whole-store work is done at a time.
#[derive(Clone, Debug)]
pub struct Timing {
    /// How often each member is sent a heartbeat.
    pub heartbeat_interval: Millis,
    /// How long a member may stay silent before it leaves the view.
    pub failure_timeout: Millis,
    /// How long a replica out of the view may stay silent before it is
    /// forgotten.
    pub suspect_timeout: Millis,
    /// How often replicas suspected down are probed.
    pub probe_interval: Millis,
    /// How often seeds (the addresses of `VIEW`) that are not known are
    /// sent a join.
    pub seed_interval: Millis,
    /// How long writes a peer reported may stay missing before pulling them.
    pub pull_after: Millis,
    /// The least time between two pulls from one peer.
    pub pull_interval: Millis,
    /// How often a starting replica repeats its join announcements.
    pub join_retry: Millis,
    /// How long a starting replica waits for a member holding the state
    /// before it starts alone with an empty state.
    pub startup_grace: Millis,
    /// How often tombstones are considered for forgetting.
    pub gc_interval: Millis,
    /// Most keys in one page of a state copy.
    pub page_keys: usize,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            heartbeat_interval: 250,
            failure_timeout: 3000,
            suspect_timeout: 600_000,
            probe_interval: 1000,
            seed_interval: 5000,
            pull_after: 500,
            pull_interval: 200,
            join_retry: 500,
            startup_grace: 3000,
            gc_interval: 5000,
            page_keys: 65_536,
        }
    }
}

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
    /// The identity drawn for this incarnation is taken: draw another and
    /// hand it to [`Replica::reincarnate`].
    Reincarnate,
}

/// Why a client request cannot be served now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Writes the context names are not applied here yet.
    Missing(VectorClock),
    /// The replica holds no copy of the state yet.
    NotReady,
    /// The replica is shutting down and takes no more writes.
    ShuttingDown,
    /// A member told this replica it was removed from the view: what it
    /// holds may lack what the others have forgotten since.
    Removed,
}

/// What a client learns from an answer, and the context it should keep.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Learned {
    /// The dot of the version read or written (nothing for an absent key,
    /// or a retired incarnation's write).
    pub clock: VectorClock,
    /// The request's context without the retired incarnations it named,
    /// if it named any.
    pub pruned: Option<VectorClock>,
}

impl Learned {
    /// The `causal-metadata` to answer a request that sent `context`: its
    /// own JSON when nothing changed, else the canonical print.
    pub fn metadata<'a>(&self, context: &'a CausalContext) -> Metadata<'a> {
        match &self.pruned {
            Some(pruned) => {
                let mut merged = pruned.clone();
                merged.merge(&self.clock);
                Metadata::Clock(merged)
            }
            None => context.reply(&self.clock),
        }
    }
}

/// The result of a client read.
#[derive(Clone, Debug, PartialEq)]
pub struct ReadResult {
    /// The value, or `None` when the key is absent or deleted.
    pub value: Option<Value>,
    /// What reading taught the client.
    pub learned: Learned,
}

/// What a client write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A put to a key that was absent.
    Created,
    /// A put to a key that existed.
    Updated,
    /// A delete of a key that existed.
    Deleted,
    /// A delete of a key that was absent: nothing was written.
    NotFound,
}

/// The result of a client write.
#[derive(Clone, Debug, PartialEq)]
pub struct WriteResult {
    /// What the write did.
    pub outcome: Outcome,
    /// What it taught the client (the write's own dot; for
    /// [`Outcome::NotFound`], the tombstone's).
    pub learned: Learned,
}

/// Progress of the state transfer a replica makes when it starts.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Sync {
    /// Announcing itself and waiting for a member holding a copy.
    Joining {
        started: Millis,
        last_attempt: Option<Millis>,
        joins_in_flight: usize,
        /// Members that answered they hold no copy either.
        not_ready: BTreeSet<SocketAddress>,
        /// Whether a member holding a copy answered: then this replica
        /// never starts empty, however long copying takes.
        seen_ready: bool,
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
    /// Replicas out of the view but not forgotten yet.
    pub suspects: usize,
    /// Whether the start-up state transfer is done.
    pub synced: bool,
    /// Whether the replica serves clients (synced, not copying state it
    /// must have first, not shutting down).
    pub ready: bool,
    /// Whether it is shutting down.
    pub draining: bool,
    /// Whether a member refused it as removed from the view.
    pub removed: bool,
    /// Entries of the applied clock.
    pub clock_entries: usize,
    /// Incarnations retired.
    pub retired: usize,
    /// Writes issued here since start.
    pub writes_issued: u64,
    /// Writes from elsewhere applied here since start.
    pub writes_applied: u64,
}

/// What is left to hand over before this replica may stop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handover {
    /// Writes this incarnation acknowledged.
    pub written: u64,
    /// The members known to have applied all of them.
    pub held_by: Vec<SocketAddress>,
    /// The members not known to have applied all of them yet.
    pub lacking: Vec<SocketAddress>,
    /// The most of them any member is known to have applied.
    pub best: u64,
}

/// Operator view changes relayed to one member and not acknowledged yet,
/// oldest first. They go one at a time.
#[derive(Debug, Default)]
struct Relays {
    changes: VecDeque<Decision>,
    in_flight: bool,
    retry_at: Millis,
}

/// One replica's protocol state.
#[derive(Debug)]
pub struct Replica {
    me: Member,
    timing: Timing,
    known: Knowledge,
    lamport: u64,
    store: Store,
    buffer: DeliveryBuffer<Write>,
    buffer_stuck_since: Option<Millis>,
    next_stuck_pull: Millis,
    view: View,
    /// The addresses of `VIEW` (or the last `VIEW_DNS` answer), this
    /// replica's own left out.
    seeds: Vec<SocketAddress>,
    /// When the seeds were last sent joins.
    last_seed_probe: Millis,
    sync: Sync,
    transfer: Option<Transfer>,
    /// When a join was last sent to each peer that asked for one.
    rejoined: BTreeMap<SocketAddress, Millis>,
    /// Incarnations peers retired, not retired here yet (with whether they
    /// ended): gone, whatever this replica's view says.
    told_gone: BTreeMap<ReplicaId, bool>,
    /// The newest delete of each writer whose tombstone was forgotten here
    /// or by a replica whose state this one copied.
    collected: VectorClock,
    /// The largest Lamport time of those deletes.
    collected_lamport: u64,
    gc: Gc,
    draining: bool,
    /// The peers that refused this replica as removed from the view (or
    /// decided its removal) and did not hear it since, with when they last
    /// did: while there is one, no client is served (see
    /// [`Replica::is_removed`]).
    removed_by: BTreeMap<SocketAddress, Millis>,
    /// Whether the view follows a DNS name (`VIEW_DNS`).
    dns: bool,
    outbox: Vec<Effect>,
    relays: BTreeMap<SocketAddress, Relays>,
    dns_misses: BTreeMap<SocketAddress, u32>,
    /// The largest stamp of a view change known here.
    view_stamp: u64,
    /// The last view change known of each address changed.
    decisions: BTreeMap<SocketAddress, Decision>,
    /// A digest of `decisions`, for heartbeats.
    decided: u64,
    progress: u64,
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
        let seeds = initial.iter().filter(|a| **a != address).cloned().collect();
        let view = View::new(address, initial, now);
        let sync = Sync::Joining {
            started: now,
            last_attempt: None,
            joins_in_flight: 0,
            not_ready: BTreeSet::new(),
            seen_ready: false,
        };
        Replica {
            me,
            gc: Gc::new(now),
            last_seed_probe: now,
            timing,
            known: Knowledge::new(),
            lamport: 0,
            store: Store::new(),
            buffer: DeliveryBuffer::new(),
            buffer_stuck_since: None,
            next_stuck_pull: 0,
            view,
            seeds,
            sync,
            transfer: None,
            rejoined: BTreeMap::new(),
            told_gone: BTreeMap::new(),
            collected: VectorClock::new(),
            collected_lamport: 0,
            draining: false,
            removed_by: BTreeMap::new(),
            dns: false,
            outbox: Vec::new(),
            relays: BTreeMap::new(),
            dns_misses: BTreeMap::new(),
            view_stamp: 0,
            decisions: BTreeMap::new(),
            decided: 0,
            progress: 0,
            writes_issued: 0,
            writes_applied: 0,
        }
    }

    /// This incarnation.
    pub fn me(&self) -> &Member {
        &self.me
    }

    /// What is applied here.
    pub fn known(&self) -> &Knowledge {
        &self.known
    }

    /// The applied clock (retired incarnations left out).
    pub fn applied(&self) -> &VectorClock {
        self.known.clock()
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

    /// Whether clients are served: synced, not copying a state it must
    /// hold first, and not removed from the view.
    pub fn is_ready(&self) -> bool {
        self.is_synced()
            && !self.is_removed()
            && !self.transfer.as_ref().is_some_and(Transfer::blocks_clients)
    }

    /// Whether a replica removed this one from the view and has not heard
    /// it since (nor was it forgotten or removed here since). Others may
    /// have retired writes this replica never saw and pruned them from
    /// their clients' contexts: it cannot tell such a context from one that
    /// names nothing, so it serves no client until it is heard again (and
    /// copies what it lacks).
    pub fn is_removed(&self) -> bool {
        !self.removed_by.is_empty()
    }

    /// Whether a state copy is in progress.
    pub fn is_copying(&self) -> bool {
        self.transfer.is_some()
    }

    /// A number that grows whenever writes are applied; waiters compare it.
    pub fn progress(&self) -> u64 {
        self.progress
    }

    /// The addresses of replicas out of the view but not forgotten yet.
    pub fn suspects(&self) -> Vec<SocketAddress> {
        self.view.suspects().map(|(a, _)| a.clone()).collect()
    }

    /// Counters for health and metrics.
    pub fn stats(&self) -> Stats {
        Stats {
            keys: self.store.len(),
            tombstones: self.store.tombstones(),
            buffered: self.buffer.len(),
            view_size: self.view.len(),
            suspects: self.view.suspects().count(),
            synced: self.is_synced(),
            ready: self.is_ready() && !self.draining,
            draining: self.draining,
            removed: self.is_removed(),
            clock_entries: self.known.clock().len(),
            retired: self.known.retired_len(),
            writes_issued: self.writes_issued,
            writes_applied: self.writes_applied,
        }
    }

    /// Takes the effects produced so far.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.outbox)
    }

    fn send(&mut self, to: &SocketAddress, request: Request) {
        self.outbox.push(Effect::Send {
            to: to.clone(),
            request,
        });
    }

    /// A join announcing this replica and what it knows.
    fn join_request(&self) -> Request {
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

/// A clock counting the one write `dot`.
fn single(dot: &crate::causal::Dot) -> VectorClock {
    let mut clock = VectorClock::new();
    clock.observe(dot);
    clock
}
