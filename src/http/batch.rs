//! `/internal/v1/relay`: the batches of client requests a node relays to
//! a member of their key's shard (see [`crate::sharding`]'s `batch`),
//! each served as if its client had sent it here.

use actix_web::dev::RequestHead;
use actix_web::http::header::{HeaderName, HeaderValue, CONTENT_TYPE, ETAG};
use actix_web::http::{Method, Uri};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use futures_util::stream::{FuturesUnordered, StreamExt};

use super::body::read_body;
use super::error::{ApiError, Error};
use super::kv::{parse_key, serve_request, Target};
use crate::node::Node;
use crate::replica::message::INTERNAL_PREFIX;
use crate::sharding::{self, Relayed};
use crate::store::TableName;
use crate::transport::Forwarded;

/// Largest batch body: at most a relay's batch bytes besides one request
/// of the largest body a client may send (see `sharding::batch`), with
/// room for paths and headers.
const MAX_BATCH_BODY: usize = 64 << 20;

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        &format!("{INTERNAL_PREFIX}/{}", sharding::BATCH_PATH),
        web::post().to(batch),
    );
}

/// Serves a batch of relayed requests at once, and streams each answer
/// as soon as it is ready.
async fn batch(
    node: web::Data<Node>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let method = Method::POST;
    super::internal::check_token(&node, &req)?;
    let limit = MAX_BATCH_BODY.max(node.config.max_body_bytes + (2 << 20));
    let body = read_body(payload, limit, &method).await?;
    let requests =
        sharding::decode_batch(&body).map_err(|e| ApiError::new(Error::BadRequest(e), &method))?;
    let answers: FuturesUnordered<_> = requests
        .into_iter()
        .enumerate()
        .map(|(place, request)| {
            let node = node.clone();
            async move { (place as u32, serve_relayed(node, request).await) }
        })
        .collect();
    let frames = answers.map(|(place, answer)| {
        Ok::<_, std::convert::Infallible>(sharding::encode_answer(place, &answer))
    });
    Ok(HttpResponse::Ok()
        .content_type("application/octet-stream")
        .streaming(frames))
}

/// Serves one relayed request as if its client had sent it here.
async fn serve_relayed(node: web::Data<Node>, request: Relayed) -> Forwarded {
    let response = match head_and_target(&request) {
        Ok((head, target)) => {
            match serve_request(node, target, &head, request.body.clone()).await {
                Ok(response) => response,
                Err(error) => error.error_response(),
            }
        }
        Err(error) => error.error_response(),
    };
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|h: &HeaderValue| h.to_str().ok())
            .map(str::to_string)
    };
    let status = response.status().as_u16();
    tracing::debug!(method = %request.method, path = %request.path_and_query, status, "relayed request answered");
    let (content_type, etag) = (header(CONTENT_TYPE), header(ETAG));
    let body = actix_web::body::to_bytes(response.into_body())
        .await
        .unwrap_or_default();
    Forwarded {
        status,
        content_type,
        etag,
        body,
    }
}

/// The request's head and the key it is for, or the 400 to answer.
fn head_and_target(request: &Relayed) -> Result<(RequestHead, Target), ApiError> {
    let method = &request.method;
    let bad = |why: &str| ApiError::new(Error::BadRequest(why.to_string()), method);
    let mut head = RequestHead::default();
    head.method = method.clone();
    head.uri = request
        .path_and_query
        .parse::<Uri>()
        .map_err(|_| bad("the relayed path is not a path"))?;
    for (name, value) in &request.headers {
        let name = HeaderName::try_from(name.as_str())
            .map_err(|_| bad("a relayed header's name is invalid"))?;
        let value = HeaderValue::try_from(value.as_str())
            .map_err(|_| bad("a relayed header is invalid"))?;
        head.headers.append(name, value);
    }
    let table = match &request.table {
        None => None,
        Some(name) => Some(TableName::parse(name).ok_or_else(|| bad("Table name is invalid"))?),
    };
    let key = parse_key(&request.key, method)?;
    Ok((head, Target { table, key }))
}
