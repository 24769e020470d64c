//! Scripted scenarios: a small command language over the simulated
//! cluster, checked by `goldenscript` against the files in `sim/scripts/`.
//!
//! Each file is a series of commands, each block followed by `---` and
//! the output the engine gave (regenerate after a change with
//! `UPDATE_GOLDENFILES=1 cargo test --lib sim::script`, then read the diff).
//! Replicas are `r0`, `r1`, ... (at `10.0.0.1:8085`, ...); an incarnation
//! prints as `r0#a` (`r0#b` after a restart), a write as `r0#a:1` (its
//! dot), a clock or a client's context as `{r0#a:1 r1#a:2}`, a stored
//! version as `x=1 (r0#a:1 @1)` (dot, then Lamport time). Nothing moves
//! unless a command moves it: the network runs only in `run` (and in the
//! waits of `cluster`, `settle` and `wait=`), and `deliver` hands one
//! replica's queued writes to another off the network.
//!
//! | command | does |
//! | --- | --- |
//! | `cluster N [seed=S]` | starts `N` replicas of a new store and runs until they joined each other |
//! | `put rI K=V [client=C] [wait=MS]` | client `C` (default `c`) writes; `wait` lets it wait for its context as the network runs |
//! | `get rI K [client=C] [wait=MS]` | client `C` reads |
//! | `delete rI K [client=C] [wait=MS]` | client `C` deletes |
//! | `deliver rA rB` | hands `rB` every write `rA` has queued for it |
//! | `run MS` | runs the network for `MS` ms; prints views and readiness that changed (`[verbose]`: every step) |
//! | `partition rA/rB rC ...` | cuts the network into the groups named (`/` joins a group; the rest form one more) |
//! | `heal` | joins the network again |
//! | `crash rI` / `restart rI` | loses replica `rI` / starts a new incarnation there |
//! | `status [rI ...]` | readiness, view, suspects, applied clock, keys, tombstones, buffered writes |
//! | `store [rI ...]` | every version held, tombstones included |
//! | `context C` | client `C`'s causal context |
//! | `settle` | heals, restarts, runs until every replica holds the same, and checks it |

use std::error::Error;
use std::fmt::Write as _;

use goldenscript::{Command, Context};

use super::trace::{self, Event};
use std::collections::BTreeMap;

use crate::store::{Key, Value, Version};

use super::super::{Millis, Outcome, Wait};

use super::cluster::*;
use super::rng::*;
use super::session::*;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// Runs the scenarios of one file.
#[derive(Default)]
struct Runner {
    sim: Option<Sim>,
    clients: BTreeMap<String, usize>,
    /// Incarnations started at each address.
    boots: Vec<u8>,
}

/// Replica `rI` as its number.
fn replica(name: &str) -> Result<usize> {
    let n = name.strip_prefix('r').and_then(|n| n.parse().ok());
    n.ok_or_else(|| format!("not a replica: {name}").into())
}

/// A value as written: JSON if it parses, else a JSON string.
fn value(text: &str) -> Result<Value> {
    let json = match Value::from_json(text) {
        Ok(Some(value)) => return Ok(value),
        _ => serde_json::to_string(text)?,
    };
    Value::from_json(&json)?.ok_or_else(|| "null is no value".into())
}

impl Runner {
    fn sim(&mut self) -> Result<&mut Sim> {
        self.sim.as_mut().ok_or_else(|| "no cluster yet".into())
    }

    fn up(&mut self, i: usize) -> Result<&mut Sim> {
        let sim = self.sim()?;
        match sim.nodes.get(i) {
            Some(Some(_)) => Ok(sim),
            Some(None) => Err(format!("r{i} is down").into()),
            None => Err(format!("no replica r{i}").into()),
        }
    }

    fn cluster(&mut self, n: usize, seed: u64) -> Result<String> {
        let mut sim = Sim::empty(seed, CALM);
        sim.trace.keep(1 << 20);
        for _ in 0..n {
            sim.add_address();
        }
        self.boots = vec![0; n];
        for i in 0..n {
            self.boot(&mut sim, i);
        }
        sim.settle(CALM);
        self.sim = Some(sim);
        self.status(&[])
    }

    fn boot(&mut self, sim: &mut Sim, i: usize) {
        let incarnation = char::from(b'a' + self.boots[i] % 26).to_string();
        self.boots[i] += 1;
        sim.boot_as(i, &incarnation);
    }

