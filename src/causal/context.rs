//! The client's causal context (`causal-metadata`): parsed at the edge,
//! printed deterministically, echoed unchanged when nothing was learned.

use serde_json::{Map, Value};

use super::clock::{ReplicaId, VectorClock};

/// Most entries a context may name; more is treated as malformed input.
pub const MAX_CONTEXT_ENTRIES: usize = 1024;

/// What a client knows: the writes it has seen or made, as a vector clock,
/// plus the exact JSON it sent, so that an unchanged context is echoed
/// byte for byte.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CausalContext {
    clock: VectorClock,
    sent: Option<Value>,
}

impl CausalContext {
    /// The empty context, as if the client sent none.
    pub fn empty() -> Self {
        CausalContext::default()
    }

    /// A context holding `clock` (used by the replica's own peers and tests).
    pub fn from_clock(clock: VectorClock) -> Self {
        CausalContext { clock, sent: None }
    }

    /// Parses `causal-metadata` as sent by a client.
    ///
    /// `None`, `null`, `""` and `{}` mean "no context". A string holding a
    /// JSON object is accepted too, for clients that stringify the metadata.
    pub fn parse(sent: Option<&Value>) -> Result<Self, String> {
        let Some(value) = sent else {
            return Ok(CausalContext::empty());
        };
        let clock = match value {
            Value::Null => VectorClock::new(),
            Value::String(text) if text.trim().is_empty() => VectorClock::new(),
            Value::String(text) => match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(map)) => parse_map(&map)?,
                _ => return Err("causal-metadata is malformed: expected an object".into()),
            },
            Value::Object(map) => parse_map(map)?,
            _ => return Err("causal-metadata is malformed: expected an object".into()),
        };
        Ok(CausalContext {
            clock,
            sent: Some(value.clone()),
        })
    }

    /// The writes this context requires.
    pub fn clock(&self) -> &VectorClock {
        &self.clock
    }

    /// The metadata to return once the client also knows `learned`: the
    /// request's own JSON when nothing is new, else the canonical print of
    /// the merged clock.
    pub fn reply(&self, learned: &VectorClock) -> Value {
        if learned.covered_by(&self.clock) {
            if let Some(sent) = &self.sent {
                return sent.clone();
            }
            return print(&self.clock);
        }
        let mut merged = self.clock.clone();
        merged.merge(learned);
        print(&merged)
    }
}

/// The canonical JSON form of a clock: an object sorted by replica id.
pub fn print(clock: &VectorClock) -> Value {
    let mut map = Map::new();
    for (id, n) in clock.iter() {
        map.insert(id.to_string(), Value::from(n));
    }
    Value::Object(map)
}

fn parse_map(map: &Map<String, Value>) -> Result<VectorClock, String> {
    if map.len() > MAX_CONTEXT_ENTRIES {
        return Err(format!(
            "causal-metadata is malformed: more than {MAX_CONTEXT_ENTRIES} entries"
        ));
    }
    let mut clock = VectorClock::new();
    for (name, counter) in map {
        let id =
            ReplicaId::parse(name).map_err(|e| format!("causal-metadata is malformed: {e}"))?;
        let n = counter.as_u64().ok_or_else(|| {
            format!("causal-metadata is malformed: entry {name:?} is not a non-negative integer")
        })?;
        clock.set(id, n);
    }
    Ok(clock)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn id(name: &str) -> ReplicaId {
        ReplicaId::parse(name).unwrap()
    }

    #[test]
    fn empty_forms_mean_no_context() {
        for sent in [None, Some(json!(null)), Some(json!("")), Some(json!({}))] {
            let ctx = CausalContext::parse(sent.as_ref()).unwrap();
            assert!(ctx.clock().is_empty());
        }
    }

    #[test]
    fn object_and_stringified_object_parse_alike() {
        let a = CausalContext::parse(Some(&json!({"r#1": 3}))).unwrap();
        let b = CausalContext::parse(Some(&json!("{\"r#1\": 3}"))).unwrap();
        assert_eq!(a.clock(), b.clock());
        assert_eq!(a.clock().get(&id("r#1")), 3);
    }

    #[test]
    fn malformed_metadata_is_rejected() {
        for bad in [
            json!(5),
            json!([1, 2]),
            json!({"r#1": -1}),
            json!({"r#1": "3"}),
            json!({"r#1": 1.5}),
            json!({"": 1}),
            json!("not json"),
        ] {
            assert!(CausalContext::parse(Some(&bad)).is_err(), "accepted {bad}");
        }
    }

    #[test]
    fn reply_echoes_the_request_when_nothing_is_new() {
        let sent = json!({"b#1": 2, "a#1": 1});
        let ctx = CausalContext::parse(Some(&sent)).unwrap();
        let learned: VectorClock = [(id("a#1"), 1)].into_iter().collect();
        assert_eq!(ctx.reply(&learned), sent);
        let ctx = CausalContext::parse(Some(&json!(""))).unwrap();
        assert_eq!(ctx.reply(&VectorClock::new()), json!(""));
    }

    #[test]
    fn reply_merges_and_prints_canonically_when_something_is_new() {
        let ctx = CausalContext::parse(Some(&json!({"b#1": 2}))).unwrap();
        let learned: VectorClock = [(id("a#1"), 4)].into_iter().collect();
        let printed = ctx.reply(&learned);
        assert_eq!(
            serde_json::to_string(&printed).unwrap(),
            r#"{"a#1":4,"b#1":2}"#
        );
        let again = CausalContext::parse(Some(&printed)).unwrap();
        assert_eq!(again.reply(&learned), printed);
    }
}
