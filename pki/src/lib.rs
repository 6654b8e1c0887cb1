//! Trustbus trust services: keys, certificates, chain validation, OCSP, RFC 3161 timestamps,
//! CMS signatures, ASiC-E containers and the one place that builds rustls configurations.

#![forbid(unsafe_code)]

pub mod asic;
pub mod cms;
pub mod digest;
pub mod merkle;
pub mod ocsp;
pub mod signature;
pub mod tsa;

mod der_util;
mod zip;

pub use digest::DigestAlgorithm;
pub use signature::{SignatureAlgorithm, SignatureError, Signer};
