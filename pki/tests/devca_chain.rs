//! Dev CA, certificate profiles and chain validation, checked against our own rules and openssl.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::{issue, member, new_ca, openssl};
use time::{Duration, OffsetDateTime};
use trustbus_pki::Certificate;
use trustbus_pki::chain::{ChainError, Purpose, TrustStore};
use trustbus_pki::devca::{DevCa, DevCaError, IssueRequest, SubjectKey};
use trustbus_pki::digest::DigestAlgorithm;
use trustbus_pki::key::{KeyKind, KeyPair};
use trustbus_pki::profile::{
    CertProfile, ProfileError, auth_cert_server, auth_subject, sign_cert_member, sign_subject,
};
use trustbus_pki::revocation::{CertStatus, CrlReason, IssuerRef, RevocationSource};
use trustbus_pki::signature::Signer;
use trustbus_sdk::id::SecurityServerId;

fn store(ca: &DevCa) -> TrustStore {
    let mut s = TrustStore::new();
    s.add_ca(ca.ca_cert().clone(), false);
    s
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

#[test]
fn issued_certificates_verify_with_openssl() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = new_ca(d);
    let (sign, _) = issue(&ca, CertProfile::Sign, None);
    let (auth, _) = issue(&ca, CertProfile::Auth, Some("ss1"));
    Certificate::write_pem_file(&d.join("sign.pem"), &[sign]).unwrap();
    Certificate::write_pem_file(&d.join("auth.pem"), &[auth]).unwrap();

    for (file, purpose) in [
        ("sign.pem", "any"),
        ("sign.pem", "smimesign"),
        ("auth.pem", "sslclient"),
        ("auth.pem", "sslserver"),
        ("ocsp.pem", "ocsphelper"),
        ("tsa.pem", "timestampsign"),
    ] {
        let (ok, out) = openssl(
            &["verify", "-CAfile", "ca.pem", "-purpose", purpose, file],
            d,
        );
        assert!(ok, "openssl verify -purpose {purpose} {file}: {out}");
        assert!(out.contains(": OK"), "{out}");
    }
    let (ok, text) = openssl(&["x509", "-in", "auth.pem", "-noout", "-text"], d);
    assert!(ok, "{text}");
    for needle in [
        "businessCategory",
        "GOV",
        "serialNumber",
        "1234",
        "C = DEV",
        "O = Tax Board",
        "CN = ss1",
        "TLS Web Client Authentication",
        "TLS Web Server Authentication",
        "Digital Signature",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    let (_, text) = openssl(&["x509", "-in", "tsa.pem", "-noout", "-text"], d);
    assert!(
        text.contains("X509v3 Extended Key Usage: critical") && text.contains("Time Stamping"),
        "{text}"
    );
}

#[test]
fn csr_from_every_key_type_verifies_with_openssl_and_is_issued() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = new_ca(d);
    let (ok, out) = openssl(
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            "rsa.key",
        ],
        d,
    );
    assert!(ok, "{out}");
    let rsa =
        KeyPair::from_pkcs8_pem(&std::fs::read_to_string(d.join("rsa.key")).unwrap()).unwrap();
    // openssl writes Ed25519 keys as PKCS#8 v1 (no public key), which must import too.
    let (ok, out) = openssl(&["genpkey", "-algorithm", "ED25519", "-out", "ed.key"], d);
    assert!(ok, "{out}");
    let ed = KeyPair::from_pkcs8_pem(&std::fs::read_to_string(d.join("ed.key")).unwrap()).unwrap();
    let keys = [
        ed,
        KeyPair::generate(KeyKind::EcdsaP256).unwrap(),
        KeyPair::generate(KeyKind::EcdsaP384).unwrap(),
        KeyPair::generate(KeyKind::Ed25519).unwrap(),
        rsa,
    ];
    let server = SecurityServerId::new(&member(), "ss1").unwrap();
    for (i, key) in keys.iter().enumerate() {
        let subject = auth_subject(&server, "Tax Board").unwrap();
        let pem = key.csr_pem(&subject).unwrap();
        let file = format!("req{i}.csr");
        std::fs::write(d.join(&file), &pem).unwrap();
        let (ok, out) = openssl(&["req", "-in", &file, "-verify", "-noout", "-subject"], d);
        assert!(ok, "openssl req -verify {:?}: {out}", key.key_type());
        assert!(
            out.contains("businessCategory") && out.contains("CN = ss1"),
            "{out}"
        );

        let cert = ca
            .issue(&IssueRequest {
                profile: CertProfile::Auth,
                member: member(),
                member_name: "Tax Board".into(),
                server_code: Some("ss1".into()),
                key: SubjectKey::Csr(&key.csr_der(&subject).unwrap()),
                not_before: None,
                not_after: None,
            })
            .unwrap();
        assert_eq!(cert.spki_der(), key.public_key_der());
        store(&ca)
            .validate(&cert, &[], Purpose::Auth, now())
            .unwrap();
    }
    // A CSR with a broken signature is refused.
    let mut der = keys[0]
        .csr_der(&sign_subject(&member(), "Tax Board").unwrap())
        .unwrap();
    let last = der.len() - 3;
    der[last] ^= 0x01;
    let err = ca
        .issue(&IssueRequest {
            profile: CertProfile::Sign,
            member: member(),
            member_name: "Tax Board".into(),
            server_code: None,
            key: SubjectKey::Csr(&der),
            not_before: None,
            not_after: None,
        })
        .unwrap_err();
    assert!(matches!(err, DevCaError::BadCsr(_)), "{err}");
}

