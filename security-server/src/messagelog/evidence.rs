//! Evidence containers: one logged message as an ASiC-E container with its batch timestamp,
//! Merkle proof and what is needed to recompute its record hash.
//!
//! ```text
//! mimetype                      application/vnd.etsi.asic-e+zip (stored, first)
//! message.json                  the data objects exactly as signed, in manifest order
//! payload-head
//! payload-body                  (when the message has one)
//! META-INF/ASiCManifest.xml     the signed manifest, byte for byte as exchanged
//! META-INF/signature001.p7s     the detached CMS signature as exchanged (no re-signing)
//! META-INF/timestamp.tst        the RFC 3161 token of the record's batch (over the Merkle root)
//! META-INF/merkle-proof.json    the record's inclusion proof (pki::merkle JSON)
//! META-INF/record.json          the record's metadata, previous and own chain hash
//! META-INF/payload.enc          (only for payloads encrypted at rest) the stored ciphertext
//! ```
//!
//! The Merkle leaf is the record's chain entry hash, `SHA-256(prev_hash ‖ record_bytes)`, where
//! `record_bytes` is the record's canonical encoding (`docs/message-log.md` §2), rebuilt from
//! `record.json`, the data objects (encoded by [`super::dataobjects`]), the manifest, the
//! signature and the OCSP response.

use base64::Engine;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use trustbus_pki::DigestAlgorithm;
use trustbus_pki::asic::{AsicBuilder, AsicError};
use uuid::Uuid;

use super::chain::{ChainHash, entry_hash};
use super::dataobjects::{self, DataObject, DataObjectError};
use super::record::{
    self, LogRecord, MessageKind, Outcome, PayloadKey, RecordError, RecordId, RecordMeta,
    StoredPayload, UserRef,
};
use super::store::{LogStore, Query, QueryFilter, RawRecord, StoreError, TimestampInfo};
use super::zipfile;

/// Name of the timestamp token under `META-INF/`.
pub const TIMESTAMP_FILE: &str = "timestamp.tst";
/// Name of the Merkle proof under `META-INF/`.
pub const PROOF_FILE: &str = "merkle-proof.json";
/// Name of the record description under `META-INF/`.
pub const RECORD_FILE: &str = "record.json";
/// Name of the stored ciphertext under `META-INF/` (encrypted payloads only).
pub const PAYLOAD_ENC_FILE: &str = "payload.enc";
/// The `format` value of `record.json`.
pub const RECORD_FORMAT: &str = "trustbus-evidence-record/1";
/// How the record hash is computed (stated in every `record.json`).
pub const HASH_RULE: &str = "merkle leaf = entry_hash = SHA-256(prev_hash || record_bytes); record_bytes = message-log record format 1 (docs/message-log.md section 2) with these fields, payload = data-object list (docs/message-log.md section 12) of the data files in manifest order, or META-INF/payload.enc when encrypted at rest";

/// Why evidence could not be produced.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvidenceError {
    /// No such record (or it has left the live store).
    #[error("record {0} not found")]
    NotFound(String),
    /// The record has no timestamp yet (wait for the next batch).
    #[error("record {0} is not timestamped yet")]
    NotTimestamped(RecordId),
    /// The payload is encrypted and no key was given.
    #[error("record {0}: payload is encrypted at rest and no key was given")]
    NeedKey(RecordId),
    /// The stored manifest does not list the stored data objects (it would not verify).
    #[error("record {0}: the stored manifest does not match its data objects")]
    ManifestMismatch(RecordId),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored record did not decode or decrypt.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The stored payload is not a data-object list.
    #[error(transparent)]
    DataObjects(#[from] DataObjectError),
    /// The container could not be written.
    #[error(transparent)]
    Asic(#[from] AsicError),
    /// A zip could not be written.
    #[error(transparent)]
    Zip(#[from] zipfile::ZipError),
}

/// `META-INF/record.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordJson {
    /// Always [`RECORD_FORMAT`].
    pub format: String,
    /// The record id (position in the log).
    pub record_id: u64,
    /// `request_sent`, `request_received`, `response_sent` or `response_received`.
    pub kind: String,
    /// Message id.
    pub message_id: String,
    /// Request id (UUID).
    pub request_id: String,
    /// Client (slash form).
    pub client: String,
    /// Service (slash form).
    pub service: String,
    /// End user id, if any.
    pub user_id: Option<String>,
    /// Whether the user id was verified.
    pub user_verified: Option<bool>,
    /// Issue, if any.
    pub issue: Option<String>,
    /// When logged (RFC 3339, UTC, nanoseconds).
    pub logged_at: String,
    /// Plaintext payload size.
    pub payload_size: u64,
    /// The fault code if the exchange ended in a fault.
    pub fault: Option<String>,
    /// Encryption at rest: key id and base64 nonce (ciphertext in `META-INF/payload.enc`).
    pub payload_encryption: Option<(String, String)>,
    /// The stored OCSP response (base64 DER).
    pub ocsp_response: String,
    /// The previous record's entry hash (hex; zeros for the first record).
    pub prev_hash: String,
    /// This record's entry hash (hex): the Merkle leaf.
    pub entry_hash: String,
    /// The timestamp batch.
    pub timestamp_batch: u64,
    /// [`HASH_RULE`].
    pub hash_rule: String,
}

fn kind_name(k: MessageKind) -> &'static str {
    match k {
        MessageKind::RequestSent => "request_sent",
        MessageKind::RequestReceived => "request_received",
        MessageKind::ResponseSent => "response_sent",
        MessageKind::ResponseReceived => "response_received",
    }
}

