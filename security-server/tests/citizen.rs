//! Identity on the bus, end to end with two real `security-server` processes: a citizen's ID
//! token verified by the consumer's security server, signed into the exchange, seen by the
//! provider's service as verified; and every way a token can be wrong, each refused with
//! `Client.InvalidUserIdentity` without the service being called.
//!
//! The negative matrix signs its own tokens (ring) and serves the issuer's JWK set from this
//! process; `login_at_oidc_provider_then_g2c_call` uses an OpenID provider we did not write
//! (npm `oidc-provider`, `sdk/tests/oidc-provider`) and the SDK's portal login.

// Test code: a failed setup step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use ring::rand::SystemRandom;
use ring::signature::{self, KeyPair as _, RsaKeyPair};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use trustbus_central_server::anchor::Anchor;
use trustbus_central_server::api::{self, AppState as CsState};
use trustbus_central_server::globalconf::{GlobalConf, Publisher};
use trustbus_central_server::keys::KeyStore;
use trustbus_central_server::management::AutoApprove;
use trustbus_central_server::model::{
    ManagementService, Member, MemberClass, OidcIssuer, Subsystem,
};
use trustbus_central_server::registry::Registry;
use trustbus_pki::Certificate;
use trustbus_pki::token::SoftToken;
use trustbus_sdk::id::{ClientId, SecurityServerId};
use trustbus_security_server::testkit::{TestPki, server_entry};

const PIN: &str = "1234";
const CITIZEN: &str = "EE38001085718";
const PORTAL: &str = "DEV/GOV/1000/portal";
const STRICT: &str = "DEV/GOV/1000/strict";
const RECORDS: &str = "DEV/GOV/2000/prov/records";
const RECORDS_HIGH: &str = "DEV/GOV/2000/prov/records-high";
const OPEN: &str = "DEV/GOV/2000/prov/open";
const GET_RECORDS: &str = "DEV/GOV/2000/prov/getRecords";
const AUD: &str = "portal-a";
/// `jwks_min_refresh_seconds` of the consumer: short, so the test can wait it out.
const REFRESH: u64 = 3;

const RSA_PK8: &[u8] = include_bytes!("../../sdk/tests/data/rsa2048.pk8");

fn cid(s: &str) -> ClientId {
    ClientId::from_slash(s).unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn now() -> i64 {
    trustbus_sdk::identity::now_unix()
}

// ---------------------------------------------------------------------------------------------
// The service behind the provider: records what reached it.

/// What one call to the service carried.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    user: Option<String>,
    verified: Option<String>,
    issuer: Option<String>,
    acr: Option<String>,
    id_token: bool,
}

#[derive(Default)]
struct Service {
    calls: AtomicUsize,
    seen: Mutex<Vec<Seen>>,
}

async fn service_handle(
    s: Arc<Service>,
    req: http::Request<Incoming>,
) -> Result<http::Response<Full<Bytes>>, std::convert::Infallible> {
    s.calls.fetch_add(1, Ordering::SeqCst);
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let h = |n: &str| {
        parts
            .headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let seen = Seen {
        path: parts.uri.path().to_owned(),
        user: h("x-road-userid"),
        verified: h("trustbus-user-verified"),
        issuer: h("trustbus-user-issuer"),
        acr: h("trustbus-user-acr"),
        id_token: parts.headers.contains_key("trustbus-id-token"),
    };
    s.seen.lock().unwrap().push(seen.clone());
    if seen.path.starts_with("/soap") {
        let limits = trustbus_sdk::soap::Limits::default();
        let req = trustbus_sdk::soap::parse_request(body.to_vec(), &limits).unwrap();
        let xml = format!(
            "<ns:getRecordsResponse xmlns:ns=\"urn:test\"><ns:subject>{}</ns:subject></ns:getRecordsResponse>",
            seen.user.unwrap_or_default()
        );
        let out = trustbus_sdk::soap::build_response(
            &req,
            &xml,
            trustbus_sdk::soap::HashAlgorithm::Sha512,
        );
        return Ok(http::Response::builder()
            .header("content-type", "text/xml; charset=utf-8")
            .body(Full::new(Bytes::from(out)))
            .unwrap());
    }
    let out = json!({
        "path": seen.path, "user": seen.user, "verified": seen.verified,
        "issuer": seen.issuer, "acr": seen.acr,
    });
    Ok(http::Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(out.to_string())))
        .unwrap())
}

