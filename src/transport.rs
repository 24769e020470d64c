//! The only code that talks to peers (over awc): ships the replica's
//! effects to them.
//!
//! Each peer has an ordered queue of writes and a task that sends its front
//! in batches, retrying with exponential backoff until the peer
//! acknowledges or the queue is dropped (the peer left the view). One-off
//! requests (heartbeats, pulls, joins, snapshots, view changes) are sent
//! on their own and their reply, or failure, is handed back to the replica.
//! Every request has a connect timeout and an overall deadline, so a peer
//! that silently drops packets costs a timeout, never a hang.
//!
//! The HTTP workers append to the queues themselves ([`crate::queues`]);
//! a queue's task runs on the HTTP worker that made the queue (the first
//! to write for that peer): while clients write, that thread is awake
//! anyway, so a peer's answer seldom costs waking a sleeping thread, which
//! is dear on a virtual machine. One-off requests run on the actix
//! system's thread. Each thread has its own awc client (awc is bound to
//! one thread).

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tracing::debug;

use crate::address::SocketAddress;
use crate::causal::VectorClock;
use crate::node::{Job, Node};
use crate::queues::{Pacing, PeerQueue};
use crate::replica::{Kind, Member, Reply, Request};

pub use crate::replica::message::{EPOCH_HEADER, GROUP_HEADER, INTERNAL_PREFIX, TOKEN_HEADER};

/// Most writes sent in one replication request.
const MAX_BATCH: usize = 512;

/// With `DATA_DIR`, how often at most a replication batch that is not
/// full leaves for a peer (see [`crate::queues`]): a durable peer syncs its
/// journal for every batch it takes.
const DURABLE_BATCH_WINDOW: Duration = Duration::from_millis(5);

/// Time allowed to open a TCP connection to a peer.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);

/// First and largest pause between retries of a failed batch.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_millis(2000);

/// Replies larger than this are decoded on the blocking pool.
const BIG_REPLY_BYTES: usize = 1 << 20;

/// Largest reply body accepted from a peer (a page of a state copy is at
/// most a few megabytes).
const MAX_REPLY_BYTES: usize = 256 << 20;

/// The deadline of one request of each kind, reply body included.
fn deadline(kind: Kind) -> Duration {
    match kind {
        Kind::Heartbeat | Kind::Join | Kind::ViewChange => Duration::from_millis(1500),
        Kind::Replicate => Duration::from_secs(5),
        Kind::Pull | Kind::Snapshot => Duration::from_secs(30),
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
        .timeout(Duration::from_secs(30))
        .finish()
}

/// What a replica-to-replica request must carry: the cluster token, if
/// one is set, and the sender's shard group and the epoch of the shard map
/// it holds, in a sharded store.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    /// The cluster token.
    pub token: Option<String>,
    /// The sender's shard group.
    pub group: Option<String>,
    /// The epoch of the sender's shard map.
    pub epoch: Option<u64>,
}

impl Credentials {
    /// What `node` sends now.
    pub fn of(node: &Node) -> Credentials {
        Credentials {
            token: node.config.cluster_token.clone(),
            group: node.me().id.group().map(str::to_string),
            epoch: node.cluster().map(|c| c.with_map(|m| m.epoch)),
        }
    }

    fn apply(&self, mut builder: awc::ClientRequest) -> awc::ClientRequest {
        if let Some(epoch) = self.epoch {
            builder = builder.insert_header((EPOCH_HEADER, epoch.to_string()));
        }
        if let Some(token) = &self.token {
            builder = builder.insert_header((TOKEN_HEADER, token.as_str()));
        }
        if let Some(group) = &self.group {
            builder = builder.insert_header((GROUP_HEADER, group.as_str()));
        }
        builder
    }
}

/// Sends `request` to `to` and decodes the reply.
pub async fn call(
    client: &awc::Client,
    to: &SocketAddress,
    request: &Request,
    credentials: &Credentials,
) -> Result<Reply, String> {
    let body = serde_json::to_vec(request).map_err(|e| e.to_string())?;
    exchange(client, to, request.kind(), body, credentials).await
}

