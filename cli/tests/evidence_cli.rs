//! `trustbus verify` and `trustbus verify-log` on evidence produced by the message log, and the
//! recipes of docs/auditor-guide.md run exactly as written (openssl, unzip, sha256sum, python3).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use trustbus_security_server::messagelog::evidence;
use trustbus_security_server::messagelog::exchange::{Direction, Side};
use trustbus_security_server::messagelog::testkit::{
    MessageSpec, Pki, TsaServer, exchange_message,
};
use trustbus_security_server::messagelog::timestamp::{TimestampConfig, Timestamper};
use trustbus_security_server::messagelog::{MessageLog, MessageLogConfig, verifyconf, zipfile};
use uuid::Uuid;

struct Produced {
    dir: tempfile::TempDir,
    request: PathBuf,
    response: PathBuf,
    conf_zip: PathBuf,
    log_dir: PathBuf,
}

/// Logs one exchange (request signed by the client, response by the provider), timestamps it
/// through a TSA over HTTP, closes the log and writes both containers and the verification
/// configuration zip.
async fn produce() -> Produced {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(&dir.path().join("ca")).unwrap();
    let tsa = TsaServer::start(pki.tsa.clone()).await.unwrap();
    let log_dir = dir.path().join("log");
    let log = Arc::new(MessageLog::open(MessageLogConfig::new(&log_dir)).unwrap());
    let rid = Uuid::new_v4();
    let mut ids = Vec::new();
    for (direction, signer, body) in [
        (Direction::Request, &pki.client, None),
        (
            Direction::Response,
            &pki.provider,
            Some(b"{\"ok\":true}".to_vec()),
        ),
    ] {
        let rec = exchange_message(
            &pki,
            MessageSpec {
                side: Side::Consumer,
                direction,
                request_id: rid,
                signer,
                ocsp: None,
                body,
            },
        )
        .unwrap();
        ids.push(log.append(rec).await.unwrap());
    }
    log.wait_indexed(ids[1]).await.unwrap();
    let ts = Timestamper::new(
        log.store().clone(),
        TimestampConfig::new(vec![pki.tsa_endpoint(&tsa.url)], Duration::from_secs(60)),
    );
    assert_eq!(ts.run_once().await.unwrap(), 2);
    let request = dir.path().join("request.asice");
    let response = dir.path().join("response.asice");
    std::fs::write(
        &request,
        evidence::record_container(log.store().as_ref(), ids[0], None).unwrap(),
    )
    .unwrap();
    std::fs::write(
        &response,
        evidence::record_container(log.store().as_ref(), ids[1], None).unwrap(),
    )
    .unwrap();
    let conf_zip = dir.path().join("verificationconf.zip");
    let files = vec![("shared-params.json".to_owned(), pki.shared_params(&tsa.url))];
    std::fs::write(&conf_zip, verifyconf::export_zip(&files).unwrap()).unwrap();
    drop(ts);
    Arc::try_unwrap(log).unwrap().close().await.unwrap();
    Produced {
        dir,
        request,
        response,
        conf_zip,
        log_dir,
    }
}

fn trustbus(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trustbus"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The ```sh block that follows `<!-- auditor-guide-test: NAME -->` in the guide.
fn guide_block(name: &str) -> String {
    let guide = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/auditor-guide.md"),
    )
    .unwrap();
    let marker = format!("<!-- auditor-guide-test: {name} -->");
    let after = &guide[guide.find(&marker).expect("marker in the guide") + marker.len()..];
    let start = after.find("```sh\n").unwrap() + 6;
    let end = after[start..].find("\n```").unwrap();
    after[start..start + end].to_owned()
}

/// Runs a guide block with bash in `cwd`, with our `trustbus` first on the PATH.
fn run_block(block: &str, cwd: &Path) -> Output {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_trustbus")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new("bash")
        .args(["-euo", "pipefail", "-c", block])
        .env("PATH", path)
        .current_dir(cwd)
        .output()
        .unwrap()
}

