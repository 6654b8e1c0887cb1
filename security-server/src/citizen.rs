//! End-user (citizen) identity on the bus (docs/protocol.md §5.3.1).
//!
//! Consumer side: an information system passes the citizen's OpenID Connect ID token in
//! `Trustbus-Id-Token`; [`CitizenVerifier::resolve`] verifies it against the identity providers
//! trusted in global configuration (`trusted_oidc_issuers`) with the SDK's
//! [`IdTokenVerifier`] and returns the [`UserIdentity`] that is signed into the exchange:
//! `{id: sub, verified: true, issuer, acr}`. A token that does not verify is refused with
//! `Client.InvalidUserIdentity` before anything is signed or sent, whatever the service.
//!
//! Provider side: [`enforce`] refuses, before the backend is called, a request for a service
//! that requires a verified end user (`require_verified_user`, `min_acr`) when the signed
//! identity is missing, unverified, from an issuer no longer trusted, or below the level; and
//! [`backend_user_headers`] rewrites the end-user headers the backend sees from the signed
//! metadata only (`X-Road-UserId`, `Trustbus-User-Verified`, `Trustbus-User-Issuer`,
//! `Trustbus-User-Acr`), never from what the client sent.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Limited};
use trustbus_central_server::model::OidcIssuer;
use trustbus_sdk::fault::{ErrorKind, Fault, Origin};
use trustbus_sdk::identity::jwt::CompactJws;
use trustbus_sdk::identity::{
    CacheConfig, IdTokenVerifier, IdentityError, JwkSet, JwksCache, JwksFetcher, JwksSource,
    TrustedIssuer, VerifiedIdentity, VerifyOptions,
};
use trustbus_sdk::rest::Headers;

use crate::config::{ClientConfig, EndUserIdentitySection, ServiceConfig};
use crate::gcview::GcView;
use crate::httpc::{CallError, HttpClient};
use crate::transport::UserIdentity;

/// `Trustbus-User-Issuer`: the identity provider that vouched for a verified end user.
pub const USER_ISSUER_HEADER: &str = "Trustbus-User-Issuer";
/// `Trustbus-User-Acr`: the authentication level (`acr`) of a verified end user's login.
pub const USER_ACR_HEADER: &str = "Trustbus-User-Acr";

/// End-user headers only a security server may set towards a service; any copy a client sent
/// is removed on both sides.
const BUS_USER_HEADERS: [&str; 6] = [
    "x-road-userid",
    "uxp-userid",
    "trustbus-user-verified",
    "trustbus-user-issuer",
    "trustbus-user-acr",
    "trustbus-id-token",
];

/// Whether `name` is an end-user header the bus sets (client copies are dropped).
pub fn is_bus_user_header(name: &str) -> bool {
    BUS_USER_HEADERS
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h))
}

/// Largest JWK set document fetched, bytes.
const MAX_JWKS_BYTES: usize = 256 * 1024;

/// The trusted issuers of a global configuration, for the SDK verifier. The `default` entry
/// of `min_acr` is the issuer's minimum. An issuer whose pinned key set does not parse is left
/// out (and logged): its tokens are then refused as from an unknown issuer.
pub fn trusted_issuers(issuers: &[OidcIssuer]) -> Vec<TrustedIssuer> {
    issuers
        .iter()
        .filter_map(|i| {
            let t = match (&i.jwks_url, &i.jwks) {
                (Some(url), None) => {
                    TrustedIssuer::with_jwks_url(&i.issuer, i.audiences.clone(), url)
                }
                (None, Some(doc)) => {
                    let bytes = serde_json::to_vec(doc).unwrap_or_default();
                    match JwkSet::parse(&bytes) {
                        Ok(set) => {
                            TrustedIssuer::with_pinned_keys(&i.issuer, i.audiences.clone(), set)
                        }
                        Err(e) => {
                            tracing::warn!(issuer = %i.issuer, error = %e, "skipping a trusted OIDC issuer with an unusable pinned key set");
                            return None;
                        }
                    }
                }
                _ => {
                    tracing::warn!(issuer = %i.issuer, "skipping a trusted OIDC issuer without exactly one key source");
                    return None;
                }
            };
            let t = t.acr_levels(i.acr_levels.iter().cloned());
            Some(match i.min_acr.get("default") {
                Some(m) => t.min_acr(m),
                None => t,
            })
        })
        .collect()
}

