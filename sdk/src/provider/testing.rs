//! Calling a provider router in memory with a forged bus context, for unit tests.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use axum::{Router, routing::get};
//! use trustbus_sdk::provider::{VerifiedUser, testing::{ForgedContext, call}};
//!
//! let app = Router::new().route("/me", get(|u: VerifiedUser| async move { u.id }));
//! let ctx = ForgedContext::new("DEV/GOV/1234/portal").verified_user("EE38001085718");
//! let resp = call(app, ctx, http::Request::get("/me").body(axum::body::Body::empty()).unwrap()).await;
//! assert_eq!(resp.status(), 200);
//! assert_eq!(&resp.body()[..], b"EE38001085718");
//! # }
//! ```

use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::rest as r;

/// The bus headers a test pretends the provider security server sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForgedContext {
    /// `X-Road-Client` (slash form).
    pub client: String,
    /// `X-Road-Service` (slash form), if any.
    pub service: Option<String>,
    /// `X-Road-Id`.
    pub message_id: String,
    /// `X-Road-Request-Id`, if any.
    pub request_id: Option<String>,
    /// `X-Road-Issue`, if any.
    pub issue: Option<String>,
    /// `X-Road-UserId`, if any.
    pub user_id: Option<String>,
    /// Whether to send `Trustbus-User-Verified: true`.
    pub user_verified: bool,
    /// `X-Road-Represented-Party`, if any.
    pub represented_party: Option<String>,
}

impl ForgedContext {
    /// A context for `client` with a fresh message id and no end user.
    pub fn new(client: &str) -> Self {
        Self {
            client: client.to_owned(),
            service: None,
            message_id: uuid::Uuid::new_v4().to_string(),
            request_id: Some(uuid::Uuid::new_v4().to_string()),
            issue: None,
            user_id: None,
            user_verified: false,
            represented_party: None,
        }
    }

    /// An end user the bus verified.
    pub fn verified_user(mut self, id: &str) -> Self {
        self.user_id = Some(id.to_owned());
        self.user_verified = true;
        self
    }

    /// An end user the client asserted without verification.
    pub fn unverified_user(mut self, id: &str) -> Self {
        self.user_id = Some(id.to_owned());
        self.user_verified = false;
        self
    }

    /// Sets the issue.
    pub fn issue(mut self, issue: &str) -> Self {
        self.issue = Some(issue.to_owned());
        self
    }

    /// Sets the service.
    pub fn service(mut self, service: &str) -> Self {
        self.service = Some(service.to_owned());
        self
    }

    /// Replaces any bus headers on `headers` with this context's, as the provider security
    /// server would.
    pub fn apply(&self, headers: &mut http::HeaderMap) {
        for name in BUS_HEADERS {
            headers.remove(name);
        }
        let mut set = |name: &str, value: &str| {
            if let (Ok(n), Ok(v)) = (
                http::HeaderName::from_bytes(name.as_bytes()),
                http::HeaderValue::from_str(value),
            ) {
                headers.insert(n, v);
            }
        };
        set(r::X_ROAD_CLIENT, &self.client);
        set(r::X_ROAD_ID, &self.message_id);
        let optional = [
            (r::X_ROAD_SERVICE, &self.service),
            (r::X_ROAD_REQUEST_ID, &self.request_id),
            (r::X_ROAD_ISSUE, &self.issue),
            (r::X_ROAD_USER_ID, &self.user_id),
            (r::X_ROAD_REPRESENTED_PARTY, &self.represented_party),
        ];
        for (name, value) in optional {
            if let Some(v) = value {
                set(name, v);
            }
        }
        if self.user_verified && self.user_id.is_some() {
            set(r::TRUSTBUS_USER_VERIFIED, "true");
        }
    }
}

/// Headers the provider security server owns on the way to a service.
const BUS_HEADERS: [&str; 11] = [
    r::X_ROAD_CLIENT,
    r::X_ROAD_ID,
    r::X_ROAD_SERVICE,
    r::X_ROAD_REQUEST_ID,
    r::X_ROAD_ISSUE,
    r::X_ROAD_USER_ID,
    r::X_ROAD_REPRESENTED_PARTY,
    r::TRUSTBUS_USER_VERIFIED,
    r::TRUSTBUS_ID_TOKEN,
    "Uxp-Client",
    r::IM_CLIENT,
];

/// Runs `request` through `router` in memory with `context` as its bus headers and returns the
/// complete response.
pub async fn call(
    router: Router,
    context: ForgedContext,
    request: http::Request<Body>,
) -> http::Response<Bytes> {
    let (mut parts, body) = request.into_parts();
    context.apply(&mut parts.headers);
    let request = http::Request::from_parts(parts, body);
    let response = match router.oneshot(request).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let (parts, body) = response.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    http::Response::from_parts(parts, bytes)
}
