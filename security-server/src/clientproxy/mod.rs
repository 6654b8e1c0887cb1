//! The client proxy: information systems call it with X-Road SOAP or REST; it checks the
//! client, signs the request, sends it to a provider's security server, verifies the signed
//! response and returns it with the X-Road response headers.

mod rest;
mod soap;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use trustbus_central_server::model::SecurityServer;
use trustbus_pki::chain::Purpose;
use trustbus_sdk::fault::{ErrorKind, Fault, FaultCode, Origin};
use trustbus_sdk::id::{ClientId, SecurityServerId};

use crate::config::{ClientConfig, ConnectionMode};
use crate::gcview::GcView;
use crate::httpc::OutBody;
use crate::logsink::{Outcome, Side};
use crate::message::{Sealed, entry, read_message};
use crate::spill::SpillBuffer;
use crate::state::AppState;
use crate::transport::{
    Direction, EXCHANGE_PATH, Limits, PROTOCOL, PROTOCOL_HEADER, ReceivedMessage,
};
use crate::verify::{check_certificate, verify_message};

/// How the information system connected.
#[derive(Debug, Clone, Default)]
pub struct ConnInfo {
    /// Over TLS.
    pub tls: bool,
    /// SHA-256 fingerprint (hex) of its client certificate, if it presented one.
    pub client_cert: Option<String>,
}

/// Serves plain HTTP on `listener`.
pub async fn serve(state: Arc<AppState>, listener: TcpListener) -> std::io::Result<()> {
    let conn = Arc::new(ConnInfo::default());
    let limits = state.clone();
    crate::listen::accept_limited(&limits, listener, move |tcp, remote| {
        let state = state.clone();
        let conn = conn.clone();
        async move {
            let _ = tcp.set_nodelay(true);
            let max_header = state.cfg().limits.max_header_bytes;
            let svc = service_fn(move |req| {
                let state = state.clone();
                let conn = conn.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(state, conn, req).await) }
            });
            if let Err(e) = crate::listen::http1_builder(Some(max_header))
                .serve_connection(TokioIo::new(tcp), svc)
                .await
            {
                tracing::debug!(%remote, error = %e, "client proxy connection ended");
            }
        }
    })
    .await
}

/// Serves HTTPS on `listener` with the internal certificate; client certificates are asked
/// for but optional, and matched per request against the client's registered ones.
pub async fn serve_tls(state: Arc<AppState>, listener: TcpListener) -> std::io::Result<()> {
    let identity = state.identity();
    let (key, chain) = identity.internal.as_ref().ok_or_else(|| {
        std::io::Error::other("no internal TLS certificate (security-server init creates one)")
    })?;
    let tls_id = trustbus_pki::tls::TlsIdentity::new(chain, key).map_err(std::io::Error::other)?;
    let cfg =
        trustbus_pki::tls::is_server_config(tls_id, trustbus_pki::tls::IsClientAuth::Optional)
            .map_err(std::io::Error::other)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
    let limits = state.clone();
    crate::listen::accept_limited(&limits, listener, move |tcp, remote| {
        let state = state.clone();
        let acceptor = acceptor.clone();
        async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::info!(%remote, error = %e, "TLS handshake with an information system failed");
                    return;
                }
            };
            let conn = Arc::new(ConnInfo {
                tls: true,
                client_cert: trustbus_pki::tls::peer_certificate(tls.get_ref().1)
                    .map(|c| c.fingerprint_hex()),
            });
            let max_header = state.cfg().limits.max_header_bytes;
            let svc = service_fn(move |req| {
                let state = state.clone();
                let conn = conn.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(state, conn, req).await) }
            });
            if let Err(e) = crate::listen::http1_builder(Some(max_header))
                .serve_connection(TokioIo::new(tls), svc)
                .await
            {
                tracing::debug!(%remote, error = %e, "client proxy TLS connection ended");
            }
        }
    })
    .await
}

