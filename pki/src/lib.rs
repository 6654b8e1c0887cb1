//! Trustbus trust services: keys, certificates, chain validation, OCSP, RFC 3161 timestamps,
//! CMS signatures, ASiC-E containers and the one place that builds rustls configurations.

#![forbid(unsafe_code)]

pub mod asic;
pub mod cert;
pub mod chain;
pub mod cms;
pub mod devca;
pub mod digest;
pub mod key;
pub mod merkle;
pub mod ocsp;
pub mod profile;
pub mod revocation;
pub mod serve;
pub mod signature;
pub mod tls;
pub mod token;
pub mod tsa;

mod der_util;
mod zip;

pub use cert::Certificate;
pub use digest::DigestAlgorithm;
pub use key::{KeyKind, KeyPair};
pub use signature::{SignatureAlgorithm, SignatureError, Signer};
