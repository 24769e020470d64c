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
//! The HTTP workers append to the queues themselves ([`Queues`]), each
//! write printed once whatever the number of peers; a queue's task is
//! woken only when its queue goes from empty to not empty. A queue's task
//! runs on the HTTP worker that made the queue (the first to write for
//! that peer): while clients write, that thread is awake anyway, so a
//! peer's answer seldom costs waking a sleeping thread, which is dear on a
//! virtual machine. One-off requests run on the actix system's thread.
//! Each thread has its own awc client (awc is bound to one thread).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::value::RawValue;
use tokio::sync::{mpsc, Notify};
use tracing::{debug, warn};

use crate::address::SocketAddress;
use crate::replica::{Kind, Member, Reply, Request, Write};
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

/// This thread's HTTP client for peer traffic (awc clients are bound to
/// the thread that made them).
fn client() -> awc::Client {
    thread_local! {
        static CLIENT: awc::Client = new_client();
    }
    CLIENT.with(awc::Client::clone)
}

fn new_client() -> awc::Client {
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
    let body = serde_json::to_vec(request).map_err(|e| e.to_string())?;
    exchange(client, to, request.kind(), body, token).await
}

/// Posts `body`, a request of `kind`, to `to` and decodes the reply.
async fn exchange(
    client: &awc::Client,
    to: &SocketAddress,
    kind: Kind,
    body: Vec<u8>,
    token: Option<&str>,
) -> Result<Reply, String> {
    let url = format!("http://{to}{INTERNAL_PREFIX}/{}", kind.as_str());
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

/// A replication request as [`Request::Replicate`] prints it, built from
/// writes printed beforehand.
#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum Printed<'a> {
    Replicate {
        from: &'a Member,
        writes: &'a [Arc<RawValue>],
    },
}

/// A write waiting in a peer's queue: printed, and when it was queued.
struct Queued {
    at: Instant,
    json: Arc<RawValue>,
}

/// One peer's ordered queue of writes.
pub struct PeerQueue {
    state: Mutex<QueueState>,
    ready: Notify,
}

#[derive(Default)]
struct QueueState {
    /// Writes not yet acknowledged, oldest first.
    writes: VecDeque<Queued>,
    /// How many times the queue was emptied without an acknowledgement
    /// (overflow): a batch sent before must not acknowledge what follows.
    emptied: u64,
    closed: bool,
}

impl PeerQueue {
    fn new() -> Self {
        PeerQueue {
            state: Mutex::new(QueueState::default()),
            ready: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, json: Arc<RawValue>, at: Instant, peer: &SocketAddress) {
        let mut state = self.lock();
        if state.closed {
            return;
        }
        if state.writes.len() >= MAX_QUEUE {
            warn!(%peer, "replication queue overflowed; the peer will catch up by anti-entropy");
            state.writes.clear();
            state.emptied += 1;
        }
        let wake = state.writes.is_empty();
        state.writes.push_back(Queued { at, json });
        drop(state);
        // The task looks at the queue again after every batch; it only
        // waits (and needs waking) once it found the queue empty.
        if wake {
            self.ready.notify_one();
        }
    }

    fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        state.writes.clear();
        drop(state);
        self.ready.notify_one();
    }
}

/// Every peer's replication queue, filled by the HTTP workers.
#[derive(Default)]
pub struct Queues {
    peers: Mutex<HashMap<SocketAddress, Arc<PeerQueue>>>,
}