/// Handles one information-system request.
pub async fn handle(
    state: Arc<AppState>,
    conn: Arc<ConnInfo>,
    req: http::Request<Incoming>,
) -> http::Response<OutBody> {
    let started = Instant::now();
    let path = req.uri().path();
    if path == "/listClients" && req.method() == http::Method::GET {
        return list_clients(&state);
    }
    let is_rest = path.starts_with("/r") && path[2..].starts_with(|c: char| c.is_ascii_digit());
    let mut labels = (String::from("-"), String::from("-"));
    let limit = std::time::Duration::from_secs(state.cfg().limits.request_timeout_seconds.max(1));
    let work = async {
        if is_rest {
            rest::handle(&state, &conn, req, &mut labels).await
        } else {
            soap::handle(&state, &conn, req, &mut labels).await
        }
    };
    let (resp, outcome) = match tokio::time::timeout(limit, work).await {
        Ok(r) => r,
        Err(_) => {
            let f = cp(
                ErrorKind::NetworkError,
                format!("the exchange took longer than {limit:?}"),
            );
            crate::respond::log_fault("consumer", &f);
            let code = f.code.render(trustbus_sdk::FaultDialect::Classic);
            let r = if is_rest {
                crate::respond::rest_error(&f, state.dialect(), None)
            } else {
                crate::respond::soap_error(&f, state.dialect())
            };
            (r, code)
        }
    };
    state.metrics.observe(
        "consumer",
        &labels.0,
        &labels.1,
        &outcome,
        started.elapsed().as_secs_f64(),
    );
    resp
}

/// `GET /listClients`: the members and subsystems of the instance (X-Road REST metadata).
fn list_clients(state: &AppState) -> http::Response<OutBody> {
    match state.view(Origin::ClientProxy) {
        Ok(v) => http::Response::builder()
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(crate::httpc::full(crate::metadata::list_clients(&v)))
            .unwrap_or_else(|_| http::Response::new(crate::httpc::full(Vec::new()))),
        Err(f) => crate::respond::rest_error(&f, state.dialect(), None),
    }
}

fn cp(kind: ErrorKind, m: impl Into<String>) -> Fault {
    Fault::of(Origin::ClientProxy, kind, m)
}

/// The client must be hosted here (locally configured and registered in global configuration)
/// and connect the way its configuration demands.
fn check_client(
    state: &AppState,
    view: &GcView,
    conn: &ConnInfo,
    client: &ClientId,
) -> Result<ClientConfig, Fault> {
    let cfg = state.cfg();
    let c = cfg.client(client).cloned().ok_or_else(|| {
        cp(
            ErrorKind::UnknownMember,
            format!(
                "client {} is not a client of this security server",
                client.to_slash()
            ),
        )
    })?;
    match c.connection {
        ConnectionMode::Http => {}
        ConnectionMode::Https if conn.tls => {}
        ConnectionMode::HttpsAuth
            if conn
                .client_cert
                .as_ref()
                .is_some_and(|fp| c.is_certs.iter().any(|r| r.eq_ignore_ascii_case(fp))) => {}
        ConnectionMode::Https | ConnectionMode::HttpsAuth => {
            let why = match (&c.connection, conn.tls, &conn.client_cert) {
                (_, false, _) => "specifies HTTPS but the request came over plain HTTP",
                (ConnectionMode::HttpsAuth, true, None) => {
                    "specifies HTTPS with client authentication but did not supply a TLS certificate"
                }
                _ => "presented a TLS certificate that is not registered for it",
            };
            return Err(cp(
                ErrorKind::SslAuthenticationFailed,
                format!("client {} {why}", client.to_slash()),
            ));
        }
    }
    // Requests are signed with the client member's key.
    if state.identity().signer(&client.owner()).is_none() {
        return Err(crate::verify::fault(
            Origin::ClientProxy,
            ErrorKind::CannotCreateSignature,
            Some(ErrorKind::KeyNotFound),
            format!(
                "this security server holds no signing key for member {}",
                client.owner().to_slash()
            ),
        ));
    }
    let here = view.server(&state.identity().server);
    if !here.is_some_and(|s| view.hosts(s, client)) {
        return Err(cp(
            ErrorKind::UnknownMember,
            format!(
                "client {} is not registered on this security server in global configuration",
                client.to_slash()
            ),
        ));
    }
    Ok(c)
}

