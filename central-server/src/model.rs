//! Registry records and the published global configuration parameters.
//!
//! The same record types are stored in the registry and published in `shared-params.json`, so
//! what an officer sees through the API is exactly what security servers receive. Lists are
//! kept sorted and maps are `BTreeMap`s, and struct fields serialise in declaration order, so
//! the JSON is deterministic and its hash reproducible.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use trustbus_sdk::id::{ClientId, SecurityServerId};

/// Version of the shared/private parameter JSON format.
pub const FORMAT_VERSION: u32 = 1;

/// A member class (`GOV`, `COM`, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberClass {
    /// The class code.
    pub code: String,
    /// Human-readable description.
    #[serde(default)]
    pub description: String,
}

/// A subsystem of a member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subsystem {
    /// The subsystem's full identifier.
    pub id: ClientId,
    /// Display name, if registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A member (an organisation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// The member identifier (`INSTANCE/CLASS/CODE`).
    pub id: ClientId,
    /// The organisation's name.
    pub name: String,
    /// Subsystems, sorted by identifier.
    #[serde(default)]
    pub subsystems: Vec<Subsystem>,
}

/// Maintenance mode of a security server.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Maintenance {
    /// Whether the server is in maintenance mode.
    pub enabled: bool,
    /// Message shown to callers, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A client (member or subsystem) registered on a security server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostedClient {
    /// The client.
    pub id: ClientId,
    /// `false` after a client-disable request: registered but not allowed to exchange.
    pub enabled: bool,
}

/// A security server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityServer {
    /// The server identifier (`INSTANCE/CLASS/MEMBER/CODE`).
    pub id: SecurityServerId,
    /// The owner member.
    pub owner: ClientId,
    /// The server code.
    pub server_code: String,
    /// Host name or address other servers connect to.
    #[serde(default)]
    pub address: String,
    /// SHA-256 fingerprints (lower-case hex) of the registered authentication certificates.
    #[serde(default)]
    pub auth_cert_sha256: Vec<String>,
    /// Hosted clients, sorted by identifier.
    #[serde(default)]
    pub clients: Vec<HostedClient>,
    /// Maintenance mode.
    #[serde(default)]
    pub maintenance: Maintenance,
}

/// A global group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalGroup {
    /// The group code (the group id is `INSTANCE/code`).
    pub code: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Members of the group, sorted.
    #[serde(default)]
    pub members: Vec<ClientId>,
}

/// An OCSP responder of an approved CA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OcspResponder {
    /// Responder URL.
    pub url: String,
    /// Responder certificate (base64 DER), when it is not the CA itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<String>,
}

/// An approved certification authority.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovedCa {
    /// Unique name.
    pub name: String,
    /// Issues authentication certificates only (no signing certificates).
    #[serde(default)]
    pub authentication_only: bool,
    /// Root certificates (base64 DER).
    pub roots: Vec<String>,
    /// Intermediate certificates (base64 DER).
    #[serde(default)]
    pub intermediates: Vec<String>,
    /// OCSP responders.
    #[serde(default)]
    pub ocsp_responders: Vec<OcspResponder>,
    /// Name of the certificate profile mapping certificates to members/servers.
    #[serde(default = "default_profile")]
    pub certificate_profile: String,
}

fn default_profile() -> String {
    "trustbus-default".into()
}

/// An approved time-stamping authority.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovedTsa {
    /// Unique name.
    pub name: String,
    /// RFC 3161 endpoint.
    pub url: String,
    /// TSA certificate (base64 DER).
    pub cert: String,
}

/// A trusted OpenID Connect issuer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcIssuer {
    /// Issuer URL (`iss`).
    pub issuer: String,
    /// Accepted audiences (`aud`).
    pub audiences: Vec<String>,
    /// Where to fetch the JWKS; exactly one of `jwks_url` and `jwks` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    /// Pinned JWKS document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<serde_json::Value>,
    /// Minimum `acr` per use (for example `{"default": "substantial"}`). Security servers
    /// enforce the `default` entry on every ID token from this issuer.
    #[serde(default)]
    pub min_acr: BTreeMap<String, String>,
    /// The issuer's `acr` values, weakest first (for example `["low", "substantial", "high"]`):
    /// a required level is met by the same or a later one. Empty: `acr` must match exactly.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acr_levels: Vec<String>,
}

