//! `/key-value-store/<key>`: PUT, GET and DELETE, exactly as SPEC words them.

use actix_web::dev::RequestHead;
use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use super::answers::{siblings, unavailable, Done, Found, Missing};
use super::body::{not_found, parse_json, read_body};
use super::conditions;
use super::error::{ApiError, Error};
use crate::causal::CausalContext;
use crate::concern::WriteConcern;
use crate::node::Node;
use crate::replica::{Condition, Outcome, Replica, Wait, WriteResult};
use crate::shard::ShardId;
use crate::sharding;
use crate::store::tables::route_text;
use crate::store::{Key, KeyError, TableName, Value};
use crate::transport::{HOPS_HEADER, MAP_VERSION_HEADER};

/// Header that may carry a GET's context (for clients that cannot send a
/// GET body). The query parameter `causal-metadata` works too.
pub const CONTEXT_HEADER: &str = "x-causal-metadata";

/// Header that may carry a write's concern (the query parameter `w`
/// works too): `1`, a number of replicas, `majority` or `all`.
pub const CONCERN_HEADER: &str = "write-concern";

/// Where the key-value routes live; the rest of the path is the key.
pub const PREFIX: &str = "/key-value-store";

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    // A static prefix and a hand-decoded key: a `{key:.*}` route pattern
    // costs a regular-expression match per request.
    cfg.service(web::scope(PREFIX).default_service(web::to(dispatch)));
}

async fn dispatch(
    node: web::Data<Node>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    // The raw path, decoded once: `a%2Fb` is the key `a/b`, `a%252Fb` the
    // key `a%2Fb`; invalid UTF-8 decodes lossily.
    let Some(tail) = req
        .uri()
        .path()
        .strip_prefix(PREFIX)
        .and_then(|t| t.strip_prefix('/'))
    else {
        return Ok(not_found(req).await);
    };
    let method = req.method().clone();
    if !matches!(method, Method::PUT | Method::GET | Method::DELETE) {
        return Ok(not_found(req).await);
    }
    let key = parse_key(
        &percent_encoding::percent_decode_str(tail).decode_utf8_lossy(),
        &method,
    )?;
    serve_key(node, Target { table: None, key }, req, payload).await
}

/// A client's key, and its table (`None`: the default table).
#[derive(Clone)]
pub(super) struct Target {
    pub table: Option<TableName>,
    pub key: Key,
}

impl Target {
    /// The text the key is placed in a shard by.
    fn placement(&self) -> std::borrow::Cow<'_, str> {
        route_text(self.table.as_ref(), &self.key)
    }
}

/// Serves a key-value request for `target`, here or (sharded) where the
/// key's shard is.
pub(super) async fn serve_key(
    node: web::Data<Node>,
    target: Target,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let method = req.method().clone();
    if !matches!(method, Method::PUT | Method::GET | Method::DELETE) {
        return Ok(not_found(req).await);
    }
    let body = read_body(payload, node.config.max_body_bytes, &method).await?;
    serve_request(node, target, req.head(), body).await
}

/// Serves a key-value request (PUT, GET or DELETE) whose body is read:
/// one a client sent here, or one relayed here in a batch.
pub(super) async fn serve_request(
    node: web::Data<Node>,
    target: Target,
    head: &RequestHead,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let method = head.method.clone();
    if node.cluster().is_some() {
        return sharded(node, target, head, body, method).await;
    }
    serve_here(node, target, head, body, method, None).await
}

/// Serves a key-value request at this node; `shard` is the key's shard,
/// in a sharded store.
async fn serve_here(
    node: web::Data<Node>,
    key: Target,
    req: &RequestHead,
    body: web::Bytes,
    method: Method,
    shard: Option<ShardId>,
) -> Result<HttpResponse, ApiError> {
    match method {
        Method::GET => get(node, key, req, body, shard).await,
        _ => {
            let how = How {
                concern: write_concern(req, &method)?,
                condition: conditions::parse(req, &method)?,
                shard,
            };
            match method {
                Method::PUT => put(node, key, how, body).await,
                _ => delete(node, key, how, body).await,
            }
        }
    }
}

/// How a write is to be made: its concern and condition, and the key's
/// shard (sharded).
struct How {
    concern: WriteConcern,
    condition: Condition,
    shard: Option<ShardId>,
}

/// Longest a write to a key that a reshard moves waits for the reshard.
const RESHARD_WAIT: std::time::Duration = std::time::Duration::from_secs(180);

/// Most times a client request is relayed between nodes (their shard maps
/// may briefly disagree).
const MAX_HOPS: u32 = 2;

/// Headers of a client request that a relay keeps.
const RELAYED_HEADERS: [&str; 5] = [
    "content-type",
    CONTEXT_HEADER,
    CONCERN_HEADER,
    "if-match",
    "if-none-match",
];

