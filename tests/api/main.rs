//! End-to-end tests of the REST API against real replica processes: every
//! row of SPEC's key-value and view tables, the error cases, the GET
//! context extensions, the cluster token and the start-up configuration.

#[path = "../common/mod.rs"]
mod common;

mod causal;
mod conditional;
mod kv;
mod requests;
mod siblings;
mod startup;
mod tables;
mod token;
mod view;

use serde_json::{json, Value};

use common::Reply;

/// The sorted field names of a JSON object body.
pub(crate) fn fields(reply: &Reply) -> Vec<String> {
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
pub(crate) fn assert_write(reply: &Reply, status: u16, message: &str) -> Value {
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
pub(crate) fn assert_bad_request(reply: &Reply, method: &str) {
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

pub(crate) fn not_found(method: &str, ctx: &Value) -> Value {
    json!({
        "doesExist": false,
        "error": "Key does not exist",
        "message": format!("Error in {method}"),
        "causal-metadata": ctx,
    })
}
