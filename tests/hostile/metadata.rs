//! Fuzzed causal metadata in the body, the query and the header.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::TestCaseError;
use serde_json::{json, Value};

use crate::answers::{check_raw, Route};
use crate::common::raw::{exchange, http_request, Shown};
use crate::common::{encode, kv_path, Options};
use crate::generators::arb_json;
use crate::harness::{fuzz, store_known};
use crate::{CASES_PER_BATCH, CASE_TIMEOUT, FUZZ_WAIT_MS};

/// A fuzzed counter: a non-negative integer, or JSON text that is not one.
#[derive(Clone, Debug)]
enum Counter {
    Valid(u64),
    Invalid(&'static str),
}

fn counter() -> impl Strategy<Value = Counter> {
    prop_oneof![
        3 => select(vec![0u64, 1, 2, 7, 1000, u32::MAX as u64, u64::MAX - 1, u64::MAX])
            .prop_map(Counter::Valid),
        1 => any::<u64>().prop_map(Counter::Valid),
        2 => select(vec![
            "-1", "1e300", "-1e300", "1.5", "1.0", "1e3", "18446744073709551616",
            "99999999999999999999999", "-9223372036854775808", "0.0", "\"3\"", "null",
            "true", "[1]", "{}", "\"\"",
        ])
        .prop_map(Counter::Invalid),
    ]
}

/// A replica id in a context: one of the cluster's (by index), or any text.
#[derive(Clone, Debug)]
enum Id {
    Real(usize),
    Text(String),
}

fn replica_id(replicas: usize) -> impl Strategy<Value = Id> {
    prop_oneof![
        2 => (0..replicas).prop_map(Id::Real),
        2 => "[ -~]{1,40}".prop_map(Id::Text),
        1 => "\\PC{1,30}".prop_map(Id::Text),
        1 => Just(Id::Text("127.0.0.1:1#forged".into())),
        1 => select(vec![
            String::new(),
            "x".repeat(128),
            "x".repeat(129),
            "é".repeat(64),
            "é".repeat(65),
            "a\nb".into(),
            "a\u{0}".into(),
            "\u{7f}".into(),
            "\u{85}".into(),
            " ".into(),
        ])
        .prop_map(Id::Text),
    ]
}

/// The shape of a fuzzed `causal-metadata`.
#[derive(Clone, Debug)]
enum Meta {
    /// An object of entries.
    Clock(Vec<(Id, Counter)>),
    /// The same, stringified (clients that stringify the metadata).
    Stringified(Vec<(Id, Counter)>),
    /// `n` distinct unknown replicas, each with counter 1.
    Thousands(usize),
    /// Any JSON value (wrong types, empty forms).
    Other(Value),
    /// Text that is not JSON.
    Garbage(&'static str),
}

/// Where the metadata goes.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Placement {
    Body,
    Query,
    Header,
}

#[derive(Clone, Debug)]
struct MetaCase {
    method: &'static str,
    key: usize,
    placement: Placement,
    meta: Meta,
}

fn meta_case(replicas: usize) -> impl Strategy<Value = MetaCase> {
    let entries = || prop::collection::vec((replica_id(replicas), counter()), 1..5);
    let meta = prop_oneof![
        6 => entries().prop_map(Meta::Clock),
        2 => entries().prop_map(Meta::Stringified),
        1 => select(vec![1024usize, 1025, 2000, 5000]).prop_map(Meta::Thousands),
        3 => arb_json().prop_map(Meta::Other),
        1 => select(vec!["not json", "{", "{\"a\":", "[1,", "nul", "{}}"]).prop_map(Meta::Garbage),
    ];
    (
        select(vec!["PUT", "GET", "DELETE"]),
        0..4usize,
        select(vec![
            Placement::Body,
            Placement::Body,
            Placement::Query,
            Placement::Header,
        ]),
        meta,
    )
        .prop_map(|(method, key, placement, meta)| {
            // Only a GET may carry its context outside the body, and
            // thousands of entries only fit in a body.
            let placement = match (&meta, method) {
                (_, "PUT" | "DELETE") | (Meta::Thousands(_), _) => Placement::Body,
                _ => placement,
            };
            MetaCase {
                method,
                key,
                placement,
                meta,
            }
        })
}

/// What the replica may answer to a fuzzed context.
#[derive(Clone, Copy, Debug, Default)]
struct Allowed {
    /// 400 (malformed).
    bad: bool,
    /// 503 (unsatisfiable).
    unsatisfied: bool,
    /// Served (2xx, or 404 for an absent key).
    served: bool,
}

/// The metadata's JSON text and what may be answered to it.
fn render(meta: &Meta, ids: &[String]) -> (String, Allowed) {
    let entries = |list: &[(Id, Counter)]| {
        let mut map: BTreeMap<String, String> = BTreeMap::new();
        for (id, counter) in list {
            let name = match id {
                Id::Real(i) => ids[*i].clone(),
                Id::Text(t) => t.clone(),
            };
            let text = match counter {
                Counter::Valid(n) => n.to_string(),
                Counter::Invalid(t) => t.to_string(),
            };
            map.insert(name, text);
        }
        let mut allowed = Allowed::default();
        let mut malformed = false;
        let mut maybe_malformed = false;
        let mut unsatisfied = false;
        let mut maybe_unsatisfied = false;
        for (name, text) in &map {
            let counter: Option<u64> = text.parse().ok();
            let id_bad = name.is_empty() || name.len() > 128;
            if id_bad || counter.is_none() {
                malformed = true;
                continue;
            }
            // Control characters may or may not be refused.
            maybe_malformed |= name.chars().any(char::is_control);
            let n = counter.unwrap_or_default();
            if ids.contains(name) {
                if n >= 1 << 32 {
                    unsatisfied = true;
                } else if n > 0 {
                    maybe_unsatisfied = true;
                }
            } else if n > 0 {
                unsatisfied = true;
            }
        }
        if malformed {
            allowed.bad = true;
        } else {
            allowed.bad = maybe_malformed;
            allowed.unsatisfied = unsatisfied || maybe_unsatisfied;
            allowed.served = !unsatisfied;
        }
        let text = format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("{}:{v}", Value::String(k.clone())))
                .collect::<Vec<_>>()
                .join(",")
        );
        (text, allowed)
    };
    match meta {
        Meta::Clock(list) => entries(list),
        Meta::Stringified(list) => {
            let (text, allowed) = entries(list);
            (Value::String(text).to_string(), allowed)
        }
        Meta::Thousands(n) => {
            let map: serde_json::Map<String, Value> = (0..*n)
                .map(|i| (format!("127.0.0.{}:{}#forged", i % 250, 1 + i), json!(1)))
                .collect();
            let allowed = if *n > 1024 {
                Allowed {
                    bad: true,
                    ..Allowed::default()
                }
            } else {
                Allowed {
                    unsatisfied: true,
                    ..Allowed::default()
                }
            };
            (Value::Object(map).to_string(), allowed)
        }
        Meta::Other(v) => {
            let empty = match v {
                Value::Null => true,
                Value::String(s) => s.trim().is_empty(),
                Value::Object(m) => m.is_empty(),
                _ => false,
            };
            let allowed = match v {
                _ if empty => Allowed {
                    served: true,
                    ..Allowed::default()
                },
                // A string holding an object, an object of entries: may
                // be anything; the invariants still hold.
                Value::String(_) | Value::Object(_) => Allowed {
                    bad: true,
                    unsatisfied: true,
                    served: true,
                },
                _ => Allowed {
                    bad: true,
                    ..Allowed::default()
                },
            };
            (v.to_string(), allowed)
        }
        Meta::Garbage(g) => (
            g.to_string(),
            Allowed {
                bad: true,
                ..Allowed::default()
            },
        ),
    }
}

