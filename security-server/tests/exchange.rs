//! End to end: a central server, the development CA's OCSP responder and a backend run in this
//! process; two real `security-server` processes exchange messages over mutual TLS.
//!
//! One instance is set up once per test binary run (it takes a second or two) and every case
//! below uses it; each negative case asserts the exact fault code and that the backend was not
//! called.

// Test code: a failed setup step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use trustbus_central_server::anchor::Anchor;
use trustbus_central_server::api::{self, AppState as CsState};
use trustbus_central_server::globalconf::{GlobalConf, Publisher};
use trustbus_central_server::keys::KeyStore;
use trustbus_central_server::management::AutoApprove;
use trustbus_central_server::model::{
    Maintenance, ManagementService, Member, MemberClass, SecurityServer, Subsystem,
};
use trustbus_central_server::registry::Registry;
use trustbus_pki::token::SoftToken;
use trustbus_pki::{Certificate, KeyPair};
use trustbus_sdk::id::{ClientId, SecurityServerId};
use trustbus_security_server::testkit::{TestPki, server_entry};

const PIN: &str = "1234";

fn cid(s: &str) -> ClientId {
    ClientId::from_slash(s).unwrap()
}
fn sid(s: &str) -> SecurityServerId {
    SecurityServerId::from_slash(s).unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Calls to the backend, by path.
#[derive(Default)]
struct Backend {
    calls: AtomicUsize,
}

async fn backend_handle(
    b: Arc<Backend>,
    req: http::Request<Incoming>,
) -> Result<http::Response<Full<Bytes>>, std::convert::Infallible> {
    b.calls.fetch_add(1, Ordering::SeqCst);
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let path = parts.uri.path().to_owned();
    if path.ends_with("/count") {
        let out = serde_json::json!({ "len": body.len() }).to_string();
        return Ok(http::Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(out)))
            .unwrap());
    }
    if path.starts_with("/slow") {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    if path.starts_with("/soap") {
        let limits = trustbus_sdk::soap::Limits::default();
        let soap_bytes = match trustbus_sdk::multipart::check_content_type(
            parts
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or(""),
        ) {
            Ok(trustbus_sdk::multipart::SoapContentType::Multipart(ty)) => {
                let mp =
                    trustbus_sdk::multipart::parse_multipart(body.to_vec(), &ty, &limits).unwrap();
                let n = mp.attachments().count();
                (mp.soap_bytes().to_vec(), n)
            }
            _ => (body.to_vec(), 0),
        };
        let req = trustbus_sdk::soap::parse_request(soap_bytes.0, &limits).unwrap();
        let xml = format!(
            "<ns:getPersonResponse xmlns:ns=\"urn:test\"><ns:attachments>{}</ns:attachments></ns:getPersonResponse>",
            soap_bytes.1
        );
        let out = trustbus_sdk::soap::build_response(
            &req,
            &xml,
            trustbus_sdk::soap::HashAlgorithm::Sha512,
        );
        if soap_bytes.1 > 0 {
            // Answer with an attachment too (SwA).
            let mut mp = b"--resp-b\r\nContent-Type: text/xml; charset=UTF-8\r\n\r\n".to_vec();
            mp.extend_from_slice(&out);
            mp.extend_from_slice(b"\r\n--resp-b\r\nContent-Type: application/octet-stream\r\nContent-ID: <r1@x>\r\n\r\nRESULT DATA\r\n--resp-b--\r\n");
            return Ok(http::Response::builder()
                .header(
                    "content-type",
                    "multipart/related; type=\"text/xml\"; boundary=\"resp-b\"",
                )
                .body(Full::new(Bytes::from(mp)))
                .unwrap());
        }
        return Ok(http::Response::builder()
            .header("content-type", "text/xml; charset=utf-8")
            .body(Full::new(Bytes::from(out)))
            .unwrap());
    }
    let echo = serde_json::json!({
        "method": parts.method.as_str(),
        "path": path,
        "query": parts.uri.query(),
        "body": String::from_utf8_lossy(&body),
        "x-road-client": parts.headers.get("x-road-client").and_then(|v| v.to_str().ok()),
        "user-id": parts.headers.get("x-road-userid").and_then(|v| v.to_str().ok()),
    });
    Ok(http::Response::builder()
        .status(if parts.method == http::Method::POST {
            201
        } else {
            200
        })
        .header("content-type", "application/json")
        .header("x-backend", "yes")
        .body(Full::new(Bytes::from(echo.to_string())))
        .unwrap())
}

async fn start_backend() -> (SocketAddr, Arc<Backend>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let b = Arc::new(Backend::default());
    let bb = b.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = l.accept().await else {
                return;
            };
            let b = bb.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |r| backend_handle(b.clone(), r));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    (addr, b)
}

struct SsProc {
    child: Child,
    admin: String,
    client_proxy: String,
    client_proxy_tls: String,
    internal_cert: Certificate,
}

