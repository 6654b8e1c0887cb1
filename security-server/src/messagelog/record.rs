//! The message-log record model and its canonical, versioned binary encoding.
//!
//! A record is immutable once written: its bytes are hashed into the chain (see `chain`), so the
//! encoding must be byte-for-byte stable across releases. It is therefore hand-written (not serde),
//! starts with a magic and a format version, and every variable-length field carries a big-endian
//! `u32` length. The exact layout is in `docs/message-log.md`; [`decode`] is strict (it rejects
//! unknown tags, non-0/1 booleans, invalid UTF-8, out-of-range times and trailing bytes), so for every
//! accepted input `encode(decode(b)) == b`. [`decode`] never panics on any input; a property test checks
//! that, and a `cargo fuzz` target can call [`decode`] directly when the fuzz crate picks it up.
//!
//! Fields filled in later (the timestamp token and Merkle proof) are *not* part of the record: they
//! are stored beside it, keyed by record id (`store::TimestampInfo`), so the record and its chain
//! hash never change.

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use std::fmt;
use time::OffsetDateTime;
use trustbus_sdk::{ClientId, ServiceId};
use uuid::Uuid;

/// The 4-byte magic that starts every encoded record.
pub const RECORD_MAGIC: [u8; 4] = *b"TBLR";
/// The format version written by this code.
pub const RECORD_VERSION: u16 = 1;
/// Byte offset of the big-endian record id inside an encoded record (after magic and version).
pub const RECORD_ID_OFFSET: usize = 6;
/// Largest encoded record accepted (1 GiB): a length prefix above this is rejected as corrupt.
pub const MAX_RECORD_LEN: usize = 1 << 30;
/// Length of the AES-256-GCM nonce stored with an encrypted payload.
pub const NONCE_LEN: usize = 12;

/// Additional authenticated data prefix for payload encryption (bound with request id and kind).
const PAYLOAD_AAD_PREFIX: &[u8] = b"trustbus-msglog-payload-v1";

/// A record's position in the log: a dense sequence starting at 1, assigned by the journal writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordId(pub u64);

impl RecordId {
    /// The id that follows this one.
    pub fn next(self) -> Self {
        Self(self.0.saturating_add(1))
    }
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What the logging server did with the message: request or response, sent or received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageKind {
    /// A request this server signed and sent (consumer side).
    RequestSent = 1,
    /// A request this server received and verified (provider side).
    RequestReceived = 2,
    /// A response this server signed and sent (provider side).
    ResponseSent = 3,
    /// A response this server received and verified (consumer side).
    ResponseReceived = 4,
}

impl MessageKind {
    /// The one-byte code used in the encoding.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The kind for a code, if known.
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => Self::RequestSent,
            2 => Self::RequestReceived,
            3 => Self::ResponseSent,
            4 => Self::ResponseReceived,
            _ => return None,
        })
    }
}

/// The end user on whose behalf the exchange ran.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserRef {
    /// The user id (`userId` / `X-Road-UserId`, or the verified OIDC subject).
    pub id: String,
    /// True when the security server verified the identity (OIDC ID token), false when passed through.
    pub verified: bool,
}

/// How the exchange ended.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Delivered without a bus fault.
    Ok,
    /// Ended in a fault; the X-Road fault code string (e.g. `Server.ServerProxy.AccessDenied`).
    Fault(String),
}

/// Record metadata: everything an auditor searches by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMeta {
    /// Request or response, sent or received.
    pub kind: MessageKind,
    /// The message id (`id` header / `X-Road-Id`).
    pub message_id: String,
    /// The request id shared by a request and its response.
    pub request_id: Uuid,
    /// The client, in slash form (`ClientId::to_slash`).
    pub client: String,
    /// The service, in slash form (`ServiceId::to_slash`).
    pub service: String,
    /// The end user, if one was given.
    pub user: Option<UserRef>,
    /// The `issue` header, if given.
    pub issue: Option<String>,
    /// When the record was made (UTC; stored to the nanosecond).
    pub logged_at: OffsetDateTime,
    /// Size of the plaintext payload in bytes.
    pub payload_size: u64,
    /// How the exchange ended.
    pub outcome: Outcome,
}

