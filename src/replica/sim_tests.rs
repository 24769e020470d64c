//! The simulated cluster's scenarios: the protocol under drops,
//! duplicates, reordering, partitions, crashes and restarts, and the long
//! life of a store (replicas gone for good, evicted and re-added, long
//! partitions, many restarts).

use std::collections::BTreeSet;
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::sim::{key, Faults, Op, Session, Sim, CALM, LOSSY, ROUGH};
use crate::store::Key;

/// Runs `test` for `n` seeds; a failure names its seed. `SIM_SEED=<seed>`
/// replays one, `SIM_SEEDS=<n>` runs more.
fn for_seeds(n: u64, test: impl Fn(u64)) {
    let var = |name| std::env::var(name).map(|v| v.parse::<u64>().expect("a number"));
    let seeds: Vec<u64> = match var("SIM_SEED") {
        Ok(seed) => vec![seed],
        Err(_) => (0..var("SIM_SEEDS").unwrap_or(n))
            .map(|s| s * 7919 + 17)
            .collect(),
    };
    super::sim::trace();
    for seed in seeds {
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| test(seed))) {
            let text = panic.downcast_ref::<String>().map(String::as_str);
            let text = text.or(panic.downcast_ref::<&str>().copied());
            panic!("seed {seed}: {}", text.unwrap_or("panicked"));
        }
    }
}

#[test]
fn writes_reach_every_replica_despite_reordering_and_duplicates() {
    for_seeds(20, |seed| {
        let mut sim = Sim::new(seed, 3 + seed as usize % 3, ROUGH).with_sessions(4, 80);
        sim.run(5_000);
        sim.settle(Faults(0, 150, 0, 200));
        assert!(sim.duplicates > 0 && sim.log.len() > 20, "proved nothing");
    });
}

#[test]
fn write_waits_in_buffer_until_dependency_arrives() {
    for_seeds(5, |seed| {
        let mut sim = Sim::new(seed, 3, CALM).with_sessions(1, 0);
        sim.settle(CALM);
        let (x, y) = (key("x"), key("y"));
        let x_value = sim.client(0, 0, &Op::Put(x.clone())).expect("no context");
        sim.deliver_queue(0, 1);
        assert_eq!(sim.client(0, 1, &Op::Get(x)), Ok(x_value));
        let y_value = sim.client(0, 1, &Op::Put(y.clone())).expect("satisfied");
        let dots = [&sim.log[0], &sim.log[1]].map(|w| w.version.dot.clone());
        // y reaches replica 2 before the x it depends on: held, not applied.
        sim.deliver_queue(1, 2);
        let r = sim.replica(2);
        assert!(!r.known().contains(&dots[1]) && r.store().get(&y).is_none());
        assert_eq!(r.stats().buffered, 1);
        assert!(sim.client(0, 2, &Op::Get(y.clone())).is_err());
        // x arrives: both are applied, in order.
        sim.deliver_queue(0, 2);
        let r = sim.replica(2);
        assert!(dots.iter().all(|d| r.known().contains(d)) && r.stats().buffered == 0);
        assert_eq!(sim.client(0, 2, &Op::Get(y)), Ok(y_value));
        sim.settle(LOSSY);
    });
}

#[test]
fn partitioned_replicas_converge_after_heal() {
    for_seeds(20, |seed| {
        let mut sim = Sim::new(seed, 5, LOSSY).with_sessions(4, 100);
        sim.run(1_000);
        sim.group = vec![0, 0, 1, 1, 1];
        sim.rng.shuffle(&mut sim.group);
        sim.run(5_000);
        for side in [0, 1] {
            let members: Vec<usize> = (0..5).filter(|&i| sim.group[i] == side).collect();
            sim.assert_views(&members, &members);
        }
        sim.settle(LOSSY);
    });
}