#[test]
fn profiles_map_issued_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let ca = new_ca(dir.path());
    let (sign, _) = issue(&ca, CertProfile::Sign, None);
    let (auth, _) = issue(&ca, CertProfile::Auth, Some("ss1"));
    let m = sign_cert_member(&sign).unwrap();
    assert_eq!(m.member, member());
    assert_eq!(m.name, "Tax Board");
    let s = auth_cert_server(&auth).unwrap();
    assert_eq!(s.server, SecurityServerId::new(&member(), "ss1").unwrap());
    // A signing certificate has no CN: it does not name a server.
    assert_eq!(
        auth_cert_server(&sign).unwrap_err(),
        ProfileError::MissingAttribute("CN")
    );
}

/// A self-signed certificate with the given subject attributes (OID arcs, value).
fn cert_with_subject(attrs: &[(&[u64], &str)]) -> Certificate {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    for (oid, v) in attrs {
        dn.push(rcgen::DnType::CustomDnType(oid.to_vec()), *v);
    }
    p.distinguished_name = dn;
    Certificate::from_der(p.self_signed(&key).unwrap().der().to_vec()).unwrap()
}

#[test]
fn profile_mapping_rejects() {
    const C: &[u64] = &[2, 5, 4, 6];
    const O: &[u64] = &[2, 5, 4, 10];
    const BC: &[u64] = &[2, 5, 4, 15];
    const SN: &[u64] = &[2, 5, 4, 5];
    let c = cert_with_subject(&[(C, "DEV"), (O, "Org"), (SN, "1234")]);
    assert_eq!(
        sign_cert_member(&c).unwrap_err(),
        ProfileError::MissingAttribute("businessCategory")
    );
    let c = cert_with_subject(&[(C, "DEV"), (O, "Org"), (BC, "GOV")]);
    assert_eq!(
        sign_cert_member(&c).unwrap_err(),
        ProfileError::MissingAttribute("serialNumber")
    );
    let c = cert_with_subject(&[(C, "DEV"), (O, "Org"), (BC, "GOV"), (SN, "12/34")]);
    assert!(matches!(
        sign_cert_member(&c).unwrap_err(),
        ProfileError::InvalidIdentifier {
            attribute: "serialNumber",
            ..
        }
    ));
    let c = cert_with_subject(&[(C, "DEV"), (O, " "), (BC, "GOV"), (SN, "1234")]);
    assert_eq!(sign_cert_member(&c).unwrap_err(), ProfileError::EmptyName);
    // rcgen keeps one value per attribute type, so build the duplicate with openssl (which
    // refuses to *write* a countryName longer than two letters, hence EE here).
    let dir = tempfile::tempdir().unwrap();
    let (ok, out) = openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "k.pem",
            "-out",
            "c.pem",
            "-subj",
            "/C=EE/O=Org/businessCategory=GOV/serialNumber=1/serialNumber=2",
        ],
        dir.path(),
    );
    assert!(ok, "{out}");
    let c = Certificate::read_file(&dir.path().join("c.pem"))
        .unwrap()
        .remove(0);
    assert_eq!(
        sign_cert_member(&c).unwrap_err(),
        ProfileError::DuplicateAttribute("serialNumber")
    );
    // Issuing side: a subsystem is not a member.
    let sub = trustbus_sdk::id::ClientId::subsystem("DEV", "GOV", "1234", "tax").unwrap();
    assert!(matches!(
        sign_subject(&sub, "Org"),
        Err(ProfileError::NotAMember(_))
    ));
}

