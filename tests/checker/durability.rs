//! Replicas with disks: a crash that kept the replica's state (every
//! replica killed at once and started again on its DATA_DIR, say) excuses
//! no lost write and no stale read; a lost disk excuses only what no other
//! replica is known to have held; identities survive a restart on the kept
//! state and change when it is lost; histories saved before crashes said
//! whether they kept the state still load.

use super::*;

/// The report's anomalies of `kind` (there is at least one) all name `op`,
/// and one of them explains itself with `because`.
fn expect_lost(report: &Report, op: usize, because: &str) {
    expect(report, AnomalyKind::LostWrite, &[op]);
    let lost = report.of_kind(AnomalyKind::LostWrite);
    assert!(
        lost.iter().any(|a| a.explanation.contains(because)),
        "expected a LostWrite saying {because:?}; got:\n{report}"
    );
    assert!(report.lost_to_crash.is_empty(), "{report}");
}

#[test]
fn a_write_gone_after_every_replica_crashed_with_its_disk_is_flagged() {
    // Two writes, each acknowledged by one replica only; every replica is
    // killed at once and started again on its disk; one write vanishes.
    let history = |kept: bool| {
        let mut b = Builder::default();
        let a = b.put(0, 0, "x", "a");
        b.put(1, 1, "y", "b");
        if kept {
            b.crash_kept(&ALL);
        } else {
            for r in ALL {
                b.crash(r);
            }
        }
        b.finals(&ALL, "x", None);
        b.finals(&ALL, "y", Some("b"));
        (b, a)
    };
    let (b, a) = history(true);
    let report = b.check();
    expect_only(&report, AnomalyKind::LostWrite, &[a]);
    expect_lost(&report, a, "started again on the state it kept (DATA_DIR)");
    let text = report.to_string();
    assert!(
        text.contains("crashes: 3 kept the replica's state (excusing nothing), 0 lost it"),
        "{text}"
    );

    // The same history where the crashes lost the replicas' state (no
    // disks, or disks deleted): the write is excused, and listed.
    let (b, a) = history(false);
    let report = b.check();
    expect_clean(&report);
    assert_eq!(report.lost_to_crash, vec![a], "{report}");
}

#[test]
fn a_delete_gone_after_a_crash_with_the_disk_is_a_resurrection() {
    let mut b = Builder::default();
    let a = b.put(0, 0, "x", "a");
    let g = b.get(1, 1, "x", Some("a"));
    let d = b.del(1, 1, "x");
    b.crash_kept(&ALL);
    b.finals(&ALL, "x", Some("a"));
    let report = b.check();
    expect_only(&report, AnomalyKind::Resurrection, &[a, g, d]);
    expect_explanation(&report, "every time started again on the state it kept");

    // Lost with its replica's state, the delete may be gone.
    let mut b = Builder::default();
    b.put(0, 0, "x", "a");
    b.get(1, 1, "x", Some("a"));
    b.del(1, 1, "x");
    b.crash(1);
    b.finals(&[0, 2], "x", Some("a"));
    expect_clean(&b.check());
}

#[test]
fn a_crash_that_kept_the_state_excuses_no_read() {
    // The session's own write, at a replica that crashed and came back
    // with its disk, must be seen by its next read elsewhere.
    let mut b = Builder::default();
    let a = b.put(0, 0, "x", "a");
    b.crash_kept(&[0]);
    let read = b.get(0, 1, "x", None);
    b.finals(&ALL, "x", Some("a"));
    expect_only(&b.check(), AnomalyKind::ReadYourWrites, &[a, read]);

    // A stale read after every replica crashed with its disk.
    let mut b = Builder::default();
    b.put(0, 1, "x", "a");
    let over = b.put(0, 0, "x", "b");
    b.crash_kept(&ALL);
    let read = b.get(0, 2, "x", Some("a"));
    b.finals(&ALL, "x", Some("b"));
    expect(&b.check(), AnomalyKind::ReadYourWrites, &[over, read]);

    // When the crash lost the state, both reads are legitimate.
    let mut b = Builder::default();
    b.put(0, 0, "x", "a");
    b.crash(0);
    b.get(0, 1, "x", None);
    b.finals(&[1, 2], "x", None);
    expect_clean(&b.check());
}

