//! The auditor API on the admin listener: the message log's axum router
//! ([`crate::messagelog::auditor`]) mounted under [`PREFIX`], with the role rules of the
//! listener's API keys.
//!
//! Roles are kept apart both ways: a key with role `auditor` opens only the auditor API (the
//! admin API answers it 403 `forbidden`), and the admin roles (`observer`,
//! `system-administrator`) are refused by the auditor API (403, recorded in the audit trail).
//! On the admin listener (plain HTTP) auditors authenticate with API keys. With
//! `[listen] auditor_tls` set, the auditor API alone is also served over HTTPS with the
//! internal TLS certificate, where an auditor may instead present a TLS client certificate
//! pinned in `[[auditor_certs]]` ([`serve_tls`]); the listener puts the certificate's
//! fingerprint into the request extensions ([`ClientCert`]) and [`decide`] maps it.

use std::sync::Arc;

use axum::http::{Extensions, HeaderMap};
use http_body_util::BodyExt;

use crate::config::Config;
use crate::httpc::{OutBody, full};
use crate::messagelog::PayloadKey;
use crate::messagelog::auditor::{AuditorApi, AuthDecision, GlobalConfSource, router};
use crate::messagelog::audittrail::AuditTrail;
use crate::messagelog::store::LogStore;

/// Paths under this prefix go to the auditor API.
pub const PREFIX: &str = "/api/v1/audit/";

/// The role name of auditor API keys.
pub const AUDITOR_ROLE: &str = "auditor";

/// The trail file inside the message-log directory.
pub const TRAIL_FILE: &str = "auditor-trail.jsonl";

/// The bearer token of a request, if any.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// The configured key (its index and role) matching the request's bearer token.
fn key_of<'c>(cfg: &'c Config, headers: &HeaderMap) -> Option<(usize, &'c str)> {
    let key = bearer(headers)?;
    let hash = trustbus_pki::cert::to_hex(
        ring::digest::digest(&ring::digest::SHA256, key.as_bytes()).as_ref(),
    );
    cfg.api_keys
        .iter()
        .enumerate()
        .find(|(_, k)| k.sha256.eq_ignore_ascii_case(&hash))
        .map(|(i, k)| (i, k.role.as_str()))
}

/// The SHA-256 (lower-case hex) of the TLS client certificate the auditor HTTPS listener
/// verified, as a request extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert(pub String);

/// Who calls, by the rules above. A verified client certificate decides when present: listed
/// in `auditor_certs` it is an auditor (`cert:<name>:<12 hex digits>` in the trail), otherwise
/// forbidden. Without one, the API key decides; the identity written to the trail is the key's
/// position in the configuration and the first 12 hex digits of its SHA-256 (never the key).
pub fn decide(cfg: &Config, headers: &HeaderMap, extensions: &Extensions) -> AuthDecision {
    if let Some(ClientCert(fp)) = extensions.get::<ClientCert>() {
        let short = fp.get(..12).unwrap_or("");
        return match cfg
            .auditor_certs
            .iter()
            .find(|c| c.sha256.eq_ignore_ascii_case(fp))
        {
            Some(c) => AuthDecision::Auditor(format!("cert:{}:{short}", c.name)),
            None => AuthDecision::Forbidden(format!("cert:{short} (not an auditor certificate)")),
        };
    }
    match key_of(cfg, headers) {
        None => AuthDecision::Unauthenticated,
        Some((i, role)) => {
            let who = format!(
                "api-key#{}:{}",
                i + 1,
                cfg.api_keys[i].sha256.get(..12).unwrap_or("")
            );
            if role == AUDITOR_ROLE {
                AuthDecision::Auditor(who)
            } else {
                AuthDecision::Forbidden(format!("{who} ({role})"))
            }
        }
    }
}

/// Whether the request carries an auditor key (the admin API refuses those).
pub fn is_auditor_key(cfg: &Config, headers: &HeaderMap) -> bool {
    matches!(key_of(cfg, headers), Some((_, AUDITOR_ROLE)))
}

/// The admin API's answer to an auditor key.
pub fn admin_api_forbidden() -> http::Response<OutBody> {
    crate::admin::text(
        403,
        serde_json::json!({
            "code": "forbidden",
            "message": "auditor keys may use only the auditor API (/api/v1/audit/)"
        })
        .to_string(),
        "application/json",
    )
}

/// Builds the router over the log's store; the trail is `trail_path`.
pub fn build(
    cfg: Arc<Config>,
    store: Arc<dyn LogStore>,
    payload_key: Option<Arc<PayloadKey>>,
    globalconf: GlobalConfSource,
    trail_path: &std::path::Path,
) -> Result<axum::Router, String> {
    let trail = AuditTrail::open(trail_path).map_err(|e| e.to_string())?;
    Ok(router(AuditorApi {
        store,
        payload_key,
        globalconf,
        auth: Arc::new(move |h: &HeaderMap, e: &Extensions| decide(&cfg, h, e)),
        trail: Arc::new(trail),
    }))
}

