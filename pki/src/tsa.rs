//! RFC 3161 timestamps: request builder and reply parser (client side), a TSA responder as a
//! pure function, and token verification against approved TSA certificates.
//!
//! A token is a CMS SignedData encapsulating a TSTInfo (content type id-ct-TSTInfo), signed
//! with signed attributes content-type, signing-time, message-digest and ESS
//! signing-certificate-v2 (openssl `ts -verify` insists on an ESS certificate identifier).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use der::asn1::{Any, BitString, Int, OctetString};
use der::{Decode, Encode, Sequence};
use time::OffsetDateTime;
use x509_cert::ext::pkix::name::GeneralName;
use x509_tsp::{MessageImprint as TspImprint, TimeStampReq, TspVersion, TstInfo};

use crate::cms::{self, CmsError, VerifiedCms};
use crate::der_util::{self, ParsedCert, oids};
use crate::digest::DigestAlgorithm;
use crate::signature::Signer;

/// Object identifiers (TSA policies), re-exported so callers need no extra dependency.
pub use const_oid::ObjectIdentifier;

/// Why a timestamp request, reply or token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TspError {
    /// Not a well-formed RFC 3161 structure.
    #[error("malformed timestamp data: {0}")]
    Malformed(String),
    /// The TSA refused the request.
    #[error("timestamp request rejected: status {status}, failInfo {fail_info:?}: {text}")]
    Rejected {
        /// PKIStatus (2 = rejection).
        status: u8,
        /// The failInfo bits set (badAlg = 0, badRequest = 2, badDataFormat = 5, ...).
        fail_info: Vec<u8>,
        /// The status strings, joined.
        text: String,
    },
    /// The token's CMS signature layer failed (bad signature, digest mismatch, ...).
    #[error("timestamp token signature: {0}")]
    Cms(#[from] CmsError),
    /// The token does not identify its signing certificate with an ESS attribute.
    #[error("timestamp token lacks the ESS signing-certificate attribute")]
    MissingSigningCertificate,
    /// The token was signed by a TSA certificate that is not approved.
    #[error("timestamp token signed by a TSA that is not approved")]
    NotApproved,
    /// The signing certificate lacks the id-kp-timeStamping extended key usage.
    #[error("TSA certificate lacks id-kp-timeStamping")]
    NotTimestampingCert,
    /// The TSA certificate was not valid at the token's genTime.
    #[error("TSA certificate not valid at genTime")]
    CertificateNotValidAtGenTime,
    /// The token timestamps different data than expected.
    #[error("timestamp token covers different data (message imprint mismatch)")]
    ImprintMismatch,
    /// A digest algorithm we do not support.
    #[error("unsupported digest algorithm {0}")]
    UnsupportedAlgorithm(String),
    /// The key does not fit the TSA certificate, or the certificate is unsuitable (set-up).
    #[error("TSA set-up: {0}")]
    Setup(String),
    /// Encoding failed.
    #[error("timestamp encoding failed: {0}")]
    Encoding(String),
}

fn enc(e: der::Error) -> TspError {
    TspError::Encoding(e.to_string())
}

/// PKIFailureInfo bits used by the responder (RFC 3161 2.4.2).
pub mod fail_info {
    /// Unrecognized or unsupported algorithm identifier.
    pub const BAD_ALG: u8 = 0;
    /// Transaction not permitted or supported.
    pub const BAD_REQUEST: u8 = 2;
    /// The data submitted has the wrong format.
    pub const BAD_DATA_FORMAT: u8 = 5;
    /// The requested TSA policy is not supported.
    pub const UNACCEPTED_POLICY: u8 = 15;
    /// The requested extension is not supported.
    pub const UNACCEPTED_EXTENSION: u8 = 16;
    /// The request cannot be handled due to system failure.
    pub const SYSTEM_FAILURE: u8 = 25;
}

/// A digest and its algorithm: what a timestamp is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageImprint {
    /// The digest algorithm.
    pub alg: DigestAlgorithm,
    /// The digest.
    pub digest: Vec<u8>,
}

