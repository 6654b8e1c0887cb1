//! Both security servers in this process, with hand-set OCSP responses and a swappable global
//! configuration: the trust decisions that are hard to provoke from outside (stale or revoked
//! signing certificates, a failing message log) and the message-log contract.

// Test code: a failed setup step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use time::OffsetDateTime;
use trustbus_central_server::confclient::GlobalConfiguration;
use trustbus_pki::ocsp::CertStatus;
use trustbus_pki::revocation::CrlReason;
use trustbus_sdk::fault::Fault;
use trustbus_sdk::id::{ClientId, SecurityServerId};
use trustbus_security_server::config::Config;
use trustbus_security_server::identity::Identity;
use trustbus_security_server::logsink::{MemoryLog, Side};
use trustbus_security_server::state::{AppState, ConfSource};
use trustbus_security_server::testkit::{TestPki, global_conf, server_entry, shared_params};
use trustbus_security_server::transport::Direction;

struct SwapConf(Mutex<Arc<GlobalConfiguration>>);

impl ConfSource for SwapConf {
    fn current(&self) -> Result<Arc<GlobalConfiguration>, Fault> {
        let c = self.0.lock().unwrap().clone();
        if c.is_expired(trustbus_security_server::now()) {
            return Err(Fault::of(
                trustbus_sdk::Origin::ClientProxy,
                trustbus_sdk::ErrorKind::OutdatedGlobalConf,
                "expired",
            ));
        }
        Ok(c)
    }
}

fn cid(s: &str) -> ClientId {
    ClientId::from_slash(s).unwrap()
}

