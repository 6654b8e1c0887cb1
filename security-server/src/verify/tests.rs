use std::sync::Arc;

use time::{Duration, OffsetDateTime};
use trustbus_pki::cms::CmsSigner;
use trustbus_pki::{Certificate, KeyPair};
use trustbus_sdk::FaultDialect;
use trustbus_sdk::fault::Origin;
use trustbus_sdk::id::{ClientId, SecurityServerId, ServiceId};

use super::*;
use crate::gcview::GcView;
use crate::testkit::{TestPki, global_conf, server_entry, shared_params};
use crate::transport::decode::decode_all;
use crate::transport::encode::{Encoder, ObjectDigest, manifest};
use crate::transport::*;
use trustbus_pki::chain::Purpose;
use trustbus_sdk::fault::ErrorKind;

struct Fx {
    _dir: tempfile::TempDir,
    pki: TestPki,
    view: GcView,
    a: (KeyPair, Certificate),
    b: (KeyPair, Certificate),
    now: OffsetDateTime,
}

fn client() -> ClientId {
    ClientId::from_slash("DEV/GOV/1/cons").unwrap()
}

fn fx() -> Fx {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(&dir.path().join("ca")).unwrap();
    let a = pki.sign_cert(&client().owner()).unwrap();
    let b = pki
        .sign_cert(&ClientId::from_slash("DEV/GOV/2").unwrap())
        .unwrap();
    let ss = SecurityServerId::from_slash("DEV/GOV/1/ss1").unwrap();
    let (_, auth) = pki.auth_cert(&ss).unwrap();
    let shared = shared_params(
        &[client()],
        vec![server_entry(&ss, "127.0.0.1:1", &auth, &[client()])],
        pki.approved_ca("http://127.0.0.1:1/ocsp"),
    );
    let now = crate::now();
    let view = GcView::new(global_conf(shared, 1, now + Duration::hours(1)));
    Fx {
        _dir: dir,
        pki,
        view,
        a,
        b,
        now,
    }
}

fn meta() -> Metadata {
    Metadata {
        protocol: PROTOCOL.into(),
        kind: PayloadKind::Rest,
        direction: Direction::Request,
        message_id: "m1".into(),
        request_id: "r1".into(),
        client: client(),
        service: ServiceId::from_slash("DEV/GOV/2/prov/svc").unwrap(),
        user: None,
        issue: None,
        represented_party: None,
        target_server: None,
        content_type: None,
        soap_action: None,
        request_hash: None,
        status: None,
    }
}

/// A message signed by `signer` with `ocsp` embedded; `tamper` edits the head after signing.
fn message(
    signer: &(KeyPair, Certificate),
    ocsp: Option<Vec<u8>>,
    tamper: bool,
    now: OffsetDateTime,
) -> ReceivedMessage {
    let enc = Encoder::new();
    let m = meta().to_bytes();
    let head = b"GET\r\n/r1/DEV/GOV/2/prov/svc/x\r\n".to_vec();
    let body = b"{}".to_vec();
    let digests = [
        ObjectDigest::of(MESSAGE_JSON, CT_JSON, &m),
        ObjectDigest::of(PAYLOAD_HEAD, CT_REST_REQUEST, &head),
        ObjectDigest::of(PAYLOAD_BODY, CT_REST_BODY, &body),
    ];
    let man = manifest(&digests);
    let mut s = CmsSigner::new(&signer.0, signer.1.der()).unwrap();
    if let Some(o) = ocsp {
        s = s.with_ocsp_response(o);
    }
    let sig = s.sign_detached(&man, now, None).unwrap();
    let mut out = enc.part(MESSAGE_JSON, CT_JSON, &m);
    let mut sent_head = head;
    if tamper {
        sent_head[0] = b'P';
    }
    out.extend(enc.part(PAYLOAD_HEAD, CT_REST_REQUEST, &sent_head));
    out.extend(enc.part(PAYLOAD_BODY, CT_REST_BODY, &body));
    out.extend(enc.trailer(&man, &sig, &[]));
    decode_all(&enc.content_type(), &out, &Limits::default())
        .unwrap()
        .0
}

fn code(r: Result<Verified, Fault>) -> String {
    r.unwrap_err().code.render(FaultDialect::Classic)
}

#[test]
fn good_message_verifies_and_is_cached() {
    let f = fx();
    let cache = VerifyCache::new();
    let msg = message(&f.a, Some(f.pki.ocsp(&f.a.1, f.now)), false, f.now);
    let v = verify_message(
        &f.view,
        &cache,
        &msg,
        &client().owner(),
        Origin::ServerProxy,
        f.now,
    )
    .unwrap();
    assert_eq!(v.signer, f.a.1);
    assert_eq!(cache.len(), 1);
    verify_message(
        &f.view,
        &cache,
        &msg,
        &client().owner(),
        Origin::ServerProxy,
        f.now,
    )
    .unwrap();
    assert_eq!(cache.len(), 1, "second check served from the cache");
}

