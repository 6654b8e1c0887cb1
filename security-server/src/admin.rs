//! The admin listener: `/metrics` (Prometheus text), `/healthz`, `/diagnostics`, the admin
//! REST API under `/api/` ([`crate::adminapi`]) and the auditor API (`/api/v1/audit/`,
//! [`crate::auditorapi`]).

use std::sync::Arc;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use trustbus_pki::ocsp::CertStatus;
use trustbus_sdk::fault::Origin;

use crate::httpc::{OutBody, full};
use crate::state::AppState;

/// Serves the admin routes on `listener`.
pub async fn serve(state: Arc<AppState>, listener: TcpListener) -> std::io::Result<()> {
    loop {
        let (tcp, _) = listener.accept().await?;
        let state = state.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let state = state.clone();
                async move {
                    if req.uri().path().starts_with(crate::auditorapi::PREFIX) {
                        return Ok::<_, std::convert::Infallible>(match &state.auditor {
                            Some(app) => crate::auditorapi::handle(app, req).await,
                            None if !state.log.recording() => crate::auditorapi::logging_disabled(),
                            None => crate::auditorapi::not_available(),
                        });
                    }
                    if req.uri().path().starts_with("/api/")
                        && crate::auditorapi::is_auditor_key(&state.cfg(), req.headers())
                    {
                        return Ok(crate::auditorapi::admin_api_forbidden());
                    }
                    if req.uri().path().starts_with("/api/") {
                        return Ok::<_, std::convert::Infallible>(
                            crate::adminapi::handle(&state, req).await,
                        );
                    }
                    if req.uri().path() == "/diagnostics/connection" {
                        let q = req.uri().query().unwrap_or("").to_owned();
                        let (status, v) = connection_test(&state, &q).await;
                        return Ok(text(status, v.to_string(), "application/json"));
                    }
                    Ok(route(&state, req.uri().path()))
                }
            });
            let _ = http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(crate::HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

pub(crate) fn text(status: u16, body: String, ct: &str) -> http::Response<OutBody> {
    http::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, ct)
        .body(full(body))
        .unwrap_or_else(|_| http::Response::new(full(Vec::new())))
}

/// Why the server cannot exchange messages right now, if it cannot.
pub fn health(state: &AppState) -> Result<(), String> {
    let view = state.view(Origin::ClientProxy).map_err(|f| f.message)?;
    match state.identity().sign.ocsp() {
        // A stapled response peers would find stale means every exchange would fail.
        Some((_, CertStatus::Good, this_update))
            if crate::now() - this_update > view.ocsp_freshness =>
        {
            return Err(
                "the signing certificate's OCSP response is older than the freshness window".into(),
            );
        }
        Some((_, CertStatus::Good, _)) => {}
        Some((_, s, _)) => return Err(format!("signing certificate OCSP status {s:?}")),
        None => return Err("no OCSP response for the signing certificate yet".into()),
    }
    if state.identity().auth.ocsp().is_none() {
        return Err("no OCSP response for the authentication certificate yet".into());
    }
    Ok(())
}

