//! Membership changes made on purpose: an operator's view changes, relayed
//! to every member reliably and in order, and the view a DNS name lists
//! (`VIEW_DNS`). What the failure detector does on its own lives in
//! [`super::view`] and [`Replica::tick`].
//!
//! An operator's change is a [`Decision`] stamped with a Lamport time: for
//! each address a replica keeps the last decision it knows, and applies a
//! decision only if it comes after that one. So a change sent again, or
//! overtaken by a later change of its address, changes nothing, and
//! replicas that heard the changes of an address in different orders still
//! agree on the last. Decisions reach every member and suspect through
//! relays, and every replica another one joins (both ways, in the join);
//! heartbeats carry a digest of the decisions known, and a replica that
//! sees another digest than its own joins the sender. So one that was cut
//! off, forgotten, or started after a change learns it when it meets the
//! others again.

use std::collections::BTreeSet;

use tracing::{info, warn};

use crate::address::SocketAddress;

use super::message::{Decision, Request, ViewChange};
use super::outputs::{Effect, Wait};
use super::state::Replica;
use super::timing::{Millis, DNS_MISSES_TO_LEAVE};

impl Replica {
    /// An operator's view change, as the API takes it: refused while this
    /// replica holds no copy of the state, for it does not know yet the
    /// changes made before it started (a change stamped now could come
    /// before them, and be undone when it learns them). Otherwise whether
    /// it changed the view (see [`Replica::view_add`] and
    /// [`Replica::view_remove`]).
    pub fn change_view(&mut self, change: ViewChange, now: Millis) -> Result<bool, Wait> {
        if !self.is_synced() {
            return Err(Wait::NotReady);
        }
        Ok(match change {
            ViewChange::Add(address) => self.view_add(address, now),
            ViewChange::Remove(address) => self.view_remove(address),
        })
    }

    /// An operator adds `address` to the view here; the change is relayed
    /// to every member. Returns `false` if it was a member already.
    pub fn view_add(&mut self, address: SocketAddress, now: Millis) -> bool {
        if !self.view.add(&address, now) {
            return false;
        }
        info!(peer = %address, "replica added to the view by request");
        let decision = self.decide(ViewChange::Add(address));
        self.relay(&decision);
        true
    }

    /// An operator removes `address` (a member, or a suspect) from the
    /// view here; the change is relayed to every member and to the removed
    /// replica. Returns `false` if it was neither.
    pub fn view_remove(&mut self, address: SocketAddress) -> bool {
        // An address this replica does not know is not in its view: the
        // removal is refused, and nothing is recorded.
        if address == self.me.address || self.view.peer(&address).is_none() {
            return false;
        }
        self.view.remove(&address, None);
        info!(peer = %address, "replica removed from the view by request");
        self.let_go(address.clone());
        let decision = self.decide(ViewChange::Remove(address.clone()));
        self.relay(&decision);
        let request = self.relay_request(decision);
        self.send(&address, request);
        true
    }

    /// Leaves `address` out of the view because the shard map no longer
    /// places it in this replica's group. Unlike an operator's removal the
    /// change is local (every member adopts the same map on its own) and
    /// the address is refused only for a suspect timeout, so hearsay from a
    /// member still on the older map cannot bring it back, while a later
    /// map that places it here again ([`Replica::allow`]) is never blocked
    /// by it. Returns whether it was a member or a suspect.
    pub fn leave_out(&mut self, address: SocketAddress, now: Millis) -> bool {
        if address == self.me.address || !self.view.knows(&address) {
            return false;
        }
        let until = now.saturating_add(self.timing.suspect_timeout);
        self.view.remove(&address, Some(until));
        info!(peer = %address, "replica left out of the view: the shard map moved it");
        self.dns_misses.remove(&address);
        self.rejoined.remove(&address);
        self.let_go(address);
        true
    }

    /// Lifts any refusal of `address`, which the shard map places in this
    /// replica's group: it is heard again (and joins) as any member.
    pub fn allow(&mut self, address: &SocketAddress) {
        if self.view.unevict(address) {
            info!(peer = %address, "replica placed back in the group; no longer refused");
        }
        self.removed_by.remove(address);
    }

    /// Drops what this replica keeps for `peer`, which left the view (or
    /// was forgotten): the view changes queued for it, its refusal of this
    /// replica, and its replication queue.
    pub(super) fn let_go(&mut self, peer: SocketAddress) {
        self.relays.remove(&peer);
        self.removed_by.remove(&peer);
        self.outbox.push(Effect::DropQueue { peer });
    }

