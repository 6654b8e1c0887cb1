//! The configuration anchor: what a security server is bootstrapped with.
//!
//! `central-server anchor --out FILE` writes it; the operator compares the printed SHA-256 with
//! the one the central server operator publishes out of band.

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::util;

/// An anchor file (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Anchor {
    /// Format version.
    pub format_version: u32,
    /// Instance identifier the configuration must carry.
    pub instance: String,
    /// Base URLs of the global configuration (`{url}/directory`, `{url}/directory.p7s`,
    /// `{url}/v{N}/{file}`); tried in order.
    pub download_urls: Vec<String>,
    /// Certificates (base64 DER) whose keys may sign the directory.
    pub verification_certs: Vec<String>,
    /// When the anchor was generated (RFC 3339 UTC).
    pub generated_at: String,
}

impl Anchor {
    /// A new anchor dated now.
    pub fn new(instance: &str, download_urls: Vec<String>, certs: &[Vec<u8>]) -> Self {
        Self {
            format_version: crate::model::FORMAT_VERSION,
            instance: instance.to_owned(),
            download_urls,
            verification_certs: certs.iter().map(|c| util::b64(c)).collect(),
            generated_at: util::rfc3339(util::now()),
        }
    }

    /// The anchor's bytes as written to disk.
    pub fn to_bytes(&self) -> Result<Vec<u8>, Error> {
        crate::globalconf::to_canonical_json(self)
    }

    /// Parses an anchor file.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let a: Self =
            serde_json::from_slice(bytes).map_err(|e| Error::MalformedJson(e.to_string()))?;
        if a.download_urls.is_empty() || a.verification_certs.is_empty() {
            return Err(Error::BadRequest(
                "anchor needs at least one download URL and one verification certificate".into(),
            ));
        }
        Ok(a)
    }

    /// The verification certificates, decoded.
    pub fn certs(&self) -> Result<Vec<Vec<u8>>, Error> {
        self.verification_certs
            .iter()
            .map(|c| util::unb64("verification_certs", c))
            .collect()
    }
}
