//! `message.json`: what the exchange is about, signed together with the payload.

use serde::{Deserialize, Serialize};
use trustbus_sdk::id::{ClientId, SecurityServerId, ServiceId};

/// Whether the payload is a REST or a SOAP message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadKind {
    /// X-Road REST (`/r1/`).
    Rest,
    /// X-Road SOAP 4.0.
    Soap,
}

/// Request or response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Consumer to provider.
    Request,
    /// Provider to consumer.
    Response,
}

/// The end user on whose behalf the client calls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserIdentity {
    /// The user id (for example `EE12345678901`).
    pub id: String,
    /// Whether the consumer's server verified it (an OIDC ID token) or only passed it on.
    pub verified: bool,
    /// The identity provider that vouched for it, when verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The authentication level (`acr`) of the ID token, when verified and present; the
    /// provider checks it against the service's `min_acr`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
}

/// The metadata part of a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// Always [`super::PROTOCOL`].
    pub protocol: String,
    /// REST or SOAP.
    pub kind: PayloadKind,
    /// Request or response.
    pub direction: Direction,
    /// The client's message id (`X-Road-Id` / SOAP `id`).
    pub message_id: String,
    /// The bus request id shared by request and response.
    pub request_id: String,
    /// The calling client.
    pub client: ClientId,
    /// The called service.
    pub service: ServiceId,
    /// The end user, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<UserIdentity>,
    /// Case or document reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issue: Option<String>,
    /// The represented party, `[CLASS/]CODE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub represented_party: Option<String>,
    /// The security server the client targeted, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_server: Option<SecurityServerId>,
    /// The original `Content-Type` (SOAP: the client's or the service's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// The original `SOAPAction` (SOAP requests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soap_action: Option<String>,
    /// Responses: the provider's hash of the request (REST `X-Road-Request-Hash`, SOAP
    /// `requestHash`), base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_hash: Option<String>,
    /// Responses: the service's HTTP status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
}

impl Metadata {
    /// Serialises to the exact bytes that are signed.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising a struct of strings and integers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}
