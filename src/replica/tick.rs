//! The passing of time: joins, failure detection and forgetting, heartbeats
//! and probes, retries, anti-entropy pulls, state copies, tombstone
//! collection and retirements.

use tracing::{info, warn};

use crate::address::SocketAddress;

use super::message::Request;
use super::outputs::Effect;
use super::peer::Peer;
use super::state::Replica;
use super::timing::Millis;

/// How long writes stuck in the delivery buffer wait between two rounds of
/// pulls for their prerequisites.
const STUCK_BUFFER_RETRY: Millis = 1000;

impl Replica {
    /// Advances time.
    pub fn tick(&mut self, now: Millis) {
        self.last_tick = now;
        self.maybe_join(now);
        self.step_transfer(now);
        self.rescue_if_ready();
        self.detect_failures(now);
        self.send_heartbeats(now);

        let unacknowledged: Vec<SocketAddress> = self.relays.keys().cloned().collect();
        for address in unacknowledged {
            self.send_relay(&address, Some(now));
        }

        // Pull what peers reported having a while ago and is still missing.
        let mut lagging = Vec::new();
        for (address, peer) in self.view.peers() {
            if let Some((since, target)) = &peer.lag {
                if now.saturating_sub(*since) >= self.timing.pull_after
                    && !self.known.covers(target)
                {
                    lagging.push(address.clone());
                }
            }
        }
        for address in lagging {
            self.pull_from(&address, now);
        }

        // Writes stuck in the buffer: their prerequisites are somewhere.
        // Ask again at most every few pull intervals: prerequisites lost
        // with a crashed replica may never come.
        if let Some(since) = self.buffer_stuck_since {
            if now.saturating_sub(since) >= self.timing.pull_after && now >= self.next_stuck_pull {
                self.next_stuck_pull = now + STUCK_BUFFER_RETRY;
                let wanted = self.buffer.wanted(&self.known);
                self.catch_up(&wanted, now);
            }
        }

        self.probe_seeds(now, false);
        self.collect_tombstones(now);
        self.collect_orphans();
        self.retire_gone();
    }

    /// Members silent for the failure timeout become suspects (their queue
    /// dropped); suspects silent for the suspect timeout are forgotten.
    fn detect_failures(&mut self, now: Millis) {
        for peer in self.view.expire(now, self.timing.failure_timeout) {
            warn!(%peer, "replica stopped answering; removed from the view");
            self.outbox.push(Effect::DropQueue { peer });
        }
        for peer in self.view.forget(now, self.timing.suspect_timeout) {
            info!(%peer, "replica silent past the suspect timeout; forgotten");
            self.dns_misses.remove(&peer);
            self.rejoined.remove(&peer);
            self.let_go(peer);
        }
        self.view.expire_evictions(now);
        // A refuser this replica no longer knows, silent as long as a
        // suspect may be: it cannot hear this replica again.
        let (view, timeout) = (&self.view, self.timing.suspect_timeout);
        self.removed_by
            .retain(|a, t| view.knows(a) || now.saturating_sub(*t) < timeout);
    }

    /// Heartbeats to members every heartbeat interval, probes to suspects
    /// every probe interval.
    fn send_heartbeats(&mut self, now: Millis) {
        let (interval, probe) = (self.timing.heartbeat_interval, self.timing.probe_interval);
        let mut targets = Vec::new();
        for (address, peer) in self.view.peers_mut() {
            if due(peer, now, interval) {
                targets.push(address.clone());
            }
        }
        for (address, peer) in self.view.suspects_mut() {
            if due(peer, now, probe) {
                targets.push(address.clone());
            }
        }
        for address in targets {
            let heartbeat = self.heartbeat_for(&address);
            self.send(&address, heartbeat);
        }
    }

    /// A heartbeat for `peer`: this replica's clock, and its retirements
    /// of incarnations the peer last reported.
    pub(super) fn heartbeat_for(&self, peer: &SocketAddress) -> Request {
        Request::Heartbeat {
            from: self.me.clone(),
            clock: self.known.clock().clone(),
            retired: self.retirements_told(peer),
            decided: self.decided,
        }
    }
}

fn due(peer: &mut Peer, now: Millis, interval: Millis) -> bool {
    let due = !peer.heartbeat_in_flight
        && peer
            .last_heartbeat
            .is_none_or(|t| now.saturating_sub(t) >= interval);
    if due {
        peer.heartbeat_in_flight = true;
        peer.last_heartbeat = Some(now);
    }
    due
}
