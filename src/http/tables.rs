//! `/tables`: listing, creating and dropping tables, and the keys of a
//! table at `/tables/<name>/key-value-store/<key>` (served as the default
//! table's are, by [`super::kv`]).

use actix_web::http::{Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::answers::unavailable;
use super::body::{not_found, parse_json, read_body};
use super::error::{ApiError, Error};
use super::kv::{parse_key, serve_key, Target, PREFIX as KV_PREFIX};
use super::spread;
use crate::causal::{CausalContext, Metadata};
use crate::node::Node;
use crate::replica::{TableOutcome, TableResult};
use crate::store::{TableInfo, TableName};

/// Where the table routes live.
pub const PREFIX: &str = "/tables";

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::scope(PREFIX).default_service(web::to(dispatch)));
}

async fn dispatch(
    node: web::Data<Node>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let path = req.uri().path().to_string();
    let Some(tail) = path.strip_prefix(PREFIX) else {
        return Ok(not_found(req).await);
    };
    let method = req.method().clone();
    // Sharded, every shard's group keeps the tables: a request for the
    // tables themselves is spread to a member of each.
    let spread = node.cluster().is_some() && !spread::is_part(&req);
    let tail = tail.strip_prefix('/').unwrap_or(tail);
    if tail.is_empty() {
        return match method {
            Method::GET if spread => {
                let body = read_body(payload, node.config.max_body_bytes, &method).await?;
                parse_json::<TableBody>(&body, &method)?;
                spread::list(&node, req.path(), body).await
            }
            Method::GET => list(node, req, payload).await,
            _ => Ok(not_found(req).await),
        };
    }
    let (name, rest) = match tail.split_once('/') {
        Some((name, rest)) => (name, Some(rest)),
        None => (tail, None),
    };
    let name = percent_encoding::percent_decode_str(name).decode_utf8_lossy();
    let Some(name) = TableName::parse(&name) else {
        if !matches!(method, Method::GET | Method::PUT | Method::DELETE) {
            return Ok(not_found(req).await);
        }
        return Err(ApiError::new(
            Error::BadRequest("Table name is invalid".into()),
            &method,
        ));
    };
    match rest {
        None | Some("") if spread && matches!(method, Method::PUT | Method::DELETE) => {
            let body = read_body(payload, node.config.max_body_bytes, &method).await?;
            parse_json::<TableBody>(&body, &method)?;
            match method {
                Method::PUT => spread::create(&node, req.path(), body).await,
                _ => spread::drop(&node, req.path(), body).await,
            }
        }
        None | Some("") => match method {
            Method::PUT => create(node, name, payload).await,
            Method::DELETE => {
                let next = spread::spread_id(&req).unwrap_or_else(crate::incarnation::fresh);
                drop(node, name, next, payload).await
            }
            _ => Ok(not_found(req).await),
        },
        Some(rest) => {
            let Some(key) = rest
                .strip_prefix(&KV_PREFIX[1..])
                .and_then(|k| k.strip_prefix('/'))
            else {
                return Ok(not_found(req).await);
            };
            let key = percent_encoding::percent_decode_str(key).decode_utf8_lossy();
            let key = parse_key(&key, &method)?;
            let target = Target {
                table: Some(name),
                key,
            };
            serve_key(node, target, req, payload).await
        }
    }
}

/// A table request's body.
#[derive(Deserialize, Default)]
struct TableBody<'a> {
    #[serde(default)]
    siblings: Option<bool>,
    #[serde(rename = "causal-metadata", borrow, default)]
    causal_metadata: Option<&'a RawValue>,
}

/// A table as answered.
#[derive(Serialize)]
struct Listed<'a> {
    name: &'a str,
    siblings: bool,
    keys: usize,
}

impl<'a> From<&'a TableInfo> for Listed<'a> {
    fn from(t: &'a TableInfo) -> Self {
        Listed {
            name: &t.name,
            siblings: t.siblings,
            keys: t.keys,
        }
    }
}

