//! Faults of replicas that keep their state on disk. Every replica of the
//! suite runs with a `DATA_DIR` of its own (one per address, kept across
//! its restarts), so every run hosts both of these, at times drawn from
//! the seed:
//!
//! | fault | what must hold afterwards |
//! | --- | --- |
//! | [`DiskFault::CrashAll`]: every member killed (SIGKILL) at one instant, maybe while each is cut off from the others, then all started again on the same addresses and `DATA_DIR`s | every acknowledged write is still there; every replica is back under the identity it had |
//! | [`DiskFault::LoseDisk`]: one member killed, its `DATA_DIR` deleted, started again | it is back as a new incarnation with a copy of the state; what it acknowledged and another replica had received is still there; what only it held may be lost |
//!
//! Both write probes of their own, recorded in the history like any
//! session's operations, on keys no session uses (`durable<n>`): before
//! the crash of every replica, one write at each replica (held by that
//! replica alone when they are cut off); before the disk loss, one write
//! that the victim acknowledged and another replica returned (so it had
//! reached that replica), and one acknowledged while the victim was cut
//! off (held by it alone). The checker judges them with everything else:
//! crashes that kept the state excuse no loss, a lost disk excuses only
//! what no other replica is known to have held. The run's summary says
//! what became of each probe.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::RngExt;
use serde_json::Value;

use super::checker::{FinalRead, OpKind, OpResult};
use super::harness::{sleep_ms, Stage};
use super::workload;

/// A fault of replicas with disks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskFault {
    /// Every member killed at one instant and started again on its disk.
    CrashAll,
    /// One member killed, its disk deleted, and started again.
    LoseDisk,
}

/// How long a read of a probe at another replica may keep being retried.
const PROBE_READ_DEADLINE: Duration = Duration::from_secs(10);

/// A probe write and what must become of it.
#[derive(Clone, Debug)]
pub struct Probe {
    /// The key (no session uses it).
    pub key: String,
    /// The value written.
    pub value: String,
    /// The slot that took it.
    pub replica: usize,
    /// Whether it was acknowledged.
    pub acknowledged: bool,
    /// Whether it must survive (else it may be lost).
    pub must_survive: bool,
    /// The fault it belongs to, for the schedule.
    pub fault: DiskFault,
}

/// Injects `fault` now; returns an error only when the harness itself fails.
pub async fn inject(
    fault: DiskFault,
    stage: &mut Stage<'_>,
    rng: &mut StdRng,
    probes: &mut Vec<Probe>,
) -> Result<(), String> {
    match fault {
        DiskFault::CrashAll => crash_all(stage, rng, probes).await,
        DiskFault::LoseDisk => lose_disk(stage, rng, probes).await,
    }
}

