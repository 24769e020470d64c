//! Tables (SPEC's "Tables and conditional writes"): `PUT /tables/<name>`
//! creates (201) or finds (200, settings unchanged), `GET /tables` lists
//! them sorted with their live key counts (the default table is not
//! listed), `DELETE /tables/<name>` drops (200, 404 if absent); the keys of
//! a table at `/tables/<name>/key-value-store/<key>` answer exactly like
//! the default store, conditions included; tables isolate keys; creation
//! and drop spread to every replica and respect the causal context; a
//! recreated table starts empty; a missing table is a 404 and a bad name a
//! 400 for every request naming it.
//!
//! The helpers here (paths, requests in a table, listings) are shared with
//! `siblings.rs`.

use awc::http::Method;
use serde_json::{json, Value};

use crate::common::{
    encode, kv_path, request_with_timeout, wait_for, Body, Options, Reply, TestCluster, DEADLINE,
    POLL_REQUEST_TIMEOUT,
};
use crate::{assert_write, fields, not_found};

// ---------------------------------------------------------------------------
// Helpers (also used by siblings.rs)
// ---------------------------------------------------------------------------

/// `/tables/<name>`, the name percent-encoded as one path segment.
pub(crate) fn table_path(name: &str) -> String {
    format!("/tables/{}", encode(name))
}

/// The path of `key` in `table` (`None`: the default store).
pub(crate) fn key_path(table: Option<&str>, key: &str) -> String {
    match table {
        Some(t) => format!("{}{}", table_path(t), kv_path(key)),
        None => kv_path(key),
    }
}

/// `PUT /tables/<name>` with `body` (`Body::None`: no body at all).
pub(crate) async fn create(c: &TestCluster, i: usize, name: &str, body: Body) -> Reply {
    c.request(i, Method::PUT, &table_path(name), &[], body)
        .await
}

/// `PUT /tables/<name>` with `{"siblings": siblings, "causal-metadata": ctx}`.
pub(crate) async fn create_with(
    c: &TestCluster,
    i: usize,
    name: &str,
    siblings: bool,
    ctx: &Value,
) -> Reply {
    let body = json!({"siblings": siblings, "causal-metadata": ctx});
    create(c, i, name, Body::Json(body)).await
}

/// `DELETE /tables/<name>` with `{"causal-metadata": ctx}`.
pub(crate) async fn drop_table(c: &TestCluster, i: usize, name: &str, ctx: &Value) -> Reply {
    let body = json!({"causal-metadata": ctx});
    c.request(i, Method::DELETE, &table_path(name), &[], Body::Json(body))
        .await
}

/// `GET /tables` with `{"causal-metadata": ctx}`.
pub(crate) async fn list(c: &TestCluster, i: usize, ctx: &Value) -> Reply {
    let body = json!({"causal-metadata": ctx});
    c.request(i, Method::GET, "/tables", &[], Body::Json(body))
        .await
}

/// `GET /tables` without context that gives up quickly (for polling).
pub(crate) async fn try_list(c: &TestCluster, i: usize) -> Result<Reply, String> {
    request_with_timeout(
        c.addr(i),
        Method::GET,
        "/tables",
        &[],
        Body::Json(json!({"causal-metadata": ""})),
        POLL_REQUEST_TIMEOUT,
    )
    .await
}

/// `PUT` of `key` in `table` with `{"value": value, "causal-metadata": ctx}`.
pub(crate) async fn put_in(
    c: &TestCluster,
    i: usize,
    table: Option<&str>,
    key: &str,
    value: Value,
    ctx: &Value,
) -> Reply {
    let body = json!({"value": value, "causal-metadata": ctx});
    c.request(i, Method::PUT, &key_path(table, key), &[], Body::Json(body))
        .await
}

/// `GET` of `key` in `table` with `{"causal-metadata": ctx}`.
pub(crate) async fn get_in(
    c: &TestCluster,
    i: usize,
    table: Option<&str>,
    key: &str,
    ctx: &Value,
) -> Reply {
    let body = json!({"causal-metadata": ctx});
    c.request(i, Method::GET, &key_path(table, key), &[], Body::Json(body))
        .await
}

/// `DELETE` of `key` in `table` with `{"causal-metadata": ctx}`.
pub(crate) async fn delete_in(
    c: &TestCluster,
    i: usize,
    table: Option<&str>,
    key: &str,
    ctx: &Value,
) -> Reply {
    let body = json!({"causal-metadata": ctx});
    c.request(
        i,
        Method::DELETE,
        &key_path(table, key),
        &[],
        Body::Json(body),
    )
    .await
}

/// A GET of `key` in `table` without context that gives up quickly (for
/// polling).
pub(crate) async fn try_get_in(
    c: &TestCluster,
    i: usize,
    table: Option<&str>,
    key: &str,
) -> Result<Reply, String> {
    request_with_timeout(
        c.addr(i),
        Method::GET,
        &key_path(table, key),
        &[],
        Body::Json(json!({"causal-metadata": ""})),
        POLL_REQUEST_TIMEOUT,
    )
    .await
}

