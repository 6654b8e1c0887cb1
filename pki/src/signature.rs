//! Signature algorithms, the [`Signer`] abstraction and signature verification with ring.
//!
//! Every signature the bus makes or checks goes through here, so that the choice of crypto
//! (ring only, ARCHITECTURE.md §2) and the mapping between ASN.1 algorithm identifiers and
//! ring algorithms live in one place.

use const_oid::ObjectIdentifier;
use const_oid::db::{rfc5912, rfc8410};
use der::Decode;
use der::asn1::AnyRef;
use spki::SubjectPublicKeyInfoRef;

use crate::digest::DigestAlgorithm;

/// Why a signature could not be made or checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The signature does not verify under the key.
    #[error("signature does not verify")]
    Invalid,
    /// The algorithm identifier is not one we support.
    #[error("unsupported signature algorithm {0}")]
    UnsupportedAlgorithm(String),
    /// The public key is malformed or its type does not fit the algorithm.
    #[error("public key is malformed or does not match the signature algorithm: {0}")]
    BadKey(String),
    /// The signing operation itself failed.
    #[error("signing failed: {0}")]
    SigningFailed(String),
}

/// A signature algorithm: key type plus digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignatureAlgorithm {
    /// ECDSA on P-256 with SHA-256, DER-encoded signature (the default).
    EcdsaP256Sha256,
    /// ECDSA on P-384 with SHA-384, DER-encoded signature.
    EcdsaP384Sha384,
    /// Ed25519 (PureEdDSA).
    Ed25519,
    /// RSA PKCS#1 v1.5 with SHA-256.
    RsaPkcs1Sha256,
    /// RSA PKCS#1 v1.5 with SHA-384.
    RsaPkcs1Sha384,
    /// RSA PKCS#1 v1.5 with SHA-512.
    RsaPkcs1Sha512,
}

const ID_EC_PUBLIC_KEY: ObjectIdentifier = rfc5912::ID_EC_PUBLIC_KEY;
const SECP256R1: ObjectIdentifier = rfc5912::SECP_256_R_1;
const SECP384R1: ObjectIdentifier = rfc5912::SECP_384_R_1;

/// DER of the ASN.1 NULL that RSA algorithm identifiers carry as parameters.
const DER_NULL: [u8; 2] = [0x05, 0x00];

impl SignatureAlgorithm {
    /// The algorithm identifier's object identifier.
    pub const fn oid(self) -> ObjectIdentifier {
        match self {
            Self::EcdsaP256Sha256 => rfc5912::ECDSA_WITH_SHA_256,
            Self::EcdsaP384Sha384 => rfc5912::ECDSA_WITH_SHA_384,
            Self::Ed25519 => rfc8410::ID_ED_25519,
            Self::RsaPkcs1Sha256 => rfc5912::SHA_256_WITH_RSA_ENCRYPTION,
            Self::RsaPkcs1Sha384 => rfc5912::SHA_384_WITH_RSA_ENCRYPTION,
            Self::RsaPkcs1Sha512 => rfc5912::SHA_512_WITH_RSA_ENCRYPTION,
        }
    }

    /// Whether the algorithm identifier carries an explicit NULL parameter (RSA does, per RFC 4055).
    pub const fn has_null_params(self) -> bool {
        matches!(
            self,
            Self::RsaPkcs1Sha256 | Self::RsaPkcs1Sha384 | Self::RsaPkcs1Sha512
        )
    }

