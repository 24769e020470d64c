//! Prometheus metrics: what a replica exposes at `GET /metrics`.
//!
//! Request counters and latency histograms are updated by the HTTP
//! middleware; per-peer queue depth and replication lag by the transport;
//! the replica's own figures (keys, tombstones, buffered writes, view size,
//! suspects, readiness, clock entries, retired incarnations) are read from
//! it when scraped.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::durable::Disk;
use crate::replica::Stats;

/// Latency buckets, in seconds: from 100 µs to the causal wait and beyond.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

/// Every metric of one replica.
pub struct Metrics {
    registry: Registry,
    /// HTTP requests answered, by route pattern, method and status.
    pub requests: IntCounterVec,
    /// HTTP request latency, by route pattern and method.
    pub latency: HistogramVec,
    keys: IntGauge,
    tombstones: IntGauge,
    table_keys: IntGaugeVec,
    table_requests: IntCounterVec,
    disk_bytes: IntGauge,
    disk_free: IntGauge,
    durable_batch: IntGauge,
    syncs: IntCounter,
    buffered: IntGauge,
    view_size: IntGauge,
    synced: IntGauge,
    ready: IntGauge,
    suspects: IntGauge,
    clock_entries: IntGauge,
    retired: IntGauge,
    writes_issued: IntCounter,
    writes_applied: IntCounter,
    queue_depth: IntGaugeVec,
    replication_lag: GaugeVec,
    uptime: Gauge,
    started: Instant,
    /// Per peer: when the oldest write still queued for it was queued.
    oldest_queued: Mutex<HashMap<String, Option<Instant>>>,
    /// The series of key-value requests, looked up once each (a lookup by
    /// label values hashes them and takes a lock: too much per request).
    kv_requests: [OnceLock<IntCounter>; KV_METHODS.len() * KV_STATUSES.len()],
    kv_latency: [OnceLock<Histogram>; KV_METHODS.len()],
    /// Sharded stores: the figures of the shards.
    pub shards: ShardMetrics,
}

/// What `/metrics` shows of a sharded store's shards.
pub struct ShardMetrics {
    /// This node's shard (0: placed in none).
    node_shard: IntGauge,
    /// The version of the shard map this node holds.
    map_version: IntGauge,
    /// Members per shard.
    members: IntGaugeVec,
    /// Client requests relayed to another shard's node, by shard and
    /// outcome (`ok`: an answer came back; `failed`: no member answered).
    pub relayed: IntCounterVec,
    /// Versions handed to other shards by reshards.
    pub handed_off: IntCounter,
    /// Versions received from other shards by reshards.
    pub received: IntCounter,
    /// Reshards coordinated here, by outcome.
    pub reshards: IntCounterVec,
}

/// A sharded node's shard figures, for [`Metrics::render`].
pub struct ShardFigures {
    /// This node's shard, if placed.
    pub node_shard: Option<u32>,
    /// The map version held.
    pub map_version: u64,
    /// Members per shard.
    pub members: Vec<(u32, usize)>,
}

/// The route label of every key-value request.
pub const KV_ROUTE: &str = "/key-value-store/{key}";

