//! The registry: typed records in sled trees, changed only through [`Registry::mutate`].
//!
//! Every record kind has its own tree, keyed by the record's identifier and holding its JSON.
//! A change is made on a copy of the in-memory [`RegistryState`]; the trees that differ are
//! then written in one sled transaction and made durable ([`SledDurability::flush`]) before the
//! change is acknowledged. A closure that returns an error changes nothing.

mod audit;

/// Makes sled writes durable: sled 0.34's `flush` writes its buffers but only issues
/// `sync_file_range`, which persists neither file metadata nor the device cache
/// (`shared/reference/perf-anchors.md`). fsync acts on the file, not the descriptor, so after
/// sled's flush every file of the database and the directories are `fsync`ed through
/// descriptors of our own. Registry changes are rare, so the cost (a few fsyncs) is fine.
#[derive(Debug, Clone)]
pub(crate) struct SledDurability {
    dir: std::path::PathBuf,
}

impl SledDurability {
    /// Flushes `tree`'s database and fsyncs its files.
    pub(crate) fn flush(&self, tree: &sled::Tree) -> Result<(), Error> {
        tree.flush()?;
        self.fsync_dir(&self.dir)
    }

    fn fsync_dir(&self, dir: &Path) -> Result<(), Error> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                self.fsync_dir(&entry.path())?;
            } else if kind.is_file() {
                std::fs::File::open(entry.path())?.sync_all()?;
            }
        }
        std::fs::File::open(dir)?.sync_all()?;
        Ok(())
    }
}

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::management::ManagementRequest;
use crate::model::{
    ApprovedCa, ApprovedTsa, GlobalGroup, Member, MemberClass, OidcIssuer, SecurityServer, Settings,
};

pub use audit::{AuditEntry, AuditLog};

/// An API key's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Reads everything.
    Observer,
    /// Manages members, subsystems, groups and management requests.
    RegistrationOfficer,
    /// Everything, including trust services, settings, keys and API keys.
    SystemAdministrator,
}

impl Role {
    /// The role's name as used on the CLI and in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Observer => "observer",
            Self::RegistrationOfficer => "registration-officer",
            Self::SystemAdministrator => "system-administrator",
        }
    }

    /// Parses a role name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Observer,
            Self::RegistrationOfficer,
            Self::SystemAdministrator,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

/// A stored API key: only the SHA-256 of the secret is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    /// Public identifier of the key (also the first part of the key string).
    pub id: String,
    /// Hex SHA-256 of the full key string.
    pub sha256: String,
    /// Role.
    pub role: Role,
    /// Creation time (RFC 3339).
    pub created_at: String,
}

/// Which configuration-signing keys exist and which one signs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningState {
    /// Number of the active key (`keys/conf-signing-N.*`).
    pub active: u32,
    /// Number of the announced next key, if a rotation is under way.
    pub next: Option<u32>,
}

/// The whole registry, as held in memory. Small (thousands of records), so a change copies it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RegistryState {
    /// Monotonic revision, bumped on every committed change.
    pub revision: u64,
    /// Member classes by code.
    pub member_classes: BTreeMap<String, MemberClass>,
    /// Members by slash id.
    pub members: BTreeMap<String, Member>,
    /// Security servers by slash id.
    pub servers: BTreeMap<String, SecurityServer>,
    /// Global groups by code.
    pub groups: BTreeMap<String, GlobalGroup>,
    /// Approved CAs by name.
    pub cas: BTreeMap<String, ApprovedCa>,
    /// Approved TSAs by name.
    pub tsas: BTreeMap<String, ApprovedTsa>,
    /// Trusted OIDC issuers by issuer URL.
    pub issuers: BTreeMap<String, OidcIssuer>,
    /// Settings.
    pub settings: Settings,
    /// Management requests by zero-padded id.
    pub requests: BTreeMap<String, ManagementRequest>,
    /// API keys by id.
    pub api_keys: BTreeMap<String, ApiKeyRecord>,
    /// Configuration-signing key state.
    pub signing: SigningState,
}

const TREES: [&str; 10] = [
    "meta",
    "member_classes",
    "members",
    "servers",
    "groups",
    "cas",
    "tsas",
    "issuers",
    "requests",
    "api_keys",
];

type View = Vec<BTreeMap<String, Vec<u8>>>;

fn ser_map<T: Serialize>(m: &BTreeMap<String, T>) -> Result<BTreeMap<String, Vec<u8>>, Error> {
    m.iter()
        .map(|(k, v)| Ok((k.clone(), serde_json::to_vec(v)?)))
        .collect()
}

