//! Admin API routes for keys, certificates and registration with the central server
//! (dispatched from [`crate::adminapi`], which has already checked the API key's role).
//!
//! | route | what |
//! |---|---|
//! | `GET /api/v1/keys` | token keys with usage, member, installed certificate, OCSP, `active` |
//! | `POST /api/v1/keys` | a new key in the token and its CSR |
//! | `POST /api/v1/certificates` | checks and installs a certificate; a signing certificate signs the next message |
//! | `GET`/`POST /api/v1/registration` | the authentication certificate's registration |
//! | `GET`/`POST /api/v1/clients/{id}/registration` | a hosted client's registration |
//!
//! Signing keys rotate live: the identity is copied, the new key and certificate put in, their
//! OCSP response fetched, the file written, and the copy swapped in. The authentication key
//! changes at the next start (its certificate must be registered and published in global
//! configuration before peers accept it).

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};
use trustbus_pki::Certificate;
use trustbus_pki::ocsp::CertStatus;
use trustbus_sdk::fault::Origin;
use trustbus_sdk::id::ClientId;

use crate::confstore::ChangeError as ApiError;
use crate::identity::{Identity, KeyCert};
use crate::keystore::{KeyStore, Usage};
use crate::state::AppState;

/// Whether `method path` is one of this module's routes.
pub fn handles(method: &http::Method, path: &str) -> bool {
    let get_or_post = method == http::Method::GET || method == http::Method::POST;
    match path {
        "/api/v1/keys" | "/api/v1/registration" => true,
        "/api/v1/certificates" => method == http::Method::POST,
        p => get_or_post && p.starts_with("/api/v1/clients/") && p.ends_with("/registration"),
    }
}

fn bad(code: &'static str, m: impl Into<String>) -> ApiError {
    ApiError::new(400, code, m)
}

fn parse_body<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, ApiError> {
    let b = if b.is_empty() { b"{}".as_slice() } else { b };
    serde_json::from_slice(b).map_err(|e| bad("invalid_request", format!("request body: {e}")))
}

fn keys(state: &AppState) -> Result<&KeyStore, ApiError> {
    state.keys.as_ref().ok_or_else(|| {
        ApiError::new(
            503,
            "keys_unavailable",
            "this server was started without access to its token",
        )
    })
}

fn rfc(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn cert_json(c: &Certificate) -> Value {
    json!({
        "subject": c.subject(),
        "issuer": c.issuer(),
        "serial": c.serial_hex(),
        "not_before": rfc(c.not_before()),
        "not_after": rfc(c.not_after()),
        "sha256": c.fingerprint_hex(),
    })
}

fn ocsp_json(kc: &KeyCert) -> Value {
    match kc.ocsp() {
        Some((_, status, this_update)) => {
            json!({ "status": status_name(&status), "this_update": rfc(this_update) })
        }
        None => Value::Null,
    }
}

fn status_name(s: &CertStatus) -> &'static str {
    match s {
        CertStatus::Good => "good",
        CertStatus::Revoked { .. } => "revoked",
        _ => "unknown",
    }
}

/// The key of the live identity with this public key.
fn live_key<'a>(id: &'a Identity, spki: &[u8]) -> Option<&'a KeyCert> {
    use trustbus_pki::Signer;
    std::iter::once(&id.sign)
        .chain(std::iter::once(&id.auth))
        .chain(id.members.iter().map(|(_, k)| k))
        .find(|k| k.key.public_key_der() == spki)
}

/// Serves one of the routes [`handles`] accepts.
pub async fn handle(
    state: &AppState,
    method: &http::Method,
    path: &str,
    body: &[u8],
) -> Result<(u16, Value), ApiError> {
    let post = method == http::Method::POST;
    match path {
        "/api/v1/keys" if post => generate(state, parse_body(body)?).await,
        "/api/v1/keys" => list(state),
        "/api/v1/certificates" => import(state, parse_body(body)?).await,
        "/api/v1/registration" if post => register_server(state, parse_body(body)?).await,
        "/api/v1/registration" => Ok((200, server_status(state))),
        p => {
            let id = p
                .strip_prefix("/api/v1/clients/")
                .and_then(|p| p.strip_suffix("/registration"))
                .unwrap_or_default();
            let client = ClientId::from_slash(id)
                .map_err(|e| bad("invalid_identifier", format!("client {id:?}: {e}")))?;
            if state.cfg().client(&client).is_none() {
                return Err(ApiError::new(
                    404,
                    "not_found",
                    format!("no client {}", client.to_slash()),
                ));
            }
            if post {
                register_client(state, &client).await
            } else {
                Ok((200, client_status(state, &client)))
            }
        }
    }
}

