//! One REST call: `METHOD {security server}/r1/{service}{path}` with the X-Road headers.

use bytes::Bytes;

use super::{BusClient, BusError, Method, Transport, header_view, put};
use crate::id::{IdError, ServiceId};
use crate::rest::{self as r, parse_error_response};

/// A REST call being configured; finish with [`RestCall::send`].
#[derive(Debug)]
#[must_use = "a call does nothing until `send().await`"]
pub struct RestCall<'c, T> {
    client: &'c BusClient<T>,
    service: Result<ServiceId, IdError>,
    method: Method,
    path: String,
    message_id: Option<String>,
    user_id: Option<String>,
    issue: Option<String>,
    id_token: Option<String>,
    represented_party: Option<String>,
    security_server: Option<String>,
    headers: Vec<(String, String)>,
    body: Result<Bytes, String>,
    content_type: Option<String>,
}

impl<'c, T: Transport> RestCall<'c, T> {
    pub(super) fn new(
        client: &'c BusClient<T>,
        service: Result<ServiceId, IdError>,
        method: Method,
        path: &str,
    ) -> Self {
        Self {
            client,
            service,
            method,
            path: path.to_owned(),
            message_id: None,
            user_id: None,
            issue: None,
            id_token: None,
            represented_party: None,
            security_server: None,
            headers: Vec::new(),
            body: Ok(Bytes::new()),
            content_type: None,
        }
    }

    /// Sets `X-Road-Id` (default: a fresh UUID).
    pub fn message_id(mut self, id: impl Into<String>) -> Self {
        self.message_id = Some(id.into());
        self
    }

    /// Sets `X-Road-UserId`: the end user as the portal asserts it (unverified unless an ID
    /// token is attached too).
    pub fn user_id(mut self, user: impl Into<String>) -> Self {
        self.user_id = Some(user.into());
        self
    }

    /// Sets `X-Road-Issue` (case or document reference).
    pub fn issue(mut self, issue: impl Into<String>) -> Self {
        self.issue = Some(issue.into());
        self
    }

    /// Attaches the end user's OpenID Connect ID token (`Trustbus-Id-Token`); the consumer
    /// security server verifies it and signs the verified subject into the exchange.
    pub fn id_token(mut self, token: impl Into<String>) -> Self {
        self.id_token = Some(token.into());
        self
    }

    /// Sets `X-Road-Represented-Party` (`[CLASS/]CODE`).
    pub fn represented_party(mut self, party: impl Into<String>) -> Self {
        self.represented_party = Some(party.into());
        self
    }

    /// Sets `X-Road-Security-Server` (targets one provider security server).
    pub fn security_server(mut self, server: impl Into<String>) -> Self {
        self.security_server = Some(server.into());
        self
    }

    /// Adds a header of the service's own (for example `Accept`).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sends `body` as JSON (`Content-Type: application/json`).
    pub fn json<B: serde::Serialize + ?Sized>(mut self, body: &B) -> Self {
        self.body = serde_json::to_vec(body)
            .map(Bytes::from)
            .map_err(|e| e.to_string());
        self.content_type = Some("application/json".into());
        self
    }

    /// Sends raw bytes with this content type.
    pub fn body(mut self, body: impl Into<Bytes>, content_type: impl Into<String>) -> Self {
        self.body = Ok(body.into());
        self.content_type = Some(content_type.into());
        self
    }

