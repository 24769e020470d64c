//! The store's slot table: every key's winning version, one dense slot per
//! key, found through a hash table of slot numbers.

use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::Arc;

use compact_str::CompactString;
use hashbrown::{DefaultHashBuilder, HashTable};

use crate::causal::Dot;

use super::origins::Origins;
use super::registry::Registry;
use super::value::{Key, Value, Version};

/// The contents of one replica: the winning version of every key.
///
/// Laid out for memory, since a replica holds every key: each key is one
/// `Slot` in a dense vector, its key and value text side by side in one
/// allocation, its dot naming the writer by a small number instead of the
/// writer's identity. A hash table of slot numbers finds a key's slot; a
/// slot never moves while its key is stored (a removed key's slot is
/// reused), so a slot number is also a stable cursor for scans.
#[derive(Default, Clone)]
pub struct Store {
    pub(super) slots: Vec<Slot>,
    /// Vacant slots, reused before the vector grows.
    pub(super) vacant: Vec<u32>,
    pub(super) index: HashTable<u32>,
    pub(super) hasher: DefaultHashBuilder,
    pub(super) origins: Origins,
    /// The tables, their keys and siblings.
    pub(super) registry: Registry,
    pub(super) tombstones: usize,
    /// Slots that became tombstones, in no particular order (some may have
    /// changed since): what tombstone collection walks instead of the store.
    pub(super) tombs: Vec<u32>,
    /// Where the tombstone collection in progress has got to in `tombs`.
    pub(super) gc_cursor: usize,
    /// The keys changed since they were last taken, while changes are
    /// tracked (a replica with a disk mirrors them there).
    pub(super) changed: Option<Vec<Box<str>>>,
    /// How many siblings (values and deletes of tables with siblings)
    /// each writer's versions here are, by the writer's number: see
    /// [`Store::holds_siblings_by`].
    pub(super) siblings_by: HashMap<u32, u32>,
}

/// One stored key.
#[derive(Clone, Default)]
pub(super) struct Slot {
    /// The key followed by the value's JSON text (nothing for a tombstone);
    /// empty in a vacant slot.
    pub(super) text: Box<str>,
    pub(super) counter: u64,
    pub(super) lamport: u64,
    /// The writer, as its number in [`Origins`].
    pub(super) origin: u32,
    /// Length of the key at the start of `text`, in bytes (a client's key
    /// is at most 200, a table's a few more).
    pub(super) key_len: u16,
}

impl Slot {
    /// The slot for `key` at a version given by its parts: the value's
    /// text (empty for a tombstone), its writer's number in the store,
    /// counter and Lamport time.
    pub(super) fn of(key: &str, value: &str, origin: u32, counter: u64, lamport: u64) -> Self {
        Slot::reusing(String::new(), key, value, origin, counter, lamport)
    }

    /// [`Slot::of`], its text laid out in `text`'s allocation (an
    /// overwrite of the same size allocates nothing).
    fn reusing(
        mut text: String,
        key: &str,
        value: &str,
        origin: u32,
        counter: u64,
        lamport: u64,
    ) -> Self {
        text.clear();
        text.reserve_exact(key.len() + value.len());
        text.push_str(key);
        text.push_str(value);
        Slot {
            text: text.into_boxed_str(),
            counter,
            lamport,
            origin,
            key_len: u16::try_from(key.len()).expect("stored keys are under 64 KiB"),
        }
    }

    pub(super) fn key(&self) -> &str {
        &self.text[..self.key_len as usize]
    }

    pub(super) fn value(&self) -> Option<&str> {
        let value = &self.text[self.key_len as usize..];
        (!value.is_empty()).then_some(value)
    }

    pub(super) fn is_vacant(&self) -> bool {
        self.key_len == 0
    }

    pub(super) fn is_tombstone(&self) -> bool {
        !self.is_vacant() && self.text.len() == self.key_len as usize
    }

    /// Whether this holds a client's value: not vacant, not a tombstone,
    /// not a delete among siblings.
    pub(super) fn holds_value(&self) -> bool {
        !self.is_vacant() && !self.is_tombstone() && !self.is_marker()
    }

    /// Whether this holds one of the values (or deletes) of a key in a
    /// table with siblings.
    pub(super) fn is_sibling(&self) -> bool {
        self.key().starts_with(super::tables::SIBLING)
    }