fn de_map<T: DeserializeOwned>(
    tree: &str,
    m: &BTreeMap<String, Vec<u8>>,
) -> Result<BTreeMap<String, T>, Error> {
    m.iter()
        .map(|(k, v)| {
            serde_json::from_slice(v)
                .map(|r| (k.clone(), r))
                .map_err(|e| Error::Storage(format!("corrupt record {tree}/{k}: {e}")))
        })
        .collect()
}

impl RegistryState {
    fn to_view(&self) -> Result<View, Error> {
        let mut meta = BTreeMap::new();
        meta.insert("revision".into(), serde_json::to_vec(&self.revision)?);
        meta.insert("settings".into(), serde_json::to_vec(&self.settings)?);
        meta.insert("signing".into(), serde_json::to_vec(&self.signing)?);
        Ok(vec![
            meta,
            ser_map(&self.member_classes)?,
            ser_map(&self.members)?,
            ser_map(&self.servers)?,
            ser_map(&self.groups)?,
            ser_map(&self.cas)?,
            ser_map(&self.tsas)?,
            ser_map(&self.issuers)?,
            ser_map(&self.requests)?,
            ser_map(&self.api_keys)?,
        ])
    }

    fn from_view(v: &View) -> Result<Self, Error> {
        let meta = &v[0];
        let get = |k: &str| meta.get(k).map(|b| serde_json::from_slice(b)).transpose();
        Ok(Self {
            revision: get("revision")
                .map_err(|e| Error::Storage(e.to_string()))?
                .unwrap_or(0),
            settings: meta
                .get("settings")
                .map(|b| serde_json::from_slice(b))
                .transpose()
                .map_err(|e| Error::Storage(e.to_string()))?
                .unwrap_or_default(),
            signing: meta
                .get("signing")
                .map(|b| serde_json::from_slice(b))
                .transpose()
                .map_err(|e| Error::Storage(e.to_string()))?
                .unwrap_or_default(),
            member_classes: de_map(TREES[1], &v[1])?,
            members: de_map(TREES[2], &v[2])?,
            servers: de_map(TREES[3], &v[3])?,
            groups: de_map(TREES[4], &v[4])?,
            cas: de_map(TREES[5], &v[5])?,
            tsas: de_map(TREES[6], &v[6])?,
            issuers: de_map(TREES[7], &v[7])?,
            requests: de_map(TREES[8], &v[8])?,
            api_keys: de_map(TREES[9], &v[9])?,
        })
    }

    /// The member record for `id` (a member id; subsystems resolve to their member).
    pub fn member(&self, id: &trustbus_sdk::id::ClientId) -> Option<&Member> {
        self.members.get(&id.owner().to_slash())
    }

    /// Whether `id` (member or subsystem) is registered.
    pub fn client_exists(&self, id: &trustbus_sdk::id::ClientId) -> bool {
        match (self.member(id), id.subsystem_code()) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(m), Some(_)) => m.subsystems.iter().any(|s| &s.id == id),
        }
    }
}

/// The registry database.
pub struct Registry {
    db: sled::Db,
    trees: Vec<sled::Tree>,
    state: Mutex<RegistryState>,
    audit: AuditLog,
    durability: SledDurability,
    instance: String,
}

