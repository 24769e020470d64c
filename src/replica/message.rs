//! Every replica-to-replica message. Each request gets exactly one reply.

use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::timing::Millis;
use crate::address::SocketAddress;
use crate::causal::{Causal, Dot, ReplicaId, Retired, VectorClock};
use crate::store::{Image, Key, Value, Version};

/// A replica incarnation: where it is reached and the identity it writes under.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Where the replica is reached.
    pub address: SocketAddress,
    /// The identity of its current incarnation.
    pub id: ReplicaId,
}

/// One client write (a put, or a delete when `value` is `None`) on its way
/// to the other replicas.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Write {
    /// The key written.
    pub key: Key,
    /// The new value, or `None` for a delete.
    pub value: Option<Value>,
    /// The write's name.
    pub dot: Dot,
    /// The writing client's context: what must be applied first.
    pub deps: VectorClock,
    /// Lamport timestamp, larger than that of every write in `deps`.
    pub lamport: u64,
    /// Writes of other incarnations this one stands for: applying it
    /// counts each of them, and every write of its incarnation before it,
    /// as applied (see [`crate::causal::Knowledge::cover`]). Set on the
    /// writes that take in versions rescued from a node that left its
    /// group, so that contexts naming that node's writes are met.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub covers: Vec<Dot>,
}

impl Write {
    /// The version this write leaves in the store.
    pub fn version(&self) -> Version {
        Version {
            value: self.value.clone(),
            dot: self.dot.clone(),
            lamport: self.lamport,
        }
    }
}

impl Causal for Write {
    fn dot(&self) -> &Dot {
        &self.dot
    }
    fn deps(&self) -> &VectorClock {
        &self.deps
    }
    fn covers(&self) -> &[Dot] {
        &self.covers
    }
}

/// An operator's change to the view, relayed to every member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ViewChange {
    /// The address joins the view.
    Add(SocketAddress),
    /// The address leaves the view and is not readmitted until it rejoins.
    Remove(SocketAddress),
}

impl ViewChange {
    /// The address changed.
    pub fn address(&self) -> &SocketAddress {
        match self {
            ViewChange::Add(a) | ViewChange::Remove(a) => a,
        }
    }
}

/// A view change with its Lamport stamp: of two changes of one address,
/// the one with the larger `(stamp, by)` is the last, whatever order they
/// arrive in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// The change.
    pub change: ViewChange,
    /// Larger than the stamp of every change known where it was made.
    pub stamp: u64,
    /// The replica where it was made.
    pub by: ReplicaId,
}

impl Decision {
    /// Whether this decision comes after `other` (of the same address).
    pub fn follows(&self, other: &Decision) -> bool {
        (self.stamp, &self.by) > (other.stamp, &other.by)
    }
}

/// A request from one replica to another.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// Writes to apply, oldest first, from the sender's ordered queue.
    Replicate {
        /// The sender.
        from: Member,
        /// The writes.
        writes: Vec<Write>,
    },
    /// Liveness probe; carries what the sender has applied.
    Heartbeat {
        /// The sender.
        from: Member,
        /// The sender's applied writes (retired incarnations left out).
        clock: VectorClock,
        /// The sender's retirements of incarnations the receiver last
        /// reported in its clock: the receiver may retire them too.
        #[serde(default)]
        retired: Vec<Retired>,
        /// A digest of the view changes the sender knows: a receiver whose
        /// own differs joins the sender, and each learns what it lacks.
        #[serde(default)]
        decided: u64,
    },
    /// Asks for every version the sender lacks, given what it has applied.
    Pull {
        /// The sender.
        from: Member,
        /// The sender's applied writes.
        clock: VectorClock,
    },
    /// A replica announces itself (starting, or coming back) and asks for
    /// the view; carries what it knows, so that the receiver can tell
    /// whether either of the two must copy the other's state first.
    Join {
        /// The incarnation joining.
        from: Member,
        /// Its applied writes.
        #[serde(default)]
        clock: VectorClock,
        /// Every incarnation it has retired.
        #[serde(default)]
        retired: Vec<Retired>,
        /// The newest delete of each writer whose tombstone it forgot.
        #[serde(default)]
        collected: VectorClock,
        /// Whether it is starting: it has written nothing under its
        /// identity, so a member that knows writes of it must refuse it.
        #[serde(default)]
        fresh: bool,
        /// The last view change it knows of each address changed.
        #[serde(default)]
        decisions: Vec<Decision>,
    },
    /// Asks for one page of a copy of the whole state.
    Snapshot {
        /// The sender.
        from: Member,
        /// The slot the page starts at: 0 for the first page.
        #[serde(default)]
        cursor: u32,
        /// Whether the sender holds no copy of the state yet (it starts).
        #[serde(default)]
        fresh: bool,
    },
    /// Relays an operator's view change.
    ViewChange {
        /// The sender.
        from: Member,
        /// The change, stamped: one sent again, or overtaken by a later
        /// change of its address, changes nothing.
        decision: Decision,
    },
}

