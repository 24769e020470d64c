//! The fault-injection suite: real replicas in network namespaces, client
//! sessions hopping between them, a seeded nemesis (partitions, one-way
//! cuts, crashes, restarts, pauses, replicas added and removed, one
//! long-lived fault per run: a churn of restarts, a replica removed for
//! good, an eviction and re-add, a DNS change; and in every run, since
//! every replica keeps its state in a `DATA_DIR` of its own: every replica
//! killed at once and started again on its disk, and one replica's disk
//! deleted), then heal, settle, read every key everywhere, and check the
//! whole history for causal+ anomalies, divergence, lost writes (a crash
//! that kept the replica's disk excuses none), deleted values coming back
//! and identities that changed across a restart on a kept disk, and the
//! store for tombstones left uncollected and metadata beyond its bound.
//! Some sessions make conditional puts, and some work in a table with
//! siblings (`tables.rs`); the checker judges 412s, `If-None-Match: *`
//! successes and sets of siblings too.
//!
//! Sharded runs (`sharded.rs`) do the same to six memory-only nodes
//! started with `SHARD_COUNT=2`: sessions hop between the nodes of both
//! shards, the nemesis partitions (also splitting a shard's members), cuts
//! one way, pauses, slows links and crashes nodes (each restart a new
//! incarnation), and reshards 2 -> 3 -> 2 while the sessions run; then the
//! same checks, with crashes excusing only the writes of the node that
//! issued them, plus the shard map and key counts after settling.
//!
//! ```text
//! cargo test --test fault                       # CI: fixed + random seeds, ~4-5 min
//! cargo test --test fault -- --seed 42          # replay one seed
//! cargo test --test fault -- --soak 3600        # keep running seeds for an hour
//! cargo test --test fault -- --duration 60 --runs 10
//! ```
//!
//! Every seed is one test, `seed_<n>` (and `sharded_seed_<n>` for the
//! sharded runs: seed 1 and, by default, one random seed), run through
//! libtest's own arguments and output: a filter picks seeds by name
//! (`-- sharded` runs only the sharded ones), `--list` lists them,
//! `--nocapture` (or `--show-output`) prints every run's schedule and report
//! as it finishes (a failing run's report is printed either way). A soak
//! adds one test, `soak`, that keeps drawing seeds until its time is up.
//! Runs go one at a time whatever `--test-threads` says: they share one
//! subnet and want the whole machine.
//!
//! The suite needs root (network namespaces), iproute2 (`ip`, `tc`) and
//! iptables. Without them its tests are ignored, with the reason printed;
//! when `CI` is set (`true` or `1`) they fail instead, since a CI job that
//! checks nothing must not pass.

#[path = "fault/checker.rs"]
mod checker;
#[path = "fault/durability.rs"]
mod durability;
#[path = "fault/frame.rs"]
mod frame;
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
#[path = "fault/settle.rs"]
mod settle;
#[path = "fault/sharded.rs"]
mod sharded;
#[path = "fault/tables.rs"]
mod tables;
#[path = "fault/workload.rs"]
mod workload;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Completion, Failed, Trial};

/// Seeds that run every time, so that CI always covers a known schedule.
const FIXED_SEEDS: [u64; 2] = [1, 2];
/// Seeds of the sharded runs that run every time.
const SHARDED_FIXED_SEEDS: [u64; 1] = [1];
/// What the suite needs, as its messages say it.
const NEEDS: &str = "Run it as root with iproute2 (ip, tc) and iptables installed.";
/// Random seeds are drawn below this (short to type when replaying).
const SEED_BOUND: u64 = 1_000_000;

/// The suite's own options, as `--help` lists them above libtest's.
const OWN_OPTIONS: &str = "\
FAULT SUITE OPTIONS (besides libtest's below):
      --seed <N>       run seed N (repeatable), unsharded (seed_N) and sharded
                       (sharded_seed_N), instead of the fixed and random seeds
      --duration <S>   seconds of faults per run [default: 25]
      --runs <N>       random seeds besides seeds 1 and 2 [default: 2]; the sharded
                       runs take half as many (rounded up) besides their seed 1
      --soak <S>       add a test `soak` that keeps drawing seeds, unsharded and
                       sharded in turn, until S seconds after the start
      --history <FILE> run no seed: check the history a failed run saved
                       (history.json beside its logs) again, as the test
                       `history`, and print the checker's report
";

/// The suite's own options (after `--`, next to libtest's).
struct Options {
    /// `--seed N` (repeatable): run exactly these seeds.
    seeds: Vec<u64>,
    /// `--duration S`: seconds of faults per run.
    duration: Duration,
    /// `--soak S`: keep drawing seeds until S seconds after the start.
    soak: Option<Duration>,
    /// `--runs N`: random seeds besides the fixed ones.
    runs: usize,
    /// `--history FILE`: check a saved history instead of running seeds.
    history: Option<PathBuf>,
}

