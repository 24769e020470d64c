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
//! After every input to a replica the harness audits it: its applied clock
//! counts only issued writes, each with all its dependencies, and its store
//! holds exactly the winning version of each key among the writes applied
//! (a tombstone may be forgotten). Every client read must return a version
//! no older, in the key's order, than one its session wrote or read before
//! (read-your-writes, monotonic reads). [`Sim::settle`] heals, restarts and
//! runs until every replica holds the same store, clock and view (a write
//! that waits for one lost in a crash stays buffered, as it must), then
//! checks that every write of an incarnation that never crashed is applied
//! everywhere.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use serde_json::Value as Json;

use super::{single, Effect, Kind, Millis, Replica, Reply, Request, Timing, Write, WriteResult};
use crate::address::SocketAddress;
use crate::causal::{CausalContext, Dot, ReplicaId, VectorClock};
use crate::store::{Key, Value, Version};

/// Simulated time between two steps.
const STEP: Millis = 10;
/// How long a client waits for its context before giving up (the 503).
const CLIENT_WAIT: Millis = 10_000;

/// splitmix64: tiny and good enough to drive a simulation.
#[derive(Default)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let z = (self.0 ^ (self.0 >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i as u64 + 1) as usize);
        }
    }
}

/// How the network misbehaves: chances per mille per message to drop and
/// to duplicate it and to make it 0.5–3 s late, and the usual latency in ms.
#[derive(Clone, Copy, Debug, Default)]
struct Faults(u64, u64, u64, Millis);

const CALM: Faults = Faults(0, 0, 0, 30);
const LOSSY: Faults = Faults(50, 100, 0, 100);
const ROUGH: Faults = Faults(100, 150, 50, 200);

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
struct Node {
    replica: Replica,
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
struct Logged {
    key: Key,
    version: Version,
    deps: VectorClock,
}

#[derive(Clone, Debug)]
enum Op {
    Put(Key),
    Delete(Key),
    Get(Key),
}

#[derive(Default)]
struct Session {
    ctx: Json,
    /// The newest version of each key this session wrote or read.
    seen: BTreeMap<Key, Version>,
    /// An operation waiting for its context: at which replica, since when.
    pending: Option<(Op, usize, Millis)>,
}

#[derive(Default)]
struct Sim {
    rng: Rng,
    now: Millis,
    faults: Faults,
    addrs: Vec<SocketAddress>,
    nodes: Vec<Option<Node>>,
    group: Vec<u64>,
    /// Messages in flight, by arrival time (and a tie-breaker).
    net: BTreeMap<(Millis, u64), (Head, Body)>,
    fresh: u64,
    log: Vec<Logged>,
    issued: BTreeMap<Dot, usize>,
    /// Incarnations that crashed: their unspread writes may be lost.
    lost: BTreeSet<ReplicaId>,
    sessions: Vec<Session>,
    /// Chance per mille per step that an idle session starts an operation.
    client_rate: u64,
    duplicates: u64,
}

fn key(text: &str) -> Key {
    Key::parse(text).expect("valid key")
}

impl Sim {
    fn new(seed: u64, n: usize, faults: Faults) -> Sim {
        let mut sim = Sim {
            rng: Rng(seed),
            faults,
            ..Sim::default()
        };
        for _ in 0..n {
            let i = sim.add_address();
            sim.boot(i);
        }
        sim
    }

    fn with_sessions(mut self, count: usize, rate: u64) -> Sim {
        self.sessions = (0..count).map(|_| Session::default()).collect();
        self.client_rate = rate;
        self
    }

    fn fresh(&mut self) -> u64 {
        self.fresh += 1;
        self.fresh
    }

    /// A new address, with no replica running at it yet.
    fn add_address(&mut self) -> usize {
        let text = format!("10.0.0.{}:8085", self.addrs.len() + 1);
        self.addrs.push(SocketAddress::parse(&text).expect("valid"));
        self.nodes.push(None);
        self.group.push(0);
        self.addrs.len() - 1
    }

    /// Starts a new incarnation at address `i`, its `VIEW` naming every address.
    fn boot(&mut self, i: usize) {
        let incarnation = format!("inc{}", self.fresh());
        let (me, now) = (self.addrs[i].clone(), self.now);
        let replica = Replica::new(me, &incarnation, &self.addrs, Timing::default(), now);
        self.nodes[i] = Some(Node {
            replica,
            epoch: self.fresh(),
            queues: BTreeMap::new(),
            signature: (0, 0, 0),
            audited: VectorClock::new(),
            winners: BTreeMap::new(),
        });
    }

