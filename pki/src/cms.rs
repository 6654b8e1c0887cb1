//! CMS SignedData (RFC 5652): detached signatures over bytes, and the signer-info machinery the
//! timestamp module shares.
//!
//! Profile (see `docs/trust-services.md`): one SignerInfo identified by issuer and serial
//! number; signed attributes content-type, signing-time, message-digest and ESS
//! signing-certificate-v2 (which binds the signer certificate, as CAdES-BES requires); the
//! signer certificate and its chain in `certificates`; the signer's OCSP response in `crls` as
//! an RFC 5940 `OtherRevocationInfoFormat` (id-ri-ocsp-response); optionally an RFC 3161
//! signature timestamp as the unsigned attribute id-aa-signatureTimeStampToken.

use cms::cert::IssuerAndSerialNumber;
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{EncapsulatedContentInfo, SignerIdentifier, SignerInfo};
use const_oid::ObjectIdentifier;
use der::asn1::{Any, OctetString, SetOfVec};
use der::{Decode, Encode, Sequence};
#[cfg(test)]
use der::{Tag, TagNumber};
use time::OffsetDateTime;
use x509_cert::attr::Attribute;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::Time;

use crate::der_util::{self, ParsedCert, oids};
use crate::digest::DigestAlgorithm;
use crate::signature::{SignatureAlgorithm, SignatureError, Signer};

/// How far in the future a signing time may lie (clock skew between servers).
const MAX_CLOCK_SKEW: time::Duration = time::Duration::minutes(2);

/// rsaEncryption: some producers (openssl among them) name the key, not the signature algorithm.
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// Why a CMS signature could not be made or was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CmsError {
    /// The input is not the CMS structure our profile expects.
    #[error("malformed CMS: {0}")]
    Malformed(String),
    /// A digest or signature algorithm we do not accept.
    #[error("unsupported algorithm: {0}")]
    UnsupportedAlgorithm(String),
    /// A signed attribute the profile requires is absent (or present more than once).
    #[error("missing or repeated signed attribute: {0}")]
    MissingAttribute(&'static str),
    /// The content-type attribute does not match the encapsulated content type.
    #[error("content-type attribute does not match the content")]
    ContentTypeMismatch,
    /// The content's digest differs from the message-digest attribute: the content was changed.
    #[error("message digest does not match the content")]
    DigestMismatch,
    /// No embedded (or supplied) certificate matches the signer identifier.
    #[error("signer certificate not found")]
    SignerNotFound,
    /// The signature does not verify with the signer certificate's key.
    #[error("signature does not verify")]
    BadSignature,
    /// The ESS signing-certificate attribute names a different certificate than the signer's.
    #[error("signing-certificate attribute does not match the signer certificate")]
    SigningCertificateMismatch,
    /// The signature was made by someone other than the expected signer.
    #[error("signed by an unexpected certificate")]
    WrongSigner,
    /// The signing time lies outside the signer certificate's validity period.
    #[error("signing time is outside the signer certificate's validity")]
    CertificateNotValidAtSigningTime,
    /// The signing time lies in the future.
    #[error("signing time {0} lies in the future")]
    SigningTimeInFuture(OffsetDateTime),
    /// Building the structure failed.
    #[error("CMS encoding failed: {0}")]
    Encoding(String),
    /// The signer could not sign.
    #[error("signing failed: {0}")]
    Signing(SignatureError),
    /// The timestamp provider failed.
    #[error("signature timestamp failed: {0}")]
    Timestamp(String),
}

fn enc(e: der::Error) -> CmsError {
    CmsError::Encoding(e.to_string())
}

fn malformed(what: &'static str) -> impl Fn(der::Error) -> CmsError {
    move |e| CmsError::Malformed(format!("{what}: {e}"))
}

/// Obtains an RFC 3161 timestamp token over the signature value (the caller does the I/O).
pub trait SignatureTimestamper {
    /// Returns a DER TimeStampToken whose message imprint is `digest` under `alg`.
    fn timestamp(&self, alg: DigestAlgorithm, digest: &[u8]) -> Result<Vec<u8>, String>;
}

impl<F> SignatureTimestamper for F
where
    F: Fn(DigestAlgorithm, &[u8]) -> Result<Vec<u8>, String>,
{
    fn timestamp(&self, alg: DigestAlgorithm, digest: &[u8]) -> Result<Vec<u8>, String> {
        self(alg, digest)
    }
}

// ---------------------------------------------------------------------------------------------
// ASN.1 types the `cms` crate does not model the way we need.

/// SignedData with `certificates` and `crls` kept as raw elements: the `cms` crate models
/// `OtherRevocationInfoFormat` with an AlgorithmIdentifier where RFC 5652 has an OID, so it
/// cannot read RFC 5940 OCSP entries.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct SignedDataRaw {
    version: CmsVersion,
    digest_algorithms: SetOfVec<spki::AlgorithmIdentifierOwned>,
    encap_content_info: EncapsulatedContentInfo,
    #[asn1(
        context_specific = "0",
        tag_mode = "IMPLICIT",
        constructed = "true",
        optional = "true"
    )]
    certificates: Option<SetOfVec<Any>>,
    #[asn1(
        context_specific = "1",
        tag_mode = "IMPLICIT",
        constructed = "true",
        optional = "true"
    )]
    crls: Option<SetOfVec<Any>>,
    signer_infos: SetOfVec<SignerInfo>,
}

/// ESS IssuerSerial (RFC 5035).
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct IssuerSerial {
    issuer: Vec<GeneralName>,
    serial_number: SerialNumber,
}

/// ESSCertIDv2 (RFC 5035); an absent hash algorithm means SHA-256.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct EssCertIdV2 {
    #[asn1(optional = "true")]
    hash_algorithm: Option<spki::AlgorithmIdentifierOwned>,
    cert_hash: OctetString,
    #[asn1(optional = "true")]
    issuer_serial: Option<IssuerSerial>,
}

/// SigningCertificateV2 (RFC 5035).
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct SigningCertificateV2 {
    certs: Vec<EssCertIdV2>,
    #[asn1(optional = "true")]
    policies: Option<Vec<Any>>,
}

/// ESSCertID (RFC 2634): SHA-1 certificate hash.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct EssCertId {
    cert_hash: OctetString,
    #[asn1(optional = "true")]
    issuer_serial: Option<IssuerSerial>,
}

/// SigningCertificate (RFC 2634).
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct SigningCertificate {
    certs: Vec<EssCertId>,
    #[asn1(optional = "true")]
    policies: Option<Vec<Any>>,
}

