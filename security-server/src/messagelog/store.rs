//! The queryable message log: the [`LogStore`] trait and its sled implementation.
//!
//! The store is a *derived* copy of the journal: it is filled from records after their journal
//! sync and rebuilt from the journal tail on start-up, never the other way round. sled's own
//! `flush` is never relied on for durability (it issues `sync_file_range`, not `fdatasync`).
//!
//! sled trees (all keys big-endian, strings length-prefixed with a `u32` so that one key can never
//! be a prefix of another):
//!
//! | tree | key | value |
//! |---|---|---|
//! | `runs` | first `id` of the run | `0x01 ‖ (entry_hash[32] ‖ segment u64 ‖ offset u64 ‖ length u32) × n`: where records `id..id+n` are in the journal, one entry per indexing pass (`runs.rs`) |
//! | `records` | `id` | a store without a journal: `entry_hash[32] ‖ record bytes`; older versions also kept `entry_hash[32] ‖ "TBJP" ‖ segment u64 ‖ offset u64 ‖ length u32` per journal record here, still read |
//! | `postings` | `tag ‖ value ‖ time ‖ id` of a block's first position | posting block (`postings.rs`) |
//! | `ts_batches` | `last_id` | `batch_id u64 ‖ first_id u64 ‖ entry_hash[32] × (last_id − first_id + 1)` |
//! | `ts_tokens` | `batch_id` | RFC 3161 token (DER) |
//! | `ts_records` | `id` | `batch_id u64 ‖ Merkle proof bytes` (written by older versions, still read) |
//!
//! A timestamp batch is stored once with its leaves; a record's Merkle proof is computed from them
//! when it is asked for (evidence, archives), not written per record on the logging path.
//!
//! `time` is 12 bytes: the Unix seconds with the sign bit flipped (so negative times sort first)
//! followed by the nanoseconds. Stores with the older per-record index trees (`by_message_id`,
//! `by_request_id`, `by_client_time`, `by_service_time`, `by_user_time`, `by_time`) are
//! converted to posting blocks when opened.

use super::chain::ChainHash;
use super::journal::{self, ENTRY_OVERHEAD};
use super::postings::{self, IndexTag, Position, Postings, TimedId, Window};
use super::record::{self, LogRecord, RecordError, RecordId, RecordMeta};
use super::runs::{self, Edit, Run, RunError, Slot};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use time::OffsetDateTime;
use trustbus_pki::DigestAlgorithm;
use trustbus_pki::merkle::MerkleTree;
use uuid::Uuid;

/// Errors from a [`LogStore`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The storage engine failed.
    #[error("store engine: {0}")]
    Engine(String),
    /// A stored value is damaged.
    #[error("stored record {id} is damaged: {reason}")]
    Corrupt {
        /// The record.
        id: RecordId,
        /// What is wrong.
        reason: String,
    },
    /// A query's cursor is not one this store handed out.
    #[error("not a cursor of this log")]
    InvalidCursor,
    /// A stored record does not decode.
    #[error("stored record {id} does not decode: {error}")]
    Record {
        /// The record.
        id: RecordId,
        /// The decoder's error.
        error: RecordError,
    },
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Engine(e.to_string())
    }
}

impl From<RunError> for StoreError {
    fn from(e: RunError) -> Self {
        StoreError::Corrupt {
            id: RecordId(e.first),
            reason: e.to_string(),
        }
    }
}

/// A record committed to the journal, as handed to the store.
#[derive(Debug, Clone)]
pub struct IndexedRecord {
    /// Its id.
    pub id: RecordId,
    /// Its journal entry hash.
    pub hash: ChainHash,
    /// Where its canonical bytes are.
    pub body: RecordBody,
    /// Its metadata (what the indexes are built from).
    pub meta: RecordMeta,
}

/// Where the store finds a record's canonical bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordBody {
    /// In the journal: the entry frame at byte `offset` of segment `segment`, holding `len`
    /// record bytes. The store keeps only this pointer, so each record is written once (to the
    /// journal) instead of again into sled's pages, which under load cost more than the journal.
    Journal {
        /// Segment number.
        segment: u64,
        /// Byte offset of the entry frame in the segment.
        offset: u64,
        /// Length of the record inside the frame.
        len: u32,
    },
    /// The bytes themselves, for a store without a journal beside it.
    Inline(Vec<u8>),
}

/// What to search for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryFilter {
    /// Every record.
    All,
    /// Records with this message id.
    MessageId(String),
    /// Records with this request id (a request and its response).
    RequestId(Uuid),
    /// Records whose client (slash form) is this.
    Client(String),
    /// Records whose service (slash form) is this.
    Service(String),
    /// Records whose user id is this.
    User(String),
}

/// An opaque position to continue a query from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor(pub Vec<u8>);

impl Cursor {
    /// Whether these bytes can be a cursor this store handed out (callers reject others early).
    pub fn is_well_formed(&self) -> bool {
        Position::from_bytes(&self.0).is_some()
    }
}

/// A paged query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// What to match.
    pub filter: QueryFilter,
    /// Earliest `logged_at` (inclusive).
    pub from: Option<OffsetDateTime>,
    /// Latest `logged_at` (exclusive).
    pub to: Option<OffsetDateTime>,
    /// Page size (at least 1).
    pub limit: usize,
    /// Continue after this cursor (from the previous page's `next`).
    pub after: Option<Cursor>,
}

impl Query {
    /// A first page of `limit` records matching `filter`, any time.
    pub fn new(filter: QueryFilter, limit: usize) -> Self {
        Self {
            filter,
            from: None,
            to: None,
            limit,
            after: None,
        }
    }
}

/// One page of results.
#[derive(Debug, Clone)]
pub struct QueryPage {
    /// The records, in `logged_at` order (then id).
    pub records: Vec<LogRecord>,
    /// Where the next page starts, if there may be one.
    pub next: Option<Cursor>,
}

/// The timestamp of one record: which batch token covers it and the Merkle proof to its root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimestampInfo {
    /// The timestamp batch.
    pub batch_id: u64,
    /// The RFC 3161 token of the batch (DER).
    pub token: Vec<u8>,
    /// The record's Merkle inclusion proof (encoding defined by the pki Merkle helper).
    pub merkle_proof: Vec<u8>,
}

/// A stored record in its raw form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    /// Its id.
    pub id: RecordId,
    /// Its journal entry hash.
    pub hash: ChainHash,
    /// The canonical record bytes.
    pub bytes: Vec<u8>,
}

