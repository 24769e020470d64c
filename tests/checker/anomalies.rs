//! One hand-built history per anomaly kind: each detector fires, with the
//! right kind and the right operations.

use super::*;

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
    expect_explanation(&report, "[1]");

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
