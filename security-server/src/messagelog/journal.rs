//! The durable journal: append-only segment files, written by one thread under group commit.
//!
//! Layout (details in `docs/message-log.md`):
//!
//! ```text
//! journal/00000001.seg, 00000002.seg, ...       (segment number, 8 decimal digits)
//! segment = header(32) frame*
//! header  = "TBJSEG01" | segment_no u64 | first_id u64 | SHA-256(previous 24 bytes)[..8]
//! entry   = 'E' | len u32 | prev_hash[32] | record[len] | entry_hash[32]
//!           entry_hash = SHA-256(prev_hash ‖ record)
//! mark    = 'S' | "TBSYNC1" | last_id u64 | head_hash[32] | SHA-256(previous 48 bytes)[..8]
//! ```
//!
//! All integers are big-endian. A *sync mark* is written only after the `fdatasync` that made every
//! byte in front of it durable (it rides along with the next write), so on recovery an unreadable
//! frame that is followed by a valid mark lies in synced data (corruption: refuse to start), while
//! one with no valid mark after it is an unsynced torn tail (never acknowledged: truncate).
//!
//! The writer is a dedicated std thread (fsync blocks). Appenders send records through a channel
//! and wait on a oneshot; the thread takes everything queued (up to `max_batch`), writes it with
//! one `write`, calls `File::sync_data` (fdatasync) once, and then acknowledges the whole batch.
//!
//! The open segment keeps up to [`PREALLOC_STEP`] of zero bytes after its last frame: a write
//! that stays inside the file's size lets the fdatasync skip the inode update, which on ext4 is a
//! second device write that every sync would otherwise wait for. Zero bytes running to the end
//! of a segment are unused space, not data; a sealed or cleanly closed segment has none.

use super::LogError;
use super::chain::{self, ChainHash, ChainHead};
use super::record::{self, RecordId, RecordMeta};
use super::store::{IndexedRecord, RecordBody};
use ring::digest;
use rustix::fs::{Advice, fadvise};
use std::fs::{File, OpenOptions};
use std::io;
use std::num::NonZeroU64;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Default segment size: a new segment is started once the current one would pass 64 MiB.
pub const DEFAULT_SEGMENT_SIZE: u64 = 64 << 20;
/// Default largest group-commit batch.
pub const DEFAULT_MAX_BATCH: usize = 256;

/// How far the open segment's file is grown ahead of its data, in zero bytes, whenever a write
/// would pass its end. Small enough that the one sync carrying the zeros is barely slower
/// (measured on a virtio disk: 32 KiB kept the sync's p99 where plain appends had it, while the
/// other syncs, now without an inode update, took about a third less time and CPU).
pub(crate) const PREALLOC_STEP: u64 = 32 << 10;
/// Synced data more than this far behind the end of the data is dropped from the page cache
/// after each sync, in steps of this size. The writer never reads it back, and page-cache pages
/// recycled soon after they are freed are cheaper to fill than fresh ones: on this project's VM a
/// write-and-sync loop spent 30 to 45 % less system CPU with it. The step holding the end of the
/// data stays cached, so the next write never has to read a partial page from disk.
pub(crate) const DROP_BEHIND_STEP: u64 = 64 << 10;
/// Segment header magic.
pub(crate) const SEGMENT_MAGIC: [u8; 8] = *b"TBJSEG01";
/// Segment header length.
pub(crate) const HEADER_LEN: usize = 32;
/// Entry frame tag.
pub(crate) const TAG_ENTRY: u8 = b'E';
/// Sync mark frame tag.
pub(crate) const TAG_MARK: u8 = b'S';
/// Magic after a sync mark's tag.
pub(crate) const MARK_MAGIC: [u8; 7] = *b"TBSYNC1";
/// Length of a sync mark frame.
pub(crate) const MARK_LEN: usize = 56;
/// Bytes an entry frame adds around its record.
pub(crate) const ENTRY_OVERHEAD: usize = 1 + 4 + 32 + 32;