    fn crash(&mut self, i: usize) {
        if let Some(node) = self.nodes[i].take() {
            self.lost.insert(node.replica.me().id.clone());
        }
    }

    fn replica(&self, i: usize) -> &Replica {
        &self.nodes[i].as_ref().expect("replica is up").replica
    }

    fn replica_mut(&mut self, i: usize) -> &mut Replica {
        &mut self.nodes[i].as_mut().expect("replica is up").replica
    }

    fn live(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].is_some())
            .collect()
    }

    // ----- network ---------------------------------------------------------

    fn post(&mut self, head: Head, body: Body) {
        let Faults(_, _, slow, latency) = self.faults;
        let mut at = self.now + 1 + self.rng.below(latency);
        if self.rng.chance(slow) {
            at += 500 + self.rng.below(2500);
        }
        let id = self.fresh();
        self.net.insert((at, id), (head, body));
    }

    /// The sender of a lost request or reply learns of it after a timeout.
    fn fail(&mut self, head: Head) {
        let (at, timeout) = (self.now + 50 + self.rng.below(950), "timed out".into());
        let id = self.fresh();
        self.net.insert((at, id), (head, Body::Reply(Err(timeout))));
    }

    fn send(&mut self, node: usize, peer: SocketAddress, request: Request, batch: Batch) {
        let epoch = self.nodes[node].as_ref().map_or(0, |n| n.epoch);
        let kind = request.kind();
        let head = Head {
            node,
            epoch,
            peer,
            kind,
            batch,
        };
        if self.rng.chance(self.faults.1) {
            self.post(head.clone(), Body::Request(request.clone(), true));
        }
        self.post(head, Body::Request(request, false));
    }

    fn deliver(&mut self, head: Head, body: Body) {
        let target = self.addrs.iter().position(|a| *a == head.peer);
        let linked = target.filter(|&t| self.group[t] == self.group[head.node]);
        let drop = self.faults.0;
        match body {
            Body::Request(request, copy) => match linked.filter(|&t| self.nodes[t].is_some()) {
                Some(t) if !self.rng.chance(drop) => {
                    let now = self.now;
                    let reply = self.replica_mut(t).handle(request, now);
                    self.flush(t);
                    if copy {
                        self.duplicates += 1;
                    } else if self.rng.chance(drop) {
                        self.fail(head);
                    } else {
                        self.post(head, Body::Reply(Ok(reply)));
                    }
                }
                _ if copy => {}
                _ => self.fail(head),
            },
            Body::Reply(Ok(_)) if linked.is_none() => self.fail(head),
            Body::Reply(result) => {
                let (now, node) = (self.now, self.nodes[head.node].as_mut());
                let Some(node) = node.filter(|n| n.epoch == head.epoch) else {
                    return;
                };
                let Some((generation, n)) = head.batch else {
                    node.replica.on_reply(&head.peer, head.kind, result, now);
                    return self.flush(head.node);
                };
                // The transport keeps replies to batches to itself.
                let queue = node.queues.get_mut(&head.peer);
                if let Some(q) = queue.filter(|q| q.generation == generation) {
                    q.in_flight = false;
                    if matches!(result, Ok(Reply::Ack { .. })) {
                        q.writes.drain(..n);
                        q.backoff = 0;
                    } else {
                        q.backoff = (q.backoff * 2).clamp(50, 2000);
                        q.retry_at = now + q.backoff;
                    }
                }
            }
        }
    }

    /// Carries out the effects replica `i` produced, then audits it.
    fn flush(&mut self, i: usize) {
        let effects = self.nodes[i].as_mut().map(|n| n.replica.take_effects());
        for effect in effects.into_iter().flatten() {
            let generation = self.fresh();
            let queues = &mut self.nodes[i].as_mut().expect("up").queues;
            match effect {
                Effect::Send { to, request } => self.send(i, to, request, None),
                Effect::Replicate { to, write } => {
                    let new = || Queue {
                        generation,
                        ..Queue::default()
                    };
                    for peer in to {
                        let queue = queues.entry(peer).or_insert_with(new);
                        queue.writes.push_back(write.clone());
                    }
                }
                Effect::DropQueue { peer } => _ = queues.remove(&peer),
            }
        }
        if let Err(e) = self.audit(i) {
            panic!("t={} at {}: {e}", self.now, self.addrs[i]);
        }
    }

    /// The transport of replica `i` sends a batch on every idle queue.
    fn pump(&mut self, i: usize) {
        let Some(node) = self.nodes[i].as_mut() else {
            return;
        };
        let from = node.replica.me().clone();
        let mut batches = Vec::new();
        for (peer, q) in node.queues.iter_mut() {
            if q.in_flight || q.writes.is_empty() || self.now < q.retry_at {
                continue;
            }
            let n = q.writes.len().min(1 + self.rng.below(8) as usize);
            q.in_flight = true;
            let writes = q.writes.iter().take(n).map(|w| Write::clone(w)).collect();
            let (from, batch) = (from.clone(), Some((q.generation, n)));
            batches.push((peer.clone(), Request::Replicate { from, writes }, batch));
        }
        for (peer, request, batch) in batches {
            self.send(i, peer, request, batch);
        }
    }

    /// Hands `to` the whole queue `from` holds for it, off the network.
    fn deliver_queue(&mut self, from: usize, to: usize) {
        let node = self.nodes[from].as_mut().expect("up");
        let queue = node.queues.remove(&self.addrs[to]).expect("a queue");
        let writes = queue.writes.iter().map(|w| Write::clone(w)).collect();
        let (from, now) = (node.replica.me().clone(), self.now);
        let request = Request::Replicate { from, writes };
        let reply = self.replica_mut(to).handle(request, now);
        assert!(matches!(reply, Reply::Ack { .. }));
        self.flush(to);
    }

    // ----- time ------------------------------------------------------------

    fn step(&mut self) {
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
                node.replica.tick(now);
                self.flush(i);
            }
        }
        self.clients();
    }

    fn run(&mut self, ms: Millis) {
        for _ in 0..ms / STEP {
            self.step();
        }
    }

    /// Runs `ms` while faults strike at random: partitions, heals, crashes,
    /// restarts and changes of how lossy the network is.
    fn run_chaos(&mut self, ms: Millis) {
        for _ in 0..ms / STEP {
            let n = self.nodes.len();
            let dead: Vec<usize> = (0..n).filter(|&i| self.nodes[i].is_none()).collect();
            match self.rng.below(1000) {
                0..=2 => self.group = (0..n).map(|_| self.rng.below(3)).collect(),
                3..=6 => self.group = vec![0; n],
                7..=8 if dead.len() + 1 < n => {
                    let victim = self.rng.pick(&self.live());
                    self.crash(victim);
                }
                9..=14 if !dead.is_empty() => {
                    let i = self.rng.pick(&dead);
                    self.boot(i);
                }
                15..=16 => self.faults = self.rng.pick(&[CALM, LOSSY, ROUGH]),
                _ => {}
            }
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
            let Err(missing) = self.client(s, at, &op) else {
                continue;
            };
            if self.now - since > CLIENT_WAIT {
                self.sessions[s] = Session::default();
            } else {
                let now = self.now;
                self.replica_mut(at).catch_up(&missing, now);
                self.flush(at);
                self.sessions[s].pending = Some((op, at, since));
            }
        }
    }

    /// Session `s` performs `op` at replica `i` with its latest context:
    /// the value read or written, or the writes the replica lacks.
    fn client(&mut self, s: usize, i: usize, op: &Op) -> Result<Option<Value>, VectorClock> {
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
                let replica = self.replica_mut(i);
                let result = replica.write(key.clone(), value.clone(), &ctx)?;
                let version = replica.store().get(key);
                let written = !matches!(result, WriteResult::NotFound { .. });
                let (WriteResult::Created { learned }
                | WriteResult::Updated { learned }
                | WriteResult::Deleted { learned }
                | WriteResult::NotFound { learned }) = result;
                if let Some(version) = version.filter(|_| written) {
                    // It beats everything applied here.
                    assert_eq!(version.value, value, "a write lost at once");
                    self.issued.insert(version.dot.clone(), self.log.len());
                    let (key, deps) = (key.clone(), ctx.clock().clone());
                    self.log.push(Logged { key, version, deps });
                }
                self.flush(i);
                (key, value, learned)
            }
        };
        // The client got, and learned the dot of, the version stored.
        let version = self.replica(i).store().get(key);
        let dot = version.as_ref().map(|v| single(&v.dot));
        assert_eq!(value, version.as_ref().and_then(|v| v.value.clone()));
        assert_eq!(learned, dot.unwrap_or_default());
        let session = &mut self.sessions[s];
        if let Some(seen) = session.seen.get(key) {
            let newer = |v: &Version| v == seen || v.supersedes(seen);
            // Only a forgotten tombstone at least as new may hide what was seen.
            let forgotten = || {
                let mut deletes = self.log.iter().filter(|w| w.version.value.is_none());
                deletes.any(|w| w.key == *key && newer(&w.version))
            };
            let ok = version.as_ref().map_or_else(forgotten, newer);
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
        let reply = ctx.reply(&learned).to_value();
        if learned.covered_by(ctx.clock()) {
            assert_eq!(reply, sent, "the context is echoed when nothing is new");
        }
        session.ctx = reply;
        Ok(value)
    }

    // ----- invariants ------------------------------------------------------

    /// Replica `i` applied only issued writes, each after its dependencies,
    /// and its store holds the winner among them for each key.
    fn audit(&mut self, i: usize) -> Result<(), String> {
        let Some(node) = self.nodes[i].as_mut() else {
            return Ok(());
        };
        let (r, stats) = (&node.replica, node.replica.stats());
        let applied = r.applied();
        let signature = (r.progress(), stats.keys, stats.tombstones);
        if node.signature == signature && node.audited == *applied {
            return Ok(());
        }
        for (id, n) in applied.iter() {
            for counter in node.audited.get(id) + 1..=n {
                let dot = Dot::new(id.clone(), counter);
                let Some(w) = self.issued.get(&dot).map(|&w| &self.log[w]) else {
                    return Err(format!("applied counts {dot}, which was never issued"));
                };
                if !w.deps.covered_by(applied) {
                    let missing = w.deps.missing_from(applied);
                    return Err(format!("applied {dot} before its dependencies {missing:?}"));
                }
                let best = node.winners.entry(w.key.clone());
                let best = best.or_insert(w.version.clone());
                if w.version.supersedes(best) {
                    *best = w.version.clone();
                }
            }
        }
        for entry in r.store().iter() {
            let (key, v) = (entry.to_key(), entry.to_version());
            let winner = node.winners.get(&key);
            if !applied.contains(&v.dot) || winner != Some(&v) {
                return Err(format!("store holds {key:?}={v:?}, not {winner:?}"));
            }
        }
        let mut winners = node.winners.iter();
        if let Some(lost) = winners.find(|(k, v)| v.value.is_some() && r.store().get(k).is_none()) {
            return Err(format!("store lost {lost:?}"));
        }
        node.audited = applied.clone();
        node.signature = signature;
        Ok(())
    }

    /// Asserts that each replica of `at` has the view `members` (sorted).
    fn assert_views(&self, at: &[usize], members: &[usize]) {
        let view: Vec<&str> = members.iter().map(|&i| self.addrs[i].as_str()).collect();
        let view = view.join(",");
        for &i in at {
            let seen = self.replica(i).view().print();
            assert_eq!(seen, view, "t={}: the view at {}", self.now, self.addrs[i]);
        }
    }

    /// Why the replicas have not converged, if they have not.
    fn divergence(&self) -> Option<String> {
        let view: Vec<&str> = self.addrs.iter().map(|a| a.as_str()).collect();
        let (view, mut first) = (view.join(","), None);
        for (i, node) in self.nodes.iter().enumerate() {
            let Some(r) = node.as_ref().map(|n| &n.replica) else {
                return Some(format!("{} is down", self.addrs[i]));
            };
            // Writes waiting for writes lost in a crash wait forever.
            let stuck = r.buffer.wanted(r.applied());
            let waits = stuck.iter().any(|(id, _)| !self.lost.contains(id));
            if !r.is_synced() || waits || r.view().print() != view {
                let stats = r.stats();
                return Some(format!("{}: {stats:?} {}", self.addrs[i], r.view().print()));
            }
            let mut store: Vec<_> = r
                .store()
                .iter()
                .map(|e| (e.to_key(), e.to_version()))
                .collect();
            store.sort_by(|a, b| a.0.cmp(&b.0));
            let state = (store, r.applied());
            match &first {
                Some(f) if *f != state => return Some(format!("{f:?}\n differs from\n{state:?}")),
                _ => first = Some(state),
            }
        }
        None
    }

    /// Heals, restarts crashed replicas, idles the clients and runs under
    /// `faults` until every replica holds the same store, clock and view.
    fn settle(&mut self, faults: Faults) {
        (self.group, self.faults) = (vec![0; self.nodes.len()], faults);
        for i in 0..self.nodes.len() {
            if self.nodes[i].is_none() {
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
                assert!(r.applied().contains(&w.version.dot), "{w:?} lost");
                if writes[&w.key] == 1 {
                    assert_eq!(r.store().value(&w.key), w.version.value);
                }
            }
        }
    }
}

