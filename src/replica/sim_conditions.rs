//! Conditional writes in the simulated cluster: each is judged at the
//! replica that takes it, so two on both sides of a partition may both
//! succeed; the replicas converge all the same, by the conflict rule.
//! (The random workload of every simulation also makes conditional
//! writes: see `sim/client.rs`.)

use super::sim::{for_seeds, key, Op, Sim, CALM, LOSSY};
use super::{Condition, Outcome};

/// What session `s`'s `op` at replica `i` did.
fn outcome(sim: &mut Sim, s: usize, i: usize, op: Op) -> Outcome {
    let value = match op {
        Op::Get(_) | Op::Delete(_) => None,
        _ => crate::store::Value::from_json(&format!("{}", 1000 + s * 10 + i)).expect("json"),
    };
    sim.serve(s, i, &op, value)
        .expect("served")
        .outcome
        .expect("a write")
}

#[test]
fn create_only_writes_on_both_sides_of_a_partition_both_succeed_and_converge() {
    for_seeds(10, |seed| {
        let mut sim = Sim::new(seed, 3, CALM).with_sessions(3, 0);
        sim.settle(CALM);
        let k = key("k");
        sim.group = vec![0, 1, 1];
        // Each side finds the key absent, so each creates it.
        assert_eq!(
            outcome(&mut sim, 0, 0, Op::PutIf(k.clone(), Condition::Absent)),
            Outcome::Created
        );
        assert_eq!(
            outcome(&mut sim, 1, 1, Op::PutIf(k.clone(), Condition::Absent)),
            Outcome::Created
        );
        // On a side that holds it, a second create is refused.
        assert_eq!(
            outcome(&mut sim, 2, 0, Op::PutIf(k.clone(), Condition::Absent)),
            Outcome::Unmet
        );
        sim.settle(LOSSY);
        // One of the two wins everywhere, by the conflict rule.
        let winner = sim.replica(0).store().get(&k).expect("held");
        let created: Vec<_> = sim
            .log
            .iter()
            .filter(|w| w.key == k)
            .map(|w| &w.version)
            .collect();
        assert_eq!(created.len(), 2);
        assert!(created.contains(&&winner));
        for i in 1..3 {
            assert_eq!(sim.replica(i).store().get(&k).as_ref(), Some(&winner));
        }
    });
}

#[test]
fn an_if_match_write_succeeds_over_the_version_its_replica_holds() {
    for_seeds(10, |seed| {
        let mut sim = Sim::new(seed, 3, CALM).with_sessions(4, 0);
        sim.settle(CALM);
        let k = key("k");
        sim.until_served(0, 0, Op::Put(k.clone()));
        sim.settle(CALM);
        let v1 = sim.replica(1).store().get(&k).expect("held").etag();
        sim.group = vec![0, 1, 1];
        // Replica 0 moves on; replica 1 has not seen it.
        sim.until_served(0, 0, Op::Put(k.clone()));
        let over_v1 = || Op::PutIf(k.clone(), Condition::Matches(vec![v1.clone()]));
        assert_eq!(outcome(&mut sim, 1, 1, over_v1()), Outcome::Updated);
        assert_eq!(outcome(&mut sim, 2, 0, over_v1()), Outcome::Unmet);
        // A condition naming no version a replica holds fails there.
        let none = Op::PutIf(k.clone(), Condition::Matches(vec!["\"0\"".into()]));
        assert_eq!(outcome(&mut sim, 3, 2, none), Outcome::Unmet);
        sim.settle(LOSSY);
        let held = sim.replica(0).store().get(&k);
        for i in 1..3 {
            assert_eq!(sim.replica(i).store().get(&k), held);
        }
    });
}

#[test]
fn random_workloads_with_conditional_writes_keep_causality_and_converge() {
    for_seeds(10, |seed| {
        let mut sim = Sim::new(seed, 3 + seed as usize % 2, LOSSY).with_sessions(4, 120);
        sim.run(4_000);
        sim.settle(LOSSY);
        assert!(sim.log.len() > 10, "proved nothing");
    });
}
