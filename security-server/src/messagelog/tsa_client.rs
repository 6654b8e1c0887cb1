//! A small RFC 3161 client over HTTP: `POST` a `application/timestamp-query`, read the
//! `application/timestamp-reply`, check the token against the TSA's approved certificate.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use trustbus_pki::DigestAlgorithm;
use trustbus_pki::tsa::{self, MessageImprint, TimeStampRequest, TstInfoView};

/// Largest timestamp reply accepted.
const MAX_REPLY: usize = 256 * 1024;

/// An approved timestamping authority (from global configuration `approved_tsas`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TsaEndpoint {
    /// Its name in global configuration.
    pub name: String,
    /// The RFC 3161 HTTP endpoint.
    pub url: String,
    /// Its certificate (DER); tokens must be signed with it.
    pub cert_der: Vec<u8>,
}

/// Why one TSA did not give a usable token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TsaCallError {
    /// The URL is not a usable `http://` URL.
    #[error("bad TSA URL {0:?}")]
    BadUrl(String),
    /// Connecting, sending or reading failed, or it took too long.
    #[error("TSA unreachable: {0}")]
    Transport(String),
    /// The TSA answered with an HTTP error or the wrong content type.
    #[error("TSA answered HTTP {status} ({content_type})")]
    Http {
        /// HTTP status.
        status: u16,
        /// The response content type.
        content_type: String,
    },
    /// The reply or token was refused (rejection, bad signature, wrong imprint, nonce...).
    #[error("timestamp refused: {0}")]
    Token(String),
}

/// An HTTP client for RFC 3161 TSAs (plain HTTP, as RFC 3161 tokens are signed themselves).
#[derive(Clone)]
pub struct TsaClient {
    client: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
}

impl std::fmt::Debug for TsaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TsaClient")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl TsaClient {
    /// A client whose every call (connect, send, read) must finish within `timeout`.
    pub fn new(timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            timeout,
        }
    }

    /// Gets a token over `digest` (a SHA-256 value, for example a Merkle root) from `tsa` and
    /// verifies it against the TSA's certificate, the imprint and a fresh nonce.
    pub async fn timestamp(
        &self,
        tsa: &TsaEndpoint,
        digest: &[u8],
    ) -> Result<(Vec<u8>, TstInfoView), TsaCallError> {
        let uri: http::Uri = tsa
            .url
            .parse()
            .map_err(|_| TsaCallError::BadUrl(tsa.url.clone()))?;
        if uri.scheme_str() != Some("http") {
            return Err(TsaCallError::BadUrl(tsa.url.clone()));
        }
        let nonce = uuid::Uuid::new_v4().as_bytes()[..8].to_vec();
        let query = TimeStampRequest::new(DigestAlgorithm::Sha256, digest)
            .with_nonce(nonce.clone())
            .to_der()
            .map_err(|e| TsaCallError::Token(e.to_string()))?;
        let req = http::Request::post(uri)
            .header(http::header::CONTENT_TYPE, "application/timestamp-query")
            .body(Full::new(Bytes::from(query)))
            .map_err(|e| TsaCallError::Transport(e.to_string()))?;
        let call = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| TsaCallError::Transport(e.to_string()))?;
            let status = resp.status();
            let content_type = resp
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            if !status.is_success() || content_type != "application/timestamp-reply" {
                return Err(TsaCallError::Http {
                    status: status.as_u16(),
                    content_type,
                });
            }
            let body = Limited::new(resp.into_body(), MAX_REPLY)
                .collect()
                .await
                .map_err(|e| TsaCallError::Transport(e.to_string()))?;
            Ok(body.to_bytes())
        };
        let reply = tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| TsaCallError::Transport("timed out".into()))??;
        let token = tsa::parse_reply(&reply).map_err(|e| TsaCallError::Token(e.to_string()))?;
        let imprint = MessageImprint {
            alg: DigestAlgorithm::Sha256,
            digest: digest.to_vec(),
        };
        let view = tsa::verify_token(&token, &imprint, std::slice::from_ref(&tsa.cert_der))
            .map_err(|e| TsaCallError::Token(e.to_string()))?;
        // The TSA echoes the nonce as an INTEGER: compare without leading zero bytes.
        let trim = |b: &[u8]| {
            b.iter()
                .copied()
                .skip_while(|x| *x == 0)
                .collect::<Vec<_>>()
        };
        if view.nonce.as_deref().map(trim) != Some(trim(&nonce)) {
            return Err(TsaCallError::Token("nonce not echoed".into()));
        }
        Ok((token, view))
    }
}