#[test]
fn tampered_payload_is_refused() {
    let f = fx();
    let msg = message(&f.a, Some(f.pki.ocsp(&f.a.1, f.now)), true, f.now);
    assert_eq!(
        code(verify_message(
            &f.view,
            &VerifyCache::new(),
            &msg,
            &client().owner(),
            Origin::ServerProxy,
            f.now
        )),
        "Server.ServerProxy.SignatureVerification.InvalidReference"
    );
}

#[test]
fn signature_by_another_member_is_refused() {
    let f = fx();
    let msg = message(&f.b, Some(f.pki.ocsp(&f.b.1, f.now)), false, f.now);
    assert_eq!(
        code(verify_message(
            &f.view,
            &VerifyCache::new(),
            &msg,
            &client().owner(),
            Origin::ServerProxy,
            f.now
        )),
        "Server.ServerProxy.CertValidation.IncorrectCertificate"
    );
}

#[test]
fn revoked_signing_certificate_is_refused() {
    let f = fx();
    f.pki
        .ca
        .revoke(&f.a.1, trustbus_pki::revocation::CrlReason::KeyCompromise)
        .unwrap();
    let msg = message(&f.a, Some(f.pki.ocsp(&f.a.1, f.now)), false, f.now);
    let e = verify_message(
        &f.view,
        &VerifyCache::new(),
        &msg,
        &client().owner(),
        Origin::ServerProxy,
        f.now,
    )
    .unwrap_err();
    assert_eq!(
        e.code.render(FaultDialect::Classic),
        "Server.ServerProxy.CertValidation"
    );
    assert!(e.message.contains("revoked"), "{}", e.message);
}

#[test]
fn stale_or_missing_ocsp_is_refused() {
    let f = fx();
    let stale = f.pki.ocsp(&f.a.1, f.now - Duration::hours(2));
    let msg = message(&f.a, Some(stale), false, f.now);
    assert_eq!(
        code(verify_message(
            &f.view,
            &VerifyCache::new(),
            &msg,
            &client().owner(),
            Origin::ServerProxy,
            f.now
        )),
        "Server.ServerProxy.CertValidation.IncorrectValidationInfo"
    );
    let msg = message(&f.a, None, false, f.now);
    assert_eq!(
        code(verify_message(
            &f.view,
            &VerifyCache::new(),
            &msg,
            &client().owner(),
            Origin::ClientProxy,
            f.now
        )),
        "Server.ClientProxy.CertValidation.MissingValidationInfo"
    );
}

#[test]
fn cached_result_expires_with_the_ocsp_freshness() {
    let f = fx();
    let cache = VerifyCache::new();
    let msg = message(&f.a, Some(f.pki.ocsp(&f.a.1, f.now)), false, f.now);
    verify_message(
        &f.view,
        &cache,
        &msg,
        &client().owner(),
        Origin::ServerProxy,
        f.now,
    )
    .unwrap();
    let later = f.now + Duration::hours(2);
    assert_eq!(
        code(verify_message(
            &f.view,
            &cache,
            &msg,
            &client().owner(),
            Origin::ServerProxy,
            later
        )),
        "Server.ServerProxy.CertValidation.IncorrectValidationInfo"
    );
}

#[test]
fn unapproved_ca_is_refused() {
    let f = fx();
    let dir = tempfile::tempdir().unwrap();
    let other = TestPki::new(dir.path()).unwrap();
    let rogue = other.sign_cert(&client().owner()).unwrap();
    let msg = message(&rogue, Some(other.ocsp(&rogue.1, f.now)), false, f.now);
    assert_eq!(
        code(verify_message(
            &f.view,
            &VerifyCache::new(),
            &msg,
            &client().owner(),
            Origin::ServerProxy,
            f.now
        )),
        "Server.ServerProxy.CertValidation.InvalidCertPath"
    );
}

#[test]
fn garbled_signature_is_refused() {
    let f = fx();
    let mut msg = message(&f.a, Some(f.pki.ocsp(&f.a.1, f.now)), false, f.now);
    msg.signature = b"not a signature".to_vec();
    assert_eq!(
        code(verify_message(
            &f.view,
            &VerifyCache::new(),
            &msg,
            &client().owner(),
            Origin::ServerProxy,
            f.now
        )),
        "Server.ServerProxy.SignatureVerification.MalformedSignature"
    );
    let _ = Arc::new(());
}