#[cfg(test)]
fn attribute(oid: ObjectIdentifier, value: Any) -> Result<Attribute, CmsError> {
    let mut values = SetOfVec::new();
    values.insert(value).map_err(enc)?;
    Ok(Attribute { oid, values })
}

fn cms_time(t: OffsetDateTime) -> Result<Time, CmsError> {
    let d = der_util::unix_duration(t)
        .ok_or_else(|| CmsError::Encoding("signing time before 1970".into()))?;
    // RFC 5652 11.3: UTCTime for 1950 to 2049, GeneralizedTime otherwise.
    if t.year() < 2050 {
        der::asn1::UtcTime::from_unix_duration(d)
            .map(Time::UtcTime)
            .map_err(enc)
    } else {
        der::asn1::GeneralizedTime::from_unix_duration(d)
            .map(Time::GeneralTime)
            .map_err(enc)
    }
}

fn signing_certificate_v2(
    cert: &x509_cert::Certificate,
    sha256: &[u8; 32],
) -> Result<Any, CmsError> {
    let ess = SigningCertificateV2 {
        certs: vec![EssCertIdV2 {
            hash_algorithm: None,
            cert_hash: OctetString::new(sha256.as_slice()).map_err(enc)?,
            issuer_serial: Some(IssuerSerial {
                issuer: vec![GeneralName::DirectoryName(
                    cert.tbs_certificate.issuer.clone(),
                )],
                serial_number: cert.tbs_certificate.serial_number.clone(),
            }),
        }],
        policies: None,
    };
    Any::encode_from(&ess).map_err(enc)
}

/// The DER of the `IssuerAndSerialNumber` naming `cert` as a signer and of the
/// `SigningCertificateV2` value binding it (computed once per certificate, see `CertDerived`).
pub(crate) fn signer_encodings(
    cert: &x509_cert::Certificate,
    sha256: &[u8; 32],
) -> Result<(Vec<u8>, Vec<u8>), CmsError> {
    let sid = IssuerAndSerialNumber {
        issuer: cert.tbs_certificate.issuer.clone(),
        serial_number: cert.tbs_certificate.serial_number.clone(),
    }
    .to_der()
    .map_err(enc)?;
    let ess = signing_certificate_v2(cert, sha256)?
        .to_der()
        .map_err(enc)?;
    Ok((sid, ess))
}

// ---------------------------------------------------------------------------------------------
// DER writing: a SignedData of our profile is assembled from the certificate's cached
// encodings and a few fresh elements, instead of being built from decoded values and encoded
// (a tenth of a security server's CPU went to that).

/// Appends a DER element: `tag`, the definite length of `content`, `content`.
fn put_tlv(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    out.push(tag);
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes = n.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    put_tlv(&mut out, tag, content);
    out
}

/// The content of a DER SET OF: its elements' encodings in ascending order, compared as octet
/// strings with the shorter padded with zeros (X.690 11.6), duplicates kept once.
fn set_of_content(mut elements: Vec<Vec<u8>>) -> Vec<u8> {
    let padded = |a: &[u8], b: &[u8]| {
        let n = a.len().max(b.len());
        (0..n)
            .map(|i| {
                (
                    a.get(i).copied().unwrap_or(0),
                    b.get(i).copied().unwrap_or(0),
                )
            })
            .find(|(x, y)| x != y)
            .map_or(a.len().cmp(&b.len()), |(x, y)| x.cmp(&y))
    };
    elements.sort_by(|a, b| padded(a, b));
    elements.dedup();
    elements.concat()
}

/// An `Attribute` with one value: `SEQUENCE { oid, SET { value } }`.
fn attribute_der(oid: ObjectIdentifier, value: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(value.len() + 16);
    put_tlv(&mut content, 0x06, oid.as_bytes());
    put_tlv(&mut content, 0x31, value);
    tlv(0x30, &content)
}

/// What goes into one SignedData (internal; the public entry points fill it).
pub(crate) struct SignRequest<'a> {
    pub(crate) signer: &'a dyn Signer,
    pub(crate) cert: &'a ParsedCert,
    pub(crate) chain: &'a [ParsedCert],
    pub(crate) include_certs: bool,
    pub(crate) econtent_type: ObjectIdentifier,
    pub(crate) content: &'a [u8],
    pub(crate) encapsulate: bool,
    pub(crate) signing_time: OffsetDateTime,
    pub(crate) ocsp_response: Option<&'a [u8]>,
    pub(crate) timestamper: Option<&'a dyn SignatureTimestamper>,
}

/// Builds a DER ContentInfo holding a SignedData with one signer.
pub(crate) fn build_signed_data(r: &SignRequest<'_>) -> Result<Vec<u8>, CmsError> {
    let alg = r.signer.algorithm();
    let digest_alg = alg.digest();
    let derived = &r.cert.derived;
    if derived.spki != r.signer.public_key_der() {
        return Err(CmsError::Signing(SignatureError::BadKey(
            "the key does not match the signer certificate".into(),
        )));
    }

    let time_der = cms_time(r.signing_time)?.to_der().map_err(enc)?;
    let signed = set_of_content(vec![
        attribute_der(
            oids::ID_CONTENT_TYPE,
            &tlv(0x06, r.econtent_type.as_bytes()),
        ),
        attribute_der(oids::ID_SIGNING_TIME, &time_der),
        attribute_der(
            oids::ID_MESSAGE_DIGEST,
            &tlv(0x04, &digest_alg.digest(r.content)),
        ),
        attribute_der(
            oids::ID_AA_SIGNING_CERTIFICATE_V2,
            &derived.signing_certificate_v2,
        ),
    ]);
    let to_sign = tlv(0x31, &signed);
    let signature = r.signer.sign(&to_sign).map_err(CmsError::Signing)?;

    let digest_alg_id = der_util::digest_algorithm_identifier(digest_alg)
        .to_der()
        .map_err(enc)?;
    let mut info = Vec::with_capacity(to_sign.len() + signature.len() + 256);
    info.extend_from_slice(&[0x02, 0x01, 0x01]); // version 1: issuer and serial number
    info.extend_from_slice(&derived.issuer_and_serial);
    info.extend_from_slice(&digest_alg_id);
    put_tlv(&mut info, 0xa0, &signed); // [0] IMPLICIT SET OF Attribute
    info.extend_from_slice(
        &der_util::signature_algorithm_identifier(alg)
            .to_der()
            .map_err(enc)?,
    );
    put_tlv(&mut info, 0x04, &signature);
    if let Some(ts) = r.timestamper {
        let d = digest_alg.digest(&signature);
        let token = ts.timestamp(digest_alg, &d).map_err(CmsError::Timestamp)?;
        // One DER element, or it is not embedded.
        let token_any = Any::from_der(&token).map_err(malformed("timestamp token"))?;
        let token = token_any.to_der().map_err(enc)?;
        let attr = attribute_der(oids::ID_AA_SIGNATURE_TIME_STAMP_TOKEN, &token);
        put_tlv(&mut info, 0xa1, &attr); // [1] IMPLICIT SET OF Attribute
    }

    let mut sd = Vec::with_capacity(info.len() + r.content.len() + 4096);
    let version = if r.ocsp_response.is_some() {
        5
    } else if r.econtent_type == oids::ID_DATA {
        1
    } else {
        3
    };
    sd.extend_from_slice(&[0x02, 0x01, version]);
    put_tlv(&mut sd, 0x31, &digest_alg_id);
    let mut encap = tlv(0x06, r.econtent_type.as_bytes());
    if r.encapsulate {
        put_tlv(&mut encap, 0xa0, &tlv(0x04, r.content)); // [0] EXPLICIT OCTET STRING
    }
    put_tlv(&mut sd, 0x30, &encap);
    if r.include_certs {
        let certs = std::iter::once(r.cert)
            .chain(r.chain.iter())
            .map(|c| c.der.clone())
            .collect();
        put_tlv(&mut sd, 0xa0, &set_of_content(certs)); // [0] IMPLICIT SET OF Certificate
    }
    if let Some(ocsp) = r.ocsp_response {
        // [1] IMPLICIT SET OF { [1] IMPLICIT OtherRevocationInfoFormat }
        let other = tlv(0xa1, &ocsp_other_revocation_info(ocsp)?);
        put_tlv(&mut sd, 0xa1, &other);
    }
    put_tlv(&mut sd, 0x31, &tlv(0x30, &info));

    let mut ci = tlv(0x06, oids::ID_SIGNED_DATA.as_bytes());
    put_tlv(&mut ci, 0xa0, &tlv(0x30, &sd));
    Ok(tlv(0x30, &ci))
}