/// Serves one request with the router (as a tower service) and converts the answer to the
/// listener's body type. The router's answers are built in memory (JSON, zips), so collecting
/// the body costs no extra copy of note.
pub async fn handle(
    app: &axum::Router,
    req: http::Request<hyper::body::Incoming>,
) -> http::Response<OutBody> {
    use tower::ServiceExt;
    let Ok(resp) = app.clone().oneshot(req).await;
    let (parts, body) = resp.into_parts();
    match body.collect().await {
        Ok(b) => http::Response::from_parts(parts, full(b.to_bytes())),
        Err(e) => {
            tracing::error!(error = %e, "auditor API answer could not be read");
            crate::admin::text(500, "internal error\n".into(), "text/plain")
        }
    }
}

/// Serves the auditor API alone over TLS on `listener` (`tls`: the internal certificate,
/// client certificates optional). A verified client certificate's fingerprint goes into each
/// request's extensions; other paths are answered 404.
pub async fn serve_tls(
    app: axum::Router,
    tls: Arc<rustls::ServerConfig>,
    listener: tokio::net::TcpListener,
) -> std::io::Result<()> {
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (tcp, remote) = listener.accept().await?;
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::info!(%remote, error = %e, "TLS handshake on the auditor listener failed");
                    return;
                }
            };
            let cert = trustbus_pki::tls::peer_certificate(tls.get_ref().1)
                .map(|c| ClientCert(c.fingerprint_hex().to_ascii_lowercase()));
            let svc = service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
                let app = app.clone();
                let cert = cert.clone();
                async move {
                    if !req.uri().path().starts_with(PREFIX) {
                        return Ok::<_, std::convert::Infallible>(crate::admin::text(
                            404,
                            "not found\n".into(),
                            "text/plain",
                        ));
                    }
                    if let Some(c) = cert {
                        req.extensions_mut().insert(c);
                    }
                    Ok(handle(&app, req).await)
                }
            });
            let _ = http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(crate::HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(tls), svc)
                .await;
        });
    }
}

/// The TLS configuration of the auditor listener: the internal certificate, client
/// certificates requested but optional (API keys work there too).
pub fn tls_config(
    key: &trustbus_pki::KeyPair,
    chain: &[trustbus_pki::Certificate],
) -> Result<Arc<rustls::ServerConfig>, String> {
    let id = trustbus_pki::tls::TlsIdentity::new(chain, key).map_err(|e| e.to_string())?;
    trustbus_pki::tls::is_server_config(id, trustbus_pki::tls::IsClientAuth::Optional)
        .map_err(|e| e.to_string())
}

/// The auditor API answer when the server runs without one (tests with an in-memory log).
pub fn not_available() -> http::Response<OutBody> {
    error_answer(404, "not_found", "this server has no message log to audit")
}

/// The answer when the message log is switched off (`[message_log] enabled = false`): 503
/// `message_log_disabled`, so an auditor is never shown an empty search as if nothing happened.
pub fn logging_disabled() -> http::Response<OutBody> {
    error_answer(
        503,
        "message_log_disabled",
        "the message log is switched off on this server ([message_log] enabled = false): \
         exchanges are not recorded and there is no evidence to audit",
    )
}

fn error_answer(status: u16, code: &str, message: &str) -> http::Response<OutBody> {
    let mut r = http::Response::new(full(
        serde_json::json!({ "code": code, "message": message }).to_string(),
    ));
    *r.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn cfg() -> Config {
        let h = |k: &str| {
            trustbus_pki::cert::to_hex(
                ring::digest::digest(&ring::digest::SHA256, k.as_bytes()).as_ref(),
            )
        };
        Config::parse(&format!(
            "[server]\nowner = \"DEV/GOV/1\"\nserver_code = \"s\"\ndata_dir = \"d\"\n\
             [globalconf]\nanchor = \"a\"\n\
             [[api_keys]]\nsha256 = \"{}\"\nrole = \"system-administrator\"\n\
             [[api_keys]]\nsha256 = \"{}\"\nrole = \"auditor\"\n",
            h("admin-key"),
            h("auditor-key")
        ))
        .unwrap()
    }

    fn headers(key: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(k) = key {
            h.insert(
                http::header::AUTHORIZATION,
                format!("Bearer {k}").parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn roles_are_kept_apart() {
        let c = cfg();
        assert!(matches!(
            decide(&c, &headers(Some("auditor-key")), &Extensions::new()),
            AuthDecision::Auditor(who) if who.starts_with("api-key#2:")
        ));
        assert!(matches!(
            decide(&c, &headers(Some("admin-key")), &Extensions::new()),
            AuthDecision::Forbidden(who) if who.ends_with("(system-administrator)")
        ));
        assert_eq!(
            decide(&c, &headers(Some("other")), &Extensions::new()),
            AuthDecision::Unauthenticated
        );
        assert_eq!(
            decide(&c, &headers(None), &Extensions::new()),
            AuthDecision::Unauthenticated
        );
        assert!(is_auditor_key(&c, &headers(Some("auditor-key"))));
        assert!(!is_auditor_key(&c, &headers(Some("admin-key"))));
        assert!(!is_auditor_key(&c, &headers(None)));
    }
}
