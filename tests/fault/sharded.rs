//! Sharded runs: six nodes started with `SHARD_COUNT=2` (memory only, no
//! `DATA_DIR`), client sessions that hop between every node whatever its
//! shard (so a session's context crosses shards at every hop), a seeded
//! nemesis, and reshards while the sessions keep writing, reading and
//! deleting.
//!
//! The faults, drawn one after another from the seed: partitions (two
//! random sides, or sides that split one shard's members), one-way cuts,
//! pauses (SIGSTOP), slow and lossy links, crashes (SIGKILL) and restarts,
//! a partition with a crash inside it. A crashed node keeps nothing (no
//! disk): it comes back as a new incarnation, computes the first map from
//! `VIEW`, learns the current one from the others and copies its shard's
//! state from a member. So that no shard ever loses every copy of a write
//! (which would lose it without its own replica having crashed), a node
//! is crashed only while every other node is running and holds its
//! shard's state; a restarted node is waited for until it serves under the
//! current map.
//!
//! Every run reshards at least twice at times drawn from the seed: from 2
//! shards to 3 in the first half of the faults, and back (or to 3 again if
//! the first did not happen) in the second. Each reshard may be disturbed:
//! a node crashed (not the coordinator) or paused during it, a partition
//! that cuts a node off during it, a node cut off since before it (past the
//! failure timeout, so that the reshard leaves it out, while sessions may
//! still write there), or a second reshard sent to another node at once; a
//! disturbed reshard that was not done is asked again,
//! undisturbed, once every node serves again. A reshard answers 200
//! (done), 409 (another one runs), 503 (a step failed, nothing moved) or
//! 400 (fewer than 2 live nodes per shard; asked again for a few seconds):
//! all are recorded in the schedule; what follows from a 200 is checked by
//! the checker like any other history: no acknowledged write lost (writes
//! excused only by the crash of the node that issued them), and by the
//! shard map and key counts after settling.
//!
//! After the faults: heal, restart whatever is down, settle (every key read
//! at every node agrees, every view lists every node), then the shard map
//! (every node answers the same shards and members, each shard has at least
//! two members, and the key counts of the shards sum to the keys present,
//! each shard's to the keys its placement deals it), the lifetime checks
//! with the sharded bounds (see `settle::Bounds::sharded`), identities (a
//! restarted node is a new incarnation), and the checker on the whole
//! history, told that requests were relayed ([`History::relayed`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use awc::http::Method;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{json, Value};

use super::checker::{self, FinalRead};
use super::frame::{self, random_split};
use super::harness::{sleep_ms, Stage, FAILURE_TIMEOUT};
use super::nemesis::{replica_env, Outcome};
use super::netns::NetnsCluster;
use super::settle::{self, Verdict};
use super::tables;
use super::workload;

/// Nodes of a sharded run, all started at once.
pub const NODES: usize = 6;
/// Shards at start (`SHARD_COUNT`).
const SHARDS_AT_START: u64 = 2;
/// How long a node may take to serve under the current map after a start.
const PLACED_DEADLINE: Duration = Duration::from_secs(40);
/// How long the shard map and key counts may take to agree after settling.
const MAP_DEADLINE: Duration = Duration::from_secs(30);
/// How long a reshard may take before the harness stops waiting for its
/// answer (the store bounds a step at a node to 120 s).
const RESHARD_TIMEOUT: Duration = Duration::from_secs(200);
/// How long a reshard refused for want of live nodes (400) is retried.
const RESHARD_RETRY: Duration = Duration::from_secs(10);
/// How long a node is cut off before a reshard that should leave it out:
/// past the failure timeout, so that the coordinator counts it as down.
const LEFT_OUT_BEFORE: Duration = Duration::from_millis(FAILURE_TIMEOUT.as_millis() as u64 + 1000);

/// One reshard asked for, and how it ended.
#[derive(Clone, Debug)]
pub struct ReshardRecord {
    /// Seconds into the run when it was sent.
    pub at: f64,
    /// The node it was sent to (the coordinator).
    pub via: usize,
    /// Shards before and the count asked for.
    pub from: u64,
    /// The count asked for.
    pub to: u64,
    /// The status, or why there was none.
    pub answer: Result<u16, String>,
    /// How long it took.
    pub took: Duration,
    /// What else happened meanwhile.
    pub disturbance: String,
}