/// Storage for the queryable message log. The exchange path never calls it directly: the
/// journal writer feeds it; auditors, the timestamper and the archiver read it.
pub trait LogStore: Send + Sync {
    /// Inserts committed records (idempotent: inserting a record again is harmless).
    fn insert_batch(&self, batch: &[IndexedRecord]) -> Result<(), StoreError>;
    /// The highest record id stored and its entry hash.
    fn last(&self) -> Result<Option<(RecordId, ChainHash)>, StoreError>;
    /// One record, raw.
    fn get_raw(&self, id: RecordId) -> Result<Option<RawRecord>, StoreError>;
    /// One record, decoded.
    fn get(&self, id: RecordId) -> Result<Option<LogRecord>, StoreError> {
        match self.get_raw(id)? {
            None => Ok(None),
            Some(raw) => record::decode(&raw.bytes)
                .map(Some)
                .map_err(|error| StoreError::Record { id, error }),
        }
    }
    /// A page of records matching `q`.
    fn query(&self, q: &Query) -> Result<QueryPage, StoreError>;
    /// Records with id `>= from`, in id order, at most `limit`.
    fn range(&self, from: RecordId, limit: usize) -> Result<Vec<RawRecord>, StoreError>;
    /// The entry hashes of the records with id `>= from`, in id order, at most `limit` (what the
    /// timestamper needs, without reading the records).
    fn hashes(
        &self,
        from: RecordId,
        limit: usize,
    ) -> Result<Vec<(RecordId, ChainHash)>, StoreError> {
        Ok(self
            .range(from, limit)?
            .into_iter()
            .map(|r| (r.id, r.hash))
            .collect())
    }
    /// Stores one timestamp batch: its token over the Merkle root of `leaves` (the entry hashes of
    /// consecutive records, in order), and the leaves, from which each record's proof is derived.
    fn set_timestamp_batch(
        &self,
        batch_id: u64,
        token: &[u8],
        leaves: &[(RecordId, ChainHash)],
    ) -> Result<(), StoreError>;
    /// The timestamp of a record, once it has one.
    fn timestamp(&self, id: RecordId) -> Result<Option<TimestampInfo>, StoreError>;
    /// The last timestamp batch stored and the highest record id it covers (batches are
    /// stored in record order, so every record up to that id is timestamped).
    fn timestamp_progress(&self) -> Result<Option<(u64, RecordId)>, StoreError>;
    /// Removes archived records with their index entries. Timestamp proofs and tokens stay:
    /// they are small, tokens may cover records still live, and they carry the timestamper's
    /// progress.
    fn remove(&self, ids: &[RecordId]) -> Result<(), StoreError>;
    /// The highest removed (archived) record and its entry hash: the predecessor of the first
    /// live record once archiving has begun.
    fn archived_head(&self) -> Result<Option<(RecordId, ChainHash)>, StoreError>;
    /// Asks the engine to write its buffers (not a durability guarantee).
    fn flush(&self) -> Result<(), StoreError>;
}

/// sled page cache of the message-log store. It holds index nodes only (records are read from the
/// journal); at 32 MiB a security server passed 150 MB RSS under load, at 8 MiB it stays below.
const STORE_CACHE_BYTES: u64 = 8 << 20;

/// Key (in sled's default tree) of the highest archived record and its entry hash.
const ARCHIVED_HEAD_KEY: &[u8] = b"archived_head";

/// Tag after the entry hash in a `records` value that points into the journal (a value holding
/// the record itself has the record magic there instead).
const JOURNAL_POINTER_TAG: [u8; 4] = *b"TBJP";
/// Length of a `records` value that points into the journal.
const JOURNAL_POINTER_LEN: usize = 32 + 4 + 8 + 8 + 4;
/// Index trees of versions that kept one key per record (converted at open).
const LEGACY_INDEX_TREES: [&str; 6] = [
    "by_message_id",
    "by_request_id",
    "by_client_time",
    "by_service_time",
    "by_user_time",
    "by_time",
];
/// Journal segment files kept open for reads.
const OPEN_SEGMENTS: usize = 4;

/// A timestamp batch's Merkle tree, with the batch id.
type BatchTree = (u64, Arc<MerkleTree>);

/// A journal segment file kept open for reads, with its number.
type OpenSegment = (u64, Arc<File>);

/// Where the store found a record.
enum Located {
    /// In the journal (from a run, or a per-record pointer of an older version).
    Journal(Slot),
    /// In the `records` value itself, `entry_hash ‖ record bytes` (a store without a journal).
    Inline(ChainHash, sled::IVec),
}

impl Located {
    fn hash(&self) -> ChainHash {
        match self {
            Located::Journal(s) => s.hash,
            Located::Inline(h, _) => *h,
        }
    }
}

/// The sled implementation of [`LogStore`].
#[derive(Debug, Clone)]
pub struct SledStore {
    /// The journal directory that `RecordBody::Journal` pointers refer to.
    journal: Option<PathBuf>,
    /// Recently read segment files (most recent last).
    segments: Arc<Mutex<Vec<OpenSegment>>>,
    db: sled::Db,
    /// Journal positions of journal-backed records, one entry per run of consecutive ids.
    runs: sled::Tree,
    /// Per-record values: inline records, and journal pointers written by older versions.
    records: sled::Tree,
    /// The query indexes: posting blocks (`postings.rs`).
    postings: sled::Tree,
    ts_batches: sled::Tree,
    ts_records: sled::Tree,
    ts_tokens: sled::Tree,
    /// The Merkle tree of the batch asked for last (archiving asks batch by batch).
    last_tree: Arc<Mutex<Option<BatchTree>>>,
}

fn be_u64(b: Option<&[u8]>) -> Option<u64> {
    Some(u64::from_be_bytes(b?.try_into().ok()?))
}

fn id_from_key_tail(key: &[u8]) -> Option<RecordId> {
    let tail = key.len().checked_sub(8).and_then(|s| key.get(s..))?;
    let arr: [u8; 8] = tail.try_into().ok()?;
    Some(RecordId(u64::from_be_bytes(arr)))
}

/// sled reports a held file lock as an `Other` I/O error with this message prefix.
fn is_lock_contention(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io)
        if io.kind() == std::io::ErrorKind::WouldBlock
            || io.to_string().starts_with("could not acquire lock"))
}

impl SledStore {
    /// Opens (or creates) the store in `path` for the journal in `journal_dir`: records are read
    /// from the journal's segment files, the store holds their indexes and positions.
    pub fn open_with_journal(path: &Path, journal_dir: &Path) -> Result<Self, StoreError> {
        Self::open_in(path, Some(journal_dir.to_path_buf()))
    }

