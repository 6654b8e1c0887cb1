//! The server proxy: accepts `trustbus/1` messages from other security servers over mutual
//! TLS, verifies them completely, checks access rights, calls the backend, signs and logs the
//! response (docs/protocol.md §5).

pub mod backend;

use std::sync::Arc;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use trustbus_pki::Certificate;
use trustbus_pki::chain::{Purpose, TrustStore};
use trustbus_pki::tls::{PeerPolicy, TlsIdentity, ss_server_config};
use trustbus_sdk::fault::{ErrorKind, Fault, Origin};
use trustbus_sdk::rest::{ExchangeHeaders, RequestHeaderPart, ResponseHeaderPart};
use trustbus_sdk::soap::{self, HashAlgorithm, SoapResponse};

use crate::config::ServiceKind;
use crate::gcview::GcView;
use crate::httpc::OutBody;
use crate::logsink::{Outcome, Side};
use crate::message::{entry, read_message, seal};
use crate::respond::{log_fault, rest_error};
use crate::spill::SpillBuffer;
use crate::state::AppState;
use crate::transport::{
    CT_REST_BODY, CT_REST_RESPONSE, CT_SOAP, CT_SOAP_MULTIPART, Direction, EXCHANGE_PATH, Limits,
    Metadata, PROTOCOL, PROTOCOL_HEADER, PayloadKind, ReceivedMessage,
};
use crate::verify::{check_certificate, fault, verify_message};

/// Accepts peers whose authentication certificate chains to an approved CA and is registered
/// for any security server; which clients that server may speak for is checked per message.
struct AnyRegistered(Arc<AppState>);

impl PeerPolicy for AnyRegistered {
    fn trust_store(&self) -> Arc<TrustStore> {
        self.0
            .view(Origin::ServerProxy)
            .map(|v| v.trust.clone())
            .unwrap_or_else(|_| Arc::new(TrustStore::new()))
    }
    fn is_registered(&self, fp: &[u8; 32]) -> bool {
        self.0
            .view(Origin::ServerProxy)
            .is_ok_and(|v| v.server_by_fingerprint(fp).is_some())
    }
}

/// Serves the server proxy on `listener` until the task is dropped.
pub async fn serve(state: Arc<AppState>, listener: TcpListener) -> std::io::Result<()> {
    // The authentication key changes only at restart (docs/operator-guide.md, rotating keys).
    let id = state.identity();
    let tls_id = TlsIdentity::new(&id.auth.chain, &id.auth.key).map_err(std::io::Error::other)?;
    let cfg = ss_server_config(tls_id, Arc::new(AnyRegistered(state.clone())))
        .map_err(std::io::Error::other)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
    let limits = state.clone();
    crate::listen::accept_limited(&limits, listener, move |tcp, remote| {
        let acceptor = acceptor.clone();
        let state = state.clone();
        async move {
            let _ = tcp.set_nodelay(true);
            let tls = match acceptor.accept(tcp).await {
                Ok(t) => t,
                Err(e) => {
                    state.metrics.tls_handshake_failures.inc();
                    tracing::warn!(%remote, error = %e, "TLS handshake failed on the server proxy");
                    return;
                }
            };
            let Some(peer) = trustbus_pki::tls::peer_certificate(tls.get_ref().1) else {
                return;
            };
            let peer = Arc::new(peer);
            let svc = service_fn(move |req| {
                let state = state.clone();
                let peer = peer.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(state, peer, req).await) }
            });
            if let Err(e) = crate::listen::http1_builder(None)
                .serve_connection(TokioIo::new(tls), svc)
                .await
            {
                tracing::debug!(%remote, error = %e, "server proxy connection ended");
            }
        }
    })
    .await
}

async fn handle(
    state: Arc<AppState>,
    peer: Arc<Certificate>,
    req: http::Request<Incoming>,
) -> http::Response<OutBody> {
    let started = Instant::now();
    let mut labels = (String::from("-"), String::from("-"));
    let limit = std::time::Duration::from_secs(state.cfg().limits.request_timeout_seconds.max(1));
    let result = match tokio::time::timeout(limit, exchange(&state, &peer, req, &mut labels)).await
    {
        Ok(r) => r,
        Err(_) => Err(sp(
            ErrorKind::NetworkError,
            format!("the exchange took longer than {limit:?}"),
        )),
    };
    let outcome = match &result {
        Ok(_) => "ok".to_owned(),
        Err(f) => f.code.render(trustbus_sdk::FaultDialect::Classic),
    };
    state.metrics.observe(
        "provider",
        &labels.0,
        &labels.1,
        &outcome,
        started.elapsed().as_secs_f64(),
    );
    match result {
        Ok(r) => r,
        Err(f) => {
            log_fault("provider", &f);
            let mut r = rest_error(&f, state.dialect(), None);
            if let Ok(v) = http::HeaderValue::from_str(PROTOCOL) {
                r.headers_mut().insert(PROTOCOL_HEADER, v);
            }
            r
        }
    }
}

