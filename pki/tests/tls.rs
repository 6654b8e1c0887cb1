//! Real TLS handshakes over 127.0.0.1 with the configurations of `trustbus_pki::tls`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use common::{issue, member};
use time::{Duration, OffsetDateTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use trustbus_pki::Certificate;
use trustbus_pki::chain::{ChainError, TrustStore};
use trustbus_pki::devca::{DevCa, IssueRequest, SubjectKey};
use trustbus_pki::key::{KeyKind, KeyPair};
use trustbus_pki::profile::{CertProfile, auth_cert_server};
use trustbus_pki::signature::Signer;
use trustbus_pki::tls::{
    IsClientAuth, PeerPolicy, PeerRejected, StaticPeerPolicy, TlsIdentity, is_server_config,
    peer_certificate, ss_client_config, ss_server_config,
};

fn policy(ca: &DevCa, allowed: &[&Certificate]) -> Arc<dyn PeerPolicy> {
    let mut store = TrustStore::new();
    store.add_ca(ca.ca_cert().clone(), false);
    let set: HashSet<[u8; 32]> = allowed.iter().map(|c| *c.fingerprint()).collect();
    Arc::new(StaticPeerPolicy {
        store: Arc::new(store),
        registered: Arc::new(move |fp| set.contains(fp)),
    })
}

struct Outcome {
    server: Result<Option<Certificate>, std::io::Error>,
    client: Result<Option<Certificate>, std::io::Error>,
}

/// One connection: the client sends "ping", the server answers "pong".
async fn exchange(
    server_cfg: Arc<rustls::ServerConfig>,
    client_cfg: Arc<rustls::ClientConfig>,
) -> Outcome {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        let mut tls = TlsAcceptor::from(server_cfg).accept(tcp).await?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await?;
        assert_eq!(&buf, b"ping");
        tls.write_all(b"pong").await?;
        tls.shutdown().await?;
        Ok::<_, std::io::Error>(peer_certificate(tls.get_ref().1))
    });
    let client = async {
        let tcp = TcpStream::connect(addr).await?;
        let name = rustls_pki_types::ServerName::try_from("peer.invalid").unwrap();
        let mut tls = TlsConnector::from(client_cfg).connect(name, tcp).await?;
        tls.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await?;
        assert_eq!(&buf, b"pong");
        Ok::<_, std::io::Error>(peer_certificate(tls.get_ref().1))
    }
    .await;
    let server = server.await.unwrap();
    Outcome { server, client }
}

fn rejection(e: &std::io::Error) -> PeerRejected {
    let inner = e
        .get_ref()
        .and_then(|i| i.downcast_ref::<rustls::Error>())
        .unwrap_or_else(|| panic!("not a rustls error: {e:?}"));
    PeerRejected::from_rustls(inner)
        .unwrap_or_else(|| panic!("not our rejection: {inner:?}"))
        .clone()
}

fn identity(cert: &Certificate, key: &KeyPair) -> TlsIdentity {
    TlsIdentity::new(std::slice::from_ref(cert), key).unwrap()
}

#[tokio::test]
async fn mtls_succeeds_between_registered_servers() {
    let dir = tempfile::tempdir().unwrap();
    let ca = DevCa::init(dir.path(), "DEV").unwrap();
    let (a, ak) = issue(&ca, CertProfile::Auth, Some("ss-a"));
    let (b, bk) = issue(&ca, CertProfile::Auth, Some("ss-b"));
    let pol = policy(&ca, &[&a, &b]);
    let out = exchange(
        ss_server_config(identity(&b, &bk), pol.clone()).unwrap(),
        ss_client_config(identity(&a, &ak), pol).unwrap(),
    )
    .await;
    let seen_by_server = out.server.unwrap().unwrap();
    let seen_by_client = out.client.unwrap().unwrap();
    assert_eq!(seen_by_server, a);
    assert_eq!(seen_by_client, b);
    assert_eq!(
        auth_cert_server(&seen_by_server)
            .unwrap()
            .server
            .server_code(),
        "ss-a"
    );
}

#[tokio::test]
async fn server_rejects_unregistered_client() {
    let dir = tempfile::tempdir().unwrap();
    let ca = DevCa::init(dir.path(), "DEV").unwrap();
    let (a, ak) = issue(&ca, CertProfile::Auth, Some("ss-a"));
    let (b, bk) = issue(&ca, CertProfile::Auth, Some("ss-b"));
    // The server knows only itself; the client knows both.
    let out = exchange(
        ss_server_config(identity(&b, &bk), policy(&ca, &[&b])).unwrap(),
        ss_client_config(identity(&a, &ak), policy(&ca, &[&a, &b])).unwrap(),
    )
    .await;
    let err = out.server.unwrap_err();
    assert_eq!(
        rejection(&err),
        PeerRejected::NotRegistered {
            fingerprint: a.fingerprint_hex()
        }
    );
    assert!(out.client.is_err(), "client must not get an answer");
}