/// Fetches JWK sets: plain HTTP only from loopback hosts (unless allowed in configuration),
/// HTTPS with the roots of `jwks_tls_ca`; never follows redirects.
#[derive(Debug, Clone)]
pub struct JwksHttp {
    http: HttpClient,
    tls: Option<Result<Arc<rustls::ClientConfig>, String>>,
    allow_plain_http: bool,
    timeout: Duration,
    /// When each URL last gave a usable JWK set (seconds since the epoch).
    last_ok: Arc<Mutex<HashMap<String, i64>>>,
}

/// Whether `host` (as in a URL authority, IPv6 in brackets) is a loopback address.
fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost") || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl JwksHttp {
    /// A fetcher configured by `[end_user_identity]`.
    pub fn new(cfg: &EndUserIdentitySection, connect_timeout: Duration) -> Self {
        let tls = cfg.jwks_tls_ca.as_deref().map(|ca| {
            crate::httpc::backend_tls_config(ca).inspect_err(|e| {
                tracing::error!(error = %e, "end_user_identity.jwks_tls_ca is unusable");
            })
        });
        Self {
            http: HttpClient::new(connect_timeout),
            tls,
            allow_plain_http: cfg.allow_plain_http_jwks,
            timeout: Duration::from_secs(10),
            last_ok: Arc::default(),
        }
    }

    fn last_ok(&self) -> std::sync::MutexGuard<'_, HashMap<String, i64>> {
        self.last_ok.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl JwksFetcher for JwksHttp {
    async fn fetch_jwks(&self, url: &str) -> Result<Vec<u8>, String> {
        let uri: http::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
        let host = uri.host().unwrap_or_default();
        let req = http::Request::get(uri.clone())
            .header(
                http::header::ACCEPT,
                "application/json, application/jwk-set+json",
            )
            .body(crate::httpc::full(Vec::new()))
            .map_err(|e| format!("{url}: {e}"))?;
        let resp = match uri.scheme_str() {
            Some("http") if self.allow_plain_http || is_loopback(host) => {
                self.http.call(req, self.timeout).await
            }
            Some("http") => {
                return Err(format!(
                    "{url}: plain HTTP key sets are accepted only from loopback \
                     (end_user_identity.allow_plain_http_jwks)"
                ));
            }
            Some("https") => match &self.tls {
                Some(Ok(tls)) => {
                    crate::httpc::call_https(tls.clone(), req, self.timeout, self.timeout).await
                }
                Some(Err(e)) => Err(CallError::Other(format!("jwks_tls_ca: {e}"))),
                None => {
                    return Err(format!(
                        "{url}: HTTPS key sets need end_user_identity.jwks_tls_ca"
                    ));
                }
            },
            _ => return Err(format!("{url}: not an http(s) URL")),
        }
        .map_err(|e| format!("{url}: {e}"))?;
        if resp.status() != http::StatusCode::OK {
            return Err(format!("{url}: HTTP {}", resp.status()));
        }
        let body = tokio::time::timeout(
            self.timeout,
            Limited::new(resp.into_body(), MAX_JWKS_BYTES).collect(),
        )
        .await
        .map_err(|_| format!("{url}: reading the key set timed out"))?
        .map_err(|e| format!("{url}: {e}"))?;
        let bytes = body.to_bytes().to_vec();
        if JwkSet::parse(&bytes).is_ok() {
            self.last_ok()
                .insert(url.to_owned(), trustbus_sdk::identity::now_unix());
        }
        Ok(bytes)
    }
}

/// The verifier for the current set of trusted issuers, rebuilt only when that set changes
/// (so cached key sets survive configuration versions that do not touch the issuers).
///
/// A token is checked against its issuer's cached key set without waiting while that set is
/// younger than `jwks_max_age_seconds`. A token whose key is not cached, or any token of an
/// issuer whose set is due for a refresh, goes through that issuer's gate: one caller fetches,
/// the others wait for its result instead of being refused while the fetch is under way (the
/// SDK cache lets only one caller per interval fetch).
#[derive(Debug)]
pub struct CitizenVerifier {
    current: Mutex<Option<(Vec<TrustedIssuer>, Arc<IdTokenVerifier>)>>,
    fetcher: JwksHttp,
    fetch_gates: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    clock_skew: u64,
    cache: CacheConfig,
}

