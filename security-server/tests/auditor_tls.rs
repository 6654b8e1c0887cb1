//! The auditor API over HTTPS (`[listen] auditor_tls`): a pinned client certificate makes an
//! auditor, an unlisted one is refused (and logged), API keys still work, and nothing but the
//! auditor API is served there.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use trustbus_pki::{Certificate, KeyPair};
use trustbus_security_server::auditorapi;
use trustbus_security_server::config::Config;
use trustbus_security_server::identity::internal_tls_cert;
use trustbus_security_server::messagelog::SledStore;
use trustbus_security_server::messagelog::audittrail::AuditTrail;

fn sha256_hex(b: &[u8]) -> String {
    trustbus_pki::cert::to_hex(ring::digest::digest(&ring::digest::SHA256, b).as_ref())
}

/// One GET over TLS, optionally with a client certificate and a bearer key.
async fn get(
    addr: std::net::SocketAddr,
    server_cert: &Certificate,
    client: Option<&(KeyPair, Certificate)>,
    key: Option<&str>,
    path: &str,
) -> (u16, String) {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(
            server_cert.der().to_vec(),
        ))
        .unwrap();
    let b = rustls::ClientConfig::builder_with_provider(trustbus_pki::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let cfg = match client {
        Some((k, c)) => b
            .with_client_auth_cert(
                vec![rustls::pki_types::CertificateDer::from(c.der().to_vec())],
                rustls::pki_types::PrivateKeyDer::Pkcs8(k.pkcs8_der().to_vec().into()),
            )
            .unwrap(),
        None => b.with_no_client_auth(),
    };
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = http::Request::get(path).header("host", "localhost");
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    let r = sender
        .send_request(req.body(Empty::<Bytes>::new()).unwrap())
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body = r.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn client_certificates_and_keys_on_the_auditor_tls_listener() {
    trustbus_pki::tls::install_ring_provider();
    let dir = tempfile::tempdir().unwrap();
    let alice = internal_tls_cert(vec!["alice".into()]).unwrap();
    let mallory = internal_tls_cert(vec!["mallory".into()]).unwrap();
    let cfg = Config::parse(&format!(
        "[server]\nowner = \"DEV/GOV/1\"\nserver_code = \"s\"\ndata_dir = \"d\"\n\
         [globalconf]\nanchor = \"a\"\n\
         [[api_keys]]\nsha256 = \"{}\"\nrole = \"auditor\"\n\
         [[api_keys]]\nsha256 = \"{}\"\nrole = \"system-administrator\"\n\
         [[auditor_certs]]\nsha256 = \"{}\"\nname = \"alice\"\n",
        sha256_hex(b"auditor-key"),
        sha256_hex(b"admin-key"),
        alice.1.fingerprint_hex()
    ))
    .unwrap();
    let store = Arc::new(SledStore::open(&dir.path().join("index")).unwrap());
    let trail_path = dir.path().join(auditorapi::TRAIL_FILE);
    let app =
        auditorapi::build(Arc::new(cfg), store, None, Arc::new(Vec::new), &trail_path).unwrap();
    let (skey, scert) = internal_tls_cert(vec!["localhost".into()]).unwrap();
    let tls = auditorapi::tls_config(&skey, std::slice::from_ref(&scert)).unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let server = tokio::spawn(auditorapi::serve_tls(app, tls, l));

    let records = "/api/v1/audit/records?limit=5";
    let (s, b) = get(addr, &scert, Some(&alice), None, records).await;
    assert_eq!((s, b.as_str()), (200, r#"{"next":null,"records":[]}"#));
    // A certificate decides over a key: an unlisted one is refused even with an auditor key.
    let (s, b) = get(addr, &scert, Some(&mallory), Some("auditor-key"), records).await;
    assert_eq!(s, 403, "{b}");
    assert!(b.contains(r#""code":"forbidden""#), "{b}");
    let (s, _) = get(addr, &scert, None, Some("auditor-key"), records).await;
    assert_eq!(s, 200);
    let (s, _) = get(addr, &scert, None, Some("admin-key"), records).await;
    assert_eq!(s, 403);
    let (s, b) = get(addr, &scert, None, None, records).await;
    assert_eq!(s, 401, "{b}");
    // Only the auditor API is served here.
    let (s, _) = get(addr, &scert, Some(&alice), None, "/api/v1/server").await;
    assert_eq!(s, 404);
    server.abort();

    let trail = AuditTrail::verify(&trail_path).unwrap();
    let seen: Vec<(String, u16)> = trail.iter().map(|e| (e.actor.clone(), e.status)).collect();
    let alice_id = format!("cert:alice:{}", &alice.1.fingerprint_hex()[..12]);
    let mallory_id = format!(
        "cert:{} (not an auditor certificate)",
        &mallory.1.fingerprint_hex()[..12]
    );
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert_eq!(seen[0], (alice_id, 200));
    assert_eq!(seen[1], (mallory_id, 403));
    assert!(
        seen[2].0.starts_with("api-key#1:") && seen[2].1 == 200,
        "{seen:?}"
    );
    assert!(
        seen[3].0.ends_with("(system-administrator)") && seen[3].1 == 403,
        "{seen:?}"
    );
    assert_eq!(seen[4], ("anonymous".to_owned(), 401));
}
