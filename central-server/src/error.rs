//! The crate's error type and its one mapping to stable API error codes and HTTP statuses.

/// Everything that can go wrong in the central server. The API shows [`Error::code`] to
/// clients; the codes are stable and documented in `docs/globalconf.md`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request body is not valid JSON or does not have the expected shape.
    #[error("malformed request body: {0}")]
    MalformedJson(String),
    /// A field has an invalid value.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The addressed resource does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The request names a member that is not registered.
    #[error("unknown member: {0}")]
    UnknownMember(String),
    /// The request names a security server that is not registered.
    #[error("unknown security server: {0}")]
    UnknownServer(String),
    /// The request names a member class that does not exist.
    #[error("unknown member class: {0}")]
    UnknownMemberClass(String),
    /// The object already exists.
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// The registration already exists or an identical request is pending.
    #[error("duplicate registration: {0}")]
    DuplicateRegistration(String),
    /// A management request's signature or proof of possession does not verify.
    #[error("invalid signature: {0}")]
    InvalidSignature(String),
    /// A certificate in a management request (or the TLS client certificate) does not chain to
    /// an approved CA for its purpose.
    #[error("untrusted certificate: {0}")]
    UntrustedCertificate(String),
    /// A certificate does not name the requesting member (or the server being registered).
    #[error("certificate does not match: {0}")]
    CertificateMemberMismatch(String),
    /// The TLS client certificate is neither the authentication certificate being registered
    /// nor one registered for the server the request is about.
    #[error("TLS client certificate does not match: {0}")]
    TlsCertificateMismatch(String),
    /// The CA publishes OCSP responders but the request carries no OCSP response.
    #[error("missing OCSP response: {0}")]
    MissingOcspResponse(String),
    /// The OCSP response does not decode, is not about the certificate or is badly signed.
    #[error("invalid OCSP response: {0}")]
    InvalidOcspResponse(String),
    /// The OCSP response is outside the freshness window (or expired, or from the future).
    #[error("stale OCSP response: {0}")]
    StaleOcsp(String),
    /// The OCSP response says the certificate is revoked.
    #[error("revoked certificate: {0}")]
    RevokedCertificate(String),
    /// The OCSP responder does not know the certificate.
    #[error("unknown certificate status: {0}")]
    UnknownCertificateStatus(String),
    /// The signing member is not allowed to make this request.
    #[error("not allowed: {0}")]
    NotAllowed(String),
    /// No or an unknown API key.
    #[error("authentication required")]
    Unauthenticated,
    /// The API key's role does not allow the action.
    #[error("the role {role} may not {action}")]
    Forbidden {
        /// The caller's role.
        role: String,
        /// What was attempted.
        action: String,
    },
    /// The object is not in a state that allows the action (approving a rejected request).
    #[error("invalid state: {0}")]
    InvalidState(String),
    /// The object is still referenced elsewhere.
    #[error("in use: {0}")]
    InUse(String),
    /// The storage engine failed.
    #[error("storage error: {0}")]
    Storage(String),
    /// A signing or certificate operation failed.
    #[error("crypto error: {0}")]
    Crypto(String),
    /// A configuration file is invalid.
    #[error("configuration error: {0}")]
    Config(String),
    /// File system error.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// Anything else that is our fault.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MalformedJson(_) => "malformed_json",
            Self::BadRequest(_) => "bad_request",
            Self::NotFound(_) => "not_found",
            Self::UnknownMember(_) => "unknown_member",
            Self::UnknownServer(_) => "unknown_security_server",
            Self::UnknownMemberClass(_) => "unknown_member_class",
            Self::AlreadyExists(_) => "already_exists",
            Self::DuplicateRegistration(_) => "duplicate_registration",
            Self::InvalidSignature(_) => "invalid_signature",
            Self::UntrustedCertificate(_) => "untrusted_certificate",
            Self::CertificateMemberMismatch(_) => "certificate_member_mismatch",
            Self::TlsCertificateMismatch(_) => "tls_certificate_mismatch",
            Self::MissingOcspResponse(_) => "missing_ocsp_response",
            Self::InvalidOcspResponse(_) => "invalid_ocsp_response",
            Self::StaleOcsp(_) => "stale_ocsp",
            Self::RevokedCertificate(_) => "revoked_certificate",
            Self::UnknownCertificateStatus(_) => "unknown_certificate_status",
            Self::NotAllowed(_) => "not_allowed",
            Self::Unauthenticated => "unauthenticated",
            Self::Forbidden { .. } => "forbidden",
            Self::InvalidState(_) => "invalid_state",
            Self::InUse(_) => "in_use",
            Self::Storage(_) => "storage_error",
            Self::Crypto(_) => "crypto_error",
            Self::Config(_) => "configuration_error",
            Self::Io(_) => "io_error",
            Self::Internal(_) => "internal_error",
        }
    }

    /// The HTTP status for the error.
    pub fn status(&self) -> u16 {
        match self {
            Self::MalformedJson(_)
            | Self::BadRequest(_)
            | Self::InvalidSignature(_)
            | Self::MissingOcspResponse(_)
            | Self::InvalidOcspResponse(_)
            | Self::StaleOcsp(_) => 400,
            Self::Unauthenticated => 401,
            Self::Forbidden { .. }
            | Self::NotAllowed(_)
            | Self::UntrustedCertificate(_)
            | Self::CertificateMemberMismatch(_)
            | Self::TlsCertificateMismatch(_)
            | Self::RevokedCertificate(_)
            | Self::UnknownCertificateStatus(_) => 403,
            Self::NotFound(_) => 404,
            Self::AlreadyExists(_)
            | Self::DuplicateRegistration(_)
            | Self::InvalidState(_)
            | Self::InUse(_) => 409,
            Self::UnknownMember(_) | Self::UnknownServer(_) | Self::UnknownMemberClass(_) => 422,
            Self::Storage(_)
            | Self::Crypto(_)
            | Self::Config(_)
            | Self::Io(_)
            | Self::Internal(_) => 500,
        }
    }
}

impl From<sled::Error> for Error {
    fn from(e: sled::Error) -> Self {
        Self::Storage(e.to_string())
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Self::Internal(format!("json: {e}"))
    }
}

impl From<trustbus_sdk::id::IdError> for Error {
    fn from(e: trustbus_sdk::id::IdError) -> Self {
        Self::BadRequest(format!("identifier: {e}"))
    }
}
