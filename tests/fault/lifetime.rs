//! Faults of a long-lived deployment, one per run, chosen by the seed.
//!
//! The short faults of the nemesis (partitions, crashes, pauses, slow links)
//! are over in seconds and every replica comes back. A store that runs for
//! months also sees replicas that never come back, operators who evict a
//! replica and add it back later, DNS records that come and go, and restart
//! after restart. Each of those takes longer than a short fault and leaves
//! state behind (suspects, tombstones, incarnations), so a run hosts one of
//! them, picked from the seed as `seed % 4`:
//!
//! | seed % 4 | fault | what must hold afterwards |
//! | --- | --- | --- |
//! | 0 | [`Lifetime::Churn`]: six to ten restarts in a row, SIGKILL or SIGTERM | clocks and contexts hold at most live replicas + 2 entries |
//! | 1 | [`Lifetime::RemoveForGood`], once the short faults are over: a replica killed, never restarted, its slot never reused | the survivors forget it and collect every tombstone |
//! | 2 | [`Lifetime::EvictAndReadd`]: a replica cut off, removed with a view `DELETE`, deletes go on past the suspect timeout and a collection round, then healed and added back with a view `PUT` | nothing it held comes back; all converge |
//! | 3 | [`Lifetime::DnsChange`]: in a run whose replicas find each other through `VIEW_DNS`, a replica cut off and dropped from the name, then healed and listed again | the same |
//!
//! The fixed CI seeds 1 and 2 thus cover a replica removed for good and an
//! eviction; other seeds cover the rest. What must hold afterwards is
//! checked once the run has settled (`settle.rs`), for every run: tombstones
//! collected at every member, clocks and contexts within the bound. The
//! checker judges the history as for any run; a replica that brings a
//! deleted value back shows up there as a Resurrection.
//!
//! A replica that is cut off and evicted (or dropped from DNS) is recorded
//! as a crash that lost its state twice: once it is out of the store,
//! because the others may then retire its incarnation and stop waiting for
//! the writes it could not pass on; and when it is added back, because the
//! copy of the state it then takes may drop them (a request that was still
//! in flight to it when it was cut off may have been acknowledged in
//! between). A replica removed for good is killed and never started again:
//! what only it held may be lost. Every stop in a churn, SIGKILL or
//! SIGTERM, is recorded as a crash that kept the state: the replica starts
//! again on its `DATA_DIR`, so nothing it acknowledged may be lost, and it
//! must come back under the same identity.

use std::time::{Duration, Instant};

use awc::http::Method;
use rand::rngs::StdRng;
use rand::RngExt;

use super::harness::{
    sleep_ms, Stage, COLLECTION_ROUND, FAILURE_TIMEOUT, HANDOVER_TIMEOUT, SUSPECT_TIMEOUT,
};

/// The long-lived fault a run hosts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifetime {
    /// Many restarts in a row (SIGKILL or SIGTERM, then start again).
    Churn,
    /// A replica killed and never restarted; its slot is not reused.
    RemoveForGood,
    /// A replica cut off, evicted through the view API, then added back.
    EvictAndReadd,
    /// A replica cut off and dropped from the DNS name, then listed again.
    DnsChange,
}

impl Lifetime {
    /// The fault run `seed` hosts.
    pub fn for_seed(seed: u64) -> Self {
        [
            Lifetime::Churn,
            Lifetime::RemoveForGood,
            Lifetime::EvictAndReadd,
            Lifetime::DnsChange,
        ][(seed % 4) as usize]
    }

    /// Whether the run's replicas find each other through `VIEW_DNS`.
    pub fn uses_dns(self) -> bool {
        self == Lifetime::DnsChange
    }

    /// Whether it starts early in the run (so that it has time to play
    /// out) rather than once the short faults are over. A replica removed
    /// for good goes last: every survivor then knew it, and no later
    /// restart can make one forget it by accident (a process started after
    /// the removal never heard of it), while the workload's last seconds
    /// keep deleting, so the survivors have tombstones to collect.
    pub fn starts_early(self) -> bool {
        self != Lifetime::RemoveForGood
    }
}

/// Injects `fault` now; returns an error only when the harness itself fails.
pub async fn inject(
    fault: Lifetime,
    stage: &mut Stage<'_>,
    rng: &mut StdRng,
) -> Result<(), String> {
    if stage.members.len() < 3 {
        // Each of these leaves the store a member short for a while (or
        // for good); with two members left the other faults lose meaning.
        stage.note(format!("{fault:?} skipped: fewer than three members"));
        return Ok(());
    }
    match fault {
        Lifetime::Churn => churn(stage, rng).await,
        Lifetime::RemoveForGood => {
            remove_for_good(stage, rng)?;
            stage.publish_dns()
        }
        Lifetime::EvictAndReadd => away_and_back(stage, rng, Lifetime::EvictAndReadd).await,
        Lifetime::DnsChange => away_and_back(stage, rng, Lifetime::DnsChange).await,
    }
}

/// Kills a member for good: it is never restarted and its slot not reused.
fn remove_for_good(stage: &mut Stage<'_>, rng: &mut StdRng) -> Result<(), String> {
    let victim = stage.pick_member(rng);
    stage.note(format!(
        "remove replica {victim} for good (SIGKILL; never restarted, its slot not reused)"
    ));
    stage.stop_targeting(victim);
    stage.members.retain(|&m| m != victim);
    stage.retired.push(victim);
    stage.crash_for_good(victim)
}

