//! The peers' replication queues: one ordered queue of printed writes per
//! peer, filled by whoever runs a step of the replica (mostly the HTTP
//! workers) and drained by the transport.
//!
//! Each write is printed once, whatever the number of peers, and appended
//! to the queue of every peer it goes to. A queue's task (the transport's)
//! is woken only when its queue goes from empty to not empty; it looks at
//! the queue again after every batch it sends.
//!
//! A task may pace its batches ([`Pacing`]): with a window, a batch that is
//! not full leaves at most once per window, so that under a steady load a
//! peer takes a few large batches rather than many small ones. A durable
//! peer makes each batch it takes durable before it answers, so every
//! batch costs it a journal sync: paced, a load of many thousand writes a
//! second costs each peer a few hundred syncs, not one per write or two.
//! A write after a quiet spell leaves at once, and a write that a client
//! waits to see held by other replicas (a write concern) hurries its
//! queues ([`Queues::hurry`]).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use tokio::sync::Notify;
use tracing::{debug, warn};

use crate::address::SocketAddress;
use crate::replica::Write;

/// Most writes queued for one peer; past this the queue is emptied and the
/// peer catches up through anti-entropy instead.
const MAX_QUEUE: usize = 1_000_000;

/// A write waiting in a peer's queue: printed, and when it was queued.
struct Queued {
    at: Instant,
    json: Arc<RawValue>,
}

/// One peer's ordered queue of writes.
pub struct PeerQueue {
    state: Mutex<QueueState>,
    /// Woken when the queue stops being empty, or is closed.
    pub ready: Notify,
    /// Woken when a client waits for writes to reach the peer: the next
    /// batch leaves at once ([`Pacing`]).
    hurry: Notify,
}

/// The front of a peer's queue, as the transport sends it.
pub struct Front {
    /// The oldest writes, at most the batch size asked for.
    pub batch: Vec<Arc<RawValue>>,
    /// How many times the queue had been emptied: hand it back to
    /// [`PeerQueue::ack`].
    pub emptied: u64,
    /// Writes in the queue.
    pub len: usize,
    /// When the oldest was queued.
    pub oldest: Option<Instant>,
}

/// What a peer's queue holds.
#[derive(Default)]
struct QueueState {
    /// Writes not yet acknowledged, oldest first.
    writes: VecDeque<Queued>,
    /// How many times the queue was emptied without an acknowledgement
    /// (overflow): a batch sent before must not acknowledge what follows.
    emptied: u64,
    /// Whether the queue was dropped (its task ends).
    closed: bool,
}

