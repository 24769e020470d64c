//! Configuration: one struct, read from the environment (SPEC's variables)
//! or the mirroring command-line flags, validated before anything starts.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

use crate::address::SocketAddress;
use crate::durable::Durability;
use crate::replica::Timing;

/// Command-line flags; each mirrors an environment variable.
#[derive(Parser, Debug, Clone, Default)]
#[command(
    name = "causalkv",
    version,
    about = "A causally consistent, replicated key-value store"
)]
pub struct Args {
    /// ip:port under which the other replicas and clients reach this one.
    #[arg(long, env = "SOCKET_ADDRESS")]
    pub socket_address: Option<String>,
    /// Comma-separated ip:port of every replica of the store, this one included.
    #[arg(long, env = "VIEW")]
    pub view: Option<String>,
    /// name:port whose DNS addresses are the replicas (re-resolved periodically).
    #[arg(long, env = "VIEW_DNS")]
    pub view_dns: Option<String>,
    /// How often VIEW_DNS is resolved again, in ms.
    #[arg(long, env = "VIEW_DNS_INTERVAL_MS", default_value_t = 5000)]
    pub view_dns_interval_ms: u64,
    /// Where to bind [default: 0.0.0.0 and the port of SOCKET_ADDRESS].
    #[arg(long, env = "LISTEN_ADDRESS")]
    pub listen_address: Option<String>,
    /// Shared secret required on replica-to-replica endpoints.
    #[arg(long, env = "CLUSTER_TOKEN", hide_env_values = true)]
    pub cluster_token: Option<String>,
    /// How long a request waits for its causal dependencies, in ms.
    #[arg(long, env = "CAUSAL_WAIT_MS", default_value_t = 10_000)]
    pub causal_wait_ms: u64,
    /// Largest accepted client request body, in bytes.
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 1 << 20)]
    pub max_body_bytes: usize,
    /// Interval between heartbeats to each member, in ms.
    #[arg(long, env = "HEARTBEAT_INTERVAL_MS", default_value_t = 250)]
    pub heartbeat_interval_ms: u64,
    /// Silence after which a member leaves the view, in ms.
    #[arg(long, env = "FAILURE_TIMEOUT_MS", default_value_t = 3000)]
    pub failure_timeout_ms: u64,
    /// Silence after which a replica out of the view is forgotten (no
    /// probes, no say in tombstone collection), in ms.
    #[arg(long, env = "SUSPECT_TIMEOUT_MS", default_value_t = 600_000)]
    pub suspect_timeout_ms: u64,
    /// How long a stopping replica waits for a live member to hold every
    /// write it acknowledged, in ms.
    #[arg(long, env = "HANDOVER_TIMEOUT_MS", default_value_t = 5000)]
    pub handover_timeout_ms: u64,
    /// HTTP worker threads [default: number of CPUs].
    #[arg(long, env = "WORKERS")]
    pub workers: Option<usize>,
    /// Directory holding the replica's durable state [default: none, the
    /// state lives in memory only].
    #[arg(long, env = "DATA_DIR")]
    pub data_dir: Option<String>,
    /// With DATA_DIR: `fsync` answers a write once a (group-committed)
    /// fsync made it durable (survives power loss); `os` once it is
    /// written to the OS (survives any crash of the process).
    #[arg(long, env = "DURABILITY", default_value = "fsync")]
    pub durability: String,
    /// Split the store into this many shards (every node of VIEW started
    /// with the same count); unset: one shard holding every key, or, in a
    /// store started sharded, a node that waits for add-member.
    #[arg(long, env = "SHARD_COUNT")]
    pub shard_count: Option<String>,
    /// With DATA_DIR: if the state there is damaged (beyond a torn journal
    /// tail), discard it and copy the state from the other replicas under
    /// a new incarnation, instead of refusing to start.
    #[arg(long, env = "DISCARD_CORRUPT_STATE", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub discard_corrupt_state: bool,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// This replica's address.
    pub socket_address: SocketAddress,
    /// The initial view (always includes `socket_address`).
    pub view: Vec<SocketAddress>,
    /// A DNS name (with port) listing the replicas, resolved periodically.
    pub view_dns: Option<SocketAddress>,
    /// How often `view_dns` is resolved again.
    pub view_dns_interval: Duration,
    /// The address to bind.
    pub listen: SocketAddr,
    /// The cluster token, if one is required.
    pub cluster_token: Option<String>,
    /// How long a request waits for its causal dependencies.
    pub causal_wait: Duration,
    /// Largest accepted client request body, in bytes.
    pub max_body_bytes: usize,
    /// Protocol timing.
    pub timing: Timing,
    /// How long a stopping replica waits to hand its writes over.
    pub handover_timeout: Duration,
    /// HTTP worker threads.
    pub workers: usize,
    /// Where the durable state lives; `None`: memory only.
    pub data_dir: Option<std::path::PathBuf>,
    /// When writes are acknowledged, with a data directory.
    pub durability: Durability,
    /// Whether damaged state is discarded rather than refused.
    pub discard_corrupt_state: bool,
    /// The shard count the store starts with (`SHARD_COUNT`), if sharded.
    pub shard_count: Option<u32>,
}

