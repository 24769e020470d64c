//! Where a key lives: its partition, and the shard that holds the partition.
//!
//! # Partitions
//!
//! The key space is cut into [`PARTITIONS`] fixed partitions. A key's
//! partition is given by the top 12 bits of its 64-bit xxh3 hash: xxh3 is
//! a specified, seedless hash, so every node, build and machine computes
//! the same partition for the same key (Rust's `DefaultHasher` is neither:
//! its algorithm may change between releases and `RandomState` seeds it
//! per process).
//!
//! A shard's share of the partitions is exact (below), so how many of `K`
//! keys it holds varies only as hashing does: binomially around `K/n`,
//! with a standard deviation near `√(K/n)`. At 10,000 keys that is 1% of
//! the mean for 2 shards and 3% for 10, so a shard more than 10% off is a
//! three-sigma event even at 10 shards, and the spread narrows as keys
//! are added.
//!
//! # Layouts
//!
//! A [`Layout`] deals the partitions to `n` shards. It is a function of `n`
//! alone, so any node computes a key's shard from the shard count without
//! asking anyone, and two nodes that agree on the count agree on every
//! key. Every shard holds ⌊P/n⌋ or ⌈P/n⌉ partitions (the first `P mod n`
//! shards one more): the balance is exact, not statistical.
//!
//! The layout of `n + 1` shards is made from that of `n` by [`rebalance`]:
//! each shard keeps its partitions up to its new share and gives the rest
//! (its highest-numbered ones) to the shards below their share, here the
//! new one. Nothing else moves, so growing from `n` to `n + 1` shards moves
//! exactly the new shard's share, ⌈P/(n+1)⌉ or ⌊P/(n+1)⌋ partitions: the
//! fewest any balanced layout can move. Shrinking from `n + 1` to `n` moves
//! the same partitions back: the last shard's, to the shards they came from.
//!
//! # Why fixed partitions rather than a hash ring
//!
//! A consistent-hash ring with virtual nodes also moves little when a shard
//! is added, but it balances only statistically (its spread shrinks with the
//! number of virtual nodes, which the ring then has to search), and what
//! moves is a scatter of ranges. Fixed partitions (as Riak's ring and
//! Garage's layout use) balance exactly, name the unit a reshard copies and
//! hands over (a partition), and make a layout a table of 4,096 shard
//! numbers that is cheap to build and look up.

use std::sync::{Arc, Mutex, OnceLock};

use xxhash_rust::xxh3::xxh3_64;

/// How many partitions the key space is cut into (fixed for ever: changing
/// it would move almost every key).
pub const PARTITIONS: usize = 4096;

/// The most shards a layout deals partitions to (each shard takes two
/// replicas or more, so no store comes near it).
pub const MAX_SHARDS: u32 = 256;

/// The partition of `key`.
pub fn partition(key: &str) -> usize {
    // The hash's high bits (multiply and shift: the range reduction that
    // keeps the hash's uniformity without a division).
    ((u128::from(xxh3_64(key.as_bytes())) * PARTITIONS as u128) >> 64) as usize
}

/// Which shard (`0..count`) holds each partition, for a shard count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The shard of each partition.
    owners: Vec<u32>,
    count: u32,
}

impl Layout {
    /// The layout of `count` shards (1 to [`MAX_SHARDS`]; a count outside
    /// is taken as the nearest bound), as every node computes it (see the
    /// module doc). Layouts are built once per count and shared.
    pub fn new(count: u32) -> Arc<Layout> {
        let count = count.clamp(1, MAX_SHARDS);
        static BUILT: OnceLock<Mutex<Vec<Arc<Layout>>>> = OnceLock::new();
        let mut built = BUILT
            .get_or_init(|| {
                Mutex::new(vec![Arc::new(Layout {
                    owners: vec![0; PARTITIONS],
                    count: 1,
                })])
            })
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        while built.len() < count as usize {
            let last = built.last().expect("the layout of one shard");
            let mut owners = last.owners.clone();
            let next = last.count + 1;
            rebalance(&mut owners, next);
            built.push(Arc::new(Layout {
                owners,
                count: next,
            }));
        }
        built[count as usize - 1].clone()
    }

    /// How many shards the layout deals the partitions to.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The shard that holds `partition`.
    pub fn owner(&self, partition: usize) -> u32 {
        self.owners[partition % PARTITIONS]
    }

    /// The shard that holds `key`.
    pub fn shard_of(&self, key: &str) -> u32 {
        self.owner(partition(&crate::store::tables::placement_text(key)))
    }

