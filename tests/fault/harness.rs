//! What a run's faults act on, in one place: the namespaced cluster, the
//! slots that are members now and those removed for good, the addresses the
//! client sessions may use, the DNS name in runs that have one, and the
//! record the checker and the reader get (the schedule as it happened, the
//! crashes, the partition windows).
//!
//! Every fault goes through a [`Stage`], so that the bookkeeping a fault
//! needs is done the same way each time: a replica that is killed or
//! evicted is recorded as a crash, saying whether it kept its state (in
//! unsharded runs every replica keeps it in a `DATA_DIR` of its own: a
//! replica killed and started again on it loses nothing) or lost it (its
//! disk deleted, evicted and given a copy of the state, never started
//! again, or any crash in the memory-only sharded runs: its unreplicated
//! writes may be lost); a replica stopped and started again has its
//! identity checked once it is back (the same on its kept state, a new one
//! without it); a replica the sessions must not use leaves their targets
//! before it goes and comes back only once it is ready, and in runs whose
//! replicas find each other by DNS the name lists exactly the members
//! after every change.
//!
//! The HTTP helpers here are the harness's own probes (readiness, `/health`,
//! the view API); the sessions have their own client and never share it.

/// What a replica logs when it sets aside the state it kept because its
/// last run was merging a member's copy (`durable/open.rs`).
const SET_ASIDE: &str = "the last run was still copying a member's state";

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::{Display, Write as _};
use std::rc::Rc;
use std::time::{Duration, Instant};

use awc::http::Method;
use rand::rngs::StdRng;
use rand::RngExt;
use serde_json::{json, Value};

use super::checker::{Crash, PartitionWindow, Restart};
use super::netns::NetnsCluster;
use super::workload::Shared;

/// Silence after which a member leaves the view (`FAILURE_TIMEOUT_MS`).
pub const FAILURE_TIMEOUT: Duration = Duration::from_secs(2);
/// Silence after which a suspect is forgotten (`SUSPECT_TIMEOUT_MS`): low,
/// so that forgetting and tombstone collection happen within a run.
pub const SUSPECT_TIMEOUT: Duration = Duration::from_secs(4);
/// How long a replica stopped with SIGTERM may spend handing its writes
/// over (`HANDOVER_TIMEOUT_MS`), short so that a churn of restarts fits.
pub const HANDOVER_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a replica tries to collect tombstones (the node's fixed round).
pub const COLLECTION_ROUND: Duration = Duration::from_secs(5);
/// The name replicas resolve for their view in runs that use `VIEW_DNS`.
pub const DNS_NAME: &str = "causalkv-headless";
/// How long a started replica may take to become ready.
const READY_DEADLINE: Duration = Duration::from_secs(30);

/// The cluster, its membership and the record of what was done to it.
pub struct Stage<'a> {
    /// The namespaced cluster.
    pub cluster: &'a mut NetnsCluster,
    /// The harness's own HTTP client.
    pub http: awc::Client,
    /// What the sessions share: the run's clock, their targets, the history.
    pub shared: Rc<RefCell<Shared>>,
    /// Slots that are members of the store now.
    pub members: Vec<usize>,
    /// Slots removed for good: never started again, never reused.
    pub retired: Vec<usize>,
    /// The DNS name the replicas resolve, in runs that use one.
    pub dns: Option<&'static str>,
    /// The schedule as it happened, one line per fault (and its details).
    pub log: String,
    /// Replicas killed or evicted, and when.
    pub crashes: Vec<Crash>,
    /// Partitions, and when.
    pub partitions: Vec<PartitionWindow>,
    /// The identity (`address#incarnation`) each slot last reported.
    pub ids: BTreeMap<usize, String>,
    /// Slots stopped since their identity was last seen: when, and whether
    /// every stop kept the state.
    pub stopped: BTreeMap<usize, (u64, bool)>,
    /// Identities before and after each restart, once seen.
    pub restarts: Vec<Restart>,
    /// Keys the nemesis's own probe writes use (read at the end too).
    pub probe_keys: Vec<String>,
    /// The replicas keep their state in memory only (a sharded store): a
    /// crash loses it, and a restarted replica is a new incarnation.
    pub memory: bool,
}

