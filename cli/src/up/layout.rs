//! The instance directory: where each part keeps its state, the loopback ports chosen on the
//! first run, and the generated secrets. Both are kept in `DIR/state.json` (mode 0600) so a
//! second run reuses the same addresses, keys and identifiers.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use super::UpError;

/// Format marker of `state.json`.
const STATE_FORMAT: &str = "trustbus-up-state/1";

/// Paths inside the instance directory.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    /// The instance directory.
    pub(crate) dir: PathBuf,
}

impl Layout {
    /// The layout rooted at `dir` (made absolute, so printed paths work from anywhere).
    pub(crate) fn new(dir: &Path) -> Result<Self, UpError> {
        std::fs::create_dir_all(dir).map_err(UpError::io(dir))?;
        let dir = std::fs::canonicalize(dir).map_err(UpError::io(dir))?;
        Ok(Self { dir })
    }

    /// `state.json`: ports and secrets.
    pub(crate) fn state_file(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    /// The development CA directory.
    pub(crate) fn pki(&self) -> PathBuf {
        self.dir.join("pki")
    }

    /// The central server's directory.
    pub(crate) fn central(&self) -> PathBuf {
        self.dir.join("central")
    }

    /// The central server's configuration file.
    pub(crate) fn central_config(&self) -> PathBuf {
        self.central().join("central-server.toml")
    }

    /// The configuration anchor every security server is initialised with.
    pub(crate) fn anchor(&self) -> PathBuf {
        self.central().join("anchor.json")
    }

    /// A security server's directory.
    pub(crate) fn security_server(&self, code: &str) -> PathBuf {
        self.dir.join(code)
    }

    /// Log files of the child processes.
    pub(crate) fn logs(&self) -> PathBuf {
        self.dir.join("logs")
    }

    /// The OpenID provider's signing key (PKCS#8, 0600).
    pub(crate) fn oidc_key(&self) -> PathBuf {
        self.dir.join("oidc").join("signing-key.p8")
    }

    /// The example SOAP request that the printed curl command posts.
    pub(crate) fn soap_request(&self) -> PathBuf {
        self.dir.join("examples").join("get-person.xml")
    }

    /// `endpoints.json`.
    pub(crate) fn endpoints(&self) -> PathBuf {
        self.dir.join("endpoints.json")
    }

    /// `Authorization: Bearer <auditor key>` for `curl -H @FILE` (0600), so the printed
    /// command works without showing the key.
    pub(crate) fn auditor_header(&self) -> PathBuf {
        self.dir.join("auditor-api.header")
    }

    /// The verification configuration downloaded through the auditor API (for
    /// `trustbus verify --conf`).
    pub(crate) fn verification_conf(&self) -> PathBuf {
        self.dir.join("verificationconf.zip")
    }
}

/// The loopback ports of every listener, chosen once.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Ports {
    /// Development OCSP responder and TSA.
    pub(crate) trust_services: u16,
    /// Central server: global configuration download.
    pub(crate) central_globalconf: u16,
    /// Central server: admin API.
    pub(crate) central_admin: u16,
    /// Central server: management service (mutual TLS).
    pub(crate) central_management: u16,
    /// Security servers, in the order of [`super::plan::SECURITY_SERVERS`].
    pub(crate) security_servers: Vec<SsPorts>,
    /// Example REST and SOAP services.
    pub(crate) examples: u16,
    /// Example OpenID provider.
    pub(crate) oidc: u16,
}

/// The listeners of one security server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SsPorts {
    /// Client proxy (plain HTTP, development).
    pub(crate) client_proxy: u16,
    /// Server proxy (mutual TLS between security servers).
    pub(crate) server_proxy: u16,
    /// Admin listener (/metrics, /healthz).
    pub(crate) admin: u16,
}

