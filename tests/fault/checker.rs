//! A causal+ history checker: pure, no I/O.
//!
//! The fault suite records every client operation (who, where, when, what
//! came back), the crashes and partitions it caused, and one final read of
//! every key at every replica after healing. [`check`] decides whether that
//! history could have come from a causally consistent store that resolves
//! concurrent writes by one deterministic rule, and says why not.
//!
//! # The happens-before order
//!
//! Clients always pass back their latest causal metadata, so a session's
//! successful operations are causally ordered. Every put writes a unique
//! value, so a read that returns a value names the put it read from. The
//! happens-before graph (hb) has
//!
//! * a session edge between consecutive *successful* operations of a session
//!   (a failed operation returned no metadata, so the next one does not
//!   depend on it);
//! * a reads-from edge from the put whose value was read to the read;
//! * failed puts whose value was observed (read by a client or found by a
//!   final read) did happen: they get an edge from the session's preceding
//!   successful operation (they carried its metadata) and reads-from edges,
//!   but no edge to the session's next operation.
//!
//! Failed reads are ignored; failed deletes may or may not have happened and
//! only ever serve as a possible explanation for an absent key.
//!
//! Every successful operation gets a place in its session's chain; the
//! causal past of an operation is summarised, as in a vector clock, by how
//! many operations of each session it contains. That makes every hb query
//! O(1) (a failed-but-observed put is in a past iff one of its readers is).
//!
//! # The checks
//!
//! * **Cycle**: hb must be acyclic (a read returning a value from its own
//!   future). Reads-from edges inside a cycle are dropped afterwards so the
//!   other checks can still run.
//! * **ValueNeverWritten**: a read (or final read) returns a value no put of
//!   that key wrote, or returned it before the put was even invoked.
//! * **Causal visibility**: a read of key k that returns w1 while a write w2
//!   of k with w1 -hb-> w2 -hb-> read exists is stale; labelled by the
//!   shortest explanation: the reader's own write (ReadYourWrites), the
//!   reader's own earlier read of k (MonotonicReads), w1's own session
//!   overwriting it (MonotonicWrites), a session that read w1 and then
//!   overwrote it (WritesFollowReads), anything else (StaleRead). A read that
//!   finds k absent is legitimate when the maximal writes of k in its past
//!   include a delete, when there are none, or when some delete of k
//!   (acknowledged or failed) that was invoked before the read completed is
//!   neither in the read's past (then it would be overwritten by a put there)
//!   nor after the read: it may have been concurrent and won. Otherwise it is
//!   ReadYourWrites / MonotonicReads when the put it misses is the session's
//!   own or was seen by the session, else PhantomAbsence.
//! * **Conflict resolution** (reported as Divergence): a read returning w1
//!   while a concurrent write w2 is in its past shows the rule ranks
//!   w2 below w1. These rankings, hb, and the final state must fit one order;
//!   a cycle among them means replicas resolved one conflict differently.
//! * **Convergence**: every replica's final read of a key is the same
//!   (Divergence); the final value's write is not hb-before a surviving write
//!   of the key, and an absent final value has a delete that could have won
//!   (NotCausallyMaximal).
//! * **Lost writes**: an acknowledged put that is not the final value though
//!   the final value's write is hb-before it, or the final value is absent
//!   while every delete of the key is hb-before it (LostWrite, reported for
//!   the latest such puts). A put whose replica crashed after acknowledging
//!   it is excused and listed in [`Report::lost_to_crash`] instead.
//! * **Availability**: the share of operations answered (not Failed),
//!   overall and per partition side during each partition window.
//!
//! # Limitations
//!
//! Sound rather than complete: the hb built from the history is a subset of
//! the store's real causal order (absent reads and failed deletes create no
//! edges), the tie-break rule is unknown, and a write whose replica crashed
//! is excused from everything that would need it to survive. Memory is
//! O(successful ops x sessions).

#![allow(dead_code)]

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt;

use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------
// The history model
// ---------------------------------------------------------------------------

/// One client operation as the client saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    /// Unique id of the operation (anomalies name operations by it).
    pub id: usize,
    /// The client session; a session's successful ops are causally ordered.
    pub session: usize,
    /// The replica the request was sent to.
    pub replica: usize,
    /// The key operated on.
    pub key: String,
    /// What was asked.
    pub kind: OpKind,
    /// When the request was sent (microseconds, one clock for the history).
    pub invoked_us: u64,
    /// When the answer arrived; `None` when none did.
    pub completed_us: Option<u64>,
    /// What came back.
    pub result: OpResult,
}

/// What an operation asked for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpKind {
    /// Write `value` (globally unique across the history).
    Put {
        /// The value written.
        value: String,
    },
    /// Read the key.
    Get,
    /// Delete the key (a tombstone).
    Delete,
}

/// What an operation got back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpResult {
    /// A put answered 200 or 201.
    Written,
    /// A delete answered 200.
    Deleted,
    /// A delete answered 404: the key was absent, nothing was written.
    DeleteAbsent,
    /// A get answered 200 with the value, or 404 (`None`).
    Read(Option<String>),
    /// 503, timeout, connection error: for writes the outcome is unknown.
    Failed(String),
}

/// A read of one key at one replica after healing and settling.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalRead {
    /// The replica read.
    pub replica: usize,
    /// The key read.
    pub key: String,
    /// The value found, `None` when absent.
    pub value: Option<String>,
    /// When it was read.
    pub at_us: u64,
}

/// A replica was killed (its unreplicated writes may be lost).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Crash {
    /// The replica killed.
    pub replica: usize,
    /// When.
    pub at_us: u64,
}

/// A network partition between `start_us` and `end_us`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionWindow {
    /// When the partition started.
    pub start_us: u64,
    /// When it healed.
    pub end_us: u64,
    /// The replicas on each side.
    pub sides: Vec<Vec<usize>>,
}

/// Everything the checker needs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// Every client operation, in any order.
    pub ops: Vec<Op>,
    /// One read of every key at every replica after healing.
    pub final_reads: Vec<FinalRead>,
    /// Crashes the nemesis caused.
    pub crashes: Vec<Crash>,
    /// Partitions the nemesis caused.
    pub partitions: Vec<PartitionWindow>,
}

impl History {
    /// The history as JSON (to save next to a failing run's logs).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a history always serialises")
    }

    /// A history saved by [`History::to_json`].
    pub fn from_json(text: &str) -> serde_json::Result<Self> {
        serde_json::from_str(text)
    }
}

// ---------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------

/// What kind of violation an anomaly is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum AnomalyKind {
    /// The happens-before graph has a cycle.
    Cycle,
    /// A read returned a value no put of that key wrote (or before it was written).
    ValueNeverWritten,
    /// A read returned a value that a write in its causal past overwrote.
    StaleRead,
    /// A read found a key absent though a put in its past was not deleted.
    PhantomAbsence,
    /// A read did not reflect the session's own earlier write.
    ReadYourWrites,
    /// A read went back behind what the session had already read.
    MonotonicReads,
    /// A read saw a session's later write but then its earlier one.
    MonotonicWrites,
    /// A read saw a write but not the write its session had read before.
    WritesFollowReads,
    /// Replicas disagree on a key after healing, or resolved a conflict differently.
    Divergence,
    /// The converged value is not causally maximal among the key's writes.
    NotCausallyMaximal,
    /// An acknowledged put vanished without a crash to explain it.
    LostWrite,
}

impl AnomalyKind {
    /// Every kind, in report order.
    pub const ALL: [AnomalyKind; 11] = [
        AnomalyKind::Cycle,
        AnomalyKind::ValueNeverWritten,
        AnomalyKind::StaleRead,
        AnomalyKind::PhantomAbsence,
        AnomalyKind::ReadYourWrites,
        AnomalyKind::MonotonicReads,
        AnomalyKind::MonotonicWrites,
        AnomalyKind::WritesFollowReads,
        AnomalyKind::Divergence,
        AnomalyKind::NotCausallyMaximal,
        AnomalyKind::LostWrite,
    ];
}

impl fmt::Display for AnomalyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

