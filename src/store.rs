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

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::BuildHasher;
use std::sync::Arc;

use compact_str::CompactString;
use hashbrown::{DefaultHashBuilder, HashTable};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

use crate::causal::{Dot, ReplicaId, VectorClock};

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

/// The conflict rule: of two versions of a key, the one of larger rank
/// wins. A rank is `(lamport, writer, counter)`, the Lamport timestamp
/// and then the dot.
type Rank<'a> = (u64, &'a ReplicaId, u64);

impl Version {
    /// The conflict rule: whether this version beats `other`.
    pub fn supersedes(&self, other: &Version) -> bool {
        self.rank() > other.rank()
    }

    fn rank(&self) -> Rank<'_> {
        (self.lamport, &self.dot.replica, self.dot.counter)
    }

    /// Whether this is a tombstone.
    pub fn is_tombstone(&self) -> bool {
        self.value.is_none()
    }
}

/// The contents of one replica: the winning version of every key.
///
/// Laid out for memory, since a replica holds every key: each key is one
/// [`Slot`] in a dense vector, its key and value text side by side in one
/// allocation, its dot naming the writer by a small number instead of the
/// writer's identity. A hash table of slot numbers finds a key's slot; a
/// slot never moves while its key is stored (a removed key's slot is
/// reused), so a slot number is also a stable cursor for scans.
#[derive(Default, Clone)]
pub struct Store {
    slots: Vec<Slot>,
    /// Vacant slots, reused before the vector grows.
    vacant: Vec<u32>,
    index: HashTable<u32>,
    hasher: DefaultHashBuilder,
    origins: Origins,
    tombstones: usize,
}

/// One stored key.
#[derive(Clone, Default)]
struct Slot {
    /// The key followed by the value's JSON text (nothing for a tombstone);
    /// empty in a vacant slot.
    text: Box<str>,
    counter: u64,
    lamport: u64,
    /// The writer, as its number in [`Origins`].
    origin: u32,
    /// Length of the key at the start of `text`, in bytes (at most 200).
    key_len: u8,
}

impl Slot {
    fn key(&self) -> &str {
        &self.text[..self.key_len as usize]
    }

    fn value(&self) -> Option<&str> {
        let value = &self.text[self.key_len as usize..];
        (!value.is_empty()).then_some(value)
    }

    fn is_vacant(&self) -> bool {
        self.key_len == 0
    }

    fn is_tombstone(&self) -> bool {
        !self.is_vacant() && self.text.len() == self.key_len as usize
    }
}

/// The writers named in a store's dots, numbered in order of appearance.
/// A store holds millions of dots but has seen few writers.
#[derive(Default, Clone)]
struct Origins {
    ids: Vec<ReplicaId>,
    numbers: HashMap<ReplicaId, u32>,
}

impl Origins {
    fn intern(&mut self, id: &ReplicaId) -> u32 {
        if let Some(&n) = self.numbers.get(id) {
            return n;
        }
        let n = u32::try_from(self.ids.len()).expect("fewer than 2^32 writers");
        self.ids.push(id.clone());
        self.numbers.insert(id.clone(), n);
        n
    }

    fn id(&self, origin: u32) -> &ReplicaId {
        &self.ids[origin as usize]
    }

    /// For each writer, by number, how many of its writes `clock` counts.
    fn counted(&self, clock: &VectorClock) -> Vec<u64> {
        self.ids.iter().map(|id| clock.get(id)).collect()
    }
}

/// A stored key's version, borrowed from the store.
#[derive(Clone, Copy)]
pub struct Entry<'a> {
    slot: &'a Slot,
    origins: &'a Origins,
}

impl<'a> Entry<'a> {
    /// The key as text.
    pub fn key(&self) -> &'a str {
        self.slot.key()
    }

    /// The value's JSON text, or `None` for a tombstone.
    pub fn value_json(&self) -> Option<&'a str> {
        self.slot.value()
    }

    /// The value, or `None` for a tombstone.
    pub fn value(&self) -> Option<Value> {
        self.slot.value().map(|json| Value(Arc::from(json)))
    }

    /// Whether this is a tombstone.
    pub fn is_tombstone(&self) -> bool {
        self.slot.is_tombstone()
    }

    /// The write that produced this version.
    pub fn dot(&self) -> Dot {
        Dot::new(self.origins.id(self.slot.origin).clone(), self.slot.counter)
    }

    /// That write's Lamport timestamp.
    pub fn lamport(&self) -> u64 {
        self.slot.lamport
    }

    /// The key, owned.
    pub fn to_key(&self) -> Key {
        Key(CompactString::from(self.key()))
    }

    /// The version, owned.
    pub fn to_version(&self) -> Version {
        Version {
            value: self.value(),
            dot: self.dot(),
            lamport: self.slot.lamport,
        }
    }

    /// Whether `version` beats this one by the conflict rule.
    fn beaten_by(&self, version: &Version) -> bool {
        let mine: Rank = (
            self.slot.lamport,
            self.origins.id(self.slot.origin),
            self.slot.counter,
        );
        version.rank() > mine
    }
}

