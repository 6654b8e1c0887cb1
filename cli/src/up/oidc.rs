//! A tiny OpenID provider for the G2C example. **Development only**: it has one registered
//! client (the example citizen portal) and logs every visitor in, without asking anything, as
//! the same fixed citizen. It implements just what a portal's authorization-code login needs:
//! discovery, JWKS, `/authorize` (PKCE S256, `state`, `nonce`, `acr_values`), `/token`
//! (client_secret_basic or client_secret_post) with ES256 ID tokens signed with ring, and a
//! callback page that shows the portal's redirect URL for copy and paste.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde::Deserialize;
use serde_json::json;

use super::UpError;
use super::layout::{random_secret, write_private};
use super::plan;

/// How long an authorization code may be redeemed.
const CODE_TTL: Duration = Duration::from_secs(60);
/// ID token lifetime, seconds.
const TOKEN_TTL: u64 = 300;
/// The `acr` values this provider claims to support, weakest first.
const ACR_LEVELS: [&str; 3] = ["low", "substantial", "high"];

/// The provider's state.
pub(crate) struct Provider {
    issuer: String,
    client_secret: String,
    key: EcdsaKeyPair,
    kid: String,
    rng: SystemRandom,
    codes: Mutex<HashMap<String, Grant>>,
}

/// What an authorization code stands for.
struct Grant {
    redirect_uri: String,
    nonce: Option<String>,
    challenge: Option<String>,
    acr: String,
    issued: Instant,
}

/// The portal's registered redirect URI: the provider's own callback page.
pub(crate) fn redirect_uri(issuer: &str) -> String {
    format!("{issuer}/portal/callback")
}

impl Provider {
    /// Loads the signing key from `key_path` (generating it on first use, 0600).
    pub(crate) fn new(
        issuer: String,
        client_secret: String,
        key_path: &std::path::Path,
    ) -> Result<Arc<Self>, UpError> {
        let rng = SystemRandom::new();
        let pkcs8 = match std::fs::read(key_path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .map_err(|_| {
                        UpError::Setup("cannot generate the OpenID provider key".into())
                    })?;
                write_private(key_path, doc.as_ref())?;
                doc.as_ref().to_vec()
            }
            Err(e) => return Err(UpError::io(key_path)(e)),
        };
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng)
            .map_err(|e| UpError::Setup(format!("{}: {e}", key_path.display())))?;
        let digest = ring::digest::digest(&ring::digest::SHA256, key.public_key().as_ref());
        let kid = URL_SAFE_NO_PAD.encode(&digest.as_ref()[..12]);
        Ok(Arc::new(Self {
            issuer,
            client_secret,
            key,
            kid,
            rng,
            codes: Mutex::new(HashMap::new()),
        }))
    }

    /// The public key as a JWK set.
    fn jwks(&self) -> serde_json::Value {
        // Uncompressed point: 0x04 || x || y.
        let point = self.key.public_key().as_ref();
        let (x, y) = point.get(1..33).zip(point.get(33..65)).unwrap_or_default();
        json!({"keys": [{
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y)
        }]})
    }

    /// A signed ID token for the fixed citizen.
    fn id_token(&self, grant: &Grant) -> Result<String, ()> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|_| ())?
            .as_secs();
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": self.kid});
        let mut claims = json!({
            "iss": self.issuer, "sub": plan::CITIZEN, "aud": plan::OIDC_CLIENT_ID,
            "iat": now, "auth_time": now, "exp": now + TOKEN_TTL,
            "acr": grant.acr, "name": "Mari Maasikas",
            "given_name": "Mari", "family_name": "Maasikas"
        });
        if let Some(n) = &grant.nonce {
            claims["nonce"] = json!(n);
        }
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = self.key.sign(&self.rng, input.as_bytes()).map_err(|_| ())?;
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref())))
    }
}

/// The provider's routes.
pub(crate) fn router(p: Arc<Provider>) -> Router {
    Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks", get(jwks))
        .route("/authorize", get(authorize))
        .route("/token", post(token))
        .route("/portal/callback", get(callback_page))
        .with_state(p)
}

async fn discovery(State(p): State<Arc<Provider>>) -> Json<serde_json::Value> {
    let i = &p.issuer;
    Json(json!({
        "issuer": i,
        "authorization_endpoint": format!("{i}/authorize"),
        "token_endpoint": format!("{i}/token"),
        "jwks_uri": format!("{i}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "grant_types_supported": ["authorization_code"],
        "scopes_supported": ["openid", "profile"],
        "acr_values_supported": ACR_LEVELS,
        "claims_supported": ["sub", "acr", "name", "given_name", "family_name"]
    }))
}

async fn jwks(State(p): State<Arc<Provider>>) -> Json<serde_json::Value> {
    Json(p.jwks())
}

#[derive(Deserialize)]
struct AuthorizeQuery {
    response_type: Option<String>,
    client_id: Option<String>,
    redirect_uri: Option<String>,
    state: Option<String>,
    nonce: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    acr_values: Option<String>,
}

fn bad_request(msg: &str) -> Response {
    (StatusCode::BAD_REQUEST, format!("{msg}\n")).into_response()
}

/// Logs the visitor in as the fixed citizen and redirects back with a code.
async fn authorize(State(p): State<Arc<Provider>>, Query(q): Query<AuthorizeQuery>) -> Response {
    if q.client_id.as_deref() != Some(plan::OIDC_CLIENT_ID) {
        return bad_request("unknown client_id");
    }
    let expected = redirect_uri(&p.issuer);
    if q.redirect_uri.as_deref() != Some(expected.as_str()) {
        return bad_request("redirect_uri is not registered for this client");
    }
    if q.response_type.as_deref() != Some("code") {
        return bad_request("only response_type=code is supported");
    }
    if q.code_challenge.is_some() && q.code_challenge_method.as_deref() != Some("S256") {
        return bad_request("only code_challenge_method=S256 is supported");
    }
    // The strongest requested level this provider knows; otherwise "substantial".
    let acr = q
        .acr_values
        .as_deref()
        .unwrap_or_default()
        .split(' ')
        .find(|a| ACR_LEVELS.contains(a))
        .unwrap_or("substantial")
        .to_owned();
    let Ok(code) = random_secret() else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "random generator failed").into_response();
    };
    if let Ok(mut codes) = p.codes.lock() {
        codes.retain(|_, g| g.issued.elapsed() < CODE_TTL);
        codes.insert(
            code.clone(),
            Grant {
                redirect_uri: expected.clone(),
                nonce: q.nonce,
                challenge: q.code_challenge,
                acr,
                issued: Instant::now(),
            },
        );
    }
    let mut target = format!("{expected}?code={code}");
    if let Some(s) = q.state {
        target.push_str("&state=");
        target.push_str(&percent_encode(&s));
    }
    Redirect::to(&target).into_response()
}

