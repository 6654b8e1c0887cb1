//! The message log: every request and response this server sends or receives, durably recorded,
//! hash-chained and queryable (ARCHITECTURE.md §6; format and guarantees in
//! `docs/message-log.md`).
//!
//! - [`record`]: the immutable record and its canonical binary encoding;
//! - [`journal`]: append-only segment files written under group commit (the durable copy);
//! - [`chain`]: the hash chain and [`verify_chain`] (what `trustbus verify-log` calls);
//! - [`store`]: the [`LogStore`] trait and its sled implementation with query indexes (a derived
//!   copy, rebuilt from the journal);
//! - [`replay`]: start-up recovery;
//! - [`exchange`], [`dataobjects`]: what the exchange path hands over and the payload encoding;
//! - [`timestamp`], [`tsa_client`]: batch timestamping and the fail-closed admission guard;
//! - [`evidence`], [`verify`], [`verifyconf`]: evidence containers and their offline verifier;
//! - [`archive`]: signed, hash-linked archive files; [`auditor`], [`audittrail`]: the auditor
//!   API and the trail of auditor queries; [`zipfile`]: plain stored zips.
//!
//! The exchange path holds a [`MessageLog`] and calls [`MessageLog::append`]: it returns once the
//! record is in the journal and covered by an `fdatasync` (with [`Durability::Sync`]).

pub mod archive;
pub mod auditor;
pub mod audittrail;
pub mod chain;
pub mod dataobjects;
pub mod evidence;
pub mod exchange;
pub mod journal;
pub mod postings;
pub mod record;
pub mod replay;
pub mod runs;
pub mod settings;
pub mod store;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod timestamp;
pub mod tsa_client;
pub mod verify;
pub mod verifyconf;
pub mod zipfile;

pub use chain::{
    ChainError, ChainHash, ChainHead, ChainReport, Location, TornTail, verify_chain,
    verify_chain_from,
};
pub use journal::Durability;
pub use record::{
    LogRecord, MessageKind, NewRecord, Outcome, PayloadKey, RecordError, RecordId, RecordMeta,
    StoredPayload, UserRef,
};
pub use replay::{RecoveryReport, parse_head};
pub use store::{
    Cursor, IndexedRecord, LogStore, Query, QueryFilter, QueryPage, RawRecord, RecordBody,
    SledStore, StoreError, TimestampInfo,
};

use journal::{Pending, WriterConfig, WriterMsg, WriterShared};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use tokio::sync::{oneshot, watch};

/// How many synced batches may wait for the background indexer before the writer waits.
/// (The indexer sleeps up to `INDEX_PASS_INTERVAL` between passes; at one synced batch per
/// 0.1 ms that is 200 batches.)
const INDEX_QUEUE_BATCHES: usize = 1024;

/// Errors of the message log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// A file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A journal write or sync failed earlier; the log refuses appends until restarted
    /// (after an fdatasync error the page cache state is unknown, so retrying is not safe).
    #[error("message log failed: a journal write or sync failed; restart required")]
    Failed,
    /// The log was shut down.
    #[error("message log is closed")]
    Closed,
    /// The record could not be encoded or its payload encrypted.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The synced part of the journal is damaged: refusing to start.
    #[error("journal damaged, refusing to start: {0}")]
    Chain(#[from] ChainError),
    /// The store holds records the journal does not: the journal was lost or rolled back.
    #[error(
        "journal ends at record {journal_last} but the store holds record {store_last}; refusing to start"
    )]
    JournalBehindStore {
        /// The journal's last record (0: none).
        journal_last: RecordId,
        /// The store's last record.
        store_last: RecordId,
    },
    /// The store's hash for a record differs from the journal's.
    #[error(
        "record {id}: store hash {store} differs from journal hash {journal}; refusing to start"
    )]
    StoreMismatch {
        /// The record.
        id: RecordId,
        /// The hash in the store.
        store: ChainHash,
        /// The hash in the journal.
        journal: ChainHash,
    },
}

/// When the query store is updated relative to the acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IndexUpdate {
    /// A separate thread inserts committed records into the store right after the sync; the ack
    /// does not wait (queries see a record a moment later; see [`MessageLog::wait_indexed`]).
    #[default]
    Background,
    /// The writer inserts the batch into the store after the sync and before the acks (read your
    /// writes, at the cost of the sled insert on the commit path). With `Durability::Relaxed` the
    /// store is still updated only after the sync.
    BeforeAck,
}

