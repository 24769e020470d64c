//! Fuzzed, non-object and non-UTF-8 request bodies on every public route.

use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::TestCaseError;
use serde_json::{json, Value};

use crate::answers::{check_raw, Route};
use crate::common::raw::{exchange, http_request, Bytes, Shown};
use crate::common::{kv_path, Options};
use crate::generators::{arb_json, bad_utf8, body_case, first_byte, parse_deep};
use crate::harness::{assert_intact, fuzz, store_known};
use crate::{CASES_PER_BATCH, CASE_TIMEOUT, FUZZ_WAIT_MS};

#[actix_web::test]
async fn fuzzed_bodies_get_json_answers_and_change_nothing_stored() {
    let c = Options::default()
        .causal_wait_ms(FUZZ_WAIT_MS)
        .start(2)
        .await;
    let known = store_known(&c, 2).await;
    let addr = c.addr(0).to_string();
    let tally = fuzz(
        &c,
        &known,
        "fuzzed_bodies",
        body_case(),
        CASES_PER_BATCH,
        |case, tally| {
            let body = &case.body.0;
            let mut headers = Vec::new();
            if let Some(t) = case.content_type {
                headers.push(("Content-Type", t));
            }
            let (target, route) = match case.key {
                Some(n) => (kv_path(&format!("fz-body-{n}")), Route::Kv),
                None => ("/key-value-store-view".to_string(), Route::View),
            };
            let request = http_request(&addr, case.method, &target, &headers, body);
            let r = exchange(&addr, &request, CASE_TIMEOUT)
                .map_err(|e| TestCaseError::fail(format!("no answer: {e:?}")))?;
            let may_503 = route == Route::Kv && body.windows(15).any(|w| w == b"causal-metadata");
            tally.note(r.status);
            check_raw(&r, case.method, route, may_503).map_err(TestCaseError::fail)?;
            if route == Route::View && (200..300).contains(&r.status) {
                return Err(TestCaseError::fail(format!(
                    "a fuzzed body changed the view: {r:?}"
                )));
            }
            if !(200..300).contains(&r.status) {
                return Ok(());
            }
            // Only a blank body or a JSON object (in UTF-8) may be served;
            // escapes of lone surrogates are JSON text serde_json refuses
            // to decode, but not malformed.
            let object = first_byte(body) == Some(b'{') && std::str::from_utf8(body).is_ok();
            let sent = match parse_deep(body) {
                _ if first_byte(body).is_none() => None,
                Ok(Some(v)) if v.is_object() => Some(v),
                Ok(None) if object => None,
                Err(e) if object && e.contains("surrogate") => None,
                _ => {
                    return Err(TestCaseError::fail(format!(
                        "a body that is not a JSON object was served: {r:?}"
                    )))
                }
            };
            // A value accepted is returned exactly as sent.
            if let (Some(sent), "PUT") = (sent, case.method) {
                let get = http_request(&addr, "GET", &target, &[], b"");
                let g = exchange(&addr, &get, CASE_TIMEOUT)
                    .map_err(|e| TestCaseError::fail(format!("no answer to GET: {e:?}")))?;
                let stored = g.json().map(|b| b["value"].clone());
                if g.status != 200 || stored.as_ref() != Some(&sent["value"]) {
                    return Err(TestCaseError::fail(format!(
                        "stored value differs from the one sent: {g:?}"
                    )));
                }
            }
            Ok(())
        },
    )
    .await;
    assert!(
        tally.count(200..=299) > 0 && tally.count(400..=400) > 0,
        "the fuzzed bodies must reach both successes and 400s: {tally:?}"
    );
}

/// Top-level JSON arrays (and their nestings): what serde's derived
/// `Deserialize` takes as the positional form of a struct.
fn array_body() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        3 => prop::collection::vec(arb_json(), 0..3).prop_map(Value::Array),
        2 => (arb_json(), prop::option::of(arb_json())).prop_map(|(v, m)| {
            let mut a = vec![v];
            a.extend(m);
            Value::Array(a)
        }),
        1 => select(vec![
            json!([]),
            json!(["x"]),
            json!(["x", ""]),
            json!([null, ""]),
            json!([{"k": 1}, {}]),
            json!(["127.0.0.1:9"]),
            json!(["127.0.0.1:9", "127.0.0.1:10"]),
        ]),
    ]
    .prop_map(|v| serde_json::to_vec(&v).expect("serialize"))
    .boxed()
}

