//! What every request handler shares.

use std::sync::Arc;
use std::time::Duration;

use trustbus_central_server::confclient::{ConfClient, Fetcher, GlobalConfiguration};
use trustbus_sdk::FaultDialect;
use trustbus_sdk::fault::{ErrorKind, Fault, Origin};

use crate::config::Config;
use crate::gcview::{GcView, ViewCache};
use crate::httpc::HttpClient;
use crate::identity::Identity;
use crate::logsink::MessageLogSink;
use crate::metrics::Metrics;
use crate::sspool::SsPool;
use crate::verify::VerifyCache;

/// Where the current global configuration comes from.
pub trait ConfSource: Send + Sync {
    /// The current configuration, or `OutdatedGlobalConf`.
    fn current(&self) -> Result<Arc<GlobalConfiguration>, Fault>;
}

impl<F: Fetcher> ConfSource for ConfClient<F> {
    fn current(&self) -> Result<Arc<GlobalConfiguration>, Fault> {
        ConfClient::current(self)
    }
}

/// A fixed configuration (tests); expiry is still enforced.
#[derive(Debug)]
pub struct StaticConf(pub Arc<GlobalConfiguration>);

impl ConfSource for StaticConf {
    fn current(&self) -> Result<Arc<GlobalConfiguration>, Fault> {
        if self.0.is_expired(crate::now()) {
            return Err(Fault::of(
                Origin::ClientProxy,
                ErrorKind::OutdatedGlobalConf,
                "global configuration has expired",
            ));
        }
        Ok(self.0.clone())
    }
}

/// Shared state of the proxies.
pub struct AppState {
    /// Local configuration.
    pub cfg: Arc<Config>,
    /// Own keys and certificates.
    pub identity: Arc<Identity>,
    /// Global configuration.
    pub conf: Arc<dyn ConfSource>,
    /// Indexed view of the current version.
    pub views: ViewCache,
    /// Verification results.
    pub verify_cache: VerifyCache,
    /// The message log.
    pub log: Arc<dyn MessageLogSink>,
    /// Backend and OCSP client.
    pub http: HttpClient,
    /// Connections to other security servers.
    pub pool: SsPool,
    /// Metrics.
    pub metrics: Metrics,
    /// Signatures of recent requests (server proxy).
    pub replay: crate::replay::ReplayGuard,
    /// Per-service backend clients (connect timeout, TLS trust), by service id without version.
    pub backends: std::collections::HashMap<String, BackendClient>,
    /// The auditor API (`crate::auditorapi`), when the server has a durable message log.
    pub auditor: Option<axum::Router>,
}

/// How to reach one backend service.
#[derive(Debug, Clone)]
pub struct BackendClient {
    /// Pooled HTTP client with the service's connect timeout.
    pub http: HttpClient,
    /// TLS trust for `https://` services (an error when `tls_ca` could not be read).
    pub tls: Option<Result<Arc<rustls::ClientConfig>, String>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("server", &self.identity.server)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// Wires the state.
    pub fn new(
        cfg: Arc<Config>,
        identity: Arc<Identity>,
        conf: Arc<dyn ConfSource>,
        log: Arc<dyn MessageLogSink>,
    ) -> Self {
        let connect = Duration::from_millis(cfg.limits.connect_timeout_ms);
        let backends = cfg
            .services
            .iter()
            .map(|s| {
                let tls = s.tls_ca.as_deref().map(|ca| {
                    crate::httpc::backend_tls_config(ca).inspect_err(|e| {
                        tracing::error!(service = %s.id.to_slash(), error = %e, "backend TLS trust unusable");
                    })
                });
                let client = BackendClient {
                    http: HttpClient::new(Duration::from_millis(s.connect_timeout_ms)),
                    tls,
                };
                (s.id.without_version().to_slash(), client)
            })
            .collect();
        let window = i64::try_from(cfg.limits.request_timeout_seconds).unwrap_or(i64::MAX / 2);
        Self {
            replay: crate::replay::ReplayGuard::new(time::Duration::seconds(window)),
            backends,
            http: HttpClient::new(connect),
            pool: SsPool::new(connect),
            cfg,
            identity,
            conf,
            views: ViewCache::default(),
            verify_cache: VerifyCache::new(),
            log,
            metrics: Metrics::new(),
            auditor: None,
        }
    }

    /// The current global configuration view; the fault's origin is `origin`.
    pub fn view(&self, origin: Origin) -> Result<Arc<GcView>, Fault> {
        match self.conf.current() {
            Ok(c) => Ok(self.views.view(c)),
            Err(f) => Err(Fault::of(origin, ErrorKind::OutdatedGlobalConf, f.message)),
        }
    }

    /// The fault code dialect.
    pub fn dialect(&self) -> FaultDialect {
        self.cfg.server.fault_dialect.into()
    }
}
