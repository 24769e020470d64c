//! `VIEW_DNS` without Kubernetes: replicas in network namespaces whose
//! `/etc/hosts` maps one name to the replicas' addresses, rewritten as the
//! "deployment" scales up and down. Needs root (namespaces); without it the
//! test is reported as ignored, with the reason, or fails when `CI` is set
//! (`true` or `1`), since a CI job that checks nothing must not pass.

#[allow(dead_code)]
#[path = "fault/netns.rs"]
mod netns;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use awc::http::Method;
use libtest_mimic::{Arguments, Trial};
use serde_json::json;

const NAME: &str = "causalkv-headless";

async fn view_of(http: &awc::Client, cluster: &netns::NetnsCluster, i: usize) -> Option<String> {
    let host = cluster.address(i);
    cluster.check_target(&host);
    let r = causalkv::client::raw(http, &host, Method::GET, "/key-value-store-view", None)
        .await
        .ok()?;
    r.body.get("view")?.as_str().map(str::to_string)
}

async fn wait_view(http: &awc::Client, cluster: &netns::NetnsCluster, i: usize, expected: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = None;
    while Instant::now() < deadline {
        last = view_of(http, cluster, i).await;
        if last.as_deref() == Some(expected) {
            return;
        }
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "replica {i}: view {last:?}, expected {expected}; logs in {}",
        cluster.log_dir.display()
    );
}

const TEST: &str = "view_follows_the_replicas_a_dns_name_lists";

/// One test, under libtest's arguments and output: run where namespaces
/// can be made; elsewhere reported as ignored with the reason, or failed
/// when `CI` is set (`true` or `1`), since a CI job that checks nothing must
/// not pass.
fn main() -> ExitCode {
    let args = Arguments::from_args();
    let trial = match netns::unavailable() {
        None => Trial::test(TEST, || {
            actix_rt::System::new().block_on(view_follows_the_replicas_a_dns_name_lists());
            Ok(())
        }),
        Some(why) if netns::under_ci() => Trial::test(TEST, move || {
            Err(format!(
                "cannot run here: {why}. CI is set, so a test that checks nothing fails; \
                 run it as root with iproute2 and iptables"
            )
            .into())
        }),
        Some(why) => {
            eprintln!("\n!!! {TEST} is ignored, nothing is checked: {why} !!!\n");
            Trial::test(TEST, || Ok(())).with_ignored_flag(true)
        }
    };
    libtest_mimic::run(&args, vec![trial]).exit_code()
}

async fn view_follows_the_replicas_a_dns_name_lists() {
    let subnet = 150 + (std::process::id() % 40) as u8;
    let tag = format!("ckd{subnet}");
    let log_dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("dns-{tag}"));
    let env = vec![
        ("VIEW_DNS".to_string(), format!("{NAME}:{}", netns::PORT)),
        ("VIEW_DNS_INTERVAL_MS".to_string(), "300".to_string()),
        ("HEARTBEAT_INTERVAL_MS".to_string(), "150".to_string()),
        ("FAILURE_TIMEOUT_MS".to_string(), "20000".to_string()),
        ("RUST_LOG".to_string(), "info,causalkv=debug".to_string()),
    ];
    let binary = std::path::PathBuf::from(env!("CARGO_BIN_EXE_causalkv"));
    let mut cluster = netns::NetnsCluster::create(&tag, subnet, 3, &binary, &log_dir, env).unwrap();
    let http = awc::Client::builder()
        .timeout(Duration::from_secs(5))
        .finish();
    let address = |i: usize| cluster.address(i);
    let view = |slots: &[usize]| {
        slots
            .iter()
            .map(|&i| address(i))
            .collect::<Vec<_>>()
            .join(",")
    };

    // Two replicas, each configured with only itself and the DNS name.
    cluster.publish_name(NAME, &[0, 1]).unwrap();
    let two = view(&[0, 1]);
    let three = view(&[0, 1, 2]);
    cluster.start(0, &[0]).unwrap();
    cluster.start(1, &[1]).unwrap();
    wait_view(&http, &cluster, 0, &two).await;
    wait_view(&http, &cluster, 1, &two).await;
    let host = cluster.address(0);
    let put = causalkv::client::raw(
        &http,
        &host,
        Method::PUT,
        "/key-value-store/before-scale-up",
        Some(&json!({"value": "kept", "causal-metadata": ""})),
    )
    .await
    .unwrap();
    assert_eq!(put.status, 201, "{put:?}");

    // Scale up: the name lists a third replica, which starts and joins.
    cluster.publish_name(NAME, &[0, 1, 2]).unwrap();
    cluster.start(2, &[2]).unwrap();
    for i in 0..3 {
        wait_view(&http, &cluster, i, &three).await;
    }
    let third = cluster.address(2);
    let metadata = put.body["causal-metadata"].clone();
    let read = causalkv::client::raw(
        &http,
        &third,
        Method::GET,
        "/key-value-store/before-scale-up",
        Some(&json!({"causal-metadata": metadata})),
    )
    .await
    .unwrap();
    assert_eq!(read.status, 200, "{read:?}");
    assert_eq!(read.body["value"], "kept");

    // Scale down: the name stops listing the third replica. It still runs
    // (and the failure timeout is long), so only DNS can remove it.
    cluster.publish_name(NAME, &[0, 1]).unwrap();
    wait_view(&http, &cluster, 0, &two).await;
    wait_view(&http, &cluster, 1, &two).await;
}
