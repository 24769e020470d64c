//! The one seeded generator behind every choice of a simulation, and how
//! the simulated network misbehaves.

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};

use super::super::timing::Millis;

/// The one generator behind every choice of a simulation: the same seed
/// gives the same run (within one build: `SmallRng` differs between 32-
/// and 64-bit targets).
pub(in crate::replica) struct Rng(SmallRng);

impl Default for Rng {
    fn default() -> Self {
        Rng::seeded(0)
    }
}

impl Rng {
    pub(in crate::replica) fn seeded(seed: u64) -> Rng {
        Rng(SmallRng::seed_from_u64(seed))
    }
    pub(in crate::replica) fn below(&mut self, n: u64) -> u64 {
        self.0.random_range(0..n.max(1))
    }
    pub(in crate::replica) fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
    pub(in crate::replica) fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
    pub(in crate::replica) fn shuffle<T>(&mut self, items: &mut [T]) {
        items.shuffle(&mut self.0);
    }
}

/// How the network misbehaves: chances per mille per message to drop and
/// to duplicate it and to make it 0.5–3 s late, and the usual latency in ms.
#[derive(Clone, Copy, Debug, Default)]
pub(in crate::replica) struct Faults(pub u64, pub u64, pub u64, pub Millis);

pub(in crate::replica) const CALM: Faults = Faults(0, 0, 0, 30);
pub(in crate::replica) const LOSSY: Faults = Faults(50, 100, 0, 100);
pub(in crate::replica) const ROUGH: Faults = Faults(100, 150, 50, 200);
