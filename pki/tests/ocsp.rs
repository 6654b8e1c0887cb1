//! OCSP responder and verifier, in memory.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly by design

mod fixtures;

use std::sync::Arc;

use fixtures::Ca;
use time::{Duration, OffsetDateTime};
use trustbus_pki::DigestAlgorithm;
use trustbus_pki::ocsp::{
    self, CertStatus, MemoryRevocationSource, OcspError, OcspResponder, ResponseStatus,
};

const FRESH: Duration = Duration::minutes(20);

struct Setup {
    ca: Ca,
    leaf: fixtures::Identity,
    source: Arc<MemoryRevocationSource>,
    delegated: OcspResponder<Arc<MemoryRevocationSource>>,
    by_ca: OcspResponder<Arc<MemoryRevocationSource>>,
}

fn setup() -> Setup {
    let ca = Ca::new("Test CA");
    let leaf = ca.issue_signer("member sign");
    let resp = ca.issue_ocsp_responder("Test OCSP");
    let source = Arc::new(MemoryRevocationSource::new());
    source.set(&leaf.serial_bytes(), CertStatus::Good);
    let delegated = OcspResponder::new(
        &ca.id.cert_der,
        &resp.cert_der,
        resp.signer(),
        source.clone(),
    )
    .unwrap();
    let by_ca = OcspResponder::new(
        &ca.id.cert_der,
        &ca.id.cert_der,
        ca.id.signer(),
        source.clone(),
    )
    .unwrap();
    Setup {
        ca,
        leaf,
        source,
        delegated,
        by_ca,
    }
}

fn now() -> OffsetDateTime {
    // whole seconds: OCSP times have second precision
    OffsetDateTime::from_unix_timestamp(OffsetDateTime::now_utc().unix_timestamp()).unwrap()
}

#[test]
fn good_revoked_unknown_with_both_responders_and_hashes() {
    let s = setup();
    let t = now();
    for hash in [DigestAlgorithm::Sha1, DigestAlgorithm::Sha256] {
        let req = ocsp::build_request(&s.leaf.cert_der, &s.ca.id.cert_der, hash).unwrap();
        assert_eq!(ocsp::request_hash_algorithm(&req), Some(hash.oid()));
        for r in [&s.delegated, &s.by_ca] {
            s.source.set(&s.leaf.serial_bytes(), CertStatus::Good);
            let resp = r.respond(&req, t);
            let v = ocsp::verify_response(&resp, &s.leaf.cert_der, &s.ca.id.cert_der, t, FRESH)
                .unwrap();
            assert_eq!(v.status, CertStatus::Good);
            assert_eq!(v.this_update, t);
            assert_eq!(v.next_update, Some(t + Duration::hours(1)));
            assert_eq!(v.responder_cert.is_some(), std::ptr::eq(r, &s.delegated));

            let at = t - Duration::hours(3);
            s.source.set(
                &s.leaf.serial_bytes(),
                CertStatus::Revoked {
                    at,
                    reason: Some(1),
                },
            );
            let resp = r.respond(&req, t);
            let v = ocsp::verify_response(&resp, &s.leaf.cert_der, &s.ca.id.cert_der, t, FRESH)
                .unwrap();
            assert_eq!(
                v.status,
                CertStatus::Revoked {
                    at,
                    reason: Some(1)
                }
            );
        }
    }
    let other = s.ca.issue_signer("never registered");
    let req =
        ocsp::build_request(&other.cert_der, &s.ca.id.cert_der, DigestAlgorithm::Sha1).unwrap();
    let resp = s.delegated.respond(&req, t);
    let v = ocsp::verify_response(&resp, &other.cert_der, &s.ca.id.cert_der, t, FRESH).unwrap();
    assert_eq!(v.status, CertStatus::Unknown);
}

#[test]
fn get_form_answers_like_post() {
    let s = setup();
    let t = now();
    let req =
        ocsp::build_request(&s.leaf.cert_der, &s.ca.id.cert_der, DigestAlgorithm::Sha1).unwrap();
    let url = ocsp::get_url("http://127.0.0.1/ocsp", &req);
    let seg = url.rsplit('/').next().unwrap();
    let resp = s.delegated.respond_get(seg, t);
    let v = ocsp::verify_response(&resp, &s.leaf.cert_der, &s.ca.id.cert_der, t, FRESH).unwrap();
    assert_eq!(v.status, CertStatus::Good);
}

#[test]
fn garbage_gets_malformed_request() {
    let s = setup();
    for garbage in [&b""[..], b"\x30\x00", b"hello", b"\x30\x03\x30\x01\x00"] {
        let resp = s.delegated.respond(garbage, now());
        assert_eq!(
            ocsp::response_status(&resp).unwrap(),
            Some(ResponseStatus::MalformedRequest)
        );
        assert_eq!(
            ocsp::verify_response(&resp, &s.leaf.cert_der, &s.ca.id.cert_der, now(), FRESH),
            Err(OcspError::ResponseStatus(ResponseStatus::MalformedRequest))
        );
    }
}

