//! The verification configuration: the global configuration files an offline verifier needs
//! (approved CAs, TSAs, members, settings), exported as a directory or zip, and read back.
//!
//! It is `shared-params.json` exactly as published (plus any other global configuration files
//! the server passes, such as the signed directory), and two convenience files derived from it
//! for standard tools: `ca.pem` (every approved CA root and intermediate) and `tsa.pem` (every
//! approved TSA certificate).

use std::path::Path;

use base64::Engine;
use serde::Deserialize;
use trustbus_pki::Certificate;
use trustbus_pki::chain::TrustStore;

use super::tsa_client::TsaEndpoint;
use super::zipfile;

/// The file the verifier reads.
pub const SHARED_PARAMS: &str = "shared-params.json";

/// Why a verification configuration could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// `shared-params.json` is missing or malformed.
    #[error("malformed verification configuration: {0}")]
    Malformed(String),
}

#[derive(Debug, Clone, Deserialize)]
struct SharedParamsView {
    instance: String,
    #[serde(default)]
    members: Vec<MemberView>,
    #[serde(default)]
    approved_cas: Vec<CaView>,
    #[serde(default)]
    approved_tsas: Vec<TsaView>,
    #[serde(default)]
    settings: SettingsView,
}

#[derive(Debug, Clone, Deserialize)]
struct MemberView {
    id: String,
    #[serde(default)]
    name: String,
}

#[derive(Debug, Clone, Deserialize)]
struct CaView {
    #[serde(default)]
    authentication_only: bool,
    roots: Vec<String>,
    #[serde(default)]
    intermediates: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct TsaView {
    name: String,
    url: String,
    cert: String,
}

#[derive(Debug, Clone, Copy, Deserialize)]
struct SettingsView {
    #[serde(default = "d_ocsp")]
    ocsp_freshness_seconds: u64,
    #[serde(default = "d_ts")]
    timestamping_interval_seconds: u64,
}

fn d_ocsp() -> u64 {
    3600
}
fn d_ts() -> u64 {
    60
}

impl Default for SettingsView {
    fn default() -> Self {
        Self {
            ocsp_freshness_seconds: d_ocsp(),
            timestamping_interval_seconds: d_ts(),
        }
    }
}

/// What the verifier trusts, read from `shared-params.json`.
#[derive(Debug, Clone)]
pub struct VerificationConf {
    /// The instance identifier.
    pub instance: String,
    /// Approved CA roots with their authentication-only flag.
    pub ca_roots: Vec<(Certificate, bool)>,
    /// Approved intermediate CA certificates.
    pub ca_intermediates: Vec<Certificate>,
    /// Approved TSAs.
    pub tsas: Vec<TsaEndpoint>,
    /// Registered members (slash form) and names.
    pub members: Vec<(String, String)>,
    /// Maximum OCSP response age, seconds.
    pub ocsp_freshness_seconds: u64,
    /// Timestamping interval, seconds.
    pub timestamping_interval_seconds: u64,
}

fn b64_cert(s: &str, what: &str) -> Result<Certificate, ConfError> {
    let der = base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|e| ConfError::Malformed(format!("{what}: {e}")))?;
    Certificate::from_der(der).map_err(|e| ConfError::Malformed(format!("{what}: {e}")))
}

impl VerificationConf {
    /// Reads the configuration from `shared-params.json` bytes.
    pub fn from_shared_params(bytes: &[u8]) -> Result<Self, ConfError> {
        let v: SharedParamsView = serde_json::from_slice(bytes)
            .map_err(|e| ConfError::Malformed(format!("{SHARED_PARAMS}: {e}")))?;
        let mut ca_roots = Vec::new();
        let mut ca_intermediates = Vec::new();
        for ca in &v.approved_cas {
            for r in &ca.roots {
                ca_roots.push((b64_cert(r, "approved CA root")?, ca.authentication_only));
            }
            for i in &ca.intermediates {
                ca_intermediates.push(b64_cert(i, "approved CA intermediate")?);
            }
        }
        let tsas = v
            .approved_tsas
            .iter()
            .map(|t| {
                Ok(TsaEndpoint {
                    name: t.name.clone(),
                    url: t.url.clone(),
                    cert_der: b64_cert(&t.cert, "approved TSA")?.der().to_vec(),
                })
            })
            .collect::<Result<_, ConfError>>()?;
        Ok(Self {
            instance: v.instance,
            ca_roots,
            ca_intermediates,
            tsas,
            members: v.members.into_iter().map(|m| (m.id, m.name)).collect(),
            ocsp_freshness_seconds: v.settings.ocsp_freshness_seconds,
            timestamping_interval_seconds: v.settings.timestamping_interval_seconds,
        })
    }