impl Drop for SsProc {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Writes a security server directory: token, certificates, configuration.
fn ss_dir(
    root: &Path,
    name: &str,
    pki: &TestPki,
    server: &SecurityServerId,
    member_name: &str,
    server_port: u16,
    body: &str,
) -> (PathBuf, Certificate) {
    let dir = root.join(name);
    let data = dir.join("data");
    std::fs::create_dir_all(data.join("certs")).unwrap();
    let token = SoftToken::open(data.join("token"))
        .unwrap()
        .with_iterations(NonZeroU32::new(1000).unwrap());
    let (sk, sc) = pki.sign_cert(server.owner()).unwrap();
    let (ak, ac) = pki.auth_cert(server).unwrap();
    let _ = member_name;
    token.store("sign", "sign", &sk, PIN).unwrap();
    token.store("auth", "auth", &ak, PIN).unwrap();
    Certificate::write_pem_file(&data.join("certs/sign.pem"), &[sc]).unwrap();
    Certificate::write_pem_file(&data.join("certs/auth.pem"), std::slice::from_ref(&ac)).unwrap();
    let (ik, ic) =
        trustbus_security_server::identity::internal_tls_cert(vec!["localhost".into()]).unwrap();
    token.store("internal", "internal", &ik, PIN).unwrap();
    Certificate::write_pem_file(&data.join("certs/internal.pem"), &[ic]).unwrap();
    let cfg = format!(
        r#"
[server]
owner = "{owner}"
server_code = "{code}"
data_dir = "data"
development = true

[listen]
client_proxy = "127.0.0.1:0"
client_proxy_tls = "127.0.0.1:0"
server_proxy = "127.0.0.1:{server_port}"
admin = "127.0.0.1:0"

[globalconf]
anchor = "../anchor.json"
poll_interval_seconds = 1

[limits]
spill_threshold_bytes = 65536
{body}
"#,
        owner = server.owner().to_slash(),
        code = server.server_code(),
    );
    std::fs::write(dir.join("security-server.toml"), cfg).unwrap();
    (dir, ac)
}

async fn start_ss(dir: &Path) -> SsProc {
    let exe = common::ss_exe();
    let mut child = Command::new(exe)
        .arg("serve")
        .arg("--config")
        .arg(dir.join("security-server.toml"))
        .env("TRUSTBUS_SS_PIN", PIN)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut addrs = BTreeMap::new();
    while addrs.len() < 4 {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Some(rest) = line.strip_prefix("listening ") {
            let (name, url) = rest.split_once(' ').unwrap();
            addrs.insert(name.to_owned(), url.to_owned());
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    // Healthy = configuration downloaded and OCSP responses stapled.
    let admin = addrs["admin"].clone();
    let client = reqwest_like::Client::new();
    for _ in 0..600 {
        if client.get(&format!("{admin}/healthz")).await.map(|r| r.0) == Ok(200) {
            return SsProc {
                child,
                admin: admin.clone(),
                client_proxy: addrs["client_proxy"].clone(),
                client_proxy_tls: addrs["client_proxy_tls"]
                    .trim_start_matches("https://")
                    .to_owned(),
                internal_cert: Certificate::read_file(&dir.join("data/certs/internal.pem"))
                    .unwrap()
                    .remove(0),
            };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "security server at {} did not become healthy",
        dir.display()
    );
}

/// A tiny HTTP client for the tests.
mod reqwest_like {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client as HClient;
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::rt::TokioExecutor;

    pub(crate) struct Client(HClient<HttpConnector, Full<Bytes>>);

    pub(crate) type Resp = (u16, http::HeaderMap, Bytes);

    impl Client {
        pub(crate) fn new() -> Self {
            Self(HClient::builder(TokioExecutor::new()).build_http())
        }
        pub(crate) async fn send(&self, req: http::Request<Full<Bytes>>) -> Result<Resp, String> {
            let r = self.0.request(req).await.map_err(|e| e.to_string())?;
            let status = r.status().as_u16();
            let headers = r.headers().clone();
            let body = r
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok((status, headers, body))
        }
        pub(crate) async fn get(&self, url: &str) -> Result<(u16, Bytes), String> {
            let r = self
                .send(
                    http::Request::get(url)
                        .body(Full::new(Bytes::new()))
                        .unwrap(),
                )
                .await?;
            Ok((r.0, r.2))
        }
    }
}

struct Instance {
    _dir: tempfile::TempDir,
    /// The two security servers' directories (message logs under `data/messagelog`).
    ss_dirs: [PathBuf; 2],
    ss1: SsProc,
    _ss2: SsProc,
    backend: Arc<Backend>,
    http: reqwest_like::Client,
    stop_cs: Option<tokio::sync::oneshot::Sender<()>>,
    pki: Arc<TestPki>,
    ss2_port: u16,
    is_cert: (KeyPair, Certificate),
    /// The central server's registry (management requests).
    registry: Arc<Registry>,
}

async fn instance() -> Instance {
    trustbus_pki::tls::install_ring_provider();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    let pki = Arc::new(TestPki::new(&root.join("ca")).unwrap());

    // OCSP responder over HTTP.
    let ocsp_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ocsp_addr = ocsp_l.local_addr().unwrap();
    let services = trustbus_pki::serve::dev_services(pki.ca.clone()).unwrap();
    tokio::spawn(trustbus_pki::serve::serve(
        ocsp_l,
        services,
        std::future::pending(),
    ));

    let (backend_addr, backend) = start_backend().await;

    // Servers and their directories.
    let (p1, p2) = (free_port(), free_port());
    let ss1 = sid("DEV/GOV/1000/ss1");
    let ss2 = sid("DEV/GOV/2000/ss2");
    let b = format!("http://{backend_addr}");
    let wsdl = root.join("getPerson.wsdl");
    std::fs::write(&wsdl, WSDL).unwrap();
    let wsdl = wsdl.display();
    let is_cert =
        trustbus_security_server::identity::internal_tls_cert(vec!["is.example".into()]).unwrap();
    let is_fp = is_cert.1.fingerprint_hex();
    let api_key_hash = trustbus_pki::cert::to_hex(
        ring::digest::digest(&ring::digest::SHA256, b"test-api-key").as_ref(),
    );
    let admin_key_hash = trustbus_pki::cert::to_hex(
        ring::digest::digest(&ring::digest::SHA256, ADMIN_KEY.as_bytes()).as_ref(),
    );
    let (d1, a1) = ss_dir(
        &root,
        "ss1",
        &pki,
        &ss1,
        "Consumer",
        p1,
        &format!(
            r#"
[[clients]]
id = "DEV/GOV/1000/cons"
connection = "http"
[[clients]]
id = "DEV/GOV/1000/strict"
connection = "https-auth"
is_certs = ["{is_fp}"]
[[clients]]
id = "DEV/GOV/1000/unreg"
connection = "http"
[[api_keys]]
sha256 = "{api_key_hash}"
role = "observer"
"#
        ),
    );
    let (d2, a2) = ss_dir(
        &root,
        "ss2",
        &pki,
        &ss2,
        "Provider",
        p2,
        &format!(
            r#"
# The provider's admin API: the observer key and a system administrator key.
[[api_keys]]
sha256 = "{api_key_hash}"
role = "observer"
[[api_keys]]
sha256 = "{admin_key_hash}"
role = "system-administrator"

[[clients]]
id = "DEV/GOV/2000/prov"
connection = "http"

[[services]]
id = "DEV/GOV/2000/prov/echo"
kind = "rest"
url = "{b}/api"
[[services]]
id = "DEV/GOV/2000/prov/secret"
kind = "rest"
url = "{b}/secret"
[[services]]
id = "DEV/GOV/2000/prov/off"
kind = "rest"
url = "{b}/off"
enabled = false
disabled_notice = "down for upgrade"
[[services]]
id = "DEV/GOV/2000/prov/slow"
kind = "rest"
url = "{b}/slow"
read_timeout_ms = 500
[[services]]
id = "DEV/GOV/2000/prov/getPerson"
kind = "soap"
url = "{b}/soap"
wsdl = "{wsdl}"

[[access]]
service = "DEV/GOV/2000/prov/echo"
subject = "SUBSYSTEM:DEV/GOV/1000/cons"
endpoints = [{{ method = "*", path = "/persons/**" }}]
[[access]]
service = "DEV/GOV/2000/prov/off"
subject = "SUBSYSTEM:DEV/GOV/1000/cons"
[[access]]
service = "DEV/GOV/2000/prov/slow"
subject = "SUBSYSTEM:DEV/GOV/1000/cons"
[[access]]
service = "DEV/GOV/2000/prov/getPerson"
subject = "MEMBER:DEV/GOV/1000"
[[access]]
service = "DEV/GOV/2000/prov/getPerson"
subject = "SUBSYSTEM:DEV/GOV/1000/cons"
"#
        ),
    );

    // Central server in process.
    let cs = root.join("cs");
    let registry = Arc::new(Registry::open(&cs.join("registry"), "DEV").unwrap());
    // A test PIN and few PBKDF2 rounds: the token format is the production one, only cheaper.
    let iterations = NonZeroU32::new(1000).unwrap();
    let keys = KeyStore::open(
        &cs.join("keys"),
        Some("test-pin".into()),
        "UNUSED",
        iterations,
    )
    .unwrap();
    keys.generate(1, "DEV").unwrap();
    let ca = pki.approved_ca(&format!("http://{ocsp_addr}/ocsp"));
    let cons = [cid("DEV/GOV/1000/cons"), cid("DEV/GOV/1000/strict")];
    let mut servers = vec![
        server_entry(&ss1, &format!("127.0.0.1:{p1}"), &a1, &cons),
        server_entry(
            &ss2,
            &format!("127.0.0.1:{p2}"),
            &a2,
            // `extra` is registered on ss2 in global configuration but not configured there.
            &[cid("DEV/GOV/2000/prov"), cid("DEV/GOV/2000/extra")],
        ),
    ];
    // A provider whose server is in maintenance mode.
    let mut down = server_entry(
        &sid("DEV/GOV/3000/ss3"),
        "127.0.0.1:1",
        &a2,
        &[cid("DEV/GOV/3000/down")],
    );
    down.auth_cert_sha256 = vec![];
    down.maintenance = Maintenance {
        enabled: true,
        message: Some("back at noon".into()),
    };
    servers.push(down);
    // A provider "hosted" at ss2's address under an authentication certificate ss2 does not have.
    let mut ghost = server_entry(
        &sid("DEV/GOV/4000/ss4"),
        &format!("127.0.0.1:{p2}"),
        &a1,
        &[cid("DEV/GOV/4000/ghost")],
    );
    ghost.auth_cert_sha256 = vec!["00".repeat(32)];
    servers.push(ghost);
    registry
        .mutate(|s| {
            s.signing.active = 1;
            s.settings.configuration_validity_seconds = 6;
            s.member_classes.insert(
                "GOV".into(),
                MemberClass {
                    code: "GOV".into(),
                    description: String::new(),
                },
            );
            for (m, subs) in [
                ("DEV/GOV/1000", vec!["cons", "strict", "unreg"]),
                ("DEV/GOV/2000", vec!["prov", "extra"]),
                ("DEV/GOV/3000", vec!["down"]),
                ("DEV/GOV/4000", vec!["ghost"]),
            ] {
                let id = cid(m);
                s.members.insert(
                    m.into(),
                    Member {
                        id: id.clone(),
                        name: format!("Member {}", id.member_code()),
                        subsystems: subs
                            .iter()
                            .map(|c| Subsystem {
                                id: cid(&format!("{m}/{c}")),
                                name: None,
                            })
                            .collect(),
                    },
                );
            }
            for srv in &servers {
                s.servers
                    .insert(srv.id.to_slash(), SecurityServer { ..srv.clone() });
            }
            s.cas.insert(ca.name.clone(), ca.clone());
            Ok(())
        })
        .unwrap();
    let publisher = Publisher::open(&cs.join("published"), 10).unwrap();
    // The management service (mutual TLS, certificate published in private parameters);
    // nothing is approved automatically, so requests stay pending.
    let mgmt_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mgmt_base = format!(
        "https://{}/managementservice/v1",
        mgmt_l.local_addr().unwrap()
    );
    let mgmt_key = KeyPair::generate(trustbus_pki::KeyKind::EcdsaP256).unwrap();
    let (mgmt_cert, mgmt_ca) =
        trustbus_central_server::tlsconf::issue_management_cert(&mgmt_key, "DEV").unwrap();
    let gc = Arc::new(GlobalConf::new(
        registry.clone(),
        keys,
        publisher,
        ManagementService {
            address: mgmt_base,
            tls_cert: Some(trustbus_central_server::util::b64(&mgmt_cert)),
            tls_ca_cert: Some(trustbus_central_server::util::b64(&mgmt_ca)),
        },
        vec![],
    ));
    gc.regenerate().unwrap();
    let cs_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cs_addr = cs_l.local_addr().unwrap();
    let state = CsState {
        registry: registry.clone(),
        globalconf: gc.clone(),
        auto_approve: Arc::new(AutoApprove(Default::default())),
        refresh_interval_seconds: 1,
        max_management_body: 1 << 20,
    };
    {
        use trustbus_central_server::tlsconf;
        let tls =
            tlsconf::management_server_config(registry.clone(), &mgmt_key, &mgmt_cert).unwrap();
        let listener = tlsconf::TlsListener::new(mgmt_l, tls, "management").unwrap();
        let router = api::management_router(state.clone());
        tokio::spawn(async move {
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<tlsconf::PeerCert>(),
            )
            .await
        });
    }
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let router = api::public_router(state);
    tokio::spawn(async move {
        let refresh = async {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let gc = gc.clone();
                let _ = tokio::task::spawn_blocking(move || gc.refresh()).await;
            }
        };
        tokio::select! {
            _ = axum::serve(cs_l, router) => {}
            _ = refresh => {}
            _ = rx => {}
        }
    });
    let cert = KeyStore::open(
        &cs.join("keys"),
        Some("test-pin".into()),
        "UNUSED",
        iterations,
    )
    .unwrap()
    .certificate(1)
    .unwrap();
    let anchor = Anchor::new("DEV", vec![format!("http://{cs_addr}/globalconf")], &[cert]);
    std::fs::write(root.join("anchor.json"), anchor.to_bytes().unwrap()).unwrap();

    let (s1, s2) = tokio::join!(start_ss(&d1), start_ss(&d2));
    Instance {
        _dir: dir,
        ss_dirs: [d1.clone(), d2.clone()],
        ss1: s1,
        _ss2: s2,
        backend,
        http: reqwest_like::Client::new(),
        stop_cs: Some(tx),
        pki,
        ss2_port: p2,
        is_cert,
        registry,
    }
}

impl Instance {
    fn calls(&self) -> usize {
        self.backend.calls.load(Ordering::SeqCst)
    }

    async fn rest(
        &self,
        method: &str,
        path: &str,
        client: &str,
        body: Option<&str>,
        extra: &[(&str, &str)],
    ) -> reqwest_like::Resp {
        let mut b = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.ss1.client_proxy));
        if !client.is_empty() {
            b = b.header("X-Road-Client", client);
        }
        for (n, v) in extra {
            b = b.header(*n, *v);
        }
        if body.is_some() {
            b = b.header("content-type", "application/json");
        }
        let req = b
            .body(Full::new(Bytes::from(body.unwrap_or("").to_owned())))
            .unwrap();
        self.http.send(req).await.unwrap()
    }