fn sp(kind: ErrorKind, m: impl Into<String>) -> Fault {
    Fault::of(Origin::ServerProxy, kind, m)
}

async fn exchange(
    state: &Arc<AppState>,
    peer: &Certificate,
    req: http::Request<Incoming>,
    labels: &mut (String, String),
) -> Result<http::Response<OutBody>, Fault> {
    if req.uri().path() != EXCHANGE_PATH {
        return Err(sp(
            ErrorKind::NotFound,
            format!("no such endpoint {}", req.uri().path()),
        ));
    }
    if req.method() != http::Method::POST {
        return Err(sp(
            ErrorKind::InvalidHttpMethod,
            "the exchange endpoint takes POST",
        ));
    }
    let view = state.view(Origin::ServerProxy)?;
    let now = crate::now();
    let ct = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let lim = state.cfg().limits;
    let limits = Limits {
        max_head: lim.max_soap_bytes as u64,
        max_body: lim.max_body_bytes,
        ..Limits::default()
    };
    let (msg, body) = read_message(
        req.into_body(),
        &ct,
        &limits,
        lim.spill_threshold_bytes,
        true,
        Origin::ServerProxy,
    )
    .await?;
    let meta = msg.meta.clone();
    if meta.direction != Direction::Request {
        return Err(sp(ErrorKind::InvalidMessage, "expected a request"));
    }

    // 1. The TLS peer must be a registered server hosting the client, with a good auth OCSP.
    let peer_server = view
        .server_by_fingerprint(peer.fingerprint())
        .ok_or_else(|| {
            sp(
                ErrorKind::SslAuthenticationFailed,
                "authentication certificate is not registered",
            )
        })?;
    if !view.hosts(peer_server, &meta.client) {
        return Err(sp(
            ErrorKind::SslAuthenticationFailed,
            format!(
                "security server {} does not host client {}",
                peer_server.id.to_slash(),
                meta.client.to_slash()
            ),
        ));
    }
    check_certificate(
        &view,
        &state.verify_cache,
        peer,
        &[],
        &msg.auth_ocsp,
        Purpose::Auth,
        Origin::ServerProxy,
        ErrorKind::SslAuthenticationFailed,
        now,
    )?;
    // 2. Signature, manifest, signer = client's member, signer OCSP.
    let verified = verify_message(
        &view,
        &state.verify_cache,
        &msg,
        &meta.client.owner(),
        Origin::ServerProxy,
        now,
    )?;
    state
        .replay
        .admit(&msg.manifest, verified.signing_time, now)?;
    // Labelled only after verification, so peers cannot create metric series at will.
    *labels = (
        meta.client.to_slash(),
        meta.service.without_version().to_slash(),
    );
    // 3. The payload says what the metadata says.
    let soap_request = check_consistency(&msg)?;

    let mut log_req = entry(
        Side::Provider,
        &meta,
        &msg.meta_bytes,
        &msg.head,
        None,
        &msg.manifest,
        &msg.signature,
        verified.ocsp.clone(),
        Outcome::Ok,
    );
    let mut body = body;
    if let Some(b) = body
        .as_mut()
        .filter(|b| b.len() <= crate::message::LOG_BODY_MAX)
    {
        log_req.payload_body = b.to_vec().ok();
    }
    state
        .log_durably(log_req)
        .await
        .map_err(|e| e.fault(Origin::ServerProxy))?;

    // 4. Service, access rights, backend.
    let cfg = state.cfg();
    let provider = meta.service.provider();
    if cfg.client(provider).is_none()
        || !view
            .server(&state.identity().server)
            .is_some_and(|s| view.hosts(s, provider))
    {
        return Err(sp(
            ErrorKind::UnknownMember,
            format!(
                "{} is not a client of this security server",
                provider.to_slash()
            ),
        ));
    }
    if meta.kind == PayloadKind::Soap && meta.service.code() == "getWsdl" {
        let request = soap_request
            .as_ref()
            .ok_or_else(|| sp(ErrorKind::InternalError, "SOAP request not parsed"))?;
        let (code, version) = crate::metadata::wsdl_request(request.body_content())
            .ok_or_else(|| sp(ErrorKind::InvalidSoap, "getWsdl needs a serviceCode"))?;
        let wsdl = crate::metadata::wsdl(&cfg, provider, &code).ok_or_else(|| {
            sp(
                ErrorKind::UnknownService,
                format!("no WSDL for service code {code}"),
            )
        })?;
        let mut xml = format!(
            "<xrd:getWsdlResponse xmlns:xrd=\"{}\"><xrd:serviceCode>{}</xrd:serviceCode>",
            soap::XROAD_NS,
            code.replace('&', "&amp;").replace('<', "&lt;")
        );
        if let Some(v) = version {
            xml.push_str(&format!(
                "<xrd:serviceVersion>{}</xrd:serviceVersion>",
                v.replace('&', "&amp;").replace('<', "&lt;")
            ));
        }
        xml.push_str("</xrd:getWsdlResponse>");
        let head = soap::build_response(request, &xml, HashAlgorithm::Sha512);
        let (whole, ct) = crate::metadata::wsdl_response(&head, &wsdl)
            .ok_or_else(|| sp(ErrorKind::InternalError, "WSDL collides with the boundary"))?;
        let mut body = SpillBuffer::new(state.cfg().limits.spill_threshold_bytes, None);
        body.write(&whole)
            .map_err(|e| sp(ErrorKind::IOError, e.to_string()))?;
        let hash = soap::request_hash(request.bytes(), HashAlgorithm::Sha512);
        let prepared = Prepared {
            meta: response_meta(&meta, hash, 200, Some(ct)),
            head,
            head_type: CT_SOAP,
            body: Some((body, CT_SOAP_MULTIPART)),
        };
        return finish(state, prepared).await;
    }
    if meta.kind == PayloadKind::Soap
        && ["listMethods", "allowedMethods"].contains(&meta.service.code())
    {
        let request = soap_request
            .as_ref()
            .ok_or_else(|| sp(ErrorKind::InternalError, "SOAP request not parsed"))?;
        let allowed_only = meta.service.code() == "allowedMethods";
        let xml = crate::metadata::methods_soap(&cfg, &*view, provider, &meta.client, allowed_only);
        let head = soap::build_response(request, &xml, HashAlgorithm::Sha512);
        let hash = soap::request_hash(request.bytes(), HashAlgorithm::Sha512);
        let prepared = Prepared {
            meta: response_meta(&meta, hash, 200, Some("text/xml; charset=utf-8".into())),
            head,
            head_type: CT_SOAP,
            body: None,
        };
        return finish(state, prepared).await;
    }
    if meta.kind == PayloadKind::Rest
        && crate::metadata::PROVIDER_SERVICES.contains(&meta.service.code())
    {
        let (doc, ct) = if meta.service.code() == "getOpenAPI" {
            let part = RequestHeaderPart::parse(&msg.head).map_err(|e| e.request_fault())?;
            let rr = part
                .rest_request()
                .map_err(|e| sp(ErrorKind::InvalidRest, e.to_string()))?;
            crate::metadata::openapi(&cfg, provider, rr.query()).ok_or_else(|| {
                sp(
                    ErrorKind::UnknownService,
                    "no OpenAPI description for that serviceCode",
                )
            })?
        } else {
            let allowed_only = meta.service.code() == "allowedMethods";
            let json = crate::metadata::methods(&cfg, &*view, provider, &meta.client, allowed_only);
            (json, "application/json")
        };
        let prepared = metadata_response(state, &meta, &msg, doc, ct)?;
        return finish(state, prepared).await;
    }
    let svc = cfg.service(&meta.service).ok_or_else(|| {
        sp(
            ErrorKind::UnknownService,
            format!("unknown service {}", meta.service.to_slash()),
        )
    })?;
    let kind_ok = matches!(
        (svc.kind, meta.kind),
        (ServiceKind::Rest, PayloadKind::Rest) | (ServiceKind::Soap, PayloadKind::Soap)
    );
    if !kind_ok {
        return Err(sp(
            ErrorKind::ServiceType,
            format!(
                "{} is not a {:?} service",
                meta.service.to_slash(),
                meta.kind
            ),
        ));
    }
    if !svc.enabled {
        let notice = if svc.disabled_notice.is_empty() {
            "service is disabled".to_owned()
        } else {
            svc.disabled_notice.clone()
        };
        return Err(sp(ErrorKind::ServiceDisabled, notice));
    }
    let prepared = match meta.kind {
        PayloadKind::Rest => rest_backend(state, &view, &meta, &msg, body, svc).await?,
        PayloadKind::Soap => {
            let request = soap_request
                .ok_or_else(|| sp(ErrorKind::InternalError, "SOAP request not parsed"))?;
            soap_backend(state, &view, &meta, &msg, request, body, svc).await?
        }
    };
    finish(state, prepared).await
}

