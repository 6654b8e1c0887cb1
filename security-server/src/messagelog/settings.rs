//! The message log's operator settings (TOML), for the security server's configuration file:
//!
//! ```toml
//! [message_log]
//! durability = "sync"            # or "relaxed" (acknowledge before the sync)
//! relaxed_max_delay_ms = 10      # relaxed: longest time from a write to its sync
//! encrypt_payloads = false       # AES-256-GCM at rest, key in the token
//!
//! [message_log.timestamping]
//! failure_window_seconds = 600   # refuse exchanges after timestamping failed this long
//! mode = "batch"                 # or "per-message"
//! max_batch = 10000              # most records under one token
//! request_timeout_seconds = 10   # one TSA call
//! retry_base_seconds = 1         # first retry after a failure, doubling up to the interval
//!
//! [message_log.archive]
//! dir = "/var/lib/trustbus/messagelog-archive"
//! retention_days = 30            # records younger than this stay live
//! max_records = 10000            # most records in one archive file
//! interval_seconds = 3600        # how often the server looks for records to archive
//! ```
//!
//! The interval and the TSAs come from global configuration (`timestamping_interval_seconds`,
//! `approved_tsas`), not from here.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::Durability;
use super::archive::ArchiveConfig;
use super::timestamp::{TimestampConfig, TimestampMode};
use super::verifyconf::VerificationConf;

/// `[message_log.timestamping]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimestampSettings {
    /// Seconds of failed timestamping before exchanges are refused (default 600).
    pub failure_window_seconds: u64,
    /// `batch` (default) or `per-message`.
    pub mode: ModeSetting,
    /// Most records under one token (default 10,000).
    pub max_batch: usize,
    /// Time limit of one TSA call, seconds (default 10).
    pub request_timeout_seconds: u64,
    /// First retry delay after a failure, seconds (default 1).
    pub retry_base_seconds: u64,
}

/// The timestamping mode as written in TOML.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModeSetting {
    /// One token per interval over a Merkle root.
    #[default]
    Batch,
    /// One token per record.
    PerMessage,
}

impl Default for TimestampSettings {
    fn default() -> Self {
        Self {
            failure_window_seconds: 600,
            mode: ModeSetting::Batch,
            max_batch: 10_000,
            request_timeout_seconds: 10,
            retry_base_seconds: 1,
        }
    }
}

impl TimestampSettings {
    /// The timestamper configuration with the TSAs and interval of `conf`.
    pub fn to_config(&self, conf: &VerificationConf) -> TimestampConfig {
        let mut c = TimestampConfig::from_conf(conf);
        c.failure_window = Duration::from_secs(self.failure_window_seconds);
        c.mode = match self.mode {
            ModeSetting::Batch => TimestampMode::Batch,
            ModeSetting::PerMessage => TimestampMode::PerMessage,
        };
        c.max_batch = self.max_batch.max(1);
        c.request_timeout = Duration::from_secs(self.request_timeout_seconds.max(1));
        c.retry_base = Duration::from_secs(self.retry_base_seconds.max(1));
        c
    }
}

/// `[message_log] durability`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DurabilitySetting {
    /// Acknowledge an exchange only after the fdatasync covering its records: nothing
    /// acknowledged is ever lost.
    #[default]
    Sync,
    /// Acknowledge after the write into the page cache, sync at most `relaxed_max_delay_ms`
    /// later. A process crash loses nothing; a kernel crash or power loss loses the records of
    /// exchanges acknowledged in the last delay (the chain then ends before them).
    Relaxed,
}

impl DurabilitySetting {
    /// The journal's durability for this setting.
    pub fn to_durability(self, relaxed_max_delay_ms: u64) -> Durability {
        match self {
            Self::Sync => Durability::Sync,
            Self::Relaxed => Durability::Relaxed {
                max_delay: Duration::from_millis(relaxed_max_delay_ms.max(1)),
            },
        }
    }

    /// What an operator risks with this setting (logged at start-up), or `None` for `sync`.
    pub fn risk(self, relaxed_max_delay_ms: u64) -> Option<String> {
        match self {
            Self::Sync => None,
            Self::Relaxed => Some(format!(
                "message log durability is relaxed: exchanges are acknowledged before their log                  records are synced; on a kernel crash or power loss the records of exchanges                  acknowledged in the last {relaxed_max_delay_ms} ms (plus one sync) are lost,                  although the exchanges were answered (a process crash loses nothing)"
            )),
        }
    }
}

/// `[message_log.archive]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveSettings {
    /// Where archive files go.
    pub dir: PathBuf,
    /// Days records stay live (default 30).
    #[serde(default = "d_retention")]
    pub retention_days: u64,
    /// Most records per archive file (default 10,000).
    #[serde(default = "d_max_records")]
    pub max_records: usize,
    /// Seconds between archiving rounds (default 3600); a round archives everything due.
    #[serde(default = "d_archive_interval")]
    pub interval_seconds: u64,
}

fn d_archive_interval() -> u64 {
    3600
}

fn d_retention() -> u64 {
    30
}
fn d_max_records() -> usize {
    10_000
}

impl ArchiveSettings {
    /// The archiver configuration.
    pub fn to_config(&self) -> ArchiveConfig {
        let mut c = ArchiveConfig::new(&self.dir);
        c.retention = Duration::from_secs(self.retention_days.saturating_mul(24 * 3600));
        c.max_records = self.max_records.max(1);
        c
    }
}

