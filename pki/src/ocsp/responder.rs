//! The OCSP responder as a pure function from request bytes and a clock to response bytes.

use std::sync::Arc;

use der::asn1::{BitString, OctetString};
use der::{Decode, Encode};
use time::{Duration, OffsetDateTime};
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::CrlReason;
use x509_ocsp::{
    BasicOcspResponse, OcspGeneralizedTime, OcspRequest, OcspResponse, OcspResponseStatus,
    ResponderId, ResponseData, RevokedInfo, SingleResponse,
};

use super::{OcspError, cert_id_matches};
use crate::der_util::{self, ParsedCert, oids};
use crate::digest::DigestAlgorithm;
use crate::revocation::{CertStatus, IssuerRef, RevocationSource};
use crate::signature::Signer;

/// Most certificates one request may ask about; larger requests are refused as malformed.
const MAX_REQUESTS: usize = 16;

/// An OCSP responder for the certificates of one issuing CA.
///
/// It signs either as the CA itself (pass the CA certificate as responder certificate) or as a
/// delegated responder whose certificate the CA issued with id-kp-OCSPSigning.
pub struct OcspResponder<S> {
    issuer: ParsedCert,
    responder: ParsedCert,
    delegated: bool,
    signer: Arc<dyn Signer>,
    source: S,
    validity: Duration,
}

impl<S> std::fmt::Debug for OcspResponder<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OcspResponder")
            .field("delegated", &self.delegated)
            .field("validity", &self.validity)
            .finish_non_exhaustive()
    }
}

fn to_ocsp_time(t: OffsetDateTime) -> Result<OcspGeneralizedTime, OcspError> {
    der_util::generalized_time(t)
        .map(OcspGeneralizedTime)
        .ok_or_else(|| OcspError::Encoding("time out of range".into()))
}

fn crl_reason(code: u8) -> Option<CrlReason> {
    Some(match code {
        0 => CrlReason::Unspecified,
        1 => CrlReason::KeyCompromise,
        2 => CrlReason::CaCompromise,
        3 => CrlReason::AffiliationChanged,
        4 => CrlReason::Superseded,
        5 => CrlReason::CessationOfOperation,
        6 => CrlReason::CertificateHold,
        8 => CrlReason::RemoveFromCRL,
        9 => CrlReason::PrivilegeWithdrawn,
        10 => CrlReason::AaCompromise,
        _ => return None,
    })
}

impl<S: RevocationSource> OcspResponder<S> {
    /// A responder for certificates issued by `issuer_der`, signing with `signer` whose
    /// certificate is `responder_der` (the issuer itself, or a delegated OCSP signing
    /// certificate issued by it). Responses are valid for one hour by default.
    pub fn new(
        issuer_der: &[u8],
        responder_der: &[u8],
        signer: Arc<dyn Signer>,
        source: S,
    ) -> Result<Self, OcspError> {
        let issuer = ParsedCert::from_der(issuer_der)
            .map_err(|_| OcspError::Malformed("issuer certificate".into()))?;
        let responder = ParsedCert::from_der(responder_der)
            .map_err(|_| OcspError::Malformed("responder certificate".into()))?;
        let responder_spki = responder
            .spki_der()
            .map_err(|_| OcspError::Malformed("responder key".into()))?;
        if responder_spki != signer.public_key_der() {
            return Err(OcspError::KeyMismatch);
        }
        let delegated = issuer.der != responder.der;
        if delegated
            && (responder.verify_issued_by(&issuer).is_err()
                || !responder.has_eku(oids::ID_KP_OCSP_SIGNING))
        {
            return Err(OcspError::WrongResponder);
        }
        Ok(Self {
            issuer,
            responder,
            delegated,
            signer,
            source,
            validity: Duration::hours(1),
        })
    }

    /// Sets how long after `thisUpdate` the `nextUpdate` lies.
    pub fn with_validity(mut self, validity: Duration) -> Self {
        self.validity = validity;
        self
    }

    /// The revocation source, for callers that need to change it.
    pub fn source(&self) -> &S {
        &self.source
    }

