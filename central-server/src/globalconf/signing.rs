//! The two seams between global configuration and its signatures; [`super::cms_signing`]
//! implements them with the pki CMS profile, and tests can substitute their own.

/// Why a directory signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DirectorySignatureError {
    /// The signature is not a well-formed detached CMS `SignedData` in our profile.
    #[error("malformed signature: {0}")]
    Malformed(String),
    /// The signer is none of the trusted certificates.
    #[error("signed by a certificate that is not trusted")]
    UnknownSigner,
    /// The signer is trusted but the signature or the content digest does not verify.
    #[error("signature does not verify: {0}")]
    BadSignature(String),
    /// Signing failed.
    #[error("signing failed: {0}")]
    SigningFailed(String),
}

/// Signs directory documents with the configuration-signing key.
pub trait DirectorySigner: Send + Sync {
    /// A detached CMS `SignedData` (DER) over exactly `directory_bytes`.
    fn sign(&self, directory_bytes: &[u8]) -> Result<Vec<u8>, DirectorySignatureError>;
    /// The signing certificate (DER).
    fn certificate_der(&self) -> &[u8];
}

/// Verifies directory signatures.
pub trait DirectoryVerifier: Send + Sync {
    /// Checks that `signature_der` is a valid detached signature over `directory_bytes` by one
    /// of `trusted_cert_ders` (the certificates are key containers: no chain, no validity).
    fn verify(
        &self,
        directory_bytes: &[u8],
        signature_der: &[u8],
        trusted_cert_ders: &[Vec<u8>],
    ) -> Result<(), DirectorySignatureError>;
}
