//! What rescued writes leave for later: a former incarnation's writes
//! kept on a disk it could not trust, to take in once ready, and the
//! count of rescued writes the next write issued carries to the members.

use crate::causal::{Dot, VectorClock};
use crate::store::{Key, Version};

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