/// When an append is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Acknowledge only after the `fdatasync` that covers the record (the default). An
    /// acknowledged record survives a process crash, a kernel crash and a power loss.
    #[default]
    Sync,
    /// Acknowledge after the record is written to the file (the kernel's page cache) and sync at
    /// most `max_delay` later. Survives a process crash (kill -9); on a kernel crash or power loss
    /// the records acknowledged in the last `max_delay` (plus the sync time) can be lost, and the
    /// chain then ends before them (still valid, never silently broken).
    Relaxed {
        /// Longest time between a write and the sync that covers it.
        max_delay: Duration,
    },
}

/// The journal directory inside a message-log directory.
pub(crate) fn journal_dir(dir: &Path) -> PathBuf {
    dir.join("journal")
}

/// The file of segment `no`.
pub(crate) fn segment_path(jdir: &Path, no: u64) -> PathBuf {
    jdir.join(format!("{no:08}.seg"))
}

/// The segment files in `jdir`, sorted by number (an absent directory has none).
pub(crate) fn list_segments(jdir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(jdir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for ent in rd {
        let ent = ent?;
        let name = ent.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name.strip_suffix(".seg") else {
            continue;
        };
        if stem.len() == 8
            && stem.bytes().all(|b| b.is_ascii_digit())
            && let Ok(no) = stem.parse::<u64>()
        {
            out.push((no, ent.path()));
        }
    }
    out.sort();
    Ok(out)
}

fn check8(bytes: &[u8]) -> [u8; 8] {
    let d = digest::digest(&digest::SHA256, bytes);
    let mut out = [0u8; 8];
    out.copy_from_slice(&d.as_ref()[..8]);
    out
}

/// A parsed segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    pub(crate) segment_no: u64,
    pub(crate) first_id: RecordId,
}

fn encode_header(h: &SegmentHeader) -> [u8; HEADER_LEN] {
    let mut out = [0u8; HEADER_LEN];
    out[..8].copy_from_slice(&SEGMENT_MAGIC);
    out[8..16].copy_from_slice(&h.segment_no.to_be_bytes());
    out[16..24].copy_from_slice(&h.first_id.0.to_be_bytes());
    let c = check8(&out[..24]);
    out[24..].copy_from_slice(&c);
    out
}

fn parse_header(buf: &[u8]) -> Result<SegmentHeader, String> {
    let h = buf
        .get(..HEADER_LEN)
        .ok_or_else(|| format!("file is {} bytes, shorter than the header", buf.len()))?;
    if h[..8] != SEGMENT_MAGIC {
        return Err("bad magic".into());
    }
    if h[24..] != check8(&h[..24]) {
        return Err("header check value mismatch".into());
    }
    Ok(SegmentHeader {
        segment_no: be_u64(&h[8..16]),
        first_id: RecordId(be_u64(&h[16..24])),
    })
}

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

fn hash_at(b: &[u8]) -> ChainHash {
    let mut a = [0u8; 32];
    a.copy_from_slice(&b[..32]);
    ChainHash(a)
}

/// True when `buf` is a segment whose creation never completed: header-sized or shorter and not a
/// valid header (the header is synced before any entry is written to a new segment).
pub(crate) fn is_torn_creation(buf: &[u8]) -> bool {
    buf.len() <= HEADER_LEN && parse_header(buf).is_err()
}

/// One frame read from a segment.
#[derive(Debug, Clone)]
pub(crate) enum Frame {
    /// A record entry (its self-hash already checked).
    Entry {
        offset: u64,
        prev: ChainHash,
        record: Range<usize>,
        hash: ChainHash,
    },
    /// A sync mark (its check value already checked).
    Mark {
        offset: u64,
        last_id: RecordId,
        head: ChainHash,
    },
}

impl Frame {
    /// Byte offset of the frame in its segment.
    pub(crate) fn offset(&self) -> u64 {
        match self {
            Frame::Entry { offset, .. } | Frame::Mark { offset, .. } => *offset,
        }
    }
}

/// Why a frame could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FrameFault {
    #[error("unknown frame tag 0x{0:02x}")]
    BadTag(u8),
    #[error("frame runs past the end of the file ({needed} bytes needed, {available} available)")]
    Truncated { needed: u64, available: u64 },
    #[error("record length {0} exceeds the maximum")]
    TooLarge(u64),
    #[error("record {record_id}: entry hash mismatch (stored {stored}, computed {computed})")]
    HashMismatch {
        record_id: RecordId,
        stored: ChainHash,
        computed: ChainHash,
    },
    #[error("sync mark damaged")]
    BadMark,
}

