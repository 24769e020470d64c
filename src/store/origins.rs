//! The writers named in a store's dots, and for each the slots holding its
//! versions in the order of its counters.
//!
//! A store holds millions of dots but has seen few writers, so a slot names
//! its writer by a small number. The per-writer log answers the question a
//! pull asks, "every version made by a write of `w` after its `n`-th", by
//! a binary search and a walk over exactly the versions asked for, instead
//! of a scan of the store.
//!
//! Writes of one writer are applied in the order of their counters (the
//! delivery rule), so the log is almost always appended to in order. State
//! copied from another replica arrives in the other replica's slot order;
//! such out-of-order entries wait in a small ordered map and are folded
//! into the log in one linear merge once there are many. An overwritten
//! version's entry is marked dead where it lies (found by its counter) and
//! dead entries are squeezed out once they are as many as half the log.

use std::collections::{BTreeMap, HashMap};

use crate::causal::ReplicaId;

/// A log entry whose version was overwritten or removed.
const DEAD: u32 = u32::MAX;

/// Out-of-order entries waiting to be folded in, beyond a share of the log.
const LATE_ENTRIES: usize = 1 << 16;

/// Dead entries tolerated beyond half the log.
const DEAD_ENTRIES: usize = 1 << 10;

/// One writer's versions, by counter.
#[derive(Clone, Default)]
struct OriginLog {
    /// Counters, ascending.
    counters: Vec<u64>,
    /// The slot holding each counter's version, or [`DEAD`].
    slots: Vec<u32>,
    dead: usize,
    /// Entries that arrived out of order.
    late: BTreeMap<u64, u32>,
}

impl OriginLog {
    fn add(&mut self, counter: u64, slot: u32) {
        if self.counters.last().is_none_or(|&last| last < counter) {
            self.counters.push(counter);
            self.slots.push(slot);
            return;
        }
        self.late.insert(counter, slot);
        if self.late.len() > LATE_ENTRIES + self.counters.len() / 2 {
            self.fold();
        }
    }

    fn remove(&mut self, counter: u64, slot: u32) {
        if self.late.get(&counter) == Some(&slot) {
            self.late.remove(&counter);
            return;
        }
        let i = self.counters.partition_point(|&c| c < counter);
        if self.counters.get(i) == Some(&counter) && self.slots[i] == slot {
            self.slots[i] = DEAD;
            self.dead += 1;
            if self.dead > DEAD_ENTRIES + self.counters.len() / 2 {
                self.fold();
            }
        }
    }

    /// Merges the late entries in and squeezes the dead ones out.
    fn fold(&mut self) {
        let late = std::mem::take(&mut self.late);
        let old = std::mem::take(&mut self.counters).into_iter();
        let old = old.zip(std::mem::take(&mut self.slots));
        let mut old = old.filter(|&(_, s)| s != DEAD).peekable();
        let mut late = late.into_iter().peekable();
        let live = old.size_hint().0 + late.len();
        self.counters.reserve(live);
        self.slots.reserve(live);
        loop {
            let next = match (old.peek(), late.peek()) {
                (Some(a), Some(b)) if a.0 <= b.0 => old.next(),
                (Some(_), Some(_)) | (None, Some(_)) => late.next(),
                (Some(_), None) => old.next(),
                (None, None) => break,
            };
            let (counter, slot) = next.expect("peeked");
            self.counters.push(counter);
            self.slots.push(slot);
        }
        self.dead = 0;
    }

    /// Pushes the slots holding versions with a counter above `after`.
    fn after(&self, after: u64, out: &mut Vec<u32>) {
        let start = self.counters.partition_point(|&c| c <= after);
        out.extend(self.slots[start..].iter().filter(|&&s| s != DEAD));
        out.extend(self.late.range(after + 1..).map(|(_, &s)| s));
    }

    fn highest(&self) -> u64 {
        let logged = self.counters.last().copied().unwrap_or(0);
        let late = self.late.last_key_value().map_or(0, |(&c, _)| c);
        logged.max(late)
    }
}