    async fn soap(&self, body: Vec<u8>, ct: &str, method: &str) -> reqwest_like::Resp {
        let req = http::Request::builder()
            .method(method)
            .uri(format!("{}/", self.ss1.client_proxy))
            .header("content-type", ct)
            .header("SOAPAction", "\"\"")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        self.http.send(req).await.unwrap()
    }

    /// A REST call that must fail with `code` without reaching the backend.
    async fn rest_fault(&self, method: &str, path: &str, client: &str, code: &str) {
        let before = self.calls();
        let (status, h, body) = self.rest(method, path, client, None, &[]).await;
        let got = h
            .get("x-road-error")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("<none>");
        assert_eq!(
            got,
            code,
            "{method} {path}: status {status}, body {}",
            String::from_utf8_lossy(&body)
        );
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["type"], code);
        assert!(
            !v["detail"].as_str().unwrap_or("").is_empty(),
            "correlation id"
        );
        assert_eq!(
            self.calls(),
            before,
            "{code}: the backend must not be called"
        );
    }
}

/// A REST GET over the HTTPS client proxy, optionally with a client certificate.
async fn https_get(
    ss: &SsProc,
    client_cert: Option<&(KeyPair, Certificate)>,
    path: &str,
    client: &str,
) -> (u16, http::HeaderMap) {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(
            ss.internal_cert.der().to_vec(),
        ))
        .unwrap();
    let b = rustls::ClientConfig::builder_with_provider(trustbus_pki::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let cfg = match client_cert {
        Some((k, c)) => b
            .with_client_auth_cert(
                vec![rustls::pki_types::CertificateDer::from(c.der().to_vec())],
                rustls::pki_types::PrivateKeyDer::Pkcs8(k.pkcs8_der().to_vec().into()),
            )
            .unwrap(),
        None => b.with_no_client_auth(),
    };
    let tcp = tokio::net::TcpStream::connect(&ss.client_proxy_tls)
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header("host", "localhost")
        .header("X-Road-Client", client)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = sender.send_request(req).await.unwrap();
    (r.status().as_u16(), r.headers().clone())
}

/// The provider's system administrator API key (`test-api-key` is an observer on both).
const ADMIN_KEY: &str = "test-admin-key";

const WSDL: &str = "<?xml version=\"1.0\"?><wsdl:definitions xmlns:wsdl=\"http://schemas.xmlsoap.org/wsdl/\" name=\"getPerson\"/>";

fn soap_request(client: &ClientId, service: &str, id: &str) -> Vec<u8> {
    let svc = trustbus_sdk::ServiceId::from_slash(service).unwrap();
    trustbus_sdk::soap::SoapRequestBuilder::new(client.clone(), svc)
        .id(id)
        .user_id("EE12345678901")
        .body("<ns:getPerson xmlns:ns=\"urn:test\"><ns:code>1</ns:code></ns:getPerson>")
        .build()
}