impl fmt::Debug for Entry<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("key", &self.key())
            .field("version", &self.to_version())
            .finish()
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("keys", &self.len())
            .field("tombstones", &self.tombstones)
            .finish()
    }
}

impl Store {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn hash(&self, key: &str) -> u64 {
        self.hasher.hash_one(key)
    }

    fn find(&self, key: &str) -> Option<u32> {
        let slots = &self.slots;
        self.index
            .find(self.hash(key), |&i| slots[i as usize].key() == key)
            .copied()
    }

    fn entry_at(&self, i: u32) -> Entry<'_> {
        Entry {
            slot: &self.slots[i as usize],
            origins: &self.origins,
        }
    }

    /// The current version of `key`, tombstones included.
    pub fn entry(&self, key: &Key) -> Option<Entry<'_>> {
        self.find(key.as_str()).map(|i| self.entry_at(i))
    }

    /// The current version of `key`, tombstones included, owned.
    pub fn get(&self, key: &Key) -> Option<Version> {
        self.entry(key).map(|e| e.to_version())
    }

    /// The current value of `key`, if it is live.
    pub fn value(&self, key: &Key) -> Option<Value> {
        self.entry(key).and_then(|e| e.value())
    }

    /// Number of live keys.
    pub fn len(&self) -> usize {
        self.index.len() - self.tombstones
    }

    /// Whether no key is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of tombstones held.
    pub fn tombstones(&self) -> usize {
        self.tombstones
    }

    /// The slot for `key` at `version`, reusing `text`'s allocation (an
    /// overwrite of the same size allocates nothing).
    fn make_slot(&mut self, key: &Key, version: &Version, text: Box<str>) -> Slot {
        let key = key.as_str();
        let value = version.value.as_ref().map_or("", |v| v.as_json());
        let mut text = String::from(text);
        text.clear();
        text.reserve_exact(key.len() + value.len());
        text.push_str(key);
        text.push_str(value);
        Slot {
            text: text.into_boxed_str(),
            counter: version.dot.counter,
            lamport: version.lamport,
            origin: self.origins.intern(&version.dot.replica),
            key_len: u8::try_from(key.len()).expect("keys are at most 200 bytes"),
        }
    }

    /// Offers `version` for `key`; it is kept if it beats the current one.
    /// Returns whether it was kept.
    pub fn apply(&mut self, key: Key, version: Version) -> bool {
        if let Some(i) = self.find(key.as_str()) {
            let current = self.entry_at(i);
            if !current.beaten_by(&version) {
                return false;
            }
            self.tombstones -= current.is_tombstone() as usize;
            self.tombstones += version.is_tombstone() as usize;
            let old = std::mem::take(&mut self.slots[i as usize].text);
            self.slots[i as usize] = self.make_slot(&key, &version, old);
            return true;
        }
        self.tombstones += version.is_tombstone() as usize;
        let slot = self.make_slot(&key, &version, Box::default());
        let i = match self.vacant.pop() {
            Some(i) => {
                self.slots[i as usize] = slot;
                i
            }
            None => {
                self.slots.push(slot);
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 keys")
            }
        };
        let hash = self.hash(key.as_str());
        let Store {
            slots,
            index,
            hasher,
            ..
        } = self;
        index.insert_unique(hash, i, |&j| hasher.hash_one(slots[j as usize].key()));
        true
    }

    /// Removes the key in slot `i`, leaving the slot vacant.
    fn remove_at(&mut self, i: u32) {
        let hash = self.hash(self.slots[i as usize].key());
        let found = self.index.find_entry(hash, |&j| j == i);
        if let Ok(found) = found {
            found.remove();
        }
        let slot = std::mem::take(&mut self.slots[i as usize]);
        self.tombstones -= slot.is_tombstone() as usize;
        self.vacant.push(i);
    }

    /// Every key with its version, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = Entry<'_>> {
        self.slots
            .iter()
            .filter(|s| !s.is_vacant())
            .map(|slot| Entry {
                slot,
                origins: &self.origins,
            })
    }

    /// Slot numbers of the stored keys for which `keep` holds, given each
    /// slot and how many writes of its writer `clock` counts.
    fn select(&self, clock: &VectorClock, keep: impl Fn(&Slot, u64) -> bool) -> Vec<u32> {
        let counted = self.origins.counted(clock);
        (0..self.slots.len() as u32)
            .filter(|&i| {
                let slot = &self.slots[i as usize];
                !slot.is_vacant() && keep(slot, counted[slot.origin as usize])
            })
            .collect()
    }

    /// The versions a replica that has applied `since` may lack: those made
    /// by writes `since` does not count. Merging them (and the sender's
    /// clock) brings that replica up to the sender's state.
    pub fn delta(&self, since: &VectorClock) -> Vec<(Key, Version)> {
        self.select(since, |slot, counted| slot.counter > counted)
            .into_iter()
            .map(|i| {
                let e = self.entry_at(i);
                (e.to_key(), e.to_version())
            })
            .collect()
    }

    /// Merges a full snapshot of another replica whose applied writes are
    /// `their_clock`. A local version the other replica has already seen
    /// (its dot is in `their_clock`) but does not hold was overwritten there
    /// or its tombstone was forgotten, so it goes; local versions the other
    /// replica never saw stay and compete by the conflict rule.
    pub fn merge_snapshot(&mut self, entries: Vec<(Key, Version)>, their_clock: &VectorClock) {
        // Local versions the other side has seen: stale unless it holds
        // their key too. (A replica joining holds few or none.)
        let mut seen: HashSet<Key> = self
            .select(their_clock, |slot, counted| slot.counter <= counted)
            .into_iter()
            .map(|i| self.entry_at(i).to_key())
            .collect();
        self.reserve(entries.len());
        for (key, version) in entries {
            if !seen.is_empty() {
                seen.remove(&key);
            }
            self.apply(key, version);
        }
        for key in seen {
            if let Some(i) = self.find(key.as_str()) {
                self.remove_at(i);
            }
        }
    }

    /// Makes room for `more` keys.
    fn reserve(&mut self, more: usize) {
        let more = more.saturating_sub(self.vacant.len());
        self.slots.reserve(more);
        let Store {
            slots,
            index,
            hasher,
            ..
        } = self;
        index.reserve(more, |&j| hasher.hash_one(slots[j as usize].key()));
    }

    /// A copy of every version (tombstones included), taken quickly: the
    /// texts side by side in one buffer, no allocation per key. A replica
    /// takes it under its lock and prints it after letting go.
    pub fn image(&self) -> Image {
        let text_len = self.slots.iter().map(|s| s.text.len()).sum();
        let mut image = Image {
            origins: self.origins.ids.clone(),
            text: String::with_capacity(text_len),
            entries: Vec::with_capacity(self.index.len()),
        };
        for Entry { slot, .. } in self.iter() {
            let start = image.text.len();
            image.text.push_str(&slot.text);
            image.entries.push(ImageEntry {
                start,
                key_end: start + slot.key_len as usize,
                end: image.text.len(),
                counter: slot.counter,
                lamport: slot.lamport,
                origin: slot.origin,
            });
        }
        image
    }

    /// Forgets tombstones whose delete every replica has applied and after
    /// which no concurrent write can still arrive (`stable` counts those
    /// deletes). Returns how many were forgotten.
    pub fn forget_tombstones(&mut self, stable: &VectorClock) -> usize {
        if self.tombstones == 0 {
            return 0;
        }
        let stale = self.select(stable, |slot, counted| {
            slot.is_tombstone() && slot.counter <= counted
        });
        for &i in &stale {
            self.remove_at(i);
        }
        stale.len()
    }
}

