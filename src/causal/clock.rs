//! Vector clocks and the identities they count.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest replica identity accepted from the outside, in bytes.
pub const MAX_REPLICA_ID_BYTES: usize = 128;

/// Identities each thread keeps at hand for [`ReplicaId::parse`].
const RECENT_IDS: usize = 16;

/// The identity under which one incarnation of a replica issues writes:
/// `<socket address>#<incarnation>`, e.g. `10.10.0.2:8085#1f3a9c2b`.
///
/// A restarted process draws a fresh incarnation, so it never reuses an
/// identity under which an earlier process already issued writes.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReplicaId(Arc<str>);

impl ReplicaId {
    /// Builds the identity of a new incarnation of the replica at `address`.
    pub fn new(address: &str, incarnation: &str) -> Self {
        ReplicaId(Arc::from(format!("{address}#{incarnation}")))
    }

    /// Parses an identity received from a client or a peer.
    ///
    /// Every request names the same few identities (in its context, in the
    /// dots and dependencies of the writes it carries): recently parsed
    /// ones are shared rather than allocated again.
    pub fn parse(text: &str) -> Result<Self, String> {
        thread_local! {
            static RECENT: RefCell<VecDeque<ReplicaId>> = const { RefCell::new(VecDeque::new()) };
        }
        RECENT.with(|recent| {
            let mut recent = recent.borrow_mut();
            if let Some(id) = recent.iter().find(|id| &*id.0 == text) {
                return Ok(id.clone());
            }
            let id = ReplicaId::validate(text)?;
            if recent.len() == RECENT_IDS {
                recent.pop_back();
            }
            recent.push_front(id.clone());
            Ok(id)
        })
    }

    fn validate(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("replica id is empty".into());
        }
        if text.len() > MAX_REPLICA_ID_BYTES {
            return Err(format!(
                "replica id longer than {MAX_REPLICA_ID_BYTES} bytes"
            ));
        }
        if text.chars().any(char::is_control) {
            return Err("replica id contains control characters".into());
        }
        Ok(ReplicaId(Arc::from(text)))
    }

    /// The entry of a sharded store's contexts that holds the version of
    /// the shard map the client's requests went through (see "Across
    /// shards" in [`crate::causal`]): not a replica, and of a group no
    /// replica is in, so every replica takes it as another group's entry.
    pub fn shard_map() -> ReplicaId {
        ReplicaId(Arc::from("shard-map#map.version"))
    }

    /// The identity as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The shard group this incarnation replicates in, for a sharded
    /// store: the incarnation part's text before its first `.`
    /// (`10.10.0.2:8085#s1e1.1f3a` is in group `s1e1`); `None` for an
    /// unsharded replica, whose incarnation has no `.`.
    pub fn group(&self) -> Option<&str> {
        let (_, incarnation) = self.0.rsplit_once('#')?;
        incarnation.split_once('.').map(|(group, _)| group)
    }

    /// The address part: the text before the last `#` (all of it if there
    /// is none).
    pub fn address(&self) -> &str {
        self.0
            .rsplit_once('#')
            .map_or(&self.0, |(address, _)| address)
    }
}

impl fmt::Debug for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for ReplicaId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ReplicaId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        ReplicaId::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// One write's unique name: the `counter`-th write issued by `replica`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Dot {
    /// The replica incarnation that issued the write.
    pub replica: ReplicaId,
    /// Its position among that replica's writes, starting at 1.
    pub counter: u64,
}

impl Dot {
    /// Names the `counter`-th write of `replica`.
    pub fn new(replica: ReplicaId, counter: u64) -> Self {
        Dot { replica, counter }
    }
}

impl fmt::Display for Dot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.replica, self.counter)
    }
}

/// A vector clock: for each replica, how many of its writes are counted.
///
/// Because every replica applies each origin's writes in order, a clock
/// names a causally closed set of writes: entry `r: n` means "writes 1..=n
/// of `r`, and everything they depend on". Zero entries are never stored,
/// so equal knowledge always has one representation.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct VectorClock(BTreeMap<ReplicaId, u64>);

impl VectorClock {
    /// The empty clock: no writes.
    pub fn new() -> Self {
        VectorClock(BTreeMap::new())
    }

