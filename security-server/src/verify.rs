//! Verification of a received `trustbus/1` message, before anything reaches a backend or an
//! information system (docs/protocol.md §5.5 lists the checks and their fault codes).
//!
//! Certificate chain and OCSP results are cached by (certificate fingerprint, configuration
//! version, purpose) and the exact OCSP response bytes, and parsed certificates by their DER: the
//! hot path then costs the manifest comparison, one CMS signature check and a few lookups.

use std::collections::HashMap;
use std::sync::Mutex;

use time::OffsetDateTime;
use trustbus_pki::Certificate;
use trustbus_pki::chain::{ChainError, Purpose};
use trustbus_pki::cms::{self, CmsError};
use trustbus_pki::ocsp::{self, CertStatus, OcspError};
use trustbus_pki::profile;
use trustbus_sdk::fault::{ErrorKind, Fault, FaultCode, Origin};
use trustbus_sdk::id::ClientId;

use crate::gcview::GcView;
use crate::transport::{ReceivedMessage, encode};

/// A fault `origin.kind[.cause]`.
pub fn fault(
    origin: Origin,
    kind: ErrorKind,
    cause: Option<ErrorKind>,
    msg: impl Into<String>,
) -> Fault {
    let mut code = FaultCode::new(origin, kind);
    if let Some(c) = cause {
        code = code.caused_by(c);
    }
    Fault::new(code, msg)
}

/// What a verified message proves.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The signer's certificate.
    pub signer: Certificate,
    /// The signer's OCSP response (stapled in the signature).
    pub ocsp: Vec<u8>,
    /// The signing time.
    pub signing_time: OffsetDateTime,
}

/// Cache key of a passed certificate check: certificate fingerprint, configuration version and
/// purpose. The OCSP response the result rests on is compared byte for byte in the entry.
type CheckKey = ([u8; 32], u64, u8);

/// The OCSP responses a passed check rests on, each with when it must be re-checked.
type GoodResponses = Vec<(Vec<u8>, OffsetDateTime)>;

/// At most this many OCSP responses are remembered per certificate (they are refreshed every few
/// minutes; older ones simply expire).
const RESPONSES_PER_CERT: usize = 4;

/// Remembers certificate checks that passed, until they would need re-checking, and the parsed
/// form of certificates seen in signatures.
///
/// A passed check is only reused for the very same certificate (fingerprint), the very same OCSP
/// response bytes, the same configuration version and purpose, and only before the earliest of
/// the response's `nextUpdate`, its freshness limit and the certificate's expiry: a new, revoked
/// or stale response, another certificate or a new configuration goes through the full check.
/// Parsing is a pure function of the DER bytes, so the certificate cache, keyed by those bytes,
/// cannot change a decision.
#[derive(Debug, Default)]
pub struct VerifyCache {
    ok_until: Mutex<HashMap<CheckKey, GoodResponses>>,
    certs: Mutex<HashMap<Vec<u8>, Certificate>>,
}

/// Bound on cached parsed certificates (signers of all members that talk to this server).
const MAX_CERTS: usize = 4096;

impl VerifyCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    fn key(cert: &Certificate, version: u64, purpose: Purpose) -> CheckKey {
        (*cert.fingerprint(), version, purpose as u8)
    }

    fn hit(&self, key: &CheckKey, ocsp: &[u8], now: OffsetDateTime) -> bool {
        let m = self.ok_until.lock().unwrap_or_else(|e| e.into_inner());
        m.get(key).is_some_and(|rs| {
            rs.iter()
                .any(|(r, until)| r.as_slice() == ocsp && now < *until)
        })
    }

    fn put(&self, key: CheckKey, ocsp: &[u8], until: OffsetDateTime, now: OffsetDateTime) {
        let mut m = self.ok_until.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() > 10_000 {
            m.clear();
        }
        let rs = m.entry(key).or_default();
        rs.retain(|(r, u)| now < *u && r.as_slice() != ocsp);
        if rs.len() >= RESPONSES_PER_CERT {
            rs.remove(0);
        }
        rs.push((ocsp.to_vec(), until));
    }

    /// The certificate with this DER, parsed once.
    pub fn certificate(&self, der: &[u8]) -> Result<Certificate, trustbus_pki::cert::CertError> {
        if let Some(c) = self
            .certs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(der)
        {
            return Ok(c.clone());
        }
        let c = Certificate::from_der(der)?;
        let mut m = self.certs.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= MAX_CERTS {
            m.clear();
        }
        m.insert(der.to_vec(), c.clone());
        Ok(c)
    }

    /// Number of cached check results (diagnostics, tests).
    pub fn len(&self) -> usize {
        self.ok_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(Vec::len)
            .sum()
    }

    /// Whether no check result is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Checks `cert` for `purpose`: chain to an approved CA, and a good OCSP response among