impl MessageImprint {
    /// The imprint of `data` under `alg`.
    pub fn of(alg: DigestAlgorithm, data: &[u8]) -> Self {
        Self {
            alg,
            digest: alg.digest(data),
        }
    }
}

/// The TSTInfo accuracy field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Accuracy {
    /// Whole seconds.
    pub seconds: u64,
    /// Milliseconds (0 to 999).
    pub millis: u16,
    /// Microseconds (0 to 999).
    pub micros: u16,
}

/// A timestamp request (client side). X-Road sends neither nonce nor certReq by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeStampRequest {
    imprint: MessageImprint,
    cert_req: bool,
    nonce: Option<Vec<u8>>,
    policy: Option<ObjectIdentifier>,
}

fn positive_int(bytes: &[u8]) -> Result<Int, TspError> {
    let mut v: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
    if v.is_empty() || v[0] & 0x80 != 0 {
        v.insert(0, 0);
    }
    Int::new(&v).map_err(enc)
}

fn int_bytes(i: &Int) -> Vec<u8> {
    i.as_bytes().to_vec()
}

fn digest_alg_id(alg: DigestAlgorithm) -> spki::AlgorithmIdentifier<Any> {
    spki::AlgorithmIdentifier {
        oid: alg.oid(),
        parameters: Some(der::asn1::Null.into()),
    }
}

impl TimeStampRequest {
    /// A request for `digest` computed with `digest_alg`.
    pub fn new(digest_alg: DigestAlgorithm, digest: &[u8]) -> Self {
        Self {
            imprint: MessageImprint {
                alg: digest_alg,
                digest: digest.to_vec(),
            },
            cert_req: false,
            nonce: None,
            policy: None,
        }
    }

    /// Asks the TSA to include its certificate in the token.
    pub fn with_cert_req(mut self, cert_req: bool) -> Self {
        self.cert_req = cert_req;
        self
    }

    /// Adds a nonce (big-endian unsigned bytes) that the TSA must echo.
    pub fn with_nonce(mut self, nonce: Vec<u8>) -> Self {
        self.nonce = Some(nonce);
        self
    }

    /// Requests a specific TSA policy.
    pub fn with_policy(mut self, policy: ObjectIdentifier) -> Self {
        self.policy = Some(policy);
        self
    }

    /// The DER TimeStampReq.
    pub fn to_der(&self) -> Result<Vec<u8>, TspError> {
        let req = TimeStampReq {
            version: TspVersion::V1,
            message_imprint: TspImprint {
                hash_algorithm: digest_alg_id(self.imprint.alg),
                hashed_message: OctetString::new(self.imprint.digest.clone()).map_err(enc)?,
            },
            req_policy: self.policy,
            nonce: self.nonce.as_deref().map(positive_int).transpose()?,
            cert_req: self.cert_req,
            extensions: None,
        };
        req.to_der().map_err(enc)
    }
}

// PKIStatusInfo / TimeStampResp with owned, lenient fields (x509-tsp borrows via cmpv2).
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct StatusInfo {
    status: u8,
    #[asn1(optional = "true")]
    status_string: Option<Vec<String>>,
    #[asn1(optional = "true")]
    fail_info: Option<BitString>,
}

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct Resp {
    status: StatusInfo,
    #[asn1(optional = "true")]
    time_stamp_token: Option<Any>,
}

fn fail_bits(bits: &BitString) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, bit) in bits.bits().enumerate() {
        if bit {
            out.push(u8::try_from(i).unwrap_or(u8::MAX));
        }
    }
    out
}

/// Reads a DER TimeStampResp; returns the token (DER ContentInfo) if the TSA granted it.
pub fn parse_reply(reply_der: &[u8]) -> Result<Vec<u8>, TspError> {
    let r = Resp::from_der(reply_der).map_err(|e| TspError::Malformed(e.to_string()))?;
    match (r.status.status, r.time_stamp_token) {
        (0 | 1, Some(t)) => t.to_der().map_err(enc),
        (status, _) => Err(TspError::Rejected {
            status,
            fail_info: r
                .status
                .fail_info
                .as_ref()
                .map(fail_bits)
                .unwrap_or_default(),
            text: r.status.status_string.unwrap_or_default().join("; "),
        }),
    }
}

