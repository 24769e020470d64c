//! What a failing simulation prints: the last steps that led to it.
//!
//! The simulated cluster records each step worth reading as a small
//! [`Event`] (a request delivered or lost, a reply, a client operation, a
//! partition, a crash, a replica whose view or readiness changed) in a
//! ring of the last [`KEPT`] (`SIM_TRACE_LEN=<n>` keeps more). Events are
//! only formatted when read, so recording stays cheap while tests pass.
//! Heartbeats and ticks are not recorded (their effects are: views that
//! change); a heartbeat lost is.
//!
//! When a test panics while a [`Sim`] is alive, dropping it prints the
//! ring, each replica's state, the seed and the command that replays it.
//! `SIM_TRACE=1` prints every step of the replicas instead (see [`trace`]).

use std::fmt::{self, Write as _};

use std::collections::{BTreeMap, VecDeque};

use serde_json::Value as Json;

use crate::address::SocketAddress;
use crate::causal::{CausalContext, Dot, ReplicaId, VectorClock};
use crate::store::{Key, Version};

use super::super::{Kind, Millis, Refusal, Replica, Reply, Request, ViewChange};

use super::session::Op;

/// How many events a simulation keeps by default.
pub(super) const KEPT: usize = 200;

/// The writes of a replication batch worth naming (the rest are counted).
const NAMED_WRITES: usize = 3;

/// One step of the simulated cluster, as recorded.
pub(super) enum Event {
    /// Replica `from` sent `to` a request, which met `fate`.
    Request {
        from: usize,
        to: usize,
        what: Sent,
        fate: Fate,
    },
    /// The reply (or failure) of a request `to` sent `from`.
    Reply {
        to: usize,
        from: usize,
        kind: Kind,
        what: Answer,
    },
    /// A client operation and what it got.
    Client {
        session: usize,
        at: usize,
        op: Op,
        got: String,
    },
    /// The network was cut into these groups (all equal: healed).
    Partition(Vec<u64>),
    Crash(usize),
    Boot(usize, ReplicaId),
    /// A replica's view, suspects or readiness changed.
    State {
        at: usize,
        view: String,
        suspects: Vec<SocketAddress>,
        ready: bool,
        copying: bool,
    },
    /// A note from a driver (a scenario's step, a test's phase).
    Note(String),
}

/// What a request carried, in brief.
pub(super) enum Sent {
    Replicate(Vec<(Dot, Key, bool)>, usize),
    Other(Kind, &'static str),
    ViewChange(ViewChange),
}

impl Sent {
    pub(super) fn of(request: &Request) -> Sent {
        match request {
            Request::Replicate { writes, .. } => {
                let named = writes.iter().take(NAMED_WRITES);
                let named = named.map(|w| (w.dot.clone(), w.key.clone(), w.value.is_none()));
                Sent::Replicate(named.collect(), writes.len())
            }
            Request::Join { fresh: true, .. } | Request::Snapshot { fresh: true, .. } => {
                Sent::Other(request.kind(), " (starting)")
            }
            Request::ViewChange { decision, .. } => Sent::ViewChange(decision.change.clone()),
            _ => Sent::Other(request.kind(), ""),
        }
    }
}

/// What became of a request.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Fate {
    /// Handled; for a batch, how many writes wait in the receiver's buffer.
    Handled(Option<usize>),
    /// A duplicate, handled; its reply is discarded.
    Duplicate,
    Dropped,
    /// The link is cut or the receiver is down.
    Unreachable,
}

/// A reply, in brief.
pub(super) enum Answer {
    Ack,
    Versions(usize),
    Joined { ready: bool, vetted: bool },
    Page(usize, bool),
    Refused(Refusal),
    Failed,
    Other,
}

impl Answer {
    pub(super) fn of(result: &Result<Reply, String>) -> Answer {
        match result {
            Ok(Reply::Ack { .. }) => Answer::Ack,
            Ok(Reply::Pull { state, .. }) => Answer::Versions(state.versions.len()),
            Ok(Reply::Join { ready, vetted, .. }) => Answer::Joined {
                ready: *ready,
                vetted: *vetted,
            },
            Ok(Reply::Snapshot { page, .. }) => {
                Answer::Page(page.versions.len(), page.next.is_none())
            }
            Ok(Reply::Refused { reason, .. }) => Answer::Refused(*reason),
            Ok(Reply::Heartbeat { .. }) => Answer::Other,
            Err(_) => Answer::Failed,
        }
    }
}

