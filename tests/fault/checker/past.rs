//! Questions about the happens-before order of a built history: is one
//! operation in another's causal past, which writes of a key a read must
//! reflect, which writes a crash may have taken, and the shortest chain of
//! operations that shows an order (what an anomaly prints).

use std::collections::{HashMap, VecDeque};

use super::{Ctx, Effect, Op, OpKind, OpResult, NONE};

/// Index of the last entry with chain index below `count`.
pub(super) fn last_below(list: &[(u32, u32)], count: u32) -> Option<u32> {
    let pos = list.partition_point(|&(i, _)| i < count);
    (pos > 0).then(|| list[pos - 1].1)
}

impl Ctx<'_> {
    /// The causal past of node `n`, as per-session counts.
    pub(super) fn row(&self, n: u32) -> &[u32] {
        let base = n as usize * self.sessions;
        &self.vc[base..base + self.sessions]
    }

    /// Whether node `a` is in the (inclusive) past summarised by `row`.
    pub(super) fn in_row(&self, a: u32, row: &[u32]) -> bool {
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
    pub(super) fn lt(&self, a: u32, b: u32) -> bool {
        a != b && self.in_row(a, self.row(b))
    }

    /// Neither of `a` and `b` happens before the other.
    pub(super) fn concurrent(&self, a: u32, b: u32) -> bool {
        a != b && !self.lt(a, b) && !self.lt(b, a)
    }

    /// The operation behind node `n`.
    pub(super) fn op(&self, n: u32) -> &Op {
        &self.h.ops[self.nodes[n as usize].op]
    }

    /// Whether node `n` is an acknowledged delete.
    pub(super) fn is_delete(&self, n: u32) -> bool {
        self.nodes[n as usize].effect == Effect::Delete
    }

    /// `#id put(k)=v` and the like.
    pub(super) fn describe(&self, n: u32) -> String {
        let op = self.op(n);
        let key = &self.keys[self.nodes[n as usize].key].name;
        let what = match (&op.kind, &op.result) {
            (OpKind::Put { value }, OpResult::Written) => format!("put({key})={value}"),
            (OpKind::Put { value }, OpResult::Unmet) => format!("put({key})={value} (412)"),
            (OpKind::Put { value }, _) => format!("failed put({key})={value}"),
            (OpKind::Delete, OpResult::DeleteAbsent) => format!("delete({key})=<absent>"),
            (OpKind::Delete, OpResult::Unmet) => format!("delete({key}) (412)"),
            (OpKind::Delete, OpResult::Deleted) => format!("delete({key})"),
            (OpKind::Delete, _) => format!("failed delete({key})"),
            (OpKind::Get, OpResult::Read(Some(v))) => format!("get({key})={v}"),
            (OpKind::Get, OpResult::Siblings(vs)) => format!("get({key})={{{}}}", vs.join(",")),
            (OpKind::Get, _) => format!("get({key})=<absent>"),
        };
        match &op.condition {
            Some(c) => format!("#{} {what} {c}", op.id),
            None => format!("#{} {what}", op.id),
        }
    }

    /// Indexes into `History::ops` of `nodes`, consecutive repeats merged.
    pub(super) fn ops_of(&self, nodes: &[u32]) -> Vec<usize> {
        let mut out: Vec<usize> = Vec::with_capacity(nodes.len());
        for &n in nodes {
            let op = self.nodes[n as usize].op;
            if out.last() != Some(&op) {
                out.push(op);
            }
        }
        out
    }

    /// Since when write `w` may be on its replica: since it was sent. An
    /// acknowledged write is on its replica by the time its answer
    /// leaves, which may be before a crash whose time precedes the answer's
    /// arrival (the answer was on its way, through a relay or the
    /// network): a crash while the request was under way may have taken
    /// it.
    fn since(&self, w: u32) -> u64 {
        self.op(w).invoked_us
    }

    /// The first time `replica` crashed in `times` at or after `since`.
    fn first_crash(times: &HashMap<usize, Vec<u64>>, replica: usize, since: u64) -> Option<u64> {
        let times = times.get(&replica)?;
        times.get(times.partition_point(|&c| c < since)).copied()
    }

    /// The replica that served `op`, if known: the one it was sent to,
    /// unless the store relays requests ([`super::History::relayed`]); then
    /// the one the answer named ([`Op::served_by`]), known only for
    /// acknowledged writes.
    pub(super) fn server(&self, op: &Op) -> Option<usize> {
        if self.h.relayed {
            op.served_by
        } else {
            Some(op.replica)
        }
    }

    /// The replica whose incarnation issued write `w`, if known (not for a
    /// failed put in a store that relays requests).
    pub(super) fn origin(&self, w: u32) -> Option<usize> {
        self.server(self.op(w))
    }

    /// When write `w`'s replica first lost its state (crashed without
    /// keeping it, or was evicted) after it was sent, if it did. When
    /// the replica is not known, any replica's loss may have taken it.
    pub(super) fn lost_at(&self, w: u32) -> Option<u64> {
        let since = self.since(w);
        match self.origin(w) {
            Some(replica) => Self::first_crash(&self.crashes, replica, since),
            None => self
                .crashes
                .keys()
                .filter_map(|&replica| Self::first_crash(&self.crashes, replica, since))
                .min(),
        }
    }

    /// Whether write `w` may have been lost by time `t`: its replica lost
    /// its state after it was sent and no later than `t`.
    pub(super) fn lost_by(&self, w: u32, t: u64) -> bool {
        self.lost_at(w).is_some_and(|c| c <= t)
    }

    /// An operation that shows write `w` had reached a replica that kept
    /// it, at a replica other than `w`'s that did not lose its state from
    /// the time the request was sent on: a read there that returned `w`'s
    /// value (whenever it was), or an operation answered there before
    /// `lost_at` (when `w`'s replica lost its state, so its incarnation was
    /// not retired yet and the request's context naming `w` was honoured)
    /// with `w` in its causal past. `None` if there is none.
    ///
    /// In a store that relays requests (sharded), only operations whose
    /// server is known count (acknowledged writes: the incarnation that
    /// issued them), and only those in `w`'s group: a member of another
    /// shard's group takes `w`'s entry in a context as met without holding
    /// `w`, and a read may have been relayed to `w`'s own replica.
    pub(super) fn held_elsewhere(&self, w: u32, lost_at: u64) -> Option<u32> {
        let origin = self.origin(w)?;
        let group = self.op(w).incarnation.as_deref().and_then(group_of);
        let kept_from = |op: &Op| {
            let Some(server) = self.server(op) else {
                return false;
            };
            let same_group = !self.h.relayed
                || (group.is_some() && op.incarnation.as_deref().and_then(group_of) == group);
            server != origin
                && same_group
                && Self::first_crash(&self.crashes, server, op.invoked_us).is_none()
        };
        if let Some(&r) = self.readers[w as usize]
            .iter()
            .find(|&&r| kept_from(self.op(r)))
        {
            return Some(r);
        }
        for chain in &self.sess_chain {
            // Pasts only grow along a session's chain.
            let first = chain.partition_point(|&o| !self.in_row(w, self.row(o)));
            for &o in &chain[first..] {
                let op = self.op(o);
                // A session's ops complete in order.
                if op.completed_us.is_none_or(|done| done >= lost_at) {
                    break;
                }
                if kept_from(op) {
                    return Some(o);
                }
            }
        }
        None
    }

    /// Why write `w` must survive (it is not excused), as a clause that
    /// follows "and": its replica kept its state, or it had reached one
    /// that did.
    pub(super) fn must_survive(&self, w: u32) -> String {
        let Some(replica) = self.origin(w) else {
            return "no replica that may have taken it lost its state after it was sent"
                .to_string();
        };
        let holder = self.held_by[w as usize];
        if holder != NONE {
            let op = self.op(holder);
            let how = if self.rf[holder as usize] == w {
                "returned its value"
            } else {
                "was answered there with it in its causal past"
            };
            return format!(
                "though replica {replica} lost its state afterwards, the write had reached replica {} (#{} {how}), which did not lose its state",
                self.server(op).unwrap_or(op.replica),
                op.id
            );
        }
        let kept = self.kept_crashes.get(&replica).map_or(0, |times| {
            times.iter().filter(|&&c| c >= self.since(w)).count()
        });
        if kept > 0 {
            format!(
                "its replica crashed {kept} time(s) after it was sent but every time started again on the state it kept (DATA_DIR), which holds every write it acknowledged"
            )
        } else {
            "its replica did not crash after it was sent".to_string()
        }
    }

    /// The last entry of `list` with chain index below `count` that is not
    /// `gone`.
    pub(super) fn last_kept(
        &self,
        list: &[(u32, u32)],
        count: u32,
        gone: impl Fn(u32) -> bool,
    ) -> Option<u32> {
        let pos = list.partition_point(|&(i, _)| i < count);
        list[..pos].iter().rev().map(|e| e.1).find(|&w| !gone(w))
    }

    /// The first entry of `list` after chain index `idx`, in the past
    /// summarised by `row`, that was not lost by `t`.
    pub(super) fn first_kept_after(
        &self,
        list: &[(u32, u32)],
        idx: u32,
        row: &[u32],
        t: u64,
    ) -> Option<u32> {
        let pos = list.partition_point(|&(i, _)| i <= idx);
        list[pos..]
            .iter()
            .map(|e| e.1)
            .take_while(|&w| self.in_row(w, row))
            .find(|&w| !self.lost_by(w, t))
    }

    /// The writes of `key` at the frontier of the past summarised by `row`,
    /// leaving out the `gone` ones (lost in a crash, say): each session's
    /// last write there that is not gone, and the observed failed puts there
    /// that are not. Every write of `key` in that past that is not gone is
    /// hb-before or equal to one of them.
    pub(super) fn frontier(&self, key: usize, row: &[u32], gone: impl Fn(u32) -> bool) -> Vec<u32> {
        let k = &self.keys[key];
        let mut out: Vec<u32> = k
            .writes
            .iter()
            .filter_map(|(&s, list)| self.last_kept(list, row[s], &gone))
            .collect();
        out.extend(
            k.failed_puts
                .iter()
                .copied()
                .filter(|&f| self.in_row(f, row) && !gone(f)),
        );
        out
    }

    /// The writes of `set` no other write of `set` follows.
    pub(super) fn maximal(&self, set: &[u32]) -> Vec<u32> {
        set.iter()
            .copied()
            .filter(|&a| !set.iter().any(|&b| self.lt(a, b)))
            .collect()
    }

    /// Whether a delete of `w`'s key in the past `row` overwrote `w`.
    pub(super) fn deleted_in(&self, w: u32, row: &[u32]) -> bool {
        let k = &self.keys[self.nodes[w as usize].key];
        k.deletes
            .iter()
            .filter_map(|(&s, list)| last_below(list, row[s]))
            .any(|d| self.lt(w, d))
    }

    /// The shortest hb chain from `a` to `b` (`a` hb-before or equal to `b`),
    /// by breadth-first search where one session-order hop may skip any
    /// number of the session's ops. Only nodes in `b`'s past are explored.
    pub(super) fn path(&self, a: u32, b: u32) -> Vec<u32> {
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
    pub(super) fn path_via(&self, a: u32, b: u32, c: u32) -> Vec<u32> {
        let mut out = self.path(a, b);
        out.extend(self.path(b, c).into_iter().skip(1));
        out
    }
}

/// The group of incarnation `id` (`address#s1e2.hex` is in `s1e2`), as
/// `ReplicaId::group` reads it.
pub(super) fn group_of(id: &str) -> Option<&str> {
    let (_, incarnation) = id.rsplit_once('#')?;
    incarnation.split_once('.').map(|(group, _)| group)
}
