//! JWK sets (RFC 7517) parsed into keys ring can verify with, and the algorithm allow-list.
//!
//! Only public signature keys are kept: RSA (2048 to 8192 bits), EC P-256 and P-384, and
//! Ed25519 (`OKP`). Symmetric (`oct`) keys, encryption keys (`use: enc`), private members and
//! anything unknown are skipped rather than failing the whole set, because identity providers
//! publish keys for other purposes next to their signing keys.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};

use super::IdentityError;

/// Largest JWK set accepted, in bytes.
pub const MAX_JWKS_LEN: usize = 256 * 1024;
/// Most keys kept from one set.
pub const MAX_KEYS: usize = 64;

/// A JWS algorithm on the allow-list. `none` and every `HS*` are deliberately absent: a token
/// naming them is refused before any key is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256 and MGF1-SHA-256.
    PS256,
    /// ECDSA P-256 with SHA-256, signature `r || s` (64 bytes).
    ES256,
    /// ECDSA P-384 with SHA-384, signature `r || s` (96 bytes).
    ES384,
    /// Ed25519 (`EdDSA` with an `OKP` key on `Ed25519`).
    EdDSA,
}

impl Algorithm {
    /// Every supported algorithm, the default allow-list.
    pub const ALL: [Algorithm; 7] = [
        Self::RS256,
        Self::RS384,
        Self::RS512,
        Self::PS256,
        Self::ES256,
        Self::ES384,
        Self::EdDSA,
    ];

    /// The JOSE name (`RS256`, …).
    pub const fn name(self) -> &'static str {
        match self {
            Self::RS256 => "RS256",
            Self::RS384 => "RS384",
            Self::RS512 => "RS512",
            Self::PS256 => "PS256",
            Self::ES256 => "ES256",
            Self::ES384 => "ES384",
            Self::EdDSA => "EdDSA",
        }
    }

    /// The algorithm with this exact (case-sensitive) JOSE name, if supported.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }
}

/// A public key usable with ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// RSA modulus and public exponent, big-endian.
    Rsa {
        /// Modulus.
        n: Vec<u8>,
        /// Public exponent.
        e: Vec<u8>,
    },
    /// P-256 point, uncompressed (`04 || x || y`).
    EcP256(Vec<u8>),
    /// P-384 point, uncompressed (`04 || x || y`).
    EcP384(Vec<u8>),
    /// Ed25519 public key (32 bytes).
    Ed25519(Vec<u8>),
}

impl PublicKey {
    /// Whether this key can verify signatures made with `alg`.
    pub fn supports(&self, alg: Algorithm) -> bool {
        matches!(
            (self, alg),
            (
                Self::Rsa { .. },
                Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 | Algorithm::PS256
            ) | (Self::EcP256(_), Algorithm::ES256)
                | (Self::EcP384(_), Algorithm::ES384)
                | (Self::Ed25519(_), Algorithm::EdDSA)
        )
    }

    /// Verifies `sig` over `msg` with ring. False for a wrong signature and for a key that does
    /// not fit `alg`.
    pub fn verify(&self, alg: Algorithm, msg: &[u8], sig: &[u8]) -> bool {
        if !self.supports(alg) {
            return false;
        }
        match self {
            Self::Rsa { n, e } => {
                let params: &signature::RsaParameters = match alg {
                    Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                    Algorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                    Algorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
                    Algorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
                    _ => return false,
                };
                RsaPublicKeyComponents { n, e }
                    .verify(params, msg, sig)
                    .is_ok()
            }
            Self::EcP256(point) => {
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(msg, sig)
                    .is_ok()
            }
            Self::EcP384(point) => {
                UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point)
                    .verify(msg, sig)
                    .is_ok()
            }
            Self::Ed25519(k) => UnparsedPublicKey::new(&signature::ED25519, k)
                .verify(msg, sig)
                .is_ok(),
        }
    }
}

/// One signing key from a set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jwk {
    /// `kid`, if the provider gave one.
    pub kid: Option<String>,
    /// `alg`, if the key is restricted to one algorithm.
    pub alg: Option<String>,
    /// The key material.
    pub key: PublicKey,
}

impl Jwk {
    /// Whether the key may verify a token signed with `alg`: the key type fits and the key's
    /// own `alg`, if any, is the same.
    pub fn usable_for(&self, alg: Algorithm) -> bool {
        self.key.supports(alg) && self.alg.as_deref().is_none_or(|a| a == alg.name())
    }
}

/// The signing keys of one issuer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JwkSet {
    keys: Vec<Jwk>,
}

#[derive(serde::Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
}

#[derive(serde::Deserialize)]
struct RawKey {
    kty: String,
    kid: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    alg: Option<String>,
    key_ops: Option<Vec<String>>,
    n: Option<String>,
    e: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    d: Option<serde_json::Value>,
}

fn b64(v: Option<&String>) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(v?.trim_end_matches('=')).ok()
}

fn strip_leading_zeros(mut v: Vec<u8>) -> Vec<u8> {
    let zeros = v.iter().take_while(|&&b| b == 0).count();
    v.drain(..zeros);
    v
}

