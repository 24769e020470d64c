//! The verdict on a history: the anomalies found (each with the chain of
//! operations that shows it), availability, sizes, and how it all prints.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::build::{key_name, Built};
use super::{Class, Found, History, Op, OpKind, OpResult};

/// What kind of violation an anomaly is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum AnomalyKind {
    /// The happens-before graph has a cycle.
    Cycle,
    /// A read returned a value no put of that key wrote (or before it was written).
    ValueNeverWritten,
    /// A read returned the value of a conditional write answered 412.
    PreconditionFailedWrote,
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
    /// A read returned the value of a put that a delete it should have seen removed.
    Resurrection,
    /// A read (or final read) of a key with siblings returned a value that a
    /// write the replica had applied had seen, so replaced.
    ReplacedSibling,
    /// A read of a key with siblings left out a value the replica had
    /// applied and no write can have replaced.
    MissingSibling,
    /// Replicas disagree on a key after healing, or resolved a conflict differently.
    Divergence,
    /// The converged value is not causally maximal among the key's writes.
    NotCausallyMaximal,
    /// An acknowledged put vanished without a crash to explain it.
    LostWrite,
    /// A replica came back under a new identity though it kept its state,
    /// or under its old one though it lost it.
    Incarnation,
}

impl AnomalyKind {
    /// Every kind, in report order.
    pub const ALL: [AnomalyKind; 16] = [
        AnomalyKind::Cycle,
        AnomalyKind::ValueNeverWritten,
        AnomalyKind::PreconditionFailedWrote,
        AnomalyKind::StaleRead,
        AnomalyKind::PhantomAbsence,
        AnomalyKind::ReadYourWrites,
        AnomalyKind::MonotonicReads,
        AnomalyKind::MonotonicWrites,
        AnomalyKind::WritesFollowReads,
        AnomalyKind::Resurrection,
        AnomalyKind::ReplacedSibling,
        AnomalyKind::MissingSibling,
        AnomalyKind::Divergence,
        AnomalyKind::NotCausallyMaximal,
        AnomalyKind::LostWrite,
        AnomalyKind::Incarnation,
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

    pub(super) fn add(&mut self, ok: bool) {
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
    /// Crashes after which the replica came back with its state.
    #[serde(default)]
    pub crashes_kept_state: usize,
    /// Crashes that lost the replica's state (disk deleted, evicted, ...).
    #[serde(default)]
    pub crashes_lost_state: usize,
    /// Restarts whose identity was checked.
    #[serde(default)]
    pub restarts: usize,
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
    /// (no Divergence, no NotCausallyMaximal, no final value that a delete
    /// causally following it should have removed).
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
        writeln!(
            f,
            "crashes: {} kept the replica's state (excusing nothing), {} lost it; identity checked on {} restart(s)",
            s.crashes_kept_state, s.crashes_lost_state, s.restarts
        )?;
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

/// `#id s<session> r<replica> put(k)=v [t..t]`.
pub(super) fn render(op: &Op) -> String {
    let key = key_name(op.table.as_deref(), &op.key);
    let what = match (&op.kind, &op.result) {
        (OpKind::Put { value }, _) => format!("put({key})={value}"),
        (OpKind::Get, OpResult::Read(Some(v))) => format!("get({key})={v}"),
        (OpKind::Get, OpResult::Read(None)) => format!("get({key})=<absent>"),
        (OpKind::Get, OpResult::Siblings(vs)) => format!("get({key})={{{}}}", vs.join(",")),
        (OpKind::Get, _) => format!("get({key})"),
        (OpKind::Delete, OpResult::DeleteAbsent) => format!("delete({key})=<absent>"),
        (OpKind::Delete, _) => format!("delete({key})"),
    };
    let condition = match &op.condition {
        Some(c) => format!(" {c}"),
        None => String::new(),
    };
    let failed = match &op.result {
        OpResult::Failed(why) => format!(" FAILED({why})"),
        OpResult::Unmet => " 412".to_string(),
        _ => String::new(),
    };
    let done = op
        .completed_us
        .map_or_else(|| "?".to_string(), |t| t.to_string());
    let served = match op.served_by {
        Some(r) if r != op.replica => format!(" (served by r{r})"),
        _ => String::new(),
    };
    format!(
        "#{} s{} r{}{served} {what}{condition}{failed} [{}..{done}]",
        op.id, op.session, op.replica, op.invoked_us
    )
}

/// Availability of `h`, overall and per partition side, from whether each
/// operation was answered.
pub(super) fn availability(h: &History, answered: &[bool]) -> Availability {
    let mut availability = Availability::default();
    for &ok in answered {
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
        for (op, &ok) in h.ops.iter().zip(answered) {
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
    availability
}

/// Per operation: whether it was answered (for availability).
pub(super) fn answered(class: &[Class<'_>]) -> Vec<bool> {
    class
        .iter()
        .map(|c| !matches!(c, Class::FailedPut | Class::FailedDelete | Class::FailedGet))
        .collect()
}

/// The anomalies found, by kind, naming operations by their ids.
pub(super) fn anomalies(h: &History, mut found: Vec<Found>) -> Vec<Anomaly> {
    found.sort_by_key(|f| f.kind);
    found
        .into_iter()
        .map(|f| Anomaly {
            kind: f.kind,
            ops: f.ops.iter().map(|&i| h.ops[i].id).collect(),
            chain: f.ops.iter().map(|&i| render(&h.ops[i])).collect(),
            explanation: f.explanation,
        })
        .collect()
}

/// The sizes of what was checked.
pub(super) fn stats(h: &History, built: &Built<'_>, availability: &Availability) -> Stats {
    let completed = availability.overall.ok;
    Stats {
        ops: h.ops.len(),
        completed,
        failed: h.ops.len() - completed,
        failed_writes_observed: built.failed_observed,
        sessions: built.ctx.sessions,
        keys: built.ctx.keys.len(),
        final_reads: h.final_reads.len(),
        reads_from: built.reads_from,
        crashes_kept_state: h.crashes.iter().filter(|c| c.kept_state).count(),
        crashes_lost_state: h.crashes.iter().filter(|c| !c.kept_state).count(),
        restarts: h.restarts.len(),
    }
}
