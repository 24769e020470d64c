//! The protocol's clock and pace: milliseconds of the driver's clock and
//! the timeouts and intervals every rule is measured in.

/// Milliseconds on the driver's monotonic clock.
pub type Millis = u64;

/// The protocol's pace: timings in milliseconds of the driver's clock, and
/// how much whole-store work is done at a time.
#[derive(Clone, Debug)]
pub struct Timing {
    /// How often each member is sent a heartbeat.
    pub heartbeat_interval: Millis,
    /// How long a member may stay silent before it leaves the view.
    pub failure_timeout: Millis,
    /// How long a replica out of the view may stay silent before it is
    /// forgotten.
    pub suspect_timeout: Millis,
    /// How often replicas suspected down are probed.
    pub probe_interval: Millis,
    /// How often seeds (the addresses of `VIEW`) that are not known are
    /// sent a join.
    pub seed_interval: Millis,
    /// How long writes a peer reported may stay missing before pulling them.
    pub pull_after: Millis,
    /// The least time between two pulls from one peer.
    pub pull_interval: Millis,
    /// How often a starting replica repeats its join announcements.
    pub join_retry: Millis,
    /// How long a starting replica waits for a member holding the state
    /// before it starts alone with an empty state.
    pub startup_grace: Millis,
    /// How often tombstones are considered for forgetting.
    pub gc_interval: Millis,
    /// Most keys in one page of a state copy.
    pub page_keys: usize,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            heartbeat_interval: 250,
            failure_timeout: 3000,
            suspect_timeout: 600_000,
            probe_interval: 1000,
            seed_interval: 5000,
            pull_after: 500,
            pull_interval: 200,
            join_retry: 500,
            startup_grace: 3000,
            gc_interval: 5000,
            page_keys: 65_536,
        }
    }
}

/// How many DNS answers in a row must omit a member (with `VIEW_DNS`)
/// before it leaves the view.
pub const DNS_MISSES_TO_LEAVE: u32 = 3;
