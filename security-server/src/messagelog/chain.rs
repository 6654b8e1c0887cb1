//! Hash chaining of journal entries and whole-journal verification.
//!
//! Entry `n` stores `prev_hash` (the entry hash of record `n-1`, 32 zero bytes for record 1) and
//! `entry_hash = SHA-256(prev_hash ‖ record_bytes)`. Because each hash covers the previous one,
//! the latest hash (the chain head) commits to every record before it: timestamping the head (or a
//! Merkle root over a batch of entry hashes) timestamps the whole log up to that point.
//!
//! [`verify_chain`] walks every segment of a journal and stops at the first problem, naming the
//! segment, byte offset, record id and the expected and found values.

use super::journal::{self, Frame, FrameFault, SegmentScan};
use super::record::{self, RecordError, RecordId};
use ring::digest;
use std::fmt;
use std::path::{Path, PathBuf};

/// A SHA-256 chain hash.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ChainHash(pub [u8; 32]);

impl ChainHash {
    /// The hash that record 1 links to.
    pub const GENESIS: ChainHash = ChainHash([0u8; 32]);

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }
}

impl fmt::Debug for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChainHash({})", self.to_hex())
    }
}

impl fmt::Display for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// `SHA-256(prev ‖ record_bytes)`: the hash of one journal entry.
pub fn entry_hash(prev: &ChainHash, record_bytes: &[u8]) -> ChainHash {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(&prev.0);
    ctx.update(record_bytes);
    let d = ctx.finish();
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    ChainHash(out)
}

/// The end of the chain: the last record id and its entry hash (id 0 and [`ChainHash::GENESIS`]
/// for an empty log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainHead {
    /// Id of the last record (0 when empty).
    pub last_id: RecordId,
    /// Entry hash of the last record.
    pub hash: ChainHash,
}

impl ChainHead {
    /// The head of an empty log.
    pub const EMPTY: ChainHead = ChainHead {
        last_id: RecordId(0),
        hash: ChainHash::GENESIS,
    };
}

/// Where in the journal a finding is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// Segment number (the `NNNNNNNN` of `NNNNNNNN.seg`).
    pub segment: u64,
    /// Byte offset of the frame inside the segment file.
    pub offset: u64,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "segment {:08} offset {}", self.segment, self.offset)
    }
}

/// The first problem found in a journal.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The segment file names are not a gap-free sequence starting anywhere (a segment was deleted
    /// or renamed).
    #[error("segment sequence broken: expected segment {expected:08}, found {found:08}")]
    SegmentMissing {
        /// The segment number that should come next.
        expected: u64,
        /// The one found.
        found: u64,
    },
    /// A segment header is damaged or disagrees with its file name or with the chain.
    #[error("segment {segment:08}: bad header: {reason}")]
    SegmentHeader {
        /// The segment.
        segment: u64,
        /// What is wrong.
        reason: String,
    },
    /// An entry's stored hash is not `SHA-256(prev ‖ record)`: the entry was altered.
    #[error("{at}: record {record_id}: entry hash mismatch (stored {expected}, computed {found})")]
    HashMismatch {
        /// Where.
        at: Location,
        /// The record id read from the entry (may itself be the damaged part).
        record_id: RecordId,
        /// The hash stored in the entry.
        expected: ChainHash,
        /// The hash computed from the entry's bytes.
        found: ChainHash,
    },
    /// An entry does not link to the entry before it (reordering, deletion, insertion).
    #[error(
        "{at}: record {record_id}: broken link (previous entry hash {expected}, entry links to {found})"
    )]
    BrokenLink {
        /// Where.
        at: Location,
        /// The record id read from the entry.
        record_id: RecordId,
        /// The entry hash of the previous record.
        expected: ChainHash,
        /// The `prev_hash` stored in this entry.
        found: ChainHash,
    },
    /// Record ids are not dense and increasing.
    #[error("{at}: expected record {expected}, found record {found}")]
    OutOfSequence {
        /// Where.
        at: Location,
        /// The id that should come next.
        expected: RecordId,
        /// The id found.
        found: RecordId,
    },
    /// A frame inside the synced part of the journal cannot be read (bad tag, length, truncation).
    #[error("{at}: unreadable frame in the synced part of the journal: {reason}")]
    BadFrame {
        /// Where.
        at: Location,
        /// What is wrong.
        reason: String,
    },
    /// A sync mark disagrees with the chain it follows.
    #[error(
        "{at}: sync mark says head is record {mark_id} ({mark_hash}), chain is at record {chain_id} ({chain_hash})"
    )]
    MarkMismatch {
        /// Where.
        at: Location,
        /// Id in the mark.
        mark_id: RecordId,
        /// Hash in the mark.
        mark_hash: ChainHash,
        /// The chain's last id.
        chain_id: RecordId,
        /// The chain's head hash.
        chain_hash: ChainHash,
    },
    /// An entry's hash is right but its record does not decode (written by a faulty writer).
    #[error("{at}: record {record_id} does not decode: {error}")]
    BadRecord {
        /// Where.
        at: Location,
        /// The record id read from the entry.
        record_id: RecordId,
        /// The decoder's error.
        error: RecordError,
    },
    /// The journal does not start at record 1 with the genesis link, and no anchor was given.
    #[error("journal starts at record {first}, not 1 (earlier records archived?)")]
    MissingStart {
        /// The first record id found.
        first: RecordId,
    },
}

