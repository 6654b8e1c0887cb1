//! REST (`/r1/…`) requests from information systems.

use bytes::Bytes;
use hyper::body::Incoming;
use trustbus_sdk::FaultDialect;
use trustbus_sdk::fault::{ErrorKind, Fault, Origin};
use trustbus_sdk::rest::{
    ExchangeHeaders, RequestHeaderPart, ResponseHeaderPart, RestRequest, XRoadHeaders,
};

use super::{ConnInfo, check_client, cp, exchange, read_body, route};
use crate::httpc::OutBody;
use crate::message::{seal, stream_body};
use crate::respond::{log_fault, put_headers, rest_error, sdk_headers};
use crate::spill::SpillBuffer;
use crate::state::AppState;
use crate::transport::{CT_REST_BODY, CT_REST_REQUEST, Direction, Metadata, PROTOCOL, PayloadKind};

pub(super) async fn handle(
    state: &AppState,
    conn: &ConnInfo,
    req: http::Request<Incoming>,
    labels: &mut (String, String),
) -> (http::Response<OutBody>, String) {
    let accept = req
        .headers()
        .get(http::header::ACCEPT)
        .map(|v| v.as_bytes().to_vec());
    match run(state, conn, req, labels).await {
        Ok(r) => (r, "ok".into()),
        Err(f) => {
            log_fault("consumer", &f);
            let outcome = f.code.render(FaultDialect::Classic);
            (rest_error(&f, state.dialect(), accept.as_deref()), outcome)
        }
    }
}

async fn run(
    state: &AppState,
    conn: &ConnInfo,
    req: http::Request<Incoming>,
    labels: &mut (String, String),
) -> Result<http::Response<OutBody>, Fault> {
    let (parts, body) = req.into_parts();
    let target = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| parts.uri.path().to_owned());
    let rr = RestRequest::parse(parts.method.as_str(), &target).map_err(|e| e.fault())?;
    // Paths that could mean something else to the backend (dot segments, encoded separators)
    // are refused here already; the provider checks again.
    rr.endpoint_path().map_err(|e| e.fault())?;
    let mut headers = sdk_headers(&parts.headers);
    let xroad = XRoadHeaders::from_headers(&headers).map_err(|e| e.fault())?;
    let view = state.view(Origin::ClientProxy)?;
    let client_cfg = check_client(state, &view, conn, &xroad.client)?;
    // Labelled only once the client is known, so callers cannot create metric series at will.
    *labels = (
        xroad.client.to_slash(),
        rr.service().without_version().to_slash(),
    );
    let servers = route(
        &view,
        rr.service().provider(),
        xroad.security_server.as_ref(),
    )?;

    // A token that does not verify is refused here, before anything is signed or sent.
    let user = state
        .citizen
        .resolve(
            &view,
            &client_cfg,
            xroad.id_token.as_deref(),
            xroad.user_id.as_deref(),
        )
        .await?;
    // The end-user headers in the signed request say exactly what the metadata says; the
    // bus's own (`Trustbus-User-*`) never come from the client.
    headers.retain(|n| !crate::citizen::is_bus_user_header(n));
    if let Some(u) = &user {
        headers.push("x-road-userid", u.id.clone().into_bytes());
    }
    let request_id = crate::transport::new_request_id();
    let head = RequestHeaderPart::for_transport(&rr, &headers, &xroad, &request_id)
        .to_bytes()
        .map_err(|e| Fault::of(Origin::Client, ErrorKind::InvalidRest, e.to_string()))?;
    let lim = state.cfg().limits;
    let meta = Metadata {
        protocol: PROTOCOL.into(),
        kind: PayloadKind::Rest,
        direction: Direction::Request,
        message_id: xroad.message_id.clone(),
        request_id: request_id.clone(),
        client: xroad.client.clone(),
        service: rr.service().clone(),
        user,
        issue: xroad.issue.clone(),
        represented_party: xroad.represented_party.as_ref().map(|p| p.to_slash()),
        target_server: xroad.security_server.clone(),
        content_type: None,
        soap_action: None,
        request_hash: None,
        status: None,
    };
    // A large body whose length is announced is streamed through and hashed on the way; a
    // small one, or one of unknown length, is buffered (spilled to disk when large) first.
    let announced = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let (out, request_hash) = match announced {
        Some(len) if len > lim.max_body_bytes => {
            return Err(Fault::of(
                Origin::Client,
                ErrorKind::InvalidBody,
                format!("request body is larger than {} bytes", lim.max_body_bytes),
            ));
        }
        Some(len) if len > lim.spill_threshold_bytes as u64 => {
            // Fail before streaming, not after the whole body, when signing cannot succeed.
            // One identity for the check and the signature (a key rotation may swap it).
            let identity = state.identity();
            identity.ready_signer(&meta.client.owner(), Origin::ClientProxy)?;
            let (content_type, body, done) = crate::message::seal_streaming(
                meta.clone(),
                head,
                CT_REST_REQUEST,
                body,
                len,
                identity,
                Origin::ClientProxy,
            );
            let out = super::Outgoing::Streamed {
                content_type,
                body,
                meta,
                done,
            };
            (out, None)
        }
        _ => {
            let spill = SpillBuffer::new(lim.spill_threshold_bytes, None).with_request_hash(&head);
            let spill = read_body(body, lim.max_body_bytes, spill).await?;
            let (request_hash, body) = if spill.is_empty() {
                (trustbus_sdk::rest::request_hash(&head, None), None)
            } else {
                (
                    spill.request_hash().unwrap_or_default(),
                    Some((spill, CT_REST_BODY)),
                )
            };
            let sealed = seal(
                meta,
                head,
                CT_REST_REQUEST,
                body,
                &state.identity(),
                Origin::ClientProxy,
                crate::now(),
            )?;
            (super::Outgoing::Sealed(sealed), Some(request_hash))
        }
    };
    let (msg, resp_body, streamed_hash) = exchange(state, &view, out, &servers).await?;
    let request_hash = request_hash
        .or(streamed_hash)
        .ok_or_else(|| cp(ErrorKind::InternalError, "no request hash"))?;

    // The provider must have hashed exactly our request.
    super::check_request_hash(&msg.meta, &request_hash)?;
    let part = ResponseHeaderPart::parse(&msg.head).map_err(|e| e.response_fault())?;
    let ex = ExchangeHeaders {
        message_id: xroad.message_id,
        client: xroad.client,
        service: rr.service().clone(),
        request_id,
        request_hash,
    };
    ex.verify_response(&part.headers)?;
    let out_headers = part.client_headers(&ex);
    let mut b = put_headers(http::Response::builder().status(part.status), &out_headers);
    let body = match resp_body {
        Some(s) => {
            b = b.header(http::header::CONTENT_LENGTH, s.len());
            stream_body(Bytes::new(), s, Bytes::new())
        }
        None => crate::httpc::full(Bytes::new()),
    };
    b.body(body)
        .map_err(|e| cp(ErrorKind::InternalError, e.to_string()))
}
