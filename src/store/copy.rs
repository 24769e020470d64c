//! The store copied to another replica, and what a replica lacks.
//!
//! # Copies in pages
//!
//! A whole store is copied a page of slots at a time ([`Store::image_page`]):
//! each page is taken quickly under the owner's lock (texts side by side in
//! one buffer) and printed after it lets go, so neither side ever holds
//! more than a page and the owner keeps serving in between. Pages taken at
//! different moments are not one instant's state, but each key's version
//! only ever grows by the conflict rule, so every key a page carries is at
//! least what the owner held when the copy began: the copy covers the
//! owner's clock at its first page, plus some later writes.
//!
//! # The merge
//!
//! Merging a copy ([`Store::merge_page`], then [`Store::sweep`]) must not
//! bring back what either side deleted and then forgot (a tombstone
//! collected). Each side knows which writes it has *seen*; a version one
//! side has seen but no longer holds was deleted there and its tombstone
//! forgotten. So:
//!
//! - a copied version whose key is held here competes by the conflict rule;
//! - a copied version of a key not held here is skipped if this replica
//!   has seen its write (deleted here), else kept;
//! - once every page is in, a local version the copy did not carry is
//!   dropped if the other replica had seen its write (deleted there), else
//!   kept (the other side never saw it).
//!
//! The pages mark the slots they touched ([`Marks`]); the sweep walks the
//! slots a batch at a time.
//!
//! # Writes that met a forgotten delete
//!
//! The rule keeps a version the other side never saw, for a key the other
//! side does not hold. That key may have held a tombstone there, forgotten,
//! of a delete *concurrent* with the version: by the conflict rule the
//! delete wins where its tombstone is still held, and the version wins
//! where it was forgotten. Left so, replicas would disagree for good. So
//! the merge also reports such versions when their Lamport time is not
//! above the newest tombstone the side that lacks them has forgotten (it
//! may have been one of them); the replica replays them as writes of its
//! own, above everything, and they win everywhere.

use super::image::{Image, ImageEntry};
use super::table::{Slot, Store};
use super::value::{Key, Version};
use crate::causal::{Dot, ReplicaId};

/// Which slots a copy being merged has touched: one bit per slot.
#[derive(Clone, Debug, Default)]
pub struct Marks(Vec<u64>);

impl Marks {
    fn set(&mut self, slot: u32) {
        let (word, bit) = (slot as usize / 64, slot % 64);
        if word >= self.0.len() {
            self.0.resize(word + 1, 0);
        }
        self.0[word] |= 1 << bit;
    }

    fn get(&self, slot: u32) -> bool {
        let (word, bit) = (slot as usize / 64, slot % 64);
        self.0.get(word).is_some_and(|w| w & (1 << bit) != 0)
    }
}

/// What a slot that a copy did not touch costs a sweep's budget, against 1
/// for one it touched: only those are looked at closely (and may be
/// dropped or replayed), so a copy that touched every slot is swept at
/// once.
pub(super) const SWEPT_SLOT_COST: u32 = 32;

