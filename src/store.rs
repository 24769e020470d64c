//! Versioned values and tombstones, and the one rule that resolves
//! concurrent writes.
//!
//! Every key holds one [`Version`]: the value (or a tombstone for a delete),
//! the [`Dot`] of the write that produced it, and that write's Lamport
//! timestamp. Of two versions of a key, the one with the larger
//! `(lamport, dot)` wins. A write's Lamport timestamp is larger than that of
//! every write in its causal past, so a write always beats what it
//! overwrote, and concurrent writes are ordered the same way everywhere.
//! The rule is a maximum, so it does not care in which order versions
//! arrive: replicas that hold the same writes hold the same contents.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use compact_str::CompactString;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

use crate::causal::{Dot, VectorClock};

/// Longest key accepted, in characters.
pub const MAX_KEY_CHARS: usize = 50;

/// A key: a percent-decoded URL path segment of at most 50 characters.
///
/// Keys of up to 24 bytes (most keys) are stored inline, without a heap
/// allocation of their own: a large share of the memory per key.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(CompactString);

/// Why a key was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// The key is the empty string.
    Empty,
    /// The key has more than [`MAX_KEY_CHARS`] characters.
    TooLong,
}

impl Key {
    /// Accepts a decoded path segment as a key.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        if text.is_empty() {
            return Err(KeyError::Empty);
        }
        if text.chars().count() > MAX_KEY_CHARS {
            return Err(KeyError::TooLong);
        }
        Ok(Key(CompactString::from(text)))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Key {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Key::parse(&text).map_err(|e| serde::de::Error::custom(format!("bad key: {e:?}")))
    }
}

/// A stored value: any JSON value but `null`, kept as the JSON text the
/// client sent so that it is returned exactly as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct Value(Arc<str>);

impl Value {
    /// Accepts raw JSON text as a value; `None` for `null`.
    pub fn from_raw(raw: &RawValue) -> Option<Self> {
        let text = raw.get().trim();
        (text != "null").then(|| Value(Arc::from(text)))
    }

    /// Parses JSON text as a value (for tests and the client).
    pub fn from_json(text: &str) -> Result<Option<Self>, serde_json::Error> {
        let raw: &RawValue = serde_json::from_str(text)?;
        Ok(Value::from_raw(raw))
    }

    /// The value as JSON text.
    pub fn as_json(&self) -> &str {
        &self.0
    }

    /// The value as a borrowed raw JSON value, ready to embed in a response.
    pub fn as_raw(&self) -> &RawValue {
        // The text was valid JSON when the value was made.
        serde_json::from_str(&self.0).expect("stored value is valid JSON")
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.as_raw().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        Value::from_raw(&raw).ok_or_else(|| serde::de::Error::custom("value is null"))
    }
}

/// One version of a key: a value or a tombstone, and the write that made it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    /// The value, or `None` for a tombstone left by a delete.
    pub value: Option<Value>,
    /// The write that produced this version.
    pub dot: Dot,
    /// That write's Lamport timestamp.
    pub lamport: u64,
}

impl Version {
    /// The conflict rule: whether this version beats `other`.
    pub fn supersedes(&self, other: &Version) -> bool {
        (self.lamport, &self.dot) > (other.lamport, &other.dot)
    }

    /// Whether this is a tombstone.
    pub fn is_tombstone(&self) -> bool {
        self.value.is_none()
    }
}

/// The contents of one replica: the winning version of every key.
#[derive(Debug, Default, Clone)]
pub struct Store {
    map: HashMap<Key, Version>,
    tombstones: usize,
}

impl Store {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current version of `key`, tombstones included.
    pub fn get(&self, key: &Key) -> Option<&Version> {
        self.map.get(key)
    }

    /// The current value of `key`, if it is live.
    pub fn value(&self, key: &Key) -> Option<&Value> {
        self.map.get(key).and_then(|v| v.value.as_ref())
    }

    /// Number of live keys.
    pub fn len(&self) -> usize {
        self.map.len() - self.tombstones
    }

    /// Whether no key is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of tombstones held.
    pub fn tombstones(&self) -> usize {
        self.tombstones
    }

    /// Offers `version` for `key`; it is kept if it beats the current one.
    /// Returns whether it was kept.
    pub fn apply(&mut self, key: Key, version: Version) -> bool {
        match self.map.get_mut(&key) {
            Some(current) if !version.supersedes(current) => false,
            Some(current) => {
                self.tombstones -= current.is_tombstone() as usize;
                self.tombstones += version.is_tombstone() as usize;
                *current = version;
                true
            }
            None => {
                self.tombstones += version.is_tombstone() as usize;
                self.map.insert(key, version);
                true
            }
        }
    }

