//! TLS on the central server's listeners. The rustls configurations themselves come from
//! `trustbus_pki::tls` (the one place that builds them); this module supplies what they need:
//!
//! - **management** (always mutual TLS, [`management_server_config`]):
//!   [`trustbus_pki::tls::ss_server_config`] with a [`RegistryPeerPolicy`]: the client's
//!   certificate must chain to a CA approved in the registry for the *auth* purpose; any such
//!   certificate passes the TLS layer, because a new authentication certificate is registered
//!   over this channel. The per-request binding (the TLS certificate is the one being
//!   registered or one registered for the server the request is about) is checked by
//!   [`crate::management::verify_envelope`].
//!   The server presents a certificate issued by a one-off CA generated with it (the CA's key is
//!   discarded at once). Both are published in `private-params.json`
//!   (`management_service.tls_cert`, `management_service.tls_ca_cert`), so a security server can
//!   pin the listener with the pki client builder: a trust store holding only `tls_ca_cert` and a
//!   registered-fingerprint check that accepts only SHA-256(`tls_cert`).
//! - **admin** and **globalconf** (optional HTTPS, [`https_server_config`]): operator-supplied
//!   PEM certificate chain and PKCS#8 key, no client certificates.
//!
//! [`TlsListener`] plugs a TLS acceptor into `axum::serve`: TCP connections are accepted in a
//! task and each handshake runs in its own task with a timeout ([`HANDSHAKE_TIMEOUT`]), at most
//! [`MAX_CONCURRENT_HANDSHAKES`] at a time, so a slow or hostile client cannot hold up the
//! others.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use trustbus_pki::Certificate;
use trustbus_pki::chain::TrustStore;
use trustbus_pki::key::KeyPair;
use trustbus_pki::tls::{self, IsClientAuth, PeerPolicy, PeerRejected, TlsIdentity};

use crate::Error;
use crate::registry::Registry;

/// How long a TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How many TLS handshakes may run at once per listener; further connections are closed at
/// once until one finishes.
pub const MAX_CONCURRENT_HANDSHAKES: usize = 256;

/// Issues the management listener's certificate for `key`: returns (certificate DER, CA DER).
/// The CA is generated for this one certificate and its key is dropped afterwards.
pub fn issue_management_cert(key: &KeyPair, instance: &str) -> Result<(Vec<u8>, Vec<u8>), Error> {
    let crypto = |e: rcgen::Error| Error::Crypto(e.to_string());
    let now = time::OffsetDateTime::now_utc();
    let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(crypto)?;
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(crypto)?;
    ca.distinguished_name = rcgen::DistinguishedName::new();
    ca.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("Trustbus {instance} central server management TLS CA"),
    );
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    ca.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    ca.not_before = now - time::Duration::days(1);
    ca.not_after = now + time::Duration::days(3650);
    ca.serial_number = Some(rcgen::SerialNumber::from_slice(
        &crate::keys::random_serial()?,
    ));
    let issuer = rcgen::CertifiedIssuer::self_signed(ca, ca_key).map_err(crypto)?;

    let mut leaf = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(crypto)?;
    leaf.distinguished_name = rcgen::DistinguishedName::new();
    leaf.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("Trustbus {instance} central server management"),
    );
    leaf.is_ca = rcgen::IsCa::ExplicitNoCa;
    leaf.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    leaf.not_before = now - time::Duration::days(1);
    leaf.not_after = now + time::Duration::days(3650);
    leaf.serial_number = Some(rcgen::SerialNumber::from_slice(
        &crate::keys::random_serial()?,
    ));
    let public = rcgen::KeyPair::try_from(key.pkcs8_der()).map_err(crypto)?;
    let cert = leaf.signed_by(&public, &issuer).map_err(crypto)?;
    Ok((cert.der().to_vec(), issuer.der().to_vec()))
}

/// The approved CAs of the registry as a [`PeerPolicy`]: the trust store is rebuilt when the
/// registry's revision changes; every certificate that chains counts as "registered" (the
/// binding to a server is checked per request).
pub struct RegistryPeerPolicy {
    registry: Arc<Registry>,
    cached: Mutex<(u64, Arc<TrustStore>)>,
}

impl RegistryPeerPolicy {
    /// A policy reading `registry`.
    pub fn new(registry: Arc<Registry>) -> Self {
        Self {
            registry,
            cached: Mutex::new((u64::MAX, Arc::new(TrustStore::new()))),
        }
    }
}

impl PeerPolicy for RegistryPeerPolicy {
    fn trust_store(&self) -> Arc<TrustStore> {
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        let revision = self.registry.read(|s| s.revision);
        if cached.0 != revision {
            let built = self
                .registry
                .read(crate::management::trust::trust_store)
                .unwrap_or_else(|e| {
                    tracing::error!(error = %e, "cannot build the TLS trust store; refusing all clients");
                    TrustStore::new()
                });
            *cached = (revision, Arc::new(built));
        }
        cached.1.clone()
    }

    fn is_registered(&self, _fingerprint: &[u8; 32]) -> bool {
        true
    }
}

