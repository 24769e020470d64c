//! End-to-end tests of the REST API against real replica processes: every
//! row of SPEC's key-value and view tables, the error cases, the GET
//! context extensions, the cluster token and the start-up configuration.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use awc::http::Method;
use futures_util::future::{join_all, FutureExt, LocalBoxFuture};
use serde_json::{json, Value};

use common::{encode, kv_path, timed, Body, Options, Reply, TestCluster};

/// The sorted field names of a JSON object body.
fn fields(reply: &Reply) -> Vec<String> {
    let mut names: Vec<String> = reply
        .body
        .as_object()
        .unwrap_or_else(|| panic!("body is not an object: {reply:?}"))
        .keys()
        .cloned()
        .collect();
    names.sort();
    names
}

/// Asserts a successful write's reply: status, exact field set, message,
/// and a context that is a non-empty object; returns the context.
fn assert_write(reply: &Reply, status: u16, message: &str) -> Value {
    reply.assert_json();
    assert_eq!(reply.status, status, "{reply:?}");
    assert_eq!(fields(reply), ["causal-metadata", "message"], "{reply:?}");
    assert_eq!(reply.body["message"], json!(message), "{reply:?}");
    let ctx = reply.ctx();
    assert!(
        ctx.as_object().is_some_and(|o| !o.is_empty()),
        "a write must return a non-empty context object: {reply:?}"
    );
    ctx
}

/// Asserts a 400 with `{"error": <string>, "message": "Error in <method>"}`.
fn assert_bad_request(reply: &Reply, method: &str) {
    reply.assert_json();
    assert_eq!(reply.status, 400, "{reply:?}");
    assert_eq!(fields(reply), ["error", "message"], "{reply:?}");
    assert_eq!(
        reply.body["message"],
        json!(format!("Error in {method}")),
        "{reply:?}"
    );
    assert!(
        reply.body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "error must be a non-empty string: {reply:?}"
    );
}

fn not_found(method: &str, ctx: &Value) -> Value {
    json!({
        "doesExist": false,
        "error": "Key does not exist",
        "message": format!("Error in {method}"),
        "causal-metadata": ctx,
    })
}

// ----- the key-value table ------------------------------------------------------

#[actix_web::test]
async fn put_get_delete_follow_the_spec_table() {
    let c = TestCluster::start(1).await;

    let r = c.put(0, "k1", json!("v1"), &json!("")).await;
    let m1 = assert_write(&r, 201, "Added successfully");

    let r = c.put(0, "k1", json!("v2"), &m1).await;
    let m2 = assert_write(&r, 200, "Updated successfully");

    // A read that learns nothing new echoes the context it was sent.
    let r = c.get(0, "k1", &m2).await;
    r.assert_json();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.body,
        json!({"message": "Retrieved successfully", "causal-metadata": m2, "value": "v2"})
    );

    let r = c.delete(0, "k1", &m2).await;
    let m3 = assert_write(&r, 200, "Deleted successfully");

    let r = c.get(0, "k1", &m3).await;
    r.assert_json();
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(r.body, not_found("GET", &m3));

    let r = c.delete(0, "k1", &m3).await;
    r.assert_json();
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(r.body, not_found("DELETE", &m3));

    // A deleted key is absent: putting it again adds it.
    let r = c.put(0, "k1", json!("v3"), &m3).await;
    let m4 = assert_write(&r, 201, "Added successfully");
    let r = c.get(0, "k1", &m4).await;
    assert_eq!(
        r.body,
        json!({"message": "Retrieved successfully", "causal-metadata": m4, "value": "v3"})
    );

    // Keys that never existed, with the empty context: echoed exactly.
    let r = c.get(0, "never", &json!("")).await;
    r.assert_json();
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(r.body, not_found("GET", &json!("")));
    let r = c.delete(0, "never", &json!("")).await;
    r.assert_json();
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(r.body, not_found("DELETE", &json!("")));

    let health = c.health(0).await;
    assert_eq!(health["synced"], json!(true), "{health}");
}

