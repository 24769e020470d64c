//! One seeded fault run: start a cluster, run the sessions, inject faults
//! from a schedule drawn from the seed, heal, settle, read everything, and
//! check the history.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use awc::http::Method;

use super::checker::{self, Crash, FinalRead, History, PartitionWindow};
use super::netns::NetnsCluster;
use super::rng::Rng;
use super::workload::{self, Shared};

/// Replica slots available (three start; the nemesis may add two).
const CAPACITY: usize = 5;
/// Concurrent client sessions.
const SESSIONS: usize = 6;
/// How long a replica waits for causal dependencies in these runs.
const CAUSAL_WAIT_MS: u64 = 3000;
/// How long the cluster may take to converge once healed.
const SETTLE_DEADLINE: Duration = Duration::from_secs(90);

/// What one run found.
pub struct Outcome {
    /// Whether no anomaly, divergence or lost write was found.
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
    let env = vec![
        ("RUST_LOG".to_string(), "info,causalkv=debug".to_string()),
        ("CAUSAL_WAIT_MS".to_string(), CAUSAL_WAIT_MS.to_string()),
        ("FAILURE_TIMEOUT_MS".to_string(), "2000".to_string()),
        ("HEARTBEAT_INTERVAL_MS".to_string(), "200".to_string()),
        ("WORKERS".to_string(), "2".to_string()),
    ];
    let mut cluster = NetnsCluster::create(&tag, subnet, CAPACITY, binary, &log_dir, env)?;
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
    let mut rng = Rng::new(seed);
    let http = awc::Client::builder()
        .connector(awc::Connector::new().timeout(Duration::from_millis(1000)))
        .timeout(Duration::from_secs(5))
        .finish();
    let mut members: Vec<usize> = vec![0, 1, 2];
    for &i in &members.clone() {
        cluster.start(i, &members)?;
    }
    for &i in &members {
        wait_serving(cluster, &http, i).await?;
    }
    let shared = Rc::new(RefCell::new(Shared {
        start: Instant::now(),
        targets: members.iter().map(|&i| (i, cluster.address(i))).collect(),
        ops: Vec::new(),
        sessions: 0,
        allowed: (0..CAPACITY).map(|i| cluster.address(i)).collect(),
    }));
    let until = Instant::now() + duration;
    let request_timeout = Duration::from_millis(CAUSAL_WAIT_MS + 4000);
    let sessions: Vec<_> = (0..SESSIONS)
        .map(|_| {
            actix_rt::spawn(workload::session(
                shared.clone(),
                rng.next_u64(),
                until,
                request_timeout,
            ))
        })
        .collect();

