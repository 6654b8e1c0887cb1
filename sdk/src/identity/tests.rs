//! Identity verification with real signatures: every trust decision has a negative test that
//! asserts the exact error variant and the fault code.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use serde_json::{Value, json};

use super::*;
use crate::fault::{ErrorKind, Origin};

const ISS: &str = "https://idp.example.test";
const AUD: &str = "portal";
const NOW: i64 = 1_800_000_000;
const RSA_PK8: &[u8] = include_bytes!("../../tests/data/rsa2048.pk8");

fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

enum Signer {
    Rsa(RsaKeyPair),
    Ec256(EcdsaKeyPair),
    Ec384(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

impl Signer {
    fn rsa() -> Self {
        Self::Rsa(RsaKeyPair::from_pkcs8(RSA_PK8).unwrap())
    }
    fn ec256() -> Self {
        let rng = SystemRandom::new();
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pk8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        Self::Ec256(EcdsaKeyPair::from_pkcs8(alg, pk8.as_ref(), &rng).unwrap())
    }
    fn ec384() -> Self {
        let rng = SystemRandom::new();
        let alg = &signature::ECDSA_P384_SHA384_FIXED_SIGNING;
        let pk8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        Self::Ec384(EcdsaKeyPair::from_pkcs8(alg, pk8.as_ref(), &rng).unwrap())
    }
    fn ed() -> Self {
        let pk8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        Self::Ed(Ed25519KeyPair::from_pkcs8(pk8.as_ref()).unwrap())
    }

    fn jwk(&self, kid: &str) -> Value {
        let b = |v: &[u8]| URL_SAFE_NO_PAD.encode(v);
        match self {
            Self::Rsa(k) => {
                let c = rsa_components(k);
                json!({"kty":"RSA","kid":kid, "n": b(&c.n), "e": b(&c.e)})
            }
            Self::Ec256(k) => {
                let p = k.public_key().as_ref();
                json!({"kty":"EC","crv":"P-256","kid":kid,"x":b(&p[1..33]),"y":b(&p[33..])})
            }
            Self::Ec384(k) => {
                let p = k.public_key().as_ref();
                json!({"kty":"EC","crv":"P-384","kid":kid,"x":b(&p[1..49]),"y":b(&p[49..])})
            }
            Self::Ed(k) => {
                json!({"kty":"OKP","crv":"Ed25519","kid":kid,"x":b(k.public_key().as_ref())})
            }
        }
    }

    fn sign(&self, alg: &str, msg: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match self {
            Self::Rsa(k) => {
                let enc: &dyn signature::RsaEncoding = match alg {
                    "RS256" => &signature::RSA_PKCS1_SHA256,
                    "RS384" => &signature::RSA_PKCS1_SHA384,
                    "RS512" => &signature::RSA_PKCS1_SHA512,
                    "PS256" => &signature::RSA_PSS_SHA256,
                    _ => unreachable!(),
                };
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(enc, &rng, msg, &mut sig).unwrap();
                sig
            }
            Self::Ec256(k) | Self::Ec384(k) => k.sign(&rng, msg).unwrap().as_ref().to_vec(),
            Self::Ed(k) => k.sign(msg).as_ref().to_vec(),
        }
    }
}

fn rsa_components(k: &RsaKeyPair) -> signature::RsaPublicKeyComponents<Vec<u8>> {
    signature::RsaPublicKeyComponents::from(k.public())
}

fn set_of(keys: &[Value]) -> Vec<u8> {
    serde_json::to_vec(&json!({ "keys": keys })).unwrap()
}

fn claims() -> Value {
    json!({"iss": ISS, "sub": "EE38001085718", "aud": AUD, "iat": NOW - 10, "exp": NOW + 300,
           "acr": "substantial", "nonce": "n-1"})
}

fn token_with(header: &Value, claims: &Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let h = URL_SAFE_NO_PAD.encode(serde_json::to_vec(header).unwrap());
    let p = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap());
    let input = format!("{h}.{p}");
    let sig = URL_SAFE_NO_PAD.encode(sign(input.as_bytes()));
    format!("{input}.{sig}")
}

fn token(signer: &Signer, alg: &str, kid: &str, claims: &Value) -> String {
    token_with(
        &json!({"alg": alg, "kid": kid, "typ": "JWT"}),
        claims,
        |m| signer.sign(alg, m),
    )
}

fn issuer(set: &[u8]) -> TrustedIssuer {
    TrustedIssuer::with_pinned_keys(ISS, vec![AUD.into()], JwkSet::parse(set).unwrap())
        .acr_levels(["low", "substantial", "high"])
}

fn verify(v: &IdTokenVerifier, t: &str) -> Result<VerifiedIdentity, IdentityError> {
    v.verify_cached(t, &VerifyOptions::default(), NOW)
}

fn assert_rejected(r: Result<VerifiedIdentity, IdentityError>, expected: IdentityError) {
    let e = r.expect_err("token must be rejected");
    assert_eq!(e, expected);
    let f = e.fault();
    assert_eq!(f.code.to_string(), "Client.InvalidUserIdentity");
    assert_eq!(f.code.origin, Origin::Client);
    assert_eq!(f.code.kind, ErrorKind::InvalidUserIdentity);
    assert_eq!(f.http_status(), 400);
    assert!(f.message.contains(e.reason()), "{}", f.message);
}

struct Fixture {
    rsa: Signer,
    verifier: IdTokenVerifier,
}

fn fixture() -> Fixture {
    let rsa = Signer::rsa();
    let set = set_of(&[rsa.jwk("rsa-1")]);
    Fixture {
        verifier: IdTokenVerifier::new(vec![issuer(&set)]),
        rsa,
    }
}

#[test]
fn every_algorithm_verifies() {
    let (rsa, e256, e384, ed) = (
        Signer::rsa(),
        Signer::ec256(),
        Signer::ec384(),
        Signer::ed(),
    );
    let set = set_of(&[
        rsa.jwk("rsa"),
        e256.jwk("e256"),
        e384.jwk("e384"),
        ed.jwk("ed"),
    ]);
    let v = IdTokenVerifier::new(vec![issuer(&set)]);
    for (s, alg, kid) in [
        (&rsa, "RS256", "rsa"),
        (&rsa, "RS384", "rsa"),
        (&rsa, "RS512", "rsa"),
        (&rsa, "PS256", "rsa"),
        (&e256, "ES256", "e256"),
        (&e384, "ES384", "e384"),
        (&ed, "EdDSA", "ed"),
    ] {
        let id =
            verify(&v, &token(s, alg, kid, &claims())).unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(id.subject, "EE38001085718");
        assert_eq!(id.issuer, ISS);
        assert_eq!(id.acr.as_deref(), Some("substantial"));
        assert_eq!(id.kid.as_deref(), Some(kid));
        assert_eq!(id.algorithm.name(), alg);
        assert_eq!(id.expires_at, NOW + 300);
    }
    // A key of the wrong type for the algorithm is not a candidate.
    assert_rejected(
        verify(&v, &token(&e256, "ES256", "rsa", &claims())),
        IdentityError::UnknownKeyId(Some("rsa".into())),
    );
}

#[test]
fn token_without_kid_tries_fitting_keys() {
    let f = fixture();
    let t = token_with(&json!({"alg":"RS256"}), &claims(), |m| {
        f.rsa.sign("RS256", m)
    });
    assert_eq!(
        verify(&f.verifier, &t).unwrap().kid.as_deref(),
        Some("rsa-1")
    );
}

#[test]
fn expired() {
    let f = fixture();
    let mut c = claims();
    c["exp"] = json!(NOW - 61);
    assert_rejected(
        verify(&f.verifier, &token(&f.rsa, "RS256", "rsa-1", &c)),
        IdentityError::Expired {
            exp: NOW - 61,
            now: NOW,
        },
    );
    // Within the skew it is still accepted.
    c["exp"] = json!(NOW - 59);
    assert!(verify(&f.verifier, &token(&f.rsa, "RS256", "rsa-1", &c)).is_ok());
    // With no skew, exp == now is expired.
    let strict = IdTokenVerifier::new(f.verifier.issuers().to_vec()).with_clock_skew(0);
    c["exp"] = json!(NOW);
    assert_rejected(
        verify(&strict, &token(&f.rsa, "RS256", "rsa-1", &c)),
        IdentityError::Expired { exp: NOW, now: NOW },
    );
}

#[test]
fn not_yet_valid_and_issued_in_future() {
    let f = fixture();
    let mut c = claims();
    c["nbf"] = json!(NOW + 120);
    assert_rejected(
        verify(&f.verifier, &token(&f.rsa, "RS256", "rsa-1", &c)),
        IdentityError::NotYetValid {
            nbf: NOW + 120,
            now: NOW,
        },
    );
    c["nbf"] = json!(NOW + 30);
    assert!(verify(&f.verifier, &token(&f.rsa, "RS256", "rsa-1", &c)).is_ok());
    let mut c = claims();
    c["iat"] = json!(NOW + 120);
    assert_rejected(
        verify(&f.verifier, &token(&f.rsa, "RS256", "rsa-1", &c)),
        IdentityError::IssuedInFuture {
            iat: NOW + 120,
            now: NOW,
        },
    );
}

#[test]
fn wrong_audience() {
    let f = fixture();
    for aud in [json!("other-portal"), json!(["a", "b"]), json!([])] {
        let mut c = claims();
        c["aud"] = aud;
        assert_rejected(
            verify(&f.verifier, &token(&f.rsa, "RS256", "rsa-1", &c)),
            IdentityError::WrongAudience,
        );
    }
    let mut c = claims();
    c["aud"] = json!(["other", AUD]);
    assert!(verify(&f.verifier, &token(&f.rsa, "RS256", "rsa-1", &c)).is_ok());
    c["azp"] = json!("other");
    assert_rejected(
        verify(&f.verifier, &token(&f.rsa, "RS256", "rsa-1", &c)),
        IdentityError::WrongAudience,
    );
}

#[test]
fn unknown_issuer() {
    let f = fixture();
    let mut c = claims();
    c["iss"] = json!("https://idp.example.test/");
    assert_rejected(
        verify(&f.verifier, &token(&f.rsa, "RS256", "rsa-1", &c)),
        IdentityError::UnknownIssuer("https://idp.example.test/".into()),
    );
}

#[test]
fn unknown_kid() {
    let f = fixture();
    assert_rejected(
        verify(&f.verifier, &token(&f.rsa, "RS256", "rsa-2", &claims())),
        IdentityError::UnknownKeyId(Some("rsa-2".into())),
    );
}

#[test]
fn alg_none() {
    let f = fixture();
    for alg in ["none", "None", "NONE"] {
        let t = token_with(&json!({"alg": alg, "kid": "rsa-1"}), &claims(), |_| {
            Vec::new()
        });
        assert_rejected(
            verify(&f.verifier, &t),
            IdentityError::AlgorithmNotAllowed(alg.into()),
        );
    }
}

#[test]
fn hs256_signed_with_the_public_key_is_not_allowed() {
    let f = fixture();
    let Signer::Rsa(k) = &f.rsa else {
        unreachable!()
    };
    // The classic confusion: HMAC keyed with the RSA public key as the verifier holds it, in
    // each form a verifier might hold it (DER RSAPublicKey, the JWK's n, the JWK JSON).
    let jwk = serde_json::to_vec(&f.rsa.jwk("rsa-1")).unwrap();
    let n = rsa_components(k).n;
    let forms: [&[u8]; 3] = [k.public().as_ref(), &n, &jwk];
    for key in forms {
        for alg in ["HS256", "HS384", "HS512"] {
            let t = token_with(&json!({"alg": alg, "kid": "rsa-1"}), &claims(), |m| {
                let h = match alg {
                    "HS256" => ring::hmac::HMAC_SHA256,
                    "HS384" => ring::hmac::HMAC_SHA384,
                    _ => ring::hmac::HMAC_SHA512,
                };
                ring::hmac::sign(&ring::hmac::Key::new(h, key), m)
                    .as_ref()
                    .to_vec()
            });
            assert_rejected(
                verify(&f.verifier, &t),
                IdentityError::AlgorithmNotAllowed(alg.into()),
            );
        }
    }
}

#[test]
fn algorithm_switched_off_is_not_allowed() {
    let f = fixture();
    let v =
        IdTokenVerifier::new(f.verifier.issuers().to_vec()).with_algorithms(&[Algorithm::ES256]);
    assert_rejected(
        verify(&v, &token(&f.rsa, "RS256", "rsa-1", &claims())),
        IdentityError::AlgorithmNotAllowed("RS256".into()),
    );
}

#[test]
fn tampered_signature() {
    let f = fixture();
    let t = token(&f.rsa, "RS256", "rsa-1", &claims());
    let (input, sig) = t.rsplit_once('.').unwrap();
    let mut sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
    sig[10] ^= 1;
    let t = format!("{input}.{}", URL_SAFE_NO_PAD.encode(&sig));
    assert_rejected(verify(&f.verifier, &t), IdentityError::InvalidSignature);
    // A signature made for another algorithm over the same input does not verify either.
    let t = token(&f.rsa, "RS256", "rsa-1", &claims());
    let (input, _) = t.rsplit_once('.').unwrap();
    let t2 = format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(f.rsa.sign("PS256", input.as_bytes()))
    );
    assert_rejected(verify(&f.verifier, &t2), IdentityError::InvalidSignature);
}