/// Posts `body`, a request of `kind`, to `to` and decodes the reply.
async fn exchange(
    client: &awc::Client,
    to: &SocketAddress,
    kind: Kind,
    body: Vec<u8>,
    credentials: &Credentials,
) -> Result<Reply, String> {
    let url = format!("http://{to}{INTERNAL_PREFIX}/{}", kind.as_str());
    let exchange = async {
        let builder = client
            .post(url)
            .timeout(deadline(kind))
            .insert_header(("content-type", "application/json"));
        let bytes = successful_body(credentials.apply(builder), body).await?;
        if bytes.len() < BIG_REPLY_BYTES {
            return serde_json::from_slice::<Reply>(&bytes).map_err(|e| format!("bad reply: {e}"));
        }
        // A page of a copy: decode it off this thread, which carries every
        // peer's replication and heartbeats.
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

/// Sends `request` with `body` and reads the answer's body, which must be
/// a success's. The body is read into a buffer of the size the answer
/// announces: a page of a copy is megabytes, and a buffer grown as it
/// arrives would be copied (and its memory faulted in) several times over.
async fn successful_body(
    request: awc::ClientRequest,
    body: Vec<u8>,
) -> Result<actix_web::web::Bytes, String> {
    use futures_util::StreamExt;
    let mut response = request.send_body(body).await.map_err(|e| e.to_string())?;
    let status = response.status();
    let announced = response
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.parse::<usize>().ok())
        .unwrap_or(0);
    if announced > MAX_REPLY_BYTES {
        return Err(format!("a reply of {announced} bytes is over the limit"));
    }
    let mut bytes = Vec::with_capacity(announced);
    while let Some(chunk) = response.next().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        if bytes.len() + chunk.len() > MAX_REPLY_BYTES {
            return Err(format!("a reply over {MAX_REPLY_BYTES} bytes"));
        }
        bytes.extend_from_slice(&chunk);
    }
    if !status.is_success() {
        return Err(format!("{status}: {}", String::from_utf8_lossy(&bytes)));
    }
    Ok(bytes.into())
}

/// Posts `body` as JSON to `path` at `to` (a shard-map request between
/// nodes) within `deadline`, and decodes the reply.
pub async fn post_json<T: Serialize, R: serde::de::DeserializeOwned>(
    to: &SocketAddress,
    path: &str,
    body: &T,
    credentials: &Credentials,
    deadline: Duration,
) -> Result<R, String> {
    let body = serde_json::to_vec(body).map_err(|e| e.to_string())?;
    let client = client();
    let exchange = async {
        let builder = client
            .post(format!("http://{to}{path}"))
            .timeout(deadline)
            .insert_header(("content-type", "application/json"));
        let bytes = successful_body(credentials.apply(builder), body).await?;
        serde_json::from_slice::<R>(&bytes).map_err(|e| format!("bad reply: {e}"))
    };
    match tokio::time::timeout(deadline, exchange).await {
        Ok(result) => result,
        Err(_) => Err(format!("no reply within {deadline:?}")),
    }
}

/// A client request relayed to the node that serves it.
#[derive(Debug)]
pub struct Forwarded {
    /// The answer's status.
    pub status: u16,
    /// The answer's content type, if it named one.
    pub content_type: Option<String>,
    /// The answer's headers worth relaying (`ETag`).
    pub etag: Option<String>,
    /// The answer's body.
    pub body: actix_web::web::Bytes,
}

/// Header counting how many times a client request was forwarded, so
/// that nodes whose shard maps disagree do not pass it around forever.
pub const HOPS_HEADER: &str = "x-causalkv-hops";

/// Header naming the version of the shard map by which the last node
/// relayed a client request.
pub const MAP_VERSION_HEADER: &str = "x-causalkv-map-version";