/// Runs `test` for `n` seeds; a failure names its seed. `SIM_SEED=<seed>`
/// replays one, `SIM_SEEDS=<n>` runs more.
fn for_seeds(n: u64, test: impl Fn(u64)) {
    let var = |name| std::env::var(name).map(|v| v.parse::<u64>().expect("a number"));
    let seeds: Vec<u64> = match var("SIM_SEED") {
        Ok(seed) => vec![seed],
        Err(_) => (0..var("SIM_SEEDS").unwrap_or(n))
            .map(|s| s * 7919 + 17)
            .collect(),
    };
    for seed in seeds {
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| test(seed))) {
            let text = panic.downcast_ref::<String>().map(String::as_str);
            let text = text.or(panic.downcast_ref::<&str>().copied());
            panic!("seed {seed}: {}", text.unwrap_or("panicked"));
        }
    }
}

#[test]
fn writes_reach_every_replica_despite_reordering_and_duplicates() {
    for_seeds(20, |seed| {
        let mut sim = Sim::new(seed, 3 + seed as usize % 3, ROUGH).with_sessions(4, 80);
        sim.run(5_000);
        sim.settle(Faults(0, 150, 0, 200));
        assert!(sim.duplicates > 0 && sim.log.len() > 20, "proved nothing");
    });
}

