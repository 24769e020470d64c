//! Tests of the causal+ history checker used by the fault suite: every
//! detector is shown to fire on a hand-built history with the right kind and
//! the right operations, legitimate histories (concurrency, either winner, a
//! concurrent delete winning, a put concurrent with a delete winning, a key
//! brought back by a new put, failed writes, writes lost in a crash) pass,
//! and a long history from a simulated causal+ store passes while mutated
//! copies (a stale read, a replica that disagrees, a replica that forgets a
//! delete) do not. Crashes that kept the replica's state (its DATA_DIR)
//! excuse nothing, a lost disk excuses only what no other replica held,
//! and identities must survive a restart on the kept state.
//!
//! This file holds the history builder and the expectations; the tests are
//! grouped by theme: `clean.rs` (legitimate histories, failed writes),
//! `anomalies.rs` (one history per anomaly kind), `resurrection.rs`
//! (deleted values coming back), `durability.rs` (crashes with and without
//! the replica's disk, identities), `output.rs` (availability, printing,
//! JSON), `sim.rs` (a simulated causal+ store and its long histories),
//! `sharded.rs` (histories of a sharded store, whose requests are relayed:
//! lost writes and divergence still caught, crashes excusing only the
//! writes of the node that issued them, the shards' key counts),
//! `conditional.rs` (412s that wrote nothing, `If-None-Match: *`
//! successes judged as reads that found the key absent), `siblings.rs`
//! (a table with siblings: replaced siblings back, siblings left out,
//! final sets that disagree or lose a put) and `sim_siblings.rs` (a
//! simulated store with siblings and its long histories).

#[path = "../fault/checker.rs"]
mod checker;

mod anomalies;
mod clean;
mod conditional;
mod durability;
mod output;
mod resurrection;
mod sharded;
mod siblings;
mod sim;
mod sim_siblings;

use checker::{
    check, key_count_problems, AnomalyKind, Condition, Crash, FinalRead, FinalSet, History, Op,
    OpKind, OpResult, PartitionWindow, Ratio, Report, Restart,
};

/// Builds histories: each op gets the next id and a fresh 10 us slot,
/// answered 5 us after it was sent.
#[derive(Default)]
struct Builder {
    h: History,
    t: u64,
}

impl Builder {
    fn op(
        &mut self,
        session: usize,
        replica: usize,
        key: &str,
        kind: OpKind,
        result: OpResult,
    ) -> usize {
        self.t += 10;
        let completed = match result {
            OpResult::Failed(_) => None,
            _ => Some(self.t + 5),
        };
        self.raw(session, replica, key, kind, result, self.t, completed)
    }

    #[allow(clippy::too_many_arguments)]
    fn raw(
        &mut self,
        session: usize,
        replica: usize,
        key: &str,
        kind: OpKind,
        result: OpResult,
        invoked_us: u64,
        completed_us: Option<u64>,
    ) -> usize {
        let id = self.h.ops.len();
        self.h.ops.push(Op {
            id,
            session,
            replica,
            served_by: None,
            incarnation: None,
            key: key.to_string(),
            kind,
            invoked_us,
            completed_us,
            result,
            table: None,
            condition: None,
            etag: None,
            sent: None,
            dot: None,
        });
        id
    }

    fn put(&mut self, s: usize, r: usize, key: &str, value: &str) -> usize {
        let kind = OpKind::Put {
            value: value.into(),
        };
        self.op(s, r, key, kind, OpResult::Written)
    }

    fn put_failed(&mut self, s: usize, r: usize, key: &str, value: &str) -> usize {
        let kind = OpKind::Put {
            value: value.into(),
        };
        self.op(s, r, key, kind, OpResult::Failed("timeout".into()))
    }

    fn get(&mut self, s: usize, r: usize, key: &str, value: Option<&str>) -> usize {
        self.op(
            s,
            r,
            key,
            OpKind::Get,
            OpResult::Read(value.map(String::from)),
        )
    }

    fn get_failed(&mut self, s: usize, r: usize, key: &str) -> usize {
        self.op(
            s,
            r,
            key,
            OpKind::Get,
            OpResult::Failed("status 503".into()),
        )
    }

    fn del(&mut self, s: usize, r: usize, key: &str) -> usize {
        self.op(s, r, key, OpKind::Delete, OpResult::Deleted)
    }

