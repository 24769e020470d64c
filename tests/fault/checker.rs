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
//! * **Resurrection**: a deleted value coming back. A read returns the value
//!   of put w1 although an acknowledged delete d of the key with
//!   w1 -hb-> d -hb-> read exists: the store had applied d before serving
//!   the read (the session's context named it), so the value was deleted
//!   and is back. After settling, a final read returns w1 although an
//!   acknowledged delete d with w1 -hb-> d exists: the value was deleted
//!   after it was written, and since values are unique no other put can
//!   explain it. This is checked before the session labels above, and the
//!   explanation says how d came into the read's past (the session's own
//!   delete, or a chain through other sessions). Legitimate outcomes are
//!   not touched: a put concurrent with d may win by the conflict rule (then
//!   it is not hb-before d), a put after d brings the key back with a new
//!   value, and a delete whose replica crashed after it was sent may
//!   be lost (below). For example:
//!
//!   ```text
//!   s0: put(x)=a                    w1
//!   s1: get(x)=a   delete(x)        d, with w1 -hb-> d (s1 saw a first)
//!   s1: put(y)=1
//!   s2: get(y)=1   get(x)=a         Resurrection: d is in this read's past
//!   ```
//!
//!   Had s1 deleted x without reading a first, a and d would be concurrent,
//!   the rule may rank a higher, and the same reads would be clean.
//! * **Convergence**: every replica's final read of a key is the same
//!   (Divergence); the final value's write is not hb-before a surviving write
//!   of the key (NotCausallyMaximal; a surviving delete after it is the
//!   Resurrection above), and an absent final value has a delete that could
//!   have won (NotCausallyMaximal).
//! * **Lost writes**: an acknowledged put that is not the final value though
//!   the final value's write is hb-before it, or the final value is absent
//!   while every delete of the key is hb-before it (LostWrite, reported for
//!   the latest such puts). A write is excused, and a lost put listed in
//!   [`Report::lost_to_crash`] instead, only when its replica *lost its
//!   state* after the write was sent (while the request was under way
//!   too: its answer may have left before the crash and arrived after it;
//!   a crash that did not keep its
//!   `DATA_DIR`: a replica without a disk, a disk deleted, an eviction
//!   that ends with a copy of the state, a replica never started again)
//!   and no replica that kept its state is known to have held it. An
//!   operation answered at another replica before the loss, with the write
//!   in its causal past, shows that replica had applied it (a replica
//!   serves a request only once it has applied its context); unless that
//!   replica lost its state later too, the write must survive. A crash
//!   that kept the state (SIGKILL or SIGTERM, started again on the same
//!   `DATA_DIR`; [`Crash::kept_state`]) excuses nothing: acknowledged
//!   means on disk, so after every replica is killed at once and started
//!   again, every acknowledged write is still there.
//! * **Lost state excuses client reads too.** A write whose replica lost
//!   its state after it was sent and before a read completed may be
//!   gone by the time of that read, even though the read's session depends
//!   on it: once the store has retired the crashed incarnation, a context
//!   naming the write is satisfied rather than refused (SPEC: incarnations
//!   that are gone are retired), and the replicas that hold the write may
//!   not have passed it on yet. Client reads therefore ignore such writes
//!   when they ask what must be visible (stale reads, absences,
//!   resurrections); an eviction from the view is recorded as such a crash
//!   for the same reason. A crash that kept the state excuses no read: the
//!   incarnation is not gone, and a replica must wait for its writes.
//! * **Relayed requests** (a sharded store, [`History::relayed`]): any node
//!   takes any request and relays it to a member of the key's shard, so
//!   the replica a request was sent to ([`Op::replica`]) says nothing about
//!   who applied it. The node whose incarnation issued an acknowledged
//!   write is read off its answer ([`Op::served_by`], [`Op::incarnation`]),
//!   and only its losing its state excuses the write (a failed put, whose
//!   node is unknown, may have been taken by any node's loss). Evidence
//!   that another node held the write comes only from acknowledged writes
//!   issued by another node of the same shard group (`s<shard>e<epoch>`,
//!   in the incarnation) with the write in their causal past: a member of
//!   another group takes the write's entry as met without holding it, and
//!   a read may have been relayed to the write's own node.
//! * **Incarnation**: a replica stopped and started again on the state it
//!   kept comes back under the same identity; one that lost its state
//!   comes back under a new one ([`History::restarts`]).
//! * **Availability**: the share of operations answered (not Failed),
//!   overall and per partition side during each partition window.
//! * **Conditional writes** (`If-None-Match: *`, `If-Match`; [`Op::condition`]):
//!   one that succeeded is a plain write; one answered 412 ([`OpResult::Unmet`])
//!   wrote nothing, so a read (or final read) returning its value is
//!   PreconditionFailedWrote. An `If-None-Match: *` put that succeeded found
//!   its key absent at its replica once its context was applied: it is
//!   judged like a read that found the key absent, at the put's own causal
//!   past (ReadYourWrites, MonotonicReads or PhantomAbsence when a put in
//!   that past cannot have been removed by a delete).
//! * **Siblings** (keys of [`History::sibling_tables`]): reads return sets,
//!   judged by the recorded contexts (`checker/siblings.rs`): no value a
//!   write the replica had applied has seen (ReplacedSibling), every value
//!   it had applied that no write can have seen (MissingSibling), and after
//!   settling the same set at every replica (Divergence), without replaced
//!   values, with every acknowledged put no write can have seen (LostWrite).
//!
//! # Limitations
//!
//! Sound rather than complete: the hb built from the history is a subset of
//! the store's real causal order (absent reads and failed deletes create no
//! edges, so a session that found a key absent and later reads its old value
//! again is not flagged unless a delete it depends on is known), the
//! tie-break rule is unknown, and a write whose replica lost its state is
//! excused from everything that would need it to survive unless a replica
//! that kept its state is known to have held it (only answered operations
//! show that; a write passed on silently is excused all the same). Memory is
//! O(successful ops x sessions).
//!
//! # Layout
//!
//! This file holds the history model and the entry point, [`check`];
//! `checker/build.rs` builds the graph, `checker/graph.rs` holds the graph
//! searches (on petgraph), `checker/past.rs` answers questions
//! about it, `checker/reads.rs` judges client reads, `checker/finals.rs`
//! the final reads, `checker/arbitration.rs` the conflict rule, and
//! `checker/report.rs` holds the verdict and how it prints,
//! `checker/siblings.rs` the keys of tables with siblings.

