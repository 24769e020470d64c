//! Deleted values coming back, and the legitimate ways a key returns (a
//! put concurrent with the delete, a put after it, a delete lost in a
//! crash).

use super::*;

/// The report's only anomaly is a Resurrection whose explanation says so.
fn expect_resurrection(report: &Report, ops: &[usize]) {
    expect_only(report, AnomalyKind::Resurrection, ops);
    expect_explanation(report, "a deleted value came back");
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
    expect_explanation(&report, "#4 delete(x), which causally follows it");
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
    expect_explanation(&report, "the session's own earlier #2 delete(x)");

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
    expect_explanation(&report, "at replica(s) [0, 1, 2]");

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
    // excused: the delete may have died with its replica afterwards, since
    // no other replica is known to have held it).
    let mut b = Builder::default();
    let a = b.put(0, 0, "x", "a");
    let d = b.del(0, 1, "x");
    let read = b.get(0, 1, "x", Some("a"));
    b.crash(1);
    b.finals(&[0, 2], "x", Some("a"));
    expect_resurrection(&b.check(), &[a, d, read]);

    // Read at replica 2, which answered with the delete in the session's
    // context, so it held the delete and kept it: the final value is a
    // resurrection too.
    let mut b = Builder::default();
    let a = b.put(0, 0, "x", "a");
    let d = b.del(0, 1, "x");
    let read = b.get(0, 2, "x", Some("a"));
    b.crash(1);
    b.finals(&[0, 2], "x", Some("a"));
    let report = b.check();
    assert_eq!(report.count(AnomalyKind::Resurrection), 2, "{report}");
    assert_eq!(report.anomalies.len(), 2, "{report}");
    expect(&report, AnomalyKind::Resurrection, &[a, d, read]);
    let last = report.anomalies.last().unwrap();
    assert!(
        last.explanation.contains("had reached replica 2 (#2"),
        "{report}"
    );
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
