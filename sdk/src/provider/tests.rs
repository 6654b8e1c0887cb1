use axum::Router;
use axum::body::Body;
use axum::routing::get;
use tower::ServiceExt as _;

use super::testing::{ForgedContext, call};
use super::*;

fn app() -> Router {
    Router::new()
        .route(
            "/ctx",
            get(|ctx: BusContext| async move {
                axum::Json(serde_json::json!({
                    "client": ctx.client.to_slash(),
                    "service": ctx.service.map(|s| s.to_slash()),
                    "id": ctx.message_id,
                    "issue": ctx.issue,
                    "user": ctx.user.as_ref().map(|u| &u.id),
                    "verified": ctx.user.as_ref().map(|u| u.verified),
                }))
            }),
        )
        .route("/me", get(|u: VerifiedUser| async move { u.id }))
        .route("/openapi.json", openapi_route(r#"{"openapi":"3.0.3"}"#))
}

fn get_req(path: &str) -> http::Request<Body> {
    http::Request::get(path).body(Body::empty()).unwrap()
}

fn json(b: &[u8]) -> serde_json::Value {
    serde_json::from_slice(b).unwrap()
}

#[tokio::test]
async fn context_reaches_the_handler() {
    let mut ctx = ForgedContext::new("DEV/GOV/1234/portal")
        .verified_user("EE38001085718")
        .issue("case-1")
        .service("DEV/GOV/5678/registry/persons");
    ctx.message_id = "m-1".into();
    let r = call(app(), ctx, get_req("/ctx")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        json(r.body()),
        serde_json::json!({"client":"DEV/GOV/1234/portal","service":"DEV/GOV/5678/registry/persons",
            "id":"m-1","issue":"case-1","user":"EE38001085718","verified":true})
    );
}

#[tokio::test]
async fn unverified_user_is_marked_and_refused_where_verification_is_required() {
    let ctx = ForgedContext::new("DEV/GOV/1234/portal").unverified_user("EE1");
    let r = call(app(), ctx.clone(), get_req("/ctx")).await;
    assert_eq!(json(r.body())["verified"], false);
    let r = call(app(), ctx, get_req("/me")).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["x-road-error"], "Client.InvalidUserIdentity");
    assert_eq!(json(r.body())["type"], "Client.InvalidUserIdentity");
    let ok = ForgedContext::new("DEV/GOV/1234/portal").verified_user("EE2");
    assert_eq!(&call(app(), ok, get_req("/me")).await.body()[..], b"EE2");
}

#[tokio::test]
async fn verified_flag_without_user_or_with_other_values_is_not_verification() {
    let mut req = get_req("/ctx");
    req.headers_mut()
        .insert("trustbus-user-verified", "yes".parse().unwrap());
    req.headers_mut()
        .insert("x-road-client", "DEV/GOV/1234/portal".parse().unwrap());
    req.headers_mut().insert("x-road-id", "m".parse().unwrap());
    req.headers_mut()
        .insert("x-road-userid", "EE1".parse().unwrap());
    let r = app().oneshot(req).await.unwrap();
    let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
    assert_eq!(json(&body)["verified"], false);
}

#[tokio::test]
async fn missing_or_garbled_context_is_400_with_bus_error_body() {
    let cases: [(&[(&str, &str)], &str); 4] = [
        (&[], "Client.MissingHeaderField"),
        (
            &[("x-road-client", "DEV/GOV/1234/portal")],
            "Client.MissingHeaderField",
        ),
        (
            &[("x-road-client", "DEV/GOV"), ("x-road-id", "m")],
            "Client.InvalidClientIdentifier",
        ),
        (
            &[
                ("x-road-client", "DEV/GOV/1/a"),
                ("x-road-id", "m"),
                ("x-road-service", "x"),
            ],
            "Client.InvalidRest",
        ),
    ];
    for (headers, code) in cases {
        let mut req = get_req("/ctx");
        for (k, v) in headers {
            req.headers_mut().insert(*k, v.parse().unwrap());
        }
        let r = app().oneshot(req).await.unwrap();
        assert_eq!(r.status(), 400, "{code}");
        assert_eq!(r.headers()["x-road-error"], code);
        let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        let b = json(&body);
        assert_eq!(b["type"], code);
        assert!(!b["detail"].as_str().unwrap().is_empty());
    }
}

#[tokio::test]
async fn forged_context_replaces_client_supplied_bus_headers() {
    let mut req = get_req("/ctx");
    req.headers_mut()
        .insert("trustbus-user-verified", "true".parse().unwrap());
    req.headers_mut()
        .insert("x-road-userid", "EE-attacker".parse().unwrap());
    let r = call(app(), ForgedContext::new("DEV/GOV/1234/portal"), req).await;
    let b = json(r.body());
    assert_eq!(b["user"], serde_json::Value::Null);
}

#[tokio::test]
async fn openapi_document_is_served() {
    let r = call(
        app(),
        ForgedContext::new("DEV/GOV/1234/portal"),
        get_req("/openapi.json"),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(json(r.body())["openapi"], "3.0.3");
}
