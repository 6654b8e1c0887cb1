//! End-to-end tests against the real `central-server` binary on loopback.

// Test helpers panic on failure by design: a panic is a test failure with a message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use std::sync::Arc;
use trustbus_central_server::anchor::Anchor;
use trustbus_central_server::confclient::{ConfClient, ConfClientError, HttpFetcher, PollOutcome};
use trustbus_central_server::globalconf::cms_signing::CmsDirectoryVerifier;
use trustbus_central_server::keys::self_signed_cert;
use trustbus_central_server::management::{CanonicalRequest, Envelope, EnvelopeKey, RequestBody};
use trustbus_central_server::tlsconf::management_client_config;
use trustbus_central_server::util;

use trustbus_pki::devca::{DevCa, IssueRequest, SubjectKey};
use trustbus_pki::key::{KeyKind, KeyPair};
use trustbus_pki::ocsp::{self, OcspResponder};
use trustbus_pki::profile::CertProfile;
use trustbus_pki::revocation::CrlReason;
use trustbus_pki::{Certificate, DigestAlgorithm, Signer};
use trustbus_sdk::id::{ClientId, SecurityServerId};

const BIN: &str = env!("CARGO_BIN_EXE_central-server");
const PIN_ENV: &str = "TRUSTBUS_CENTRAL_PIN";
const PIN: &str = "test PIN 1234";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn cli(args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .env(PIN_ENV, PIN)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

struct Server {
    dir: PathBuf,
    child: Option<Child>,
    public: String,
    admin: String,
    mgmt: String,
}

impl Server {
    /// init + config with free ports + apply the dev instance + keys + anchor.
    fn setup(dir: &Path) -> (PathBuf, String, String, String) {
        cli(&["init", "--dir", dir.to_str().unwrap(), "--instance", "DEV"]);
        let cfg = dir.join("central-server.toml");
        let (p, a, m) = (free_port(), free_port(), free_port());
        std::fs::write(
            &cfg,
            format!(
                "instance = \"DEV\"\ndata_dir = \"data\"\n\
                 [globalconf]\nlisten = \"127.0.0.1:{p}\"\nrefresh_interval_seconds = 30\n\
                 check_interval_seconds = 1\n\
                 [admin]\nlisten = \"127.0.0.1:{a}\"\n\
                 [management]\nlisten = \"127.0.0.1:{m}\"\nauto_approve = [\"address_change\"]\n\
                 [keys]\npbkdf2_iterations = 1000\n"
            ),
        )
        .unwrap();
        let c = cfg.to_str().unwrap();
        let instance = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/dev-instance.toml");
        let first = cli(&["apply", instance, "--config", c]);
        assert!(first.contains("+ member DEV/GOV/1000"), "{first}");
        assert_eq!(
            cli(&["apply", instance, "--config", c]).trim(),
            "no changes"
        );
        let key = |role: &str| {
            cli(&["api-key", "create", "--role", role, "--config", c])
                .trim()
                .to_owned()
        };
        let admin = key("system-administrator");
        let officer = key("registration-officer");
        let observer = key("observer");
        let out = cli(&[
            "anchor",
            "--out",
            dir.join("anchor.json").to_str().unwrap(),
            "--config",
            c,
        ]);
        let digest = util::sha256_hex(&std::fs::read(dir.join("anchor.json")).unwrap());
        assert!(out.contains(&digest), "anchor digest printed: {out}");
        (cfg, admin, officer, observer)
    }

    fn start(dir: &Path) -> Self {
        let mut child = Command::new(BIN)
            .args([
                "serve",
                "--config",
                dir.join("central-server.toml").to_str().unwrap(),
            ])
            .env(PIN_ENV, PIN)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (mut public, mut admin, mut mgmt) = (String::new(), String::new(), String::new());
        while public.is_empty() || admin.is_empty() || mgmt.is_empty() {
            let line = lines.next().expect("server exited early").unwrap();
            let addr = line.rsplit("://").next().unwrap().to_owned();
            match line.split(' ').nth(1) {
                Some("globalconf") => public = addr,
                Some("admin") => admin = addr,
                Some("management") => mgmt = addr,
                _ => {}
            }
        }
        Self {
            dir: dir.to_path_buf(),
            child: Some(child),
            public,
            admin,
            mgmt,
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SIGTERM for a graceful stop; the test then restarts on the same data.
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let _ = c.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

struct Resp {
    status: u16,
    headers: String,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or("").to_owned()
    }
}

fn http(
    method: &str,
    addr: &str,
    path: &str,
    key: Option<&str>,
    extra: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    exchange(s, method, addr, path, key, extra, body).unwrap()
}

/// One HTTP/1.1 exchange on `s` (plain or TLS).
fn exchange<S: Read + Write>(
    mut s: S,
    method: &str,
    addr: &str,
    path: &str,
    key: Option<&str>,
    extra: &[(&str, &str)],
    body: &[u8],
) -> Result<Resp, String> {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\nContent-Type: application/json\r\n",
        body.len()
    );
    if let Some(k) = key {
        req.push_str(&format!("Authorization: Bearer {k}\r\n"));
    }
    for (n, v) in extra {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    s.write_all(body).map_err(|e| e.to_string())?;
    s.flush().map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    if let Err(e) = s.read_to_end(&mut raw) {
        // A TLS peer may close without close_notify after a complete response.
        if raw.is_empty() || e.kind() != std::io::ErrorKind::UnexpectedEof {
            return Err(e.to_string());
        }
    }
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no HTTP response ({} bytes)", raw.len()))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body = raw[split + 4..].to_vec();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(&body)
    } else {
        body
    };
    Ok(Resp {
        status,
        headers: head.to_ascii_lowercase(),
        body,
    })
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let nl = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let n = usize::from_str_radix(std::str::from_utf8(&b[..nl]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[nl + 2..nl + 2 + n]);
        b = &b[nl + 4 + n..];
    }
}

/// A key with its certificate (DER).
struct MemberKey {
    key: KeyPair,
    cert: Vec<u8>,
}

/// A self-signed certificate: signs fine, chains to nothing.
fn self_signed_key(cn: &str) -> MemberKey {
    let key = KeyPair::generate(KeyKind::EcdsaP256).unwrap();
    let cert = self_signed_cert(&key, cn).unwrap();
    MemberKey { key, cert }
}

/// The development CA of the test, its OCSP responder (in process) and an auth-only CA.
struct Pki {
    ca: DevCa,
    responder: OcspResponder<DevCa>,
    auth_only: DevCa,
}

impl Pki {
    fn new(dir: &Path) -> Self {
        let ca = DevCa::init(&dir.join("devca"), "DEV").unwrap();
        let (ocsp_cert, ocsp_key) = ca.ocsp_signer().unwrap();
        let responder = OcspResponder::new(
            ca.ca_cert().der(),
            ocsp_cert.der(),
            Arc::new(ocsp_key),
            ca.clone(),
        )
        .unwrap();
        let auth_only = DevCa::init(&dir.join("devca-auth-only"), "DEV").unwrap();
        Self {
            ca,
            responder,
            auth_only,
        }
    }

    fn issue_from(ca: &DevCa, member: &str, name: &str, server: Option<&str>) -> MemberKey {
        let key = KeyPair::generate(KeyKind::EcdsaP256).unwrap();
        let cert = ca
            .issue(&IssueRequest {
                profile: if server.is_some() {
                    CertProfile::Auth
                } else {
                    CertProfile::Sign
                },
                member: ClientId::from_slash(member).unwrap(),
                member_name: name.into(),
                server_code: server.map(str::to_owned),
                key: SubjectKey::Spki(key.public_key_der()),
                not_before: None,
                not_after: None,
            })
            .unwrap();
        MemberKey {
            key,
            cert: cert.der().to_vec(),
        }
    }

    /// A signing certificate of `member`.
    fn sign(&self, member: &str) -> MemberKey {
        Self::issue_from(&self.ca, member, "Test member", None)
    }

    /// An authentication certificate of `server` (`INSTANCE/CLASS/CODE/SERVER`).
    fn auth(&self, server: &str) -> MemberKey {
        let (member, code) = server.rsplit_once('/').unwrap();
        Self::issue_from(&self.ca, member, "Test member", Some(code))
    }

    /// An OCSP response about `cert` produced at `at`.
    fn ocsp_at(&self, cert: &[u8], at: time::OffsetDateTime) -> Vec<u8> {
        let req =
            ocsp::build_request(cert, self.ca.ca_cert().der(), DigestAlgorithm::Sha1).unwrap();
        self.responder.respond(&req, at)
    }

    fn ocsp(&self, cert: &[u8]) -> Vec<u8> {
        self.ocsp_at(cert, time::OffsetDateTime::now_utc())
    }

    /// The admin API body approving both CAs (the development CA with an OCSP responder, so
    /// responses are required for its certificates).
    fn approve(&self, s: &Server, admin: &str) {
        let body = json!({
            "name": "Trustbus DEV CA",
            "roots": [util::b64(self.ca.ca_cert().der())],
            "ocsp_responders": [{"url": "http://127.0.0.1:9/ocsp"}],
        });
        let r = http(
            "POST",
            &s.admin,
            "/api/v1/cas",
            Some(admin),
            &[],
            body.to_string().as_bytes(),
        );
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let body = json!({
            "name": "Auth-only CA",
            "authentication_only": true,
            "roots": [util::b64(self.auth_only.ca_cert().der())],
        });
        let r = http(
            "POST",
            &s.admin,
            "/api/v1/cas",
            Some(admin),
            &[],
            body.to_string().as_bytes(),
        );
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }
}

/// A signed envelope; OCSP responses are attached for CA-issued certificates.
fn envelope(
    pki: &Pki,
    signer: &MemberKey,
    member: &str,
    body: RequestBody,
    auth: Option<&MemberKey>,
) -> Vec<u8> {
    let req = CanonicalRequest {
        member: ClientId::from_slash(member).unwrap(),
        created_at: util::rfc3339(util::now()),
        request: body,
    };
    let ocsp = pki.ocsp(&signer.cert);
    let auth_ocsp = auth.map(|a| pki.ocsp(&a.cert));
    let env = Envelope::sign(
        &req,
        EnvelopeKey {
            signer: &signer.key,
            cert_der: &signer.cert,
            ocsp_response: Some(&ocsp),
        },
        auth.map(|a| EnvelopeKey {
            signer: &a.key,
            cert_der: &a.cert,
            ocsp_response: auth_ocsp.as_deref(),
        }),
    )
    .unwrap();
    serde_json::to_vec(&env).unwrap()
}

/// `envelope` with one JSON field replaced (`None` removes it).
fn envelope_with(base: Vec<u8>, field: &str, value: Option<String>) -> Vec<u8> {
    let mut env: Value = serde_json::from_slice(&base).unwrap();
    match value {
        Some(v) => env[field] = json!(v),
        None => {
            env.as_object_mut().unwrap().remove(field);
        }
    }
    env.to_string().into_bytes()
}

/// How a security server pins the management listener: the CA and certificate published in
/// private parameters.
struct MgmtPin(trustbus_central_server::model::ManagementService);

impl MgmtPin {
    fn from_conf(conf: &trustbus_central_server::confclient::GlobalConfiguration) -> Self {
        let ms = &conf.private.as_ref().unwrap().management_service;
        assert!(ms.address.starts_with("https://"), "{}", ms.address);
        Self(ms.clone())
    }

    /// The client configuration a security server uses (the library helper, which wraps pki's
    /// security-server client builder).
    fn client_config(&self, tls: &MemberKey) -> Arc<rustls::ClientConfig> {
        management_client_config(
            &self.0,
            &[Certificate::from_der(tls.cert.clone()).unwrap()],
            &tls.key,
        )
        .unwrap()
    }
}

/// POSTs a management request over mutual TLS, authenticating with `tls`. `Err` when the TLS
/// connection is refused.
fn mgmt(s: &Server, pin: &MgmtPin, tls: &MemberKey, body: &[u8]) -> Result<Resp, String> {
    let conn = rustls::ClientConnection::new(
        pin.client_config(tls),
        rustls::pki_types::ServerName::try_from("central-server").unwrap(),
    )
    .map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect(&s.mgmt).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let stream = rustls::StreamOwned::new(conn, tcp);
    exchange(stream, "POST", &s.mgmt, REQUESTS, None, &[], body)
}

const REQUESTS: &str = "/managementservice/v1/requests";

fn conf_client(dir: &Path, store: &str) -> ConfClient<HttpFetcher> {
    let anchor = Anchor::from_bytes(&std::fs::read(dir.join("anchor.json")).unwrap()).unwrap();
    ConfClient::new(
        anchor,
        &dir.join(store),
        HttpFetcher::new(Duration::from_secs(5)),
        Box::new(CmsDirectoryVerifier),
    )
    .unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn request_count(s: &Server, key: &str) -> usize {
    http(
        "GET",
        &s.admin,
        "/api/v1/management-requests",
        Some(key),
        &[],
        b"",
    )
    .json()
    .as_array()
    .unwrap()
    .len()
}

#[test]
fn registration_flow_globalconf_rotation_and_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (_, admin, officer, observer) = Server::setup(dir);
    let mut s = Server::start(dir);

    // Anchor-based client gets version 1 with the applied instance.
    let rt = rt();
    let client = conf_client(dir, "ss-conf");
    assert!(matches!(
        rt.block_on(client.poll()).unwrap(),
        PollOutcome::Updated(_)
    ));
    let conf = client.current().unwrap();
    assert_eq!(conf.shared.members.len(), 3);

    // openssl verifies the directory signature against the anchor certificate.
    let anchor = Anchor::from_bytes(&std::fs::read(dir.join("anchor.json")).unwrap()).unwrap();
    let pem_path = dir.join("anchor-cert.der");
    std::fs::write(&pem_path, anchor.certs().unwrap()[0].clone()).unwrap();
    std::fs::write(dir.join("dir.json"), &conf.directory_bytes).unwrap();
    std::fs::write(dir.join("dir.p7s"), &conf.signature).unwrap();
    if Command::new("openssl").arg("version").output().is_ok() {
        let pem = Command::new("openssl")
            .args(["x509", "-inform", "DER", "-in"])
            .arg(&pem_path)
            .arg("-out")
            .arg(dir.join("anchor-cert.pem"))
            .status()
            .unwrap();
        assert!(pem.success());
        let v = Command::new("openssl")
            .args([
                "cms", "-verify", "-binary", "-inform", "DER", "-purpose", "any", "-in",
            ])
            .arg(dir.join("dir.p7s"))
            .arg("-content")
            .arg(dir.join("dir.json"))
            .arg("-CAfile")
            .arg(dir.join("anchor-cert.pem"))
            .args(["-out", "/dev/null"])
            .output()
            .unwrap();
        assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
    }

    // ETag / If-None-Match / Cache-Control.
    let d = http("GET", &s.public, "/globalconf/directory", None, &[], b"");
    assert_eq!(d.status, 200);
    assert!(
        d.headers
            .contains("cache-control: public, max-age=30, must-revalidate")
    );
    let etag = d
        .headers
        .lines()
        .find_map(|l| l.strip_prefix("etag: "))
        .unwrap()
        .to_owned();
    let nm = http(
        "GET",
        &s.public,
        "/globalconf/directory",
        None,
        &[("If-None-Match", &etag)],
        b"",
    );
    assert_eq!(nm.status, 304);
    let v = conf.directory.version;
    let f = http(
        "GET",
        &s.public,
        &format!("/globalconf/v{v}/shared-params.json"),
        None,
        &[],
        b"",
    );
    assert_eq!(f.status, 200);
    assert!(f.headers.contains("immutable"));
    assert_eq!(
        http(
            "GET",
            &s.public,
            "/globalconf/v999/shared-params.json",
            None,
            &[],
            b""
        )
        .status,
        404
    );
    assert_eq!(
        http("GET", &s.public, "/globalconf/v1/..%2Fkeys", None, &[], b"").status,
        404
    );
    assert_eq!(
        http("GET", &s.public, "/healthz", None, &[], b"").status,
        200
    );
    assert!(
        String::from_utf8_lossy(&http("GET", &s.public, "/metrics", None, &[], b"").body)
            .contains("trustbus_central_globalconf_version")
    );

    // The development CA (with an OCSP responder) and an auth-only CA become approved CAs.
    let pki = Pki::new(dir);
    pki.approve(&s, &admin);

    // Auth certificate registration with proof of possession.
    let owner = pki.sign("DEV/GOV/1000");
    let auth = pki.auth("DEV/GOV/1000/ss1");
    let server = SecurityServerId::from_slash("DEV/GOV/1000/ss1").unwrap();
    let reg = RequestBody::AuthCertRegistration {
        server: server.clone(),
        address: "ss1.finance.dev".into(),
        auth_cert: util::b64(&auth.cert),
    };
    // The management listener is mutual TLS, pinned through private parameters; the TLS client
    // certificate is the authentication certificate being registered.
    let pin = MgmtPin::from_conf(&conf);
    let r = mgmt(
        &s,
        &pin,
        &auth,
        &envelope(&pki, &owner, "DEV/GOV/1000", reg.clone(), Some(&auth)),
    )
    .unwrap();
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["state"], "pending");
    // The stored request records which certificates signed and carried it.
    assert_eq!(
        r.json()["signing_cert_sha256"],
        util::sha256_hex(&owner.cert)
    );
    assert_eq!(r.json()["tls_cert_sha256"], util::sha256_hex(&auth.cert));
    let auth_req = r.json()["id"].as_u64().unwrap();

    // Approval needs a role: none → 401, observer → 403, officer → ok.
    let path = format!("/api/v1/management-requests/{auth_req}/approve");
    assert_eq!(
        http("POST", &s.admin, &path, None, &[], b"").code(),
        "unauthenticated"
    );
    assert_eq!(
        http("POST", &s.admin, &path, Some(&observer), &[], b"").code(),
        "forbidden"
    );
    let ok = http("POST", &s.admin, &path, Some(&officer), &[], b"");
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
    assert_eq!(
        http("POST", &s.admin, &path, Some(&officer), &[], b"").code(),
        "invalid_state"
    );

    // Bad management input and every trust decision: each refused with a stable code, nothing
    // stored.
    let before = request_count(&s, &observer);
    let self_signed = self_signed_key("DEV/GOV/1000 self-signed");
    let other_member = pki.sign("DEV/GOV/2000");
    let other_server = pki.auth("DEV/GOV/1000/ss2");
    let unknown = pki.sign("DEV/GOV/9999");
    let unknown_auth = pki.auth("DEV/GOV/9999/x");
    let from_auth_only = Pki::issue_from(&pki.auth_only, "DEV/GOV/1000", "Finance", None);
    let revoked = pki.sign("DEV/GOV/1000");
    pki.ca
        .revoke(
            &Certificate::from_der(revoked.cert.clone()).unwrap(),
            CrlReason::KeyCompromise,
        )
        .unwrap();
    let addr_change = |address: &str| RequestBody::AddressChange {
        server: server.clone(),
        address: address.into(),
    };
    let good = || envelope(&pki, &owner, "DEV/GOV/1000", addr_change("ok"), None);
    let cases: Vec<(&str, &MemberKey, Vec<u8>, u16, &str)> = vec![
        (
            "not JSON",
            &auth,
            b"{not json".to_vec(),
            400,
            "malformed_json",
        ),
        (
            "bad base64",
            &auth,
            br#"{"request":"!!","signature":"","signature_algorithm":"","signing_cert":""}"#
                .to_vec(),
            400,
            "bad_request",
        ),
        (
            "authentication certificate already registered",
            &auth,
            envelope(&pki, &owner, "DEV/GOV/1000", reg.clone(), Some(&auth)),
            409,
            "duplicate_registration",
        ),
        (
            "no proof of possession",
            &auth,
            envelope(&pki, &owner, "DEV/GOV/1000", reg.clone(), None),
            400,
            "invalid_signature",
        ),
        (
            "proof of possession by another key",
            &auth,
            envelope_with(
                envelope(&pki, &owner, "DEV/GOV/1000", reg, Some(&auth)),
                "auth_signature",
                Some(util::b64(&owner.key.sign(b"other bytes").unwrap())),
            ),
            400,
            "invalid_signature",
        ),
        (
            "unknown member (with a valid certificate)",
            &unknown_auth,
            envelope(
                &pki,
                &unknown,
                "DEV/GOV/9999",
                RequestBody::AuthCertRegistration {
                    server: SecurityServerId::from_slash("DEV/GOV/9999/x").unwrap(),
                    address: "x".into(),
                    auth_cert: util::b64(&unknown_auth.cert),
                },
                Some(&unknown_auth),
            ),
            422,
            "unknown_member",
        ),
        (
            "another member may not change this server",
            &auth,
            envelope(
                &pki,
                &other_member,
                "DEV/GOV/2000",
                addr_change("evil"),
                None,
            ),
            403,
            "not_allowed",
        ),
        (
            "self-signed signing certificate",
            &auth,
            envelope(&pki, &self_signed, "DEV/GOV/1000", addr_change("x"), None),
            403,
            "untrusted_certificate",
        ),
        (
            "signing certificate from an auth-only CA",
            &auth,
            envelope(
                &pki,
                &from_auth_only,
                "DEV/GOV/1000",
                addr_change("x"),
                None,
            ),
            403,
            "untrusted_certificate",
        ),
        (
            "authentication certificate used as signing certificate",
            &auth,
            envelope(&pki, &auth, "DEV/GOV/1000", addr_change("x"), None),
            403,
            "untrusted_certificate",
        ),
        (
            "signing certificate of another member",
            &auth,
            envelope(&pki, &other_member, "DEV/GOV/1000", addr_change("x"), None),
            403,
            "certificate_member_mismatch",
        ),
        (
            "authentication certificate of another server",
            &auth,
            envelope(
                &pki,
                &owner,
                "DEV/GOV/1000",
                RequestBody::AuthCertRegistration {
                    server: server.clone(),
                    address: "x".into(),
                    auth_cert: util::b64(&other_server.cert),
                },
                Some(&other_server),
            ),
            403,
            "certificate_member_mismatch",
        ),
        (
            "no OCSP response although the CA has a responder",
            &auth,
            envelope_with(good(), "ocsp_response", None),
            400,
            "missing_ocsp_response",
        ),
        (
            "stale OCSP response",
            &auth,
            envelope_with(
                good(),
                "ocsp_response",
                Some(util::b64(&pki.ocsp_at(
                    &owner.cert,
                    time::OffsetDateTime::now_utc() - time::Duration::hours(2),
                ))),
            ),
            400,
            "stale_ocsp",
        ),
        (
            "OCSP response about another certificate",
            &auth,
            envelope_with(
                good(),
                "ocsp_response",
                Some(util::b64(&pki.ocsp(&other_member.cert))),
            ),
            400,
            "invalid_ocsp_response",
        ),
        (
            "revoked signing certificate",
            &auth,
            envelope(&pki, &revoked, "DEV/GOV/1000", addr_change("x"), None),
            403,
            "revoked_certificate",
        ),
        (
            "TLS certificate neither being registered nor registered for the server",
            &other_server,
            good(),
            403,
            "tls_certificate_mismatch",
        ),
        (
            "wrong signature",
            &auth,
            envelope_with(
                good(),
                "signature",
                Some(util::b64(&owner.key.sign(b"something else").unwrap())),
            ),
            400,
            "invalid_signature",
        ),
    ];
    for (what, tls, body, status, code) in cases {
        let r = mgmt(&s, &pin, tls, &body).unwrap();
        assert_eq!(
            (r.status, r.code().as_str()),
            (status, code),
            "{what}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
    // TLS itself refuses client certificates that do not chain to an approved CA as
    // authentication certificates: a self-signed one, and a signing certificate.
    assert!(mgmt(&s, &pin, &self_signed, &good()).is_err());
    assert!(mgmt(&s, &pin, &owner, &good()).is_err());
    let refused_counted = (0..40).any(|_| {
        let m = http("GET", &s.public, "/metrics", None, &[], b"");
        let text = String::from_utf8_lossy(&m.body).into_owned();
        let counted = text
            .contains("trustbus_central_tls_handshake_failures_total{listener=\"management\"} 2");
        if !counted {
            std::thread::sleep(Duration::from_millis(50));
        }
        counted
    });
    assert!(refused_counted, "two refused handshakes are counted");

    // openssl, as an independent TLS client: with the registered authentication certificate it
    // gets an HTTP answer (verifying the server against the published CA); without a client
    // certificate it gets none.
    if Command::new("openssl").arg("version").output().is_ok() {
        std::fs::write(
            dir.join("ss1.pem"),
            Certificate::from_der(auth.cert.clone()).unwrap().to_pem(),
        )
        .unwrap();
        std::fs::write(dir.join("ss1.key"), auth.key.to_pkcs8_pem()).unwrap();
        let ca = util::unb64("ca", pin.0.tls_ca_cert.as_deref().unwrap()).unwrap();
        std::fs::write(
            dir.join("mgmt-ca.pem"),
            Certificate::from_der(ca).unwrap().to_pem(),
        )
        .unwrap();
        let s_client = |with_cert: bool| {
            let mut args = vec![
                "s_client".to_owned(),
                "-connect".into(),
                s.mgmt.clone(),
                "-tls1_3".into(),
                "-quiet".into(),
                "-verify_return_error".into(),
                "-CAfile".into(),
                "mgmt-ca.pem".into(),
            ];
            if with_cert {
                args.extend(["-cert", "ss1.pem", "-key", "ss1.key"].map(str::to_owned));
            }
            let mut child = Command::new("openssl")
                .args(&args)
                .current_dir(dir)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let body = b"{oops";
            let req = format!(
                "POST {REQUESTS} HTTP/1.1\r\nHost: cs\r\nConnection: close\r\n\
                 Content-Length: {}\r\n\r\n{{oops",
                body.len()
            );
            child
                .stdin
                .take()
                .unwrap()
                .write_all(req.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let answer = s_client(true);
        assert!(
            answer.starts_with("HTTP/1.1 400") && answer.contains("malformed_json"),
            "{answer}"
        );
        assert!(!s_client(false).contains("HTTP/1.1"));
    }
    assert_eq!(request_count(&s, &observer), before);

    // Client registration of a new subsystem, approved.
    let creg = RequestBody::ClientRegistration {
        server: server.clone(),
        client: ClientId::from_slash("DEV/GOV/1000/budget").unwrap(),
        subsystem_name: Some("Budget Office".into()),
    };
    let r = mgmt(
        &s,
        &pin,
        &auth,
        &envelope(&pki, &owner, "DEV/GOV/1000", creg, None),
    )
    .unwrap();
    assert_eq!(r.status, 201);
    let id = r.json()["id"].as_u64().unwrap();
    let ok = http(
        "POST",
        &s.admin,
        &format!("/api/v1/management-requests/{id}/approve"),
        Some(&officer),
        &[],
        b"",
    );
    assert_eq!(ok.status, 200);
    // Address change is auto-approved by policy.
    let r = mgmt(
        &s,
        &pin,
        &auth,
        &envelope(
            &pki,
            &owner,
            "DEV/GOV/1000",
            RequestBody::AddressChange {
                server: server.clone(),
                address: "ss1.new.dev".into(),
            },
            None,
        ),
    )
    .unwrap();
    assert_eq!(r.json()["state"], "approved");

    // The next configuration has the server, its auth cert and the client.
    assert!(matches!(
        rt.block_on(client.poll()).unwrap(),
        PollOutcome::Updated(_)
    ));
    let conf = client.current().unwrap();
    let ss = conf
        .shared
        .security_servers
        .iter()
        .find(|x| x.id == server)
        .unwrap();
    assert_eq!(ss.auth_cert_sha256, vec![util::sha256_hex(&auth.cert)]);
    assert_eq!(ss.address, "ss1.new.dev");
    assert_eq!(ss.clients[0].id.to_slash(), "DEV/GOV/1000/budget");
    let owners = conf
        .shared
        .global_groups
        .iter()
        .find(|g| g.code == "security-server-owners")
        .unwrap();
    assert_eq!(owners.members[0].to_slash(), "DEV/GOV/1000");
    let gov = conf
        .shared
        .members
        .iter()
        .find(|m| m.id.to_slash() == "DEV/GOV/1000")
        .unwrap();
    assert!(
        gov.subsystems
            .iter()
            .any(|x| x.name.as_deref() == Some("Budget Office"))
    );

    // Rotation: announce, client follows, activate, client follows without a new anchor.
    assert_eq!(
        http(
            "POST",
            &s.admin,
            "/api/v1/signing-keys/next",
            Some(&officer),
            &[],
            b""
        )
        .code(),
        "forbidden"
    );
    assert_eq!(
        http(
            "POST",
            &s.admin,
            "/api/v1/signing-keys/next",
            Some(&admin),
            &[],
            b""
        )
        .status,
        200
    );
    rt.block_on(client.poll()).unwrap();
    assert_eq!(
        client
            .current()
            .unwrap()
            .shared
            .configuration_signing_certs
            .len(),
        2
    );
    assert_eq!(
        http(
            "POST",
            &s.admin,
            "/api/v1/signing-keys/activate",
            Some(&admin),
            &[],
            b""
        )
        .status,
        200
    );
    assert!(matches!(
        rt.block_on(client.poll()).unwrap(),
        PollOutcome::Updated(_)
    ));
    let rotated = client.current().unwrap().directory.version;
    // A client that only has the old anchor and no history rejects the new signer.
    let fresh = conf_client(dir, "fresh-conf");
    assert_eq!(
        rt.block_on(fresh.poll()).unwrap_err(),
        ConfClientError::UnknownSigner
    );

    // The audit trail has successes and refusals.
    let audit = http("GET", &s.admin, "/api/v1/audit", Some(&observer), &[], b"").json();
    let entries = audit.as_array().unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e["action"] == "management_request.approve" && e["result"] == "ok")
    );
    assert!(entries.iter().any(|e| e["result"] == "forbidden"));
    assert!(
        entries
            .iter()
            .any(|e| e["result"] == "unauthenticated" && e["actor"] == "anonymous")
    );
    assert!(
        entries
            .iter()
            .any(|e| e["actor"] == "management:unverified" && e["result"] == "invalid_signature")
    );

    // Restart: nothing acknowledged is lost and the version keeps increasing.
    let requests = request_count(&s, &observer);
    s.stop();
    let s = Server::start(&s.dir.clone());
    assert_eq!(request_count(&s, &observer), requests);
    let server_json = http(
        "GET",
        &s.admin,
        "/api/v1/security-servers/DEV/GOV/1000/ss1",
        Some(&observer),
        &[],
        b"",
    )
    .json();
    assert_eq!(server_json["address"], "ss1.new.dev");
    assert!(matches!(rt.block_on(client.poll()).unwrap(), PollOutcome::Updated(v) if v > rotated));
}

/// method, path, body, API key, (unused), expected status, expected code
type AdminCase<'a> = (
    &'a str,
    &'a str,
    &'a str,
    Option<&'a str>,
    &'a str,
    u16,
    &'a str,
);

#[test]
fn admin_bad_input_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (_, admin, officer, observer) = Server::setup(dir);
    let s = Server::start(dir);
    let members = || {
        http(
            "GET",
            &s.admin,
            "/api/v1/members",
            Some(&observer),
            &[],
            b"",
        )
        .body
    };
    let status = || {
        http("GET", &s.admin, "/api/v1/status", Some(&observer), &[], b"").json()["registry_revision"].clone()
    };
    let (m0, r0) = (members(), status());
    // A leaf certificate (the configuration-signing certificate) is not a CA.
    let anchor = Anchor::from_bytes(&std::fs::read(dir.join("anchor.json")).unwrap()).unwrap();
    let leaf_ca =
        json!({"name": "leaf", "roots": [util::b64(&anchor.certs().unwrap()[0])]}).to_string();
    let cases: Vec<AdminCase> = vec![
        (
            "POST",
            "/api/v1/cas",
            &leaf_ca,
            Some(&admin),
            "",
            400,
            "bad_request",
        ),
        (
            "POST",
            "/api/v1/members",
            "{oops",
            Some(&officer),
            "",
            400,
            "malformed_json",
        ),
        (
            "POST",
            "/api/v1/members",
            r#"{"id":"DEV/GOV/1000","name":"dup"}"#,
            Some(&officer),
            "",
            409,
            "already_exists",
        ),
        (
            "POST",
            "/api/v1/members",
            r#"{"id":"DEV/XXX/1","name":"x"}"#,
            Some(&officer),
            "",
            422,
            "unknown_member_class",
        ),
        (
            "POST",
            "/api/v1/members",
            r#"{"id":"EE/GOV/1","name":"x"}"#,
            Some(&officer),
            "",
            400,
            "bad_request",
        ),
        (
            "POST",
            "/api/v1/members",
            r#"{"id":"DEV/GOV/1","name":"x","extra":1}"#,
            Some(&officer),
            "",
            400,
            "malformed_json",
        ),
        (
            "POST",
            "/api/v1/members",
            r#"{"id":"DEV/GOV/1","name":"x"}"#,
            Some(&observer),
            "",
            403,
            "forbidden",
        ),
        (
            "POST",
            "/api/v1/members",
            r#"{"id":"DEV/GOV/1","name":"x"}"#,
            None,
            "",
            401,
            "unauthenticated",
        ),
        (
            "POST",
            "/api/v1/members",
            r#"{"id":"DEV/GOV/1","name":"x"}"#,
            Some("tbk_nope_nope"),
            "",
            401,
            "unauthenticated",
        ),
        (
            "POST",
            "/api/v1/subsystems",
            r#"{"id":"DEV/GOV/9999/sub"}"#,
            Some(&officer),
            "",
            422,
            "unknown_member",
        ),
        (
            "DELETE",
            "/api/v1/members/DEV/GOV/4242",
            "",
            Some(&officer),
            "",
            404,
            "not_found",
        ),
        (
            "POST",
            "/api/v1/global-groups",
            r#"{"code":"g","members":["DEV/GOV/9999"]}"#,
            Some(&officer),
            "",
            422,
            "unknown_member",
        ),
        (
            "PUT",
            "/api/v1/settings",
            r#"{"ocsp_freshness_seconds":10,"timestamping_interval_seconds":60,"configuration_validity_seconds":600}"#,
            Some(&admin),
            "",
            400,
            "bad_request",
        ),
        (
            "PUT",
            "/api/v1/settings",
            r#"{"ocsp_freshness_seconds":3600}"#,
            Some(&officer),
            "",
            403,
            "forbidden",
        ),
        (
            "POST",
            "/api/v1/cas",
            r#"{"name":"x","roots":["AAAA"]}"#,
            Some(&admin),
            "",
            400,
            "bad_request",
        ),
        (
            "POST",
            "/api/v1/tsas",
            r#"{"name":"x","url":"http://t","cert":"%%%"}"#,
            Some(&admin),
            "",
            400,
            "bad_request",
        ),
        (
            "POST",
            "/api/v1/oidc-issuers",
            r#"{"issuer":"https://idp","audiences":[]}"#,
            Some(&admin),
            "",
            400,
            "bad_request",
        ),
        (
            "POST",
            "/api/v1/management-requests/77/approve",
            "",
            Some(&officer),
            "",
            404,
            "not_found",
        ),
        (
            "POST",
            "/api/v1/management-requests/x/approve",
            "",
            Some(&officer),
            "",
            400,
            "bad_request",
        ),
        (
            "POST",
            "/api/v1/api-keys",
            r#"{"role":"emperor"}"#,
            Some(&admin),
            "",
            400,
            "malformed_json",
        ),
        (
            "POST",
            "/api/v1/signing-keys/activate",
            "",
            Some(&admin),
            "",
            409,
            "invalid_state",
        ),
        (
            "DELETE",
            "/api/v1/member-classes/GOV",
            "",
            Some(&officer),
            "",
            409,
            "in_use",
        ),
        (
            "GET",
            "/api/v1/nothing-here",
            "",
            Some(&observer),
            "",
            404,
            "not_found",
        ),
        (
            "GET",
            "/api/v1/audit?after=abc",
            "",
            Some(&observer),
            "",
            400,
            "bad_request",
        ),
    ];
    for (method, path, body, key, _, status, code) in cases {
        let r = http(method, &s.admin, path, key, &[], body.as_bytes());
        assert_eq!(
            (r.status, r.code().as_str()),
            (status, code),
            "{method} {path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert!(
            r.json()["correlation_id"]
                .as_str()
                .is_some_and(|c| !c.is_empty())
        );
    }
    assert_eq!(members(), m0);
    assert_eq!(status(), r0);

    // A good change works and shows up in the next configuration.
    let r = http(
        "POST",
        &s.admin,
        "/api/v1/members",
        Some(&officer),
        &[],
        br#"{"id":"DEV/COM/555","name":"New Co"}"#,
    );
    assert_eq!(r.status, 200);
    let client = conf_client(dir, "conf");
    rt().block_on(client.poll()).unwrap();
    assert!(
        client
            .current()
            .unwrap()
            .shared
            .members
            .iter()
            .any(|m| m.name == "New Co")
    );

    // The OpenAPI document lists every admin route.
    let doc = http("GET", &s.admin, "/api/openapi.json", None, &[], b"").json();
    for p in [
        "/api/v1/members",
        "/api/v1/management-requests/{id}/approve",
        "/api/v1/audit",
        "/api/v1/signing-keys/next",
        "/globalconf/directory",
    ] {
        assert!(
            doc["paths"].get(p).is_some(),
            "{p} missing from openapi.json"
        );
    }
}

/// A CA and a server certificate for 127.0.0.1, as PEM files in `dir`; returns the CA.
fn https_files(dir: &Path, name: &str) -> Certificate {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, format!("{name} test CA"));
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let issuer = rcgen::CertifiedIssuer::self_signed(ca, ca_key).unwrap();
    let key = KeyPair::generate(KeyKind::EcdsaP256).unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    let cert = leaf
        .signed_by(&rcgen::KeyPair::try_from(key.pkcs8_der()).unwrap(), &issuer)
        .unwrap();
    std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{name}.key")), key.to_pkcs8_pem()).unwrap();
    Certificate::from_der(issuer.der().to_vec()).unwrap()
}

