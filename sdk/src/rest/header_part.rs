//! The REST header part: the request line or status plus headers, serialised as the
//! `application/x-road-rest-request` / `application/x-road-rest-response` part of the
//! transport message.
//!
//! Request: `METHOD CRLF TARGET CRLF` then `Name:Value CRLF` per header.
//! Response: `STATUS CRLF REASON CRLF` then the headers the same way.
//! No space after the colon, no terminating empty line, header order and case kept. These
//! bytes are hashed (`X-Road-Request-Hash`) and signed, so the format is exact.

use std::borrow::Cow;

use crate::fault::{ErrorKind, Fault, Origin};

use super::exchange::ExchangeHeaders;
use super::headers::{self, Headers, is_token};
use super::request::{RestError, RestRequest, XRoadHeaders};

/// Why a header part could not be written or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderPartError {
    /// The part ended inside a line, or lacks the two leading lines.
    #[error("header part is truncated")]
    Truncated,
    /// A CR or LF that is not part of a CRLF line end, or an empty line before the end.
    #[error("header part has a stray line break or empty line")]
    StrayLineBreak,
    /// The method is not an HTTP token.
    #[error("header part has an invalid method")]
    InvalidMethod,
    /// The target is empty, not UTF-8, or contains spaces or control characters.
    #[error("header part has an invalid request target")]
    InvalidTarget,
    /// The status is not three digits.
    #[error("header part has an invalid status code")]
    InvalidStatus,
    /// The reason phrase is not UTF-8 or contains control characters.
    #[error("header part has an invalid reason phrase")]
    InvalidReason,
    /// A header line without `:`.
    #[error("header line without ':'")]
    MissingColon,
    /// A header name that is not an HTTP token.
    #[error("invalid header name")]
    InvalidHeaderName,
    /// A header value containing CR, LF or NUL.
    #[error("invalid header value")]
    InvalidHeaderValue,
}

impl HeaderPartError {
    /// The fault when the provider's server cannot read a request part: `Server.ServerProxy.InvalidRest`.
    pub fn request_fault(&self) -> Fault {
        Fault::of(
            Origin::ServerProxy,
            ErrorKind::InvalidRest,
            self.to_string(),
        )
    }

    /// The fault when the consumer's server cannot read a response part: `Server.ClientProxy.InvalidResponse`.
    pub fn response_fault(&self) -> Fault {
        Fault::of(
            Origin::ClientProxy,
            ErrorKind::InvalidResponse,
            self.to_string(),
        )
    }
}

/// The request header part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHeaderPart<'a> {
    /// The HTTP method.
    pub method: Cow<'a, str>,
    /// The target as the client sent it, `/r1/…[?query]`.
    pub target: Cow<'a, str>,
    /// The forwarded headers, in order.
    pub headers: Headers<'a>,
}

/// The response header part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHeaderPart<'a> {
    /// The HTTP status code.
    pub status: u16,
    /// The reason phrase (may be empty).
    pub reason: Cow<'a, str>,
    /// The forwarded headers, in order.
    pub headers: Headers<'a>,
}

/// Headers the consumer's server never copies from the client into the request part:
/// the ID token is verified locally and must not travel, and the request id is ours to set.
fn consumer_drops(name: &str) -> bool {
    name.eq_ignore_ascii_case(headers::TRUSTBUS_ID_TOKEN)
        || name.eq_ignore_ascii_case(headers::X_ROAD_REQUEST_ID)
}

/// Exchange headers the provider's server sets itself on the response part, replacing any
/// the service returned.
fn provider_drops(name: &str) -> bool {
    [
        headers::X_ROAD_ID,
        headers::X_ROAD_CLIENT,
        headers::X_ROAD_SERVICE,
        headers::X_ROAD_REQUEST_ID,
        headers::X_ROAD_REQUEST_HASH,
    ]
    .iter()
    .any(|n| n.eq_ignore_ascii_case(name))
}

fn has_value(h: &Headers<'_>, name: &str) -> bool {
    h.get_all(name).any(|v| !v.trim_ascii().is_empty())
}

