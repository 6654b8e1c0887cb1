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
    /// The key token.
    #[serde(default)]
    pub keys: KeysConfig,
}

/// `[keys]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysConfig {
    /// Name of the environment variable holding the key token PIN.
    #[serde(default = "d_pin_env")]
    pub pin_env: String,
    /// PBKDF2 iterations for keys created from now on (existing keys keep theirs).
    #[serde(default = "d_iterations")]
    pub pbkdf2_iterations: u32,
}

fn d_pin_env() -> String {
    crate::keys::DEFAULT_PIN_ENV.into()
}
fn d_iterations() -> u32 {
    trustbus_pki::token::DEFAULT_ITERATIONS
}

impl Default for KeysConfig {
    fn default() -> Self {
        Self {
            pin_env: d_pin_env(),
            pbkdf2_iterations: d_iterations(),
        }
    }
}

/// `Some((cert, key))` when HTTPS is configured for `section`; an error when only one of the
/// two files is set.
pub fn https_pair<'a>(
    section: &str,
    cert: &'a Option<PathBuf>,
    key: &'a Option<PathBuf>,
) -> Result<Option<(&'a Path, &'a Path)>, Error> {
    match (cert, key) {
        (Some(c), Some(k)) => Ok(Some((c, k))),
        (None, None) => Ok(None),
        _ => Err(Error::Config(format!(
            "[{section}] needs both tls_cert_file and tls_key_file, or neither"
        ))),
    }
}

/// Whether a listen address (`IP:PORT` or `localhost:PORT`) is on loopback.
pub fn is_loopback(listen: &str) -> bool {
    if let Ok(addr) = listen.parse::<std::net::SocketAddr>() {
        return addr.ip().is_loopback();
    }
    listen
        .rsplit_once(':')
        .is_some_and(|(host, _)| host.eq_ignore_ascii_case("localhost"))
}

fn resolve(base: &Path, paths: [&mut Option<PathBuf>; 2]) {
    for p in paths.into_iter().flatten() {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    }
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
    /// HTTPS certificate chain (PEM); HTTPS is off unless both files are set.
    #[serde(default)]
    pub tls_cert_file: Option<PathBuf>,
    /// HTTPS private key (PEM PKCS#8, unencrypted; keep it mode 0600).
    #[serde(default)]
    pub tls_key_file: Option<PathBuf>,
}

/// `[admin]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Listen address of the admin REST API.
    #[serde(default = "d_admin_listen")]
    pub listen: String,
    /// HTTPS certificate chain (PEM); HTTPS is off unless both files are set.
    #[serde(default)]
    pub tls_cert_file: Option<PathBuf>,
    /// HTTPS private key (PEM PKCS#8, unencrypted; keep it mode 0600).
    #[serde(default)]
    pub tls_key_file: Option<PathBuf>,
    /// Allow plain HTTP on an address other than loopback (API keys would cross the network
    /// in clear; only for a TLS-terminating proxy on a private link).
    #[serde(default)]
    pub plain_http_off_loopback: bool,
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