    /// Answers a DER OCSPRequest at time `now` with a DER OCSPResponse.
    ///
    /// Garbage gets `malformedRequest`; a failure to sign gets `internalError`. Certificates
    /// not issued by this responder's CA (CertID issuer hashes do not match) are `unknown`.
    /// A request nonce is echoed; none is required.
    pub fn respond(&self, request_der: &[u8], now: OffsetDateTime) -> Vec<u8> {
        let Ok(req) = OcspRequest::from_der(request_der) else {
            return status_only(OcspResponseStatus::MalformedRequest);
        };
        let list = &req.tbs_request.request_list;
        if list.is_empty() || list.len() > MAX_REQUESTS {
            return status_only(OcspResponseStatus::MalformedRequest);
        }
        match self.build(&req, now) {
            Ok(der) => der,
            Err(_) => status_only(OcspResponseStatus::InternalError),
        }
    }

    /// Answers an OCSP GET request given the path segment after the responder's base path.
    pub fn respond_get(&self, path_segment: &str, now: OffsetDateTime) -> Vec<u8> {
        match super::request_from_get_path(path_segment) {
            Ok(req) => self.respond(&req, now),
            Err(_) => status_only(OcspResponseStatus::MalformedRequest),
        }
    }

    fn build(&self, req: &OcspRequest, now: OffsetDateTime) -> Result<Vec<u8>, OcspError> {
        let enc = |e: der::Error| OcspError::Encoding(e.to_string());
        let this_update = to_ocsp_time(now)?;
        let next_update = to_ocsp_time(now + self.validity)?;
        let mut responses = Vec::new();
        for r in &req.tbs_request.request_list {
            let id = &r.req_cert;
            let hash = DigestAlgorithm::from_oid(&id.hash_algorithm.oid);
            let status = match hash {
                Some(hash) if cert_id_matches(id, &self.issuer, &id.serial_number) => {
                    let issuer = IssuerRef {
                        hash,
                        name_hash: id.issuer_name_hash.as_bytes(),
                        key_hash: id.issuer_key_hash.as_bytes(),
                    };
                    self.source.status(&issuer, id.serial_number.as_bytes())
                }
                _ => CertStatus::Unknown,
            };
            let cert_status = match status {
                CertStatus::Good => x509_ocsp::CertStatus::good(),
                CertStatus::Unknown => x509_ocsp::CertStatus::unknown(),
                CertStatus::Revoked { at, reason } => x509_ocsp::CertStatus::Revoked(RevokedInfo {
                    revocation_time: to_ocsp_time(at)?,
                    revocation_reason: reason.and_then(crl_reason),
                }),
            };
            responses.push(SingleResponse {
                cert_id: id.clone(),
                cert_status,
                this_update,
                next_update: Some(next_update),
                single_extensions: None,
            });
        }
        // Echo a nonce if the client sent one (openssl does by default).
        let response_extensions = req
            .tbs_request
            .request_extensions
            .iter()
            .flatten()
            .find(|e| e.extn_id == oids::ID_PKIX_OCSP_NONCE)
            .map(|e| {
                vec![Extension {
                    extn_id: e.extn_id,
                    critical: false,
                    extn_value: e.extn_value.clone(),
                }]
            });
        let key_hash = DigestAlgorithm::Sha1.digest(self.responder.public_key_bits());
        let tbs = ResponseData {
            version: x509_ocsp::Version::V1,
            responder_id: ResponderId::ByKey(OctetString::new(key_hash).map_err(enc)?),
            produced_at: this_update,
            responses,
            response_extensions,
        };
        let tbs_der = tbs.to_der().map_err(enc)?;
        let sig = self
            .signer
            .sign(&tbs_der)
            .map_err(|e| OcspError::Encoding(e.to_string()))?;
        let certs = if self.delegated {
            Some(vec![(*self.responder.cert).clone()])
        } else {
            None
        };
        let basic = BasicOcspResponse {
            tbs_response_data: tbs,
            signature_algorithm: der_util::signature_algorithm_identifier(self.signer.algorithm()),
            signature: BitString::from_bytes(&sig).map_err(enc)?,
            certs,
        };
        OcspResponse::successful(basic)
            .and_then(|r| r.to_der())
            .map_err(enc)
    }
}

fn status_only(status: OcspResponseStatus) -> Vec<u8> {
    // OCSPResponse ::= SEQUENCE { responseStatus ENUMERATED } — three fixed bytes of content.
    vec![0x30, 0x03, 0x0a, 0x01, status as u8]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_only_encodes() {
        let der = status_only(OcspResponseStatus::MalformedRequest);
        let r = OcspResponse::from_der(&der).unwrap();
        assert_eq!(r.response_status, OcspResponseStatus::MalformedRequest);
        assert!(r.response_bytes.is_none());
    }
}
