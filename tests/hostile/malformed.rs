//! Truncated, oversized and malformed requests over raw TCP.

use std::io::Write;
use std::net::Shutdown;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::answers::{check_raw, Route};
use crate::common::raw::{
    connect, exchange, exchange_many, http_request, read_responses, RawError, Shown,
};
use crate::common::{kv_path, Options};
use crate::harness::{assert_intact, store_known};
use crate::CASE_TIMEOUT;

/// The public routes as (method, target, route).
fn public_routes() -> Vec<(&'static str, String, Route)> {
    vec![
        ("PUT", kv_path("raw"), Route::Kv),
        ("GET", kv_path("raw"), Route::Kv),
        ("DELETE", kv_path("raw"), Route::Kv),
        ("PUT", "/key-value-store-view".to_string(), Route::View),
        ("DELETE", "/key-value-store-view".to_string(), Route::View),
    ]
}

/// Sends `bytes` (not a well-formed request, or one cut short), then
/// either closes the connection at once, or half-closes it and reads
/// whatever comes back. The replica may answer or close; an answer must be
/// a 4xx, and, when `check` names the route, follow the contract.
fn send_malformed(
    addr: &str,
    what: &str,
    bytes: &[u8],
    half_close: bool,
    check: Option<(&str, Route)>,
) {
    send_odd(addr, what, bytes, half_close, check, false)
}

/// [`send_malformed`], where `tolerated` says the request may also be
/// served (a leniency RFC 9112 allows, e.g. bare LF line ends).
fn send_odd(
    addr: &str,
    what: &str,
    bytes: &[u8],
    half_close: bool,
    check: Option<(&str, Route)>,
    tolerated: bool,
) {
    let timeout = Duration::from_secs(10);
    let mut stream = connect(addr, timeout);
    let _ = stream.write_all(bytes);
    if !half_close {
        // Gone without a word.
        drop(stream);
        return;
    }
    let _ = stream.shutdown(Shutdown::Write);
    match read_responses(&mut stream, 1, Instant::now() + timeout) {
        Ok(replies) => {
            let r = &replies[0];
            assert!(
                (400..500).contains(&r.status) || (tolerated && (200..300).contains(&r.status)),
                "{what}: answered {r:?} to {}",
                Shown(bytes)
            );
            if let Some((method, route)) = check {
                if let Err(e) = check_raw(r, method, route, false) {
                    panic!("{what}: {e} (request {})", Shown(bytes));
                }
            }
        }
        // Closing a connection that sent a broken request is fine.
        Err(RawError::Closed(_)) | Err(RawError::Reset) => {}
        Err(e) => panic!("{what}: {e:?} (request {})", Shown(bytes)),
    }
}

