//! Client requests relayed between the nodes of a sharded store: how many
//! times a request was relayed, and the answer given back as it came.

use actix_web::dev::RequestHead;
use actix_web::HttpResponse;

use crate::transport::{Forwarded, HOPS_HEADER, MAP_VERSION_HEADER};

/// The number header `name` of the request carries, if it is one.
fn number<T: std::str::FromStr>(req: &RequestHead, name: &str) -> Option<T> {
    req.headers
        .get(name)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.parse().ok())
}

/// How many times the request was relayed already.
pub(super) fn hops(req: &RequestHead) -> u32 {
    number(req, HOPS_HEADER).unwrap_or(0)
}

/// The version of the shard map by which the request was last relayed,
/// if it was (and the relaying node said).
pub(super) fn relayed_by_map(req: &RequestHead) -> Option<u64> {
    number(req, MAP_VERSION_HEADER)
}

/// The answer of the node a request was relayed to, as it gave it.
pub(super) fn relayed(answer: Forwarded) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(answer.status)
        .unwrap_or(actix_web::http::StatusCode::BAD_GATEWAY);
    let mut response = HttpResponse::build(status);
    if let Some(content_type) = answer.content_type {
        response.insert_header(("content-type", content_type));
    }
    if let Some(etag) = answer.etag {
        response.insert_header(("etag", etag));
    }
    response.body(answer.body)
}