/// `responses` that is fresh under the configuration's window. `kind` is the fault kind for
/// failures (`CertValidation` for signers, `SslAuthenticationFailed` for TLS peers).
#[allow(clippy::too_many_arguments)]
pub fn check_certificate(
    view: &GcView,
    cache: &VerifyCache,
    cert: &Certificate,
    extra: &[Certificate],
    responses: &[Vec<u8>],
    purpose: Purpose,
    origin: Origin,
    kind: ErrorKind,
    now: OffsetDateTime,
) -> Result<Vec<u8>, Fault> {
    if responses.is_empty() {
        return Err(fault(
            origin,
            kind,
            Some(ErrorKind::MissingValidationInfo),
            format!("no OCSP response for certificate {}", cert.subject()),
        ));
    }
    let key = VerifyCache::key(cert, view.version(), purpose);
    for r in responses {
        if cache.hit(&key, r, now) {
            return Ok(r.clone());
        }
    }
    let chain = view
        .trust
        .validate(cert, extra, purpose, now)
        .map_err(|e| {
            let cause = match e {
                ChainError::Expired { .. } | ChainError::NotYetValid { .. } => {
                    ErrorKind::CertValidityTime
                }
                _ => ErrorKind::InvalidCertPath,
            };
            fault(
                origin,
                kind,
                Some(cause),
                format!("certificate {}: {e}", cert.subject()),
            )
        })?;
    let issuer = chain
        .path
        .get(1)
        .ok_or_else(|| fault(origin, kind, Some(ErrorKind::InvalidCertPath), "no issuer"))?;
    let mut last = None;
    for r in responses {
        match ocsp::verify_response(r, cert.der(), issuer.der(), now, view.ocsp_freshness) {
            Ok(v) => match v.status {
                CertStatus::Good => {
                    let mut until = v.this_update + view.ocsp_freshness;
                    if let Some(n) = v.next_update {
                        until = until.min(n);
                    }
                    if let Some(c) = chain.valid_until() {
                        until = until.min(c);
                    }
                    cache.put(key, r, until, now);
                    return Ok(r.clone());
                }
                CertStatus::Revoked { at, .. } => {
                    return Err(fault(
                        origin,
                        kind,
                        None,
                        format!("certificate {} was revoked at {at}", cert.subject()),
                    ));
                }
                CertStatus::Unknown => {
                    last = Some(fault(
                        origin,
                        kind,
                        None,
                        format!("OCSP status of certificate {} is unknown", cert.subject()),
                    ));
                }
            },
            Err(e) => {
                let detail = match &e {
                    OcspError::Stale { .. }
                    | OcspError::Expired { .. }
                    | OcspError::NotYetValid { .. } => "not fresh",
                    _ => "not valid",
                };
                last = Some(fault(
                    origin,
                    kind,
                    Some(ErrorKind::IncorrectValidationInfo),
                    format!("OCSP response for {} is {detail}: {e}", cert.subject()),
                ));
            }
        }
    }
    Err(last.unwrap_or_else(|| {
        fault(
            origin,
            kind,
            Some(ErrorKind::MissingValidationInfo),
            "no OCSP",
        )
    }))
}

/// Verifies the signature of `msg` and that it was signed by `expected_member` (the client's
/// member for requests, the service provider's member for responses).
pub fn verify_message(
    view: &GcView,
    cache: &VerifyCache,
    msg: &ReceivedMessage,
    expected_member: &ClientId,
    origin: Origin,
    now: OffsetDateTime,
) -> Result<Verified, Fault> {
    let sigv = |cause, m: String| fault(origin, ErrorKind::SignatureVerification, Some(cause), m);
    // The manifest is deterministic, so comparing it with the one built from the digests of
    // the bytes actually received checks every data object, their names, types and order.
    if encode::manifest(&msg.digests) != msg.manifest {
        return Err(sigv(
            ErrorKind::InvalidReference,
            "the manifest does not match the received data objects".into(),
        ));
    }
    let v = cms::verify_detached(&msg.signature, &msg.manifest, now).map_err(|e| match e {
        CmsError::DigestMismatch
        | CmsError::BadSignature
        | CmsError::SigningCertificateMismatch => sigv(
            ErrorKind::InvalidSignatureValue,
            format!("signature is not valid: {e}"),
        ),
        CmsError::CertificateNotValidAtSigningTime | CmsError::SigningTimeInFuture(_) => fault(
            origin,
            ErrorKind::CertValidation,
            Some(ErrorKind::CertValidityTime),
            format!("{e}"),
        ),
        CmsError::UnsupportedAlgorithm(_) => sigv(ErrorKind::UnsupportedAlgorithm, e.to_string()),
        _ => sigv(
            ErrorKind::MalformedSignature,
            format!("signature is malformed: {e}"),
        ),
    })?;
    let signer = cache.certificate(&v.signer_cert).map_err(|e| {
        sigv(
            ErrorKind::MalformedSignature,
            format!("signer certificate: {e}"),
        )
    })?;
    let member = profile::sign_cert_member(&signer).map_err(|e| {
        fault(
            origin,
            ErrorKind::CertValidation,
            Some(ErrorKind::IncorrectCertificate),
            format!("signer certificate does not name a member: {e}"),
        )
    })?;
    if &member.member != expected_member {
        return Err(fault(
            origin,
            ErrorKind::CertValidation,
            Some(ErrorKind::IncorrectCertificate),
            format!(
                "message signed by {} but must be signed by {}",
                member.member.to_slash(),
                expected_member.to_slash()
            ),
        ));
    }
    let extra: Vec<Certificate> = v
        .chain
        .iter()
        .filter_map(|c| cache.certificate(c).ok())
        .collect();
    let ocsp = check_certificate(
        view,
        cache,
        &signer,
        &extra,
        &v.ocsp_responses,
        Purpose::Sign,
        origin,
        ErrorKind::CertValidation,
        now,
    )?;
    Ok(Verified {
        signer,
        ocsp,
        signing_time: v.signing_time,
    })
}

#[cfg(test)]
mod tests;
