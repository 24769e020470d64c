//! The store's book of tables (see [`super::tables`]): which tables are
//! live, the live keys of each, and where each key's siblings are.

use std::collections::{BTreeMap, HashMap};

use super::tables::{
    is_marker_value, kind, sibling_base, Kind, State, Table, TableInfo, TableName, DATA, FIRST_ID,
};

/// The store's book of tables: which are live, their live keys, and where
/// each key's siblings are.
#[derive(Clone, Debug, Default)]
pub(crate) struct Registry {
    /// Every table whose `\x02` key is held: live, or dropped.
    tables: BTreeMap<Box<str>, State>,
    /// Live keys per table prefix (a key with siblings counts once).
    counts: HashMap<Box<str>, usize>,
    /// The siblings of each base key.
    siblings: HashMap<Box<str>, Held>,
    /// Whether keys of a table that is not live may be held.
    pub(super) orphans: bool,
}

/// The siblings held for one key.
#[derive(Clone, Debug, Default)]
struct Held {
    /// Their slots.
    slots: Vec<u32>,
    /// How many of them hold a value (not a delete).
    live: u32,
}

impl Registry {
    /// The live table `name`.
    pub(super) fn table(&self, name: &str) -> Option<&Table> {
        match self.tables.get(name) {
            Some(State::Live(table)) => Some(table),
            _ => None,
        }
    }

    /// The id the next creation of table `name` takes here.
    pub(super) fn next_id(&self, name: &str) -> &str {
        match self.tables.get(name) {
            Some(State::Dropped { next }) => next,
            _ => FIRST_ID,
        }
    }

    /// How many tables have a record here, live or dropped.
    pub(super) fn records(&self) -> usize {
        self.tables.len()
    }

    /// Whether a key of table `name` with id `id` may be stored: the
    /// table is live with that id, or not known here (yet, or any more).
    pub(super) fn admits(&mut self, name: &str, id: &str) -> bool {
        match self.tables.get(name) {
            Some(State::Live(table)) => &*table.id == id,
            Some(State::Dropped { .. }) => false,
            None => {
                self.orphans = true;
                true
            }
        }
    }

    /// Whether the stored key `key` belongs to no live table.
    pub(super) fn orphaned(&self, key: &str) -> bool {
        match kind(key) {
            Kind::Data { name, id, sibling } => self
                .table(name)
                .is_none_or(|t| &*t.id != id || t.siblings != sibling),
            _ => false,
        }
    }

    /// Books the version of `key` just placed in slot `i` (`value`: its
    /// JSON, `None` for a tombstone).
    pub(super) fn book(&mut self, key: &str, i: u32, value: Option<&str>) {
        match kind(key) {
            Kind::Default => {}
            Kind::Meta { name } => {
                let state = TableName::parse(name)
                    .zip(value)
                    .and_then(|(n, json)| Table::state(n, json));
                match state {
                    Some(state) => _ = self.tables.insert(name.into(), state),
                    None => _ = self.tables.remove(name),
                }
            }
            Kind::Data {
                sibling: true,
                name,
                id,
            } => {
                let Some(base) = sibling_base(key) else {
                    return;
                };
                let held = self.siblings.entry(base.into()).or_default();
                held.slots.push(i);
                if value.is_some_and(|v| !is_marker_value(v)) {
                    held.live += 1;
                    if held.live == 1 {
                        self.count(data_prefix(key, name, id), 1);
                    }
                }
            }
            Kind::Data { name, id, .. } => {
                if value.is_some() {
                    self.count(data_prefix(key, name, id), 1);
                }
            }
        }
    }

    /// Unbooks the version of `key` about to leave slot `i`.
    pub(super) fn unbook(&mut self, key: &str, i: u32, live: bool) {
        match kind(key) {
            Kind::Default => {}
            Kind::Meta { name } => {
                // Whatever takes its place, its keys may be orphans now.
                if let Some(State::Live(_)) = self.tables.remove(name) {
                    self.orphans = true;
                }
            }
            Kind::Data {
                sibling: true,
                name,
                id,
            } => {
                let Some(base) = sibling_base(key) else {
                    return;
                };
                let Some(held) = self.siblings.get_mut(base.as_str()) else {
                    return;
                };
                held.slots.retain(|&s| s != i);
                let emptied = held.slots.is_empty();
                let last_value = live && held.live == 1;
                if live {
                    held.live = held.live.saturating_sub(1);
                }
                if emptied {
                    self.siblings.remove(base.as_str());
                }
                if last_value {
                    self.count(data_prefix(key, name, id), -1);
                }
            }
            Kind::Data { name, id, .. } => {
                if live {
                    self.count(data_prefix(key, name, id), -1);
                }
            }
        }
    }

    /// Adds `delta` to the live keys of the table whose name and id are
    /// `prefix` (see [`table_prefix`]: a slice of each of its stored keys,
    /// so counting allocates only for a table's first key).
    fn count(&mut self, prefix: &str, delta: isize) {
        let n = match self.counts.get_mut(prefix) {
            Some(n) => n,
            None => self.counts.entry(prefix.into()).or_default(),
        };
        *n = n.saturating_add_signed(delta);
        if *n == 0 {
            self.counts.remove(prefix);
        }
    }

    /// The slots of the siblings of base key `base`.
    pub(super) fn siblings_of(&self, base: &str) -> &[u32] {
        self.siblings.get(base).map_or(&[], |h| h.slots.as_slice())
    }

    /// The live tables, by name, with their live keys.
    pub(super) fn list(&self) -> Vec<TableInfo> {
        self.tables
            .values()
            .filter_map(|state| match state {
                State::Live(table) => Some(self.info_of(table)),
                State::Dropped { .. } => None,
            })
            .collect()
    }

    /// The live table `name`, as listed.
    pub(super) fn info(&self, name: &str) -> Option<TableInfo> {
        self.table(name).map(|table| self.info_of(table))
    }

    fn info_of(&self, table: &Table) -> TableInfo {
        let keys = self
            .counts
            .get(table_prefix(table.name.as_str(), &table.id).as_str())
            .copied()
            .unwrap_or(0);
        TableInfo {
            name: table.name.as_str().to_string(),
            siblings: table.siblings,
            keys,
        }
    }
}

/// A table's name and id, as its live keys are counted under.
fn table_prefix(name: &str, id: &str) -> String {
    format!("{name}{DATA}{id}")
}

/// [`table_prefix`] of the stored key `key`, a key of table `name` with id
/// `id` (both slices of it), without a copy.
fn data_prefix<'k>(key: &'k str, name: &str, id: &str) -> &'k str {
    &key[1..1 + name.len() + 1 + id.len()]
}
