//! Timestamping (with a TSA outage), evidence export and offline verification, end to end over
//! a real message log, the development CA, OCSP responder and a TSA served over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use trustbus_pki::asic::write_unchecked_zip;
use trustbus_pki::merkle::InclusionProof;
use trustbus_pki::revocation::CertStatus;
use trustbus_sdk::fault::Origin;
use trustbus_security_server::messagelog::evidence::{self, RecordJson};
use trustbus_security_server::messagelog::exchange::{Direction, Side};
use trustbus_security_server::messagelog::testkit::{
    MessageSpec, Pki, TsaServer, exchange_message,
};
use trustbus_security_server::messagelog::timestamp::{
    TimestampConfig, TimestampMode, Timestamper,
};
use trustbus_security_server::messagelog::verify::{Check, strict_signed_data, verify_container};
use trustbus_security_server::messagelog::verifyconf::{self, VerificationConf};
use trustbus_security_server::messagelog::{
    LogStore, MessageLog, MessageLogConfig, RecordId, zipfile,
};
use uuid::Uuid;

struct Env {
    _dir: tempfile::TempDir,
    pki: Pki,
    tsa: TsaServer,
    log: Arc<MessageLog>,
    conf: VerificationConf,
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(&dir.path().join("ca")).unwrap();
    let tsa = TsaServer::start(pki.tsa.clone()).await.unwrap();
    let log = Arc::new(MessageLog::open(MessageLogConfig::new(dir.path().join("log"))).unwrap());
    let conf = VerificationConf::from_shared_params(&pki.shared_params(&tsa.url)).unwrap();
    Env {
        _dir: dir,
        pki,
        tsa,
        log,
        conf,
    }
}

impl Env {
    fn timestamper(&self, window: Duration) -> Timestamper {
        let mut c = TimestampConfig::new(
            vec![self.pki.tsa_endpoint(&self.tsa.url)],
            Duration::from_millis(50),
        );
        c.failure_window = window;
        c.request_timeout = Duration::from_secs(5);
        c.retry_base = Duration::from_millis(10);
        Timestamper::new(self.log.store().clone(), c)
    }

    /// Logs a request (client signs) and its response (provider signs); returns their ids.
    async fn exchange(&self, request_id: Uuid) -> (RecordId, RecordId) {
        let req = exchange_message(
            &self.pki,
            MessageSpec {
                side: Side::Consumer,
                direction: Direction::Request,
                request_id,
                signer: &self.pki.client,
                ocsp: None,
                body: None,
            },
        )
        .unwrap();
        let resp = exchange_message(
            &self.pki,
            MessageSpec {
                side: Side::Consumer,
                direction: Direction::Response,
                request_id,
                signer: &self.pki.provider,
                ocsp: None,
                body: Some(br#"{"name":"Mari"}"#.to_vec()),
            },
        )
        .unwrap();
        let a = self.log.append(req).await.unwrap();
        let b = self.log.append(resp).await.unwrap();
        self.log.wait_indexed(b).await.unwrap();
        (a, b)
    }

    fn store(&self) -> &dyn LogStore {
        self.log.store().as_ref()
    }
}

#[tokio::test]
async fn tsa_outage_inside_window_ok_then_refused_then_backlog_stamped() {
    let e = env().await;
    let ts = e.timestamper(Duration::from_millis(400));
    let guard = ts.guard();
    e.exchange(Uuid::new_v4()).await;
    assert_eq!(ts.run_once().await.unwrap(), 2);
    guard.admission(Origin::ClientProxy).unwrap();

    e.tsa.up.store(false, Ordering::SeqCst);
    e.exchange(Uuid::new_v4()).await;
    assert!(ts.run_once().await.is_err());
    // Inside the window: still admitted.
    guard.admission(Origin::ClientProxy).unwrap();
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert!(ts.run_once().await.is_err());
    let f = guard.admission(Origin::ClientProxy).unwrap_err();
    assert_eq!(
        f.code.to_string(),
        "Server.ClientProxy.LoggingFailed.TimestamperFailed"
    );
    let f = guard.admission(Origin::ServerProxy).unwrap_err();
    assert_eq!(
        f.code.to_string(),
        "Server.ServerProxy.LoggingFailed.TimestamperFailed"
    );
    assert!(e.store().timestamp(RecordId(3)).unwrap().is_none());

    // The TSA returns: the backlog is timestamped and exchanges are admitted again.
    e.tsa.up.store(true, Ordering::SeqCst);
    assert_eq!(ts.run_once().await.unwrap(), 2);
    guard.admission(Origin::ClientProxy).unwrap();
    for id in 1..=4 {
        assert!(e.store().timestamp(RecordId(id)).unwrap().is_some(), "{id}");
    }
    assert_eq!(
        e.store().timestamp_progress().unwrap(),
        Some((2, RecordId(4)))
    );
}

#[tokio::test]
async fn driver_tries_tsas_in_order_and_per_message_mode_gives_one_token_each() {
    let e = env().await;
    let mut c = TimestampConfig::new(
        vec![
            e.pki.tsa_endpoint("http://127.0.0.1:9/unreachable"),
            e.pki.tsa_endpoint(&e.tsa.url),
        ],
        Duration::from_millis(30),
    );
    c.mode = TimestampMode::PerMessage;
    c.request_timeout = Duration::from_secs(2);
    let ts = Arc::new(Timestamper::new(e.log.store().clone(), c));
    let task = ts.spawn();
    e.exchange(Uuid::new_v4()).await;
    let mut waited = 0;
    while e.store().timestamp_progress().unwrap() != Some((2, RecordId(2))) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        waited += 1;
        assert!(waited < 250, "driver did not timestamp");
    }
    task.abort();
    let a = e.store().timestamp(RecordId(1)).unwrap().unwrap();
    let b = e.store().timestamp(RecordId(2)).unwrap().unwrap();
    assert_ne!(a.token, b.token);
}

