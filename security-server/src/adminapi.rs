//! The admin REST API on the admin listener: JSON under `/api/v1/`, described by
//! `/api/openapi.json`, authenticated with `Authorization: Bearer <API key>` (keys in the
//! configuration as SHA-256 hashes, `security-server api-key` makes them).
//!
//! Reads (`GET`) need any admin role; changes need `system-administrator`. A change is checked
//! like the configuration file, written to that file (see [`crate::confstore`]) and takes
//! effect for the next request, without a restart. Errors are JSON `{"code", "message"}` with
//! a stable `code`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use http_body_util::{BodyExt, Limited};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use trustbus_sdk::id::{ClientId, ServiceId};
use trustbus_sdk::rest::EndpointPattern;

use crate::access::Subject;
use crate::admin::text;
use crate::config::{
    AccessRule, ClientConfig, Config, ConnectionMode, EndpointConfig, LocalGroup, ServiceConfig,
    ServiceKind,
};
pub use crate::confstore::ChangeError as ApiError;
use crate::httpc::OutBody;
use crate::servicedesc::{self, DescError};
use crate::state::AppState;

/// Largest request body accepted.
const MAX_REQUEST_BODY: usize = 1 << 20;

/// What an admin API key may do. Role names are those of the `role` field of `[[api_keys]]`;
/// a key with a role not listed here authenticates but may use no route of this API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Role {
    /// `observer`: reads only.
    Observer,
    /// `system-administrator`: everything.
    SystemAdministrator,
}

impl Role {
    /// The role with this configuration name.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "observer" => Some(Self::Observer),
            "system-administrator" => Some(Self::SystemAdministrator),
            _ => None,
        }
    }

    /// Whether the role may call the admin API routes with `method`.
    pub fn may(self, method: &http::Method) -> bool {
        match self {
            Self::Observer => method == http::Method::GET || method == http::Method::HEAD,
            Self::SystemAdministrator => true,
        }
    }
}

/// The configured role name of the API key in `headers` (`Authorization: Bearer KEY`), if the
/// key is configured.
pub fn key_role(cfg: &Config, headers: &http::HeaderMap) -> Option<String> {
    let key = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))?;
    let hash = trustbus_pki::cert::to_hex(
        ring::digest::digest(&ring::digest::SHA256, key.trim().as_bytes()).as_ref(),
    );
    cfg.api_keys
        .iter()
        .find(|k| k.sha256.eq_ignore_ascii_case(&hash))
        .map(|k| k.role.clone())
}

fn error(e: &ApiError) -> http::Response<OutBody> {
    text(
        e.status,
        json!({ "code": e.code, "message": e.message }).to_string(),
        "application/json",
    )
}

fn bad(code: &'static str, m: impl Into<String>) -> ApiError {
    ApiError::new(400, code, m)
}

fn not_found(m: impl Into<String>) -> ApiError {
    ApiError::new(404, "not_found", m)
}

/// Handles `/api/…`.
pub async fn handle(
    state: &Arc<AppState>,
    req: http::Request<hyper::body::Incoming>,
) -> http::Response<OutBody> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    if path == "/api/openapi.json" {
        return text(200, openapi().to_string(), "application/json");
    }
    let Some(role) = key_role(&state.cfg(), &parts.headers) else {
        return error(&ApiError::new(
            401,
            "unauthenticated",
            "a valid API key is required (Authorization: Bearer)",
        ));
    };
    if !Role::from_name(&role).is_some_and(|r| r.may(&parts.method)) {
        return error(&ApiError::new(
            403,
            "forbidden",
            format!(
                "role {role} may not {} {path}; changes need system-administrator",
                parts.method
            ),
        ));
    }
    let body = match Limited::new(body, MAX_REQUEST_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return error(&ApiError::new(
                413,
                "body_too_large",
                format!("the request body is larger than {MAX_REQUEST_BODY} bytes"),
            ));
        }
    };
    let result = if crate::adminkeys::handles(&parts.method, &path) {
        crate::adminkeys::handle(state, &parts.method, &path, &body).await
    } else if parts.method == http::Method::GET {
        read(state, &path, parts.uri.query().unwrap_or("")).await
    } else {
        write(state, &parts.method, &path, &body).await
    };
    match result {
        Ok((status, v)) => text(status, v.to_string(), "application/json"),
        Err(e) => error(&e),
    }
}

fn endpoint_json(e: &EndpointConfig) -> Value {
    json!({ "method": e.method, "path": e.path })
}

fn service_json(s: &ServiceConfig) -> Value {
    json!({
        "id": s.id.to_slash(),
        "kind": format!("{:?}", s.kind).to_lowercase(),
        "url": s.url,
        "enabled": s.enabled,
        "disabled_notice": s.disabled_notice,
        "endpoints": s.endpoints.iter().map(endpoint_json).collect::<Vec<_>>(),
        "wsdl_url": s.wsdl_url,
        "openapi_url": s.openapi_url,
        "connect_timeout_ms": s.connect_timeout_ms,
        "read_timeout_ms": s.read_timeout_ms,
        "require_verified_user": s.require_verified_user,
        "min_acr": s.min_acr,
    })
}

fn access_json(a: &AccessRule) -> Value {
    json!({
        "service": a.service.to_slash(),
        "subject": a.subject,
        "endpoints": a.endpoints.iter().map(endpoint_json).collect::<Vec<_>>(),
    })
}

fn client_json(c: &ClientConfig) -> Value {
    json!({
        "id": c.id.to_slash(),
        "connection": c.connection,
        "is_certs": c.is_certs,
        "allow_unverified_user_id": c.allow_unverified_user_id,
        "id_token_audiences": c.id_token_audiences,
    })
}

fn group_json(g: &LocalGroup) -> Value {
    json!({ "code": g.code, "members": g.members.iter().map(|m| m.to_slash()).collect::<Vec<_>>() })
}

