//! This server's own keys and certificates: the owner member's signing key and the server's
//! authentication key (from the PIN-protected software token), their certificates, and the
//! OCSP responses for both, fetched on a schedule and stapled into every message.

use std::path::Path;
use std::sync::RwLock;

use time::OffsetDateTime;
use trustbus_pki::chain::Purpose;
use trustbus_pki::cms::CmsSigner;
use trustbus_pki::ocsp::{self, CertStatus};
use trustbus_pki::token::SoftToken;
use trustbus_pki::{Certificate, DigestAlgorithm, KeyPair};
use trustbus_sdk::fault::{ErrorKind, Fault, Origin};
use trustbus_sdk::id::{ClientId, SecurityServerId};

use crate::gcview::GcView;
use crate::verify::fault;

/// Token key id of the authentication key.
pub const AUTH_KEY_ID: &str = "auth";
/// Token key id of the signing key.
pub const SIGN_KEY_ID: &str = "sign";
/// Certificate file (PEM, end-entity first) of the authentication key, under `<data_dir>/certs`.
pub const AUTH_CERT_FILE: &str = "auth.pem";
/// Certificate file of the signing key.
pub const SIGN_CERT_FILE: &str = "sign.pem";
/// Token key id of the internal TLS key (the HTTPS client proxy).
pub const INTERNAL_KEY_ID: &str = "internal";
/// Self-signed certificate of the internal TLS key.
pub const INTERNAL_CERT_FILE: &str = "internal.pem";

/// Why the identity cannot be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The token refused (wrong PIN, missing key, tampered file).
    #[error("token: {0}")]
    Token(String),
    /// A certificate file is missing or unreadable.
    #[error("certificate {0}: {1}")]
    Cert(String, String),
    /// The certificate does not belong to the key or this server.
    #[error("{0}")]
    Mismatch(String),
}

/// A certificate with its key and the last OCSP response fetched for it.
pub struct KeyCert {
    /// The private key.
    pub key: KeyPair,
    /// The certificate followed by intermediates.
    pub chain: Vec<Certificate>,
    ocsp: RwLock<Option<(Vec<u8>, CertStatus, OffsetDateTime)>>,
}

impl std::fmt::Debug for KeyCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCert")
            .field("subject", &self.cert().subject())
            .finish_non_exhaustive()
    }
}

impl KeyCert {
    /// A key with its certificate chain (end-entity first) and no OCSP response yet.
    pub fn new(key: KeyPair, chain: Vec<Certificate>) -> Self {
        Self {
            key,
            chain,
            ocsp: RwLock::new(None),
        }
    }

    /// A copy (the private key is copied through its PKCS#8 form), with the OCSP response.
    pub fn duplicate(&self) -> Result<Self, IdentityError> {
        let key = KeyPair::from_pkcs8_der(self.key.pkcs8_der())
            .map_err(|e| IdentityError::Token(e.to_string()))?;
        Ok(Self {
            key,
            chain: self.chain.clone(),
            ocsp: RwLock::new(self.ocsp()),
        })
    }

    /// The end-entity certificate.
    pub fn cert(&self) -> &Certificate {
        &self.chain[0]
    }

    /// The stapled OCSP response, its status and `thisUpdate`.
    pub fn ocsp(&self) -> Option<(Vec<u8>, CertStatus, OffsetDateTime)> {
        self.ocsp.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the stapled OCSP response.
    pub fn set_ocsp(&self, der: Vec<u8>, status: CertStatus, this_update: OffsetDateTime) {
        *self.ocsp.write().unwrap_or_else(|e| e.into_inner()) = Some((der, status, this_update));
    }
}

/// The server's identity.
#[derive(Debug)]
pub struct Identity {
    /// This server.
    pub server: SecurityServerId,
    /// The owner member (the signer of every message this server sends).
    pub owner: ClientId,
    /// The signing key and certificate.
    pub sign: KeyCert,
    /// The authentication key and certificate.
    pub auth: KeyCert,
    /// The internal TLS key and certificate for information systems, if set up.
    pub internal: Option<(KeyPair, Vec<Certificate>)>,
    /// Signing keys of other members whose clients this server hosts.
    pub members: Vec<(ClientId, KeyCert)>,
}

/// Token key id (and certificate file stem) of the signing key of a hosted member other than
/// the owner: `sign-` and 16 hex digits of the SHA-256 of its identifier (member codes may
/// contain characters key ids do not allow).
pub fn member_key_id(member: &ClientId) -> String {
    let h = ring::digest::digest(&ring::digest::SHA256, member.to_slash().as_bytes());
    format!("sign-{}", &trustbus_pki::cert::to_hex(h.as_ref())[..16])
}

/// The certificate files of hosted members' signing keys: `sign-*.pem`, CSRs excluded.
pub(crate) fn member_cert_files(cert_dir: &Path) -> Result<Vec<std::path::PathBuf>, IdentityError> {
    let rd = match std::fs::read_dir(cert_dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(IdentityError::Cert(
                cert_dir.display().to_string(),
                e.to_string(),
            ));
        }
    };
    let mut out: Vec<_> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with("sign-") && n.ends_with(".pem") && !n.ends_with(".csr.pem")
            })
        })
        .collect();
    out.sort();
    Ok(out)
}