impl RecordMeta {
    /// Metadata with the identifiers taken from the sdk types; user, issue unset, outcome ok.
    pub fn new(
        kind: MessageKind,
        message_id: impl Into<String>,
        request_id: Uuid,
        client: &ClientId,
        service: &ServiceId,
        logged_at: OffsetDateTime,
    ) -> Self {
        Self {
            kind,
            message_id: message_id.into(),
            request_id,
            client: client.to_slash(),
            service: service.to_slash(),
            user: None,
            issue: None,
            logged_at,
            payload_size: 0,
            outcome: Outcome::Ok,
        }
    }
}

/// The payload as stored: in the clear, or encrypted at rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredPayload {
    /// The payload bytes exactly as exchanged.
    Plain(Vec<u8>),
    /// AES-256-GCM ciphertext (with its 16-byte tag appended) under the key named `key_id`.
    Aes256Gcm {
        /// Which key encrypted it (for key rotation).
        key_id: String,
        /// The random 96-bit nonce.
        nonce: [u8; NONCE_LEN],
        /// Ciphertext followed by the tag.
        ciphertext: Vec<u8>,
    },
}

/// One immutable message-log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// Position in the log.
    pub id: RecordId,
    /// Searchable metadata.
    pub meta: RecordMeta,
    /// The payload (possibly encrypted).
    pub payload: StoredPayload,
    /// The signed ASiC manifest bytes (`META-INF/ASiCManifest.xml`).
    pub manifest: Vec<u8>,
    /// The detached CMS signature over the manifest.
    pub signature: Vec<u8>,
    /// The signer's stapled OCSP response (DER).
    pub ocsp_response: Vec<u8>,
}

/// A record as handed to `MessageLog::append`: no id yet, payload in the clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRecord {
    /// Searchable metadata (`payload_size` is set from `payload` on append).
    pub meta: RecordMeta,
    /// The payload bytes exactly as exchanged.
    pub payload: Vec<u8>,
    /// The signed ASiC manifest bytes.
    pub manifest: Vec<u8>,
    /// The detached CMS signature over the manifest.
    pub signature: Vec<u8>,
    /// The signer's OCSP response.
    pub ocsp_response: Vec<u8>,
}

/// An AES-256-GCM key for payload encryption at rest, with the id recorded beside each ciphertext.
pub struct PayloadKey {
    id: String,
    key: LessSafeKey,
    rng: SystemRandom,
}

impl fmt::Debug for PayloadKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PayloadKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl PayloadKey {
    /// A key from 32 raw bytes (handed in by the software token) and its id.
    pub fn new(id: impl Into<String>, key_bytes: &[u8; 32]) -> Result<Self, RecordError> {
        let unbound =
            UnboundKey::new(&aead::AES_256_GCM, key_bytes).map_err(|_| RecordError::Crypto)?;
        Ok(Self {
            id: id.into(),
            key: LessSafeKey::new(unbound),
            rng: SystemRandom::new(),
        })
    }

