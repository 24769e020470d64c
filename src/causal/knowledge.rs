//! What a replica has applied: a vector clock of the incarnations that are
//! still around, and a record of the incarnations it has *retired*.
//!
//! Every restart of a replica without its data is a new incarnation, and
//! every incarnation whose writes a client saw would stay in that client's
//! context, in every clock and in every heartbeat, forever. Once an
//! incarnation is gone (a newer one took its address, or its address was
//! forgotten or removed) and every member has applied its writes, nobody
//! needs to be told about them any more: the entry moves out of the clock
//! into the retired record, `id -> last`, which says "writes `1..=last` of
//! `id` are applied here, and at every member". Clocks, contexts and
//! stored dependencies drop the entry; a context that still names it is
//! satisfied by the record.
//!
//! | knowledge                     | `count(a#1)` | `count(b#2)` | printed clock |
//! |-------------------------------|--------------|--------------|---------------|
//! | `{a#1: 7, b#2: 3}`, none retired | 7          | 3            | `{a#1:7,b#2:3}` |
//! | `{b#2: 3}`, `a#1` retired at 7 | 7           | 3            | `{b#2:3}`     |
//!
//! An incarnation retired because it fell silent may turn out to be alive
//! (a long partition): its later writes are applied as usual and bring the
//! entry back into the clock, until it is retired again. Even one known to
//! have *ended* (its address has a newer incarnation) may have writes
//! beyond `last` on their way (a request already on the wire when it
//! crashed, a write handed over to one peer): a context naming those is
//! not met by the record, and waits for them like any other.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::clock::{Dot, ReplicaId, VectorClock};

/// Why and where an incarnation left the clocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retirement {
    /// Its last write that every member had applied when it was retired.
    pub last: u64,
    /// Whether it is known to have ended for good (a newer incarnation
    /// joined at its address): it writes no more, and its identity is
    /// never taken again.
    pub ended: bool,
}

impl Retirement {
    /// The record that knows what either of two records of one
    /// incarnation knows.
    pub fn merge(self, other: Retirement) -> Retirement {
        Retirement {
            last: self.last.max(other.last),
            ended: self.ended || other.ended,
        }
    }
}

/// One retired incarnation, as it travels between replicas.
pub type Retired = (ReplicaId, Retirement);

/// The writes a replica has applied: live incarnations in a vector clock,
/// retired ones in a record of their own.
///
/// In a sharded store it belongs to one shard group (see
/// [`ReplicaId::group`]) and counts only that group's incarnations: an
/// entry naming another group's is *foreign*, met here by definition (that
/// group's members check it), never counted in the clock. It keeps instead
/// the *foreign frontier*: every foreign entry in the dependencies of the
/// writes applied here, which reads hand to clients so that a write's
/// dependencies in other shards are honoured wherever it is read.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Knowledge {
    applied: VectorClock,
    retired: BTreeMap<ReplicaId, Retirement>,
    /// The shard group counted here; `None`: unsharded, every entry counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    group: Option<std::sync::Arc<str>>,
    /// The foreign entries of the dependencies of the writes applied here.
    #[serde(default, skip_serializing_if = "VectorClock::is_empty")]
    foreign: VectorClock,
}

impl Knowledge {
    /// Nothing applied, nothing retired.
    pub fn new() -> Self {
        Self::default()
    }

    /// Nothing applied, nothing retired, counting only the incarnations of
    /// shard group `group` (every one for `None`).
    pub fn in_group(group: Option<&str>) -> Self {
        Knowledge {
            group: group.map(std::sync::Arc::from),
            ..Self::default()
        }
    }

    /// Whether `id` belongs to another shard group than this one.
    pub fn is_foreign(&self, id: &ReplicaId) -> bool {
        self.group
            .as_deref()
            .is_some_and(|group| id.group() != Some(group))
    }

    /// The foreign frontier: what the writes applied here depended on in
    /// other shard groups (empty unsharded).
    pub fn foreign(&self) -> &VectorClock {
        &self.foreign
    }

