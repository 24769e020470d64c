//! Tables: named key spaces inside the one store, their keys, and the
//! concurrent values a table with siblings keeps.
//!
//! # Keys
//!
//! Every table lives in the same [`Store`](super::Store), its keys told apart
//! by a prefix that no client key of the default table can take (a client
//! key starting with a character below U+0004 is stored behind a U+0000):
//!
//! | stored key | what it is |
//! | --- | --- |
//! | `k` | key `k` of the default table |
//! | `\0k` | key `k` of the default table, `k` starting below U+0004 |
//! | `\x02name` | the table `name` itself: its settings and its id |
//! | `\x01name\x01id\x01k` | key `k` of the table `name` whose id is `id` |
//! | `\x03name\x01id\x01e k` | one concurrent value of key `k` of a table with siblings, `e` the entity tag of its write |
//!
//! A table is created and dropped by writing its `\x02` key (its settings
//! and id, or the record of its drop), so both spread, wait for their
//! context and resolve like any write; every write to a table's key
//! depends on its creation, so no replica applies a key of a table it does
//! not know yet. A table's first creation has the id `0`, and a drop draws
//! the id of the next creation: so creations made at the same time at two
//! replicas (or in two shards) are one table whose keys are all kept, and
//! a table dropped and created again starts empty, for the keys of the old
//! id are never read again, are not stored if they arrive late, and are
//! collected. The record of a drop (a name and an id) is kept.
//!
//! # Siblings
//!
//! In a table created with siblings, each write is a key of its own (the
//! `\x03` form), whose value carries the client's value and the context
//! the client wrote with: the writes it has seen. Applying a write removes
//! the values of that key it has seen, and a value some held write has seen
//! is not stored; what is left are the values no other has seen, the
//! *siblings*, the same at every replica whatever order the writes come
//! in. A delete is a write without a value: it removes what it has seen,
//! and stays as a marker, so that readers learn it, until a write that saw
//! it replaces it or every replica has applied it (then it is forgotten
//! like a tombstone: no replica holds what it saw any more).

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::causal::{Dot, VectorClock};

use super::value::{Key, Value, Version};

/// Longest table name accepted, in characters.
pub const MAX_TABLE_CHARS: usize = 50;

const ESCAPE: char = '\u{0}';
pub(super) const DATA: char = '\u{1}';
const META: char = '\u{2}';
pub(super) const SIBLING: char = '\u{3}';
/// How a delete's sibling value starts (a value's starts with `{"v":`).
const MARKER_START: &str = "{\"c\":";
/// Starts the text a table's key is placed by (never a stored key's start).
const ROUTE: char = '\u{4}';
/// Length of an entity tag's hex digits in a sibling's key.
const TAG_LEN: usize = 16;

/// A table's name: 1 to 50 letters, digits, `-` and `_`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TableName(Box<str>);

impl TableName {
    /// Accepts `text` as a table name, or `None`.
    pub fn parse(text: &str) -> Option<Self> {
        let valid = !text.is_empty()
            && text.chars().count() <= MAX_TABLE_CHARS
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        valid.then(|| TableName(text.into()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The stored key of the table itself.
    pub fn meta_key(&self) -> Key {
        Key::internal(&format!("{META}{}", self.0))
    }
}

/// A live table, as its `\x02` key holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    /// Its name.
    pub name: TableName,
    /// The id drawn at its creation.
    pub id: Box<str>,
    /// Whether it keeps concurrent values.
    pub siblings: bool,
}

/// A table as listed: its settings and live keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableInfo {
    /// Its name.
    pub name: String,
    /// Whether it keeps concurrent values.
    pub siblings: bool,
    /// Its live keys.
    pub keys: usize,
}

/// What a table's `\x02` key holds: a live table's settings, or the record
/// of its drop, naming the id its next creation takes.
#[derive(Deserialize)]
#[serde(untagged)]
enum Record {
    Live { siblings: bool, id: String },
    Dropped { next: String },
}

/// The id of a table's first creation: every replica (and every shard)
/// creating a table it never heard of gives it this one, so tables created
/// at the same time on both sides of a partition are one table.
pub const FIRST_ID: &str = "0";

/// What a table's `\x02` key says of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    /// The table is live.
    Live(Table),
    /// The table was dropped; `next` is the id its next creation takes.
    Dropped { next: Box<str> },
}