    /// The DER encoding of the parameters, if the identifier has any.
    pub fn params_der(self) -> Option<&'static [u8]> {
        self.has_null_params().then_some(&DER_NULL[..])
    }

    /// The digest the algorithm uses, as CMS `digestAlgorithm` should name it.
    pub const fn digest(self) -> DigestAlgorithm {
        match self {
            Self::EcdsaP256Sha256 | Self::RsaPkcs1Sha256 => DigestAlgorithm::Sha256,
            Self::EcdsaP384Sha384 | Self::RsaPkcs1Sha384 => DigestAlgorithm::Sha384,
            // CMS with Ed25519 uses SHA-512 for the message digest (RFC 8419).
            Self::Ed25519 | Self::RsaPkcs1Sha512 => DigestAlgorithm::Sha512,
        }
    }

    /// The algorithm for an algorithm identifier's OID.
    ///
    /// ECDSA with a digest that does not match the curve (P-256 with SHA-384) is not accepted:
    /// nothing in our profile produces it, and refusing keeps the set of accepted inputs small.
    pub fn from_oid(oid: &ObjectIdentifier) -> Result<Self, SignatureError> {
        [
            Self::EcdsaP256Sha256,
            Self::EcdsaP384Sha384,
            Self::Ed25519,
            Self::RsaPkcs1Sha256,
            Self::RsaPkcs1Sha384,
            Self::RsaPkcs1Sha512,
        ]
        .into_iter()
        .find(|a| a.oid() == *oid)
        .ok_or_else(|| SignatureError::UnsupportedAlgorithm(oid.to_string()))
    }

    fn ring_verification(self) -> &'static dyn ring::signature::VerificationAlgorithm {
        use ring::signature as s;
        match self {
            Self::EcdsaP256Sha256 => &s::ECDSA_P256_SHA256_ASN1,
            Self::EcdsaP384Sha384 => &s::ECDSA_P384_SHA384_ASN1,
            Self::Ed25519 => &s::ED25519,
            Self::RsaPkcs1Sha256 => &s::RSA_PKCS1_2048_8192_SHA256,
            Self::RsaPkcs1Sha384 => &s::RSA_PKCS1_2048_8192_SHA384,
            Self::RsaPkcs1Sha512 => &s::RSA_PKCS1_2048_8192_SHA512,
        }
    }

    /// Checks that a public key of type `key` (from its SPKI) can be used with this algorithm.
    fn check_key(self, key: &KeyType) -> Result<(), SignatureError> {
        let ok = matches!(
            (self, key),
            (Self::EcdsaP256Sha256, KeyType::EcP256)
                | (Self::EcdsaP384Sha384, KeyType::EcP384)
                | (Self::Ed25519, KeyType::Ed25519)
                | (
                    Self::RsaPkcs1Sha256 | Self::RsaPkcs1Sha384 | Self::RsaPkcs1Sha512,
                    KeyType::Rsa
                )
        );
        if ok {
            Ok(())
        } else {
            Err(SignatureError::BadKey(format!(
                "a {key:?} key cannot verify {self:?}"
            )))
        }
    }
}

/// The type of a public key, read from its `SubjectPublicKeyInfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// ECDSA on P-256.
    EcP256,
    /// ECDSA on P-384.
    EcP384,
    /// Ed25519.
    Ed25519,
    /// RSA (any size; ring verifies 2048 to 8192 bits).
    Rsa,
}

/// A parsed `SubjectPublicKeyInfo`: key type and the raw key bytes ring expects.
#[derive(Debug, Clone, Copy)]
pub struct PublicKeyRef<'a> {
    /// The key type.
    pub key_type: KeyType,
    /// The `subjectPublicKey` bit string's bytes (EC point, Ed25519 key or RSAPublicKey DER).
    pub key: &'a [u8],
}

impl<'a> PublicKeyRef<'a> {
    /// Reads a DER `SubjectPublicKeyInfo`.
    pub fn from_spki_der(spki_der: &'a [u8]) -> Result<Self, SignatureError> {
        let spki = SubjectPublicKeyInfoRef::from_der(spki_der)
            .map_err(|e| SignatureError::BadKey(e.to_string()))?;
        let key = spki
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| SignatureError::BadKey("public key has unused bits".into()))?;
        let alg = spki.algorithm.oid;
        let key_type = if alg == ID_EC_PUBLIC_KEY {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p: &AnyRef<'_>| p.decode_as::<ObjectIdentifier>().ok())
                .ok_or_else(|| SignatureError::BadKey("EC key without a named curve".into()))?;
            match curve {
                SECP256R1 => KeyType::EcP256,
                SECP384R1 => KeyType::EcP384,
                other => {
                    return Err(SignatureError::UnsupportedAlgorithm(format!(
                        "curve {other}"
                    )));
                }
            }
        } else if alg == rfc8410::ID_ED_25519 {
            KeyType::Ed25519
        } else if alg == rfc5912::RSA_ENCRYPTION {
            KeyType::Rsa
        } else {
            return Err(SignatureError::UnsupportedAlgorithm(format!(
                "key type {alg}"
            )));
        };
        Ok(Self { key_type, key })
    }
}

