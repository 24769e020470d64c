//! Replicas with a disk in the simulated cluster: a crash keeps what the
//! replica saved, and a restart on it restores the same incarnation.
//!
//! The real node lets nothing a step produced leave the replica before
//! the step's batch is durable, so the state at the instant of a crash is
//! exactly what its disk holds (under `fsync`, and under `os` for a crash
//! of the process). A power cut under `os` may lose the tail the OS had
//! not written: the replica then does not trust its disk and starts as a
//! new incarnation, which is [`Sim::crash`] followed by [`Sim::boot`].

use super::super::Replica;
use super::cluster::Sim;
use super::trace::Event;

impl Sim {
    /// Crashes the replica at `i`, keeping its disk: a whole state is
    /// restored by [`Sim::restart`]; one that was still copying is not
    /// trusted, and the restart is a new incarnation.
    pub(in crate::replica) fn crash_keeping_disk(&mut self, i: usize) {
        let Some(node) = self.nodes[i].take() else {
            return;
        };
        self.trace.push(self.now, Event::Crash(i));
        if node.replica.is_whole() {
            let store = node.replica.store().clone();
            self.disks.insert(i, (node.replica.saved(), store));
        } else {
            // Set aside, as the node does, but for its own writes: the
            // next incarnation writes them again once ready.
            let me = node.replica.me().id.clone();
            let last = node.replica.known().count(&me);
            let own = crate::replica::Rescued::of(node.replica.store(), &me, |_| 0, last);
            self.rescues.insert(i, own);
            self.lost.insert(me);
        }
    }

    /// Starts the replica at `i` again: on its disk if a crash kept one,
    /// else as a new incarnation.
    pub(in crate::replica) fn restart(&mut self, i: usize) {
        let Some((saved, store)) = self.disks.remove(&i) else {
            let own = self.rescues.remove(&i);
            self.boot(i);
            if let (Some(own), Some(node)) = (own, self.nodes[i].as_mut()) {
                node.replica.rescue_when_ready(own);
            }
            return;
        };
        let (me, now, view) = (self.addrs[i].clone(), self.now, self.addrs.clone());
        let replica = Replica::restore(me, saved, store, &view, self.timing.clone(), now);
        self.restored += 1;
        self.start_node(i, replica);
    }
}
