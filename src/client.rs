//! A typed client for causalkv that carries the causal context for you.
//!
//! [`Client`] keeps the latest `causal-metadata` it was given and sends it
//! with every request, so a sequence of calls is causally ordered even when
//! they go to different replicas. It talks to a list of hosts and moves on
//! to the next one when a host is unreachable, times out, or answers 503.
//! The shard endpoints have typed methods too ([`Client::shard_ids`],
//! [`Client::shards`], [`Client::reshard`], ...).
//!
//! Conditional writes: [`Client::put_if`] and [`Client::delete_if`] send a
//! [`Precondition`] (`If-None-Match: *` or `If-Match`); when it does not
//! hold, the answer is a 412 ([`Response::precondition_failed`]) naming the
//! key's current version ([`Response::etag`]), and its context is kept like
//! any answer's. GET and PUT answers carry the version's entity tag
//! ([`Response::etag`]); [`Client::get_if_none_match`] asks for a value
//! only if it changed.
//!
//! Tables: [`Client::set_table`] sends the key requests to a table's keys
//! (`/tables/<name>/key-value-store/<key>`); [`Client::create_table`],
//! [`Client::list_tables`] and [`Client::drop_table`] carry the context
//! like the key requests. A GET of a key with concurrent values in a table
//! that keeps siblings answers 300 with all of them ([`Response::values`]).
//! Used by the end-to-end tests, and by the command-line client `kvctl`
//! (see [`crate::cli`]), which also keeps the context between runs in a
//! session file ([`crate::cli::session`]).

use std::time::Duration;

use awc::http::Method;
use serde_json::{json, Value};

use crate::address::SocketAddress;
use crate::causal::{context, CausalContext};
use crate::shard::ShardId;

/// Default time allowed for one request (a replica waits up to 10 s for
/// causal dependencies before answering 503).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// The hosts a client talks to when told nothing else: the three replicas
/// of the README's quick start (bare ports take the IP of the host before).
pub const DEFAULT_HOSTS: &str = "127.0.0.1:8082,8083,8084";

/// Time allowed for each replica's `/health` when gathering a cluster's
/// status (a dead replica must not stall the others' report).
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(3);

/// Least time allowed for a reshard request: a reshard answers once
/// every key has moved (each node's step may take up to 120 s), so the
/// per-request timeout is raised to this for it.
pub const RESHARD_TIMEOUT: Duration = Duration::from_secs(150);

/// Parses a comma-separated host list such as `10.0.0.2:8085,8086`.
///
/// A bare port means that port on the host of the entry before it
/// (`127.0.0.1` when it comes first). Empty items and duplicates are
/// dropped; the order is kept, since it is the order hosts are tried in.
pub fn parse_hosts(text: &str) -> Result<Vec<String>, String> {
    let mut hosts: Vec<String> = Vec::new();
    let mut last_host = "127.0.0.1".to_string();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let full = if item.bytes().all(|b| b.is_ascii_digit()) {
            format!("{last_host}:{item}")
        } else {
            item.to_string()
        };
        let address = SocketAddress::parse(&full).map_err(|e| format!("invalid host: {e}"))?;
        let canonical = address.as_str().to_string();
        if let Some((host, _port)) = canonical.rsplit_once(':') {
            last_host = host.to_string();
        }
        if !hosts.contains(&canonical) {
            hosts.push(canonical);
        }
    }
    if hosts.is_empty() {
        return Err("no host given".into());
    }
    Ok(hosts)
}

/// Merges two causal contexts (`causal-metadata` values): the result
/// requires every write either requires (pointwise maximum), printed
/// canonically. Fails if either is malformed.
pub fn merge_contexts(a: &Value, b: &Value) -> Result<Value, String> {
    let a = CausalContext::parse(Some(a))?;
    let b = CausalContext::parse(Some(b))?;
    let mut clock = a.clock().clone();
    clock.merge(b.clock());
    Ok(context::print(&clock))
}

