//! OCSP (RFC 6960): request building, a responder, and response verification with a
//! freshness window.
//!
//! Profile (see `docs/trust-services.md`): one certificate per request, CertID hashed with SHA-1
//! by default (what openssl and most responders expect) or SHA-256, no nonce (responses are
//! stapled and judged by `thisUpdate` freshness, as in X-Road), BasicOCSPResponse signed by the
//! CA itself or by a responder certificate issued directly by the CA with id-kp-OCSPSigning.

mod responder;

use base64::Engine;
use const_oid::ObjectIdentifier;
use der::asn1::OctetString;
use der::{Decode, Encode};
use time::{Duration, OffsetDateTime};
use x509_ocsp::{
    BasicOcspResponse, CertId, OcspRequest, OcspResponse, OcspResponseStatus, Request, ResponderId,
    SingleResponse, TbsRequest,
};

use crate::der_util::{self, ParsedCert, oids};
use crate::digest::DigestAlgorithm;

pub use crate::revocation::{CertStatus, MemoryRevocationSource, RevocationSource};
pub use responder::OcspResponder;

/// How far in the future a `thisUpdate` may lie before the response is refused (clock skew).
pub const MAX_CLOCK_SKEW: Duration = Duration::minutes(2);

/// Why an OCSP request could not be built or a response not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OcspError {
    /// The input is not a well-formed OCSP structure (or a certificate is not DER).
    #[error("malformed OCSP data: {0}")]
    Malformed(String),
    /// The responder answered with a status other than `successful`.
    #[error("OCSP responder answered {0:?}")]
    ResponseStatus(ResponseStatus),
    /// No single response in the OCSP response is about the certificate in question.
    #[error("OCSP response does not cover the certificate (CertID mismatch)")]
    CertIdMismatch,
    /// The response was signed by someone not authorised to answer for the issuer.
    #[error("OCSP response signed by an unauthorised responder")]
    WrongResponder,
    /// The response's signature does not verify.
    #[error("OCSP response signature does not verify")]
    BadSignature,
    /// `thisUpdate` is older than the freshness window allows.
    #[error("OCSP response is stale: thisUpdate {this_update} is older than the freshness window")]
    Stale {
        /// The response's `thisUpdate`.
        this_update: OffsetDateTime,
    },
    /// `thisUpdate` lies in the future by more than the allowed clock skew.
    #[error("OCSP response thisUpdate {this_update} lies in the future")]
    NotYetValid {
        /// The response's `thisUpdate`.
        this_update: OffsetDateTime,
    },
    /// `nextUpdate` has passed.
    #[error("OCSP response expired: nextUpdate {next_update} has passed")]
    Expired {
        /// The response's `nextUpdate`.
        next_update: OffsetDateTime,
    },
    /// The responder key does not match the responder certificate (responder set-up only).
    #[error("the signing key does not match the responder certificate")]
    KeyMismatch,
    /// A value could not be encoded.
    #[error("OCSP encoding failed: {0}")]
    Encoding(String),
}

/// An OCSPResponseStatus other than `successful`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResponseStatus {
    /// malformedRequest (1).
    MalformedRequest,
    /// internalError (2).
    InternalError,
    /// tryLater (3).
    TryLater,
    /// sigRequired (5).
    SigRequired,
    /// unauthorized (6).
    Unauthorized,
}

impl ResponseStatus {
    fn from_ocsp(s: OcspResponseStatus) -> Option<Self> {
        match s {
            OcspResponseStatus::Successful => None,
            OcspResponseStatus::MalformedRequest => Some(Self::MalformedRequest),
            OcspResponseStatus::InternalError => Some(Self::InternalError),
            OcspResponseStatus::TryLater => Some(Self::TryLater),
            OcspResponseStatus::SigRequired => Some(Self::SigRequired),
            OcspResponseStatus::Unauthorized => Some(Self::Unauthorized),
        }
    }
}

fn malformed(what: &str) -> impl Fn(der::Error) -> OcspError + '_ {
    move |e| OcspError::Malformed(format!("{what}: {e}"))
}