#[test]
fn tampered_payload() {
    let f = fixture();
    let t = token(&f.rsa, "RS256", "rsa-1", &claims());
    let parts: Vec<&str> = t.split('.').collect();
    let mut c = claims();
    c["sub"] = json!("EE00000000000");
    let forged = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c).unwrap());
    let t = format!("{}.{forged}.{}", parts[0], parts[2]);
    assert_rejected(verify(&f.verifier, &t), IdentityError::InvalidSignature);
}

#[test]
fn tampered_header() {
    let f = fixture();
    let t = token(&f.rsa, "RS256", "rsa-1", &claims());
    let parts: Vec<&str> = t.split('.').collect();
    let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","kid":"rsa-1","x":1}"#);
    let t = format!("{h}.{}.{}", parts[1], parts[2]);
    assert_rejected(verify(&f.verifier, &t), IdentityError::InvalidSignature);
}

#[test]
fn acr_too_low() {
    let f = fixture();
    let mut c = claims();
    c["acr"] = json!("low");
    let t = token(&f.rsa, "RS256", "rsa-1", &c);
    let opts = VerifyOptions {
        required_acr: Some("substantial"),
        nonce: None,
    };
    assert_rejected(
        f.verifier.verify_cached(&t, &opts, NOW),
        IdentityError::AcrTooLow {
            acr: Some("low".into()),
            required: "substantial".into(),
        },
    );
    // Higher levels satisfy lower requirements.
    c["acr"] = json!("high");
    let t = token(&f.rsa, "RS256", "rsa-1", &c);
    assert!(f.verifier.verify_cached(&t, &opts, NOW).is_ok());
    // Unknown and missing acr never satisfy a requirement.
    c["acr"] = json!("very-high");
    let t = token(&f.rsa, "RS256", "rsa-1", &c);
    assert_rejected(
        f.verifier.verify_cached(&t, &opts, NOW),
        IdentityError::AcrTooLow {
            acr: Some("very-high".into()),
            required: "substantial".into(),
        },
    );
    c.as_object_mut().unwrap().remove("acr");
    let t = token(&f.rsa, "RS256", "rsa-1", &c);
    assert_rejected(
        f.verifier.verify_cached(&t, &opts, NOW),
        IdentityError::AcrTooLow {
            acr: None,
            required: "substantial".into(),
        },
    );
    // No requirement: accepted without acr.
    assert!(verify(&f.verifier, &t).unwrap().acr.is_none());
}

