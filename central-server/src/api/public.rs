//! Global configuration download, `/metrics` and `/healthz`.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::{AppState, cached};

/// The public router.
pub fn public_router(state: AppState) -> Router {
    Router::new()
        .route("/globalconf/directory", get(directory))
        .route("/globalconf/directory.p7s", get(signature))
        .route("/globalconf/{version}/{name}", get(file))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

fn count(resource: &str, status: StatusCode) {
    crate::metrics::with(|m| {
        m.globalconf_downloads
            .with_label_values(&[resource, status.as_str()])
            .inc();
    });
}

fn short_cache(st: &AppState) -> String {
    format!(
        "public, max-age={}, must-revalidate",
        st.refresh_interval_seconds
    )
}

fn not_published() -> Response {
    let e = crate::Error::NotFound("no configuration has been published yet".into());
    super::error_response(&e, &super::correlation_id())
}

async fn directory(State(st): State<AppState>, headers: HeaderMap) -> Response {
    let Some(p) = st.globalconf.publisher().current() else {
        return not_published();
    };
    let r = cached(
        &headers,
        p.directory.clone(),
        "application/json",
        short_cache(&st),
    );
    count("directory", r.status());
    r
}

async fn signature(State(st): State<AppState>, headers: HeaderMap) -> Response {
    let Some(p) = st.globalconf.publisher().current() else {
        return not_published();
    };
    let r = cached(
        &headers,
        p.signature.clone(),
        "application/pkcs7-signature",
        short_cache(&st),
    );
    count("signature", r.status());
    r
}

async fn file(
    State(st): State<AppState>,
    Path((version, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let v = version
        .strip_prefix('v')
        .and_then(|v| v.parse::<u64>().ok());
    let found = match v {
        Some(v) => {
            let st2 = st.clone();
            tokio::task::spawn_blocking(move || st2.globalconf.publisher().file(v, &name))
                .await
                .ok()
                .flatten()
        }
        None => None,
    };
    let r = match found {
        Some(bytes) => cached(
            &headers,
            bytes.into(),
            "application/json",
            "public, max-age=31536000, immutable".into(),
        ),
        None => super::error_response(
            &crate::Error::NotFound(
                "no such configuration file (or version no longer kept)".into(),
            ),
            &super::correlation_id(),
        ),
    };
    count("file", r.status());
    r
}

async fn healthz(State(st): State<AppState>) -> Response {
    match st.globalconf.publisher().current() {
        Some(p) if crate::util::now() < p.expires_at => {
            (StatusCode::OK, format!("ok version={}\n", p.version)).into_response()
        }
        Some(p) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "published configuration version {} has expired\n",
                p.version
            ),
        )
            .into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "nothing published yet\n").into_response(),
    }
}

async fn metrics() -> Response {
    (
        [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::render(),
    )
        .into_response()
}