fn kind_from_name(s: &str) -> Option<MessageKind> {
    [
        MessageKind::RequestSent,
        MessageKind::RequestReceived,
        MessageKind::ResponseSent,
        MessageKind::ResponseReceived,
    ]
    .into_iter()
    .find(|k| kind_name(*k) == s)
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn unb64(s: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| e.to_string())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex32(s: &str) -> Result<[u8; 32], String> {
    if s.len() != 64
        || !s
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    {
        return Err(format!("{s:?} is not 64 lower-case hex digits"));
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
    }
    Ok(out)
}

impl RecordJson {
    /// The canonical bytes (pretty JSON and a newline); a verifier insists on exactly these.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }

    /// Reads `record.json`; refuses anything but its canonical form.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let r: Self = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if r.to_bytes() != bytes {
            return Err("record.json is not in canonical form".into());
        }
        if r.format != RECORD_FORMAT || r.hash_rule != HASH_RULE {
            return Err("unknown record.json format".into());
        }
        Ok(r)
    }

    /// The record metadata it states.
    pub fn meta(&self) -> Result<RecordMeta, String> {
        let logged_at = OffsetDateTime::parse(
            &self.logged_at,
            &time::format_description::well_known::Rfc3339,
        )
        .map_err(|e| format!("logged_at: {e}"))?;
        if rfc3339(logged_at) != self.logged_at {
            return Err("logged_at is not canonical".into());
        }
        let user = match (&self.user_id, self.user_verified) {
            (None, None) => None,
            (Some(id), Some(verified)) => Some(UserRef {
                id: id.clone(),
                verified,
            }),
            _ => return Err("user_id and user_verified go together".into()),
        };
        Ok(RecordMeta {
            kind: kind_from_name(&self.kind).ok_or_else(|| format!("kind {:?}", self.kind))?,
            message_id: self.message_id.clone(),
            request_id: Uuid::parse_str(&self.request_id).map_err(|e| e.to_string())?,
            client: self.client.clone(),
            service: self.service.clone(),
            user,
            issue: self.issue.clone(),
            logged_at,
            payload_size: self.payload_size,
            outcome: match &self.fault {
                None => Outcome::Ok,
                Some(code) => Outcome::Fault(code.clone()),
            },
        })
    }

    /// The previous record's entry hash.
    pub fn prev_hash(&self) -> Result<ChainHash, String> {
        unhex32(&self.prev_hash).map(ChainHash)
    }

    /// The stated entry hash (the Merkle leaf).
    pub fn entry_hash(&self) -> Result<ChainHash, String> {
        unhex32(&self.entry_hash).map(ChainHash)
    }

    /// Rebuilds the record bytes from this description and the container's parts, and
    /// returns the entry hash they give.
    pub fn recompute_entry_hash(
        &self,
        data_objects: &[DataObject],
        payload_enc: Option<&[u8]>,
        manifest: &[u8],
        signature: &[u8],
    ) -> Result<ChainHash, String> {
        let meta = self.meta()?;
        let payload = match (&self.payload_encryption, payload_enc) {
            (None, None) => {
                StoredPayload::Plain(dataobjects::encode(data_objects).map_err(|e| e.to_string())?)
            }
            (Some((key_id, nonce)), Some(ct)) => StoredPayload::Aes256Gcm {
                key_id: key_id.clone(),
                nonce: unb64(nonce)?
                    .try_into()
                    .map_err(|_| "nonce length".to_owned())?,
                ciphertext: ct.to_vec(),
            },
            (Some(_), None) => return Err("META-INF/payload.enc is missing".into()),
            (None, Some(_)) => return Err("META-INF/payload.enc without payload_encryption".into()),
        };
        let ocsp = unb64(&self.ocsp_response)?;
        let bytes = record::encode_parts(
            RecordId(self.record_id),
            &meta,
            &payload,
            manifest,
            signature,
            &ocsp,
        )
        .map_err(|e| e.to_string())?;
        Ok(entry_hash(&self.prev_hash()?, &bytes))
    }
}

/// The file name of a record's container: `<request id>-<kind>-<record id>.asice`.
pub fn container_name(r: &LogRecord) -> String {
    format!(
        "{}-{}-{}.asice",
        r.meta.request_id,
        kind_name(r.meta.kind).replace('_', "-"),
        r.id
    )
}