/// A work directory as the guide expects it: `evidence.asice` and `verificationconf.zip`,
/// unzipped into `verificationconf/`.
fn workdir(p: &Produced, name: &str, container: &[u8]) -> PathBuf {
    let w = p.dir.path().join(name);
    std::fs::create_dir_all(&w).unwrap();
    std::fs::write(w.join("evidence.asice"), container).unwrap();
    std::fs::copy(&p.conf_zip, w.join("verificationconf.zip")).unwrap();
    let o = Command::new("unzip")
        .args(["-qo", "verificationconf.zip", "-d", "verificationconf"])
        .current_dir(&w)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    w
}

#[tokio::test]
async fn verify_reports_valid_and_names_the_first_failure() {
    let p = produce().await;
    let conf = p.conf_zip.to_str().unwrap();
    for c in [&p.request, &p.response] {
        let o = trustbus(
            &["verify", c.to_str().unwrap(), "--conf", conf],
            p.dir.path(),
        );
        assert!(o.status.success(), "{}", text(&o));
        assert!(
            text(&o).contains("VALID: every check passed"),
            "{}",
            text(&o)
        );
    }
    let o = trustbus(
        &[
            "verify",
            p.request.to_str().unwrap(),
            "--conf",
            conf,
            "--json",
        ],
        p.dir.path(),
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["valid"], true);
    assert_eq!(v["checks"].as_array().unwrap().len(), 9);

    // A changed payload byte: exit 1, the manifest digest check named.
    let mut entries = zipfile::read(&std::fs::read(&p.response).unwrap()).unwrap();
    let body = entries
        .iter_mut()
        .find(|(n, _)| n == "payload-body")
        .unwrap();
    body.1[0] ^= 1;
    let bad = p.dir.path().join("bad.asice");
    std::fs::write(
        &bad,
        trustbus_pki::asic::write_unchecked_zip(&entries).unwrap(),
    )
    .unwrap();
    let o = trustbus(
        &["verify", bad.to_str().unwrap(), "--conf", conf],
        p.dir.path(),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("INVALID: manifest digests failed: digest of \"payload-body\""),
        "{}",
        text(&o)
    );
    let o = trustbus(
        &["verify", bad.to_str().unwrap(), "--conf", conf, "--json"],
        p.dir.path(),
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["first_failure"]["check"], "manifest_digests");
}

#[tokio::test]
async fn verify_log_passes_then_names_the_broken_link() {
    let p = produce().await;
    let dir = p.log_dir.to_str().unwrap();
    let o = trustbus(&["verify-log", dir], p.dir.path());
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("VALID: 2 records"), "{}", text(&o));
    let o = trustbus(&["verify-log", dir, "--json"], p.dir.path());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["head"]["last_id"], 2);

    // Flip a byte inside the first record of the journal.
    let seg = p.log_dir.join("journal/00000001.seg");
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[32 + 69 + 10] ^= 1;
    std::fs::write(&seg, bytes).unwrap();
    let o = trustbus(&["verify-log", dir], p.dir.path());
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("INVALID: chain failed"), "{}", text(&o));
    assert!(text(&o).contains("record 1"), "{}", text(&o));
}