#[actix_web::test]
async fn fuzzed_metadata_is_400_or_503_never_worse() {
    let c = Options::default()
        .causal_wait_ms(FUZZ_WAIT_MS)
        .start(2)
        .await;
    let known = store_known(&c, 2).await;
    let mut ids = Vec::new();
    for i in 0..2 {
        let health = c.health(i).await;
        ids.push(
            health["replica"]
                .as_str()
                .expect("/health names the replica id")
                .to_string(),
        );
    }
    let addr = c.addr(0).to_string();
    let tally = fuzz(
        &c,
        &known,
        "fuzzed_metadata",
        meta_case(ids.len()),
        CASES_PER_BATCH,
        |case, tally| {
            let (text, allowed) = render(&case.meta, &ids);
            let path = kv_path(&format!("fz-meta-{}", case.key));
            let mut headers = vec![("Content-Type", "application/json")];
            let mut target = path.clone();
            let mut placement = case.placement;
            if placement == Placement::Header && !text.bytes().all(|b| (b' '..=b'~').contains(&b)) {
                // Header values must be visible ASCII; use the query.
                placement = Placement::Query;
            }
            let body = match placement {
                Placement::Body => {
                    let value = if case.method == "PUT" {
                        r#""value":1,"#
                    } else {
                        ""
                    };
                    format!(r#"{{{value}"causal-metadata":{text}}}"#)
                }
                Placement::Query => {
                    target = format!("{path}?causal-metadata={}", encode(&text));
                    String::new()
                }
                Placement::Header => {
                    headers.push(("X-Causal-Metadata", text.as_str()));
                    String::new()
                }
            };
            let request = http_request(&addr, case.method, &target, &headers, body.as_bytes());
            let started = Instant::now();
            let r = exchange(&addr, &request, CASE_TIMEOUT)
                .map_err(|e| TestCaseError::fail(format!("no answer: {e:?}")))?;
            tally.note(r.status);
            check_raw(&r, case.method, Route::Kv, true).map_err(TestCaseError::fail)?;
            let ok = match r.status {
                400 => allowed.bad,
                503 => allowed.unsatisfied,
                200 | 201 => allowed.served,
                404 => allowed.served && case.method != "PUT",
                _ => false,
            };
            if !ok {
                return Err(TestCaseError::fail(format!(
                    "metadata {} answered {r:?}; allowed {allowed:?}",
                    Shown(text.as_bytes())
                )));
            }
            if r.status == 503 {
                if started.elapsed() < Duration::from_millis(FUZZ_WAIT_MS - 20) {
                    return Err(TestCaseError::fail(format!(
                        "503 after {:?}, before CAUSAL_WAIT_MS",
                        started.elapsed()
                    )));
                }
                // SPEC: the 503 carries the context sent.
                if placement == Placement::Body {
                    let sent: Value = serde_json::from_str(&text).expect("rendered JSON");
                    if r.json().map(|b| b["causal-metadata"].clone()) != Some(sent) {
                        return Err(TestCaseError::fail(format!(
                            "503 does not echo the context sent: {r:?}"
                        )));
                    }
                }
            }
            Ok(())
        },
    )
    .await;
    for (what, range) in [
        ("successes", 200..=299),
        ("400s", 400..=400),
        ("404s", 404..=404),
        ("503s", 503..=503),
    ] {
        assert!(
            tally.count(range) > 0,
            "the fuzzed metadata must reach {what}: {tally:?}"
        );
    }
}
