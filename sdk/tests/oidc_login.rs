//! Portal login against an OpenID provider we did not write: panva/oidc-provider (npm), started
//! on loopback by `tests/oidc-provider/server.mjs`. Needs `node` and `npm` (CI installs them);
//! without them these tests fail with a message saying so.

#![cfg(feature = "oidc")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use trustbus_sdk::client::{HyperTransport, Transport};
use trustbus_sdk::identity::{
    IdTokenVerifier, IdentityError, TrustedIssuer, VerifyOptions, now_unix,
};
use trustbus_sdk::oidc::{
    ClientAuth, LoginState, OidcConfig, OidcError, PortalLogin, PrivateKeyJwt,
};

const REDIRECT: &str = "http://127.0.0.1/callback";
const CITIZEN: &str = "EE38001085718";

fn provider_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oidc-provider")
}

static NPM: Mutex<()> = Mutex::new(());

/// `npm ci` once if `node_modules` is missing; fails loudly without node/npm.
fn ensure_installed() {
    let _guard = NPM.lock().unwrap_or_else(|e| e.into_inner());
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.as_ref().is_ok_and(|o| o.status.success()),
        "these tests need Node.js (`node` on PATH, version 20.19 or later) and npm to run the \
         oidc-provider test IdP; install the Debian packages `nodejs` and `npm` (or Node 22 LTS). \
         Error: {node:?}"
    );
    let dir = provider_dir();
    if !dir.join("node_modules/oidc-provider/package.json").exists() {
        let out = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .output()
            .expect("`npm` not found: install npm to run the OIDC login tests");
        assert!(
            out.status.success(),
            "npm ci failed in {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A running oidc-provider; killed on drop.
struct Idp {
    child: Child,
    issuer: String,
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_idp(client_jwks: &serde_json::Value) -> Idp {
    ensure_installed();
    let port = free_port();
    let mut child = Command::new("node")
        .arg("server.mjs")
        .current_dir(provider_dir())
        .env("PORT", port.to_string())
        .env("CLIENT_JWKS", client_jwks.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting node server.mjs");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(issuer) = line.strip_prefix("READY ") {
                let _ = tx.send(issuer.to_owned());
            }
        }
    });
    let issuer = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(i) => i,
        Err(e) => {
            let _ = child.kill();
            panic!("oidc-provider did not start on port {port}: {e}");
        }
    };
    Idp { child, issuer }
}

fn config(idp: &Idp, client_id: &str, auth: ClientAuth) -> OidcConfig {
    let mut c = OidcConfig::new(&idp.issuer, client_id, auth, REDIRECT);
    c.scopes = vec!["profile".into()];
    c.acr_values = vec!["substantial".into()];
    c.acr_levels = vec!["low".into(), "substantial".into(), "high".into()];
    c.claims = Some(serde_json::json!({"id_token": {"name": null, "birthdate": null}}));
    c
}

fn basic() -> ClientAuth {
    ClientAuth::ClientSecretBasic("portal-basic-secret".into())
}

/// Plays the browser: follows the provider's redirects by hand, with cookies, until it is sent
/// to the portal's redirect URI, and returns that URL.
async fn browse(issuer: &str, start_url: &str) -> String {
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    let http = HyperTransport::new(
        tls,
        Duration::from_secs(5),
        Duration::from_secs(10),
        1 << 20,
    );
    let mut cookies: HashMap<String, String> = HashMap::new();
    let mut url = start_url.to_owned();
    for _ in 0..12 {
        if url.starts_with(REDIRECT) {
            return url;
        }
        let mut req = http::Request::get(&url).body(Bytes::new()).unwrap();
        if !cookies.is_empty() {
            let c: Vec<String> = cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
            req.headers_mut()
                .insert("cookie", c.join("; ").parse().unwrap());
        }
        let resp = http.send(req).await.unwrap();
        for sc in resp.headers().get_all("set-cookie") {
            let sc = sc.to_str().unwrap();
            let (pair, attrs) = sc.split_once(';').unwrap_or((sc, ""));
            let (name, value) = pair.split_once('=').unwrap();
            let attrs = attrs.to_ascii_lowercase();
            if value.is_empty() || attrs.contains("max-age=0") || attrs.contains("1970") {
                cookies.remove(name.trim());
            } else {
                cookies.insert(name.trim().to_owned(), value.trim().to_owned());
            }
        }
        assert!(
            resp.status().is_redirection(),
            "expected a redirect from {url}, got {}: {}",
            resp.status(),
            String::from_utf8_lossy(resp.body())
        );
        let loc = resp.headers()["location"].to_str().unwrap();
        url = if loc.starts_with("http") {
            loc.to_owned()
        } else {
            format!("{issuer}{loc}")
        };
    }
    panic!("too many redirects, last {url}");
}

async fn login(login: &PortalLogin) -> (LoginState, String) {
    let (url, state) = login.start();
    let callback = browse(&login_issuer(login), &url).await;
    (state, callback)
}

