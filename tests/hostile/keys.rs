//! Fuzzed keys in request targets: encodings, lengths and odd bytes.

use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::TestCaseError;
use serde_json::{json, Value};

use crate::answers::{check_raw, Route};
use crate::common::raw::{exchange, http_request};
use crate::common::{kv_path, Options, TestCluster};
use crate::harness::{assert_intact, fuzz, store_known};
use crate::{CASES_PER_BATCH, CASE_TIMEOUT, FUZZ_WAIT_MS};

/// What a fuzzed key path is.
#[derive(Clone, Debug)]
enum KeyPath {
    /// A key, percent-encoded as one segment: the decoded key is known.
    Plain(String),
    /// A raw request target after `/key-value-store/`, sent verbatim.
    Trick(String),
}

fn key_path() -> impl Strategy<Value = KeyPath> {
    let repeated = (
        select(vec!['a', 'é', '日', '🎉', '%', '/']),
        select(vec![1usize, 49, 50, 51, 10_000]),
    )
        .prop_map(|(ch, n)| std::iter::repeat_n(ch, n).collect::<String>())
        .prop_filter(
            "targets over 64 KiB are tested by keys_in_targets_over_64_kib_get_json_400",
            |key| kv_path(key).len() < MAX_TARGET,
        );
    let plain = prop_oneof![
        Just(String::new()),
        "fz[a-z0-9]{0,10}",
        "fz.{0,60}",
        repeated,
        select(vec![
            "fz ", "fz+", "fz?x=1", "fz#f", "fz/..", "fz/../..", "fz%zz"
        ])
        .prop_map(str::to_string),
    ];
    let fragment = select(vec![
        "fz",
        "x",
        "..",
        ".",
        "%2e%2e",
        "%2E%2E",
        "%2e",
        "/",
        "//",
        "a/b",
        "%2F",
        "%2f",
        "?",
        "?causal-metadata=%7B%7D",
        "%3F",
        "%3f",
        "%23",
        "%zz",
        "%ff",
        "%FF",
        "%",
        "%%",
        "%2",
        "%c3%28",
        "%e2%82",
        "%ed%a0%80",
        "%00",
        "%0a",
        "%0d%0a",
        "%20",
        "+",
        ";",
        "=",
        "&",
        "~",
        "%C3%A9",
        "%E6%97%A5",
        "%F0%9F%8E%89",
        "%22",
        "%3C",
        "%5C",
        "%252F",
        "@",
        ":",
        "!",
        "$",
        "'",
        "(",
        ")",
        "*",
        ",",
    ]);
    let trick = prop_oneof![
        3 => prop::collection::vec(fragment, 1..7).prop_map(|f| format!("fz{}", f.concat())),
        2 => prop::collection::vec(
            select(vec!["..", "%2e%2e", ".", "", "fz"]), 1..4
        ).prop_map(|f| format!("{}/", f.join("/"))),
        1 => select(vec![
            "../key-value-store/known-str",
            "%2e%2e/key-value-store/known-str",
            "%2E%2E%2Fkey-value-store%2Fknown-str",
            "./known-str",
            "/known-str",
            "known-str/",
            "known-str%2F",
            "known-str/.",
            "known-str%3F",
            "known-str%23",
            "known-str%00",
            "known%2Fslash%2F..",
            "known/slash/../known-str",
        ])
        .prop_map(str::to_string),
    ];
    prop_oneof![
        3 => plain.prop_map(KeyPath::Plain),
        3 => trick.prop_map(KeyPath::Trick),
    ]
}

