//! Turning one signed exchange message into a log record: what the client and server proxies
//! hand over, and the data objects that go into the record's payload.

use time::OffsetDateTime;
use trustbus_sdk::id::{ClientId, ServiceId};
use uuid::Uuid;

use super::dataobjects::{self, DataObject, DataObjectError};
use super::record::{MessageKind, NewRecord, Outcome, RecordMeta, UserRef};

/// Name of the metadata data object.
pub const MESSAGE_JSON: &str = "message.json";
/// Name of the payload head (REST header part or SOAP envelope).
pub const PAYLOAD_HEAD: &str = "payload-head";
/// Name of the payload body (REST body or SOAP attachments).
pub const PAYLOAD_BODY: &str = "payload-body";
/// MIME type of `message.json`.
pub const MIME_JSON: &str = "application/json";
/// MIME type of a REST request head.
pub const MIME_REST_REQUEST: &str = "application/x-road-rest-request";
/// MIME type of a REST response head.
pub const MIME_REST_RESPONSE: &str = "application/x-road-rest-response";
/// MIME type of a REST body.
pub const MIME_REST_BODY: &str = "application/x-road-rest-body";
/// MIME type of a SOAP envelope.
pub const MIME_SOAP: &str = "text/xml";
/// MIME type of SOAP attachments.
pub const MIME_SOAP_MULTIPART: &str = "application/x-trustbus-soap-multipart";

/// Which security server logs: the consumer's (client proxy) or the provider's (server proxy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client's security server.
    Consumer,
    /// The service provider's security server.
    Provider,
}

/// Request or response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Consumer to provider, signed by the client member.
    Request,
    /// Provider to consumer, signed by the provider member.
    Response,
}

/// REST or SOAP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadKind {
    /// X-Road REST.
    Rest,
    /// X-Road SOAP 4.0.
    Soap,
}

/// The record kind a side logs for a direction.
pub fn message_kind(side: Side, direction: Direction) -> MessageKind {
    match (side, direction) {
        (Side::Consumer, Direction::Request) => MessageKind::RequestSent,
        (Side::Provider, Direction::Request) => MessageKind::RequestReceived,
        (Side::Provider, Direction::Response) => MessageKind::ResponseSent,
        (Side::Consumer, Direction::Response) => MessageKind::ResponseReceived,
    }
}

/// The direction of a record kind.
pub fn direction_of(kind: MessageKind) -> Direction {
    match kind {
        MessageKind::RequestSent | MessageKind::RequestReceived => Direction::Request,
        MessageKind::ResponseSent | MessageKind::ResponseReceived => Direction::Response,
    }
}

/// The data objects of a message, in manifest order, with their MIME types.
pub fn data_objects(
    kind: PayloadKind,
    direction: Direction,
    message_json: Vec<u8>,
    payload_head: Vec<u8>,
    payload_body: Option<Vec<u8>>,
) -> Vec<DataObject> {
    let (head_mime, body_mime) = match (kind, direction) {
        (PayloadKind::Rest, Direction::Request) => (MIME_REST_REQUEST, MIME_REST_BODY),
        (PayloadKind::Rest, Direction::Response) => (MIME_REST_RESPONSE, MIME_REST_BODY),
        (PayloadKind::Soap, _) => (MIME_SOAP, MIME_SOAP_MULTIPART),
    };
    let mut v = vec![
        DataObject::new(MESSAGE_JSON, MIME_JSON, message_json),
        DataObject::new(PAYLOAD_HEAD, head_mime, payload_head),
    ];
    if let Some(body) = payload_body {
        v.push(DataObject::new(PAYLOAD_BODY, body_mime, body));
    }
    v
}

/// Everything the exchange path hands to the log for one message.
#[derive(Debug, Clone)]
pub struct ExchangeMessage {
    /// Which side logs.
    pub side: Side,
    /// Request or response.
    pub direction: Direction,
    /// REST or SOAP.
    pub kind: PayloadKind,
    /// The client's message id.
    pub message_id: String,
    /// The bus request id (a UUID, shared by request and response).
    pub request_id: Uuid,
    /// The client.
    pub client: ClientId,
    /// The service.
    pub service: ServiceId,
    /// The end user and whether it was verified.
    pub user: Option<UserRef>,
    /// Case reference.
    pub issue: Option<String>,
    /// The exact `message.json` bytes.
    pub message_json: Vec<u8>,
    /// The payload head.
    pub payload_head: Vec<u8>,
    /// The payload body, if the message has one.
    pub payload_body: Option<Vec<u8>>,
    /// The signed manifest (`META-INF/ASiCManifest.xml`).
    pub manifest: Vec<u8>,
    /// The detached CMS signature over the manifest.
    pub signature: Vec<u8>,
    /// The signer's OCSP response.
    pub ocsp_response: Vec<u8>,
    /// How the exchange ended.
    pub outcome: Outcome,
}

impl ExchangeMessage {
    /// Whether the signed manifest lists exactly this message's data objects (names, MIME
    /// types, SHA-256 digests, order). Only then can evidence be exported for it; the exchange
    /// path can assert this in its tests. Hashes every object, so not for the hot path.
    pub fn manifest_matches(&self) -> bool {
        let objects = data_objects(
            self.kind,
            self.direction,
            self.message_json.clone(),
            self.payload_head.clone(),
            self.payload_body.clone(),
        );
        let mut b = trustbus_pki::asic::AsicBuilder::new(trustbus_pki::DigestAlgorithm::Sha256);
        for o in objects {
            if b.add_file(&o.name, &o.mime_type, o.data).is_err() {
                return false;
            }
        }
        b.manifest() == self.manifest
    }
}

impl NewRecord {
    /// The record for one exchange message, logged now.
    pub fn from_exchange(m: ExchangeMessage) -> Result<NewRecord, DataObjectError> {
        let objects = data_objects(
            m.kind,
            m.direction,
            m.message_json,
            m.payload_head,
            m.payload_body,
        );
        let payload = dataobjects::encode(&objects)?;
        let mut meta = RecordMeta::new(
            message_kind(m.side, m.direction),
            m.message_id,
            m.request_id,
            &m.client,
            &m.service,
            OffsetDateTime::now_utc(),
        );
        meta.user = m.user;
        meta.issue = m.issue;
        meta.outcome = m.outcome;
        meta.payload_size = payload.len() as u64;
        Ok(NewRecord {
            meta,
            payload,
            manifest: m.manifest,
            signature: m.signature,
            ocsp_response: m.ocsp_response,
        })
    }
}
