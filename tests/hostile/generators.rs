//! Generators of hostile bodies: arbitrary, deeply nested, huge, duplicated-field and non-UTF-8 JSON.

use proptest::prelude::*;
use proptest::sample::{select, Index};
use serde_json::{json, Value};

use crate::answers::Route;
use crate::common::raw::Bytes;

/// Any JSON value, a few levels deep.
pub(crate) fn arb_json() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        ".{0,24}".prop_map(Value::String),
        Just(json!("")),
        Just(json!({})),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

/// A JSON object mixing the fields of every public route, with values of
/// any type.
fn arb_fields() -> BoxedStrategy<Value> {
    let field =
        |name: &'static str| prop::option::weighted(0.7, arb_json()).prop_map(move |v| (name, v));
    (
        field("value"),
        field("causal-metadata"),
        field("socket-address"),
        prop::collection::btree_map("[a-z-]{1,8}", arb_json(), 0..2),
    )
        .prop_map(|(a, b, c, extra)| {
            let mut map: serde_json::Map<String, Value> = extra.into_iter().collect();
            for (name, v) in [a, b, c] {
                if let Some(v) = v {
                    map.insert(name.to_string(), v);
                }
            }
            Value::Object(map)
        })
        .boxed()
}

/// Deeply nested JSON: `depth` openers, somewhere in a body.
fn nested_body() -> BoxedStrategy<Vec<u8>> {
    (
        select(vec![127usize, 128, 129, 1000, 100_000]),
        select(vec![("[", "]"), ("{\"a\":", "}"), ("[{\"v\":", "}]")]),
        select(vec![
            "top",
            "value",
            "metadata",
            "metadata-string",
            "address",
        ]),
        any::<bool>(),
    )
        .prop_map(|(depth, (open, close), place, closed)| {
            let mut inner = open.repeat(depth);
            inner.push('1');
            if closed {
                inner.push_str(&close.repeat(depth));
            }
            let text = match place {
                "top" => inner,
                "value" => format!(r#"{{"value":{inner},"causal-metadata":""}}"#),
                "metadata" => format!(r#"{{"value":1,"causal-metadata":{inner}}}"#),
                "metadata-string" => format!(
                    r#"{{"value":1,"causal-metadata":{}}}"#,
                    Value::String(inner)
                ),
                _ => format!(r#"{{"socket-address":{inner}}}"#),
            };
            text.into_bytes()
        })
        .boxed()
}

/// A huge string in some field (the body may or may not exceed the 1 MiB
/// default limit).
fn huge_body() -> BoxedStrategy<Vec<u8>> {
    (
        select(vec![100_000usize, (1 << 20) - 100, (1 << 20) + 1, 3 << 20]),
        select(vec!["value", "causal-metadata", "socket-address", "extra"]),
        select(vec!['x', 'é', '"', '\\']),
    )
        .prop_map(|(len, field, ch)| {
            let s: String = std::iter::repeat_n(ch, len).collect();
            let mut map = serde_json::Map::new();
            map.insert("value".into(), json!(1));
            map.insert("causal-metadata".into(), json!(""));
            map.insert(field.into(), Value::String(s));
            serde_json::to_vec(&Value::Object(map)).expect("serialize")
        })
        .boxed()
}

/// Bodies naming a field twice.
fn duplicate_body() -> BoxedStrategy<Vec<u8>> {
    select(vec![
        r#"{"value":1,"value":2,"causal-metadata":""}"#,
        r#"{"value":1,"causal-metadata":"","causal-metadata":{}}"#,
        r#"{"value":null,"value":"x"}"#,
        r#"{"causal-metadata":"","causal-metadata":""}"#,
        r#"{"socket-address":"nonsense","socket-address":"also nonsense"}"#,
        r#"{"socket-address":null,"socket-address":""}"#,
        r#"{"value":1,"causal-metadata":{"a#1":0,"a#1":0}}"#,
        r#"{"value":1,"causal-metadata":{"127.0.0.1:1#x":1,"127.0.0.1:1#x":0}}"#,
    ])
    .prop_map(|s| s.as_bytes().to_vec())
    .boxed()
}

/// Byte sequences that are not UTF-8 (or escapes that are no code point,
/// or a NUL byte).
pub(crate) fn bad_utf8() -> Vec<&'static [u8]> {
    vec![
        &b"\xff"[..],
        b"\xc3\x28",
        b"\xc0\x80",
        b"\xed\xa0\x80",
        b"\xf4\x90\x80\x80",
        b"\xe2\x82",
        b"\\ud800",
        b"\\udc00\\ud800",
        b"\x00",
    ]
}

/// A JSON body with invalid UTF-8 (or an invalid escape) inside a string.
/// The fields of a body a route reads (`name` is a field name of the
/// body); invalid UTF-8 in a field the route skips is fuzzed by
/// `bodies_with_invalid_utf8_are_400_and_never_applied`.
fn non_utf8_body(route: Route) -> BoxedStrategy<Vec<u8>> {
    let places = if route == Route::View {
        vec!["socket-address", "name"]
    } else {
        vec!["value", "causal-metadata", "name"]
    };
    (select(bad_utf8()), select(places))
        .prop_map(|(bad, place)| {
            let mut body = Vec::new();
            let string = |body: &mut Vec<u8>| {
                body.extend_from_slice(b"\"ab");
                body.extend_from_slice(bad);
                body.extend_from_slice(b"cd\"");
            };
            body.extend_from_slice(b"{");
            if place == "name" {
                string(&mut body);
                body.extend_from_slice(b":1,");
            }
            body.extend_from_slice(b"\"value\":");
            if place == "value" {
                string(&mut body);
            } else {
                body.extend_from_slice(b"1");
            }
            body.extend_from_slice(b",\"causal-metadata\":");
            if place == "causal-metadata" {
                string(&mut body);
            } else {
                body.extend_from_slice(b"\"\"");
            }
            if place == "socket-address" {
                body.extend_from_slice(b",\"socket-address\":");
                string(&mut body);
            }
            body.extend_from_slice(b"}");
            body
        })
        .boxed()
}

/// Every kind of hostile body.
fn hostile_body(route: Route) -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        3 => prop::collection::vec(any::<u8>(), 0..300),
        3 => (arb_fields(), any::<Index>()).prop_map(|(v, cut)| {
            let text = serde_json::to_vec(&v).expect("serialize");
            // Strictly shorter than the whole: truncated.
            text[..cut.index(text.len())].to_vec()
        }),
        2 => nested_body(),
        4 => arb_fields().prop_map(|v| serde_json::to_vec(&v).expect("serialize")),
        1 => huge_body(),
        1 => duplicate_body(),
        2 => non_utf8_body(route),
        1 => select(vec!["", " ", "\n\t ", "null", "{}", "0", "\"\"", "true", "{\"value\":"])
            .prop_map(|s| s.as_bytes().to_vec()),
    ]
    .prop_filter(
        "valid top-level arrays are fuzzed by non_object_json_bodies_are_400_and_never_applied",
        |b| !matches!(serde_json::from_slice::<Value>(b), Ok(Value::Array(_))),
    )
    .boxed()
}

