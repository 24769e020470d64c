//! The one error type of the HTTP edge, and its mapping to status codes and
//! JSON bodies.

use actix_web::http::{Method, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde_json::{json, Map, Value};

use crate::replica::Wait;

/// What went wrong, ordered by what the caller must do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed; fix it (400).
    #[error("{0}")]
    BadRequest(String),
    /// The key or socket address named does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with this node's state: a replica-to-replica
    /// request from another shard group, a reshard while another runs
    /// (409).
    #[error("{0}")]
    Conflict(String),
    /// No node of a key's shard could be reached, or a reshard could not
    /// finish; retry later (503).
    #[error("{0}")]
    Unavailable(String),
    /// Sharded: the key is no longer this node's to serve (the request is
    /// sent where it now lives); 503 if that cannot be done.
    #[error("The key moved to another shard; retry the request")]
    Moved,
    /// The request's `If-Match` or `If-None-Match` did not hold; nothing was
    /// written (412).
    #[error("Precondition failed: {0}")]
    PreconditionFailed(String),
    /// A replica-to-replica request without the right cluster token (401).
    #[error("missing or wrong cluster token")]
    Unauthorized,
    /// The client's causal dependencies were not applied in time; retry
    /// later or elsewhere (503).
    #[error("Causal dependencies not satisfied")]
    DependenciesNotSatisfied,
    /// The replica holds no copy of the state yet (it is starting, or
    /// copying what it lacks); retry later or elsewhere (503).
    #[error("Replica is not ready: it is copying the state of a member")]
    NotReady,
    /// The replica is shutting down and takes no more writes; send the
    /// write to another replica (503).
    #[error("Replica is shutting down")]
    ShuttingDown,
    /// A member removed this replica from the view; it serves clients
    /// again once it is added back (503).
    #[error("Replica was removed from the view: it serves again once added back")]
    Removed,
    /// The replica's disk has no room for the write, which was not made;
    /// reads go on, and writes once there is room (503).
    #[error("Disk unavailable ({0}): the write was not made")]
    DiskUnavailable(String),
    /// Fewer replicas than the request's write concern held the write in
    /// time; it is kept where it was made and still spreads (503).
    #[error("Write concern not met: the write is kept here and will still spread")]
    ConcernNotMet,
}

impl From<Wait> for Error {
    /// Why a request the replica could not serve in time gets a 503.
    fn from(wait: Wait) -> Self {
        match wait {
            Wait::Missing(_) => Error::DependenciesNotSatisfied,
            Wait::NotReady => Error::NotReady,
            Wait::ShuttingDown => Error::ShuttingDown,
            Wait::Removed => Error::Removed,
            Wait::Moving => Error::Unavailable(
                "The key is moving to another shard: the reshard did not finish in time".into(),
            ),
            Wait::Moved => Error::Moved,
            Wait::MapBehind(version) => Error::Unavailable(format!(
                "This node has not learned version {version} of the shard map, which the request's context went through, in time"
            )),
        }
    }
}

impl Error {
    /// The HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Unauthorized => StatusCode::UNAUTHORIZED,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            Error::Unavailable(_)
            | Error::Moved
            | Error::DependenciesNotSatisfied
            | Error::NotReady
            | Error::ShuttingDown
            | Error::Removed
            | Error::DiskUnavailable(_)
            | Error::ConcernNotMet => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// An [`Error`] answered to a request: `{"error": .., "message": "Error in
/// <METHOD>"}` plus any extra fields (`causal-metadata`, `doesExist`).
#[derive(Debug)]
pub struct ApiError {
    /// What went wrong.
    pub error: Error,
    /// The request method, named in `message`.
    pub method: Method,
    /// Fields added to the body.
    pub extra: Map<String, Value>,
}

impl ApiError {
    /// The 404 of a request naming a table that does not exist, with the
    /// context to keep.
    pub fn no_table(method: &Method, metadata: Value) -> Self {
        ApiError::new(Error::NotFound("Table does not exist".into()), method)
            .with("causal-metadata", metadata)
    }

    /// An error for a request made with `method`.
    pub fn new(error: Error, method: &Method) -> Self {
        ApiError {
            error,
            method: method.clone(),
            extra: Map::new(),
        }
    }

    /// Adds a field to the body.
    pub fn with(mut self, field: &str, value: Value) -> Self {
        self.extra.insert(field.to_string(), value);
        self
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.error, self.method)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.error.status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut body = self.extra.clone();
        body.insert("error".into(), json!(self.error.to_string()));
        body.insert("message".into(), json!(format!("Error in {}", self.method)));
        HttpResponse::build(self.status_code()).json(Value::Object(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::MessageBody;

    #[test]
    fn errors_map_to_status_and_spec_body() {
        let e = ApiError::new(Error::BadRequest("Key is too long".into()), &Method::PUT);
        let resp = e.error_response();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        let bytes = resp.into_body().try_into_bytes().unwrap();
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            body,
            json!({"error": "Key is too long", "message": "Error in PUT"})
        );
        assert_eq!(
            Error::DependenciesNotSatisfied.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(Error::NotFound("x".into()).status(), StatusCode::NOT_FOUND);
        assert_eq!(Error::Unauthorized.status(), StatusCode::UNAUTHORIZED);
    }
}