/// A copy of a store's versions (see [`Store::image`]).
#[derive(Clone, Default)]
pub struct Image {
    origins: Vec<ReplicaId>,
    text: String,
    entries: Vec<ImageEntry>,
}

#[derive(Clone)]
struct ImageEntry {
    start: usize,
    key_end: usize,
    end: usize,
    counter: u64,
    lamport: u64,
    origin: u32,
}

impl Image {
    /// Number of keys, tombstones included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the image holds no key.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every key with its version.
    pub fn iter(&self) -> impl Iterator<Item = (Key, Version)> + '_ {
        self.entries.iter().map(|e| {
            let key = Key(CompactString::from(&self.text[e.start..e.key_end]));
            let value = &self.text[e.key_end..e.end];
            let version = Version {
                value: (!value.is_empty()).then(|| Value(Arc::from(value))),
                dot: Dot::new(self.origins[e.origin as usize].clone(), e.counter),
                lamport: e.lamport,
            };
            (key, version)
        })
    }
}

impl fmt::Debug for Image {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Image({} keys)", self.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(s1.get(&key("k")), Some(new.clone()));
        assert_eq!(s2.get(&key("k")), Some(new));
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

    #[test]
    fn slots_of_forgotten_keys_are_reused() {
        let mut s = Store::new();
        for i in 0..100 {
            s.apply(key(&format!("k{i}")), ver(None, "a", i + 1, i + 1));
        }
        let all: VectorClock = [(ReplicaId::parse("a").unwrap(), 100)]
            .into_iter()
            .collect();
        assert_eq!(s.forget_tombstones(&all), 100);
        assert_eq!((s.len(), s.tombstones(), s.iter().count()), (0, 0, 0));
        for i in 0..100 {
            s.apply(key(&format!("n{i}")), ver(val("1"), "b", i + 1, i + 1));
        }
        assert_eq!(s.slots.len(), 100, "vacant slots are filled first");
        assert_eq!(s.len(), 100);
        assert!(s.value(&key("n99")).is_some() && s.get(&key("k1")).is_none());
    }

