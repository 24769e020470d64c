//! What every request leaves behind: a tracing span with a request id, a
//! debug line when it is answered, and the request counter and latency
//! histogram of `/metrics`.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage};
use tracing::Span;
use tracing_actix_web::{RequestId, RootSpanBuilder};

use crate::metrics::{KV_ROUTE, TABLE_KV_ROUTE};
use crate::node::Node;

use super::kv;

/// The span of every request, opened by [`tracing_actix_web::TracingLogger`]
/// (which draws the request id): at debug level, so that it costs next to
/// nothing unless debug logging is on, and every log line of the request
/// carries the id. A debug line says how it ended.
pub struct RequestSpan;

impl RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        // Fields are only computed when the span is enabled (debug).
        tracing::debug_span!(
            "request",
            id = %request.extensions().get::<RequestId>().map(|id| id.to_string()).unwrap_or_default(),
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
    // A table's key requests: one route label, and the table's name for
    // the table's own counter.
    let table = table_of(req.path());
    let route: std::borrow::Cow<'static, str> = if is_kv {
        KV_ROUTE.into()
    } else if table.is_some() {
        TABLE_KV_ROUTE.into()
    } else if req.path().starts_with(super::tables::PREFIX) {
        match req.path().trim_end_matches('/') == super::tables::PREFIX {
            true => "/tables".into(),
            false => "/tables/{table}".into(),
        }
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
        let status = response.status().as_u16();
        node.metrics
            .record_request(&route, method.as_str(), status, started.elapsed());
        if let Some(table) = table {
            node.metrics
                .record_table_request(&table, method.as_str(), status);
        }
    }
    Ok(response)
}

/// The table named by a path to one of its keys
/// (`/tables/<name>/key-value-store/<key>`), if the name is valid.
fn table_of(path: &str) -> Option<String> {
    let rest = path
        .strip_prefix(super::tables::PREFIX)?
        .strip_prefix('/')?;
    let (name, rest) = rest.split_once('/')?;
    rest.strip_prefix(&kv::PREFIX[1..])?.strip_prefix('/')?;
    let name = percent_encoding::percent_decode_str(name).decode_utf8_lossy();
    crate::store::TableName::parse(&name).map(|n| n.as_str().to_string())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use actix_web::{test, App};
    use tracing_actix_web::TracingLogger;

    use actix_web::web;

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

    #[actix_web::test]
    async fn a_tables_key_path_names_its_table_and_nothing_else_does() {
        assert_eq!(
            table_of("/tables/users/key-value-store/k").as_deref(),
            Some("users")
        );
        assert_eq!(
            table_of("/tables/a%2Db/key-value-store/k").as_deref(),
            Some("a-b")
        );
        for path in [
            "/tables",
            "/tables/users",
            "/tables/users/other/k",
            "/tables/bad.name/key-value-store/k",
            "/key-value-store/k",
        ] {
            assert_eq!(table_of(path), None, "{path}");
        }
    }
}
