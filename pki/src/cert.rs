//! A parsed X.509 certificate: the DER bytes plus the fields the bus needs, read once.
//!
//! Parsing uses x509-parser; the parsed view borrows the input, so [`Certificate`] copies out
//! what later code needs (names, serial, validity, SPKI, extensions, the signed part and the
//! signature) and keeps the DER. Cloning is cheap (the bytes are reference counted).

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use ::time::OffsetDateTime;
use x509_parser::der_parser::asn1_rs::Tag;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Why a certificate could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// The DER does not parse as an X.509 certificate.
    #[error("not a valid X.509 certificate: {0}")]
    Parse(String),
    /// Bytes follow the certificate.
    #[error("trailing data after the certificate")]
    TrailingData,
    /// The PEM text is malformed or holds no `CERTIFICATE` block.
    #[error("PEM error: {0}")]
    Pem(String),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Key usage bits (RFC 5280 §4.2.1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeyUsage {
    /// digitalSignature
    pub digital_signature: bool,
    /// nonRepudiation / contentCommitment
    pub non_repudiation: bool,
    /// keyEncipherment
    pub key_encipherment: bool,
    /// dataEncipherment
    pub data_encipherment: bool,
    /// keyAgreement
    pub key_agreement: bool,
    /// keyCertSign
    pub key_cert_sign: bool,
    /// cRLSign
    pub crl_sign: bool,
}

/// Extended key usage purposes (RFC 5280 §4.2.1.12).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExtKeyUsage {
    /// anyExtendedKeyUsage
    pub any: bool,
    /// id-kp-serverAuth
    pub server_auth: bool,
    /// id-kp-clientAuth
    pub client_auth: bool,
    /// id-kp-codeSigning
    pub code_signing: bool,
    /// id-kp-emailProtection
    pub email_protection: bool,
    /// id-kp-timeStamping
    pub time_stamping: bool,
    /// id-kp-OCSPSigning
    pub ocsp_signing: bool,
    /// Any other purposes, as dotted OIDs.
    pub other: Vec<String>,
    /// Whether the extension is marked critical.
    pub critical: bool,
}

/// Basic constraints (RFC 5280 §4.2.1.9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BasicConstraints {
    /// cA
    pub ca: bool,
    /// pathLenConstraint
    pub path_len: Option<u32>,
}

/// The parameters of an algorithm identifier, as far as signature checking cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlgParams {
    /// No parameters (ECDSA, Ed25519).
    Absent,
    /// An ASN.1 NULL (RSA PKCS#1 v1.5).
    Null,
    /// Anything else.
    Other,
}

/// One attribute of a distinguished name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAttribute {
    /// The attribute type, dotted OID.
    pub oid: String,
    /// The value if it is a string type we read (PrintableString, UTF8String, IA5String, NumericString).
    pub value: Option<String>,
}

#[derive(Debug)]
struct Fields {
    der: Vec<u8>,
    tbs: std::ops::Range<usize>,
    subject_der: Vec<u8>,
    issuer_der: Vec<u8>,
    subject: String,
    issuer: String,
    subject_attrs: Vec<NameAttribute>,
    serial: Vec<u8>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    spki: Vec<u8>,
    sig_alg_oid: String,
    sig_alg_params: AlgParams,
    signature: Vec<u8>,
    key_usage: Option<KeyUsage>,
    ext_key_usage: Option<ExtKeyUsage>,
    basic_constraints: Option<BasicConstraints>,
    fingerprint: [u8; 32],
}

/// A parsed certificate. Equality is on the DER bytes.
#[derive(Clone)]
pub struct Certificate(Arc<Fields>);

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("subject", &self.0.subject)
            .field("issuer", &self.0.issuer)
            .field("serial", &to_hex(&self.0.serial))
            .field("fingerprint", &self.fingerprint_hex())
            .finish()
    }
}