    /// Opens (or creates) the store in `path`, without a journal: records inserted with
    /// [`RecordBody::Inline`] only.
    ///
    /// sled holds an exclusive file lock, and a store closed a moment ago in this process may still
    /// hold it: sled's background I/O threads release the file lazily after the `Db` is dropped
    /// (sled issue #1234). Opening therefore waits up to 5 s for the lock before failing.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_in(path, None)
    }

    fn open_in(path: &Path, journal: Option<PathBuf>) -> Result<Self, StoreError> {
        let mut waited = 0;
        let db = loop {
            // No sled flusher thread: the log decides when sled writes (see `flush`); the
            // journal, not sled, is what makes records durable. sled's page cache defaults to
            // 1 GiB and grew each security server past 200 MiB RSS under load; queries read
            // recent records or go through the indexes, so a small cache is enough.
            match sled::Config::new()
                .path(path)
                .flush_every_ms(None)
                .cache_capacity(STORE_CACHE_BYTES)
                .open()
            {
                Err(e) if is_lock_contention(&e) && waited < 250 => {
                    waited += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => break other?,
            }
        };
        let t = |name: &str| db.open_tree(name);
        let s = Self {
            journal,
            segments: Arc::new(Mutex::new(Vec::new())),
            runs: t("runs")?,
            records: t("records")?,
            postings: t("postings")?,
            ts_batches: t("ts_batches")?,
            ts_records: t("ts_records")?,
            ts_tokens: t("ts_tokens")?,
            last_tree: Arc::new(Mutex::new(None)),
            db,
        };
        s.convert_per_record_indexes()?;
        Ok(s)
    }

    /// Rebuilds the indexes of a store written by a version that kept one key per record in six
    /// index trees: posting blocks from the live records, then the old trees are dropped. Runs
    /// once; interrupted, it runs again at the next start (blocks written twice are merged).
    fn convert_per_record_indexes(&self) -> Result<(), StoreError> {
        let present = self.db.tree_names();
        let names = LEGACY_INDEX_TREES
            .iter()
            .filter(|n| present.iter().any(|t| t.as_ref() == n.as_bytes()))
            .collect::<Vec<_>>();
        if names.is_empty() {
            return Ok(());
        }
        let mut converted = 0u64;
        let mut from = RecordId(0);
        loop {
            let chunk = self.range(from, 4096)?;
            let Some(last) = chunk.last().map(|r| r.id) else {
                break;
            };
            let mut p = Postings::default();
            for raw in &chunk {
                let rec = record::decode(&raw.bytes)
                    .map_err(|error| StoreError::Record { id: raw.id, error })?;
                p.add(&rec.meta, raw.id);
            }
            p.write(&self.postings)?;
            converted += chunk.len() as u64;
            from = last.next();
        }
        self.db.flush()?;
        for n in names {
            self.db.drop_tree(n.as_bytes())?;
        }
        tracing::info!(
            records = converted,
            "message log indexes converted to posting blocks"
        );
        Ok(())
    }

    /// The entry hash at the front of a `records` value.
    fn hash_from(id: RecordId, v: &[u8]) -> Result<ChainHash, StoreError> {
        let h: [u8; 32] =
            v.get(..32)
                .and_then(|h| h.try_into().ok())
                .ok_or_else(|| StoreError::Corrupt {
                    id,
                    reason: "value shorter than the entry hash".into(),
                })?;
        Ok(ChainHash(h))
    }

    /// A per-record `records` value (inline records; journal pointers as older versions wrote
    /// them).
    fn encode_value(hash: &ChainHash, body: &RecordBody) -> Vec<u8> {
        match body {
            RecordBody::Journal {
                segment,
                offset,
                len,
            } => {
                let mut v = Vec::with_capacity(JOURNAL_POINTER_LEN);
                v.extend_from_slice(&hash.0);
                v.extend_from_slice(&JOURNAL_POINTER_TAG);
                v.extend_from_slice(&segment.to_be_bytes());
                v.extend_from_slice(&offset.to_be_bytes());
                v.extend_from_slice(&len.to_be_bytes());
                v
            }
            RecordBody::Inline(bytes) => {
                let mut v = Vec::with_capacity(32 + bytes.len());
                v.extend_from_slice(&hash.0);
                v.extend_from_slice(bytes);
                v
            }
        }
    }

    /// Reads a per-record `records` value.
    fn per_record(id: RecordId, v: sled::IVec) -> Result<Located, StoreError> {
        let hash = Self::hash_from(id, &v)?;
        let body = &v[32..];
        if v.len() == JOURNAL_POINTER_LEN && body[..4] == JOURNAL_POINTER_TAG {
            let field = |r: std::ops::Range<usize>| be_u64(body.get(r)).unwrap_or(0);
            let len = u32::from_be_bytes([body[20], body[21], body[22], body[23]]);
            return Ok(Located::Journal(Slot {
                hash,
                segment: field(4..12),
                offset: field(12..20),
                len,
            }));
        }
        Ok(Located::Inline(hash, v))
    }

    /// The run with the greatest first id at or below `id` (the only one that can hold it).
    fn run_at(&self, id: u64) -> Result<Option<(sled::IVec, sled::IVec)>, StoreError> {
        Ok(self
            .runs
            .range(..=id.to_be_bytes())
            .next_back()
            .transpose()?)
    }

    /// The run that has a slot (live or removed) for `id`, as its key and value; a damaged run
    /// in the way is an error.
    fn covering_run(&self, id: u64) -> Result<Option<(sled::IVec, sled::IVec)>, StoreError> {
        match self.run_at(id)? {
            Some((k, v)) if Run::parse(&k, &v)?.covers(id) => Ok(Some((k, v))),
            _ => Ok(None),
        }
    }

    /// Where record `id` is, if the store has it.
    fn locate(&self, id: RecordId) -> Result<Option<Located>, StoreError> {
        if let Some((k, v)) = self.covering_run(id.0)? {
            return Ok(Run::parse(&k, &v)?.get(id.0).map(Located::Journal));
        }
        match self.records.get(id.0.to_be_bytes())? {
            None => Ok(None),
            Some(v) => Self::per_record(id, v).map(Some),
        }
    }

    /// The record's bytes, from the journal or the inline value.
    fn read(&self, id: RecordId, at: &Located) -> Result<RawRecord, StoreError> {
        let bytes = match at {
            Located::Journal(s) => {
                self.read_journal(id, s.hash, s.segment, s.offset, s.len as usize)?
            }
            Located::Inline(_, v) => v[32..].to_vec(),
        };
        Ok(RawRecord {
            id,
            hash: at.hash(),
            bytes,
        })
    }

    /// Reads record `id` from its journal entry frame and checks the frame against the hash the
    /// store holds (a journal changed under the store is reported, never served).
    fn read_journal(
        &self,
        id: RecordId,
        hash: ChainHash,
        segment: u64,
        offset: u64,
        len: usize,
    ) -> Result<Vec<u8>, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt { id, reason };
        let file = self
            .segment(segment)
            .map_err(|e| corrupt(format!("journal segment {segment} cannot be opened: {e}")))?;
        let mut frame = vec![0u8; ENTRY_OVERHEAD + len];
        file.read_exact_at(&mut frame, offset)
            .map_err(|e| corrupt(format!("journal segment {segment} offset {offset}: {e}")))?;
        let mismatch = || {
            corrupt(format!(
                "journal entry at segment {segment} offset {offset} does not match the stored hash"
            ))
        };
        match journal::read_frame(&frame, 0) {
            Ok((
                journal::Frame::Entry {
                    record, hash: h, ..
                },
                _,
            )) if record.len() == len => {
                if h != hash {
                    return Err(mismatch());
                }
                frame.truncate(record.end);
                frame.drain(..record.start);
                Ok(frame)
            }
            Err(journal::FrameFault::HashMismatch { .. }) => Err(mismatch()),
            Ok(_) => Err(corrupt(format!(
                "no entry of {len} bytes at journal segment {segment} offset {offset}"
            ))),
            Err(fault) => Err(corrupt(format!(
                "no entry of {len} bytes at journal segment {segment} offset {offset}: {fault}"
            ))),
        }
    }

    /// Up to `limit` stored records from id `from` on, in id order, each mapped by `f`: the runs
    /// merged with the per-record values.
    fn scan_records<T>(
        &self,
        from: RecordId,
        limit: usize,
        f: impl Fn(RecordId, &Located) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let mut found: Vec<(RecordId, Located)> = Vec::new();
        for item in self.records.range(from.0.to_be_bytes()..).take(limit) {
            let (k, v) = item?;
            let id = id_from_key_tail(&k).ok_or_else(|| StoreError::Corrupt {
                id: RecordId(0),
                reason: "bad key in records tree".into(),
            })?;
            found.push((id, Self::per_record(id, v)?));
        }
        let per_record = found.len();
        let before = self
            .run_at(from.0)?
            .filter(|(k, _)| k.as_ref() < &from.0.to_be_bytes()[..]);
        let later = self.runs.range(from.0.to_be_bytes()..);
        'runs: for item in before.map(Ok).into_iter().chain(later) {
            let (k, v) = item?;
            for (id, slot) in Run::parse(&k, &v)?.live_from(from.0) {
                if found.len() - per_record >= limit {
                    break 'runs;
                }
                found.push((RecordId(id), Located::Journal(slot)));
            }
        }
        if per_record > 0 {
            found.sort_by_key(|(id, _)| *id);
            found.dedup_by_key(|(id, _)| *id);
        }
        found.truncate(limit);
        found.into_iter().map(|(id, at)| f(id, &at)).collect()
    }

    /// The parts of ids `a..=b` that no stored run covers yet.
    fn uncovered(&self, a: u64, b: u64) -> Result<Vec<(u64, u64)>, StoreError> {
        let mut out = Vec::new();
        let mut at = a;
        if let Some((k, v)) = self.covering_run(a)? {
            at = Run::parse(&k, &v)?.last().saturating_add(1);
        }
        while at <= b {
            let Some(next) = self.runs.range(at.to_be_bytes()..).next() else {
                out.push((at, b));
                break;
            };
            let (k, v) = next?;
            let run = Run::parse(&k, &v)?;
            if run.first() > b {
                out.push((at, b));
                break;
            }
            if run.first() > at {
                out.push((at, run.first() - 1));
            }
            if run.last() == u64::MAX {
                break;
            }
            at = run.last() + 1;
        }
        Ok(out)
    }

    /// The runs that store `slots` (in id order), for the ids no run holds yet: runs are never
    /// rewritten on insert, so a pass replayed after a crash changes nothing it finds stored.
    fn new_runs(&self, slots: &[(u64, Slot)]) -> Result<sled::Batch, StoreError> {
        let mut batch = sled::Batch::default();
        let mut rest = slots;
        while let Some(&(a, _)) = rest.first() {
            let n = rest
                .iter()
                .enumerate()
                .take(runs::MAX_RUN)
                .take_while(|(i, (id, _))| *id == a + *i as u64)
                .count();
            let (group, tail) = rest.split_at(n);
            rest = tail;
            for (lo, hi) in self.uncovered(a, a + n as u64 - 1)? {
                let part: Vec<Slot> = group[(lo - a) as usize..=(hi - a) as usize]
                    .iter()
                    .map(|(_, s)| *s)
                    .collect();
                batch.insert(&lo.to_be_bytes(), runs::encode(&part));
            }
        }
        Ok(batch)
    }

    /// Removes records `ids` (sorted) from the runs that hold them; returns the ids no run
    /// covers.
    fn remove_from_runs(&self, ids: &[RecordId]) -> Result<Vec<RecordId>, StoreError> {
        let mut elsewhere = Vec::new();
        let mut i = 0;
        while let Some(&id) = ids.get(i) {
            let Some((k, v)) = self.covering_run(id.0)? else {
                elsewhere.push(id);
                i += 1;
                continue;
            };
            let run = Run::parse(&k, &v)?;
            let n = ids[i..].iter().take_while(|x| run.covers(x.0)).count();
            let these: Vec<u64> = ids[i..i + n].iter().map(|x| x.0).collect();
            i += n;
            match run.without(&these) {
                Edit::Keep => {}
                Edit::Delete => {
                    self.runs.remove(&k)?;
                }
                Edit::Replace { first, value } => {
                    // One sled batch, so that a crash never leaves both keys or neither.
                    let mut b = sled::Batch::default();
                    b.remove(&k);
                    b.insert(&first.to_be_bytes(), value);
                    self.runs.apply_batch(b)?;
                }
            }
        }
        Ok(elsewhere)
    }

    /// Forgets every record after `last`, as if the indexer had not reached them (for crash
    /// tests: index entries stay, as a crash would leave them).
    #[cfg(test)]
    pub(crate) fn forget_after(&self, last: RecordId) -> Result<(), StoreError> {
        let later: Vec<RecordId> = self
            .hashes(last.next(), usize::MAX)?
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        for id in self.remove_from_runs(&later)? {
            self.records.remove(id.0.to_be_bytes())?;
        }
        Ok(())
    }

    /// The Merkle tree of timestamp batch `batch_id` over `leaves` (32-byte entry hashes), from
    /// the one-batch cache or built now.
    fn batch_tree(&self, batch_id: u64, leaves: &[u8]) -> Result<Arc<MerkleTree>, StoreError> {
        let mut cached = self.last_tree.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((b, t)) = cached.as_ref()
            && *b == batch_id
        {
            return Ok(t.clone());
        }
        let leaves: Vec<Vec<u8>> = leaves.chunks(32).map(<[u8]>::to_vec).collect();
        let tree =
            MerkleTree::new(DigestAlgorithm::Sha256, &leaves).map_err(|e| StoreError::Corrupt {
                id: RecordId(0),
                reason: format!("timestamp batch {batch_id}: {e}"),
            })?;
        let tree = Arc::new(tree);
        *cached = Some((batch_id, tree.clone()));
        Ok(tree)
    }

    /// An open segment file, from the small cache or opened now.
    fn segment(&self, no: u64) -> std::io::Result<Arc<File>> {
        let jdir = self
            .journal
            .as_ref()
            .ok_or_else(|| std::io::Error::other("the store was opened without its journal"))?;
        let mut open = self.segments.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = open.iter().position(|(n, _)| *n == no) {
            let f = open.remove(i);
            let file = f.1.clone();
            open.push(f);
            return Ok(file);
        }
        let file = Arc::new(File::open(journal::segment_path(jdir, no))?);
        if open.len() >= OPEN_SEGMENTS {
            open.remove(0);
        }
        open.push((no, file.clone()));
        Ok(file)
    }

    /// The posting-block prefix a filter reads, and the id its id blocks are read for (ids
    /// that carry their creation time; older records with such ids are in per-value blocks,
    /// so both are read).
    fn plan(f: &QueryFilter) -> (Vec<u8>, Option<TimedId>) {
        match f {
            QueryFilter::All => (postings::prefix(IndexTag::All, b""), None),
            QueryFilter::MessageId(m) => (
                postings::prefix(IndexTag::MessageId, m.as_bytes()),
                TimedId::message(m),
            ),
            QueryFilter::RequestId(r) => (
                postings::prefix(IndexTag::RequestId, r.as_bytes()),
                TimedId::request(r),
            ),
            QueryFilter::Client(c) => (postings::prefix(IndexTag::Client, c.as_bytes()), None),
            QueryFilter::Service(v) => (postings::prefix(IndexTag::Service, v.as_bytes()), None),
            QueryFilter::User(u) => (postings::prefix(IndexTag::User, u.as_bytes()), None),
        }
    }
}

