//! openidconnect's `AsyncHttpClient` over the SDK's [`Transport`] (no reqwest, no redirects).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::OidcError;
use crate::client::{HyperTransport, Transport, TransportError};
use crate::identity::JwksFetcher;

/// HTTP for the OpenID provider: discovery, token endpoint, JWKS. Never follows redirects.
#[derive(Debug)]
pub struct OidcHttpClient<T = HyperTransport> {
    transport: Arc<T>,
}

impl<T> Clone for OidcHttpClient<T> {
    fn clone(&self) -> Self {
        Self {
            transport: self.transport.clone(),
        }
    }
}

impl OidcHttpClient<HyperTransport> {
    /// A client over hyper and rustls (ring) trusting `ca_roots_pem` for `https` providers.
    pub fn new(ca_roots_pem: Option<&[u8]>, timeout: Duration) -> Result<Self, OidcError> {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| OidcError::Config(e.to_string()))?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in ca_roots_pem
            .map(CertificateDer::pem_slice_iter)
            .into_iter()
            .flatten()
        {
            let cert = cert.map_err(|e| OidcError::Config(format!("CA roots PEM: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| OidcError::Config(format!("CA root: {e}")))?;
        }
        let tls = builder.with_root_certificates(roots).with_no_client_auth();
        Ok(Self::with_transport(HyperTransport::new(
            tls,
            timeout,
            timeout,
            4 << 20,
        )))
    }
}

impl<T> OidcHttpClient<T> {
    /// A client over another transport (tests).
    pub fn with_transport(transport: T) -> Self {
        Self {
            transport: Arc::new(transport),
        }
    }

    /// The transport.
    pub fn transport(&self) -> &T {
        &self.transport
    }
}

impl<'c, T: Transport> openidconnect::AsyncHttpClient<'c> for OidcHttpClient<T> {
    type Error = TransportError;
    type Future = Pin<
        Box<dyn Future<Output = Result<openidconnect::HttpResponse, TransportError>> + Send + 'c>,
    >;

    fn call(&'c self, request: openidconnect::HttpRequest) -> Self::Future {
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let response = self
                .transport
                .send(http::Request::from_parts(parts, Bytes::from(body)))
                .await?;
            let (parts, body) = response.into_parts();
            Ok(http::Response::from_parts(parts, body.to_vec()))
        })
    }
}

impl<T: Transport> JwksFetcher for OidcHttpClient<T> {
    fn fetch_jwks(&self, url: &str) -> impl Future<Output = Result<Vec<u8>, String>> + Send {
        let request = http::Request::get(url)
            .header(
                http::header::ACCEPT,
                "application/json, application/jwk-set+json",
            )
            .body(Bytes::new())
            .map_err(|e| format!("JWKS URL {url:?}: {e}"));
        async move {
            let response = self
                .transport
                .send(request?)
                .await
                .map_err(|e| e.to_string())?;
            if response.status() != http::StatusCode::OK {
                return Err(format!("JWKS endpoint answered HTTP {}", response.status()));
            }
            Ok(response.into_body().to_vec())
        }
    }
}
