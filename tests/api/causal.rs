//! The GET context in the query or a header, the causal wait's 503, and unknown endpoints.

use std::time::Duration;

use awc::http::Method;
use futures_util::future::{join_all, FutureExt, LocalBoxFuture};
use serde_json::{json, Value};

use crate::common::{encode, kv_path, timed, Body, Options, Reply, TestCluster};
use crate::{assert_bad_request, assert_write};

#[actix_web::test]
async fn get_context_in_query_string_or_header() {
    let c = TestCluster::start(1).await;
    let r = c.put(0, "qk", json!("qv"), &json!("")).await;
    let m1 = assert_write(&r, 201, "Added successfully");
    let text = serde_json::to_string(&m1).unwrap();
    let expected =
        json!({"message": "Retrieved successfully", "causal-metadata": m1, "value": "qv"});

    let path = format!("{}?causal-metadata={}", kv_path("qk"), encode(&text));
    let r = c.request(0, Method::GET, &path, &[], Body::None).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, expected, "query-string context must be echoed");

    let r = c
        .request(
            0,
            Method::GET,
            &kv_path("qk"),
            &[("X-Causal-Metadata", &text)],
            Body::None,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, expected, "header context must be echoed");

    // Malformed metadata there is a 400 as well.
    let path = format!("{}?causal-metadata=5", kv_path("qk"));
    let r = c.request(0, Method::GET, &path, &[], Body::None).await;
    assert_bad_request(&r, "GET");
    let r = c
        .request(
            0,
            Method::GET,
            &kv_path("qk"),
            &[("X-Causal-Metadata", "[1]")],
            Body::None,
        )
        .await;
    assert_bad_request(&r, "GET");
}

#[actix_web::test]
async fn unsatisfiable_context_is_503_after_the_wait_without_blocking_others() {
    const WAIT_MS: u64 = 1500;
    // One worker thread: waiting requests must not hold it.
    let c = Options::default()
        .causal_wait_ms(WAIT_MS)
        .workers(1)
        .start(1)
        .await;
    let id = c.health(0).await["replica"]
        .as_str()
        .expect("health names the replica id")
        .to_string();
    let unknown = json!({"127.0.0.1:1#forged": 1});
    let future_write = json!({ id: 1000 });
    let unsatisfied = |method: &str, ctx: &Value| {
        json!({
            "error": "Causal dependencies not satisfied",
            "message": format!("Error in {method}"),
            "causal-metadata": ctx,
        })
    };

    let text = serde_json::to_string(&unknown).unwrap();
    let query_path = format!("{}?causal-metadata={}", kv_path("fk"), encode(&text));
    let c = &c;
    let mut forged: Vec<LocalBoxFuture<'_, (&str, Value, Reply, Duration)>> = Vec::new();
    for ctx in [unknown.clone(), future_write.clone()] {
        forged.push(
            async move {
                let (r, t) = timed(c.get(0, "fk", &ctx)).await;
                ("GET", ctx, r, t)
            }
            .boxed_local(),
        );
    }
    let ctx = unknown.clone();
    forged.push(
        async move {
            let (r, t) = timed(c.request(0, Method::GET, &query_path, &[], Body::None)).await;
            ("GET", ctx, r, t)
        }
        .boxed_local(),
    );
    let ctx = unknown.clone();
    forged.push(
        async move {
            let headers = [("X-Causal-Metadata", text.as_str())];
            let path = kv_path("fk");
            let (r, t) = timed(c.request(0, Method::GET, &path, &headers, Body::None)).await;
            ("GET", ctx, r, t)
        }
        .boxed_local(),
    );
    let ctx = unknown.clone();
    forged.push(
        async move {
            let (r, t) = timed(c.put(0, "fk", json!("never"), &ctx)).await;
            ("PUT", ctx, r, t)
        }
        .boxed_local(),
    );
    let ctx = unknown.clone();
    forged.push(
        async move {
            let (r, t) = timed(c.delete(0, "other", &ctx)).await;
            ("DELETE", ctx, r, t)
        }
        .boxed_local(),
    );

    // Meanwhile another client is served: all its rounds are done while
    // every waiting request is still waiting (they wait CAUSAL_WAIT_MS), so
    // waiting requests do not hold the one worker.
    let answered = &std::cell::Cell::new(0usize);
    let forged = forged.into_iter().map(|request| async move {
        let out = request.await;
        answered.set(answered.get() + 1);
        out
    });
    let others = async {
        let mut ctx = json!("");
        let mut slowest = Duration::ZERO;
        for n in 0..5 {
            let (r, t) = timed(c.put(0, "other", json!(n), &ctx)).await;
            assert!(r.status == 200 || r.status == 201, "{r:?}");
            ctx = r.ctx();
            slowest = slowest.max(t);
            let (r, t) = timed(c.get(0, "other", &ctx)).await;
            assert_eq!(r.status, 200, "{r:?}");
            assert_eq!(r.body["value"], json!(n));
            slowest = slowest.max(t);
        }
        (slowest, answered.get())
    };
    let (results, (slowest, answered_before)) =
        futures_util::future::join(join_all(forged), others).await;

    eprintln!("the other client's slowest request took {slowest:?}");
    assert_eq!(
        answered_before, 0,
        "the other client finished only after {answered_before} waiting requests were answered"
    );
    for (method, ctx, r, elapsed) in results {
        r.assert_json();
        assert_eq!(r.status, 503, "{method} with {ctx}: {r:?}");
        assert_eq!(r.body, unsatisfied(method, &ctx));
        assert!(
            elapsed >= Duration::from_millis(WAIT_MS - 10),
            "{method} answered 503 after {elapsed:?}, before CAUSAL_WAIT_MS"
        );
        assert!(
            elapsed < Duration::from_millis(WAIT_MS) + Duration::from_secs(8),
            "{method} answered 503 only after {elapsed:?}"
        );
    }
    let r = c.get(0, "fk", &json!("")).await;
    assert_eq!(r.status, 404, "a PUT answered 503 must not write: {r:?}");
}

#[actix_web::test]
async fn unknown_endpoints_are_404_json() {
    let c = TestCluster::start(1).await;
    for (method, path) in [
        (Method::GET, "/nope"),
        (Method::PUT, "/key-value-store-views"),
        (Method::GET, "/"),
        (Method::DELETE, "/key-value/x"),
    ] {
        let r = c.request(0, method.clone(), path, &[], Body::None).await;
        r.assert_json();
        assert_eq!(r.status, 404, "{method} {path}: {r:?}");
        assert!(r.body["error"].is_string(), "{r:?}");
        assert_eq!(
            r.body["message"],
            json!(format!("Error in {method}")),
            "{r:?}"
        );
    }
}