#[test]
fn broken_signature_value_is_refused() {
    let f = fx();
    let mut msg = message(&f.a, Some(f.pki.ocsp(&f.a.1, f.now)), false, f.now);
    // The signature value is the last element of the DER: change its final byte.
    let last = msg.signature.len() - 1;
    msg.signature[last] ^= 0x01;
    assert_eq!(
        code(verify_message(
            &f.view,
            &VerifyCache::new(),
            &msg,
            &client().owner(),
            Origin::ServerProxy,
            f.now
        )),
        "Server.ServerProxy.SignatureVerification.InvalidSignatureValue"
    );
}

#[test]
fn signature_outside_the_certificate_validity_is_refused() {
    let f = fx();
    let key = KeyPair::generate(trustbus_pki::KeyKind::EcdsaP256).unwrap();
    let cert = f
        .pki
        .ca
        .issue(&trustbus_pki::devca::IssueRequest {
            profile: profile::CertProfile::Sign,
            member: client().owner(),
            member_name: "x".into(),
            server_code: None,
            key: trustbus_pki::devca::SubjectKey::Spki(trustbus_pki::Signer::public_key_der(&key)),
            not_before: Some(f.now - Duration::days(10)),
            not_after: Some(f.now - Duration::days(1)),
        })
        .unwrap();
    let expired = (key, cert);
    let msg = message(&expired, Some(f.pki.ocsp(&expired.1, f.now)), false, f.now);
    assert_eq!(
        code(verify_message(
            &f.view,
            &VerifyCache::new(),
            &msg,
            &client().owner(),
            Origin::ServerProxy,
            f.now
        )),
        "Server.ServerProxy.CertValidation.CertValidityTime"
    );
}

#[test]
fn authentication_certificate_ocsp_is_checked() {
    let f = fx();
    let ss = SecurityServerId::from_slash("DEV/GOV/1/ss1").unwrap();
    let (_, auth) = f.pki.auth_cert(&ss).unwrap();
    let check = |responses: &[Vec<u8>]| {
        check_certificate(
            &f.view,
            &VerifyCache::new(),
            &auth,
            &[],
            responses,
            Purpose::Auth,
            Origin::ClientProxy,
            ErrorKind::SslAuthenticationFailed,
            f.now,
        )
        .map(|_| ())
        .map_err(|e| e.code.render(FaultDialect::Classic))
    };
    check(&[f.pki.ocsp(&auth, f.now)]).unwrap();
    assert_eq!(
        check(&[]).unwrap_err(),
        "Server.ClientProxy.SslAuthenticationFailed.MissingValidationInfo"
    );
    assert_eq!(
        check(&[f.pki.ocsp(&auth, f.now - Duration::hours(3))]).unwrap_err(),
        "Server.ClientProxy.SslAuthenticationFailed.IncorrectValidationInfo"
    );
    // A signing certificate offered as an authentication certificate has no auth path.
    let r = check_certificate(
        &f.view,
        &VerifyCache::new(),
        &f.a.1,
        &[],
        &[f.pki.ocsp(&f.a.1, f.now)],
        Purpose::Auth,
        Origin::ClientProxy,
        ErrorKind::SslAuthenticationFailed,
        f.now,
    );
    assert_eq!(
        r.unwrap_err().code.render(FaultDialect::Classic),
        "Server.ClientProxy.SslAuthenticationFailed.InvalidCertPath"
    );
}

/// The signed message is an ASiC-E evidence container as it is: the data objects, the
/// manifest and the signature go into a container without re-signing, and it verifies.
#[test]
fn message_is_an_evidence_container_without_resigning() {
    use trustbus_pki::asic::{AsicBuilder, AsicContainer, AsicLimits};
    let f = fx();
    let msg = message(&f.a, Some(f.pki.ocsp(&f.a.1, f.now)), false, f.now);
    let mut b = AsicBuilder::new(MANIFEST_DIGEST);
    b.add_file(MESSAGE_JSON, CT_JSON, msg.meta_bytes.clone())
        .unwrap();
    b.add_file(PAYLOAD_HEAD, CT_REST_REQUEST, msg.head.clone())
        .unwrap();
    b.add_file(PAYLOAD_BODY, CT_REST_BODY, b"{}".to_vec())
        .unwrap();
    assert_eq!(b.manifest(), msg.manifest, "same manifest bytes");
    let zip = b.build_with_signature(&msg.signature).unwrap();
    let c = AsicContainer::read(&zip, &AsicLimits::default()).unwrap();
    let v = c.verify_signature(f.now).unwrap();
    assert_eq!(v.signer_cert, f.a.1.der());
}

/// Verifies `msg` as a request from `client()` with `cache` at `at`, rendering a fault's code.
fn verify_with(f: &Fx, cache: &VerifyCache, msg: &ReceivedMessage, at: OffsetDateTime) -> String {
    match verify_message(
        &f.view,
        cache,
        msg,
        &client().owner(),
        Origin::ServerProxy,
        at,
    ) {
        Ok(_) => "ok".into(),
        Err(e) => e.code.render(FaultDialect::Classic),
    }
}

