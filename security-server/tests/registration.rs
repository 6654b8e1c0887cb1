//! Registration through management requests against an in-process central server that
//! approves them automatically.

// Test code: a failed setup step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use trustbus_central_server::api::{self, AppState as CsState};
use trustbus_central_server::globalconf::{GlobalConf, Publisher};
use trustbus_central_server::keys::KeyStore;
use trustbus_central_server::management::{AutoApprove, RequestType};
use trustbus_central_server::model::{ManagementService, Member, MemberClass};
use trustbus_central_server::registry::Registry;
use trustbus_sdk::id::{ClientId, SecurityServerId};
use trustbus_security_server::httpc::HttpClient;
use trustbus_security_server::identity::Identity;
use trustbus_security_server::management;
use trustbus_security_server::testkit::TestPki;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_cert_and_client_registration() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(&dir.path().join("ca")).unwrap();
    let server = SecurityServerId::from_slash("DEV/GOV/1000/ss1").unwrap();
    let (sk, sc) = pki.sign_cert(server.owner()).unwrap();
    let (ak, ac) = pki.auth_cert(&server).unwrap();
    let id = Identity::new(server.clone(), sk, vec![sc], ak, vec![ac.clone()]).unwrap();

    let registry = Arc::new(Registry::open(&dir.path().join("registry"), "DEV").unwrap());
    let keys = KeyStore::new(&dir.path().join("keys"));
    keys.generate(1, "DEV").unwrap();
    registry
        .mutate(|s| {
            s.signing.active = 1;
            s.member_classes.insert(
                "GOV".into(),
                MemberClass {
                    code: "GOV".into(),
                    description: String::new(),
                },
            );
            s.members.insert(
                "DEV/GOV/1000".into(),
                Member {
                    id: server.owner().clone(),
                    name: "Consumer".into(),
                    subsystems: vec![],
                },
            );
            Ok(())
        })
        .unwrap();
    let gc = Arc::new(GlobalConf::new(
        registry.clone(),
        keys,
        Publisher::open(&dir.path().join("published"), 10).unwrap(),
        ManagementService {
            address: String::new(),
            tls_cert: None,
        },
        vec![],
    ));
    gc.regenerate().unwrap();
    let auto = AutoApprove(
        [
            RequestType::AuthCertRegistration,
            RequestType::ClientRegistration,
        ]
        .into_iter()
        .collect(),
    );
    let state = CsState {
        registry: registry.clone(),
        globalconf: gc,
        auto_approve: Arc::new(auto),
        refresh_interval_seconds: 1,
        max_management_body: 1 << 20,
    };
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/managementservice/v1", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, api::management_router(state)).await });

    let http = HttpClient::new(Duration::from_secs(5));
    let env = management::envelope(
        &id,
        management::auth_cert_registration(&id, "ss1.example:5500"),
    )
    .unwrap();
    let answer = management::submit(&http, &base, &env).await.unwrap();
    assert!(answer.contains("approved"), "{answer}");
    let client = ClientId::from_slash("DEV/GOV/1000/cons").unwrap();
    let env = management::envelope(&id, management::client_registration(&id, &client)).unwrap();
    let answer = management::submit(&http, &base, &env).await.unwrap();
    assert!(answer.contains("approved"), "{answer}");
    // The same signed bytes are accepted once.
    assert!(management::submit(&http, &base, &env).await.is_err());

    let snap = registry.snapshot();
    let s = &snap.servers["DEV/GOV/1000/ss1"];
    assert_eq!(s.address, "ss1.example:5500");
    assert_eq!(s.auth_cert_sha256, vec![ac.fingerprint_hex()]);
    assert!(s.clients.iter().any(|c| c.id == client && c.enabled));
}
