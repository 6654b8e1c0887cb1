//! Digest algorithms, with their ASN.1 object identifiers and XML-DSIG URIs.

use const_oid::ObjectIdentifier;
use const_oid::db::rfc5912;

/// A message digest algorithm used in signatures, manifests, OCSP and timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DigestAlgorithm {
    /// SHA-1: only for OCSP `CertID`, where RFC 6960 clients (openssl among them) still use it.
    Sha1,
    /// SHA-256, the default for CMS and ASiC manifests.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512, X-Road's default for request hashes.
    Sha512,
}

impl DigestAlgorithm {
    /// The algorithm's object identifier.
    pub const fn oid(self) -> ObjectIdentifier {
        match self {
            Self::Sha1 => rfc5912::ID_SHA_1,
            Self::Sha256 => rfc5912::ID_SHA_256,
            Self::Sha384 => rfc5912::ID_SHA_384,
            Self::Sha512 => rfc5912::ID_SHA_512,
        }
    }

    /// The algorithm for an object identifier, if we support it.
    pub fn from_oid(oid: &ObjectIdentifier) -> Option<Self> {
        [Self::Sha1, Self::Sha256, Self::Sha384, Self::Sha512]
            .into_iter()
            .find(|d| d.oid() == *oid)
    }

    /// The XML-DSIG / XML-ENC URI, as used in ASiC manifests and `requestHash@algorithmId`.
    pub const fn uri(self) -> &'static str {
        match self {
            Self::Sha1 => "http://www.w3.org/2000/09/xmldsig#sha1",
            Self::Sha256 => "http://www.w3.org/2001/04/xmlenc#sha256",
            Self::Sha384 => "http://www.w3.org/2001/04/xmldsig-more#sha384",
            Self::Sha512 => "http://www.w3.org/2001/04/xmlenc#sha512",
        }
    }

    /// The algorithm for an XML URI, if we support it.
    pub fn from_uri(uri: &str) -> Option<Self> {
        [Self::Sha1, Self::Sha256, Self::Sha384, Self::Sha512]
            .into_iter()
            .find(|d| d.uri() == uri)
    }

    /// The ring algorithm.
    pub fn ring(self) -> &'static ring::digest::Algorithm {
        match self {
            Self::Sha1 => &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
            Self::Sha256 => &ring::digest::SHA256,
            Self::Sha384 => &ring::digest::SHA384,
            Self::Sha512 => &ring::digest::SHA512,
        }
    }

    /// Digest of `data`.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        ring::digest::digest(self.ring(), data).as_ref().to_vec()
    }

    /// Output length in bytes.
    pub fn output_len(self) -> usize {
        self.ring().output_len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers() {
        // SHA-256("abc") from FIPS 180-2.
        assert_eq!(
            DigestAlgorithm::Sha256.digest(b"abc")[..4],
            [0xba, 0x78, 0x16, 0xbf]
        );
        assert_eq!(
            DigestAlgorithm::from_uri("http://www.w3.org/2001/04/xmlenc#sha512"),
            Some(DigestAlgorithm::Sha512)
        );
        assert_eq!(
            DigestAlgorithm::from_oid(&DigestAlgorithm::Sha384.oid()),
            Some(DigestAlgorithm::Sha384)
        );
        assert_eq!(DigestAlgorithm::Sha1.output_len(), 20);
    }
}
