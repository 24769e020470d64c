//! What the state machine hands its driver: effects to carry out, answers
//! to client operations, why a client must wait, and counters.

use std::sync::Arc;

use crate::address::SocketAddress;
use crate::causal::{CausalContext, Metadata, VectorClock};
use crate::store::Value;

use super::message::{Request, Write};

/// Something the driver must do on the replica's behalf.
#[derive(Clone, Debug)]
pub enum Effect {
    /// Append `write` to the ordered replication queue of each peer of `to`.
    Replicate {
        /// The peers.
        to: Vec<SocketAddress>,
        /// The write.
        write: Arc<Write>,
    },
    /// Send `request` to `to` and hand the reply (or the failure) back
    /// through [`Replica::on_reply`](super::Replica::on_reply).
    Send {
        /// The peer.
        to: SocketAddress,
        /// The request.
        request: Request,
    },
    /// Discard the replication queue of a peer that left the view.
    DropQueue {
        /// The peer.
        peer: SocketAddress,
    },
    /// The identity drawn for this incarnation is taken: draw another and
    /// hand it to [`Replica::reincarnate`](super::Replica::reincarnate).
    Reincarnate,
}

/// Why a client request cannot be served now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Writes the context names are not applied here yet.
    Missing(VectorClock),
    /// The replica holds no copy of the state yet.
    NotReady,
    /// The replica is shutting down and takes no more writes.
    ShuttingDown,
    /// A member told this replica it was removed from the view: what it
    /// holds may lack what the others have forgotten since.
    Removed,
    /// Sharded: the key is moving to another shard (a reshard is under
    /// way); its writes wait until the new placement holds.
    Moving,
    /// Sharded: the key is no longer this node's to serve (the shard map
    /// changed); the request goes where the key now lives.
    Moved,
    /// Sharded: the request's context went through version `0` of the
    /// shard map, newer than the one this node holds.
    MapBehind(u64),
}

/// What a client learns from an answer, and the context it should keep.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Learned {
    /// The dot of the version read or written (nothing for an absent key,
    /// or a retired incarnation's write).
    pub clock: VectorClock,
    /// The request's context without the retired incarnations it named,
    /// if it named any.
    pub pruned: Option<VectorClock>,
}

impl Learned {
    /// The `causal-metadata` to answer a request that sent `context`: its
    /// own JSON when nothing changed, else the canonical print.
    pub fn metadata<'a>(&self, context: &'a CausalContext) -> Metadata<'a> {
        match &self.pruned {
            Some(pruned) => {
                let mut merged = pruned.clone();
                merged.merge(&self.clock);
                Metadata::Clock(merged)
            }
            None => context.reply(&self.clock),
        }
    }
}

/// The result of a client read.
#[derive(Clone, Debug, PartialEq)]
pub struct ReadResult {
    /// The value, or `None` when the key is absent or deleted.
    pub value: Option<Value>,
    /// The value's entity tag, when there is one.
    pub etag: Option<String>,
    /// What reading taught the client.
    pub learned: Learned,
    /// In a table with siblings, the concurrent values when there are two
    /// or more (`value` is then `None`), the conflict rule's winner first.
    pub siblings: Vec<Value>,
    /// The table named is not live here.
    pub no_table: bool,
}

impl ReadResult {
    /// The read of an absent key (`pruned`: see [`Learned::pruned`]).
    pub fn absent(pruned: Option<VectorClock>) -> Self {
        ReadResult {
            value: None,
            etag: None,
            learned: Learned {
                clock: VectorClock::new(),
                pruned,
            },
            siblings: Vec::new(),
            no_table: false,
        }
    }
}

/// What a client write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A put to a key that was absent.
    Created,
    /// A put to a key that existed.
    Updated,
    /// A delete of a key that existed.
    Deleted,
    /// A delete of a key that was absent: nothing was written.
    NotFound,
    /// The request's condition did not hold: nothing was written.
    Unmet,
    /// The table named is not live here: nothing was written.
    NoTable,
}

/// What a conditional write requires of the key's current version (HTTP's
/// `If-Match` and `If-None-Match`), judged where the write is made.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Condition {
    /// Nothing.
    #[default]
    Any,
    /// The key holds no value (`If-None-Match: *`).
    Absent,
    /// The key holds a value (`If-Match: *`).
    Present,
    /// The key's value is one of these versions (`If-Match: "<etag>"`).
    Matches(Vec<String>),
    /// The key's value is none of these versions (`If-None-Match:
    /// "<etag>"`).
    MatchesNone(Vec<String>),
}

impl Condition {
    /// Whether the condition holds for a key whose live value has the
    /// entity tag `current` (`None`: absent or deleted).
    pub fn holds(&self, current: Option<&str>) -> bool {
        match self {
            Condition::Any => true,
            Condition::Absent => current.is_none(),
            Condition::Present => current.is_some(),
            Condition::Matches(tags) => current.is_some_and(|c| tags.iter().any(|t| t == c)),
            Condition::MatchesNone(tags) => current.is_none_or(|c| tags.iter().all(|t| t != c)),
        }
    }
}

impl Condition {
    /// Whether the condition holds for a key whose live values (siblings)
    /// have the entity tags `current`: `If-Match` holds if it names one of
    /// them, `If-None-Match` if it names none.
    pub fn holds_for_all(&self, current: &[String]) -> bool {
        match (self, current) {
            (_, []) => self.holds(None),
            (_, [one]) => self.holds(Some(one)),
            (Condition::Matches(tags), _) => current.iter().any(|c| tags.contains(c)),
            (Condition::MatchesNone(tags), _) => current.iter().all(|c| !tags.contains(c)),
            _ => self.holds(current.first().map(String::as_str)),
        }
    }
}

/// The result of a client write.
#[derive(Clone, Debug, PartialEq)]
pub struct WriteResult {
    /// The entity tag of the key's version after the write (the new one,
    /// or the one that failed the condition); `None` if it holds none.
    pub etag: Option<String>,
    /// What the write did.
    pub outcome: Outcome,
    /// What it taught the client (the write's own dot; for
    /// [`Outcome::NotFound`], the tombstone's).
    pub learned: Learned,
}

/// Counters describing a replica, for health and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Live keys.
    pub keys: usize,
    /// Tombstones held.
    pub tombstones: usize,
    /// Writes waiting in the delivery buffer.
    pub buffered: usize,
    /// Members, this replica included.
    pub view_size: usize,
    /// Replicas out of the view but not forgotten yet.
    pub suspects: usize,
    /// Whether the start-up state transfer is done.
    pub synced: bool,
    /// Whether the replica serves clients (synced, not copying state it
    /// must have first, not shutting down).
    pub ready: bool,
    /// Whether it is shutting down.
    pub draining: bool,
    /// Whether a member refused it as removed from the view.
    pub removed: bool,
    /// Entries of the applied clock.
    pub clock_entries: usize,
    /// Incarnations retired.
    pub retired: usize,
    /// Writes issued here since start.
    pub writes_issued: u64,
    /// Writes from elsewhere applied here since start.
    pub writes_applied: u64,
    /// The live tables, with their live keys.
    pub tables: Vec<crate::store::TableInfo>,
}

/// What is left to hand over before this replica may stop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handover {
    /// Writes this incarnation acknowledged.
    pub written: u64,
    /// The members known to have applied all of them.
    pub held_by: Vec<SocketAddress>,
    /// The members not known to have applied all of them yet.
    pub lacking: Vec<SocketAddress>,
    /// The most of them any member is known to have applied.
    pub best: u64,
}