/// Serves `handler` on a loopback port until the test ends.
async fn serve<F, Fut>(handler: F) -> std::net::SocketAddr
where
    F: Fn(http::Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<http::Response<Full<Bytes>>, std::convert::Infallible>>
        + Send
        + 'static,
{
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = l.accept().await else {
                return;
            };
            let h = handler.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(h);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

// ---------------------------------------------------------------------------------------------
// The identity provider of the negative matrix: keys, tokens, a JWK set served over HTTP.

fn b64(v: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(v)
}

fn rsa_jwk(k: &RsaKeyPair, kid: &str) -> Value {
    let c = signature::RsaPublicKeyComponents::<Vec<u8>>::from(k.public());
    json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": b64(&c.n), "e": b64(&c.e)})
}

fn ec_key() -> signature::EcdsaKeyPair {
    let rng = SystemRandom::new();
    let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
    let pk8 = signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
    signature::EcdsaKeyPair::from_pkcs8(alg, pk8.as_ref(), &rng).unwrap()
}

fn ec_jwk(k: &signature::EcdsaKeyPair, kid: &str) -> Value {
    let p = k.public_key().as_ref();
    json!({"kty": "EC", "crv": "P-256", "kid": kid, "x": b64(&p[1..33]), "y": b64(&p[33..])})
}

fn jws(header: &Value, claims: &Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let input = format!(
        "{}.{}",
        b64(&serde_json::to_vec(header).unwrap()),
        b64(&serde_json::to_vec(claims).unwrap())
    );
    let sig = b64(&sign(input.as_bytes()));
    format!("{input}.{sig}")
}

/// `token` with one character in the middle of its signature changed (still base64url: the
/// last character carries padding bits a strict decoder checks).
fn tamper_signature(token: &str) -> String {
    let sig_start = token.rfind('.').unwrap() + 1;
    let i = sig_start + 10;
    let c = if &token[i..=i] == "A" { "B" } else { "A" };
    format!("{}{c}{}", &token[..i], &token[i + 1..])
}

fn rs256(k: &RsaKeyPair) -> impl Fn(&[u8]) -> Vec<u8> + '_ {
    move |m| {
        let mut sig = vec![0; k.public().modulus_len()];
        k.sign(
            &signature::RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            m,
            &mut sig,
        )
        .unwrap();
        sig
    }
}

/// The identity provider of the matrix: `http://127.0.0.1:PORT`, keys at `/jwks`.
struct Idp {
    issuer: String,
    rsa: RsaKeyPair,
    /// The JWK set it serves now.
    jwks: Arc<Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
}

impl Idp {
    async fn start() -> Self {
        let rsa = RsaKeyPair::from_pkcs8(RSA_PK8).unwrap();
        let jwks = Arc::new(Mutex::new(json!({"keys": [rsa_jwk(&rsa, "k1")]})));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (j, f) = (jwks.clone(), fetches.clone());
        let addr = serve(move |req: http::Request<Incoming>| {
            let (j, f) = (j.clone(), f.clone());
            async move {
                let r = if req.uri().path() == "/jwks" {
                    f.fetch_add(1, Ordering::SeqCst);
                    // Slow enough that concurrent first calls arrive during the fetch.
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    let body = j.lock().unwrap().to_string();
                    http::Response::builder()
                        .header("content-type", "application/jwk-set+json")
                        .body(Full::new(Bytes::from(body)))
                } else {
                    http::Response::builder()
                        .status(404)
                        .body(Full::new(Bytes::new()))
                };
                Ok(r.unwrap())
            }
        })
        .await;
        Self {
            issuer: format!("http://{addr}"),
            rsa,
            jwks,
            fetches,
        }
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    fn claims(&self, acr: &str) -> Value {
        json!({"iss": self.issuer, "sub": CITIZEN, "aud": AUD, "iat": now() - 5,
               "exp": now() + 300, "acr": acr, "name": "Mari Maasikas"})
    }

    /// An RS256 token with key id `kid` over `claims`.
    fn token(&self, kid: &str, claims: &Value) -> String {
        jws(
            &json!({"alg": "RS256", "typ": "JWT", "kid": kid}),
            claims,
            rs256(&self.rsa),
        )
    }

    fn trusted(&self) -> OidcIssuer {
        OidcIssuer {
            issuer: self.issuer.clone(),
            audiences: vec![AUD.into()],
            jwks_url: Some(format!("{}/jwks", self.issuer)),
            jwks: None,
            min_acr: BTreeMap::from([("default".to_owned(), "low".to_owned())]),
            acr_levels: vec!["low".into(), "substantial".into(), "high".into()],
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The instance: central server and OCSP responder in process, two security servers.

struct SsProc {
    child: Child,
    client_proxy: String,
}

/// Writes a security server directory: token, certificates, configuration.
fn ss_dir(
    root: &Path,
    pki: &TestPki,
    server: &SecurityServerId,
    port: u16,
    body: &str,
) -> (PathBuf, Certificate) {
    let dir = root.join(server.server_code());
    let data = dir.join("data");
    std::fs::create_dir_all(data.join("certs")).unwrap();
    let token = SoftToken::open(data.join("token"))
        .unwrap()
        .with_iterations(NonZeroU32::new(1000).unwrap());
    let (sk, sc) = pki.sign_cert(server.owner()).unwrap();
    let (ak, ac) = pki.auth_cert(server).unwrap();
    token.store("sign", "sign", &sk, PIN).unwrap();
    token.store("auth", "auth", &ak, PIN).unwrap();
    Certificate::write_pem_file(&data.join("certs/sign.pem"), &[sc]).unwrap();
    Certificate::write_pem_file(&data.join("certs/auth.pem"), std::slice::from_ref(&ac)).unwrap();
    let cfg = format!(
        r#"
[server]
owner = "{owner}"
server_code = "{code}"
data_dir = "data"
development = true

[listen]
client_proxy = "127.0.0.1:0"
server_proxy = "127.0.0.1:{port}"
admin = "127.0.0.1:0"

[globalconf]
anchor = "../anchor.json"
poll_interval_seconds = 1
{body}
"#,
        owner = server.owner().to_slash(),
        code = server.server_code(),
    );
    std::fs::write(dir.join("security-server.toml"), cfg).unwrap();
    (dir, ac)
}

async fn start_ss(dir: &Path) -> SsProc {
    let mut child = Command::new(common::ss_exe())
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
    while addrs.len() < 3 {
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
    let health = format!("{}/healthz", addrs["admin"]);
    for _ in 0..600 {
        if send(
            http::Request::get(&health)
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .is_ok_and(|r| r.0 == 200)
        {
            return SsProc {
                child,
                client_proxy: addrs["client_proxy"].clone(),
            };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "security server at {} did not become healthy",
        dir.display()
    );
}

type Resp = (u16, http::HeaderMap, Bytes);

async fn send(req: http::Request<Full<Bytes>>) -> Result<Resp, String> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let r = client.request(req).await.map_err(|e| e.to_string())?;
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

struct Instance {
    _dir: tempfile::TempDir,
    ss_dirs: [PathBuf; 2],
    ss: [SsProc; 2],
    service: Arc<Service>,
    stop_cs: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Instance {
    /// Two security servers trusting `issuers`; the consumer hosts the portal (unverified user
    /// ids allowed) and `strict` (not allowed).
    async fn start(issuers: Vec<OidcIssuer>) -> Self {
        trustbus_pki::tls::install_ring_provider();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        let pki = Arc::new(TestPki::new(&root.join("ca")).unwrap());
        let ocsp_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ocsp_addr = ocsp_l.local_addr().unwrap();
        let services = trustbus_pki::serve::dev_services(pki.ca.clone()).unwrap();
        tokio::spawn(trustbus_pki::serve::serve(
            ocsp_l,
            services,
            std::future::pending(),
        ));
        let service = Arc::new(Service::default());
        let s = service.clone();
        let backend = serve(move |r| service_handle(s.clone(), r)).await;

        let (p1, p2) = (free_port(), free_port());
        let ss1 = SecurityServerId::from_slash("DEV/GOV/1000/ss1").unwrap();
        let ss2 = SecurityServerId::from_slash("DEV/GOV/2000/ss2").unwrap();
        let (d1, a1) = ss_dir(
            &root,
            &pki,
            &ss1,
            p1,
            &format!(
                r#"
[end_user_identity]
clock_skew_seconds = 30
jwks_min_refresh_seconds = {REFRESH}

[[clients]]
id = "{PORTAL}"
connection = "http"
[[clients]]
id = "{STRICT}"
connection = "http"
allow_unverified_user_id = false
id_token_audiences = ["portal-b"]
"#
            ),
        );
        let mut provider = format!(
            r#"
[[clients]]
id = "DEV/GOV/2000/prov"
connection = "http"

[[services]]
id = "{RECORDS}"
kind = "rest"
url = "http://{backend}/records"
require_verified_user = true
min_acr = "substantial"
[[services]]
id = "{RECORDS_HIGH}"
kind = "rest"
url = "http://{backend}/records-high"
require_verified_user = true
min_acr = "high"
[[services]]
id = "{OPEN}"
kind = "rest"
url = "http://{backend}/open"
[[services]]
id = "{GET_RECORDS}"
kind = "soap"
url = "http://{backend}/soap"
require_verified_user = true
"#
        );
        for svc in [RECORDS, RECORDS_HIGH, OPEN, GET_RECORDS] {
            for client in [PORTAL, STRICT] {
                provider.push_str(&format!(
                    "[[access]]\nservice = \"{svc}\"\nsubject = \"SUBSYSTEM:{client}\"\n"
                ));
            }
        }
        let (d2, a2) = ss_dir(&root, &pki, &ss2, p2, &provider);

        // Central server in process.
        let cs = root.join("cs");
        let registry = Arc::new(Registry::open(&cs.join("registry"), "DEV").unwrap());
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
        let servers = [
            server_entry(
                &ss1,
                &format!("127.0.0.1:{p1}"),
                &a1,
                &[cid(PORTAL), cid(STRICT)],
            ),
            server_entry(
                &ss2,
                &format!("127.0.0.1:{p2}"),
                &a2,
                &[cid("DEV/GOV/2000/prov")],
            ),
        ];
        registry
            .mutate(|s| {
                s.signing.active = 1;
                s.member_classes.insert(
                    "GOV".into(),
                    MemberClass {
                        code: "GOV".into(),
                        description: String::new(),
                    },
                );
                for (m, subs) in [
                    ("DEV/GOV/1000", vec!["portal", "strict"]),
                    ("DEV/GOV/2000", vec!["prov"]),
                ] {
                    s.members.insert(
                        m.into(),
                        Member {
                            id: cid(m),
                            name: format!("Member {m}"),
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
                    s.servers.insert(srv.id.to_slash(), srv.clone());
                }
                s.cas.insert(ca.name.clone(), ca.clone());
                for i in &issuers {
                    i.validate()?;
                    s.issuers.insert(i.issuer.clone(), i.clone());
                }
                Ok(())
            })
            .unwrap();
        let publisher = Publisher::open(&cs.join("published"), 10).unwrap();
        let gc = Arc::new(GlobalConf::new(
            registry.clone(),
            keys,
            publisher,
            ManagementService {
                address: "http://127.0.0.1:1".into(),
                tls_cert: None,
                tls_ca_cert: None,
            },
            vec![],
        ));
        gc.regenerate().unwrap();
        let cs_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let cs_addr = cs_l.local_addr().unwrap();
        let state = CsState {
            registry,
            globalconf: gc.clone(),
            auto_approve: Arc::new(AutoApprove(Default::default())),
            refresh_interval_seconds: 1,
            max_management_body: 1 << 20,
        };
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
        Self {
            _dir: dir,
            ss_dirs: [d1, d2],
            ss: [s1, s2],
            service,
            stop_cs: Some(tx),
        }
    }

    fn calls(&self) -> usize {
        self.service.calls.load(Ordering::SeqCst)
    }

    fn last_seen(&self) -> Seen {
        self.service.seen.lock().unwrap().last().cloned().unwrap()
    }

    /// A REST GET of `service` from `client` with extra headers.
    async fn get(&self, client: &str, service: &str, headers: &[(&str, &str)]) -> Resp {
        let mut b = http::Request::get(format!("{}/r1/{service}/me", self.ss[0].client_proxy))
            .header("X-Road-Client", client);
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        send(b.body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap()
    }

    /// A REST call that must end in `Client.InvalidUserIdentity` whose message names `reason`,
    /// without the service being called.
    async fn refused(&self, what: &str, service: &str, headers: &[(&str, &str)], reason: &str) {
        let before = self.calls();
        let (status, h, body) = self.get(PORTAL, service, headers).await;
        let text = String::from_utf8_lossy(&body);
        assert_eq!(
            h.get("x-road-error").and_then(|v| v.to_str().ok()),
            Some("Client.InvalidUserIdentity"),
            "{what}: HTTP {status} {text}"
        );
        assert_eq!(status, 400, "{what}: {text}");
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["type"], "Client.InvalidUserIdentity", "{what}");
        assert!(
            v["message"].as_str().unwrap().contains(reason),
            "{what}: message {} should name {reason}",
            v["message"]
        );
        assert_eq!(
            self.calls(),
            before,
            "{what}: the service must not be called"
        );
    }

    /// Stops both servers (so their message logs can be opened) and the central server.
    async fn stop(&mut self) {
        for s in &mut self.ss {
            let _ = s.child.kill().await;
        }
        if let Some(tx) = self.stop_cs.take() {
            let _ = tx.send(());
        }
    }
}

/// Runs the futures concurrently (in this task) and returns their outputs in order.
async fn join_all<F: Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut futs: Vec<std::pin::Pin<Box<F>>> = futs.map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, o) in futs.iter_mut().zip(out.iter_mut()) {
            if o.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *o = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(Option::unwrap).collect()
}

fn soap_request(client: &str, service: &str, user_id: Option<&str>) -> Vec<u8> {
    let mut b = trustbus_sdk::soap::SoapRequestBuilder::new(
        cid(client),
        trustbus_sdk::ServiceId::from_slash(service).unwrap(),
    )
    .id(uuid::Uuid::new_v4().to_string())
    .body("<ns:getRecords xmlns:ns=\"urn:test\"/>");
    if let Some(u) = user_id {
        b = b.user_id(u);
    }
    b.build()
}

async fn soap(inst: &Instance, body: Vec<u8>, token: Option<&str>) -> Resp {
    let mut b = http::Request::post(format!("{}/", inst.ss[0].client_proxy))
        .header("content-type", "text/xml; charset=utf-8")
        .header("SOAPAction", "\"\"");
    if let Some(t) = token {
        b = b.header("Trustbus-Id-Token", t);
    }
    send(b.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .unwrap()
}

fn soap_fault_code(body: &[u8]) -> String {
    let f = trustbus_sdk::soap::parse_fault(body, &trustbus_sdk::soap::Limits::default()).unwrap();
    f.to_fault()
        .map(|f| f.code.render(trustbus_sdk::FaultDialect::Classic))
        .unwrap_or_default()
}

/// The records of `user` in a stopped server's message log: (service, verified) per record.
fn logged_users(ss_dir: &Path, user: &str) -> Vec<(String, bool)> {
    use trustbus_security_server::messagelog::{MessageLog, MessageLogConfig, Query, QueryFilter};
    let log = MessageLog::open(MessageLogConfig::new(ss_dir.join("data/messagelog"))).unwrap();
    let page = log
        .store()
        .query(&Query::new(QueryFilter::User(user.to_owned()), 100))
        .unwrap();
    page.records
        .iter()
        .map(|r| {
            let u = r.meta.user.as_ref().unwrap();
            (r.meta.service.clone(), u.verified)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verified_citizen_and_every_bad_token() {
    let idp = Idp::start().await;
    // A second issuer with a pinned ES256 key and exact `acr` matching.
    let pinned = ec_key();
    let pinned_issuer = OidcIssuer {
        issuer: "https://pinned.idp.example".into(),
        audiences: vec!["portal-b".into()],
        jwks_url: None,
        jwks: Some(json!({"keys": [ec_jwk(&pinned, "p1")]})),
        min_acr: BTreeMap::new(),
        acr_levels: vec![],
    };
    // A third whose key set cannot be fetched (nothing listens on port 1).
    let down_issuer = OidcIssuer {
        issuer: "https://down.idp.example".into(),
        jwks_url: Some("http://127.0.0.1:1/jwks".into()),
        ..idp.trusted()
    };
    let mut inst = Instance::start(vec![idp.trusted(), pinned_issuer, down_issuer]).await;

    // 1. A verified citizen: the service sees the subject as verified, with issuer and acr;
    //    copies of the bus's headers the portal sends are replaced, the token never travels.
    //    Concurrent first calls wait for the one key-set fetch instead of being refused.
    let good = idp.token("k1", &idp.claims("substantial"));
    let with_good = [("Trustbus-Id-Token", good.as_str())];
    let first = (0..6).map(|_| inst.get(PORTAL, OPEN, &with_good));
    for (status, _, body) in join_all(first).await {
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    }
    assert_eq!(
        idp.fetches(),
        1,
        "the key set is fetched once, on first use"
    );
    let before = inst.calls();
    let (status, _, body) = inst
        .get(
            PORTAL,
            RECORDS,
            &[
                ("Trustbus-Id-Token", &good),
                ("X-Road-UserId", CITIZEN),
                ("Trustbus-User-Acr", "high"),
                ("Trustbus-User-Issuer", "https://evil.example"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(inst.calls(), before + 1);
    let seen = inst.last_seen();
    assert_eq!(seen.path, "/records/me");
    assert_eq!(seen.user.as_deref(), Some(CITIZEN));
    assert_eq!(seen.verified.as_deref(), Some("true"));
    assert_eq!(seen.issuer.as_deref(), Some(idp.issuer.as_str()));
    assert_eq!(seen.acr.as_deref(), Some("substantial"));
    assert!(!seen.id_token, "the ID token must not reach the service");
    // Cached: further calls do not fetch again.
    let (status, _, _) = inst
        .get(PORTAL, RECORDS, &[("Trustbus-Id-Token", &good)])
        .await;
    assert_eq!(status, 200);
    assert_eq!(idp.fetches(), 1);

    // The pinned issuer (never fetched), on a service without a requirement.
    let claims_b = json!({"iss": "https://pinned.idp.example", "sub": "EE49002124277",
                          "aud": "portal-b", "iat": now(), "exp": now() + 60});
    let token_b = jws(&json!({"alg": "ES256", "kid": "p1"}), &claims_b, |m| {
        pinned
            .sign(&SystemRandom::new(), m)
            .unwrap()
            .as_ref()
            .to_vec()
    });
    let (status, _, body) = inst
        .get(PORTAL, OPEN, &[("Trustbus-Id-Token", &token_b)])
        .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let seen = inst.last_seen();
    assert_eq!(seen.user.as_deref(), Some("EE49002124277"));
    assert_eq!(seen.verified.as_deref(), Some("true"));
    assert_eq!(seen.acr, None);
    // ... but not where a level is required: without `acr` no level is met (provider refuses).
    inst.refused(
        "pinned issuer, no acr",
        RECORDS,
        &[("Trustbus-Id-Token", &token_b)],
        "acr_too_low",
    )
    .await;

    // 2. A client forging the verified flag without a token gets an unverified user at most.
    let (status, _, _) = inst
        .get(
            PORTAL,
            OPEN,
            &[("X-Road-UserId", "EE1"), ("Trustbus-User-Verified", "true")],
        )
        .await;
    assert_eq!(status, 200);
    let seen = inst.last_seen();
    assert_eq!(seen.user.as_deref(), Some("EE1"));
    assert_eq!(
        seen.verified, None,
        "a client cannot set Trustbus-User-Verified"
    );
    // ... and for a client that may not assert user ids, none at all.
    let (status, _, _) = inst
        .get(
            STRICT,
            OPEN,
            &[("X-Road-UserId", "EE1"), ("Trustbus-User-Verified", "true")],
        )
        .await;
    assert_eq!(status, 200);
    let seen = inst.last_seen();
    assert_eq!((seen.user, seen.verified), (None, None));

    // A client bound to other audiences cannot use the portal's token (but can its own).
    let before = inst.calls();
    let (status, h, body) = inst
        .get(STRICT, OPEN, &[("Trustbus-Id-Token", &good)])
        .await;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    assert_eq!(h["x-road-error"], "Client.InvalidUserIdentity");
    assert!(String::from_utf8_lossy(&body).contains("not issued to client DEV/GOV/1000/strict"));
    assert_eq!(inst.calls(), before);
    let (status, _, _) = inst
        .get(STRICT, OPEN, &[("Trustbus-Id-Token", &token_b)])
        .await;
    assert_eq!(status, 200);

    // 3. The service requires a verified citizen: refused by the provider's security server.
    inst.refused(
        "no token",
        RECORDS,
        &[],
        "requires an end user verified by the bus",
    )
    .await;
    inst.refused(
        "unverified user id",
        RECORDS,
        &[
            ("X-Road-UserId", CITIZEN),
            ("Trustbus-User-Verified", "true"),
        ],
        "only asserted by the client",
    )
    .await;
    inst.refused(
        "acr below the service's level",
        RECORDS_HIGH,
        &[("Trustbus-Id-Token", &good)],
        "acr_too_low",
    )
    .await;
    let high = idp.token("k1", &idp.claims("high"));
    let (status, _, _) = inst
        .get(PORTAL, RECORDS_HIGH, &[("Trustbus-Id-Token", &high)])
        .await;
    assert_eq!(status, 200, "acr high meets high");

    // 4. Bad tokens: refused by the consumer's security server, on any service.
    let mut claims = idp.claims("substantial");
    claims["exp"] = json!(now() - 120);
    claims["iat"] = json!(now() - 900);
    inst.refused(
        "expired",
        OPEN,
        &[("Trustbus-Id-Token", &idp.token("k1", &claims))],
        "(expired)",
    )
    .await;
    let mut claims = idp.claims("substantial");
    claims["aud"] = json!("another-portal");
    inst.refused(
        "token for another audience",
        RECORDS,
        &[("Trustbus-Id-Token", &idp.token("k1", &claims))],
        "(wrong_audience)",
    )
    .await;
    let mut claims = idp.claims("substantial");
    claims["iss"] = json!("https://unknown.idp.example");
    inst.refused(
        "unknown issuer",
        RECORDS,
        &[("Trustbus-Id-Token", &idp.token("k1", &claims))],
        "(unknown_issuer)",
    )
    .await;
    let claims = idp.claims("substantial");
    let none = jws(&json!({"alg": "none", "kid": "k1"}), &claims, |_| {
        Vec::new()
    });
    inst.refused(
        "alg none",
        RECORDS,
        &[("Trustbus-Id-Token", &none)],
        "(algorithm_not_allowed)",
    )
    .await;
    // The classic confusion: HMAC keyed with the issuer's public RSA key.
    let public_key = idp.rsa.public().as_ref().to_vec();
    let hs = jws(&json!({"alg": "HS256", "kid": "k1"}), &claims, |m| {
        ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &public_key),
            m,
        )
        .as_ref()
        .to_vec()
    });
    inst.refused(
        "HS256 with the public key",
        RECORDS,
        &[("Trustbus-Id-Token", &hs)],
        "(algorithm_not_allowed)",
    )
    .await;
    let tampered = tamper_signature(&good);
    inst.refused(
        "tampered signature",
        RECORDS,
        &[("Trustbus-Id-Token", &tampered)],
        "(invalid_signature)",
    )
    .await;
    // Tampered claims under the original signature.
    let parts: Vec<&str> = good.split('.').collect();
    let mut forged = idp.claims("substantial");
    forged["sub"] = json!("EE-someone-else");
    let swapped = format!(
        "{}.{}.{}",
        parts[0],
        b64(&serde_json::to_vec(&forged).unwrap()),
        parts[2]
    );
    inst.refused(
        "tampered claims",
        RECORDS,
        &[("Trustbus-Id-Token", &swapped)],
        "(invalid_signature)",
    )
    .await;
    inst.refused(
        "acr below the issuer's minimum",
        OPEN,
        &[("Trustbus-Id-Token", &idp.token("k1", &idp.claims("none")))],
        "(acr_too_low)",
    )
    .await;
    inst.refused(
        "asserted user id is not the subject",
        RECORDS,
        &[
            ("Trustbus-Id-Token", &good),
            ("X-Road-UserId", "EE-someone-else"),
        ],
        "(subject_mismatch)",
    )
    .await;
    inst.refused(
        "not a JWT",
        RECORDS,
        &[("Trustbus-Id-Token", "not.a.jwt")],
        "(malformed)",
    )
    .await;

    // The issuer's keys cannot be fetched: not the caller's fault, so a server error.
    let mut claims = idp.claims("substantial");
    claims["iss"] = json!("https://down.idp.example");
    let before = inst.calls();
    let (status, h, body) = inst
        .get(
            PORTAL,
            OPEN,
            &[("Trustbus-Id-Token", &idp.token("k1", &claims))],
        )
        .await;
    assert_eq!(status, 500, "{}", String::from_utf8_lossy(&body));
    assert_eq!(h["x-road-error"], "Server.ClientProxy.InvalidUserIdentity");
    assert!(String::from_utf8_lossy(&body).contains("(jwks_unavailable)"));
    assert_eq!(inst.calls(), before);

    // 5. Unknown key id: one refetch (the issuer may have rotated), then rate-limited.
    tokio::time::sleep(Duration::from_millis(REFRESH * 1000 + 100)).await;
    let fetched = idp.fetches();
    let unknown = idp.token("k-unknown", &idp.claims("substantial"));
    for _ in 0..4 {
        inst.refused(
            "unknown key id",
            RECORDS,
            &[("Trustbus-Id-Token", &unknown)],
            "(unknown_key_id)",
        )
        .await;
    }
    assert_eq!(
        idp.fetches(),
        fetched + 1,
        "an unknown kid refetches once per interval"
    );

    // 6. Key rotation: the issuer replaces k1 by k2; a k2 token is accepted after a refetch,
    //    a k1 token no longer is.
    let rotated = RsaKeyPair::from_pkcs8(RSA_PK8).unwrap();
    *idp.jwks.lock().unwrap() = json!({"keys": [rsa_jwk(&rotated, "k2")]});
    tokio::time::sleep(Duration::from_millis(REFRESH * 1000 + 100)).await;
    let k2 = idp.token("k2", &idp.claims("substantial"));
    let (status, _, body) = inst
        .get(PORTAL, RECORDS, &[("Trustbus-Id-Token", &k2)])
        .await;
    assert_eq!(
        status,
        200,
        "rotated key: {}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(idp.fetches(), fetched + 2);
    inst.refused(
        "retired key id",
        RECORDS,
        &[("Trustbus-Id-Token", &good)],
        "(unknown_key_id)",
    )
    .await;

    // 7. SOAP: the verified subject as HTTP headers to the service; a userId in the envelope
    //    must be the subject; without a token the service is refused.
    let before = inst.calls();
    let (status, _, body) = soap(
        &inst,
        soap_request(PORTAL, GET_RECORDS, Some(CITIZEN)),
        Some(&k2),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(inst.calls(), before + 1);
    let seen = inst.last_seen();
    assert_eq!(seen.user.as_deref(), Some(CITIZEN));
    assert_eq!(seen.verified.as_deref(), Some("true"));
    assert!(
        String::from_utf8_lossy(&body).contains(&format!("<ns:subject>{CITIZEN}</ns:subject>"))
    );
    let tampered_k2 = tamper_signature(&k2);
    for (what, body, token) in [
        (
            "SOAP without token",
            soap_request(PORTAL, GET_RECORDS, None),
            None,
        ),
        (
            "SOAP unverified userId",
            soap_request(PORTAL, GET_RECORDS, Some(CITIZEN)),
            None,
        ),
        (
            "SOAP userId is not the subject",
            soap_request(PORTAL, GET_RECORDS, Some("EE2")),
            Some(k2.as_str()),
        ),
        (
            "SOAP tampered token",
            soap_request(PORTAL, GET_RECORDS, None),
            Some(tampered_k2.as_str()),
        ),
        (
            "SOAP strict client asserting",
            soap_request(STRICT, GET_RECORDS, Some(CITIZEN)),
            None,
        ),
    ] {
        let before = inst.calls();
        let (status, _, body) = soap(&inst, body, token).await;
        assert_eq!(status, 500, "{what}: {}", String::from_utf8_lossy(&body));
        assert_eq!(
            soap_fault_code(&body),
            "Client.InvalidUserIdentity",
            "{what}"
        );
        assert_eq!(
            inst.calls(),
            before,
            "{what}: the service must not be called"
        );
    }

    // 8. Both message logs record the citizen as verified (request and response, both sides),
    //    and the forged flag of step 2 as unverified.
    inst.stop().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for d in &inst.ss_dirs {
        // Verified with a token; unverified where the portal only asserted the id (step 3).
        let citizen = logged_users(d, CITIZEN);
        for (service, verified) in [(RECORDS, true), (GET_RECORDS, true), (RECORDS, false)] {
            assert!(
                citizen.contains(&(service.to_owned(), verified)),
                "{}: {service} verified={verified} not in {citizen:?}",
                d.display()
            );
        }
        let forged = logged_users(d, "EE1");
        assert!(
            !forged.is_empty() && forged.iter().all(|(_, v)| !v),
            "{forged:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// An OpenID provider we did not write: npm oidc-provider, as in the SDK's login tests.

const REDIRECT: &str = "http://127.0.0.1/callback";

fn oidc_provider_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../sdk/tests/oidc-provider")
}

/// A running `node server.mjs`; killed on drop.
struct NodeIdp {
    child: std::process::Child,
    issuer: String,
}

impl Drop for NodeIdp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the provider, after `npm ci` if `node_modules` is missing; fails loudly without
/// node and npm (`.ci/run` installs both).
fn start_node_idp() -> NodeIdp {
    use std::io::BufRead;
    use std::process::Stdio;
    let node = std::process::Command::new("node").arg("--version").output();
    assert!(
        node.as_ref().is_ok_and(|o| o.status.success()),
        "this test needs Node.js (20.19 or later) and npm for the oidc-provider IdP: {node:?}"
    );
    let dir = oidc_provider_dir();
    if !dir.join("node_modules/oidc-provider/package.json").exists() {
        let out = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .output()
            .expect("`npm` not found");
        assert!(
            out.status.success(),
            "npm ci: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut child = std::process::Command::new("node")
        .arg("server.mjs")
        .current_dir(&dir)
        .env("PORT", free_port().to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting node server.mjs");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(issuer) = line.strip_prefix("READY ") {
                let _ = tx.send(issuer.to_owned());
            }
        }
    });
    let issuer = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("oidc-provider did not start");
    NodeIdp { child, issuer }
}

/// Plays the citizen's browser: follows the provider's redirects, with cookies, until it is
/// sent to the portal's redirect URI, and returns that URL.
async fn browse(issuer: &str, start_url: &str) -> String {
    use trustbus_sdk::client::{HyperTransport, Transport};
    let tls = rustls::ClientConfig::builder_with_provider(trustbus_pki::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let http = HyperTransport::new(
        tls,
        Duration::from_secs(5),
        Duration::from_secs(10),
        1 << 20,
    );
    let mut cookies: BTreeMap<String, String> = BTreeMap::new();
    let mut url = start_url.to_owned();
    for _ in 0..12 {
        if url.starts_with(REDIRECT) {
            return url;
        }
        let mut req = http::Request::get(&url).body(Bytes::new()).unwrap();
        if !cookies.is_empty() {
            let c: Vec<String> = cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
            req.headers_mut()
                .insert("cookie", c.join("; ").parse().unwrap());
        }
        let resp = http.send(req).await.unwrap();
        for sc in resp.headers().get_all("set-cookie") {
            let sc = sc.to_str().unwrap();
            let (pair, attrs) = sc.split_once(';').unwrap_or((sc, ""));
            let (name, value) = pair.split_once('=').unwrap();
            let attrs = attrs.to_ascii_lowercase();
            if value.is_empty() || attrs.contains("max-age=0") || attrs.contains("1970") {
                cookies.remove(name.trim());
            } else {
                cookies.insert(name.trim().to_owned(), value.trim().to_owned());
            }
        }
        assert!(resp.status().is_redirection(), "{url}: {}", resp.status());
        let loc = resp.headers()["location"].to_str().unwrap();
        url = if loc.starts_with("http") {
            loc.to_owned()
        } else {
            format!("{issuer}{loc}")
        };
    }
    panic!("too many redirects, last {url}");
}

/// The G2C flow with real parts: the citizen logs in at oidc-provider through the SDK's portal
/// login, the portal calls through the bus with the ID token (SDK client), the consumer's
/// security server fetches the provider's keys and verifies, and the service sees the
/// verified subject.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_at_oidc_provider_then_g2c_call() {
    use trustbus_sdk::client::{BusClient, BusError, Method};
    use trustbus_sdk::oidc::{ClientAuth, OidcConfig, PortalLogin};
    let idp = start_node_idp();
    let mut cfg = OidcConfig::new(
        &idp.issuer,
        "portal-basic",
        ClientAuth::ClientSecretBasic("portal-basic-secret".into()),
        REDIRECT,
    );
    cfg.acr_values = vec!["substantial".into()];
    cfg.acr_levels = vec!["low".into(), "substantial".into(), "high".into()];
    let portal = PortalLogin::discover(cfg).await.unwrap();
    let trusted = OidcIssuer {
        issuer: idp.issuer.clone(),
        audiences: vec!["portal-basic".into()],
        jwks_url: Some(portal.jwks_url().to_owned()),
        jwks: None,
        min_acr: BTreeMap::from([("default".to_owned(), "substantial".to_owned())]),
        acr_levels: vec!["low".into(), "substantial".into(), "high".into()],
    };
    let inst = Instance::start(vec![trusted]).await;

    let (url, state) = portal.start();
    let callback = browse(&idp.issuer, &url).await;
    let session = portal.finish(&state, &callback).await.unwrap();
    assert_eq!(session.subject, CITIZEN);

    let client = BusClient::builder(&inst.ss[0].client_proxy, PORTAL)
        .build()
        .unwrap();
    let before = inst.calls();
    let r = client
        .rest(RECORDS, Method::GET, "/me")
        .id_token(session.id_token())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let v: Value = r.json().unwrap();
    assert_eq!(v["user"], CITIZEN);
    assert_eq!(v["verified"], "true");
    assert_eq!(v["issuer"], idp.issuer.as_str());
    assert_eq!(v["acr"], "substantial");
    assert_eq!(inst.calls(), before + 1);

    // The same portal without the token, and with the token for a service needing "high".
    for (service, token) in [(RECORDS, None), (RECORDS_HIGH, Some(session.id_token()))] {
        let mut call = client.rest(service, Method::GET, "/me");
        if let Some(t) = token {
            call = call.id_token(t);
        }
        match call.send().await {
            Err(BusError::Fault { code, .. }) => {
                assert_eq!(code.to_string(), "Client.InvalidUserIdentity", "{service}");
            }
            other => panic!("{service}: {other:?}"),
        }
    }
    assert_eq!(
        inst.calls(),
        before + 1,
        "refused calls never reach the service"
    );
}
