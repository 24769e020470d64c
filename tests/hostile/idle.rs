//! Idle and half-open connections do not starve normal clients.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::raw::{connect, parse_response};
use crate::common::{kv_path, timed, TestCluster};
use crate::harness::{assert_intact, probe, store_known};
use crate::PROMPT;

#[actix_web::test]
async fn idle_half_open_connections_do_not_starve_clients() {
    const IDLE: usize = 200;
    let c = TestCluster::start(1).await;
    let known = store_known(&c, 1).await;
    let addr = c.addr(0).to_string();
    let target = kv_path("idle");
    let mut idle = Vec::with_capacity(IDLE);
    for n in 0..IDLE {
        let mut stream = connect(&addr, Duration::from_secs(5));
        let partial = match n % 5 {
            // Connected, nothing sent.
            0 => String::new(),
            // Half a request line.
            1 => "PUT /key-value-sto".to_string(),
            // A head without its end.
            2 => format!("PUT {target} HTTP/1.1\r\nHost: {addr}\r\nContent-Len"),
            // A head promising more body than sent (then, for every
            // other one, half-closed: no more is coming).
            _ => format!(
                "PUT {target} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"value\":"
            ),
        };
        stream
            .write_all(partial.as_bytes())
            .expect("write a partial request");
        if n % 5 == 4 {
            let _ = stream.shutdown(Shutdown::Write);
        }
        idle.push(stream);
    }
    // Normal clients keep being answered promptly, for a while (an
    // observation window, not a synchronisation).
    let started = Instant::now();
    let mut rounds = 0;
    while started.elapsed() < Duration::from_secs(3) || rounds < 5 {
        probe(&c, 0, &format!("{IDLE} idle connections")).await;
        let (view, t) = timed(c.view(0)).await;
        assert_eq!(view, known.view);
        assert!(t < PROMPT, "view GET took {t:?} with idle connections open");
        rounds += 1;
    }
    // The idle connections were not answered with anything but a 4xx (or
    // left alone, or closed).
    for mut stream in idle.drain(..) {
        let _ = stream.set_nonblocking(true);
        let mut buf = [0u8; 4096];
        if let Ok(n) = stream.read(&mut buf) {
            if n > 0 {
                if let Ok(Some((r, _))) = parse_response(&buf[..n], true) {
                    assert!(
                        (400..500).contains(&r.status),
                        "an idle connection was answered {r:?}"
                    );
                }
            }
        }
        let _ = stream.shutdown(Shutdown::Both);
    }
    assert_intact(&c, &known, "idle connections").await;
    let r = c.get(0, "idle", &json!("")).await;
    assert_eq!(r.status, 404, "a partial request was applied: {r:?}");
}