/// Signs, logs and sends the response.
async fn finish(state: &AppState, prepared: Prepared) -> Result<http::Response<OutBody>, Fault> {
    let mut sealed = seal(
        prepared.meta,
        prepared.head,
        prepared.head_type,
        prepared.body,
        &state.identity(),
        Origin::ServerProxy,
        crate::now(),
    )?;
    let entry = sealed.log_entry(Side::Provider, Outcome::Ok);
    state
        .log_durably(entry)
        .await
        .map_err(|e| e.fault(Origin::ServerProxy))?;
    let ct = sealed.content_type();
    http::Response::builder()
        .status(200)
        .header(http::header::CONTENT_TYPE, ct)
        .header(PROTOCOL_HEADER, PROTOCOL)
        .body(sealed.into_body())
        .map_err(|e| sp(ErrorKind::InternalError, e.to_string()))
}

/// A metadata answer (`listMethods`, `allowedMethods`, `getOpenAPI`) as a REST response.
fn metadata_response(
    state: &AppState,
    meta: &Metadata,
    msg: &ReceivedMessage,
    json: Vec<u8>,
    content_type: &'static str,
) -> Result<Prepared, Fault> {
    let request_hash = trustbus_sdk::rest::request_hash(&msg.head, None);
    let exchange = ExchangeHeaders {
        message_id: meta.message_id.clone(),
        client: meta.client.clone(),
        service: meta.service.clone(),
        request_id: meta.request_id.clone(),
        request_hash: request_hash.clone(),
    };
    let headers = trustbus_sdk::rest::Headers::new().with("content-type", content_type);
    let head = ResponseHeaderPart::for_transport(200, "OK", &headers, &exchange)
        .to_bytes()
        .map_err(|e| sp(ErrorKind::InternalError, e.to_string()))?;
    let mut body = SpillBuffer::new(state.cfg().limits.spill_threshold_bytes, None);
    body.write(&json)
        .map_err(|e| sp(ErrorKind::IOError, e.to_string()))?;
    Ok(Prepared {
        meta: response_meta(meta, request_hash, 200, None),
        head,
        head_type: CT_REST_RESPONSE,
        body: Some((body, CT_REST_BODY)),
    })
}