/// The last events of a simulation, numbered from its start.
pub(super) struct Trace {
    pub(super) events: VecDeque<(Millis, Event)>,
    pub(super) kept: usize,
    /// Events recorded since the start, the forgotten ones included.
    pub(super) count: u64,
    pub(super) seed: u64,
    /// The partition last recorded.
    pub(super) groups: Vec<u64>,
}

impl Default for Trace {
    fn default() -> Trace {
        let kept = std::env::var("SIM_TRACE_LEN")
            .ok()
            .and_then(|v| v.parse().ok());
        Trace {
            events: VecDeque::new(),
            kept: kept.unwrap_or(KEPT),
            count: 0,
            seed: 0,
            groups: Vec::new(),
        }
    }
}

impl Trace {
    pub(super) fn push(&mut self, now: Millis, event: Event) {
        if self.events.len() >= self.kept {
            self.events.pop_front();
        }
        self.events.push_back((now, event));
        self.count += 1;
    }

    /// The last event recorded.
    pub(super) fn last(&self) -> Option<&Event> {
        self.events.back().map(|(_, event)| event)
    }

    /// Keeps at least `n` events.
    pub(super) fn keep(&mut self, n: usize) {
        self.kept = self.kept.max(n);
    }

    /// Records a change of partition, if `groups` is one.
    pub(super) fn groups(&mut self, now: Millis, groups: &[u64]) {
        if self.groups != groups {
            let whole = |g: &[u64]| g.windows(2).all(|w| w[0] == w[1]);
            let changed = !(whole(&self.groups) && whole(groups));
            self.groups = groups.to_vec();
            if changed {
                self.push(now, Event::Partition(groups.to_vec()));
            }
        }
    }

    /// The events recorded after the first `since`, oldest first.
    pub(super) fn since(&self, since: u64) -> impl Iterator<Item = &(Millis, Event)> {
        let first = self.count - self.events.len() as u64;
        self.events
            .iter()
            .skip(since.saturating_sub(first) as usize)
    }
}

/// `r<n>` for the simulated address `10.0.0.<n+1>:<port>`.
pub(super) fn name(address: &str) -> String {
    let host = address.split(':').next().unwrap_or(address);
    match host.strip_prefix("10.0.0.").map(str::parse::<u64>) {
        Some(Ok(n)) if n > 0 => format!("r{}", n - 1),
        _ => address.to_string(),
    }
}

/// `r0#a` for the incarnation `a` of `10.0.0.1:8085` (`inc7` shows as `7`).
pub(super) fn id(id: &ReplicaId) -> String {
    let (address, incarnation) = id.as_str().rsplit_once('#').unwrap_or((id.as_str(), ""));
    let incarnation = incarnation.strip_prefix("inc").unwrap_or(incarnation);
    format!("{}#{incarnation}", name(address))
}

pub(super) fn dot(dot: &Dot) -> String {
    format!("{}:{}", id(&dot.replica), dot.counter)
}

/// `{r0#a:2 r1#a:1}`.
pub(super) fn clock(clock: &VectorClock) -> String {
    let entries: Vec<String> = clock
        .iter()
        .map(|(r, n)| format!("{}:{n}", id(r)))
        .collect();
    format!("{{{}}}", entries.join(" "))
}

/// A client's `causal-metadata` as a clock.
pub(super) fn context(metadata: &Json) -> String {
    match CausalContext::parse(Some(metadata)) {
        Ok(ctx) => clock(ctx.clock()),
        Err(e) => format!("<{e}>"),
    }
}

/// A stored version: `x=1 (r0#a:1 @1)`, or `x deleted (...)`.
pub(super) fn version(key: &Key, v: &Version) -> String {
    let at = format!("({} @{})", dot(&v.dot), v.lamport);
    match &v.value {
        Some(value) => format!("{}={} {at}", key.as_str(), value.as_json()),
        None => format!("{} deleted {at}", key.as_str()),
    }
}

