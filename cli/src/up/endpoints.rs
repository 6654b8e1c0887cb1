//! `DIR/endpoints.json`: the machine-readable description of a running instance
//! (docs/endpoints.md). Scripts, the SDK examples and the end-to-end tests read it, so fields
//! are only ever added.

use std::collections::BTreeMap;

use serde::Serialize;

use super::layout::{Layout, State};
use super::plan;

/// Current `format_version`.
pub(crate) const FORMAT_VERSION: u32 = 1;

/// The whole file.
#[derive(Debug, Serialize)]
pub(crate) struct Endpoints {
    /// [`FORMAT_VERSION`].
    pub(crate) format_version: u32,
    /// Instance identifier.
    pub(crate) instance: String,
    /// The instance directory (absolute).
    pub(crate) dir: String,
    /// The consumer security server's client proxy (what the SDK examples call).
    pub(crate) client_proxy_url: String,
    /// Client subsystems by role (`ministry`, `portal`).
    pub(crate) client_ids: BTreeMap<String, String>,
    /// Service ids by name.
    pub(crate) services: BTreeMap<String, String>,
    /// The example OpenID provider's issuer.
    pub(crate) oidc_issuer: String,
    /// The example portal's registration there.
    pub(crate) oidc_client: OidcClient,
    /// Every security server.
    pub(crate) security_servers: Vec<SecurityServer>,
    /// The central server.
    pub(crate) central_server: CentralServer,
    /// The development CA's OCSP responder and TSA.
    pub(crate) trust_services: TrustServices,
    /// API keys by role.
    pub(crate) api_keys: ApiKeys,
    /// Files of the instance.
    pub(crate) files: Files,
    /// The example backends behind the provider's security server.
    pub(crate) example_backends_url: String,
    /// Running child processes (`name`, `pid`).
    pub(crate) processes: Vec<Process>,
}

/// The portal's OpenID client registration.
#[derive(Debug, Serialize)]
pub(crate) struct OidcClient {
    /// `client_id`, also the ID tokens' audience.
    pub(crate) client_id: String,
    /// `client_secret` (client_secret_basic or client_secret_post).
    pub(crate) client_secret: String,
    /// The registered redirect URI.
    pub(crate) redirect_uri: String,
}

/// One security server.
#[derive(Debug, Serialize)]
pub(crate) struct SecurityServer {
    /// Server id, `INSTANCE/CLASS/MEMBER/CODE`.
    pub(crate) id: String,
    /// Owner member.
    pub(crate) owner: String,
    /// The client subsystems it hosts.
    pub(crate) clients: Vec<String>,
    /// Client proxy for information systems (plain HTTP, development mode).
    pub(crate) client_proxy_url: String,
    /// Server proxy address other security servers connect to (mutual TLS).
    pub(crate) server_proxy_address: String,
    /// Admin listener.
    pub(crate) admin_url: String,
    /// Admin REST API (read-only so far; `Authorization: Bearer <api_keys.security_servers[code]>`).
    pub(crate) admin_api_url: String,
    /// Prometheus metrics.
    pub(crate) metrics_url: String,
    /// Health check.
    pub(crate) healthz_url: String,
    /// Auditor API base (`Authorization: Bearer <api_keys.auditor>`): `records`,
    /// `records/{id}/evidence`, `exchanges/{request_id}/evidence`, `verificationconf`.
    pub(crate) auditor_url: Option<String>,
    /// Its configuration file.
    pub(crate) config: String,
}

/// The central server.
#[derive(Debug, Serialize)]
pub(crate) struct CentralServer {
    /// Admin REST API base (`Authorization: Bearer <api key>`).
    pub(crate) admin_api_url: String,
    /// Global configuration download base (what anchors point at).
    pub(crate) globalconf_url: String,
    /// Management service (mutual TLS).
    pub(crate) management_url: String,
    /// Prometheus metrics.
    pub(crate) metrics_url: String,
    /// Health check.
    pub(crate) healthz_url: String,
    /// Its configuration file.
    pub(crate) config: String,
}

/// The development trust services.
#[derive(Debug, Serialize)]
pub(crate) struct TrustServices {
    /// OCSP responder (POST, or GET with the base64 request).
    pub(crate) ocsp_url: String,
    /// RFC 3161 TSA.
    pub(crate) tsa_url: String,
    /// The CA certificate over HTTP.
    pub(crate) ca_cert_url: String,
    /// Health check.
    pub(crate) healthz_url: String,
}

/// API keys.
#[derive(Debug, Serialize)]
pub(crate) struct ApiKeys {
    /// Central server, role `system-administrator`.
    pub(crate) central_admin: Option<String>,
    /// Central server, role `observer` (read-only).
    pub(crate) central_observer: Option<String>,
    /// Security servers' admin API, role `system-administrator`, by server code.
    pub(crate) security_servers: BTreeMap<String, String>,
    /// Security servers' auditor API, role `auditor` (the same key on every server).
    pub(crate) auditor: Option<String>,
}

