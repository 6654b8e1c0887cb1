//! The message log's operator settings (TOML), for the security server's configuration file:
//!
//! ```toml
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
//! ```
//!
//! The interval and the TSAs come from global configuration (`timestamping_interval_seconds`,
//! `approved_tsas`), not from here.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

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
        let e: Result<TimestampSettings, _> = toml::from_str("mode = \"sometimes\"");
        assert!(e.is_err());
        let p: TimestampSettings = toml::from_str("mode = \"per-message\"").unwrap();
        assert_eq!(p.mode, ModeSetting::PerMessage);
    }
}