#[test]
fn crashed_replica_restarts_and_copies_state() {
    for_seeds(20, |seed| {
        let mut sim = Sim::new(seed, 4, LOSSY).with_sessions(3, 100);
        sim.run(3_000);
        let victim = sim.rng.below(4) as usize;
        let old = sim.replica(victim).me().id.clone();
        sim.crash(victim);
        sim.run(4_000);
        let others: Vec<usize> = (0..4).filter(|&i| i != victim).collect();
        sim.assert_views(&others, &others);
        sim.boot(victim);
        sim.run(2_000);
        assert_ne!(sim.replica(victim).me().id, old, "identity reused");
        sim.settle(LOSSY);
        let deletes = sim.log.iter().filter(|w| w.version.value.is_none());
        let deleted: BTreeSet<&Key> = deletes.map(|w| &w.key).collect();
        for w in &sim.log {
            if !sim.lost.contains(&w.version.dot.replica) && !deleted.contains(&w.key) {
                let held = sim.replica(victim).store().value(&w.key);
                assert!(held.is_some(), "the restarted replica lacks {w:?}");
            }
        }
    });
}

#[test]
fn silent_replica_leaves_views_and_returns() {
    for_seeds(20, |seed| {
        let mut sim = Sim::new(seed, 4, LOSSY).with_sessions(2, 50);
        sim.run(1_000);
        let silent = sim.rng.below(4) as usize;
        let others: Vec<usize> = (0..4).filter(|&i| i != silent).collect();
        // Odd seeds crash it, even ones cut it off.
        let crashed = seed % 2 == 1;
        match crashed {
            true => sim.crash(silent),
            false => sim.group[silent] = 1,
        }
        sim.run(4_000);
        sim.assert_views(&others, &others);
        match crashed {
            true => sim.boot(silent),
            false => sim.assert_views(&[silent], &[silent]),
        }
        sim.group[silent] = 0;
        sim.run(3_000);
        sim.assert_views(&[0, 1, 2, 3], &[0, 1, 2, 3]);
        sim.settle(LOSSY);
    });
}

#[test]
fn concurrent_writes_converge_on_every_replica() {
    for_seeds(25, |seed| {
        let n = 3 + seed as usize % 3;
        let mut sim = Sim::new(seed, n, CALM);
        sim.settle(CALM);
        sim.faults = Faults(50, 100, 100, 100);
        for round in 0..5 {
            // Every replica takes a write to the same key at the same
            // instant, from a client that knows nothing of the others.
            for i in 0..n {
                sim.sessions.push(Session::default());
                let (s, put) = (
                    sim.sessions.len() - 1,
                    Op::Put(key(&format!("c{}", (round + i) % 2))),
                );
                sim.client(s, i, &put).expect("no context");
            }
            sim.run(300);
        }
        sim.settle(LOSSY);
        for target in [key("c0"), key("c1")] {
            let writes = sim.log.iter().filter(|w| w.key == target);
            let winner = writes.map(|w| &w.version);
            let winner = winner.reduce(|a, b| if b.supersedes(a) { b } else { a });
            for i in 0..n {
                assert_eq!(sim.replica(i).store().get(&target).as_ref(), winner);
            }
        }
    });
}

#[test]
fn random_faults_never_break_causality_or_convergence() {
    let crashes = std::cell::Cell::new(0);
    for_seeds(25, |seed| {
        let mut sim = Sim::new(seed, 3 + seed as usize % 3, LOSSY).with_sessions(5, 120);
        sim.run_chaos(15_000);
        sim.settle(CALM);
        crashes.set(crashes.get() + sim.lost.len());
        // The settled cluster serves every session again.
        sim.run(1_000);
        sim.settle(CALM);
    });
    assert!(crashes.get() > 0, "no crash was simulated");
}