async fn read(state: &AppState, path: &str, query: &str) -> Result<(u16, Value), ApiError> {
    let cfg = state.cfg();
    let body: Value = match path {
        "/api/v1/server" => json!({
            "id": state.identity().server.to_slash(),
            "owner": state.identity().owner.to_slash(),
            "server_code": cfg.server.server_code,
        }),
        "/api/v1/clients" => {
            let diag: Value =
                serde_json::from_str(&crate::admin::diagnostics(state)).unwrap_or(Value::Null);
            let registered = |id: &str| {
                diag["clients"]
                    .as_array()
                    .and_then(|a| a.iter().find(|c| c["id"] == id))
                    .map(|c| c["registered"].clone())
                    .unwrap_or(Value::Bool(false))
            };
            Value::Array(
                cfg.clients
                    .iter()
                    .map(|c| {
                        let mut v = client_json(c);
                        v["registered"] = registered(&c.id.to_slash());
                        v
                    })
                    .collect(),
            )
        }
        "/api/v1/services" => Value::Array(cfg.services.iter().map(service_json).collect()),
        "/api/v1/access-rights" => {
            // `?service=ID` lists only the rights to that service.
            let only = match query.split('&').find_map(|kv| kv.strip_prefix("service=")) {
                Some(s) => Some(service_id(s)?),
                None => None,
            };
            Value::Array(
                cfg.access
                    .iter()
                    .filter(|a| {
                        only.as_ref()
                            .is_none_or(|s| a.service.without_version() == *s)
                    })
                    .map(access_json)
                    .collect(),
            )
        }
        "/api/v1/local-groups" => Value::Array(cfg.local_groups.iter().map(group_json).collect()),
        "/api/v1/certificates" | "/api/v1/diagnostics" => {
            let d: Value =
                serde_json::from_str(&crate::admin::diagnostics(state)).unwrap_or(Value::Null);
            if path.ends_with("certificates") {
                json!({ "signing": d["signing_certificate"], "authentication": d["authentication_certificate"] })
            } else {
                d
            }
        }
        "/api/v1/diagnostics/connection" => {
            let (status, v) = crate::admin::connection_test(state, query).await;
            return Ok((status, v));
        }
        "/api/v1/diagnostics/timestamping" => return Ok((200, timestamping(state).await)),
        _ => return Err(not_found("no such route")),
    };
    Ok((200, body))
}

/// Asks every TSA of global configuration for a timestamp, as the message log would.
async fn timestamping(state: &AppState) -> Value {
    use crate::messagelog::tsa_client::TsaClient;
    use crate::messagelog::verifyconf::VerificationConf;
    let conf = state
        .view(trustbus_sdk::fault::Origin::ClientProxy)
        .map_err(|f| f.message)
        .and_then(|v| {
            v.conf
                .files
                .get("shared-params.json")
                .ok_or_else(|| "global configuration has no shared parameters".to_owned())
                .and_then(|b| VerificationConf::from_shared_params(b).map_err(|e| e.to_string()))
        });
    let conf = match conf {
        Ok(c) => c,
        Err(e) => return json!({ "ok": false, "error": e, "tsas": [] }),
    };
    let client = TsaClient::new(std::time::Duration::from_secs(5));
    let digest = ring::digest::digest(&ring::digest::SHA256, b"trustbus diagnostics");
    let mut out = Vec::new();
    for tsa in &conf.tsas {
        let started = Instant::now();
        let r = client.timestamp(tsa, digest.as_ref()).await;
        let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        out.push(match r {
            Ok(_) => json!({ "name": tsa.name, "url": tsa.url, "ok": true, "latency_ms": ms }),
            Err(e) => {
                json!({ "name": tsa.name, "url": tsa.url, "ok": false, "latency_ms": ms, "error": e.to_string() })
            }
        });
    }
    let ok = !out.is_empty() && out.iter().all(|t| t["ok"] == true);
    let error = if conf.tsas.is_empty() {
        Some("global configuration approves no TSA")
    } else {
        None
    };
    json!({ "ok": ok, "error": error, "tsas": out })
}

// ---- request bodies -------------------------------------------------------------------------

fn parse_body<T: DeserializeOwned>(b: &[u8]) -> Result<T, ApiError> {
    let b = if b.is_empty() { b"{}".as_slice() } else { b };
    serde_json::from_slice(b).map_err(|e| bad("invalid_request", format!("request body: {e}")))
}

fn client_id(s: &str) -> Result<ClientId, ApiError> {
    ClientId::from_slash(s).map_err(|e| bad("invalid_identifier", format!("client {s:?}: {e}")))
}

fn service_id(s: &str) -> Result<ServiceId, ApiError> {
    ServiceId::from_slash(s)
        .map(|id| id.without_version())
        .map_err(|e| bad("invalid_identifier", format!("service {s:?}: {e}")))
}

/// An endpoint in a request: method (or `*`) and path pattern.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointIn {
    method: String,
    path: String,
}

/// Checked and normalised like the configuration's endpoints: no `.`/`..` segments, no
/// encoded separators or dots.
fn endpoints(v: Vec<EndpointIn>) -> Result<Vec<EndpointConfig>, ApiError> {
    let mut out: Vec<EndpointConfig> = Vec::new();
    for e in v {
        let p = EndpointPattern::new(&e.method, &e.path).map_err(|err| {
            bad(
                "invalid_endpoint",
                format!("endpoint {} {}: {err}", e.method, e.path),
            )
        })?;
        // Requests carry upper-case methods; a `get` grant would silently never match.
        let e = EndpointConfig {
            method: p.method().to_ascii_uppercase(),
            path: p.path().to_owned(),
        };
        if !out.contains(&e) {
            out.push(e);
        }
    }
    Ok(out)
}

fn backend_url(u: &str) -> Result<String, ApiError> {
    let ok = (u.starts_with("http://") || u.starts_with("https://"))
        && u.parse::<http::Uri>().is_ok_and(|x| x.host().is_some());
    if ok {
        Ok(u.to_owned())
    } else {
        Err(bad(
            "invalid_url",
            format!("{u:?} is not an http:// or https:// URL"),
        ))
    }
}

fn absolute(p: Option<PathBuf>, what: &str) -> Result<Option<PathBuf>, ApiError> {
    match p {
        Some(p) if !p.is_absolute() => Err(bad(
            "invalid_request",
            format!("{what} must be an absolute path"),
        )),
        p => Ok(p),
    }
}

fn desc_error(e: DescError) -> ApiError {
    match e {
        DescError::Unavailable(m) => ApiError::new(502, "description_unavailable", m),
        DescError::Invalid(m) => bad("invalid_description", m),
    }
}

// ---- changes --------------------------------------------------------------------------------