fn list(state: &AppState) -> Result<(u16, Value), ApiError> {
    let live = state.identity();
    let out: Vec<Value> = keys(state)?
        .list()?
        .into_iter()
        .map(|k| {
            let active = live_key(&live, &k.public_key);
            json!({
                "id": k.id,
                "algorithm": k.key_type,
                "usage": k.usage.name(),
                "member": k.member.map(|m| m.to_slash()),
                "active": active.is_some(),
                "certificate": k.installed.as_ref().map(|c| cert_json(&c[0])),
                "ocsp": active.map_or(Value::Null, ocsp_json),
            })
        })
        .collect();
    Ok((200, Value::Array(out)))
}

/// `POST /api/v1/keys`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GenerateIn {
    usage: String,
    member: Option<String>,
    name: Option<String>,
}

async fn generate(state: &AppState, g: GenerateIn) -> Result<(u16, Value), ApiError> {
    let ks = keys(state)?;
    let usage = match g.usage.as_str() {
        "auth" => Usage::Auth,
        "sign" => Usage::Sign,
        u => {
            return Err(bad(
                "invalid_request",
                format!("usage {u:?}: use auth or sign"),
            ));
        }
    };
    let member = g
        .member
        .map(|m| {
            ClientId::from_slash(&m)
                .map_err(|e| bad("invalid_identifier", format!("member {m:?}: {e}")))
        })
        .transpose()?;
    let _guard = ks.lock.lock().await;
    let (id, member, csr) = ks.generate(usage, member, g.name)?;
    Ok((
        201,
        json!({
            "id": id,
            "usage": usage.name(),
            "member": (usage == Usage::Sign).then(|| member.to_slash()),
            "csr": csr,
        }),
    ))
}

/// `POST /api/v1/certificates`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportIn {
    /// PEM, end-entity certificate first, then intermediates.
    pem: String,
}

async fn import(state: &AppState, i: ImportIn) -> Result<(u16, Value), ApiError> {
    let ks = keys(state)?;
    let chain = Certificate::all_from_pem(&i.pem)
        .map_err(|e| bad("invalid_certificate", format!("pem: {e}")))?;
    let view = state
        .view(Origin::ClientProxy)
        .map_err(|f| ApiError::new(503, "no_global_configuration", f.message))?;
    let _guard = ks.lock.lock().await;
    let plan = ks.check_import(chain, Some(&view), crate::now())?;
    let cert = cert_json(&plan.chain[0]);
    if plan.usage == Usage::Auth {
        let file = ks.install(&plan)?;
        return Ok((
            200,
            json!({
                "key": plan.key_id, "usage": "auth", "certificate": cert,
                "file": file.display().to_string(), "active": false,
                "next": "register it (POST /api/v1/registration); once approved, restart the server to use it",
            }),
        ));
    }
    // A copy of the live identity with the new signing key, checked by fetching its OCSP
    // response before anything is written or swapped.
    let kc = ks.key_cert(&plan)?;
    let unloadable = |e: crate::identity::IdentityError| {
        ApiError::new(500, "identity_unloadable", e.to_string())
    };
    let mut next = state.identity().duplicate().map_err(unloadable)?;
    let member = plan.member.clone().unwrap_or_else(|| next.owner.clone());
    if member == next.owner {
        next.sign = kc;
    } else {
        next.add_member_key(kc.key, kc.chain).map_err(unloadable)?;
    }
    next.refresh_ocsp(&view, &state.http)
        .await
        .map_err(|e| ApiError::new(502, "ocsp_unavailable", e))?;
    let status = next
        .signer(&member)
        .and_then(KeyCert::ocsp)
        .map(|(_, s, _)| s);
    if !matches!(status, Some(CertStatus::Good)) {
        return Err(bad(
            "certificate_not_good",
            format!("the certificate's OCSP status is {status:?}"),
        ));
    }
    let file = ks.install(&plan)?;
    state.replace_identity(Arc::new(next));
    tracing::info!(key = %plan.key_id, member = %member.to_slash(), "signing key rotated");
    Ok((
        200,
        json!({
            "key": plan.key_id, "usage": "sign", "member": member.to_slash(), "certificate": cert,
            "file": file.display().to_string(), "active": true,
        }),
    ))
}