#[test]
fn freshness_rules() {
    let s = setup();
    let t = now();
    let req =
        ocsp::build_request(&s.leaf.cert_der, &s.ca.id.cert_der, DigestAlgorithm::Sha1).unwrap();
    let leaf = &s.leaf.cert_der;
    let ca = &s.ca.id.cert_der;

    // produced 30 minutes ago, window 20 minutes: stale
    let old = s.delegated.respond(&req, t - Duration::minutes(30));
    assert_eq!(
        ocsp::verify_response(&old, leaf, ca, t, FRESH),
        Err(OcspError::Stale {
            this_update: t - Duration::minutes(30)
        })
    );
    // the same response inside a 40-minute window is fine
    assert!(ocsp::verify_response(&old, leaf, ca, t, Duration::minutes(40)).is_ok());
    // from the future beyond the skew
    let future = s.delegated.respond(&req, t + Duration::minutes(10));
    assert_eq!(
        ocsp::verify_response(&future, leaf, ca, t, FRESH),
        Err(OcspError::NotYetValid {
            this_update: t + Duration::minutes(10)
        })
    );
    // a little ahead (within skew) is accepted
    let ahead = s.delegated.respond(&req, t + Duration::seconds(30));
    assert!(ocsp::verify_response(&ahead, leaf, ca, t, FRESH).is_ok());
    // nextUpdate passed although thisUpdate is within a long window
    let short = OcspResponder::new(ca, ca, s.ca.id.signer(), s.source.clone())
        .unwrap()
        .with_validity(Duration::minutes(5));
    let resp = short.respond(&req, t - Duration::minutes(10));
    assert_eq!(
        ocsp::verify_response(&resp, leaf, ca, t, Duration::hours(1)),
        Err(OcspError::Expired {
            next_update: t - Duration::minutes(5)
        })
    );
}

#[test]
fn cert_id_mismatch_and_bad_signature() {
    let s = setup();
    let t = now();
    let other = s.ca.issue_signer("other");
    let req =
        ocsp::build_request(&s.leaf.cert_der, &s.ca.id.cert_der, DigestAlgorithm::Sha1).unwrap();
    let resp = s.by_ca.respond(&req, t);
    assert_eq!(
        ocsp::verify_response(&resp, &other.cert_der, &s.ca.id.cert_der, t, FRESH),
        Err(OcspError::CertIdMismatch)
    );
    // The CA-signed response ends with the signature; spoil its last byte.
    let mut bad = resp.clone();
    let n = bad.len();
    bad[n - 1] ^= 0x01;
    assert_eq!(
        ocsp::verify_response(&bad, &s.leaf.cert_der, &s.ca.id.cert_der, t, FRESH),
        Err(OcspError::BadSignature)
    );
    // Change the status inside the signed data: good [0] NULL (80 00) -> unknown [2] (82 00).
    let mut forged = resp;
    let pos = forged
        .windows(2)
        .position(|w| w == [0x80, 0x00])
        .expect("good status in response");
    forged[pos] = 0x82;
    assert_eq!(
        ocsp::verify_response(&forged, &s.leaf.cert_der, &s.ca.id.cert_der, t, FRESH),
        Err(OcspError::BadSignature)
    );
}

#[test]
fn wrong_responder_is_refused() {
    let s = setup();
    // A leaf without id-kp-OCSPSigning cannot be a responder.
    let not_ocsp = s.ca.issue_signer("not an OCSP signer");
    assert_eq!(
        OcspResponder::new(
            &s.ca.id.cert_der,
            &not_ocsp.cert_der,
            not_ocsp.signer(),
            s.source.clone()
        )
        .unwrap_err(),
        OcspError::WrongResponder
    );
    // A responder certified by another CA cannot answer for this one.
    let rogue_ca = Ca::new("Rogue CA");
    let rogue = rogue_ca.issue_ocsp_responder("rogue OCSP");
    assert_eq!(
        OcspResponder::new(
            &s.ca.id.cert_der,
            &rogue.cert_der,
            rogue.signer(),
            s.source.clone()
        )
        .unwrap_err(),
        OcspError::WrongResponder
    );
    // A key that does not belong to the certificate.
    assert_eq!(
        OcspResponder::new(
            &s.ca.id.cert_der,
            &s.ca.id.cert_der,
            rogue.signer(),
            s.source.clone()
        )
        .unwrap_err(),
        OcspError::KeyMismatch
    );
    // A response from the rogue CA's own responder about a certificate it "knows" is checked
    // against our CA: the CertID does not match our issuer.
    let rogue_resp = OcspResponder::new(
        &rogue_ca.id.cert_der,
        &rogue.cert_der,
        rogue.signer(),
        s.source.clone(),
    )
    .unwrap();
    let req = ocsp::build_request(
        &s.leaf.cert_der,
        &rogue_ca.id.cert_der,
        DigestAlgorithm::Sha1,
    )
    .unwrap();
    let resp = rogue_resp.respond(&req, now());
    assert_eq!(
        ocsp::verify_response(&resp, &s.leaf.cert_der, &s.ca.id.cert_der, now(), FRESH),
        Err(OcspError::CertIdMismatch)
    );
}
