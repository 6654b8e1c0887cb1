//! The auditor trail: every auditor query, appended to a hash-chained JSON-lines file that is
//! synced before the answer goes out.
//!
//! It is a separate file (not the message log) because it records who looked at the log, not
//! exchanges, and must not disturb the log's record ids or timestamp batches. Each line is
//! `{"seq", "at", "actor", "action", "target", "status", "results", "prev", "hash"}` where
//! `hash = SHA-256(prev ‖ the line's JSON without "hash")` in hex, so deleting or editing a
//! line breaks the chain ([`AuditTrail::verify`]).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// One auditor query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrailEntry {
    /// Sequence number from 1.
    pub seq: u64,
    /// When (RFC 3339).
    pub at: String,
    /// Who asked (the auditor's identity, or `anonymous` for refused calls).
    pub actor: String,
    /// What was asked (`search`, `export_record`, `export_exchange`, `verificationconf`).
    pub action: String,
    /// The query or object (query string, record id, request id).
    pub target: String,
    /// The HTTP status answered.
    pub status: u16,
    /// How many records were returned or exported.
    pub results: u64,
    /// The previous line's hash (hex; zeros for the first).
    pub prev: String,
    /// This line's hash (hex).
    #[serde(default)]
    pub hash: String,
}

/// Why the trail could not be written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrailError {
    /// File I/O failed.
    #[error("audit trail {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A line does not parse or does not chain.
    #[error("audit trail line {line}: {reason}")]
    Broken {
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        reason: String,
    },
}

fn hash_of(e: &TrailEntry) -> String {
    let mut unhashed = e.clone();
    unhashed.hash = String::new();
    let json = serde_json::to_vec(&unhashed).unwrap_or_default();
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(e.prev.as_bytes());
    ctx.update(&json);
    ctx.finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The append-only trail file.
#[derive(Debug)]
pub struct AuditTrail {
    path: PathBuf,
    state: Mutex<(File, u64, String)>,
}

impl AuditTrail {
    /// Opens (or creates) the trail at `path`, checking the existing chain.
    pub fn open(path: &Path) -> Result<Self, TrailError> {
        let io = |source| TrailError::Io {
            path: path.display().to_string(),
            source,
        };
        let entries = if path.exists() {
            Self::verify(path)?
        } else {
            Vec::new()
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        let (seq, prev) = entries
            .last()
            .map_or((0, "0".repeat(64)), |e| (e.seq, e.hash.clone()));
        Ok(Self {
            path: path.to_owned(),
            state: Mutex::new((file, seq, prev)),
        })
    }

    /// Appends one entry and syncs it; returns it.
    pub fn append(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        status: u16,
        results: u64,
    ) -> Result<TrailEntry, TrailError> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut e = TrailEntry {
            seq: st.1 + 1,
            at: OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            actor: actor.to_owned(),
            action: action.to_owned(),
            target: target.to_owned(),
            status,
            results,
            prev: st.2.clone(),
            hash: String::new(),
        };
        e.hash = hash_of(&e);
        let mut line = serde_json::to_vec(&e).unwrap_or_default();
        line.push(b'\n');
        let io = |source| TrailError::Io {
            path: self.path.display().to_string(),
            source,
        };
        st.0.write_all(&line).map_err(io)?;
        st.0.sync_data().map_err(io)?;
        st.1 = e.seq;
        st.2 = e.hash.clone();
        Ok(e)
    }

    /// Reads and checks a trail file: every line parses, sequence numbers run from 1, every
    /// hash and link is right. Returns the entries or the first broken line.
    pub fn verify(path: &Path) -> Result<Vec<TrailEntry>, TrailError> {
        let f = File::open(path).map_err(|source| TrailError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let mut out: Vec<TrailEntry> = Vec::new();
        let mut prev = "0".repeat(64);
        for (i, line) in BufReader::new(f).lines().enumerate() {
            let n = i as u64 + 1;
            let broken = |reason: &str| TrailError::Broken {
                line: n,
                reason: reason.to_owned(),
            };
            let line = line.map_err(|e| broken(&e.to_string()))?;
            let e: TrailEntry = serde_json::from_str(&line).map_err(|e| broken(&e.to_string()))?;
            if e.seq != n || e.prev != prev || e.hash != hash_of(&e) {
                return Err(broken("sequence, link or hash does not match"));
            }
            prev = e.hash.clone();
            out.push(e);
        }
        Ok(out)
    }

    /// The trail's file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