/// Longest a request relayed as often as allowed waits for this node's
/// shard map to place its key here.
const MAP_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// `(the key's shard, whether this node serves it now)`, or `None` if the
/// store is not sharded. A replica of the shard's group serves it; one
/// still copying the shard's state lets a ready member answer, if the
/// request may still be relayed.
fn placed_here(node: &Node, key: &Target, hops: u32) -> Option<(ShardId, bool)> {
    let cluster = node.cluster()?;
    let (shard, serves, ready) = node.read_replica(|replica| {
        let (shard, serves) = cluster.serves(&key.placement(), Some(replica.me().id.group()));
        (shard, serves, hops >= MAX_HOPS || replica.is_ready())
    });
    Some((shard, serves && ready))
}

/// Waits (polling, at most [`MAP_WAIT`]) until this node's map places
/// `key` here; whether it does.
async fn map_catches_up(node: &Node, key: &Target, hops: u32) -> bool {
    let poll = std::time::Duration::from_millis(20);
    let deadline = std::time::Instant::now() + MAP_WAIT;
    while std::time::Instant::now() < deadline {
        actix_rt::time::sleep(poll).await;
        if placed_here(node, key, hops).is_some_and(|(_, here)| here) {
            return true;
        }
    }
    false
}

/// Whether this node holds a newer shard map than the one by which the
/// request was relayed here: then the relaying node was the one behind
/// (a reshard it had not learned yet), and the request may be relayed
/// once more, by this node's map, instead of waiting here for a map that
/// will never place the key here.
fn map_newer_than_relayers(node: &Node, req: &RequestHead) -> bool {
    let Some(cluster) = node.cluster() else {
        return false;
    };
    super::relay::relayed_by_map(req).is_some_and(|theirs| cluster.with_map(|m| m.epoch) > theirs)
}

/// A sharded store: serves the request here if this node holds the key's
/// shard, else relays it to a member of that shard.
async fn sharded(
    node: web::Data<Node>,
    key: Target,
    req: &RequestHead,
    body: web::Bytes,
    method: Method,
) -> Result<HttpResponse, ApiError> {
    let hops = super::relay::hops(req);
    let mut moved = false;
    for _ in 0..3 {
        // The version of the map the relay names is read before the key
        // is placed: a map learned in between then makes the receiver
        // relay once more, never wait for a map it already holds.
        let map_version = node.cluster().map(|c| c.with_map(|m| m.epoch));
        let Some((shard, here)) = placed_here(&node, &key, hops) else {
            break;
        };
        if here {
            match serve_here(
                node.clone(),
                key.clone(),
                req,
                body.clone(),
                method.clone(),
                Some(shard),
            )
            .await
            {
                Err(e) if matches!(e.error, Error::Moved) => {
                    moved = true;
                    continue;
                }
                answer => return answer,
            }
        }
        let may_relay =
            hops < MAX_HOPS || (hops == MAX_HOPS && map_newer_than_relayers(&node, req));
        if !may_relay {
            // Relayed here by a node whose map says this one serves the
            // key: in a reshard, this node's map may be the older one.
            // Wait for it rather than fail the request.
            if map_catches_up(&node, &key, hops).await {
                continue;
            }
            break;
        }
        let mut headers: Vec<(String, String)> = RELAYED_HEADERS
            .iter()
            .filter_map(|name| {
                let value = req.headers.get(*name)?.to_str().ok()?;
                Some((name.to_string(), value.to_string()))
            })
            .collect();
        headers.push((HOPS_HEADER.to_string(), (hops + 1).to_string()));
        if let Some(version) = map_version {
            headers.push((MAP_VERSION_HEADER.to_string(), version.to_string()));
        }
        let path = req
            .uri
            .path_and_query()
            .map_or(req.uri.path(), |p| p.as_str());
        let relayed = sharding::Relayed {
            method: method.clone(),
            path_and_query: path.to_string(),
            table: key.table.as_ref().map(|t| t.as_str().to_string()),
            key: key.key.as_str().to_string(),
            headers,
            body: body.clone(),
        };
        let answer = sharding::relay(&node, shard, relayed)
            .await
            .map_err(|e| ApiError::new(Error::Unavailable(e), &method))?;
        return Ok(super::relay::relayed(answer));
    }
    let why = if moved {
        Error::Moved
    } else {
        Error::Unavailable("no node of the key's shard could take the request".into())
    };
    Err(ApiError::new(why, &method))
}

