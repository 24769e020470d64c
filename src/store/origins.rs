//! The writers named in a store's dots, and for each the slots holding its
//! versions in the order of its counters.
//!
//! A store holds millions of dots but has seen few writers, so a slot names
//! its writer by a small number. The per-writer log answers the question a
//! pull asks, "every version made by a write of `w` after its `n`-th", by
//! a binary search and a walk over the versions asked for, instead of a
//! scan of the store.
//!
//! Writes of one writer are applied in the order of their counters (the
//! delivery rule), so the log is almost always appended to in order. State
//! copied from another replica arrives in the other replica's slot order;
//! such out-of-order entries wait in a small ordered map and are folded
//! into the log in one linear merge once there are many.
//!
//! An overwritten version's entry is not looked for (a search per write
//! would cost a cache miss per step on the write path): it stays in the
//! log, and whoever reads the log keeps only the entries whose slot still
//! holds that very version. Once the log holds twice as many entries as the
//! writer has versions in the store, the stale ones are squeezed out in one
//! pass, so they cost a bounded share of memory and of each walk.

use std::collections::{BTreeMap, HashMap};

use crate::causal::ReplicaId;

/// Out-of-order entries waiting to be folded in, beyond a share of the log.
const LATE_ENTRIES: usize = 1 << 16;

/// Stale entries tolerated beyond as many as there are live ones.
const STALE_ENTRIES: usize = 1 << 10;

/// One writer's versions, by counter; some entries may be stale.
#[derive(Clone, Default)]
struct OriginLog {
    /// Counters, ascending.
    counters: Vec<u64>,
    /// The slot that held each counter's version when it was logged.
    slots: Vec<u32>,
    /// Entries that arrived out of order.
    late: BTreeMap<u64, u32>,
    /// How many of the writer's versions the store holds.
    live: usize,
}

impl OriginLog {
    fn add(&mut self, counter: u64, slot: u32) {
        self.live += 1;
        if self.counters.last().is_none_or(|&last| last < counter) {
            self.counters.push(counter);
            self.slots.push(slot);
            return;
        }
        self.late.insert(counter, slot);
        if self.late.len() > LATE_ENTRIES + self.counters.len() / 2 {
            self.fold(|_, _| true);
        }
    }

    /// Whether stale entries are as many as live ones (and some more).
    fn crowded(&self) -> bool {
        self.counters.len() + self.late.len() > 2 * self.live + STALE_ENTRIES
    }

    /// Merges the late entries in and keeps only those `holds` accepts.
    fn fold(&mut self, holds: impl Fn(u32, u64) -> bool) {
        let late = std::mem::take(&mut self.late);
        let old = std::mem::take(&mut self.counters).into_iter();
        let old = old.zip(std::mem::take(&mut self.slots));
        let mut old = old.filter(|&(c, s)| holds(s, c)).peekable();
        let mut late = late.into_iter().filter(|&(c, s)| holds(s, c)).peekable();
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
    }

