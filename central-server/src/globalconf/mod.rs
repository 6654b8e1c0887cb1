//! Global configuration: generation from the registry, signing, publishing and re-signing.
//!
//! A configuration version is a set of immutable files (`shared-params.json`,
//! `private-params.json`) plus a directory document listing each file's size and SHA-256, and a
//! detached CMS signature over the directory's exact bytes. See `docs/globalconf.md`.

pub mod cms_signing;
pub mod publish;
pub mod signing;

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::Error;
use crate::keys::KeyStore;
use crate::model::{FORMAT_VERSION, ManagementService, PrivateParams, SharedParams};
use crate::registry::{Registry, RegistryState};
use crate::util;

pub use publish::{Published, Publisher};
pub use signing::{DirectorySignatureError, DirectorySigner, DirectoryVerifier};

/// File name of the shared parameters.
pub const SHARED_PARAMS: &str = "shared-params.json";
/// File name of the private parameters.
pub const PRIVATE_PARAMS: &str = "private-params.json";

/// One entry of the directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryFile {
    /// File name (downloaded from `/globalconf/v{version}/{name}`).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Lower-case hex SHA-256 of the file.
    pub sha256: String,
}

/// The directory document (`GET /globalconf/directory`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Directory {
    /// Format version.
    pub format_version: u32,
    /// Instance identifier.
    pub instance: String,
    /// Monotonic configuration version.
    pub version: u64,
    /// When this version was generated (RFC 3339 UTC).
    pub generated_at: String,
    /// After this instant (RFC 3339 UTC) the configuration must not be used.
    pub expires_at: String,
    /// The files of this version.
    pub files: Vec<DirectoryFile>,
}

/// A generated, signed configuration version, ready to publish.
#[derive(Debug, Clone)]
pub struct Generated {
    /// The directory as published (exact bytes).
    pub directory_bytes: Vec<u8>,
    /// The parsed directory.
    pub directory: Directory,
    /// Detached CMS signature over `directory_bytes`.
    pub signature: Vec<u8>,
    /// `(name, bytes)` of every file.
    pub files: Vec<(String, Vec<u8>)>,
}

/// Builds the shared parameters from a registry state.
pub fn shared_params(
    state: &RegistryState,
    instance: &str,
    signing_certs: &[Vec<u8>],
) -> SharedParams {
    SharedParams {
        format_version: FORMAT_VERSION,
        instance: instance.to_owned(),
        member_classes: state.member_classes.values().cloned().collect(),
        members: state.members.values().cloned().collect(),
        security_servers: state.servers.values().cloned().collect(),
        global_groups: state.groups.values().cloned().collect(),
        approved_cas: state.cas.values().cloned().collect(),
        approved_tsas: state.tsas.values().cloned().collect(),
        trusted_oidc_issuers: state.issuers.values().cloned().collect(),
        settings: state.settings,
        configuration_signing_certs: signing_certs.iter().map(|c| util::b64(c)).collect(),
    }
}

/// Serialises a parameter document deterministically (declaration order, sorted maps, 2-space
/// indentation, trailing newline).
pub fn to_canonical_json<T: Serialize>(v: &T) -> Result<Vec<u8>, Error> {
    let mut out = serde_json::to_vec_pretty(v)?;
    out.push(b'\n');
    Ok(out)
}

/// Builds and signs configuration `version` from `files`.
pub fn build(
    instance: &str,
    version: u64,
    generated_at: OffsetDateTime,
    validity_seconds: u64,
    files: Vec<(String, Vec<u8>)>,
    signer: &dyn DirectorySigner,
) -> Result<Generated, Error> {
    let expires_at = generated_at
        + time::Duration::seconds(i64::try_from(validity_seconds).unwrap_or(i64::MAX / 2));
    let directory = Directory {
        format_version: FORMAT_VERSION,
        instance: instance.to_owned(),
        version,
        generated_at: util::rfc3339(generated_at),
        expires_at: util::rfc3339(expires_at),
        files: files
            .iter()
            .map(|(name, bytes)| DirectoryFile {
                name: name.clone(),
                size: bytes.len() as u64,
                sha256: util::sha256_hex(bytes),
            })
            .collect(),
    };
    let directory_bytes = to_canonical_json(&directory)?;
    let signature = signer
        .sign(&directory_bytes)
        .map_err(|e| Error::Crypto(e.to_string()))?;
    Ok(Generated {
        directory_bytes,
        directory,
        signature,
        files,
    })
}

