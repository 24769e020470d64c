//! A deterministic simulated cluster: the protocol under an adversarial
//! network, checked after every step.
//!
//! [`Sim`] drives N [`Replica`] state machines (at `10.0.0.1:8085`, ...) with
//! a simulated clock (milliseconds, advanced in steps of [`STEP`]; every live
//! replica is ticked each step) and a network whose every decision comes
//! from one seeded PRNG, so a failing seed replays exactly. It models:
//!
//! - **One-shot requests** ([`Effect::Send`]): each arrives after a random
//!   latency (so in any order), sometimes seconds late, sometimes twice (the
//!   copy's reply is discarded). A request or reply that is dropped, crosses
//!   a partition or targets a crashed replica makes the sender see
//!   `on_reply(.., Err(..))` after a timeout.
//! - **Replication queues** ([`Effect::Replicate`]) as the real transport
//!   keeps them: one ordered queue per (sender, peer) with one batch (a
//!   prefix of random length) in flight, popped only on an `Ack` and
//!   otherwise retried after an exponential backoff, so a lost ack means a
//!   duplicate delivery. [`Effect::DropQueue`] discards a queue; the reply
//!   to its in-flight batch is then ignored.
//! - **Partitions** of the replicas into groups (cut in both directions)
//!   and heal; **crashes**, which lose a replica's state, queues and pending
//!   replies; **restarts** as a new incarnation at the same address.
//! - **Client sessions** that hop between replicas, always pass back the
//!   `causal-metadata` JSON of their last reply, and, when a replica lacks
//!   their context, call `catch_up` and retry as the network runs (giving
//!   up after 10 s, like the 503, and starting afresh).
//!
//! Checked after every step, at every live replica whose state changed: its
//! applied clock counts only writes that were issued, each together with
//! all its dependencies, and its store holds exactly the winning version of
//! every key among the writes applied (a tombstone may be forgotten).
//! Checked at every client read: the version read is not older, in the
//! key's order, than one the session wrote or read before (read-your-writes,
//! monotonic reads), and the context echo is exact when nothing is learned.
//! [`Sim::settle`] heals, restarts and runs until every replica holds the
//! same store, clock and view, then checks that every write of a replica
//! that never crashed is applied everywhere.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
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

/// splitmix64: tiny, fast and good enough to drive a simulation.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i as u64 + 1) as usize);
        }
    }
}

/// How the network misbehaves: chances per mille per message.
#[derive(Clone, Copy, Debug)]
struct Faults {
    drop: u64,
    dup: u64,
    /// Chance that a message is 0.5–3 s late.
    slow: u64,
    /// Normal latency is uniform in 1..=latency ms.
    latency: Millis,
}

const CALM: Faults = Faults {
    drop: 0,
    dup: 0,
    slow: 0,
    latency: 30,
};
const LOSSY: Faults = Faults {
    drop: 50,
    dup: 100,
    slow: 0,
    latency: 100,
};
const ROUGH: Faults = Faults {
    drop: 100,
    dup: 150,
    slow: 50,
    latency: 200,
};

/// One replication queue of the transport.
struct Queue {
    writes: VecDeque<Arc<Write>>,
    generation: u64,
    in_flight: bool,
    retry_at: Millis,
    backoff: Millis,
}

/// What the audit last saw of a replica, to skip it when nothing changed.
type Signature = (u64, usize, usize, VectorClock);

/// A live replica process.
struct Node {
    replica: Replica,
    epoch: u64,
    queues: BTreeMap<SocketAddress, Queue>,
    audited: Option<Signature>,
}

/// A replication batch: its queue's generation and how many writes it holds.
type Batch = Option<(u64, usize)>;

enum Packet {
    Request {
        from: usize,
        epoch: u64,
        to: usize,
        request: Request,
        batch: Batch,
        copy: bool,
    },
    Reply {
        to: usize,
        epoch: u64,
        peer: SocketAddress,
        kind: Kind,
        result: Result<Reply, String>,
        batch: Batch,
    },
}

/// A write acknowledged to a client.
struct Logged {
    key: Key,
    version: Version,
    /// The context the client sent with it.
    deps: VectorClock,
}

#[derive(Clone, Debug)]
enum Op {
    Put(Key),
    Delete(Key),
    Get(Key),
}

struct Pending {
    op: Op,
    node: usize,
    since: Millis,
}

