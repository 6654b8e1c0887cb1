//! Calling services through a security server (feature `client`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), trustbus_sdk::client::BusError> {
//! use trustbus_sdk::client::{BusClient, Method};
//! let client = BusClient::builder("http://127.0.0.1:8080", "DEV/GOV/1234/portal").build()?;
//! let person: serde_json::Value = client
//!     .rest("DEV/GOV/5678/registry/persons", Method::GET, "/persons/EE38001085718")
//!     .user_id("EE38001085718")
//!     .send()
//!     .await?
//!     .json()?;
//! # let _ = person; Ok(()) }
//! ```
//!
//! One call per request; X-Road headers are filled in (a fresh UUID message id unless one is
//! given). Bus faults (REST `X-Road-Error`, SOAP faults with X-Road codes) become
//! [`BusError::Fault`] with code and correlation id; the service's own HTTP errors are ordinary
//! [`RestResponse`]s. Idempotent methods are retried on connect errors and 502/503/504
//! ([`RetryPolicy`]); `POST` and `PATCH` never are. Tests swap the network for a
//! [`MockTransport`].

mod rest;
mod soap;
mod transport;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

pub use http::Method;
pub use rest::{RestCall, RestResponse};
pub use soap::{SoapCall, SoapReply};
pub use transport::{
    HyperTransport, MockTransport, RecordedRequest, Transport, TransportError, TransportErrorKind,
};

use crate::fault::FaultCode;
use crate::id::{ClientId, IdError, ServiceId};
use crate::rest::Headers;
use crate::soap::SoapFault;

/// What can go wrong calling a service.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BusError {
    /// The bus refused or failed the exchange (`X-Road-Error` on REST, a SOAP fault with an
    /// X-Road code). `correlation_id` finds the entry in the security server's log.
    #[error("bus fault {code}: {message} (correlation id {correlation_id:?}, HTTP {http_status})")]
    Fault {
        /// The fault code, for example `Server.ServerProxy.AccessDenied`.
        code: FaultCode,
        /// The message for humans.
        message: String,
        /// The correlation id (REST `detail`, SOAP `faultDetail`).
        correlation_id: String,
        /// The HTTP status the fault came with.
        http_status: u16,
    },
    /// A SOAP service answered with its own fault (not an X-Road code).
    #[error("service fault {}: {}", .0.code, .0.string)]
    ServiceFault(SoapFault),
    /// The service answered with an HTTP error status ([`RestResponse::error_for_status`]).
    #[error("service answered HTTP {status}")]
    Status {
        /// The status.
        status: u16,
        /// The response body.
        body: Bytes,
    },
    /// No response: connection, TLS, timeout or size limit.
    #[error("transport error: {0}")]
    Transport(#[from] TransportError),
    /// The request could not be built (bad identifier, header value, body).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The response could not be understood (garbled SOAP, unknown fault code, bad JSON).
    #[error("invalid response: {0}")]
    InvalidResponse(String),
    /// The client configuration is invalid (URL, PEM).
    #[error("invalid client configuration: {0}")]
    Config(String),
}

impl BusError {
    /// The fault code, for bus faults.
    pub fn fault_code(&self) -> Option<&FaultCode> {
        match self {
            Self::Fault { code, .. } => Some(code),
            _ => None,
        }
    }

    fn from_fault(f: crate::fault::Fault, http_status: u16) -> Self {
        Self::Fault {
            code: f.code,
            message: f.message,
            correlation_id: f.correlation_id,
            http_status,
        }
    }
}

/// When to retry. Only idempotent methods (`GET`, `HEAD`, `PUT`, `DELETE`, `OPTIONS`) are
/// retried, only on connect errors and HTTP 502/503/504, with exponential backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0 disables retrying). Default 2.
    pub max_retries: u32,
    /// Wait before the first retry; doubled each time. Default 200 ms.
    pub initial_backoff: Duration,
    /// Longest wait between attempts. Default 2 s.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 2,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// Never retry.
    pub fn none() -> Self {
        Self {
            max_retries: 0,
            ..Self::default()
        }
    }

    /// The wait before retry number `attempt` (0-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt);
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// Whether `method` may be retried.
pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
    )
}

