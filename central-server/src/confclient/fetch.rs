//! Downloading: the [`Fetcher`] seam and its HTTP(S) implementation.
//!
//! [`HttpFetcher`] chooses the transport by each URL's scheme: `http://` through a pooled
//! hyper client, `https://` over TLS (rustls, ring provider only) against the roots given to
//! [`HttpFetcher::with_tls_roots`]; without roots an `https://` URL is an error, never a
//! silent downgrade. Integrity never depends on the transport (everything is signed and
//! hash-bound), only privacy of the private parameters does. HTTPS connections are not pooled:
//! a poll makes a handful of requests per interval.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use trustbus_pki::Certificate;

/// Largest body accepted from a configuration source.
pub const MAX_BODY: usize = 16 * 1024 * 1024;

/// A download result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchResponse {
    /// 304: the `If-None-Match` tag still matches.
    NotModified,
    /// 200 with the body and the `ETag`, if any.
    Ok {
        /// The body.
        body: Vec<u8>,
        /// The `ETag` header.
        etag: Option<String>,
    },
}

/// Something that can GET a URL.
pub trait Fetcher: Send + Sync {
    /// GETs `url`, sending `If-None-Match: etag` when given. Any status other than 200 or 304
    /// is an error.
    fn get(
        &self,
        url: &str,
        etag: Option<&str>,
    ) -> impl Future<Output = Result<FetchResponse, String>> + Send;
}

/// HTTP(S) fetcher with a per-request timeout.
#[derive(Clone)]
pub struct HttpFetcher {
    client: Client<HttpConnector, Empty<Bytes>>,
    timeout: Duration,
    tls: Option<tokio_rustls::TlsConnector>,
}

impl HttpFetcher {
    /// A plain-HTTP fetcher whose requests time out after `timeout` (`https://` URLs fail).
    pub fn new(timeout: Duration) -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
            timeout,
            tls: None,
        }
    }

    /// A fetcher that also speaks HTTPS, trusting server certificates that chain to `roots`
    /// (for example the CA of the central server's HTTPS certificate).
    pub fn with_tls_roots(timeout: Duration, roots: &[Certificate]) -> Result<Self, String> {
        let cfg = trustbus_pki::tls::https_client_config(roots).map_err(|e| e.to_string())?;
        Ok(Self {
            tls: Some(tokio_rustls::TlsConnector::from(cfg)),
            ..Self::new(timeout)
        })
    }

    fn request(url: &str, etag: Option<&str>) -> Result<http::Request<Empty<Bytes>>, String> {
        let mut req = http::Request::get(url);
        if let Some(t) = etag {
            req = req.header(http::header::IF_NONE_MATCH, t);
        }
        req.body(Empty::new()).map_err(|e| e.to_string())
    }

    async fn get_http(&self, url: &str, etag: Option<&str>) -> Result<FetchResponse, String> {
        // A GET is idempotent: retry once when a pooled keep-alive connection turns out to
        // be closed (the server restarted), rather than reporting a failed download.
        let resp = match self.client.request(Self::request(url, etag)?).await {
            Ok(r) => r,
            Err(_) => self
                .client
                .request(Self::request(url, etag)?)
                .await
                .map_err(|e| e.to_string())?,
        };
        read_response(resp).await
    }

    async fn get_https(&self, url: &str, etag: Option<&str>) -> Result<FetchResponse, String> {
        let tls = self.tls.as_ref().ok_or_else(|| {
            format!("{url}: HTTPS is not configured for this fetcher (no root certificates)")
        })?;
        let uri: http::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
        let host = uri
            .host()
            .ok_or_else(|| format!("{url}: no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(443);
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|e| format!("{url}: {e}"))?;
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let stream = tls
            .connect(name, tcp)
            .await
            .map_err(|e| format!("{url}: TLS: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let authority = uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .unwrap_or(host);
        let path = uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "/".into());
        let mut req = Self::request(&path, etag)?;
        req.headers_mut().insert(
            http::header::HOST,
            http::HeaderValue::from_str(&authority).map_err(|e| e.to_string())?,
        );
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        read_response(resp).await
    }
}

async fn read_response(resp: http::Response<Incoming>) -> Result<FetchResponse, String> {
    let status = resp.status();
    if status == http::StatusCode::NOT_MODIFIED {
        return Ok(FetchResponse::NotModified);
    }
    if status != http::StatusCode::OK {
        return Err(format!("HTTP {status}"));
    }
    let etag = resp
        .headers()
        .get(http::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = Limited::new(resp.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes()
        .to_vec();
    Ok(FetchResponse::Ok { body, etag })
}

impl Fetcher for HttpFetcher {
    async fn get(&self, url: &str, etag: Option<&str>) -> Result<FetchResponse, String> {
        let fut = async {
            if url.starts_with("https://") {
                self.get_https(url, etag).await
            } else {
                self.get_http(url, etag).await
            }
        };
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| "timed out".to_string())?
    }
}