/// Rebuilds a container with one entry replaced (the zip itself stays well-formed).
fn replace_entry(container: &[u8], name: &str, data: Vec<u8>) -> Vec<u8> {
    let mut entries = zipfile::read(container).unwrap();
    let e = entries.iter_mut().find(|(n, _)| n == name).unwrap();
    e.1 = data;
    write_unchecked_zip(&entries).unwrap()
}

fn entry(container: &[u8], name: &str) -> Vec<u8> {
    zipfile::read(container)
        .unwrap()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap()
        .1
}

fn failure(bytes: &[u8], conf: &VerificationConf) -> (Check, String) {
    failure_of(bytes, conf, "")
}

fn failure_of(bytes: &[u8], conf: &VerificationConf, what: &str) -> (Check, String) {
    let r = verify_container(bytes, conf);
    assert!(!r.valid, "{what}: not detected\n{}", r.to_text());
    let f = r.first_failure().unwrap();
    (f.check, f.detail.clone())
}

#[tokio::test]
async fn evidence_verifies_and_every_flipped_byte_is_detected() {
    let e = env().await;
    let rid = Uuid::new_v4();
    let (req, resp) = e.exchange(rid).await;
    let ts = e.timestamper(Duration::from_secs(600));
    ts.run_once().await.unwrap();

    for id in [req, resp] {
        let c = evidence::record_container(e.store(), id, None).unwrap();
        let r = verify_container(&c, &e.conf);
        assert!(r.valid, "{}", r.to_text());
        assert_eq!(r.checks.len(), 9);
    }
    let pair = evidence::exchange_zip(e.store(), rid, None).unwrap();
    let names: Vec<String> = zipfile::read(&pair)
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        names,
        vec![
            format!("{rid}-request-sent-1.asice"),
            format!("{rid}-response-received-2.asice")
        ]
    );

    let c = evidence::record_container(e.store(), resp, None).unwrap();
    let expect = |name: &str| -> &[Check] {
        match name {
            "mimetype" => &[Check::Structure],
            "message.json" | "payload-head" | "payload-body" => &[Check::ManifestDigests],
            // A flip in the manifest breaks its XML, a digest, or the signature over it.
            "META-INF/ASiCManifest.xml" => {
                &[Check::Structure, Check::ManifestDigests, Check::Signature]
            }
            // Bytes of the CMS structure that its signature does not cover (for example the
            // digestAlgorithms set) are caught by the record hash, which commits to the exact
            // signature bytes that were logged.
            "META-INF/signature001.p7s" => &[
                Check::Signature,
                Check::CertificateChain,
                Check::Ocsp,
                Check::RecordHash,
            ],
            "META-INF/timestamp.tst" => &[Check::Timestamp],
            "META-INF/record.json" => &[Check::RecordHash],
            // The root inside the proof is also the token's expected imprint: a flip there is
            // found when the proof is followed.
            "META-INF/merkle-proof.json" => &[Check::MerkleProof],
            other => panic!("unexpected entry {other}"),
        }
    };
    let entries = zipfile::read(&c).unwrap();
    for (name, data) in &entries {
        let allowed = expect(name);
        // Every byte of the small files; a spread of positions in the larger ones (each
        // verification costs several signature checks).
        let step = (data.len() / 120).max(1);
        let positions: Vec<usize> = (0..data.len())
            .step_by(step)
            .chain([data.len().saturating_sub(1)])
            .collect();
        for i in positions {
            let mut d = data.clone();
            d[i] ^= 0x01;
            let (check, detail) = failure_of(
                &replace_entry(&c, name, d),
                &e.conf,
                &format!("{name} byte {i}"),
            );
            assert!(
                allowed.contains(&check),
                "{name} byte {i}: reported as {check:?}: {detail}"
            );
        }
    }
}