/// GET over HTTPS trusting `ca`.
fn https_get(addr: &str, ca: &Certificate, path: &str) -> Resp {
    let cfg = trustbus_pki::tls::https_client_config(std::slice::from_ref(ca)).unwrap();
    let conn = rustls::ClientConnection::new(
        cfg,
        rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap(),
    )
    .unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    exchange(
        rustls::StreamOwned::new(conn, tcp),
        "GET",
        addr,
        path,
        None,
        &[],
        b"",
    )
    .unwrap()
}

#[test]
fn pin_and_https_listeners() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let d = dir.to_str().unwrap();

    // Without the PIN variable, init refuses and writes nothing.
    let out = Command::new(BIN)
        .args(["init", "--dir", d, "--instance", "DEV"])
        .env_remove(PIN_ENV)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(PIN_ENV),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dir.join("central-server.toml").exists());

    cli(&["init", "--dir", d, "--instance", "DEV"]);
    let key_file = std::fs::read_to_string(dir.join("data/keys/conf-signing-1.key.json")).unwrap();
    assert!(key_file.contains("aes-256-gcm"));
    assert!(!key_file.contains(PIN));

    let admin_ca = https_files(dir, "admin");
    let public_ca = https_files(dir, "public");
    let (p, a, m) = (free_port(), free_port(), free_port());
    std::fs::write(
        dir.join("central-server.toml"),
        format!(
            "instance = \"DEV\"\ndata_dir = \"data\"\n\
             [globalconf]\nlisten = \"127.0.0.1:{p}\"\n\
             tls_cert_file = \"public.pem\"\ntls_key_file = \"public.key\"\n\
             [admin]\nlisten = \"127.0.0.1:{a}\"\n\
             tls_cert_file = \"admin.pem\"\ntls_key_file = \"admin.key\"\n\
             [management]\nlisten = \"127.0.0.1:{m}\"\n"
        ),
    )
    .unwrap();
    let cfg = dir.join("central-server.toml");
    let c = cfg.to_str().unwrap();

    // A wrong PIN stops `serve` with a configuration error.
    let out = Command::new(BIN)
        .args(["serve", "--config", c])
        .env(PIN_ENV, "not the PIN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("PIN is incorrect") && err.contains("configuration_error"),
        "{err}"
    );
    assert!(!dir.join("data/keys/management-tls.key.json").exists());

    // The anchor points at HTTPS; both optional listeners speak it.
    cli(&[
        "anchor",
        "--out",
        dir.join("anchor.json").to_str().unwrap(),
        "--config",
        c,
    ]);
    let anchor = Anchor::from_bytes(&std::fs::read(dir.join("anchor.json")).unwrap()).unwrap();
    let s = Server::start(dir);
    assert_eq!(
        serde_json::to_value(&anchor).unwrap()["download_urls"][0],
        format!("https://{}/globalconf", s.public)
    );
    let doc = https_get(&s.admin, &admin_ca, "/api/openapi.json");
    assert_eq!(doc.status, 200);
    assert!(doc.json()["paths"].get("/api/v1/members").is_some());
    assert_eq!(https_get(&s.public, &public_ca, "/healthz").status, 200);
    // Plain HTTP on an HTTPS listener gets no HTTP answer.
    let plain = TcpStream::connect(&s.admin).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert!(exchange(plain, "GET", &s.admin, "/api/openapi.json", None, &[], b"").is_err());

    // The configuration client downloads over HTTPS with the CA as root, and refuses HTTPS
    // without roots (no silent downgrade) or with the wrong root.
    let rt = rt();
    let fetcher = HttpFetcher::with_tls_roots(Duration::from_secs(5), &[public_ca]).unwrap();
    let client = ConfClient::new(
        anchor.clone(),
        &dir.join("ss-conf"),
        fetcher,
        Box::new(CmsDirectoryVerifier),
    )
    .unwrap();
    assert!(matches!(
        rt.block_on(client.poll()).unwrap(),
        PollOutcome::Updated(_)
    ));
    let conf = client.current().unwrap();
    MgmtPin::from_conf(&conf);
    // The next poll over HTTPS revalidates with If-None-Match and gets 304.
    assert!(matches!(
        rt.block_on(client.poll()).unwrap(),
        PollOutcome::Unchanged(_)
    ));
    for fetcher in [
        HttpFetcher::new(Duration::from_secs(5)),
        HttpFetcher::with_tls_roots(Duration::from_secs(5), &[admin_ca]).unwrap(),
    ] {
        let c = ConfClient::new(
            anchor.clone(),
            &dir.join(format!("refused-{}", free_port())),
            fetcher,
            Box::new(CmsDirectoryVerifier),
        )
        .unwrap();
        assert!(matches!(
            rt.block_on(c.poll()),
            Err(ConfClientError::Download(_))
        ));
    }
}
