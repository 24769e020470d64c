//! Keys of tables with siblings ([`History::sibling_tables`]): a read
//! returns the set of concurrent values (300), one value (200) or none
//! (404), and the store keeps every value no other write has seen.
//!
//! A write W in such a table carries its client's context C_W (recorded
//! as [`Op::sent`]) and gets a dot ([`Op::dot`], the one entry its
//! answer's context grew). Applying W removes every value whose write's
//! dot C_W covers, and a value some held write has seen is not stored; a
//! delete is a write without a value. What a replica answers is the set of
//! values of the writes it holds that no other held write has seen. Two
//! relations follow, exact when both contexts and dots were recorded:
//!
//! * W *saw* w: C_W covers w's dot. Without the dot (a put whose answer
//!   never came) or the context, nothing is claimed: a read teaches the
//!   dots of the values it returns, not what they depended on, so hb
//!   (which is transitive) does not say what a context names.
//! * W *may have seen* w: C_W covers w's dot; without them, W was sent
//!   after w was and hb does not put W before w. A replica that set its
//!   state aside on a restart ([`Restart::set_aside`](super::Restart))
//!   writes its former incarnation's values again under dots of its new
//!   one, which a write removes as it removes the original (it saw the
//!   copy): W may have seen such a w when C_W names the new incarnation at
//!   all (which of its dots the copy has, the history does not say).
//!
//! A replica serves a read only once it has applied the read's context:
//! write w is *applied* at read r's replica when r's context covers w's
//! dot, unless w's replica lost its state before r completed (then its
//! incarnation may be retired and the context met without it). Only in a
//! history recorded without contexts is w -hb-> r asked instead.
//!
//! # The checks
//!
//! * **ReplacedSibling**: a read returns the value of w although a write W
//!   that saw w was applied at its replica (and was not lost in a crash
//!   by then): W removed w there, and w is never stored again.
//! * **MissingSibling**: a read leaves out the value of a put w applied at
//!   its replica (w not lost in a crash by then) though no write that
//!   may have seen w, other than w, was sent before the read completed:
//!   nothing could have removed it. A put answered 412, a delete answered
//!   404, a read: none of these write; a write whose outcome is unknown
//!   may have.
//! * After settling, each key's final sets ([`History::final_sets`]):
//!   every replica answers the same set (else Divergence); no value of a
//!   write that a surviving write (acknowledged, or observed, and not
//!   excused by a crash) saw (ReplacedSibling); every acknowledged or
//!   observed put that must survive, and that no write may have seen, is
//!   there (LostWrite; one excused by its replica's lost state is listed in
//!   `lost_to_crash` instead).
//!
//! Values no put of the key wrote, and values of puts answered 412, are
//! reported where reads are resolved (`build.rs`, and here for final sets).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};

use super::build::{key_name, Built};
use super::{AnomalyKind, Class, Ctx, Effect, Found, OpKind, NONE};

/// A causal context as a clock: entries `address#incarnation` -> count.
pub type Clock = BTreeMap<String, u64>;

/// The dot of a write: its replica incarnation and its count there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dot {
    /// `address#incarnation`.
    pub id: String,
    /// The write's count at that incarnation.
    pub n: u64,
}

impl Dot {
    /// Whether `clock` covers this dot.
    pub fn covered_by(&self, clock: &Clock) -> bool {
        clock.get(&self.id).is_some_and(|&n| n >= self.n)
    }
}

/// The condition of a conditional write.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Condition {
    /// `If-None-Match: *`: only if the key holds no value.
    IfNoneMatch,
    /// `If-Match: <etag>`: only if the key's version is that one.
    IfMatch(String),
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Condition::IfNoneMatch => write!(f, "[If-None-Match: *]"),
            Condition::IfMatch(tag) => write!(f, "[If-Match: {tag}]"),
        }
    }
}

/// A read of one key of a table with siblings at one replica after
/// healing and settling: the values it answered (none for a 404).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalSet {
    /// The replica read.
    pub replica: usize,
    /// The table.
    pub table: String,
    /// The key read.
    pub key: String,
    /// The values found, sorted.
    pub values: Vec<String>,
    /// When it was read.
    pub at_us: u64,
}

