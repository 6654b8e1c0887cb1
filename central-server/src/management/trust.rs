//! Who may sign a management request: certificate chains, certificate profiles and OCSP.
//!
//! The rules (documented in `docs/globalconf.md` §6.5):
//!
//! 1. The member's signing certificate must chain to a CA approved in the registry (roots and
//!    intermediates, [`trustbus_pki::chain::TrustStore`]) for [`Purpose::Sign`], valid now; a CA
//!    approved for authentication only does not vouch for signing certificates, and an
//!    authentication certificate (extended key usage clientAuth/serverAuth) is not a signing
//!    certificate. Otherwise: `untrusted_certificate`.
//! 2. Its subject must name the requesting member (`C`/`businessCategory`/`serialNumber`,
//!    [`trustbus_pki::profile::sign_cert_member`]). Otherwise: `certificate_member_mismatch`.
//! 3. For authentication-certificate registration, the authentication certificate must chain
//!    for [`Purpose::Auth`] and name the server being registered
//!    ([`trustbus_pki::profile::auth_cert_server`]), with the same error codes.
//! 4. OCSP: when the approved CA a certificate chains to lists OCSP responders, the envelope
//!    must carry an OCSP response for that certificate (`missing_ocsp_response`). A response
//!    that is present is always verified against the certificate's issuer with the registry's
//!    `ocsp_freshness_seconds`: undecodable or wrongly signed → `invalid_ocsp_response`,
//!    outside the freshness window → `stale_ocsp`, revoked → `revoked_certificate`, unknown to
//!    the responder → `unknown_certificate_status`.

use time::OffsetDateTime;
use trustbus_pki::Certificate;
use trustbus_pki::chain::{ChainError, Purpose, TrustStore, ValidatedChain};
use trustbus_pki::ocsp::{self, CertStatus, OcspError};

use crate::Error;
use crate::registry::RegistryState;
use crate::util;

/// Builds the trust store from the registry's approved CAs: every root as an approved CA
/// (authentication-only as recorded), every intermediate as an intermediate.
pub fn trust_store(state: &RegistryState) -> Result<TrustStore, Error> {
    let mut store = TrustStore::new();
    for ca in state.cas.values() {
        for root in &ca.roots {
            store.add_ca(parse_registered(&ca.name, root)?, ca.authentication_only);
        }
        for inter in &ca.intermediates {
            store.add_intermediate(parse_registered(&ca.name, inter)?);
        }
    }
    Ok(store)
}

/// The only certificate profile implemented: `trustbus_pki::profile` (docs/pki.md §2).
pub const DEFAULT_PROFILE: &str = "trustbus-default";

/// Checks an approved-CA record before it enters the registry: a name, at least one root, every
/// root and intermediate a DER CA certificate (basic constraints cA=TRUE), every OCSP responder
/// with a URL and, if given, a DER certificate, and the profile [`DEFAULT_PROFILE`]. Otherwise
/// `bad_request`.
pub fn check_ca_record(ca: &crate::model::ApprovedCa) -> Result<(), Error> {
    if ca.name.trim().is_empty() || ca.roots.is_empty() {
        return Err(Error::BadRequest(
            "a CA needs a name and at least one root".into(),
        ));
    }
    if ca.certificate_profile != DEFAULT_PROFILE {
        return Err(Error::BadRequest(format!(
            "certificate_profile {:?} is not implemented; use {DEFAULT_PROFILE:?} \
             (C/O/businessCategory/serialNumber[/CN], docs/pki.md section 2)",
            ca.certificate_profile
        )));
    }
    let ca_cert = |what: &str, b64: &str| -> Result<(), Error> {
        let cert = parse_cert(what, util::unb64(what, b64)?)?;
        if !cert.is_ca() {
            return Err(Error::BadRequest(format!(
                "{what}: {} is not a CA certificate (basic constraints cA=TRUE)",
                cert.subject()
            )));
        }
        Ok(())
    };
    for r in &ca.roots {
        ca_cert("roots", r)?;
    }
    for i in &ca.intermediates {
        ca_cert("intermediates", i)?;
    }
    for o in &ca.ocsp_responders {
        if o.url.trim().is_empty() {
            return Err(Error::BadRequest(
                "ocsp_responders.url must not be empty".into(),
            ));
        }
        if let Some(c) = &o.cert {
            parse_cert(
                "ocsp_responders.cert",
                util::unb64("ocsp_responders.cert", c)?,
            )?;
        }
    }
    Ok(())
}

fn parse_registered(ca: &str, b64: &str) -> Result<Certificate, Error> {
    let der = util::unb64("approved CA certificate", b64)?;
    Certificate::from_der(der).map_err(|e| {
        Error::Internal(format!(
            "approved CA {ca} has an unreadable certificate: {e}"
        ))
    })
}

/// Parses a certificate sent by a client (`what` names the field).
pub fn parse_cert(what: &str, der: Vec<u8>) -> Result<Certificate, Error> {
    Certificate::from_der(der)
        .map_err(|e| Error::BadRequest(format!("{what}: not a DER X.509 certificate: {e}")))
}

/// Validates `cert` for `purpose` against `store` at `now`.
///
/// The pki rules already refuse an authentication certificate (no nonRepudiation, TLS EKU)
/// for [`Purpose::Sign`], so a TLS key can never sign a management request.
pub fn validate_chain(
    store: &TrustStore,
    what: &str,
    cert: &Certificate,
    purpose: Purpose,
    now: OffsetDateTime,
) -> Result<ValidatedChain, Error> {
    store
        .validate(cert, &[], purpose, now)
        .map_err(|e: ChainError| Error::UntrustedCertificate(format!("{what}: {e}")))
}

/// Applies the OCSP rule (module documentation, rule 4) to a validated chain.
pub fn check_ocsp(
    state: &RegistryState,
    what: &str,
    chain: &ValidatedChain,
    response: Option<&[u8]>,
    now: OffsetDateTime,
) -> Result<(), Error> {
    let (Some(cert), Some(issuer), Some(anchor)) =
        (chain.path.first(), chain.path.get(1), chain.anchor())
    else {
        return Err(Error::Internal("validated chain without an issuer".into()));
    };
    let anchor_b64 = util::b64(anchor.der());
    let required = state
        .cas
        .values()
        .find(|ca| ca.roots.iter().any(|r| r.trim() == anchor_b64))
        .is_some_and(|ca| !ca.ocsp_responders.is_empty());
    let Some(response) = response else {
        if required {
            return Err(Error::MissingOcspResponse(format!(
                "{what}: the CA {} publishes OCSP responders, so an OCSP response is required",
                anchor.subject()
            )));
        }
        return Ok(());
    };
    let freshness = time::Duration::seconds(
        i64::try_from(state.settings.ocsp_freshness_seconds).unwrap_or(i64::MAX / 2),
    );
    let verified = ocsp::verify_response(response, cert.der(), issuer.der(), now, freshness)
        .map_err(|e| match e {
            OcspError::Stale { .. } | OcspError::Expired { .. } | OcspError::NotYetValid { .. } => {
                Error::StaleOcsp(format!("{what}: {e}"))
            }
            other => Error::InvalidOcspResponse(format!("{what}: {other}")),
        })?;
    match verified.status {
        CertStatus::Good => Ok(()),
        CertStatus::Revoked { .. } => Err(Error::RevokedCertificate(format!(
            "{what}: certificate {} is revoked",
            cert.serial_hex()
        ))),
        _ => Err(Error::UnknownCertificateStatus(format!(
            "{what}: the OCSP responder does not know certificate {}",
            cert.serial_hex()
        ))),
    }
}
