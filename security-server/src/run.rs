//! Starting the listeners and background tasks of a configured server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use trustbus_sdk::fault::Origin;

use crate::state::AppState;

/// The bound addresses of a running server.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    /// Client proxy (plain HTTP).
    pub client_proxy: SocketAddr,
    /// Server proxy (mutual TLS).
    pub server_proxy: SocketAddr,
    /// Admin (`/metrics`, `/healthz`).
    pub admin: SocketAddr,
    /// Client proxy over HTTPS, if enabled.
    pub client_proxy_tls: Option<SocketAddr>,
    /// The auditor API over HTTPS, if enabled (and the server has an auditor API).
    pub auditor_tls: Option<SocketAddr>,
}

async fn bind(name: &str, addr: &str) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(e.kind(), format!("cannot listen on {addr} ({name}): {e}"))
    })
}

/// Binds the listeners, prints `listening NAME ADDR` lines (operators and tests read
/// them), and serves until one listener fails.
pub async fn start(
    state: Arc<AppState>,
) -> std::io::Result<(Bound, tokio::task::JoinSet<std::io::Result<()>>)> {
    let l = state.cfg().listen.clone();
    let cp = bind("client_proxy", &l.client_proxy).await?;
    let sp = bind("server_proxy", &l.server_proxy).await?;
    let ad = bind("admin", &l.admin).await?;
    let cpt = match &l.client_proxy_tls {
        Some(a) => Some(bind("client_proxy_tls", a).await?),
        None => None,
    };
    // The auditor listener needs the auditor API and the internal TLS certificate.
    let identity = state.identity();
    let auditor_tls = match (&l.auditor_tls, &state.auditor, &identity.internal) {
        (Some(a), Some(app), Some((key, chain))) => {
            let tls = crate::auditorapi::tls_config(key, chain).map_err(std::io::Error::other)?;
            Some((bind("auditor_tls", a).await?, app.clone(), tls))
        }
        (Some(_), _, _) => {
            return Err(std::io::Error::other(
                "listen.auditor_tls needs the message log's auditor API and the internal TLS \
                 certificate",
            ));
        }
        _ => None,
    };
    let bound = Bound {
        client_proxy: cp.local_addr()?,
        server_proxy: sp.local_addr()?,
        admin: ad.local_addr()?,
        client_proxy_tls: cpt.as_ref().map(|l| l.local_addr()).transpose()?,
        auditor_tls: auditor_tls
            .as_ref()
            .map(|(l, _, _)| l.local_addr())
            .transpose()?,
    };
    if let Some(a) = bound.client_proxy_tls {
        println!("listening client_proxy_tls https://{a}");
    }
    println!("listening client_proxy http://{}", bound.client_proxy);
    println!("listening server_proxy https://{}", bound.server_proxy);
    println!("listening admin http://{}", bound.admin);
    if let Some(a) = bound.auditor_tls {
        println!("listening auditor_tls https://{a}");
    }
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(crate::clientproxy::serve(state.clone(), cp));
    tasks.spawn(crate::serverproxy::serve(state.clone(), sp));
    tasks.spawn(crate::admin::serve(state.clone(), ad));
    if let Some(l) = cpt {
        tasks.spawn(crate::clientproxy::serve_tls(state.clone(), l));
    }
    if let Some((l, app, tls)) = auditor_tls {
        tasks.spawn(crate::auditorapi::serve_tls(app, tls, l));
    }
    tasks.spawn(ocsp_refresher(state));
    Ok((bound, tasks))
}

/// Keeps the stapled OCSP responses of the server's own certificates fresh: every quarter of
/// the freshness window (at most every 5 minutes), and every 2 seconds while failing.
async fn ocsp_refresher(state: Arc<AppState>) -> std::io::Result<()> {
    loop {
        let wait = match state.view(Origin::ClientProxy) {
            Ok(v) => match state.identity().refresh_ocsp(&v, &state.http).await {
                Ok(()) => {
                    let q = v.ocsp_freshness.whole_seconds() / 4;
                    Duration::from_secs(u64::try_from(q.clamp(5, 300)).unwrap_or(60))
                }
                Err(e) => {
                    tracing::warn!(error = %e, "OCSP refresh failed");
                    Duration::from_secs(2)
                }
            },
            Err(_) => Duration::from_secs(1),
        };
        tokio::time::sleep(wait).await;
    }
}
