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