/// One violation, with the operations that show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anomaly {
    /// What was violated.
    pub kind: AnomalyKind,
    /// Op ids of the shortest hb chain that shows it (in hb order where it is a chain).
    pub ops: Vec<usize>,
    /// A sentence saying what went wrong.
    pub explanation: String,
    /// `ops` rendered one per line: `#id s<session> r<replica> put(k)=v [t..t]`.
    pub chain: Vec<String>,
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}: {}", self.kind, self.explanation)?;
        for line in &self.chain {
            writeln!(f, "    {line}")?;
        }
        Ok(())
    }
}

/// How many of `total` operations were answered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ratio {
    /// Operations answered (not Failed).
    pub ok: usize,
    /// Operations counted.
    pub total: usize,
}

impl Ratio {
    /// `ok / total`, `None` when nothing was counted.
    pub fn fraction(&self) -> Option<f64> {
        (self.total > 0).then(|| self.ok as f64 / self.total as f64)
    }

    fn add(&mut self, ok: bool) {
        self.total += 1;
        self.ok += ok as usize;
    }
}

impl fmt::Display for Ratio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.fraction() {
            Some(x) => write!(f, "{:.1}% ({}/{})", 100.0 * x, self.ok, self.total),
            None => write!(f, "n/a (0 ops)"),
        }
    }
}

/// Availability of one side of a partition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SideAvailability {
    /// The replicas on this side.
    pub replicas: Vec<usize>,
    /// Ops sent to them and invoked during the window.
    pub ops: Ratio,
}

/// Availability during one partition window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowAvailability {
    /// Index into [`History::partitions`].
    pub window: usize,
    /// Start of the window.
    pub start_us: u64,
    /// End of the window (exclusive).
    pub end_us: u64,
    /// One entry per side, in the window's order.
    pub sides: Vec<SideAvailability>,
}

/// Share of operations answered.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Availability {
    /// Over the whole history.
    pub overall: Ratio,
    /// Per partition window and side (an op belongs to a window by its
    /// invocation time, `start_us <= invoked_us < end_us`, and to a side by
    /// its replica).
    pub windows: Vec<WindowAvailability>,
}

/// Sizes of what was checked.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Operations in the history.
    pub ops: usize,
    /// Operations answered.
    pub completed: usize,
    /// Operations failed.
    pub failed: usize,
    /// Failed puts whose value was read, so they happened.
    pub failed_writes_observed: usize,
    /// Sessions.
    pub sessions: usize,
    /// Distinct keys (ops and final reads).
    pub keys: usize,
    /// Final reads.
    pub final_reads: usize,
    /// Reads whose value names the put they read from.
    pub reads_from: usize,
}

/// The verdict on a history.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Every violation found.
    pub anomalies: Vec<Anomaly>,
    /// Op ids of acknowledged puts lost because their replica crashed after
    /// acknowledging them (reported, not a failure).
    pub lost_to_crash: Vec<usize>,
    /// Share of operations answered.
    pub availability: Availability,
    /// Final reads agree everywhere and each final value is causally maximal
    /// (no Divergence, no NotCausallyMaximal).
    pub convergence_ok: bool,
    /// Sizes of what was checked.
    pub stats: Stats,
    /// Problems with the history itself (duplicate values, odd results).
    pub warnings: Vec<String>,
}

impl Report {
    /// No anomalies.
    pub fn is_ok(&self) -> bool {
        self.anomalies.is_empty()
    }

    /// How many anomalies of `kind`.
    pub fn count(&self, kind: AnomalyKind) -> usize {
        self.anomalies.iter().filter(|a| a.kind == kind).count()
    }

    /// The anomalies of `kind`.
    pub fn of_kind(&self, kind: AnomalyKind) -> Vec<&Anomaly> {
        self.anomalies.iter().filter(|a| a.kind == kind).collect()
    }

    /// Anomaly counts per kind (kinds with none left out).
    pub fn counts(&self) -> BTreeMap<AnomalyKind, usize> {
        let mut counts = BTreeMap::new();
        for a in &self.anomalies {
            *counts.entry(a.kind).or_insert(0) += 1;
        }
        counts
    }
}

/// Anomalies printed per kind by `Display`; the rest are counted.
const PRINTED_PER_KIND: usize = 25;

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.stats;
        writeln!(
            f,
            "causal+ check: {} ops ({} answered, {} failed, {} failed puts observed), {} sessions, {} keys, {} final reads",
            s.ops, s.completed, s.failed, s.failed_writes_observed, s.sessions, s.keys, s.final_reads
        )?;
        if self.is_ok() {
            writeln!(f, "anomalies: none")?;
        } else {
            let counts: Vec<String> = self
                .counts()
                .iter()
                .map(|(k, n)| format!("{k}: {n}"))
                .collect();
            writeln!(
                f,
                "anomalies: {} ({})",
                self.anomalies.len(),
                counts.join(", ")
            )?;
        }
        writeln!(
            f,
            "convergence: {}",
            if self.convergence_ok { "ok" } else { "FAILED" }
        )?;
        if self.lost_to_crash.is_empty() {
            writeln!(f, "lost to crash: none")?;
        } else {
            let ids: Vec<String> = self.lost_to_crash.iter().map(|i| format!("#{i}")).collect();
            writeln!(f, "lost to crash: {} put(s): {}", ids.len(), ids.join(" "))?;
        }
        writeln!(f, "availability: overall {}", self.availability.overall)?;
        for w in &self.availability.windows {
            let sides: Vec<String> = w
                .sides
                .iter()
                .map(|side| format!("side {:?}: {}", side.replicas, side.ops))
                .collect();
            writeln!(
                f,
                "  partition {} [{}us..{}us]: {}",
                w.window,
                w.start_us,
                w.end_us,
                sides.join("; ")
            )?;
        }
        for warning in &self.warnings {
            writeln!(f, "warning: {warning}")?;
        }
        for kind in AnomalyKind::ALL {
            let of_kind = self.of_kind(kind);
            for (i, a) in of_kind.iter().enumerate() {
                if i == PRINTED_PER_KIND {
                    writeln!(f, "... and {} more {kind}", of_kind.len() - i)?;
                    break;
                }
                write!(f, "{a}")?;
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// The checker
// ---------------------------------------------------------------------------

/// No node.
const NONE: u32 = u32::MAX;
/// An arbitration edge justified by the final state rather than a read.
const FINAL: u32 = u32::MAX - 1;
/// Chains found by a breadth-first search; later anomalies show only their
/// witnesses (keeps a badly broken history quick to check).
const PATH_SEARCHES: usize = 2000;

/// What a successful operation (or observed failed put) did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Effect {
    Put,
    Delete,
    Read,
}

/// How the checker treats an operation.
#[derive(Clone, Copy, Debug)]
enum Class<'a> {
    AckPut,
    AckDelete,
    /// A successful get, or a delete that found the key absent.
    Read(Option<&'a str>),
    FailedPut,
    FailedDelete,
    FailedGet,
}

/// A vertex of the hb graph.
#[derive(Clone, Copy, Debug)]
struct Node {
    /// Index into `History::ops`.
    op: usize,
    /// Dense session number.
    sess: usize,
    /// Position in the session's chain; for a failed put, how many chain
    /// ops of its session precede it.
    idx: u32,
    /// In the session chain (successful) or a failed-but-observed put.
    chain: bool,
    /// Dense key number.
    key: usize,
    effect: Effect,
}

/// Per-key indexes; per-session lists hold `(chain index, node)` in
/// session order.
#[derive(Default)]
struct KeyIndex {
    name: String,
    writes: BTreeMap<usize, Vec<(u32, u32)>>,
    puts: BTreeMap<usize, Vec<(u32, u32)>>,
    deletes: BTreeMap<usize, Vec<(u32, u32)>>,
    reads: BTreeMap<usize, Vec<(u32, u32)>>,
    /// Failed puts whose value was observed (graph nodes).
    failed_puts: Vec<u32>,
    /// Failed deletes: (invoked, the session's preceding chain node or NONE).
    failed_deletes: Vec<(u64, u32)>,
}

/// A constraint on the conflict-resolution order: `lo` ranks below `hi`
/// because read `why` (or the final state, `FINAL`) showed it.
#[derive(Clone, Copy, Debug)]
struct ArbEdge {
    key: usize,
    lo: u32,
    hi: u32,
    why: u32,
}

/// An anomaly before rendering; `ops` are indexes into `History::ops`.
struct Found {
    kind: AnomalyKind,
    ops: Vec<usize>,
    explanation: String,
}

struct Ctx<'a> {
    h: &'a History,
    nodes: Vec<Node>,
    node_of_op: Vec<u32>,
    sess_chain: Vec<Vec<u32>>,
    sess_failed: Vec<Vec<u32>>,
    sessions: usize,
    /// `vc[n * sessions + s]`: how many chain ops of session `s` are in the
    /// causal past of node `n`, itself included.
    vc: Vec<u32>,
    readers: Vec<Vec<u32>>,
    /// For read nodes: the node read from, NONE if absent or unknown.
    rf: Vec<u32>,
    keys: Vec<KeyIndex>,
    excused: Vec<bool>,
    searches_left: Cell<usize>,
}