/// Cuts a member off and takes it out of the store (a view `DELETE`, or
/// out of the DNS name), lets the deletes of the workload go on past the
/// suspect timeout and a collection round, then heals it and brings it
/// back the same way.
async fn away_and_back(
    stage: &mut Stage<'_>,
    rng: &mut StdRng,
    how: Lifetime,
) -> Result<(), String> {
    let victim = stage.pick_member(rng);
    let via = stage.pick_other(rng, victim);
    // Long enough for the survivors to forget it and collect the tombstones
    // of the deletes made meanwhile.
    let away =
        SUSPECT_TIMEOUT + COLLECTION_ROUND + Duration::from_millis(rng.random_range(500..2000));
    let by_dns = how == Lifetime::DnsChange;
    stage.note(if by_dns {
        format!(
            "DNS change: replica {victim} cut off and dropped from the name; listed again after {} ms",
            away.as_millis()
        )
    } else {
        format!(
            "evict replica {victim}: cut off, view DELETE at {via}; view PUT back after {} ms",
            away.as_millis()
        )
    });
    stage.stop_targeting(victim);
    stage.members.retain(|&m| m != victim);
    let sides = vec![vec![victim], stage.members.clone()];
    stage.cluster.partition(&sides)?;
    let start_us = stage.now_us();
    stage.publish_dns()?;

    // Once the others have stopped counting it as a member, it is a suspect.
    let within = FAILURE_TIMEOUT + Duration::from_secs(5);
    let gone = stage.wait_view(via, victim, false, within).await;
    stage.detail(format!(
        "replica {via}'s view {} replica {victim}",
        if gone {
            "no longer lists"
        } else {
            "STILL LISTS"
        }
    ));
    if !by_dns {
        let answer = stage.change_view(via, Method::DELETE, victim).await;
        stage.detail(format!(
            "view DELETE of replica {victim} at {via}: {answer:?}"
        ));
    }
    stage.record_crash(victim, false);
    let left = tombstones(stage).await;
    sleep_ms(away.as_millis() as u64).await;
    let before_return = tombstones(stage).await;
    stage.detail(format!(
        "tombstones at the others: {left} when it left, {before_return} before it returns"
    ));

    // Back: heal, and add it again the way it was taken out.
    stage.heal(start_us, sides)?;
    stage.record_crash(victim, false);
    stage.members.push(victim);
    stage.publish_dns()?;
    if !by_dns {
        let answer = stage.change_view(via, Method::PUT, victim).await;
        stage.detail(format!("view PUT of replica {victim} at {via}: {answer:?}"));
    }
    let back = stage.wait_view(via, victim, true, within).await;
    match stage.wait_ready(victim).await {
        Ok(()) => {
            let view = if back {
                String::new()
            } else {
                format!(", but NOT in the view of replica {via}")
            };
            stage.detail(format!("replica {victim} is ready{view}"));
            stage.start_targeting(victim);
        }
        Err(e) => stage.detail(e),
    }
    Ok(())
}

/// The tombstones each member holds, for the schedule: `[1: 12, 2: 12]`.
async fn tombstones(stage: &Stage<'_>) -> String {
    let mut parts = Vec::new();
    for &m in &stage.members {
        let held = stage.health(m).await;
        let held = held.and_then(|h| h.get("tombstones").and_then(|t| t.as_u64()));
        parts.push(match held {
            Some(n) => format!("{m}: {n}"),
            None => format!("{m}: ?"),
        });
    }
    format!("[{}]", parts.join(", "))
}

/// Restarts members one after another, each stopped with SIGKILL or
/// SIGTERM and started again once the previous one is ready.
async fn churn(stage: &mut Stage<'_>, rng: &mut StdRng) -> Result<(), String> {
    let restarts = 6 + rng.random_range(0..5);
    stage.note(format!("churn: {restarts} restarts in a row"));
    for step in 1..=restarts {
        let victim = stage.pick_member(rng);
        let graceful = rng.random_bool(0.5);
        let stopped = Instant::now();
        let at = stage.seconds();
        let how = if graceful {
            stop_gracefully(stage, victim).await
        } else {
            stage.cluster.crash(victim);
            "SIGKILL".to_string()
        };
        stage.record_stop(victim, true);
        stage.cluster.start(victim, &stage.members)?;
        let ready = stage.wait_back(victim).await;
        stage.detail(format!(
            "{step}/{restarts} at {at:.1}s: replica {victim} {how}; {} {:.1} s after the stop",
            if ready.is_ok() {
                "ready again"
            } else {
                "NOT READY"
            },
            stopped.elapsed().as_secs_f64()
        ));
    }
    Ok(())
}

/// SIGTERM, then waits for the process to exit (SIGKILL if it outlives its
/// handover); says how it ended.
async fn stop_gracefully(stage: &mut Stage<'_>, i: usize) -> String {
    stage.cluster.terminate(i);
    let deadline = Instant::now() + HANDOVER_TIMEOUT + Duration::from_secs(3);
    loop {
        if let Some(status) = stage.cluster.reap(i) {
            return format!("SIGTERM, exited ({status})");
        }
        if Instant::now() > deadline {
            stage.cluster.crash(i);
            return "SIGTERM, STILL RUNNING after the handover bound, then SIGKILL".to_string();
        }
        sleep_ms(50).await;
    }
}