    /// Sends the request (retrying idempotent methods per the client's policy).
    ///
    /// A response with `X-Road-Error` is a [`BusError::Fault`]; any other response, whatever
    /// its status, is the service's answer.
    pub async fn send(self) -> Result<RestResponse, BusError> {
        let service = self
            .service
            .map_err(|e| BusError::InvalidRequest(format!("service id: {e}")))?;
        let body = self
            .body
            .map_err(|e| BusError::InvalidRequest(format!("JSON body: {e}")))?;
        if !(self.path.is_empty() || self.path.starts_with('/') || self.path.starts_with('?')) {
            return Err(BusError::InvalidRequest(format!(
                "path {:?} must start with / or ?",
                self.path
            )));
        }
        let url = format!(
            "{}/{}/{}{}",
            self.client.inner.base,
            r::PROTOCOL_VERSION,
            service.to_slash(),
            self.path
        );
        let uri: http::Uri = url
            .parse()
            .map_err(|e| BusError::InvalidRequest(format!("URL {url:?}: {e}")))?;
        let message_id = self
            .message_id
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let mut h = http::HeaderMap::new();
        for (k, v) in &self.headers {
            put(&mut h, k, v)?;
        }
        put(
            &mut h,
            r::X_ROAD_CLIENT,
            &self.client.inner.client.to_slash(),
        )?;
        put(&mut h, r::X_ROAD_ID, &message_id)?;
        let optional = [
            (r::X_ROAD_USER_ID, &self.user_id),
            (r::X_ROAD_ISSUE, &self.issue),
            (r::X_ROAD_REPRESENTED_PARTY, &self.represented_party),
            (r::X_ROAD_SECURITY_SERVER, &self.security_server),
            (r::TRUSTBUS_ID_TOKEN, &self.id_token),
        ];
        for (name, value) in optional {
            if let Some(v) = value {
                put(&mut h, name, v)?;
            }
        }
        if let Some(ct) = &self.content_type {
            put(&mut h, "content-type", ct)?;
        }
        if !h.contains_key(http::header::ACCEPT) {
            put(&mut h, "accept", "application/json")?;
        }
        let response = self.client.execute(self.method, uri, h, body).await?;
        RestResponse::from_http(response, message_id)
    }
}

/// A service's answer (any status) with the bus's response headers.
#[derive(Debug, Clone)]
pub struct RestResponse {
    /// HTTP status.
    pub status: http::StatusCode,
    /// All response headers.
    pub headers: http::HeaderMap,
    /// `X-Road-Id` (as echoed, else the one sent).
    pub message_id: String,
    /// `X-Road-Request-Id`, if the security server set it.
    pub request_id: Option<String>,
    /// `X-Road-Request-Hash`, if the security server set it.
    pub request_hash: Option<String>,
    /// The body.
    pub body: Bytes,
}

impl RestResponse {
    /// Reads a transport response: `X-Road-Error` makes it a bus fault.
    pub fn from_http(response: http::Response<Bytes>, sent_id: String) -> Result<Self, BusError> {
        let (parts, body) = response.into_parts();
        match parse_error_response(&header_view(&parts.headers), &body) {
            Ok(Some(fault)) => return Err(BusError::from_fault(fault, parts.status.as_u16())),
            Ok(None) => {}
            Err(e) => {
                return Err(BusError::InvalidResponse(format!(
                    "bus error with HTTP {}: {e}",
                    parts.status.as_u16()
                )));
            }
        }
        let get = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        Ok(Self {
            status: parts.status,
            message_id: get(r::X_ROAD_ID).unwrap_or(sent_id),
            request_id: get(r::X_ROAD_REQUEST_ID),
            request_hash: get(r::X_ROAD_REQUEST_HASH),
            headers: parts.headers,
            body,
        })
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        self.status.is_success()
    }

    /// `Err(BusError::Status)` unless the status is 2xx.
    pub fn error_for_status(self) -> Result<Self, BusError> {
        if self.is_success() {
            Ok(self)
        } else {
            Err(BusError::Status {
                status: self.status.as_u16(),
                body: self.body,
            })
        }
    }

    /// The body as JSON. A non-2xx status is [`BusError::Status`] (the body is returned with
    /// it); a body that is not the expected JSON is [`BusError::InvalidResponse`].
    pub fn json<D: serde::de::DeserializeOwned>(self) -> Result<D, BusError> {
        let ok = self.error_for_status()?;
        serde_json::from_slice(&ok.body)
            .map_err(|e| BusError::InvalidResponse(format!("JSON body: {e}")))
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}