/// Anything that names a service: its slash form (`DEV/GOV/1234/registry/persons[/v1]`) or a
/// [`ServiceId`].
pub trait IntoServiceId {
    /// The identifier, or why the text is not one.
    fn into_service_id(self) -> Result<ServiceId, IdError>;
}

impl IntoServiceId for &str {
    fn into_service_id(self) -> Result<ServiceId, IdError> {
        ServiceId::from_slash(self)
    }
}
impl IntoServiceId for String {
    fn into_service_id(self) -> Result<ServiceId, IdError> {
        ServiceId::from_slash(&self)
    }
}
impl IntoServiceId for &String {
    fn into_service_id(self) -> Result<ServiceId, IdError> {
        ServiceId::from_slash(self)
    }
}
impl IntoServiceId for ServiceId {
    fn into_service_id(self) -> Result<ServiceId, IdError> {
        Ok(self)
    }
}
impl IntoServiceId for &ServiceId {
    fn into_service_id(self) -> Result<ServiceId, IdError> {
        Ok(self.clone())
    }
}

/// Configures a [`BusClient`].
#[derive(Debug, Clone)]
pub struct BusClientBuilder {
    url: String,
    client_id: String,
    ca_roots_pem: Option<Vec<u8>>,
    client_cert_pem: Option<(Vec<u8>, Vec<u8>)>,
    connect_timeout: Duration,
    timeout: Duration,
    max_response_size: usize,
    retry: RetryPolicy,
}

impl BusClientBuilder {
    /// Trust anchors (PEM, one or more certificates) for an `https` security server URL. There
    /// are no built-in roots: the security server's TLS certificate is the agency's own.
    pub fn ca_roots_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_roots_pem = Some(pem.into());
        self
    }

    /// Presents this client certificate (PEM chain, leaf first) and key (PEM, PKCS#8, SEC1 or
    /// PKCS#1): the "HTTPS with client certificate" mode, the production default.
    pub fn client_certificate_pem(
        mut self,
        chain_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.client_cert_pem = Some((chain_pem.into(), key_pem.into()));
        self
    }

    /// Connect timeout (TCP). Default 10 s.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// Timeout for one attempt, from sending to the last response byte. Default 60 s.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    /// Largest response body accepted. Default 64 MiB.
    pub fn max_response_size(mut self, bytes: usize) -> Self {
        self.max_response_size = bytes;
        self
    }

    /// The retry policy.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// A client over hyper and rustls (ring).
    pub fn build(self) -> Result<BusClient<HyperTransport>, BusError> {
        let tls = self.tls_config()?;
        let transport = HyperTransport::new(
            tls,
            self.connect_timeout,
            self.timeout,
            self.max_response_size,
        );
        self.build_with_transport(transport)
    }

    /// A client over another transport (a [`MockTransport`] in tests). TLS options are ignored.
    pub fn build_with_transport<T: Transport>(
        self,
        transport: T,
    ) -> Result<BusClient<T>, BusError> {
        let client = ClientId::from_slash(&self.client_id)
            .map_err(|e| BusError::Config(format!("client id {:?}: {e}", self.client_id)))?;
        let base = parse_base_url(&self.url)?;
        Ok(BusClient {
            inner: Arc::new(Inner {
                base,
                client,
                retry: self.retry,
                transport,
            }),
        })
    }

    fn tls_config(&self) -> Result<rustls::ClientConfig, BusError> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let cfg = |m: String| BusError::Config(m);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| cfg(e.to_string()))?;
        let mut roots = rustls::RootCertStore::empty();
        if let Some(pem) = &self.ca_roots_pem {
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| cfg(format!("CA roots PEM: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| cfg(format!("CA root certificate: {e}")))?;
            }
            if roots.is_empty() {
                return Err(cfg("CA roots PEM holds no certificate".into()));
            }
        } else if self.url.starts_with("https:") {
            return Err(cfg(
                "an https security server URL needs ca_roots_pem (no built-in roots)".into(),
            ));
        }
        let builder = builder.with_root_certificates(roots);
        match &self.client_cert_pem {
            None => Ok(builder.with_no_client_auth()),
            Some((chain, key)) => {
                let chain = CertificateDer::pem_slice_iter(chain)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| cfg(format!("client certificate PEM: {e}")))?;
                if chain.is_empty() {
                    return Err(cfg("client certificate PEM holds no certificate".into()));
                }
                let key = PrivateKeyDer::from_pem_slice(key)
                    .map_err(|e| cfg(format!("client key PEM: {e}")))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| cfg(format!("client certificate: {e}")))
            }
        }
    }
}