/// One entry of a `GET /tables` listing.
pub(crate) fn entry(name: &str, siblings: bool, keys: u64) -> Value {
    json!({"name": name, "siblings": siblings, "keys": keys})
}

/// Asserts a `PUT /tables/<name>` answer: status, exact field set,
/// message, the table described, and a non-empty context object, which it
/// returns.
pub(crate) fn assert_table_put(reply: &Reply, status: u16, table: &Value) -> Value {
    reply.assert_json();
    assert_eq!(reply.status, status, "{reply:?}");
    assert_eq!(
        fields(reply),
        ["causal-metadata", "message", "table"],
        "{reply:?}"
    );
    let message = if status == 201 {
        "Table created successfully"
    } else {
        "Table already exists"
    };
    assert_eq!(reply.body["message"], json!(message), "{reply:?}");
    assert_eq!(reply.body["table"], *table, "{reply:?}");
    let ctx = reply.ctx();
    assert!(
        ctx.as_object().is_some_and(|o| !o.is_empty()),
        "a table PUT must return a non-empty context object: {reply:?}"
    );
    ctx
}

/// Creates `name` at replica `i` (it must be new) and returns the context.
pub(crate) async fn create_new(
    c: &TestCluster,
    i: usize,
    name: &str,
    siblings: bool,
    ctx: &Value,
) -> Value {
    let r = create_with(c, i, name, siblings, ctx).await;
    assert_table_put(&r, 201, &entry(name, siblings, 0))
}

/// Asserts a successful drop: 200, exactly `message` and a non-empty
/// context object, which it returns.
pub(crate) fn assert_dropped(reply: &Reply) -> Value {
    reply.assert_json();
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(fields(reply), ["causal-metadata", "message"], "{reply:?}");
    assert_eq!(
        reply.body["message"],
        json!("Table dropped successfully"),
        "{reply:?}"
    );
    let ctx = reply.ctx();
    assert!(
        ctx.as_object().is_some_and(|o| !o.is_empty()),
        "a drop must return a non-empty context object: {reply:?}"
    );
    ctx
}

/// Asserts a 404 for a missing table: exactly `error`, `message` and
/// `causal-metadata`; returns the context.
pub(crate) fn assert_no_table(reply: &Reply, method: &str) -> Value {
    reply.assert_json();
    assert_eq!(reply.status, 404, "{method}: {reply:?}");
    assert_eq!(
        fields(reply),
        ["causal-metadata", "error", "message"],
        "{method}: {reply:?}"
    );
    assert_eq!(
        reply.body["error"],
        json!("Table does not exist"),
        "{method}: {reply:?}"
    );
    assert_eq!(
        reply.body["message"],
        json!(format!("Error in {method}")),
        "{method}: {reply:?}"
    );
    reply.ctx()
}

/// Asserts a 200 listing whose tables are exactly `tables` (in order);
/// returns the context.
pub(crate) fn assert_listing(reply: &Reply, tables: &Value) -> Value {
    reply.assert_json();
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        fields(reply),
        ["causal-metadata", "message", "tables"],
        "{reply:?}"
    );
    assert_eq!(
        reply.body["message"],
        json!("Retrieved successfully"),
        "{reply:?}"
    );
    assert_eq!(reply.body["tables"], *tables, "listing: {reply:?}");
    reply.ctx()
}

/// Waits until every replica of `at` lists exactly `tables` when asked
/// without context.
pub(crate) async fn wait_listing(c: &TestCluster, at: &[usize], tables: &Value) {
    wait_for(
        DEADLINE,
        &format!("replicas {at:?} to list {tables}"),
        || async move {
            for &i in at {
                let r = try_list(c, i).await?;
                if r.status != 200 || r.body["tables"] != *tables {
                    return Err(format!("replica {i}: {} {}", r.status, r.text));
                }
            }
            Ok(())
        },
    )
    .await
}

/// Waits until, at every replica of `at`, a GET of `key` in `table`
/// without context answers as `want` says: `Some(v)` for 200 with value
/// `v`, `None` for 404 "Key does not exist" (the table exists, the key not).
pub(crate) async fn wait_key(
    c: &TestCluster,
    at: &[usize],
    table: Option<&str>,
    key: &str,
    want: Option<Value>,
) {
    let want = &want;
    wait_for(
        DEADLINE,
        &format!("{key:?} in {table:?} to be {want:?} at {at:?}"),
        || async move {
            for &i in at {
                let r = try_get_in(c, i, table, key).await?;
                let ok = match want {
                    Some(v) => r.status == 200 && r.body.get("value") == Some(v),
                    None => r.status == 404 && r.body["error"] == json!("Key does not exist"),
                };
                if !ok {
                    return Err(format!("replica {i}: {} {}", r.status, r.text));
                }
            }
            Ok(())
        },
    )
    .await
}

fn etag(r: &Reply) -> String {
    r.etag.clone().unwrap_or_else(|| panic!("no ETag: {r:?}"))
}