/// A segment read into frames, up to the first unreadable one.
#[derive(Debug)]
pub(crate) struct SegmentScan {
    pub(crate) header: Result<SegmentHeader, String>,
    pub(crate) frames: Vec<Frame>,
    /// The offset and reason of the first unreadable frame, if the scan did not reach the end.
    pub(crate) stop: Option<(u64, FrameFault)>,
    /// Where the frames end: the buffer's length, or where its zero-filled unused tail begins
    /// (meaningful when `stop` is `None`).
    pub(crate) end: u64,
}

/// Reads the frame at `off` (an entry's self-hash is checked) and returns it with its length.
pub(crate) fn read_frame(buf: &[u8], off: usize) -> Result<(Frame, usize), FrameFault> {
    let avail = (buf.len() - off) as u64;
    let truncated = |needed: usize| FrameFault::Truncated {
        needed: needed as u64,
        available: avail,
    };
    let rest = &buf[off..];
    match rest[0] {
        TAG_ENTRY => {
            let len_bytes = rest.get(1..5).ok_or_else(|| truncated(5))?;
            let len = u32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]])
                as usize;
            if len > record::MAX_RECORD_LEN {
                return Err(FrameFault::TooLarge(len as u64));
            }
            let total = ENTRY_OVERHEAD + len;
            if rest.len() < total {
                return Err(truncated(total));
            }
            let prev = hash_at(&rest[5..37]);
            let rec = &rest[37..37 + len];
            let stored = hash_at(&rest[37 + len..]);
            let computed = chain::entry_hash(&prev, rec);
            if computed != stored {
                return Err(FrameFault::HashMismatch {
                    record_id: record::peek_id(rec).unwrap_or(RecordId(0)),
                    stored,
                    computed,
                });
            }
            let start = off + 37;
            Ok((
                Frame::Entry {
                    offset: off as u64,
                    prev,
                    record: start..start + len,
                    hash: stored,
                },
                total,
            ))
        }
        TAG_MARK => {
            let m = rest.get(..MARK_LEN).ok_or_else(|| truncated(MARK_LEN))?;
            parse_mark(m)
                .map(|(last_id, head)| {
                    (
                        Frame::Mark {
                            offset: off as u64,
                            last_id,
                            head,
                        },
                        MARK_LEN,
                    )
                })
                .ok_or(FrameFault::BadMark)
        }
        other => Err(FrameFault::BadTag(other)),
    }
}

fn parse_mark(m: &[u8]) -> Option<(RecordId, ChainHash)> {
    if m.len() < MARK_LEN || m[0] != TAG_MARK || m[1..8] != MARK_MAGIC {
        return None;
    }
    if m[48..56] != check8(&m[..48]) {
        return None;
    }
    Some((RecordId(be_u64(&m[8..16])), hash_at(&m[16..48])))
}

fn encode_mark(out: &mut Vec<u8>, head: &ChainHead) {
    let start = out.len();
    out.push(TAG_MARK);
    out.extend_from_slice(&MARK_MAGIC);
    out.extend_from_slice(&head.last_id.0.to_be_bytes());
    out.extend_from_slice(&head.hash.0);
    let c = check8(&out[start..]);
    out.extend_from_slice(&c);
}

/// Reads a whole segment buffer into frames.
pub(crate) fn scan_segment(buf: &[u8]) -> SegmentScan {
    let header = parse_header(buf);
    let mut frames = Vec::new();
    let mut stop = None;
    let mut end = buf.len();
    if header.is_ok() {
        let mut off = HEADER_LEN;
        while off < buf.len() {
            if buf[off] == 0 && buf[off..].iter().all(|&b| b == 0) {
                // The open segment's preallocated space (see `PREALLOC_STEP`).
                end = off;
                break;
            }
            match read_frame(buf, off) {
                Ok((f, n)) => {
                    frames.push(f);
                    off += n;
                }
                Err(fault) => {
                    stop = Some((off as u64, fault));
                    break;
                }
            }
        }
    }
    SegmentScan {
        header,
        frames,
        stop,
        end: end as u64,
    }
}

