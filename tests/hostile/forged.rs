//! Forged contexts against a 3-replica cluster wedge neither a replica nor its peers.

use std::time::Duration;

use awc::http::Method;
use futures_util::future::{join, join_all};
use serde_json::{json, Value};

use crate::answers::{check_reply, Route};
use crate::common::{kv_path, request_with_timeout, timed, Body, Options};
use crate::PROMPT;

#[actix_web::test]
async fn forged_contexts_do_not_wedge_a_replica_or_its_peers() {
    const WAIT_MS: u64 = 1500;
    const FORGED: usize = 20;
    let c = Options::default().causal_wait_ms(WAIT_MS).start(3).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            c.health(i).await["replica"]
                .as_str()
                .expect("/health names the replica id")
                .to_string(),
        );
    }
    let thousand: serde_json::Map<String, Value> = (0..1000)
        .map(|i| {
            (
                format!("10.0.{}.{}:8085#forged", i / 250, i % 250),
                json!(i + 1),
            )
        })
        .collect();
    let contexts = [
        json!({"127.0.0.1:1#forged": 1}),
        json!({ids[1].clone(): u64::MAX}),
        json!({ids[2].clone(): 1_000_000}),
        json!({ids[0].clone(): u64::MAX}),
        json!({ids[0].clone(): 0, ids[1].clone(): 0, "nobody#0": 3}),
        Value::String(json!({"127.0.0.1:2#forged": 7}).to_string()),
        Value::Object(thousand),
    ];
    let limit = Duration::from_millis(WAIT_MS) + Duration::from_secs(3);
    let c = &c;
    // How many forged requests have been answered (or given up on).
    let forged_answered = &std::cell::Cell::new(0usize);
    let forged = (0..FORGED).map(|n| {
        let ctx = contexts[n % contexts.len()].clone();
        let (method, body) = match n % 3 {
            0 => (Method::GET, json!({"causal-metadata": ctx})),
            1 => (Method::PUT, json!({"value": n, "causal-metadata": ctx})),
            _ => (Method::DELETE, json!({"causal-metadata": ctx})),
        };
        let path = kv_path(&format!("forged-{}", n % 4));
        async move {
            let (r, t) = timed(request_with_timeout(
                c.addr(0),
                method.clone(),
                &path,
                &[],
                Body::Json(body),
                limit,
            ))
            .await;
            forged_answered.set(forged_answered.get() + 1);
            (method, ctx, r, t)
        }
    });
    // Normal clients at every replica, for as long as the forged requests
    // wait: each must get whole rounds done while every forged request is
    // still waiting (so waiting requests hold no worker and no lock), and
    // no request of theirs may hang (PROMPT).
    let normal = |at: usize, read_at: usize| async move {
        let mut ctx = json!("");
        let mut n = 0u64;
        let mut while_all_waited = 0u64;
        let mut slowest = Duration::ZERO;
        while forged_answered.get() < FORGED {
            let key = format!("normal-{at}-{read_at}");
            let (r, t) = timed(c.put(at, &key, json!(n), &ctx)).await;
            assert!(
                r.status == 200 || r.status == 201,
                "normal PUT at {at}: {r:?}"
            );
            ctx = r.ctx();
            slowest = slowest.max(t);
            let (r, t) = timed(c.get(read_at, &key, &ctx)).await;
            assert_eq!(r.status, 200, "normal GET at {read_at}: {r:?}");
            assert_eq!(r.body["value"], json!(n), "normal GET at {read_at}");
            ctx = r.ctx();
            slowest = slowest.max(t);
            n += 1;
            if forged_answered.get() == 0 {
                while_all_waited += 1;
            }
            // Pacing, so that the normal clients do not flood the replicas.
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
        (at, read_at, slowest, n, while_all_waited)
    };
    let normals = join_all([normal(0, 0), normal(1, 1), normal(2, 2), normal(1, 2)]);
    let (results, normals) = join(join_all(forged), normals).await;
    for (at, read_at, slowest, rounds, while_all_waited) in normals {
        assert!(
            slowest < PROMPT,
            "a normal client (write at {at}, read at {read_at}) waited {slowest:?}"
        );
        assert!(rounds > 0);
        assert!(
            while_all_waited > 0,
            "a normal client (write at {at}, read at {read_at}) got no round done \
             while the forged requests waited ({rounds} rounds in all)"
        );
    }
    for (method, ctx, r, t) in results {
        let r =
            r.unwrap_or_else(|e| panic!("forged {method} with {ctx}: no answer in {limit:?}: {e}"));
        check_reply(&r, method.as_str(), Route::Kv, true)
            .unwrap_or_else(|e| panic!("forged {method} with {ctx}: {e}"));
        assert_eq!(r.status, 503, "forged {method} with {ctx}: {r:?}");
        assert_eq!(
            r.body,
            json!({
                "error": "Causal dependencies not satisfied",
                "message": format!("Error in {method}"),
                "causal-metadata": ctx,
            }),
            "forged {method}"
        );
        assert!(
            t >= Duration::from_millis(WAIT_MS - 50),
            "forged {method} answered after {t:?}, before CAUSAL_WAIT_MS"
        );
    }
    // The forged writes wrote nothing; the cluster still replicates.
    for i in 0..3 {
        for n in 0..4 {
            let r = c.get(i, &format!("forged-{n}"), &json!("")).await;
            assert_eq!(r.status, 404, "a forged request wrote at {i}: {r:?}");
        }
    }
    let r = c
        .put(1, "after-forged", json!("still fine"), &json!(""))
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let ctx = r.ctx();
    // A 200 (not a 503) shows the write reached `i` within CAUSAL_WAIT_MS.
    for i in [0, 2] {
        let r = c.get(i, "after-forged", &ctx).await;
        assert_eq!(r.status, 200, "a write at 1, read at {i}: {r:?}");
        assert_eq!(r.body["value"], json!("still fine"));
    }
    for i in 0..3 {
        assert_eq!(c.health(i).await["synced"], json!(true));
    }
}
