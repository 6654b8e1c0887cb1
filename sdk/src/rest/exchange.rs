//! The exchange headers a response carries back: `X-Road-Id`, `X-Road-Client`,
//! `X-Road-Service`, `X-Road-Request-Id` and `X-Road-Request-Hash`.

use crate::fault::{ErrorKind, Fault, Origin};
use crate::id::{ClientId, ServiceId};

use super::headers::{self, Headers};

/// What identifies one REST exchange on its response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeHeaders {
    /// The message id (`X-Road-Id`).
    pub message_id: String,
    /// The calling client (`X-Road-Client`).
    pub client: ClientId,
    /// The called service (`X-Road-Service`).
    pub service: ServiceId,
    /// The bus request id shared by request and response (`X-Road-Request-Id`).
    pub request_id: String,
    /// The provider's hash of the request part and body (`X-Road-Request-Hash`).
    pub request_hash: String,
}

impl ExchangeHeaders {
    /// The five `(name, value)` pairs in their wire order, names in canonical case.
    pub fn pairs(&self) -> [(&'static str, String); 5] {
        [
            (headers::X_ROAD_ID, self.message_id.clone()),
            (headers::X_ROAD_CLIENT, self.client.to_slash()),
            (headers::X_ROAD_SERVICE, self.service.to_slash()),
            (headers::X_ROAD_REQUEST_ID, self.request_id.clone()),
            (headers::X_ROAD_REQUEST_HASH, self.request_hash.clone()),
        ]
    }

    /// Appends the five headers in lower case, as the provider's server writes them into the
    /// response part.
    pub fn append_transport(&self, h: &mut Headers<'_>) {
        for (name, value) in self.pairs() {
            h.push(name.to_ascii_lowercase(), value.into_bytes());
        }
    }

    /// Appends the five headers in canonical case, as the consumer's server returns them to
    /// its client.
    pub fn append_canonical(&self, h: &mut Headers<'_>) {
        for (name, value) in self.pairs() {
            h.push(name, value.into_bytes());
        }
    }

    /// Reads the five headers (last occurrence wins) from a response.
    pub fn from_headers(h: &Headers<'_>) -> Result<Self, Fault> {
        let get = |name: &'static str| -> Result<&str, Fault> {
            h.get_last(name)
                .and_then(|v| std::str::from_utf8(v).ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| inconsistent(format!("response lacks a valid {name} header")))
        };
        Ok(Self {
            message_id: get(headers::X_ROAD_ID)?.to_owned(),
            client: ClientId::from_slash(get(headers::X_ROAD_CLIENT)?)
                .map_err(|e| inconsistent(format!("response X-Road-Client: {e}")))?,
            service: ServiceId::from_slash(get(headers::X_ROAD_SERVICE)?)
                .map_err(|e| inconsistent(format!("response X-Road-Service: {e}")))?,
            request_id: get(headers::X_ROAD_REQUEST_ID)?.to_owned(),
            request_hash: get(headers::X_ROAD_REQUEST_HASH)?.to_owned(),
        })
    }

    /// Checks that a provider's response belongs to the request we sent: every exchange
    /// header must equal ours, above all the request hash, which proves the provider saw
    /// exactly our request. Mismatch: `Server.ClientProxy.InconsistentResponse`.
    pub fn verify_response(&self, response_headers: &Headers<'_>) -> Result<(), Fault> {
        let theirs = Self::from_headers(response_headers)?;
        let field = if theirs.request_hash != self.request_hash {
            "X-Road-Request-Hash"
        } else if theirs.request_id != self.request_id {
            "X-Road-Request-Id"
        } else if theirs.message_id != self.message_id {
            "X-Road-Id"
        } else if theirs.client != self.client {
            "X-Road-Client"
        } else if theirs.service != self.service {
            "X-Road-Service"
        } else {
            return Ok(());
        };
        Err(inconsistent(format!(
            "response {field} does not match the request"
        )))
    }
}

fn inconsistent(message: String) -> Fault {
    Fault::of(
        Origin::ClientProxy,
        ErrorKind::InconsistentResponse,
        message,
    )
}