/// The management listener's rustls configuration: TLS 1.3, client certificate required and
/// validated for the auth purpose against the registry's approved CAs.
pub fn management_server_config(
    registry: Arc<Registry>,
    key: &KeyPair,
    cert_der: &[u8],
) -> Result<Arc<rustls::ServerConfig>, Error> {
    let cert = Certificate::from_der(cert_der.to_vec())
        .map_err(|e| Error::Config(format!("management TLS certificate: {e}")))?;
    let identity = TlsIdentity::new(&[cert], key).map_err(|e| Error::Config(e.to_string()))?;
    tls::ss_server_config(identity, Arc::new(RegistryPeerPolicy::new(registry)))
        .map_err(|e| Error::Config(format!("management TLS: {e}")))
}

/// The client configuration a security server uses for the management service: TLS 1.3 with
/// its authentication certificate (`chain`, end entity first) and `key`, and the central
/// server pinned through the published `management_service` of private parameters (a trust
/// store with only `tls_ca_cert`, and only SHA-256(`tls_cert`) accepted). Built with
/// [`trustbus_pki::tls::ss_client_config`]; pass any server name (host names are not checked).
pub fn management_client_config(
    service: &crate::model::ManagementService,
    chain: &[Certificate],
    key: &KeyPair,
) -> Result<Arc<rustls::ClientConfig>, Error> {
    let cert = |what: &str, v: &Option<String>| -> Result<Vec<u8>, Error> {
        let b64 = v.as_deref().ok_or_else(|| {
            Error::Config(format!(
                "private parameters carry no management_service.{what}"
            ))
        })?;
        crate::util::unb64(what, b64)
    };
    let ca = Certificate::from_der(cert("tls_ca_cert", &service.tls_ca_cert)?)
        .map_err(|e| Error::Config(format!("management_service.tls_ca_cert: {e}")))?;
    let pinned = trustbus_pki::cert::sha256(&cert("tls_cert", &service.tls_cert)?);
    let mut store = TrustStore::new();
    store.add_ca(ca, false);
    let policy = tls::StaticPeerPolicy {
        store: Arc::new(store),
        registered: Arc::new(move |fp: &[u8; 32]| *fp == pinned),
    };
    let identity = TlsIdentity::new(chain, key).map_err(|e| Error::Config(e.to_string()))?;
    tls::ss_client_config(identity, Arc::new(policy))
        .map_err(|e| Error::Config(format!("management TLS client: {e}")))
}

/// An HTTPS configuration (no client certificates) from a PEM certificate chain file and a
/// PEM PKCS#8 key file.
pub fn https_server_config(
    cert_file: &Path,
    key_file: &Path,
) -> Result<Arc<rustls::ServerConfig>, Error> {
    let chain = Certificate::read_file(cert_file)
        .map_err(|e| Error::Config(format!("{}: {e}", cert_file.display())))?;
    let key_pem = std::fs::read_to_string(key_file)
        .map_err(|e| Error::Config(format!("cannot read {}: {e}", key_file.display())))?;
    let key = KeyPair::from_pkcs8_pem(&key_pem)
        .map_err(|e| Error::Config(format!("{}: {e}", key_file.display())))?;
    let identity = TlsIdentity::new(&chain, &key)
        .map_err(|e| Error::Config(format!("{}: {e}", cert_file.display())))?;
    tls::is_server_config(identity, IsClientAuth::None)
        .map_err(|e| Error::Config(format!("HTTPS configuration: {e}")))
}

/// A TLS listener for `axum::serve`.
pub struct TlsListener {
    rx: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Accepts on `tcp` and performs handshakes with `config` in background tasks.
    pub fn new(
        tcp: TcpListener,
        config: Arc<rustls::ServerConfig>,
        name: &'static str,
    ) -> Result<Self, Error> {
        let local = tcp.local_addr()?;
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let acceptor = TlsAcceptor::from(config);
        let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_HANDSHAKES));
        tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, listener = name, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                if tx.is_closed() {
                    return;
                }
                let Ok(permit) = handshakes.clone().try_acquire_owned() else {
                    tracing::warn!(%peer, listener = name, "too many TLS handshakes in progress; connection closed");
                    crate::metrics::with(|m| {
                        m.tls_handshake_failures.with_label_values(&[name]).inc();
                    });
                    continue;
                };
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => {
                            let reason = e
                                .get_ref()
                                .and_then(|i| i.downcast_ref::<rustls::Error>())
                                .and_then(PeerRejected::from_rustls)
                                .map(ToString::to_string)
                                .unwrap_or_else(|| e.to_string());
                            tracing::info!(%peer, listener = name, reason, "TLS handshake refused");
                            crate::metrics::with(|m| {
                                m.tls_handshake_failures.with_label_values(&[name]).inc();
                            });
                        }
                        Err(_) => {
                            tracing::info!(%peer, listener = name, "TLS handshake timed out");
                            crate::metrics::with(|m| {
                                m.tls_handshake_failures.with_label_values(&[name]).inc();
                            });
                        }
                    }
                });
            }
        });
        Ok(Self { rx, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The accept task only ends when this listener is gone; wait forever.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// The TLS client certificate of a connection, as connect info for handlers.
#[derive(Debug, Clone)]
pub struct PeerCert(pub Option<Certificate>);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>>
    for PeerCert
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> Self {
        Self(tls::peer_certificate(stream.io().get_ref().1))
    }
}
