//! The configuration client's on-disk copy: `v{N}/` directories and a `CURRENT` pointer file
//! replaced atomically (temporary file, `fsync`, rename, `fsync` of the directory).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::{ConfClientError, GlobalConfiguration, verify_directory, verify_files};
use crate::anchor::Anchor;
use crate::globalconf::DirectoryVerifier;
use crate::globalconf::publish::{is_safe_name, sync_dir, write_file_durably};

const CURRENT: &str = "CURRENT";
const DIRECTORY: &str = "directory.json";
const SIGNATURE: &str = "directory.p7s";

fn io(e: impl std::fmt::Display) -> ConfClientError {
    ConfClientError::Storage(e.to_string())
}

/// The local store.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// Opens (creates) the store directory.
    pub fn open(dir: &Path) -> Result<Self, ConfClientError> {
        fs::create_dir_all(dir).map_err(io)?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    /// Loads the last good copy, re-checking its signature (against the anchor's certificates
    /// and those it announces itself: the local disk is inside the trust boundary, this catches
    /// corruption) and every file hash. Expiry is not checked here.
    pub fn load(
        &self,
        anchor: &Anchor,
        verifier: &dyn DirectoryVerifier,
        anchor_certs: &[Vec<u8>],
    ) -> Result<Option<GlobalConfiguration>, ConfClientError> {
        let name = match fs::read_to_string(self.dir.join(CURRENT)) {
            Ok(n) => n.trim().to_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        if !is_safe_name(&name) {
            return Err(ConfClientError::Storage("bad CURRENT pointer".into()));
        }
        let vdir = self.dir.join(&name);
        let dir_bytes = fs::read(vdir.join(DIRECTORY)).map_err(io)?;
        let signature = fs::read(vdir.join(SIGNATURE)).map_err(io)?;
        let parsed: crate::globalconf::Directory = serde_json::from_slice(&dir_bytes)
            .map_err(|e| ConfClientError::Malformed(e.to_string()))?;
        let mut files = BTreeMap::new();
        for f in &parsed.files {
            if !is_safe_name(&f.name) {
                return Err(ConfClientError::Malformed("bad file name".into()));
            }
            files.insert(f.name.clone(), fs::read(vdir.join(&f.name)).map_err(io)?);
        }
        let mut trusted = anchor_certs.to_vec();
        if let Some(b) = files.get(crate::globalconf::SHARED_PARAMS)
            && let Ok(s) = serde_json::from_slice::<crate::model::SharedParams>(b)
        {
            trusted.extend(
                s.configuration_signing_certs
                    .iter()
                    .filter_map(|c| crate::util::unb64("cert", c).ok()),
            );
        }
        // Verify as of the generation time so that an expired copy still loads (and is then
        // refused by `current()`), rather than disappearing.
        let at = crate::util::parse_rfc3339(&parsed.generated_at)
            .ok_or_else(|| ConfClientError::Malformed("bad generated_at".into()))?;
        let (dir, expires_at) =
            verify_directory(anchor, &trusted, None, &dir_bytes, &signature, verifier, at)?;
        verify_files(anchor, dir, dir_bytes, signature, expires_at, files).map(Some)
    }

    /// Writes `conf` as `v{N}/` and points `CURRENT` at it; removes older copies except the
    /// previous one.
    pub fn save(&self, conf: &GlobalConfiguration) -> Result<(), ConfClientError> {
        let name = format!("v{}", conf.directory.version);
        let tmp = self.dir.join(format!(".tmp-{name}"));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(io)?;
        }
        fs::create_dir_all(&tmp).map_err(io)?;
        let write = |n: &str, b: &[u8]| -> Result<(), ConfClientError> {
            use std::io::Write;
            let mut f = fs::File::create(tmp.join(n)).map_err(io)?;
            f.write_all(b).map_err(io)?;
            f.sync_all().map_err(io)
        };
        for (n, b) in &conf.files {
            write(n, b)?;
        }
        write(DIRECTORY, &conf.directory_bytes)?;
        write(SIGNATURE, &conf.signature)?;
        sync_dir(&tmp).map_err(io)?;
        let dest = self.dir.join(&name);
        if dest.exists() {
            fs::remove_dir_all(&dest).map_err(io)?;
        }
        fs::rename(&tmp, &dest).map_err(io)?;
        sync_dir(&self.dir).map_err(io)?;
        let previous = fs::read_to_string(self.dir.join(CURRENT)).ok();
        write_file_durably(&self.dir.join(CURRENT), name.as_bytes()).map_err(io)?;
        // Keep the new copy and the one before it.
        if let Ok(entries) = fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                let keep = n == name
                    || n == CURRENT
                    || previous.as_deref().map(str::trim) == Some(n.as_str());
                if !keep && n.starts_with('v') {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
        Ok(())
    }
}