fn assert_unmet(r: &Reply, what: &str) {
    r.assert_json();
    assert_eq!(r.status, 412, "{what}: {r:?}");
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

/// Asserts the exact 400 for a bad table name.
fn assert_bad_name(r: &Reply, method: &str, what: &str) {
    r.assert_json();
    assert_eq!(r.status, 400, "{what}: {r:?}");
    assert_eq!(
        r.body,
        json!({"error": "Table name is invalid", "message": format!("Error in {method}")}),
        "{what}: {r:?}"
    );
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

/// A fresh store lists no table (the default table is not listed); the
/// first PUT creates (201, with or without a body), a second finds (200)
/// and keeps the settings the table was created with; the listing is
/// sorted by name at every replica; a create whose context is echoed back
/// when nothing new is learned.
#[actix_web::test]
async fn tables_are_created_once_and_listed_sorted_at_every_replica() {
    let c = TestCluster::start(3).await;
    for i in 0..3 {
        let r = list(&c, i, &json!("")).await;
        r.assert_json();
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(
            r.body,
            json!({"message": "Retrieved successfully", "tables": [], "causal-metadata": ""}),
            "a fresh store lists no table, and the empty context is echoed"
        );
        // No body at all: still a listing with some context.
        let r = c.request(i, Method::GET, "/tables", &[], Body::None).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.body["tables"], json!([]), "{r:?}");
        assert!(r.body.get("causal-metadata").is_some(), "{r:?}");
    }

    // No body: a table without siblings.
    let r = create(&c, 0, "zeta", Body::None).await;
    let m1 = assert_table_put(&r, 201, &entry("zeta", false, 0));
    // Listed where it was made, at once; nothing new learned: the context
    // comes back exactly as sent.
    let r = list(&c, 0, &m1).await;
    assert_eq!(
        assert_listing(&r, &json!([entry("zeta", false, 0)])),
        m1,
        "a listing that learns nothing new echoes the context: {r:?}"
    );

    // With a body, at another replica, carrying the context.
    let m2 = create_new(&c, 1, "alpha", true, &m1).await;
    // Only the metadata, no settings: defaults to no siblings.
    let r = create(
        &c,
        2,
        "mid_dle-1",
        Body::Json(json!({"causal-metadata": m2})),
    )
    .await;
    let m3 = assert_table_put(&r, 201, &entry("mid_dle-1", false, 0));

    // Created again, asking for other settings, at every replica: 200 and
    // the settings unchanged.
    let mut ctx = m3.clone();
    for i in 0..3 {
        let r = create_with(&c, i, "zeta", true, &ctx).await;
        ctx = assert_table_put(&r, 200, &entry("zeta", false, 0));
        let r = create_with(&c, i, "alpha", false, &ctx).await;
        ctx = assert_table_put(&r, 200, &entry("alpha", true, 0));
        let r = create(&c, i, "mid_dle-1", Body::None).await;
        assert_table_put(&r, 200, &entry("mid_dle-1", false, 0));
    }

    // Sorted by name, at every replica.
    let expected = json!([
        entry("alpha", true, 0),
        entry("mid_dle-1", false, 0),
        entry("zeta", false, 0),
    ]);
    for i in 0..3 {
        assert_listing(&list(&c, i, &ctx).await, &expected);
    }
    wait_listing(&c, &[0, 1, 2], &expected).await;
}

/// A drop spreads to every replica; dropping again (anywhere) is a 404
/// with the metadata; the other tables and the default store are untouched.
#[actix_web::test]
async fn a_drop_spreads_to_every_replica_and_a_second_drop_is_404() {
    let c = TestCluster::start(3).await;
    let m = create_new(&c, 0, "gone", false, &json!("")).await;
    let m = create_new(&c, 0, "kept", false, &m).await;
    let r = put_in(&c, 0, Some("kept"), "k", json!("kept value"), &m).await;
    let m = assert_write(&r, 201, "Added successfully");
    let r = c.put(0, "k", json!("default value"), &m).await;
    let m = assert_write(&r, 201, "Added successfully");
    let both = json!([entry("gone", false, 0), entry("kept", false, 1)]);
    wait_listing(&c, &[0, 1, 2], &both).await;

    let dropped = assert_dropped(&drop_table(&c, 1, "gone", &m).await);
    let only_kept = json!([entry("kept", false, 1)]);
    for i in 0..3 {
        assert_listing(&list(&c, i, &dropped).await, &only_kept);
    }
    for i in 0..3 {
        assert_no_table(&drop_table(&c, i, "gone", &dropped).await, "DELETE");
    }
    wait_listing(&c, &[0, 1, 2], &only_kept).await;
    for i in 0..3 {
        let r = get_in(&c, i, Some("kept"), "k", &dropped).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.body["value"], json!("kept value"), "{r:?}");
        let r = c.get(i, "k", &dropped).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.body["value"], json!("default value"), "{r:?}");
    }
    // Everything dropped: the listing is empty again, everywhere.
    let r = drop_table(&c, 2, "kept", &dropped).await;
    let none = assert_dropped(&r);
    for i in 0..3 {
        assert_listing(&list(&c, i, &none).await, &json!([]));
        assert_no_table(&get_in(&c, i, Some("kept"), "k", &none).await, "GET");
        // The default store is not a table one can drop.
        let r = c.get(i, "k", &none).await;
        assert_eq!(r.status, 200, "{r:?}");
    }
    wait_listing(&c, &[0, 1, 2], &json!([])).await;
}

