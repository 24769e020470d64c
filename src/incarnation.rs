//! Incarnation ids: who a replica is in clocks and contexts, drawn afresh
//! whenever it starts without its state (and when it must become someone
//! new: see the replica's `Effect::Reincarnate`).
//!
//! The binary draws the first one and hands it to [`crate::server::start`],
//! so that the identity is chosen at the edge, where a replica that keeps
//! its state on disk will read it back instead.

/// A fresh incarnation: 64 random bits from the OS-seeded generator, as 16
/// hex digits. Two replicas drawing the same one is a 2^-64 event; a
/// joiner's is checked against those the members know.
pub fn fresh() -> String {
    format!("{:016x}", rand::random::<u64>())
}

#[cfg(test)]
mod tests {
    #[test]
    fn incarnations_are_sixteen_hex_digits_and_differ() {
        let a = super::fresh();
        let b = super::fresh();
        assert_eq!(a.len(), 16);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
