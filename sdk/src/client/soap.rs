//! One SOAP call: an X-Road 4.0 envelope `POST`ed to the security server.

use bytes::Bytes;

use super::{BusClient, BusError, Transport, put};
use crate::fault::Origin;
use crate::id::{IdError, RepresentedParty, SecurityServerId, ServiceId};
use crate::rest::TRUSTBUS_ID_TOKEN;
use crate::soap::{
    Limits, SoapHeader, SoapRequestBuilder, SoapResponse, check_response_headers, parse_request,
    parse_response,
};

/// A SOAP call being configured; finish with [`SoapCall::send`].
#[derive(Debug)]
#[must_use = "a call does nothing until `send().await`"]
pub struct SoapCall<'c, T> {
    client: &'c BusClient<T>,
    service: Result<ServiceId, IdError>,
    message_id: Option<String>,
    user_id: Option<String>,
    issue: Option<String>,
    id_token: Option<String>,
    represented_party: Option<String>,
    security_server: Option<String>,
    body: String,
    limits: Limits,
}

impl<'c, T: Transport> SoapCall<'c, T> {
    pub(super) fn new(client: &'c BusClient<T>, service: Result<ServiceId, IdError>) -> Self {
        Self {
            client,
            service,
            message_id: None,
            user_id: None,
            issue: None,
            id_token: None,
            represented_party: None,
            security_server: None,
            body: String::new(),
            limits: Limits::default(),
        }
    }

    /// The body content: the wrapper element named after the service code with its own
    /// namespace declarations, for example `<ns:getPerson xmlns:ns="…"><id>1</id></ns:getPerson>`.
    /// Inserted verbatim; empty means `<serviceCode/>`.
    pub fn body(mut self, xml: impl Into<String>) -> Self {
        self.body = xml.into();
        self
    }

    /// Sets `id` (default: a fresh UUID).
    pub fn message_id(mut self, id: impl Into<String>) -> Self {
        self.message_id = Some(id.into());
        self
    }

    /// Sets `userId`.
    pub fn user_id(mut self, user: impl Into<String>) -> Self {
        self.user_id = Some(user.into());
        self
    }

    /// Sets `issue`.
    pub fn issue(mut self, issue: impl Into<String>) -> Self {
        self.issue = Some(issue.into());
        self
    }

    /// Attaches the end user's ID token (`Trustbus-Id-Token` HTTP header).
    pub fn id_token(mut self, token: impl Into<String>) -> Self {
        self.id_token = Some(token.into());
        self
    }

    /// Sets `representedParty` (`[CLASS/]CODE`).
    pub fn represented_party(mut self, party: impl Into<String>) -> Self {
        self.represented_party = Some(party.into());
        self
    }

    /// Sets `securityServer` (`INSTANCE/CLASS/MEMBER/SERVERCODE`).
    pub fn security_server(mut self, server: impl Into<String>) -> Self {
        self.security_server = Some(server.into());
        self
    }

    /// Sends the envelope. Never retried (SOAP is `POST`).
    ///
    /// A fault with an X-Road code is [`BusError::Fault`]; any other fault is the service's
    /// own, [`BusError::ServiceFault`]. A response whose X-Road header fields do not echo the
    /// request is [`BusError::InvalidResponse`].
    pub async fn send(self) -> Result<SoapReply, BusError> {
        let invalid = |what: &str, e: IdError| BusError::InvalidRequest(format!("{what}: {e}"));
        let service = self.service.map_err(|e| invalid("service id", e))?;
        let mut b = SoapRequestBuilder::new(self.client.inner.client.clone(), service);
        if let Some(id) = self.message_id {
            b = b.id(id);
        }
        if let Some(u) = self.user_id {
            b = b.user_id(u);
        }
        if let Some(i) = self.issue {
            b = b.issue(i);
        }
        if let Some(p) = &self.represented_party {
            b = b.represented_party(
                RepresentedParty::from_slash(p).map_err(|e| invalid("represented party", e))?,
            );
        }
        if let Some(s) = &self.security_server {
            b = b.security_server(
                SecurityServerId::from_slash(s).map_err(|e| invalid("security server", e))?,
            );
        }
        let envelope = b.body(self.body).build();
        // Parse what we built: a body that breaks the envelope is caught before sending, and
        // the parsed request is what the response must echo.
        let request = parse_request(envelope.clone(), &self.limits)
            .map_err(|f| BusError::InvalidRequest(format!("SOAP body: {}", f.message)))?;
        let mut h = http::HeaderMap::new();
        put(&mut h, "content-type", "text/xml; charset=utf-8")?;
        put(&mut h, "soapaction", "\"\"")?;
        if let Some(t) = &self.id_token {
            put(&mut h, TRUSTBUS_ID_TOKEN, t)?;
        }
        let uri: http::Uri = format!("{}/", self.client.inner.base)
            .parse()
            .map_err(|e| BusError::InvalidRequest(format!("URL: {e}")))?;
        let response = self
            .client
            .execute(http::Method::POST, uri, h, Bytes::from(envelope))
            .await?;
        let status = response.status().as_u16();
        let body = response.into_body();
        match parse_response(body.to_vec(), &self.limits) {
            Ok(SoapResponse::Message(m)) => {
                check_response_headers(&request, &m, Origin::Client)
                    .map_err(|f| BusError::InvalidResponse(f.message))?;
                let body = String::from_utf8_lossy(m.body_content()).into_owned();
                Ok(SoapReply {
                    header: m.header().clone(),
                    body,
                    envelope: Bytes::from(m.into_bytes()),
                    status,
                })
            }
            Ok(SoapResponse::Fault { fault, .. }) => match fault.to_fault() {
                Some(f) => Err(BusError::from_fault(f, status)),
                None => Err(BusError::ServiceFault(fault)),
            },
            Err(f) => Err(BusError::InvalidResponse(format!(
                "HTTP {status}, not an X-Road SOAP response: {}",
                f.message
            ))),
        }
    }
}

/// A SOAP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoapReply {
    /// The X-Road header fields (echoing the request, plus `requestHash`).
    pub header: SoapHeader,
    /// Everything inside `Body`, as received (the response wrapper element).
    pub body: String,
    /// The whole envelope as received.
    pub envelope: Bytes,
    /// The HTTP status.
    pub status: u16,
}
