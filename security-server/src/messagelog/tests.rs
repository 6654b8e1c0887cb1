//! Tests of the message log as a whole (journal + chain + store + recovery).

use super::journal::{self, Frame};
use super::record::tests::sample_record;
use super::*;
use std::path::Path;
use std::time::Duration;

fn cfg(dir: &Path) -> MessageLogConfig {
    MessageLogConfig::new(dir)
}

fn small_segments(dir: &Path) -> MessageLogConfig {
    let mut c = cfg(dir);
    c.segment_size = 2048;
    c
}

async fn open(c: MessageLogConfig) -> Result<MessageLog, LogError> {
    tokio::task::spawn_blocking(move || MessageLog::open(c))
        .await
        .unwrap()
}

async fn fill(c: MessageLogConfig, n: u64) -> ChainHead {
    let log = open(c).await.unwrap();
    for i in 1..=n {
        log.append(sample_record(i)).await.unwrap();
    }
    let head = log.chain_head();
    log.close().await.unwrap();
    head
}

fn segment_files(dir: &Path) -> Vec<(u64, PathBuf)> {
    journal::list_segments(&journal::journal_dir(dir)).unwrap()
}

/// (offset, length, is_entry) of every frame of a clean segment.
fn frames(buf: &[u8]) -> Vec<(u64, u64, bool)> {
    let scan = journal::scan_segment(buf);
    assert!(
        scan.stop.is_none(),
        "clean segment expected: {:?}",
        scan.stop
    );
    scan.frames
        .iter()
        .map(|f| match f {
            Frame::Entry { offset, record, .. } => (
                *offset,
                (journal::ENTRY_OVERHEAD + record.len()) as u64,
                true,
            ),
            Frame::Mark { offset, .. } => (*offset, journal::MARK_LEN as u64, false),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_query_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(cfg(dir.path())).await.unwrap();
    let mut ids = Vec::new();
    for i in 1..=10 {
        ids.push(log.append(sample_record(i)).await.unwrap());
    }
    assert_eq!(ids, (1..=10).map(RecordId).collect::<Vec<_>>());
    assert_eq!(log.chain_head().last_id, RecordId(10));
    log.wait_indexed(RecordId(10)).await.unwrap();
    let page = log
        .store()
        .query(&Query::new(QueryFilter::MessageId("msg-4".into()), 10))
        .unwrap();
    assert_eq!(page.records.len(), 1);
    let r = &page.records[0];
    assert_eq!(r.id, RecordId(4));
    assert_eq!(
        r.payload,
        StoredPayload::Plain(b"<Envelope>4</Envelope>".to_vec())
    );
    assert_eq!(r.meta.payload_size, 22);
    let head = log.chain_head();
    log.close().await.unwrap();

    let report = verify_chain(dir.path()).unwrap();
    assert_eq!(report.records, 10);
    assert_eq!(report.first_id, Some(RecordId(1)));
    assert_eq!(report.head, head);
    assert_eq!(report.torn_tail, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_are_dense_unique_and_durable() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.segment_size = 64 * 1024; // several rollovers under load
    let log = Arc::new(open(c.clone()).await.unwrap());
    let mut tasks = Vec::new();
    for t in 0..32u64 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for i in 0..60u64 {
                got.push(log.append(sample_record(t * 1000 + i)).await.unwrap());
            }
            got
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.extend(t.await.unwrap());
    }
    ids.sort();
    assert_eq!(ids, (1..=32 * 60).map(RecordId).collect::<Vec<_>>());
    let log = Arc::into_inner(log).unwrap();
    log.close().await.unwrap();

    let log = open(c).await.unwrap();
    for id in &ids {
        assert!(
            log.store().get_raw(*id).unwrap().is_some(),
            "record {id} missing"
        );
    }
    assert_eq!(log.chain_head().last_id, RecordId(32 * 60));
    log.close().await.unwrap();
    let report = verify_chain(dir.path()).unwrap();
    assert_eq!(report.records, 32 * 60);
    assert!(report.segments > 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_roll_over_and_ids_continue_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    fill(small_segments(dir.path()), 40).await;
    let segs = segment_files(dir.path());
    assert!(segs.len() >= 4, "{} segments", segs.len());
    // Every segment but the last ends with a sync mark (sealed at rollover).
    for (_, p) in &segs[..segs.len() - 1] {
        let b = std::fs::read(p).unwrap();
        assert!(!frames(&b).last().unwrap().2);
    }
    let log = open(small_segments(dir.path())).await.unwrap();
    assert_eq!(log.recovery_report().replayed, 0);
    assert_eq!(log.append(sample_record(41)).await.unwrap(), RecordId(41));
    log.close().await.unwrap();
    assert_eq!(verify_chain(dir.path()).unwrap().records, 41);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_rebuilds_a_lost_store_from_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    fill(small_segments(dir.path()), 30).await;
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    let log = open(small_segments(dir.path())).await.unwrap();
    assert_eq!(log.recovery_report().replayed, 30);
    assert_eq!(log.recovery_report().store_last, None);
    let all = log
        .store()
        .query(&Query::new(QueryFilter::All, 100))
        .unwrap();
    assert_eq!(all.records.len(), 30);
    log.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_replays_the_tail_the_store_missed() {
    let dir = tempfile::tempdir().unwrap();
    fill(small_segments(dir.path()), 30).await;
    {
        // Simulate a crash before the indexer caught up: drop records 21..=30 from the store.
        let store = SledStore::open_with_journal(
            &dir.path().join("index"),
            &journal::journal_dir(dir.path()),
        )
        .unwrap();
        store.forget_after(RecordId(20)).unwrap();
        assert_eq!(store.last().unwrap().unwrap().0, RecordId(20));
        store.flush().unwrap();
    }
    let log = open(small_segments(dir.path())).await.unwrap();
    let r = log.recovery_report().clone();
    assert_eq!(r.store_last, Some(RecordId(20)));
    assert_eq!(r.replayed, 10);
    assert!(log.store().get(RecordId(30)).unwrap().is_some());
    log.close().await.unwrap();
}

async fn torn_case(tail: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    fill(cfg(dir.path()), 20).await;
    let (_, last) = segment_files(dir.path()).pop().unwrap();
    let clean_len = std::fs::metadata(&last).unwrap().len();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&last)
        .unwrap();
    std::io::Write::write_all(&mut f, tail).unwrap();
    drop(f);

    let report = verify_chain(dir.path()).unwrap();
    let torn = report.torn_tail.clone().expect("torn tail reported");
    assert_eq!(torn.at.offset, clean_len);
    assert_eq!(torn.len, tail.len() as u64);
    assert_eq!(report.records, 20);

    let log = open(cfg(dir.path())).await.unwrap();
    assert_eq!(log.recovery_report().torn_tail, Some(torn));
    assert_eq!(std::fs::metadata(&last).unwrap().len(), clean_len);
    assert_eq!(log.append(sample_record(21)).await.unwrap(), RecordId(21));
    log.close().await.unwrap();
    let report = verify_chain(dir.path()).unwrap();
    assert_eq!(report.records, 21);
    assert_eq!(report.torn_tail, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_tails_are_cut_off() {
    // A partial entry (length promises more than the file has).
    let mut partial = vec![b'E', 0, 0, 4, 0];
    partial.extend_from_slice(&[7u8; 100]);
    torn_case(&partial).await;
    // A complete-looking entry whose hash does not match (half its pages written).
    let mut bad = vec![b'E', 0, 0, 0, 10];
    bad.extend_from_slice(&[1u8; 32 + 10 + 32]);
    torn_case(&bad).await;
    // A sync mark cut short.
    torn_case(b"STBSYNC1\0\0").await;
}

/// Zero bytes after the last frame are the open segment's preallocated space (or a size that
/// reached the disk before its data did): unused, not torn, and cut off when the log reopens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_filled_tail_is_unused_space() {
    let dir = tempfile::tempdir().unwrap();
    fill(cfg(dir.path()), 20).await;
    let (_, last) = segment_files(dir.path()).pop().unwrap();
    let clean_len = std::fs::metadata(&last).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&last).unwrap();
    f.set_len(clean_len + 300).unwrap();
    drop(f);

    let report = verify_chain(dir.path()).unwrap();
    assert_eq!((report.records, report.torn_tail), (20, None));
    let log = open(cfg(dir.path())).await.unwrap();
    assert_eq!(log.recovery_report().torn_tail, None);
    assert_eq!(std::fs::metadata(&last).unwrap().len(), clean_len);
    assert_eq!(log.append(sample_record(21)).await.unwrap(), RecordId(21));
    log.close().await.unwrap();
    assert!(std::fs::metadata(&last).unwrap().len() > clean_len);
    let report = verify_chain(dir.path()).unwrap();
    assert_eq!((report.records, report.torn_tail), (21, None));
}

/// The open segment is grown ahead of its data in zero bytes, so that most syncs overwrite;
/// a clean close cuts the unused part off again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_segment_is_preallocated_and_trimmed_on_close() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(cfg(dir.path())).await.unwrap();
    assert_eq!(log.append(sample_record(1)).await.unwrap(), RecordId(1));
    let (_, seg) = segment_files(dir.path()).pop().unwrap();
    let b = std::fs::read(&seg).unwrap();
    let scan = journal::scan_segment(&b);
    assert!(scan.stop.is_none(), "{:?}", scan.stop);
    let data_end = scan.end as usize;
    assert_eq!(b.len() - data_end, journal::PREALLOC_STEP as usize);
    assert!(b[data_end..].iter().all(|&x| x == 0));
    // A torn write into the preallocated space is still a torn tail.
    let mut torn = b.clone();
    torn[data_end + 100] = b'E';
    let scan = journal::scan_segment(&torn);
    assert_eq!(scan.stop.map(|(off, _)| off), Some(data_end as u64));
    log.close().await.unwrap();
    let b = std::fs::read(&seg).unwrap();
    let scan = journal::scan_segment(&b);
    assert_eq!((scan.end as usize, scan.stop), (b.len(), None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incomplete_segment_creation_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    fill(cfg(dir.path()), 5).await;
    let jdir = journal::journal_dir(dir.path());
    std::fs::write(journal::segment_path(&jdir, 2), [0u8; 12]).unwrap();
    let report = verify_chain(dir.path()).unwrap();
    assert_eq!(report.torn_tail.unwrap().at.segment, 2);
    let log = open(cfg(dir.path())).await.unwrap();
    assert!(log.recovery_report().removed_incomplete_segment);
    assert_eq!(log.append(sample_record(6)).await.unwrap(), RecordId(6));
    log.close().await.unwrap();
    assert_eq!(verify_chain(dir.path()).unwrap().records, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corruption_in_the_synced_part_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    fill(cfg(dir.path()), 20).await;
    let (_, seg) = segment_files(dir.path()).pop().unwrap();
    let mut b = std::fs::read(&seg).unwrap();
    let entries: Vec<_> = frames(&b).into_iter().filter(|f| f.2).collect();
    let (off, len, _) = entries[9]; // record 10
    b[(off + len / 2) as usize] ^= 0x40;
    std::fs::write(&seg, &b).unwrap();

    let err = verify_chain(dir.path()).unwrap_err();
    match &err {
        ChainError::HashMismatch { at, record_id, .. } => {
            assert_eq!(at.offset, off);
            assert_eq!(*record_id, RecordId(10));
        }
        other => panic!("unexpected {other}"),
    }
    let err = open(cfg(dir.path())).await.unwrap_err();
    assert!(
        matches!(&err, LogError::Chain(ChainError::HashMismatch { record_id, .. }) if *record_id == RecordId(10)),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_ahead_of_journal_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    fill(cfg(dir.path()), 20).await;
    let (_, seg) = segment_files(dir.path()).pop().unwrap();
    let b = std::fs::read(&seg).unwrap();
    let entries: Vec<_> = frames(&b).into_iter().filter(|f| f.2).collect();
    // The journal is rolled back to record 15 (everything after cut, marks included).
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(entries[15].0).unwrap();
    drop(f);
    let err = open(cfg(dir.path())).await.unwrap_err();
    assert!(
        matches!(
            err,
            LogError::JournalBehindStore {
                journal_last: RecordId(15),
                store_last: RecordId(20)
            }
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_single_byte_flip_is_found_at_its_frame() {
    let dir = tempfile::tempdir().unwrap();
    fill(small_segments(dir.path()), 14).await;
    let segs = segment_files(dir.path());
    assert!(segs.len() >= 2);
    let last_no = segs.last().unwrap().0;
    // The first, second and last segments: a sealed one, one in the middle, the open one.
    let picked = [&segs[0], &segs[1], &segs[segs.len() - 1]];
    let cache: std::collections::HashMap<PathBuf, Vec<u8>> = segs
        .iter()
        .map(|(_, p)| (p.clone(), std::fs::read(p).unwrap()))
        .collect();
    for (no, path) in picked {
        let clean = cache[path].clone();
        let map = frames(&clean);
        for pos in 0..clean.len() {
            let mut b = clean.clone();
            b[pos] ^= 0x01;
            // Same walk as verify_chain, reading the flipped segment from memory.
            let res = chain::verify_segments(segs.clone(), &mut |p| {
                Ok(if p == path.as_path() {
                    b.clone()
                } else {
                    cache[p].clone()
                })
            });
            if pos < journal::HEADER_LEN {
                assert!(
                    matches!(&res, Err(ChainError::SegmentHeader { segment, .. }) if segment == no),
                    "segment {no} header byte {pos}: {res:?}"
                );
                continue;
            }
            let &(off, len, is_entry) = map
                .iter()
                .find(|(o, l, _)| (*o..o + l).contains(&(pos as u64)))
                .unwrap();
            match &res {
                Err(e) => {
                    let at = e.location().unwrap_or_else(|| panic!("no location: {e}"));
                    assert_eq!((at.segment, at.offset), (*no, off), "byte {pos}: {e}");
                    if is_entry {
                        let want =
                            record::peek_id(&clean[(off + 37) as usize..(off + len - 32) as usize])
                                .unwrap();
                        if let ChainError::HashMismatch { record_id, .. } = e {
                            // The id read may be the flipped byte itself; otherwise it is exact.
                            let in_id = (off + 37 + 6..off + 37 + 14).contains(&(pos as u64));
                            assert!(in_id || *record_id == want, "byte {pos}: {e}");
                        }
                    }
                }
                // Only the final sync mark of the last segment can read as a torn tail: it has
                // no mark after it, exactly like an unsynced write.
                Ok(r) => {
                    let t = r
                        .torn_tail
                        .as_ref()
                        .unwrap_or_else(|| panic!("segment {no} byte {pos} flip not detected"));
                    assert!(!is_entry && *no == last_no && off + len == clean.len() as u64);
                    assert_eq!(t.at.offset, off);
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reordering_deletion_and_missing_segments_are_found() {
    let dir = tempfile::tempdir().unwrap();
    fill(cfg(dir.path()), 9).await; // msg-1..msg-9: equal-sized records
    let (_, seg) = segment_files(dir.path()).pop().unwrap();
    let clean = std::fs::read(&seg).unwrap();
    let entries: Vec<_> = frames(&clean).into_iter().filter(|f| f.2).collect();
    let (o3, l3, _) = entries[2];
    let (o4, l4, _) = entries[3];
    assert_eq!(l3, l4);

    // Swap records 3 and 4.
    let mut b = clean.clone();
    let r3 = clean[o3 as usize..(o3 + l3) as usize].to_vec();
    let r4 = clean[o4 as usize..(o4 + l4) as usize].to_vec();
    b[o3 as usize..(o3 + l3) as usize].copy_from_slice(&r4);
    b[o4 as usize..(o4 + l4) as usize].copy_from_slice(&r3);
    std::fs::write(&seg, &b).unwrap();
    match verify_chain(dir.path()).unwrap_err() {
        ChainError::BrokenLink { at, record_id, .. } => {
            assert_eq!(at.offset, o3);
            assert_eq!(record_id, RecordId(4));
        }
        e => panic!("{e}"),
    }

    // Delete record 3: the sync mark written after it no longer matches the chain.
    let mut b = clean.clone();
    b.drain(o3 as usize..(o3 + l3) as usize);
    std::fs::write(&seg, &b).unwrap();
    match verify_chain(dir.path()).unwrap_err() {
        ChainError::MarkMismatch {
            at,
            mark_id,
            chain_id,
            ..
        } => {
            assert_eq!(at.offset, o3);
            assert_eq!((mark_id, chain_id), (RecordId(3), RecordId(2)));
        }
        e => panic!("{e}"),
    }
    // Delete record 3 and its mark: record 4 does not link to record 2.
    let mut b = clean.clone();
    b.drain(o3 as usize..o4 as usize);
    std::fs::write(&seg, &b).unwrap();
    match verify_chain(dir.path()).unwrap_err() {
        ChainError::BrokenLink { at, record_id, .. } => {
            assert_eq!(at.offset, o3);
            assert_eq!(record_id, RecordId(4));
        }
        e => panic!("{e}"),
    }
    std::fs::write(&seg, &clean).unwrap();

    // A missing middle segment.
    let dir = tempfile::tempdir().unwrap();
    fill(small_segments(dir.path()), 30).await;
    let segs = segment_files(dir.path());
    std::fs::remove_file(&segs[1].1).unwrap();
    assert!(matches!(
        verify_chain(dir.path()).unwrap_err(),
        ChainError::SegmentMissing {
            expected: 2,
            found: 3
        }
    ));
    assert!(matches!(
        open(small_segments(dir.path())).await.unwrap_err(),
        LogError::Chain(ChainError::SegmentMissing { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncation_inside_an_earlier_segment_is_found() {
    let dir = tempfile::tempdir().unwrap();
    fill(small_segments(dir.path()), 30).await;
    let segs = segment_files(dir.path());
    let b = std::fs::read(&segs[0].1).unwrap();
    let map = frames(&b);
    // Cut at a frame boundary: the segment reads cleanly but the next does not continue it.
    std::fs::write(&segs[0].1, &b[..map[2].0 as usize]).unwrap();
    assert!(matches!(
        verify_chain(dir.path()).unwrap_err(),
        ChainError::SegmentHeader { segment: 2, .. }
    ));
    // Cut inside a frame: unreadable frame in a synced segment.
    std::fs::write(&segs[0].1, &b[..(map[2].0 + 10) as usize]).unwrap();
    let e = verify_chain(dir.path()).unwrap_err();
    assert!(
        matches!(&e, ChainError::BadFrame { at, .. } if at.segment == 1 && at.offset == map[2].0),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_are_encrypted_at_rest() {
    let dir = tempfile::tempdir().unwrap();
    let key = Arc::new(PayloadKey::new("token-key-1", &[42u8; 32]).unwrap());
    let mut c = cfg(dir.path());
    c.payload_key = Some(key.clone());
    c.index_update = IndexUpdate::BeforeAck;
    let log = open(c).await.unwrap();
    let id = log.append(sample_record(5)).await.unwrap();
    // BeforeAck: readable as soon as acknowledged.
    let rec = log.store().get(id).unwrap().unwrap();
    let raw = log.store().get_raw(id).unwrap().unwrap();
    assert!(!raw.bytes.windows(10).any(|w| w == b"<Envelope>"));
    assert!(
        matches!(&rec.payload, StoredPayload::Aes256Gcm { key_id, .. } if key_id == "token-key-1")
    );
    assert_eq!(
        key.open(&rec.meta, &rec.payload).unwrap(),
        b"<Envelope>5</Envelope>"
    );
    log.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relaxed_durability_acknowledges_and_persists() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.durability = Durability::Relaxed {
        max_delay: Duration::from_millis(5),
    };
    let log = Arc::new(open(c.clone()).await.unwrap());
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                log.append(sample_record(t * 100 + i)).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // The durable head catches up within max_delay.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(log.chain_head().last_id, RecordId(200));
    log.wait_indexed(RecordId(200)).await.unwrap();
    Arc::into_inner(log).unwrap().close().await.unwrap();
    let log = open(c).await.unwrap();
    assert_eq!(log.chain_head().last_id, RecordId(200));
    log.close().await.unwrap();
    assert_eq!(verify_chain(dir.path()).unwrap().records, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_handle_syncs_and_seals() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(cfg(dir.path())).await.unwrap();
    for i in 1..=5 {
        log.append(sample_record(i)).await.unwrap();
    }
    drop(log);
    // The writer finishes on its own thread; wait for the final mark.
    let mut report = verify_chain(dir.path()).unwrap();
    for _ in 0..100 {
        if report.torn_tail.is_none() && report.records == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        report = verify_chain(dir.path()).unwrap();
    }
    assert_eq!(report.records, 5);
    // The indexer thread releases the store (sled's file lock) a moment after the writer.
    let mut tries = 0;
    let log = loop {
        match open(cfg(dir.path())).await {
            Ok(log) => break log,
            Err(e) if tries < 100 => {
                tries += 1;
                let _ = e;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(log.chain_head().last_id, RecordId(5));
    log.close().await.unwrap();
}

/// Copies the journal files while appends run: the copy is a state a crash could leave (each file
/// a prefix of what was written, possibly cut mid-frame). Recovery from it must keep every record
/// acknowledged before the copy started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_from_a_snapshot_taken_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.segment_size = 32 * 1024;
    let log = Arc::new(open(c).await.unwrap());
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let (log, acked, stop) = (log.clone(), acked.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0;
            // Bounded, so that a slow machine cannot turn the test into an unbounded load.
            while !stop.load(Ordering::SeqCst) && i < 20_000 {
                let id = log.append(sample_record(t * 100_000 + i)).await.unwrap();
                acked.lock().unwrap().push(id);
                i += 1;
            }
        }));
    }
    let snap = tempfile::tempdir().unwrap();
    for round in 0..3 {
        tokio::time::sleep(Duration::from_millis(60)).await;
        let before: Vec<RecordId> = acked.lock().unwrap().clone();
        let to = snap.path().join(format!("r{round}"));
        let jdir = journal::journal_dir(&to);
        std::fs::create_dir_all(&jdir).unwrap();
        for (_, p) in segment_files(dir.path()) {
            std::fs::copy(&p, jdir.join(p.file_name().unwrap())).unwrap();
        }
        let recovered = open(cfg(&to)).await.unwrap();
        let head = recovered.chain_head().last_id;
        for id in &before {
            assert!(
                *id <= head,
                "round {round}: acked {id} beyond recovered head {head}"
            );
            assert!(recovered.store().get_raw(*id).unwrap().is_some());
        }
        recovered.close().await.unwrap();
        assert_eq!(verify_chain(&to).unwrap().head.last_id, head);
    }
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    Arc::into_inner(log).unwrap().close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_reads_records_from_the_journal_and_refuses_a_changed_one() {
    let dir = tempfile::tempdir().unwrap();
    let c = small_segments(dir.path());
    let log = open(c.clone()).await.unwrap();
    for i in 1..=12 {
        log.append(sample_record(i)).await.unwrap();
    }
    log.wait_indexed(RecordId(12)).await.unwrap();
    // Across segment rollovers, every record comes back byte for byte as the journal holds it.
    let segs = segment_files(dir.path());
    assert!(segs.len() >= 2, "{segs:?}");
    let mut journal_records = Vec::new();
    for (_, path) in &segs {
        let buf = std::fs::read(path).unwrap();
        for f in journal::scan_segment(&buf).frames {
            if let Frame::Entry { record, .. } = f {
                journal_records.push(buf[record].to_vec());
            }
        }
    }
    assert_eq!(journal_records.len(), 12);
    let hashes = log.store().hashes(RecordId(1), 100).unwrap();
    assert_eq!(hashes.len(), 12);
    for (i, want) in journal_records.iter().enumerate() {
        let id = RecordId(i as u64 + 1);
        let raw = log.store().get_raw(id).unwrap().unwrap();
        assert_eq!(&raw.bytes, want, "record {id}");
        assert_eq!(hashes[i], (id, raw.hash));
    }
    log.close().await.unwrap();

    // One byte of a record changed in the journal after indexing: the store reports it.
    let log = open(c).await.unwrap();
    let (_, path) = &segs[1];
    let mut buf = std::fs::read(path).unwrap();
    let (target, range) = journal::scan_segment(&buf)
        .frames
        .iter()
        .find_map(|f| match f {
            Frame::Entry { record, .. } => {
                let id = record::decode(&buf[record.clone()]).unwrap().id;
                Some((id, record.clone()))
            }
            Frame::Mark { .. } => None,
        })
        .unwrap();
    buf[range.start + 20] ^= 1;
    std::fs::write(path, &buf).unwrap();
    let e = log.store().get_raw(target).unwrap_err();
    assert!(
        matches!(&e, StoreError::Corrupt { id, reason } if *id == target
            && reason.ends_with("does not match the stored hash")),
        "{e}"
    );
    // Its neighbours are untouched.
    assert!(log.store().get_raw(target.next()).unwrap().is_some());
    drop(log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deferred_record_is_synced_by_the_next_record_when_waited_for_or_in_time() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(cfg(dir.path())).await.unwrap();
    // A later record's sync covers it and acknowledges it.
    let q1 = log.enqueue_deferred(sample_record(1)).unwrap();
    assert_eq!(log.append(sample_record(2)).await.unwrap(), RecordId(2));
    assert_eq!(log.chain_head().last_id, RecordId(2));
    assert_eq!(q1.durable().await.unwrap(), RecordId(1));

    // Alone, it is written but not synced until someone waits for it.
    let t = std::time::Instant::now();
    let q3 = log.enqueue_deferred(sample_record(3)).unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let head = log.chain_head().last_id;
    if t.elapsed() < journal::DEFER_MAX {
        assert_eq!(head, RecordId(2));
    }
    assert_eq!(q3.durable().await.unwrap(), RecordId(3));
    assert_eq!(log.chain_head().last_id, RecordId(3));

    // Nobody waits: it is synced within DEFER_MAX all the same.
    let q4 = log.enqueue_deferred(sample_record(4)).unwrap();
    tokio::time::sleep(journal::DEFER_MAX * 5).await;
    assert_eq!(log.chain_head().last_id, RecordId(4));
    drop(q4);

    // Closing syncs and acknowledges it too; the chain verifies with every record in it.
    let q5 = log.enqueue_deferred(sample_record(5)).unwrap();
    log.close().await.unwrap();
    assert_eq!(q5.durable().await.unwrap(), RecordId(5));
    let report = verify_chain(dir.path()).unwrap();
    assert_eq!(report.records, 5);
}

/// A server stopping while its tasks still hold the log seals the journal through a shared
/// handle: the last segment ends with a sync mark and no unused space, later appends are
/// refused, and the log reopens without a torn tail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_through_a_shared_handle_seals_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(open(cfg(dir.path())).await.unwrap());
    let held = log.clone();
    for i in 1..=3 {
        log.append(sample_record(i)).await.unwrap();
    }
    log.shutdown().await.unwrap();
    let (_, seg) = segment_files(dir.path()).pop().unwrap();
    let b = std::fs::read(&seg).unwrap();
    let last = frames(&b).pop().unwrap();
    assert_eq!((last.2, last.0 + last.1), (false, b.len() as u64));
    assert!(matches!(
        held.append(sample_record(4)).await,
        Err(LogError::Closed)
    ));
    assert!(log.shutdown().await.is_err());
    drop((log, held));
    let log = open(cfg(dir.path())).await.unwrap();
    assert_eq!(log.recovery_report().torn_tail, None);
    assert_eq!(log.append(sample_record(4)).await.unwrap(), RecordId(4));
    log.close().await.unwrap();
}