pub(crate) fn load_chain(path: &Path) -> Result<Vec<Certificate>, IdentityError> {
    let certs = Certificate::read_file(path)
        .map_err(|e| IdentityError::Cert(path.display().to_string(), e.to_string()))?;
    if certs.is_empty() {
        return Err(IdentityError::Cert(
            path.display().to_string(),
            "empty".into(),
        ));
    }
    Ok(certs)
}

impl Identity {
    /// Loads the certificates from `cert_dir` (`sign.pem`, `auth.pem`, and `sign-*.pem` of
    /// hosted members) and, with `pin`, the token key each certificate is for (found by its
    /// public key, so a rotated key with a new id is picked up), and checks that they belong
    /// together and to `server`.
    pub fn load(
        server: SecurityServerId,
        token_dir: &Path,
        pin: &str,
        cert_dir: &Path,
    ) -> Result<Self, IdentityError> {
        let token = SoftToken::open(token_dir).map_err(|e| IdentityError::Token(e.to_string()))?;
        let keys = token
            .list()
            .map_err(|e| IdentityError::Token(e.to_string()))?;
        let key_for = |chain: &[Certificate], fallback: &str| {
            let id = keys
                .iter()
                .find(|k| chain.first().is_some_and(|c| k.public_key == c.spki_der()))
                .map_or(fallback, |k| k.id.as_str());
            token
                .load(id, pin)
                .map_err(|e| IdentityError::Token(e.to_string()))
        };
        let sign = load_chain(&cert_dir.join(SIGN_CERT_FILE))?;
        let auth = load_chain(&cert_dir.join(AUTH_CERT_FILE))?;
        let sign_key = key_for(&sign, SIGN_KEY_ID)?;
        let auth_key = key_for(&auth, AUTH_KEY_ID)?;
        let mut id = Self::new(server, sign_key, sign, auth_key, auth)?;
        let internal_cert = cert_dir.join(INTERNAL_CERT_FILE);
        if internal_cert.exists() {
            let key = token
                .load(INTERNAL_KEY_ID, pin)
                .map_err(|e| IdentityError::Token(e.to_string()))?;
            id.internal = Some((key, load_chain(&internal_cert)?));
        }
        for file in member_cert_files(cert_dir)? {
            let chain = load_chain(&file)?;
            let stem = file
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_owned();
            id.add_member_key(key_for(&chain, &stem)?, chain)?;
        }
        Ok(id)
    }

