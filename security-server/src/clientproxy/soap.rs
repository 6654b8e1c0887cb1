//! SOAP (X-Road message protocol 4.0) requests from information systems.

use hyper::body::Incoming;
use trustbus_sdk::FaultDialect;
use trustbus_sdk::fault::{ErrorKind, Fault, Origin};
use trustbus_sdk::multipart::{self, SoapContentType};
use trustbus_sdk::soap::{self, HashAlgorithm, SoapResponse};

use super::{ConnInfo, check_client, cp, exchange, read_body, route};
use crate::httpc::{OutBody, full};
use crate::message::seal;
use crate::respond::{log_fault, soap_error};
use crate::spill::SpillBuffer;
use crate::state::AppState;
use crate::transport::{CT_SOAP, CT_SOAP_MULTIPART, Direction, Metadata, PROTOCOL, PayloadKind};

pub(super) async fn handle(
    state: &AppState,
    conn: &ConnInfo,
    req: http::Request<Incoming>,
    labels: &mut (String, String),
) -> (http::Response<OutBody>, String) {
    match run(state, conn, req, labels).await {
        Ok(r) => (r, "ok".into()),
        Err(f) => {
            log_fault("consumer", &f);
            let outcome = f.code.render(FaultDialect::Classic);
            (soap_error(&f, state.dialect()), outcome)
        }
    }
}

async fn run(
    state: &AppState,
    conn: &ConnInfo,
    req: http::Request<Incoming>,
    labels: &mut (String, String),
) -> Result<http::Response<OutBody>, Fault> {
    if req.method() != http::Method::POST {
        return Err(Fault::of(
            Origin::Client,
            ErrorKind::InvalidHttpMethod,
            format!("SOAP requests must use POST, not {}", req.method()),
        ));
    }
    let (parts, body) = req.into_parts();
    let ct = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            Fault::of(
                Origin::Client,
                ErrorKind::InvalidContentType,
                "Content-Type is missing",
            )
        })?
        .to_owned();
    let soap_action = parts
        .headers
        .get("soapaction")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let kind = multipart::check_content_type(&ct)?;
    let lim = state.cfg().limits;
    let mut spill = read_body(
        body,
        lim.max_soap_bytes as u64,
        SpillBuffer::new(lim.max_soap_bytes, None),
    )
    .await?;
    let bytes = spill
        .to_vec()
        .map_err(|e| cp(ErrorKind::IOError, e.to_string()))?;
    let limits = soap::Limits::default();
    let (request, whole) = match kind {
        SoapContentType::Xml => (soap::parse_request(bytes, &limits)?, None),
        SoapContentType::Multipart(ty) => {
            let mp = multipart::parse_multipart(bytes, &ty, &limits)?;
            let env = soap::parse_request(mp.soap_bytes().to_vec(), &limits)?;
            (env, Some(mp.bytes().to_vec()))
        }
    };
    let h = request.header().clone();
    let view = state.view(Origin::ClientProxy)?;
    let client_cfg = check_client(state, &view, conn, &h.client)?;
    // Labelled only once the client is known, so callers cannot create metric series at will.
    *labels = (h.client.to_slash(), h.service.without_version().to_slash());
    let id_token = parts
        .headers
        .get(trustbus_sdk::rest::TRUSTBUS_ID_TOKEN)
        .map(|v| {
            v.to_str().map_err(|_| {
                Fault::of(
                    Origin::Client,
                    ErrorKind::InvalidUserIdentity,
                    "Trustbus-Id-Token is not ASCII",
                )
            })
        })
        .transpose()?
        .map(str::trim)
        .filter(|t| !t.is_empty());
    if id_token.is_none() && h.user_id.is_some() && !client_cfg.allow_unverified_user_id {
        return Err(Fault::of(
            Origin::Client,
            ErrorKind::InvalidUserIdentity,
            "this client may not assert an unverified userId",
        ));
    }
    // A token that does not verify is refused here, before anything is signed or sent; with
    // one, a userId in the envelope must be its subject.
    let user = state
        .citizen
        .resolve(&view, &client_cfg, id_token, h.user_id.as_deref())
        .await?;
    let servers = route(&view, h.service.provider(), h.security_server.as_ref())?;
    let request_hash = soap::request_hash(request.bytes(), HashAlgorithm::Sha512);
    let body = match whole {
        Some(w) => {
            let mut s = SpillBuffer::new(lim.spill_threshold_bytes, None);
            s.write(&w)
                .map_err(|e| cp(ErrorKind::IOError, e.to_string()))?;
            Some((s, CT_SOAP_MULTIPART))
        }
        None => None,
    };
    let meta = Metadata {
        protocol: PROTOCOL.into(),
        kind: PayloadKind::Soap,
        direction: Direction::Request,
        message_id: h.id.clone(),
        request_id: crate::transport::new_request_id(),
        client: h.client.clone(),
        service: h.service.clone(),
        user,
        issue: h.issue.clone(),
        represented_party: h.represented_party.as_ref().map(|p| p.to_slash()),
        target_server: h.security_server.clone(),
        content_type: Some(ct),
        soap_action,
        request_hash: None,
        status: None,
    };
    let sealed = seal(
        meta,
        request.bytes().to_vec(),
        CT_SOAP,
        body,
        &state.identity(),
        Origin::ClientProxy,
        crate::now(),
    )?;
    let (msg, resp_body, _) =
        exchange(state, &view, super::Outgoing::Sealed(sealed), &servers).await?;
    super::check_request_hash(&msg.meta, &request_hash)?;
    let status = match soap::parse_response(msg.head.clone(), &limits)
        .map_err(|f| cp(ErrorKind::InvalidSoap, f.message))?
    {
        SoapResponse::Message(m) => {
            soap::check_response_headers(&request, &m, Origin::ClientProxy)?;
            soap::verify_request_hash(request.bytes(), &m, Origin::ClientProxy)?;
            200
        }
        SoapResponse::Fault { .. } => 500,
    };
    let ct = msg
        .meta
        .content_type
        .clone()
        .unwrap_or_else(|| "text/xml; charset=utf-8".into());
    let out = match resp_body {
        None => msg.head,
        Some(mut b) => splice_envelope(&mut b, &ct, &msg.head, &limits)?,
    };
    http::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, ct)
        .body(full(out))
        .map_err(|e| cp(ErrorKind::InternalError, e.to_string()))
}

/// The provider's multipart response with its SOAP part replaced by the verified envelope
/// (the one carrying `requestHash`); the other parts pass unchanged.
fn splice_envelope(
    body: &mut SpillBuffer,
    content_type: &str,
    envelope: &[u8],
    limits: &soap::Limits,
) -> Result<Vec<u8>, Fault> {
    let bad = |m: String| cp(ErrorKind::InvalidResponse, m);
    let SoapContentType::Multipart(ty) =
        multipart::check_content_type(content_type).map_err(|f| bad(f.message))?
    else {
        return Err(bad(
            "a response body without a multipart content type".into()
        ));
    };
    let bytes = body
        .to_vec()
        .map_err(|e| cp(ErrorKind::IOError, e.to_string()))?;
    let mp = multipart::parse_multipart(bytes, &ty, limits).map_err(|f| bad(f.message))?;
    let r = mp.soap_part().body_range.clone();
    let all = mp.bytes();
    let mut out = Vec::with_capacity(all.len() + envelope.len());
    out.extend_from_slice(all.get(..r.start).unwrap_or_default());
    out.extend_from_slice(envelope);
    out.extend_from_slice(all.get(r.end..).unwrap_or_default());
    Ok(out)
}