#[derive(Serialize)]
struct Tables<'a> {
    message: &'static str,
    tables: Vec<Listed<'a>>,
    #[serde(rename = "causal-metadata")]
    causal_metadata: Metadata<'a>,
}

#[derive(Serialize)]
struct Changed<'a> {
    message: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    table: Option<Listed<'a>>,
    #[serde(rename = "causal-metadata")]
    causal_metadata: Metadata<'a>,
}

async fn read_request(
    node: &Node,
    payload: web::Payload,
    method: &Method,
) -> Result<(web::Bytes, CausalContext), ApiError> {
    let body = read_body(payload, node.config.max_body_bytes, method).await?;
    let context = {
        let request: TableBody = parse_json(&body, method)?;
        CausalContext::parse_raw(request.causal_metadata)
            .map_err(|e| ApiError::new(Error::BadRequest(e), method))?
    };
    Ok((body, context))
}

async fn list(
    node: web::Data<Node>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let method = Method::GET;
    let body = read_body(payload, node.config.max_body_bytes, &method).await?;
    let request: TableBody = parse_json(&body, &method)?;
    let outside;
    let sent = match request.causal_metadata {
        Some(sent) => Some(sent),
        None => {
            outside = super::kv::context_outside_body(req.head());
            outside.as_deref()
        }
    };
    let context =
        CausalContext::parse_raw(sent).map_err(|e| ApiError::new(Error::BadRequest(e), &method))?;
    let (tables, learned) = node
        .serve_read(&context, |replica, context| replica.list_tables(context))
        .await
        .map_err(|wait| unavailable(wait, &context, &method))?;
    Ok(HttpResponse::Ok().json(Tables {
        message: "Retrieved successfully",
        tables: tables.iter().map(Listed::from).collect(),
        causal_metadata: learned.metadata(&context),
    }))
}

async fn create(
    node: web::Data<Node>,
    name: TableName,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let method = Method::PUT;
    let (body, context) = read_request(&node, payload, &method).await?;
    let siblings = parse_json::<TableBody>(&body, &method)?
        .siblings
        .unwrap_or(false);
    let result = node
        .serve(|node| {
            node.with_replica(|replica, _| replica.create_table(&name, siblings, &context))
        })
        .await
        .map_err(|wait| unavailable(wait, &context, &method))?;
    settled(&node, &method).await?;
    Ok(answer(&result, &context))
}

async fn drop(
    node: web::Data<Node>,
    name: TableName,
    next: String,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let method = Method::DELETE;
    let (_, context) = read_request(&node, payload, &method).await?;
    let result = node
        .serve(|node| node.with_replica(|replica, _| replica.drop_table(&name, &next, &context)))
        .await
        .map_err(|wait| unavailable(wait, &context, &method))?;
    settled(&node, &method).await?;
    if result.outcome == TableOutcome::NotFound {
        let metadata = result.learned.metadata(&context).to_value();
        return Err(ApiError::no_table(&method, metadata));
    }
    Ok(answer(&result, &context))
}

/// Waits until what was written is in the journal (with a disk).
async fn settled(node: &Node, method: &Method) -> Result<(), ApiError> {
    node.settle()
        .await
        .map_err(|why| ApiError::new(Error::DiskUnavailable(why), method))
}

fn answer(result: &TableResult, context: &CausalContext) -> HttpResponse {
    let (status, message) = match result.outcome {
        TableOutcome::Created => (StatusCode::CREATED, "Table created successfully"),
        TableOutcome::Existed => (StatusCode::OK, "Table already exists"),
        TableOutcome::Dropped | TableOutcome::NotFound => {
            (StatusCode::OK, "Table dropped successfully")
        }
    };
    HttpResponse::build(status).json(Changed {
        message,
        table: result.table.as_ref().map(Listed::from),
        causal_metadata: result.learned.metadata(context),
    })
}