/// The keys of a table answer exactly like the default store: every row of
/// SPEC's key-value table, echoed contexts, key-length and missing-value
/// errors, values of any JSON type.
#[actix_web::test]
async fn keys_of_a_table_answer_exactly_like_the_default_store() {
    let c = TestCluster::start(1).await;
    let m0 = create_new(&c, 0, "t", false, &json!("")).await;
    let t = Some("t");

    let r = put_in(&c, 0, t, "k1", json!("v1"), &m0).await;
    let m1 = assert_write(&r, 201, "Added successfully");
    let r = put_in(&c, 0, t, "k1", json!({"v": [2, true]}), &m1).await;
    let m2 = assert_write(&r, 200, "Updated successfully");
    let r = get_in(&c, 0, t, "k1", &m2).await;
    r.assert_json();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.body,
        json!({"message": "Retrieved successfully", "causal-metadata": m2, "value": {"v": [2, true]}})
    );
    let r = delete_in(&c, 0, t, "k1", &m2).await;
    let m3 = assert_write(&r, 200, "Deleted successfully");
    let r = get_in(&c, 0, t, "k1", &m3).await;
    r.assert_json();
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(r.body, not_found("GET", &m3));
    let r = delete_in(&c, 0, t, "k1", &m3).await;
    r.assert_json();
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(r.body, not_found("DELETE", &m3));
    let r = put_in(&c, 0, t, "k1", json!(3), &m3).await;
    let m4 = assert_write(&r, 201, "Added successfully");

    // Keys that never existed, with the empty context: echoed exactly.
    let r = get_in(&c, 0, t, "never", &json!("")).await;
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(r.body, not_found("GET", &json!("")));
    let r = delete_in(&c, 0, t, "never", &json!("")).await;
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(r.body, not_found("DELETE", &json!("")));

    // Percent-encoded keys are decoded like the default store's.
    let r = put_in(&c, 0, t, "a b/é", json!("odd"), &m4).await;
    let m5 = assert_write(&r, 201, "Added successfully");
    let r = get_in(&c, 0, t, "a b/é", &m5).await;
    assert_eq!(r.body["value"], json!("odd"), "{r:?}");

    // Errors: key too long before value missing; value missing.
    let long = "k".repeat(51);
    let r = put_in(&c, 0, t, &long, json!(1), &m5).await;
    r.assert_json();
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(
        r.body,
        json!({"error": "Key is too long", "message": "Error in PUT"})
    );
    let r = c
        .request(
            0,
            Method::PUT,
            &key_path(t, &long),
            &[],
            Body::Json(json!({"causal-metadata": m5})),
        )
        .await;
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(
        r.body,
        json!({"error": "Key is too long", "message": "Error in PUT"})
    );
    for body in [
        Body::Json(json!({"causal-metadata": m5})),
        Body::Json(json!({"value": null, "causal-metadata": m5})),
        Body::None,
    ] {
        let r = c
            .request(0, Method::PUT, &key_path(t, "nv"), &[], body)
            .await;
        r.assert_json();
        assert_eq!(r.status, 400, "{r:?}");
        assert_eq!(
            r.body,
            json!({"error": "Value is missing", "message": "Error in PUT"})
        );
    }
    // 50 characters is fine.
    let r = put_in(&c, 0, t, &"k".repeat(50), json!(50), &m5).await;
    assert_write(&r, 201, "Added successfully");
    // Malformed metadata: a 400 like the default store's.
    let r = c
        .request(
            0,
            Method::PUT,
            &key_path(t, "bad-meta"),
            &[],
            Body::Json(json!({"value": 1, "causal-metadata": 5})),
        )
        .await;
    crate::assert_bad_request(&r, "PUT");
}