#[actix_web::test]
async fn every_no_context_form_is_accepted_and_echoed() {
    let c = TestCluster::start(1).await;
    for (n, ctx) in [json!(""), json!(null), json!({})].into_iter().enumerate() {
        let key = format!("nc{n}");
        let r = c.put(0, &key, json!(n), &ctx).await;
        assert_write(&r, 201, "Added successfully");
        let r = c.put(0, &key, json!(n + 10), &ctx).await;
        assert_write(&r, 200, "Updated successfully");
        let r = c.get(0, &format!("absent{n}"), &ctx).await;
        assert_eq!(r.status, 404, "{r:?}");
        let r2 = c.delete(0, &format!("absent{n}"), &ctx).await;
        assert_eq!(r2.status, 404, "{r2:?}");
        if ctx.is_null() {
            // Echoing null is checked by `null_context_is_echoed_as_null`.
            assert_eq!(
                fields(&r),
                ["causal-metadata", "doesExist", "error", "message"]
            );
            continue;
        }
        assert_eq!(
            r.body,
            not_found("GET", &ctx),
            "context {ctx} must be echoed"
        );
        assert_eq!(
            r2.body,
            not_found("DELETE", &ctx),
            "context {ctx} must be echoed"
        );
    }
    // No causal-metadata field at all.
    let path = kv_path("nofield");
    let r = c
        .request(0, Method::PUT, &path, &[], Body::Json(json!({"value": 1})))
        .await;
    assert_write(&r, 201, "Added successfully");
    let r = c
        .request(0, Method::GET, &path, &[], Body::Json(json!({})))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["value"], json!(1));
    assert!(r.body.get("causal-metadata").is_some(), "{r:?}");
    // A GET with no body at all.
    let r = c.request(0, Method::GET, &path, &[], Body::None).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["value"], json!(1));
    assert_eq!(r.body["message"], json!("Retrieved successfully"));
    let r = c
        .request(0, Method::GET, &kv_path("absent-nobody"), &[], Body::None)
        .await;
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(r.body["error"], json!("Key does not exist"));
    assert_eq!(r.body["doesExist"], json!(false));
    assert!(r.body.get("causal-metadata").is_some(), "{r:?}");
}

/// SPEC: a read that adds nothing new carries exactly the context sent;
/// `null` is one of the "no context" forms a client may send.
#[actix_web::test]
async fn null_context_is_echoed_as_null() {
    let c = TestCluster::start(1).await;
    let r = c.get(0, "absent", &json!(null)).await;
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(r.body, not_found("GET", &json!(null)));
    let r = c.delete(0, "absent", &json!(null)).await;
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(r.body, not_found("DELETE", &json!(null)));
}

#[actix_web::test]
async fn put_without_a_value_is_rejected() {
    let c = TestCluster::start(1).await;
    let expected = json!({"error": "Value is missing", "message": "Error in PUT"});
    let path = kv_path("novalue");
    for body in [
        Body::Json(json!({"causal-metadata": ""})),
        Body::Json(json!({"value": null, "causal-metadata": ""})),
        Body::Json(json!({})),
        Body::None,
    ] {
        let r = c.request(0, Method::PUT, &path, &[], body).await;
        r.assert_json();
        assert_eq!(r.status, 400, "{r:?}");
        assert_eq!(r.body, expected);
    }
    let r = c.get(0, "novalue", &json!("")).await;
    assert_eq!(r.status, 404, "a rejected PUT must not write: {r:?}");
}

#[actix_web::test]
async fn values_of_every_json_type_are_returned_unchanged() {
    let c = TestCluster::start(1).await;
    let values = [
        json!("a string"),
        json!(""),
        json!("unicode: é 日本 🎉 \u{0} \"quoted\" \\ /"),
        json!(0),
        json!(42),
        json!(-17),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(3.25),
        json!(-0.5),
        json!(1.0e100),
        json!(true),
        json!(false),
        json!([]),
        json!([1, "two", [3], {"four": 4}, false]),
        json!({}),
        json!({"nested": {"deep": [1, 2, {"x": null}]}, "n": 1.5, "s": "t"}),
    ];
    let mut ctx = json!("");
    for (n, value) in values.iter().enumerate() {
        let key = format!("type{n}");
        let r = c.put(0, &key, value.clone(), &ctx).await;
        ctx = assert_write(&r, 201, "Added successfully");
        let r = c.get(0, &key, &ctx).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(
            r.body["value"], *value,
            "value {value} came back as {}",
            r.text
        );
        ctx = r.ctx();
    }
    // A value may change type on update.
    let r = c.put(0, "type0", json!({"now": "an object"}), &ctx).await;
    ctx = assert_write(&r, 200, "Updated successfully");
    let r = c.get(0, "type0", &ctx).await;
    assert_eq!(r.body["value"], json!({"now": "an object"}));
    // Every value is still there without context.
    for (n, value) in values.iter().enumerate() {
        let r = c.get(0, &format!("type{n}"), &json!("")).await;
        assert_eq!(r.status, 200, "{r:?}");
        if n != 0 {
            assert_eq!(r.body["value"], *value);
        }
    }
}

