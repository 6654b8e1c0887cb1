//! Reading a `trustbus/1` message from bytes that arrive in any chunking.
//!
//! [`Decoder`] splits the multipart framing into [`Event`]s without copying payload bytes
//! (body chunks are split off the input buffer). [`MessageReader`] checks the part order and
//! sizes, hashes the data objects in the same pass, and keeps the small parts; the body is
//! handed back chunk by chunk so the caller can spill it to disk.

use bytes::{Bytes, BytesMut};
use memchr::memmem;
use ring::digest;

use super::encode::ObjectDigest;
use super::{
    AUTH_OCSP, CT_JSON, CT_MANIFEST, CT_OCSP, CT_REST_BODY, CT_REST_REQUEST, CT_REST_RESPONSE,
    CT_SIGNATURE, CT_SOAP, CT_SOAP_MULTIPART, MANIFEST, MESSAGE_JSON, Metadata, PAYLOAD_BODY,
    PAYLOAD_HEAD, SIGNATURE,
};

/// Why a message could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The `Content-Type` is not `multipart/mixed` with a valid boundary.
    #[error("not a trustbus/1 multipart/mixed message: {0}")]
    ContentType(String),
    /// The multipart framing is broken.
    #[error("malformed multipart framing: {0}")]
    Framing(&'static str),
    /// A part header is missing, repeated or malformed.
    #[error("malformed part header: {0}")]
    PartHeader(String),
    /// Parts are missing, repeated or out of order.
    #[error("unexpected part: {0}")]
    Order(String),
    /// A part or the message is larger than allowed.
    #[error("{0} is larger than allowed")]
    TooLarge(&'static str),
    /// The input ended before the closing delimiter.
    #[error("message is truncated")]
    Truncated,
    /// `message.json` is not valid.
    #[error("invalid message.json: {0}")]
    Metadata(String),
}

/// Size limits for reading a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest part header block.
    pub max_part_header: usize,
    /// Largest `message.json`, manifest, signature or OCSP part.
    pub max_small_part: u64,
    /// Largest payload head (REST header part or SOAP envelope).
    pub max_head: u64,
    /// Largest payload body.
    pub max_body: u64,
    /// Most OCSP parts.
    pub max_ocsp_parts: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_part_header: 4096,
            max_small_part: 256 * 1024,
            max_head: 16 << 20,
            max_body: 1 << 30,
            max_ocsp_parts: 4,
        }
    }
}

/// The headers of one part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartHead {
    /// `Content-Type`.
    pub content_type: String,
    /// `Content-Location`.
    pub location: String,
    /// `Content-Length`.
    pub length: u64,
}

/// What the decoder found next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A part begins.
    PartStart(PartHead),
    /// Bytes of the current part.
    Data(Bytes),
    /// The current part ended.
    PartEnd,
    /// The closing delimiter was read; the message is complete.
    Finished,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Delimiter,
    Headers,
    Data(u64),
    DataEnd,
    Done,
}

/// The multipart framing state machine.
#[derive(Debug, Clone)]
pub struct Decoder {
    dash_boundary: Vec<u8>,
    state: State,
    max_part_header: usize,
}

/// The boundary of a `multipart/mixed` content type.
pub fn boundary_of(content_type: &str) -> Result<String, DecodeError> {
    let ct = trustbus_sdk::multipart::ContentType::parse(content_type)
        .map_err(|f| DecodeError::ContentType(f.message))?;
    if ct.mime_type() != "multipart/mixed" {
        return Err(DecodeError::ContentType(ct.mime_type().to_owned()));
    }
    let b = ct
        .param("boundary")
        .ok_or_else(|| DecodeError::ContentType("no boundary".into()))?;
    let ok = (1..=70).contains(&b.len())
        && b.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"'()+_,-./:=?".contains(&c));
    if !ok {
        return Err(DecodeError::ContentType("invalid boundary".into()));
    }
    Ok(b.to_owned())
}

impl Decoder {
    /// A decoder for a message with this HTTP `Content-Type`.
    pub fn new(content_type: &str, limits: &Limits) -> Result<Self, DecodeError> {
        let b = boundary_of(content_type)?;
        Ok(Self {
            dash_boundary: format!("--{b}").into_bytes(),
            state: State::Delimiter,
            max_part_header: limits.max_part_header,
        })
    }

