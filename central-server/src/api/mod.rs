//! The HTTP surface: three routers on three listeners.
//!
//! - public ([`public_router`]): `/globalconf/directory`, `/globalconf/directory.p7s`,
//!   `/globalconf/v{N}/{file}`, `/metrics`, `/healthz`;
//! - admin ([`admin_router`]): `/api/v1/...` and `/api/openapi.json`, API-key authenticated;
//! - management ([`management_router`]): `POST /managementservice/v1/requests`.
//!
//! The management listener is always mutual TLS; the admin and public listeners are plain HTTP
//! unless a certificate and key are configured (see [`crate::tlsconf`] and
//! `docs/globalconf.md` §6.10).

mod admin;
mod management;
pub mod openapi;
mod public;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::Error;
use crate::globalconf::GlobalConf;
use crate::management::AutoApprove;
use crate::registry::Registry;

pub use admin::{admin_router, new_api_key};
pub use management::management_router;
pub use public::public_router;

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    /// The registry.
    pub registry: Arc<Registry>,
    /// The configuration generator and publisher.
    pub globalconf: Arc<GlobalConf>,
    /// Auto-approval policy.
    pub auto_approve: Arc<AutoApprove>,
    /// `max-age` of the directory and signature, seconds.
    pub refresh_interval_seconds: u64,
    /// Largest management request body.
    pub max_management_body: usize,
}

/// The JSON error body: `{"code", "message", "correlation_id"}`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct ApiError {
    /// Stable code (see [`Error::code`]).
    pub code: String,
    /// Human-readable message.
    pub message: String,
    /// Correlation id, also in the server log and the audit trail.
    pub correlation_id: String,
}

/// Builds the error response for `e`, logging it with `correlation_id`.
pub(crate) fn error_response(e: &Error, correlation_id: &str) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status.is_server_error() {
        tracing::error!(correlation_id, code = e.code(), error = %e, "request failed");
    } else {
        tracing::info!(correlation_id, code = e.code(), error = %e, "request refused");
    }
    (
        status,
        axum::Json(ApiError {
            code: e.code().to_owned(),
            message: e.to_string(),
            correlation_id: correlation_id.to_owned(),
        }),
    )
        .into_response()
}

/// A fresh correlation id.
pub(crate) fn correlation_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Parses a JSON body, mapping failures to `malformed_json`.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(body).map_err(|e| Error::MalformedJson(e.to_string()))
}

/// Serves `body` with a strong `ETag` (quoted hex SHA-256) and `Cache-Control`, answering
/// `If-None-Match` with 304.
pub(crate) fn cached(
    headers: &HeaderMap,
    body: bytes::Bytes,
    content_type: &'static str,
    cache_control: String,
) -> Response {
    let etag = format!("\"{}\"", crate::util::sha256_hex(&body));
    let matches = headers
        .get_all(http::header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == etag || t == "*");
    let common = [
        (http::header::ETAG, etag),
        (http::header::CACHE_CONTROL, cache_control),
    ];
    if matches {
        (StatusCode::NOT_MODIFIED, common).into_response()
    } else {
        (
            StatusCode::OK,
            common,
            [(http::header::CONTENT_TYPE, content_type)],
            body,
        )
            .into_response()
    }
}

/// How a listener speaks.
pub enum Transport {
    /// Plain HTTP.
    Http,
    /// HTTPS with this configuration (client certificates as the configuration says).
    Https(Arc<rustls::ServerConfig>),
}

/// Binds `addr`, prints `listening NAME http://ADDR` (or `https://`) on stdout (tests and
/// operators read it) and serves `router` until `shutdown` resolves. With `peer_info`, handlers
/// can extract the TLS client certificate as `ConnectInfo<PeerCert>` (HTTPS only).
pub async fn serve(
    name: &'static str,
    addr: &str,
    router: Router,
    transport: Transport,
    peer_info: bool,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Config(format!("cannot listen on {addr} ({name}): {e}")))?;
    let local = listener.local_addr()?;
    match transport {
        Transport::Http => {
            println!("listening {name} http://{local}");
            tracing::info!(%local, name, "listening (HTTP)");
            axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
                .map_err(Error::Io)
        }
        Transport::Https(config) => {
            let tls = crate::tlsconf::TlsListener::new(listener, config, name)?;
            println!("listening {name} https://{local}");
            tracing::info!(%local, name, "listening (HTTPS)");
            if peer_info {
                axum::serve(
                    tls,
                    router.into_make_service_with_connect_info::<crate::tlsconf::PeerCert>(),
                )
                .with_graceful_shutdown(shutdown)
                .await
                .map_err(Error::Io)
            } else {
                axum::serve(tls, router)
                    .with_graceful_shutdown(shutdown)
                    .await
                    .map_err(Error::Io)
            }
        }
    }
}