impl ChainError {
    /// The location of the finding, when it is inside a segment.
    pub fn location(&self) -> Option<&Location> {
        match self {
            Self::HashMismatch { at, .. }
            | Self::BrokenLink { at, .. }
            | Self::OutOfSequence { at, .. }
            | Self::BadFrame { at, .. }
            | Self::MarkMismatch { at, .. }
            | Self::BadRecord { at, .. } => Some(at),
            _ => None,
        }
    }
}

/// An unsynced, partially written tail found at the end of the last segment (never acknowledged
/// in `Durability::Sync`; recovery truncates it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// Where the torn part starts.
    pub at: Location,
    /// How many bytes it spans.
    pub len: u64,
    /// Why the first torn frame did not read.
    pub reason: String,
}

/// The result of a successful chain verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    /// Number of segment files walked.
    pub segments: u64,
    /// Number of records verified.
    pub records: u64,
    /// The first record id (None when empty).
    pub first_id: Option<RecordId>,
    /// The head the chain ends at.
    pub head: ChainHead,
    /// A torn tail at the end of the last segment, if any (not an error: see [`TornTail`]).
    pub torn_tail: Option<TornTail>,
}

/// Walks entries in order and checks ids and links.
#[derive(Debug, Clone)]
pub(crate) struct ChainWalker {
    pub(crate) head: ChainHead,
    pub(crate) records: u64,
    pub(crate) first_id: Option<RecordId>,
}

impl ChainWalker {
    /// A walker expecting the chain to continue from `head`.
    pub(crate) fn new(head: ChainHead) -> Self {
        Self {
            head,
            records: 0,
            first_id: None,
        }
    }

    /// Checks one entry whose self-hash was already checked by the scanner.
    pub(crate) fn entry(
        &mut self,
        at: &Location,
        prev: &ChainHash,
        record_bytes: &[u8],
        hash: &ChainHash,
    ) -> Result<RecordId, ChainError> {
        let id = record::peek_id(record_bytes).unwrap_or(RecordId(0));
        if *prev != self.head.hash {
            return Err(ChainError::BrokenLink {
                at: at.clone(),
                record_id: id,
                expected: self.head.hash,
                found: *prev,
            });
        }
        let want = self.head.last_id.next();
        if id != want {
            return Err(ChainError::OutOfSequence {
                at: at.clone(),
                expected: want,
                found: id,
            });
        }
        self.head = ChainHead {
            last_id: id,
            hash: *hash,
        };
        self.records += 1;
        self.first_id.get_or_insert(id);
        Ok(id)
    }

