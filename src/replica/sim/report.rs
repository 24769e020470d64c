//! What a simulation shows of itself: changes of a replica's view and
//! readiness, recorded as they happen, and the report a failing test
//! prints (the last steps, each replica's state, the replay command).

use std::fmt::Write as _;

use super::cluster::Sim;
use super::trace::{addresses, status, Event};

impl Sim {
    /// Records a change of replica `i`'s view, suspects or readiness.
    pub(super) fn note_state(&mut self, i: usize) {
        let Some(node) = self.nodes.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        let r = &node.replica;
        let shown = (
            r.view().len(),
            r.stats().suspects,
            r.is_ready(),
            r.is_copying(),
        );
        if node.shown != shown {
            node.shown = shown;
            let event = Event::State {
                at: i,
                view: addresses(&r.view().addresses()),
                suspects: r.suspects(),
                ready: shown.2,
                copying: shown.3,
            };
            self.trace.push(self.now, event);
        }
    }

    /// The trace, each replica's state and how to replay: what a failing
    /// test prints. Panics nowhere (it runs while a panic unwinds).
    pub(super) fn report(&self) -> String {
        let mut out = String::new();
        let (kept, count) = (self.trace.events.len(), self.trace.count);
        let _ = writeln!(
            out,
            "---- the simulation's last {kept} of {count} steps ----"
        );
        for (t, event) in &self.trace.events {
            let _ = writeln!(out, "t={t:<6} {event}");
        }
        let _ = writeln!(out, "---- at t={}, the replicas ----", self.now);
        for (i, node) in self.nodes.iter().enumerate() {
            let Some(node) = node else {
                let _ = writeln!(out, "r{i} down");
                continue;
            };
            let _ = writeln!(out, "{}", status(i, &node.replica));
        }
        let test = std::thread::current()
            .name()
            .unwrap_or("<test>")
            .to_string();
        let seed = self.trace.seed;
        let _ = writeln!(
            out,
            "seed {seed}; replay it (SIM_TRACE=1 prints every step):"
        );
        let _ = writeln!(out, "  SIM_SEED={seed} cargo test --lib -- {test} --exact");
        out
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if std::thread::panicking() && self.trace.count > 0 {
            eprintln!("{}", self.report());
        }
    }
}