fn inconsistent(m: String) -> Fault {
    sp(ErrorKind::InconsistentHeaders, m)
}

/// The REST header part or SOAP header must name the client and service of the metadata.
/// Returns the parsed SOAP request, so the envelope is parsed once.
fn check_consistency(msg: &ReceivedMessage) -> Result<Option<soap::SoapMessage>, Fault> {
    let meta = &msg.meta;
    match meta.kind {
        PayloadKind::Rest => {
            let part = RequestHeaderPart::parse(&msg.head).map_err(|e| e.request_fault())?;
            let rr = part
                .rest_request()
                .map_err(|e| inconsistent(e.to_string()))?;
            if rr.service() != &meta.service {
                return Err(inconsistent(
                    "REST request and metadata name different services".into(),
                ));
            }
            let client = part
                .headers
                .get_last("x-road-client")
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| trustbus_sdk::ClientId::from_slash(v.trim()).ok());
            if client.as_ref() != Some(&meta.client) {
                return Err(inconsistent(
                    "REST request and metadata name different clients".into(),
                ));
            }
            let rid = part.headers.get_last("x-road-request-id");
            if rid != Some(meta.request_id.as_bytes()) {
                return Err(inconsistent(
                    "REST request id does not match the metadata".into(),
                ));
            }
        }
        PayloadKind::Soap => {
            let m = soap::parse_request(msg.head.clone(), &soap::Limits::default())
                .map_err(|f| sp(ErrorKind::InvalidSoap, f.message))?;
            let h = m.header();
            if h.client != meta.client || h.service != meta.service || h.id != meta.message_id {
                return Err(inconsistent("SOAP header and metadata differ".into()));
            }
            return Ok(Some(m));
        }
    }
    Ok(None)
}

