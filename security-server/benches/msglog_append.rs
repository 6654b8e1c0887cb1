//! Message-log append micro-benchmark (plain `std::time`, nothing asserted).
//!
//! `cargo bench -p trustbus-security-server --bench msglog_append` (with `CARGO_TARGET_DIR` and
//! `-j2` as usual). For each durability setting and concurrency (1, 16, 64 appending tasks on a
//! 2-worker tokio runtime) it appends 1 KiB-payload records for about a second and prints
//! records/s, µs per record (wall time / records) and the mean batch size the group commit formed
//! (records / fdatasyncs is not observable from outside, so it prints records per distinct
//! durable-head change instead). The store is updated in the background; one extra Sync row at
//! c64 updates it before the ack (`IndexUpdate::BeforeAck`) to show that cost.
//!
//! Set `MSGLOG_BENCH_DIR` to run on a particular file system (default: the system temp dir).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use time::OffsetDateTime;
use trustbus_sdk::{ClientId, ServiceId};
use trustbus_security_server::messagelog::{
    Durability, IndexUpdate, MessageKind, MessageLog, MessageLogConfig, NewRecord, RecordMeta,
};

const RUN: Duration = Duration::from_millis(1500);

fn record(client: &ClientId, service: &ServiceId, n: u64) -> NewRecord {
    NewRecord {
        meta: RecordMeta::new(
            MessageKind::RequestReceived,
            format!("bench-{n}"),
            uuid::Uuid::new_v4(),
            client,
            service,
            OffsetDateTime::now_utc(),
        ),
        payload: vec![b'x'; 1024],
        manifest: vec![b'm'; 200],
        signature: vec![0x30; 300],
        ocsp_response: vec![0x30; 120],
    }
}

fn run(label: &str, durability: Durability, index: IndexUpdate, conc: u64) {
    let base = std::env::var_os("MSGLOG_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!(
        "msglog-bench-{}-{label}-{conc}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = MessageLogConfig::new(&dir);
    config.durability = durability;
    config.index_update = index;
    let Ok(rt) = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    else {
        eprintln!("no runtime");
        return;
    };
    let log = match MessageLog::open(config) {
        Ok(l) => Arc::new(l),
        Err(e) => {
            eprintln!("open: {e}");
            return;
        }
    };
    let (Ok(client), Ok(service)) = (
        ClientId::subsystem("DEV", "GOV", "1001", "client"),
        ClientId::subsystem("DEV", "GOV", "1002", "provider")
            .and_then(|p| ServiceId::new(p, "echo", Some("v1"))),
    ) else {
        return;
    };
    let done = Arc::new(AtomicU64::new(0));
    let heads = Arc::new(AtomicU64::new(0));
    let (elapsed, n) = rt.block_on(async {
        let start = Instant::now();
        // Sample how often the durable head moves (roughly: number of syncs).
        let sampler = {
            let log = log.clone();
            let heads = heads.clone();
            tokio::spawn(async move {
                let mut last = log.chain_head().last_id;
                while start.elapsed() < RUN {
                    tokio::task::yield_now().await;
                    let h = log.chain_head().last_id;
                    if h != last {
                        heads.fetch_add(1, Ordering::Relaxed);
                        last = h;
                    }
                }
            })
        };
        let mut tasks = Vec::new();
        for t in 0..conc {
            let log = log.clone();
            let done = done.clone();
            let (client, service) = (client.clone(), service.clone());
            tasks.push(tokio::spawn(async move {
                let mut i = 0;
                while start.elapsed() < RUN {
                    if log
                        .append(record(&client, &service, t << 32 | i))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        let _ = sampler.await;
        (start.elapsed(), done.load(Ordering::Relaxed))
    });
    let rps = n as f64 / elapsed.as_secs_f64();
    let us = elapsed.as_secs_f64() * 1e6 / n.max(1) as f64;
    let moves = heads.load(Ordering::Relaxed).max(1);
    println!(
        "{label:<22} c{conc:<3} {n:>8} records  {rps:>9.0} records/s  {us:>7.2} us/record  ~{:.1} records per head move",
        n as f64 / moves as f64
    );
    if let Some(log) = Arc::into_inner(log) {
        let _ = rt.block_on(log.close());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Reference in the same run: one 1.7 KiB `write` + `fdatasync` at a time on a plain file.
fn raw_fdatasync() {
    use std::io::Write;
    let base = std::env::var_os("MSGLOG_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let path = base.join(format!("msglog-bench-raw-{}", std::process::id()));
    let Ok(mut f) = std::fs::File::create(&path) else {
        return;
    };
    let buf = vec![b'r'; 1700];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < RUN / 3 {
        if f.write_all(&buf).and_then(|()| f.sync_data()).is_err() {
            break;
        }
        n += 1;
    }
    let el = start.elapsed();
    println!(
        "{:<22} c1   {n:>8} syncs    {:>9.0} syncs/s    {:>7.2} us/sync",
        "raw write+fdatasync",
        n as f64 / el.as_secs_f64(),
        el.as_secs_f64() * 1e6 / n.max(1) as f64
    );
    let _ = std::fs::remove_file(&path);
}

fn main() {
    println!("message-log append, 1 KiB payload (~1.7 KiB record), {RUN:?} per row");
    raw_fdatasync();
    for conc in [1, 16, 64] {
        run("sync", Durability::Sync, IndexUpdate::Background, conc);
    }
    run(
        "sync+index-before-ack",
        Durability::Sync,
        IndexUpdate::BeforeAck,
        64,
    );
    let relaxed = Durability::Relaxed {
        max_delay: Duration::from_millis(10),
    };
    for conc in [1, 16, 64] {
        run("relaxed(10ms)", relaxed, IndexUpdate::Background, conc);
    }
}