async fn write(
    state: &AppState,
    method: &http::Method,
    path: &str,
    body: &[u8],
) -> Result<(u16, Value), ApiError> {
    use http::Method;
    let rest = path
        .strip_prefix("/api/v1/")
        .ok_or_else(|| not_found("no such route"))?;
    let file = state.config_file.as_ref().ok_or_else(|| {
        ApiError::new(
            503,
            "read_only",
            "this server was started without a configuration file to write changes to",
        )
    })?;
    let (collection, item) = rest.split_once('/').unwrap_or((rest, ""));
    match (method, collection, item) {
        (&Method::POST, "clients", "") => {
            let c = new_client(parse_body(body)?)?;
            file.update(state, |cfg| {
                if cfg.client(&c.id).is_some() {
                    return Err(ApiError::new(
                        409,
                        "already_exists",
                        format!("client {} exists", c.id.to_slash()),
                    ));
                }
                cfg.clients.push(c.clone());
                Ok((201, client_json(&c)))
            })
            .await
        }
        (&Method::PUT, "clients", id) if !id.is_empty() => {
            let id = client_id(id)?;
            let upd: ClientUpdate = parse_body(body)?;
            let certs = upd.is_certs.map(checked_certs).transpose()?;
            file.update(state, |cfg| {
                let c = cfg
                    .clients
                    .iter_mut()
                    .find(|c| c.id == id)
                    .ok_or_else(|| not_found(format!("no client {}", id.to_slash())))?;
                if let Some(m) = upd.connection {
                    c.connection = m;
                }
                if let Some(certs) = certs {
                    c.is_certs = certs;
                }
                if let Some(a) = upd.allow_unverified_user_id {
                    c.allow_unverified_user_id = a;
                }
                if let Some(a) = upd.id_token_audiences {
                    c.id_token_audiences = a;
                }
                Ok((200, client_json(c)))
            })
            .await
        }
        (&Method::DELETE, "clients", id) if !id.is_empty() => {
            let id = client_id(id)?;
            file.update(state, |cfg| {
                if !cfg.clients.iter().any(|c| c.id == id) {
                    return Err(not_found(format!("no client {}", id.to_slash())));
                }
                if cfg.services.iter().any(|s| s.id.provider() == &id) {
                    return Err(ApiError::new(
                        409,
                        "in_use",
                        format!(
                            "client {} provides services; remove them first",
                            id.to_slash()
                        ),
                    ));
                }
                cfg.clients.retain(|c| c.id != id);
                Ok((200, json!({ "removed": id.to_slash() })))
            })
            .await
        }
        (&Method::POST, "services", "") => add_services(state, file, parse_body(body)?).await,
        (&Method::POST, "services", item) => {
            let (id, action) = item
                .rsplit_once('/')
                .ok_or_else(|| not_found("no such route"))?;
            let id = service_id(id)?;
            match action {
                "enable" | "disable" => {
                    let t: Toggle = parse_body(body)?;
                    let enable = action == "enable";
                    file.update(state, |cfg| {
                        let s = service_mut(cfg, &id)?;
                        s.enabled = enable;
                        if !enable {
                            s.disabled_notice = t.notice.unwrap_or_default();
                        }
                        Ok((200, service_json(s)))
                    })
                    .await
                }
                "refresh" => refresh(state, file, &id).await,
                _ => Err(not_found("no such route")),
            }
        }
        (&Method::PUT, "services", id) if !id.is_empty() => {
            let id = service_id(id)?;
            let upd: ServiceUpdate = parse_body(body)?;
            let url = upd.url.as_deref().map(backend_url).transpose()?;
            let eps = upd.endpoints.map(endpoints).transpose()?;
            let tls_ca = absolute(upd.tls_ca, "tls_ca")?;
            file.update(state, |cfg| {
                let s = service_mut(cfg, &id)?;
                if let Some(u) = url {
                    s.url = u;
                }
                if let Some(e) = eps {
                    if s.kind != ServiceKind::Rest && !e.is_empty() {
                        return Err(bad(
                            "endpoints_need_rest",
                            "only REST services have endpoints",
                        ));
                    }
                    s.endpoints = e;
                }
                if tls_ca.is_some() {
                    s.tls_ca = tls_ca;
                }
                if let Some(ms) = upd.connect_timeout_ms {
                    s.connect_timeout_ms = ms;
                }
                if let Some(ms) = upd.read_timeout_ms {
                    s.read_timeout_ms = ms;
                }
                if let Some(v) = upd.require_verified_user {
                    s.require_verified_user = v;
                }
                if let Some(a) = upd.min_acr {
                    // An empty string clears the minimum level.
                    s.min_acr = (!a.is_empty()).then_some(a);
                }
                Ok((200, service_json(s)))
            })
            .await
        }
        (&Method::DELETE, "services", id) if !id.is_empty() => {
            let id = service_id(id)?;
            file.update(state, |cfg| {
                service_mut(cfg, &id)?;
                cfg.services.retain(|s| s.id.without_version() != id);
                let before = cfg.access.len();
                cfg.access.retain(|a| a.service.without_version() != id);
                Ok((
                    200,
                    json!({ "removed": id.to_slash(), "access_rights_removed": before - cfg.access.len() }),
                ))
            })
            .await
        }
        (&Method::POST, "access-rights", "") => grant(state, file, parse_body(body)?).await,
        (&Method::POST, "access-rights", "revoke") => revoke(state, file, parse_body(body)?).await,
        (&Method::POST, "local-groups", "") => {
            let g: GroupIn = parse_body(body)?;
            trustbus_sdk::id::validate_segment("local group", &g.code)
                .map_err(|e| bad("invalid_identifier", e.to_string()))?;
            let members = members(g.members)?;
            file.update(state, |cfg| {
                if cfg.local_groups.iter().any(|x| x.code == g.code) {
                    return Err(ApiError::new(
                        409,
                        "already_exists",
                        format!("local group {} exists", g.code),
                    ));
                }
                let group = LocalGroup {
                    code: g.code.clone(),
                    members,
                };
                let v = group_json(&group);
                cfg.local_groups.push(group);
                Ok((201, v))
            })
            .await
        }
        (&Method::DELETE, "local-groups", code) if !code.is_empty() && !code.contains('/') => {
            let code = code.to_owned();
            file.update(state, |cfg| {
                if !cfg.local_groups.iter().any(|g| g.code == code) {
                    return Err(not_found(format!("no local group {code}")));
                }
                cfg.local_groups.retain(|g| g.code != code);
                // A later group with the same code must not inherit these rights.
                let subject = Subject::LocalGroup(code.clone());
                let before = cfg.access.len();
                cfg.access
                    .retain(|a| Subject::parse(&a.subject).ok().as_ref() != Some(&subject));
                Ok((
                    200,
                    json!({ "removed": code, "access_rights_removed": before - cfg.access.len() }),
                ))
            })
            .await
        }
        (&Method::POST, "local-groups", item) => {
            let code = item
                .strip_suffix("/members")
                .ok_or_else(|| not_found("no such route"))?
                .to_owned();
            let add = members(parse_body::<MembersIn>(body)?.members)?;
            file.update(state, |cfg| {
                let g = group_mut(cfg, &code)?;
                for m in add {
                    if !g.members.contains(&m) {
                        g.members.push(m);
                    }
                }
                Ok((200, group_json(g)))
            })
            .await
        }
        (&Method::DELETE, "local-groups", item) => {
            let (code, member) = item
                .split_once("/members/")
                .ok_or_else(|| not_found("no such route"))?;
            let (code, member) = (code.to_owned(), client_id(member)?);
            file.update(state, |cfg| {
                let g = group_mut(cfg, &code)?;
                if !g.members.contains(&member) {
                    return Err(not_found(format!(
                        "{} is not a member of {code}",
                        member.to_slash()
                    )));
                }
                g.members.retain(|m| m != &member);
                Ok((200, group_json(g)))
            })
            .await
        }
        _ => Err(ApiError::new(
            405,
            "method_not_allowed",
            format!("{method} {path} is not a route of this API"),
        )),
    }
}