    /// Checks a sync mark against the chain.
    pub(crate) fn mark(
        &self,
        at: &Location,
        mark_id: RecordId,
        mark_hash: ChainHash,
    ) -> Result<(), ChainError> {
        if mark_id != self.head.last_id || mark_hash != self.head.hash {
            return Err(ChainError::MarkMismatch {
                at: at.clone(),
                mark_id,
                mark_hash,
                chain_id: self.head.last_id,
                chain_hash: self.head.hash,
            });
        }
        Ok(())
    }
}

/// Maps a scanner fault to a chain error at `at`.
pub(crate) fn fault_error(at: Location, fault: &FrameFault) -> ChainError {
    match fault {
        FrameFault::HashMismatch {
            record_id,
            stored,
            computed,
        } => ChainError::HashMismatch {
            at,
            record_id: *record_id,
            expected: *stored,
            found: *computed,
        },
        other => ChainError::BadFrame {
            at,
            reason: other.to_string(),
        },
    }
}

/// Called for every verified entry: its location, id, entry hash and record bytes.
pub(crate) type EntryVisitor<'a> =
    dyn FnMut(&Location, RecordId, &ChainHash, &[u8]) -> Result<(), ChainError> + 'a;

/// What walking one segment's frames produced.
pub(crate) struct SegmentWalk {
    /// Offset at which valid data ends (the file length when nothing is torn).
    pub(crate) valid_end: u64,
    /// A torn tail, if the segment is the last and ends in one.
    pub(crate) torn: Option<TornTail>,
}

/// Walks one scanned segment through `walker`, checking the header, every entry and mark, and, for
/// the last segment, classifying an unreadable end as a torn tail or as corruption.
///
/// `on_entry` is called for every verified entry (location, id, entry hash, record bytes).
pub(crate) fn walk_segment(
    segment: u64,
    buf: &[u8],
    scan: &SegmentScan,
    is_last: bool,
    walker: &mut ChainWalker,
    decode_records: bool,
    on_entry: &mut EntryVisitor<'_>,
) -> Result<SegmentWalk, ChainError> {
    let header = scan
        .header
        .as_ref()
        .map_err(|reason| ChainError::SegmentHeader {
            segment,
            reason: reason.clone(),
        })?;
    if header.segment_no != segment {
        return Err(ChainError::SegmentHeader {
            segment,
            reason: format!("header names segment {}", header.segment_no),
        });
    }
    let want_first = walker.head.last_id.next();
    if header.first_id != want_first {
        if walker.records == 0 && walker.head == ChainHead::EMPTY {
            return Err(ChainError::MissingStart {
                first: header.first_id,
            });
        }
        return Err(ChainError::SegmentHeader {
            segment,
            reason: format!(
                "first record id {} but the chain continues with {}",
                header.first_id, want_first
            ),
        });
    }
    for frame in &scan.frames {
        let at = Location {
            segment,
            offset: frame.offset(),
        };
        match frame {
            Frame::Entry {
                prev, record, hash, ..
            } => {
                let bytes = &buf[record.clone()];
                let id = walker.entry(&at, prev, bytes, hash)?;
                if decode_records {
                    record::decode(bytes).map_err(|error| ChainError::BadRecord {
                        at: at.clone(),
                        record_id: id,
                        error,
                    })?;
                }
                on_entry(&at, id, hash, bytes)?;
            }
            Frame::Mark { last_id, head, .. } => walker.mark(&at, *last_id, *head)?,
        }
    }
    match &scan.stop {
        None => Ok(SegmentWalk {
            valid_end: scan.end,
            torn: None,
        }),
        Some((offset, fault)) => {
            let at = Location {
                segment,
                offset: *offset,
            };
            // A torn tail is only possible at the end of the last segment and only if no valid
            // sync mark follows: a mark is written after the fdatasync that covered everything before
            // it, so damage in front of a durable mark is damage to synced data.
            if is_last && !journal::valid_mark_after(buf, *offset as usize) {
                Ok(SegmentWalk {
                    valid_end: *offset,
                    torn: Some(TornTail {
                        at,
                        len: buf.len() as u64 - *offset,
                        reason: fault.to_string(),
                    }),
                })
            } else {
                Err(fault_error(at, fault))
            }
        }
    }
}

