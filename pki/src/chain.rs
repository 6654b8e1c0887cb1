//! Certificate chain validation against the approved CAs of the global configuration.
//!
//! Rules (checked in this order for the end-entity certificate, then for each issuer):
//!
//! 1. **Validity**: every certificate in the path, the approved CA included, must be valid at
//!    the given time ([`ChainError::NotYetValid`], [`ChainError::Expired`]).
//! 2. **Purpose** of the end-entity certificate ([`Purpose`], [`ChainError::WrongKeyUsage`]):
//!    * sign: key usage present with `digitalSignature` or `nonRepudiation`, and not a CA;
//!    * auth: key usage `digitalSignature`, extended key usage with both `clientAuth` and
//!      `serverAuth`, and not a CA;
//!    * OCSP responder: extended key usage `id-kp-OCSPSigning`;
//!    * timestamping: extended key usage `id-kp-timeStamping`, critical, and nothing else.
//! 3. **Issuers** ([`ChainError::NotACa`]): every issuing certificate has basic constraints
//!    `cA=TRUE` and key usage with `keyCertSign`; `pathLenConstraint` is respected.
//! 4. **Path** ([`ChainError::UnknownIssuer`]): issuers are found by exact DER match of the
//!    issuer name with a subject name, among the approved CAs first, then the intermediates of
//!    the trust store and those supplied by the caller, until an approved CA is reached.
//!    At most [`MAX_PATH_LEN`] certificates.
//! 5. **Signatures** ([`ChainError::BadSignature`]): each certificate's signature verifies under
//!    its issuer's key with [`crate::signature::verify`]; the approved CA's own signature is not
//!    checked (it is trusted because the configuration lists it).
//! 6. **Approved CA scope** ([`ChainError::AuthOnlyCaForSigning`]): a CA approved for
//!    authentication only does not vouch for signing certificates.
//!
//! A [`TrustStore`] indexes its certificates by subject once and caches signature checks
//! already passed (by the pair of fingerprints), so repeated validation is cheap.

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;

use time::OffsetDateTime;

use crate::cert::{AlgParams, Certificate};
use crate::signature::{self, SignatureAlgorithm};

/// Longest accepted path, end entity and approved CA included.
pub const MAX_PATH_LEN: usize = 6;
const SIG_CACHE_MAX: usize = 10_000;

/// What the end-entity certificate is validated for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// A member's signing certificate.
    Sign,
    /// A security server's authentication (TLS) certificate.
    Auth,
    /// An OCSP responder's certificate.
    OcspSigning,
    /// A timestamping authority's certificate.
    TimeStamping,
}

impl From<crate::profile::CertProfile> for Purpose {
    fn from(p: crate::profile::CertProfile) -> Self {
        match p {
            crate::profile::CertProfile::Sign => Self::Sign,
            crate::profile::CertProfile::Auth => Self::Auth,
        }
    }
}

/// Why a chain is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// A certificate's validity ended before the time of validation.
    #[error("certificate {subject} expired at {not_after}")]
    Expired {
        /// Subject of the expired certificate.
        subject: String,
        /// Its notAfter.
        not_after: OffsetDateTime,
    },
    /// A certificate's validity starts after the time of validation.
    #[error("certificate {subject} is not valid before {not_before}")]
    NotYetValid {
        /// Subject of the certificate.
        subject: String,
        /// Its notBefore.
        not_before: OffsetDateTime,
    },
    /// The end-entity certificate's key usage / extended key usage does not fit the purpose.
    #[error("certificate {subject} cannot be used for {purpose:?}: {reason}")]
    WrongKeyUsage {
        /// Subject of the certificate.
        subject: String,
        /// The purpose asked for.
        purpose: Purpose,
        /// What is missing or wrong.
        reason: &'static str,
    },
    /// No approved CA or intermediate has the issuer's name: no path.
    #[error("no approved CA or known intermediate issued {subject} (issuer {issuer})")]
    UnknownIssuer {
        /// Subject of the certificate whose issuer is unknown.
        subject: String,
        /// The issuer name it carries.
        issuer: String,
    },
    /// A signature does not verify under the issuer's key.
    #[error("signature on {subject} does not verify under the key of {issuer}")]
    BadSignature {
        /// Subject of the certificate with the bad signature.
        subject: String,
        /// The issuer tried.
        issuer: String,
    },
    /// An issuing certificate is not a CA (basic constraints or keyCertSign missing).
    #[error("certificate {subject} issued another certificate but is not a CA: {reason}")]
    NotACa {
        /// Subject of the non-CA issuer.
        subject: String,
        /// What is missing.
        reason: &'static str,
    },
    /// A signing certificate chains to a CA approved for authentication only.
    #[error("CA {ca} is approved for authentication certificates only")]
    AuthOnlyCaForSigning {
        /// Subject of the approved CA.
        ca: String,
    },
    /// The path would exceed [`MAX_PATH_LEN`] or a CA's pathLenConstraint.
    #[error("certificate path too long at {subject}")]
    PathTooLong {
        /// Where the limit was hit.
        subject: String,
    },
    /// A signature algorithm we do not support (or with bad parameters).
    #[error("certificate {subject} uses an unsupported signature algorithm {oid}")]
    UnsupportedAlgorithm {
        /// Subject of the certificate.
        subject: String,
        /// The algorithm's OID.
        oid: String,
    },
}