    /// An identity from keys and certificate chains (end-entity first).
    pub fn new(
        server: SecurityServerId,
        sign_key: KeyPair,
        sign: Vec<Certificate>,
        auth_key: KeyPair,
        auth: Vec<Certificate>,
    ) -> Result<Self, IdentityError> {
        use trustbus_pki::Signer;
        let (Some(s), Some(a)) = (sign.first(), auth.first()) else {
            return Err(IdentityError::Mismatch("empty certificate chain".into()));
        };
        if s.spki_der() != sign_key.public_key_der() {
            return Err(IdentityError::Mismatch(
                "signing certificate is not for the signing key".into(),
            ));
        }
        if a.spki_der() != auth_key.public_key_der() {
            return Err(IdentityError::Mismatch(
                "authentication certificate is not for the auth key".into(),
            ));
        }
        let member = trustbus_pki::profile::sign_cert_member(s)
            .map_err(|e| IdentityError::Mismatch(format!("signing certificate: {e}")))?;
        if &member.member != server.owner() {
            return Err(IdentityError::Mismatch(format!(
                "signing certificate names {} but the owner is {}",
                member.member.to_slash(),
                server.owner().to_slash()
            )));
        }
        let a_srv = trustbus_pki::profile::auth_cert_server(a)
            .map_err(|e| IdentityError::Mismatch(format!("authentication certificate: {e}")))?;
        if a_srv.server != server {
            return Err(IdentityError::Mismatch(format!(
                "authentication certificate names {} but this server is {}",
                a_srv.server.to_slash(),
                server.to_slash()
            )));
        }
        Ok(Self {
            owner: server.owner().clone(),
            server,
            sign: KeyCert {
                key: sign_key,
                chain: sign,
                ocsp: RwLock::new(None),
            },
            auth: KeyCert {
                key: auth_key,
                chain: auth,
                ocsp: RwLock::new(None),
            },
            internal: None,
            members: Vec::new(),
        })
    }

    /// A copy with the same keys, certificates and OCSP responses (to change one key of it
    /// while the original keeps serving).
    pub fn duplicate(&self) -> Result<Self, IdentityError> {
        let internal = match &self.internal {
            Some((k, c)) => Some((
                KeyPair::from_pkcs8_der(k.pkcs8_der())
                    .map_err(|e| IdentityError::Token(e.to_string()))?,
                c.clone(),
            )),
            None => None,
        };
        Ok(Self {
            server: self.server.clone(),
            owner: self.owner.clone(),
            sign: self.sign.duplicate()?,
            auth: self.auth.duplicate()?,
            internal,
            members: self
                .members
                .iter()
                .map(|(m, k)| Ok((m.clone(), k.duplicate()?)))
                .collect::<Result<_, IdentityError>>()?,
        })
    }

    /// Adds the signing key of another member whose clients this server hosts.
    pub fn add_member_key(
        &mut self,
        key: KeyPair,
        chain: Vec<Certificate>,
    ) -> Result<(), IdentityError> {
        use trustbus_pki::Signer;
        let cert = chain
            .first()
            .ok_or_else(|| IdentityError::Mismatch("empty certificate chain".into()))?;
        if cert.spki_der() != key.public_key_der() {
            return Err(IdentityError::Mismatch(
                "member signing certificate is not for its key".into(),
            ));
        }
        let member = trustbus_pki::profile::sign_cert_member(cert)
            .map_err(|e| IdentityError::Mismatch(format!("member signing certificate: {e}")))?
            .member;
        self.members.retain(|(m, _)| m != &member);
        self.members.push((
            member,
            KeyCert {
                key,
                chain,
                ocsp: RwLock::new(None),
            },
        ));
        Ok(())
    }

    /// The signing key and certificate of `member`, if this server holds them.
    pub fn signer(&self, member: &ClientId) -> Option<&KeyCert> {
        if member == &self.owner {
            return Some(&self.sign);
        }
        self.members
            .iter()
            .find(|(m, _)| m == member)
            .map(|(_, k)| k)
    }

    /// The signing key of `member` with a good OCSP response to staple, or the
    /// `CannotCreateSignature` fault signing would end in (checked before a body is streamed).
    pub fn ready_signer(
        &self,
        member: &ClientId,
        origin: Origin,
    ) -> Result<(&KeyCert, Vec<u8>), Fault> {
        let cannot = |cause, m: String| fault(origin, ErrorKind::CannotCreateSignature, cause, m);
        let kc = self.signer(member).ok_or_else(|| {
            cannot(
                Some(ErrorKind::KeyNotFound),
                format!(
                    "this security server holds no signing key for member {}",
                    member.to_slash()
                ),
            )
        })?;
        let (ocsp_der, status, _) = kc.ocsp().ok_or_else(|| {
            cannot(
                Some(ErrorKind::MissingValidationInfo),
                "no OCSP response for the signing certificate yet".into(),
            )
        })?;
        if status != CertStatus::Good {
            return Err(cannot(
                Some(ErrorKind::CertValidation),
                format!("the signing certificate's OCSP status is {status:?}"),
            ));
        }
        Ok((kc, ocsp_der))
    }

