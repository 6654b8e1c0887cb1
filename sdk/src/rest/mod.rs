//! The X-Road REST message protocol (`/r1/`), between an information system and its security
//! server, and its header part as carried between security servers.
//!
//! * [`RestRequest`] parses `METHOD /r1/INSTANCE/CLASS/MEMBER/SUBSYSTEM/SERVICE[/path][?query]`.
//! * [`XRoadHeaders`] reads `X-Road-Client` and friends, with the `Uxp-*` and
//!   `Information-Mediator-Client` aliases.
//! * [`Headers`] keeps headers in order; [`Headers::forwardable`] drops hop-by-hop ones.
//! * [`RequestHeaderPart`] / [`ResponseHeaderPart`] write and read the exact header part bytes.
//! * [`RequestHasher`] computes `X-Road-Request-Hash` over the part and a streamed body.
//! * [`ErrorResponse`] and [`parse_error_response`] are the bus-error bodies.
//! * [`EndpointPattern`] matches access-right endpoints against safe, normalised paths.
//!
//! The normative description is `docs/protocol-rest.md`.

mod endpoint;
mod error_body;
mod exchange;
mod hash;
mod header_part;
mod headers;
mod request;

pub use endpoint::{EndpointPattern, PathError, normalize_endpoint_path};
pub use error_body::{
    ErrorBodyError, ErrorFormat, ErrorResponse, parse_error_body, parse_error_response,
};
pub use exchange::ExchangeHeaders;
pub use hash::{RequestHasher, request_hash};
pub use header_part::{HeaderPartError, RequestHeaderPart, ResponseHeaderPart};
pub use headers::{
    HeaderField, Headers, IM_CLIENT, TRUSTBUS_ID_TOKEN, TRUSTBUS_USER_VERIFIED, X_ROAD_CLIENT,
    X_ROAD_ERROR, X_ROAD_ID, X_ROAD_ISSUE, X_ROAD_REPRESENTED_PARTY, X_ROAD_REQUEST_HASH,
    X_ROAD_REQUEST_ID, X_ROAD_SECURITY_SERVER, X_ROAD_SERVICE, X_ROAD_USER_ID, is_hop_by_hop,
    is_token,
};
pub use request::{METHODS, PROTOCOL_VERSION, RestError, RestRequest, XRoadHeaders};

#[cfg(test)]
mod tests;
