//! The admin REST API (read-only so far) on the admin listener: JSON under `/api/v1/`,
//! described by `/api/openapi.json`, authenticated with `Authorization: Bearer <API key>`
//! (keys in the configuration as SHA-256 hashes, `security-server api-key` makes them).

use serde_json::{Value, json};

use crate::admin::text;
use crate::httpc::OutBody;
use crate::state::AppState;

/// The OpenAPI description of the routes below.
const OPENAPI: &str = r#"{
  "openapi": "3.0.3",
  "info": { "title": "Trustbus security server admin API", "version": "1" },
  "components": { "securitySchemes": { "apiKey": { "type": "http", "scheme": "bearer" } } },
  "security": [ { "apiKey": [] } ],
  "paths": {
    "/api/v1/server": { "get": { "summary": "This server's identity", "responses": { "200": { "description": "id, owner, server_code" } } } },
    "/api/v1/clients": { "get": { "summary": "Hosted clients with connection mode and registration state", "responses": { "200": { "description": "list" } } } },
    "/api/v1/services": { "get": { "summary": "Services provided here", "responses": { "200": { "description": "list" } } } },
    "/api/v1/access-rights": { "get": { "summary": "Access rights", "responses": { "200": { "description": "list" } } } },
    "/api/v1/local-groups": { "get": { "summary": "Local groups", "responses": { "200": { "description": "list" } } } },
    "/api/v1/certificates": { "get": { "summary": "Own certificates with OCSP status", "responses": { "200": { "description": "sign and auth" } } } },
    "/api/v1/diagnostics": { "get": { "summary": "Configuration, OCSP and registration diagnostics", "responses": { "200": { "description": "object" } } } }
  }
}
"#;

fn error(status: u16, code: &str, message: &str) -> http::Response<OutBody> {
    text(
        status,
        json!({ "code": code, "message": message }).to_string(),
        "application/json",
    )
}

fn authorized(state: &AppState, req: &http::Request<hyper::body::Incoming>) -> bool {
    let Some(key) = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let hash = trustbus_pki::cert::to_hex(
        ring::digest::digest(&ring::digest::SHA256, key.trim().as_bytes()).as_ref(),
    );
    state
        .cfg
        .api_keys
        .iter()
        .any(|k| k.sha256.eq_ignore_ascii_case(&hash))
}

/// Handles `/api/…`.
pub fn handle(
    state: &AppState,
    req: &http::Request<hyper::body::Incoming>,
) -> http::Response<OutBody> {
    let path = req.uri().path();
    if path == "/api/openapi.json" {
        return text(200, OPENAPI.to_owned(), "application/json");
    }
    if !authorized(state, req) {
        return error(
            401,
            "unauthenticated",
            "a valid API key is required (Authorization: Bearer)",
        );
    }
    if req.method() != http::Method::GET {
        return error(
            405,
            "not_allowed",
            "the admin API is read-only so far; edit the configuration file",
        );
    }
    let cfg = &state.cfg;
    let body: Value = match path {
        "/api/v1/server" => json!({
            "id": state.identity.server.to_slash(),
            "owner": state.identity.owner.to_slash(),
            "server_code": cfg.server.server_code,
        }),
        "/api/v1/clients" => {
            let diag: Value = serde_json::from_str(&crate::admin::diagnostics(state)).unwrap_or(Value::Null);
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
                        let id = c.id.to_slash();
                        json!({
                            "id": id,
                            "connection": format!("{:?}", c.connection),
                            "is_certs": c.is_certs,
                            "allow_unverified_user_id": c.allow_unverified_user_id,
                            "registered": registered(&id),
                        })
                    })
                    .collect(),
            )
        }
        "/api/v1/services" => Value::Array(
            cfg.services
                .iter()
                .map(|s| {
                    json!({
                        "id": s.id.to_slash(),
                        "kind": format!("{:?}", s.kind).to_lowercase(),
                        "url": s.url,
                        "enabled": s.enabled,
                        "disabled_notice": s.disabled_notice,
                        "endpoints": s.endpoints.iter().map(|e| json!({"method": e.method, "path": e.path})).collect::<Vec<_>>(),
                    })
                })
                .collect(),
        ),
        "/api/v1/access-rights" => Value::Array(
            cfg.access
                .iter()
                .map(|a| {
                    json!({
                        "service": a.service.to_slash(),
                        "subject": a.subject,
                        "endpoints": a.endpoints.iter().map(|e| json!({"method": e.method, "path": e.path})).collect::<Vec<_>>(),
                    })
                })
                .collect(),
        ),
        "/api/v1/local-groups" => Value::Array(
            cfg.local_groups
                .iter()
                .map(|g| json!({ "code": g.code, "members": g.members.iter().map(|m| m.to_slash()).collect::<Vec<_>>() }))
                .collect(),
        ),
        "/api/v1/certificates" | "/api/v1/diagnostics" => {
            let d: Value = serde_json::from_str(&crate::admin::diagnostics(state)).unwrap_or(Value::Null);
            if path.ends_with("certificates") {
                json!({ "signing": d["signing_certificate"], "authentication": d["authentication_certificate"] })
            } else {
                d
            }
        }
        _ => return error(404, "not_found", "no such route"),
    };
    text(200, body.to_string(), "application/json")
}
