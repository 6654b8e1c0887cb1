//! Small DER helpers shared by the OCSP, timestamp and CMS modules.
//!
//! Signatures are checked over the bytes exactly as they arrived, never over a re-encoding, so
//! these helpers split a DER element into its children and hand back the raw slices. Only the
//! subset of DER that certificates, OCSP responses and CMS use is accepted: single-byte tags and
//! definite lengths of at most four length bytes. Anything else is rejected, never guessed at.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use const_oid::ObjectIdentifier;
use der::Decode;
use time::OffsetDateTime;
use x509_cert::Certificate;

use crate::signature::{self, SignatureAlgorithm, SignatureError};

/// Object identifiers used across the trust-service modules, in one place.
pub(crate) mod oids {
    use const_oid::ObjectIdentifier as Oid;

    pub(crate) const ID_DATA: Oid = Oid::new_unwrap("1.2.840.113549.1.7.1");
    pub(crate) const ID_SIGNED_DATA: Oid = Oid::new_unwrap("1.2.840.113549.1.7.2");
    pub(crate) const ID_CONTENT_TYPE: Oid = Oid::new_unwrap("1.2.840.113549.1.9.3");
    pub(crate) const ID_MESSAGE_DIGEST: Oid = Oid::new_unwrap("1.2.840.113549.1.9.4");
    pub(crate) const ID_SIGNING_TIME: Oid = Oid::new_unwrap("1.2.840.113549.1.9.5");
    pub(crate) const ID_CT_TST_INFO: Oid = Oid::new_unwrap("1.2.840.113549.1.9.16.1.4");
    pub(crate) const ID_AA_SIGNING_CERTIFICATE: Oid = Oid::new_unwrap("1.2.840.113549.1.9.16.2.12");
    pub(crate) const ID_AA_SIGNING_CERTIFICATE_V2: Oid =
        Oid::new_unwrap("1.2.840.113549.1.9.16.2.47");
    pub(crate) const ID_AA_SIGNATURE_TIME_STAMP_TOKEN: Oid =
        Oid::new_unwrap("1.2.840.113549.1.9.16.2.14");
    pub(crate) const ID_RI_OCSP_RESPONSE: Oid = Oid::new_unwrap("1.3.6.1.5.5.7.16.2");
    pub(crate) const ID_PKIX_OCSP_BASIC: Oid = Oid::new_unwrap("1.3.6.1.5.5.7.48.1.1");
    pub(crate) const ID_PKIX_OCSP_NONCE: Oid = Oid::new_unwrap("1.3.6.1.5.5.7.48.1.2");
    pub(crate) const ID_CE_EXT_KEY_USAGE: Oid = Oid::new_unwrap("2.5.29.37");
    pub(crate) const ID_KP_TIME_STAMPING: Oid = Oid::new_unwrap("1.3.6.1.5.5.7.3.8");
    pub(crate) const ID_KP_OCSP_SIGNING: Oid = Oid::new_unwrap("1.3.6.1.5.5.7.3.9");
}

/// One DER element: its tag byte, its value bytes and the whole encoding.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tlv<'a> {
    /// The (single-byte) tag.
    pub(crate) tag: u8,
    /// The content octets.
    pub(crate) value: &'a [u8],
    /// Tag, length and content together.
    pub(crate) raw: &'a [u8],
}

/// Why raw DER could not be walked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DerWalkError;

/// Reads the first element of `input`, returning it and the rest.
pub(crate) fn read_tlv(input: &[u8]) -> Result<(Tlv<'_>, &[u8]), DerWalkError> {
    let (&tag, rest) = input.split_first().ok_or(DerWalkError)?;
    if tag & 0x1f == 0x1f {
        // multi-byte tags do not occur in the structures we walk
        return Err(DerWalkError);
    }
    let (&first, rest) = rest.split_first().ok_or(DerWalkError)?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return Err(DerWalkError);
        }
        let mut len = 0usize;
        for &b in &rest[..n] {
            len = (len << 8) | usize::from(b);
        }
        (len, &rest[n..])
    };
    if rest.len() < len {
        return Err(DerWalkError);
    }
    let header_len = input.len() - rest.len();
    let raw = &input[..header_len + len];
    Ok((
        Tlv {
            tag,
            value: &rest[..len],
            raw,
        },
        &rest[len..],
    ))
}

