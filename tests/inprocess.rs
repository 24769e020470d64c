//! In-process HTTP tests: the node's server started inside the test on
//! port 0 (no binary, no child process), driven through the typed client.

use std::time::Duration;

use causalkv::client::Client;
use causalkv::config::{Args, Config};
use serde_json::json;

fn config(port: u16) -> Config {
    Config::from_args(Args {
        socket_address: Some(format!("127.0.0.1:{port}")),
        view: Some(format!("127.0.0.1:{port}")),
        listen_address: Some("127.0.0.1:0".into()),
        causal_wait_ms: 300,
        max_body_bytes: 1 << 20,
        heartbeat_interval_ms: 100,
        failure_timeout_ms: 1000,
        suspect_timeout_ms: 60_000,
        handover_timeout_ms: 1000,
        view_dns_interval_ms: 5000,
        workers: Some(1),
        ..Args::default()
    })
    .unwrap()
}

#[actix_web::test]
async fn a_lone_in_process_replica_serves_the_key_value_api() {
    // The socket address names a port nobody listens on; clients use the
    // bound one. A lone replica never needs to reach itself.
    let running = causalkv::server::start(config(1), &causalkv::incarnation::fresh()).unwrap();
    let server = running.server.handle();
    actix_rt::spawn(running.server);
    let host = running.local_addr.to_string();
    let mut client = Client::with_timeout([host.clone()], Duration::from_secs(5));

    let put = client
        .put("greeting", json!({"hello": ["world", 1]}))
        .await
        .unwrap();
    assert_eq!(put.status, 201, "{put:?}");
    let get = client.get("greeting").await.unwrap();
    assert_eq!(get.status, 200, "{get:?}");
    assert_eq!(get.value(), Some(&json!({"hello": ["world", 1]})));
    // Nothing new was learned: the context comes back as it was sent.
    assert_eq!(get.metadata(), put.metadata());

    let delete = client.delete("greeting").await.unwrap();
    assert_eq!(delete.status, 200, "{delete:?}");
    assert_eq!(client.get("greeting").await.unwrap().status, 404);

    // A context naming a write no replica has: 503 after the (short) wait.
    client.set_context(json!({"127.0.0.1:9#ffffffff": 3}));
    let stuck = client.get("greeting").await.unwrap();
    assert_eq!(stuck.status, 503, "{stuck:?}");
    assert_eq!(stuck.body["error"], "Causal dependencies not satisfied");

    let health = client.health().await.unwrap();
    assert_eq!(health.status, 200);
    assert_eq!(health.body["synced"], true);
    server.stop(true).await;
}
