//! The admin REST API (`/api/v1/...`), authenticated with API keys carrying roles.
//!
//! Every request that changes something, and every request refused for authentication or
//! role, is recorded in the audit trail with who, what, when, result and correlation id. A
//! refused or failed action changes nothing (registry changes are transactions).

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use trustbus_sdk::id::ClientId;

use super::{AppState, correlation_id, error_response, parse_json};
use crate::Error;
use crate::model::{
    ApprovedCa, ApprovedTsa, GlobalGroup, Member, MemberClass, OidcIssuer, Settings, Subsystem,
};
use crate::registry::{ApiKeyRecord, AuditEntry, Role};
use crate::util;

/// The admin router.
pub fn admin_router(state: AppState) -> Router {
    Router::new()
        .route("/api/openapi.json", get(openapi))
        .route("/api/v1/status", get(status))
        .route(
            "/api/v1/member-classes",
            get(list_classes).post(create_class),
        )
        .route(
            "/api/v1/member-classes/{code}",
            axum::routing::delete(delete_class),
        )
        .route("/api/v1/members", get(list_members).post(create_member))
        .route(
            "/api/v1/members/{*id}",
            get(get_member).delete(delete_member),
        )
        .route("/api/v1/subsystems", post(create_subsystem))
        .route(
            "/api/v1/subsystems/{*id}",
            axum::routing::delete(delete_subsystem),
        )
        .route("/api/v1/security-servers", get(list_servers))
        .route(
            "/api/v1/security-servers/{*id}",
            get(get_server).delete(delete_server),
        )
        .route("/api/v1/global-groups", get(list_groups).post(create_group))
        .route(
            "/api/v1/global-groups/{code}",
            get(get_group).put(update_group).delete(delete_group),
        )
        .route("/api/v1/cas", get(list_cas).post(create_ca))
        .route("/api/v1/cas/{name}", axum::routing::delete(delete_ca))
        .route("/api/v1/tsas", get(list_tsas).post(create_tsa))
        .route("/api/v1/tsas/{name}", axum::routing::delete(delete_tsa))
        .route(
            "/api/v1/oidc-issuers",
            get(list_issuers).post(create_issuer).delete(delete_issuer),
        )
        .route("/api/v1/settings", get(get_settings).put(put_settings))
        .route("/api/v1/management-requests", get(list_requests))
        .route("/api/v1/management-requests/{id}", get(get_request))
        .route("/api/v1/management-requests/{id}/approve", post(approve))
        .route("/api/v1/management-requests/{id}/reject", post(reject))
        .route("/api/v1/globalconf", get(globalconf_status))
        .route("/api/v1/globalconf/regenerate", post(regenerate))
        .route("/api/v1/signing-keys", get(list_keys))
        .route("/api/v1/signing-keys/next", post(next_key))
        .route("/api/v1/signing-keys/activate", post(activate_key))
        .route("/api/v1/api-keys", get(list_api_keys).post(create_api_key))
        .route(
            "/api/v1/api-keys/{id}",
            axum::routing::delete(delete_api_key),
        )
        .route("/api/v1/audit", get(audit))
        .fallback(fallback)
        .with_state(state)
}

async fn fallback() -> Response {
    error_response(
        &Error::NotFound("no such endpoint".into()),
        &correlation_id(),
    )
}

/// The authenticated caller.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) key_id: String,
}

/// Creates an API key string and its record. The string is shown once; only its hash is kept.
pub fn new_api_key(role: Role) -> Result<(String, ApiKeyRecord), Error> {
    let rng = ring::rand::SystemRandom::new();
    let mut id = [0u8; 6];
    let mut secret = [0u8; 24];
    ring::rand::SecureRandom::fill(&rng, &mut id)
        .and_then(|()| ring::rand::SecureRandom::fill(&rng, &mut secret))
        .map_err(|_| Error::Crypto("no randomness".into()))?;
    let id = util::hex(&id);
    let key = format!("tbk_{id}_{}", util::hex(&secret));
    Ok((
        key.clone(),
        ApiKeyRecord {
            id,
            sha256: util::sha256_hex(key.as_bytes()),
            role,
            created_at: util::rfc3339(util::now()),
        },
    ))
}