fn soap_fault_code(body: &[u8]) -> String {
    let f = trustbus_sdk::soap::parse_fault(body, &trustbus_sdk::soap::Limits::default()).unwrap();
    f.to_fault()
        .map(|f| f.code.render(trustbus_sdk::FaultDialect::Classic))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_end_to_end() {
    let mut inst = instance().await;
    let cons = "DEV/GOV/1000/cons";

    // REST GET: exact response headers, backend saw the path, query and client.
    let before = inst.calls();
    let (status, h, body) = inst
        .rest(
            "GET",
            "/r1/DEV/GOV/2000/prov/echo/persons/42?full=1",
            cons,
            None,
            &[("X-Road-Id", "msg-1"), ("X-Road-UserId", "EE1")],
        )
        .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(inst.calls(), before + 1);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["method"], "GET");
    assert_eq!(v["path"], "/api/persons/42");
    assert_eq!(v["query"], "full=1");
    assert_eq!(v["x-road-client"], cons);
    assert_eq!(v["user-id"], "EE1");
    assert_eq!(h["x-road-id"], "msg-1");
    assert_eq!(h["x-road-client"], cons);
    assert_eq!(h["x-road-service"], "DEV/GOV/2000/prov/echo");
    assert_eq!(h["x-backend"], "yes");
    let rid = h["x-road-request-id"].to_str().unwrap();
    // Time-ordered request ids (UUIDv7).
    assert_eq!(uuid::Uuid::parse_str(rid).unwrap().get_version_num(), 7);
    assert!(!h["x-road-request-hash"].is_empty());
    // Acknowledged only after both logs hold it: each server's journal has the request and
    // the response of this first exchange, and its hash chain verifies.
    for d in &inst.ss_dirs {
        let report =
            trustbus_security_server::messagelog::verify_chain(&d.join("data/messagelog")).unwrap();
        assert_eq!(report.records, 2, "{}: {report:?}", d.display());
    }

    // REST POST with a JSON body; the request hash is the one of our request.
    let (status, h, body) = inst
        .rest(
            "POST",
            "/r1/DEV/GOV/2000/prov/echo/persons",
            cons,
            Some("{\"name\":\"Mari\"}"),
            &[],
        )
        .await;
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["body"], "{\"name\":\"Mari\"}");
    assert!(h.contains_key("x-road-request-hash"));
    // a generated message id when the client sent none
    assert!(!h["x-road-id"].is_empty());

    // A larger body spills to disk on both servers (threshold 64 KiB) and arrives intact.
    let big = format!("{{\"data\":\"{}\"}}", "x".repeat(3 << 20));
    let (status, _, body) = inst
        .rest(
            "POST",
            "/r1/DEV/GOV/2000/prov/echo/persons",
            cons,
            Some(&big),
            &[],
        )
        .await;
    assert_eq!(status, 201);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["body"].as_str().unwrap().len(), big.len());

    // Header aliases: a UXP client (Uxp-Client) works unchanged.
    let (status, h, _) = inst
        .rest(
            "GET",
            "/r1/DEV/GOV/2000/prov/echo/persons/1",
            "",
            None,
            &[("Uxp-Client", cons)],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(h["x-road-client"], cons);

    // SOAP without and with an attachment: headers echoed, requestHash set.
    let client = ClientId::from_slash(cons).unwrap();
    let req = soap_request(&client, "DEV/GOV/2000/prov/getPerson", "soap-1");
    let (status, h, body) = inst
        .soap(req.clone(), "text/xml; charset=utf-8", "POST")
        .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(h["content-type"].to_str().unwrap().starts_with("text/xml"));
    let resp = match trustbus_sdk::soap::parse_response(body.to_vec(), &Default::default()).unwrap()
    {
        trustbus_sdk::soap::SoapResponse::Message(m) => m,
        other => panic!("{other:?}"),
    };
    let parsed_req = trustbus_sdk::soap::parse_request(req.clone(), &Default::default()).unwrap();
    trustbus_sdk::soap::check_response_headers(&parsed_req, &resp, trustbus_sdk::Origin::Client)
        .unwrap();
    trustbus_sdk::soap::verify_request_hash(&req, &resp, trustbus_sdk::Origin::Client).unwrap();
    assert!(
        String::from_utf8_lossy(resp.body_content()).contains("<ns:attachments>0</ns:attachments>")
    );

    let boundary = "MIME_boundary";
    let mut mp = Vec::new();
    mp.extend_from_slice(format!("--{boundary}\r\nContent-Type: text/xml; charset=UTF-8\r\nContent-Transfer-Encoding: 8bit\r\nContent-ID: <soap@x>\r\n\r\n").as_bytes());
    let req2 = soap_request(&client, "DEV/GOV/2000/prov/getPerson", "soap-2");
    mp.extend_from_slice(&req2);
    mp.extend_from_slice(format!("\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\nContent-ID: <att1@x>\r\n\r\nBINARY DATA\r\n--{boundary}--\r\n").as_bytes());
    let (status, h2, body) = inst
        .soap(
            mp,
            &format!("multipart/related; type=\"text/xml\"; boundary=\"{boundary}\""),
            "POST",
        )
        .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("<ns:attachments>1</ns:attachments>"));
    // The response is SwA too: the attachment arrives, the SOAP part carries requestHash.
    let ct = h2["content-type"].to_str().unwrap().to_owned();
    let trustbus_sdk::multipart::SoapContentType::Multipart(ty) =
        trustbus_sdk::multipart::check_content_type(&ct).unwrap()
    else {
        panic!("expected a multipart response, got {ct}");
    };
    let mp =
        trustbus_sdk::multipart::parse_multipart(body.to_vec(), &ty, &Default::default()).unwrap();
    let att: Vec<&[u8]> = mp.attachments().map(|p| mp.body(p)).collect();
    assert_eq!(att, vec![&b"RESULT DATA"[..]]);
    let resp =
        match trustbus_sdk::soap::parse_response(mp.soap_bytes().to_vec(), &Default::default())
            .unwrap()
        {
            trustbus_sdk::soap::SoapResponse::Message(m) => m,
            other => panic!("{other:?}"),
        };
    trustbus_sdk::soap::verify_request_hash(&req2, &resp, trustbus_sdk::Origin::Client).unwrap();

    // SOAP metadata: listMethods lists the provider's SOAP services, answered by ss2 itself.
    let before = inst.calls();
    let svc = trustbus_sdk::ServiceId::from_slash("DEV/GOV/2000/prov/listMethods").unwrap();
    let req = trustbus_sdk::soap::SoapRequestBuilder::new(client.clone(), svc)
        .id("list-1")
        .body("<xrd:listMethods xmlns:xrd=\"http://x-road.eu/xsd/xroad.xsd\"/>")
        .build();
    let (status, _, body) = inst
        .soap(req.clone(), "text/xml; charset=utf-8", "POST")
        .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("<id:serviceCode>getPerson</id:serviceCode>"),
        "{text}"
    );
    assert!(
        !text.contains("<id:serviceCode>echo</id:serviceCode>"),
        "{text}"
    );
    let resp = match trustbus_sdk::soap::parse_response(body.to_vec(), &Default::default()).unwrap()
    {
        trustbus_sdk::soap::SoapResponse::Message(m) => m,
        other => panic!("{other:?}"),
    };
    trustbus_sdk::soap::verify_request_hash(&req, &resp, trustbus_sdk::Origin::Client).unwrap();
    assert_eq!(inst.calls(), before);

    // getWsdl: the SOAP answer carries the WSDL as an attachment.
    let svc = trustbus_sdk::ServiceId::from_slash("DEV/GOV/2000/prov/getWsdl").unwrap();
    let req = trustbus_sdk::soap::SoapRequestBuilder::new(client.clone(), svc)
        .id("wsdl-1")
        .body("<xrd:getWsdl xmlns:xrd=\"http://x-road.eu/xsd/xroad.xsd\"><xrd:serviceCode>getPerson</xrd:serviceCode></xrd:getWsdl>")
        .build();
    let (status, h, body) = inst
        .soap(req.clone(), "text/xml; charset=utf-8", "POST")
        .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let ct = h["content-type"].to_str().unwrap().to_owned();
    let trustbus_sdk::multipart::SoapContentType::Multipart(ty) =
        trustbus_sdk::multipart::check_content_type(&ct).unwrap()
    else {
        panic!("expected multipart, got {ct}");
    };
    let mp =
        trustbus_sdk::multipart::parse_multipart(body.to_vec(), &ty, &Default::default()).unwrap();
    let att: Vec<&[u8]> = mp.attachments().map(|p| mp.body(p)).collect();
    assert_eq!(att, vec![WSDL.as_bytes()]);
    let resp =
        match trustbus_sdk::soap::parse_response(mp.soap_bytes().to_vec(), &Default::default())
            .unwrap()
        {
            trustbus_sdk::soap::SoapResponse::Message(m) => m,
            other => panic!("{other:?}"),
        };
    trustbus_sdk::soap::verify_request_hash(&req, &resp, trustbus_sdk::Origin::Client).unwrap();
    assert_eq!(inst.calls(), before);

    // Negative cases: exact code, backend never called.
    inst.rest_fault(
        "GET",
        "/r1/DEV/GOV/2000/prov/echo/admin",
        cons,
        "Server.ServerProxy.AccessDenied",
    )
    .await;
    inst.rest_fault(
        "GET",
        "/r1/DEV/GOV/2000/prov/echo/persons/../admin",
        cons,
        "Client.InvalidRest",
    )
    .await;
    inst.rest_fault(
        "GET",
        "/r1/DEV/GOV/2000/prov/secret",
        cons,
        "Server.ServerProxy.AccessDenied",
    )
    .await;
    inst.rest_fault(
        "GET",
        "/r1/DEV/GOV/2000/prov/nope",
        cons,
        "Server.ServerProxy.UnknownService",
    )
    .await;
    inst.rest_fault(
        "GET",
        "/r1/DEV/GOV/2000/prov/off",
        cons,
        "Server.ServerProxy.ServiceDisabled",
    )
    .await;
    inst.rest_fault(
        "GET",
        "/r1/DEV/GOV/2000/prov/getPerson",
        cons,
        "Server.ServerProxy.ServiceType",
    )
    .await;
    inst.rest_fault(
        "GET",
        "/r1/DEV/GOV/2000/prov/echo/persons/1",
        "DEV/GOV/1000/unreg",
        "Server.ClientProxy.UnknownMember",
    )
    .await;
    inst.rest_fault(
        "GET",
        "/r1/DEV/GOV/2000/prov/echo/persons/1",
        "DEV/GOV/9999/nobody",
        "Server.ClientProxy.UnknownMember",
    )
    .await;
    inst.rest_fault(
        "GET",
        "/r1/DEV/GOV/2000/prov/echo/persons/1",
        "DEV/GOV/1000/strict",
        "Server.ClientProxy.SslAuthenticationFailed",
    )
    .await;
    inst.rest_fault(
        "GET",
        "/r1/DEV/GOV/2000/extra/svc",
        cons,
        "Server.ServerProxy.UnknownMember",
    )
    .await;
    inst.rest_fault(
        "GET",
        "/r1/DEV/GOV/3000/down/svc",
        cons,
        "Server.ClientProxy.MaintenanceMode",
    )
    .await;
    inst.rest_fault(
        "GET",
        "/r1/DEV/GOV/4000/ghost/svc",
        cons,
        "Server.ClientProxy.SslAuthenticationFailed",
    )
    .await;
    inst.rest_fault(
        "GET",
        "/r1/DEV/GOV/2000/prov/echo/persons/1",
        "",
        "Client.MissingHeaderField",
    )
    .await;
    inst.rest_fault(
        "GET",
        "/r1/DEV/GOV/2000/prov/echo/persons/1",
        "DEV/GOV",
        "Client.InvalidClientIdentifier",
    )
    .await;
    inst.rest_fault(
        "GET",
        "/r9/DEV/GOV/2000/prov/echo",
        cons,
        "Client.InvalidProtocolVersion",
    )
    .await;

    // HTTPS with client authentication: a registered certificate passes, none or another fails.
    let strict = "DEV/GOV/1000/strict";
    let path = "/r1/DEV/GOV/2000/prov/echo/persons/7";
    let before = inst.calls();
    let (_, h) = https_get(&inst.ss1, None, path, strict).await;
    assert_eq!(
        h["x-road-error"],
        "Server.ClientProxy.SslAuthenticationFailed"
    );
    let other =
        trustbus_security_server::identity::internal_tls_cert(vec!["other".into()]).unwrap();
    let (_, h) = https_get(&inst.ss1, Some(&other), path, strict).await;
    assert_eq!(
        h["x-road-error"],
        "Server.ClientProxy.SslAuthenticationFailed"
    );
    assert_eq!(inst.calls(), before);
    // (strict has no access right to echo: reaching AccessDenied proves the TLS check passed)
    let (_, h) = https_get(&inst.ss1, Some(&inst.is_cert), path, strict).await;
    assert_eq!(h["x-road-error"], "Server.ServerProxy.AccessDenied");
    // a plain-HTTP client also works over HTTPS
    let (status, _) = https_get(&inst.ss1, None, path, cons).await;
    assert_eq!(status, 200);

    // Admin API: key required, read-only.
    let (status, _) = inst
        .http
        .get(&format!("{}/api/v1/clients", inst.ss1.admin))
        .await
        .unwrap();
    assert_eq!(status, 401);
    let req = http::Request::get(format!("{}/api/v1/clients", inst.ss1.admin))
        .header("authorization", "Bearer test-api-key")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, _, body) = inst.http.send(req).await.unwrap();
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == cons && c["registered"] == true),
        "{v}"
    );
    let (status, body) = inst
        .http
        .get(&format!("{}/api/openapi.json", inst.ss1.admin))
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()["paths"]["/api/v1/clients"]
            .is_object()
    );

    // Connection test from the admin listener.
    let (status, body) = inst
        .http
        .get(&format!(
            "{}/diagnostics/connection?server=DEV/GOV/2000/ss2",
            inst.ss1.admin
        ))
        .await
        .unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let (status, body) = inst
        .http
        .get(&format!(
            "{}/diagnostics/connection?server=DEV/GOV/4000/ss4",
            inst.ss1.admin
        ))
        .await
        .unwrap();
    assert_eq!(status, 502);
    assert!(String::from_utf8_lossy(&body).contains("Server.ClientProxy.SslAuthenticationFailed"));

    // Backend timeout: the backend is called, the exchange fails with ServiceFailed.
    let (_, h, _) = inst
        .rest("GET", "/r1/DEV/GOV/2000/prov/slow", cons, None, &[])
        .await;
    assert_eq!(
        h["x-road-error"],
        "Server.ServerProxy.ServiceFailed.NetworkError"
    );

    // Malformed SOAP and a GET on the SOAP endpoint.
    let before = inst.calls();
    let (status, _, body) = inst.soap(b"<not-soap/>".to_vec(), "text/xml", "POST").await;
    assert_eq!(status, 500);
    assert!(
        soap_fault_code(&body).starts_with("Client."),
        "{}",
        soap_fault_code(&body)
    );
    let (_, _, body) = inst.soap(Vec::new(), "text/xml", "GET").await;
    assert_eq!(soap_fault_code(&body), "Client.InvalidHttpMethod");
    let (_, _, body) = inst.soap(b"{}".to_vec(), "application/json", "POST").await;
    assert_eq!(soap_fault_code(&body), "Client.InvalidContentType");
    assert_eq!(inst.calls(), before);

    // An unregistered authentication certificate cannot even talk to the server proxy.
    let rogue = inst.pki.auth_cert(&sid("DEV/GOV/1000/rogue")).unwrap();
    assert!(unregistered_peer_is_refused(&inst.pki, inst.ss2_port, rogue).await);
    assert_eq!(inst.calls(), before);

    // Expired global configuration: stop the central server and wait out the validity (6 s).
    if let Some(tx) = inst.stop_cs.take() {
        let _ = tx.send(());
    }
    let mut last = String::new();
    let mut refused_without_backend = false;
    for _ in 0..120 {
        let before = inst.calls();
        let (_, h, _) = inst
            .rest(
                "GET",
                "/r1/DEV/GOV/2000/prov/echo/persons/1",
                cons,
                None,
                &[],
            )
            .await;
        last = h
            .get("x-road-error")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        refused_without_backend = inst.calls() == before;
        // Both servers hold the same version; in the instant between their checks the
        // provider may be the first to refuse.
        match last.as_str() {
            "" | "Server.ServerProxy.OutdatedGlobalConf" => {}
            _ => break,
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(last, "Server.ClientProxy.OutdatedGlobalConf");
    assert!(refused_without_backend, "the backend must not be called");
}

/// Connects to the server proxy with an authentication certificate that chains to the approved
/// CA but is not registered: the server must refuse it (TLS 1.3 reports a client certificate
/// rejection on the client's first read).
async fn unregistered_peer_is_refused(
    pki: &TestPki,
    port: u16,
    (key, cert): (KeyPair, Certificate),
) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use trustbus_pki::tls::{StaticPeerPolicy, TlsIdentity, ss_client_config};
    let mut store = trustbus_pki::chain::TrustStore::new();
    store.add_ca(pki.ca.ca_cert().clone(), false);
    let policy = Arc::new(StaticPeerPolicy {
        store: Arc::new(store),
        registered: Arc::new(|_| true),
    });
    let cfg = ss_client_config(TlsIdentity::new(&[cert], &key).unwrap(), policy).unwrap();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("x")
        .unwrap()
        .to_owned();
    match tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
    {
        Err(_) => true,
        Ok(mut tls) => {
            let _ = tls
                .write_all(
                    b"POST /trustbus/v1/exchange HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n",
                )
                .await;
            let mut buf = [0u8; 64];
            !matches!(tls.read(&mut buf).await, Ok(n) if n > 0)
        }
    }
}

