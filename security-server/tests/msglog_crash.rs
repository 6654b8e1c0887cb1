//! Crash test: a process appending under load is killed with SIGKILL; after reopening, every
//! record id it printed as acknowledged is in the log and the hash chain verifies.
// Test code (helpers included): a panic is a test failure with a message.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use trustbus_security_server::messagelog::{MessageLog, MessageLogConfig, RecordId, verify_chain};

/// Runs the helper for about `run_for`, kills it, and returns the ids it printed.
fn run_and_kill(dir: &Path, mode: &str, run_for: Duration) -> BTreeSet<u64> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_msglog-crash-helper"))
        .arg(dir)
        .arg(mode)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        let mut ids = BTreeSet::new();
        let mut ready = false;
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = r.read_until(b'\n', &mut line).unwrap();
            // Only complete lines count: a line cut by the kill was never fully printed.
            if n == 0 || line.last() != Some(&b'\n') {
                break;
            }
            let s = std::str::from_utf8(&line).unwrap().trim();
            if s == "ready" {
                ready = true;
            } else {
                ids.insert(s.parse::<u64>().unwrap());
            }
        }
        (ready, ids)
    });
    let start = Instant::now();
    std::thread::sleep(run_for);
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    let (ready, ids) = reader.join().unwrap();
    assert!(ready, "helper never became ready ({status})");
    assert!(
        !ids.is_empty(),
        "no acknowledged appends in {:?}",
        start.elapsed()
    );
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_no_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut all = BTreeSet::new();
    for (round, mode) in ["sync", "sync", "relaxed"].into_iter().enumerate() {
        let ids = run_and_kill(dir.path(), mode, Duration::from_millis(800));
        // Ids continue the chain across restarts.
        if let Some(prev_max) = all.last() {
            assert!(ids.first().unwrap() > prev_max, "round {round}");
        }
        all.extend(ids.iter().copied());

        // Before recovery, the journal verifies up to at most a torn, unacknowledged tail.
        let before = verify_chain(dir.path()).unwrap();
        assert!(before.head.last_id.0 >= *ids.last().unwrap());

        let path = dir.path().to_path_buf();
        let log =
            tokio::task::spawn_blocking(move || MessageLog::open(MessageLogConfig::new(path)))
                .await
                .unwrap()
                .unwrap();
        let head = log.chain_head();
        for id in &all {
            assert!(
                log.store().get_raw(RecordId(*id)).unwrap().is_some(),
                "round {round} ({mode}): acknowledged record {id} lost (head {})",
                head.last_id
            );
        }
        eprintln!(
            "round {round} ({mode}): {} acknowledged, head {}, replayed {}, torn tail {:?}",
            ids.len(),
            head.last_id,
            log.recovery_report().replayed,
            log.recovery_report().torn_tail
        );
        log.close().await.unwrap();
        let after = verify_chain(dir.path()).unwrap();
        assert_eq!(after.torn_tail, None);
        assert_eq!(after.head, head);
    }
}