/// The provider's security servers, without those in maintenance mode.
fn route(
    view: &GcView,
    provider: &ClientId,
    target: Option<&SecurityServerId>,
) -> Result<Vec<SecurityServer>, Fault> {
    let hosting: Vec<&SecurityServer> = view
        .servers_hosting(provider)
        .into_iter()
        .filter(|s| target.is_none_or(|t| &s.id == t))
        .collect();
    if hosting.is_empty() {
        return Err(cp(
            ErrorKind::UnknownMember,
            format!("no security server hosts {}", provider.to_slash()),
        ));
    }
    let up: Vec<SecurityServer> = hosting
        .iter()
        .filter(|s| !s.maintenance.enabled)
        .map(|s| (*s).clone())
        .collect();
    if up.is_empty() {
        let msg = hosting
            .iter()
            .find_map(|s| s.maintenance.message.clone())
            .unwrap_or_else(|| "the provider's security server is in maintenance mode".into());
        return Err(cp(ErrorKind::MaintenanceMode, msg));
    }
    Ok(up)
}

/// Reads an IS request body into a spill buffer, at most `max` bytes.
async fn read_body(body: Incoming, max: u64, spill: SpillBuffer) -> Result<SpillBuffer, Fault> {
    let mut spill = spill;
    let mut body = Limited::new(body, usize::try_from(max).unwrap_or(usize::MAX));
    loop {
        match body.frame().await {
            None => return Ok(spill),
            Some(Err(e)) => {
                let too_big = e
                    .downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some();
                return Err(if too_big {
                    Fault::of(
                        Origin::Client,
                        ErrorKind::InvalidBody,
                        format!("request body is larger than {max} bytes"),
                    )
                } else {
                    Fault::of(
                        Origin::Client,
                        ErrorKind::InvalidBody,
                        format!("reading the request body failed: {e}"),
                    )
                });
            }
            Some(Ok(f)) => {
                if let Ok(d) = f.into_data() {
                    spill
                        .write(&d)
                        .map_err(|e| cp(ErrorKind::IOError, e.to_string()))?;
                }
            }
        }
    }
}

/// A request ready to go: sealed in full, or streamed with its signature made at the end.
// One value per request, moved once: the size difference does not matter.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Outgoing {
    /// Digested and signed before sending.
    Sealed(Sealed),
    /// Being streamed; `done` yields the signed parts once the body has been sent.
    Streamed {
        /// The HTTP `Content-Type`.
        content_type: String,
        /// The HTTP body.
        body: OutBody,
        /// The metadata.
        meta: crate::transport::Metadata,
        /// The signed parts, once sent.
        done: tokio::sync::oneshot::Receiver<Result<crate::message::Streamed, Fault>>,
    },
}

