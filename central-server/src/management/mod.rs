//! Management requests: what security servers ask the central server to change.
//!
//! A request travels as an [`Envelope`]: the canonical request bytes (JSON of
//! [`CanonicalRequest`], base64), a signature over exactly those bytes by the requesting
//! member's signing key with the signing certificate, and for authentication-certificate
//! registration a proof-of-possession signature by the authentication key over the same bytes.
//! Because the signed bytes travel as they were signed, there is no canonicalisation step.
//!
//! The signing certificate must chain to an approved CA and name the requesting member, the
//! authentication certificate being registered must chain and name the server, OCSP responses
//! are checked where the CA publishes a responder, and the TLS client certificate must be bound
//! to the request; see [`verify_envelope`] and [`trust`].
//!
//! Each request is stored with a state (pending, approved, rejected). Approval applies its
//! effect to the registry in the same transaction; auto-approval does so on receipt.

mod effect;
#[cfg(test)]
mod tests;
pub mod trust;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use trustbus_pki::chain::Purpose;
use trustbus_pki::{Certificate, SignatureAlgorithm, Signer};
use trustbus_sdk::id::{ClientId, SecurityServerId};

use crate::Error;
use crate::registry::{Registry, RegistryState};
use crate::util;

pub use effect::{
    SECURITY_SERVER_OWNERS, apply_effect, sync_owner_group as effect_sync_owner_group,
};

/// The kinds of management request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestType {
    /// Register an authentication certificate (and create the server if new).
    AuthCertRegistration,
    /// Register a client (member or subsystem) on a server.
    ClientRegistration,
    /// Remove a client from a server.
    ClientDeletion,
    /// Change a server's address.
    AddressChange,
    /// Re-enable a disabled client.
    ClientEnable,
    /// Disable a client without unregistering it.
    ClientDisable,
    /// Put a server in maintenance mode.
    MaintenanceModeEnable,
    /// Take a server out of maintenance mode.
    MaintenanceModeDisable,
}

impl RequestType {
    /// Every type.
    pub const ALL: [Self; 8] = [
        Self::AuthCertRegistration,
        Self::ClientRegistration,
        Self::ClientDeletion,
        Self::AddressChange,
        Self::ClientEnable,
        Self::ClientDisable,
        Self::MaintenanceModeEnable,
        Self::MaintenanceModeDisable,
    ];

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AuthCertRegistration => "auth_cert_registration",
            Self::ClientRegistration => "client_registration",
            Self::ClientDeletion => "client_deletion",
            Self::AddressChange => "address_change",
            Self::ClientEnable => "client_enable",
            Self::ClientDisable => "client_disable",
            Self::MaintenanceModeEnable => "maintenance_mode_enable",
            Self::MaintenanceModeDisable => "maintenance_mode_disable",
        }
    }
}

/// What is requested.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RequestBody {
    /// Register `auth_cert` (base64 DER) for `server` at `address`.
    AuthCertRegistration {
        /// The server (created on approval if new).
        server: SecurityServerId,
        /// The server's address.
        address: String,
        /// The authentication certificate, base64 DER.
        auth_cert: String,
    },
    /// Register `client` on `server`.
    ClientRegistration {
        /// The server.
        server: SecurityServerId,
        /// The client (a subsystem is created on approval if new).
        client: ClientId,
        /// Subsystem display name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subsystem_name: Option<String>,
    },
    /// Remove `client` from `server`.
    ClientDeletion {
        /// The server.
        server: SecurityServerId,
        /// The client.
        client: ClientId,
    },
    /// Change the address of `server`.
    AddressChange {
        /// The server.
        server: SecurityServerId,
        /// New address.
        address: String,
    },
    /// Enable `client` on `server`.
    ClientEnable {
        /// The server.
        server: SecurityServerId,
        /// The client.
        client: ClientId,
    },
    /// Disable `client` on `server`.
    ClientDisable {
        /// The server.
        server: SecurityServerId,
        /// The client.
        client: ClientId,
    },
    /// Maintenance mode on.
    MaintenanceModeEnable {
        /// The server.
        server: SecurityServerId,
        /// Message for callers.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// Maintenance mode off.
    MaintenanceModeDisable {
        /// The server.
        server: SecurityServerId,
    },
}