#[test]
fn view_change_via_api_reaches_all_members() {
    for_seeds(20, |seed| {
        let mut sim = Sim::new(seed, 4, LOSSY).with_sessions(2, 50);
        sim.settle(LOSSY);
        let removed = sim.addrs[3].clone();
        assert!(sim.replica_mut(0).view_remove(removed.clone()));
        assert!(!sim.replica_mut(0).view_remove(removed.clone()));
        sim.flush(0);
        sim.run(5_000);
        sim.assert_views(&[0, 1, 2], &[0, 1, 2]);
        // A replica that does not run yet is added at 1, then starts.
        let e = sim.add_address();
        let (added, now) = (sim.addrs[e].clone(), sim.now);
        assert!(sim.replica_mut(1).view_add(added.clone(), now));
        assert!(!sim.replica_mut(1).view_add(added, now));
        sim.flush(1);
        sim.boot(e);
        // The removed replica is added back at 2: only the relayed change
        // readmits it at 0 and 1.
        let now = sim.now;
        assert!(sim.replica_mut(2).view_add(removed, now));
        sim.flush(2);
        sim.run(6_000);
        sim.assert_views(&[0, 1, 2, 3, e], &[0, 1, 2, 3, e]);
        sim.settle(LOSSY);
    });
}

// ----- the long life of a store ---------------------------------------

/// C starts alone and an operator adds it at B; it is in no one's `VIEW`.
/// Cut off past the suspect timeout, it and the others forget each other:
/// the operator's addition keeps it a seed, so they meet again.
#[test]
fn a_replica_only_an_operator_added_is_found_again_once_everyone_forgot_it() {
    for_seeds(5, |seed| {
        let mut sim = Sim::new(seed, 2, CALM);
        sim.settle(CALM);
        let c = sim.add_address();
        sim.boot_seeded(c, &[c]);
        sim.run(1_000);
        let (added, now) = (sim.addrs[c].clone(), sim.now);
        assert!(sim.replica_mut(1).view_add(added.clone(), now));
        sim.flush(1);
        sim.run(3_000);
        sim.assert_views(&[0, 1, c], &[0, 1, c]);
        sim.group = vec![0, 0, 1];
        sim.run(2 * sim.timing.suspect_timeout);
        assert!(!sim.replica(0).view().knows(&added), "A forgot C");
        assert!(sim.replica(c).view().len() == 1, "C forgot everyone");
        sim.group = vec![0; 3];
        sim.run(3 * sim.timing.seed_interval);
        sim.assert_views(&[0, 1, c], &[0, 1, c]);
        sim.settle(CALM);
    });
}

/// Long enough for a silent replica to be forgotten and the tombstones it
/// held back to be collected (suspect timeout, then a few gc rounds).
fn forgetting_time(sim: &Sim) -> u64 {
    sim.timing.failure_timeout + sim.timing.suspect_timeout + 4 * sim.timing.gc_interval
}

#[test]
fn a_new_store_starts_at_once_when_every_replica_starts_together() {
    for_seeds(10, |seed| {
        let mut sim = Sim::new_store(seed, 3 + seed as usize % 3, CALM);
        sim.run(1_000);
        for i in sim.live() {
            assert!(sim.replica(i).is_ready(), "{} waited", sim.addrs[i]);
        }
        sim.settle(CALM);
    });
}

#[test]
fn a_replica_gone_for_good_is_forgotten_and_tombstones_are_collected() {
    for_seeds(10, |seed| {
        let mut sim = Sim::new(seed, 3, LOSSY).with_sessions(3, 80);
        sim.run(2_000);
        let gone = sim.rng.below(3) as usize;
        let old = sim.replica(gone).me().id.clone();
        sim.crash(gone);
        sim.gone.insert(gone);
        sim.run(2_000);
        sim.quiet();
        let survivors: Vec<usize> = (0..3).filter(|&i| i != gone).collect();
        // Deletes made after it left.
        let s = sim.session();
        for n in 0..5 {
            let k = key(&format!("late{n}"));
            sim.until_served(s, survivors[0], Op::Put(k.clone()));
            sim.until_served(s, survivors[1], Op::Delete(k));
        }
        sim.faults = CALM;
        let time = forgetting_time(&sim);
        sim.run(time);
        for &i in &survivors {
            let r = sim.replica(i);
            assert_eq!(
                r.store().tombstones(),
                0,
                "tombstones kept at {}",
                sim.addrs[i]
            );
            assert!(
                r.suspects().is_empty(),
                "{} still suspected",
                sim.addrs[gone]
            );
            assert!(r.known().is_retired(&old) || r.known().count(&old) == 0);
            assert_eq!(r.applied().get(&old), 0, "{old} still in the clock");
        }
        sim.settle(CALM);
    });
}

