//! Citizen portal login with OpenID Connect (feature `oidc`, on `openidconnect` 4.1).
//!
//! ```no_run
//! # async fn demo(callback_url: &str) -> Result<(), trustbus_sdk::oidc::OidcError> {
//! use trustbus_sdk::oidc::{ClientAuth, OidcConfig, PortalLogin};
//! let login = PortalLogin::discover(OidcConfig::new(
//!     "https://idp.example",                       // issuer, exactly as the IdP writes it
//!     "citizen-portal",                            // client_id
//!     ClientAuth::ClientSecretBasic("secret".into()),
//!     "https://portal.example/callback",           // redirect_uri
//! )).await?;
//! let (url, state) = login.start();   // redirect the browser to `url`, keep `state` in the session
//! # let _ = url;
//! let session = login.finish(&state, callback_url).await?;   // on the callback
//! // client.rest(..).id_token(session.id_token()).send().await
//! # let _ = session; Ok(()) }
//! ```
//!
//! The flow is the authorization-code flow with PKCE (S256), `nonce` and `state`; the client
//! authenticates at the token endpoint with `client_secret_basic` or `private_key_jwt` (an ES256
//! assertion signed with ring). `acr_values` and the `claims` parameter can be requested, and a
//! minimum `acr` enforced with the same ordered-levels rule as the bus ([`crate::identity`]).
//! HTTP goes through the SDK's own hyper client, which never follows redirects (SSRF).

mod assertion;
mod http_client;

use std::time::Duration;

use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreIdToken, CoreProviderMetadata, CoreTokenResponse,
};
use openidconnect::{
    AuthenticationContextClass, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken, Scope, TokenResponse,
};

pub use assertion::PrivateKeyJwt;
pub use http_client::OidcHttpClient;

use crate::client::{HyperTransport, Transport};
use crate::identity::{IdentityError, JwkSet, TrustedIssuer};

/// How the portal authenticates at the token endpoint.
#[derive(Debug, Clone)]
pub enum ClientAuth {
    /// `client_secret_basic`: HTTP Basic with the client secret.
    ClientSecretBasic(String),
    /// `private_key_jwt`: a short-lived ES256 assertion signed with the portal's key.
    PrivateKeyJwt(PrivateKeyJwt),
}

/// What the portal needs to know about its identity provider and itself.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// The issuer identifier, compared byte for byte with discovery and ID tokens.
    pub issuer: String,
    /// The portal's `client_id`.
    pub client_id: String,
    /// Token endpoint authentication.
    pub auth: ClientAuth,
    /// The portal's callback URL, registered with the provider.
    pub redirect_uri: String,
    /// Scopes besides `openid` (for example `profile`).
    pub scopes: Vec<String>,
    /// `acr_values` to request, preferred first.
    pub acr_values: Vec<String>,
    /// The provider's `acr` values, weakest first (for [`OidcConfig::min_acr`]).
    pub acr_levels: Vec<String>,
    /// The weakest `acr` the portal accepts; a login below it fails.
    pub min_acr: Option<String>,
    /// The `claims` request parameter (OIDC Core §5.5), for example
    /// `{"id_token":{"birthdate":null}}`.
    pub claims: Option<serde_json::Value>,
    /// Trust anchors (PEM) for an `https` provider; none means plain `http` only (tests).
    pub ca_roots_pem: Option<Vec<u8>>,
    /// Timeout of each HTTP request to the provider.
    pub timeout: Duration,
}

impl OidcConfig {
    /// A configuration with no extra scopes, `acr` or claims requests.
    pub fn new(issuer: &str, client_id: &str, auth: ClientAuth, redirect_uri: &str) -> Self {
        Self {
            issuer: issuer.to_owned(),
            client_id: client_id.to_owned(),
            auth,
            redirect_uri: redirect_uri.to_owned(),
            scopes: Vec::new(),
            acr_values: Vec::new(),
            acr_levels: Vec::new(),
            min_acr: None,
            claims: None,
            ca_roots_pem: None,
            timeout: Duration::from_secs(30),
        }
    }
}

