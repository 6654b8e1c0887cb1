//! Protocol-level tests with hand-written sample exchanges. Expected hashes were computed
//! independently with openssl and pasted in as constants, for example
//! `openssl dgst -sha512 -binary get.part | base64 -w0` and, with a body,
//! `cat <(openssl dgst -sha512 -binary post.part) <(openssl dgst -sha512 -binary post.body) | openssl dgst -sha512 -binary | base64 -w0`,
//! where the `.part` files hold exactly the byte strings asserted below.

use super::*;
use crate::fault::{ErrorKind, Fault, FaultCode, FaultDialect, Origin};
use crate::id::{ClientId, ServiceId};

const GET_TARGET: &str =
    "/r1/DEV/GOV/1234/tax-board/getTaxes/persons/38001010000?year=2025&full=true";
const REQUEST_ID: &str = "7b0e3c1e-6a1f-4c8e-9d2a-5f3e1b2c4d5e";
const GET_PART: &[u8] = b"GET\r\n\
/r1/DEV/GOV/1234/tax-board/getTaxes/persons/38001010000?year=2025&full=true\r\n\
Accept:application/json\r\n\
X-Road-Client:DEV/COM/5678/portal\r\n\
X-Road-Id:msg-1\r\n\
x-road-request-id:7b0e3c1e-6a1f-4c8e-9d2a-5f3e1b2c4d5e\r\n";
/// openssl dgst -sha512 -binary get.part | base64 -w0
const GET_HASH: &str =
    "HStNIJTNGUqWMGDihTFr5TjFN2MgGSk0STxV4vB/htfAieYd5SPTMbzzeAmehTWeLIuaEClXkmQD4mRiPnp4zg==";

const POST_PART: &[u8] = b"POST\r\n\
/r1/DEV/GOV/1234/tax%2Bboard/submit/v2/returns\r\n\
Content-Type:application/json\r\n\
Uxp-Client:DEV/COM/5678/portal\r\n\
Uxp-Id:abc\r\n\
x-road-client:DEV/COM/5678/portal\r\n\
x-road-id:abc\r\n\
x-road-request-id:req-2\r\n";
const POST_BODY: &[u8] = br#"{"year":2025,"amount":"12.50"}"#;
/// SHA-512 over the two SHA-512s, via openssl as in the module comment.
const POST_HASH: &str =
    "z2EG6lWpd8KCWe4W/Xv8jrBfN2Yf+aMX4TlO6S87NbXZd/hy7Se3rm5k5+4C+/hDPEdwUJocHCdYR9ZDzSN20Q==";

fn get_headers() -> Headers<'static> {
    Headers::new()
        .with("Host", "ss.example:8080")
        .with("User-Agent", "curl/8.5.0")
        .with("Accept", "application/json")
        .with("X-Road-Client", "DEV/COM/5678/portal")
        .with("X-Road-Id", "msg-1")
        .with("Connection", "keep-alive")
        .with("Trustbus-Id-Token", "eyJhbGciOi.secret.token")
        .with("X-Road-Request-Id", "spoofed")
}

fn portal() -> ClientId {
    ClientId::subsystem("DEV", "COM", "5678", "portal").unwrap()
}

#[test]
fn get_with_query() {
    let req = RestRequest::parse("GET", GET_TARGET).unwrap();
    assert_eq!(req.method(), "GET");
    assert_eq!(req.service().to_slash(), "DEV/GOV/1234/tax-board/getTaxes");
    assert_eq!(req.service().provider().subsystem_code(), Some("tax-board"));
    assert_eq!(req.path(), "/persons/38001010000");
    assert_eq!(req.query(), Some("year=2025&full=true"));
    assert_eq!(req.endpoint_path().unwrap(), "/persons/38001010000");
    assert_eq!(req.target(), GET_TARGET);
}