/// Checks a history; see the module documentation for what is checked.
pub fn check(h: &History) -> Report {
    let mut warnings = Vec::new();
    let mut found = Vec::new();

    // Decide how each op counts: malformed combinations are treated as
    // failures (their effect unknown), never as evidence.
    let class: Vec<Class> = h
        .ops
        .iter()
        .map(|op| {
            let answered = op.completed_us.is_some();
            let failed = match op.kind {
                OpKind::Put { .. } => Class::FailedPut,
                OpKind::Delete => Class::FailedDelete,
                OpKind::Get => Class::FailedGet,
            };
            match (&op.kind, &op.result) {
                (_, OpResult::Failed(_)) => failed,
                (OpKind::Put { .. }, OpResult::Written) if answered => Class::AckPut,
                (OpKind::Delete, OpResult::Deleted) if answered => Class::AckDelete,
                (OpKind::Delete, OpResult::DeleteAbsent) if answered => Class::Read(None),
                (OpKind::Get, OpResult::Read(v)) if answered => Class::Read(v.as_deref()),
                (kind, result) => {
                    warnings.push(format!(
                        "op #{}: {kind:?} answered {result:?} (completed {:?}); treated as failed",
                        op.id, op.completed_us
                    ));
                    failed
                }
            }
        })
        .collect();

    // Which put wrote each value.
    let mut writer_of: HashMap<&str, usize> = HashMap::new();
    let mut seen_ids = HashSet::new();
    for (i, op) in h.ops.iter().enumerate() {
        if !seen_ids.insert(op.id) {
            warnings.push(format!("op id #{} is used more than once", op.id));
        }
        if let OpKind::Put { value } = &op.kind {
            if let Some(&first) = writer_of.get(value.as_str()) {
                warnings.push(format!(
                    "value {value:?} is written by #{} and #{}; reads of it are attributed to #{}",
                    h.ops[first].id, op.id, h.ops[first].id
                ));
            } else {
                writer_of.insert(value, i);
            }
        }
    }
    let mut observed: HashSet<&str> = HashSet::new();
    for c in &class {
        if let Class::Read(Some(v)) = c {
            observed.insert(v);
        }
    }
    for fr in &h.final_reads {
        if let Some(v) = &fr.value {
            observed.insert(v);
        }
    }

    // Dense keys.
    let mut key_ids: HashMap<&str, usize> = HashMap::new();
    let mut keys: Vec<KeyIndex> = Vec::new();

    // Sessions in invocation order; successful ops form the session chain.
    let mut by_session: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, op) in h.ops.iter().enumerate() {
        by_session.entry(op.session).or_default().push(i);
    }
    let sessions = by_session.len();
    let mut nodes: Vec<Node> = Vec::new();
    let mut node_of_op = vec![NONE; h.ops.len()];
    let mut sess_chain: Vec<Vec<u32>> = vec![Vec::new(); sessions];
    let mut sess_failed: Vec<Vec<u32>> = vec![Vec::new(); sessions];
    for (sess, list) in by_session.values_mut().enumerate() {
        list.sort_by_key(|&i| (h.ops[i].invoked_us, h.ops[i].id));
        for &i in list.iter() {
            let op = &h.ops[i];
            let key = intern(&op.key, &mut key_ids, &mut keys);
            let chain_len = sess_chain[sess].len() as u32;
            let effect = match class[i] {
                Class::AckPut => Some((Effect::Put, true)),
                Class::AckDelete => Some((Effect::Delete, true)),
                Class::Read(_) => Some((Effect::Read, true)),
                Class::FailedPut => match &op.kind {
                    OpKind::Put { value } if observed.contains(value.as_str()) => {
                        Some((Effect::Put, false))
                    }
                    _ => None,
                },
                Class::FailedDelete => {
                    let pred = sess_chain[sess].last().copied().unwrap_or(NONE);
                    keys[key].failed_deletes.push((op.invoked_us, pred));
                    None
                }
                Class::FailedGet => None,
            };
            if let Some((effect, chain)) = effect {
                let n = nodes.len() as u32;
                nodes.push(Node {
                    op: i,
                    sess,
                    idx: chain_len,
                    chain,
                    key,
                    effect,
                });
                node_of_op[i] = n;
                if chain {
                    sess_chain[sess].push(n);
                } else {
                    sess_failed[sess].push(n);
                }
            }
        }
    }
    for fr in &h.final_reads {
        intern(&fr.key, &mut key_ids, &mut keys);
    }
    let g = nodes.len();

    // Edges: session order, failed puts after their predecessor, reads-from.
    let mut succ: Vec<Vec<(u32, bool)>> = vec![Vec::new(); g];
    for chain in &sess_chain {
        for pair in chain.windows(2) {
            succ[pair[0] as usize].push((pair[1], false));
        }
    }
    for (sess, failed) in sess_failed.iter().enumerate() {
        for &f in failed {
            let pos = nodes[f as usize].idx;
            if pos > 0 {
                let pred = sess_chain[sess][pos as usize - 1];
                succ[pred as usize].push((f, false));
            }
        }
    }
    let mut rf = vec![NONE; g];
    for (n, node) in nodes.iter().enumerate() {
        let op = &h.ops[node.op];
        let Class::Read(Some(value)) = class[node.op] else {
            continue;
        };
        let Some(&wi) = writer_of.get(value) else {
            found.push(Found {
                kind: AnomalyKind::ValueNeverWritten,
                ops: vec![node.op],
                explanation: format!(
                    "#{} read {}={value:?}, a value no put ever wrote",
                    op.id, op.key
                ),
            });
            continue;
        };
        let w = &h.ops[wi];
        if w.key != op.key {
            found.push(Found {
                kind: AnomalyKind::ValueNeverWritten,
                ops: vec![wi, node.op],
                explanation: format!(
                    "#{} read {}={value:?}, but that value was written to key {:?} by #{}",
                    op.id, op.key, w.key, w.id
                ),
            });
            continue;
        }
        if let Some(done) = op.completed_us {
            if w.invoked_us > done {
                found.push(Found {
                    kind: AnomalyKind::ValueNeverWritten,
                    ops: vec![wi, node.op],
                    explanation: format!(
                        "#{} returned {}={value:?} at {done}us, before #{} wrote it (invoked at {}us)",
                        op.id, op.key, w.id, w.invoked_us
                    ),
                });
            }
        }
        let wn = node_of_op[wi];
        debug_assert_ne!(wn, NONE, "an observed put is always a node");
        if wn != NONE {
            rf[n] = wn;
            succ[wn as usize].push((n as u32, true));
        }
    }
    let reads_from = rf.iter().filter(|&&w| w != NONE).count();

    // hb must be acyclic; report each cycle, then drop the reads-from edges
    // inside it so the remaining checks see a partial order.
    let order = loop {
        let order = topological_order(&succ);
        if order.len() == g {
            break order;
        }
        let mut placed = vec![false; g];
        for &u in &order {
            placed[u as usize] = true;
        }
        let left: Vec<u32> = (0..g as u32).filter(|&u| !placed[u as usize]).collect();
        let mut local = vec![NONE; g];
        for (i, &u) in left.iter().enumerate() {
            local[u as usize] = i as u32;
        }
        let adj: Vec<Vec<u32>> = left
            .iter()
            .map(|&u| {
                succ[u as usize]
                    .iter()
                    .map(|&(v, _)| local[v as usize])
                    .filter(|&v| v != NONE)
                    .collect()
            })
            .collect();
        let components = strongly_connected(&adj);
        if components.is_empty() {
            // Cannot happen (leftover nodes always contain a cycle); be safe.
            for &u in &left {
                succ[u as usize].retain(|&(_, is_rf)| !is_rf);
            }
            continue;
        }
        for comp in components {
            let members: Vec<u32> = comp.iter().map(|&i| left[i as usize]).collect();
            let mut inside = HashSet::new();
            inside.extend(members.iter().copied());
            let cycle = shortest_rf_cycle(&succ, &members, &inside);
            let mut explanation = String::from("happens-before cycle: ");
            for (i, &u) in cycle.iter().enumerate() {
                let v = cycle[(i + 1) % cycle.len()];
                let label = if rf[v as usize] == u {
                    "reads-from"
                } else {
                    "session"
                };
                explanation.push_str(&format!("#{} -{label}-> ", h.ops[nodes[u as usize].op].id));
            }
            explanation.push_str(&format!("#{}", h.ops[nodes[cycle[0] as usize].op].id));
            found.push(Found {
                kind: AnomalyKind::Cycle,
                ops: cycle.iter().map(|&u| nodes[u as usize].op).collect(),
                explanation,
            });
            for &u in &members {
                succ[u as usize].retain(|&(v, is_rf)| {
                    let drop = is_rf && inside.contains(&v);
                    if drop {
                        rf[v as usize] = NONE;
                    }
                    !drop
                });
            }
        }
    };

    // Causal pasts as per-session counts, in topological order.
    let mut vc = vec![0u32; g * sessions];
    let mut row = vec![0u32; sessions];
    for &u in &order {
        let u = u as usize;
        let node = nodes[u];
        if node.chain {
            let cell = &mut vc[u * sessions + node.sess];
            *cell = (*cell).max(node.idx + 1);
        }
        row.copy_from_slice(&vc[u * sessions..(u + 1) * sessions]);
        for &(v, _) in &succ[u] {
            let target = &mut vc[v as usize * sessions..(v as usize + 1) * sessions];
            for (t, &r) in target.iter_mut().zip(&row) {
                *t = (*t).max(r);
            }
        }
    }
    let mut readers = vec![Vec::new(); g];
    for (u, edges) in succ.iter().enumerate() {
        for &(v, is_rf) in edges {
            if is_rf {
                readers[u].push(v);
            }
        }
    }

    // Per-key indexes (nodes were created session by session, in order).
    let mut failed_observed = 0;
    for (n, node) in nodes.iter().enumerate() {
        let k = &mut keys[node.key];
        let entry = (node.idx, n as u32);
        match (node.effect, node.chain) {
            (Effect::Put, true) => {
                k.writes.entry(node.sess).or_default().push(entry);
                k.puts.entry(node.sess).or_default().push(entry);
            }
            (Effect::Delete, _) => {
                k.writes.entry(node.sess).or_default().push(entry);
                k.deletes.entry(node.sess).or_default().push(entry);
            }
            (Effect::Read, _) => k.reads.entry(node.sess).or_default().push(entry),
            (Effect::Put, false) => {
                k.failed_puts.push(n as u32);
                failed_observed += 1;
            }
        }
    }
    for k in &mut keys {
        k.failed_deletes.sort_unstable();
    }

    // A write is excused from surviving when its replica crashed after it
    // was acknowledged (for a failed put: after it was sent).
    let mut last_crash: HashMap<usize, u64> = HashMap::new();
    for c in &h.crashes {
        let t = last_crash.entry(c.replica).or_insert(c.at_us);
        *t = (*t).max(c.at_us);
    }
    let excused: Vec<bool> = nodes
        .iter()
        .map(|node| {
            let op = &h.ops[node.op];
            let since = if node.chain {
                op.completed_us.unwrap_or(op.invoked_us)
            } else {
                op.invoked_us
            };
            last_crash.get(&op.replica).is_some_and(|&t| t >= since)
        })
        .collect();

    let ctx = Ctx {
        h,
        nodes,
        node_of_op,
        sess_chain,
        sess_failed,
        sessions,
        vc,
        readers,
        rf,
        keys,
        excused,
        searches_left: Cell::new(PATH_SEARCHES),
    };

    let mut arb = Vec::new();
    for n in 0..ctx.nodes.len() as u32 {
        let node = ctx.nodes[n as usize];
        if node.effect != Effect::Read {
            continue;
        }
        match class[node.op] {
            Class::Read(Some(_)) if ctx.rf[n as usize] != NONE => {
                ctx.check_value_read(n, &mut found, &mut arb)
            }
            Class::Read(None) => ctx.check_absent_read(n, &mut found, &mut arb),
            _ => {}
        }
    }

    let mut lost_to_crash = BTreeSet::new();
    let (diverged, finals) = ctx.check_finals(&writer_of, &mut found, &mut lost_to_crash);
    ctx.check_arbitration(arb, &finals, &mut found);

    // Availability: overall and per partition side.
    let answered: Vec<bool> = class
        .iter()
        .map(|c| !matches!(c, Class::FailedPut | Class::FailedDelete | Class::FailedGet))
        .collect();
    let mut availability = Availability::default();
    for &ok in &answered {
        availability.overall.add(ok);
    }
    for (window, p) in h.partitions.iter().enumerate() {
        let mut sides: Vec<SideAvailability> = p
            .sides
            .iter()
            .map(|side| SideAvailability {
                replicas: side.clone(),
                ops: Ratio::default(),
            })
            .collect();
        for (op, &ok) in h.ops.iter().zip(&answered) {
            if op.invoked_us < p.start_us || op.invoked_us >= p.end_us {
                continue;
            }
            if let Some(side) = sides.iter_mut().find(|s| s.replicas.contains(&op.replica)) {
                side.ops.add(ok);
            }
        }
        availability.windows.push(WindowAvailability {
            window,
            start_us: p.start_us,
            end_us: p.end_us,
            sides,
        });
    }

    found.sort_by_key(|f| f.kind);
    let anomalies: Vec<Anomaly> = found
        .into_iter()
        .map(|f| Anomaly {
            kind: f.kind,
            ops: f.ops.iter().map(|&i| h.ops[i].id).collect(),
            chain: f.ops.iter().map(|&i| render(&h.ops[i])).collect(),
            explanation: f.explanation,
        })
        .collect();
    let convergence_ok = !diverged
        && !anomalies
            .iter()
            .any(|a| a.kind == AnomalyKind::NotCausallyMaximal);
    let completed = availability.overall.ok;
    Report {
        anomalies,
        lost_to_crash: lost_to_crash
            .into_iter()
            .map(|n: u32| h.ops[ctx.nodes[n as usize].op].id)
            .collect(),
        availability,
        convergence_ok,
        stats: Stats {
            ops: h.ops.len(),
            completed,
            failed: h.ops.len() - completed,
            failed_writes_observed: failed_observed,
            sessions,
            keys: ctx.keys.len(),
            final_reads: h.final_reads.len(),
            reads_from,
        },
        warnings,
    }
}

