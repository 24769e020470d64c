//! A simulated store with siblings, as the README describes one: every
//! write carries its client's context (a vector clock) and gets a dot;
//! applying it removes the values whose dots that context covers, and a
//! value some held write has seen is not stored; a read returns the values
//! of the held writes that are not deletes, and teaches the dots of every
//! held write. Replicas apply writes in causal order and serve a session
//! only once they have its context. Its long histories pass; copies with a
//! replaced value put back into a read, a sibling taken out of a read, or
//! a sibling taken out of every final set do not.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::checker::{Clock, Dot};
use super::*;

const TABLE: &str = "sib";

struct Write {
    key: usize,
    value: Option<String>,
    origin: usize,
    seq: u64,
    /// The client's context when it wrote: what it has seen.
    seen: Vec<u64>,
}

#[derive(Clone)]
struct Replica {
    applied: Vec<u64>,
    /// Per key: the writes held.
    held: Vec<Vec<usize>>,
    inbox: Vec<usize>,
}

struct Sim {
    rng: StdRng,
    writes: Vec<Write>,
    replicas: Vec<Replica>,
    b: Builder,
}

fn clock(context: &[u64]) -> Clock {
    context
        .iter()
        .enumerate()
        .filter(|(_, &n)| n > 0)
        .map(|(r, &n)| (format!("r{r}"), n))
        .collect()
}

impl Sim {
    fn new(seed: u64, replicas: usize, keys: usize) -> Sim {
        let mut b = Builder::default();
        b.h.sibling_tables = vec![TABLE.to_string()];
        Sim {
            rng: StdRng::seed_from_u64(seed),
            writes: Vec::new(),
            replicas: vec![
                Replica {
                    applied: vec![0; replicas],
                    held: vec![Vec::new(); keys],
                    inbox: Vec::new(),
                };
                replicas
            ],
            b,
        }
    }

    fn saw(&self, a: usize, w: usize) -> bool {
        let w = &self.writes[w];
        self.writes[a].seen[w.origin] >= w.seq
    }

    fn deliverable(&self, r: usize, w: usize) -> bool {
        let w = &self.writes[w];
        let applied = &self.replicas[r].applied;
        applied[w.origin] + 1 == w.seq && w.seen.iter().zip(applied).all(|(d, a)| d <= a)
    }

    fn apply(&mut self, r: usize, w: usize) {
        let (origin, seq, key) = {
            let w = &self.writes[w];
            (w.origin, w.seq, w.key)
        };
        self.replicas[r].applied[origin] = seq;
        let held = self.replicas[r].held[key].clone();
        if held.iter().any(|&h| self.saw(h, w)) {
            return;
        }
        let kept: Vec<usize> = held.into_iter().filter(|&h| !self.saw(w, h)).collect();
        self.replicas[r].held[key] = kept;
        self.replicas[r].held[key].push(w);
    }

