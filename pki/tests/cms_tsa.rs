//! CMS detached signatures and RFC 3161 timestamps, in memory.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly by design

mod fixtures;

use std::sync::Arc;

use const_oid::ObjectIdentifier;
use fixtures::Ca;
use time::{Duration, OffsetDateTime};
use trustbus_pki::DigestAlgorithm;
use trustbus_pki::cms::{CmsError, CmsSigner, verify_detached};
use trustbus_pki::ocsp::{self, CertStatus, MemoryRevocationSource, OcspResponder};
use trustbus_pki::tsa::{
    self, Accuracy, MessageImprint, TimeStampRequest, TsaResponder, TspError, fail_info,
};

const POLICY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.99999.1.1");

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(OffsetDateTime::now_utc().unix_timestamp()).unwrap()
}

struct Env {
    ca: Ca,
    tsa_id: fixtures::Identity,
    tsa: TsaResponder,
}

fn env() -> Env {
    let ca = Ca::new("CMS CA");
    let tsa_id = ca.issue_tsa("Test TSA");
    let tsa = TsaResponder::new(&tsa_id.cert_der, tsa_id.signer(), POLICY)
        .unwrap()
        .with_accuracy(Accuracy {
            seconds: 1,
            millis: 0,
            micros: 0,
        });
    Env { ca, tsa_id, tsa }
}

fn stamp(tsa: &TsaResponder, alg: DigestAlgorithm, digest: &[u8]) -> Vec<u8> {
    let q = TimeStampRequest::new(alg, digest)
        .with_cert_req(true)
        .to_der()
        .unwrap();
    tsa::parse_reply(&tsa.respond(&q, now())).unwrap()
}

#[test]
fn tsa_grants_and_tokens_verify() {
    let e = env();
    let approved = vec![e.tsa_id.cert_der.clone()];
    let imprint = MessageImprint::of(DigestAlgorithm::Sha256, b"merkle root");
    let t = now();

    // with certReq and a nonce
    let q = TimeStampRequest::new(imprint.alg, &imprint.digest)
        .with_cert_req(true)
        .with_nonce(vec![0x01, 0x02, 0x03])
        .to_der()
        .unwrap();
    let token = tsa::parse_reply(&e.tsa.respond(&q, t)).unwrap();
    let v = tsa::verify_token(&token, &imprint, &approved).unwrap();
    assert_eq!(v.gen_time, t);
    assert_eq!(v.nonce, Some(vec![0x01, 0x02, 0x03]));
    assert_eq!(v.policy, POLICY);
    assert_eq!(v.tsa_cert, e.tsa_id.cert_der);
    assert_eq!(v.accuracy.unwrap().seconds, 1);
    let first_serial = v.serial;

    // X-Road style: no certReq, no nonce; the TSA cert comes from the approved list
    let q = TimeStampRequest::new(imprint.alg, &imprint.digest)
        .to_der()
        .unwrap();
    let token = tsa::parse_reply(&e.tsa.respond(&q, t)).unwrap();
    let v = tsa::verify_token(&token, &imprint, &approved).unwrap();
    assert_eq!(v.nonce, None);
    assert!(v.serial > first_serial, "serials increase");
    assert_eq!(e.tsa.next_serial(), 3);

    // SHA-512 imprint
    let imprint512 = MessageImprint::of(DigestAlgorithm::Sha512, b"x");
    let token = stamp(&e.tsa, imprint512.alg, &imprint512.digest);
    tsa::verify_token(&token, &imprint512, &approved).unwrap();
}