/// `POST /api/v1/registration`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterIn {
    /// `host:port` other security servers reach this server proxy at.
    address: String,
}

async fn submit(
    state: &AppState,
    id: &Identity,
    request: trustbus_central_server::management::RequestBody,
) -> Result<(u16, Value), ApiError> {
    let view = state
        .view(Origin::ClientProxy)
        .map_err(|f| ApiError::new(503, "no_global_configuration", f.message))?;
    let service = view
        .conf
        .private
        .as_ref()
        .map(|p| p.management_service.clone())
        .ok_or_else(|| {
            ApiError::new(
                503,
                "no_management_service",
                "global configuration names no management service",
            )
        })?;
    let tls = trustbus_central_server::tlsconf::management_client_config(
        &service,
        &id.auth.chain,
        &id.auth.key,
    )
    .map_err(|e| ApiError::new(503, "no_management_service", e.to_string()))?;
    let env =
        crate::management::envelope(id, request).map_err(|e| bad("cannot_sign_request", e))?;
    let answer = crate::management::submit(tls, &service.address, &env)
        .await
        .map_err(|e| ApiError::new(502, "central_server_refused", e))?;
    let answer = serde_json::from_str(&answer).unwrap_or(Value::String(answer));
    Ok((200, json!({ "submitted": answer })))
}

async fn register_server(state: &AppState, r: RegisterIn) -> Result<(u16, Value), ApiError> {
    let addr_ok = r
        .address
        .rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
    if !addr_ok {
        return Err(bad(
            "invalid_request",
            format!("address {:?}: write host:port", r.address),
        ));
    }
    // The certificate installed on disk: a new authentication key is registered before the
    // restart that makes it active.
    let id = keys(state)?.load_identity()?;
    let view = state
        .view(Origin::ClientProxy)
        .map_err(|f| ApiError::new(503, "no_global_configuration", f.message))?;
    id.refresh_ocsp(&view, &state.http)
        .await
        .map_err(|e| ApiError::new(502, "ocsp_unavailable", e))?;
    let req = crate::management::auth_cert_registration(&id, &r.address);
    let (status, mut v) = submit(state, &id, req).await?;
    v["auth_certificate"] = cert_json(id.auth.cert());
    Ok((status, v))
}

async fn register_client(state: &AppState, client: &ClientId) -> Result<(u16, Value), ApiError> {
    let id = state.identity();
    let req = crate::management::client_registration(&id, client);
    let (status, mut v) = submit(state, &id, req).await?;
    v["client"] = client.to_slash().into();
    Ok((status, v))
}

fn server_status(state: &AppState) -> Value {
    let live = state.identity();
    let view = state.view(Origin::ClientProxy);
    let entry = view
        .as_ref()
        .ok()
        .and_then(|v| v.server(&live.server).cloned());
    let registered = |c: &Certificate| {
        entry.as_ref().is_some_and(|e| {
            trustbus_pki::cert::fingerprint_listed(&e.auth_cert_sha256, c.fingerprint())
        })
    };
    let cert = |c: &Certificate| {
        let mut v = cert_json(c);
        v["registered"] = registered(c).into();
        v
    };
    let installed = state.keys.as_ref().and_then(|k| {
        Certificate::read_file(&k.cert_dir().join(crate::identity::AUTH_CERT_FILE))
            .ok()
            .and_then(|c| c.into_iter().next())
    });
    let cfg = state.cfg();
    json!({
        "server": live.server.to_slash(),
        "in_global_configuration": entry.is_some(),
        "address": entry.as_ref().map(|e| e.address.clone()),
        "global_configuration_error": view.as_ref().err().map(|f| f.message.clone()),
        "active_auth_certificate": cert(live.auth.cert()),
        "installed_auth_certificate": installed.as_ref().map(cert),
        "clients": cfg.clients.iter().map(|c| client_status(state, &c.id)).collect::<Vec<_>>(),
    })
}

fn client_status(state: &AppState, client: &ClientId) -> Value {
    let live = state.identity();
    let registered = state
        .view(Origin::ClientProxy)
        .ok()
        .and_then(|v| v.server(&live.server).map(|s| v.hosts(s, client)))
        .unwrap_or(false);
    json!({ "id": client.to_slash(), "registered": registered })
}

