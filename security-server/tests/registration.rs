//! Registration through management requests against an in-process central server that
//! approves them automatically.

// Test code: a failed setup step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use trustbus_central_server::api::{self, AppState as CsState};
use trustbus_central_server::globalconf::{GlobalConf, Publisher};
use trustbus_central_server::keys::KeyStore;
use trustbus_central_server::management::{AutoApprove, RequestType};
use trustbus_central_server::model::{ManagementService, Member, MemberClass};
use trustbus_central_server::registry::Registry;
use trustbus_central_server::{tlsconf, util};
use trustbus_sdk::id::{ClientId, SecurityServerId};
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
    // A test PIN and few PBKDF2 rounds: the production token format, only cheaper.
    let iterations = std::num::NonZeroU32::new(1000).unwrap();
    let keys = KeyStore::open(
        &dir.path().join("keys"),
        Some("pin".into()),
        "UNUSED",
        iterations,
    )
    .unwrap();
    keys.generate(1, "DEV").unwrap();
    // The test CA is approved without an OCSP responder, so the envelopes need no OCSP.
    let mut ca = pki.approved_ca("");
    ca.ocsp_responders.clear();
    registry
        .mutate(|s| {
            s.signing.active = 1;
            s.cas.insert(ca.name.clone(), ca);
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
    // The management service speaks mutual TLS with a certificate published in private params.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("https://{}/managementservice/v1", l.local_addr().unwrap());
    let tls_key = trustbus_pki::KeyPair::generate(trustbus_pki::KeyKind::EcdsaP256).unwrap();
    let (tls_cert, tls_ca) = tlsconf::issue_management_cert(&tls_key, "DEV").unwrap();
    let service = ManagementService {
        address: base.clone(),
        tls_cert: Some(util::b64(&tls_cert)),
        tls_ca_cert: Some(util::b64(&tls_ca)),
    };
    let gc = Arc::new(GlobalConf::new(
        registry.clone(),
        keys,
        Publisher::open(&dir.path().join("published"), 10).unwrap(),
        service.clone(),
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
    let server_tls =
        tlsconf::management_server_config(registry.clone(), &tls_key, &tls_cert).unwrap();
    let listener = tlsconf::TlsListener::new(l, server_tls, "management").unwrap();
    let router = api::management_router(state);
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<tlsconf::PeerCert>(),
        )
        .await
    });
    let tls = tlsconf::management_client_config(&service, &id.auth.chain, &id.auth.key).unwrap();
    let env = management::envelope(
        &id,
        management::auth_cert_registration(&id, "ss1.example:5500"),
    )
    .unwrap();
    let answer = management::submit(tls.clone(), &base, &env).await.unwrap();
    assert!(answer.contains("approved"), "{answer}");
    let client = ClientId::from_slash("DEV/GOV/1000/cons").unwrap();
    let env = management::envelope(&id, management::client_registration(&id, &client)).unwrap();
    let answer = management::submit(tls.clone(), &base, &env).await.unwrap();
    assert!(answer.contains("approved"), "{answer}");
    // The same signed bytes are accepted once.
    assert!(management::submit(tls.clone(), &base, &env).await.is_err());

    let snap = registry.snapshot();
    let s = &snap.servers["DEV/GOV/1000/ss1"];
    assert_eq!(s.address, "ss1.example:5500");
    assert_eq!(s.auth_cert_sha256, vec![ac.fingerprint_hex()]);
    assert!(s.clients.iter().any(|c| c.id == client && c.enabled));
}
