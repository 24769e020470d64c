//! Percent-encoded keys, malformed bodies and metadata, body limits, and the minimal read context.

use awc::http::Method;
use serde_json::json;

use crate::common::{kv_path, Body, Options, TestCluster};
use crate::{assert_bad_request, assert_write};

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
