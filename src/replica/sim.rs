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
//! The network and the replication queues live in `sim/net.rs`, the
//! invariants in `sim/audit.rs`, the random faults in `sim_chaos.rs`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use serde_json::Value as Json;

use super::{single, Effect, Kind, Millis, Outcome, Replica, Reply, Request, Timing, Wait, Write};
use crate::address::SocketAddress;
use crate::causal::{CausalContext, Dot, ReplicaId, VectorClock};
use crate::store::{Key, Value, Version};

mod audit;
mod net;

/// Simulated time between two steps.
pub(super) const STEP: Millis = 10;
/// How long a client waits for its context before giving up (the 503).
const CLIENT_WAIT: Millis = 10_000;

/// splitmix64: tiny and good enough to drive a simulation.
#[derive(Default)]
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let z = (self.0 ^ (self.0 >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
    pub(super) fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
    pub(super) fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i as u64 + 1) as usize);
        }
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

/// A write acknowledged to a client, with the context the client sent.
#[derive(Debug)]
pub(super) struct Logged {
    pub key: Key,
    pub version: Version,
    pub deps: VectorClock,
}

#[derive(Clone, Debug)]
pub(super) enum Op {
    Put(Key),
    Delete(Key),
    Get(Key),
}

#[derive(Default)]
pub(super) struct Session {
    pub ctx: Json,
    /// The newest version of each key this session wrote or read.
    seen: BTreeMap<Key, Version>,
    /// An operation waiting for its context: at which replica, since when.
    pending: Option<(Op, usize, Millis)>,
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
}

/// A span naming the replica and the simulated time, for the trace that
/// `SIM_TRACE=1` prints (see [`trace`]).
fn trace_at(at: &SocketAddress, now: Millis) -> tracing::span::EnteredSpan {
    tracing::debug_span!("at", replica = %at, t = now).entered()
}

/// With `SIM_TRACE=1`, prints every step of the replicas to the test's
/// output (run one seed: `SIM_SEED=<seed> SIM_TRACE=1 cargo test ...`).
pub(super) fn trace() {
    if std::env::var_os("SIM_TRACE").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("debug")
            .with_test_writer()
            .with_target(false)
            .without_time()
            .try_init();
    }
}

pub(super) fn key(text: &str) -> Key {
    Key::parse(text).expect("valid key")
}