/// Tables isolate keys: one key in two tables and in the default store are
/// three independent keys, at every replica; writes, deletes and absences
/// in one do not show in the others; `keys` counts each table's live keys.
#[actix_web::test]
async fn tables_isolate_keys_from_each_other_and_from_the_default_store() {
    let c = TestCluster::start(2).await;
    let m = create_new(&c, 0, "t1", false, &json!("")).await;
    let m = create_new(&c, 0, "t2", false, &m).await;
    let (t1, t2) = (Some("t1"), Some("t2"));

    // The same key written in all three, at different replicas.
    let r = c.put(1, "k", json!("default"), &m).await;
    let m = assert_write(&r, 201, "Added successfully");
    let r = put_in(&c, 0, t1, "k", json!("in t1"), &m).await;
    let m = assert_write(&r, 201, "Added successfully");
    let r = put_in(&c, 1, t2, "k", json!("in t2"), &m).await;
    let m = assert_write(&r, 201, "Added successfully");
    // Keys in one place only.
    let r = put_in(&c, 0, t1, "only-t1", json!(1), &m).await;
    let m = assert_write(&r, 201, "Added successfully");
    let r = c.put(1, "only-default", json!(2), &m).await;
    let m = assert_write(&r, 201, "Added successfully");
    // Overwriting the key in t1 is an update of t1's key only.
    let r = put_in(&c, 1, t1, "k", json!("in t1, again"), &m).await;
    let m = assert_write(&r, 200, "Updated successfully");

    for i in 0..2 {
        for (table, key, want) in [
            (None, "k", Some(json!("default"))),
            (t1, "k", Some(json!("in t1, again"))),
            (t2, "k", Some(json!("in t2"))),
            (t1, "only-t1", Some(json!(1))),
            (None, "only-t1", None),
            (t2, "only-t1", None),
            (None, "only-default", Some(json!(2))),
            (t1, "only-default", None),
            (t2, "only-default", None),
        ] {
            let r = get_in(&c, i, table, key, &m).await;
            match want {
                Some(v) => {
                    assert_eq!(r.status, 200, "{key} in {table:?} at {i}: {r:?}");
                    assert_eq!(r.body["value"], v, "{key} in {table:?} at {i}: {r:?}");
                }
                None => {
                    assert_eq!(r.status, 404, "{key} in {table:?} at {i}: {r:?}");
                    assert_eq!(r.body["error"], json!("Key does not exist"), "{r:?}");
                }
            }
        }
        assert_listing(
            &list(&c, i, &m).await,
            &json!([entry("t1", false, 2), entry("t2", false, 1)]),
        );
    }

    // A delete in t1 leaves the same key elsewhere alone.
    let r = delete_in(&c, 0, t1, "k", &m).await;
    let m = assert_write(&r, 200, "Deleted successfully");
    // Deleting where it does not exist is a 404, not a delete elsewhere.
    let r = delete_in(&c, 1, t2, "only-default", &m).await;
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(r.body["error"], json!("Key does not exist"), "{r:?}");
    let r = c.delete(0, "only-t1", &m).await;
    assert_eq!(r.status, 404, "{r:?}");
    for i in 0..2 {
        let r = get_in(&c, i, t1, "k", &m).await;
        assert_eq!(r.status, 404, "{r:?}");
        let r = get_in(&c, i, t2, "k", &m).await;
        assert_eq!(r.body["value"], json!("in t2"), "{r:?}");
        let r = c.get(i, "k", &m).await;
        assert_eq!(r.body["value"], json!("default"), "{r:?}");
        assert_listing(
            &list(&c, i, &m).await,
            &json!([entry("t1", false, 1), entry("t2", false, 1)]),
        );
    }
    // And without context, eventually the same everywhere.
    wait_key(&c, &[0, 1], t1, "k", None).await;
    wait_key(&c, &[0, 1], t2, "k", Some(json!("in t2"))).await;
    wait_key(&c, &[0, 1], None, "k", Some(json!("default"))).await;
}

/// `keys` counts live keys: neither deleted keys nor overwrites count, a
/// key written again after its delete counts once; the same count at every
/// replica.
#[actix_web::test]
async fn the_listing_counts_live_keys_at_every_replica() {
    let c = TestCluster::start(3).await;
    let mut m = create_new(&c, 0, "count", false, &json!("")).await;
    let t = Some("count");
    for (n, i) in (0..5).zip([0, 1, 2, 0, 1]) {
        let r = put_in(&c, i, t, &format!("k{n}"), json!(n), &m).await;
        m = assert_write(&r, 201, "Added successfully");
    }
    let r = put_in(&c, 2, t, "k0", json!("over"), &m).await;
    m = assert_write(&r, 200, "Updated successfully");
    let r = delete_in(&c, 0, t, "k1", &m).await;
    m = assert_write(&r, 200, "Deleted successfully");
    let r = delete_in(&c, 1, t, "k2", &m).await;
    m = assert_write(&r, 200, "Deleted successfully");
    let r = put_in(&c, 2, t, "k2", json!("back"), &m).await;
    m = assert_write(&r, 201, "Added successfully");
    // k0, k2, k3, k4 live.
    let expected = json!([entry("count", false, 4)]);
    for i in 0..3 {
        assert_listing(&list(&c, i, &m).await, &expected);
    }
    wait_listing(&c, &[0, 1, 2], &expected).await;
}