#[test]
fn write_waits_in_buffer_until_dependency_arrives() {
    for_seeds(5, |seed| {
        let mut sim = Sim::new(seed, 3, CALM).with_sessions(1, 0);
        sim.settle(CALM);
        let (x, y) = (key("x"), key("y"));
        let x_value = sim.client(0, 0, &Op::Put(x.clone())).expect("no context");
        sim.deliver_queue(0, 1);
        assert_eq!(sim.client(0, 1, &Op::Get(x)), Ok(x_value));
        let y_value = sim.client(0, 1, &Op::Put(y.clone())).expect("satisfied");
        let dots = [&sim.log[0], &sim.log[1]].map(|w| w.version.dot.clone());
        // y reaches replica 2 before the x it depends on: held, not applied.
        sim.deliver_queue(1, 2);
        let r = sim.replica(2);
        assert!(!r.applied().contains(&dots[1]) && r.store().get(&y).is_none());
        assert_eq!(r.stats().buffered, 1);
        assert!(sim.client(0, 2, &Op::Get(y.clone())).is_err());
        // x arrives: both are applied, in order.
        sim.deliver_queue(0, 2);
        let r = sim.replica(2);
        assert!(dots.iter().all(|d| r.applied().contains(d)) && r.stats().buffered == 0);
        assert_eq!(sim.client(0, 2, &Op::Get(y)), Ok(y_value));
        sim.settle(LOSSY);
    });
}