/// A response ready to be signed: metadata, payload head and its type, optional body.
struct Prepared {
    meta: Metadata,
    head: Vec<u8>,
    head_type: &'static str,
    body: Option<(SpillBuffer, &'static str)>,
}

fn response_meta(
    req: &Metadata,
    request_hash: String,
    status: u16,
    content_type: Option<String>,
) -> Metadata {
    Metadata {
        direction: Direction::Response,
        request_hash: Some(request_hash),
        status: Some(status),
        content_type,
        soap_action: None,
        ..req.clone()
    }
}

async fn rest_backend(
    state: &AppState,
    view: &GcView,
    meta: &Metadata,
    msg: &ReceivedMessage,
    body: Option<SpillBuffer>,
    svc: &crate::config::ServiceConfig,
) -> Result<Prepared, Fault> {
    let part = RequestHeaderPart::parse(&msg.head).map_err(|e| e.request_fault())?;
    let rr = part
        .rest_request()
        .map_err(|e| sp(ErrorKind::InvalidRest, e.to_string()))?;
    let path = rr
        .endpoint_path()
        .map_err(|e| sp(ErrorKind::InvalidRest, e.to_string()))?;
    crate::access::check(
        &state.cfg(),
        view,
        &meta.client,
        &meta.service,
        Some((rr.method(), &path)),
    )?;
    crate::citizen::enforce(svc, meta.user.as_ref(), view)?;
    // The service learns the end user from the signed metadata only.
    let backend_headers = crate::citizen::backend_user_headers(&part.headers, meta.user.as_ref());
    let request_hash = match &body {
        Some(b) => b.request_hash().unwrap_or_default(),
        None => trustbus_sdk::rest::request_hash(&msg.head, None),
    };
    let url = backend::rest_url(&svc.url, rr.path(), rr.query());
    let lim = state.cfg().limits;
    let r = backend::call(
        state.backend(&svc.id).as_ref(),
        svc,
        rr.method(),
        &url,
        &backend_headers,
        body,
        lim.max_body_bytes,
        lim.spill_threshold_bytes,
    )
    .await?;
    let exchange = ExchangeHeaders {
        message_id: meta.message_id.clone(),
        client: meta.client.clone(),
        service: meta.service.clone(),
        request_id: meta.request_id.clone(),
        request_hash: request_hash.clone(),
    };
    let head = ResponseHeaderPart::for_transport(r.status, &r.reason, &r.headers, &exchange)
        .to_bytes()
        .map_err(|e| sp(ErrorKind::InvalidResponse, e.to_string()))?;
    let body = (!r.body.is_empty()).then_some((r.body, CT_REST_BODY));
    Ok(Prepared {
        meta: response_meta(meta, request_hash, r.status, None),
        head,
        head_type: CT_REST_RESPONSE,
        body,
    })
}

async fn soap_backend(
    state: &AppState,
    view: &GcView,
    meta: &Metadata,
    msg: &ReceivedMessage,
    request: soap::SoapMessage,
    body: Option<SpillBuffer>,
    svc: &crate::config::ServiceConfig,
) -> Result<Prepared, Fault> {
    crate::access::check(&state.cfg(), view, &meta.client, &meta.service, None)?;
    crate::citizen::enforce(svc, meta.user.as_ref(), view)?;
    let limits = soap::Limits::default();
    let mut headers = trustbus_sdk::rest::Headers::new();
    let ct = meta
        .content_type
        .clone()
        .unwrap_or_else(|| "text/xml; charset=utf-8".into());
    headers.push("Content-Type", ct.into_bytes());
    if let Some(a) = &meta.soap_action {
        headers.push("SOAPAction", a.clone().into_bytes());
    }
    crate::citizen::add_user_headers(&mut headers, meta.user.as_ref());
    let out_body = match body {
        Some(b) => b,
        None => {
            let mut s = SpillBuffer::new(state.cfg().limits.spill_threshold_bytes, None);
            s.write(&msg.head)
                .map_err(|e| sp(ErrorKind::IOError, e.to_string()))?;
            s
        }
    };
    let lim = state.cfg().limits;
    let mut r = backend::call(
        state.backend(&svc.id).as_ref(),
        svc,
        "POST",
        &svc.url,
        &headers,
        Some(out_body),
        lim.max_soap_bytes as u64,
        lim.max_soap_bytes,
    )
    .await?;
    let resp_ct = r
        .headers
        .get_last("content-type")
        .and_then(|v| std::str::from_utf8(v).ok())
        .unwrap_or("text/xml")
        .to_owned();
    let bytes = r
        .body
        .to_vec()
        .map_err(|e| sp(ErrorKind::IOError, e.to_string()))?;
    let fail = |m: String| {
        fault(
            Origin::ServerProxy,
            ErrorKind::ServiceFailed,
            Some(ErrorKind::InvalidSoap),
            m,
        )
    };
    // A multipart (SwA/MTOM) response travels whole as the payload body; the head is its SOAP
    // part with requestHash set, which the consumer splices back in.
    let (envelope, whole) =
        match trustbus_sdk::multipart::check_content_type(&resp_ct).map_err(|f| fail(f.message))? {
            trustbus_sdk::multipart::SoapContentType::Xml => (bytes, None),
            trustbus_sdk::multipart::SoapContentType::Multipart(ty) => {
                let mp = trustbus_sdk::multipart::parse_multipart(bytes, &ty, &limits)
                    .map_err(|f| fail(f.message))?;
                let mut spill = SpillBuffer::new(lim.spill_threshold_bytes, None);
                spill
                    .write(mp.bytes())
                    .map_err(|e| sp(ErrorKind::IOError, e.to_string()))?;
                (mp.soap_bytes().to_vec(), Some((spill, CT_SOAP_MULTIPART)))
            }
        };
    let hash = soap::request_hash(request.bytes(), HashAlgorithm::Sha512);
    let head = match soap::parse_response(envelope, &limits).map_err(|f| fail(f.message))? {
        SoapResponse::Message(m) => {
            soap::check_response_headers(&request, &m, Origin::ServerProxy)?;
            soap::build_response_from(&request, &m, HashAlgorithm::Sha512)
        }
        SoapResponse::Fault { bytes, .. } => bytes,
    };
    Ok(Prepared {
        meta: response_meta(meta, hash, r.status, Some(resp_ct)),
        head,
        head_type: CT_SOAP,
        body: whole,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(head: &[u8], service: &str) -> ReceivedMessage {
        ReceivedMessage {
            meta: Metadata {
                protocol: PROTOCOL.into(),
                kind: PayloadKind::Rest,
                direction: Direction::Request,
                message_id: "m".into(),
                request_id: "r1".into(),
                client: trustbus_sdk::ClientId::from_slash("DEV/GOV/1/c").unwrap(),
                service: trustbus_sdk::ServiceId::from_slash(service).unwrap(),
                user: None,
                issue: None,
                represented_party: None,
                target_server: None,
                content_type: None,
                soap_action: None,
                request_hash: None,
                status: None,
            },
            meta_bytes: vec![],
            head: head.to_vec(),
            head_type: crate::transport::CT_REST_REQUEST.into(),
            body: None,
            manifest: vec![],
            signature: vec![],
            auth_ocsp: vec![],
            digests: vec![],
        }
    }

    fn code(r: Result<Option<soap::SoapMessage>, Fault>) -> String {
        r.unwrap_err()
            .code
            .render(trustbus_sdk::FaultDialect::Classic)
    }

    #[test]
    fn payload_must_agree_with_the_metadata() {
        let head =
            b"GET\r\n/r1/DEV/GOV/2/p/s/x\r\nx-road-client:DEV/GOV/1/c\r\nx-road-request-id:r1\r\n";
        check_consistency(&msg(head, "DEV/GOV/2/p/s")).unwrap();
        assert_eq!(
            code(check_consistency(&msg(head, "DEV/GOV/2/p/other"))),
            "Server.ServerProxy.InconsistentHeaders"
        );
        let other_client =
            b"GET\r\n/r1/DEV/GOV/2/p/s/x\r\nx-road-client:DEV/GOV/9/z\r\nx-road-request-id:r1\r\n";
        assert_eq!(
            code(check_consistency(&msg(other_client, "DEV/GOV/2/p/s"))),
            "Server.ServerProxy.InconsistentHeaders"
        );
        let other_id =
            b"GET\r\n/r1/DEV/GOV/2/p/s/x\r\nx-road-client:DEV/GOV/1/c\r\nx-road-request-id:r2\r\n";
        assert_eq!(
            code(check_consistency(&msg(other_id, "DEV/GOV/2/p/s"))),
            "Server.ServerProxy.InconsistentHeaders"
        );
        assert_eq!(
            code(check_consistency(&msg(b"GET\n/r1\n", "DEV/GOV/2/p/s"))),
            "Server.ServerProxy.InvalidRest"
        );
    }
}