/// Smallest accepted `pbkdf2_iterations` (tests use it; production keeps the default).
pub const MIN_ITERATIONS: u32 = 1000;

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
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: d_admin_listen(),
            tls_cert_file: None,
            tls_key_file: None,
            plain_http_off_loopback: false,
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
        let base = path.parent().unwrap_or(Path::new("."));
        if c.data_dir.is_relative() {
            c.data_dir = base.join(&c.data_dir);
        }
        resolve(
            base,
            [&mut c.admin.tls_cert_file, &mut c.admin.tls_key_file],
        );
        resolve(
            base,
            [
                &mut c.globalconf.tls_cert_file,
                &mut c.globalconf.tls_key_file,
            ],
        );
        let admin_https = https_pair("admin", &c.admin.tls_cert_file, &c.admin.tls_key_file)?;
        if admin_https.is_none()
            && !c.admin.plain_http_off_loopback
            && !is_loopback(&c.admin.listen)
        {
            return Err(Error::Config(format!(
                "[admin] listen = {:?} is not a loopback address: configure tls_cert_file and \
                 tls_key_file, or set plain_http_off_loopback = true",
                c.admin.listen
            )));
        }
        https_pair(
            "globalconf",
            &c.globalconf.tls_cert_file,
            &c.globalconf.tls_key_file,
        )?;
        if c.keys.pin_env.trim().is_empty() {
            return Err(Error::Config("[keys] pin_env must name a variable".into()));
        }
        if c.keys.pbkdf2_iterations < MIN_ITERATIONS
            || c.keys.pbkdf2_iterations > trustbus_pki::token::MAX_ITERATIONS
        {
            return Err(Error::Config(format!(
                "[keys] pbkdf2_iterations must be between {MIN_ITERATIONS} and {}",
                trustbus_pki::token::MAX_ITERATIONS
            )));
        }
        Ok(c)
    }

    /// The anchor's download URLs.
    pub fn download_urls(&self) -> Vec<String> {
        if self.globalconf.public_urls.is_empty() {
            let scheme = if self.globalconf.tls_cert_file.is_some() {
                "https"
            } else {
                "http"
            };
            vec![format!("{scheme}://{}/globalconf", self.globalconf.listen)]
        } else {
            self.globalconf.public_urls.clone()
        }
    }

    /// The management service address published in private parameters.
    pub fn management_address(&self) -> String {
        self.management
            .public_address
            .clone()
            .unwrap_or_else(|| format!("https://{}/managementservice/v1", self.management.listen))
    }

    /// Registry database path.
    pub fn registry_path(&self) -> PathBuf {
        self.data_dir.join("registry")
    }

    /// Key directory.
    pub fn keys_path(&self) -> PathBuf {
        self.data_dir.join("keys")
    }

    /// Opens the key token with the PIN from the configured environment variable.
    pub fn key_store(&self) -> Result<crate::keys::KeyStore, Error> {
        let iterations = std::num::NonZeroU32::new(self.keys.pbkdf2_iterations)
            .ok_or_else(|| Error::Config("[keys] pbkdf2_iterations must be positive".into()))?;
        crate::keys::KeyStore::open_env(&self.keys_path(), &self.keys.pin_env, iterations)
    }

    /// Publishing root.
    pub fn publish_path(&self) -> PathBuf {
        self.data_dir.join("globalconf")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, Error> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, text).unwrap();
        Config::load(&p)
    }

    #[test]
    fn defaults_and_admin_transport_rules() {
        let c = load("instance = \"DEV\"\ndata_dir = \"d\"\n").unwrap();
        assert_eq!(c.keys.pin_env, "TRUSTBUS_CENTRAL_PIN");
        assert_eq!(c.keys.pbkdf2_iterations, 310_000);
        assert_eq!(
            c.management_address(),
            "https://127.0.0.1:4001/managementservice/v1"
        );
        assert_eq!(c.download_urls(), vec!["http://127.0.0.1:8080/globalconf"]);
        for ok in ["127.0.0.1:1", "[::1]:1", "localhost:1"] {
            assert!(is_loopback(ok), "{ok}");
        }
        let off = "instance = \"DEV\"\ndata_dir = \"d\"\n[admin]\nlisten = \"0.0.0.0:4000\"\n";
        assert!(matches!(load(off), Err(Error::Config(m)) if m.contains("loopback")));
        assert!(load(&format!("{off}plain_http_off_loopback = true\n")).is_ok());
        assert!(load(&format!("{off}tls_cert_file = \"c.pem\"\n")).is_err());
        let https = load(&format!(
            "{off}tls_cert_file = \"c.pem\"\ntls_key_file = \"k.pem\"\n[globalconf]\n\
             tls_cert_file = \"c.pem\"\ntls_key_file = \"k.pem\"\n"
        ))
        .unwrap();
        assert_eq!(
            https.download_urls(),
            vec!["https://127.0.0.1:8080/globalconf"]
        );
        assert!(https.admin.tls_cert_file.unwrap().is_absolute());
        let bad_iter = "instance = \"DEV\"\ndata_dir = \"d\"\n[keys]\npbkdf2_iterations = 10\n";
        assert!(load(bad_iter).is_err());
        assert!(load("instance = \"DEV\"\ndata_dir = \"d\"\n[keys]\nunknown = 1\n").is_err());
    }
}
