//! Client tests over the mock transport (fault mapping against the bodies the security server
//! emits, headers, retries) and one over real hyper on loopback.

use std::time::Duration;

use super::*;
use crate::fault::{ErrorKind, Fault, FaultDialect, Origin};
use crate::rest::{ErrorFormat, ErrorResponse};
use crate::soap::{HashAlgorithm, Limits, build_response, parse_request, render_fault};

const SS: &str = "http://ss.test:8080";
const CLIENT: &str = "DEV/GOV/1234/portal";
const SERVICE: &str = "DEV/GOV/5678/registry/persons";

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_retries: 2,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(2),
    }
}

fn client(mock: MockTransport) -> BusClient<MockTransport> {
    BusClient::builder(SS, CLIENT)
        .retry(fast_retry())
        .build_with_transport(mock)
        .unwrap()
}

fn ok_json(body: &str) -> Result<http::Response<Bytes>, TransportError> {
    Ok(MockTransport::response(
        200,
        &[
            ("content-type", "application/json"),
            ("x-road-request-id", "rq-1"),
        ],
        body.to_owned(),
    ))
}

fn rest_fault(fault: &Fault, dialect: FaultDialect, format: ErrorFormat) -> http::Response<Bytes> {
    let e = ErrorResponse::new(fault, dialect, format);
    MockTransport::response(
        e.status,
        &[("x-road-error", &e.code), ("content-type", e.content_type)],
        e.body,
    )
}

fn connect_err() -> Result<http::Response<Bytes>, TransportError> {
    Err(TransportError::new(TransportErrorKind::Connect, "refused"))
}

