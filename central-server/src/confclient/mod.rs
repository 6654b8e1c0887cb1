//! The configuration client: what a security server uses to obtain global configuration.
//!
//! It downloads the directory and its signature, verifies the signature with a certificate from
//! the anchor or from the last verified configuration's `configuration_signing_certs` (so a
//! signing-key rotation is followed without a new anchor), checks the instance, that the
//! version does not go backwards and that the configuration has not expired, downloads every
//! listed file and checks its size and SHA-256, then stores the version on disk atomically and
//! swaps it in. On start it loads the last good copy. [`ConfClient::current`] fails closed with
//! `Server.ClientProxy.OutdatedGlobalConf` once the copy has expired.
//!
//! The verification steps are plain functions over bytes ([`verify_directory`],
//! [`verify_files`]); [`ConfClient`] adds I/O through the [`Fetcher`] trait.

mod fetch;
mod store;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use time::OffsetDateTime;
use trustbus_sdk::fault::{ErrorKind, Fault, Origin};

use crate::anchor::Anchor;
use crate::globalconf::{
    Directory, DirectorySignatureError, DirectoryVerifier, PRIVATE_PARAMS, SHARED_PARAMS,
};
use crate::model::{PrivateParams, SharedParams};
use crate::util;

pub use fetch::{FetchResponse, Fetcher, HttpFetcher, MAX_BODY};
pub use store::Store;

/// Why a configuration was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfClientError {
    /// A file's size or SHA-256 differs from the signed directory.
    #[error("file {name} does not match the signed directory (tampered or corrupt)")]
    TamperedFile {
        /// The file.
        name: String,
    },
    /// The directory signature does not verify (the directory or signature was altered).
    #[error("directory signature does not verify: {0}")]
    TamperedDirectory(String),
    /// The directory is signed by a key that is neither in the anchor nor announced.
    #[error("directory is signed by an unknown key")]
    UnknownSigner,
    /// The configuration is for another instance.
    #[error("configuration is for instance {found}, expected {expected}")]
    InstanceMismatch {
        /// From the anchor.
        expected: String,
        /// From the directory or shared parameters.
        found: String,
    },
    /// The configuration's `expires_at` has passed.
    #[error("configuration expired at {expires_at}")]
    Expired {
        /// When it expired.
        expires_at: String,
    },
    /// The version is older than one already accepted.
    #[error("configuration version {offered} is older than the accepted version {accepted}")]
    VersionRollback {
        /// Version accepted earlier.
        accepted: u64,
        /// Version offered now.
        offered: u64,
    },
    /// The directory, signature or a file is not well-formed.
    #[error("malformed configuration: {0}")]
    Malformed(String),
    /// Every download URL failed.
    #[error("download failed: {0}")]
    Download(String),
    /// Local storage failed.
    #[error("local storage: {0}")]
    Storage(String),
}

/// A verified configuration version.
#[derive(Debug, Clone)]
pub struct GlobalConfiguration {
    /// The directory.
    pub directory: Directory,
    /// Exact directory bytes.
    pub directory_bytes: Vec<u8>,
    /// Signature bytes.
    pub signature: Vec<u8>,
    /// Expiry.
    pub expires_at: OffsetDateTime,
    /// Shared parameters.
    pub shared: SharedParams,
    /// Private parameters, if the directory lists them.
    pub private: Option<PrivateParams>,
    /// Raw files by name.
    pub files: BTreeMap<String, Vec<u8>>,
}

impl GlobalConfiguration {
    /// The configuration-signing certificates it announces (DER).
    pub fn announced_certs(&self) -> Vec<Vec<u8>> {
        self.shared
            .configuration_signing_certs
            .iter()
            .filter_map(|c| util::unb64("cert", c).ok())
            .collect()
    }

    /// Whether it has expired at `now`.
    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        now >= self.expires_at
    }
}

/// Checks the directory signature, instance, version and expiry. `trusted` is the anchor's
/// certificates plus those announced by the last accepted configuration.
pub fn verify_directory(
    anchor: &Anchor,
    trusted: &[Vec<u8>],
    accepted_version: Option<u64>,
    directory_bytes: &[u8],
    signature: &[u8],
    verifier: &dyn DirectoryVerifier,
    now: OffsetDateTime,
) -> Result<(Directory, OffsetDateTime), ConfClientError> {
    verifier
        .verify(directory_bytes, signature, trusted)
        .map_err(|e| match e {
            DirectorySignatureError::UnknownSigner => ConfClientError::UnknownSigner,
            other => ConfClientError::TamperedDirectory(other.to_string()),
        })?;
    let dir: Directory = serde_json::from_slice(directory_bytes)
        .map_err(|e| ConfClientError::Malformed(format!("directory: {e}")))?;
    if dir.instance != anchor.instance {
        return Err(ConfClientError::InstanceMismatch {
            expected: anchor.instance.clone(),
            found: dir.instance,
        });
    }
    if let Some(accepted) = accepted_version
        && dir.version < accepted
    {
        return Err(ConfClientError::VersionRollback {
            accepted,
            offered: dir.version,
        });
    }
    let expires_at = util::parse_rfc3339(&dir.expires_at)
        .ok_or_else(|| ConfClientError::Malformed("directory: bad expires_at".into()))?;
    if now >= expires_at {
        return Err(ConfClientError::Expired {
            expires_at: dir.expires_at,
        });
    }
    Ok((dir, expires_at))
}