/// Secrets generated on the first run. Never printed; stored only in `state.json` (0600) and
/// the API keys also in `endpoints.json` (0600), which scripts read.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Secrets {
    /// The central server's key token PIN.
    pub(crate) central_pin: String,
    /// Each security server's token PIN, by server code.
    pub(crate) ss_pins: std::collections::BTreeMap<String, String>,
    /// Central server API key, role system-administrator (filled once created).
    #[serde(default)]
    pub(crate) central_admin_key: Option<String>,
    /// Central server API key, role observer (filled once created).
    #[serde(default)]
    pub(crate) central_observer_key: Option<String>,
    /// The example portal's client secret at the example OpenID provider.
    pub(crate) oidc_client_secret: String,
    /// Each security server's admin API key (role system-administrator), by server code.
    #[serde(default)]
    pub(crate) ss_admin_keys: std::collections::BTreeMap<String, String>,
    /// The auditor API key (role auditor) of every security server (filled once created).
    #[serde(default)]
    pub(crate) auditor_key: Option<String>,
}

/// Everything `state.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct State {
    /// [`STATE_FORMAT`].
    pub(crate) format: String,
    /// Ports.
    pub(crate) ports: Ports,
    /// Secrets.
    pub(crate) secrets: Secrets,
    /// Setup steps already done (so a run interrupted half-way resumes where it stopped).
    #[serde(default)]
    pub(crate) done: Vec<String>,
}

impl State {
    /// Loads `state.json`, or creates a new state (fresh ports and secrets) when missing.
    pub(crate) fn load_or_create(
        layout: &Layout,
        ss_codes: &[&str],
    ) -> Result<(Self, bool), UpError> {
        let path = layout.state_file();
        match std::fs::read(&path) {
            Ok(bytes) => {
                let state: State = serde_json::from_slice(&bytes)
                    .map_err(|e| UpError::Setup(format!("{}: {e}", path.display())))?;
                if state.format != STATE_FORMAT {
                    return Err(UpError::Setup(format!(
                        "{}: unknown format {:?}; use a new --dir",
                        path.display(),
                        state.format
                    )));
                }
                if state.ports.security_servers.len() != ss_codes.len() {
                    return Err(UpError::Setup(format!(
                        "{} was made by another version of `trustbus up`; use a new --dir",
                        path.display()
                    )));
                }
                Ok((state, false))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Six instance-wide listeners and three per security server.
                let mut ports = free_ports(6 + 3 * ss_codes.len())?.into_iter();
                let mut next = || ports.next().unwrap_or_default();
                let state = State {
                    format: STATE_FORMAT.into(),
                    ports: Ports {
                        trust_services: next(),
                        central_globalconf: next(),
                        central_admin: next(),
                        central_management: next(),
                        security_servers: ss_codes
                            .iter()
                            .map(|_| SsPorts {
                                client_proxy: next(),
                                server_proxy: next(),
                                admin: next(),
                            })
                            .collect(),
                        examples: next(),
                        oidc: next(),
                    },
                    secrets: Secrets {
                        central_pin: random_secret()?,
                        ss_pins: ss_codes
                            .iter()
                            .map(|c| Ok(((*c).to_owned(), random_secret()?)))
                            .collect::<Result<_, UpError>>()?,
                        central_admin_key: None,
                        central_observer_key: None,
                        oidc_client_secret: random_secret()?,
                        ss_admin_keys: Default::default(),
                        auditor_key: None,
                    },
                    done: Vec::new(),
                };
                state.save(layout)?;
                Ok((state, true))
            }
            Err(e) => Err(UpError::io(&path)(e)),
        }
    }

    /// The admin API key of security server `code`, created (and saved) on first use.
    pub(crate) fn ss_admin_key(&mut self, layout: &Layout, code: &str) -> Result<String, UpError> {
        if let Some(k) = self.secrets.ss_admin_keys.get(code) {
            return Ok(k.clone());
        }
        let key = random_api_key()?;
        self.secrets
            .ss_admin_keys
            .insert(code.to_owned(), key.clone());
        self.save(layout)?;
        Ok(key)
    }

