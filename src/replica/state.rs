//! What one replica holds: every field of [`Replica`], the bookkeeping of
//! its state copy, collection rounds and relayed view changes, and the
//! read-only accessors. What it does with them lives in the files named
//! after each concern (see the module list in [`super`]).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::address::SocketAddress;
use crate::causal::{DeliveryBuffer, Knowledge, ReplicaId, VectorClock};
use crate::store::{Key, Marks, Store, Version};

use super::message::{Decision, Member, Request, Start, Write};
use super::outputs::{Effect, Stats};
use super::timing::{Millis, Timing};
use super::view::View;

/// Progress of the state transfer a replica makes when it starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Sync {
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

/// Operator view changes relayed to one member and not acknowledged yet,
/// oldest first. They go one at a time.
#[derive(Debug, Default)]
pub(super) struct Relays {
    pub(super) changes: VecDeque<Decision>,
    pub(super) in_flight: bool,
    pub(super) retry_at: Millis,
}

/// One replica's protocol state.
#[derive(Debug)]
pub struct Replica {
    pub(super) me: Member,
    pub(super) timing: Timing,
    pub(super) known: Knowledge,
    pub(super) lamport: u64,
    pub(super) store: Store,
    pub(super) buffer: DeliveryBuffer<Write>,
    pub(super) buffer_stuck_since: Option<Millis>,
    pub(super) next_stuck_pull: Millis,
    pub(super) view: View,
    /// The addresses of `VIEW` (or the last `VIEW_DNS` answer), this
    /// replica's own left out.
    pub(super) seeds: Vec<SocketAddress>,
    /// When the seeds were last sent joins.
    pub(super) last_seed_probe: Millis,
    pub(super) sync: Sync,
    pub(super) transfer: Option<Transfer>,
    /// When a join was last sent to each peer that asked for one.
    pub(super) rejoined: BTreeMap<SocketAddress, Millis>,
    /// Incarnations peers retired, not retired here yet (with whether they
    /// ended): gone, whatever this replica's view says.
    pub(super) told_gone: BTreeMap<ReplicaId, bool>,
    /// The newest delete of each writer whose tombstone was forgotten here
    /// or by a replica whose state this one copied.
    pub(super) collected: VectorClock,
    /// The largest Lamport time of those deletes.
    pub(super) collected_lamport: u64,
    pub(super) gc: Gc,
    pub(super) draining: bool,
    /// Versions a former incarnation of this replica wrote, kept on a disk
    /// it could not trust: written again once this one is ready (see
    /// [`Replica::rescue_when_ready`]).
    pub(super) to_rescue: super::rescued::Rescued,
    /// Writes rescued here, that the next write issued carries the count
    /// of (see [`crate::replica::Write::covers`]).
    pub(super) to_cover: super::rescued::ToCover,
    /// The keys reshards handed over deleted, with their tombstones and
    /// until when (see [`Replica::note_handed_deletes`]).
    pub(super) handed_deletes: std::collections::HashMap<Key, (Version, Millis)>,
    /// The time of the last tick.
    pub(super) last_tick: Millis,
    /// The peers that refused this replica as removed from the view (or
    /// decided its removal) and did not hear it since, with when they last
    /// did: while there is one, no client is served (see
    /// [`Replica::is_removed`]).
    pub(super) removed_by: BTreeMap<SocketAddress, Millis>,
    /// Whether the view follows a DNS name (`VIEW_DNS`).
    pub(super) dns: bool,
    pub(super) outbox: Vec<Effect>,
    pub(super) relays: BTreeMap<SocketAddress, Relays>,
    pub(super) dns_misses: BTreeMap<SocketAddress, u32>,
    /// The largest stamp of a view change known here.
    pub(super) view_stamp: u64,
    /// The last view change known of each address changed.
    pub(super) decisions: BTreeMap<SocketAddress, Decision>,
    /// A digest of `decisions`, for heartbeats.
    pub(super) decided: u64,
    pub(super) progress: u64,
    pub(super) writes_issued: u64,
    pub(super) writes_applied: u64,
    /// Sharded: the version of the shard map this node holds (0 unsharded).
    pub(super) map_version: u64,
}

#[derive(Debug)]
pub(super) struct Gc {
    pub(super) last_round: Millis,
    /// The stable clock taken last time, and what must be applied before
    /// it may be used.
    pub(super) barrier: Option<(Stable, VectorClock)>,
    /// The stable clock of the round in progress.
    pub(super) round: Option<Stable>,
}

/// A stable clock, and the members and suspects (by incarnation, when
/// known) whose clocks it was taken from.
#[derive(Debug)]
pub(super) struct Stable {
    pub(super) clock: VectorClock,
    pub(super) had_say: BTreeSet<(SocketAddress, Option<ReplicaId>)>,
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

/// A copy of another replica's state in progress.
#[derive(Debug)]
pub(super) struct Transfer {
    pub(super) from: SocketAddress,
    /// The giver's incarnation, from its first page: every page must come
    /// from the same one.
    pub(super) giver: Option<ReplicaId>,
    /// Whether clients wait until the copy is merged.
    pub(super) blocking: bool,
    /// What the copy accounts for, from its first page.
    pub(super) start: Option<Start>,
    /// The cursor of the page to ask for next; `None` once every page is in.
    pub(super) next: Option<u32>,
    /// Where the sweep of untouched slots is, once every page is in.
    pub(super) sweep: Option<u32>,
    pub(super) marks: Marks,
    /// On a running replica: the versions of writes it does not count,
    /// merged once every page is in.
    pub(super) aside: BTreeMap<Key, Version>,
    /// Values that may have met a delete the other side forgot, replayed
    /// once the copy is merged (see [`crate::store`]'s copy module).
    pub(super) replays: Vec<(Key, Version)>,
    /// Pages taken in and not merged yet (see [`Replica::merge_pages`]).
    pub(super) arrived: Vec<super::message::Versions>,
    pub(super) in_flight: bool,
    pub(super) failures: u32,
    pub(super) retry_at: Millis,
    pub(super) pages: u32,
    pub(super) keys: usize,
}

impl Transfer {
    /// Whether clients wait until the copy is merged.
    pub(super) fn blocks_clients(&self) -> bool {
        self.blocking
    }
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
        let known = Knowledge::in_group(me.id.group());
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
            known,
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
            to_rescue: Default::default(),
            to_cover: Default::default(),
            handed_deletes: Default::default(),
            last_tick: now,
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
            map_version: 0,
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
            tables: self.store.tables(),
        }
    }

    /// Takes the effects produced so far.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.outbox)
    }

    pub(super) fn send(&mut self, to: &SocketAddress, request: Request) {
        self.outbox.push(Effect::Send {
            to: to.clone(),
            request,
        });
    }
}

/// A clock counting the one write `dot`.
pub(super) fn single(dot: &crate::causal::Dot) -> VectorClock {
    let mut clock = VectorClock::new();
    clock.observe(dot);
    clock
}