    /// The key id.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn aad(meta: &RecordMeta) -> Vec<u8> {
        let mut aad = Vec::with_capacity(PAYLOAD_AAD_PREFIX.len() + 17);
        aad.extend_from_slice(PAYLOAD_AAD_PREFIX);
        aad.extend_from_slice(meta.request_id.as_bytes());
        aad.push(meta.kind.code());
        aad
    }

    /// Encrypts a payload for `meta` (the request id and kind are bound as associated data).
    pub fn seal(
        &self,
        meta: &RecordMeta,
        plaintext: Vec<u8>,
    ) -> Result<StoredPayload, RecordError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| RecordError::Crypto)?;
        let mut buf = plaintext;
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(Self::aad(meta)),
                &mut buf,
            )
            .map_err(|_| RecordError::Crypto)?;
        Ok(StoredPayload::Aes256Gcm {
            key_id: self.id.clone(),
            nonce,
            ciphertext: buf,
        })
    }

    /// Decrypts a stored payload; plain payloads are returned as they are.
    pub fn open(&self, meta: &RecordMeta, payload: &StoredPayload) -> Result<Vec<u8>, RecordError> {
        match payload {
            StoredPayload::Plain(p) => Ok(p.clone()),
            StoredPayload::Aes256Gcm {
                key_id,
                nonce,
                ciphertext,
            } => {
                if key_id != &self.id {
                    return Err(RecordError::WrongKey(key_id.clone()));
                }
                let mut buf = ciphertext.clone();
                let plain = self
                    .key
                    .open_in_place(
                        Nonce::assume_unique_for_key(*nonce),
                        Aad::from(Self::aad(meta)),
                        &mut buf,
                    )
                    .map_err(|_| RecordError::Crypto)?;
                let n = plain.len();
                buf.truncate(n);
                Ok(buf)
            }
        }
    }
}

/// Errors from encoding, decoding or payload encryption.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The input ended inside a field.
    #[error("record truncated while reading {field}")]
    Truncated {
        /// The field being read.
        field: &'static str,
    },
    /// The magic is not `TBLR`.
    #[error("not a message-log record (bad magic)")]
    BadMagic,
    /// A format version this build does not read.
    #[error("unsupported record format version {0}")]
    UnsupportedVersion(u16),
    /// A tag, boolean or enum code outside its defined values.
    #[error("invalid value {value} for {field}")]
    InvalidValue {
        /// The field.
        field: &'static str,
        /// The byte found.
        value: u8,
    },
    /// A string field is not UTF-8.
    #[error("{field} is not valid UTF-8")]
    InvalidUtf8 {
        /// The field.
        field: &'static str,
    },
    /// The stored time is out of range.
    #[error("invalid logged_at time")]
    InvalidTime,
    /// Bytes left after the last field.
    #[error("{0} trailing bytes after the record")]
    TrailingBytes(usize),
    /// The encoded record would exceed [`MAX_RECORD_LEN`] (or a field exceeds `u32`).
    #[error("record too large")]
    TooLarge,
    /// Encryption or decryption failed (wrong key, tampered ciphertext, bad key bytes).
    #[error("payload encryption or decryption failed")]
    Crypto,
    /// The payload was encrypted under another key.
    #[error("payload encrypted under key {0:?}, not the key given")]
    WrongKey(String),
}

// ---------------------------------------------------------------------------------------------
// Encoding

struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    fn bytes(&mut self, b: &[u8]) -> Result<(), RecordError> {
        let len = u32::try_from(b.len()).map_err(|_| RecordError::TooLarge)?;
        self.u32(len);
        self.buf.extend_from_slice(b);
        Ok(())
    }
    fn str(&mut self, s: &str) -> Result<(), RecordError> {
        self.bytes(s.as_bytes())
    }
}

fn encoded_len_estimate(meta: &RecordMeta, payload: &StoredPayload, parts: [&[u8]; 3]) -> usize {
    let payload_len = match payload {
        StoredPayload::Plain(p) => p.len(),
        StoredPayload::Aes256Gcm {
            key_id, ciphertext, ..
        } => key_id.len() + ciphertext.len() + 20,
    };
    128 + meta.message_id.len()
        + meta.client.len()
        + meta.service.len()
        + meta.user.as_ref().map_or(0, |u| u.id.len())
        + meta.issue.as_ref().map_or(0, String::len)
        + meta.outcome_len()
        + payload_len
        + parts.iter().map(|p| p.len()).sum::<usize>()
}