/// JSON numbers beyond 64-bit integers and doubles are valid values;
/// "a value is returned exactly as stored" means their digits survive.
#[actix_web::test]
async fn large_numbers_are_returned_exactly() {
    let c = TestCluster::start(1).await;
    for (n, text) in [
        "123456789012345678901234567890",
        "-98765432109876543210",
        "3.14159265358979323846264338327950288",
    ]
    .iter()
    .enumerate()
    {
        let key = format!("num{n}");
        let body = format!(r#"{{"value": {text}, "causal-metadata": ""}}"#);
        let r = c
            .request(
                0,
                Method::PUT,
                &kv_path(&key),
                &[],
                Body::Raw(body.into_bytes()),
            )
            .await;
        assert_write(&r, 201, "Added successfully");
        let r = c.get(0, &key, &json!("")).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert!(
            r.text.contains(&format!(r#""value":{text}"#)),
            "value {text} was not returned exactly: {}",
            r.text
        );
    }
}

#[actix_web::test]
async fn key_length_limit_counts_characters() {
    let c = TestCluster::start(1).await;
    let too_long = json!({"error": "Key is too long", "message": "Error in PUT"});
    let mut ctx = json!("");
    for ch in ['a', 'é', '日', '🎉'] {
        let ok: String = std::iter::repeat_n(ch, 50).collect();
        let long: String = std::iter::repeat_n(ch, 51).collect();
        let r = c.put(0, &ok, json!(ch.to_string()), &ctx).await;
        ctx = assert_write(&r, 201, "Added successfully");
        let r = c.get(0, &ok, &ctx).await;
        assert_eq!(r.status, 200, "50 x {ch:?}: {r:?}");
        assert_eq!(r.body["value"], json!(ch.to_string()));
        let r = c.put(0, &long, json!("x"), &ctx).await;
        r.assert_json();
        assert_eq!(r.status, 400, "51 x {ch:?}: {r:?}");
        assert_eq!(r.body, too_long);
        let r = c.get(0, &long, &json!("")).await;
        assert_ne!(
            r.status, 200,
            "51 x {ch:?} must not have been stored: {r:?}"
        );
    }
    // Percent-encoded characters count once decoded: 48 + " é" = 50.
    let key = format!("{} é", "k".repeat(48));
    assert_eq!(key.chars().count(), 50);
    let r = c.put(0, &key, json!(1), &json!("")).await;
    assert_write(&r, 201, "Added successfully");
}

#[actix_web::test]
async fn key_length_is_checked_before_the_value() {
    let c = TestCluster::start(1).await;
    let too_long = json!({"error": "Key is too long", "message": "Error in PUT"});
    let path = kv_path(&"x".repeat(51));
    for body in [
        Body::Json(json!({"causal-metadata": ""})),
        Body::Json(json!({"value": null, "causal-metadata": ""})),
        Body::None,
    ] {
        let r = c.request(0, Method::PUT, &path, &[], body).await;
        assert_eq!(r.status, 400, "{r:?}");
        assert_eq!(r.body, too_long);
    }
}

#[actix_web::test]
async fn percent_encoded_keys_are_decoded_once() {
    let c = TestCluster::start(1).await;
    let keys = [
        "a/b",
        "a b",
        "a%2Fb",
        "100%",
        "a+b",
        "q?x=1",
        "h#f",
        "ключ",
        "日本語",
        "🔑",
        "é",
    ];
    let mut ctx = json!("");
    for (n, key) in keys.iter().enumerate() {
        let r = c.put(0, key, json!(n), &ctx).await;
        ctx = assert_write(&r, 201, "Added successfully");
    }
    for (n, key) in keys.iter().enumerate() {
        let r = c.get(0, key, &json!("")).await;
        assert_eq!(r.status, 200, "key {key:?}: {r:?}");
        assert_eq!(
            r.body["value"],
            json!(n),
            "key {key:?} holds another key's value"
        );
    }
    // Hand-written encodings of the same keys (lower-case hex too).
    for (path, n) in [
        ("/key-value-store/a%2fb", 0),
        ("/key-value-store/a%20b", 1),
        ("/key-value-store/a%252Fb", 2),
        ("/key-value-store/100%25", 3),
        ("/key-value-store/%D0%BA%D0%BB%D1%8E%D1%87", 7),
        ("/key-value-store/%c3%a9", 10),
    ] {
        let r = c.request(0, Method::GET, path, &[], Body::None).await;
        assert_eq!(r.status, 200, "{path}: {r:?}");
        assert_eq!(r.body["value"], json!(n), "{path}");
    }
    let r = c.delete(0, "a/b", &ctx).await;
    assert_write(&r, 200, "Deleted successfully");
    let r = c.get(0, "a%2Fb", &json!("")).await;
    assert_eq!(r.status, 200, "deleting a/b must not delete a%2Fb: {r:?}");
}

#[actix_web::test]
async fn malformed_json_bodies_are_400() {
    let c = TestCluster::start(1).await;
    let path = kv_path("mj");
    for bytes in [
        &b"{\"value\": "[..],
        b"{\"value\": 1,}",
        b"not json",
        b"{\"value\": 1} trailing",
        b"[1, 2]",
        b"\"a string\"",
        b"\xff\xfe",
    ] {
        for method in [Method::PUT, Method::GET, Method::DELETE] {
            let r = c
                .request(0, method.clone(), &path, &[], Body::Raw(bytes.to_vec()))
                .await;
            assert_bad_request(&r, method.as_str());
        }
    }
    let r = c.get(0, "mj", &json!("")).await;
    assert_eq!(r.status, 404, "{r:?}");
}

#[actix_web::test]
async fn malformed_metadata_is_400() {
    let c = TestCluster::start(1).await;
    let path = kv_path("mm");
    for bad in [
        json!(5),
        json!(-1),
        json!(true),
        json!([1, 2]),
        json!([]),
        json!({"someone": -1}),
        json!({"someone": "3"}),
        json!({"someone": 1.5}),
        json!({"someone": [1]}),
        json!({"": 1}),
        json!("not json"),
    ] {
        let r = c
            .request(
                0,
                Method::PUT,
                &path,
                &[],
                Body::Json(json!({"value": 1, "causal-metadata": bad})),
            )
            .await;
        assert_bad_request(&r, "PUT");
        for method in [Method::GET, Method::DELETE] {
            let r = c
                .request(
                    0,
                    method.clone(),
                    &path,
                    &[],
                    Body::Json(json!({"causal-metadata": bad})),
                )
                .await;
            assert_bad_request(&r, method.as_str());
        }
    }
    let r = c.get(0, "mm", &json!("")).await;
    assert_eq!(r.status, 404, "a rejected PUT must not write: {r:?}");
}

#[actix_web::test]
async fn bodies_over_the_limit_are_400() {
    const LIMIT: usize = 4096;
    let c = Options::default().max_body_bytes(LIMIT).start(1).await;
    let body_of = |len: usize| {
        let frame = r#"{"value":"","causal-metadata":""}"#;
        let fill = "x".repeat(len - frame.len());
        let body = format!(r#"{{"value":"{fill}","causal-metadata":""}}"#);
        assert_eq!(body.len(), len);
        body.into_bytes()
    };
    let path = kv_path("big");
    let r = c
        .request(0, Method::PUT, &path, &[], Body::Raw(body_of(LIMIT)))
        .await;
    assert_write(&r, 201, "Added successfully");
    let r = c
        .request(0, Method::PUT, &path, &[], Body::Raw(body_of(LIMIT + 1)))
        .await;
    assert_bad_request(&r, "PUT");
    let r = c
        .request(0, Method::PUT, &path, &[], Body::Raw(body_of(3 * LIMIT)))
        .await;
    assert_bad_request(&r, "PUT");
    // The value stored is still the one that fit.
    let r = c.get(0, "big", &json!("")).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["value"].as_str().map(str::len), Some(LIMIT - 33));
    // GET and DELETE bodies are limited too.
    let padding = "p".repeat(2 * LIMIT);
    for method in [Method::GET, Method::DELETE] {
        let body = Body::Json(json!({"causal-metadata": "", "padding": padding}));
        let r = c.request(0, method.clone(), &path, &[], body).await;
        assert_bad_request(&r, method.as_str());
    }
}

#[actix_web::test]
async fn default_body_limit_is_one_mebibyte() {
    let c = TestCluster::start(1).await;
    let value = "v".repeat(1_000_000);
    let r = c.put(0, "large", json!(value), &json!("")).await;
    let ctx = assert_write(&r, 201, "Added successfully");
    let r = c.get(0, "large", &ctx).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["value"].as_str().map(str::len), Some(1_000_000));
    let r = c
        .put(0, "too-large", json!("v".repeat((1 << 20) + 1)), &json!(""))
        .await;
    assert_bad_request(&r, "PUT");
}

#[actix_web::test]
async fn read_context_is_minimal_and_deterministic() {
    let c = TestCluster::start(1).await;
    let r = c.put(0, "x", json!("vx"), &json!("")).await;
    let mx = assert_write(&r, 201, "Added successfully");
    let r = c.put(0, "y", json!("vy"), &json!("")).await;
    let my = assert_write(&r, 201, "Added successfully");
    assert_ne!(mx, my, "different writes must give different contexts");
    // A fresh client reading x learns x (and its dependencies, none), not
    // the later write y: the same knowledge as the writer of x had.
    let r = c.get(0, "x", &json!("")).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.ctx(), mx, "reading x must teach exactly x");
    let again = c.get(0, "x", &json!("")).await;
    assert_eq!(
        again.text, r.text,
        "the same knowledge must print the same way"
    );
    // Reading y with x's context adds y: not an echo any more.
    let r = c.get(0, "y", &mx).await;
    assert_eq!(r.status, 200, "{r:?}");
    let mxy = r.ctx();
    assert!(mxy.is_object(), "{r:?}");
    assert_ne!(mxy, mx);
    // ...and that merged context is now echoed by reads of either key.
    for key in ["x", "y"] {
        let r = c.get(0, key, &mxy).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(
            r.ctx(),
            mxy,
            "reading {key} with a context covering it must echo it"
        );
    }
    // A write under a context covering y depends on y: reading it teaches
    // a context under which y is readable as well.
    let r = c.put(0, "z", json!("vz"), &mxy).await;
    let mz = assert_write(&r, 201, "Added successfully");
    let r = c.get(0, "z", &json!("")).await;
    let learned = r.ctx();
    assert_eq!(
        learned, mz,
        "reading z teaches z and its dependencies, as its writer knew"
    );
}

// ----- the GET context extensions and the causal wait -------------------------------

#[actix_web::test]
async fn get_context_in_query_string_or_header() {
    let c = TestCluster::start(1).await;
    let r = c.put(0, "qk", json!("qv"), &json!("")).await;
    let m1 = assert_write(&r, 201, "Added successfully");
    let text = serde_json::to_string(&m1).unwrap();
    let expected =
        json!({"message": "Retrieved successfully", "causal-metadata": m1, "value": "qv"});

    let path = format!("{}?causal-metadata={}", kv_path("qk"), encode(&text));
    let r = c.request(0, Method::GET, &path, &[], Body::None).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, expected, "query-string context must be echoed");

    let r = c
        .request(
            0,
            Method::GET,
            &kv_path("qk"),
            &[("X-Causal-Metadata", &text)],
            Body::None,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, expected, "header context must be echoed");

    // Malformed metadata there is a 400 as well.
    let path = format!("{}?causal-metadata=5", kv_path("qk"));
    let r = c.request(0, Method::GET, &path, &[], Body::None).await;
    assert_bad_request(&r, "GET");
    let r = c
        .request(
            0,
            Method::GET,
            &kv_path("qk"),
            &[("X-Causal-Metadata", "[1]")],
            Body::None,
        )
        .await;
    assert_bad_request(&r, "GET");
}

