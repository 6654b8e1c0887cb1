//! Publishing configuration versions to disk and serving them.
//!
//! Layout under the publishing root: `v{N}/directory.json`, `v{N}/directory.p7s` and
//! `v{N}/{file}`. A version is written into `.tmp-v{N}` (every file `fsync`ed), renamed to
//! `v{N}`, and the root directory is `fsync`ed, so a crash leaves either the whole version or
//! none of it. The last `keep` versions stay downloadable.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use time::OffsetDateTime;

use super::{Directory, Generated};
use crate::Error;
use crate::util;

/// Directory document file name inside a version directory.
const DIRECTORY_FILE: &str = "directory.json";
/// Signature file name inside a version directory.
const SIGNATURE_FILE: &str = "directory.p7s";

/// The version currently served.
#[derive(Debug, Clone)]
pub struct Published {
    /// The version number.
    pub version: u64,
    /// Exact directory bytes.
    pub directory: bytes::Bytes,
    /// Detached signature bytes.
    pub signature: bytes::Bytes,
    /// Parsed directory.
    pub parsed: Directory,
    /// Generation time.
    pub generated_at: OffsetDateTime,
    /// Expiry time.
    pub expires_at: OffsetDateTime,
}

/// Writes a file and `fsync`s it and its parent directory, via a temporary name and rename.
pub fn write_file_durably(path: &Path, data: &[u8]) -> Result<(), Error> {
    let tmp = path.with_extension("tmp-write");
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    if let Some(parent) = path.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// `fsync`s a directory so that renames in it are durable.
pub fn sync_dir(dir: &Path) -> Result<(), Error> {
    fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// Whether `name` is a plain file name we may serve (no separators, no dot files).
pub fn is_safe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Publishes versions under a root directory.
pub struct Publisher {
    root: PathBuf,
    keep: usize,
    current: RwLock<Option<Arc<Published>>>,
}

fn load_version(dir: &Path, version: u64) -> Result<Published, Error> {
    let directory = fs::read(dir.join(DIRECTORY_FILE))?;
    let signature = fs::read(dir.join(SIGNATURE_FILE))?;
    let parsed: Directory = serde_json::from_slice(&directory)
        .map_err(|e| Error::Storage(format!("corrupt published directory v{version}: {e}")))?;
    let generated_at = util::parse_rfc3339(&parsed.generated_at)
        .ok_or_else(|| Error::Storage("bad generated_at".into()))?;
    let expires_at = util::parse_rfc3339(&parsed.expires_at)
        .ok_or_else(|| Error::Storage("bad expires_at".into()))?;
    Ok(Published {
        version,
        directory: directory.into(),
        signature: signature.into(),
        parsed,
        generated_at,
        expires_at,
    })
}

impl Publisher {
    /// Opens the publishing root, loading the newest complete version if any.
    pub fn open(root: &Path, keep: usize) -> Result<Self, Error> {
        fs::create_dir_all(root)?;
        let p = Self {
            root: root.to_path_buf(),
            keep: keep.max(1),
            current: RwLock::new(None),
        };
        if let Some(&v) = p.versions()?.last() {
            let published = load_version(&p.version_dir(v), v)?;
            *p.current.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(published));
        }
        Ok(p)
    }

    fn version_dir(&self, v: u64) -> PathBuf {
        self.root.join(format!("v{v}"))
    }

    /// Complete versions on disk, ascending.
    pub fn versions(&self) -> Result<Vec<u64>, Error> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.root)? {
            let e = e?;
            let name = e.file_name();
            if let Some(v) = name.to_str().and_then(|n| n.strip_prefix('v'))
                && let Ok(v) = v.parse::<u64>()
            {
                out.push(v);
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    /// The newest version number published (0 if none).
    pub fn latest_version(&self) -> u64 {
        self.current().map_or(0, |p| p.version)
    }

    /// The version currently served.
    pub fn current(&self) -> Option<Arc<Published>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Writes `g` durably, makes it current and prunes old versions.
    pub fn publish(&self, g: &Generated) -> Result<Arc<Published>, Error> {
        let v = g.directory.version;
        let tmp = self.root.join(format!(".tmp-v{v}"));
        if tmp.exists() {
            fs::remove_dir_all(&tmp)?;
        }
        fs::create_dir_all(&tmp)?;
        let write = |name: &str, data: &[u8]| -> Result<(), Error> {
            let mut f = fs::File::create(tmp.join(name))?;
            f.write_all(data)?;
            f.sync_all()?;
            Ok(())
        };
        for (name, bytes) in &g.files {
            if !is_safe_name(name) || name == DIRECTORY_FILE || name == SIGNATURE_FILE {
                return Err(Error::Internal(format!("unsafe file name {name}")));
            }
            write(name, bytes)?;
        }
        write(DIRECTORY_FILE, &g.directory_bytes)?;
        write(SIGNATURE_FILE, &g.signature)?;
        sync_dir(&tmp)?;
        let dest = self.version_dir(v);
        if dest.exists() {
            return Err(Error::Internal(format!("version {v} already published")));
        }
        fs::rename(&tmp, &dest)?;
        sync_dir(&self.root)?;
        let published = Arc::new(load_version(&dest, v)?);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(published.clone());
        let versions = self.versions()?;
        if versions.len() > self.keep {
            for old in &versions[..versions.len() - self.keep] {
                if let Err(e) = fs::remove_dir_all(self.version_dir(*old)) {
                    tracing::warn!(version = old, error = %e, "could not prune old version");
                }
            }
        }
        Ok(published)
    }

    /// The bytes of file `name` of `version`, if that version is still kept and lists it.
    pub fn file(&self, version: u64, name: &str) -> Option<Vec<u8>> {
        if !is_safe_name(name) {
            return None;
        }
        let dir = self.version_dir(version);
        let directory: Directory =
            serde_json::from_slice(&fs::read(dir.join(DIRECTORY_FILE)).ok()?).ok()?;
        if !directory.files.iter().any(|f| f.name == name) {
            return None;
        }
        fs::read(dir.join(name)).ok()
    }
}
