//! A sharded store's table requests: every shard's group keeps its own
//! copy of each table's settings (the keys of a table live in every
//! shard), so creating, dropping and listing tables is done in every
//! shard, by a member of each, and the answers are merged into one.

use std::collections::BTreeMap;
use std::time::Duration;

use actix_web::http::{Method, StatusCode};
use actix_web::{web, HttpResponse};
use serde_json::{json, Value as Json};

use super::error::{ApiError, Error};
use crate::causal::{CausalContext, Metadata, VectorClock};
use crate::node::Node;
use crate::shard::ShardId;
use crate::transport::{self, Forwarded, HOPS_HEADER};

/// Header of a table request spread to one shard: for a drop, the id the
/// table's next creation takes (the same in every shard), else `-`. A
/// request carrying it is served by the node's own shard alone.
pub const SPREAD_HEADER: &str = "x-causalkv-table-spread";

/// Whether `req` is one shard's part of a spread request.
pub(super) fn is_part(req: &actix_web::HttpRequest) -> bool {
    req.headers().contains_key(SPREAD_HEADER)
}

/// The next creation's id a spread drop carries.
pub(super) fn spread_id(req: &actix_web::HttpRequest) -> Option<String> {
    let id = req.headers().get(SPREAD_HEADER)?.to_str().ok()?;
    (id != "-" && !id.is_empty()).then(|| id.to_string())
}

/// What one shard answered.
struct Part {
    status: u16,
    body: Json,
}

/// Sends the request to a member of every shard (this node for its own
/// shard), all at once, and returns each shard's answer.
async fn to_every_shard(
    node: &Node,
    method: &Method,
    path: &str,
    id: &str,
    body: web::Bytes,
) -> Result<Vec<Part>, ApiError> {
    let Some(cluster) = node.cluster() else {
        return Err(ApiError::new(
            Error::Unavailable("this node is not sharded".into()),
            method,
        ));
    };
    if cluster.pending().is_some() {
        return Err(ApiError::new(
            Error::Unavailable("A reshard is in progress: retry once it is done".into()),
            method,
        ));
    }
    let me = cluster.me().clone();
    let shards: Vec<(ShardId, bool)> = cluster.with_map(|m| {
        m.shards
            .iter()
            .map(|(id, s)| (*id, s.members.contains(&me)))
            .collect()
    });
    let headers = vec![
        ("content-type".to_string(), "application/json".to_string()),
        (SPREAD_HEADER.to_string(), id.to_string()),
        (HOPS_HEADER.to_string(), "1".to_string()),
    ];
    let deadline = node.config.causal_wait + Duration::from_secs(5);
    let asks = shards.into_iter().map(|(shard, mine)| {
        let mut targets = cluster.targets(shard);
        if mine {
            targets.insert(0, me.clone());
        }
        let (headers, body) = (&headers, body.clone());
        async move {
            let mut last = format!("shard {shard} has no member");
            for to in targets {
                let sent =
                    transport::forward(&to, method.clone(), path, headers, body.clone(), deadline);
                match sent.await {
                    Ok(answer) => return Ok(part(answer)),
                    Err(e) => last = format!("{to}: {e}"),
                }
            }
            Err(format!(
                "no member of shard {shard} could be reached ({last})"
            ))
        }
    });
    let answers = futures_util::future::join_all(asks).await;
    answers
        .into_iter()
        .collect::<Result<Vec<Part>, String>>()
        .map_err(|why| ApiError::new(Error::Unavailable(why), method))
}

fn part(answer: Forwarded) -> Part {
    let body = serde_json::from_slice(&answer.body).unwrap_or(Json::Null);
    Part {
        status: answer.status,
        body,
    }
}

/// The contexts of every shard's answer, merged.
fn merged_context(parts: &[Part]) -> VectorClock {
    let mut clock = VectorClock::new();
    for part in parts {
        if let Ok(ctx) = CausalContext::parse(part.body.get("causal-metadata")) {
            clock.merge(ctx.clock());
        }
    }
    clock
}

