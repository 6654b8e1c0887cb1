//! The `/r1/` request line and the `X-Road-*` request headers, as a client sends them.

use crate::fault::{ErrorKind, Fault, FaultCode, Origin};
use crate::id::{ClientId, IdError, RepresentedParty, SecurityServerId, ServiceId};

use super::endpoint::{PathError, normalize_endpoint_path};
use super::headers::{self, Headers};

/// The only protocol version segment we serve.
pub const PROTOCOL_VERSION: &str = "r1";

/// Methods a REST service can be called with. `TRACE` and `CONNECT` are refused: they make
/// no sense through a signing proxy and `TRACE` would reflect headers back.
pub const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];

/// Why a client's REST request was rejected. [`RestError::fault`] is the one mapping to wire codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RestError {
    /// The request line is not `METHOD SP TARGET [SP VERSION]`.
    #[error("malformed request line")]
    MalformedRequestLine,
    /// The method is not one of [`METHODS`].
    #[error("HTTP method {0:?} is not supported")]
    UnsupportedMethod(String),
    /// The target is not an origin-form path, or has characters a request target cannot have.
    #[error("request target is not a valid origin-form path")]
    InvalidTarget,
    /// The path does not start with `/rN/`: not a REST message protocol request.
    #[error("request path is not a REST protocol path (/r1/...)")]
    NotRestPath,
    /// `/rN/` with a version other than `r1`.
    #[error("unsupported REST protocol version {0:?}")]
    UnsupportedProtocolVersion(String),
    /// Fewer than five identifier segments after `/r1/`.
    #[error(
        "service identifier needs 5 segments (INSTANCE/CLASS/MEMBER/SUBSYSTEM/SERVICE), found {0}"
    )]
    TooFewSegments(usize),
    /// The five segments do not form a valid service identifier.
    #[error("invalid service identifier: {0}")]
    InvalidService(IdError),
    /// No client header at all (or only empty ones).
    #[error("required header X-Road-Client is missing")]
    MissingClient,
    /// The client header does not hold a client identifier.
    #[error("invalid X-Road-Client: {0}")]
    InvalidClient(IdError),
    /// `X-Road-Security-Server` does not hold a security server identifier.
    #[error("invalid X-Road-Security-Server: {0}")]
    InvalidSecurityServer(IdError),
    /// `X-Road-Represented-Party` is not `[CLASS/]CODE`.
    #[error("invalid X-Road-Represented-Party: {0}")]
    InvalidRepresentedParty(IdError),
    /// An `X-Road-*` value that is not UTF-8 text without control characters.
    #[error("header {0} has a value that is not printable UTF-8")]
    InvalidHeaderValue(&'static str),
}

impl RestError {
    /// The wire code. All are `Client.*` (HTTP 400): each is a mistake in what the
    /// information system sent, detected before anything left the consumer's server.
    pub fn code(&self) -> FaultCode {
        let kind = match self {
            Self::UnsupportedMethod(_) => ErrorKind::InvalidHttpMethod,
            Self::UnsupportedProtocolVersion(_) => ErrorKind::InvalidProtocolVersion,
            Self::MissingClient => ErrorKind::MissingHeaderField,
            Self::InvalidClient(_) => ErrorKind::InvalidClientIdentifier,
            Self::InvalidSecurityServer(_) => ErrorKind::InvalidSecurityServer,
            Self::MalformedRequestLine
            | Self::InvalidTarget
            | Self::NotRestPath
            | Self::TooFewSegments(_)
            | Self::InvalidService(_)
            | Self::InvalidRepresentedParty(_)
            | Self::InvalidHeaderValue(_) => ErrorKind::InvalidRest,
        };
        FaultCode::new(Origin::Client, kind)
    }

    /// The fault to answer with, with a fresh correlation id.
    pub fn fault(&self) -> Fault {
        Fault::new(self.code(), self.to_string())
    }
}

/// A parsed `/r1/` request line: a view into the received method and target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestRequest<'a> {
    method: &'a str,
    target: &'a str,
    service: ServiceId,
    path_start: usize,
    query_start: Option<usize>,
}