#[test]
fn issuer_minimum_acr_and_exact_matching() {
    let rsa = Signer::rsa();
    let set = set_of(&[rsa.jwk("k")]);
    let min = issuer(&set).min_acr("high");
    let v = IdTokenVerifier::new(vec![min]);
    assert_rejected(
        verify(&v, &token(&rsa, "RS256", "k", &claims())),
        IdentityError::AcrTooLow {
            acr: Some("substantial".into()),
            required: "high".into(),
        },
    );
    let exact =
        TrustedIssuer::with_pinned_keys(ISS, vec![AUD.into()], JwkSet::parse(&set).unwrap());
    let v = IdTokenVerifier::new(vec![exact]);
    let t = token(&rsa, "RS256", "k", &claims());
    let ok = VerifyOptions {
        required_acr: Some("substantial"),
        nonce: None,
    };
    assert!(v.verify_cached(&t, &ok, NOW).is_ok());
    let other = VerifyOptions {
        required_acr: Some("low"),
        nonce: None,
    };
    assert_rejected(
        v.verify_cached(&t, &other, NOW),
        IdentityError::AcrTooLow {
            acr: Some("substantial".into()),
            required: "low".into(),
        },
    );
}

#[test]
fn missing_and_invalid_claims() {
    let f = fixture();
    for (claim, err) in [
        ("sub", IdentityError::MissingClaim("sub")),
        ("aud", IdentityError::MissingClaim("aud")),
        ("exp", IdentityError::MissingClaim("exp")),
        ("iat", IdentityError::MissingClaim("iat")),
        ("iss", IdentityError::MissingClaim("iss")),
    ] {
        let mut c = claims();
        c.as_object_mut().unwrap().remove(claim);
        assert_rejected(
            verify(&f.verifier, &token(&f.rsa, "RS256", "rsa-1", &c)),
            err,
        );
    }
    for (claim, value) in [
        ("sub", json!("")),
        ("sub", json!(5)),
        ("exp", json!("soon")),
        ("aud", json!([1])),
    ] {
        let mut c = claims();
        c[claim] = value;
        assert_rejected(
            verify(&f.verifier, &token(&f.rsa, "RS256", "rsa-1", &c)),
            IdentityError::InvalidClaim(claim),
        );
    }
}