impl Queues {
    /// Appends `write` to the queue of each peer of `to`. Returns the
    /// queues made for peers that had none: their tasks must be started.
    pub fn push(
        &self,
        to: &[SocketAddress],
        write: &Write,
    ) -> Vec<(SocketAddress, Arc<PeerQueue>)> {
        let json: Arc<RawValue> = match serde_json::value::to_raw_value(write) {
            Ok(json) => Arc::from(json),
            Err(error) => {
                // Keys and values are valid text and JSON when accepted.
                warn!(%error, key = %write.key, "cannot print a write; peers catch up by anti-entropy");
                return Vec::new();
            }
        };
        let at = Instant::now();
        let mut made = Vec::new();
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        for peer in to {
            let queue = peers.entry(peer.clone()).or_insert_with(|| {
                let queue = Arc::new(PeerQueue::new());
                made.push((peer.clone(), queue.clone()));
                queue
            });
            queue.push(json.clone(), at, peer);
        }
        made
    }

    /// Discards `queue`, the queue of `peer`, unless it was replaced
    /// already; its task ends.
    pub fn forget(&self, peer: &SocketAddress, queue: &Arc<PeerQueue>) {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        if peers.get(peer).is_some_and(|q| Arc::ptr_eq(q, queue)) {
            peers.remove(peer);
        }
        drop(peers);
        queue.close();
    }

    /// Discards the queue of `peer` (it left the view); its task ends.
    pub fn drop_queue(&self, peer: &SocketAddress) {
        let queue = self
            .peers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(peer);
        if let Some(queue) = queue {
            debug!(%peer, dropped = queue.lock().writes.len(), "dropped replication queue");
            queue.close();
        }
    }
}

