//! What the store does with the keys of tables (see [`super::tables`]):
//! a dropped table's keys refused and collected, a sibling stored only if
//! no held one saw it, and removing those it saw.

use crate::causal::Dot;

use super::table::{Entry, Store};
use super::tables::{kind, sibling_base, Kind, Sibling, Table, TableInfo, TableName};
use super::value::{Key, Version};

impl Store {
    /// The live table `name`.
    pub fn table(&self, name: &TableName) -> Option<&Table> {
        self.registry.table(name.as_str())
    }

    /// The id the next creation of table `name` takes here: `0` for a
    /// table never heard of, else the one its drop drew.
    pub fn next_table_id(&self, name: &TableName) -> &str {
        self.registry.next_id(name.as_str())
    }

    /// How many tables have a record here (live or dropped): their own
    /// keys, which every shard keeps.
    pub fn table_records(&self) -> usize {
        self.registry.records()
    }

    /// The live tables, by name, with their live keys.
    pub fn tables(&self) -> Vec<TableInfo> {
        self.registry.list()
    }

    /// The live table `name`, with its live keys.
    pub fn table_info(&self, name: &TableName) -> Option<TableInfo> {
        self.registry.info(name.as_str())
    }

    /// The siblings held for the key whose base is `base` (see
    /// [`Table::key`]), in no particular order.
    pub fn siblings(&self, base: &Key) -> Vec<Entry<'_>> {
        self.registry
            .siblings_of(base.as_str())
            .iter()
            .map(|&i| self.entry_at(i))
            .collect()
    }

    /// Offers `version` of `key` if it is a table's key: `None` if it is
    /// not, else whether it was kept. A key of a table dropped (or
    /// created again) here is not stored; a sibling is stored unless a
    /// sibling held has seen its write, and removes those it has seen.
    pub(super) fn apply_in_table(&mut self, key: &Key, version: &Version) -> Option<bool> {
        let Kind::Data { name, id, sibling } = kind(key.as_str()) else {
            return None;
        };
        if !self.registry.admits(name, id) {
            return Some(false);
        }
        if !sibling || self.find(key.as_str()).is_some() {
            return None;
        }
        let new = version
            .value
            .as_ref()
            .and_then(|v| Sibling::decode(v.as_json()))?;
        let base = sibling_base(key.as_str())?;
        let held: Vec<(u32, Dot, Option<Sibling>)> = self
            .registry
            .siblings_of(&base)
            .iter()
            .map(|&i| {
                let entry = self.entry_at(i);
                (i, entry.dot(), entry.value_json().and_then(Sibling::decode))
            })
            .collect();
        let seen_by_held = held.iter().any(|(_, _, s)| {
            s.as_ref()
                .is_some_and(|s| new.seen_in(&version.dot, &s.seen))
        });
        if seen_by_held {
            return Some(false);
        }
        for (i, dot, sibling) in held {
            if Sibling::seen_in_any(sibling.as_ref(), &dot, &new.seen) {
                self.remove_at(i);
            }
        }
        self.insert(key.clone(), version);
        Some(true)
    }

    /// Whether `version` of the stored key `key` may rightly be missing
    /// here: its table is not live (dropped, created again, or not known),
    /// or it is a sibling that a sibling held has seen.
    pub fn replaced_in_table(&self, key: &Key, version: &Version) -> bool {
        if self.registry.orphaned(key.as_str()) {
            return true;
        }
        let Some(base) = sibling_base(key.as_str()) else {
            return false;
        };
        let sibling = (version.value.as_ref()).and_then(|v| Sibling::decode(v.as_json()));
        self.registry.siblings_of(&base).iter().any(|&i| {
            let held = self.entry_at(i).value_json().and_then(Sibling::decode);
            held.is_some_and(|held| {
                Sibling::seen_in_any(sibling.as_ref(), &version.dot, &held.seen)
            })
        })
    }

    /// Forgets the keys of tables that are not live (dropped, created
    /// again, or never known here); returns how many. Only for a replica
    /// that holds a whole copy: one still copying may not know yet the
    /// tables of the keys it took.
    pub fn collect_orphans(&mut self) -> usize {
        if !self.registry.orphans {
            return 0;
        }
        self.registry.orphans = false;
        let registry = &self.registry;
        let gone: Vec<u32> = (0..self.slot_count())
            .filter(|&i| {
                let slot = &self.slots[i as usize];
                !slot.is_vacant() && registry.orphaned(slot.key())
            })
            .collect();
        for &i in &gone {
            self.remove_at(i);
        }
        gone.len()
    }
}