    /// Records that another group retired `id` with its writes up to
    /// `last` applied by all its members: entries naming no more leave the
    /// foreign frontier and are pruned from what is answered here.
    ///
    /// If it also *ended* (a newer incarnation took its address), writes of
    /// it beyond `last` were lost with it (or are about to reach its
    /// group, whose members wait for them): entries naming it leave the
    /// frontier and the answers whatever they count, so that a lost write
    /// never makes every reader of another shard wait for it.
    pub fn retire_foreign(&mut self, id: &ReplicaId, retirement: Retirement) {
        if !self.is_foreign(id) {
            return;
        }
        self.retire(id, retirement);
        let ended = self.retired.get(id).is_some_and(|r| r.ended);
        if ended || self.foreign.get(id) <= retirement.last {
            self.foreign.set(id.clone(), 0);
        }
    }

    /// Adds the foreign entries of `deps` (a write's dependencies, or a
    /// peer's frontier) to the foreign frontier.
    pub fn note_foreign(&mut self, deps: &VectorClock) {
        if self.group.is_none() {
            return;
        }
        for (id, n) in deps.iter() {
            let retired = self.retired.get(id).is_some_and(|r| r.last >= n || r.ended);
            if self.is_foreign(id) && !retired && self.foreign.get(id) < n {
                self.foreign.set(id.clone(), n);
            }
        }
    }

    /// The clock of the incarnations that are not retired: what heartbeats
    /// carry and what the view of the world prints.
    pub fn clock(&self) -> &VectorClock {
        &self.applied
    }

    /// How many writes of `id` are applied here.
    pub fn count(&self, id: &ReplicaId) -> u64 {
        let retired = self.retired.get(id).map_or(0, |r| r.last);
        self.applied.get(id).max(retired)
    }

    /// Whether the write `dot` is applied here.
    pub fn contains(&self, dot: &Dot) -> bool {
        self.count(&dot.replica) >= dot.counter
    }

    /// Whether the write `dot` was applied by this replica itself: as
    /// [`Knowledge::contains`], but never for another group's write, which
    /// only that group counts (a record of its retirement says that group
    /// applied it, not that this replica did).
    pub fn applied_here(&self, dot: &Dot) -> bool {
        !self.is_foreign(&dot.replica) && self.contains(dot)
    }

    /// Whether a dependency on the first `n` writes of `id` is met here:
    /// they are counted by the clock or by the retirement record.
    pub fn satisfies(&self, id: &ReplicaId, n: u64) -> bool {
        self.count(id) >= n || self.is_foreign(id)
    }

    /// The entries of `wanted` that are not met here.
    pub fn missing(&self, wanted: &VectorClock) -> VectorClock {
        wanted
            .iter()
            .filter(|(id, n)| !self.satisfies(id, *n))
            .map(|(id, n)| (id.clone(), n))
            .collect()
    }

    /// Whether every entry of `wanted` is met here: every write it counts
    /// is applied.
    pub fn covers(&self, wanted: &VectorClock) -> bool {
        wanted.iter().all(|(id, n)| self.satisfies(id, n))
    }

    /// `clock` without the entries that retirement makes pointless to
    /// repeat (the incarnation is retired here and the entry is met), or
    /// `None` if it has none.
    pub fn prune(&self, clock: &VectorClock) -> Option<VectorClock> {
        self.prune_keeping(clock, |_| false)
    }

    /// [`Knowledge::prune`], but for the entries of the incarnations `keep`
    /// names.
    pub fn prune_keeping(
        &self,
        clock: &VectorClock,
        keep: impl Fn(&ReplicaId) -> bool,
    ) -> Option<VectorClock> {
        if self.retired.is_empty() {
            return None;
        }
        let stale = |id: &ReplicaId, n: u64| {
            self.applied.get(id) == 0
                && self
                    .retired
                    .get(id)
                    .is_some_and(|r| r.last >= n || (r.ended && self.is_foreign(id)))
                && !keep(id)
        };
        if !clock.iter().any(|(id, n)| stale(id, n)) {
            return None;
        }
        Some(
            clock
                .iter()
                .filter(|(id, n)| !stale(id, *n))
                .map(|(id, n)| (id.clone(), n))
                .collect(),
        )
    }

