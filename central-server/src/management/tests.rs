//! Trust decisions of [`super::verify_envelope`] against a registry state, with a real
//! development CA and OCSP responses. The end-to-end test covers the same rules through the
//! HTTP listener; these cover the combinations that are awkward to reach there.

use std::sync::Arc;

use time::{Duration, OffsetDateTime};
use trustbus_pki::devca::{DevCa, IssueRequest, SubjectKey};
use trustbus_pki::key::{KeyKind, KeyPair};
use trustbus_pki::ocsp::{self, MemoryRevocationSource, OcspResponder};
use trustbus_pki::profile::CertProfile;
use trustbus_pki::revocation::{CrlReason, RevocationSource};
use trustbus_pki::{Certificate, DigestAlgorithm, Signer};
use trustbus_sdk::id::{ClientId, SecurityServerId};

use super::{CanonicalRequest, Envelope, RequestBody, VerifyContext, verify_envelope};
use crate::model::{ApprovedCa, OcspResponder as OcspEntry, SecurityServer};
use crate::registry::RegistryState;
use crate::util;

const ECDSA: &str = "1.2.840.10045.4.3.2";

struct Fixture {
    _dir: tempfile::TempDir,
    ca: DevCa,
    auth_only: DevCa,
    state: RegistryState,
}

fn fixture(with_responder: bool) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let ca = DevCa::init(&dir.path().join("ca"), "DEV").unwrap();
    let auth_only = DevCa::init(&dir.path().join("auth-only"), "DEV").unwrap();
    let mut state = RegistryState::default();
    state.cas.insert(
        "dev".into(),
        ApprovedCa {
            name: "dev".into(),
            authentication_only: false,
            roots: vec![util::b64(ca.ca_cert().der())],
            intermediates: vec![],
            ocsp_responders: if with_responder {
                vec![OcspEntry {
                    url: "http://127.0.0.1:9/ocsp".into(),
                    cert: None,
                }]
            } else {
                vec![]
            },
            certificate_profile: "trustbus-default".into(),
        },
    );
    state.cas.insert(
        "auth-only".into(),
        ApprovedCa {
            name: "auth-only".into(),
            authentication_only: true,
            roots: vec![util::b64(auth_only.ca_cert().der())],
            intermediates: vec![],
            ocsp_responders: vec![],
            certificate_profile: "trustbus-default".into(),
        },
    );
    Fixture {
        _dir: dir,
        ca,
        auth_only,
        state,
    }
}

struct Key {
    key: KeyPair,
    cert: Certificate,
}

fn issue(
    ca: &DevCa,
    member: &str,
    server: Option<&str>,
    validity: Option<(OffsetDateTime, OffsetDateTime)>,
) -> Key {
    let key = KeyPair::generate(KeyKind::EcdsaP256).unwrap();
    let cert = ca
        .issue(&IssueRequest {
            profile: if server.is_some() {
                CertProfile::Auth
            } else {
                CertProfile::Sign
            },
            member: ClientId::from_slash(member).unwrap(),
            member_name: "Member".into(),
            server_code: server.map(str::to_owned),
            key: SubjectKey::Spki(key.public_key_der()),
            not_before: validity.map(|v| v.0),
            not_after: validity.map(|v| v.1),
        })
        .unwrap();
    Key { key, cert }
}

fn ocsp_from<S: RevocationSource>(
    ca: &DevCa,
    source: S,
    cert: &Certificate,
    at: OffsetDateTime,
) -> Vec<u8> {
    let (ocsp_cert, ocsp_key) = ca.ocsp_signer().unwrap();
    let responder = OcspResponder::new(
        ca.ca_cert().der(),
        ocsp_cert.der(),
        Arc::new(ocsp_key),
        source,
    )
    .unwrap();
    let req = ocsp::build_request(cert.der(), ca.ca_cert().der(), DigestAlgorithm::Sha1).unwrap();
    responder.respond(&req, at)
}

fn ocsp(ca: &DevCa, cert: &Certificate) -> Vec<u8> {
    ocsp_from(ca, ca.clone(), cert, OffsetDateTime::now_utc())
}

