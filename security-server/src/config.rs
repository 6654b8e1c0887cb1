//! Local configuration (`security-server.toml`); every option is described, with its default,
//! in `configs/security-server.example.toml`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use trustbus_sdk::FaultDialect;
use trustbus_sdk::id::{ClientId, ServiceId};
use trustbus_sdk::rest::EndpointPattern;

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The TOML does not parse or has unknown fields.
    #[error("invalid configuration: {0}")]
    Parse(String),
    /// A value is not acceptable.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Identity of this server.
    pub server: ServerSection,
    /// Listen addresses.
    #[serde(default)]
    pub listen: ListenSection,
    /// Global configuration source.
    pub globalconf: GlobalConfSection,
    /// Key token.
    #[serde(default)]
    pub token: TokenSection,
    /// Resource limits.
    #[serde(default)]
    pub limits: LimitsSection,
    /// Client subsystems hosted here.
    #[serde(default)]
    pub clients: Vec<ClientConfig>,
    /// Services provided here.
    #[serde(default)]
    pub services: Vec<ServiceConfig>,
    /// Access rights to those services.
    #[serde(default)]
    pub access: Vec<AccessRule>,
    /// Local groups.
    #[serde(default)]
    pub local_groups: Vec<LocalGroup>,
    /// API keys of the admin REST API.
    #[serde(default)]
    pub api_keys: Vec<ApiKey>,
    /// TLS client certificates of auditors, for the auditor API over `listen.auditor_tls`.
    #[serde(default)]
    pub auditor_certs: Vec<AuditorCert>,
    /// The message log: timestamping and archiving (docs/message-log.md).
    #[serde(default)]
    pub message_log: MessageLogSection,
    /// Verification of end users' ID tokens (the trusted issuers come from global
    /// configuration).
    #[serde(default)]
    pub end_user_identity: EndUserIdentitySection,
}

/// `[end_user_identity]`: how ID tokens (`Trustbus-Id-Token`) are verified. Which identity
/// providers are trusted, for which audiences and at which minimum `acr` is global
/// configuration's `trusted_oidc_issuers`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndUserIdentitySection {
    /// PEM file with the CA certificates trusted for `https://` JWKS URLs; without it only
    /// pinned key sets and loopback HTTP URLs work.
    #[serde(default)]
    pub jwks_tls_ca: Option<PathBuf>,
    /// Accept `http://` JWKS URLs on hosts other than loopback (never in production: the
    /// keys would come unauthenticated).
    #[serde(default)]
    pub allow_plain_http_jwks: bool,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, seconds.
    #[serde(default = "d_skew")]
    pub clock_skew_seconds: u64,
    /// Fewest seconds between two fetches of one issuer's key set (a token with an unknown
    /// `kid` triggers a fetch at most this often).
    #[serde(default = "d_jwks_refresh")]
    pub jwks_min_refresh_seconds: u64,
    /// A key set older than this is fetched again before use, seconds.
    #[serde(default = "d_jwks_age")]
    pub jwks_max_age_seconds: u64,
}

fn d_skew() -> u64 {
    60
}
fn d_jwks_refresh() -> u64 {
    60
}
fn d_jwks_age() -> u64 {
    3600
}

impl Default for EndUserIdentitySection {
    fn default() -> Self {
        Self {
            jwks_tls_ca: None,
            allow_plain_http_jwks: false,
            clock_skew_seconds: d_skew(),
            jwks_min_refresh_seconds: d_jwks_refresh(),
            jwks_max_age_seconds: d_jwks_age(),
        }
    }
}