/// A record queued by [`MessageLog::enqueue`], not yet known to be durable.
#[must_use = "a queued record is acknowledged only once it is durable"]
pub struct Queued {
    rx: oneshot::Receiver<Result<RecordId, LogError>>,
    shared: Arc<WriterShared>,
    /// For a deferred record: where to ask for the sync.
    flush: Option<mpsc::Sender<WriterMsg>>,
}

impl Queued {
    /// Waits until the log acknowledges the record as [`MessageLog::append`] would (with
    /// `Durability::Sync`: the fdatasync covering it and every record before it returned).
    pub async fn durable(mut self) -> Result<RecordId, LogError> {
        if let Some(flush) = &self.flush {
            match self.rx.try_recv() {
                Ok(r) => return r,
                Err(oneshot::error::TryRecvError::Empty) => {
                    let _ = flush.send(WriterMsg::Flush);
                }
                Err(oneshot::error::TryRecvError::Closed) => {
                    return Err(closed_error(&self.shared));
                }
            }
        }
        self.rx.await.map_err(|_| closed_error(&self.shared))?
    }
}

fn closed_error(shared: &WriterShared) -> LogError {
    if shared.failed.load(Ordering::SeqCst) {
        LogError::Failed
    } else {
        LogError::Closed
    }
}

/// Settings of a message log.
#[derive(Debug, Clone)]
pub struct MessageLogConfig {
    /// Directory holding `journal/` and `index/` (the sled store).
    pub dir: PathBuf,
    /// When appends are acknowledged.
    pub durability: Durability,
    /// Segment rollover size in bytes.
    pub segment_size: u64,
    /// Largest group-commit batch.
    pub max_batch: usize,
    /// When the store is updated.
    pub index_update: IndexUpdate,
    /// Encrypts payloads at rest when set.
    pub payload_key: Option<Arc<PayloadKey>>,
}

impl MessageLogConfig {
    /// Defaults: `Durability::Sync`, 64 MiB segments, batches of up to 256, background indexing,
    /// no payload encryption.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            durability: Durability::Sync,
            segment_size: journal::DEFAULT_SEGMENT_SIZE,
            max_batch: journal::DEFAULT_MAX_BATCH,
            index_update: IndexUpdate::Background,
            payload_key: None,
        }
    }
}

/// How often the store is asked to write its buffers (sled's own flusher thread is off). This
/// bounds how much journal a restart replays, not what is durable.
const STORE_FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

/// The handle the exchange path uses. Share it with `Arc`.
pub struct MessageLog {
    tx: mpsc::Sender<WriterMsg>,
    shared: Arc<WriterShared>,
    store: Arc<dyn LogStore>,
    indexed: watch::Receiver<u64>,
    index_failed: Arc<AtomicBool>,
    payload_key: Option<Arc<PayloadKey>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    recovery: RecoveryReport,
}

impl std::fmt::Debug for MessageLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageLog")
            .field("head", &self.chain_head())
            .field("indexed_through", &self.indexed_through())
            .finish_non_exhaustive()
    }
}

impl MessageLog {
    /// Opens the log in `config.dir` with a sled store in `dir/index`, recovering from the journal.
    /// Blocking (file I/O): call it before serving or from `spawn_blocking`.
    pub fn open(config: MessageLogConfig) -> Result<Self, LogError> {
        let store = SledStore::open_with_journal(
            &config.dir.join("index"),
            &journal::journal_dir(&config.dir),
        )?;
        Self::open_with_store(config, Arc::new(store))
    }

