//! Services behind a provider security server, with axum 0.8 (feature `provider`).
//!
//! ```
//! use axum::{Json, Router, routing::get};
//! use trustbus_sdk::provider::BusContext;
//!
//! async fn whoami(ctx: BusContext) -> Json<serde_json::Value> {
//!     Json(serde_json::json!({
//!         "client": ctx.client.to_slash(),
//!         "user": ctx.user.as_ref().map(|u| &u.id),
//!         "verified": ctx.user.as_ref().is_some_and(|u| u.verified),
//!     }))
//! }
//! let app: Router = Router::new().route("/whoami", get(whoami));
//! # let _ = app;
//! ```
//!
//! [`BusContext`] reads what the provider's security server puts on every request it forwards:
//! the verified caller (`X-Road-Client`, checked against the signed exchange and access rights
//! before the request reaches the service), the message id, request id, issue, represented
//! party and the end user, with [`EndUser::verified`] set only when the security server also
//! sent `Trustbus-User-Verified: true` (it strips any copy a client sends). A request without a
//! usable context is answered with 400 and the bus's JSON error body, and the handler is not
//! called. [`testing::call`] runs a router in memory with a forged context.

pub mod testing;

use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::request::Parts;

use crate::fault::{ErrorKind, Fault, FaultCode, FaultDialect, Origin};
use crate::id::{ClientId, RepresentedParty, ServiceId};
use crate::rest::{self as r, ErrorFormat, ErrorResponse, Headers, RestError, XRoadHeaders};

/// The end user of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndUser {
    /// `X-Road-UserId`: the verified subject, or what the client asserted.
    pub id: String,
    /// Whether the consumer security server verified it from an ID token
    /// (`Trustbus-User-Verified: true`). When false the id is the client's unverified claim.
    pub verified: bool,
}

/// Who is calling and on whose behalf, as the provider security server vouches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusContext {
    /// The calling client (member or subsystem).
    pub client: ClientId,
    /// The service called (`X-Road-Service`), when the security server sends it.
    pub service: Option<ServiceId>,
    /// `X-Road-Id`: the message id chosen by the client.
    pub message_id: String,
    /// `X-Road-Request-Id`: the bus's id for this exchange, if sent.
    pub request_id: Option<String>,
    /// `X-Road-Issue`, if any.
    pub issue: Option<String>,
    /// The end user, if any.
    pub user: Option<EndUser>,
    /// `X-Road-Represented-Party`, if any.
    pub represented_party: Option<RepresentedParty>,
}

impl BusContext {
    /// The end user's id if, and only if, the bus verified it.
    pub fn verified_user(&self) -> Option<&str> {
        self.user
            .as_ref()
            .filter(|u| u.verified)
            .map(|u| u.id.as_str())
    }

    /// Reads the context from request headers.
    pub fn from_headers(headers: &http::HeaderMap) -> Result<Self, BusContextRejection> {
        let mut h = Headers::with_capacity(headers.len());
        for (k, v) in headers {
            h.push(k.as_str(), v.as_bytes());
        }
        let x = XRoadHeaders::from_headers(&h).map_err(BusContextRejection::from_rest)?;
        if x.message_id_generated {
            return Err(BusContextRejection::new(
                ErrorKind::MissingHeaderField,
                "required header X-Road-Id is missing",
            ));
        }
        let text = |name: &'static str| -> Result<Option<String>, BusContextRejection> {
            match h.get_last(name) {
                None => Ok(None),
                Some(v) => std::str::from_utf8(v.trim_ascii())
                    .map(|s| Some(s.to_owned()))
                    .map_err(|_| {
                        BusContextRejection::from_rest(RestError::InvalidHeaderValue(name))
                    }),
            }
        };
        let service = text(r::X_ROAD_SERVICE)?
            .filter(|s| !s.is_empty())
            .map(|s| ServiceId::from_slash(&s))
            .transpose()
            .map_err(|e| {
                BusContextRejection::new(
                    ErrorKind::InvalidRest,
                    format!("invalid X-Road-Service: {e}"),
                )
            })?;
        let verified =
            text(r::TRUSTBUS_USER_VERIFIED)?.is_some_and(|v| v.eq_ignore_ascii_case("true"));
        Ok(Self {
            client: x.client,
            service,
            message_id: x.message_id,
            request_id: text(r::X_ROAD_REQUEST_ID)?.filter(|s| !s.is_empty()),
            issue: x.issue,
            user: x.user_id.map(|id| EndUser { id, verified }),
            represented_party: x.represented_party,
        })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for BusContext {
    type Rejection = BusContextRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Self::from_headers(&parts.headers)
    }
}

/// A handler argument that only exists for requests with a bus-verified end user; otherwise
/// the request is refused with `Client.InvalidUserIdentity` (400) before the handler runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedUser {
    /// The verified subject.
    pub id: String,
    /// The rest of the context.
    pub context: BusContext,
}

impl<S: Send + Sync> FromRequestParts<S> for VerifiedUser {
    type Rejection = BusContextRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let context = BusContext::from_headers(&parts.headers)?;
        match context.verified_user() {
            Some(id) => Ok(Self {
                id: id.to_owned(),
                context,
            }),
            None => Err(BusContextRejection::new(
                ErrorKind::InvalidUserIdentity,
                "this service requires an end user verified by the bus",
            )),
        }
    }
}

/// Why a request has no usable bus context; answers 400 with the bus's JSON error body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusContextRejection {
    /// The fault (always a `Client.*` code).
    pub fault: Fault,
}

impl BusContextRejection {
    fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            fault: Fault::new(FaultCode::new(Origin::Client, kind), message),
        }
    }

    fn from_rest(e: RestError) -> Self {
        Self { fault: e.fault() }
    }
}

impl std::fmt::Display for BusContextRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.fault.fmt(f)
    }
}

impl std::error::Error for BusContextRejection {}

impl IntoResponse for BusContextRejection {
    fn into_response(self) -> Response {
        fault_response(&self.fault)
    }
}

/// A bus-style error response (`X-Road-Error` + JSON `{type, message, detail}`) for `fault`.
pub fn fault_response(fault: &Fault) -> Response {
    let e = ErrorResponse::new(fault, FaultDialect::Classic, ErrorFormat::Json);
    let mut resp = Response::new(axum::body::Body::from(e.body.clone()));
    *resp.status_mut() =
        http::StatusCode::from_u16(e.status).unwrap_or(http::StatusCode::BAD_REQUEST);
    for (k, v) in e.headers().iter() {
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(k.as_bytes()),
            http::HeaderValue::from_bytes(v),
        ) {
            resp.headers_mut().insert(k, v);
        }
    }
    resp
}

/// A `GET` route serving the service's OpenAPI document (JSON or YAML text, served as given),
/// for example `Router::new().route("/openapi.json", openapi_route(DOC))`. The provider
/// security server's `getOpenAPI` metadata service fetches it from there.
pub fn openapi_route<S>(document: impl Into<Bytes>) -> axum::routing::MethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    let document: Bytes = document.into();
    let content_type = if document.trim_ascii_start().starts_with(b"{") {
        "application/json"
    } else {
        "application/yaml"
    };
    axum::routing::get(move || {
        let document = document.clone();
        async move { ([(http::header::CONTENT_TYPE, content_type)], document) }
    })
}

#[cfg(test)]
mod tests;
