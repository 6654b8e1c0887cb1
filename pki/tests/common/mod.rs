//! Test PKI: a CA, a delegated OCSP responder, a TSA, signers, and a ring-backed test `Signer`.
//!
//! Built with rcgen on every run (no checked-in keys). The real development CA lives in another
//! module; tests switch to it once it has landed.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
use time::{Duration, OffsetDateTime};
use trustbus_pki::signature::{SignatureAlgorithm, SignatureError, Signer};

/// A P-256 key held by ring, with its rcgen twin for certificate issuance and PEM export.
pub struct TestSigner {
    key: EcdsaKeyPair,
    spki: Vec<u8>,
    rng: SystemRandom,
    pub pkcs8_pem: String,
}

impl TestSigner {
    pub fn from_rcgen(kp: &KeyPair) -> Self {
        let rng = SystemRandom::new();
        let key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &kp.serialize_der(), &rng)
                .unwrap();
        Self {
            key,
            spki: rcgen::PublicKeyData::subject_public_key_info(kp),
            rng,
            pkcs8_pem: kp.serialize_pem(),
        }
    }
}

impl Signer for TestSigner {
    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::EcdsaP256Sha256
    }
    fn public_key_der(&self) -> &[u8] {
        &self.spki
    }
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignatureError> {
        self.key
            .sign(&self.rng, message)
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| SignatureError::SigningFailed("ring".into()))
    }
}

/// A certificate with its key.
pub struct Identity {
    pub cert_der: Vec<u8>,
    pub cert_pem: String,
    pub signer: Arc<TestSigner>,
    pub serial: u64,
}

impl Identity {
    pub fn signer(&self) -> Arc<dyn Signer> {
        self.signer.clone()
    }
    /// The serial as it appears in the certificate's INTEGER content.
    pub fn serial_bytes(&self) -> Vec<u8> {
        let c = <x509_cert::Certificate as der::Decode>::from_der(&self.cert_der).unwrap();
        c.tbs_certificate.serial_number.as_bytes().to_vec()
    }
}

pub struct Ca {
    pub id: Identity,
    issuer: Issuer<'static, KeyPair>,
    next_serial: std::cell::Cell<u64>,
}

fn dn(cn: &str) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    d.push(DnType::CountryName, "EE");
    d.push(DnType::OrganizationName, "Trustbus Test");
    d.push(DnType::CommonName, cn);
    d
}

fn base_params(cn: &str, serial: u64) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name = dn(cn);
    let now = OffsetDateTime::now_utc();
    p.not_before = now - Duration::days(1);
    p.not_after = now + Duration::days(365);
    p.serial_number = Some(SerialNumber::from(serial));
    p
}

impl Ca {
    pub fn new(cn: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let signer = Arc::new(TestSigner::from_rcgen(&key));
        let mut p = base_params(cn, 1);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = p.self_signed(&key).unwrap();
        let id = Identity {
            cert_der: cert.der().to_vec(),
            cert_pem: cert.pem(),
            signer,
            serial: 1,
        };
        Self {
            id,
            issuer: Issuer::new(p, key),
            next_serial: std::cell::Cell::new(0x1000),
        }
    }

    fn issue_with(&self, cn: &str, f: impl FnOnce(&mut CertificateParams)) -> Identity {
        let key = KeyPair::generate().unwrap();
        let serial = self.next_serial.get();
        self.next_serial.set(serial + 1);
        let mut p = base_params(cn, serial);
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::ContentCommitment,
        ];
        f(&mut p);
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        Identity {
            cert_der: cert.der().to_vec(),
            cert_pem: cert.pem(),
            signer: Arc::new(TestSigner::from_rcgen(&key)),
            serial,
        }
    }

    /// A member signing certificate.
    pub fn issue_signer(&self, cn: &str) -> Identity {
        self.issue_with(cn, |_| {})
    }

    /// A delegated OCSP responder certificate (EKU id-kp-OCSPSigning).
    pub fn issue_ocsp_responder(&self, cn: &str) -> Identity {
        self.issue_with(cn, |p| {
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::OcspSigning];
        })
    }

    /// A certificate whose validity period is set by the caller.
    pub fn issue_with_validity(
        &self,
        cn: &str,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Identity {
        self.issue_with(cn, |p| {
            p.not_before = not_before;
            p.not_after = not_after;
        })
    }

    /// A TSA certificate: EKU id-kp-timeStamping only, marked critical (RFC 3161 2.3).
    pub fn issue_tsa(&self, cn: &str) -> Identity {
        self.issue_with(cn, |p| {
            let eku = vec![
                0x30, 0x0a, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x08,
            ];
            let mut ext = CustomExtension::from_oid_content(&[2, 5, 29, 37], eku);
            ext.set_criticality(true);
            p.custom_extensions = vec![ext];
            p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        })
    }
}

/// A scratch directory for openssl interop files.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    pub fn write(&self, name: &str, data: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, data).unwrap();
        p
    }
    pub fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).unwrap()
    }
}

/// Runs openssl with `args` in `dir`, returning (success, stdout+stderr).
pub fn openssl(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Hex of bytes, uppercase, as openssl's index.txt wants serials.
pub fn hex_upper(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}
