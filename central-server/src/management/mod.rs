//! Management requests: what security servers ask the central server to change.
//!
//! A request travels as an [`Envelope`]: the canonical request bytes (JSON of
//! [`CanonicalRequest`], base64), a signature over exactly those bytes by the requesting
//! member's signing key with the signing certificate, and for authentication-certificate
//! registration a proof-of-possession signature by the authentication key over the same bytes.
//! Because the signed bytes travel as they were signed, there is no canonicalisation step.
//!
//! PENDING pki: the mapping from the signing certificate to a member (certificate profiles) and
//! the certificate's chain and OCSP status are not checked yet. Today the member is taken from
//! the request and only the signature is verified against the certificate's key; see
//! [`verify_envelope`].
//!
//! Each request is stored with a state (pending, approved, rejected). Approval applies its
//! effect to the registry in the same transaction; auto-approval does so on receipt.

mod effect;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use trustbus_pki::SignatureAlgorithm;
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
}

/// Which request types are approved on receipt.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AutoApprove(pub BTreeSet<RequestType>);

fn alg(oid: &str) -> Result<SignatureAlgorithm, Error> {
    let oid = const_oid::ObjectIdentifier::new(oid)
        .map_err(|e| Error::BadRequest(format!("signature algorithm: {e}")))?;
    SignatureAlgorithm::from_oid(&oid).map_err(|e| Error::BadRequest(e.to_string()))
}

/// Parses an envelope and checks its signatures. Returns the canonical request and the hex
/// SHA-256 of its bytes.
///
/// PENDING pki: does not yet check that `signing_cert` belongs to `member` (certificate
/// profile), chains to an approved CA, or has a good OCSP status.
pub fn verify_envelope(body: &[u8]) -> Result<(CanonicalRequest, String), Error> {
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
    let cert = util::unb64("signing_cert", &env.signing_cert)?;
    let spki = util::cert_spki(&cert)?;
    trustbus_pki::signature::verify(&spki, alg(&env.signature_algorithm)?, &bytes, &sig)
        .map_err(|e| Error::InvalidSignature(format!("member signature: {e}")))?;
    if let RequestBody::AuthCertRegistration { auth_cert, .. } = &req.request {
        let auth_cert = util::unb64("auth_cert", auth_cert)?;
        let auth_spki = util::cert_spki(&auth_cert)?;
        let pop = env.auth_signature.as_deref().ok_or_else(|| {
            Error::InvalidSignature("auth_signature (proof of possession) is required".into())
        })?;
        let pop = util::unb64("auth_signature", pop)?;
        let pop_alg = alg(env
            .auth_signature_algorithm
            .as_deref()
            .unwrap_or(&env.signature_algorithm))?;
        trustbus_pki::signature::verify(&auth_spki, pop_alg, &bytes, &pop)
            .map_err(|e| Error::InvalidSignature(format!("proof of possession: {e}")))?;
    }
    Ok((req, util::sha256_hex(&bytes)))
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
    req: CanonicalRequest,
    request_sha256: String,
) -> Result<ManagementRequest, Error> {
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

/// Approves (and applies) or rejects pending request `id`.
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