impl<'a> RestRequest<'a> {
    /// Parses an HTTP/1.1 request line, `METHOD SP TARGET [SP HTTP-VERSION]` (no CRLF).
    pub fn parse_line(line: &'a str) -> Result<Self, RestError> {
        let mut parts = line.split(' ');
        let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
            return Err(RestError::MalformedRequestLine);
        };
        match (parts.next(), parts.next()) {
            (None, _) => {}
            (Some(v), None) if v.starts_with("HTTP/") => {}
            _ => return Err(RestError::MalformedRequestLine),
        }
        Self::parse(method, target)
    }

    /// Parses a method and an origin-form target `/r1/INSTANCE/CLASS/MEMBER/SUBSYSTEM/SERVICE[/path][?query]`.
    pub fn parse(method: &'a str, target: &'a str) -> Result<Self, RestError> {
        if !METHODS.contains(&method) {
            return Err(RestError::UnsupportedMethod(method.to_owned()));
        }
        // Bytes an origin-form target may hold (RFC 9112 §3.2): visible ASCII except `#`,
        // plus UTF-8 that some clients send unescaped.
        if !target.starts_with('/') || target.bytes().any(|b| b <= b' ' || b == 0x7f || b == b'#') {
            return Err(RestError::InvalidTarget);
        }
        let (path, query_start) = match target.find('?') {
            Some(q) => (&target[..q], Some(q + 1)),
            None => (target, None),
        };
        // path = "/" version "/" 5 id segments ["/" rest]
        let mut segs = path[1..].splitn(7, '/');
        let version = segs.next().unwrap_or_default();
        if version != PROTOCOL_VERSION {
            let numbered = version.len() > 1
                && version.starts_with('r')
                && version[1..].bytes().all(|b| b.is_ascii_digit());
            return Err(if numbered {
                RestError::UnsupportedProtocolVersion(version.to_owned())
            } else {
                RestError::NotRestPath
            });
        }
        let id_start = 1 + version.len() + 1;
        let mut id_len = 0;
        for n in 0..5 {
            match segs.next() {
                Some(s) => id_len += s.len() + usize::from(n > 0),
                None => return Err(RestError::TooFewSegments(n)),
            }
        }
        let id_end = id_start + id_len;
        let ids = path
            .get(id_start..id_end)
            .ok_or(RestError::TooFewSegments(0))?;
        let service = ServiceId::from_slash(ids).map_err(RestError::InvalidService)?;
        Ok(Self {
            method,
            target,
            service,
            path_start: id_end,
            query_start,
        })
    }

    /// The HTTP method.
    pub fn method(&self) -> &'a str {
        self.method
    }

    /// The whole target as received, `/r1/…[?query]`; this goes into the header part.
    pub fn target(&self) -> &'a str {
        self.target
    }

    /// The service addressed by the five identifier segments.
    pub fn service(&self) -> &ServiceId {
        &self.service
    }

    /// The path after the service code, raw (still percent-encoded): `""` or `/…`.
    pub fn path(&self) -> &'a str {
        let end = self.query_start.map_or(self.target.len(), |q| q - 1);
        &self.target[self.path_start..end]
    }

    /// The raw query after `?`, if there was a `?`.
    pub fn query(&self) -> Option<&'a str> {
        self.query_start.map(|q| &self.target[q..])
    }

    /// The path in the normal form access rights match against.
    pub fn endpoint_path(&self) -> Result<String, PathError> {
        normalize_endpoint_path(self.path())
    }
}

/// The `X-Road-*` headers of a client request, after alias resolution.
///
/// For each field the canonical `X-Road-*` header wins over its `Uxp-*` alias, which wins
/// over `Information-Mediator-Client` (client only). Among several headers of the same name
/// the last one wins, as in X-Road. Empty values count as absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XRoadHeaders {
    /// The calling client.
    pub client: ClientId,
    /// The message id: the client's, or a fresh UUID.
    pub message_id: String,
    /// Whether [`XRoadHeaders::message_id`] was generated here because the client sent none.
    pub message_id_generated: bool,
    /// The end user the client asserts (unverified).
    pub user_id: Option<String>,
    /// The case or document reference.
    pub issue: Option<String>,
    /// The party the client acts for.
    pub represented_party: Option<RepresentedParty>,
    /// The provider security server the client wants to reach.
    pub security_server: Option<SecurityServerId>,
    /// The end user's OpenID Connect ID token from `Trustbus-Id-Token`, to be verified.
    pub id_token: Option<String>,
}

/// Header names per field, highest precedence first.
const CLIENT_NAMES: [&str; 3] = [headers::X_ROAD_CLIENT, "Uxp-Client", headers::IM_CLIENT];
const ID_NAMES: [&str; 2] = [headers::X_ROAD_ID, "Uxp-Id"];
const USER_ID_NAMES: [&str; 2] = [headers::X_ROAD_USER_ID, "Uxp-UserId"];
const ISSUE_NAMES: [&str; 2] = [headers::X_ROAD_ISSUE, "Uxp-Issue"];
const PARTY_NAMES: [&str; 2] = [headers::X_ROAD_REPRESENTED_PARTY, "Uxp-Represented-Party"];
const SERVER_NAMES: [&str; 2] = [headers::X_ROAD_SECURITY_SERVER, "Uxp-Security-Server"];

impl XRoadHeaders {
    /// Reads the bus headers from a client request, generating a message id if there is none.
    pub fn from_headers(h: &Headers<'_>) -> Result<Self, RestError> {
        let client = lookup(h, &CLIENT_NAMES)?.ok_or(RestError::MissingClient)?;
        let client = ClientId::from_slash(client).map_err(RestError::InvalidClient)?;
        let given_id = lookup(h, &ID_NAMES)?;
        let security_server = lookup(h, &SERVER_NAMES)?
            .map(SecurityServerId::from_slash)
            .transpose()
            .map_err(RestError::InvalidSecurityServer)?;
        let represented_party = lookup(h, &PARTY_NAMES)?
            .map(RepresentedParty::from_slash)
            .transpose()
            .map_err(RestError::InvalidRepresentedParty)?;
        Ok(Self {
            client,
            message_id_generated: given_id.is_none(),
            // Time-ordered (UUIDv7) when generated: only uniqueness is required, and the
            // message log indexes message ids.
            message_id: given_id.map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned),
            user_id: lookup(h, &USER_ID_NAMES)?.map(str::to_owned),
            issue: lookup(h, &ISSUE_NAMES)?.map(str::to_owned),
            represented_party,
            security_server,
            id_token: lookup(h, &[headers::TRUSTBUS_ID_TOKEN])?.map(str::to_owned),
        })
    }
}

/// The value for the first of `names` that has a non-empty value (last occurrence wins),
/// trimmed of surrounding whitespace.
fn lookup<'h>(h: &'h Headers<'_>, names: &[&'static str]) -> Result<Option<&'h str>, RestError> {
    for &name in names {
        let Some(raw) = h
            .get_all(name)
            .filter(|v| !v.trim_ascii().is_empty())
            .last()
        else {
            continue;
        };
        let v = std::str::from_utf8(raw.trim_ascii())
            .map_err(|_| RestError::InvalidHeaderValue(name))?;
        if v.chars().any(char::is_control) {
            return Err(RestError::InvalidHeaderValue(name));
        }
        return Ok(Some(v));
    }
    Ok(None)
}
