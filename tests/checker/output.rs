//! Availability per partition side, the printed report, histories as
//! JSON, and malformed operations.

use super::*;

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

/// Replays the checker on a history a failing fault run saved next to its
/// logs: `CHECKER_HISTORY=<dir>/history.json cargo test --test checker --
/// --ignored replay --nocapture` prints the report (and fails if it found
/// anomalies).
#[test]
#[ignore = "replays the history named by CHECKER_HISTORY"]
fn replay_a_saved_history() {
    let Ok(path) = std::env::var("CHECKER_HISTORY") else {
        println!("CHECKER_HISTORY is not set: nothing to replay");
        return;
    };
    let text = std::fs::read_to_string(&path).expect("a readable history");
    let report = check(&History::from_json(&text).expect("a saved history"));
    println!("{report}");
    assert!(report.is_ok(), "{path}: anomalies found");
}