/// Whether a context requires no write at all (`""`, `null`, `{}`).
pub fn context_is_empty(context: &Value) -> bool {
    CausalContext::parse(Some(context)).is_ok_and(|c| c.clock().is_empty())
}

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

/// One shard, as [`Client::shards`] gathered it from one node.
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

/// The condition of a conditional write ([`Client::put_if`],
/// [`Client::delete_if`]): the replica that takes the write makes it only
/// if the condition holds there, once the request's context is met, and
/// answers 412 otherwise. Judged at that replica alone: conditional writes
/// made concurrently at two replicas can both succeed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Precondition {
    /// Only if the key holds no value (`If-None-Match: *`): create, never
    /// overwrite.
    Absent,
    /// Only if the key's current version has this entity tag, quoted
    /// (`If-Match: "<etag>"`); `*`: whatever its version, so only if the
    /// key holds a value. Made by [`Precondition::matching`].
    Matches(String),
}

impl Precondition {
    /// `If-Match` naming `tag`, quoted if it was given without quotes (see
    /// [`quote_etag`]).
    pub fn matching(tag: &str) -> Result<Self, String> {
        quote_etag(tag).map(Precondition::Matches)
    }

    /// The request header that carries the condition: name and value.
    pub fn header(&self) -> (&'static str, &str) {
        match self {
            Precondition::Absent => ("if-none-match", "*"),
            Precondition::Matches(tag) => ("if-match", tag),
        }
    }
}

/// An entity tag as a request header carries it: `"<tag>"`, quoted if it
/// was given bare (`9f2c0a1b3d4e5f60` becomes `"9f2c0a1b3d4e5f60"`); `*`
/// and weak tags (`W/"<tag>"`) are kept as they are. Refuses an empty tag
/// and one with a space, a control character, a quote or a comma inside.
pub fn quote_etag(tag: &str) -> Result<String, String> {
    let tag = tag.trim();
    if tag == "*" {
        return Ok(tag.to_string());
    }
    let weak = tag.starts_with("W/");
    let inner = tag.strip_prefix("W/").unwrap_or(tag);
    let bare = match inner.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(bare) => bare,
        None if weak => return Err(format!("invalid entity tag {tag:?}: W/ needs a quoted tag")),
        None => inner,
    };
    if bare.is_empty() {
        return Err("an entity tag cannot be empty".into());
    }
    if let Some(c) = bare
        .chars()
        .find(|&c| !c.is_ascii_graphic() || c == '"' || c == ',')
    {
        return Err(format!(
            "invalid entity tag {tag:?}: {c:?} is not allowed in a tag"
        ));
    }
    Ok(if weak {
        format!("W/\"{bare}\"")
    } else {
        format!("\"{bare}\"")
    })
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

/// A causal-context-carrying client over a list of hosts.
pub struct Client {
    http: awc::Client,
    timeout: Duration,
    hosts: Vec<String>,
    context: Value,
    /// The write concern sent with writes (`w`), if not the default.
    write_concern: Option<String>,
    /// The table whose keys the key requests name (`None`: the default).
    table: Option<String>,
}

