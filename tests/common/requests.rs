//! Requests to one replica of a test cluster: key-value, view, health,
//! readiness and metrics.

use awc::http::Method;
use serde_json::{json, Value};

use super::{
    kv_path, request, request_with_timeout, Body, Reply, TestCluster, POLL_REQUEST_TIMEOUT,
};

impl TestCluster {
    /// Sends a request to replica `i`.
    pub async fn request(
        &self,
        i: usize,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Body,
    ) -> Reply {
        request(self.addr(i), method.clone(), path, headers, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {path} at replica {i}: {e}"))
    }

    /// `PUT /key-value-store/<key>` with `{"value": value, "causal-metadata": ctx}`.
    pub async fn put(&self, i: usize, key: &str, value: Value, ctx: &Value) -> Reply {
        let body = json!({"value": value, "causal-metadata": ctx});
        self.request(i, Method::PUT, &kv_path(key), &[], Body::Json(body))
            .await
    }

    /// `GET /key-value-store/<key>` with `{"causal-metadata": ctx}`.
    pub async fn get(&self, i: usize, key: &str, ctx: &Value) -> Reply {
        let body = json!({"causal-metadata": ctx});
        self.request(i, Method::GET, &kv_path(key), &[], Body::Json(body))
            .await
    }

    /// `DELETE /key-value-store/<key>` with `{"causal-metadata": ctx}`.
    pub async fn delete(&self, i: usize, key: &str, ctx: &Value) -> Reply {
        let body = json!({"causal-metadata": ctx});
        self.request(i, Method::DELETE, &kv_path(key), &[], Body::Json(body))
            .await
    }

    /// The view string replica `i` prints.
    pub async fn view(&self, i: usize) -> String {
        let r = self
            .request(i, Method::GET, "/key-value-store-view", &[], Body::None)
            .await;
        assert_eq!(r.status, 200, "view GET at replica {i}: {r:?}");
        r.body["view"]
            .as_str()
            .unwrap_or_else(|| panic!("view is not a string: {r:?}"))
            .to_string()
    }

    /// The view string replica `i` prints, or why it could not be had
    /// quickly (for polling).
    pub async fn try_view(&self, i: usize) -> Result<String, String> {
        let r = request_with_timeout(
            self.addr(i),
            Method::GET,
            "/key-value-store-view",
            &[],
            Body::None,
            POLL_REQUEST_TIMEOUT,
        )
        .await?;
        match r.body["view"].as_str() {
            Some(v) if r.status == 200 => Ok(v.to_string()),
            _ => Err(format!("{} {}", r.status, r.text)),
        }
    }

    /// A GET without context that gives up quickly (for polling).
    pub async fn try_get(&self, i: usize, key: &str) -> Result<Reply, String> {
        request_with_timeout(
            self.addr(i),
            Method::GET,
            &kv_path(key),
            &[],
            Body::Json(json!({"causal-metadata": ""})),
            POLL_REQUEST_TIMEOUT,
        )
        .await
    }

    /// `/health` of replica `i`.
    pub async fn health(&self, i: usize) -> Value {
        let r = self
            .request(i, Method::GET, "/health", &[], Body::None)
            .await;
        assert_eq!(r.status, 200, "health of replica {i}: {r:?}");
        r.body
    }

    /// `/health` of replica `i`, or why it could not be had quickly (for
    /// polling).
    pub async fn try_health(&self, i: usize) -> Result<Value, String> {
        let r = request_with_timeout(
            self.addr(i),
            Method::GET,
            "/health",
            &[],
            Body::None,
            POLL_REQUEST_TIMEOUT,
        )
        .await?;
        if r.status == 200 && r.body.is_object() {
            Ok(r.body)
        } else {
            Err(format!("health of replica {i}: {} {}", r.status, r.text))
        }
    }

    /// `GET /ready` at replica `i`, giving up quickly (for polling).
    pub async fn try_ready(&self, i: usize) -> Result<Reply, String> {
        request_with_timeout(
            self.addr(i),
            Method::GET,
            "/ready",
            &[],
            Body::None,
            POLL_REQUEST_TIMEOUT,
        )
        .await
    }

    /// The value of the unlabelled metric `name` in `/metrics` of replica `i`.
    pub async fn metric(&self, i: usize, name: &str) -> Result<f64, String> {
        let r = request_with_timeout(
            self.addr(i),
            Method::GET,
            "/metrics",
            &[],
            Body::None,
            POLL_REQUEST_TIMEOUT,
        )
        .await?;
        if r.status != 200 {
            return Err(format!("metrics of replica {i}: {} {}", r.status, r.text));
        }
        r.text
            .lines()
            .find_map(|line| {
                let (metric, value) = line.split_once(' ')?;
                (metric == name).then(|| value.trim().parse::<f64>().ok())?
            })
            .ok_or_else(|| format!("no metric {name} at replica {i}"))
    }

    /// `PUT` (`add`) or `DELETE` (`!add`) of `address` through
    /// `/key-value-store-view` at replica `i`.
    pub async fn change_view(&self, i: usize, add: bool, address: &str) -> Reply {
        let method = if add { Method::PUT } else { Method::DELETE };
        let body = Body::Json(json!({"socket-address": address}));
        self.request(i, method, "/key-value-store-view", &[], body)
            .await
    }

    /// The whole log of the current (or last) process of replica `i`.
    pub fn log_text(&self, i: usize) -> String {
        std::fs::read_to_string(self.log(i)).unwrap_or_default()
    }
}

/// The addresses `/health` lists as suspects.
pub fn suspects(health: &Value) -> Vec<String> {
    health["suspects"]
        .as_array()
        .unwrap_or_else(|| panic!("/health has no suspects list: {health}"))
        .iter()
        .map(|s| s.as_str().expect("a suspect is an address").to_string())
        .collect()
}

/// A numeric field of `/health`.
pub fn health_count(health: &Value, field: &str) -> u64 {
    health[field]
        .as_u64()
        .unwrap_or_else(|| panic!("/health field {field:?} is not a count: {health}"))
}
