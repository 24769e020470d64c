//! Histories of a sharded store (the fault suite's sharded runs): every
//! request may be relayed from the node it was sent to to a member of its
//! key's shard, so the checker is told (`History::relayed`) and learns who
//! issued each acknowledged write from its answer (`Op::served_by`,
//! `Op::incarnation`). Memory-only nodes: every crash loses the node's
//! state. Planted lost writes, divergence and cross-shard causal anomalies
//! are still reported; a crash excuses only the writes of the node that
//! issued them, unless a member of the same shard is known to have applied
//! them; and the shards' key counts must add up.
//!
//! Six nodes: shard 1 = {0, 2, 4} (group `s1e1`), shard 2 = {1, 3, 5}
//! (group `s2e1`).

use std::collections::BTreeMap;

use super::*;

const NODES: [usize; 6] = [0, 1, 2, 3, 4, 5];

/// Node `r`'s first incarnation, in its shard's group.
fn inc(r: usize) -> String {
    let group = if r.is_multiple_of(2) { "s1e1" } else { "s2e1" };
    format!("10.0.0.{}:8085#{group}.{r}f", r + 2)
}

/// A relayed history's builder.
fn sharded() -> Builder {
    let mut b = Builder::default();
    b.relayed();
    b
}

/// An acknowledged put sent to `to`, issued by `by`.
fn put_via(b: &mut Builder, s: usize, to: usize, by: usize, key: &str, value: &str) -> usize {
    let op = b.put(s, to, key, value);
    b.served(op, by, &inc(by));
    op
}

#[test]
fn a_relayed_write_is_lost_unless_the_node_that_issued_it_crashed() {
    // Sent to node 0, relayed to node 1 (key in shard 2), which issued it.
    let history = |crashed: usize| {
        let mut b = sharded();
        let a = put_via(&mut b, 0, 0, 1, "x", "a");
        b.crash(crashed);
        b.finals(&NODES, "x", None);
        (b, a)
    };
    // The node it was sent to crashed: that excuses nothing.
    let (b, a) = history(0);
    let report = b.check();
    expect_only(&report, AnomalyKind::LostWrite, &[a]);
    expect_explanation(&report, "its replica did not crash after it was sent");
    assert!(report.lost_to_crash.is_empty(), "{report}");
    let text = report.to_string();
    assert!(text.contains("r0 (served by r1) put(x)=a"), "{text}");

    // The node that issued it crashed (memory only): excused, and listed.
    let (b, a) = history(1);
    let report = b.check();
    expect_clean(&report);
    assert_eq!(report.lost_to_crash, vec![a], "{report}");
}

#[test]
fn a_write_whose_node_crashed_while_its_answer_was_on_its_way_is_excused() {
    // Relayed to node 1, which applied it and answered; the answer reached
    // the client through node 0 after node 1 was killed.
    let history = |crash_at: u64| {
        let mut b = sharded();
        let kind = OpKind::Put { value: "a".into() };
        let a = b.raw(0, 0, "x", kind, OpResult::Written, 100, Some(140));
        b.served(a, 1, &inc(1));
        b.h.crashes.push(Crash {
            replica: 1,
            at_us: crash_at,
            kept_state: false,
        });
        b.t = 200;
        b.finals(&NODES, "x", None);
        (b, a)
    };
    for crash_at in [100, 120, 139] {
        let (b, a) = history(crash_at);
        let report = b.check();
        expect_clean(&report);
        assert_eq!(
            report.lost_to_crash,
            vec![a],
            "crash at {crash_at}: {report}"
        );
    }
    // A crash before it was sent excuses nothing.
    let (b, a) = history(99);
    let report = b.check();
    expect_only(&report, AnomalyKind::LostWrite, &[a]);
    expect_explanation(&report, "its replica did not crash after it was sent");
}

#[test]
fn a_write_another_member_of_its_shard_applied_survives_its_node_crash() {
    // The session's next write, issued by node 3 (shard 2 too) before node
    // 1 crashed, named it in its context: node 3 had applied it.
    let mut b = sharded();
    let a = put_via(&mut b, 0, 0, 1, "x", "a");
    put_via(&mut b, 0, 4, 3, "y", "b");
    b.crash(1);
    b.finals(&NODES, "x", None);
    b.finals(&NODES, "y", Some("b"));
    let report = b.check();
    expect_only(&report, AnomalyKind::LostWrite, &[a]);
    expect_explanation(&report, "had reached replica 3 (#1 was answered there");

    // A next write in the other shard shows nothing: its members take
    // shard 2's entries of a context as met without holding them.
    let mut b = sharded();
    let a = put_via(&mut b, 0, 0, 1, "x", "a");
    put_via(&mut b, 0, 3, 2, "y", "b");
    b.crash(1);
    b.finals(&NODES, "x", None);
    b.finals(&NODES, "y", Some("b"));
    let report = b.check();
    expect_clean(&report);
    assert_eq!(report.lost_to_crash, vec![a], "{report}");

    // Nor does a read sent to node 3 that returned it: it may have been
    // relayed to node 1 itself.
    let mut b = sharded();
    let a = put_via(&mut b, 0, 0, 1, "x", "a");
    b.get(1, 3, "x", Some("a"));
    b.crash(1);
    b.finals(&NODES, "x", None);
    let report = b.check();
    expect_clean(&report);
    assert_eq!(report.lost_to_crash, vec![a], "{report}");

    // In an unsharded store the same read shows node 3 held it.
    let mut b = Builder::default();
    let a = b.put(0, 0, "x", "a");
    b.get(1, 3, "x", Some("a"));
    b.crash(0);
    b.finals(&NODES, "x", None);
    expect_only(&b.check(), AnomalyKind::LostWrite, &[a]);
}