#[test]
fn request_line_forms() {
    let line = format!("GET {GET_TARGET} HTTP/1.1");
    let req = RestRequest::parse_line(&line).unwrap();
    assert_eq!(req.path(), "/persons/38001010000");
    let bare = RestRequest::parse_line("DELETE /r1/DEV/GOV/1234/tax-board/getTaxes").unwrap();
    assert_eq!(bare.path(), "");
    assert_eq!(bare.query(), None);
    assert_eq!(bare.endpoint_path().unwrap(), "/");
    let q = RestRequest::parse("GET", "/r1/DEV/GOV/1234/tax-board/getTaxes?").unwrap();
    assert_eq!((q.path(), q.query()), ("", Some("")));
    let slash = RestRequest::parse("GET", "/r1/DEV/GOV/1234/tax-board/getTaxes/").unwrap();
    assert_eq!(slash.path(), "/");
}

#[test]
fn percent_encoded_identifiers() {
    let req = RestRequest::parse("POST", "/r1/DEV/GOV/1234/tax%2Bboard/submit/v2/returns").unwrap();
    assert_eq!(req.service().provider().subsystem_code(), Some("tax+board"));
    assert_eq!(req.service().code(), "submit");
    assert_eq!(
        req.service().version(),
        None,
        "a sixth segment is path, not a version"
    );
    assert_eq!(req.path(), "/v2/returns");
    let parens = RestRequest::parse("GET", "/r1/DEV/GOV/1234/sub/get(x)%3D1").unwrap();
    assert_eq!(parens.service().code(), "get(x)=1");
}

fn code_of(r: Result<RestRequest<'_>, RestError>) -> String {
    r.unwrap_err().code().to_string()
}

#[test]
fn malformed_request_lines_and_their_codes() {
    let svc = "/DEV/GOV/1234/sub/svc";
    let cases: &[(&str, &str, &str)] = &[
        (
            "GET",
            "/r2/DEV/GOV/1234/sub/svc",
            "Client.InvalidProtocolVersion",
        ),
        (
            "GET",
            "/r0/DEV/GOV/1234/sub/svc",
            "Client.InvalidProtocolVersion",
        ),
        (
            "GET",
            "/r12/DEV/GOV/1234/sub/svc",
            "Client.InvalidProtocolVersion",
        ),
        ("GET", "/R1/DEV/GOV/1234/sub/svc", "Client.InvalidRest"),
        ("GET", "/listClients", "Client.InvalidRest"),
        ("GET", "/", "Client.InvalidRest"),
        ("GET", "/r/DEV", "Client.InvalidRest"),
        ("GET", "/r1", "Client.InvalidRest"),
        ("GET", "/r1/", "Client.InvalidRest"),
        ("GET", "/r1/DEV/GOV/1234/sub", "Client.InvalidRest"),
        ("GET", "/r1/DEV/GOV/1234", "Client.InvalidRest"),
        ("GET", "/r1/DEV/GOV/1234/sub/?x", "Client.InvalidRest"),
        ("GET", "/r1/DEV//1234/sub/svc", "Client.InvalidRest"),
        ("GET", "/r1/DEV/GOV/1234/a%2Fb/svc", "Client.InvalidRest"),
        ("GET", "/r1/DEV/GOV/1234/%C3%A4/svc", "Client.InvalidRest"),
        ("GET", "/r1/DEV/GOV/1234/sub/s%zz", "Client.InvalidRest"),
        ("GET", "/r1/DEV/GOV/12 34/sub/svc", "Client.InvalidRest"),
        ("GET", "/r1/DEV/GOV/1234/sub/svc#frag", "Client.InvalidRest"),
        ("GET", "r1/DEV/GOV/1234/sub/svc", "Client.InvalidRest"),
        (
            "GET",
            "http://ss/r1/DEV/GOV/1234/sub/svc",
            "Client.InvalidRest",
        ),
        (
            "TRACE",
            "/r1/DEV/GOV/1234/sub/svc",
            "Client.InvalidHttpMethod",
        ),
        (
            "get",
            "/r1/DEV/GOV/1234/sub/svc",
            "Client.InvalidHttpMethod",
        ),
        ("", "/r1/DEV/GOV/1234/sub/svc", "Client.InvalidHttpMethod"),
    ];
    for (m, t, code) in cases {
        assert_eq!(&code_of(RestRequest::parse(m, t)), code, "{m} {t}");
    }
    assert_eq!(
        RestRequest::parse("GET", "/r1/DEV/GOV/1234/sub").unwrap_err(),
        RestError::TooFewSegments(4)
    );
    for line in [
        "GET",
        "",
        "GET  /r1/x",
        "GET /r1/DEV/GOV/1234/sub/svc HTTP/1.1 extra",
    ] {
        assert_eq!(
            &code_of(RestRequest::parse_line(line)),
            "Client.InvalidRest",
            "{line:?}"
        );
    }
    assert!(RestRequest::parse_line(&format!("PUT /r1{svc} HTTP/1.1")).is_ok());
    assert_eq!(
        RestError::MissingClient
            .fault()
            .code
            .render(FaultDialect::Lowercase),
        "client.missing_header_field"
    );
    assert_eq!(RestError::NotRestPath.fault().http_status(), 400);
}

