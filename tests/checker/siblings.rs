//! Histories of a table with siblings: reads return sets, judged by the
//! contexts the clients sent and the dots their writes got. A replaced
//! sibling that comes back, a sibling left out though nothing can have
//! replaced it, final sets that differ between replicas or lack an
//! acknowledged put no write saw, are caught; concurrent values kept as
//! siblings, a write that saw them replacing them, deletes, crashes that
//! lost a write, and writes whose outcome is unknown are not.
//!
//! [`Sib`] plays the clients: each session keeps its context as a clock,
//! a write gets the next dot of its replica (`r<n>`) and adds it to its
//! session's context, a read adds the dots of the values it returned.

use std::collections::HashMap;

use super::checker::{Clock, Dot};
use super::*;

const TABLE: &str = "sib";

/// A history of table [`TABLE`] (with siblings), with the contexts and
/// dots a client would record.
#[derive(Default)]
struct Sib {
    b: Builder,
    contexts: HashMap<usize, Clock>,
    counters: HashMap<usize, u64>,
    dots: HashMap<String, Dot>,
}

impl Sib {
    fn new() -> Sib {
        let mut s = Sib::default();
        s.b.h.sibling_tables = vec![TABLE.to_string()];
        s
    }

    /// Records op `op` of session `session` as made in the table, with the
    /// context the session sent.
    fn in_table(&mut self, session: usize, op: usize) {
        let op = &mut self.b.h.ops[op];
        op.table = Some(TABLE.to_string());
        op.sent = Some(self.contexts.get(&session).cloned().unwrap_or_default());
    }

    /// Session `s` learns `dot`.
    fn learn(&mut self, s: usize, dot: &Dot) {
        let n = self
            .contexts
            .entry(s)
            .or_default()
            .entry(dot.id.clone())
            .or_default();
        *n = (*n).max(dot.n);
    }

    /// An acknowledged write at replica `r`: it gets `r`'s next dot.
    fn write(&mut self, s: usize, r: usize, op: usize) -> usize {
        self.in_table(s, op);
        let count = self.counters.entry(r).or_default();
        *count += 1;
        let dot = Dot {
            id: format!("r{r}"),
            n: *count,
        };
        self.learn(s, &dot);
        if let OpKind::Put { value } = &self.b.h.ops[op].kind {
            self.dots.insert(value.clone(), dot.clone());
        }
        self.b.h.ops[op].dot = Some(dot);
        op
    }

    fn put(&mut self, s: usize, r: usize, key: &str, value: &str) -> usize {
        let op = self.b.put(s, r, key, value);
        self.write(s, r, op)
    }

    fn del(&mut self, s: usize, r: usize, key: &str) -> usize {
        let op = self.b.del(s, r, key);
        self.write(s, r, op)
    }

    /// A put whose answer never came: its context is known, not its dot.
    fn put_failed(&mut self, s: usize, r: usize, key: &str, value: &str) -> usize {
        let op = self.b.put_failed(s, r, key, value);
        self.in_table(s, op);
        op
    }

    /// A read that returned `values` (200 with one, 300 with more, 404
    /// with none); the session learns their dots.
    fn get(&mut self, s: usize, r: usize, key: &str, values: &[&str]) -> usize {
        let result = match values {
            [] => OpResult::Read(None),
            [one] => OpResult::Read(Some(one.to_string())),
            many => OpResult::Siblings(many.iter().map(|v| v.to_string()).collect()),
        };
        let op = self.b.op(s, r, key, OpKind::Get, result);
        self.in_table(s, op);
        for v in values {
            if let Some(dot) = self.dots.get(*v).cloned() {
                self.learn(s, &dot);
            }
        }
        op
    }

    /// Final reads of `key` at `replicas`, each answering `values`.
    fn finals(&mut self, replicas: &[usize], key: &str, values: &[&str]) {
        for &replica in replicas {
            let mut values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
            values.sort();
            self.b.h.final_sets.push(FinalSet {
                replica,
                table: TABLE.to_string(),
                key: key.to_string(),
                values,
                at_us: 1_000_000 + self.b.t,
            });
        }
    }

    fn check(&self) -> Report {
        self.b.check()
    }
}

