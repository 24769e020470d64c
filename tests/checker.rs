//! Tests of the causal+ history checker used by the fault suite: every
//! detector is shown to fire on a hand-built history with the right kind and
//! the right operations, legitimate histories (concurrency, either winner, a
//! concurrent delete winning, a put concurrent with a delete winning, a key
//! brought back by a new put, failed writes, writes lost in a crash) pass,
//! and a long history from a simulated causal+ store passes while mutated
//! copies (a stale read, a replica that disagrees, a replica that forgets a
//! delete) do not.

#[path = "fault/checker.rs"]
mod checker;

use std::collections::HashMap;

use checker::{
    check, AnomalyKind, Crash, FinalRead, History, Op, OpKind, OpResult, PartitionWindow, Ratio,
    Report,
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
            key: key.to_string(),
            kind,
            invoked_us,
            completed_us,
            result,
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

    fn crash(&mut self, replica: usize) {
        self.t += 10;
        self.h.crashes.push(Crash {
            replica,
            at_us: self.t,
        });
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

fn expect_clean(report: &Report) {
    assert!(report.is_ok(), "expected a clean history; got:\n{report}");
    assert!(report.convergence_ok, "{report}");
}

const ALL: [usize; 3] = [0, 1, 2];

// ---------------------------------------------------------------------------
// Clean histories
// ---------------------------------------------------------------------------

#[test]
fn concurrent_writes_pass_with_either_winner() {
    for winner in ["a", "b"] {
        let loser = if winner == "a" { "b" } else { "a" };
        let mut b = Builder::default();
        b.put(0, 0, "x", "a");
        b.put(1, 1, "x", "b");
        // One session sees the loser first, then the winner over it.
        b.get(2, 0, "x", Some(loser));
        b.get(2, 1, "x", Some(winner));
        b.get(2, 2, "x", Some(winner));
        // Another sees only the winner.
        b.get(3, 2, "x", Some(winner));
        b.put(3, 2, "y", "y1");
        b.get(4, 0, "y", Some("y1"));
        b.get(4, 0, "x", Some(winner));
        b.finals(&ALL, "x", Some(winner));
        b.finals(&ALL, "y", Some("y1"));
        let report = b.check();
        expect_clean(&report);
        assert_eq!(report.stats.reads_from, 6);
    }
}

#[test]
fn a_concurrent_delete_may_win_over_a_put() {
    let mut b = Builder::default();
    b.put(0, 1, "x", "z");
    b.del(0, 1, "x");
    b.put(1, 0, "x", "a"); // concurrent with the delete
                           // Sees a, then finds the key absent: the concurrent delete won.
    b.get(2, 0, "x", Some("a"));
    b.get(2, 1, "x", None);
    b.get(2, 2, "x", None);
    b.del_absent(3, 2, "x");
    b.get(3, 2, "x", None);
    b.finals(&ALL, "x", None);
    expect_clean(&b.check());
}

#[test]
fn reads_after_a_visible_delete_and_overwrites_pass() {
    let mut b = Builder::default();
    b.put(0, 0, "x", "a");
    b.get(0, 1, "x", Some("a"));
    b.del(0, 1, "x");
    b.get(0, 2, "x", None);
    b.put(0, 2, "y", "y1");
    // Another session sees y1, so the delete is in its past.
    b.get(1, 0, "y", Some("y1"));
    b.get(1, 0, "x", None);
    b.put(1, 0, "x", "c");
    b.get(1, 1, "x", Some("c"));
    b.get(0, 2, "x", None); // has not seen c: fine
    b.get(0, 1, "x", Some("c"));
    b.get(0, 1, "x", Some("c"));
    // Failed ops leave no trace.
    b.get_failed(1, 2, "x");
    b.del_failed(1, 2, "q");
    b.finals(&ALL, "x", Some("c"));
    b.finals(&ALL, "y", Some("y1"));
    b.finals(&ALL, "q", None);
    let report = b.check();
    expect_clean(&report);
    assert_eq!(report.stats.ops, 14);
    assert_eq!(report.stats.failed, 2);
    assert_eq!(report.stats.sessions, 2);
}

// ---------------------------------------------------------------------------
// Failed writes
// ---------------------------------------------------------------------------

#[test]
fn a_failed_put_whose_value_is_read_counts_as_written() {
    let mut b = Builder::default();
    let old = b.put(0, 0, "x", "b");
    let failed = b.put_failed(0, 0, "x", "a");
    let read = b.get(1, 0, "x", Some("a"));
    b.finals(&ALL, "x", Some("a"));
    let report = b.check();
    expect_clean(&report);
    assert_eq!(report.stats.failed_writes_observed, 1);
    assert_eq!(report.stats.reads_from, 1);

    // It is ordered after the session's earlier put: reading the older value
    // after reading it is a monotonic-reads violation.
    let stale = b.get(1, 0, "x", Some("b"));
    expect_only(
        &b.check(),
        AnomalyKind::MonotonicReads,
        &[old, failed, read, stale],
    );
}

#[test]
fn a_failed_put_does_not_order_the_sessions_next_ops() {
    // The client got no metadata back, so its next read need not see it.
    let mut b = Builder::default();
    b.put_failed(0, 0, "x", "a");
    b.get(0, 1, "x", None);
    b.get(1, 0, "x", Some("a"));
    b.get(1, 0, "x", Some("a"));
    b.finals(&ALL, "x", Some("a"));
    expect_clean(&b.check());
}

#[test]
fn an_unobserved_failed_put_may_or_may_not_have_happened() {
    for fin in [None, Some("a")] {
        let mut b = Builder::default();
        b.put_failed(0, 0, "x", "a");
        b.finals(&ALL, "x", fin);
        let report = b.check();
        expect_clean(&report);
        assert_eq!(report.stats.failed_writes_observed, fin.is_some() as usize);
    }
}

// ---------------------------------------------------------------------------
// One history per anomaly kind
// ---------------------------------------------------------------------------

#[test]
fn detects_a_happens_before_cycle() {
    // Each session reads the other's later write before making its own.
    let mut b = Builder::default();
    let g0 = b.raw(
        0,
        0,
        "y",
        OpKind::Get,
        OpResult::Read(Some("b".into())),
        10,
        Some(100),
    );
    let g1 = b.raw(
        1,
        1,
        "x",
        OpKind::Get,
        OpResult::Read(Some("a".into())),
        11,
        Some(100),
    );
    let p0 = b.raw(
        0,
        0,
        "x",
        OpKind::Put { value: "a".into() },
        OpResult::Written,
        12,
        Some(100),
    );
    let p1 = b.raw(
        1,
        1,
        "y",
        OpKind::Put { value: "b".into() },
        OpResult::Written,
        13,
        Some(100),
    );
    let report = b.check();
    expect_only(&report, AnomalyKind::Cycle, &[p0, g1, p1, g0]);
    assert!(
        report.anomalies[0].explanation.contains("reads-from"),
        "{report}"
    );
}

#[test]
fn detects_a_read_of_ones_own_future_write_as_a_cycle() {
    let mut b = Builder::default();
    let g = b.raw(
        0,
        0,
        "x",
        OpKind::Get,
        OpResult::Read(Some("a".into())),
        10,
        Some(50),
    );
    let p = b.raw(
        0,
        0,
        "x",
        OpKind::Put { value: "a".into() },
        OpResult::Written,
        20,
        Some(60),
    );
    expect_only(&b.check(), AnomalyKind::Cycle, &[p, g]);
}

#[test]
fn detects_values_never_written() {
    let mut b = Builder::default();
    let ghost = b.get(0, 0, "x", Some("ghost"));
    let report = b.check();
    expect_only(&report, AnomalyKind::ValueNeverWritten, &[ghost]);

    // A value written to another key.
    let mut b = Builder::default();
    let put = b.put(0, 0, "y", "v");
    let read = b.get(1, 0, "x", Some("v"));
    expect_only(&b.check(), AnomalyKind::ValueNeverWritten, &[put, read]);

    // A value returned before its put was sent.
    let mut b = Builder::default();
    let read = b.raw(
        0,
        0,
        "x",
        OpKind::Get,
        OpResult::Read(Some("v".into())),
        10,
        Some(20),
    );
    let put = b.raw(
        1,
        0,
        "x",
        OpKind::Put { value: "v".into() },
        OpResult::Written,
        30,
        Some(40),
    );
    expect_only(&b.check(), AnomalyKind::ValueNeverWritten, &[put, read]);

    // A final read of a value nobody wrote.
    let mut b = Builder::default();
    b.put(0, 0, "x", "a");
    b.finals(&[0, 1], "x", Some("a"));
    b.finals(&[2], "x", Some("ghost"));
    let report = b.check();
    assert!(
        report.count(AnomalyKind::ValueNeverWritten) == 1,
        "{report}"
    );
    assert!(report.count(AnomalyKind::Divergence) == 1, "{report}");
}

#[test]
fn detects_a_stale_read_through_other_sessions() {
    let mut b = Builder::default();
    let a = b.put(0, 0, "x", "a");
    let g1 = b.get(1, 0, "x", Some("a"));
    let p1 = b.put(1, 0, "y", "y1");
    let g2 = b.get(2, 1, "y", Some("y1"));
    let over = b.put(2, 1, "x", "b");
    let pz = b.put(2, 1, "z", "z1");
    let g3 = b.get(3, 2, "z", Some("z1"));
    let read = b.get(3, 2, "x", Some("a"));
    b.finals(&ALL, "x", Some("b"));
    b.finals(&ALL, "y", Some("y1"));
    b.finals(&ALL, "z", Some("z1"));
    expect_only(
        &b.check(),
        AnomalyKind::StaleRead,
        &[a, g1, p1, g2, over, pz, g3, read],
    );
}

#[test]
fn detects_phantom_absence() {
    let mut b = Builder::default();
    let a = b.put(0, 0, "x", "a");
    let py = b.put(0, 0, "y", "y1");
    let gy = b.get(1, 1, "y", Some("y1"));
    let read = b.get(1, 1, "x", None);
    b.finals(&ALL, "x", Some("a"));
    b.finals(&ALL, "y", Some("y1"));
    expect_only(&b.check(), AnomalyKind::PhantomAbsence, &[a, py, gy, read]);

    // A delete that is hb-before the put does not explain the absence,
    // and neither does one invoked after the read completed.
    let mut b = Builder::default();
    b.put(0, 0, "x", "old");
    let d = b.del(0, 0, "x");
    let a = b.put(0, 0, "x", "a");
    let py = b.put(0, 0, "y", "y1");
    let gy = b.get(1, 1, "y", Some("y1"));
    let read = b.get(1, 1, "x", None);
    b.del(2, 2, "x");
    let report = b.check();
    expect(&report, AnomalyKind::PhantomAbsence, &[a, py, gy, read]);
    assert!(!report.anomalies[0].ops.contains(&d), "{report}");
}

#[test]
fn absence_explained_by_a_possible_delete_is_fine() {
    // Same shape as phantom absence, but a delete of x that may have been
    // concurrent (acknowledged, or failed: it may have happened) exists.
    for failed in [false, true] {
        let mut b = Builder::default();
        b.put(2, 2, "x", "z");
        if failed {
            b.del_failed(2, 2, "x");
        } else {
            b.del(2, 2, "x");
        }
        b.put(0, 0, "x", "a");
        b.put(0, 0, "y", "y1");
        b.get(1, 1, "y", Some("y1"));
        b.get(1, 1, "x", None);
        b.finals(&ALL, "x", None);
        b.finals(&ALL, "y", Some("y1"));
        expect_clean(&b.check());
    }
}

#[test]
fn detects_read_your_writes_violations() {
    let mut b = Builder::default();
    let a = b.put(0, 0, "x", "a");
    let over = b.put(0, 0, "x", "b");
    let read = b.get(0, 1, "x", Some("a"));
    b.finals(&ALL, "x", Some("b"));
    expect_only(&b.check(), AnomalyKind::ReadYourWrites, &[a, over, read]);

    // Not finding one's own write at all.
    let mut b = Builder::default();
    let a = b.put(0, 0, "x", "a");
    let read = b.get(0, 1, "x", None);
    b.finals(&ALL, "x", Some("a"));
    expect_only(&b.check(), AnomalyKind::ReadYourWrites, &[a, read]);
}

#[test]
fn detects_monotonic_reads_violations() {
    let mut b = Builder::default();
    let a = b.put(0, 0, "x", "a");
    let newer = b.put(0, 0, "x", "b");
    let first = b.get(1, 0, "x", Some("b"));
    let read = b.get(1, 1, "x", Some("a"));
    b.finals(&ALL, "x", Some("b"));
    expect_only(
        &b.check(),
        AnomalyKind::MonotonicReads,
        &[a, newer, first, read],
    );

    // Having seen a value, finding the key absent with no delete about.
    let mut b = Builder::default();
    let a = b.put(0, 0, "x", "a");
    let first = b.get(1, 0, "x", Some("a"));
    let read = b.get(1, 1, "x", None);
    b.finals(&ALL, "x", Some("a"));
    expect_only(&b.check(), AnomalyKind::MonotonicReads, &[a, first, read]);
}

#[test]
fn detects_monotonic_writes_violations() {
    let mut b = Builder::default();
    let a = b.put(0, 0, "x", "a");
    let newer = b.put(0, 0, "x", "b");
    let py = b.put(0, 0, "y", "y1");
    let gy = b.get(1, 1, "y", Some("y1"));
    let read = b.get(1, 1, "x", Some("a"));
    b.finals(&ALL, "x", Some("b"));
    b.finals(&ALL, "y", Some("y1"));
    expect_only(
        &b.check(),
        AnomalyKind::MonotonicWrites,
        &[a, newer, py, gy, read],
    );
}

#[test]
fn detects_writes_follow_reads_violations() {
    let mut b = Builder::default();
    let a = b.put(0, 0, "x", "a");
    let g = b.get(1, 0, "x", Some("a"));
    let over = b.put(1, 0, "x", "b");
    let py = b.put(1, 0, "y", "y1");
    let gy = b.get(2, 1, "y", Some("y1"));
    let read = b.get(2, 1, "x", Some("a"));
    b.finals(&ALL, "x", Some("b"));
    b.finals(&ALL, "y", Some("y1"));
    expect_only(
        &b.check(),
        AnomalyKind::WritesFollowReads,
        &[a, g, over, py, gy, read],
    );
}

#[test]
fn detects_divergent_final_reads() {
    let mut b = Builder::default();
    let a = b.put(0, 0, "x", "a");
    let c = b.put(1, 1, "x", "b");
    b.fin(0, "x", Some("a"));
    b.fin(1, "x", Some("b"));
    b.fin(2, "x", Some("a"));
    let report = b.check();
    expect_only(&report, AnomalyKind::Divergence, &[a, c]);
    assert!(!report.convergence_ok);
    assert!(report.anomalies[0].explanation.contains("[1]"), "{report}");

    // Absent at one replica, present at another.
    let mut b = Builder::default();
    let a = b.put(0, 0, "x", "a");
    b.fin(0, "x", Some("a"));
    b.fin(1, "x", None);
    let report = b.check();
    expect(&report, AnomalyKind::Divergence, &[a]);
    assert!(!report.convergence_ok);
}

#[test]
fn detects_conflicts_resolved_differently() {
    // Two sessions see the same two concurrent writes and pick different winners.
    let mut b = Builder::default();
    let a = b.put(0, 0, "x", "a");
    let c = b.put(1, 1, "x", "b");
    b.get(2, 0, "x", Some("a"));
    let r1 = b.get(2, 1, "x", Some("b"));
    b.get(3, 1, "x", Some("b"));
    let r2 = b.get(3, 0, "x", Some("a"));
    let report = b.check();
    expect_only(&report, AnomalyKind::Divergence, &[a, r1, c, r2]);

    // A read ranked b over a, but everything converged on a.
    let mut b = Builder::default();
    let a = b.put(0, 0, "x", "a");
    let c = b.put(1, 1, "x", "b");
    b.get(2, 0, "x", Some("a"));
    let r1 = b.get(2, 1, "x", Some("b"));
    b.finals(&ALL, "x", Some("a"));
    expect_only(&b.check(), AnomalyKind::Divergence, &[a, r1, c]);
}

#[test]
fn detects_a_final_value_that_is_not_causally_maximal() {
    // A put follows the final value; it failed, but a read saw it, so it
    // happened. (A delete following it is a resurrection, tested below.)
    let mut b = Builder::default();
    let a = b.put(0, 0, "x", "a");
    let failed = b.put_failed(0, 1, "x", "b");
    b.get(1, 1, "x", Some("b"));
    b.finals(&ALL, "x", Some("a"));
    let report = b.check();
    expect(&report, AnomalyKind::NotCausallyMaximal, &[a, failed]);
    assert_eq!(report.count(AnomalyKind::NotCausallyMaximal), 1, "{report}");
    assert!(!report.convergence_ok);

    // Absent in the end, but every delete is followed by a put (each put
    // concurrent with the other session's delete, so neither is "lost").
    let mut b = Builder::default();
    b.put(0, 0, "x", "a0");
    let d1 = b.del(0, 0, "x");
    let p1 = b.put(0, 0, "x", "p1");
    b.put(1, 1, "x", "b0");
    b.del(1, 1, "x");
    b.put(1, 1, "x", "p2");
    b.finals(&ALL, "x", None);
    let report = b.check();
    expect_only(&report, AnomalyKind::NotCausallyMaximal, &[d1, p1]);
    assert_eq!(report.count(AnomalyKind::LostWrite), 0);
}

#[test]
fn detects_lost_writes() {
    // The final value is older than an acknowledged put.
    let mut b = Builder::default();
    let a = b.put(0, 0, "x", "a");
    let lost = b.put(0, 1, "x", "b");
    b.finals(&ALL, "x", Some("a"));
    let report = b.check();
    expect_only(&report, AnomalyKind::LostWrite, &[a, lost]);
    assert!(report.lost_to_crash.is_empty());

    // Absent in the end though nothing deleted it.
    let mut b = Builder::default();
    let lost = b.put(0, 0, "x", "a");
    b.finals(&ALL, "x", None);
    expect_only(&b.check(), AnomalyKind::LostWrite, &[lost]);

    // Absent in the end though every delete precedes the put.
    let mut b = Builder::default();
    b.put(0, 0, "x", "a"); // concurrent with the delete: may lose to it
    let d = b.del(1, 0, "x");
    let py = b.put(1, 0, "y", "y1");
    let gy = b.get(2, 1, "y", Some("y1"));
    let lost = b.put(2, 1, "x", "b");
    b.finals(&ALL, "x", None);
    b.finals(&ALL, "y", Some("y1"));
    expect_only(&b.check(), AnomalyKind::LostWrite, &[d, py, gy, lost]);
}

#[test]
fn writes_lost_in_a_crash_are_counted_not_failed() {
    let mut b = Builder::default();
    let a = b.put(0, 1, "x", "a");
    let lost = b.put(0, 0, "x", "b");
    b.crash(0);
    b.finals(&[1, 2], "x", Some("a"));
    let report = b.check();
    expect_clean(&report);
    assert_eq!(report.lost_to_crash, vec![lost]);
    let _ = a;

    // Absent in the end.
    let mut b = Builder::default();
    let lost = b.put(0, 0, "x", "a");
    b.crash(0);
    b.finals(&[1, 2], "x", None);
    let report = b.check();
    expect_clean(&report);
    assert_eq!(report.lost_to_crash, vec![lost]);

    // A crash before the write was acknowledged does not excuse it.
    let mut b = Builder::default();
    b.crash(0);
    let lost = b.put(0, 0, "x", "a");
    b.finals(&[1, 2], "x", None);
    let report = b.check();
    expect_only(&report, AnomalyKind::LostWrite, &[lost]);
    assert!(report.lost_to_crash.is_empty());
}

// ---------------------------------------------------------------------------
// Deleted values coming back
// ---------------------------------------------------------------------------

/// The report's only anomaly is a Resurrection whose explanation says so.
fn expect_resurrection(report: &Report, ops: &[usize]) {
    expect_only(report, AnomalyKind::Resurrection, ops);
    let text = &report.anomalies[0].explanation;
    assert!(text.contains("a deleted value came back"), "{report}");
}

#[test]
fn detects_a_read_of_a_value_whose_delete_is_in_its_past() {
    // The delete reaches the reader through two other sessions.
    let mut b = Builder::default();
    let a = b.put(0, 0, "x", "a");
    let g1 = b.get(1, 0, "x", Some("a"));
    let p1 = b.put(1, 0, "y", "y1");
    let g2 = b.get(2, 1, "y", Some("y1"));
    let d = b.del(2, 1, "x");
    let pz = b.put(2, 1, "z", "z1");
    let g3 = b.get(3, 2, "z", Some("z1"));
    let read = b.get(3, 2, "x", Some("a"));
    let report = b.check();
    expect_resurrection(&report, &[a, g1, p1, g2, d, pz, g3, read]);
    assert!(
        report.anomalies[0]
            .explanation
            .contains("#4 delete(x), which causally follows it"),
        "{report}"
    );
    // A client read does not decide convergence.
    assert!(report.convergence_ok, "{report}");
}

#[test]
fn detects_a_read_of_a_value_the_sessions_own_delete_removed() {
    let mut b = Builder::default();
    let a = b.put(1, 0, "x", "a");
    let g = b.get(0, 0, "x", Some("a"));
    let d = b.del(0, 0, "x");
    let read = b.get(0, 1, "x", Some("a"));
    b.finals(&ALL, "x", None);
    let report = b.check();
    expect_resurrection(&report, &[a, g, d, read]);
    assert!(
        report.anomalies[0]
            .explanation
            .contains("the session's own earlier #2 delete(x)"),
        "{report}"
    );

    // It wins over the session labels: here the session's own later put
    // also overwrote the value.
    let mut b = Builder::default();
    let a = b.put(1, 0, "x", "a");
    let g = b.get(0, 0, "x", Some("a"));
    let d = b.del(0, 0, "x");
    b.put(0, 0, "x", "b");
    let read = b.get(0, 1, "x", Some("a"));
    b.finals(&ALL, "x", Some("b"));
    expect_resurrection(&b.check(), &[a, g, d, read]);
}

#[test]
fn detects_a_final_value_deleted_causally_after_it() {
    // Every replica ends with a value a later delete removed.
    let mut b = Builder::default();
    let a = b.put(0, 0, "x", "a");
    let g = b.get(1, 1, "x", Some("a"));
    let d = b.del(1, 1, "x");
    b.finals(&ALL, "x", Some("a"));
    let report = b.check();
    expect_resurrection(&report, &[a, g, d]);
    assert!(!report.convergence_ok, "{report}");
    assert!(
        report.anomalies[0]
            .explanation
            .contains("at replica(s) [0, 1, 2]"),
        "{report}"
    );

    // A returning replica keeps the deleted value while the others agree
    // it is gone: divergence, and the value it holds is a resurrection.
    let mut b = Builder::default();
    let a = b.put(0, 0, "x", "a");
    let d = b.del(0, 1, "x");
    b.finals(&[0, 1], "x", None);
    b.fin(2, "x", Some("a"));
    let report = b.check();
    assert_eq!(report.count(AnomalyKind::Divergence), 1, "{report}");
    expect(&report, AnomalyKind::Resurrection, &[a, d]);
    let resurrection = &report.of_kind(AnomalyKind::Resurrection)[0];
    assert!(
        resurrection.explanation.contains("at replica(s) [2]"),
        "{report}"
    );

    // A put after the delete that is lost too is reported as well.
    let mut b = Builder::default();
    let a = b.put(0, 0, "x", "a");
    let d = b.del(0, 1, "x");
    let lost = b.put(0, 1, "x", "b");
    b.finals(&ALL, "x", Some("a"));
    let report = b.check();
    expect(&report, AnomalyKind::Resurrection, &[a, d]);
    expect(&report, AnomalyKind::LostWrite, &[a, lost]);
    assert_eq!(report.anomalies.len(), 2, "{report}");
}

#[test]
fn a_put_concurrent_with_a_delete_may_win_over_it() {
    let mut b = Builder::default();
    b.put(0, 1, "x", "z");
    b.del(0, 1, "x");
    b.put(0, 1, "y", "y1");
    // Concurrent with the delete.
    b.put(1, 0, "x", "c");
    // The reader has the delete in its past and reads c: the conflict rule
    // ranked c above the delete, everywhere.
    b.get(2, 1, "y", Some("y1"));
    b.get(2, 0, "x", Some("c"));
    b.finals(&ALL, "x", Some("c"));
    b.finals(&ALL, "y", Some("y1"));
    expect_clean(&b.check());
}

#[test]
fn a_put_the_delete_saw_does_not_win_over_it() {
    // The same reads, but the deleting session had read c first: c was
    // deleted, and both the client read and the final reads bring it back.
    let mut b = Builder::default();
    let c = b.put(1, 0, "x", "c");
    let g = b.get(0, 1, "x", Some("c"));
    let d = b.del(0, 1, "x");
    let py = b.put(0, 1, "y", "y1");
    let gy = b.get(2, 1, "y", Some("y1"));
    let read = b.get(2, 0, "x", Some("c"));
    b.finals(&ALL, "x", Some("c"));
    b.finals(&ALL, "y", Some("y1"));
    let report = b.check();
    assert_eq!(report.count(AnomalyKind::Resurrection), 2, "{report}");
    assert_eq!(report.anomalies.len(), 2, "{report}");
    expect(&report, AnomalyKind::Resurrection, &[c, g, d, py, gy, read]);
    expect(&report, AnomalyKind::Resurrection, &[c, g, d]);
    assert!(!report.convergence_ok);
}

#[test]
fn a_put_after_a_delete_brings_the_key_back() {
    let mut b = Builder::default();
    b.put(0, 0, "x", "a");
    b.del(0, 0, "x");
    b.get(0, 1, "x", None);
    b.put(0, 1, "x", "b");
    b.get(1, 2, "x", Some("b"));
    // Another session sees the delete, then brings the key back itself.
    b.del(1, 2, "x");
    b.get(2, 0, "x", None);
    b.put(1, 2, "y", "y1");
    b.get(2, 0, "y", Some("y1"));
    b.put(2, 0, "x", "c");
    b.get(0, 2, "x", Some("c"));
    b.finals(&ALL, "x", Some("c"));
    b.finals(&ALL, "y", Some("y1"));
    expect_clean(&b.check());
}

#[test]
fn a_delete_lost_in_a_crash_may_let_its_value_return() {
    // The delete's replica crashed before the read: once the store retires
    // the crashed incarnation, the session's context naming the delete is
    // satisfied without it, and the value it removed is legitimately back.
    let mut b = Builder::default();
    b.put(0, 0, "x", "a");
    b.del(0, 1, "x");
    b.crash(1);
    b.get(0, 2, "x", Some("a"));
    b.finals(&[0, 2], "x", Some("a"));
    expect_clean(&b.check());

    // A crash after the read does not excuse it (the final value is
    // excused: the delete may have died with its replica afterwards).
    let mut b = Builder::default();
    let a = b.put(0, 0, "x", "a");
    let d = b.del(0, 1, "x");
    let read = b.get(0, 2, "x", Some("a"));
    b.crash(1);
    b.finals(&[0, 2], "x", Some("a"));
    expect_resurrection(&b.check(), &[a, d, read]);
}

#[test]
fn writes_lost_in_a_crash_need_not_be_read_back() {
    // The session's own put died with its replica before the read.
    let mut b = Builder::default();
    b.put(0, 0, "x", "a");
    b.crash(0);
    b.get(0, 1, "x", None);
    b.finals(&[1, 2], "x", None);
    expect_clean(&b.check());

    // Its newer put died; the older one, written elsewhere, is read.
    let mut b = Builder::default();
    b.put(0, 1, "x", "a");
    b.put(0, 0, "x", "b");
    b.crash(0);
    b.get(0, 2, "x", Some("a"));
    b.finals(&[1, 2], "x", Some("a"));
    expect_clean(&b.check());

    // Without the crash both are read-your-writes violations.
    let mut b = Builder::default();
    let a = b.put(0, 1, "x", "a");
    let over = b.put(0, 0, "x", "b");
    let read = b.get(0, 2, "x", Some("a"));
    b.finals(&ALL, "x", Some("b"));
    expect_only(&b.check(), AnomalyKind::ReadYourWrites, &[a, over, read]);
}

// ---------------------------------------------------------------------------
// Availability, output
// ---------------------------------------------------------------------------

#[test]
fn availability_is_computed_per_partition_side() {
    let mut b = Builder::default();
    b.put(0, 0, "x", "a"); // before the window
    b.get_failed(0, 2, "x"); // before the window
    let start = b.t + 1;
    b.put(0, 0, "x", "b");
    b.get(1, 1, "x", Some("b"));
    b.put_failed(2, 2, "x", "c");
    b.get(2, 2, "x", Some("a"));
    b.del_failed(2, 2, "x");
    b.get(3, 3, "x", Some("b")); // replica on no side
    let end = b.t + 1;
    b.get(0, 2, "x", Some("b")); // after the window
    b.h.partitions.push(PartitionWindow {
        start_us: start,
        end_us: end,
        sides: vec![vec![0, 1], vec![2]],
    });
    let report = b.check();
    let av = &report.availability;
    assert_eq!(av.overall, Ratio { ok: 6, total: 9 });
    assert_eq!(av.windows.len(), 1);
    let w = &av.windows[0];
    assert_eq!((w.start_us, w.end_us), (start, end));
    assert_eq!(w.sides[0].replicas, vec![0, 1]);
    assert_eq!(w.sides[0].ops, Ratio { ok: 2, total: 2 });
    assert_eq!(w.sides[1].replicas, vec![2]);
    assert_eq!(w.sides[1].ops, Ratio { ok: 1, total: 3 });
    assert_eq!(w.sides[1].ops.fraction(), Some(1.0 / 3.0));
    assert_eq!(Ratio::default().fraction(), None);
    let text = report.to_string();
    assert!(text.contains("side [2]: 33.3% (1/3)"), "{text}");
}

#[test]
fn the_report_prints_counts_and_chains() {
    let mut b = Builder::default();
    b.put(0, 0, "x", "a");
    b.put(0, 0, "x", "b");
    b.get(0, 1, "x", Some("a"));
    b.finals(&ALL, "x", Some("b"));
    let report = b.check();
    let text = report.to_string();
    assert!(text.contains("anomalies: 1 (ReadYourWrites: 1)"), "{text}");
    assert!(text.contains("#0 s0 r0 put(x)=a [10..15]"), "{text}");
    assert!(text.contains("#1 s0 r0 put(x)=b [20..25]"), "{text}");
    assert!(text.contains("#2 s0 r1 get(x)=a [30..35]"), "{text}");
    assert_eq!(report.anomalies[0].chain.len(), 3);
    assert_eq!(report.counts().get(&AnomalyKind::ReadYourWrites), Some(&1));

    let clean = Builder::default().check();
    assert!(clean.to_string().contains("anomalies: none"));
}

#[test]
fn histories_round_trip_through_json() {
    let mut b = Builder::default();
    b.put(0, 0, "x", "a");
    b.get(1, 1, "x", None);
    b.put_failed(1, 1, "y", "b");
    b.crash(1);
    b.fin(0, "x", Some("a"));
    let back = History::from_json(&b.h.to_json()).unwrap();
    assert_eq!(back, b.h);
}

#[test]
fn malformed_ops_are_warned_about_not_trusted() {
    let mut b = Builder::default();
    b.put(0, 0, "x", "a");
    b.op(0, 0, "x", OpKind::Get, OpResult::Written);
    b.put(1, 0, "y", "a"); // duplicate value
    let report = b.check();
    assert_eq!(report.warnings.len(), 2, "{report}");
    assert!(report.is_ok(), "{report}");
}

// ---------------------------------------------------------------------------
// A simulated causal+ store: long clean histories
// ---------------------------------------------------------------------------

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() % 1_000_000) as f64 / 1_000_000.0 < p
    }
}