fn authenticate(st: &AppState, headers: &HeaderMap) -> Result<(Caller, Role), (String, Error)> {
    let key = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| ("anonymous".to_owned(), Error::Unauthenticated))?;
    let id = key
        .strip_prefix("tbk_")
        .and_then(|r| r.split('_').next())
        .unwrap_or("");
    let state = st.registry.snapshot();
    let rec = state
        .api_keys
        .get(id)
        .filter(|r| r.sha256 == util::sha256_hex(key.as_bytes()))
        .ok_or_else(|| ("unknown-key".to_owned(), Error::Unauthenticated))?;
    Ok((
        Caller {
            key_id: rec.id.clone(),
        },
        rec.role,
    ))
}

fn audit_entry(
    actor: &str,
    action: &str,
    target: &str,
    result: Result<(), &Error>,
    cid: &str,
) -> AuditEntry {
    AuditEntry {
        id: 0,
        at: util::rfc3339(util::now()),
        actor: actor.to_owned(),
        action: action.to_owned(),
        target: target.to_owned(),
        result: result.map_or_else(|e| e.code().to_owned(), |()| "ok".to_owned()),
        detail: result.err().map(ToString::to_string).unwrap_or_default(),
        correlation_id: cid.to_owned(),
    }
}

/// Runs an admin action: authenticate, authorise, run `f` off the async runtime, audit
/// (mutations and refusals), regenerate the configuration after a change, answer.
async fn act<T, F>(
    st: AppState,
    headers: HeaderMap,
    need: Role,
    action: &'static str,
    target: String,
    f: F,
) -> Response
where
    T: Serialize + Send + 'static,
    F: FnOnce(&AppState, &Caller) -> Result<T, Error> + Send + 'static,
{
    let cid = correlation_id();
    let mutates = need > Role::Observer;
    let cid2 = cid.clone();
    let res = tokio::task::spawn_blocking(move || {
        let record = |actor: &str, r: Result<(), &Error>| {
            crate::metrics::with(|m| {
                m.admin_actions
                    .with_label_values(&[r.map_or_else(|e| e.code(), |()| "ok")])
                    .inc();
            });
            if let Err(e) = st
                .registry
                .audit()
                .record(audit_entry(actor, action, &target, r, &cid2))
            {
                tracing::error!(error = %e, "cannot write the audit trail");
            }
        };
        let (caller, role) = match authenticate(&st, &headers) {
            Ok(c) => c,
            Err((actor, e)) => {
                record(&actor, Err(&e));
                return Err(e);
            }
        };
        if role < need {
            let e = Error::Forbidden {
                role: role.as_str().into(),
                action: action.into(),
            };
            record(&caller.key_id, Err(&e));
            return Err(e);
        }
        let out = f(&st, &caller);
        if mutates {
            record(&caller.key_id, out.as_ref().map(|_| ()));
            if out.is_ok()
                && let Err(e) = st.globalconf.refresh()
            {
                tracing::warn!(error = %e, "regeneration failed; the background task retries");
            }
        }
        out
    })
    .await;
    match res {
        Ok(Ok(v)) => (StatusCode::OK, axum::Json(v)).into_response(),
        Ok(Err(e)) => error_response(&e, &cid),
        Err(e) => error_response(&Error::Internal(e.to_string()), &cid),
    }
}

fn client_id(s: &str) -> Result<ClientId, Error> {
    ClientId::from_slash(s).map_err(|e| Error::BadRequest(format!("identifier {s}: {e}")))
}

fn check_instance(st: &AppState, id: &ClientId) -> Result<(), Error> {
    if id.instance() == st.registry.instance() {
        Ok(())
    } else {
        Err(Error::BadRequest(format!(
            "{} is not in instance {}",
            id.to_slash(),
            st.registry.instance()
        )))
    }
}

async fn openapi() -> Response {
    (
        [(http::header::CONTENT_TYPE, "application/json")],
        super::openapi::DOCUMENT,
    )
        .into_response()
}

#[derive(Serialize)]
struct Status {
    instance: String,
    registry_revision: u64,
    globalconf_version: Option<u64>,
    globalconf_expires_at: Option<String>,
}