/// Percent-encodes everything but unreserved characters.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[derive(Deserialize)]
struct TokenForm {
    grant_type: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

fn token_error(status: StatusCode, error: &str) -> Response {
    (status, Json(json!({"error": error}))).into_response()
}

/// The client's id and secret from HTTP Basic or the form.
fn client_credentials(headers: &HeaderMap, form: &TokenForm) -> Option<(String, String)> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let b64 = v.strip_prefix("Basic ")?;
        let raw = String::from_utf8(STANDARD.decode(b64.trim()).ok()?).ok()?;
        let (id, secret) = raw.split_once(':')?;
        return Some((id.to_owned(), secret.to_owned()));
    }
    Some((form.client_id.clone()?, form.client_secret.clone()?))
}

/// Redeems a code for an ID token.
async fn token(
    State(p): State<Arc<Provider>>,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    match client_credentials(&headers, &form) {
        Some((id, secret)) if id == plan::OIDC_CLIENT_ID && secret == p.client_secret => {}
        _ => return token_error(StatusCode::UNAUTHORIZED, "invalid_client"),
    }
    if form.grant_type.as_deref() != Some("authorization_code") {
        return token_error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    }
    let grant = match (form.code.as_ref(), p.codes.lock()) {
        (Some(code), Ok(mut codes)) => codes.remove(code),
        _ => None,
    };
    let Some(grant) = grant.filter(|g| g.issued.elapsed() < CODE_TTL) else {
        return token_error(StatusCode::BAD_REQUEST, "invalid_grant");
    };
    if form.redirect_uri.as_deref() != Some(grant.redirect_uri.as_str()) {
        return token_error(StatusCode::BAD_REQUEST, "invalid_grant");
    }
    if let Some(challenge) = &grant.challenge {
        let verifier = form.code_verifier.as_deref().unwrap_or_default();
        let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
        if URL_SAFE_NO_PAD.encode(digest.as_ref()) != *challenge {
            return token_error(StatusCode::BAD_REQUEST, "invalid_grant");
        }
    }
    let Ok(id_token) = p.id_token(&grant) else {
        return token_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error");
    };
    let access_token = random_secret().unwrap_or_default();
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({
            "access_token": access_token, "token_type": "Bearer",
            "expires_in": TOKEN_TTL, "id_token": id_token
        })),
    )
        .into_response()
}

/// Where the browser lands after login: shows the URL to paste into the g2c example.
async fn callback_page() -> Html<&'static str> {
    Html(
        "<!doctype html><title>Trustbus example portal</title>\
         <p>Logged in at the example OpenID provider (development only).</p>\
         <p>Copy this page's full URL from the address bar and paste it into the \
         <code>g2c</code> example.</p>",
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use trustbus_sdk::identity::{IdTokenVerifier, JwkSet, TrustedIssuer, VerifyOptions};

    #[test]
    fn id_tokens_verify_with_the_bus_rules_and_the_published_keys() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k.p8");
        let p = Provider::new("http://127.0.0.1:1".into(), "s".into(), &key).unwrap();
        let grant = Grant {
            redirect_uri: redirect_uri(&p.issuer),
            nonce: Some("n".into()),
            challenge: None,
            acr: "substantial".into(),
            issued: Instant::now(),
        };
        let token = p.id_token(&grant).unwrap();
        let set = JwkSet::parse(p.jwks().to_string().as_bytes()).unwrap();
        let v = IdTokenVerifier::new(vec![TrustedIssuer::with_pinned_keys(
            "http://127.0.0.1:1",
            vec![plan::OIDC_CLIENT_ID.into()],
            set,
        )]);
        let now = i64::try_from(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs(),
        )
        .unwrap();
        let id = v
            .verify_cached(
                &token,
                &VerifyOptions {
                    nonce: Some("n"),
                    ..VerifyOptions::default()
                },
                now,
            )
            .unwrap();
        assert_eq!(id.subject, plan::CITIZEN);
        assert_eq!(id.acr.as_deref(), Some("substantial"));

        // The key is kept: a second provider on the same file publishes the same key.
        let again = Provider::new("http://127.0.0.1:1".into(), "s".into(), &key).unwrap();
        assert_eq!(again.jwks(), p.jwks());
    }

    #[test]
    fn state_is_percent_encoded() {
        assert_eq!(percent_encode("a b&c=d~"), "a%20b%26c%3Dd~");
    }
}