    /// Whether `id` is retired here and has no write applied beyond its
    /// record (a context naming it needs no entry for it).
    pub fn is_retired(&self, id: &ReplicaId) -> bool {
        self.applied.get(id) == 0 && self.retired.contains_key(id)
    }

    /// The retirement record of `id`, if it has one.
    pub fn retirement(&self, id: &ReplicaId) -> Option<Retirement> {
        self.retired.get(id).copied()
    }

    /// Every retired incarnation.
    pub fn retired(&self) -> impl Iterator<Item = Retired> + '_ {
        self.retired.iter().map(|(id, r)| (id.clone(), *r))
    }

    /// Number of retired incarnations.
    pub fn retired_len(&self) -> usize {
        self.retired.len()
    }

    /// Counts one more write of `id` (this replica's own) and names it.
    pub fn increment(&mut self, id: &ReplicaId) -> Dot {
        let next = self.count(id) + 1;
        self.applied.set(id.clone(), next);
        Dot::new(id.clone(), next)
    }

    /// Counts the write `dot` (and, by the delivery order, those before it).
    pub fn observe(&mut self, dot: &Dot) {
        if !self.contains(dot) && !self.is_foreign(&dot.replica) {
            self.applied.set(dot.replica.clone(), dot.counter);
        }
    }

    /// Counts every write of `dot`'s incarnation up to `dot` as applied
    /// here, whether or not it arrived: used once they were written again
    /// under other names (rescued when their writer left its group without
    /// a reshard's hand-off), so that contexts naming them are met. A
    /// retired incarnation stays retired, its record counting further.
    pub fn cover(&mut self, dot: &Dot) {
        if self.is_foreign(&dot.replica) || self.contains(dot) {
            return;
        }
        if self.is_retired(&dot.replica) {
            let last = dot.counter;
            self.retire(&dot.replica, Retirement { last, ended: false });
        } else {
            self.applied.set(dot.replica.clone(), dot.counter);
        }
    }

    /// Counts every write `clock` counts.
    pub fn merge(&mut self, clock: &VectorClock) {
        for (id, n) in clock.iter() {
            if self.count(id) < n && !self.is_foreign(id) {
                self.applied.set(id.clone(), n);
            }
        }
    }

    /// Retires `id`: writes up to `retirement.last` are counted by the
    /// record, and the clock loses the entry unless it counts more.
    pub fn retire(&mut self, id: &ReplicaId, retirement: Retirement) {
        let record = match self.retired.get(id) {
            Some(known) => known.merge(retirement),
            None => retirement,
        };
        if self.applied.get(id) <= record.last {
            self.applied.set(id.clone(), 0);
        }
        self.retired.insert(id.clone(), record);
    }

    /// Everything counted, retired incarnations included, as one clock (for
    /// tests and diagnostics; it grows with every retirement).
    pub fn effective(&self) -> VectorClock {
        let mut all: VectorClock = self
            .retired
            .iter()
            .map(|(id, r)| (id.clone(), r.last))
            .collect();
        all.merge(&self.applied);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str) -> ReplicaId {
        ReplicaId::parse(name).unwrap()
    }

    fn clock(entries: &[(&str, u64)]) -> VectorClock {
        entries.iter().map(|(n, c)| (id(n), *c)).collect()
    }

    #[test]
    fn another_groups_entries_are_met_never_counted_and_kept_as_the_frontier() {
        let mut k = Knowledge::in_group(Some("s1e1"));
        let deps = clock(&[("a#s1e1.x", 2), ("b#s2e1.y", 5), ("c#old", 1)]);
        // Only the own group's entry is wanted.
        assert_eq!(k.missing(&deps), clock(&[("a#s1e1.x", 2)]));
        k.merge(&deps);
        assert_eq!(k.clock(), &clock(&[("a#s1e1.x", 2)]));
        assert!(k.covers(&deps));
        k.note_foreign(&deps);
        k.note_foreign(&clock(&[("b#s2e1.y", 3), ("a#s1e1.x", 9)]));
        assert_eq!(k.foreign(), &clock(&[("b#s2e1.y", 5), ("c#old", 1)]));
        // Unsharded, every entry counts and nothing is foreign.
        let mut all = Knowledge::new();
        assert_eq!(all.missing(&deps), deps);
        all.note_foreign(&deps);
        assert!(all.foreign().is_empty());
    }

    #[test]
    fn another_groups_retirements_leave_the_frontier_and_the_answers() {
        let mut k = Knowledge::in_group(Some("s1e1"));
        k.note_foreign(&clock(&[("b#s2e1.old", 4), ("c#s2e1.new", 2)]));
        let at = |last| Retirement { last, ended: false };
        k.retire_foreign(&id("b#s2e1.old"), at(4));
        // Retired there, not applied here: a copy's version of it is no
        // sign of a delete made here.
        let handed_over = Dot::new(id("b#s2e1.old"), 3);
        assert!(k.contains(&handed_over) && !k.applied_here(&handed_over));
        // Not one of this group's: left alone.
        k.retire_foreign(&id("a#s1e1.x"), at(9));
        assert_eq!(k.foreign(), &clock(&[("c#s2e1.new", 2)]));
        assert_eq!(k.retirement(&id("a#s1e1.x")), None);
        // A context naming it is answered without it; a dependency naming
        // it adds nothing to the frontier again.
        let sent = clock(&[("b#s2e1.old", 3), ("c#s2e1.new", 1)]);
        assert_eq!(k.prune(&sent), Some(clock(&[("c#s2e1.new", 1)])));
        k.note_foreign(&clock(&[("b#s2e1.old", 4)]));
        assert_eq!(k.foreign(), &clock(&[("c#s2e1.new", 2)]));
        // Writes beyond the retirement still count...
        k.note_foreign(&clock(&[("b#s2e1.old", 5)]));
        assert_eq!(k.foreign().get(&id("b#s2e1.old")), 5);
        // ...until its group says it ended: a write of it beyond its last
        // is lost, and no reader here is made to wait for it.
        k.retire_foreign(
            &id("b#s2e1.old"),
            Retirement {
                last: 4,
                ended: true,
            },
        );
        assert_eq!(k.foreign(), &clock(&[("c#s2e1.new", 2)]));
        let sent = clock(&[("b#s2e1.old", 5), ("c#s2e1.new", 1)]);
        assert_eq!(k.prune(&sent), Some(clock(&[("c#s2e1.new", 1)])));
        k.note_foreign(&clock(&[("b#s2e1.old", 6)]));
        assert_eq!(k.foreign(), &clock(&[("c#s2e1.new", 2)]));
        // An own incarnation that ended still has its stragglers waited for.
        k.retire(
            &id("a#s1e1.x"),
            Retirement {
                last: 1,
                ended: true,
            },
        );
        assert!(!k.satisfies(&id("a#s1e1.x"), 2));
        assert_eq!(k.prune(&clock(&[("a#s1e1.x", 2)])), None);
    }

    #[test]
    fn a_retired_incarnation_leaves_the_clock_but_stays_counted() {
        let mut k = Knowledge::new();
        k.merge(&clock(&[("a#1", 7), ("b#2", 3)]));
        k.retire(
            &id("a#1"),
            Retirement {
                last: 7,
                ended: false,
            },
        );
        assert_eq!(k.clock(), &clock(&[("b#2", 3)]));
        assert_eq!(k.count(&id("a#1")), 7);
        assert!(k.contains(&Dot::new(id("a#1"), 7)));
        assert!(k.covers(&clock(&[("a#1", 7), ("b#2", 1)])));
        // Later writes of an incarnation that was only silent are not met.
        assert_eq!(k.missing(&clock(&[("a#1", 9)])), clock(&[("a#1", 9)]));
    }

    #[test]
    fn an_ended_incarnation_s_later_writes_are_still_waited_for() {
        let mut k = Knowledge::new();
        k.merge(&clock(&[("a#1", 7)]));
        let ended = Retirement {
            last: 7,
            ended: true,
        };
        k.retire(&id("a#1"), ended);
        assert!(k.covers(&clock(&[("a#1", 7)])));
        // A write it made before it ended may still be on its way.
        assert!(!k.covers(&clock(&[("a#1", 9)])));
        assert!(!k.contains(&Dot::new(id("a#1"), 8)));
        assert_eq!(k.prune(&clock(&[("a#1", 9)])), None);
    }

    #[test]
    fn later_writes_bring_a_silent_incarnation_back_into_the_clock() {
        let mut k = Knowledge::new();
        k.retire(
            &id("a#1"),
            Retirement {
                last: 7,
                ended: false,
            },
        );
        k.observe(&Dot::new(id("a#1"), 8));
        assert_eq!(k.clock(), &clock(&[("a#1", 8)]));
        // Merging what the record already counts adds nothing.
        k.retire(
            &id("a#1"),
            Retirement {
                last: 8,
                ended: false,
            },
        );
        k.merge(&clock(&[("a#1", 5)]));
        assert!(k.clock().is_empty());
        assert_eq!(k.count(&id("a#1")), 8);
    }

    #[test]
    fn covered_writes_count_as_applied_and_a_retired_writer_stays_retired() {
        let mut k = Knowledge::in_group(Some("s1e1"));
        let live = id("a#s1e1.1");
        k.observe(&Dot::new(live.clone(), 2));
        k.cover(&Dot::new(live.clone(), 9));
        assert_eq!(k.count(&live), 9);
        assert!(k.satisfies(&live, 9) && !k.satisfies(&live, 10));
        k.cover(&Dot::new(live.clone(), 4));
        assert_eq!(k.count(&live), 9, "a cover never counts less");

        let gone = id("b#s1e1.2");
        k.retire(
            &gone,
            Retirement {
                last: 3,
                ended: true,
            },
        );
        k.cover(&Dot::new(gone.clone(), 7));
        assert!(k.is_retired(&gone), "not back in the clock");
        assert_eq!(k.clock().get(&gone), 0);
        assert_eq!(
            k.retirement(&gone),
            Some(Retirement {
                last: 7,
                ended: true
            })
        );

        let foreign = id("c#s2e1.3");
        k.cover(&Dot::new(foreign.clone(), 5));
        assert_eq!(
            k.clock().get(&foreign),
            0,
            "another group's writes are not counted"
        );
    }

    #[test]
    fn prune_drops_only_entries_met_by_retirement() {
        let mut k = Knowledge::new();
        k.merge(&clock(&[("a#1", 7), ("b#2", 3)]));
        assert_eq!(k.prune(&clock(&[("a#1", 2), ("b#2", 1)])), None);
        k.retire(
            &id("a#1"),
            Retirement {
                last: 7,
                ended: false,
            },
        );
        assert_eq!(
            k.prune(&clock(&[("a#1", 2), ("b#2", 1)])),
            Some(clock(&[("b#2", 1)]))
        );
        // An entry beyond the record is still a real dependency.
        assert_eq!(k.prune(&clock(&[("a#1", 9)])), None);
    }

    #[test]
    fn increment_continues_past_a_record() {
        let mut k = Knowledge::new();
        k.retire(
            &id("a#1"),
            Retirement {
                last: 4,
                ended: false,
            },
        );
        assert_eq!(k.increment(&id("a#1")), Dot::new(id("a#1"), 5));
        assert_eq!(k.effective(), clock(&[("a#1", 5)]));
    }
}
