//! Start-up recovery: bring the store up to date from the journal and find where to append.
//!
//! 1. List the segments; their numbers must have no gap.
//! 2. A last segment whose header never reached the disk (created, then a crash) is removed.
//! 3. Find the last record in the store and the segment that holds the record after it; walk
//!    from there to the end, checking every entry hash, link and id, and that the journal's hash
//!    of the store's last record equals the store's.
//! 4. Insert every record after the store's last into the store.
//! 5. At the end of the last segment, an unreadable tail with no valid sync mark after it is a
//!    torn, never-synced write: it is cut off (and the cut synced). Anything unreadable in front
//!    of a valid mark, or in an earlier segment, is corruption of synced data: recovery refuses
//!    with a typed error instead of starting on a shortened log.
//! 6. If the store holds records the journal does not, recovery refuses too (journal lost or
//!    rolled back).

use super::LogError;
use super::chain::{self, ChainError, ChainHead, ChainWalker, TornTail};
use super::journal::{self, Frame, SegmentWriter};
use super::record::{self, RecordId};
use super::store::{IndexedRecord, LogStore, RecordBody};
use std::io::Read;
use std::path::Path;

/// Records are inserted into the store in batches of this many during replay.
const REPLAY_BATCH: usize = 1024;

/// What recovery found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segment files present after recovery.
    pub segments: u64,
    /// The chain head the journal ends at (where appending continues).
    pub journal_head: ChainHead,
    /// The store's last record before replay.
    pub store_last: Option<RecordId>,
    /// Records replayed from the journal into the store.
    pub replayed: u64,
    /// A torn tail that was cut off, if any.
    pub torn_tail: Option<TornTail>,
    /// True if a segment whose creation never completed was removed.
    pub removed_incomplete_segment: bool,
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> LogError {
    let context = context.into();
    move |source| LogError::Io { context, source }
}

fn read_header_first_id(path: &Path) -> Result<Option<RecordId>, LogError> {
    let mut f = std::fs::File::open(path).map_err(io_err(format!("open {}", path.display())))?;
    let mut h = [0u8; journal::HEADER_LEN];
    match f.read_exact(&mut h) {
        Ok(()) => {}
        Err(_) => return Ok(None),
    }
    let scan = journal::scan_segment(&h);
    Ok(scan.header.ok().map(|h| h.first_id))
}

/// The file in the journal directory naming the chain head of archived, removed segments.
pub(crate) const ARCHIVED_HEAD_FILE: &str = "ARCHIVED-HEAD";

/// Reads `ARCHIVED-HEAD` (`<record id> <entry hash hex>`), if present.
pub(crate) fn read_archived_head(jdir: &Path) -> Result<Option<ChainHead>, LogError> {
    let path = jdir.join(ARCHIVED_HEAD_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(format!("read {}", path.display()))(e)),
    };
    parse_head(text.trim())
        .map(Some)
        .ok_or_else(|| LogError::Io {
            context: format!("{} is malformed", path.display()),
            source: std::io::Error::from(std::io::ErrorKind::InvalidData),
        })
}

/// Parses `<record id> <64 hex digits>` (also accepted with `:` as separator).
pub fn parse_head(s: &str) -> Option<ChainHead> {
    let (id, hex) = s.split_once([' ', ':'])?;
    let id: u64 = id.trim().parse().ok()?;
    let hex = hex.trim();
    if hex.len() != 64 {
        return None;
    }
    let mut hash = [0u8; 32];
    for (i, b) in hash.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(ChainHead {
        last_id: RecordId(id),
        hash: crate::messagelog::ChainHash(hash),
    })
}