/// Checks every file against the directory and parses the parameters.
pub fn verify_files(
    anchor: &Anchor,
    directory: Directory,
    directory_bytes: Vec<u8>,
    signature: Vec<u8>,
    expires_at: OffsetDateTime,
    files: BTreeMap<String, Vec<u8>>,
) -> Result<GlobalConfiguration, ConfClientError> {
    for f in &directory.files {
        let ok = files
            .get(&f.name)
            .is_some_and(|b| b.len() as u64 == f.size && util::sha256_hex(b) == f.sha256);
        if !ok {
            return Err(ConfClientError::TamperedFile {
                name: f.name.clone(),
            });
        }
    }
    let shared_bytes = files
        .get(SHARED_PARAMS)
        .ok_or_else(|| ConfClientError::Malformed(format!("{SHARED_PARAMS} is not listed")))?;
    let shared: SharedParams = serde_json::from_slice(shared_bytes)
        .map_err(|e| ConfClientError::Malformed(format!("{SHARED_PARAMS}: {e}")))?;
    if shared.instance != anchor.instance {
        return Err(ConfClientError::InstanceMismatch {
            expected: anchor.instance.clone(),
            found: shared.instance,
        });
    }
    let private = files
        .get(PRIVATE_PARAMS)
        .map(|b| serde_json::from_slice::<PrivateParams>(b))
        .transpose()
        .map_err(|e| ConfClientError::Malformed(format!("{PRIVATE_PARAMS}: {e}")))?;
    Ok(GlobalConfiguration {
        directory,
        directory_bytes,
        signature,
        expires_at,
        shared,
        private,
        files,
    })
}

/// What a poll did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollOutcome {
    /// A new version was verified and swapped in.
    Updated(u64),
    /// The server's directory is the one we have (304, or same version).
    Unchanged(u64),
}

/// The configuration client.
pub struct ConfClient<F> {
    anchor: Anchor,
    anchor_certs: Vec<Vec<u8>>,
    store: Store,
    fetcher: F,
    verifier: Box<dyn DirectoryVerifier>,
    current: RwLock<Option<Arc<GlobalConfiguration>>>,
    etag: Mutex<Option<String>>,
}