/// Kills every member at one instant and starts them all again.
async fn crash_all(
    stage: &mut Stage<'_>,
    rng: &mut StdRng,
    probes: &mut Vec<Probe>,
) -> Result<(), String> {
    let members = stage.members.clone();
    let isolated = rng.random_bool(0.5);
    stage.note(format!(
        "CRASH EVERY REPLICA AT ONCE: SIGKILL {members:?} at one instant{}, then start all on the same addresses and DATA_DIRs",
        if isolated {
            " while each is cut off from the others (each holds writes only it has)"
        } else {
            ""
        }
    ));
    // Every member ready, so that the identities before are known.
    for &m in &members {
        if let Err(e) = stage.wait_ready(m).await {
            stage.detail(e);
        }
    }
    let sides: Vec<Vec<usize>> = members.iter().map(|&m| vec![m]).collect();
    let start_us = stage.now_us();
    if isolated {
        stage.cluster.partition(&sides)?;
        // Let the sessions leave writes at each replica alone.
        sleep_ms(rng.random_range(200..1000)).await;
    }
    for &m in &members {
        let (probe, _, _) = probe_write(stage, m, DiskFault::CrashAll, true).await;
        probes.push(probe);
    }
    let acked: Vec<usize> = probes
        .iter()
        .filter(|p| p.fault == DiskFault::CrashAll && p.acknowledged)
        .map(|p| p.replica)
        .collect();
    stage.detail(format!(
        "probe writes acknowledged by replicas {acked:?} just before the kill"
    ));

    stage.cluster.crash_all(&members);
    for &m in &members {
        stage.record_stop(m, true);
    }
    if isolated {
        stage.heal(start_us, sides)?;
    }
    let killed = Instant::now();
    for &m in &members {
        stage.cluster.start(m, &members)?;
    }
    let mut back = Vec::new();
    for &m in &members {
        match stage.wait_back(m).await {
            Ok(()) => back.push(m),
            Err(e) => {
                let exit = stage.cluster.reap(m);
                stage.detail(match exit {
                    Some(status) => format!("replica {m} EXITED ({status}); see its log"),
                    None => e,
                });
            }
        }
    }
    stage.detail(format!(
        "replicas {back:?} of {members:?} ready again {:.1} s after the kill",
        killed.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// Kills one member, deletes its `DATA_DIR` and starts it again.
async fn lose_disk(
    stage: &mut Stage<'_>,
    rng: &mut StdRng,
    probes: &mut Vec<Probe>,
) -> Result<(), String> {
    if stage.members.len() < 2 {
        stage.note("lose a replica's disk skipped: fewer than two members");
        return Ok(());
    }
    let victim = stage.pick_member(rng);
    let other = stage.pick_other(rng, victim);
    stage.note(format!(
        "LOSE A REPLICA'S DISK: SIGKILL replica {victim}, delete its DATA_DIR, start it again"
    ));
    for m in [victim, other] {
        if let Err(e) = stage.wait_ready(m).await {
            stage.detail(e);
        }
    }

    // A write the victim acknowledged and passed on: read back elsewhere.
    let (mut passed_on, session, context) =
        probe_write(stage, victim, DiskFault::LoseDisk, true).await;
    let reached =
        passed_on.acknowledged && read_back(stage, (session, context), other, &passed_on).await;
    passed_on.must_survive = reached;
    stage.detail(format!(
        "probe {} acknowledged by replica {victim}: {}",
        passed_on.key,
        if reached {
            format!("replica {other} returned it, so it must survive")
        } else {
            format!("NOT read back at replica {other}, so it may be lost")
        }
    ));
    probes.push(passed_on);

    // A write only the victim holds: it is cut off first.
    let rest: Vec<usize> = stage
        .members
        .iter()
        .copied()
        .filter(|&m| m != victim)
        .collect();
    let sides = vec![vec![victim], rest];
    stage.cluster.partition(&sides)?;
    let start_us = stage.now_us();
    let (alone, _, _) = probe_write(stage, victim, DiskFault::LoseDisk, false).await;
    stage.detail(format!(
        "probe {} {} by replica {victim} while cut off (held by it alone: may be lost)",
        alone.key,
        if alone.acknowledged {
            "acknowledged"
        } else {
            "NOT acknowledged"
        }
    ));
    probes.push(alone);
    sleep_ms(rng.random_range(200..800)).await;

    stage.cluster.crash(victim);
    stage.cluster.wipe_state(victim)?;
    stage.record_stop(victim, false);
    stage.heal(start_us, sides)?;
    let killed = Instant::now();
    stage.cluster.start(victim, &stage.members)?;
    match stage.wait_back(victim).await {
        Ok(()) => stage.detail(format!(
            "replica {victim} ready again {:.1} s after the kill",
            killed.elapsed().as_secs_f64()
        )),
        Err(e) => stage.detail(e),
    }
    Ok(())
}

/// Writes a probe at slot `replica` as a session of its own (recorded in
/// the history); `must_survive` if acknowledged, unless the caller knows
/// better. Returns it with its session and the context its write answered.
async fn probe_write(
    stage: &mut Stage<'_>,
    replica: usize,
    fault: DiskFault,
    must_survive: bool,
) -> (Probe, usize, Value) {
    let n = stage.probe_keys.len();
    let key = format!("durable{n}");
    let value = format!("probe-{n}");
    stage.probe_keys.push(key.clone());
    let session = workload::new_session(&stage.shared);
    let host = stage.cluster.address(replica);
    let kind = OpKind::Put {
        value: value.clone(),
    };
    let mut context = Value::String(String::new());
    let (result, _) = workload::request(
        &stage.shared,
        &stage.http,
        session,
        (replica, &host),
        key.clone(),
        kind,
        &mut context,
    )
    .await;
    let acknowledged = result == OpResult::Written;
    let probe = Probe {
        key,
        value,
        replica,
        acknowledged,
        must_survive: must_survive && acknowledged,
        fault,
    };
    (probe, session, context)
}

/// Reads `probe` at slot `at` in the probe's session, passing the context
/// its write answered (so `at` serves the read only once it has the write,
/// fetching it if need be), until the read returns the probe's value or
/// the deadline passes; every attempt is recorded. Returns whether it did.
async fn read_back(
    stage: &mut Stage<'_>,
    (session, context): (usize, Value),
    at: usize,
    probe: &Probe,
) -> bool {
    let host = stage.cluster.address(at);
    let deadline = Instant::now() + PROBE_READ_DEADLINE;
    let mut context = context;
    loop {
        let (result, _) = workload::request(
            &stage.shared,
            &stage.http,
            session,
            (at, &host),
            probe.key.clone(),
            OpKind::Get,
            &mut context,
        )
        .await;
        if result == OpResult::Read(Some(probe.value.clone())) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        sleep_ms(100).await;
    }
}

/// One line per probe for the summary: what became of it at the end.
pub fn outcomes(probes: &[Probe], final_reads: &[FinalRead]) -> String {
    let mut lines = Vec::new();
    for p in probes {
        let found: Vec<&FinalRead> = final_reads.iter().filter(|f| f.key == p.key).collect();
        let kept = found
            .iter()
            .filter(|f| f.value.as_deref() == Some(p.value.as_str()))
            .count();
        let fate = if !p.acknowledged {
            "not acknowledged".to_string()
        } else if kept == found.len() && kept > 0 {
            "kept at every member".to_string()
        } else if kept == 0 {
            "LOST".to_string()
        } else {
            format!("kept at {kept} of {} members", found.len())
        };
        let rule = match (p.acknowledged, p.must_survive) {
            (false, _) => "",
            (true, true) => " (must survive)",
            (true, false) => " (may be lost)",
        };
        lines.push(format!(
            "  {:?}: {}={} at replica {}: {fate}{rule}",
            p.fault, p.key, p.value, p.replica
        ));
    }
    lines.join("\n")
}