    /// How many writes of `replica` this clock counts.
    pub fn get(&self, replica: &ReplicaId) -> u64 {
        self.0.get(replica).copied().unwrap_or(0)
    }

    /// Whether the clock counts no write at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of replicas with a non-zero entry.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Iterates over the non-zero entries in identity order.
    pub fn iter(&self) -> impl Iterator<Item = (&ReplicaId, u64)> {
        self.0.iter().map(|(id, n)| (id, *n))
    }

    /// Sets the entry of `replica` to `counter` (removing it when zero).
    pub fn set(&mut self, replica: ReplicaId, counter: u64) {
        if counter == 0 {
            self.0.remove(&replica);
        } else {
            self.0.insert(replica, counter);
        }
    }

    /// Counts one more write of `replica` and returns the dot naming it.
    pub fn increment(&mut self, replica: &ReplicaId) -> Dot {
        let entry = self.0.entry(replica.clone()).or_insert(0);
        *entry += 1;
        Dot::new(replica.clone(), *entry)
    }

    /// Whether the write named by `dot` is counted.
    pub fn contains(&self, dot: &Dot) -> bool {
        self.get(&dot.replica) >= dot.counter
    }

    /// Raises the entry of the dot's replica so that the dot is counted.
    pub fn observe(&mut self, dot: &Dot) {
        if !self.contains(dot) {
            self.0.insert(dot.replica.clone(), dot.counter);
        }
    }

    /// Pointwise maximum: afterwards this clock counts what either counted.
    pub fn merge(&mut self, other: &VectorClock) {
        for (id, &n) in &other.0 {
            let entry = self.0.entry(id.clone()).or_insert(0);
            if *entry < n {
                *entry = n;
            }
        }
    }

    /// Whether every write this clock counts is also counted by `other`.
    pub fn covered_by(&self, other: &VectorClock) -> bool {
        self.0.iter().all(|(id, &n)| other.get(id) >= n)
    }

    /// The entries of this clock that `other` does not cover.
    pub fn missing_from(&self, other: &VectorClock) -> VectorClock {
        VectorClock(
            self.0
                .iter()
                .filter(|(id, &n)| other.get(id) < n)
                .map(|(id, &n)| (id.clone(), n))
                .collect(),
        )
    }

    /// Removes the entry of `replica` and returns it.
    pub fn without(mut self, replica: &ReplicaId) -> Self {
        self.0.remove(replica);
        self
    }

    /// Pointwise minimum with `other` (entries absent in either vanish).
    pub fn meet(&self, other: &VectorClock) -> VectorClock {
        VectorClock(
            self.0
                .iter()
                .filter_map(|(id, &n)| {
                    let m = other.get(id).min(n);
                    (m > 0).then(|| (id.clone(), m))
                })
                .collect(),
        )
    }
}

impl PartialOrd for VectorClock {
    /// `None` when the clocks are concurrent.
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        match (self.covered_by(other), other.covered_by(self)) {
            (true, true) => Some(Ordering::Equal),
            (true, false) => Some(Ordering::Less),
            (false, true) => Some(Ordering::Greater),
            (false, false) => None,
        }
    }
}

impl fmt::Debug for VectorClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.0.iter()).finish()
    }
}

impl FromIterator<(ReplicaId, u64)> for VectorClock {
    fn from_iter<I: IntoIterator<Item = (ReplicaId, u64)>>(iter: I) -> Self {
        let mut clock = VectorClock::new();
        for (id, n) in iter {
            if n > clock.get(&id) {
                clock.set(id, n);
            }
        }
        clock
    }
}