/// A CA listed as approved in the global configuration.
#[derive(Debug, Clone)]
pub struct ApprovedCa {
    /// The CA's certificate (the trust anchor).
    pub cert: Certificate,
    /// Whether the CA is approved for authentication certificates only.
    pub auth_only: bool,
}

/// A successfully validated path.
#[derive(Debug, Clone)]
pub struct ValidatedChain {
    /// End entity first, approved CA last.
    pub path: Vec<Certificate>,
}

impl ValidatedChain {
    /// The approved CA the path ends in.
    pub fn anchor(&self) -> Option<&Certificate> {
        self.path.last()
    }

    /// The earliest notAfter along the path: the result holds at most until then.
    pub fn valid_until(&self) -> Option<OffsetDateTime> {
        self.path.iter().map(Certificate::not_after).min()
    }
}

/// The approved CAs (with their intermediates) against which chains are validated.
#[derive(Debug, Default)]
pub struct TrustStore {
    anchors: Vec<ApprovedCa>,
    intermediates: Vec<Certificate>,
    by_subject: HashMap<Vec<u8>, Vec<Node>>,
    verified: RwLock<HashSet<([u8; 32], [u8; 32])>>,
}

#[derive(Debug, Clone, Copy)]
enum Node {
    Anchor(usize),
    Intermediate(usize),
}

impl TrustStore {
    /// An empty store (accepts nothing).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an approved CA.
    pub fn add_ca(&mut self, cert: Certificate, auth_only: bool) {
        self.by_subject
            .entry(cert.subject_der().to_vec())
            .or_default()
            .push(Node::Anchor(self.anchors.len()));
        self.anchors.push(ApprovedCa { cert, auth_only });
    }

    /// Adds an intermediate CA certificate (as listed with an approved CA).
    pub fn add_intermediate(&mut self, cert: Certificate) {
        self.by_subject
            .entry(cert.subject_der().to_vec())
            .or_default()
            .push(Node::Intermediate(self.intermediates.len()));
        self.intermediates.push(cert);
    }

    /// The approved CAs.
    pub fn cas(&self) -> &[ApprovedCa] {
        &self.anchors
    }

    /// Whether `cert` is one of the approved CA certificates.
    pub fn is_approved_ca(&self, cert: &Certificate) -> bool {
        self.anchors.iter().any(|a| a.cert == *cert)
    }

    /// Validates `ee` for `purpose` at time `at`, using `extra` as further intermediates
    /// (for example those a TLS peer sent).
    pub fn validate(
        &self,
        ee: &Certificate,
        extra: &[Certificate],
        purpose: Purpose,
        at: OffsetDateTime,
    ) -> Result<ValidatedChain, ChainError> {
        check_validity(ee, at)?;
        check_purpose(ee, purpose)?;
        let mut path = vec![ee.clone()];
        self.extend(&mut path, extra, purpose, at)?;
        Ok(ValidatedChain { path })
    }

