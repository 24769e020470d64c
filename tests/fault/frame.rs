//! What every run does around its own faults, whether its replicas keep
//! their state on disk (`nemesis.rs`) or the store is sharded
//! (`sharded.rs`): where its logs go, the stage it plays on, starting the
//! members and the client sessions, healing everything once the faults are
//! over, keeping the history of a failed run and the summary's lines that
//! every run prints; and the short faults both draw from.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::RngExt;

use super::checker::{FinalRead, History};
use super::harness::{sleep_ms, Stage};
use super::netns::NetnsCluster;
use super::tables;
use super::workload::{self, Shared};

/// How long a replica waits for causal dependencies in these runs.
pub const CAUSAL_WAIT_MS: u64 = 3000;

/// The short tag and subnet of this process's cluster, and the directory
/// of a run's logs (`<kind>seed-<seed>-<unix time>`).
pub fn names(kind: &str, seed: u64) -> (String, u8, PathBuf) {
    let subnet = 200 + (std::process::id() % 50) as u8;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let log_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("fault-logs")
        .join(format!("{kind}seed-{seed}-{stamp}"));
    (format!("ckf{subnet}"), subnet, log_dir)
}

/// A stage on `cluster` whose first members are `members`; `relayed` when
/// the store is sharded (requests relayed to the key's shard, and nodes
/// that keep nothing across a crash).
pub fn stage<'a>(
    cluster: &'a mut NetnsCluster,
    members: Vec<usize>,
    dns: Option<&'static str>,
    relayed: bool,
) -> Stage<'a> {
    let http = awc::Client::builder()
        .connector(awc::Connector::new().timeout(Duration::from_millis(1000)))
        .timeout(Duration::from_secs(5))
        .finish();
    let shared = Rc::new(RefCell::new(Shared {
        start: Instant::now(),
        targets: Vec::new(),
        ops: Vec::new(),
        sessions: 0,
        allowed: (0..cluster.slots.len())
            .map(|i| cluster.address(i))
            .collect(),
        relayed,
    }));
    Stage {
        cluster,
        http,
        shared,
        members,
        retired: Vec::new(),
        dns,
        log: String::new(),
        crashes: Vec::new(),
        partitions: Vec::new(),
        ids: Default::default(),
        stopped: Default::default(),
        restarts: Vec::new(),
        probe_keys: Vec::new(),
        memory: relayed,
    }
}

/// Starts every member, and once each is ready lets the sessions use it.
pub async fn start_members(stage: &mut Stage<'_>) -> Result<(), String> {
    for i in stage.members.clone() {
        stage.cluster.start(i, &stage.members)?;
    }
    for i in stage.members.clone() {
        stage.wait_ready(i).await?;
        stage.start_targeting(i);
    }
    Ok(())
}

/// Starts the client sessions (some in a table with siblings if
/// `siblings`), which run until `until`; the run's clock starts now.
pub fn start_sessions(
    stage: &Stage<'_>,
    rng: &mut StdRng,
    seed: u64,
    until: Instant,
    siblings: bool,
) -> Vec<actix_rt::task::JoinHandle<()>> {
    stage.shared.borrow_mut().start = Instant::now();
    let request_timeout = Duration::from_millis(CAUSAL_WAIT_MS + 4000);
    let roles = tables::roles(siblings);
    let seeds = tables::session_seeds(rng, seed, &roles);
    roles
        .into_iter()
        .zip(seeds)
        .map(|(role, session_seed)| {
            actix_rt::spawn(workload::session(
                stage.shared.clone(),
                session_seed,
                until,
                request_timeout,
                role,
            ))
        })
        .collect()
}

/// Once the faults are over: heals every link, resumes every paused member
/// and starts every member that is down.
pub fn heal_all(stage: &mut Stage<'_>) -> Result<(), String> {
    stage.cluster.heal()?;
    for i in stage.members.clone() {
        stage.cluster.resume(i);
        if !stage.cluster.is_running(i) {
            stage.cluster.start(i, &stage.members)?;
        }
    }
    Ok(())
}