impl PartialEq for Certificate {
    fn eq(&self, other: &Self) -> bool {
        self.0.der == other.0.der
    }
}
impl Eq for Certificate {}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Lower-case hex without separators.
pub fn to_hex(bytes: &[u8]) -> String {
    // A table instead of `write!` per byte: fingerprints are formatted on hot paths (pool
    // checks, log keys), where the formatting machinery cost more than the hash itself.
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(HEX_DIGITS[usize::from(b >> 4)]));
        s.push(char::from(HEX_DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// Whether `fingerprints` (SHA-256 fingerprints in hex, either case, as global configuration
/// lists a server's registered certificates) contains `fp`.
pub fn fingerprint_listed(fingerprints: &[String], fp: &[u8; 32]) -> bool {
    fingerprints.iter().any(|f| hex_matches(f, fp))
}

/// Whether `hex` (either case, no separators) spells exactly `bytes`.
pub fn hex_matches(hex: &str, bytes: &[u8]) -> bool {
    let hex = hex.as_bytes();
    hex.len() == bytes.len() * 2
        && hex.chunks_exact(2).zip(bytes).all(|(pair, b)| {
            pair[0].to_ascii_lowercase() == HEX_DIGITS[usize::from(b >> 4)]
                && pair[1].to_ascii_lowercase() == HEX_DIGITS[usize::from(b & 0x0f)]
        })
}

fn bytes_range(outer: &[u8], inner: &[u8]) -> Option<std::ops::Range<usize>> {
    let start = (inner.as_ptr() as usize).checked_sub(outer.as_ptr() as usize)?;
    let end = start.checked_add(inner.len())?;
    (end <= outer.len()).then_some(start..end)
}

impl Certificate {
    /// Parses one DER certificate. Trailing bytes are an error.
    pub fn from_der(der: impl Into<Vec<u8>>) -> Result<Self, CertError> {
        let der = der.into();
        let (rest, x) =
            X509Certificate::from_der(&der).map_err(|e| CertError::Parse(e.to_string()))?;
        if !rest.is_empty() {
            return Err(CertError::TrailingData);
        }
        let tbs_raw: &[u8] = x.tbs_certificate.as_ref();
        let tbs = bytes_range(&der, tbs_raw)
            .ok_or_else(|| CertError::Parse("cannot locate tbsCertificate".into()))?;
        let tbs_cert = &x.tbs_certificate;
        let key_usage = tbs_cert
            .key_usage()
            .map_err(|e| CertError::Parse(e.to_string()))?
            .map(|ku| KeyUsage {
                digital_signature: ku.value.digital_signature(),
                non_repudiation: ku.value.non_repudiation(),
                key_encipherment: ku.value.key_encipherment(),
                data_encipherment: ku.value.data_encipherment(),
                key_agreement: ku.value.key_agreement(),
                key_cert_sign: ku.value.key_cert_sign(),
                crl_sign: ku.value.crl_sign(),
            });
        let ext_key_usage = tbs_cert
            .extended_key_usage()
            .map_err(|e| CertError::Parse(e.to_string()))?
            .map(|e| ExtKeyUsage {
                any: e.value.any,
                server_auth: e.value.server_auth,
                client_auth: e.value.client_auth,
                code_signing: e.value.code_signing,
                email_protection: e.value.email_protection,
                time_stamping: e.value.time_stamping,
                ocsp_signing: e.value.ocsp_signing,
                other: e.value.other.iter().map(|o| o.to_id_string()).collect(),
                critical: e.critical,
            });
        let basic_constraints = tbs_cert
            .basic_constraints()
            .map_err(|e| CertError::Parse(e.to_string()))?
            .map(|b| BasicConstraints {
                ca: b.value.ca,
                path_len: b.value.path_len_constraint,
            });
        let subject_attrs = tbs_cert
            .subject
            .iter_attributes()
            .map(|a| NameAttribute {
                oid: a.attr_type().to_id_string(),
                value: a.as_str().ok().map(str::to_owned),
            })
            .collect();
        let fingerprint = sha256(&der);
        let fields = Fields {
            tbs,
            subject_der: tbs_cert.subject.as_raw().to_vec(),
            issuer_der: tbs_cert.issuer.as_raw().to_vec(),
            subject: tbs_cert.subject.to_string(),
            issuer: tbs_cert.issuer.to_string(),
            subject_attrs,
            serial: tbs_cert.raw_serial().to_vec(),
            not_before: tbs_cert.validity.not_before.to_datetime(),
            not_after: tbs_cert.validity.not_after.to_datetime(),
            spki: tbs_cert.subject_pki.raw.to_vec(),
            sig_alg_oid: x.signature_algorithm.algorithm.to_id_string(),
            sig_alg_params: match &x.signature_algorithm.parameters {
                None => AlgParams::Absent,
                Some(p) if p.tag() == Tag::Null && p.data.is_empty() => AlgParams::Null,
                Some(_) => AlgParams::Other,
            },
            signature: x.signature_value.data.to_vec(),
            key_usage,
            ext_key_usage,
            basic_constraints,
            fingerprint,
            der: Vec::new(),
        };
        Ok(Self(Arc::new(Fields { der, ..fields })))
    }

    /// Parses the first `CERTIFICATE` block of PEM text.
    pub fn from_pem(text: &str) -> Result<Self, CertError> {
        Self::all_from_pem(text)?
            .into_iter()
            .next()
            .ok_or_else(|| CertError::Pem("no CERTIFICATE block".into()))
    }

    /// Parses every `CERTIFICATE` block of PEM text (other blocks are skipped).
    pub fn all_from_pem(text: &str) -> Result<Vec<Self>, CertError> {
        ::pem::parse_many(text)
            .map_err(|e| CertError::Pem(e.to_string()))?
            .into_iter()
            .filter(|p| p.tag() == "CERTIFICATE")
            .map(|p| Self::from_der(p.into_contents()))
            .collect()
    }

    /// Reads certificates from bytes that are either PEM text or one DER certificate.
    pub fn all_from_bytes(bytes: &[u8]) -> Result<Vec<Self>, CertError> {
        match std::str::from_utf8(bytes) {
            Ok(text) if text.contains("-----BEGIN") => Self::all_from_pem(text),
            _ => Ok(vec![Self::from_der(bytes)?]),
        }
    }

    /// Reads every certificate in a PEM or DER file.
    pub fn read_file(path: &Path) -> Result<Vec<Self>, CertError> {
        let bytes = std::fs::read(path).map_err(|source| CertError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::all_from_bytes(&bytes)
    }

    /// Writes certificates as concatenated PEM blocks.
    pub fn write_pem_file(path: &Path, certs: &[Self]) -> Result<(), CertError> {
        let text: String = certs.iter().map(Self::to_pem).collect();
        std::fs::write(path, text).map_err(|source| CertError::Io {
            path: path.display().to_string(),
            source,
        })
    }

    /// The PEM `CERTIFICATE` block.
    pub fn to_pem(&self) -> String {
        ::pem::encode(&::pem::Pem::new("CERTIFICATE", self.0.der.clone()))
    }

    /// The DER encoding.
    pub fn der(&self) -> &[u8] {
        &self.0.der
    }

    /// The DER of `tbsCertificate` (what the issuer signed).
    pub fn tbs_der(&self) -> &[u8] {
        &self.0.der[self.0.tbs.clone()]
    }

    /// The subject in RFC 4514-like text (for messages; never compare on it).
    pub fn subject(&self) -> &str {
        &self.0.subject
    }

    /// The issuer in RFC 4514-like text.
    pub fn issuer(&self) -> &str {
        &self.0.issuer
    }

    /// The DER of the subject `Name`.
    pub fn subject_der(&self) -> &[u8] {
        &self.0.subject_der
    }

    /// The DER of the issuer `Name`.
    pub fn issuer_der(&self) -> &[u8] {
        &self.0.issuer_der
    }

    /// The subject's attributes, in order.
    pub fn subject_attributes(&self) -> &[NameAttribute] {
        &self.0.subject_attrs
    }

    /// The serial number's content bytes as encoded (big-endian, may start with 0x00).
    pub fn serial(&self) -> &[u8] {
        &self.0.serial
    }

    /// The serial number in lower-case hex with leading zero bytes removed.
    pub fn serial_hex(&self) -> String {
        to_hex(crate::revocation::trim_serial(&self.0.serial))
    }

    /// Start of the validity period.
    pub fn not_before(&self) -> OffsetDateTime {
        self.0.not_before
    }

    /// End of the validity period.
    pub fn not_after(&self) -> OffsetDateTime {
        self.0.not_after
    }

    /// Whether `at` lies within the validity period (both ends inclusive).
    pub fn is_valid_at(&self, at: OffsetDateTime) -> bool {
        self.0.not_before <= at && at <= self.0.not_after
    }

    /// The DER `SubjectPublicKeyInfo`.
    pub fn spki_der(&self) -> &[u8] {
        &self.0.spki
    }

    /// The outer signature algorithm OID, dotted.
    pub fn signature_algorithm_oid(&self) -> &str {
        &self.0.sig_alg_oid
    }

    /// What the outer signature algorithm identifier carries as parameters.
    pub fn signature_algorithm_params(&self) -> AlgParams {
        self.0.sig_alg_params
    }

    /// The signature bits.
    pub fn signature(&self) -> &[u8] {
        &self.0.signature
    }

    /// The key usage extension, if present.
    pub fn key_usage(&self) -> Option<&KeyUsage> {
        self.0.key_usage.as_ref()
    }

    /// The extended key usage extension, if present.
    pub fn ext_key_usage(&self) -> Option<&ExtKeyUsage> {
        self.0.ext_key_usage.as_ref()
    }

    /// The basic constraints extension, if present.
    pub fn basic_constraints(&self) -> Option<&BasicConstraints> {
        self.0.basic_constraints.as_ref()
    }

    /// Whether basic constraints say this is a CA.
    pub fn is_ca(&self) -> bool {
        self.0.basic_constraints.is_some_and(|b| b.ca)
    }

    /// Whether the subject and issuer names are equal (a self-issued certificate).
    pub fn is_self_issued(&self) -> bool {
        self.0.subject_der == self.0.issuer_der
    }

    /// SHA-256 of the DER: the certificate's fingerprint.
    pub fn fingerprint(&self) -> &[u8; 32] {
        &self.0.fingerprint
    }

    /// The fingerprint in lower-case hex without separators.
    pub fn fingerprint_hex(&self) -> String {
        to_hex(&self.0.fingerprint)
    }
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::{fingerprint_listed, hex_matches, to_hex};
    use proptest::prelude::*;

    #[test]
    fn to_hex_is_lower_case_without_separators() {
        assert_eq!(to_hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
        assert_eq!(to_hex(&[]), "");
    }

    #[test]
    fn hex_matches_needs_the_exact_bytes() {
        let fp = [0xab, 0x01, 0xcd];
        assert!(hex_matches("ab01cd", &fp));
        assert!(hex_matches("AB01CD", &fp));
        assert!(!hex_matches("ab01ce", &fp));
        assert!(!hex_matches("ab01c", &fp));
        assert!(!hex_matches("ab01cd00", &fp));
        assert!(!hex_matches("ab:01:cd", &fp));
        assert!(!hex_matches("", &fp));
    }

    #[test]
    fn fingerprint_listed_finds_the_fingerprint_in_any_case() {
        let fp = [0xa5; 32];
        let listed = vec!["00".repeat(32), "A5".repeat(32)];
        assert!(fingerprint_listed(&listed, &fp));
        assert!(!fingerprint_listed(&listed[..1], &fp));
        assert!(!fingerprint_listed(&[], &fp));
    }

    proptest! {
        #[test]
        fn to_hex_agrees_with_the_format_machinery(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let formatted: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            prop_assert_eq!(&to_hex(&bytes), &formatted);
            prop_assert!(hex_matches(&formatted, &bytes));
            prop_assert!(hex_matches(&formatted.to_uppercase(), &bytes));
        }

        #[test]
        fn hex_matches_is_equality_of_decoded_bytes(a in proptest::collection::vec(any::<u8>(), 0..8),
                                                     b in proptest::collection::vec(any::<u8>(), 0..8)) {
            prop_assert_eq!(hex_matches(&to_hex(&a), &b), a == b);
        }
    }
}