/// `[message_log]`: where the log lives is fixed (`DATA_DIR/messagelog`); these say how records
/// are made durable, whether payloads are encrypted at rest, and how the log is timestamped and
/// archived. The TSAs and the timestamping interval come from global configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageLogSection {
    /// Whether exchanges are logged at all (default true). `false` is for benchmarks and test
    /// environments only: nothing is recorded, so no exchange can be proven afterwards; the
    /// server warns at start, `/diagnostics` and `/metrics` show it, and the auditor API
    /// answers 503 `message_log_disabled`.
    #[serde(default = "d_enabled")]
    pub enabled: bool,
    /// `sync` (default: an exchange is acknowledged only after the fdatasync covering its
    /// records) or `relaxed` (acknowledged after the write; see
    /// [`crate::messagelog::settings::DurabilitySetting`] for what is at risk).
    #[serde(default)]
    pub durability: crate::messagelog::settings::DurabilitySetting,
    /// With `relaxed`: longest time from a write to the sync covering it, milliseconds
    /// (default 10).
    #[serde(default = "d_relaxed_delay")]
    pub relaxed_max_delay_ms: u64,
    /// Encrypt payloads at rest with AES-256-GCM under a key held in the token (default false).
    #[serde(default)]
    pub encrypt_payloads: bool,
    /// `[message_log.timestamping]`.
    #[serde(default)]
    pub timestamping: crate::messagelog::settings::TimestampSettings,
    /// `[message_log.archive]`; no archiving when absent.
    #[serde(default)]
    pub archive: Option<crate::messagelog::settings::ArchiveSettings>,
}

fn d_relaxed_delay() -> u64 {
    10
}

fn d_enabled() -> bool {
    true
}

impl Default for MessageLogSection {
    fn default() -> Self {
        Self {
            enabled: d_enabled(),
            durability: Default::default(),
            relaxed_max_delay_ms: d_relaxed_delay(),
            encrypt_payloads: false,
            timestamping: Default::default(),
            archive: None,
        }
    }
}

/// An admin API key: only its SHA-256 is stored.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    /// Lower-case hex SHA-256 of the key.
    pub sha256: String,
    /// `observer` (read) or `system-administrator` (everything) for the admin API, see
    /// `adminapi::Role`; `auditor` for the auditor API only (`/api/v1/audit/`).
    pub role: String,
}

/// An auditor's TLS client certificate, pinned by fingerprint (like information systems'
/// certificates).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditorCert {
    /// Lower-case hex SHA-256 of the certificate (DER).
    pub sha256: String,
    /// Who it is, for the audit trail.
    pub name: String,
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// The owner member, `INSTANCE/CLASS/CODE`.
    pub owner: ClientId,
    /// The server code.
    pub server_code: String,
    /// Data directory; relative paths elsewhere are resolved against the configuration file's
    /// directory.
    pub data_dir: PathBuf,
    /// `classic` (X-Road ≤ 7.7 CamelCase codes, default) or `lowercase` (7.8 snake_case).
    #[serde(default)]
    pub fault_dialect: Dialect,
    /// Development only: information systems may use plain HTTP and HTTPS without checks.
    #[serde(default)]
    pub development: bool,
    /// Threads that serve exchanges; absent or 0: one per CPU core.
    #[serde(default)]
    pub worker_threads: usize,
}

/// Most `[server] worker_threads` accepted (a typo such as 10000 would otherwise start that many).
pub const MAX_WORKER_THREADS: usize = 1024;

impl ServerSection {
    /// The number of exchange-serving threads to start: `worker_threads`, or the CPU count.
    pub fn effective_worker_threads(&self) -> usize {
        match self.worker_threads {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        }
    }
}

/// Fault code spelling.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// `Server.ServerProxy.AccessDenied`.
    #[default]
    Classic,
    /// `server.serverproxy.access_denied`.
    Lowercase,
}

impl From<Dialect> for FaultDialect {
    fn from(d: Dialect) -> Self {
        match d {
            Dialect::Classic => FaultDialect::Classic,
            Dialect::Lowercase => FaultDialect::Lowercase,
        }
    }
}

