//! Throughput and latency of a REST exchange through two security servers (client proxy →
//! mutual TLS → server proxy → backend and back, signed, verified and logged in memory),
//! against a direct call to the same backend, in the same run on the same machine.
//!
//! `cargo bench -p trustbus-security-server --bench exchange` prints, for each body size,
//! the mean and median latency of sequential requests and the requests per second with 16
//! concurrent clients.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use trustbus_central_server::confclient::GlobalConfiguration;
use trustbus_pki::ocsp::CertStatus;
use trustbus_sdk::fault::Fault;
use trustbus_sdk::id::{ClientId, SecurityServerId};
use trustbus_security_server::config::Config;
use trustbus_security_server::identity::Identity;
use trustbus_security_server::logsink::MemoryLog;
use trustbus_security_server::state::{AppState, ConfSource};
use trustbus_security_server::testkit::{TestPki, global_conf, server_entry, shared_params};

struct Fixed(Mutex<Arc<GlobalConfiguration>>);
impl ConfSource for Fixed {
    fn current(&self) -> Result<Arc<GlobalConfiguration>, Fault> {
        Ok(self.0.lock().unwrap().clone())
    }
}

async fn backend() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    |r: http::Request<hyper::body::Incoming>| async move {
                        let b = r
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        Ok::<_, std::convert::Infallible>(
                            http::Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::new(b))
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

async fn measure(
    client: &Client<HttpConnector, Full<Bytes>>,
    url: &str,
    via_bus: bool,
    body: &Bytes,
) -> (Duration, Duration, f64) {
    let req = |b: Bytes| {
        let mut r = http::Request::post(url.to_owned()).header("content-type", "application/json");
        if via_bus {
            r = r.header("X-Road-Client", "DEV/GOV/1000/cons");
        }
        r.body(Full::new(b)).unwrap()
    };
    for _ in 0..20 {
        let r = client.request(req(body.clone())).await.unwrap();
        assert!(r.status().is_success());
        let _ = r.into_body().collect().await;
    }
    let n = 200;
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = client.request(req(body.clone())).await.unwrap();
        let _ = r.into_body().collect().await.unwrap();
        lat.push(t.elapsed());
    }
    lat.sort();
    let mean = lat.iter().sum::<Duration>() / n as u32;
    let median = lat[n / 2];
    let total = 800;
    let t = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let client = client.clone();
        let url = url.to_owned();
        let body = body.clone();
        tasks.spawn(async move {
            for _ in 0..total / 16 {
                let mut r =
                    http::Request::post(url.clone()).header("content-type", "application/json");
                if via_bus {
                    r = r.header("X-Road-Client", "DEV/GOV/1000/cons");
                }
                let resp = client
                    .request(r.body(Full::new(body.clone())).unwrap())
                    .await
                    .unwrap();
                let _ = resp.into_body().collect().await.unwrap();
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let rps = total as f64 / t.elapsed().as_secs_f64();
    (mean, median, rps)
}

fn main() {
    trustbus_pki::tls::install_ring_provider();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let pki = TestPki::new(dir.path()).unwrap();
        let b = backend().await;
        let p2 = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let (s1, s2) = (SecurityServerId::from_slash("DEV/GOV/1000/ss1").unwrap(), SecurityServerId::from_slash("DEV/GOV/2000/ss2").unwrap());
        let (id1, id2) = (identity(&pki, &s1), identity(&pki, &s2));
        let (cons, prov) = (ClientId::from_slash("DEV/GOV/1000/cons").unwrap(), ClientId::from_slash("DEV/GOV/2000/prov").unwrap());
        let shared = shared_params(
            &[cons.clone(), prov.clone()],
            vec![
                server_entry(&s1, "127.0.0.1:1", id1.auth.cert(), &[cons]),
                server_entry(&s2, &format!("127.0.0.1:{p2}"), id2.auth.cert(), &[prov]),
            ],
            pki.approved_ca("http://127.0.0.1:1/ocsp"),
        );
        let now = trustbus_security_server::now();
        let conf: Arc<dyn ConfSource> = Arc::new(Fixed(Mutex::new(global_conf(shared, 1, now + time::Duration::hours(1)))));
        let c1 = cfg("DEV/GOV/1000", "ss1", 0, "[[clients]]\nid = \"DEV/GOV/1000/cons\"\nconnection = \"http\"\n");
        let c2 = cfg(
            "DEV/GOV/2000",
            "ss2",
            p2,
            &format!(
                "[[clients]]\nid = \"DEV/GOV/2000/prov\"\nconnection = \"http\"\n[[services]]\nid = \"DEV/GOV/2000/prov/echo\"\nkind = \"rest\"\nurl = \"http://{b}\"\n\
                 [[access]]\nservice = \"DEV/GOV/2000/prov/echo\"\nsubject = \"SUBSYSTEM:DEV/GOV/1000/cons\"\n"
            ),
        );
        let st1 = Arc::new(AppState::new(Arc::new(c1), Arc::new(id1), conf.clone(), Arc::new(MemoryLog::bounded(1000))));
        let st2 = Arc::new(AppState::new(Arc::new(c2), Arc::new(id2), conf, Arc::new(MemoryLog::bounded(1000))));
        let (bound, t1) = trustbus_security_server::run::start(st1).await.unwrap();
        let (_, t2) = trustbus_security_server::run::start(st2).await.unwrap();
        std::mem::forget((t1, t2));
        let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let direct = format!("http://{b}/x");
        let bus = format!("http://{}/r1/DEV/GOV/2000/prov/echo/x", bound.client_proxy);
        println!("{:>9} {:>8} {:>12} {:>12} {:>10}", "body", "path", "mean", "median", "req/s(16)");
        for size in [0usize, 1024, 64 * 1024] {
            let body = Bytes::from(vec![b'a'; size]);
            for (name, url, via) in [("direct", &direct, false), ("bus", &bus, true)] {
                let (mean, median, rps) = measure(&client, url, via, &body).await;
                println!("{size:>9} {name:>8} {:>12?} {:>12?} {rps:>10.0}", mean, median);
            }
        }
    });
}