impl PeerQueue {
    fn new() -> Self {
        PeerQueue {
            state: Mutex::new(QueueState::default()),
            ready: Notify::new(),
            hurry: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Its oldest `max` writes, or `None` once the queue was dropped.
    pub fn front(&self, max: usize) -> Option<Front> {
        let state = self.lock();
        if state.closed {
            return None;
        }
        Some(Front {
            batch: state
                .writes
                .iter()
                .take(max)
                .map(|q| q.json.clone())
                .collect(),
            emptied: state.emptied,
            len: state.writes.len(),
            oldest: state.writes.front().map(|q| q.at),
        })
    }

    /// The peer acknowledged the first `n` writes of a [`Front`] taken
    /// when the queue had been emptied `emptied` times: they leave the
    /// queue, unless it overflowed since (then they left already, and the
    /// writes now at its front were not sent).
    pub fn ack(&self, emptied: u64, n: usize) {
        let mut state = self.lock();
        if state.emptied == emptied {
            let acked = n.min(state.writes.len());
            state.writes.drain(..acked);
        }
    }

    /// Writes in the queue.
    fn len(&self) -> usize {
        self.lock().writes.len()
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

/// How a queue's task paces its batches (see the module doc).
pub struct Pacing {
    window: Duration,
    /// When the last batch left.
    last: Option<tokio::time::Instant>,
}

impl Pacing {
    /// Batches at most once per `window` unless full (none held back if
    /// the window is zero).
    pub fn new(window: Duration) -> Pacing {
        Pacing { window, last: None }
    }

    /// Waits until the next batch of `queue` may leave: at once if the
    /// last one left a window ago or more, if the queue is empty (its task
    /// waits for a write first) or holds `full` writes, or when the queue
    /// is hurried; else when the window since the last batch ends.
    pub async fn ready(&self, queue: &PeerQueue, full: usize) {
        let Some(last) = self.last else {
            return;
        };
        let until = last + self.window;
        if tokio::time::Instant::now() >= until || !(1..full).contains(&queue.len()) {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep_until(until) => {}
            () = queue.hurry.notified() => {}
        }
    }

    /// A batch left now.
    pub fn sent(&mut self) {
        self.last = Some(tokio::time::Instant::now());
    }
}

/// Every peer's replication queue.
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
        if to.is_empty() {
            return Vec::new();
        }
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

    /// Has every queue send its next batch without waiting for its window
    /// ([`Pacing`]): a client waits for writes to reach the peers.
    pub fn hurry(&self) {
        let peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        for queue in peers.values() {
            queue.hurry.notify_one();
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::causal::{Dot, ReplicaId, VectorClock};
    use crate::store::{Key, Value};
    use std::time::Duration;

    fn write(key: &str, value: Option<&str>, counter: u64) -> Write {
        let id = ReplicaId::parse("10.0.0.2:8085#00c0ffee").unwrap();
        Write {
            key: Key::parse(key).unwrap(),
            value: value.map(|v| Value::from_json(v).unwrap().unwrap()),
            dot: Dot::new(id, counter),
            deps: VectorClock::new(),
            lamport: counter,
            covers: Vec::new(),
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

    /// Whether `future` is done when polled once now.
    fn done<F: std::future::Future>(future: std::pin::Pin<&mut F>) -> bool {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        future.poll(&mut cx).is_ready()
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    }

    #[test]
    fn a_paced_queue_sends_a_batch_that_is_not_full_once_a_window() {
        let queues = Queues::default();
        let peers = [SocketAddress::parse("10.0.0.3:8085").unwrap()];
        let queue = queues.push(&peers, &write("k", Some("1"), 1)).remove(0).1;
        runtime().block_on(async {
            let mut pacing = Pacing::new(Duration::from_secs(600));
            assert!(
                done(std::pin::pin!(pacing.ready(&queue, 3))),
                "the first batch leaves at once"
            );
            pacing.sent();
            assert!(
                !done(std::pin::pin!(pacing.ready(&queue, 3))),
                "the next waits for the window"
            );
            queues.push(&peers, &write("k", Some("2"), 2));
            queues.push(&peers, &write("k", Some("3"), 3));
            assert!(
                done(std::pin::pin!(pacing.ready(&queue, 3))),
                "a full batch leaves at once"
            );
            queue.ack(0, 3);
            assert!(
                done(std::pin::pin!(pacing.ready(&queue, 3))),
                "an empty queue waits for a write, not for the window"
            );
            queues.push(&peers, &write("k", Some("4"), 4));
            let mut held = std::pin::pin!(pacing.ready(&queue, 3));
            assert!(!done(held.as_mut()));
            queues.hurry();
            assert!(done(held.as_mut()), "a hurried queue sends at once");

            let mut short = Pacing::new(Duration::from_millis(20));
            short.sent();
            assert!(!done(std::pin::pin!(short.ready(&queue, 3))));
            tokio::time::sleep(Duration::from_millis(30)).await;
            assert!(
                done(std::pin::pin!(short.ready(&queue, 3))),
                "the window has passed"
            );
            let mut unpaced = Pacing::new(Duration::ZERO);
            unpaced.sent();
            assert!(done(std::pin::pin!(unpaced.ready(&queue, 3))));
        });
    }
}
