//! The simulated cluster with disks: replicas that crash and come back on
//! what they saved (see `sim/disk.rs`).

use super::sim::{for_seeds, Sim, CALM, LOSSY};

/// Runs `sim` until every replica holds a whole state (none starting or
/// merging a copy: such a state is not trusted after a crash, see
/// `saved.rs`), within a bound.
fn until_whole(sim: &mut Sim) {
    for _ in 0..200 {
        if sim.live().iter().all(|&i| sim.replica(i).is_whole()) {
            return;
        }
        sim.run(100);
    }
    panic!("a replica never held a whole state");
}

#[test]
fn every_replica_crashing_at_once_comes_back_whole_under_the_same_identity() {
    for_seeds(20, |seed| {
        let mut sim = Sim::new_store(seed, 3, LOSSY).with_sessions(4, 150);
        for round in 0..3 {
            let written = sim.log.len();
            sim.run(2_000 + 500 * round);
            until_whole(&mut sim);
            let ids: Vec<_> = (0..3).map(|i| sim.replica(i).me().id.clone()).collect();
            for i in 0..3 {
                sim.crash_keeping_disk(i);
            }
            assert_eq!(sim.disks.len(), 3, "a replica was still copying");
            for i in 0..3 {
                sim.restart(i);
            }
            for (i, id) in ids.iter().enumerate() {
                assert_eq!(
                    &sim.replica(i).me().id,
                    id,
                    "a new identity after a restart"
                );
            }
            // Every acknowledged write is still there, not one is lost
            // (settle checks every write of an incarnation that did not
            // lose its state), and the sessions are served again.
            assert!(sim.lost.is_empty());
            sim.settle(LOSSY);
            assert!(
                sim.log.len() > written,
                "no write was made in round {round}"
            );
        }
    });
}

#[test]
fn a_replica_back_on_its_disk_catches_up_with_what_it_missed() {
    for_seeds(20, |seed| {
        let mut sim = Sim::new_store(seed, 3, LOSSY).with_sessions(3, 150);
        sim.run(2_000);
        // Everything written so far is everywhere: a session that saw the
        // victim's last writes can go on at the others while it is down
        // (writes only the victim held would hold every such session up
        // until it is back, which the test of crashes at once covers).
        sim.settle(LOSSY);
        let victim = seed as usize % 3;
        let id = sim.replica(victim).me().id.clone();
        sim.crash_keeping_disk(victim);
        // The others go on writing while it is down.
        let before = sim.log.len();
        sim.run(3_000);
        assert!(sim.log.len() > before, "nothing was written meanwhile");
        sim.restart(victim);
        assert_eq!(sim.replica(victim).me().id, id);
        sim.settle(LOSSY);
    });
}

#[test]
fn random_faults_with_disks_never_break_causality_or_convergence() {
    let restored = std::cell::Cell::new(0);
    for_seeds(25, |seed| {
        let mut sim = Sim::new(seed, 3 + seed as usize % 3, LOSSY).with_sessions(5, 120);
        sim.with_disks = true;
        sim.run_chaos(15_000);
        sim.settle(CALM);
        sim.run(1_000);
        sim.settle(CALM);
        restored.set(restored.get() + sim.restored);
    });
    assert!(restored.get() > 0, "no replica came back on its disk");
}