/// Why a login or refresh failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OidcError {
    /// The configuration is unusable (URLs, keys, roots).
    #[error("OIDC configuration: {0}")]
    Config(String),
    /// Discovery failed or returned another issuer.
    #[error("OIDC discovery: {0}")]
    Discovery(String),
    /// The callback's `state` is not the one this login sent (CSRF), or `iss` differs.
    #[error("login callback does not belong to this login: {0}")]
    CallbackMismatch(&'static str),
    /// The provider reported an error (`error` on the callback or the token endpoint).
    #[error("identity provider error {error}: {description}")]
    Provider {
        /// The OAuth error code.
        error: String,
        /// The provider's description, if any.
        description: String,
    },
    /// The token request failed.
    #[error("token request: {0}")]
    Token(String),
    /// The token response had no ID token.
    #[error("the token response has no ID token")]
    NoIdToken,
    /// The ID token failed validation (signature, issuer, audience, nonce, expiry).
    #[error("ID token rejected: {0}")]
    IdToken(String),
    /// The ID token's `acr` is below [`OidcConfig::min_acr`].
    #[error("ID token rejected: {0}")]
    Identity(#[from] IdentityError),
    /// The session has no refresh token.
    #[error("the session has no refresh token")]
    NoRefreshToken,
}

/// What the portal keeps between [`PortalLogin::start`] and [`PortalLogin::finish`] (in its
/// server-side session, never in the URL).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LoginState {
    /// The `state` sent (CSRF protection).
    pub csrf: String,
    /// The `nonce` sent (replay protection, bound into the ID token).
    pub nonce: String,
    /// The PKCE verifier for the S256 challenge sent.
    pub pkce_verifier: String,
}

/// A logged-in citizen.
#[derive(Debug, Clone, PartialEq)]
pub struct CitizenSession {
    id_token: String,
    /// `sub`: the citizen's identifier at the provider.
    pub subject: String,
    /// `acr`, if present.
    pub acr: Option<String>,
    /// ID-token expiry, seconds since the Unix epoch.
    pub expires_at: i64,
    /// The access token (for the provider's own APIs, such as userinfo).
    pub access_token: String,
    /// The refresh token, if the provider issued one.
    pub refresh_token: Option<String>,
    /// All ID-token claims (name, birthdate, … as released).
    pub claims: serde_json::Map<String, serde_json::Value>,
}

impl CitizenSession {
    /// The raw ID token, to attach to bus calls (`RestCall::id_token`).
    pub fn id_token(&self) -> &str {
        &self.id_token
    }

    /// Whether the ID token expires within `margin` seconds of `now`.
    pub fn expires_within(&self, now: i64, margin: i64) -> bool {
        self.expires_at <= now.saturating_add(margin)
    }
}

type DiscoveredClient = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// A portal's login against one identity provider, after discovery.
#[derive(Debug)]
pub struct PortalLogin<T: Transport = HyperTransport> {
    config: OidcConfig,
    client: DiscoveredClient,
    http: OidcHttpClient<T>,
    token_url: String,
    jwks_url: String,
}

impl PortalLogin<HyperTransport> {
    /// Discovers the provider (`{issuer}/.well-known/openid-configuration`) over the SDK's
    /// hyper client.
    pub async fn discover(config: OidcConfig) -> Result<Self, OidcError> {
        let http = OidcHttpClient::new(config.ca_roots_pem.as_deref(), config.timeout)?;
        Self::discover_with(config, http).await
    }
}

