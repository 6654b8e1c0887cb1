//! X-Road message protocol 4.0: SOAP 1.1 envelopes between information systems and security
//! servers.
//!
//! The parser is a single pass over the bytes as received. It keeps those bytes (the request hash
//! and the evidence are over them, not over a re-serialised form) together with the byte ranges of
//! every header element and of the body, so that a response can echo the request's header
//! elements exactly and the body is never copied. `docs/protocol-soap.md` is the normative
//! description of what is accepted and emitted and which fault code each rejection carries.

use std::ops::Range;

use crate::id::{ClientId, RepresentedParty, SecurityServerId, ServiceId};

mod build;
mod fault;
mod parse;
#[cfg(test)]
mod tests;

pub use build::{
    HashAlgorithm, SoapRequestBuilder, build_response, build_response_from, check_response_headers,
    request_hash, verify_request_hash,
};
pub use fault::{SoapFault, parse_fault, render_fault};
pub use parse::{parse_request, parse_response};

/// SOAP 1.1 envelope namespace.
pub const SOAP_ENV_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// SOAP 1.2 envelope namespace, recognised only to reject it with a clear message.
pub const SOAP12_ENV_NS: &str = "http://www.w3.org/2003/05/soap-envelope";
/// Namespace of the X-Road header fields.
pub const XROAD_NS: &str = "http://x-road.eu/xsd/xroad.xsd";
/// Namespace of the third-party representation extension.
pub const REPRESENTATION_NS: &str = "http://x-road.eu/xsd/representation.xsd";
/// The only protocol version this implementation speaks.
pub const PROTOCOL_VERSION: &str = "4.0";

/// Resource limits applied while parsing untrusted messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest SOAP envelope (or SOAP part of a multipart message), in bytes.
    pub max_envelope_size: usize,
    /// Deepest element nesting in an envelope, counting the envelope itself as 1.
    pub max_depth: usize,
    /// Most child elements of the SOAP header.
    pub max_header_elements: usize,
    /// Largest multipart message, all parts together, in bytes.
    pub max_multipart_size: usize,
    /// Most parts in a multipart message, SOAP part included.
    pub max_parts: usize,
    /// Largest header block of one MIME part, in bytes.
    pub max_part_header_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_envelope_size: 16 << 20,
            max_depth: 64,
            max_header_elements: 64,
            max_multipart_size: 512 << 20,
            max_parts: 256,
            max_part_header_size: 16 << 10,
        }
    }
}

/// The header elements this implementation understands, plus a catch-all for extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HeaderField {
    /// `xrd:client`
    Client,
    /// `xrd:service`
    Service,
    /// `xrd:id`
    Id,
    /// `xrd:userId`
    UserId,
    /// `xrd:issue`
    Issue,
    /// `xrd:protocolVersion`
    ProtocolVersion,
    /// `xrd:requestHash`
    RequestHash,
    /// `xrd:securityServer` (security server targeting extension)
    SecurityServer,
    /// `repr:representedParty` (third-party representation extension)
    RepresentedParty,
    /// Any other element (for example `ext:securityToken`), carried through unchanged.
    Extension,
}

impl HeaderField {
    /// The element's local name, `None` for extensions.
    pub const fn local_name(self) -> Option<&'static str> {
        Some(match self {
            Self::Client => "client",
            Self::Service => "service",
            Self::Id => "id",
            Self::UserId => "userId",
            Self::Issue => "issue",
            Self::ProtocolVersion => "protocolVersion",
            Self::RequestHash => "requestHash",
            Self::SecurityServer => "securityServer",
            Self::RepresentedParty => "representedParty",
            Self::Extension => return None,
        })
    }
}

/// One child element of the SOAP header, in document order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderElement {
    /// What the element is.
    pub field: HeaderField,
    /// Its namespace URI (empty for none).
    pub namespace: String,
    /// Its local name.
    pub local_name: String,
    /// Where it is in [`SoapMessage::bytes`], start tag to end tag inclusive.
    pub range: Range<usize>,
}

/// `requestHash` with its `algorithmId`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHash {
    /// The XML-DSig algorithm URI, for example `http://www.w3.org/2001/04/xmlenc#sha512`.
    pub algorithm_id: String,
    /// Base64 of the digest.
    pub value: String,
}

/// The X-Road header fields of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoapHeader {
    /// The consumer member or subsystem.
    pub client: ClientId,
    /// The service called.
    pub service: ServiceId,
    /// The message id chosen by the client.
    pub id: String,
    /// The end user, if given.
    pub user_id: Option<String>,
    /// The case or document reference, if given.
    pub issue: Option<String>,
    /// Always `4.0` in an accepted message.
    pub protocol_version: String,
    /// Set by the provider's security server on responses.
    pub request_hash: Option<RequestHash>,
    /// The targeted security server, if given.
    pub security_server: Option<SecurityServerId>,
    /// The party the client represents, if given.
    pub represented_party: Option<RepresentedParty>,
}

/// The first element inside the SOAP body (the document/literal wrapper).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyElement {
    /// Its namespace URI (empty for none).
    pub namespace: String,
    /// Its local name; in a request it equals the service code.
    pub local_name: String,
    /// Where it is in [`SoapMessage::bytes`].
    pub range: Range<usize>,
}

/// A parsed and validated X-Road SOAP message, holding the bytes it was parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoapMessage {
    bytes: Vec<u8>,
    header: SoapHeader,
    elements: Vec<HeaderElement>,
    /// Offset of the `</…:Header>` end tag, where new header elements go.
    header_close: usize,
    /// Between the body's start and end tags.
    body_content: Range<usize>,
    body_element: Option<BodyElement>,
}

/// A request is a message with a body wrapper named after the service code.
pub type SoapRequest = SoapMessage;

/// What a service or security server answered: a message, or a SOAP fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SoapResponse {
    /// A normal response with X-Road headers.
    Message(Box<SoapMessage>),
    /// A SOAP fault; `bytes` are the envelope as received, to pass on unchanged.
    Fault {
        /// The fault's fields.
        fault: SoapFault,
        /// The envelope as received.
        bytes: Vec<u8>,
    },
}

impl SoapMessage {
    /// The envelope exactly as received.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Gives the envelope bytes back without copying.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// The X-Road header fields.
    pub fn header(&self) -> &SoapHeader {
        &self.header
    }

    /// Every header element in document order, extensions included.
    pub fn header_elements(&self) -> &[HeaderElement] {
        &self.elements
    }

    /// The raw bytes of one header element.
    pub fn raw(&self, element: &HeaderElement) -> &[u8] {
        self.bytes.get(element.range.clone()).unwrap_or_default()
    }

    /// The wrapper element of the body, if the body has one.
    pub fn body_element(&self) -> Option<&BodyElement> {
        self.body_element.as_ref()
    }

    /// Everything between the body's start and end tags, as received.
    pub fn body_content(&self) -> &[u8] {
        self.bytes
            .get(self.body_content.clone())
            .unwrap_or_default()
    }
}
