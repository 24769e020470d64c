//! What every answer must look like: the routes, JSON error bodies, and which statuses each may get.

use serde_json::{json, Value};

use crate::common::raw::RawReply;

/// Which kind of route a request went to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Route {
    /// `/key-value-store/<key>`.
    Kv,
    /// `/key-value-store-view`.
    View,
    /// Anything else (internal endpoints, malformed targets).
    Other,
}

/// Whether a response body is JSON. A body nested deeper than serde_json
/// parses by default (a stored deep value) counts as JSON.
fn is_json(body: &[u8]) -> bool {
    match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
        Ok(_) => true,
        Err(e) => e.to_string().contains("recursion limit"),
    }
}

/// Checks one answer against the contract: a 2xx; a 4xx whose body is JSON
/// with an `error` string (and `message: "Error in <METHOD>"` on the
/// key-value and view routes); or, when `may_503`, SPEC's 503.
fn check_answer(
    status: u16,
    content_type: Option<&str>,
    body: &[u8],
    method: &str,
    route: Route,
    may_503: bool,
) -> Result<(), String> {
    let json_type = content_type.is_some_and(|t| t.starts_with("application/json"));
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    match status {
        200..=299 => {
            if route != Route::Other && !(json_type && is_json(body)) {
                return Err(format!("{status} without a JSON body"));
            }
        }
        400..=499 => {
            if !json_type {
                return Err(format!("{status} with Content-Type {content_type:?}"));
            }
            let parsed = parsed.ok_or_else(|| format!("{status} body is not JSON"))?;
            if !parsed["error"].is_string() {
                return Err(format!("{status} body has no `error` string"));
            }
            if route != Route::Other && parsed["message"] != json!(format!("Error in {method}")) {
                return Err(format!("{status} body has no `message: Error in {method}`"));
            }
        }
        503 if may_503 => {
            let parsed = parsed.ok_or("503 body is not JSON")?;
            if parsed["error"] != json!("Causal dependencies not satisfied")
                || parsed["message"] != json!(format!("Error in {method}"))
                || parsed.get("causal-metadata").is_none()
            {
                return Err("503 body is not SPEC's".to_string());
            }
        }
        503 => return Err("503 although the request carried no context".to_string()),
        _ => return Err(format!("forbidden status {status}")),
    }
    Ok(())
}

/// [`check_answer`] for a raw reply, naming the reply on failure.
pub(crate) fn check_raw(
    r: &RawReply,
    method: &str,
    route: Route,
    may_503: bool,
) -> Result<(), String> {
    check_answer(
        r.status,
        r.header("content-type"),
        &r.body,
        method,
        route,
        may_503,
    )
    .map_err(|e| format!("{e}: {r:?}"))
}

/// [`check_answer`] for an awc reply.
pub(crate) fn check_reply(
    r: &crate::common::Reply,
    method: &str,
    route: Route,
    may_503: bool,
) -> Result<(), String> {
    check_answer(
        r.status,
        r.content_type.as_deref(),
        r.text.as_bytes(),
        method,
        route,
        may_503,
    )
    .map_err(|e| format!("{e}: {} {:?} {}", r.status, r.content_type, r.text))
}