/// A configuration problem, named after the variable at fault.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct ConfigError {
    /// The environment variable (or flag) at fault.
    pub variable: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

fn bad(variable: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        variable,
        problem: problem.into(),
    }
}

impl Config {
    /// Validates `args` into a configuration.
    pub fn from_args(args: Args) -> Result<Self, ConfigError> {
        let socket_address = args
            .socket_address
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| bad("SOCKET_ADDRESS", "is not set (expected ip:port)"))?;
        let socket_address =
            SocketAddress::parse(socket_address).map_err(|e| bad("SOCKET_ADDRESS", e))?;
        let view_dns = match args.view_dns.as_deref().filter(|s| !s.trim().is_empty()) {
            Some(text) => Some(SocketAddress::parse(text).map_err(|e| bad("VIEW_DNS", e))?),
            None => None,
        };
        let view = args.view.as_deref().filter(|s| !s.trim().is_empty());
        let mut view = match (view, &view_dns) {
            (Some(text), _) => SocketAddress::parse_list(text).map_err(|e| bad("VIEW", e))?,
            // The view comes from DNS; it starts with this replica alone.
            (None, Some(_)) => Vec::new(),
            (None, None) => {
                return Err(bad("VIEW", "is not set (expected ip:port,ip:port,...)"));
            }
        };
        if args.view_dns_interval_ms == 0 {
            return Err(bad("VIEW_DNS_INTERVAL_MS", "must be positive"));
        }
        if !view.contains(&socket_address) {
            view.push(socket_address.clone());
            view.sort();
        }
        let listen = match args.listen_address.as_deref().filter(|s| !s.is_empty()) {
            Some(text) => text
                .parse()
                .map_err(|_| bad("LISTEN_ADDRESS", format!("{text:?} is not ip:port")))?,
            None => SocketAddr::from(([0, 0, 0, 0], socket_address.port())),
        };
        let cluster_token = args.cluster_token.filter(|t| !t.is_empty());
        if args.max_body_bytes < 64 {
            return Err(bad("MAX_BODY_BYTES", "must be at least 64"));
        }
        if args.heartbeat_interval_ms == 0 {
            return Err(bad("HEARTBEAT_INTERVAL_MS", "must be positive"));
        }
        if args.failure_timeout_ms <= args.heartbeat_interval_ms {
            return Err(bad(
                "FAILURE_TIMEOUT_MS",
                "must be larger than HEARTBEAT_INTERVAL_MS",
            ));
        }
        if args.suspect_timeout_ms < args.failure_timeout_ms {
            return Err(bad(
                "SUSPECT_TIMEOUT_MS",
                "must be at least FAILURE_TIMEOUT_MS",
            ));
        }
        let workers = match args.workers {
            Some(0) => return Err(bad("WORKERS", "must be positive")),
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(2, |n| n.get()),
        };
        let durability = match args.durability.trim() {
            "" => Durability::Fsync,
            text => Durability::parse(text).map_err(|e| bad("DURABILITY", e))?,
        };
        let data_dir = args
            .data_dir
            .filter(|d| !d.trim().is_empty())
            .map(std::path::PathBuf::from);
        let shard_count = match args.shard_count.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) => match text.parse::<u32>() {
                Ok(n) if (1..=crate::shard::MAX_SHARDS).contains(&n) => Some(n),
                _ => {
                    return Err(bad(
                        "SHARD_COUNT",
                        format!(
                            "{text:?} is not a shard count (1 to {})",
                            crate::shard::MAX_SHARDS
                        ),
                    ))
                }
            },
        };
        if shard_count.is_some() && data_dir.is_some() {
            return Err(bad(
                "SHARD_COUNT",
                "cannot be combined with DATA_DIR yet: sharded replicas keep their state in memory",
            ));
        }
        let timing = Timing {
            heartbeat_interval: args.heartbeat_interval_ms,
            failure_timeout: args.failure_timeout_ms,
            suspect_timeout: args.suspect_timeout_ms,
            probe_interval: (args.heartbeat_interval_ms * 4).max(500),
            ..Timing::default()
        };
        Ok(Config {
            socket_address,
            view,
            view_dns,
            view_dns_interval: Duration::from_millis(args.view_dns_interval_ms),
            listen,
            cluster_token,
            causal_wait: Duration::from_millis(args.causal_wait_ms),
            max_body_bytes: args.max_body_bytes,
            timing,
            handover_timeout: Duration::from_millis(args.handover_timeout_ms),
            workers,
            data_dir,
            durability,
            discard_corrupt_state: args.discard_corrupt_state,
            shard_count,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(socket: &str, view: &str) -> Args {
        Args {
            socket_address: Some(socket.into()),
            view: Some(view.into()),
            causal_wait_ms: 10_000,
            max_body_bytes: 1 << 20,
            heartbeat_interval_ms: 250,
            failure_timeout_ms: 3000,
            suspect_timeout_ms: 600_000,
            handover_timeout_ms: 5000,
            view_dns_interval_ms: 5000,
            ..Args::default()
        }
    }

    #[test]
    fn valid_config_binds_all_interfaces_on_the_socket_port() {
        let c = Config::from_args(args("10.10.0.2:8085", "10.10.0.2:8085,10.10.0.3:8085")).unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:8085");
        assert_eq!(c.view.len(), 2);
    }

    #[test]
    fn own_address_is_added_to_the_view() {
        let c = Config::from_args(args("10.10.0.4:8085", "10.10.0.3:8085")).unwrap();
        assert_eq!(c.view.len(), 2);
    }

    #[test]
    fn view_dns_replaces_view() {
        let mut a = args("10.0.0.1:8085", "");
        a.view_dns = Some("causalkv-headless.default.svc.cluster.local:8085".into());
        let c = Config::from_args(a).unwrap();
        assert_eq!(c.view, vec![c.socket_address.clone()]);
        assert_eq!(
            c.view_dns.unwrap().as_str(),
            "causalkv-headless.default.svc.cluster.local:8085"
        );
        let mut a = args("10.0.0.1:8085", "");
        a.view_dns = Some("no port".into());
        assert_eq!(Config::from_args(a).unwrap_err().variable, "VIEW_DNS");
    }

    #[test]
    fn shard_count_is_a_small_positive_number_and_memory_only() {
        let mut a = args("10.0.0.1:80", "10.0.0.1:80");
        a.shard_count = Some("2".into());
        assert_eq!(Config::from_args(a.clone()).unwrap().shard_count, Some(2));
        for bad in ["0", "-1", "two", "100000"] {
            a.shard_count = Some(bad.into());
            assert_eq!(
                Config::from_args(a.clone()).unwrap_err().variable,
                "SHARD_COUNT"
            );
        }
        a.shard_count = Some("2".into());
        a.data_dir = Some("/tmp/x".into());
        assert_eq!(Config::from_args(a).unwrap_err().variable, "SHARD_COUNT");
    }

    #[test]
    fn errors_name_the_variable() {
        let e = Config::from_args(Args::default()).unwrap_err();
        assert_eq!(e.variable, "SOCKET_ADDRESS");
        let e = Config::from_args(args("nonsense", "a:1")).unwrap_err();
        assert_eq!(e.variable, "SOCKET_ADDRESS");
        let e = Config::from_args(args("10.0.0.1:80", "")).unwrap_err();
        assert_eq!(e.variable, "VIEW");
        let e = Config::from_args(args("10.0.0.1:80", "10.0.0.1:80,bad")).unwrap_err();
        assert_eq!(e.variable, "VIEW");
        let mut a = args("10.0.0.1:80", "10.0.0.1:80");
        a.failure_timeout_ms = 100;
        assert_eq!(
            Config::from_args(a).unwrap_err().variable,
            "FAILURE_TIMEOUT_MS"
        );
        let mut a = args("10.0.0.1:80", "10.0.0.1:80");
        a.suspect_timeout_ms = 1000;
        assert_eq!(
            Config::from_args(a).unwrap_err().variable,
            "SUSPECT_TIMEOUT_MS"
        );
    }
}
