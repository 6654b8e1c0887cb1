//! The one place that builds rustls configurations (ARCHITECTURE.md §2, §4.2).
//!
//! Every configuration uses the **ring** provider explicitly. Two kinds:
//!
//! * **Security server ⇄ security server**: TLS 1.3 only, both sides present their
//!   authentication certificate. A peer is accepted only if its certificate chains to an approved
//!   CA for the auth purpose ([`TrustStore::validate`] with [`Purpose::Auth`]) **and** its SHA-256
//!   fingerprint is registered ([`PeerPolicy::is_registered`]). Host names are never checked.
//!   Built by [`ss_server_config`] and [`ss_client_config`].
//! * **Information system ⇄ security server** ([`is_server_config`]): TLS 1.2 or 1.3 with the
//!   security server's internal certificate; the client certificate is optional and, if sent,
//!   only checked to be well-formed, inside its validity period and to have signed the
//!   handshake. Matching it against a subsystem's registered certificates is the caller's job
//!   (see [`peer_certificate`]).
//!
//! Handshake signatures are verified with rustls' helpers over the ring provider's algorithms.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, OtherError,
    ServerConfig, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use time::OffsetDateTime;

use crate::cert::Certificate;
use crate::chain::{ChainError, Purpose, TrustStore};
use crate::key::KeyPair;

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// rustls refused the configuration (bad key, unsupported version, …).
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// No certificate given for the identity.
    #[error("a TLS identity needs at least one certificate")]
    NoCertificate,
    /// An HTTPS client was given no root certificates to trust.
    #[error("HTTPS needs at least one root certificate")]
    NoRoots,
}

/// Why a TLS peer's certificate was rejected; carried inside
/// `rustls::Error::InvalidCertificate(CertificateError::Other(..))`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerRejected {
    /// The certificate does not parse.
    #[error("peer certificate is malformed: {0}")]
    Malformed(String),
    /// The certificate does not chain to an approved CA as an authentication certificate.
    #[error("peer certificate not trusted: {0}")]
    Chain(#[from] ChainError),
    /// The certificate is valid but its fingerprint is not registered for a security server.
    #[error("peer certificate {fingerprint} is not registered in the global configuration")]
    NotRegistered {
        /// SHA-256 fingerprint, lower-case hex.
        fingerprint: String,
    },
    /// The certificate is outside its validity period (information-system side).
    #[error("peer certificate is outside its validity period")]
    OutsideValidity,
}

impl PeerRejected {
    /// Finds our rejection reason inside a rustls error, if that is what it is.
    pub fn from_rustls(e: &rustls::Error) -> Option<&Self> {
        match e {
            rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(inner))) => {
                inner.downcast_ref::<Self>()
            }
            _ => None,
        }
    }

    fn into_rustls(self) -> rustls::Error {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(self))))
    }
}

/// The ring crypto provider, as every configuration here uses it.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Installs ring as the process-wide default provider; call first thing in `main`.
/// Harmless if a provider is already installed.
pub fn install_ring_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A certificate chain and its private key, to present in TLS.
pub struct TlsIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl TlsIdentity {
    /// The end-entity certificate first, then any intermediates, and the software key.
    pub fn new(chain: &[Certificate], key: &KeyPair) -> Result<Self, TlsError> {
        if chain.is_empty() {
            return Err(TlsError::NoCertificate);
        }
        Ok(Self {
            chain: chain
                .iter()
                .map(|c| CertificateDer::from(c.der().to_vec()))
                .collect(),
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.pkcs8_der().to_vec())),
        })
    }
}

/// Who may connect: the approved CAs and the registered authentication certificates.
///
/// Both change when a new global configuration arrives; the verifiers ask on every handshake.
pub trait PeerPolicy: Send + Sync {
    /// The current approved CAs.
    fn trust_store(&self) -> Arc<TrustStore>;
    /// Whether an authentication certificate with this SHA-256 fingerprint is registered for a
    /// security server that may take part.
    fn is_registered(&self, fingerprint: &[u8; 32]) -> bool;
}

/// A predicate over SHA-256 certificate fingerprints.
pub type FingerprintCheck = Arc<dyn Fn(&[u8; 32]) -> bool + Send + Sync>;

/// A [`PeerPolicy`] from a fixed trust store and a fingerprint predicate.
#[derive(Clone)]
pub struct StaticPeerPolicy {
    /// The approved CAs.
    pub store: Arc<TrustStore>,
    /// The registration check.
    pub registered: FingerprintCheck,
}

impl PeerPolicy for StaticPeerPolicy {
    fn trust_store(&self) -> Arc<TrustStore> {
        self.store.clone()
    }
    fn is_registered(&self, fingerprint: &[u8; 32]) -> bool {
        (self.registered)(fingerprint)
    }
}

fn to_time(now: UnixTime) -> OffsetDateTime {
    i64::try_from(now.as_secs())
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// The security-server peer check shared by both directions.
struct SsVerifier {
    policy: Arc<dyn PeerPolicy>,
    algs: WebPkiSupportedAlgorithms,
}

impl fmt::Debug for SsVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SsVerifier")
    }
}

