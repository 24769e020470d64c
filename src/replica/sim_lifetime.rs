//! The simulated cluster over the long life of a store: replicas gone for
//! good, evicted and re-added, long partitions, many restarts; nothing
//! deleted comes back and metadata stays bounded.

use std::collections::BTreeSet;

use super::sim::{for_seeds, key, Op, Sim, CALM, LOSSY};
use crate::store::Key;

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
        // Whether the members hold writes of the identity: then taking it
        // again would issue their dots anew. (Measured before the restart:
        // once restarted, it may write under the identity it kept.)
        let wrote = (0..2).any(|i| sim.replica(i).known().count(&old) > 0);
        // The same identity, drawn again by a new process.
        sim.boot_as(2, &incarnation);
        sim.run(3_000);
        let now = sim.replica(2).me().id.clone();
        if wrote {
            assert_ne!(now, old, "an identity that wrote was taken again");
        }
        sim.settle(CALM);
    });
}

#[test]
fn long_partitions_and_crashes_never_break_causality_or_convergence() {
    for_seeds(10, long_partitions_and_crashes);
}

fn long_partitions_and_crashes(seed: u64) {
    let mut sim = Sim::new(seed, 3 + seed as usize % 3, LOSSY).with_sessions(5, 100);
    sim.run_long_chaos(60_000, false);
    sim.settle(CALM);
    sim.run(1_000);
    sim.settle(CALM);
}

/// A seed (of this generator) whose run once diverged for good: a replica
/// copying from an incarnation behind a long partition took pages newer
/// than the clock the copy accounted for; the giver crashed before it could
/// pull the rest; once the incarnation was retired at that clock, the
/// versions past it were held by two replicas, counted by none, and never
/// reached the third. They are now written again at retirement.
#[test]
fn versions_past_a_retirement_reach_every_replica() {
    super::sim::trace();
    long_partitions_and_crashes(823_593);
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
