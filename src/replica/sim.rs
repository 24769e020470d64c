//! A deterministic simulated cluster: the protocol under an adversarial
//! network, checked after every input.
//!
//! [`Sim`] drives N [`Replica`] state machines (`10.0.0.1:8085`, ...) with a
//! simulated clock (milliseconds, advanced by [`STEP`], every live replica
//! ticked each step) and a network whose every choice comes from one seeded
//! PRNG, so a failing seed (named by [`for_seeds`]) replays exactly. It
//! models:
//!
//! - **One-shot requests** ([`Effect::Send`]): each arrives after a random
//!   latency (so in any order), sometimes seconds late, sometimes twice (the
//!   copy's reply is discarded). A request or reply that is dropped, crosses
//!   a partition or meets a crashed replica makes the sender see
//!   `on_reply(.., Err(..))` after a timeout.
//! - **Replication queues** ([`Effect::Replicate`]) as `transport.rs` keeps
//!   them: one ordered queue per (sender, peer) with one batch (a prefix of
//!   random length) in flight, popped only on an `Ack`, else retried after
//!   an exponential backoff, so a lost ack means a duplicate.
//!   [`Effect::DropQueue`] discards a queue; its batch's reply is ignored.
//! - **Partitions** into groups (cut both ways) and heal; **crashes**, which
//!   lose a replica's state, queues and pending replies; **restarts** as a
//!   new incarnation at the same address.
//! - **Client sessions** that hop between replicas, pass back the
//!   `causal-metadata` JSON of their last reply, and, when a replica lacks
//!   their context, call `catch_up` and retry as the network runs (after
//!   10 s they give up, like the 503, and start afresh).
//!
//! After every input to a replica the harness audits it: what it has
//! applied (its clock and retired incarnations) counts only issued writes,
//! each with all its dependencies; its store holds, for each key, an issued
//! version at least as new as the winner among the writes applied (a copy
//! in pages may bring newer ones early; an older tombstone may stand where
//! a newer one was forgotten), and never loses a live winner (a tombstone
//! may be forgotten). While a copy is being merged the store is
//! not audited. Every client read must return a version no older, in the
//! key's order, than one its session wrote or read before (read-your-
//! writes, monotonic reads), and no deleted value its session saw deleted.
//! [`Sim::settle`] heals, restarts and runs until every replica holds the
//! same store, knowledge and view (a write that waits for one lost in a
//! crash stays buffered, as it must), then checks that every write of an
//! incarnation that never crashed is applied everywhere.
//!
//! A failing test prints the last steps of the simulation, each replica's
//! state and the command that replays its seed (`sim/trace.rs`).
//!
//! The network and the replication queues live in `sim/net.rs`, the
//! invariants in `sim/audit.rs`, the clients in `sim/client.rs`, the
//! scripted scenarios in `sim/script.rs`, the random faults in
//! `sim_chaos.rs`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use serde_json::Value as Json;

use super::{single, Effect, Kind, Millis, Outcome, Replica, Reply, Request, Timing, Wait, Write};
use crate::address::SocketAddress;
use crate::causal::{CausalContext, Dot, ReplicaId, VectorClock};
use crate::store::{Key, Value, Version};

mod audit;
mod client;
mod net;
mod script;
mod trace;

pub(super) use client::{Logged, Op, Session};
pub(super) use trace::trace;
use trace::{trace_at, Event, Trace};

/// Simulated time between two steps.
pub(super) const STEP: Millis = 10;
/// How long a client waits for its context before giving up (the 503).
const CLIENT_WAIT: Millis = 10_000;

/// The one generator behind every choice of a simulation: the same seed
/// gives the same run (within one build: `SmallRng` differs between 32-
/// and 64-bit targets).
pub(super) struct Rng(SmallRng);

impl Default for Rng {
    fn default() -> Self {
        Rng::seeded(0)
    }
}

impl Rng {
    pub(super) fn seeded(seed: u64) -> Rng {
        Rng(SmallRng::seed_from_u64(seed))
    }
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.0.random_range(0..n.max(1))
    }
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
    pub(super) fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
    pub(super) fn shuffle<T>(&mut self, items: &mut [T]) {
        items.shuffle(&mut self.0);
    }
}

/// How the network misbehaves: chances per mille per message to drop and
/// to duplicate it and to make it 0.5–3 s late, and the usual latency in ms.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Faults(pub u64, pub u64, pub u64, pub Millis);

