//! What a replica with a disk keeps there besides its store, and how it
//! comes back from it.
//!
//! The store holds every key's winning version; [`Saved`] holds the rest
//! a replica must not forget across a restart: its identity, what it has
//! applied ([`Knowledge`]), its Lamport time, the deletes it collected,
//! the incarnations it was told are gone and the view changes it knows.
//! The driver writes both in one atomic batch after every step that
//! changed them, and lets nothing that step produced leave the replica
//! (answers, writes to peers) before the batch is on disk. So the saved
//! count of this replica's own writes is never behind an event id any
//! peer or client has seen: a replica restored from its disk keeps its
//! identity and never issues an id twice.
//!
//! What is not saved is rebuilt or fetched again: the delivery buffer
//! (peers still hold those writes, and anti-entropy pulls them), the
//! replication queues (peers pull what this replica has and they lack),
//! the view (the restored replica joins the members of `VIEW` again,
//! without being fresh, so they readmit the same incarnation).
//!
//! A state is worth restoring only if the replica had a whole state
//! ([`Saved::whole`]): one that was still copying its first state, or
//! copying a peer's to merge, saved a state that is not one, and starts
//! over as a new incarnation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::address::SocketAddress;
use crate::causal::{Knowledge, ReplicaId, VectorClock};
use crate::store::Store;

use super::message::Decision;
use super::state::{Replica, Sync};
use super::timing::{Millis, Timing};

/// The version of [`Saved`]'s layout.
pub const SAVED_FORMAT: u32 = 1;

/// A replica's state besides its store, as kept on disk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    /// The layout's version ([`SAVED_FORMAT`]).
    pub format: u32,
    /// This incarnation.
    pub id: ReplicaId,
    /// Whether the state was whole: synced and not merging a copy.
    pub whole: bool,
    /// What is applied here. The disk writes this record only when the
    /// rest of it changes, and keeps the applied clock entry by entry
    /// besides: it merges them in before restoring.
    pub known: Knowledge,
    /// The Lamport time when the record was written; a restore takes the
    /// largest of it and those of the versions stored.
    pub lamport: u64,
    /// The newest collected delete of each writer.
    pub collected: VectorClock,
    /// The largest Lamport time of those deletes.
    pub collected_lamport: u64,
    /// Incarnations peers retired and this replica has not yet.
    pub told_gone: BTreeMap<ReplicaId, bool>,
    /// The largest stamp of a view change known here.
    pub view_stamp: u64,
    /// The last view change of each address.
    pub decisions: Vec<Decision>,
}

impl Replica {
    /// Whether this replica holds a whole state: synced, and not merging a
    /// copy of a peer's. Only such a state is restored after a restart.
    pub fn is_whole(&self) -> bool {
        self.is_synced() && self.transfer.is_none()
    }

    /// What this replica keeps on disk besides its store.
    pub fn saved(&self) -> Saved {
        Saved {
            format: SAVED_FORMAT,
            id: self.me.id.clone(),
            whole: self.is_whole(),
            known: self.known.clone(),
            lamport: self.lamport,
            collected: self.collected.clone(),
            collected_lamport: self.collected_lamport,
            told_gone: self.told_gone.clone(),
            view_stamp: self.view_stamp,
            decisions: self.decisions(),
        }
    }

    /// A fingerprint of what [`Replica::saved`] holds besides the applied
    /// clock and the Lamport time (which the disk keeps by other means):
    /// it changes whenever that does, so the rest is written only then.
    pub fn saved_fingerprint(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (self.is_whole(), &self.me.id, &self.collected).hash(&mut h);
        (self.collected_lamport, &self.told_gone, self.view_stamp).hash(&mut h);
        (self.decided, self.decisions.len()).hash(&mut h);
        for (id, r) in self.known.retired() {
            (id, r.last, r.ended).hash(&mut h);
        }
        h.finish()
    }

    /// Starts recording which keys of the store change, for the disk.
    pub fn track_changes(&mut self) {
        self.store.track_changes();
    }

    /// The keys changed since the last call (see [`Store::take_changed`]).
    pub fn take_changed(&mut self) -> Vec<Box<str>> {
        self.store.take_changed()
    }

    /// The replica at `address` as it was saved: same identity, same store
    /// and knowledge, synced. It joins the members of `initial` again (not
    /// as a fresh replica) and catches up with what it missed from them.
    pub fn restore(
        address: SocketAddress,
        saved: Saved,
        store: Store,
        initial: &[SocketAddress],
        timing: Timing,
        now: Millis,
    ) -> Self {
        let mut replica = Replica::new(address, "restored", initial, timing, now);
        replica.me.id = saved.id;
        replica.writes_issued = saved.known.count(&replica.me.id);
        replica.known = saved.known;
        replica.lamport = saved
            .lamport
            .max(store.max_lamport())
            .max(saved.collected_lamport);
        replica.store = store;
        replica.collected = saved.collected;
        replica.collected_lamport = saved.collected_lamport;
        replica.told_gone = saved.told_gone;
        replica.view_stamp = saved.view_stamp;
        for decision in saved.decisions {
            replica.record(decision);
        }
        replica.sync = Sync::Synced;
        // Announce the same incarnation to the members again: they vet it
        // as they would any replica they know, and both sides exchange
        // what the other missed.
        let request = replica.join_request();
        for seed in replica.seeds.clone() {
            replica.send(&seed, request.clone());
        }
        replica
    }
}