/// True if a valid sync mark starts anywhere after `offset` in `buf` (used only to classify an
/// unreadable frame; a byte-wise search, because the damaged frame's length cannot be trusted).
pub(crate) fn valid_mark_after(buf: &[u8], offset: usize) -> bool {
    let mut i = offset.saturating_add(1);
    while i + MARK_LEN <= buf.len() {
        if buf[i] == TAG_MARK && buf[i + 1..i + 8] == MARK_MAGIC && parse_mark(&buf[i..]).is_some()
        {
            return true;
        }
        i += 1;
    }
    false
}

/// Syncs a directory so that a file created in it survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A record waiting to be written: encoded with id 0, the writer patches in its id.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) bytes: Vec<u8>,
    pub(crate) meta: RecordMeta,
    pub(crate) ack: Ack,
    /// Written at once but not synced on its own account: the next sync (for a later record,
    /// a [`WriterMsg::Flush`] or [`DEFER_MAX`]) covers and acknowledges it.
    pub(crate) defer: bool,
}

/// The longest a deferred record waits for a sync to cover it.
pub(crate) const DEFER_MAX: Duration = Duration::from_millis(20);

/// A message to the writer thread.
#[derive(Debug)]
pub(crate) enum WriterMsg {
    /// Boxed: a pending record is much larger than the shutdown variant.
    Append(Box<Pending>),
    /// Sync, write a final mark, sync again, and stop.
    Shutdown(oneshot::Sender<Result<(), LogError>>),
    /// Sync now if a deferred record is waiting (someone waits for it).
    Flush,
}

/// The open, last segment and the chain state the writer continues from.
#[derive(Debug)]
pub(crate) struct SegmentWriter {
    jdir: PathBuf,
    segment_no: u64,
    file: File,
    /// End of the data: where the next frame is written.
    len: u64,
    /// The file's size: `len` plus the zero bytes preallocated after it.
    alloc: u64,
    entries: u64,
    head: ChainHead,
    segment_size: u64,
    /// A mark for the last completed sync, to be written in front of the next batch.
    pending_mark: Option<ChainHead>,
    /// Everything before this offset has been dropped from the page cache (see
    /// [`DROP_BEHIND_STEP`]).
    dropped: u64,
}

