//! One seeded fault run: start a cluster, run the sessions, inject faults
//! from a schedule drawn from the seed, heal, settle, read everything, and
//! check the history and what a long-lived store must keep true.
//!
//! The schedule mixes short faults, drawn one after another until the run's
//! time is up (partitions, one-way cuts, crashes and restarts, pauses, slow
//! links, replicas added and removed, a crash inside a partition), with one
//! long-lived fault per run, chosen by the seed (`lifetime.rs`: a churn of
//! restarts, a replica removed for good, an eviction and re-add, a DNS
//! change), and with the two faults of replicas that keep their state on
//! disk, at times drawn from the seed (`durability.rs`: every replica
//! killed at once and started again on its disk; one replica's disk
//! deleted). Every replica runs with a `DATA_DIR` of its own, kept across
//! its restarts; `DURABILITY` is `os` for odd seeds and `fsync` (the
//! default) for even ones, so the fixed seeds 1 and 2 cover both. Every
//! fault adds a line to the run's log; the summary prints it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use awc::http::Method;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::checker::{self, History};
use super::durability::{self, DiskFault};
use super::frame::{self, random_split, CAUSAL_WAIT_MS};
use super::harness::{
    sleep_ms, Stage, DNS_NAME, FAILURE_TIMEOUT, HANDOVER_TIMEOUT, SUSPECT_TIMEOUT,
};
use super::lifetime::{self, Lifetime};
use super::netns::{NetnsCluster, PORT};
use super::settle;
use super::tables::{self, SIBLING_TABLE};
use super::workload;

/// Replica slots available (three start; the nemesis may add two).
const CAPACITY: usize = 5;
/// How often replicas resolve the DNS name, in runs that use one.
const DNS_INTERVAL_MS: u64 = 300;

/// What one run found.
pub struct Outcome {
    /// Whether no anomaly, divergence, lost write or lifetime failure was found.
    pub ok: bool,
    /// A readable report.
    pub summary: String,
    /// Where the replicas' logs are.
    pub log_dir: PathBuf,
}

/// Runs one seed.
pub fn run(seed: u64, duration: Duration, binary: &Path) -> Result<Outcome, String> {
    let (tag, subnet, log_dir) = frame::names("", seed);
    let fault = Lifetime::for_seed(seed);
    let mut env = replica_env();
    env.push(("DURABILITY".to_string(), durability_mode(seed).to_string()));
    if fault.uses_dns() {
        env.push(("VIEW_DNS".to_string(), format!("{DNS_NAME}:{PORT}")));
        env.push((
            "VIEW_DNS_INTERVAL_MS".to_string(),
            DNS_INTERVAL_MS.to_string(),
        ));
    }
    let mut cluster = NetnsCluster::create(&tag, subnet, CAPACITY, binary, &log_dir, env)?;
    let data = cluster.keep_state()?;
    let system = actix_rt::System::new();
    let mut outcome = system.block_on(drive(seed, duration, fault, &mut cluster))?;
    if !outcome.ok {
        if let Some(kept) = cluster.keep_state_dirs() {
            let _ = writeln!(outcome.summary, "DATA_DIRs kept in {}", kept.display());
        }
    } else {
        let _ = writeln!(
            outcome.summary,
            "DATA_DIRs were under {} (deleted)",
            data.display()
        );
    }
    outcome.log_dir = log_dir;
    Ok(outcome)
}

/// The environment every replica of a run gets: its log filter and the
/// short timings that let failures play out within a run.
pub fn replica_env() -> Vec<(String, String)> {
    let millis = |d: Duration| d.as_millis().to_string();
    vec![
        ("RUST_LOG".to_string(), "info,causalkv=debug".to_string()),
        ("CAUSAL_WAIT_MS".to_string(), CAUSAL_WAIT_MS.to_string()),
        ("FAILURE_TIMEOUT_MS".to_string(), millis(FAILURE_TIMEOUT)),
        ("SUSPECT_TIMEOUT_MS".to_string(), millis(SUSPECT_TIMEOUT)),
        ("HANDOVER_TIMEOUT_MS".to_string(), millis(HANDOVER_TIMEOUT)),
        ("HEARTBEAT_INTERVAL_MS".to_string(), "200".to_string()),
        ("WORKERS".to_string(), "2".to_string()),
    ]
}

