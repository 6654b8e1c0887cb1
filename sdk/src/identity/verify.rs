//! ID-token verification against trusted issuers, with a JWK-set cache that follows key
//! rotation.
//!
//! Order of checks, each failing with its own [`IdentityError`]:
//! 1. shape (compact JWS, JSON header and claims, no `crit`, `typ` not an access token);
//! 2. `alg` on the allow-list — before any key is looked up;
//! 3. `iss` is a [`TrustedIssuer`];
//! 4. a key with the header's `kid` that fits `alg` (refreshing the issuer's JWK set once,
//!    rate-limited, when the `kid` is unknown);
//! 5. the signature, with ring;
//! 6. `sub`, `aud`/`azp`, `exp`, `nbf`, `iat` (with clock skew), `nonce`, `acr`.
//!
//! # `acr` policy
//! An issuer lists its `acr` values from weakest to strongest in
//! [`TrustedIssuer::acr_levels`] (for example `["low", "substantial", "high"]`). A required level
//! (the issuer's [`TrustedIssuer::min_acr`] and the service's [`VerifyOptions::required_acr`],
//! both enforced) is met by a token whose `acr` appears at the same or a later position. An
//! `acr` the list does not contain never meets a requirement. An issuer without a list uses
//! exact matching: the token's `acr` must equal the required value. With no requirement at all,
//! any `acr`, or none, is accepted and reported.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use super::IdentityError;
use super::jwks::{Algorithm, JwkSet};
use super::jwt::CompactJws;

/// Default clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
pub const DEFAULT_CLOCK_SKEW: u64 = 60;

/// Where an issuer's signing keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// Keys fixed in configuration; never fetched, so rotation needs a configuration update.
    Pinned(JwkSet),
    /// The issuer's `jwks_uri`, fetched through a [`JwksFetcher`] and cached.
    Url(String),
}

/// An identity provider trusted to assert end-user identities (from global configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedIssuer {
    /// The exact `iss` value, compared byte for byte (no trailing-slash normalisation).
    pub issuer: String,
    /// Accepted audiences (the `client_id`s of the portals registered with this issuer).
    pub audiences: Vec<String>,
    /// Signing keys.
    pub jwks: JwksSource,
    /// The issuer's `acr` values, weakest first; empty means exact matching.
    pub acr_levels: Vec<String>,
    /// The weakest `acr` accepted from this issuer at all, if any.
    pub min_acr: Option<String>,
}

impl TrustedIssuer {
    /// An issuer with keys fetched from `jwks_url`, no `acr` policy.
    pub fn with_jwks_url(
        issuer: impl Into<String>,
        audiences: Vec<String>,
        jwks_url: impl Into<String>,
    ) -> Self {
        Self {
            issuer: issuer.into(),
            audiences,
            jwks: JwksSource::Url(jwks_url.into()),
            acr_levels: Vec::new(),
            min_acr: None,
        }
    }

    /// An issuer with pinned keys, no `acr` policy.
    pub fn with_pinned_keys(
        issuer: impl Into<String>,
        audiences: Vec<String>,
        jwks: JwkSet,
    ) -> Self {
        Self {
            issuer: issuer.into(),
            audiences,
            jwks: JwksSource::Pinned(jwks),
            acr_levels: Vec::new(),
            min_acr: None,
        }
    }

    /// Sets the ordered `acr` levels (weakest first).
    pub fn acr_levels<S: Into<String>>(mut self, levels: impl IntoIterator<Item = S>) -> Self {
        self.acr_levels = levels.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the weakest `acr` accepted from this issuer.
    pub fn min_acr(mut self, acr: impl Into<String>) -> Self {
        self.min_acr = Some(acr.into());
        self
    }

    /// Whether `acr` meets `required` under this issuer's policy (see the module docs).
    pub fn acr_satisfies(&self, acr: Option<&str>, required: &str) -> bool {
        let Some(acr) = acr else { return false };
        if self.acr_levels.is_empty() {
            return acr == required;
        }
        let pos = |v: &str| self.acr_levels.iter().position(|l| l == v);
        matches!((pos(acr), pos(required)), (Some(a), Some(r)) if a >= r)
    }
}

/// Per-call requirements.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VerifyOptions<'a> {
    /// The weakest `acr` the called service accepts, on top of the issuer's own minimum.
    pub required_acr: Option<&'a str>,
    /// The `nonce` the login sent; when set, the token must carry exactly this value.
    pub nonce: Option<&'a str>,
}