impl Request {
    /// Which kind of request this is.
    pub fn kind(&self) -> Kind {
        match self {
            Request::Replicate { .. } => Kind::Replicate,
            Request::Heartbeat { .. } => Kind::Heartbeat,
            Request::Pull { .. } => Kind::Pull,
            Request::Join { .. } => Kind::Join,
            Request::Snapshot { .. } => Kind::Snapshot,
            Request::ViewChange { .. } => Kind::ViewChange,
        }
    }

    /// The sender.
    pub fn from(&self) -> &Member {
        match self {
            Request::Replicate { from, .. }
            | Request::Heartbeat { from, .. }
            | Request::Pull { from, .. }
            | Request::Join { from, .. }
            | Request::Snapshot { from, .. }
            | Request::ViewChange { from, .. } => from,
        }
    }
}

/// Path prefix of the replica-to-replica endpoints: each [`Kind`] is
/// posted to `<prefix>/<kind>`.
pub const INTERNAL_PREFIX: &str = "/internal/v1";

/// Header carrying the cluster token on replica-to-replica requests.
pub const TOKEN_HEADER: &str = "x-causalkv-token";

/// Header naming the sender's shard group on replica-to-replica requests
/// (sharded stores only): a replica answers only its own group's.
pub const GROUP_HEADER: &str = "x-causalkv-group";

/// Header naming the epoch of the shard map the sender of a
/// replica-to-replica request holds (sharded).
pub const EPOCH_HEADER: &str = "x-causalkv-map-epoch";

/// The kinds of [`Request`], for routing replies, logs and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// [`Request::Replicate`].
    Replicate,
    /// [`Request::Heartbeat`].
    Heartbeat,
    /// [`Request::Pull`].
    Pull,
    /// [`Request::Join`].
    Join,
    /// [`Request::Snapshot`].
    Snapshot,
    /// [`Request::ViewChange`].
    ViewChange,
}

impl Kind {
    /// Every kind, for routing.
    pub const ALL: [Kind; 6] = [
        Kind::Replicate,
        Kind::Heartbeat,
        Kind::Pull,
        Kind::Join,
        Kind::Snapshot,
        Kind::ViewChange,
    ];

    /// A short name: the last segment of the internal URL path.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Replicate => "replicate",
            Kind::Heartbeat => "heartbeat",
            Kind::Pull => "pull",
            Kind::Join => "join",
            Kind::Snapshot => "snapshot",
            Kind::ViewChange => "view-change",
        }
    }
}

/// State sent to a replica that lags: versions it lacks, the sender's clock,
/// and writes the sender holds but cannot apply yet.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StateTransfer {
    /// Versions the asker lacks.
    pub versions: Versions,
    /// The writes those versions account for.
    pub clock: VectorClock,
    /// The sender's Lamport clock.
    pub lamport: u64,
    /// Writes waiting in the sender's delivery buffer.
    pub pending: Vec<Write>,
    /// The sender's retirements of incarnations the asker's clock names.
    #[serde(default)]
    pub retired: Vec<Retired>,
    /// The sender's foreign frontier (sharded): what those versions may
    /// depend on in other shards.
    #[serde(default, skip_serializing_if = "VectorClock::is_empty")]
    pub foreign: VectorClock,
}