impl SegmentWriter {
    /// Creates segment `no` whose first record will be `head.last_id + 1`, syncing file and dir.
    pub(crate) fn create(
        jdir: &Path,
        no: u64,
        head: ChainHead,
        segment_size: u64,
    ) -> io::Result<Self> {
        std::fs::create_dir_all(jdir)?;
        let path = segment_path(jdir, no);
        let file = OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&path)?;
        file.write_all_at(
            &encode_header(&SegmentHeader {
                segment_no: no,
                first_id: head.last_id.next(),
            }),
            0,
        )?;
        file.sync_data()?;
        sync_dir(jdir)?;
        Ok(Self {
            jdir: jdir.to_path_buf(),
            segment_no: no,
            file,
            len: HEADER_LEN as u64,
            alloc: HEADER_LEN as u64,
            entries: 0,
            head,
            segment_size,
            pending_mark: None,
            dropped: 0,
        })
    }

    /// Reopens segment `no` for appending after its first `valid_len` bytes (anything after them,
    /// a torn tail or unused preallocated space, is cut off and the cut synced).
    pub(crate) fn resume(
        jdir: &Path,
        no: u64,
        valid_len: u64,
        entries: u64,
        head: ChainHead,
        segment_size: u64,
    ) -> io::Result<Self> {
        let path = segment_path(jdir, no);
        let file = OpenOptions::new().write(true).open(&path)?;
        if file.metadata()?.len() != valid_len {
            file.set_len(valid_len)?;
            file.sync_all()?;
        }
        Ok(Self {
            jdir: jdir.to_path_buf(),
            segment_no: no,
            file,
            len: valid_len,
            alloc: valid_len,
            entries,
            head,
            segment_size,
            pending_mark: None,
            dropped: 0,
        })
    }

    /// The head after everything appended so far (synced or not).
    pub(crate) fn head(&self) -> ChainHead {
        self.head
    }

    /// Writes `bytes` at the end of the data. When they would pass the file's end, zero bytes
    /// (up to [`PREALLOC_STEP`], never past the segment size) are appended to them in the same
    /// write, so that the following syncs overwrite and need no inode update. Not synced.
    fn put(&mut self, bytes: &mut Vec<u8>) -> io::Result<()> {
        let data = bytes.len();
        let end = self.len + data as u64;
        if end > self.alloc {
            let target = (end + PREALLOC_STEP).min(self.segment_size.max(end));
            bytes.resize(data + (target - end) as usize, 0);
            let written = self.file.write_all_at(bytes, self.len);
            bytes.truncate(data);
            written?;
            self.alloc = target;
        } else {
            self.file.write_all_at(bytes, self.len)?;
        }
        self.len = end;
        Ok(())
    }

    /// Syncs, writes a final mark for the now durable head (a mark only ever follows the sync
    /// that covers it), cuts off the preallocated tail so that the segment ends with that mark,
    /// and syncs again.
    fn seal(&mut self) -> io::Result<()> {
        self.file.sync_data()?;
        let mut m = Vec::with_capacity(MARK_LEN);
        encode_mark(&mut m, &self.head);
        self.put(&mut m)?;
        if self.alloc > self.len {
            self.file.set_len(self.len)?;
            self.alloc = self.len;
        }
        self.file.sync_data()
    }

    /// Ends the current segment (sync, mark, sync) and starts the next.
    fn roll(&mut self) -> io::Result<()> {
        self.seal()?;
        let next = Self::create(
            &self.jdir,
            self.segment_no + 1,
            self.head,
            self.segment_size,
        )?;
        *self = next;
        Ok(())
    }

    /// Writes `batch` (assigning ids and hashes), rolling over segments as needed. Not synced.
    pub(crate) fn write_batch(
        &mut self,
        batch: &mut [Pending],
        buf: &mut Vec<u8>,
        out: &mut Vec<(RecordId, ChainHash, RecordBody)>,
    ) -> io::Result<()> {
        buf.clear();
        if let Some(h) = self.pending_mark.take() {
            encode_mark(buf, &h);
        }
        let mut in_buf = 0u64;
        for p in batch.iter_mut() {
            let frame_len = (ENTRY_OVERHEAD + p.bytes.len()) as u64;
            if self.len + buf.len() as u64 + frame_len > self.segment_size
                && self.entries + in_buf > 0
            {
                self.put(buf)?;
                self.entries += in_buf;
                buf.clear();
                in_buf = 0;
                self.roll()?;
            }
            let id = self.head.last_id.next();
            record::patch_id(&mut p.bytes, id);
            let len = u32::try_from(p.bytes.len())
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "record too large"))?;
            let hash = chain::entry_hash(&self.head.hash, &p.bytes);
            let at = RecordBody::Journal {
                segment: self.segment_no,
                offset: self.len + buf.len() as u64,
                len,
            };
            buf.push(TAG_ENTRY);
            buf.extend_from_slice(&len.to_be_bytes());
            buf.extend_from_slice(&self.head.hash.0);
            buf.extend_from_slice(&p.bytes);
            buf.extend_from_slice(&hash.0);
            self.head = ChainHead { last_id: id, hash };
            in_buf += 1;
            out.push((id, hash, at));
        }
        self.put(buf)?;
        self.entries += in_buf;
        Ok(())
    }

    /// fdatasync; afterwards a mark for the synced head is queued for the next write.
    pub(crate) fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()?;
        self.pending_mark = Some(self.head);
        Ok(())
    }

    /// Drops whole [`DROP_BEHIND_STEP`]s of synced data before the step that holds the end of
    /// the data. Called after a sync (so the pages are clean and the advice frees them) once its
    /// records are acknowledged, to keep the system call off their path. Advisory: a refusal
    /// changes nothing about what is durable, so it is not an error.
    pub(crate) fn drop_behind(&mut self) {
        let upto = (self.len / DROP_BEHIND_STEP).saturating_sub(1) * DROP_BEHIND_STEP;
        if let Some(len) = upto.checked_sub(self.dropped).and_then(NonZeroU64::new) {
            if let Err(e) = fadvise(&self.file, self.dropped, Some(len), Advice::DontNeed) {
                tracing::debug!(error = %e, "journal: dropping synced pages from the cache failed");
            }
            self.dropped = upto;
        }
    }

    /// Where the page cache has been dropped up to (tests).
    #[cfg(test)]
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Seals the segment for a clean shutdown; its final mark supersedes the queued one.
    pub(crate) fn close(&mut self) -> io::Result<()> {
        self.seal()?;
        self.pending_mark = None;
        Ok(())
    }
}