impl LogStore for SledStore {
    fn insert_batch(&self, batch: &[IndexedRecord]) -> Result<(), StoreError> {
        // Indexes first, records last: the last record stored is what recovery replays after,
        // so an index entry can exist without its record (harmless, replay rewrites it) but a
        // record is never stored before its index entries.
        //
        // The index is one posting block per value per call (postings.rs), not a key per record,
        // and journal records go into runs (runs.rs), one entry per call unless the call is long.
        // Only the runs go in as a sled batch: every `apply_batch` makes sled write and
        // `sync_file_range` its log buffer. The plain block inserts before it are earlier in
        // sled's log, so the batch's sync covers them too.
        let mut index = Postings::default();
        let mut slots = Vec::with_capacity(batch.len());
        let mut inline = sled::Batch::default();
        let mut inlined = false;
        for r in batch {
            index.add(&r.meta, r.id);
            match r.body {
                RecordBody::Journal {
                    segment,
                    offset,
                    len,
                } => slots.push((
                    r.id.0,
                    Slot {
                        hash: r.hash,
                        segment,
                        offset,
                        len,
                    },
                )),
                RecordBody::Inline(_) => {
                    inline.insert(&r.id.0.to_be_bytes(), Self::encode_value(&r.hash, &r.body));
                    inlined = true;
                }
            }
        }
        index.write(&self.postings)?;
        if !slots.is_empty() {
            slots.sort_by_key(|(id, _)| *id);
            slots.dedup_by_key(|(id, _)| *id);
            self.runs.apply_batch(self.new_runs(&slots)?)?;
        }
        if inlined {
            self.records.apply_batch(inline)?;
        }
        Ok(())
    }