impl RawKey {
    fn into_jwk(self) -> Option<Jwk> {
        if self.d.is_some() || self.use_.as_deref().is_some_and(|u| u != "sig") {
            return None;
        }
        if let Some(ops) = &self.key_ops
            && !ops.iter().any(|o| o == "verify")
        {
            return None;
        }
        let point = |len: usize| -> Option<Vec<u8>> {
            let (x, y) = (b64(self.x.as_ref())?, b64(self.y.as_ref())?);
            if x.len() != len || y.len() != len {
                return None;
            }
            let mut p = Vec::with_capacity(1 + 2 * len);
            p.push(4);
            p.extend_from_slice(&x);
            p.extend_from_slice(&y);
            Some(p)
        };
        let key = match (self.kty.as_str(), self.crv.as_deref()) {
            ("RSA", _) => {
                let n = strip_leading_zeros(b64(self.n.as_ref())?);
                let e = strip_leading_zeros(b64(self.e.as_ref())?);
                // ring enforces 2048..=8192 bits on use; refuse obviously short keys early.
                if n.len() < 256 || n.len() > 1024 || e.is_empty() || e.len() > 8 {
                    return None;
                }
                PublicKey::Rsa { n, e }
            }
            ("EC", Some("P-256")) => PublicKey::EcP256(point(32)?),
            ("EC", Some("P-384")) => PublicKey::EcP384(point(48)?),
            ("OKP", Some("Ed25519")) => {
                let x = b64(self.x.as_ref())?;
                if x.len() != 32 {
                    return None;
                }
                PublicKey::Ed25519(x)
            }
            _ => return None,
        };
        Some(Jwk {
            kid: self.kid,
            alg: self.alg,
            key,
        })
    }
}

impl JwkSet {
    /// A set from keys built in code (pinned keys, tests).
    pub fn from_keys(keys: Vec<Jwk>) -> Self {
        Self { keys }
    }

    /// Parses a JWK set document, keeping the usable signature keys.
    pub fn parse(json: &[u8]) -> Result<Self, IdentityError> {
        if json.len() > MAX_JWKS_LEN {
            return Err(IdentityError::InvalidJwks("JWK set too large"));
        }
        let raw: RawSet = serde_json::from_slice(json)
            .map_err(|_| IdentityError::InvalidJwks("not a JWK set"))?;
        let keys = raw
            .keys
            .into_iter()
            .filter_map(|v| serde_json::from_value::<RawKey>(v).ok()?.into_jwk())
            .take(MAX_KEYS)
            .collect();
        Ok(Self { keys })
    }

    /// The usable keys.
    pub fn keys(&self) -> &[Jwk] {
        &self.keys
    }

    /// The keys that may verify a token with this `kid` and `alg`. With a `kid`, only keys with
    /// that exact `kid`; without one, every key that fits the algorithm.
    pub fn candidates<'s>(
        &'s self,
        kid: Option<&'s str>,
        alg: Algorithm,
    ) -> impl Iterator<Item = &'s Jwk> + 's {
        self.keys.iter().filter(move |k| {
            kid.is_none_or(|kid| k.kid.as_deref() == Some(kid)) && k.usable_for(alg)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_unusable_keys() {
        let x = URL_SAFE_NO_PAD.encode([7u8; 32]);
        let json = format!(
            r#"{{"keys":[
            {{"kty":"oct","k":"c2VjcmV0","kid":"h"}},
            {{"kty":"OKP","crv":"Ed25519","x":"{x}","kid":"ed"}},
            {{"kty":"OKP","crv":"Ed25519","x":"{x}","kid":"enc","use":"enc"}},
            {{"kty":"OKP","crv":"Ed25519","x":"{x}","d":"{x}","kid":"priv"}},
            {{"kty":"OKP","crv":"X25519","x":"{x}","kid":"x"}},
            {{"kty":"EC","crv":"P-256","x":"{x}","y":"{x}","kid":"ec"}},
            {{"kty":"EC","crv":"P-256","x":"{x}","kid":"ec-no-y"}},
            {{"kty":"RSA","n":"AQAB","e":"AQAB","kid":"short"}},
            {{"kty":5}}
            ]}}"#
        );
        let set = JwkSet::parse(json.as_bytes()).unwrap();
        let kids: Vec<_> = set
            .keys()
            .iter()
            .map(|k| k.kid.as_deref().unwrap())
            .collect();
        assert_eq!(kids, ["ed", "ec"]);
        assert_eq!(set.candidates(Some("ed"), Algorithm::EdDSA).count(), 1);
        assert_eq!(set.candidates(Some("ed"), Algorithm::ES256).count(), 0);
        assert_eq!(set.candidates(None, Algorithm::ES256).count(), 1);
    }

    #[test]
    fn rejects_non_sets() {
        for bad in [&b"[]"[..], b"{}", b"{\"keys\":{}}", b"nope"] {
            assert!(matches!(
                JwkSet::parse(bad),
                Err(IdentityError::InvalidJwks(_))
            ));
        }
    }

    #[test]
    fn algorithm_names_round_trip_and_exclude_hmac_and_none() {
        for a in Algorithm::ALL {
            assert_eq!(Algorithm::from_name(a.name()), Some(a));
        }
        for n in [
            "none", "None", "HS256", "HS384", "HS512", "rs256", "ES512", "",
        ] {
            assert_eq!(Algorithm::from_name(n), None, "{n}");
        }
    }
}