    fn del_absent(&mut self, s: usize, r: usize, key: &str) -> usize {
        self.op(s, r, key, OpKind::Delete, OpResult::DeleteAbsent)
    }

    fn del_failed(&mut self, s: usize, r: usize, key: &str) -> usize {
        self.op(
            s,
            r,
            key,
            OpKind::Delete,
            OpResult::Failed("timeout".into()),
        )
    }

    /// A crash that loses the replica's state (no disk, or its disk
    /// deleted): what only it held may be gone.
    fn crash(&mut self, replica: usize) {
        self.t += 10;
        self.h.crashes.push(Crash {
            replica,
            at_us: self.t,
            kept_state: false,
        });
    }

    /// `replicas` killed at one instant and started again on the state
    /// they kept (DATA_DIR): nothing they acknowledged may be gone.
    fn crash_kept(&mut self, replicas: &[usize]) {
        self.t += 10;
        for &replica in replicas {
            self.h.crashes.push(Crash {
                replica,
                at_us: self.t,
                kept_state: true,
            });
        }
    }

    /// Replica `replica`'s identity before and after a restart.
    fn restart(&mut self, replica: usize, kept_state: bool, before: &str, after: &str) {
        self.t += 10;
        self.h.restarts.push(Restart {
            replica,
            at_us: self.t,
            kept_state,
            before: before.into(),
            after: after.into(),
            set_aside: false,
        });
    }

    /// A restart on a kept state the replica set aside (it was merging a
    /// member's copy): a new incarnation, as documented.
    fn restart_set_aside(&mut self, replica: usize, before: &str, after: &str) {
        self.restart(replica, true, before, after);
        if let Some(r) = self.h.restarts.last_mut() {
            r.set_aside = true;
        }
    }

    /// The same final value at every listed replica.
    fn finals(&mut self, replicas: &[usize], key: &str, value: Option<&str>) {
        for &replica in replicas {
            self.fin(replica, key, value);
        }
    }

    fn fin(&mut self, replica: usize, key: &str, value: Option<&str>) {
        self.h.final_reads.push(FinalRead {
            replica,
            key: key.into(),
            value: value.map(String::from),
            at_us: 1_000_000 + self.t,
        });
    }

    fn check(&self) -> Report {
        check(&self.h)
    }

    /// A sharded store: requests are relayed to a member of their key's
    /// shard, so an op's server is known only where [`Builder::served`]
    /// says it.
    fn relayed(&mut self) {
        self.h.relayed = true;
    }

    /// Op `op` (an acknowledged write) was issued by incarnation
    /// `incarnation` of replica `replica` (`addr#s<shard>e<epoch>.<hex>`).
    fn served(&mut self, op: usize, replica: usize, incarnation: &str) {
        self.h.ops[op].served_by = Some(replica);
        self.h.ops[op].incarnation = Some(incarnation.into());
    }
}

/// The report has an anomaly of `kind` whose chain names every op in `ops`.
fn expect(report: &Report, kind: AnomalyKind, ops: &[usize]) {
    let hit = report
        .of_kind(kind)
        .into_iter()
        .any(|a| ops.iter().all(|op| a.ops.contains(op)));
    assert!(hit, "expected {kind} naming ops {ops:?}; got:\n{report}");
    assert!(!report.is_ok());
}

/// The report has exactly one anomaly, of `kind`, and its chain is `ops`.
fn expect_only(report: &Report, kind: AnomalyKind, ops: &[usize]) {
    assert_eq!(
        report.anomalies.len(),
        1,
        "expected only {kind}; got:\n{report}"
    );
    assert_eq!(report.anomalies[0].kind, kind, "{report}");
    assert_eq!(report.anomalies[0].ops, ops, "chain of {kind}:\n{report}");
}

/// The first anomaly's explanation says `says`.
fn expect_explanation(report: &Report, says: &str) {
    let text = &report.anomalies[0].explanation;
    assert!(text.contains(says), "{report}");
}

fn expect_clean(report: &Report) {
    assert!(report.is_ok(), "expected a clean history; got:\n{report}");
    assert!(report.convergence_ok, "{report}");
}

const ALL: [usize; 3] = [0, 1, 2];