    /// Every key with its version, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&Key, &Version)> {
        self.map.iter()
    }

    /// The versions a replica that has applied `since` may lack: those made
    /// by writes `since` does not count. Merging them (and the sender's
    /// clock) brings that replica up to the sender's state.
    pub fn delta(&self, since: &VectorClock) -> Vec<(Key, Version)> {
        self.map
            .iter()
            .filter(|(_, v)| !since.contains(&v.dot))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Merges a full snapshot of another replica whose applied writes are
    /// `their_clock`. A local version the other replica has already seen
    /// (its dot is in `their_clock`) but does not hold was overwritten there
    /// or its tombstone was forgotten, so it goes; local versions the other
    /// replica never saw stay and compete by the conflict rule.
    pub fn merge_snapshot(&mut self, entries: Vec<(Key, Version)>, their_clock: &VectorClock) {
        let theirs: HashMap<Key, Version> = entries.into_iter().collect();
        let stale: Vec<Key> = self
            .map
            .iter()
            .filter(|(k, v)| their_clock.contains(&v.dot) && !theirs.contains_key(*k))
            .map(|(k, _)| k.clone())
            .collect();
        for key in stale {
            if let Some(v) = self.map.remove(&key) {
                self.tombstones -= v.is_tombstone() as usize;
            }
        }
        for (key, version) in theirs {
            self.apply(key, version);
        }
    }

    /// Forgets tombstones whose delete every replica has applied and after
    /// which no concurrent write can still arrive (`stable` counts those
    /// deletes). Returns how many were forgotten.
    pub fn forget_tombstones(&mut self, stable: &VectorClock) -> usize {
        let before = self.map.len();
        self.map
            .retain(|_, v| !(v.is_tombstone() && stable.contains(&v.dot)));
        let forgotten = before - self.map.len();
        self.tombstones -= forgotten;
        forgotten
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::causal::ReplicaId;

    fn key(k: &str) -> Key {
        Key::parse(k).unwrap()
    }
    fn val(json: &str) -> Option<Value> {
        Value::from_json(json).unwrap()
    }
    fn ver(value: Option<Value>, origin: &str, n: u64, lamport: u64) -> Version {
        Version {
            value,
            dot: Dot::new(ReplicaId::parse(origin).unwrap(), n),
            lamport,
        }
    }

    #[test]
    fn key_limit_counts_characters_not_bytes() {
        assert!(Key::parse(&"é".repeat(50)).is_ok());
        assert_eq!(Key::parse(&"a".repeat(51)), Err(KeyError::TooLong));
        assert_eq!(Key::parse(""), Err(KeyError::Empty));
    }

    #[test]
    fn values_round_trip_exactly() {
        for json in [
            r#""text""#,
            "12.50",
            "true",
            r#"[1,{"a":null}]"#,
            r#"{"b":[]}"#,
        ] {
            let v = val(json).unwrap();
            assert_eq!(serde_json::to_string(&v).unwrap(), json);
        }
        assert_eq!(val("null"), None);
    }

    #[test]
    fn later_write_beats_earlier_whatever_the_arrival_order() {
        let old = ver(val("1"), "a", 1, 1);
        let new = ver(val("2"), "b", 1, 2);
        let mut s1 = Store::new();
        s1.apply(key("k"), old.clone());
        s1.apply(key("k"), new.clone());
        let mut s2 = Store::new();
        s2.apply(key("k"), new.clone());
        s2.apply(key("k"), old);
        assert_eq!(s1.get(&key("k")), Some(&new));
        assert_eq!(s2.get(&key("k")), Some(&new));
    }

    #[test]
    fn concurrent_writes_and_deletes_resolve_by_one_rule() {
        let put = ver(val("1"), "a", 1, 5);
        let del = ver(None, "b", 1, 5);
        let mut s1 = Store::new();
        s1.apply(key("k"), put.clone());
        s1.apply(key("k"), del.clone());
        let mut s2 = Store::new();
        s2.apply(key("k"), del);
        s2.apply(key("k"), put);
        assert_eq!(s1.get(&key("k")), s2.get(&key("k")));
        // Same lamport: the larger dot ("b" > "a") wins, so the delete wins.
        assert!(s1.get(&key("k")).unwrap().is_tombstone());
        assert_eq!((s1.len(), s1.tombstones()), (0, 1));
    }

    #[test]
    fn delta_lists_only_unseen_versions() {
        let mut s = Store::new();
        s.apply(key("x"), ver(val("1"), "a", 1, 1));
        s.apply(key("y"), ver(val("2"), "a", 2, 2));
        let seen: VectorClock = [(ReplicaId::parse("a").unwrap(), 1)].into_iter().collect();
        let delta = s.delta(&seen);
        assert_eq!(delta.len(), 1);
        assert_eq!(delta[0].0, key("y"));
    }

    #[test]
    fn snapshot_merge_drops_what_the_other_side_overwrote_or_forgot() {
        let a = ReplicaId::parse("a").unwrap();
        let mut mine = Store::new();
        mine.apply(key("gone"), ver(val(r#""old""#), "a", 1, 1));
        mine.apply(key("ours"), ver(val(r#""new""#), "c", 1, 1));
        // The other side saw a:1 and a:2 (a delete of "gone" since forgotten).
        let theirs: VectorClock = [(a, 2)].into_iter().collect();
        mine.merge_snapshot(vec![(key("t"), ver(val("3"), "a", 2, 2))], &theirs);
        assert_eq!(mine.get(&key("gone")), None);
        assert!(mine.value(&key("ours")).is_some());
        assert!(mine.value(&key("t")).is_some());
        assert_eq!(mine.len(), 2);
    }

    #[test]
    fn stable_tombstones_are_forgotten() {
        let mut s = Store::new();
        s.apply(key("k"), ver(None, "a", 1, 1));
        s.apply(key("j"), ver(None, "a", 2, 2));
        let stable: VectorClock = [(ReplicaId::parse("a").unwrap(), 1)].into_iter().collect();
        assert_eq!(s.forget_tombstones(&stable), 1);
        assert_eq!(s.tombstones(), 1);
        assert!(s.get(&key("j")).is_some());
    }
}