impl<T: Transport> PortalLogin<T> {
    /// Discovers the provider over a given HTTP client.
    pub async fn discover_with(
        config: OidcConfig,
        http: OidcHttpClient<T>,
    ) -> Result<Self, OidcError> {
        let issuer = IssuerUrl::new(config.issuer.clone())
            .map_err(|e| OidcError::Config(format!("issuer URL: {e}")))?;
        let metadata = CoreProviderMetadata::discover_async(issuer, &http)
            .await
            .map_err(|e| OidcError::Discovery(error_chain(&e)))?;
        let token_url = metadata
            .token_endpoint()
            .map(|u| u.as_str().to_owned())
            .ok_or_else(|| OidcError::Discovery("no token_endpoint".into()))?;
        let jwks_url = metadata.jwks_uri().url().as_str().to_owned();
        let secret = match &config.auth {
            ClientAuth::ClientSecretBasic(s) => Some(ClientSecret::new(s.clone())),
            ClientAuth::PrivateKeyJwt(_) => None,
        };
        let redirect = RedirectUrl::new(config.redirect_uri.clone())
            .map_err(|e| OidcError::Config(format!("redirect URI: {e}")))?;
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(config.client_id.clone()),
            secret,
        )
        .set_redirect_uri(redirect);
        Ok(Self {
            config,
            client,
            http,
            token_url,
            jwks_url,
        })
    }

    /// The provider's `jwks_uri`.
    pub fn jwks_url(&self) -> &str {
        &self.jwks_url
    }

    /// The provider's token endpoint.
    pub fn token_url(&self) -> &str {
        &self.token_url
    }

    /// The HTTP client used for the provider.
    pub fn http(&self) -> &OidcHttpClient<T> {
        &self.http
    }

    /// A bus-side [`TrustedIssuer`] for this provider and portal (keys from `jwks_uri`), with
    /// the configured `acr` levels and minimum.
    pub fn trusted_issuer(&self) -> TrustedIssuer {
        let mut t = TrustedIssuer::with_jwks_url(
            self.config.issuer.clone(),
            vec![self.config.client_id.clone()],
            self.jwks_url.clone(),
        )
        .acr_levels(self.config.acr_levels.clone());
        t.min_acr = self.config.min_acr.clone();
        t
    }

    /// The authorization URL to send the browser to, and the state to keep until the callback.
    pub fn start(&self) -> (String, LoginState) {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut req = self
            .client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for s in &self.config.scopes {
            req = req.add_scope(Scope::new(s.clone()));
        }
        for a in &self.config.acr_values {
            req = req.add_auth_context_value(AuthenticationContextClass::new(a.clone()));
        }
        if let Some(c) = &self.config.claims {
            req = req.add_extra_param("claims", c.to_string());
        }
        let (url, csrf, nonce) = req.url();
        (
            url.to_string(),
            LoginState {
                csrf: csrf.secret().clone(),
                nonce: nonce.secret().clone(),
                pkce_verifier: verifier.secret().clone(),
            },
        )
    }

    /// Completes the login from the callback URL (or just its query string): checks `state`
    /// (and `iss`, when the provider sends it), exchanges the code with the PKCE verifier and
    /// client authentication, and validates the ID token (signature, issuer, audience, expiry,
    /// nonce, minimum `acr`).
    pub async fn finish(
        &self,
        state: &LoginState,
        callback: &str,
    ) -> Result<CitizenSession, OidcError> {
        let query = callback.split_once('?').map_or(callback, |(_, q)| q);
        let query = query.split_once('#').map_or(query, |(q, _)| q);
        let mut code = None;
        let (mut got_state, mut iss, mut error, mut description) = (None, None, None, None);
        for (k, v) in openidconnect::url::form_urlencoded::parse(query.as_bytes()) {
            let slot = match &*k {
                "code" => &mut code,
                "state" => &mut got_state,
                "iss" => &mut iss,
                "error" => &mut error,
                "error_description" => &mut description,
                _ => continue,
            };
            *slot = Some(v.into_owned());
        }
        if got_state.as_deref() != Some(state.csrf.as_str()) {
            return Err(OidcError::CallbackMismatch("state"));
        }
        if iss.as_ref().is_some_and(|i| *i != self.config.issuer) {
            return Err(OidcError::CallbackMismatch("iss"));
        }
        if let Some(error) = error {
            return Err(OidcError::Provider {
                error,
                description: description.unwrap_or_default(),
            });
        }
        let code = code.ok_or(OidcError::CallbackMismatch("code missing"))?;
        let mut req = self
            .client
            .exchange_code(AuthorizationCode::new(code))
            .map_err(|e| OidcError::Config(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(state.pkce_verifier.clone()));
        if let ClientAuth::PrivateKeyJwt(key) = &self.config.auth {
            let jwt = key.assertion(&self.config.client_id, &self.token_url)?;
            req = req
                .add_extra_param("client_assertion_type", assertion::ASSERTION_TYPE)
                .add_extra_param("client_assertion", jwt);
        }
        let resp = req.request_async(&self.http).await.map_err(token_error)?;
        let nonce = Nonce::new(state.nonce.clone());
        self.session_from(&resp, Some(&nonce), None)
    }

    /// Uses the refresh token for new tokens. A new ID token, if the provider returns one, is
    /// validated and must have the same subject; otherwise the old one is kept.
    pub async fn refresh(&self, session: &CitizenSession) -> Result<CitizenSession, OidcError> {
        let rt = RefreshToken::new(
            session
                .refresh_token
                .clone()
                .ok_or(OidcError::NoRefreshToken)?,
        );
        let mut req = self
            .client
            .exchange_refresh_token(&rt)
            .map_err(|e| OidcError::Config(e.to_string()))?;
        if let ClientAuth::PrivateKeyJwt(key) = &self.config.auth {
            let jwt = key.assertion(&self.config.client_id, &self.token_url)?;
            req = req
                .add_extra_param("client_assertion_type", assertion::ASSERTION_TYPE)
                .add_extra_param("client_assertion", jwt);
        }
        let resp = req.request_async(&self.http).await.map_err(token_error)?;
        if resp.id_token().is_none() {
            return Ok(CitizenSession {
                access_token: resp.access_token().secret().clone(),
                refresh_token: resp
                    .refresh_token()
                    .map(|t| t.secret().clone())
                    .or_else(|| session.refresh_token.clone()),
                ..session.clone()
            });
        }
        let mut fresh = self.session_from(&resp, None, Some(&session.subject))?;
        if fresh.refresh_token.is_none() {
            fresh.refresh_token = session.refresh_token.clone();
        }
        Ok(fresh)
    }

    fn session_from(
        &self,
        resp: &CoreTokenResponse,
        nonce: Option<&Nonce>,
        same_subject: Option<&str>,
    ) -> Result<CitizenSession, OidcError> {
        let id_token: &CoreIdToken = resp.id_token().ok_or(OidcError::NoIdToken)?;
        let verifier = self.client.id_token_verifier();
        let claims = match nonce {
            Some(n) => id_token.claims(&verifier, n),
            None => id_token.claims(&verifier, |_: Option<&Nonce>| Ok(())),
        }
        .map_err(|e| OidcError::IdToken(e.to_string()))?;
        let subject = claims.subject().as_str().to_owned();
        if same_subject.is_some_and(|s| s != subject) {
            return Err(OidcError::IdToken(
                "refreshed ID token is for another subject".into(),
            ));
        }
        let acr = claims.auth_context_ref().map(|a| a.as_str().to_owned());
        if let Some(min) = &self.config.min_acr {
            let policy = TrustedIssuer::with_pinned_keys("", Vec::new(), JwkSet::default())
                .acr_levels(self.config.acr_levels.clone());
            if !policy.acr_satisfies(acr.as_deref(), min) {
                return Err(IdentityError::AcrTooLow {
                    acr,
                    required: min.clone(),
                }
                .into());
            }
        }
        let raw = id_token.to_string();
        let all = crate::identity::CompactJws::parse(&raw)
            .ok()
            .and_then(|j| serde_json::from_slice(&j.payload).ok())
            .unwrap_or_default();
        Ok(CitizenSession {
            subject,
            acr,
            expires_at: claims.expiration().timestamp(),
            access_token: resp.access_token().secret().clone(),
            refresh_token: resp.refresh_token().map(|t| t.secret().clone()),
            claims: all,
            id_token: raw,
        })
    }
}

fn token_error<E: std::error::Error + 'static>(
    e: openidconnect::RequestTokenError<
        E,
        openidconnect::StandardErrorResponse<openidconnect::core::CoreErrorResponseType>,
    >,
) -> OidcError {
    match e {
        openidconnect::RequestTokenError::ServerResponse(r) => OidcError::Provider {
            error: r.error().to_string(),
            description: r.error_description().cloned().unwrap_or_default(),
        },
        other => OidcError::Token(error_chain(&other)),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