    /// The auditor API key of the security servers, created (and saved) on first use.
    pub(crate) fn auditor_key(&mut self, layout: &Layout) -> Result<String, UpError> {
        if let Some(k) = &self.secrets.auditor_key {
            return Ok(k.clone());
        }
        let key = random_api_key()?;
        self.secrets.auditor_key = Some(key.clone());
        self.save(layout)?;
        Ok(key)
    }

    /// Writes `state.json` (0600, atomically).
    pub(crate) fn save(&self, layout: &Layout) -> Result<(), UpError> {
        let text = serde_json::to_vec_pretty(self)
            .map_err(|e| UpError::Setup(format!("state.json: {e}")))?;
        write_private(&layout.state_file(), &text)
    }

    /// Whether setup step `name` has completed before.
    pub(crate) fn is_done(&self, name: &str) -> bool {
        self.done.iter().any(|d| d == name)
    }

    /// Records that step `name` completed.
    pub(crate) fn mark_done(&mut self, layout: &Layout, name: &str) -> Result<(), UpError> {
        if !self.is_done(name) {
            self.done.push(name.to_owned());
        }
        self.save(layout)
    }

    /// Refuses to start when a port is taken (typically: the same instance already runs).
    pub(crate) fn check_ports_free(&self) -> Result<(), UpError> {
        let p = &self.ports;
        let mut all = vec![
            ("trust services", p.trust_services),
            ("central server globalconf", p.central_globalconf),
            ("central server admin", p.central_admin),
            ("central server management", p.central_management),
            ("examples", p.examples),
            ("OpenID provider", p.oidc),
        ];
        for s in &p.security_servers {
            all.push(("security server client proxy", s.client_proxy));
            all.push(("security server server proxy", s.server_proxy));
            all.push(("security server admin", s.admin));
        }
        for (what, port) in all {
            if TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).is_err() {
                return Err(UpError::Setup(format!(
                    "port {port} ({what}) is in use: is this instance already running? \
                     Stop it, or use another --dir"
                )));
            }
        }
        Ok(())
    }
}

/// `n` distinct free loopback ports (bound together, then released).
fn free_ports(n: usize) -> Result<Vec<u16>, UpError> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| UpError::Setup(format!("cannot find free loopback ports: {e}")))?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<_, _>>()
        .map_err(|e| UpError::Setup(format!("cannot find free loopback ports: {e}")))
}

/// An API key in the form `security-server api-key` prints: 32 random bytes in hex.
fn random_api_key() -> Result<String, UpError> {
    let mut b = [0u8; 32];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| UpError::Setup("the system random generator failed".into()))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// 24 random bytes, base64url.
pub(crate) fn random_secret() -> Result<String, UpError> {
    let mut b = [0u8; 24];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| UpError::Setup("the system random generator failed".into()))?;
    Ok(URL_SAFE_NO_PAD.encode(b))
}

/// Writes `data` to `path` with mode 0600 (temporary file and rename, so a reader never sees
/// half a file and the mode is right from the first byte).
pub(crate) fn write_private(path: &Path, data: &[u8]) -> Result<(), UpError> {
    use std::io::Write;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(UpError::io(parent))?;
    }
    let tmp = path.with_extension("tmp");
    // A leftover temporary file would keep its old mode through `truncate`.
    let _ = std::fs::remove_file(&tmp);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).map_err(UpError::io(&tmp))?;
    f.write_all(data).map_err(UpError::io(&tmp))?;
    f.sync_all().map_err(UpError::io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(UpError::io(path))
}

/// Writes a non-secret file, creating its directory.
pub(crate) fn write_file(path: &Path, data: &[u8]) -> Result<(), UpError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(UpError::io(parent))?;
    }
    std::fs::write(path, data).map_err(UpError::io(path))
}