    /// A client operation: `put`, `get` or `delete`.
    fn op(&mut self, name: &str, command: &Command) -> Result<String> {
        let mut args = command.consume_args();
        let at = replica(args.next_pos().ok_or("which replica?")?)?;
        let client = args.take_key("client").unwrap_or("c").to_string();
        let wait: Millis = args
            .take_key("wait")
            .map(str::parse)
            .transpose()?
            .unwrap_or(0);
        let (op, written) = match name {
            "put" => {
                let (k, v) = args.next_key().ok_or("put rI key=value")?;
                (Op::Put(key(k)), Some(value(v)?))
            }
            _ => {
                let k = key(args.next_pos().ok_or("which key?")?);
                (
                    if name == "get" {
                        Op::Get(k)
                    } else {
                        Op::Delete(k)
                    },
                    None,
                )
            }
        };
        args.reject_next()?;
        let next = self.clients.len();
        let s = *self.clients.entry(client.clone()).or_insert(next);
        let sim = self.up(at)?;
        while sim.sessions.len() <= s {
            sim.session();
        }
        let since = sim.now;
        let result = sim.served_within(s, at, &op, written.clone(), wait);
        let waited = sim.now - since;
        let mut line = format!("{client}@r{at}: {op}");
        if let Some(v) = &written {
            let _ = write!(line, "={}", v.as_json());
        }
        line += " -> ";
        match result {
            Ok(Served { value, outcome }) => {
                let said = match (outcome, value) {
                    (Some(Outcome::Created), _) => "201 created".to_string(),
                    (Some(Outcome::Updated), _) => "200 updated".into(),
                    (Some(Outcome::Deleted), _) => "200 deleted".into(),
                    (Some(Outcome::Unmet), _) => "412 precondition failed".into(),
                    (Some(Outcome::NotFound), _) | (None, None) => "404 not found".into(),
                    (Some(Outcome::NoTable), _) => "404 no such table".into(),
                    (None, Some(v)) => format!("200 {}", v.as_json()),
                };
                let ctx = trace::context(&sim.sessions[s].ctx);
                let _ = write!(line, "{said}, context {ctx}");
            }
            Err(Wait::Missing(missing)) => {
                let _ = write!(line, "not served: r{at} lacks {}", trace::clock(&missing));
            }
            Err(wait) => {
                let _ = write!(line, "not served: {wait:?}");
            }
        }
        if waited > 0 {
            let _ = write!(line, " (after {waited} ms)");
        }
        Ok(line + "\n")
    }

    fn status(&mut self, at: &[usize]) -> Result<String> {
        let sim = self.sim()?;
        let all: Vec<usize> = (0..sim.nodes.len()).collect();
        let mut out = String::new();
        for &i in if at.is_empty() { &all } else { at } {
            match sim.nodes.get(i).ok_or(format!("no replica r{i}"))? {
                Some(node) => out += &trace::status(i, &node.replica),
                None => out += &format!("r{i} down"),
            }
            out += "\n";
        }
        Ok(out)
    }

    fn store(&mut self, at: &[usize]) -> Result<String> {
        let sim = self.sim()?;
        let all: Vec<usize> = sim.live();
        let mut out = String::new();
        for &i in if at.is_empty() { &all } else { at } {
            let Some(Some(node)) = sim.nodes.get(i) else {
                return Err(format!("r{i} is down").into());
            };
            let mut versions: Vec<(Key, Version)> = node
                .replica
                .store()
                .iter()
                .map(|e| (e.to_key(), e.to_version()))
                .collect();
            versions.sort_by(|a, b| a.0.cmp(&b.0));
            let shown: Vec<String> = versions.iter().map(|(k, v)| trace::version(k, v)).collect();
            let shown = if shown.is_empty() {
                "(empty)".into()
            } else {
                shown.join(", ")
            };
            let _ = writeln!(out, "r{i}: {shown}");
        }
        Ok(out)
    }

    fn partition(&mut self, groups: &[&str]) -> Result<String> {
        let sim = self.sim()?;
        let rest = groups.len() as u64 + 1;
        let mut group = vec![rest; sim.nodes.len()];
        for (g, members) in groups.iter().enumerate() {
            for name in members.split('/') {
                let i = replica(name)?;
                *group.get_mut(i).ok_or(format!("no replica {name}"))? = g as u64 + 1;
            }
        }
        sim.group = group;
        Ok(format!("{}\n", Event::Partition(sim.group.clone())))
    }

    /// Runs `ms` of simulated time; the events worth showing, with their
    /// time (all of them when `verbose`).
    fn run_for(&mut self, ms: Millis, verbose: bool) -> Result<String> {
        let sim = self.sim()?;
        let since = sim.trace.count;
        sim.run(ms);
        let mut out = String::new();
        for (t, event) in sim.trace.since(since) {
            let shown = matches!(
                event,
                Event::State { .. } | Event::Boot(..) | Event::Crash(_) | Event::Note(_)
            );
            if verbose || shown {
                let _ = writeln!(out, "t={t} {event}");
            }
        }
        let _ = writeln!(out, "t={}", sim.now);
        Ok(out)
    }
}

