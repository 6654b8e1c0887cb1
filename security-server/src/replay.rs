//! Replay protection on the server proxy: a request's signing time must be recent, and the
//! same signed manifest is accepted once within that window.
//!
//! The key is the manifest, not the signature bytes: an ECDSA signature `(r, s)` can be
//! rewritten as `(r, n - s)` and a CMS structure re-encoded without breaking verification, so a
//! guard keyed on the signature would let such a copy through. Every manifest names the
//! request id the consumer's security server draws afresh for each exchange, so two legitimate
//! requests never share one.

use std::collections::HashMap;
use std::sync::Mutex;

use time::{Duration, OffsetDateTime};
use trustbus_sdk::fault::{ErrorKind, Fault, Origin};

/// Manifests of requests seen recently.
#[derive(Debug)]
pub struct ReplayGuard {
    window: Duration,
    seen: Mutex<HashMap<[u8; 32], OffsetDateTime>>,
}

impl ReplayGuard {
    /// Accepts requests signed at most `window` ago (plus the allowed clock skew).
    pub fn new(window: Duration) -> Self {
        Self {
            window: window + trustbus_pki::ocsp::MAX_CLOCK_SKEW,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Admits a request whose verified signature over `manifest` was made at `signing_time`,
    /// or refuses it with `Server.ServerProxy.InvalidMessage` when too old or already seen.
    pub fn admit(
        &self,
        manifest: &[u8],
        signing_time: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<(), Fault> {
        if now - signing_time > self.window {
            return Err(Fault::of(
                Origin::ServerProxy,
                ErrorKind::InvalidMessage,
                format!("the request was signed at {signing_time}, too long ago to be accepted"),
            ));
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, manifest).as_ref());
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let window = self.window;
        if seen.len() > 100_000 {
            seen.retain(|_, t| now - *t <= window);
        }
        if seen.insert(key, signing_time).is_some() {
            return Err(Fault::of(
                Origin::ServerProxy,
                ErrorKind::InvalidMessage,
                "this signed request was already received (replay)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_and_repeated_requests_are_refused() {
        let g = ReplayGuard::new(Duration::seconds(60));
        let now = crate::now();
        g.admit(b"sig-1", now, now).unwrap();
        let e = g.admit(b"sig-1", now, now).unwrap_err();
        assert_eq!(
            e.code.render(trustbus_sdk::FaultDialect::Classic),
            "Server.ServerProxy.InvalidMessage"
        );
        assert!(e.message.contains("replay"));
        g.admit(b"sig-2", now - Duration::seconds(150), now)
            .unwrap();
        assert!(
            g.admit(b"sig-3", now - Duration::seconds(200), now)
                .is_err()
        );
    }
}