/// Why the consumer refuses an end-user identity: `Client.InvalidUserIdentity` with `m`.
fn invalid(m: impl Into<String>) -> Fault {
    Fault::of(Origin::Client, ErrorKind::InvalidUserIdentity, m)
}

impl CitizenVerifier {
    /// A verifier configured by `[end_user_identity]`.
    pub fn new(cfg: &EndUserIdentitySection, connect_timeout: Duration) -> Self {
        Self {
            current: Mutex::new(None),
            fetcher: JwksHttp::new(cfg, connect_timeout),
            fetch_gates: Mutex::default(),
            clock_skew: cfg.clock_skew_seconds,
            cache: CacheConfig {
                min_refresh_interval: cfg.jwks_min_refresh_seconds,
                max_age: cfg.jwks_max_age_seconds,
            },
        }
    }

    fn verifier(&self, view: &GcView) -> Arc<IdTokenVerifier> {
        let mut cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((issuers, v)) = cur.as_ref()
            && issuers == &view.trusted_issuers
        {
            return v.clone();
        }
        let v = Arc::new(
            IdTokenVerifier::new(view.trusted_issuers.clone())
                .with_clock_skew(self.clock_skew)
                .with_cache(JwksCache::new(self.cache)),
        );
        *cur = Some((view.trusted_issuers.clone(), v.clone()));
        // The new verifier starts with an empty cache.
        self.fetcher.last_ok().clear();
        v
    }

    /// The JWKS URL of the issuer `token` names, if it is a trusted issuer with fetched keys.
    /// The claims are not verified yet: this only picks the cache entry and the fetch gate.
    fn jwks_url_of(verifier: &IdTokenVerifier, token: &str) -> Option<String> {
        let jws = CompactJws::parse(token).ok()?;
        let claims: serde_json::Value = serde_json::from_slice(&jws.payload).ok()?;
        let iss = claims.get("iss")?.as_str()?;
        verifier
            .issuers()
            .iter()
            .find(|i| i.issuer == iss)
            .and_then(|i| match &i.jwks {
                JwksSource::Url(url) => Some(url.clone()),
                JwksSource::Pinned(_) => None,
            })
    }

    /// The gate of one JWKS URL: its fetches do not hold up other issuers' tokens.
    fn gate(&self, url: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut gates = self.fetch_gates.lock().unwrap_or_else(|e| e.into_inner());
        gates.entry(url.to_owned()).or_default().clone()
    }

    async fn verify(
        &self,
        verifier: &IdTokenVerifier,
        token: &str,
        now: i64,
    ) -> Result<VerifiedIdentity, IdentityError> {
        let opts = VerifyOptions::default();
        let Some(url) = Self::jwks_url_of(verifier, token) else {
            // Pinned keys, an unknown issuer or a malformed token: nothing to fetch.
            return verifier.verify_cached(token, &opts, now);
        };
        let fresh = self
            .fetcher
            .last_ok()
            .get(&url)
            .is_some_and(|t| now.saturating_sub(*t) < self.cache.max_age as i64);
        if fresh {
            match verifier.verify_cached(token, &opts, now) {
                Err(IdentityError::UnknownKeyId(_)) => {}
                done => return done,
            }
        }
        let gate = self.gate(&url);
        let _held = gate.lock().await;
        verifier.verify(token, &opts, now, &self.fetcher).await
    }