#[test]
fn tsa_rejects_bad_requests() {
    let e = env();
    let rej = |reply: Vec<u8>| match tsa::parse_reply(&reply) {
        Err(TspError::Rejected {
            status, fail_info, ..
        }) => {
            assert_eq!(status, 2);
            fail_info
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(
        rej(e.tsa.respond(b"garbage", now())),
        vec![fail_info::BAD_DATA_FORMAT]
    );
    let sha1 = TimeStampRequest::new(DigestAlgorithm::Sha1, &[0; 20])
        .to_der()
        .unwrap();
    assert_eq!(rej(e.tsa.respond(&sha1, now())), vec![fail_info::BAD_ALG]);
    let short = TimeStampRequest::new(DigestAlgorithm::Sha256, &[0; 20])
        .to_der()
        .unwrap();
    assert_eq!(
        rej(e.tsa.respond(&short, now())),
        vec![fail_info::BAD_DATA_FORMAT]
    );
    let policy = TimeStampRequest::new(DigestAlgorithm::Sha256, &[0; 32])
        .with_policy(ObjectIdentifier::new_unwrap("1.2.3.4"))
        .to_der()
        .unwrap();
    assert_eq!(
        rej(e.tsa.respond(&policy, now())),
        vec![fail_info::UNACCEPTED_POLICY]
    );
}

#[test]
fn token_negative_cases() {
    let e = env();
    let approved = vec![e.tsa_id.cert_der.clone()];
    let imprint = MessageImprint::of(DigestAlgorithm::Sha256, b"data");
    let token = stamp(&e.tsa, imprint.alg, &imprint.digest);

    // timestamp over other data
    let other = MessageImprint::of(DigestAlgorithm::Sha256, b"other data");
    assert_eq!(
        tsa::verify_token(&token, &other, &approved),
        Err(TspError::ImprintMismatch)
    );
    // TSA not approved
    let other_tsa = e.ca.issue_tsa("other TSA");
    assert_eq!(
        tsa::verify_token(&token, &imprint, &[other_tsa.cert_der]),
        Err(TspError::NotApproved)
    );
    // tampered TSTInfo (the imprint inside the token): digest no longer matches
    let mut tampered = token.clone();
    let pos = tampered
        .windows(imprint.digest.len())
        .position(|w| w == imprint.digest.as_slice())
        .unwrap();
    tampered[pos] ^= 1;
    assert_eq!(
        tsa::verify_token(&tampered, &imprint, &approved),
        Err(TspError::Cms(CmsError::DigestMismatch))
    );
    // tampered signature
    let mut bad_sig = token;
    let n = bad_sig.len();
    bad_sig[n - 1] ^= 1;
    assert_eq!(
        tsa::verify_token(&bad_sig, &imprint, &approved),
        Err(TspError::Cms(CmsError::BadSignature))
    );
    // a certificate without id-kp-timeStamping cannot run a TSA
    let plain = e.ca.issue_signer("not a TSA");
    assert_eq!(
        TsaResponder::new(&plain.cert_der, plain.signer(), POLICY).unwrap_err(),
        TspError::NotTimestampingCert
    );
}

struct Signed {
    ca: Ca,
    member: fixtures::Identity,
    tsa_id: fixtures::Identity,
    ocsp_der: Vec<u8>,
    sig: Vec<u8>,
}

fn signed(content: &[u8]) -> Signed {
    let e = env();
    let member = e.ca.issue_signer("member signing");
    let source = Arc::new(MemoryRevocationSource::new());
    source.set(&member.serial_bytes(), CertStatus::Good);
    let responder = OcspResponder::new(
        &e.ca.id.cert_der,
        &e.ca.id.cert_der,
        e.ca.id.signer(),
        source,
    )
    .unwrap();
    let req =
        ocsp::build_request(&member.cert_der, &e.ca.id.cert_der, DigestAlgorithm::Sha1).unwrap();
    let ocsp_der = responder.respond(&req, now());
    let signer = member.signer();
    let tsa = &e.tsa;
    let timestamper = |alg: DigestAlgorithm, d: &[u8]| -> Result<Vec<u8>, String> {
        let q = TimeStampRequest::new(alg, d)
            .to_der()
            .map_err(|e| e.to_string())?;
        tsa::parse_reply(&tsa.respond(&q, now())).map_err(|e| e.to_string())
    };
    let sig = CmsSigner::new(signer.as_ref(), &member.cert_der)
        .unwrap()
        .with_chain(std::slice::from_ref(&e.ca.id.cert_der))
        .unwrap()
        .with_ocsp_response(ocsp_der.clone())
        .sign_detached(content, now(), Some(&timestamper))
        .unwrap();
    Signed {
        ca: e.ca,
        member,
        tsa_id: e.tsa_id,
        ocsp_der,
        sig,
    }
}

#[test]
fn cms_detached_round_trip_with_ocsp_and_timestamp() {
    let s = signed(b"manifest bytes");
    let v = verify_detached(&s.sig, b"manifest bytes", now()).unwrap();
    assert_eq!(v.signer_cert, s.member.cert_der);
    assert_eq!(v.chain, vec![s.ca.id.cert_der.clone()]);
    assert_eq!(v.ocsp_responses, vec![s.ocsp_der.clone()]);
    assert_eq!(v.digest_algorithm, DigestAlgorithm::Sha256);
    assert!((now() - v.signing_time).abs() < Duration::seconds(5));
    v.expect_signer(&s.member.cert_der).unwrap();
    // the embedded OCSP response verifies for the signer
    let st = ocsp::verify_response(
        &v.ocsp_responses[0],
        &v.signer_cert,
        &v.chain[0],
        now(),
        Duration::minutes(5),
    )
    .unwrap();
    assert_eq!(st.status, CertStatus::Good);
    // and the signature timestamp covers the signature value
    let ts = tsa::verify_signature_timestamp(&v, &[s.tsa_id.cert_der]).unwrap();
    assert_eq!(ts.imprint.alg, DigestAlgorithm::Sha256);
}

#[test]
fn cms_negative_cases() {
    let s = signed(b"manifest bytes");
    // tampered content
    assert_eq!(
        verify_detached(&s.sig, b"manifest bytez", now()),
        Err(CmsError::DigestMismatch)
    );
    // wrong signer
    let v = verify_detached(&s.sig, b"manifest bytes", now()).unwrap();
    let other = s.ca.issue_signer("someone else");
    assert_eq!(v.expect_signer(&other.cert_der), Err(CmsError::WrongSigner));
    // signing time in the future / outside the certificate's validity
    assert!(matches!(
        verify_detached(&s.sig, b"manifest bytes", now() - Duration::hours(1)),
        Err(CmsError::SigningTimeInFuture(_))
    ));
    // a key that does not belong to the certificate cannot sign
    let signer = other.signer();
    assert!(matches!(
        CmsSigner::new(signer.as_ref(), &s.member.cert_der)
            .unwrap()
            .sign_detached(b"x", now(), None),
        Err(CmsError::Signing(_))
    ));
    // certificate not valid at signing time
    let expired = s.ca.issue_with_validity(
        "expired",
        now() - Duration::days(10),
        now() - Duration::days(5),
    );
    let esigner = expired.signer();
    let sig = CmsSigner::new(esigner.as_ref(), &expired.cert_der)
        .unwrap()
        .sign_detached(b"x", now(), None)
        .unwrap();
    assert_eq!(
        verify_detached(&sig, b"x", now()),
        Err(CmsError::CertificateNotValidAtSigningTime)
    );
    // garbage
    assert!(matches!(
        verify_detached(b"\x30\x03\x02\x01\x00", b"x", now()),
        Err(CmsError::Malformed(_))
    ));
}

/// A new member signer and its detached signature over `b"content"` (no OCSP, no timestamp).
fn member_signature(e: &Env) -> (fixtures::Identity, Vec<u8>) {
    let member = e.ca.issue_signer("member");
    let sig = CmsSigner::new(member.signer().as_ref(), &member.cert_der)
        .unwrap()
        .sign_detached(b"content", now(), None)
        .unwrap();
    (member, sig)
}

#[test]
fn a_substituted_signer_certificate_is_refused_by_the_ess_attribute() {
    let e = env();
    let (member, sig) = member_signature(&e);
    let signer = member.signer();
    verify_detached(&sig, b"content", now()).unwrap();
    // Another certificate for the same key, issuer and serial, of the same length, put in
    // place of the signer's: the signature value still verifies under the key, so only the
    // signing-certificate-v2 attribute's hash of the certificate tells them apart.
    let twin = (0..64)
        .map(|_| e.ca.reissue_same_serial(&member, "member"))
        .find(|t| t.cert_der.len() == member.cert_der.len() && t.cert_der != member.cert_der)
        .expect("a reissued certificate of the same length");
    let at = sig
        .windows(member.cert_der.len())
        .position(|w| w == member.cert_der.as_slice())
        .expect("the signer's certificate inside the signature");
    let mut swapped = sig;
    swapped[at..at + twin.cert_der.len()].copy_from_slice(&twin.cert_der);
    assert_eq!(
        verify_detached(&swapped, b"content", now()),
        Err(CmsError::SigningCertificateMismatch)
    );
    // The twin itself is a good certificate for the key: signed with it, it verifies.
    let own = CmsSigner::new(signer.as_ref(), &twin.cert_der)
        .unwrap()
        .sign_detached(b"content", now(), None)
        .unwrap();
    assert_eq!(
        verify_detached(&own, b"content", now())
            .unwrap()
            .signer_cert,
        twin.cert_der
    );
}

#[test]
fn signature_timestamp_over_other_data_is_refused() {
    let e = env();
    let member = e.ca.issue_signer("member");
    let signer = member.signer();
    let tsa = &e.tsa;
    // a "timestamper" that stamps something else than what it was given
    let lying = |alg: DigestAlgorithm, _d: &[u8]| -> Result<Vec<u8>, String> {
        let other = alg.digest(b"something else");
        let q = TimeStampRequest::new(alg, &other)
            .to_der()
            .map_err(|e| e.to_string())?;
        tsa::parse_reply(&tsa.respond(&q, now())).map_err(|e| e.to_string())
    };
    let sig = CmsSigner::new(signer.as_ref(), &member.cert_der)
        .unwrap()
        .sign_detached(b"content", now(), Some(&lying))
        .unwrap();
    let v = verify_detached(&sig, b"content", now()).unwrap();
    assert_eq!(
        tsa::verify_signature_timestamp(&v, std::slice::from_ref(&e.tsa_id.cert_der)),
        Err(TspError::ImprintMismatch)
    );
}

#[test]
fn tampered_signature_value_is_bad_signature() {
    let (_, sig) = member_signature(&env());
    let mut bad = sig;
    let n = bad.len();
    bad[n - 1] ^= 1;
    assert_eq!(
        verify_detached(&bad, b"content", now()),
        Err(CmsError::BadSignature)
    );
}