#[derive(Default)]
struct Session {
    ctx: Json,
    /// The newest version of each key this session wrote or read.
    seen: BTreeMap<Key, Version>,
    pending: Option<Pending>,
}

struct Sim {
    seed: u64,
    rng: Rng,
    now: Millis,
    timing: Timing,
    faults: Faults,
    addrs: Vec<SocketAddress>,
    nodes: Vec<Option<Node>>,
    group: Vec<u64>,
    net: Vec<(Millis, Packet)>,
    fresh: u64,
    log: Vec<Logged>,
    issued: BTreeSet<Dot>,
    /// Incarnations that crashed: their unspread writes may be lost.
    lost: BTreeSet<ReplicaId>,
    sessions: Vec<Session>,
    /// Chance per mille per step that an idle session starts an operation.
    client_rate: u64,
    shared_keys: u64,
    duplicates: u64,
    gave_up: u64,
}

fn addr(i: usize) -> SocketAddress {
    SocketAddress::parse(&format!("10.0.0.{}:8085", i + 1)).expect("valid address")
}

fn key(text: &str) -> Key {
    Key::parse(text).expect("valid key")
}

fn print(addrs: &[&SocketAddress]) -> String {
    let mut all: Vec<&SocketAddress> = addrs.to_vec();
    all.sort();
    all.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(",")
}