fn login_issuer(l: &PortalLogin) -> String {
    l.token_url().trim_end_matches("/token").to_owned()
}

#[tokio::test]
async fn client_secret_basic_login_verify_refresh_and_g2c_call() {
    let idp = start_idp(&serde_json::json!({"keys": []}));
    let portal = PortalLogin::discover(config(&idp, "portal-basic", basic()))
        .await
        .unwrap();
    let (url, _) = portal.start();
    for param in [
        "code_challenge_method=S256",
        "code_challenge=",
        "nonce=",
        "state=",
        "acr_values=substantial",
        "claims=",
    ] {
        assert!(url.contains(param), "{param} missing in {url}");
    }
    let (state, callback) = login(&portal).await;
    assert!(callback.contains("code="), "{callback}");

    // Validated by openidconnect inside finish (signature, iss, aud, exp, nonce).
    let session = portal.finish(&state, &callback).await.unwrap();
    assert_eq!(session.subject, CITIZEN);
    assert_eq!(session.acr.as_deref(), Some("substantial"));
    assert_eq!(session.claims["name"], "Mari Maasikas");
    assert_eq!(session.claims["birthdate"], "1980-01-08");
    assert!(session.expires_at > now_unix());
    assert!(session.refresh_token.is_some());

    // ... and by our own verifier, JWKS fetched from the provider over HTTP.
    let verifier = IdTokenVerifier::new(vec![portal.trusted_issuer()]);
    let opts = VerifyOptions {
        required_acr: Some("substantial"),
        nonce: Some(&state.nonce),
    };
    let id = verifier
        .verify(session.id_token(), &opts, now_unix(), portal.http())
        .await
        .unwrap();
    assert_eq!(id.subject, CITIZEN);
    assert_eq!(id.issuer, idp.issuer);
    assert_eq!(id.algorithm.name(), "RS256");
    assert_eq!(id.kid.as_deref(), Some("idp-rs256-1"));

    // Negative checks on the real token, cheap ones.
    let wrong_nonce = VerifyOptions {
        nonce: Some("other"),
        ..opts
    };
    assert_eq!(
        verifier
            .verify(session.id_token(), &wrong_nonce, now_unix(), portal.http())
            .await,
        Err(IdentityError::NonceMismatch)
    );
    let high = VerifyOptions {
        required_acr: Some("high"),
        nonce: None,
    };
    assert!(matches!(
        verifier
            .verify(session.id_token(), &high, now_unix(), portal.http())
            .await,
        Err(IdentityError::AcrTooLow { .. })
    ));
    let other_aud = IdTokenVerifier::new(vec![TrustedIssuer::with_jwks_url(
        idp.issuer.clone(),
        vec!["another-portal".into()],
        portal.jwks_url(),
    )]);
    assert_eq!(
        other_aud
            .verify(
                session.id_token(),
                &VerifyOptions::default(),
                now_unix(),
                portal.http()
            )
            .await,
        Err(IdentityError::WrongAudience)
    );
    let expired_clock = now_unix() + 3600;
    assert!(matches!(
        verifier
            .verify(
                session.id_token(),
                &VerifyOptions::default(),
                expired_clock,
                portal.http()
            )
            .await,
        Err(IdentityError::Expired { .. })
    ));
    let mut tampered = session.id_token().to_owned();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    assert!(matches!(
        verifier
            .verify(
                &tampered,
                &VerifyOptions::default(),
                now_unix(),
                portal.http()
            )
            .await,
        Err(IdentityError::InvalidSignature | IdentityError::Malformed(_))
    ));

    // G2C: the consumer side verifies the token; the provider sees the verified subject and
    // returns only that citizen's records.
    g2c_provider_sees_verified_subject(&verifier, session.id_token(), portal.http()).await;

    // Refresh: new tokens, same citizen, new ID token validated.
    let refreshed = portal.refresh(&session).await.unwrap();
    assert_eq!(refreshed.subject, CITIZEN);
    assert_ne!(refreshed.access_token, session.access_token);
    assert!(
        verifier
            .verify(
                refreshed.id_token(),
                &VerifyOptions::default(),
                now_unix(),
                portal.http()
            )
            .await
            .is_ok()
    );

    // The code is single use, and replaying it revokes what it produced (RFC 6749 §4.1.2).
    let reuse = portal.finish(&state, &callback).await.unwrap_err();
    assert!(
        matches!(&reuse, OidcError::Provider { error, .. } if error == "invalid_grant"),
        "{reuse:?}"
    );
    let revoked = portal.refresh(&refreshed).await.unwrap_err();
    assert!(
        matches!(&revoked, OidcError::Provider { error, .. } if error == "invalid_grant"),
        "{revoked:?}"
    );
}