#[test]
fn concurrent_puts_stay_as_siblings_until_a_write_that_saw_them() {
    let mut h = Sib::new();
    h.put(0, 0, "k", "a");
    h.put(1, 1, "k", "b"); // blind: concurrent with a
    h.get(2, 2, "k", &["a"]); // b not there yet
    h.get(2, 2, "k", &["a", "b"]);
    h.get(3, 0, "k", &["b", "a"]);
    h.put(2, 2, "k", "c"); // saw both: replaces both
    h.get(2, 1, "k", &["c"]);
    h.get(0, 1, "k", &["c"]);
    h.put(1, 1, "k", "d"); // saw b only (its own), not c: a sibling of c
    h.get(1, 0, "k", &["c", "d"]);
    h.finals(&ALL, "k", &["c", "d"]);
    expect_clean(&h.check());
}

#[test]
fn a_replaced_sibling_that_comes_back_is_caught() {
    // The reader's own write saw b, and the replica that served the read
    // had applied it: b is gone there.
    let mut h = Sib::new();
    h.put(0, 0, "k", "a");
    let b = h.put(1, 1, "k", "b");
    h.get(2, 1, "k", &["a", "b"]);
    let c = h.put(2, 1, "k", "c");
    let r = h.get(2, 0, "k", &["b", "c"]);
    h.finals(&ALL, "k", &["c"]);
    let report = h.check();
    expect_only(&report, AnomalyKind::ReplacedSibling, &[b, c, r]);
    expect_explanation(
        &report,
        "whose context had seen it, was applied at the replica",
    );

    // Another session that read c has c applied too, wherever it reads.
    let mut h = Sib::new();
    h.put(0, 0, "k", "a");
    h.get(1, 0, "k", &["a"]);
    let c = h.put(1, 0, "k", "c");
    h.get(2, 0, "k", &["c"]);
    let r = h.get(2, 2, "k", &["a", "c"]);
    h.finals(&ALL, "k", &["c"]);
    expect_only(&h.check(), AnomalyKind::ReplacedSibling, &[0, c, r]);

    // A replica that has not applied c may still show a: no context names c.
    let mut h = Sib::new();
    h.put(0, 0, "k", "a");
    h.get(1, 0, "k", &["a"]);
    h.put(1, 0, "k", "c");
    h.get(2, 2, "k", &["a"]);
    h.finals(&ALL, "k", &["c"]);
    expect_clean(&h.check());

    // Unless c was lost with its replica's state, in which case a may be back.
    let mut h = Sib::new();
    h.put(0, 1, "k", "a");
    h.get(1, 0, "k", &["a"]);
    h.put(1, 0, "k", "c");
    h.b.crash(0);
    h.get(1, 2, "k", &["a"]);
    h.finals(&ALL, "k", &["a"]);
    let report = h.check();
    expect_clean(&report);
    assert_eq!(report.lost_to_crash, vec![2], "{report}");
}

#[test]
fn a_delete_replaces_what_it_saw() {
    let mut h = Sib::new();
    h.put(0, 0, "k", "a");
    h.del(0, 0, "k");
    h.get(0, 1, "k", &[]);
    h.put(1, 2, "k", "b"); // blind: survives the delete
    h.finals(&ALL, "k", &["b"]);
    expect_clean(&h.check());

    let mut h = Sib::new();
    let a = h.put(0, 0, "k", "a");
    let d = h.del(0, 0, "k");
    let r = h.get(0, 1, "k", &["a"]);
    h.finals(&ALL, "k", &[]);
    expect_only(&h.check(), AnomalyKind::ReplacedSibling, &[a, d, r]);
}

#[test]
fn a_sibling_left_out_is_caught_unless_a_write_may_have_replaced_it() {
    // The session's own put, then nothing at a replica that must have it.
    let mut h = Sib::new();
    let a = h.put(0, 0, "k", "a");
    let r = h.get(0, 1, "k", &[]);
    h.finals(&ALL, "k", &["a"]);
    let report = h.check();
    expect_only(&report, AnomalyKind::MissingSibling, &[a, r]);
    expect_explanation(&report, "no write that may have seen it");

    // A put that did not see a cannot have replaced it.
    let history = |saw: bool| {
        let mut h = Sib::new();
        let a = h.put(0, 0, "k", "a");
        if saw {
            h.get(1, 0, "k", &["a"]);
        }
        h.put(1, 1, "k", "b");
        let r = h.get(0, 1, "k", &["b"]);
        h.finals(&ALL, "k", if saw { &["b"] } else { &["a", "b"] });
        (h, a, r)
    };
    let (h, a, r) = history(false);
    expect_only(&h.check(), AnomalyKind::MissingSibling, &[a, r]);
    let (h, _, _) = history(true);
    expect_clean(&h.check());

    // A value the session read, left out later.
    let mut h = Sib::new();
    let a = h.put(0, 0, "k", "a");
    let seen = h.get(1, 0, "k", &["a"]);
    let r = h.get(1, 2, "k", &[]);
    h.finals(&ALL, "k", &["a"]);
    expect_only(&h.check(), AnomalyKind::MissingSibling, &[a, seen, r]);
}