#[actix_web::test]
async fn fuzzed_keys_are_decoded_safely_and_change_nothing_stored() {
    let c = Options::default()
        .causal_wait_ms(FUZZ_WAIT_MS)
        .start(1)
        .await;
    let known = store_known(&c, 1).await;
    let addr = c.addr(0).to_string();
    let strategy = (
        select(vec!["PUT", "GET", "DELETE"]),
        key_path(),
        any::<u32>(),
    );
    let tally = fuzz(
        &c,
        &known,
        "fuzzed_keys",
        strategy,
        CASES_PER_BATCH,
        |(method, path, n), tally| {
            let target = match path {
                KeyPath::Plain(key) => kv_path(key),
                KeyPath::Trick(rest) => format!("/key-value-store/{rest}"),
            };
            let body = if *method == "PUT" {
                format!(r#"{{"value":"v{n}","causal-metadata":""}}"#)
            } else {
                r#"{"causal-metadata":""}"#.to_string()
            };
            let request = http_request(
                &addr,
                method,
                &target,
                &[("Content-Type", "application/json")],
                body.as_bytes(),
            );
            let r = exchange(&addr, &request, CASE_TIMEOUT)
                .map_err(|e| TestCaseError::fail(format!("no answer: {e:?}")))?;
            // A query string may carry a context (the GET extension).
            let may_503 = *method == "GET" && target.contains("causal-metadata");
            tally.note(r.status);
            check_raw(&r, method, Route::Kv, may_503).map_err(TestCaseError::fail)?;
            if let KeyPath::Plain(key) = path {
                let chars = key.chars().count();
                let expected: &[u16] = match (*method, chars) {
                    (_, 0) => &[400],
                    (_, 51..) => &[400],
                    ("PUT", _) => &[200, 201],
                    _ => &[200, 404],
                };
                if !expected.contains(&r.status) {
                    return Err(TestCaseError::fail(format!(
                        "key of {chars} characters: expected {expected:?}: {r:?}"
                    )));
                }
                if chars > 50 && r.json().is_some_and(|b| b["error"] != "Key is too long") {
                    return Err(TestCaseError::fail(format!("not 'Key is too long': {r:?}")));
                }
            }
            // Whatever key the path named, it round-trips.
            if (200..300).contains(&r.status) && *method != "GET" {
                let get = http_request(&addr, "GET", &target, &[], b"");
                let g = exchange(&addr, &get, CASE_TIMEOUT)
                    .map_err(|e| TestCaseError::fail(format!("no answer to GET: {e:?}")))?;
                check_raw(&g, "GET", Route::Kv, false).map_err(TestCaseError::fail)?;
                let want = if *method == "PUT" {
                    (200, json!(format!("v{n}")))
                } else {
                    (404, Value::Null)
                };
                let got = (
                    g.status,
                    g.json().map(|b| b["value"].clone()).unwrap_or_default(),
                );
                if got != want {
                    return Err(TestCaseError::fail(format!(
                        "{method} {target} then GET: want {want:?}, got {g:?}"
                    )));
                }
            }
            Ok(())
        },
    )
    .await;
    assert!(
        tally.count(200..=299) > 0 && tally.count(400..=400) > 0 && tally.count(404..=404) > 0,
        "the fuzzed keys must reach successes, 400s and 404s: {tally:?}"
    );
}

/// Longest request target the fuzzed keys use (the HTTP layer refuses
/// longer ones before the application sees them).
const MAX_TARGET: usize = 65_000;

/// SPEC: a key longer than 50 characters gets `{"error":"Key is too
/// long","message":"Error in <METHOD>"}`, also when its percent-encoded
/// path is long (10,000 × '日' is 90 KB of request target).
#[actix_web::test]
#[ignore = "known limitation: actix-http answers a request head it cannot parse within its buffer (a target over ~64 KiB) with a bare 400 before the application sees it"]
async fn keys_in_targets_over_64_kib_get_json_400() {
    let c = TestCluster::start(1).await;
    let known = store_known(&c, 1).await;
    let addr = c.addr(0).to_string();
    for (ch, n) in [('日', 10_000usize), ('🎉', 10_000), ('a', 70_000)] {
        let key: String = std::iter::repeat_n(ch, n).collect();
        let target = kv_path(&key);
        assert!(target.len() > MAX_TARGET);
        for method in ["PUT", "GET", "DELETE"] {
            let body = br#"{"value":1,"causal-metadata":""}"#;
            let request = http_request(
                &addr,
                method,
                &target,
                &[("Content-Type", "application/json")],
                body,
            );
            let what = format!("{method} of a key of {n} x {ch:?} ({} bytes)", target.len());
            let r =
                exchange(&addr, &request, CASE_TIMEOUT).unwrap_or_else(|e| panic!("{what}: {e:?}"));
            check_raw(&r, method, Route::Kv, false).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(r.status, 400, "{what}: {r:?}");
            assert_eq!(
                r.json().map(|b| b["error"].clone()),
                Some(json!("Key is too long")),
                "{what}: {r:?}"
            );
        }
    }
    assert_intact(&c, &known, "keys in long targets").await;
}
