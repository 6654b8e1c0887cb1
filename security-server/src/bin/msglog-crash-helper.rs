//! Test helper for the message-log crash test (`tests/msglog_crash.rs`).
//!
//! Usage: `msglog-crash-helper DIR [sync|relaxed]`. Opens the message log in `DIR` (recovering it),
//! prints `ready`, then appends records from 16 tasks as fast as it can and prints the id of every
//! acknowledged record on its own line, flushing stdout each time, until it is killed. A line is
//! printed only after `append` returned, so every printed id was acknowledged.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use trustbus_sdk::{ClientId, ServiceId};
use trustbus_security_server::messagelog::{
    Durability, MessageKind, MessageLog, MessageLogConfig, NewRecord, RecordMeta,
};

fn fail(what: &str, e: &dyn std::fmt::Display) -> ! {
    eprintln!("msglog-crash-helper: {what}: {e}");
    std::process::exit(2);
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next() else {
        fail("usage", &"msglog-crash-helper DIR [sync|relaxed]")
    };
    let mut config = MessageLogConfig::new(dir);
    config.segment_size = 256 * 1024; // roll over often under load
    if args.next().as_deref() == Some("relaxed") {
        config.durability = Durability::Relaxed {
            max_delay: Duration::from_millis(20),
        };
    }
    let log = match MessageLog::open(config) {
        Ok(l) => Arc::new(l),
        Err(e) => fail("open", &e),
    };
    let (client, service) = match (
        ClientId::subsystem("DEV", "GOV", "1001", "client"),
        ClientId::subsystem("DEV", "GOV", "1002", "provider")
            .and_then(|p| ServiceId::new(p, "echo", Some("v1"))),
    ) {
        (Ok(c), Ok(s)) => (c, s),
        (Err(e), _) | (_, Err(e)) => fail("ids", &e),
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => fail("runtime", &e),
    };
    rt.block_on(async move {
        {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "ready");
            let _ = out.flush();
        }
        let mut tasks = Vec::new();
        for t in 0..16u64 {
            let log = log.clone();
            let (client, service) = (client.clone(), service.clone());
            tasks.push(tokio::spawn(async move {
                for i in 0u64.. {
                    let meta = RecordMeta::new(
                        MessageKind::RequestReceived,
                        format!("crash-{t}-{i}"),
                        uuid::Uuid::new_v4(),
                        &client,
                        &service,
                        OffsetDateTime::now_utc(),
                    );
                    let rec = NewRecord {
                        meta,
                        payload: vec![b'x'; 512],
                        manifest: b"<ASiCManifest/>".to_vec(),
                        signature: vec![0x30; 64],
                        ocsp_response: vec![0x30; 32],
                    };
                    match log.append(rec).await {
                        Ok(id) => {
                            let mut out = std::io::stdout().lock();
                            if writeln!(out, "{id}").and_then(|()| out.flush()).is_err() {
                                return;
                            }
                        }
                        Err(e) => fail("append", &e),
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
}
