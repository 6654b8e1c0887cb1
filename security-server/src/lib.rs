//! Trustbus security server: the client proxy (information systems call it), the server proxy
//! (other security servers call it), the `trustbus/1` transport between them, signing and
//! verification, access rights, and the message log hook.

#![forbid(unsafe_code)]

pub mod access;
pub mod admin;
pub mod adminapi;
pub mod adminclient;
pub mod adminkeys;
pub mod auditorapi;
pub mod citizen;
pub mod clientproxy;
pub mod config;
pub mod confstore;
pub mod gcview;
pub mod httpc;
pub mod identity;
pub mod keystore;
mod listen;
pub mod logsink;
pub mod management;
pub mod message;
pub mod messagelog;
pub mod metadata;
pub mod metrics;
pub mod replay;
pub mod respond;
pub mod run;
pub mod serverproxy;
pub mod servicedesc;
pub mod spill;
pub mod sspool;
pub mod state;
pub mod transport;
pub mod verify;

/// How long a client may take to send a request's headers (slow-client protection).
pub const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// The current time, whole seconds (CMS signing times and OCSP times have second precision).
pub fn now() -> time::OffsetDateTime {
    let t = time::OffsetDateTime::now_utc();
    t.replace_nanosecond(0).unwrap_or(t)
}
#[doc(hidden)]
pub mod testkit;
