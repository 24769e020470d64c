//! What a request gets back: a replica's [`Response`], the
//! [`ClientError`] when there is none to use, and the answers gathered
//! from several requests ([`ReplicaStatus`], [`Shards`]).

use serde_json::Value;

use crate::shard::ShardId;

/// What one replica said when asked for its health and readiness.
#[derive(Clone, Debug)]
pub struct ReplicaStatus {
    /// The replica's address.
    pub address: String,
    /// Whether the replica is in the view that was read.
    pub in_view: bool,
    /// Its `/health` answer, or why there was none.
    pub health: Result<Response, String>,
    /// Its `/ready` answer, or why there was none.
    pub ready: Result<Response, String>,
}

impl ReplicaStatus {
    /// Whether the replica is ready to serve the store's data: `/ready`
    /// answered 200 (yes) or 503 (no). A replica without `/ready` (a build
    /// before it) is judged by its `/health`: its `ready` field, else its
    /// `synced` field. `None` when neither says.
    pub fn readiness(&self) -> Option<bool> {
        match &self.ready {
            Ok(r) if r.status == 200 => return Some(true),
            Ok(r) if r.status == 503 => return Some(false),
            _ => {}
        }
        let health = self.health.as_ref().ok().filter(|h| h.status == 200)?;
        health.body["ready"]
            .as_bool()
            .or_else(|| health.body["synced"].as_bool())
    }
}

/// An answer from a replica.
#[derive(Clone, Debug, PartialEq)]
pub struct Response {
    /// The host that answered.
    pub host: String,
    /// The HTTP status code.
    pub status: u16,
    /// The JSON body (`Value::Null` when the body was not JSON).
    pub body: Value,
    /// The `ETag` header, as sent (quoted), if the answer had one.
    pub etag_header: Option<String>,
}

impl Response {
    /// An answer without an `ETag` header.
    pub fn new(host: impl Into<String>, status: u16, body: Value) -> Self {
        Response {
            host: host.into(),
            status,
            body,
            etag_header: None,
        }
    }

    /// The entity tag of the key's current version, quoted as in HTTP
    /// (`"9f2c0a1b3d4e5f60"`): the `ETag` header of a GET or PUT answer
    /// (or of a 304), else the `etag` field of a 412's body (the version
    /// that failed the condition; absent when the key holds no value).
    pub fn etag(&self) -> Option<&str> {
        self.etag_header
            .as_deref()
            .or_else(|| self.body.get("etag").and_then(Value::as_str))
    }

    /// Whether this is the 412 of a conditional write whose condition did
    /// not hold: nothing was written.
    pub fn precondition_failed(&self) -> bool {
        self.status == 412
    }

    /// The `value` field of a successful GET.
    pub fn value(&self) -> Option<&Value> {
        self.body.get("value")
    }

    /// The concurrent values (siblings) of a 300 answer to a GET in a
    /// table that keeps them: `None` for any other answer.
    pub fn values(&self) -> Option<&[Value]> {
        match self.body.get("values") {
            Some(Value::Array(values)) if self.status == 300 => Some(values),
            _ => None,
        }
    }

    /// The `causal-metadata` field, if present.
    pub fn metadata(&self) -> Option<&Value> {
        self.body.get("causal-metadata")
    }

    /// The `shard-id` of a key-value answer: the shard holding the key, in
    /// a sharded store (`None` in an unsharded one).
    pub fn shard_id(&self) -> Option<ShardId> {
        self.body
            .get("shard-id")
            .and_then(Value::as_u64)
            .and_then(|id| ShardId::try_from(id).ok())
    }
}

/// One shard, as [`Client::shards`](crate::client::Client::shards)
/// gathered it from one node.
#[derive(Clone, Debug, PartialEq)]
pub struct ShardInfo {
    /// The shard id.
    pub id: ShardId,
    /// Its members (`ip:port`), or why they could not be had.
    pub members: Result<Vec<String>, String>,
    /// How many keys it holds, or why that could not be had.
    pub key_count: Result<u64, String>,
}