struct Write {
    key: usize,
    value: Option<String>,
    origin: usize,
    seq: u64,
    lamport: u64,
    deps: Vec<u64>,
}

#[derive(Clone, Default)]
struct SimReplica {
    /// Writes applied per origin (each origin's writes apply in order).
    applied: Vec<u64>,
    lamport: u64,
    /// key -> index of the winning write.
    store: HashMap<usize, usize>,
    /// Writes not yet applied here.
    inbox: Vec<usize>,
}

/// Replicas apply writes in causal order (per-origin sequence numbers plus
/// dependency vectors), serve a session only once they have its context,
/// and resolve conflicts by (Lamport time, origin): a textbook causal+ store.
struct Sim {
    rng: Rng,
    writes: Vec<Write>,
    replicas: Vec<SimReplica>,
    builder: Builder,
}

impl Sim {
    fn new(seed: u64, replicas: usize) -> Self {
        Sim {
            rng: Rng(seed),
            writes: Vec::new(),
            replicas: vec![
                SimReplica {
                    applied: vec![0; replicas],
                    ..SimReplica::default()
                };
                replicas
            ],
            builder: Builder::default(),
        }
    }

    fn deliverable(&self, r: usize, w: usize) -> bool {
        let w = &self.writes[w];
        let applied = &self.replicas[r].applied;
        applied[w.origin] + 1 == w.seq && w.deps.iter().zip(applied).all(|(d, a)| d <= a)
    }