/// Verifies `signature` over `message` with the key in `spki_der` under `algorithm`.
pub fn verify(
    spki_der: &[u8],
    algorithm: SignatureAlgorithm,
    message: &[u8],
    signature: &[u8],
) -> Result<(), SignatureError> {
    let key = PublicKeyRef::from_spki_der(spki_der)?;
    verify_with_key(&key, algorithm, message, signature)
}

/// Verifies with an already parsed key, for callers that cache parsed certificates.
pub fn verify_with_key(
    key: &PublicKeyRef<'_>,
    algorithm: SignatureAlgorithm,
    message: &[u8],
    signature: &[u8],
) -> Result<(), SignatureError> {
    algorithm.check_key(&key.key_type)?;
    ring::signature::UnparsedPublicKey::new(algorithm.ring_verification(), key.key)
        .verify(message, signature)
        .map_err(|_| SignatureError::Invalid)
}

/// Something that signs with a private key: a software-token key today, a PKCS#11 key later.
pub trait Signer: Send + Sync {
    /// The algorithm this signer produces.
    fn algorithm(&self) -> SignatureAlgorithm;
    /// The DER `SubjectPublicKeyInfo` of the key.
    fn public_key_der(&self) -> &[u8];
    /// Signs `message` (the signer hashes it).
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignatureError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, Ed25519KeyPair};

    fn p256_spki(pk: &[u8]) -> Vec<u8> {
        // SEQUENCE { SEQUENCE { id-ecPublicKey, secp256r1 }, BIT STRING pk }
        let mut alg = vec![0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
        alg.extend_from_slice(&[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]);
        let mut out = vec![0x30, 0x59, 0x30, alg.len() as u8];
        out.extend(alg);
        out.extend([0x03, (pk.len() + 1) as u8, 0x00]);
        out.extend_from_slice(pk);
        out
    }

    #[test]
    fn ecdsa_round_trip_and_tamper() {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        use ring::signature::KeyPair;
        let spki = p256_spki(kp.public_key().as_ref());
        let sig = kp.sign(&rng, b"hello").unwrap();
        verify(
            &spki,
            SignatureAlgorithm::EcdsaP256Sha256,
            b"hello",
            sig.as_ref(),
        )
        .unwrap();
        assert_eq!(
            verify(
                &spki,
                SignatureAlgorithm::EcdsaP256Sha256,
                b"hellp",
                sig.as_ref()
            ),
            Err(SignatureError::Invalid)
        );
        assert!(matches!(
            verify(&spki, SignatureAlgorithm::Ed25519, b"hello", sig.as_ref()),
            Err(SignatureError::BadKey(_))
        ));
        assert!(matches!(
            verify(
                &spki[..20],
                SignatureAlgorithm::EcdsaP256Sha256,
                b"hello",
                sig.as_ref()
            ),
            Err(SignatureError::BadKey(_))
        ));
    }

    #[test]
    fn ed25519_spki() {
        let rng = SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let kp = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        use ring::signature::KeyPair;
        let mut spki = vec![
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ];
        spki.extend_from_slice(kp.public_key().as_ref());
        let sig = kp.sign(b"m");
        verify(&spki, SignatureAlgorithm::Ed25519, b"m", sig.as_ref()).unwrap();
        assert_eq!(
            PublicKeyRef::from_spki_der(&spki).unwrap().key_type,
            KeyType::Ed25519
        );
    }

    #[test]
    fn algorithm_oids_round_trip() {
        for a in [
            SignatureAlgorithm::EcdsaP256Sha256,
            SignatureAlgorithm::EcdsaP384Sha384,
            SignatureAlgorithm::Ed25519,
            SignatureAlgorithm::RsaPkcs1Sha256,
            SignatureAlgorithm::RsaPkcs1Sha384,
            SignatureAlgorithm::RsaPkcs1Sha512,
        ] {
            assert_eq!(SignatureAlgorithm::from_oid(&a.oid()), Ok(a));
        }
        assert!(matches!(
            SignatureAlgorithm::from_oid(&rfc5912::ID_SHA_256),
            Err(SignatureError::UnsupportedAlgorithm(_))
        ));
    }
}
