//! `/key-value-store-view`: GET, PUT and DELETE of members.

use actix_web::http::Method;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value as Json};

use super::body::{parse_json, read_body};
use super::error::{ApiError, Error};
use crate::address::SocketAddress;
use crate::node::Node;
use crate::replica::ViewChange;

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/key-value-store-view", web::get().to(get))
        .route("/key-value-store-view", web::put().to(put))
        .route("/key-value-store-view", web::delete().to(delete));
}

#[derive(Deserialize, Default)]
struct ViewBody {
    #[serde(rename = "socket-address", default)]
    socket_address: Option<Json>,
}

async fn read_address(
    node: &Node,
    payload: web::Payload,
    method: &Method,
) -> Result<SocketAddress, ApiError> {
    let body = read_body(payload, node.config.max_body_bytes, method).await?;
    let request: ViewBody = parse_json(&body, method)?;
    let bad = |text: String| ApiError::new(Error::BadRequest(text), method);
    match request.socket_address {
        None | Some(Json::Null) => Err(bad("Socket address is missing".into())),
        Some(Json::String(text)) if text.trim().is_empty() => {
            Err(bad("Socket address is missing".into()))
        }
        Some(Json::String(text)) => SocketAddress::parse(&text)
            .map_err(|e| bad(format!("Socket address is malformed: {e}"))),
        Some(_) => Err(bad("Socket address is malformed: expected a string".into())),
    }
}

/// Makes `change` once the replica takes view changes (it holds a copy of
/// the state: see [`crate::replica::Replica::change_view`]), waiting like
/// a client request; 503 if it does not in time.
async fn change(node: &Node, change: ViewChange, method: &Method) -> Result<bool, ApiError> {
    node.serve(|node| node.with_replica(|replica, now| replica.change_view(change.clone(), now)))
        .await
        .map_err(|wait| ApiError::new(Error::from(wait), method))
}

async fn get(node: web::Data<Node>) -> HttpResponse {
    let view = match node.cluster() {
        // Sharded: every node of the store that is up, whatever its shard.
        Some(cluster) => {
            let live: Vec<String> = cluster.live().iter().map(ToString::to_string).collect();
            live.join(",")
        }
        None => node.read_replica(|replica| replica.view().print()),
    };
    HttpResponse::Ok().json(json!({"message": "View retrieved successfully", "view": view}))
}

async fn put(node: web::Data<Node>, payload: web::Payload) -> Result<HttpResponse, ApiError> {
    let method = Method::PUT;
    let address = read_address(&node, payload, &method).await?;
    let added = match node.cluster() {
        Some(_) => crate::sharding::add_node(&node, address)
            .await
            .map_err(|r| super::shard::refused(r, &method))?,
        None => change(&node, ViewChange::Add(address), &method).await?,
    };
    if added {
        Ok(HttpResponse::Created()
            .json(json!({"message": "Replica added successfully to the view"})))
    } else {
        Err(ApiError::new(
            Error::NotFound("Socket address already exists in the view".into()),
            &method,
        ))
    }
}

async fn delete(node: web::Data<Node>, payload: web::Payload) -> Result<HttpResponse, ApiError> {
    let method = Method::DELETE;
    let address = read_address(&node, payload, &method).await?;
    if address == node.me().address {
        return Err(ApiError::new(
            Error::BadRequest(
                "a replica cannot remove itself; send the DELETE to another member".into(),
            ),
            &method,
        ));
    }
    let removed = match node.cluster() {
        Some(_) => crate::sharding::remove_node(&node, address)
            .await
            .map_err(|r| super::shard::refused(r, &method))?,
        None => change(&node, ViewChange::Remove(address), &method).await?,
    };
    if removed {
        Ok(HttpResponse::Ok()
            .json(json!({"message": "Replica deleted successfully from the view"})))
    } else {
        Err(ApiError::new(
            Error::NotFound("Socket address does not exist in the view".into()),
            &method,
        ))
    }
}
