//! The client's causal context (`causal-metadata`): parsed at the edge,
//! printed deterministically, echoed unchanged when nothing was learned.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::clock::{ReplicaId, VectorClock};

/// Most entries a context may name; more is treated as malformed input.
pub const MAX_CONTEXT_ENTRIES: usize = 1024;

const NOT_AN_OBJECT: &str = "causal-metadata is malformed: expected an object";

/// What a client knows: the writes it has seen or made, as a vector clock,
/// plus the exact JSON it sent, so that an unchanged context is echoed
/// byte for byte.
#[derive(Clone, Debug, Default)]
pub struct CausalContext {
    clock: VectorClock,
    sent: Option<Box<RawValue>>,
}

impl PartialEq for CausalContext {
    fn eq(&self, other: &Self) -> bool {
        self.clock == other.clock
            && self.sent.as_ref().map(|r| r.get()) == other.sent.as_ref().map(|r| r.get())
    }
}

/// The metadata of an answer: the request's own JSON, or a clock printed
/// canonically (an object sorted by replica id).
#[derive(Debug, Clone)]
pub enum Metadata<'a> {
    /// The context the client sent, unchanged.
    Sent(&'a RawValue),
    /// A clock.
    Clock(VectorClock),
}

impl Serialize for Metadata<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Metadata::Sent(raw) => raw.serialize(s),
            Metadata::Clock(clock) => clock.serialize(s),
        }
    }
}

impl Metadata<'_> {
    /// As a JSON value.
    pub fn to_value(&self) -> Value {
        match self {
            Metadata::Sent(raw) => serde_json::from_str(raw.get()).unwrap_or(Value::Null),
            Metadata::Clock(clock) => print(clock),
        }
    }
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
        match sent {
            None => Ok(CausalContext::empty()),
            Some(value) => {
                let raw = serde_json::value::to_raw_value(value).map_err(|e| e.to_string())?;
                CausalContext::parse_raw(Some(&raw))
            }
        }
    }

    /// Parses `causal-metadata` from the JSON text sent, without building
    /// a JSON value on the way (the request path).
    pub fn parse_raw(sent: Option<&RawValue>) -> Result<Self, String> {
        let Some(raw) = sent else {
            return Ok(CausalContext::empty());
        };
        let parsed: Parsed = serde_json::from_str(raw.get()).map_err(|_| NOT_AN_OBJECT)?;
        Ok(CausalContext {
            clock: parsed.0?,
            sent: Some(raw.to_owned()),
        })
    }

    /// The writes this context requires.
    pub fn clock(&self) -> &VectorClock {
        &self.clock
    }

    /// The metadata to return once the client also knows `learned`: the
    /// request's own JSON when nothing is new, else the canonical print of
    /// the merged clock.
    pub fn reply(&self, learned: &VectorClock) -> Metadata<'_> {
        if learned.covered_by(&self.clock) {
            if let Some(sent) = &self.sent {
                return Metadata::Sent(sent);
            }
            return Metadata::Clock(self.clock.clone());
        }
        let mut merged = self.clock.clone();
        merged.merge(learned);
        Metadata::Clock(merged)
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

/// A context's clock, or why the context is malformed. Malformed input is
/// a value, not a decoding error, so that the reason is worded for the
/// client rather than by the JSON decoder.
struct Parsed(Result<VectorClock, String>);

impl<'de> Deserialize<'de> for Parsed {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ContextVisitor { nested: false })
    }
}

struct ContextVisitor {
    /// Inside a string: only an object is accepted there.
    nested: bool,
}

fn bad(reason: impl Into<String>) -> Parsed {
    Parsed(Err(reason.into()))
}

impl<'de> Visitor<'de> for ContextVisitor {
    type Value = Parsed;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a causal context")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Parsed, E> {
        Ok(if self.nested {
            bad(NOT_AN_OBJECT)
        } else {
            Parsed(Ok(VectorClock::new()))
        })
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Parsed, E> {
        if self.nested {
            return Ok(bad(NOT_AN_OBJECT));
        }
        if text.trim().is_empty() {
            return Ok(Parsed(Ok(VectorClock::new())));
        }
        let mut inner = serde_json::Deserializer::from_str(text);
        let parsed = inner
            .deserialize_any(ContextVisitor { nested: true })
            .and_then(|p| inner.end().map(|()| p));
        Ok(parsed.unwrap_or_else(|_| bad(NOT_AN_OBJECT)))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Parsed, E> {
        Ok(bad(NOT_AN_OBJECT))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Parsed, E> {
        Ok(bad(NOT_AN_OBJECT))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Parsed, E> {
        Ok(bad(NOT_AN_OBJECT))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Parsed, E> {
        Ok(bad(NOT_AN_OBJECT))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Parsed, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(bad(NOT_AN_OBJECT))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Parsed, A::Error> {
        let mut clock = VectorClock::new();
        let mut entries = 0;
        let mut error = None;
        while let Some(name) = map.next_key::<Cow<'de, str>>()? {
            let counter = map.next_value::<Counter>()?;
            entries += 1;
            if error.is_some() {
                continue;
            }
            if entries > MAX_CONTEXT_ENTRIES {
                error = Some(format!(
                    "causal-metadata is malformed: more than {MAX_CONTEXT_ENTRIES} entries"
                ));
                continue;
            }
            let id = match ReplicaId::parse(&name) {
                Ok(id) => id,
                Err(e) => {
                    error = Some(format!("causal-metadata is malformed: {e}"));
                    continue;
                }
            };
            match counter.0 {
                Some(n) => clock.set(id, n),
                None => {
                    error = Some(format!(
                        "causal-metadata is malformed: entry {name:?} is not a non-negative integer"
                    ))
                }
            }
        }
        Ok(Parsed(match error {
            Some(e) => Err(e),
            None => Ok(clock),
        }))
    }
}

/// A context entry's counter: `None` unless a non-negative integer.
struct Counter(Option<u64>);

impl<'de> Deserialize<'de> for Counter {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Counters are numbers; anything else is rare and malformed.
        Value::deserialize(d).map(|v| Counter(v.as_u64()))
    }
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
        assert_eq!(ctx.reply(&learned).to_value(), sent);
        let ctx = CausalContext::parse(Some(&json!(""))).unwrap();
        assert_eq!(ctx.reply(&VectorClock::new()).to_value(), json!(""));
    }

    #[test]
    fn reply_merges_and_prints_canonically_when_something_is_new() {
        let ctx = CausalContext::parse(Some(&json!({"b#1": 2}))).unwrap();
        let learned: VectorClock = [(id("a#1"), 4)].into_iter().collect();
        let printed = ctx.reply(&learned).to_value();
        assert_eq!(
            serde_json::to_string(&printed).unwrap(),
            r#"{"a#1":4,"b#1":2}"#
        );
        let again = CausalContext::parse(Some(&printed)).unwrap();
        assert_eq!(again.reply(&learned).to_value(), printed);
    }

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_string()).unwrap()
    }

