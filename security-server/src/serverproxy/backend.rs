//! Calls to the provider's backend services (HTTP and HTTPS, both pooled), with connect and
//! read timeouts.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use trustbus_sdk::fault::{ErrorKind, Fault, Origin};
use trustbus_sdk::rest::Headers;

use crate::config::ServiceConfig;
use crate::httpc::{CallError, OutBody};
use crate::message::stream_body;
use crate::spill::SpillBuffer;
use crate::state::BackendClient;

fn failed(cause: Option<ErrorKind>, m: String) -> Fault {
    crate::verify::fault(Origin::ServerProxy, ErrorKind::ServiceFailed, cause, m)
}

/// A backend response, body buffered (spilled if large) and hashed.
#[derive(Debug)]
pub struct BackendResponse {
    /// Status code.
    pub status: u16,
    /// Reason phrase.
    pub reason: String,
    /// Headers in order.
    pub headers: Headers<'static>,
    /// The body.
    pub body: SpillBuffer,
}

/// Calls `url` with `method`, `headers` (already filtered of hop-by-hop ones) and `body`.
#[allow(clippy::too_many_arguments)]
pub async fn call(
    backend: Option<&BackendClient>,
    svc: &ServiceConfig,
    method: &str,
    url: &str,
    headers: &Headers<'_>,
    body: Option<SpillBuffer>,
    max_body: u64,
    spill_threshold: usize,
) -> Result<BackendResponse, Fault> {
    let mut b = http::Request::builder().method(method).uri(url);
    for (name, value) in headers.iter() {
        if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("host") {
            continue;
        }
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_bytes(value),
        ) {
            b = b.header(n, v);
        }
    }
    let body: OutBody = match body {
        Some(s) => {
            b = b.header(http::header::CONTENT_LENGTH, s.len());
            stream_body(Bytes::new(), s, Bytes::new())
        }
        None => crate::httpc::full(Bytes::new()),
    };
    let req = b.body(body).map_err(|e| {
        Fault::of(
            Origin::ServerProxy,
            ErrorKind::ServiceMalformedUrl,
            e.to_string(),
        )
    })?;
    let read = Duration::from_millis(svc.read_timeout_ms);
    let backend = backend.ok_or_else(|| {
        Fault::of(
            Origin::ServerProxy,
            ErrorKind::InternalError,
            "no backend client",
        )
    })?;
    let result = if url.starts_with("https://") {
        match &backend.tls {
            Some(Ok(https)) => https.call(req, read).await,
            Some(Err(e)) => Err(CallError::Other(format!("backend TLS configuration: {e}"))),
            None => Err(CallError::Other("an https:// service needs tls_ca".into())),
        }
    } else {
        backend.http.call(req, read).await
    };
    let resp = result.map_err(|e| match e {
        CallError::Timeout(d) => failed(
            Some(ErrorKind::NetworkError),
            format!("service did not answer within {d:?}"),
        ),
        CallError::Connect(m) => failed(
            Some(ErrorKind::NetworkError),
            format!("cannot connect to the service: {m}"),
        ),
        CallError::Other(m) => failed(Some(ErrorKind::IOError), m),
    })?;
    let status = resp.status();
    let mut headers = Headers::with_capacity(resp.headers().len());
    for (n, v) in resp.headers() {
        if !trustbus_sdk::rest::is_hop_by_hop(n.as_str()) && n != http::header::CONTENT_LENGTH {
            headers.push(n.as_str().to_owned(), v.as_bytes().to_vec());
        }
    }
    let mut spill = SpillBuffer::new(spill_threshold, None);
    let mut body = Limited::new(
        resp.into_body(),
        usize::try_from(max_body).unwrap_or(usize::MAX),
    );
    loop {
        let frame = tokio::time::timeout(read, body.frame())
            .await
            .map_err(|_| {
                failed(
                    Some(ErrorKind::NetworkError),
                    "service body timed out".into(),
                )
            })?;
        match frame {
            None => break,
            Some(Err(e)) => {
                return Err(failed(
                    Some(ErrorKind::IOError),
                    format!("reading the service response: {e}"),
                ));
            }
            Some(Ok(f)) => {
                if let Ok(d) = f.into_data() {
                    spill.write(&d).map_err(|e| {
                        Fault::of(Origin::ServerProxy, ErrorKind::IOError, e.to_string())
                    })?;
                }
            }
        }
    }
    Ok(BackendResponse {
        status: status.as_u16(),
        reason: status.canonical_reason().unwrap_or("").to_owned(),
        headers,
        body: spill,
    })
}

/// The backend URL for a REST call: the service's base URL, the path after the service code
/// and the query.
pub fn rest_url(base: &str, path: &str, query: Option<&str>) -> String {
    let mut u = base.trim_end_matches('/').to_owned();
    if !path.is_empty() && path != "/" {
        if !path.starts_with('/') {
            u.push('/');
        }
        u.push_str(path);
    }
    if let Some(q) = query {
        u.push('?');
        u.push_str(q);
    }
    u
}