    /// Whether the closing delimiter has been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Takes the next event from the front of `buf`, or `None` if more input is needed.
    pub fn next_event(&mut self, buf: &mut BytesMut) -> Result<Option<Event>, DecodeError> {
        loop {
            match self.state {
                State::Delimiter => {
                    let need = self.dash_boundary.len() + 2;
                    if buf.len() < need {
                        return Ok(None);
                    }
                    if !buf.starts_with(&self.dash_boundary) {
                        return Err(DecodeError::Framing("expected a boundary delimiter"));
                    }
                    let tail = &buf[self.dash_boundary.len()..need];
                    if tail == b"\r\n" {
                        let _ = buf.split_to(need);
                        self.state = State::Headers;
                    } else if tail == b"--" {
                        let _ = buf.split_to(need);
                        self.state = State::Done;
                        return Ok(Some(Event::Finished));
                    } else {
                        return Err(DecodeError::Framing("bad delimiter line"));
                    }
                }
                State::Headers => {
                    let Some(end) = memmem::find(buf, b"\r\n\r\n") else {
                        if buf.len() > self.max_part_header {
                            return Err(DecodeError::TooLarge("a part header"));
                        }
                        return Ok(None);
                    };
                    if end > self.max_part_header {
                        return Err(DecodeError::TooLarge("a part header"));
                    }
                    let block = buf.split_to(end + 4);
                    let head = parse_part_headers(&block[..end])?;
                    self.state = State::Data(head.length);
                    return Ok(Some(Event::PartStart(head)));
                }
                State::Data(0) => {
                    self.state = State::DataEnd;
                }
                State::Data(remaining) => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let take = usize::try_from(remaining)
                        .unwrap_or(usize::MAX)
                        .min(buf.len());
                    let chunk = buf.split_to(take).freeze();
                    self.state = State::Data(remaining - take as u64);
                    return Ok(Some(Event::Data(chunk)));
                }
                State::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(None);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(DecodeError::Framing("part longer than its Content-Length"));
                    }
                    let _ = buf.split_to(2);
                    self.state = State::Delimiter;
                    return Ok(Some(Event::PartEnd));
                }
                State::Done => {
                    // A final CRLF after the closing delimiter is customary; nothing else may follow.
                    let rest: &[u8] = buf;
                    if rest.is_empty() || rest == b"\r" {
                        return Ok(None);
                    }
                    if rest == b"\r\n" {
                        buf.clear();
                        return Ok(None);
                    }
                    return Err(DecodeError::Framing("data after the closing delimiter"));
                }
            }
        }
    }
}

fn parse_part_headers(block: &[u8]) -> Result<PartHead, DecodeError> {
    let text =
        std::str::from_utf8(block).map_err(|_| DecodeError::PartHeader("not UTF-8".into()))?;
    let (mut ct, mut loc, mut len) = (None, None, None);
    for line in text.split("\r\n") {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| DecodeError::PartHeader(format!("line without ':' {:?}", line)))?;
        let value = value.trim();
        if value.chars().any(char::is_control) {
            return Err(DecodeError::PartHeader("control character".into()));
        }
        let slot = match name.to_ascii_lowercase().as_str() {
            "content-type" => &mut ct,
            "content-location" => &mut loc,
            "content-length" => &mut len,
            _ => continue,
        };
        if slot.replace(value.to_owned()).is_some() {
            return Err(DecodeError::PartHeader(format!("{name} repeated")));
        }
    }
    let length = len
        .ok_or_else(|| DecodeError::PartHeader("Content-Length missing".into()))?
        .parse::<u64>()
        .map_err(|_| DecodeError::PartHeader("Content-Length is not a number".into()))?;
    Ok(PartHead {
        content_type: ct.ok_or_else(|| DecodeError::PartHeader("Content-Type missing".into()))?,
        location: loc.ok_or_else(|| DecodeError::PartHeader("Content-Location missing".into()))?,
        length,
    })
}

