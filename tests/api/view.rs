//! GET, PUT and DELETE of the view by SPEC's view table.

use awc::http::Method;
use serde_json::json;

use crate::assert_bad_request;
use crate::common::{Body, Options, TestCluster};

#[actix_web::test]
async fn view_get_lists_every_member_in_order() {
    let c = TestCluster::start(3).await;
    let expected = c.expected_view(&[0, 1, 2]);
    let mut ports: Vec<u16> = (0..3)
        .map(|i| c.addr(i).rsplit_once(':').unwrap().1.parse().unwrap())
        .collect();
    ports.sort_unstable();
    let by_port: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    assert_eq!(expected, by_port.join(","));
    for i in 0..3 {
        let r = c
            .request(i, Method::GET, "/key-value-store-view", &[], Body::None)
            .await;
        r.assert_json();
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(
            r.body,
            json!({"message": "View retrieved successfully", "view": expected})
        );
    }
}

#[actix_web::test]
async fn view_is_ordered_by_ip_numerically_then_port() {
    // Members that never answer stay in the view for the failure timeout.
    let c = Options::default()
        .failure_timeout_ms(120_000)
        .start(1)
        .await;
    for address in [
        "127.0.0.10:8085",
        "127.0.0.2:10000",
        "127.0.0.2:9000",
        "127.0.0.100:1",
        "9.0.0.1:8085",
    ] {
        let r = c
            .request(
                0,
                Method::PUT,
                "/key-value-store-view",
                &[],
                Body::Json(json!({"socket-address": address})),
            )
            .await;
        assert_eq!(r.status, 201, "{address}: {r:?}");
    }
    let expected = format!(
        "9.0.0.1:8085,{},127.0.0.2:9000,127.0.0.2:10000,127.0.0.10:8085,127.0.0.100:1",
        c.addr(0)
    );
    assert_eq!(c.view(0).await, expected);
}

#[actix_web::test]
async fn view_put_and_delete_follow_the_spec_table() {
    let c = Options::default()
        .failure_timeout_ms(120_000)
        .start(1)
        .await;
    let me = c.addr(0).to_string();
    let other = "127.0.0.7:8085";
    let send = |method: Method, address: &str| {
        let body = Body::Json(json!({"socket-address": address}));
        let c = &c;
        async move {
            let r = c
                .request(0, method, "/key-value-store-view", &[], body)
                .await;
            r.assert_json();
            r
        }
    };

    let r = send(Method::PUT, other).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(
        r.body,
        json!({"message": "Replica added successfully to the view"})
    );
    assert_eq!(c.view(0).await, format!("{me},{other}"));

    let r = send(Method::PUT, other).await;
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(
        r.body,
        json!({"error": "Socket address already exists in the view", "message": "Error in PUT"})
    );
    let r = send(Method::PUT, &me).await;
    assert_eq!(r.status, 404, "the replica itself is a member: {r:?}");
    assert_eq!(
        r.body,
        json!({"error": "Socket address already exists in the view", "message": "Error in PUT"})
    );

    let r = send(Method::DELETE, other).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.body,
        json!({"message": "Replica deleted successfully from the view"})
    );
    assert_eq!(c.view(0).await, me);

    let r = send(Method::DELETE, other).await;
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(
        r.body,
        json!({"error": "Socket address does not exist in the view", "message": "Error in DELETE"})
    );
    let r = send(Method::DELETE, "127.0.0.8:8085").await;
    assert_eq!(r.status, 404, "{r:?}");

    // Removed, then added back: a member again.
    let r = send(Method::PUT, other).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(c.view(0).await, format!("{me},{other}"));
}

#[actix_web::test]
async fn view_requests_without_a_valid_address_are_400() {
    let c = Options::default()
        .failure_timeout_ms(120_000)
        .start(1)
        .await;
    let before = c.view(0).await;
    for method in [Method::PUT, Method::DELETE] {
        let missing =
            json!({"error": "Socket address is missing", "message": format!("Error in {method}")});
        for body in [
            Body::None,
            Body::Json(json!({})),
            Body::Json(json!({"socket-address": null})),
            Body::Json(json!({"socket-address": ""})),
            Body::Json(json!({"address": "127.0.0.7:8085"})),
        ] {
            let r = c
                .request(0, method.clone(), "/key-value-store-view", &[], body)
                .await;
            r.assert_json();
            assert_eq!(r.status, 400, "{method}: {r:?}");
            assert_eq!(r.body, missing, "{method}");
        }
        for bad in [
            json!("nonsense"),
            json!("127.0.0.1"),
            json!("127.0.0.1:"),
            json!("127.0.0.1:99999"),
            json!("127.0.0.1:port"),
            json!(8085),
            json!(["127.0.0.7:8085"]),
            json!({"ip": "127.0.0.7"}),
        ] {
            let r = c
                .request(
                    0,
                    method.clone(),
                    "/key-value-store-view",
                    &[],
                    Body::Json(json!({"socket-address": bad})),
                )
                .await;
            assert_bad_request(&r, method.as_str());
        }
        let r = c
            .request(
                0,
                method.clone(),
                "/key-value-store-view",
                &[],
                Body::Raw(b"{\"socket-address\": ".to_vec()),
            )
            .await;
        assert_bad_request(&r, method.as_str());
    }
    assert_eq!(
        c.view(0).await,
        before,
        "rejected requests must not change the view"
    );
}