impl Table {
    /// The value of the table's `\x02` key for a new table.
    pub fn settings(siblings: bool, id: &str) -> Value {
        let json = serde_json::json!({"siblings": siblings, "id": id}).to_string();
        Value::from_json(&json)
            .ok()
            .flatten()
            .expect("an object is a value")
    }

    /// The value of the table's `\x02` key once it is dropped: its next
    /// creation takes the id `next` (drawn by the drop, so that creations
    /// made at the same time after it are one table, and a table created
    /// again starts empty).
    pub fn dropped(next: &str) -> Value {
        let json = serde_json::json!({"dropped": true, "next": next}).to_string();
        Value::from_json(&json)
            .ok()
            .flatten()
            .expect("an object is a value")
    }

    /// What the `\x02` key of table `name` holding `json` says.
    pub(super) fn state(name: TableName, json: &str) -> Option<State> {
        Some(match serde_json::from_str(json).ok()? {
            Record::Live { siblings, id } => State::Live(Table {
                name,
                id: id.into(),
                siblings,
            }),
            Record::Dropped { next } => State::Dropped { next: next.into() },
        })
    }

    /// The stored key of client key `key` in this table; for a table with
    /// siblings, the base its siblings' keys start with.
    pub fn key(&self, key: &Key) -> Key {
        let mark = if self.siblings { SIBLING } else { DATA };
        Key::internal(&format!(
            "{mark}{}{DATA}{}{DATA}{}",
            self.name.0,
            self.id,
            key.as_str()
        ))
    }
}

/// The stored key of client key `key` of the default table.
pub fn default_key(key: Key) -> Key {
    match key.as_str().chars().next() {
        Some(c) if c <= SIBLING => Key::internal(&format!("{ESCAPE}{}", key.as_str())),
        _ => key,
    }
}

/// The stored key of the sibling written by `dot`, of the key whose base
/// (see [`Table::key`]) is `base`: the tag goes after the table's prefix,
/// so the base is the key without it.
pub fn sibling_key(base: &Key, dot: &Dot) -> Key {
    let tag = super::value::etag(dot);
    let (prefix, key) = split_base(base.as_str()).expect("a sibling table's key");
    Key::internal(&format!("{prefix}{}{key}", &tag[1..=TAG_LEN]))
}

/// `(prefix, client key)` of a `\x03` base key.
fn split_base(base: &str) -> Option<(&str, &str)> {
    let rest = base.strip_prefix(SIBLING)?;
    let name_end = rest.find(DATA)?;
    let id_end = rest[name_end + 1..].find(DATA)? + name_end + 1;
    let at = 1 + id_end + 1;
    Some((&base[..at], &base[at..]))
}

/// Whether `json`, a sibling's stored value, is a delete's (no value).
pub(super) fn is_marker_value(json: &str) -> bool {
    json.starts_with(MARKER_START)
}

/// What a stored key is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind<'a> {
    /// A key of the default table.
    Default,
    /// A table's own key, holding its settings.
    Meta { name: &'a str },
    /// A key of a table: its name, id, and whether it is a sibling.
    Data {
        name: &'a str,
        id: &'a str,
        sibling: bool,
    },
}

/// What the stored key `key` is.
pub fn kind(key: &str) -> Kind<'_> {
    let mut chars = key.chars();
    match chars.next() {
        Some(META) => Kind::Meta { name: &key[1..] },
        Some(mark @ (DATA | SIBLING)) => {
            let rest = &key[1..];
            let mut parts = rest.splitn(3, DATA);
            match (parts.next(), parts.next(), parts.next()) {
                (Some(name), Some(id), Some(_)) => Kind::Data {
                    name,
                    id,
                    sibling: mark == SIBLING,
                },
                _ => Kind::Default,
            }
        }
        _ => Kind::Default,
    }
}

/// Whether the stored key `key` is a table's own (its settings): every
/// shard's group keeps those, whatever the placement says.
pub fn is_table(key: &str) -> bool {
    matches!(kind(key), Kind::Meta { .. })
}

/// The text a stored key is placed in a shard by: a table's key by the
/// table's name and the client's key, without the id (which one shard may
/// learn later than another) or a sibling's tag (all siblings of a key
/// live together); an escaped key of the default table by the client's
/// key.
pub fn placement_text(key: &str) -> Cow<'_, str> {
    match kind(key) {
        Kind::Data { name, id, sibling } => {
            let client = &key[1 + name.len() + 1 + id.len() + 1..];
            let client = if sibling {
                client.get(TAG_LEN..).unwrap_or(client)
            } else {
                client
            };
            Cow::Owned(format!("{ROUTE}{name}{DATA}{client}"))
        }
        _ => Cow::Borrowed(key),
    }
}

