//! A fixed number of sequential 1 KiB REST exchanges through two security servers in one
//! process (client proxy → mutual TLS → server proxy → echo backend and back: signed, verified,
//! logged in the durable message log), for counting instructions per exchange with callgrind.
//!
//! Wall-clock numbers on a shared machine are noise; instruction counts are not. Run it twice
//! with different counts under `valgrind --tool=callgrind` and divide the difference by the
//! difference in exchanges (`scripts/callgrind-exchange` does that):
//!
//! ```text
//! exchange_cost [--exchanges N] [--body BYTES] [--log journal|memory] [--direct]
//! ```
//!
//! `--direct` sends the same requests to the echo backend without the bus, which gives the cost
//! of the client and the backend alone.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use trustbus_pki::ocsp::CertStatus;
use trustbus_sdk::id::{ClientId, SecurityServerId};
use trustbus_security_server::config::Config;
use trustbus_security_server::identity::Identity;
use trustbus_security_server::logsink::{JournalLog, MemoryLog, MessageLogSink};
use trustbus_security_server::messagelog::timestamp::AdmissionGuard;
use trustbus_security_server::messagelog::{MessageLog, MessageLogConfig};
use trustbus_security_server::state::{AppState, StaticConf};
use trustbus_security_server::testkit::{TestPki, global_conf, server_entry, shared_params};

/// Exchanges made before counting starts in earnest (connections, caches, allocator warm).
const WARMUP: usize = 20;