/// Sharded: whether this node serves `key` now (its shard's group is
/// this replica's), and, for a write, whether the key is not moving.
fn may_serve(node: &Node, replica: &Replica, key: &Target, writing: bool) -> Result<(), Wait> {
    let Some(cluster) = node.cluster() else {
        return Ok(());
    };
    let placement = key.placement();
    let (_, serves) = cluster.serves(&placement, Some(replica.me().id.group()));
    if !serves {
        return Err(Wait::Moved);
    }
    if writing && cluster.is_moving(&placement) {
        return Err(Wait::Moving);
    }
    Ok(())
}

/// A key-value request body.
#[derive(Deserialize, Default)]
struct KvBody<'a> {
    #[serde(borrow, default)]
    value: Option<&'a RawValue>,
    #[serde(
        rename = "causal-metadata",
        borrow,
        default,
        deserialize_with = "present"
    )]
    causal_metadata: Option<&'a RawValue>,
}

/// A field that is present deserializes to `Some`, even when it is `null`
/// (so that `"causal-metadata": null` is echoed as `null`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// A client's key from its decoded path segment, or the 400 naming what
/// is wrong with it.
pub(super) fn parse_key(text: &str, method: &Method) -> Result<Key, ApiError> {
    Key::parse(text).map_err(|e| {
        let error = match e {
            KeyError::TooLong => "Key is too long",
            KeyError::Empty => "Key is missing",
        };
        ApiError::new(Error::BadRequest(error.into()), method)
    })
}

fn parse_context(sent: Option<&RawValue>, method: &Method) -> Result<CausalContext, ApiError> {
    CausalContext::parse_raw(sent).map_err(|e| ApiError::new(Error::BadRequest(e), method))
}

/// The query parameter `name` of `req`, decoded.
fn query_param(req: &RequestHead, name: &str) -> Option<String> {
    let query = req.uri.query().unwrap_or_default();
    if query.is_empty() {
        return None;
    }
    web::Query::<std::collections::HashMap<String, String>>::from_query(query)
        .ok()
        .and_then(|q| q.get(name).cloned())
}

/// The write concern asked for by the query parameter `w` or the
/// `Write-Concern` header (the query wins); one replica by default.
fn write_concern(req: &RequestHead, method: &Method) -> Result<WriteConcern, ApiError> {
    let text = match query_param(req, "w") {
        Some(text) => text,
        None => match req.headers.get(CONCERN_HEADER) {
            Some(h) => h.to_str().unwrap_or("").to_string(),
            None => return Ok(WriteConcern::One),
        },
    };
    WriteConcern::parse(&text).ok_or_else(|| {
        ApiError::new(
            Error::BadRequest("Write concern must be a positive number, majority or all".into()),
            method,
        )
    })
}

/// Runs a write once the node can serve `context`; with a write concern,
/// answers once enough replicas hold it.
async fn write(
    node: &Node,
    key: &Target,
    value: Option<Value>,
    context: &CausalContext,
    how: &How,
    method: &Method,
) -> Result<WriteResult, ApiError> {
    let incoming = key.key.as_str().len() + value.as_ref().map_or(0, |v| v.as_json().len());
    if let Some(why) = node.disk_refusal(incoming) {
        return Err(ApiError::new(Error::DiskUnavailable(why), method));
    }
    // A write to a key that a reshard moves waits for the reshard, however
    // many causal waits that takes (up to the reshard's own bound).
    let reshard_deadline = std::time::Instant::now() + RESHARD_WAIT;
    let step = std::cell::Cell::new(0);
    let result = loop {
        let attempt = node
            .serve(|node| {
                let (result, at) = node.with_replica_step(|replica, _| {
                    may_serve(node, replica, key, true)?;
                    replica.write_in(
                        key.table.as_ref(),
                        key.key.clone(),
                        value.clone(),
                        context,
                        &how.condition,
                    )
                });
                step.set(at);
                result
            })
            .await;
        match attempt {
            Err(Wait::Moving)
                if std::time::Instant::now() < reshard_deadline
                    && node.cluster().is_some_and(|c| c.pending().is_some()) => {}
            attempt => break attempt.map_err(|wait| unavailable(wait, context, method))?,
        }
    };
    // Acknowledged only once it is in the journal.
    node.settle_to(step.get())
        .await
        .map_err(|why| ApiError::new(Error::DiskUnavailable(why), method))?;
    if result.outcome == Outcome::NoTable {
        let metadata = result.learned.metadata(context).to_value();
        return Err(ApiError::no_table(method, metadata));
    }
    if result.outcome == Outcome::Unmet {
        let metadata = result.learned.metadata(context).to_value();
        return Err(conditions::unmet(
            &how.condition,
            result.etag,
            metadata,
            method,
        ));
    }
    if result.outcome != Outcome::NotFound {
        let n = result.learned.clock.get(&node.me().id);
        if let Err((held, needed)) = node.replicated(n, how.concern).await {
            let metadata = result.learned.metadata(context).to_value();
            return Err(ApiError::new(Error::ConcernNotMet, method)
                .with("causal-metadata", metadata)
                .with("replicas-holding", held.into())
                .with("replicas-needed", needed.into()));
        }
    }
    Ok(result)
}