/// Peak resident memory of a process, KiB (Linux).
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A 100 MiB REST body through both servers: each spills it to disk (threshold 64 KiB) and
/// streams it on, so neither process's peak memory comes near the body size. Takes a few
/// seconds in a debug build.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_megabyte_body_with_bounded_memory() {
    let inst = instance().await;
    let size = 100 << 20;
    let body = "x".repeat(size);
    let (status, _, resp) = inst
        .rest(
            "POST",
            "/r1/DEV/GOV/2000/prov/echo/persons/count",
            "DEV/GOV/1000/cons",
            Some(&body),
            &[],
        )
        .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&resp));
    let v: serde_json::Value = serde_json::from_slice(&resp).unwrap();
    assert_eq!(v["len"], size);
    for p in [&inst.ss1, &inst._ss2] {
        let pid = p.child.id().unwrap();
        let kib = peak_rss_kib(pid);
        assert!(
            kib < 96 * 1024,
            "security server {pid} peaked at {kib} KiB for a 100 MiB body"
        );
        // The server restarted itself (same pid) with mimalloc's arenas committed on demand.
        let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        assert!(
            env.split(|b| *b == 0)
                .any(|v| v == b"MIMALLOC_ARENA_EAGER_COMMIT=0"),
            "security server {pid} runs without MIMALLOC_ARENA_EAGER_COMMIT=0"
        );
    }
}

/// Calls ss's admin API; the status and JSON answer.
async fn admin(
    http: &reqwest_like::Client,
    ss: &SsProc,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut b = http::Request::builder()
        .method(method)
        .uri(format!("{}{path}", ss.admin));
    if let Some(k) = key {
        b = b.header("authorization", format!("Bearer {k}"));
    }
    let req = b
        .body(Full::new(Bytes::from(
            body.map(|v| v.to_string()).unwrap_or_default(),
        )))
        .unwrap();
    let (status, _, body) = http.send(req).await.unwrap();
    (
        status,
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    )
}

