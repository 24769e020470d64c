//! The simulated cluster: replicas at fixed addresses, the simulated clock,
//! messages in flight, crashes and restarts, and the loop that steps them.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use crate::address::SocketAddress;
use crate::causal::{Dot, ReplicaId, VectorClock};
use crate::store::{Key, Store, Version};

use super::super::saved::Saved;
use super::super::{Kind, Millis, Replica, Reply, Request, Timing, Write};

use super::rng::{Faults, Rng};
use super::session::{Logged, Session};
use super::trace::{trace_at, Event, Trace};

/// Simulated time between two steps.
pub(in crate::replica) const STEP: Millis = 10;
/// How long a client waits for its context before giving up (the 503).
pub(in crate::replica) const CLIENT_WAIT: Millis = 10_000;

/// The pace of simulated replicas: the defaults, but replicas are
/// forgotten after 8 s of silence, and copies come in pages of 8 keys.
pub(in crate::replica) fn sim_timing() -> Timing {
    Timing {
        suspect_timeout: 8_000,
        gc_interval: 2_000,
        page_keys: 8,
        ..Timing::default()
    }
}

/// One replication queue of the transport.
#[derive(Default)]
pub(in crate::replica) struct Queue {
    pub(in crate::replica) writes: VecDeque<Arc<Write>>,
    pub(in crate::replica) generation: u64,
    pub(in crate::replica) in_flight: bool,
    pub(in crate::replica) retry_at: Millis,
    pub(in crate::replica) backoff: Millis,
}

/// A running incarnation, and what its last audit established.
pub(in crate::replica) struct Node {
    pub replica: Replica,
    pub(in crate::replica) epoch: u64,
    pub(in crate::replica) queues: BTreeMap<SocketAddress, Queue>,
    pub(in crate::replica) signature: (u64, usize, usize),
    pub(in crate::replica) audited: VectorClock,
    pub(in crate::replica) winners: BTreeMap<Key, Version>,
    /// View size, suspects, readiness and copying, as last traced.
    pub(in crate::replica) shown: (usize, usize, bool, bool),
}

/// A replication batch: its queue's generation and how many writes it holds.
pub(in crate::replica) type Batch = Option<(u64, usize)>;

/// What a message in flight concerns: replica `node` (incarnation `epoch`)
/// sent `peer` a request of `kind`, maybe a batch.
#[derive(Clone)]
pub(in crate::replica) struct Head {
    pub(in crate::replica) node: usize,
    pub(in crate::replica) epoch: u64,
    pub(in crate::replica) peer: SocketAddress,
    pub(in crate::replica) kind: Kind,
    pub(in crate::replica) batch: Batch,
}

pub(in crate::replica) enum Body {
    /// The request; `true` for a duplicate whose reply nobody waits for.
    Request(Request, bool),
    /// The answer, or the failure to get one, on its way back to `node`.
    Reply(Result<Reply, String>),
}

#[derive(Default)]
pub(in crate::replica) struct Sim {
    pub rng: Rng,
    pub now: Millis,
    pub faults: Faults,
    pub timing: Timing,
    pub addrs: Vec<SocketAddress>,
    pub nodes: Vec<Option<Node>>,
    pub group: Vec<u64>,
    /// Messages in flight, by arrival time (and a tie-breaker).
    pub(in crate::replica) net: BTreeMap<(Millis, u64), (Head, Body)>,
    pub(in crate::replica) fresh: u64,
    pub log: Vec<Logged>,
    pub(in crate::replica) issued: BTreeMap<Dot, usize>,
    /// Incarnations that crashed: their unspread writes may be lost.
    pub lost: BTreeSet<ReplicaId>,
    /// Addresses whose replica is gone for good (never restarted).
    pub gone: BTreeSet<usize>,
    /// What crashed replicas kept on disk, by address (see `disk.rs`).
    pub(in crate::replica) disks: BTreeMap<usize, (Saved, Store)>,
    /// The own writes of crashed replicas whose disk held a state that is
    /// not whole, written again by their next incarnation (see `disk.rs`).
    pub(in crate::replica) rescues: BTreeMap<usize, crate::replica::Rescued>,
    /// Whether random crashes keep the disk (half of them do).
    pub(in crate::replica) with_disks: bool,
    /// How many restarts were on a disk.
    pub(in crate::replica) restored: usize,
    pub sessions: Vec<Session>,
    /// Chance per mille per step that an idle session starts an operation.
    pub client_rate: u64,
    pub duplicates: u64,
    /// The last steps, printed if the test fails.
    pub(super) trace: Trace,
    /// The shard group the replicas replicate in (`s1e1.` starts their
    /// incarnations), for a shard of a sharded store; empty unsharded.
    pub(in crate::replica) shard_group: String,
}

pub(in crate::replica) fn key(text: &str) -> Key {
    Key::parse(text).expect("valid key")
}

impl Sim {
    /// No replica yet.
    pub(in crate::replica) fn empty(seed: u64, faults: Faults) -> Sim {
        let mut sim = Sim::default();
        (sim.rng, sim.faults, sim.timing) = (Rng::seeded(seed), faults, sim_timing());
        sim.trace.seed = seed;
        sim
    }

