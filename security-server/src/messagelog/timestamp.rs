//! Batch timestamping of the message log, and the fail-closed admission check.
//!
//! Every interval the [`Timestamper`] takes the records not yet timestamped (in id order, from
//! the store), builds a Merkle tree over their entry hashes (the last leaf is the chain head the
//! batch covers), gets one RFC 3161 token over the root from the first approved TSA that
//! answers, and stores the token and each record's inclusion proof. If no token can be obtained
//! for longer than the failure window, [`AdmissionGuard::admission`] refuses new exchanges with
//! `…LoggingFailed.TimestamperFailed` until a batch succeeds again (X-Road's behaviour; see
//! `docs/message-log.md` §11).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;
use trustbus_pki::DigestAlgorithm;
use trustbus_pki::merkle::{MerkleError, MerkleTree};
use trustbus_sdk::fault::{ErrorKind, Fault, FaultCode, Origin};

use super::record::RecordId;
use super::store::{LogStore, StoreError};
use super::tsa_client::{TsaCallError, TsaClient, TsaEndpoint};

/// One token per interval over all pending records, or one per record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimestampMode {
    /// One TSA call per interval over a Merkle root (the default).
    #[default]
    Batch,
    /// One TSA call per record (a tree of one leaf), for deployments that want it.
    PerMessage,
}

/// Settings of the timestamper.
#[derive(Debug, Clone)]
pub struct TimestampConfig {
    /// Approved TSAs, tried in this order.
    pub tsas: Vec<TsaEndpoint>,
    /// How often pending records are timestamped (global configuration
    /// `timestamping_interval_seconds`, default 60 s).
    pub interval: Duration,
    /// How long timestamping may fail before new exchanges are refused (default 10 min).
    pub failure_window: Duration,
    /// Batch or per-message.
    pub mode: TimestampMode,
    /// Most records under one token (default 10,000).
    pub max_batch: usize,
    /// Time limit for one TSA call (default 10 s).
    pub request_timeout: Duration,
    /// First retry delay after a failure; doubles up to `interval` (default 1 s).
    pub retry_base: Duration,
}

impl TimestampConfig {
    /// Defaults around the given TSAs and interval.
    pub fn new(tsas: Vec<TsaEndpoint>, interval: Duration) -> Self {
        Self {
            tsas,
            interval,
            failure_window: Duration::from_secs(600),
            mode: TimestampMode::Batch,
            max_batch: 10_000,
            request_timeout: Duration::from_secs(10),
            retry_base: Duration::from_secs(1),
        }
    }

    /// Defaults with the approved TSAs and interval of a global configuration.
    pub fn from_conf(conf: &super::verifyconf::VerificationConf) -> Self {
        Self::new(
            conf.tsas.clone(),
            Duration::from_secs(conf.timestamping_interval_seconds.max(1)),
        )
    }
}

/// Why a timestamping round failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TimestampError {
    /// No TSA is configured.
    #[error("no approved TSA configured")]
    NoTsa,
    /// Every TSA failed; the reasons in order.
    #[error("no TSA gave a token: {}", .0.iter().map(|(n, e)| format!("{n}: {e}")).collect::<Vec<_>>().join("; "))]
    AllFailed(Vec<(String, TsaCallError)>),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The Merkle tree could not be built.
    #[error(transparent)]
    Merkle(#[from] MerkleError),
}

/// What the exchange path asks before acknowledging an exchange.
#[derive(Debug)]
pub struct AdmissionGuard {
    window: Duration,
    state: Mutex<GuardState>,
}

#[derive(Debug, Default, Clone)]
struct GuardState {
    failing_since: Option<OffsetDateTime>,
    last_error: Option<String>,
    last_success: Option<OffsetDateTime>,
}

/// The timestamper's health, for `/healthz`, metrics and the auditor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimestampStatus {
    /// When the current run of failures began, if failing.
    pub failing_since: Option<OffsetDateTime>,
    /// The last failure's reason.
    pub last_error: Option<String>,
    /// The last successful round.
    pub last_success: Option<OffsetDateTime>,
}

