//! Building envelopes: client requests, provider responses with `requestHash`, and the checks a
//! consumer's security server makes on a response.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::{HeaderField, PROTOCOL_VERSION, REPRESENTATION_NS, SoapMessage, XROAD_NS};
use crate::fault::{ErrorKind, Fault, Origin};
use crate::id::{ClientId, IDENTIFIERS_NS, RepresentedParty, SecurityServerId, ServiceId, XRoadId};
use crate::xml::escape_into;

/// Digest algorithms allowed for `requestHash`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HashAlgorithm {
    /// SHA-256.
    Sha256,
    /// SHA-512, X-Road's default.
    #[default]
    Sha512,
}

impl HashAlgorithm {
    /// The XML-DSig URI written in `algorithmId`.
    pub const fn uri(self) -> &'static str {
        match self {
            Self::Sha256 => "http://www.w3.org/2001/04/xmlenc#sha256",
            Self::Sha512 => "http://www.w3.org/2001/04/xmlenc#sha512",
        }
    }

    /// The algorithm named by an `algorithmId` URI.
    pub fn from_uri(uri: &str) -> Option<Self> {
        [Self::Sha256, Self::Sha512]
            .into_iter()
            .find(|a| a.uri() == uri.trim())
    }

    fn ring(self) -> &'static ring::digest::Algorithm {
        match self {
            Self::Sha256 => &ring::digest::SHA256,
            Self::Sha512 => &ring::digest::SHA512,
        }
    }
}

/// Base64 of the digest of `soap_bytes`: the whole request body, or its SOAP part when the
/// request was multipart.
pub fn request_hash(soap_bytes: &[u8], alg: HashAlgorithm) -> String {
    STANDARD.encode(ring::digest::digest(alg.ring(), soap_bytes))
}

fn request_hash_element(hash: &str, alg: HashAlgorithm) -> String {
    // The element declares its own prefix, so it is correct whatever the envelope binds.
    format!(
        r#"<xrd:requestHash xmlns:xrd="{XROAD_NS}" algorithmId="{}">{hash}</xrd:requestHash>"#,
        alg.uri()
    )
}

/// Splices `hash_el` into `msg`'s header (replacing an existing `requestHash`, else before the
/// header's end tag) and optionally replaces the body content.
fn splice(msg: &SoapMessage, hash_el: &str, body: Option<&[u8]>) -> Vec<u8> {
    let bytes = msg.bytes();
    let existing = msg
        .header_elements()
        .iter()
        .find(|e| e.field == HeaderField::RequestHash)
        .map(|e| e.range.clone());
    let cut = existing.unwrap_or(msg.header_close..msg.header_close);
    let (body_at, body_new) = match body {
        Some(b) => (msg.body_content.clone(), b),
        None => (bytes.len()..bytes.len(), &[][..]),
    };
    let mut out = Vec::with_capacity(bytes.len() + hash_el.len() + body_new.len());
    out.extend_from_slice(&bytes[..cut.start]);
    out.extend_from_slice(hash_el.as_bytes());
    out.extend_from_slice(&bytes[cut.end..body_at.start]);
    out.extend_from_slice(body_new);
    out.extend_from_slice(&bytes[body_at.end..]);
    out
}

/// The provider's response with `requestHash` set (or overwritten) to the hash of the request's
/// SOAP bytes. This is what the provider's security server sends back.
pub fn build_response_from(
    request: &SoapMessage,
    provider_response: &SoapMessage,
    alg: HashAlgorithm,
) -> Vec<u8> {
    let hash = request_hash(request.bytes(), alg);
    splice(provider_response, &request_hash_element(&hash, alg), None)
}

/// A response that echoes the request's envelope and header elements byte for byte, adds
/// `requestHash`, and carries `body_xml` as the body content. `body_xml` must declare the
/// namespaces it uses itself.
pub fn build_response(request: &SoapMessage, body_xml: &str, alg: HashAlgorithm) -> Vec<u8> {
    let hash = request_hash(request.bytes(), alg);
    splice(
        request,
        &request_hash_element(&hash, alg),
        Some(body_xml.as_bytes()),
    )
}

/// Checks that `response` echoes the X-Road header fields of `request` in the same order with
/// the same values (`requestHash` aside; extension elements are not compared). `origin` is the
/// component making the check, usually [`Origin::ClientProxy`].
pub fn check_response_headers(
    request: &SoapMessage,
    response: &SoapMessage,
    origin: Origin,
) -> Result<(), Fault> {
    let order = |m: &SoapMessage| -> Vec<HeaderField> {
        m.header_elements()
            .iter()
            .map(|e| e.field)
            .filter(|f| !matches!(f, HeaderField::RequestHash | HeaderField::Extension))
            .collect()
    };
    let (a, b) = (request.header(), response.header());
    let differs = |what: &str| {
        Fault::of(
            origin,
            ErrorKind::InconsistentResponse,
            format!("response header `{what}` does not match the request"),
        )
    };
    if order(request) != order(response) {
        return Err(differs("order"));
    }
    let checks: [(&str, bool); 8] = [
        ("client", a.client == b.client),
        ("service", a.service == b.service),
        ("id", a.id == b.id),
        ("userId", a.user_id == b.user_id),
        ("issue", a.issue == b.issue),
        ("protocolVersion", a.protocol_version == b.protocol_version),
        ("securityServer", a.security_server == b.security_server),
        (
            "representedParty",
            a.represented_party == b.represented_party,
        ),
    ];
    match checks.into_iter().find(|(_, same)| !same) {
        Some((what, _)) => Err(differs(what)),
        None => Ok(()),
    }
}