    /// `n` replicas started one after the other, each with a `VIEW` naming
    /// those started before it (so each joins a running store).
    pub(in crate::replica) fn new(seed: u64, n: usize, faults: Faults) -> Sim {
        let mut sim = Sim::empty(seed, faults);
        for _ in 0..n {
            let i = sim.add_address();
            sim.boot(i);
        }
        sim
    }

    /// Like [`Sim::new_store`], for the shard whose group is `group`: the
    /// replicas' incarnations name it (see `ReplicaId::group`).
    pub(in crate::replica) fn new_shard(seed: u64, n: usize, faults: Faults, group: &str) -> Sim {
        let mut sim = Sim::empty(seed, faults);
        sim.shard_group = format!("{group}.");
        for _ in 0..n {
            sim.add_address();
        }
        for i in 0..n {
            sim.boot(i);
        }
        sim
    }

    /// A new store: `n` replicas whose `VIEW` names all of them, started
    /// at the same instant.
    pub(in crate::replica) fn new_store(seed: u64, n: usize, faults: Faults) -> Sim {
        let mut sim = Sim::empty(seed, faults);
        for _ in 0..n {
            sim.add_address();
        }
        for i in 0..n {
            sim.boot(i);
        }
        sim
    }

    pub(in crate::replica) fn fresh(&mut self) -> u64 {
        self.fresh += 1;
        self.fresh
    }

    /// A new address, with no replica running at it yet.
    pub(in crate::replica) fn add_address(&mut self) -> usize {
        let text = format!("10.0.0.{}:8085", self.addrs.len() + 1);
        self.addrs.push(SocketAddress::parse(&text).expect("valid"));
        self.nodes.push(None);
        self.group.push(0);
        self.addrs.len() - 1
    }

    /// Starts a new incarnation at address `i`, its `VIEW` naming every address.
    pub(in crate::replica) fn boot(&mut self, i: usize) {
        let n = self.fresh();
        let incarnation = format!("{}inc{n}", self.shard_group);
        self.boot_as(i, &incarnation);
    }

    /// Starts the incarnation `incarnation` at address `i`.
    pub(in crate::replica) fn boot_as(&mut self, i: usize, incarnation: &str) {
        let view = self.addrs.clone();
        self.boot_with(i, incarnation, &view);
    }

    /// Starts a new incarnation at address `i`, its `VIEW` naming only the
    /// addresses of `seeds`.
    pub(in crate::replica) fn boot_seeded(&mut self, i: usize, seeds: &[usize]) {
        let n = self.fresh();
        let incarnation = format!("{}inc{n}", self.shard_group);
        let view: Vec<SocketAddress> = seeds.iter().map(|&j| self.addrs[j].clone()).collect();
        self.boot_with(i, &incarnation, &view);
    }

    pub(in crate::replica) fn boot_with(
        &mut self,
        i: usize,
        incarnation: &str,
        view: &[SocketAddress],
    ) {
        let (me, now) = (self.addrs[i].clone(), self.now);
        let replica = Replica::new(me, incarnation, view, self.timing.clone(), now);
        self.disks.remove(&i);
        self.rescues.remove(&i);
        self.start_node(i, replica);
    }

    /// Runs `replica` at address `i`.
    pub(in crate::replica) fn start_node(&mut self, i: usize, replica: Replica) {
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

    pub(in crate::replica) fn crash(&mut self, i: usize) {
        if let Some(node) = self.nodes[i].take() {
            self.trace.push(self.now, Event::Crash(i));
            self.lost.insert(node.replica.me().id.clone());
        }
    }

    pub(in crate::replica) fn replica(&self, i: usize) -> &Replica {
        &self.nodes[i].as_ref().expect("replica is up").replica
    }

    pub(in crate::replica) fn replica_mut(&mut self, i: usize) -> &mut Replica {
        &mut self.nodes[i].as_mut().expect("replica is up").replica
    }

    pub(in crate::replica) fn live(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].is_some())
            .collect()
    }

    // ----- time ------------------------------------------------------------

    pub(in crate::replica) fn step(&mut self) {
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

    pub(in crate::replica) fn run(&mut self, ms: Millis) {
        for _ in 0..ms / STEP {
            self.step();
        }
    }

    /// Heals, restarts crashed replicas, idles the clients and runs under
    /// `faults` until every replica holds the same store, clock and view.
    pub(in crate::replica) fn settle(&mut self, faults: Faults) {
        (self.group, self.faults) = (vec![0; self.nodes.len()], faults);
        for i in 0..self.nodes.len() {
            if self.nodes[i].is_none() && !self.gone.contains(&i) {
                self.restart(i);
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
                let dot = &w.version.dot;
                // A version handed over from another shard is counted by
                // that shard's group, not this one's.
                let here = r.known().contains(dot) || r.known().is_foreign(&dot.replica);
                assert!(here, "{w:?} lost");
                let replaced = r.store().replaced_in_table(&w.key, &w.version)
                    || super::session::replaced_sibling(&self.log, &w.key, &w.version)
                    || super::session::is_marker(&w.key, &w.version);
                if writes[&w.key] == 1 && !replaced {
                    assert_eq!(r.store().value(&w.key), w.version.value);
                }
            }
        }
    }
}