    /// The end user to sign into a request from `client`. With an ID token: the verified
    /// subject (the token must verify, be issued to one of the client's `id_token_audiences`
    /// if it lists any, and an asserted user id must equal its `sub`). Without one: the
    /// asserted user id, unverified, if the client may assert user ids (else `None`; the
    /// caller decides whether an assertion is an error).
    pub async fn resolve(
        &self,
        view: &GcView,
        client: &ClientConfig,
        id_token: Option<&str>,
        asserted: Option<&str>,
    ) -> Result<Option<UserIdentity>, Fault> {
        let Some(token) = id_token else {
            return Ok(asserted
                .filter(|_| client.allow_unverified_user_id)
                .map(|u| UserIdentity {
                    id: u.to_owned(),
                    verified: false,
                    issuer: None,
                    acr: None,
                }));
        };
        let verifier = self.verifier(view);
        let now = trustbus_sdk::identity::now_unix();
        let id = self.verify(&verifier, token, now).await.map_err(|e| {
            tracing::info!(reason = e.reason(), error = %e, "ID token refused");
            e.fault()
        })?;
        // The subject travels in HTTP headers to the service: visible ASCII only.
        if id.subject.len() > 255 || !id.subject.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid(
                "user identity rejected (invalid_claim): sub must be at most 255 visible ASCII characters",
            ));
        }
        let audiences = &client.id_token_audiences;
        if !audiences.is_empty() && !id.audiences.iter().any(|a| audiences.contains(a)) {
            return Err(invalid(format!(
                "user identity rejected (wrong_audience): the token was not issued to client {}",
                client.id.to_slash()
            )));
        }
        if let Some(a) = asserted
            && a != id.subject
        {
            return Err(invalid(
                "user identity rejected (subject_mismatch): the asserted user id is not the ID token's subject",
            ));
        }
        Ok(Some(UserIdentity {
            id: id.subject,
            verified: true,
            issuer: Some(id.issuer),
            acr: id.acr,
        }))
    }
}

/// Provider side: a service that requires a verified end user gets one that the consumer's
/// security server verified, from an issuer still trusted, at the service's `min_acr` (and the
/// issuer's own minimum) or above. Otherwise `Client.InvalidUserIdentity`.
pub fn enforce(
    svc: &ServiceConfig,
    user: Option<&UserIdentity>,
    view: &GcView,
) -> Result<(), Fault> {
    if !svc.require_verified_user {
        return Ok(());
    }
    let who = svc.id.to_slash();
    let u = user.ok_or_else(|| {
        invalid(format!(
            "{who} requires an end user verified by the bus (send the citizen's ID token in Trustbus-Id-Token)"
        ))
    })?;
    if !u.verified {
        return Err(invalid(format!(
            "{who} requires an end user verified by the bus; the user id was only asserted by the client"
        )));
    }
    let issuer = u
        .issuer
        .as_deref()
        .and_then(|iss| view.trusted_issuers.iter().find(|t| t.issuer == iss))
        .ok_or_else(|| {
            invalid(format!(
                "the end user's identity provider {:?} is not trusted in global configuration",
                u.issuer.as_deref().unwrap_or("")
            ))
        })?;
    for required in [issuer.min_acr.as_deref(), svc.min_acr.as_deref()]
        .into_iter()
        .flatten()
    {
        if !issuer.acr_satisfies(u.acr.as_deref(), required) {
            let level = match u.acr.as_deref() {
                Some(a) => format!("authentication level {a:?}"),
                None => "a login without an authentication level (acr)".to_owned(),
            };
            return Err(invalid(format!(
                "user identity rejected (acr_too_low): {level} does not meet {required:?}, \
                 which {who} requires"
            )));
        }
    }
    Ok(())
}

/// Provider side: `headers` without any end-user header a client sent, then the end user of
/// the signed metadata: `X-Road-UserId`, and for a verified one `Trustbus-User-Verified: true`,
/// `Trustbus-User-Issuer` and `Trustbus-User-Acr`.
pub fn backend_user_headers(
    headers: &Headers<'_>,
    user: Option<&UserIdentity>,
) -> Headers<'static> {
    let mut out = Headers::with_capacity(headers.len() + 4);
    for (n, v) in headers.iter() {
        if !is_bus_user_header(n) {
            out.push(n.to_owned(), v.to_vec());
        }
    }
    add_user_headers(&mut out, user);
    out
}