/// `DURABILITY` for a run: `os` for odd seeds, `fsync` for even ones.
fn durability_mode(seed: u64) -> &'static str {
    if seed % 2 == 1 {
        "os"
    } else {
        "fsync"
    }
}

async fn drive(
    seed: u64,
    duration: Duration,
    fault: Lifetime,
    cluster: &mut NetnsCluster,
) -> Result<Outcome, String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut stage = frame::stage(
        cluster,
        vec![0, 1, 2],
        fault.uses_dns().then_some(DNS_NAME),
        false,
    );
    stage.publish_dns()?;
    frame::start_members(&mut stage).await?;
    let created = tables::create_sibling_table(&stage).await?;
    let until = Instant::now() + duration;
    let sessions = frame::start_sessions(&stage, &mut rng, seed, until, true);
    stage.note(created);

    // The long-lived fault starts early, so that it has time to play out,
    // or once the short faults are over (see Lifetime::starts_early).
    let early = fault
        .starts_early()
        .then(|| Instant::now() + Duration::from_millis(rng.random_range(1500..5000)));
    // The faults of replicas with disks, in every run: every replica
    // crashed at once in the first half of the faults, a disk lost in the
    // second half (later if a long-lived fault is still playing out).
    let window = duration.saturating_sub(Duration::from_secs(4));
    let mut disk_faults = vec![
        (
            Instant::now() + window.mul_f64(rng.random_range(0.2..0.45)),
            DiskFault::CrashAll,
        ),
        (
            Instant::now() + window.mul_f64(rng.random_range(0.55..0.8)),
            DiskFault::LoseDisk,
        ),
    ];
    let mut probes = Vec::new();
    let mut injected = false;
    while Instant::now() + Duration::from_secs(4) < until {
        if !injected && early.is_some_and(|at| Instant::now() >= at) {
            injected = true;
            lifetime::inject(fault, &mut stage, &mut rng).await?;
            continue;
        }
        if let Some(due) = disk_faults.iter().position(|&(at, _)| Instant::now() >= at) {
            let (_, disk_fault) = disk_faults.remove(due);
            durability::inject(disk_fault, &mut stage, &mut rng, &mut probes).await?;
            continue;
        }
        sleep_ms(rng.random_range(300..1500)).await;
        short_fault(&mut stage, &mut rng).await?;
    }
    // Those the faults before left no time for still happen, while the
    // sessions finish.
    for (_, disk_fault) in disk_faults {
        durability::inject(disk_fault, &mut stage, &mut rng, &mut probes).await?;
    }
    match (injected, early) {
        (true, _) => {}
        (false, Some(_)) => stage.note(format!("{fault:?} skipped: the run is too short")),
        (false, None) => lifetime::inject(fault, &mut stage, &mut rng).await?,
    }
    for handle in sessions {
        let _ = handle.await;
    }

    // Heal everything and let the cluster settle.
    frame::heal_all(&mut stage)?;
    let healed_at = Instant::now();
    let mut keys = workload::all_keys();
    keys.extend(stage.probe_keys.iter().cloned());
    let (final_reads, views_ok, view_report) = settle::settle(&stage, &keys).await;
    let (final_sets, sets_agree) = tables::final_sets(&stage).await;
    let settle_time = healed_at.elapsed();
    let (collection, metadata) =
        settle::lifetime_checks(&stage, &keys, &settle::Bounds::unsharded(&stage.members)).await;
    // The identities of replicas restarted since they were last seen.
    stage.check_identities().await;

    let history = History {
        sibling_tables: vec![SIBLING_TABLE.to_string()],
        final_sets,
        ..frame::history(&stage, final_reads)
    };
    let report = checker::check(&history);
    let ok = report.is_ok() && views_ok && sets_agree && collection.ok && metadata.ok;
    if !ok {
        frame::keep_history(&mut stage, &history);
    }
    // Restarts that kept the state (or not) and the identity (or not).
    let restarts = |kept: bool, same: bool, set_aside: bool| {
        history
            .restarts
            .iter()
            .filter(|r| r.kept_state == kept && (r.before == r.after) == same)
            .filter(|r| r.set_aside == set_aside)
            .count()
    };
    let mut summary = String::new();
    let _ = writeln!(
        summary,
        "nemesis schedule (seed {seed}, long-lived fault {fault:?}, every replica with a DATA_DIR of its own, DURABILITY={}):\n{}",
        durability_mode(seed),
        stage.log
    );
    let _ = writeln!(
        summary,
        "faults of replicas with disks: every replica crashed at once {} time(s), a disk lost {} time(s); identities checked on {} restart(s): {} kept on a kept disk, {} new after a lost one, {} new after a state set aside, {} WRONG; probe writes:\n{}",
        stage.log.matches("CRASH EVERY REPLICA AT ONCE").count(),
        stage.log.matches("LOSE A REPLICA'S DISK:").count(),
        history.restarts.len(),
        restarts(true, true, false),
        restarts(false, false, false),
        restarts(true, false, true),
        restarts(true, false, false) + restarts(false, true, false) + restarts(true, true, true),
        durability::outcomes(&probes, &history.final_reads)
    );
    frame::converged_lines(
        &mut summary,
        &stage,
        "",
        (views_ok, &view_report),
        settle_time,
    );
    if !sets_agree {
        let _ = writeln!(
            summary,
            "the final reads of table {SIBLING_TABLE} did NOT agree (or were not all answered) within their deadline"
        );
    }
    let _ = writeln!(summary, "{}", tables::summary(&history));
    let _ = writeln!(summary, "{}", collection.line);
    let _ = writeln!(summary, "{}", metadata.line);
    let _ = writeln!(summary, "{report}");
    Ok(Outcome {
        ok,
        summary,
        log_dir: PathBuf::new(),
    })
}

