//! The message log hook: every request and response, on both sides, is handed to the log
//! before the exchange is acknowledged.
//!
//! The real log (journal + sled, `messagelog`) plugs in through [`MessageLogSink`]; the
//! [`MemoryLog`] here keeps the same contract for tests and development: `log` returns only
//! once the entry is stored, and a failure stops the exchange with `LoggingFailed`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use trustbus_sdk::fault::{ErrorKind, Fault, FaultCode, Origin};
use trustbus_sdk::id::{ClientId, ServiceId};

use crate::transport::{Direction, PayloadKind, UserIdentity};

/// Which side logged the entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The consumer's security server (client proxy).
    Consumer,
    /// The provider's security server (server proxy).
    Provider,
}

/// How the exchange ended, as far as this entry knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The message was signed and verified.
    Ok,
    /// The message carries a fault (code).
    Fault(String),
}

/// One message-log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// The side that logs.
    pub side: Side,
    /// Request or response.
    pub direction: Direction,
    /// REST or SOAP.
    pub kind: PayloadKind,
    /// The client's message id.
    pub message_id: String,
    /// The bus request id.
    pub request_id: String,
    /// The client.
    pub client: ClientId,
    /// The service.
    pub service: ServiceId,
    /// The end user and whether it was verified.
    pub user: Option<UserIdentity>,
    /// Case reference.
    pub issue: Option<String>,
    /// The exact `message.json` bytes.
    pub metadata: Vec<u8>,
    /// The payload head (REST header part or SOAP envelope).
    pub payload_head: Vec<u8>,
    /// The payload body, when kept (REST body or SOAP multipart); `None` if there was none.
    pub payload_body: Option<Vec<u8>>,
    /// The signed manifest.
    pub manifest: Vec<u8>,
    /// The CMS signature over the manifest.
    pub signature: Vec<u8>,
    /// The signer's OCSP response.
    pub ocsp_response: Vec<u8>,
    /// Outcome.
    pub outcome: Outcome,
}

/// The log could not store an entry (or refuses new exchanges).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("message log failed: {message}")]
pub struct LogFailed {
    /// What went wrong, for the fault message and the server log.
    pub message: String,
    /// A more specific cause, such as `TimestamperFailed` when timestamping has been failing
    /// for longer than its window.
    pub cause: Option<ErrorKind>,
}

impl LogFailed {
    /// A failure without a more specific cause.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            cause: None,
        }
    }

    /// The fault the exchange fails with: `Server.<side>.LoggingFailed[.<cause>]`.
    pub fn fault(&self, origin: Origin) -> Fault {
        let mut code = FaultCode::new(origin, ErrorKind::LoggingFailed);
        if let Some(c) = self.cause {
            code = code.caused_by(c);
        }
        Fault::new(code, self.message.clone())
    }
}

/// A boxed future returned by [`MessageLogSink::log`].
pub type LogFuture<'a> = Pin<Box<dyn Future<Output = Result<(), LogFailed>> + Send + 'a>>;

/// Where exchanges are logged. `log` resolves `Ok` only once the entry is durable.
pub trait MessageLogSink: Send + Sync {
    /// Stores `entry`; the exchange continues only after `Ok`.
    fn log(&self, entry: LogEntry) -> LogFuture<'_>;

    /// Hands `entry` to the log now and returns a future that resolves once it is durable, so
    /// that the caller can overlap the sync with sending. Refusals that need no I/O (admission,
    /// a record that cannot be built) come back at once, before anything is sent. The entry is
    /// ordered before every entry handed over later. Callers still wait for the future before
    /// acknowledging anything. The default suits sinks that cannot refuse early.
    fn submit(&self, entry: LogEntry) -> Result<LogFuture<'_>, LogFailed> {
        Ok(self.log(entry))
    }

    /// Like [`MessageLogSink::submit`], for an entry that is always followed by another entry of
    /// the same exchange or by waiting on the returned future: the log need not sync it on its
    /// own, because the later entry's sync covers it; the future asks for a sync only if none
    /// has covered it by the time it is polled.
    fn submit_deferred(&self, entry: LogEntry) -> Result<LogFuture<'_>, LogFailed> {
        self.submit(entry)
    }

    /// Whether entries are recorded at all (false only for [`NoLog`]); diagnostics, metrics
    /// and the auditor API report it.
    fn recording(&self) -> bool {
        true
    }
}

