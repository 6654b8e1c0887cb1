//! `X-Road-Request-Hash`: what the provider's server saw, so the consumer can prove the
//! response answers exactly its request.
//!
//! `base64(SHA-512(SHA-512(header part) ‖ SHA-512(body)))`, or `base64(SHA-512(header part))`
//! when there is no body. The body is hashed incrementally so a server can stream a large
//! body through without holding it.

use base64::Engine;
use ring::digest::{Context, Digest, SHA512, digest};

/// Hashes a request: the header part up front, then the body in chunks.
#[derive(Clone)]
pub struct RequestHasher {
    header: Digest,
    body: Context,
    body_len: u64,
}

impl RequestHasher {
    /// Starts a hash over the serialised request header part.
    pub fn new(header_part: &[u8]) -> Self {
        Self {
            header: digest(&SHA512, header_part),
            body: Context::new(&SHA512),
            body_len: 0,
        }
    }

    /// Feeds the next chunk of the body.
    pub fn update(&mut self, chunk: &[u8]) {
        self.body.update(chunk);
        self.body_len += chunk.len() as u64;
    }

    /// Body bytes fed so far.
    pub fn body_len(&self) -> u64 {
        self.body_len
    }

    /// The header value. A zero-length body counts as no body: X-Road sends no body part for
    /// it, so there is nothing for the outer hash to cover.
    pub fn finish(self) -> String {
        let outer = if self.body_len == 0 {
            self.header
        } else {
            let body = self.body.finish();
            let mut ctx = Context::new(&SHA512);
            ctx.update(self.header.as_ref());
            ctx.update(body.as_ref());
            ctx.finish()
        };
        base64::engine::general_purpose::STANDARD.encode(outer.as_ref())
    }
}

impl std::fmt::Debug for RequestHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestHasher")
            .field("body_len", &self.body_len)
            .finish_non_exhaustive()
    }
}

/// The request hash of a header part and a body held in memory (`None` or empty: no body).
pub fn request_hash(header_part: &[u8], body: Option<&[u8]>) -> String {
    let mut h = RequestHasher::new(header_part);
    if let Some(b) = body {
        h.update(b);
    }
    h.finish()
}