#[test]
fn xroad_headers_and_aliases() {
    let x = XRoadHeaders::from_headers(&get_headers()).unwrap();
    assert_eq!(x.client, portal());
    assert_eq!(x.message_id, "msg-1");
    assert!(!x.message_id_generated);
    assert_eq!(x.id_token.as_deref(), Some("eyJhbGciOi.secret.token"));

    // Every alias, and every optional field.
    let h = Headers::new()
        .with("uxp-client", "DEV/COM/5678/portal")
        .with("Uxp-Id", "u-1")
        .with("Uxp-UserId", "EE38001010000")
        .with("Uxp-Issue", "case-7")
        .with("Uxp-Represented-Party", "COM/9999")
        .with("Uxp-Security-Server", "DEV/GOV/1234/ss1");
    let x = XRoadHeaders::from_headers(&h).unwrap();
    assert_eq!(x.client, portal());
    assert_eq!(x.message_id, "u-1");
    assert_eq!(x.user_id.as_deref(), Some("EE38001010000"));
    assert_eq!(x.issue.as_deref(), Some("case-7"));
    let party = x.represented_party.unwrap();
    assert_eq!(
        (party.party_class(), party.party_code()),
        (Some("COM"), "9999")
    );
    assert_eq!(x.security_server.unwrap().to_slash(), "DEV/GOV/1234/ss1");

    let im = Headers::new().with("Information-Mediator-Client", "DEV/COM/5678");
    let x = XRoadHeaders::from_headers(&im).unwrap();
    assert_eq!(x.client, ClientId::member("DEV", "COM", "5678").unwrap());
    assert!(x.message_id_generated);
    assert_eq!(
        uuid::Uuid::parse_str(&x.message_id)
            .unwrap()
            .get_version_num(),
        7
    );
}

#[test]
fn precedence_and_last_wins() {
    let h = Headers::new()
        .with("Information-Mediator-Client", "DEV/COM/1/im")
        .with("X-Road-Client", "DEV/COM/2/first")
        .with("Uxp-Client", "DEV/COM/3/uxp")
        .with("X-Road-Client", "DEV/COM/4/last")
        .with("X-Road-Id", "x")
        .with("Uxp-Id", "u")
        .with("X-Road-UserId", "")
        .with("Uxp-UserId", "EE1")
        .with("X-Road-Represented-Party", "7");
    let x = XRoadHeaders::from_headers(&h).unwrap();
    assert_eq!(x.client.to_slash(), "DEV/COM/4/last");
    assert_eq!(x.message_id, "x");
    assert_eq!(
        x.user_id.as_deref(),
        Some("EE1"),
        "empty X-Road-UserId counts as absent"
    );
    assert_eq!(x.represented_party.unwrap().party_class(), None);

    let h = Headers::new()
        .with("Uxp-Client", "DEV/COM/3/uxp")
        .with("Information-Mediator-Client", "DEV/COM/1/im");
    assert_eq!(
        XRoadHeaders::from_headers(&h).unwrap().client.to_slash(),
        "DEV/COM/3/uxp"
    );
}