/// Appends the end-user headers of `user` (see [`backend_user_headers`]).
pub fn add_user_headers(out: &mut Headers<'static>, user: Option<&UserIdentity>) {
    let Some(u) = user else { return };
    out.push("X-Road-UserId", u.id.clone().into_bytes());
    if u.verified {
        out.push("Trustbus-User-Verified", b"true".to_vec());
        if let Some(i) = &u.issuer {
            out.push(USER_ISSUER_HEADER, i.clone().into_bytes());
        }
        if let Some(a) = &u.acr {
            out.push(USER_ACR_HEADER, a.clone().into_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in ["127.0.0.1", "127.9.9.9", "[::1]", "localhost", "LOCALHOST"] {
            assert!(is_loopback(h), "{h}");
        }
        for h in ["10.0.0.1", "idp.example", "[::2]", "localhost.example", ""] {
            assert!(!is_loopback(h), "{h}");
        }
    }

    #[test]
    fn client_user_headers_never_reach_the_backend() {
        let h = Headers::new()
            .with("Accept", "application/json")
            .with("trustbus-user-verified", "true")
            .with("X-Road-UserId", "EE-attacker")
            .with("Uxp-UserId", "EE-attacker")
            .with("Trustbus-User-Acr", "high");
        let out = backend_user_headers(&h, None);
        let names: Vec<&str> = out.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["Accept"]);
        let verified = UserIdentity {
            id: "EE1".into(),
            verified: true,
            issuer: Some("https://idp".into()),
            acr: Some("high".into()),
        };
        let out = backend_user_headers(&h, Some(&verified));
        let got: Vec<(String, String)> = out
            .iter()
            .map(|(n, v)| (n.to_owned(), String::from_utf8_lossy(v).into_owned()))
            .collect();
        let want = [
            ("Accept", "application/json"),
            ("X-Road-UserId", "EE1"),
            ("Trustbus-User-Verified", "true"),
            ("Trustbus-User-Issuer", "https://idp"),
            ("Trustbus-User-Acr", "high"),
        ];
        assert_eq!(
            got,
            want.map(|(n, v)| (n.to_owned(), v.to_owned())).to_vec()
        );
        let unverified = UserIdentity {
            id: "EE2".into(),
            verified: false,
            issuer: None,
            acr: None,
        };
        let out = backend_user_headers(&h, Some(&unverified));
        assert_eq!(out.get_last("x-road-userid"), Some(&b"EE2"[..]));
        assert_eq!(out.get_last("trustbus-user-verified"), None);
    }

    #[test]
    fn issuers_from_global_configuration() {
        let mut min = std::collections::BTreeMap::new();
        min.insert("default".to_owned(), "substantial".to_owned());
        let i = OidcIssuer {
            issuer: "https://idp".into(),
            audiences: vec!["portal".into()],
            jwks_url: Some("https://idp/jwks".into()),
            jwks: None,
            min_acr: min,
            acr_levels: vec!["low".into(), "substantial".into(), "high".into()],
        };
        let broken = OidcIssuer {
            issuer: "https://broken".into(),
            jwks_url: None,
            jwks: Some(serde_json::json!({"keys": "no"})),
            ..i.clone()
        };
        let t = trusted_issuers(&[i, broken]);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].min_acr.as_deref(), Some("substantial"));
        assert!(t[0].acr_satisfies(Some("high"), "substantial"));
        assert!(!t[0].acr_satisfies(Some("low"), "substantial"));
    }

    fn view(issuers: Vec<OidcIssuer>) -> GcView {
        let ca = serde_json::from_value(serde_json::json!({"name": "ca", "roots": []})).unwrap();
        let mut shared = crate::testkit::shared_params(&[], vec![], ca);
        shared.trusted_oidc_issuers = issuers;
        let expires = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
        GcView::new(crate::testkit::global_conf(shared, 1, expires))
    }

    fn issuer(name: &str, min: Option<&str>) -> OidcIssuer {
        OidcIssuer {
            issuer: name.into(),
            audiences: vec!["portal".into()],
            jwks_url: Some(format!("{name}/jwks")),
            jwks: None,
            min_acr: min
                .map(|m| [("default".to_owned(), m.to_owned())].into())
                .unwrap_or_default(),
            acr_levels: vec!["low".into(), "substantial".into(), "high".into()],
        }
    }

    fn service(required: bool, min_acr: Option<&str>) -> ServiceConfig {
        let mut t = String::from(
            "[server]\nowner = \"DEV/GOV/1\"\nserver_code = \"s\"\ndata_dir = \"d\"\n\
             [globalconf]\nanchor = \"a\"\n[[services]]\nid = \"DEV/GOV/1/p/records\"\n\
             kind = \"rest\"\nurl = \"http://b\"\n",
        );
        t.push_str(&format!("require_verified_user = {required}\n"));
        if let Some(m) = min_acr {
            t.push_str(&format!("min_acr = \"{m}\"\n"));
        }
        crate::config::Config::parse(&t).unwrap().services.remove(0)
    }

    fn user(verified: bool, issuer: Option<&str>, acr: Option<&str>) -> UserIdentity {
        UserIdentity {
            id: "EE1".into(),
            verified,
            issuer: issuer.map(str::to_owned),
            acr: acr.map(str::to_owned),
        }
    }

    #[test]
    fn provider_requirement_is_enforced() {
        let v = view(vec![
            issuer("https://idp", None),
            issuer("https://strict-idp", Some("high")),
        ]);
        let code = |r: Result<(), Fault>| {
            r.err()
                .map(|f| (f.code.to_string(), f.message))
                .unwrap_or_default()
        };
        let open = service(false, None);
        let verified = service(true, None);
        let substantial = service(true, Some("substantial"));
        // No requirement: anything goes, even no user.
        enforce(&open, None, &v).unwrap();
        enforce(&open, Some(&user(false, None, None)), &v).unwrap();
        enforce(&verified, Some(&user(true, Some("https://idp"), None)), &v).unwrap();
        enforce(
            &substantial,
            Some(&user(true, Some("https://idp"), Some("high"))),
            &v,
        )
        .unwrap();
        for (svc, u, why) in [
            (&verified, None, "requires an end user verified by the bus"),
            (
                &verified,
                Some(user(false, None, None)),
                "only asserted by the client",
            ),
            (
                &verified,
                Some(user(true, Some("https://gone-idp"), Some("high"))),
                "is not trusted in global configuration",
            ),
            (
                &verified,
                Some(user(true, None, Some("high"))),
                "is not trusted",
            ),
            (
                &substantial,
                Some(user(true, Some("https://idp"), Some("low"))),
                "(acr_too_low)",
            ),
            (
                &substantial,
                Some(user(true, Some("https://idp"), Some("unheard-of"))),
                "(acr_too_low)",
            ),
            (
                &substantial,
                Some(user(true, Some("https://idp"), None)),
                "without an authentication level",
            ),
            // The issuer's own minimum applies on the provider too.
            (
                &verified,
                Some(user(true, Some("https://strict-idp"), Some("substantial"))),
                "(acr_too_low)",
            ),
        ] {
            let (c, m) = code(enforce(svc, u.as_ref(), &v));
            assert_eq!(c, "Client.InvalidUserIdentity", "{u:?}");
            assert!(m.contains(why), "{u:?}: {m}");
        }
    }

    #[tokio::test]
    async fn key_sets_only_over_https_or_from_loopback() {
        let f = JwksHttp::new(&EndUserIdentitySection::default(), Duration::from_secs(1));
        let e = f.fetch_jwks("http://idp.example/jwks").await.unwrap_err();
        assert!(e.contains("only from loopback"), "{e}");
        let e = f.fetch_jwks("https://idp.example/jwks").await.unwrap_err();
        assert!(e.contains("need end_user_identity.jwks_tls_ca"), "{e}");
        let e = f.fetch_jwks("ftp://idp.example/jwks").await.unwrap_err();
        assert!(e.contains("not an http(s) URL"), "{e}");
        // Loopback is allowed (and here refused by the closed port, not by policy).
        let e = f.fetch_jwks("http://127.0.0.1:1/jwks").await.unwrap_err();
        assert!(!e.contains("only from loopback"), "{e}");
        let lax = JwksHttp::new(
            &EndUserIdentitySection {
                allow_plain_http_jwks: true,
                ..EndUserIdentitySection::default()
            },
            Duration::from_secs(1),
        );
        let e = lax.fetch_jwks("http://idp.invalid/jwks").await.unwrap_err();
        assert!(!e.contains("only from loopback"), "{e}");
    }
}