/// Builds the evidence container of a stored record, given its predecessor's entry hash and its
/// timestamp. `key` opens payloads encrypted at rest.
pub fn build_container(
    raw: &RawRecord,
    prev_hash: &ChainHash,
    ts: &TimestampInfo,
    key: Option<&PayloadKey>,
) -> Result<Vec<u8>, EvidenceError> {
    let rec = record::decode(&raw.bytes)?;
    let (plain, encryption, enc) = match &rec.payload {
        StoredPayload::Plain(p) => (p.clone(), None, None),
        StoredPayload::Aes256Gcm {
            key_id,
            nonce,
            ciphertext,
        } => {
            let key = key.ok_or(EvidenceError::NeedKey(rec.id))?;
            (
                key.open(&rec.meta, &rec.payload)?,
                Some((key_id.clone(), b64(nonce))),
                Some(ciphertext.clone()),
            )
        }
    };
    let objects = dataobjects::decode(&plain)?;
    let mut b = AsicBuilder::new(DigestAlgorithm::Sha256);
    for o in objects {
        b.add_file(&o.name, &o.mime_type, o.data)?;
    }
    // The container must carry the manifest exactly as signed. The builder writes the same
    // canonical manifest the exchange path signed; if the stored one differs, refuse rather
    // than produce evidence that cannot verify.
    if b.manifest() != rec.manifest {
        return Err(EvidenceError::ManifestMismatch(rec.id));
    }
    let meta = &rec.meta;
    let rj = RecordJson {
        format: RECORD_FORMAT.into(),
        record_id: rec.id.0,
        kind: kind_name(meta.kind).into(),
        message_id: meta.message_id.clone(),
        request_id: meta.request_id.to_string(),
        client: meta.client.clone(),
        service: meta.service.clone(),
        user_id: meta.user.as_ref().map(|u| u.id.clone()),
        user_verified: meta.user.as_ref().map(|u| u.verified),
        issue: meta.issue.clone(),
        logged_at: rfc3339(meta.logged_at),
        payload_size: meta.payload_size,
        fault: match &meta.outcome {
            Outcome::Ok => None,
            Outcome::Fault(c) => Some(c.clone()),
        },
        payload_encryption: encryption,
        ocsp_response: b64(&rec.ocsp_response),
        prev_hash: hex(&prev_hash.0),
        entry_hash: hex(&raw.hash.0),
        timestamp_batch: ts.batch_id,
        hash_rule: HASH_RULE.into(),
    };
    b.add_meta_inf(TIMESTAMP_FILE, ts.token.clone())?;
    b.add_meta_inf(PROOF_FILE, ts.merkle_proof.clone())?;
    b.add_meta_inf(RECORD_FILE, rj.to_bytes())?;
    if let Some(ct) = enc {
        b.add_meta_inf(PAYLOAD_ENC_FILE, ct)?;
    }
    Ok(b.build_with_signature(&rec.signature)?)
}

/// The evidence container of record `id` in `store`.
pub fn record_container(
    store: &dyn LogStore,
    id: RecordId,
    key: Option<&PayloadKey>,
) -> Result<Vec<u8>, EvidenceError> {
    let raw = store
        .get_raw(id)?
        .ok_or_else(|| EvidenceError::NotFound(id.to_string()))?;
    let ts = store
        .timestamp(id)?
        .ok_or(EvidenceError::NotTimestamped(id))?;
    let prev = if id.0 <= 1 {
        ChainHash::GENESIS
    } else {
        let before = RecordId(id.0 - 1);
        match store.get_raw(before)? {
            Some(raw) => raw.hash,
            // The predecessor was archived: the store keeps the last archived entry hash.
            None => match store.archived_head()? {
                Some((archived, hash)) if archived == before => hash,
                _ => {
                    return Err(EvidenceError::NotFound(format!(
                        "{before} (predecessor of {id})"
                    )));
                }
            },
        }
    };
    build_container(&raw, &prev, &ts, key)
}

/// The containers of every message this server logged for one exchange (request and
/// response), with their file names, in record order.
pub fn exchange_containers(
    store: &dyn LogStore,
    request_id: Uuid,
    key: Option<&PayloadKey>,
) -> Result<Vec<(String, Vec<u8>)>, EvidenceError> {
    let page = store.query(&Query::new(QueryFilter::RequestId(request_id), 64))?;
    if page.records.is_empty() {
        return Err(EvidenceError::NotFound(format!("exchange {request_id}")));
    }
    page.records
        .iter()
        .map(|r| Ok((container_name(r), record_container(store, r.id, key)?)))
        .collect()
}

/// [`exchange_containers`] as one zip.
pub fn exchange_zip(
    store: &dyn LogStore,
    request_id: Uuid,
    key: Option<&PayloadKey>,
) -> Result<Vec<u8>, EvidenceError> {
    Ok(zipfile::write(&exchange_containers(
        store, request_id, key,
    )?)?)
}
