//! Blocking HTTP to the replicas (usable from plain threads), and polling
//! with a deadline.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{kv_path, Reply, POLL, POLL_REQUEST_TIMEOUT, REQUEST_TIMEOUT};

/// How long a request may take.
#[derive(Clone, Copy)]
pub struct Timeout(&'static LazyLock<ureq::Agent>);

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        // A fresh connection per request: a pooled one may lead to a
        // process that was killed since.
        .max_idle_connections(0)
        .max_idle_connections_per_host(0)
        .timeout_connect(Some(Duration::from_secs(2)))
        .timeout_global(Some(timeout))
        .build()
        .into()
}

static REQUEST_AGENT: LazyLock<ureq::Agent> = LazyLock::new(|| agent(REQUEST_TIMEOUT));
static POLLING_AGENT: LazyLock<ureq::Agent> = LazyLock::new(|| agent(POLL_REQUEST_TIMEOUT));

/// Above the replicas' causal wait: a 503 is seen, not a client timeout.
pub const REQUEST: Timeout = Timeout(&REQUEST_AGENT);
/// For polling: a replica that does not answer must not stall a wait.
pub const POLLING: Timeout = Timeout(&POLLING_AGENT);

/// Sends `method path` to `addr` with `body` as JSON (GET and DELETE
/// included: the store takes the context in the body).
pub fn call(
    method: &str,
    addr: &str,
    path: &str,
    body: Option<&Value>,
    timeout: Timeout,
) -> Result<Reply, String> {
    let agent: &ureq::Agent = timeout.0;
    let url = format!("http://{addr}{path}");
    let sent = match (method, body) {
        ("GET", None) => agent.get(&url).call(),
        ("GET", Some(b)) => agent
            .get(&url)
            .force_send_body()
            .header("content-type", "application/json")
            .send(b.to_string()),
        ("PUT", Some(b)) => agent
            .put(&url)
            .header("content-type", "application/json")
            .send(b.to_string()),
        ("DELETE", Some(b)) => agent
            .delete(&url)
            .force_send_body()
            .header("content-type", "application/json")
            .send(b.to_string()),
        _ => panic!("unsupported request {method} with body {body:?}"),
    };
    let mut response = sent.map_err(|e| format!("{method} {url}: {e}"))?;
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (content_type, etag) = (header("content-type"), header("etag"));
    let bytes = response
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_vec()
        .map_err(|e| format!("{method} {url}: reading the body: {e}"))?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    Ok(Reply {
        status,
        content_type,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
        etag,
    })
}

/// `PUT /key-value-store/<key>` with `{"value": value, "causal-metadata": ctx}`.
pub fn put(addr: &str, key: &str, value: &Value, ctx: &Value) -> Result<Reply, String> {
    let body = json!({"value": value, "causal-metadata": ctx});
    call("PUT", addr, &kv_path(key), Some(&body), REQUEST)
}

/// `DELETE /key-value-store/<key>` with `{"causal-metadata": ctx}`.
pub fn delete(addr: &str, key: &str, ctx: &Value) -> Result<Reply, String> {
    let body = json!({"causal-metadata": ctx});
    call("DELETE", addr, &kv_path(key), Some(&body), REQUEST)
}

/// `GET /key-value-store/<key>` with `{"causal-metadata": ctx}`.
pub fn get(addr: &str, key: &str, ctx: &Value) -> Result<Reply, String> {
    let body = json!({"causal-metadata": ctx});
    call("GET", addr, &kv_path(key), Some(&body), REQUEST)
}

/// A GET without context that gives up quickly (for polling).
pub fn peek(addr: &str, key: &str) -> Result<Reply, String> {
    let body = json!({"causal-metadata": ""});
    call("GET", addr, &kv_path(key), Some(&body), POLLING)
}

/// Calls `check` every [`POLL`] until it returns `Ok`; panics after
/// `timeout` naming `what` and the last error.
pub fn poll<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    let max_polls = (timeout.as_millis() / POLL.as_millis()) as usize + 1;
    let mut last = String::from("never checked");
    for _ in 0..max_polls {
        match check() {
            Ok(value) => return value,
            Err(e) => last = e,
        }
        if start.elapsed() > timeout {
            break;
        }
        std::thread::sleep(POLL);
    }
    panic!(
        "timed out after {:?} waiting for {what}; last: {last}",
        start.elapsed()
    );
}

/// Waits until every replica of `addrs`, read without context, holds
/// what `expected` says for each key: `Some(v)` (200 with value `v`) or
/// `None` (404).
pub fn wait_contents(addrs: &[String], expected: &[(String, Option<Value>)]) {
    poll(
        crate::common::DEADLINE,
        &format!("{} keys at {addrs:?}", expected.len()),
        || {
            for addr in addrs {
                for (key, want) in expected {
                    let r = peek(addr, key)?;
                    let ok = match want {
                        Some(v) => r.status == 200 && r.body.get("value") == Some(v),
                        None => r.status == 404,
                    };
                    if !ok {
                        return Err(format!(
                            "{addr} key {key:?}: want {want:?}, got {} {}",
                            r.status, r.text
                        ));
                    }
                }
            }
            Ok(())
        },
    )
}

/// The replica id `addr#incarnation` split at `#`.
pub fn split_id(id: &str) -> (&str, &str) {
    id.split_once('#')
        .unwrap_or_else(|| panic!("replica id {id:?} is not addr#incarnation"))
}
