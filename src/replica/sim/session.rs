//! The simulated clients' sessions: the context each passes back, what it
//! has seen, what it waits for; and what it was served.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value as Json;

use crate::causal::VectorClock;
use crate::replica::Condition;
use crate::store::{Key, Value, Version};

use super::super::outputs::Outcome;
use super::super::timing::Millis;

/// A write acknowledged to a client, with the context the client sent.
#[derive(Clone, Debug)]
pub(in crate::replica) struct Logged {
    pub key: Key,
    pub version: Version,
    pub deps: VectorClock,
}

#[derive(Clone, Debug)]
pub(in crate::replica) enum Op {
    Put(Key),
    Delete(Key),
    Get(Key),
    /// A conditional put (`If-Match` / `If-None-Match`).
    PutIf(Key, Condition),
}

#[derive(Default)]
pub(in crate::replica) struct Session {
    pub ctx: Json,
    /// The newest version of each key this session wrote or read.
    pub(in crate::replica) seen: BTreeMap<Key, Version>,
    /// An operation waiting for its context: at which replica, since when.
    pub(in crate::replica) pending: Option<(Op, usize, Millis)>,
    /// The wait last traced for it, not traced again.
    pub(in crate::replica) waits: Option<String>,
}

/// What a client got: the value read or written, and for a write, what it
/// did.
pub(in crate::replica) struct Served {
    pub value: Option<Value>,
    pub outcome: Option<Outcome>,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Put(k) => write!(f, "PUT {}", k.as_str()),
            Op::Delete(k) => write!(f, "DELETE {}", k.as_str()),
            Op::Get(k) => write!(f, "GET {}", k.as_str()),
            Op::PutIf(k, c) => write!(f, "PUT {} if {c:?}", k.as_str()),
        }
    }
}

/// Whether the sibling `key` written by `dot` was replaced by a logged
/// write of the same key that saw it (a delete among siblings may be
/// forgotten since, leaving nothing that tells).
pub(in crate::replica) fn replaced_sibling(log: &[Logged], key: &Key, v: &Version) -> bool {
    let Some(base) = crate::store::tables::sibling_base(key.as_str()) else {
        return false;
    };
    use crate::store::Sibling;
    // A copy a replica wrote again is replaced by what saw the original.
    let sibling = (v.value.as_ref()).and_then(|v| Sibling::decode(v.as_json()));
    let saw = |seen: &VectorClock| Sibling::seen_in_any(sibling.as_ref(), &v.dot, seen);
    log.iter().any(|w| {
        // What a write saw is its deps, which leave out its writer's own
        // earlier writes, and all its sibling record says it saw.
        let recorded = (w.version.value.as_ref()).and_then(|v| Sibling::decode(v.as_json()));
        (saw(&w.deps) || recorded.is_some_and(|r| saw(&r.seen)))
            && crate::store::tables::sibling_base(w.key.as_str()).as_deref() == Some(base.as_str())
    })
}

/// Whether `v` of `key` is a delete among siblings (forgotten like a
/// tombstone once every replica applied it).
pub(in crate::replica) fn is_marker(key: &Key, v: &Version) -> bool {
    crate::store::tables::sibling_base(key.as_str()).is_some()
        && v.value
            .as_ref()
            .and_then(|v| crate::store::Sibling::decode(v.as_json()))
            .is_some_and(|s| s.value.is_none())
}
