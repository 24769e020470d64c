//! The final reads after settling: every replica holds the same value for
//! each key, that value is causally maximal among the key's writes, no
//! acknowledged put is lost without a crash to explain it, and no value a
//! later delete removed has come back.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::{AnomalyKind, Ctx, FinalRead, Found, History, NONE};

impl Ctx<'_> {
    /// Final reads: agreement, maximality, lost writes, resurrections.
    /// Returns whether any key failed to converge (replicas disagree, or a
    /// deleted value came back), and the converged final write of each key
    /// that has one.
    pub(super) fn check_finals(
        &self,
        writer_of: &HashMap<&str, usize>,
        unmet_of: &HashMap<&str, usize>,
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
        let mut unconverged = false;
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
                    Some(&wi) if self.h.ops[wi].key == name && self.h.ops[wi].table.is_none() => {
                        let n = self.node_of(wi);
                        writes.push((value, n));
                    }
                    None if unmet_of.contains_key(v) => {
                        let u = unmet_of[v];
                        found.push(Found {
                            kind: AnomalyKind::PreconditionFailedWrote,
                            ops: vec![u],
                            explanation: format!(
                                "final read at replica(s) {:?} found {name}={v:?}, the value of #{}, whose condition failed (412): it wrote nothing",
                                values[&value],
                                self.h.ops[u].id
                            ),
                        });
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
                unconverged = true;
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
                        unconverged |= self.final_present(
                            key,
                            wf,
                            &values[&value],
                            found,
                            lost_to_crash,
                            &mut reported_lost,
                        );
                    }
                    (None, _) => self.final_absent(key, found, lost_to_crash, &mut reported_lost),
                    _ => {}
                }
            }
        }
        (unconverged, converged)
    }

    /// The graph node of operation `op`, if it has one.
    pub(super) fn node_of(&self, op: usize) -> Option<u32> {
        let n = self.node_of_op[op];
        (n != NONE).then_some(n)
    }

    /// Reports the lost puts among `candidates` (per session: the puts that
    /// should have survived, in session order). Returns whether any was
    /// reported as a LostWrite.
    pub(super) fn report_lost(
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
                        "acknowledged {} is lost: {why}, and {}",
                        self.describe(p),
                        self.must_survive(p)
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

    /// The final value of `key` at `replicas` is the one written by `wf`.
    /// Returns whether it is a value a later delete removed (a resurrection).
    fn final_present(
        &self,
        key: usize,
        wf: u32,
        replicas: &[usize],
        found: &mut Vec<Found>,
        lost_to_crash: &mut BTreeSet<u32>,
        reported: &mut HashSet<u32>,
    ) -> bool {
        let k = &self.keys[key];
        let wfd = self.describe(wf);
        // An acknowledged delete after wf that is not excused: the value was
        // deleted, and no other put can have written it again.
        let resurrected_by = k
            .deletes
            .values()
            .flat_map(|list| &list[list.partition_point(|e| !self.lt(wf, e.1))..])
            .map(|e| e.1)
            .find(|&d| !self.excused[d as usize]);
        if let Some(d) = resurrected_by {
            found.push(Found {
                kind: AnomalyKind::Resurrection,
                ops: self.ops_of(&self.path(wf, d)),
                explanation: format!(
                    "the final value of {} at replica(s) {replicas:?} comes from {wfd}, but {} deleted it: the delete causally follows the put, was acknowledged, and {}, so a deleted value came back",
                    k.name,
                    self.describe(d),
                    self.must_survive(d)
                ),
            });
        }
        // Acknowledged puts hb-after wf: a suffix of each session's puts.
        let after: Vec<&[(u32, u32)]> = k
            .puts
            .values()
            .map(|list| &list[list.partition_point(|e| !self.lt(wf, e.1))..])
            .filter(|s| !s.is_empty())
            .collect();
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
        if lost || resurrected_by.is_some() {
            return resurrected_by.is_some();
        }
        // An observed failed put after wf (surviving deletes are above).
        let dominated_by = k
            .failed_puts
            .iter()
            .copied()
            .find(|&f| self.lt(wf, f) && !self.excused[f as usize]);
        if let Some(w) = dominated_by {
            found.push(Found {
                kind: AnomalyKind::NotCausallyMaximal,
                ops: self.ops_of(&self.path(wf, w)),
                explanation: format!(
                    "the final value of {} comes from {wfd}, but {} causally follows it and {}",
                    k.name,
                    self.describe(w),
                    self.must_survive(w)
                ),
            });
        }
        false
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
}

/// Identities across restarts: the same after stops that kept the state,
/// a new one after any stop that lost it.
pub(super) fn check_restarts(h: &History, found: &mut Vec<Found>) {
    for r in &h.restarts {
        let explanation = match (r.kept_state, r.before == r.after) {
            // Documented: a state caught merging a copy is set aside.
            (true, false) if r.set_aside => continue,
            (true, false) => format!(
                "replica {} was stopped at {}us and started again on the state it kept (DATA_DIR), but came back as {}, not {}: a new incarnation, which does not hold what the old one acknowledged",
                r.replica, r.at_us, r.after, r.before
            ),
            (false, true) => format!(
                "replica {} lost its state at {}us (its DATA_DIR deleted) but came back under its old identity {}: it may issue event ids that writes already have",
                r.replica, r.at_us, r.before
            ),
            _ => continue,
        };
        found.push(Found {
            kind: AnomalyKind::Incarnation,
            ops: Vec::new(),
            explanation,
        });
    }
}