    /// Signs `manifest` with `member`'s signing key, embedding the chain and the signing
    /// certificate's OCSP response; returns the signature and that OCSP response. Refuses (`Server.<origin>.CannotCreateSignature`) when no
    /// good OCSP response is at hand: a signature the peer must reject is not worth sending.
    pub fn sign_manifest(
        &self,
        member: &ClientId,
        manifest: &[u8],
        origin: Origin,
        now: OffsetDateTime,
    ) -> Result<(Vec<u8>, Vec<u8>), Fault> {
        let (kc, ocsp_der) = self.ready_signer(member, origin)?;
        let cannot = |cause, m: String| fault(origin, ErrorKind::CannotCreateSignature, cause, m);
        let chain: Vec<Vec<u8>> = kc.chain[1..].iter().map(|c| c.der().to_vec()).collect();
        let signer = CmsSigner::new(&kc.key, kc.cert().der())
            .and_then(|s| s.with_chain(&chain))
            .map_err(|e| cannot(None, e.to_string()))?
            .with_ocsp_response(ocsp_der.clone());
        let sig = signer
            .sign_detached(manifest, now, None)
            .map_err(|e| cannot(None, e.to_string()))?;
        Ok((sig, ocsp_der))
    }

    /// The OCSP response(s) for the authentication certificate, for the `auth-ocsp` part.
    pub fn auth_ocsp(&self) -> Vec<Vec<u8>> {
        self.auth
            .ocsp()
            .map(|(d, _, _)| vec![d])
            .unwrap_or_default()
    }

    /// Fetches fresh OCSP responses for both certificates from the approved CA's responder.
    pub async fn refresh_ocsp(
        &self,
        view: &GcView,
        http: &crate::httpc::HttpClient,
    ) -> Result<(), String> {
        let members = self.members.iter().map(|(_, k)| (k, Purpose::Sign));
        for (kc, purpose) in [(&self.sign, Purpose::Sign), (&self.auth, Purpose::Auth)]
            .into_iter()
            .chain(members)
        {
            let cert = kc.cert();
            let extra = &kc.chain[1..];
            let issuer = view
                .issuer_of(cert, extra)
                .ok_or_else(|| format!("no approved CA issued {}", cert.subject()))?;
            let url = responder_url(view, &issuer)
                .ok_or_else(|| format!("no OCSP responder for {}", issuer.subject()))?;
            let req = ocsp::build_request(cert.der(), issuer.der(), DigestAlgorithm::Sha1)
                .map_err(|e| e.to_string())?;
            let resp = http
                .post(&url, "application/ocsp-request", req)
                .await
                .map_err(|e| format!("OCSP {url}: {e}"))?;
            let now = crate::now();
            let v =
                ocsp::verify_response(&resp, cert.der(), issuer.der(), now, view.ocsp_freshness)
                    .map_err(|e| format!("OCSP response from {url}: {e}"))?;
            tracing::debug!(?purpose, status = ?v.status, "OCSP response refreshed");
            kc.set_ocsp(resp, v.status, v.this_update);
        }
        Ok(())
    }
}

/// The OCSP responder URL of the approved CA that has `issuer` as a root or intermediate.
fn responder_url(view: &GcView, issuer: &Certificate) -> Option<String> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(issuer.der());
    view.conf
        .shared
        .approved_cas
        .iter()
        .find(|ca| ca.roots.contains(&b64) || ca.intermediates.contains(&b64))
        .and_then(|ca| ca.ocsp_responders.first())
        .map(|r| r.url.clone())
}

/// A new internal TLS key and self-signed certificate for `host_names` (the HTTPS client
/// proxy's certificate; information systems pin or trust it).
pub fn internal_tls_cert(host_names: Vec<String>) -> Result<(KeyPair, Certificate), String> {
    let ck = rcgen::generate_simple_self_signed(host_names).map_err(|e| e.to_string())?;
    let key =
        KeyPair::from_pkcs8_der(&ck.signing_key.serialize_der()).map_err(|e| e.to_string())?;
    let cert = Certificate::from_der(ck.cert.der().to_vec()).map_err(|e| e.to_string())?;
    Ok((key, cert))
}
