//! Turning one signed exchange message into a log record: what the client and server proxies
//! hand over, and the data objects that go into the record's payload.

use time::OffsetDateTime;
use trustbus_sdk::id::{ClientId, ServiceId};
use uuid::Uuid;

use super::dataobjects::{self, DataObject, DataObjectError};
use super::record::{MessageKind, NewRecord, Outcome, RecordMeta, UserRef};

// The data-object names, MIME types and message enums are the transport's: a record's
// payload holds exactly the data objects the signed manifest lists.
pub use crate::logsink::Side;
pub use crate::transport::{
    CT_JSON as MIME_JSON, CT_REST_BODY as MIME_REST_BODY, CT_REST_REQUEST as MIME_REST_REQUEST,
    CT_REST_RESPONSE as MIME_REST_RESPONSE, CT_SOAP as MIME_SOAP,
    CT_SOAP_MULTIPART as MIME_SOAP_MULTIPART, Direction, MESSAGE_JSON, PAYLOAD_BODY, PAYLOAD_HEAD,
    PayloadKind,
};

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
