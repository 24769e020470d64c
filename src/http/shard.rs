//! `/key-value-store-shard/...`: the shards of the store, their members
//! and key counts, `add-member` and `reshard`, as SPEC's "Shards" section
//! words them; and the shard map's internal endpoints (under
//! [`SHARD_PREFIX`]: ping and the reshard's steps).
//!
//! In an unsharded store these answer as for one shard, `1`, holding
//! every key, whose members are the view; `add-member` and `reshard` are
//! refused (400): such a store was not started with `SHARD_COUNT`.

use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value as Json};

use super::body::{parse_json, read_body};
use super::error::{ApiError, Error};
use super::internal::check_token;
use crate::address::SocketAddress;
use crate::causal::VectorClock;
use crate::node::Node;
use crate::replica::Wait;
use crate::shard::ShardId;
use crate::sharding::{self, Done, Import, Ping, Refused, Rescue, Step, SHARD_PREFIX};
use crate::transport::{self, HOPS_HEADER};

/// Largest internal shard request (a batch of handed-over keys).
const MAX_SHARD_BODY: usize = 256 << 20;

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/key-value-store-shard/shard-ids", web::get().to(shard_ids))
        .route(
            "/key-value-store-shard/node-shard-id",
            web::get().to(node_shard_id),
        )
        .route(
            "/key-value-store-shard/shard-id-members/{id}",
            web::get().to(members),
        )
        .route(
            "/key-value-store-shard/shard-id-key-count/{id}",
            web::get().to(key_count),
        )
        .route(
            "/key-value-store-shard/add-member/{id}",
            web::put().to(add_member),
        )
        .route("/key-value-store-shard/reshard", web::put().to(reshard))
        .route(&format!("{SHARD_PREFIX}/ping"), web::post().to(ping))
        .route(&format!("{SHARD_PREFIX}/import"), web::post().to(import))
        .route(&format!("{SHARD_PREFIX}/rescue"), web::post().to(rescue))
        .route(&format!("{SHARD_PREFIX}/{{step}}"), web::post().to(step));
}

/// The shard ids and each one's members: the map's, or one shard of the
/// view's members unsharded.
fn shards(node: &Node) -> Vec<(ShardId, Vec<SocketAddress>)> {
    match node.cluster() {
        Some(cluster) => cluster.with_map(|m| {
            m.shards
                .iter()
                .map(|(id, s)| (*id, s.members.clone()))
                .collect()
        }),
        None => vec![(1, node.read_replica(|r| r.view().addresses()))],
    }
}

fn no_such_shard(id: &str) -> ApiError {
    ApiError::new(
        Error::NotFound(format!("Shard ID {id} does not exist")),
        &Method::GET,
    )
}

/// The shard named by the path, if it exists.
fn must_shard(node: &Node, text: &str) -> Result<(ShardId, Vec<SocketAddress>), ApiError> {
    let id: ShardId = text.trim().parse().map_err(|_| no_such_shard(text))?;
    shards(node)
        .into_iter()
        .find(|(i, _)| *i == id)
        .ok_or_else(|| no_such_shard(text))
}

async fn shard_ids(node: web::Data<Node>) -> HttpResponse {
    let ids: Vec<ShardId> = shards(&node).into_iter().map(|(id, _)| id).collect();
    HttpResponse::Ok()
        .json(json!({"message": "Shard IDs retrieved successfully", "shard-ids": ids}))
}

async fn node_shard_id(node: web::Data<Node>) -> HttpResponse {
    let id = match node.cluster() {
        Some(cluster) => cluster.my_shard(),
        None => Some(1),
    };
    HttpResponse::Ok()
        .json(json!({"message": "Shard ID of the node retrieved successfully", "shard-id": id}))
}

async fn members(node: web::Data<Node>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let (_, members) = must_shard(&node, &id)?;
    let members: Vec<String> = members.iter().map(ToString::to_string).collect();
    Ok(HttpResponse::Ok().json(json!({"message": "Members of shard ID retrieved successfully", "shard-id-members": members})))
}

async fn key_count(
    node: web::Data<Node>,
    id: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (id, _) = must_shard(&node, &id)?;
    let serves_here = match node.cluster() {
        None => true,
        Some(cluster) => cluster.my_shard() == Some(id) && node.read_replica(|r| r.is_ready()),
    };
    let hops = super::relay::hops(req.head());
    if serves_here || hops > 0 {
        caught_up_with_members(&node).await;
        // The tables' own keys (kept by every shard) are not counted.
        let count = node.read_replica(|r| r.store().len() - r.store().table_records());
        return Ok(HttpResponse::Ok().json(json!({"message": "Key count of shard ID retrieved successfully", "shard-id-key-count": count})));
    }
    let answer = sharding::relay_alone(
        &node,
        id,
        Method::GET,
        req.uri().path(),
        &[(HOPS_HEADER.to_string(), (hops + 1).to_string())],
        web::Bytes::new(),
    )
    .await
    .map_err(|e| ApiError::new(Error::Unavailable(e), &Method::GET))?;
    Ok(super::relay::relayed(answer))
}

/// Waits until this replica applied every write that the members it
/// reaches had applied when asked, pulling what it lacks, for at most the
/// causal wait: a count taken then includes every write another member
/// acknowledged before the request (a client may count right after
/// writing, through any member). After the wait, the count is taken all
/// the same.
async fn caught_up_with_members(node: &Node) {
    let mut applied = VectorClock::new();
    for clock in transport::members_clocks(node).await {
        applied.merge(&clock);
    }
    let caught_up = node
        .serve(|node| {
            let lacks = node.read_replica(|r| r.lacks(&applied));
            if lacks.is_empty() {
                Ok(())
            } else {
                Err(Wait::Missing(lacks))
            }
        })
        .await;
    if let Err(wait) = caught_up {
        tracing::info!(
            ?wait,
            "key count taken before every member's writes arrived"
        );
    }
}