/// A drop takes the table's keys with it: the recreated table (created at
/// another replica, with the drop in its context) starts empty at every
/// replica, lists 0 keys, and a PUT there adds rather than updates.
#[actix_web::test]
async fn a_dropped_then_recreated_table_starts_empty_at_every_replica() {
    let c = TestCluster::start(3).await;
    let t = Some("again");
    let mut m = create_new(&c, 0, "again", false, &json!("")).await;
    for (key, i) in [("a", 1), ("b", 2), ("c", 0)] {
        let r = put_in(&c, i, t, key, json!(key), &m).await;
        m = assert_write(&r, 201, "Added successfully");
    }
    wait_listing(&c, &[0, 1, 2], &json!([entry("again", false, 3)])).await;
    let dropped = assert_dropped(&drop_table(&c, 2, "again", &m).await);
    // Gone at every replica that is given the drop's context.
    for i in 0..3 {
        assert_no_table(&get_in(&c, i, t, "a", &dropped).await, "GET");
    }
    wait_listing(&c, &[0, 1, 2], &json!([])).await;

    // Recreated elsewhere: new (201), empty; siblings as asked this time.
    let created = create_new(&c, 0, "again", true, &dropped).await;
    let expected = json!([entry("again", true, 0)]);
    for i in 0..3 {
        assert_listing(&list(&c, i, &created).await, &expected);
        for key in ["a", "b", "c"] {
            let r = get_in(&c, i, t, key, &created).await;
            r.assert_json();
            assert_eq!(r.status, 404, "{key} at {i} after the recreate: {r:?}");
            assert_eq!(
                r.body["error"],
                json!("Key does not exist"),
                "the table exists, the key not: {r:?}"
            );
            assert_eq!(r.body["doesExist"], json!(false), "{r:?}");
        }
    }
    // Without context too, once everything has spread: the old keys never
    // come back anywhere.
    wait_listing(&c, &[0, 1, 2], &expected).await;
    for key in ["a", "b", "c"] {
        wait_key(&c, &[0, 1, 2], t, key, None).await;
    }
    // A write there adds.
    let r = put_in(&c, 1, t, "a", json!("new a"), &created).await;
    let m = assert_write(&r, 201, "Added successfully");
    for i in 0..3 {
        let r = get_in(&c, i, t, "a", &m).await;
        assert_eq!(r.body["value"], json!("new a"), "{r:?}");
        assert_listing(&list(&c, i, &m).await, &json!([entry("again", true, 1)]));
    }
    // The drop, seen from a replica that did not take it, again.
    let r = drop_table(&c, 2, "again", &m).await;
    let dropped = assert_dropped(&r);
    let r = create(
        &c,
        1,
        "again",
        Body::Json(json!({"causal-metadata": dropped})),
    )
    .await;
    let created = assert_table_put(&r, 201, &entry("again", false, 0));
    for i in 0..3 {
        let r = get_in(&c, i, t, "a", &created).await;
        assert_eq!(r.status, 404, "{r:?}");
        assert_eq!(r.body["error"], json!("Key does not exist"), "{r:?}");
    }
}

/// Any request naming a table that does not exist (never created, or
/// dropped) is a 404 "Table does not exist" naming the method, with the
/// metadata (echoed when nothing is learned); nothing is created by it.
#[actix_web::test]
async fn a_missing_table_is_404_for_every_request_naming_it() {
    let c = TestCluster::start(2).await;
    let ghost = Some("ghost");
    let echoed = |method: &str| {
        json!({
            "error": "Table does not exist",
            "message": format!("Error in {method}"),
            "causal-metadata": "",
        })
    };
    for i in 0..2 {
        let r = get_in(&c, i, ghost, "k", &json!("")).await;
        assert_no_table(&r, "GET");
        assert_eq!(r.body, echoed("GET"));
        let r = put_in(&c, i, ghost, "k", json!(1), &json!("")).await;
        assert_no_table(&r, "PUT");
        assert_eq!(r.body, echoed("PUT"));
        let r = delete_in(&c, i, ghost, "k", &json!("")).await;
        assert_no_table(&r, "DELETE");
        assert_eq!(r.body, echoed("DELETE"));
        let r = drop_table(&c, i, "ghost", &json!("")).await;
        assert_no_table(&r, "DELETE");
        assert_eq!(r.body, echoed("DELETE"));
        // A conditional write too: the table is missing before any
        // condition is judged.
        let r = c
            .request(
                i,
                Method::PUT,
                &key_path(ghost, "k"),
                &[("If-None-Match", "*")],
                Body::Json(json!({"value": 1, "causal-metadata": ""})),
            )
            .await;
        assert_no_table(&r, "PUT");
        // Without a body, a GET is a 404 with some context.
        let r = c
            .request(i, Method::GET, &key_path(ghost, "k"), &[], Body::None)
            .await;
        assert_no_table(&r, "GET");
    }
    // The PUT did not create the table (nor the key anywhere else).
    for i in 0..2 {
        assert_listing(&list(&c, i, &json!("")).await, &json!([]));
        let r = c.get(i, "k", &json!("")).await;
        assert_eq!(r.status, 404, "{r:?}");
    }

    // A dropped table: the same, with the drop's context, everywhere.
    let m = create_new(&c, 0, "was", false, &json!("")).await;
    let r = put_in(&c, 0, Some("was"), "k", json!(1), &m).await;
    let m = assert_write(&r, 201, "Added successfully");
    let dropped = assert_dropped(&drop_table(&c, 0, "was", &m).await);
    for i in 0..2 {
        assert_no_table(&get_in(&c, i, Some("was"), "k", &dropped).await, "GET");
        assert_no_table(
            &put_in(&c, i, Some("was"), "k", json!(2), &dropped).await,
            "PUT",
        );
        assert_no_table(
            &delete_in(&c, i, Some("was"), "k", &dropped).await,
            "DELETE",
        );
        assert_no_table(&drop_table(&c, i, "was", &dropped).await, "DELETE");
        assert_listing(&list(&c, i, &dropped).await, &json!([]));
    }
}