#![allow(dead_code)]

#[path = "checker/arbitration.rs"]
mod arbitration;
#[path = "checker/build.rs"]
mod build;
#[path = "checker/finals.rs"]
mod finals;
#[path = "checker/graph.rs"]
mod graph;
#[path = "checker/past.rs"]
mod past;
#[path = "checker/reads.rs"]
mod reads;
#[path = "checker/report.rs"]
mod report;
#[path = "checker/shards.rs"]
mod shards;
#[path = "checker/siblings.rs"]
mod siblings;

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

// The crates that include this module (the fault suite, the checker's
// tests) each use a different part of the report.
#[allow(unused_imports)]
pub use report::{
    Anomaly, AnomalyKind, Availability, Ratio, Report, SideAvailability, Stats, WindowAvailability,
};
#[allow(unused_imports)]
pub use shards::key_count_problems;
#[allow(unused_imports)]
pub use siblings::{Clock, Condition, Dot, FinalSet};

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
    /// The replica that served it, when known and the store relays
    /// requests ([`History::relayed`]): for an acknowledged write, the one
    /// whose incarnation issued the write (named by the entry the answer's
    /// context gained). `None` in an unsharded store, where `replica`
    /// served it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_by: Option<usize>,
    /// For an acknowledged write in a store that relays requests: the
    /// incarnation that issued it (`address#s<shard>e<epoch>.<hex>`), whose
    /// group (`s<shard>e<epoch>`) says which shard's members had to apply
    /// it before serving a request that depends on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incarnation: Option<String>,
    /// When the request was sent (microseconds, one clock for the history).
    pub invoked_us: u64,
    /// When the answer arrived; `None` when none did.
    pub completed_us: Option<u64>,
    /// What came back.
    pub result: OpResult,
    /// The table (`None`: the default one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// A conditional write's condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<Condition>,
    /// The entity tag answered: of the version a GET read or a PUT made,
    /// or of the version that failed a 412's condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// The causal metadata sent, as a clock, when recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent: Option<Clock>,
    /// An acknowledged write's dot: the one entry its answer's context
    /// grew, when recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dot: Option<Dot>,
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
    /// A get in a table with siblings answered 300 with these values.
    Siblings(Vec<String>),
    /// A conditional write answered 412: nothing was written.
    Unmet,
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

/// A replica was killed, evicted from the view, or lost its disk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Crash {
    /// The replica killed or evicted.
    pub replica: usize,
    /// When.
    pub at_us: u64,
    /// Whether the replica came back with everything it had: stopped
    /// (SIGKILL or SIGTERM) and started again on the `DATA_DIR` it kept.
    /// Such a crash excuses nothing. Otherwise (no disk, its disk deleted,
    /// evicted and given a copy of the state when it came back, or never
    /// started again) the writes only it held may be lost. Histories saved
    /// before replicas had disks lack the field: their crashes lost state.
    #[serde(default)]
    pub kept_state: bool,
}