#[test]
fn a_missing_sibling_is_excused_by_a_crash_or_a_write_that_may_have_happened() {
    // a's replica lost its state before the read.
    let mut h = Sib::new();
    let a = h.put(0, 0, "k", "a");
    h.b.crash(0);
    h.get(0, 1, "k", &[]);
    h.finals(&ALL, "k", &[]);
    let report = h.check();
    expect_clean(&report);
    assert_eq!(report.lost_to_crash, vec![a], "{report}");

    // A put that saw a and whose answer never came may have replaced it.
    let mut h = Sib::new();
    h.put(0, 0, "k", "a");
    h.get(1, 0, "k", &["a"]);
    h.put_failed(1, 1, "k", "b");
    h.get(0, 1, "k", &[]);
    h.finals(&ALL, "k", &[]);
    expect_clean(&h.check());

    // Without contexts and dots, any write sent after a may have seen it.
    let mut h = Sib::new();
    h.put(0, 0, "k", "a");
    h.put(1, 1, "k", "b");
    h.get(0, 1, "k", &["b"]);
    h.finals(&ALL, "k", &["b"]);
    for op in &mut h.b.h.ops {
        op.sent = None;
        op.dot = None;
    }
    expect_clean(&h.check());
}

#[test]
fn the_final_sets_must_agree_and_hold_every_sibling_that_must_survive() {
    // Replicas that disagree.
    let mut h = Sib::new();
    let a = h.put(0, 0, "k", "a");
    let b = h.put(1, 1, "k", "b");
    h.finals(&[0, 1], "k", &["a", "b"]);
    h.finals(&[2], "k", &["a"]);
    let report = h.check();
    expect(&report, AnomalyKind::Divergence, &[a, b]);
    expect(&report, AnomalyKind::LostWrite, &[b]);
    assert!(!report.convergence_ok, "{report}");
    assert!(
        report.of_kind(AnomalyKind::Divergence)[0]
            .explanation
            .contains("replicas [2] have {\"a\"}"),
        "{report}"
    );

    // The same set everywhere, but a sibling no write saw is gone.
    let mut h = Sib::new();
    h.put(0, 0, "k", "a");
    let b = h.put(1, 1, "k", "b");
    h.finals(&ALL, "k", &["a"]);
    let report = h.check();
    expect_only(&report, AnomalyKind::LostWrite, &[b]);
    expect_explanation(&report, "missing from the final siblings of sib/k");

    // Lost with its replica's state: excused, and listed.
    let mut h = Sib::new();
    h.put(0, 0, "k", "a");
    let b = h.put(1, 1, "k", "b");
    h.b.crash(1);
    h.finals(&ALL, "k", &["a"]);
    let report = h.check();
    expect_clean(&report);
    assert_eq!(report.lost_to_crash, vec![b], "{report}");

    // A replaced value kept in the end.
    let mut h = Sib::new();
    let a = h.put(0, 0, "k", "a");
    h.get(1, 0, "k", &["a"]);
    let c = h.put(1, 1, "k", "c");
    h.finals(&ALL, "k", &["a", "c"]);
    let report = h.check();
    expect_only(&report, AnomalyKind::ReplacedSibling, &[a, c]);
    assert!(!report.convergence_ok, "{report}");

    // Replaced by a write that was replaced in turn: the last write did not
    // see the first value, but the first value's remover did (the history
    // of the fault run that found a replica bringing such a value back).
    let mut h = Sib::new();
    let w = h.put(0, 2, "k", "w");
    let d = h.del(0, 0, "k"); // saw w
    h.put(0, 1, "k", "x"); // saw w and d
    h.get(1, 1, "k", &["x"]);
    h.contexts.get_mut(&1).unwrap().insert("r0".into(), 1); // learnt d too
    h.put(1, 1, "k", "y"); // saw x and d, not w
    h.finals(&ALL, "k", &["w", "y"]);
    let report = h.check();
    expect_only(&report, AnomalyKind::ReplacedSibling, &[w, d]);
    assert!(!report.convergence_ok, "{report}");

    // A value no put wrote.
    let mut h = Sib::new();
    h.put(0, 0, "k", "a");
    h.finals(&ALL, "k", &["a", "zz"]);
    expect(&h.check(), AnomalyKind::ValueNeverWritten, &[]);
}