/// Names are 1-50 characters of letters, digits, `-` and `_`: anything
/// else is a 400 "Table name is invalid" for creating and dropping the
/// table and for every key request under it, and nothing is created.
#[actix_web::test]
async fn invalid_table_names_are_400_for_every_request() {
    let c = TestCluster::start(1).await;
    let bad = [
        "t".repeat(51),
        "has space".to_string(),
        "dot.name".to_string(),
        "bang!".to_string(),
        "plus+sign".to_string(),
        "tilde~".to_string(),
        "slash/inside".to_string(),
        "ümlaut".to_string(),
        "semi;colon".to_string(),
        "表".to_string(),
    ];
    for name in &bad {
        let what = format!("table name {name:?}");
        let ctx = json!({"causal-metadata": ""});
        let r = create(&c, 0, name, Body::None).await;
        assert_bad_name(&r, "PUT", &what);
        let r = create(&c, 0, name, Body::Json(json!({"siblings": true}))).await;
        assert_bad_name(&r, "PUT", &what);
        let r = c
            .request(
                0,
                Method::DELETE,
                &table_path(name),
                &[],
                Body::Json(ctx.clone()),
            )
            .await;
        assert_bad_name(&r, "DELETE", &what);
        let path = key_path(Some(name), "k");
        let r = c
            .request(0, Method::GET, &path, &[], Body::Json(ctx.clone()))
            .await;
        assert_bad_name(&r, "GET", &what);
        let r = c
            .request(
                0,
                Method::PUT,
                &path,
                &[],
                Body::Json(json!({"value": 1, "causal-metadata": ""})),
            )
            .await;
        assert_bad_name(&r, "PUT", &what);
        let r = c
            .request(0, Method::DELETE, &path, &[], Body::Json(ctx))
            .await;
        assert_bad_name(&r, "DELETE", &what);
    }
    assert_listing(&list(&c, 0, &json!("")).await, &json!([]));

    // The limits themselves are fine: 50 characters of every kind allowed,
    // and a single character.
    let longest: String = "Az09-_".chars().cycle().take(50).collect();
    let m = create_new(&c, 0, &longest, false, &json!("")).await;
    let m = create_new(&c, 0, "x", false, &m).await;
    let r = put_in(&c, 0, Some(&longest), "k", json!("long"), &m).await;
    let m = assert_write(&r, 201, "Added successfully");
    let r = get_in(&c, 0, Some(&longest), "k", &m).await;
    assert_eq!(r.body["value"], json!("long"), "{r:?}");
    let mut names = [longest.clone(), "x".to_string()];
    names.sort();
    let expected: Vec<Value> = names
        .iter()
        .map(|n| entry(n, false, (n == &longest) as u64))
        .collect();
    assert_listing(&list(&c, 0, &m).await, &Value::Array(expected));
}

/// Creation and drop respect the causal context across replicas: a
/// replica given a context that includes a creation serves the table (a PUT
/// there adds, the listing names it), and one given a context that
/// includes a drop no longer does.
#[actix_web::test]
async fn a_context_naming_a_creation_or_drop_is_honoured_at_every_replica() {
    let c = TestCluster::start(3).await;
    let t = Some("ctx");
    // Each step at another replica, at once, carrying the last context.
    let created = create_new(&c, 0, "ctx", false, &json!("")).await;
    // (Listed before any key is written, so that the count is known.)
    let r = list(&c, 2, &created).await;
    assert_listing(&r, &json!([entry("ctx", false, 0)]));
    let r = put_in(&c, 1, t, "k", json!("after the create"), &created).await;
    let m = assert_write(&r, 201, "Added successfully");
    let r = get_in(&c, 2, t, "k", &m).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["value"], json!("after the create"), "{r:?}");
    let m = r.ctx();
    assert_listing(&list(&c, 0, &m).await, &json!([entry("ctx", false, 1)]));

    let dropped = assert_dropped(&drop_table(&c, 2, "ctx", &m).await);
    // A write in the dropped table, at a replica told of the drop: refused.
    assert_no_table(&put_in(&c, 0, t, "k2", json!(1), &dropped).await, "PUT");
    assert_listing(&list(&c, 1, &dropped).await, &json!([]));
    // Recreated at once at another replica: new.
    let again = create_new(&c, 1, "ctx", false, &dropped).await;
    let r = get_in(&c, 0, t, "k", &again).await;
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(r.body["error"], json!("Key does not exist"), "{r:?}");
}

