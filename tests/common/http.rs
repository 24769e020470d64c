//! One HTTP request to a replica on a fresh connection, and its answer.

use std::time::Duration;

use awc::http::Method;
use serde_json::Value;

use super::REQUEST_TIMEOUT;

/// A request body.
pub enum Body {
    /// No body.
    None,
    /// A JSON body (`Content-Type: application/json`).
    Json(Value),
    /// Raw bytes sent with `Content-Type: application/json`.
    Raw(Vec<u8>),
}

/// An answer.
#[derive(Clone, Debug)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The `Content-Type` header.
    pub content_type: Option<String>,
    /// The body as JSON (`Value::Null` if it is not JSON).
    pub body: Value,
    /// The body as text.
    pub text: String,
    /// The `ETag` header.
    pub etag: Option<String>,
}

impl Reply {
    /// The `causal-metadata` of the body (`Value::Null` if absent).
    pub fn ctx(&self) -> Value {
        self.body
            .get("causal-metadata")
            .cloned()
            .unwrap_or(Value::Null)
    }

    /// Asserts the body is JSON and says so in its `Content-Type`.
    pub fn assert_json(&self) -> &Self {
        assert!(
            self.content_type
                .as_deref()
                .is_some_and(|t| t.starts_with("application/json")),
            "Content-Type is not application/json: {self:?}"
        );
        assert!(
            serde_json::from_str::<Value>(&self.text).is_ok(),
            "body is not JSON: {self:?}"
        );
        self
    }
}

/// The path of `key`: `/key-value-store/<key percent-encoded as one segment>`.
pub fn kv_path(key: &str) -> String {
    format!("/key-value-store/{}", encode(key))
}

/// Percent-encodes `text` as one URL path segment or query value.
pub fn encode(text: &str) -> String {
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(text, SEGMENT).to_string()
}

/// Sends one request to `addr` with the default test timeout.
pub async fn request(
    addr: &str,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Body,
) -> Result<Reply, String> {
    request_with_timeout(addr, method, path, headers, body, REQUEST_TIMEOUT).await
}

/// Sends one request to `addr` on a fresh connection.
pub async fn request_with_timeout(
    addr: &str,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Body,
    timeout: Duration,
) -> Result<Reply, String> {
    let http = awc::Client::builder()
        .connector(awc::Connector::new().timeout(Duration::from_secs(5)))
        .disable_redirects()
        .timeout(timeout)
        .finish();
    let mut request = http.request(method, format!("http://{addr}{path}"));
    for (name, value) in headers {
        request = request.insert_header((*name, *value));
    }
    let sent = match body {
        Body::None => request.send().await,
        Body::Json(value) => request.send_json(&value).await,
        Body::Raw(bytes) => {
            request
                .insert_header(("content-type", "application/json"))
                .send_body(bytes)
                .await
        }
    };
    let mut response = sent.map_err(|e| e.to_string())?;
    let bytes = response
        .body()
        .limit(64 << 20)
        .await
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    Ok(Reply {
        status: response.status().as_u16(),
        content_type: header("content-type"),
        etag: header("etag"),
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    })
}