#[test]
fn chain_accepts_good_paths() {
    let dir = tempfile::tempdir().unwrap();
    let ca = new_ca(dir.path());
    let s = store(&ca);
    let (sign, _) = issue(&ca, CertProfile::Sign, None);
    let (auth, _) = issue(&ca, CertProfile::Auth, Some("ss1"));
    let chain = s.validate(&sign, &[], Purpose::Sign, now()).unwrap();
    assert_eq!(chain.path.len(), 2);
    assert_eq!(chain.anchor(), Some(ca.ca_cert()));
    s.validate(&auth, &[], Purpose::Auth, now()).unwrap();
    // Twice: the second run uses the signature cache.
    s.validate(&auth, &[], Purpose::Auth, now()).unwrap();
    let (ocsp, _) = ca.ocsp_signer().unwrap();
    let (tsa, _) = ca.tsa_signer().unwrap();
    s.validate(&ocsp, &[], Purpose::OcspSigning, now()).unwrap();
    s.validate(&tsa, &[], Purpose::TimeStamping, now()).unwrap();
}

#[test]
fn chain_rejects_expired_and_not_yet_valid() {
    let dir = tempfile::tempdir().unwrap();
    let ca = new_ca(dir.path());
    let s = store(&ca);
    let (sign, _) = issue(&ca, CertProfile::Sign, None);
    assert!(matches!(
        s.validate(&sign, &[], Purpose::Sign, now() + Duration::days(800)),
        Err(ChainError::Expired { .. })
    ));
    assert!(matches!(
        s.validate(&sign, &[], Purpose::Sign, now() - Duration::days(1)),
        Err(ChainError::NotYetValid { .. })
    ));
    // The CA's own validity counts too: a certificate outliving its CA.
    let key = KeyPair::generate(KeyKind::EcdsaP256).unwrap();
    let long = ca
        .issue(&IssueRequest {
            profile: CertProfile::Sign,
            member: member(),
            member_name: "Tax Board".into(),
            server_code: None,
            key: SubjectKey::Spki(key.public_key_der()),
            not_before: None,
            not_after: Some(now() + Duration::days(20 * 365)),
        })
        .unwrap();
    let err = s
        .validate(&long, &[], Purpose::Sign, now() + Duration::days(11 * 365))
        .unwrap_err();
    assert!(
        matches!(&err, ChainError::Expired { subject, .. } if subject.contains("root CA")),
        "{err}"
    );
}

#[test]
fn chain_rejects_wrong_key_usage() {
    let dir = tempfile::tempdir().unwrap();
    let ca = new_ca(dir.path());
    let s = store(&ca);
    let (sign, _) = issue(&ca, CertProfile::Sign, None);
    let (auth, _) = issue(&ca, CertProfile::Auth, Some("ss1"));
    let (ocsp, _) = ca.ocsp_signer().unwrap();
    assert!(matches!(
        s.validate(&sign, &[], Purpose::Auth, now()),
        Err(ChainError::WrongKeyUsage {
            purpose: Purpose::Auth,
            ..
        })
    ));
    assert!(matches!(
        s.validate(&auth, &[], Purpose::TimeStamping, now()),
        Err(ChainError::WrongKeyUsage { .. })
    ));
    // A TLS key must never sign messages: an authentication certificate is not a signing one.
    assert!(matches!(
        s.validate(&auth, &[], Purpose::Sign, now()),
        Err(ChainError::WrongKeyUsage {
            purpose: Purpose::Sign,
            ..
        })
    ));
    assert!(matches!(
        s.validate(&ocsp, &[], Purpose::Auth, now()),
        Err(ChainError::WrongKeyUsage { .. })
    ));
    // The CA itself is not an end-entity certificate.
    assert!(matches!(
        s.validate(ca.ca_cert(), &[], Purpose::Sign, now()),
        Err(ChainError::WrongKeyUsage { .. })
    ));
}

