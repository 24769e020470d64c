//! What rescued writes leave for later: a former incarnation's writes
//! kept on a disk it could not trust, to take in once ready, and the
//! count of rescued writes the next write issued carries to the members.

use crate::causal::{Dot, ReplicaId, VectorClock};
use crate::store::{Key, Store, Version};

/// What a former incarnation of a replica wrote, read from a disk that
/// could not be trusted (see [`Replica::rescue_when_ready`](super::Replica::rescue_when_ready)).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rescued {
    /// The versions whose winner was one of its writes.
    pub versions: Vec<(Key, Version)>,
    /// Its last write (its own entry of the applied clock on the disk):
    /// no context can name a later one, as nothing it wrote left it
    /// before being on that disk.
    pub writer: Option<Dot>,
}

impl Rescued {
    /// What `id` wrote, as `store` holds it: the versions whose winner is
    /// one of its writes after its first `held(key)` (those that others
    /// are known to hold, or to have handed on), and its last write, its
    /// `last`th.
    pub fn of(store: &Store, id: &ReplicaId, held: impl Fn(&str) -> u64, last: u64) -> Rescued {
        let versions = store
            .iter()
            .filter(|entry| entry.dot().replica == *id && entry.dot().counter > held(entry.key()))
            .map(|entry| (entry.to_key(), entry.to_version()))
            .collect();
        let writer = (last > 0).then(|| Dot::new(id.clone(), last));
        Rescued { versions, writer }
    }

    /// Whether there is nothing to take in.
    pub fn is_empty(&self) -> bool {
        self.versions.is_empty() && self.writer.is_none()
    }
}

/// The writes counted as applied here since the last write issued (their
/// writers' last, rescued: see `Replica::take_rescued`), which the next
/// write issued carries to the members, and what that write then depends
/// on: everything applied here when they were counted.
#[derive(Clone, Debug, Default)]
pub(super) struct ToCover {
    pub(super) dots: Vec<Dot>,
    pub(super) deps: VectorClock,
}
