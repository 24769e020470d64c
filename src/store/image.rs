//! A copy of some of a store's versions, as a page of a state copy carries
//! it, and its form on the wire.
//!
//! A page holds tens of thousands of versions written by a handful of
//! writers. On the wire it names each writer once and each version by the
//! writer's place in that list:
//!
//! ```json
//! {"origins": ["10.10.0.2:8085#1f..", ..],
//!  "entries": [["key", <value, or null for a tombstone>, origin, counter, lamport], ..]}
//! ```
//!
//! Decoding it allocates nothing per version: keys and values are borrowed
//! from the received text (values as raw JSON, exactly as stored) and laid
//! end to end in one buffer, the way the store keeps them. So a page must
//! be decoded from bytes in memory (`serde_json::from_slice`), which is how
//! replies are read.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq, SerializeTuple, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::value::{Key, Value, Version};
use crate::causal::{Dot, ReplicaId};

/// A copy of some of a store's versions (see [`super::Store::image_page`]).
#[derive(Clone, Default)]
pub struct Image {
    pub(super) origins: Vec<ReplicaId>,
    /// Each version's key then value text (empty for a tombstone), end to
    /// end.
    pub(super) text: String,
    pub(super) entries: Vec<ImageEntry>,
}

/// One version of an [`Image`].
#[derive(Clone)]
pub(super) struct ImageEntry {
    pub(super) start: usize,
    pub(super) key_end: usize,
    pub(super) end: usize,
    pub(super) counter: u64,
    pub(super) lamport: u64,
    pub(super) origin: u32,
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

    /// The largest Lamport time of a version in the image (0 if empty).
    pub fn max_lamport(&self) -> u64 {
        self.entries.iter().map(|e| e.lamport).max().unwrap_or(0)
    }

    /// The key of `entry`.
    pub(super) fn key(&self, entry: &ImageEntry) -> &str {
        &self.text[entry.start..entry.key_end]
    }

    /// The value text of `entry`: empty for a tombstone.
    pub(super) fn value_text(&self, entry: &ImageEntry) -> &str {
        &self.text[entry.key_end..entry.end]
    }

    /// The version of `entry`.
    pub(super) fn version(&self, entry: &ImageEntry) -> Version {
        let value = self.value_text(entry);
        Version {
            value: (!value.is_empty()).then(|| Value(Arc::from(value))),
            dot: Dot::new(self.origins[entry.origin as usize].clone(), entry.counter),
            lamport: entry.lamport,
        }
    }

    /// Every key with its version.
    pub fn iter(&self) -> impl Iterator<Item = (Key, Version)> + '_ {
        self.entries
            .iter()
            .map(|e| (Key::internal(self.key(e)), self.version(e)))
    }
}

impl fmt::Debug for Image {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Image({} keys)", self.len())
    }
}

/// One entry as the wire carries it.
struct WireEntry<'a>(&'a Image, &'a ImageEntry);

impl Serialize for WireEntry<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (image, entry) = (self.0, self.1);
        let value = image.value_text(entry);
        let mut tuple = s.serialize_tuple(5)?;
        tuple.serialize_element(image.key(entry))?;
        match value.is_empty() {
            true => tuple.serialize_element(&())?,
            false => {
                let raw: &RawValue =
                    serde_json::from_str(value).map_err(serde::ser::Error::custom)?;
                tuple.serialize_element(raw)?
            }
        }
        tuple.serialize_element(&entry.origin)?;
        tuple.serialize_element(&entry.counter)?;
        tuple.serialize_element(&entry.lamport)?;
        tuple.end()
    }
}

/// The entries of an image, as the wire carries them.
struct WireEntries<'a>(&'a Image);

impl Serialize for WireEntries<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for entry in &self.0.entries {
            seq.serialize_element(&WireEntry(self.0, entry))?;
        }
        seq.end()
    }
}

impl Serialize for Image {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("origins", &self.origins)?;
        map.serialize_entry("entries", &WireEntries(self))?;
        map.end()
    }
}

/// An entry as decoded: borrowed from the received text where it can be.
type Decoded<'a> = (Cow<'a, str>, Option<&'a RawValue>, u32, u64, u64);

impl<'de> Deserialize<'de> for Image {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ImageVisitor)
    }
}

/// Decodes an [`Image`] from its map.
struct ImageVisitor;

