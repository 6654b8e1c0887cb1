//! The auditor API over an in-memory router: role check, search, exports that verify, the
//! verification configuration, and the trail of every query.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Extensions, HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;
use trustbus_security_server::messagelog::auditor::{AuditorApi, AuthDecision, router};
use trustbus_security_server::messagelog::audittrail::AuditTrail;
use trustbus_security_server::messagelog::exchange::{Direction, Side};
use trustbus_security_server::messagelog::testkit::{
    CLIENT, MessageSpec, Pki, TsaServer, exchange_message,
};
use trustbus_security_server::messagelog::timestamp::{TimestampConfig, Timestamper};
use trustbus_security_server::messagelog::verify::verify_container;
use trustbus_security_server::messagelog::verifyconf::VerificationConf;
use trustbus_security_server::messagelog::{MessageLog, MessageLogConfig, zipfile};
use uuid::Uuid;

async fn call(app: &axum::Router, uri: &str, key: Option<&str>) -> (StatusCode, Vec<u8>) {
    let mut req = Request::get(uri);
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    (
        status,
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
}

#[tokio::test]
async fn auditor_api_searches_exports_and_logs_every_query() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(&dir.path().join("ca")).unwrap();
    let tsa = TsaServer::start(pki.tsa.clone()).await.unwrap();
    let log = Arc::new(MessageLog::open(MessageLogConfig::new(dir.path().join("log"))).unwrap());
    let rid = Uuid::new_v4();
    let mut last = None;
    for (direction, signer) in [
        (Direction::Request, &pki.client),
        (Direction::Response, &pki.provider),
    ] {
        let rec = exchange_message(
            &pki,
            MessageSpec {
                side: Side::Consumer,
                direction,
                request_id: rid,
                signer,
                ocsp: None,
                body: None,
            },
        )
        .unwrap();
        last = Some(log.append(rec).await.unwrap());
    }
    log.wait_indexed(last.unwrap()).await.unwrap();

    let shared = pki.shared_params(&tsa.url);
    let sp = shared.clone();
    let trail = Arc::new(AuditTrail::open(&dir.path().join("auditor-trail.jsonl")).unwrap());
    let app = router(AuditorApi {
        store: log.store().clone(),
        payload_key: None,
        globalconf: Arc::new(move || vec![("shared-params.json".to_owned(), sp.clone())]),
        auth: Arc::new(|h: &HeaderMap, _: &Extensions| {
            match h.get("authorization").and_then(|v| v.to_str().ok()) {
                Some("Bearer auditor-key") => AuthDecision::Auditor("key:auditor-1".into()),
                Some("Bearer operator-key") => AuthDecision::Forbidden("key:operator-1".into()),
                _ => AuthDecision::Unauthenticated,
            }
        }),
        trail: trail.clone(),
    });
    let key = Some("auditor-key");

    // Role checks.
    let (s, _) = call(&app, "/api/v1/audit/records", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, b) = call(&app, "/api/v1/audit/records", Some("operator-key")).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(String::from_utf8_lossy(&b).contains("\"forbidden\""));

    // Search by client, then page through everything one record at a time.
    let (s, b) = call(
        &app,
        &format!("/api/v1/audit/records?client={CLIENT}&user_id=EE12345678901"),
        key,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["records"].as_array().unwrap().len(), 2);
    assert_eq!(v["records"][0]["kind"], "request_sent");
    assert_eq!(v["records"][0]["timestamped"], false);
    let (_, b) = call(&app, "/api/v1/audit/records?limit=1", key).await;
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
    let next = v["next"].as_str().unwrap().to_owned();
    let (_, b) = call(
        &app,
        &format!("/api/v1/audit/records?limit=1&after={next}"),
        key,
    )
    .await;
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["records"][0]["id"], 2);
    let (s, _) = call(&app, "/api/v1/audit/records?from=yesterday", key).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = call(&app, "/api/v1/audit/records?bogus=1", key).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // A cursor is the 20-byte position the previous page handed out; other hex is refused.
    let (s, b) = call(&app, "/api/v1/audit/records?limit=1&after=abcd", key).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&b).contains("after: not a cursor"));

    // Not timestamped yet: 409; then timestamp and export.
    let (s, b) = call(&app, "/api/v1/audit/records/1/evidence", key).await;
    assert_eq!(s, StatusCode::CONFLICT, "{}", String::from_utf8_lossy(&b));
    Timestamper::new(
        log.store().clone(),
        TimestampConfig::new(vec![pki.tsa_endpoint(&tsa.url)], Duration::from_secs(60)),
    )
    .run_once()
    .await
    .unwrap();
    let (s, conf_zip) = call(&app, "/api/v1/audit/verificationconf", key).await;
    assert_eq!(s, StatusCode::OK);
    std::fs::write(dir.path().join("vc.zip"), &conf_zip).unwrap();
    let conf = VerificationConf::load(&dir.path().join("vc.zip")).unwrap();
    let (s, asice) = call(&app, "/api/v1/audit/records/2/evidence", key).await;
    assert_eq!(s, StatusCode::OK);
    assert!(verify_container(&asice, &conf).valid);
    let (s, pair) = call(
        &app,
        &format!("/api/v1/audit/exchanges/{rid}/evidence"),
        key,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let entries = zipfile::read(&pair).unwrap();
    assert_eq!(entries.len(), 2);
    for (_, c) in &entries {
        assert!(verify_container(c, &conf).valid);
    }
    let (s, _) = call(&app, "/api/v1/audit/records/99/evidence", key).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = call(
        &app,
        &format!("/api/v1/audit/exchanges/{}/evidence", Uuid::new_v4()),
        key,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Every call above is in the trail, refused ones included, and the chain holds.
    let entries = AuditTrail::verify(trail.path()).unwrap();
    assert_eq!(entries.len(), 14);
    assert_eq!(entries[0].actor, "anonymous");
    assert_eq!(entries[0].status, 401);
    assert_eq!(entries[1].actor, "key:operator-1");
    assert_eq!(entries[2].action, "search");
    assert_eq!(entries[2].results, 2);
    assert!(entries[2].target.contains("client="));
    assert!(
        entries
            .iter()
            .any(|e| e.action == "export_exchange" && e.results == 2)
    );
    // Editing a line breaks the chain.
    let text = std::fs::read_to_string(trail.path()).unwrap();
    std::fs::write(
        trail.path(),
        text.replacen("key:auditor-1", "key:auditor-2", 1),
    )
    .unwrap();
    assert!(AuditTrail::verify(trail.path()).is_err());
}