/// A time-stamping authority: answers TimeStampReq with TimeStampResp.
pub struct TsaResponder {
    cert: ParsedCert,
    signer: Arc<dyn Signer>,
    policy: ObjectIdentifier,
    accuracy: Option<Accuracy>,
    next_serial: AtomicU64,
}

impl std::fmt::Debug for TsaResponder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TsaResponder")
            .field("policy", &self.policy)
            .field("accuracy", &self.accuracy)
            .field("next_serial", &self.next_serial)
            .finish_non_exhaustive()
    }
}

fn rejection(bit: u8, text: &str) -> Vec<u8> {
    let byte = usize::from(bit / 8);
    let mut bytes = vec![0u8; byte + 1];
    bytes[byte] = 0x80 >> (bit % 8);
    let unused = 7 - (bit % 8);
    let fail_info = BitString::new(unused, bytes).ok();
    let resp = Resp {
        status: StatusInfo {
            status: 2,
            status_string: Some(vec![text.to_owned()]),
            fail_info,
        },
        time_stamp_token: None,
    };
    // A rejection is always encodable; fall back to a bare "rejection" if not.
    resp.to_der()
        .unwrap_or_else(|_| vec![0x30, 0x05, 0x30, 0x03, 0x02, 0x01, 0x02])
}

impl TsaResponder {
    /// A TSA signing with `signer`, whose certificate is `cert_der` (it must carry
    /// id-kp-timeStamping), issuing tokens under `policy`. Serial numbers start at 1.
    pub fn new(
        cert_der: &[u8],
        signer: Arc<dyn Signer>,
        policy: ObjectIdentifier,
    ) -> Result<Self, TspError> {
        let cert = ParsedCert::from_der(cert_der)
            .map_err(|_| TspError::Malformed("TSA certificate".into()))?;
        if !cert.has_eku(oids::ID_KP_TIME_STAMPING) {
            return Err(TspError::NotTimestampingCert);
        }
        let spki = cert
            .spki_der()
            .map_err(|_| TspError::Malformed("TSA certificate key".into()))?;
        if spki != signer.public_key_der() {
            return Err(TspError::Setup(
                "the key does not match the TSA certificate".into(),
            ));
        }
        Ok(Self {
            cert,
            signer,
            policy,
            accuracy: None,
            next_serial: AtomicU64::new(1),
        })
    }

    /// States the accuracy of genTime in issued tokens.
    pub fn with_accuracy(mut self, accuracy: Accuracy) -> Self {
        self.accuracy = Some(accuracy);
        self
    }

    /// Continues serial numbers from `next` (persist [`Self::next_serial`] across restarts).
    pub fn with_next_serial(self, next: u64) -> Self {
        self.next_serial.store(next, Ordering::SeqCst);
        self
    }

    /// The serial number the next token will get.
    pub fn next_serial(&self) -> u64 {
        self.next_serial.load(Ordering::SeqCst)
    }

    /// Answers a DER TimeStampReq at time `now` with a DER TimeStampResp.
    ///
    /// Rejections carry PKIStatus rejection (2) and failInfo: badDataFormat for undecodable
    /// requests or digests of the wrong length, badAlg for digest algorithms other than
    /// SHA-256/384/512, unacceptedPolicy for a policy other than ours, unacceptedExtension
    /// for any extension, systemFailure if signing fails.
    pub fn respond(&self, query_der: &[u8], now: OffsetDateTime) -> Vec<u8> {
        let Ok(req) = TimeStampReq::from_der(query_der) else {
            return rejection(fail_info::BAD_DATA_FORMAT, "request is not a TimeStampReq");
        };
        let alg = match DigestAlgorithm::from_oid(&req.message_imprint.hash_algorithm.oid) {
            Some(a) if a != DigestAlgorithm::Sha1 => a,
            _ => return rejection(fail_info::BAD_ALG, "unsupported digest algorithm"),
        };
        if req.message_imprint.hashed_message.as_bytes().len() != alg.output_len() {
            return rejection(fail_info::BAD_DATA_FORMAT, "digest length does not fit");
        }
        if req.req_policy.is_some_and(|p| p != self.policy) {
            return rejection(fail_info::UNACCEPTED_POLICY, "policy not supported");
        }
        if req.extensions.as_ref().is_some_and(|e| !e.is_empty()) {
            return rejection(fail_info::UNACCEPTED_EXTENSION, "extensions not supported");
        }
        match self.grant(&req, now) {
            Ok(der) => der,
            Err(_) => rejection(fail_info::SYSTEM_FAILURE, "could not sign"),
        }
    }

