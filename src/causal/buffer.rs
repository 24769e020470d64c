//! The delivery buffer: writes that arrived before their causal
//! prerequisites wait here and leave in causal order.

use std::collections::BTreeMap;

use super::clock::{Dot, ReplicaId, VectorClock};
use super::knowledge::Knowledge;

/// Something that can be delivered in causal order.
pub trait Causal {
    /// The name of this write.
    fn dot(&self) -> &Dot;
    /// The writes (besides the origin's earlier ones) that must be applied first.
    fn deps(&self) -> &VectorClock;
    /// The writes of other incarnations that applying this one counts as
    /// applied ([`Knowledge::cover`]).
    fn covers(&self) -> &[Dot] {
        &[]
    }
}

/// Whether `write` may be applied by a replica that has applied `applied`:
/// it is the origin's next write and all its dependencies are met.
pub fn deliverable<T: Causal>(write: &T, applied: &Knowledge) -> bool {
    let dot = write.dot();
    applied.count(&dot.replica) + 1 == dot.counter && applied.covers(write.deps())
}

/// Writes received but not yet deliverable, by origin and counter.
#[derive(Debug, Clone)]
pub struct DeliveryBuffer<T> {
    by_origin: BTreeMap<ReplicaId, BTreeMap<u64, T>>,
    len: usize,
}

impl<T> Default for DeliveryBuffer<T> {
    fn default() -> Self {
        DeliveryBuffer {
            by_origin: BTreeMap::new(),
            len: 0,
        }
    }
}

impl<T: Causal + Clone> DeliveryBuffer<T> {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of writes waiting.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Holds `write` unless it is already applied or already held.
    pub fn insert(&mut self, write: T, applied: &Knowledge) -> bool {
        if applied.contains(write.dot()) {
            return false;
        }
        let dot = write.dot().clone();
        let queue = self.by_origin.entry(dot.replica).or_default();
        if queue.contains_key(&dot.counter) {
            return false;
        }
        queue.insert(dot.counter, write);
        self.len += 1;
        true
    }

    /// Removes and returns, in a causal order, every write that becomes
    /// deliverable when starting from `applied`; `applied` is advanced past
    /// each returned write. Writes already covered by `applied` are dropped.
    pub fn drain_deliverable(&mut self, applied: &mut Knowledge) -> Vec<T> {
        let mut out = Vec::new();
        loop {
            let mut progressed = false;
            for (origin, queue) in self.by_origin.iter_mut() {
                // Drop duplicates of writes applied meanwhile (e.g. by a state merge).
                let done = applied.count(origin);
                while let Some(entry) = queue.first_entry() {
                    if *entry.key() > done {
                        break;
                    }
                    entry.remove();
                    self.len -= 1;
                }
                while let Some(entry) = queue.first_entry() {
                    if !deliverable(entry.get(), applied) {
                        break;
                    }
                    let write = entry.remove();
                    self.len -= 1;
                    applied.observe(write.dot());
                    for covered in write.covers() {
                        applied.cover(covered);
                    }
                    out.push(write);
                    progressed = true;
                }
            }
            if !progressed {
                break;
            }
        }
        self.by_origin.retain(|_, q| !q.is_empty());
        out
    }

    /// Every write waiting, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.by_origin.values().flat_map(|q| q.values())
    }

    /// The writes this buffer waits for: for each dependency not covered by
    /// `applied`, the highest counter needed (used to ask peers for them).
    pub fn wanted(&self, applied: &Knowledge) -> VectorClock {
        let mut want = VectorClock::new();
        for write in self.iter() {
            want.merge(&applied.missing(write.deps()));
            let dot = write.dot();
            if dot.counter > applied.count(&dot.replica) + 1 {
                want.set(
                    dot.replica.clone(),
                    want.get(&dot.replica).max(dot.counter - 1),
                );
            }
        }
        want
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, PartialEq)]
    struct W {
        dot: Dot,
        deps: VectorClock,
    }
    impl Causal for W {
        fn dot(&self) -> &Dot {
            &self.dot
        }
        fn deps(&self) -> &VectorClock {
            &self.deps
        }
    }

    fn id(n: &str) -> ReplicaId {
        ReplicaId::parse(n).unwrap()
    }
    fn w(origin: &str, n: u64, deps: &[(&str, u64)]) -> W {
        W {
            dot: Dot::new(id(origin), n),
            deps: deps.iter().map(|(r, c)| (id(r), *c)).collect(),
        }
    }

    #[test]
    fn write_waits_for_missing_dependency() {
        let mut buf = DeliveryBuffer::new();
        let mut applied = Knowledge::new();
        buf.insert(w("b", 1, &[("a", 1)]), &applied);
        assert!(buf.drain_deliverable(&mut applied).is_empty());
        assert_eq!(buf.wanted(&applied), [(id("a"), 1)].into_iter().collect());
        buf.insert(w("a", 1, &[]), &applied);
        let out = buf.drain_deliverable(&mut applied);
        assert_eq!(out, vec![w("a", 1, &[]), w("b", 1, &[("a", 1)])]);
        assert!(buf.is_empty());
    }

    #[test]
    fn same_origin_writes_leave_in_counter_order() {
        let mut buf = DeliveryBuffer::new();
        let mut applied = Knowledge::new();
        buf.insert(w("a", 3, &[]), &applied);
        buf.insert(w("a", 2, &[]), &applied);
        assert!(buf.drain_deliverable(&mut applied).is_empty());
        assert_eq!(buf.wanted(&applied).get(&id("a")), 2);
        buf.insert(w("a", 1, &[]), &applied);
        let order: Vec<u64> = buf
            .drain_deliverable(&mut applied)
            .iter()
            .map(|w| w.dot.counter)
            .collect();
        assert_eq!(order, vec![1, 2, 3]);
    }

    #[test]
    fn duplicates_and_applied_writes_are_ignored() {
        let mut buf = DeliveryBuffer::new();
        let mut applied = Knowledge::new();
        applied.merge(&[(id("a"), 1)].into_iter().collect());
        assert!(!buf.insert(w("a", 1, &[]), &applied));
        assert!(buf.insert(w("a", 3, &[]), &applied));
        assert!(!buf.insert(w("a", 3, &[]), &applied));
        assert_eq!(buf.len(), 1);
        // A state merge covers the write: it is dropped, not delivered twice.
        applied.merge(&[(id("a"), 3)].into_iter().collect());
        assert!(buf.drain_deliverable(&mut applied).is_empty());
        assert!(buf.is_empty());
    }
}