#[test]
fn a_failed_put_whose_node_is_unknown_is_excused_by_any_crash() {
    // It was observed, so it happened; nobody knows which node took it.
    let history = |crash: bool| {
        let mut b = sharded();
        let w = b.put_failed(0, 0, "x", "a");
        b.get(1, 2, "x", Some("a"));
        if crash {
            b.crash(5);
        }
        b.finals(&NODES, "x", None);
        (b, w)
    };
    let (b, w) = history(false);
    expect(&b.check(), AnomalyKind::NotCausallyMaximal, &[w]);
    let (b, _) = history(true);
    expect_clean(&b.check());
}

#[test]
fn divergence_in_a_sharded_history_is_caught() {
    let mut b = sharded();
    let a = put_via(&mut b, 0, 0, 1, "x", "a");
    let c = put_via(&mut b, 1, 2, 5, "x", "c");
    // Node 5 keeps its own value, the others the other.
    b.finals(&[0, 1, 2, 3, 4], "x", Some("a"));
    b.fin(5, "x", Some("c"));
    let report = b.check();
    expect(&report, AnomalyKind::Divergence, &[a, c]);
    assert!(!report.convergence_ok, "{report}");
}

#[test]
fn a_cross_shard_causal_anomaly_is_caught_unless_a_crash_explains_it() {
    // Session 0 writes x in shard 1, then y in shard 2; session 1 reads y,
    // so x is in its causal past, and then finds x absent.
    let history = |crash: bool| {
        let mut b = sharded();
        let x = put_via(&mut b, 0, 1, 0, "x", "a");
        put_via(&mut b, 0, 2, 3, "y", "b");
        b.get(1, 4, "y", Some("b"));
        if crash {
            b.crash(0);
        }
        let r = b.get(1, 5, "x", None);
        b.finals(&NODES, "x", Some("a"));
        b.finals(&NODES, "y", Some("b"));
        (b, x, r)
    };
    let (b, x, r) = history(false);
    expect_only(&b.check(), AnomalyKind::PhantomAbsence, &[x, 1, 2, r]);
    // The node that issued x lost its state before the read: x may have
    // been gone then (it came back from another member by the end).
    let (b, _, _) = history(true);
    expect_clean(&b.check());
}

#[test]
fn sharded_histories_keep_their_fields_in_json_and_old_ones_load() {
    let mut b = sharded();
    put_via(&mut b, 0, 0, 1, "x", "a");
    b.finals(&NODES, "x", Some("a"));
    let back = History::from_json(&b.h.to_json()).unwrap();
    assert_eq!(back, b.h);
    assert!(back.relayed);
    assert_eq!(back.ops[0].served_by, Some(1));

    // Without the fields: unsharded, servers unknown.
    let old = r#"{"ops":[{"id":0,"session":0,"replica":0,"key":"x","kind":{"Put":{"value":"a"}},"invoked_us":1,"completed_us":2,"result":"Written"}],"final_reads":[],"crashes":[],"partitions":[]}"#;
    let h = History::from_json(old).unwrap();
    assert!(!h.relayed);
    assert_eq!(h.ops[0].served_by, None);
    assert_eq!(h.ops[0].incarnation, None);
}

#[test]
fn the_shards_key_counts_must_add_up() {
    let mut b = sharded();
    b.finals(&NODES, "a", Some("1"));
    b.finals(&NODES, "b", Some("2"));
    b.finals(&NODES, "c", Some("3"));
    b.finals(&NODES, "d", None);
    // Absent at one node: not counted as present (the divergence is the
    // checker's to report).
    b.finals(&[0, 1, 2, 3, 4], "e", Some("5"));
    b.fin(5, "e", None);
    let shard_of = |key: &str| if key < "c" { 1 } else { 2 };
    let counts = |one: Option<u64>, two: Option<u64>| -> BTreeMap<u64, Option<u64>> {
        [(1, one), (2, two)].into_iter().collect()
    };
    let finals = &b.h.final_reads;
    assert_eq!(
        key_count_problems(finals, &counts(Some(2), Some(1)), shard_of),
        Vec::<String>::new()
    );

    // A shard that counts a key too many (one kept after it moved away, or
    // a deleted one): reported, and the sum is off.
    let problems = key_count_problems(finals, &counts(Some(2), Some(2)), shard_of);
    assert_eq!(
        problems,
        vec![
            "shard 2 counts 2 keys, but 1 present keys are placed in it".to_string(),
            "the shards' key counts sum to 4, but 3 keys are present".to_string(),
        ]
    );

    // Keys lost in a reshard: the counts fall short.
    let problems = key_count_problems(finals, &counts(Some(1), Some(1)), shard_of);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("sum to 2, but 3 keys are present")),
        "{problems:?}"
    );

    // A count that could not be read, and a shard the store does not list.
    let problems = key_count_problems(finals, &counts(Some(2), None), shard_of);
    assert_eq!(
        problems,
        vec!["shard 2's key count could not be read".to_string()]
    );
    let only_one: BTreeMap<u64, Option<u64>> = [(1, Some(2))].into_iter().collect();
    let problems = key_count_problems(finals, &only_one, shard_of);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("placed in no shard the store lists: [\"c\"]")),
        "{problems:?}"
    );
}