/// [`build_signed_data`] through the `cms` crate's types: the reference its output is tested
/// against byte for byte.
#[cfg(test)]
fn build_signed_data_reference(r: &SignRequest<'_>) -> Result<Vec<u8>, CmsError> {
    let alg = r.signer.algorithm();
    let digest_alg = alg.digest();
    let cert_spki = r
        .cert
        .spki_der()
        .map_err(|_| CmsError::Malformed("signer certificate".into()))?;
    if cert_spki != r.signer.public_key_der() {
        return Err(CmsError::Signing(SignatureError::BadKey(
            "the key does not match the signer certificate".into(),
        )));
    }

    let mut signed = SetOfVec::new();
    signed
        .insert(attribute(
            oids::ID_CONTENT_TYPE,
            Any::encode_from(&r.econtent_type).map_err(enc)?,
        )?)
        .map_err(enc)?;
    signed
        .insert(attribute(
            oids::ID_SIGNING_TIME,
            Any::encode_from(&cms_time(r.signing_time)?).map_err(enc)?,
        )?)
        .map_err(enc)?;
    let md = OctetString::new(digest_alg.digest(r.content)).map_err(enc)?;
    signed
        .insert(attribute(
            oids::ID_MESSAGE_DIGEST,
            Any::encode_from(&md).map_err(enc)?,
        )?)
        .map_err(enc)?;
    signed
        .insert(attribute(
            oids::ID_AA_SIGNING_CERTIFICATE_V2,
            signing_certificate_v2(&r.cert.cert, &r.cert.sha256)?,
        )?)
        .map_err(enc)?;
    let to_sign = signed.to_der().map_err(enc)?;
    let signature = r.signer.sign(&to_sign).map_err(CmsError::Signing)?;

    let unsigned_attrs = match r.timestamper {
        None => None,
        Some(ts) => {
            let d = digest_alg.digest(&signature);
            let token = ts.timestamp(digest_alg, &d).map_err(CmsError::Timestamp)?;
            let token_any = Any::from_der(&token).map_err(malformed("timestamp token"))?;
            let mut set = SetOfVec::new();
            set.insert(attribute(
                oids::ID_AA_SIGNATURE_TIME_STAMP_TOKEN,
                token_any,
            )?)
            .map_err(enc)?;
            Some(set)
        }
    };

    let signer_info = SignerInfo {
        version: CmsVersion::V1,
        sid: SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
            issuer: r.cert.cert.tbs_certificate.issuer.clone(),
            serial_number: r.cert.cert.tbs_certificate.serial_number.clone(),
        }),
        digest_alg: der_util::digest_algorithm_identifier(digest_alg),
        signed_attrs: Some(signed),
        signature_algorithm: der_util::signature_algorithm_identifier(alg),
        signature: OctetString::new(signature).map_err(enc)?,
        unsigned_attrs,
    };

    let certificates = if r.include_certs {
        let mut set = SetOfVec::new();
        for c in std::iter::once(r.cert).chain(r.chain.iter()) {
            let any = Any::from_der(&c.der).map_err(malformed("certificate"))?;
            if !set.iter().any(|x| *x == any) {
                set.insert(any).map_err(enc)?;
            }
        }
        Some(set)
    } else {
        None
    };
    let crls = match r.ocsp_response {
        None => None,
        Some(ocsp) => {
            // [1] IMPLICIT OtherRevocationInfoFormat { id-ri-ocsp-response, OCSPResponse }
            let value = ocsp_other_revocation_info(ocsp)?;
            let tag = Tag::ContextSpecific {
                constructed: true,
                number: TagNumber::N1,
            };
            let mut set = SetOfVec::new();
            set.insert(Any::new(tag, value).map_err(enc)?)
                .map_err(enc)?;
            Some(set)
        }
    };
    let version = if crls.is_some() {
        CmsVersion::V5
    } else if r.econtent_type == oids::ID_DATA {
        CmsVersion::V1
    } else {
        CmsVersion::V3
    };
    let econtent = if r.encapsulate {
        Some(Any::encode_from(&OctetString::new(r.content).map_err(enc)?).map_err(enc)?)
    } else {
        None
    };
    let mut digest_algorithms = SetOfVec::new();
    digest_algorithms
        .insert(der_util::digest_algorithm_identifier(digest_alg))
        .map_err(enc)?;
    let mut signer_infos = SetOfVec::new();
    signer_infos.insert(signer_info).map_err(enc)?;
    let sd = SignedDataRaw {
        version,
        digest_algorithms,
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: r.econtent_type,
            econtent,
        },
        certificates,
        crls,
        signer_infos,
    };
    let ci = ContentInfo {
        content_type: oids::ID_SIGNED_DATA,
        content: Any::encode_from(&sd).map_err(enc)?,
    };
    ci.to_der().map_err(enc)
}

