//! Conditional writes in the default table: a put answered 412 wrote
//! nothing, so its value must never be read (by a client, in the end, or
//! among siblings); one that succeeded is a plain write; and a put that
//! succeeded with `If-None-Match: *` found its key absent at its replica,
//! which its own causal past may rule out (the session's own put, or one
//! it read, that no delete can have removed).

use super::*;

/// A put with `condition` that got `result`.
fn cput(
    b: &mut Builder,
    (s, r): (usize, usize),
    key: &str,
    value: &str,
    condition: Condition,
    result: OpResult,
) -> usize {
    let kind = OpKind::Put {
        value: value.into(),
    };
    let op = b.op(s, r, key, kind, result);
    b.h.ops[op].condition = Some(condition);
    op
}

fn created(b: &mut Builder, at: (usize, usize), key: &str, value: &str) -> usize {
    cput(b, at, key, value, Condition::IfNoneMatch, OpResult::Written)
}

fn refused(b: &mut Builder, at: (usize, usize), key: &str, value: &str) -> usize {
    cput(b, at, key, value, Condition::IfNoneMatch, OpResult::Unmet)
}

#[test]
fn a_412_writes_nothing_and_its_value_never_appears() {
    // Clean: the refused value is never seen; the 412 taught the session
    // the current version, like a read.
    let mut b = Builder::default();
    b.put(0, 0, "x", "a");
    refused(&mut b, (1, 0), "x", "b");
    b.get(1, 1, "x", Some("a"));
    b.finals(&ALL, "x", Some("a"));
    expect_clean(&b.check());

    // A client read returns it.
    let mut b = Builder::default();
    b.put(0, 0, "x", "a");
    let u = refused(&mut b, (1, 0), "x", "b");
    let r = b.get(2, 1, "x", Some("b"));
    b.finals(&ALL, "x", Some("a"));
    let report = b.check();
    expect_only(&report, AnomalyKind::PreconditionFailedWrote, &[u, r]);
    expect_explanation(&report, "whose condition failed (412): it wrote nothing");
    assert!(
        report
            .to_string()
            .contains("put(x)=b [If-None-Match: *] 412"),
        "{report}"
    );

    // A final read finds it.
    let mut b = Builder::default();
    b.put(0, 0, "x", "a");
    let u = cput(
        &mut b,
        (1, 0),
        "x",
        "b",
        Condition::IfMatch("\"0123\"".into()),
        OpResult::Unmet,
    );
    b.finals(&ALL, "x", Some("b"));
    expect(&b.check(), AnomalyKind::PreconditionFailedWrote, &[u]);

    // Among a key's siblings.
    let mut b = Builder::default();
    b.h.sibling_tables = vec!["sib".into()];
    b.put(0, 0, "x", "a");
    let u = refused(&mut b, (0, 0), "x", "b");
    let r = b.get(1, 1, "x", Some("b"));
    for op in [0, u, r] {
        b.h.ops[op].table = Some("sib".into());
    }
    b.h.final_sets.push(FinalSet {
        replica: 0,
        table: "sib".into(),
        key: "x".into(),
        values: vec!["a".into(), "b".into()],
        at_us: 1_000_000,
    });
    let report = b.check();
    expect(&report, AnomalyKind::PreconditionFailedWrote, &[u, r]);
    assert_eq!(
        report.count(AnomalyKind::PreconditionFailedWrote),
        2,
        "{report}"
    );
}

#[test]
fn a_conditional_write_that_succeeded_is_a_plain_write() {
    let mut b = Builder::default();
    b.put(0, 0, "x", "a");
    b.get(1, 1, "x", Some("a"));
    cput(
        &mut b,
        (1, 1),
        "x",
        "b",
        Condition::IfMatch("\"0a\"".into()),
        OpResult::Written,
    );
    b.get(0, 2, "x", Some("b"));
    b.finals(&ALL, "x", Some("b"));
    expect_clean(&b.check());

    // And overwrites like one: reading the old value after it is stale.
    let mut b = Builder::default();
    let a = b.put(0, 0, "x", "a");
    let c = cput(
        &mut b,
        (0, 1),
        "x",
        "b",
        Condition::IfMatch("\"0a\"".into()),
        OpResult::Written,
    );
    let r = b.get(0, 2, "x", Some("a"));
    b.finals(&ALL, "x", Some("b"));
    expect_only(&b.check(), AnomalyKind::ReadYourWrites, &[a, c, r]);
}

