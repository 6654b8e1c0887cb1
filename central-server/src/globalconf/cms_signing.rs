//! Directory signatures with the pki CMS profile: detached `SignedData` over the exact
//! directory bytes, signer certificate embedded, signed attributes content-type,
//! message-digest, signing-time and ESS signing-certificate-v2.
//!
//! Configuration-signing certificates are key containers, as in X-Road: trust comes from the
//! anchor (or the previous configuration's announcement), not from a CA path, so the verifier
//! only checks that the embedded signer is one of the trusted certificates.

use time::OffsetDateTime;
use trustbus_pki::Signer;
use trustbus_pki::cms::{CmsError, CmsSigner, verify_detached};

use super::signing::{DirectorySignatureError, DirectorySigner, DirectoryVerifier};

/// Signs directories with a configuration-signing key and its certificate.
pub struct CmsDirectorySigner<S> {
    signer: S,
    cert_der: Vec<u8>,
}

impl<S: Signer> CmsDirectorySigner<S> {
    /// Wraps a signer and its certificate (DER).
    pub fn new(signer: S, cert_der: Vec<u8>) -> Self {
        Self { signer, cert_der }
    }
}

impl<S: Signer> DirectorySigner for CmsDirectorySigner<S> {
    fn sign(&self, directory_bytes: &[u8]) -> Result<Vec<u8>, DirectorySignatureError> {
        let failed = |e: CmsError| DirectorySignatureError::SigningFailed(e.to_string());
        CmsSigner::new(&self.signer, &self.cert_der)
            .map_err(failed)?
            .sign_detached(directory_bytes, OffsetDateTime::now_utc(), None)
            .map_err(failed)
    }

    fn certificate_der(&self) -> &[u8] {
        &self.cert_der
    }
}

/// Verifies directory signatures against a set of trusted configuration-signing certificates.
#[derive(Debug, Clone, Copy, Default)]
pub struct CmsDirectoryVerifier;

impl DirectoryVerifier for CmsDirectoryVerifier {
    fn verify(
        &self,
        directory_bytes: &[u8],
        signature_der: &[u8],
        trusted_cert_ders: &[Vec<u8>],
    ) -> Result<(), DirectorySignatureError> {
        let verified = verify_detached(signature_der, directory_bytes, OffsetDateTime::now_utc())
            .map_err(|e| match e {
            CmsError::Malformed(_)
            | CmsError::Encoding(_)
            | CmsError::MissingAttribute(_)
            | CmsError::SignerNotFound
            | CmsError::UnsupportedAlgorithm(_) => {
                DirectorySignatureError::Malformed(e.to_string())
            }
            other => DirectorySignatureError::BadSignature(other.to_string()),
        })?;
        if trusted_cert_ders.contains(&verified.signer_cert) {
            Ok(())
        } else {
            Err(DirectorySignatureError::UnknownSigner)
        }
    }
}