impl Stage<'_> {
    /// Microseconds since the start of the run (the history's clock).
    pub fn now_us(&self) -> u64 {
        self.shared.borrow().now_us()
    }

    /// Seconds since the start of the run (the schedule's clock).
    pub fn seconds(&self) -> f64 {
        self.shared.borrow().start.elapsed().as_secs_f64()
    }

    /// Adds a line to the schedule, stamped with the time into the run.
    pub fn note(&mut self, line: impl Display) {
        let seconds = self.seconds();
        let _ = writeln!(self.log, "{seconds:>7.1}s {line}");
    }

    /// Adds a detail line under the last fault of the schedule.
    pub fn detail(&mut self, line: impl Display) {
        let _ = writeln!(self.log, "           -> {line}");
    }

    /// Records that slot `i` crashed or was evicted: it keeps what it
    /// acknowledged (`kept_state`: it starts again on its `DATA_DIR`), or
    /// its unreplicated writes may be lost from now on.
    pub fn record_crash(&mut self, i: usize, kept_state: bool) {
        let at_us = self.now_us();
        self.crashes.push(Crash {
            replica: i,
            at_us,
            kept_state,
        });
    }

    /// Records that slot `i` was stopped and will be started again, on the
    /// state it kept or without it; the identity it comes back under is
    /// checked once it is seen again ([`Stage::learn_identity`]).
    pub fn record_stop(&mut self, i: usize, kept_state: bool) {
        self.record_crash(i, kept_state);
        let at_us = self.now_us();
        if self.ids.contains_key(&i) {
            let entry = self.stopped.entry(i).or_insert((at_us, true));
            entry.1 &= kept_state;
        }
    }

    /// Heals every cut and records the partition `sides` held since
    /// `start_us` (for the checker's partition windows).
    pub fn heal(&mut self, start_us: u64, sides: Vec<Vec<usize>>) -> Result<(), String> {
        self.cluster.heal()?;
        let end_us = self.now_us();
        self.partitions.push(PartitionWindow {
            start_us,
            end_us,
            sides,
        });
        Ok(())
    }

    /// SIGKILL; it will be started again on the state it kept (on its
    /// `DATA_DIR`; with none, in memory-only runs, it lost that state).
    pub fn crash(&mut self, i: usize) {
        self.cluster.crash(i);
        self.record_stop(i, !self.memory);
    }

    /// SIGKILL, and it is never started again on that state: what only it
    /// held may be lost. Its `DATA_DIR` is deleted, as an operator who
    /// removes a replica deletes its data, so that a replica added later in
    /// the slot starts afresh.
    pub fn crash_for_good(&mut self, i: usize) -> Result<(), String> {
        self.cluster.crash(i);
        self.record_crash(i, false);
        self.stopped.remove(&i);
        self.ids.remove(&i);
        self.cluster.wipe_state(i)
    }

    /// Slot `i` reported identity `id`: if it was stopped since its last
    /// one, the restart is recorded for the checker (which wants the same
    /// identity after stops that kept the state, a new one otherwise).
    pub fn learn_identity(&mut self, i: usize, id: String) {
        let before = self.ids.insert(i, id.clone());
        let Some((at_us, kept_state)) = self.stopped.remove(&i) else {
            return;
        };
        if let Some(before) = before {
            let set_aside = self.cluster.current_log(i).contains(SET_ASIDE);
            self.restarts.push(Restart {
                replica: i,
                at_us,
                kept_state,
                before,
                after: id,
                set_aside,
            });
        }
    }

    /// Polls until slot `i`, just started again, is ready
    /// ([`Stage::wait_ready`]) and notes under the current fault the
    /// identity it came back under.
    pub async fn wait_back(&mut self, i: usize) -> Result<(), String> {
        let seen = self.restarts.len();
        self.wait_ready(i).await?;
        let line = self.restarts[seen..]
            .iter()
            .find(|r| r.replica == i)
            .map(|r| {
                let (before, after) = (&r.before, &r.after);
                match (r.kept_state, before == after) {
                    (true, true) => {
                        format!("replica {i} is back as {after}, its identity unchanged")
                    }
                    (false, false) => {
                        format!("replica {i} is back as a new incarnation, {after} (was {before})")
                    }
                    (true, false) if r.set_aside => format!(
                        "replica {i} is back as {after}, a new incarnation: it was stopped while merging a member's copy, so it set its state aside and wrote its former writes again"
                    ),
                    (true, false) => format!(
                        "replica {i} is back as {after}, NOT {before}, though it kept its state"
                    ),
                    (false, true) => {
                        format!("replica {i} is back as {after} though it lost its state")
                    }
                }
            });
        if let Some(line) = line {
            self.detail(line);
        }
        Ok(())
    }

    /// Asks every member stopped since its identity was last seen for its
    /// identity now, and records the restarts (see [`Stage::learn_identity`]).
    pub async fn check_identities(&mut self) {
        let waiting: Vec<usize> = self
            .stopped
            .keys()
            .copied()
            .filter(|i| self.members.contains(i))
            .collect();
        for i in waiting {
            let id = self.health(i).await.and_then(|h| identity(&h));
            match id {
                Some(id) => self.learn_identity(i, id),
                None => self.note(format!(
                    "the identity of replica {i} could not be read after its restart"
                )),
            }
        }
    }

    /// A member picked at random.
    pub fn pick_member(&self, rng: &mut StdRng) -> usize {
        self.members[rng.random_range(..self.members.len())]
    }

    /// A member other than `not` picked at random (there must be one).
    pub fn pick_other(&self, rng: &mut StdRng, not: usize) -> usize {
        let others: Vec<usize> = self.members.iter().copied().filter(|&m| m != not).collect();
        others[rng.random_range(..others.len())]
    }

    /// The lowest slot that is neither a member nor removed for good.
    pub fn free_slot(&self, capacity: usize) -> Option<usize> {
        (0..capacity).find(|s| !self.members.contains(s) && !self.retired.contains(s))
    }

    /// The sessions stop sending requests to slot `i`.
    pub fn stop_targeting(&mut self, i: usize) {
        self.shared.borrow_mut().targets.retain(|(s, _)| *s != i);
    }

    /// The sessions may send requests to slot `i` again.
    pub fn start_targeting(&mut self, i: usize) {
        let address = self.cluster.address(i);
        let mut shared = self.shared.borrow_mut();
        if !shared.targets.iter().any(|(s, _)| *s == i) {
            shared.targets.push((i, address));
        }
    }

    /// In runs that use DNS, makes the name list exactly the members.
    pub fn publish_dns(&self) -> Result<(), String> {
        match self.dns {
            Some(name) => self.cluster.publish_name(name, &self.members),
            None => Ok(()),
        }
    }

    /// Slot `i`'s `/health` body, if it answers.
    pub async fn health(&self, i: usize) -> Option<Value> {
        let host = self.cluster.address(i);
        self.cluster.check_target(&host);
        let answer = causalkv::client::raw(&self.http, &host, Method::GET, "/health", None).await;
        answer.ok().filter(|r| r.status == 200).map(|r| r.body)
    }

    /// The view slot `i` answers with, if it answers.
    pub async fn view_of(&self, i: usize) -> Option<String> {
        let host = self.cluster.address(i);
        self.cluster.check_target(&host);
        let path = "/key-value-store-view";
        let answer = causalkv::client::raw(&self.http, &host, Method::GET, path, None).await;
        let body = answer.ok()?.body;
        body.get("view")?.as_str().map(str::to_string)
    }

    /// Polls until slot `via`'s view lists slot `i` (`listed`) or does not,
    /// within `within`; returns whether it got there.
    pub async fn wait_view(&self, via: usize, i: usize, listed: bool, within: Duration) -> bool {
        let address = self.cluster.address(i);
        let deadline = Instant::now() + within;
        loop {
            if let Some(view) = self.view_of(via).await {
                if view.split(',').any(|a| a == address) == listed {
                    return true;
                }
            }
            if Instant::now() > deadline {
                return false;
            }
            sleep_ms(100).await;
        }
    }

    /// Asks slot `via` to add (`PUT`) or remove (`DELETE`) slot `i` through
    /// the view API; returns the status, or why there was none.
    pub async fn change_view(&self, via: usize, method: Method, i: usize) -> Result<u16, String> {
        let host = self.cluster.address(via);
        self.cluster.check_target(&host);
        let body = json!({"socket-address": self.cluster.address(i)});
        let path = "/key-value-store-view";
        causalkv::client::raw(&self.http, &host, method, path, Some(&body))
            .await
            .map(|r| r.status)
    }

    /// Polls until slot `i` is ready: its readiness endpoint answers 200
    /// (or, for a binary without one, `/health` does). The identity it
    /// reports is learnt ([`Stage::learn_identity`]).
    pub async fn wait_ready(&mut self, i: usize) -> Result<(), String> {
        let host = self.cluster.address(i);
        self.cluster.check_target(&host);
        let deadline = Instant::now() + READY_DEADLINE;
        while Instant::now() < deadline {
            let ready = causalkv::client::raw(&self.http, &host, Method::GET, "/ready", None).await;
            let ready = match ready {
                Ok(r) if r.status == 404 => self.health(i).await,
                Ok(r) if r.status == 200 => Some(r.body),
                _ => None,
            };
            if let Some(body) = ready {
                if let Some(id) = identity(&body) {
                    self.learn_identity(i, id);
                }
                return Ok(());
            }
            sleep_ms(100).await;
        }
        Err(format!(
            "replica {i} ({host}) did not become ready within {READY_DEADLINE:?}; see its log"
        ))
    }
}

/// The replica id in a `/ready` or `/health` body.
fn identity(body: &Value) -> Option<String> {
    body.get("replica")?.as_str().map(str::to_string)
}

/// Sleeps `ms` milliseconds without blocking the sessions.
pub async fn sleep_ms(ms: u64) {
    actix_rt::time::sleep(Duration::from_millis(ms)).await;
}