impl RequestBody {
    /// The request's type.
    pub fn request_type(&self) -> RequestType {
        match self {
            Self::AuthCertRegistration { .. } => RequestType::AuthCertRegistration,
            Self::ClientRegistration { .. } => RequestType::ClientRegistration,
            Self::ClientDeletion { .. } => RequestType::ClientDeletion,
            Self::AddressChange { .. } => RequestType::AddressChange,
            Self::ClientEnable { .. } => RequestType::ClientEnable,
            Self::ClientDisable { .. } => RequestType::ClientDisable,
            Self::MaintenanceModeEnable { .. } => RequestType::MaintenanceModeEnable,
            Self::MaintenanceModeDisable { .. } => RequestType::MaintenanceModeDisable,
        }
    }

    /// The server the request is about.
    pub fn server(&self) -> &SecurityServerId {
        match self {
            Self::AuthCertRegistration { server, .. }
            | Self::ClientRegistration { server, .. }
            | Self::ClientDeletion { server, .. }
            | Self::AddressChange { server, .. }
            | Self::ClientEnable { server, .. }
            | Self::ClientDisable { server, .. }
            | Self::MaintenanceModeEnable { server, .. }
            | Self::MaintenanceModeDisable { server } => server,
        }
    }

    /// The client the request is about, if any.
    pub fn client(&self) -> Option<&ClientId> {
        match self {
            Self::ClientRegistration { client, .. }
            | Self::ClientDeletion { client, .. }
            | Self::ClientEnable { client, .. }
            | Self::ClientDisable { client, .. } => Some(client),
            _ => None,
        }
    }
}

/// The signed bytes: who asks, when, and what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanonicalRequest {
    /// The requesting member (whose signing key signed the request).
    pub member: ClientId,
    /// When the request was made (RFC 3339); informational, and makes repeated requests differ.
    pub created_at: String,
    /// The request.
    pub request: RequestBody,
}

/// The HTTP body of a management request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// Base64 of the canonical request bytes (JSON of [`CanonicalRequest`]).
    pub request: String,
    /// Base64 signature over the request bytes by the member's signing key.
    pub signature: String,
    /// Signature algorithm OID (`1.2.840.10045.4.3.2` = ECDSA with SHA-256).
    pub signature_algorithm: String,
    /// Base64 DER signing certificate.
    pub signing_cert: String,
    /// For auth-cert registration: base64 proof-of-possession signature by the auth key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_signature: Option<String>,
    /// Algorithm OID of `auth_signature`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_signature_algorithm: Option<String>,
    /// Base64 DER OCSP response about `signing_cert` (required when its CA lists OCSP
    /// responders).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ocsp_response: Option<String>,
    /// Base64 DER OCSP response about the authentication certificate being registered
    /// (required when its CA lists OCSP responders).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_ocsp_response: Option<String>,
}

/// A key that signs an envelope, with its certificate and (optionally) a stapled OCSP
/// response about that certificate.
#[derive(Clone, Copy)]
pub struct EnvelopeKey<'a> {
    /// The key.
    pub signer: &'a dyn Signer,
    /// Its certificate (DER).
    pub cert_der: &'a [u8],
    /// A DER OCSP response about the certificate, if the requester holds one.
    pub ocsp_response: Option<&'a [u8]>,
}

impl Envelope {
    /// Builds the envelope a security server sends: serialises `request` once, signs those
    /// bytes with the member's signing key and, for authentication-certificate registration,
    /// with the authentication key (`auth`, the proof of possession).
    pub fn sign(
        request: &CanonicalRequest,
        member: EnvelopeKey<'_>,
        auth: Option<EnvelopeKey<'_>>,
    ) -> Result<Self, Error> {
        let bytes = serde_json::to_vec(request)?;
        let sign = |k: &EnvelopeKey<'_>| {
            k.signer
                .sign(&bytes)
                .map(|s| util::b64(&s))
                .map_err(|e| Error::Crypto(e.to_string()))
        };
        Ok(Self {
            request: util::b64(&bytes),
            signature: sign(&member)?,
            signature_algorithm: member.signer.algorithm().oid().to_string(),
            signing_cert: util::b64(member.cert_der),
            auth_signature: auth.as_ref().map(sign).transpose()?,
            auth_signature_algorithm: auth.map(|a| a.signer.algorithm().oid().to_string()),
            ocsp_response: member.ocsp_response.map(util::b64),
            auth_ocsp_response: auth.and_then(|a| a.ocsp_response).map(util::b64),
        })
    }
}

/// Request states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    /// Waiting for an officer.
    Pending,
    /// Approved and applied.
    Approved,
    /// Rejected.
    Rejected,
}