/// One page of a copy of a replica's whole state.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Page {
    /// The versions held in a range of the sender's slots.
    pub versions: Versions,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<u32>,
    /// What the copy as a whole accounts for: sent with the first page.
    pub start: Option<Start>,
}

/// What a copy of a replica's state accounts for, as of its first page.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Start {
    /// The sender's applied writes when the copy began.
    pub clock: VectorClock,
    /// Every incarnation the sender has retired.
    pub retired: Vec<Retired>,
    /// The newest delete of each writer whose tombstone the sender forgot.
    pub collected: VectorClock,
    /// The largest Lamport time of a delete whose tombstone the sender
    /// forgot.
    #[serde(default)]
    pub collected_lamport: u64,
    /// The sender's Lamport clock.
    pub lamport: u64,
    /// Writes waiting in the sender's delivery buffer.
    pub pending: Vec<Write>,
    /// The sender's foreign frontier (sharded): what the copied versions
    /// may depend on in other shards.
    #[serde(default, skip_serializing_if = "VectorClock::is_empty")]
    pub foreign: VectorClock,
    /// The keys reshards handed over to the sender's group deleted, with
    /// their tombstones and how much longer (ms) the sender remembers
    /// each (see `Replica::note_handed_deletes`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub handed_deletes: Vec<(Key, Version, Millis)>,
    /// How many keys (tombstones included) the sender held: the copier
    /// makes room for them at once rather than growing page by page.
    #[serde(default)]
    pub keys: usize,
}

/// Why a replica refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// An operator removed the sender from the view: it is heard again
    /// once it is added back, or restarts.
    Removed,
    /// The sender is not a member this replica has heard join (it was
    /// forgotten, re-added, or restarted): it must join first.
    Rejoin,
    /// The sender's identity names writes it does not hold: it must take a
    /// new incarnation.
    IdentityInUse,
    /// This replica holds no copy of the state to give yet.
    NotReady,
}

impl Refusal {
    /// Why, in words, for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Removed => "removed from the view; heard again once added back",
            Refusal::Rejoin => "not a member heard joining; join first",
            Refusal::IdentityInUse => "identity names writes it does not hold",
            Refusal::NotReady => "holds no copy of the state yet",
        }
    }
}

/// The versions of a [`StateTransfer`]: a list, or, for a snapshot, a
/// copy of the store printed only when sent (off the replica's lock).
/// Either prints as a list of `[key, version]` pairs.
#[derive(Clone, Debug)]
pub enum Versions {
    /// Versions one by one.
    List(Vec<(Key, Version)>),
    /// A copy of a whole store.
    Image(Image),
}

impl Default for Versions {
    fn default() -> Self {
        Versions::List(Vec::new())
    }
}

impl Versions {
    /// Number of versions.
    pub fn len(&self) -> usize {
        match self {
            Versions::List(list) => list.len(),
            Versions::Image(image) => image.len(),
        }
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The versions, one by one.
    pub fn into_list(self) -> Vec<(Key, Version)> {
        match self {
            Versions::List(list) => list,
            Versions::Image(image) => image.iter().collect(),
        }
    }
}

impl Serialize for Versions {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Versions::List(list) => list.serialize(s),
            Versions::Image(image) => image.serialize(s),
        }
    }
}

/// A list of versions is a JSON array; an image, an object (see
/// [`crate::store::Image`]).
impl<'de> Deserialize<'de> for Versions {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Either;
        impl<'de> Visitor<'de> for Either {
            type Value = Versions;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of versions or a copy of versions")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Versions, A::Error> {
                Vec::deserialize(SeqAccessDeserializer::new(seq)).map(Versions::List)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Versions, A::Error> {
                Image::deserialize(MapAccessDeserializer::new(map)).map(Versions::Image)
            }
        }
        d.deserialize_any(Either)
    }
}