/// What a verified token says about the end user.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedIdentity {
    /// `iss`, one of the trusted issuers.
    pub issuer: String,
    /// `sub`: the end user, becomes the exchange's user id.
    pub subject: String,
    /// `aud`.
    pub audiences: Vec<String>,
    /// `acr`, if present.
    pub acr: Option<String>,
    /// `exp`, seconds since the Unix epoch.
    pub expires_at: i64,
    /// `iat`, seconds since the Unix epoch.
    pub issued_at: i64,
    /// `auth_time`, if present.
    pub auth_time: Option<i64>,
    /// The `kid` of the key that verified the signature, if it had one.
    pub kid: Option<String>,
    /// The verified algorithm.
    pub algorithm: Algorithm,
    /// Every claim, for application use (name, birthdate, …).
    pub claims: serde_json::Map<String, serde_json::Value>,
}

/// Fetches a JWK set document. Implemented over HTTP by the security server and the SDK
/// client; tests implement it in memory. The cache calls it at most once per issuer per
/// [`CacheConfig::min_refresh_interval`].
pub trait JwksFetcher {
    /// The document at `url`, or a message saying why it could not be fetched.
    fn fetch_jwks(&self, url: &str) -> impl Future<Output = Result<Vec<u8>, String>> + Send;
}

/// A fetcher for pinned-key setups: every fetch fails.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoFetch;

impl JwksFetcher for NoFetch {
    async fn fetch_jwks(&self, url: &str) -> Result<Vec<u8>, String> {
        Err(format!("fetching is disabled ({url})"))
    }
}

/// How the JWK-set cache refreshes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// Fewest seconds between two fetches of one set (bounds what a stream of tokens with
    /// random `kid`s can make us fetch). Default 60.
    pub min_refresh_interval: u64,
    /// A set older than this is refreshed before use, and kept if the refresh fails.
    /// Default 3600.
    pub max_age: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            min_refresh_interval: 60,
            max_age: 3600,
        }
    }
}

#[derive(Debug, Default)]
struct CacheEntry {
    set: Option<(Arc<JwkSet>, i64)>,
    last_attempt: Option<i64>,
}

/// JWK sets by URL, refreshed on unknown `kid` (key rotation) and on age, rate-limited.
#[derive(Debug, Default)]
pub struct JwksCache {
    config: CacheConfig,
    entries: Mutex<HashMap<String, CacheEntry>>,
}

enum Lookup {
    Use(Arc<JwkSet>),
    Fetch,
    Miss,
}

