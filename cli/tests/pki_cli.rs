//! `trustbus pki` end to end: init, issue (generated key and CSR), revoke, serve.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

fn trustbus(args: &[&str], cwd: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_trustbus"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap();
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), s)
}

fn openssl(args: &[&str], cwd: &Path) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap();
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), s)
}

#[test]
fn init_issue_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ok, out) = trustbus(&["pki", "init", "--dir", "ca", "--instance", "DEV"], d);
    assert!(ok, "{out}");
    let (ok, out) = trustbus(&["pki", "init", "--dir", "ca", "--instance", "DEV"], d);
    assert!(!ok && out.contains("already holds"), "{out}");
    let (ok, out) = trustbus(
        &[
            "pki",
            "issue",
            "--dir",
            "ca",
            "--profile",
            "sign",
            "--member",
            "DEV/GOV/1234",
            "--name",
            "Tax Board",
            "--out",
            "sign",
        ],
        d,
    );
    assert!(ok, "{out}");
    assert!(d.join("sign.key").exists());
    let (ok, out) = openssl(
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ss.key",
            "-out",
            "ss.csr",
            "-subj",
            "/CN=ignored",
        ],
        d,
    );
    assert!(ok, "{out}");
    let (ok, out) = trustbus(
        &[
            "pki",
            "issue",
            "--dir",
            "ca",
            "--profile",
            "auth",
            "--member",
            "DEV/GOV/1234",
            "--server",
            "ss1",
            "--csr",
            "ss.csr",
            "--out",
            "ss1",
        ],
        d,
    );
    assert!(ok, "{out}");
    assert!(!d.join("ss1.key").exists());
    let (ok, out) = openssl(
        &[
            "verify",
            "-CAfile",
            "ca/ca.pem",
            "-purpose",
            "sslclient",
            "ss1.pem",
        ],
        d,
    );
    assert!(ok, "{out}");
    let (ok, out) = openssl(&["x509", "-in", "ss1.pem", "-noout", "-subject"], d);
    assert!(
        ok && out.contains("CN = ss1") && out.contains("businessCategory = GOV"),
        "{out}"
    );
    // Refusals.
    let (ok, out) = trustbus(
        &[
            "pki",
            "issue",
            "--dir",
            "ca",
            "--profile",
            "auth",
            "--member",
            "DEV/GOV/1234",
            "--out",
            "x",
        ],
        d,
    );
    assert!(!ok && out.contains("server code"), "{out}");
    let (ok, out) = trustbus(
        &[
            "pki",
            "issue",
            "--dir",
            "ca",
            "--profile",
            "sign",
            "--member",
            "DEV/GOV",
            "--out",
            "x",
        ],
        d,
    );
    assert!(!ok && out.contains("invalid member"), "{out}");
    let (ok, out) = trustbus(
        &[
            "pki",
            "revoke",
            "--dir",
            "ca",
            "--cert",
            "sign.pem",
            "--reason",
            "keyCompromise",
        ],
        d,
    );
    assert!(ok, "{out}");
    let index = std::fs::read_to_string(d.join("ca/index.json")).unwrap();
    assert!(
        index.contains("\"revoked\"") && index.contains("keyCompromise"),
        "{index}"
    );
    let (ok, out) = trustbus(&["pki", "revoke", "--dir", "ca", "--cert", "sign.pem"], d);
    assert!(!ok && out.contains("already revoked"), "{out}");
}