/// The content of an RFC 5940 OtherRevocationInfoFormat for an OCSP response.
fn ocsp_other_revocation_info(ocsp: &[u8]) -> Result<Vec<u8>, CmsError> {
    // Check it is at least one DER element before embedding it.
    der_util::read_single(ocsp)
        .map_err(|_| CmsError::Malformed("OCSP response is not DER".into()))?;
    let mut value = oids::ID_RI_OCSP_RESPONSE.to_der().map_err(enc)?;
    value.extend_from_slice(ocsp);
    Ok(value)
}

// ---------------------------------------------------------------------------------------------
// Verification core

/// The result of checking one SignedData's single signer.
#[derive(Debug, Clone)]
pub(crate) struct CheckedSigner {
    pub(crate) signer: ParsedCert,
    pub(crate) embedded_certs: Vec<ParsedCert>,
    pub(crate) ocsp_responses: Vec<Vec<u8>>,
    pub(crate) econtent: Option<Vec<u8>>,
    pub(crate) econtent_type: ObjectIdentifier,
    pub(crate) signing_time: Option<OffsetDateTime>,
    pub(crate) signature_value: Vec<u8>,
    pub(crate) digest_alg: DigestAlgorithm,
    pub(crate) has_ess: bool,
    pub(crate) unsigned_attrs: Vec<Attribute>,
}

fn single_value<'a>(
    attrs: &'a SetOfVec<Attribute>,
    oid: ObjectIdentifier,
    name: &'static str,
) -> Result<Option<&'a Any>, CmsError> {
    let mut found = attrs.iter().filter(|a| a.oid == oid);
    let Some(a) = found.next() else {
        return Ok(None);
    };
    if found.next().is_some() || a.values.len() != 1 {
        return Err(CmsError::MissingAttribute(name));
    }
    Ok(a.values.iter().next())
}

fn signature_algorithm(
    oid: &ObjectIdentifier,
    digest: DigestAlgorithm,
) -> Result<SignatureAlgorithm, CmsError> {
    if *oid == RSA_ENCRYPTION {
        return match digest {
            DigestAlgorithm::Sha256 => Ok(SignatureAlgorithm::RsaPkcs1Sha256),
            DigestAlgorithm::Sha384 => Ok(SignatureAlgorithm::RsaPkcs1Sha384),
            DigestAlgorithm::Sha512 => Ok(SignatureAlgorithm::RsaPkcs1Sha512),
            DigestAlgorithm::Sha1 => Err(CmsError::UnsupportedAlgorithm("RSA with SHA-1".into())),
        };
    }
    SignatureAlgorithm::from_oid(oid).map_err(|e| CmsError::UnsupportedAlgorithm(e.to_string()))
}

fn ess_matches(attrs: &SetOfVec<Attribute>, cert: &ParsedCert) -> Result<Option<bool>, CmsError> {
    if let Some(v) = single_value(
        attrs,
        oids::ID_AA_SIGNING_CERTIFICATE_V2,
        "signing-certificate-v2",
    )? {
        // Our own signatures carry exactly the encoding cached for the certificate: equal bytes
        // name this certificate, by its SHA-256 and its issuer and serial.
        if v.to_der()
            .is_ok_and(|d| d == cert.derived.signing_certificate_v2)
        {
            return Ok(Some(true));
        }
        let sc: SigningCertificateV2 =
            v.decode_as().map_err(malformed("signing-certificate-v2"))?;
        let first = sc
            .certs
            .first()
            .ok_or(CmsError::SigningCertificateMismatch)?;
        let alg = match &first.hash_algorithm {
            None => DigestAlgorithm::Sha256,
            Some(a) => DigestAlgorithm::from_oid(&a.oid)
                .ok_or_else(|| CmsError::UnsupportedAlgorithm(a.oid.to_string()))?,
        };
        let hash_matches = match alg {
            DigestAlgorithm::Sha256 => first.cert_hash.as_bytes() == cert.sha256.as_slice(),
            other => first.cert_hash.as_bytes() == other.digest(&cert.der).as_slice(),
        };
        return Ok(Some(
            hash_matches && issuer_serial_matches(first.issuer_serial.as_ref(), cert),
        ));
    }
    if let Some(v) = single_value(
        attrs,
        oids::ID_AA_SIGNING_CERTIFICATE,
        "signing-certificate",
    )? {
        let sc: SigningCertificate = v.decode_as().map_err(malformed("signing-certificate"))?;
        let first = sc
            .certs
            .first()
            .ok_or(CmsError::SigningCertificateMismatch)?;
        return Ok(Some(
            first.cert_hash.as_bytes() == DigestAlgorithm::Sha1.digest(&cert.der).as_slice()
                && issuer_serial_matches(first.issuer_serial.as_ref(), cert),
        ));
    }
    Ok(None)
}

fn issuer_serial_matches(is: Option<&IssuerSerial>, cert: &ParsedCert) -> bool {
    match is {
        None => true,
        Some(is) => {
            is.serial_number == cert.cert.tbs_certificate.serial_number
                && is.issuer.iter().any(|g| {
                    matches!(g, GeneralName::DirectoryName(n) if *n == cert.cert.tbs_certificate.issuer)
                })
        }
    }
}

fn sid_matches(sid: &SignerIdentifier, cert: &ParsedCert) -> bool {
    match sid {
        SignerIdentifier::IssuerAndSerialNumber(ias) => {
            ias.issuer == cert.cert.tbs_certificate.issuer
                && ias.serial_number == cert.cert.tbs_certificate.serial_number
        }
        SignerIdentifier::SubjectKeyIdentifier(ski) => cert
            .cert
            .tbs_certificate
            .extensions
            .iter()
            .flatten()
            .filter(|e| e.extn_id == const_oid::db::rfc5280::ID_CE_SUBJECT_KEY_IDENTIFIER)
            .filter_map(|e| OctetString::from_der(e.extn_value.as_bytes()).ok())
            .any(|k| k.as_bytes() == ski.0.as_bytes()),
    }
}

/// A ContentInfo/SignedData split into its parts without copying: the elements a check needs,
/// as slices of the input. Checking a message's signature decoded the whole structure into owned
/// values before (its certificates and OCSP response copied twice); only the SignerInfo is
/// decoded now.
struct SignedDataParts<'a> {
    econtent_type: ObjectIdentifier,
    econtent: Option<&'a [u8]>,
    certificates: Vec<der_util::Tlv<'a>>,
    crls: Vec<der_util::Tlv<'a>>,
    signer_info: der_util::Tlv<'a>,
}

