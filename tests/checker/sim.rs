//! A simulated causal+ store: its long histories pass, and mutated copies
//! (a stale read, a replica that disagrees, a replica that forgets a
//! delete, a write forgotten across a crash of every replica that kept its
//! disk) are caught.

use std::collections::HashMap;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::*;

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
    rng: StdRng,
    writes: Vec<Write>,
    replicas: Vec<SimReplica>,
    builder: Builder,
}

impl Sim {
    fn new(seed: u64, replicas: usize) -> Self {
        Sim {
            rng: StdRng::seed_from_u64(seed),
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
                if (all || self.rng.random_bool(0.5)) && self.deliverable(r, w) {
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
            let s = self.rng.random_range(..sessions);
            if self.rng.random_bool(0.2) {
                home[s] = self.rng.random_range(..n);
            }
            let r = home[s];
            // Background replication.
            let other = self.rng.random_range(..n);
            let all = self.rng.random_bool(0.05);
            self.deliver(other, all);
            // Serve only once the session's context is applied here.
            while !contexts[s]
                .iter()
                .zip(&self.replicas[r].applied)
                .all(|(c, a)| c <= a)
            {
                self.deliver(r, true);
            }
            let key = if self.rng.random_bool(0.7) {
                self.rng.random_range(..4usize)
            } else {
                4 + self.rng.random_range(..keys - 4)
            };
            let name = format!("k{key}");
            let roll = self.rng.random_range(0..100);
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
                    if self.rng.random_bool(0.5) {
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

#[test]
fn a_write_lost_when_every_replica_crashed_with_its_disk_is_caught() {
    let history = Sim::new(13, 3).run(3_000, 6, 8);
    let crash_all = |h: &mut History, at_us: u64, kept_state: bool| {
        for replica in 0..3 {
            h.crashes.push(Crash {
                replica,
                at_us,
                kept_state,
            });
        }
    };
    // Every replica killed at once halfway and started again on its disk:
    // the simulated store loses nothing, so the history stays clean.
    let mut kept = history.clone();
    let mid = kept.ops[kept.ops.len() / 2].invoked_us;
    crash_all(&mut kept, mid, true);
    expect_clean(&check(&kept));

    // A key whose final value a session wrote after an older value of its
    // own: the store forgets the newer put and ends with the older value.
    let mut own: HashMap<(usize, String), String> = HashMap::new();
    let mut target = None;
    for op in &history.ops {
        let (OpKind::Put { value }, OpResult::Written) = (&op.kind, &op.result) else {
            continue;
        };
        let older = own.insert((op.session, op.key.clone()), value.clone());
        let final_here = history
            .final_reads
            .iter()
            .filter(|f| f.key == op.key)
            .all(|f| f.value.as_ref() == Some(value));
        if let (Some(older), true) = (older, final_here) {
            target = Some((op.id, op.key.clone(), older));
        }
    }
    let (lost, key, older) = target.expect("the simulation produces such a key");
    let mut broken = history.clone();
    for f in broken.final_reads.iter_mut().filter(|f| f.key == key) {
        f.value = Some(older.clone());
    }
    let end = broken
        .ops
        .iter()
        .filter_map(|o| o.completed_us)
        .max()
        .unwrap()
        + 1;

    // The disks were kept: the forgotten put is a lost write.
    let mut with_disks = broken.clone();
    crash_all(&mut with_disks, end, true);
    let report = check(&with_disks);
    expect(&report, AnomalyKind::LostWrite, &[lost]);
    assert!(report.lost_to_crash.is_empty(), "{report}");

    // Every replica lost its state: anything may be gone, nothing is
    // flagged, and the put is listed as lost to the crash.
    let mut without = broken.clone();
    crash_all(&mut without, end, false);
    let report = check(&without);
    assert_eq!(report.count(AnomalyKind::LostWrite), 0, "{report}");
    assert!(report.lost_to_crash.contains(&lost), "{report}");
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
    let mut meta = StdRng::seed_from_u64(99);
    for seed in 0..3_000 {
        let replicas = 2 + meta.random_range(..4usize);
        let sessions = 1 + meta.random_range(..30usize);
        let keys = 5 + meta.random_range(..20usize);
        let ops = 200 + meta.random_range(..3_000usize);
        let history = Sim::new(seed, replicas).run(ops, sessions, keys);
        let report = check(&history);
        assert!(
            report.is_ok(),
            "seed {seed} ({replicas} replicas, {sessions} sessions, {keys} keys):\n{report}"
        );
    }
}