async fn put(
    node: web::Data<Node>,
    key: Target,
    how: How,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let shard_id = how.shard;
    let method = Method::PUT;
    let request: KvBody = parse_json(&body, &method)?;
    let value = request
        .value
        .and_then(Value::from_raw)
        .ok_or_else(|| ApiError::new(Error::BadRequest("Value is missing".into()), &method))?;
    let context = parse_context(request.causal_metadata, &method)?;
    let result = write(&node, &key, Some(value), &context, &how, &method).await?;
    let causal_metadata = result.learned.metadata(&context);
    let (mut answer, message) = match result.outcome {
        Outcome::Created => (HttpResponse::Created(), "Added successfully"),
        Outcome::Updated => (HttpResponse::Ok(), "Updated successfully"),
        Outcome::Deleted | Outcome::NotFound | Outcome::Unmet | Outcome::NoTable => {
            unreachable!("a put writes or fails its condition")
        }
    };
    if let Some(etag) = result.etag {
        answer.insert_header(("etag", etag));
    }
    Ok(answer.json(Done {
        causal_metadata,
        message,
        shard_id,
    }))
}

async fn get(
    node: web::Data<Node>,
    key: Target,
    req: &RequestHead,
    body: web::Bytes,
    shard_id: Option<ShardId>,
) -> Result<HttpResponse, ApiError> {
    let method = Method::GET;
    let request: KvBody = parse_json(&body, &method)?;
    let outside;
    let sent = match request.causal_metadata {
        Some(sent) => Some(sent),
        None => {
            outside = context_outside_body(req);
            outside.as_deref()
        }
    };
    let context = parse_context(sent, &method)?;
    let read = node
        .serve_read(&context, |replica, context| {
            may_serve(&node, replica, &key, false)?;
            replica.read_in(key.table.as_ref(), key.key.clone(), context)
        })
        .await
        .map_err(|wait| unavailable(wait, &context, &method))?;
    // Never show what a crash could still take back; a failed disk does
    // not stop reads.
    let _ = node.settle().await;
    if let Some(answer) = conditions::not_modified(req, read.etag.as_deref()) {
        return Ok(answer);
    }
    let metadata = read.learned.metadata(&context);
    if read.no_table {
        return Err(ApiError::no_table(&method, metadata.to_value()));
    }
    if !read.siblings.is_empty() {
        return Ok(siblings(&read.siblings, metadata, shard_id));
    }
    Ok(match read.value {
        Some(value) => HttpResponse::Ok()
            .insert_header(("etag", read.etag.clone().unwrap_or_default()))
            .json(Found {
                message: "Retrieved successfully",
                shard_id,
                causal_metadata: metadata,
                value: value.as_raw(),
            }),
        None => HttpResponse::NotFound().json(Missing::new("Error in GET", metadata, shard_id)),
    })
}

/// A GET's context from the `causal-metadata` query parameter or the
/// `X-Causal-Metadata` header: JSON text, or a plain string.
pub(super) fn context_outside_body(req: &RequestHead) -> Option<Box<RawValue>> {
    let from_query = query_param(req, "causal-metadata");
    let header = || {
        req.headers
            .get(CONTEXT_HEADER)
            .and_then(|h| h.to_str().ok())
    };
    let text = match &from_query {
        Some(text) => text.as_str(),
        None => header()?,
    };
    match serde_json::from_str::<&RawValue>(text) {
        Ok(raw) => Some(raw.to_owned()),
        Err(_) => serde_json::value::to_raw_value(text).ok(),
    }
}

async fn delete(
    node: web::Data<Node>,
    key: Target,
    how: How,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let shard_id = how.shard;
    let method = Method::DELETE;
    let request: KvBody = parse_json(&body, &method)?;
    let context = parse_context(request.causal_metadata, &method)?;
    let result = write(&node, &key, None, &context, &how, &method).await?;
    let causal_metadata = result.learned.metadata(&context);
    Ok(match result.outcome {
        Outcome::Deleted => HttpResponse::Ok().json(Done {
            causal_metadata,
            message: "Deleted successfully",
            shard_id,
        }),
        Outcome::NotFound => HttpResponse::NotFound().json(Missing::new(
            "Error in DELETE",
            causal_metadata,
            shard_id,
        )),
        Outcome::Created | Outcome::Updated | Outcome::Unmet | Outcome::NoTable => {
            unreachable!("a delete deletes, finds nothing or fails its condition")
        }
    })
}