fn service_mut<'a>(cfg: &'a mut Config, id: &ServiceId) -> Result<&'a mut ServiceConfig, ApiError> {
    cfg.services
        .iter_mut()
        .find(|s| s.id.without_version() == *id)
        .ok_or_else(|| not_found(format!("no service {}", id.to_slash())))
}

fn group_mut<'a>(cfg: &'a mut Config, code: &str) -> Result<&'a mut LocalGroup, ApiError> {
    cfg.local_groups
        .iter_mut()
        .find(|g| g.code == code)
        .ok_or_else(|| not_found(format!("no local group {code}")))
}

fn members(v: Vec<String>) -> Result<Vec<ClientId>, ApiError> {
    v.iter().map(|m| client_id(m)).collect()
}

fn checked_certs(v: Vec<String>) -> Result<Vec<String>, ApiError> {
    v.into_iter()
        .map(|c| {
            let c = c.replace(':', "").to_ascii_lowercase();
            if c.len() == 64 && c.bytes().all(|b| b.is_ascii_hexdigit()) {
                Ok(c)
            } else {
                Err(bad(
                    "invalid_certificate_hash",
                    format!("{c:?} is not a SHA-256 fingerprint (64 hex digits)"),
                ))
            }
        })
        .collect()
}

/// `POST /api/v1/clients`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientIn {
    id: String,
    #[serde(default)]
    connection: ConnectionMode,
    #[serde(default)]
    is_certs: Vec<String>,
    #[serde(default = "yes")]
    allow_unverified_user_id: bool,
    #[serde(default)]
    id_token_audiences: Vec<String>,
}

fn yes() -> bool {
    true
}

fn new_client(c: ClientIn) -> Result<ClientConfig, ApiError> {
    Ok(ClientConfig {
        id: client_id(&c.id)?,
        connection: c.connection,
        is_certs: checked_certs(c.is_certs)?,
        allow_unverified_user_id: c.allow_unverified_user_id,
        id_token_audiences: c.id_token_audiences,
    })
}

/// `PUT /api/v1/clients/{id}`: only the fields given change.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientUpdate {
    connection: Option<ConnectionMode>,
    is_certs: Option<Vec<String>>,
    allow_unverified_user_id: Option<bool>,
    id_token_audiences: Option<Vec<String>>,
}

/// `POST /api/v1/services/{id}/enable|disable`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Toggle {
    notice: Option<String>,
}

/// `PUT /api/v1/services/{id}`: only the fields given change.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceUpdate {
    url: Option<String>,
    endpoints: Option<Vec<EndpointIn>>,
    tls_ca: Option<PathBuf>,
    connect_timeout_ms: Option<u64>,
    read_timeout_ms: Option<u64>,
    require_verified_user: Option<bool>,
    min_acr: Option<String>,
}

/// `POST /api/v1/services`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceIn {
    /// One service: `INSTANCE/CLASS/MEMBER/SUBSYSTEM/CODE`.
    id: Option<String>,
    /// SOAP only, with `wsdl_url`: a service for every operation of the WSDL.
    provider: Option<String>,
    kind: ServiceKind,
    url: Option<String>,
    #[serde(default)]
    endpoints: Vec<EndpointIn>,
    wsdl_url: Option<String>,
    openapi_url: Option<String>,
    tls_ca: Option<PathBuf>,
    connect_timeout_ms: Option<u64>,
    read_timeout_ms: Option<u64>,
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    disabled_notice: String,
    #[serde(default)]
    require_verified_user: bool,
    min_acr: Option<String>,
}

/// A service entry with the defaults of the configuration file.
fn service_entry(id: ServiceId, kind: ServiceKind, url: String) -> ServiceConfig {
    ServiceConfig {
        id,
        kind,
        url,
        enabled: true,
        disabled_notice: String::new(),
        connect_timeout_ms: 5000,
        read_timeout_ms: 60000,
        endpoints: Vec::new(),
        wsdl: None,
        wsdl_url: None,
        openapi: None,
        openapi_url: None,
        tls_ca: None,
        require_verified_user: false,
        min_acr: None,
    }
}

fn hex12(s: &str) -> String {
    trustbus_pki::cert::to_hex(ring::digest::digest(&ring::digest::SHA256, s.as_bytes()).as_ref())
        [..12]
        .to_owned()
}

/// The WSDL at `source`, read, checked and stored for `getWsdl`; its operations and the path
/// it is stored at.
async fn load_wsdl(
    state: &AppState,
    provider: &ClientId,
    source: &str,
    tls_ca: Option<&std::path::Path>,
) -> Result<(trustbus_sdk::wsdl::WsdlInfo, PathBuf), ApiError> {
    let bytes = servicedesc::fetch(&state.http, source, tls_ca)
        .await
        .map_err(desc_error)?;
    let info = trustbus_sdk::wsdl::read_wsdl(&bytes)
        .map_err(|e| bad("invalid_description", format!("{source}: {e}")))?;
    let path = servicedesc::stored_path(
        &state.cfg().server.data_dir,
        &format!("{}-{}", provider.to_slash(), hex12(source)),
        "wsdl",
    );
    servicedesc::store(&path, &bytes)
        .map_err(|e| ApiError::new(500, "description_not_stored", e.to_string()))?;
    Ok((info, path))
}

/// The OpenAPI document at `source`, read, checked and stored for `getOpenAPI`; its
/// endpoints and the path it is stored at.
async fn load_openapi(
    state: &AppState,
    id: &ServiceId,
    source: &str,
    tls_ca: Option<&std::path::Path>,
) -> Result<(Vec<EndpointConfig>, PathBuf), ApiError> {
    let bytes = servicedesc::fetch(&state.http, source, tls_ca)
        .await
        .map_err(desc_error)?;
    let eps = servicedesc::openapi_endpoints(&bytes).map_err(|e| match e {
        DescError::Invalid(m) => bad("invalid_description", format!("{source}: {m}")),
        other => desc_error(other),
    })?;
    let path =
        servicedesc::stored_path(&state.cfg().server.data_dir, &id.to_slash(), "openapi.json");
    servicedesc::store(&path, &bytes)
        .map_err(|e| ApiError::new(500, "description_not_stored", e.to_string()))?;
    Ok((eps, path))
}