    /// Opens the log with another [`LogStore`] implementation.
    pub fn open_with_store(
        config: MessageLogConfig,
        store: Arc<dyn LogStore>,
    ) -> Result<Self, LogError> {
        let (writer, recovery) = replay::recover(&config.dir, store.as_ref(), config.segment_size)?;
        let head = recovery.journal_head;
        let shared = Arc::new(WriterShared {
            durable_head: Mutex::new(head),
            failed: AtomicBool::new(false),
        });
        let (indexed_tx, indexed) = watch::channel(head.last_id.0);
        let index_failed = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();

        let sink: journal::CommitSink = match config.index_update {
            IndexUpdate::BeforeAck => {
                let store = store.clone();
                let failed = index_failed.clone();
                let mut last_flush = std::time::Instant::now();
                Box::new(move |batch: Vec<IndexedRecord>| {
                    index_into(store.as_ref(), &batch, &failed, &indexed_tx);
                    if last_flush.elapsed() >= STORE_FLUSH_INTERVAL {
                        let _ = store.flush();
                        last_flush = std::time::Instant::now();
                    }
                })
            }
            IndexUpdate::Background => {
                // Bounded: when sled falls behind, the writer thread waits here instead of
                // queueing synced batches in memory without limit (backpressure on appends).
                let (itx, irx) = mpsc::sync_channel::<Vec<IndexedRecord>>(INDEX_QUEUE_BATCHES);
                let store = store.clone();
                let failed = index_failed.clone();
                let h = std::thread::Builder::new()
                    .name("msglog-indexer".into())
                    .spawn(move || {
                        let mut last_flush = std::time::Instant::now();
                        let mut last_pass = None;
                        while let Ok(mut batch) = irx.recv() {
                            gather_index_batch(&irx, &mut batch, last_pass);
                            index_into(store.as_ref(), &batch, &failed, &indexed_tx);
                            // After a full pass more is likely queued: no pause before the next.
                            last_pass =
                                (batch.len() < INDEX_PASS_MAX).then(std::time::Instant::now);
                            if last_flush.elapsed() >= STORE_FLUSH_INTERVAL {
                                let _ = store.flush();
                                last_flush = std::time::Instant::now();
                            }
                        }
                    })
                    .map_err(|source| LogError::Io {
                        context: "spawn the message-log indexer thread".into(),
                        source,
                    })?;
                threads.push(h);
                Box::new(move |batch: Vec<IndexedRecord>| {
                    let _ = itx.send(batch);
                })
            }
        };

        let (tx, rx) = mpsc::channel();
        let cfg = WriterConfig {
            durability: config.durability,
            max_batch: config.max_batch,
        };
        let wshared = shared.clone();
        let h = std::thread::Builder::new()
            .name("msglog-writer".into())
            .spawn(move || journal::run_writer(writer, rx, cfg, wshared, sink))
            .map_err(|source| LogError::Io {
                context: "spawn the message-log writer thread".into(),
                source,
            })?;
        threads.insert(0, h);
        Ok(Self {
            tx,
            shared,
            store,
            indexed,
            index_failed,
            payload_key: config.payload_key,
            threads: Mutex::new(threads),
            recovery,
        })
    }

    /// Appends a record; resolves with its id once the record is durable (per the configured
    /// [`Durability`]). The payload is encrypted here when a payload key is configured.
    pub async fn append(&self, record: NewRecord) -> Result<RecordId, LogError> {
        self.enqueue(record)?.durable().await
    }

    /// Encodes `record` and queues it for the writer at once (queue order is journal order);
    /// the returned [`Queued`] resolves once the record is durable. Lets a caller overlap the
    /// sync with other work, as long as it waits before acknowledging anything.
    pub fn enqueue(&self, record: NewRecord) -> Result<Queued, LogError> {
        self.queue(record, false)
    }

    /// Like [`MessageLog::enqueue`], but the record is not synced on its own account: the sync
    /// of a later record covers it (the journal is in order), or at the latest one 20 ms later.
    /// Waiting on the returned [`Queued`] asks for a sync if none has covered it yet. For a
    /// record whose exchange always ends with another record or with that wait (the consumer's
    /// request), this saves one fdatasync per exchange.
    pub fn enqueue_deferred(&self, record: NewRecord) -> Result<Queued, LogError> {
        self.queue(record, true)
    }

    fn queue(&self, record: NewRecord, defer: bool) -> Result<Queued, LogError> {
        if self.shared.failed.load(Ordering::SeqCst) {
            return Err(LogError::Failed);
        }
        let NewRecord {
            mut meta,
            payload,
            manifest,
            signature,
            ocsp_response,
        } = record;
        meta.payload_size = payload.len() as u64;
        let payload = match &self.payload_key {
            Some(k) => k.seal(&meta, payload)?,
            None => StoredPayload::Plain(payload),
        };
        let bytes = record::encode_parts(
            RecordId(0),
            &meta,
            &payload,
            &manifest,
            &signature,
            &ocsp_response,
        )?;
        let (ack, rx) = oneshot::channel();
        self.tx
            .send(WriterMsg::Append(Box::new(Pending {
                bytes,
                meta,
                ack,
                defer,
            })))
            .map_err(|_| closed_error(&self.shared))?;
        Ok(Queued {
            rx,
            shared: self.shared.clone(),
            flush: defer.then(|| self.tx.clone()),
        })
    }

    /// The durable chain head: the last record covered by a completed fdatasync and its entry
    /// hash. This is what a timestamp batch covers.
    pub fn chain_head(&self) -> ChainHead {
        self.shared
            .durable_head
            .lock()
            .map(|h| *h)
            .unwrap_or(ChainHead::EMPTY)
    }

    /// The query store.
    pub fn store(&self) -> &Arc<dyn LogStore> {
        &self.store
    }