impl<'a> SignedDataParts<'a> {
    fn walk(ci_der: &'a [u8]) -> Result<Self, CmsError> {
        let bad = |what: &str| CmsError::Malformed(what.to_string());
        let kids =
            |t: &der_util::Tlv<'a>, what: &str| der_util::children(t.value).map_err(|_| bad(what));
        let ci = der_util::read_single(ci_der).map_err(|_| bad("ContentInfo"))?;
        if ci.tag != 0x30 {
            return Err(bad("ContentInfo"));
        }
        let [content_type, content] = kids(&ci, "ContentInfo")?[..] else {
            return Err(bad("ContentInfo"));
        };
        if content_type.tag != 0x06 || content.tag != 0xa0 {
            return Err(bad("ContentInfo"));
        }
        if content_type.value != oids::ID_SIGNED_DATA.as_bytes() {
            return Err(bad("not a SignedData"));
        }
        let [sd] = kids(&content, "SignedData")?[..] else {
            return Err(bad("SignedData"));
        };
        if sd.tag != 0x30 {
            return Err(bad("SignedData"));
        }
        // version, digestAlgorithms, encapContentInfo, [0] certificates, [1] crls, signerInfos
        let parts = kids(&sd, "SignedData")?;
        let (version, algs, encap, rest) = match &parts[..] {
            [v, a, e, rest @ ..] => (v, a, e, rest),
            _ => return Err(bad("SignedData")),
        };
        // CMSVersion 0 to 5; digestAlgorithms a SET of AlgorithmIdentifier (each a SEQUENCE
        // starting with an OID). Neither decides anything (the SignerInfo names its digest), but
        // a SignedData that is not of this shape is not one.
        let algorithm_ids = |t: &der_util::Tlv<'a>| {
            t.tag == 0x31
                && der_util::children(t.value).is_ok_and(|ids| {
                    ids.iter().all(|id| {
                        id.tag == 0x30
                            && der_util::children(id.value)
                                .is_ok_and(|f| f.first().is_some_and(|oid| oid.tag == 0x06))
                    })
                })
        };
        if version.tag != 0x02
            || !matches!(version.value, [0..=5])
            || !algorithm_ids(algs)
            || encap.tag != 0x30
        {
            return Err(bad("SignedData"));
        }
        let (optional, infos) = match rest {
            [o @ .., i] if i.tag == 0x31 => (o, i),
            _ => return Err(bad("SignedData")),
        };
        let (mut certificates, mut crls) = (Vec::new(), Vec::new());
        let mut next_tag = 0xa0;
        for o in optional {
            if o.tag < next_tag || o.tag > 0xa1 {
                return Err(bad("SignedData"));
            }
            next_tag = o.tag + 1;
            let set = kids(o, "SignedData")?;
            if o.tag == 0xa0 {
                certificates = set;
            } else {
                crls = set;
            }
        }
        let [signer_info] = kids(infos, "SignedData")?[..] else {
            return Err(bad("exactly one signer expected"));
        };
        if signer_info.tag != 0x30 {
            return Err(bad("SignerInfo"));
        }
        let encap_parts = kids(encap, "encapContentInfo")?;
        let (econtent_type, econtent) = match &encap_parts[..] {
            [t] if t.tag == 0x06 => (t.value, None),
            [t, e] if t.tag == 0x06 && e.tag == 0xa0 => {
                let [octets] = kids(e, "eContent")?[..] else {
                    return Err(bad("eContent"));
                };
                if octets.tag != 0x04 {
                    return Err(bad("eContent"));
                }
                (t.value, Some(octets.value))
            }
            _ => return Err(bad("encapContentInfo")),
        };
        let econtent_type =
            ObjectIdentifier::from_bytes(econtent_type).map_err(|_| bad("eContentType"))?;
        Ok(Self {
            econtent_type,
            econtent,
            certificates,
            crls,
            signer_info,
        })
    }
}

/// Checks a ContentInfo/SignedData with exactly one signer.
///
/// `detached` is the content for a detached signature (then no eContent may be present);
/// `None` means the content is encapsulated. `extra_certs` are candidates for the signer
/// certificate besides the embedded ones.
pub(crate) fn check_signed_data(
    ci_der: &[u8],
    detached: Option<&[u8]>,
    extra_certs: &[ParsedCert],
) -> Result<CheckedSigner, CmsError> {
    let sd = SignedDataParts::walk(ci_der)?;
    // The signature covers the signed attributes exactly as received.
    let info_parts = der_util::children(sd.signer_info.value)
        .map_err(|_| CmsError::Malformed("SignerInfo".into()))?;
    let signed_raw = info_parts
        .iter()
        .find(|p| p.tag == 0xa0)
        .ok_or(CmsError::MissingAttribute("signed attributes"))?;
    let mut to_verify = signed_raw.raw.to_vec();
    to_verify[0] = 0x31; // [0] IMPLICIT SET OF -> SET OF, as RFC 5652 5.4 says
    let si = SignerInfo::from_der(sd.signer_info.raw).map_err(malformed("SignerInfo"))?;
    let signed = si
        .signed_attrs
        .as_ref()
        .ok_or(CmsError::MissingAttribute("signed attributes"))?;

    let digest_alg = DigestAlgorithm::from_oid(&si.digest_alg.oid)
        .filter(|d| *d != DigestAlgorithm::Sha1)
        .ok_or_else(|| CmsError::UnsupportedAlgorithm(si.digest_alg.oid.to_string()))?;

    let econtent = sd.econtent.map(<[u8]>::to_vec);
    let content: &[u8] = match (detached, &econtent) {
        (Some(d), None) => d,
        (None, Some(e)) => e,
        (Some(_), Some(_)) => {
            return Err(CmsError::Malformed(
                "content is encapsulated, not detached".into(),
            ));
        }
        (None, None) => return Err(CmsError::Malformed("no content".into())),
    };

    let ct = single_value(signed, oids::ID_CONTENT_TYPE, "content-type")?
        .ok_or(CmsError::MissingAttribute("content-type"))?;
    let ct: ObjectIdentifier = ct.decode_as().map_err(malformed("content-type"))?;
    if ct != sd.econtent_type {
        return Err(CmsError::ContentTypeMismatch);
    }
    let md = single_value(signed, oids::ID_MESSAGE_DIGEST, "message-digest")?
        .ok_or(CmsError::MissingAttribute("message-digest"))?;
    let md: OctetString = md.decode_as().map_err(malformed("message-digest"))?;
    if md.as_bytes() != digest_alg.digest(content).as_slice() {
        return Err(CmsError::DigestMismatch);
    }
    let signing_time = match single_value(signed, oids::ID_SIGNING_TIME, "signing-time")? {
        None => None,
        Some(v) => {
            let t = v
                .to_der()
                .and_then(|d| Time::from_der(&d))
                .map_err(malformed("signing-time"))?;
            Some(
                der_util::from_unix_duration(t.to_unix_duration())
                    .ok_or(CmsError::Malformed("signing-time".into()))?,
            )
        }
    };

    let mut embedded = Vec::new();
    for c in &sd.certificates {
        // only X.509 certificates (a SEQUENCE); other choices are ignored
        if c.tag == 0x30 {
            embedded.push(
                ParsedCert::from_der(c.raw)
                    .map_err(|_| CmsError::Malformed("embedded certificate".into()))?,
            );
        }
    }
    let signer = embedded
        .iter()
        .chain(extra_certs.iter())
        .find(|c| sid_matches(&si.sid, c))
        .cloned()
        .ok_or(CmsError::SignerNotFound)?;

    let sig_alg = signature_algorithm(&si.signature_algorithm.oid, digest_alg)?;
    let spki = signer
        .spki_der()
        .map_err(|_| CmsError::Malformed("signer key".into()))?;
    crate::signature::verify(&spki, sig_alg, &to_verify, si.signature.as_bytes())
        .map_err(|_| CmsError::BadSignature)?;

    let has_ess = match ess_matches(signed, &signer)? {
        None => false,
        Some(true) => true,
        Some(false) => return Err(CmsError::SigningCertificateMismatch),
    };

    let mut ocsp_responses = Vec::new();
    for r in &sd.crls {
        // [1] OtherRevocationInfoFormat; CRLs (SEQUENCE) are ignored
        if r.tag != 0xa1 {
            continue;
        }
        let parts = der_util::children(r.value).map_err(|_| CmsError::Malformed("crls".into()))?;
        if let [oid, value] = parts.as_slice()
            && oid.tag == 0x06
            && oid.value == oids::ID_RI_OCSP_RESPONSE.as_bytes()
        {
            ocsp_responses.push(value.raw.to_vec());
        }
    }

    Ok(CheckedSigner {
        signer,
        embedded_certs: embedded,
        ocsp_responses,
        econtent,
        econtent_type: sd.econtent_type,
        signing_time,
        signature_value: si.signature.as_bytes().to_vec(),
        digest_alg,
        has_ess,
        unsigned_attrs: si
            .unsigned_attrs
            .as_ref()
            .map(|a| a.as_slice().to_vec())
            .unwrap_or_default(),
    })
}