#[test]
fn chain_rejects_unknown_ca_and_auth_only_ca() {
    let d1 = tempfile::tempdir().unwrap();
    let d2 = tempfile::tempdir().unwrap();
    let ca = new_ca(d1.path());
    let other = new_ca(d2.path());
    let (sign, _) = issue(&other, CertProfile::Sign, None);
    // Same subject name, different key: path found by name, signature fails.
    assert!(matches!(
        store(&ca).validate(&sign, &[], Purpose::Sign, now()),
        Err(ChainError::BadSignature { .. })
    ));
    // An empty store knows no issuer at all.
    assert!(matches!(
        TrustStore::new().validate(&sign, &[], Purpose::Sign, now()),
        Err(ChainError::UnknownIssuer { .. })
    ));
    let mut auth_only = TrustStore::new();
    auth_only.add_ca(other.ca_cert().clone(), true);
    assert!(matches!(
        auth_only.validate(&sign, &[], Purpose::Sign, now()),
        Err(ChainError::AuthOnlyCaForSigning { .. })
    ));
    let (auth, _) = issue(&other, CertProfile::Auth, Some("ss1"));
    auth_only
        .validate(&auth, &[], Purpose::Auth, now())
        .unwrap();
}

#[test]
fn chain_rejects_tampered_signature() {
    let dir = tempfile::tempdir().unwrap();
    let ca = new_ca(dir.path());
    let (sign, _) = issue(&ca, CertProfile::Sign, None);
    let mut der = sign.der().to_vec();
    let n = der.len();
    der[n - 5] ^= 0x40; // inside the signature value
    let bad = Certificate::from_der(der).unwrap();
    assert!(matches!(
        store(&ca).validate(&bad, &[], Purpose::Sign, now()),
        Err(ChainError::BadSignature { .. })
    ));
    // And a changed byte in the signed part (the subject's member name).
    let mut der = sign.der().to_vec();
    let pos = der.windows(9).position(|w| w == b"Tax Board").unwrap();
    der[pos] = b'F';
    let bad = Certificate::from_der(der).unwrap();
    assert!(matches!(
        store(&ca).validate(&bad, &[], Purpose::Sign, now()),
        Err(ChainError::BadSignature { .. })
    ));
}

/// A certificate issued by `issuer_cert` (whose private key is `issuer_key`).
fn issue_below(
    issuer_cert: &Certificate,
    issuer_key: &KeyPair,
    ca: bool,
    cn: &str,
) -> (Certificate, KeyPair) {
    let rk = rcgen::KeyPair::try_from(issuer_key.pkcs8_der()).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_der(&issuer_cert.der().to_vec().into(), rk).unwrap();
    let key = KeyPair::generate(KeyKind::EcdsaP256).unwrap();
    let sub = rcgen::KeyPair::try_from(key.pkcs8_der()).unwrap();
    let mut p = rcgen::CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.not_before = now() - Duration::hours(1);
    p.not_after = now() + Duration::days(30);
    if ca {
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    } else {
        // A signing-profile leaf: nonRepudiation is what Purpose::Sign requires.
        p.key_usages = vec![
            rcgen::KeyUsagePurpose::DigitalSignature,
            rcgen::KeyUsagePurpose::ContentCommitment,
        ];
    }
    let cert = p.signed_by(&sub, &issuer).unwrap();
    (Certificate::from_der(cert.der().to_vec()).unwrap(), key)
}

#[test]
fn chain_through_intermediates_and_not_a_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = new_ca(dir.path());
    let ca_key =
        KeyPair::from_pkcs8_pem(&std::fs::read_to_string(dir.path().join("ca.key")).unwrap())
            .unwrap();
    // root -> intermediate CA -> leaf
    let (inter, inter_key) = issue_below(ca.ca_cert(), &ca_key, true, "Intermediate");
    let (leaf, _) = issue_below(&inter, &inter_key, false, "Leaf");
    let s = store(&ca);
    assert!(matches!(
        s.validate(&leaf, &[], Purpose::Sign, now()),
        Err(ChainError::UnknownIssuer { .. })
    ));
    let chain = s
        .validate(&leaf, std::slice::from_ref(&inter), Purpose::Sign, now())
        .unwrap();
    assert_eq!(chain.path.len(), 3);
    let mut s2 = store(&ca);
    s2.add_intermediate(inter);
    s2.validate(&leaf, &[], Purpose::Sign, now()).unwrap();

    // root -> end entity (no CA flag) -> leaf: the middle one may not issue.
    let (ee, ee_key) = issue_below(ca.ca_cert(), &ca_key, false, "Not a CA");
    let (leaf2, _) = issue_below(&ee, &ee_key, false, "Leaf 2");
    assert!(matches!(
        s.validate(&leaf2, &[ee], Purpose::Sign, now()),
        Err(ChainError::NotACa { .. })
    ));
}