async fn g2c_provider_sees_verified_subject<T: Transport>(
    verifier: &IdTokenVerifier,
    token: &str,
    http: &trustbus_sdk::oidc::OidcHttpClient<T>,
) {
    use axum::{Json, Router, routing::get};
    use trustbus_sdk::provider::VerifiedUser;
    use trustbus_sdk::provider::testing::{ForgedContext, call};

    async fn my_records(user: VerifiedUser) -> Json<serde_json::Value> {
        let all = [
            (CITIZEN, "tax-2024"),
            ("EE49002124277", "tax-2024"),
            (CITIZEN, "tax-2025"),
        ];
        let mine: Vec<_> = all
            .iter()
            .filter(|(who, _)| *who == user.id)
            .map(|(_, r)| *r)
            .collect();
        Json(serde_json::json!({"subject": user.id, "records": mine}))
    }
    let app = Router::new().route("/my-records", get(my_records));
    let identity = verifier
        .verify(token, &VerifyOptions::default(), now_unix(), http)
        .await
        .unwrap();
    let ctx = ForgedContext::new("DEV/GOV/1234/citizen-portal").verified_user(&identity.subject);
    let req = http::Request::get("/my-records")
        .body(axum::body::Body::empty())
        .unwrap();
    let resp = call(app, ctx, req).await;
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"subject": CITIZEN, "records": ["tax-2024", "tax-2025"]})
    );
}

#[tokio::test]
async fn private_key_jwt_login() {
    let key = PrivateKeyJwt::generate("portal-key-1").unwrap();
    let idp = start_idp(&serde_json::json!({"keys": [key.public_jwk()]}));
    let portal = PortalLogin::discover(config(&idp, "portal-jwt", ClientAuth::PrivateKeyJwt(key)))
        .await
        .unwrap();
    let (state, callback) = login(&portal).await;
    let session = portal.finish(&state, &callback).await.unwrap();
    assert_eq!(session.subject, CITIZEN);
    let verifier = IdTokenVerifier::new(vec![portal.trusted_issuer()]);
    let id = verifier
        .verify(
            session.id_token(),
            &VerifyOptions {
                nonce: Some(&state.nonce),
                ..Default::default()
            },
            now_unix(),
            portal.http(),
        )
        .await
        .unwrap();
    assert_eq!(id.audiences, ["portal-jwt"]);
    let refreshed = portal.refresh(&session).await.unwrap();
    assert_eq!(refreshed.subject, CITIZEN);

    // A key the provider does not know is refused at the token endpoint.
    let stranger = PrivateKeyJwt::generate("portal-key-1").unwrap();
    let bad = PortalLogin::discover(config(
        &idp,
        "portal-jwt",
        ClientAuth::PrivateKeyJwt(stranger),
    ))
    .await
    .unwrap();
    let (state, callback) = login(&bad).await;
    let e = bad.finish(&state, &callback).await.unwrap_err();
    assert!(
        matches!(&e, OidcError::Provider { error, .. } if error == "invalid_client"),
        "{e:?}"
    );
}

#[tokio::test]
async fn login_negative_cases() {
    let idp = start_idp(&serde_json::json!({"keys": []}));
    let portal = PortalLogin::discover(config(&idp, "portal-basic", basic()))
        .await
        .unwrap();

    // Wrong state (CSRF): refused before any token request.
    let (state, callback) = login(&portal).await;
    let forged = LoginState {
        csrf: "forged".into(),
        ..state.clone()
    };
    assert!(matches!(
        portal.finish(&forged, &callback).await,
        Err(OidcError::CallbackMismatch("state"))
    ));
    // Wrong nonce: openidconnect rejects the ID token.
    let wrong_nonce = LoginState {
        nonce: "other-nonce".into(),
        ..state
    };
    assert!(matches!(
        portal.finish(&wrong_nonce, &callback).await,
        Err(OidcError::IdToken(_))
    ));

    // Wrong client secret.
    let bad = PortalLogin::discover(config(
        &idp,
        "portal-basic",
        ClientAuth::ClientSecretBasic("nope".into()),
    ))
    .await
    .unwrap();
    let (state, callback) = login(&bad).await;
    let e = bad.finish(&state, &callback).await.unwrap_err();
    assert!(
        matches!(&e, OidcError::Provider { error, .. } if error == "invalid_client"),
        "{e:?}"
    );

    // A login at a lower acr than the portal's minimum.
    let mut weak = config(&idp, "portal-basic", basic());
    weak.acr_values = vec!["low".into()];
    weak.min_acr = Some("substantial".into());
    let weak = PortalLogin::discover(weak).await.unwrap();
    let (state, callback) = login(&weak).await;
    let e = weak.finish(&state, &callback).await.unwrap_err();
    assert!(
        matches!(&e, OidcError::Identity(IdentityError::AcrTooLow { acr: Some(a), required }) if a == "low" && required == "substantial"),
        "{e:?}"
    );

    // Discovery insists on the exact issuer string (no trailing-slash normalisation).
    let slash = OidcConfig::new(
        &format!("{}/", idp.issuer),
        "portal-basic",
        basic(),
        REDIRECT,
    );
    assert!(matches!(
        PortalLogin::discover(slash).await,
        Err(OidcError::Discovery(_))
    ));
}
