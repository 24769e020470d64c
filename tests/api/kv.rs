//! PUT, GET and DELETE by SPEC's key-value table: statuses, echoed contexts, values and key lengths.

use awc::http::Method;
use serde_json::json;

use crate::common::{kv_path, Body, TestCluster};
use crate::{assert_write, fields, not_found};

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