    fn grant(&self, req: &TimeStampReq, now: OffsetDateTime) -> Result<Vec<u8>, TspError> {
        let serial = self.next_serial.fetch_add(1, Ordering::SeqCst);
        let gen_time = der_util::generalized_time(now)
            .ok_or_else(|| TspError::Encoding("time out of range".into()))?;
        let accuracy = self.accuracy.map(|a| x509_tsp::Accuracy {
            seconds: (a.seconds > 0).then_some(a.seconds),
            millis: (a.millis > 0).then(|| i16::try_from(a.millis.min(999)).unwrap_or(999)),
            micros: (a.micros > 0).then(|| i16::try_from(a.micros.min(999)).unwrap_or(999)),
        });
        let tst = TstInfo {
            version: TspVersion::V1,
            policy: self.policy,
            message_imprint: req.message_imprint.clone(),
            serial_number: positive_int(&serial.to_be_bytes())?,
            gen_time,
            accuracy,
            ordering: false,
            nonce: req.nonce.clone(),
            tsa: Some(GeneralName::DirectoryName(
                self.cert.cert.tbs_certificate.subject.clone(),
            )),
            extensions: None,
        };
        let tst_der = tst.to_der().map_err(enc)?;
        let token = cms::build_signed_data(&cms::SignRequest {
            signer: self.signer.as_ref(),
            cert: &self.cert,
            chain: &[],
            include_certs: req.cert_req,
            econtent_type: oids::ID_CT_TST_INFO,
            content: &tst_der,
            encapsulate: true,
            signing_time: now,
            ocsp_response: None,
            timestamper: None,
        })?;
        let resp = Resp {
            status: StatusInfo {
                status: 0,
                status_string: None,
                fail_info: None,
            },
            time_stamp_token: Some(Any::from_der(&token).map_err(enc)?),
        };
        resp.to_der().map_err(enc)
    }
}

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TstInfoView {
    /// The time the TSA vouches for.
    pub gen_time: OffsetDateTime,
    /// The token's serial number (INTEGER content bytes).
    pub serial: Vec<u8>,
    /// The TSA policy the token was issued under.
    pub policy: ObjectIdentifier,
    /// What was timestamped.
    pub imprint: MessageImprint,
    /// The nonce, if the request had one.
    pub nonce: Option<Vec<u8>>,
    /// The accuracy, if stated.
    pub accuracy: Option<Accuracy>,
    /// The TSA certificate that signed (DER).
    pub tsa_cert: Vec<u8>,
}