fn envelope(
    signer: &Key,
    member: &str,
    body: RequestBody,
    auth: Option<&Key>,
    ocsp_response: Option<Vec<u8>>,
    auth_ocsp: Option<Vec<u8>>,
) -> Vec<u8> {
    let bytes = serde_json::to_vec(&CanonicalRequest {
        member: ClientId::from_slash(member).unwrap(),
        created_at: util::rfc3339(util::now()),
        request: body,
    })
    .unwrap();
    serde_json::to_vec(&Envelope {
        request: util::b64(&bytes),
        signature: util::b64(&signer.key.sign(&bytes).unwrap()),
        signature_algorithm: ECDSA.into(),
        signing_cert: util::b64(signer.cert.der()),
        auth_signature: auth.map(|a| util::b64(&a.key.sign(&bytes).unwrap())),
        auth_signature_algorithm: auth.map(|_| ECDSA.into()),
        ocsp_response: ocsp_response.map(|r| util::b64(&r)),
        auth_ocsp_response: auth_ocsp.map(|r| util::b64(&r)),
    })
    .unwrap()
}

fn check(state: &RegistryState, body: &[u8], tls: Option<&Certificate>) -> Result<(), String> {
    verify_envelope(
        body,
        &VerifyContext {
            state,
            now: OffsetDateTime::now_utc(),
            tls_peer: tls,
        },
    )
    .map(|_| ())
    .map_err(|e| e.code().to_owned())
}

fn server(s: &str) -> SecurityServerId {
    SecurityServerId::from_slash(s).unwrap()
}

fn address_change() -> RequestBody {
    RequestBody::AddressChange {
        server: server("DEV/GOV/1000/ss1"),
        address: "a".into(),
    }
}

fn registration(auth: &Key) -> RequestBody {
    RequestBody::AuthCertRegistration {
        server: server("DEV/GOV/1000/ss1"),
        address: "a".into(),
        auth_cert: util::b64(auth.cert.der()),
    }
}

#[test]
fn ocsp_is_optional_without_responders_but_checked_when_sent() {
    let f = fixture(false);
    let owner = issue(&f.ca, "DEV/GOV/1000", None, None);
    let plain = envelope(&owner, "DEV/GOV/1000", address_change(), None, None, None);
    assert_eq!(check(&f.state, &plain, None), Ok(()));
    let stale = ocsp_from(
        &f.ca,
        f.ca.clone(),
        &owner.cert,
        OffsetDateTime::now_utc() - Duration::hours(2),
    );
    let with_stale = envelope(
        &owner,
        "DEV/GOV/1000",
        address_change(),
        None,
        Some(stale),
        None,
    );
    assert_eq!(check(&f.state, &with_stale, None), Err("stale_ocsp".into()));
    let unknown = ocsp_from(
        &f.ca,
        MemoryRevocationSource::new(),
        &owner.cert,
        OffsetDateTime::now_utc(),
    );
    let with_unknown = envelope(
        &owner,
        "DEV/GOV/1000",
        address_change(),
        None,
        Some(unknown),
        None,
    );
    assert_eq!(
        check(&f.state, &with_unknown, None),
        Err("unknown_certificate_status".into())
    );
    let garbage = envelope(
        &owner,
        "DEV/GOV/1000",
        address_change(),
        None,
        Some(b"\x30\x03\x0a\x01\x00".to_vec()),
        None,
    );
    assert_eq!(
        check(&f.state, &garbage, None),
        Err("invalid_ocsp_response".into())
    );
    f.ca.revoke(&owner.cert, CrlReason::KeyCompromise).unwrap();
    let revoked = envelope(
        &owner,
        "DEV/GOV/1000",
        address_change(),
        None,
        Some(ocsp(&f.ca, &owner.cert)),
        None,
    );
    assert_eq!(
        check(&f.state, &revoked, None),
        Err("revoked_certificate".into())
    );
}

