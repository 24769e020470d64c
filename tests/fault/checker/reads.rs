//! Client reads: a read that returned a value must not show one that a
//! write in its causal past overwrote (labelled by the session guarantee
//! that explains why that write is in its past, and as a resurrection when
//! the overwrite was a delete); a read that found its key absent must be
//! explained by a delete it saw or one that may have been concurrent.

use super::{AnomalyKind, ArbEdge, Ctx, Found, NONE};

impl Ctx<'_> {
    /// A read that returned the value of `rf[r]`.
    pub(super) fn check_value_read(&self, r: u32, found: &mut Vec<Found>, arb: &mut Vec<ArbEdge>) {
        let node = self.nodes[r as usize];
        let key = node.key;
        let w1 = self.rf[r as usize];
        let row = self.row(r);
        // Writes whose replica crashed before the read completed may be gone.
        let by = self.op(r).completed_us.unwrap_or(u64::MAX);
        let frontier = self.frontier(key, row, |w| self.lost_by(w, by));
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

        // A delete overwrote it: the value came back from the dead.
        if self.check_resurrection(r, w1, by, found) {
            return;
        }
        // The session's own write overwrote it.
        if let Some(own) = k
            .writes
            .get(&node.sess)
            .and_then(|list| self.last_kept(list, node.idx, |w| self.lost_by(w, by)))
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
                if w2 != NONE && self.lt(w1, w2) && !self.lost_by(w2, by) {
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
                .and_then(|list| self.first_kept_after(list, w1n.idx, row, by))
            {
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
        // A session read w1, then overwrote it, and the reader saw that.
        for &r2 in &self.readers[w1 as usize] {
            let r2n = self.nodes[r2 as usize];
            let Some(next) = k
                .writes
                .get(&r2n.sess)
                .and_then(|list| self.first_kept_after(list, r2n.idx, row, by))
            else {
                continue;
            };
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

    /// Read `r` returned the value of `w1`: reports a Resurrection, and
    /// returns true, when an acknowledged delete of the key that causally
    /// follows `w1` is in the read's causal past and was not lost (its
    /// replica did not lose its state between acknowledging it and time
    /// `by`).
    fn check_resurrection(&self, r: u32, w1: u32, by: u64, found: &mut Vec<Found>) -> bool {
        let node = self.nodes[r as usize];
        let k = &self.keys[node.key];
        let row = self.row(r);
        // A session's latest kept delete in the past follows w1 if any of
        // its earlier ones does. The reader's own session is asked first:
        // its own delete is the plainest explanation.
        let own = k.deletes.get(&node.sess).map(|list| (node.sess, list));
        let others = k
            .deletes
            .iter()
            .filter(|(&s, _)| s != node.sess)
            .map(|(&s, list)| (s, list));
        let Some((session, d)) = own.into_iter().chain(others).find_map(|(s, list)| {
            self.last_kept(list, row[s], |d| self.lost_by(d, by))
                .filter(|&d| self.lt(w1, d))
                .map(|d| (s, d))
        }) else {
            return false;
        };
        let (rd, wd, dd) = (self.describe(r), self.describe(w1), self.describe(d));
        let how = if session == node.sess {
            format!("the session's own earlier {dd} had deleted it")
        } else {
            format!(
                "{dd}, which causally follows it and is in the read's causal past, had deleted it"
            )
        };
        found.push(Found {
            kind: AnomalyKind::Resurrection,
            ops: self.ops_of(&self.path_via(w1, d, r)),
            explanation: format!(
                "{rd} returned the value of {wd}, but {how}: a deleted value came back"
            ),
        });
        true
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
    pub(super) fn check_absent_read(&self, r: u32, found: &mut Vec<Found>, arb: &mut Vec<ArbEdge>) {
        let name = &self.keys[self.nodes[r as usize].key].name;
        let what = format!("{} found {name} absent", self.describe(r));
        self.absent_at(r, false, &what, found, arb);
    }

    /// A put that succeeded with `If-None-Match: *`: its replica found the
    /// key absent once the put's context was applied, as a read there
    /// would have. It is judged as such a read, at the put's own causal
    /// past (the put itself left out); the conflict order it may show is
    /// not used.
    pub(super) fn check_created(&self, p: u32, found: &mut Vec<Found>) {
        let name = &self.keys[self.nodes[p as usize].key].name;
        let what = format!(
            "{} succeeded, so its replica found {name} absent",
            self.describe(p)
        );
        self.absent_at(p, true, &what, found, &mut Vec::new());
    }

    /// Node `r` found its key absent (`what` says how, as the start of a
    /// sentence); `itself`: `r` is a put, left out of its own past.
    fn absent_at(
        &self,
        r: u32,
        itself: bool,
        what: &str,
        found: &mut Vec<Found>,
        arb: &mut Vec<ArbEdge>,
    ) {
        let node = self.nodes[r as usize];
        let key = node.key;
        let row = self.row(r);
        // A put whose replica crashed before the read completed may be gone;
        // a delete, lost or not, still explains an absence.
        let by = self.op(r).completed_us.unwrap_or(u64::MAX);
        let gone = |w: u32| (itself && w == r) || (!self.is_delete(w) && self.lost_by(w, by));
        let frontier = self.frontier(key, row, gone);
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
        if let Some(own) = k
            .writes
            .get(&node.sess)
            .and_then(|list| self.last_kept(list, node.idx, gone))
        {
            if !self.is_delete(own) && !self.deleted_in(own, row) {
                found.push(Found {
                    kind: AnomalyKind::ReadYourWrites,
                    ops: self.ops_of(&self.path(own, r)),
                    explanation: format!(
                        "{what}, but the session's own earlier write {} was never overwritten by a delete it could see or one concurrent with it",
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
                if w2 != NONE && !self.deleted_in(w2, row) && !self.lost_by(w2, by) {
                    found.push(Found {
                        kind: AnomalyKind::MonotonicReads,
                        ops: self.ops_of(&[w2, r2, r]),
                        explanation: format!(
                            "{what}, but the session's earlier read {} saw {}, and no delete it could see or one concurrent with it removed that",
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
                "{what} although {} is in its causal past and no delete in its past or concurrent with it could have removed it",
                self.describe(p)
            ),
        });
    }
}