impl Registry {
    /// Opens (or creates) the registry at `path` for `instance`. Fails if the database belongs
    /// to another instance, or if another process has it open.
    pub fn open(path: &Path, instance: &str) -> Result<Self, Error> {
        // sled releases its file lock from a background thread after the last handle is
        // dropped (and a previous process may be just exiting): wait for it, up to 10 s (2 s
        // proved too short on a loaded machine).
        let durability = SledDurability {
            dir: path.to_path_buf(),
        };
        let mut attempts = 0;
        let db = loop {
            match sled::Config::new().path(path).open() {
                Ok(db) => break db,
                // sled reports a held lock as ErrorKind::Other with the OS error in the text.
                Err(sled::Error::Io(e))
                    if (e.kind() == std::io::ErrorKind::WouldBlock
                        || e.to_string().starts_with("could not acquire lock"))
                        && attempts < 200 =>
                {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(e) => {
                    return Err(Error::Storage(format!(
                        "cannot open registry {} (is another central-server using it?): {e}",
                        path.display()
                    )));
                }
            }
        };
        match db.get("instance")? {
            Some(v) if v.as_ref() != instance.as_bytes() => {
                return Err(Error::Config(format!(
                    "registry {} belongs to instance {}, not {instance}",
                    path.display(),
                    String::from_utf8_lossy(&v)
                )));
            }
            Some(_) => {}
            None => {
                db.insert("instance", instance.as_bytes())?;
                durability.flush(&db)?;
            }
        }
        let trees = TREES
            .iter()
            .map(|n| db.open_tree(n))
            .collect::<Result<Vec<_>, _>>()?;
        let mut view: View = Vec::with_capacity(trees.len());
        for t in &trees {
            let mut m = BTreeMap::new();
            for kv in t.iter() {
                let (k, v) = kv?;
                m.insert(String::from_utf8_lossy(&k).into_owned(), v.to_vec());
            }
            view.push(m);
        }
        let state = RegistryState::from_view(&view)?;
        let audit = AuditLog::new(db.open_tree("audit")?, durability.clone());
        Ok(Self {
            db,
            trees,
            state: Mutex::new(state),
            audit,
            durability,
            instance: instance.to_owned(),
        })
    }

    /// The instance identifier.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The admin audit trail.
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// A copy of the current state.
    pub fn snapshot(&self) -> RegistryState {
        self.lock().clone()
    }

    /// Reads the current state without copying it (keep `f` short: it holds the lock).
    pub fn read<T>(&self, f: impl FnOnce(&RegistryState) -> T) -> T {
        f(&self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RegistryState> {
        // A panic while holding the lock cannot leave a half-applied change (changes are made
        // on a copy), so a poisoned lock still guards a consistent state.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies `f` to a copy of the state; if it succeeds and changed anything, bumps the
    /// revision, commits the changed records in one transaction and flushes. Returns `f`'s
    /// value and whether anything changed. If `f` fails nothing is written.
    pub fn mutate<T>(
        &self,
        f: impl FnOnce(&mut RegistryState) -> Result<T, Error>,
    ) -> Result<(T, bool), Error> {
        let mut guard = self.lock();
        let mut next = guard.clone();
        let out = f(&mut next)?;
        next.revision = guard.revision;
        if next == *guard {
            return Ok((out, false));
        }
        next.revision = guard.revision + 1;
        let old_view = guard.to_view()?;
        let new_view = next.to_view()?;
        let mut ops: Vec<Vec<(String, Option<Vec<u8>>)>> = Vec::with_capacity(TREES.len());
        for (old, new) in old_view.iter().zip(&new_view) {
            let mut tree_ops = Vec::new();
            for (k, v) in new {
                if old.get(k) != Some(v) {
                    tree_ops.push((k.clone(), Some(v.clone())));
                }
            }
            for k in old.keys() {
                if !new.contains_key(k) {
                    tree_ops.push((k.clone(), None));
                }
            }
            ops.push(tree_ops);
        }
        use sled::Transactional;
        let trees: &[sled::Tree] = &self.trees;
        trees
            .transaction(|tx| {
                for (t, tree_ops) in tx.iter().zip(&ops) {
                    for (k, v) in tree_ops {
                        match v {
                            Some(v) => {
                                t.insert(k.as_bytes(), v.as_slice())?;
                            }
                            None => {
                                t.remove(k.as_bytes())?;
                            }
                        }
                    }
                }
                Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|e| Error::Storage(format!("transaction failed: {e:?}")))?;
        self.durability.flush(&self.db)?;
        *guard = next;
        Ok((out, true))
    }

    /// Reads a meta value (outside the registry state), such as the last published version.
    pub fn meta_u64(&self, key: &str) -> Result<Option<u64>, Error> {
        Ok(self.db.get(key)?.and_then(|v| {
            let b: [u8; 8] = v.as_ref().try_into().ok()?;
            Some(u64::from_be_bytes(b))
        }))
    }

    /// Writes a meta value and flushes.
    pub fn set_meta_u64(&self, key: &str, value: u64) -> Result<(), Error> {
        self.db.insert(key, &value.to_be_bytes())?;
        self.durability.flush(&self.db)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MemberClass;

    #[test]
    fn mutate_persists_and_failed_mutation_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        {
            let r = Registry::open(dir.path(), "DEV").unwrap();
            let ((), changed) = r
                .mutate(|s| {
                    s.member_classes.insert(
                        "GOV".into(),
                        MemberClass {
                            code: "GOV".into(),
                            description: "Government".into(),
                        },
                    );
                    Ok(())
                })
                .unwrap();
            assert!(changed);
            let err = r.mutate(|s| {
                s.member_classes.clear();
                Err::<(), _>(Error::BadRequest("no".into()))
            });
            assert!(err.is_err());
            let ((), changed) = r.mutate(|_| Ok(())).unwrap();
            assert!(!changed);
            assert_eq!(r.snapshot().revision, 1);
        }
        let r = Registry::open(dir.path(), "DEV").unwrap();
        assert_eq!(r.snapshot().member_classes.len(), 1);
        assert_eq!(r.snapshot().revision, 1);
        drop(r);
        assert!(Registry::open(dir.path(), "OTHER").is_err());
    }
}
