//! The benchmark's backend: an HTTP/1.1 keep-alive echo server, as in perf-anchors §1, that
//! also answers X-Road SOAP requests so the bus's SOAP path can be measured against it.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use trustbus_sdk::soap::{HashAlgorithm, Limits, build_response, parse_request};

/// Bodies up to this size are read whole and answered with a `Content-Length` (the
/// perf-anchors echo); larger or chunked ones are streamed back so 1 GiB never sits in memory.
const BUFFER_LIMIT: u64 = 1 << 20;

type EchoBody = Either<Full<Bytes>, Incoming>;

fn plain(status: StatusCode, ct: &'static str, body: impl Into<Bytes>) -> Response<EchoBody> {
    let mut r = Response::new(Either::Left(Full::new(body.into())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(ct),
    );
    r
}

/// A SOAP response that echoes the request's header and body content (plus `requestHash`), or
/// a 400 naming the parse error.
fn soap_answer(body: Bytes) -> Response<EchoBody> {
    match parse_request(body.to_vec(), &Limits::default()) {
        Ok(req) => {
            let content = String::from_utf8_lossy(req.body_content()).into_owned();
            let out = build_response(&req, &content, HashAlgorithm::Sha512);
            plain(StatusCode::OK, "text/xml; charset=utf-8", out)
        }
        Err(f) => plain(
            StatusCode::BAD_REQUEST,
            "text/plain",
            format!("not an X-Road SOAP request: {}\n", f.message),
        ),
    }
}

async fn handle(req: Request<Incoming>) -> Result<Response<EchoBody>, Infallible> {
    let is_xml = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("xml"));
    let small = hyper::body::Body::size_hint(req.body())
        .exact()
        .is_some_and(|n| n <= BUFFER_LIMIT);
    if !small && !is_xml {
        let mut r = Response::new(Either::Right(req.into_body()));
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/octet-stream"),
        );
        return Ok(r);
    }
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return Ok(plain(
                StatusCode::BAD_REQUEST,
                "text/plain",
                format!("reading the body failed: {e}\n"),
            ));
        }
    };
    Ok(if is_xml {
        soap_answer(body)
    } else {
        plain(StatusCode::OK, "application/octet-stream", body)
    })
}

/// Serves until the task is dropped: every POST body comes back with status 200. A body whose
/// `Content-Type` contains `xml` is taken as an X-Road SOAP request and answered with a SOAP
/// response echoing its header and body content.
pub async fn serve(listener: TcpListener) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        // Latency is what is measured; Nagle would add up to 40 ms to small responses.
        let _ = tcp.set_nodelay(true);
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(tcp), service_fn(handle))
                .await;
        });
    }
}

/// Binds `addr` and returns the listener with its actual address (for port 0).
pub async fn bind(addr: &str) -> std::io::Result<(TcpListener, SocketAddr)> {
    let l = TcpListener::bind(addr).await?;
    let a = l.local_addr()?;
    Ok((l, a))
}