/// Runs one sharded seed.
pub fn run(seed: u64, duration: Duration, binary: &Path) -> Result<Outcome, String> {
    let (tag, subnet, log_dir) = frame::names("sharded-", seed);
    let mut env = replica_env();
    env.push(("SHARD_COUNT".to_string(), SHARDS_AT_START.to_string()));
    // Memory only: no keep_state, so no DATA_DIR (refused with SHARD_COUNT).
    let mut cluster = NetnsCluster::create(&tag, subnet, NODES, binary, &log_dir, env)?;
    let system = actix_rt::System::new();
    let mut outcome = system.block_on(drive(seed, duration, &mut cluster))?;
    outcome.log_dir = log_dir;
    Ok(outcome)
}

async fn drive(
    seed: u64,
    duration: Duration,
    cluster: &mut NetnsCluster,
) -> Result<Outcome, String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut stage = frame::stage(cluster, (0..NODES).collect(), None, true);
    frame::start_members(&mut stage).await?;
    let until = Instant::now() + duration;
    let sessions = frame::start_sessions(&stage, &mut rng, seed, until, false);

    // Two reshards at times drawn from the seed: to 3 shards in the first
    // half of the faults, back (or to 3 if the first did not happen) in
    // the second.
    let window = duration.saturating_sub(Duration::from_secs(4));
    let mut reshards = vec![
        Instant::now() + window.mul_f64(rng.random_range(0.15..0.4)),
        Instant::now() + window.mul_f64(rng.random_range(0.55..0.8)),
    ];
    let mut records = Vec::new();
    while Instant::now() + Duration::from_secs(4) < until {
        if reshards.first().is_some_and(|&at| Instant::now() >= at) {
            reshards.remove(0);
            reshard(&mut stage, &mut rng, &mut records).await?;
            continue;
        }
        sleep_ms(rng.random_range(300..1500)).await;
        short_fault(&mut stage, &mut rng).await?;
    }
    // Those the faults before left no time for still happen, while the
    // sessions finish.
    for _ in reshards {
        reshard(&mut stage, &mut rng, &mut records).await?;
    }
    for handle in sessions {
        let _ = handle.await;
    }

    // Heal everything and let the cluster settle.
    frame::heal_all(&mut stage)?;
    let healed_at = Instant::now();
    for i in stage.members.clone() {
        if let Err(e) = wait_placed(&mut stage, i).await {
            stage.note(format!("after healing: {e}"));
        }
    }
    let keys = workload::all_keys();
    let (final_reads, views_ok, view_report) = settle::settle(&stage, &keys).await;
    let settle_time = healed_at.elapsed();
    let (map, map_verdict) = map_checks(&stage, &final_reads).await;
    let bounds = settle::Bounds::sharded(&stage.members, &map);
    let (collection, metadata) = settle::lifetime_checks(&stage, &keys, &bounds).await;
    stage.check_identities().await;

    let history = frame::history(&stage, final_reads);
    let report = checker::check(&history);
    let reshard_ok = records.iter().any(|r| r.answer == Ok(200));
    let ok = report.is_ok() && views_ok && map_verdict.ok && collection.ok && metadata.ok;
    if !ok {
        frame::keep_history(&mut stage, &history);
    }
    let new_incarnations = history
        .restarts
        .iter()
        .filter(|r| r.before != r.after)
        .count();
    let mut summary = String::new();
    let _ = writeln!(
        summary,
        "nemesis schedule (sharded: seed {seed}, {NODES} nodes, SHARD_COUNT={SHARDS_AT_START}, memory only):\n{}",
        stage.log
    );
    let _ = writeln!(
        summary,
        "reshards: {} asked, {} done (200){}; {}",
        records.len(),
        records.iter().filter(|r| r.answer == Ok(200)).count(),
        if reshard_ok {
            ""
        } else {
            " (NONE DONE: nothing moved in this run)"
        },
        show_reshards(&records)
    );
    let _ = writeln!(
        summary,
        "crashes (memory: each lost its node's state): {}; identities checked on {} restart(s), {} new incarnation(s)",
        history.crashes.len(),
        history.restarts.len(),
        new_incarnations
    );
    let writers = history.ops.iter().filter(|o| o.served_by.is_some()).count();
    let relayed_writes = history
        .ops
        .iter()
        .filter(|o| o.served_by.is_some_and(|s| s != o.replica))
        .count();
    let extra = format!(
        " ({writers} acknowledged writes with their issuing node known, {relayed_writes} of them relayed to another node)"
    );
    frame::converged_lines(
        &mut summary,
        &stage,
        &extra,
        (views_ok, &view_report),
        settle_time,
    );
    let _ = writeln!(summary, "{}", tables::summary(&history));
    let _ = writeln!(summary, "{}", map_verdict.line);
    let _ = writeln!(summary, "{}", collection.line);
    let _ = writeln!(summary, "{}", metadata.line);
    let _ = writeln!(summary, "{report}");
    Ok(Outcome {
        ok,
        summary,
        log_dir: PathBuf::new(),
    })
}