#[tokio::test]
async fn every_byte_of_the_timestamp_token_is_covered() {
    let e = env().await;
    e.exchange(Uuid::new_v4()).await;
    e.timestamper(Duration::from_secs(600))
        .run_once()
        .await
        .unwrap();
    let ts = e.store().timestamp(RecordId(1)).unwrap().unwrap();
    let (_, root) = InclusionProof::from_json(&ts.merkle_proof).unwrap();
    let imprint = trustbus_pki::tsa::MessageImprint {
        alg: trustbus_pki::DigestAlgorithm::Sha256,
        digest: root,
    };
    let certs = e.conf.tsa_certs();
    assert!(trustbus_pki::tsa::verify_token(&ts.token, &imprint, &certs).is_ok());
    strict_signed_data(&ts.token).unwrap();
    for i in 0..ts.token.len() {
        let mut t = ts.token.clone();
        t[i] ^= 0x01;
        let accepted = trustbus_pki::tsa::verify_token(&t, &imprint, &certs).is_ok()
            && strict_signed_data(&t).is_ok();
        assert!(
            !accepted,
            "token byte {i} of {} can change unnoticed",
            t.len()
        );
    }
}

#[tokio::test]
async fn wrong_signer_revoked_ocsp_other_root_and_tampered_proof_are_named() {
    let e = env().await;
    let rid = Uuid::new_v4();
    // A response signed by the client's member instead of the provider's.
    let wrong = exchange_message(
        &e.pki,
        MessageSpec {
            side: Side::Provider,
            direction: Direction::Response,
            request_id: rid,
            signer: &e.pki.other,
            ocsp: None,
            body: None,
        },
    )
    .unwrap();
    // A request whose signer's certificate was revoked before signing.
    e.pki.ocsp.source().set(
        e.pki.client.cert.serial(),
        CertStatus::Revoked {
            at: time::OffsetDateTime::now_utc() - time::Duration::minutes(5),
            reason: Some(1),
        },
    );
    let revoked = exchange_message(
        &e.pki,
        MessageSpec {
            side: Side::Consumer,
            direction: Direction::Request,
            request_id: rid,
            signer: &e.pki.client,
            ocsp: None,
            body: None,
        },
    )
    .unwrap();
    let w = e.log.append(wrong).await.unwrap();
    let r = e.log.append(revoked).await.unwrap();
    e.log.wait_indexed(r).await.unwrap();
    let ts = e.timestamper(Duration::from_secs(600));
    ts.run_once().await.unwrap();

    let cw = evidence::record_container(e.store(), w, None).unwrap();
    let (check, detail) = failure(&cw, &e.conf);
    assert_eq!(check, Check::SignerMember, "{detail}");
    assert!(
        detail.contains("DEV/GOV/9999") && detail.contains("DEV/COM/5678"),
        "{detail}"
    );

    let cr = evidence::record_container(e.store(), r, None).unwrap();
    let (check, detail) = failure(&cr, &e.conf);
    assert_eq!(check, Check::Ocsp, "{detail}");
    assert!(detail.contains("Revoked"), "{detail}");

    // Back to good: a third record in a later batch gives a token over another root.
    e.pki
        .ocsp
        .source()
        .set(e.pki.client.cert.serial(), CertStatus::Good);
    let (good, _) = e.exchange(Uuid::new_v4()).await;
    ts.run_once().await.unwrap();
    let cg = evidence::record_container(e.store(), good, None).unwrap();
    assert!(verify_container(&cg, &e.conf).valid);
    let other_token = entry(&cw, "META-INF/timestamp.tst");
    let (check, detail) = failure(
        &replace_entry(&cg, "META-INF/timestamp.tst", other_token),
        &e.conf,
    );
    assert_eq!(check, Check::MerkleProof, "{detail}");
    assert!(detail.contains("different root"), "{detail}");

    // A tampered proof in canonical form: one path hash changed, or another leaf index.
    let pj = entry(&cg, "META-INF/merkle-proof.json");
    let (mut proof, root) = InclusionProof::from_json(&pj).unwrap();
    proof.leaf_index ^= 1;
    let (check, detail) = failure(
        &replace_entry(&cg, "META-INF/merkle-proof.json", proof.to_json(&root)),
        &e.conf,
    );
    assert_eq!(check, Check::MerkleProof, "{detail}");

    // record.json claiming another entry hash (still canonical).
    let mut rj = RecordJson::parse(&entry(&cg, "META-INF/record.json")).unwrap();
    rj.entry_hash = "00".repeat(32);
    let (check, _) = failure(
        &replace_entry(&cg, "META-INF/record.json", rj.to_bytes()),
        &e.conf,
    );
    assert_eq!(check, Check::RecordHash);

    // A verification configuration without the TSA refuses the token.
    let mut no_tsa = e.conf.clone();
    no_tsa.tsas.clear();
    assert_eq!(failure(&cg, &no_tsa).0, Check::Timestamp);
    // And one without the CA refuses the chain.
    let mut no_ca = e.conf.clone();
    no_ca.ca_roots.clear();
    assert_eq!(failure(&cg, &no_ca).0, Check::CertificateChain);
}

