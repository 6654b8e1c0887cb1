//! Tests for content types and multipart parsing.

use proptest::prelude::*;

use super::*;
use crate::soap::{HashAlgorithm, parse_request, request_hash};

const SWA: &[u8] = include_bytes!("../../tests/data/request-swa.mime");
const MTOM: &[u8] = include_bytes!("../../tests/data/request-mtom.mime");

fn code<T: std::fmt::Debug>(r: Result<T, Fault>) -> String {
    match r {
        Ok(v) => format!("ok {v:?}"),
        Err(f) => f.code.to_string(),
    }
}

fn multipart_type(ct: &str) -> MultipartType {
    match check_content_type(ct).unwrap() {
        SoapContentType::Multipart(m) => m,
        SoapContentType::Xml => panic!("expected multipart"),
    }
}

#[test]
fn content_type_parameters() {
    let ct = ContentType::parse(
        r#"Multipart/Related; BOUNDARY="a b;c\"d"; type=text/xml ; start="<x@y>";"#,
    )
    .unwrap();
    assert_eq!(ct.mime_type(), "multipart/related");
    assert_eq!(ct.param("boundary"), Some("a b;c\"d"));
    assert_eq!(ct.param("Type"), Some("text/xml"));
    assert_eq!(ct.param("start"), Some("<x@y>"));
    for bad in [
        "",
        "text",
        "text/",
        "/xml",
        "text/xml; charset",
        "text/xml; a=\"open",
        "text/xml x",
    ] {
        assert_eq!(
            code(ContentType::parse(bad)),
            "Client.InvalidContentType",
            "{bad:?}"
        );
    }
}

#[test]
fn soap_content_types() {
    assert_eq!(
        check_content_type("text/xml").unwrap(),
        SoapContentType::Xml
    );
    assert_eq!(
        check_content_type("text/xml; charset=UTF-8").unwrap(),
        SoapContentType::Xml
    );
    assert_eq!(
        check_content_type("TEXT/XML;charset=\"utf-8\"").unwrap(),
        SoapContentType::Xml
    );
    for bad in [
        "text/xml; charset=ISO-8859-1",
        "text/xml; charset=utf-16",
        "application/soap+xml",
        "application/json",
        "multipart/related",
        "multipart/related; boundary=\"\"",
        "multipart/related; boundary=x; type=application/soap+xml",
        "garbage",
    ] {
        assert_eq!(
            code(check_content_type(bad)),
            "Client.InvalidContentType",
            "{bad}"
        );
    }
    let m = multipart_type(
        r#"multipart/related; type="application/xop+xml"; boundary="uuid:8f6c"; start="<root.message@cxf.apache.org>"; start-info="text/xml""#,
    );
    assert!(m.mtom);
    assert_eq!(m.boundary, "uuid:8f6c");
    assert_eq!(strip_bom(b"\xEF\xBB\xBF<a/>"), b"<a/>");
    assert_eq!(strip_bom(b"<a/>"), b"<a/>");
}

#[test]
fn swa_request() {
    let ty = multipart_type("multipart/related; type=\"text/xml\"; boundary=MIME_boundary");
    let mp = parse_multipart(SWA, &ty, &Limits::default()).unwrap();
    assert_eq!(mp.parts().len(), 3);
    assert_eq!(
        mp.soap_part().header("content-id"),
        Some("<soap-part@example>")
    );
    let soap = mp.soap_bytes();
    assert!(soap.starts_with(b"<SOAP-ENV:Envelope"));
    assert!(soap.ends_with(b"</SOAP-ENV:Envelope>\r\n"));
    let att: Vec<_> = mp.attachments().collect();
    assert_eq!(att.len(), 2);
    assert_eq!(mp.body(att[0]), b"\x00\x01binary--MIME_boundar\xff");
    assert_eq!(mp.body(att[1]), b"second attachment");
    assert_eq!(
        mp.raw_headers(att[1]),
        b"Content-Type: text/plain\r\nContent-ID: <attachment-2@example>"
    );
    assert_eq!(att[0].header("Content-Transfer-Encoding"), Some("binary"));
    // The SOAP part parses, and the request hash is over its bytes only.
    let req = parse_request(soap, &Limits::default()).unwrap();
    assert_eq!(req.header().service.code(), "getPerson");
    assert_eq!(
        request_hash(req.bytes(), HashAlgorithm::Sha512),
        request_hash(soap, HashAlgorithm::Sha512)
    );
}

#[test]
fn mtom_request_with_start() {
    let ty = multipart_type(
        r#"multipart/related; type="application/xop+xml"; boundary="uuid:8f6c"; start="<root.message@cxf.apache.org>"; start-info="text/xml""#,
    );
    let mp = parse_multipart(MTOM, &ty, &Limits::default()).unwrap();
    assert_eq!(mp.parts().len(), 2);
    assert_eq!(
        mp.soap_part().header("content-id"),
        Some("<root.message@cxf.apache.org>")
    );
    let att: Vec<_> = mp.attachments().collect();
    assert_eq!(mp.body(att[0]), b"\x89PNG\r\n\x1a\n");
    let req = parse_request(mp.soap_bytes(), &Limits::default()).unwrap();
    assert_eq!(req.body_element().unwrap().local_name, "getPerson");
}