#[test]
fn malformed_headers_and_their_codes() {
    let code = |h: Headers<'_>| {
        XRoadHeaders::from_headers(&h)
            .unwrap_err()
            .code()
            .to_string()
    };
    assert_eq!(code(Headers::new()), "Client.MissingHeaderField");
    assert_eq!(
        code(Headers::new().with("X-Road-Client", "  ")),
        "Client.MissingHeaderField"
    );
    assert_eq!(
        code(Headers::new().with("X-Road-Id", "1")),
        "Client.MissingHeaderField"
    );
    for bad in [
        "DEV/COM",
        "DEV/COM/1/2/3",
        "DEV/C M/1",
        "DEV/COM/%zz",
        "DEV/COM/ä",
    ] {
        assert_eq!(
            code(Headers::new().with("X-Road-Client", bad)),
            "Client.InvalidClientIdentifier",
            "{bad}"
        );
    }
    let with_client = |n: &'static str, v: &'static str| {
        Headers::new().with("X-Road-Client", "DEV/COM/1").with(n, v)
    };
    assert_eq!(
        code(with_client("X-Road-Security-Server", "DEV/GOV/1234")),
        "Client.InvalidSecurityServer"
    );
    assert_eq!(
        code(with_client("X-Road-Represented-Party", "A/B/C")),
        "Client.InvalidRest"
    );
    assert_eq!(
        code(with_client("X-Road-UserId", "a\u{7}b")),
        "Client.InvalidRest"
    );
    let mut h = Headers::new().with("X-Road-Client", "DEV/COM/1");
    h.push("X-Road-Issue", &b"\xff\xfe"[..]);
    assert_eq!(code(h), "Client.InvalidRest");
}

#[test]
fn consumer_request_part_is_exact() {
    let req = RestRequest::parse("GET", GET_TARGET).unwrap();
    let h = get_headers();
    let x = XRoadHeaders::from_headers(&h).unwrap();
    let part = RequestHeaderPart::for_transport(&req, &h, &x, REQUEST_ID);
    let bytes = part.to_bytes().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&bytes),
        String::from_utf8_lossy(GET_PART)
    );
    assert_eq!(bytes, GET_PART);
    assert!(
        !bytes.windows(8).any(|w| w == b"eyJhbGci"),
        "ID token must not be forwarded"
    );

    let parsed = RequestHeaderPart::parse(&bytes).unwrap();
    assert_eq!(parsed, part);
    let again = parsed.rest_request().unwrap();
    assert_eq!(again.service(), req.service());
    assert_eq!(again.path(), "/persons/38001010000");
}

#[test]
fn aliases_get_canonical_headers_in_the_part() {
    let target = "/r1/DEV/GOV/1234/tax%2Bboard/submit/v2/returns";
    let req = RestRequest::parse("POST", target).unwrap();
    let h = Headers::new()
        .with("Content-Type", "application/json")
        .with("Content-Length", "30")
        .with("Expect", "100-continue")
        .with("Uxp-Client", "DEV/COM/5678/portal")
        .with("Uxp-Id", "abc");
    let x = XRoadHeaders::from_headers(&h).unwrap();
    let part = RequestHeaderPart::for_transport(&req, &h, &x, "req-2");
    assert_eq!(part.to_bytes().unwrap(), POST_PART);
}

#[test]
fn request_hash_matches_openssl() {
    assert_eq!(request_hash(GET_PART, None), GET_HASH);
    assert_eq!(
        request_hash(GET_PART, Some(b"")),
        GET_HASH,
        "empty body is no body"
    );
    assert_eq!(request_hash(POST_PART, Some(POST_BODY)), POST_HASH);

    // Streamed in uneven chunks, the same value.
    let mut h = RequestHasher::new(POST_PART);
    for chunk in POST_BODY.chunks(7) {
        h.update(chunk);
    }
    assert_eq!(h.body_len(), POST_BODY.len() as u64);
    assert_eq!(h.finish(), POST_HASH);
}

#[test]
fn large_body_streams() {
    let body: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let whole = request_hash(POST_PART, Some(&body));
    let mut h = RequestHasher::new(POST_PART);
    for chunk in body.chunks(65_536) {
        h.update(chunk);
    }
    assert_eq!(h.finish(), whole);
    assert_ne!(whole, request_hash(POST_PART, None));
}

fn exchange() -> ExchangeHeaders {
    ExchangeHeaders {
        message_id: "msg-1".into(),
        client: portal(),
        service: ServiceId::from_slash("DEV/GOV/1234/tax-board/getTaxes").unwrap(),
        request_id: REQUEST_ID.into(),
        request_hash: GET_HASH.into(),
    }
}

