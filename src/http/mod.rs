//! The actix adapters: parse requests into domain types, call the node,
//! print the results. Nothing here decides anything.

pub mod internal;
pub mod kv;
pub mod ops;
pub mod view;

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde_json::json;
use tracing::Instrument;

use crate::error::{ApiError, Error};
use crate::metrics::KV_ROUTE;
use crate::node::Node;

/// Registers every route of the node.
pub fn configure(cfg: &mut web::ServiceConfig, node: web::Data<Node>) {
    cfg.app_data(node)
        .configure(kv::routes)
        .configure(view::routes)
        .configure(internal::routes)
        .configure(ops::routes)
        .default_service(web::to(not_found));
}

/// Wraps every request: a tracing span with a request id (so every log line
/// of the request carries it), a debug line when it ends, and the request
/// counter and latency histogram.
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    // Key-value requests first: finding a route's pattern costs a walk of
    // the routes and an allocation.
    let is_kv = req
        .path()
        .strip_prefix(kv::PREFIX)
        .is_some_and(|tail| tail.starts_with('/'));
    let route: std::borrow::Cow<'static, str> = if is_kv {
        KV_ROUTE.into()
    } else {
        match req.match_pattern() {
            Some(pattern) => pattern.into(),
            None => "unmatched".into(),
        }
    };
    let method = req.method().clone();
    let node = req.app_data::<web::Data<Node>>().cloned();
    // Field values are only computed when the span is enabled (debug).
    let span = tracing::debug_span!("request", id = next_request_id(), %method, path = %req.path());
    let response = next.call(req).instrument(span.clone()).await?;
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    span.in_scope(|| tracing::debug!(%status, micros = elapsed.as_micros() as u64, "answered"));
    if let Some(node) = node {
        node.metrics
            .record_request(&route, method.as_str(), status, elapsed);
    }
    Ok(response)
}

/// A request id unique within this process: a counter, cheap enough for
/// every request (no random numbers, no allocation until it is printed).
fn next_request_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

pub(super) async fn not_found(req: HttpRequest) -> HttpResponse {
    HttpResponse::NotFound().json(json!({
        "error": format!("no such endpoint: {}", req.path()),
        "message": format!("Error in {}", req.method()),
    }))
}

/// Reads a request body of at most `limit` bytes; larger bodies are a 400.
pub async fn read_body(
    mut payload: web::Payload,
    limit: usize,
    method: &Method,
) -> Result<web::Bytes, ApiError> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::new(
                Error::BadRequest(format!("could not read the body: {e}")),
                method,
            )
        })?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::new(
                Error::BadRequest(format!("Request body is larger than {limit} bytes")),
                method,
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Decodes a JSON object request body; an empty body decodes as
/// `T::default()`. Anything else (not UTF-8, not an object) is a 400.
pub fn parse_json<'a, T: serde::Deserialize<'a> + Default>(
    body: &'a [u8],
    method: &Method,
) -> Result<T, ApiError> {
    let bad = |text: String| ApiError::new(Error::BadRequest(text), method);
    let text = std::str::from_utf8(body)
        .map_err(|e| bad(format!("Malformed JSON body: not UTF-8 ({e})")))?;
    let text = text.trim_start();
    if text.is_empty() {
        return Ok(T::default());
    }
    // Structs would also accept a JSON array of their fields: refuse it.
    if !text.starts_with('{') {
        return Err(bad("Malformed JSON body: expected a JSON object".into()));
    }
    serde_json::from_str(text).map_err(|e| bad(format!("Malformed JSON body: {e}")))
}