    fn last(&self) -> Result<Option<(RecordId, ChainHash)>, StoreError> {
        let per_record = match self.records.last()? {
            None => None,
            Some((k, v)) => {
                let id = id_from_key_tail(&k).ok_or_else(|| StoreError::Corrupt {
                    id: RecordId(0),
                    reason: "bad key in records tree".into(),
                })?;
                Some((id, Self::hash_from(id, &v)?))
            }
        };
        let mut in_runs = None;
        for item in self.runs.iter().rev() {
            let (k, v) = item?;
            if let Some((id, slot)) = Run::parse(&k, &v)?.last_live() {
                in_runs = Some((RecordId(id), slot.hash));
                break;
            }
        }
        Ok(match (per_record, in_runs) {
            (Some(a), Some(b)) => Some(if a.0 > b.0 { a } else { b }),
            (a, b) => a.or(b),
        })
    }

    fn get_raw(&self, id: RecordId) -> Result<Option<RawRecord>, StoreError> {
        match self.locate(id)? {
            None => Ok(None),
            Some(at) => self.read(id, &at).map(Some),
        }
    }

    fn query(&self, q: &Query) -> Result<QueryPage, StoreError> {
        let limit = q.limit.max(1);
        let plan = Self::plan(&q.filter);
        let mut window = Window {
            from: q.from.map(postings::time_key),
            to: q.to.map(postings::time_key),
            after: match &q.after {
                Some(c) => Some(Position::from_bytes(&c.0).ok_or(StoreError::InvalidCursor)?),
                None => None,
            },
        };
        let mut records = Vec::new();
        let mut last = None;
        while records.len() < limit {
            let want = limit - records.len();
            let found =
                postings::scan_merged(&self.postings, &plan.0, plan.1.as_ref(), &window, want)?;
            for p in &found {
                last = Some(*p);
                // Archiving removes index entries before records; a record can still be gone
                // between the two reads.
                if let Some(rec) = self.get(RecordId(p.id))? {
                    records.push(rec);
                }
            }
            if found.len() < want {
                break;
            }
            window.after = last;
        }
        let next = if records.len() >= limit {
            last.map(|p| Cursor(p.to_bytes().to_vec()))
        } else {
            None
        };
        Ok(QueryPage { records, next })
    }

    fn range(&self, from: RecordId, limit: usize) -> Result<Vec<RawRecord>, StoreError> {
        self.scan_records(from, limit, |id, at| self.read(id, at))
    }

    fn hashes(
        &self,
        from: RecordId,
        limit: usize,
    ) -> Result<Vec<(RecordId, ChainHash)>, StoreError> {
        self.scan_records(from, limit, |id, at| Ok((id, at.hash())))
    }

    fn set_timestamp_batch(
        &self,
        batch_id: u64,
        token: &[u8],
        leaves: &[(RecordId, ChainHash)],
    ) -> Result<(), StoreError> {
        let (Some(first), Some(last)) = (leaves.first(), leaves.last()) else {
            return Ok(());
        };
        if leaves.windows(2).any(|w| w[1].0 != w[0].0.next()) {
            return Err(StoreError::Corrupt {
                id: first.0,
                reason: "timestamp batch leaves are not consecutive records".into(),
            });
        }
        let mut v = Vec::with_capacity(16 + 32 * leaves.len());
        v.extend_from_slice(&batch_id.to_be_bytes());
        v.extend_from_slice(&first.0.0.to_be_bytes());
        for (_, h) in leaves {
            v.extend_from_slice(&h.0);
        }
        // Token first: the batch entry is what marks its records timestamped.
        self.ts_tokens.insert(batch_id.to_be_bytes(), token)?;
        self.ts_batches.insert(last.0.0.to_be_bytes(), v)?;
        Ok(())
    }

    fn timestamp(&self, id: RecordId) -> Result<Option<TimestampInfo>, StoreError> {
        let corrupt = |reason: &str| StoreError::Corrupt {
            id,
            reason: reason.into(),
        };
        let mut found = None;
        if let Some(kv) = self.ts_batches.range(id.0.to_be_bytes()..).next() {
            let (k, v) = kv?;
            let last = id_from_key_tail(&k).ok_or_else(|| corrupt("bad timestamp batch key"))?;
            let batch_id = be_u64(v.get(..8)).ok_or_else(|| corrupt("bad timestamp batch"))?;
            let first = be_u64(v.get(8..16)).ok_or_else(|| corrupt("bad timestamp batch"))?;
            if first <= id.0 {
                let n = usize::try_from(last.0.saturating_sub(first) + 1).unwrap_or(usize::MAX);
                if n.checked_mul(32).and_then(|l| l.checked_add(16)) != Some(v.len()) {
                    return Err(corrupt("timestamp batch leaves do not match its records"));
                }
                let tree = self.batch_tree(batch_id, &v[16..])?;
                let proof = tree
                    .proof(id.0 - first)
                    .map_err(|e| corrupt(&format!("timestamp batch {batch_id}: {e}")))?
                    .to_json(tree.root());
                found = Some((batch_id, proof));
            }
        }
        // Records timestamped by older versions carry their proof themselves.
        if found.is_none()
            && let Some(v) = self.ts_records.get(id.0.to_be_bytes())?
        {
            let batch_id =
                be_u64(v.get(..8)).ok_or_else(|| corrupt("timestamp reference too short"))?;
            found = Some((batch_id, v[8..].to_vec()));
        }
        let Some((batch_id, merkle_proof)) = found else {
            return Ok(None);
        };
        let token = self
            .ts_tokens
            .get(batch_id.to_be_bytes())?
            .ok_or_else(|| corrupt(&format!("timestamp batch {batch_id} has no token")))?;
        Ok(Some(TimestampInfo {
            batch_id,
            token: token.to_vec(),
            merkle_proof,
        }))
    }

