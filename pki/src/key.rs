//! Key pairs held in memory: ECDSA P-256 (the default), ECDSA P-384, Ed25519 and RSA.
//!
//! A [`KeyPair`] is created by generating a new key (P-256 or Ed25519; ring cannot generate
//! RSA keys) or by importing an unencrypted PKCS#8 `PrivateKeyInfo`. It implements
//! [`Signer`], so everything that signs (CSRs, certificates, CMS, TLS) sees one interface.
//! At rest keys live in the software token ([`crate::token`]), encrypted under a PIN.
//!
//! [`KeyPair::csr_der`] makes a PKCS#10 certification request for the key.

use std::fmt;

use const_oid::db::{rfc5912, rfc8410};
use der::Encode;
use der::asn1::{AnyRef, BitStringRef};
use ring::rand::SystemRandom;
use ring::signature::{self as rs, KeyPair as _};
use spki::{AlgorithmIdentifierRef, SubjectPublicKeyInfoRef};

use crate::profile::SubjectName;
use crate::signature::{KeyType, SignatureAlgorithm, SignatureError, Signer};

/// Why a key could not be generated, imported or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The PKCS#8 bytes are not a key of a type we support, or are malformed.
    #[error("not a supported PKCS#8 private key (P-256, P-384, Ed25519 or RSA): {0}")]
    UnsupportedKey(String),
    /// ring cannot generate RSA keys; import one with [`KeyPair::from_pkcs8_der`].
    #[error("RSA keys cannot be generated here; create one elsewhere and import its PKCS#8")]
    RsaGenerationUnsupported,
    /// RSA keys below 2048 bits are refused.
    #[error("RSA key of {0} bits is too small (2048 bits at least)")]
    RsaTooSmall(usize),
    /// The algorithm does not fit the key type.
    #[error("signature algorithm {alg:?} cannot be used with a {key:?} key")]
    AlgorithmMismatch {
        /// The key's type.
        key: KeyType,
        /// The requested algorithm.
        alg: SignatureAlgorithm,
    },
    /// Key generation failed in ring.
    #[error("key generation failed")]
    GenerationFailed,
    /// PEM input was not a `PRIVATE KEY` block.
    #[error("PEM error: {0}")]
    Pem(String),
    /// A certification request could not be built.
    #[error("cannot build the certification request: {0}")]
    Csr(String),
}

/// Which kind of key to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyKind {
    /// ECDSA on P-256 (the default).
    #[default]
    EcdsaP256,
    /// ECDSA on P-384.
    EcdsaP384,
    /// Ed25519.
    Ed25519,
}

enum Inner {
    Ecdsa(rs::EcdsaKeyPair),
    Ed25519(rs::Ed25519KeyPair),
    Rsa(rs::RsaKeyPair),
}

/// A private key with its public key, ready to sign.
pub struct KeyPair {
    inner: Inner,
    alg: SignatureAlgorithm,
    key_type: KeyType,
    pkcs8: Vec<u8>,
    spki: Vec<u8>,
    rng: SystemRandom,
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("KeyPair")
            .field("key_type", &self.key_type)
            .field("algorithm", &self.alg)
            .finish_non_exhaustive()
    }
}

fn spki_der(
    alg_oid: const_oid::ObjectIdentifier,
    params: Option<AnyRef<'_>>,
    key: &[u8],
) -> Result<Vec<u8>, KeyError> {
    let bits =
        BitStringRef::from_bytes(key).map_err(|e| KeyError::UnsupportedKey(e.to_string()))?;
    SubjectPublicKeyInfoRef {
        algorithm: AlgorithmIdentifierRef {
            oid: alg_oid,
            parameters: params,
        },
        subject_public_key: bits,
    }
    .to_der()
    .map_err(|e| KeyError::UnsupportedKey(e.to_string()))
}

