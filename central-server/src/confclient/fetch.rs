//! Downloading: the [`Fetcher`] seam and its HTTP implementation.
//!
//! INTERIM: [`HttpFetcher`] speaks plain HTTP. HTTPS arrives with the pki TLS configuration
//! builders; integrity never depends on the transport (everything is signed), only privacy of
//! the private parameters does.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

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

/// HTTP fetcher with a per-request timeout.
#[derive(Clone)]
pub struct HttpFetcher {
    client: Client<HttpConnector, Empty<Bytes>>,
    timeout: Duration,
}

impl HttpFetcher {
    /// A fetcher whose requests time out after `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
            timeout,
        }
    }
}

impl Fetcher for HttpFetcher {
    async fn get(&self, url: &str, etag: Option<&str>) -> Result<FetchResponse, String> {
        let build = || {
            let mut req = http::Request::get(url);
            if let Some(t) = etag {
                req = req.header(http::header::IF_NONE_MATCH, t);
            }
            req.body(Empty::new()).map_err(|e| e.to_string())
        };
        let req = build()?;
        let fut = async {
            // A GET is idempotent: retry once when a pooled keep-alive connection turns out to
            // be closed (the server restarted), rather than reporting a failed download.
            let resp = match self.client.request(req).await {
                Ok(r) => r,
                Err(_) => self
                    .client
                    .request(build()?)
                    .await
                    .map_err(|e| e.to_string())?,
            };
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
        };
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| "timed out".to_string())?
    }
}
