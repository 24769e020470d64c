//! The simulated cluster's scenarios: the protocol under drops,
//! duplicates, reordering, partitions, crashes and restarts (the long life
//! of a store is in `sim_lifetime.rs`).

use std::collections::BTreeSet;

use super::sim::{for_seeds, key, Faults, Op, Session, Sim, CALM, LOSSY, ROUGH};
use crate::store::Key;

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
