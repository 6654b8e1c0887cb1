//! Where the OCSP responder learns a certificate's status.
//!
//! The development CA (another module) keeps the real register; this trait is the seam between
//! the two. The shape matches the CA side's `revocation` module so that the two can be unified.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use time::OffsetDateTime;

/// The status of one certificate, as a revocation source reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertStatus {
    /// Issued by this CA and not revoked.
    Good,
    /// Revoked at `at`, with an optional RFC 5280 CRLReason code.
    Revoked {
        /// When the certificate was revoked.
        at: OffsetDateTime,
        /// The CRLReason code (0 to 10, 7 unused), if one was recorded.
        reason: Option<u8>,
    },
    /// Not known to this CA.
    Unknown,
}

/// Looks up a certificate's status by serial number.
///
/// `serial` is the content of the certificate's serialNumber INTEGER exactly as encoded in the
/// certificate (big-endian two's complement, so a leading zero byte is kept when present).
pub trait RevocationSource {
    /// The status of the certificate with this serial number.
    fn status(&self, serial: &[u8]) -> CertStatus;
}

impl<T: RevocationSource + ?Sized> RevocationSource for Arc<T> {
    fn status(&self, serial: &[u8]) -> CertStatus {
        (**self).status(serial)
    }
}

/// An in-memory revocation register, for tests and for small development setups.
#[derive(Debug, Default)]
pub struct MemoryRevocationSource {
    entries: Mutex<HashMap<Vec<u8>, CertStatus>>,
}

impl MemoryRevocationSource {
    /// An empty register: every serial is unknown.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a status for a serial number, replacing any previous one.
    pub fn set(&self, serial: &[u8], status: CertStatus) {
        if let Ok(mut m) = self.entries.lock() {
            m.insert(serial.to_vec(), status);
        }
    }
}

impl RevocationSource for MemoryRevocationSource {
    fn status(&self, serial: &[u8]) -> CertStatus {
        self.entries
            .lock()
            .ok()
            .and_then(|m| m.get(serial).copied())
            .unwrap_or(CertStatus::Unknown)
    }
}