impl Serialize for VectorClock {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for VectorClock {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = BTreeMap::<ReplicaId, u64>::deserialize(deserializer)?;
        Ok(map.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(name: &str) -> ReplicaId {
        ReplicaId::parse(name).unwrap()
    }

    #[test]
    fn a_sharded_identity_names_its_group_and_an_unsharded_one_none() {
        assert_eq!(id("10.0.0.2:8085#s1e3.00c0ffee").group(), Some("s1e3"));
        assert_eq!(id("10.0.0.2:8085#00c0ffee").group(), None);
        assert_eq!(id("10.0.0.2:8085").group(), None);
        assert_eq!(id("10.0.0.2:8085#s2e1.00c0ffee").address(), "10.0.0.2:8085");
    }

    #[test]
    fn parsed_identities_are_shared_and_still_checked() {
        let a = id("10.0.0.2:8085#00c0ffee");
        let b = id("10.0.0.2:8085#00c0ffee");
        assert!(Arc::ptr_eq(&a.0, &b.0), "the second parse reuses the first");
        for i in 0..2 * RECENT_IDS {
            assert_eq!(id(&format!("r#{i}")).as_str(), format!("r#{i}"));
        }
        assert!(ReplicaId::parse("").is_err());
        assert!(ReplicaId::parse("bad\u{7}id").is_err());
        assert!(ReplicaId::parse(&"x".repeat(MAX_REPLICA_ID_BYTES + 1)).is_err());
    }

    fn clock(entries: &[(&str, u64)]) -> VectorClock {
        entries.iter().map(|(n, c)| (id(n), *c)).collect()
    }

    #[test]
    fn increment_names_consecutive_writes() {
        let mut c = VectorClock::new();
        assert_eq!(c.increment(&id("a")), Dot::new(id("a"), 1));
        assert_eq!(c.increment(&id("a")), Dot::new(id("a"), 2));
        assert!(c.contains(&Dot::new(id("a"), 2)));
        assert!(!c.contains(&Dot::new(id("a"), 3)));
    }

    #[test]
    fn compare_detects_order_and_concurrency() {
        let a = clock(&[("a", 1)]);
        let ab = clock(&[("a", 1), ("b", 2)]);
        let b = clock(&[("b", 1)]);
        assert_eq!(a.partial_cmp(&ab), Some(Ordering::Less));
        assert_eq!(ab.partial_cmp(&a), Some(Ordering::Greater));
        assert_eq!(a.partial_cmp(&b), None);
        assert_eq!(a.partial_cmp(&a.clone()), Some(Ordering::Equal));
    }

    #[test]
    fn zero_entries_are_not_stored() {
        let c = clock(&[("a", 0), ("b", 3)]);
        assert_eq!(c, clock(&[("b", 3)]));
        assert_eq!(serde_json::to_string(&c).unwrap(), r#"{"b":3}"#);
    }

    #[test]
    fn missing_from_lists_uncovered_entries() {
        let want = clock(&[("a", 3), ("b", 1)]);
        let have = clock(&[("a", 2), ("b", 5)]);
        assert_eq!(want.missing_from(&have), clock(&[("a", 3)]));
    }

    #[test]
    fn serde_round_trip() {
        let c = clock(&[("x#1", 4), ("y#2", 9)]);
        let text = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<VectorClock>(&text).unwrap(), c);
    }

    fn arb_clock() -> impl Strategy<Value = VectorClock> {
        prop::collection::btree_map(
            prop::sample::select(vec!["a", "b", "c", "d"]),
            0u64..6,
            0..4,
        )
        .prop_map(|m| m.into_iter().map(|(k, v)| (id(k), v)).collect())
    }

    proptest! {
        #[test]
        fn merge_is_commutative(a in arb_clock(), b in arb_clock()) {
            let mut ab = a.clone(); ab.merge(&b);
            let mut ba = b.clone(); ba.merge(&a);
            prop_assert_eq!(ab, ba);
        }

        #[test]
        fn merge_is_associative(a in arb_clock(), b in arb_clock(), c in arb_clock()) {
            let mut left = a.clone(); left.merge(&b); left.merge(&c);
            let mut bc = b.clone(); bc.merge(&c);
            let mut right = a.clone(); right.merge(&bc);
            prop_assert_eq!(left, right);
        }

        #[test]
        fn merge_is_idempotent_and_an_upper_bound(a in arb_clock(), b in arb_clock()) {
            let mut aa = a.clone(); aa.merge(&a);
            prop_assert_eq!(&aa, &a);
            let mut ab = a.clone(); ab.merge(&b);
            prop_assert!(a.covered_by(&ab) && b.covered_by(&ab));
        }

        #[test]
        fn meet_is_a_lower_bound(a in arb_clock(), b in arb_clock()) {
            let m = a.meet(&b);
            prop_assert!(m.covered_by(&a) && m.covered_by(&b));
        }

        #[test]
        fn order_is_antisymmetric(a in arb_clock(), b in arb_clock()) {
            if a.covered_by(&b) && b.covered_by(&a) {
                prop_assert_eq!(a, b);
            }
        }
    }
}
