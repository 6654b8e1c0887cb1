//! CMS and RFC 3161 interop with openssl in both directions.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly by design

mod fixtures;

use const_oid::ObjectIdentifier;
use fixtures::{Ca, Scratch, doc_block, openssl, run_doc_block};
use time::OffsetDateTime;
use trustbus_pki::DigestAlgorithm;
use trustbus_pki::cms::{CmsError, CmsSigner, verify_detached};
use trustbus_pki::tsa::{self, MessageImprint, TsaResponder, TspError};

const POLICY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.3.4.1");

#[test]
fn openssl_verifies_our_tsa_replies() {
    let ca = Ca::new("TS CA");
    let tsa_id = ca.issue_tsa("Our TSA");
    let tsa = TsaResponder::new(&tsa_id.cert_der, tsa_id.signer(), POLICY).unwrap();
    let s = Scratch::new();
    s.write("ca.pem", &ca.id.cert_pem);
    s.write("tsa.pem", &tsa_id.cert_pem);
    s.write("f", b"the data to be stamped\n");
    s.write("g", b"other data\n");

    // docs/trust-services.md §2, as written: openssl's query, our reply, openssl's checks
    let (ok, out) = run_doc_block(s.dir.path(), "ts-query", &[]);
    assert!(ok, "{out}");
    s.write(
        "reply.tsr",
        tsa.respond(&s.read("q.tsq"), OffsetDateTime::now_utc()),
    );
    let (ok, out) = run_doc_block(s.dir.path(), "ts-verify", &[]);
    assert!(ok, "{out}");
    assert!(out.contains("Verification: OK"), "{out}");
    assert!(out.contains("Status: Granted."), "{out}");

    for (cert_flag, digest) in [("-cert", "-sha256"), ("-no_nonce", "-sha512")] {
        let (ok, out) = openssl(
            s.dir.path(),
            &[
                "ts", "-query", "-data", "f", digest, cert_flag, "-out", "q.tsq",
            ],
        );
        assert!(ok, "{out}");
        let reply = tsa.respond(&s.read("q.tsq"), OffsetDateTime::now_utc());
        s.write("reply.tsr", &reply);
        let (ok, out) = openssl(
            s.dir.path(),
            &[
                "ts",
                "-verify",
                "-data",
                "f",
                "-in",
                "reply.tsr",
                "-CAfile",
                "ca.pem",
                "-untrusted",
                "tsa.pem",
            ],
        );
        assert!(ok && out.contains("Verification: OK"), "{out}");
        // openssl notices a timestamp over other data
        let (ok, out) = openssl(
            s.dir.path(),
            &[
                "ts",
                "-verify",
                "-data",
                "g",
                "-in",
                "reply.tsr",
                "-CAfile",
                "ca.pem",
                "-untrusted",
                "tsa.pem",
            ],
        );
        assert!(!ok, "{out}");
        // openssl can print it
        let (ok, out) = openssl(s.dir.path(), &["ts", "-reply", "-in", "reply.tsr", "-text"]);
        assert!(ok && out.contains("Status: Granted."), "{out}");
    }

    // a rejection openssl understands
    s.write("bad.tsq", b"not a request");
    s.write(
        "bad.tsr",
        tsa.respond(b"not a request", OffsetDateTime::now_utc()),
    );
    let (_, out) = openssl(s.dir.path(), &["ts", "-reply", "-in", "bad.tsr", "-text"]);
    assert!(out.contains("Status: Rejected."), "{out}");
    assert!(
        out.contains("the data submitted has the wrong format"),
        "{out}"
    );
}

#[test]
fn openssl_tsa_tokens_verify_with_ours() {
    let ca = Ca::new("TS CA");
    let tsa_id = ca.issue_tsa("openssl TSA");
    let s = Scratch::new();
    // the configuration docs/trust-services.md shows
    s.write("ts.cnf", doc_block("ts-cnf"));
    s.write("tsaserial", "01\n");
    s.write("tsa.pem", &tsa_id.cert_pem);
    s.write("tsa.key", &tsa_id.signer.pkcs8_pem);
    let data = b"merkle root to stamp";
    s.write("f", data);
    let approved = vec![tsa_id.cert_der];

    // docs/trust-services.md §2, as written: openssl as the TSA, our verifier
    let (ok, out) = run_doc_block(s.dir.path(), "ts-openssl-tsa", &[]);
    assert!(ok, "{out}");
    let token = tsa::parse_reply(&s.read("r.tsr")).unwrap();
    let v = tsa::verify_token(
        &token,
        &MessageImprint::of(DigestAlgorithm::Sha256, data),
        &approved,
    )
    .unwrap();
    assert_eq!(v.policy, POLICY);

    for (digest, alg) in [
        ("-sha256", DigestAlgorithm::Sha256),
        ("-sha384", DigestAlgorithm::Sha384),
    ] {
        for cert in [true, false] {
            let mut q = vec!["ts", "-query", "-data", "f", digest, "-out", "q.tsq"];
            if cert {
                q.push("-cert");
            }
            let (ok, out) = openssl(s.dir.path(), &q);
            assert!(ok, "{out}");
            let (ok, out) = openssl(
                s.dir.path(),
                &[
                    "ts",
                    "-reply",
                    "-config",
                    "ts.cnf",
                    "-queryfile",
                    "q.tsq",
                    "-inkey",
                    "tsa.key",
                    "-signer",
                    "tsa.pem",
                    "-out",
                    "r.tsr",
                ],
            );
            assert!(ok, "{out}");
            let token = tsa::parse_reply(&s.read("r.tsr")).unwrap();
            let imprint = MessageImprint::of(alg, data);
            let v = tsa::verify_token(&token, &imprint, &approved).unwrap();
            assert_eq!(v.policy, POLICY);
            assert_eq!(v.accuracy.unwrap().millis, 500);
            assert!(v.nonce.is_some(), "openssl sends a nonce by default");

            // timestamp over other data
            assert_eq!(
                tsa::verify_token(&token, &MessageImprint::of(alg, b"x"), &approved),
                Err(TspError::ImprintMismatch)
            );
            // tampered token: flip a byte of the imprint inside TSTInfo
            let mut bad = token.clone();
            let pos = bad
                .windows(imprint.digest.len())
                .position(|w| w == imprint.digest.as_slice())
                .unwrap();
            bad[pos + 3] ^= 0x40;
            assert_eq!(
                tsa::verify_token(&bad, &imprint, &approved),
                Err(TspError::Cms(CmsError::DigestMismatch))
            );
            // tampered signature
            let mut bad = token.clone();
            let n = bad.len();
            bad[n - 2] ^= 0x01;
            assert_eq!(
                tsa::verify_token(&bad, &imprint, &approved),
                Err(TspError::Cms(CmsError::BadSignature))
            );
        }
    }
}