    let mut log = String::new();
    let mut crashes = Vec::new();
    let mut partitions = Vec::new();
    let now_us = |shared: &Rc<RefCell<Shared>>| shared.borrow().now_us();
    while Instant::now() + Duration::from_secs(4) < until {
        sleep_ms(rng.range(300, 1500)).await;
        let hold = rng.range(1500, 5000);
        match rng.below(10) {
            0 | 1 => {
                let sides = random_split(&mut rng, &members);
                let _ = writeln!(
                    log,
                    "{:>7.1}s partition {:?} for {hold} ms",
                    secs(&shared),
                    sides
                );
                cluster.partition(&sides)?;
                let start_us = now_us(&shared);
                sleep_ms(hold).await;
                cluster.heal()?;
                partitions.push(PartitionWindow {
                    start_us,
                    end_us: now_us(&shared),
                    sides,
                });
            }
            2 => {
                let from = members[rng.below(members.len())];
                let to = members[rng.below(members.len())];
                if from != to {
                    let _ = writeln!(
                        log,
                        "{:>7.1}s one-way cut {from} -> {to} for {hold} ms",
                        secs(&shared)
                    );
                    cluster.block(from, to)?;
                    sleep_ms(hold).await;
                    cluster.heal()?;
                }
            }
            3 | 4 => {
                let victim = members[rng.below(members.len())];
                let _ = writeln!(
                    log,
                    "{:>7.1}s crash {victim}, restart after {hold} ms",
                    secs(&shared)
                );
                cluster.crash(victim);
                crashes.push(Crash {
                    replica: victim,
                    at_us: now_us(&shared),
                });
                sleep_ms(hold).await;
                cluster.start(victim, &members)?;
            }
            5 => {
                let victim = members[rng.below(members.len())];
                let _ = writeln!(log, "{:>7.1}s pause {victim} for {hold} ms", secs(&shared));
                cluster.pause(victim);
                sleep_ms(hold).await;
                cluster.resume(victim);
            }
            6 if members.len() < CAPACITY => {
                let slot = (0..CAPACITY)
                    .find(|s| !members.contains(s))
                    .expect("a free slot");
                if rng.chance(0.5) {
                    // Like starting a container whose VIEW names everyone.
                    members.push(slot);
                    let _ = writeln!(
                        log,
                        "{:>7.1}s add replica {slot} (VIEW names all)",
                        secs(&shared)
                    );
                    cluster.start(slot, &members)?;
                } else {
                    // A replica that knows only itself, added through the API.
                    let via = members[rng.below(members.len())];
                    members.push(slot);
                    let _ = writeln!(
                        log,
                        "{:>7.1}s add replica {slot} (alone, then view PUT at {via})",
                        secs(&shared)
                    );
                    cluster.start(slot, &[slot])?;
                    wait_serving(cluster, &http, slot).await?;
                    let body = serde_json::json!({"socket-address": cluster.address(slot)});
                    let host = cluster.address(via);
                    cluster.check_target(&host);
                    let answer = causalkv::client::raw(
                        &http,
                        &host,
                        Method::PUT,
                        "/key-value-store-view",
                        Some(&body),
                    )
                    .await;
                    let _ = writeln!(log, "           -> {:?}", answer.map(|r| r.status));
                }
                if wait_serving(cluster, &http, slot).await.is_ok() {
                    shared
                        .borrow_mut()
                        .targets
                        .push((slot, cluster.address(slot)));
                }
            }
            9 => {
                let victim = members[rng.below(members.len())];
                let kbit = [64, 256, 1024][rng.below(3)];
                let _ = writeln!(
                    log,
                    "{:>7.1}s slow, lossy link at {victim} ({kbit} kbit/s) for {hold} ms",
                    secs(&shared)
                );
                cluster.slow(victim, kbit)?;
                sleep_ms(hold).await;
                cluster.heal()?;
            }
            8 => {
                // Two faults at once: a partition, and a crash on one side.
                let sides = random_split(&mut rng, &members);
                let victim = members[rng.below(members.len())];
                let _ = writeln!(
                    log,
                    "{:>7.1}s partition {:?} and crash {victim} for {hold} ms",
                    secs(&shared),
                    sides
                );
                cluster.partition(&sides)?;
                let start_us = now_us(&shared);
                sleep_ms(hold / 3).await;
                cluster.crash(victim);
                crashes.push(Crash {
                    replica: victim,
                    at_us: now_us(&shared),
                });
                sleep_ms(hold / 3).await;
                cluster.start(victim, &members)?;
                sleep_ms(hold / 3).await;
                cluster.heal()?;
                partitions.push(PartitionWindow {
                    start_us,
                    end_us: now_us(&shared),
                    sides,
                });
            }
            7 if members.len() > 3 => {
                let victim = members[rng.below(members.len())];
                members.retain(|&m| m != victim);
                shared.borrow_mut().targets.retain(|(s, _)| *s != victim);
                let via = members[rng.below(members.len())];
                let _ = writeln!(
                    log,
                    "{:>7.1}s remove replica {victim} (view DELETE at {via})",
                    secs(&shared)
                );
                let body = serde_json::json!({"socket-address": cluster.address(victim)});
                let host = cluster.address(via);
                cluster.check_target(&host);
                let answer = causalkv::client::raw(
                    &http,
                    &host,
                    Method::DELETE,
                    "/key-value-store-view",
                    Some(&body),
                )
                .await;
                let _ = writeln!(log, "           -> {:?}", answer.map(|r| r.status));
                cluster.crash(victim);
                crashes.push(Crash {
                    replica: victim,
                    at_us: now_us(&shared),
                });
            }
            _ => {}
        }
    }
    for handle in sessions {
        let _ = handle.await;
    }