const RESPONSE_PART: &[u8] = b"200\r\n\
OK\r\n\
Content-Type:application/json\r\n\
Set-Cookie:a=1\r\n\
Set-Cookie:b=2\r\n\
x-road-id:msg-1\r\n\
x-road-client:DEV/COM/5678/portal\r\n\
x-road-service:DEV/GOV/1234/tax-board/getTaxes\r\n\
x-road-request-id:7b0e3c1e-6a1f-4c8e-9d2a-5f3e1b2c4d5e\r\n\
x-road-request-hash:HStNIJTNGUqWMGDihTFr5TjFN2MgGSk0STxV4vB/htfAieYd5SPTMbzzeAmehTWeLIuaEClXkmQD4mRiPnp4zg==\r\n";

#[test]
fn provider_response_part_is_exact() {
    let service_headers = Headers::new()
        .with("Content-Type", "application/json")
        .with("Server", "nginx/1.25")
        .with("Content-Length", "2")
        .with("X-Road-Id", "spoofed")
        .with("x-road-request-hash", "spoofed")
        .with("Set-Cookie", "a=1")
        .with("Transfer-Encoding", "chunked")
        .with("Set-Cookie", "b=2");
    let ex = exchange();
    let part = ResponseHeaderPart::for_transport(200, "OK", &service_headers, &ex);
    let bytes = part.to_bytes().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&bytes),
        String::from_utf8_lossy(RESPONSE_PART)
    );
    assert_eq!(ResponseHeaderPart::parse(&bytes).unwrap(), part);

    // Consumer side: the provider vouched for our request, and the client gets canonical names.
    ex.verify_response(&part.headers).unwrap();
    let client = part.client_headers(&ex);
    let names: Vec<_> = client.iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "Content-Type",
            "Set-Cookie",
            "Set-Cookie",
            "X-Road-Id",
            "X-Road-Client",
            "X-Road-Service",
            "X-Road-Request-Id",
            "X-Road-Request-Hash"
        ]
    );
    assert_eq!(
        client.get_last("x-road-service"),
        Some(&b"DEV/GOV/1234/tax-board/getTaxes"[..])
    );
}

#[test]
fn response_verification_catches_mismatch() {
    let ex = exchange();
    let mut other = exchange();
    other.request_hash = POST_HASH.into();
    let mut h = Headers::new();
    other.append_transport(&mut h);
    let f = ex.verify_response(&h).unwrap_err();
    assert_eq!(
        f.code.to_string(),
        "Server.ClientProxy.InconsistentResponse"
    );
    assert!(f.message.contains("X-Road-Request-Hash"));
    let f = ex.verify_response(&Headers::new()).unwrap_err();
    assert_eq!(
        f.code.to_string(),
        "Server.ClientProxy.InconsistentResponse"
    );
}