/// Relays a client request (`method`, `path_and_query`, the headers worth
/// keeping and the body) to `to`, within `deadline`.
pub async fn forward(
    to: &SocketAddress,
    method: actix_web::http::Method,
    path_and_query: &str,
    headers: &[(String, String)],
    body: actix_web::web::Bytes,
    deadline: Duration,
) -> Result<Forwarded, String> {
    let client = client();
    let exchange = async {
        let mut builder = client
            .request(method, format!("http://{to}{path_and_query}"))
            .timeout(deadline);
        for (name, value) in headers {
            builder = builder.insert_header((name.as_str(), value.as_str()));
        }
        let mut response = builder.send_body(body).await.map_err(|e| e.to_string())?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        };
        let content_type = header("content-type");
        let etag = header("etag");
        let status = response.status().as_u16();
        let body = response
            .body()
            .limit(MAX_REPLY_BYTES)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Forwarded {
            status,
            content_type,
            etag,
            body,
        })
    };
    match tokio::time::timeout(deadline, exchange).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {deadline:?}")),
    }
}

/// Where a member takes batches of relayed client requests (under
/// [`INTERNAL_PREFIX`]).
pub const RELAY_BATCH_PATH: &str = "relay";

/// Why a batch of relayed requests got no answer (or not all of it).
pub enum BatchFailure {
    /// The member does not take batches (it answered 404).
    NotTaken,
    /// Anything else: it could not be reached, refused, or stopped.
    Failed(String),
}

