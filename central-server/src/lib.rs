//! Trustbus central server: the member registry, management requests and the signed global
//! configuration, plus the configuration client library that security servers use to download
//! and verify that configuration.
//!
//! Layout (see `docs/globalconf.md`):
//! - [`registry`]: the sled-backed registry of typed records, changed in transactions.
//! - [`model`]: the records and the published shared/private parameters.
//! - [`globalconf`]: generation, signing, publishing and versioning of global configuration.
//! - [`anchor`]: the configuration anchor a security server is bootstrapped with.
//! - [`confclient`]: download, verification, atomic swap and fail-closed access on the
//!   security-server side.
//! - [`management`]: signed management requests and their approval states.
//! - [`api`]: the HTTP surface (admin REST API, management service, global configuration).
//! - [`apply`]: declarative setup from a whole-instance TOML description.
//! - [`metrics`]: Prometheus metrics.
//! - [`keys`]: the PIN-encrypted key token (configuration-signing and TLS keys).
//! - [`tlsconf`]: mutual TLS on the management listener, optional HTTPS elsewhere.

#![forbid(unsafe_code)]

pub mod anchor;
pub mod api;
pub mod apply;
pub mod confclient;
pub mod config;
pub mod error;
pub mod globalconf;
pub mod keys;
pub mod management;
pub mod metrics;
pub mod model;
pub mod registry;
pub mod supervised;
pub mod tlsconf;
pub mod util;

pub use error::Error;
