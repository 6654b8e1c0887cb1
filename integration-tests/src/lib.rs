//! Helpers for the end-to-end tests that start the real Trustbus binaries on loopback, and the
//! benchmark harness (`trustbus-loadgen`, `trustbus-echo`, `trustbus-bench`).

#![forbid(unsafe_code)]

pub mod bus;
pub mod echo;
pub mod hist;
pub mod load;
pub mod nginx;
pub mod procstat;