    /// Stamps a change made here, and records it as the last of its
    /// address.
    pub(super) fn decide(&mut self, change: ViewChange) -> Decision {
        self.view_stamp += 1;
        let decision = Decision {
            change,
            stamp: self.view_stamp,
            by: self.me.id.clone(),
        };
        self.record(decision.clone());
        decision
    }

    /// Every last decision this replica knows, for a join.
    pub(super) fn decisions(&self) -> Vec<Decision> {
        self.decisions.values().cloned().collect()
    }

    /// Applies the decisions another replica knows that come after the ones
    /// known here.
    pub(super) fn learn_decisions(&mut self, decisions: Vec<Decision>, now: Millis) {
        for decision in decisions {
            self.apply_decision(decision, now);
        }
    }

    /// A peer knows other view changes than this replica (its digest
    /// differs): a join, which carries every decision both ways, brings
    /// each what it lacks.
    pub(super) fn catch_up_decisions(&mut self, peer: &SocketAddress, decided: u64, now: Millis) {
        if decided != self.decided {
            self.rejoin(peer, now);
        }
    }

    /// Records `decision` as the last of its address.
    pub(super) fn record(&mut self, decision: Decision) {
        let address = decision.change.address().clone();
        if let Some(old) = self.decisions.insert(address, decision.clone()) {
            self.decided = self.decided.wrapping_sub(digest(&old));
        }
        self.decided = self.decided.wrapping_add(digest(&decision));
    }

    fn relay_request(&self, decision: Decision) -> Request {
        Request::ViewChange {
            from: self.me.clone(),
            decision,
        }
    }

    /// Queues a decision for every member, those suspected down included
    /// (they are back soon, or never).
    fn relay(&mut self, decision: &Decision) {
        let members = self.view.peers().chain(self.view.suspects());
        let peers: Vec<SocketAddress> = members.map(|(a, _)| a.clone()).collect();
        for peer in peers {
            let relays = self.relays.entry(peer.clone()).or_default();
            relays.changes.push_back(decision.clone());
            self.send_relay(&peer, None);
        }
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
        let Some(decision) = relays.changes.front().cloned() else {
            return;
        };
        relays.in_flight = true;
        let request = self.relay_request(decision);
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
        self.dns = true;
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
                info!(peer = %address, "replica no longer listed in DNS; removed from the view");
                self.let_go(address);
            }
        }
    }

    /// Applies `decision` if it comes after the last decision known for its
    /// address. Returns whether it did.
    pub(super) fn apply_decision(&mut self, decision: Decision, now: Millis) -> bool {
        let address = decision.change.address().clone();
        if self
            .decisions
            .get(&address)
            .is_some_and(|known| !decision.follows(known))
        {
            return false;
        }
        self.view_stamp = self.view_stamp.max(decision.stamp);
        self.record(decision.clone());
        match decision.change {
            ViewChange::Add(address) if address != self.me.address => {
                if self.view.add(&address, now) {
                    info!(peer = %address, "replica added to the view (relayed)");
                }
            }
            ViewChange::Remove(address) if address == self.me.address => {
                warn!(
                    by = %decision.by,
                    "this replica was removed from the view; peers will refuse it until it rejoins"
                );
                // Like a refusal as removed: no client is served until the
                // decider hears this replica again (if it is one this
                // replica can meet: a member, suspect or seed).
                if let Ok(by) = SocketAddress::parse(decision.by.address()) {
                    if self.view.knows(&by) || self.seeds.contains(&by) {
                        self.removed_by.insert(by, now);
                    }
                }
            }
            ViewChange::Remove(address) => {
                if self.view.remove(&address, None) {
                    info!(peer = %address, "replica removed from the view (relayed)");
                }
                self.let_go(address);
            }
            ViewChange::Add(_) => {}
        }
        true
    }
}

/// A stable 64-bit digest of a decision (FNV-1a over its parts); a set's
/// digest is the wrapping sum of its members', whatever their order.
fn digest(decision: &Decision) -> u64 {
    let (added, address) = match &decision.change {
        ViewChange::Add(a) => (1u8, a),
        ViewChange::Remove(a) => (0u8, a),
    };
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let parts: [&[u8]; 4] = [
        address.as_str().as_bytes(),
        &[added],
        &decision.stamp.to_le_bytes(),
        decision.by.as_str().as_bytes(),
    ];
    for byte in parts.iter().flat_map(|p| p.iter()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}