impl SsVerifier {
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        let ee = Certificate::from_der(end_entity.as_ref())
            .map_err(|e| PeerRejected::Malformed(e.to_string()).into_rustls())?;
        let extra = intermediates
            .iter()
            .map(|c| Certificate::from_der(c.as_ref()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| PeerRejected::Malformed(e.to_string()).into_rustls())?;
        self.policy
            .trust_store()
            .validate(&ee, &extra, Purpose::Auth, to_time(now))
            .map_err(|e| PeerRejected::Chain(e).into_rustls())?;
        if !self.policy.is_registered(ee.fingerprint()) {
            return Err(PeerRejected::NotRegistered {
                fingerprint: ee.fingerprint_hex(),
            }
            .into_rustls());
        }
        Ok(())
    }

    fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }
}

impl ServerCertVerifier for SsVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity, intermediates, now)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Unreachable in practice: these configurations only enable TLS 1.3.
        Err(rustls::Error::General(
            "TLS 1.2 is not used between security servers".into(),
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

impl ClientCertVerifier for SsVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity, intermediates, now)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Unreachable in practice: these configurations only enable TLS 1.3.
        Err(rustls::Error::General(
            "TLS 1.2 is not used between security servers".into(),
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

fn ss_verifier(policy: Arc<dyn PeerPolicy>, provider: &CryptoProvider) -> Arc<SsVerifier> {
    Arc::new(SsVerifier {
        policy,
        algs: provider.signature_verification_algorithms,
    })
}

/// Server side of security-server-to-security-server TLS: TLS 1.3, client certificate required
/// and checked against `policy`.
pub fn ss_server_config(
    identity: TlsIdentity,
    policy: Arc<dyn PeerPolicy>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let verifier = ss_verifier(policy, &provider);
    let cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.chain, identity.key)?;
    Ok(Arc::new(cfg))
}

/// Client side of security-server-to-security-server TLS: TLS 1.3, presents `identity`, checks
/// the server's certificate against `policy` (no host name check; pass any [`ServerName`]).
pub fn ss_client_config(
    identity: TlsIdentity,
    policy: Arc<dyn PeerPolicy>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let verifier = ss_verifier(policy, &provider);
    let cfg = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(identity.chain, identity.key)?;
    Ok(Arc::new(cfg))
}

/// Accepts any well-formed client certificate within its validity period; the caller matches it.
struct IsClientVerifier {
    algs: WebPkiSupportedAlgorithms,
    mandatory: bool,
}

impl fmt::Debug for IsClientVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IsClientVerifier")
            .field("mandatory", &self.mandatory)
            .finish()
    }
}

impl ClientCertVerifier for IsClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let ee = Certificate::from_der(end_entity.as_ref())
            .map_err(|e| PeerRejected::Malformed(e.to_string()).into_rustls())?;
        if !ee.is_valid_at(to_time(now)) {
            return Err(PeerRejected::OutsideValidity.into_rustls());
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// Whether information systems must, may or must not present a client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsClientAuth {
    /// No client certificate is requested.
    None,
    /// A client certificate is requested but not required.
    Optional,
    /// A client certificate is required.
    Required,
}

/// Server configuration for the information-system-facing HTTPS port: TLS 1.2 and 1.3, the
/// security server's internal certificate, client certificates per `client_auth`. After the
/// handshake, get the client's certificate with [`peer_certificate`] and match it against the
/// subsystem's registered certificates.
pub fn is_server_config(
    identity: TlsIdentity,
    client_auth: IsClientAuth,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let algs = provider.signature_verification_algorithms;
    let builder = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let cfg = match client_auth {
        IsClientAuth::None => builder.with_no_client_auth(),
        IsClientAuth::Optional | IsClientAuth::Required => {
            builder.with_client_cert_verifier(Arc::new(IsClientVerifier {
                algs,
                mandatory: client_auth == IsClientAuth::Required,
            }))
        }
    }
    .with_single_cert(identity.chain, identity.key)?;
    Ok(Arc::new(cfg))
}

/// Client configuration for plain HTTPS to a server whose certificate chains to one of `roots`
/// (web PKI rules with host-name checks; no client certificate), such as downloading global
/// configuration from a central server or a mirror over HTTPS. No built-in roots: what to trust
/// always comes from configuration.
pub fn https_client_config(roots: &[Certificate]) -> Result<Arc<ClientConfig>, TlsError> {
    if roots.is_empty() {
        return Err(TlsError::NoRoots);
    }
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store.add(CertificateDer::from(r.der().to_vec()))?;
    }
    let cfg = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(store)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// The peer's end-entity certificate of an established connection, parsed.
pub fn peer_certificate(conn: &rustls::CommonState) -> Option<Certificate> {
    conn.peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| Certificate::from_der(c.as_ref()).ok())
}