/// The text client key `key` of `table` (`None`: the default table) is
/// placed by, before the table's id is known: the same as
/// [`placement_text`] gives for the key stored.
pub fn route_text<'a>(table: Option<&TableName>, key: &'a Key) -> Cow<'a, str> {
    match table {
        None => match default_key(key.clone()) {
            escaped if escaped.as_str() != key.as_str() => Cow::Owned(escaped.as_str().into()),
            _ => Cow::Borrowed(key.as_str()),
        },
        Some(name) => Cow::Owned(format!("{ROUTE}{}{DATA}{}", name.0, key.as_str())),
    }
}

/// The base key (see [`Table::key`]) of a sibling's stored key.
pub fn sibling_base(key: &str) -> Option<String> {
    let (prefix, rest) = split_base(key)?;
    Some(format!("{prefix}{}", rest.get(TAG_LEN..)?))
}

/// The value with which a replica writes `version` of the stored key
/// `key` again under a dot of its own: a sibling's names the client's
/// write it carries ([`Sibling::written_again`]); any other is unchanged.
pub fn value_written_again(key: &Key, version: &Version) -> Option<Value> {
    let value = version.value.as_ref()?;
    match kind(key.as_str()) {
        Kind::Data { sibling: true, .. } => {
            Sibling::written_again(value.as_json(), &version.dot).or(Some(value.clone()))
        }
        _ => Some(value.clone()),
    }
}

/// What a sibling's value holds: the client's value (none for a delete),
/// the writes it has seen, and, for a sibling a replica wrote again under
/// a dot of its own, the dot of the client's write it carries.
#[derive(Clone, Debug, PartialEq)]
pub struct Sibling {
    /// The value written, or `None` for a delete.
    pub value: Option<Value>,
    /// The writes the writer had seen.
    pub seen: VectorClock,
    /// The client's write this sibling is a copy of, if a replica wrote
    /// it again (see [`Sibling::written_again`]).
    pub origin: Option<Dot>,
}

#[derive(Deserialize)]
struct SiblingJson<'a> {
    #[serde(borrow, default)]
    v: Option<&'a RawValue>,
    c: VectorClock,
    /// The origin, as a clock of one entry.
    #[serde(default)]
    o: Option<VectorClock>,
}

impl Sibling {
    /// The stored value of a sibling.
    pub fn encode(value: Option<&Value>, seen: &VectorClock) -> Value {
        Self::encode_from(value, seen, None)
    }

    fn encode_from(value: Option<&Value>, seen: &VectorClock, origin: Option<&Dot>) -> Value {
        let seen = serde_json::to_string(seen).expect("a clock prints");
        let mut json = match value {
            Some(v) => format!("{{\"v\":{},\"c\":{seen}", v.as_json()),
            None => format!("{{\"c\":{seen}"),
        };
        if let Some(origin) = origin {
            let mut clock = VectorClock::new();
            clock.observe(origin);
            let clock = serde_json::to_string(&clock).expect("a clock prints");
            json.push_str(&format!(",\"o\":{clock}"));
        }
        json.push('}');
        Value::from_json(&json)
            .ok()
            .flatten()
            .expect("an object is a value")
    }

    /// The stored value with which a replica writes again, under a dot of
    /// its own, the sibling `stored` held under `dot`: the same value and
    /// seen writes, and the client's write it carries (`dot`, or the one
    /// it already named). A write that has seen that client's write
    /// replaces the copy as it replaces the original ([`Sibling::seen_in`]),
    /// so a value deleted by a client that saw it never comes back as its
    /// copy. `None` if `stored` is not a sibling's value.
    pub fn written_again(stored: &str, dot: &Dot) -> Option<Value> {
        let sibling = Sibling::decode(stored)?;
        let origin = sibling.origin.as_ref().unwrap_or(dot);
        Some(Self::encode_from(
            sibling.value.as_ref(),
            &sibling.seen,
            Some(origin),
        ))
    }

    /// Whether a write that has seen `seen` has seen this sibling, held
    /// under `dot`: its own write, or the client's write it is a copy of.
    pub fn seen_in(&self, dot: &Dot, seen: &VectorClock) -> bool {
        seen.contains(dot) || self.origin.as_ref().is_some_and(|o| seen.contains(o))
    }