#[actix_web::test]
async fn unsatisfiable_context_is_503_after_the_wait_without_blocking_others() {
    const WAIT_MS: u64 = 1500;
    // One worker thread: waiting requests must not hold it.
    let c = Options::default()
        .causal_wait_ms(WAIT_MS)
        .workers(1)
        .start(1)
        .await;
    let id = c.health(0).await["replica"]
        .as_str()
        .expect("health names the replica id")
        .to_string();
    let unknown = json!({"127.0.0.1:1#forged": 1});
    let future_write = json!({ id: 1000 });
    let unsatisfied = |method: &str, ctx: &Value| {
        json!({
            "error": "Causal dependencies not satisfied",
            "message": format!("Error in {method}"),
            "causal-metadata": ctx,
        })
    };

    let text = serde_json::to_string(&unknown).unwrap();
    let query_path = format!("{}?causal-metadata={}", kv_path("fk"), encode(&text));
    let c = &c;
    let mut forged: Vec<LocalBoxFuture<'_, (&str, Value, Reply, Duration)>> = Vec::new();
    for ctx in [unknown.clone(), future_write.clone()] {
        forged.push(
            async move {
                let (r, t) = timed(c.get(0, "fk", &ctx)).await;
                ("GET", ctx, r, t)
            }
            .boxed_local(),
        );
    }
    let ctx = unknown.clone();
    forged.push(
        async move {
            let (r, t) = timed(c.request(0, Method::GET, &query_path, &[], Body::None)).await;
            ("GET", ctx, r, t)
        }
        .boxed_local(),
    );
    let ctx = unknown.clone();
    forged.push(
        async move {
            let headers = [("X-Causal-Metadata", text.as_str())];
            let path = kv_path("fk");
            let (r, t) = timed(c.request(0, Method::GET, &path, &headers, Body::None)).await;
            ("GET", ctx, r, t)
        }
        .boxed_local(),
    );
    let ctx = unknown.clone();
    forged.push(
        async move {
            let (r, t) = timed(c.put(0, "fk", json!("never"), &ctx)).await;
            ("PUT", ctx, r, t)
        }
        .boxed_local(),
    );
    let ctx = unknown.clone();
    forged.push(
        async move {
            let (r, t) = timed(c.delete(0, "other", &ctx)).await;
            ("DELETE", ctx, r, t)
        }
        .boxed_local(),
    );

    // Meanwhile another client is served: all its rounds are done while
    // every waiting request is still waiting (they wait CAUSAL_WAIT_MS), so
    // waiting requests do not hold the one worker.
    let answered = &std::cell::Cell::new(0usize);
    let forged = forged.into_iter().map(|request| async move {
        let out = request.await;
        answered.set(answered.get() + 1);
        out
    });
    let others = async {
        let mut ctx = json!("");
        let mut slowest = Duration::ZERO;
        for n in 0..5 {
            let (r, t) = timed(c.put(0, "other", json!(n), &ctx)).await;
            assert!(r.status == 200 || r.status == 201, "{r:?}");
            ctx = r.ctx();
            slowest = slowest.max(t);
            let (r, t) = timed(c.get(0, "other", &ctx)).await;
            assert_eq!(r.status, 200, "{r:?}");
            assert_eq!(r.body["value"], json!(n));
            slowest = slowest.max(t);
        }
        (slowest, answered.get())
    };
    let (results, (slowest, answered_before)) =
        futures_util::future::join(join_all(forged), others).await;

    eprintln!("the other client's slowest request took {slowest:?}");
    assert_eq!(
        answered_before, 0,
        "the other client finished only after {answered_before} waiting requests were answered"
    );
    for (method, ctx, r, elapsed) in results {
        r.assert_json();
        assert_eq!(r.status, 503, "{method} with {ctx}: {r:?}");
        assert_eq!(r.body, unsatisfied(method, &ctx));
        assert!(
            elapsed >= Duration::from_millis(WAIT_MS - 10),
            "{method} answered 503 after {elapsed:?}, before CAUSAL_WAIT_MS"
        );
        assert!(
            elapsed < Duration::from_millis(WAIT_MS) + Duration::from_secs(8),
            "{method} answered 503 only after {elapsed:?}"
        );
    }
    let r = c.get(0, "fk", &json!("")).await;
    assert_eq!(r.status, 404, "a PUT answered 503 must not write: {r:?}");
}