/// Logs, sends and verifies: the signed response, its payload body, and for a streamed
/// request the request hash computed while streaming.
async fn exchange(
    state: &AppState,
    view: &Arc<GcView>,
    out: Outgoing,
    servers: &[SecurityServer],
) -> Result<(ReceivedMessage, Option<SpillBuffer>, Option<String>), Fault> {
    let (req_meta, ct, body, done, request_logged) = match out {
        Outgoing::Sealed(mut sealed) => {
            // The request record is queued before anything is sent (so it precedes the
            // response in the journal, and a refusal stops the exchange here). It is not synced
            // on its own: the response record's sync covers it, and on any other outcome the
            // client is answered only after waiting for it.
            let entry_req = sealed.log_entry(Side::Consumer, Outcome::Ok);
            let logged = state
                .log
                .submit_deferred(entry_req)
                .map_err(|e| e.fault(Origin::ClientProxy))?;
            (
                sealed.meta.clone(),
                sealed.content_type(),
                sealed.into_body(),
                None,
                Some(logged),
            )
        }
        Outgoing::Streamed {
            content_type,
            body,
            meta,
            done,
        } => (meta, content_type, body, Some(done), None),
    };
    let result = send_and_verify(state, view, servers, req_meta, ct, body, done).await;
    if let Some(logged) = request_logged {
        logged.await.map_err(|e| e.fault(Origin::ClientProxy))?;
    }
    result
}

/// Sends the signed request, then reads, verifies and logs the response.
async fn send_and_verify(
    state: &AppState,
    view: &Arc<GcView>,
    servers: &[SecurityServer],
    req_meta: crate::transport::Metadata,
    ct: String,
    body: OutBody,
    done: Option<tokio::sync::oneshot::Receiver<Result<crate::message::Streamed, Fault>>>,
) -> Result<(ReceivedMessage, Option<SpillBuffer>, Option<String>), Fault> {
    let req = http::Request::post(EXCHANGE_PATH)
        .header(http::header::HOST, "trustbus-security-server")
        .header(http::header::CONTENT_TYPE, ct)
        .header(PROTOCOL_HEADER, PROTOCOL)
        .body(body)
        .map_err(|e| cp(ErrorKind::InternalError, e.to_string()))?;
    let sent = match state.pool.send(view, &state.identity(), servers, req).await {
        Ok(s) => s,
        Err(f) => {
            // A streamed body that failed on our side explains the failure better.
            if let Some(done) = done
                && let Ok(Err(cause)) = done.await
            {
                return Err(cause);
            }
            return Err(f);
        }
    };
    let mut streamed_hash = None;
    if let Some(done) = done {
        let s = done
            .await
            .map_err(|_| cp(ErrorKind::InternalError, "the streaming task ended early"))??;
        let e = entry(
            Side::Consumer,
            &req_meta,
            &s.meta_bytes,
            &s.head,
            None,
            &s.manifest,
            &s.signature,
            s.signer_ocsp,
            Outcome::Ok,
        );
        state
            .log_durably(e)
            .await
            .map_err(|e| e.fault(Origin::ClientProxy))?;
        streamed_hash = Some(s.request_hash);
    }
    let resp_ct = sent
        .response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if !resp_ct.to_ascii_lowercase().starts_with("multipart/mixed") {
        return Err(relay_error(sent.response).await);
    }
    let lim = state.cfg().limits;
    let limits = Limits {
        max_head: lim.max_soap_bytes as u64,
        max_body: lim.max_body_bytes,
        ..Limits::default()
    };
    let (msg, body) = read_message(
        sent.response.into_body(),
        &resp_ct,
        &limits,
        lim.spill_threshold_bytes,
        false,
        Origin::ClientProxy,
    )
    .await?;
    let m = &msg.meta;
    check_response_meta(&req_meta, m)?;
    let now = crate::now();
    check_certificate(
        view,
        &state.verify_cache,
        &sent.peer,
        &[],
        &msg.auth_ocsp,
        Purpose::Auth,
        Origin::ClientProxy,
        ErrorKind::SslAuthenticationFailed,
        now,
    )?;
    let verified = verify_message(
        view,
        &state.verify_cache,
        &msg,
        &req_meta.service.provider().owner(),
        Origin::ClientProxy,
        now,
    )?;
    let mut log_resp = entry(
        Side::Consumer,
        m,
        &msg.meta_bytes,
        &msg.head,
        None,
        &msg.manifest,
        &msg.signature,
        verified.ocsp,
        Outcome::Ok,
    );
    let mut body = body;
    if let Some(b) = body
        .as_mut()
        .filter(|b| b.len() <= crate::message::LOG_BODY_MAX)
    {
        log_resp.payload_body = b.to_vec().ok();
    }
    state
        .log_durably(log_resp)
        .await
        .map_err(|e| e.fault(Origin::ClientProxy))?;
    Ok((msg, body, streamed_hash))
}