#[test]
fn nonce_must_match_when_expected() {
    let f = fixture();
    let t = token(&f.rsa, "RS256", "rsa-1", &claims());
    assert!(
        f.verifier
            .verify_cached(
                &t,
                &VerifyOptions {
                    nonce: Some("n-1"),
                    ..Default::default()
                },
                NOW
            )
            .is_ok()
    );
    assert_rejected(
        f.verifier.verify_cached(
            &t,
            &VerifyOptions {
                nonce: Some("n-2"),
                ..Default::default()
            },
            NOW,
        ),
        IdentityError::NonceMismatch,
    );
}

#[test]
fn header_checks() {
    let f = fixture();
    let t = token_with(
        &json!({"alg":"RS256","kid":"rsa-1","crit":["exp"]}),
        &claims(),
        |m| f.rsa.sign("RS256", m),
    );
    assert_rejected(
        verify(&f.verifier, &t),
        IdentityError::Malformed("crit header extensions are not supported"),
    );
    let t = token_with(
        &json!({"alg":"RS256","kid":"rsa-1","typ":"at+jwt"}),
        &claims(),
        |m| f.rsa.sign("RS256", m),
    );
    assert_rejected(
        verify(&f.verifier, &t),
        IdentityError::WrongTokenType("at+jwt".into()),
    );
    assert!(matches!(
        verify(&f.verifier, "garbage"),
        Err(IdentityError::Malformed(_))
    ));
}

