//! Causality, with no I/O: vector clocks, client contexts, and the delivery
//! buffer.
//!
//! What lives where: [`clock`] dots, replica identities and vector clocks;
//! [`context`] the client's `causal-metadata`, parsed and printed;
//! [`knowledge`] what a replica has applied, retirements included;
//! [`buffer`] the delivery buffer and its rule.
//!
//! # The delivery rule
//!
//! Every write is named by a *dot* `(origin, n)`: the `n`-th write issued by
//! the replica incarnation `origin`. It carries `deps`, the causal context
//! of the client that made it (the writes that client had seen). A replica
//! keeps `applied`, a vector clock of the writes it has applied, and applies
//! a write from elsewhere only when (the causal-broadcast rule of Birman,
//! Schiper and Stephenson, with explicit rather than potential causality):
//!
//! 1. `applied[origin] == n - 1` — it is the origin's next write, and
//! 2. `deps <= applied` — everything the client had seen is applied here.
//!
//! Because each origin's writes are applied in order, `applied` always
//! names a causally closed set, and a context `{A: 2}` means "A's first two
//! writes and everything they depended on".
//!
//! A worked example with three replicas A, B, C. A client writes `x=1` at A,
//! reads it at B, then writes `y=2` at B:
//!
//! | step | event            | dot  | deps     | A.applied   | B.applied   | C.applied   |
//! |------|------------------|------|----------|-------------|-------------|-------------|
//! | 1    | put x=1 at A     | A:1  | {}       | {A:1}       | {}          | {}          |
//! | 2    | B applies A:1    |      |          | {A:1}       | {A:1}       | {}          |
//! | 3    | put y=2 at B     | B:1  | {A:1}    | {A:1}       | {A:1,B:1}   | {}          |
//! | 4    | C receives B:1   |      |          |             |             | buffered    |
//! | 5    | C receives A:1   |      |          |             |             | {A:1,B:1}   |
//!
//! At step 4, C holds `y=2` in its [`DeliveryBuffer`]: `deps = {A:1}` is not
//! covered by C's `{}`. At step 5 `A:1` is applied and the buffer drains
//! `B:1` right after it. A client that read `y=2` carries `{A:1, B:1}`, so
//! no replica serves it `x` without `x=1`.
//!
//! # Retired incarnations
//!
//! Every restart of a replica without its data is a new incarnation, so
//! entries would pile up in clocks and contexts. Once an incarnation is gone
//! and every member has applied its writes, it is *retired*
//! ([`Knowledge`]): its entry leaves the clock, and a context or a
//! dependency naming it is met by the retirement record. The delivery rule
//! above reads "applied" as "counted by the clock or the record". See
//! [`knowledge`] for the record and `crate::replica`'s `retire` for when.
//!
//! # Across shards
//!
//! In a sharded store every shard is replicated by its own group, and the
//! identity of every incarnation names its group
//! ([`ReplicaId::group`]): `10.10.0.2:8085#s1e1.1f3a` writes in group
//! `s1e1`. A context is still one clock, with entries from every group the
//! client depended on. A replica counts and checks only its own group's
//! entries ([`Knowledge`]); another group's are *foreign* and met by
//! definition there: that group's members check them. So waiting is per
//! shard: a request waits only for writes of the shard it touches, and a
//! slow or cut-off shard stalls nobody else.
//!
//! What carries causality from one shard to another is the client, as in
//! COPS and Eiger's dependency checks, made lazy as in Occult (a shard
//! checks a dependency when it is read, not when it is written):
//!
//! 1. A write keeps the client's whole context as its dependencies, and
//!    ships it to its group; a replica that applies it adds the foreign
//!    entries to its *foreign frontier*.
//! 2. A read answers the client's context merged with the version's dot
//!    and the replica's foreign frontier, which includes every foreign
//!    dependency of every write applied there, that version's among them.
//! 3. A later request in another shard brings those entries along, and
//!    that shard's replica serves it only once its own group's entries are
//!    applied.
//!
//! Why it is correct: if a client's read in shard B returns a version
//! whose write depended on `x` in shard A, the answer carries `x`'s entry
//! (by 2), so the client's next request in A waits for `x` (by 3); and a
//! write's dependencies in its own group are met before it is applied
//! (the delivery rule). By induction along the client's requests, no
//! client sees a shard go back before anything it saw, directly or
//! through a value's dependencies. The frontier over-approximates (a read
//! in B may name A's writes the value did not depend on), which costs at
//! most a wait for writes that exist, never a wrong answer; it keeps
//! contexts at one entry per incarnation that a client's reads reached,
//! as unsharded. Versions copied without their writes (deltas, state
//! copies, keys handed over by a reshard) travel with the sender's
//! frontier (and, for a reshard, its clock), so the rule holds for them.
//!
//! A key that moves in a reshard keeps its dot, now foreign in its new
//! shard: the new shard's members merge it by the conflict rule, and
//! readers learn the old group's entry, which that group (if it still
//! exists) still honours. Writes to a moving key wait until every member
//! of its new shard holds every version of it (see `crate::sharding`).
//!
//! A node that still holds an older shard map (it was cut off during the
//! reshard, or the commit has not reached it yet) would serve a key from
//! the group that held it before, and take the new group's writes of it
//! for another group's, met by definition: a client that wrote the key
//! through the new map would read it back older. So a context also names
//! the version of the map its requests went through, as the entry of
//! [`ReplicaId::shard_map`] (of no replica's group: foreign everywhere,
//! merged like any other), carried by every write's answer and by the
//! foreign frontier into every read's; a replica whose node holds an
//! older map serves such a context only once it holds that one
//! ([`Wait::MapBehind`](crate::replica::Wait::MapBehind)).
//!
//! # Implementation caveats
//!
//! - A context naming writes that no live replica holds (forged, or lost
//!   with a crashed replica before it spread them) can never be satisfied:
//!   requests carrying it wait the bounded time and get 503, even once the
//!   replica that issued them is retired (one of those writes may still be
//!   on its way from a member that has it).

pub mod buffer;
pub mod clock;
pub mod context;
pub mod knowledge;

pub use buffer::{Causal, DeliveryBuffer};
pub use clock::{Dot, ReplicaId, VectorClock};
pub use context::{CausalContext, Metadata};
pub use knowledge::{Knowledge, Retired, Retirement};