pub(super) const CALM: Faults = Faults(0, 0, 0, 30);
pub(super) const LOSSY: Faults = Faults(50, 100, 0, 100);
pub(super) const ROUGH: Faults = Faults(100, 150, 50, 200);

/// The pace of simulated replicas: the defaults, but replicas are
/// forgotten after 8 s of silence, and copies come in pages of 8 keys.
pub(super) fn sim_timing() -> Timing {
    Timing {
        suspect_timeout: 8_000,
        gc_interval: 2_000,
        page_keys: 8,
        ..Timing::default()
    }
}

/// One replication queue of the transport.
#[derive(Default)]
struct Queue {
    writes: VecDeque<Arc<Write>>,
    generation: u64,
    in_flight: bool,
    retry_at: Millis,
    backoff: Millis,
}

/// A running incarnation, and what its last audit established.
pub(super) struct Node {
    pub replica: Replica,
    epoch: u64,
    queues: BTreeMap<SocketAddress, Queue>,
    signature: (u64, usize, usize),
    audited: VectorClock,
    winners: BTreeMap<Key, Version>,
    /// View size, suspects, readiness and copying, as last traced.
    shown: (usize, usize, bool, bool),
}

/// A replication batch: its queue's generation and how many writes it holds.
type Batch = Option<(u64, usize)>;

/// What a message in flight concerns: replica `node` (incarnation `epoch`)
/// sent `peer` a request of `kind`, maybe a batch.
#[derive(Clone)]
struct Head {
    node: usize,
    epoch: u64,
    peer: SocketAddress,
    kind: Kind,
    batch: Batch,
}

enum Body {
    /// The request; `true` for a duplicate whose reply nobody waits for.
    Request(Request, bool),
    /// The answer, or the failure to get one, on its way back to `node`.
    Reply(Result<Reply, String>),
}

#[derive(Default)]
pub(super) struct Sim {
    pub rng: Rng,
    pub now: Millis,
    pub faults: Faults,
    pub timing: Timing,
    pub addrs: Vec<SocketAddress>,
    pub nodes: Vec<Option<Node>>,
    pub group: Vec<u64>,
    /// Messages in flight, by arrival time (and a tie-breaker).
    net: BTreeMap<(Millis, u64), (Head, Body)>,
    fresh: u64,
    pub log: Vec<Logged>,
    issued: BTreeMap<Dot, usize>,
    /// Incarnations that crashed: their unspread writes may be lost.
    pub lost: BTreeSet<ReplicaId>,
    /// Addresses whose replica is gone for good (never restarted).
    pub gone: BTreeSet<usize>,
    pub sessions: Vec<Session>,
    /// Chance per mille per step that an idle session starts an operation.
    pub client_rate: u64,
    pub duplicates: u64,
    /// The last steps, printed if the test fails.
    trace: Trace,
}

pub(super) fn key(text: &str) -> Key {
    Key::parse(text).expect("valid key")
}

impl Sim {
    /// No replica yet.
    fn empty(seed: u64, faults: Faults) -> Sim {
        let mut sim = Sim::default();
        (sim.rng, sim.faults, sim.timing) = (Rng::seeded(seed), faults, sim_timing());
        sim.trace.seed = seed;
        sim
    }

    /// `n` replicas started one after the other, each with a `VIEW` naming
    /// those started before it (so each joins a running store).
    pub(super) fn new(seed: u64, n: usize, faults: Faults) -> Sim {
        let mut sim = Sim::empty(seed, faults);
        for _ in 0..n {
            let i = sim.add_address();
            sim.boot(i);
        }
        sim
    }

    /// A new store: `n` replicas whose `VIEW` names all of them, started
    /// at the same instant.
    pub(super) fn new_store(seed: u64, n: usize, faults: Faults) -> Sim {
        let mut sim = Sim::empty(seed, faults);
        for _ in 0..n {
            sim.add_address();
        }
        for i in 0..n {
            sim.boot(i);
        }
        sim
    }

    pub(super) fn fresh(&mut self) -> u64 {
        self.fresh += 1;
        self.fresh
    }

    /// A new address, with no replica running at it yet.
    pub(super) fn add_address(&mut self) -> usize {
        let text = format!("10.0.0.{}:8085", self.addrs.len() + 1);
        self.addrs.push(SocketAddress::parse(&text).expect("valid"));
        self.nodes.push(None);
        self.group.push(0);
        self.addrs.len() - 1
    }

    /// Starts a new incarnation at address `i`, its `VIEW` naming every address.
    pub(super) fn boot(&mut self, i: usize) {
        let incarnation = format!("inc{}", self.fresh());
        self.boot_as(i, &incarnation);
    }