impl<'de> Visitor<'de> for ImageVisitor {
    type Value = Image;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a copy of versions: {\"origins\": [..], \"entries\": [..]}")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Image, A::Error> {
        let mut origins: Option<Vec<ReplicaId>> = None;
        let mut decoded: Option<Vec<Decoded<'de>>> = None;
        while let Some(field) = map.next_key::<Cow<'de, str>>()? {
            match field.as_ref() {
                "origins" => origins = Some(map.next_value()?),
                "entries" => decoded = Some(map.next_value()?),
                _ => _ = map.next_value::<de::IgnoredAny>()?,
            }
        }
        let origins = origins.ok_or_else(|| de::Error::missing_field("origins"))?;
        let decoded = decoded.ok_or_else(|| de::Error::missing_field("entries"))?;
        let bytes: usize = decoded
            .iter()
            .map(|(k, v, ..)| k.len() + v.map_or(0, |v| v.get().len()))
            .sum();
        let mut image = Image {
            origins,
            text: String::with_capacity(bytes),
            entries: Vec::with_capacity(decoded.len()),
        };
        for (key, value, origin, counter, lamport) in decoded {
            Key::stored(&key).map_err(|e| de::Error::custom(format!("bad key: {e:?}")))?;
            if origin as usize >= image.origins.len() {
                return Err(de::Error::custom(format!(
                    "a version names writer {origin} of {}",
                    image.origins.len()
                )));
            }
            let start = image.text.len();
            image.text.push_str(&key);
            let key_end = image.text.len();
            if let Some(value) = value {
                image.text.push_str(value.get().trim());
            }
            image.entries.push(ImageEntry {
                start,
                key_end,
                end: image.text.len(),
                counter,
                lamport,
                origin,
            });
        }
        Ok(image)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Marks, Store};

    fn store() -> Store {
        let mut s = Store::new();
        let version = |value: Option<&str>, writer: &str, counter, lamport| Version {
            value: value.map(|v| Value::from_json(v).unwrap().unwrap()),
            dot: Dot::new(ReplicaId::parse(writer).unwrap(), counter),
            lamport,
        };
        s.apply(Key::parse("plain").unwrap(), version(Some("1"), "a", 1, 1));
        s.apply(
            Key::parse("quote\"back\\slash é").unwrap(),
            version(Some(r#"{"x": [1, "two"], "y": null}"#), "b", 1, 2),
        );
        s.apply(Key::parse("gone").unwrap(), version(None, "a", 2, 3));
        s.apply(
            Key::stored("\u{1}t\u{1}k").unwrap(),
            version(Some("\"in a table\""), "c", 7, 9),
        );
        s
    }

    fn decode(text: &str) -> Result<Image, serde_json::Error> {
        serde_json::from_slice(text.as_bytes())
    }

    #[test]
    fn an_image_survives_the_wire_exactly() {
        let image = store().image();
        let text = serde_json::to_string(&image).unwrap();
        let back = decode(&text).unwrap();
        let all: Vec<_> = image.iter().collect();
        assert_eq!(all.len(), 4);
        assert_eq!(back.iter().collect::<Vec<_>>(), all);
        // Merged into an empty store, the copy is the store.
        let mut copy = Store::new();
        copy.merge_image(&back, |_| false, &mut Marks::default(), 0);
        assert_eq!(copy.image().iter().collect::<Vec<_>>(), all);
        assert_eq!((copy.len(), copy.tombstones()), (3, 1));
    }

    #[test]
    fn the_wire_names_each_writer_once() {
        let mut s = Store::new();
        for (i, (k, writer)) in [("k1", "a"), ("k2", "b"), ("k3", "a")].iter().enumerate() {
            let n = i as u64 + 1;
            let version = Version {
                value: Value::from_json("true").unwrap(),
                dot: Dot::new(ReplicaId::parse(writer).unwrap(), n),
                lamport: n,
            };
            s.apply(Key::parse(k).unwrap(), version);
        }
        let text = serde_json::to_string(&s.image()).unwrap();
        assert_eq!(
            text,
            r#"{"origins":["a","b"],"entries":[["k1",true,0,1,1],["k2",true,1,2,2],["k3",true,0,3,3]]}"#
        );
    }

    #[test]
    fn a_malformed_image_is_refused_not_taken() {
        let bad = [
            // A writer the image does not name.
            r#"{"origins":["a"],"entries":[["k",1,1,1,1]]}"#,
            // An empty key; a key too long for the store.
            r#"{"origins":["a"],"entries":[["",1,0,1,1]]}"#,
            &format!(
                r#"{{"origins":["a"],"entries":[["{}",1,0,1,1]]}}"#,
                "k".repeat(300)
            ),
            // Missing parts.
            r#"{"origins":["a"]}"#,
            r#"{"entries":[]}"#,
            r#"{"origins":["a"],"entries":[["k",1,0,1]]}"#,
            r#"{"origins":["a"],"entries":[["k",1,0,-1,1]]}"#,
            r#"[]"#,
        ];
        for text in bad {
            assert!(decode(text).is_err(), "{text} was taken");
        }
        let fine = decode(r#"{"origins":["a"],"entries":[["k", {"v" : 1} ,0,1,1]],"more":0}"#);
        let (key, version) = fine.unwrap().iter().next().unwrap();
        assert_eq!(key.as_str(), "k");
        assert_eq!(version.value.unwrap().as_json(), r#"{"v" : 1}"#);
    }
}