#[tokio::test]
async fn rest_call_sets_url_and_xroad_headers() {
    let c = client(MockTransport::new(|_| ok_json(r#"{"name":"Mari"}"#)));
    let r = c
        .rest(SERVICE, Method::GET, "/persons/EE1?full=true")
        .user_id("EE38001085718")
        .issue("case-7")
        .id_token("eyJ.x.y")
        .represented_party("COM/777")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.request_id.as_deref(), Some("rq-1"));
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["name"], "Mari");
    let req = &c.transport().requests()[0];
    assert_eq!(req.method, Method::GET);
    assert_eq!(
        req.uri.to_string(),
        "http://ss.test:8080/r1/DEV/GOV/5678/registry/persons/persons/EE1?full=true"
    );
    let h = |n: &str| req.headers.get(n).unwrap().to_str().unwrap().to_owned();
    assert_eq!(h("x-road-client"), CLIENT);
    assert_eq!(
        uuid::Uuid::parse_str(&h("x-road-id"))
            .unwrap()
            .get_version_num(),
        4
    );
    assert_eq!(h("x-road-userid"), "EE38001085718");
    assert_eq!(h("x-road-issue"), "case-7");
    assert_eq!(h("trustbus-id-token"), "eyJ.x.y");
    assert_eq!(h("x-road-represented-party"), "COM/777");
    // Each call gets its own message id.
    c.rest(SERVICE, Method::GET, "").send().await.unwrap();
    let ids: Vec<_> = c
        .transport()
        .requests()
        .iter()
        .map(|r| r.headers["x-road-id"].clone())
        .collect();
    assert_ne!(ids[0], ids[1]);
}

#[tokio::test]
async fn json_body_and_percent_encoded_service() {
    let c = client(MockTransport::new(|_| ok_json("{}")));
    let svc = ServiceId::from_slash("DEV/GOV/5678/reg%3Fistry/persons/v1").unwrap();
    c.rest(&svc, Method::POST, "/search")
        .json(&serde_json::json!({"q": "x"}))
        .send()
        .await
        .unwrap();
    let req = &c.transport().requests()[0];
    assert_eq!(
        req.uri.path(),
        "/r1/DEV/GOV/5678/reg%3Fistry/persons/v1/search"
    );
    assert_eq!(req.headers["content-type"], "application/json");
    assert_eq!(&req.body[..], br#"{"q":"x"}"#);
}

#[tokio::test]
async fn rest_bus_faults_map_to_typed_errors_in_both_dialects_and_formats() {
    let cases = [
        (
            Origin::ServerProxy,
            ErrorKind::AccessDenied,
            FaultDialect::Classic,
            ErrorFormat::Json,
        ),
        (
            Origin::ClientProxy,
            ErrorKind::UnknownMember,
            FaultDialect::Lowercase,
            ErrorFormat::Json,
        ),
        (
            Origin::Client,
            ErrorKind::InvalidUserIdentity,
            FaultDialect::Classic,
            ErrorFormat::Xml,
        ),
        (
            Origin::ServerProxy,
            ErrorKind::ServiceFailed,
            FaultDialect::Lowercase,
            ErrorFormat::Xml,
        ),
    ];
    for (origin, kind, dialect, format) in cases {
        let fault = Fault::of(origin, kind, "nope <&>").with_correlation_id("corr-42");
        let resp = rest_fault(&fault, dialect, format);
        let c = client(MockTransport::new(move |_| Ok(resp.clone())));
        let err = c.rest(SERVICE, Method::GET, "/x").send().await.unwrap_err();
        assert_eq!(
            err,
            BusError::Fault {
                code: fault.code.clone(),
                message: "nope <&>".into(),
                correlation_id: "corr-42".into(),
                http_status: fault.http_status(),
            },
            "{origin:?} {kind:?} {dialect:?} {format:?}"
        );
        assert_eq!(err.fault_code(), Some(&fault.code));
        // Bus faults are never retried, even on GET.
        assert_eq!(c.transport().requests().len(), 1);
    }
}

#[tokio::test]
async fn unknown_fault_code_is_an_invalid_response() {
    let c = client(MockTransport::new(|_| {
        Ok(MockTransport::response(
            500,
            &[("x-road-error", "Bogus.Thing")],
            "{}",
        ))
    }));
    let err = c.rest(SERVICE, Method::GET, "/").send().await.unwrap_err();
    assert!(matches!(err, BusError::InvalidResponse(_)), "{err:?}");
}

#[tokio::test]
async fn provider_http_errors_pass_through() {
    let c = client(MockTransport::new(|_| {
        Ok(MockTransport::response(
            404,
            &[],
            r#"{"error":"no such person"}"#,
        ))
    }));
    let r = c
        .rest(SERVICE, Method::GET, "/persons/x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status, 404);
    assert!(!r.is_success());
    assert_eq!(r.text(), r#"{"error":"no such person"}"#);
    assert!(matches!(
        r.json::<serde_json::Value>(),
        Err(BusError::Status { status: 404, .. })
    ));
}

#[tokio::test]
async fn idempotent_methods_retry_on_connect_errors_and_gateway_statuses() {
    for method in [
        Method::GET,
        Method::HEAD,
        Method::PUT,
        Method::DELETE,
        Method::OPTIONS,
    ] {
        let c = client(MockTransport::sequence(vec![
            connect_err(),
            Ok(MockTransport::response(503, &[], "")),
            ok_json("{}"),
        ]));
        let r = c.rest(SERVICE, method.clone(), "/").send().await.unwrap();
        assert_eq!(r.status, 200, "{method}");
        let reqs = c.transport().requests();
        assert_eq!(reqs.len(), 3);
        // A retry is the same message: same id.
        assert_eq!(reqs[0].headers["x-road-id"], reqs[2].headers["x-road-id"]);
    }
    // Retries are bounded.
    let c = client(MockTransport::new(|_| {
        Ok(MockTransport::response(502, &[], ""))
    }));
    let r = c.rest(SERVICE, Method::GET, "/").send().await.unwrap();
    assert_eq!(
        (r.status.as_u16(), c.transport().requests().len()),
        (502, 3)
    );
    let c = client(MockTransport::new(|_| connect_err()));
    let e = c.rest(SERVICE, Method::GET, "/").send().await.unwrap_err();
    assert!(matches!(
        e,
        BusError::Transport(TransportError {
            kind: TransportErrorKind::Connect,
            ..
        })
    ));
    assert_eq!(c.transport().requests().len(), 3);
    // 500 is not retried.
    let c = client(MockTransport::new(|_| {
        Ok(MockTransport::response(500, &[], ""))
    }));
    c.rest(SERVICE, Method::GET, "/").send().await.unwrap();
    assert_eq!(c.transport().requests().len(), 1);
}

#[tokio::test]
async fn post_and_patch_are_never_retried() {
    for method in [Method::POST, Method::PATCH] {
        let c = client(MockTransport::new(|_| {
            Ok(MockTransport::response(503, &[], ""))
        }));
        let r = c.rest(SERVICE, method.clone(), "/").send().await.unwrap();
        assert_eq!(r.status, 503);
        assert_eq!(c.transport().requests().len(), 1, "{method}");
        let c = client(MockTransport::new(|_| connect_err()));
        assert!(c.rest(SERVICE, method.clone(), "/").send().await.is_err());
        assert_eq!(c.transport().requests().len(), 1, "{method}");
    }
}

#[tokio::test]
async fn bad_input_is_an_invalid_request_and_nothing_is_sent() {
    let c = client(MockTransport::new(|_| ok_json("{}")));
    for call in [
        c.rest("DEV/GOV/1234", Method::GET, "/"),
        c.rest(SERVICE, Method::GET, "no-slash"),
        c.rest(SERVICE, Method::GET, "/").user_id("a\nb"),
        c.rest(SERVICE, Method::GET, "/").header("bad name", "x"),
        c.rest(SERVICE, Method::GET, "/a b"),
    ] {
        assert!(matches!(
            call.send().await,
            Err(BusError::InvalidRequest(_))
        ));
    }
    assert!(c.transport().requests().is_empty());
}

#[test]
fn builder_validates_configuration() {
    for (url, id) in [
        ("ftp://x", CLIENT),
        ("not a url", CLIENT),
        ("http://x", "DEV/GOV"),
        ("https://x", CLIENT), // https without roots
    ] {
        assert!(
            matches!(
                BusClient::builder(url, id).build(),
                Err(BusError::Config(_))
            ),
            "{url} {id}"
        );
    }
    let e = BusClient::builder("https://x", CLIENT)
        .ca_roots_pem("garbage")
        .build();
    assert!(matches!(e, Err(BusError::Config(_))));
}

#[test]
fn backoff_doubles_and_caps() {
    let p = RetryPolicy::default();
    assert_eq!(p.backoff(0), Duration::from_millis(200));
    assert_eq!(p.backoff(1), Duration::from_millis(400));
    assert_eq!(p.backoff(10), Duration::from_secs(2));
    assert_eq!(p.backoff(u32::MAX), Duration::from_secs(2));
}

fn soap_echo(body: &'static str) -> MockTransport {
    MockTransport::new(move |req| {
        let request = parse_request(req.body.to_vec(), &Limits::default()).unwrap();
        let xml = build_response(&request, body, HashAlgorithm::Sha512);
        Ok(MockTransport::response(
            200,
            &[("content-type", "text/xml")],
            xml,
        ))
    })
}

#[tokio::test]
async fn soap_call_round_trip() {
    let c = client(soap_echo(
        r#"<p:getPersonResponse xmlns:p="urn:p"><name>Mari</name></p:getPersonResponse>"#,
    ));
    let reply = c
        .soap("DEV/GOV/5678/registry/getPerson/v1")
        .body(r#"<p:getPerson xmlns:p="urn:p"><id>1</id></p:getPerson>"#)
        .user_id("EE38001085718")
        .issue("case-7")
        .id_token("tok")
        .send()
        .await
        .unwrap();
    assert!(reply.body.contains("<name>Mari</name>"), "{}", reply.body);
    assert_eq!(reply.header.user_id.as_deref(), Some("EE38001085718"));
    assert!(reply.header.request_hash.is_some());
    let req = &c.transport().requests()[0];
    assert_eq!(req.method, Method::POST);
    assert_eq!(req.uri.to_string(), "http://ss.test:8080/");
    assert_eq!(req.headers["trustbus-id-token"], "tok");
    assert!(
        req.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/xml")
    );
    let sent = parse_request(req.body.to_vec(), &Limits::default()).unwrap();
    assert_eq!(sent.header().client.to_slash(), CLIENT);
    assert_eq!(sent.header().issue.as_deref(), Some("case-7"));
}

#[tokio::test]
async fn soap_faults_map_to_bus_or_service_errors() {
    let fault = Fault::of(Origin::ServerProxy, ErrorKind::AccessDenied, "denied")
        .with_correlation_id("c-9");
    for dialect in [FaultDialect::Classic, FaultDialect::Lowercase] {
        let xml = render_fault(&fault, dialect);
        let c = client(MockTransport::new(move |_| {
            Ok(MockTransport::response(500, &[], xml.clone()))
        }));
        let e = c
            .soap("DEV/GOV/5678/registry/getPerson")
            .send()
            .await
            .unwrap_err();
        assert_eq!(
            e,
            BusError::Fault {
                code: fault.code.clone(),
                message: "denied".into(),
                correlation_id: "c-9".into(),
                http_status: 500
            }
        );
        // POST: never retried, even on 500/503.
        assert_eq!(c.transport().requests().len(), 1);
    }
    let own = r#"<S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Body><S:Fault><faultcode>S:Server</faultcode><faultstring>no such person</faultstring></S:Fault></S:Body></S:Envelope>"#;
    let c = client(MockTransport::new(move |_| {
        Ok(MockTransport::response(500, &[], own))
    }));
    match c.soap("DEV/GOV/5678/registry/getPerson").send().await {
        Err(BusError::ServiceFault(f)) => assert_eq!(f.string, "no such person"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn soap_garbled_or_inconsistent_responses_are_invalid() {
    let c = client(MockTransport::new(|_| {
        Ok(MockTransport::response(
            502,
            &[],
            "<html>bad gateway</html>",
        ))
    }));
    assert!(matches!(
        c.soap("DEV/GOV/5678/registry/getPerson").send().await,
        Err(BusError::InvalidResponse(_))
    ));
    // A response for another message id.
    let c = client(MockTransport::new(|req| {
        let body = String::from_utf8(req.body.to_vec()).unwrap();
        let id = parse_request(req.body.to_vec(), &Limits::default())
            .unwrap()
            .header()
            .id
            .clone();
        let other = body.replace(&id, "other-id");
        let request = parse_request(other.into_bytes(), &Limits::default()).unwrap();
        Ok(MockTransport::response(
            200,
            &[],
            build_response(&request, "<r/>", HashAlgorithm::Sha512),
        ))
    }));
    assert!(matches!(
        c.soap("DEV/GOV/5678/registry/getPerson").send().await,
        Err(BusError::InvalidResponse(_))
    ));
    // A body that breaks the envelope is refused before sending.
    let c = client(soap_echo("<r/>"));
    assert!(matches!(
        c.soap("DEV/GOV/5678/registry/getPerson")
            .body("</oops>")
            .send()
            .await,
        Err(BusError::InvalidRequest(_))
    ));
    assert!(c.transport().requests().is_empty());
}

#[tokio::test]
async fn hyper_transport_over_loopback() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).await.unwrap();
        let head = String::from_utf8_lossy(&buf[..n]).to_lowercase();
        assert!(
            head.starts_with("get /r1/dev/gov/5678/registry/persons/p/1 http/1.1"),
            "{head}"
        );
        assert!(head.contains("x-road-client: dev/gov/1234/portal"));
        let e = ErrorResponse::new(
            &Fault::of(Origin::ServerProxy, ErrorKind::AccessDenied, "no")
                .with_correlation_id("cid"),
            FaultDialect::Classic,
            ErrorFormat::Json,
        );
        let resp = format!(
            "HTTP/1.1 500 Internal Server Error\r\nX-Road-Error: {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            e.code,
            e.content_type,
            e.body.len()
        );
        s.write_all(resp.as_bytes()).await.unwrap();
        s.write_all(&e.body).await.unwrap();
    });
    let c = BusClient::builder(&format!("http://{addr}"), CLIENT)
        .build()
        .unwrap();
    let e = c
        .rest(SERVICE, Method::GET, "/p/1")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        e.fault_code().map(ToString::to_string).as_deref(),
        Some("Server.ServerProxy.AccessDenied")
    );

    // Nothing listening: a connect error (retried, then reported).
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let c = BusClient::builder(&format!("http://{dead_addr}"), CLIENT)
        .retry(fast_retry())
        .build()
        .unwrap();
    match c.rest(SERVICE, Method::GET, "/").send().await {
        Err(BusError::Transport(t)) => assert_eq!(t.kind, TransportErrorKind::Connect, "{t}"),
        other => panic!("{other:?}"),
    }
}