/// One key's writes, as the checks ask about them.
#[derive(Default)]
struct KeyWrites<'a> {
    /// Writes that happened: acknowledged puts and deletes, observed
    /// failed puts (graph nodes).
    made: Vec<u32>,
    /// Every write that may have happened (indexes into `History::ops`).
    maybe: Vec<usize>,
    /// Puts whose value may be read: acknowledged or observed (nodes).
    puts: Vec<u32>,
    /// Reads (nodes) and the values each returned.
    reads: Vec<(u32, BTreeSet<&'a str>)>,
    /// Per put: the writes that saw it.
    seers: HashMap<u32, Vec<u32>>,
    /// Per put: when the first write that may have seen it was sent.
    first_seer: HashMap<u32, u64>,
}

impl Ctx<'_> {
    /// Write node `a` surely saw write node `w`: its context covered `w`'s
    /// dot. Without both, nothing is claimed: a context holds what its
    /// session read and wrote, not everything those depended on, so hb
    /// does not say what a context names.
    fn saw(&self, a: u32, w: u32) -> bool {
        match (&self.op(a).sent, &self.op(w).dot) {
            (Some(sent), Some(dot)) => dot.covered_by(sent),
            _ => false,
        }
    }

    /// The write `a` (index into `History::ops`) may have seen write node `w`.
    fn may_have_seen(&self, a: usize, w: u32) -> bool {
        let (aop, wop) = (&self.h.ops[a], self.op(w));
        if let (Some(sent), Some(dot)) = (&aop.sent, &wop.dot) {
            // A copy of `w` written again by a later incarnation is removed
            // by a write that saw it as `w` is; which of that incarnation's
            // writes the copy is, the history does not say.
            let copied_by = self.written_again_by(&dot.id);
            return dot.covered_by(sent) || copied_by.is_some_and(|id| sent.contains_key(id));
        }
        let an = self.node_of_op[a];
        aop.invoked_us > wop.invoked_us && (an == NONE || !self.lt(an, w))
    }

    /// The session of write `a` (index into `History::ops`) read the value
    /// of put node `w` of the same key before `a` was sent: `a` saw `w`,
    /// whatever its context names. The context may not name `w`'s dot:
    /// an incarnation retired since is no longer named in contexts, and
    /// the value read may be a copy of `w` a replica wrote again under a
    /// dot of its own (a value that may have met a forgotten delete), which
    /// `a` replaces as it would `w`.
    fn read_first(&self, a: usize, w: u32, writes: &KeyWrites<'_>) -> bool {
        let aop = &self.h.ops[a];
        let value = self.value_of(w);
        writes.reads.iter().any(|(r, values)| {
            let rop = self.op(*r);
            rop.session == aop.session
                && rop.completed_us.is_some_and(|done| done <= aop.invoked_us)
                && values.contains(value)
        })
    }

    /// The incarnation that wrote the writes of incarnation `id` again, if
    /// one did: a replica stopped while merging a member's copy set its
    /// state aside and came back as a new incarnation, which writes its
    /// former one's writes again as its own ([`Restart::set_aside`]).
    ///
    /// [`Restart::set_aside`]: super::Restart::set_aside
    fn written_again_by(&self, id: &str) -> Option<&str> {
        (self.h.restarts.iter())
            .find(|r| r.set_aside && r.before == id && r.after != id)
            .map(|r| r.after.as_str())
    }

    /// Write node `w` was applied at the replica that served read `r`
    /// (unless its replica lost its state by then): `r`'s context covered
    /// `w`'s dot. Only for a history recorded without contexts is hb
    /// asked instead (`w` -hb-> `r`; an incarnation retired on the way
    /// could make that wrong, which the recorded context cannot).
    fn applied_at(&self, w: u32, r: u32) -> bool {
        match (&self.op(r).sent, &self.op(w).dot) {
            (Some(sent), Some(dot)) => dot.covered_by(sent),
            (Some(_), None) => false,
            (None, _) => self.in_row(w, self.row(r)),
        }
    }

    /// The value node `w` wrote.
    fn value_of(&self, w: u32) -> &str {
        match &self.op(w).kind {
            OpKind::Put { value } => value,
            _ => "",
        }
    }

    /// Every check on the keys of tables with siblings; returns whether
    /// any key failed to converge (replicas disagree, or keep a replaced
    /// value).
    pub(super) fn check_siblings(
        &self,
        built: &Built<'_>,
        found: &mut Vec<Found>,
        lost_to_crash: &mut BTreeSet<u32>,
    ) -> bool {
        let mut keys = self.sibling_keys(built);
        let mut unconverged = false;
        for (&key, writes) in &mut keys {
            writes.seers = writes
                .puts
                .iter()
                .map(|&w| {
                    let by = writes.made.iter().copied();
                    (w, by.filter(|&a| a != w && self.saw(a, w)).collect())
                })
                .collect();
            writes.first_seer = writes
                .puts
                .iter()
                .filter_map(|&w| {
                    let own = self.nodes[w as usize].op;
                    writes
                        .maybe
                        .iter()
                        .filter(|&&a| {
                            a != own && (self.may_have_seen(a, w) || self.read_first(a, w, writes))
                        })
                        .map(|&a| self.h.ops[a].invoked_us)
                        .min()
                        .map(|t| (w, t))
                })
                .collect();
            for (r, values) in &writes.reads {
                self.check_set_read(*r, values, writes, found);
            }
            unconverged |= self.check_final_sets(key, built, writes, found, lost_to_crash);
        }
        unconverged
    }

    /// The writes and reads of every key of a table with siblings.
    fn sibling_keys<'a>(&self, built: &Built<'a>) -> BTreeMap<usize, KeyWrites<'a>> {
        let mut keys: BTreeMap<usize, KeyWrites> = BTreeMap::new();
        let ids: HashMap<&str, usize> = self
            .keys
            .iter()
            .enumerate()
            .filter(|(_, k)| k.siblings)
            .map(|(i, k)| (k.name.as_str(), i))
            .collect();
        for (i, op) in self.h.ops.iter().enumerate() {
            let Some(&key) = ids.get(key_name(op.table.as_deref(), &op.key).as_str()) else {
                continue;
            };
            let entry = keys.entry(key).or_default();
            let n = self.node_of_op[i];
            match built.class[i] {
                Class::AckPut | Class::AckDelete | Class::FailedPut | Class::FailedDelete => {
                    entry.maybe.push(i);
                    if n != NONE {
                        entry.made.push(n);
                        if self.nodes[n as usize].effect == Effect::Put {
                            entry.puts.push(n);
                        }
                    }
                }
                Class::Read(value) => {
                    let set = value.into_iter().collect();
                    entry.reads.push((n, set));
                }
                Class::ReadSet(values) => {
                    let set = values.iter().map(String::as_str).collect();
                    entry.reads.push((n, set));
                }
                Class::Unmet | Class::FailedGet => {}
            }
        }
        for fs in &self.h.final_sets {
            if let Some(&key) = ids.get(key_name(Some(&fs.table), &fs.key).as_str()) {
                keys.entry(key).or_default();
            }
        }
        keys
    }

    /// Read `r` returned `values`.
    fn check_set_read(
        &self,
        r: u32,
        values: &BTreeSet<&str>,
        writes: &KeyWrites<'_>,
        found: &mut Vec<Found>,
    ) {
        let by = self.op(r).completed_us.unwrap_or(u64::MAX);
        let rd = self.describe(r);
        for &w in &writes.puts {
            let returned = values.contains(self.value_of(w));
            if returned {
                // No write applied there may have seen it.
                let replaced = writes.seers[&w]
                    .iter()
                    .copied()
                    .find(|&a| !self.lost_by(a, by) && self.applied_at(a, r));
                if let Some(a) = replaced {
                    found.push(Found {
                        kind: AnomalyKind::ReplacedSibling,
                        ops: self.ops_of(&[w, a, r]),
                        explanation: format!(
                            "{rd} returned the value of {}, but {}, whose context had seen it, was applied at the replica before the read: it replaced that value, which came back",
                            self.describe(w),
                            self.describe(a)
                        ),
                    });
                }
                continue;
            }
            if !self.applied_at(w, r) || self.lost_by(w, by) {
                continue;
            }
            if writes.first_seer.get(&w).is_some_and(|&t| t < by) {
                continue;
            }
            found.push(Found {
                kind: AnomalyKind::MissingSibling,
                ops: self.ops_of(&self.path(w, r)),
                explanation: format!(
                    "{rd} left out the value of {}, which its replica had applied (the read's context covered it), though no write that may have seen it was sent before the read completed: nothing could have replaced it",
                    self.describe(w)
                ),
            });
        }
    }

    /// The final sets of `key`; returns whether it failed to converge.
    fn check_final_sets(
        &self,
        key: usize,
        built: &Built<'_>,
        writes: &KeyWrites<'_>,
        found: &mut Vec<Found>,
        lost_to_crash: &mut BTreeSet<u32>,
    ) -> bool {
        let name = &self.keys[key].name;
        let mut sets: BTreeMap<BTreeSet<&str>, Vec<usize>> = BTreeMap::new();
        for fs in &self.h.final_sets {
            if key_name(Some(&fs.table), &fs.key) == *name {
                let set = fs.values.iter().map(String::as_str).collect();
                sets.entry(set).or_default().push(fs.replica);
            }
        }
        if sets.is_empty() {
            return false;
        }
        let mut unconverged = sets.len() > 1;
        let writer = |v: &str| {
            built.writer_of.get(v).and_then(|&wi| {
                let n = self.node_of_op[wi];
                (n != NONE && self.keys[self.nodes[n as usize].key].name == *name).then_some(n)
            })
        };
        if sets.len() > 1 {
            let parts: Vec<String> = sets
                .iter()
                .map(|(set, replicas)| format!("replicas {replicas:?} have {set:?}"))
                .collect();
            let all: BTreeSet<&str> = sets.keys().flatten().copied().collect();
            let ops = all
                .iter()
                .filter_map(|v| writer(v))
                .map(|n| self.nodes[n as usize].op)
                .collect();
            found.push(Found {
                kind: AnomalyKind::Divergence,
                ops,
                explanation: format!(
                    "after healing, replicas disagree on the siblings of {name}: {}",
                    parts.join("; ")
                ),
            });
        }
        for (set, replicas) in &sets {
            for &v in set {
                let Some(w) = writer(v) else {
                    let (kind, what, ops) = match built.unmet_of.get(v) {
                        Some(&u) => (
                            AnomalyKind::PreconditionFailedWrote,
                            format!(
                                "the value of #{}, whose condition failed (412): it wrote nothing",
                                self.h.ops[u].id
                            ),
                            vec![u],
                        ),
                        None => (
                            AnomalyKind::ValueNeverWritten,
                            format!("a value no put of {name} wrote"),
                            Vec::new(),
                        ),
                    };
                    found.push(Found {
                        kind,
                        ops,
                        explanation: format!(
                            "final read at replica(s) {replicas:?} found {name}={v:?} among its siblings, {what}"
                        ),
                    });
                    continue;
                };
                let survivor = writes
                    .seers
                    .get(&w)
                    .and_then(|by| by.iter().copied().find(|&a| !self.excused[a as usize]));
                if let Some(a) = survivor {
                    unconverged = true;
                    found.push(Found {
                        kind: AnomalyKind::ReplacedSibling,
                        ops: self.ops_of(&[w, a]),
                        explanation: format!(
                            "the final siblings of {name} at replica(s) {replicas:?} hold the value of {}, but {}, whose context had seen it, {}: it replaced that value everywhere",
                            self.describe(w),
                            self.describe(a),
                            self.must_survive(a)
                        ),
                    });
                }
            }
        }
        // Puts that no write may have seen must be in every final set.
        for &w in &writes.puts {
            let value = self.value_of(w);
            if writes.first_seer.contains_key(&w) || sets.keys().all(|set| set.contains(value)) {
                continue;
            }
            if self.excused[w as usize] {
                if self.nodes[w as usize].chain {
                    lost_to_crash.insert(w);
                }
                continue;
            }
            let missing: Vec<usize> = sets
                .iter()
                .filter(|(set, _)| !set.contains(value))
                .flat_map(|(_, replicas)| replicas.iter().copied())
                .collect();
            found.push(Found {
                kind: AnomalyKind::LostWrite,
                ops: vec![self.nodes[w as usize].op],
                explanation: format!(
                    "{} is missing from the final siblings of {name} at replica(s) {missing:?}, though no write that may have seen it exists, and {}",
                    self.describe(w),
                    self.must_survive(w)
                ),
            });
        }
        unconverged
    }
}