/// One line per reshard for the summary.
fn show_reshards(records: &[ReshardRecord]) -> String {
    let parts: Vec<String> = records
        .iter()
        .map(|r| {
            let answer = match &r.answer {
                Ok(status) => status.to_string(),
                Err(e) => format!("no answer ({e})"),
            };
            format!(
                "{:.1}s {}->{} at node {}: {answer} in {:.1} s{}",
                r.at,
                r.from,
                r.to,
                r.via,
                r.took.as_secs_f64(),
                if r.disturbance.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", r.disturbance)
                }
            )
        })
        .collect();
    parts.join("; ")
}

/// Draws one short fault and plays it out. A crash waits until the node
/// is back and serves under the current map, so that at most one node at
/// a time lacks its shard's state.
async fn short_fault(stage: &mut Stage<'_>, rng: &mut StdRng) -> Result<(), String> {
    let hold = rng.random_range(1500..5000);
    match rng.random_range(0..10) {
        0 | 1 => {
            let sides = random_split(rng, &stage.members);
            stage.note(format!("partition {sides:?} for {hold} ms"));
            stage.partition_for(sides, hold).await?;
        }
        2 => {
            let sides = split_a_shard(stage, rng).await;
            stage.note(format!(
                "partition {sides:?} (splits a shard's members) for {hold} ms"
            ));
            stage.partition_for(sides, hold).await?;
        }
        3 => stage.one_way_cut(rng, hold).await?,
        4 | 5 => {
            let victim = stage.pick_member(rng);
            stage.note(format!("crash {victim}, restart after {hold} ms"));
            crash_and_restart(stage, victim, hold).await?;
        }
        6 => stage.pause_one(rng, hold).await,
        7 => stage.slow_link(rng, hold).await?,
        8 => {
            let victim = stage.partition_with_crash(rng, hold).await?;
            back(stage, victim).await;
        }
        _ => {}
    }
    Ok(())
}

