//! The development trust services over plain HTTP (hyper 1): OCSP, TSA, the CA certificate.
//!
//! | method and path | answer |
//! |---|---|
//! | `POST /ocsp` | OCSP response for the DER `OCSPRequest` body (RFC 6960 appendix A.1) |
//! | `GET /ocsp/{base64}` | the same for a base64 (then URL-encoded) request in the path |
//! | `POST /tsa` | RFC 3161 `TimeStampResp` for the DER `TimeStampReq` body |
//! | `GET /ca.pem` | the CA certificate |
//! | `GET /healthz` | `ok` |
//!
//! The OCSP and TSA protocol logic are pure functions behind [`HttpResponder`]; a route whose
//! responder is not mounted answers 503.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

/// Largest request body accepted.
pub const MAX_BODY: usize = 64 * 1024;

/// A protocol responder over bytes: request body in, response body out.
pub trait HttpResponder: Send + Sync {
    /// The response's `Content-Type`.
    fn content_type(&self) -> &'static str;
    /// The response for a request body. Protocol errors are encoded in the response itself
    /// (OCSP `malformedRequest`, TSP `rejection`), so this cannot fail.
    fn respond(&self, body: &[u8]) -> Vec<u8>;
}

/// The OCSP responder over HTTP: answers as of the moment the request arrives.
impl<S: crate::revocation::RevocationSource> HttpResponder for crate::ocsp::OcspResponder<S> {
    fn content_type(&self) -> &'static str {
        "application/ocsp-response"
    }
    fn respond(&self, body: &[u8]) -> Vec<u8> {
        crate::ocsp::OcspResponder::respond(self, body, time::OffsetDateTime::now_utc())
    }
}

/// The timestamping authority over HTTP (`application/timestamp-query` in, reply out).
impl HttpResponder for crate::tsa::TsaResponder {
    fn content_type(&self) -> &'static str {
        "application/timestamp-reply"
    }
    fn respond(&self, body: &[u8]) -> Vec<u8> {
        crate::tsa::TsaResponder::respond(self, body, time::OffsetDateTime::now_utc())
    }
}

/// The development services of a dev CA directory: OCSP answering from the CA's index (so a
/// `revoke` by another process shows up on the next request) and a TSA with the dev policy.
pub fn dev_services(ca: Arc<crate::devca::DevCa>) -> Result<DevServices, DevServicesError> {
    let (ocsp_cert, ocsp_key) = ca.ocsp_signer()?;
    let (tsa_cert, tsa_key) = ca.tsa_signer()?;
    let ocsp = crate::ocsp::OcspResponder::new(
        ca.ca_cert().der(),
        ocsp_cert.der(),
        Arc::new(ocsp_key),
        ca.clone(),
    )?;
    // Serials must not repeat across restarts: start from the clock (microseconds).
    let first_serial =
        u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000).unwrap_or(1);
    let tsa = crate::tsa::TsaResponder::new(tsa_cert.der(), Arc::new(tsa_key), DEV_TSA_POLICY)?
        .with_next_serial(first_serial);
    Ok(DevServices {
        ocsp: Some(Arc::new(ocsp)),
        tsa: Some(Arc::new(tsa)),
        ca_pem: Some(ca.ca_cert().to_pem()),
    })
}

/// The TSA policy OID of the development TSA (an arc under the example PEN, never production).
pub const DEV_TSA_POLICY: const_oid::ObjectIdentifier =
    const_oid::ObjectIdentifier::new_unwrap("1.3.6.1.4.1.32473.1.1");

/// Why the development services could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum DevServicesError {
    /// Reading the CA directory failed.
    #[error(transparent)]
    DevCa(#[from] crate::devca::DevCaError),
    /// The OCSP responder refused its certificate or key.
    #[error("OCSP responder: {0}")]
    Ocsp(#[from] crate::ocsp::OcspError),
    /// The TSA refused its certificate or key.
    #[error("TSA: {0}")]
    Tsa(#[from] crate::tsa::TspError),
}

/// What the dev services server mounts.
#[derive(Clone, Default)]
pub struct DevServices {
    /// The OCSP responder.
    pub ocsp: Option<Arc<dyn HttpResponder>>,
    /// The timestamping authority.
    pub tsa: Option<Arc<dyn HttpResponder>>,
    /// The CA certificate in PEM, served at `/ca.pem`.
    pub ca_pem: Option<String>,
}

impl std::fmt::Debug for DevServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevServices")
            .field("ocsp", &self.ocsp.is_some())
            .field("tsa", &self.tsa.is_some())
            .field("ca_pem", &self.ca_pem.is_some())
            .finish()
    }
}

