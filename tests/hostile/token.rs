//! Replica-to-replica messages without the cluster token are refused and change nothing.

use awc::http::Method;
use serde_json::json;

use crate::answers::{check_reply, Route};
use crate::common::{Body, Options};
use crate::harness::{assert_intact, store_known};

#[actix_web::test]
async fn internal_messages_without_the_cluster_token_are_401_and_change_nothing() {
    use causalkv::address::SocketAddress;
    use causalkv::causal::{Dot, ReplicaId, VectorClock};
    use causalkv::replica::{Decision, Member, Request, ViewChange, Write};
    use causalkv::store::{Key, Value as Stored};
    const TOKEN: &str = "s3cret";
    const N: usize = 3;
    let c = Options::default().token(TOKEN).start(N).await;
    let known = store_known(&c, N).await;
    let header = causalkv::transport::TOKEN_HEADER;
    let prefix = causalkv::transport::INTERNAL_PREFIX;

    let mut real = Vec::new();
    for i in 0..N {
        let id = c.health(i).await["replica"]
            .as_str()
            .expect("/health names the replica id")
            .to_string();
        real.push(Member {
            address: SocketAddress::parse(c.addr(i)).expect("address"),
            id: ReplicaId::parse(&id).expect("replica id"),
        });
    }
    let forged = Member {
        address: SocketAddress::parse("127.0.0.1:1").expect("address"),
        id: ReplicaId::new("127.0.0.1:1", "forged"),
    };
    let write = |from: &Member, key: &str, counter: u64| Write {
        key: Key::parse(key).expect("key"),
        value: Stored::from_json("\"planted\"").expect("value"),
        dot: Dot::new(from.id.clone(), counter),
        deps: VectorClock::new(),
        lamport: counter,
        covers: Vec::new(),
    };
    let clock = |from: &Member, n: u64| {
        let mut clock = VectorClock::new();
        clock.set(from.id.clone(), n);
        clock
    };
    let requests = vec![
        Request::Replicate {
            from: forged.clone(),
            writes: vec![write(&forged, "planted", 1), write(&forged, "known-str", 2)],
        },
        // Impersonating a member.
        Request::Replicate {
            from: real[0].clone(),
            writes: vec![write(&real[0], "planted", 1000)],
        },
        Request::Heartbeat {
            from: forged.clone(),
            clock: clock(&forged, 5),
            retired: Vec::new(),
            decided: 0,
        },
        Request::Heartbeat {
            from: real[0].clone(),
            clock: clock(&real[0], u64::MAX),
            retired: Vec::new(),
            decided: 0,
        },
        Request::Pull {
            from: forged.clone(),
            clock: VectorClock::new(),
        },
        Request::Join {
            from: forged.clone(),
            clock: VectorClock::new(),
            retired: Vec::new(),
            collected: VectorClock::new(),
            fresh: true,
            decisions: Vec::new(),
        },
        Request::Snapshot {
            from: forged.clone(),
            cursor: 0,
            fresh: false,
        },
        Request::ViewChange {
            from: real[0].clone(),
            decision: Decision {
                change: ViewChange::Remove(real[N - 1].address.clone()),
                stamp: 1000,
                by: real[0].id.clone(),
            },
        },
        Request::ViewChange {
            from: real[0].clone(),
            decision: Decision {
                change: ViewChange::Add(forged.address.clone()),
                stamp: 1001,
                by: real[0].id.clone(),
            },
        },
    ];
    let wrong_tokens: Vec<Vec<(&str, &str)>> = vec![
        vec![],
        vec![(header, "")],
        vec![(header, "wrong")],
        vec![(header, "S3CRET")],
        vec![(header, "s3cre")],
        vec![(header, "s3cret2")],
        vec![("authorization", "Bearer s3cret")],
        vec![("x-causalkv-tokens", TOKEN)],
    ];
    let mut sent = 0;
    for request in &requests {
        let kind = request.kind().as_str();
        let body = serde_json::to_value(request).expect("serialize");
        for i in 0..N {
            for headers in &wrong_tokens {
                for path in [
                    format!("{prefix}/{kind}"),
                    format!("{prefix}/{kind}?token={TOKEN}"),
                ] {
                    let r = c
                        .request(i, Method::POST, &path, headers, Body::Json(body.clone()))
                        .await;
                    assert_eq!(r.status, 401, "{kind} at {i} with {headers:?}: {r:?}");
                    check_reply(&r, "POST", Route::Other, false)
                        .unwrap_or_else(|e| panic!("{kind} at {i} with {headers:?}: {e}"));
                    sent += 1;
                }
            }
        }
    }
    // Garbage bodies without the token: refused before being read.
    for i in 0..N {
        for kind in [
            "replicate",
            "heartbeat",
            "pull",
            "join",
            "snapshot",
            "view-change",
        ] {
            let r = c
                .request(
                    i,
                    Method::POST,
                    &format!("{prefix}/{kind}"),
                    &[],
                    Body::Raw(b"\xff{garbage".to_vec()),
                )
                .await;
            assert_eq!(r.status, 401, "garbage {kind} at {i}: {r:?}");
            sent += 1;
        }
    }
    eprintln!("{sent} unauthorized internal requests refused");
    // Anything wrongly accepted (a planted write, a relayed view change)
    // has taken effect everywhere once writes made after it at every
    // replica are visible at every replica: a fence, not a pause.
    let mut fence = Vec::new();
    for i in 0..N {
        let key = format!("fence-{i}");
        let r = c.put(i, &key, json!(i), &json!("")).await;
        assert_eq!(r.status, 201, "fence write at {i}: {r:?}");
        fence.push((key, Some(json!(i))));
    }
    c.wait_contents(&(0..N).collect::<Vec<_>>(), &fence).await;
    for i in 0..N {
        let r = c.get(i, "planted", &json!("")).await;
        assert_eq!(r.status, 404, "an unauthorized write landed at {i}: {r:?}");
    }
    assert_intact(&c, &known, "unauthorized internal requests").await;

    // Control: the same endpoints do answer with the token (a read-only
    // snapshot request from a real member).
    let body = serde_json::to_value(Request::Snapshot {
        from: real[0].clone(),
        cursor: 0,
        fresh: false,
    })
    .expect("serialize");
    let r = c
        .request(
            1,
            Method::POST,
            &format!("{prefix}/snapshot"),
            &[(header, TOKEN)],
            Body::Json(body),
        )
        .await;
    assert_eq!(r.status, 200, "with the token: {r:?}");
}