    #[test]
    fn an_unchanged_context_is_echoed_byte_for_byte() {
        let text = r#"{ "b#1": 2,  "a#1": 1 }"#;
        let ctx = CausalContext::parse_raw(Some(&raw(text))).unwrap();
        assert_eq!(ctx.clock().get(&id("a#1")), 1);
        let learned: VectorClock = [(id("b#1"), 2)].into_iter().collect();
        assert_eq!(serde_json::to_string(&ctx.reply(&learned)).unwrap(), text);
        // Something new: the canonical print instead.
        let learned: VectorClock = [(id("c#1"), 1)].into_iter().collect();
        assert_eq!(
            serde_json::to_string(&ctx.reply(&learned)).unwrap(),
            r#"{"a#1":1,"b#1":2,"c#1":1}"#
        );
    }

    #[test]
    fn raw_and_value_parsing_agree() {
        for text in [
            "null",
            r#""""#,
            r#""  ""#,
            "{}",
            r#"{"r#1": 0}"#,
            r#"{"r#1": 3, "r#1": 5}"#,
            r#""{\"r#1\": 3}""#,
            r#""  {\"r#1\": 3}  ""#,
            r#"{"r#1": {"nested": [1]}}"#,
            r#"{"r#1": [1]}"#,
            r#"{"r#1": 18446744073709551615}"#,
            r#"{"r#1": 18446744073709551616}"#,
            r#""[1]""#,
            r#""5""#,
            r#""null""#,
            r#""{} x""#,
            "true",
            "[]",
            "-3",
        ] {
            let value: Value = serde_json::from_str(text).unwrap();
            let by_raw = CausalContext::parse_raw(Some(&raw(text))).map(|c| c.clock().clone());
            assert_eq!(by_raw, reference(&value), "{text}");
        }
    }

    /// The rules, applied to a decoded JSON value: what the streaming
    /// parser must agree with.
    fn reference(value: &Value) -> Result<VectorClock, String> {
        let map = match value {
            Value::Null => return Ok(VectorClock::new()),
            Value::String(text) if text.trim().is_empty() => return Ok(VectorClock::new()),
            Value::String(text) => match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(map)) => map,
                _ => return Err(NOT_AN_OBJECT.into()),
            },
            Value::Object(map) => map.clone(),
            _ => return Err(NOT_AN_OBJECT.into()),
        };
        let mut clock = VectorClock::new();
        for (name, counter) in &map {
            let id =
                ReplicaId::parse(name).map_err(|e| format!("causal-metadata is malformed: {e}"))?;
            let n = counter.as_u64().ok_or_else(|| {
                format!(
                    "causal-metadata is malformed: entry {name:?} is not a non-negative integer"
                )
            })?;
            clock.set(id, n);
        }
        Ok(clock)
    }

    #[test]
    fn malformed_entries_are_named() {
        let err = |text: &str| CausalContext::parse_raw(Some(&raw(text))).unwrap_err();
        assert_eq!(
            err(r#"{"r#1": -1}"#),
            r#"causal-metadata is malformed: entry "r#1" is not a non-negative integer"#
        );
        assert_eq!(
            err("[1]"),
            "causal-metadata is malformed: expected an object"
        );
        assert_eq!(
            err(r#""{\"r#1\": 3""#),
            "causal-metadata is malformed: expected an object"
        );
        assert!(err(r#"{"": 1}"#).starts_with("causal-metadata is malformed: replica id"));
        let many: Vec<String> = (0..=MAX_CONTEXT_ENTRIES)
            .map(|i| format!("\"r#{i}\": 1"))
            .collect();
        let many = format!("{{{}}}", many.join(","));
        assert!(
            err(&many).contains("more than 1024 entries"),
            "{}",
            err(&many)
        );
    }
}
