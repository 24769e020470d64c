//! A typed client for causalkv that carries the causal context for you.
//!
//! [`Client`] keeps the latest `causal-metadata` it was given and sends it
//! with every request, so a sequence of calls is causally ordered even when
//! they go to different replicas. It talks to a list of hosts and moves on
//! to the next one when a host is unreachable, times out, or answers 503.
//! Used by the end-to-end tests, and by the command-line client.

use std::time::Duration;

use awc::http::Method;
use serde_json::{json, Value};

/// Default time allowed for one request (a replica waits up to 10 s for
/// causal dependencies before answering 503).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// An answer from a replica.
#[derive(Clone, Debug, PartialEq)]
pub struct Response {
    /// The host that answered.
    pub host: String,
    /// The HTTP status code.
    pub status: u16,
    /// The JSON body (`Value::Null` when the body was not JSON).
    pub body: Value,
}

impl Response {
    /// The `value` field of a successful GET.
    pub fn value(&self) -> Option<&Value> {
        self.body.get("value")
    }

    /// The `causal-metadata` field, if present.
    pub fn metadata(&self) -> Option<&Value> {
        self.body.get("causal-metadata")
    }
}

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No host answered (each failed for the reason listed).
    #[error("no replica reachable: {0}")]
    Unreachable(String),
    /// The client was given no host.
    #[error("no host given")]
    NoHosts,
}

/// A causal-context-carrying client over a list of hosts.
pub struct Client {
    http: awc::Client,
    hosts: Vec<String>,
    context: Value,
}

impl Client {
    /// A client for `hosts` (`ip:port` each), tried in order.
    pub fn new<S: Into<String>>(hosts: impl IntoIterator<Item = S>) -> Self {
        Self::with_timeout(hosts, DEFAULT_TIMEOUT)
    }

    /// Like [`Client::new`], with a per-request timeout.
    pub fn with_timeout<S: Into<String>>(
        hosts: impl IntoIterator<Item = S>,
        timeout: Duration,
    ) -> Self {
        let http = awc::Client::builder()
            .connector(awc::Connector::new().timeout(Duration::from_secs(2)))
            .timeout(timeout)
            .finish();
        Client {
            http,
            hosts: hosts.into_iter().map(Into::into).collect(),
            context: Value::String(String::new()),
        }
    }

    /// The causal context the next request will carry.
    pub fn context(&self) -> &Value {
        &self.context
    }

    /// Replaces the causal context (e.g. one loaded from a session file).
    pub fn set_context(&mut self, context: Value) {
        self.context = context;
    }

    /// Puts `value` at `key`.
    pub async fn put(&mut self, key: &str, value: Value) -> Result<Response, ClientError> {
        let body = json!({"value": value, "causal-metadata": self.context});
        self.causal(Method::PUT, key, body).await
    }

    /// Gets `key`.
    pub async fn get(&mut self, key: &str) -> Result<Response, ClientError> {
        let body = json!({"causal-metadata": self.context});
        self.causal(Method::GET, key, body).await
    }

    /// Deletes `key`.
    pub async fn delete(&mut self, key: &str) -> Result<Response, ClientError> {
        let body = json!({"causal-metadata": self.context});
        self.causal(Method::DELETE, key, body).await
    }

    /// The view of the first host that answers.
    pub async fn view(&self) -> Result<Response, ClientError> {
        self.send(Method::GET, "/key-value-store-view", None).await
    }

    /// Adds `address` to the view.
    pub async fn view_add(&self, address: &str) -> Result<Response, ClientError> {
        let body = json!({"socket-address": address});
        self.send(Method::PUT, "/key-value-store-view", Some(body))
            .await
    }

    /// Removes `address` from the view.
    pub async fn view_remove(&self, address: &str) -> Result<Response, ClientError> {
        let body = json!({"socket-address": address});
        self.send(Method::DELETE, "/key-value-store-view", Some(body))
            .await
    }

    /// The health of the first host that answers.
    pub async fn health(&self) -> Result<Response, ClientError> {
        self.send(Method::GET, "/health", None).await
    }

    async fn causal(
        &mut self,
        method: Method,
        key: &str,
        body: Value,
    ) -> Result<Response, ClientError> {
        let path = format!("/key-value-store/{}", encode_key(key));
        let response = self.send(method, &path, Some(body)).await?;
        if let Some(metadata) = response.metadata() {
            if response.status != 503 {
                self.context = metadata.clone();
            }
        }
        Ok(response)
    }

    /// Sends a request to the first host that answers with anything but
    /// 503; if every host fails, the last 503 is returned, else an error.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Response, ClientError> {
        if self.hosts.is_empty() {
            return Err(ClientError::NoHosts);
        }
        let mut failures = Vec::new();
        let mut unavailable = None;
        for host in &self.hosts {
            match raw(&self.http, host, method.clone(), path, body.as_ref()).await {
                Ok(response) if response.status == 503 => unavailable = Some(response),
                Ok(response) => return Ok(response),
                Err(e) => failures.push(format!("{host}: {e}")),
            }
        }
        unavailable.ok_or_else(|| ClientError::Unreachable(failures.join("; ")))
    }
}

/// Sends one request to one host, without failover.
pub async fn raw(
    http: &awc::Client,
    host: &str,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Result<Response, String> {
    let request = http.request(method, format!("http://{host}{path}"));
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
    Ok(Response {
        host: host.to_string(),
        status: response.status().as_u16(),
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
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
    #[test]
    fn keys_are_encoded_as_one_segment() {
        assert_eq!(super::encode_key("a/b c"), "a%2Fb%20c");
        assert_eq!(super::encode_key("plain-key_1.x~"), "plain-key_1.x~");
        assert_eq!(super::encode_key("é"), "%C3%A9");
    }
}