#[test]
fn revocation_is_visible_through_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let ca = new_ca(dir.path());
    let (sign, _) = issue(&ca, CertProfile::Sign, None);
    let issuer = ca.ca_cert();
    let key_bits = trustbus_pki::signature::PublicKeyRef::from_spki_der(issuer.spki_der())
        .unwrap()
        .key
        .to_vec();
    let name_hash = DigestAlgorithm::Sha1.digest(issuer.subject_der());
    let key_hash = DigestAlgorithm::Sha1.digest(&key_bits);
    let iref = IssuerRef {
        hash: DigestAlgorithm::Sha1,
        name_hash: &name_hash,
        key_hash: &key_hash,
    };
    // A responder that opened the directory separately (as `trustbus pki serve` does).
    let responder = DevCa::open(dir.path()).unwrap();
    assert_eq!(responder.status(&iref, sign.serial()), CertStatus::Good);
    let mut padded = vec![0u8];
    padded.extend_from_slice(sign.serial());
    assert_eq!(responder.status(&iref, &padded), CertStatus::Good);
    assert_eq!(responder.status(&iref, &[1, 2, 3]), CertStatus::Unknown);

    ca.revoke(&sign, CrlReason::KeyCompromise).unwrap();
    match responder.status(&iref, sign.serial()) {
        CertStatus::Revoked { reason, at } => {
            assert_eq!(reason, Some(1));
            assert!((now() - at).abs() < Duration::minutes(1));
        }
        other => panic!("expected revoked, got {other:?}"),
    }
    assert!(matches!(
        ca.revoke(&sign, CrlReason::Superseded),
        Err(DevCaError::AlreadyRevoked(_))
    ));
    // Another issuer's hashes: unknown.
    let wrong = IssuerRef {
        hash: DigestAlgorithm::Sha1,
        name_hash: &key_hash,
        key_hash: &name_hash,
    };
    assert_eq!(responder.status(&wrong, sign.serial()), CertStatus::Unknown);
    let idx = responder.index();
    let e = idx
        .entries
        .iter()
        .find(|e| e.serial == sign.serial_hex())
        .unwrap();
    assert_eq!(e.reason.as_deref(), Some("keyCompromise"));
    // A certificate from another CA is refused.
    let d2 = tempfile::tempdir().unwrap();
    let other = new_ca(d2.path());
    let (foreign, _) = issue(&other, CertProfile::Sign, None);
    assert!(matches!(
        ca.revoke(&foreign, CrlReason::Unspecified),
        Err(DevCaError::NotOurs(_))
    ));
    assert!(matches!(
        DevCa::init(dir.path(), "DEV"),
        Err(DevCaError::AlreadyInitialised(_))
    ));
}

#[test]
fn token_file_on_disk_tampering() {
    use std::num::NonZeroU32;
    use trustbus_pki::token::{SoftToken, TokenError};
    let dir = tempfile::tempdir().unwrap();
    let token = SoftToken::open(dir.path())
        .unwrap()
        .with_iterations(NonZeroU32::new(2000).unwrap());
    let key = KeyPair::generate(KeyKind::EcdsaP256).unwrap();
    token.store("auth", "auth key", &key, "secret").unwrap();
    assert!(matches!(
        token.load("auth", "Secret"),
        Err(TokenError::PinIncorrect)
    ));
    let path = dir.path().join("auth.key.json");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("auth key", "evil key")).unwrap();
    assert!(matches!(
        token.load("auth", "secret"),
        Err(TokenError::Tampered(_))
    ));
    std::fs::write(&path, "{not json").unwrap();
    assert!(matches!(
        token.load("auth", "secret"),
        Err(TokenError::Malformed { .. })
    ));
}