#[test]
fn a_write_that_reached_another_replica_survives_a_lost_disk() {
    // Read back at replica 1 before replica 0 lost its disk: replica 1
    // held it, and kept it.
    let mut b = Builder::default();
    let a = b.put(0, 0, "x", "a");
    b.get(1, 1, "x", Some("a"));
    b.crash(0);
    b.finals(&ALL, "x", None);
    expect_lost(
        &b.check(),
        a,
        "had reached replica 1 (#1 returned its value)",
    );

    // The session's next request, answered at replica 2 before the loss,
    // named it in its context: replica 2 had applied it.
    let mut b = Builder::default();
    let a = b.put(0, 0, "x", "a");
    b.put(0, 2, "y", "b");
    b.crash(0);
    b.finals(&ALL, "x", None);
    b.finals(&ALL, "y", Some("b"));
    expect_lost(
        &b.check(),
        a,
        "had reached replica 2 (#1 was answered there with it in its causal past)",
    );

    // The same request answered only after the loss: the lost incarnation
    // may have been retired by then, so it shows nothing.
    let mut b = Builder::default();
    let a = b.put(0, 0, "x", "a");
    b.crash(0);
    b.put(0, 2, "y", "b");
    b.finals(&ALL, "x", None);
    b.finals(&ALL, "y", Some("b"));
    let report = b.check();
    expect_clean(&report);
    assert_eq!(report.lost_to_crash, vec![a], "{report}");

    // Only replica 0 ever held it: lost with its disk, excused.
    let mut b = Builder::default();
    let a = b.put(0, 0, "x", "a");
    b.get(1, 0, "x", Some("a"));
    b.crash(0);
    b.finals(&ALL, "x", None);
    let report = b.check();
    expect_clean(&report);
    assert_eq!(report.lost_to_crash, vec![a], "{report}");

    // The replica it reached lost its state later too: excused.
    let mut b = Builder::default();
    let a = b.put(0, 0, "x", "a");
    b.get(1, 1, "x", Some("a"));
    b.crash(0);
    b.crash(1);
    b.finals(&[0, 2], "x", None);
    let report = b.check();
    expect_clean(&report);
    assert_eq!(report.lost_to_crash, vec![a], "{report}");

    // ... but not if that replica's crash kept its state.
    let mut b = Builder::default();
    let a = b.put(0, 0, "x", "a");
    b.get(1, 1, "x", Some("a"));
    b.crash(0);
    b.crash_kept(&[1]);
    b.finals(&ALL, "x", None);
    expect_lost(&b.check(), a, "had reached replica 1");
}

#[test]
fn identities_hold_across_restarts_on_the_kept_state() {
    let mut b = Builder::default();
    b.restart(0, true, "10.0.0.2:8085#a1", "10.0.0.2:8085#a1");
    b.restart(1, false, "10.0.0.3:8085#b1", "10.0.0.3:8085#b2");
    let report = b.check();
    expect_clean(&report);
    assert!(
        report
            .to_string()
            .contains("identity checked on 2 restart(s)"),
        "{report}"
    );

    // Restarted on its disk, it came back as a new incarnation.
    let mut b = Builder::default();
    b.restart(0, true, "10.0.0.2:8085#a1", "10.0.0.2:8085#a2");
    let report = b.check();
    expect_only(&report, AnomalyKind::Incarnation, &[]);
    expect_explanation(
        &report,
        "came back as 10.0.0.2:8085#a2, not 10.0.0.2:8085#a1",
    );

    // It set aside a state caught merging a copy, as it said: documented.
    let mut b = Builder::default();
    b.restart_set_aside(0, "10.0.0.2:8085#a1", "10.0.0.2:8085#a2");
    expect_clean(&b.check());

    // Its disk was deleted, yet it came back under its old identity.
    let mut b = Builder::default();
    b.restart(1, false, "10.0.0.3:8085#b1", "10.0.0.3:8085#b1");
    let report = b.check();
    expect_only(&report, AnomalyKind::Incarnation, &[]);
    expect_explanation(&report, "came back under its old identity 10.0.0.3:8085#b1");
}

#[test]
fn histories_saved_before_disks_still_load() {
    // Crashes without `kept_state` lost the state; no restarts recorded.
    let text = r#"{"ops":[],"final_reads":[],"crashes":[{"replica":1,"at_us":5}],"partitions":[]}"#;
    let h = History::from_json(text).unwrap();
    assert!(!h.crashes[0].kept_state);
    assert!(h.restarts.is_empty());

    let mut b = Builder::default();
    b.put(0, 0, "x", "a");
    b.crash_kept(&[0, 1]);
    b.crash(2);
    b.restart(0, true, "a#1", "a#1");
    let back = History::from_json(&b.h.to_json()).unwrap();
    assert_eq!(back, b.h);
}