/// The dense number of key `name`.
fn intern<'h>(name: &'h str, ids: &mut HashMap<&'h str, usize>, keys: &mut Vec<KeyIndex>) -> usize {
    *ids.entry(name).or_insert_with(|| {
        keys.push(KeyIndex {
            name: name.to_string(),
            ..KeyIndex::default()
        });
        keys.len() - 1
    })
}

/// `#id s<session> r<replica> put(k)=v [t..t]`.
fn render(op: &Op) -> String {
    let what = match (&op.kind, &op.result) {
        (OpKind::Put { value }, _) => format!("put({})={value}", op.key),
        (OpKind::Get, OpResult::Read(Some(v))) => format!("get({})={v}", op.key),
        (OpKind::Get, OpResult::Read(None)) => format!("get({})=<absent>", op.key),
        (OpKind::Get, _) => format!("get({})", op.key),
        (OpKind::Delete, OpResult::DeleteAbsent) => format!("delete({})=<absent>", op.key),
        (OpKind::Delete, _) => format!("delete({})", op.key),
    };
    let failed = match &op.result {
        OpResult::Failed(why) => format!(" FAILED({why})"),
        _ => String::new(),
    };
    let done = op
        .completed_us
        .map_or_else(|| "?".to_string(), |t| t.to_string());
    format!(
        "#{} s{} r{} {what}{failed} [{}..{done}]",
        op.id, op.session, op.replica, op.invoked_us
    )
}