/// The response must be a response to this very request.
fn check_response_meta(
    req: &crate::transport::Metadata,
    resp: &crate::transport::Metadata,
) -> Result<(), Fault> {
    let same = resp.direction == Direction::Response
        && resp.kind == req.kind
        && resp.request_id == req.request_id
        && resp.message_id == req.message_id
        && resp.client == req.client
        && resp.service == req.service;
    if same {
        Ok(())
    } else {
        Err(cp(
            ErrorKind::InconsistentResponse,
            "response metadata does not match the request",
        ))
    }
}

/// The provider must have hashed exactly the request we sent.
fn check_request_hash(resp: &crate::transport::Metadata, expected: &str) -> Result<(), Fault> {
    if resp.request_hash.as_deref() == Some(expected) {
        Ok(())
    } else {
        Err(cp(
            ErrorKind::InconsistentResponse,
            "response request hash does not match the request",
        ))
    }
}

/// A provider's error answer (not a signed message): its `X-Road-Error` code and message.
async fn relay_error(resp: http::Response<Incoming>) -> Fault {
    let code = resp
        .headers()
        .get("x-road-error")
        .and_then(|v| v.to_str().ok())
        .and_then(FaultCode::parse);
    let status = resp.status();
    let body = Limited::new(resp.into_body(), 64 * 1024)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_else(|_| Bytes::new());
    let parsed = trustbus_sdk::rest::parse_error_body(&body);
    match (code, parsed) {
        (Some(c), Some((_, message, detail))) => Fault::new(c, message).with_correlation_id(detail),
        (Some(c), None) => Fault::new(c, "the provider's security server reported an error"),
        _ => cp(
            ErrorKind::InvalidResponse,
            format!("provider's security server answered HTTP {status} without a message"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::{Metadata, PROTOCOL, PayloadKind};

    fn meta(direction: Direction) -> Metadata {
        Metadata {
            protocol: PROTOCOL.into(),
            kind: PayloadKind::Rest,
            direction,
            message_id: "m".into(),
            request_id: "r".into(),
            client: ClientId::from_slash("DEV/GOV/1/c").unwrap(),
            service: trustbus_sdk::ServiceId::from_slash("DEV/GOV/2/p/s").unwrap(),
            user: None,
            issue: None,
            represented_party: None,
            target_server: None,
            content_type: None,
            soap_action: None,
            request_hash: Some("hash".into()),
            status: Some(200),
        }
    }

    fn code(r: Result<(), Fault>) -> String {
        r.unwrap_err()
            .code
            .render(trustbus_sdk::FaultDialect::Classic)
    }

    #[test]
    fn responses_must_match_the_request() {
        let req = meta(Direction::Request);
        check_response_meta(&req, &meta(Direction::Response)).unwrap();
        check_request_hash(&meta(Direction::Response), "hash").unwrap();
        assert_eq!(
            code(check_request_hash(&meta(Direction::Response), "other")),
            "Server.ClientProxy.InconsistentResponse"
        );
        let mut none = meta(Direction::Response);
        none.request_hash = None;
        assert_eq!(
            code(check_request_hash(&none, "hash")),
            "Server.ClientProxy.InconsistentResponse"
        );
        assert_eq!(
            code(check_response_meta(&req, &req)),
            "Server.ClientProxy.InconsistentResponse"
        );
        let mut other = meta(Direction::Response);
        other.request_id = "another".into();
        assert_eq!(
            code(check_response_meta(&req, &other)),
            "Server.ClientProxy.InconsistentResponse"
        );
    }
}