#[actix_web::test]
async fn unknown_endpoints_are_404_json() {
    let c = TestCluster::start(1).await;
    for (method, path) in [
        (Method::GET, "/nope"),
        (Method::PUT, "/key-value-store-views"),
        (Method::GET, "/"),
        (Method::DELETE, "/key-value/x"),
    ] {
        let r = c.request(0, method.clone(), path, &[], Body::None).await;
        r.assert_json();
        assert_eq!(r.status, 404, "{method} {path}: {r:?}");
        assert!(r.body["error"].is_string(), "{r:?}");
        assert_eq!(
            r.body["message"],
            json!(format!("Error in {method}")),
            "{r:?}"
        );
    }
}

// ----- the view table -------------------------------------------------------------

#[actix_web::test]
async fn view_get_lists_every_member_in_order() {
    let c = TestCluster::start(3).await;
    let expected = c.expected_view(&[0, 1, 2]);
    let mut ports: Vec<u16> = (0..3)
        .map(|i| c.addr(i).rsplit_once(':').unwrap().1.parse().unwrap())
        .collect();
    ports.sort_unstable();
    let by_port: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    assert_eq!(expected, by_port.join(","));
    for i in 0..3 {
        let r = c
            .request(i, Method::GET, "/key-value-store-view", &[], Body::None)
            .await;
        r.assert_json();
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(
            r.body,
            json!({"message": "View retrieved successfully", "view": expected})
        );
    }
}