#[test]
fn responder_makes_ocsp_mandatory_for_both_certificates() {
    let f = fixture(true);
    let owner = issue(&f.ca, "DEV/GOV/1000", None, None);
    let auth = issue(&f.ca, "DEV/GOV/1000", Some("ss1"), None);
    let good = |auth_ocsp: Option<Vec<u8>>| {
        envelope(
            &owner,
            "DEV/GOV/1000",
            registration(&auth),
            Some(&auth),
            Some(ocsp(&f.ca, &owner.cert)),
            auth_ocsp,
        )
    };
    assert_eq!(
        check(&f.state, &good(Some(ocsp(&f.ca, &auth.cert))), None),
        Ok(())
    );
    assert_eq!(
        check(&f.state, &good(None), None),
        Err("missing_ocsp_response".into())
    );
    // The signing certificate's response does not cover the authentication certificate.
    assert_eq!(
        check(&f.state, &good(Some(ocsp(&f.ca, &owner.cert))), None),
        Err("invalid_ocsp_response".into())
    );
    f.ca.revoke(&auth.cert, CrlReason::Superseded).unwrap();
    assert_eq!(
        check(&f.state, &good(Some(ocsp(&f.ca, &auth.cert))), None),
        Err("revoked_certificate".into())
    );
}

#[test]
fn validity_and_ca_scope() {
    let f = fixture(false);
    let now = OffsetDateTime::now_utc();
    let expired = issue(
        &f.ca,
        "DEV/GOV/1000",
        None,
        Some((now - Duration::days(30), now - Duration::days(1))),
    );
    let future = issue(
        &f.ca,
        "DEV/GOV/1000",
        None,
        Some((now + Duration::days(1), now + Duration::days(30))),
    );
    for k in [&expired, &future] {
        let e = envelope(k, "DEV/GOV/1000", address_change(), None, None, None);
        assert_eq!(
            check(&f.state, &e, None),
            Err("untrusted_certificate".into())
        );
    }
    // An auth-only CA vouches for authentication certificates, not for signing ones.
    let owner = issue(&f.ca, "DEV/GOV/1000", None, None);
    let auth = issue(&f.auth_only, "DEV/GOV/1000", Some("ss1"), None);
    let reg = envelope(
        &owner,
        "DEV/GOV/1000",
        registration(&auth),
        Some(&auth),
        None,
        None,
    );
    assert_eq!(check(&f.state, &reg, None), Ok(()));
    let signer = issue(&f.auth_only, "DEV/GOV/1000", None, None);
    let e = envelope(&signer, "DEV/GOV/1000", address_change(), None, None, None);
    assert_eq!(
        check(&f.state, &e, None),
        Err("untrusted_certificate".into())
    );
    // A signing certificate cannot be registered as an authentication certificate.
    let reg = envelope(
        &owner,
        "DEV/GOV/1000",
        registration(&owner),
        Some(&owner),
        None,
        None,
    );
    assert_eq!(
        check(&f.state, &reg, None),
        Err("untrusted_certificate".into())
    );
    // Removing the CA from the registry withdraws trust at once.
    let mut without = f.state.clone();
    without.cas.remove("dev");
    let e = envelope(&owner, "DEV/GOV/1000", address_change(), None, None, None);
    assert_eq!(
        check(&without, &e, None),
        Err("untrusted_certificate".into())
    );
    // The certificate of DEV/GOV/1000 does not sign for another member.
    let e = envelope(&owner, "DEV/GOV/1001", address_change(), None, None, None);
    assert_eq!(
        check(&f.state, &e, None),
        Err("certificate_member_mismatch".into())
    );
}

#[test]
fn tls_binding() {
    let f = fixture(false);
    let owner = issue(&f.ca, "DEV/GOV/1000", None, None);
    let auth = issue(&f.ca, "DEV/GOV/1000", Some("ss1"), None);
    let other = issue(&f.ca, "DEV/GOV/1000", Some("ss2"), None);
    let reg = envelope(
        &owner,
        "DEV/GOV/1000",
        registration(&auth),
        Some(&auth),
        None,
        None,
    );
    // Registration: the TLS certificate must be the one being registered ...
    assert_eq!(check(&f.state, &reg, Some(&auth.cert)), Ok(()));
    assert_eq!(
        check(&f.state, &reg, Some(&other.cert)),
        Err("tls_certificate_mismatch".into())
    );
    // ... or one already registered for that server.
    let mut state = f.state;
    state.servers.insert(
        "DEV/GOV/1000/ss1".into(),
        SecurityServer {
            id: server("DEV/GOV/1000/ss1"),
            owner: ClientId::from_slash("DEV/GOV/1000").unwrap(),
            server_code: "ss1".into(),
            address: "a".into(),
            auth_cert_sha256: vec![other.cert.fingerprint_hex()],
            clients: vec![],
            maintenance: Default::default(),
        },
    );
    assert_eq!(check(&state, &reg, Some(&other.cert)), Ok(()));
    // Other requests: only a certificate registered for the server named in the request.
    let change = envelope(&owner, "DEV/GOV/1000", address_change(), None, None, None);
    assert_eq!(check(&state, &change, Some(&other.cert)), Ok(()));
    assert_eq!(
        check(&state, &change, Some(&auth.cert)),
        Err("tls_certificate_mismatch".into())
    );
}

