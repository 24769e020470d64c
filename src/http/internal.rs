//! Replica-to-replica endpoints, under `/internal/v1/<kind>`. Internal:
//! the body is a [`Request`], the answer a [`crate::replica::Reply`]; when
//! a cluster token is configured, requests without it get 401.

use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};
use subtle::ConstantTimeEq;

use super::body::read_body;
use super::error::{ApiError, Error};
use crate::node::Node;
use crate::replica::message::{EPOCH_HEADER, GROUP_HEADER, INTERNAL_PREFIX, TOKEN_HEADER};
use crate::replica::{Kind, Request};

/// Largest replica-to-replica request body (replication batches).
const MAX_INTERNAL_BODY: usize = 256 << 20;

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    for kind in Kind::ALL {
        cfg.route(
            &format!("{INTERNAL_PREFIX}/{}", kind.as_str()),
            web::post().to(move |node, req, payload| handle(node, req, payload, kind)),
        );
    }
}

/// Refuses a replica-to-replica request from another shard group (or
/// from a node that is no longer of this one's): each group replicates
/// on its own.
pub(super) fn check_token(node: &Node, req: &HttpRequest) -> Result<(), ApiError> {
    if let Some(token) = node.config.cluster_token.as_deref() {
        let sent = req.headers().get(TOKEN_HEADER).map(|h| h.as_bytes());
        // Compared in constant time: the time taken must not tell an
        // attacker how much of a guess was right.
        let matches = sent.is_some_and(|s| bool::from(s.ct_eq(token.as_bytes())));
        if !matches {
            return Err(ApiError::new(Error::Unauthorized, &Method::POST));
        }
    }
    Ok(())
}

fn check_group(node: &Node, req: &HttpRequest) -> Result<(), ApiError> {
    let sent = req
        .headers()
        .get(GROUP_HEADER)
        .and_then(|h| h.to_str().ok());
    let me = node.me();
    if sent != me.id.group() {
        return Err(ApiError::new(
            Error::Conflict(format!(
                "this node replicates in shard group {}, not {}",
                me.id.group().unwrap_or("(unsharded)"),
                sent.unwrap_or("(unsharded)")
            )),
            &Method::POST,
        ));
    }
    Ok(())
}

/// Refuses (503) a page of this replica's state to a node that holds a
/// newer shard map than this one: under that map this replica may be
/// about to take in keys handed over to its shard, and a copy made before
/// would miss them while its clock covers their writes (the copier would
/// then take them for deleted and never ask for them again). The copier
/// asks again shortly; by then the map has come here.
fn check_epoch(node: &Node, req: &HttpRequest) -> Result<(), ApiError> {
    let sent = req
        .headers()
        .get(EPOCH_HEADER)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.parse::<u64>().ok());
    let mine = node.cluster().map(|c| c.with_map(|m| m.epoch));
    match (sent, mine) {
        (Some(sent), Some(mine)) if sent > mine => Err(ApiError::new(
            Error::Unavailable(format!(
                "this member holds shard map {mine}, not yet {sent}: ask for its state again shortly"
            )),
            &Method::POST,
        )),
        _ => Ok(()),
    }
}

async fn handle(
    node: web::Data<Node>,
    req: HttpRequest,
    payload: web::Payload,
    kind: Kind,
) -> Result<HttpResponse, ApiError> {
    let method = Method::POST;
    check_token(&node, &req)?;
    check_group(&node, &req)?;
    if kind == Kind::Snapshot {
        check_epoch(&node, &req)?;
    }
    let body = read_body(payload, MAX_INTERNAL_BODY, &method).await?;
    let request: Request = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            Error::BadRequest(format!("malformed {} request: {e}", kind.as_str())),
            &method,
        )
    })?;
    if request.kind() != kind {
        return Err(ApiError::new(
            Error::BadRequest(format!(
                "a {} request sent to the {} endpoint",
                request.kind().as_str(),
                kind.as_str()
            )),
            &method,
        ));
    }
    // A page of a copy only looks at the state: other readers go on.
    let (reply, step) = match request {
        Request::Snapshot { cursor, fresh, .. } => {
            let page = node.read_replica(|replica| replica.page(cursor, fresh));
            (page, node.disk().map_or(0, |disk| disk.staged()))
        }
        request => node.with_replica_step(|replica, now| replica.handle(request, now)),
    };
    // What a peer is told it may keep (writes acknowledged, versions
    // pulled, pages copied), or that this replica holds (the clock of a
    // heartbeat, which write concerns count), is durable here first.
    // Heartbeats go on while the disk fails, so the others do not take
    // this replica for dead. (The step of the reply covers all it tells.)
    let settled = node.settle_to(step).await;
    if kind != Kind::Heartbeat {
        settled.map_err(|why| ApiError::new(Error::DiskUnavailable(why), &method))?;
    }
    if !matches!(kind, Kind::Snapshot | Kind::Pull) {
        return Ok(HttpResponse::Ok().json(reply));
    }
    // A snapshot (or a large pull) can be hundreds of megabytes of JSON:
    // print it on the blocking pool, so the worker keeps serving clients.
    let body = web::block(move || serde_json::to_vec(&reply))
        .await
        .map_err(|_| ApiError::new(Error::ShuttingDown, &method))?
        .map_err(|e| {
            ApiError::new(
                Error::BadRequest(format!("unprintable reply: {e}")),
                &method,
            )
        })?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(body))
}
