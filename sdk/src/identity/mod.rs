//! End-user identity on the bus: verifying a citizen's OpenID Connect ID token (sans-IO).
//!
//! The consumer security server receives the token from the portal (`Trustbus-Id-Token`, or
//! `Authorization: Bearer` on the SDK path), verifies it with [`IdTokenVerifier`] against the
//! identity providers trusted in global configuration ([`TrustedIssuer`]), and signs the verified
//! subject into the exchange as the user id. Every rejection is an [`IdentityError`] whose
//! [`IdentityError::fault`] is `Client.InvalidUserIdentity` with a distinct reason (or
//! `Server.ClientProxy.InvalidUserIdentity` when the issuer's keys cannot be obtained, which is
//! not the caller's fault).
//!
//! * [`jwt`] splits and decodes compact JWS.
//! * [`jwks`] turns JWK sets into ring public keys and holds the algorithm allow-list.
//! * [`verify`] checks signature and claims, and caches JWK sets with key rotation.
//!
//! Signatures are checked with ring only. The allow-list is RS256/384/512, PS256, ES256/384 and
//! EdDSA; `none` and HMAC are refused before any key is touched, so the "HMAC keyed with the
//! RSA public key" confusion cannot happen.

pub mod jwks;
pub mod jwt;
pub mod verify;

#[cfg(test)]
mod tests;

pub use jwks::{Algorithm, Jwk, JwkSet, PublicKey};
pub use jwt::{CompactJws, JwsHeader};
pub use verify::{
    CacheConfig, IdTokenVerifier, JwksCache, JwksFetcher, JwksSource, NoFetch, TrustedIssuer,
    VerifiedIdentity, VerifyOptions, now_unix,
};

use crate::fault::{ErrorKind, Fault, FaultCode, Origin};

/// Why an ID token was not accepted. Each variant has its own [`IdentityError::reason`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// Not a compact JWS with JSON header and claims, too large, or with `crit` extensions.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// `alg` is not on the allow-list (`none`, `HS256`, or one switched off).
    #[error("algorithm {0:?} is not allowed")]
    AlgorithmNotAllowed(String),
    /// The header `typ` says this is not an ID token (for example an access token).
    #[error("token type {0:?} is not an ID token")]
    WrongTokenType(String),
    /// `iss` is not one of the trusted issuers.
    #[error("issuer {0:?} is not trusted")]
    UnknownIssuer(String),
    /// No key of the issuer has this `kid` (after a refresh, when allowed) and fits `alg`.
    #[error("no signing key {0:?} for this algorithm")]
    UnknownKeyId(Option<String>),
    /// The issuer's JWK set is not a JWK set.
    #[error("issuer key set is invalid: {0}")]
    InvalidJwks(&'static str),
    /// The issuer's JWK set could not be fetched.
    #[error("issuer key set could not be fetched: {0}")]
    JwksUnavailable(String),
    /// The signature does not verify (tampered header, payload or signature, or wrong key).
    #[error("signature does not verify")]
    InvalidSignature,
    /// A required claim is missing.
    #[error("required claim {0} is missing")]
    MissingClaim(&'static str),
    /// A claim has the wrong type or an empty value.
    #[error("claim {0} is invalid")]
    InvalidClaim(&'static str),
    /// `exp` (plus clock skew) has passed.
    #[error("token expired at {exp} (now {now})")]
    Expired {
        /// The token's `exp`.
        exp: i64,
        /// The verifier's clock.
        now: i64,
    },
    /// `nbf` (minus clock skew) has not been reached.
    #[error("token not valid before {nbf} (now {now})")]
    NotYetValid {
        /// The token's `nbf`.
        nbf: i64,
        /// The verifier's clock.
        now: i64,
    },
    /// `iat` (minus clock skew) is in the future.
    #[error("token issued in the future at {iat} (now {now})")]
    IssuedInFuture {
        /// The token's `iat`.
        iat: i64,
        /// The verifier's clock.
        now: i64,
    },
    /// None of `aud` is an accepted audience of the issuer, or `azp` is not.
    #[error("token is for another audience")]
    WrongAudience,
    /// `acr` is missing, unknown, or below the required level.
    #[error("authentication level {acr:?} is below the required {required:?}")]
    AcrTooLow {
        /// The token's `acr`.
        acr: Option<String>,
        /// The level required by the issuer's policy or the service.
        required: String,
    },
    /// `nonce` is not the one the login sent.
    #[error("nonce does not match the login request")]
    NonceMismatch,
}

impl IdentityError {
    /// A short, stable reason (for logs, metrics and the fault message).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::AlgorithmNotAllowed(_) => "algorithm_not_allowed",
            Self::WrongTokenType(_) => "wrong_token_type",
            Self::UnknownIssuer(_) => "unknown_issuer",
            Self::UnknownKeyId(_) => "unknown_key_id",
            Self::InvalidJwks(_) => "invalid_jwks",
            Self::JwksUnavailable(_) => "jwks_unavailable",
            Self::InvalidSignature => "invalid_signature",
            Self::MissingClaim(_) => "missing_claim",
            Self::InvalidClaim(_) => "invalid_claim",
            Self::Expired { .. } => "expired",
            Self::NotYetValid { .. } => "not_yet_valid",
            Self::IssuedInFuture { .. } => "issued_in_future",
            Self::WrongAudience => "wrong_audience",
            Self::AcrTooLow { .. } => "acr_too_low",
            Self::NonceMismatch => "nonce_mismatch",
        }
    }

    /// The wire code: `Client.InvalidUserIdentity`, except that an issuer whose keys cannot be
    /// obtained or read is `Server.ClientProxy.InvalidUserIdentity` (HTTP 500: retrying later
    /// may work, and the caller did nothing wrong).
    pub fn code(&self) -> FaultCode {
        let origin = match self {
            Self::InvalidJwks(_) | Self::JwksUnavailable(_) => Origin::ClientProxy,
            _ => Origin::Client,
        };
        FaultCode::new(origin, ErrorKind::InvalidUserIdentity)
    }

    /// The fault to answer with, with a fresh correlation id. The message names the reason but
    /// never echoes token contents beyond issuer, `kid` and `acr`.
    pub fn fault(&self) -> Fault {
        Fault::new(
            self.code(),
            format!("user identity rejected ({}): {self}", self.reason()),
        )
    }
}