#[test]
fn header_part_edge_cases() {
    // Empty reason phrase, no headers.
    let p = ResponseHeaderPart::parse(b"204\r\n\r\n").unwrap();
    assert_eq!((p.status, &*p.reason, p.headers.len()), (204, "", 0));
    assert_eq!(p.to_bytes().unwrap(), b"204\r\n\r\n");
    // A value with leading space and colons survives exactly.
    let r = RequestHeaderPart::parse(b"GET\r\n/r1/a\r\nX: a:b \r\nY:\r\n").unwrap();
    assert_eq!(r.headers.get_last("x"), Some(&b" a:b "[..]));
    assert_eq!(r.headers.get_last("y"), Some(&b""[..]));
    // A trailing empty line from an HTTP-style writer is tolerated.
    assert!(RequestHeaderPart::parse(b"GET\r\n/r1/a\r\nA:b\r\n\r\n").is_ok());

    let err = |b: &[u8]| RequestHeaderPart::parse(b).unwrap_err();
    assert_eq!(err(b""), HeaderPartError::Truncated);
    assert_eq!(err(b"GET\r\n"), HeaderPartError::Truncated);
    assert_eq!(err(b"GET\r\n/r1/a"), HeaderPartError::Truncated);
    assert_eq!(err(b"GET\r\n/r1/a\r\nA:b"), HeaderPartError::Truncated);
    assert_eq!(err(b"GET\n/r1/a\r\n"), HeaderPartError::StrayLineBreak);
    assert_eq!(
        err(b"GET\r\n/r1/a\r\nA:b\rc\r\n"),
        HeaderPartError::StrayLineBreak
    );
    assert_eq!(
        err(b"GET\r\n/r1/a\r\n\r\nA:b\r\n"),
        HeaderPartError::StrayLineBreak
    );
    assert_eq!(err(b"G T\r\n/r1/a\r\n"), HeaderPartError::InvalidMethod);
    assert_eq!(err(b"GET\r\n/r1/ a\r\n"), HeaderPartError::InvalidTarget);
    assert_eq!(
        err(b"GET\r\n/r1/a\r\nNoColon\r\n"),
        HeaderPartError::MissingColon
    );
    assert_eq!(
        err(b"GET\r\n/r1/a\r\nBad Name:x\r\n"),
        HeaderPartError::InvalidHeaderName
    );
    assert_eq!(
        err(b"GET\r\n/r1/a\r\nA:x\0y\r\n"),
        HeaderPartError::InvalidHeaderValue
    );
    let rerr = |b: &[u8]| ResponseHeaderPart::parse(b).unwrap_err();
    assert_eq!(rerr(b"20\r\nOK\r\n"), HeaderPartError::InvalidStatus);
    assert_eq!(rerr(b"099\r\nOK\r\n"), HeaderPartError::InvalidStatus);
    assert_eq!(rerr(b"200\r\n"), HeaderPartError::Truncated);
    assert_eq!(rerr(b"200\r\nO\x01K\r\n"), HeaderPartError::InvalidReason);

    // Header injection is refused when writing.
    let mut h = Headers::new();
    h.push("X", &b"a\r\nInjected:1"[..]);
    let part = RequestHeaderPart {
        method: "GET".into(),
        target: "/r1/a".into(),
        headers: h,
    };
    let mut out = b"keep".to_vec();
    assert_eq!(
        part.write_to(&mut out),
        Err(HeaderPartError::InvalidHeaderValue)
    );
    assert_eq!(out, b"keep");

    assert_eq!(
        HeaderPartError::Truncated.request_fault().code.to_string(),
        "Server.ServerProxy.InvalidRest"
    );
    assert_eq!(
        HeaderPartError::Truncated.response_fault().code.to_string(),
        "Server.ClientProxy.InvalidResponse"
    );
}

const CID: &str = "c0ffee00-0000-4000-8000-000000000001";

#[test]
fn json_error_body_is_exact() {
    let f = RestError::MissingClient.fault().with_correlation_id(CID);
    let r = ErrorResponse::new(&f, FaultDialect::Classic, ErrorFormat::Json);
    assert_eq!(r.status, 400);
    assert_eq!(r.code, "Client.MissingHeaderField");
    assert_eq!(
        String::from_utf8(r.body.clone()).unwrap(),
        r#"{"type":"Client.MissingHeaderField","message":"required header X-Road-Client is missing","detail":"c0ffee00-0000-4000-8000-000000000001"}"#
    );
    let h = r.headers();
    assert_eq!(
        h.get_last("X-Road-Error"),
        Some(&b"Client.MissingHeaderField"[..])
    );
    assert_eq!(
        h.get_last("content-type"),
        Some(&b"application/json; charset=utf-8"[..])
    );

    let lower = ErrorResponse::new(&f, FaultDialect::Lowercase, ErrorFormat::Json);
    assert_eq!(
        String::from_utf8(lower.body).unwrap(),
        r#"{"type":"client.missing_header_field","message":"required header X-Road-Client is missing","detail":"c0ffee00-0000-4000-8000-000000000001"}"#
    );
    let quoted = Fault::of(
        Origin::ServerProxy,
        ErrorKind::ServiceFailed,
        "say \"hi\"\n\\",
    )
    .with_correlation_id(CID);
    let r = ErrorResponse::new(&quoted, FaultDialect::Classic, ErrorFormat::Json);
    assert_eq!(r.status, 500);
    assert_eq!(
        String::from_utf8(r.body).unwrap(),
        r#"{"type":"Server.ServerProxy.ServiceFailed","message":"say \"hi\"\n\\","detail":"c0ffee00-0000-4000-8000-000000000001"}"#
    );
}

