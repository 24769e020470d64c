//! Membership changes made on purpose: an operator's view changes, relayed
//! to every member reliably and in order, and the view a DNS name lists
//! (`VIEW_DNS`). What the failure detector does on its own lives in
//! [`super::view`] and [`Replica::tick`].

use std::collections::BTreeSet;

use tracing::{info, warn};

use crate::address::SocketAddress;

use super::{Effect, Millis, Replica, Request, ViewChange, DNS_MISSES_TO_LEAVE};

impl Replica {
    /// An operator adds `address` to the view here; the change is relayed
    /// to every member. Returns `false` if it was a member already.
    pub fn view_add(&mut self, address: SocketAddress, now: Millis) -> bool {
        if !self.view.add(&address, now) {
            return false;
        }
        info!(peer = %address, "replica added to the view by request");
        self.relay(ViewChange::Add(address));
        true
    }

    /// An operator removes `address` (a member, or a suspect) from the
    /// view here; the change is relayed to every member and to the removed
    /// replica. Returns `false` if it was neither.
    pub fn view_remove(&mut self, address: SocketAddress) -> bool {
        if address == self.me.address || !self.view.remove(&address, None) {
            return false;
        }
        info!(peer = %address, "replica removed from the view by request");
        self.relays.remove(&address);
        self.outbox.push(Effect::DropQueue {
            peer: address.clone(),
        });
        let seq = self.relay(ViewChange::Remove(address.clone()));
        let request = self.relay_request(seq, ViewChange::Remove(address.clone()));
        self.send(&address, request);
        true
    }

    pub(super) fn relay_request(&self, seq: u64, change: ViewChange) -> Request {
        Request::ViewChange {
            from: self.me.clone(),
            change,
            seq,
        }
    }

    /// Numbers an operator's change and queues it for every member, those
    /// suspected down included (they are back soon, or never); returns its
    /// number.
    pub(super) fn relay(&mut self, change: ViewChange) -> u64 {
        self.view_changes += 1;
        let seq = self.view_changes;
        let members = self.view.peers().chain(self.view.suspects());
        let peers: Vec<SocketAddress> = members.map(|(a, _)| a.clone()).collect();
        for peer in peers {
            let relays = self.relays.entry(peer.clone()).or_default();
            relays.changes.push_back((seq, change.clone()));
            self.send_relay(&peer, None);
        }
        seq
    }

    /// Sends `peer` the oldest change it has not acknowledged, unless one is
    /// in flight or, at `now`, its retry is not due yet.
    pub(super) fn send_relay(&mut self, peer: &SocketAddress, now: Option<Millis>) {
        let Some(relays) = self.relays.get_mut(peer) else {
            return;
        };
        if relays.in_flight || now.is_some_and(|t| t < relays.retry_at) {
            return;
        }
        let Some((seq, change)) = relays.changes.front().cloned() else {
            return;
        };
        relays.in_flight = true;
        let request = self.relay_request(seq, change);
        self.send(peer, request);
    }

    /// A relayed change got an answer (the next one goes) or failed (it is
    /// sent again after the probe interval).
    pub(super) fn on_relay_reply(&mut self, peer: &SocketAddress, answered: bool, now: Millis) {
        let Some(relays) = self.relays.get_mut(peer) else {
            return;
        };
        relays.in_flight = false;
        if answered {
            relays.changes.pop_front();
        } else {
            relays.retry_at = now + self.timing.probe_interval;
        }
        if relays.changes.is_empty() {
            self.relays.remove(peer);
        } else {
            self.send_relay(peer, Some(now));
        }
    }

    /// The replicas a DNS name lists now (`VIEW_DNS`, authoritative):
    /// listed addresses that are not members join the view; a member the
    /// name has not listed in [`DNS_MISSES_TO_LEAVE`] answers in a row leaves
    /// it (the deployment scaled down), which leaves a new replica time to
    /// appear in DNS after it joined. An empty answer changes nothing.
    ///
    /// The answer also becomes this replica's seeds; an address that left
    /// DNS is forgotten at once (no probes, no say in tombstone collection)
    /// and refused for the suspect timeout, after which nothing of it is
    /// kept.
    pub fn set_dns_members(&mut self, resolved: Vec<SocketAddress>, now: Millis) {
        if resolved.is_empty() {
            return;
        }
        let resolved: BTreeSet<SocketAddress> = resolved.into_iter().collect();
        self.seeds = resolved
            .iter()
            .filter(|a| **a != self.me.address)
            .cloned()
            .collect();
        for address in &resolved {
            if *address != self.me.address && !self.view.contains(address) {
                self.view.add(address, now);
                info!(peer = %address, "replica added to the view from DNS");
            }
        }
        let members: Vec<SocketAddress> = self.view.peers().map(|(a, _)| a.clone()).collect();
        self.dns_misses
            .retain(|a, _| members.contains(a) && !resolved.contains(a));
        for address in members.into_iter().filter(|a| !resolved.contains(a)) {
            let misses = self.dns_misses.entry(address.clone()).or_insert(0);
            *misses += 1;
            if *misses >= DNS_MISSES_TO_LEAVE {
                self.dns_misses.remove(&address);
                let expires = now + self.timing.suspect_timeout;
                self.view.remove(&address, Some(expires));
                self.relays.remove(&address);
                info!(peer = %address, "replica no longer listed in DNS; removed from the view");
                self.outbox.push(Effect::DropQueue { peer: address });
            }
        }
    }

    pub(super) fn apply_view_change(&mut self, change: ViewChange, now: Millis) {
        match change {
            ViewChange::Add(address) if address != self.me.address => {
                if self.view.add(&address, now) {
                    info!(peer = %address, "replica added to the view (relayed)");
                }
            }
            ViewChange::Remove(address) if address == self.me.address => {
                warn!(
                    "this replica was removed from the view; peers will refuse it until it rejoins"
                );
            }
            ViewChange::Remove(address) => {
                if self.view.remove(&address, None) {
                    info!(peer = %address, "replica removed from the view (relayed)");
                }
                self.relays.remove(&address);
                self.outbox.push(Effect::DropQueue { peer: address });
            }
            ViewChange::Add(_) => {}
        }
    }
}