impl Sim {
    fn new(seed: u64, n: usize, faults: Faults) -> Sim {
        let mut sim = Sim {
            seed,
            rng: Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0xC0FF_EE),
            now: 0,
            timing: Timing::default(),
            faults,
            addrs: Vec::new(),
            nodes: Vec::new(),
            group: Vec::new(),
            net: Vec::new(),
            fresh: 0,
            log: Vec::new(),
            issued: BTreeSet::new(),
            lost: BTreeSet::new(),
            sessions: Vec::new(),
            client_rate: 0,
            shared_keys: 4,
            duplicates: 0,
            gave_up: 0,
        };
        for _ in 0..n {
            let i = sim.add_address();
            sim.boot(i);
        }
        sim
    }

    fn fresh(&mut self) -> u64 {
        self.fresh += 1;
        self.fresh
    }

    fn with_sessions(mut self, count: usize, rate: u64) -> Sim {
        self.sessions = (0..count).map(|_| Session::default()).collect();
        self.client_rate = rate;
        self
    }

    /// A new address, with no replica running at it yet.
    fn add_address(&mut self) -> usize {
        self.addrs.push(addr(self.addrs.len()));
        self.nodes.push(None);
        self.group.push(0);
        self.addrs.len() - 1
    }

    /// Starts a new incarnation at address `i`, with `VIEW` naming every address.
    fn boot(&mut self, i: usize) {
        let incarnation = format!("inc{}", self.fresh());
        let replica = Replica::new(
            self.addrs[i].clone(),
            &incarnation,
            &self.addrs,
            self.timing.clone(),
            self.now,
        );
        let epoch = self.fresh();
        self.nodes[i] = Some(Node {
            replica,
            epoch,
            queues: BTreeMap::new(),
            audited: None,
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

    fn partition(&mut self, groups: &[u64]) {
        self.group = groups.to_vec();
    }

    fn heal(&mut self) {
        self.group = vec![0; self.nodes.len()];
    }

    // ----- network ---------------------------------------------------------

    fn latency(&mut self) -> Millis {
        let base = 1 + self.rng.below(self.faults.latency);
        if self.rng.chance(self.faults.slow) {
            base + 500 + self.rng.below(2500)
        } else {
            base
        }
    }

    fn send(&mut self, from: usize, to: &SocketAddress, request: Request, batch: Batch) {
        let epoch = self.nodes[from].as_ref().map_or(0, |n| n.epoch);
        let Some(target) = self.addrs.iter().position(|a| a == to) else {
            return self.fail(from, epoch, to.clone(), request.kind(), batch);
        };
        if self.rng.chance(self.faults.dup) {
            let at = self.now + self.latency();
            let copy = Packet::Request {
                from,
                epoch,
                to: target,
                request: request.clone(),
                batch,
                copy: true,
            };
            self.net.push((at, copy));
        }
        let at = self.now + self.latency();
        self.net.push((
            at,
            Packet::Request {
                from,
                epoch,
                to: target,
                request,
                batch,
                copy: false,
            },
        ));
    }

    /// The sender of a lost request learns of it after a timeout.
    fn fail(&mut self, to: usize, epoch: u64, peer: SocketAddress, kind: Kind, batch: Batch) {
        let at = self.now + 50 + self.rng.below(950);
        let result = Err("timed out".to_string());
        self.net.push((
            at,
            Packet::Reply {
                to,
                epoch,
                peer,
                kind,
                result,
                batch,
            },
        ));
    }

    fn deliver(&mut self, packet: Packet) {
        match packet {
            Packet::Request {
                from,
                epoch,
                to,
                request,
                batch,
                copy,
            } => {
                let (kind, peer) = (request.kind(), self.addrs[to].clone());
                let reachable =
                    self.group[from] == self.group[to] && !self.rng.chance(self.faults.drop);
                let Some(node) = self.nodes[to].as_mut().filter(|_| reachable) else {
                    if !copy {
                        self.fail(from, epoch, peer, kind, batch);
                    }
                    return;
                };
                let reply = node.replica.handle(request, self.now);
                self.flush(to);
                if copy {
                    self.duplicates += 1;
                } else if self.rng.chance(self.faults.drop) {
                    self.fail(from, epoch, peer, kind, batch);
                } else {
                    let at = self.now + self.latency();
                    let result = Ok(reply);
                    self.net.push((
                        at,
                        Packet::Reply {
                            to: from,
                            epoch,
                            peer,
                            kind,
                            result,
                            batch,
                        },
                    ));
                }
            }
            Packet::Reply {
                to,
                epoch,
                peer,
                kind,
                result,
                batch,
            } => {
                let sender = self.addrs.iter().position(|a| *a == peer);
                if result.is_ok() && sender.is_some_and(|s| self.group[s] != self.group[to]) {
                    return self.fail(to, epoch, peer, kind, batch);
                }
                let Some(node) = self.nodes[to].as_mut().filter(|n| n.epoch == epoch) else {
                    return;
                };
                if let Some((generation, n)) = batch {
                    let queue = node.queues.get_mut(&peer);
                    if let Some(q) = queue.filter(|q| q.generation == generation && q.in_flight) {
                        q.in_flight = false;
                        if matches!(result, Ok(Reply::Ack { .. })) {
                            q.writes.drain(..n);
                            q.backoff = 50;
                        } else {
                            q.retry_at = self.now + q.backoff;
                            q.backoff = (q.backoff * 2).min(2000);
                        }
                    }
                }
                node.replica.on_reply(&peer, kind, result, self.now);
                self.flush(to);
            }
        }
    }

    /// Carries out the effects replica `i` produced.
    fn flush(&mut self, i: usize) {
        let Some(node) = self.nodes[i].as_mut() else {
            return;
        };
        for effect in node.replica.take_effects() {
            match effect {
                Effect::Send { to, request } => self.send(i, &to, request, None),
                Effect::Replicate { to, write } => {
                    let generation = self.fresh();
                    let node = self.nodes[i].as_mut().expect("up");
                    let queue = node.queues.entry(to).or_insert_with(|| Queue {
                        writes: VecDeque::new(),
                        generation,
                        in_flight: false,
                        retry_at: 0,
                        backoff: 50,
                    });
                    queue.writes.push_back(write);
                }
                Effect::DropQueue { peer } => {
                    self.nodes[i].as_mut().expect("up").queues.remove(&peer);
                }
            }
        }
    }

    /// The transport of replica `i` sends a batch on every idle queue.
    fn pump(&mut self, i: usize) {
        let Some(node) = self.nodes[i].as_mut() else {
            return;
        };
        let me = node.replica.me().clone();
        let mut batches = Vec::new();
        for (peer, q) in node.queues.iter_mut() {
            if q.in_flight || q.writes.is_empty() || self.now < q.retry_at {
                continue;
            }
            let n = q.writes.len().min(1 + self.rng.below(8) as usize);
            q.in_flight = true;
            let writes = q.writes.iter().take(n).map(|w| Write::clone(w)).collect();
            batches.push((
                peer.clone(),
                Request::Replicate {
                    from: me.clone(),
                    writes,
                },
                (q.generation, n),
            ));
        }
        for (peer, request, batch) in batches {
            self.send(i, &peer, request, Some(batch));
        }
    }

    /// Hands the whole queue of `from` for `to` over at once, bypassing the
    /// network (for hand-built schedules).
    fn deliver_queue(&mut self, from: usize, to: usize) {
        let node = self.nodes[from].as_mut().expect("up");
        let me = node.replica.me().clone();
        let queue = node.queues.remove(&self.addrs[to]).expect("a queue");
        let writes = queue.writes.iter().map(|w| Write::clone(w)).collect();
        let (peer, now) = (self.addrs[to].clone(), self.now);
        let reply = self
            .replica_mut(to)
            .handle(Request::Replicate { from: me, writes }, now);
        self.flush(to);
        self.replica_mut(from)
            .on_reply(&peer, Kind::Replicate, Ok(reply), now);
        self.flush(from);
        self.audit_all();
    }

    // ----- time ------------------------------------------------------------

    fn step(&mut self) {
        self.now += STEP;
        let now = self.now;
        let (mut due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.net)
            .into_iter()
            .partition(|(at, _)| *at <= now);
        self.net = later;
        self.rng.shuffle(&mut due);
        for (_, packet) in due {
            self.deliver(packet);
        }
        let mut order: Vec<usize> = (0..self.nodes.len()).collect();
        self.rng.shuffle(&mut order);
        for i in order {
            self.pump(i);
            if let Some(node) = self.nodes[i].as_mut() {
                node.replica.tick(now);
            }
            self.flush(i);
        }
        self.clients();
        self.audit_all();
    }

    fn run(&mut self, ms: Millis) {
        for _ in 0..ms / STEP {
            self.step();
        }
    }

    /// Runs `ms` while faults strike at random: partitions, heals, crashes,
    /// restarts and changes in how lossy the network is.
    fn run_chaos(&mut self, ms: Millis) {
        for _ in 0..ms / STEP {
            let n = self.nodes.len();
            match self.rng.below(1000) {
                0..=2 => {
                    let groups: Vec<u64> = (0..n).map(|_| self.rng.below(3)).collect();
                    self.partition(&groups);
                }
                3..=6 => self.heal(),
                7..=8 if self.live().len() > 1 => {
                    let live = self.live();
                    let victim = live[self.rng.below(live.len() as u64) as usize];
                    self.crash(victim);
                }
                9..=14 => {
                    let dead: Vec<usize> = (0..n).filter(|&i| self.nodes[i].is_none()).collect();
                    if !dead.is_empty() {
                        let i = dead[self.rng.below(dead.len() as u64) as usize];
                        self.boot(i);
                    }
                }
                15..=16 => self.faults = [CALM, LOSSY, ROUGH][self.rng.below(3) as usize],
                _ => {}
            }
            self.step();
        }
    }

    // ----- clients ---------------------------------------------------------

    fn random_op(&mut self) -> Op {
        let shared = key(&format!("k{}", self.rng.below(self.shared_keys)));
        match self.rng.below(100) {
            0..=14 => Op::Put(key(&format!("u{}", self.fresh()))),
            15..=49 => Op::Put(shared),
            50..=59 => Op::Delete(shared),
            _ => Op::Get(shared),
        }
    }

    /// Every session with nothing to do may start an operation; waiting
    /// ones retry, sometimes at another replica.
    fn clients(&mut self) {
        for s in 0..self.sessions.len() {
            let live = self.live();
            let pending = match self.sessions[s].pending.take() {
                Some(p) => p,
                None if self.rng.chance(self.client_rate) => {
                    let op = self.random_op();
                    Pending {
                        op,
                        node: usize::MAX,
                        since: self.now,
                    }
                }
                None => continue,
            };
            if live.is_empty() {
                self.sessions[s].pending = Some(pending);
                continue;
            }
            let Pending {
                op,
                mut node,
                since,
            } = pending;
            if !live.contains(&node) || self.rng.chance(300) {
                node = live[self.rng.below(live.len() as u64) as usize];
            }
            if let Err(missing) = self.client(s, node, &op) {
                if self.now.saturating_sub(since) > CLIENT_WAIT {
                    self.gave_up += 1;
                    self.sessions[s] = Session::default();
                } else {
                    let now = self.now;
                    self.replica_mut(node).catch_up(&missing, now);
                    self.flush(node);
                    self.sessions[s].pending = Some(Pending { op, node, since });
                }
            }
        }
    }

    /// Session `s` performs `op` at replica `i`, passing its latest context:
    /// the value read or written, or the writes the replica lacks.
    fn client(&mut self, s: usize, i: usize, op: &Op) -> Result<Option<Value>, VectorClock> {
        let seed = self.seed;
        let sent = self.sessions[s].ctx.clone();
        let ctx = CausalContext::parse(Some(&sent)).expect("metadata round-trips");
        let (key, version, learned, value) = match op {
            Op::Get(key) => {
                let replica = self.replica(i);
                let read = replica.read(key, &ctx)?;
                let version = replica.store().get(key).cloned();
                assert_eq!(
                    read.value,
                    version.as_ref().and_then(|v| v.value.clone()),
                    "seed {seed}"
                );
                (key, version, read.learned, read.value)
            }
            Op::Put(key) | Op::Delete(key) => {
                let value = match op {
                    Op::Put(_) => Value::from_json(&self.fresh().to_string()).expect("json"),
                    _ => None,
                };
                let replica = self.replica_mut(i);
                let result = replica.write(key.clone(), value.clone(), &ctx)?;
                let version = replica.store().get(key).cloned();
                let learned = match result {
                    WriteResult::NotFound { learned } => learned,
                    WriteResult::Created { learned }
                    | WriteResult::Updated { learned }
                    | WriteResult::Deleted { learned } => {
                        let written = version.clone().expect("a write leaves a version");
                        assert_eq!(
                            written.value, value,
                            "seed {seed}: a write loses to the past"
                        );
                        self.issued.insert(written.dot.clone());
                        let deps = ctx.clock().clone();
                        self.log.push(Logged {
                            key: key.clone(),
                            version: written,
                            deps,
                        });
                        learned
                    }
                };
                self.flush(i);
                (key, version, learned, value)
            }
        };
        let at = &self.addrs[i];
        let expected = version.as_ref().map(|v| single(&v.dot)).unwrap_or_default();
        assert_eq!(
            learned, expected,
            "seed {seed}: {op:?} at {at} learned a dot it did not return"
        );
        let session = &mut self.sessions[s];
        if let Some(seen) = session.seen.get(key) {
            let newer = |v: &Version| v == seen || v.supersedes(seen);
            let ok = match &version {
                Some(v) => newer(v),
                // Only a forgotten tombstone at least as new may hide it.
                None => self
                    .log
                    .iter()
                    .any(|w| w.key == *key && w.version.is_tombstone() && newer(&w.version)),
            };
            assert!(ok, "seed {seed}: t={} session {s} {op:?} at {at} returned {version:?}, older than {seen:?}", self.now);
        }
        if let Some(v) = version {
            if session.seen.get(key).is_none_or(|seen| v.supersedes(seen)) {
                session.seen.insert(key.clone(), v);
            }
        }
        let reply = ctx.reply(&learned);
        if learned.covered_by(ctx.clock()) {
            assert_eq!(
                reply, sent,
                "seed {seed}: context not echoed when nothing was learned"
            );
        }
        session.ctx = reply;
        Ok(value)
    }

    // ----- invariants ------------------------------------------------------

    fn audit_all(&mut self) {
        for i in 0..self.nodes.len() {
            let Some(node) = self.nodes[i].as_ref() else {
                continue;
            };
            let r = &node.replica;
            let stats = r.stats();
            let signature = (
                r.progress(),
                stats.keys,
                stats.tombstones,
                r.applied().clone(),
            );
            if node.audited.as_ref() == Some(&signature) {
                continue;
            }
            if let Err(e) = self.audit(r) {
                panic!(
                    "seed {}: t={} replica {}: {e}",
                    self.seed, self.now, self.addrs[i]
                );
            }
            self.nodes[i].as_mut().expect("up").audited = Some(signature);
        }
    }

    /// The applied clock counts issued writes only, each with its
    /// dependencies, and the store holds the winner among them for each key.
    fn audit(&self, r: &Replica) -> Result<(), String> {
        let applied = r.applied();
        for (id, n) in applied.iter() {
            if !self.issued.contains(&Dot::new(id.clone(), n)) {
                return Err(format!("applied counts {id}:{n}, which was never issued"));
            }
        }
        let mut winners: BTreeMap<&Key, &Version> = BTreeMap::new();
        for w in self.log.iter().filter(|w| applied.contains(&w.version.dot)) {
            if !w.deps.covered_by(applied) {
                let missing = w.deps.missing_from(applied);
                return Err(format!(
                    "applied {} before its dependencies {missing:?}",
                    w.version.dot
                ));
            }
            let best = winners.entry(&w.key).or_insert(&w.version);
            if w.version.supersedes(best) {
                *best = &w.version;
            }
        }
        for (key, v) in r.store().iter() {
            if !applied.contains(&v.dot) {
                return Err(format!(
                    "store holds {key:?} from {}, not counted in {applied:?}",
                    v.dot
                ));
            }
            if winners.get(key) != Some(&v) {
                return Err(format!(
                    "store holds {key:?} = {v:?}, the winner is {:?}",
                    winners.get(key)
                ));
            }
        }
        match winners
            .iter()
            .find(|(k, v)| !v.is_tombstone() && r.store().get(k).is_none())
        {
            Some((key, v)) => Err(format!("store lost {key:?} = {v:?}")),
            None => Ok(()),
        }
    }

    /// Why the replicas have not converged, if they have not.
    fn divergence(&self) -> Option<String> {
        let view = print(&self.addrs.iter().collect::<Vec<_>>());
        let mut first = None;
        for (i, node) in self.nodes.iter().enumerate() {
            let at = &self.addrs[i];
            let Some(node) = node else {
                return Some(format!("{at} is down"));
            };
            let r = &node.replica;
            if !r.is_synced() || r.stats().buffered > 0 {
                return Some(format!("{at}: {:?}", r.stats()));
            }
            if r.view().print() != view {
                return Some(format!("{at} has view {}", r.view().print()));
            }
            let mut store: Vec<(Key, Version)> = r
                .store()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            store.sort_by(|a, b| a.0.cmp(&b.0));
            let state = (store, r.applied().clone());
            match &first {
                None => first = Some(state),
                Some(f) if *f != state => {
                    return Some(format!(
                        "{at} differs from {}:\n{f:?}\n{state:?}",
                        self.addrs[0]
                    ))
                }
                Some(_) => {}
            }
        }
        None
    }

    /// Heals, restarts crashed replicas, stops the clients and runs under
    /// `faults` until every replica holds the same store, clock and view.
    fn settle(&mut self, faults: Faults) {
        self.heal();
        self.faults = faults;
        for i in 0..self.nodes.len() {
            if self.nodes[i].is_none() {
                self.boot(i);
            }
        }
        let rate = std::mem::take(&mut self.client_rate);
        for session in &mut self.sessions {
            session.pending = None;
        }
        let deadline = self.now + 60_000;
        while self.divergence().is_some() {
            assert!(
                self.now < deadline,
                "seed {}: no convergence in 60 s: {}",
                self.seed,
                self.divergence().unwrap_or_default()
            );
            self.run(100);
        }
        self.client_rate = rate;
        self.assert_no_lost_writes();
    }

    /// Every write of an incarnation that never crashed is applied
    /// everywhere; a key written once (and never deleted) holds its value.
    fn assert_no_lost_writes(&self) {
        let mut writes: BTreeMap<&Key, Vec<&Logged>> = BTreeMap::new();
        for w in &self.log {
            writes.entry(&w.key).or_default().push(w);
        }
        for i in self.live() {
            let r = self.replica(i);
            for w in self
                .log
                .iter()
                .filter(|w| !self.lost.contains(&w.version.dot.replica))
            {
                let at = &self.addrs[i];
                assert!(
                    r.applied().contains(&w.version.dot),
                    "seed {}: {at} lacks {:?} {:?}",
                    self.seed,
                    w.key,
                    w.version
                );
                if let [only] = writes[&w.key][..] {
                    assert_eq!(
                        r.store().value(&only.key),
                        only.version.value.as_ref(),
                        "seed {}: {at}",
                        self.seed
                    );
                }
            }
        }
    }

    fn view_of(&self, i: usize) -> String {
        self.replica(i).view().print()
    }

    fn view_print(&self, members: &[usize]) -> String {
        print(&members.iter().map(|&i| &self.addrs[i]).collect::<Vec<_>>())
    }
}

fn seeds(n: u64) -> impl Iterator<Item = u64> {
    (0..n).map(|s| s * 7919 + 17)
}

#[test]
fn writes_reach_every_replica_despite_reordering_and_duplicates() {
    for seed in seeds(25) {
        let mut sim = Sim::new(seed, 3 + seed as usize % 3, ROUGH).with_sessions(4, 80);
        sim.run(6_000);
        sim.settle(Faults {
            drop: 0,
            slow: 0,
            ..ROUGH
        });
        assert!(
            sim.duplicates > 0 && sim.log.len() > 20,
            "seed {seed}: the run proved nothing"
        );
    }
}

#[test]
fn write_waits_in_buffer_until_dependency_arrives() {
    for seed in seeds(5) {
        let mut sim = Sim::new(seed, 3, CALM).with_sessions(1, 0);
        sim.settle(CALM);
        let (a, b, c, x, y) = (0, 1, 2, key("x"), key("y"));
        sim.client(0, a, &Op::Put(x.clone()))
            .expect("no context yet");
        let x_dot = sim.log.last().expect("logged").version.dot.clone();
        sim.deliver_queue(a, b);
        assert!(sim
            .client(0, b, &Op::Get(x.clone()))
            .expect("x applied at b")
            .is_some());
        let y_value = sim
            .client(0, b, &Op::Put(y.clone()))
            .expect("context satisfied");
        let y_dot = sim.log.last().expect("logged").version.dot.clone();
        // y reaches c before the x it depends on: held, not applied.
        sim.deliver_queue(b, c);
        let rc = sim.replica(c);
        assert!(
            !rc.applied().contains(&y_dot) && rc.store().get(&y).is_none(),
            "seed {seed}"
        );
        assert_eq!(rc.stats().buffered, 1, "seed {seed}");
        assert!(
            sim.client(0, c, &Op::Get(y.clone())).is_err(),
            "seed {seed}: served without x"
        );
        // x arrives: both are applied, in order.
        sim.deliver_queue(a, c);
        let rc = sim.replica(c);
        assert!(
            rc.applied().contains(&x_dot) && rc.applied().contains(&y_dot),
            "seed {seed}"
        );
        assert_eq!(rc.stats().buffered, 0, "seed {seed}");
        assert_eq!(
            sim.client(0, c, &Op::Get(y)).expect("satisfied"),
            y_value,
            "seed {seed}"
        );
        sim.settle(LOSSY);
    }
}

#[test]
fn partitioned_replicas_converge_after_heal() {
    for seed in seeds(20) {
        let mut sim = Sim::new(seed, 5, LOSSY).with_sessions(4, 100);
        sim.run(1_000);
        let mut groups = vec![0, 0, 1, 1, 1];
        sim.rng.shuffle(&mut groups);
        sim.partition(&groups);
        sim.run(6_000);
        for i in 0..5 {
            let side: Vec<usize> = (0..5).filter(|&j| groups[j] == groups[i]).collect();
            assert_eq!(
                sim.view_of(i),
                sim.view_print(&side),
                "seed {seed}: view during the partition"
            );
        }
        sim.settle(LOSSY);
    }
}

#[test]
fn crashed_replica_restarts_and_copies_state() {
    for seed in seeds(20) {
        let mut sim = Sim::new(seed, 4, LOSSY).with_sessions(3, 100);
        sim.run(3_000);
        let victim = sim.rng.below(4) as usize;
        let old = sim.replica(victim).me().id.clone();
        sim.crash(victim);
        sim.run(5_000);
        let others: Vec<usize> = (0..4).filter(|&i| i != victim).collect();
        for &i in &others {
            assert_eq!(
                sim.view_of(i),
                sim.view_print(&others),
                "seed {seed}: crashed replica still in a view"
            );
        }
        sim.boot(victim);
        sim.run(2_000);
        assert_ne!(
            sim.replica(victim).me().id,
            old,
            "seed {seed}: identity reused"
        );
        sim.settle(LOSSY);
        let deleted: BTreeSet<&Key> = sim
            .log
            .iter()
            .filter(|w| w.version.is_tombstone())
            .map(|w| &w.key)
            .collect();
        for w in sim
            .log
            .iter()
            .filter(|w| !sim.lost.contains(&w.version.dot.replica) && !deleted.contains(&w.key))
        {
            assert!(
                sim.replica(victim).store().value(&w.key).is_some(),
                "seed {seed}: restarted replica lacks {:?}",
                w.key
            );
        }
    }
}

#[test]
fn silent_replica_leaves_views_and_returns() {
    for seed in seeds(20) {
        let mut sim = Sim::new(seed, 4, LOSSY).with_sessions(2, 50);
        sim.run(1_000);
        let silent = sim.rng.below(4) as usize;
        let others: Vec<usize> = (0..4).filter(|&i| i != silent).collect();
        let crashed = seed % 2 == 1;
        if crashed {
            sim.crash(silent);
        } else {
            sim.partition(&(0..4).map(|i| u64::from(i == silent)).collect::<Vec<_>>());
        }
        sim.run(4_500);
        for &i in &others {
            assert_eq!(
                sim.view_of(i),
                sim.view_print(&others),
                "seed {seed}: silent replica still in a view"
            );
        }
        if crashed {
            sim.boot(silent);
        } else {
            assert_eq!(
                sim.view_of(silent),
                sim.view_print(&[silent]),
                "seed {seed}: cut-off replica's view"
            );
            sim.heal();
        }
        sim.run(4_000);
        for i in 0..4 {
            assert_eq!(
                sim.view_of(i),
                sim.view_print(&[0, 1, 2, 3]),
                "seed {seed}: replica not readmitted"
            );
        }
        sim.settle(LOSSY);
    }
}

#[test]
fn concurrent_writes_converge_on_every_replica() {
    for seed in seeds(25) {
        let n = 3 + seed as usize % 3;
        let mut sim = Sim::new(seed, n, Faults { slow: 100, ..LOSSY });
        sim.settle(CALM);
        sim.faults = Faults { slow: 100, ..LOSSY };
        for round in 0..5 {
            // Every replica takes a write to the same keys at the same instant,
            // from clients that know nothing of the others' writes.
            for i in 0..n {
                sim.sessions.push(Session::default());
                let s = sim.sessions.len() - 1;
                let target = key(&format!("c{}", (round + i) % 2));
                sim.client(s, i, &Op::Put(target)).expect("no context");
            }
            sim.run(300);
        }
        sim.settle(LOSSY);
        for target in [key("c0"), key("c1")] {
            let winner = sim
                .log
                .iter()
                .filter(|w| w.key == target)
                .map(|w| &w.version);
            let winner = winner
                .reduce(|a, b| if b.supersedes(a) { b } else { a })
                .expect("written");
            for i in 0..n {
                assert_eq!(
                    sim.replica(i).store().get(&target),
                    Some(winner),
                    "seed {seed}"
                );
            }
        }
    }
}

#[test]
fn random_faults_never_break_causality_or_convergence() {
    let (mut crashes, mut gave_up) = (0, 0);
    for seed in seeds(30) {
        let n = 3 + seed as usize % 3;
        let mut sim = Sim::new(seed, n, LOSSY).with_sessions(5, 120);
        sim.run_chaos(15_000);
        sim.settle(CALM);
        crashes += sim.lost.len();
        gave_up += sim.gave_up;
        // The settled cluster serves every session again.
        sim.run(1_000);
        sim.settle(CALM);
    }
    assert!(crashes > 0, "no crash was simulated");
    eprintln!("random faults: {crashes} crashes, {gave_up} sessions gave up");
}

#[test]
fn view_change_via_api_reaches_all_members() {
    for seed in seeds(20) {
        let mut sim = Sim::new(seed, 4, LOSSY).with_sessions(2, 50);
        sim.settle(LOSSY);
        let [a, b, c, d] = [0, 1, 2, 3];
        let removed = sim.addrs[d].clone();
        assert!(
            sim.replica_mut(a).view_remove(removed.clone()),
            "seed {seed}"
        );
        assert!(
            !sim.replica_mut(a).view_remove(removed.clone()),
            "seed {seed}: removed twice"
        );
        sim.flush(a);
        sim.run(2_000);
        for i in [a, b, c] {
            assert_eq!(
                sim.view_of(i),
                sim.view_print(&[a, b, c]),
                "seed {seed}: removal not relayed"
            );
        }
        // A replica that does not run yet is added, then starts.
        let e = sim.add_address();
        let (added, now) = (sim.addrs[e].clone(), sim.now);
        assert!(
            sim.replica_mut(b).view_add(added.clone(), now),
            "seed {seed}"
        );
        assert!(
            !sim.replica_mut(b).view_add(added, now),
            "seed {seed}: added twice"
        );
        sim.flush(b);
        sim.run(1_000);
        for i in [a, b, c] {
            assert_eq!(
                sim.view_of(i),
                sim.view_print(&[a, b, c, e]),
                "seed {seed}: addition not relayed"
            );
        }
        sim.boot(e);
        // The removed replica is added back elsewhere.
        let now = sim.now;
        assert!(sim.replica_mut(c).view_add(removed, now), "seed {seed}");
        sim.flush(c);
        sim.settle(LOSSY);
    }
}
