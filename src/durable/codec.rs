//! How a key's version is laid out on disk.
//!
//! `[kind: u8][lamport: u64 LE][counter: u64 LE][writer length: u16 LE]
//! [writer id][value JSON]`, where kind is 1 for a value and 0 for a
//! tombstone (no value text follows). The key is the record's key.

use std::collections::HashMap;

use crate::causal::{Dot, ReplicaId};
use crate::store::{Value, Version};

const TOMBSTONE: u8 = 0;
const VALUE: u8 = 1;
const HEADER: usize = 1 + 8 + 8 + 2;

/// The bytes of `version`.
pub fn encode(version: &Version) -> Vec<u8> {
    let writer = version.dot.replica.as_str().as_bytes();
    let value = version
        .value
        .as_ref()
        .map_or("", |v| v.as_json())
        .as_bytes();
    let mut out = Vec::with_capacity(HEADER + writer.len() + value.len());
    out.push(if version.value.is_some() {
        VALUE
    } else {
        TOMBSTONE
    });
    out.extend_from_slice(&version.lamport.to_le_bytes());
    out.extend_from_slice(&version.dot.counter.to_le_bytes());
    // Replica ids are an address and an incarnation: far below 64 KiB.
    let len = u16::try_from(writer.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&writer[..len as usize]);
    out.extend_from_slice(value);
    out
}

/// Reads versions back, sharing one [`ReplicaId`] per writer.
#[derive(Default)]
pub struct Decoder {
    writers: HashMap<Box<[u8]>, ReplicaId>,
}

impl Decoder {
    /// The version in `bytes`, or what is wrong with them.
    pub fn decode(&mut self, bytes: &[u8]) -> Result<Version, String> {
        if bytes.len() < HEADER {
            return Err(format!("a record of {} bytes is too short", bytes.len()));
        }
        let kind = bytes[0];
        let word = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let lamport = word(1);
        let counter = word(9);
        let len = u16::from_le_bytes([bytes[17], bytes[18]]) as usize;
        let Some(writer) = bytes.get(HEADER..HEADER + len) else {
            return Err("a record's writer runs past its end".into());
        };
        let replica = match self.writers.get(writer) {
            Some(id) => id.clone(),
            None => {
                let text = std::str::from_utf8(writer).map_err(|e| format!("writer: {e}"))?;
                let id = ReplicaId::parse(text)?;
                self.writers.insert(writer.into(), id.clone());
                id
            }
        };
        let rest = &bytes[HEADER + len..];
        let value = match kind {
            TOMBSTONE if rest.is_empty() => None,
            VALUE => {
                let text = std::str::from_utf8(rest).map_err(|e| format!("value: {e}"))?;
                // Valid JSON when it was stored, and the engine checksums
                // what it reads back: checking the bytes are text is enough.
                match Value::from_stored(text) {
                    Some(value) if !text.is_empty() => Some(value),
                    _ => return Err("a stored value is empty or null".into()),
                }
            }
            _ => return Err(format!("unknown record kind {kind}")),
        };
        Ok(Version {
            value,
            dot: Dot::new(replica, counter),
            lamport,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(value: Option<&str>, counter: u64) -> Version {
        Version {
            value: value.map(|v| Value::from_json(v).unwrap().unwrap()),
            dot: Dot::new(ReplicaId::parse("10.0.0.2:8085#ab12").unwrap(), counter),
            lamport: 77,
        }
    }

    #[test]
    fn versions_round_trip() {
        let mut decoder = Decoder::default();
        for v in [
            version(Some(r#""text""#), 3),
            version(Some(r#"{"é":[1,2.50,true]}"#), u64::MAX),
            version(None, 1),
        ] {
            assert_eq!(decoder.decode(&encode(&v)).unwrap(), v);
        }
    }

    #[test]
    fn damaged_records_are_refused_not_misread() {
        let mut decoder = Decoder::default();
        let good = encode(&version(Some("1"), 1));
        assert!(decoder.decode(&good[..5]).is_err());
        let mut bad_kind = good.clone();
        bad_kind[0] = 9;
        assert!(decoder.decode(&bad_kind).is_err());
        let mut bad_value = good.clone();
        bad_value.push(0xff);
        assert!(decoder.decode(&bad_value).is_err());
        let mut tomb_with_text = encode(&version(None, 1));
        tomb_with_text.push(b'1');
        assert!(decoder.decode(&tomb_with_text).is_err());
        let mut long_writer = good;
        long_writer[17] = 0xff;
        assert!(decoder.decode(&long_writer).is_err());
    }
}