    fn remove(&self, ids: &[RecordId]) -> Result<(), StoreError> {
        // Index entries first, the records last (the reverse of insert): an index entry without
        // its record is harmless, a record without index entries would hide from queries.
        let mut ids = ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        let mut index = Postings::default();
        let mut stored = Vec::with_capacity(ids.len());
        for &id in &ids {
            if let Some(raw) = self.get_raw(id)? {
                let rec =
                    record::decode(&raw.bytes).map_err(|error| StoreError::Record { id, error })?;
                index.add(&rec.meta, id);
                stored.push((id, raw.hash));
            }
        }
        index.remove_from(&self.postings)?;
        // The archived head moves first, to the highest removed record: a crash before the
        // records are gone leaves them readable below the head, never a gap above it.
        let head = self.archived_head()?.map(|(h, _)| h);
        if let Some(&(id, hash)) = stored.last()
            && head.is_none_or(|h| h < id)
        {
            let mut v = id.0.to_be_bytes().to_vec();
            v.extend_from_slice(&hash.0);
            self.db.insert(ARCHIVED_HEAD_KEY, v)?;
        }
        let stored: Vec<RecordId> = stored.into_iter().map(|(id, _)| id).collect();
        for id in self.remove_from_runs(&stored)? {
            self.records.remove(id.0.to_be_bytes())?;
        }
        // Archived segments are deleted next: do not keep them open.
        self.segments
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        Ok(())
    }

    fn archived_head(&self) -> Result<Option<(RecordId, ChainHash)>, StoreError> {
        let Some(v) = self.db.get(ARCHIVED_HEAD_KEY)? else {
            return Ok(None);
        };
        let bad = || StoreError::Corrupt {
            id: RecordId(0),
            reason: "bad archived head".into(),
        };
        let id = id_from_key_tail(v.get(..8).ok_or_else(bad)?).ok_or_else(bad)?;
        let hash: [u8; 32] = v
            .get(8..40)
            .and_then(|h| h.try_into().ok())
            .ok_or_else(bad)?;
        Ok(Some((id, ChainHash(hash))))
    }

