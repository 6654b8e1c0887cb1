//! `private_key_jwt` client assertions (RFC 7523, OIDC Core §9), ES256 signed with ring.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};

use super::OidcError;

/// `client_assertion_type` for JWT client authentication.
pub(super) const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Lifetime of an assertion, in seconds.
const LIFETIME: i64 = 60;

/// The portal's P-256 key for `private_key_jwt`.
#[derive(Clone)]
pub struct PrivateKeyJwt {
    kid: String,
    pkcs8: Vec<u8>,
    key: Arc<EcdsaKeyPair>,
}

impl std::fmt::Debug for PrivateKeyJwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateKeyJwt")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl PrivateKeyJwt {
    /// A key from PKCS#8 DER (P-256).
    pub fn from_pkcs8_der(kid: &str, der: &[u8]) -> Result<Self, OidcError> {
        let key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &SystemRandom::new())
                .map_err(|e| OidcError::Config(format!("private_key_jwt key: {e}")))?;
        Ok(Self {
            kid: kid.to_owned(),
            pkcs8: der.to_vec(),
            key: Arc::new(key),
        })
    }

    /// A key from a PEM `PRIVATE KEY` (PKCS#8, P-256).
    pub fn from_pkcs8_pem(kid: &str, pem: &[u8]) -> Result<Self, OidcError> {
        use rustls_pki_types::PrivatePkcs8KeyDer;
        use rustls_pki_types::pem::PemObject;
        let der = PrivatePkcs8KeyDer::from_pem_slice(pem)
            .map_err(|e| OidcError::Config(format!("private_key_jwt PEM: {e}")))?;
        Self::from_pkcs8_der(kid, der.secret_pkcs8_der())
    }

    /// A fresh key (to register its [`PrivateKeyJwt::public_jwk`] with the provider).
    pub fn generate(kid: &str) -> Result<Self, OidcError> {
        let doc =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(|_| OidcError::Config("key generation failed".into()))?;
        Self::from_pkcs8_der(kid, doc.as_ref())
    }

    /// The PKCS#8 DER, to store the key.
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The public key as a JWK (`kty: EC`, `crv: P-256`, `alg: ES256`, `use: sig`).
    pub fn public_jwk(&self) -> serde_json::Value {
        let p = self.key.public_key().as_ref();
        let (x, y) = (
            p.get(1..33).unwrap_or_default(),
            p.get(33..65).unwrap_or_default(),
        );
        serde_json::json!({
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y),
        })
    }

    /// A signed assertion for `client_id` at `audience` (the token endpoint URL).
    pub fn assertion(&self, client_id: &str, audience: &str) -> Result<String, OidcError> {
        let now = crate::identity::now_unix();
        let header = serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": self.kid});
        let claims = serde_json::json!({
            "iss": client_id, "sub": client_id, "aud": audience,
            "jti": uuid::Uuid::new_v4().to_string(), "iat": now, "exp": now + LIFETIME,
        });
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = self
            .key
            .sign(&SystemRandom::new(), input.as_bytes())
            .map_err(|_| OidcError::Config("signing the client assertion failed".into()))?;
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref())))
    }
}