/// An in-memory JWKS endpoint that counts fetches.
#[derive(Default)]
struct MemFetcher {
    docs: Mutex<HashMap<String, Result<Vec<u8>, String>>>,
    calls: AtomicUsize,
}

impl MemFetcher {
    fn set(&self, url: &str, doc: Result<Vec<u8>, String>) {
        self.docs.lock().unwrap().insert(url.into(), doc);
    }
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl JwksFetcher for MemFetcher {
    async fn fetch_jwks(&self, url: &str) -> Result<Vec<u8>, String> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.docs
            .lock()
            .unwrap()
            .get(url)
            .cloned()
            .unwrap_or(Err("404".into()))
    }
}

const JWKS_URL: &str = "https://idp.example.test/jwks";

fn fetching_verifier() -> IdTokenVerifier {
    let iss = TrustedIssuer::with_jwks_url(ISS, vec![AUD.into()], JWKS_URL).acr_levels([
        "low",
        "substantial",
        "high",
    ]);
    IdTokenVerifier::new(vec![iss])
}

#[test]
fn key_rotation_fetches_on_unknown_kid_rate_limited() {
    let v = fetching_verifier();
    let (old, new) = (Signer::ec256(), Signer::ec256());
    let fetcher = MemFetcher::default();
    fetcher.set(JWKS_URL, Ok(set_of(&[old.jwk("old")])));
    let opts = VerifyOptions::default();

    // First use fetches, then the cache serves.
    let t_old = token(&old, "ES256", "old", &claims());
    assert!(block_on(v.verify(&t_old, &opts, NOW, &fetcher)).is_ok());
    assert!(block_on(v.verify(&t_old, &opts, NOW + 1, &fetcher)).is_ok());
    assert_eq!(fetcher.calls(), 1);

    // The issuer rotates: a token with the new kid triggers one refetch after the interval.
    fetcher.set(JWKS_URL, Ok(set_of(&[old.jwk("old"), new.jwk("new")])));
    let t_new = token(&new, "ES256", "new", &claims());
    assert!(block_on(v.verify(&t_new, &opts, NOW + 100, &fetcher)).is_ok());
    assert_eq!(fetcher.calls(), 2);

    // Unknown kids right after a fetch do not fetch again (rate limit).
    let t_bogus = token(&new, "ES256", "bogus", &claims());
    assert_rejected(
        block_on(v.verify(&t_bogus, &opts, NOW + 101, &fetcher)),
        IdentityError::UnknownKeyId(Some("bogus".into())),
    );
    assert_eq!(fetcher.calls(), 2);
    // After the interval one more fetch is allowed, and the kid is still unknown.
    assert_rejected(
        block_on(v.verify(&t_bogus, &opts, NOW + 200, &fetcher)),
        IdentityError::UnknownKeyId(Some("bogus".into())),
    );
    assert_eq!(fetcher.calls(), 3);
    // verify_cached never fetches.
    assert!(v.verify_cached(&t_new, &opts, NOW + 201).is_ok());
    assert_eq!(fetcher.calls(), 3);
}