fn parse_cert(der_bytes: &[u8], what: &str) -> Result<ParsedCert, OcspError> {
    ParsedCert::from_der(der_bytes).map_err(|_| OcspError::Malformed(format!("{what} certificate")))
}

/// Builds the CertID of `serial` issued by `issuer`, hashing with `hash`.
pub(crate) fn cert_id(
    issuer: &ParsedCert,
    serial: &x509_cert::serial_number::SerialNumber,
    hash: DigestAlgorithm,
) -> Result<CertId, OcspError> {
    let name = issuer
        .subject_der()
        .map_err(|_| OcspError::Malformed("issuer name".into()))?;
    let enc = |e: der::Error| OcspError::Encoding(e.to_string());
    Ok(CertId {
        hash_algorithm: spki::AlgorithmIdentifierOwned {
            oid: hash.oid(),
            parameters: Some(der::asn1::Null.into()),
        },
        issuer_name_hash: OctetString::new(hash.digest(&name)).map_err(enc)?,
        issuer_key_hash: OctetString::new(hash.digest(issuer.public_key_bits())).map_err(enc)?,
        serial_number: serial.clone(),
    })
}

/// Whether `id` names `serial` under `issuer`, whatever hash algorithm the CertID uses.
pub(crate) fn cert_id_matches(
    id: &CertId,
    issuer: &ParsedCert,
    serial: &x509_cert::serial_number::SerialNumber,
) -> bool {
    let Some(hash) = DigestAlgorithm::from_oid(&id.hash_algorithm.oid) else {
        return false;
    };
    let Ok(name) = issuer.subject_der() else {
        return false;
    };
    id.serial_number == *serial
        && id.issuer_name_hash.as_bytes() == hash.digest(&name).as_slice()
        && id.issuer_key_hash.as_bytes() == hash.digest(issuer.public_key_bits()).as_slice()
}

/// Builds a DER OCSPRequest for `cert_der` issued by `issuer_der`, with no nonce.
///
/// `hash` is the CertID hash: [`DigestAlgorithm::Sha1`] for the widest compatibility (openssl's
/// default), or [`DigestAlgorithm::Sha256`].
pub fn build_request(
    cert_der: &[u8],
    issuer_der: &[u8],
    hash: DigestAlgorithm,
) -> Result<Vec<u8>, OcspError> {
    let cert = parse_cert(cert_der, "subject")?;
    let issuer = parse_cert(issuer_der, "issuer")?;
    let id = cert_id(&issuer, &cert.cert.tbs_certificate.serial_number, hash)?;
    let req = OcspRequest {
        tbs_request: TbsRequest {
            version: x509_ocsp::Version::V1,
            requestor_name: None,
            request_list: vec![Request {
                req_cert: id,
                single_request_extensions: None,
            }],
            request_extensions: None,
        },
        optional_signature: None,
    };
    req.to_der().map_err(|e| OcspError::Encoding(e.to_string()))
}

/// The URL for an OCSP GET request (RFC 6960 appendix A.1): `base` + `/` + url-encoded base64.
pub fn get_url(base: &str, request_der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(request_der);
    let mut out = String::with_capacity(base.len() + b64.len() + 8);
    out.push_str(base.trim_end_matches('/'));
    out.push('/');
    for c in b64.chars() {
        match c {
            '+' => out.push_str("%2B"),
            '/' => out.push_str("%2F"),
            '=' => out.push_str("%3D"),
            c => out.push(c),
        }
    }
    out
}

/// Decodes the request carried in the last path segment of an OCSP GET URL path.
///
/// `path_segment` is what follows the responder's base path (for `GET /ocsp/MEU...` pass
/// `MEU...`); it is percent-decoded and then base64-decoded.
pub fn request_from_get_path(path_segment: &str) -> Result<Vec<u8>, OcspError> {
    let bytes = path_segment.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| OcspError::Malformed("bad percent-encoding".into()))?;
            decoded.push(hex);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    base64::engine::general_purpose::STANDARD
        .decode(&decoded)
        .map_err(|e| OcspError::Malformed(format!("GET request base64: {e}")))
}