#[test]
fn partitioned_replicas_converge_after_heal() {
    for_seeds(20, |seed| {
        let mut sim = Sim::new(seed, 5, LOSSY).with_sessions(4, 100);
        sim.run(1_000);
        sim.group = vec![0, 0, 1, 1, 1];
        sim.rng.shuffle(&mut sim.group);
        sim.run(5_000);
        for side in [0, 1] {
            let members: Vec<usize> = (0..5).filter(|&i| sim.group[i] == side).collect();
            sim.assert_views(&members, &members);
        }
        sim.settle(LOSSY);
    });
}

#[test]
fn crashed_replica_restarts_and_copies_state() {
    for_seeds(20, |seed| {
        let mut sim = Sim::new(seed, 4, LOSSY).with_sessions(3, 100);
        sim.run(3_000);
        let victim = sim.rng.below(4) as usize;
        let old = sim.replica(victim).me().id.clone();
        sim.crash(victim);
        sim.run(4_000);
        let others: Vec<usize> = (0..4).filter(|&i| i != victim).collect();
        sim.assert_views(&others, &others);
        sim.boot(victim);
        sim.run(2_000);
        assert_ne!(sim.replica(victim).me().id, old, "identity reused");
        sim.settle(LOSSY);
        let deletes = sim.log.iter().filter(|w| w.version.value.is_none());
        let deleted: BTreeSet<&Key> = deletes.map(|w| &w.key).collect();
        for w in &sim.log {
            if !sim.lost.contains(&w.version.dot.replica) && !deleted.contains(&w.key) {
                let held = sim.replica(victim).store().value(&w.key);
                assert!(held.is_some(), "the restarted replica lacks {w:?}");
            }
        }
    });
}