/// A stored management request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagementRequest {
    /// Sequential id.
    pub id: u64,
    /// Type.
    #[serde(rename = "type")]
    pub request_type: RequestType,
    /// Requesting member.
    pub member: ClientId,
    /// The request.
    pub request: RequestBody,
    /// State.
    pub state: RequestState,
    /// When received (RFC 3339).
    pub received_at: String,
    /// When approved or rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<String>,
    /// Who decided (`auto-approve` or an API key id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// SHA-256 (hex) of the signed bytes: the same signed request is accepted once.
    pub request_sha256: String,
    /// SHA-256 (hex) of the signing certificate that signed the request.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub signing_cert_sha256: String,
    /// The signing certificate (base64 DER), re-validated when an officer approves.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub signing_cert: String,
    /// SHA-256 (hex) of the TLS client certificate the request arrived with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert_sha256: Option<String>,
}

/// A request whose envelope passed [`verify_envelope`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedRequest {
    /// The request.
    pub request: CanonicalRequest,
    /// SHA-256 (hex) of the signed bytes.
    pub request_sha256: String,
    /// SHA-256 (hex) of the signing certificate.
    pub signing_cert_sha256: String,
    /// The signing certificate (DER).
    pub signing_cert: Vec<u8>,
    /// SHA-256 (hex) of the TLS client certificate, when the request came over TLS.
    pub tls_cert_sha256: Option<String>,
}

/// Which request types are approved on receipt.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AutoApprove(pub BTreeSet<RequestType>);

fn alg(oid: &str) -> Result<SignatureAlgorithm, Error> {
    let oid = const_oid::ObjectIdentifier::new(oid)
        .map_err(|e| Error::BadRequest(format!("signature algorithm: {e}")))?;
    SignatureAlgorithm::from_oid(&oid).map_err(|e| Error::BadRequest(e.to_string()))
}

/// What the verification of an envelope needs besides its bytes.
#[derive(Debug, Clone, Copy)]
pub struct VerifyContext<'a> {
    /// The registry state: approved CAs, OCSP freshness, registered servers.
    pub state: &'a RegistryState,
    /// The time at which certificates and OCSP responses are judged.
    pub now: OffsetDateTime,
    /// The certificate the client authenticated with in TLS, if the request came over TLS.
    /// When present it must be the authentication certificate being registered or one already
    /// registered for the server the request is about (`tls_certificate_mismatch`).
    pub tls_peer: Option<&'a Certificate>,
}

