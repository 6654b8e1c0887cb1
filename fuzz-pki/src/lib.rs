//! Shared fixtures for the fuzz targets: a CA, an OCSP responder, a TSA and a signer, made
//! once per process with rcgen and ring.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, OnceLock};

use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
use trustbus_pki::signature::{SignatureAlgorithm, SignatureError, Signer};

/// A ring P-256 signer.
pub struct FuzzSigner {
    key: EcdsaKeyPair,
    spki: Vec<u8>,
}

impl Signer for FuzzSigner {
    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::EcdsaP256Sha256
    }
    fn public_key_der(&self) -> &[u8] {
        &self.spki
    }
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignatureError> {
        self.key
            .sign(&SystemRandom::new(), message)
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| SignatureError::SigningFailed("ring".into()))
    }
}

fn signer(kp: &KeyPair) -> Arc<FuzzSigner> {
    let key = EcdsaKeyPair::from_pkcs8(
        &ECDSA_P256_SHA256_ASN1_SIGNING,
        &kp.serialize_der(),
        &SystemRandom::new(),
    )
    .unwrap();
    Arc::new(FuzzSigner {
        key,
        spki: rcgen::PublicKeyData::subject_public_key_info(kp),
    })
}

/// Certificates and keys for the targets.
pub struct Fixture {
    /// CA certificate (DER).
    pub ca: Vec<u8>,
    /// CA key.
    pub ca_signer: Arc<FuzzSigner>,
    /// A member certificate (DER).
    pub leaf: Vec<u8>,
    /// The member's key.
    pub leaf_signer: Arc<FuzzSigner>,
    /// A TSA certificate (DER).
    pub tsa: Vec<u8>,
    /// The TSA's key.
    pub tsa_signer: Arc<FuzzSigner>,
}

/// The process-wide fixture.
pub fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let ca_key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, "Fuzz CA");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = p.self_signed(&ca_key).unwrap();
        let ca_signer = signer(&ca_key);
        let issuer = Issuer::new(p, ca_key);

        let leaf_key = KeyPair::generate().unwrap();
        let mut lp = CertificateParams::new(Vec::<String>::new()).unwrap();
        lp.distinguished_name
            .push(DnType::CommonName, "Fuzz member");
        lp.extended_key_usages = vec![ExtendedKeyUsagePurpose::Any];
        let leaf = lp.signed_by(&leaf_key, &issuer).unwrap();

        let tsa_key = KeyPair::generate().unwrap();
        let mut tp = CertificateParams::new(Vec::<String>::new()).unwrap();
        tp.distinguished_name.push(DnType::CommonName, "Fuzz TSA");
        let eku = vec![
            0x30, 0x0a, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x08,
        ];
        let mut ext = CustomExtension::from_oid_content(&[2, 5, 29, 37], eku);
        ext.set_criticality(true);
        tp.custom_extensions = vec![ext];
        let tsa = tp.signed_by(&tsa_key, &issuer).unwrap();

        Fixture {
            ca: ca.der().to_vec(),
            ca_signer,
            leaf: leaf.der().to_vec(),
            leaf_signer: signer(&leaf_key),
            tsa: tsa.der().to_vec(),
            tsa_signer: signer(&tsa_key),
        }
    })
}
