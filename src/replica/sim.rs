//! Simulated cluster tests (being written).