impl Store {
    /// A copy of the versions in the slots from `start` on: at most
    /// `max_keys` keys and, past the first, about `max_bytes` of text; and
    /// the slot where the next page starts, if any is left.
    pub fn image_page(
        &self,
        start: u32,
        max_keys: usize,
        max_bytes: usize,
    ) -> (Image, Option<u32>) {
        let mut image = Image {
            origins: self.origins.ids().to_vec(),
            text: String::new(),
            entries: Vec::new(),
        };
        let mut i = start as usize;
        while i < self.slots.len() && image.entries.len() < max_keys && image.text.len() < max_bytes
        {
            let slot = &self.slots[i];
            i += 1;
            if slot.is_vacant() {
                continue;
            }
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
        let next = (i < self.slots.len()).then_some(i as u32);
        (image, next)
    }

    /// A copy of every version (tombstones included).
    pub fn image(&self) -> Image {
        self.image_page(0, usize::MAX, usize::MAX).0
    }

    /// The versions made by writes a replica that has seen `after(writer)`
    /// writes of each writer lacks; `None` skips a writer. Costs what it
    /// returns: each writer's versions are found by their counters.
    pub fn delta(&self, after: impl Fn(&ReplicaId) -> Option<u64>) -> Vec<(Key, Version)> {
        let mut slots = Vec::new();
        for (origin, id) in self.origins.ids().iter().enumerate() {
            if let Some(n) = after(id) {
                let origin = origin as u32;
                let held = |i, counter| super::table::holds(&self.slots, i, origin, counter);
                self.origins.after(origin, n, &mut slots, held);
            }
        }
        slots
            .into_iter()
            .map(|i| {
                let e = self.entry_at(i);
                (e.to_key(), e.to_version())
            })
            .collect()
    }

    /// Merges one page of another replica's copy (see the module's rule);
    /// `seen_here` tells whether this replica has seen a write. Returns the
    /// values it took for keys it did not hold whose Lamport time is not
    /// above `replay_below` (see the module's last section).
    pub fn merge_page(
        &mut self,
        entries: Vec<(Key, Version)>,
        seen_here: impl Fn(&Dot) -> bool,
        marks: &mut Marks,
        replay_below: u64,
    ) -> Vec<(Key, Version)> {
        self.reserve(entries.len());
        let mut replays = Vec::new();
        for (key, version) in entries {
            match self.find(key.as_str()) {
                Some(i) => {
                    marks.set(i);
                    self.replace(i, &key, &version);
                }
                // Seen here and not held: deleted here, tombstone forgotten.
                None if seen_here(&version.dot) => {}
                None => {
                    if version.value.is_some() && version.lamport <= replay_below {
                        replays.push((key.clone(), version.clone()));
                    }
                    let i = self.insert(key, &version);
                    marks.set(i);
                }
            }
        }
        replays
    }

    /// [`Store::merge_page`] for a page as it arrived: the versions the
    /// store does not hold go in from the image's text, without being
    /// made into [`Version`]s first.
    pub fn merge_image(
        &mut self,
        image: &Image,
        seen_here: impl Fn(&Dot) -> bool,
        marks: &mut Marks,
        replay_below: u64,
    ) -> Vec<(Key, Version)> {
        self.reserve(image.len());
        let writers: Vec<u32> = image
            .origins
            .iter()
            .map(|id| self.origins.intern(id))
            .collect();
        let mut replays = Vec::new();
        for entry in &image.entries {
            let key = image.key(entry);
            if let Some(i) = self.find(key) {
                marks.set(i);
                self.replace(i, &Key::internal(key), &image.version(entry));
                continue;
            }
            let writer = &image.origins[entry.origin as usize];
            if seen_here(&Dot::new(writer.clone(), entry.counter)) {
                continue;
            }
            let value = image.value_text(entry);
            if !value.is_empty() && entry.lamport <= replay_below {
                replays.push((Key::internal(key), image.version(entry)));
            }
            let writer = writers[entry.origin as usize];
            let slot = Slot::of(key, value, writer, entry.counter, entry.lamport);
            let i = self.insert_slot(key, slot);
            marks.set(i);
        }
        replays
    }

    /// Marks the slot of `key`, if it is held, as touched by a copy.
    pub fn mark(&self, key: &Key, marks: &mut Marks) {
        if let Some(i) = self.find(key.as_str()) {
            marks.set(i);
        }
    }

    /// Ends the merge of a copy, a batch of slots from `start` at a time:
    /// drops the local versions the copy did not carry though the other
    /// replica had applied their writes (`count_there(writer)` of each
    /// writer's writes); of those it keeps, pushes onto `replays` the values
    /// whose Lamport time is not above `replay_below`. A batch spends at
    /// most `budget`: a slot the copy touched (or a vacant one) costs 1,
    /// one it did not `SWEPT_SLOT_COST`. Returns where to go on, if the
    /// slots are not done.
    pub fn sweep(
        &mut self,
        start: u32,
        budget: u32,
        marks: &Marks,
        count_there: impl Fn(&ReplicaId) -> u64,
        replay_below: u64,
        replays: &mut Vec<(Key, Version)>,
    ) -> Option<u32> {
        let counted: Vec<u64> = self.origins.ids().iter().map(count_there).collect();
        let (mut i, mut spent) = (start, 0u32);
        while i < self.slot_count() && spent < budget {
            let at = i;
            i += 1;
            let slot = &self.slots[at as usize];
            if slot.is_vacant() || marks.get(at) {
                spent += 1;
                continue;
            }
            spent = spent.saturating_add(SWEPT_SLOT_COST);
            if slot.counter <= counted[slot.origin as usize] {
                self.remove_at(at);
            } else if slot.value().is_some() && slot.lamport <= replay_below {
                let entry = self.entry_at(at);
                replays.push((entry.to_key(), entry.to_version()));
            }
        }
        (i < self.slot_count()).then_some(i)
    }
}