/// Verifies the whole journal of the message log in `dir` (the directory given to
/// `MessageLog::open`; segments are in `dir/journal`). Read-only; safe to run on a copy or on a
/// stopped server. On a running server the last segment may show a torn tail that is simply being
/// written.
pub fn verify_chain(dir: &Path) -> Result<ChainReport, ChainError> {
    let jdir = journal::journal_dir(dir);
    let segments = journal::list_segments(&jdir).map_err(|source| ChainError::Io {
        path: jdir.clone(),
        source,
    })?;
    verify_segments(segments, &mut |p| std::fs::read(p))
}

/// Verifies a journal whose older segments were archived and removed: the first remaining
/// segment must continue the chain right after `anchor` (the archived head: the last record
/// of the removed segments and its entry hash, as `trustbus verify-archive` reports it).
/// Everything else is as [`verify_chain`].
pub fn verify_chain_from(dir: &Path, anchor: ChainHead) -> Result<ChainReport, ChainError> {
    let jdir = journal::journal_dir(dir);
    let segments = journal::list_segments(&jdir).map_err(|source| ChainError::Io {
        path: jdir.clone(),
        source,
    })?;
    verify_segments_from(segments, anchor, &mut |p| std::fs::read(p))
}

/// The walk behind [`verify_chain`] over a list of segments, reading each through `read`.
pub(crate) fn verify_segments(
    segments: Vec<(u64, PathBuf)>,
    read: &mut dyn FnMut(&Path) -> std::io::Result<Vec<u8>>,
) -> Result<ChainReport, ChainError> {
    verify_segments_from(segments, ChainHead::EMPTY, read)
}

/// [`verify_segments`] continuing from `anchor`.
pub(crate) fn verify_segments_from(
    segments: Vec<(u64, PathBuf)>,
    anchor: ChainHead,
    read: &mut dyn FnMut(&Path) -> std::io::Result<Vec<u8>>,
) -> Result<ChainReport, ChainError> {
    let mut loaded = Vec::with_capacity(segments.len());
    // Segments are read one at a time to bound memory.
    let mut walker = ChainWalker::new(anchor);
    let mut torn = None;
    let mut expected_no = None;
    let count = segments.len();
    for (i, (no, path)) in segments.into_iter().enumerate() {
        if let Some(e) = expected_no
            && no != e
        {
            return Err(ChainError::SegmentMissing {
                expected: e,
                found: no,
            });
        }
        expected_no = Some(no + 1);
        let buf = read(&path).map_err(|source| ChainError::Io {
            path: path.clone(),
            source,
        })?;
        let is_last = i + 1 == count;
        if is_last && journal::is_torn_creation(&buf) {
            // Created but its header never reached the disk: nothing in it was ever written.
            torn = Some(TornTail {
                at: Location {
                    segment: no,
                    offset: 0,
                },
                len: buf.len() as u64,
                reason: "segment header incomplete".into(),
            });
            break;
        }
        let scan = journal::scan_segment(&buf);
        let walk = walk_segment(
            no,
            &buf,
            &scan,
            is_last,
            &mut walker,
            true,
            &mut |_, _, _, _| Ok(()),
        )?;
        torn = walk.torn;
        loaded.push(no);
    }
    Ok(ChainReport {
        segments: loaded.len() as u64,
        records: walker.records,
        first_id: walker.first_id,
        head: walker.head,
        torn_tail: torn,
    })
}