/// Posts a batch of relayed client requests (`body`, laid out by
/// `sharding::batch_wire`) to `to`, and hands each piece of the answer to
/// `piece` as it arrives; the whole exchange within `deadline`.
pub async fn post_batch(
    to: &SocketAddress,
    body: Vec<u8>,
    token: Option<&str>,
    deadline: Duration,
    mut piece: impl FnMut(&[u8]),
) -> Result<(), BatchFailure> {
    use futures_util::StreamExt;
    let failed = |e: &dyn std::fmt::Display| BatchFailure::Failed(format!("{to}: {e}"));
    let exchange = async {
        let url = format!("http://{to}{INTERNAL_PREFIX}/{RELAY_BATCH_PATH}");
        let mut builder = client()
            .post(url)
            .timeout(deadline)
            .insert_header(("content-type", "application/octet-stream"));
        if let Some(token) = token {
            builder = builder.insert_header((TOKEN_HEADER, token));
        }
        let mut response = builder.send_body(body).await.map_err(|e| failed(&e))?;
        if response.status() == actix_web::http::StatusCode::NOT_FOUND {
            return Err(BatchFailure::NotTaken);
        }
        if !response.status().is_success() {
            let why = format!("refused the relayed requests ({})", response.status());
            return Err(failed(&why));
        }
        while let Some(bytes) = response.next().await {
            piece(&bytes.map_err(|e| failed(&e))?);
        }
        Ok(())
    };
    match tokio::time::timeout(deadline, exchange).await {
        Ok(result) => result,
        Err(_) => Err(failed(&format!("no answer within {deadline:?}"))),
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

/// Asks every member the replica reaches (its peers, not the suspects)
/// for the writes it has applied, all at once; the clocks they gave.
pub async fn members_clocks(node: &Node) -> Vec<VectorClock> {
    let asks: Vec<(SocketAddress, Request)> = node.read_replica(|replica| {
        (replica.view().peers())
            .map(|(address, _)| (address.clone(), replica.clock_request(address)))
            .collect()
    });
    let credentials = Credentials::of(node);
    let client = client();
    let calls = asks
        .iter()
        .map(|(to, request)| call(&client, to, request, &credentials));
    (futures_util::future::join_all(calls).await)
        .into_iter()
        .filter_map(|reply| match reply {
            Ok(Reply::Heartbeat { clock, .. }) => Some(clock),
            _ => None,
        })
        .collect()
}

/// Starts the transport: it carries out the node's jobs until shutdown.
pub fn spawn(node: Arc<Node>, mut jobs: mpsc::UnboundedReceiver<Job>) {
    actix_rt::spawn(async move {
        while let Some(job) = jobs.recv().await {
            match job {
                Job::Drain { peer, queue } => start_drain(node.clone(), peer, queue),
                Job::Send {
                    to,
                    request,
                    generation,
                } => {
                    actix_rt::spawn(send_one(node.clone(), to, request, generation));
                }
            }
        }
    });
}

/// Sends a request of the replica of `generation`, and hands the reply to
/// it, unless it was replaced meanwhile (its request would speak for the
/// new one's group; its reply would reach the new one).
async fn send_one(node: Arc<Node>, to: SocketAddress, request: Request, generation: u64) {
    let kind = request.kind();
    // What the request tells of this replica (a heartbeat's clock, a
    // join's) leaves once the steps behind it are durable here, like the
    // writes sent to peers: a peer never counts on what a crash may undo.
    let _ = node.settle().await;
    let credentials = Credentials::of(&node);
    if node.generation() != generation {
        return;
    }
    let result = call(&client(), &to, &request, &credentials).await;
    let page = kind == Kind::Snapshot && result.is_ok();
    node.with_replica(|replica, now| {
        if node.generation() == generation {
            replica.on_reply(&to, kind, result, now);
        }
    });
    if page {
        // Taking a page in asked for the next: merge this one on the
        // blocking pool, so that this thread sends that request meanwhile.
        let node = node.clone();
        let _ = tokio::task::spawn_blocking(move || {
            node.with_replica(|replica, now| {
                if node.generation() == generation {
                    replica.merge_pages(now);
                }
            })
        })
        .await;
    }
}

/// Starts the task that drains `queue` on the current thread's event loop
/// (a [`crate::node::Drainer`]).
pub fn start_drain(node: Arc<Node>, peer: SocketAddress, queue: Arc<PeerQueue>) {
    actix_rt::spawn(drain_queue(node, peer, queue));
}

/// Sends the queue's front in batches until the queue is closed. Runs on
/// the thread that started it.
async fn drain_queue(node: Arc<Node>, peer: SocketAddress, queue: Arc<PeerQueue>) {
    let client = client();
    // A queue belongs to one incarnation: a node that changes shard group
    // drops every queue.
    let credentials = Credentials::of(&node);
    let mut backoff = BACKOFF_MIN;
    let mut pacing = Pacing::new(match node.disk() {
        Some(_) => DURABLE_BATCH_WINDOW,
        None => Duration::ZERO,
    });
    loop {
        pacing.ready(&queue, MAX_BATCH).await;
        let Some(front) = queue.front(MAX_BATCH) else {
            node.metrics.drop_queue(peer.as_str());
            return;
        };
        node.metrics
            .set_queue(peer.as_str(), front.len, front.oldest);
        let (batch, emptied) = (front.batch, front.emptied);
        if batch.is_empty() {
            queue.ready.notified().await;
            continue;
        }
        pacing.sent();
        let from = node.me();
        let request = Printed::Replicate {
            from: &from,
            writes: &batch,
        };
        let outcome = match serde_json::to_vec(&request) {
            Ok(body) => exchange(&client, &peer, Kind::Replicate, body, &credentials).await,
            Err(e) => Err(e.to_string()),
        };
        match outcome {
            Ok(Reply::Ack { .. }) => {
                queue.ack(emptied, batch.len());
                backoff = BACKOFF_MIN;
            }
            outcome => {
                // A write made just before the peer left the view can
                // make its queue again after the view dropped it.
                if !node.read_replica(|replica| replica.view().contains(&peer)) {
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
    let spread = base.as_millis() as u64 / 2;
    base + Duration::from_millis(rand::random_range(0..=spread))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::causal::{Dot, ReplicaId, VectorClock};
    use crate::replica::Write;
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
            covers: Vec::new(),
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
}