/// The first answer that is not one of `expected`, as it came (an error
/// of one shard is the request's).
fn failed(parts: &[Part], expected: &[u16]) -> Option<HttpResponse> {
    let bad = parts.iter().find(|p| !expected.contains(&p.status))?;
    let status = StatusCode::from_u16(bad.status).unwrap_or(StatusCode::BAD_GATEWAY);
    Some(HttpResponse::build(status).json(&bad.body))
}

fn with_context(mut body: Json, clock: VectorClock) -> Json {
    if let Some(map) = body.as_object_mut() {
        let metadata = serde_json::to_value(Metadata::Clock(clock)).unwrap_or(Json::Null);
        map.insert("causal-metadata".into(), metadata);
    }
    body
}

/// Creates a table in every shard: 201 if any shard created it, else 200.
pub(super) async fn create(
    node: &Node,
    path: &str,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let parts = to_every_shard(node, &Method::PUT, path, "-", body).await?;
    if let Some(answer) = failed(&parts, &[200, 201]) {
        return Ok(answer);
    }
    let created = parts.iter().find(|p| p.status == 201);
    let mut first = created.or(parts.first()).map(|p| p.body.clone());
    // The table's live keys are those of every shard.
    let keys: u64 = parts
        .iter()
        .filter_map(|p| p.body.pointer("/table/keys").and_then(Json::as_u64))
        .sum();
    if let Some(count) = first.as_mut().and_then(|b| b.pointer_mut("/table/keys")) {
        *count = keys.into();
    }
    let status = match created {
        Some(_) => StatusCode::CREATED,
        None => StatusCode::OK,
    };
    let body = with_context(first.unwrap_or_else(|| json!({})), merged_context(&parts));
    Ok(HttpResponse::build(status).json(body))
}

/// Drops a table in every shard: 200 if any shard held it, else 404.
pub(super) async fn drop(
    node: &Node,
    path: &str,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let next = crate::incarnation::fresh();
    let parts = to_every_shard(node, &Method::DELETE, path, &next, body).await?;
    if let Some(answer) = failed(&parts, &[200, 404]) {
        return Ok(answer);
    }
    let clock = merged_context(&parts);
    let dropped = parts.iter().find(|p| p.status == 200);
    let (status, body) = match dropped {
        Some(p) => (StatusCode::OK, p.body.clone()),
        None => (StatusCode::NOT_FOUND, parts[0].body.clone()),
    };
    Ok(HttpResponse::build(status).json(with_context(body, clock)))
}

/// Lists the tables of every shard: each table's live keys summed.
pub(super) async fn list(
    node: &Node,
    path: &str,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let parts = to_every_shard(node, &Method::GET, path, "-", body).await?;
    if let Some(answer) = failed(&parts, &[200]) {
        return Ok(answer);
    }
    let mut tables: BTreeMap<String, (bool, u64)> = BTreeMap::new();
    for part in &parts {
        let listed = part.body.get("tables").and_then(Json::as_array);
        for table in listed.into_iter().flatten() {
            let Some(name) = table.get("name").and_then(Json::as_str) else {
                continue;
            };
            let entry = tables.entry(name.to_string()).or_default();
            entry.0 |= table
                .get("siblings")
                .and_then(Json::as_bool)
                .unwrap_or(false);
            entry.1 += table.get("keys").and_then(Json::as_u64).unwrap_or(0);
        }
    }
    let tables: Vec<Json> = tables
        .into_iter()
        .map(|(name, (siblings, keys))| json!({"name": name, "siblings": siblings, "keys": keys}))
        .collect();
    let body = json!({"message": "Retrieved successfully", "tables": tables});
    Ok(HttpResponse::Ok().json(with_context(body, merged_context(&parts))))
}
