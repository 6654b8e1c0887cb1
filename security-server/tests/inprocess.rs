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