/// SPEC: bodies are JSON objects; anything else is malformed (400). A
/// top-level array must not be taken as `[value, causal-metadata]` or
/// `[socket-address]`.
#[actix_web::test]
async fn non_object_json_bodies_are_400_and_never_applied() {
    let c = Options::default()
        .causal_wait_ms(FUZZ_WAIT_MS)
        .start(1)
        .await;
    let known = store_known(&c, 1).await;
    let addr = c.addr(0).to_string();
    let send = |method: &str, target: &str, body: &[u8]| {
        let request = http_request(
            &addr,
            method,
            target,
            &[("Content-Type", "application/json")],
            body,
        );
        exchange(&addr, &request, CASE_TIMEOUT)
    };
    // The minimal inputs first.
    let view = "/key-value-store-view";
    for (method, target, body) in [
        ("PUT", kv_path("fz-array"), &br#"["x"]"#[..]),
        ("DELETE", kv_path("known-str"), b"[]"),
        ("GET", kv_path("known-str"), b"[]"),
        ("PUT", view.to_string(), br#"["127.0.0.1:9"]"#),
    ] {
        let r = send(method, &target, body)
            .unwrap_or_else(|e| panic!("{method} {target} {}: {e:?}", Shown(body)));
        assert_eq!(
            r.status,
            400,
            "{method} {target} with body {}: {r:?}",
            Shown(body)
        );
        check_raw(&r, method, Route::Kv, false).unwrap_or_else(|e| panic!("{e}"));
    }
    assert_intact(&c, &known, "minimal array bodies").await;
    let strategy = (
        prop_oneof![
            4 => (select(vec!["PUT", "GET", "DELETE"]), 0..4usize)
                .prop_map(|(m, k)| (m, Some(k))),
            1 => select(vec!["PUT", "DELETE"]).prop_map(|m| (m, None)),
        ],
        array_body().prop_map(Bytes),
    );
    fuzz(
        &c,
        &known,
        "non_object_bodies",
        strategy,
        CASES_PER_BATCH,
        |((method, key), body), tally| {
            let (target, route) = match key {
                Some(n) => (kv_path(&format!("fz-array-{n}")), Route::Kv),
                None => (view.to_string(), Route::View),
            };
            let r = send(method, &target, &body.0)
                .map_err(|e| TestCaseError::fail(format!("no answer: {e:?}")))?;
            tally.note(r.status);
            check_raw(&r, method, route, false).map_err(TestCaseError::fail)?;
            if r.status != 400 {
                return Err(TestCaseError::fail(format!(
                    "a JSON array body was not refused: {r:?}"
                )));
            }
            Ok(())
        },
    )
    .await;
}

/// SPEC: malformed JSON gets a 400. A body that is not UTF-8 is not JSON,
/// also when the bytes sit in a field the route does not read.
#[actix_web::test]
async fn bodies_with_invalid_utf8_are_400_and_never_applied() {
    let c = Options::default()
        .failure_timeout_ms(120_000)
        .start(1)
        .await;
    let known = store_known(&c, 1).await;
    let addr = c.addr(0).to_string();
    let send = |method: &str, target: &str, body: &[u8]| {
        let request = http_request(
            &addr,
            method,
            target,
            &[("Content-Type", "application/json")],
            body,
        );
        exchange(&addr, &request, CASE_TIMEOUT)
    };
    let view = "/key-value-store-view";
    // The minimal inputs first.
    for (method, target, body) in [
        (
            "PUT",
            kv_path("fz-utf8"),
            &b"{\"value\":1,\"x\":\"\xff\"}"[..],
        ),
        (
            "PUT",
            view.to_string(),
            b"{\"socket-address\":\"127.0.0.1:9\",\"x\":\"\xff\"}",
        ),
    ] {
        let r = send(method, &target, body)
            .unwrap_or_else(|e| panic!("{method} {target} {}: {e:?}", Shown(body)));
        assert_eq!(
            r.status,
            400,
            "{method} {target} with body {}: {r:?}",
            Shown(body)
        );
    }
    assert_intact(&c, &known, "minimal invalid UTF-8 bodies").await;
    // Every non-UTF-8 sequence (not mere escapes), in a skipped field's
    // value or name, or deeper, of a request that would otherwise succeed.
    let raw_bad: Vec<&[u8]> = bad_utf8()
        .into_iter()
        .filter(|b| std::str::from_utf8(b).is_err())
        .collect();
    let strategy = (
        select(vec!["PUT", "GET", "DELETE", "VIEW-PUT"]),
        select(raw_bad),
        select(vec!["value", "name", "nested"]),
    );
    fuzz(
        &c,
        &known,
        "invalid_utf8_bodies",
        strategy,
        CASES_PER_BATCH / 5,
        |(method, bad, place), tally| {
            let mut extra = Vec::new();
            match *place {
                "value" => {
                    extra.extend_from_slice(b"\"x\":\"a");
                    extra.extend_from_slice(bad);
                    extra.extend_from_slice(b"\"");
                }
                "name" => {
                    extra.extend_from_slice(b"\"x");
                    extra.extend_from_slice(bad);
                    extra.extend_from_slice(b"\":1");
                }
                _ => {
                    extra.extend_from_slice(b"\"x\":[{\"y\":\"");
                    extra.extend_from_slice(bad);
                    extra.extend_from_slice(b"\"}]");
                }
            }
            let (http_method, target, route, fields): (&str, String, Route, &[u8]) = match *method {
                "PUT" => (
                    "PUT",
                    kv_path("fz-utf8"),
                    Route::Kv,
                    br#""value":1,"causal-metadata":"","#,
                ),
                "VIEW-PUT" => (
                    "PUT",
                    view.to_string(),
                    Route::View,
                    br#""socket-address":"127.0.0.1:9","#,
                ),
                m => (
                    m,
                    kv_path("fz-utf8"),
                    Route::Kv,
                    br#""causal-metadata":"","#,
                ),
            };
            let mut body = b"{".to_vec();
            body.extend_from_slice(fields);
            body.extend_from_slice(&extra);
            body.extend_from_slice(b"}");
            let r = send(http_method, &target, &body)
                .map_err(|e| TestCaseError::fail(format!("no answer: {e:?}")))?;
            tally.note(r.status);
            check_raw(&r, http_method, route, false).map_err(TestCaseError::fail)?;
            if r.status != 400 {
                return Err(TestCaseError::fail(format!(
                    "a body with invalid UTF-8 was served: {r:?}"
                )));
            }
            Ok(())
        },
    )
    .await;
}