/// `GET /diagnostics`: global configuration held, OCSP status of the server's own
/// certificates, and the hosted clients' registration state, as JSON.
pub fn diagnostics(state: &AppState) -> String {
    let now = crate::now();
    let rfc = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    };
    let conf = match state.view(Origin::ClientProxy) {
        Ok(v) => serde_json::json!({
            "status": "ok",
            "version": v.version(),
            "generated_at": v.conf.directory.generated_at,
            "expires_at": v.conf.directory.expires_at,
        }),
        Err(f) => {
            serde_json::json!({ "status": f.code.render(state.dialect()), "message": f.message })
        }
    };
    let ocsp = |kc: &crate::identity::KeyCert| match kc.ocsp() {
        Some((_, status, this_update)) => serde_json::json!({
            "certificate": kc.cert().subject(),
            "sha256": kc.cert().fingerprint_hex(),
            "not_after": rfc(kc.cert().not_after()),
            "ocsp_status": format!("{status:?}"),
            "ocsp_this_update": rfc(this_update),
            "ocsp_age_seconds": (now - this_update).whole_seconds(),
        }),
        None => serde_json::json!({
            "certificate": kc.cert().subject(),
            "sha256": kc.cert().fingerprint_hex(),
            "not_after": rfc(kc.cert().not_after()),
            "ocsp_status": "none yet",
        }),
    };
    let registered = |c: &trustbus_sdk::id::ClientId| {
        state
            .view(Origin::ClientProxy)
            .ok()
            .and_then(|v| v.server(&state.identity().server).map(|s| v.hosts(s, c)))
            .unwrap_or(false)
    };
    let clients: Vec<serde_json::Value> = state
        .cfg()
        .clients
        .iter()
        .map(|c| serde_json::json!({ "id": c.id.to_slash(), "registered": registered(&c.id) }))
        .collect();
    serde_json::json!({
        "server": state.identity().server.to_slash(),
        "global_configuration": conf,
        "signing_certificate": ocsp(&state.identity().sign),
        "authentication_certificate": ocsp(&state.identity().auth),
        "clients": clients,
        "message_log": message_log(state),
        "healthy": health(state).is_ok(),
    })
    .to_string()
}

/// Whether exchanges are recorded; with the log switched off, a warning that says what that
/// costs.
fn message_log(state: &AppState) -> serde_json::Value {
    if state.log.recording() {
        serde_json::json!({ "enabled": true })
    } else {
        serde_json::json!({
            "enabled": false,
            "warning": "the message log is switched off ([message_log] enabled = false): \
                        exchanges are not recorded and cannot be proven",
        })
    }
}

/// `GET /diagnostics/connection?server=INSTANCE/CLASS/MEMBER/CODE`: a mutual TLS handshake
/// with that security server, as an exchange would make it; the status and JSON answer.
pub(crate) async fn connection_test(state: &AppState, query: &str) -> (u16, serde_json::Value) {
    let started = std::time::Instant::now();
    let result = async {
        let id = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("server="))
            .ok_or("give ?server=INSTANCE/CLASS/MEMBER/CODE")?;
        let id = trustbus_sdk::id::SecurityServerId::from_slash(id).map_err(|e| e.to_string())?;
        let view = state.view(Origin::ClientProxy).map_err(|f| f.message)?;
        let server = view
            .server(&id)
            .cloned()
            .ok_or("no such security server in global configuration")?;
        state
            .pool
            .probe(&view, &state.identity(), &server)
            .await
            .map(|subject| (server.address.clone(), subject))
            .map_err(|f| format!("{}: {}", f.code.render(state.dialect()), f.message))
    }
    .await;
    let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    match result {
        Ok((address, subject)) => (
            200,
            serde_json::json!({ "ok": true, "address": address, "peer_certificate": subject, "latency_ms": ms }),
        ),
        Err(e) => (
            502,
            serde_json::json!({ "ok": false, "error": e, "latency_ms": ms }),
        ),
    }
}

fn route(state: &AppState, path: &str) -> http::Response<OutBody> {
    match path {
        "/metrics" => {
            let now = crate::now();
            if let Ok(v) = state.view(Origin::ClientProxy) {
                let generated = time::OffsetDateTime::parse(
                    &v.conf.directory.generated_at,
                    &time::format_description::well_known::Rfc3339,
                );
                if let Ok(g) = generated {
                    state.metrics.globalconf_age.set((now - g).whole_seconds());
                }
            }
            if let Some((_, _, this_update)) = state.identity().sign.ocsp() {
                state
                    .metrics
                    .ocsp_age
                    .set((now - this_update).whole_seconds());
            }
            text(200, state.metrics.render(), "text/plain; version=0.0.4")
        }
        "/diagnostics" => text(200, diagnostics(state), "application/json"),
        "/healthz" => match health(state) {
            Ok(()) => text(200, "ok\n".into(), "text/plain"),
            Err(e) => text(503, format!("unhealthy: {e}\n"), "text/plain"),
        },
        _ => text(404, "not found\n".into(), "text/plain"),
    }
}
