//! Wires the pieces together: the shared [`Node`], the HTTP server, the
//! transport and the ticker; runs until SIGTERM/SIGINT, then shuts down
//! gracefully (in-flight requests finish).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpServer};
use tokio::sync::{mpsc, watch};
use tracing::info;

use crate::address::SocketAddress;
use crate::causal::{CausalContext, VectorClock};
use crate::config::Config;
use crate::error::{ApiError, Error};
use crate::http;
use crate::metrics::Metrics;
use crate::replica::{Effect, Member, Millis, Replica};
use crate::transport::{self, Job, Queues};

/// How often the replica's timers are advanced.
pub const TICK_INTERVAL: Duration = Duration::from_millis(50);

/// How often a waiting request asks peers again for what it misses.
const CATCH_UP_INTERVAL: Duration = Duration::from_millis(250);

/// The state shared by the HTTP workers, the transport and the ticker.
pub struct Node {
    replica: Mutex<Replica>,
    progress: watch::Sender<u64>,
    published: AtomicU64,
    jobs: mpsc::UnboundedSender<Job>,
    queues: Queues,
    /// This node, for the tasks it starts.
    this: Weak<Node>,
    started: Instant,
    me: Member,
    /// The configuration the node runs with.
    pub config: Config,
    /// The replica's metrics.
    pub metrics: Metrics,
}

impl Node {
    /// A node for `config`; returns the receiving end of its jobs, for the
    /// transport.
    pub fn new(config: Config, incarnation: &str) -> (Arc<Node>, mpsc::UnboundedReceiver<Job>) {
        let replica = Replica::new(
            config.socket_address.clone(),
            incarnation,
            &config.view,
            config.timing.clone(),
            0,
        );
        let me = replica.me().clone();
        let (jobs, receiver) = mpsc::unbounded_channel();
        let node = Arc::new_cyclic(|this| Node {
            replica: Mutex::new(replica),
            progress: watch::channel(0).0,
            published: AtomicU64::new(0),
            jobs,
            queues: Queues::default(),
            this: this.clone(),
            started: Instant::now(),
            me,
            config,
            metrics: Metrics::new(),
        });
        (node, receiver)
    }

    /// This incarnation.
    pub fn me(&self) -> &Member {
        &self.me
    }

    /// Milliseconds since the node started (the protocol's clock).
    pub fn now(&self) -> Millis {
        self.started.elapsed().as_millis() as Millis
    }

    fn lock(&self) -> MutexGuard<'_, Replica> {
        // A panic while holding the lock ends the process (see the panic
        // hook in the binary), so a poisoned lock is never observed alive.
        self.replica.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the replica under its lock, then ships the effects it
    /// produced and wakes requests waiting for writes to be applied.
    pub fn with_replica<R>(&self, f: impl FnOnce(&mut Replica, Millis) -> R) -> R {
        let now = self.now();
        let (result, effects, progress) = {
            let mut replica = self.lock();
            let result = f(&mut replica, now);
            (result, replica.take_effects(), replica.progress())
        };
        for effect in effects {
            self.carry_out(effect);
        }
        // Most calls apply nothing: skip the channel's lock unless they did.
        if self.published.swap(progress, Ordering::AcqRel) != progress {
            self.progress.send_replace(progress);
        }
        result
    }

    /// The peers' replication queues.
    pub fn queues(&self) -> &Queues {
        &self.queues
    }

    /// Hands an effect to the transport: writes straight into the peers'
    /// queues, the rest to the transport's thread. (The job receiver only
    /// goes away at shutdown.)
    fn carry_out(&self, effect: Effect) {
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
                        actix_rt::spawn(transport::drain_queue(node, peer, queue));
                    } else {
                        let _ = self.jobs.send(Job::Drain { peer, queue });
                    }
                }
            }
            Effect::DropQueue { peer } => self.queues.drop_queue(&peer),
            Effect::Send { to, request } => {
                let _ = self.jobs.send(Job::Send { to, request });
            }
        }
    }

    /// Runs `op` once `context` is satisfied here, pulling missing writes
    /// from peers meanwhile; 503 after the configured wait.
    pub async fn when_ready<R>(
        &self,
        context: &CausalContext,
        method: &actix_web::http::Method,
        op: impl FnMut(&mut Replica) -> Result<R, VectorClock>,
    ) -> Result<R, ApiError> {
        // The common case: the context is satisfied at once.
        let mut op = op;
        if let Ok(result) = self.with_replica(|replica, _| op(replica)) {
            return Ok(result);
        }
        // Subscribe before trying again, so no progress made in between is
        // missed.
        let deadline = tokio::time::Instant::now() + self.config.causal_wait;
        let mut progress = self.progress.subscribe();
        let mut next_catch_up = tokio::time::Instant::now();
        loop {
            let now = tokio::time::Instant::now();
            let ask = now >= next_catch_up;
            let attempt = self.with_replica(|replica, millis| match op(replica) {
                Ok(result) => Ok(result),
                Err(missing) => {
                    if ask {
                        replica.catch_up(&missing, millis);
                    }
                    Err(missing)
                }
            });
            let missing = match attempt {
                Ok(result) => return Ok(result),
                Err(missing) => missing,
            };
            if ask {
                next_catch_up = now + CATCH_UP_INTERVAL;
            }
            if now >= deadline {
                tracing::info!(?missing, "causal dependencies not satisfied in time");
                return Err(ApiError::new(Error::DependenciesNotSatisfied, method).with(
                    "causal-metadata",
                    context.reply(&VectorClock::new()).to_value(),
                ));
            }
            let wake = deadline.min(next_catch_up);
            let _ = tokio::time::timeout_at(wake, progress.changed()).await;
        }
    }
}

