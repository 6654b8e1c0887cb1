//! Prometheus metrics (`/metrics` on the admin listener).

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// The server's metrics.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Registry,
    /// Exchanges by side, client, service and outcome (`ok` or the fault code).
    pub requests: IntCounterVec,
    /// Exchange latency by side, seconds.
    pub latency: HistogramVec,
    /// How long an exchange waited for one of its records to be durable in the message log
    /// (handing it over, the journal write and its sync), by side and record, seconds.
    pub log_wait: HistogramVec,
    /// TLS handshakes that failed on the server proxy.
    pub tls_handshake_failures: IntCounter,
    /// Age of the current global configuration, seconds (set on scrape).
    pub globalconf_age: IntGauge,
    /// Age of the stapled OCSP response of the signing certificate, seconds (set on scrape).
    pub ocsp_age: IntGauge,
    /// 1 while exchanges are recorded in the message log, 0 when it is switched off.
    pub message_log_enabled: IntGauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    // The definitions are static and valid; they cannot fail at run time.
    #[allow(clippy::expect_used)]
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "trustbus_ss_requests_total",
                "Exchanges by side, client, service and outcome",
            ),
            &["side", "client", "service", "outcome"],
        )
        .expect("static metric definition");
        let latency = HistogramVec::new(
            HistogramOpts::new("trustbus_ss_request_duration_seconds", "Exchange latency").buckets(
                vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    30.0,
                ],
            ),
            &["side"],
        )
        .expect("static metric definition");
        // Sub-millisecond buckets: a sync on a good disk takes tens of microseconds, and the
        // tail of this wait is what an operator compares with the exchange latency.
        let log_wait = HistogramVec::new(
            HistogramOpts::new(
                "trustbus_ss_message_log_wait_seconds",
                "Time an exchange waited for a record to be durable in the message log",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.1, 1.0,
            ]),
            &["side", "record"],
        )
        .expect("static metric definition");
        let tls_handshake_failures = IntCounter::new(
            "trustbus_ss_tls_handshake_failures_total",
            "Failed TLS handshakes on the server proxy",
        )
        .expect("static metric definition");
        let globalconf_age = IntGauge::new(
            "trustbus_ss_globalconf_age_seconds",
            "Seconds since the current global configuration was generated",
        )
        .expect("static metric definition");
        let ocsp_age = IntGauge::new(
            "trustbus_ss_sign_ocsp_age_seconds",
            "Seconds since thisUpdate of the signing certificate's stapled OCSP response",
        )
        .expect("static metric definition");
        let message_log_enabled = IntGauge::new(
            "trustbus_ss_message_log_enabled",
            "1 if exchanges are recorded in the message log, 0 if it is switched off",
        )
        .expect("static metric definition");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(log_wait.clone()),
            Box::new(tls_handshake_failures.clone()),
            Box::new(globalconf_age.clone()),
            Box::new(ocsp_age.clone()),
            Box::new(message_log_enabled.clone()),
        ] {
            let _ = registry.register(c);
        }
        Self {
            registry,
            requests,
            latency,
            log_wait,
            tls_handshake_failures,
            globalconf_age,
            ocsp_age,
            message_log_enabled,
        }
    }

    /// Counts one exchange.
    pub fn observe(&self, side: &str, client: &str, service: &str, outcome: &str, secs: f64) {
        self.requests
            .with_label_values(&[side, client, service, outcome])
            .inc();
        self.latency.with_label_values(&[side]).observe(secs);
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}