/// `[listen]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenSection {
    /// Client proxy, plain HTTP (information systems in `http` mode).
    #[serde(default = "d_client_proxy")]
    pub client_proxy: String,
    /// Client proxy over HTTPS (modes `https` and `https-auth`), with the internal TLS
    /// certificate; disabled when absent.
    #[serde(default)]
    pub client_proxy_tls: Option<String>,
    /// Server proxy (mutual TLS, other security servers).
    #[serde(default = "d_server_proxy")]
    pub server_proxy: String,
    /// Admin listener (`/metrics`, `/healthz`).
    #[serde(default = "d_admin")]
    pub admin: String,
    /// The auditor API alone over HTTPS (the internal TLS certificate), where auditors
    /// authenticate with a client certificate listed in `auditor_certs` (or an auditor API
    /// key); disabled when absent.
    #[serde(default)]
    pub auditor_tls: Option<String>,
}

fn d_client_proxy() -> String {
    "127.0.0.1:8080".into()
}
fn d_server_proxy() -> String {
    "0.0.0.0:5500".into()
}
fn d_admin() -> String {
    "127.0.0.1:5588".into()
}

impl Default for ListenSection {
    fn default() -> Self {
        Self {
            client_proxy: d_client_proxy(),
            client_proxy_tls: None,
            server_proxy: d_server_proxy(),
            admin: d_admin(),
            auditor_tls: None,
        }
    }
}

/// `[globalconf]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalConfSection {
    /// The anchor file.
    pub anchor: PathBuf,
    /// Where downloaded versions are kept (default `<data_dir>/globalconf`).
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// Seconds between polls.
    #[serde(default = "d_poll")]
    pub poll_interval_seconds: u64,
}

fn d_poll() -> u64 {
    60
}

/// `[token]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSection {
    /// Token directory (default `<data_dir>/token`).
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// Environment variable holding the token PIN.
    #[serde(default = "d_pin_env")]
    pub pin_env: String,
}

fn d_pin_env() -> String {
    "TRUSTBUS_SS_PIN".into()
}

impl Default for TokenSection {
    fn default() -> Self {
        Self {
            dir: None,
            pin_env: d_pin_env(),
        }
    }
}

/// `[limits]`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// Largest request header block from an information system, bytes.
    #[serde(default = "d_header")]
    pub max_header_bytes: usize,
    /// Largest body (REST body or SOAP message), bytes.
    #[serde(default = "d_body")]
    pub max_body_bytes: u64,
    /// Largest SOAP message held in memory, bytes.
    #[serde(default = "d_soap")]
    pub max_soap_bytes: usize,
    /// Bodies above this size go to a temporary file, bytes.
    #[serde(default = "d_spill")]
    pub spill_threshold_bytes: usize,
    /// Most connections served at once, per listener.
    #[serde(default = "d_conns")]
    pub max_connections: usize,
    /// Whole-exchange time limit, seconds.
    #[serde(default = "d_timeout")]
    pub request_timeout_seconds: u64,
    /// Connect time limit towards other security servers and backends, milliseconds.
    #[serde(default = "d_connect")]
    pub connect_timeout_ms: u64,
}

fn d_header() -> usize {
    64 * 1024
}
fn d_body() -> u64 {
    1 << 30
}
fn d_soap() -> usize {
    64 << 20
}
fn d_spill() -> usize {
    1 << 20
}
fn d_conns() -> usize {
    1024
}
fn d_timeout() -> u64 {
    60
}
fn d_connect() -> u64 {
    5000
}

impl Default for LimitsSection {
    fn default() -> Self {
        Self {
            max_header_bytes: d_header(),
            max_body_bytes: d_body(),
            max_soap_bytes: d_soap(),
            spill_threshold_bytes: d_spill(),
            max_connections: d_conns(),
            request_timeout_seconds: d_timeout(),
            connect_timeout_ms: d_connect(),
        }
    }
}