#[test]
fn unavailable_jwks_is_a_server_side_fault_and_stale_keys_are_kept() {
    let v = fetching_verifier();
    let k = Signer::ed();
    let fetcher = MemFetcher::default();
    fetcher.set(JWKS_URL, Err("connection refused".into()));
    let mut c = claims();
    c["exp"] = json!(NOW + 10_000);
    let t = token(&k, "EdDSA", "ed", &c);
    let e = block_on(v.verify(&t, &VerifyOptions::default(), NOW, &fetcher)).unwrap_err();
    assert_eq!(
        e,
        IdentityError::JwksUnavailable("connection refused".into())
    );
    assert_eq!(
        e.fault().code.to_string(),
        "Server.ClientProxy.InvalidUserIdentity"
    );
    assert_eq!(e.fault().http_status(), 500);

    fetcher.set(JWKS_URL, Ok(b"not json".to_vec()));
    let e = block_on(v.verify(&t, &VerifyOptions::default(), NOW + 60, &fetcher)).unwrap_err();
    assert!(matches!(e, IdentityError::InvalidJwks(_)));
    assert_eq!(
        e.fault().code.to_string(),
        "Server.ClientProxy.InvalidUserIdentity"
    );

    // Once fetched, a set older than max_age is refreshed, and kept if the refresh fails.
    fetcher.set(JWKS_URL, Ok(set_of(&[k.jwk("ed")])));
    assert!(block_on(v.verify(&t, &VerifyOptions::default(), NOW + 120, &fetcher)).is_ok());
    fetcher.set(JWKS_URL, Err("down".into()));
    let later = NOW + 120 + 3600;
    assert!(block_on(v.verify(&t, &VerifyOptions::default(), later, &fetcher)).is_ok());
    assert_eq!(fetcher.calls(), 4);
}

#[test]
fn pinned_keys_never_fetch() {
    let f = fixture();
    let fetcher = MemFetcher::default();
    assert_rejected(
        block_on(f.verifier.verify(
            &token(&f.rsa, "RS256", "rsa-9", &claims()),
            &VerifyOptions::default(),
            NOW,
            &fetcher,
        )),
        IdentityError::UnknownKeyId(Some("rsa-9".into())),
    );
    assert_eq!(fetcher.calls(), 0);
}

#[test]
fn reasons_are_distinct() {
    let all = [
        IdentityError::Malformed(""),
        IdentityError::AlgorithmNotAllowed(String::new()),
        IdentityError::WrongTokenType(String::new()),
        IdentityError::UnknownIssuer(String::new()),
        IdentityError::UnknownKeyId(None),
        IdentityError::InvalidJwks(""),
        IdentityError::JwksUnavailable(String::new()),
        IdentityError::InvalidSignature,
        IdentityError::MissingClaim(""),
        IdentityError::InvalidClaim(""),
        IdentityError::Expired { exp: 0, now: 0 },
        IdentityError::NotYetValid { nbf: 0, now: 0 },
        IdentityError::IssuedInFuture { iat: 0, now: 0 },
        IdentityError::WrongAudience,
        IdentityError::AcrTooLow {
            acr: None,
            required: String::new(),
        },
        IdentityError::NonceMismatch,
    ];
    let mut reasons: Vec<_> = all.iter().map(IdentityError::reason).collect();
    reasons.sort_unstable();
    reasons.dedup();
    assert_eq!(reasons.len(), all.len());
}
