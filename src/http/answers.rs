//! What key-value requests are answered with: the JSON of a value found,
//! a write done, a key missing or its siblings, and the 503 of a request
//! that could not be served (tables' requests answer it too).

use actix_web::http::Method;
use actix_web::HttpResponse;
use serde::Serialize;
use serde_json::value::RawValue;

use super::error::{ApiError, Error};
use crate::causal::{CausalContext, Metadata};
use crate::replica::Wait;
use crate::shard::ShardId;
use crate::store::Value;

/// A successful GET. The value is embedded as the JSON text stored, never
/// re-parsed, so it is returned exactly as it was put.
#[derive(Serialize)]
pub(super) struct Found<'a> {
    pub(super) message: &'static str,
    #[serde(rename = "shard-id", skip_serializing_if = "Option::is_none")]
    pub(super) shard_id: Option<ShardId>,
    #[serde(rename = "causal-metadata")]
    pub(super) causal_metadata: Metadata<'a>,
    pub(super) value: &'a RawValue,
}

/// A successful PUT or DELETE.
#[derive(Serialize)]
pub(super) struct Done<'a> {
    #[serde(rename = "causal-metadata")]
    pub(super) causal_metadata: Metadata<'a>,
    pub(super) message: &'static str,
    #[serde(rename = "shard-id", skip_serializing_if = "Option::is_none")]
    pub(super) shard_id: Option<ShardId>,
}

/// A GET or DELETE of a key that does not exist.
#[derive(Serialize)]
pub(super) struct Missing<'a> {
    #[serde(rename = "causal-metadata")]
    causal_metadata: Metadata<'a>,
    #[serde(rename = "doesExist")]
    does_exist: bool,
    error: &'static str,
    message: &'static str,
    #[serde(rename = "shard-id", skip_serializing_if = "Option::is_none")]
    shard_id: Option<ShardId>,
}

impl<'a> Missing<'a> {
    pub(super) fn new(
        message: &'static str,
        causal_metadata: Metadata<'a>,
        shard_id: Option<ShardId>,
    ) -> Self {
        Missing {
            causal_metadata,
            does_exist: false,
            error: "Key does not exist",
            message,
            shard_id,
        }
    }
}

/// The 300 of a GET of a key with siblings: every concurrent value.
pub(super) fn siblings(
    values: &[Value],
    metadata: Metadata<'_>,
    shard_id: Option<ShardId>,
) -> HttpResponse {
    #[derive(Serialize)]
    struct Siblings<'a> {
        #[serde(rename = "doesExist")]
        does_exist: bool,
        message: &'static str,
        values: Vec<&'a RawValue>,
        #[serde(rename = "causal-metadata")]
        causal_metadata: Metadata<'a>,
        #[serde(rename = "shard-id", skip_serializing_if = "Option::is_none")]
        shard_id: Option<ShardId>,
    }
    HttpResponse::build(actix_web::http::StatusCode::MULTIPLE_CHOICES).json(Siblings {
        does_exist: true,
        message: "Retrieved successfully",
        values: values.iter().map(Value::as_raw).collect(),
        causal_metadata: metadata,
        shard_id,
    })
}

/// The 503 for a request that could not be served; it carries the
/// request's context back unchanged.
pub(super) fn unavailable(wait: Wait, context: &CausalContext, method: &Method) -> ApiError {
    let error = Error::from(wait);
    let metadata = context.reply(&Default::default()).to_value();
    ApiError::new(error, method).with("causal-metadata", metadata)
}