    // Heal everything and let the cluster settle.
    cluster.heal()?;
    for &i in &members {
        cluster.resume(i);
        if !cluster.is_running(i) {
            cluster.start(i, &members)?;
        }
    }
    let healed_at = Instant::now();
    let keys = workload::all_keys();
    let (final_reads, views_ok, view_report) =
        settle(cluster, &http, &members, &keys, &shared).await;
    let settle_time = healed_at.elapsed();

    let history = {
        let s = shared.borrow();
        History {
            ops: s.ops.clone(),
            final_reads,
            crashes,
            partitions,
        }
    };
    let report = checker::check(&history);
    let ok = report.is_ok() && views_ok;
    let mut summary = String::new();
    let _ = writeln!(summary, "nemesis schedule (seed {seed}):\n{log}");
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
    let _ = writeln!(summary, "{report}");
    Ok(Outcome {
        ok,
        summary,
        log_dir: PathBuf::new(),
    })
}

/// Splits `members` at random into two non-empty sides.
fn random_split(rng: &mut Rng, members: &[usize]) -> Vec<Vec<usize>> {
    let mut shuffled = members.to_vec();
    rng.shuffle(&mut shuffled);
    let cut = 1 + rng.below(shuffled.len() - 1);
    vec![shuffled[..cut].to_vec(), shuffled[cut..].to_vec()]
}

fn secs(shared: &Rc<RefCell<Shared>>) -> f64 {
    shared.borrow().start.elapsed().as_secs_f64()
}

async fn sleep_ms(ms: u64) {
    actix_rt::time::sleep(Duration::from_millis(ms)).await;
}

async fn wait_serving(
    cluster: &NetnsCluster,
    http: &awc::Client,
    slot: usize,
) -> Result<(), String> {
    let host = cluster.address(slot);
    cluster.check_target(&host);
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(r) = causalkv::client::raw(http, &host, Method::GET, "/health", None).await {
            if r.status == 200 {
                return Ok(());
            }
        }
        sleep_ms(100).await;
    }
    Err(format!(
        "replica {slot} ({host}) did not start serving; see its log"
    ))
}

/// Polls until every member holds the same value for every key and every
/// view lists exactly the members (or the deadline passes); returns the
/// last reads taken.
async fn settle(
    cluster: &NetnsCluster,
    http: &awc::Client,
    members: &[usize],
    keys: &[String],
    shared: &Rc<RefCell<Shared>>,
) -> (Vec<FinalRead>, bool, String) {
    let deadline = Instant::now() + SETTLE_DEADLINE;
    let mut expected: Vec<String> = members.iter().map(|&m| cluster.address(m)).collect();
    expected.sort_by_key(|a| {
        a.split(':')
            .next()
            .unwrap()
            .split('.')
            .map(|o| o.parse::<u32>().unwrap())
            .collect::<Vec<_>>()
    });
    let expected = expected.join(",");
    loop {
        let mut reads = Vec::new();
        let mut views = Vec::new();
        for &m in members {
            let host = cluster.address(m);
            cluster.check_target(&host);
            let view =
                causalkv::client::raw(http, &host, Method::GET, "/key-value-store-view", None)
                    .await;
            views.push(view.ok().and_then(|r| {
                r.body
                    .get("view")
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
            }));
            for key in keys {
                let path = format!("/key-value-store/{key}");
                let at_us = shared.borrow().now_us();
                let value = match causalkv::client::raw(http, &host, Method::GET, &path, None).await
                {
                    Ok(r) if r.status == 200 => {
                        Some(Some(workload::value_text(r.body.get("value"))))
                    }
                    Ok(r) if r.status == 404 => Some(None),
                    _ => None,
                };
                if let Some(value) = value {
                    reads.push(FinalRead {
                        replica: m,
                        key: key.clone(),
                        value,
                        at_us,
                    });
                }
            }
        }
        let complete = reads.len() == members.len() * keys.len();
        let agree = complete
            && keys.iter().all(|k| {
                let mut values = reads.iter().filter(|r| &r.key == k).map(|r| &r.value);
                let first = values.next();
                values.all(|v| Some(v) == first)
            });
        let views_ok = views
            .iter()
            .all(|v| v.as_deref() == Some(expected.as_str()));
        if (agree && views_ok) || Instant::now() > deadline {
            let report = format!("expected view {expected}; views seen: {views:?}");
            return (reads, views_ok, report);
        }
        sleep_ms(500).await;
    }
}