/// The encapsulated content of a SignedData, without verifying anything.
pub(crate) fn content_info_econtent(ci_der: &[u8]) -> Result<Vec<u8>, CmsError> {
    let ci = ContentInfo::from_der(ci_der).map_err(malformed("ContentInfo"))?;
    if ci.content_type != oids::ID_SIGNED_DATA {
        return Err(CmsError::Malformed("not a SignedData".into()));
    }
    let sd: SignedDataRaw = ci.content.decode_as().map_err(malformed("SignedData"))?;
    let e = sd
        .encap_content_info
        .econtent
        .ok_or(CmsError::Malformed("no encapsulated content".into()))?;
    Ok(e.decode_as::<OctetString>()
        .map_err(malformed("eContent"))?
        .into_bytes())
}

// ---------------------------------------------------------------------------------------------
// Public API: detached signatures

/// Makes detached CMS signatures with one key and certificate.
pub struct CmsSigner<'a> {
    signer: &'a dyn Signer,
    cert: ParsedCert,
    chain: Vec<ParsedCert>,
    ocsp_response: Option<Vec<u8>>,
}

impl std::fmt::Debug for CmsSigner<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CmsSigner")
            .field("chain_len", &self.chain.len())
            .field("ocsp", &self.ocsp_response.is_some())
            .finish_non_exhaustive()
    }
}

impl<'a> CmsSigner<'a> {
    /// A signer using `signer` whose certificate is `cert_der`.
    pub fn new(signer: &'a dyn Signer, cert_der: &[u8]) -> Result<Self, CmsError> {
        let cert = ParsedCert::from_der(cert_der)
            .map_err(|_| CmsError::Malformed("signer certificate".into()))?;
        Ok(Self {
            signer,
            cert,
            chain: Vec::new(),
            ocsp_response: None,
        })
    }

    /// Embeds these certificates (intermediate CAs, root optional) after the signer's.
    pub fn with_chain(mut self, chain_der: &[Vec<u8>]) -> Result<Self, CmsError> {
        self.chain = chain_der
            .iter()
            .map(|c| {
                ParsedCert::from_der(c).map_err(|_| CmsError::Malformed("chain certificate".into()))
            })
            .collect::<Result<_, _>>()?;
        Ok(self)
    }

    /// Embeds the signer certificate's OCSP response (RFC 5940).
    pub fn with_ocsp_response(mut self, ocsp_der: Vec<u8>) -> Self {
        self.ocsp_response = Some(ocsp_der);
        self
    }

    /// Signs `content` detached, with signing time `signing_time`, optionally obtaining a
    /// signature timestamp from `timestamper`. Returns a DER ContentInfo.
    pub fn sign_detached(
        &self,
        content: &[u8],
        signing_time: OffsetDateTime,
        timestamper: Option<&dyn SignatureTimestamper>,
    ) -> Result<Vec<u8>, CmsError> {
        build_signed_data(&SignRequest {
            signer: self.signer,
            cert: &self.cert,
            chain: &self.chain,
            include_certs: true,
            econtent_type: oids::ID_DATA,
            content,
            encapsulate: false,
            signing_time,
            ocsp_response: self.ocsp_response.as_deref(),
            timestamper,
        })
    }
}

/// A verified detached CMS signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCms {
    /// The signer certificate (DER).
    pub signer_cert: Vec<u8>,
    /// The other embedded certificates (DER), for chain validation.
    pub chain: Vec<Vec<u8>>,
    /// Embedded OCSP responses (RFC 5940), DER.
    pub ocsp_responses: Vec<Vec<u8>>,
    /// The signature timestamp token (DER ContentInfo), if present; not yet verified.
    pub signature_timestamp: Option<Vec<u8>>,
    /// The signing-time attribute.
    pub signing_time: OffsetDateTime,
    /// The digest algorithm of the signature.
    pub digest_algorithm: DigestAlgorithm,
    /// The signature value (what a signature timestamp covers).
    pub signature_value: Vec<u8>,
}

