//! Writing a `trustbus/1` message.
//!
//! The sender writes the data objects first (hashing them as they go, or with digests it
//! computed while receiving them), then the manifest and signature, then the OCSP response
//! for its authentication certificate. Nothing is buffered here: every function returns the
//! bytes to put on the wire next.

use trustbus_pki::asic::manifest_from_digests;

use super::{AUTH_OCSP, CT_MANIFEST, CT_OCSP, CT_SIGNATURE, MANIFEST, MANIFEST_DIGEST, SIGNATURE};

/// The manifest digest of one data object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectDigest {
    /// The part's `Content-Location`.
    pub name: String,
    /// The part's `Content-Type`.
    pub mime: String,
    /// SHA-256 of the part's bytes.
    pub digest: Vec<u8>,
}

impl ObjectDigest {
    /// The digest of `data`.
    pub fn of(name: &str, mime: &str, data: &[u8]) -> Self {
        Self {
            name: name.to_owned(),
            mime: mime.to_owned(),
            digest: MANIFEST_DIGEST.digest(data),
        }
    }
}

/// The manifest over `objects`, in order, exactly as `pki::asic` writes it.
pub fn manifest(objects: &[ObjectDigest]) -> Vec<u8> {
    let refs: Vec<(&str, &str, &[u8])> = objects
        .iter()
        .map(|o| (o.name.as_str(), o.mime.as_str(), o.digest.as_slice()))
        .collect();
    manifest_from_digests(MANIFEST_DIGEST, &refs)
}

/// Frames the parts of one message with one boundary.
#[derive(Debug, Clone)]
pub struct Encoder {
    boundary: String,
}

impl Default for Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Encoder {
    /// An encoder with a fresh random boundary.
    pub fn new() -> Self {
        Self {
            boundary: format!("tbx-{}", uuid::Uuid::new_v4().simple()),
        }
    }

    /// An encoder with a given boundary (tests); it must be a valid RFC 2046 boundary.
    pub fn with_boundary(boundary: &str) -> Self {
        Self {
            boundary: boundary.to_owned(),
        }
    }

    /// The boundary.
    pub fn boundary(&self) -> &str {
        &self.boundary
    }

    /// The HTTP `Content-Type` of the message.
    pub fn content_type(&self) -> String {
        format!("multipart/mixed; boundary=\"{}\"", self.boundary)
    }

    /// The delimiter and headers that open a part of `len` bytes.
    pub fn part_header(&self, location: &str, content_type: &str, len: u64) -> Vec<u8> {
        format!(
            "--{}\r\nContent-Type: {content_type}\r\nContent-Location: {location}\r\nContent-Length: {len}\r\n\r\n",
            self.boundary
        )
        .into_bytes()
    }

    /// What follows a part's bytes.
    pub fn part_end(&self) -> &'static [u8] {
        b"\r\n"
    }

    /// A whole part.
    pub fn part(&self, location: &str, content_type: &str, data: &[u8]) -> Vec<u8> {
        let mut out = self.part_header(location, content_type, data.len() as u64);
        out.extend_from_slice(data);
        out.extend_from_slice(self.part_end());
        out
    }

    /// The manifest, signature and OCSP parts and the closing delimiter.
    pub fn trailer(&self, manifest: &[u8], signature: &[u8], auth_ocsp: &[Vec<u8>]) -> Vec<u8> {
        let mut out = self.part(MANIFEST, CT_MANIFEST, manifest);
        out.extend_from_slice(&self.part(SIGNATURE, CT_SIGNATURE, signature));
        for o in auth_ocsp {
            out.extend_from_slice(&self.part(AUTH_OCSP, CT_OCSP, o));
        }
        out.extend_from_slice(format!("--{}--\r\n", self.boundary).as_bytes());
        out
    }
}
