//! Membership: who is in the view, who is suspected down, who was removed.
//!
//! A member that stops answering for longer than the failure timeout is
//! moved to the *suspects*: it leaves the view, but it is still probed, and
//! the first sign of life readmits it. A suspect silent for longer than the
//! suspect timeout is *forgotten*: no record of it is left. An address an
//! operator removed is *evicted*: its current incarnation is refused until
//! it joins again (a restart, or an operator adding it back).
//!
//! A peer is *trusted* once it has joined this replica (or this replica
//! it) and each was found to hold everything the other forgot (see
//! `join.rs`): only then do they exchange writes. A peer that is added
//! anew, re-added, or shows up as another incarnation is not trusted until
//! it joins again.

use std::collections::BTreeMap;

use crate::address::SocketAddress;
use crate::causal::{ReplicaId, VectorClock};

use super::message::Member;
use super::peer::{Heard, Peer};
use super::timing::Millis;

/// An address an operator (or DNS) removed.
#[derive(Debug, Clone)]
struct Eviction {
    /// The incarnation removed, if it was known: only a join from another
    /// incarnation clears the eviction.
    id: Option<ReplicaId>,
    /// When the record is dropped (DNS removals); `None` keeps an
    /// operator's removal until the address is added back.
    expires: Option<Millis>,
}

/// The membership state of one replica.
#[derive(Debug, Clone)]
pub struct View {
    me: SocketAddress,
    members: BTreeMap<SocketAddress, Peer>,
    suspects: BTreeMap<SocketAddress, Peer>,
    /// Addresses an operator or DNS removed.
    evicted: BTreeMap<SocketAddress, Eviction>,
}

impl View {
    /// The view a replica starts with: `initial` (from `VIEW`) plus itself.
    pub fn new(me: SocketAddress, initial: &[SocketAddress], now: Millis) -> Self {
        let members = initial
            .iter()
            .filter(|a| **a != me)
            .map(|a| (a.clone(), Peer::new(now)))
            .collect();
        View {
            me,
            members,
            suspects: BTreeMap::new(),
            evicted: BTreeMap::new(),
        }
    }

    /// This replica's address.
    pub fn me(&self) -> &SocketAddress {
        &self.me
    }

    /// Every member, this replica included, in print order.
    pub fn addresses(&self) -> Vec<SocketAddress> {
        let mut all: Vec<SocketAddress> = self.members.keys().cloned().collect();
        all.push(self.me.clone());
        all.sort();
        all
    }

    /// The view as SPEC prints it: `a:p,b:p,c:p`.
    pub fn print(&self) -> String {
        let all: Vec<String> = self.addresses().iter().map(|a| a.to_string()).collect();
        all.join(",")
    }

    /// Whether `address` is in the view (this replica always is).
    pub fn contains(&self, address: &SocketAddress) -> bool {
        *address == self.me || self.members.contains_key(address)
    }

    /// The other members.
    pub fn peers(&self) -> impl Iterator<Item = (&SocketAddress, &Peer)> {
        self.members.iter()
    }

    /// The other members, mutably.
    pub fn peers_mut(&mut self) -> impl Iterator<Item = (&SocketAddress, &mut Peer)> {
        self.members.iter_mut()
    }

    /// Replicas suspected down (still probed for readmission).
    pub fn suspects(&self) -> impl Iterator<Item = (&SocketAddress, &Peer)> {
        self.suspects.iter()
    }

    /// Replicas suspected down, mutably.
    pub fn suspects_mut(&mut self) -> impl Iterator<Item = (&SocketAddress, &mut Peer)> {
        self.suspects.iter_mut()
    }

    /// A member or suspect, mutably.
    pub fn peer_mut(&mut self, address: &SocketAddress) -> Option<&mut Peer> {
        if let Some(p) = self.members.get_mut(address) {
            return Some(p);
        }
        self.suspects.get_mut(address)
    }

    /// A member or suspect.
    pub fn peer(&self, address: &SocketAddress) -> Option<&Peer> {
        self.members
            .get(address)
            .or_else(|| self.suspects.get(address))
    }

    /// Whether `address` is a member or a suspect.
    pub fn knows(&self, address: &SocketAddress) -> bool {
        self.members.contains_key(address) || self.suspects.contains_key(address)
    }

    /// Whether an operator (or DNS) removed `address` and it was not added
    /// back since.
    pub fn is_evicted(&self, address: &SocketAddress) -> bool {
        self.evicted.contains_key(address)
    }

    /// The trusted members: those that writes are shipped to.
    pub fn trusted(&self) -> impl Iterator<Item = &SocketAddress> {
        self.members
            .iter()
            .filter(|(_, p)| p.trusted())
            .map(|(a, _)| a)
    }