#[actix_web::test]
async fn truncated_oversized_and_malformed_requests_are_contained() {
    const LIMIT: usize = 4096;
    let c = Options::default().max_body_bytes(LIMIT).start(1).await;
    let known = store_known(&c, 1).await;
    let addr = c.addr(0).to_string();
    let head = |method: &str, target: &str, extra: &str| {
        format!(
            "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{extra}\r\n"
        )
        .into_bytes()
    };
    let body = br#"{"value":"raw","causal-metadata":""}"#;

    // Content-Length larger than the body, then a half-close, or a close.
    for (method, target, route) in public_routes() {
        for half_close in [true, false] {
            let mut bytes = head(method, &target, "Content-Length: 1000\r\n");
            bytes.extend_from_slice(&body[..10]);
            send_malformed(
                &addr,
                "Content-Length larger than the body",
                &bytes,
                half_close,
                Some((method, route)),
            );
        }
        // Cut inside the head.
        let bytes = head(method, &target, "Content-Length: 36\r\n");
        send_malformed(
            &addr,
            "cut in the head",
            &bytes[..bytes.len() / 2],
            true,
            None,
        );
        // Cut inside a chunked body.
        let mut bytes = head(method, &target, "Transfer-Encoding: chunked\r\n");
        bytes.extend_from_slice(b"24\r\n{\"value\":");
        send_malformed(
            &addr,
            "cut in a chunked body",
            &bytes,
            true,
            Some((method, route)),
        );
    }
    assert_intact(&c, &known, "truncated requests").await;

    // Bodies over MAX_BODY_BYTES, well-formed: a 400 JSON answer, no reset.
    for (method, target, route) in public_routes() {
        for size in [LIMIT + 1, 64 << 10, 2 << 20] {
            let fill = "x".repeat(size - 33);
            let big = format!(r#"{{"value":"{fill}","causal-metadata":""}}"#);
            assert_eq!(big.len(), size);
            let request = http_request(&addr, method, &target, &[], big.as_bytes());
            let r = exchange(&addr, &request, CASE_TIMEOUT)
                .unwrap_or_else(|e| panic!("{method} {target} with a body of {size} bytes: {e:?}"));
            assert_eq!(r.status, 400, "{method} {target}, {size} bytes: {r:?}");
            check_raw(&r, method, route, false)
                .unwrap_or_else(|e| panic!("{method} {target}, {size} bytes: {e}"));
            // The same over the limit, chunked.
            let mut chunked = head(
                method,
                &target,
                "Transfer-Encoding: chunked\r\nConnection: close\r\n",
            );
            for piece in big.as_bytes().chunks(1000) {
                chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                chunked.extend_from_slice(piece);
                chunked.extend_from_slice(b"\r\n");
            }
            chunked.extend_from_slice(b"0\r\n\r\n");
            let r = exchange(&addr, &chunked, CASE_TIMEOUT).unwrap_or_else(|e| {
                panic!("{method} {target} with a chunked body of {size} bytes: {e:?}")
            });
            assert_eq!(r.status, 400, "{method} {target}, chunked {size}: {r:?}");
            check_raw(&r, method, route, false)
                .unwrap_or_else(|e| panic!("{method} {target}, chunked {size}: {e}"));
        }
        // A Content-Length far beyond the limit: refused once the limit
        // is passed, without waiting for the rest.
        let mut bytes = head(
            method,
            &target,
            "Content-Length: 1000000000000\r\nConnection: close\r\n",
        );
        bytes.extend_from_slice(&vec![b' '; 2 * LIMIT]);
        let r = exchange(&addr, &bytes, CASE_TIMEOUT)
            .unwrap_or_else(|e| panic!("{method} {target}, Content-Length 10^12: {e:?}"));
        assert_eq!(
            r.status, 400,
            "{method} {target}, Content-Length 10^12: {r:?}"
        );
        check_raw(&r, method, route, false)
            .unwrap_or_else(|e| panic!("{method} {target}, Content-Length 10^12: {e}"));
    }
    assert_intact(&c, &known, "oversized requests").await;

    // Chunked garbage and malformed framing.
    let target = kv_path("raw");
    for (what, extra, rest) in [
        (
            "chunk size not hex",
            "Transfer-Encoding: chunked\r\n",
            &b"zz\r\nhello\r\n0\r\n\r\n"[..],
        ),
        (
            "chunk size overflowing",
            "Transfer-Encoding: chunked\r\n",
            b"ffffffffffffffffffffff\r\nx\r\n0\r\n\r\n",
        ),
        (
            "negative chunk size",
            "Transfer-Encoding: chunked\r\n",
            b"-5\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "chunk longer than its size",
            "Transfer-Encoding: chunked\r\n",
            b"2\r\nhello world\r\n0\r\n\r\n",
        ),
        (
            "no chunk terminator",
            "Transfer-Encoding: chunked\r\n",
            b"5\r\nhelloXX5\r\nhello\r\n",
        ),
        (
            "unknown transfer coding",
            "Transfer-Encoding: gzip, chunked\r\n",
            b"5\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "both framings",
            "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
            b"0\r\n\r\nGET /health HTTP/1.1\r\n\r\n",
        ),
        (
            "two Content-Lengths",
            "Content-Length: 5\r\nContent-Length: 7\r\n",
            b"hello!!",
        ),
        (
            "negative Content-Length",
            "Content-Length: -5\r\n",
            b"hello",
        ),
        (
            "Content-Length not a number",
            "Content-Length: five\r\n",
            b"hello",
        ),
        (
            "Content-Length overflowing",
            "Content-Length: 99999999999999999999999\r\n",
            b"hello",
        ),
    ] {
        for method in ["PUT", "GET", "DELETE"] {
            let mut bytes = head(method, &target, extra);
            bytes.extend_from_slice(rest);
            send_malformed(&addr, what, &bytes, true, None);
        }
    }
    for (what, bytes) in [
        ("garbage request line", b"GARBAGE\r\n\r\n".to_vec()),
        (
            "binary noise",
            (0u8..=255).cycle().take(4096).collect::<Vec<u8>>(),
        ),
        (
            "header without a colon",
            format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nnocolon\r\n\r\n").into_bytes(),
        ),
        (
            "unknown HTTP version",
            format!("GET /health HTTP/9.9\r\nHost: {addr}\r\n\r\n").into_bytes(),
        ),
        (
            "bare LF line ends",
            format!("GET /health HTTP/1.1\nHost: {addr}\n\n").into_bytes(),
        ),
        ("200 headers", {
            let mut s = format!("GET /health HTTP/1.1\r\nHost: {addr}\r\n");
            for i in 0..200 {
                s.push_str(&format!("X-H{i}: {i}\r\n"));
            }
            s.push_str("\r\n");
            s.into_bytes()
        }),
        (
            "a 200 KiB header",
            format!(
                "GET /health HTTP/1.1\r\nHost: {addr}\r\nX-Big: {}\r\n\r\n",
                "b".repeat(200 << 10)
            )
            .into_bytes(),
        ),
    ] {
        send_odd(&addr, what, &bytes, true, None, what == "bare LF line ends");
    }
    assert_intact(&c, &known, "malformed framing").await;

    // Well-formed pipelined requests on one connection: all answered, in
    // order.
    let mut pipelined = Vec::new();
    for (method, body) in [
        ("PUT", &br#"{"value":"piped","causal-metadata":""}"#[..]),
        ("GET", b""),
        ("DELETE", br#"{"causal-metadata":""}"#),
        ("GET", b""),
    ] {
        pipelined.extend_from_slice(
            format!(
                "{method} {} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                kv_path("piped"),
                body.len()
            )
            .as_bytes(),
        );
        pipelined.extend_from_slice(body);
    }
    let replies = exchange_many(&addr, &pipelined, 4, CASE_TIMEOUT)
        .unwrap_or_else(|e| panic!("pipelined requests: {e:?}"));
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [201, 200, 200, 404], "pipelined: {replies:?}");
    assert_eq!(
        replies[1].json().map(|b| b["value"].clone()),
        Some(json!("piped"))
    );
    assert_intact(&c, &known, "pipelined requests").await;
}