/// The OpenAPI paths of these routes (merged into [`crate::adminapi::openapi`]).
pub fn openapi_paths() -> Value {
    let e = |c: &str| json!({ "$ref": format!("#/components/responses/E{c}") });
    let ok = |d: &str| json!({ "description": d, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Object" } } } });
    let body =
        |s: Value| json!({ "required": true, "content": { "application/json": { "schema": s } } });
    let mut write_errors = json!({ "400": e("400"), "401": e("401"), "403": e("403"), "502": e("502"), "503": e("503") });
    let ro = json!({ "401": e("401"), "403": e("403") });
    let with = |mut v: Value, code: &str, r: Value| {
        v[code] = r;
        v
    };
    let client_param = json!([{ "name": "id", "in": "path", "required": true, "description": "INSTANCE/CLASS/MEMBER/SUBSYSTEM, slashes unescaped", "schema": { "type": "string" } }]);
    write_errors["404"] = e("404");
    json!({
      "/api/v1/keys": {
        "get": { "summary": "Token keys: id, algorithm, usage (auth or sign), member, active, installed certificate (subject, issuer, serial, validity, sha256) and OCSP status of active keys",
          "responses": with(ro.clone(), "200", ok("list of keys")) },
        "post": { "summary": "Generate an auth key, or a signing key for a member (default the owner), in the server's token; answers its id and a CSR (PEM) for the CA",
          "requestBody": body(json!({ "type": "object", "required": ["usage"], "additionalProperties": false, "properties": {
            "usage": { "type": "string", "enum": ["auth", "sign"] },
            "member": { "type": "string", "description": "INSTANCE/CLASS/MEMBER; signing keys only" },
            "name": { "type": "string", "description": "name in the certificate subject (default the member code)" } } })),
          "responses": with(write_errors.clone(), "201", ok("id, usage, member, csr")) } },
      "/api/v1/certificates": {
        "get": { "summary": "Active certificates with OCSP status", "responses": with(ro.clone(), "200", ok("signing and authentication certificates")) },
        "post": { "summary": "Install a certificate issued for a token key. Checked: it is for a key of the token (certificate_not_for_a_key), its subject fits the key's usage, server or member (certificate_profile_mismatch), it chains to a CA approved for that usage in global configuration (certificate_not_trusted), its OCSP status is good (certificate_not_good, ocsp_unavailable). A signing certificate signs the next message without a restart; an authentication certificate is used after registration and a restart.",
          "requestBody": body(json!({ "type": "object", "required": ["pem"], "additionalProperties": false, "properties": {
            "pem": { "type": "string", "description": "PEM, end-entity certificate first, then intermediates" } } })),
          "responses": with(write_errors.clone(), "200", ok("key, usage, member, certificate, file, active")) } },
      "/api/v1/registration": {
        "get": { "summary": "Registration state: whether the active and the installed authentication certificates and each client are in global configuration",
          "responses": with(ro.clone(), "200", ok("registration state")) },
        "post": { "summary": "Send the management request registering the installed authentication certificate at address; answers the request as the central server stored it (status pending or approved)",
          "requestBody": body(json!({ "type": "object", "required": ["address"], "additionalProperties": false, "properties": {
            "address": { "type": "string", "description": "host:port of this server proxy" } } })),
          "responses": with(write_errors.clone(), "200", ok("submitted request")) } },
      "/api/v1/clients/{id}/registration": {
        "parameters": client_param,
        "get": { "summary": "Whether the client is registered on this server in global configuration",
          "responses": with(with(ro, "404", e("404")), "200", ok("id, registered")) },
        "post": { "summary": "Send the management request registering the client on this server (signed with its member's key)",
          "responses": with(write_errors, "200", ok("submitted request")) } }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        use http::Method;
        assert!(handles(&Method::GET, "/api/v1/keys"));
        assert!(handles(&Method::POST, "/api/v1/certificates"));
        assert!(!handles(&Method::GET, "/api/v1/certificates"));
        assert!(handles(
            &Method::POST,
            "/api/v1/clients/DEV/GOV/1/sub/registration"
        ));
        assert!(!handles(
            &Method::DELETE,
            "/api/v1/clients/DEV/GOV/1/registration"
        ));
        assert!(!handles(&Method::GET, "/api/v1/clients"));
    }
}