/// The keys' `Key` for text known to be a stored key.
impl Key {
    /// A stored key made here (a table's, or an escaped one), not checked
    /// as a client's key is.
    pub(crate) fn internal(text: &str) -> Key {
        Key(compact_str::CompactString::from(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::causal::{ReplicaId, VectorClock};
    use crate::store::Value;

    fn dot(writer: &str, n: u64) -> Dot {
        Dot::new(ReplicaId::parse(writer).unwrap(), n)
    }

    fn version(value: Value, dot: Dot, lamport: u64) -> Version {
        Version {
            value: Some(value),
            dot,
            lamport,
        }
    }

    /// Offers a sibling of `base` written by `d`, holding `value` (none:
    /// a delete), having seen `seen`.
    fn sibling(store: &mut Store, base: &Key, d: Dot, value: Option<&str>, seen: &[&Dot]) -> bool {
        let mut clock = VectorClock::new();
        for s in seen {
            clock.observe(s);
        }
        let value = value.map(|v| Value::from_json(v).unwrap().unwrap());
        let stored = Sibling::encode(value.as_ref(), &clock);
        let key = crate::store::tables::sibling_key(base, &d);
        store.apply(key, version(stored, d, 1))
    }

    fn keys(store: &Store) -> usize {
        store.tables()[0].keys
    }

    /// A store holding table `t`, with siblings, and the base key of its
    /// key `k`.
    fn with_sibling_table() -> (Store, Key) {
        let mut store = Store::new();
        let name = TableName::parse("t").unwrap();
        store.apply(
            name.meta_key(),
            version(Table::settings(true, "0"), dot("a", 1), 1),
        );
        let base = store.table(&name).unwrap().key(&Key::parse("k").unwrap());
        (store, base)
    }

    #[test]
    fn a_key_with_siblings_counts_once_while_it_holds_a_value() {
        let (mut store, base) = with_sibling_table();
        let (x, y, z) = (dot("a", 2), dot("b", 1), dot("c", 1));
        assert!(sibling(&mut store, &base, x.clone(), Some("1"), &[]));
        assert!(sibling(&mut store, &base, y.clone(), Some("2"), &[]));
        assert_eq!((store.siblings(&base).len(), keys(&store)), (2, 1));
        // A delete that saw both: one marker, no value.
        assert!(sibling(&mut store, &base, z.clone(), None, &[&x, &y]));
        assert_eq!((store.siblings(&base).len(), keys(&store)), (1, 0));
        // A value it saw comes late: not kept.
        assert!(!sibling(&mut store, &base, dot("a", 2), Some("1"), &[]));
        // A value concurrent with the delete: the key holds a value again.
        assert!(sibling(&mut store, &base, dot("d", 1), Some("3"), &[&x]));
        assert_eq!((store.siblings(&base).len(), keys(&store)), (2, 1));
    }

    /// A store holding table `t` (siblings) with the sibling `x` of `k`
    /// written again by replica `r` as `again`: `(store, base, x's key,
    /// x, again)`.
    fn written_again() -> (Store, Key, Key, Dot, Dot) {
        let (mut store, base) = with_sibling_table();
        let x = dot("a", 2);
        assert!(sibling(&mut store, &base, x.clone(), Some("1"), &[]));
        let key = crate::store::tables::sibling_key(&base, &x);
        let held = store.get(&key).unwrap();
        let value = crate::store::tables::value_written_again(&key, &held);
        let again = dot("r", 7);
        let copy = Version {
            value,
            dot: again.clone(),
            lamport: 9,
        };
        assert!(store.apply(key.clone(), copy));
        (store, base, key, x, again)
    }

    #[test]
    fn a_sibling_written_again_is_replaced_by_a_write_that_saw_the_original() {
        let (mut store, base, key, x, again) = written_again();
        let held = store.get(&key).unwrap();
        let decoded = Sibling::decode(held.value.as_ref().unwrap().as_json()).unwrap();
        assert_eq!(
            (held.dot.clone(), decoded.origin),
            (again.clone(), Some(x.clone()))
        );
        // Written again once more: it still names the client's write.
        let value = crate::store::tables::value_written_again(&key, &store.get(&key).unwrap());
        let twice = Sibling::decode(value.unwrap().as_json()).unwrap();
        assert_eq!(twice.origin, Some(x.clone()));
        // A concurrent value (it saw neither) leaves the copy.
        assert!(sibling(&mut store, &base, dot("b", 1), Some("2"), &[]));
        assert_eq!(store.siblings(&base).len(), 2);
        // A delete that saw the client's write (not the copy's dot) removes it.
        assert!(sibling(&mut store, &base, dot("c", 1), None, &[&x]));
        let left: Vec<Dot> = store.siblings(&base).iter().map(|e| e.dot()).collect();
        assert!(!left.contains(&again), "the copy survived: {left:?}");
        assert!(left.contains(&dot("b", 1)));
        assert!(store.replaced_in_table(
            &key,
            &Version {
                value: Some(held.value.clone().unwrap()),
                dot: again,
                lamport: 9,
            }
        ));
    }

    #[test]
    fn a_sibling_written_again_is_not_taken_where_a_write_that_saw_the_original_is_held() {
        let (copier, _, key, x, again) = written_again();
        let copy = copier.get(&key).unwrap();
        let (mut store, base) = with_sibling_table();
        // Here the original was replaced by a delete that saw it.
        assert!(sibling(&mut store, &base, x.clone(), Some("1"), &[]));
        assert!(sibling(&mut store, &base, dot("c", 1), None, &[&x]));
        assert!(!store.apply(key.clone(), copy.clone()));
        assert!(store.siblings(&base).iter().all(|e| e.dot() != again));
        // A store that never held either takes the copy.
        let (mut fresh, _) = with_sibling_table();
        assert!(fresh.apply(key, copy));
    }

    #[test]
    fn one_table_is_found_as_it_is_listed_and_a_dropped_one_is_not() {
        let mut store = Store::new();
        let [a, b, c, gone] = ["a", "b", "c", "gone"].map(|n| TableName::parse(n).unwrap());
        store.apply(
            a.meta_key(),
            version(Table::settings(false, "0"), dot("r", 1), 1),
        );
        store.apply(
            b.meta_key(),
            version(Table::settings(true, "0"), dot("r", 2), 2),
        );
        store.apply(
            gone.meta_key(),
            version(Table::dropped("1"), dot("r", 3), 3),
        );
        let key = store.table(&a).unwrap().key(&Key::parse("k").unwrap());
        store.apply(
            key,
            version(Value::from_json("1").unwrap().unwrap(), dot("r", 4), 4),
        );
        for name in [&a, &b] {
            let listed = store.tables().into_iter().find(|t| t.name == name.as_str());
            assert_eq!(store.table_info(name), listed);
            assert!(listed.is_some());
        }
        assert_eq!(
            store.table_info(&a).map(|t| (t.siblings, t.keys)),
            Some((false, 1))
        );
        assert_eq!(
            store.table_info(&b).map(|t| (t.siblings, t.keys)),
            Some((true, 0))
        );
        assert_eq!(store.table_info(&gone), None);
        assert_eq!(store.table_info(&c), None);
    }
}
