//! The shards of a sharded store after settling: the key counts the
//! shards report (`/key-value-store-shard/shard-id-key-count/<ID>`) must
//! sum to the keys present in the final reads, and each shard's count must
//! be the number of present keys its placement deals it.

use std::collections::{BTreeMap, BTreeSet};

use super::FinalRead;

/// What is wrong with the key counts `counts` (by shard id; `None` where a
/// count could not be read), given the final reads and `shard_of`, the
/// shard that the placement deals a key to. A key counts as present when
/// every final read of it found a value. Empty when all is well.
pub fn key_count_problems(
    final_reads: &[FinalRead],
    counts: &BTreeMap<u64, Option<u64>>,
    shard_of: impl Fn(&str) -> u64,
) -> Vec<String> {
    let mut present: BTreeMap<&str, bool> = BTreeMap::new();
    for r in final_reads {
        *present.entry(r.key.as_str()).or_insert(true) &= r.value.is_some();
    }
    let present: BTreeSet<&str> = present
        .into_iter()
        .filter(|&(_, p)| p)
        .map(|(k, _)| k)
        .collect();
    let mut problems = Vec::new();
    let mut sum = 0;
    for (&id, &count) in counts {
        let placed = present.iter().filter(|k| shard_of(k) == id).count() as u64;
        match count {
            Some(n) => {
                sum += n;
                if n != placed {
                    problems.push(format!(
                        "shard {id} counts {n} keys, but {placed} present keys are placed in it"
                    ));
                }
            }
            None => problems.push(format!("shard {id}'s key count could not be read")),
        }
    }
    let homeless: Vec<&str> = present
        .iter()
        .copied()
        .filter(|k| !counts.contains_key(&shard_of(k)))
        .collect();
    if !homeless.is_empty() {
        problems.push(format!(
            "present keys placed in no shard the store lists: {homeless:?}"
        ));
    }
    if counts.values().all(Option::is_some) && sum != present.len() as u64 {
        problems.push(format!(
            "the shards' key counts sum to {sum}, but {} keys are present",
            present.len()
        ));
    }
    problems
}