    fn candidates<'a>(
        &'a self,
        issuer: &[u8],
        extra: &'a [Certificate],
    ) -> Vec<(&'a Certificate, Option<&'a ApprovedCa>)> {
        let mut out = Vec::new();
        if let Some(nodes) = self.by_subject.get(issuer) {
            // Anchors first so that the shortest path is found first.
            for n in nodes {
                if let Node::Anchor(i) = n {
                    out.push((&self.anchors[*i].cert, Some(&self.anchors[*i])));
                }
            }
            for n in nodes {
                if let Node::Intermediate(i) = n {
                    out.push((&self.intermediates[*i], None));
                }
            }
        }
        for c in extra {
            if c.subject_der() == issuer && !out.iter().any(|(o, _)| *o == c) {
                out.push((c, None));
            }
        }
        out
    }

    /// Finds an issuer for the last certificate of `path` and recurses until an approved CA.
    fn extend(
        &self,
        path: &mut Vec<Certificate>,
        extra: &[Certificate],
        purpose: Purpose,
        at: OffsetDateTime,
    ) -> Result<(), ChainError> {
        let Some(child) = path.last().cloned() else {
            return Ok(());
        };
        let candidates = self.candidates(child.issuer_der(), extra);
        if candidates.is_empty() {
            return Err(ChainError::UnknownIssuer {
                subject: child.subject().to_owned(),
                issuer: child.issuer().to_owned(),
            });
        }
        let mut last_err = None;
        for (issuer, approved) in candidates {
            if path.iter().any(|p| p == issuer) {
                continue; // a loop
            }
            match self.try_issuer(path, &child, issuer, approved, extra, purpose, at) {
                Ok(()) => return Ok(()),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| ChainError::UnknownIssuer {
            subject: child.subject().to_owned(),
            issuer: child.issuer().to_owned(),
        }))
    }

    #[allow(clippy::too_many_arguments)]
    fn try_issuer(
        &self,
        path: &mut Vec<Certificate>,
        child: &Certificate,
        issuer: &Certificate,
        approved: Option<&ApprovedCa>,
        extra: &[Certificate],
        purpose: Purpose,
        at: OffsetDateTime,
    ) -> Result<(), ChainError> {
        self.check_signature(child, issuer)?;
        check_is_ca(issuer)?;
        // pathLenConstraint counts the intermediates below this CA (excluding the end entity).
        let below = path.len() - 1;
        if let Some(limit) = issuer.basic_constraints().and_then(|b| b.path_len)
            && below > limit as usize
        {
            return Err(ChainError::PathTooLong {
                subject: issuer.subject().to_owned(),
            });
        }
        check_validity(issuer, at)?;
        if path.len() + 1 > MAX_PATH_LEN {
            return Err(ChainError::PathTooLong {
                subject: issuer.subject().to_owned(),
            });
        }
        path.push(issuer.clone());
        let result = match approved {
            Some(ca) => {
                if ca.auth_only && purpose == Purpose::Sign {
                    Err(ChainError::AuthOnlyCaForSigning {
                        ca: ca.cert.subject().to_owned(),
                    })
                } else {
                    Ok(())
                }
            }
            None => self.extend(path, extra, purpose, at),
        };
        if result.is_err() {
            path.truncate(path.len() - 1);
        }
        result
    }

    fn check_signature(&self, child: &Certificate, issuer: &Certificate) -> Result<(), ChainError> {
        let pair = (*child.fingerprint(), *issuer.fingerprint());
        if self.verified.read().is_ok_and(|s| s.contains(&pair)) {
            return Ok(());
        }
        verify_signed_by(child, issuer)?;
        if let Ok(mut set) = self.verified.write() {
            if set.len() >= SIG_CACHE_MAX {
                set.clear();
            }
            set.insert(pair);
        }
        Ok(())
    }
}

