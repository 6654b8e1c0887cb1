//! Helpers for the end-to-end tests that start the real Trustbus binaries on loopback.

#![forbid(unsafe_code)]
