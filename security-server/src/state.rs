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
use crate::logsink::{LogEntry, LogFailed, MessageLogSink, Side};
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
    /// Local configuration and what is built from it; the admin API swaps it whole, so every
    /// request sees one consistent version (take it once per request with [`AppState::cfg`]).
    live: std::sync::RwLock<Arc<Live>>,
    /// The configuration file admin API changes are written to (none: changes refused).
    pub config_file: Option<crate::confstore::ConfigFile>,
    /// Own keys and certificates; swapped whole when a new certificate is imported (take it
    /// once per request with [`AppState::identity`]).
    identity: std::sync::RwLock<Arc<Identity>>,
    /// The token and certificate files with the PIN, for key generation and certificate import
    /// through the admin API (none: those routes answer 503).
    pub keys: Option<crate::keystore::KeyStore>,
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
    /// End users' ID tokens: verifier and key-set cache (its settings are read at start).
    pub citizen: crate::citizen::CitizenVerifier,
    /// The auditor API (`crate::auditorapi`), when the server has a durable message log.
    pub auditor: Option<axum::Router>,
}

/// One version of the local configuration with the backend clients made for its services.
struct Live {
    cfg: Arc<Config>,
    /// Per-service backend clients (connect timeout, TLS trust), by service id without version.
    backends: std::collections::HashMap<String, BackendClient>,
}

/// How to reach one backend service.
#[derive(Debug, Clone)]
pub struct BackendClient {
    /// Pooled HTTP client with the service's connect timeout.
    pub http: HttpClient,
    /// Pooled client for `https://` services, trusting `tls_ca` (an error when it could not
    /// be read).
    pub tls: Option<Result<crate::httpc::HttpsClient, String>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("server", &self.identity().server)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// Hands `entry` to the message log and waits until it is durable, recording the wait in
    /// `trustbus_ss_message_log_wait_seconds`.
    pub async fn log_durably(&self, entry: LogEntry) -> Result<(), LogFailed> {
        let side = match entry.side {
            Side::Consumer => "consumer",
            Side::Provider => "provider",
        };
        let record = match entry.direction {
            crate::transport::Direction::Request => "request",
            crate::transport::Direction::Response => "response",
        };
        let started = std::time::Instant::now();
        let logged = self.log.log(entry).await;
        self.metrics
            .log_wait
            .with_label_values(&[side, record])
            .observe(started.elapsed().as_secs_f64());
        logged
    }

    /// Wires the state.
    pub fn new(
        cfg: Arc<Config>,
        identity: Arc<Identity>,
        conf: Arc<dyn ConfSource>,
        log: Arc<dyn MessageLogSink>,
    ) -> Self {
        let connect = Duration::from_millis(cfg.limits.connect_timeout_ms);
        let backends = backend_clients(&cfg, None);
        let window = i64::try_from(cfg.limits.request_timeout_seconds).unwrap_or(i64::MAX / 2);
        let metrics = Metrics::new();
        metrics.message_log_enabled.set(i64::from(log.recording()));
        Self {
            replay: crate::replay::ReplayGuard::new(time::Duration::seconds(window)),
            citizen: crate::citizen::CitizenVerifier::new(&cfg.end_user_identity, connect),
            live: std::sync::RwLock::new(Arc::new(Live { cfg, backends })),
            config_file: None,
            http: HttpClient::new(connect),
            pool: SsPool::new(connect),
            identity: std::sync::RwLock::new(identity),
            keys: None,
            conf,
            views: ViewCache::default(),
            verify_cache: VerifyCache::new(),
            log,
            metrics,
            auditor: None,
        }
    }

    /// Persists admin API changes to `file` (the file the configuration was loaded from).
    pub fn with_config_file(mut self, file: crate::confstore::ConfigFile) -> Self {
        self.config_file = Some(file);
        self
    }

    /// Keys and certificate files the admin API may manage (see [`crate::keystore`]).
    pub fn with_keys(mut self, keys: crate::keystore::KeyStore) -> Self {
        self.keys = Some(keys);
        self
    }

    /// The current identity: own keys and certificates.
    pub fn identity(&self) -> Arc<Identity> {
        self.identity
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Makes `identity` the one every new message is signed with.
    pub fn replace_identity(&self, identity: Arc<Identity>) {
        *self
            .identity
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = identity;
    }

    /// The current local configuration.
    pub fn cfg(&self) -> Arc<Config> {
        self.live
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .cfg
            .clone()
    }

    /// The backend client of service `id` (version ignored) in the current configuration.
    pub fn backend(&self, id: &trustbus_sdk::id::ServiceId) -> Option<BackendClient> {
        self.live
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .backends
            .get(&id.to_slash_without_version())
            .cloned()
    }

    /// Makes `cfg` the current configuration at once for every new request. Backend clients
    /// of services whose connection settings did not change are kept, with their pooled
    /// connections. Only the clients, services, access rights and local groups take effect
    /// this way; listeners and limits keep the values they started with.
    pub fn replace_config(&self, cfg: Config) {
        let mut live = self
            .live
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let backends = backend_clients(&cfg, Some(&live));
        *live = Arc::new(Live {
            cfg: Arc::new(cfg),
            backends,
        });
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
        self.cfg().server.fault_dialect.into()
    }
}

/// Backend clients for the services of `cfg`, reusing those of `old` where the service's
/// connect timeout and TLS trust file are unchanged.
fn backend_clients(
    cfg: &Config,
    old: Option<&Live>,
) -> std::collections::HashMap<String, BackendClient> {
    cfg.services
        .iter()
        .map(|s| {
            let key = s.id.to_slash_without_version();
            let reusable = old.and_then(|o| {
                let prev = o.cfg.service(&s.id)?;
                (prev.connect_timeout_ms == s.connect_timeout_ms && prev.tls_ca == s.tls_ca)
                    .then(|| o.backends.get(&key).cloned())
                    .flatten()
            });
            let client = reusable.unwrap_or_else(|| {
                let connect = Duration::from_millis(s.connect_timeout_ms);
                let tls = s.tls_ca.as_deref().map(|ca| {
                    crate::httpc::backend_tls_config(ca)
                        .map(|tls| crate::httpc::HttpsClient::new(tls, connect))
                        .inspect_err(|e| {
                            tracing::error!(service = %s.id.to_slash(), error = %e, "backend TLS trust unusable");
                        })
                });
                BackendClient {
                    http: HttpClient::new(Duration::from_millis(s.connect_timeout_ms)),
                    tls,
                }
            });
            (key, client)
        })
        .collect()
}