async fn add_services(
    state: &AppState,
    file: &crate::confstore::ConfigFile,
    s: ServiceIn,
) -> Result<(u16, Value), ApiError> {
    let tls_ca = absolute(s.tls_ca, "tls_ca")?;
    let url = s.url.as_deref().map(backend_url).transpose()?;
    let mut new: Vec<ServiceConfig> = Vec::new();
    match s.kind {
        ServiceKind::Rest => {
            if s.provider.is_some() || s.wsdl_url.is_some() {
                return Err(bad(
                    "invalid_request",
                    "a REST service takes id, url, endpoints and openapi_url (not provider or wsdl_url)",
                ));
            }
            let id = service_id(
                s.id.as_deref()
                    .ok_or_else(|| bad("invalid_request", "give id"))?,
            )?;
            let url =
                url.ok_or_else(|| bad("invalid_request", "give url (the backend base URL)"))?;
            let mut svc = service_entry(id.clone(), ServiceKind::Rest, url);
            svc.endpoints = endpoints(s.endpoints)?;
            if let Some(src) = s.openapi_url {
                if !svc.endpoints.is_empty() {
                    return Err(bad(
                        "invalid_request",
                        "give endpoints or openapi_url, not both",
                    ));
                }
                let (eps, path) = load_openapi(state, &id, &src, tls_ca.as_deref()).await?;
                svc.endpoints = eps;
                svc.openapi = Some(path);
                svc.openapi_url = Some(src);
            }
            new.push(svc);
        }
        ServiceKind::Soap => {
            if !s.endpoints.is_empty() || s.openapi_url.is_some() {
                return Err(bad(
                    "endpoints_need_rest",
                    "only REST services have endpoints",
                ));
            }
            let (provider, code) = match (&s.id, &s.provider) {
                (Some(id), None) => {
                    let id = service_id(id)?;
                    (id.provider().clone(), Some(id.code().to_owned()))
                }
                (None, Some(p)) => (client_id(p)?, None),
                _ => {
                    return Err(bad(
                        "invalid_request",
                        "give either id (one service) or provider with wsdl_url (every operation)",
                    ));
                }
            };
            let (codes, url, wsdl) = match &s.wsdl_url {
                Some(src) => {
                    let (info, path) = load_wsdl(state, &provider, src, tls_ca.as_deref()).await?;
                    let codes = match code {
                        Some(c) if !info.operations.contains(&c) => {
                            return Err(bad(
                                "not_in_description",
                                format!("the WSDL has no operation {c}"),
                            ));
                        }
                        Some(c) => vec![c],
                        None => info.operations.clone(),
                    };
                    let url = match url {
                        Some(u) => u,
                        None => backend_url(info.addresses.first().ok_or_else(|| {
                            bad(
                                "invalid_request",
                                "the WSDL names no soap:address; give url",
                            )
                        })?)?,
                    };
                    (codes, url, Some((path, src.clone())))
                }
                None => {
                    let code =
                        code.ok_or_else(|| bad("invalid_request", "give wsdl_url with provider"))?;
                    let url = url.ok_or_else(|| bad("invalid_request", "give url"))?;
                    (vec![code], url, None)
                }
            };
            for c in codes {
                let id = ServiceId::new(provider.clone(), &c, None)
                    .map_err(|e| bad("invalid_identifier", e.to_string()))?;
                let mut svc = service_entry(id, ServiceKind::Soap, url.clone());
                if let Some((p, src)) = &wsdl {
                    svc.wsdl = Some(p.clone());
                    svc.wsdl_url = Some(src.clone());
                }
                new.push(svc);
            }
        }
    }
    for svc in &mut new {
        svc.tls_ca = tls_ca.clone();
        svc.enabled = s.enabled;
        svc.disabled_notice = s.disabled_notice.clone();
        if let Some(ms) = s.connect_timeout_ms {
            svc.connect_timeout_ms = ms;
        }
        if let Some(ms) = s.read_timeout_ms {
            svc.read_timeout_ms = ms;
        }
        svc.require_verified_user = s.require_verified_user;
        svc.min_acr = s.min_acr.clone();
    }
    file.update(state, |cfg| {
        for svc in &new {
            if cfg.client(svc.id.provider()).is_none() {
                return Err(bad(
                    "unknown_client",
                    format!(
                        "{} is not a client of this server; add it first",
                        svc.id.provider().to_slash()
                    ),
                ));
            }
            if cfg.service(&svc.id).is_some() {
                return Err(ApiError::new(
                    409,
                    "already_exists",
                    format!("service {} exists", svc.id.to_slash()),
                ));
            }
        }
        cfg.services.extend(new.iter().cloned());
        Ok((201, Value::Array(new.iter().map(service_json).collect())))
    })
    .await
}

/// Reads the service's description again: REST endpoints from its OpenAPI document; for SOAP,
/// the WSDL, adding services for new operations and removing those (and their access rights)
/// whose operation is gone.
async fn refresh(
    state: &AppState,
    file: &crate::confstore::ConfigFile,
    id: &ServiceId,
) -> Result<(u16, Value), ApiError> {
    let cfg = state.cfg();
    let svc = cfg
        .service(id)
        .cloned()
        .ok_or_else(|| not_found(format!("no service {}", id.to_slash())))?;
    if let Some(src) = &svc.openapi_url {
        let (eps, path) = load_openapi(state, id, src, svc.tls_ca.as_deref()).await?;
        return file
            .update(state, |cfg| {
                let s = service_mut(cfg, id)?;
                s.endpoints = eps;
                s.openapi = Some(path);
                Ok((200, json!({ "service": service_json(s) })))
            })
            .await;
    }
    let Some(src) = &svc.wsdl_url else {
        return Err(ApiError::new(
            409,
            "no_description",
            format!("{} was not added from a WSDL or OpenAPI URL", id.to_slash()),
        ));
    };
    let provider = svc.id.provider().clone();
    let (info, path) = load_wsdl(state, &provider, src, svc.tls_ca.as_deref()).await?;
    file.update(state, |cfg| {
        let same_wsdl = |s: &ServiceConfig| {
            s.id.provider() == &provider && s.wsdl_url.as_deref() == Some(src.as_str())
        };
        let gone: Vec<ServiceId> = cfg
            .services
            .iter()
            .filter(|s| same_wsdl(s) && !info.operations.iter().any(|o| o == s.id.code()))
            .map(|s| s.id.without_version())
            .collect();
        cfg.services
            .retain(|s| !gone.contains(&s.id.without_version()));
        cfg.access
            .retain(|a| !gone.contains(&a.service.without_version()));
        let mut added = Vec::new();
        for op in &info.operations {
            let sid = ServiceId::new(provider.clone(), op, None)
                .map_err(|e| bad("invalid_description", e.to_string()))?;
            if cfg.service(&sid).is_none() {
                let mut n = svc.clone();
                n.id = sid.clone();
                added.push(sid.to_slash());
                cfg.services.push(n);
            }
        }
        for s in cfg.services.iter_mut().filter(|s| same_wsdl(s)) {
            s.wsdl = Some(path.clone());
        }
        Ok((
            200,
            json!({
                "operations": info.operations,
                "added": added,
                "removed": gone.iter().map(|g| g.to_slash()).collect::<Vec<_>>(),
            }),
        ))
    })
    .await
}