/// The sink of `[message_log] enabled = false` (benchmarks, test environments): every entry is
/// dropped at once and nothing is kept, in memory or on disk, so no exchange can be proven.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoLog;

impl MessageLogSink for NoLog {
    fn log(&self, entry: LogEntry) -> LogFuture<'_> {
        drop(entry);
        Box::pin(std::future::ready(Ok(())))
    }

    fn recording(&self) -> bool {
        false
    }
}

/// An in-memory log with the real contract (tests, development).
#[derive(Debug, Default)]
pub struct MemoryLog {
    entries: Mutex<Vec<LogEntry>>,
    fail: Mutex<Option<String>>,
    /// Keep at most this many entries (oldest dropped); 0 = unbounded.
    cap: usize,
}

impl MemoryLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// A log that keeps only the newest `cap` entries (the stand-in used by `serve` until
    /// the durable message log is wired in).
    pub fn bounded(cap: usize) -> Self {
        Self {
            cap,
            ..Self::default()
        }
    }

    /// Makes every later `log` fail with `reason` (or succeed again with `None`).
    pub fn set_failing(&self, reason: Option<&str>) {
        *self.fail.lock().unwrap_or_else(|e| e.into_inner()) = reason.map(str::to_owned);
    }

    /// A copy of the entries so far.
    pub fn entries(&self) -> Vec<LogEntry> {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn store(&self, entry: LogEntry) -> Result<(), LogFailed> {
        if let Some(r) = self.fail.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Err(LogFailed::new(r));
        }
        let mut e = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if self.cap > 0 && e.len() >= self.cap {
            e.remove(0);
        }
        e.push(entry);
        Ok(())
    }
}

impl MessageLogSink for MemoryLog {
    fn log(&self, entry: LogEntry) -> LogFuture<'_> {
        Box::pin(std::future::ready(self.store(entry)))
    }

    fn submit(&self, entry: LogEntry) -> Result<LogFuture<'_>, LogFailed> {
        self.store(entry)?;
        Ok(Box::pin(std::future::ready(Ok(()))))
    }
}

/// The production log: every entry is appended to the durable message log (acknowledged only
/// after its journal sync), and while timestamping has been failing for longer than its window
/// new exchanges are refused with `LoggingFailed.TimestamperFailed`.
pub struct JournalLog {
    log: std::sync::Arc<crate::messagelog::MessageLog>,
    guard: std::sync::Arc<crate::messagelog::timestamp::AdmissionGuard>,
}

impl JournalLog {
    /// Logs into `log`, admitting exchanges as `guard` says.
    pub fn new(
        log: std::sync::Arc<crate::messagelog::MessageLog>,
        guard: std::sync::Arc<crate::messagelog::timestamp::AdmissionGuard>,
    ) -> Self {
        Self { log, guard }
    }