    /// A member, if `address` is one.
    pub fn member(&self, address: &SocketAddress) -> Option<&Peer> {
        self.members.get(address)
    }

    /// Number of members, this replica included.
    pub fn len(&self) -> usize {
        self.members.len() + 1
    }

    /// Never empty: the replica itself is always a member.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// An operator (or a relayed change) adds `address`. Returns whether it
    /// was not a member before.
    pub fn add(&mut self, address: &SocketAddress, now: Millis) -> bool {
        self.evicted.remove(address);
        if self.contains(address) {
            return false;
        }
        let mut peer = self.suspects.remove(address).unwrap_or_default();
        peer.last_heard = now;
        self.members.insert(address.clone(), peer);
        true
    }

    /// Adds `address`, learned from another member's view, unless it is a
    /// member already, a suspect (this replica saw it stop answering: it is
    /// probed, and readmitted when it answers, not on hearsay), or an
    /// operator removed it (the other member's view may predate the
    /// removal). Returns whether it was added.
    pub fn learn(&mut self, address: &SocketAddress, now: Millis) -> bool {
        !self.evicted.contains_key(address)
            && !self.suspects.contains_key(address)
            && self.add(address, now)
    }

    /// An operator (a relayed change, or DNS) removes `address`: it leaves
    /// the view, its record is forgotten, and it is refused until it joins
    /// again. The eviction is kept until `expires`, or for good. Returns
    /// whether it was a member or a suspect.
    pub fn remove(&mut self, address: &SocketAddress, expires: Option<Millis>) -> bool {
        if *address == self.me {
            return false;
        }
        let suspect = self.suspects.remove(address);
        let member = self.members.remove(address);
        let was_known = member.is_some() || suspect.is_some();
        let id = member.or(suspect).and_then(|peer| peer.id);
        let before = self.evicted.remove(address);
        let eviction = Eviction {
            id: id.or(before.as_ref().and_then(|e| e.id.clone())),
            // An operator's removal outlasts a DNS one.
            expires: match before {
                Some(Eviction { expires: None, .. }) => None,
                _ => expires,
            },
        };
        self.evicted.insert(address.clone(), eviction);
        was_known
    }

    /// Clears the eviction of `address`, if any. Returns whether there was one.
    pub fn unevict(&mut self, address: &SocketAddress) -> bool {
        self.evicted.remove(address).is_some()
    }

    /// Drops the DNS evictions whose time is up.
    pub fn expire_evictions(&mut self, now: Millis) {
        self.evicted
            .retain(|_, e| e.expires.is_none_or(|t| now < t));
    }

    /// Clears the eviction of `member`'s address if it is another
    /// incarnation than the one removed (it restarted and joins again). A
    /// join the removed incarnation sent before its removal arrived stays
    /// refused. When the incarnation removed is not known here, only a
    /// `fresh` joiner (one that holds no state yet) is taken for a new one.
    /// Returns whether it cleared one.
    pub fn pardon(&mut self, member: &Member, fresh: bool) -> bool {
        let removed = self.evicted.get(&member.address);
        let pardoned = removed.is_some_and(|e| match &e.id {
            Some(id) => *id != member.id,
            None => fresh,
        });
        if pardoned {
            self.evicted.remove(&member.address);
        }
        pardoned
    }

    /// Records a sign of life from `member`, readmitting or adding it.
    pub fn hear_from(&mut self, member: &Member, now: Millis) -> Heard {
        let address = &member.address;
        if *address == self.me {
            return Heard::Myself;
        }
        if self.evicted.contains_key(address) {
            // Removed by an operator: only a join brings it back.
            return Heard::Evicted;
        }
        let (heard, peer) = if let Some(peer) = self.members.get_mut(address) {
            (Heard::Member, peer)
        } else if let Some(peer) = self.suspects.remove(address) {
            self.members.insert(address.clone(), peer);
            (
                Heard::Readmitted,
                self.members.get_mut(address).expect("just inserted"),
            )
        } else {
            self.members.insert(address.clone(), Peer::new(now));
            (
                Heard::Added,
                self.members.get_mut(address).expect("just inserted"),
            )
        };
        if peer.id.as_ref() != Some(&member.id) {
            // A new incarnation: what the old one reported no longer holds.
            peer.id = Some(member.id.clone());
            peer.clock = None;
            peer.lag = None;
            peer.vetted = false;
            peer.covered = false;
        }
        peer.last_heard = now;
        heard
    }

