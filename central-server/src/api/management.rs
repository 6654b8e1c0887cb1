//! The management service: `POST /managementservice/v1/requests`, served over mutual TLS
//! ([`crate::tlsconf`]); the handler needs the connection's [`PeerCert`] as connect info.

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;

use super::{AppState, correlation_id, error_response};
use crate::registry::AuditEntry;
use crate::tlsconf::PeerCert;

/// The management router.
pub fn management_router(state: AppState) -> Router {
    let limit = state.max_management_body;
    Router::new()
        .route("/managementservice/v1/requests", post(submit))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

async fn submit(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<PeerCert>,
    body: Bytes,
) -> Response {
    let cid = correlation_id();
    let st2 = st.clone();
    let cid2 = cid.clone();
    let result = tokio::task::spawn_blocking(move || {
        let state = st2.registry.snapshot();
        let verified = match &peer.0 {
            // The listener requires a client certificate; a connection without one cannot
            // reach this handler, but refuse rather than skip the binding if it ever does.
            None => Err(crate::Error::TlsCertificateMismatch(
                "no TLS client certificate".into(),
            )),
            Some(cert) => crate::management::verify_envelope(
                &body,
                &crate::management::VerifyContext {
                    state: &state,
                    now: time::OffsetDateTime::now_utc(),
                    tls_peer: Some(cert),
                },
            ),
        };
        let (actor, kind) = match &verified {
            Ok(v) => (
                format!("management:{}", v.request.member.to_slash()),
                v.request.request.request_type().as_str(),
            ),
            Err(_) => ("management:unverified".to_owned(), "unknown"),
        };
        let result =
            verified.and_then(|v| crate::management::submit(&st2.registry, &st2.auto_approve, v));
        let (res, detail, target) = match &result {
            Ok(r) => (
                "ok".to_owned(),
                format!("{:?}", r.state).to_lowercase(),
                format!("request {}", r.id),
            ),
            Err(e) => (e.code().to_owned(), e.to_string(), String::new()),
        };
        crate::metrics::with(|m| {
            m.management_requests.with_label_values(&[kind, &res]).inc();
        });
        let _ = st2.registry.audit().record(AuditEntry {
            id: 0,
            at: crate::util::rfc3339(crate::util::now()),
            actor,
            action: format!("management.{kind}"),
            target,
            result: res,
            detail,
            correlation_id: cid2,
        });
        if matches!(&result, Ok(r) if r.state == crate::management::RequestState::Approved)
            && let Err(e) = st2.globalconf.refresh()
        {
            tracing::warn!(error = %e, "regeneration after auto-approval failed; will retry");
        }
        result
    })
    .await;
    match result {
        Ok(Ok(r)) => (StatusCode::CREATED, axum::Json(r)).into_response(),
        Ok(Err(e)) => error_response(&e, &cid),
        Err(e) => error_response(&crate::Error::Internal(e.to_string()), &cid),
    }
}