impl Sim {
    /// No replica yet.
    fn empty(seed: u64, faults: Faults) -> Sim {
        Sim {
            rng: Rng(seed),
            faults,
            timing: sim_timing(),
            ..Sim::default()
        }
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

    /// Stops the clients: no new operations, none waiting.
    pub(super) fn quiet(&mut self) {
        self.client_rate = 0;
        self.sessions.iter_mut().for_each(|s| s.pending = None);
    }

    /// A new session with no context; returns its number.
    pub(super) fn session(&mut self) -> usize {
        self.sessions.push(Session::default());
        self.sessions.len() - 1
    }

    /// Session `s` runs `op` at replica `i`, waiting (as the network runs)
    /// until it is served; panics after the client's wait.
    pub(super) fn until_served(&mut self, s: usize, i: usize, op: Op) -> Option<Value> {
        let since = self.now;
        loop {
            match self.client(s, i, &op) {
                Ok(value) => return value,
                Err(wait) => {
                    if self.now - since >= CLIENT_WAIT {
                        let known: Vec<String> = self
                            .live()
                            .into_iter()
                            .map(|j| format!("{}: {:?}", self.addrs[j], self.replica(j).known()))
                            .collect();
                        panic!("{op:?} at {i} not served: {wait:?}\n{}", known.join("\n"));
                    }
                    if let Wait::Missing(missing) = wait {
                        let now = self.now;
                        self.replica_mut(i).catch_up(&missing, now);
                        self.flush(i);
                    }
                    self.step();
                }
            }
        }
    }

    pub(super) fn with_sessions(mut self, count: usize, rate: u64) -> Sim {
        self.sessions = (0..count).map(|_| Session::default()).collect();
        self.client_rate = rate;
        self
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
        });
    }

    pub(super) fn crash(&mut self, i: usize) {
        if let Some(node) = self.nodes[i].take() {
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

    // ----- clients ---------------------------------------------------------

    /// Idle sessions may start an operation at a random replica; waiting
    /// ones retry, sometimes elsewhere.
    fn clients(&mut self) {
        let live = self.live();
        for s in 0..self.sessions.len() {
            let (op, mut at, since) = match self.sessions[s].pending.take() {
                Some(pending) => pending,
                None if self.rng.chance(self.client_rate) => {
                    let shared = key(&format!("k{}", self.rng.below(4)));
                    let op = match self.rng.below(100) {
                        0..=14 => Op::Put(key(&format!("u{}", self.fresh()))),
                        15..=49 => Op::Put(shared),
                        50..=59 => Op::Delete(shared),
                        _ => Op::Get(shared),
                    };
                    (op, usize::MAX, self.now)
                }
                None => continue,
            };
            if !live.contains(&at) || self.rng.chance(300) {
                at = self.rng.pick(&live);
            }
            let Err(wait) = self.client(s, at, &op) else {
                continue;
            };
            if self.now - since > CLIENT_WAIT {
                self.sessions[s] = Session::default();
            } else {
                if let Wait::Missing(missing) = wait {
                    let now = self.now;
                    self.replica_mut(at).catch_up(&missing, now);
                    self.flush(at);
                }
                self.sessions[s].pending = Some((op, at, since));
            }
        }
    }

    /// Session `s` performs `op` at replica `i` with its latest context:
    /// the value read or written, or why the replica cannot serve it.
    pub(super) fn client(&mut self, s: usize, i: usize, op: &Op) -> Result<Option<Value>, Wait> {
        let sent = self.sessions[s].ctx.clone();
        let ctx = CausalContext::parse(Some(&sent)).expect("metadata round-trips");
        let (key, value, learned) = match op {
            Op::Get(key) => {
                let read = self.replica(i).read(key, &ctx)?;
                (key, read.value, read.learned)
            }
            Op::Put(key) | Op::Delete(key) => {
                let value = match op {
                    Op::Put(_) => Value::from_json(&self.fresh().to_string()).expect("json"),
                    _ => None,
                };
                let _span = trace_at(&self.addrs[i], self.now);
                tracing::debug!(session = s, ?op, context = %sent, "client write");
                let replica = self.replica_mut(i);
                let result = replica.write(key.clone(), value.clone(), &ctx)?;
                let version = replica.store().get(key);
                if let Some(version) = version.filter(|_| result.outcome != Outcome::NotFound) {
                    // It beats everything applied here.
                    assert_eq!(version.value, value, "a write lost at once");
                    self.issued.insert(version.dot.clone(), self.log.len());
                    let (key, deps) = (key.clone(), ctx.clock().clone());
                    self.log.push(Logged { key, version, deps });
                }
                self.flush(i);
                (key, value, result.learned)
            }
        };
        // The client got, and learned the dot of, the version stored
        // (nothing, for a retired incarnation's write).
        let replica = self.replica(i);
        let version = replica.store().get(key);
        assert_eq!(value, version.as_ref().and_then(|v| v.value.clone()));
        let dot = version.as_ref().map(|v| single(&v.dot)).unwrap_or_default();
        let retired = version.as_ref().is_some_and(|v| {
            let record = replica.known().retirement(&v.dot.replica);
            let within = record.is_some_and(|r| r.last >= v.dot.counter);
            replica.applied().get(&v.dot.replica) == 0 && within
        });
        if retired {
            assert!(
                learned.clock.is_empty(),
                "learned a retired incarnation's dot"
            );
        } else {
            assert_eq!(learned.clock, dot);
        }
        // A version written by a replica that crashed before passing it on
        // is lost: no read can be held to it.
        // So is one of a writer retired while replica `i` was cut off from
        // every replica that retired it (see `pruned_while_cut_off`).
        let lost: Vec<bool> = self.sessions[s]
            .seen
            .get(key)
            .map(|v| {
                self.is_lost(&v.dot.replica, v.dot.counter)
                    || self.pruned_while_cut_off(i, v, ctx.clock())
            })
            .into_iter()
            .collect();
        let session = &mut self.sessions[s];
        if let Some(seen) = session.seen.get(key).filter(|_| lost != [true]) {
            let newer = |v: &Version| v == seen || v.supersedes(seen);
            // Only a forgotten tombstone at least as new may hide what was
            // seen (an older tombstone may stand in its place, as in the
            // audit).
            let forgotten = || {
                let mut deletes = self.log.iter().filter(|w| w.version.value.is_none());
                deletes.any(|w| w.key == *key && newer(&w.version))
            };
            let ok = version.as_ref().map_or_else(forgotten, |v| {
                newer(v) || (v.value.is_none() && forgotten())
            });
            let at = &self.addrs[i];
            assert!(
                ok,
                "session {s}: {op:?} at {at} got {version:?} after {seen:?}"
            );
        }
        if let Some(v) = version {
            if session.seen.get(key).is_none_or(|seen| v.supersedes(seen)) {
                session.seen.insert(key.clone(), v);
            }
        }
        let reply = learned.metadata(&ctx).to_value();
        if learned.clock.covered_by(ctx.clock()) && learned.pruned.is_none() {
            assert_eq!(reply, sent, "the context is echoed when nothing is new");
        }
        session.ctx = reply;
        Ok(value)
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