impl RecordMeta {
    fn outcome_len(&self) -> usize {
        match &self.outcome {
            Outcome::Ok => 0,
            Outcome::Fault(c) => c.len(),
        }
    }
}

/// Encodes a record in the canonical version-1 layout with the given id.
pub fn encode_parts(
    id: RecordId,
    meta: &RecordMeta,
    payload: &StoredPayload,
    manifest: &[u8],
    signature: &[u8],
    ocsp_response: &[u8],
) -> Result<Vec<u8>, RecordError> {
    let cap = encoded_len_estimate(meta, payload, [manifest, signature, ocsp_response]);
    if cap > MAX_RECORD_LEN {
        return Err(RecordError::TooLarge);
    }
    let mut w = Writer {
        buf: Vec::with_capacity(cap),
    };
    w.buf.extend_from_slice(&RECORD_MAGIC);
    w.buf.extend_from_slice(&RECORD_VERSION.to_be_bytes());
    w.u64(id.0);
    w.u8(meta.kind.code());
    w.buf.extend_from_slice(meta.request_id.as_bytes());
    w.u64(meta.logged_at.unix_timestamp() as u64);
    w.u32(meta.logged_at.nanosecond());
    w.str(&meta.message_id)?;
    w.str(&meta.client)?;
    w.str(&meta.service)?;
    match &meta.user {
        None => w.u8(0),
        Some(u) => {
            w.u8(1);
            w.str(&u.id)?;
            w.u8(u8::from(u.verified));
        }
    }
    match &meta.issue {
        None => w.u8(0),
        Some(i) => {
            w.u8(1);
            w.str(i)?;
        }
    }
    w.u64(meta.payload_size);
    match &meta.outcome {
        Outcome::Ok => w.u8(0),
        Outcome::Fault(code) => {
            w.u8(1);
            w.str(code)?;
        }
    }
    match payload {
        StoredPayload::Plain(p) => {
            w.u8(0);
            w.bytes(p)?;
        }
        StoredPayload::Aes256Gcm {
            key_id,
            nonce,
            ciphertext,
        } => {
            w.u8(1);
            w.str(key_id)?;
            w.buf.extend_from_slice(nonce);
            w.bytes(ciphertext)?;
        }
    }
    w.bytes(manifest)?;
    w.bytes(signature)?;
    w.bytes(ocsp_response)?;
    if w.buf.len() > MAX_RECORD_LEN {
        return Err(RecordError::TooLarge);
    }
    Ok(w.buf)
}

impl LogRecord {
    /// The canonical encoding of this record.
    pub fn encode(&self) -> Result<Vec<u8>, RecordError> {
        encode_parts(
            self.id,
            &self.meta,
            &self.payload,
            &self.manifest,
            &self.signature,
            &self.ocsp_response,
        )
    }
}

/// Writes `id` into an encoded record in place (the journal writer assigns ids this way).
pub(crate) fn patch_id(bytes: &mut [u8], id: RecordId) {
    if let Some(slot) = bytes.get_mut(RECORD_ID_OFFSET..RECORD_ID_OFFSET + 8) {
        slot.copy_from_slice(&id.0.to_be_bytes());
    }
}

/// Reads the record id of an encoded record without decoding the rest.
pub fn peek_id(bytes: &[u8]) -> Option<RecordId> {
    let slot = bytes.get(RECORD_ID_OFFSET..RECORD_ID_OFFSET + 8)?;
    let arr: [u8; 8] = slot.try_into().ok()?;
    Some(RecordId(u64::from_be_bytes(arr)))
}

