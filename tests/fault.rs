//! The fault-injection suite: real replicas in network namespaces, client
//! sessions hopping between them, a seeded nemesis (partitions, one-way
//! cuts, crashes, restarts, pauses, replicas added and removed, and one
//! long-lived fault per run: a churn of restarts, a replica removed for
//! good, an eviction and re-add, a DNS change), then heal, settle, read
//! every key everywhere, and check the whole history for causal+ anomalies,
//! divergence, lost writes and deleted values coming back, and the store
//! for tombstones left uncollected and metadata beyond its bound.
//!
//! ```text
//! cargo test --test fault                       # CI: fixed + random seeds, ~3 min
//! cargo test --test fault -- --seed 42          # replay one seed
//! cargo test --test fault -- --soak 3600        # keep running seeds for an hour
//! cargo test --test fault -- --duration 60 --runs 10
//! ```
//!
//! Needs root (network namespaces) and iptables; without them it says so
//! loudly and skips.

#[path = "fault/checker.rs"]
mod checker;
#[path = "fault/harness.rs"]
mod harness;
#[path = "fault/lifetime.rs"]
mod lifetime;
#[path = "fault/nemesis.rs"]
mod nemesis;
// Shared with tests/dns.rs, which uses parts this suite does not.
#[allow(dead_code)]
#[path = "fault/netns.rs"]
mod netns;
#[path = "fault/rng.rs"]
mod rng;
#[path = "fault/settle.rs"]
mod settle;
#[path = "fault/workload.rs"]
mod workload;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Options from the command line (after `--`).
struct Options {
    seeds: Vec<u64>,
    duration: Duration,
    soak: Option<Duration>,
    random_runs: usize,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        seeds: Vec::new(),
        duration: Duration::from_secs(25),
        soak: None,
        random_runs: 2,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--seed" => options.seeds.push(
                value("--seed")?
                    .parse()
                    .map_err(|e| format!("--seed: {e}"))?,
            ),
            "--duration" => {
                options.duration = Duration::from_secs(
                    value("--duration")?
                        .parse()
                        .map_err(|e| format!("--duration: {e}"))?,
                )
            }
            "--soak" => {
                options.soak = Some(Duration::from_secs(
                    value("--soak")?
                        .parse()
                        .map_err(|e| format!("--soak: {e}"))?,
                ))
            }
            "--runs" => {
                options.random_runs = value("--runs")?
                    .parse()
                    .map_err(|e| format!("--runs: {e}"))?
            }
            // Flags cargo's test runner passes to every test binary.
            "--nocapture" | "--quiet" | "-q" | "--color" | "--test-threads" | "--format" => {
                if matches!(arg.as_str(), "--color" | "--test-threads" | "--format") {
                    let _ = args.next();
                }
            }
            other if other.starts_with("--") => return Err(format!("unknown option {other}")),
            _ => {} // a test-name filter: the suite is one test
        }
    }
    Ok(options)
}

fn main() -> ExitCode {
    let options = match parse_options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("fault suite: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(why) = netns::unavailable() {
        eprintln!("\n{}\n!!! FAULT SUITE SKIPPED: {why}\n!!! Nothing was checked. Run it as root with iproute2 and iptables installed.\n{}\n", "!".repeat(72), "!".repeat(72));
        println!("test result: ignored. 0 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out");
        return ExitCode::SUCCESS;
    }
    let binary = PathBuf::from(
        std::env::var("CAUSALKV_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_causalkv").to_string()),
    );
    let mut seeds = options.seeds.clone();
    if seeds.is_empty() {
        seeds.extend([1, 2]);
        let clock = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        let mut r = rng::Rng::new(clock);
        seeds.extend((0..options.random_runs).map(|_| r.next_u64() % 1_000_000));
    }
    let soak_end = options.soak.map(|d| Instant::now() + d);
    let mut passed = 0;
    let mut failed = Vec::new();
    let mut index = 0;
    loop {
        let seed = if index < seeds.len() {
            seeds[index]
        } else if soak_end.is_some_and(|end| Instant::now() < end) {
            let mut r = rng::Rng::new(
                index as u64
                    ^ SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .unwrap()
                        .as_nanos() as u64,
            );
            r.next_u64() % 1_000_000
        } else {
            break;
        };
        index += 1;
        println!(
            "\n=== fault run: seed {seed} ({:?} of faults) ===",
            options.duration
        );
        println!(
            "    replay with: cargo test --test fault -- --seed {seed} --duration {}",
            options.duration.as_secs()
        );
        match nemesis::run(seed, options.duration, &binary) {
            Ok(outcome) if outcome.ok => {
                println!("{}", outcome.summary);
                passed += 1;
            }
            Ok(outcome) => {
                println!("{}", outcome.summary);
                println!("FAILED: seed {seed}; logs in {}", outcome.log_dir.display());
                failed.push(seed);
            }
            Err(e) => {
                println!("FAILED: seed {seed}: harness error: {e}");
                failed.push(seed);
            }
        }
    }
    println!("\nfault suite: {passed} passed, {} failed", failed.len());
    if !failed.is_empty() {
        println!("failed seeds: {failed:?}");
    }
    println!(
        "test result: {}. {passed} passed; {} failed; 0 ignored; 0 measured; 0 filtered out",
        if failed.is_empty() { "ok" } else { "FAILED" },
        failed.len()
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
