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

use std::cell::RefCell;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use awc::http::Method;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};

use super::checker::{self, History};
use super::durability::{self, DiskFault};
use super::harness::{
    sleep_ms, Stage, DNS_NAME, FAILURE_TIMEOUT, HANDOVER_TIMEOUT, SUSPECT_TIMEOUT,
};
use super::lifetime::{self, Lifetime};
use super::netns::{NetnsCluster, PORT};
use super::settle;
use super::tables::{self, SIBLING_TABLE};
use super::workload::{self, Shared};

/// Replica slots available (three start; the nemesis may add two).
const CAPACITY: usize = 5;
/// How long a replica waits for causal dependencies in these runs.
pub const CAUSAL_WAIT_MS: u64 = 3000;
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
    let subnet = 200 + (std::process::id() % 50) as u8;
    let tag = format!("ckf{subnet}");
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let log_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("fault-logs")
        .join(format!("seed-{seed}-{stamp}"));
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
    let http = awc::Client::builder()
        .connector(awc::Connector::new().timeout(Duration::from_millis(1000)))
        .timeout(Duration::from_secs(5))
        .finish();
    let shared = Rc::new(RefCell::new(Shared {
        start: Instant::now(),
        targets: Vec::new(),
        ops: Vec::new(),
        sessions: 0,
        allowed: (0..CAPACITY).map(|i| cluster.address(i)).collect(),
        relayed: false,
    }));
    let mut stage = Stage {
        cluster,
        http,
        shared: shared.clone(),
        members: vec![0, 1, 2],
        retired: Vec::new(),
        dns: fault.uses_dns().then_some(DNS_NAME),
        log: String::new(),
        crashes: Vec::new(),
        partitions: Vec::new(),
        ids: Default::default(),
        stopped: Default::default(),
        restarts: Vec::new(),
        probe_keys: Vec::new(),
        memory: false,
    };
    stage.publish_dns()?;
    for i in stage.members.clone() {
        stage.cluster.start(i, &stage.members)?;
    }
    for i in stage.members.clone() {
        stage.wait_ready(i).await?;
        stage.start_targeting(i);
    }
    let created = tables::create_sibling_table(&stage).await?;
    shared.borrow_mut().start = Instant::now();
    stage.note(created);
    let until = Instant::now() + duration;
    let request_timeout = Duration::from_millis(CAUSAL_WAIT_MS + 4000);
    let roles = tables::roles(true);
    let seeds = tables::session_seeds(&mut rng, seed, &roles);
    let sessions: Vec<_> = roles
        .into_iter()
        .zip(seeds)
        .map(|(role, session_seed)| {
            actix_rt::spawn(workload::session(
                shared.clone(),
                session_seed,
                until,
                request_timeout,
                role,
            ))
        })
        .collect();

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
    stage.cluster.heal()?;
    for i in stage.members.clone() {
        stage.cluster.resume(i);
        if !stage.cluster.is_running(i) {
            stage.cluster.start(i, &stage.members)?;
        }
    }
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
        ops: shared.borrow().ops.clone(),
        final_reads,
        crashes: stage.crashes.clone(),
        restarts: stage.restarts.clone(),
        partitions: stage.partitions.clone(),
        relayed: false,
        sibling_tables: vec![SIBLING_TABLE.to_string()],
        final_sets,
    };
    let report = checker::check(&history);
    let ok = report.is_ok() && views_ok && sets_agree && collection.ok && metadata.ok;
    if !ok {
        // Next to the replicas' logs, for replaying the checker on it.
        let path = stage.cluster.log_dir.join("history.json");
        if let Err(e) = std::fs::write(&path, history.to_json()) {
            stage.note(format!(
                "could not save the history to {}: {e}",
                path.display()
            ));
        }
    }
    // Restarts that kept the state (or not) and the identity (or not).
    let restarts = |kept: bool, same: bool| {
        history
            .restarts
            .iter()
            .filter(|r| r.kept_state == kept && (r.before == r.after) == same)
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
        "faults of replicas with disks: every replica crashed at once {} time(s), a disk lost {} time(s); identities checked on {} restart(s): {} kept on a kept disk, {} new after a lost one, {} WRONG; probe writes:\n{}",
        stage.log.matches("CRASH EVERY REPLICA AT ONCE").count(),
        stage.log.matches("LOSE A REPLICA'S DISK:").count(),
        history.restarts.len(),
        restarts(true, true),
        restarts(false, false),
        restarts(true, false) + restarts(false, true),
        durability::outcomes(&probes, &history.final_reads)
    );
    let _ = writeln!(
        summary,
        "{} operations by {} sessions; converged {} after healing ({:.1} s)",
        history.ops.len(),
        shared.borrow().sessions,
        if views_ok {
            "(views agree)"
        } else {
            "(views DISAGREE)"
        },
        settle_time.as_secs_f64()
    );
    if !views_ok {
        let _ = writeln!(summary, "{view_report}");
    }
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
            stage.cluster.partition(&sides)?;
            let start_us = stage.now_us();
            sleep_ms(hold).await;
            stage.heal(start_us, sides)?;
        }
        2 => {
            let from = stage.pick_member(rng);
            let to = stage.pick_member(rng);
            if from != to {
                stage.note(format!("one-way cut {from} -> {to} for {hold} ms"));
                stage.cluster.block(from, to)?;
                sleep_ms(hold).await;
                stage.cluster.heal()?;
            }
        }
        3 | 4 => {
            let victim = stage.pick_member(rng);
            stage.note(format!("crash {victim}, restart after {hold} ms"));
            stage.crash(victim);
            sleep_ms(hold).await;
            stage.cluster.start(victim, &stage.members)?;
        }
        5 => {
            let victim = stage.pick_member(rng);
            stage.note(format!("pause {victim} for {hold} ms"));
            stage.cluster.pause(victim);
            sleep_ms(hold).await;
            stage.cluster.resume(victim);
        }
        6 if stage.free_slot(CAPACITY).is_some() => add_replica(stage, rng).await?,
        9 => {
            let victim = stage.pick_member(rng);
            let kbit = [64, 256, 1024][rng.random_range(0..3usize)];
            stage.note(format!(
                "slow, lossy link at {victim} ({kbit} kbit/s) for {hold} ms"
            ));
            stage.cluster.slow(victim, kbit)?;
            sleep_ms(hold).await;
            stage.cluster.heal()?;
        }
        8 => {
            // Two faults at once: a partition, and a crash on one side.
            let sides = random_split(rng, &stage.members);
            let victim = stage.pick_member(rng);
            stage.note(format!(
                "partition {sides:?} and crash {victim} for {hold} ms"
            ));
            stage.cluster.partition(&sides)?;
            let start_us = stage.now_us();
            sleep_ms(hold / 3).await;
            stage.crash(victim);
            sleep_ms(hold / 3).await;
            stage.cluster.start(victim, &stage.members)?;
            sleep_ms(hold / 3).await;
            stage.heal(start_us, sides)?;
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

/// Splits `members` at random into two non-empty sides.
pub fn random_split(rng: &mut StdRng, members: &[usize]) -> Vec<Vec<usize>> {
    let mut shuffled = members.to_vec();
    shuffled.shuffle(rng);
    let cut = 1 + rng.random_range(..shuffled.len() - 1);
    vec![shuffled[..cut].to_vec(), shuffled[cut..].to_vec()]
}