    fn timestamp_progress(&self) -> Result<Option<(u64, RecordId)>, StoreError> {
        let corrupt = || StoreError::Corrupt {
            id: RecordId(0),
            reason: "bad entry in the timestamp trees".into(),
        };
        let mut best: Option<(u64, RecordId)> = None;
        for tree in [&self.ts_batches, &self.ts_records] {
            if let Some((k, v)) = tree.last()? {
                let id = id_from_key_tail(&k).ok_or_else(corrupt)?;
                if best.is_none_or(|(_, b)| b < id) {
                    best = Some((be_u64(v.get(..8)).ok_or_else(corrupt)?, id));
                }
            }
        }
        Ok(best)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messagelog::chain::entry_hash;
    use crate::messagelog::record::tests::sample_meta;
    use crate::messagelog::record::{StoredPayload, encode_parts};

    fn rec(n: u64, client: &str, user: &str, t: i64) -> IndexedRecord {
        let mut meta = sample_meta(n);
        meta.client = client.into();
        meta.user = Some(record::UserRef {
            id: user.into(),
            verified: true,
        });
        meta.logged_at = OffsetDateTime::from_unix_timestamp(t).unwrap();
        let bytes = encode_parts(
            RecordId(n),
            &meta,
            &StoredPayload::Plain(vec![]),
            &[],
            &[],
            &[],
        )
        .unwrap();
        IndexedRecord {
            id: RecordId(n),
            hash: entry_hash(&ChainHash::GENESIS, &bytes),
            body: RecordBody::Inline(bytes),
            meta,
        }
    }

    #[test]
    fn indexes_and_paging() {
        let (_dir, s) = store();
        let batch: Vec<_> = (1..=30)
            .map(|n| {
                let client = if n % 3 == 0 { "EE/GOV/A" } else { "EE/GOV/B" };
                rec(
                    n,
                    client,
                    if n % 2 == 0 { "u2" } else { "u1" },
                    1000 + (30 - n as i64),
                )
            })
            .collect();
        s.insert_batch(&batch).unwrap();
        assert_eq!(s.last().unwrap().unwrap().0, RecordId(30));
        assert_eq!(
            s.get(RecordId(7)).unwrap().unwrap().meta.message_id,
            "msg-7"
        );

        let page = s
            .query(&Query::new(QueryFilter::MessageId("msg-12".into()), 10))
            .unwrap();
        assert_eq!(page.records.len(), 1);
        assert_eq!(page.records[0].id, RecordId(12));

        // Client A has 10 records; pages of 4 in time order (newer ids have older times).
        let mut q = Query::new(QueryFilter::Client("EE/GOV/A".into()), 4);
        let mut seen = Vec::new();
        loop {
            let p = s.query(&q).unwrap();
            seen.extend(p.records.iter().map(|r| r.id.0));
            match p.next {
                Some(c) => q.after = Some(c),
                None => break,
            }
        }
        assert_eq!(seen, vec![30, 27, 24, 21, 18, 15, 12, 9, 6, 3]);

        // Time range on a user index: u1 = odd ids; time in [1010, 1020) = ids 11..=20.
        let mut q = Query::new(QueryFilter::User("u1".into()), 100);
        q.from = Some(OffsetDateTime::from_unix_timestamp(1010).unwrap());
        q.to = Some(OffsetDateTime::from_unix_timestamp(1020).unwrap());
        let ids: Vec<u64> = s
            .query(&q)
            .unwrap()
            .records
            .iter()
            .map(|r| r.id.0)
            .collect();
        assert_eq!(ids, vec![19, 17, 15, 13, 11]);

        let all = s.query(&Query::new(QueryFilter::All, 1000)).unwrap();
        assert_eq!(all.records.len(), 30);
        assert!(all.next.is_none());

        let rid = batch[4].meta.request_id;
        let p = s
            .query(&Query::new(QueryFilter::RequestId(rid), 10))
            .unwrap();
        assert_eq!(p.records.len(), 1);

        assert_eq!(s.range(RecordId(28), 10).unwrap().len(), 3);
    }

    #[test]
    fn timestamps_are_stored_beside_records() {
        let (_dir, s) = store();
        let recs: Vec<_> = (1..=5).map(|n| rec(n, "c", "u", n as i64)).collect();
        s.insert_batch(&recs).unwrap();
        let before = s.get_raw(RecordId(1)).unwrap().unwrap();
        assert_eq!(s.timestamp(RecordId(1)).unwrap(), None);
        assert_eq!(s.timestamp_progress().unwrap(), None);
        let leaves: Vec<_> = recs.iter().map(|r| (r.id, r.hash)).collect();
        s.set_timestamp_batch(9, b"token9", &leaves[..3]).unwrap();
        s.set_timestamp_batch(10, b"token10", &leaves[3..]).unwrap();
        assert_eq!(s.timestamp_progress().unwrap(), Some((10, RecordId(5))));
        // Each record's proof leads from its entry hash to the root of its own batch.
        for (i, (id, hash)) in leaves.iter().enumerate() {
            let (batch, token, range) = if i < 3 {
                (9, &b"token9"[..], 0..3)
            } else {
                (10, &b"token10"[..], 3..5)
            };
            let ts = s.timestamp(*id).unwrap().unwrap();
            assert_eq!((ts.batch_id, ts.token.as_slice()), (batch, token));
            let batch_leaves: Vec<Vec<u8>> =
                leaves[range].iter().map(|(_, h)| h.0.to_vec()).collect();
            let tree = MerkleTree::new(DigestAlgorithm::Sha256, &batch_leaves).unwrap();
            let (proof, root) =
                trustbus_pki::merkle::InclusionProof::from_json(&ts.merkle_proof).unwrap();
            assert_eq!(root, tree.root());
            assert_eq!(proof.root_for(&hash.0).unwrap(), tree.root());
        }
        assert_eq!(s.timestamp(RecordId(6)).unwrap(), None);
        // Leaves must be consecutive records.
        let gap = [leaves[0], leaves[2]];
        assert!(matches!(
            s.set_timestamp_batch(11, b"t", &gap),
            Err(StoreError::Corrupt { .. })
        ));
        // The record and its hash are unchanged.
        assert_eq!(s.get_raw(RecordId(1)).unwrap().unwrap(), before);
    }

    #[test]
    fn per_record_proofs_of_older_versions_are_still_read() {
        let (_dir, s) = store();
        s.insert_batch(&[rec(1, "c", "u", 1), rec(2, "c", "u", 2)])
            .unwrap();
        // What an older version wrote for batch 4 over records 1 and 2.
        s.ts_tokens
            .insert(4u64.to_be_bytes(), &b"old-token"[..])
            .unwrap();
        for (id, proof) in [(1u64, &b"p1"[..]), (2, b"p2")] {
            let mut v = 4u64.to_be_bytes().to_vec();
            v.extend_from_slice(proof);
            s.ts_records.insert(id.to_be_bytes(), v).unwrap();
        }
        assert_eq!(s.timestamp_progress().unwrap(), Some((4, RecordId(2))));
        let ts = s.timestamp(RecordId(2)).unwrap().unwrap();
        assert_eq!(
            (ts.batch_id, ts.token.as_slice(), ts.merkle_proof.as_slice()),
            (4, &b"old-token"[..], &b"p2"[..])
        );
        // New batches continue after them.
        let r3 = rec(3, "c", "u", 3);
        s.insert_batch(std::slice::from_ref(&r3)).unwrap();
        s.set_timestamp_batch(5, b"new", &[(r3.id, r3.hash)])
            .unwrap();
        assert_eq!(s.timestamp_progress().unwrap(), Some((5, RecordId(3))));
        assert_eq!(s.timestamp(RecordId(1)).unwrap().unwrap().batch_id, 4);
        assert_eq!(s.timestamp(RecordId(3)).unwrap().unwrap().batch_id, 5);
    }

    /// An empty store in a temporary directory (kept alive by the returned guard).
    fn store() -> (tempfile::TempDir, SledStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(&dir.path().join("db")).unwrap();
        (dir, s)
    }

    fn ids(s: &SledStore, q: &Query) -> Vec<u64> {
        s.query(q).unwrap().records.iter().map(|r| r.id.0).collect()
    }

    #[test]
    fn removed_records_leave_every_index_and_the_rest_stay_findable() {
        let (_dir, s) = store();
        // Two passes whose times interleave.
        s.insert_batch(&[rec(1, "A", "u", 10), rec(2, "B", "u", 30)])
            .unwrap();
        s.insert_batch(&[rec(3, "A", "u", 20), rec(4, "A", "v", 5)])
            .unwrap();
        s.remove(&[RecordId(1), RecordId(4)]).unwrap();
        assert_eq!(ids(&s, &Query::new(QueryFilter::All, 10)), vec![3, 2]);
        assert_eq!(
            ids(&s, &Query::new(QueryFilter::Client("A".into()), 10)),
            vec![3]
        );
        assert_eq!(
            ids(&s, &Query::new(QueryFilter::User("v".into()), 10)),
            Vec::<u64>::new()
        );
        assert_eq!(
            ids(&s, &Query::new(QueryFilter::MessageId("msg-1".into()), 10)),
            Vec::<u64>::new()
        );
        assert_eq!(s.archived_head().unwrap().unwrap().0, RecordId(4));
    }

    #[test]
    fn a_cursor_this_store_did_not_hand_out_is_refused() {
        let (_dir, s) = store();
        let mut q = Query::new(QueryFilter::All, 10);
        q.after = Some(Cursor(b"garbage".to_vec()));
        assert!(!q.after.as_ref().unwrap().is_well_formed());
        assert!(matches!(s.query(&q), Err(StoreError::InvalidCursor)));
    }

    #[test]
    fn a_store_with_per_record_index_trees_is_converted_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let s = SledStore::open(&path).unwrap();
            s.insert_batch(&[
                rec(1, "A", "u", 10),
                rec(2, "B", "u", 30),
                rec(3, "A", "w", 20),
            ])
            .unwrap();
            // What an older version left: per-record index trees, no posting blocks.
            s.postings.clear().unwrap();
            for name in LEGACY_INDEX_TREES {
                s.db.open_tree(name)
                    .unwrap()
                    .insert(b"old-key", &[][..])
                    .unwrap();
            }
            s.flush().unwrap();
            assert!(ids(&s, &Query::new(QueryFilter::All, 10)).is_empty());
        }
        let s = SledStore::open(&path).unwrap();
        assert_eq!(ids(&s, &Query::new(QueryFilter::All, 10)), vec![1, 3, 2]);
        assert_eq!(
            ids(&s, &Query::new(QueryFilter::Client("A".into()), 10)),
            vec![1, 3]
        );
        assert_eq!(
            ids(&s, &Query::new(QueryFilter::User("w".into()), 10)),
            vec![3]
        );
        let names = s.db.tree_names();
        for name in LEGACY_INDEX_TREES {
            assert!(
                !names.iter().any(|n| n.as_ref() == name.as_bytes()),
                "{name} left"
            );
        }
    }

    /// Records `ids` written as entry frames into a journal segment of their own under `jdir`,
    /// as the indexer hands them to the store.
    fn journal_recs(jdir: &Path, ids: std::ops::RangeInclusive<u64>) -> Vec<IndexedRecord> {
        std::fs::create_dir_all(jdir).unwrap();
        let segment = *ids.start();
        let mut file = vec![0u8; 16];
        let mut prev = ChainHash([7; 32]);
        let mut out = Vec::new();
        for n in ids {
            let mut r = rec(n, "EE/GOV/A", "u", n as i64);
            let RecordBody::Inline(bytes) =
                std::mem::replace(&mut r.body, RecordBody::Inline(vec![]))
            else {
                unreachable!()
            };
            let hash = entry_hash(&prev, &bytes);
            r.hash = hash;
            r.body = RecordBody::Journal {
                segment,
                offset: file.len() as u64,
                len: bytes.len() as u32,
            };
            file.push(journal::TAG_ENTRY);
            file.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
            file.extend_from_slice(&prev.0);
            file.extend_from_slice(&bytes);
            file.extend_from_slice(&hash.0);
            prev = hash;
            out.push(r);
        }
        std::fs::write(journal::segment_path(jdir, segment), file).unwrap();
        out
    }

    /// An empty store with a journal directory beside it.
    fn journal_store() -> (tempfile::TempDir, SledStore) {
        let dir = tempfile::tempdir().unwrap();
        let s =
            SledStore::open_with_journal(&dir.path().join("db"), &dir.path().join("j")).unwrap();
        (dir, s)
    }

    fn keys(t: &sled::Tree) -> Vec<u64> {
        t.iter()
            .map(|kv| be_u64(Some(&kv.unwrap().0)).unwrap())
            .collect()
    }

    fn hash_ids(s: &SledStore, from: u64, limit: usize) -> Vec<u64> {
        s.hashes(RecordId(from), limit)
            .unwrap()
            .iter()
            .map(|(id, _)| id.0)
            .collect()
    }

    #[test]
    fn journal_records_are_stored_one_run_per_pass() {
        let (dir, s) = journal_store();
        let jdir = dir.path().join("j");
        let first = journal_recs(&jdir, 1..=5);
        let second = journal_recs(&jdir, 6..=8);
        s.insert_batch(&first).unwrap();
        s.insert_batch(&second).unwrap();
        assert_eq!(keys(&s.runs), vec![1, 6]);
        assert!(s.records.is_empty());
        for r in first.iter().chain(&second) {
            let raw = s.get_raw(r.id).unwrap().unwrap();
            assert_eq!(raw.hash, r.hash);
            assert_eq!(
                record::decode(&raw.bytes).unwrap().meta.message_id,
                r.meta.message_id
            );
        }
        assert_eq!(s.get_raw(RecordId(9)).unwrap(), None);
        assert_eq!(s.last().unwrap(), Some((RecordId(8), second[2].hash)));
        assert_eq!(hash_ids(&s, 4, 3), vec![4, 5, 6]);
        assert_eq!(hash_ids(&s, 0, 100), (1..=8).collect::<Vec<_>>());
        let got: Vec<u64> = s
            .range(RecordId(6), 10)
            .unwrap()
            .iter()
            .map(|r| r.id.0)
            .collect();
        assert_eq!(got, vec![6, 7, 8]);
        assert_eq!(
            ids(&s, &Query::new(QueryFilter::All, 100)),
            (1..=8).collect::<Vec<_>>()
        );

        // A pass replayed after a crash, overlapping what is stored: only the new ids are added,
        // and nothing stored is rewritten.
        let more = journal_recs(&jdir, 9..=10);
        let replayed: Vec<_> = second.iter().chain(&more).cloned().collect();
        s.insert_batch(&replayed).unwrap();
        assert_eq!(keys(&s.runs), vec![1, 6, 9]);
        assert_eq!(hash_ids(&s, 0, 100), (1..=10).collect::<Vec<_>>());
        // A pass longer than one run is split.
        let long = journal_recs(&jdir, 11..=11 + runs::MAX_RUN as u64);
        s.insert_batch(&long).unwrap();
        assert_eq!(keys(&s.runs), vec![1, 6, 9, 11, 11 + runs::MAX_RUN as u64]);
        assert_eq!(
            s.last().unwrap().unwrap().0,
            RecordId(11 + runs::MAX_RUN as u64)
        );
    }

    #[test]
    fn archived_records_leave_their_runs() {
        let (dir, s) = journal_store();
        let jdir = dir.path().join("j");
        s.insert_batch(&journal_recs(&jdir, 1..=5)).unwrap();
        s.insert_batch(&journal_recs(&jdir, 6..=8)).unwrap();
        s.remove(&[RecordId(6), RecordId(2), RecordId(1), RecordId(4)])
            .unwrap();
        assert_eq!(keys(&s.runs), vec![3, 7]);
        for (id, present) in [
            (1, false),
            (2, false),
            (3, true),
            (4, false),
            (5, true),
            (6, false),
        ] {
            assert_eq!(
                s.get_raw(RecordId(id)).unwrap().is_some(),
                present,
                "record {id}"
            );
        }
        assert_eq!(hash_ids(&s, 0, 100), vec![3, 5, 7, 8]);
        assert_eq!(
            ids(&s, &Query::new(QueryFilter::All, 100)),
            vec![3, 5, 7, 8]
        );
        assert_eq!(s.archived_head().unwrap().unwrap().0, RecordId(6));
        s.remove(&[RecordId(3), RecordId(5), RecordId(7), RecordId(8)])
            .unwrap();
        assert!(s.runs.is_empty());
        assert_eq!(s.last().unwrap(), None);
        assert_eq!(s.archived_head().unwrap().unwrap().0, RecordId(8));
    }

    #[test]
    fn per_record_values_of_older_versions_are_read_beside_runs() {
        let (dir, s) = journal_store();
        let jdir = dir.path().join("j");
        let old = journal_recs(&jdir, 1..=2);
        // What a version before runs wrote: one journal pointer per record.
        for r in &old {
            s.records
                .insert(
                    r.id.0.to_be_bytes(),
                    SledStore::encode_value(&r.hash, &r.body),
                )
                .unwrap();
        }
        assert_eq!(s.last().unwrap(), Some((RecordId(2), old[1].hash)));
        s.insert_batch(&journal_recs(&jdir, 3..=4)).unwrap();
        assert_eq!(s.last().unwrap().unwrap().0, RecordId(4));
        assert_eq!(hash_ids(&s, 0, 100), vec![1, 2, 3, 4]);
        assert_eq!(hash_ids(&s, 2, 2), vec![2, 3]);
        assert_eq!(s.get_raw(RecordId(1)).unwrap().unwrap().hash, old[0].hash);
        s.remove(&[RecordId(1), RecordId(3)]).unwrap();
        assert_eq!(hash_ids(&s, 0, 100), vec![2, 4]);
        assert_eq!(keys(&s.records), vec![2]);
        assert_eq!(keys(&s.runs), vec![4]);
    }

    #[test]
    fn a_damaged_run_is_reported_not_served() {
        let (dir, s) = journal_store();
        s.insert_batch(&journal_recs(&dir.path().join("j"), 1..=3))
            .unwrap();
        s.runs.insert(1u64.to_be_bytes(), &[1u8, 2, 3][..]).unwrap();
        let err = s.get_raw(RecordId(2)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "stored record 1 is damaged: record run 1: length is not a whole number of slots"
        );
        assert!(matches!(s.last(), Err(StoreError::Corrupt { .. })));
    }

    #[test]
    fn a_changed_journal_entry_is_reported_not_served() {
        let (dir, s) = journal_store();
        let jdir = dir.path().join("j");
        let recs = journal_recs(&jdir, 1..=2);
        s.insert_batch(&recs).unwrap();
        let path = journal::segment_path(&jdir, 1);
        let mut bytes = std::fs::read(&path).unwrap();
        let RecordBody::Journal { offset, .. } = recs[1].body else {
            unreachable!()
        };
        bytes[offset as usize + 40] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        assert!(s.get_raw(RecordId(1)).unwrap().is_some());
        assert!(matches!(
            s.get_raw(RecordId(2)),
            Err(StoreError::Corrupt {
                id: RecordId(2),
                ..
            })
        ));
    }
}
