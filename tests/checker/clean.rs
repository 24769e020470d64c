//! Legitimate histories pass: concurrency with either winner, a concurrent
//! delete winning, overwrites, and failed writes that may or may not have
//! happened.

use super::*;

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