impl OidcIssuer {
    /// Checks the record: an http(s) issuer, audiences, exactly one key source (a pinned set
    /// must be a JWK set), distinct `acr_levels` that name every `min_acr` value.
    pub fn validate(&self) -> Result<(), crate::Error> {
        let bad = |m: String| {
            Err(crate::Error::BadRequest(format!(
                "OIDC issuer {:?}: {m}",
                self.issuer
            )))
        };
        let is_url = |u: &str| u.starts_with("https://") || u.starts_with("http://");
        if !is_url(&self.issuer) {
            return bad("issuer must be an http(s) URL".into());
        }
        if self.audiences.is_empty() || self.audiences.iter().any(String::is_empty) {
            return bad("an issuer needs at least one non-empty audience".into());
        }
        match (&self.jwks_url, &self.jwks) {
            (Some(u), None) if is_url(u) => {}
            (Some(_), None) => return bad("jwks_url must be an http(s) URL".into()),
            (None, Some(set)) => {
                let bytes = serde_json::to_vec(set).unwrap_or_default();
                if let Err(e) = trustbus_sdk::identity::JwkSet::parse(&bytes) {
                    return bad(format!("jwks: {e}"));
                }
            }
            _ => return bad("exactly one of jwks_url and jwks must be set".into()),
        }
        for (i, l) in self.acr_levels.iter().enumerate() {
            if l.is_empty() || self.acr_levels[..i].contains(l) {
                return bad(format!("acr_levels: empty or repeated value {l:?}"));
            }
        }
        if !self.acr_levels.is_empty() {
            for (usage, acr) in &self.min_acr {
                if !self.acr_levels.contains(acr) {
                    return bad(format!(
                        "min_acr {usage} = {acr:?} is not one of acr_levels"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Instance-wide settings published to every security server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Maximum age of an OCSP response, seconds.
    #[serde(default = "d_ocsp")]
    pub ocsp_freshness_seconds: u64,
    /// Batch timestamping interval, seconds (must be below the OCSP freshness).
    #[serde(default = "d_ts")]
    pub timestamping_interval_seconds: u64,
    /// How long a published configuration is valid, seconds.
    #[serde(default = "d_validity")]
    pub configuration_validity_seconds: u64,
}

fn d_ocsp() -> u64 {
    3600
}
fn d_ts() -> u64 {
    60
}
fn d_validity() -> u64 {
    600
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            ocsp_freshness_seconds: d_ocsp(),
            timestamping_interval_seconds: d_ts(),
            configuration_validity_seconds: d_validity(),
        }
    }
}

impl Settings {
    /// Checks the settings' invariants.
    pub fn validate(&self) -> Result<(), crate::Error> {
        if self.configuration_validity_seconds < 2 {
            return Err(crate::Error::BadRequest(
                "configuration_validity_seconds must be at least 2".into(),
            ));
        }
        if self.ocsp_freshness_seconds == 0 || self.timestamping_interval_seconds == 0 {
            return Err(crate::Error::BadRequest(
                "intervals must be positive".into(),
            ));
        }
        if self.timestamping_interval_seconds >= self.ocsp_freshness_seconds {
            return Err(crate::Error::BadRequest(
                "timestamping_interval_seconds must be below ocsp_freshness_seconds".into(),
            ));
        }
        Ok(())
    }
}

/// `shared-params.json`: what every security server of the instance needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedParams {
    /// Format version ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// Instance identifier.
    pub instance: String,
    /// Member classes.
    pub member_classes: Vec<MemberClass>,
    /// Members with their subsystems.
    pub members: Vec<Member>,
    /// Security servers.
    pub security_servers: Vec<SecurityServer>,
    /// Global groups.
    pub global_groups: Vec<GlobalGroup>,
    /// Approved CAs.
    pub approved_cas: Vec<ApprovedCa>,
    /// Approved TSAs.
    pub approved_tsas: Vec<ApprovedTsa>,
    /// Trusted OIDC issuers.
    pub trusted_oidc_issuers: Vec<OidcIssuer>,
    /// Settings.
    pub settings: Settings,
    /// Configuration-signing certificates (base64 DER): the current one first, then the next
    /// one if a rotation is under way. A configuration client trusts these for the next download.
    pub configuration_signing_certs: Vec<String>,
}

/// The management service endpoint as published in private parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagementService {
    /// Base URL of the management service.
    pub address: String,
    /// The service's TLS certificate (base64 DER): pin its SHA-256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<String>,
    /// The one-off CA certificate (base64 DER) that issued `tls_cert`: the only trust anchor a
    /// security server needs for the management listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ca_cert: Option<String>,
}

/// `private-params.json`: what only the instance's own security servers need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrivateParams {
    /// Format version.
    pub format_version: u32,
    /// Instance identifier.
    pub instance: String,
    /// The management service.
    pub management_service: ManagementService,
    /// Request types that the central server approves automatically.
    pub auto_approved_requests: Vec<String>,
}
