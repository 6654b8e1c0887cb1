//! Revocation status lookup, the interface between a CA's records and an OCSP responder.
//!
//! An OCSP request names a certificate by `CertID`: a hash algorithm, the hash of the issuer's
//! name, the hash of the issuer's public key, and the serial number (RFC 6960 §4.1.1). A
//! [`RevocationSource`] answers for such a `CertID` with a [`CertStatus`].

use std::fmt;
use std::str::FromStr;

use crate::cert::Certificate;
use crate::digest::DigestAlgorithm;

/// The status of one certificate, as an OCSP `CertStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertStatus {
    /// Issued and not revoked.
    Good,
    /// Revoked.
    Revoked {
        /// When it was revoked.
        at: time::OffsetDateTime,
        /// The CRLReason code, if one was given.
        reason: Option<u8>,
    },
    /// Not issued by this source (or the issuer is not one we answer for).
    Unknown,
}

/// The issuer half of an OCSP `CertID`.
#[derive(Debug, Clone, Copy)]
pub struct IssuerRef<'a> {
    /// The hash algorithm of the two hashes.
    pub hash: DigestAlgorithm,
    /// Hash of the issuer's DER-encoded subject name.
    pub name_hash: &'a [u8],
    /// Hash of the issuer's `subjectPublicKey` bits (without tag, length and unused-bits byte).
    pub key_hash: &'a [u8],
}

impl IssuerRef<'_> {
    /// Whether this names `issuer`.
    pub fn matches(&self, issuer: &Certificate) -> bool {
        let key_bits = crate::key::spki_key_bits(issuer.spki_der());
        self.hash.digest(issuer.subject_der()) == self.name_hash
            && self.hash.digest(key_bits) == self.key_hash
    }
}

/// Answers revocation questions, e.g. for an OCSP responder.
pub trait RevocationSource: Send + Sync {
    /// The status of the certificate with `serial` (big-endian magnitude; leading zero bytes
    /// are ignored) issued by `issuer`.
    fn status(&self, issuer: &IssuerRef<'_>, serial: &[u8]) -> CertStatus;
}

impl<T: RevocationSource + ?Sized> RevocationSource for std::sync::Arc<T> {
    fn status(&self, issuer: &IssuerRef<'_>, serial: &[u8]) -> CertStatus {
        (**self).status(issuer, serial)
    }
}

/// An in-memory revocation register for one issuer, for tests and small development setups.
///
/// It does not look at the issuer: the OCSP responder only consults its source after checking
/// that the request's `CertID` names the responder's own CA.
#[derive(Debug, Default)]
pub struct MemoryRevocationSource {
    entries: std::sync::Mutex<std::collections::HashMap<Vec<u8>, CertStatus>>,
}

impl MemoryRevocationSource {
    /// An empty register: every serial is unknown.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a status for a serial number, replacing any previous one.
    pub fn set(&self, serial: &[u8], status: CertStatus) {
        if let Ok(mut m) = self.entries.lock() {
            m.insert(trim_serial(serial).to_vec(), status);
        }
    }
}

impl RevocationSource for MemoryRevocationSource {
    fn status(&self, _issuer: &IssuerRef<'_>, serial: &[u8]) -> CertStatus {
        self.entries
            .lock()
            .ok()
            .and_then(|m| m.get(trim_serial(serial)).copied())
            .unwrap_or(CertStatus::Unknown)
    }
}

/// Strips leading zero bytes from a serial's big-endian encoding (keeping one byte for zero).
pub fn trim_serial(serial: &[u8]) -> &[u8] {
    let first = serial
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(serial.len().saturating_sub(1));
    &serial[first.min(serial.len())..]
}

/// CRLReason codes (RFC 5280 §5.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CrlReason {
    /// unspecified (0)
    Unspecified,
    /// keyCompromise (1)
    KeyCompromise,
    /// cACompromise (2)
    CaCompromise,
    /// affiliationChanged (3)
    AffiliationChanged,
    /// superseded (4)
    Superseded,
    /// cessationOfOperation (5)
    CessationOfOperation,
    /// certificateHold (6)
    CertificateHold,
    /// removeFromCRL (8)
    RemoveFromCrl,
    /// privilegeWithdrawn (9)
    PrivilegeWithdrawn,
    /// aACompromise (10)
    AaCompromise,
}

const REASONS: [(CrlReason, u8, &str); 10] = [
    (CrlReason::Unspecified, 0, "unspecified"),
    (CrlReason::KeyCompromise, 1, "keyCompromise"),
    (CrlReason::CaCompromise, 2, "cACompromise"),
    (CrlReason::AffiliationChanged, 3, "affiliationChanged"),
    (CrlReason::Superseded, 4, "superseded"),
    (CrlReason::CessationOfOperation, 5, "cessationOfOperation"),
    (CrlReason::CertificateHold, 6, "certificateHold"),
    (CrlReason::RemoveFromCrl, 8, "removeFromCRL"),
    (CrlReason::PrivilegeWithdrawn, 9, "privilegeWithdrawn"),
    (CrlReason::AaCompromise, 10, "aACompromise"),
];

impl CrlReason {
    /// The numeric code.
    pub fn code(self) -> u8 {
        REASONS.iter().find(|r| r.0 == self).map_or(0, |r| r.1)
    }

    /// The reason for a numeric code.
    pub fn from_code(code: u8) -> Option<Self> {
        REASONS.iter().find(|r| r.1 == code).map(|r| r.0)
    }

    /// The RFC 5280 name (`keyCompromise`, …).
    pub fn name(self) -> &'static str {
        REASONS
            .iter()
            .find(|r| r.0 == self)
            .map_or("unspecified", |r| r.2)
    }
}

impl fmt::Display for CrlReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown CRLReason name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown revocation reason {0:?} (expected one of unspecified, keyCompromise, cACompromise, affiliationChanged, superseded, cessationOfOperation, certificateHold, removeFromCRL, privilegeWithdrawn, aACompromise)"
)]
pub struct UnknownReason(pub String);

impl FromStr for CrlReason {
    type Err = UnknownReason;
    fn from_str(s: &str) -> Result<Self, UnknownReason> {
        REASONS
            .iter()
            .find(|r| r.2.eq_ignore_ascii_case(s))
            .map(|r| r.0)
            .ok_or_else(|| UnknownReason(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_round_trip() {
        for (r, code, name) in REASONS {
            assert_eq!(r.code(), code);
            assert_eq!(CrlReason::from_code(code), Some(r));
            assert_eq!(name.parse::<CrlReason>().unwrap(), r);
        }
        assert!("bogus".parse::<CrlReason>().is_err());
        assert_eq!(CrlReason::from_code(7), None);
    }

    #[test]
    fn serial_trimming() {
        assert_eq!(trim_serial(&[0, 0, 1, 2]), &[1, 2]);
        assert_eq!(trim_serial(&[0, 0]), &[0]);
        assert_eq!(trim_serial(&[]), &[] as &[u8]);
        assert_eq!(trim_serial(&[0x80]), &[0x80]);
    }
}