#[test]
fn multipart_errors() {
    let limits = Limits::default();
    let ty = multipart_type("multipart/related; boundary=MIME_boundary");
    let text = SWA;
    // Not terminated.
    let cut = &text[..text.len() - 20];
    assert_eq!(
        code(parse_multipart(cut, &ty, &limits)),
        "Client.MimeParsingFailed"
    );
    // Boundary absent.
    let other = multipart_type("multipart/related; boundary=nope");
    assert_eq!(
        code(parse_multipart(text, &other, &limits)),
        "Client.MimeParsingFailed"
    );
    // Too many parts, too large, headers too long.
    let few = Limits {
        max_parts: 2,
        ..Limits::default()
    };
    assert_eq!(
        code(parse_multipart(text, &ty, &few)),
        "Client.MimeParsingFailed"
    );
    let small = Limits {
        max_multipart_size: 100,
        ..Limits::default()
    };
    assert_eq!(
        code(parse_multipart(text, &ty, &small)),
        "Client.MimeParsingFailed"
    );
    let short = Limits {
        max_part_header_size: 20,
        ..Limits::default()
    };
    assert_eq!(
        code(parse_multipart(text, &ty, &short)),
        "Client.MimeParsingFailed"
    );
    // `start` names no part.
    let missing = multipart_type("multipart/related; boundary=MIME_boundary; start=\"<none>\"");
    assert_eq!(
        code(parse_multipart(text, &missing, &limits)),
        "Client.MimeParsingFailed"
    );
    // `start` picks an attachment that is not SOAP.
    let wrong = multipart_type(
        "multipart/related; boundary=MIME_boundary; start=\"<attachment-1@example>\"",
    );
    assert_eq!(
        code(parse_multipart(text, &wrong, &limits)),
        "Client.InvalidContentType"
    );
    // SOAP part in a charset we do not accept.
    let latin = String::from_utf8_lossy(text).replacen("charset=UTF-8", "charset=ISO-8859-1", 1);
    assert_eq!(
        code(parse_multipart(latin.into_bytes(), &ty, &limits)),
        "Client.InvalidContentType"
    );
    // MTOM root part carrying SOAP 1.2.
    let mtom_ty = multipart_type(
        r#"multipart/related; type="application/xop+xml"; boundary="uuid:8f6c"; start="<root.message@cxf.apache.org>""#,
    );
    let soap12 = String::from_utf8_lossy(MTOM).replacen(
        "type=\"text/xml\"",
        "type=\"application/soap+xml\"",
        1,
    );
    assert_eq!(
        code(parse_multipart(soap12.into_bytes(), &mtom_ty, &limits)),
        "Client.InvalidContentType"
    );
    // Header line without a colon.
    let broken = b"--b\r\nnot a header\r\n\r\nx\r\n--b--".to_vec();
    let b = multipart_type("multipart/related; boundary=b");
    assert_eq!(
        code(parse_multipart(broken, &b, &limits)),
        "Client.MimeParsingFailed"
    );
    // Delimiter lines sharing a line break (found by the fuzzer).
    let shared = b"--b\r\n--b\r\n\r\nx\r\n--b--".to_vec();
    assert_eq!(
        code(parse_multipart(shared, &b, &limits)),
        "Client.MimeParsingFailed"
    );
    // Empty message: close delimiter only.
    assert_eq!(
        code(parse_multipart(&b"--b--\r\n"[..], &b, &limits)),
        "Client.MimeParsingFailed"
    );
}

#[test]
fn bare_lf_and_parts_without_headers() {
    let b = multipart_type("multipart/related; boundary=b");
    let msg = b"--b\n\n<e/>\n--b\nContent-ID: <x>\n\nabc\n--b--\n".to_vec();
    let mp = parse_multipart(msg, &b, &Limits::default()).unwrap();
    assert_eq!(mp.soap_bytes(), b"<e/>");
    assert!(mp.soap_part().headers.is_empty());
    assert_eq!(mp.body(&mp.parts()[1]), b"abc");
}

#[test]
fn writer_refuses_boundary_in_body() {
    let parts = vec![(vec![], &b"x\r\n--b\r\n"[..])];
    assert_eq!(write_multipart("b", &parts), Err(BoundaryCollision));
    let ty = MultipartType {
        boundary: MultipartType::new_boundary(),
        start: Some("<soap>".into()),
        mtom: false,
    };
    let hv = ty.header_value();
    assert_eq!(
        check_content_type(&hv).unwrap(),
        SoapContentType::Multipart(ty)
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn write_then_parse_round_trips(
        bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 1..6),
        names in proptest::collection::vec("[A-Za-z][A-Za-z0-9-]{0,12}", 1..6),
    ) {
        let boundary = MultipartType::new_boundary();
        let parts: Vec<OutPart<'_>> = bodies
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let mut h = vec![("Content-ID".to_owned(), format!("<p{i}>"))];
                if i == 0 {
                    h.insert(0, ("Content-Type".to_owned(), "text/xml; charset=UTF-8".to_owned()));
                }
                for n in &names { h.push((format!("X-{n}"), format!("v {n}"))); }
                (h, b.as_slice())
            })
            .collect();
        let bytes = write_multipart(&boundary, &parts).unwrap();
        let ty = MultipartType { boundary, start: None, mtom: false };
        let mp = parse_multipart(bytes, &ty, &Limits::default()).unwrap();
        prop_assert_eq!(mp.parts().len(), parts.len());
        for (p, (h, b)) in mp.parts().iter().zip(&parts) {
            prop_assert_eq!(mp.body(p), *b);
            prop_assert_eq!(&p.headers, h);
        }
    }

    #[test]
    fn parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400), ct in "[ -~]{0,80}") {
        let _ = check_content_type(&ct);
        let _ = ContentType::parse(&ct);
        let ty = MultipartType { boundary: "b".into(), start: Some("<x>".into()), mtom: false };
        let _ = parse_multipart(bytes.clone(), &ty, &Limits::default());
        let mut framed = b"--b\r\n".to_vec();
        framed.extend_from_slice(&bytes);
        framed.extend_from_slice(b"\r\n--b--");
        let ty = MultipartType { boundary: "b".into(), start: None, mtom: true };
        let _ = parse_multipart(framed, &ty, &Limits::default());
    }
}
