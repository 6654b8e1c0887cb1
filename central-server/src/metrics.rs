//! Prometheus metrics (`GET /metrics`, text exposition format).

use std::sync::LazyLock;

use prometheus::{Encoder, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

/// The central server's metrics.
pub struct Metrics {
    registry: Registry,
    /// Current published configuration version.
    pub globalconf_version: IntGauge,
    /// Configuration versions generated since start.
    pub globalconf_generations: IntCounter,
    /// Management requests received, by type and outcome.
    pub management_requests: IntCounterVec,
    /// Admin API actions, by result code.
    pub admin_actions: IntCounterVec,
    /// Global configuration downloads, by endpoint and status.
    pub globalconf_downloads: IntCounterVec,
    /// TLS handshakes refused or timed out, by listener.
    pub tls_handshake_failures: IntCounterVec,
}

impl Metrics {
    fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let globalconf_version = IntGauge::new(
            "trustbus_central_globalconf_version",
            "Version of the global configuration currently published",
        )?;
        let globalconf_generations = IntCounter::new(
            "trustbus_central_globalconf_generations_total",
            "Global configuration versions generated and signed since start",
        )?;
        let management_requests = IntCounterVec::new(
            Opts::new(
                "trustbus_central_management_requests_total",
                "Management requests received, by type and outcome",
            ),
            &["type", "outcome"],
        )?;
        let admin_actions = IntCounterVec::new(
            Opts::new(
                "trustbus_central_admin_actions_total",
                "Admin API actions, by result (ok or error code)",
            ),
            &["result"],
        )?;
        let globalconf_downloads = IntCounterVec::new(
            Opts::new(
                "trustbus_central_globalconf_downloads_total",
                "Global configuration downloads, by resource and HTTP status",
            ),
            &["resource", "status"],
        )?;
        let tls_handshake_failures = IntCounterVec::new(
            Opts::new(
                "trustbus_central_tls_handshake_failures_total",
                "TLS handshakes refused (for example an untrusted client certificate) or timed out, by listener",
            ),
            &["listener"],
        )?;
        registry.register(Box::new(tls_handshake_failures.clone()))?;
        registry.register(Box::new(globalconf_version.clone()))?;
        registry.register(Box::new(globalconf_generations.clone()))?;
        registry.register(Box::new(management_requests.clone()))?;
        registry.register(Box::new(admin_actions.clone()))?;
        registry.register(Box::new(globalconf_downloads.clone()))?;
        Ok(Self {
            registry,
            globalconf_version,
            globalconf_generations,
            management_requests,
            admin_actions,
            globalconf_downloads,
            tls_handshake_failures,
        })
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .is_err()
        {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// The process-wide metrics; `None` only if a metric definition were invalid.
pub static METRICS: LazyLock<Option<Metrics>> = LazyLock::new(|| Metrics::new().ok());

/// Runs `f` on the metrics if they exist.
pub fn with(f: impl FnOnce(&Metrics)) {
    if let Some(m) = METRICS.as_ref() {
        f(m);
    }
}

/// The text exposition (empty if metrics are unavailable).
pub fn render() -> String {
    METRICS.as_ref().map(Metrics::render).unwrap_or_default()
}