/// Whether `response` is a 503 for a write that was made but not held by
/// as many replicas as asked: trying another replica would write again.
pub fn concern_not_met(response: &Response) -> bool {
    response.status == 503 && response.body.get("replicas-needed").is_some()
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
        Client {
            http: http_client(timeout),
            timeout,
            hosts: hosts.into_iter().map(Into::into).collect(),
            context: Value::String(String::new()),
            write_concern: None,
            table: None,
        }
    }

    /// Asks every later write to be acknowledged only once `concern`
    /// replicas hold it (`1`, a number, `majority` or `all`; see the
    /// README); `None` for the default (the replica that takes it).
    pub fn set_write_concern(&mut self, concern: Option<String>) {
        self.write_concern = concern.filter(|c| c.trim() != "1");
    }

    /// Sends the key requests ([`Client::put`], [`Client::get`], ...) to
    /// the keys of table `name` (`/tables/<name>/key-value-store/<key>`);
    /// `None`: the default table (`/key-value-store/<key>`).
    pub fn set_table(&mut self, name: Option<String>) {
        self.table = name;
    }

    /// The table the key requests name (`None`: the default table).
    pub fn table(&self) -> Option<&str> {
        self.table.as_deref()
    }

    /// The hosts, in the order they are tried.
    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }

    /// The causal context the next request will carry.
    pub fn context(&self) -> &Value {
        &self.context
    }

    /// Replaces the causal context (e.g. one loaded from a session file).
    pub fn set_context(&mut self, context: Value) {
        self.context = context;
    }

    /// Merges `other` into the context, so that the next request is also
    /// ordered after the writes `other` names (e.g. those of another
    /// process sharing a session). Fails, changing nothing, if either
    /// context is malformed.
    pub fn merge_context(&mut self, other: &Value) -> Result<(), String> {
        self.context = merge_contexts(&self.context, other)?;
        Ok(())
    }

    /// Puts `value` at `key`: 201 if it was absent, 200 if it existed,
    /// with the new version's entity tag ([`Response::etag`]).
    pub async fn put(&mut self, key: &str, value: Value) -> Result<Response, ClientError> {
        let body = json!({"value": value, "causal-metadata": self.context});
        self.causal(Method::PUT, key, body, true, None).await
    }

    /// Puts `value` at `key` if `condition` holds (as [`Client::put`]);
    /// else 412, nothing written, naming the key's current version
    /// ([`Response::etag`], `None` if it holds no value). The 412's
    /// context is kept.
    ///
    /// A request that timed out may have been made: sent again to the
    /// next host, it can fail its condition against its own write.
    pub async fn put_if(
        &mut self,
        key: &str,
        value: Value,
        condition: &Precondition,
    ) -> Result<Response, ClientError> {
        let body = json!({"value": value, "causal-metadata": self.context});
        self.causal(Method::PUT, key, body, true, Some(condition))
            .await
    }

    /// Gets `key`; a 200 carries the version's entity tag
    /// ([`Response::etag`]).
    pub async fn get(&mut self, key: &str) -> Result<Response, ClientError> {
        let body = json!({"causal-metadata": self.context});
        self.causal(Method::GET, key, body, false, None).await
    }

    /// Gets `key` unless its current version has the entity tag `etag`
    /// (`If-None-Match`; quoted if given bare, see [`quote_etag`]): then
    /// the answer is 304, with the tag but no body, and the context is
    /// unchanged.
    pub async fn get_if_none_match(
        &mut self,
        key: &str,
        etag: &str,
    ) -> Result<Response, ClientError> {
        let etag = quote_etag(etag).map_err(ClientError::Invalid)?;
        let body = json!({"causal-metadata": self.context});
        let path = self.key_path(key);
        let headers = [("if-none-match", etag.as_str())];
        let response = self
            .send_with(&self.http, Method::GET, &path, Some(body), &headers)
            .await?;
        self.adopt(&response);
        Ok(response)
    }

    /// Deletes `key`.
    pub async fn delete(&mut self, key: &str) -> Result<Response, ClientError> {
        let body = json!({"causal-metadata": self.context});
        self.causal(Method::DELETE, key, body, true, None).await
    }

    /// Deletes `key` if `condition` holds (as [`Client::delete`]); else
    /// 412, as [`Client::put_if`].
    pub async fn delete_if(
        &mut self,
        key: &str,
        condition: &Precondition,
    ) -> Result<Response, ClientError> {
        let body = json!({"causal-metadata": self.context});
        self.causal(Method::DELETE, key, body, true, Some(condition))
            .await
    }

    /// Creates table `name` (`PUT /tables/<name>`), keeping concurrent
    /// writes as siblings if `siblings`: 201 if it was created, 200 if it
    /// existed (its settings unchanged), with the table in `"table"`.
    pub async fn create_table(
        &mut self,
        name: &str,
        siblings: bool,
    ) -> Result<Response, ClientError> {
        let body = json!({"siblings": siblings, "causal-metadata": self.context});
        self.table_request(Method::PUT, &table_path(name), body)
            .await
    }

    /// Every table but the default one (`GET /tables`): 200 with
    /// `"tables": [{"name", "siblings", "keys"}, ...]`, sorted by name.
    pub async fn list_tables(&mut self) -> Result<Response, ClientError> {
        let body = json!({"causal-metadata": self.context});
        self.table_request(Method::GET, "/tables", body).await
    }

    /// Drops table `name` and its keys (`DELETE /tables/<name>`): 200, or
    /// 404 if there is no such table.
    pub async fn drop_table(&mut self, name: &str) -> Result<Response, ClientError> {
        let body = json!({"causal-metadata": self.context});
        self.table_request(Method::DELETE, &table_path(name), body)
            .await
    }

    async fn table_request(
        &mut self,
        method: Method,
        path: &str,
        body: Value,
    ) -> Result<Response, ClientError> {
        let response = self.send(method, path, Some(body)).await?;
        self.adopt(&response);
        Ok(response)
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

    /// The view of the first host that answers, then the `/health` and
    /// `/ready` of every member of that view and of every host not in it,
    /// asked at once, each with [`STATUS_TIMEOUT`]. Fails only if no host
    /// answered the view request.
    pub async fn status(&self) -> Result<(Response, Vec<ReplicaStatus>), ClientError> {
        let view = self.view().await?;
        let members: Vec<String> = view
            .body
            .get("view")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        let mut addresses: Vec<(String, bool)> =
            members.iter().map(|m| (m.clone(), true)).collect();
        for host in &self.hosts {
            if !members.contains(host) {
                addresses.push((host.clone(), false));
            }
        }
        let http = awc::Client::builder()
            .connector(awc::Connector::new().timeout(STATUS_TIMEOUT))
            .timeout(STATUS_TIMEOUT)
            .finish();
        let asks = addresses.iter().map(|(address, _)| {
            let http = &http;
            async move {
                futures_util::future::join(
                    raw(http, address, Method::GET, "/health", None),
                    raw(http, address, Method::GET, "/ready", None),
                )
                .await
            }
        });
        let answers = futures_util::future::join_all(asks).await;
        let replicas = addresses
            .into_iter()
            .zip(answers)
            .map(|((address, in_view), (health, ready))| ReplicaStatus {
                address,
                in_view,
                health,
                ready,
            })
            .collect();
        Ok((view, replicas))
    }

    /// The ids of every shard (`GET /key-value-store-shard/shard-ids`).
    pub async fn shard_ids(&self) -> Result<Vec<ShardId>, ClientError> {
        let response = self.send(Method::GET, SHARD_IDS, None).await?;
        field(response, "shard-ids")
    }

    /// The shard of the first host that answers; `None` while it is in
    /// none (`GET /key-value-store-shard/node-shard-id`).
    pub async fn node_shard_id(&self) -> Result<Option<ShardId>, ClientError> {
        let response = self.send(Method::GET, NODE_SHARD_ID, None).await?;
        field(response, "shard-id")
    }

    /// The members of shard `id` (`GET
    /// /key-value-store-shard/shard-id-members/<id>`).
    pub async fn shard_members(&self, id: ShardId) -> Result<Vec<String>, ClientError> {
        let response = self.send(Method::GET, &members_path(id), None).await?;
        field(response, "shard-id-members")
    }

    /// How many keys shard `id` holds (`GET
    /// /key-value-store-shard/shard-id-key-count/<id>`).
    pub async fn shard_key_count(&self, id: ShardId) -> Result<u64, ClientError> {
        let response = self.send(Method::GET, &key_count_path(id), None).await?;
        field(response, "shard-id-key-count")
    }

    /// Every shard with its members and key count, and the shard of the
    /// node asked: the shard ids from the first host that answers, then
    /// the rest from that same host, each shard's questions at once. A
    /// shard whose members or key count could not be had says why in its
    /// [`ShardInfo`]; fails only if the shard ids or the node's shard
    /// could not be had.
    pub async fn shards(&self) -> Result<Shards, ClientError> {
        let first = self.send(Method::GET, SHARD_IDS, None).await?;
        let host = first.host.clone();
        let ids: Vec<ShardId> = field(first, "shard-ids")?;
        let http = &self.http;
        let host = host.as_str();
        let node_shard = match raw(http, host, Method::GET, NODE_SHARD_ID, None).await {
            Ok(response) => field(response, "shard-id")?,
            Err(e) => return Err(ClientError::Unreachable(format!("{host}: {e}"))),
        };
        let asks = ids.iter().map(|&id| async move {
            let (members_path, count_path) = (members_path(id), key_count_path(id));
            let (members, count) = futures_util::future::join(
                raw(http, host, Method::GET, &members_path, None),
                raw(http, host, Method::GET, &count_path, None),
            )
            .await;
            ShardInfo {
                id,
                members: members.and_then(|r| field(r, "shard-id-members").map_err(why)),
                key_count: count.and_then(|r| field(r, "shard-id-key-count").map_err(why)),
            }
        });
        let shards = futures_util::future::join_all(asks).await;
        Ok(Shards {
            host: host.to_string(),
            node_shard,
            shards,
        })
    }

    /// Places the node at `address` in shard `id` (`PUT
    /// /key-value-store-shard/add-member/<id>`); 200 when done.
    pub async fn add_member(&self, id: ShardId, address: &str) -> Result<Response, ClientError> {
        let body = json!({"socket-address": address});
        let path = format!("/key-value-store-shard/add-member/{id}");
        self.send(Method::PUT, &path, Some(body)).await
    }

    /// Reshards the store into `count` shards (`PUT
    /// /key-value-store-shard/reshard`); 200 once done, 400 with too few
    /// nodes for `count` shards. The request is allowed at least
    /// [`RESHARD_TIMEOUT`].
    pub async fn reshard(&self, count: u32) -> Result<Response, ClientError> {
        let body = json!({"shard-count": count});
        let http = http_client(self.timeout.max(RESHARD_TIMEOUT));
        self.send_with(
            &http,
            Method::PUT,
            "/key-value-store-shard/reshard",
            Some(body),
            &[],
        )
        .await
    }

    async fn causal(
        &mut self,
        method: Method,
        key: &str,
        body: Value,
        write: bool,
        condition: Option<&Precondition>,
    ) -> Result<Response, ClientError> {
        let mut path = self.key_path(key);
        if let Some(w) = self.write_concern.as_ref().filter(|_| write) {
            path.push_str("?w=");
            path.push_str(&encode_key(w));
        }
        let headers: Vec<(&str, &str)> = condition.map(Precondition::header).into_iter().collect();
        let response = self
            .send_with(&self.http, method, &path, Some(body), &headers)
            .await?;
        self.adopt(&response);
        Ok(response)
    }

    /// The path of `key` in the table the key requests name.
    fn key_path(&self, key: &str) -> String {
        match &self.table {
            Some(table) => format!("{}/key-value-store/{}", table_path(table), encode_key(key)),
            None => format!("/key-value-store/{}", encode_key(key)),
        }
    }

    /// Takes the context of `response` (a 412's too), unless it is a 503
    /// for a write that was not made.
    fn adopt(&mut self, response: &Response) {
        if let Some(metadata) = response.metadata() {
            // A write short of its concern was made all the same.
            if response.status != 503 || concern_not_met(response) {
                self.context = metadata.clone();
            }
        }
    }

    /// Sends a request to the first host that answers with anything but
    /// 503; if every host fails, the last 503 is returned, else an error.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Response, ClientError> {
        self.send_with(&self.http, method, path, body, &[]).await
    }

    /// [`Client::send`] through `http`, with `headers` added.
    async fn send_with(
        &self,
        http: &awc::Client,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Result<Response, ClientError> {
        if self.hosts.is_empty() {
            return Err(ClientError::NoHosts);
        }
        let mut failures = Vec::new();
        let mut unavailable = None;
        for host in &self.hosts {
            let sent = raw_with_headers(http, host, method.clone(), path, body.as_ref(), headers);
            match sent.await {
                Ok(response) if response.status == 503 && !concern_not_met(&response) => {
                    unavailable = Some(response)
                }
                Ok(response) => return Ok(response),
                Err(e) => failures.push(format!("{host}: {e}")),
            }
        }
        unavailable.ok_or_else(|| ClientError::Unreachable(failures.join("; ")))
    }
}