pub(super) fn addresses(all: &[SocketAddress]) -> String {
    let names: Vec<String> = all.iter().map(|a| name(a.as_str())).collect();
    names.join(",")
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Request {
                from,
                to,
                what,
                fate,
            } => {
                write!(f, "r{to} <- r{from} ")?;
                match what {
                    Sent::Replicate(named, n) => {
                        let named: Vec<String> = named
                            .iter()
                            .map(|(d, k, del)| {
                                let op = if *del { "delete " } else { "" };
                                format!("{op}{} {}", k.as_str(), dot(d))
                            })
                            .collect();
                        let more = n.saturating_sub(named.len());
                        let more = if more > 0 {
                            format!(", +{more}")
                        } else {
                            "".into()
                        };
                        write!(f, "replicate [{}{more}]", named.join(", "))?;
                    }
                    Sent::Other(kind, note) => write!(f, "{}{note}", kind.as_str())?,
                    Sent::ViewChange(change) => match change {
                        ViewChange::Add(a) => write!(f, "view-change add {}", name(a.as_str()))?,
                        ViewChange::Remove(a) => {
                            write!(f, "view-change remove {}", name(a.as_str()))?
                        }
                    },
                }
                match fate {
                    Fate::Handled(Some(n)) if *n > 0 => write!(f, " -> {n} buffered"),
                    Fate::Handled(_) => Ok(()),
                    Fate::Duplicate => write!(f, " (duplicate)"),
                    Fate::Dropped => write!(f, " DROPPED"),
                    Fate::Unreachable => write!(f, " UNREACHABLE"),
                }
            }
            Event::Reply {
                to,
                from,
                kind,
                what,
            } => {
                write!(f, "r{to} <- r{from} reply to {}: ", kind.as_str())?;
                match what {
                    Answer::Ack => write!(f, "ack"),
                    Answer::Versions(n) => write!(f, "{n} versions"),
                    Answer::Joined { ready, vetted } => {
                        write!(f, "joined (ready {ready}, vetted {vetted})")
                    }
                    Answer::Page(n, last) => {
                        write!(f, "page of {n}{}", if *last { ", last" } else { "" })
                    }
                    Answer::Refused(reason) => write!(f, "REFUSED: {}", reason.as_str()),
                    Answer::Failed => write!(f, "FAILED (timed out)"),
                    Answer::Other => write!(f, "ok"),
                }
            }
            Event::Client {
                session,
                at,
                op,
                got,
            } => write!(f, "client {session} {op} at r{at} -> {got}"),
            Event::Partition(groups) => {
                if groups.windows(2).all(|w| w[0] == w[1]) {
                    return write!(f, "network healed");
                }
                let mut sides: BTreeMap<u64, Vec<String>> = BTreeMap::new();
                for (i, g) in groups.iter().enumerate() {
                    sides.entry(*g).or_default().push(format!("r{i}"));
                }
                let sides: Vec<String> = sides.values().map(|s| s.join(" ")).collect();
                write!(f, "partition {}", sides.join(" | "))
            }
            Event::Crash(i) => write!(f, "r{i} CRASHED"),
            Event::Boot(i, me) => write!(f, "r{i} starts as {}", id(me)),
            Event::State {
                at,
                view,
                suspects,
                ready,
                copying,
            } => {
                write!(f, "r{at} view {view}")?;
                if !suspects.is_empty() {
                    write!(f, " suspects {}", addresses(suspects))?;
                }
                write!(f, "{}", if *ready { "" } else { " NOT READY" })?;
                write!(f, "{}", if *copying { " copying" } else { "" })
            }
            Event::Note(text) => write!(f, "-- {text}"),
        }
    }
}

/// One line on replica `i`: who it is, whether it serves, its view and
/// suspects, what it has applied, what waits in its buffer.
pub(super) fn status(i: usize, r: &Replica) -> String {
    let stats = r.stats();
    let mut line = format!("r{i} {}", id(&r.me().id));
    line += match (stats.ready, r.is_copying()) {
        (true, _) => " ready",
        (false, true) => " copying",
        (false, false) => " NOT READY",
    };
    let _ = write!(line, " view {}", addresses(&r.view().addresses()));
    if stats.suspects > 0 {
        let _ = write!(line, " suspects {}", addresses(&r.suspects()));
    }
    let _ = write!(line, " applied {}", clock(&r.known().effective()));
    let _ = write!(line, " keys {} tombstones {}", stats.keys, stats.tombstones);
    if stats.buffered > 0 {
        let waiting: Vec<String> = r.buffer.iter().map(|w| dot(&w.dot)).collect();
        let _ = write!(line, " buffered [{}]", waiting.join(" "));
    }
    line
}

/// A span naming the replica and the simulated time, for the trace that
/// `SIM_TRACE=1` prints (see [`trace`]).
pub(super) fn trace_at(at: &SocketAddress, now: Millis) -> tracing::span::EnteredSpan {
    tracing::debug_span!("at", replica = %at, t = now).entered()
}

/// With `SIM_TRACE=1`, prints every step of the replicas to the test's
/// output (run one seed: `SIM_SEED=<seed> SIM_TRACE=1 cargo test ...`).
pub(in crate::replica) fn trace() {
    if std::env::var_os("SIM_TRACE").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("debug")
            .with_test_writer()
            .with_target(false)
            .without_time()
            .try_init();
    }
}