/// The writers of a store, numbered in order of appearance, each with its
/// log of versions.
#[derive(Clone, Default)]
pub(super) struct Origins {
    ids: Vec<ReplicaId>,
    numbers: HashMap<ReplicaId, u32>,
    logs: Vec<OriginLog>,
}

impl Origins {
    /// The number of `id`, given one if it has none.
    pub(super) fn intern(&mut self, id: &ReplicaId) -> u32 {
        if let Some(&n) = self.numbers.get(id) {
            return n;
        }
        let n = u32::try_from(self.ids.len()).expect("fewer than 2^32 writers");
        self.ids.push(id.clone());
        self.numbers.insert(id.clone(), n);
        self.logs.push(OriginLog::default());
        n
    }

    /// The writer numbered `origin`.
    pub(super) fn id(&self, origin: u32) -> &ReplicaId {
        &self.ids[origin as usize]
    }

    /// Every writer, by number.
    pub(super) fn ids(&self) -> &[ReplicaId] {
        &self.ids
    }

    /// Records that `slot` now holds the version `counter` of `origin`.
    pub(super) fn hold(&mut self, origin: u32, counter: u64, slot: u32) {
        self.logs[origin as usize].add(counter, slot);
    }

    /// Records that `slot` no longer holds the version `counter` of `origin`.
    pub(super) fn release(&mut self, origin: u32, counter: u64, slot: u32) {
        self.logs[origin as usize].remove(counter, slot);
    }

    /// Pushes the slots of versions of `origin` with a counter above
    /// `after`, unless it has none.
    pub(super) fn after(&self, origin: u32, after: u64, out: &mut Vec<u32>) {
        let log = &self.logs[origin as usize];
        if log.highest() > after {
            log.after(after, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after(log: &OriginLog, n: u64) -> Vec<u32> {
        let mut out = Vec::new();
        log.after(n, &mut out);
        out.sort_unstable();
        out
    }

    #[test]
    fn a_log_answers_what_came_after_a_counter_in_or_out_of_order() {
        let mut log = OriginLog::default();
        for c in 1..=10u64 {
            log.add(c, c as u32 * 10);
        }
        assert_eq!(after(&log, 7), vec![80, 90, 100]);
        // Overwritten versions leave the answer.
        log.remove(9, 90);
        log.remove(9, 91); // another slot: not this entry
        assert_eq!(after(&log, 7), vec![80, 100]);
        // Copied state arrives out of order.
        let mut copied = OriginLog::default();
        for c in [5u64, 2, 9, 1, 7] {
            copied.add(c, c as u32);
        }
        assert_eq!(after(&copied, 4), vec![5, 7, 9]);
        copied.fold();
        assert!(copied.late.is_empty());
        assert_eq!(copied.counters, vec![1, 2, 5, 7, 9]);
        assert_eq!(after(&copied, 4), vec![5, 7, 9]);
        copied.remove(5, 5);
        copied.add(11, 11);
        assert_eq!(after(&copied, 0), vec![1, 2, 7, 9, 11]);
        assert_eq!(copied.highest(), 11);
    }

    proptest::proptest! {
        /// Whatever the order of additions and removals, the log answers
        /// like a plain map from counter to slot.
        #[test]
        fn a_log_matches_a_map(ops in proptest::collection::vec((1u64..300, proptest::bool::ANY), 1..600), probe in 0u64..300) {
            let mut log = OriginLog::default();
            let mut model: BTreeMap<u64, u32> = BTreeMap::new();
            for (counter, add) in ops {
                let slot = counter as u32;
                if add && !model.contains_key(&counter) {
                    log.add(counter, slot);
                    model.insert(counter, slot);
                } else if !add && model.remove(&counter).is_some() {
                    log.remove(counter, slot);
                }
            }
            let expected: Vec<u32> = model.range(probe + 1..).map(|(_, &s)| s).collect();
            proptest::prop_assert_eq!(after(&log, probe), expected);
            log.fold();
            let expected: Vec<u32> = model.range(probe + 1..).map(|(_, &s)| s).collect();
            proptest::prop_assert_eq!(after(&log, probe), expected);
        }
    }
}