/// Work for the transport's thread.
pub enum Job {
    /// Send a one-off request and hand its reply to the replica.
    Send {
        /// The peer.
        to: SocketAddress,
        /// The request.
        request: Request,
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

/// Starts the transport: it carries out the node's jobs until shutdown.
pub fn spawn(node: Arc<Node>, mut jobs: mpsc::UnboundedReceiver<Job>) {
    actix_rt::spawn(async move {
        while let Some(job) = jobs.recv().await {
            match job {
                Job::Drain { peer, queue } => {
                    actix_rt::spawn(drain_queue(node.clone(), peer, queue));
                }
                Job::Send { to, request } => {
                    actix_rt::spawn(send_one(node.clone(), to, request));
                }
            }
        }
    });
}

async fn send_one(node: Arc<Node>, to: SocketAddress, request: Request) {
    let kind = request.kind();
    let result = call(
        &client(),
        &to,
        &request,
        node.config.cluster_token.as_deref(),
    )
    .await;
    node.with_replica(|replica, now| replica.on_reply(&to, kind, result, now));
}

/// Sends the queue's front in batches until the queue is closed. Runs on
/// the thread that started it.
pub async fn drain_queue(node: Arc<Node>, peer: SocketAddress, queue: Arc<PeerQueue>) {
    let client = client();
    let token = node.config.cluster_token.clone();
    let mut backoff = BACKOFF_MIN;
    loop {
        let (batch, emptied) = {
            let state = queue.lock();
            if state.closed {
                node.metrics.drop_queue(peer.as_str());
                return;
            }
            let oldest = state.writes.front().map(|q| q.at);
            node.metrics
                .set_queue(peer.as_str(), state.writes.len(), oldest);
            let batch: Vec<Arc<RawValue>> = state
                .writes
                .iter()
                .take(MAX_BATCH)
                .map(|q| q.json.clone())
                .collect();
            (batch, state.emptied)
        };
        if batch.is_empty() {
            queue.ready.notified().await;
            continue;
        }
        let request = Printed::Replicate {
            from: node.me(),
            writes: &batch,
        };
        let outcome = match serde_json::to_vec(&request) {
            Ok(body) => exchange(&client, &peer, Kind::Replicate, body, token.as_deref()).await,
            Err(e) => Err(e.to_string()),
        };
        match outcome {
            Ok(Reply::Ack { .. }) => {
                let mut state = queue.lock();
                if state.emptied == emptied {
                    let acked = batch.len().min(state.writes.len());
                    state.writes.drain(..acked);
                }
                backoff = BACKOFF_MIN;
            }
            outcome => {
                // A write made just before the peer left the view can
                // make its queue again after the view dropped it.
                if !node.with_replica(|replica, _| replica.view().contains(&peer)) {
                    debug!(%peer, "replication queue of a former member dropped");
                    node.queues().forget(&peer, &queue);
                    continue;
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::causal::{Dot, ReplicaId, VectorClock};
    use crate::store::{Key, Value};

    fn write(key: &str, value: Option<&str>, counter: u64) -> Write {
        let id = ReplicaId::parse("10.0.0.2:8085#00c0ffee").unwrap();
        let deps: VectorClock = [(ReplicaId::parse("10.0.0.3:8085#1").unwrap(), 4)]
            .into_iter()
            .collect();
        Write {
            key: Key::parse(key).unwrap(),
            value: value.map(|v| Value::from_json(v).unwrap().unwrap()),
            dot: Dot::new(id, counter),
            deps,
            lamport: 9,
        }
    }

    #[test]
    fn printed_batches_decode_as_replicate_requests() {
        let from = Member {
            address: SocketAddress::parse("10.0.0.2:8085").unwrap(),
            id: ReplicaId::parse("10.0.0.2:8085#00c0ffee").unwrap(),
        };
        let writes = vec![
            write("a/b \"c\"", Some(r#"{"x":[1,2.5,"é"]}"#), 1),
            write("k", None, 2),
        ];
        let printed: Vec<Arc<RawValue>> = writes
            .iter()
            .map(|w| Arc::from(serde_json::value::to_raw_value(w).unwrap()))
            .collect();
        let body = serde_json::to_vec(&Printed::Replicate {
            from: &from,
            writes: &printed,
        })
        .unwrap();
        let expected = serde_json::to_vec(&Request::Replicate {
            from: from.clone(),
            writes: writes.clone(),
        })
        .unwrap();
        assert_eq!(body, expected);
        match serde_json::from_slice::<Request>(&body).unwrap() {
            Request::Replicate { from: f, writes: w } => assert_eq!((f, w), (from, writes)),
            other => panic!("decoded as {other:?}"),
        }
    }

    #[test]
    fn a_queue_wakes_its_task_only_when_it_stops_being_empty() {
        let queues = Queues::default();
        let peers = [SocketAddress::parse("10.0.0.3:8085").unwrap()];
        let made = queues.push(&peers, &write("k", Some("1"), 1));
        assert_eq!(made.len(), 1, "the first write makes the queue");
        let queue = made[0].1.clone();
        assert!(queues.push(&peers, &write("k", Some("2"), 2)).is_empty());
        assert_eq!(queue.lock().writes.len(), 2);
        // One stored wake-up (from the first push), not one per write.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let first = tokio::time::timeout(Duration::from_secs(5), queue.ready.notified());
            assert!(first.await.is_ok(), "the first push woke the task");
            let second = tokio::time::timeout(Duration::from_millis(50), queue.ready.notified());
            assert!(second.await.is_err(), "the second push did not");
        });
        queues.drop_queue(&peers[0]);
        let state = queue.lock();
        assert!(state.closed && state.writes.is_empty());
    }

    #[test]
    fn forgetting_a_replaced_queue_leaves_its_successor() {
        let queues = Queues::default();
        let peers = [SocketAddress::parse("10.0.0.3:8085").unwrap()];
        let old = queues.push(&peers, &write("k", Some("1"), 1)).remove(0).1;
        queues.drop_queue(&peers[0]);
        let new = queues.push(&peers, &write("k", Some("2"), 2)).remove(0).1;
        queues.forget(&peers[0], &old);
        assert!(!new.lock().closed, "the successor stays");
        assert!(queues.push(&peers, &write("k", Some("3"), 3)).is_empty());
        queues.forget(&peers[0], &new);
        assert!(new.lock().closed);
        assert_eq!(
            queues.push(&peers, &write("k", Some("4"), 4)).len(),
            1,
            "made again"
        );
    }
}