impl<'a> RequestHeaderPart<'a> {
    /// The part the consumer's server sends for a client request.
    ///
    /// Client headers are copied in order without the hop-by-hop ones, `Trustbus-Id-Token`
    /// and any `X-Road-Request-Id`. Then, so that the provider reads the same values we
    /// resolved: `x-road-client` is appended if the client used only an alias, `x-road-id` if
    /// the client sent no `X-Road-Id` (alias or generated id), and `x-road-request-id` always.
    pub fn for_transport(
        request: &RestRequest<'a>,
        client_headers: &'a Headers<'_>,
        xroad: &XRoadHeaders,
        request_id: &str,
    ) -> Self {
        let mut h = client_headers.borrowed_where(|n| !consumer_drops(n));
        if !has_value(&h, headers::X_ROAD_CLIENT) {
            h.push("x-road-client", xroad.client.to_slash().into_bytes());
        }
        if !has_value(&h, headers::X_ROAD_ID) {
            h.push("x-road-id", xroad.message_id.clone().into_bytes());
        }
        h.push("x-road-request-id", request_id.as_bytes().to_vec());
        Self {
            method: Cow::Borrowed(request.method()),
            target: Cow::Borrowed(request.target()),
            headers: h,
        }
    }

    /// Reads the `/r1/` request back out of the part (provider side).
    pub fn rest_request(&self) -> Result<RestRequest<'_>, RestError> {
        RestRequest::parse(&self.method, &self.target)
    }

    /// The serialised bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, HeaderPartError> {
        let mut out = Vec::with_capacity(self.target.len() + 64 * (self.headers.len() + 1));
        self.write_to(&mut out)?;
        Ok(out)
    }

    /// Appends the serialised bytes to `out`; on error `out` is left unchanged.
    pub fn write_to(&self, out: &mut Vec<u8>) -> Result<(), HeaderPartError> {
        if !is_token(&self.method) {
            return Err(HeaderPartError::InvalidMethod);
        }
        if !valid_target(self.target.as_bytes()) {
            return Err(HeaderPartError::InvalidTarget);
        }
        check_headers(&self.headers)?;
        push_line(out, self.method.as_bytes());
        push_line(out, self.target.as_bytes());
        write_headers(out, &self.headers);
        Ok(())
    }

    /// Parses a serialised request part, borrowing from `bytes`.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, HeaderPartError> {
        let mut lines = Lines::new(bytes);
        let method = lines.next_line()?.ok_or(HeaderPartError::Truncated)?;
        let method = std::str::from_utf8(method)
            .ok()
            .filter(|m| is_token(m))
            .ok_or(HeaderPartError::InvalidMethod)?;
        let target = lines.next_line()?.ok_or(HeaderPartError::Truncated)?;
        if !valid_target(target) {
            return Err(HeaderPartError::InvalidTarget);
        }
        let target = std::str::from_utf8(target).map_err(|_| HeaderPartError::InvalidTarget)?;
        Ok(Self {
            method: Cow::Borrowed(method),
            target: Cow::Borrowed(target),
            headers: parse_headers(lines)?,
        })
    }
}

impl<'a> ResponseHeaderPart<'a> {
    /// The part the provider's server sends for a service response: the service's headers in
    /// order without hop-by-hop ones and without any `X-Road-Id`, `-Client`, `-Service`,
    /// `-Request-Id` or `-Request-Hash`, then those five set from `exchange`.
    pub fn for_transport(
        status: u16,
        reason: &'a str,
        service_headers: &'a Headers<'_>,
        exchange: &'a ExchangeHeaders,
    ) -> Self {
        let mut headers = service_headers.borrowed_where(|n| !provider_drops(n));
        exchange.append_transport(&mut headers);
        Self {
            status,
            reason: Cow::Borrowed(reason),
            headers,
        }
    }

    /// The headers the consumer's server returns to its client: the part's headers without
    /// hop-by-hop ones and without the provider's exchange headers, then the exchange headers
    /// the consumer itself vouches for (after checking the request hash), in canonical case.
    pub fn client_headers<'s>(&'s self, exchange: &'s ExchangeHeaders) -> Headers<'s> {
        let mut h = self.headers.borrowed_where(|n| !provider_drops(n));
        exchange.append_canonical(&mut h);
        h
    }