/// A response: status, content type, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status.
    pub status: StatusCode,
    /// Content-Type.
    pub content_type: &'static str,
    /// Body.
    pub body: Vec<u8>,
}

fn text(status: StatusCode, msg: &str) -> Reply {
    Reply {
        status,
        content_type: "text/plain; charset=utf-8",
        body: msg.as_bytes().to_vec(),
    }
}

fn respond(r: Option<&Arc<dyn HttpResponder>>, what: &str, body: &[u8]) -> Reply {
    match r {
        Some(r) => Reply {
            status: StatusCode::OK,
            content_type: r.content_type(),
            body: r.respond(body),
        },
        None => text(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("{what} responder is not mounted in this build\n"),
        ),
    }
}

/// Decodes the `{base64}` of `GET /ocsp/{base64}`: percent-decoding, then standard base64
/// (URL-safe base64 is accepted too).
pub fn decode_ocsp_get(path_rest: &str) -> Option<Vec<u8>> {
    let decoded = percent_encoding::percent_decode_str(path_rest)
        .decode_utf8()
        .ok()?;
    let s = decoded.trim();
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(s))
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s))
        .ok()
}

/// Routes one request (pure; the server calls this).
pub fn route(services: &DevServices, method: &Method, path: &str, body: &[u8]) -> Reply {
    match (method, path) {
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::GET, "/ca.pem") => match &services.ca_pem {
            Some(pem) => Reply {
                status: StatusCode::OK,
                content_type: "application/x-pem-file",
                body: pem.as_bytes().to_vec(),
            },
            None => text(StatusCode::NOT_FOUND, "no CA certificate\n"),
        },
        (&Method::POST, "/ocsp") | (&Method::POST, "/ocsp/") => {
            respond(services.ocsp.as_ref(), "OCSP", body)
        }
        (&Method::GET, p) if p.starts_with("/ocsp/") => match decode_ocsp_get(&p[6..]) {
            Some(req) => respond(services.ocsp.as_ref(), "OCSP", &req),
            None => text(StatusCode::BAD_REQUEST, "the path is not base64\n"),
        },
        (&Method::POST, "/tsa") => respond(services.tsa.as_ref(), "TSA", body),
        (_, "/healthz" | "/ca.pem" | "/ocsp" | "/tsa") => {
            text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

async fn handle(
    services: Arc<DevServices>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let reply = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => route(&services, &method, &path, &b.to_bytes()),
        Err(_) => text(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n"),
    };
    tracing::debug!(%method, %path, status = %reply.status, "dev services request");
    let mut resp = Response::new(Full::new(Bytes::from(reply.body)));
    *resp.status_mut() = reply.status;
    if let Ok(v) = http::HeaderValue::from_str(reply.content_type) {
        resp.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    Ok(resp)
}

/// Serves `services` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    services: DevServices,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let services = Arc::new(services);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => r?,
            () = &mut shutdown => return Ok(()),
        };
        let services = services.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(services.clone(), req));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(tcp), svc);
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "dev services connection ended");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo;
    impl HttpResponder for Echo {
        fn content_type(&self) -> &'static str {
            "application/ocsp-response"
        }
        fn respond(&self, body: &[u8]) -> Vec<u8> {
            body.iter().rev().copied().collect()
        }
    }

    #[test]
    fn routes() {
        let s = DevServices {
            ocsp: Some(Arc::new(Echo)),
            tsa: None,
            ca_pem: Some("PEM".into()),
        };
        assert_eq!(
            route(&s, &Method::GET, "/healthz", b"").status,
            StatusCode::OK
        );
        let r = route(&s, &Method::POST, "/ocsp", b"abc");
        assert_eq!((r.status, r.body.as_slice()), (StatusCode::OK, &b"cba"[..]));
        assert_eq!(r.content_type, "application/ocsp-response");
        // "MEU=" is base64 of 0x30 0x45; in a URL the '=' may arrive percent-encoded.
        let r = route(&s, &Method::GET, "/ocsp/MEU%3D", b"");
        assert_eq!(r.body, vec![0x45, 0x30]);
        assert_eq!(
            route(&s, &Method::GET, "/ocsp/%%%", b"").status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            route(&s, &Method::POST, "/tsa", b"x").status,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            route(&s, &Method::GET, "/tsa", b"").status,
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(route(&s, &Method::GET, "/ca.pem", b"").body, b"PEM");
        assert_eq!(
            route(&s, &Method::GET, "/x", b"").status,
            StatusCode::NOT_FOUND
        );
    }
}