    fn apply(&mut self, r: usize, w: usize) {
        let (origin, seq, lamport, key) = {
            let w = &self.writes[w];
            (w.origin, w.seq, w.lamport, w.key)
        };
        let rep = &mut self.replicas[r];
        rep.applied[origin] = seq;
        rep.lamport = rep.lamport.max(lamport);
        let wins = match rep.store.get(&key) {
            None => true,
            Some(&cur) => {
                let c = &self.writes[cur];
                (lamport, origin) > (c.lamport, c.origin)
            }
        };
        if wins {
            rep.store.insert(key, w);
        }
    }

    /// Applies deliverable writes at `r`: all of them, or a random few.
    fn deliver(&mut self, r: usize, all: bool) {
        loop {
            let mut progressed = false;
            let inbox = std::mem::take(&mut self.replicas[r].inbox);
            let mut keep = Vec::new();
            for w in inbox {
                if (all || self.rng.chance(0.5)) && self.deliverable(r, w) {
                    self.apply(r, w);
                    progressed = true;
                } else {
                    keep.push(w);
                }
            }
            self.replicas[r].inbox = keep;
            if !progressed || !all {
                return;
            }
        }
    }

    fn write(&mut self, r: usize, key: usize, value: Option<String>, context: &[u64]) -> usize {
        let rep = &self.replicas[r];
        let w = Write {
            key,
            value,
            origin: r,
            seq: rep.applied[r] + 1,
            lamport: rep.lamport + 1,
            deps: context.to_vec(),
        };
        let id = self.writes.len();
        self.writes.push(w);
        self.apply(r, id);
        for (i, rep) in self.replicas.iter_mut().enumerate() {
            if i != r {
                rep.inbox.push(id);
            }
        }
        id
    }

