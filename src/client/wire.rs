//! One request to one host, without failover ([`raw`]): the HTTP client,
//! the `ETag` header read, keys encoded as path segments.

use std::time::Duration;

use awc::http::Method;
use serde_json::Value;

use super::response::Response;

/// An HTTP client allowing `timeout` for each request (2 s to connect).
pub(super) fn http_client(timeout: Duration) -> awc::Client {
    awc::Client::builder()
        .connector(awc::Connector::new().timeout(Duration::from_secs(2)))
        .timeout(timeout)
        .finish()
}

/// Sends one request to one host, without failover.
pub async fn raw(
    http: &awc::Client,
    host: &str,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Result<Response, String> {
    raw_with_headers(http, host, method, path, body, &[]).await
}

/// [`raw`], with `headers` (name, value) added to the request.
pub async fn raw_with_headers(
    http: &awc::Client,
    host: &str,
    method: Method,
    path: &str,
    body: Option<&Value>,
    headers: &[(&str, &str)],
) -> Result<Response, String> {
    let mut request = http.request(method, format!("http://{host}{path}"));
    for &(name, value) in headers {
        request = request.insert_header((name, value));
    }
    let sent = match body {
        Some(body) => request.send_json(body).await,
        None => request.send().await,
    };
    let mut response = sent.map_err(|e| e.to_string())?;
    let bytes = response
        .body()
        .limit(1 << 30)
        .await
        .map_err(|e| e.to_string())?;
    let etag_header = response
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    Ok(Response {
        host: host.to_string(),
        status: response.status().as_u16(),
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        etag_header,
    })
}

/// Percent-encodes a key for use as one URL path segment.
pub fn encode_key(key: &str) -> String {
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(key, SEGMENT).to_string()
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn keys_are_encoded_as_one_segment() {
        assert_eq!(encode_key("a/b c"), "a%2Fb%20c");
        assert_eq!(encode_key("plain-key_1.x~"), "plain-key_1.x~");
        assert_eq!(encode_key("é"), "%C3%A9");
    }
}