#[test]
fn openssl_verifies_our_cms_signatures() {
    let ca = Ca::new("CMS CA");
    let member = ca.issue_signer("member");
    let s = Scratch::new();
    s.write("ca.pem", &ca.id.cert_pem);
    let data = b"<asic:ASiCManifest/>\n".repeat(10);
    s.write("data", &data);
    s.write("other", b"tampered");
    let signer = member.signer();
    let sig = CmsSigner::new(signer.as_ref(), &member.cert_der)
        .unwrap()
        .with_chain(&[ca.id.cert_der])
        .unwrap()
        // any DER blob is carried; a real OCSP response is checked in the in-memory tests
        .with_ocsp_response(vec![0x30, 0x03, 0x0a, 0x01, 0x00])
        .sign_detached(&data, OffsetDateTime::now_utc(), None)
        .unwrap();
    s.write("sig.p7s", &sig);
    // docs/trust-services.md §4, as written
    let (ok, out) = run_doc_block(s.dir.path(), "cms", &[]);
    assert!(ok, "{out}");
    assert!(out.contains("Verification successful"), "{out}");
    assert!(out.contains("id-smime-aa-signingCertificateV2"), "{out}");
    let verify = |content: &str| {
        openssl(
            s.dir.path(),
            &[
                "cms",
                "-verify",
                "-binary",
                "-inform",
                "DER",
                "-in",
                "sig.p7s",
                "-content",
                content,
                "-CAfile",
                "ca.pem",
                "-purpose",
                "any",
                "-out",
                "/dev/null",
            ],
        )
    };
    let (ok, out) = verify("data");
    assert!(ok && out.contains("Verification successful"), "{out}");
    let (ok, out) = verify("other");
    assert!(!ok, "{out}");
    // openssl can list the structure, including the signing certificate attribute
    let (ok, out) = openssl(
        s.dir.path(),
        &[
            "cms", "-cmsout", "-print", "-inform", "DER", "-in", "sig.p7s",
        ],
    );
    assert!(
        ok && out.contains("id-smime-aa-signingCertificateV2"),
        "{out}"
    );
}

#[test]
fn openssl_cms_without_our_attributes_is_refused() {
    let ca = Ca::new("CMS CA");
    let member = ca.issue_signer("member");
    let s = Scratch::new();
    s.write("m.pem", &member.cert_pem);
    s.write("m.key", &member.signer.pkcs8_pem);
    s.write("data", b"content");
    let sign = |extra: &[&str]| {
        let mut args = vec![
            "cms", "-sign", "-binary", "-in", "data", "-signer", "m.pem", "-inkey", "m.key",
            "-outform", "DER", "-out", "sig.der", "-md", "sha256",
        ];
        args.extend_from_slice(extra);
        let (ok, out) = openssl(s.dir.path(), &args);
        assert!(ok, "{out}");
        s.read("sig.der")
    };
    let now = OffsetDateTime::now_utc();
    // no signed attributes at all
    assert_eq!(
        verify_detached(&sign(&["-noattr"]), b"content", now),
        Err(CmsError::MissingAttribute("signed attributes"))
    );
    // openssl's default attributes: no ESS signing-certificate-v2
    assert_eq!(
        verify_detached(&sign(&[]), b"content", now),
        Err(CmsError::MissingAttribute("signing-certificate-v2"))
    );
    // ... but the content digest is checked first
    assert_eq!(
        verify_detached(&sign(&[]), b"other", now),
        Err(CmsError::DigestMismatch)
    );
    // with the ESS attribute (openssl 3 -certsout? no: -cades adds signingCertificateV2)
    let v = verify_detached(&sign(&["-cades"]), b"content", now).unwrap();
    assert_eq!(v.signer_cert, member.cert_der);
}