    fn learn(&self, context: &mut [u64], w: usize) {
        let w = &self.writes[w];
        context[w.origin] = context[w.origin].max(w.seq);
    }

    fn run(mut self, ops: usize, sessions: usize, keys: usize) -> History {
        let n = self.replicas.len();
        let mut contexts = vec![vec![0u64; n]; sessions];
        let mut home: Vec<usize> = (0..sessions).map(|s| s % n).collect();
        let mut next_value = 0;
        for _ in 0..ops {
            let s = self.rng.below(sessions);
            if self.rng.chance(0.2) {
                home[s] = self.rng.below(n);
            }
            let r = home[s];
            // Background replication.
            let other = self.rng.below(n);
            let all = self.rng.chance(0.05);
            self.deliver(other, all);
            // Serve only once the session's context is applied here.
            while !contexts[s]
                .iter()
                .zip(&self.replicas[r].applied)
                .all(|(c, a)| c <= a)
            {
                self.deliver(r, true);
            }
            let key = if self.rng.chance(0.7) {
                self.rng.below(4)
            } else {
                4 + self.rng.below(keys - 4)
            };
            let name = format!("k{key}");
            let roll = self.rng.below(100);
            let current = self.replicas[r].store.get(&key).copied();
            let present = current.filter(|&w| self.writes[w].value.is_some());
            if roll < 2 {
                self.builder.get_failed(s, r, &name);
            } else if roll < 45 {
                let value = present.and_then(|w| self.writes[w].value.clone());
                if let Some(w) = current {
                    self.learn(&mut contexts[s], w);
                }
                self.builder.get(s, r, &name, value.as_deref());
            } else if roll < 85 {
                next_value += 1;
                let value = format!("v{next_value}");
                if roll < 48 {
                    // Times out: maybe applied, but the client learns nothing.
                    if self.rng.chance(0.5) {
                        let context = contexts[s].clone();
                        self.write(r, key, Some(value.clone()), &context);
                    }
                    self.builder.put_failed(s, r, &name, &value);
                } else {
                    let context = contexts[s].clone();
                    let w = self.write(r, key, Some(value.clone()), &context);
                    self.learn(&mut contexts[s], w);
                    self.builder.put(s, r, &name, &value);
                }
            } else if present.is_some() {
                let context = contexts[s].clone();
                let w = self.write(r, key, None, &context);
                self.learn(&mut contexts[s], w);
                self.builder.del(s, r, &name);
            } else {
                if let Some(w) = current {
                    self.learn(&mut contexts[s], w);
                }
                self.builder.del_absent(s, r, &name);
            }
        }
        // Heal: deliver everything everywhere, then read every key.
        for r in 0..n {
            self.deliver(r, true);
            assert!(self.replicas[r].inbox.is_empty());
        }
        for r in 0..n {
            for key in 0..keys {
                let value = self.replicas[r]
                    .store
                    .get(&key)
                    .and_then(|&w| self.writes[w].value.clone());
                self.builder.fin(r, &format!("k{key}"), value.as_deref());
            }
        }
        self.builder.h
    }
}