/// Reads exactly one element that must fill `input`.
pub(crate) fn read_single(input: &[u8]) -> Result<Tlv<'_>, DerWalkError> {
    let (tlv, rest) = read_tlv(input)?;
    if rest.is_empty() {
        Ok(tlv)
    } else {
        Err(DerWalkError)
    }
}

/// Splits the content of a constructed element into its children.
pub(crate) fn children(value: &[u8]) -> Result<Vec<Tlv<'_>>, DerWalkError> {
    let mut out = Vec::new();
    let mut rest = value;
    while !rest.is_empty() {
        let (tlv, r) = read_tlv(rest)?;
        out.push(tlv);
        rest = r;
    }
    Ok(out)
}

/// Converts a time to the seconds-precision unix duration `der` works with.
pub(crate) fn unix_duration(t: OffsetDateTime) -> Option<core::time::Duration> {
    u64::try_from(t.unix_timestamp())
        .ok()
        .map(core::time::Duration::from_secs)
}

/// Converts a unix duration back to a time.
pub(crate) fn from_unix_duration(d: core::time::Duration) -> Option<OffsetDateTime> {
    i64::try_from(d.as_secs())
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
}

/// A GeneralizedTime for `t` (seconds precision).
pub(crate) fn generalized_time(t: OffsetDateTime) -> Option<der::asn1::GeneralizedTime> {
    unix_duration(t).and_then(|d| der::asn1::GeneralizedTime::from_unix_duration(d).ok())
}

/// A certificate with its original DER kept, so that hashes and signatures use those bytes.
#[derive(Debug, Clone)]
pub(crate) struct ParsedCert {
    /// The certificate's DER as received.
    pub(crate) der: Vec<u8>,
    /// The decoded certificate (shared: the same bytes always decode to the same value).
    pub(crate) cert: Arc<Certificate>,
    /// SHA-256 of `der` (the ESS signing-certificate attribute names the signer by it).
    pub(crate) sha256: [u8; 32],
    /// Encodings every signature by or check against this certificate needs.
    pub(crate) derived: Arc<CertDerived>,
}

/// Encodings derived from a certificate once, when it is first decoded: signing and checking a
/// message would otherwise re-encode them from the decoded certificate every time.
#[derive(Debug)]
pub(crate) struct CertDerived {
    /// DER of the `SubjectPublicKeyInfo`.
    pub(crate) spki: Vec<u8>,
    /// DER of the CMS `IssuerAndSerialNumber` that names this certificate as a signer.
    pub(crate) issuer_and_serial: Vec<u8>,
    /// DER of the ESS `SigningCertificateV2` attribute value that binds this certificate
    /// (SHA-256, with issuer and serial), as our signatures carry it.
    pub(crate) signing_certificate_v2: Vec<u8>,
}

/// Decoded certificates by their DER. Every signed message carries its signer's certificate,
/// and decoding it is a third of the non-cryptographic cost of checking a signature; decoding
/// is a pure function of the bytes, so reusing the result cannot change any decision.
/// The SHA-256 of the bytes and the derived encodings are kept with the value, so that signing
/// and verifying a message do not hash or encode the signer's certificate again.
static DECODED: Mutex<Option<HashMap<Vec<u8>, Decoded>>> = Mutex::new(None);

/// A decoded certificate, the SHA-256 of its DER and its derived encodings.
type Decoded = (Arc<Certificate>, [u8; 32], Arc<CertDerived>);

/// Bound on [`DECODED`]; when full it starts over.
const MAX_DECODED: usize = 1024;