impl KeyPair {
    /// Generates a new key of `kind`.
    pub fn generate(kind: KeyKind) -> Result<Self, KeyError> {
        let rng = SystemRandom::new();
        let pkcs8 = match kind {
            KeyKind::EcdsaP256 => {
                rs::EcdsaKeyPair::generate_pkcs8(&rs::ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
            }
            KeyKind::EcdsaP384 => {
                rs::EcdsaKeyPair::generate_pkcs8(&rs::ECDSA_P384_SHA384_ASN1_SIGNING, &rng)
            }
            KeyKind::Ed25519 => rs::Ed25519KeyPair::generate_pkcs8(&rng),
        }
        .map_err(|_| KeyError::GenerationFailed)?;
        Self::from_pkcs8_der(pkcs8.as_ref())
    }

    /// Imports an unencrypted PKCS#8 `PrivateKeyInfo` (DER). The key type is detected.
    ///
    /// RSA keys get [`SignatureAlgorithm::RsaPkcs1Sha256`]; change it with [`Self::with_algorithm`].
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        let rng = SystemRandom::new();
        if let Ok(k) = rs::EcdsaKeyPair::from_pkcs8(&rs::ECDSA_P256_SHA256_ASN1_SIGNING, der, &rng)
        {
            let named = rfc5912::SECP_256_R_1;
            let spki = spki_der(
                rfc5912::ID_EC_PUBLIC_KEY,
                Some(AnyRef::from(&named)),
                k.public_key().as_ref(),
            )?;
            return Ok(Self::new(
                Inner::Ecdsa(k),
                SignatureAlgorithm::EcdsaP256Sha256,
                KeyType::EcP256,
                der,
                spki,
                rng,
            ));
        }
        if let Ok(k) = rs::EcdsaKeyPair::from_pkcs8(&rs::ECDSA_P384_SHA384_ASN1_SIGNING, der, &rng)
        {
            let named = rfc5912::SECP_384_R_1;
            let spki = spki_der(
                rfc5912::ID_EC_PUBLIC_KEY,
                Some(AnyRef::from(&named)),
                k.public_key().as_ref(),
            )?;
            return Ok(Self::new(
                Inner::Ecdsa(k),
                SignatureAlgorithm::EcdsaP384Sha384,
                KeyType::EcP384,
                der,
                spki,
                rng,
            ));
        }
        // openssl writes PKCS#8 v1 (no public key) for Ed25519; ring's strict parser wants v2.
        if let Ok(k) = rs::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
            let spki = spki_der(rfc8410::ID_ED_25519, None, k.public_key().as_ref())?;
            return Ok(Self::new(
                Inner::Ed25519(k),
                SignatureAlgorithm::Ed25519,
                KeyType::Ed25519,
                der,
                spki,
                rng,
            ));
        }
        match rs::RsaKeyPair::from_pkcs8(der) {
            Ok(k) => {
                let bits = k.public().modulus_len() * 8;
                if bits < 2048 {
                    return Err(KeyError::RsaTooSmall(bits));
                }
                let spki = spki_der(
                    rfc5912::RSA_ENCRYPTION,
                    Some(AnyRef::NULL),
                    k.public_key().as_ref(),
                )?;
                Ok(Self::new(
                    Inner::Rsa(k),
                    SignatureAlgorithm::RsaPkcs1Sha256,
                    KeyType::Rsa,
                    der,
                    spki,
                    rng,
                ))
            }
            Err(e) => Err(KeyError::UnsupportedKey(e.to_string())),
        }
    }

    fn new(
        inner: Inner,
        alg: SignatureAlgorithm,
        key_type: KeyType,
        pkcs8: &[u8],
        spki: Vec<u8>,
        rng: SystemRandom,
    ) -> Self {
        Self {
            inner,
            alg,
            key_type,
            pkcs8: pkcs8.to_vec(),
            spki,
            rng,
        }
    }

    /// Imports a PEM `PRIVATE KEY` (unencrypted PKCS#8) block.
    pub fn from_pkcs8_pem(pem_text: &str) -> Result<Self, KeyError> {
        let block = pem::parse(pem_text).map_err(|e| KeyError::Pem(e.to_string()))?;
        if block.tag() != "PRIVATE KEY" {
            return Err(KeyError::Pem(format!(
                "expected a PRIVATE KEY block, found {}",
                block.tag()
            )));
        }
        Self::from_pkcs8_der(block.contents())
    }

    /// Chooses the RSA digest (RSA keys only; other keys accept only their own algorithm).
    pub fn with_algorithm(mut self, alg: SignatureAlgorithm) -> Result<Self, KeyError> {
        let ok = match self.key_type {
            KeyType::Rsa => matches!(
                alg,
                SignatureAlgorithm::RsaPkcs1Sha256
                    | SignatureAlgorithm::RsaPkcs1Sha384
                    | SignatureAlgorithm::RsaPkcs1Sha512
            ),
            _ => alg == self.alg,
        };
        if !ok {
            return Err(KeyError::AlgorithmMismatch {
                key: self.key_type,
                alg,
            });
        }
        self.alg = alg;
        Ok(self)
    }

    /// The key type.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// The unencrypted PKCS#8 DER. Handle with care: this is the private key.
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The unencrypted PKCS#8 as a PEM `PRIVATE KEY` block.
    pub fn to_pkcs8_pem(&self) -> String {
        pem::encode(&pem::Pem::new("PRIVATE KEY", self.pkcs8.clone()))
    }

    /// The public key as a PEM `PUBLIC KEY` block.
    pub fn public_key_pem(&self) -> String {
        pem::encode(&pem::Pem::new("PUBLIC KEY", self.spki.clone()))
    }

    /// The raw `subjectPublicKey` bits (EC point, Ed25519 key or RSAPublicKey DER).
    pub fn public_key_raw(&self) -> &[u8] {
        match &self.inner {
            Inner::Ecdsa(k) => k.public_key().as_ref(),
            Inner::Ed25519(k) => k.public_key().as_ref(),
            Inner::Rsa(k) => k.public_key().as_ref(),
        }
    }

    /// A PKCS#10 certification request (DER) for this key with the given subject.
    ///
    /// The request carries no attributes or extensions: the CA decides the profile.
    pub fn csr_der(&self, subject: &SubjectName) -> Result<Vec<u8>, KeyError> {
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = subject
            .to_rcgen()
            .map_err(|e| KeyError::Csr(e.to_string()))?;
        let csr = params
            .serialize_request(&RcgenKey(self))
            .map_err(|e| KeyError::Csr(e.to_string()))?;
        Ok(csr.der().to_vec())
    }

    /// [`Self::csr_der`] as a PEM `CERTIFICATE REQUEST` block.
    pub fn csr_pem(&self, subject: &SubjectName) -> Result<String, KeyError> {
        Ok(pem::encode(&pem::Pem::new(
            "CERTIFICATE REQUEST",
            self.csr_der(subject)?,
        )))
    }
}