/// The history of the run as the stage recorded it, with the final reads.
pub fn history(stage: &Stage<'_>, final_reads: Vec<FinalRead>) -> History {
    let shared = stage.shared.borrow();
    History {
        ops: shared.ops.clone(),
        final_reads,
        crashes: stage.crashes.clone(),
        restarts: stage.restarts.clone(),
        partitions: stage.partitions.clone(),
        relayed: shared.relayed,
        ..History::default()
    }
}

/// Keeps the history of a failed run next to the replicas' logs, for
/// replaying the checker on it.
pub fn keep_history(stage: &mut Stage<'_>, history: &History) {
    let path = stage.cluster.log_dir.join("history.json");
    if let Err(e) = std::fs::write(&path, history.to_json()) {
        stage.note(format!(
            "could not save the history to {}: {e}",
            path.display()
        ));
    }
}

/// The summary's line on the operations and on convergence (`extra`, if
/// any, said of the operations), then the views if they disagreed.
pub fn converged_lines(
    summary: &mut String,
    stage: &Stage<'_>,
    extra: &str,
    views: (bool, &str),
    settle_time: Duration,
) {
    let shared = stage.shared.borrow();
    let (views_ok, view_report) = views;
    let _ = writeln!(
        summary,
        "{} operations by {} sessions{extra}; converged {} after healing ({:.1} s)",
        shared.ops.len(),
        shared.sessions,
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
}

/// Splits `members` at random into two non-empty sides.
pub fn random_split(rng: &mut StdRng, members: &[usize]) -> Vec<Vec<usize>> {
    let mut shuffled = members.to_vec();
    shuffled.shuffle(rng);
    let cut = 1 + rng.random_range(..shuffled.len() - 1);
    vec![shuffled[..cut].to_vec(), shuffled[cut..].to_vec()]
}

/// The short faults of every run, each held for `hold` ms and noted.
impl Stage<'_> {
    /// Holds the partition `sides`, then heals it.
    pub async fn partition_for(&mut self, sides: Vec<Vec<usize>>, hold: u64) -> Result<(), String> {
        self.cluster.partition(&sides)?;
        let start_us = self.now_us();
        sleep_ms(hold).await;
        self.heal(start_us, sides)
    }

    /// Cuts the link from one member to another, one way.
    pub async fn one_way_cut(&mut self, rng: &mut StdRng, hold: u64) -> Result<(), String> {
        let from = self.pick_member(rng);
        let to = self.pick_other(rng, from);
        self.note(format!("one-way cut {from} -> {to} for {hold} ms"));
        self.cluster.block(from, to)?;
        sleep_ms(hold).await;
        self.cluster.heal()
    }

    /// Pauses a member (SIGSTOP), then resumes it.
    pub async fn pause_one(&mut self, rng: &mut StdRng, hold: u64) {
        let victim = self.pick_member(rng);
        self.note(format!("pause {victim} for {hold} ms"));
        self.cluster.pause(victim);
        sleep_ms(hold).await;
        self.cluster.resume(victim);
    }

    /// Makes a member's link slow and lossy.
    pub async fn slow_link(&mut self, rng: &mut StdRng, hold: u64) -> Result<(), String> {
        let victim = self.pick_member(rng);
        let kbit = [64, 256, 1024][rng.random_range(0..3usize)];
        self.note(format!(
            "slow, lossy link at {victim} ({kbit} kbit/s) for {hold} ms"
        ));
        self.cluster.slow(victim, kbit)?;
        sleep_ms(hold).await;
        self.cluster.heal()
    }

    /// Two faults at once: a partition, and a crash on one side, the
    /// victim started again before the partition heals. Returns the victim.
    pub async fn partition_with_crash(
        &mut self,
        rng: &mut StdRng,
        hold: u64,
    ) -> Result<usize, String> {
        let sides = random_split(rng, &self.members);
        let victim = self.pick_member(rng);
        self.note(format!(
            "partition {sides:?} and crash {victim} for {hold} ms"
        ));
        self.cluster.partition(&sides)?;
        let start_us = self.now_us();
        sleep_ms(hold / 3).await;
        self.crash(victim);
        sleep_ms(hold / 3).await;
        self.cluster.start(victim, &self.members)?;
        sleep_ms(hold / 3).await;
        self.heal(start_us, sides)?;
        Ok(victim)
    }
}