#[test]
fn silent_replica_leaves_views_and_returns() {
    for_seeds(20, |seed| {
        let mut sim = Sim::new(seed, 4, LOSSY).with_sessions(2, 50);
        sim.run(1_000);
        let silent = sim.rng.below(4) as usize;
        let others: Vec<usize> = (0..4).filter(|&i| i != silent).collect();
        // Odd seeds crash it, even ones cut it off.
        let crashed = seed % 2 == 1;
        match crashed {
            true => sim.crash(silent),
            false => sim.group[silent] = 1,
        }
        sim.run(4_000);
        sim.assert_views(&others, &others);
        match crashed {
            true => sim.boot(silent),
            false => sim.assert_views(&[silent], &[silent]),
        }
        sim.group[silent] = 0;
        sim.run(3_000);
        sim.assert_views(&[0, 1, 2, 3], &[0, 1, 2, 3]);
        sim.settle(LOSSY);
    });
}

#[test]
fn concurrent_writes_converge_on_every_replica() {
    for_seeds(25, |seed| {
        let n = 3 + seed as usize % 3;
        let mut sim = Sim::new(seed, n, CALM);
        sim.settle(CALM);
        sim.faults = Faults(50, 100, 100, 100);
        for round in 0..5 {
            // Every replica takes a write to the same key at the same
            // instant, from a client that knows nothing of the others.
            for i in 0..n {
                sim.sessions.push(Session::default());
                let (s, put) = (
                    sim.sessions.len() - 1,
                    Op::Put(key(&format!("c{}", (round + i) % 2))),
                );
                sim.client(s, i, &put).expect("no context");
            }
            sim.run(300);
        }
        sim.settle(LOSSY);
        for target in [key("c0"), key("c1")] {
            let writes = sim.log.iter().filter(|w| w.key == target);
            let winner = writes.map(|w| &w.version);
            let winner = winner.reduce(|a, b| if b.supersedes(a) { b } else { a });
            for i in 0..n {
                assert_eq!(sim.replica(i).store().get(&target).as_ref(), winner);
            }
        }
    });
}

#[test]
fn random_faults_never_break_causality_or_convergence() {
    let crashes = std::cell::Cell::new(0);
    for_seeds(25, |seed| {
        let mut sim = Sim::new(seed, 3 + seed as usize % 3, LOSSY).with_sessions(5, 120);
        sim.run_chaos(15_000);
        sim.settle(CALM);
        crashes.set(crashes.get() + sim.lost.len());
        // The settled cluster serves every session again.
        sim.run(1_000);
        sim.settle(CALM);
    });
    assert!(crashes.get() > 0, "no crash was simulated");
}

#[test]
fn view_change_via_api_reaches_all_members() {
    for_seeds(20, |seed| {
        let mut sim = Sim::new(seed, 4, LOSSY).with_sessions(2, 50);
        sim.settle(LOSSY);
        let removed = sim.addrs[3].clone();
        assert!(sim.replica_mut(0).view_remove(removed.clone()));
        assert!(!sim.replica_mut(0).view_remove(removed.clone()));
        sim.flush(0);
        sim.run(5_000);
        sim.assert_views(&[0, 1, 2], &[0, 1, 2]);
        // A replica that does not run yet is added at 1, then starts.
        let e = sim.add_address();
        let (added, now) = (sim.addrs[e].clone(), sim.now);
        assert!(sim.replica_mut(1).view_add(added.clone(), now));
        assert!(!sim.replica_mut(1).view_add(added, now));
        sim.flush(1);
        sim.boot(e);
        // The removed replica is added back at 2: only the relayed change
        // readmits it at 0 and 1.
        let now = sim.now;
        assert!(sim.replica_mut(2).view_add(removed, now));
        sim.flush(2);
        sim.run(6_000);
        sim.assert_views(&[0, 1, 2, 3, e], &[0, 1, 2, 3, e]);
        sim.settle(LOSSY);
    });
}
