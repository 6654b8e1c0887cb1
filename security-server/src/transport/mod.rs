//! The security-server-to-security-server message format (`trustbus/1`, docs/protocol.md §5).
//!
//! Sans-IO: [`encode`] writes the parts of a message, [`decode`] reads them back from bytes fed
//! in any chunking. A message is `multipart/mixed`; every part has `Content-Type`,
//! `Content-Location` and `Content-Length`, so the reader never scans payload bytes for the
//! boundary and a payload can never collide with it.

pub mod decode;
pub mod encode;
mod meta;

pub use decode::{DecodeError, Decoder, Event, Limits, MessageReader, PartHead, ReceivedMessage};
pub use encode::{Encoder, ObjectDigest};
pub use meta::{Direction, Metadata, PayloadKind, UserIdentity};

/// The protocol name carried in `message.json` and the `Trustbus-Protocol` header.
pub const PROTOCOL: &str = "trustbus/1";
/// The exchange endpoint on the server proxy.
pub const EXCHANGE_PATH: &str = "/trustbus/v1/exchange";
/// HTTP header naming the protocol on requests and responses.
pub const PROTOCOL_HEADER: &str = "Trustbus-Protocol";

/// A fresh request id: a time-ordered UUID (version 7: 48-bit Unix milliseconds, 74 random
/// bits). Request ids only need to be unique; being time-ordered, the message log's request-id
/// index grows at its end instead of at random places (docs/message-log.md §8).
pub fn new_request_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Location of the metadata part.
pub const MESSAGE_JSON: &str = "message.json";
/// Location of the payload head: the REST header part or the SOAP envelope.
pub const PAYLOAD_HEAD: &str = "payload-head";
/// Location of the payload body: the REST body, or the whole SOAP multipart body.
pub const PAYLOAD_BODY: &str = "payload-body";
/// Location of the manifest (the ASiC manifest over the data objects above).
pub const MANIFEST: &str = trustbus_pki::asic::MANIFEST_PATH;
/// Location of the detached CMS signature over the manifest.
pub const SIGNATURE: &str = trustbus_pki::asic::SIGNATURE_PATH;
/// Location of the OCSP response for the sender's authentication certificate.
pub const AUTH_OCSP: &str = "auth-ocsp";

/// MIME type of the metadata part.
pub const CT_JSON: &str = "application/json";
/// MIME type of a REST request header part.
pub const CT_REST_REQUEST: &str = "application/x-road-rest-request";
/// MIME type of a REST response header part.
pub const CT_REST_RESPONSE: &str = "application/x-road-rest-response";
/// MIME type of a REST body part.
pub const CT_REST_BODY: &str = "application/x-road-rest-body";
/// MIME type of a SOAP envelope part.
pub const CT_SOAP: &str = "text/xml";
/// MIME type of a SOAP multipart body part (the original `multipart/related` message).
pub const CT_SOAP_MULTIPART: &str = "application/x-trustbus-soap-multipart";
/// MIME type of the manifest.
pub const CT_MANIFEST: &str = "application/xml";
/// MIME type of the signature.
pub const CT_SIGNATURE: &str = "application/pkcs7-signature";
/// MIME type of an OCSP response.
pub const CT_OCSP: &str = "application/ocsp-response";

/// The digest algorithm of the manifest.
pub const MANIFEST_DIGEST: trustbus_pki::DigestAlgorithm = trustbus_pki::DigestAlgorithm::Sha256;
