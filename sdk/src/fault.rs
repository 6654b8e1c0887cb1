//! Bus errors with X-Road-compatible fault codes.
//!
//! A code is `<origin>.<kind>[.<cause>…]`, for example `Server.ClientProxy.UnknownMember` or
//! `Server.ClientProxy.SslAuthenticationFailed.InvalidCertPath`. Integrators match on these
//! strings, so they are part of the wire contract: this module is the one mapping from internal
//! errors to what goes on the wire. X-Road 7.8 switched to a lowercase snake_case dialect
//! (`server.serverproxy.access_denied`); [`FaultDialect`] selects which one we emit, and
//! [`FaultCode::parse`] reads both.

use std::fmt;

/// Which spelling of fault codes to emit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultDialect {
    /// `Server.ServerProxy.AccessDenied`, as X-Road up to 7.7 and most integrations expect.
    #[default]
    Classic,
    /// `server.serverproxy.access_denied`, as X-Road 7.8 emits.
    Lowercase,
}

/// Where an error was detected: the first segment(s) of the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// The information system sent a bad request (`Client`). HTTP 400 on REST.
    Client,
    /// The consumer's security server (`Server.ClientProxy`).
    ClientProxy,
    /// The provider's security server (`Server.ServerProxy`).
    ServerProxy,
    /// A security server component without a proxy role, such as the central server or the
    /// configuration client (`Server`).
    Server,
    /// The signing service (`Signer`).
    Signer,
}

impl Origin {
    fn classic(self) -> &'static str {
        match self {
            Self::Client => "Client",
            Self::ClientProxy => "Server.ClientProxy",
            Self::ServerProxy => "Server.ServerProxy",
            Self::Server => "Server",
            Self::Signer => "Signer",
        }
    }
    fn lowercase(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::ClientProxy => "server.clientproxy",
            Self::ServerProxy => "server.serverproxy",
            Self::Server => "server",
            Self::Signer => "signer",
        }
    }
    /// Whether the error is the caller's fault: 400 rather than 500 on REST.
    pub fn is_client(self) -> bool {
        self == Self::Client
    }
}

