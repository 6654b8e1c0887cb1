//! How requests reach the security server: the [`Transport`] trait, the hyper + rustls (ring)
//! implementation, and an in-memory mock for tests.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Why a request did not produce an HTTP response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct TransportError {
    /// What kind of failure.
    pub kind: TransportErrorKind,
    /// Details for humans.
    pub message: String,
}

/// Classes of transport failure; only [`TransportErrorKind::Connect`] is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportErrorKind {
    /// No connection could be made (refused, DNS, TLS handshake): the request was not sent.
    Connect,
    /// The request or response took longer than the configured timeout.
    Timeout,
    /// The response body exceeded the configured limit.
    TooLarge,
    /// Anything else after the connection was made (reset, protocol error).
    Other,
}

impl TransportError {
    /// A new error.
    pub fn new(kind: TransportErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// Sends one HTTP request and returns the complete response. Implement it to put the client
/// over another HTTP stack or, in tests, over a function ([`MockTransport`]).
pub trait Transport: Send + Sync + 'static {
    /// Sends `request` (absolute URI) and reads the whole response.
    fn send(
        &self,
        request: http::Request<Bytes>,
    ) -> impl Future<Output = Result<http::Response<Bytes>, TransportError>> + Send;
}

/// The default transport: hyper 1 (HTTP/1.1, pooled keep-alive connections) with rustls on the
/// ring provider. It never follows redirects.
#[derive(Clone, Debug)]
pub struct HyperTransport {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
    max_response_size: usize,
}

impl HyperTransport {
    /// A transport with this TLS configuration (used for `https` URLs; `http` works too),
    /// connect timeout, overall request timeout and response size limit.
    pub fn new(
        tls: rustls::ClientConfig,
        connect_timeout: Duration,
        timeout: Duration,
        max_response_size: usize,
    ) -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(connect_timeout));
        http.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Self {
            client: Client::builder(TokioExecutor::new()).build(https),
            timeout,
            max_response_size,
        }
    }
}

impl Transport for HyperTransport {
    async fn send(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, TransportError> {
        let (parts, body) = request.into_parts();
        let request = http::Request::from_parts(parts, Full::new(body));
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| {
                let kind = if e.is_connect() {
                    TransportErrorKind::Connect
                } else {
                    TransportErrorKind::Other
                };
                TransportError::new(kind, error_chain(&e))
            })?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, self.max_response_size)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        TransportError::new(
                            TransportErrorKind::TooLarge,
                            format!("response body exceeds {} bytes", self.max_response_size),
                        )
                    } else {
                        TransportError::new(TransportErrorKind::Other, e.to_string())
                    }
                })?
                .to_bytes();
            Ok(http::Response::from_parts(parts, body))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(TransportError::new(
                    TransportErrorKind::Timeout,
                    format!("no complete response within {:?}", self.timeout),
                ))
            })
    }
}

/// The error and its sources, joined, so the root cause (refused, certificate unknown) shows.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// A request as the mock saw it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// The method.
    pub method: http::Method,
    /// The absolute URI.
    pub uri: http::Uri,
    /// The headers.
    pub headers: http::HeaderMap,
    /// The body.
    pub body: Bytes,
}

type Handler =
    dyn Fn(&RecordedRequest) -> Result<http::Response<Bytes>, TransportError> + Send + Sync;

/// An in-memory transport for tests: answers with a function and records every request.
#[derive(Clone)]
pub struct MockTransport {
    handler: Arc<Handler>,
    seen: Arc<Mutex<Vec<RecordedRequest>>>,
}

impl std::fmt::Debug for MockTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockTransport").finish_non_exhaustive()
    }
}

impl MockTransport {
    /// A mock answering every request with `handler`.
    pub fn new(
        handler: impl Fn(&RecordedRequest) -> Result<http::Response<Bytes>, TransportError>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        Self {
            handler: Arc::new(handler),
            seen: Arc::default(),
        }
    }

    /// A mock answering with `replies` in order, then with connect errors.
    pub fn sequence(replies: Vec<Result<http::Response<Bytes>, TransportError>>) -> Self {
        let queue = Mutex::new(std::collections::VecDeque::from(replies));
        Self::new(move |_| {
            queue
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop_front()
                .unwrap_or_else(|| {
                    Err(TransportError::new(
                        TransportErrorKind::Connect,
                        "mock: no more replies",
                    ))
                })
        })
    }

    /// Every request sent so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A response with `status`, `headers` and `body`, for handlers.
    pub fn response(
        status: u16,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> http::Response<Bytes> {
        let mut r = http::Response::new(body.into());
        *r.status_mut() =
            http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
        for (k, v) in headers {
            if let (Ok(k), Ok(v)) = (
                http::HeaderName::from_bytes(k.as_bytes()),
                http::HeaderValue::from_str(v),
            ) {
                r.headers_mut().append(k, v);
            }
        }
        r
    }
}

impl Transport for MockTransport {
    async fn send(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, TransportError> {
        let (parts, body) = request.into_parts();
        let rec = RecordedRequest {
            method: parts.method,
            uri: parts.uri,
            headers: parts.headers,
            body,
        };
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(rec.clone());
        (self.handler)(&rec)
    }
}