#[test]
fn many_restarts_retire_incarnations_and_keep_clocks_and_contexts_small() {
    for_seeds(4, |seed| {
        let n = 3;
        let mut sim = Sim::new(seed, n, CALM).with_sessions(3, 100);
        sim.run(1_000);
        for round in 0..30 {
            let victim = round % n;
            sim.crash(victim);
            sim.run(200);
            sim.boot(victim);
            sim.run(1_500);
        }
        sim.settle(CALM);
        sim.run(3_000);
        sim.settle(CALM);
        let bound = n + 2;
        let writers: BTreeSet<_> = sim.log.iter().map(|w| &w.version.dot.replica).collect();
        assert!(
            writers.len() > 2 * bound,
            "proved nothing: {} writers",
            writers.len()
        );
        for i in 0..n {
            let clock = sim.replica(i).applied().len();
            assert!(
                clock <= bound,
                "{} holds a clock of {clock} entries",
                sim.addrs[i]
            );
        }
        // A session that reads every key holds a small context.
        let keys: BTreeSet<Key> = sim.log.iter().map(|w| w.key.clone()).collect();
        let s = sim.session();
        for (n, k) in keys.into_iter().enumerate() {
            sim.until_served(s, n % 3, Op::Get(k));
        }
        let context = sim.sessions[s].ctx.as_object().map_or(0, |m| m.len());
        assert!(
            context <= bound,
            "a session's context holds {context} entries"
        );
    });
}

#[test]
fn an_evicted_replica_added_back_brings_back_nothing_deleted() {
    for_seeds(10, |seed| {
        let mut sim = Sim::new(seed, 3, CALM);
        sim.settle(CALM);
        let s = sim.session();
        let keys: Vec<Key> = (0..6).map(|n| key(&format!("e{n}"))).collect();
        for k in &keys {
            sim.until_served(s, 0, Op::Put(k.clone()));
        }
        sim.settle(CALM);
        // Replica 2 is cut off and an operator evicts it; deletes follow
        // and their tombstones are forgotten while it is away.
        sim.group[2] = 1;
        let evicted = sim.addrs[2].clone();
        assert!(sim.replica_mut(0).view_remove(evicted.clone()));
        sim.flush(0);
        for k in &keys {
            sim.until_served(s, 0, Op::Delete(k.clone()));
        }
        let time = forgetting_time(&sim);
        sim.run(time);
        for i in [0, 1] {
            assert_eq!(sim.replica(i).store().tombstones(), 0);
        }
        assert!(keys
            .iter()
            .all(|k| sim.replica(2).store().value(k).is_some()));
        // It is plugged in again and added back.
        sim.group[2] = 0;
        let now = sim.now;
        assert!(sim.replica_mut(1).view_add(evicted, now));
        sim.flush(1);
        sim.settle(LOSSY);
        for i in 0..3 {
            for k in &keys {
                assert_eq!(
                    sim.replica(i).store().get(k),
                    None,
                    "{k:?} back at {}",
                    sim.addrs[i]
                );
            }
        }
    });
}