#[test]
fn warm_cache_still_refuses_a_revoked_certificate() {
    let f = fx();
    let cache = VerifyCache::new();
    let good = message(&f.a, Some(f.pki.ocsp(&f.a.1, f.now)), false, f.now);
    assert_eq!(verify_with(&f, &cache, &good, f.now), "ok");
    assert_eq!(cache.len(), 1);
    f.pki
        .ca
        .revoke(&f.a.1, trustbus_pki::revocation::CrlReason::KeyCompromise)
        .unwrap();
    // Same certificate, same signer, a new response that says revoked: not served from cache.
    let revoked = message(&f.a, Some(f.pki.ocsp(&f.a.1, f.now)), false, f.now);
    assert_eq!(
        verify_with(&f, &cache, &revoked, f.now),
        "Server.ServerProxy.CertValidation"
    );
    // The good result stays cached for the good response only.
    assert_eq!(verify_with(&f, &cache, &good, f.now), "ok");
}

#[test]
fn warm_cache_still_refuses_a_stale_response() {
    let f = fx();
    let cache = VerifyCache::new();
    let good = message(&f.a, Some(f.pki.ocsp(&f.a.1, f.now)), false, f.now);
    assert_eq!(verify_with(&f, &cache, &good, f.now), "ok");
    let stale = message(
        &f.a,
        Some(f.pki.ocsp(&f.a.1, f.now - Duration::hours(2))),
        false,
        f.now,
    );
    assert_eq!(
        verify_with(&f, &cache, &stale, f.now),
        "Server.ServerProxy.CertValidation.IncorrectValidationInfo"
    );
}

#[test]
fn warm_cache_still_refuses_another_certificate_of_the_same_member() {
    let f = fx();
    let cache = VerifyCache::new();
    let good = message(&f.a, Some(f.pki.ocsp(&f.a.1, f.now)), false, f.now);
    assert_eq!(verify_with(&f, &cache, &good, f.now), "ok");
    // A new key and certificate for the same member, revoked at once: its own check runs.
    let renewed = f.pki.sign_cert(&client().owner()).unwrap();
    assert_eq!(renewed.1.subject(), f.a.1.subject());
    f.pki
        .ca
        .revoke(
            &renewed.1,
            trustbus_pki::revocation::CrlReason::KeyCompromise,
        )
        .unwrap();
    let msg = message(&renewed, Some(f.pki.ocsp(&renewed.1, f.now)), false, f.now);
    assert_eq!(
        verify_with(&f, &cache, &msg, f.now),
        "Server.ServerProxy.CertValidation"
    );
    // The first certificate's good response does not vouch for the renewed certificate.
    let borrowed = message(&renewed, Some(f.pki.ocsp(&f.a.1, f.now)), false, f.now);
    assert_eq!(
        verify_with(&f, &cache, &borrowed, f.now),
        "Server.ServerProxy.CertValidation.IncorrectValidationInfo"
    );
    // A certificate of the same member from a CA that is not approved.
    let dir = tempfile::tempdir().unwrap();
    let other = TestPki::new(dir.path()).unwrap();
    let rogue = other.sign_cert(&client().owner()).unwrap();
    let msg = message(&rogue, Some(other.ocsp(&rogue.1, f.now)), false, f.now);
    assert_eq!(
        verify_with(&f, &cache, &msg, f.now),
        "Server.ServerProxy.CertValidation.InvalidCertPath"
    );
}

#[test]
fn warm_cache_does_not_outlive_the_configuration_that_approved_the_ca() {
    let f = fx();
    let cache = VerifyCache::new();
    let good = message(&f.a, Some(f.pki.ocsp(&f.a.1, f.now)), false, f.now);
    assert_eq!(verify_with(&f, &cache, &good, f.now), "ok");
    // Version 2 of the configuration no longer approves the CA.
    let ss = SecurityServerId::from_slash("DEV/GOV/1/ss1").unwrap();
    let (_, auth) = f.pki.auth_cert(&ss).unwrap();
    let mut shared = shared_params(
        &[client()],
        vec![server_entry(&ss, "127.0.0.1:1", &auth, &[client()])],
        f.pki.approved_ca("http://127.0.0.1:1/ocsp"),
    );
    shared.approved_cas.clear();
    let v2 = GcView::new(global_conf(shared, 2, f.now + Duration::hours(1)));
    let r = verify_message(
        &v2,
        &cache,
        &good,
        &client().owner(),
        Origin::ServerProxy,
        f.now,
    );
    assert_eq!(code(r), "Server.ServerProxy.CertValidation.InvalidCertPath");
}