impl JwksCache {
    /// An empty cache.
    pub fn new(config: CacheConfig) -> Self {
        Self {
            config,
            entries: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, CacheEntry>> {
        // A panic while holding the lock cannot leave a half-written entry (entries are
        // replaced whole), so a poisoned map is still consistent.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts a set in the cache as fetched at `now` (also used to preload).
    pub fn insert(&self, url: &str, set: JwkSet, now: i64) {
        let mut m = self.lock();
        let e = m.entry(url.to_owned()).or_default();
        e.set = Some((Arc::new(set), now));
    }

    /// The cached set for `url`, if any.
    pub fn get(&self, url: &str) -> Option<Arc<JwkSet>> {
        self.lock().get(url)?.set.as_ref().map(|(s, _)| s.clone())
    }

    /// Decides whether the cached set can serve `has_key`, or a fetch is due (and then records
    /// the attempt so concurrent callers do not fetch too).
    fn lookup(
        &self,
        url: &str,
        now: i64,
        has_key: impl Fn(&JwkSet) -> bool,
        may_fetch: bool,
    ) -> Lookup {
        let mut m = self.lock();
        let e = m.entry(url.to_owned()).or_default();
        let fresh = |fetched: i64| now.saturating_sub(fetched) < self.config.max_age as i64;
        let usable = e.set.as_ref().filter(|(s, _)| has_key(s));
        if let Some((s, fetched)) = usable
            && (fresh(*fetched) || !may_fetch)
        {
            return Lookup::Use(s.clone());
        }
        let allowed = e.last_attempt.is_none_or(|t| {
            now.saturating_sub(t) >= self.config.min_refresh_interval as i64 || now < t
        });
        if may_fetch && allowed {
            e.last_attempt = Some(now);
            return Lookup::Fetch;
        }
        match usable {
            Some((s, _)) => Lookup::Use(s.clone()),
            None => Lookup::Miss,
        }
    }
}

/// Verifies ID tokens against a fixed list of trusted issuers.
#[derive(Debug)]
pub struct IdTokenVerifier {
    issuers: Vec<TrustedIssuer>,
    algorithms: Vec<Algorithm>,
    clock_skew: u64,
    cache: JwksCache,
}

struct Prepared<'t, 'v> {
    jws: CompactJws<'t>,
    alg: Algorithm,
    claims: serde_json::Map<String, serde_json::Value>,
    issuer: &'v TrustedIssuer,
}

/// Seconds since the Unix epoch from the system clock (0 if the clock is before 1970).
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl IdTokenVerifier {
    /// A verifier for `issuers` with every supported algorithm, 60 s skew and default caching.
    pub fn new(issuers: Vec<TrustedIssuer>) -> Self {
        Self {
            issuers,
            algorithms: Algorithm::ALL.to_vec(),
            clock_skew: DEFAULT_CLOCK_SKEW,
            cache: JwksCache::default(),
        }
    }

    /// Restricts the allow-list further.
    pub fn with_algorithms(mut self, algorithms: &[Algorithm]) -> Self {
        self.algorithms = algorithms.to_vec();
        self
    }

    /// Sets the tolerated clock skew in seconds.
    pub fn with_clock_skew(mut self, seconds: u64) -> Self {
        self.clock_skew = seconds;
        self
    }

    /// Replaces the JWK-set cache (for example to change its [`CacheConfig`]).
    pub fn with_cache(mut self, cache: JwksCache) -> Self {
        self.cache = cache;
        self
    }

    /// The cache, to preload or inspect it.
    pub fn cache(&self) -> &JwksCache {
        &self.cache
    }

    /// The trusted issuers.
    pub fn issuers(&self) -> &[TrustedIssuer] {
        &self.issuers
    }

    /// Verifies `token` at time `now`, fetching the issuer's JWK set through `fetcher` when it
    /// is not cached, is stale, or lacks the token's `kid`.
    pub async fn verify<F: JwksFetcher>(
        &self,
        token: &str,
        options: &VerifyOptions<'_>,
        now: i64,
        fetcher: &F,
    ) -> Result<VerifiedIdentity, IdentityError> {
        let p = self.prepare(token)?;
        let set = match &p.issuer.jwks {
            JwksSource::Pinned(set) => return self.finish(&p, set, options, now),
            JwksSource::Url(url) => {
                let kid = p.jws.header.kid.as_deref();
                let has_key = |s: &JwkSet| s.candidates(kid, p.alg).next().is_some();
                match self.cache.lookup(url, now, has_key, true) {
                    Lookup::Use(set) => set,
                    Lookup::Miss => {
                        return Err(IdentityError::UnknownKeyId(p.jws.header.kid.clone()));
                    }
                    Lookup::Fetch => {
                        let fetched = fetcher.fetch_jwks(url).await;
                        match fetched.map(|b| JwkSet::parse(&b)) {
                            Ok(Ok(set)) => self.cache.insert(url, set, now),
                            Ok(Err(e)) if self.cache.get(url).is_none() => return Err(e),
                            Err(msg) if self.cache.get(url).is_none() => {
                                return Err(IdentityError::JwksUnavailable(msg));
                            }
                            // Keep serving the previous set when a refresh fails.
                            Ok(Err(_)) | Err(_) => {}
                        }
                        match self.cache.lookup(url, now, has_key, false) {
                            Lookup::Use(set) => set,
                            Lookup::Fetch | Lookup::Miss => {
                                return Err(IdentityError::UnknownKeyId(p.jws.header.kid.clone()));
                            }
                        }
                    }
                }
            }
        };
        self.finish(&p, &set, options, now)
    }

    /// Verifies with pinned or already cached keys only; never fetches. An issuer whose set is
    /// not cached yields [`IdentityError::UnknownKeyId`].
    pub fn verify_cached(
        &self,
        token: &str,
        options: &VerifyOptions<'_>,
        now: i64,
    ) -> Result<VerifiedIdentity, IdentityError> {
        let p = self.prepare(token)?;
        match &p.issuer.jwks {
            JwksSource::Pinned(set) => self.finish(&p, set, options, now),
            JwksSource::Url(url) => match self.cache.get(url) {
                Some(set) => self.finish(&p, &set, options, now),
                None => Err(IdentityError::UnknownKeyId(p.jws.header.kid.clone())),
            },
        }
    }

    fn prepare<'t>(&self, token: &'t str) -> Result<Prepared<'t, '_>, IdentityError> {
        let jws = CompactJws::parse(token)?;
        if jws.header.has_crit {
            return Err(IdentityError::Malformed(
                "crit header extensions are not supported",
            ));
        }
        if let Some(typ) = &jws.header.typ {
            let t = typ.to_ascii_lowercase();
            if t == "at+jwt" || t == "application/at+jwt" || t.starts_with("logout+") {
                return Err(IdentityError::WrongTokenType(typ.clone()));
            }
        }
        // The allow-list comes first: no key is looked at for `none` or `HS*`.
        let alg = Algorithm::from_name(&jws.header.alg)
            .filter(|a| self.algorithms.contains(a))
            .ok_or_else(|| IdentityError::AlgorithmNotAllowed(jws.header.alg.clone()))?;
        let claims: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&jws.payload)
                .map_err(|_| IdentityError::Malformed("claims are not a JSON object"))?;
        let iss = match claims.get("iss") {
            None => return Err(IdentityError::MissingClaim("iss")),
            Some(serde_json::Value::String(s)) => s,
            Some(_) => return Err(IdentityError::InvalidClaim("iss")),
        };
        let issuer = self
            .issuers
            .iter()
            .find(|i| i.issuer == *iss)
            .ok_or_else(|| IdentityError::UnknownIssuer(iss.clone()))?;
        Ok(Prepared {
            jws,
            alg,
            claims,
            issuer,
        })
    }

    fn finish(
        &self,
        p: &Prepared<'_, '_>,
        set: &JwkSet,
        options: &VerifyOptions<'_>,
        now: i64,
    ) -> Result<VerifiedIdentity, IdentityError> {
        let kid = p.jws.header.kid.as_deref();
        let mut candidates = set.candidates(kid, p.alg).peekable();
        if candidates.peek().is_none() {
            return Err(IdentityError::UnknownKeyId(p.jws.header.kid.clone()));
        }
        let msg = p.jws.signing_input.as_bytes();
        let key = candidates
            .find(|k| k.key.verify(p.alg, msg, &p.jws.signature))
            .ok_or(IdentityError::InvalidSignature)?;
        let verified = self.check_claims(p, options, now)?;
        Ok(VerifiedIdentity {
            kid: key.kid.clone(),
            ..verified
        })
    }

    fn check_claims(
        &self,
        p: &Prepared<'_, '_>,
        options: &VerifyOptions<'_>,
        now: i64,
    ) -> Result<VerifiedIdentity, IdentityError> {
        let c = &p.claims;
        let skew = i64::try_from(self.clock_skew).unwrap_or(i64::MAX);
        let subject = match c.get("sub") {
            None => return Err(IdentityError::MissingClaim("sub")),
            Some(serde_json::Value::String(s)) if !s.is_empty() => s.clone(),
            Some(_) => return Err(IdentityError::InvalidClaim("sub")),
        };
        let audiences: Vec<String> = match c.get("aud") {
            None => return Err(IdentityError::MissingClaim("aud")),
            Some(serde_json::Value::String(s)) => vec![s.clone()],
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<_>>()
                .ok_or(IdentityError::InvalidClaim("aud"))?,
            Some(_) => return Err(IdentityError::InvalidClaim("aud")),
        };
        let accepted = |a: &str| p.issuer.audiences.iter().any(|x| x == a);
        if !audiences.iter().any(|a| accepted(a)) {
            return Err(IdentityError::WrongAudience);
        }
        match c.get("azp") {
            None => {}
            Some(serde_json::Value::String(azp)) if accepted(azp) => {}
            Some(serde_json::Value::String(_)) => return Err(IdentityError::WrongAudience),
            Some(_) => return Err(IdentityError::InvalidClaim("azp")),
        }
        let exp = numeric_date(c, "exp")?.ok_or(IdentityError::MissingClaim("exp"))?;
        if now >= exp.saturating_add(skew) {
            return Err(IdentityError::Expired { exp, now });
        }
        if let Some(nbf) = numeric_date(c, "nbf")?
            && now.saturating_add(skew) < nbf
        {
            return Err(IdentityError::NotYetValid { nbf, now });
        }
        let iat = numeric_date(c, "iat")?.ok_or(IdentityError::MissingClaim("iat"))?;
        if iat > now.saturating_add(skew) {
            return Err(IdentityError::IssuedInFuture { iat, now });
        }
        if let Some(expected) = options.nonce {
            match c.get("nonce") {
                Some(serde_json::Value::String(n)) if n == expected => {}
                _ => return Err(IdentityError::NonceMismatch),
            }
        }
        let acr = match c.get("acr") {
            None => None,
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(IdentityError::InvalidClaim("acr")),
        };
        for required in [p.issuer.min_acr.as_deref(), options.required_acr]
            .into_iter()
            .flatten()
        {
            if !p.issuer.acr_satisfies(acr.as_deref(), required) {
                return Err(IdentityError::AcrTooLow {
                    acr,
                    required: required.to_owned(),
                });
            }
        }
        Ok(VerifiedIdentity {
            issuer: p.issuer.issuer.clone(),
            subject,
            audiences,
            acr,
            expires_at: exp,
            issued_at: iat,
            auth_time: numeric_date(c, "auth_time")?,
            kid: None,
            algorithm: p.alg,
            claims: c.clone(),
        })
    }
}

/// A NumericDate claim (integer or fractional seconds), truncated to whole seconds.
fn numeric_date(
    c: &serde_json::Map<String, serde_json::Value>,
    name: &'static str,
) -> Result<Option<i64>, IdentityError> {
    match c.get(name) {
        None => Ok(None),
        Some(serde_json::Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
            .map(Some)
            .ok_or(IdentityError::InvalidClaim(name)),
        Some(_) => Err(IdentityError::InvalidClaim(name)),
    }
}