    /// Whether this is a delete in a table with siblings: a sibling without
    /// a value, kept until every replica applied it, like a tombstone (see
    /// [`super::tables`]).
    pub(super) fn is_marker(&self) -> bool {
        self.is_sibling() && self.value().is_some_and(super::tables::is_marker_value)
    }
}

/// A stored key's version, borrowed from the store.
#[derive(Clone, Copy)]
pub struct Entry<'a> {
    pub(super) slot: &'a Slot,
    pub(super) origins: &'a Origins,
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
    pub(super) fn beaten_by(&self, version: &Version) -> bool {
        let mine: super::value::Rank = (
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

    pub(super) fn hash(&self, key: &str) -> u64 {
        self.hasher.hash_one(key)
    }

    pub(super) fn find(&self, key: &str) -> Option<u32> {
        let slots = &self.slots;
        self.index
            .find(self.hash(key), |&i| slots[i as usize].key() == key)
            .copied()
    }

    pub(super) fn entry_at(&self, i: u32) -> Entry<'_> {
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

    /// Number of keys held, tombstones (and deletes among siblings)
    /// included.
    pub fn held(&self) -> usize {
        self.index.len()
    }

    /// Number of slots, vacant ones included: the end of a scan by slot.
    pub fn slot_count(&self) -> u32 {
        self.slots.len() as u32
    }

    /// The slot for `key` at `version`, reusing `text`'s allocation (an
    /// overwrite of the same size allocates nothing).
    pub(super) fn make_slot(&mut self, key: &Key, version: &Version, text: Box<str>) -> Slot {
        let value = version.value.as_ref().map_or("", |v| v.as_json());
        let origin = self.origins.intern(&version.dot.replica);
        Slot::reusing(
            String::from(text),
            key.as_str(),
            value,
            origin,
            version.dot.counter,
            version.lamport,
        )
    }

    /// Offers `version` for `key`; it is kept if it beats the current one.
    /// Returns whether it was kept.
    pub fn apply(&mut self, key: Key, version: Version) -> bool {
        if let Some(kept) = self.apply_in_table(&key, &version) {
            return kept;
        }
        match self.find(key.as_str()) {
            Some(i) => self.replace(i, &key, &version),
            None => {
                self.insert(key, &version);
                true
            }
        }
    }

    /// Offers `version` for the key in slot `i`.
    pub(super) fn replace(&mut self, i: u32, key: &Key, version: &Version) -> bool {
        let current = self.entry_at(i);
        if !current.beaten_by(version) {
            return false;
        }
        let was_tombstone = current.is_tombstone();
        self.tombstones -= was_tombstone as usize;
        let Store {
            registry, slots, ..
        } = self;
        let slot = &slots[i as usize];
        registry.unbook(slot.key(), i, slot.holds_value());
        let old = &mut self.slots[i as usize];
        let origin = old.origin;
        let was_sibling = old.is_sibling();
        let text = std::mem::take(&mut old.text);
        self.origins.release(origin);
        self.count_sibling(origin, was_sibling, false);
        self.slots[i as usize] = self.make_slot(key, version, text);
        self.placed(i);
        true
    }

    /// Stores `key`, absent so far, at `version`; returns its slot.
    pub(super) fn insert(&mut self, key: Key, version: &Version) -> u32 {
        let slot = self.make_slot(&key, version, Box::default());
        self.insert_slot(key.as_str(), slot)
    }

    /// Stores `slot`, made for `key`, absent so far; returns its number.
    pub(super) fn insert_slot(&mut self, key: &str, slot: Slot) -> u32 {
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
        let hash = self.hash(key);
        let Store {
            slots,
            index,
            hasher,
            ..
        } = self;
        index.insert_unique(hash, i, |&j| hasher.hash_one(slots[j as usize].key()));
        self.placed(i);
        i
    }

    /// Books the version just placed in slot `i`.
    pub(super) fn placed(&mut self, i: u32) {
        let slot = &self.slots[i as usize];
        if let Some(changed) = &mut self.changed {
            changed.push(slot.key().into());
        }
        let origin = slot.origin;
        if self.origins.hold(origin, slot.counter, i) {
            let slots = &self.slots;
            self.origins
                .squeeze(origin, |s, c| holds(slots, s, origin, c));
        }
        let slot = &self.slots[i as usize];
        self.registry.book(slot.key(), i, slot.value());
        let (origin, sibling) = (slot.origin, slot.is_sibling());
        self.count_sibling(origin, sibling, true);
        let slot = &self.slots[i as usize];
        if slot.is_tombstone() {
            self.tombstones += 1;
            self.tombs.push(i);
        } else if slot.is_marker() {
            self.tombs.push(i);
        }
    }

    /// Removes the key in slot `i`, leaving the slot vacant.
    pub(super) fn remove_at(&mut self, i: u32) {
        let hash = self.hash(self.slots[i as usize].key());
        let found = self.index.find_entry(hash, |&j| j == i);
        if let Ok(found) = found {
            found.remove();
        }
        let slot = std::mem::take(&mut self.slots[i as usize]);
        self.registry.unbook(slot.key(), i, slot.holds_value());
        if let Some(changed) = &mut self.changed {
            changed.push(slot.key().into());
        }
        self.origins.release(slot.origin);
        self.count_sibling(slot.origin, slot.is_sibling(), false);
        self.tombstones -= slot.is_tombstone() as usize;
        self.vacant.push(i);
    }

    /// Counts a sibling of writer `origin` placed (`added`) or gone.
    fn count_sibling(&mut self, origin: u32, sibling: bool, added: bool) {
        if !sibling {
            return;
        }
        let count = self.siblings_by.entry(origin).or_default();
        if added {
            *count += 1;
        } else {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.siblings_by.remove(&origin);
            }
        }
    }

    /// Whether a sibling written by `id` is held here: a client that read
    /// it must keep naming `id`'s write in its context, even once `id` is
    /// retired, for a write of its to replace that sibling.
    pub fn holds_siblings_by(&self, id: &crate::causal::ReplicaId) -> bool {
        (self.origins.number(id)).is_some_and(|n| self.siblings_by.contains_key(&n))
    }

    /// Forgets, without a tombstone, every key `keep` refuses (the keys a
    /// reshard moved to another shard); returns how many were forgotten.
    pub fn retain_keys(&mut self, keep: impl Fn(&str) -> bool) -> usize {
        let gone: Vec<u32> = (0..self.slot_count())
            .filter(|&i| {
                let slot = &self.slots[i as usize];
                !slot.is_vacant() && !keep(slot.key())
            })
            .collect();
        for &i in &gone {
            self.remove_at(i);
        }
        gone.len()
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

    /// Stores `key`, which must be absent, at `version` (loading a store
    /// whose keys are known distinct, without looking each up first).
    pub fn insert_absent(&mut self, key: Key, version: &Version) {
        debug_assert!(self.find(key.as_str()).is_none(), "{key:?} is stored");
        self.insert(key, version);
    }

    /// Makes room for `more` keys.
    pub fn reserve_keys(&mut self, more: usize) {
        self.reserve(more);
    }

    /// The largest Lamport time of a stored version (0 when empty).
    pub fn max_lamport(&self) -> u64 {
        self.slots.iter().map(|s| s.lamport).max().unwrap_or(0)
    }

    /// Starts recording which keys change (see [`Store::take_changed`]).
    pub fn track_changes(&mut self) {
        self.changed.get_or_insert_with(Vec::new);
    }

    /// The keys changed (stored, replaced or removed) since the last call,
    /// each once, while changes are tracked.
    pub fn take_changed(&mut self) -> Vec<Box<str>> {
        let Some(changed) = &mut self.changed else {
            return Vec::new();
        };
        let mut keys = std::mem::take(changed);
        if keys.len() > 1 {
            keys.sort_unstable();
            keys.dedup();
        }
        keys
    }

    /// The current version of the key `key`, by its text.
    pub fn get_str(&self, key: &str) -> Option<Version> {
        self.find(key).map(|i| self.entry_at(i).to_version())
    }

    /// Makes room for `more` keys.
    pub(super) fn reserve(&mut self, more: usize) {
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
}

/// Whether slot `i` holds the version `counter` of the writer numbered
/// `origin` (a writer's log may name versions overwritten since).
pub(super) fn holds(slots: &[Slot], i: u32, origin: u32, counter: u64) -> bool {
    let slot = &slots[i as usize];
    !slot.is_vacant() && slot.origin == origin && slot.counter == counter
}