#[test]
fn a_long_partition_heals_without_bringing_back_deleted_values() {
    for_seeds(10, |seed| {
        let mut sim = Sim::new(seed, 3, CALM);
        sim.settle(CALM);
        let (left, right) = (sim.session(), sim.session());
        let mine: Vec<Key> = (0..4).map(|n| key(&format!("a{n}"))).collect();
        let theirs: Vec<Key> = (0..4).map(|n| key(&format!("b{n}"))).collect();
        let born: Vec<Key> = (0..4).map(|n| key(&format!("c{n}"))).collect();
        for k in mine.iter().chain(&theirs) {
            sim.until_served(left, 0, Op::Put(k.clone()));
        }
        sim.settle(CALM);
        // {0, 1} and {2} forget each other; each side deletes, and the
        // lone side writes keys of its own and deletes some of them.
        sim.group = vec![0, 0, 1];
        for k in &mine {
            sim.until_served(left, 0, Op::Delete(k.clone()));
        }
        for k in theirs.iter() {
            sim.until_served(right, 2, Op::Delete(k.clone()));
        }
        for k in &born {
            sim.until_served(right, 2, Op::Put(k.clone()));
        }
        sim.until_served(right, 2, Op::Delete(born[0].clone()));
        let time = forgetting_time(&sim);
        sim.run(time);
        for i in 0..3 {
            let r = sim.replica(i);
            assert_eq!(
                r.store().tombstones(),
                0,
                "tombstones kept at {}",
                sim.addrs[i]
            );
            assert!(r.suspects().is_empty(), "{} did not forget", sim.addrs[i]);
        }
        sim.group = vec![0, 0, 0];
        sim.settle(LOSSY);
        for i in 0..3 {
            let store = sim.replica(i).store();
            for k in mine.iter().chain(&theirs).chain(&born[..1]) {
                assert_eq!(store.get(k), None, "{k:?} back at {}", sim.addrs[i]);
            }
            for k in &born[1..] {
                assert!(store.value(k).is_some(), "{k:?} lost at {}", sim.addrs[i]);
            }
        }
    });
}

#[test]
fn a_restart_under_a_taken_identity_draws_another() {
    for_seeds(5, |seed| {
        let mut sim = Sim::new(seed, 3, CALM).with_sessions(2, 100);
        sim.run(2_000);
        let old = sim.replica(2).me().id.clone();
        let incarnation = old.as_str().rsplit_once('#').unwrap().1.to_string();
        sim.crash(2);
        sim.run(500);
        // The same identity, drawn again by a new process.
        sim.boot_as(2, &incarnation);
        sim.run(3_000);
        let now = sim.replica(2).me().id.clone();
        let wrote = sim.replica(0).known().count(&old) > 0;
        if wrote {
            assert_ne!(now, old, "an identity that wrote was taken again");
        }
        sim.settle(CALM);
    });
}

#[test]
fn long_partitions_and_crashes_never_break_causality_or_convergence() {
    for_seeds(10, |seed| {
        let mut sim = Sim::new(seed, 3 + seed as usize % 3, LOSSY).with_sessions(5, 100);
        sim.run_long_chaos(60_000, false);
        sim.settle(CALM);
        sim.run(1_000);
        sim.settle(CALM);
    });
}

#[test]
fn evictions_re_adds_and_long_partitions_never_break_causality_or_convergence() {
    for_seeds(10, |seed| {
        let mut sim = Sim::new(seed, 3 + seed as usize % 3, LOSSY).with_sessions(5, 100);
        sim.run_long_chaos(60_000, true);
        sim.settle(CALM);
        sim.run(1_000);
        sim.settle(CALM);
    });
}

#[test]
fn a_re_add_reaches_a_replica_the_re_adder_had_forgotten() {
    for_seeds(5, |seed| {
        let mut sim = Sim::new(seed, 3, CALM);
        sim.settle(CALM);
        let b = sim.addrs[1].clone();
        assert!(sim.replica_mut(0).view_remove(b.clone()));
        sim.flush(0);
        sim.run(2_000);
        assert!(!sim.replica(2).view().contains(&b), "C applied the removal");
        // C is cut off long enough for A (and B) to forget it; meanwhile
        // the operator adds B back at A.
        sim.group = vec![0, 0, 1];
        let t = sim.timing.failure_timeout + sim.timing.suspect_timeout + 1_000;
        sim.run(t);
        assert!(!sim.replica(0).view().knows(&sim.addrs[2]), "A forgot C");
        let now = sim.now;
        assert!(sim.replica_mut(0).view_add(b, now));
        sim.flush(0);
        sim.run(2_000);
        sim.group = vec![0, 0, 0];
        sim.settle(CALM);
    });
}