impl Signer for KeyPair {
    fn algorithm(&self) -> SignatureAlgorithm {
        self.alg
    }

    fn public_key_der(&self) -> &[u8] {
        &self.spki
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignatureError> {
        match &self.inner {
            Inner::Ecdsa(k) => k
                .sign(&self.rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| SignatureError::SigningFailed("ECDSA".into())),
            Inner::Ed25519(k) => Ok(k.sign(message).as_ref().to_vec()),
            Inner::Rsa(k) => {
                let padding: &'static dyn rs::RsaEncoding = match self.alg {
                    SignatureAlgorithm::RsaPkcs1Sha384 => &rs::RSA_PKCS1_SHA384,
                    SignatureAlgorithm::RsaPkcs1Sha512 => &rs::RSA_PKCS1_SHA512,
                    _ => &rs::RSA_PKCS1_SHA256,
                };
                let mut sig = vec![0u8; k.public().modulus_len()];
                k.sign(padding, &self.rng, message, &mut sig)
                    .map_err(|_| SignatureError::SigningFailed("RSA".into()))?;
                Ok(sig)
            }
        }
    }
}

/// Adapter that lets rcgen sign certificates and CSRs with any of our [`Signer`]s.
pub(crate) struct RcgenKey<'a, S: Signer + ?Sized>(pub(crate) &'a S);

