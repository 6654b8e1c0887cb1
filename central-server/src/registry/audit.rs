//! The admin audit trail: one append-only sled tree, keyed by a monotonic id.

use serde::{Deserialize, Serialize};

use crate::Error;

/// One admin action, successful or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Monotonic id.
    pub id: u64,
    /// When (RFC 3339 UTC).
    pub at: String,
    /// Who: the API key id, `anonymous`, `cli`, or `management:<member>`.
    pub actor: String,
    /// What: the action name (`member.create`, `request.approve`, …).
    pub action: String,
    /// The object acted on.
    pub target: String,
    /// `ok`, or the error code.
    pub result: String,
    /// Error message or other detail.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// Correlation id shown to the caller.
    pub correlation_id: String,
}

/// The audit trail.
pub struct AuditLog {
    tree: sled::Tree,
    append: std::sync::Mutex<()>,
    durability: super::SledDurability,
}

impl AuditLog {
    pub(crate) fn new(tree: sled::Tree, durability: super::SledDurability) -> Self {
        Self {
            tree,
            append: std::sync::Mutex::new(()),
            durability,
        }
    }

    /// Appends an entry (its `id` is assigned here) and flushes.
    pub fn record(&self, mut entry: AuditEntry) -> Result<u64, Error> {
        let _guard = self.append.lock().unwrap_or_else(|p| p.into_inner());
        let id = self
            .tree
            .last()?
            .and_then(|(k, _)| <[u8; 8]>::try_from(k.as_ref()).ok())
            .map_or(1, |b| u64::from_be_bytes(b) + 1);
        entry.id = id;
        self.tree
            .insert(id.to_be_bytes(), serde_json::to_vec(&entry)?)?;
        self.durability.flush(&self.tree)?;
        Ok(id)
    }

    /// Entries with id greater than `after`, oldest first, at most `limit`.
    pub fn list(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>, Error> {
        let mut out = Vec::new();
        for kv in self.tree.range((after.saturating_add(1)).to_be_bytes()..) {
            let (_, v) = kv?;
            out.push(
                serde_json::from_slice(&v)
                    .map_err(|e| Error::Storage(format!("corrupt audit entry: {e}")))?,
            );
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }
}