/// A successfully verified OCSP answer about one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedStatus {
    /// The certificate's status (a revoked certificate is a verified answer, not an error).
    pub status: CertStatus,
    /// When the status was known to be correct.
    pub this_update: OffsetDateTime,
    /// When newer information will be available, if the responder said.
    pub next_update: Option<OffsetDateTime>,
    /// When the response was signed.
    pub produced_at: OffsetDateTime,
    /// The delegated responder's certificate (DER), or `None` when the CA signed itself.
    pub responder_cert: Option<Vec<u8>>,
}

fn gtime(t: &x509_ocsp::OcspGeneralizedTime) -> Result<OffsetDateTime, OcspError> {
    der_util::from_unix_duration(t.0.to_unix_duration())
        .ok_or_else(|| OcspError::Malformed("time out of range".into()))
}

/// The status and response status in a raw OCSP response, without any verification.
///
/// Useful for logs and for deciding whether a response is worth verifying.
pub fn response_status(resp_der: &[u8]) -> Result<Option<ResponseStatus>, OcspError> {
    let resp = OcspResponse::from_der(resp_der).map_err(malformed("OCSPResponse"))?;
    Ok(ResponseStatus::from_ocsp(resp.response_status))
}

fn responder_matches(id: &ResponderId, cert: &ParsedCert) -> bool {
    match id {
        ResponderId::ByName(name) => *name == cert.cert.tbs_certificate.subject,
        ResponderId::ByKey(hash) => {
            hash.as_bytes()
                == DigestAlgorithm::Sha1
                    .digest(cert.public_key_bits())
                    .as_slice()
        }
    }
}