/// The token key the payload key is derived from.
pub const PAYLOAD_TOKEN_KEY_ID: &str = "msglog-payload";

/// HKDF `info` of the payload key derivation.
const PAYLOAD_KEY_INFO: &[u8] = b"trustbus message log payload key v1 (AES-256-GCM)";

/// The payload encryption key from the software token: the token holds a dedicated secret key
/// [`PAYLOAD_TOKEN_KEY_ID`] (an Ed25519 key, encrypted under the PIN like the signing keys,
/// created here on first use), and the AES-256-GCM key is `HKDF-SHA256(its PKCS#8)`. The key
/// id recorded beside each ciphertext is `msglog-payload:` and the first 16 hex digits of the
/// token key's public key hash, so a record sealed under another key is named as such. Returns
/// the key and whether it was created now.
pub fn payload_key_from_token(
    token: &trustbus_pki::token::SoftToken,
    pin: &str,
) -> Result<(super::PayloadKey, bool), String> {
    use trustbus_pki::token::TokenError;
    let (key, created) = match token.load(PAYLOAD_TOKEN_KEY_ID, pin) {
        Ok(k) => (k, false),
        Err(TokenError::NotFound(_)) => {
            let k = trustbus_pki::KeyPair::generate(trustbus_pki::KeyKind::Ed25519)
                .map_err(|e| e.to_string())?;
            token
                .store(
                    PAYLOAD_TOKEN_KEY_ID,
                    "message log payload encryption (AES-256-GCM key derivation)",
                    &k,
                    pin,
                )
                .map_err(|e| format!("cannot store the payload key in the token: {e}"))?;
            (k, true)
        }
        Err(e) => return Err(format!("payload key {PAYLOAD_TOKEN_KEY_ID}: {e}")),
    };
    let salt = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, &[]);
    let mut aes = [0u8; 32];
    salt.extract(key.pkcs8_der())
        .expand(&[PAYLOAD_KEY_INFO], ring::hkdf::HKDF_SHA256)
        .and_then(|okm| okm.fill(&mut aes))
        .map_err(|_| "payload key derivation failed".to_owned())?;
    let fp = ring::digest::digest(
        &ring::digest::SHA256,
        trustbus_pki::Signer::public_key_der(&key),
    );
    let id = format!(
        "{PAYLOAD_TOKEN_KEY_ID}:{}",
        &trustbus_pki::cert::to_hex(fp.as_ref())[..16]
    );
    let k = super::PayloadKey::new(id, &aes).map_err(|e| e.to_string())?;
    Ok((k, created))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        message_log: Section,
    }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Section {
        durability: DurabilitySetting,
        relaxed_max_delay_ms: u64,
        encrypt_payloads: bool,
        timestamping: TimestampSettings,
        archive: ArchiveSettings,
    }

    #[test]
    fn the_documented_example_parses() {
        let doc = include_str!("settings.rs")
            .lines()
            .skip_while(|l| !l.starts_with("//! ```toml"))
            .skip(1)
            .take_while(|l| !l.starts_with("//! ```"))
            .map(|l| l.trim_start_matches("//!").trim_start())
            .collect::<Vec<_>>()
            .join("\n");
        let d: Doc = toml::from_str(&doc).unwrap();
        assert_eq!(d.message_log.timestamping, TimestampSettings::default());
        assert_eq!(d.message_log.archive.retention_days, 30);
        assert_eq!(d.message_log.archive.interval_seconds, 3600);
        assert_eq!(d.message_log.durability, DurabilitySetting::Sync);
        assert!(!d.message_log.encrypt_payloads);
        assert_eq!(
            d.message_log
                .durability
                .to_durability(d.message_log.relaxed_max_delay_ms),
            Durability::Sync
        );
        assert_eq!(DurabilitySetting::Sync.risk(10), None);
        let r: DurabilitySetting = toml::from_str::<toml::Value>("d = \"relaxed\"")
            .unwrap()
            .get("d")
            .unwrap()
            .clone()
            .try_into()
            .unwrap();
        assert_eq!(
            r.to_durability(25),
            Durability::Relaxed {
                max_delay: Duration::from_millis(25)
            }
        );
        assert!(r.risk(25).unwrap().contains("last 25 ms"));
        let e: Result<TimestampSettings, _> = toml::from_str("mode = \"sometimes\"");
        assert!(e.is_err());
        let p: TimestampSettings = toml::from_str("mode = \"per-message\"").unwrap();
        assert_eq!(p.mode, ModeSetting::PerMessage);
    }

    #[test]
    fn the_payload_key_comes_from_the_token_and_is_stable() {
        let dir = tempfile::tempdir().unwrap();
        let token = trustbus_pki::token::SoftToken::open(dir.path())
            .unwrap()
            .with_iterations(std::num::NonZeroU32::new(1000).unwrap());
        let (k1, created) = payload_key_from_token(&token, "pin").unwrap();
        assert!(created);
        let (k2, created) = payload_key_from_token(&token, "pin").unwrap();
        assert!(!created);
        assert_eq!(k1.id(), k2.id());
        assert!(k1.id().starts_with("msglog-payload:"));
        // The same key: what one seals, the other opens.
        let meta = crate::messagelog::record::tests::sample_meta(1);
        let sealed = k1.seal(&meta, b"secret payload".to_vec()).unwrap();
        assert_eq!(k2.open(&meta, &sealed).unwrap(), b"secret payload");
        assert!(payload_key_from_token(&token, "wrong").is_err());
    }
}