    /// The highest record id inserted into the store so far.
    pub fn indexed_through(&self) -> RecordId {
        RecordId(*self.indexed.borrow())
    }

    /// Waits until the store holds record `id` (and all before it). Fails with
    /// [`LogError::Failed`] if indexing stopped on a store error (the journal still has the
    /// records; a restart replays them) and [`LogError::Closed`] if the log shut down first.
    pub async fn wait_indexed(&self, id: RecordId) -> Result<(), LogError> {
        let mut rx = self.indexed.clone();
        loop {
            if *rx.borrow_and_update() >= id.0 {
                return Ok(());
            }
            if self.index_failed.load(Ordering::SeqCst) {
                return Err(LogError::Failed);
            }
            rx.changed().await.map_err(|_| LogError::Closed)?;
        }
    }

    /// What recovery did when this log was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// Stops the log cleanly: everything queued is written, synced and sealed with a sync mark,
    /// the store catches up, and the threads end. Appends after this fail with
    /// [`LogError::Closed`]. (Dropping the handle also syncs and seals, without waiting.)
    pub async fn close(self) -> Result<(), LogError> {
        self.shutdown().await
    }

    /// [`MessageLog::close`] through a shared handle, for a server stopping while its tasks
    /// still hold the log: it waits until the journal is sealed and the store has caught up,
    /// and those tasks' later appends fail with [`LogError::Closed`]. Without it a process that
    /// returns from `main` can end before the writer thread seals the journal. Calling it
    /// again returns [`LogError::Closed`].
    pub async fn shutdown(&self) -> Result<(), LogError> {
        let (tx, rx) = oneshot::channel();
        let sent = self.tx.send(WriterMsg::Shutdown(tx)).is_ok();
        let result = if sent {
            rx.await.unwrap_or(Err(LogError::Closed))
        } else {
            Err(closed_error(&self.shared))
        };
        let threads = match self.threads.lock() {
            Ok(mut t) => std::mem::take(&mut *t),
            Err(_) => Vec::new(),
        };
        let store = self.store.clone();
        // The writer has finished (it answered), and with it the indexer's channel; then the
        // store is flushed so that no engine background write still holds it (and its file
        // lock) once this returns.
        let flushed = tokio::task::spawn_blocking(move || {
            for h in threads {
                let _ = h.join();
            }
            let r = store.flush();
            drop(store);
            r
        })
        .await;
        result?;
        match flushed {
            Ok(r) => r.map_err(LogError::from),
            Err(_) => Err(LogError::Closed),
        }
    }
}

/// Records are indexed in passes at most this often under load (an idle log indexes each batch
/// at once): much of sled's cost is per write pass, not per record.
const INDEX_PASS_INTERVAL: std::time::Duration = std::time::Duration::from_millis(20);
/// Most records indexed in one pass.
const INDEX_PASS_MAX: usize = 4096;

/// Waits until the next pass is due (`INDEX_PASS_INTERVAL` after the last one; at once after an
/// idle spell or a full pass), then adds to `batch` what is queued, up to `INDEX_PASS_MAX`
/// records.
///
/// Sleeps until the pass is due and then takes everything queued, rather than waiting on the
/// channel: a blocked receiver is woken by every synced batch (one wake-up and two context
/// switches per journal sync), a sleeping one once per pass.
fn gather_index_batch(
    rx: &mpsc::Receiver<Vec<IndexedRecord>>,
    batch: &mut Vec<IndexedRecord>,
    last_pass: Option<std::time::Instant>,
) {
    if let Some(due) = last_pass.map(|t| t + INDEX_PASS_INTERVAL) {
        let wait = due.saturating_duration_since(std::time::Instant::now());
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }
    while batch.len() < INDEX_PASS_MAX {
        match rx.try_recv() {
            Ok(more) => batch.extend(more),
            Err(_) => return,
        }
    }
}

fn index_into(
    store: &dyn LogStore,
    batch: &[IndexedRecord],
    failed: &AtomicBool,
    indexed: &watch::Sender<u64>,
) {
    if batch.is_empty() || failed.load(Ordering::SeqCst) {
        return;
    }
    match store.insert_batch(batch) {
        Ok(()) => {
            if let Some(last) = batch.last() {
                indexed.send_replace(last.id.0);
            }
        }
        Err(e) => {
            // Stop indexing rather than leave a gap: the journal holds the records and the next
            // start replays them into the store.
            failed.store(true, Ordering::SeqCst);
            // Wake `wait_indexed` callers so they see the failure.
            indexed.send_modify(|_| ());
            tracing::error!(error = %e, "message log store insert failed; indexing stopped until restart");
        }
    }
}

#[cfg(test)]
mod tests;