#[test]
fn xml_error_body_is_exact() {
    let f = Fault::of(
        Origin::ServerProxy,
        ErrorKind::AccessDenied,
        "Request <GET /x> & 'y' \"z\"",
    )
    .with_correlation_id(CID);
    let r = ErrorResponse::new(&f, FaultDialect::Classic, ErrorFormat::Xml);
    assert_eq!(r.status, 500);
    assert_eq!(r.content_type, "application/xml; charset=utf-8");
    assert_eq!(
        String::from_utf8(r.body.clone()).unwrap(),
        "<error><type>Server.ServerProxy.AccessDenied</type>\
<message>Request &lt;GET /x&gt; &amp; &apos;y&apos; &quot;z&quot;</message>\
<detail>c0ffee00-0000-4000-8000-000000000001</detail></error>"
    );
    let back = parse_error_response(&r.headers(), &r.body)
        .unwrap()
        .unwrap();
    assert_eq!(back, f);
    let lower = ErrorResponse::new(&f, FaultDialect::Lowercase, ErrorFormat::Xml);
    assert!(
        lower
            .body
            .starts_with(b"<error><type>server.serverproxy.access_denied</type>")
    );
}

#[test]
fn accept_negotiation() {
    let fmt = |a: Option<&str>| ErrorFormat::from_accept(a.map(str::as_bytes));
    assert_eq!(fmt(None), ErrorFormat::Json);
    assert_eq!(fmt(Some("application/json")), ErrorFormat::Json);
    assert_eq!(fmt(Some("application/xml")), ErrorFormat::Xml);
    assert_eq!(fmt(Some("text/xml")), ErrorFormat::Xml);
    assert_eq!(fmt(Some("TEXT/XML; charset=utf-8")), ErrorFormat::Xml);
    assert_eq!(
        fmt(Some("application/json, application/xml")),
        ErrorFormat::Json
    );
    assert_eq!(
        fmt(Some("application/json;q=0.5, application/xml")),
        ErrorFormat::Xml
    );
    assert_eq!(
        fmt(Some("application/xml;q=0.9, application/json;q=0.8")),
        ErrorFormat::Xml
    );
    assert_eq!(fmt(Some("application/xml;q=0.8, */*")), ErrorFormat::Json);
    assert_eq!(fmt(Some("application/xml;q=0")), ErrorFormat::Json);
    assert_eq!(fmt(Some("application/xml;q=abc")), ErrorFormat::Json);
    assert_eq!(
        fmt(Some("text/html, application/xml;q=0.1")),
        ErrorFormat::Xml
    );
    assert_eq!(fmt(Some("*/*")), ErrorFormat::Json);
}