#[tokio::test]
async fn auditor_guide_recipes_work_as_written() {
    let p = produce().await;
    for (name, path) in [("req", &p.request), ("resp", &p.response)] {
        let w = workdir(&p, name, &std::fs::read(path).unwrap());
        let o = run_block(&guide_block("trustbus"), &w);
        assert!(
            o.status.success(),
            "trustbus recipe on {name}:\n{}",
            text(&o)
        );
        let o = run_block(&guide_block("openssl"), &w);
        let out = text(&o);
        assert!(o.status.success(), "openssl recipe on {name}:\n{out}");
        for expect in [
            "message.json: digest OK",
            "payload-head: digest OK",
            "CMS Verification successful",
            "signer is member",
            "Cert Status: good",
            "Merkle root ",
            "Verification: OK",
            "Time stamp:",
        ] {
            assert!(out.contains(expect), "{name}: missing {expect:?} in\n{out}");
        }
    }

    // The same recipe refuses a tampered container at the step that checks it.
    let mut entries = zipfile::read(&std::fs::read(&p.request).unwrap()).unwrap();
    let head = entries
        .iter_mut()
        .find(|(n, _)| n == "payload-head")
        .unwrap();
    head.1[0] ^= 1;
    let w = workdir(
        &p,
        "tampered",
        &trustbus_pki::asic::write_unchecked_zip(&entries).unwrap(),
    );
    let o = run_block(&guide_block("openssl"), &w);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("payload-head: digest mismatch"),
        "{}",
        text(&o)
    );
    let o = run_block(&guide_block("trustbus"), &w);
    assert!(!o.status.success());

    // A token over another root fails `openssl ts -verify`.
    let mut entries = zipfile::read(&std::fs::read(&p.request).unwrap()).unwrap();
    let other = zipfile::read(&std::fs::read(&p.response).unwrap()).unwrap();
    let proof = |e: &Vec<(String, Vec<u8>)>| {
        e.iter()
            .find(|(n, _)| n == "META-INF/merkle-proof.json")
            .unwrap()
            .1
            .clone()
    };
    // Both records are in one batch: swap in a proof for the other leaf, so the leaf no
    // longer leads to the root.
    let swapped = proof(&other);
    entries
        .iter_mut()
        .find(|(n, _)| n == "META-INF/merkle-proof.json")
        .unwrap()
        .1 = swapped;
    let w = workdir(
        &p,
        "proof",
        &trustbus_pki::asic::write_unchecked_zip(&entries).unwrap(),
    );
    let o = run_block(&guide_block("openssl"), &w);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("proof does not lead to its root"),
        "{}",
        text(&o)
    );
}

#[tokio::test]
async fn verify_archive_and_verify_log_from_the_archived_head() {
    use trustbus_security_server::messagelog::archive::{
        ArchiveConfig, ArchiveSigner, archive_once,
    };
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(&dir.path().join("ca")).unwrap();
    let tsa = TsaServer::start(pki.tsa.clone()).await.unwrap();
    let log_dir = dir.path().join("log");
    let mut lc = MessageLogConfig::new(&log_dir);
    lc.segment_size = 4096;
    let log = MessageLog::open(lc).unwrap();
    let mut last = None;
    for direction in [Direction::Request, Direction::Response, Direction::Request] {
        let signer = if direction == Direction::Request {
            &pki.client
        } else {
            &pki.provider
        };
        let rec = exchange_message(
            &pki,
            MessageSpec {
                side: Side::Consumer,
                direction,
                request_id: Uuid::new_v4(),
                signer,
                ocsp: None,
                body: None,
            },
        )
        .unwrap();
        last = Some(log.append(rec).await.unwrap());
    }
    log.wait_indexed(last.unwrap()).await.unwrap();
    Timestamper::new(
        log.store().clone(),
        TimestampConfig::new(vec![pki.tsa_endpoint(&tsa.url)], Duration::from_secs(60)),
    )
    .run_once()
    .await
    .unwrap();
    let mut cfg = ArchiveConfig::new(dir.path().join("archive"));
    cfg.retention = Duration::ZERO;
    let signer = ArchiveSigner {
        signer: &pki.client.key,
        cert_der: pki.client.cert.der(),
        chain: &[],
    };
    let report = archive_once(
        &log_dir,
        log.store().as_ref(),
        None,
        &cfg,
        &signer,
        time::OffsetDateTime::now_utc(),
    )
    .unwrap()
    .unwrap();
    log.close().await.unwrap();
    let archive_dir = report.file.parent().unwrap();
    let files = vec![("shared-params.json".to_owned(), pki.shared_params(&tsa.url))];
    std::fs::write(
        archive_dir.join("verificationconf.zip"),
        verifyconf::export_zip(&files).unwrap(),
    )
    .unwrap();

    // docs/auditor-guide.md §6, as written, next to the archive file
    let block = guide_block("verify-archive");
    let name = report.file.file_name().unwrap().to_str().unwrap();
    assert!(block.contains(name), "the guide names {name}: {block}");
    let o = run_block(&block, archive_dir);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    let anchor = out
        .lines()
        .find_map(|l| l.strip_prefix("the live journal continues after: --anchor "))
        .unwrap()
        .to_owned();
    assert!(anchor.starts_with("2:"), "{anchor}");
    let ld = log_dir.to_str().unwrap();
    let o = trustbus(&["verify-log", ld], dir.path());
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let o = trustbus(&["verify-log", ld, "--anchor", &anchor], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("VALID: 1 records"), "{}", text(&o));
}