#[test]
fn an_if_none_match_success_over_a_value_the_session_knew_is_caught() {
    // The session's own put, never deleted.
    let mut b = Builder::default();
    let a = b.put(0, 0, "x", "a");
    let c = created(&mut b, (0, 1), "x", "b");
    b.finals(&ALL, "x", Some("b"));
    let report = b.check();
    expect_only(&report, AnomalyKind::ReadYourWrites, &[a, c]);
    expect_explanation(
        &report,
        "succeeded, so its replica found x absent, but the session's own earlier write #0 put(x)=a",
    );

    // A value the session read.
    let mut b = Builder::default();
    let a = b.put(0, 0, "x", "a");
    let r = b.get(1, 0, "x", Some("a"));
    let c = created(&mut b, (1, 1), "x", "b");
    b.finals(&ALL, "x", Some("b"));
    expect_only(&b.check(), AnomalyKind::MonotonicReads, &[a, r, c]);

    // A put the session depends on through another key.
    let mut b = Builder::default();
    let a = b.put(0, 0, "x", "a");
    let y = b.put(0, 0, "y", "y1");
    let r = b.get(1, 1, "y", Some("y1"));
    let c = created(&mut b, (1, 2), "x", "b");
    b.finals(&ALL, "x", Some("b"));
    b.finals(&ALL, "y", Some("y1"));
    expect_only(&b.check(), AnomalyKind::PhantomAbsence, &[a, y, r, c]);
}

#[test]
fn legitimate_if_none_match_successes_pass() {
    // After the session's own delete.
    let mut b = Builder::default();
    b.put(0, 0, "x", "a");
    b.del(0, 0, "x");
    created(&mut b, (0, 1), "x", "b");
    b.finals(&ALL, "x", Some("b"));
    expect_clean(&b.check());

    // Two sessions creating the key at two replicas at once: both succeed
    // (no coordination), and one of them is kept everywhere.
    let mut b = Builder::default();
    created(&mut b, (0, 0), "x", "a");
    created(&mut b, (1, 1), "x", "b");
    b.get(0, 0, "x", Some("b"));
    b.finals(&ALL, "x", Some("b"));
    expect_clean(&b.check());

    // A delete concurrent with the session's put may have won.
    let mut b = Builder::default();
    b.put(0, 0, "x", "a");
    b.del(1, 1, "x");
    created(&mut b, (0, 1), "x", "b");
    b.finals(&ALL, "x", Some("b"));
    expect_clean(&b.check());

    // The session's put lost with its replica's state before.
    let mut b = Builder::default();
    let a = b.put(0, 0, "x", "a");
    b.crash(0);
    created(&mut b, (0, 1), "x", "b");
    b.finals(&ALL, "x", Some("b"));
    let report = b.check();
    expect_clean(&report);
    assert!(report.lost_to_crash.is_empty() || report.lost_to_crash == vec![a]);

    // A refused create teaches nothing more than a read of unknown value.
    let mut b = Builder::default();
    b.put(0, 0, "x", "a");
    refused(&mut b, (1, 1), "x", "b");
    b.del(1, 1, "x");
    created(&mut b, (1, 1), "x", "c");
    b.finals(&ALL, "x", Some("c"));
    expect_clean(&b.check());
}

#[test]
fn conditional_histories_keep_their_fields_in_json() {
    let mut b = Builder::default();
    let a = b.put(0, 0, "x", "a");
    b.h.ops[a].etag = Some("\"0a\"".into());
    cput(
        &mut b,
        (0, 0),
        "x",
        "b",
        Condition::IfMatch("\"0a\"".into()),
        OpResult::Unmet,
    );
    refused(&mut b, (1, 1), "x", "c");
    b.finals(&ALL, "x", Some("a"));
    let text = b.h.to_json();
    let back = History::from_json(&text).unwrap();
    assert_eq!(back, b.h);
    assert!(
        text.contains(r#""condition":{"IfMatch":"\"0a\""}"#),
        "{text}"
    );
    assert!(text.contains(r#""result":"Unmet""#), "{text}");
    expect_clean(&b.check());
}