/// A message read and hashed, not yet verified.
#[derive(Debug, Clone)]
pub struct ReceivedMessage {
    /// The metadata as parsed.
    pub meta: Metadata,
    /// The exact `message.json` bytes.
    pub meta_bytes: Vec<u8>,
    /// The payload head bytes.
    pub head: Vec<u8>,
    /// The payload head's `Content-Type`.
    pub head_type: String,
    /// The payload body's `Content-Type` and length, if the message has a body (its bytes
    /// went to the caller).
    pub body: Option<(String, u64)>,
    /// The manifest bytes.
    pub manifest: Vec<u8>,
    /// The CMS signature bytes.
    pub signature: Vec<u8>,
    /// OCSP responses for the sender's authentication certificate.
    pub auth_ocsp: Vec<Vec<u8>>,
    /// The digests of the data objects, in order, computed while reading.
    pub digests: Vec<ObjectDigest>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Meta,
    Head,
    Body,
    Manifest,
    Signature,
    Ocsp,
}

/// Checks part order and sizes and hashes data objects while [`Decoder`] events pass by.
pub struct MessageReader {
    limits: Limits,
    next: usize,
    current: Option<(Slot, PartHead, digest::Context, Vec<u8>)>,
    meta_bytes: Option<Vec<u8>>,
    head: Option<(String, Vec<u8>)>,
    body: Option<(String, u64)>,
    manifest: Option<Vec<u8>>,
    signature: Option<Vec<u8>>,
    ocsp: Vec<Vec<u8>>,
    digests: Vec<ObjectDigest>,
    finished: bool,
}

impl std::fmt::Debug for MessageReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageReader")
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

const HEAD_TYPES: [&str; 3] = [CT_REST_REQUEST, CT_REST_RESPONSE, CT_SOAP];
const BODY_TYPES: [&str; 2] = [CT_REST_BODY, CT_SOAP_MULTIPART];