/// Verifies an OCSP response about `cert_der` (issued by `issuer_der`) at time `now`.
///
/// Checks, in this order: response status, structure, that a single response covers the
/// certificate (any CertID hash), that the signer is the issuer or a responder certificate
/// issued directly by it with id-kp-OCSPSigning and valid at `now`, the signature, and the
/// times: `thisUpdate` no older than `freshness` and not more than [`MAX_CLOCK_SKEW`] ahead,
/// `nextUpdate` (if present) not passed. A revoked or unknown certificate is reported in
/// [`VerifiedStatus::status`]; deciding what to do with it is the caller's business.
pub fn verify_response(
    resp_der: &[u8],
    cert_der: &[u8],
    issuer_der: &[u8],
    now: OffsetDateTime,
    freshness: Duration,
) -> Result<VerifiedStatus, OcspError> {
    let cert = parse_cert(cert_der, "subject")?;
    let issuer = parse_cert(issuer_der, "issuer")?;

    let resp = OcspResponse::from_der(resp_der).map_err(malformed("OCSPResponse"))?;
    if let Some(s) = ResponseStatus::from_ocsp(resp.response_status) {
        return Err(OcspError::ResponseStatus(s));
    }
    let bytes = resp
        .response_bytes
        .ok_or_else(|| OcspError::Malformed("successful response without responseBytes".into()))?;
    if bytes.response_type != oids::ID_PKIX_OCSP_BASIC {
        return Err(OcspError::Malformed(format!(
            "response type {} is not id-pkix-ocsp-basic",
            bytes.response_type
        )));
    }
    let basic_der = bytes.response.as_bytes();
    let basic = BasicOcspResponse::from_der(basic_der).map_err(malformed("BasicOCSPResponse"))?;
    // The signature covers tbsResponseData exactly as received.
    let outer = der_util::read_single(basic_der)
        .map_err(|_| OcspError::Malformed("BasicOCSPResponse".into()))?;
    let parts = der_util::children(outer.value)
        .map_err(|_| OcspError::Malformed("BasicOCSPResponse".into()))?;
    let tbs_raw = parts
        .first()
        .ok_or_else(|| OcspError::Malformed("BasicOCSPResponse".into()))?
        .raw;

    let data = &basic.tbs_response_data;
    let serial = &cert.cert.tbs_certificate.serial_number;
    let single: &SingleResponse = data
        .responses
        .iter()
        .find(|r| cert_id_matches(&r.cert_id, &issuer, serial))
        .ok_or(OcspError::CertIdMismatch)?;

    // Who signed: the CA itself, or a delegated responder certified by it.
    let (signer, responder_cert) = if responder_matches(&data.responder_id, &issuer) {
        (issuer.clone(), None)
    } else {
        // Certificates exactly as received: [0] EXPLICIT SEQUENCE OF Certificate.
        let mut raw_certs = Vec::new();
        if let Some(certs) = parts.iter().find(|p| p.tag == 0xa0) {
            let seq = der_util::read_single(certs.value)
                .map_err(|_| OcspError::Malformed("certs".into()))?;
            raw_certs =
                der_util::children(seq.value).map_err(|_| OcspError::Malformed("certs".into()))?;
        }
        let mut found = None;
        for c in raw_certs {
            let pc = parse_cert(c.raw, "responder")?;
            if responder_matches(&data.responder_id, &pc) {
                found = Some(pc);
                break;
            }
        }
        let rc = found.ok_or(OcspError::WrongResponder)?;
        if rc.verify_issued_by(&issuer).is_err()
            || !rc.has_eku(oids::ID_KP_OCSP_SIGNING)
            || !rc.valid_at(now)
        {
            return Err(OcspError::WrongResponder);
        }
        let der_rc = rc.der.clone();
        (rc, Some(der_rc))
    };

    let sig = basic
        .signature
        .as_bytes()
        .ok_or_else(|| OcspError::Malformed("signature has unused bits".into()))?;
    der_util::verify_with_cert(&signer, &basic.signature_algorithm.oid, tbs_raw, sig)
        .map_err(|_| OcspError::BadSignature)?;

    let this_update = gtime(&single.this_update)?;
    let next_update = single.next_update.as_ref().map(gtime).transpose()?;
    let produced_at = gtime(&data.produced_at)?;
    if this_update > now + MAX_CLOCK_SKEW {
        return Err(OcspError::NotYetValid { this_update });
    }
    if this_update < now - freshness {
        return Err(OcspError::Stale { this_update });
    }
    if let Some(next_update) = next_update.filter(|n| *n < now) {
        return Err(OcspError::Expired { next_update });
    }

    let status = match &single.cert_status {
        x509_ocsp::CertStatus::Good(_) => CertStatus::Good,
        x509_ocsp::CertStatus::Unknown(_) => CertStatus::Unknown,
        x509_ocsp::CertStatus::Revoked(info) => CertStatus::Revoked {
            at: gtime(&info.revocation_time)?,
            reason: info.revocation_reason.map(|r| r as u8),
        },
    };
    Ok(VerifiedStatus {
        status,
        this_update,
        next_update,
        produced_at,
        responder_cert,
    })
}

/// Reads the CertIDs' serial numbers of a DER OCSP request (for logs and tests).
pub fn request_serials(request_der: &[u8]) -> Result<Vec<Vec<u8>>, OcspError> {
    let req = OcspRequest::from_der(request_der).map_err(malformed("OCSPRequest"))?;
    Ok(req
        .tbs_request
        .request_list
        .iter()
        .map(|r| r.req_cert.serial_number.as_bytes().to_vec())
        .collect())
}

/// The OID of the CertID hash in a request's first entry, if the request parses.
pub fn request_hash_algorithm(request_der: &[u8]) -> Option<ObjectIdentifier> {
    OcspRequest::from_der(request_der)
        .ok()?
        .tbs_request
        .request_list
        .first()
        .map(|r| r.req_cert.hash_algorithm.oid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_path_round_trip() {
        let req = vec![0x30, 0x03, 0xfb, 0xff, 0x3e];
        let url = get_url("http://127.0.0.1:1/ocsp/", &req);
        let seg = url.rsplit('/').next().unwrap();
        assert!(!seg.contains('+') && !seg.contains('='));
        assert_eq!(request_from_get_path(seg).unwrap(), req);
        assert!(matches!(
            request_from_get_path("%zz"),
            Err(OcspError::Malformed(_))
        ));
    }
}
