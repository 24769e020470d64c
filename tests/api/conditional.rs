//! Conditional writes and entity tags (SPEC's "Tables and conditional
//! writes"): `If-None-Match: *` creates only, `If-Match` writes only over
//! the version named, 412 with the metadata when the condition fails,
//! `ETag` on GET and PUT answers, 304 for a GET naming the current version.

use awc::http::Method;
use serde_json::{json, Value};

use crate::common::{kv_path, Body, Reply, TestCluster};

async fn put_if(
    c: &TestCluster,
    i: usize,
    key: &str,
    value: Value,
    ctx: &Value,
    header: (&str, &str),
) -> Reply {
    let body = json!({"value": value, "causal-metadata": ctx});
    c.request(i, Method::PUT, &kv_path(key), &[header], Body::Json(body))
        .await
}

async fn delete_if(
    c: &TestCluster,
    i: usize,
    key: &str,
    ctx: &Value,
    header: (&str, &str),
) -> Reply {
    let body = json!({"causal-metadata": ctx});
    c.request(
        i,
        Method::DELETE,
        &kv_path(key),
        &[header],
        Body::Json(body),
    )
    .await
}

fn etag(r: &Reply) -> String {
    r.etag.clone().unwrap_or_else(|| panic!("no ETag: {r:?}"))
}

fn assert_unmet(r: &Reply, what: &str) {
    assert_eq!(r.status, 412, "{what}: {r:?}");
    r.assert_json();
    assert!(
        r.body["error"]
            .as_str()
            .unwrap_or("")
            .starts_with("Precondition failed"),
        "{what}: {r:?}"
    );
    assert!(
        r.body.get("causal-metadata").is_some(),
        "{what}: the 412 carries the metadata: {r:?}"
    );
}

#[actix_web::test]
async fn if_none_match_star_creates_only_and_if_match_writes_over_the_version_named() {
    let c = TestCluster::start(1).await;
    let created = put_if(&c, 0, "k", json!("v1"), &json!(""), ("If-None-Match", "*")).await;
    assert_eq!(created.status, 201, "{created:?}");
    let v1 = etag(&created);
    // The same tag on a GET, anywhere it is served.
    let got = c.get(0, "k", &created.ctx()).await;
    assert_eq!(etag(&got), v1);
    // Create-only again: refused, the value unchanged, the context kept.
    let again = put_if(
        &c,
        0,
        "k",
        json!("v2"),
        &created.ctx(),
        ("If-None-Match", "*"),
    )
    .await;
    assert_unmet(&again, "a second create");
    assert_eq!(again.body["etag"], json!(v1));
    assert_eq!(c.get(0, "k", &again.ctx()).await.body["value"], json!("v1"));
    // If-Match the current version: written, with a new tag.
    let updated = put_if(&c, 0, "k", json!("v2"), &again.ctx(), ("If-Match", &v1)).await;
    assert_eq!(updated.status, 200, "{updated:?}");
    let v2 = etag(&updated);
    assert_ne!(v1, v2);
    // If-Match a version no longer current: refused.
    let stale = put_if(&c, 0, "k", json!("v3"), &updated.ctx(), ("If-Match", &v1)).await;
    assert_unmet(&stale, "a stale If-Match");
    assert_eq!(stale.body["etag"], json!(v2));
    // A DELETE likewise.
    assert_unmet(
        &delete_if(&c, 0, "k", &stale.ctx(), ("If-Match", &v1)).await,
        "a stale delete",
    );
    let deleted = delete_if(&c, 0, "k", &stale.ctx(), ("If-Match", &v2)).await;
    assert_eq!(deleted.status, 200, "{deleted:?}");
    // If-Match on an absent key: refused; If-Match: * too.
    let absent = put_if(&c, 0, "k", json!("v4"), &deleted.ctx(), ("If-Match", &v2)).await;
    assert_unmet(&absent, "If-Match on a deleted key");
    assert_unmet(
        &put_if(&c, 0, "k", json!("v4"), &deleted.ctx(), ("If-Match", "*")).await,
        "If-Match: * on a deleted key",
    );
    // Create-only after the delete: created.
    let recreated = put_if(
        &c,
        0,
        "k",
        json!("v5"),
        &deleted.ctx(),
        ("If-None-Match", "*"),
    )
    .await;
    assert_eq!(recreated.status, 201, "{recreated:?}");
}

#[actix_web::test]
async fn a_get_naming_the_current_version_is_not_modified() {
    let c = TestCluster::start(1).await;
    let put = c.put(0, "k", json!({"a": 1}), &json!("")).await;
    let tag = etag(&put);
    let r = c
        .request(
            0,
            Method::GET,
            &kv_path("k"),
            &[("If-None-Match", &tag)],
            Body::None,
        )
        .await;
    assert_eq!(r.status, 304, "{r:?}");
    assert_eq!(r.etag.as_deref(), Some(tag.as_str()));
    assert!(r.text.is_empty(), "a 304 has no body: {r:?}");
    c.put(0, "k", json!({"a": 2}), &put.ctx()).await;
    let r = c
        .request(
            0,
            Method::GET,
            &kv_path("k"),
            &[("If-None-Match", &tag)],
            Body::None,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["value"], json!({"a": 2}));
}

#[actix_web::test]
async fn a_condition_is_judged_once_the_context_is_met_at_the_replica_that_takes_it() {
    let c = TestCluster::start(2).await;
    let put = c.put(0, "k", json!("v1"), &json!("")).await;
    let tag = etag(&put);
    // At the other replica, with the writer's context: the version is
    // there by the time the condition is judged.
    let r = put_if(&c, 1, "k", json!("v2"), &put.ctx(), ("If-Match", &tag)).await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = put_if(&c, 1, "fresh", json!(1), &r.ctx(), ("If-None-Match", "*")).await;
    assert_eq!(r.status, 201, "{r:?}");
}

#[actix_web::test]
async fn malformed_conditions_are_a_400() {
    let c = TestCluster::start(1).await;
    let both = c
        .request(
            0,
            Method::PUT,
            &kv_path("k"),
            &[("If-Match", "*"), ("If-None-Match", "*")],
            Body::Json(json!({"value": 1})),
        )
        .await;
    assert_eq!(both.status, 400, "{both:?}");
    both.assert_json();
    let empty = put_if(&c, 0, "k", json!(1), &json!(""), ("If-Match", " , ")).await;
    assert_eq!(empty.status, 400, "{empty:?}");
    empty.assert_json();
    assert_eq!(
        c.get(0, "k", &json!("")).await.status,
        404,
        "nothing written"
    );
}