/// An HTTP client allowing `timeout` for each request (2 s to connect).
fn http_client(timeout: Duration) -> awc::Client {
    awc::Client::builder()
        .connector(awc::Connector::new().timeout(Duration::from_secs(2)))
        .timeout(timeout)
        .finish()
}

/// The path of table `name`.
fn table_path(name: &str) -> String {
    format!("/tables/{}", encode_key(name))
}

const SHARD_IDS: &str = "/key-value-store-shard/shard-ids";
const NODE_SHARD_ID: &str = "/key-value-store-shard/node-shard-id";

fn members_path(id: ShardId) -> String {
    format!("/key-value-store-shard/shard-id-members/{id}")
}

fn key_count_path(id: ShardId) -> String {
    format!("/key-value-store-shard/shard-id-key-count/{id}")
}

/// The field `name` of a 200 answer, as a `T`; any other answer, or a
/// body without such a field, is [`ClientError::Answer`].
fn field<T: serde::de::DeserializeOwned>(response: Response, name: &str) -> Result<T, ClientError> {
    if response.status == 200 {
        if let Some(Ok(value)) = response.body.get(name).map(|v| T::deserialize(v)) {
            return Ok(value);
        }
    }
    Err(ClientError::Answer(Box::new(response)))
}

/// Why a request got no useful answer, in a few words: the answer's
/// `error` (else `message`) and status, or the client error.
fn why(error: ClientError) -> String {
    match error {
        ClientError::Answer(response) => {
            let said = ["error", "message"]
                .iter()
                .find_map(|name| response.body.get(*name).and_then(Value::as_str));
            match said {
                Some(text) => format!("{text} (http {})", response.status),
                None => format!("http {} {}", response.status, response.body),
            }
        }
        other => other.to_string(),
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
    use serde_json::json;

    use super::*;

    #[test]
    fn bare_ports_take_the_host_before_them() {
        assert_eq!(
            parse_hosts(DEFAULT_HOSTS).unwrap(),
            ["127.0.0.1:8082", "127.0.0.1:8083", "127.0.0.1:8084"]
        );
        assert_eq!(
            parse_hosts(" 10.0.0.2:8085, 8086 ,,[::1]:9000,9001,10.0.0.2:8086").unwrap(),
            ["10.0.0.2:8085", "10.0.0.2:8086", "[::1]:9000", "[::1]:9001"]
        );
        assert_eq!(parse_hosts("8085").unwrap(), ["127.0.0.1:8085"]);
        assert_eq!(
            parse_hosts("localhost:1,2").unwrap(),
            ["localhost:1", "localhost:2"]
        );
    }

    #[test]
    fn malformed_host_lists_are_rejected() {
        for bad in ["", " , ", "nohost", "1.2.3.4:99999", "a b:1", "1.2.3.4:0"] {
            assert!(parse_hosts(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn contexts_merge_pointwise() {
        let a = json!({"r1#a": 3, "r2#b": 1});
        let b = json!({"r2#b": 4, "r3#c": 2});
        assert_eq!(
            merge_contexts(&a, &b).unwrap(),
            json!({"r1#a": 3, "r2#b": 4, "r3#c": 2})
        );
        assert_eq!(merge_contexts(&json!(""), &a).unwrap(), a);
        assert_eq!(merge_contexts(&json!(null), &json!({})).unwrap(), json!({}));
        assert!(merge_contexts(&json!(5), &a).is_err());
        assert!(context_is_empty(&json!("")));
        assert!(context_is_empty(&json!({})));
        assert!(!context_is_empty(&a));
    }

    #[test]
    fn merging_into_a_client_keeps_what_it_knew() {
        let mut client = Client::new(["127.0.0.1:1"]);
        client.set_context(json!({"r1#a": 2}));
        client
            .merge_context(&json!({"r1#a": 1, "r2#b": 5}))
            .unwrap();
        assert_eq!(client.context(), &json!({"r1#a": 2, "r2#b": 5}));
        assert!(client.merge_context(&json!([1])).is_err());
        assert_eq!(client.context(), &json!({"r1#a": 2, "r2#b": 5}));
    }

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
    fn typed_answers_take_their_field_or_say_why_not() {
        let answer = |status: u16, body: Value| Response::new("127.0.0.1:1", status, body);
        let ids = answer(200, json!({"message": "m", "shard-ids": [1, 2]}));
        assert_eq!(field::<Vec<ShardId>>(ids, "shard-ids").unwrap(), [1, 2]);
        let unplaced = answer(200, json!({"message": "m", "shard-id": null}));
        assert_eq!(
            field::<Option<ShardId>>(unplaced, "shard-id").unwrap(),
            None
        );
        let unknown = answer(
            404,
            json!({"error": "Shard ID 7 does not exist", "message": "Error in GET"}),
        );
        let e = field::<u64>(unknown, "shard-id-key-count").unwrap_err();
        assert!(matches!(&e, ClientError::Answer(r) if r.status == 404));
        assert_eq!(why(e), "Shard ID 7 does not exist (http 404)");
        let wrong = answer(200, json!({"shard-id-key-count": "many"}));
        assert!(field::<u64>(wrong, "shard-id-key-count").is_err());

        assert_eq!(answer(201, json!({"shard-id": 3})).shard_id(), Some(3));
        assert_eq!(
            answer(201, json!({"message": "Added successfully"})).shard_id(),
            None
        );
    }

    #[test]
    fn entity_tags_are_quoted_when_given_bare() {
        let tag = "9f2c0a1b3d4e5f60";
        let quoted = "\"9f2c0a1b3d4e5f60\"";
        assert_eq!(quote_etag(tag).unwrap(), quoted);
        assert_eq!(quote_etag(quoted).unwrap(), quoted);
        assert_eq!(quote_etag(&format!(" {quoted} ")).unwrap(), quoted);
        assert_eq!(quote_etag("*").unwrap(), "*");
        assert_eq!(quote_etag("W/\"ab\"").unwrap(), "W/\"ab\"");
        for bad in ["", "\"\"", "a b", "a\"b", "\"a", "a,b", "W/ab", "é", "a\tb"] {
            assert!(quote_etag(bad).is_err(), "accepted {bad:?}");
        }
        assert_eq!(
            Precondition::matching(tag).unwrap(),
            Precondition::Matches(quoted.into())
        );
        assert_eq!(
            Precondition::matching(tag).unwrap().header(),
            ("if-match", quoted)
        );
        assert_eq!(Precondition::Absent.header(), ("if-none-match", "*"));
        assert_eq!(
            Precondition::matching("*").unwrap().header(),
            ("if-match", "*")
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
    fn key_requests_name_the_table_set() {
        let mut client = Client::new(["127.0.0.1:1"]);
        assert_eq!(client.key_path("a b"), "/key-value-store/a%20b");
        client.set_table(Some("orders_2024".into()));
        assert_eq!(client.table(), Some("orders_2024"));
        assert_eq!(
            client.key_path("a/b"),
            "/tables/orders_2024/key-value-store/a%2Fb"
        );
        client.set_table(None);
        assert_eq!(client.key_path("k"), "/key-value-store/k");
        assert_eq!(table_path("t-1"), "/tables/t-1");
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

    #[test]
    fn keys_are_encoded_as_one_segment() {
        assert_eq!(super::encode_key("a/b c"), "a%2Fb%20c");
        assert_eq!(super::encode_key("plain-key_1.x~"), "plain-key_1.x~");
        assert_eq!(super::encode_key("é"), "%C3%A9");
    }
}