    /// Records a sign of life from `member` if it is a known member or
    /// suspect (readmitting a suspect), without adding anyone: an unknown
    /// replica, or another incarnation than the one known at an address,
    /// is [`Heard::Unknown`] until it joins.
    pub fn touch(&mut self, member: &Member, now: Millis) -> Heard {
        let address = &member.address;
        if *address == self.me {
            return Heard::Myself;
        }
        if self.evicted.contains_key(address) {
            return Heard::Evicted;
        }
        let known = self.peer(address).map(|p| p.id.clone());
        match known {
            None => return Heard::Unknown,
            Some(Some(id)) if id != member.id => return Heard::Unknown,
            Some(_) => {}
        }
        self.hear_from(member, now)
    }

    /// Moves members not heard from for `timeout` to the suspects, and
    /// returns their addresses.
    pub fn expire(&mut self, now: Millis, timeout: Millis) -> Vec<SocketAddress> {
        let dead: Vec<SocketAddress> = self
            .members
            .iter()
            .filter(|(_, p)| now.saturating_sub(p.last_heard) > timeout)
            .map(|(a, _)| a.clone())
            .collect();
        for address in &dead {
            if let Some(mut peer) = self.members.remove(address) {
                peer.pull_in_flight = false;
                peer.lag = None;
                self.suspects.insert(address.clone(), peer);
            }
        }
        dead
    }

    /// Forgets the suspects silent for longer than `timeout`, and returns
    /// their addresses.
    pub fn forget(&mut self, now: Millis, timeout: Millis) -> Vec<SocketAddress> {
        let gone: Vec<SocketAddress> = self
            .suspects
            .iter()
            .filter(|(_, p)| now.saturating_sub(p.last_heard) > timeout)
            .map(|(a, _)| a.clone())
            .collect();
        for address in &gone {
            self.suspects.remove(address);
        }
        gone
    }

    /// Every member and suspect with what this replica knows of it.
    pub fn known(&self) -> impl Iterator<Item = (&SocketAddress, &Peer)> {
        self.members.iter().chain(self.suspects.iter())
    }