async fn backend(calls: Arc<AtomicUsize>) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = l.accept().await else {
                return;
            };
            let calls = calls.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_r| {
                    calls.fetch_add(1, Ordering::SeqCst);
                    async {
                        Ok::<_, std::convert::Infallible>(
                            http::Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from_static(b"{\"ok\":true}")))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

/// TLS connections the HTTPS backend accepted (the provider pools them).
static HTTPS_BACKEND_CONNECTIONS: AtomicUsize = AtomicUsize::new(0);

/// An HTTPS backend with a self-signed certificate for `localhost`, whose PEM goes to `pem`.
async fn https_backend(calls: Arc<AtomicUsize>, pem: &std::path::Path) -> u16 {
    let (key, cert) =
        trustbus_security_server::identity::internal_tls_cert(vec!["localhost".into()]).unwrap();
    trustbus_pki::Certificate::write_pem_file(pem, std::slice::from_ref(&cert)).unwrap();
    let cfg = trustbus_pki::tls::is_server_config(
        trustbus_pki::tls::TlsIdentity::new(&[cert], &key).unwrap(),
        trustbus_pki::tls::IsClientAuth::None,
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = l.accept().await else {
                return;
            };
            let calls = calls.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                HTTPS_BACKEND_CONNECTIONS.fetch_add(1, Ordering::SeqCst);
                let svc = hyper::service::service_fn(move |_r| {
                    calls.fetch_add(1, Ordering::SeqCst);
                    async {
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                            Bytes::from_static(b"{\"tls\":true}"),
                        )))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    port
}

struct Setup {
    _dir: tempfile::TempDir,
    pki: TestPki,
    consumer: Arc<AppState>,
    provider: Arc<AppState>,
    consumer_log: Arc<MemoryLog>,
    provider_log: Arc<MemoryLog>,
    client_proxy: SocketAddr,
    calls: Arc<AtomicUsize>,
    http: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

fn config(owner: &str, code: &str, server_port: u16, extra: &str) -> Config {
    Config::parse(&format!(
        r#"
[server]
owner = "{owner}"
server_code = "{code}"
data_dir = "/nonexistent"
development = true
[listen]
client_proxy = "127.0.0.1:0"
server_proxy = "127.0.0.1:{server_port}"
admin = "127.0.0.1:0"
[globalconf]
anchor = "unused.json"
{extra}"#
    ))
    .unwrap()
}

fn identity(pki: &TestPki, server: &SecurityServerId, now: OffsetDateTime) -> Identity {
    let (sk, sc) = pki.sign_cert(server.owner()).unwrap();
    let (ak, ac) = pki.auth_cert(server).unwrap();
    let id = Identity::new(server.clone(), sk, vec![sc.clone()], ak, vec![ac.clone()]).unwrap();
    id.sign.set_ocsp(pki.ocsp(&sc, now), CertStatus::Good, now);
    id.auth.set_ocsp(pki.ocsp(&ac, now), CertStatus::Good, now);
    id
}

async fn setup() -> Setup {
    trustbus_pki::tls::install_ring_provider();
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path()).unwrap();
    let now = trustbus_security_server::now();
    let calls = Arc::new(AtomicUsize::new(0));
    let b = backend(calls.clone()).await;
    let pem = dir.path().join("backend.pem");
    let openapi = dir.path().join("openapi.json");
    std::fs::write(&openapi, br#"{"openapi":"3.0.0","info":{"title":"echo"}}"#).unwrap();
    let tls_port = https_backend(calls.clone(), &pem).await;
    // A certificate the HTTPS backend does not have, for the trust failure case.
    let other_pem = dir.path().join("other.pem");
    let (_, other) =
        trustbus_security_server::identity::internal_tls_cert(vec!["localhost".into()]).unwrap();
    trustbus_pki::Certificate::write_pem_file(&other_pem, &[other]).unwrap();
    let p2 = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s1 = SecurityServerId::from_slash("DEV/GOV/1000/ss1").unwrap();
    let s2 = SecurityServerId::from_slash("DEV/GOV/2000/ss2").unwrap();
    let mut id1 = identity(&pki, &s1, now);
    // ss1 also hosts a subsystem of member 3000, and holds that member's signing key.
    let (gk, gc) = pki.sign_cert(&cid("DEV/GOV/3000")).unwrap();
    id1.add_member_key(gk, vec![gc.clone()]).unwrap();
    id1.signer(&cid("DEV/GOV/3000"))
        .unwrap()
        .set_ocsp(pki.ocsp(&gc, now), CertStatus::Good, now);
    let guest = cid("DEV/GOV/3000/guest");
    let nouser = cid("DEV/GOV/1000/nouser");
    let id2 = identity(&pki, &s2, now);
    let (cons, prov) = (cid("DEV/GOV/1000/cons"), cid("DEV/GOV/2000/prov"));
    let shared = shared_params(
        &[cons.clone(), prov.clone(), guest.clone(), nouser.clone()],
        vec![
            server_entry(
                &s1,
                "127.0.0.1:1",
                id1.auth.cert(),
                &[cons.clone(), guest.clone(), nouser.clone()],
            ),
            server_entry(
                &s2,
                &format!("127.0.0.1:{p2}"),
                id2.auth.cert(),
                std::slice::from_ref(&prov),
            ),
        ],
        pki.approved_ca("http://127.0.0.1:1/ocsp"),
    );
    let conf = Arc::new(SwapConf(Mutex::new(global_conf(
        shared,
        1,
        now + time::Duration::hours(1),
    ))));
    let c1 = config(
        "DEV/GOV/1000",
        "ss1",
        0,
        "[[clients]]\nid = \"DEV/GOV/1000/cons\"\nconnection = \"http\"\n\
         [[clients]]\nid = \"DEV/GOV/3000/guest\"\nconnection = \"http\"\n\
         [[clients]]\nid = \"DEV/GOV/4000/stranger\"\nconnection = \"http\"\n\
         [[clients]]\nid = \"DEV/GOV/1000/nouser\"\nconnection = \"http\"\nallow_unverified_user_id = false\n",
    );
    let c2 = config(
        "DEV/GOV/2000",
        "ss2",
        p2,
        &format!(
            "[[clients]]\nid = \"DEV/GOV/2000/prov\"\nconnection = \"http\"\n\
             [[services]]\nid = \"DEV/GOV/2000/prov/echo\"\nkind = \"rest\"\nurl = \"http://{b}\"\nopenapi = \"{openapi}\"\n\
             [[access]]\nservice = \"DEV/GOV/2000/prov/echo\"\nsubject = \"SUBSYSTEM:DEV/GOV/1000/cons\"\n\
             [[access]]\nservice = \"DEV/GOV/2000/prov/echo\"\nsubject = \"SUBSYSTEM:DEV/GOV/3000/guest\"\n\
             [[access]]\nservice = \"DEV/GOV/2000/prov/echo\"\nsubject = \"SUBSYSTEM:DEV/GOV/1000/nouser\"\n\
             [[services]]\nid = \"DEV/GOV/2000/prov/secure\"\nkind = \"rest\"\nurl = \"https://localhost:{tls_port}/v1\"\ntls_ca = \"{pem}\"\n\
             [[access]]\nservice = \"DEV/GOV/2000/prov/secure\"\nsubject = \"SUBSYSTEM:DEV/GOV/1000/cons\"\n\
             [[services]]\nid = \"DEV/GOV/2000/prov/untrusted\"\nkind = \"rest\"\nurl = \"https://localhost:{tls_port}/v1\"\ntls_ca = \"{other}\"\n\
             [[access]]\nservice = \"DEV/GOV/2000/prov/untrusted\"\nsubject = \"SUBSYSTEM:DEV/GOV/1000/cons\"\n\
             [[services]]\nid = \"DEV/GOV/2000/prov/wronghost\"\nkind = \"rest\"\nurl = \"https://127.0.0.1:{tls_port}/v1\"\ntls_ca = \"{pem}\"\n\
             [[access]]\nservice = \"DEV/GOV/2000/prov/wronghost\"\nsubject = \"SUBSYSTEM:DEV/GOV/1000/cons\"\n",
            pem = pem.display(),
            other = other_pem.display(),
            openapi = openapi.display()
        ),
    );
    let (l1, l2) = (Arc::new(MemoryLog::new()), Arc::new(MemoryLog::new()));
    let consumer = Arc::new(AppState::new(
        Arc::new(c1),
        Arc::new(id1),
        conf.clone(),
        l1.clone(),
    ));
    let provider = Arc::new(AppState::new(Arc::new(c2), Arc::new(id2), conf, l2.clone()));
    let (bound, t1) = trustbus_security_server::run::start(consumer.clone())
        .await
        .unwrap();
    let (_, t2) = trustbus_security_server::run::start(provider.clone())
        .await
        .unwrap();
    // The listeners live as long as the runtime; the join sets are leaked on purpose.
    std::mem::forget(t1);
    std::mem::forget(t2);
    Setup {
        _dir: dir,
        pki,
        consumer,
        provider,
        consumer_log: l1,
        provider_log: l2,
        client_proxy: bound.client_proxy,
        calls,
        http: Client::builder(TokioExecutor::new()).build_http(),
    }
}

impl Setup {
    async fn get(&self) -> (u16, http::HeaderMap, Bytes) {
        self.get_service("echo").await
    }

    async fn get_service(&self, service: &str) -> (u16, http::HeaderMap, Bytes) {
        let req = http::Request::get(format!(
            "http://{}/r1/DEV/GOV/2000/prov/{service}/x",
            self.client_proxy
        ))
        .header("X-Road-Client", "DEV/GOV/1000/cons")
        .body(Full::new(Bytes::new()))
        .unwrap();
        let r = tokio::time::timeout(Duration::from_secs(20), self.http.request(req))
            .await
            .unwrap()
            .unwrap();
        let (s, h) = (r.status().as_u16(), r.headers().clone());
        (s, h, r.into_body().collect().await.unwrap().to_bytes())
    }

    async fn fault(&self, code: &str) {
        let before = self.calls.load(Ordering::SeqCst);
        let (_, h, body) = self.get().await;
        assert_eq!(
            h.get("x-road-error").and_then(|v| v.to_str().ok()),
            Some(code),
            "{}",
            String::from_utf8_lossy(&body)
        );
        assert_eq!(
            self.calls.load(Ordering::SeqCst),
            before,
            "{code}: backend must not be called"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_decisions_and_message_log() {
    let s = setup().await;
    let now = trustbus_security_server::now();

    // A normal exchange is logged four times: request and response on both sides, each with
    // the signed manifest, signature and signer OCSP response.
    let (status, _, body) = s.get().await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let (c, p) = (s.consumer_log.entries(), s.provider_log.entries());
    assert_eq!(c.len(), 2);
    assert_eq!(p.len(), 2);
    assert_eq!(
        (c[0].side, c[0].direction),
        (Side::Consumer, Direction::Request)
    );
    assert_eq!(
        (c[1].side, c[1].direction),
        (Side::Consumer, Direction::Response)
    );
    assert_eq!(
        (p[0].side, p[0].direction),
        (Side::Provider, Direction::Request)
    );
    assert_eq!(
        c[0].signature, p[0].signature,
        "both sides log the same signed request"
    );
    assert_eq!(c[1].manifest, p[1].manifest);
    assert!(!p[0].ocsp_response.is_empty() && !c[1].ocsp_response.is_empty());
    assert_eq!(c[1].payload_body.as_deref(), Some(&b"{\"ok\":true}"[..]));
    let metrics = s.consumer.metrics.render();
    assert!(
        metrics.contains("trustbus_ss_requests_total{client=\"DEV/GOV/1000/cons\",outcome=\"ok\""),
        "{metrics}"
    );
    // Log waits: the provider waits for each of its records; the consumer waits for its
    // response record only, whose sync covers the request record queued before sending.
    let waited = |m: &str, side: &str, record: &str| {
        let series = format!(
            "trustbus_ss_message_log_wait_seconds_count{{record=\"{record}\",side=\"{side}\"}} "
        );
        m.lines()
            .find_map(|l| l.strip_prefix(series.as_str()))
            .map(str::to_owned)
    };
    assert_eq!(
        waited(&metrics, "consumer", "response").as_deref(),
        Some("1")
    );
    assert_eq!(waited(&metrics, "consumer", "request"), None);
    let provider_metrics = s.provider.metrics.render();
    assert_eq!(
        waited(&provider_metrics, "provider", "request").as_deref(),
        Some("1")
    );
    assert_eq!(
        waited(&provider_metrics, "provider", "response").as_deref(),
        Some("1")
    );

    // Metadata services: answered by the servers, not the backend.
    let before = s.calls.load(Ordering::SeqCst);
    let (status, _, body) = s.get_service("listMethods").await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let codes: Vec<&str> = v["service"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["service_code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["echo", "secure", "untrusted", "wronghost"]);
    assert_eq!(v["service"][0]["service_type"], "REST");
    assert_eq!(v["service"][0]["subsystem_code"], "prov");
    let (status, _, body) = s.get_service("allowedMethods").await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()["service"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    let r = s
        .http
        .request(
            http::Request::get(format!("http://{}/listClients", s.client_proxy))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    let body = r.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(
        v["member"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"]["subsystem_code"] == "cons")
    );
    assert_eq!(s.calls.load(Ordering::SeqCst), before);

    // An HTTPS backend, trusted through tls_ca; the second call reuses the pooled connection.
    for _ in 0..2 {
        let (status, _, body) = s.get_service("secure").await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        assert_eq!(&body[..], b"{\"tls\":true}");
    }
    assert_eq!(HTTPS_BACKEND_CONNECTIONS.load(Ordering::SeqCst), 1);
    // Pooling changes no trust decision: a certificate tls_ca does not name, or one for
    // another host name, fails the handshake and the backend is not called.
    let before = s.calls.load(Ordering::SeqCst);
    for svc in ["untrusted", "wronghost"] {
        let (_, h, body) = s.get_service(svc).await;
        assert_eq!(
            h.get("x-road-error").and_then(|v| v.to_str().ok()),
            Some("Server.ServerProxy.ServiceFailed.NetworkError"),
            "{svc}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    assert_eq!(s.calls.load(Ordering::SeqCst), before);
    assert_eq!(HTTPS_BACKEND_CONNECTIONS.load(Ordering::SeqCst), 1);

    let before = s.calls.load(Ordering::SeqCst);
    let r = s
        .http
        .request(
            http::Request::get(format!(
                "http://{}/r1/DEV/GOV/2000/prov/getOpenAPI?serviceCode=echo",
                s.client_proxy
            ))
            .header("X-Road-Client", "DEV/GOV/1000/cons")
            .body(Full::new(Bytes::new()))
            .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = r.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], br#"{"openapi":"3.0.0","info":{"title":"echo"}}"#);
    assert_eq!(s.calls.load(Ordering::SeqCst), before);

    // A hosted client of another member: signed with that member's key, accepted by the
    // provider; a client of a member whose key this server lacks is refused before sending.
    let call = |client: &'static str| {
        let req = http::Request::get(format!(
            "http://{}/r1/DEV/GOV/2000/prov/echo/x",
            s.client_proxy
        ))
        .header("X-Road-Client", client)
        .body(Full::new(Bytes::new()))
        .unwrap();
        s.http.request(req)
    };
    let r = call("DEV/GOV/3000/guest").await.unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.headers().get("x-road-error"));
    let last = s.provider_log.entries().pop().unwrap();
    assert_eq!(last.client, cid("DEV/GOV/3000/guest"));
    let r = call("DEV/GOV/4000/stranger").await.unwrap();
    assert_eq!(
        r.headers()["x-road-error"],
        "Server.ClientProxy.CannotCreateSignature.KeyNotFound"
    );

    // An asserted user id travels marked unverified; for a client not allowed to assert one,
    // REST drops it.
    for (client, expect) in [("DEV/GOV/1000/cons", true), ("DEV/GOV/1000/nouser", false)] {
        let req = http::Request::get(format!(
            "http://{}/r1/DEV/GOV/2000/prov/echo/x",
            s.client_proxy
        ))
        .header("X-Road-Client", client)
        .header("X-Road-UserId", "EE12345678901")
        .body(Full::new(Bytes::new()))
        .unwrap();
        assert_eq!(s.http.request(req).await.unwrap().status(), 200);
        let e = s
            .provider_log
            .entries()
            .into_iter()
            .rev()
            .find(|e| e.direction == Direction::Request)
            .unwrap();
        let head = String::from_utf8_lossy(&e.payload_head).to_ascii_lowercase();
        if expect {
            let u = e.user.unwrap();
            assert_eq!((u.id.as_str(), u.verified), ("EE12345678901", false));
            assert!(head.contains("x-road-userid:ee12345678901"), "{head}");
        } else {
            assert!(e.user.is_none());
            assert!(!head.contains("x-road-userid"), "{head}");
        }
    }

    // A client not allowed to assert user ids: SOAP requests carrying one are refused.
    let soap = trustbus_sdk::soap::SoapRequestBuilder::new(
        cid("DEV/GOV/1000/nouser"),
        trustbus_sdk::ServiceId::from_slash("DEV/GOV/2000/prov/getPerson").unwrap(),
    )
    .id("u-1")
    .user_id("EE12345678901")
    .body("<ns:getPerson xmlns:ns=\"urn:test\"/>")
    .build();
    let r = s
        .http
        .request(
            http::Request::post(format!("http://{}/", s.client_proxy))
                .header("content-type", "text/xml; charset=utf-8")
                .body(Full::new(Bytes::from(soap)))
                .unwrap(),
        )
        .await
        .unwrap();
    let body = r.into_body().collect().await.unwrap().to_bytes();
    let f = trustbus_sdk::soap::parse_fault(&body, &Default::default()).unwrap();
    assert_eq!(
        f.to_fault()
            .unwrap()
            .code
            .render(trustbus_sdk::FaultDialect::Classic),
        "Client.InvalidUserIdentity"
    );

    // Diagnostics.
    let d: serde_json::Value =
        serde_json::from_str(&trustbus_security_server::admin::diagnostics(&s.consumer)).unwrap();
    assert_eq!(d["server"], "DEV/GOV/1000/ss1");
    assert_eq!(d["global_configuration"]["version"], 1);
    assert_eq!(d["signing_certificate"]["ocsp_status"], "Good");
    assert_eq!(d["clients"][0]["registered"], true);
    assert_eq!(d["healthy"], true);
    assert_eq!(d["message_log"], serde_json::json!({ "enabled": true }));
    assert!(
        s.consumer
            .metrics
            .render()
            .lines()
            .any(|l| l == "trustbus_ss_message_log_enabled 1")
    );

    // Provider's log fails: the exchange stops before the backend.
    s.provider_log.set_failing(Some("disk full"));
    s.fault("Server.ServerProxy.LoggingFailed").await;
    s.provider_log.set_failing(None);
    // Consumer's log fails: nothing is sent.
    s.consumer_log.set_failing(Some("disk full"));
    let before = s.provider_log.entries().len();
    s.fault("Server.ClientProxy.LoggingFailed").await;
    assert_eq!(s.provider_log.entries().len(), before);
    s.consumer_log.set_failing(None);

    // A stale OCSP response stapled by the consumer is refused by the provider.
    let sign = s.consumer.identity().sign.cert().clone();
    let good = s.consumer.identity().sign.ocsp().unwrap();
    s.consumer.identity().sign.set_ocsp(
        s.pki.ocsp(&sign, now - time::Duration::hours(2)),
        CertStatus::Good,
        now - time::Duration::hours(2),
    );
    s.fault("Server.ServerProxy.CertValidation.IncorrectValidationInfo")
        .await;
    let health = trustbus_security_server::admin::health(&s.consumer);
    assert!(
        health
            .unwrap_err()
            .contains("older than the freshness window")
    );

    // A revoked signing certificate: a consumer that knows refuses to sign; one that staples
    // the revoked response anyway is refused by the provider.
    s.pki.ca.revoke(&sign, CrlReason::KeyCompromise).unwrap();
    let revoked = s.pki.ocsp(&sign, now);
    s.consumer.identity().sign.set_ocsp(
        revoked.clone(),
        CertStatus::Revoked {
            at: now,
            reason: Some(1),
        },
        now,
    );
    s.fault("Server.ClientProxy.CannotCreateSignature.CertValidation")
        .await;
    s.consumer
        .identity()
        .sign
        .set_ocsp(revoked, CertStatus::Good, now);
    s.fault("Server.ServerProxy.CertValidation").await;
    s.consumer.identity().sign.set_ocsp(good.0, good.1, good.2);
    // The provider counted the refusals by outcome.
    let m = s.provider.metrics.render();
    assert!(
        m.contains("outcome=\"Server.ServerProxy.LoggingFailed\""),
        "{m}"
    );
    assert!(
        m.contains("outcome=\"Server.ServerProxy.CertValidation.IncorrectValidationInfo\""),
        "{m}"
    );
}

// ---------------------------------------------------------------------------------------------
// A malicious peer security server: it holds a registered authentication certificate (the
// consumer server's own) and speaks `trustbus/1` to the provider's server proxy directly, so it
// can replay, re-encode and tamper with messages in ways the client proxy never would.

/// The parts of one signed request, before framing.
#[derive(Clone)]
struct RawRequest {
    meta: Vec<u8>,
    head: Vec<u8>,
    body: Vec<u8>,
    manifest: Vec<u8>,
    signature: Vec<u8>,
    auth_ocsp: Vec<Vec<u8>>,
}

/// A REST `POST` from `DEV/GOV/1000/cons` to the echo service with a fresh request id, sealed
/// by the consumer's security server with the signing key of `signer`.
fn signed_request(s: &Setup, signer: &ClientId) -> RawRequest {
    use trustbus_sdk::rest::{Headers, RequestHeaderPart, RestRequest, XRoadHeaders};
    use trustbus_security_server::transport::encode::{ObjectDigest, manifest};
    use trustbus_security_server::transport::{
        CT_JSON, CT_REST_BODY, CT_REST_REQUEST, MESSAGE_JSON, Metadata, PAYLOAD_BODY, PAYLOAD_HEAD,
        PROTOCOL, PayloadKind,
    };
    let rr = RestRequest::parse("POST", "/r1/DEV/GOV/2000/prov/echo/transfer").unwrap();
    let headers = Headers::new()
        .with("x-road-client", "DEV/GOV/1000/cons")
        .with("content-type", "application/json");
    let xroad = XRoadHeaders::from_headers(&headers).unwrap();
    let request_id = uuid::Uuid::new_v4().to_string();
    let head = RequestHeaderPart::for_transport(&rr, &headers, &xroad, &request_id)
        .to_bytes()
        .unwrap();
    let body = br#"{"amount":100}"#.to_vec();
    let meta = Metadata {
        protocol: PROTOCOL.into(),
        kind: PayloadKind::Rest,
        direction: Direction::Request,
        message_id: xroad.message_id,
        request_id,
        client: cid("DEV/GOV/1000/cons"),
        service: rr.service().clone(),
        user: None,
        issue: None,
        represented_party: None,
        target_server: None,
        content_type: None,
        soap_action: None,
        request_hash: None,
        status: None,
    }
    .to_bytes();
    let manifest = manifest(&[
        ObjectDigest::of(MESSAGE_JSON, CT_JSON, &meta),
        ObjectDigest::of(PAYLOAD_HEAD, CT_REST_REQUEST, &head),
        ObjectDigest::of(PAYLOAD_BODY, CT_REST_BODY, &body),
    ]);
    let id = s.consumer.identity();
    let (signature, _) = id
        .sign_manifest(
            signer,
            &manifest,
            trustbus_sdk::Origin::ClientProxy,
            trustbus_security_server::now(),
        )
        .unwrap();
    RawRequest {
        meta,
        head,
        body,
        manifest,
        signature,
        auth_ocsp: id.auth_ocsp(),
    }
}

impl RawRequest {
    /// The HTTP content type and body of the framed message, with a fresh boundary.
    fn frame(&self) -> (String, Vec<u8>) {
        use trustbus_security_server::transport::encode::Encoder;
        use trustbus_security_server::transport::{
            CT_JSON, CT_REST_BODY, CT_REST_REQUEST, MESSAGE_JSON, PAYLOAD_BODY, PAYLOAD_HEAD,
        };
        let enc = Encoder::new();
        let mut out = enc.part(MESSAGE_JSON, CT_JSON, &self.meta);
        out.extend(enc.part(PAYLOAD_HEAD, CT_REST_REQUEST, &self.head));
        out.extend(enc.part(PAYLOAD_BODY, CT_REST_BODY, &self.body));
        out.extend(enc.trailer(&self.manifest, &self.signature, &self.auth_ocsp));
        (enc.content_type(), out)
    }
}

/// What the provider's server proxy answered a peer.
struct PeerAnswer {
    status: u16,
    content_type: String,
    error: Option<String>,
    message: String,
}

/// Sends `raw` to the provider's server proxy over mutual TLS as the consumer's server.
async fn send_as_peer(s: &Setup, raw: &RawRequest) -> PeerAnswer {
    use trustbus_security_server::transport::{EXCHANGE_PATH, PROTOCOL, PROTOCOL_HEADER};
    let view = s.consumer.view(trustbus_sdk::Origin::ClientProxy).unwrap();
    let provider = view
        .server(&SecurityServerId::from_slash("DEV/GOV/2000/ss2").unwrap())
        .unwrap()
        .clone();
    let (ct, body) = raw.frame();
    let req = http::Request::post(EXCHANGE_PATH)
        .header(http::header::HOST, "trustbus-security-server")
        .header(http::header::CONTENT_TYPE, ct)
        .header(PROTOCOL_HEADER, PROTOCOL)
        .body(trustbus_security_server::httpc::full(body))
        .unwrap();
    let sent = tokio::time::timeout(
        Duration::from_secs(20),
        s.consumer
            .pool
            .send(&view, &s.consumer.identity(), &[provider], req),
    )
    .await
    .unwrap()
    .unwrap();
    let r = sent.response;
    let header = |n: &str| {
        r.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (status, content_type, error) = (
        r.status().as_u16(),
        header("content-type").unwrap_or_default(),
        header("x-road-error"),
    );
    let body = r.into_body().collect().await.unwrap().to_bytes();
    let message = trustbus_sdk::rest::parse_error_body(&body)
        .map(|(_, m, _)| m)
        .unwrap_or_default();
    PeerAnswer {
        status,
        content_type,
        error,
        message,
    }
}

impl Setup {
    /// Sends `raw` as a peer and expects the provider to refuse it with `code` before calling
    /// the backend.
    async fn peer_refused(&self, case: &str, raw: &RawRequest, code: &str) -> PeerAnswer {
        let before = self.calls.load(Ordering::SeqCst);
        let a = send_as_peer(self, raw).await;
        assert_eq!(
            a.error.as_deref(),
            Some(code),
            "{case}: HTTP {} {}",
            a.status,
            a.message
        );
        assert_ne!(a.status, 200);
        assert_eq!(
            self.calls.load(Ordering::SeqCst),
            before,
            "{case}: backend must not be called"
        );
        a
    }

    /// Sends `raw` as a peer and expects a signed response after exactly one backend call.
    async fn peer_accepted(&self, raw: &RawRequest) {
        let before = self.calls.load(Ordering::SeqCst);
        let a = send_as_peer(self, raw).await;
        assert_eq!((a.status, a.error.as_deref()), (200, None), "{}", a.message);
        assert!(
            a.content_type.starts_with("multipart/mixed"),
            "{}",
            a.content_type
        );
        assert_eq!(self.calls.load(Ordering::SeqCst), before + 1);
    }
}

/// The order of the P-256 group, big-endian.
const P256_N: [u8; 32] = [
    0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
    0xBC, 0xE6, 0xFA, 0xAD, 0xA7, 0x17, 0x9E, 0x84, 0xF3, 0xB9, 0xCA, 0xC2, 0xFC, 0x63, 0x25, 0x51,
];

/// Tag, header length and content length of the DER element at the start of `d` (low tag
/// numbers and definite lengths only, which is all DER CMS uses).
fn der_tlv(d: &[u8]) -> (u8, usize, usize) {
    let tag = d[0];
    assert_ne!(tag & 0x1f, 0x1f, "high tag numbers are not expected");
    match d[1] {
        l if l < 0x80 => (tag, 2, l as usize),
        0x80 => panic!("indefinite length is not DER"),
        l => {
            let n = (l & 0x7f) as usize;
            let len = d[2..2 + n]
                .iter()
                .fold(0usize, |a, &b| (a << 8) | b as usize);
            (tag, 2 + n, len)
        }
    }
}

fn der_element(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes: Vec<u8> = n
            .to_be_bytes()
            .into_iter()
            .skip_while(|&b| b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// The minimal DER INTEGER content for the unsigned big-endian `v`.
fn der_uint(v: &[u8]) -> Vec<u8> {
    let v: Vec<u8> = v.iter().copied().skip_while(|&b| b == 0).collect();
    let mut out = Vec::new();
    if v.first().is_none_or(|&b| b & 0x80 != 0) {
        out.push(0);
    }
    out.extend(v);
    out
}

/// `ECDSA-Sig-Value (r, s)` in `content` rewritten as `(r, n - s)`, if `content` is one.
fn malleate_ecdsa(content: &[u8]) -> Option<Vec<u8>> {
    if content.len() < 2 || content[0] != 0x30 {
        return None;
    }
    let (_, hl, cl) = der_tlv(content);
    if hl + cl != content.len() {
        return None;
    }
    let inner = &content[hl..];
    let mut ints = Vec::new();
    let mut i = 0;
    while i < inner.len() {
        let (tag, h, c) = der_tlv(&inner[i..]);
        if tag != 0x02 || i + h + c > inner.len() {
            return None;
        }
        ints.push(&inner[i + h..i + h + c]);
        i += h + c;
    }
    let [r, s] = ints[..] else { return None };
    if !(20..=33).contains(&r.len()) || !(20..=33).contains(&s.len()) {
        return None;
    }
    let s = s.strip_prefix(&[0]).unwrap_or(s);
    let mut s32 = [0u8; 32];
    s32[32 - s.len()..].copy_from_slice(s);
    // n - s on 32-byte big-endian numbers (0 < s < n, so no final borrow).
    let mut out = [0u8; 32];
    let mut borrow = 0i16;
    for k in (0..32).rev() {
        let d = P256_N[k] as i16 - s32[k] as i16 - borrow;
        (out[k], borrow) = if d < 0 {
            ((d + 256) as u8, 1)
        } else {
            (d as u8, 0)
        };
    }
    assert_eq!(borrow, 0);
    let mut seq = der_element(0x02, r);
    seq.extend(der_element(0x02, &der_uint(&out)));
    Some(der_element(0x30, &seq))
}

/// Re-encodes the DER elements in `d`, replacing the content of every OCTET STRING that holds
/// an ECDSA signature value by its malleated twin; lengths of enclosing elements follow.
fn rewrite_der(d: &[u8], hits: &mut usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < d.len() {
        let (tag, hl, cl) = der_tlv(&d[i..]);
        let content = &d[i + hl..i + hl + cl];
        let content = if tag & 0x20 != 0 {
            rewrite_der(content, hits)
        } else if tag == 0x04
            && let Some(m) = malleate_ecdsa(content)
        {
            *hits += 1;
            m
        } else {
            content.to_vec()
        };
        out.extend(der_element(tag, &content));
        i += hl + cl;
    }
    out
}

/// The CMS signature `cms` with its SignerInfo's ECDSA value `(r, s)` replaced by `(r, n - s)`:
/// a different byte string that still verifies.
fn malleated(cms: &[u8]) -> Vec<u8> {
    let mut hits = 0;
    let out = rewrite_der(cms, &mut hits);
    assert_eq!(hits, 1, "exactly one ECDSA signature value in the CMS");
    assert_ne!(out, cms);
    out
}

#[test]
fn ecdsa_malleation_helper_round_trips() {
    // n - (n - s) = s: malleating twice gives back the original bytes.
    let sig = [
        der_element(0x02, &der_uint(&[0x7f; 32])),
        der_element(0x02, &der_uint(&[0x81; 32])),
    ]
    .concat();
    let cms = der_element(0x30, &der_element(0x04, &der_element(0x30, &sig)));
    let once = malleated(&cms);
    assert_ne!(
        once.len(),
        cms.len(),
        "s and n - s differ in encoded length here"
    );
    assert_eq!(malleated(&once), cms);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_replays_and_tampering_are_refused_at_the_server_proxy() {
    let s = setup().await;
    let replay = "Server.ServerProxy.InvalidMessage";

    // 1. A valid request is served once; the same signed parts again (only the multipart
    // boundary differs) are a replay.
    let req = signed_request(&s, &cid("DEV/GOV/1000"));
    s.peer_accepted(&req).await;
    let a = s.peer_refused("replay", &req, replay).await;
    assert!(a.message.contains("replay"), "{}", a.message);

    // 2. The same request with its ECDSA signature value rewritten as (r, n - s): other
    // signature bytes, the same signed manifest, so still a replay.
    let twin = RawRequest {
        signature: malleated(&req.signature),
        ..req.clone()
    };
    let a = s.peer_refused("malleated replay", &twin, replay).await;
    assert!(a.message.contains("replay"), "{}", a.message);
    // The malleated form verifies on its own: sent first for a fresh request it is served,
    // and then the original signature bytes are the replay.
    let fresh = signed_request(&s, &cid("DEV/GOV/1000"));
    let fresh_twin = RawRequest {
        signature: malleated(&fresh.signature),
        ..fresh.clone()
    };
    s.peer_accepted(&fresh_twin).await;
    let a = s
        .peer_refused("original after malleated", &fresh, replay)
        .await;
    assert!(a.message.contains("replay"), "{}", a.message);

    // 3. One payload byte changed in transit, signature untouched: the manifest recomputed
    // from the received parts differs from the signed one.
    let mut tampered = signed_request(&s, &cid("DEV/GOV/1000"));
    let at = tampered.body.iter().position(|&b| b == b'1').unwrap();
    tampered.body[at] = b'9';
    s.peer_refused(
        "payload tampered",
        &tampered,
        "Server.ServerProxy.SignatureVerification.InvalidReference",
    )
    .await;

    // 4. Signed with the key of member 3000 (which this peer also holds) for a client of
    // member 1000: the signer is not the client's member.
    let foreign = signed_request(&s, &cid("DEV/GOV/3000"));
    s.peer_refused(
        "foreign signer",
        &foreign,
        "Server.ServerProxy.CertValidation.IncorrectCertificate",
    )
    .await;

    // Nothing refused reached the provider's message log: only the two served requests.
    let served = s
        .provider_log
        .entries()
        .into_iter()
        .filter(|e| e.direction == Direction::Request)
        .count();
    assert_eq!(served, 2);
}