    /// The serialised bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, HeaderPartError> {
        let mut out = Vec::with_capacity(16 + 64 * self.headers.len());
        self.write_to(&mut out)?;
        Ok(out)
    }

    /// Appends the serialised bytes to `out`; on error `out` is left unchanged.
    pub fn write_to(&self, out: &mut Vec<u8>) -> Result<(), HeaderPartError> {
        if !(100..=999).contains(&self.status) {
            return Err(HeaderPartError::InvalidStatus);
        }
        if !valid_reason(self.reason.as_bytes()) {
            return Err(HeaderPartError::InvalidReason);
        }
        check_headers(&self.headers)?;
        push_line(out, self.status.to_string().as_bytes());
        push_line(out, self.reason.as_bytes());
        write_headers(out, &self.headers);
        Ok(())
    }

    /// Parses a serialised response part, borrowing from `bytes`.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, HeaderPartError> {
        let mut lines = Lines::new(bytes);
        let status = lines.next_line()?.ok_or(HeaderPartError::Truncated)?;
        let status = match status {
            [a @ b'1'..=b'9', b @ b'0'..=b'9', c @ b'0'..=b'9'] => {
                u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0')
            }
            _ => return Err(HeaderPartError::InvalidStatus),
        };
        // The reason line may be empty, so it is read positionally, not as a header line.
        let reason = lines.next_raw()?.ok_or(HeaderPartError::Truncated)?;
        if !valid_reason(reason) {
            return Err(HeaderPartError::InvalidReason);
        }
        let reason = std::str::from_utf8(reason).map_err(|_| HeaderPartError::InvalidReason)?;
        Ok(Self {
            status,
            reason: Cow::Borrowed(reason),
            headers: parse_headers(lines)?,
        })
    }
}

fn valid_target(t: &[u8]) -> bool {
    !t.is_empty() && t.iter().all(|&b| b > b' ' && b != 0x7f)
}

fn valid_reason(r: &[u8]) -> bool {
    r.iter().all(|&b| b == b'\t' || (b >= b' ' && b != 0x7f))
}

fn valid_value(v: &[u8]) -> bool {
    !v.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0))
}

fn check_headers(h: &Headers<'_>) -> Result<(), HeaderPartError> {
    for (name, value) in h.iter() {
        if !is_token(name) {
            return Err(HeaderPartError::InvalidHeaderName);
        }
        if !valid_value(value) {
            return Err(HeaderPartError::InvalidHeaderValue);
        }
    }
    Ok(())
}

fn push_line(out: &mut Vec<u8>, line: &[u8]) {
    out.extend_from_slice(line);
    out.extend_from_slice(b"\r\n");
}

fn write_headers(out: &mut Vec<u8>, h: &Headers<'_>) {
    for (name, value) in h.iter() {
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        push_line(out, value);
    }
}

fn parse_headers<'a>(mut lines: Lines<'a>) -> Result<Headers<'a>, HeaderPartError> {
    let mut h = Headers::new();
    while let Some(line) = lines.next_line()? {
        let colon = memchr::memchr(b':', line).ok_or(HeaderPartError::MissingColon)?;
        let name = std::str::from_utf8(&line[..colon])
            .ok()
            .filter(|n| is_token(n))
            .ok_or(HeaderPartError::InvalidHeaderName)?;
        let value = &line[colon + 1..];
        if !valid_value(value) {
            return Err(HeaderPartError::InvalidHeaderValue);
        }
        h.push(name, value);
    }
    Ok(h)
}

/// CRLF-terminated lines. One empty line is tolerated only as the very last line, in case a
/// peer terminates the block HTTP-style; anywhere else it is an error.
struct Lines<'a> {
    rest: &'a [u8],
}

impl<'a> Lines<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    /// The next line without its CRLF, `None` at the end; errors on bare CR/LF.
    fn next_raw(&mut self) -> Result<Option<&'a [u8]>, HeaderPartError> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let Some(i) = memchr::memchr2(b'\r', b'\n', self.rest) else {
            return Err(HeaderPartError::Truncated);
        };
        if self.rest[i] != b'\r' || self.rest.get(i + 1) != Some(&b'\n') {
            return Err(if i + 1 == self.rest.len() {
                HeaderPartError::Truncated
            } else {
                HeaderPartError::StrayLineBreak
            });
        }
        let line = &self.rest[..i];
        self.rest = &self.rest[i + 2..];
        Ok(Some(line))
    }

    /// Like [`Lines::next_raw`] but treats a final empty line as the end.
    fn next_line(&mut self) -> Result<Option<&'a [u8]>, HeaderPartError> {
        match self.next_raw()? {
            Some([]) if self.rest.is_empty() => Ok(None),
            Some([]) => Err(HeaderPartError::StrayLineBreak),
            other => Ok(other),
        }
    }
}