/// The `route` label of a table's key requests.
pub const TABLE_KV_ROUTE: &str = "/tables/{table}/key-value-store/{key}";
const KV_METHODS: [&str; 3] = ["GET", "PUT", "DELETE"];
const KV_STATUSES: [u16; 5] = [200, 201, 404, 400, 503];

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("causalkv_http_requests_total", "HTTP requests answered"),
            &["route", "method", "status"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "causalkv_http_request_duration_seconds",
                "HTTP request latency",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route", "method"],
        )
        .expect("valid metric");
        let gauge = |name: &str, help: &str| IntGauge::new(name, help).expect("valid metric");
        let counter = |name: &str, help: &str| IntCounter::new(name, help).expect("valid metric");
        let shards = ShardMetrics {
            node_shard: gauge(
                "causalkv_shard_id",
                "The shard this node is a member of (0: none, or unsharded)",
            ),
            map_version: gauge(
                "causalkv_shard_map_version",
                "The version of the shard map this node holds (0: unsharded)",
            ),
            members: IntGaugeVec::new(
                Opts::new("causalkv_shard_members", "Members of each shard"),
                &["shard"],
            )
            .expect("valid metric"),
            relayed: IntCounterVec::new(
                Opts::new(
                    "causalkv_shard_relayed_requests_total",
                    "Client requests relayed to a member of the key's shard, by shard and outcome",
                ),
                &["shard", "outcome"],
            )
            .expect("valid metric"),
            handed_off: counter(
                "causalkv_shard_versions_handed_off_total",
                "Versions of moving keys this node handed to their new shard in reshards",
            ),
            received: counter(
                "causalkv_shard_versions_received_total",
                "Versions of moving keys this node received from other shards in reshards",
            ),
            reshards: IntCounterVec::new(
                Opts::new(
                    "causalkv_reshards_total",
                    "Reshards coordinated by this node, by outcome",
                ),
                &["outcome"],
            )
            .expect("valid metric"),
        };
        let metrics = Metrics {
            keys: gauge("causalkv_keys", "Live keys stored"),
            disk_bytes: gauge(
                "causalkv_disk_bytes",
                "Bytes the durable state takes under DATA_DIR (0 without one)",
            ),
            disk_free: gauge(
                "causalkv_disk_free_bytes",
                "Free bytes on the file system of DATA_DIR (0 without one)",
            ),
            durable_batch: gauge(
                "causalkv_durable_batch",
                "Number of the last batch of changes known durable on disk",
            ),
            syncs: counter(
                "causalkv_disk_syncs_total",
                "Journal syncs (each covers every write waiting for it)",
            ),
            tombstones: gauge("causalkv_tombstones", "Tombstones of deleted keys held"),
            table_keys: IntGaugeVec::new(
                Opts::new("causalkv_table_keys", "Live keys of each table"),
                &["table"],
            )
            .expect("valid metric"),
            table_requests: IntCounterVec::new(
                Opts::new(
                    "causalkv_table_requests_total",
                    "Key requests answered in each table (requests naming a table that does not exist are not counted)",
                ),
                &["table", "method", "status"],
            )
            .expect("valid metric"),
            buffered: gauge(
                "causalkv_delivery_buffer_writes",
                "Writes received and waiting for their causal dependencies",
            ),
            view_size: gauge(
                "causalkv_view_size",
                "Members of the view, this replica included",
            ),
            synced: gauge(
                "causalkv_synced",
                "1 once the start-up state transfer is done",
            ),
            ready: gauge(
                "causalkv_ready",
                "1 while the replica serves clients (holds the state, not stopping)",
            ),
            suspects: gauge(
                "causalkv_suspects",
                "Replicas out of the view, silent, not forgotten yet",
            ),
            clock_entries: gauge(
                "causalkv_clock_entries",
                "Entries of the applied vector clock (incarnations not retired)",
            ),
            retired: gauge(
                "causalkv_retired_incarnations",
                "Incarnations retired from clocks and contexts",
            ),
            writes_issued: counter(
                "causalkv_writes_issued_total",
                "Client writes made at this replica",
            ),
            writes_applied: counter(
                "causalkv_writes_applied_total",
                "Writes from other replicas applied here",
            ),
            queue_depth: IntGaugeVec::new(
                Opts::new(
                    "causalkv_peer_queue_writes",
                    "Writes queued for a peer, not yet acknowledged",
                ),
                &["peer"],
            )
            .expect("valid metric"),
            replication_lag: GaugeVec::new(
                Opts::new(
                    "causalkv_peer_replication_lag_seconds",
                    "Age of the oldest write queued for a peer and not yet acknowledged",
                ),
                &["peer"],
            )
            .expect("valid metric"),
            uptime: Gauge::new(
                "causalkv_uptime_seconds",
                "Seconds since the replica started",
            )
            .expect("valid metric"),
            started: Instant::now(),
            oldest_queued: Mutex::new(HashMap::new()),
            kv_requests: Default::default(),
            kv_latency: Default::default(),
            requests,
            latency,
            registry,
            shards,
        };
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(metrics.requests.clone()),
            Box::new(metrics.latency.clone()),
            Box::new(metrics.keys.clone()),
            Box::new(metrics.tombstones.clone()),
            Box::new(metrics.buffered.clone()),
            Box::new(metrics.view_size.clone()),
            Box::new(metrics.synced.clone()),
            Box::new(metrics.ready.clone()),
            Box::new(metrics.suspects.clone()),
            Box::new(metrics.clock_entries.clone()),
            Box::new(metrics.disk_bytes.clone()),
            Box::new(metrics.disk_free.clone()),
            Box::new(metrics.durable_batch.clone()),
            Box::new(metrics.syncs.clone()),
            Box::new(metrics.retired.clone()),
            Box::new(metrics.writes_issued.clone()),
            Box::new(metrics.writes_applied.clone()),
            Box::new(metrics.table_keys.clone()),
            Box::new(metrics.table_requests.clone()),
            Box::new(metrics.queue_depth.clone()),
            Box::new(metrics.replication_lag.clone()),
            Box::new(metrics.uptime.clone()),
            Box::new(metrics.shards.node_shard.clone()),
            Box::new(metrics.shards.map_version.clone()),
            Box::new(metrics.shards.members.clone()),
            Box::new(metrics.shards.relayed.clone()),
            Box::new(metrics.shards.handed_off.clone()),
            Box::new(metrics.shards.received.clone()),
            Box::new(metrics.shards.reshards.clone()),
        ];
        for collector in collectors {
            metrics
                .registry
                .register(collector)
                .expect("metric registered once");
        }
        metrics
    }

    /// Records the state of the replication queue of `peer`: its length and
    /// when its oldest write was queued (`None` when empty).
    pub fn set_queue(&self, peer: &str, depth: usize, oldest: Option<Instant>) {
        self.queue_depth
            .with_label_values(&[peer])
            .set(depth as i64);
        let mut map = self.oldest_queued.lock().unwrap_or_else(|p| p.into_inner());
        map.insert(peer.to_string(), oldest);
    }

    /// Counts one answered request and its latency.
    pub fn record_request(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let m = KV_METHODS.iter().position(|&k| k == method);
        let st = KV_STATUSES.iter().position(|&k| k == status);
        if let (true, Some(m), Some(st)) = (route == KV_ROUTE, m, st) {
            self.kv_requests[m * KV_STATUSES.len() + st]
                .get_or_init(|| {
                    let status = status.to_string();
                    self.requests.with_label_values(&[route, method, &status])
                })
                .inc();
            self.kv_latency[m]
                .get_or_init(|| self.latency.with_label_values(&[route, method]))
                .observe(seconds);
            return;
        }
        let status = status.to_string();
        self.requests
            .with_label_values(&[route, method, &status])
            .inc();
        self.latency
            .with_label_values(&[route, method])
            .observe(seconds);
    }

    /// Counts a key request of table `table`, unless it named a table that
    /// does not exist (a 404 or 400 for any name would grow the labels
    /// without bound).
    pub fn record_table_request(&self, table: &str, method: &str, status: u16) {
        if matches!(status, 400 | 404) {
            return;
        }
        self.table_requests
            .with_label_values(&[table, method, &status.to_string()])
            .inc();
    }

    /// Forgets the queue of a peer that left the view.
    pub fn drop_queue(&self, peer: &str) {
        let _ = self.queue_depth.remove_label_values(&[peer]);
        let _ = self.replication_lag.remove_label_values(&[peer]);
        let mut map = self.oldest_queued.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(peer);
    }

    /// The metrics in the Prometheus text format, with the replica's
    /// figures as of `stats` and its disk's, if it has one.
    pub fn render(
        &self,
        stats: &Stats,
        disk: Option<&Disk>,
        shards: Option<ShardFigures>,
    ) -> String {
        if let Some(figures) = shards {
            self.shards
                .node_shard
                .set(i64::from(figures.node_shard.unwrap_or(0)));
            self.shards.map_version.set(figures.map_version as i64);
            self.shards.members.reset();
            for (shard, members) in figures.members {
                self.shards
                    .members
                    .with_label_values(&[&shard.to_string()])
                    .set(members as i64);
            }
        }
        if let Some(disk) = disk {
            let status = disk.status();
            self.disk_bytes.set(disk.disk_bytes() as i64);
            self.disk_free.set(status.free.min(i64::MAX as u64) as i64);
            self.durable_batch.set(status.durable as i64);
            catch_up(&self.syncs, status.syncs);
        }
        self.keys.set(stats.keys as i64);
        self.tombstones.set(stats.tombstones as i64);
        self.table_keys.reset();
        for table in &stats.tables {
            self.table_keys
                .with_label_values(&[table.name.as_str()])
                .set(table.keys as i64);
        }
        self.buffered.set(stats.buffered as i64);
        self.view_size.set(stats.view_size as i64);
        self.synced.set(stats.synced as i64);
        self.ready.set(stats.ready as i64);
        self.suspects.set(stats.suspects as i64);
        self.clock_entries.set(stats.clock_entries as i64);
        self.retired.set(stats.retired as i64);
        catch_up(&self.writes_issued, stats.writes_issued);
        catch_up(&self.writes_applied, stats.writes_applied);
        self.uptime.set(self.started.elapsed().as_secs_f64());
        {
            let map = self.oldest_queued.lock().unwrap_or_else(|p| p.into_inner());
            for (peer, oldest) in map.iter() {
                let lag = oldest.map_or(0.0, |t| t.elapsed().as_secs_f64());
                self.replication_lag.with_label_values(&[peer]).set(lag);
            }
        }
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

/// Raises a counter to `total` (counters only go up).
fn catch_up(counter: &IntCounter, total: u64) {
    let seen = counter.get();
    if total > seen {
        counter.inc_by(total - seen);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_reports_replica_figures_and_queues() {
        let m = Metrics::new();
        m.requests
            .with_label_values(&["/health", "GET", "200"])
            .inc();
        m.set_queue("10.0.0.2:8085", 3, Some(Instant::now()));
        let stats = Stats {
            keys: 7,
            buffered: 2,
            view_size: 3,
            suspects: 1,
            ready: true,
            clock_entries: 4,
            retired: 6,
            writes_issued: 5,
            tables: vec![crate::store::TableInfo {
                name: "users".into(),
                siblings: false,
                keys: 9,
            }],
            ..Stats::default()
        };
        let text = m.render(&stats, None, None);
        assert!(text.contains("causalkv_keys 7"), "{text}");
        assert!(
            text.contains(r#"causalkv_table_keys{table="users"} 9"#),
            "{text}"
        );
        for line in [
            "causalkv_suspects 1",
            "causalkv_ready 1",
            "causalkv_clock_entries 4",
            "causalkv_retired_incarnations 6",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        assert!(text.contains("causalkv_delivery_buffer_writes 2"), "{text}");
        assert!(text.contains("causalkv_writes_issued_total 5"), "{text}");
        assert!(
            text.contains(r#"causalkv_peer_queue_writes{peer="10.0.0.2:8085"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"causalkv_http_requests_total{method="GET",route="/health",status="200"} 1"#
            ),
            "{text}"
        );
        m.drop_queue("10.0.0.2:8085");
        assert!(!m.render(&stats, None, None).contains("10.0.0.2:8085"));
    }

    #[test]
    fn a_sharded_node_shows_its_shard_the_map_and_each_shards_members() {
        let m = Metrics::new();
        m.shards.relayed.with_label_values(&["2", "ok"]).inc();
        let figures = |members: Vec<(u32, usize)>| ShardFigures {
            node_shard: Some(1),
            map_version: 4,
            members,
        };
        let text = m.render(&Stats::default(), None, Some(figures(vec![(1, 3), (2, 4)])));
        for line in [
            "causalkv_shard_id 1",
            "causalkv_shard_map_version 4",
            r#"causalkv_shard_members{shard="1"} 3"#,
            r#"causalkv_shard_members{shard="2"} 4"#,
            r#"causalkv_shard_relayed_requests_total{outcome="ok",shard="2"} 1"#,
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        // A shard that went away is no longer shown.
        let text = m.render(&Stats::default(), None, Some(figures(vec![(1, 7)])));
        assert!(
            !text.contains(r#"causalkv_shard_members{shard="2"}"#),
            "{text}"
        );
    }

    #[test]
    fn requests_are_counted_by_route_method_and_status() {
        let m = Metrics::new();
        let ms = Duration::from_millis(1);
        for _ in 0..3 {
            m.record_request(KV_ROUTE, "PUT", 201, ms);
        }
        m.record_request(KV_ROUTE, "GET", 404, ms);
        m.record_request(KV_ROUTE, "PATCH", 404, ms);
        m.record_request("/health", "GET", 200, ms);
        let text = m.render(&Stats::default(), None, None);
        for line in [
            r#"causalkv_http_requests_total{method="PUT",route="/key-value-store/{key}",status="201"} 3"#,
            r#"causalkv_http_requests_total{method="GET",route="/key-value-store/{key}",status="404"} 1"#,
            r#"causalkv_http_requests_total{method="PATCH",route="/key-value-store/{key}",status="404"} 1"#,
            r#"causalkv_http_requests_total{method="GET",route="/health",status="200"} 1"#,
            r#"causalkv_http_request_duration_seconds_count{method="PUT",route="/key-value-store/{key}"} 3"#,
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        assert!(
            !text.contains(r#"status="503""#),
            "unused series are not shown"
        );
    }
}