async fn status(State(st): State<AppState>, h: HeaderMap) -> Response {
    act(
        st,
        h,
        Role::Observer,
        "status.read",
        String::new(),
        |st, _| {
            let p = st.globalconf.publisher().current();
            Ok(Status {
                instance: st.registry.instance().to_owned(),
                registry_revision: st.registry.snapshot().revision,
                globalconf_version: p.as_ref().map(|p| p.version),
                globalconf_expires_at: p.map(|p| p.parsed.expires_at.clone()),
            })
        },
    )
    .await
}

// ---- member classes ----

async fn list_classes(State(st): State<AppState>, h: HeaderMap) -> Response {
    act(
        st,
        h,
        Role::Observer,
        "member_class.list",
        String::new(),
        |st, _| {
            Ok(st
                .registry
                .snapshot()
                .member_classes
                .into_values()
                .collect::<Vec<_>>())
        },
    )
    .await
}

async fn create_class(State(st): State<AppState>, h: HeaderMap, body: Bytes) -> Response {
    act(
        st,
        h,
        Role::RegistrationOfficer,
        "member_class.create",
        String::new(),
        move |st, _| {
            let c: MemberClass = parse_json(&body)?;
            trustbus_sdk::id::validate_segment("code", &c.code)?;
            st.registry
                .mutate(|s| {
                    if s.member_classes.contains_key(&c.code) {
                        return Err(Error::AlreadyExists(format!("member class {}", c.code)));
                    }
                    s.member_classes.insert(c.code.clone(), c.clone());
                    Ok(c.clone())
                })
                .map(|(c, _)| c)
        },
    )
    .await
}

async fn delete_class(
    State(st): State<AppState>,
    h: HeaderMap,
    Path(code): Path<String>,
) -> Response {
    act(
        st,
        h,
        Role::RegistrationOfficer,
        "member_class.delete",
        code.clone(),
        move |st, _| {
            st.registry
                .mutate(|s| {
                    if s.members.values().any(|m| m.id.member_class() == code) {
                        return Err(Error::InUse(format!("member class {code} has members")));
                    }
                    s.member_classes
                        .remove(&code)
                        .ok_or_else(|| Error::NotFound(format!("member class {code}")))
                })
                .map(|(c, _)| c)
        },
    )
    .await
}

// ---- members and subsystems ----

async fn list_members(State(st): State<AppState>, h: HeaderMap) -> Response {
    act(
        st,
        h,
        Role::Observer,
        "member.list",
        String::new(),
        |st, _| {
            Ok(st
                .registry
                .snapshot()
                .members
                .into_values()
                .collect::<Vec<_>>())
        },
    )
    .await
}

