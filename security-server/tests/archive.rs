//! Archiving: timestamped records move into signed, hash-linked archive files, leave the
//! store, fully archived journal segments go, the chain verifies from the archived head, the
//! log reopens, and each archive verifies on its own.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use trustbus_security_server::messagelog::archive::{
    ArchiveConfig, ArchiveSigner, archive_once, verify_archive,
};
use trustbus_security_server::messagelog::exchange::{Direction, Side};
use trustbus_security_server::messagelog::testkit::{
    MessageSpec, Pki, TsaServer, exchange_message,
};
use trustbus_security_server::messagelog::timestamp::{TimestampConfig, Timestamper};
use trustbus_security_server::messagelog::verifyconf::VerificationConf;
use trustbus_security_server::messagelog::{
    MessageLog, MessageLogConfig, RecordId, parse_head, verify_chain, verify_chain_from, zipfile,
};
use uuid::Uuid;

async fn log_exchanges(pki: &Pki, log: &MessageLog, n: usize) {
    let mut last = None;
    for _ in 0..n {
        let rid = Uuid::new_v4();
        for (direction, signer) in [
            (Direction::Request, &pki.client),
            (Direction::Response, &pki.provider),
        ] {
            let rec = exchange_message(
                pki,
                MessageSpec {
                    side: Side::Consumer,
                    direction,
                    request_id: rid,
                    signer,
                    ocsp: None,
                    body: None,
                },
            )
            .unwrap();
            last = Some(log.append(rec).await.unwrap());
        }
    }
    log.wait_indexed(last.unwrap()).await.unwrap();
}

#[tokio::test]
async fn archives_chain_verify_alone_and_the_log_continues() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(&dir.path().join("ca")).unwrap();
    let tsa = TsaServer::start(pki.tsa.clone()).await.unwrap();
    let conf = VerificationConf::from_shared_params(&pki.shared_params(&tsa.url)).unwrap();
    let log_dir = dir.path().join("log");
    let mut lc = MessageLogConfig::new(&log_dir);
    lc.segment_size = 4096; // about one record per segment, so whole segments can go
    let log = Arc::new(MessageLog::open(lc.clone()).unwrap());
    log_exchanges(&pki, &log, 3).await;
    let tsc = TimestampConfig::new(vec![pki.tsa_endpoint(&tsa.url)], Duration::from_secs(60));
    Timestamper::new(log.store().clone(), tsc.clone())
        .run_once()
        .await
        .unwrap();

    let mut cfg = ArchiveConfig::new(dir.path().join("archive"));
    cfg.retention = Duration::ZERO;
    cfg.max_records = 3;
    let signer = ArchiveSigner {
        signer: &pki.client.key,
        cert_der: pki.client.cert.der(),
        chain: &[],
    };
    let now = time::OffsetDateTime::now_utc();
    let store = log.store().clone();
    let first = archive_once(&log_dir, store.as_ref(), None, &cfg, &signer, now)
        .unwrap()
        .unwrap();
    assert_eq!((first.first, first.last), (RecordId(1), RecordId(3)));
    let second = archive_once(&log_dir, store.as_ref(), None, &cfg, &signer, now)
        .unwrap()
        .unwrap();
    // The newest record (6) always stays live.
    assert_eq!((second.first, second.last), (RecordId(4), RecordId(5)));
    assert!(
        archive_once(&log_dir, store.as_ref(), None, &cfg, &signer, now)
            .unwrap()
            .is_none()
    );
    assert!(store.get(RecordId(5)).unwrap().is_none());
    assert!(store.get(RecordId(6)).unwrap().is_some());
    // The first live record still exports: its predecessor's hash is kept as the archived head.
    let c6 = trustbus_security_server::messagelog::evidence::record_container(
        store.as_ref(),
        RecordId(6),
        None,
    )
    .unwrap();
    assert!(trustbus_security_server::messagelog::verify::verify_container(&c6, &conf).valid);
    assert!(!first.removed_segments.is_empty());

    // Each archive verifies on its own; the second continues the first.
    let a1 = std::fs::read(&first.file).unwrap();
    let a2 = std::fs::read(&second.file).unwrap();
    let s1 = verify_archive(&a1, &conf).unwrap();
    let s2 = verify_archive(&a2, &conf).unwrap();
    assert_eq!(
        s2.previous_archive.as_deref(),
        first.file.file_name().unwrap().to_str()
    );
    assert_eq!((s1.first_record, s2.last_record), (1, 5));

    // The journal now starts after archived records: the plain check fails, the anchored one
    // (from the archive's chain head) passes.
    assert!(verify_chain(&log_dir).is_err());
    let anchor = parse_head(&s2.chain_head).unwrap();
    let report = verify_chain_from(&log_dir, anchor).unwrap();
    assert_eq!(report.head.last_id, RecordId(6));
    drop(store);

    // The log reopens on the pruned journal and continues.
    Arc::try_unwrap(log).unwrap().close().await.unwrap();
    let log = MessageLog::open(lc).unwrap();
    log_exchanges(&pki, &log, 1).await;
    assert_eq!(log.chain_head().last_id, RecordId(8));
    log.close().await.unwrap();
    let anchor = parse_head(&s2.chain_head).unwrap();
    assert_eq!(
        verify_chain_from(&log_dir, anchor).unwrap().head.last_id,
        RecordId(8)
    );

    // Tampering with an archive is found: a changed container, or a dropped one.
    let mut entries = zipfile::read(&a1).unwrap();
    let linking = entries
        .iter_mut()
        .find(|(n, _)| n == "linking.json")
        .unwrap();
    linking.1[20] ^= 1;
    let bad = trustbus_pki::asic::write_unchecked_zip(&entries).unwrap();
    assert!(verify_archive(&bad, &conf).is_err());
    let mut other = conf.clone();
    other.ca_roots.clear();
    assert!(verify_archive(&a1, &other).is_err());
}