/// Checks that `child`'s signature verifies under `issuer`'s public key.
pub fn verify_signed_by(child: &Certificate, issuer: &Certificate) -> Result<(), ChainError> {
    let unsupported = || ChainError::UnsupportedAlgorithm {
        subject: child.subject().to_owned(),
        oid: child.signature_algorithm_oid().to_owned(),
    };
    let oid = child
        .signature_algorithm_oid()
        .parse::<const_oid::ObjectIdentifier>()
        .map_err(|_| unsupported())?;
    let alg = SignatureAlgorithm::from_oid(&oid).map_err(|_| unsupported())?;
    // RFC 4055 wants NULL for RSA PKCS#1 (some encoders omit it, which we tolerate);
    // ECDSA and Ed25519 identifiers carry no parameters.
    let params_ok = matches!(
        (alg.has_null_params(), child.signature_algorithm_params()),
        (true, AlgParams::Null | AlgParams::Absent) | (false, AlgParams::Absent)
    );
    if !params_ok {
        return Err(unsupported());
    }
    signature::verify(issuer.spki_der(), alg, child.tbs_der(), child.signature()).map_err(|_| {
        ChainError::BadSignature {
            subject: child.subject().to_owned(),
            issuer: issuer.subject().to_owned(),
        }
    })
}

fn check_validity(c: &Certificate, at: OffsetDateTime) -> Result<(), ChainError> {
    if at < c.not_before() {
        return Err(ChainError::NotYetValid {
            subject: c.subject().to_owned(),
            not_before: c.not_before(),
        });
    }
    if at > c.not_after() {
        return Err(ChainError::Expired {
            subject: c.subject().to_owned(),
            not_after: c.not_after(),
        });
    }
    Ok(())
}

fn check_is_ca(c: &Certificate) -> Result<(), ChainError> {
    let not_ca = |reason| ChainError::NotACa {
        subject: c.subject().to_owned(),
        reason,
    };
    if !c.is_ca() {
        return Err(not_ca("basic constraints do not say cA=TRUE"));
    }
    if !c.key_usage().is_some_and(|k| k.key_cert_sign) {
        return Err(not_ca("key usage lacks keyCertSign"));
    }
    Ok(())
}

/// Checks that `c`'s key usage and extended key usage fit `purpose` (as [`TrustStore::validate`]
/// does for the end-entity certificate).
pub fn check_purpose(c: &Certificate, purpose: Purpose) -> Result<(), ChainError> {
    let wrong = |reason| ChainError::WrongKeyUsage {
        subject: c.subject().to_owned(),
        purpose,
        reason,
    };
    let ku = c.key_usage();
    let eku = c.ext_key_usage();
    match purpose {
        Purpose::Sign => {
            let Some(ku) = ku else {
                return Err(wrong("no key usage extension"));
            };
            // nonRepudiation is what tells a signing certificate from an authentication one
            // (which has digitalSignature only), so that a TLS key can never sign messages.
            if !ku.non_repudiation {
                return Err(wrong("key usage lacks nonRepudiation"));
            }
            if eku.is_some_and(|e| e.server_auth || e.client_auth) {
                return Err(wrong(
                    "a TLS (clientAuth/serverAuth) certificate cannot sign",
                ));
            }
        }
        Purpose::Auth => {
            if !ku.is_some_and(|k| k.digital_signature) {
                return Err(wrong("key usage lacks digitalSignature"));
            }
            let Some(eku) = eku else {
                return Err(wrong("no extended key usage extension"));
            };
            if !(eku.client_auth && eku.server_auth) {
                return Err(wrong("extended key usage lacks clientAuth or serverAuth"));
            }
        }
        Purpose::OcspSigning => {
            if !eku.is_some_and(|e| e.ocsp_signing) {
                return Err(wrong("extended key usage lacks id-kp-OCSPSigning"));
            }
        }
        Purpose::TimeStamping => {
            let Some(eku) = eku else {
                return Err(wrong("no extended key usage extension"));
            };
            let only_ts = eku.time_stamping
                && !(eku.any
                    || eku.server_auth
                    || eku.client_auth
                    || eku.code_signing
                    || eku.email_protection
                    || eku.ocsp_signing)
                && eku.other.is_empty();
            if !only_ts || !eku.critical {
                return Err(wrong(
                    "extended key usage must be exactly id-kp-timeStamping, critical",
                ));
            }
        }
    }
    if matches!(purpose, Purpose::Sign | Purpose::Auth) && c.is_ca() {
        return Err(wrong("a CA certificate is not an end-entity certificate"));
    }
    if let Some(ku) = ku
        && !(ku.digital_signature || ku.non_repudiation)
    {
        return Err(wrong("key usage does not allow signatures"));
    }
    Ok(())
}