impl MessageReader {
    /// A reader with these limits.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            next: 0,
            current: None,
            meta_bytes: None,
            head: None,
            body: None,
            manifest: None,
            signature: None,
            ocsp: Vec::new(),
            digests: Vec::new(),
            finished: false,
        }
    }

    fn classify(&mut self, h: &PartHead) -> Result<(Slot, u64), DecodeError> {
        let order = |m: String| Err(DecodeError::Order(m));
        let l = &self.limits;
        // Parts in order: meta(0) head(1) [body(2)] manifest(3) signature(4) ocsp(5..).
        let slot = match (h.location.as_str(), self.next) {
            (MESSAGE_JSON, 0) if h.content_type == CT_JSON => (Slot::Meta, l.max_small_part),
            (PAYLOAD_HEAD, 1) if HEAD_TYPES.contains(&h.content_type.as_str()) => {
                (Slot::Head, l.max_head)
            }
            (PAYLOAD_BODY, 2) if BODY_TYPES.contains(&h.content_type.as_str()) => {
                (Slot::Body, l.max_body)
            }
            (MANIFEST, 2 | 3) if h.content_type == CT_MANIFEST => {
                (Slot::Manifest, l.max_small_part)
            }
            (SIGNATURE, 4) if h.content_type == CT_SIGNATURE => (Slot::Signature, l.max_small_part),
            (AUTH_OCSP, 5..) if h.content_type == CT_OCSP => {
                if self.ocsp.len() >= l.max_ocsp_parts {
                    return Err(DecodeError::TooLarge("the number of OCSP parts"));
                }
                (Slot::Ocsp, l.max_small_part)
            }
            _ => {
                return order(format!(
                    "{:?} ({}) at position {}",
                    h.location, h.content_type, self.next
                ));
            }
        };
        Ok(slot)
    }

    /// The payload head, once its part has ended (the body follows it).
    pub fn head(&self) -> Option<&[u8]> {
        self.head.as_ref().map(|(_, h)| h.as_slice())
    }

    /// Feeds one event. Returns a chunk of the payload body for the caller to store.
    pub fn on_event(&mut self, ev: Event) -> Result<Option<Bytes>, DecodeError> {
        match ev {
            Event::PartStart(h) => {
                if self.current.is_some() || self.finished {
                    return Err(DecodeError::Framing("part inside a part"));
                }
                let (slot, max) = self.classify(&h)?;
                if h.length > max {
                    return Err(DecodeError::TooLarge(match slot {
                        Slot::Head => "the payload head",
                        Slot::Body => "the payload body",
                        _ => "a part",
                    }));
                }
                let cap = if slot == Slot::Body {
                    0
                } else {
                    usize::try_from(h.length).unwrap_or(0)
                };
                self.current = Some((
                    slot,
                    h,
                    digest::Context::new(&digest::SHA256),
                    Vec::with_capacity(cap),
                ));
                Ok(None)
            }
            Event::Data(chunk) => {
                let Some((slot, _, ctx, buf)) = self.current.as_mut() else {
                    return Err(DecodeError::Framing("data outside a part"));
                };
                if matches!(slot, Slot::Meta | Slot::Head | Slot::Body) {
                    ctx.update(&chunk);
                }
                if *slot == Slot::Body {
                    Ok(Some(chunk))
                } else {
                    buf.extend_from_slice(&chunk);
                    Ok(None)
                }
            }
            Event::PartEnd => {
                let Some((slot, h, ctx, buf)) = self.current.take() else {
                    return Err(DecodeError::Framing("part end outside a part"));
                };
                if matches!(slot, Slot::Meta | Slot::Head | Slot::Body) {
                    self.digests.push(ObjectDigest {
                        name: h.location.clone(),
                        mime: h.content_type.clone(),
                        digest: ctx.finish().as_ref().to_vec(),
                    });
                }
                match slot {
                    Slot::Meta => {
                        self.meta_bytes = Some(buf);
                        self.next = 1;
                    }
                    Slot::Head => {
                        self.head = Some((h.content_type, buf));
                        self.next = 2;
                    }
                    Slot::Body => {
                        self.body = Some((h.content_type, h.length));
                        self.next = 3;
                    }
                    Slot::Manifest => {
                        self.manifest = Some(buf);
                        self.next = 4;
                    }
                    Slot::Signature => {
                        self.signature = Some(buf);
                        self.next = 5;
                    }
                    Slot::Ocsp => self.ocsp.push(buf),
                }
                Ok(None)
            }
            Event::Finished => {
                if self.current.is_some() {
                    return Err(DecodeError::Truncated);
                }
                self.finished = true;
                Ok(None)
            }
        }
    }

    /// The message, once [`Event::Finished`] has been fed.
    pub fn finish(self) -> Result<ReceivedMessage, DecodeError> {
        if !self.finished {
            return Err(DecodeError::Truncated);
        }
        let missing = |what: &str| DecodeError::Order(format!("{what} is missing"));
        let meta_bytes = self.meta_bytes.ok_or_else(|| missing(MESSAGE_JSON))?;
        let (head_type, head) = self.head.ok_or_else(|| missing(PAYLOAD_HEAD))?;
        let manifest = self.manifest.ok_or_else(|| missing(MANIFEST))?;
        let signature = self.signature.ok_or_else(|| missing(SIGNATURE))?;
        let meta: Metadata = serde_json::from_slice(&meta_bytes)
            .map_err(|e| DecodeError::Metadata(e.to_string()))?;
        if meta.protocol != super::PROTOCOL {
            return Err(DecodeError::Metadata(format!(
                "unsupported protocol {:?}",
                meta.protocol
            )));
        }
        Ok(ReceivedMessage {
            meta,
            meta_bytes,
            head,
            head_type,
            body: self.body,
            manifest,
            signature,
            auth_ocsp: self.ocsp,
            digests: self.digests,
        })
    }
}

/// Reads a whole message held in memory; the body is returned separately.
pub fn decode_all(
    content_type: &str,
    bytes: &[u8],
    limits: &Limits,
) -> Result<(ReceivedMessage, Vec<u8>), DecodeError> {
    let mut dec = Decoder::new(content_type, limits)?;
    let mut reader = MessageReader::new(*limits);
    let mut buf = BytesMut::from(bytes);
    let mut body = Vec::new();
    while let Some(ev) = dec.next_event(&mut buf)? {
        if let Some(chunk) = reader.on_event(ev)? {
            body.extend_from_slice(&chunk);
        }
    }
    if !dec.is_done() || !buf.is_empty() {
        return Err(DecodeError::Truncated);
    }
    Ok((reader.finish()?, body))
}

#[cfg(test)]
mod tests;
