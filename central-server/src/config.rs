//! The server's TOML configuration (`configs/central-server.example.toml` documents every
//! option with its default).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::Error;
use crate::management::RequestType;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Instance identifier (`DEV`, `EE`, …).
    pub instance: String,
    /// Data directory (registry, keys, published configuration); relative paths are resolved
    /// against the configuration file's directory.
    pub data_dir: PathBuf,
    /// Global configuration publishing.
    #[serde(default)]
    pub globalconf: GlobalConfConfig,
    /// Admin API listener.
    #[serde(default)]
    pub admin: AdminConfig,
    /// Management service listener.
    #[serde(default)]
    pub management: ManagementConfig,
}

/// `[globalconf]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalConfConfig {
    /// Listen address for `/globalconf/*`, `/metrics`, `/healthz`.
    #[serde(default = "d_gc_listen")]
    pub listen: String,
    /// Download URLs written into the anchor (default: `http://{listen}/globalconf`).
    #[serde(default)]
    pub public_urls: Vec<String>,
    /// How many versions stay downloadable.
    #[serde(default = "d_keep")]
    pub keep_versions: usize,
    /// Suggested poll interval, seconds; also the `max-age` of the directory.
    #[serde(default = "d_refresh")]
    pub refresh_interval_seconds: u64,
    /// How often the background task checks whether to regenerate or re-sign, seconds.
    #[serde(default = "d_check")]
    pub check_interval_seconds: u64,
}

/// `[admin]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Listen address of the admin REST API.
    #[serde(default = "d_admin_listen")]
    pub listen: String,
}

/// `[management]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManagementConfig {
    /// Listen address of the management service.
    #[serde(default = "d_mgmt_listen")]
    pub listen: String,
    /// Address published in private parameters (default `http://{listen}/managementservice/v1`).
    #[serde(default)]
    pub public_address: Option<String>,
    /// Request types approved on receipt.
    #[serde(default)]
    pub auto_approve: BTreeSet<RequestType>,
    /// Largest accepted request body, bytes.
    #[serde(default = "d_max_body")]
    pub max_body_bytes: usize,
}

fn d_gc_listen() -> String {
    "127.0.0.1:8080".into()
}
fn d_admin_listen() -> String {
    "127.0.0.1:4000".into()
}
fn d_mgmt_listen() -> String {
    "127.0.0.1:4001".into()
}
fn d_keep() -> usize {
    10
}
fn d_refresh() -> u64 {
    60
}
fn d_check() -> u64 {
    5
}
fn d_max_body() -> usize {
    65536
}

impl Default for GlobalConfConfig {
    fn default() -> Self {
        Self {
            listen: d_gc_listen(),
            public_urls: Vec::new(),
            keep_versions: d_keep(),
            refresh_interval_seconds: d_refresh(),
            check_interval_seconds: d_check(),
        }
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: d_admin_listen(),
        }
    }
}

impl Default for ManagementConfig {
    fn default() -> Self {
        Self {
            listen: d_mgmt_listen(),
            public_address: None,
            auto_approve: BTreeSet::new(),
            max_body_bytes: d_max_body(),
        }
    }
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
        let mut c: Self =
            toml::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        trustbus_sdk::id::validate_segment("instance", &c.instance)
            .map_err(|e| Error::Config(e.to_string()))?;
        if c.data_dir.is_relative() {
            let base = path.parent().unwrap_or(Path::new("."));
            c.data_dir = base.join(&c.data_dir);
        }
        Ok(c)
    }

    /// The anchor's download URLs.
    pub fn download_urls(&self) -> Vec<String> {
        if self.globalconf.public_urls.is_empty() {
            vec![format!("http://{}/globalconf", self.globalconf.listen)]
        } else {
            self.globalconf.public_urls.clone()
        }
    }

    /// The management service address published in private parameters.
    pub fn management_address(&self) -> String {
        self.management
            .public_address
            .clone()
            .unwrap_or_else(|| format!("http://{}/managementservice/v1", self.management.listen))
    }

    /// Registry database path.
    pub fn registry_path(&self) -> PathBuf {
        self.data_dir.join("registry")
    }

    /// Key directory.
    pub fn keys_path(&self) -> PathBuf {
        self.data_dir.join("keys")
    }

    /// Publishing root.
    pub fn publish_path(&self) -> PathBuf {
        self.data_dir.join("globalconf")
    }
}