#[actix_web::test]
async fn view_is_ordered_by_ip_numerically_then_port() {
    // Members that never answer stay in the view for the failure timeout.
    let c = Options::default()
        .failure_timeout_ms(120_000)
        .start(1)
        .await;
    for address in [
        "127.0.0.10:8085",
        "127.0.0.2:10000",
        "127.0.0.2:9000",
        "127.0.0.100:1",
        "9.0.0.1:8085",
    ] {
        let r = c
            .request(
                0,
                Method::PUT,
                "/key-value-store-view",
                &[],
                Body::Json(json!({"socket-address": address})),
            )
            .await;
        assert_eq!(r.status, 201, "{address}: {r:?}");
    }
    let expected = format!(
        "9.0.0.1:8085,{},127.0.0.2:9000,127.0.0.2:10000,127.0.0.10:8085,127.0.0.100:1",
        c.addr(0)
    );
    assert_eq!(c.view(0).await, expected);
}

#[actix_web::test]
async fn view_put_and_delete_follow_the_spec_table() {
    let c = Options::default()
        .failure_timeout_ms(120_000)
        .start(1)
        .await;
    let me = c.addr(0).to_string();
    let other = "127.0.0.7:8085";
    let send = |method: Method, address: &str| {
        let body = Body::Json(json!({"socket-address": address}));
        let c = &c;
        async move {
            let r = c
                .request(0, method, "/key-value-store-view", &[], body)
                .await;
            r.assert_json();
            r
        }
    };

    let r = send(Method::PUT, other).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(
        r.body,
        json!({"message": "Replica added successfully to the view"})
    );
    assert_eq!(c.view(0).await, format!("{me},{other}"));

    let r = send(Method::PUT, other).await;
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(
        r.body,
        json!({"error": "Socket address already exists in the view", "message": "Error in PUT"})
    );
    let r = send(Method::PUT, &me).await;
    assert_eq!(r.status, 404, "the replica itself is a member: {r:?}");
    assert_eq!(
        r.body,
        json!({"error": "Socket address already exists in the view", "message": "Error in PUT"})
    );

    let r = send(Method::DELETE, other).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.body,
        json!({"message": "Replica deleted successfully from the view"})
    );
    assert_eq!(c.view(0).await, me);

    let r = send(Method::DELETE, other).await;
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(
        r.body,
        json!({"error": "Socket address does not exist in the view", "message": "Error in DELETE"})
    );
    let r = send(Method::DELETE, "127.0.0.8:8085").await;
    assert_eq!(r.status, 404, "{r:?}");

    // Removed, then added back: a member again.
    let r = send(Method::PUT, other).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(c.view(0).await, format!("{me},{other}"));
}