/// The server's schedule: rounds run by themselves, each archives everything due (several files
/// when more than `max_records` are due), and later records are picked up by a later round.
#[tokio::test]
async fn the_periodic_archiver_archives_what_is_due_round_after_round() {
    use trustbus_security_server::messagelog::archive::{ArchiveKey, archive_periodically};
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(&dir.path().join("ca")).unwrap();
    let tsa = TsaServer::start(pki.tsa.clone()).await.unwrap();
    let conf = VerificationConf::from_shared_params(&pki.shared_params(&tsa.url)).unwrap();
    let log_dir = dir.path().join("log");
    let log = Arc::new(MessageLog::open(MessageLogConfig::new(&log_dir)).unwrap());
    let ts = Timestamper::new(
        log.store().clone(),
        TimestampConfig::new(vec![pki.tsa_endpoint(&tsa.url)], Duration::from_secs(60)),
    );
    log_exchanges(&pki, &log, 3).await;
    ts.run_once().await.unwrap();

    let mut cfg = ArchiveConfig::new(dir.path().join("archive"));
    cfg.retention = Duration::ZERO;
    cfg.max_records = 2;
    let key = ArchiveKey {
        signer: Arc::new(
            trustbus_pki::KeyPair::from_pkcs8_der(pki.client.key.pkcs8_der()).unwrap(),
        ),
        cert_der: pki.client.cert.der().to_vec(),
        chain: Vec::new(),
    };
    let task = tokio::spawn(archive_periodically(
        log_dir.clone(),
        log.store().clone(),
        None,
        cfg.clone(),
        Arc::new(key),
        Duration::from_millis(10),
        Duration::from_millis(200),
    ));
    let adir = dir.path().join("archive");
    let archives = |want: usize| {
        let adir = adir.clone();
        async move {
            for _ in 0..100 {
                let mut names: Vec<String> = std::fs::read_dir(&adir)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.ends_with(".asice"))
                    .collect();
                names.sort();
                if names.len() >= want {
                    return names;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("fewer than {want} archive files");
        }
    };
    // Records 1-5 are due (the newest stays live): three files of at most two records.
    let names = archives(3).await;
    assert_eq!(names.len(), 3, "{names:?}");
    // A round writes the archive file before it removes the archived records from the live
    // store, so the removal may still be under way when the third file appears.
    for _ in 0..100 {
        if log.store().get(RecordId(5)).unwrap().is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(log.store().get(RecordId(5)).unwrap().is_none());
    assert!(log.store().get(RecordId(6)).unwrap().is_some());
    // Later records are archived by a later round once timestamped.
    log_exchanges(&pki, &log, 1).await;
    ts.run_once().await.unwrap();
    let names = archives(4).await;
    task.abort();
    let last = std::fs::read(adir.join(&names[3])).unwrap();
    let s = verify_archive(&last, &conf).unwrap();
    assert_eq!((s.first_record, s.last_record), (6, 7));
}

/// The archiver's default file size is above what a generic container reader accepts (1,000
/// entries); `verify_archive` must read every file the archiver may write. (The whole-server
/// crash test first hit this with a 1,329-record archive.)
#[tokio::test]
async fn an_archive_of_more_than_a_thousand_records_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(&dir.path().join("ca")).unwrap();
    let tsa = TsaServer::start(pki.tsa.clone()).await.unwrap();
    let conf = VerificationConf::from_shared_params(&pki.shared_params(&tsa.url)).unwrap();
    let log_dir = dir.path().join("log");
    let log = Arc::new(MessageLog::open(MessageLogConfig::new(&log_dir)).unwrap());
    log_exchanges(&pki, &log, 505).await;
    let tsc = TimestampConfig::new(vec![pki.tsa_endpoint(&tsa.url)], Duration::from_secs(60));
    Timestamper::new(log.store().clone(), tsc)
        .run_once()
        .await
        .unwrap();
    let mut cfg = ArchiveConfig::new(dir.path().join("archive"));
    cfg.retention = Duration::ZERO;
    let signer = ArchiveSigner {
        signer: &pki.client.key,
        cert_der: pki.client.cert.der(),
        chain: &[],
    };
    let store = log.store().clone();
    let now = time::OffsetDateTime::now_utc();
    let report = archive_once(&log_dir, store.as_ref(), None, &cfg, &signer, now)
        .unwrap()
        .unwrap();
    // 1,010 records; the newest stays live.
    assert_eq!((report.first, report.last), (RecordId(1), RecordId(1009)));
    let name = std::fs::read_dir(dir.path().join("archive"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "asice"))
        .unwrap();
    let s = verify_archive(&std::fs::read(name).unwrap(), &conf).unwrap();
    assert_eq!((s.first_record, s.last_record), (1, 1009));
}