/// `POST /api/v1/access-rights` and `…/revoke`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccessIn {
    service: String,
    subject: String,
    #[serde(default)]
    endpoints: Vec<EndpointIn>,
}

struct CheckedAccess {
    service: ServiceId,
    subject: Subject,
    subject_text: String,
    endpoints: Vec<EndpointConfig>,
}

fn checked_access(a: AccessIn) -> Result<CheckedAccess, ApiError> {
    let service = service_id(&a.service)?;
    let subject = Subject::parse(&a.subject).map_err(|e| bad("invalid_subject", e.to_string()))?;
    Ok(CheckedAccess {
        service,
        subject,
        subject_text: a.subject,
        endpoints: endpoints(a.endpoints)?,
    })
}

fn rule_matches(rule: &AccessRule, a: &CheckedAccess) -> bool {
    rule.service.without_version() == a.service
        && Subject::parse(&rule.subject).ok().as_ref() == Some(&a.subject)
}

async fn grant(
    state: &AppState,
    file: &crate::confstore::ConfigFile,
    a: AccessIn,
) -> Result<(u16, Value), ApiError> {
    let a = checked_access(a)?;
    file.update(state, |cfg| {
        let svc = cfg
            .service(&a.service)
            .ok_or_else(|| not_found(format!("no service {}", a.service.to_slash())))?;
        if svc.kind != ServiceKind::Rest && !a.endpoints.is_empty() {
            return Err(bad(
                "endpoints_need_rest",
                "only REST services have endpoints",
            ));
        }
        if let Subject::LocalGroup(code) = &a.subject
            && !cfg.local_groups.iter().any(|g| &g.code == code)
        {
            return Err(bad(
                "unknown_local_group",
                format!("no local group {code}; create it first"),
            ));
        }
        let idx: Vec<usize> = (0..cfg.access.len())
            .filter(|&i| rule_matches(&cfg.access[i], &a))
            .collect();
        match idx.first() {
            None => cfg.access.push(AccessRule {
                service: a.service.clone(),
                subject: a.subject_text.clone(),
                endpoints: a.endpoints.clone(),
            }),
            // Already granted for the whole service: nothing is wider.
            Some(_) if idx.iter().any(|&i| cfg.access[i].endpoints.is_empty()) => {}
            Some(&first) if a.endpoints.is_empty() => {
                cfg.access[first].endpoints.clear();
                let mut i = 0;
                cfg.access.retain(|r| {
                    let keep = i == first || !rule_matches(r, &a);
                    i += 1;
                    keep
                });
            }
            Some(&first) => {
                for e in &a.endpoints {
                    if !idx.iter().any(|&i| cfg.access[i].endpoints.contains(e)) {
                        cfg.access[first].endpoints.push(e.clone());
                    }
                }
            }
        }
        Ok((200, matching_rules_json(cfg, &a)))
    })
    .await
}

/// The access rules `a` names, as the grant and revoke answers list them afterwards.
fn matching_rules_json(cfg: &Config, a: &CheckedAccess) -> Value {
    Value::Array(
        cfg.access
            .iter()
            .filter(|r| rule_matches(r, a))
            .map(access_json)
            .collect(),
    )
}

async fn revoke(
    state: &AppState,
    file: &crate::confstore::ConfigFile,
    a: AccessIn,
) -> Result<(u16, Value), ApiError> {
    let a = checked_access(a)?;
    file.update(state, |cfg| {
        if !cfg.access.iter().any(|r| rule_matches(r, &a)) {
            return Err(not_found(format!(
                "{} has no access right to {}",
                a.subject_text,
                a.service.to_slash()
            )));
        }
        if a.endpoints.is_empty() {
            cfg.access.retain(|r| !rule_matches(r, &a));
        } else {
            if cfg
                .access
                .iter()
                .any(|r| rule_matches(r, &a) && r.endpoints.is_empty())
            {
                return Err(ApiError::new(
                    409,
                    "whole_service_grant",
                    "the subject may call the whole service; revoke without endpoints, then grant the endpoints to keep",
                ));
            }
            let mut found = false;
            for r in cfg.access.iter_mut().filter(|r| rule_matches(r, &a)) {
                let before = r.endpoints.len();
                r.endpoints.retain(|e| !a.endpoints.contains(e));
                found |= r.endpoints.len() != before;
            }
            if !found {
                return Err(not_found("none of those endpoints is granted"));
            }
            // A rule whose last endpoint went must go, not widen to the whole service.
            cfg.access
                .retain(|r| !(rule_matches(r, &a) && r.endpoints.is_empty()));
        }
        Ok((200, matching_rules_json(cfg, &a)))
    })
    .await
}

/// `POST /api/v1/local-groups`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupIn {
    code: String,
    #[serde(default)]
    members: Vec<String>,
}

/// `POST /api/v1/local-groups/{code}/members`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MembersIn {
    members: Vec<String>,
}

// ---- OpenAPI --------------------------------------------------------------------------------

fn op(summary: &str, ok: &str, body: Option<&str>, errors: &[&str]) -> Value {
    let mut responses = serde_json::Map::new();
    let (code, schema) = ok.split_once(':').unwrap_or(("200", ok));
    responses.insert(
        code.into(),
        json!({ "description": summary, "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } } }),
    );
    for e in ["401", "403"].iter().chain(errors) {
        responses.insert(
            (*e).into(),
            json!({ "$ref": format!("#/components/responses/E{e}") }),
        );
    }
    let mut v = json!({ "summary": summary, "responses": responses });
    if let Some(b) = body {
        v["requestBody"] = json!({ "required": true, "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{b}") } } } });
    }
    v
}

fn path_param(name: &str, what: &str) -> Value {
    json!([{ "name": name, "in": "path", "required": true, "description": what, "schema": { "type": "string" } }])
}