    fn deliver(&mut self, r: usize, all: bool) {
        loop {
            let mut progressed = false;
            let inbox = std::mem::take(&mut self.replicas[r].inbox);
            let mut keep = Vec::new();
            for w in inbox {
                if (all || self.rng.random_bool(0.3)) && self.deliverable(r, w) {
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

    /// The live values at `r` of `key`, and what reading them teaches.
    fn read(&self, r: usize, key: usize, context: &mut [u64]) -> Vec<String> {
        let mut values = Vec::new();
        for &h in &self.replicas[r].held[key] {
            let w = &self.writes[h];
            context[w.origin] = context[w.origin].max(w.seq);
            values.extend(w.value.clone());
        }
        values
    }

    fn run(mut self, ops: usize, sessions: usize, keys: usize) -> History {
        let n = self.replicas.len();
        let mut contexts = vec![vec![0u64; n]; sessions];
        let mut next = 0;
        for _ in 0..ops {
            let r = self.rng.random_range(..n);
            if self.rng.random_bool(0.3) {
                self.deliver(r, false);
            }
            let s = self.rng.random_range(..sessions);
            let key = self.rng.random_range(..keys);
            let name = format!("k{key}");
            // A replica serves a session only once it has its context.
            let ready = contexts[s]
                .iter()
                .zip(&self.replicas[r].applied)
                .all(|(c, a)| c <= a);
            if !ready {
                let op = self.b.get_failed(s, r, &name);
                self.b.h.ops[op].table = Some(TABLE.into());
                continue;
            }
            let sent = clock(&contexts[s]);
            let roll = self.rng.random_range(0..100);
            let live = self.replicas[r].held[key]
                .iter()
                .any(|&h| self.writes[h].value.is_some());
            let op = if roll < 45 {
                let values = self.read(r, key, &mut contexts[s]);
                let result = match values.as_slice() {
                    [] => OpResult::Read(None),
                    [one] => OpResult::Read(Some(one.clone())),
                    _ => OpResult::Siblings(values),
                };
                self.b.op(s, r, &name, OpKind::Get, result)
            } else if roll >= 88 && !live {
                self.read(r, key, &mut contexts[s]);
                self.b.del_absent(s, r, &name)
            } else {
                let value = (roll < 88).then(|| {
                    next += 1;
                    format!("v{next}")
                });
                let seq = self.replicas[r].applied[r] + 1;
                let id = self.writes.len();
                self.writes.push(Write {
                    key,
                    value: value.clone(),
                    origin: r,
                    seq,
                    seen: contexts[s].clone(),
                });
                self.apply(r, id);
                for (i, rep) in self.replicas.iter_mut().enumerate() {
                    if i != r {
                        rep.inbox.push(id);
                    }
                }
                contexts[s][r] = seq;
                let op = match value {
                    Some(v) => self.b.put(s, r, &name, &v),
                    None => self.b.del(s, r, &name),
                };
                self.b.h.ops[op].dot = Some(Dot {
                    id: format!("r{r}"),
                    n: seq,
                });
                op
            };
            self.b.h.ops[op].table = Some(TABLE.into());
            self.b.h.ops[op].sent = Some(sent);
        }
        for r in 0..n {
            self.deliver(r, true);
            assert!(self.replicas[r].inbox.is_empty());
        }
        for r in 0..n {
            for key in 0..keys {
                let mut values = self.read(r, key, &mut vec![0; n]);
                values.sort();
                self.b.h.final_sets.push(FinalSet {
                    replica: r,
                    table: TABLE.into(),
                    key: format!("k{key}"),
                    values,
                    at_us: 1_000_000_000,
                });
            }
        }
        self.b.h
    }
}

/// The values a read op returned.
fn values(op: &Op) -> Vec<String> {
    match &op.result {
        OpResult::Read(v) => v.iter().cloned().collect(),
        OpResult::Siblings(vs) => vs.clone(),
        _ => Vec::new(),
    }
}

fn set_values(op: &mut Op, values: Vec<String>) {
    op.result = match values.as_slice() {
        [] => OpResult::Read(None),
        [one] => OpResult::Read(Some(one.clone())),
        _ => OpResult::Siblings(values),
    };
}

#[test]
fn simulated_sibling_histories_pass() {
    for seed in 0..30 {
        let history = Sim::new(seed, 3, 3).run(400, 4, 3);
        let report = check(&history);
        assert!(report.is_ok(), "seed {seed}:\n{report}");
    }
    let history = Sim::new(99, 4, 6).run(6_000, 8, 6);
    let report = check(&history);
    expect_clean(&report);
    let multi = history
        .ops
        .iter()
        .filter(|o| matches!(o.result, OpResult::Siblings(_)))
        .count();
    assert!(multi > 100, "{multi} reads with siblings:\n{report}");
}

#[test]
fn mutated_simulated_sibling_histories_fail() {
    let history = Sim::new(3, 3, 4).run(3_000, 6, 4);
    assert!(check(&history).is_ok());
    let ops = &history.ops;
    let covers = |reader: &Op, writer: &Op| {
        let (Some(sent), Some(dot)) = (&reader.sent, &writer.dot) else {
            return false;
        };
        dot.covered_by(sent)
    };
    let is_read = |o: &Op| o.kind == OpKind::Get && o.completed_us.is_some();
    let put_value = |o: &Op| match (&o.kind, &o.result) {
        (OpKind::Put { value }, OpResult::Written) => Some(value.clone()),
        _ => None,
    };

    // A read that returns a value a write it had applied replaced.
    let target = ops.iter().filter(|r| is_read(r)).find_map(|r| {
        ops.iter().find_map(|w| {
            let v = put_value(w)?;
            let replaced = ops.iter().any(|a| {
                a.key == w.key && a.dot.is_some() && a.id != w.id && covers(a, w) && covers(r, a)
            });
            (w.key == r.key && replaced && !values(r).contains(&v)).then_some((r.id, w.id, v))
        })
    });
    let (r, w, v) = target.expect("the simulation produces such a read");
    let mut broken = history.clone();
    let mut vs = values(&broken.ops[r]);
    vs.push(v);
    set_values(&mut broken.ops[r], vs);
    expect(&check(&broken), AnomalyKind::ReplacedSibling, &[w, r]);

    // A read that leaves out a value it had applied that no write saw
    // before the read.
    let target = ops.iter().filter(|r| is_read(r)).find_map(|r| {
        values(r).into_iter().find_map(|v| {
            let w = ops.iter().find(|w| put_value(w).as_ref() == Some(&v))?;
            let seen = ops.iter().any(|a| {
                a.id != w.id
                    && a.key == w.key
                    && a.invoked_us < r.completed_us.unwrap()
                    && a.dot.is_some()
                    && covers(a, w)
            });
            (covers(r, w) && !seen).then_some((r.id, w.id, v))
        })
    });
    let (r, w, v) = target.expect("the simulation produces such a read");
    let mut broken = history.clone();
    let vs = values(&broken.ops[r])
        .into_iter()
        .filter(|x| *x != v)
        .collect();
    set_values(&mut broken.ops[r], vs);
    expect(&check(&broken), AnomalyKind::MissingSibling, &[w, r]);

    // A sibling gone from every replica in the end.
    let mut broken = history.clone();
    let fs = broken
        .final_sets
        .iter()
        .find(|f| !f.values.is_empty())
        .expect("a key holds values in the end")
        .clone();
    let gone = fs.values[0].clone();
    for f in &mut broken.final_sets {
        if f.key == fs.key {
            f.values.retain(|v| *v != gone);
        }
    }
    let w = ops
        .iter()
        .position(|o| put_value(o).as_ref() == Some(&gone))
        .unwrap();
    let report = check(&broken);
    expect(&report, AnomalyKind::LostWrite, &[w]);
}
