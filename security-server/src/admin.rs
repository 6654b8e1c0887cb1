//! The admin listener: `/metrics` (Prometheus text) and `/healthz`.

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
                async move { Ok::<_, std::convert::Infallible>(route(&state, req.uri().path())) }
            });
            let _ = http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(crate::HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

fn text(status: u16, body: String, ct: &str) -> http::Response<OutBody> {
    http::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, ct)
        .body(full(body))
        .unwrap_or_else(|_| http::Response::new(full(Vec::new())))
}

/// Why the server cannot exchange messages right now, if it cannot.
pub fn health(state: &AppState) -> Result<(), String> {
    state.view(Origin::ClientProxy).map_err(|f| f.message)?;
    match state.identity.sign.ocsp() {
        Some((_, CertStatus::Good, _)) => {}
        Some((_, s, _)) => return Err(format!("signing certificate OCSP status {s:?}")),
        None => return Err("no OCSP response for the signing certificate yet".into()),
    }
    if state.identity.auth.ocsp().is_none() {
        return Err("no OCSP response for the authentication certificate yet".into());
    }
    Ok(())
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
            if let Some((_, _, this_update)) = state.identity.sign.ocsp() {
                state
                    .metrics
                    .ocsp_age
                    .set((now - this_update).whole_seconds());
            }
            text(200, state.metrics.render(), "text/plain; version=0.0.4")
        }
        "/healthz" => match health(state) {
            Ok(()) => text(200, "ok\n".into(), "text/plain"),
            Err(e) => text(503, format!("unhealthy: {e}\n"), "text/plain"),
        },
        _ => text(404, "not found\n".into(), "text/plain"),
    }
}
