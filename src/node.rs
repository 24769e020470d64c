//! The state the adapters share: the replica behind its lock, the peers'
//! replication queues, the configuration and the metrics; client requests
//! waiting for their causal context ([`Node::serve`]: the bounded wait,
//! the pulls meanwhile, the 503 when it runs out); and the hand-over of
//! acknowledged writes when the replica stops ([`Node::hand_over`]).
//!
//! Every adapter (HTTP handlers, the transport, the ticker) reaches the
//! replica through a [`Node`]: [`Node::with_replica`] runs a step of the
//! state machine under the write lock and carries out the effects it
//! produced once the lock is released; [`Node::read_replica`] looks under
//! the read lock, so that client reads do not queue behind one another.
//! Effects leave for the transport without this module knowing how it
//! talks: writes go straight into the peers' [`Queues`], the rest through
//! a channel of [`Job`]s the transport drains.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use crate::address::SocketAddress;
use crate::causal::{CausalContext, ReplicaId};
use crate::concern::WriteConcern;
use crate::config::Config;
use crate::durable::Disk;
use crate::metrics::Metrics;
use crate::queues::{PeerQueue, Queues};
use crate::replica::{Effect, Member, Millis, Replica, Request, Wait};
use crate::shard::Cluster;

/// How many of a run's incarnations a node remembers (see
/// [`Node::incarnations`]): one per shard group it was placed in, far more
/// than can be rescuing their writes at once.
const INCARNATIONS_KEPT: usize = 32;

/// How often a waiting request asks peers again for what it misses.
const CATCH_UP_INTERVAL: Duration = Duration::from_millis(250);

/// Starts, on the current thread's event loop, the task that drains a
/// peer's new replication queue (the transport's).
pub type Drainer = fn(Arc<Node>, SocketAddress, Arc<PeerQueue>);

/// How often a write waiting for its concern looks again.
const CONCERN_POLL: Duration = Duration::from_millis(10);

/// Work for the transport's thread.
pub enum Job {
    /// Send a one-off request and hand its reply to the replica.
    Send {
        /// The peer.
        to: SocketAddress,
        /// The request.
        request: Request,
        /// The replica that made it (see [`Node::generation`]): a request
        /// of a replica since replaced is not sent, nor its reply handed on.
        generation: u64,
    },
    /// Start the task that drains a new queue (for a queue made on a
    /// thread without an event loop).
    Drain {
        /// The peer.
        peer: SocketAddress,
        /// Its queue.
        queue: Arc<PeerQueue>,
    },
}

/// The state shared by the HTTP workers, the transport and the ticker.
pub struct Node {
    replica: RwLock<Replica>,
    progress: watch::Sender<u64>,
    published: AtomicU64,
    jobs: mpsc::UnboundedSender<Job>,
    queues: Queues,
    /// Starts a queue's task on the current thread's event loop.
    drainer: Drainer,
    /// This node, for the tasks it starts.
    this: Weak<Node>,
    started: Instant,
    me: RwLock<Member>,
    /// The incarnations this run of the node has been, oldest first (the
    /// last [`INCARNATIONS_KEPT`]).
    incarnations: Mutex<Vec<ReplicaId>>,
    /// The replica's disk, with `DATA_DIR`.
    disk: Option<Disk>,
    /// Writes for peers produced by steps whose batch is not durable yet,
    /// with that batch's number, oldest first.
    held: Mutex<VecDeque<(u64, Effect)>>,
    /// What the node knows of the other shards, in a sharded store.
    cluster: std::sync::OnceLock<Cluster>,
    /// How many times the replica was replaced by another (a node that
    /// changed shard group).
    generation: AtomicU64,
    /// The configuration the node runs with.
    pub config: Config,
    /// The replica's metrics.
    pub metrics: Metrics,
}

impl Node {
    /// A node for `config` running `replica`, on `disk` if it has one;
    /// returns the receiving end of its jobs, for the transport, which
    /// `drainer` belongs to.
    pub fn new(
        config: Config,
        replica: Replica,
        disk: Option<Disk>,
        drainer: Drainer,
    ) -> (Arc<Node>, mpsc::UnboundedReceiver<Job>) {
        let me = replica.me().clone();
        let (jobs, receiver) = mpsc::unbounded_channel();
        let node = Arc::new_cyclic(|this| Node {
            replica: RwLock::new(replica),
            progress: watch::channel(0).0,
            published: AtomicU64::new(0),
            jobs,
            queues: Queues::default(),
            drainer,
            this: this.clone(),
            started: Instant::now(),
            incarnations: Mutex::new(vec![me.id.clone()]),
            me: RwLock::new(me),
            disk,
            held: Mutex::new(VecDeque::new()),
            cluster: std::sync::OnceLock::new(),
            generation: AtomicU64::new(0),
            config,
            metrics: Metrics::new(),
        });
        if let Some(disk) = &node.disk {
            let this = Arc::downgrade(&node);
            disk.on_durable(move |durable| {
                if let Some(node) = this.upgrade() {
                    node.release(durable);
                }
            });
        }
        (node, receiver)
    }