    /// [`Sibling::seen_in`] for a stored value that may not be a
    /// sibling's (`None`): then only its own write, `dot`, counts.
    pub fn seen_in_any(sibling: Option<&Sibling>, dot: &Dot, seen: &VectorClock) -> bool {
        match sibling {
            Some(sibling) => sibling.seen_in(dot, seen),
            None => seen.contains(dot),
        }
    }

    /// Reads a sibling's stored value.
    pub fn decode(json: &str) -> Option<Sibling> {
        let parsed: SiblingJson = serde_json::from_str(json).ok()?;
        let value = match parsed.v {
            Some(raw) => Some(Value::from_json(raw.get()).ok()??),
            None => None,
        };
        let origin = match parsed.o {
            None => None,
            Some(clock) => {
                let mut entries = clock.iter();
                let (replica, counter) = entries.next()?;
                if entries.next().is_some() {
                    return None;
                }
                Some(Dot::new(replica.clone(), counter))
            }
        };
        Some(Sibling {
            value,
            seen: parsed.c,
            origin,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::causal::ReplicaId;

    fn table(siblings: bool) -> Table {
        Table {
            name: TableName::parse("users").unwrap(),
            id: "0a1b2c3d".into(),
            siblings,
        }
    }

    #[test]
    fn names_are_letters_digits_dashes_and_underscores_up_to_fifty() {
        assert!(TableName::parse("a-b_C9").is_some());
        assert!(TableName::parse(&"x".repeat(50)).is_some());
        for bad in ["", "a b", "a/b", "é", "a.b", &"x".repeat(51)] {
            assert!(TableName::parse(bad).is_none(), "{bad:?} accepted");
        }
    }

    #[test]
    fn every_kind_of_key_is_told_apart() {
        let k = Key::parse("k").unwrap();
        assert_eq!(kind(default_key(k.clone()).as_str()), Kind::Default);
        let escaped = default_key(Key::parse("\u{1}users\u{1}0a1b2c3d\u{1}k").unwrap());
        assert_eq!(
            kind(escaped.as_str()),
            Kind::Default,
            "no client key poses as a table's"
        );
        assert_eq!(
            kind(table(false).name.meta_key().as_str()),
            Kind::Meta { name: "users" }
        );
        assert_eq!(
            kind(table(false).key(&k).as_str()),
            Kind::Data {
                name: "users",
                id: "0a1b2c3d",
                sibling: false
            }
        );
        let dot = Dot::new(ReplicaId::parse("a:1#x").unwrap(), 3);
        let sib = sibling_key(&table(true).key(&k), &dot);
        assert_eq!(
            kind(sib.as_str()),
            Kind::Data {
                name: "users",
                id: "0a1b2c3d",
                sibling: true
            }
        );
        assert_eq!(
            sibling_base(sib.as_str()).unwrap(),
            table(true).key(&k).as_str()
        );
    }

    #[test]
    fn a_key_is_placed_by_its_table_name_and_client_key_alone() {
        let k = Key::parse("k").unwrap();
        let mut other = table(false);
        other.id = "ffffffff".into();
        let plain = placement_text(table(false).key(&k).as_str()).into_owned();
        assert_eq!(plain, placement_text(other.key(&k).as_str()));
        let dot = Dot::new(ReplicaId::parse("a:1#x").unwrap(), 3);
        let sib = sibling_key(&table(true).key(&k), &dot);
        assert_eq!(plain, placement_text(sib.as_str()));
        assert_eq!(plain, route_text(Some(&table(false).name), &k));
        assert_eq!(placement_text("k"), "k");
        assert_eq!(route_text(None, &k), "k");
        let odd = Key::parse("\u{1}x").unwrap();
        assert_eq!(
            route_text(None, &odd),
            placement_text(default_key(odd.clone()).as_str())
        );
    }

    #[test]
    fn a_sibling_value_round_trips() {
        let mut seen = VectorClock::new();
        seen.set(ReplicaId::parse("a:1#x").unwrap(), 4);
        let v = Value::from_json("[1,\"two\"]").unwrap().unwrap();
        let stored = Sibling::encode(Some(&v), &seen);
        assert_eq!(
            Sibling::decode(stored.as_json()).unwrap(),
            Sibling {
                value: Some(v),
                seen: seen.clone(),
                origin: None,
            }
        );
        let marker = Sibling::encode(None, &seen);
        assert_eq!(Sibling::decode(marker.as_json()).unwrap().value, None);
    }
}