macro_rules! error_kinds {
    ($($(#[$doc:meta])* $name:ident => $lower:literal,)*) => {
        /// The error codes X-Road defines (names as in 7.7; the 7.8 spelling beside each).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ErrorKind {
            $($(#[$doc])* $name,)*
        }

        impl ErrorKind {
            /// Every kind, for exhaustive tests and parsing.
            pub const ALL: &'static [ErrorKind] = &[$(ErrorKind::$name,)*];

            /// The classic CamelCase name.
            pub const fn classic(self) -> &'static str {
                match self { $(Self::$name => stringify!($name),)* }
            }

            /// The X-Road 7.8 lowercase name.
            pub const fn lowercase(self) -> &'static str {
                match self { $(Self::$name => $lower,)* }
            }
        }
    };
}

error_kinds! {
    // generic
    /// Reading or writing a stream failed.
    IOError => "io_error",
    /// A network connection failed.
    NetworkError => "network_error",
    /// An unexpected internal failure.
    InternalError => "internal_error",
    /// The request is not acceptable in general.
    BadRequest => "bad_request",
    /// The requested resource does not exist.
    NotFound => "not_found",
    /// An HTTP-level failure.
    HttpError => "http_error",
    /// The database or message log store failed.
    DatabaseError => "database_error",
    /// A response is malformed.
    InvalidResponse => "invalid_response",
    /// A request is malformed.
    InvalidRequest => "invalid_request",
    // verification
    /// A signature could not be created.
    CannotCreateSignature => "cannot_create_signature",
    /// A certificate failed validation.
    CertValidation => "cert_validation",
    /// OCSP or other validation information is missing.
    MissingValidationInfo => "missing_validation_info",
    /// OCSP or other validation information is wrong or stale.
    IncorrectValidationInfo => "incorrect_validation_info",
    /// No path to an approved CA could be built.
    CannotCreateCertPath => "cannot_create_cert_path",
    /// A certificate is expired or not yet valid.
    CertValidityTime => "cert_validity_time",
    /// A certificate does not fit its use.
    IncorrectCertificate => "incorrect_certificate",
    /// An algorithm is not supported.
    UnsupportedAlgorithm => "unsupported_algorithm",
    /// A signature value does not verify.
    InvalidSignatureValue => "invalid_signature_value",
    /// A signature structure is malformed.
    MalformedSignature => "malformed_signature",
    /// XML is not well formed or not allowed.
    InvalidXml => "invalid_xml",
    /// A signed reference does not match its data.
    InvalidReference => "invalid_reference",
    /// The certificate path is invalid.
    InvalidCertPath => "invalid_cert_path",
    /// Signature verification failed.
    SignatureVerification => "signature_verification",
    /// A SOAP message is malformed.
    MalformedSoap => "malformed_soap",
    /// A timestamp did not validate.
    TimestampValidation => "timestamp_validation",
    /// A hash chain or Merkle proof is invalid.
    InvalidHashChain => "invalid_hash_chain",
    /// A hash chain or Merkle proof is malformed.
    MalformedHashChain => "malformed_hash_chain",
    /// A hash chain has inputs nothing refers to.
    HashChainUnusedInputs => "hash_chain_unused_inputs",
    /// A hash chain reference is wrong.
    InvalidHashChainRef => "invalid_hash_chain_ref",
    // processing
    /// The TLS peer could not be authenticated.
    SslAuthenticationFailed => "ssl_authentication_failed",
    /// The message could not be logged.
    LoggingFailed => "logging_failed",
    /// A timestamp could not be obtained.
    TimestampingFailed => "timestamping_failed",
    /// The `Content-Type` is not acceptable.
    InvalidContentType => "invalid_content_type",
    /// The `SOAPAction` is not acceptable.
    InvalidSoapAction => "invalid_soap_action",
    /// The HTTP method is not acceptable.
    InvalidHttpMethod => "invalid_http_method",
    /// The message is not acceptable.
    InvalidMessage => "invalid_message",
    /// The targeted security server is wrong.
    InvalidSecurityServer => "invalid_security_server",
    /// A MIME multipart body could not be parsed.
    MimeParsingFailed => "mime_parsing_failed",
    /// The SOAP header is missing.
    MissingHeader => "missing_header",
    /// A required header field is missing.
    MissingHeaderField => "missing_header_field",
    /// A header field appears twice.
    DuplicateHeaderField => "duplicate_header_field",
    /// The SOAP body is missing.
    MissingBody => "missing_body",
    /// The SOAP body is not acceptable.
    InvalidBody => "invalid_body",
    /// Response headers do not match the request's.
    InconsistentHeaders => "inconsistent_headers",
    /// A response does not belong to its request.
    InconsistentResponse => "inconsistent_response",
    /// The SOAP part is missing.
    MissingSoap => "missing_soap",
    /// The SOAP part is not acceptable.
    InvalidSoap => "invalid_soap",
    /// The REST part is missing.
    MissingRest => "missing_rest",
    /// The REST request is not acceptable.
    InvalidRest => "invalid_rest",
    /// The client may not call this service.
    AccessDenied => "access_denied",
    /// The service is disabled.
    ServiceDisabled => "service_disabled",
    /// The service call failed.
    ServiceFailed => "service_failed",
    /// The message has no signature.
    MissingSignature => "missing_signature",
    /// The service is unknown.
    UnknownService => "unknown_service",
    /// `protocolVersion` is not `4.0`.
    InvalidProtocolVersion => "invalid_protocol_version",
    /// A client identifier is not acceptable.
    InvalidClientIdentifier => "invalid_client_identifier",
    /// REST and SOAP were mixed.
    ServiceType => "service_type",
    /// The peer security server's version is not supported.
    ClientProxyVersionNotSupported => "client_proxy_version_not_supported",
    /// The user identity could not be verified.
    InvalidUserIdentity => "invalid_user_identity",
    // configuration
    /// The member or subsystem is not known.
    UnknownMember => "unknown_member",
    /// The local server configuration is malformed.
    MalformedServerConf => "malformed_server_conf",
    /// The global configuration is malformed.
    MalformedGlobalConf => "malformed_global_conf",
    /// The global configuration has expired.
    OutdatedGlobalConf => "global_conf_outdated",
    /// The service has no address.
    ServiceMissingUrl => "service_missing_url",
    /// The service address is malformed.
    ServiceMalformedUrl => "service_malformed_url",
    /// The hardware security module is not available.
    HSMNonOperational => "hsm_non_operational",
    /// The provider's security server is in maintenance.
    MaintenanceMode => "maintenance_mode",
    // signer
    /// A key was not found.
    KeyNotFound => "key_not_found",
    /// A certificate was not found.
    CertNotFound => "cert_not_found",
    /// The token is not logged in.
    TokenNotActive => "token_not_active",
    /// The token PIN is wrong.
    PinIncorrect => "pin_incorrect",
    // message log
    /// The time-stamping authority cannot be reached beyond the allowed window.
    TimestamperFailed => "timestamper_failed",
    // ASiC
    /// An ASiC container is invalid.
    AsicInvalidContainer => "asic_invalid_container",
    /// An ASiC container has no valid `mimetype`.
    AsicMimeTypeNotFound => "asic_mime_type_not_found",
}

/// A complete fault code: origin, kind and optional chained causes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FaultCode {
    /// Where the error was detected.
    pub origin: Origin,
    /// What went wrong.
    pub kind: ErrorKind,
    /// Further detail, outermost first (`SslAuthenticationFailed.InvalidCertPath`).
    pub causes: Vec<ErrorKind>,
}

