//! Trustbus trust services: keys, certificates, chain validation, OCSP, RFC 3161 timestamps,
//! CMS signatures, ASiC-E containers and the one place that builds rustls configurations.

#![forbid(unsafe_code)]