impl AdmissionGuard {
    /// A guard that refuses once timestamping has failed for longer than `window`.
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            state: Mutex::new(GuardState::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GuardState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a successful round: exchanges are admitted again.
    pub fn succeeded(&self, at: OffsetDateTime) {
        let mut s = self.lock();
        s.failing_since = None;
        s.last_success = Some(at);
    }

    /// Records a failed round (the failure window starts at the first one).
    pub fn failed(&self, at: OffsetDateTime, error: &str) {
        let mut s = self.lock();
        s.failing_since.get_or_insert(at);
        s.last_error = Some(error.to_owned());
    }

    /// The current status.
    pub fn status(&self) -> TimestampStatus {
        let s = self.lock().clone();
        TimestampStatus {
            failing_since: s.failing_since,
            last_error: s.last_error,
            last_success: s.last_success,
        }
    }

    /// `Ok` while exchanges may be accepted; otherwise the fault to answer with,
    /// `Server.ClientProxy.LoggingFailed.TimestamperFailed` (consumer side, `origin` =
    /// [`Origin::ClientProxy`]) or `Server.ServerProxy.LoggingFailed.TimestamperFailed`.
    pub fn admission(&self, origin: Origin) -> Result<(), Fault> {
        self.admission_at(origin, OffsetDateTime::now_utc())
    }

    /// [`Self::admission`] at a given time.
    pub fn admission_at(&self, origin: Origin, now: OffsetDateTime) -> Result<(), Fault> {
        let s = self.lock();
        let Some(since) = s.failing_since else {
            return Ok(());
        };
        if now - since <= self.window {
            return Ok(());
        }
        Err(Fault::new(
            FaultCode::new(origin, ErrorKind::LoggingFailed)
                .caused_by(ErrorKind::TimestamperFailed),
            format!(
                "message log timestamping has failed since {since} (longer than {} s): {}",
                self.window.as_secs(),
                s.last_error.as_deref().unwrap_or("unknown error")
            ),
        ))
    }
}

/// Takes pending records, timestamps them and stores tokens and proofs.
pub struct Timestamper {
    store: Arc<dyn LogStore>,
    // Replaced when global configuration changes the TSAs or the interval.
    config: std::sync::RwLock<TimestampConfig>,
    client: TsaClient,
    guard: Arc<AdmissionGuard>,
    // One round at a time (the driver and an on-demand `run_once` must not interleave).
    round: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Timestamper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timestamper")
            .field("config", &*self.config())
            .field("guard", &self.guard)
            .finish_non_exhaustive()
    }
}

impl Timestamper {
    /// A timestamper over `store` (the message log's, `MessageLog::store()`).
    pub fn new(store: Arc<dyn LogStore>, config: TimestampConfig) -> Self {
        Self {
            client: TsaClient::new(config.request_timeout),
            guard: Arc::new(AdmissionGuard::new(config.failure_window)),
            store,
            config: std::sync::RwLock::new(config),
            round: tokio::sync::Mutex::new(()),
        }
    }

    fn config(&self) -> std::sync::RwLockReadGuard<'_, TimestampConfig> {
        self.config.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the TSAs, interval and mode (for example after a new global configuration);
    /// the next round uses them. The failure window of the guard stays as it was.
    pub fn set_config(&self, config: TimestampConfig) {
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = config;
    }

    /// The guard the exchange path checks.
    pub fn guard(&self) -> Arc<AdmissionGuard> {
        self.guard.clone()
    }

    /// Timestamps every pending record now (several batches if there are more than
    /// `max_batch`); returns how many records were timestamped. Updates the guard.
    pub async fn run_once(&self) -> Result<usize, TimestampError> {
        let _round = self.round.lock().await;
        let result = self.stamp_pending().await;
        match &result {
            Ok(_) => self.guard.succeeded(OffsetDateTime::now_utc()),
            Err(e) => {
                tracing::warn!(error = %e, "message log timestamping failed");
                self.guard.failed(OffsetDateTime::now_utc(), &e.to_string());
            }
        }
        result
    }

    async fn stamp_pending(&self) -> Result<usize, TimestampError> {
        let (mode, max_batch) = {
            let c = self.config();
            (c.mode, c.max_batch)
        };
        let chunk = match mode {
            TimestampMode::Batch => max_batch.max(1),
            TimestampMode::PerMessage => 1,
        };
        let mut total = 0;
        loop {
            let progress = self.store.timestamp_progress()?;
            let from = progress.map_or(RecordId(1), |(_, id)| id.next());
            let records = self.store.hashes(from, chunk)?;
            if records.is_empty() {
                return Ok(total);
            }
            let leaves: Vec<Vec<u8>> = records.iter().map(|(_, h)| h.0.to_vec()).collect();
            let tree = MerkleTree::new(DigestAlgorithm::Sha256, &leaves)?;
            let token = self.token(tree.root()).await?;
            let batch = progress.map_or(1, |(b, _)| b + 1);
            self.store.set_timestamp_batch(batch, &token, &records)?;
            total += records.len();
            tracing::debug!(
                batch,
                records = records.len(),
                "message log batch timestamped"
            );
        }
    }

    async fn token(&self, root: &[u8]) -> Result<Vec<u8>, TimestampError> {
        let tsas = self.config().tsas.clone();
        if tsas.is_empty() {
            return Err(TimestampError::NoTsa);
        }
        let mut errors = Vec::new();
        for tsa in &tsas {
            match self.client.timestamp(tsa, root).await {
                Ok((token, _)) => return Ok(token),
                Err(e) => errors.push((tsa.name.clone(), e)),
            }
        }
        Err(TimestampError::AllFailed(errors))
    }

    /// Runs rounds every `interval` until the task is aborted; after a failure retries sooner,
    /// from `retry_base` doubling up to `interval`.
    pub fn spawn(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut delay = me.config().interval;
            let mut failures: u32 = 0;
            loop {
                tokio::time::sleep(delay).await;
                match me.run_once().await {
                    Ok(_) => {
                        failures = 0;
                        delay = me.config().interval;
                    }
                    Err(_) => {
                        failures = failures.saturating_add(1);
                        let (retry_base, interval) = {
                            let c = me.config();
                            (c.retry_base, c.interval)
                        };
                        let backoff =
                            retry_base.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
                        delay = backoff.min(interval);
                    }
                }
            }
        })
    }
}