// ---------------------------------------------------------------------------------------------
// Decoding

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], RecordError> {
        if self.rest.len() < n {
            return Err(RecordError::Truncated { field });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }
    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], RecordError> {
        let s = self.take(N, field)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    fn u8(&mut self, field: &'static str) -> Result<u8, RecordError> {
        Ok(self.array::<1>(field)?[0])
    }
    fn u32(&mut self, field: &'static str) -> Result<u32, RecordError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }
    fn u64(&mut self, field: &'static str) -> Result<u64, RecordError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }
    fn flag(&mut self, field: &'static str) -> Result<bool, RecordError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(RecordError::InvalidValue { field, value }),
        }
    }
    fn bytes(&mut self, field: &'static str) -> Result<&'a [u8], RecordError> {
        let len = self.u32(field)? as usize;
        self.take(len, field)
    }
    fn string(&mut self, field: &'static str) -> Result<String, RecordError> {
        let b = self.bytes(field)?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| RecordError::InvalidUtf8 { field })
    }
}

/// Decodes a canonical record. Strict; never panics.
pub fn decode(bytes: &[u8]) -> Result<LogRecord, RecordError> {
    let mut r = Reader { rest: bytes };
    if r.array::<4>("magic")? != RECORD_MAGIC {
        return Err(RecordError::BadMagic);
    }
    let version = u16::from_be_bytes(r.array("version")?);
    if version != RECORD_VERSION {
        return Err(RecordError::UnsupportedVersion(version));
    }
    let id = RecordId(r.u64("record id")?);
    let kind_code = r.u8("kind")?;
    let kind = MessageKind::from_code(kind_code).ok_or(RecordError::InvalidValue {
        field: "kind",
        value: kind_code,
    })?;
    let request_id = Uuid::from_bytes(r.array("request id")?);
    let secs = r.u64("logged_at")? as i64;
    let nanos = r.u32("logged_at")?;
    if nanos >= 1_000_000_000 {
        return Err(RecordError::InvalidTime);
    }
    let logged_at = OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.replace_nanosecond(nanos).ok())
        .ok_or(RecordError::InvalidTime)?;
    let message_id = r.string("message id")?;
    let client = r.string("client")?;
    let service = r.string("service")?;
    let user = if r.flag("user present")? {
        let id = r.string("user id")?;
        let verified = r.flag("user verified")?;
        Some(UserRef { id, verified })
    } else {
        None
    };
    let issue = if r.flag("issue present")? {
        Some(r.string("issue")?)
    } else {
        None
    };
    let payload_size = r.u64("payload size")?;
    let outcome = if r.flag("outcome")? {
        Outcome::Fault(r.string("fault code")?)
    } else {
        Outcome::Ok
    };
    let payload = if r.flag("payload encryption")? {
        let key_id = r.string("key id")?;
        let nonce = r.array::<NONCE_LEN>("nonce")?;
        let ciphertext = r.bytes("ciphertext")?.to_vec();
        StoredPayload::Aes256Gcm {
            key_id,
            nonce,
            ciphertext,
        }
    } else {
        StoredPayload::Plain(r.bytes("payload")?.to_vec())
    };
    let manifest = r.bytes("manifest")?.to_vec();
    let signature = r.bytes("signature")?.to_vec();
    let ocsp_response = r.bytes("ocsp response")?.to_vec();
    if !r.rest.is_empty() {
        return Err(RecordError::TrailingBytes(r.rest.len()));
    }
    Ok(LogRecord {
        id,
        meta: RecordMeta {
            kind,
            message_id,
            request_id,
            client,
            service,
            user,
            issue,
            logged_at,
            payload_size,
            outcome,
        },
        payload,
        manifest,
        signature,
        ocsp_response,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn sample_meta(n: u64) -> RecordMeta {
        let client = ClientId::subsystem("EE", "GOV", "70000001", "portal").unwrap();
        let service = ServiceId::new(
            ClientId::subsystem("EE", "GOV", "70000002", "registry").unwrap(),
            "getPerson",
            Some("v1"),
        )
        .unwrap();
        let mut m = RecordMeta::new(
            MessageKind::RequestSent,
            format!("msg-{n}"),
            Uuid::from_u128(u128::from(n) + 7),
            &client,
            &service,
            OffsetDateTime::from_unix_timestamp(1_800_000_000 + n as i64).unwrap(),
        );
        m.user = Some(UserRef {
            id: "EE38001085718".into(),
            verified: n.is_multiple_of(2),
        });
        m
    }

    pub(crate) fn sample_record(n: u64) -> NewRecord {
        NewRecord {
            meta: sample_meta(n),
            payload: format!("<Envelope>{n}</Envelope>").into_bytes(),
            manifest: b"<ASiCManifest/>".to_vec(),
            signature: vec![0x30, 0x82, 1, 2],
            ocsp_response: vec![0x30, 3, 4],
        }
    }

    fn arb_string() -> impl Strategy<Value = String> {
        "\\PC{0,24}"
    }

    fn arb_meta() -> impl Strategy<Value = RecordMeta> {
        (
            1u8..=4,
            arb_string(),
            any::<u128>(),
            arb_string(),
            arb_string(),
            proptest::option::of((arb_string(), any::<bool>())),
            proptest::option::of(arb_string()),
            (-62_000_000_000i64..200_000_000_000, 0u32..1_000_000_000),
            any::<u64>(),
            proptest::option::of(arb_string()),
        )
            .prop_map(
                |(kind, message_id, rid, client, service, user, issue, (s, ns), size, fault)| {
                    RecordMeta {
                        kind: MessageKind::from_code(kind).unwrap(),
                        message_id,
                        request_id: Uuid::from_u128(rid),
                        client,
                        service,
                        user: user.map(|(id, verified)| UserRef { id, verified }),
                        issue,
                        logged_at: OffsetDateTime::from_unix_timestamp(s)
                            .unwrap()
                            .replace_nanosecond(ns)
                            .unwrap(),
                        payload_size: size,
                        outcome: fault.map_or(Outcome::Ok, Outcome::Fault),
                    }
                },
            )
    }

    fn arb_payload() -> impl Strategy<Value = StoredPayload> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..64).prop_map(StoredPayload::Plain),
            (
                arb_string(),
                any::<[u8; 12]>(),
                proptest::collection::vec(any::<u8>(), 0..64)
            )
                .prop_map(|(key_id, nonce, ciphertext)| StoredPayload::Aes256Gcm {
                    key_id,
                    nonce,
                    ciphertext
                }),
        ]
    }

    pub(crate) fn arb_record() -> impl Strategy<Value = LogRecord> {
        (
            any::<u64>(),
            arb_meta(),
            arb_payload(),
            proptest::collection::vec(any::<u8>(), 0..32),
            proptest::collection::vec(any::<u8>(), 0..32),
            proptest::collection::vec(any::<u8>(), 0..32),
        )
            .prop_map(|(id, meta, payload, manifest, signature, ocsp_response)| {
                LogRecord {
                    id: RecordId(id),
                    meta,
                    payload,
                    manifest,
                    signature,
                    ocsp_response,
                }
            })
    }

    proptest! {
        #[test]
        fn round_trip(rec in arb_record()) {
            let bytes = rec.encode().unwrap();
            prop_assert_eq!(peek_id(&bytes), Some(rec.id));
            let back = decode(&bytes).unwrap();
            prop_assert_eq!(&back, &rec);
            prop_assert_eq!(back.encode().unwrap(), bytes);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            // Arbitrary bytes, and arbitrary bytes behind a valid header so decoding gets deep.
            if let Ok(r) = decode(&bytes) {
                prop_assert_eq!(r.encode().unwrap(), bytes.clone());
            }
            let mut framed = RECORD_MAGIC.to_vec();
            framed.extend_from_slice(&RECORD_VERSION.to_be_bytes());
            framed.extend_from_slice(&bytes);
            if let Ok(r) = decode(&framed) {
                prop_assert_eq!(r.encode().unwrap(), framed);
            }
        }

        #[test]
        fn mutated_records_never_panic(rec in arb_record(), pos in any::<usize>(), byte in any::<u8>(), cut in any::<usize>()) {
            let mut bytes = rec.encode().unwrap();
            let i = pos % bytes.len();
            bytes[i] = byte;
            if let Ok(r) = decode(&bytes) {
                // Strictness: anything accepted re-encodes to the same bytes.
                prop_assert_eq!(r.encode().unwrap(), bytes.clone());
            }
            let _ = decode(&bytes[..cut % (bytes.len() + 1)]);
        }
    }

    #[test]
    fn layout_is_stable() {
        // Pins the exact version-1 bytes of one record: a change here breaks every stored chain.
        let rec = LogRecord {
            id: RecordId(0x0102),
            meta: RecordMeta {
                kind: MessageKind::ResponseReceived,
                message_id: "m".into(),
                request_id: Uuid::from_u128(0xAA),
                client: "C".into(),
                service: "S".into(),
                user: None,
                issue: None,
                logged_at: OffsetDateTime::from_unix_timestamp(1).unwrap(),
                payload_size: 2,
                outcome: Outcome::Ok,
            },
            payload: StoredPayload::Plain(b"hi".to_vec()),
            manifest: vec![],
            signature: vec![9],
            ocsp_response: vec![],
        };
        let mut want = b"TBLR\x00\x01".to_vec();
        want.extend_from_slice(&0x0102u64.to_be_bytes());
        want.push(4);
        want.extend_from_slice(&0xAAu128.to_be_bytes());
        want.extend_from_slice(&1u64.to_be_bytes());
        want.extend_from_slice(&0u32.to_be_bytes());
        want.extend_from_slice(b"\0\0\0\x01m\0\0\0\x01C\0\0\0\x01S");
        want.extend_from_slice(&[0, 0]);
        want.extend_from_slice(&2u64.to_be_bytes());
        want.push(0);
        want.extend_from_slice(b"\0\0\0\0\x02hi");
        want.extend_from_slice(b"\0\0\0\0\0\0\0\x01\x09\0\0\0\0");
        assert_eq!(rec.encode().unwrap(), want);
    }

    #[test]
    fn rejects_trailing_and_bad_flags() {
        let rec = LogRecord {
            id: RecordId(1),
            meta: sample_meta(1),
            payload: StoredPayload::Plain(vec![1]),
            manifest: vec![],
            signature: vec![],
            ocsp_response: vec![],
        };
        let mut b = rec.encode().unwrap();
        b.push(0);
        assert_eq!(decode(&b), Err(RecordError::TrailingBytes(1)));
        let mut b = rec.encode().unwrap();
        b[14] = 9;
        assert_eq!(
            decode(&b),
            Err(RecordError::InvalidValue {
                field: "kind",
                value: 9
            })
        );
        let mut b = rec.encode().unwrap();
        b[4] = 0;
        b[5] = 2;
        assert_eq!(decode(&b), Err(RecordError::UnsupportedVersion(2)));
    }

    #[test]
    fn payload_encryption_round_trip_and_binding() {
        let key = PayloadKey::new("k1", &[7u8; 32]).unwrap();
        let meta = sample_meta(3);
        let sealed = key.seal(&meta, b"secret body".to_vec()).unwrap();
        assert!(matches!(&sealed, StoredPayload::Aes256Gcm { key_id, .. } if key_id == "k1"));
        assert_eq!(key.open(&meta, &sealed).unwrap(), b"secret body");
        // Bound to the request id: moving the ciphertext to another record fails.
        let other = sample_meta(4);
        assert_eq!(key.open(&other, &sealed), Err(RecordError::Crypto));
        let key2 = PayloadKey::new("k2", &[7u8; 32]).unwrap();
        assert_eq!(
            key2.open(&meta, &sealed),
            Err(RecordError::WrongKey("k1".into()))
        );
    }
}