/// The answer to a [`Request`].
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// Received and handled.
    Ack {
        /// The replier.
        from: Member,
    },
    /// Answer to a heartbeat.
    Heartbeat {
        /// The replier.
        from: Member,
        /// The replier's applied writes (retired incarnations left out).
        clock: VectorClock,
        /// The replier's retirements of incarnations the request's clock
        /// names.
        #[serde(default)]
        retired: Vec<Retired>,
        /// A digest of the view changes the replier knows.
        #[serde(default)]
        decided: u64,
    },
    /// Answer to a pull: what the asker lacks.
    Pull {
        /// The replier.
        from: Member,
        /// The state.
        state: StateTransfer,
    },
    /// Answer to a join.
    Join {
        /// The replier.
        from: Member,
        /// Every member the replier knows, itself included.
        view: Vec<SocketAddress>,
        /// Whether the replier holds a copy of the state to give.
        #[serde(default)]
        ready: bool,
        /// Whether the joiner has applied everything the replier forgot
        /// (collected deletes, retired incarnations): if not, the joiner
        /// must copy the replier's state before they exchange writes.
        #[serde(default)]
        vetted: bool,
        /// The replier's applied writes.
        #[serde(default)]
        clock: VectorClock,
        /// Every incarnation the replier has retired.
        #[serde(default)]
        retired: Vec<Retired>,
        /// The last view change it knows of each address changed.
        #[serde(default)]
        decisions: Vec<Decision>,
    },
    /// Answer to a snapshot request: one page of the state.
    Snapshot {
        /// The replier.
        from: Member,
        /// The page.
        page: Page,
    },
    /// The request was refused.
    Refused {
        /// The replier.
        from: Member,
        /// Why.
        reason: Refusal,
    },
}

impl Reply {
    /// The replier.
    pub fn from(&self) -> &Member {
        match self {
            Reply::Ack { from }
            | Reply::Heartbeat { from, .. }
            | Reply::Pull { from, .. }
            | Reply::Join { from, .. }
            | Reply::Snapshot { from, .. }
            | Reply::Refused { from, .. } => from,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn versions_travel_as_a_list_or_as_an_image() {
        let mut store = Store::new();
        let id = ReplicaId::parse("10.0.0.2:8085#1").unwrap();
        for (i, (k, v)) in [
            ("a", Some("1")),
            ("b/c", None),
            ("d", Some(r#"{"é":[null]}"#)),
        ]
        .into_iter()
        .enumerate()
        {
            let value = v.map(|v| Value::from_json(v).unwrap().unwrap());
            let n = i as u64 + 1;
            let version = Version {
                value,
                dot: Dot::new(id.clone(), n),
                lamport: n,
            };
            store.apply(Key::parse(k).unwrap(), version);
        }
        let list: Vec<(Key, Version)> =
            store.iter().map(|e| (e.to_key(), e.to_version())).collect();
        // A list prints as an array of versions, and reads back as a list.
        let printed = serde_json::to_string(&Versions::List(list.clone())).unwrap();
        assert!(printed.starts_with("[[\"a\",{"), "{printed}");
        let decoded: Versions = serde_json::from_str(&printed).unwrap();
        assert!(matches!(&decoded, Versions::List(l) if *l == list));
        // An image prints in its own form, and reads back as an image of
        // the same versions.
        let printed = serde_json::to_string(&Versions::Image(store.image())).unwrap();
        assert!(printed.starts_with("{\"origins\":"), "{printed}");
        let decoded: Versions = serde_json::from_str(&printed).unwrap();
        assert!(matches!(&decoded, Versions::Image(_)));
        assert_eq!(decoded.into_list(), list);
        // Anything else is refused.
        assert!(serde_json::from_str::<Versions>("7").is_err());
    }
}
