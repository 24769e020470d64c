//! Reading request bodies and answering unknown paths: the limits and the
//! 400s every handler shares.

use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde_json::json;

use super::error::{ApiError, Error};

/// The 404 of a path no route matches.
pub async fn not_found(req: HttpRequest) -> HttpResponse {
    HttpResponse::NotFound().json(json!({
        "error": format!("no such endpoint: {}", req.path()),
        "message": format!("Error in {}", req.method()),
    }))
}

/// Reads a request body of at most `limit` bytes; larger bodies are a 400.
pub async fn read_body(
    mut payload: web::Payload,
    limit: usize,
    method: &Method,
) -> Result<web::Bytes, ApiError> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::new(
                Error::BadRequest(format!("could not read the body: {e}")),
                method,
            )
        })?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::new(
                Error::BadRequest(format!("Request body is larger than {limit} bytes")),
                method,
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Decodes a JSON object request body; an empty body decodes as
/// `T::default()`. Anything else (not UTF-8, not an object) is a 400.
pub fn parse_json<'a, T: serde::Deserialize<'a> + Default>(
    body: &'a [u8],
    method: &Method,
) -> Result<T, ApiError> {
    let bad = |text: String| ApiError::new(Error::BadRequest(text), method);
    let text = std::str::from_utf8(body)
        .map_err(|e| bad(format!("Malformed JSON body: not UTF-8 ({e})")))?;
    let text = text.trim_start();
    if text.is_empty() {
        return Ok(T::default());
    }
    // Structs would also accept a JSON array of their fields: refuse it.
    if !text.starts_with('{') {
        return Err(bad("Malformed JSON body: expected a JSON object".into()));
    }
    serde_json::from_str(text).map_err(|e| bad(format!("Malformed JSON body: {e}")))
}