    /// Pushes the slots still holding versions with a counter above
    /// `after`.
    fn after(&self, after: u64, out: &mut Vec<u32>, holds: impl Fn(u32, u64) -> bool) {
        let start = self.counters.partition_point(|&c| c <= after);
        let logged = self.counters[start..].iter().zip(&self.slots[start..]);
        let late = self.late.range(after + 1..);
        out.extend(
            logged
                .map(|(&c, &s)| (c, s))
                .chain(late.map(|(&c, &s)| (c, s)))
                .filter(|&(c, s)| holds(s, c))
                .map(|(_, s)| s),
        );
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

    /// The number of `id`, if it has one.
    pub(super) fn number(&self, id: &ReplicaId) -> Option<u32> {
        self.numbers.get(id).copied()
    }

    /// The writer numbered `origin`.
    pub(super) fn id(&self, origin: u32) -> &ReplicaId {
        &self.ids[origin as usize]
    }

    /// Every writer, by number.
    pub(super) fn ids(&self) -> &[ReplicaId] {
        &self.ids
    }

    /// Records that `slot` now holds the version `counter` of `origin`;
    /// returns whether the writer's log should be squeezed
    /// ([`Origins::squeeze`]).
    pub(super) fn hold(&mut self, origin: u32, counter: u64, slot: u32) -> bool {
        let log = &mut self.logs[origin as usize];
        log.add(counter, slot);
        log.crowded()
    }

    /// Records that the store no longer holds a version of `origin` where it
    /// did (its entry goes stale).
    pub(super) fn release(&mut self, origin: u32) {
        let log = &mut self.logs[origin as usize];
        log.live = log.live.saturating_sub(1);
    }

    /// Drops the stale entries of `origin`'s log: `holds(slot, counter)`
    /// tells whether a slot still holds that version.
    pub(super) fn squeeze(&mut self, origin: u32, holds: impl Fn(u32, u64) -> bool) {
        self.logs[origin as usize].fold(holds);
    }

    /// Pushes the slots of versions of `origin` with a counter above
    /// `after`, unless it has none; `holds` as for [`Origins::squeeze`].
    pub(super) fn after(
        &self,
        origin: u32,
        after: u64,
        out: &mut Vec<u32>,
        holds: impl Fn(u32, u64) -> bool,
    ) {
        let log = &self.logs[origin as usize];
        if log.highest() > after {
            log.after(after, out, holds);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// A log driven like the store drives it, checked against a map from
    /// slot to the counter it holds.
    struct Model {
        log: OriginLog,
        slots: RefCell<HashMap<u32, u64>>,
    }

    impl Model {
        fn new() -> Self {
            Model {
                log: OriginLog::default(),
                slots: RefCell::new(HashMap::new()),
            }
        }
        fn put(&mut self, slot: u32, counter: u64) {
            if self.slots.borrow_mut().insert(slot, counter).is_some() {
                self.log.live -= 1;
            }
            self.log.add(counter, slot);
            if self.log.crowded() {
                let slots = self.slots.borrow();
                self.log.fold(|s, c| slots.get(&s) == Some(&c));
            }
        }
        fn remove(&mut self, slot: u32) {
            if self.slots.borrow_mut().remove(&slot).is_some() {
                self.log.live -= 1;
            }
        }
        fn after(&self, n: u64) -> Vec<u32> {
            let slots = self.slots.borrow();
            let mut out = Vec::new();
            self.log
                .after(n, &mut out, |s, c| slots.get(&s) == Some(&c));
            out.sort_unstable();
            out
        }
        fn expected(&self, n: u64) -> Vec<u32> {
            let mut out: Vec<u32> = self
                .slots
                .borrow()
                .iter()
                .filter(|(_, &c)| c > n)
                .map(|(&s, _)| s)
                .collect();
            out.sort_unstable();
            out
        }
    }

    #[test]
    fn a_log_answers_what_came_after_a_counter_in_or_out_of_order() {
        let mut m = Model::new();
        for c in 1..=10u64 {
            m.put(c as u32 * 10, c);
        }
        assert_eq!(m.after(7), vec![80, 90, 100]);
        // An overwritten version leaves the answer; the new one is in it.
        m.put(90, 11);
        assert_eq!(m.after(7), vec![80, 90, 100]);
        assert_eq!(m.after(10), vec![90]);
        m.remove(80);
        assert_eq!(m.after(7), vec![90, 100]);
        // Copied state arrives out of order.
        let mut copied = Model::new();
        for c in [5u64, 2, 9, 1, 7] {
            copied.put(c as u32, c);
        }
        assert_eq!(copied.after(4), vec![5, 7, 9]);
        copied.log.fold(|_, _| true);
        assert!(copied.log.late.is_empty());
        assert_eq!(copied.log.counters, vec![1, 2, 5, 7, 9]);
        assert_eq!(copied.after(4), vec![5, 7, 9]);
        assert_eq!(copied.log.highest(), 9);
    }

    #[test]
    fn stale_entries_are_squeezed_out() {
        let mut m = Model::new();
        for c in 1..=5000u64 {
            m.put((c % 10) as u32, c);
        }
        let entries = m.log.counters.len() + m.log.late.len();
        assert!(
            entries <= 2 * 10 + STALE_ENTRIES + 1,
            "{entries} entries for 10 keys"
        );
        assert_eq!(m.after(4990), m.expected(4990));
    }

    proptest::proptest! {
        /// Whatever the order of writes, overwrites and removals, the log
        /// answers like a scan of the slots.
        #[test]
        fn a_log_matches_a_scan(ops in proptest::collection::vec((0u32..40, 1u64..3000, proptest::bool::ANY), 1..600), probe in 0u64..3000) {
            let mut m = Model::new();
            let mut used = std::collections::HashSet::new();
            for (slot, counter, put) in ops {
                if put && used.insert(counter) {
                    m.put(slot, counter);
                } else if !put {
                    m.remove(slot);
                }
            }
            proptest::prop_assert_eq!(m.after(probe), m.expected(probe));
            let slots = m.slots.borrow().clone();
            m.log.fold(|s, c| slots.get(&s) == Some(&c));
            proptest::prop_assert_eq!(m.after(probe), m.expected(probe));
        }
    }
}
