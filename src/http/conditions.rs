//! Conditional requests: `If-Match` and `If-None-Match` on PUT and DELETE
//! (a [`Condition`] the replica judges once the request's context is
//! satisfied; 412 when it does not hold), and `If-None-Match` on GET (304
//! when the client's copy is current).
//!
//! Entity tags name versions (see [`crate::store::etag`]): the same version
//! has the same tag at every replica. Only strong comparison is done; a
//! tag sent without quotes is taken as if quoted.

use actix_web::dev::RequestHead;
use actix_web::http::{Method, StatusCode};
use actix_web::HttpResponse;
use serde_json::Value as Json;

use super::error::{ApiError, Error};
use crate::replica::Condition;

/// The tags of a header value: `*`, or a comma-separated list of
/// (quoted) tags.
fn tags(text: &str) -> Option<Vec<String>> {
    let text = text.trim();
    if text == "*" {
        return None;
    }
    Some(
        text.split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| {
                let t = t.strip_prefix("W/").unwrap_or(t);
                if t.len() >= 2 && t.starts_with('"') && t.ends_with('"') {
                    t.to_string()
                } else {
                    format!("\"{t}\"")
                }
            })
            .collect(),
    )
}

fn header<'a>(
    req: &'a RequestHead,
    name: &str,
    method: &Method,
) -> Result<Option<&'a str>, ApiError> {
    match req.headers.get(name) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .map(Some)
            .map_err(|_| ApiError::new(Error::BadRequest(format!("{name} is not text")), method)),
    }
}

/// The condition of a PUT or DELETE, from `If-Match` or `If-None-Match`.
pub(super) fn parse(req: &RequestHead, method: &Method) -> Result<Condition, ApiError> {
    let if_match = header(req, "if-match", method)?;
    let if_none_match = header(req, "if-none-match", method)?;
    let condition = match (if_match, if_none_match) {
        (None, None) => Condition::Any,
        (Some(_), Some(_)) => {
            return Err(ApiError::new(
                Error::BadRequest("Send If-Match or If-None-Match, not both".into()),
                method,
            ))
        }
        (Some(text), None) => match tags(text) {
            None => Condition::Present,
            Some(tags) => Condition::Matches(tags),
        },
        (None, Some(text)) => match tags(text) {
            None => Condition::Absent,
            Some(tags) => Condition::MatchesNone(tags),
        },
    };
    let empty =
        matches!(&condition, Condition::Matches(t) | Condition::MatchesNone(t) if t.is_empty());
    if empty {
        return Err(ApiError::new(
            Error::BadRequest("If-Match and If-None-Match need * or an entity tag".into()),
            method,
        ));
    }
    Ok(condition)
}

/// The 412 of a write whose condition did not hold, with the context the
/// client should keep and the current version's tag, if any.
pub(super) fn unmet(
    condition: &Condition,
    current: Option<String>,
    metadata: Json,
    method: &Method,
) -> ApiError {
    let why = match condition {
        Condition::Absent => "the key exists (If-None-Match: *)",
        Condition::Present => "the key does not exist (If-Match: *)",
        Condition::Matches(_) if current.is_none() => "the key does not exist (If-Match)",
        Condition::Matches(_) => "the key's version is not one If-Match names",
        Condition::MatchesNone(_) => "the key's version is one If-None-Match names",
        Condition::Any => "no condition",
    };
    let error = ApiError::new(Error::PreconditionFailed(why.into()), method)
        .with("causal-metadata", metadata);
    match current {
        Some(etag) => error.with("etag", Json::String(etag)),
        None => error,
    }
}

/// For a GET whose `If-None-Match` names the version found (or is `*`):
/// the 304 to answer instead of the value.
pub(super) fn not_modified(req: &RequestHead, current: Option<&str>) -> Option<HttpResponse> {
    let current = current?;
    let text = req.headers.get("if-none-match")?.to_str().ok()?;
    let matched = match tags(text) {
        None => true,
        Some(tags) => tags.iter().any(|t| t == current),
    };
    matched.then(|| {
        HttpResponse::build(StatusCode::NOT_MODIFIED)
            .insert_header(("etag", current))
            .finish()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn condition(headers: &[(&str, &str)]) -> Result<Condition, u16> {
        let mut req = TestRequest::default();
        for (k, v) in headers {
            req = req.insert_header((*k, *v));
        }
        parse(req.to_http_request().head(), &Method::PUT).map_err(|e| e.error.status().as_u16())
    }

    #[test]
    fn headers_parse_into_conditions() {
        assert_eq!(condition(&[]), Ok(Condition::Any));
        assert_eq!(condition(&[("If-None-Match", "*")]), Ok(Condition::Absent));
        assert_eq!(condition(&[("If-Match", "*")]), Ok(Condition::Present));
        assert_eq!(
            condition(&[("If-Match", "\"a1\", W/\"b2\", c3")]),
            Ok(Condition::Matches(vec![
                "\"a1\"".into(),
                "\"b2\"".into(),
                "\"c3\"".into()
            ]))
        );
        assert_eq!(
            condition(&[("If-None-Match", "\"a1\"")]),
            Ok(Condition::MatchesNone(vec!["\"a1\"".into()]))
        );
        assert_eq!(
            condition(&[("If-Match", "*"), ("If-None-Match", "*")]),
            Err(400)
        );
        assert_eq!(condition(&[("If-Match", " , ")]), Err(400));
    }

    #[test]
    fn conditions_hold_as_http_says() {
        let tag = Some("\"a1\"");
        assert!(Condition::Absent.holds(None) && !Condition::Absent.holds(tag));
        assert!(Condition::Present.holds(tag) && !Condition::Present.holds(None));
        let matches = Condition::Matches(vec!["\"a1\"".into()]);
        assert!(matches.holds(tag) && !matches.holds(Some("\"b2\"")) && !matches.holds(None));
        let none = Condition::MatchesNone(vec!["\"a1\"".into()]);
        assert!(!none.holds(tag) && none.holds(Some("\"b2\"")) && none.holds(None));
    }

    #[test]
    fn a_get_naming_the_current_version_is_not_modified() {
        let req = TestRequest::default()
            .insert_header(("If-None-Match", "\"x\", \"a1\""))
            .to_http_request();
        let r = not_modified(req.head(), Some("\"a1\"")).expect("304");
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
        assert!(not_modified(req.head(), Some("\"b2\"")).is_none());
        assert!(not_modified(req.head(), None).is_none());
        let plain = TestRequest::default().to_http_request();
        assert!(not_modified(plain.head(), Some("\"a1\"")).is_none());
    }
}