/// Checks the response's `requestHash` against the request's SOAP bytes.
pub fn verify_request_hash(
    request_soap_bytes: &[u8],
    response: &SoapMessage,
    origin: Origin,
) -> Result<(), Fault> {
    let fail = |m: &str| Fault::of(origin, ErrorKind::InconsistentResponse, m);
    let rh = response
        .header()
        .request_hash
        .as_ref()
        .ok_or_else(|| fail("response has no requestHash"))?;
    let alg = HashAlgorithm::from_uri(&rh.algorithm_id)
        .ok_or_else(|| fail("requestHash has an unsupported algorithmId"))?;
    let expected = request_hash(request_soap_bytes, alg);
    // Not secret, so a plain comparison is fine.
    if expected == rh.value {
        Ok(())
    } else {
        Err(fail("requestHash does not match the request"))
    }
}

/// Builds X-Road 4.0 request envelopes with the prefixes `SOAP-ENV`, `xrd`, `id` (and `repr`).
#[derive(Debug, Clone)]
pub struct SoapRequestBuilder {
    client: ClientId,
    service: ServiceId,
    id: String,
    user_id: Option<String>,
    issue: Option<String>,
    security_server: Option<SecurityServerId>,
    represented_party: Option<RepresentedParty>,
    body: String,
}

impl SoapRequestBuilder {
    /// A request with a fresh UUID as its id and an empty wrapper element as its body.
    pub fn new(client: ClientId, service: ServiceId) -> Self {
        Self {
            client,
            service,
            id: uuid::Uuid::new_v4().to_string(),
            user_id: None,
            issue: None,
            security_server: None,
            represented_party: None,
            body: String::new(),
        }
    }

    /// Sets the message id.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// Sets `userId`.
    pub fn user_id(mut self, user_id: impl Into<String>) -> Self {
        self.user_id = Some(user_id.into());
        self
    }

    /// Sets `issue`.
    pub fn issue(mut self, issue: impl Into<String>) -> Self {
        self.issue = Some(issue.into());
        self
    }

    /// Targets one security server of the provider.
    pub fn security_server(mut self, server: SecurityServerId) -> Self {
        self.security_server = Some(server);
        self
    }

    /// Acts on behalf of a third party.
    pub fn represented_party(mut self, party: RepresentedParty) -> Self {
        self.represented_party = Some(party);
        self
    }

    /// The body content: the wrapper element named after the service code, declaring its own
    /// namespaces. Inserted verbatim.
    pub fn body(mut self, xml: impl Into<String>) -> Self {
        self.body = xml.into();
        self
    }

    /// The envelope bytes.
    pub fn build(&self) -> Vec<u8> {
        let mut o = String::with_capacity(1024 + self.body.len());
        o.push_str(r#"<?xml version="1.0" encoding="UTF-8"?>"#);
        o.push_str(
            r#"<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/""#,
        );
        o.push_str(&format!(
            r#" xmlns:xrd="{XROAD_NS}" xmlns:id="{IDENTIFIERS_NS}""#
        ));
        if self.represented_party.is_some() {
            o.push_str(&format!(r#" xmlns:repr="{REPRESENTATION_NS}""#));
        }
        o.push_str("><SOAP-ENV:Header>");
        XRoadId::Client(self.client.clone()).write_xml(&mut o, "xrd:client", "id");
        XRoadId::Service(self.service.clone()).write_xml(&mut o, "xrd:service", "id");
        let text = |o: &mut String, name: &str, v: &str| {
            o.push_str("<xrd:");
            o.push_str(name);
            o.push('>');
            escape_into(o, v);
            o.push_str("</xrd:");
            o.push_str(name);
            o.push('>');
        };
        text(&mut o, "id", &self.id);
        if let Some(u) = &self.user_id {
            text(&mut o, "userId", u);
        }
        if let Some(i) = &self.issue {
            text(&mut o, "issue", i);
        }
        text(&mut o, "protocolVersion", PROTOCOL_VERSION);
        if let Some(s) = &self.security_server {
            XRoadId::Server(s.clone()).write_xml(&mut o, "xrd:securityServer", "id");
        }
        if let Some(p) = &self.represented_party {
            o.push_str("<repr:representedParty>");
            if let Some(c) = p.party_class() {
                o.push_str("<repr:partyClass>");
                escape_into(&mut o, c);
                o.push_str("</repr:partyClass>");
            }
            o.push_str("<repr:partyCode>");
            escape_into(&mut o, p.party_code());
            o.push_str("</repr:partyCode></repr:representedParty>");
        }
        o.push_str("</SOAP-ENV:Header><SOAP-ENV:Body>");
        if self.body.is_empty() {
            o.push('<');
            o.push_str(self.service.code());
            o.push_str("/>");
        } else {
            o.push_str(&self.body);
        }
        o.push_str("</SOAP-ENV:Body></SOAP-ENV:Envelope>");
        o.into_bytes()
    }
}