#[test]
fn sibling_reads_of_values_never_written_are_caught() {
    let mut h = Sib::new();
    h.put(0, 0, "k", "a");
    let r = h.get(1, 0, "k", &["a", "zz"]);
    h.finals(&ALL, "k", &["a"]);
    expect_only(&h.check(), AnomalyKind::ValueNeverWritten, &[r]);

    // A value written to another key of the table, or to the same key of
    // the default table.
    let mut h = Sib::new();
    let w = h.put(0, 0, "j", "a");
    let d = h.b.put(1, 0, "k", "b");
    let r = h.get(1, 0, "k", &["a", "b"]);
    h.finals(&ALL, "j", &["a"]);
    h.b.finals(&ALL, "k", Some("b"));
    let report = h.check();
    expect(&report, AnomalyKind::ValueNeverWritten, &[w, r]);
    expect(&report, AnomalyKind::ValueNeverWritten, &[d, r]);
}

#[test]
fn sibling_histories_keep_their_fields_in_json() {
    let mut h = Sib::new();
    h.put(0, 0, "k", "a");
    h.put(1, 1, "k", "b");
    h.get(2, 2, "k", &["a", "b"]);
    h.finals(&ALL, "k", &["a", "b"]);
    let text = h.b.h.to_json();
    let back = History::from_json(&text).unwrap();
    assert_eq!(back, h.b.h);
    assert_eq!(
        back.ops[0].dot,
        Some(Dot {
            id: "r0".into(),
            n: 1
        })
    );
    assert!(text.contains(r#""Siblings":["a","b"]"#), "{text}");
    let report = h.check();
    expect_clean(&report);
    let printed = report.to_string();
    assert!(printed.contains("anomalies: none"), "{printed}");
    let mut h2 = Sib::new();
    h2.put(0, 0, "k", "a");
    h2.get(0, 1, "k", &[]);
    h2.finals(&ALL, "k", &["a"]);
    let printed = h2.check().to_string();
    assert!(
        printed.contains("#1 s0 r1 get(sib/k)=<absent>"),
        "{printed}"
    );
}

#[test]
fn a_sibling_written_again_by_a_new_incarnation_may_be_replaced_by_a_write_that_saw_it() {
    // r1 wrote b, then set its state aside on a restart and came back as
    // r1b, which wrote b again as its own. Session 2 learned a later write
    // of r1b (of another key) and then wrote k: it may have seen the copy.
    let history = |saw_the_new_incarnation: bool| {
        let mut h = Sib::new();
        h.put(0, 0, "k", "a");
        let b = h.put(1, 1, "k", "b");
        h.b.restart_set_aside(1, "r1", "r1b");
        if saw_the_new_incarnation {
            h.learn(
                2,
                &Dot {
                    id: "r1b".into(),
                    n: 7,
                },
            );
        }
        h.put(2, 0, "k", "c");
        h.finals(&ALL, "k", &["a", "c"]);
        (h.check(), b)
    };
    let (report, _) = history(true);
    expect_clean(&report);
    // A write that cannot have seen it leaves b missing: still caught.
    let (report, b) = history(false);
    expect_only(&report, AnomalyKind::LostWrite, &[b]);
}

#[test]
fn a_sibling_a_session_read_may_be_replaced_by_its_next_write_whatever_its_context_names() {
    // r1 wrote b; then r1's incarnation retired, so contexts no longer
    // name it (or the value a session read was a copy of b that a replica
    // wrote again under a dot of its own). Session 2 read a and b and
    // then wrote c: c replaced both.
    let history = |read_first: bool| {
        let mut h = Sib::new();
        let a = h.put(0, 0, "k", "a");
        let b = h.put(1, 1, "k", "b");
        if read_first {
            h.get(2, 2, "k", &["a", "b"]);
        } else {
            let dot = h.dots["a"].clone();
            h.learn(2, &dot);
        }
        for context in h.contexts.values_mut() {
            context.remove("r1");
        }
        h.put(2, 0, "k", "c");
        h.finals(&ALL, "k", &["c"]);
        (h.check(), a, b)
    };
    let (report, _, _) = history(true);
    expect_clean(&report);
    // A session that saw a alone leaves b missing: still caught.
    let (report, _, b) = history(false);
    expect_only(&report, AnomalyKind::LostWrite, &[b]);
}
