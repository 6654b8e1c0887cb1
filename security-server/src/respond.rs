//! Error responses in each protocol, and conversion of request headers.

use trustbus_sdk::FaultDialect;
use trustbus_sdk::fault::Fault;
use trustbus_sdk::rest::{ErrorFormat, ErrorResponse, Headers};

use crate::httpc::{OutBody, full};

/// Logs `fault` with its correlation id (the id the caller sees).
pub fn log_fault(side: &str, fault: &Fault) {
    tracing::warn!(
        side,
        code = %fault.code.render(FaultDialect::Classic),
        correlation_id = %fault.correlation_id,
        message = %fault.message,
        "exchange failed"
    );
}

/// A REST error: status 400/500, `X-Road-Error`, JSON (or XML if the client prefers) body.
pub fn rest_error(
    fault: &Fault,
    dialect: FaultDialect,
    accept: Option<&[u8]>,
) -> http::Response<OutBody> {
    let e = ErrorResponse::new(fault, dialect, ErrorFormat::from_accept(accept));
    http::Response::builder()
        .status(e.status)
        .header("X-Road-Error", e.code.as_str())
        .header(http::header::CONTENT_TYPE, e.content_type)
        .body(full(e.body))
        .unwrap_or_else(|_| http::Response::new(full(Vec::new())))
}

/// A SOAP fault with status 500.
pub fn soap_error(fault: &Fault, dialect: FaultDialect) -> http::Response<OutBody> {
    http::Response::builder()
        .status(500)
        .header(http::header::CONTENT_TYPE, "text/xml; charset=utf-8")
        .body(full(trustbus_sdk::soap::render_fault(fault, dialect)))
        .unwrap_or_else(|_| http::Response::new(full(Vec::new())))
}

/// The request's headers in order as sdk [`Headers`].
pub fn sdk_headers(h: &http::HeaderMap) -> Headers<'static> {
    let mut out = Headers::with_capacity(h.len());
    for (name, value) in h {
        out.push(name.as_str().to_owned(), value.as_bytes().to_vec());
    }
    out
}

/// Copies sdk headers onto an HTTP response/request builder, skipping invalid ones.
pub fn put_headers(mut b: http::response::Builder, h: &Headers<'_>) -> http::response::Builder {
    for (name, value) in h.iter() {
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_bytes(value),
        ) {
            b = b.header(n, v);
        }
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use trustbus_sdk::fault::{ErrorKind, Origin};

    #[test]
    fn both_dialects() {
        let f = Fault::of(Origin::ServerProxy, ErrorKind::AccessDenied, "no");
        let r = rest_error(&f, FaultDialect::Classic, None);
        assert_eq!(r.status(), 500);
        assert_eq!(
            r.headers()["x-road-error"],
            "Server.ServerProxy.AccessDenied"
        );
        let r = rest_error(&f, FaultDialect::Lowercase, None);
        assert_eq!(
            r.headers()["x-road-error"],
            "server.serverproxy.access_denied"
        );
        let c = Fault::of(Origin::Client, ErrorKind::InvalidHttpMethod, "GET");
        assert_eq!(rest_error(&c, FaultDialect::Classic, None).status(), 400);
    }
}