/// A replica that certainly lacks a creation (it was stopped, and left the
/// creator's view, when the table was made, so the creator did not even
/// queue it for that replica) and is then given a context naming it waits
/// for it (fetching it) instead of answering "Table does not exist".
#[actix_web::test]
async fn a_replica_that_missed_a_creation_waits_for_it_when_the_context_names_it() {
    // Generous causal wait: the replica may first have to be readmitted.
    let mut c = Options::default().causal_wait_ms(25_000).start(2).await;
    c.pause(1);
    c.wait_views(&[0], &c.expected_view(&[0])).await;
    let created = create_new(&c, 0, "late", false, &json!("")).await;
    let r = put_in(&c, 0, Some("late"), "k", json!("v"), &created).await;
    let m = assert_write(&r, 201, "Added successfully");
    c.resume(1);
    // Right away: replica 1 cannot have had the creation before now.
    let r = put_in(&c, 1, Some("late"), "k2", json!("v2"), &created).await;
    assert_write(&r, 201, "Added successfully");
    let r = get_in(&c, 1, Some("late"), "k", &m).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["value"], json!("v"), "{r:?}");
    assert_listing(
        &list(&c, 1, &r.ctx()).await,
        &json!([entry("late", false, 2)]),
    );
    c.wait_views(&[0, 1], &c.expected_view(&[0, 1])).await;
    wait_listing(&c, &[0, 1], &json!([entry("late", false, 2)])).await;
}

/// Conditional writes in a table behave as in the default store:
/// `If-None-Match: *` creates only (412 after), `If-Match` writes only over
/// the version named, ETags on GET and PUT, a condition judged at the
/// replica that takes it once the context is met; the same key elsewhere
/// is a different key for conditions too.
#[actix_web::test]
async fn conditional_writes_in_a_table() {
    let c = TestCluster::start(2).await;
    let m = create_new(&c, 0, "cond", false, &json!("")).await;
    let path = key_path(Some("cond"), "k");
    let put_if = |i: usize, value: Value, ctx: &Value, header: (&'static str, String)| {
        let body = json!({"value": value, "causal-metadata": ctx});
        let path = path.clone();
        let c = &c;
        async move {
            c.request(
                i,
                Method::PUT,
                &path,
                &[(header.0, header.1.as_str())],
                Body::Json(body),
            )
            .await
        }
    };

    let created = put_if(0, json!("v1"), &m, ("If-None-Match", "*".into())).await;
    assert_eq!(created.status, 201, "{created:?}");
    let v1 = etag(&created);
    let got = get_in(&c, 0, Some("cond"), "k", &created.ctx()).await;
    assert_eq!(etag(&got), v1, "{got:?}");
    // Create-only again (at the other replica, once the context is met):
    // refused, nothing written.
    let again = put_if(
        1,
        json!("v2"),
        &created.ctx(),
        ("If-None-Match", "*".into()),
    )
    .await;
    assert_unmet(&again, "a second create in the table");
    let r = get_in(&c, 1, Some("cond"), "k", &again.ctx()).await;
    assert_eq!(r.body["value"], json!("v1"), "{r:?}");
    assert_eq!(etag(&r), v1, "the same tag at every replica: {r:?}");

    // The same key in the default store is absent: create-only succeeds.
    let r = c
        .request(
            0,
            Method::PUT,
            &kv_path("k"),
            &[("If-None-Match", "*")],
            Body::Json(json!({"value": "default", "causal-metadata": again.ctx()})),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let default_tag = etag(&r);
    // The default store's tag does not name the table's version.
    assert_ne!(default_tag, v1, "two writes, two tags");
    let r = put_if(0, json!("x"), &r.ctx(), ("If-Match", default_tag.clone())).await;
    assert_unmet(&r, "If-Match with the default store's tag");

    // If-Match the current version: written, new tag.
    let updated = put_if(1, json!("v2"), &r.ctx(), ("If-Match", v1.clone())).await;
    assert_eq!(updated.status, 200, "{updated:?}");
    let v2 = etag(&updated);
    assert_ne!(v1, v2);
    // Stale If-Match: refused, the current tag named.
    let stale = put_if(0, json!("v3"), &updated.ctx(), ("If-Match", v1.clone())).await;
    assert_unmet(&stale, "a stale If-Match in the table");
    assert_eq!(stale.body["etag"], json!(v2), "{stale:?}");
    // A GET naming the current version is not modified.
    let r = c
        .request(0, Method::GET, &path, &[("If-None-Match", &v2)], Body::None)
        .await;
    assert_eq!(r.status, 304, "{r:?}");
    // Conditional DELETE: stale refused, current accepted.
    let body = Body::Json(json!({"causal-metadata": stale.ctx()}));
    let r = c
        .request(0, Method::DELETE, &path, &[("If-Match", &v1)], body)
        .await;
    assert_unmet(&r, "a stale conditional delete in the table");
    let body = Body::Json(json!({"causal-metadata": stale.ctx()}));
    let r = c
        .request(0, Method::DELETE, &path, &[("If-Match", &v2)], body)
        .await;
    let m = assert_write(&r, 200, "Deleted successfully");
    // Absent again: create-only succeeds.
    let r = put_if(1, json!("v4"), &m, ("If-None-Match", "*".into())).await;
    assert_eq!(r.status, 201, "{r:?}");
    // The default store's key was never touched.
    let r = c.get(1, "k", &r.ctx()).await;
    assert_eq!(r.body["value"], json!("default"), "{r:?}");
    assert_eq!(etag(&r), default_tag);
}