#[actix_web::test]
async fn view_requests_without_a_valid_address_are_400() {
    let c = Options::default()
        .failure_timeout_ms(120_000)
        .start(1)
        .await;
    let before = c.view(0).await;
    for method in [Method::PUT, Method::DELETE] {
        let missing =
            json!({"error": "Socket address is missing", "message": format!("Error in {method}")});
        for body in [
            Body::None,
            Body::Json(json!({})),
            Body::Json(json!({"socket-address": null})),
            Body::Json(json!({"socket-address": ""})),
            Body::Json(json!({"address": "127.0.0.7:8085"})),
        ] {
            let r = c
                .request(0, method.clone(), "/key-value-store-view", &[], body)
                .await;
            r.assert_json();
            assert_eq!(r.status, 400, "{method}: {r:?}");
            assert_eq!(r.body, missing, "{method}");
        }
        for bad in [
            json!("nonsense"),
            json!("127.0.0.1"),
            json!("127.0.0.1:"),
            json!("127.0.0.1:99999"),
            json!("127.0.0.1:port"),
            json!(8085),
            json!(["127.0.0.7:8085"]),
            json!({"ip": "127.0.0.7"}),
        ] {
            let r = c
                .request(
                    0,
                    method.clone(),
                    "/key-value-store-view",
                    &[],
                    Body::Json(json!({"socket-address": bad})),
                )
                .await;
            assert_bad_request(&r, method.as_str());
        }
        let r = c
            .request(
                0,
                method.clone(),
                "/key-value-store-view",
                &[],
                Body::Raw(b"{\"socket-address\": ".to_vec()),
            )
            .await;
        assert_bad_request(&r, method.as_str());
    }
    assert_eq!(
        c.view(0).await,
        before,
        "rejected requests must not change the view"
    );
}

// ----- the cluster token -----------------------------------------------------------

fn forged_member() -> causalkv::replica::Member {
    use causalkv::address::SocketAddress;
    use causalkv::causal::ReplicaId;
    causalkv::replica::Member {
        address: SocketAddress::parse("127.0.0.1:1").unwrap(),
        id: ReplicaId::new("127.0.0.1:1", "forged"),
    }
}

fn forged_replicate(key: &str) -> Value {
    use causalkv::causal::{Dot, VectorClock};
    use causalkv::replica::{Request, Write};
    use causalkv::store::{Key, Value as Stored};
    let from = forged_member();
    let write = Write {
        key: Key::parse(key).unwrap(),
        value: Stored::from_json("\"planted\"").unwrap(),
        dot: Dot::new(from.id.clone(), 1),
        deps: VectorClock::new(),
        lamport: 1,
    };
    serde_json::to_value(Request::Replicate {
        from,
        writes: vec![write],
    })
    .unwrap()
}

#[actix_web::test]
async fn cluster_token_guards_the_internal_endpoints() {
    const TOKEN: &str = "s3cret-token";
    let c = Options::default().token(TOKEN).start(2).await;
    let header = causalkv::transport::TOKEN_HEADER;
    let prefix = causalkv::transport::INTERNAL_PREFIX;

    // The replicas themselves talk fine with the token.
    let r = c.put(0, "tk", json!("tv"), &json!("")).await;
    let ctx = assert_write(&r, 201, "Added successfully");
    let r = c.get(1, "tk", &ctx).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["value"], json!("tv"));

    // Without the token, or with a wrong one: 401, nothing changes.
    let replicate = forged_replicate("planted");
    let path = format!("{prefix}/replicate");
    for headers in [vec![], vec![(header, "wrong")], vec![(header, "")]] {
        let r = c
            .request(
                1,
                Method::POST,
                &path,
                &headers,
                Body::Json(replicate.clone()),
            )
            .await;
        assert_eq!(r.status, 401, "{headers:?}: {r:?}");
    }
    let join = serde_json::to_value(causalkv::replica::Request::Join {
        from: forged_member(),
        clock: Default::default(),
        retired: Vec::new(),
        collected: Default::default(),
        fresh: false,
        decisions: Vec::new(),
    })
    .unwrap();
    let r = c
        .request(
            1,
            Method::POST,
            &format!("{prefix}/join"),
            &[],
            Body::Json(join.clone()),
        )
        .await;
    assert_eq!(r.status, 401, "{r:?}");
    let r = c.get(1, "planted", &json!("")).await;
    assert_eq!(r.status, 404, "an unauthorized write was applied: {r:?}");
    assert_eq!(
        c.view(1).await,
        c.expected_view(&[0, 1]),
        "an unauthorized join changed the view"
    );

    // Control: with the token, the join is heard and the writes of the
    // replica that joined are applied.
    let r = c
        .request(
            1,
            Method::POST,
            &format!("{prefix}/join"),
            &[(header, TOKEN)],
            Body::Json(join),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = c
        .request(
            1,
            Method::POST,
            &path,
            &[(header, TOKEN)],
            Body::Json(replicate),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = c.get(1, "planted", &json!("")).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["value"], json!("planted"));
}

// ----- start-up configuration ------------------------------------------------------