/// Runs `security-server ARGS --admin-url URL` with the key in the environment.
async fn ss_cli(ss: &SsProc, key: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(common::ss_exe())
        .args(args)
        .arg("--admin-url")
        .arg(&ss.admin)
        .env("TRUSTBUS_ADMIN_API_KEY", key)
        .env("RUST_LOG", "error")
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Access rights, services and local groups changed through the provider's admin API (and
/// the CLI) decide the very next exchange, without a restart; the change is in the
/// configuration file and survives a restart; keys without the role are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_changes_take_effect_without_restart() {
    let mut inst = instance().await;
    let cons = "DEV/GOV/1000/cons";
    let secret = "/r1/DEV/GOV/2000/prov/secret/x/1";
    let config_path = inst.ss_dirs[1].join("security-server.toml");
    let original = std::fs::read_to_string(&config_path).unwrap();
    let grant = serde_json::json!({
        "service": "DEV/GOV/2000/prov/secret",
        "subject": "SUBSYSTEM:DEV/GOV/1000/cons",
        "endpoints": [{ "method": "GET", "path": "/x/*" }],
    });
    let http = reqwest_like::Client::new();
    let ss2 = &inst._ss2;

    // No key, an unknown key: 401. The observer reads but may not change anything: 403.
    for key in [None, Some("wrong-key")] {
        let (status, v) = admin(&http, ss2, "GET", "/api/v1/access-rights", key, None).await;
        assert_eq!((status, v["code"].as_str()), (401, Some("unauthenticated")));
    }
    let (status, v) = admin(
        &http,
        ss2,
        "GET",
        "/api/v1/access-rights",
        Some("test-api-key"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v.as_array().unwrap().len(), 5);
    for (method, path) in [
        ("POST", "/api/v1/access-rights"),
        ("POST", "/api/v1/access-rights/revoke"),
        ("DELETE", "/api/v1/services/DEV/GOV/2000/prov/echo"),
        ("POST", "/api/v1/local-groups"),
    ] {
        let (status, v) = admin(
            &http,
            ss2,
            method,
            path,
            Some("test-api-key"),
            Some(grant.clone()),
        )
        .await;
        assert_eq!(
            (status, v["code"].as_str()),
            (403, Some("forbidden")),
            "{method} {path}"
        );
    }
    inst.rest_fault("GET", secret, cons, "Server.ServerProxy.AccessDenied")
        .await;

    // Unsafe endpoint patterns and bad subjects: 400 with a stable code, nothing changes.
    for path in ["/x/../admin", "/x/%2e%2e/admin", "/x%2fy", "x/*"] {
        let mut g = grant.clone();
        g["endpoints"][0]["path"] = path.into();
        let (status, v) = admin(
            &http,
            ss2,
            "POST",
            "/api/v1/access-rights",
            Some(ADMIN_KEY),
            Some(g),
        )
        .await;
        assert_eq!(
            (status, v["code"].as_str()),
            (400, Some("invalid_endpoint")),
            "{path}: {v}"
        );
    }
    let mut g = grant.clone();
    g["subject"] = "EVERYONE".into();
    let (status, v) = admin(
        &http,
        ss2,
        "POST",
        "/api/v1/access-rights",
        Some(ADMIN_KEY),
        Some(g),
    )
    .await;
    assert_eq!((status, v["code"].as_str()), (400, Some("invalid_subject")));
    let (status, v) = admin(
        &http,
        ss2,
        "POST",
        "/api/v1/access-rights",
        Some(ADMIN_KEY),
        Some(serde_json::json!({"service": "DEV/GOV/2000/prov/secret"})),
    )
    .await;
    assert_eq!((status, v["code"].as_str()), (400, Some("invalid_request")));
    assert_eq!(std::fs::read_to_string(&config_path).unwrap(), original);

    // Grant GET /x/* to cons: the next exchange goes through, other methods and paths do not.
    let (status, v) = admin(
        &http,
        ss2,
        "POST",
        "/api/v1/access-rights",
        Some(ADMIN_KEY),
        Some(grant.clone()),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v[0]["endpoints"],
        serde_json::json!([{ "method": "GET", "path": "/x/*" }])
    );
    let (status, _, body) = inst.rest("GET", secret, cons, None, &[]).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let echoed: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(echoed["path"], "/secret/x/1");
    inst.rest_fault("POST", secret, cons, "Server.ServerProxy.AccessDenied")
        .await;
    inst.rest_fault(
        "GET",
        "/r1/DEV/GOV/2000/prov/secret/y/1",
        cons,
        "Server.ServerProxy.AccessDenied",
    )
    .await;
    // The file holds the new rule, and everything else as it was.
    let text = std::fs::read_to_string(&config_path).unwrap();
    assert!(
        text.starts_with(original.split("[[access]]").next().unwrap()),
        "{text}"
    );
    assert!(text.contains("subject = \"SUBSYSTEM:DEV/GOV/1000/cons\"\nendpoints = [{ method = \"GET\", path = \"/x/*\" }]"), "{text}");

    // Revoke through the CLI: denied again at once.
    let (ok, out) = ss_cli(
        ss2,
        ADMIN_KEY,
        &[
            "access",
            "revoke",
            "--service",
            "DEV/GOV/2000/prov/secret",
            "--subject",
            "SUBSYSTEM:DEV/GOV/1000/cons",
            "--endpoint",
            "GET /x/*",
        ],
    )
    .await;
    assert!(ok, "{out}");
    inst.rest_fault("GET", secret, cons, "Server.ServerProxy.AccessDenied")
        .await;
    // The CLI with the observer key is refused with the API's code, and reads work.
    let (ok, out) = ss_cli(
        ss2,
        "test-api-key",
        &[
            "access",
            "grant",
            "--service",
            "DEV/GOV/2000/prov/secret",
            "--subject",
            "SUBSYSTEM:DEV/GOV/1000/cons",
        ],
    )
    .await;
    assert!(
        !ok && out.contains("forbidden: ") && out.contains("(HTTP 403)"),
        "{out}"
    );
    let (ok, out) = ss_cli(
        ss2,
        "test-api-key",
        &["access", "list", "--service", "DEV/GOV/2000/prov/secret"],
    )
    .await;
    assert!(ok && out.trim() == "[]", "{out}");
    let (ok, out) = ss_cli(
        ss2,
        ADMIN_KEY,
        &[
            "access",
            "grant",
            "--service",
            "DEV/GOV/2000/prov/secret",
            "--subject",
            "SUBSYSTEM:DEV/GOV/1000/cons",
            "--endpoint",
            "GET /x/../y",
        ],
    )
    .await;
    assert!(!ok && out.contains("invalid_endpoint: "), "{out}");

    // A local group: granted to the group, cons may call; removed from the group, it may not.
    let (ok, out) = ss_cli(
        ss2,
        ADMIN_KEY,
        &["local-groups", "create", "partners", "--member", cons],
    )
    .await;
    assert!(ok, "{out}");
    let (ok, out) = ss_cli(
        ss2,
        ADMIN_KEY,
        &[
            "access",
            "grant",
            "--service",
            "DEV/GOV/2000/prov/secret",
            "--subject",
            "LOCALGROUP:partners",
        ],
    )
    .await;
    assert!(ok, "{out}");
    let (status, _, _) = inst
        .rest("GET", "/r1/DEV/GOV/2000/prov/secret/y/2", cons, None, &[])
        .await;
    assert_eq!(status, 200);
    let (ok, out) = ss_cli(
        ss2,
        ADMIN_KEY,
        &["local-groups", "remove-member", "partners", cons],
    )
    .await;
    assert!(ok, "{out}");
    inst.rest_fault(
        "GET",
        "/r1/DEV/GOV/2000/prov/secret/y/2",
        cons,
        "Server.ServerProxy.AccessDenied",
    )
    .await;
    let (ok, out) = ss_cli(ss2, ADMIN_KEY, &["local-groups", "delete", "partners"]).await;
    assert!(ok && out.contains("\"access_rights_removed\": 1"), "{out}");

    // Disable with a notice, enable again.
    let (ok, out) = ss_cli(
        ss2,
        ADMIN_KEY,
        &[
            "services",
            "disable",
            "DEV/GOV/2000/prov/echo",
            "--notice",
            "upgrade until 14:00",
        ],
    )
    .await;
    assert!(ok, "{out}");
    let (_, h, body) = inst
        .rest(
            "GET",
            "/r1/DEV/GOV/2000/prov/echo/persons/1",
            cons,
            None,
            &[],
        )
        .await;
    assert_eq!(h["x-road-error"], "Server.ServerProxy.ServiceDisabled");
    assert!(String::from_utf8_lossy(&body).contains("upgrade until 14:00"));
    let (ok, out) = ss_cli(
        ss2,
        ADMIN_KEY,
        &["services", "enable", "DEV/GOV/2000/prov/echo"],
    )
    .await;
    assert!(ok, "{out}");
    let (status, _, _) = inst
        .rest(
            "GET",
            "/r1/DEV/GOV/2000/prov/echo/persons/1",
            cons,
            None,
            &[],
        )
        .await;
    assert_eq!(status, 200);

    // A new REST service whose endpoints are read from an OpenAPI document.
    let doc = inst._dir.path().join("items.json");
    std::fs::write(&doc, r#"{"openapi":"3.0.3","info":{"title":"items","version":"1"},"paths":{"/items":{"post":{}},"/items/{id}":{"get":{}}}}"#).unwrap();
    let backend = {
        let cfg = std::fs::read_to_string(&config_path).unwrap();
        let u = cfg.split("url = \"").nth(1).unwrap();
        u[..u.find("/api\"").unwrap()].to_owned()
    };
    let (ok, out) = ss_cli(
        ss2,
        ADMIN_KEY,
        &[
            "services",
            "add",
            "--kind",
            "rest",
            "--id",
            "DEV/GOV/2000/prov/items",
            "--url",
            &format!("{backend}/items-api"),
            "--openapi-url",
            doc.to_str().unwrap(),
        ],
    )
    .await;
    assert!(ok, "{out}");
    assert!(out.contains("\"path\": \"/items/*\""), "{out}");
    let (ok, out) = ss_cli(
        ss2,
        ADMIN_KEY,
        &[
            "access",
            "grant",
            "--service",
            "DEV/GOV/2000/prov/items",
            "--subject",
            "MEMBER:DEV/GOV/1000",
            "--endpoint",
            "GET /items/*",
        ],
    )
    .await;
    assert!(ok, "{out}");
    inst.rest_fault(
        "GET",
        "/r1/DEV/GOV/2000/prov/items/items/7",
        cons,
        "Server.ServerProxy.AccessDenied",
    )
    .await;
    let (ok, out) = ss_cli(
        ss2,
        ADMIN_KEY,
        &[
            "access",
            "grant",
            "--service",
            "DEV/GOV/2000/prov/items",
            "--subject",
            "SUBSYSTEM:DEV/GOV/1000/cons",
            "--endpoint",
            "GET /items/*",
        ],
    )
    .await;
    assert!(ok, "{out}");
    let (status, _, body) = inst
        .rest(
            "GET",
            "/r1/DEV/GOV/2000/prov/items/items/7",
            cons,
            None,
            &[],
        )
        .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let echoed: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(echoed["path"], "/items-api/items/7");
    // listMethods lists it with the endpoints read.
    let (status, _, body) = inst
        .rest("GET", "/r1/DEV/GOV/2000/prov/listMethods", cons, None, &[])
        .await;
    assert_eq!(status, 200);
    let list: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let items = list["service"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service_code"] == "items")
        .unwrap();
    assert_eq!(
        items["endpoint_list"],
        serde_json::json!([{"method":"POST","path":"/items"},{"method":"GET","path":"/items/*"}])
    );
    // allowedMethods lists only the endpoints cons's rights cover.
    let (status, _, body) = inst
        .rest(
            "GET",
            "/r1/DEV/GOV/2000/prov/allowedMethods",
            cons,
            None,
            &[],
        )
        .await;
    assert_eq!(status, 200);
    let list: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let items = list["service"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service_code"] == "items")
        .unwrap();
    assert_eq!(
        items["endpoint_list"],
        serde_json::json!([{"method":"GET","path":"/items/*"}])
    );

    // refresh reads the OpenAPI document again: its new path is an endpoint now.
    std::fs::write(
        &doc,
        r#"{"openapi":"3.0.3","paths":{"/items":{"post":{}},"/items/{id}/history":{"get":{}}}}"#,
    )
    .unwrap();
    let (ok, out) = ss_cli(
        ss2,
        ADMIN_KEY,
        &["services", "refresh", "DEV/GOV/2000/prov/items"],
    )
    .await;
    assert!(ok, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["service"]["endpoints"],
        serde_json::json!([{"method":"POST","path":"/items"},{"method":"GET","path":"/items/*/history"}])
    );

    // SOAP services from a WSDL: one per operation, at its soap:address; getWsdl serves the
    // stored copy; refresh adds new operations and removes vanished ones with their rights.
    let wsdl_doc = |ops: &[&str]| {
        let ops: String = ops
            .iter()
            .map(|o| format!("<wsdl:operation name=\"{o}\"/>"))
            .collect();
        format!(
            "<?xml version=\"1.0\"?><wsdl:definitions xmlns:wsdl=\"http://schemas.xmlsoap.org/wsdl/\" \
             xmlns:soap=\"http://schemas.xmlsoap.org/wsdl/soap/\"><wsdl:portType name=\"P\">{ops}</wsdl:portType>\
             <wsdl:service name=\"S\"><wsdl:port name=\"p\" binding=\"B\"><soap:address location=\"{backend}/soap\"/>\
             </wsdl:port></wsdl:service></wsdl:definitions>"
        )
    };
    let wsdl_path = inst._dir.path().join("addresses.wsdl");
    std::fs::write(&wsdl_path, wsdl_doc(&["getAddress", "getTaxes"])).unwrap();
    let (status, v) = admin(
        &http,
        ss2,
        "POST",
        "/api/v1/services",
        Some(ADMIN_KEY),
        Some(serde_json::json!({ "kind": "soap", "provider": "DEV/GOV/2000/prov", "wsdl_url": wsdl_path.to_str().unwrap() })),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let ids: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["DEV/GOV/2000/prov/getAddress", "DEV/GOV/2000/prov/getTaxes"]
    );
    assert_eq!(v[0]["url"], format!("{backend}/soap"));
    // A DOCTYPE (entity tricks) is refused before anything is stored.
    std::fs::write(
        inst._dir.path().join("evil.wsdl"),
        "<!DOCTYPE d [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><d>&x;</d>",
    )
    .unwrap();
    let (status, v) = admin(
        &http,
        ss2,
        "POST",
        "/api/v1/services",
        Some(ADMIN_KEY),
        Some(serde_json::json!({ "kind": "soap", "provider": "DEV/GOV/2000/prov", "wsdl_url": inst._dir.path().join("evil.wsdl").to_str().unwrap() })),
    )
    .await;
    assert_eq!(
        (status, v["code"].as_str()),
        (400, Some("invalid_description")),
        "{v}"
    );
    let client = cid(cons);
    let soap_call = |code: &str, id: &str| {
        let svc =
            trustbus_sdk::ServiceId::from_slash(&format!("DEV/GOV/2000/prov/{code}")).unwrap();
        trustbus_sdk::soap::SoapRequestBuilder::new(client.clone(), svc)
            .id(id)
            .body(format!("<ns:{code} xmlns:ns=\"urn:test\"/>"))
            .build()
    };
    let (status, _, body) = inst
        .soap(
            soap_call("getAddress", "addr-1"),
            "text/xml; charset=utf-8",
            "POST",
        )
        .await;
    assert_eq!(status, 500, "{}", String::from_utf8_lossy(&body));
    assert_eq!(soap_fault_code(&body), "Server.ServerProxy.AccessDenied");
    let (ok, out) = ss_cli(
        ss2,
        ADMIN_KEY,
        &[
            "access",
            "grant",
            "--service",
            "DEV/GOV/2000/prov/getTaxes",
            "--subject",
            "MEMBER:DEV/GOV/1000",
        ],
    )
    .await;
    assert!(ok, "{out}");
    let (ok, out) = ss_cli(
        ss2,
        ADMIN_KEY,
        &[
            "access",
            "grant",
            "--service",
            "DEV/GOV/2000/prov/getAddress",
            "--subject",
            "SUBSYSTEM:DEV/GOV/1000/cons",
        ],
    )
    .await;
    assert!(ok, "{out}");
    let (status, _, body) = inst
        .soap(
            soap_call("getAddress", "addr-2"),
            "text/xml; charset=utf-8",
            "POST",
        )
        .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let svc = trustbus_sdk::ServiceId::from_slash("DEV/GOV/2000/prov/getWsdl").unwrap();
    let req = trustbus_sdk::soap::SoapRequestBuilder::new(client.clone(), svc)
        .id("wsdl-2")
        .body("<xrd:getWsdl xmlns:xrd=\"http://x-road.eu/xsd/xroad.xsd\"><xrd:serviceCode>getAddress</xrd:serviceCode></xrd:getWsdl>")
        .build();
    let (status, _, body) = inst.soap(req, "text/xml; charset=utf-8", "POST").await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("<wsdl:operation name=\"getTaxes\"/>"));
    std::fs::write(&wsdl_path, wsdl_doc(&["getAddress", "getFees"])).unwrap();
    let (ok, out) = ss_cli(
        ss2,
        ADMIN_KEY,
        &["services", "refresh", "DEV/GOV/2000/prov/getAddress"],
    )
    .await;
    assert!(ok, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["added"], serde_json::json!(["DEV/GOV/2000/prov/getFees"]));
    assert_eq!(
        v["removed"],
        serde_json::json!(["DEV/GOV/2000/prov/getTaxes"])
    );
    let (_, v) = admin(
        &http,
        ss2,
        "GET",
        "/api/v1/access-rights?service=DEV/GOV/2000/prov/getTaxes",
        Some("test-api-key"),
        None,
    )
    .await;
    assert_eq!(v, serde_json::json!([]));
    let (status, _, body) = inst
        .soap(
            soap_call("getTaxes", "tax-1"),
            "text/xml; charset=utf-8",
            "POST",
        )
        .await;
    assert_eq!(status, 500);
    assert_eq!(soap_fault_code(&body), "Server.ServerProxy.UnknownService");

    // Diagnostics: a mutual TLS handshake with ss1, and the TSAs (none approved here).
    let (ok, out) = ss_cli(
        ss2,
        "test-api-key",
        &["diagnostics", "--connection", "DEV/GOV/1000/ss1"],
    )
    .await;
    assert!(
        ok && out.contains("\"ok\": true") && out.contains("\"latency_ms\""),
        "{out}"
    );
    let (status, v) = admin(
        &http,
        ss2,
        "GET",
        "/api/v1/diagnostics/connection?server=DEV/GOV/3000/ss3",
        Some("test-api-key"),
        None,
    )
    .await;
    assert_eq!((status, &v["ok"]), (502, &serde_json::json!(false)), "{v}");
    let (status, v) = admin(
        &http,
        ss2,
        "GET",
        "/api/v1/diagnostics/timestamping",
        Some("test-api-key"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(v["ok"], false);
    assert_eq!(v["error"], "global configuration approves no TSA");

    // Restart: the changes were persisted.
    inst._ss2.child.kill().await.unwrap();
    inst._ss2 = start_ss(&inst.ss_dirs[1]).await;
    let (status, _, body) = inst
        .rest(
            "GET",
            "/r1/DEV/GOV/2000/prov/items/items/8",
            cons,
            None,
            &[],
        )
        .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    inst.rest_fault("GET", secret, cons, "Server.ServerProxy.AccessDenied")
        .await;

    // An edit on disk since the server loaded the file: API changes are refused, the edit kept.
    let edited = format!(
        "{}\n# edited by hand\n",
        std::fs::read_to_string(&config_path).unwrap()
    );
    std::fs::write(&config_path, &edited).unwrap();
    let (status, v) = admin(
        &http,
        &inst._ss2,
        "POST",
        "/api/v1/access-rights",
        Some(ADMIN_KEY),
        Some(grant),
    )
    .await;
    assert_eq!(
        (status, v["code"].as_str()),
        (409, Some("configuration_changed_on_disk")),
        "{v}"
    );
    assert_eq!(std::fs::read_to_string(&config_path).unwrap(), edited);
    inst.rest_fault("GET", secret, cons, "Server.ServerProxy.AccessDenied")
        .await;
}

/// Whether any journal file of the message log under `ss_dir` holds `needle` (a certificate's
/// DER: every logged message carries its signer's certificate in the CMS signature).
fn journal_holds(ss_dir: &Path, needle: &[u8]) -> bool {
    let dir = ss_dir.join("data/messagelog/journal");
    std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path()).ok())
        .any(|b| b.windows(needle.len()).any(|w| w == needle))
}

/// The CA certifies a CSR of `ss` for member DEV/GOV/2000.
fn certify(pki: &TestPki, csr_pem: &str) -> Certificate {
    use trustbus_pki::devca::{IssueRequest, SubjectKey};
    let der = pem::parse(csr_pem).unwrap().into_contents();
    pki.ca
        .issue(&IssueRequest {
            profile: trustbus_pki::profile::CertProfile::Sign,
            member: cid("DEV/GOV/2000"),
            member_name: "Provider".into(),
            server_code: None,
            key: SubjectKey::Csr(&der),
            not_before: None,
            not_after: None,
        })
        .unwrap()
}

/// Key rotation through the provider's admin API and CLI, without a restart: a new signing key
/// is generated, its CSR certified by the CA, the certificate imported, and the very next
/// response is signed with it (the consumer's message log holds the new certificate only after
/// that exchange). Certificates for no token key or from an unapproved CA are refused with
/// stable codes, the observer may not change keys, and registration requests sent through the
/// API arrive at the central server as pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_key_rotates_without_restart_and_registration_goes_through_the_api() {
    let mut inst = instance().await;
    let http = reqwest_like::Client::new();
    let ss2 = &inst._ss2;
    let cons = "DEV/GOV/1000/cons";
    let echo = "/r1/DEV/GOV/2000/prov/echo/persons/7";
    let old_sign =
        Certificate::read_file(&inst.ss_dirs[1].join("data/certs/sign.pem")).unwrap()[0].clone();

    // The observer lists keys: the initial signing and auth keys are the active ones.
    let (status, v) = admin(
        &http,
        ss2,
        "GET",
        "/api/v1/keys",
        Some("test-api-key"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let keys = v.as_array().unwrap();
    assert_eq!(keys.len(), 2, "{v}");
    let sign = keys.iter().find(|k| k["id"] == "sign").unwrap();
    assert_eq!(sign["usage"], "sign");
    assert_eq!(sign["member"], "DEV/GOV/2000");
    assert_eq!(sign["active"], true);
    assert_eq!(sign["certificate"]["serial"], old_sign.serial_hex());
    assert_eq!(sign["ocsp"]["status"], "good");
    let auth = keys.iter().find(|k| k["id"] == "auth").unwrap();
    assert_eq!(
        (auth["usage"].as_str(), auth["active"].as_bool()),
        (Some("auth"), Some(true))
    );
    // ... but may not generate keys or import certificates.
    for (path, body) in [
        ("/api/v1/keys", serde_json::json!({ "usage": "sign" })),
        (
            "/api/v1/certificates",
            serde_json::json!({ "pem": old_sign.to_pem() }),
        ),
        (
            "/api/v1/registration",
            serde_json::json!({ "address": "127.0.0.1:1" }),
        ),
    ] {
        let (status, v) = admin(&http, ss2, "POST", path, Some("test-api-key"), Some(body)).await;
        assert_eq!(
            (status, v["code"].as_str()),
            (403, Some("forbidden")),
            "{path}"
        );
    }
    let (status, _, body) = inst.rest("GET", echo, cons, None, &[]).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));

    // A new signing key through the CLI; the CSR goes to a file.
    let tmp = tempfile::tempdir().unwrap();
    let csr_file = tmp.path().join("sign.csr.pem");
    let (ok, out) = ss_cli(
        ss2,
        ADMIN_KEY,
        &[
            "keys",
            "generate",
            "--usage",
            "sign",
            "--csr-out",
            csr_file.to_str().unwrap(),
        ],
    )
    .await;
    assert!(ok, "{out}");
    let new_id = serde_json::from_str::<serde_json::Value>(&out[..=out.rfind('}').unwrap()])
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(new_id.starts_with("sign."), "{new_id}");
    let csr = std::fs::read_to_string(&csr_file).unwrap();
    let new_cert = certify(&inst.pki, &csr);

    // Refused: a certificate for no key of the token; the same key certified by a CA that
    // global configuration does not approve; nothing is installed.
    let (_, stray) = inst.pki.sign_cert(&cid("DEV/GOV/2000")).unwrap();
    let other_ca = TestPki::new(&tmp.path().join("other-ca")).unwrap();
    for (cert, code) in [
        (stray, "certificate_not_for_a_key"),
        (certify(&other_ca, &csr), "certificate_not_trusted"),
    ] {
        let (status, v) = admin(
            &http,
            ss2,
            "POST",
            "/api/v1/certificates",
            Some(ADMIN_KEY),
            Some(serde_json::json!({ "pem": cert.to_pem() })),
        )
        .await;
        assert_eq!((status, v["code"].as_str()), (400, Some(code)), "{v}");
    }
    let (status, v) = admin(
        &http,
        ss2,
        "POST",
        "/api/v1/certificates",
        Some(ADMIN_KEY),
        Some(serde_json::json!({ "pem": "not a certificate" })),
    )
    .await;
    assert_eq!(
        (status, v["code"].as_str()),
        (400, Some("invalid_certificate")),
        "{v}"
    );
    let on_disk = Certificate::read_file(&inst.ss_dirs[1].join("data/certs/sign.pem")).unwrap();
    assert_eq!(on_disk[0], old_sign);
    assert!(!journal_holds(&inst.ss_dirs[0], new_cert.der()));

    // Imported through the CLI: active at once.
    let cert_file = tmp.path().join("sign.pem");
    Certificate::write_pem_file(&cert_file, std::slice::from_ref(&new_cert)).unwrap();
    let (ok, out) = ss_cli(
        ss2,
        ADMIN_KEY,
        &["certificates", "import", cert_file.to_str().unwrap()],
    )
    .await;
    assert!(ok, "{out}");
    assert!(out.contains("\"active\": true"), "{out}");
    let (status, v) = admin(
        &http,
        ss2,
        "GET",
        "/api/v1/keys",
        Some("test-api-key"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let by_id = |id: &str| {
        v.as_array()
            .unwrap()
            .iter()
            .find(|k| k["id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(by_id(&new_id)["active"], true, "{v}");
    assert_eq!(
        by_id(&new_id)["certificate"]["serial"],
        new_cert.serial_hex()
    );
    assert_eq!(by_id(&new_id)["ocsp"]["status"], "good");
    assert_eq!(by_id("sign")["active"], false, "{v}");

    // The next exchange is signed with the new certificate: the consumer verified and logged
    // the provider's response with it.
    let (status, _, body) = inst.rest("GET", echo, cons, None, &[]).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(journal_holds(&inst.ss_dirs[0], new_cert.der()));
    let on_disk = Certificate::read_file(&inst.ss_dirs[1].join("data/certs/sign.pem")).unwrap();
    assert_eq!(on_disk[0], new_cert);

    // A restart loads the new key (found by the installed certificate's public key).
    inst._ss2.child.kill().await.unwrap();
    inst._ss2 = start_ss(&inst.ss_dirs[1]).await;
    let ss2 = &inst._ss2;
    let (status, v) = admin(
        &http,
        ss2,
        "GET",
        "/api/v1/keys",
        Some("test-api-key"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let active: Vec<_> = v
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["active"] == true)
        .map(|k| k["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(active, vec!["auth".to_owned(), new_id.clone()], "{v}");
    let (status, _, body) = inst.rest("GET", echo, cons, None, &[]).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));

    // Registration. The active authentication certificate is registered already: the central
    // server's refusal is passed on. A new authentication key's certificate is installed but
    // not used until registered and the server restarted; its registration, and a new
    // client's, arrive at the central server pending an officer's approval.
    let register = serde_json::json!({ "address": format!("127.0.0.1:{}", inst.ss2_port) });
    let (status, v) = admin(
        &http,
        ss2,
        "POST",
        "/api/v1/registration",
        Some(ADMIN_KEY),
        Some(register.clone()),
    )
    .await;
    assert_eq!(
        (status, v["code"].as_str()),
        (502, Some("central_server_refused")),
        "{v}"
    );
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("duplicate_registration"),
        "{v}"
    );
    let (status, v) = admin(
        &http,
        ss2,
        "POST",
        "/api/v1/registration",
        Some(ADMIN_KEY),
        Some(serde_json::json!({ "address": "no port" })),
    )
    .await;
    assert_eq!(
        (status, v["code"].as_str()),
        (400, Some("invalid_request")),
        "{v}"
    );
    let (status, v) = admin(
        &http,
        ss2,
        "POST",
        "/api/v1/keys",
        Some(ADMIN_KEY),
        Some(serde_json::json!({ "usage": "auth" })),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let der = pem::parse(v["csr"].as_str().unwrap())
        .unwrap()
        .into_contents();
    let new_auth = inst
        .pki
        .ca
        .issue(&trustbus_pki::devca::IssueRequest {
            profile: trustbus_pki::profile::CertProfile::Auth,
            member: cid("DEV/GOV/2000"),
            member_name: "Provider".into(),
            server_code: Some("ss2".into()),
            key: trustbus_pki::devca::SubjectKey::Csr(&der),
            not_before: None,
            not_after: None,
        })
        .unwrap();
    let (status, v) = admin(
        &http,
        ss2,
        "POST",
        "/api/v1/certificates",
        Some(ADMIN_KEY),
        Some(serde_json::json!({ "pem": new_auth.to_pem() })),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["usage"].as_str(), v["active"].as_bool()),
        (Some("auth"), Some(false)),
        "{v}"
    );
    let (status, v) = admin(
        &http,
        ss2,
        "POST",
        "/api/v1/registration",
        Some(ADMIN_KEY),
        Some(register),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["submitted"]["state"], "pending", "{v}");
    assert_eq!(v["auth_certificate"]["sha256"], new_auth.fingerprint_hex());
    // Exchanges still use the registered authentication certificate.
    let (status, _, body) = inst.rest("GET", echo, cons, None, &[]).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let (status, v) = admin(
        &http,
        ss2,
        "POST",
        "/api/v1/clients",
        Some(ADMIN_KEY),
        Some(serde_json::json!({ "id": "DEV/GOV/2000/newsub", "connection": "http" })),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let (ok, out) = ss_cli(
        ss2,
        ADMIN_KEY,
        &["registration", "submit", "--client", "DEV/GOV/2000/newsub"],
    )
    .await;
    assert!(ok, "{out}");
    assert!(out.contains("\"pending\""), "{out}");
    let (status, v) = admin(
        &http,
        ss2,
        "POST",
        "/api/v1/clients/DEV/GOV/2000/nosuch/registration",
        Some(ADMIN_KEY),
        None,
    )
    .await;
    assert_eq!(
        (status, v["code"].as_str()),
        (404, Some("not_found")),
        "{v}"
    );
    let (status, doc) = admin(&http, ss2, "GET", "/api/openapi.json", None, None).await;
    assert_eq!(status, 200);
    for (path, method) in [
        ("/api/v1/keys", "get"),
        ("/api/v1/keys", "post"),
        ("/api/v1/certificates", "post"),
        ("/api/v1/registration", "post"),
        ("/api/v1/clients/{id}/registration", "post"),
    ] {
        assert!(
            doc["paths"][path][method]["responses"]["200"].is_object()
                || doc["paths"][path][method]["responses"]["201"].is_object(),
            "{path} {method}"
        );
    }
    let snap = inst.registry.snapshot();
    let pending: Vec<_> = snap
        .requests
        .values()
        .map(|r| (format!("{:?}", r.request_type), format!("{:?}", r.state)))
        .collect();
    assert!(
        pending.contains(&("AuthCertRegistration".into(), "Pending".into())),
        "{pending:?}"
    );
    assert!(
        pending.contains(&("ClientRegistration".into(), "Pending".into())),
        "{pending:?}"
    );
    let (status, v) = admin(
        &http,
        ss2,
        "GET",
        "/api/v1/registration",
        Some("test-api-key"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["active_auth_certificate"]["registered"], true, "{v}");
    assert_eq!(
        v["installed_auth_certificate"]["sha256"],
        new_auth.fingerprint_hex(),
        "{v}"
    );
    assert_eq!(v["installed_auth_certificate"]["registered"], false, "{v}");
    let (ok, out) = ss_cli(
        ss2,
        "test-api-key",
        &["registration", "status", "--client", "DEV/GOV/2000/prov"],
    )
    .await;
    assert!(ok && out.contains("\"registered\": true"), "{out}");
    let (ok, out) = ss_cli(
        ss2,
        "test-api-key",
        &["registration", "status", "--client", "DEV/GOV/2000/newsub"],
    )
    .await;
    assert!(ok && out.contains("\"registered\": false"), "{out}");
}
