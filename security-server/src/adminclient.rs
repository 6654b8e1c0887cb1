//! A client of the admin REST API, for the `security-server` subcommands that manage a
//! running server (`clients`, `services`, `access`, `local-groups`, `keys`, `certificates`,
//! `registration`, `diagnostics`).

use std::time::Duration;

use http_body_util::{BodyExt, Limited};
use serde_json::Value;

use crate::httpc::{HttpClient, full};

/// Environment variable with the API key when `--api-key` is not given.
pub const API_KEY_ENV: &str = "TRUSTBUS_ADMIN_API_KEY";
/// Environment variable with the admin URL when `--admin-url` is not given.
pub const ADMIN_URL_ENV: &str = "TRUSTBUS_ADMIN_URL";
/// The admin listener's default address.
pub const DEFAULT_ADMIN_URL: &str = "http://127.0.0.1:5588";

/// Largest answer read.
const MAX_ANSWER: usize = 16 << 20;

/// Where the admin API is and the key to call it with.
#[derive(Debug, Clone)]
pub struct AdminClient {
    base: String,
    key: String,
    http: HttpClient,
}

/// An answer that is not a success: HTTP status, error code and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message} (HTTP {status})")]
pub struct AdminError {
    /// HTTP status (0 when the server could not be reached).
    pub status: u16,
    /// The API's error code (`unreachable` when the server could not be reached).
    pub code: String,
    /// The message.
    pub message: String,
    /// The whole answer, when it was JSON.
    pub body: Option<Value>,
}

impl AdminClient {
    /// A client of the admin listener at `base` (`http://host:port`, with or without a path
    /// ending in `/api/v1`).
    pub fn new(base: &str, key: &str) -> Self {
        let base = base.trim_end_matches('/');
        let base = base.strip_suffix("/api/v1").unwrap_or(base);
        Self {
            base: base.to_owned(),
            key: key.trim().to_owned(),
            http: HttpClient::new(Duration::from_secs(10)),
        }
    }

    /// Calls `method` on `path` (below `/api/v1/`) with an optional JSON body.
    pub async fn call(
        &self,
        method: http::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, AdminError> {
        let unreachable = |m: String| AdminError {
            status: 0,
            code: "unreachable".into(),
            message: m,
            body: None,
        };
        let url = format!("{}/api/v1/{}", self.base, path.trim_start_matches('/'));
        let mut b = http::Request::builder()
            .method(method)
            .uri(&url)
            .header(http::header::AUTHORIZATION, format!("Bearer {}", self.key));
        if body.is_some() {
            b = b.header(http::header::CONTENT_TYPE, "application/json");
        }
        let req = b
            .body(full(body.map(|v| v.to_string()).unwrap_or_default()))
            .map_err(|e| unreachable(format!("{url}: {e}")))?;
        let resp = self
            .http
            .call(req, Duration::from_secs(120))
            .await
            .map_err(|e| unreachable(format!("{url}: {e}")))?;
        let status = resp.status().as_u16();
        let bytes = Limited::new(resp.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| unreachable(format!("{url}: {e}")))?
            .to_bytes();
        let v: Option<Value> = serde_json::from_slice(&bytes).ok();
        if (200..300).contains(&status) {
            return Ok(v.unwrap_or(Value::Null));
        }
        let field = |k: &str| v.as_ref().and_then(|v| v[k].as_str()).map(str::to_owned);
        Err(AdminError {
            status,
            code: field("code").unwrap_or_else(|| format!("http_{status}")),
            message: field("message")
                .or_else(|| field("error"))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).trim().to_owned()),
            body: v,
        })
    }
}