/// State shared between the writer thread and the `MessageLog` handle.
#[derive(Debug)]
pub(crate) struct WriterShared {
    /// The head covered by the last completed fdatasync.
    pub(crate) durable_head: Mutex<ChainHead>,
    /// Set when a write or sync failed: the log then refuses every append (fail closed).
    pub(crate) failed: AtomicBool,
}

/// Writer-thread settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WriterConfig {
    pub(crate) durability: Durability,
    pub(crate) max_batch: usize,
}

/// Where committed records go after their sync (the index updater); called before the acks.
pub(crate) type CommitSink = Box<dyn FnMut(Vec<IndexedRecord>) + Send>;

/// How the writer answers one append.
type Ack = oneshot::Sender<Result<RecordId, LogError>>;

/// Hands records a sync has just covered to the store, then acknowledges them.
fn deliver(synced: Vec<(IndexedRecord, Ack)>, sink: &mut CommitSink) {
    let (recs, acks): (Vec<_>, Vec<_>) = synced.into_iter().unzip();
    let ids: Vec<RecordId> = recs.iter().map(|r| r.id).collect();
    sink(recs);
    for (id, a) in ids.into_iter().zip(acks) {
        let _ = a.send(Ok(id));
    }
}

/// The writer thread's loop: group commit until shutdown, channel close or an I/O error.
pub(crate) fn run_writer(
    mut w: SegmentWriter,
    rx: Receiver<WriterMsg>,
    cfg: WriterConfig,
    shared: Arc<WriterShared>,
    mut sink: CommitSink,
) {
    let max_batch = cfg.max_batch.max(1);
    let mut buf = Vec::with_capacity(1 << 20);
    let mut batch: Vec<Pending> = Vec::with_capacity(max_batch);
    let mut ids = Vec::with_capacity(max_batch);
    // Relaxed mode: records written but not yet synced (already acknowledged), oldest write time.
    let mut unsynced: Vec<IndexedRecord> = Vec::new();
    let mut unsynced_since: Option<Instant> = None;
    // Sync mode: records written but not yet covered by a sync, with their acks (only deferred
    // ones stay here past one turn of the loop), and when the oldest was written.
    let mut unacked: Vec<(IndexedRecord, Ack)> = Vec::new();
    let mut unacked_since: Option<Instant> = None;
    let mut shutdown: Option<oneshot::Sender<Result<(), LogError>>> = None;

    let fail = |shared: &WriterShared, e: &io::Error| {
        shared.failed.store(true, Ordering::SeqCst);
        tracing::error!(error = %e, "message log journal write failed; refusing further appends");
    };
    let publish = |shared: &WriterShared, head: ChainHead| {
        if let Ok(mut h) = shared.durable_head.lock() {
            *h = head;
        }
    };

    'outer: loop {
        // Wait for work (Relaxed: at most until the pending sync is due).
        let due = match (cfg.durability, unsynced_since) {
            (Durability::Relaxed { max_delay }, Some(since)) => Some((since, max_delay)),
            _ => unacked_since.map(|since| (since, DEFER_MAX)),
        };
        let first = match due {
            Some((since, max_delay)) => {
                let wait = max_delay.saturating_sub(since.elapsed());
                match rx.recv_timeout(wait) {
                    Ok(m) => Some(m),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break 'outer,
                }
            }
            None => match rx.recv() {
                Ok(m) => Some(m),
                Err(_) => break 'outer,
            },
        };
        let mut flush = first.is_none();
        let mut msg = first;
        while let Some(m) = msg.take() {
            match m {
                WriterMsg::Append(p) => batch.push(*p),
                WriterMsg::Flush => flush = true,
                WriterMsg::Shutdown(tx) => {
                    shutdown = Some(tx);
                    break;
                }
            }
            if batch.len() >= max_batch {
                break;
            }
            msg = rx.try_recv().ok();
        }

        let eager = batch.iter().any(|p| !p.defer);
        if !batch.is_empty() {
            ids.clear();
            if let Err(e) = w.write_batch(&mut batch, &mut buf, &mut ids) {
                fail(&shared, &e);
                for p in batch.drain(..) {
                    let _ = p.ack.send(Err(LogError::Failed));
                }
                break 'outer;
            }
            let committed: Vec<(IndexedRecord, Ack)> = batch
                .drain(..)
                .zip(ids.drain(..))
                .map(|(p, (id, hash, at))| {
                    (
                        IndexedRecord {
                            id,
                            hash,
                            body: at,
                            meta: p.meta,
                        },
                        p.ack,
                    )
                })
                .collect();
            match cfg.durability {
                Durability::Sync => {
                    unacked.extend(committed);
                    unacked_since.get_or_insert_with(Instant::now);
                }
                Durability::Relaxed { .. } => {
                    for (r, a) in committed {
                        let _ = a.send(Ok(r.id));
                        unsynced.push(r);
                    }
                    unsynced_since.get_or_insert_with(Instant::now);
                }
            }
        }

        // Sync mode: everything written so far is synced and acknowledged together, unless all
        // of it was deferred and nobody asked yet.
        let sync_due = unacked_since.is_some_and(|since| since.elapsed() >= DEFER_MAX);
        if !unacked.is_empty() && (eager || flush || sync_due || shutdown.is_some()) {
            if let Err(e) = w.sync() {
                fail(&shared, &e);
                break 'outer;
            }
            publish(&shared, w.head());
            unacked_since = None;
            deliver(std::mem::take(&mut unacked), &mut sink);
            w.drop_behind();
        }
        if let (Durability::Relaxed { max_delay }, Some(since)) = (cfg.durability, unsynced_since)
            && (since.elapsed() >= max_delay || shutdown.is_some())
        {
            if let Err(e) = w.sync() {
                fail(&shared, &e);
                break 'outer;
            }
            publish(&shared, w.head());
            sink(std::mem::take(&mut unsynced));
            unsynced_since = None;
            w.drop_behind();
        }
        if shutdown.is_some() {
            break 'outer;
        }
    }

    // Drain: a clean stop (shutdown or every handle dropped) syncs and seals with a mark.
    let failed = shared.failed.load(Ordering::SeqCst);
    let result = if failed {
        Err(LogError::Failed)
    } else {
        match w.close() {
            Ok(()) => {
                publish(&shared, w.head());
                if !unsynced.is_empty() {
                    sink(std::mem::take(&mut unsynced));
                }
                if !unacked.is_empty() {
                    deliver(std::mem::take(&mut unacked), &mut sink);
                }
                Ok(())
            }
            Err(e) => {
                fail(&shared, &e);
                Err(LogError::Failed)
            }
        }
    };
    // Written but never covered by a sync (a write or sync failed): refused.
    for (_, a) in unacked.drain(..) {
        let _ = a.send(Err(LogError::Failed));
    }
    if let Some(tx) = shutdown {
        let _ = tx.send(result);
    }
    // Anything still queued after a failure or shutdown is refused.
    while let Ok(m) = rx.try_recv() {
        match m {
            WriterMsg::Append(p) => {
                let _ = p.ack.send(Err(LogError::Closed));
            }
            WriterMsg::Shutdown(tx) => {
                let _ = tx.send(Err(LogError::Closed));
            }
            WriterMsg::Flush => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    /// A segment: header, one entry per record (chained from genesis), a mark for the head.
    fn segment(records: &[Vec<u8>]) -> Vec<u8> {
        let mut b = encode_header(&SegmentHeader {
            segment_no: 1,
            first_id: RecordId(1),
        })
        .to_vec();
        let mut head = ChainHead::EMPTY;
        for r in records {
            let hash = chain::entry_hash(&head.hash, r);
            b.push(TAG_ENTRY);
            b.extend_from_slice(&(r.len() as u32).to_be_bytes());
            b.extend_from_slice(&head.hash.0);
            b.extend_from_slice(r);
            b.extend_from_slice(&hash.0);
            head = ChainHead {
                last_id: head.last_id.next(),
                hash,
            };
        }
        encode_mark(&mut b, &head);
        b
    }

    /// Synced data is dropped from the page cache in whole steps, never the step holding the
    /// end of the data (the next write lands there), and what was dropped still reads back.
    #[test]
    fn synced_data_behind_the_end_is_dropped_in_whole_steps() {
        let dir = tempfile::tempdir().unwrap();
        let jdir = journal_dir(dir.path());
        let mut w = SegmentWriter::create(&jdir, 1, ChainHead::EMPTY, 64 << 20).unwrap();
        let (mut buf, mut out) = (Vec::new(), Vec::new());
        let mut n = 0u64;
        let mut expected = Vec::new();
        while w.len < 5 * DROP_BEHIND_STEP + DROP_BEHIND_STEP / 2 {
            n += 1;
            let meta = record::tests::sample_meta(n);
            let bytes = record::encode_parts(
                RecordId(0),
                &meta,
                &record::StoredPayload::Plain(vec![b'x'; 3000]),
                b"<ASiCManifest/>",
                &[0x30, 3, 1, 2, 3],
                &[],
            )
            .unwrap();
            let (ack, _) = oneshot::channel();
            let mut batch = vec![Pending {
                bytes,
                meta,
                ack,
                defer: false,
            }];
            w.write_batch(&mut batch, &mut buf, &mut out).unwrap();
            expected.push(batch.remove(0).bytes);
            let before = w.dropped();
            w.sync().unwrap();
            w.drop_behind();
            let end_step = w.len / DROP_BEHIND_STEP * DROP_BEHIND_STEP;
            assert_eq!(w.dropped() % DROP_BEHIND_STEP, 0);
            assert!(w.dropped() >= before);
            assert!(w.dropped() + DROP_BEHIND_STEP <= end_step.max(DROP_BEHIND_STEP));
            assert_eq!(
                w.dropped(),
                end_step.saturating_sub(DROP_BEHIND_STEP),
                "everything synced before the last step is dropped"
            );
        }
        assert_eq!(w.dropped(), 4 * DROP_BEHIND_STEP);
        w.close().unwrap();
        let b = std::fs::read(segment_path(&jdir, 1)).unwrap();
        let scan = scan_segment(&b);
        assert_eq!((scan.end as usize, scan.stop), (b.len(), None));
        let records: Vec<Vec<u8>> = scan
            .frames
            .iter()
            .filter_map(|f| match f {
                Frame::Entry { record, .. } => Some(b[record.clone()].to_vec()),
                Frame::Mark { .. } => None,
            })
            .collect();
        assert_eq!(
            records, expected,
            "every record reads back after its pages were dropped"
        );
    }

    proptest! {
        /// Zero bytes after the last frame change nothing but where the data is said to end.
        #[test]
        fn a_zero_tail_is_unused_space(
            records in vec(vec(any::<u8>(), 0..200), 0..6),
            zeros in 1usize..5000,
        ) {
            let clean = segment(&records);
            let mut padded = clean.clone();
            padded.resize(clean.len() + zeros, 0);
            let (a, b) = (scan_segment(&clean), scan_segment(&padded));
            prop_assert!(a.stop.is_none() && b.stop.is_none());
            prop_assert_eq!(a.end, clean.len() as u64);
            prop_assert_eq!(b.end, clean.len() as u64);
            prop_assert_eq!(format!("{:?}", a.frames), format!("{:?}", b.frames));
        }

        /// Whatever follows a valid header and frame, the scan does not panic, every frame lies
        /// in front of where it stops, and a clean end is followed by zero bytes only.
        #[test]
        fn scanning_any_tail_is_consistent(
            tail in vec(any::<u8>(), 0..600),
            mostly_zeros in any::<bool>(),
        ) {
            let mut b = segment(&[b"record".to_vec()]);
            let frames_before = scan_segment(&b).frames.len();
            if mostly_zeros {
                b.extend(tail.iter().map(|&x| if x < 240 { 0 } else { x }));
            } else {
                b.extend_from_slice(&tail);
            }
            let s = scan_segment(&b);
            prop_assert!(s.frames.len() >= frames_before);
            let limit = match &s.stop {
                Some((off, _)) => *off,
                None => s.end,
            };
            prop_assert!(limit <= b.len() as u64);
            for f in &s.frames {
                prop_assert!(f.offset() < limit);
            }
            if s.stop.is_none() {
                prop_assert!(b[s.end as usize..].iter().all(|&x| x == 0));
            }
        }
    }
}
