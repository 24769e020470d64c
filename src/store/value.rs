//! What the store holds: keys, values, and versions with the one conflict
//! rule that orders them.

use std::fmt;
use std::sync::Arc;

use compact_str::CompactString;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

use crate::causal::{Dot, ReplicaId};

/// Longest key accepted, in characters.
pub const MAX_KEY_CHARS: usize = 50;

/// Longest stored key, in bytes: a table's name and id, a sibling's tag
/// and a client's key of 50 characters fit well within it.
const MAX_STORED_KEY_BYTES: usize = 512;

/// A key: a percent-decoded URL path segment of at most 50 characters.
///
/// Keys of up to 24 bytes (most keys) are stored inline, without a heap
/// allocation of their own: a large share of the memory per key.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(pub(super) CompactString);

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

    /// Accepts `text` as a stored key: a client's key, or one of the
    /// forms [`super::tables`] makes (a replica's, or a disk's, copy of
    /// the store holds those too).
    pub fn stored(text: &str) -> Result<Self, KeyError> {
        match text.chars().next() {
            Some(c) if c <= '\u{3}' => {
                if text.len() > MAX_STORED_KEY_BYTES {
                    return Err(KeyError::TooLong);
                }
                Ok(Key(CompactString::from(text)))
            }
            _ => Key::parse(text),
        }
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
        Key::stored(&text).map_err(|e| serde::de::Error::custom(format!("bad key: {e:?}")))
    }
}

/// A stored value: any JSON value but `null`, kept as the JSON text the
/// client sent so that it is returned exactly as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct Value(pub(super) Arc<str>);

impl Value {
    /// Accepts raw JSON text as a value; `None` for `null`.
    pub fn from_raw(raw: &RawValue) -> Option<Self> {
        let text = raw.get().trim();
        (text != "null").then(|| Value(Arc::from(text)))
    }

    /// A value from JSON text this store wrote itself (read back from its
    /// disk, whose blocks are checksummed): not parsed again. `None` for
    /// `null`, which is never stored.
    pub fn from_stored(text: &str) -> Option<Self> {
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
pub(super) type Rank<'a> = (u64, &'a ReplicaId, u64);

/// The entity tag naming the version made by the write `dot`, as HTTP
/// prints it (quoted): the same at every replica, opaque to clients.
pub fn etag(dot: &Dot) -> String {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(dot.replica.as_str().as_bytes());
    hasher.update(&dot.counter.to_le_bytes());
    format!("\"{:016x}\"", hasher.digest())
}

impl Version {
    /// The entity tag of this version (see [`etag`]).
    pub fn etag(&self) -> String {
        etag(&self.dot)
    }

    /// The conflict rule: whether this version beats `other`.
    pub fn supersedes(&self, other: &Version) -> bool {
        self.rank() > other.rank()
    }

    pub(super) fn rank(&self) -> Rank<'_> {
        (self.lamport, &self.dot.replica, self.dot.counter)
    }

    /// Whether this is a tombstone.
    pub fn is_tombstone(&self) -> bool {
        self.value.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn val(json: &str) -> Option<Value> {
        Value::from_json(json).unwrap()
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
}
