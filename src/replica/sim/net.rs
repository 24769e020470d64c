//! The simulated network and transport: messages in flight with delays,
//! loss, duplicates and partitions, and the per-peer replication queues
//! that carry a replica's [`Effect::Replicate`] as `transport.rs` does.

use super::trace::{Answer, Fate, Sent};

use crate::address::SocketAddress;

use super::super::{Effect, Kind, Reply, Request, Write};

use super::cluster::*;
use super::rng::*;
use super::session::Logged;
use super::trace::{trace_at, Event};

impl Sim {
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

    pub(super) fn deliver(&mut self, head: Head, body: Body) {
        let target = self.addrs.iter().position(|a| *a == head.peer);
        let linked = target.filter(|&t| self.group[t] == self.group[head.node]);
        let drop = self.faults.0;
        match body {
            Body::Request(request, copy) => match linked.filter(|&t| self.nodes[t].is_some()) {
                Some(t) if !self.rng.chance(drop) => {
                    let now = self.now;
                    let sent = self.traced(head.kind).then(|| Sent::of(&request));
                    let reply = {
                        let _span = trace_at(&self.addrs[t], now);
                        self.replica_mut(t).handle(request, now)
                    };
                    if let Some(what) = sent {
                        let fate = match (copy, head.kind) {
                            (true, _) => Fate::Duplicate,
                            (false, Kind::Replicate) => {
                                Fate::Handled(Some(self.replica(t).stats().buffered))
                            }
                            (false, _) => Fate::Handled(None),
                        };
                        let (from, to) = (head.node, t);
                        let event = Event::Request {
                            from,
                            to,
                            what,
                            fate,
                        };
                        self.trace.push(now, event);
                    }
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
                to => {
                    if self.traced(head.kind) {
                        let fate = to.map_or(Fate::Unreachable, |_| Fate::Dropped);
                        let (what, from) = (Sent::of(&request), head.node);
                        let to = target.unwrap_or(usize::MAX);
                        let event = Event::Request {
                            from,
                            to,
                            what,
                            fate,
                        };
                        self.trace.push(self.now, event);
                    }
                    self.fail(head)
                }
            },
            Body::Reply(Ok(_)) if linked.is_none() => self.fail(head),
            Body::Reply(result) => {
                let alive = self.nodes[head.node].as_ref();
                if alive.is_some_and(|n| n.epoch == head.epoch) && self.traced(head.kind) {
                    let what = Answer::of(&result);
                    if head.batch.is_none() || !matches!(what, Answer::Ack) {
                        let (to, kind) = (head.node, head.kind);
                        let from = target.unwrap_or(usize::MAX);
                        let event = Event::Reply {
                            to,
                            from,
                            kind,
                            what,
                        };
                        self.trace.push(self.now, event);
                    }
                }
                let (now, node) = (self.now, self.nodes[head.node].as_mut());
                let Some(node) = node.filter(|n| n.epoch == head.epoch) else {
                    return;
                };
                let Some((generation, n)) = head.batch else {
                    let _span = trace_at(&self.addrs[head.node], now);
                    node.replica.on_reply(&head.peer, head.kind, result, now);
                    node.replica.merge_pages(now);
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

    /// Whether requests of `kind` are traced: all but heartbeats, which
    /// are many (the views they change are traced).
    fn traced(&self, kind: Kind) -> bool {
        kind != Kind::Heartbeat
    }

    /// Carries out the effects replica `i` produced, then audits it.
    pub(in crate::replica) fn flush(&mut self, i: usize) {
        let effects = self.nodes[i].as_mut().map(|n| n.replica.take_effects());
        for effect in effects.into_iter().flatten() {
            let generation = self.fresh();
            let queues = &mut self.nodes[i].as_mut().expect("up").queues;
            match effect {
                Effect::Send { to, request } => self.send(i, to, request, None),
                Effect::Replicate { to, write } => {
                    // A write the replica issued on its own (a replay).
                    let own = self.nodes[i].as_ref().map(|n| n.replica.me().id.clone());
                    if own.as_ref() == Some(&write.dot.replica)
                        && !self.issued.contains_key(&write.dot)
                    {
                        self.issued.insert(write.dot.clone(), self.log.len());
                        let (key, version, deps) =
                            (write.key.clone(), write.version(), write.deps.clone());
                        self.log.push(Logged { key, version, deps });
                    }
                    let queues = &mut self.nodes[i].as_mut().expect("up").queues;
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
                Effect::Reincarnate => {
                    let incarnation = format!("inc{generation}");
                    self.replica_mut(i).reincarnate(&incarnation);
                }
            }
        }
        self.note_state(i);
        if let Err(e) = self.audit(i) {
            panic!("t={} at r{i} ({}): {e}", self.now, self.addrs[i]);
        }
    }

    /// The transport of replica `i` sends a batch on every idle queue.
    pub(super) fn pump(&mut self, i: usize) {
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
    pub(in crate::replica) fn deliver_queue(&mut self, from: usize, to: usize) {
        let i = from;
        let node = self.nodes[from].as_mut().expect("up");
        let queue = node.queues.remove(&self.addrs[to]).expect("a queue");
        let writes = queue.writes.iter().map(|w| Write::clone(w)).collect();
        let (from, now) = (node.replica.me().clone(), self.now);
        let request = Request::Replicate { from, writes };
        let what = Sent::of(&request);
        let reply = self.replica_mut(to).handle(request, now);
        assert!(matches!(reply, Reply::Ack { .. }));
        let fate = Fate::Handled(Some(self.replica(to).stats().buffered));
        let event = Event::Request {
            from: i,
            to,
            what,
            fate,
        };
        self.trace.push(now, event);
        self.flush(to);
    }
}
