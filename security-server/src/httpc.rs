//! Plain HTTP client calls: OCSP requests to responders and calls to HTTP backends.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use hyper_util::client::legacy::{Client, Error as LegacyError};
use hyper_util::rt::TokioExecutor;

/// The body type of outgoing requests.
pub type OutBody = BoxBody<Bytes, std::io::Error>;

/// A body from bytes in memory.
pub fn full(b: impl Into<Bytes>) -> OutBody {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

/// Why a backend call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// No TCP connection within the connect timeout, or refused.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// No response head within the read timeout.
    #[error("no response within {0:?}")]
    Timeout(Duration),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

/// A pooled HTTP/1.1 client.
#[derive(Clone, Debug)]
pub struct HttpClient {
    client: Client<HttpConnector, OutBody>,
}

impl HttpClient {
    /// A client with this connect timeout.
    pub fn new(connect_timeout: Duration) -> Self {
        Self {
            client: pooled(tcp_connector(connect_timeout)),
        }
    }

    /// Sends `req`, waiting at most `read_timeout` for the response head.
    pub async fn call(
        &self,
        req: http::Request<OutBody>,
        read_timeout: Duration,
    ) -> Result<http::Response<Incoming>, CallError> {
        timed_request(&self.client, req, read_timeout, |e| e.to_string()).await
    }

    /// POSTs `body` and returns the response body (at most 1 MiB) if the status is 200.
    pub async fn post(
        &self,
        url: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<Vec<u8>, String> {
        let req = http::Request::post(url)
            .header(http::header::CONTENT_TYPE, content_type)
            .body(full(body))
            .map_err(|e| e.to_string())?;
        let resp = self
            .call(req, Duration::from_secs(10))
            .await
            .map_err(|e| e.to_string())?;
        if resp.status() != http::StatusCode::OK {
            return Err(format!("status {}", resp.status()));
        }
        let b = Limited::new(resp.into_body(), 1 << 20)
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        Ok(b.to_bytes().to_vec())
    }
}

/// A pooled HTTPS/1.1 client with one TLS trust configuration (an HTTPS backend's `tls_ca`):
/// connections are kept and reused like those of [`HttpClient`].
#[derive(Clone, Debug)]
pub struct HttpsClient {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, OutBody>,
}

impl HttpsClient {
    /// A client trusting `tls`, with this connect timeout; the host name of each URL is
    /// verified against the server's certificate.
    pub fn new(tls: std::sync::Arc<rustls::ClientConfig>, connect_timeout: Duration) -> Self {
        let mut conn = tcp_connector(connect_timeout);
        conn.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*tls).clone())
            .https_only()
            .enable_http1()
            .wrap_connector(conn);
        Self {
            client: pooled(https),
        }
    }

    /// Sends `req` (an `https://` URL), waiting at most `read_timeout` for the response head
    /// (connecting and the TLS handshake included).
    pub async fn call(
        &self,
        req: http::Request<OutBody>,
        read_timeout: Duration,
    ) -> Result<http::Response<Incoming>, CallError> {
        // The debug form keeps the TLS cause (unknown issuer, wrong name) that Display drops.
        timed_request(&self.client, req, read_timeout, |e| format!("{e:?}")).await
    }
}

/// A TCP connector with this connect timeout and Nagle off.
fn tcp_connector(connect_timeout: Duration) -> HttpConnector {
    let mut conn = HttpConnector::new();
    conn.set_connect_timeout(Some(connect_timeout));
    conn.set_nodelay(true);
    conn
}

/// A client over `connector` that keeps idle connections for 30 s.
fn pooled<C>(connector: C) -> Client<C, OutBody>
where
    C: Connect + Clone,
{
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

/// Sends `req` on `client`, waiting at most `read_timeout` for the response head; a connect
/// failure is described by `connect_detail`.
async fn timed_request<C>(
    client: &Client<C, OutBody>,
    req: http::Request<OutBody>,
    read_timeout: Duration,
    connect_detail: fn(&LegacyError) -> String,
) -> Result<http::Response<Incoming>, CallError>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    match tokio::time::timeout(read_timeout, client.request(req)).await {
        Err(_) => Err(CallError::Timeout(read_timeout)),
        Ok(Err(e)) if e.is_connect() => Err(CallError::Connect(connect_detail(&e))),
        Ok(Err(e)) => Err(CallError::Other(e.to_string())),
        Ok(Ok(r)) => Ok(r),
    }
}

/// A client configuration trusting the certificates in the PEM file `ca` (for HTTPS backends).
pub fn backend_tls_config(
    ca: &std::path::Path,
) -> Result<std::sync::Arc<rustls::ClientConfig>, String> {
    let certs =
        trustbus_pki::Certificate::read_file(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
    trustbus_pki::tls::https_client_config(&certs).map_err(|e| format!("{}: {e}", ca.display()))
}

/// Sends `req` to an `https://` URL over a new TLS connection (one-off fetches such as service
/// descriptions; backends use [`HttpsClient`]), with connect and read (response head) timeouts.
pub async fn call_https(
    tls: std::sync::Arc<rustls::ClientConfig>,
    req: http::Request<OutBody>,
    connect_timeout: Duration,
    read_timeout: Duration,
) -> Result<http::Response<Incoming>, CallError> {
    let uri = req.uri().clone();
    let host = uri
        .host()
        .ok_or_else(|| CallError::Other("URL without host".into()))?
        .to_owned();
    let port = uri.port_u16().unwrap_or(443);
    let tcp = tokio::time::timeout(
        connect_timeout,
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await
    .map_err(|_| CallError::Connect(format!("{host}:{port}: timed out")))?
    .map_err(|e| CallError::Connect(format!("{host}:{port}: {e}")))?;
    let name = rustls::pki_types::ServerName::try_from(host.clone())
        .map_err(|e| CallError::Other(e.to_string()))?;
    let stream = tokio::time::timeout(
        connect_timeout,
        tokio_rustls::TlsConnector::from(tls).connect(name, tcp),
    )
    .await
    .map_err(|_| CallError::Connect(format!("{host}:{port}: TLS handshake timed out")))?
    .map_err(|e| CallError::Connect(format!("{host}:{port}: TLS: {e}")))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| CallError::Other(e.to_string()))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let (mut parts, body) = req.into_parts();
    // On a direct connection the request target is the path, and Host names the server.
    parts.uri = uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .parse()
        .map_err(|e: http::uri::InvalidUri| CallError::Other(e.to_string()))?;
    if let Ok(h) =
        http::HeaderValue::from_str(&uri.authority().map(|a| a.to_string()).unwrap_or(host))
    {
        parts.headers.insert(http::header::HOST, h);
    }
    match tokio::time::timeout(
        read_timeout,
        sender.send_request(http::Request::from_parts(parts, body)),
    )
    .await
    {
        Err(_) => Err(CallError::Timeout(read_timeout)),
        Ok(Err(e)) => Err(CallError::Other(e.to_string())),
        Ok(Ok(r)) => Ok(r),
    }
}