    /// The clocks every replica that could still hold old data last
    /// reported (members and suspects), or `None` if one has not reported.
    pub fn reported_clocks(&self) -> Option<Vec<&VectorClock>> {
        self.members
            .values()
            .chain(self.suspects.values())
            .map(|p| p.clock.as_ref())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddress {
        SocketAddress::parse(s).unwrap()
    }
    fn member(a: &str, inc: &str) -> Member {
        Member {
            address: addr(a),
            id: ReplicaId::new(a, inc),
        }
    }

    #[test]
    fn silent_member_becomes_suspect_and_is_readmitted_when_heard() {
        let me = addr("10.0.0.1:8085");
        let mut view = View::new(me, &[addr("10.0.0.2:8085"), addr("10.0.0.3:8085")], 0);
        assert_eq!(view.print(), "10.0.0.1:8085,10.0.0.2:8085,10.0.0.3:8085");
        view.hear_from(&member("10.0.0.2:8085", "a"), 900);
        assert_eq!(view.expire(1500, 1000), vec![addr("10.0.0.3:8085")]);
        assert_eq!(view.print(), "10.0.0.1:8085,10.0.0.2:8085");
        assert_eq!(
            view.hear_from(&member("10.0.0.3:8085", "b"), 1600),
            Heard::Readmitted
        );
        assert_eq!(view.len(), 3);
    }

    #[test]
    fn evicted_address_is_refused_until_added_back() {
        let me = addr("10.0.0.1:8085");
        let mut view = View::new(me, &[addr("10.0.0.2:8085")], 0);
        let m = member("10.0.0.2:8085", "a");
        view.hear_from(&m, 1);
        assert!(view.remove(&m.address, None));
        assert!(!view.remove(&m.address, None));
        assert_eq!(view.hear_from(&m, 2), Heard::Evicted);
        assert!(!view.contains(&m.address));
        assert!(view.add(&m.address, 3));
        assert_eq!(view.hear_from(&m, 4), Heard::Member);
    }

    #[test]
    fn only_a_new_incarnation_joining_clears_an_eviction() {
        let mut view = View::new(addr("10.0.0.1:8085"), &[addr("10.0.0.2:8085")], 0);
        let old = member("10.0.0.2:8085", "a");
        view.hear_from(&old, 1);
        view.remove(&old.address, None);
        view.remove(&old.address, None);
        // A join the removed incarnation sent before its removal.
        assert!(!view.pardon(&old, false));
        assert!(!view.pardon(&old, true));
        assert_eq!(view.hear_from(&old, 2), Heard::Evicted);
        // Nor does a view that names it, sent before the removal.
        assert!(!view.learn(&old.address, 3));
        let restarted = member("10.0.0.2:8085", "b");
        assert!(view.pardon(&restarted, false));
        assert_eq!(view.hear_from(&restarted, 3), Heard::Added);
    }

    #[test]
    fn an_eviction_of_an_unknown_incarnation_is_cleared_only_by_a_fresh_joiner() {
        let mut view = View::new(addr("10.0.0.1:8085"), &[addr("10.0.0.2:8085")], 0);
        let address = addr("10.0.0.2:8085");
        assert!(
            view.remove(&address, None),
            "a seed not heard yet is removed"
        );
        // Whoever joins holding state may be the incarnation removed.
        let running = member("10.0.0.2:8085", "a");
        assert!(!view.pardon(&running, false));
        assert_eq!(view.hear_from(&running, 2), Heard::Evicted);
        // One that holds nothing yet started after the removal.
        let restarted = member("10.0.0.2:8085", "b");
        assert!(view.pardon(&restarted, true));
        assert_eq!(view.hear_from(&restarted, 3), Heard::Added);
    }

    #[test]
    fn a_suspect_is_not_readmitted_on_hearsay() {
        let mut view = View::new(addr("10.0.0.1:8085"), &[addr("10.0.0.2:8085")], 0);
        let b = member("10.0.0.2:8085", "b");
        view.hear_from(&b, 100);
        assert_eq!(view.expire(5000, 3000), vec![b.address.clone()]);
        assert!(
            !view.learn(&b.address, 5100),
            "a suspect learned from a view"
        );
        assert!(!view.contains(&b.address));
        assert_eq!(view.hear_from(&b, 5200), Heard::Readmitted);
    }

    #[test]
    fn a_suspect_silent_past_the_suspect_timeout_is_forgotten() {
        let me = addr("10.0.0.1:8085");
        let mut view = View::new(me, &[addr("10.0.0.2:8085"), addr("10.0.0.3:8085")], 0);
        let b = member("10.0.0.2:8085", "b");
        view.hear_from(&b, 100);
        view.hear_from(&member("10.0.0.3:8085", "c"), 100);
        assert_eq!(
            view.expire(1200, 1000),
            vec![addr("10.0.0.2:8085"), addr("10.0.0.3:8085")]
        );
        view.touch(&member("10.0.0.3:8085", "c"), 1500);
        assert!(view.forget(3000, 3000).is_empty());
        assert_eq!(view.forget(3200, 3000), vec![addr("10.0.0.2:8085")]);
        assert!(!view.knows(&b.address));
        // A forgotten replica is unknown until it joins again.
        assert_eq!(view.touch(&b, 4300), Heard::Unknown);
        assert_eq!(view.hear_from(&b, 4300), Heard::Added);
        assert!(!view.peer(&b.address).unwrap().vetted);
    }

    #[test]
    fn removing_a_suspect_counts_and_a_dns_eviction_expires() {
        let me = addr("10.0.0.1:8085");
        let mut view = View::new(me, &[addr("10.0.0.2:8085")], 0);
        let b = member("10.0.0.2:8085", "b");
        view.hear_from(&b, 0);
        view.expire(5000, 1000);
        assert!(!view.contains(&b.address) && view.knows(&b.address));
        assert!(view.remove(&b.address, Some(9000)), "a suspect is removed");
        assert_eq!(view.touch(&b, 8000), Heard::Evicted);
        view.expire_evictions(9000);
        assert_eq!(view.touch(&b, 9001), Heard::Unknown);
        // An operator's removal does not expire.
        view.hear_from(&b, 9002);
        view.remove(&b.address, None);
        view.expire_evictions(u64::MAX);
        assert!(view.is_evicted(&b.address));
    }

    #[test]
    fn another_incarnation_is_unknown_until_it_joins() {
        let mut view = View::new(addr("10.0.0.1:8085"), &[addr("10.0.0.2:8085")], 0);
        let first = member("10.0.0.2:8085", "a");
        // A member from VIEW, never heard: its first incarnation is taken.
        assert_eq!(view.touch(&first, 1), Heard::Member);
        let second = member("10.0.0.2:8085", "b");
        assert_eq!(view.touch(&second, 2), Heard::Unknown);
        assert_eq!(view.hear_from(&second, 3), Heard::Member);
        assert_eq!(view.peer(&second.address).unwrap().id, Some(second.id));
    }

    #[test]
    fn unknown_replica_that_speaks_is_added() {
        let mut view = View::new(addr("10.0.0.1:8085"), &[], 0);
        assert_eq!(
            view.hear_from(&member("10.0.0.9:8085", "z"), 5),
            Heard::Added
        );
        assert!(view.contains(&addr("10.0.0.9:8085")));
    }
}