/// A node serving on a bound socket.
pub struct Running {
    /// The address actually bound (useful with port 0).
    pub local_addr: SocketAddr,
    /// The node.
    pub node: Arc<Node>,
    /// Resolves when the server has shut down.
    pub server: actix_web::dev::Server,
}

/// Binds the HTTP server and starts the transport and the ticker. Must be
/// called inside an actix system; await `server` to run until a signal.
pub fn start(mut config: Config) -> std::io::Result<Running> {
    if let Some(name) = &config.view_dns {
        // Seed the view from DNS, so that the start-up sync has members to
        // copy from; the answer may take a moment while the name appears.
        let deadline = Instant::now() + STARTUP_DNS_WAIT;
        loop {
            let found = resolve(name);
            if !found.is_empty() || Instant::now() >= deadline {
                for address in found {
                    if !config.view.contains(&address) {
                        config.view.push(address);
                    }
                }
                config.view.sort();
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    let incarnation = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let listen = config.listen;
    let workers = config.workers;
    let (node, jobs) = Node::new(config, &incarnation);
    let app_node = web::Data::from(node.clone());
    let server = HttpServer::new(move || {
        App::new()
            .wrap(actix_web::middleware::from_fn(http::observe))
            .configure(|c| http::configure(c, app_node.clone()))
    })
    .workers(workers)
    .shutdown_timeout(10)
    .bind(listen)
    .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {listen}: {e}")))?;
    let local_addr = server.addrs().first().copied().unwrap_or(listen);
    let server = server.run();
    transport::spawn(node.clone(), jobs);
    spawn_ticker(node.clone());
    if let Some(name) = node.config.view_dns.clone() {
        spawn_dns_watch(node.clone(), name);
    }
    info!(
        address = %node.me().address,
        id = %node.me().id,
        listen = %local_addr,
        view = %node.with_replica(|r, _| r.view().print()),
        "replica started"
    );
    Ok(Running {
        local_addr,
        node,
        server,
    })
}

/// How long a starting replica waits for `VIEW_DNS` to list anything.
const STARTUP_DNS_WAIT: Duration = Duration::from_secs(5);

/// The addresses `name` (host:port) resolves to now; empty on failure.
fn resolve(name: &SocketAddress) -> Vec<SocketAddress> {
    use std::net::ToSocketAddrs;
    match name.as_str().to_socket_addrs() {
        Ok(found) => found
            .filter_map(|a| SocketAddress::parse(&a.to_string()).ok())
            .collect(),
        Err(error) => {
            tracing::warn!(name = %name, %error, "could not resolve VIEW_DNS");
            Vec::new()
        }
    }
}

/// Re-resolves `VIEW_DNS` periodically and hands the answer to the replica.
fn spawn_dns_watch(node: Arc<Node>, name: SocketAddress) {
    actix_rt::spawn(async move {
        let mut interval = tokio::time::interval(node.config.view_dns_interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let found = match tokio::net::lookup_host(name.as_str()).await {
                Ok(found) => found
                    .filter_map(|a| SocketAddress::parse(&a.to_string()).ok())
                    .collect(),
                Err(error) => {
                    tracing::warn!(name = %name, %error, "could not resolve VIEW_DNS");
                    continue;
                }
            };
            tracing::debug!(name = %name, ?found, "VIEW_DNS resolved");
            node.with_replica(|replica, now| replica.set_dns_members(found, now));
        }
    });
}

fn spawn_ticker(node: Arc<Node>) {
    actix_rt::spawn(async move {
        let mut interval = tokio::time::interval(TICK_INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            node.with_replica(|replica, now| replica.tick(now));
        }
    });
}
