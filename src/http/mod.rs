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
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde_json::json;
use tracing::Span;
use tracing_actix_web::{RequestId, RootSpanBuilder};

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

/// The span of every request, opened by [`tracing_actix_web::TracingLogger`]
/// (which draws the request id): at debug level, so that it costs next to
/// nothing unless debug logging is on, and every log line of the request
/// carries the id. A debug line says how it ended.
pub struct RequestSpan;

impl RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let id = request.extensions().get::<RequestId>().copied();
        tracing::debug_span!(
            "request",
            id = %id.map(|id| id.to_string()).unwrap_or_default(),
            method = %request.method(),
            path = %request.path(),
        )
    }

    fn on_request_end<B: MessageBody>(
        span: Span,
        outcome: &Result<ServiceResponse<B>, actix_web::Error>,
    ) {
        let status = match outcome {
            Ok(response) => response.status(),
            Err(error) => error.as_response_error().status_code(),
        };
        span.in_scope(|| tracing::debug!(status = status.as_u16(), "answered"));
    }
}

/// Counts every request and times it, for `/metrics`.
pub async fn record_metrics(
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
    let response = next.call(req).await?;
    if let Some(node) = node {
        node.metrics.record_request(
            &route,
            method.as_str(),
            response.status().as_u16(),
            started.elapsed(),
        );
    }
    Ok(response)
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use actix_web::{test, App};
    use tracing_actix_web::TracingLogger;

    use super::*;

    #[actix_web::test]
    async fn every_request_is_logged_under_its_own_id_with_its_status() {
        let log = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || Writer(sink.clone()))
            .finish();
        let _default = tracing::subscriber::set_default(subscriber);
        let app = test::init_service(
            App::new()
                .wrap(TracingLogger::<RequestSpan>::new())
                .route("/here", web::get().to(|| async { "ok" })),
        )
        .await;
        for uri in ["/here", "/here", "/elsewhere"] {
            test::call_service(&app, test::TestRequest::get().uri(uri).to_request()).await;
        }

        let text = String::from_utf8(log.lock().unwrap().clone()).unwrap();
        let answered: Vec<&str> = text.lines().filter(|l| l.contains("answered")).collect();
        assert_eq!(answered.len(), 3, "{text}");
        let ids: std::collections::BTreeSet<&str> = answered
            .iter()
            .map(|line| {
                let rest = line.split("request{id=").nth(1).expect("a request id");
                rest.split_whitespace().next().unwrap()
            })
            .collect();
        assert_eq!(ids.len(), 3, "ids differ between requests: {text}");
        assert!(answered[0].contains("status=200") && answered[0].contains("path=/here"));
        assert!(answered[2].contains("status=404"), "{text}");
    }

    struct Writer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Writer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
