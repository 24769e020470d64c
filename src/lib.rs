//! causalkv: a causally consistent, replicated key-value store.
//!
//! Placeholder crate doc; rewritten below once the server is wired.

pub mod address;
pub mod causal;
pub mod replica;
pub mod store;
