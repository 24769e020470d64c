//! Running a simulated test over many seeds, and replaying one.

use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs `test` for `n` seeds; a failure names its seed. `SIM_SEED=<seed>`
/// replays one, `SIM_SEEDS=<n>` runs more.
pub(in crate::replica) fn for_seeds(n: u64, test: impl Fn(u64)) {
    let var = |name| std::env::var(name).map(|v| v.parse::<u64>().expect("a number"));
    let seeds: Vec<u64> = match var("SIM_SEED") {
        Ok(seed) => vec![seed],
        Err(_) => (0..var("SIM_SEEDS").unwrap_or(n))
            .map(|s| s * 7919 + 17)
            .collect(),
    };
    super::trace::trace();
    for seed in seeds {
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| test(seed))) {
            let text = panic.downcast_ref::<String>().map(String::as_str);
            let text = text.or(panic.downcast_ref::<&str>().copied());
            panic!("seed {seed}: {}", text.unwrap_or("panicked"));
        }
    }
}