/// How an information system connects to the client proxy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConnectionMode {
    /// Plain HTTP (development only).
    Http,
    /// HTTPS without a client certificate.
    Https,
    /// HTTPS with a client certificate registered for the subsystem (production default).
    #[default]
    HttpsAuth,
}

/// A client subsystem hosted here.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// The subsystem (or member).
    pub id: ClientId,
    /// Connection mode of its information systems.
    #[serde(default)]
    pub connection: ConnectionMode,
    /// SHA-256 fingerprints (hex) of the information systems' TLS client certificates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub is_certs: Vec<String>,
    /// Pass a user id the information system asserts (`X-Road-UserId`, SOAP `userId`) on,
    /// marked unverified. When false, REST drops the header and SOAP requests carrying a
    /// `userId` are refused (`Client.InvalidUserIdentity`).
    #[serde(default = "d_true")]
    pub allow_unverified_user_id: bool,
    /// The audiences (the portal's `client_id`s at identity providers) of the ID tokens this
    /// client may present; empty: any audience global configuration accepts from the issuer.
    #[serde(default)]
    pub id_token_audiences: Vec<String>,
}

/// REST or SOAP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceKind {
    /// REST: `url` is the base URL the path after the service code is appended to.
    Rest,
    /// SOAP: `url` is the endpoint the envelope is posted to.
    Soap,
}

/// An endpoint: method (or `*`) and path pattern with `*` wildcards.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// HTTP method or `*`.
    pub method: String,
    /// Path pattern, for example `/persons/*`.
    pub path: String,
}

impl EndpointConfig {
    /// The sdk pattern.
    pub fn pattern(&self) -> Result<EndpointPattern, ConfigError> {
        EndpointPattern::new(&self.method, &self.path).map_err(|e| {
            ConfigError::Invalid(format!("endpoint {} {}: {e}", self.method, self.path))
        })
    }
}

/// A service provided here.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// The service without version (versions are ignored).
    pub id: ServiceId,
    /// REST or SOAP.
    pub kind: ServiceKind,
    /// Backend URL (`http://` or `https://`).
    pub url: String,
    /// Whether callers may use it.
    #[serde(default = "d_true")]
    pub enabled: bool,
    /// Shown to callers while disabled.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub disabled_notice: String,
    /// Backend connect timeout, milliseconds.
    #[serde(default = "d_backend_connect")]
    pub connect_timeout_ms: u64,
    /// Backend read timeout (until the response head), milliseconds.
    #[serde(default = "d_backend_read")]
    pub read_timeout_ms: u64,
    /// Declared REST endpoints (informational; access rights name their own). Listed by
    /// `listMethods`/`allowedMethods`; read from `openapi_url` when that is set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<EndpointConfig>,
    /// SOAP: the service's WSDL file, served by `getWsdl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wsdl: Option<PathBuf>,
    /// SOAP: where the WSDL was read from (`http(s)://` URL or file path); the admin API's
    /// `refresh` reads it again into `wsdl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wsdl_url: Option<String>,
    /// REST: the service's OpenAPI document (JSON or YAML file), served by `getOpenAPI`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openapi: Option<PathBuf>,
    /// REST: where the OpenAPI 3 JSON document was read from (`http(s)://` URL or file path);
    /// the admin API's `refresh` reads it again into `openapi` and `endpoints`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openapi_url: Option<String>,
    /// For `https://` backends: PEM file with the CA certificate(s) (or the backend's own
    /// certificate) to trust. Required for HTTPS; the host name in `url` is verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<PathBuf>,
    /// Only end users verified by the bus (a citizen's ID token checked by the consumer's
    /// security server) may use the service; others get `Client.InvalidUserIdentity` and the
    /// backend is not called.
    #[serde(default)]
    pub require_verified_user: bool,
    /// The weakest authentication level (`acr`) accepted, ordered by the issuer's
    /// `acr_levels` in global configuration. Needs `require_verified_user = true`.
    #[serde(default)]
    pub min_acr: Option<String>,
}