/// Draws one short fault and plays it out.
async fn short_fault(stage: &mut Stage<'_>, rng: &mut StdRng) -> Result<(), String> {
    let hold = rng.random_range(1500..5000);
    match rng.random_range(0..10) {
        0 | 1 => {
            let sides = random_split(rng, &stage.members);
            stage.note(format!("partition {sides:?} for {hold} ms"));
            stage.partition_for(sides, hold).await?;
        }
        2 => stage.one_way_cut(rng, hold).await?,
        3 | 4 => {
            let victim = stage.pick_member(rng);
            stage.note(format!("crash {victim}, restart after {hold} ms"));
            stage.crash(victim);
            sleep_ms(hold).await;
            stage.cluster.start(victim, &stage.members)?;
        }
        5 => stage.pause_one(rng, hold).await,
        6 if stage.free_slot(CAPACITY).is_some() => add_replica(stage, rng).await?,
        9 => stage.slow_link(rng, hold).await?,
        8 => {
            stage.partition_with_crash(rng, hold).await?;
        }
        7 if stage.members.len() > 3 => {
            let victim = stage.pick_member(rng);
            stage.members.retain(|&m| m != victim);
            stage.stop_targeting(victim);
            stage.publish_dns()?;
            let via = stage.pick_member(rng);
            stage.note(format!(
                "remove replica {victim} (view DELETE at {via}; SIGKILL, its DATA_DIR deleted)"
            ));
            let answer = stage.change_view(via, Method::DELETE, victim).await;
            stage.detail(format!("{answer:?}"));
            stage.crash_for_good(victim)?;
        }
        _ => {}
    }
    Ok(())
}

/// Adds a replica in a free slot: started with a `VIEW` naming every
/// member, or alone and then added through the view API.
async fn add_replica(stage: &mut Stage<'_>, rng: &mut StdRng) -> Result<(), String> {
    let slot = stage.free_slot(CAPACITY).expect("a free slot");
    if rng.random_bool(0.5) {
        // Like starting a container whose VIEW names everyone.
        stage.members.push(slot);
        stage.publish_dns()?;
        stage.note(format!("add replica {slot} (VIEW names all)"));
        stage.cluster.start(slot, &stage.members)?;
    } else {
        // A replica that knows only itself, added through the API.
        let via = stage.pick_member(rng);
        stage.members.push(slot);
        stage.publish_dns()?;
        stage.note(format!(
            "add replica {slot} (alone, then view PUT at {via})"
        ));
        stage.cluster.start(slot, &[slot])?;
        stage.wait_ready(slot).await?;
        let answer = stage.change_view(via, Method::PUT, slot).await;
        stage.detail(format!("{answer:?}"));
    }
    if stage.wait_ready(slot).await.is_ok() {
        stage.start_targeting(slot);
    }
    Ok(())
}