async fn echo_backend() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = l.accept().await else {
                return;
            };
            let _ = tcp.set_nodelay(true);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    |r: http::Request<hyper::body::Incoming>| async move {
                        let b = r.into_body().collect().await.map(|b| b.to_bytes());
                        Ok::<_, std::convert::Infallible>(
                            http::Response::builder()
                                .header("content-type", "application/octet-stream")
                                .body(Full::new(b.unwrap_or_default()))
                                .unwrap(),
                        )
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

fn cfg(owner: &str, code: &str, port: u16, extra: &str) -> Config {
    Config::parse(&format!(
        "[server]\nowner = \"{owner}\"\nserver_code = \"{code}\"\ndata_dir = \"/nonexistent\"\ndevelopment = true\n\
         [listen]\nclient_proxy = \"127.0.0.1:0\"\nserver_proxy = \"127.0.0.1:{port}\"\nadmin = \"127.0.0.1:0\"\n\
         [globalconf]\nanchor = \"x\"\n{extra}"
    ))
    .unwrap()
}

fn identity(pki: &TestPki, s: &SecurityServerId) -> Identity {
    let now = trustbus_security_server::now();
    let (sk, sc) = pki.sign_cert(s.owner()).unwrap();
    let (ak, ac) = pki.auth_cert(s).unwrap();
    let id = Identity::new(s.clone(), sk, vec![sc.clone()], ak, vec![ac.clone()]).unwrap();
    id.sign.set_ocsp(pki.ocsp(&sc, now), CertStatus::Good, now);
    id.auth.set_ocsp(pki.ocsp(&ac, now), CertStatus::Good, now);
    id
}

fn log(kind: &str, dir: &std::path::Path) -> Arc<dyn MessageLogSink> {
    match kind {
        "memory" => Arc::new(MemoryLog::bounded(1000)),
        "journal" => {
            let log = MessageLog::open(MessageLogConfig::new(dir)).unwrap();
            let guard = AdmissionGuard::new(std::time::Duration::from_secs(3600));
            Arc::new(JournalLog::new(Arc::new(log), Arc::new(guard)))
        }
        other => panic!("--log journal|memory, not {other}"),
    }
}

struct Args {
    exchanges: usize,
    body: usize,
    log: String,
    direct: bool,
}

fn args() -> Args {
    let mut a = Args {
        exchanges: 100,
        body: 1024,
        log: "journal".into(),
        direct: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        match k.as_str() {
            "--exchanges" => a.exchanges = it.next().unwrap().parse().unwrap(),
            "--body" => a.body = it.next().unwrap().parse().unwrap(),
            "--log" => a.log = it.next().unwrap(),
            "--direct" => a.direct = true,
            // `cargo bench` passes `--bench`.
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

fn main() {
    let a = args();
    trustbus_pki::tls::install_ring_provider();
    // One thread: the count does not depend on how work is spread over workers.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let pki = TestPki::new(dir.path()).unwrap();
        let b = echo_backend().await;
        let p2 = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let s1 = SecurityServerId::from_slash("DEV/GOV/1000/ss1").unwrap();
        let s2 = SecurityServerId::from_slash("DEV/GOV/2000/ss2").unwrap();
        let (id1, id2) = (identity(&pki, &s1), identity(&pki, &s2));
        let cons = ClientId::from_slash("DEV/GOV/1000/cons").unwrap();
        let prov = ClientId::from_slash("DEV/GOV/2000/prov").unwrap();
        let shared = shared_params(
            &[cons.clone(), prov.clone()],
            vec![
                server_entry(&s1, "127.0.0.1:1", id1.auth.cert(), &[cons]),
                server_entry(&s2, &format!("127.0.0.1:{p2}"), id2.auth.cert(), &[prov]),
            ],
            pki.approved_ca("http://127.0.0.1:1/ocsp"),
        );
        let now = trustbus_security_server::now();
        let conf = Arc::new(StaticConf(global_conf(
            shared,
            1,
            now + time::Duration::hours(1),
        )));
        let c1 = cfg(
            "DEV/GOV/1000",
            "ss1",
            0,
            "[[clients]]\nid = \"DEV/GOV/1000/cons\"\nconnection = \"http\"\n",
        );
        let c2 = cfg(
            "DEV/GOV/2000",
            "ss2",
            p2,
            &format!(
                "[[clients]]\nid = \"DEV/GOV/2000/prov\"\nconnection = \"http\"\n\
                 [[services]]\nid = \"DEV/GOV/2000/prov/echo\"\nkind = \"rest\"\nurl = \"http://{b}\"\n\
                 [[access]]\nservice = \"DEV/GOV/2000/prov/echo\"\nsubject = \"SUBSYSTEM:DEV/GOV/1000/cons\"\n"
            ),
        );
        let l1 = log(&a.log, &dir.path().join("log1"));
        let l2 = log(&a.log, &dir.path().join("log2"));
        let st1 = Arc::new(AppState::new(Arc::new(c1), Arc::new(id1), conf.clone(), l1));
        let st2 = Arc::new(AppState::new(Arc::new(c2), Arc::new(id2), conf, l2));
        let (bound, t1) = trustbus_security_server::run::start(st1).await.unwrap();
        let (_, t2) = trustbus_security_server::run::start(st2).await.unwrap();
        let (target, path) = if a.direct {
            (b, "/x".to_owned())
        } else {
            (bound.client_proxy, "/r1/DEV/GOV/2000/prov/echo/x".to_owned())
        };
        let tcp = tokio::net::TcpStream::connect(target).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(conn);
        let body = Bytes::from(vec![b'a'; a.body]);
        for i in 0..WARMUP + a.exchanges {
            let mut r = http::Request::post(path.as_str())
                .header(http::header::HOST, "bench")
                .header("content-type", "application/octet-stream");
            if !a.direct {
                r = r.header("X-Road-Client", "DEV/GOV/1000/cons");
            }
            let resp = send
                .send_request(r.body(Full::new(body.clone())).unwrap())
                .await
                .unwrap();
            let status = resp.status();
            let got = resp.into_body().collect().await.unwrap().to_bytes();
            assert!(status.is_success(), "exchange {i}: HTTP {status}: {got:?}");
            assert_eq!(got.len(), body.len(), "exchange {i}: echoed body");
        }
        println!(
            "{} {} exchanges of {} bytes done (after {WARMUP} warm-up)",
            if a.direct { "direct" } else { "bus" },
            a.exchanges,
            a.body
        );
        drop((t1, t2));
    });
    // The message-log threads are not joined: the process ends here.
    std::process::exit(0);
}