fn d_true() -> bool {
    true
}
fn d_backend_connect() -> u64 {
    5000
}
fn d_backend_read() -> u64 {
    60000
}

/// One access right: `subject` may call `service` (or only the listed REST endpoints).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRule {
    /// The service (version ignored).
    pub service: ServiceId,
    /// `SUBSYSTEM:…`, `MEMBER:…`, `GLOBALGROUP:INSTANCE/code` or `LOCALGROUP:code`.
    pub subject: String,
    /// REST endpoints; empty means the whole service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<EndpointConfig>,
}

/// A local group of a provider subsystem.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LocalGroup {
    /// Group code.
    pub code: String,
    /// Members.
    #[serde(default)]
    pub members: Vec<ClientId>,
}

impl Config {
    /// Reads and checks `path`; relative paths inside are made absolute against its directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_file_text(&text, path)
    }

    /// Parses and checks `text`, the contents of the file at `path`; relative paths inside
    /// are made absolute against its directory.
    pub fn from_file_text(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let mut c = Self::parse(text)?;
        let base = path.parent().unwrap_or(Path::new("."));
        let abs = |p: &Path| {
            if p.is_absolute() {
                p.to_owned()
            } else {
                base.join(p)
            }
        };
        c.server.data_dir = abs(&c.server.data_dir);
        c.globalconf.anchor = abs(&c.globalconf.anchor);
        c.globalconf.dir = c.globalconf.dir.as_deref().map(abs);
        c.token.dir = c.token.dir.as_deref().map(abs);
        c.end_user_identity.jwks_tls_ca = c.end_user_identity.jwks_tls_ca.as_deref().map(abs);
        if let Some(a) = &mut c.message_log.archive {
            a.dir = abs(&a.dir);
        }
        for s in &mut c.services {
            s.tls_ca = s.tls_ca.as_deref().map(abs);
            s.openapi = s.openapi.as_deref().map(abs);
            s.wsdl = s.wsdl.as_deref().map(abs);
        }
        Ok(c)
    }

    /// Parses and checks TOML text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let c: Self = toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        c.check()?;
        Ok(c)
    }

    /// The checks every configuration passes, also after a change through the admin API.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.server.owner.subsystem_code().is_some() {
            return Err(ConfigError::Invalid("server.owner must be a member".into()));
        }
        trustbus_sdk::id::validate_segment("server_code", &self.server.server_code)
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        if self.server.worker_threads > MAX_WORKER_THREADS {
            return Err(ConfigError::Invalid(format!(
                "server.worker_threads: at most {MAX_WORKER_THREADS} (0 = one per CPU core)"
            )));
        }
        for s in &self.services {
            if !(s.url.starts_with("http://") || s.url.starts_with("https://")) {
                return Err(ConfigError::Invalid(format!(
                    "service {}: url must be http:// or https://",
                    s.id.to_slash()
                )));
            }
            for e in &s.endpoints {
                e.pattern()?;
            }
            if s.min_acr.is_some() && !s.require_verified_user {
                return Err(ConfigError::Invalid(format!(
                    "service {}: min_acr needs require_verified_user = true",
                    s.id.to_slash()
                )));
            }
            if s.url.starts_with("https://") && s.tls_ca.is_none() {
                return Err(ConfigError::Invalid(format!(
                    "service {}: an https:// url needs tls_ca",
                    s.id.to_slash()
                )));
            }
        }
        for a in &self.access {
            crate::access::Subject::parse(&a.subject)?;
            for e in &a.endpoints {
                e.pattern()?;
            }
        }
        for k in &self.api_keys {
            if !matches!(
                k.role.as_str(),
                "observer" | "system-administrator" | "auditor"
            ) {
                return Err(ConfigError::Invalid(format!("api key role {:?}", k.role)));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for c in &self.clients {
            if !seen.insert(c.id.to_slash()) {
                return Err(ConfigError::Invalid(format!(
                    "client {} is listed twice",
                    c.id.to_slash()
                )));
            }
        }
        seen.clear();
        for s in &self.services {
            if !seen.insert(s.id.without_version().to_slash()) {
                return Err(ConfigError::Invalid(format!(
                    "service {} is listed twice",
                    s.id.without_version().to_slash()
                )));
            }
        }
        seen.clear();
        for g in &self.local_groups {
            trustbus_sdk::id::validate_segment("local group", &g.code)
                .map_err(|e| ConfigError::Invalid(e.to_string()))?;
            if !seen.insert(g.code.clone()) {
                return Err(ConfigError::Invalid(format!(
                    "local group {} is listed twice",
                    g.code
                )));
            }
        }
        for c in &self.auditor_certs {
            if c.sha256.len() != 64 || !c.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ConfigError::Invalid(format!(
                    "auditor certificate {:?}: sha256 must be 64 hex digits",
                    c.name
                )));
            }
        }
        if let Some(a) = &self.message_log.archive {
            let most = crate::messagelog::archive::MAX_RECORDS_PER_FILE;
            if a.max_records == 0 || a.max_records > most {
                return Err(ConfigError::Invalid(format!(
                    "message_log.archive.max_records must be 1 to {most}"
                )));
            }
        }
        if self.message_log.relaxed_max_delay_ms == 0
            || self.message_log.relaxed_max_delay_ms > 10_000
        {
            return Err(ConfigError::Invalid(
                "message_log.relaxed_max_delay_ms must be 1 to 10000".into(),
            ));
        }
        for c in &self.clients {
            if c.connection == ConnectionMode::Http && !self.server.development {
                return Err(ConfigError::Invalid(format!(
                    "client {}: connection = \"http\" needs server.development = true",
                    c.id.to_slash()
                )));
            }
        }
        Ok(())
    }

    /// The token directory.
    pub fn token_dir(&self) -> PathBuf {
        self.token
            .dir
            .clone()
            .unwrap_or_else(|| self.server.data_dir.join("token"))
    }

    /// The global configuration directory.
    pub fn globalconf_dir(&self) -> PathBuf {
        self.globalconf
            .dir
            .clone()
            .unwrap_or_else(|| self.server.data_dir.join("globalconf"))
    }

    /// This server's identifier.
    pub fn server_id(&self) -> Result<trustbus_sdk::SecurityServerId, ConfigError> {
        trustbus_sdk::SecurityServerId::new(&self.server.owner, &self.server.server_code)
            .map_err(|e| ConfigError::Invalid(e.to_string()))
    }

    /// The hosted client entry for `id`.
    pub fn client(&self, id: &ClientId) -> Option<&ClientConfig> {
        self.clients.iter().find(|c| &c.id == id)
    }

    /// The service entry for `id` (version ignored).
    pub fn service(&self, id: &ServiceId) -> Option<&ServiceConfig> {
        self.services.iter().find(|s| s.id.same_service(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_configuration_parses() {
        let text = include_str!("../../configs/security-server.example.toml");
        let c = Config::parse(text).unwrap();
        assert_eq!(c.clients[0].connection, ConnectionMode::HttpsAuth);
        assert_eq!(c.limits.spill_threshold_bytes, 1 << 20);
        assert_eq!(c.server.worker_threads, 0);
    }

    #[test]
    fn worker_threads_default_to_one_per_core() {
        let base = "[server]\nowner = \"DEV/GOV/1\"\nserver_code = \"s\"\ndata_dir = \"d\"\n";
        let tail = "[globalconf]\nanchor = \"a\"\n";
        let cores = std::thread::available_parallelism().unwrap().get();
        let c = Config::parse(&format!("{base}{tail}")).unwrap();
        assert_eq!(c.server.effective_worker_threads(), cores);
        let c = Config::parse(&format!("{base}worker_threads = 0\n{tail}")).unwrap();
        assert_eq!(c.server.effective_worker_threads(), cores);
        let c = Config::parse(&format!("{base}worker_threads = 3\n{tail}")).unwrap();
        assert_eq!(c.server.effective_worker_threads(), 3);
        assert!(Config::parse(&format!("{base}worker_threads = -1\n{tail}")).is_err());
        let e = Config::parse(&format!("{base}worker_threads = 10000\n{tail}")).unwrap_err();
        assert!(
            matches!(&e, ConfigError::Invalid(m)
                if m == "server.worker_threads: at most 1024 (0 = one per CPU core)"),
            "{e}"
        );
    }

    #[test]
    fn unknown_fields_and_http_without_development_are_refused() {
        let base = "[server]\nowner = \"DEV/GOV/1\"\nserver_code = \"s\"\ndata_dir = \"d\"\n[globalconf]\nanchor = \"a\"\n";
        Config::parse(base).unwrap();
        assert!(Config::parse(&format!("{base}bogus = 1\n")).is_err());
        assert!(
            Config::parse(&format!(
                "{base}[[clients]]\nid = \"DEV/GOV/1/x\"\nconnection = \"http\"\n"
            ))
            .is_err()
        );
        assert!(
            Config::parse(&format!(
                "{base}[[access]]\nservice = \"DEV/GOV/1/x/s\"\nsubject = \"nobody\"\n"
            ))
            .is_err()
        );
        let svc = "[[services]]\nid = \"DEV/GOV/1/x/s\"\nkind = \"rest\"\nurl = \"http://b\"\n";
        let e = Config::parse(&format!("{base}{svc}min_acr = \"high\"\n")).unwrap_err();
        assert!(
            e.to_string()
                .contains("min_acr needs require_verified_user"),
            "{e}"
        );
        let c = Config::parse(&format!(
            "{base}{svc}require_verified_user = true\nmin_acr = \"high\"\n\
             [end_user_identity]\nclock_skew_seconds = 30\n"
        ))
        .unwrap();
        assert!(c.services[0].require_verified_user);
        assert_eq!(c.end_user_identity.clock_skew_seconds, 30);
        assert_eq!(c.end_user_identity.jwks_min_refresh_seconds, 60);
        let c = Config::parse(base).unwrap();
        assert_eq!(c.message_log.relaxed_max_delay_ms, 10);
        assert!(!c.message_log.encrypt_payloads);
        assert!(
            c.message_log.enabled,
            "the message log is on unless switched off"
        );
        let c = Config::parse(&format!("{base}[message_log]\nenabled = false\n")).unwrap();
        assert!(!c.message_log.enabled);
        let c = Config::parse(&format!("{base}[message_log]\nenabled = true\n")).unwrap();
        assert!(c.message_log.enabled);
        let c = Config::parse(&format!(
            "{base}[message_log]\ndurability = \"relaxed\"\nrelaxed_max_delay_ms = 50\n\
             encrypt_payloads = true\n[[api_keys]]\nsha256 = \"00\"\nrole = \"auditor\"\n"
        ))
        .unwrap();
        assert_eq!(
            c.message_log.durability,
            crate::messagelog::settings::DurabilitySetting::Relaxed
        );
        assert!(c.message_log.encrypt_payloads);
        for bad in [
            "[message_log]\ndurability = \"sometimes\"\n",
            "[message_log]\nrelaxed_max_delay_ms = 0\n",
            "[message_log.archive]\ndir = \"/a\"\nmax_records = 10001\n",
            "[message_log.archive]\ndir = \"/a\"\nmax_records = 0\n",
            "[message_log]\nenabled = \"off\"\n",
            "[message_log]\nenable = false\n",
            "[[api_keys]]\nsha256 = \"00\"\nrole = \"superuser\"\n",
        ] {
            assert!(Config::parse(&format!("{base}{bad}")).is_err(), "{bad}");
        }
    }
}