/// A replica's identity (`address#incarnation`) before it was stopped and
/// once it was back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restart {
    /// The replica.
    pub replica: usize,
    /// When it was stopped (the first stop since its identity was seen).
    pub at_us: u64,
    /// Whether every stop in between kept its state (its `DATA_DIR`): then
    /// it must come back under the same identity; otherwise under a new
    /// one (a replica that lost what it wrote must not issue its event ids
    /// again).
    pub kept_state: bool,
    /// Its identity before.
    pub before: String,
    /// Its identity once it was ready again.
    pub after: String,
    /// Whether it said it set aside the state it kept, as it must when it
    /// was stopped while merging a member's copy (a state that is not
    /// whole): it then comes back as a new incarnation that copies the
    /// state again and writes its former incarnation's writes again.
    #[serde(default)]
    pub set_aside: bool,
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
    /// Identities before and after restarts.
    #[serde(default)]
    pub restarts: Vec<Restart>,
    /// Partitions the nemesis caused.
    pub partitions: Vec<PartitionWindow>,
    /// Requests went to any node and were relayed to a member of their
    /// key's shard (a sharded store): an operation was served by
    /// [`Op::served_by`] where that is known, else by some member of its
    /// key's shard, not necessarily [`Op::replica`].
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub relayed: bool,
    /// Tables created with siblings: their keys are judged as sets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sibling_tables: Vec<String>,
    /// One read of every key of those tables at every replica after
    /// healing (`final_reads` holds the default table's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub final_sets: Vec<FinalSet>,
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
// The checker's graph (built in checker/build.rs)
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
    /// A get answered 300: the values of a key with siblings.
    ReadSet(&'a [String]),
    /// A conditional write answered 412: a read of unknown value.
    Unmet,
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
    /// A key of a table with siblings (see `checker/siblings.rs`).
    siblings: bool,
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

/// The hb graph of a history and the indexes the checks search.
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
    /// Times each replica lost its state (crashes that did not keep it),
    /// in order.
    crashes: HashMap<usize, Vec<u64>>,
    /// Times each replica crashed and kept its state, in order.
    kept_crashes: HashMap<usize, Vec<u64>>,
    /// Per node: may be lost by the end (its replica lost its state after
    /// acknowledging it, and it had not reached a replica that kept it).
    excused: Vec<bool>,
    /// Per node: an operation answered at another replica, with the node in
    /// its causal past, before the node's replica lost its state, at a
    /// replica that did not lose its state afterwards (NONE if none).
    held_by: Vec<u32>,
    searches_left: Cell<usize>,
}

/// Checks a history; see the module documentation for what is checked.
pub fn check(h: &History) -> Report {
    let mut warnings = Vec::new();
    let mut found = Vec::new();
    // hb, its cycles and the values no put wrote.
    let built = build::build(h, &mut warnings, &mut found);
    let ctx = &built.ctx;
    let rankings = check_reads(ctx, &built.class, &mut found);
    let mut lost_to_crash = BTreeSet::new();
    let (mut unconverged, finals) = ctx.check_finals(
        &built.writer_of,
        &built.unmet_of,
        &mut found,
        &mut lost_to_crash,
    );
    unconverged |= ctx.check_siblings(&built, &mut found, &mut lost_to_crash);
    ctx.check_arbitration(rankings, &finals, &mut found);
    finals::check_restarts(h, &mut found);
    let availability = report::availability(h, &report::answered(&built.class));
    let anomalies = report::anomalies(h, found);
    Report {
        convergence_ok: !unconverged
            && !anomalies
                .iter()
                .any(|a| a.kind == AnomalyKind::NotCausallyMaximal),
        stats: report::stats(h, &built, &availability),
        anomalies,
        lost_to_crash: lost_to_crash
            .into_iter()
            .map(|n| h.ops[ctx.nodes[n as usize].op].id)
            .collect(),
        availability,
        warnings,
    }
}

/// Judges every client read (one that returned a value, one that found its
/// key absent, a put that succeeded with `If-None-Match: *`) of a key
/// without siblings; returns the conflict rankings the reads showed.
fn check_reads(ctx: &Ctx<'_>, class: &[Class<'_>], found: &mut Vec<Found>) -> Vec<ArbEdge> {
    let mut rankings = Vec::new();
    for n in 0..ctx.nodes.len() as u32 {
        let node = ctx.nodes[n as usize];
        if ctx.keys[node.key].siblings {
            continue;
        }
        if node.effect == Effect::Put && node.chain {
            if ctx.op(n).condition == Some(Condition::IfNoneMatch) {
                ctx.check_created(n, found);
            }
            continue;
        }
        if node.effect != Effect::Read {
            continue;
        }
        match class[node.op] {
            Class::Read(Some(_)) if ctx.rf[n as usize] != NONE => {
                ctx.check_value_read(n, found, &mut rankings)
            }
            Class::Read(None) => ctx.check_absent_read(n, found, &mut rankings),
            _ => {}
        }
    }
    rankings
}
