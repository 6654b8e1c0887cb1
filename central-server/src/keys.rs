//! Configuration-signing keys: generation, storage and loading.
//!
//! INTERIM until the pki software token lands: keys are ECDSA P-256, stored as unencrypted
//! PKCS#8 files with mode 0600 in `<data_dir>/keys/conf-signing-N.p8`, and their self-signed
//! certificates in `conf-signing-N.der`. The pki branch replaces the storage with its
//! PIN-encrypted token; the [`trustbus_pki::Signer`] interface stays.

use std::path::{Path, PathBuf};

use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
use trustbus_pki::{SignatureAlgorithm, SignatureError, Signer};

use crate::Error;
use crate::globalconf::cms_signing::CmsDirectorySigner;

/// An ECDSA P-256 key held in memory.
pub struct SoftwareKey {
    pair: EcdsaKeyPair,
    spki: Vec<u8>,
    rng: SystemRandom,
}

impl SoftwareKey {
    /// Loads a PKCS#8 key and takes its SPKI from the matching certificate.
    pub fn from_pkcs8(pkcs8: &[u8], cert_der: &[u8]) -> Result<Self, Error> {
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8, &rng)
            .map_err(|e| Error::Crypto(format!("bad PKCS#8 key: {e}")))?;
        let spki = crate::util::cert_spki(cert_der)?;
        Ok(Self { pair, spki, rng })
    }

    /// Generates a key and a self-signed certificate with common name `cn`; returns
    /// (PKCS#8, certificate DER).
    pub fn generate(cn: &str) -> Result<(Vec<u8>, Vec<u8>), Error> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
            .map_err(|e| Error::Crypto(e.to_string()))?;
        let kp =
            rcgen::KeyPair::try_from(pkcs8.as_ref()).map_err(|e| Error::Crypto(e.to_string()))?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
            .map_err(|e| Error::Crypto(e.to_string()))?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(3650);
        let mut serial = [0u8; 16];
        ring::rand::SecureRandom::fill(&rng, &mut serial)
            .map_err(|_| Error::Crypto("no randomness".into()))?;
        serial[0] &= 0x7f;
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
        let cert = params
            .self_signed(&kp)
            .map_err(|e| Error::Crypto(e.to_string()))?;
        Ok((pkcs8.as_ref().to_vec(), cert.der().to_vec()))
    }
}

impl Signer for SoftwareKey {
    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::EcdsaP256Sha256
    }
    fn public_key_der(&self) -> &[u8] {
        &self.spki
    }
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignatureError> {
        self.pair
            .sign(&self.rng, message)
            .map(|s| s.as_ref().to_vec())
            .map_err(|e| SignatureError::SigningFailed(e.to_string()))
    }
}

/// The directory holding configuration-signing keys.
#[derive(Debug, Clone)]
pub struct KeyStore {
    dir: PathBuf,
}

impl KeyStore {
    /// A key store in `dir` (created on first write).
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }

    fn paths(&self, n: u32) -> (PathBuf, PathBuf) {
        (
            self.dir.join(format!("conf-signing-{n}.p8")),
            self.dir.join(format!("conf-signing-{n}.der")),
        )
    }

    /// Whether key `n` exists.
    pub fn exists(&self, n: u32) -> bool {
        self.paths(n).0.exists()
    }

    /// Generates key `n` for `instance` (does nothing if it exists).
    pub fn generate(&self, n: u32, instance: &str) -> Result<(), Error> {
        if self.exists(n) {
            return Ok(());
        }
        std::fs::create_dir_all(&self.dir)?;
        let (pkcs8, cert) =
            SoftwareKey::generate(&format!("Trustbus {instance} configuration signing {n}"))?;
        let (kp, cp) = self.paths(n);
        crate::globalconf::publish::write_file_durably(&cp, &cert)?;
        write_secret(&kp, &pkcs8)?;
        Ok(())
    }

    /// The certificate (DER) of key `n`.
    pub fn certificate(&self, n: u32) -> Result<Vec<u8>, Error> {
        let (_, cp) = self.paths(n);
        std::fs::read(&cp).map_err(|e| Error::Config(format!("cannot read {}: {e}", cp.display())))
    }

    /// Loads key `n` as a directory signer.
    pub fn load_signer(&self, n: u32) -> Result<CmsDirectorySigner<SoftwareKey>, Error> {
        let (kp, _) = self.paths(n);
        let cert = self.certificate(n)?;
        let pkcs8 = std::fs::read(&kp)
            .map_err(|e| Error::Config(format!("cannot read {}: {e}", kp.display())))?;
        Ok(CmsDirectorySigner::new(
            SoftwareKey::from_pkcs8(&pkcs8, &cert)?,
            cert,
        ))
    }
}

fn write_secret(path: &Path, data: &[u8]) -> Result<(), Error> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::globalconf::cms_signing::CmsDirectoryVerifier;
    use crate::globalconf::signing::{DirectorySignatureError, DirectorySigner, DirectoryVerifier};

    #[test]
    fn sign_verify_tamper_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let ks = KeyStore::new(dir.path());
        ks.generate(1, "DEV").unwrap();
        ks.generate(2, "DEV").unwrap();
        let s1 = ks.load_signer(1).unwrap();
        let sig = s1.sign(b"directory").unwrap();
        let c1 = ks.certificate(1).unwrap();
        let c2 = ks.certificate(2).unwrap();
        CmsDirectoryVerifier
            .verify(b"directory", &sig, &[c2.clone(), c1.clone()])
            .unwrap();
        assert!(matches!(
            CmsDirectoryVerifier.verify(b"directorz", &sig, std::slice::from_ref(&c1)),
            Err(DirectorySignatureError::BadSignature(_))
        ));
        assert_eq!(
            CmsDirectoryVerifier.verify(b"directory", &sig, &[c2]),
            Err(DirectorySignatureError::UnknownSigner)
        );
        assert!(matches!(
            CmsDirectoryVerifier.verify(b"directory", b"\x30\x03junk", &[c1]),
            Err(DirectorySignatureError::Malformed(_))
        ));
    }
}
