//! How the replicas of a test cluster are configured.

use super::TestCluster;

/// How the replicas of a cluster are configured.
#[derive(Clone, Debug)]
pub struct Options {
    /// `CAUSAL_WAIT_MS` (unset: the binary's default).
    pub causal_wait_ms: Option<u64>,
    /// `MAX_BODY_BYTES` (unset: the binary's default).
    pub max_body_bytes: Option<usize>,
    /// `HEARTBEAT_INTERVAL_MS`.
    pub heartbeat_interval_ms: u64,
    /// `FAILURE_TIMEOUT_MS`.
    pub failure_timeout_ms: u64,
    /// `CLUSTER_TOKEN`.
    pub token: Option<String>,
    /// `WORKERS`.
    pub workers: usize,
    /// Whether to set `LISTEN_ADDRESS` to the replica's own address
    /// (instead of the default `0.0.0.0:<port>`).
    pub listen_on_socket_address: bool,
    /// Further environment variables.
    pub env: Vec<(String, String)>,
    /// Whether the replicas keep their state in memory even when the
    /// suite runs durable replicas (`CAUSALKV_TEST_DATA_DIR`).
    pub in_memory: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            causal_wait_ms: None,
            max_body_bytes: None,
            heartbeat_interval_ms: 150,
            failure_timeout_ms: 1500,
            token: None,
            workers: 2,
            listen_on_socket_address: false,
            env: Vec::new(),
            in_memory: false,
        }
    }
}

impl Options {
    /// Sets `CAUSAL_WAIT_MS`.
    pub fn causal_wait_ms(mut self, ms: u64) -> Self {
        self.causal_wait_ms = Some(ms);
        self
    }

    /// Sets `MAX_BODY_BYTES`.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = Some(bytes);
        self
    }

    /// Sets `FAILURE_TIMEOUT_MS`.
    pub fn failure_timeout_ms(mut self, ms: u64) -> Self {
        self.failure_timeout_ms = ms;
        self
    }

    /// Sets `CLUSTER_TOKEN`.
    pub fn token(mut self, token: &str) -> Self {
        self.token = Some(token.to_string());
        self
    }

    /// Sets `WORKERS`.
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers;
        self
    }

    /// Keeps the replicas' state in memory whatever the suite runs: for a
    /// test of what a restart without a disk does.
    pub fn in_memory(mut self) -> Self {
        self.in_memory = true;
        self
    }

    /// Sets `LISTEN_ADDRESS` to each replica's `SOCKET_ADDRESS`.
    pub fn listen_on_socket_address(mut self) -> Self {
        self.listen_on_socket_address = true;
        self
    }

    /// Sets a further environment variable (e.g. `SUSPECT_TIMEOUT_MS`).
    pub fn env(mut self, name: &str, value: impl ToString) -> Self {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    /// Starts `n` replicas with these options.
    pub async fn start(self, n: usize) -> TestCluster {
        TestCluster::start_with(n, self).await
    }
}