async fn get_member(State(st): State<AppState>, h: HeaderMap, Path(id): Path<String>) -> Response {
    act(
        st,
        h,
        Role::Observer,
        "member.read",
        id.clone(),
        move |st, _| {
            let cid = client_id(&id)?;
            st.registry
                .snapshot()
                .members
                .remove(&cid.to_slash())
                .ok_or_else(|| Error::NotFound(format!("member {id}")))
        },
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewMember {
    id: ClientId,
    name: String,
}

async fn create_member(State(st): State<AppState>, h: HeaderMap, body: Bytes) -> Response {
    act(
        st,
        h,
        Role::RegistrationOfficer,
        "member.create",
        String::new(),
        move |st, _| {
            let m: NewMember = parse_json(&body)?;
            check_instance(st, &m.id)?;
            if m.id.subsystem_code().is_some() {
                return Err(Error::BadRequest(
                    "a member id has no subsystem part".into(),
                ));
            }
            if m.name.trim().is_empty() {
                return Err(Error::BadRequest("name must not be empty".into()));
            }
            st.registry
                .mutate(|s| {
                    if !s.member_classes.contains_key(m.id.member_class()) {
                        return Err(Error::UnknownMemberClass(m.id.member_class().into()));
                    }
                    let key = m.id.to_slash();
                    if s.members.contains_key(&key) {
                        return Err(Error::AlreadyExists(format!("member {key}")));
                    }
                    let rec = Member {
                        id: m.id.clone(),
                        name: m.name.clone(),
                        subsystems: Vec::new(),
                    };
                    s.members.insert(key, rec.clone());
                    Ok(rec)
                })
                .map(|(m, _)| m)
        },
    )
    .await
}

fn referenced(s: &crate::registry::RegistryState, id: &ClientId) -> bool {
    s.servers.values().any(|srv| {
        (id.subsystem_code().is_none() && &srv.owner == id)
            || srv
                .clients
                .iter()
                .any(|c| &c.id == id || (id.subsystem_code().is_none() && c.id.owner() == *id))
    }) || s.groups.values().any(|g| g.members.contains(id))
}

async fn delete_member(
    State(st): State<AppState>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    act(
        st,
        h,
        Role::RegistrationOfficer,
        "member.delete",
        id.clone(),
        move |st, _| {
            let cid = client_id(&id)?;
            st.registry
                .mutate(|s| {
                    if referenced(s, &cid) {
                        return Err(Error::InUse(format!(
                            "member {id} owns a server, has registered clients or is in a group"
                        )));
                    }
                    s.members
                        .remove(&cid.to_slash())
                        .ok_or_else(|| Error::NotFound(format!("member {id}")))
                })
                .map(|(m, _)| m)
        },
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewSubsystem {
    id: ClientId,
    #[serde(default)]
    name: Option<String>,
}

async fn create_subsystem(State(st): State<AppState>, h: HeaderMap, body: Bytes) -> Response {
    act(
        st,
        h,
        Role::RegistrationOfficer,
        "subsystem.create",
        String::new(),
        move |st, _| {
            let n: NewSubsystem = parse_json(&body)?;
            check_instance(st, &n.id)?;
            if n.id.subsystem_code().is_none() {
                return Err(Error::BadRequest("a subsystem id has four parts".into()));
            }
            st.registry
                .mutate(|s| {
                    let m = s
                        .members
                        .get_mut(&n.id.owner().to_slash())
                        .ok_or_else(|| Error::UnknownMember(n.id.owner().to_slash()))?;
                    if m.subsystems.iter().any(|x| x.id == n.id) {
                        return Err(Error::AlreadyExists(format!(
                            "subsystem {}",
                            n.id.to_slash()
                        )));
                    }
                    let sub = Subsystem {
                        id: n.id.clone(),
                        name: n.name.clone(),
                    };
                    m.subsystems.push(sub.clone());
                    m.subsystems.sort_by(|a, b| a.id.cmp(&b.id));
                    Ok(sub)
                })
                .map(|(s, _)| s)
        },
    )
    .await
}

async fn delete_subsystem(
    State(st): State<AppState>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    act(
        st,
        h,
        Role::RegistrationOfficer,
        "subsystem.delete",
        id.clone(),
        move |st, _| {
            let cid = client_id(&id)?;
            st.registry
                .mutate(|s| {
                    if referenced(s, &cid) {
                        return Err(Error::InUse(format!(
                            "subsystem {id} is registered on a server or in a group"
                        )));
                    }
                    let m = s
                        .members
                        .get_mut(&cid.owner().to_slash())
                        .ok_or_else(|| Error::NotFound(format!("subsystem {id}")))?;
                    let before = m.subsystems.len();
                    m.subsystems.retain(|x| x.id != cid);
                    if before == m.subsystems.len() {
                        return Err(Error::NotFound(format!("subsystem {id}")));
                    }
                    Ok(())
                })
                .map(|_| serde_json::json!({"deleted": id}))
        },
    )
    .await
}

// ---- security servers ----

async fn list_servers(State(st): State<AppState>, h: HeaderMap) -> Response {
    act(
        st,
        h,
        Role::Observer,
        "security_server.list",
        String::new(),
        |st, _| {
            Ok(st
                .registry
                .snapshot()
                .servers
                .into_values()
                .collect::<Vec<_>>())
        },
    )
    .await
}

async fn get_server(State(st): State<AppState>, h: HeaderMap, Path(id): Path<String>) -> Response {
    act(
        st,
        h,
        Role::Observer,
        "security_server.read",
        id.clone(),
        move |st, _| {
            let sid = trustbus_sdk::id::SecurityServerId::from_slash(&id)?;
            st.registry
                .snapshot()
                .servers
                .remove(&sid.to_slash())
                .ok_or_else(|| Error::NotFound(format!("security server {id}")))
        },
    )
    .await
}

async fn delete_server(
    State(st): State<AppState>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    act(
        st,
        h,
        Role::RegistrationOfficer,
        "security_server.delete",
        id.clone(),
        move |st, _| {
            let sid = trustbus_sdk::id::SecurityServerId::from_slash(&id)?;
            st.registry
                .mutate(|s| {
                    let r = s
                        .servers
                        .remove(&sid.to_slash())
                        .ok_or_else(|| Error::NotFound(format!("security server {id}")))?;
                    crate::management::effect_sync_owner_group(s);
                    Ok(r)
                })
                .map(|(r, _)| r)
        },
    )
    .await
}

// ---- global groups ----

async fn list_groups(State(st): State<AppState>, h: HeaderMap) -> Response {
    act(
        st,
        h,
        Role::Observer,
        "global_group.list",
        String::new(),
        |st, _| {
            Ok(st
                .registry
                .snapshot()
                .groups
                .into_values()
                .collect::<Vec<_>>())
        },
    )
    .await
}

async fn get_group(State(st): State<AppState>, h: HeaderMap, Path(code): Path<String>) -> Response {
    act(
        st,
        h,
        Role::Observer,
        "global_group.read",
        code.clone(),
        move |st, _| {
            st.registry
                .snapshot()
                .groups
                .remove(&code)
                .ok_or_else(|| Error::NotFound(format!("global group {code}")))
        },
    )
    .await
}

fn check_group(
    st: &AppState,
    s: &crate::registry::RegistryState,
    g: &mut GlobalGroup,
) -> Result<(), Error> {
    trustbus_sdk::id::validate_segment("code", &g.code)?;
    for m in &g.members {
        check_instance(st, m)?;
        if !s.client_exists(m) {
            return Err(Error::UnknownMember(m.to_slash()));
        }
    }
    g.members.sort();
    g.members.dedup();
    Ok(())
}

async fn create_group(State(st): State<AppState>, h: HeaderMap, body: Bytes) -> Response {
    act(
        st,
        h,
        Role::RegistrationOfficer,
        "global_group.create",
        String::new(),
        move |st, _| {
            let mut g: GlobalGroup = parse_json(&body)?;
            st.registry
                .mutate(|s| {
                    check_group(st, s, &mut g)?;
                    if s.groups.contains_key(&g.code) {
                        return Err(Error::AlreadyExists(format!("global group {}", g.code)));
                    }
                    s.groups.insert(g.code.clone(), g.clone());
                    crate::management::effect_sync_owner_group(s);
                    Ok(g.clone())
                })
                .map(|(g, _)| g)
        },
    )
    .await
}

async fn update_group(
    State(st): State<AppState>,
    h: HeaderMap,
    Path(code): Path<String>,
    body: Bytes,
) -> Response {
    act(
        st,
        h,
        Role::RegistrationOfficer,
        "global_group.update",
        code.clone(),
        move |st, _| {
            let mut g: GlobalGroup = parse_json(&body)?;
            if g.code != code {
                return Err(Error::BadRequest(
                    "the body's code differs from the path".into(),
                ));
            }
            st.registry
                .mutate(|s| {
                    check_group(st, s, &mut g)?;
                    if !s.groups.contains_key(&code) {
                        return Err(Error::NotFound(format!("global group {code}")));
                    }
                    s.groups.insert(code.clone(), g.clone());
                    crate::management::effect_sync_owner_group(s);
                    Ok(g.clone())
                })
                .map(|(g, _)| g)
        },
    )
    .await
}

async fn delete_group(
    State(st): State<AppState>,
    h: HeaderMap,
    Path(code): Path<String>,
) -> Response {
    act(
        st,
        h,
        Role::RegistrationOfficer,
        "global_group.delete",
        code.clone(),
        move |st, _| {
            st.registry
                .mutate(|s| {
                    s.groups
                        .remove(&code)
                        .ok_or_else(|| Error::NotFound(format!("global group {code}")))
                })
                .map(|(g, _)| g)
        },
    )
    .await
}

// ---- trust services ----

fn check_certs(what: &str, certs: &[String]) -> Result<(), Error> {
    for c in certs {
        util::cert_spki(&util::unb64(what, c)?)?;
    }
    Ok(())
}

async fn list_cas(State(st): State<AppState>, h: HeaderMap) -> Response {
    act(st, h, Role::Observer, "ca.list", String::new(), |st, _| {
        Ok(st.registry.snapshot().cas.into_values().collect::<Vec<_>>())
    })
    .await
}

async fn create_ca(State(st): State<AppState>, h: HeaderMap, body: Bytes) -> Response {
    act(
        st,
        h,
        Role::SystemAdministrator,
        "ca.create",
        String::new(),
        move |st, _| {
            let ca: ApprovedCa = parse_json(&body)?;
            crate::management::trust::check_ca_record(&ca)?;
            st.registry
                .mutate(|s| {
                    if s.cas.contains_key(&ca.name) {
                        return Err(Error::AlreadyExists(format!("CA {}", ca.name)));
                    }
                    s.cas.insert(ca.name.clone(), ca.clone());
                    Ok(ca.clone())
                })
                .map(|(c, _)| c)
        },
    )
    .await
}

async fn delete_ca(State(st): State<AppState>, h: HeaderMap, Path(name): Path<String>) -> Response {
    act(
        st,
        h,
        Role::SystemAdministrator,
        "ca.delete",
        name.clone(),
        move |st, _| {
            st.registry
                .mutate(|s| {
                    s.cas
                        .remove(&name)
                        .ok_or_else(|| Error::NotFound(format!("CA {name}")))
                })
                .map(|(c, _)| c)
        },
    )
    .await
}

async fn list_tsas(State(st): State<AppState>, h: HeaderMap) -> Response {
    act(st, h, Role::Observer, "tsa.list", String::new(), |st, _| {
        Ok(st
            .registry
            .snapshot()
            .tsas
            .into_values()
            .collect::<Vec<_>>())
    })
    .await
}

async fn create_tsa(State(st): State<AppState>, h: HeaderMap, body: Bytes) -> Response {
    act(
        st,
        h,
        Role::SystemAdministrator,
        "tsa.create",
        String::new(),
        move |st, _| {
            let t: ApprovedTsa = parse_json(&body)?;
            if t.name.trim().is_empty() || t.url.trim().is_empty() {
                return Err(Error::BadRequest("a TSA needs a name and a URL".into()));
            }
            check_certs("cert", std::slice::from_ref(&t.cert))?;
            st.registry
                .mutate(|s| {
                    if s.tsas.contains_key(&t.name) {
                        return Err(Error::AlreadyExists(format!("TSA {}", t.name)));
                    }
                    s.tsas.insert(t.name.clone(), t.clone());
                    Ok(t.clone())
                })
                .map(|(t, _)| t)
        },
    )
    .await
}

async fn delete_tsa(
    State(st): State<AppState>,
    h: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    act(
        st,
        h,
        Role::SystemAdministrator,
        "tsa.delete",
        name.clone(),
        move |st, _| {
            st.registry
                .mutate(|s| {
                    s.tsas
                        .remove(&name)
                        .ok_or_else(|| Error::NotFound(format!("TSA {name}")))
                })
                .map(|(t, _)| t)
        },
    )
    .await
}

async fn list_issuers(State(st): State<AppState>, h: HeaderMap) -> Response {
    act(
        st,
        h,
        Role::Observer,
        "oidc_issuer.list",
        String::new(),
        |st, _| {
            Ok(st
                .registry
                .snapshot()
                .issuers
                .into_values()
                .collect::<Vec<_>>())
        },
    )
    .await
}

async fn create_issuer(State(st): State<AppState>, h: HeaderMap, body: Bytes) -> Response {
    act(
        st,
        h,
        Role::SystemAdministrator,
        "oidc_issuer.create",
        String::new(),
        move |st, _| {
            let i: OidcIssuer = parse_json(&body)?;
            i.validate()?;
            st.registry
                .mutate(|s| {
                    if s.issuers.contains_key(&i.issuer) {
                        return Err(Error::AlreadyExists(format!("issuer {}", i.issuer)));
                    }
                    s.issuers.insert(i.issuer.clone(), i.clone());
                    Ok(i.clone())
                })
                .map(|(i, _)| i)
        },
    )
    .await
}

async fn delete_issuer(
    State(st): State<AppState>,
    h: HeaderMap,
    Query(q): Query<Params>,
) -> Response {
    let issuer = q.get("issuer").cloned().unwrap_or_default();
    act(
        st,
        h,
        Role::SystemAdministrator,
        "oidc_issuer.delete",
        issuer.clone(),
        move |st, _| {
            st.registry
                .mutate(|s| {
                    s.issuers
                        .remove(&issuer)
                        .ok_or_else(|| Error::NotFound(format!("issuer {issuer}")))
                })
                .map(|(i, _)| i)
        },
    )
    .await
}

async fn get_settings(State(st): State<AppState>, h: HeaderMap) -> Response {
    act(
        st,
        h,
        Role::Observer,
        "settings.read",
        String::new(),
        |st, _| Ok(st.registry.snapshot().settings),
    )
    .await
}

async fn put_settings(State(st): State<AppState>, h: HeaderMap, body: Bytes) -> Response {
    act(
        st,
        h,
        Role::SystemAdministrator,
        "settings.update",
        String::new(),
        move |st, _| {
            let s: Settings = parse_json(&body)?;
            s.validate()?;
            st.registry
                .mutate(|r| {
                    r.settings = s;
                    Ok(s)
                })
                .map(|(s, _)| s)
        },
    )
    .await
}

// ---- management requests ----

/// Query parameters: parsed by hand so that bad values get our JSON errors.
type Params = std::collections::HashMap<String, String>;

async fn list_requests(
    State(st): State<AppState>,
    h: HeaderMap,
    Query(q): Query<Params>,
) -> Response {
    act(
        st,
        h,
        Role::Observer,
        "management_request.list",
        String::new(),
        move |st, _| {
            let want = q.get("state").cloned();
            Ok(st
                .registry
                .snapshot()
                .requests
                .into_values()
                .filter(|r| {
                    want.as_deref().is_none_or(|w| {
                        serde_json::to_value(r.state).ok()
                            == Some(serde_json::Value::String(w.into()))
                    })
                })
                .collect::<Vec<_>>())
        },
    )
    .await
}

fn request_id(s: &str) -> Result<u64, Error> {
    s.parse()
        .map_err(|_| Error::BadRequest(format!("request id {s} is not a number")))
}

async fn get_request(State(st): State<AppState>, h: HeaderMap, Path(id): Path<String>) -> Response {
    act(
        st,
        h,
        Role::Observer,
        "management_request.read",
        id.clone(),
        move |st, _| {
            let n = request_id(&id)?;
            st.registry
                .snapshot()
                .requests
                .remove(&crate::management::request_key(n))
                .ok_or_else(|| Error::NotFound(format!("management request {id}")))
        },
    )
    .await
}

async fn approve(State(st): State<AppState>, h: HeaderMap, Path(id): Path<String>) -> Response {
    act(
        st,
        h,
        Role::RegistrationOfficer,
        "management_request.approve",
        id.clone(),
        move |st, c| crate::management::decide(&st.registry, request_id(&id)?, true, &c.key_id),
    )
    .await
}

async fn reject(State(st): State<AppState>, h: HeaderMap, Path(id): Path<String>) -> Response {
    act(
        st,
        h,
        Role::RegistrationOfficer,
        "management_request.reject",
        id.clone(),
        move |st, c| crate::management::decide(&st.registry, request_id(&id)?, false, &c.key_id),
    )
    .await
}

// ---- global configuration and signing keys ----

async fn globalconf_status(State(st): State<AppState>, h: HeaderMap) -> Response {
    act(
        st,
        h,
        Role::Observer,
        "globalconf.read",
        String::new(),
        |st, _| {
            st.globalconf
                .publisher()
                .current()
                .map(|p| p.parsed.clone())
                .ok_or_else(|| Error::NotFound("nothing published yet".into()))
        },
    )
    .await
}

async fn regenerate(State(st): State<AppState>, h: HeaderMap) -> Response {
    act(
        st,
        h,
        Role::SystemAdministrator,
        "globalconf.regenerate",
        String::new(),
        |st, _| st.globalconf.regenerate().map(|p| p.parsed.clone()),
    )
    .await
}

#[derive(Serialize)]
struct KeyInfo {
    number: u32,
    status: &'static str,
    certificate: String,
    sha256: String,
}

async fn list_keys(State(st): State<AppState>, h: HeaderMap) -> Response {
    act(
        st,
        h,
        Role::Observer,
        "signing_key.list",
        String::new(),
        |st, _| {
            let s = st.registry.snapshot().signing;
            let mut out = Vec::new();
            for (n, status) in
                std::iter::once((s.active, "active")).chain(s.next.map(|n| (n, "next")))
            {
                let cert = st.globalconf.keys().certificate(n)?;
                out.push(KeyInfo {
                    number: n,
                    status,
                    sha256: util::sha256_hex(&cert),
                    certificate: util::b64(&cert),
                });
            }
            Ok(out)
        },
    )
    .await
}

async fn next_key(State(st): State<AppState>, h: HeaderMap) -> Response {
    act(
        st,
        h,
        Role::SystemAdministrator,
        "signing_key.generate_next",
        String::new(),
        |st, _| {
            let s = st.registry.snapshot().signing;
            if s.next.is_some() {
                return Err(Error::InvalidState(
                    "a next key is already announced; activate it first".into(),
                ));
            }
            let n = s.active + 1;
            st.globalconf.keys().generate(n, st.registry.instance())?;
            st.registry
                .mutate(|r| {
                    r.signing.next = Some(n);
                    Ok(())
                })
                .map(|_| BTreeMap::from([("next", n)]))
        },
    )
    .await
}

async fn activate_key(State(st): State<AppState>, h: HeaderMap) -> Response {
    act(
        st,
        h,
        Role::SystemAdministrator,
        "signing_key.activate_next",
        String::new(),
        |st, _| {
            st.registry
                .mutate(|r| {
                    let n = r
                        .signing
                        .next
                        .ok_or_else(|| Error::InvalidState("no next key is announced".into()))?;
                    r.signing.active = n;
                    r.signing.next = None;
                    Ok(n)
                })
                .map(|(n, _)| BTreeMap::from([("active", n)]))
        },
    )
    .await
}

// ---- API keys and audit ----

async fn list_api_keys(State(st): State<AppState>, h: HeaderMap) -> Response {
    act(
        st,
        h,
        Role::SystemAdministrator,
        "api_key.list",
        String::new(),
        |st, _| {
            Ok(st
                .registry
                .snapshot()
                .api_keys
                .into_values()
                .map(
                    |k| serde_json::json!({"id": k.id, "role": k.role, "created_at": k.created_at}),
                )
                .collect::<Vec<_>>())
        },
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    role: Role,
}

async fn create_api_key(State(st): State<AppState>, h: HeaderMap, body: Bytes) -> Response {
    act(
        st,
        h,
        Role::SystemAdministrator,
        "api_key.create",
        String::new(),
        move |st, _| {
            let n: NewKey = parse_json(&body)?;
            let (key, rec) = new_api_key(n.role)?;
            st.registry.mutate(|s| {
                s.api_keys.insert(rec.id.clone(), rec.clone());
                Ok(())
            })?;
            Ok(serde_json::json!({"id": rec.id, "role": rec.role, "key": key}))
        },
    )
    .await
}

async fn delete_api_key(
    State(st): State<AppState>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    act(
        st,
        h,
        Role::SystemAdministrator,
        "api_key.delete",
        id.clone(),
        move |st, _| {
            st.registry
                .mutate(|s| {
                    s.api_keys
                        .remove(&id)
                        .map(|_| ())
                        .ok_or_else(|| Error::NotFound(format!("API key {id}")))
                })
                .map(|_| serde_json::json!({"deleted": id}))
        },
    )
    .await
}

async fn audit(State(st): State<AppState>, h: HeaderMap, Query(q): Query<Params>) -> Response {
    act(
        st,
        h,
        Role::Observer,
        "audit.read",
        String::new(),
        move |st, _| {
            let num = |k: &str, d: u64| -> Result<u64, Error> {
                q.get(k)
                    .map(|v| {
                        v.parse()
                            .map_err(|_| Error::BadRequest(format!("{k} must be a number")))
                    })
                    .transpose()
                    .map(|v| v.unwrap_or(d))
            };
            let limit = usize::try_from(num("limit", 1000)?.min(10_000)).unwrap_or(10_000);
            st.registry.audit().list(num("after", 0)?, limit)
        },
    )
    .await
}