impl FaultCode {
    /// A code with no chained causes.
    pub fn new(origin: Origin, kind: ErrorKind) -> Self {
        Self {
            origin,
            kind,
            causes: Vec::new(),
        }
    }

    /// Appends a cause (`…ServiceFailed` → `…ServiceFailed.SslAuthenticationFailed`).
    pub fn caused_by(mut self, cause: ErrorKind) -> Self {
        self.causes.push(cause);
        self
    }

    /// The code as written in `dialect`.
    pub fn render(&self, dialect: FaultDialect) -> String {
        let mut out = String::with_capacity(48);
        let (origin, name): (&str, fn(ErrorKind) -> &'static str) = match dialect {
            FaultDialect::Classic => (self.origin.classic(), ErrorKind::classic),
            FaultDialect::Lowercase => (self.origin.lowercase(), ErrorKind::lowercase),
        };
        out.push_str(origin);
        for k in std::iter::once(self.kind).chain(self.causes.iter().copied()) {
            out.push('.');
            out.push_str(name(k));
        }
        out
    }

    /// Reads a code in either dialect, as a peer or an X-Road component may send it.
    pub fn parse(s: &str) -> Option<Self> {
        let lower = s.to_ascii_lowercase();
        let (origin, rest) = [
            (Origin::ClientProxy, "server.clientproxy."),
            (Origin::ServerProxy, "server.serverproxy."),
            (Origin::Client, "client."),
            (Origin::Signer, "signer."),
            (Origin::Server, "server."),
        ]
        .into_iter()
        .find_map(|(o, p)| lower.strip_prefix(p).map(|_| (o, &s[p.len()..])))?;
        let mut kinds = rest.split('.').map(|part| {
            ErrorKind::ALL.iter().copied().find(|k| {
                k.classic().eq_ignore_ascii_case(part) || k.lowercase().eq_ignore_ascii_case(part)
            })
        });
        let kind = kinds.next()??;
        let causes = kinds.collect::<Option<Vec<_>>>()?;
        Some(Self {
            origin,
            kind,
            causes,
        })
    }

    /// The HTTP status X-Road uses on REST: 400 for client errors, 500 for server errors.
    pub fn http_status(&self) -> u16 {
        if self.origin.is_client() { 400 } else { 500 }
    }
}

/// The classic spelling.
impl fmt::Display for FaultCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(FaultDialect::Classic))
    }
}

/// A bus error as it goes on the wire: code, human-readable message and the correlation id that
/// also appears in the server's log (`faultDetail` in SOAP, `detail` in REST).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// The machine-readable code.
    pub code: FaultCode,
    /// A message for humans; never contains secrets or payload data.
    pub message: String,
    /// Correlates the fault with the server's log entry.
    pub correlation_id: String,
}

