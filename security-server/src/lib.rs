//! Trustbus security server: the client proxy (information systems call it), the server proxy
//! (other security servers call it), the `trustbus/1` transport between them, signing and
//! verification, access rights, and the message log hook.

#![forbid(unsafe_code)]

pub mod transport;