    proptest::proptest! {
        /// The store behaves as a map that keeps the winner of each key,
        /// through inserts, overwrites, tombstones and forgetting them.
        #[test]
        fn store_matches_a_plain_map(ops in proptest::collection::vec(
            (0u8..40, proptest::option::of(0u32..1000), 0u8..3, 1u64..50, 0u8..8),
            1..400,
        )) {
            let origins = ["a", "b", "c"];
            let mut s = Store::new();
            let mut model: std::collections::BTreeMap<Key, Version> = Default::default();
            for (k, value, origin, lamport, forget) in ops {
                let k = key(&format!("key{k}"));
                if forget == 0 {
                    let stable: VectorClock = origins
                        .iter()
                        .map(|o| (ReplicaId::parse(o).unwrap(), lamport))
                        .collect();
                    let before = model.len();
                    model.retain(|_, v| !(v.is_tombstone() && stable.contains(&v.dot)));
                    proptest::prop_assert_eq!(s.forget_tombstones(&stable), before - model.len());
                    continue;
                }
                let v = ver(value.map(|n| val(&n.to_string()).unwrap()), origins[origin as usize], lamport, lamport);
                let wins = model.get(&k).is_none_or(|cur| v.supersedes(cur));
                if wins {
                    model.insert(k.clone(), v.clone());
                }
                proptest::prop_assert_eq!(s.apply(k, v), wins);
            }
            let mut held: Vec<(Key, Version)> = s.iter().map(|e| (e.to_key(), e.to_version())).collect();
            held.sort_by(|a, b| a.0.cmp(&b.0));
            let expected: Vec<(Key, Version)> = model.clone().into_iter().collect();
            proptest::prop_assert_eq!(held, expected);
            for (k, v) in &model {
                proptest::prop_assert_eq!(s.get(k), Some(v.clone()));
            }
            let live = model.values().filter(|v| !v.is_tombstone()).count();
            proptest::prop_assert_eq!((s.len(), s.tombstones()), (live, model.len() - live));
        }
    }

    #[test]
    fn an_image_holds_every_version() {
        let mut s = Store::new();
        s.apply(key("a"), ver(val(r#"{"x":"é"}"#), "r1", 1, 1));
        s.apply(key("gone"), ver(None, "r2", 1, 2));
        s.apply(key("b"), ver(val("[1]"), "r1", 2, 3));
        let mut held: Vec<(Key, Version)> = s.image().iter().collect();
        held.sort_by(|a, b| a.0.cmp(&b.0));
        let mut expected: Vec<(Key, Version)> =
            s.iter().map(|e| (e.to_key(), e.to_version())).collect();
        expected.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(held, expected);
        assert_eq!((s.image().len(), expected.len()), (3, 3));
    }
}