#[test]
fn a_long_history_from_a_causal_store_passes() {
    let history = Sim::new(7, 3).run(20_000, 12, 20);
    let report = check(&history);
    expect_clean(&report);
    assert_eq!(report.stats.ops, 20_000);
    assert!(report.stats.reads_from > 3_000, "{report}");
    assert!(report.stats.failed_writes_observed > 10, "{report}");
    println!("{report}");
}

#[test]
fn small_simulated_histories_pass_for_many_seeds() {
    for seed in 0..40 {
        let history = Sim::new(seed, 3).run(400, 5, 6);
        let report = check(&history);
        assert!(report.is_ok(), "seed {seed}:\n{report}");
    }
}

#[test]
fn a_mutated_simulated_history_fails() {
    let history = Sim::new(11, 3).run(3_000, 6, 8);
    assert!(check(&history).is_ok());

    // Make one read return the session's own older value instead.
    let mut broken = history.clone();
    let mut own: HashMap<(usize, String), Vec<String>> = HashMap::new();
    let mut target = None;
    for op in &broken.ops {
        match (&op.kind, &op.result) {
            (OpKind::Put { value }, OpResult::Written) => own
                .entry((op.session, op.key.clone()))
                .or_default()
                .push(value.clone()),
            (OpKind::Get, OpResult::Read(Some(v))) => {
                if let Some(values) = own.get(&(op.session, op.key.clone())) {
                    if values.len() >= 2 && &values[0] != v {
                        target = Some((op.id, values[0].clone()));
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    let (id, old) = target.expect("the simulation produces such a read");
    broken.ops[id].result = OpResult::Read(Some(old));
    let report = check(&broken);
    expect(&report, AnomalyKind::ReadYourWrites, &[id]);

    // Make one replica's final read disagree.
    let mut broken = history.clone();
    let fr = broken
        .final_reads
        .iter_mut()
        .find(|f| f.value.is_some())
        .unwrap();
    fr.value = None;
    let report = check(&broken);
    assert!(report.count(AnomalyKind::Divergence) >= 1, "{report}");
    assert!(!report.convergence_ok);
}

#[test]
fn a_replica_that_forgets_a_delete_is_caught() {
    let history = Sim::new(5, 3).run(3_000, 6, 8);
    assert!(check(&history).is_ok());

    // A put followed, in its own session, by a delete of the key, where the
    // key ends absent: one replica brings the put's value back.
    let mut puts: HashMap<(usize, String), usize> = HashMap::new();
    let mut target = None;
    for op in &history.ops {
        match (&op.kind, &op.result) {
            (OpKind::Put { .. }, OpResult::Written) => {
                puts.insert((op.session, op.key.clone()), op.id);
            }
            (OpKind::Delete, OpResult::Deleted) => {
                let Some(&put) = puts.get(&(op.session, op.key.clone())) else {
                    continue;
                };
                let absent = history
                    .final_reads
                    .iter()
                    .filter(|f| f.key == op.key)
                    .all(|f| f.value.is_none());
                if absent {
                    target = Some((put, op.id));
                    break;
                }
            }
            _ => {}
        }
    }
    let (put, delete) = target.expect("the simulation produces such a key");
    let OpKind::Put { value } = &history.ops[put].kind else {
        unreachable!("a put");
    };
    let mut broken = history.clone();
    let key = history.ops[put].key.clone();
    let fr = broken
        .final_reads
        .iter_mut()
        .find(|f| f.key == key)
        .expect("every key is read at the end");
    fr.value = Some(value.clone());
    let report = check(&broken);
    // The delete named is this one or another that also follows the put.
    expect(&report, AnomalyKind::Resurrection, &[put]);
    let named = &report.of_kind(AnomalyKind::Resurrection)[0].ops;
    let last = &broken.ops[*named.last().unwrap()];
    assert!(
        last.kind == OpKind::Delete && last.key == key,
        "{report}\n(the delete this history has: #{delete})"
    );
    assert_eq!(report.count(AnomalyKind::Divergence), 1, "{report}");
    assert!(!report.convergence_ok);
}

/// `cargo test --release --test checker -- --ignored --nocapture` times a
/// 50,000-op history.
#[test]
#[ignore]
fn time_a_50k_history() {
    let history = Sim::new(3, 5).run(50_000, 32, 60);
    let start = std::time::Instant::now();
    let report = check(&history);
    println!("checked 50,000 ops in {:?}\n{report}", start.elapsed());
    assert!(report.is_ok());
}

/// `cargo test --release --test checker -- --ignored soak` runs the
/// simulated store under many shapes and seeds: the checker must never
/// accuse it.
#[test]
#[ignore]
fn soak_simulated_histories() {
    let mut meta = Rng(99);
    for seed in 0..3_000 {
        let replicas = 2 + meta.below(4);
        let sessions = 1 + meta.below(30);
        let keys = 5 + meta.below(20);
        let ops = 200 + meta.below(3_000);
        let history = Sim::new(seed, replicas).run(ops, sessions, keys);
        let report = check(&history);
        assert!(
            report.is_ok(),
            "seed {seed} ({replicas} replicas, {sessions} sessions, {keys} keys):\n{report}"
        );
    }
}