/// Generates, signs and publishes global configuration from the registry.
pub struct GlobalConf {
    registry: Arc<Registry>,
    keys: KeyStore,
    publisher: Publisher,
    management: ManagementService,
    auto_approved: Vec<String>,
    /// Serialises generation so versions are numbered without gaps or races.
    lock: Mutex<()>,
}

impl GlobalConf {
    /// Wires the generator. `auto_approved` is published in private parameters.
    pub fn new(
        registry: Arc<Registry>,
        keys: KeyStore,
        publisher: Publisher,
        management: ManagementService,
        auto_approved: Vec<String>,
    ) -> Self {
        Self {
            registry,
            keys,
            publisher,
            management,
            auto_approved,
            lock: Mutex::new(()),
        }
    }

    /// The publisher (serving side).
    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    /// The key store.
    pub fn keys(&self) -> &KeyStore {
        &self.keys
    }

    /// The certificates currently announced: active first, then next.
    pub fn signing_certs(&self, state: &RegistryState) -> Result<Vec<Vec<u8>>, Error> {
        let mut certs = vec![self.keys.certificate(state.signing.active)?];
        if let Some(n) = state.signing.next {
            certs.push(self.keys.certificate(n)?);
        }
        Ok(certs)
    }

    /// The files a version generated now would contain.
    fn files(&self, state: &RegistryState) -> Result<Vec<(String, Vec<u8>)>, Error> {
        let instance = self.registry.instance();
        let certs = self.signing_certs(state)?;
        let shared = shared_params(state, instance, &certs);
        let private = PrivateParams {
            format_version: FORMAT_VERSION,
            instance: instance.to_owned(),
            management_service: self.management.clone(),
            auto_approved_requests: self.auto_approved.clone(),
        };
        Ok(vec![
            (PRIVATE_PARAMS.to_owned(), to_canonical_json(&private)?),
            (SHARED_PARAMS.to_owned(), to_canonical_json(&shared)?),
        ])
    }

    /// Generates and publishes a new version now; returns it.
    pub fn regenerate(&self) -> Result<Arc<Published>, Error> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let state = self.registry.snapshot();
        self.regenerate_locked(&state, self.files(&state)?)
    }

    fn regenerate_locked(
        &self,
        state: &RegistryState,
        files: Vec<(String, Vec<u8>)>,
    ) -> Result<Arc<Published>, Error> {
        let instance = self.registry.instance();
        let last = self
            .registry
            .meta_u64("conf_version")?
            .unwrap_or(0)
            .max(self.publisher.latest_version());
        let version = last + 1;
        let signer = self.keys.load_signer(state.signing.active)?;
        let generated = build(
            instance,
            version,
            util::now(),
            state.settings.configuration_validity_seconds,
            files,
            &signer,
        )?;
        let published = self.publisher.publish(&generated)?;
        self.registry.set_meta_u64("conf_version", version)?;
        crate::metrics::with(|m| {
            m.globalconf_version
                .set(i64::try_from(version).unwrap_or(i64::MAX));
            m.globalconf_generations.inc();
        });
        tracing::info!(
            version,
            revision = state.revision,
            "published global configuration"
        );
        Ok(published)
    }

    /// Publishes a new version if the generated files differ from the current version's, or
    /// if the current version has used up half of its validity (re-signing before expiry).
    /// Returns the version now current.
    pub fn refresh(&self) -> Result<Arc<Published>, Error> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let state = self.registry.snapshot();
        let files = self.files(&state)?;
        if let Some(cur) = self.publisher.current() {
            let same = cur.parsed.files.len() == files.len()
                && cur
                    .parsed
                    .files
                    .iter()
                    .zip(&files)
                    .all(|(f, (name, bytes))| {
                        &f.name == name
                            && f.size == bytes.len() as u64
                            && f.sha256 == util::sha256_hex(bytes)
                    });
            let half = (cur.expires_at - cur.generated_at) / 2;
            if same && util::now() < cur.generated_at + half {
                return Ok(cur);
            }
        }
        self.regenerate_locked(&state, files)
    }
}
