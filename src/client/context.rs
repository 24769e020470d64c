//! Causal contexts (`causal-metadata` values) as a client handles them:
//! merged, and tested for emptiness.

use serde_json::Value;

use crate::causal::{context, CausalContext};

/// Merges two causal contexts (`causal-metadata` values): the result
/// requires every write either requires (pointwise maximum), printed
/// canonically. Fails if either is malformed.
pub fn merge_contexts(a: &Value, b: &Value) -> Result<Value, String> {
    let a = CausalContext::parse(Some(a))?;
    let b = CausalContext::parse(Some(b))?;
    let mut clock = a.clock().clone();
    clock.merge(b.clock());
    Ok(context::print(&clock))
}

/// Whether a context requires no write at all (`""`, `null`, `{}`).
pub fn context_is_empty(context: &Value) -> bool {
    CausalContext::parse(Some(context)).is_ok_and(|c| c.clock().is_empty())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn contexts_merge_pointwise() {
        let a = json!({"r1#a": 3, "r2#b": 1});
        let b = json!({"r2#b": 4, "r3#c": 2});
        assert_eq!(
            merge_contexts(&a, &b).unwrap(),
            json!({"r1#a": 3, "r2#b": 4, "r3#c": 2})
        );
        assert_eq!(merge_contexts(&json!(""), &a).unwrap(), a);
        assert_eq!(merge_contexts(&json!(null), &json!({})).unwrap(), json!({}));
        assert!(merge_contexts(&json!(5), &a).is_err());
        assert!(context_is_empty(&json!("")));
        assert!(context_is_empty(&json!({})));
        assert!(!context_is_empty(&a));
    }
}
