//! Conditional writes: the [`Precondition`] a write is sent with, and
//! entity tags as request headers carry them ([`quote_etag`]).

/// The condition of a conditional write
/// ([`Client::put_if`](crate::client::Client::put_if),
/// [`Client::delete_if`](crate::client::Client::delete_if)): the replica that takes the write makes it only
/// if the condition holds there, once the request's context is met, and
/// answers 412 otherwise. Judged at that replica alone: conditional writes
/// made concurrently at two replicas can both succeed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Precondition {
    /// Only if the key holds no value (`If-None-Match: *`): create, never
    /// overwrite.
    Absent,
    /// Only if the key's current version has this entity tag, quoted
    /// (`If-Match: "<etag>"`); `*`: whatever its version, so only if the
    /// key holds a value. Made by [`Precondition::matching`].
    Matches(String),
}

impl Precondition {
    /// `If-Match` naming `tag`, quoted if it was given without quotes (see
    /// [`quote_etag`]).
    pub fn matching(tag: &str) -> Result<Self, String> {
        quote_etag(tag).map(Precondition::Matches)
    }

    /// The request header that carries the condition: name and value.
    pub fn header(&self) -> (&'static str, &str) {
        match self {
            Precondition::Absent => ("if-none-match", "*"),
            Precondition::Matches(tag) => ("if-match", tag),
        }
    }
}

/// An entity tag as a request header carries it: `"<tag>"`, quoted if it
/// was given bare (`9f2c0a1b3d4e5f60` becomes `"9f2c0a1b3d4e5f60"`); `*`
/// and weak tags (`W/"<tag>"`) are kept as they are. Refuses an empty tag
/// and one with a space, a control character, a quote or a comma inside.
pub fn quote_etag(tag: &str) -> Result<String, String> {
    let tag = tag.trim();
    if tag == "*" {
        return Ok(tag.to_string());
    }
    let weak = tag.starts_with("W/");
    let inner = tag.strip_prefix("W/").unwrap_or(tag);
    let bare = match inner.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(bare) => bare,
        None if weak => return Err(format!("invalid entity tag {tag:?}: W/ needs a quoted tag")),
        None => inner,
    };
    if bare.is_empty() {
        return Err("an entity tag cannot be empty".into());
    }
    if let Some(c) = bare
        .chars()
        .find(|&c| !c.is_ascii_graphic() || c == '"' || c == ',')
    {
        return Err(format!(
            "invalid entity tag {tag:?}: {c:?} is not allowed in a tag"
        ));
    }
    Ok(if weak {
        format!("W/\"{bare}\"")
    } else {
        format!("\"{bare}\"")
    })
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn entity_tags_are_quoted_when_given_bare() {
        let tag = "9f2c0a1b3d4e5f60";
        let quoted = "\"9f2c0a1b3d4e5f60\"";
        assert_eq!(quote_etag(tag).unwrap(), quoted);
        assert_eq!(quote_etag(quoted).unwrap(), quoted);
        assert_eq!(quote_etag(&format!(" {quoted} ")).unwrap(), quoted);
        assert_eq!(quote_etag("*").unwrap(), "*");
        assert_eq!(quote_etag("W/\"ab\"").unwrap(), "W/\"ab\"");
        for bad in ["", "\"\"", "a b", "a\"b", "\"a", "a,b", "W/ab", "é", "a\tb"] {
            assert!(quote_etag(bad).is_err(), "accepted {bad:?}");
        }
        assert_eq!(
            Precondition::matching(tag).unwrap(),
            Precondition::Matches(quoted.into())
        );
        assert_eq!(
            Precondition::matching(tag).unwrap().header(),
            ("if-match", quoted)
        );
        assert_eq!(Precondition::Absent.header(), ("if-none-match", "*"));
        assert_eq!(
            Precondition::matching("*").unwrap().header(),
            ("if-match", "*")
        );
    }
}
