//! Trustbus security server library: the parts of the security server that the binary and the
//! tests share.
#![forbid(unsafe_code)]

pub mod messagelog;