/// The first byte of `body` that is not JSON whitespace.
pub(crate) fn first_byte(body: &[u8]) -> Option<u8> {
    body.iter()
        .copied()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
}

/// Parses a body as JSON: `Ok(None)` when it is nested deeper than
/// serde_json parses by default.
pub(crate) fn parse_deep(body: &[u8]) -> Result<Option<Value>, String> {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.to_string().contains("recursion limit") => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// One fuzzed body sent to a public route.
#[derive(Clone, Debug)]
pub(crate) struct BodyCase {
    pub(crate) method: &'static str,
    /// `Some(n)`: `/key-value-store/fz-body-<n>`; `None`: the view.
    pub(crate) key: Option<usize>,
    pub(crate) content_type: Option<&'static str>,
    pub(crate) body: Bytes,
}

pub(crate) fn body_case() -> impl Strategy<Value = BodyCase> {
    let target = prop_oneof![
        4 => (select(vec!["PUT", "GET", "DELETE"]), 0..4usize).prop_map(|(m, k)| (m, Some(k))),
        1 => select(vec!["PUT", "DELETE"]).prop_map(|m| (m, None)),
    ];
    target
        .prop_flat_map(|(method, key)| {
            let route = if key.is_some() {
                Route::Kv
            } else {
                Route::View
            };
            (
                Just((method, key)),
                select(vec![
                    Some("application/json"),
                    Some("application/json; charset=utf-16"),
                    Some("text/plain"),
                    Some("application/x-www-form-urlencoded"),
                    None,
                ]),
                hostile_body(route),
            )
        })
        .prop_map(|((method, key), content_type, body)| BodyCase {
            method,
            key,
            content_type,
            body: Bytes(body),
        })
}
