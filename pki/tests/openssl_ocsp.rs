//! OCSP interop with openssl in both directions.
//!
//! * `openssl ocsp` as the client against our responder, served over loopback HTTP.
//! * `openssl ocsp -index ... -reqin ... -respout ...` as a responder we did not write; its
//!   responses go through our `verify_response`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly by design

mod fixtures;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::thread;

use fixtures::{Ca, Scratch, hex_upper, openssl, run_doc_block};
use time::{Duration, OffsetDateTime};
use trustbus_pki::DigestAlgorithm;
use trustbus_pki::ocsp::{self, CertStatus, MemoryRevocationSource, OcspError, OcspResponder};

/// Serves `max_requests` OCSP requests (POST or GET) on loopback, then stops.
fn serve(
    responder: Arc<OcspResponder<Arc<MemoryRevocationSource>>>,
    max_requests: usize,
) -> (u16, thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = thread::spawn(move || {
        for _ in 0..max_requests {
            let Ok((mut stream, _)) = listener.accept() else {
                return;
            };
            stream
                .set_read_timeout(Some(std::time::Duration::from_secs(10)))
                .unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            let mut content_length = 0usize;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line.trim().is_empty() {
                    break;
                }
                if let Some((_, v)) = line
                    .split_once(':')
                    .filter(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                {
                    content_length = v.trim().parse().unwrap();
                }
            }
            let now = OffsetDateTime::now_utc();
            let mut parts = request_line.split_whitespace();
            let method = parts.next().unwrap_or("");
            let path = parts.next().unwrap_or("");
            let body = if method == "POST" {
                let mut body = vec![0; content_length.min(64 * 1024)];
                reader.read_exact(&mut body).unwrap();
                responder.respond(&body, now)
            } else {
                let seg = path.rsplit('/').next().unwrap_or("");
                responder.respond_get(seg, now)
            };
            let head = format!(
                "HTTP/1.0 200 OK\r\nContent-Type: application/ocsp-response\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).unwrap();
            stream.write_all(&body).unwrap();
        }
    });
    (port, handle)
}

#[test]
fn openssl_client_against_our_responder() {
    let ca = Ca::new("Interop CA");
    let leaf = ca.issue_signer("member");
    let resp_id = ca.issue_ocsp_responder("Interop OCSP");
    let source = Arc::new(MemoryRevocationSource::new());
    source.set(&leaf.serial_bytes(), CertStatus::Good);
    let responder = Arc::new(
        OcspResponder::new(
            &ca.id.cert_der,
            &resp_id.cert_der,
            resp_id.signer(),
            source.clone(),
        )
        .unwrap(),
    );
    let s = Scratch::new();
    s.write("ca.pem", &ca.id.cert_pem);
    s.write("c.pem", &leaf.cert_pem);
    let (port, handle) = serve(responder, 2);
    let url = format!("http://127.0.0.1:{port}/ocsp");
    let args = [
        "ocsp", "-issuer", "ca.pem", "-cert", "c.pem", "-url", &url, "-CAfile", "ca.pem",
    ];

    // docs/trust-services.md §1, as written
    let (ok, out) = run_doc_block(s.dir.path(), "ocsp-client", &[("PORT", &port.to_string())]);
    assert!(ok, "{out}");
    assert!(out.contains("Response verify OK"), "{out}");
    assert!(out.contains("c.pem: good"), "{out}");

    source.set(
        &leaf.serial_bytes(),
        CertStatus::Revoked {
            at: OffsetDateTime::now_utc() - Duration::hours(1),
            reason: Some(1),
        },
    );
    let (ok, out) = openssl(s.dir.path(), &args);
    assert!(ok, "{out}");
    assert!(out.contains("Response verify OK"), "{out}");
    assert!(out.contains("c.pem: revoked"), "{out}");
    assert!(out.contains("keyCompromise"), "{out}");
    handle.join().unwrap();
}

/// An openssl CA database line for a certificate.
fn index_line(serial_hex: &str, revoked: Option<&str>) -> String {
    match revoked {
        None => format!("V\t351231000000Z\t\t{serial_hex}\tunknown\t/CN=member\n"),
        Some(when) => format!("R\t351231000000Z\t{when}\t{serial_hex}\tunknown\t/CN=member\n"),
    }
}

/// Runs `openssl ocsp` as responder over our request file.
fn openssl_respond(s: &Scratch, rsigner: &str, rkey: &str) -> Vec<u8> {
    let (ok, out) = openssl(
        s.dir.path(),
        &[
            "ocsp",
            "-index",
            "index.txt",
            "-rsigner",
            rsigner,
            "-rkey",
            rkey,
            "-CA",
            "ca.pem",
            "-reqin",
            "req.der",
            "-respout",
            "resp.der",
            "-ndays",
            "1",
        ],
    );
    assert!(ok, "{out}");
    s.read("resp.der")
}

#[test]
fn openssl_responses_verify_with_ours() {
    let ca = Ca::new("Interop CA");
    let leaf = ca.issue_signer("member");
    let resp_id = ca.issue_ocsp_responder("Interop OCSP");
    let s = Scratch::new();
    s.write("ca.pem", &ca.id.cert_pem);
    s.write("ca.key", &ca.id.signer.pkcs8_pem);
    s.write("rsigner.pem", &resp_id.cert_pem);
    s.write("rsigner.key", &resp_id.signer.pkcs8_pem);
    let serial_hex = hex_upper(&leaf.serial_bytes());
    let cert = &leaf.cert_der;
    let issuer = &ca.id.cert_der;
    let fresh = Duration::minutes(15);

    for hash in [DigestAlgorithm::Sha1, DigestAlgorithm::Sha256] {
        let req = ocsp::build_request(cert, issuer, hash).unwrap();
        s.write("req.der", &req);

        // good, delegated responder: the commands of docs/trust-services.md §1, as written
        s.write("index.txt", index_line(&serial_hex, None));
        std::fs::remove_file(s.path("resp.der")).ok();
        let (ok, out) = run_doc_block(s.dir.path(), "ocsp-responder", &[]);
        assert!(ok && out.contains("Cert Status: good"), "{out}");
        let resp = s.read("resp.der");
        let now = OffsetDateTime::now_utc();
        let v = ocsp::verify_response(&resp, cert, issuer, now, fresh).unwrap();
        assert_eq!(v.status, CertStatus::Good);
        assert!(v.responder_cert.is_some());

        // good, signed by the CA itself
        let resp_ca = openssl_respond(&s, "ca.pem", "ca.key");
        let v = ocsp::verify_response(&resp_ca, cert, issuer, now, fresh).unwrap();
        assert_eq!(v.status, CertStatus::Good);
        assert!(v.responder_cert.is_none());

        // revoked with a reason
        s.write(
            "index.txt",
            index_line(&serial_hex, Some("240102030405Z,keyCompromise")),
        );
        let resp = openssl_respond(&s, "rsigner.pem", "rsigner.key");
        let v = ocsp::verify_response(&resp, cert, issuer, now, fresh).unwrap();
        assert_eq!(
            v.status,
            CertStatus::Revoked {
                at: time::macros::datetime!(2024-01-02 03:04:05 UTC),
                reason: Some(1)
            }
        );

        // stale: the same response judged two hours later with a 15-minute window
        let later = now + Duration::hours(2);
        assert!(matches!(
            ocsp::verify_response(&resp, cert, issuer, later, fresh),
            Err(OcspError::Stale { .. })
        ));
        // nextUpdate (-ndays 1) passed
        assert!(matches!(
            ocsp::verify_response(
                &resp,
                cert,
                issuer,
                now + Duration::days(2),
                Duration::days(3)
            ),
            Err(OcspError::Expired { .. })
        ));
    }

    // tampered: flip a byte inside the signed producedAt/thisUpdate area
    s.write(
        "req.der",
        ocsp::build_request(cert, issuer, DigestAlgorithm::Sha1).unwrap(),
    );
    s.write("index.txt", index_line(&serial_hex, None));
    let resp = openssl_respond(&s, "ca.pem", "ca.key");
    let now = OffsetDateTime::now_utc();
    let mut tampered = resp;
    // GeneralizedTime tag 0x18 len 0x0f: change the last digit of seconds of the first one
    let pos = tampered.windows(2).position(|w| w == [0x18, 0x0f]).unwrap();
    tampered[pos + 2 + 13] ^= 0x01; // a seconds digit, still a valid time
    assert_eq!(
        ocsp::verify_response(&tampered, cert, issuer, now, fresh),
        Err(OcspError::BadSignature)
    );

    // wrong responder: a responder certificate from another CA signs openssl's answer
    let rogue_ca = Ca::new("Rogue CA");
    let rogue = rogue_ca.issue_ocsp_responder("rogue OCSP");
    s.write("rogue.pem", &rogue.cert_pem);
    s.write("rogue.key", &rogue.signer.pkcs8_pem);
    let resp = openssl_respond(&s, "rogue.pem", "rogue.key");
    assert_eq!(
        ocsp::verify_response(&resp, cert, issuer, now, fresh),
        Err(OcspError::WrongResponder)
    );
    // wrong responder: a certificate of our CA without id-kp-OCSPSigning
    s.write("leafsig.pem", &leaf.cert_pem);
    s.write("leafsig.key", &leaf.signer.pkcs8_pem);
    let resp = openssl_respond(&s, "leafsig.pem", "leafsig.key");
    assert_eq!(
        ocsp::verify_response(&resp, cert, issuer, now, fresh),
        Err(OcspError::WrongResponder)
    );
}
