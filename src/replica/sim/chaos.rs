//! Faults striking the simulated cluster at random: the short ones of any
//! run (partitions, heals, crashes, restarts, a changing network) and
//! those of a long-lived store (partitions longer than the suspect
//! timeout, an operator's evictions and re-adds).

use super::super::{Millis, ViewChange};
use super::cluster::{Sim, STEP};
use super::rng::{CALM, LOSSY, ROUGH};

/// An operator removed `victim` at `at`; it is added back at `back`.
struct Eviction {
    victim: usize,
    at: usize,
    back: Millis,
}

impl Sim {
    /// Runs `ms` while faults strike at random: partitions, heals, crashes,
    /// restarts and changes of how lossy the network is.
    pub(in crate::replica) fn run_chaos(&mut self, ms: Millis) {
        for _ in 0..ms / STEP {
            let n = self.nodes.len();
            let dead: Vec<usize> = (0..n)
                .filter(|&i| self.nodes[i].is_none() && !self.gone.contains(&i))
                .collect();
            match self.rng.below(1000) {
                0..=2 => self.group = (0..n).map(|_| self.rng.below(3)).collect(),
                3..=6 => self.group = vec![0; n],
                7..=8 if dead.len() + 1 < n => {
                    let victim = self.rng.pick(&self.live());
                    if self.with_disks && self.rng.below(2) == 0 {
                        self.crash_keeping_disk(victim);
                    } else {
                        self.crash(victim);
                    }
                }
                9..=14 if !dead.is_empty() => {
                    let i = self.rng.pick(&dead);
                    self.restart(i);
                }
                15..=16 => self.faults = self.rng.pick(&[CALM, LOSSY, ROUGH]),
                _ => {}
            }
            self.step();
        }
    }

    /// Runs `ms` under the faults of a long-lived store: one replica (or
    /// two) cut off for up to twice the suspect timeout, crashes and
    /// restarts, a changing network and, with `evictions`, an operator
    /// removing a replica at another and adding it back a while later.
    /// Everything removed is added back before it returns.
    pub(in crate::replica) fn run_long_chaos(&mut self, ms: Millis, evictions: bool) {
        let n = self.nodes.len();
        let mut heal_at: Option<Millis> = None;
        let mut evicted: Vec<Eviction> = Vec::new();
        let mut re_added: Vec<usize> = Vec::new();
        for _ in 0..ms / STEP {
            let now = self.now;
            if heal_at.is_some_and(|t| now >= t) {
                self.group = vec![0; n];
                heal_at = None;
            }
            let due = evicted
                .iter()
                .position(|e| now >= e.back && self.nodes[e.at].is_some());
            if let Some(pos) = due {
                // Refused while the replica is starting: tried again later.
                if self.add_back(&evicted[pos]) {
                    re_added.push(evicted.remove(pos).victim);
                }
            }
            let dead: Vec<usize> = (0..n).filter(|&i| self.nodes[i].is_none()).collect();
            match self.rng.below(1000) {
                0..=1 if heal_at.is_none() => {
                    let mut groups = vec![0; n];
                    let i = self.rng.below(n as u64) as usize;
                    groups[i] = 1;
                    if n > 3 && self.rng.below(2) == 0 {
                        groups[(i + 1) % n] = 1;
                    }
                    self.group = groups;
                    heal_at = Some(now + 1000 + self.rng.below(2 * self.timing.suspect_timeout));
                }
                2 if evictions && evicted.is_empty() => {
                    let at = self.rng.pick(&self.live());
                    let victim = self.rng.below(n as u64) as usize;
                    let address = self.addrs[victim].clone();
                    let change = ViewChange::Remove(address);
                    if at != victim && self.replica_mut(at).change_view(change, now) == Ok(true) {
                        self.flush(at);
                        let back = now + 2000 + self.rng.below(2 * self.timing.suspect_timeout);
                        evicted.push(Eviction { victim, at, back });
                    }
                }
                3 if dead.len() + 1 < n => {
                    let victim = self.rng.pick(&self.live());
                    if !evicted.iter().any(|e| e.at == victim) {
                        self.crash(victim);
                    }
                }
                4..=9 if !dead.is_empty() => {
                    let i = self.rng.pick(&dead);
                    self.boot(i);
                }
                10 => self.faults = self.rng.pick(&[CALM, LOSSY, ROUGH]),
                _ => {}
            }
            self.step();
        }
        for e in evicted {
            if self.nodes[e.at].is_none() {
                self.boot(e.at);
            }
            self.group = vec![0; n];
            self.add_back_until_taken(&e);
            re_added.push(e.victim);
        }
        self.redo_lost_re_adds(&re_added);
    }

    /// A re-add is lost if the replica that took it crashed before passing
    /// it on (a documented limit): once the network is healed a while, the
    /// operator sees the address still removed somewhere and adds it back
    /// again there.
    fn redo_lost_re_adds(&mut self, re_added: &[usize]) {
        self.group = vec![0; self.nodes.len()];
        self.run(5_000);
        for &victim in re_added {
            let address = &self.addrs[victim];
            let removed_at = self.live().into_iter().find(|&i| {
                i != victim
                    && self
                        .replica(i)
                        .decisions()
                        .iter()
                        .any(|d| matches!(&d.change, ViewChange::Remove(a) if a == address))
            });
            if let Some(at) = removed_at {
                let e = Eviction {
                    victim,
                    at,
                    back: self.now,
                };
                self.add_back_until_taken(&e);
            }
        }
    }

    fn add_back_until_taken(&mut self, e: &Eviction) {
        let mut tries = 0;
        while !self.add_back(e) {
            tries += 1;
            assert!(tries < 1000, "{} never took the re-add", self.addrs[e.at]);
            self.step();
        }
    }

    /// The operator adds the evicted replica back where it removed it;
    /// whether the replica took the change (it refuses while starting).
    fn add_back(&mut self, e: &Eviction) -> bool {
        let (address, now) = (self.addrs[e.victim].clone(), self.now);
        let taken = self
            .replica_mut(e.at)
            .change_view(ViewChange::Add(address), now);
        self.flush(e.at);
        taken.is_ok()
    }
}