/// Every shard of the store, and the shard of the node that was asked.
#[derive(Clone, Debug, PartialEq)]
pub struct Shards {
    /// The node that answered (every request went to it).
    pub host: String,
    /// Its shard; `None` while it is placed in none (a node started
    /// without `SHARD_COUNT`, waiting for `add-member`).
    pub node_shard: Option<ShardId>,
    /// The shards, in the order of their ids.
    pub shards: Vec<ShardInfo>,
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
    /// The request could not be made as asked (an invalid entity tag);
    /// nothing was sent.
    #[error("{0}")]
    Invalid(String),
    /// A host answered, but not with what was asked for (an error status,
    /// or a body without the expected field).
    #[error("{} answered {}: {}", .0.host, .0.status, .0.body)]
    Answer(Box<Response>),
}

/// Whether `response` is a 503 for a write that was made but not held by
/// as many replicas as asked: trying another replica would write again.
pub fn concern_not_met(response: &Response) -> bool {
    response.status == 503 && response.body.get("replicas-needed").is_some()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn readiness_comes_from_ready_then_from_health() {
        let answer = |status: u16, body: Value| Ok(Response::new("127.0.0.1:1", status, body));
        let replica = |health, ready| ReplicaStatus {
            address: "127.0.0.1:1".into(),
            in_view: true,
            health,
            ready,
        };
        let synced = |synced: bool| answer(200, json!({"status": "ok", "synced": synced}));
        let no_ready = || answer(404, json!({"error": "no such endpoint: /ready"}));
        // /ready decides, whatever /health says.
        let ready = answer(200, json!({"ready": true}));
        assert_eq!(replica(synced(false), ready).readiness(), Some(true));
        let joining = answer(503, json!({"ready": false, "error": "copying the state"}));
        assert_eq!(replica(synced(true), joining).readiness(), Some(false));
        // Without /ready: /health's "ready", else its "synced".
        let draining = answer(200, json!({"synced": true, "ready": false}));
        assert_eq!(replica(draining, no_ready()).readiness(), Some(false));
        assert_eq!(replica(synced(true), no_ready()).readiness(), Some(true));
        assert_eq!(replica(synced(false), no_ready()).readiness(), Some(false));
        assert_eq!(
            replica(synced(true), Err("timed out".into())).readiness(),
            Some(true)
        );
        // Nothing said: unknown.
        let down = || Err("connection refused".to_string());
        assert_eq!(replica(down(), down()).readiness(), None);
        assert_eq!(
            replica(answer(200, json!({})), no_ready()).readiness(),
            None
        );
    }

    #[test]
    fn the_etag_comes_from_the_header_else_from_a_412_body() {
        let mut put = Response::new("h", 200, json!({"message": "Updated successfully"}));
        assert_eq!(put.etag(), None);
        put.etag_header = Some("\"aa\"".into());
        assert_eq!(put.etag(), Some("\"aa\""));
        assert!(!put.precondition_failed());
        let unmet = Response::new(
            "h",
            412,
            json!({"error": "Precondition failed: the key exists (If-None-Match: *)",
                   "message": "Error in PUT", "causal-metadata": {"r#a": 1},
                   "etag": "\"bb\""}),
        );
        assert!(unmet.precondition_failed());
        assert_eq!(unmet.etag(), Some("\"bb\""));
        let absent = Response::new("h", 412, json!({"error": "Precondition failed: x"}));
        assert_eq!(absent.etag(), None);
    }

    #[test]
    fn only_a_300_has_siblings() {
        let body = json!({"doesExist": true, "message": "Retrieved successfully",
                          "values": ["a", 2], "causal-metadata": {"r#a": 2}});
        let answer = Response::new("h", 300, body.clone());
        assert_eq!(answer.values(), Some(&[json!("a"), json!(2)][..]));
        assert_eq!(answer.value(), None);
        assert_eq!(Response::new("h", 200, body).values(), None);
    }
}