impl Options {
    /// Takes the suite's own options out of `argv` (`--name value` or
    /// `--name=value`) and returns them with the rest, which is libtest's.
    fn take_from(argv: impl IntoIterator<Item = String>) -> Result<(Options, Vec<String>), String> {
        let mut options = Options {
            seeds: Vec::new(),
            duration: Duration::from_secs(25),
            soak: None,
            runs: 2,
            history: None,
        };
        let mut rest = Vec::new();
        let mut argv = argv.into_iter();
        while let Some(arg) = argv.next() {
            let (name, inline) = match arg.split_once('=') {
                Some((name, value)) => (name.to_string(), Some(value.to_string())),
                None => (arg.clone(), None),
            };
            if !matches!(
                name.as_str(),
                "--seed" | "--duration" | "--soak" | "--runs" | "--history"
            ) {
                rest.push(arg);
                continue;
            }
            let value = inline
                .or_else(|| argv.next())
                .ok_or(format!("{name} needs a value"))?;
            if name == "--history" {
                options.history = Some(PathBuf::from(value));
                continue;
            }
            let number: u64 = value
                .parse()
                .map_err(|e| format!("{name} {value:?}: {e}"))?;
            match name.as_str() {
                "--seed" => options.seeds.push(number),
                "--duration" => options.duration = Duration::from_secs(number),
                "--soak" => options.soak = Some(Duration::from_secs(number)),
                _ => options.runs = number as usize,
            }
        }
        Ok((options, rest))
    }

    /// The seeds to run: those asked for, else the fixed ones and `runs`
    /// random ones (all different).
    fn seeds(&self) -> Vec<u64> {
        if !self.seeds.is_empty() {
            return self.seeds.clone();
        }
        with_random(&FIXED_SEEDS, self.runs)
    }

    /// The seeds of the sharded runs: those asked for, else the fixed ones
    /// and half as many random ones as `runs` (rounded up).
    fn sharded_seeds(&self) -> Vec<u64> {
        if !self.seeds.is_empty() {
            return self.seeds.clone();
        }
        with_random(&SHARDED_FIXED_SEEDS, self.runs.div_ceil(2))
    }
}

/// `fixed` and `random` more seeds drawn at random, all different.
fn with_random(fixed: &[u64], random: usize) -> Vec<u64> {
    let mut seeds = fixed.to_vec();
    while seeds.len() < fixed.len() + random {
        let seed = rand::random_range(0..SEED_BOUND);
        if !seeds.contains(&seed) {
            seeds.push(seed);
        }
    }
    seeds
}

/// Whether the suite can run here, and what its tests do if not.
#[derive(Clone)]
enum Host {
    /// Root, namespaces and the tools: run.
    Ready,
    /// Something is missing and `CI` is not set: ignore, saying why.
    Skip(String),
    /// Something is missing and `CI` is set: fail, saying why.
    Fail(String),
}

impl Host {
    fn probe() -> Host {
        match netns::unavailable() {
            None => Host::Ready,
            Some(why) if netns::under_ci() => Host::Fail(format!(
                "the fault suite cannot run here: {why}; CI is set, so a suite that checks \
                 nothing fails. {NEEDS}"
            )),
            Some(why) => Host::Skip(why),
        }
    }

    /// Prints, above libtest's output, why nothing will be checked.
    fn announce(&self) {
        let line = match self {
            Host::Ready => return,
            Host::Skip(why) => format!("FAULT SUITE SKIPPED, nothing is checked: {why}. {NEEDS}"),
            Host::Fail(why) => format!("FAULT SUITE FAILS: {why}"),
        };
        let rule = "!".repeat(72);
        eprintln!("\n{rule}\n!!! {line}\n{rule}\n");
    }

    /// A test named `name` that runs `run` if this host can.
    fn trial<F>(&self, name: String, run: F) -> Trial
    where
        F: FnOnce() -> Result<(), Failed> + Send + 'static,
    {
        match self.clone() {
            Host::Ready => Trial::test(name, run),
            // Ignored; run anyway (`--include-ignored`), it says why it did nothing.
            Host::Skip(why) => {
                Trial::ignorable_test(name, move || Ok(Completion::ignored_with(why)))
                    .with_ignored_flag(true)
            }
            Host::Fail(why) => Trial::test(name, move || Err(why.into())),
        }
    }
}

/// How one run is carried out and shown.
#[derive(Clone)]
struct Run {
    binary: PathBuf,
    duration: Duration,
    /// Print the schedule and report of runs that pass too.
    verbose: bool,
}