/// The OpenAPI 3 description of this API.
pub fn openapi() -> Value {
    let mut doc = openapi_core();
    if let (Some(paths), Value::Object(more)) = (
        doc["paths"].as_object_mut(),
        crate::adminkeys::openapi_paths(),
    ) {
        paths.extend(more);
    }
    doc
}

fn openapi_core() -> Value {
    let w = ["400", "404", "409", "500", "503"];
    let error_response = |d: &str| json!({ "description": d, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } });
    let endpoint = json!({ "type": "object", "required": ["method", "path"], "additionalProperties": false, "properties": {
        "method": { "type": "string", "description": "HTTP method or *" },
        "path": { "type": "string", "description": "path pattern: * within a segment, ** any segments; no . or .. segments, no %2e %2f %5c" } } });
    let connection = || json!({ "type": "string", "enum": ["http", "https", "https-auth"] });
    json!({
      "openapi": "3.0.3",
      "info": { "title": "Trustbus security server admin API", "version": "1",
        "description": "GET needs an observer or system-administrator key; every change needs system-administrator. Changes are written to the configuration file and take effect without a restart." },
      "components": {
        "securitySchemes": { "apiKey": { "type": "http", "scheme": "bearer" } },
        "responses": {
          "E400": error_response("invalid input; code is one of invalid_request, invalid_identifier, invalid_endpoint, invalid_subject, invalid_url, invalid_certificate_hash, invalid_configuration, invalid_description, not_in_description, endpoints_need_rest, unknown_client, unknown_local_group, invalid_certificate, certificate_not_for_a_key, certificate_profile_mismatch, certificate_not_trusted, certificate_not_good, cannot_sign_request"),
          "E401": error_response("no or unknown API key (code unauthenticated)"),
          "E403": error_response("the key's role may not do this (code forbidden)"),
          "E404": error_response("no such object or route (code not_found)"),
          "E409": error_response("conflict: already_exists, in_use, whole_service_grant, no_description, configuration_changed_on_disk"),
          "E500": error_response("the change could not be written (configuration_not_written, configuration_unreadable, description_not_stored, key_store_error, identity_unloadable)"),
          "E502": error_response("a WSDL or OpenAPI URL could not be read (description_unavailable); OCSP responder or central server failed (ocsp_unavailable, central_server_refused)"),
          "E503": error_response("started without a configuration file (read_only), without its token (keys_unavailable, token_locked), without global configuration (no_global_configuration, no_management_service)")
        },
        "schemas": {
          "Error": { "type": "object", "required": ["code", "message"], "properties": { "code": { "type": "string" }, "message": { "type": "string" } } },
          "Object": { "type": "object" },
          "List": { "type": "array", "items": { "type": "object" } },
          "Endpoint": endpoint,
          "ClientIn": { "type": "object", "required": ["id"], "additionalProperties": false, "properties": {
              "id": { "type": "string", "example": "DEV/GOV/1000/portal" },
              "connection": connection(),
              "is_certs": { "type": "array", "items": { "type": "string", "description": "SHA-256 of an information system's TLS certificate, hex" } },
              "allow_unverified_user_id": { "type": "boolean", "default": true },
              "id_token_audiences": { "type": "array", "items": { "type": "string" }, "description": "client_ids the end users' ID tokens presented by this client must be issued to" } } },
          "ClientUpdate": { "type": "object", "additionalProperties": false, "properties": {
              "connection": connection(),
              "is_certs": { "type": "array", "items": { "type": "string" } },
              "allow_unverified_user_id": { "type": "boolean" },
              "id_token_audiences": { "type": "array", "items": { "type": "string" } } } },
          "ServiceIn": { "type": "object", "required": ["kind"], "additionalProperties": false,
            "description": "REST: id, url, and endpoints or openapi_url (OpenAPI 3 JSON; its paths and methods become endpoints, {param} becoming *). SOAP: id and url, or provider and wsdl_url (every WSDL operation becomes a service; url defaults to the WSDL's soap:address).",
            "properties": {
              "id": { "type": "string", "example": "DEV/GOV/2000/prov/persons" },
              "provider": { "type": "string" },
              "kind": { "type": "string", "enum": ["rest", "soap"] },
              "url": { "type": "string" },
              "endpoints": { "type": "array", "items": { "$ref": "#/components/schemas/Endpoint" } },
              "wsdl_url": { "type": "string", "description": "http(s):// URL or absolute file path" },
              "openapi_url": { "type": "string", "description": "http(s):// URL or absolute file path" },
              "tls_ca": { "type": "string", "description": "absolute path of a PEM file (https:// backends and description URLs)" },
              "connect_timeout_ms": { "type": "integer", "minimum": 0 },
              "read_timeout_ms": { "type": "integer", "minimum": 0 },
              "enabled": { "type": "boolean", "default": true },
              "disabled_notice": { "type": "string" },
              "require_verified_user": { "type": "boolean", "default": false, "description": "only for citizens the consumer's security server verified (Client.InvalidUserIdentity otherwise)" },
              "min_acr": { "type": "string", "description": "weakest accepted login level (acr); needs require_verified_user" } } },
          "ServiceUpdate": { "type": "object", "additionalProperties": false, "properties": {
              "url": { "type": "string" },
              "endpoints": { "type": "array", "items": { "$ref": "#/components/schemas/Endpoint" } },
              "tls_ca": { "type": "string" },
              "connect_timeout_ms": { "type": "integer", "minimum": 0 },
              "read_timeout_ms": { "type": "integer", "minimum": 0 },
              "require_verified_user": { "type": "boolean" },
              "min_acr": { "type": "string", "description": "empty clears it" } } },
          "Toggle": { "type": "object", "additionalProperties": false, "properties": { "notice": { "type": "string", "description": "shown to callers while disabled (Server.ServerProxy.ServiceDisabled)" } } },
          "AccessIn": { "type": "object", "required": ["service", "subject"], "additionalProperties": false, "properties": {
              "service": { "type": "string" },
              "subject": { "type": "string", "description": "SUBSYSTEM:I/C/M/S, MEMBER:I/C/M, GLOBALGROUP:I/code or LOCALGROUP:code" },
              "endpoints": { "type": "array", "description": "REST only; empty = the whole service", "items": { "$ref": "#/components/schemas/Endpoint" } } } },
          "GroupIn": { "type": "object", "required": ["code"], "additionalProperties": false, "properties": {
              "code": { "type": "string" }, "members": { "type": "array", "items": { "type": "string" } } } },
          "MembersIn": { "type": "object", "required": ["members"], "additionalProperties": false, "properties": {
              "members": { "type": "array", "items": { "type": "string" } } } }
        }
      },
      "security": [ { "apiKey": [] } ],
      "paths": {
        "/api/v1/server": { "get": op("This server's identity", "Object", None, &[]) },
        "/api/v1/clients": {
          "get": op("Hosted clients with connection mode and registration state", "List", None, &[]),
          "post": op("Add a hosted client", "201:Object", Some("ClientIn"), &w) },
        "/api/v1/clients/{id}": { "parameters": path_param("id", "INSTANCE/CLASS/MEMBER[/SUBSYSTEM], slashes unescaped"),
          "put": op("Change a client's connection mode, certificates or user id policy", "Object", Some("ClientUpdate"), &w),
          "delete": op("Remove a client that provides no services", "Object", None, &w) },
        "/api/v1/services": {
          "get": op("Services provided here", "List", None, &[]),
          "post": op("Add a REST service, or SOAP services from a WSDL", "201:List", Some("ServiceIn"), &["400", "404", "409", "500", "502", "503"]) },
        "/api/v1/services/{id}": { "parameters": path_param("id", "INSTANCE/CLASS/MEMBER/SUBSYSTEM/CODE"),
          "put": op("Change a service's URL, endpoints, TLS trust or timeouts", "Object", Some("ServiceUpdate"), &w),
          "delete": op("Remove a service and its access rights", "Object", None, &w) },
        "/api/v1/services/{id}/enable": { "parameters": path_param("id", "service id"),
          "post": op("Enable a service", "Object", None, &w) },
        "/api/v1/services/{id}/disable": { "parameters": path_param("id", "service id"),
          "post": op("Disable a service; callers get Server.ServerProxy.ServiceDisabled with the notice", "Object", Some("Toggle"), &w) },
        "/api/v1/services/{id}/refresh": { "parameters": path_param("id", "service id"),
          "post": op("Read the service's WSDL or OpenAPI document again", "Object", None, &["400", "404", "409", "500", "502", "503"]) },
        "/api/v1/access-rights": {
          "get": { "summary": "Access rights", "parameters": [ { "name": "service", "in": "query", "required": false, "schema": { "type": "string" }, "description": "only the rights to this service" } ],
            "responses": { "200": { "description": "list", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/List" } } } },
              "400": { "$ref": "#/components/responses/E400" }, "401": { "$ref": "#/components/responses/E401" }, "403": { "$ref": "#/components/responses/E403" } } },
          "post": op("Grant access to a service or to REST endpoints of it", "List", Some("AccessIn"), &w) },
        "/api/v1/access-rights/revoke": {
          "post": op("Revoke access to a service, or to some of its endpoints", "List", Some("AccessIn"), &w) },
        "/api/v1/local-groups": {
          "get": op("Local groups", "List", None, &[]),
          "post": op("Create a local group", "201:Object", Some("GroupIn"), &w) },
        "/api/v1/local-groups/{code}": { "parameters": path_param("code", "group code"),
          "delete": op("Delete a local group and the access rights granted to it", "Object", None, &w) },
        "/api/v1/local-groups/{code}/members": { "parameters": path_param("code", "group code"),
          "post": op("Add members", "Object", Some("MembersIn"), &w) },
        "/api/v1/local-groups/{code}/members/{member}": {
          "parameters": [ path_param("code", "group code")[0].clone(), path_param("member", "client id")[0].clone() ],
          "delete": op("Remove a member", "Object", None, &w) },
        "/api/v1/certificates": { "get": op("Own certificates with OCSP status", "Object", None, &[]) },
        "/api/v1/diagnostics": { "get": op("Configuration, OCSP and registration diagnostics", "Object", None, &[]) },
        "/api/v1/diagnostics/connection": {
          "get": { "summary": "Mutual TLS handshake with another security server at its address in global configuration",
            "parameters": [ { "name": "server", "in": "query", "required": true, "schema": { "type": "string" }, "description": "INSTANCE/CLASS/MEMBER/SERVERCODE" } ],
            "responses": {
              "200": { "description": "ok, address, peer_certificate, latency_ms", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Object" } } } },
              "502": { "description": "ok false with error and latency_ms", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Object" } } } },
              "401": { "$ref": "#/components/responses/E401" }, "403": { "$ref": "#/components/responses/E403" } } } },
        "/api/v1/diagnostics/timestamping": { "get": op("A timestamp from every TSA of global configuration: ok, latency_ms, error", "Object", None, &[]) }
      }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    if k == "$ref" {
                        out.push(x.as_str().unwrap_or("").to_owned());
                    }
                    refs(x, out);
                }
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }

    #[test]
    fn openapi_is_version_3_and_every_reference_resolves() {
        let doc = openapi();
        assert_eq!(doc["openapi"], "3.0.3");
        let mut all = Vec::new();
        refs(&doc, &mut all);
        assert!(all.len() > 40);
        for r in all {
            let ptr = r.strip_prefix('#').unwrap();
            assert!(doc.pointer(ptr).is_some(), "dangling {r}");
        }
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (m, o) in item.as_object().unwrap() {
                if m == "parameters" {
                    continue;
                }
                assert!(
                    o["responses"].as_object().is_some_and(|r| !r.is_empty()),
                    "{m} {path}"
                );
                if ["post", "put"].contains(&m.as_str()) {
                    assert!(
                        o["responses"]["400"].is_object() || o["requestBody"].is_null(),
                        "{m} {path} documents 400"
                    );
                }
            }
        }
    }

    #[test]
    fn roles() {
        let obs = Role::from_name("observer").unwrap();
        assert!(obs.may(&http::Method::GET));
        for m in [http::Method::POST, http::Method::PUT, http::Method::DELETE] {
            assert!(!obs.may(&m));
            assert!(Role::SystemAdministrator.may(&m));
        }
        assert_eq!(Role::from_name("auditor"), None);
    }

    #[test]
    fn endpoint_input_is_checked_and_normalised() {
        let ok = endpoints(vec![EndpointIn {
            method: "GET".into(),
            path: "/persons/*/".into(),
        }])
        .unwrap();
        assert_eq!(ok[0].path, "/persons/*");
        let lower = endpoints(vec![EndpointIn {
            method: "get".into(),
            path: "/a".into(),
        }])
        .unwrap();
        assert_eq!(lower[0].method, "GET");
        for p in ["/a/../b", "/a/%2e%2e/b", "/a%2fb", "relative", "/a/./b"] {
            let e = endpoints(vec![EndpointIn {
                method: "GET".into(),
                path: p.into(),
            }])
            .unwrap_err();
            assert_eq!((e.status, e.code), (400, "invalid_endpoint"), "{p}");
        }
        let e = endpoints(vec![EndpointIn {
            method: "G T".into(),
            path: "/a".into(),
        }])
        .unwrap_err();
        assert_eq!(e.code, "invalid_endpoint");
    }
}
