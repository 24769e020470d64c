//! The only user of awc: ships the replica's effects to its peers.
//!
//! Each peer has an ordered queue of writes and a task that sends its front
//! in batches, retrying with exponential backoff until the peer
//! acknowledges or the queue is dropped (the peer left the view). One-off
//! requests (heartbeats, pulls, joins, snapshots, view changes) are sent
//! on their own and their reply, or failure, is handed back to the replica.
//! Every request has a connect timeout and an overall deadline, so a peer
//! that silently drops packets costs a timeout, never a hang.
//!
//! Everything here runs on one thread (the actix system's), so queues are
//! plain `Rc<RefCell<..>>`.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Notify};
use tracing::{debug, warn};

use crate::address::SocketAddress;
use crate::metrics::Metrics;
use crate::replica::{Effect, Kind, Reply, Request, Write};
use crate::server::Node;

/// Header carrying the cluster token on replica-to-replica requests.
pub const TOKEN_HEADER: &str = "x-causalkv-token";

/// Path prefix of the replica-to-replica endpoints.
pub const INTERNAL_PREFIX: &str = "/internal/v1";

/// Most writes sent in one replication request.
const MAX_BATCH: usize = 512;

/// Most writes queued for one peer; past this the queue is emptied and the
/// peer catches up through anti-entropy instead.
const MAX_QUEUE: usize = 1_000_000;

/// Time allowed to open a TCP connection to a peer.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);

/// First and largest pause between retries of a failed batch.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_millis(2000);

/// Replies larger than this are decoded on the blocking pool.
const BIG_REPLY_BYTES: usize = 1 << 20;

/// Largest reply body accepted from a peer (snapshots can be large).
const MAX_REPLY_BYTES: usize = 1 << 30;

/// The deadline of one request of each kind, reply body included.
fn deadline(kind: Kind) -> Duration {
    match kind {
        Kind::Heartbeat | Kind::Join | Kind::ViewChange => Duration::from_millis(1500),
        Kind::Replicate => Duration::from_secs(5),
        Kind::Pull => Duration::from_secs(15),
        Kind::Snapshot => Duration::from_secs(120),
    }
}

/// An HTTP client for peer traffic.
fn client() -> awc::Client {
    awc::Client::builder()
        .connector(awc::Connector::new().timeout(CONNECT_TIMEOUT))
        .disable_redirects()
        .timeout(Duration::from_secs(120))
        .finish()
}

/// Sends `request` to `to` and decodes the reply.
pub async fn call(
    client: &awc::Client,
    to: &SocketAddress,
    request: &Request,
    token: Option<&str>,
) -> Result<Reply, String> {
    let kind = request.kind();
    let url = format!("http://{to}{INTERNAL_PREFIX}/{}", kind.as_str());
    let body = serde_json::to_vec(request).map_err(|e| e.to_string())?;
    let exchange = async {
        let mut builder = client
            .post(url)
            .timeout(deadline(kind))
            .insert_header(("content-type", "application/json"));
        if let Some(token) = token {
            builder = builder.insert_header((TOKEN_HEADER, token));
        }
        let mut response = builder.send_body(body).await.map_err(|e| e.to_string())?;
        let status = response.status();
        let bytes = response
            .body()
            .limit(MAX_REPLY_BYTES)
            .await
            .map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("{status}: {}", String::from_utf8_lossy(&bytes)));
        }
        if bytes.len() < BIG_REPLY_BYTES {
            return serde_json::from_slice::<Reply>(&bytes).map_err(|e| format!("bad reply: {e}"));
        }
        // A snapshot: decode it off this thread, which carries every peer's
        // replication and heartbeats.
        tokio::task::spawn_blocking(move || serde_json::from_slice::<Reply>(&bytes))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("bad reply: {e}"))
    };
    match tokio::time::timeout(deadline(kind), exchange).await {
        Ok(result) => result,
        Err(_) => Err(format!("no reply within {:?}", deadline(kind))),
    }
}

/// One peer's ordered queue of writes.
#[derive(Default)]
struct PeerQueue {
    /// Writes not yet acknowledged, oldest first, with when each was queued.
    writes: RefCell<VecDeque<(Instant, Arc<Write>)>>,
    ready: Notify,
    closed: Cell<bool>,
}