fn http_get(addr: &str, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn serve_answers_ocsp_tsa_health_and_ca_to_openssl() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(trustbus(&["pki", "init", "--dir", "ca", "--instance", "DEV"], d).0);
    let (ok, out) = trustbus(
        &[
            "pki",
            "issue",
            "--dir",
            "ca",
            "--profile",
            "sign",
            "--member",
            "DEV/GOV/1234",
            "--name",
            "Tax Board",
            "--out",
            "sign",
        ],
        d,
    );
    assert!(ok, "{out}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_trustbus"))
        .args(["pki", "serve", "--dir", "ca", "--listen", "127.0.0.1:0"])
        .current_dir(d)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut addr = None;
    for line in lines.by_ref().take(10) {
        let line = line.unwrap();
        if let Some(rest) = line.split("GET  http://").nth(1)
            && line.contains("/healthz")
        {
            addr = rest.strip_suffix("/healthz").map(str::to_owned);
            break;
        }
    }
    let addr = addr.expect("serve printed its address");
    let health = http_get(&addr, "/healthz");
    let ca = http_get(&addr, "/ca.pem");
    let url = format!("http://{addr}/ocsp");
    let ocsp = |d: &Path| {
        openssl(
            &[
                "ocsp",
                "-issuer",
                "ca/ca.pem",
                "-cert",
                "sign.pem",
                "-url",
                &url,
                "-CAfile",
                "ca/ca.pem",
                "-no_nonce",
            ],
            d,
        )
    };
    let (ok_good, good) = ocsp(d);
    // Revoked by another process: the running responder must see it on the next request.
    let (ok, out) = trustbus(
        &[
            "pki",
            "revoke",
            "--dir",
            "ca",
            "--cert",
            "sign.pem",
            "--reason",
            "keyCompromise",
        ],
        d,
    );
    assert!(ok, "{out}");
    let (ok_revoked, revoked) = ocsp(d);
    std::fs::write(d.join("data.txt"), b"exchange 42").unwrap();
    let (ok_q, q) = openssl(
        &[
            "ts", "-query", "-data", "data.txt", "-sha256", "-cert", "-out", "q.tsq",
        ],
        d,
    );
    assert!(ok_q, "{q}");
    let (ok_post, post) = {
        let out = Command::new("curl")
            .args([
                "-sS",
                "--fail",
                "-H",
                "Content-Type: application/timestamp-query",
                "--data-binary",
                "@q.tsq",
                "-o",
                "r.tsr",
                &format!("http://{addr}/tsa"),
            ])
            .current_dir(d)
            .output();
        match out {
            Ok(o) => (
                o.status.success(),
                String::from_utf8_lossy(&o.stderr).into_owned(),
            ),
            Err(e) => (false, format!("curl: {e}")),
        }
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        health.starts_with("HTTP/1.1 200") && health.ends_with("ok\n"),
        "{health}"
    );
    assert!(ca.contains("-----BEGIN CERTIFICATE-----"), "{ca}");
    assert!(
        ok_good && good.contains("sign.pem: good") && good.contains("Response verify OK"),
        "{good}"
    );
    assert!(
        ok_revoked && revoked.contains("sign.pem: revoked"),
        "{revoked}"
    );
    assert!(revoked.contains("Reason: keyCompromise"), "{revoked}");
    assert!(ok_post, "{post}");
    let (ok_v, v) = openssl(
        &[
            "ts",
            "-verify",
            "-data",
            "data.txt",
            "-in",
            "r.tsr",
            "-CAfile",
            "ca/ca.pem",
            "-untrusted",
            "ca/tsa.pem",
        ],
        d,
    );
    assert!(ok_v && v.contains("Verification: OK"), "{v}");
    std::fs::write(d.join("other.txt"), b"exchange 43").unwrap();
    let (ok_v, v) = openssl(
        &[
            "ts",
            "-verify",
            "-data",
            "other.txt",
            "-in",
            "r.tsr",
            "-CAfile",
            "ca/ca.pem",
            "-untrusted",
            "ca/tsa.pem",
        ],
        d,
    );
    assert!(!ok_v, "a timestamp over other data must not verify: {v}");
}

/// docs/pki.md §6, run as written with bash in an empty directory: a CA, a signing
/// certificate, an authentication certificate for an openssl CSR, openssl's checks, revocation.
#[test]
fn pki_doc_commands_work_as_written() {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/pki.md"))
        .unwrap();
    let marker = "<!-- pki-doc-test: commands -->\n```sh\n";
    let start = doc.find(marker).expect("marker in docs/pki.md") + marker.len();
    let end = start + doc[start..].find("\n```").unwrap();
    let block = &doc[start..end];
    let dir = tempfile::tempdir().unwrap();
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_trustbus")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", block])
        .env("PATH", path)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{block}\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("ss1.pem: OK\n"), "{stdout}");
    assert!(stdout.contains("sign1.pem: OK\n"), "{stdout}");
    // The CSR said CN=ignored: the subject comes from --member/--server/--name.
    assert!(
        stdout.contains(
            "subject=C = DEV, O = Tax Board, businessCategory = GOV, serialNumber = 1234, CN = ss1\n"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("): keyCompromise\n"), "{stdout}");
    let index = std::fs::read_to_string(dir.path().join("devca/index.json")).unwrap();
    assert!(index.contains("keyCompromise"), "{index}");
    for f in ["sign1.pem", "sign1.key", "ss1.pem"] {
        assert!(dir.path().join(f).is_file(), "{f} written");
    }
}
