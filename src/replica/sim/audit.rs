//! The invariants the simulated cluster checks after every input: what a
//! replica has applied and stores ([`Sim::audit`]), what a session may
//! read (the exemptions of [`Sim::is_lost`] and
//! [`Sim::pruned_while_cut_off`]), and whether the replicas converged
//! ([`Sim::divergence`]).

use std::collections::BTreeMap;

use crate::causal::{Dot, ReplicaId, VectorClock};
use crate::store::{Key, Version};

use super::super::Replica;
use super::session::{is_marker, replaced_sibling};

use super::cluster::*;

impl Sim {
    /// How many writes of `id` a running replica has.
    fn survived(&self, id: &ReplicaId) -> u64 {
        let counts = self.nodes.iter().flatten();
        counts
            .map(|node| node.replica.known().count(id))
            .max()
            .unwrap_or(0)
    }

    /// Whether write `n` of `id` is lost: its replica crashed and no
    /// running replica has it.
    pub(super) fn is_lost(&self, id: &ReplicaId, n: u64) -> bool {
        self.lost.contains(id) && self.survived(id) < n
    }

    /// The documented limit of retirement: `seen` was pruned from the
    /// session's context `sent` (its writer retired), and replica `i`
    /// lacks it while no replica that retired the writer counts `i`'s
    /// incarnation as a trusted member (it evicted or forgot `i`, or `i`
    /// restarted cut off and started a store of its own). Such a replica
    /// cannot tell the pruned context from one that names nothing.
    pub(super) fn pruned_while_cut_off(
        &self,
        i: usize,
        seen: &Version,
        sent: &VectorClock,
    ) -> bool {
        let writer = &seen.dot.replica;
        let r = self.replica(i);
        if sent.get(writer) >= seen.dot.counter
            || r.known().contains(&seen.dot)
            || r.known().is_retired(writer)
        {
            return false;
        }
        let me = r.me();
        let retirers: Vec<&Replica> = self
            .nodes
            .iter()
            .flatten()
            .map(|n| &n.replica)
            .filter(|n| n.known().is_retired(writer))
            .collect();
        let trusts = |n: &Replica| {
            n.view()
                .member(&me.address)
                .is_some_and(|p| p.id.as_ref() == Some(&me.id) && p.trusted())
        };
        !retirers.is_empty() && !retirers.into_iter().any(trusts)
    }

    /// Replica `i` applied only issued writes, each after its dependencies,
    /// and its store holds, for each key, an issued version no older than
    /// the winner among them (none lost, though tombstones may be).
    pub(super) fn audit(&mut self, i: usize) -> Result<(), String> {
        let survived: BTreeMap<ReplicaId, u64> = self
            .lost
            .iter()
            .map(|id| (id.clone(), self.survived(id)))
            .collect();
        let Some(node) = self.nodes[i].as_mut() else {
            return Ok(());
        };
        let (r, stats) = (&node.replica, node.replica.stats());
        let applied = r.known().effective();
        let signature = (r.progress(), stats.keys, stats.tombstones);
        if node.signature == signature && node.audited == applied {
            return Ok(());
        }
        for (id, n) in applied.iter() {
            for counter in node.audited.get(id) + 1..=n {
                let dot = Dot::new(id.clone(), counter);
                let Some(w) = self.issued.get(&dot).map(|&w| &self.log[w]) else {
                    return Err(format!("applied counts {dot}, which was never issued"));
                };
                // A dependency on a write lost with its replica (which
                // ended) cannot be waited for.
                let missing = r.known().missing(&w.deps);
                let lost = |(id, n): (&ReplicaId, u64)| survived.get(id).is_some_and(|&k| k < n);
                if !missing.iter().all(lost) {
                    return Err(format!("applied {dot} before its dependencies {missing:?}"));
                }
                let best = node.winners.entry(w.key.clone());
                let best = best.or_insert(w.version.clone());
                if w.version.supersedes(best) {
                    *best = w.version.clone();
                }
            }
        }
        node.audited = applied;
        node.signature = signature;
        if r.is_copying() {
            return Ok(());
        }
        for entry in r.store().iter() {
            let (key, v) = (entry.to_key(), entry.to_version());
            if !self.issued.contains_key(&v.dot) {
                return Err(format!("store holds {key:?}={v:?}, never issued"));
            }
            // A tombstone may stand where a newer one was forgotten: a copy
            // brought it from a replica that never saw the newer delete.
            let winner = node.winners.get(&key);
            let both_deleted = v.is_tombstone() && winner.is_some_and(|w| w.is_tombstone());
            if !both_deleted && winner.is_some_and(|w| *w != v && !v.supersedes(w)) {
                return Err(format!("store holds {key:?}={v:?}, older than {winner:?}"));
            }
        }
        let mut winners = node.winners.iter();
        // A key of a table that is not live, or a sibling a held one
        // replaced, is gone rightly.
        let gone = |k: &Key, v: &Version| {
            r.store().get(k).is_none()
                && !r.store().replaced_in_table(k, v)
                && !replaced_sibling(&self.log, k, v)
                && !is_marker(k, v)
        };
        if let Some(lost) = winners.find(|(k, v)| v.value.is_some() && gone(k, v)) {
            return Err(format!("store lost {lost:?}"));
        }
        Ok(())
    }

    /// Asserts that each replica of `at` has the view `members` (sorted).
    pub(in crate::replica) fn assert_views(&self, at: &[usize], members: &[usize]) {
        let view: Vec<&str> = members.iter().map(|&i| self.addrs[i].as_str()).collect();
        let view = view.join(",");
        for &i in at {
            let seen = self.replica(i).view().print();
            assert_eq!(seen, view, "t={}: the view at {}", self.now, self.addrs[i]);
        }
    }

    /// Why the replicas have not converged, if they have not.
    pub(in crate::replica) fn divergence(&self) -> Option<String> {
        let members: Vec<usize> = (0..self.addrs.len())
            .filter(|i| !self.gone.contains(i))
            .collect();
        let view: Vec<&str> = members.iter().map(|&i| self.addrs[i].as_str()).collect();
        let (view, mut first) = (view.join(","), None);
        for &i in &members {
            let Some(r) = self.nodes[i].as_ref().map(|n| &n.replica) else {
                return Some(format!("{} is down", self.addrs[i]));
            };
            // Writes waiting for writes lost in a crash wait forever.
            let stuck = r.buffer.wanted(r.known());
            let waits = stuck.iter().any(|(id, _)| !self.lost.contains(id));
            if !r.is_ready() || r.is_copying() || waits || r.view().print() != view {
                let stats = r.stats();
                return Some(format!("{}: {stats:?} {}", self.addrs[i], r.view().print()));
            }
            let mut store: Vec<_> = r
                .store()
                .iter()
                .map(|e| (e.to_key(), e.to_version()))
                .collect();
            store.sort_by(|a, b| a.0.cmp(&b.0));
            let state = (store, r.known().effective());
            match &first {
                Some((at, f)) if *f != state => {
                    let here = &self.addrs[i];
                    let stats = r.stats();
                    return Some(format!(
                        "{at}: {f:?}\n differs from\n{here} {stats:?}: {state:?}"
                    ));
                }
                _ => first = Some((&self.addrs[i], state)),
            }
        }
        None
    }
}