#[tokio::test]
async fn client_rejects_unregistered_server() {
    let dir = tempfile::tempdir().unwrap();
    let ca = DevCa::init(dir.path(), "DEV").unwrap();
    let (a, ak) = issue(&ca, CertProfile::Auth, Some("ss-a"));
    let (b, bk) = issue(&ca, CertProfile::Auth, Some("ss-b"));
    let out = exchange(
        ss_server_config(identity(&b, &bk), policy(&ca, &[&a, &b])).unwrap(),
        ss_client_config(identity(&a, &ak), policy(&ca, &[&a])).unwrap(),
    )
    .await;
    assert!(matches!(
        rejection(&out.client.unwrap_err()),
        PeerRejected::NotRegistered { .. }
    ));
    assert!(out.server.is_err());
}

#[tokio::test]
async fn server_rejects_client_from_unapproved_ca() {
    let d1 = tempfile::tempdir().unwrap();
    let d2 = tempfile::tempdir().unwrap();
    let ca = DevCa::init(d1.path(), "DEV").unwrap();
    let rogue = DevCa::init(d2.path(), "ROGUE").unwrap();
    let (a, ak) = issue(&rogue, CertProfile::Auth, Some("ss-a"));
    let (b, bk) = issue(&ca, CertProfile::Auth, Some("ss-b"));
    // Even with the rogue certificate's fingerprint registered, the CA is not approved.
    let out = exchange(
        ss_server_config(identity(&b, &bk), policy(&ca, &[&a, &b])).unwrap(),
        ss_client_config(identity(&a, &ak), policy(&ca, &[&b])).unwrap(),
    )
    .await;
    assert!(matches!(
        rejection(&out.server.unwrap_err()),
        PeerRejected::Chain(ChainError::UnknownIssuer { .. })
    ));
}

#[tokio::test]
async fn client_rejects_expired_server_and_signing_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = DevCa::init(dir.path(), "DEV").unwrap();
    let (a, ak) = issue(&ca, CertProfile::Auth, Some("ss-a"));
    let bk = KeyPair::generate(KeyKind::EcdsaP256).unwrap();
    let now = OffsetDateTime::now_utc();
    let b = ca
        .issue(&IssueRequest {
            profile: CertProfile::Auth,
            member: member(),
            member_name: "Tax Board".into(),
            server_code: Some("ss-b".into()),
            key: SubjectKey::Spki(bk.public_key_der()),
            not_before: Some(now - Duration::days(10)),
            not_after: Some(now - Duration::days(1)),
        })
        .unwrap();
    let out = exchange(
        ss_server_config(identity(&b, &bk), policy(&ca, &[&a, &b])).unwrap(),
        ss_client_config(identity(&a, &ak), policy(&ca, &[&a, &b])).unwrap(),
    )
    .await;
    assert!(matches!(
        rejection(&out.client.unwrap_err()),
        PeerRejected::Chain(ChainError::Expired { .. })
    ));

    // A signing certificate is not an authentication certificate.
    let (s, sk) = issue(&ca, CertProfile::Sign, None);
    let out = exchange(
        ss_server_config(identity(&s, &sk), policy(&ca, &[&a, &s])).unwrap(),
        ss_client_config(identity(&a, &ak), policy(&ca, &[&a, &s])).unwrap(),
    )
    .await;
    assert!(matches!(
        rejection(&out.client.unwrap_err()),
        PeerRejected::Chain(ChainError::WrongKeyUsage { .. })
    ));
}

/// Test-only verifier for an information system that trusts the server blindly.
#[derive(Debug)]
struct AcceptAnyServer(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyServer {
    fn verify_server_cert(
        &self,
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &[rustls_pki_types::CertificateDer<'_>],
        _: &rustls_pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &rustls_pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &rustls_pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn is_client(cert: Option<(&Certificate, &KeyPair)>) -> Arc<rustls::ClientConfig> {
    let provider = trustbus_pki::tls::provider();
    let b = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyServer(provider)));
    Arc::new(match cert {
        None => b.with_no_client_auth(),
        Some((c, k)) => {
            let id = rustls_pki_types::PrivateKeyDer::Pkcs8(k.pkcs8_der().to_vec().into());
            b.with_client_auth_cert(vec![c.der().to_vec().into()], id)
                .unwrap()
        }
    })
}

#[tokio::test]
async fn information_system_port_with_optional_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = DevCa::init(dir.path(), "DEV").unwrap();
    let (srv, srvk) = issue(&ca, CertProfile::Auth, Some("ss-a"));
    let (is_cert, is_key) = issue(&ca, CertProfile::Sign, None);
    let out = exchange(
        is_server_config(identity(&srv, &srvk), IsClientAuth::Optional).unwrap(),
        is_client(None),
    )
    .await;
    assert_eq!(out.server.unwrap(), None);
    let out = exchange(
        is_server_config(identity(&srv, &srvk), IsClientAuth::Optional).unwrap(),
        is_client(Some((&is_cert, &is_key))),
    )
    .await;
    assert_eq!(out.server.unwrap(), Some(is_cert));
    // Required: a client without a certificate does not get through.
    let out = exchange(
        is_server_config(identity(&srv, &srvk), IsClientAuth::Required).unwrap(),
        is_client(None),
    )
    .await;
    assert!(out.server.is_err());
}