    /// Starts the incarnation `incarnation` at address `i`.
    pub(super) fn boot_as(&mut self, i: usize, incarnation: &str) {
        let view = self.addrs.clone();
        self.boot_with(i, incarnation, &view);
    }

    /// Starts a new incarnation at address `i`, its `VIEW` naming only the
    /// addresses of `seeds`.
    pub(super) fn boot_seeded(&mut self, i: usize, seeds: &[usize]) {
        let incarnation = format!("inc{}", self.fresh());
        let view: Vec<SocketAddress> = seeds.iter().map(|&j| self.addrs[j].clone()).collect();
        self.boot_with(i, &incarnation, &view);
    }

    fn boot_with(&mut self, i: usize, incarnation: &str, view: &[SocketAddress]) {
        let (me, now) = (self.addrs[i].clone(), self.now);
        let replica = Replica::new(me, incarnation, view, self.timing.clone(), now);
        self.nodes[i] = Some(Node {
            replica,
            epoch: self.fresh(),
            queues: BTreeMap::new(),
            signature: (0, 0, 0),
            audited: VectorClock::new(),
            winners: BTreeMap::new(),
            shown: (0, 0, false, false),
        });
        let id = self.replica(i).me().id.clone();
        self.trace.push(self.now, Event::Boot(i, id));
    }

    pub(super) fn crash(&mut self, i: usize) {
        if let Some(node) = self.nodes[i].take() {
            self.trace.push(self.now, Event::Crash(i));
            self.lost.insert(node.replica.me().id.clone());
        }
    }

    pub(super) fn replica(&self, i: usize) -> &Replica {
        &self.nodes[i].as_ref().expect("replica is up").replica
    }

    pub(super) fn replica_mut(&mut self, i: usize) -> &mut Replica {
        &mut self.nodes[i].as_mut().expect("replica is up").replica
    }

    pub(super) fn live(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].is_some())
            .collect()
    }

    // ----- time ------------------------------------------------------------

    pub(super) fn step(&mut self) {
        self.now += STEP;
        let now = self.now;
        self.trace.groups(now, &self.group);
        let later = self.net.split_off(&(now + 1, 0));
        let mut due: Vec<_> = std::mem::replace(&mut self.net, later)
            .into_values()
            .collect();
        self.rng.shuffle(&mut due);
        for (head, body) in due {
            self.deliver(head, body);
        }
        let mut order: Vec<usize> = (0..self.nodes.len()).collect();
        self.rng.shuffle(&mut order);
        for i in order {
            self.pump(i);
            if let Some(node) = self.nodes[i].as_mut() {
                let _span = trace_at(&self.addrs[i], now);
                node.replica.tick(now);
                self.flush(i);
            }
        }
        self.clients();
    }

    pub(super) fn run(&mut self, ms: Millis) {
        for _ in 0..ms / STEP {
            self.step();
        }
    }

    /// Heals, restarts crashed replicas, idles the clients and runs under
    /// `faults` until every replica holds the same store, clock and view.
    pub(super) fn settle(&mut self, faults: Faults) {
        (self.group, self.faults) = (vec![0; self.nodes.len()], faults);
        for i in 0..self.nodes.len() {
            if self.nodes[i].is_none() && !self.gone.contains(&i) {
                self.boot(i);
            }
        }
        let note = "settling: healed, restarted, clients idle".to_string();
        self.trace.push(self.now, Event::Note(note));
        let rate = std::mem::take(&mut self.client_rate);
        self.sessions.iter_mut().for_each(|s| s.pending = None);
        let deadline = self.now + 60_000;
        while let Some(why) = self.divergence() {
            assert!(self.now < deadline, "no convergence: {why}");
            self.run(100);
        }
        self.client_rate = rate;
        // No write of an incarnation that never crashed is missing, and a
        // key written once holds its value.
        let mut writes: BTreeMap<&Key, usize> = BTreeMap::new();
        for w in &self.log {
            *writes.entry(&w.key).or_default() += 1;
        }
        let kept = |w: &&Logged| !self.lost.contains(&w.version.dot.replica);
        for w in self.log.iter().filter(kept) {
            for r in self.nodes.iter().flatten().map(|n| &n.replica) {
                assert!(r.known().contains(&w.version.dot), "{w:?} lost");
                if writes[&w.key] == 1 {
                    assert_eq!(r.store().value(&w.key), w.version.value);
                }
            }
        }
    }
}