impl VerifiedCms {
    /// Checks that the signer is `expected_cert_der` (byte for byte).
    pub fn expect_signer(&self, expected_cert_der: &[u8]) -> Result<(), CmsError> {
        if self.signer_cert == expected_cert_der {
            Ok(())
        } else {
            Err(CmsError::WrongSigner)
        }
    }
}

/// Verifies a detached CMS signature over `content` at time `now`.
///
/// Checks structure, content-type, message-digest against `content`, signing-certificate
/// binding, the signature, and that the signing time lies inside the signer certificate's
/// validity and not in the future. Chain validation and OCSP checking are the caller's
/// (`chain` and `ocsp_responses` of the result carry what they need).
pub fn verify_detached(
    sig_der: &[u8],
    content: &[u8],
    now: OffsetDateTime,
) -> Result<VerifiedCms, CmsError> {
    let c = check_signed_data(sig_der, Some(content), &[])?;
    let signing_time = c
        .signing_time
        .ok_or(CmsError::MissingAttribute("signing-time"))?;
    if !c.has_ess {
        return Err(CmsError::MissingAttribute("signing-certificate-v2"));
    }
    if signing_time > now + MAX_CLOCK_SKEW {
        return Err(CmsError::SigningTimeInFuture(signing_time));
    }
    if !c.signer.valid_at(signing_time) {
        return Err(CmsError::CertificateNotValidAtSigningTime);
    }
    let mut signature_timestamp = None;
    for a in &c.unsigned_attrs {
        if a.oid == oids::ID_AA_SIGNATURE_TIME_STAMP_TOKEN {
            let v = a
                .values
                .iter()
                .next()
                .ok_or(CmsError::Malformed("empty timestamp attribute".into()))?;
            signature_timestamp = Some(v.to_der().map_err(malformed("timestamp token"))?);
        }
    }
    let signer_der = c.signer.der.clone();
    Ok(VerifiedCms {
        chain: c
            .embedded_certs
            .iter()
            .filter(|x| x.der != signer_der)
            .map(|x| x.der.clone())
            .collect(),
        signer_cert: signer_der,
        ocsp_responses: c.ocsp_responses,
        signature_timestamp,
        signing_time,
        digest_algorithm: c.digest_alg,
        signature_value: c.signature_value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devca::{DevCa, IssueRequest, SubjectKey};
    use crate::key::{KeyKind, KeyPair};
    use crate::profile::CertProfile;

    /// A real key's algorithm and public key, but a signature that is a function of the input:
    /// ECDSA signatures are randomised, and the two builders must be compared byte for byte.
    struct Deterministic(KeyPair);

    impl Signer for Deterministic {
        fn algorithm(&self) -> SignatureAlgorithm {
            self.0.algorithm()
        }
        fn public_key_der(&self) -> &[u8] {
            self.0.public_key_der()
        }
        fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignatureError> {
            Ok(DigestAlgorithm::Sha512.digest(message).to_vec())
        }
    }

    fn issue(ca: &DevCa, kind: KeyKind, code: &str) -> (Vec<u8>, KeyPair) {
        let key = KeyPair::generate(kind).unwrap();
        let cert = ca
            .issue(&IssueRequest {
                profile: CertProfile::Sign,
                member: trustbus_sdk::id::ClientId::member("DEV", "GOV", code).unwrap(),
                member_name: "A member with a rather long name, so that lengths need two bytes"
                    .repeat(2),
                server_code: None,
                key: SubjectKey::Spki(key.public_key_der()),
                not_before: None,
                not_after: None,
            })
            .unwrap();
        (cert.der().to_vec(), key)
    }

    /// One DER SEQUENCE of `n` content bytes (an OCSP response or a token, as far as the
    /// builders are concerned: they only embed it).
    fn element(n: usize) -> Vec<u8> {
        tlv(0x30, &vec![0x5a; n])
    }

    #[test]
    fn the_assembled_signed_data_is_the_reference_encoding_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let ca = DevCa::init(dir.path(), "DEV").unwrap();
        let chain: Vec<ParsedCert> = [
            ca.ca_cert().der().to_vec(),
            issue(&ca, KeyKind::EcdsaP256, "9").0,
        ]
        .iter()
        .map(|d| ParsedCert::from_der(d).unwrap())
        .collect();
        let token = element(300);
        let stamp = |_: DigestAlgorithm, _: &[u8]| -> Result<Vec<u8>, String> { Ok(token.clone()) };
        let mut compared = 0;
        for kind in [KeyKind::EcdsaP256, KeyKind::EcdsaP384, KeyKind::Ed25519] {
            let (der, key) = issue(&ca, kind, "1234");
            let cert = ParsedCert::from_der(&der).unwrap();
            let signer = Deterministic(key);
            // Every combination of OCSP, chain, encapsulated (timestamp-token) content and a
            // signature timestamp, over lengths of one to three bytes and both time encodings.
            for case in 0u8..16 {
                let [ocsp, with_chain, encapsulate, ts] = [1, 2, 4, 8].map(|bit| case & bit != 0);
                let n = usize::from(case);
                let ocsp = ocsp.then(|| element([40, 1500, 70_000][n % 3]));
                let content = vec![case; [1, 5000, 100, 0][n % 4]];
                let r = SignRequest {
                    signer: &signer,
                    cert: &cert,
                    chain: if with_chain { &chain[n % 2..] } else { &[] },
                    include_certs: !encapsulate || with_chain,
                    econtent_type: if encapsulate {
                        oids::ID_CT_TST_INFO
                    } else {
                        oids::ID_DATA
                    },
                    content: &content,
                    encapsulate,
                    signing_time: time::Date::from_calendar_date(
                        [2026, 2051, 1999][n % 3],
                        time::Month::March,
                        9,
                    )
                    .unwrap()
                    .with_hms(8, 7, 6)
                    .unwrap()
                    .assume_utc(),
                    ocsp_response: ocsp.as_deref(),
                    timestamper: if ts { Some(&stamp) } else { None },
                };
                let ours = build_signed_data(&r).unwrap();
                assert_eq!(ours, build_signed_data_reference(&r).unwrap());
                compared += 1;
            }
        }
        assert_eq!(compared, 48);
    }

    /// A detached signature by a fresh P-256 key over `content`, with an OCSP element.
    fn signed(content: &[u8]) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let ca = DevCa::init(dir.path(), "DEV").unwrap();
        let (der, key) = issue(&ca, KeyKind::EcdsaP256, "1");
        CmsSigner::new(&key, &der)
            .unwrap()
            .with_ocsp_response(element(90))
            .sign_detached(content, OffsetDateTime::now_utc(), None)
            .unwrap()
    }

    /// `ci` with its SignedData's children replaced by `f` of them (raw elements).
    fn reshaped(ci: &[u8], f: impl Fn(Vec<Vec<u8>>) -> Vec<Vec<u8>>) -> Vec<u8> {
        let ci_tlv = der_util::read_single(ci).unwrap();
        let parts = der_util::children(ci_tlv.value).unwrap();
        let sd = der_util::read_single(parts[1].value).unwrap();
        let kids = der_util::children(sd.value).unwrap();
        let kids = f(kids.iter().map(|k| k.raw.to_vec()).collect());
        let mut out = parts[0].raw.to_vec();
        put_tlv(&mut out, 0xa0, &tlv(0x30, &kids.concat()));
        tlv(0x30, &out)
    }

    #[test]
    fn the_walk_finds_every_part_of_our_signed_data() {
        let ci = signed(b"payload");
        let parts = SignedDataParts::walk(&ci).unwrap();
        assert_eq!(parts.econtent_type, oids::ID_DATA);
        assert_eq!(parts.econtent, None);
        assert_eq!(parts.certificates.len(), 1);
        assert_eq!(parts.crls.len(), 1);
        let v = verify_detached(&ci, b"payload", OffsetDateTime::now_utc()).unwrap();
        assert_eq!(v.ocsp_responses, vec![element(90)]);
        assert_eq!(
            verify_detached(&ci, b"payloaD", OffsetDateTime::now_utc()).unwrap_err(),
            CmsError::DigestMismatch
        );
        // Reassembled unchanged, it is the same signature.
        assert_eq!(reshaped(&ci, |k| k), ci);
    }

    #[test]
    fn a_signed_data_out_of_shape_is_malformed() {
        let ci = signed(b"payload");
        let now = OffsetDateTime::now_utc();
        let malformed = |der: &[u8]| match verify_detached(der, b"payload", now) {
            Err(CmsError::Malformed(why)) => why,
            other => panic!("expected Malformed, got {other:?}"),
        };
        // version, digestAlgorithms, encapContentInfo, [0] certificates, [1] crls, signerInfos
        let two_signers = reshaped(&ci, |mut k| {
            let infos = der_util::read_single(&k[5]).unwrap().value.to_vec();
            k[5] = tlv(0x31, &[infos.clone(), infos].concat());
            k
        });
        assert_eq!(malformed(&two_signers), "exactly one signer expected");
        let crls_first = reshaped(&ci, |mut k| {
            k.swap(3, 4);
            k
        });
        assert_eq!(malformed(&crls_first), "SignedData");
        let version_9 = reshaped(&ci, |mut k| {
            k[0] = vec![0x02, 0x01, 0x09];
            k
        });
        assert_eq!(malformed(&version_9), "SignedData");
        let algorithm_not_a_sequence = reshaped(&ci, |mut k| {
            k[1] = tlv(0x31, &tlv(0x04, b"sha256"));
            k
        });
        assert_eq!(malformed(&algorithm_not_a_sequence), "SignedData");
        let no_infos = reshaped(&ci, |mut k| {
            k.pop();
            k
        });
        assert_eq!(malformed(&no_infos), "SignedData");
        let mut trailing = ci.clone();
        trailing.push(0);
        assert_eq!(malformed(&trailing), "ContentInfo");
        assert_eq!(malformed(&ci[..ci.len() - 1]), "ContentInfo");
        let mut other_type = ci.clone();
        // The content type OID's last byte: id-signedData (…7.2) becomes id-data's sibling (…7.3).
        other_type[14] = 3;
        assert_eq!(malformed(&other_type), "not a SignedData");
        let encapsulated_too = reshaped(&ci, |mut k| {
            let mut encap = tlv(0x06, oids::ID_DATA.as_bytes());
            put_tlv(&mut encap, 0xa0, &tlv(0x04, b"payload"));
            k[2] = tlv(0x30, &encap);
            k
        });
        assert_eq!(
            malformed(&encapsulated_too),
            "content is encapsulated, not detached"
        );
    }

    proptest::proptest! {
        /// Any byte of one of our signatures changed, or the signature cut short, is refused
        /// without a panic, unless the change lies in what the signature does not cover and
        /// does not decide (the embedded OCSP response, the version numbers): then the same
        /// signer, signature, signing time and digest are reported.
        #[test]
        fn a_changed_or_cut_signature_is_refused_or_unchanged_in_meaning(
            at in 0usize..4096,
            xor in 1u8..=255,
            cut in proptest::prelude::any::<bool>(),
        ) {
            static SIGNED: std::sync::OnceLock<(Vec<u8>, VerifiedCms)> = std::sync::OnceLock::new();
            let (ci, original) = SIGNED.get_or_init(|| {
                let ci = signed(b"payload");
                let v = verify_detached(&ci, b"payload", OffsetDateTime::now_utc()).unwrap();
                (ci, v)
            });
            let at = at % ci.len();
            let changed = if cut {
                ci[..at].to_vec()
            } else {
                let mut c = ci.clone();
                c[at] ^= xor;
                c
            };
            if let Ok(v) = verify_detached(&changed, b"payload", OffsetDateTime::now_utc()) {
                proptest::prop_assert!(!cut);
                proptest::prop_assert_eq!(&v.signer_cert, &original.signer_cert);
                proptest::prop_assert_eq!(&v.signature_value, &original.signature_value);
                proptest::prop_assert_eq!(v.signing_time, original.signing_time);
                proptest::prop_assert_eq!(v.digest_algorithm, original.digest_algorithm);
            }
        }
    }

    #[test]
    fn set_of_elements_sort_as_padded_octet_strings() {
        let sorted = set_of_content(vec![
            vec![0x30, 0x81, 0x80],
            vec![0x30, 0x02, 0x01],
            vec![0x30, 0x02],
            vec![0x30, 0x02, 0x01],
            vec![0x04, 0x05],
        ]);
        assert_eq!(
            sorted,
            vec![0x04, 0x05, 0x30, 0x02, 0x30, 0x02, 0x01, 0x30, 0x81, 0x80]
        );
    }

    #[test]
    fn lengths_take_the_shortest_definite_form() {
        assert_eq!(tlv(0x04, &[]), vec![0x04, 0x00]);
        assert_eq!(tlv(0x04, &[0; 127])[..2], [0x04, 0x7f]);
        assert_eq!(tlv(0x04, &[0; 128])[..3], [0x04, 0x81, 0x80]);
        assert_eq!(tlv(0x04, &[0; 256])[..4], [0x04, 0x82, 0x01, 0x00]);
        assert_eq!(tlv(0x04, &[0; 70_000])[..5], [0x04, 0x83, 0x01, 0x11, 0x70]);
    }
}