    /// Reads `shared-params.json` from a directory, or from a zip made by [`export_zip`].
    pub fn load(path: &Path) -> Result<Self, ConfError> {
        let io = |source| ConfError::Io {
            path: path.display().to_string(),
            source,
        };
        if path.is_dir() {
            let bytes = std::fs::read(path.join(SHARED_PARAMS)).map_err(io)?;
            return Self::from_shared_params(&bytes);
        }
        let bytes = std::fs::read(path).map_err(io)?;
        let entries = zipfile::read(&bytes).map_err(|e| ConfError::Malformed(e.to_string()))?;
        let (_, sp) = entries
            .iter()
            .find(|(n, _)| n == SHARED_PARAMS)
            .ok_or_else(|| ConfError::Malformed(format!("no {SHARED_PARAMS} in the zip")))?;
        Self::from_shared_params(sp)
    }

    /// The approved CAs as a trust store.
    pub fn trust_store(&self) -> TrustStore {
        let mut ts = TrustStore::new();
        for (c, auth_only) in &self.ca_roots {
            ts.add_ca(c.clone(), *auth_only);
        }
        for c in &self.ca_intermediates {
            ts.add_intermediate(c.clone());
        }
        ts
    }

    /// The approved TSA certificates (DER).
    pub fn tsa_certs(&self) -> Vec<Vec<u8>> {
        self.tsas.iter().map(|t| t.cert_der.clone()).collect()
    }
}

/// The files of a verification configuration: the given global configuration files
/// (`shared-params.json` must be among them) plus `ca.pem` and `tsa.pem` derived from it.
pub fn export_files(globalconf: &[(String, Vec<u8>)]) -> Result<Vec<(String, Vec<u8>)>, ConfError> {
    let (_, sp) = globalconf
        .iter()
        .find(|(n, _)| n == SHARED_PARAMS)
        .ok_or_else(|| ConfError::Malformed(format!("{SHARED_PARAMS} is required")))?;
    let conf = VerificationConf::from_shared_params(sp)?;
    let mut ca_pem = String::new();
    for (c, _) in &conf.ca_roots {
        ca_pem.push_str(&c.to_pem());
    }
    for c in &conf.ca_intermediates {
        ca_pem.push_str(&c.to_pem());
    }
    let mut tsa_pem = String::new();
    for t in &conf.tsas {
        tsa_pem.push_str(
            &Certificate::from_der(t.cert_der.clone())
                .map(|c| c.to_pem())
                .unwrap_or_default(),
        );
    }
    let mut out: Vec<(String, Vec<u8>)> = globalconf
        .iter()
        .filter(|(n, _)| n != "ca.pem" && n != "tsa.pem")
        .cloned()
        .collect();
    out.push(("ca.pem".into(), ca_pem.into_bytes()));
    out.push(("tsa.pem".into(), tsa_pem.into_bytes()));
    Ok(out)
}

/// The verification configuration as a zip (what the auditor API serves).
pub fn export_zip(globalconf: &[(String, Vec<u8>)]) -> Result<Vec<u8>, ConfError> {
    zipfile::write(&export_files(globalconf)?).map_err(|e| ConfError::Malformed(e.to_string()))
}

/// Writes the verification configuration into a directory (created if needed).
pub fn export_dir(globalconf: &[(String, Vec<u8>)], dir: &Path) -> Result<(), ConfError> {
    let io = |p: &Path| {
        let p = p.display().to_string();
        move |source| ConfError::Io { path: p, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    for (name, data) in export_files(globalconf)? {
        if trustbus_pki::asic::check_name(&name).is_err() || name.contains('/') {
            return Err(ConfError::Malformed(format!("bad file name {name:?}")));
        }
        let p = dir.join(&name);
        std::fs::write(&p, data).map_err(io(&p))?;
    }
    Ok(())
}
