//! Trustbus protocol core.
//!
//! Everything here is sans-IO: parsing, serialising, validating and hashing messages over bytes,
//! with no sockets and no async runtime, so servers stay thin and most tests run in memory.
//! The wire formats are those of X-Road message protocol 4.0 (SOAP) and the `/r1/` REST
//! protocol, so that existing X-Road clients work unchanged.

#![forbid(unsafe_code)]

#[cfg(feature = "client")]
pub mod client;
pub mod fault;
pub mod id;
pub mod identity;
pub mod multipart;
#[cfg(feature = "oidc")]
pub mod oidc;
#[cfg(feature = "provider")]
pub mod provider;
pub mod rest;
pub mod soap;
pub mod wsdl;
mod xml;

pub use fault::{ErrorKind, Fault, FaultCode, FaultDialect, Origin};
pub use id::{ClientId, GlobalGroupId, IdError, LocalGroupId, SecurityServerId, ServiceId};

// Compiles every Rust block of the SDK guide as a doc test, so the guide cannot rot.
#[cfg(all(doctest, feature = "client", feature = "provider", feature = "oidc"))]
#[doc = include_str!("../../docs/sdk-guide.md")]
mod sdk_guide {}