#[test]
fn error_responses_parse_back() {
    let f = Fault::new(
        FaultCode::new(Origin::ClientProxy, ErrorKind::SslAuthenticationFailed)
            .caused_by(ErrorKind::InvalidCertPath),
        "no cert",
    );
    for d in [FaultDialect::Classic, FaultDialect::Lowercase] {
        for fmt in [ErrorFormat::Json, ErrorFormat::Xml] {
            let r = ErrorResponse::new(&f, d, fmt);
            assert_eq!(
                parse_error_response(&r.headers(), &r.body)
                    .unwrap()
                    .as_ref(),
                Some(&f)
            );
        }
    }
    // A service's own error (no X-Road-Error) is not a bus error.
    let h = Headers::new().with("Content-Type", "application/json");
    assert_eq!(parse_error_response(&h, br#"{"type":"x"}"#), Ok(None));
    // Unreadable body: code from the header, empty message and detail.
    let h = Headers::new().with("X-Road-Error", "server.serverproxy.access_denied");
    let f = parse_error_response(&h, b"oops").unwrap().unwrap();
    assert_eq!(f.code.to_string(), "Server.ServerProxy.AccessDenied");
    assert_eq!((f.message.as_str(), f.correlation_id.as_str()), ("", ""));
    // Unknown header code falls back to the body's type, else is an error.
    let h = Headers::new().with("X-Road-Error", "Weird");
    let body = br#"{"type":"Client.InvalidRest","message":"m","detail":"d"}"#;
    assert_eq!(
        parse_error_response(&h, body)
            .unwrap()
            .unwrap()
            .code
            .to_string(),
        "Client.InvalidRest"
    );
    assert!(parse_error_response(&h, b"{}").is_err());
    // XML with a declaration, whitespace, CDATA and character references.
    let xml = b"<?xml version=\"1.0\"?>\n<error>\n <type>Client.InvalidRest</type>\n <message><![CDATA[a<b]]>&#38;&#x41;</message>\n <detail/>\n</error>";
    assert_eq!(
        parse_error_body(xml),
        Some(("Client.InvalidRest".into(), "a<b&A".into(), String::new()))
    );
    assert_eq!(parse_error_body(b"<other><type>x</type></other>"), None);
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    fn segment() -> impl Strategy<Value = String> {
        proptest::string::string_regex("[A-Za-z0-9'()+,.=?-]{1,12}").unwrap()
    }

    fn header_name() -> impl Strategy<Value = String> {
        proptest::string::string_regex("[A-Za-z0-9!#$%&'*+.^_`|~-]{1,20}").unwrap()
    }

    fn header_value() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            any::<u8>().prop_filter("no CR/LF/NUL", |b| !matches!(b, b'\r' | b'\n' | 0)),
            0..40,
        )
    }

    proptest! {
        #[test]
        fn request_line_parser_never_panics(line in any::<String>()) {
            let _ = RestRequest::parse_line(&line);
        }

        #[test]
        fn request_parser_never_panics_on_plausible_targets(
            m in "(GET|POST|PUT|x)", t in "/(r1|r2|r)?(/[A-Za-z0-9%./?#=-]{0,6}){0,9}"
        ) {
            if let Ok(r) = RestRequest::parse(&m, &t) {
                let _ = r.endpoint_path();
                prop_assert!(r.target().ends_with(r.query().unwrap_or("")));
            }
        }

        #[test]
        fn header_part_parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = RequestHeaderPart::parse(&bytes);
            let _ = ResponseHeaderPart::parse(&bytes);
        }

        #[test]
        fn request_part_round_trips(
            method in "[A-Z]{1,8}",
            target in "/[!-~]{0,40}",
            headers in proptest::collection::vec((header_name(), header_value()), 0..8),
        ) {
            let part = RequestHeaderPart {
                method: method.into(),
                target: target.into(),
                headers: headers.into_iter().collect(),
            };
            let bytes = part.to_bytes().unwrap();
            prop_assert_eq!(RequestHeaderPart::parse(&bytes).unwrap(), part);
        }

        #[test]
        fn response_part_round_trips(
            status in 100u16..1000,
            reason in "[ -~]{0,20}",
            headers in proptest::collection::vec((header_name(), header_value()), 0..8),
        ) {
            let part = ResponseHeaderPart {
                status,
                reason: reason.into(),
                headers: headers.into_iter().collect(),
            };
            let bytes = part.to_bytes().unwrap();
            prop_assert_eq!(ResponseHeaderPart::parse(&bytes).unwrap(), part);
        }

        #[test]
        fn service_id_round_trips_through_the_path(
            segs in proptest::collection::vec(segment(), 5),
            rest in "(/[a-z0-9]{1,5}){0,3}",
            query in proptest::option::of("[a-z=&]{0,10}"),
        ) {
            let svc = ServiceId::new(
                ClientId::subsystem(&segs[0], &segs[1], &segs[2], &segs[3]).unwrap(),
                &segs[4],
                None,
            ).unwrap();
            let mut target = format!("/r1/{}{rest}", svc.to_slash());
            if let Some(q) = &query {
                target.push('?');
                target.push_str(q);
            }
            let r = RestRequest::parse("GET", &target).unwrap();
            prop_assert_eq!(r.service(), &svc);
            prop_assert_eq!(r.path(), rest.as_str());
            prop_assert_eq!(r.query(), query.as_deref());
        }

        #[test]
        fn normalised_paths_are_fixed_points(p in "(/[a-zA-Z0-9%._~*-]{0,6}){0,6}/?") {
            if let Ok(n) = normalize_endpoint_path(&p) {
                let again = normalize_endpoint_path(&n);
                prop_assert_eq!(again, Ok(n.clone()));
                prop_assert!(!n.split('/').any(|s| s == ".."));
            }
        }
    }
}