/// Crashes `victim` (it loses its state), starts it again after `hold` ms
/// and waits until it serves under the current map.
async fn crash_and_restart(stage: &mut Stage<'_>, victim: usize, hold: u64) -> Result<(), String> {
    let crashed = Instant::now();
    stage.crash(victim);
    sleep_ms(hold).await;
    stage.cluster.start(victim, &stage.members)?;
    back(stage, victim).await;
    stage.detail(format!(
        "replica {victim} serves again {:.1} s after the crash",
        crashed.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// Waits until `i`, just started again, serves under the current map, and
/// notes under the current fault what it came back as (or that it did not).
async fn back(stage: &mut Stage<'_>, i: usize) {
    let seen = stage.restarts.len();
    match wait_placed(stage, i).await {
        Ok(placed) => {
            let was = stage.restarts[seen..]
                .iter()
                .find(|r| r.replica == i)
                .map(|r| format!(" (was {})", r.before))
                .unwrap_or_default();
            stage.detail(format!("replica {i} is back, {placed}{was}"));
        }
        Err(e) => stage.detail(e),
    }
}

/// Polls until node `i` is ready (learning its identity) and holds the
/// newest map any running node holds, with no reshard pending there, and
/// its replica is of the group that map gives it. Says where it is.
async fn wait_placed(stage: &mut Stage<'_>, i: usize) -> Result<String, String> {
    stage.wait_ready(i).await?;
    let deadline = Instant::now() + PLACED_DEADLINE;
    loop {
        let mut newest = 0;
        for &m in &stage.members {
            if m != i {
                if let Some(h) = stage.health(m).await {
                    newest = newest.max(map_version(&h));
                }
            }
        }
        if let Some(h) = stage.health(i).await {
            let shard = &h["shard"];
            let ready = h["ready"].as_bool() == Some(true);
            let pending = !shard["resharding"].is_null();
            if ready && !pending && map_version(&h) >= newest {
                if let Some(id) = h["replica"].as_str() {
                    stage.learn_identity(i, id.to_string());
                }
                let group = shard["group"].as_str().unwrap_or("?");
                return Ok(format!(
                    "in shard {} (group {group}, map version {}) as {}",
                    shard["shard-id"],
                    map_version(&h),
                    h["replica"].as_str().unwrap_or("?")
                ));
            }
        }
        if Instant::now() > deadline {
            return Err(format!(
                "replica {i} did not serve under the current map within {PLACED_DEADLINE:?}; see its log"
            ));
        }
        sleep_ms(200).await;
    }
}

/// The map version in a `/health` body (0 when it has none).
fn map_version(health: &Value) -> u64 {
    health["shard"]["map-version"].as_u64().unwrap_or(0)
}

/// Two sides that split the members of one shard (per the map a node
/// answers), the other nodes dealt to either side at random.
async fn split_a_shard(stage: &Stage<'_>, rng: &mut StdRng) -> Vec<Vec<usize>> {
    let via = stage.pick_member(rng);
    let Some(map) = shard_map(stage, via).await else {
        return random_split(rng, &stage.members);
    };
    let shards: Vec<&Vec<usize>> = map.values().filter(|m| m.len() >= 2).collect();
    if shards.is_empty() {
        return random_split(rng, &stage.members);
    }
    let shard = shards[rng.random_range(..shards.len())];
    let mut split = random_split(rng, shard);
    for &m in &stage.members {
        if !shard.contains(&m) {
            split[rng.random_range(0..2usize)].push(m);
        }
    }
    split
}

/// The shards and their members (slots) as node `via` answers them.
async fn shard_map(stage: &Stage<'_>, via: usize) -> Option<BTreeMap<u64, Vec<usize>>> {
    let ids = shard_get(stage, via, "shard-ids").await?;
    let mut map = BTreeMap::new();
    for id in ids["shard-ids"].as_array()? {
        let id = id.as_u64()?;
        let members = shard_get(stage, via, &format!("shard-id-members/{id}")).await?;
        let slots: Option<Vec<usize>> = members["shard-id-members"]
            .as_array()?
            .iter()
            .map(|a| {
                let a = a.as_str()?;
                (0..NODES).find(|&s| stage.cluster.address(s) == a)
            })
            .collect();
        map.insert(id, slots?);
    }
    Some(map)
}

/// A `GET /key-value-store-shard/<path>` at node `via`: its body if 200.
async fn shard_get(stage: &Stage<'_>, via: usize, path: &str) -> Option<Value> {
    let host = stage.cluster.address(via);
    stage.cluster.check_target(&host);
    let path = format!("/key-value-store-shard/{path}");
    let answer = causalkv::client::raw(&stage.http, &host, Method::GET, &path, None).await;
    answer.ok().filter(|r| r.status == 200).map(|r| r.body)
}

/// Sends a reshard to `count` shards to node `via`; returns the status (or
/// why there was none) and the body.
async fn send_reshard(http: &awc::Client, host: &str, count: u64) -> (Result<u16, String>, Value) {
    let body = json!({"shard-count": count});
    let path = "/key-value-store-shard/reshard";
    match causalkv::client::raw(http, host, Method::PUT, path, Some(&body)).await {
        Ok(r) => (Ok(r.status), r.body),
        Err(e) => (Err(e), Value::Null),
    }
}

/// What else happens while a reshard runs.
#[derive(Clone, Copy, Debug)]
enum Disturbance {
    None,
    /// A node other than the coordinator crashed, restarted later.
    Crash,
    /// A node other than the coordinator paused for a moment.
    Pause,
    /// A node other than the coordinator cut off for a moment.
    CutOff,
    /// A second reshard sent to another node at once.
    Concurrent,
    /// A node other than the coordinator cut off from every other node
    /// past the failure timeout before the reshard and during it (while
    /// the sessions may still write there): the reshard leaves it out, or
    /// is refused (400) until it is back.
    LeftOut,
}

/// Reshards the store (to 3 shards from 2, to 2 from 3) through a node
/// picked at random, maybe with something else happening meanwhile, and
/// records how it ended.
///
/// A disturbed reshard that was not done is asked again, undisturbed, once
/// every node serves again (as an operator would), so that most runs move
/// keys while the sessions run.
async fn reshard(
    stage: &mut Stage<'_>,
    rng: &mut StdRng,
    records: &mut Vec<ReshardRecord>,
) -> Result<(), String> {
    let disturbance = match rng.random_range(0..9) {
        0 | 1 => Disturbance::Crash,
        2 => Disturbance::Pause,
        3 => Disturbance::CutOff,
        4 => Disturbance::Concurrent,
        5 => Disturbance::LeftOut,
        _ => Disturbance::None,
    };
    let record = reshard_once(stage, rng, disturbance).await?;
    let again = record.answer != Ok(200) && !matches!(disturbance, Disturbance::None);
    records.push(record);
    if again {
        let record = reshard_once(stage, rng, Disturbance::None).await?;
        records.push(record);
    }
    Ok(())
}

/// One reshard (see [`reshard`]) with `disturbance` meanwhile.
async fn reshard_once(
    stage: &mut Stage<'_>,
    rng: &mut StdRng,
    disturbance: Disturbance,
) -> Result<ReshardRecord, String> {
    // Every node up and serving under the current map first, so that the
    // store has the nodes a reshard needs.
    for i in stage.members.clone() {
        if let Err(e) = wait_placed(stage, i).await {
            stage.note(format!("before a reshard: {e}"));
        }
    }
    let via = stage.pick_member(rng);
    let from = match shard_map(stage, via).await {
        Some(map) => map.len() as u64,
        None => SHARDS_AT_START,
    };
    let to = if from == 3 { 2 } else { 3 };
    let other = stage.pick_other(rng, via);
    let delay = rng.random_range(0..300);
    let hold = rng.random_range(1000..3000);
    stage.note(format!(
        "RESHARD {from} -> {to} at node {via}{}",
        match disturbance {
            Disturbance::None => String::new(),
            Disturbance::Crash =>
                format!("; {delay} ms in, crash node {other}, restart after {hold} ms"),
            Disturbance::Pause => format!("; {delay} ms in, pause node {other} for {hold} ms"),
            Disturbance::CutOff => {
                format!("; {delay} ms in, cut node {other} off for {hold} ms")
            }
            Disturbance::Concurrent => format!("; a reshard to {to} at node {other} at once"),
            Disturbance::LeftOut => format!(
                "; node {other} cut off from {} ms before it until {hold} ms in",
                LEFT_OUT_BEFORE.as_millis()
            ),
        }
    ));
    // Cut off long enough before that the coordinator counts it as down.
    let mut cut = None;
    if matches!(disturbance, Disturbance::LeftOut) {
        let rest: Vec<usize> = stage
            .members
            .iter()
            .copied()
            .filter(|&m| m != other)
            .collect();
        let sides = vec![vec![other], rest];
        stage.cluster.partition(&sides)?;
        cut = Some((stage.now_us(), sides));
        sleep_ms(LEFT_OUT_BEFORE.as_millis() as u64).await;
    }
    let http = awc::Client::builder()
        .connector(awc::Connector::new().timeout(Duration::from_millis(1000)))
        .timeout(RESHARD_TIMEOUT)
        .finish();
    let host = stage.cluster.address(via);
    stage.cluster.check_target(&host);
    let at = stage.seconds();
    let started = Instant::now();
    let mut answer;
    let mut body;
    let mut disturbed = String::new();
    loop {
        let request = {
            let (http, host) = (http.clone(), host.clone());
            actix_rt::spawn(async move { send_reshard(&http, &host, to).await })
        };
        let second = match disturbance {
            Disturbance::Concurrent if disturbed.is_empty() => {
                let (http, host) = (http.clone(), stage.cluster.address(other));
                Some(actix_rt::spawn(async move {
                    send_reshard(&http, &host, to).await
                }))
            }
            _ => None,
        };
        if disturbed.is_empty() {
            disturbed = disturb(stage, disturbance, other, (delay, hold), cut.take()).await?;
        }
        (answer, body) = request
            .await
            .unwrap_or_else(|e| (Err(format!("the request task failed: {e}")), Value::Null));
        if let Some(second) = second {
            let (status, body) = second
                .await
                .unwrap_or_else(|e| (Err(format!("the request task failed: {e}")), Value::Null));
            stage.detail(format!(
                "the reshard at node {other} answered {} {body}",
                status.unwrap_or(0)
            ));
        }
        // Not enough live nodes yet (a node just back): ask again a few
        // times, as an operator would.
        if answer == Ok(400) && started.elapsed() < RESHARD_RETRY {
            stage.detail(format!("400 {body}; asked again"));
            sleep_ms(500).await;
            continue;
        }
        break;
    }
    let took = started.elapsed();
    stage.detail(format!(
        "answered {} in {:.1} s: {body}",
        match &answer {
            Ok(status) => status.to_string(),
            Err(e) => format!("nothing ({e})"),
        },
        took.as_secs_f64()
    ));
    if answer == Ok(200) {
        // Every node holds the new map at once (the answer says so).
        let mut counts = Vec::new();
        for &m in &stage.members {
            let count = shard_map(stage, m).await.map(|map| map.len());
            counts.push(format!(
                "{m}: {}",
                count.map_or("?".to_string(), |c| c.to_string())
            ));
        }
        stage.detail(format!(
            "shards per node right after: [{}]",
            counts.join(", ")
        ));
    }
    Ok(ReshardRecord {
        at,
        via,
        from,
        to,
        answer,
        took,
        disturbance: disturbed,
    })
}

/// Plays out `disturbance` on node `other` while a reshard runs, `delay`
/// ms after it was sent and for `hold` ms (a cut made before it, `cut`,
/// since when and its sides, is healed after `hold` ms); returns what was
/// done.
async fn disturb(
    stage: &mut Stage<'_>,
    disturbance: Disturbance,
    other: usize,
    (delay, hold): (u64, u64),
    cut: Option<(u64, Vec<Vec<usize>>)>,
) -> Result<String, String> {
    if let Some((start_us, sides)) = cut {
        sleep_ms(hold).await;
        stage.heal(start_us, sides)?;
        return Ok(format!("node {other} cut off before and during it"));
    }
    sleep_ms(delay).await;
    Ok(match disturbance {
        Disturbance::None => "undisturbed".to_string(),
        Disturbance::Concurrent => format!("a second reshard at node {other}"),
        Disturbance::Crash => {
            crash_and_restart(stage, other, hold).await?;
            format!("node {other} crashed during it")
        }
        Disturbance::Pause => {
            stage.cluster.pause(other);
            sleep_ms(hold).await;
            stage.cluster.resume(other);
            format!("node {other} paused during it")
        }
        Disturbance::LeftOut => unreachable!("a node left out is cut off before"),
        Disturbance::CutOff => {
            let rest: Vec<usize> = stage
                .members
                .iter()
                .copied()
                .filter(|&m| m != other)
                .collect();
            stage.partition_for(vec![vec![other], rest], hold).await?;
            format!("node {other} cut off during it")
        }
    })
}

/// After settling: every node answers the same shards and members, every
/// shard has at least two members, and (polled until the deadline) the
/// key counts of the shards sum to the keys present in the final reads,
/// each shard's count the keys its placement deals it
/// ([`checker::key_count_problems`]). Returns the map.
async fn map_checks(
    stage: &Stage<'_>,
    final_reads: &[FinalRead],
) -> (BTreeMap<u64, Vec<usize>>, Verdict) {
    let deadline = Instant::now() + MAP_DEADLINE;
    loop {
        let mut problems = Vec::new();
        let mut maps = Vec::new();
        for &m in &stage.members {
            match shard_map(stage, m).await {
                Some(map) => maps.push((m, map)),
                None => problems.push(format!("node {m} did not answer its shard map")),
            }
        }
        let map = maps.first().map(|(_, map)| map.clone()).unwrap_or_default();
        for (m, other) in &maps {
            if *other != map {
                problems.push(format!("node {m} answers the map {other:?}, not {map:?}"));
            }
        }
        for (id, members) in &map {
            if members.len() < 2 {
                problems.push(format!(
                    "shard {id} has {} member(s): {members:?}",
                    members.len()
                ));
            }
        }
        let mut counts = BTreeMap::new();
        for (j, &id) in map.keys().enumerate() {
            // Asked at different nodes, so most are relayed.
            let via = stage.members[j % stage.members.len()];
            let count = shard_get(stage, via, &format!("shard-id-key-count/{id}"))
                .await
                .and_then(|b| b["shard-id-key-count"].as_u64());
            counts.insert(id, count);
        }
        let layout = causalkv::shard::Layout::new(map.len().max(1) as u32);
        let shard_of = |key: &str| u64::from(layout.shard_of(key)) + 1;
        problems.extend(checker::key_count_problems(final_reads, &counts, shard_of));
        if problems.is_empty() {
            let counted: Vec<u64> = counts.values().map(|c| c.unwrap_or(0)).collect();
            let line = format!(
                "shards: every node answers the map {map:?}; key counts {counted:?} sum to the {} keys present, each shard's to the keys placed in it",
                counted.iter().sum::<u64>()
            );
            return (map, Verdict { ok: true, line });
        }
        if Instant::now() > deadline {
            let line = format!(
                "SHARD MAP OR KEY COUNTS WRONG after {MAP_DEADLINE:?}: {}",
                problems.join("; ")
            );
            return (map, Verdict { ok: false, line });
        }
        sleep_ms(500).await;
    }
}