impl<F: Fetcher> ConfClient<F> {
    /// Creates a client storing configuration under `store_dir`, and loads the last good copy
    /// from there if one exists (even an expired one: [`Self::current`] refuses to hand it out).
    pub fn new(
        anchor: Anchor,
        store_dir: &std::path::Path,
        fetcher: F,
        verifier: Box<dyn DirectoryVerifier>,
    ) -> Result<Self, ConfClientError> {
        let anchor_certs = anchor
            .certs()
            .map_err(|e| ConfClientError::Malformed(format!("anchor: {e}")))?;
        let store = Store::open(store_dir)?;
        let client = Self {
            anchor,
            anchor_certs,
            store,
            fetcher,
            verifier,
            current: RwLock::new(None),
            etag: Mutex::new(None),
        };
        match client.store.load(
            &client.anchor,
            client.verifier.as_ref(),
            &client.anchor_certs,
        ) {
            Ok(Some(conf)) => {
                *client.current.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(conf));
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "ignoring the stored configuration"),
        }
        Ok(client)
    }

    /// The current configuration, or an `OutdatedGlobalConf` fault if there is none or it has
    /// expired.
    pub fn current(&self) -> Result<Arc<GlobalConfiguration>, Fault> {
        self.current_at(util::now())
    }

    /// [`Self::current`] at a given time (for tests and diagnostics).
    pub fn current_at(&self, now: OffsetDateTime) -> Result<Arc<GlobalConfiguration>, Fault> {
        let cur = self
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match cur {
            None => Err(Fault::of(
                Origin::ClientProxy,
                ErrorKind::OutdatedGlobalConf,
                "no global configuration has been downloaded yet",
            )),
            Some(c) if c.is_expired(now) => Err(Fault::of(
                Origin::ClientProxy,
                ErrorKind::OutdatedGlobalConf,
                format!(
                    "global configuration version {} expired at {}",
                    c.directory.version, c.directory.expires_at
                ),
            )),
            Some(c) => Ok(c),
        }
    }

    /// The version held, expired or not.
    pub fn held_version(&self) -> Option<u64> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|c| c.directory.version)
    }

    /// Downloads and verifies once, trying each anchor URL in turn.
    pub async fn poll(&self) -> Result<PollOutcome, ConfClientError> {
        let mut last_err = ConfClientError::Download("no download URL".into());
        for base in &self.anchor.download_urls {
            match self.poll_source(base.trim_end_matches('/')).await {
                Ok(o) => return Ok(o),
                Err(e @ ConfClientError::Download(_)) => last_err = e,
                Err(e) => return Err(e),
            }
        }
        Err(last_err)
    }

    async fn get(&self, url: &str, etag: Option<&str>) -> Result<FetchResponse, ConfClientError> {
        self.fetcher
            .get(url, etag)
            .await
            .map_err(|e| ConfClientError::Download(format!("{url}: {e}")))
    }

    /// An unconditional GET: the body and its `ETag` (a 304 is an error).
    async fn get_fresh(&self, url: &str) -> Result<(Vec<u8>, Option<String>), ConfClientError> {
        match self.get(url, None).await? {
            FetchResponse::Ok { body, etag } => Ok((body, etag)),
            FetchResponse::NotModified => {
                Err(ConfClientError::Download(format!("{url}: unexpected 304")))
            }
        }
    }

    async fn get_body(&self, url: &str) -> Result<Vec<u8>, ConfClientError> {
        Ok(self.get_fresh(url).await?.0)
    }

    async fn poll_source(&self, base: &str) -> Result<PollOutcome, ConfClientError> {
        /// How often a directory whose signature does not match is fetched again.
        const DIRECTORY_REFETCHES: u32 = 2;
        let held = self
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let etag = self.etag.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let (dir_url, sig_url) = (format!("{base}/directory"), format!("{base}/directory.p7s"));
        let (mut dir_bytes, mut new_etag) = match (
            self.get(&dir_url, etag.as_deref().filter(|_| held.is_some()))
                .await?,
            &held,
        ) {
            (FetchResponse::NotModified, Some(h)) => {
                return Ok(PollOutcome::Unchanged(h.directory.version));
            }
            (FetchResponse::NotModified, None) => {
                return Err(ConfClientError::Download("unexpected 304".into()));
            }
            (FetchResponse::Ok { body, etag }, _) => (body, etag),
        };
        if let Some(h) = &held
            && h.directory_bytes == dir_bytes
        {
            *self.etag.lock().unwrap_or_else(|e| e.into_inner()) = new_etag;
            return Ok(PollOutcome::Unchanged(h.directory.version));
        }
        let mut trusted = self.anchor_certs.clone();
        if let Some(h) = &held {
            trusted.extend(h.announced_certs());
        }
        // The directory and its signature are two downloads: a version published between them
        // pairs one version's directory with the next one's signature. Both are fetched again
        // (a few times) before the pair counts as tampered.
        let mut refetches = 0;
        let (dir, expires_at, signature) = loop {
            let signature = self.get_body(&sig_url).await?;
            match verify_directory(
                &self.anchor,
                &trusted,
                held.as_ref().map(|h| h.directory.version),
                &dir_bytes,
                &signature,
                self.verifier.as_ref(),
                util::now(),
            ) {
                Ok((dir, expires_at)) => break (dir, expires_at, signature),
                Err(ConfClientError::TamperedDirectory(e)) if refetches < DIRECTORY_REFETCHES => {
                    refetches += 1;
                    tracing::debug!(error = %e, refetches, "directory and signature differ; fetching both again");
                    (dir_bytes, new_etag) = self.get_fresh(&dir_url).await?;
                }
                Err(e) => return Err(e),
            }
        };
        let mut files = BTreeMap::new();
        for f in &dir.files {
            if !crate::globalconf::publish::is_safe_name(&f.name) {
                return Err(ConfClientError::Malformed(format!(
                    "bad file name {}",
                    f.name
                )));
            }
            let body = self
                .get_body(&format!("{base}/v{}/{}", dir.version, f.name))
                .await?;
            files.insert(f.name.clone(), body);
        }
        let version = dir.version;
        let conf = verify_files(&self.anchor, dir, dir_bytes, signature, expires_at, files)?;
        self.store.save(&conf)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(conf));
        *self.etag.lock().unwrap_or_else(|e| e.into_inner()) = new_etag;
        tracing::info!(version, "accepted global configuration");
        Ok(PollOutcome::Updated(version))
    }

    /// Polls forever: every `interval` after success, with exponential back-off (capped at
    /// eight intervals) after failures, so a flapping network does not hammer the server.
    pub async fn run(self: Arc<Self>, interval: Duration) {
        let mut delay = interval;
        loop {
            match self.poll().await {
                Ok(_) => delay = interval,
                Err(e) => {
                    tracing::warn!(error = %e, "global configuration download failed");
                    delay = (delay * 2).min(interval * 8);
                }
            }
            tokio::time::sleep(delay).await;
        }
    }
}

#[cfg(test)]
mod tests;