/// Files.
#[derive(Debug, Serialize)]
pub(crate) struct Files {
    /// The development CA certificate (PEM).
    pub(crate) ca_cert: String,
    /// The TSA certificate (PEM).
    pub(crate) tsa_cert: String,
    /// The configuration anchor.
    pub(crate) anchor: String,
    /// The verification configuration for offline evidence checks (`trustbus verify --conf`),
    /// downloaded from the consumer's auditor API at start.
    pub(crate) verification_config: Option<String>,
    /// The auditor key as a header line, for `curl -H @FILE` (mode 0600).
    pub(crate) auditor_header: String,
    /// The development CA directory (for `trustbus pki issue/revoke --dir`).
    pub(crate) pki_dir: String,
    /// The example SOAP request.
    pub(crate) soap_request: String,
    /// Log directory.
    pub(crate) logs: String,
}

/// A running child process.
#[derive(Debug, Serialize)]
pub(crate) struct Process {
    /// `central-server`, `ss1`, ...
    pub(crate) name: String,
    /// Process id.
    pub(crate) pid: u32,
}

fn path(p: std::path::PathBuf) -> String {
    p.to_string_lossy().into_owned()
}

/// Builds the description of the instance.
pub(crate) fn build(layout: &Layout, state: &State, pids: Vec<(String, u32)>) -> Endpoints {
    let p = &state.ports;
    let local = |port: u16| format!("http://127.0.0.1:{port}");
    let oidc_issuer = local(p.oidc);
    let consumer_ports = &p.security_servers[0];
    let services = plan::SERVICES
        .iter()
        .map(|s| (s.name.to_owned(), s.id.to_owned()))
        .collect();
    let security_servers = plan::SECURITY_SERVERS
        .iter()
        .zip(&p.security_servers)
        .map(|(ss, ports)| SecurityServer {
            id: format!("{}/{}", ss.owner, ss.code),
            owner: ss.owner.to_owned(),
            clients: vec![ss.client.to_owned()],
            client_proxy_url: local(ports.client_proxy),
            server_proxy_address: format!("127.0.0.1:{}", ports.server_proxy),
            admin_url: local(ports.admin),
            admin_api_url: format!("{}/api/v1", local(ports.admin)),
            metrics_url: format!("{}/metrics", local(ports.admin)),
            healthz_url: format!("{}/healthz", local(ports.admin)),
            auditor_url: Some(format!("{}/api/v1/audit", local(ports.admin))),
            config: path(layout.security_server(ss.code).join("security-server.toml")),
        })
        .collect();
    Endpoints {
        format_version: FORMAT_VERSION,
        instance: plan::INSTANCE.into(),
        dir: path(layout.dir.clone()),
        client_proxy_url: local(consumer_ports.client_proxy),
        client_ids: [
            ("ministry".to_owned(), plan::CONSUMER.to_owned()),
            ("portal".to_owned(), plan::CONSUMER.to_owned()),
        ]
        .into_iter()
        .collect(),
        services,
        oidc_client: OidcClient {
            client_id: plan::OIDC_CLIENT_ID.into(),
            client_secret: state.secrets.oidc_client_secret.clone(),
            redirect_uri: super::oidc::redirect_uri(&oidc_issuer),
        },
        oidc_issuer,
        security_servers,
        central_server: CentralServer {
            admin_api_url: format!("{}/api/v1", local(p.central_admin)),
            globalconf_url: format!("{}/globalconf", local(p.central_globalconf)),
            management_url: format!(
                "https://127.0.0.1:{}/managementservice/v1",
                p.central_management
            ),
            metrics_url: format!("{}/metrics", local(p.central_globalconf)),
            healthz_url: format!("{}/healthz", local(p.central_globalconf)),
            config: path(layout.central_config()),
        },
        trust_services: TrustServices {
            ocsp_url: format!("{}/ocsp", local(p.trust_services)),
            tsa_url: format!("{}/tsa", local(p.trust_services)),
            ca_cert_url: format!("{}/ca.pem", local(p.trust_services)),
            healthz_url: format!("{}/healthz", local(p.trust_services)),
        },
        api_keys: ApiKeys {
            central_admin: state.secrets.central_admin_key.clone(),
            central_observer: state.secrets.central_observer_key.clone(),
            security_servers: state.secrets.ss_admin_keys.clone(),
            auditor: state.secrets.auditor_key.clone(),
        },
        files: Files {
            ca_cert: path(layout.pki().join("ca.pem")),
            tsa_cert: path(layout.pki().join("tsa.pem")),
            anchor: path(layout.anchor()),
            verification_config: Some(path(layout.verification_conf())),
            auditor_header: path(layout.auditor_header()),
            pki_dir: path(layout.pki()),
            soap_request: path(layout.soap_request()),
            logs: path(layout.logs()),
        },
        example_backends_url: local(p.examples),
        processes: pids
            .into_iter()
            .map(|(name, pid)| Process { name, pid })
            .collect(),
    }
}