    /// Whether `key` is held by another shard in `other` than in this
    /// layout (it moves in a reshard between the two).
    pub fn moves(&self, key: &str, other: &Layout) -> bool {
        let p = partition(&crate::store::tables::placement_text(key));
        self.owner(p) != other.owner(p)
    }

    /// The partitions of `shard`, in order.
    pub fn partitions_of(&self, shard: u32) -> impl Iterator<Item = usize> + '_ {
        (0..PARTITIONS).filter(move |&p| self.owners[p] == shard)
    }

    /// The partitions whose shard differs between this layout and `other`.
    pub fn moved_to<'a>(&'a self, other: &'a Layout) -> impl Iterator<Item = usize> + 'a {
        (0..PARTITIONS).filter(move |&p| self.owners[p] != other.owners[p])
    }
}

/// How many partitions shard `shard` of `count` holds in a balanced layout.
pub fn share(shard: u32, count: u32) -> usize {
    let count = count as usize;
    PARTITIONS / count + usize::from((shard as usize) < PARTITIONS % count)
}

/// Deals `owners` (a shard for each partition) to `count` shards, balanced
/// (see [`share`]), moving the fewest partitions: each shard keeps its
/// lowest-numbered partitions up to its share; the rest, and every
/// partition of a shard numbered `count` or above, go to the shards below
/// their share, lowest shard first.
pub fn rebalance(owners: &mut [u32], count: u32) {
    let count = count.max(1);
    let mut held = vec![0usize; count as usize];
    let mut surplus = Vec::new();
    for (partition, owner) in owners.iter().enumerate() {
        match held.get_mut(*owner as usize) {
            Some(n) if *n < share(*owner, count) => *n += 1,
            _ => surplus.push(partition),
        }
    }
    let mut surplus = surplus.into_iter();
    for shard in 0..count {
        while held[shard as usize] < share(shard, count) {
            let partition = surplus
                .next()
                .expect("the partitions over their shares fill the shares under");
            owners[partition] = shard;
            held[shard as usize] += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The partitions of "a", "sampleKey" and "key:000000000042".
    const PINNED: [usize; 3] = [3692, 1844, 1688];

    fn keys(seed: u64, n: usize) -> Vec<String> {
        (0..n).map(|i| format!("key-{seed}-{i}")).collect()
    }

    #[test]
    fn a_key_s_partition_never_changes() {
        // Pinned: a change of hash or of the partition count would move
        // the keys of every existing store.
        let pinned: Vec<usize> = ["a", "sampleKey", "key:000000000042"]
            .iter()
            .map(|k| partition(k))
            .collect();
        assert_eq!(pinned, PINNED);
        // XXH3-64 of "a" with the default seed, as the xxHash reference
        // implementation gives it; its top 12 bits, 0xe6c, are partition
        // 3692.
        assert_eq!(xxh3_64(b"a"), 0xe6c6_32b6_1e96_4e1f);
    }

    #[test]
    fn every_layout_is_balanced_exactly() {
        for count in 1..=64u32 {
            let layout = Layout::new(count);
            assert_eq!(layout.count(), count);
            for shard in 0..count {
                let held = layout.partitions_of(shard).count();
                assert_eq!(held, share(shard, count), "shard {shard} of {count}");
                assert!(
                    held == PARTITIONS / count as usize
                        || held == PARTITIONS.div_ceil(count as usize)
                );
            }
        }
    }

    #[test]
    fn shrinking_by_one_moves_the_last_shards_partitions_back() {
        for count in 1..=63u32 {
            let (small, big) = (Layout::new(count), Layout::new(count + 1));
            let moved: Vec<usize> = big.moved_to(&small).collect();
            let last: Vec<usize> = big.partitions_of(count).collect();
            assert_eq!(moved, last, "{} -> {count}", count + 1);
        }
    }

    #[test]
    fn growing_by_one_shard_moves_only_the_new_shards_share() {
        for count in 1..=63u32 {
            let before = Layout::new(count);
            let after = Layout::new(count + 1);
            let moved: Vec<usize> = before.moved_to(&after).collect();
            assert_eq!(
                moved.len(),
                share(count, count + 1),
                "{count} -> {}",
                count + 1
            );
            assert!(
                moved.iter().all(|&p| after.owner(p) == count),
                "only to the new shard"
            );
        }
    }

    #[test]
    fn a_key_moves_exactly_when_its_shard_differs() {
        let (two, three) = (Layout::new(2), Layout::new(3));
        let (mut moved, mut stayed) = (0, 0);
        for key in keys(7, 2_000) {
            let differs = two.shard_of(&key) != three.shard_of(&key);
            assert_eq!(two.moves(&key, &three), differs, "{key}");
            assert_eq!(three.moves(&key, &two), differs, "{key}");
            assert!(!two.moves(&key, &two));
            if differs {
                moved += 1
            } else {
                stayed += 1
            }
        }
        assert!(moved > 0 && stayed > 0, "both cases were seen");
    }

    #[test]
    fn rebalance_moves_nothing_already_balanced_and_empties_removed_shards() {
        let layout = Layout::new(5);
        let mut owners = layout.owners.clone();
        rebalance(&mut owners, 5);
        assert_eq!(owners, layout.owners);
        rebalance(&mut owners, 3);
        assert!(owners.iter().all(|&s| s < 3));
        for shard in 0..3 {
            assert_eq!(
                owners.iter().filter(|&&s| s == shard).count(),
                share(shard, 3)
            );
        }
        // Only the partitions of the removed shards, and those over the new
        // shares, moved: 5 -> 3 keeps every partition of shards 0..3 up to
        // their share.
        let kept = (0..PARTITIONS)
            .filter(|&p| layout.owner(p) < 3 && owners[p] == layout.owner(p))
            .count();
        assert_eq!(kept, (0..3).map(|s| share(s, 5)).sum::<usize>());
    }

    #[test]
    fn shard_counts_out_of_range_take_the_nearest_bound() {
        assert_eq!(Layout::new(0).count(), 1);
        assert_eq!(Layout::new(u32::MAX).count(), MAX_SHARDS);
        let most = Layout::new(MAX_SHARDS);
        assert!((0..MAX_SHARDS).all(|s| most.partitions_of(s).count() == 16));
    }

    #[test]
    fn a_layout_is_the_same_whoever_builds_it() {
        let a = Layout::new(7);
        let mut owners = vec![0; PARTITIONS];
        for count in 2..=7 {
            rebalance(&mut owners, count);
        }
        assert_eq!(owners, a.owners);
    }

    /// Key names as clients make them.
    fn families() -> Vec<Vec<String>> {
        vec![
            (0..10_000).map(|i| format!("key{i}")).collect(),
            (0..10_000).map(|i| format!("key:{i:012}")).collect(),
            (0..10_000)
                .map(|i| format!("user/{}/profile", i * 7919))
                .collect(),
            (0..10_000).map(|i| format!("{i:x}")).collect(),
        ]
    }

    /// 10,000 keys over 2 to 10 shards: every shard within ±10% of the
    /// mean, for each family of names. (A fixed set: over random keys the
    /// spread is statistical, a binomial around the mean.)
    #[test]
    fn keys_spread_within_ten_percent_of_the_mean() {
        for keys in families() {
            for count in 2u32..=10 {
                let layout = Layout::new(count);
                let mut per = vec![0usize; count as usize];
                for key in &keys {
                    per[layout.shard_of(key) as usize] += 1;
                }
                let mean = keys.len() as f64 / count as f64;
                for (shard, n) in per.iter().enumerate() {
                    let off = (*n as f64 - mean).abs() / mean;
                    assert!(
                        off <= 0.10,
                        "{}..: shard {shard} of {count} holds {n}, mean {mean:.0}",
                        keys[0]
                    );
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// A reshard from N to N + 1 shards moves within 15% of K/(N+1) of
        /// K keys, all of them to the new shard.
        #[test]
        fn growing_by_one_moves_close_to_the_minimum(seed in any::<u64>(), count in 1u32..=10) {
            let (before, after) = (Layout::new(count), Layout::new(count + 1));
            let keys = keys(seed, 10_000);
            let moved: Vec<&String> = keys.iter().filter(|k| before.shard_of(k) != after.shard_of(k)).collect();
            prop_assert!(moved.iter().all(|k| after.shard_of(k) == count));
            let minimum = keys.len() as f64 / (count + 1) as f64;
            let off = (moved.len() as f64 - minimum).abs() / minimum;
            prop_assert!(off <= 0.15, "{} keys moved, minimum {:.0}", moved.len(), minimum);
        }

        /// Shrinking by one moves back exactly what growing moved.
        #[test]
        fn shrinking_by_one_undoes_growing(key in ".{0,40}", count in 1u32..=20) {
            let (small, big) = (Layout::new(count), Layout::new(count + 1));
            let (s, b) = (small.shard_of(&key), big.shard_of(&key));
            prop_assert!(s < count && b <= count);
            prop_assert!(s == b || b == count, "a key moves only to the new shard");
        }
    }
}