/// `scheme://authority[/base]` without a trailing slash.
fn parse_base_url(url: &str) -> Result<String, BusError> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| BusError::Config(format!("security server URL {url:?}: {e}")))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => {
            return Err(BusError::Config(format!(
                "security server URL {url:?} must start with http:// or https://"
            )));
        }
    }
    if uri.authority().is_none() || uri.query().is_some() {
        return Err(BusError::Config(format!(
            "security server URL {url:?} needs a host and no query"
        )));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

#[derive(Debug)]
struct Inner<T> {
    base: String,
    client: ClientId,
    retry: RetryPolicy,
    transport: T,
}

/// A client subsystem's connection to its security server. Cheap to clone; share one per
/// process.
#[derive(Debug)]
pub struct BusClient<T = HyperTransport> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for BusClient<T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl BusClient<HyperTransport> {
    /// Starts configuring a client for the security server at `security_server_url` (the
    /// client proxy, for example `https://ss.ministry.example:8443`) calling as `client_id`
    /// (slash form, `INSTANCE/CLASS/MEMBER/SUBSYSTEM`).
    pub fn builder(security_server_url: &str, client_id: &str) -> BusClientBuilder {
        BusClientBuilder {
            url: security_server_url.to_owned(),
            client_id: client_id.to_owned(),
            ca_roots_pem: None,
            client_cert_pem: None,
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(60),
            max_response_size: 64 << 20,
            retry: RetryPolicy::default(),
        }
    }
}

impl<T: Transport> BusClient<T> {
    /// The calling client subsystem.
    pub fn client_id(&self) -> &ClientId {
        &self.inner.client
    }

    /// The transport (to inspect a [`MockTransport`] in tests).
    pub fn transport(&self) -> &T {
        &self.inner.transport
    }

    /// Starts a REST call: `method` on `path` (with optional `?query`) of `service`.
    pub fn rest(&self, service: impl IntoServiceId, method: Method, path: &str) -> RestCall<'_, T> {
        RestCall::new(self, service.into_service_id(), method, path)
    }

    /// Starts a SOAP call of `service`.
    pub fn soap(&self, service: impl IntoServiceId) -> SoapCall<'_, T> {
        SoapCall::new(self, service.into_service_id())
    }

    /// Sends with the retry policy; `idempotent` decides whether retries are allowed at all.
    async fn execute(
        &self,
        method: Method,
        uri: http::Uri,
        headers: http::HeaderMap,
        body: Bytes,
    ) -> Result<http::Response<Bytes>, BusError> {
        let retry = self.inner.retry;
        let idempotent = is_idempotent(&method);
        let mut attempt = 0u32;
        loop {
            let mut req = http::Request::new(body.clone());
            *req.method_mut() = method.clone();
            *req.uri_mut() = uri.clone();
            *req.headers_mut() = headers.clone();
            let result = self.inner.transport.send(req).await;
            let retryable = match &result {
                Err(e) => e.kind == TransportErrorKind::Connect,
                Ok(r) => matches!(r.status().as_u16(), 502..=504),
            };
            if !(idempotent && retryable && attempt < retry.max_retries) {
                return result.map_err(BusError::Transport);
            }
            tokio::time::sleep(retry.backoff(attempt)).await;
            attempt += 1;
        }
    }
}

/// Our ordered header view of an `http` header map.
fn header_view(map: &http::HeaderMap) -> Headers<'_> {
    let mut h = Headers::with_capacity(map.len());
    for (k, v) in map {
        h.push(k.as_str(), v.as_bytes());
    }
    h
}

/// Sets a header, refusing names and values HTTP cannot carry.
fn put(map: &mut http::HeaderMap, name: &str, value: &str) -> Result<(), BusError> {
    let n = http::HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| BusError::InvalidRequest(format!("invalid header name {name:?}")))?;
    let v = http::HeaderValue::from_str(value).map_err(|_| {
        BusError::InvalidRequest(format!("{name} value is not a valid header value"))
    })?;
    map.insert(n, v);
    Ok(())
}