/// Recovers the log in `dir` against `store`, returning the writer to continue with.
pub(crate) fn recover(
    dir: &Path,
    store: &dyn LogStore,
    segment_size: u64,
) -> Result<(SegmentWriter, RecoveryReport), LogError> {
    let jdir = journal::journal_dir(dir);
    std::fs::create_dir_all(&jdir).map_err(io_err(format!("create {}", jdir.display())))?;
    let mut segments =
        journal::list_segments(&jdir).map_err(io_err(format!("list {}", jdir.display())))?;
    for w in segments.windows(2) {
        if w[1].0 != w[0].0 + 1 {
            return Err(ChainError::SegmentMissing {
                expected: w[0].0 + 1,
                found: w[1].0,
            }
            .into());
        }
    }
    let store_last = store.last()?;
    let mut removed_incomplete_segment = false;
    if let Some((no, path)) = segments.last().cloned() {
        let buf = std::fs::read(&path).map_err(io_err(format!("read {}", path.display())))?;
        if journal::is_torn_creation(&buf) {
            tracing::warn!(
                segment = no,
                "removing a segment whose creation never completed"
            );
            std::fs::remove_file(&path).map_err(io_err(format!("remove {}", path.display())))?;
            journal::sync_dir(&jdir).map_err(io_err("sync journal directory"))?;
            segments.pop();
            removed_incomplete_segment = true;
        }
    }

    if segments.is_empty() {
        if let Some((id, _)) = store_last {
            return Err(LogError::JournalBehindStore {
                journal_last: RecordId(0),
                store_last: id,
            });
        }
        let w = SegmentWriter::create(&jdir, 1, ChainHead::EMPTY, segment_size)
            .map_err(io_err("create first journal segment"))?;
        return Ok((
            w,
            RecoveryReport {
                segments: 1,
                journal_head: ChainHead::EMPTY,
                store_last: None,
                replayed: 0,
                torn_tail: None,
                removed_incomplete_segment,
            },
        ));
    }

    // Where to start walking: the last segment whose first record is at or before the one after
    // the store's last, anchored at the store's hash of the record before that segment.
    let want = store_last.map_or(RecordId(1), |(id, _)| id.next());
    // Default: walk the whole journal from genesis, or from the archived head when older
    // segments were archived and removed (`archive.rs` writes it before removing any).
    let (mut start, mut anchor) = (
        0usize,
        read_archived_head(&jdir)?.unwrap_or(ChainHead::EMPTY),
    );
    for (i, (_, path)) in segments.iter().enumerate().rev() {
        let Some(first) = read_header_first_id(path)? else {
            continue; // a damaged header is reported by the walk
        };
        if first > want {
            continue;
        }
        if first.0 > 1
            && let Some(raw) = store.get_raw(RecordId(first.0 - 1))?
        {
            // Continue from the store's copy of the record before this segment: the walk then
            // also checks that the journal links to what the store holds.
            (start, anchor) = (
                i,
                ChainHead {
                    last_id: raw.id,
                    hash: raw.hash,
                },
            );
        }
        // (first == 1, or the store lacks the anchor: walk from the start.)
        break;
    }

    let mut walker = ChainWalker::new(anchor);
    let mut pending: Vec<IndexedRecord> = Vec::new();
    let mut replayed = 0u64;
    let mut torn = None;
    let mut last_valid_end = 0u64;
    let mut last_entries = 0u64;
    let count = segments.len();
    for (i, (no, path)) in segments.iter().enumerate().skip(start) {
        let buf = std::fs::read(path).map_err(io_err(format!("read {}", path.display())))?;
        let scan = journal::scan_segment(&buf);
        let is_last = i + 1 == count;
        let mut insert_err: Option<LogError> = None;
        let walk = chain::walk_segment(
            *no,
            &buf,
            &scan,
            is_last,
            &mut walker,
            false,
            &mut |at, id, hash, bytes| {
                if let Some((sid, shash)) = store_last {
                    if id == sid && *hash != shash {
                        insert_err = Some(LogError::StoreMismatch {
                            id,
                            store: shash,
                            journal: *hash,
                        });
                    }
                    if id <= sid {
                        return Ok(());
                    }
                }
                let rec = record::decode(bytes).map_err(|error| ChainError::BadRecord {
                    at: at.clone(),
                    record_id: id,
                    error,
                })?;
                pending.push(IndexedRecord {
                    id,
                    hash: *hash,
                    body: RecordBody::Journal {
                        segment: at.segment,
                        offset: at.offset,
                        len: bytes.len() as u32,
                    },
                    meta: rec.meta,
                });
                if pending.len() >= REPLAY_BATCH {
                    if let Err(e) = store.insert_batch(&pending) {
                        insert_err.get_or_insert(e.into());
                    }
                    replayed += pending.len() as u64;
                    pending.clear();
                }
                Ok(())
            },
        )?;
        if let Some(e) = insert_err {
            return Err(e);
        }
        if is_last {
            last_valid_end = walk.valid_end;
            last_entries = scan
                .frames
                .iter()
                .filter(|f| matches!(f, Frame::Entry { .. }) && f.offset() < walk.valid_end)
                .count() as u64;
            torn = walk.torn;
        }
    }
    if !pending.is_empty() {
        store.insert_batch(&pending)?;
        replayed += pending.len() as u64;
    }
    if let Some((sid, _)) = store_last
        && sid > walker.head.last_id
    {
        return Err(LogError::JournalBehindStore {
            journal_last: walker.head.last_id,
            store_last: sid,
        });
    }
    if let Some(t) = &torn {
        tracing::warn!(
            segment = t.at.segment,
            offset = t.at.offset,
            bytes = t.len,
            reason = %t.reason,
            "cutting off a torn, never-synced journal tail"
        );
    }
    let (last_no, _) = segments[count - 1];
    let w = SegmentWriter::resume(
        &jdir,
        last_no,
        last_valid_end,
        last_entries,
        walker.head,
        segment_size,
    )
    .map_err(io_err("reopen the last journal segment"))?;
    if replayed > 0 {
        store.flush()?;
    }
    Ok((
        w,
        RecoveryReport {
            segments: count as u64,
            journal_head: walker.head,
            store_last: store_last.map(|(id, _)| id),
            replayed,
            torn_tail: torn,
            removed_incomplete_segment,
        },
    ))
}