impl Run {
    /// Runs `seed`, sharded or not; a failure carries the run's report and
    /// where its logs are.
    fn seed(&self, seed: u64, sharded: bool) -> Result<(), Failed> {
        let (what, name) = if sharded {
            ("sharded fault run", format!("sharded_seed_{seed}"))
        } else {
            ("fault run", format!("seed_{seed}"))
        };
        let header = format!(
            "{what}: seed {seed} ({:?} of faults)\nreplay with: cargo test --test fault -- \
             --seed {seed} --duration {} --exact {name}",
            self.duration,
            self.duration.as_secs()
        );
        if self.verbose {
            println!("\n=== {header}");
        }
        let outcome = if sharded {
            sharded::run(seed, self.duration, &self.binary)
        } else {
            nemesis::run(seed, self.duration, &self.binary)
        };
        match outcome {
            Ok(outcome) if outcome.ok => {
                if self.verbose {
                    println!("{}", outcome.summary);
                }
                Ok(())
            }
            Ok(outcome) => {
                // Kept beside the logs too, so that a report cut off or
                // filtered out of the test output is not lost.
                let report = outcome.log_dir.join("report.txt");
                let _ = std::fs::write(&report, format!("{header}\n\n{}", outcome.summary));
                Err(format!(
                    "{header}\n\n{}\nFAILED: {name}; logs and report.txt in {}",
                    outcome.summary,
                    outcome.log_dir.display()
                )
                .into())
            }
            Err(e) => Err(format!("{header}\nFAILED: {name}: harness error: {e}").into()),
        }
    }

    /// Draws seeds and runs them, unsharded and sharded in turn, until
    /// `end`; fails naming every failed run.
    fn soak(&self, end: Instant) -> Result<(), Failed> {
        let mut runs = 0;
        let mut failures = Vec::new();
        while Instant::now() < end {
            let seed = rand::random_range(0..SEED_BOUND);
            let sharded = runs % 2 == 1;
            runs += 1;
            if let Err(failed) = self.seed(seed, sharded) {
                let report = failed.message().unwrap_or_default().to_string();
                if self.verbose {
                    println!("{report}");
                }
                let name = if sharded {
                    format!("sharded_seed_{seed}")
                } else {
                    format!("seed_{seed}")
                };
                failures.push((name, report));
            }
        }
        if failures.is_empty() {
            return Ok(());
        }
        let seeds: Vec<String> = failures.iter().map(|(name, _)| name.clone()).collect();
        let reports: Vec<String> = failures.into_iter().map(|(_, report)| report).collect();
        Err(format!(
            "{} of {runs} soak runs failed: {seeds:?}\n\n{}",
            seeds.len(),
            reports.join("\n\n")
        )
        .into())
    }
}

/// Checks the history saved at `path` again; fails with the report if the
/// checker finds anything, prints it either way.
fn check_history(path: &std::path::Path) -> Result<(), Failed> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let history = checker::History::from_json(&text)
        .map_err(|e| format!("{} is not a saved history: {e}", path.display()))?;
    let report = checker::check(&history);
    println!("{report}");
    if report.is_ok() {
        Ok(())
    } else {
        Err(format!(
            "{}: the checker found what the report says\n{report}",
            path.display()
        )
        .into())
    }
}

fn main() -> ExitCode {
    let started = Instant::now();
    let (options, libtest_argv) = match Options::take_from(std::env::args()) {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("fault suite: {e}");
            return ExitCode::from(2);
        }
    };
    if libtest_argv.iter().any(|a| a == "--help" || a == "-h") {
        println!("{OWN_OPTIONS}");
    }
    let mut args = Arguments::from_iter(libtest_argv);
    if let Some(threads) = args.test_threads.filter(|&n| n > 1) {
        eprintln!("fault suite: runs one seed at a time (--test-threads {threads} ignored)");
    }
    args.test_threads = Some(1);

    let host = Host::probe();
    if !args.list {
        host.announce();
    }
    let run = Run {
        binary: PathBuf::from(
            std::env::var("CAUSALKV_BIN")
                .unwrap_or_else(|_| env!("CARGO_BIN_EXE_causalkv").to_string()),
        ),
        duration: options.duration,
        verbose: args.nocapture || args.show_output,
    };
    if let Some(path) = options.history {
        let trial = Trial::test("history", move || check_history(&path));
        return libtest_mimic::run(&args, vec![trial]).exit_code();
    }
    let mut trials: Vec<Trial> = options
        .seeds()
        .into_iter()
        .map(|seed| {
            let run = run.clone();
            host.trial(format!("seed_{seed}"), move || run.seed(seed, false))
        })
        .collect();
    trials.extend(options.sharded_seeds().into_iter().map(|seed| {
        let run = run.clone();
        host.trial(format!("sharded_seed_{seed}"), move || run.seed(seed, true))
    }));
    if let Some(soak) = options.soak {
        let end = started + soak;
        trials.push(host.trial("soak".to_string(), move || run.soak(end)));
    }
    libtest_mimic::run(&args, trials).exit_code()
}