/// Parses an envelope and checks everything that does not depend on the request's effect:
/// the member signature, the signing certificate's chain, its mapping to the requesting member
/// and its OCSP status, and for authentication-certificate registration the proof of
/// possession and the authentication certificate's chain, mapping and OCSP status; finally the
/// TLS client certificate binding. Returns the canonical request with the fingerprints that
/// go into the stored request. The rules and their error codes are in [`trust`].
pub fn verify_envelope(body: &[u8], ctx: &VerifyContext<'_>) -> Result<VerifiedRequest, Error> {
    let env: Envelope =
        serde_json::from_slice(body).map_err(|e| Error::MalformedJson(e.to_string()))?;
    let bytes = util::unb64("request", &env.request)?;
    let req: CanonicalRequest = serde_json::from_slice(&bytes)
        .map_err(|e| Error::MalformedJson(format!("request: {e}")))?;
    if req.member.subsystem_code().is_some() {
        return Err(Error::BadRequest(
            "the requesting member must be a member, not a subsystem".into(),
        ));
    }
    let sig = util::unb64("signature", &env.signature)?;
    let cert = trust::parse_cert(
        "signing_cert",
        util::unb64("signing_cert", &env.signing_cert)?,
    )?;
    let ocsp_response = env
        .ocsp_response
        .as_deref()
        .map(|r| util::unb64("ocsp_response", r))
        .transpose()?;
    let auth_ocsp_response = env
        .auth_ocsp_response
        .as_deref()
        .map(|r| util::unb64("auth_ocsp_response", r))
        .transpose()?;
    trustbus_pki::signature::verify(
        cert.spki_der(),
        alg(&env.signature_algorithm)?,
        &bytes,
        &sig,
    )
    .map_err(|e| Error::InvalidSignature(format!("member signature: {e}")))?;

    let store = trust::trust_store(ctx.state)?;
    let chain = trust::validate_chain(&store, "signing_cert", &cert, Purpose::Sign, ctx.now)?;
    let named = trustbus_pki::profile::sign_cert_member(&cert).map_err(|e| {
        Error::CertificateMemberMismatch(format!("signing certificate does not name a member: {e}"))
    })?;
    if named.member != req.member {
        return Err(Error::CertificateMemberMismatch(format!(
            "the signing certificate belongs to {}, the request is made by {}",
            named.member.to_slash(),
            req.member.to_slash()
        )));
    }
    trust::check_ocsp(
        ctx.state,
        "signing_cert",
        &chain,
        ocsp_response.as_deref(),
        ctx.now,
    )?;

    let mut auth_cert_der = None;
    if let RequestBody::AuthCertRegistration {
        auth_cert, server, ..
    } = &req.request
    {
        let auth = trust::parse_cert("auth_cert", util::unb64("auth_cert", auth_cert)?)?;
        let pop = env.auth_signature.as_deref().ok_or_else(|| {
            Error::InvalidSignature("auth_signature (proof of possession) is required".into())
        })?;
        let pop = util::unb64("auth_signature", pop)?;
        let pop_alg = alg(env
            .auth_signature_algorithm
            .as_deref()
            .unwrap_or(&env.signature_algorithm))?;
        trustbus_pki::signature::verify(auth.spki_der(), pop_alg, &bytes, &pop)
            .map_err(|e| Error::InvalidSignature(format!("proof of possession: {e}")))?;
        let auth_chain = trust::validate_chain(&store, "auth_cert", &auth, Purpose::Auth, ctx.now)?;
        let named = trustbus_pki::profile::auth_cert_server(&auth).map_err(|e| {
            Error::CertificateMemberMismatch(format!(
                "authentication certificate does not name a security server: {e}"
            ))
        })?;
        if &named.server != server {
            return Err(Error::CertificateMemberMismatch(format!(
                "the authentication certificate belongs to {}, the request registers {}",
                named.server.to_slash(),
                server.to_slash()
            )));
        }
        trust::check_ocsp(
            ctx.state,
            "auth_cert",
            &auth_chain,
            auth_ocsp_response.as_deref(),
            ctx.now,
        )?;
        auth_cert_der = Some(auth);
    }

    if let Some(peer) = ctx.tls_peer {
        let fp = peer.fingerprint_hex();
        let is_new = auth_cert_der.as_ref().is_some_and(|a| a == peer);
        let server_key = req.request.server().to_slash();
        let registered = ctx
            .state
            .servers
            .get(&server_key)
            .is_some_and(|s| s.auth_cert_sha256.contains(&fp));
        if !is_new && !registered {
            return Err(Error::TlsCertificateMismatch(format!(
                "the TLS client certificate {fp} is neither the authentication certificate \
                 being registered nor one registered for {server_key}"
            )));
        }
    }
    Ok(VerifiedRequest {
        request: req,
        request_sha256: util::sha256_hex(&bytes),
        signing_cert_sha256: cert.fingerprint_hex(),
        signing_cert: cert.der().to_vec(),
        tls_cert_sha256: ctx.tls_peer.map(Certificate::fingerprint_hex),
    })
}

fn same_target(a: &RequestBody, b: &RequestBody) -> bool {
    a.request_type() == b.request_type()
        && a.server() == b.server()
        && a.client() == b.client()
        && match (a, b) {
            (
                RequestBody::AuthCertRegistration { auth_cert: x, .. },
                RequestBody::AuthCertRegistration { auth_cert: y, .. },
            ) => x == y,
            _ => true,
        }
}

/// Validates a request against the registry without changing it.
pub fn validate(
    state: &RegistryState,
    instance: &str,
    req: &CanonicalRequest,
) -> Result<(), Error> {
    let server = req.request.server();
    if req.member.instance() != instance || server.owner().instance() != instance {
        return Err(Error::BadRequest(format!(
            "identifiers must be in instance {instance}"
        )));
    }
    if state.member(&req.member).is_none() {
        return Err(Error::UnknownMember(req.member.to_slash()));
    }
    if state.member(server.owner()).is_none() {
        return Err(Error::UnknownMember(server.owner().to_slash()));
    }
    let is_owner = server.owner() == &req.member;
    let client_member = req.request.client().map(ClientId::owner);
    if !is_owner && client_member.as_ref() != Some(&req.member) {
        return Err(Error::NotAllowed(format!(
            "{} is neither the owner of {} nor the client's member",
            req.member.to_slash(),
            server.to_slash()
        )));
    }
    if let Some(c) = req.request.client() {
        if c.instance() != instance {
            return Err(Error::BadRequest(format!(
                "identifiers must be in instance {instance}"
            )));
        }
        if state.member(c).is_none() {
            return Err(Error::UnknownMember(c.owner().to_slash()));
        }
    }
    let pending_same = state
        .requests
        .values()
        .any(|r| r.state == RequestState::Pending && same_target(&r.request, &req.request));
    if pending_same {
        return Err(Error::DuplicateRegistration(
            "an identical request is already pending".into(),
        ));
    }
    // Check that the effect applies cleanly (duplicates, unknown server, …) on a scratch copy.
    let mut scratch = state.clone();
    apply_effect(&mut scratch, &req.request)
}