    /// Admits (requests only) and builds the journal record of `entry`.
    fn record(&self, entry: LogEntry) -> Result<crate::messagelog::NewRecord, LogFailed> {
        use crate::messagelog::exchange::ExchangeMessage;
        use crate::messagelog::record::{Outcome as RecordOutcome, UserRef};
        let origin = match entry.side {
            Side::Consumer => Origin::ClientProxy,
            Side::Provider => Origin::ServerProxy,
        };
        // Requests are admitted or refused; a response to an admitted request is always
        // logged, so that no exchange that started is left half-recorded.
        if entry.direction == Direction::Request {
            self.guard.admission(origin).map_err(|f| LogFailed {
                message: f.message,
                cause: Some(ErrorKind::TimestamperFailed),
            })?;
        }
        let request_id = uuid::Uuid::parse_str(&entry.request_id)
            .map_err(|e| LogFailed::new(format!("request id {}: {e}", entry.request_id)))?;
        let message = ExchangeMessage {
            side: entry.side,
            direction: entry.direction,
            kind: entry.kind,
            message_id: entry.message_id,
            request_id,
            client: entry.client,
            service: entry.service,
            user: entry.user.map(|u| UserRef {
                id: u.id,
                verified: u.verified,
            }),
            issue: entry.issue,
            message_json: entry.metadata,
            payload_head: entry.payload_head,
            payload_body: entry.payload_body,
            manifest: entry.manifest,
            signature: entry.signature,
            ocsp_response: entry.ocsp_response,
            outcome: match entry.outcome {
                Outcome::Ok => RecordOutcome::Ok,
                Outcome::Fault(code) => RecordOutcome::Fault(code),
            },
        };
        crate::messagelog::record::NewRecord::from_exchange(message)
            .map_err(|e| LogFailed::new(format!("cannot build the log record: {e}")))
    }

    /// Admits, builds and queues `entry`; the future resolves once the log acknowledges it.
    fn queue(&self, entry: LogEntry, defer: bool) -> Result<LogFuture<'static>, LogFailed> {
        let record = self.record(entry)?;
        let queued = if defer {
            self.log.enqueue_deferred(record)
        } else {
            self.log.enqueue(record)
        }
        .map_err(|e| LogFailed::new(e.to_string()))?;
        Ok(Box::pin(async move {
            queued
                .durable()
                .await
                .map(|_| ())
                .map_err(|e| LogFailed::new(e.to_string()))
        }))
    }
}

impl MessageLogSink for JournalLog {
    fn log(&self, entry: LogEntry) -> LogFuture<'_> {
        match self.submit(entry) {
            Ok(durable) => durable,
            Err(e) => Box::pin(std::future::ready(Err(e))),
        }
    }

    fn submit(&self, entry: LogEntry) -> Result<LogFuture<'_>, LogFailed> {
        self.queue(entry, false)
    }

    fn submit_deferred(&self, entry: LogEntry) -> Result<LogFuture<'_>, LogFailed> {
        self.queue(entry, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> LogEntry {
        LogEntry {
            side: Side::Consumer,
            direction: Direction::Request,
            kind: PayloadKind::Rest,
            message_id: "m".into(),
            request_id: "r".into(),
            client: ClientId::from_slash("DEV/GOV/1/a").unwrap(),
            service: ServiceId::from_slash("DEV/GOV/2/b/s").unwrap(),
            user: None,
            issue: None,
            metadata: vec![],
            payload_head: vec![],
            payload_body: None,
            manifest: vec![],
            signature: vec![],
            ocsp_response: vec![],
            outcome: Outcome::Ok,
        }
    }

    #[tokio::test]
    async fn memory_log_stores_and_fails_on_demand() {
        let log = MemoryLog::new();
        log.log(entry()).await.unwrap();
        assert_eq!(log.entries().len(), 1);
        log.set_failing(Some("disk full"));
        let e = log.log(entry()).await.unwrap_err();
        assert_eq!(
            e.fault(Origin::ClientProxy)
                .code
                .render(trustbus_sdk::FaultDialect::Classic),
            "Server.ClientProxy.LoggingFailed"
        );
        assert_eq!(log.entries().len(), 1);
        assert!(log.recording());
    }

    #[tokio::test]
    async fn no_log_accepts_everything_and_says_it_records_nothing() {
        let log = NoLog;
        assert!(!log.recording());
        let sink: &dyn MessageLogSink = &log;
        for _ in 0..3 {
            assert_eq!(sink.log(entry()).await, Ok(()));
        }
        // A zero-sized sink: there is nowhere for entries to accumulate.
        assert_eq!(size_of::<NoLog>(), 0);
    }
}