impl PeerQueue {
    fn push(&self, write: Arc<Write>, peer: &SocketAddress, metrics: &Metrics) {
        let mut writes = self.writes.borrow_mut();
        if writes.len() >= MAX_QUEUE {
            warn!(%peer, "replication queue overflowed; the peer will catch up by anti-entropy");
            writes.clear();
        }
        writes.push_back((Instant::now(), write));
        drop(writes);
        self.report(peer, metrics);
        self.ready.notify_one();
    }

    /// Publishes the queue's depth and the age of its oldest write.
    fn report(&self, peer: &SocketAddress, metrics: &Metrics) {
        let writes = self.writes.borrow();
        metrics.set_queue(peer.as_str(), writes.len(), writes.front().map(|(t, _)| *t));
    }

    fn close(&self) {
        self.closed.set(true);
        self.writes.borrow_mut().clear();
        self.ready.notify_one();
    }
}

/// Starts the transport: it consumes the node's effects until shutdown.
pub fn spawn(node: Arc<Node>, mut effects: mpsc::UnboundedReceiver<Effect>) {
    actix_rt::spawn(async move {
        let client = client();
        let mut queues: HashMap<SocketAddress, Rc<PeerQueue>> = HashMap::new();
        while let Some(effect) = effects.recv().await {
            match effect {
                Effect::Replicate { to, write } => {
                    let queue = queues.entry(to.clone()).or_insert_with(|| {
                        let queue = Rc::new(PeerQueue::default());
                        actix_rt::spawn(drain_queue(
                            node.clone(),
                            client.clone(),
                            to.clone(),
                            queue.clone(),
                        ));
                        queue
                    });
                    queue.push(write, &to, &node.metrics);
                }
                Effect::DropQueue { peer } => {
                    if let Some(queue) = queues.remove(&peer) {
                        debug!(%peer, dropped = queue.writes.borrow().len(), "dropped replication queue");
                        queue.close();
                        node.metrics.drop_queue(peer.as_str());
                    }
                }
                Effect::Send { to, request } => {
                    actix_rt::spawn(send_one(node.clone(), client.clone(), to, request));
                }
            }
        }
    });
}

async fn send_one(node: Arc<Node>, client: awc::Client, to: SocketAddress, request: Request) {
    let kind = request.kind();
    let result = call(&client, &to, &request, node.config.cluster_token.as_deref()).await;
    node.with_replica(|replica, now| replica.on_reply(&to, kind, result, now));
}

/// Sends the queue's front in batches until the queue is closed.
async fn drain_queue(
    node: Arc<Node>,
    client: awc::Client,
    peer: SocketAddress,
    queue: Rc<PeerQueue>,
) {
    let token = node.config.cluster_token.clone();
    let mut backoff = BACKOFF_MIN;
    loop {
        if queue.closed.get() {
            return;
        }
        let batch: Vec<Write> = queue
            .writes
            .borrow()
            .iter()
            .take(MAX_BATCH)
            .map(|(_, w)| Write::clone(w))
            .collect();
        if batch.is_empty() {
            queue.ready.notified().await;
            continue;
        }
        let sent = batch.len();
        let request = Request::Replicate {
            from: node.me().clone(),
            writes: batch,
        };
        match call(&client, &peer, &request, token.as_deref()).await {
            Ok(Reply::Ack { .. }) => {
                let mut writes = queue.writes.borrow_mut();
                let acked = sent.min(writes.len());
                writes.drain(..acked);
                drop(writes);
                if !queue.closed.get() {
                    queue.report(&peer, &node.metrics);
                }
                backoff = BACKOFF_MIN;
            }
            outcome => {
                debug!(%peer, ?outcome, "replication failed; retrying");
                tokio::time::sleep(jitter(backoff)).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// `base` plus up to half of it at random, so peers do not retry in step.
fn jitter(base: Duration) -> Duration {
    let random = uuid::Uuid::new_v4().as_u128() as u64;
    let spread = base.as_millis() as u64 / 2 + 1;
    base + Duration::from_millis(random % spread)
}