#[tokio::test]
async fn verification_configuration_exports_as_zip_and_directory() {
    let e = env().await;
    let files = vec![(
        "shared-params.json".to_owned(),
        e.pki.shared_params(&e.tsa.url),
    )];
    let z = verifyconf::export_zip(&files).unwrap();
    let names: Vec<String> = zipfile::read(&z)
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["shared-params.json", "ca.pem", "tsa.pem"]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("conf.zip"), &z).unwrap();
    let from_zip = VerificationConf::load(&dir.path().join("conf.zip")).unwrap();
    verifyconf::export_dir(&files, &dir.path().join("conf")).unwrap();
    let from_dir = VerificationConf::load(&dir.path().join("conf")).unwrap();
    assert_eq!(from_zip.tsas, from_dir.tsas);
    assert_eq!(from_dir.members.len(), 3);
    assert!(verifyconf::export_zip(&[]).is_err());
}

#[tokio::test]
async fn payloads_encrypted_at_rest_export_with_the_key_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(&dir.path().join("ca")).unwrap();
    let tsa = TsaServer::start(pki.tsa.clone()).await.unwrap();
    let key =
        Arc::new(trustbus_security_server::messagelog::PayloadKey::new("k1", &[7u8; 32]).unwrap());
    let mut lc = MessageLogConfig::new(dir.path().join("log"));
    lc.payload_key = Some(key.clone());
    let log = MessageLog::open(lc).unwrap();
    let rec = exchange_message(
        &pki,
        MessageSpec {
            side: Side::Provider,
            direction: Direction::Request,
            request_id: Uuid::new_v4(),
            signer: &pki.client,
            ocsp: None,
            body: Some(b"secret".to_vec()),
        },
    )
    .unwrap();
    let id = log.append(rec).await.unwrap();
    log.wait_indexed(id).await.unwrap();
    let mut c = TimestampConfig::new(vec![pki.tsa_endpoint(&tsa.url)], Duration::from_secs(60));
    c.request_timeout = Duration::from_secs(5);
    Timestamper::new(log.store().clone(), c)
        .run_once()
        .await
        .unwrap();
    let store = log.store().as_ref();
    assert!(matches!(
        evidence::record_container(store, id, None),
        Err(evidence::EvidenceError::NeedKey(_))
    ));
    let container = evidence::record_container(store, id, Some(&key)).unwrap();
    let conf = VerificationConf::from_shared_params(&pki.shared_params(&tsa.url)).unwrap();
    let r = verify_container(&container, &conf);
    assert!(r.valid, "{}", r.to_text());
    assert!(!entry(&container, "META-INF/payload.enc").is_empty());
    let mut ct = entry(&container, "META-INF/payload.enc");
    ct[0] ^= 1;
    let (check, _) = failure(
        &replace_entry(&container, "META-INF/payload.enc", ct),
        &conf,
    );
    assert_eq!(check, Check::RecordHash);
}