fn decode_cached(der_bytes: &[u8]) -> Result<Decoded, CertError> {
    if let Some(c) = DECODED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .and_then(|m| m.get(der_bytes))
    {
        return Ok(c.clone());
    }
    let cert = Arc::new(Certificate::from_der(der_bytes).map_err(|_| CertError::Malformed)?);
    let sha256 = crate::cert::sha256(der_bytes);
    let tbs = &cert.tbs_certificate;
    let spki =
        der::Encode::to_der(&tbs.subject_public_key_info).map_err(|_| CertError::Malformed)?;
    let (issuer_and_serial, signing_certificate_v2) =
        crate::cms::signer_encodings(&cert, &sha256).map_err(|_| CertError::Malformed)?;
    let derived = Arc::new(CertDerived {
        spki,
        issuer_and_serial,
        signing_certificate_v2,
    });
    let mut guard = DECODED.lock().unwrap_or_else(|e| e.into_inner());
    let m = guard.get_or_insert_with(HashMap::new);
    if m.len() >= MAX_DECODED {
        m.clear();
    }
    m.insert(der_bytes.to_vec(), (cert.clone(), sha256, derived.clone()));
    Ok((cert, sha256, derived))
}

/// Why a certificate could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CertError {
    /// Not a DER certificate.
    Malformed,
    /// The issuer's signature on it does not verify (or the algorithm is unsupported).
    BadSignature,
}

impl ParsedCert {
    /// Parses a DER certificate.
    pub(crate) fn from_der(der_bytes: &[u8]) -> Result<Self, CertError> {
        let (cert, sha256, derived) = decode_cached(der_bytes)?;
        Ok(Self {
            der: der_bytes.to_vec(),
            cert,
            sha256,
            derived,
        })
    }

    /// DER of the subject name.
    pub(crate) fn subject_der(&self) -> Result<Vec<u8>, CertError> {
        der::Encode::to_der(&self.cert.tbs_certificate.subject).map_err(|_| CertError::Malformed)
    }

    /// DER of the `SubjectPublicKeyInfo`.
    pub(crate) fn spki_der(&self) -> Result<Vec<u8>, CertError> {
        Ok(self.derived.spki.clone())
    }

    /// The bytes of the `subjectPublicKey` BIT STRING (what OCSP key hashes cover).
    pub(crate) fn public_key_bits(&self) -> &[u8] {
        self.cert
            .tbs_certificate
            .subject_public_key_info
            .subject_public_key
            .raw_bytes()
    }

    /// Whether the certificate lists `eku` in its extended key usage extension.
    pub(crate) fn has_eku(&self, eku: ObjectIdentifier) -> bool {
        self.cert
            .tbs_certificate
            .extensions
            .iter()
            .flatten()
            .filter(|e| e.extn_id == oids::ID_CE_EXT_KEY_USAGE)
            .filter_map(|e| {
                x509_cert::ext::pkix::ExtendedKeyUsage::from_der(e.extn_value.as_bytes()).ok()
            })
            .any(|ku| ku.0.contains(&eku))
    }

    /// Whether `t` lies within the certificate's validity period.
    pub(crate) fn valid_at(&self, t: OffsetDateTime) -> bool {
        let v = &self.cert.tbs_certificate.validity;
        match unix_duration(t) {
            Some(d) => v.not_before.to_unix_duration() <= d && d <= v.not_after.to_unix_duration(),
            None => false,
        }
    }

    /// Checks that `issuer` signed this certificate (names match and the signature verifies).
    pub(crate) fn verify_issued_by(&self, issuer: &ParsedCert) -> Result<(), CertError> {
        if self.cert.tbs_certificate.issuer != issuer.cert.tbs_certificate.subject {
            return Err(CertError::BadSignature);
        }
        let outer = read_single(&self.der).map_err(|_| CertError::Malformed)?;
        let parts = children(outer.value).map_err(|_| CertError::Malformed)?;
        let tbs = parts.first().ok_or(CertError::Malformed)?;
        let alg = SignatureAlgorithm::from_oid(&self.cert.signature_algorithm.oid)
            .map_err(|_| CertError::BadSignature)?;
        let sig = self.cert.signature.as_bytes().ok_or(CertError::Malformed)?;
        let spki = issuer.spki_der()?;
        signature::verify(&spki, alg, tbs.raw, sig).map_err(|_| CertError::BadSignature)
    }
}

