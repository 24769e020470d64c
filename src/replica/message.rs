//! Every replica-to-replica message. Each request gets exactly one reply.

use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::address::SocketAddress;
use crate::causal::{Causal, Dot, ReplicaId, VectorClock};
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
        /// The sender's applied writes.
        clock: VectorClock,
    },
    /// Asks for every version the sender lacks, given what it has applied.
    Pull {
        /// The sender.
        from: Member,
        /// The sender's applied writes.
        clock: VectorClock,
    },
    /// A starting replica announces itself and asks for the view.
    Join {
        /// The new incarnation.
        from: Member,
    },
    /// Asks for a full copy of the state (data, clocks, pending writes).
    Snapshot {
        /// The sender.
        from: Member,
    },
    /// Relays an operator's view change.
    ViewChange {
        /// The replica where the operator made the change.
        from: Member,
        /// The change.
        change: ViewChange,
        /// Its number among the changes made at `from` (from 1), so that a
        /// change sent again after a lost acknowledgement is applied once.
        #[serde(default)]
        seq: u64,
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
            | Request::Join { from }
            | Request::Snapshot { from }
            | Request::ViewChange { from, .. } => from,
        }
    }
}

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
    /// Versions (the whole store for a snapshot, else what the asker lacks).
    pub versions: Versions,
    /// The writes those versions account for.
    pub clock: VectorClock,
    /// The sender's Lamport clock.
    pub lamport: u64,
    /// Writes waiting in the sender's delivery buffer.
    pub pending: Vec<Write>,
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
            Versions::Image(image) => {
                let mut seq = s.serialize_seq(Some(image.len()))?;
                for pair in image.iter() {
                    seq.serialize_element(&pair)?;
                }
                seq.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Versions {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::deserialize(d).map(Versions::List)
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
        /// The replier's applied writes.
        clock: VectorClock,
    },
    /// Answer to a pull: what the asker lacks.
    Pull {
        /// The replier.
        from: Member,
        /// The state.
        state: StateTransfer,
    },
    /// Answer to a join: the replier's view.
    Join {
        /// The replier.
        from: Member,
        /// Every member the replier knows, itself included.
        view: Vec<SocketAddress>,
    },
    /// Answer to a snapshot request: the full state.
    Snapshot {
        /// The replier.
        from: Member,
        /// The state.
        state: StateTransfer,
    },
    /// The sender was removed from the replier's view by an operator and
    /// must rejoin before it is heard again.
    Refused {
        /// The replier.
        from: Member,
        /// Why.
        reason: String,
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
    fn an_image_prints_and_decodes_as_its_list() {
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
        let image = serde_json::to_string(&Versions::Image(store.image())).unwrap();
        assert_eq!(
            image,
            serde_json::to_string(&Versions::List(list.clone())).unwrap()
        );
        let decoded: Versions = serde_json::from_str(&image).unwrap();
        assert_eq!(decoded.into_list(), list);
    }
}