/// The rcgen algorithm for one of ours.
pub(crate) fn rcgen_algorithm(alg: SignatureAlgorithm) -> &'static rcgen::SignatureAlgorithm {
    match alg {
        SignatureAlgorithm::EcdsaP256Sha256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        SignatureAlgorithm::EcdsaP384Sha384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        SignatureAlgorithm::Ed25519 => &rcgen::PKCS_ED25519,
        SignatureAlgorithm::RsaPkcs1Sha256 => &rcgen::PKCS_RSA_SHA256,
        SignatureAlgorithm::RsaPkcs1Sha384 => &rcgen::PKCS_RSA_SHA384,
        SignatureAlgorithm::RsaPkcs1Sha512 => &rcgen::PKCS_RSA_SHA512,
    }
}

/// The raw `subjectPublicKey` bits of a DER SPKI, or an empty slice if it does not parse.
pub(crate) fn spki_key_bits(spki: &[u8]) -> &[u8] {
    crate::signature::PublicKeyRef::from_spki_der(spki)
        .map(|k| k.key)
        .unwrap_or(&[])
}

impl<S: Signer + ?Sized> rcgen::PublicKeyData for RcgenKey<'_, S> {
    fn der_bytes(&self) -> &[u8] {
        spki_key_bits(self.0.public_key_der())
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        rcgen_algorithm(self.0.algorithm())
    }

    fn subject_public_key_info(&self) -> Vec<u8> {
        self.0.public_key_der().to_vec()
    }
}

impl<S: Signer + ?Sized> rcgen::SigningKey for RcgenKey<'_, S> {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.0.sign(msg).map_err(|_| rcgen::Error::RingUnspecified)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::verify;

    #[test]
    fn generate_sign_verify_each_kind() {
        for kind in [KeyKind::EcdsaP256, KeyKind::EcdsaP384, KeyKind::Ed25519] {
            let k = KeyPair::generate(kind).unwrap();
            let sig = k.sign(b"msg").unwrap();
            verify(k.public_key_der(), k.algorithm(), b"msg", &sig).unwrap();
            assert!(verify(k.public_key_der(), k.algorithm(), b"msh", &sig).is_err());
            // PKCS#8 round trip keeps the public key.
            let again = KeyPair::from_pkcs8_pem(&k.to_pkcs8_pem()).unwrap();
            assert_eq!(again.public_key_der(), k.public_key_der());
            assert_eq!(again.key_type(), k.key_type());
        }
        assert_eq!(
            KeyPair::generate(KeyKind::default()).unwrap().algorithm(),
            SignatureAlgorithm::EcdsaP256Sha256
        );
    }

    #[test]
    fn garbage_is_rejected() {
        assert!(matches!(
            KeyPair::from_pkcs8_der(b"\x30\x03\x02\x01\x00"),
            Err(KeyError::UnsupportedKey(_))
        ));
        let k = KeyPair::generate(KeyKind::Ed25519).unwrap();
        assert!(matches!(
            k.with_algorithm(SignatureAlgorithm::RsaPkcs1Sha256),
            Err(KeyError::AlgorithmMismatch { .. })
        ));
    }

    #[test]
    fn debug_hides_key() {
        let k = KeyPair::generate(KeyKind::EcdsaP256).unwrap();
        let s = format!("{k:?}");
        assert!(s.contains("EcP256") && !s.contains("pkcs8"));
    }
}