/// Verifies `sig` over `msg` with the key of `cert`, mapping the algorithm identifier's OID.
pub(crate) fn verify_with_cert(
    cert: &ParsedCert,
    alg_oid: &ObjectIdentifier,
    msg: &[u8],
    sig: &[u8],
) -> Result<(), SignatureError> {
    let alg = SignatureAlgorithm::from_oid(alg_oid)?;
    let spki = cert
        .spki_der()
        .map_err(|_| SignatureError::BadKey("certificate key".into()))?;
    signature::verify(&spki, alg, msg, sig)
}

/// The algorithm identifier a signer's signatures carry.
pub(crate) fn signature_algorithm_identifier(
    alg: SignatureAlgorithm,
) -> spki::AlgorithmIdentifierOwned {
    spki::AlgorithmIdentifierOwned {
        oid: alg.oid(),
        parameters: alg.params_der().map(|_| der::asn1::Null.into()),
    }
}

/// The algorithm identifier of a digest (parameters absent, as RFC 5754 recommends).
pub(crate) fn digest_algorithm_identifier(
    d: crate::digest::DigestAlgorithm,
) -> spki::AlgorithmIdentifierOwned {
    spki::AlgorithmIdentifierOwned {
        oid: d.oid(),
        parameters: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tlv_walk() {
        let data = [0x30, 0x06, 0x02, 0x01, 0x05, 0x04, 0x01, 0xaa];
        let t = read_single(&data).unwrap();
        assert_eq!(t.tag, 0x30);
        let c = children(t.value).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[1].raw, &[0x04, 0x01, 0xaa]);
        assert!(read_single(&data[..7]).is_err());
        assert!(read_tlv(&[0x30, 0x85, 0, 0, 0, 0, 1]).is_err());
        assert!(read_tlv(&[0x1f, 0x01, 0x00]).is_err());
        assert!(read_tlv(&[0x30, 0x80]).is_err());
    }

    /// The decode cache is keyed by the exact bytes: a certificate changed in one byte after its
    /// twin was decoded is decoded afresh, and a broken one is still refused.
    #[test]
    fn decoded_certificates_are_keyed_by_exact_bytes() {
        let ck = rcgen::generate_simple_self_signed(vec!["cache-test".into()]).unwrap();
        let der = ck.cert.der().to_vec();
        let first = ParsedCert::from_der(&der).unwrap();
        let again = ParsedCert::from_der(&der).unwrap();
        assert!(
            Arc::ptr_eq(&first.cert, &again.cert),
            "served from the cache"
        );
        first.verify_issued_by(&first).unwrap();

        // The subject's common name (rcgen's default) comes after the issuer's.
        let at = der
            .windows(11)
            .rposition(|w| w == b"signed cert")
            .expect("the subject name in the DER");
        let mut changed = der.clone();
        changed[at] = b'b';
        let other = ParsedCert::from_der(&changed).unwrap();
        assert!(!Arc::ptr_eq(&first.cert, &other.cert));
        assert_eq!(
            first.sha256,
            crate::cert::sha256(&der),
            "the hash of these bytes"
        );
        assert_eq!(again.sha256, first.sha256, "the cached hash");
        assert_eq!(
            other.sha256,
            crate::cert::sha256(&changed),
            "not the cached one"
        );
        assert_ne!(
            first.cert.tbs_certificate.subject,
            other.cert.tbs_certificate.subject
        );
        assert_eq!(
            other.verify_issued_by(&other),
            Err(CertError::BadSignature),
            "the changed certificate's own signature no longer verifies"
        );
        let mut broken = der;
        broken[0] = 0x31;
        assert_eq!(
            ParsedCert::from_der(&broken).map(|_| ()),
            Err(CertError::Malformed)
        );
    }
}