impl goldenscript::Runner for Runner {
    type Command = Command;

    fn run(&mut self, command: &Command, context: &Context) -> Result<String> {
        let mut args = command.consume_args();
        let positional = |args: &mut goldenscript::ArgumentConsumer| -> Result<Vec<usize>> {
            let names: Vec<&str> = std::iter::from_fn(|| args.next_pos()).collect();
            names.into_iter().map(replica).collect()
        };
        let name = command.name.as_str();
        let out = match name {
            "cluster" => {
                let n = args.next_pos().ok_or("how many replicas?")?.parse()?;
                let seed = args.take_key("seed").map(str::parse).transpose()?;
                args.reject_next()?;
                return self.cluster(n, seed.unwrap_or(1));
            }
            "put" | "get" | "delete" => return self.op(name, command),
            "deliver" => {
                let [from, to] = positional(&mut args)?[..] else {
                    return Err("deliver rFROM rTO".into());
                };
                self.up(to)?;
                let sim = self.up(from)?;
                let since = sim.trace.count;
                let queued = sim.nodes[from]
                    .as_ref()
                    .map(|n| n.queues.contains_key(&sim.addrs[to]));
                if queued != Some(true) {
                    return Ok(format!("r{from} holds nothing for r{to}\n"));
                }
                sim.deliver_queue(from, to);
                let events: Vec<String> =
                    sim.trace.since(since).map(|(_, e)| e.to_string()).collect();
                events.join("\n") + "\n"
            }
            "run" | "tick" => {
                let ms = args.next_pos().ok_or("how long?")?.parse()?;
                args.reject_next()?;
                return self.run_for(ms, context.tags.contains("verbose"));
            }
            "partition" => {
                let groups: Vec<&str> = std::iter::from_fn(|| args.next_pos()).collect();
                args.reject_next()?;
                return self.partition(&groups);
            }
            "heal" => {
                let sim = self.sim()?;
                sim.group = vec![0; sim.nodes.len()];
                "network healed\n".into()
            }
            "crash" | "restart" => {
                let [i] = positional(&mut args)?[..] else {
                    return Err(format!("{name} rI").into());
                };
                let mut sim = self.sim.take().ok_or("no cluster yet")?;
                let up = sim.nodes.get(i).map(Option::is_some);
                let done = match (name, up) {
                    (_, None) => Err(format!("no replica r{i}")),
                    ("crash", Some(true)) => {
                        sim.crash(i);
                        Ok(())
                    }
                    ("restart", Some(false)) => {
                        self.boot(&mut sim, i);
                        Ok(())
                    }
                    _ => Err(format!("cannot {name} r{i}")),
                };
                let line = sim.trace.last().map(|e| format!("{e}\n"));
                self.sim = Some(sim);
                done?;
                line.unwrap_or_default()
            }
            "status" => return self.status(&positional(&mut args)?),
            "store" => return self.store(&positional(&mut args)?),
            "context" => {
                let client = args.next_pos().ok_or("which client?")?;
                let s = *self.clients.get(client).ok_or("no such client")?;
                let sim = self.sim()?;
                format!("{client}: {}\n", trace::context(&sim.sessions[s].ctx))
            }
            "settle" => {
                let sim = self.sim()?;
                sim.settle(CALM);
                format!("converged at t={}\n", sim.now)
            }
            _ => return Err(format!("unknown command {name}").into()),
        };
        args.reject_next()?;
        Ok(out)
    }
}

/// Runs one scenario file of `sim/scripts/`.
fn scenario(file: &str) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/replica/sim/scripts");
    let path = format!("{dir}/{file}");
    if let Err(e) = goldenscript::run(&mut Runner::default(), &path) {
        panic!("{path}: {e}");
    }
}

/// One test per scenario file.
macro_rules! scenarios {
    ($($test:ident: $file:literal,)*) => {
        $(
            #[test]
            fn $test() {
                scenario($file);
            }
        )*

        #[test]
        fn every_scenario_file_has_its_test() {
            let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/replica/sim/scripts");
            let mut files: Vec<String> = std::fs::read_dir(dir)
                .expect("the scenario directory")
                .map(|e| e.expect("an entry").file_name().to_string_lossy().into_owned())
                .filter(|f| f.ends_with(".txt"))
                .collect();
            files.sort();
            let mut tested = vec![$($file.to_string()),*];
            tested.sort();
            assert_eq!(files, tested, "a scenario file without its test");
        }
    };
}

scenarios! {
    causal_delivery: "causal_delivery.txt",
    conflicts: "conflicts.txt",
    readmission: "readmission.txt",
    tombstones: "tombstones.txt",
}
