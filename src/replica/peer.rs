//! What a replica knows of one other replica: its incarnation, when it was
//! last heard, the clock it last reported, whether it is trusted; and what
//! hearing from it changed.

use crate::causal::{ReplicaId, VectorClock};

use super::timing::Millis;

/// What this replica knows about another one.
#[derive(Clone, Debug, Default)]
pub struct Peer {
    /// The identity of its current incarnation, once heard from.
    pub id: Option<ReplicaId>,
    /// When it was last heard from (or added, for a grace period).
    pub last_heard: Millis,
    /// The applied clock it last reported.
    pub clock: Option<VectorClock>,
    /// Since when this replica has lacked writes the peer reported, and
    /// the clock it reported then; cleared once those writes are applied.
    pub lag: Option<(Millis, VectorClock)>,
    /// When the last heartbeat or probe was sent to it.
    pub last_heartbeat: Option<Millis>,
    /// Whether a heartbeat to it awaits its reply.
    pub heartbeat_in_flight: bool,
    /// When the last pull was sent to it.
    pub last_pull: Option<Millis>,
    /// Whether a pull from it awaits its reply.
    pub pull_in_flight: bool,
    /// Whether it holds everything this replica forgot (checked when one
    /// joined the other).
    pub vetted: bool,
    /// Whether this replica holds everything it forgot (idem).
    pub covered: bool,
}

impl Peer {
    /// Whether writes and deltas may flow between it and this replica:
    /// each holds everything the other forgot.
    pub fn trusted(&self) -> bool {
        self.vetted && self.covered
    }

    /// How many of `id`'s writes it last reported having applied.
    pub fn applied(&self, id: &ReplicaId) -> u64 {
        self.clock.as_ref().map_or(0, |c| c.get(id))
    }

    pub(super) fn new(now: Millis) -> Self {
        Peer {
            last_heard: now,
            ..Peer::default()
        }
    }
}

/// What hearing from a replica changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heard {
    /// It was a member already.
    Member,
    /// It was suspected down and is back in the view.
    Readmitted,
    /// It was unknown and is now a member.
    Added,
    /// It was removed by an operator; it is not heard.
    Evicted,
    /// It is neither a member nor a suspect (or another incarnation than
    /// the one known): it is heard only once it joins.
    Unknown,
    /// It is this replica.
    Myself,
}