/// Receives a verified request: stores it pending, or applies it at once if its type is
/// auto-approved. Everything happens in one registry transaction.
pub fn submit(
    registry: &Registry,
    policy: &AutoApprove,
    verified: VerifiedRequest,
) -> Result<ManagementRequest, Error> {
    let VerifiedRequest {
        request: req,
        request_sha256,
        signing_cert_sha256,
        signing_cert,
        tls_cert_sha256,
    } = verified;
    let signing_cert = util::b64(&signing_cert);
    let instance = registry.instance().to_owned();
    let (stored, _) = registry.mutate(|state| {
        if state
            .requests
            .values()
            .any(|r| r.request_sha256 == request_sha256)
        {
            return Err(Error::DuplicateRegistration(
                "this signed request was already received".into(),
            ));
        }
        validate(state, &instance, &req)?;
        let id = state.requests.values().map(|r| r.id).max().unwrap_or(0) + 1;
        let now = util::rfc3339(util::now());
        let request_type = req.request.request_type();
        let mut r = ManagementRequest {
            id,
            request_type,
            member: req.member.clone(),
            request: req.request.clone(),
            state: RequestState::Pending,
            received_at: now.clone(),
            decided_at: None,
            decided_by: None,
            request_sha256: request_sha256.clone(),
            signing_cert_sha256: signing_cert_sha256.clone(),
            signing_cert: signing_cert.clone(),
            tls_cert_sha256: tls_cert_sha256.clone(),
        };
        if policy.0.contains(&request_type) {
            apply_effect(state, &r.request)?;
            r.state = RequestState::Approved;
            r.decided_at = Some(now);
            r.decided_by = Some("auto-approve".into());
        }
        state.requests.insert(request_key(id), r.clone());
        Ok(r)
    })?;
    Ok(stored)
}

/// The registry key of request `id`.
pub fn request_key(id: u64) -> String {
    format!("{id:020}")
}

/// Checks, when an officer approves, that the request's certificates are still trusted: the
/// signing certificate (and for auth-cert registration the authentication certificate) must
/// still chain to an approved CA and be valid at `now`. OCSP is not re-checked (the central
/// server holds no fresh response); it was checked on receipt.
pub fn recheck_on_approval(
    state: &RegistryState,
    r: &ManagementRequest,
    now: OffsetDateTime,
) -> Result<(), Error> {
    let store = trust::trust_store(state)?;
    if !r.signing_cert.is_empty() {
        let cert = trust::parse_cert(
            "signing_cert",
            util::unb64("signing_cert", &r.signing_cert)?,
        )?;
        trust::validate_chain(
            &store,
            "signing certificate, on approval",
            &cert,
            Purpose::Sign,
            now,
        )?;
    }
    if let RequestBody::AuthCertRegistration { auth_cert, .. } = &r.request {
        let cert = trust::parse_cert("auth_cert", util::unb64("auth_cert", auth_cert)?)?;
        trust::validate_chain(
            &store,
            "authentication certificate, on approval",
            &cert,
            Purpose::Auth,
            now,
        )?;
    }
    Ok(())
}

/// Approves (and applies) or rejects pending request `id`. Approval first re-checks the
/// certificates ([`recheck_on_approval`]); a request that fails stays pending (reject it).
pub fn decide(
    registry: &Registry,
    id: u64,
    approve: bool,
    officer: &str,
) -> Result<ManagementRequest, Error> {
    let (r, _) = registry.mutate(|state| {
        let mut r = state
            .requests
            .get(&request_key(id))
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("management request {id}")))?;
        if r.state != RequestState::Pending {
            return Err(Error::InvalidState(format!(
                "request {id} is {:?}, not pending",
                r.state
            )));
        }
        if approve {
            recheck_on_approval(state, &r, OffsetDateTime::now_utc())?;
            apply_effect(state, &r.request)?;
            r.state = RequestState::Approved;
        } else {
            r.state = RequestState::Rejected;
        }
        r.decided_at = Some(util::rfc3339(util::now()));
        r.decided_by = Some(officer.to_owned());
        state.requests.insert(request_key(id), r.clone());
        Ok(r)
    })?;
    Ok(r)
}