/// Verifies a timestamp token (DER ContentInfo) against the imprint it should cover and the
/// approved TSA certificates (DER).
///
/// Checks the CMS layer (content type id-ct-TSTInfo, message digest, signature), the ESS
/// signing-certificate binding, that the signer is one of `approved_tsa_certs`, that it has
/// id-kp-timeStamping and was valid at genTime, and that the imprint matches.
pub fn verify_token(
    token_der: &[u8],
    expected_imprint: &MessageImprint,
    approved_tsa_certs: &[Vec<u8>],
) -> Result<TstInfoView, TspError> {
    let approved: Vec<ParsedCert> = approved_tsa_certs
        .iter()
        .filter_map(|c| ParsedCert::from_der(c).ok())
        .collect();
    let checked = cms::check_signed_data(token_der, None, &approved)?;
    if checked.econtent_type != oids::ID_CT_TST_INFO {
        return Err(TspError::Malformed("content is not a TSTInfo".into()));
    }
    if !checked.has_ess {
        return Err(TspError::MissingSigningCertificate);
    }
    if !approved.iter().any(|a| a.der == checked.signer.der) {
        return Err(TspError::NotApproved);
    }
    if !checked.signer.has_eku(oids::ID_KP_TIME_STAMPING) {
        return Err(TspError::NotTimestampingCert);
    }
    let econtent = checked
        .econtent
        .as_deref()
        .ok_or_else(|| TspError::Malformed("no TSTInfo".into()))?;
    let tst = TstInfo::from_der(econtent).map_err(|e| TspError::Malformed(e.to_string()))?;
    let gen_time = der_util::from_unix_duration(tst.gen_time.to_unix_duration())
        .ok_or_else(|| TspError::Malformed("genTime".into()))?;
    if !checked.signer.valid_at(gen_time) {
        return Err(TspError::CertificateNotValidAtGenTime);
    }
    let alg =
        DigestAlgorithm::from_oid(&tst.message_imprint.hash_algorithm.oid).ok_or_else(|| {
            TspError::UnsupportedAlgorithm(tst.message_imprint.hash_algorithm.oid.to_string())
        })?;
    let imprint = MessageImprint {
        alg,
        digest: tst.message_imprint.hashed_message.as_bytes().to_vec(),
    };
    if imprint != *expected_imprint {
        return Err(TspError::ImprintMismatch);
    }
    Ok(TstInfoView {
        gen_time,
        serial: int_bytes(&tst.serial_number),
        policy: tst.policy,
        imprint,
        nonce: tst.nonce.as_ref().map(int_bytes),
        accuracy: tst.accuracy.map(|a| Accuracy {
            seconds: a.seconds.unwrap_or(0),
            millis: a.millis.and_then(|m| u16::try_from(m).ok()).unwrap_or(0),
            micros: a.micros.and_then(|m| u16::try_from(m).ok()).unwrap_or(0),
        }),
        tsa_cert: checked.signer.der,
    })
}

/// Verifies the signature timestamp of a verified CMS signature: the token must cover the
/// signature value.
pub fn verify_signature_timestamp(
    cms: &VerifiedCms,
    approved_tsa_certs: &[Vec<u8>],
) -> Result<TstInfoView, TspError> {
    let token = cms
        .signature_timestamp
        .as_deref()
        .ok_or_else(|| TspError::Malformed("the signature has no timestamp".into()))?;
    // The imprint algorithm is the token's; compute the expected digest with it.
    let alg = token_imprint_algorithm(token)?;
    let expected = MessageImprint::of(alg, &cms.signature_value);
    verify_token(token, &expected, approved_tsa_certs)
}

/// The digest algorithm of a token's message imprint, without verifying anything.
pub fn token_imprint_algorithm(token_der: &[u8]) -> Result<DigestAlgorithm, TspError> {
    let ci = cms::content_info_econtent(token_der)?;
    let tst = TstInfo::from_der(&ci).map_err(|e| TspError::Malformed(e.to_string()))?;
    DigestAlgorithm::from_oid(&tst.message_imprint.hash_algorithm.oid).ok_or_else(|| {
        TspError::UnsupportedAlgorithm(tst.message_imprint.hash_algorithm.oid.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejection_encodes_fail_info() {
        let der = rejection(fail_info::BAD_DATA_FORMAT, "x");
        match parse_reply(&der) {
            Err(TspError::Rejected {
                status, fail_info, ..
            }) => {
                assert_eq!(status, 2);
                assert_eq!(fail_info, vec![fail_info::BAD_DATA_FORMAT]);
            }
            other => panic!("{other:?}"),
        }
        let der = rejection(fail_info::SYSTEM_FAILURE, "y");
        assert!(
            matches!(parse_reply(&der), Err(TspError::Rejected { fail_info, .. }) if fail_info == vec![25])
        );
    }

    #[test]
    fn request_round_trip() {
        let d = DigestAlgorithm::Sha256.digest(b"x");
        let der = TimeStampRequest::new(DigestAlgorithm::Sha256, &d)
            .with_nonce(vec![0x80, 1])
            .with_cert_req(true)
            .to_der()
            .unwrap();
        let r = TimeStampReq::from_der(&der).unwrap();
        assert!(r.cert_req);
        assert_eq!(r.nonce.unwrap().as_bytes(), &[0, 0x80, 1]);
    }
}
