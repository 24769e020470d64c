//! Wires the pieces together: the shared [`Node`], the HTTP server, the
//! transport and the ticker; runs until SIGTERM/SIGINT, then stops in
//! order: no more writes, every acknowledged write handed over to a live
//! member (bounded by the hand-over timeout), requests in flight finished.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpServer};
use tracing::info;
use tracing_actix_web::TracingLogger;

use crate::address::SocketAddress;
use crate::config::Config;
use crate::durable::{self, Disk};
use crate::http;
use crate::node::Node;
use crate::replica::Replica;
use crate::shard::Cluster;
use crate::sharding;
use crate::transport;

/// How often the replica's timers are advanced.
pub const TICK_INTERVAL: Duration = Duration::from_millis(50);

/// How long requests in flight may take to finish once the server stops.
const SHUTDOWN_TIMEOUT_SECS: u64 = 10;

/// A node serving on a bound socket.
pub struct Running {
    /// The address actually bound (useful with port 0).
    pub local_addr: SocketAddr,
    /// The node.
    pub node: Arc<Node>,
    /// Resolves when the server has shut down.
    pub server: actix_web::dev::Server,
}

/// Binds the HTTP server and starts the transport, the ticker and the
/// signal watch, for a replica in memory that is `incarnation` (see
/// [`crate::incarnation`]). Must be called inside an actix system; await
/// `server` to run until a signal.
pub fn start(mut config: Config, incarnation: &str) -> std::io::Result<Running> {
    seed_from_dns(&mut config);
    let Some(count) = config.shard_count else {
        let replica = fresh_replica(&config, incarnation);
        return launch(config, replica, None);
    };
    // Sharded: the replica of this node's shard group, whose view is the
    // shard's members.
    let (map, incarnation, members) = sharding::start(&config.socket_address, &config.view, count);
    let replica = Replica::new(
        config.socket_address.clone(),
        &incarnation,
        &members,
        config.timing.clone(),
        0,
    );
    let cluster = Cluster::new(
        config.socket_address.clone(),
        map,
        Duration::from_millis(config.timing.failure_timeout),
    );
    launch_with(config, replica, None, Some(cluster))
}

/// Like [`start`], for a replica on the data directory `opened` (see
/// [`durable::open`]): the state it held, restored, or a new incarnation
/// `incarnation` if it held none to trust.
pub fn start_on_disk(
    mut config: Config,
    opened: durable::Opened,
    incarnation: &str,
) -> std::io::Result<Running> {
    seed_from_dns(&mut config);
    let replica = match opened.restored {
        Some((saved, store)) => Replica::restore(
            config.socket_address.clone(),
            saved,
            store,
            &config.view,
            config.timing.clone(),
            0,
        ),
        None => {
            let mut replica = fresh_replica(&config, incarnation);
            replica.rescue_when_ready(opened.rescued);
            replica
        }
    };
    launch(config, replica, Some(opened.disk))
}

/// Seeds the view from `VIEW_DNS`, so that the start-up sync has members
/// to copy from; the answer may take a moment while the name appears.
fn seed_from_dns(config: &mut Config) {
    if let Some(name) = &config.view_dns {
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
}

fn fresh_replica(config: &Config, incarnation: &str) -> Replica {
    Replica::new(
        config.socket_address.clone(),
        incarnation,
        &config.view,
        config.timing.clone(),
        0,
    )
}

fn launch(config: Config, replica: Replica, disk: Option<Disk>) -> std::io::Result<Running> {
    launch_with(config, replica, disk, None)
}

fn launch_with(
    config: Config,
    replica: Replica,
    disk: Option<Disk>,
    cluster: Option<Cluster>,
) -> std::io::Result<Running> {
    let listen = config.listen;
    let workers = config.workers;
    let (node, jobs) = Node::new(config, replica, disk, transport::start_drain);
    if let Some(cluster) = cluster {
        node.set_cluster(cluster);
    }
    let app_node = web::Data::from(node.clone());
    let server = HttpServer::new(move || {
        App::new()
            .wrap(actix_web::middleware::from_fn(http::record_metrics))
            .wrap(TracingLogger::<http::RequestSpan>::new())
            .configure(|c| http::configure(c, app_node.clone()))
    })
    .workers(workers)
    .disable_signals()
    .shutdown_timeout(SHUTDOWN_TIMEOUT_SECS)
    .bind(listen)
    .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {listen}: {e}")))?;
    let local_addr = server.addrs().first().copied().unwrap_or(listen);
    let server = server.run();
    transport::spawn(node.clone(), jobs);
    spawn_ticker(node.clone());
    // Sharded nodes exchange the shard map; an unsharded one with others
    // in its view asks them whether the store is sharded.
    if node.cluster().is_some() || node.config.view.len() > 1 {
        sharding::spawn(node.clone());
    }
    spawn_signal_watch(node.clone(), server.handle());
    if let Some(name) = node.config.view_dns.clone() {
        spawn_dns_watch(node.clone(), name);
    }
    info!(
        address = %node.me().address,
        id = %node.me().id,
        listen = %local_addr,
        view = %node.read_replica(|r| r.view().print()),
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

/// On SIGTERM or SIGINT: hand over, then stop the server gracefully. A
/// second signal stops it at once.
fn spawn_signal_watch(node: Arc<Node>, server: ServerHandle) {
    actix_rt::spawn(async move {
        let Some(mut signals) = Signals::new() else {
            return;
        };
        signals.next().await;
        info!("stopping: no more writes; handing over what was acknowledged");
        tokio::select! {
            () = node.hand_over() => {
                info!("stopping: finishing requests in flight");
                server.stop(true).await;
            }
            () = signals.next() => {
                info!("second signal: stopping now");
                server.stop(false).await;
            }
        }
    });
}

/// SIGTERM and SIGINT, as one stream.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Option<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        match (term, int) {
            (Ok(term), Ok(int)) => Some(Signals { term, int }),
            (Err(error), _) | (_, Err(error)) => {
                tracing::warn!(%error, "cannot watch for signals");
                None
            }
        }
    }

    async fn next(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}