/// Runs the binary with exactly `env`; it must exit non-zero at once.
fn run_misconfigured(env: &[(&str, &str)]) -> (i32, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_causalkv"));
    command
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().expect("spawn causalkv");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("causalkv with {env:?} kept running instead of exiting");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("output");
    let code = output.status.code().unwrap_or(-1);
    (code, String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn missing_or_malformed_required_variables_exit_at_once() {
    let port = common::free_ports(1)[0];
    let me = format!("127.0.0.1:{port}");
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![], "SOCKET_ADDRESS"),
        (vec![("VIEW", &me)], "SOCKET_ADDRESS"),
        (
            vec![("SOCKET_ADDRESS", ""), ("VIEW", &me)],
            "SOCKET_ADDRESS",
        ),
        (
            vec![("SOCKET_ADDRESS", "nonsense"), ("VIEW", &me)],
            "SOCKET_ADDRESS",
        ),
        (
            vec![("SOCKET_ADDRESS", "127.0.0.1"), ("VIEW", &me)],
            "SOCKET_ADDRESS",
        ),
        (
            vec![("SOCKET_ADDRESS", "127.0.0.1:port"), ("VIEW", &me)],
            "SOCKET_ADDRESS",
        ),
        (
            vec![("SOCKET_ADDRESS", "127.0.0.1:70000"), ("VIEW", &me)],
            "SOCKET_ADDRESS",
        ),
        (vec![("SOCKET_ADDRESS", &me)], "VIEW"),
        (vec![("SOCKET_ADDRESS", &me), ("VIEW", "")], "VIEW"),
        (
            vec![("SOCKET_ADDRESS", &me), ("VIEW", "127.0.0.1:1,bad")],
            "VIEW",
        ),
        (
            vec![("SOCKET_ADDRESS", &me), ("VIEW", "127.0.0.1:99999")],
            "VIEW",
        ),
        (vec![("SOCKET_ADDRESS", &me), ("VIEW", "127.0.0.1")], "VIEW"),
        // Malformed optional variables are refused too.
        (
            vec![
                ("SOCKET_ADDRESS", &me),
                ("VIEW", &me),
                ("LISTEN_ADDRESS", "nonsense"),
            ],
            "LISTEN_ADDRESS",
        ),
        (
            vec![
                ("SOCKET_ADDRESS", &me),
                ("VIEW", &me),
                ("CAUSAL_WAIT_MS", "soon"),
            ],
            "CAUSAL_WAIT_MS",
        ),
        (
            vec![
                ("SOCKET_ADDRESS", &me),
                ("VIEW", &me),
                ("MAX_BODY_BYTES", "-5"),
            ],
            "MAX_BODY_BYTES",
        ),
    ];
    for (env, variable) in cases {
        let (code, stderr) = run_misconfigured(&env);
        assert_ne!(code, 0, "{env:?} exited successfully; stderr: {stderr}");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(
            lines.len(),
            1,
            "{env:?}: stderr must be one line, got {stderr:?}"
        );
        assert!(
            lines[0].contains(variable),
            "{env:?}: stderr must name {variable}: {stderr:?}"
        );
    }
}

#[actix_web::test]
async fn a_single_replica_is_healthy_and_alone_in_its_view() {
    let c = TestCluster::start(1).await;
    let health = c.health(0).await;
    assert_eq!(health["synced"], json!(true), "{health}");
    assert_eq!(c.view(0).await, c.addr(0));
    // And it is reachable through the typed client too.
    let mut client = c.client(0);
    let r = client.put("typed", json!([1, 2])).await.expect("put");
    assert_eq!(r.status, 201, "{r:?}");
    let r = client.get("typed").await.expect("get");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.value(), Some(&json!([1, 2])));
}

#[test]
fn help_lists_the_variables() {
    let output = Command::new(env!("CARGO_BIN_EXE_causalkv"))
        .arg("--help")
        .env_clear()
        .output()
        .expect("run causalkv --help");
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8_lossy(&output.stdout);
    for variable in ["SOCKET_ADDRESS", "VIEW", "LISTEN_ADDRESS", "CLUSTER_TOKEN"] {
        assert!(
            text.contains(variable),
            "--help does not mention {variable}:\n{text}"
        );
    }
}

#[actix_web::test]
async fn listen_address_is_honoured() {
    let c = Options::default().listen_on_socket_address().start(2).await;
    let r = c.put(0, "la", json!("bound"), &json!("")).await;
    let ctx = assert_write(&r, 201, "Added successfully");
    let r = c.get(1, "la", &ctx).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["value"], json!("bound"));
}

/// SPEC (extension): `GET /metrics` serves Prometheus text.
#[actix_web::test]
async fn metrics_are_served_as_prometheus_text() {
    let c = TestCluster::start(1).await;
    let r = c.put(0, "m", json!(1), &json!("")).await;
    assert_eq!(r.status, 201, "{r:?}");
    let r = c.request(0, Method::GET, "/metrics", &[], Body::None).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.content_type
            .as_deref()
            .is_some_and(|t| t.starts_with("text/plain")),
        "{r:?}"
    );
    assert!(r.text.contains("# TYPE "), "{}", r.text);
    let put = r#"causalkv_http_requests_total{method="PUT",route="/key-value-store/{key}",status="201"} 1"#;
    assert!(r.text.contains(put), "{put} missing from {}", r.text);
    for line in r
        .text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let value = line.rsplit(' ').next().unwrap_or_default();
        assert!(
            value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value),
            "not a sample line: {line:?}"
        );
    }
}