impl Fault {
    /// A fault with a fresh random correlation id.
    pub fn new(code: FaultCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            correlation_id: uuid::Uuid::new_v4().to_string(),
        }
    }

    /// Shorthand for a fault with no chained causes.
    pub fn of(origin: Origin, kind: ErrorKind, message: impl Into<String>) -> Self {
        Self::new(FaultCode::new(origin, kind), message)
    }

    /// Replaces the correlation id, for faults that must match an existing log entry.
    pub fn with_correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = id.into();
        self
    }

    /// The HTTP status for this fault on REST.
    pub fn http_status(&self) -> u16 {
        self.code.http_status()
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} [{}]",
            self.code, self.message, self.correlation_id
        )
    }
}

impl std::error::Error for Fault {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_and_lowercase_spelling() {
        let c = FaultCode::new(Origin::ServerProxy, ErrorKind::AccessDenied);
        assert_eq!(
            c.render(FaultDialect::Classic),
            "Server.ServerProxy.AccessDenied"
        );
        assert_eq!(
            c.render(FaultDialect::Lowercase),
            "server.serverproxy.access_denied"
        );
        let chained = FaultCode::new(Origin::ClientProxy, ErrorKind::SslAuthenticationFailed)
            .caused_by(ErrorKind::InvalidCertPath)
            .caused_by(ErrorKind::IncorrectValidationInfo);
        assert_eq!(
            chained.to_string(),
            "Server.ClientProxy.SslAuthenticationFailed.InvalidCertPath.IncorrectValidationInfo"
        );
        assert_eq!(
            FaultCode::new(Origin::ClientProxy, ErrorKind::OutdatedGlobalConf)
                .render(FaultDialect::Lowercase),
            "server.clientproxy.global_conf_outdated"
        );
        assert_eq!(
            FaultCode::new(Origin::Client, ErrorKind::MissingHeaderField).to_string(),
            "Client.MissingHeaderField"
        );
        assert_eq!(
            FaultCode::new(Origin::ClientProxy, ErrorKind::LoggingFailed)
                .caused_by(ErrorKind::TimestamperFailed)
                .to_string(),
            "Server.ClientProxy.LoggingFailed.TimestamperFailed"
        );
    }

    #[test]
    fn every_code_parses_back_in_both_dialects() {
        for &kind in ErrorKind::ALL {
            for origin in [
                Origin::Client,
                Origin::ClientProxy,
                Origin::ServerProxy,
                Origin::Server,
                Origin::Signer,
            ] {
                let c = FaultCode::new(origin, kind).caused_by(ErrorKind::IOError);
                for d in [FaultDialect::Classic, FaultDialect::Lowercase] {
                    assert_eq!(
                        FaultCode::parse(&c.render(d)).as_ref(),
                        Some(&c),
                        "{c} {d:?}"
                    );
                }
            }
        }
        assert_eq!(FaultCode::parse("Server.ClientProxy.NoSuchThing"), None);
        assert_eq!(FaultCode::parse("Foo.AccessDenied"), None);
        assert_eq!(FaultCode::parse(""), None);
    }

    #[test]
    fn lowercase_names_are_unique() {
        let mut names: Vec<_> = ErrorKind::ALL.iter().map(|k| k.lowercase()).collect();
        names.sort_unstable();
        let n = names.len();
        names.dedup();
        assert_eq!(n, names.len());
    }

    #[test]
    fn http_status_follows_origin() {
        assert_eq!(
            FaultCode::new(Origin::Client, ErrorKind::InvalidHttpMethod).http_status(),
            400
        );
        assert_eq!(
            FaultCode::new(Origin::ServerProxy, ErrorKind::AccessDenied).http_status(),
            500
        );
        assert_eq!(
            FaultCode::new(Origin::ClientProxy, ErrorKind::UnknownMember).http_status(),
            500
        );
    }

    #[test]
    fn correlation_ids_are_unique_uuids() {
        let a = Fault::of(Origin::Client, ErrorKind::BadRequest, "x");
        let b = Fault::of(Origin::Client, ErrorKind::BadRequest, "x");
        assert_ne!(a.correlation_id, b.correlation_id);
        assert_eq!(a.correlation_id.len(), 36);
        assert_eq!(a.with_correlation_id("abc").correlation_id, "abc");
    }
}