#[derive(Deserialize, Default)]
struct MemberBody {
    #[serde(rename = "socket-address", default)]
    socket_address: Option<Json>,
}

pub(super) fn refused(refusal: Refused, method: &Method) -> ApiError {
    match refusal {
        Refused::NotEnoughNodes => unreachable!("answered by the handler"),
        Refused::Bad(e) => ApiError::new(Error::BadRequest(e), method),
        Refused::NoSuchShard(id) => ApiError::new(
            Error::NotFound(format!("Shard ID {id} does not exist")),
            method,
        ),
        Refused::Busy(e) => ApiError::new(Error::Conflict(e), method),
        Refused::Unreachable(id) => ApiError::new(
            Error::Unavailable(format!(
                "No member of shard {id} answers, so its keys cannot be handed over; nothing moved, try again once one is back (or, if they are gone for good, remove them from the view first)"
            )),
            method,
        ),
        Refused::Unready(id) => ApiError::new(
            Error::Unavailable(format!(
                "No member of shard {id} holds its keys (those that answer are still copying its state), so they cannot be handed over; nothing moved, try again once one is ready"
            )),
            method,
        ),
        Refused::Failed(e) => ApiError::new(
            Error::Unavailable(format!("The reshard failed and was undone: {e}")),
            method,
        ),
    }
}

async fn add_member(
    node: web::Data<Node>,
    id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let method = Method::PUT;
    let body = read_body(payload, node.config.max_body_bytes, &method).await?;
    let request: MemberBody = parse_json(&body, &method)?;
    let bad = |text: String| ApiError::new(Error::BadRequest(text), &method);
    let address = match request.socket_address {
        Some(Json::String(text)) if !text.trim().is_empty() => SocketAddress::parse(&text)
            .map_err(|e| bad(format!("Socket address is malformed: {e}")))?,
        Some(Json::String(_)) | Some(Json::Null) | None => {
            return Err(bad("Socket address is missing".into()))
        }
        Some(_) => return Err(bad("Socket address is malformed: expected a string".into())),
    };
    let id: ShardId = id.trim().parse().map_err(|_| {
        ApiError::new(
            Error::NotFound(format!("Shard ID {id} does not exist")),
            &method,
        )
    })?;
    sharding::add_member(&node, id, address)
        .await
        .map_err(|r| refused(r, &method))?;
    Ok(HttpResponse::Ok().json(json!({"message": "Node added to shard successfully"})))
}

#[derive(Deserialize, Default)]
struct ReshardBody {
    #[serde(rename = "shard-count", default)]
    shard_count: Option<Json>,
}

async fn reshard(node: web::Data<Node>, payload: web::Payload) -> Result<HttpResponse, ApiError> {
    let method = Method::PUT;
    let body = read_body(payload, node.config.max_body_bytes, &method).await?;
    let request: ReshardBody = parse_json(&body, &method)?;
    let count = match &request.shard_count {
        Some(Json::Number(n)) => n.as_u64(),
        Some(Json::String(text)) => text.trim().parse::<u64>().ok(),
        _ => None,
    };
    let Some(count) = count.and_then(|c| u32::try_from(c).ok()).filter(|c| *c > 0) else {
        let error = if request.shard_count.is_none() {
            "Shard count is missing"
        } else {
            "Shard count must be a positive whole number"
        };
        return Err(ApiError::new(Error::BadRequest(error.into()), &method));
    };
    match sharding::reshard(&node, count).await {
        Ok(()) => Ok(HttpResponse::Ok().json(json!({"message": "Resharding done successfully"}))),
        Err(Refused::NotEnoughNodes) => Ok(HttpResponse::BadRequest().json(json!({
            "message": "Not enough nodes to provide fault-tolerance with the given shard count!"
        }))),
        Err(refusal) => Err(refused(refusal, &method)),
    }
}

/// Reads an internal shard request's body as `T`, after the token check.
async fn internal_body<T: serde::de::DeserializeOwned>(
    node: &Node,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<T, ApiError> {
    let method = Method::POST;
    check_token(node, req)?;
    let body = read_body(payload, MAX_SHARD_BODY, &method).await?;
    serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            Error::BadRequest(format!("malformed shard request: {e}")),
            &method,
        )
    })
}

async fn ping(
    node: web::Data<Node>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let ping: Ping = internal_body(&node, &req, payload).await?;
    Ok(HttpResponse::Ok().json(sharding::on_ping(&node, ping)))
}

async fn import(
    node: web::Data<Node>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let import: Import = internal_body(&node, &req, payload).await?;
    let done = Done {
        error: sharding::receive(&node, import).err(),
    };
    Ok(HttpResponse::Ok().json(done))
}

async fn rescue(
    node: web::Data<Node>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let rescue: Rescue = internal_body(&node, &req, payload).await?;
    let done = Done {
        error: sharding::absorb(&node, rescue).err(),
    };
    Ok(HttpResponse::Ok().json(done))
}

async fn step(
    node: web::Data<Node>,
    name: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let step: Step = internal_body(&node, &req, payload).await?;
    let done = Done {
        error: sharding::run_step(&node, &name, step.map).await.err(),
    };
    Ok(HttpResponse::Ok().json(done))
}