    /// This incarnation.
    pub fn me(&self) -> Member {
        self.me.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The incarnations this run of the node has been, oldest first: the
    /// one it is now last (see `sharding::wire::Runner`).
    pub fn incarnations(&self) -> Vec<ReplicaId> {
        self.incarnations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The replica is now `me`.
    fn set_me(&self, me: Member) {
        let mut ran = self.incarnations.lock().unwrap_or_else(|p| p.into_inner());
        if ran.last() != Some(&me.id) {
            if ran.len() == INCARNATIONS_KEPT {
                ran.remove(0);
            }
            ran.push(me.id.clone());
        }
        *self.me.write().unwrap_or_else(|p| p.into_inner()) = me;
    }

    /// What the node knows of the other shards; `None` in an unsharded
    /// store.
    pub fn cluster(&self) -> Option<&Cluster> {
        self.cluster.get()
    }

    /// This node, shared (for a task it starts).
    pub fn shared(&self) -> Option<Arc<Node>> {
        self.this.upgrade()
    }

    /// Which replica the node runs: grows each time it is replaced.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Makes the node a node of a sharded store (once).
    pub fn set_cluster(&self, cluster: Cluster) {
        let version = cluster.map().epoch;
        if self.cluster.set(cluster).is_ok() {
            self.with_replica(|replica, _| replica.note_map_version(version));
        }
    }

    /// Runs `f` on the replica under its write lock; if it returns a new
    /// replica (this node changed shard group), that one takes the old
    /// one's place: every queue of the old one is dropped and writes held
    /// for it are discarded (it handed its writes over first).
    pub fn replace_replica(&self, f: impl FnOnce(&mut Replica, Millis) -> Option<Replica>) {
        let now = self.now();
        let replaced = {
            let mut replica = self.write_lock();
            match f(&mut replica, now) {
                Some(new) => {
                    self.generation.fetch_add(1, Ordering::AcqRel);
                    let old = std::mem::replace(&mut *replica, new);
                    self.set_me(replica.me().clone());
                    Some(old)
                }
                None => None,
            }
        };
        let Some(old) = replaced else {
            return;
        };
        self.held.lock().unwrap_or_else(|p| p.into_inner()).clear();
        for (peer, _) in old.view().peers().chain(old.view().suspects()) {
            self.queues.drop_queue(peer);
        }
        let progress = self.with_replica(|replica, now| {
            replica.tick(now);
            replica.progress()
        });
        self.progress
            .send_replace(progress.max(self.published.load(Ordering::Acquire) + 1));
    }

    /// Which members are known to hold this replica's writes; asks the
    /// others for their clocks.
    fn handover_now(&self) -> crate::replica::Handover {
        let handover = self.with_replica(|replica, now| {
            let handover = replica.handover();
            if !handover.lacking.is_empty() {
                replica.ask_clocks(now);
            }
            handover
        });
        if !handover.lacking.is_empty() {
            self.queues.hurry();
        }
        handover
    }

    /// Waits (up to the hand-over timeout) until each of `members` holds
    /// every write this replica acknowledged (a member out of the view
    /// never does); returns whether they do.
    pub async fn writes_held_by(&self, members: &[SocketAddress]) -> bool {
        let deadline = Instant::now() + self.config.handover_timeout;
        loop {
            let handover = self.handover_now();
            if handover.written == 0 || members.iter().all(|m| handover.held_by.contains(m)) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Milliseconds since the node started (the protocol's clock).
    pub fn now(&self) -> Millis {
        self.started.elapsed().as_millis() as Millis
    }

    fn write_lock(&self) -> RwLockWriteGuard<'_, Replica> {
        // A panic while holding the lock ends the process (see the panic
        // hook in the binary), so a poisoned lock is never observed alive.
        self.replica.write().unwrap_or_else(|p| p.into_inner())
    }

    fn read_lock(&self) -> RwLockReadGuard<'_, Replica> {
        self.replica.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Looks at the replica under the read lock (many readers at once).
    pub fn read_replica<R>(&self, f: impl FnOnce(&Replica) -> R) -> R {
        f(&self.read_lock())
    }

    /// Runs `f` on the replica under its write lock, saves what it changed
    /// (with a disk), then ships the effects it produced (writes for peers
    /// once what they carry is durable here) and wakes requests waiting for
    /// writes to be applied.
    pub fn with_replica<R>(&self, f: impl FnOnce(&mut Replica, Millis) -> R) -> R {
        self.with_replica_step(f).0
    }

    /// [`Node::with_replica`], and the number of the disk step that holds
    /// what `f` did (0 without a disk): once it is durable, so is all
    /// that `f` saw and changed (see [`Node::settle_to`]).
    pub fn with_replica_step<R>(&self, f: impl FnOnce(&mut Replica, Millis) -> R) -> (R, u64) {
        let now = self.now();
        let (result, effects, progress, batch, generation) = {
            let mut replica = self.write_lock();
            let result = f(&mut replica, now);
            let batch = self.disk.as_ref().map_or(0, |d| d.save(&mut replica));
            let generation = self.generation.load(Ordering::Acquire);
            (
                result,
                replica.take_effects(),
                replica.progress(),
                batch,
                generation,
            )
        };
        if let Some(disk) = &self.disk {
            disk.flush_soon();
        }
        for effect in effects {
            match (&self.disk, &effect) {
                (Some(disk), Effect::Replicate { .. }) if disk.durable() < batch => {
                    self.hold(batch, effect);
                }
                _ => self.carry_out(effect, generation),
            }
        }
        // Most calls apply nothing: skip the channel's lock unless they did.
        if self.published.swap(progress, Ordering::AcqRel) != progress {
            self.progress.send_replace(progress);
        }
        (result, batch)
    }

    /// Keeps a write for peers until batch `batch` is durable.
    fn hold(&self, batch: u64, effect: Effect) {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back((batch, effect));
        // The batch may have become durable meanwhile, with nobody left to
        // release it.
        if let Some(disk) = &self.disk {
            self.release(disk.durable());
        }
    }

    /// Ships the writes held for batches up to `durable`.
    fn release(&self, durable: u64) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        while held.front().is_some_and(|(batch, _)| *batch <= durable) {
            if let Some((_, effect)) = held.pop_front() {
                // Held writes are dropped when the replica is replaced.
                self.carry_out(effect, self.generation());
            }
        }
    }

    /// The replica's disk, with `DATA_DIR`.
    pub fn disk(&self) -> Option<&Disk> {
        self.disk.as_ref()
    }

    /// Waits until everything the replica's steps produced so far is
    /// durable (at once without a disk); the reason if the disk failed.
    pub async fn settle(&self) -> Result<(), String> {
        match &self.disk {
            None => Ok(()),
            Some(disk) => self.settle_to(disk.staged()).await,
        }
    }

    /// Waits until disk step `step` (see [`Node::with_replica_step`]) is
    /// durable, not for the steps others staged after it: under load, a
    /// request that waited for every step staged by the time it asked
    /// would often wait for one more sync than its own needs.
    pub async fn settle_to(&self, step: u64) -> Result<(), String> {
        match &self.disk {
            None => Ok(()),
            Some(disk) => disk.settled(step).await.map_err(|e| e.to_string()),
        }
    }

    /// Why the disk refuses a write bringing `incoming` bytes now, if it
    /// does.
    pub fn disk_refusal(&self, incoming: usize) -> Option<String> {
        self.disk.as_ref().and_then(|d| d.refusal(incoming))
    }

    /// Makes what the replica saved durable, marks the shutdown clean and
    /// stops the disk thread (after the last request was answered).
    pub fn close_disk(&self) {
        if let Some(disk) = &self.disk {
            disk.close();
        }
    }

    /// The peers' replication queues.
    pub fn queues(&self) -> &Queues {
        &self.queues
    }

    /// Hands an effect to the transport: writes straight into the peers'
    /// queues, the rest to the transport's thread. (The job receiver only
    /// goes away at shutdown.)
    fn carry_out(&self, effect: Effect, generation: u64) {
        // What a replica since replaced asked for is not done: its peers are
        // another group's now, and this node speaks for its new replica.
        if generation != self.generation() {
            return;
        }
        match effect {
            Effect::Replicate { to, write } => {
                for (peer, queue) in self.queues.push(&to, &write) {
                    let Some(node) = self.this.upgrade() else {
                        return;
                    };
                    // Drained from this thread when it runs an event loop:
                    // an HTTP worker, awake anyway while clients write, so
                    // that a peer's answer seldom has to wake a thread.
                    if actix_rt::Arbiter::try_current().is_some() {
                        (self.drainer)(node, peer, queue);
                    } else {
                        let _ = self.jobs.send(Job::Drain { peer, queue });
                    }
                }
            }
            Effect::DropQueue { peer } => self.queues.drop_queue(&peer),
            Effect::Send { to, request } => {
                let _ = self.jobs.send(Job::Send {
                    to,
                    request,
                    generation,
                });
            }
            Effect::Reincarnate => {
                let incarnation = crate::incarnation::fresh();
                let me = self.with_replica(|replica, _| {
                    replica.reincarnate(&incarnation);
                    replica.me().clone()
                });
                self.set_me(me);
            }
        }
    }

    /// Runs a client operation once `context` can be served here (its
    /// dependencies applied, the replica ready), pulling missing writes
    /// from peers meanwhile. After the configured wait, or at once for a
    /// write while shutting down, returns why it could not be served.
    /// `attempt` runs under a lock of the node's choosing (see
    /// [`Node::read_replica`] and [`Node::with_replica`]).
    pub async fn serve<R>(
        &self,
        mut attempt: impl FnMut(&Node) -> Result<R, Wait>,
    ) -> Result<R, Wait> {
        // The common case: served at once.
        let wait = match attempt(self) {
            Ok(result) => return Ok(result),
            Err(wait @ (Wait::ShuttingDown | Wait::Moved)) => return Err(wait),
            Err(wait) => wait,
        };
        // Subscribe before trying again, so no progress made in between is
        // missed.
        let deadline = tokio::time::Instant::now() + self.config.causal_wait;
        let mut progress = self.progress.subscribe();
        let mut next_catch_up = tokio::time::Instant::now();
        let mut wait = wait;
        loop {
            let now = tokio::time::Instant::now();
            if let Wait::Missing(missing) = &wait {
                if now >= next_catch_up {
                    self.with_replica(|replica, millis| replica.catch_up(missing, millis));
                    next_catch_up = now + CATCH_UP_INTERVAL;
                }
            }
            if now >= deadline {
                tracing::info!(?wait, "request not served in time");
                return Err(wait);
            }
            // Waiting for readiness: look again now and then, whether or
            // not progress is announced.
            let wake = match wait {
                Wait::Missing(_) => deadline.min(next_catch_up),
                _ => deadline.min(now + CATCH_UP_INTERVAL),
            };
            let _ = tokio::time::timeout_at(wake, progress.changed()).await;
            wait = match attempt(self) {
                Ok(result) => return Ok(result),
                Err(wait @ (Wait::ShuttingDown | Wait::Moved)) => return Err(wait),
                Err(wait) => wait,
            };
        }
    }

    /// Waits until `concern` replicas hold this replica's write number `n`
    /// (asking the members for their clocks meanwhile), up to the causal
    /// wait. Otherwise returns how many held it and how many were needed.
    pub async fn replicated(&self, n: u64, concern: WriteConcern) -> Result<(), (usize, usize)> {
        if concern == WriteConcern::One {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + self.config.causal_wait;
        loop {
            let (held, members) = self.read_replica(|replica| replica.holders(n));
            let needed = concern.needed(members);
            if held >= needed {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err((held, needed));
            }
            self.queues.hurry();
            self.with_replica(|replica, now| replica.ask_clocks(now));
            tokio::time::sleep(CONCERN_POLL).await;
        }
    }

    /// Runs a client read once `context` can be served here.
    pub async fn serve_read<R>(
        &self,
        context: &CausalContext,
        read: impl Fn(&Replica, &CausalContext) -> Result<R, Wait>,
    ) -> Result<R, Wait> {
        self.serve(|node| node.read_replica(|replica| read(replica, context)))
            .await
    }

    /// Stops taking writes, then waits (up to the hand-over timeout) until
    /// every member holds every write this replica acknowledged, asking
    /// them for their clocks meanwhile; at the deadline, one member holding
    /// them is enough. Logs the outcome.
    pub async fn hand_over(&self) {
        self.with_replica(|replica, _| replica.stop_taking_writes());
        let deadline = Instant::now() + self.config.handover_timeout;
        loop {
            let handover = self.handover_now();
            let written = handover.written;
            if written == 0 {
                tracing::info!("no write to hand over");
                return;
            }
            if handover.lacking.is_empty() && !handover.held_by.is_empty() {
                tracing::info!(writes = written, members = ?handover.held_by, "every acknowledged write is held by every member");
                return;
            }
            if Instant::now() >= deadline {
                if handover.held_by.is_empty() {
                    let why = if handover.lacking.is_empty() {
                        "no other member in the view"
                    } else {
                        "no member confirmed holding them in time"
                    };
                    tracing::warn!(
                        written,
                        missing = written - handover.best,
                        why,
                        "could not hand over every acknowledged write"
                    );
                } else {
                    tracing::info!(writes = written, held_by = ?handover.held_by, not_confirmed = ?handover.lacking, "every acknowledged write is held by a live member");
                }
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
