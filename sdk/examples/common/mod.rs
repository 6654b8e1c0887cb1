//! What the examples share: where the bus is (`--endpoints DIR/endpoints.json` as written by
//! `trustbus up`, or flags) and friendly errors.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::process::ExitCode;

use trustbus_sdk::client::BusError;

/// The fields of `endpoints.json` the examples use (docs/endpoints.md; the file has more, and
/// gains fields over time, so unknown ones are ignored).
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct Endpoints {
    /// The consumer security server's client proxy, e.g. `http://127.0.0.1:8080`.
    pub(crate) client_proxy_url: String,
    /// PEM file with the client proxy's TLS trust anchor, for an `https` URL.
    #[serde(default)]
    pub(crate) ca_roots_pem: Option<String>,
    /// Client subsystems by role: `ministry`, `business`, `portal`.
    #[serde(default)]
    pub(crate) client_ids: BTreeMap<String, String>,
    /// Services by name: `population_register`, `business_register`, `citizen_records`.
    #[serde(default)]
    pub(crate) services: BTreeMap<String, String>,
    /// The example identity provider's issuer.
    #[serde(default)]
    pub(crate) oidc_issuer: Option<String>,
    /// The portal's registration at that identity provider.
    #[serde(default)]
    pub(crate) oidc_client: Option<OidcClient>,
}

/// A portal's registration at the identity provider.
#[derive(Debug, Clone, serde::Deserialize)]
pub(crate) struct OidcClient {
    /// `client_id`.
    pub(crate) client_id: String,
    /// `client_secret` (client_secret_basic).
    pub(crate) client_secret: String,
    /// The registered redirect URI.
    pub(crate) redirect_uri: String,
}

/// Parsed command line: `--endpoints FILE` plus `--url`, `--client`, `--service`, `--issuer`
/// overrides and free arguments.
pub(crate) struct Args {
    pub(crate) endpoints: Endpoints,
    pub(crate) client: Option<String>,
    pub(crate) service: Option<String>,
    pub(crate) rest: Vec<String>,
}

pub(crate) fn parse_args(usage: &str) -> Result<Args, String> {
    let mut endpoints = Endpoints::default();
    let (mut url, mut client, mut service, mut issuer) = (None, None, None, None);
    let mut rest = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value\n{usage}"));
        match a.as_str() {
            "--endpoints" => {
                let mut path = std::path::PathBuf::from(value("--endpoints")?);
                if path.is_dir() {
                    path.push("endpoints.json");
                }
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    format!(
                        "cannot read {}: {e} (run `trustbus up` first?)",
                        path.display()
                    )
                })?;
                endpoints = serde_json::from_str(&text).map_err(|e| {
                    format!("{} is not a valid endpoints file: {e}", path.display())
                })?;
            }
            "--url" => url = Some(value("--url")?),
            "--client" => client = Some(value("--client")?),
            "--service" => service = Some(value("--service")?),
            "--issuer" => issuer = Some(value("--issuer")?),
            "-h" | "--help" => return Err(usage.to_owned()),
            _ => rest.push(a),
        }
    }
    if let Some(u) = url {
        endpoints.client_proxy_url = u;
    }
    if let Some(i) = issuer {
        endpoints.oidc_issuer = Some(i);
    }
    if endpoints.client_proxy_url.is_empty() {
        return Err(format!(
            "no security server: pass --endpoints DIR or --url URL\n{usage}"
        ));
    }
    Ok(Args {
        endpoints,
        client,
        service,
        rest,
    })
}

impl Args {
    /// The client id from `--client`, else `client_ids[role]`.
    pub(crate) fn client_for(&self, role: &str) -> Result<String, String> {
        self.client
            .clone()
            .or_else(|| self.endpoints.client_ids.get(role).cloned())
            .ok_or(format!(
                "no client id: pass --client or set client_ids.{role} in endpoints.json"
            ))
    }

    /// The service from `--service`, else `services[name]`.
    pub(crate) fn service_for(&self, name: &str) -> Result<String, String> {
        self.service
            .clone()
            .or_else(|| self.endpoints.services.get(name).cloned())
            .ok_or(format!(
                "no service: pass --service or set services.{name} in endpoints.json"
            ))
    }

    /// A client for `role` with the endpoints' TLS roots.
    pub(crate) fn bus_client(&self, role: &str) -> Result<trustbus_sdk::client::BusClient, String> {
        let mut b = trustbus_sdk::client::BusClient::builder(
            &self.endpoints.client_proxy_url,
            &self.client_for(role)?,
        );
        if let Some(p) = &self.endpoints.ca_roots_pem {
            b = b.ca_roots_pem(std::fs::read(p).map_err(|e| format!("cannot read {p}: {e}"))?);
        }
        b.build().map_err(|e| e.to_string())
    }
}

/// Prints a bus error the way an operator wants to read it, and returns a failure code.
pub(crate) fn report(url: &str, e: &BusError) -> ExitCode {
    match e {
        BusError::Transport(t) => eprintln!(
            "error: could not reach the security server at {url}: {t}\n(is a Trustbus instance running? start one with `trustbus up`)"
        ),
        BusError::Fault {
            code,
            message,
            correlation_id,
            http_status,
        } => eprintln!(
            "error: the bus refused the request: {code} (HTTP {http_status})\n  {message}\n  correlation id {correlation_id} (quote it to the operator)"
        ),
        other => eprintln!("error: {other}"),
    }
    ExitCode::FAILURE
}
