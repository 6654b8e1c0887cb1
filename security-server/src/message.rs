//! Sealing outgoing messages (digest, sign, frame) and reading incoming ones from an HTTP body,
//! shared by the client proxy and the server proxy.

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use time::OffsetDateTime;
use trustbus_sdk::fault::{ErrorKind, Fault, Origin};

use crate::httpc::{OutBody, full};
use crate::identity::Identity;
use crate::logsink::{LogEntry, Outcome, Side};
use crate::spill::SpillBuffer;
use crate::transport::encode::{Encoder, ObjectDigest, manifest};
use crate::transport::{
    CT_JSON, Decoder, Limits, MESSAGE_JSON, MessageReader, Metadata, PAYLOAD_BODY, PAYLOAD_HEAD,
    ReceivedMessage,
};

/// Chunk size when streaming a spilled body.
const CHUNK: usize = 64 * 1024;
/// Bodies up to this size are copied into message-log entries.
pub const LOG_BODY_MAX: u64 = 1 << 20;

/// A message ready to send: framed, digested and signed.
#[derive(Debug)]
pub struct Sealed {
    /// The metadata.
    pub meta: Metadata,
    /// Exact `message.json` bytes.
    pub meta_bytes: Vec<u8>,
    /// The payload head.
    pub head: Vec<u8>,
    head_type: &'static str,
    body: Option<(SpillBuffer, &'static str)>,
    /// The manifest.
    pub manifest: Vec<u8>,
    /// The signature.
    pub signature: Vec<u8>,
    auth_ocsp: Vec<Vec<u8>>,
    signer_ocsp: Vec<u8>,
    encoder: Encoder,
}

/// Digests and signs a message. The body's digest was computed while it was received.
pub fn seal(
    meta: Metadata,
    head: Vec<u8>,
    head_type: &'static str,
    body: Option<(SpillBuffer, &'static str)>,
    identity: &Identity,
    origin: Origin,
    now: OffsetDateTime,
) -> Result<Sealed, Fault> {
    let meta_bytes = meta.to_bytes();
    let mut digests = vec![
        ObjectDigest::of(MESSAGE_JSON, CT_JSON, &meta_bytes),
        ObjectDigest::of(PAYLOAD_HEAD, head_type, &head),
    ];
    if let Some((b, ct)) = &body {
        digests.push(ObjectDigest {
            name: PAYLOAD_BODY.into(),
            mime: (*ct).into(),
            digest: b.sha256(),
        });
    }
    let manifest = manifest(&digests);
    // The OCSP response embedded in the signature is kept for the log.
    // Requests are signed by the client's member, responses by the service provider's.
    let member = match meta.direction {
        crate::transport::Direction::Request => meta.client.owner(),
        crate::transport::Direction::Response => meta.service.provider().owner(),
    };
    let (signature, signer_ocsp) = identity.sign_manifest(&member, &manifest, origin, now)?;
    Ok(Sealed {
        meta,
        meta_bytes,
        head,
        head_type,
        body,
        manifest,
        signature,
        auth_ocsp: identity.auth_ocsp(),
        signer_ocsp,
        encoder: Encoder::new(),
    })
}

impl Sealed {
    /// The HTTP `Content-Type`.
    pub fn content_type(&self) -> String {
        self.encoder.content_type()
    }

    /// The message-log entry for this message.
    pub fn log_entry(&mut self, side: Side, outcome: Outcome) -> LogEntry {
        let payload_body = match self.body.as_mut() {
            Some((b, _)) if b.len() <= LOG_BODY_MAX => b.to_vec().ok(),
            _ => None,
        };
        entry(
            side,
            &self.meta,
            &self.meta_bytes,
            &self.head,
            payload_body,
            &self.manifest,
            &self.signature,
            self.signer_ocsp.clone(),
            outcome,
        )
    }

    /// The HTTP body: small messages in one piece, spilled bodies streamed from disk.
    pub fn into_body(self) -> OutBody {
        let e = &self.encoder;
        let mut prefix = e.part(MESSAGE_JSON, CT_JSON, &self.meta_bytes);
        prefix.extend_from_slice(&e.part(PAYLOAD_HEAD, self.head_type, &self.head));
        let mut suffix = Vec::new();
        if let Some((b, ct)) = &self.body {
            prefix.extend_from_slice(&e.part_header(PAYLOAD_BODY, ct, b.len()));
            suffix.extend_from_slice(e.part_end());
        }
        suffix.extend_from_slice(&e.trailer(&self.manifest, &self.signature, &self.auth_ocsp));
        match self.body {
            None => {
                prefix.extend_from_slice(&suffix);
                full(prefix)
            }
            Some((b, _)) => stream_body(Bytes::from(prefix), b, Bytes::from(suffix)),
        }
    }
}

/// A message-log entry.
#[allow(clippy::too_many_arguments)]
pub fn entry(
    side: Side,
    meta: &Metadata,
    meta_bytes: &[u8],
    head: &[u8],
    payload_body: Option<Vec<u8>>,
    manifest: &[u8],
    signature: &[u8],
    ocsp: Vec<u8>,
    outcome: Outcome,
) -> LogEntry {
    LogEntry {
        side,
        direction: meta.direction,
        kind: meta.kind,
        message_id: meta.message_id.clone(),
        request_id: meta.request_id.clone(),
        client: meta.client.clone(),
        service: meta.service.clone(),
        user: meta.user.clone(),
        issue: meta.issue.clone(),
        metadata: meta_bytes.to_vec(),
        payload_head: head.to_vec(),
        payload_body,
        manifest: manifest.to_vec(),
        signature: signature.to_vec(),
        ocsp_response: ocsp,
        outcome,
    }
}

/// A body of `prefix`, the spilled bytes and `suffix`, streamed.
pub fn stream_body(prefix: Bytes, body: SpillBuffer, suffix: Bytes) -> OutBody {
    if let Some(mem) = body.as_memory() {
        let mut all = BytesMut::with_capacity(prefix.len() + mem.len() + suffix.len());
        all.extend_from_slice(&prefix);
        all.extend_from_slice(mem);
        all.extend_from_slice(&suffix);
        return full(all.freeze());
    }
    let (mut tx, rx) = http_body_util::channel::Channel::<Bytes, std::io::Error>::new(4);
    tokio::spawn(async move {
        if !prefix.is_empty() && tx.send_data(prefix).await.is_err() {
            return;
        }
        let mut chunks = match body.into_chunks(CHUNK) {
            Ok(c) => c,
            Err(e) => return tx.abort(e),
        };
        loop {
            let r = tokio::task::spawn_blocking(move || {
                let next = chunks.next_chunk();
                (chunks, next)
            })
            .await;
            let (c, next) = match r {
                Ok(x) => x,
                Err(e) => return tx.abort(std::io::Error::other(e.to_string())),
            };
            chunks = c;
            match next {
                Ok(Some(b)) => {
                    if tx.send_data(b).await.is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => return tx.abort(e),
            }
        }
        if !suffix.is_empty() {
            let _ = tx.send_data(suffix).await;
        }
    });
    rx.boxed()
}

/// Reads a `trustbus/1` message from an HTTP body. The payload body goes to a spill buffer
/// (which also computes the REST request hash over the head and body when `rest_hash`).
pub async fn read_message<B>(
    body: B,
    content_type: &str,
    limits: &Limits,
    spill_threshold: usize,
    rest_hash: bool,
    origin: Origin,
) -> Result<(ReceivedMessage, Option<SpillBuffer>), Fault>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let invalid = |m: String| Fault::of(origin, ErrorKind::InvalidMessage, m);
    let mut dec = Decoder::new(content_type, limits).map_err(|e| invalid(e.to_string()))?;
    let mut reader = MessageReader::new(*limits);
    let mut buf = BytesMut::new();
    let mut spill: Option<SpillBuffer> = None;
    let mut body = body;
    loop {
        while let Some(ev) = dec
            .next_event(&mut buf)
            .map_err(|e| invalid(e.to_string()))?
        {
            if let Some(chunk) = reader.on_event(ev).map_err(|e| invalid(e.to_string()))? {
                let s = spill.get_or_insert_with(|| {
                    let s = SpillBuffer::new(spill_threshold, None);
                    match (rest_hash, reader.head()) {
                        (true, Some(h)) => s.with_request_hash(h),
                        _ => s,
                    }
                });
                s.write(&chunk)
                    .map_err(|e| Fault::of(origin, ErrorKind::IOError, e.to_string()))?;
            }
        }
        match body.frame().await {
            None => break,
            Some(Err(e)) => return Err(Fault::of(origin, ErrorKind::NetworkError, e.to_string())),
            Some(Ok(f)) => {
                if let Ok(d) = f.into_data() {
                    buf.extend_from_slice(&d);
                }
            }
        }
    }
    if !dec.is_done() || !buf.is_empty() {
        return Err(invalid("message is truncated".into()));
    }
    let msg = reader.finish().map_err(|e| invalid(e.to_string()))?;
    if msg.body.is_some() && spill.is_none() {
        // A zero-length body part.
        let s = SpillBuffer::new(spill_threshold, None);
        spill = Some(if rest_hash {
            s.with_request_hash(&msg.head)
        } else {
            s
        });
    }
    Ok((msg, spill))
}

/// What a streamed request turned out to be, known once its body has been sent.
#[derive(Debug)]
pub struct Streamed {
    /// Exact `message.json` bytes.
    pub meta_bytes: Vec<u8>,
    /// The payload head.
    pub head: Vec<u8>,
    /// The manifest.
    pub manifest: Vec<u8>,
    /// The signature.
    pub signature: Vec<u8>,
    /// The signer's OCSP response embedded in the signature.
    pub signer_ocsp: Vec<u8>,
    /// The REST request hash over the head and the body.
    pub request_hash: String,
}

/// Sends a REST request whose body (of known length `len`) is streamed from the information
/// system to the provider, hashed on the way: the parts before the body go first, the body
/// chunks as they arrive, then the manifest, the signature made over it and the OCSP part.
/// Nothing touches the disk. The receiver yields the signed parts once the body has been sent.
pub fn seal_streaming(
    meta: Metadata,
    head: Vec<u8>,
    head_type: &'static str,
    body: hyper::body::Incoming,
    len: u64,
    identity: std::sync::Arc<Identity>,
    origin: Origin,
) -> (
    String,
    OutBody,
    tokio::sync::oneshot::Receiver<Result<Streamed, Fault>>,
) {
    use crate::transport::CT_REST_BODY;
    let enc = Encoder::new();
    let content_type = enc.content_type();
    let (mut tx, rx) = http_body_util::channel::Channel::<Bytes, std::io::Error>::new(4);
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let fail = |m: String| Fault::of(origin, ErrorKind::InvalidBody, m);
        let meta_bytes = meta.to_bytes();
        let mut prefix = enc.part(MESSAGE_JSON, CT_JSON, &meta_bytes);
        prefix.extend_from_slice(&enc.part(PAYLOAD_HEAD, head_type, &head));
        prefix.extend_from_slice(&enc.part_header(PAYLOAD_BODY, CT_REST_BODY, len));
        if tx.send_data(Bytes::from(prefix)).await.is_err() {
            let _ = done_tx.send(Err(fail("the provider closed the connection".into())));
            return;
        }
        let mut sha = ring::digest::Context::new(&ring::digest::SHA256);
        let mut rh = trustbus_sdk::rest::RequestHasher::new(&head);
        let mut sent = 0u64;
        let mut body = body;
        loop {
            match body.frame().await {
                None => break,
                Some(Err(e)) => {
                    tx.abort(std::io::Error::other(e.to_string()));
                    let _ =
                        done_tx.send(Err(fail(format!("reading the request body failed: {e}"))));
                    return;
                }
                Some(Ok(f)) => {
                    let Ok(d) = f.into_data() else { continue };
                    sent += d.len() as u64;
                    if sent > len {
                        tx.abort(std::io::Error::other("body longer than Content-Length"));
                        let _ = done_tx.send(Err(fail(
                            "the body is longer than its Content-Length".into(),
                        )));
                        return;
                    }
                    sha.update(&d);
                    rh.update(&d);
                    if tx.send_data(d).await.is_err() {
                        let _ =
                            done_tx.send(Err(fail("the provider closed the connection".into())));
                        return;
                    }
                }
            }
        }
        if sent != len {
            tx.abort(std::io::Error::other("body shorter than Content-Length"));
            let _ = done_tx.send(Err(fail(
                "the body is shorter than its Content-Length".into(),
            )));
            return;
        }
        let digests = [
            ObjectDigest::of(MESSAGE_JSON, CT_JSON, &meta_bytes),
            ObjectDigest::of(PAYLOAD_HEAD, head_type, &head),
            ObjectDigest {
                name: PAYLOAD_BODY.into(),
                mime: CT_REST_BODY.into(),
                digest: sha.finish().as_ref().to_vec(),
            },
        ];
        let manifest = manifest(&digests);
        let signed = identity.sign_manifest(&meta.client.owner(), &manifest, origin, crate::now());
        let (signature, signer_ocsp) = match signed {
            Ok(s) => s,
            Err(f) => {
                tx.abort(std::io::Error::other(f.message.clone()));
                let _ = done_tx.send(Err(f));
                return;
            }
        };
        let mut suffix = enc.part_end().to_vec();
        suffix.extend_from_slice(&enc.trailer(&manifest, &signature, &identity.auth_ocsp()));
        let _ = tx.send_data(Bytes::from(suffix)).await;
        let _ = done_tx.send(Ok(Streamed {
            meta_bytes,
            head,
            manifest,
            signature,
            signer_ocsp,
            request_hash: rh.finish(),
        }));
    });
    (content_type, rx.boxed(), done_rx)
}