#[test]
fn approved_ca_records_are_checked() {
    let f = fixture(true);
    let good = f.state.cas["dev"].clone();
    assert!(super::trust::check_ca_record(&good).is_ok());
    let leaf = issue(&f.ca, "DEV/GOV/1000", None, None);
    let bad = [
        ApprovedCa {
            certificate_profile: "ee-sk".into(),
            ..good.clone()
        },
        ApprovedCa {
            roots: vec![util::b64(leaf.cert.der())],
            ..good.clone()
        },
        ApprovedCa {
            intermediates: vec![util::b64(leaf.cert.der())],
            ..good.clone()
        },
        ApprovedCa {
            roots: vec![],
            ..good.clone()
        },
        ApprovedCa {
            ocsp_responders: vec![OcspEntry {
                url: " ".into(),
                cert: None,
            }],
            ..good
        },
    ];
    for ca in bad {
        assert_eq!(
            super::trust::check_ca_record(&ca).map_err(|e| e.code()),
            Err("bad_request"),
            "{ca:?}"
        );
    }
}

#[test]
fn approval_rechecks_the_certificates() {
    let f = fixture(false);
    let dir = tempfile::tempdir().unwrap();
    let registry = crate::registry::Registry::open(&dir.path().join("r"), "DEV").unwrap();
    let member = crate::model::Member {
        id: ClientId::from_slash("DEV/GOV/1000").unwrap(),
        name: "Finance".into(),
        subsystems: vec![],
    };
    let cas = f.state.cas.clone();
    registry
        .mutate(|s| {
            s.member_classes.insert(
                "GOV".into(),
                crate::model::MemberClass {
                    code: "GOV".into(),
                    description: String::new(),
                },
            );
            s.members.insert("DEV/GOV/1000".into(), member.clone());
            s.cas = cas.clone();
            Ok(())
        })
        .unwrap();
    let owner = issue(&f.ca, "DEV/GOV/1000", None, None);
    let auth = issue(&f.ca, "DEV/GOV/1000", Some("ss1"), None);
    let body = envelope(
        &owner,
        "DEV/GOV/1000",
        registration(&auth),
        Some(&auth),
        None,
        None,
    );
    let state = registry.snapshot();
    let verified = verify_envelope(
        &body,
        &VerifyContext {
            state: &state,
            now: OffsetDateTime::now_utc(),
            tls_peer: Some(&auth.cert),
        },
    )
    .unwrap();
    let policy = super::AutoApprove::default();
    let stored = super::submit(&registry, &policy, verified).unwrap();
    assert_eq!(stored.signing_cert, util::b64(owner.cert.der()));

    // The CA is withdrawn while the request waits: approval is refused, the request stays
    // pending and nothing is applied.
    registry
        .mutate(|s| {
            s.cas.remove("dev");
            Ok(())
        })
        .unwrap();
    let e = super::decide(&registry, stored.id, true, "officer").unwrap_err();
    assert_eq!(e.code(), "untrusted_certificate");
    let now = registry.snapshot();
    assert_eq!(
        now.requests[&super::request_key(stored.id)].state,
        super::RequestState::Pending
    );
    assert!(now.servers.is_empty());
    // With the CA approved again, the officer can approve.
    registry
        .mutate(|s| {
            s.cas = cas.clone();
            Ok(())
        })
        .unwrap();
    let ok = super::decide(&registry, stored.id, true, "officer").unwrap();
    assert_eq!(ok.state, super::RequestState::Approved);
    assert!(registry.snapshot().servers.contains_key("DEV/GOV/1000/ss1"));
}