/// Kahn's algorithm; nodes on or behind a cycle are left out.
fn topological_order(succ: &[Vec<(u32, bool)>]) -> Vec<u32> {
    let mut indegree = vec![0u32; succ.len()];
    for edges in succ {
        for &(v, _) in edges {
            indegree[v as usize] += 1;
        }
    }
    let mut queue: VecDeque<u32> = (0..succ.len() as u32)
        .filter(|&u| indegree[u as usize] == 0)
        .collect();
    let mut order = Vec::with_capacity(succ.len());
    while let Some(u) = queue.pop_front() {
        order.push(u);
        for &(v, _) in &succ[u as usize] {
            indegree[v as usize] -= 1;
            if indegree[v as usize] == 0 {
                queue.push_back(v);
            }
        }
    }
    order
}

/// Tarjan's algorithm without recursion; returns the components that hold
/// a cycle (more than one node, or a self-loop).
fn strongly_connected(adj: &[Vec<u32>]) -> Vec<Vec<u32>> {
    let n = adj.len();
    let mut index = vec![NONE; n];
    let mut low = vec![0u32; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut calls: Vec<(usize, usize)> = Vec::new();
    let mut next = 0u32;
    let mut out = Vec::new();
    for root in 0..n {
        if index[root] != NONE {
            continue;
        }
        index[root] = next;
        low[root] = next;
        next += 1;
        stack.push(root);
        on_stack[root] = true;
        calls.push((root, 0));
        while let Some(&(v, i)) = calls.last() {
            if i < adj[v].len() {
                calls.last_mut().expect("non-empty").1 += 1;
                let w = adj[v][i] as usize;
                if index[w] == NONE {
                    index[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    calls.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            calls.pop();
            if let Some(&(parent, _)) = calls.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == index[v] {
                let mut comp = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    comp.push(w as u32);
                    if w == v {
                        break;
                    }
                }
                if comp.len() > 1 || adj[v].contains(&(v as u32)) {
                    comp.reverse();
                    out.push(comp);
                }
            }
        }
    }
    out
}

/// The shortest cycle through a reads-from edge inside one strongly
/// connected component (trying a bounded number of such edges).
fn shortest_rf_cycle(
    succ: &[Vec<(u32, bool)>],
    members: &[u32],
    inside: &HashSet<u32>,
) -> Vec<u32> {
    let mut best: Option<Vec<u32>> = None;
    let mut tried = 0;
    'edges: for &u in members {
        for &(v, is_rf) in &succ[u as usize] {
            if !is_rf || !inside.contains(&v) {
                continue;
            }
            tried += 1;
            // Breadth-first from v back to u within the component.
            let mut parent: HashMap<u32, u32> = HashMap::new();
            parent.insert(v, v);
            let mut queue = VecDeque::from([v]);
            let mut reached = v == u;
            while let Some(x) = queue.pop_front() {
                if reached {
                    break;
                }
                for &(y, _) in &succ[x as usize] {
                    if inside.contains(&y) && !parent.contains_key(&y) {
                        parent.insert(y, x);
                        if y == u {
                            reached = true;
                            break;
                        }
                        queue.push_back(y);
                    }
                }
            }
            if reached {
                let mut back = vec![u];
                let mut x = u;
                while x != v {
                    x = parent[&x];
                    back.push(x);
                }
                back.reverse(); // v ... u
                let mut cycle = vec![u];
                cycle.extend(back.into_iter().filter(|&x| x != u));
                if best.as_ref().is_none_or(|b| cycle.len() < b.len()) {
                    best = Some(cycle);
                }
            }
            if tried >= 16 {
                break 'edges;
            }
        }
    }
    best.unwrap_or_else(|| members.to_vec())
}

/// Index of the last entry with chain index below `count`.
fn last_below(list: &[(u32, u32)], count: u32) -> Option<u32> {
    let pos = list.partition_point(|&(i, _)| i < count);
    (pos > 0).then(|| list[pos - 1].1)
}

/// The first entry with chain index above `idx`.
fn first_after(list: &[(u32, u32)], idx: u32) -> Option<u32> {
    let pos = list.partition_point(|&(i, _)| i <= idx);
    list.get(pos).map(|e| e.1)
}

impl Ctx<'_> {
    fn row(&self, n: u32) -> &[u32] {
        let base = n as usize * self.sessions;
        &self.vc[base..base + self.sessions]
    }

    /// Whether node `a` is in the (inclusive) past summarised by `row`.
    fn in_row(&self, a: u32, row: &[u32]) -> bool {
        let node = &self.nodes[a as usize];
        if node.chain {
            row[node.sess] > node.idx
        } else {
            self.readers[a as usize]
                .iter()
                .any(|&r| self.in_row(r, row))
        }
    }

    /// `a` happens strictly before `b`.
    fn lt(&self, a: u32, b: u32) -> bool {
        a != b && self.in_row(a, self.row(b))
    }

    fn concurrent(&self, a: u32, b: u32) -> bool {
        a != b && !self.lt(a, b) && !self.lt(b, a)
    }

    fn op(&self, n: u32) -> &Op {
        &self.h.ops[self.nodes[n as usize].op]
    }

    fn is_delete(&self, n: u32) -> bool {
        self.nodes[n as usize].effect == Effect::Delete
    }

    /// `#id put(k)=v` and the like.
    fn describe(&self, n: u32) -> String {
        let op = self.op(n);
        let what = match (&op.kind, &op.result) {
            (OpKind::Put { value }, OpResult::Written) => format!("put({})={value}", op.key),
            (OpKind::Put { value }, _) => format!("failed put({})={value}", op.key),
            (OpKind::Delete, OpResult::DeleteAbsent) => format!("delete({})=<absent>", op.key),
            (OpKind::Delete, _) => format!("delete({})", op.key),
            (OpKind::Get, OpResult::Read(Some(v))) => format!("get({})={v}", op.key),
            (OpKind::Get, _) => format!("get({})=<absent>", op.key),
        };
        format!("#{} {what}", op.id)
    }

    fn ops_of(&self, nodes: &[u32]) -> Vec<usize> {
        let mut out: Vec<usize> = Vec::with_capacity(nodes.len());
        for &n in nodes {
            let op = self.nodes[n as usize].op;
            if out.last() != Some(&op) {
                out.push(op);
            }
        }
        out
    }

    /// The writes of `key` at the frontier of the past summarised by `row`:
    /// each session's last write there, and the observed failed puts there.
    /// Every write of `key` in that past is hb-before or equal to one of them.
    fn frontier(&self, key: usize, row: &[u32]) -> Vec<u32> {
        let k = &self.keys[key];
        let mut out: Vec<u32> = k
            .writes
            .iter()
            .filter_map(|(&s, list)| last_below(list, row[s]))
            .collect();
        out.extend(
            k.failed_puts
                .iter()
                .copied()
                .filter(|&f| self.in_row(f, row)),
        );
        out
    }

    /// The writes of `set` no other write of `set` follows.
    fn maximal(&self, set: &[u32]) -> Vec<u32> {
        set.iter()
            .copied()
            .filter(|&a| !set.iter().any(|&b| self.lt(a, b)))
            .collect()
    }

    /// Whether a delete of `w`'s key in the past `row` overwrote `w`.
    fn deleted_in(&self, w: u32, row: &[u32]) -> bool {
        let k = &self.keys[self.nodes[w as usize].key];
        k.deletes
            .iter()
            .filter_map(|(&s, list)| last_below(list, row[s]))
            .any(|d| self.lt(w, d))
    }

    /// The shortest hb chain from `a` to `b` (`a` hb-before or equal to `b`),
    /// by breadth-first search where one session-order hop may skip any
    /// number of the session's ops. Only nodes in `b`'s past are explored.
    fn path(&self, a: u32, b: u32) -> Vec<u32> {
        if a == b {
            return vec![a];
        }
        let left = self.searches_left.get();
        if left == 0 {
            return vec![a, b];
        }
        self.searches_left.set(left - 1);
        let brow = self.row(b);
        let useful = |y: u32| y == b || self.in_row(y, brow);
        let mut parent: HashMap<u32, u32> = HashMap::new();
        parent.insert(a, a);
        let mut low: HashMap<usize, u32> = HashMap::new();
        let mut queue = VecDeque::from([a]);
        let mut reached = false;
        'search: while let Some(x) = queue.pop_front() {
            let node = self.nodes[x as usize];
            let mut next: Vec<u32> = Vec::new();
            if node.chain {
                let chain = &self.sess_chain[node.sess];
                let bound = low
                    .get(&node.sess)
                    .copied()
                    .unwrap_or(chain.len() as u32)
                    .min(brow[node.sess]);
                next.extend((node.idx + 1..bound.max(node.idx + 1)).map(|j| chain[j as usize]));
                let entry = low.entry(node.sess).or_insert(u32::MAX);
                *entry = (*entry).min(node.idx + 1);
                next.extend(
                    self.sess_failed[node.sess]
                        .iter()
                        .copied()
                        .filter(|&f| self.nodes[f as usize].idx > node.idx && useful(f)),
                );
            }
            next.extend(
                self.readers[x as usize]
                    .iter()
                    .copied()
                    .filter(|&r| useful(r)),
            );
            for y in next {
                if parent.contains_key(&y) {
                    continue;
                }
                parent.insert(y, x);
                if y == b {
                    reached = true;
                    break 'search;
                }
                queue.push_back(y);
            }
        }
        if !reached {
            return vec![a, b];
        }
        let mut out = vec![b];
        let mut x = b;
        while x != a {
            x = parent[&x];
            out.push(x);
        }
        out.reverse();
        out
    }

    /// `path(a, b)` followed by `path(b, c)`.
    fn path_via(&self, a: u32, b: u32, c: u32) -> Vec<u32> {
        let mut out = self.path(a, b);
        out.extend(self.path(b, c).into_iter().skip(1));
        out
    }

    /// A read that returned the value of `rf[r]`.
    fn check_value_read(&self, r: u32, found: &mut Vec<Found>, arb: &mut Vec<ArbEdge>) {
        let node = self.nodes[r as usize];
        let key = node.key;
        let w1 = self.rf[r as usize];
        let row = self.row(r);
        let frontier = self.frontier(key, row);
        let overwriters: Vec<u32> = frontier
            .iter()
            .copied()
            .filter(|&w| self.lt(w1, w))
            .collect();
        if overwriters.is_empty() {
            // The rule ranked every concurrent write in the past below w1.
            for &w in &frontier {
                if self.concurrent(w, w1) {
                    arb.push(ArbEdge {
                        key,
                        lo: w,
                        hi: w1,
                        why: r,
                    });
                }
            }
            return;
        }
        let k = &self.keys[key];
        let (rd, wd) = (self.describe(r), self.describe(w1));

        // The session's own write overwrote it.
        if let Some(own) = k
            .writes
            .get(&node.sess)
            .and_then(|list| last_below(list, node.idx))
        {
            if self.lt(w1, own) {
                let mut chain = self.path(w1, own);
                chain.push(r);
                found.push(Found {
                    kind: AnomalyKind::ReadYourWrites,
                    ops: self.ops_of(&chain),
                    explanation: format!(
                        "{rd} returned the value of {wd}, but the session's own earlier write {} overwrote it",
                        self.describe(own)
                    ),
                });
                return;
            }
        }
        // The session had already read something newer.
        if let Some(list) = k.reads.get(&node.sess) {
            let earlier = list.partition_point(|&(i, _)| i < node.idx);
            for &(_, r2) in list[..earlier].iter().rev() {
                let w2 = self.rf[r2 as usize];
                if w2 != NONE && self.lt(w1, w2) {
                    let mut chain = self.path(w1, w2);
                    chain.extend([r2, r]);
                    found.push(Found {
                        kind: AnomalyKind::MonotonicReads,
                        ops: self.ops_of(&chain),
                        explanation: format!(
                            "{rd} returned the value of {wd}, but the session's earlier read {} had already seen {}, which overwrote it",
                            self.describe(r2),
                            self.describe(w2)
                        ),
                    });
                    return;
                }
            }
        }
        // w1's own session overwrote it, and the reader saw that.
        let w1n = self.nodes[w1 as usize];
        if w1n.chain {
            if let Some(next) = k
                .writes
                .get(&w1n.sess)
                .and_then(|list| first_after(list, w1n.idx))
            {
                if self.in_row(next, row) {
                    let mut chain = vec![w1];
                    chain.extend(self.path(next, r));
                    found.push(Found {
                        kind: AnomalyKind::MonotonicWrites,
                        ops: self.ops_of(&chain),
                        explanation: format!(
                            "{rd} returned the value of {wd} although {}, written after it by the same session, is in the read's causal past",
                            self.describe(next)
                        ),
                    });
                    return;
                }
            }
        }
        // A session read w1, then overwrote it, and the reader saw that.
        for &r2 in &self.readers[w1 as usize] {
            let r2n = self.nodes[r2 as usize];
            let Some(next) = k
                .writes
                .get(&r2n.sess)
                .and_then(|list| first_after(list, r2n.idx))
            else {
                continue;
            };
            if self.in_row(next, row) {
                let mut chain = vec![w1, r2];
                chain.extend(self.path(next, r));
                found.push(Found {
                    kind: AnomalyKind::WritesFollowReads,
                    ops: self.ops_of(&chain),
                    explanation: format!(
                        "{rd} returned the value of {wd} although {} is in the read's causal past, and its session wrote it after reading {wd} in {}",
                        self.describe(next),
                        self.describe(r2)
                    ),
                });
                return;
            }
        }
        // Any other chain.
        let w2 = overwriters[0];
        let chain = self.path_via(w1, w2, r);
        found.push(Found {
            kind: AnomalyKind::StaleRead,
            ops: self.ops_of(&chain),
            explanation: format!(
                "{rd} returned the value of {wd} although {}, which causally follows it, is in the read's causal past",
                self.describe(w2)
            ),
        });
    }

    /// Deletes of `key` outside `r`'s past that may have been concurrent with
    /// it and won: invoked before `r` completed, not in its past, not after
    /// it. Counts up to `limit`; returns one of them (NONE for a failed one).
    fn concurrent_deletes(&self, r: u32, limit: usize) -> Vec<u32> {
        let node = self.nodes[r as usize];
        let k = &self.keys[node.key];
        let row = self.row(r);
        let done = self.op(r).completed_us.unwrap_or(u64::MAX);
        let mut out = Vec::new();
        for (&s, list) in &k.deletes {
            // Deletes of s not in r's past; the first one is the earliest
            // invoked and the least likely to follow r.
            let pos = list.partition_point(|&(i, _)| i < row[s]);
            for &(_, d) in &list[pos..] {
                if self.op(d).invoked_us > done || self.in_row(r, self.row(d)) {
                    break;
                }
                out.push(d);
                if out.len() >= limit {
                    return out;
                }
            }
        }
        for &(invoked, pred) in &k.failed_deletes {
            if invoked > done {
                break;
            }
            if pred == NONE || !self.in_row(r, self.row(pred)) {
                out.push(NONE);
                if out.len() >= limit {
                    return out;
                }
            }
        }
        out
    }

    /// A read that found the key absent.
    fn check_absent_read(&self, r: u32, found: &mut Vec<Found>, arb: &mut Vec<ArbEdge>) {
        let node = self.nodes[r as usize];
        let key = node.key;
        let row = self.row(r);
        let frontier = self.frontier(key, row);
        let maximal = self.maximal(&frontier);
        let deletes: Vec<u32> = maximal
            .iter()
            .copied()
            .filter(|&w| self.is_delete(w))
            .collect();
        if maximal.is_empty() {
            return;
        }
        if !deletes.is_empty() {
            // When one delete alone can explain the absence, it outranked
            // every concurrent write in the past.
            if deletes.len() == 1 && self.concurrent_deletes(r, 1).is_empty() {
                let d = deletes[0];
                for &w in &frontier {
                    if self.concurrent(w, d) {
                        arb.push(ArbEdge {
                            key,
                            lo: w,
                            hi: d,
                            why: r,
                        });
                    }
                }
            }
            return;
        }
        if !self.concurrent_deletes(r, 1).is_empty() {
            return;
        }
        let k = &self.keys[key];
        let rd = self.describe(r);
        let name = &k.name;
        if let Some(own) = k
            .writes
            .get(&node.sess)
            .and_then(|list| last_below(list, node.idx))
        {
            if !self.is_delete(own) && !self.deleted_in(own, row) {
                found.push(Found {
                    kind: AnomalyKind::ReadYourWrites,
                    ops: self.ops_of(&self.path(own, r)),
                    explanation: format!(
                        "{rd} found {name} absent, but the session's own earlier write {} was never overwritten by a delete it could see or one concurrent with it",
                        self.describe(own)
                    ),
                });
                return;
            }
        }
        if let Some(list) = k.reads.get(&node.sess) {
            let earlier = list.partition_point(|&(i, _)| i < node.idx);
            for &(_, r2) in list[..earlier].iter().rev() {
                let w2 = self.rf[r2 as usize];
                if w2 != NONE && !self.deleted_in(w2, row) {
                    found.push(Found {
                        kind: AnomalyKind::MonotonicReads,
                        ops: self.ops_of(&[w2, r2, r]),
                        explanation: format!(
                            "{rd} found {name} absent, but the session's earlier read {} saw {}, and no delete it could see or one concurrent with it removed that",
                            self.describe(r2),
                            self.describe(w2)
                        ),
                    });
                    return;
                }
            }
        }
        let p = maximal[0];
        found.push(Found {
            kind: AnomalyKind::PhantomAbsence,
            ops: self.ops_of(&self.path(p, r)),
            explanation: format!(
                "{rd} found {name} absent although {} is in its causal past and no delete in its past or concurrent with it could have removed it",
                self.describe(p)
            ),
        });
    }

    /// Final reads: agreement, maximality, lost writes. Returns whether any
    /// key diverged, and the converged final write of each key that has one.
    fn check_finals(
        &self,
        writer_of: &HashMap<&str, usize>,
        found: &mut Vec<Found>,
        lost_to_crash: &mut BTreeSet<u32>,
    ) -> (bool, HashMap<usize, u32>) {
        let mut by_key: BTreeMap<&str, Vec<&FinalRead>> = BTreeMap::new();
        for fr in &self.h.final_reads {
            by_key.entry(fr.key.as_str()).or_default().push(fr);
        }
        let key_of: HashMap<&str, usize> = self
            .keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.name.as_str(), i))
            .collect();
        let mut diverged = false;
        let mut converged = HashMap::new();
        let mut reported_lost = HashSet::new();
        for (name, reads) in by_key {
            let key = key_of[name];
            let mut values: BTreeMap<Option<&str>, Vec<usize>> = BTreeMap::new();
            for fr in &reads {
                values
                    .entry(fr.value.as_deref())
                    .or_default()
                    .push(fr.replica);
            }
            // The write behind each final value.
            let mut writes: Vec<(Option<&str>, Option<u32>)> = Vec::new();
            for &value in values.keys() {
                let Some(v) = value else {
                    writes.push((None, None));
                    continue;
                };
                match writer_of.get(v) {
                    Some(&wi) if self.h.ops[wi].key == name => {
                        let n = self.node_of(wi);
                        writes.push((value, n));
                    }
                    other => {
                        found.push(Found {
                            kind: AnomalyKind::ValueNeverWritten,
                            ops: other.map(|&wi| vec![wi]).unwrap_or_default(),
                            explanation: format!(
                                "final read at replica(s) {:?} found {name}={v:?}, a value no put of {name} wrote",
                                values[&value]
                            ),
                        });
                    }
                }
            }
            if values.len() > 1 {
                diverged = true;
                let parts: Vec<String> = values
                    .iter()
                    .map(|(v, replicas)| match v {
                        Some(v) => format!("replicas {replicas:?} have {v:?}"),
                        None => format!("replicas {replicas:?} have it absent"),
                    })
                    .collect();
                found.push(Found {
                    kind: AnomalyKind::Divergence,
                    ops: writes
                        .iter()
                        .filter_map(|&(_, n)| n.map(|n| self.nodes[n as usize].op))
                        .collect(),
                    explanation: format!(
                        "after healing, replicas disagree on {name}: {}",
                        parts.join("; ")
                    ),
                });
            }
            for &(value, n) in &writes {
                match (value, n) {
                    (Some(_), Some(wf)) => {
                        if values.len() == 1 {
                            converged.insert(key, wf);
                        }
                        self.final_present(key, wf, found, lost_to_crash, &mut reported_lost);
                    }
                    (None, _) => self.final_absent(key, found, lost_to_crash, &mut reported_lost),
                    _ => {}
                }
            }
        }
        (diverged, converged)
    }

    fn node_of(&self, op: usize) -> Option<u32> {
        let n = self.node_of_op[op];
        (n != NONE).then_some(n)
    }

    /// Reports the lost puts among `candidates` (per session: the puts that
    /// should have survived, in session order). Returns whether any was
    /// reported as a LostWrite.
    fn report_lost(
        &self,
        per_session: &[&[(u32, u32)]],
        cause: impl Fn(u32) -> (Vec<u32>, String),
        found: &mut Vec<Found>,
        lost_to_crash: &mut BTreeSet<u32>,
        reported: &mut HashSet<u32>,
    ) -> bool {
        // Only the latest lost puts are reported: one that a later lost put
        // follows was overwritten, by that put.
        let latest_survivor: Vec<u32> = per_session
            .iter()
            .filter_map(|list| {
                list.iter()
                    .rev()
                    .find(|e| !self.excused[e.1 as usize])
                    .map(|e| e.1)
            })
            .collect();
        let latest: Vec<u32> = per_session
            .iter()
            .filter_map(|list| list.last().map(|e| e.1))
            .collect();
        let mut any = false;
        for &p in &latest_survivor {
            if latest_survivor.iter().any(|&q| self.lt(p, q)) {
                continue;
            }
            any = true;
            if reported.insert(p) {
                let (chain, why) = cause(p);
                found.push(Found {
                    kind: AnomalyKind::LostWrite,
                    ops: self.ops_of(&chain),
                    explanation: format!(
                        "acknowledged {} is lost: {why}, and its replica did not crash after acknowledging it",
                        self.describe(p)
                    ),
                });
            }
        }
        for &p in &latest {
            if self.excused[p as usize] && !latest.iter().any(|&q| self.lt(p, q)) {
                lost_to_crash.insert(p);
            }
        }
        any
    }

    /// The final value of `key` is the one written by `wf` at some replica.
    fn final_present(
        &self,
        key: usize,
        wf: u32,
        found: &mut Vec<Found>,
        lost_to_crash: &mut BTreeSet<u32>,
        reported: &mut HashSet<u32>,
    ) {
        let k = &self.keys[key];
        // Acknowledged puts hb-after wf: a suffix of each session's puts.
        let after: Vec<&[(u32, u32)]> = k
            .puts
            .values()
            .map(|list| &list[list.partition_point(|e| !self.lt(wf, e.1))..])
            .filter(|s| !s.is_empty())
            .collect();
        let wfd = self.describe(wf);
        let lost = self.report_lost(
            &after,
            |p| {
                (
                    self.path(wf, p),
                    format!(
                        "the final value of {} comes from {wfd}, which causally precedes it",
                        k.name
                    ),
                )
            },
            found,
            lost_to_crash,
            reported,
        );
        if lost {
            return;
        }
        // A surviving delete (or observed failed put) after wf.
        let mut dominated_by = k
            .deletes
            .values()
            .flat_map(|list| &list[list.partition_point(|e| !self.lt(wf, e.1))..])
            .map(|e| e.1)
            .chain(k.failed_puts.iter().copied().filter(|&f| self.lt(wf, f)))
            .filter(|&w| !self.excused[w as usize]);
        if let Some(w) = dominated_by.next() {
            found.push(Found {
                kind: AnomalyKind::NotCausallyMaximal,
                ops: self.ops_of(&self.path(wf, w)),
                explanation: format!(
                    "the final value of {} comes from {wfd}, but {} causally follows it and its replica did not crash",
                    k.name,
                    self.describe(w)
                ),
            });
        }
    }

    /// The final value of `key` is absent at some replica.
    fn final_absent(
        &self,
        key: usize,
        found: &mut Vec<Found>,
        lost_to_crash: &mut BTreeSet<u32>,
        reported: &mut HashSet<u32>,
    ) {
        let k = &self.keys[key];
        if !k.failed_deletes.is_empty() {
            // A failed delete may have happened, concurrent with anything.
            return;
        }
        let last_deletes: Vec<u32> = k
            .deletes
            .values()
            .filter_map(|l| l.last().map(|e| e.1))
            .collect();
        // Acknowledged puts every delete precedes: a suffix of each session's.
        let after: Vec<&[(u32, u32)]> = k
            .puts
            .values()
            .map(|list| {
                &list[list.partition_point(|e| !last_deletes.iter().all(|&d| self.lt(d, e.1)))..]
            })
            .filter(|s| !s.is_empty())
            .collect();
        let lost = self.report_lost(
            &after,
            |p| {
                let last = last_deletes
                    .iter()
                    .copied()
                    .max_by_key(|&d| self.op(d).invoked_us);
                match last {
                    Some(d) => (
                        self.path(d, p),
                        format!("{} is absent in the end though every delete of it causally precedes this put", k.name),
                    ),
                    None => (vec![p], format!("{} is absent in the end though it was never deleted", k.name)),
                }
            },
            found,
            lost_to_crash,
            reported,
        );
        if lost {
            return;
        }
        // Absent is fine if some delete is not followed by a surviving put.
        let survivors: Vec<u32> = k
            .puts
            .values()
            .filter_map(|list| {
                list.iter()
                    .rev()
                    .find(|e| !self.excused[e.1 as usize])
                    .map(|e| e.1)
            })
            .chain(
                k.failed_puts
                    .iter()
                    .copied()
                    .filter(|&f| !self.excused[f as usize]),
            )
            .collect();
        if survivors.is_empty() {
            return;
        }
        let mut witness = None;
        for &d in &last_deletes {
            match survivors.iter().copied().find(|&p| self.lt(d, p)) {
                Some(p) => witness = witness.or(Some((d, p))),
                None => return,
            }
        }
        let (ops, why) = match witness {
            Some((d, p)) => (
                self.path(d, p),
                format!(
                    "every delete of it is followed by a surviving put, e.g. {} by {}",
                    self.describe(d),
                    self.describe(p)
                ),
            ),
            None => (
                vec![survivors[0]],
                format!(
                    "it was never deleted and {} survives",
                    self.describe(survivors[0])
                ),
            ),
        };
        found.push(Found {
            kind: AnomalyKind::NotCausallyMaximal,
            ops: self.ops_of(&ops),
            explanation: format!("{} is absent in the end, but {why}", k.name),
        });
    }

    /// The conflict rule must be one order: hb, the rankings reads showed,
    /// and the converged final values must not contradict each other.
    fn check_arbitration(
        &self,
        arb: Vec<ArbEdge>,
        finals: &HashMap<usize, u32>,
        found: &mut Vec<Found>,
    ) {
        let mut by_key: BTreeMap<usize, Vec<ArbEdge>> = BTreeMap::new();
        for e in arb {
            by_key.entry(e.key).or_default().push(e);
        }
        for (key, mut edges) in by_key {
            let mut involved: BTreeSet<u32> = edges.iter().flat_map(|e| [e.lo, e.hi]).collect();
            // The final value outranks every surviving write concurrent with it.
            if let Some(&wf) = finals.get(&key) {
                for &w in &involved {
                    if !self.excused[w as usize] && self.concurrent(w, wf) {
                        edges.push(ArbEdge {
                            key,
                            lo: w,
                            hi: wf,
                            why: FINAL,
                        });
                    }
                }
                involved.insert(wf);
            }
            let list: Vec<u32> = involved.iter().copied().collect();
            let local: HashMap<u32, usize> =
                list.iter().enumerate().map(|(i, &n)| (n, i)).collect();
            let mut adj: Vec<Vec<(u32, u32)>> = vec![Vec::new(); list.len()];
            let mut seen = HashSet::new();
            for e in &edges {
                if seen.insert((e.lo, e.hi)) {
                    adj[local[&e.lo]].push((local[&e.hi] as u32, e.why));
                }
            }
            // hb between involved writes, through each session's first
            // successor (later ones follow by session order).
            let mut by_sess: BTreeMap<usize, Vec<u32>> = BTreeMap::new();
            for &n in &list {
                if self.nodes[n as usize].chain {
                    by_sess
                        .entry(self.nodes[n as usize].sess)
                        .or_default()
                        .push(n);
                }
            }
            for chain in by_sess.values_mut() {
                chain.sort_by_key(|&n| self.nodes[n as usize].idx);
                for pair in chain.windows(2) {
                    adj[local[&pair[0]]].push((local[&pair[1]] as u32, NONE));
                }
            }
            let failed: Vec<u32> = list
                .iter()
                .copied()
                .filter(|&n| !self.nodes[n as usize].chain)
                .collect();
            for &u in &list {
                for chain in by_sess.values() {
                    let pos = chain.partition_point(|&v| !self.lt(u, v));
                    if let Some(&v) = chain.get(pos) {
                        adj[local[&u]].push((local[&v] as u32, NONE));
                    }
                }
                for &f in &failed {
                    if self.lt(u, f) {
                        adj[local[&u]].push((local[&f] as u32, NONE));
                    }
                }
            }
            let plain: Vec<Vec<u32>> = adj
                .iter()
                .map(|a| a.iter().map(|e| e.0).collect())
                .collect();
            for comp in strongly_connected(&plain) {
                let inside: HashSet<u32> = comp.iter().copied().collect();
                // A ranking edge inside the component, and the way back.
                let Some((from, to, why)) = comp.iter().find_map(|&u| {
                    adj[u as usize]
                        .iter()
                        .find(|e| e.1 != NONE && inside.contains(&e.0))
                        .map(|e| (u, e.0, e.1))
                }) else {
                    continue;
                };
                let mut parent: HashMap<u32, (u32, u32)> = HashMap::new();
                parent.insert(to, (to, NONE));
                let mut queue = VecDeque::from([to]);
                while let Some(x) = queue.pop_front() {
                    if x == from {
                        break;
                    }
                    for &(y, w) in &adj[x as usize] {
                        if inside.contains(&y) && !parent.contains_key(&y) {
                            parent.insert(y, (x, w));
                            queue.push_back(y);
                        }
                    }
                }
                if !parent.contains_key(&from) {
                    continue;
                }
                // Edges of the cycle: from -> to, then to ... -> from.
                let mut cycle = vec![(from, to, why)];
                let mut back = Vec::new();
                let mut x = from;
                while x != to {
                    let (p, w) = parent[&x];
                    back.push((p, x, w));
                    x = p;
                }
                back.reverse();
                cycle.extend(back);
                let mut ops = Vec::new();
                let mut steps = Vec::new();
                for &(a, b, w) in &cycle {
                    let (a, b) = (list[a as usize], list[b as usize]);
                    ops.push(a);
                    match w {
                        NONE => steps.push(format!(
                            "{} happens before {}",
                            self.describe(a),
                            self.describe(b)
                        )),
                        FINAL => steps.push(format!(
                            "the final state keeps {} over concurrent {}",
                            self.describe(b),
                            self.describe(a)
                        )),
                        read => {
                            ops.push(read);
                            steps.push(format!(
                                "{} saw {} win over concurrent {}",
                                self.describe(read),
                                self.describe(b),
                                self.describe(a)
                            ));
                        }
                    }
                }
                found.push(Found {
                    kind: AnomalyKind::Divergence,
                    ops: self.ops_of(&ops),
                    explanation: format!(
                        "concurrent writes of {} were not resolved by one rule: {}",
                        self.keys[key].name,
                        steps.join("; ")
                    ),
                });
            }
        }
    }
}
