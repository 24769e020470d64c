//! The cluster token on the replica-to-replica endpoints.

use awc::http::Method;
use serde_json::{json, Value};

use crate::assert_write;
use crate::common::{Body, Options};

fn forged_member() -> causalkv::replica::Member {
    use causalkv::address::SocketAddress;
    use causalkv::causal::ReplicaId;
    causalkv::replica::Member {
        address: SocketAddress::parse("127.0.0.1:1").unwrap(),
        id: ReplicaId::new("127.0.0.1:1", "forged"),
    }
}

fn forged_replicate(key: &str) -> Value {
    use causalkv::causal::{Dot, VectorClock};
    use causalkv::replica::{Request, Write};
    use causalkv::store::{Key, Value as Stored};
    let from = forged_member();
    let write = Write {
        key: Key::parse(key).unwrap(),
        value: Stored::from_json("\"planted\"").unwrap(),
        dot: Dot::new(from.id.clone(), 1),
        deps: VectorClock::new(),
        lamport: 1,
        covers: Vec::new(),
    };
    serde_json::to_value(Request::Replicate {
        from,
        writes: vec![write],
    })
    .unwrap()
}

#[actix_web::test]
async fn cluster_token_guards_the_internal_endpoints() {
    const TOKEN: &str = "s3cret-token";
    let c = Options::default().token(TOKEN).start(2).await;
    let header = causalkv::transport::TOKEN_HEADER;
    let prefix = causalkv::transport::INTERNAL_PREFIX;

    // The replicas themselves talk fine with the token.
    let r = c.put(0, "tk", json!("tv"), &json!("")).await;
    let ctx = assert_write(&r, 201, "Added successfully");
    let r = c.get(1, "tk", &ctx).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["value"], json!("tv"));

    // Without the token, or with a wrong one: 401, nothing changes.
    let replicate = forged_replicate("planted");
    let path = format!("{prefix}/replicate");
    for headers in [vec![], vec![(header, "wrong")], vec![(header, "")]] {
        let r = c
            .request(
                1,
                Method::POST,
                &path,
                &headers,
                Body::Json(replicate.clone()),
            )
            .await;
        assert_eq!(r.status, 401, "{headers:?}: {r:?}");
    }
    let join = serde_json::to_value(causalkv::replica::Request::Join {
        from: forged_member(),
        clock: Default::default(),
        retired: Vec::new(),
        collected: Default::default(),
        fresh: false,
        decisions: Vec::new(),
    })
    .unwrap();
    let r = c
        .request(
            1,
            Method::POST,
            &format!("{prefix}/join"),
            &[],
            Body::Json(join.clone()),
        )
        .await;
    assert_eq!(r.status, 401, "{r:?}");
    let r = c.get(1, "planted", &json!("")).await;
    assert_eq!(r.status, 404, "an unauthorized write was applied: {r:?}");
    assert_eq!(
        c.view(1).await,
        c.expected_view(&[0, 1]),
        "an unauthorized join changed the view"
    );

    // Control: with the token, the join is heard and the writes of the
    // replica that joined are applied.
    let r = c
        .request(
            1,
            Method::POST,
            &format!("{prefix}/join"),
            &[(header, TOKEN)],
            Body::Json(join),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = c
        .request(
            1,
            Method::POST,
            &path,
            &[(header, TOKEN)],
            Body::Json(replicate),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = c.get(1, "planted", &json!("")).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["value"], json!("planted"));
}
