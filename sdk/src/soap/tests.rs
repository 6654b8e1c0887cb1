//! Tests for the SOAP parser and builders.

use proptest::prelude::*;

use super::*;
use crate::fault::{FaultDialect, Origin};
use crate::id::ClientId;

const REQUEST: &[u8] = include_bytes!("../../tests/data/request.xml");
const RESPONSE: &[u8] = include_bytes!("../../tests/data/response.xml");
const FAULT: &[u8] = include_bytes!("../../tests/data/fault.xml");

fn limits() -> Limits {
    Limits::default()
}

fn code(r: Result<SoapMessage, crate::Fault>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(f) => f.code.to_string(),
    }
}

const CLIENT: &str = r#"<xrd:client id:objectType="MEMBER"><id:xRoadInstance>DEV</id:xRoadInstance><id:memberClass>GOV</id:memberClass><id:memberCode>1234</id:memberCode></xrd:client>"#;
const SERVICE: &str = r#"<xrd:service id:objectType="SERVICE"><id:xRoadInstance>DEV</id:xRoadInstance><id:memberClass>COM</id:memberClass><id:memberCode>5678</id:memberCode><id:serviceCode>echo</id:serviceCode></xrd:service>"#;
const ID: &str = "<xrd:id>m1</xrd:id>";
const PV: &str = "<xrd:protocolVersion>4.0</xrd:protocolVersion>";
const BODY: &str = "<SOAP-ENV:Body><echo/></SOAP-ENV:Body>";

fn envelope(header: &str, body: &str) -> String {
    format!(
        r#"<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xrd="http://x-road.eu/xsd/xroad.xsd" xmlns:id="http://x-road.eu/xsd/identifiers">{header}{body}</SOAP-ENV:Envelope>"#
    )
}

fn with_fields(fields: &str) -> String {
    envelope(
        &format!("<SOAP-ENV:Header>{fields}</SOAP-ENV:Header>"),
        BODY,
    )
}

fn parse_str(s: &str) -> String {
    code(parse_request(s.as_bytes(), &limits()))
}

#[test]
fn plain_request() {
    let m = parse_request(REQUEST, &limits()).unwrap();
    let h = m.header();
    assert_eq!(h.client.to_string(), "SUBSYSTEM:DEV/GOV/1234/tax-portal");
    assert_eq!(
        h.service.to_string(),
        "SERVICE:DEV/COM/5678/registry/getPerson/v1"
    );
    assert_eq!(h.id, "4c7b3f8e-1d2a-4b6c-9e0f-123456789abc");
    assert_eq!(h.user_id.as_deref(), Some("EE38001085718"));
    assert_eq!(h.issue.as_deref(), Some("case & file 12"));
    assert_eq!(h.protocol_version, "4.0");
    assert_eq!(h.request_hash, None);
    let fields: Vec<_> = m.header_elements().iter().map(|e| e.field).collect();
    assert_eq!(
        fields,
        [
            HeaderField::Client,
            HeaderField::Service,
            HeaderField::Id,
            HeaderField::UserId,
            HeaderField::Issue,
            HeaderField::ProtocolVersion
        ]
    );
    let client = m.raw(&m.header_elements()[0]);
    assert!(
        client.starts_with(b"<xrd:client "),
        "{}",
        String::from_utf8_lossy(client)
    );
    assert!(client.ends_with(b"</xrd:client>"));
    assert_eq!(
        m.raw(&m.header_elements()[2]),
        b"<xrd:id>4c7b3f8e-1d2a-4b6c-9e0f-123456789abc</xrd:id>"
    );
    let body = m.body_element().unwrap();
    assert_eq!(body.local_name, "getPerson");
    assert_eq!(body.namespace, "http://registry.example/producer");
    assert!(m.bytes()[body.range.clone()].starts_with(b"<ns1:getPerson"));
    assert!(m.bytes()[body.range.clone()].ends_with(b"</ns1:getPerson>"));
    assert!(m.body_content().windows(9).any(|w| w == b"personCod"));
    assert_eq!(m.bytes(), REQUEST);
}

#[test]
fn any_prefixes_and_default_namespaces() {
    let docs = [
        // short prefixes
        r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Header><x:client xmlns:x="http://x-road.eu/xsd/xroad.xsd" xmlns:i="http://x-road.eu/xsd/identifiers" i:objectType="MEMBER"><i:xRoadInstance>DEV</i:xRoadInstance><i:memberClass>GOV</i:memberClass><i:memberCode>1234</i:memberCode></x:client><x:service xmlns:x="http://x-road.eu/xsd/xroad.xsd" xmlns:i="http://x-road.eu/xsd/identifiers" i:objectType="SERVICE"><i:xRoadInstance>DEV</i:xRoadInstance><i:memberClass>COM</i:memberClass><i:memberCode>5678</i:memberCode><i:serviceCode>echo</i:serviceCode></x:service><x:id xmlns:x="http://x-road.eu/xsd/xroad.xsd">m1</x:id><x:protocolVersion xmlns:x="http://x-road.eu/xsd/xroad.xsd">4.0</x:protocolVersion></s:Header><s:Body><e:echo xmlns:e="urn:e"/></s:Body></s:Envelope>"#,
        // default namespaces everywhere
        r#"<Envelope xmlns="http://schemas.xmlsoap.org/soap/envelope/"><Header><client xmlns="http://x-road.eu/xsd/xroad.xsd" xmlns:i="http://x-road.eu/xsd/identifiers" i:objectType="MEMBER"><xRoadInstance xmlns="http://x-road.eu/xsd/identifiers">DEV</xRoadInstance><memberClass xmlns="http://x-road.eu/xsd/identifiers">GOV</memberClass><memberCode xmlns="http://x-road.eu/xsd/identifiers">1234</memberCode></client><service xmlns="http://x-road.eu/xsd/xroad.xsd" xmlns:i="http://x-road.eu/xsd/identifiers" i:objectType="SERVICE"><i:xRoadInstance>DEV</i:xRoadInstance><i:memberClass>COM</i:memberClass><i:memberCode>5678</i:memberCode><i:serviceCode>echo</i:serviceCode></service><id xmlns="http://x-road.eu/xsd/xroad.xsd">m1</id><protocolVersion xmlns="http://x-road.eu/xsd/xroad.xsd">4.0</protocolVersion></Header><Body><echo xmlns=""/></Body></Envelope>"#,
    ];
    for d in docs {
        let m = parse_request(d.as_bytes(), &limits()).unwrap();
        assert_eq!(m.header().client.to_string(), "MEMBER:DEV/GOV/1234");
        assert_eq!(m.header().service.code(), "echo");
    }
    // A prefix that looks right but is bound to another namespace is not a header field.
    let wrong = with_fields(&format!(
        r#"{CLIENT}{SERVICE}<xrd:id xmlns:xrd="urn:other">m1</xrd:id>{PV}"#
    ));
    assert_eq!(parse_str(&wrong), "Client.MissingHeaderField");
}

#[test]
fn extensions_are_preserved_in_order() {
    let token = r#"<ext:securityToken xmlns:ext="http://x-road.eu/xsd/security-token.xsd" tokenType="urn:ietf:params:oauth:token-type:jwt">eyJhbGciOi.x.y</ext:securityToken>"#;
    let server = r#"<xrd:securityServer id:objectType="SERVER"><id:xRoadInstance>DEV</id:xRoadInstance><id:memberClass>COM</id:memberClass><id:memberCode>5678</id:memberCode><id:serverCode>ss1</id:serverCode></xrd:securityServer>"#;
    let party = r#"<repr:representedParty xmlns:repr="http://x-road.eu/xsd/representation.xsd"><repr:partyClass>COM</repr:partyClass><repr:partyCode>999</repr:partyCode></repr:representedParty>"#;
    let doc = with_fields(&format!("{CLIENT}{token}{SERVICE}{ID}{PV}{server}{party}"));
    let m = parse_request(doc.as_bytes(), &limits()).unwrap();
    let els = m.header_elements();
    assert_eq!(els[1].field, HeaderField::Extension);
    assert_eq!(els[1].local_name, "securityToken");
    assert_eq!(m.raw(&els[1]), token.as_bytes());
    assert_eq!(m.raw(&els[5]), server.as_bytes());
    assert_eq!(m.raw(&els[6]), party.as_bytes());
    let h = m.header();
    assert_eq!(
        h.security_server.as_ref().unwrap().to_string(),
        "SERVER:DEV/COM/5678/ss1"
    );
    let p = h.represented_party.as_ref().unwrap();
    assert_eq!((p.party_class(), p.party_code()), (Some("COM"), "999"));
}

#[test]
fn malformed_requests_get_exact_codes() {
    let cases: Vec<(&str, String, &str)> = vec![
        ("missing client", with_fields(&format!("{SERVICE}{ID}{PV}")), "Client.MissingHeaderField"),
        ("missing service", with_fields(&format!("{CLIENT}{ID}{PV}")), "Client.MissingHeaderField"),
        ("missing id", with_fields(&format!("{CLIENT}{SERVICE}{PV}")), "Client.MissingHeaderField"),
        ("blank id", with_fields(&format!("{CLIENT}{SERVICE}<xrd:id> </xrd:id>{PV}")), "Client.MissingHeaderField"),
        ("missing version", with_fields(&format!("{CLIENT}{SERVICE}{ID}")), "Client.MissingHeaderField"),
        ("duplicate client", with_fields(&format!("{CLIENT}{CLIENT}{SERVICE}{ID}{PV}")), "Client.DuplicateHeaderField"),
        ("duplicate id", with_fields(&format!("{CLIENT}{SERVICE}{ID}{ID}{PV}")), "Client.DuplicateHeaderField"),
        ("duplicate userId", with_fields(&format!("{CLIENT}{SERVICE}{ID}<xrd:userId>a</xrd:userId><xrd:userId>b</xrd:userId>{PV}")), "Client.DuplicateHeaderField"),
        ("version 3.1", with_fields(&format!("{CLIENT}{SERVICE}{ID}<xrd:protocolVersion>3.1</xrd:protocolVersion>")), "Client.InvalidProtocolVersion"),
        ("version with spaces", with_fields(&format!("{CLIENT}{SERVICE}{ID}<xrd:protocolVersion> 4.0</xrd:protocolVersion>")), "Client.InvalidProtocolVersion"),
        ("no header", envelope("", BODY), "Client.MissingHeader"),
        ("empty envelope", r#"<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"/>"#.into(), "Client.MissingHeader"),
        ("no body", envelope(&format!("<SOAP-ENV:Header>{CLIENT}{SERVICE}{ID}{PV}</SOAP-ENV:Header>"), ""), "Client.MissingBody"),
        ("wrong wrapper", envelope(&format!("<SOAP-ENV:Header>{CLIENT}{SERVICE}{ID}{PV}</SOAP-ENV:Header>"), "<SOAP-ENV:Body><other/></SOAP-ENV:Body>"), "Client.InvalidBody"),
        ("empty body", envelope(&format!("<SOAP-ENV:Header>{CLIENT}{SERVICE}{ID}{PV}</SOAP-ENV:Header>"), "<SOAP-ENV:Body/>"), "Client.InvalidBody"),
        ("fault in request", envelope(&format!("<SOAP-ENV:Header>{CLIENT}{SERVICE}{ID}{PV}</SOAP-ENV:Header>"), "<SOAP-ENV:Body><SOAP-ENV:Fault><faultcode>x</faultcode></SOAP-ENV:Fault></SOAP-ENV:Body>"), "Client.InvalidBody"),
        ("not well formed", "<SOAP-ENV:Envelope xmlns:SOAP-ENV=\"http://schemas.xmlsoap.org/soap/envelope/\"><SOAP-ENV:Header></SOAP-ENV:Body>".into(), "Client.InvalidXml"),
        ("truncated", with_fields(&format!("{CLIENT}{SERVICE}{ID}{PV}"))[..200].to_owned(), "Client.InvalidXml"),
        ("doctype", format!("<!DOCTYPE x [<!ENTITY a \"b\">]>{}", with_fields(&format!("{CLIENT}{SERVICE}{ID}{PV}"))), "Client.InvalidXml"),
        ("undeclared entity", with_fields(&format!("{CLIENT}{SERVICE}<xrd:id>&xxe;</xrd:id>{PV}")), "Client.InvalidXml"),
        ("processing instruction", with_fields(&format!("{CLIENT}{SERVICE}{ID}<?evil x?>{PV}")), "Client.InvalidXml"),
        ("undeclared prefix", with_fields(&format!("{CLIENT}{SERVICE}{ID}{PV}<zz:foo/>")), "Client.InvalidXml"),
        ("latin-1 declaration", format!("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>{}", with_fields(&format!("{CLIENT}{SERVICE}{ID}{PV}"))), "Client.InvalidXml"),
        ("two roots", format!("{0}{0}", with_fields(&format!("{CLIENT}{SERVICE}{ID}{PV}"))), "Client.InvalidXml"),
        ("not soap", "<html><body/></html>".into(), "Client.InvalidSoap"),
        ("soap 1.2", r#"<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"><e:Body/></e:Envelope>"#.into(), "Client.InvalidSoap"),
        ("empty input", "  ".into(), "Client.InvalidSoap"),
        ("two headers", envelope(&format!("<SOAP-ENV:Header>{CLIENT}</SOAP-ENV:Header><SOAP-ENV:Header/>"), BODY), "Client.MalformedSoap"),
        ("header after body", format!(r#"<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/">{BODY}<SOAP-ENV:Header/></SOAP-ENV:Envelope>"#), "Client.MalformedSoap"),
        ("two bodies", envelope(&format!("<SOAP-ENV:Header>{CLIENT}{SERVICE}{ID}{PV}</SOAP-ENV:Header>"), &format!("{BODY}{BODY}")), "Client.MalformedSoap"),
        ("text in envelope", envelope("hello", BODY), "Client.MalformedSoap"),
        ("element field in id", with_fields(&format!("{CLIENT}{SERVICE}<xrd:id><b/></xrd:id>{PV}")), "Client.InvalidSoap"),
        ("client with bad chars", with_fields(&CLIENT.replace("1234", "12 34")), "Client.InvalidClientIdentifier"),
        ("client of type SERVICE", with_fields(&format!("{}{SERVICE}{ID}{PV}", SERVICE.replace("xrd:service", "xrd:client"))), "Client.InvalidClientIdentifier"),
        ("client without objectType", with_fields(&format!("{}{SERVICE}{ID}{PV}", CLIENT.replace(r#" id:objectType="MEMBER""#, ""))), "Client.InvalidClientIdentifier"),
        ("client with unknown objectType", with_fields(&format!("{}{SERVICE}{ID}{PV}", CLIENT.replace("MEMBER", "PERSON"))), "Client.InvalidClientIdentifier"),
        ("client fields out of order", with_fields(&format!(r#"<xrd:client id:objectType="MEMBER"><id:memberClass>GOV</id:memberClass><id:xRoadInstance>DEV</id:xRoadInstance><id:memberCode>1</id:memberCode></xrd:client>{SERVICE}{ID}{PV}"#)), "Client.InvalidClientIdentifier"),
        ("client missing memberCode", with_fields(&format!(r#"<xrd:client id:objectType="MEMBER"><id:xRoadInstance>DEV</id:xRoadInstance><id:memberClass>GOV</id:memberClass></xrd:client>{SERVICE}{ID}{PV}"#)), "Client.InvalidClientIdentifier"),
        ("service of type MEMBER", with_fields(&format!("{CLIENT}{}{ID}{PV}", CLIENT.replace("xrd:client", "xrd:service"))), "Client.InvalidClientIdentifier"),
        ("server of type MEMBER", with_fields(&format!("{CLIENT}{SERVICE}{ID}{PV}{}", CLIENT.replace("xrd:client", "xrd:securityServer"))), "Client.InvalidSecurityServer"),
        ("party without code", with_fields(&format!(r#"{CLIENT}{SERVICE}{ID}{PV}<r:representedParty xmlns:r="http://x-road.eu/xsd/representation.xsd"><r:partyClass>COM</r:partyClass></r:representedParty>"#)), "Client.InvalidClientIdentifier"),
    ];
    for (name, doc, want) in &cases {
        assert_eq!(&parse_str(doc), want, "{name}: {doc}");
    }
}

#[test]
fn limits_are_enforced() {
    let doc = with_fields(&format!("{CLIENT}{SERVICE}{ID}{PV}"));
    let small = Limits {
        max_envelope_size: doc.len() - 1,
        ..Limits::default()
    };
    assert_eq!(
        code(parse_request(doc.as_bytes(), &small)),
        "Client.InvalidXml"
    );
    let deep = envelope(
        &format!("<SOAP-ENV:Header>{CLIENT}{SERVICE}{ID}{PV}</SOAP-ENV:Header>"),
        &format!(
            "<SOAP-ENV:Body><echo>{}{}</echo></SOAP-ENV:Body>",
            "<a>".repeat(70),
            "</a>".repeat(70)
        ),
    );
    assert_eq!(parse_str(&deep), "Client.InvalidXml");
    let many = with_fields(&format!(
        "{CLIENT}{SERVICE}{ID}{PV}{}",
        "<x:e xmlns:x=\"urn:x\"/>".repeat(70)
    ));
    assert_eq!(parse_str(&many), "Client.InvalidSoap");
}

#[test]
fn bom_is_accepted_and_kept() {
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    bytes.extend_from_slice(REQUEST);
    let m = parse_request(bytes.clone(), &limits()).unwrap();
    assert_eq!(m.bytes(), &bytes[..]);
    assert_eq!(
        m.raw(&m.header_elements()[2]),
        b"<xrd:id>4c7b3f8e-1d2a-4b6c-9e0f-123456789abc</xrd:id>"
    );
}

#[test]
fn response_with_request_hash() {
    let SoapResponse::Message(m) = parse_response(RESPONSE, &limits()).unwrap() else {
        panic!("expected a message")
    };
    let rh = m.header().request_hash.as_ref().unwrap();
    assert_eq!(rh.algorithm_id, HashAlgorithm::Sha512.uri());
    assert_eq!(rh.value, "AAAA");
    assert_eq!(m.body_element().unwrap().local_name, "getPersonResponse");
    let req = parse_request(REQUEST, &limits()).unwrap();
    check_response_headers(&req, &m, Origin::ClientProxy).unwrap();
    let err = verify_request_hash(req.bytes(), &m, Origin::ClientProxy).unwrap_err();
    assert_eq!(
        err.code.to_string(),
        "Server.ClientProxy.InconsistentResponse"
    );
}

#[test]
fn built_response_echoes_headers_and_hashes_the_request() {
    let req = parse_request(REQUEST, &limits()).unwrap();
    for alg in [HashAlgorithm::Sha512, HashAlgorithm::Sha256] {
        let body =
            r#"<p:getPersonResponse xmlns:p="urn:p"><p:name>Mari</p:name></p:getPersonResponse>"#;
        let bytes = build_response(&req, body, alg);
        let SoapResponse::Message(resp) = parse_response(bytes, &limits()).unwrap() else {
            panic!("expected a message")
        };
        for (a, b) in req.header_elements().iter().zip(resp.header_elements()) {
            assert_eq!(req.raw(a), resp.raw(b));
        }
        assert_eq!(
            resp.header_elements().len(),
            req.header_elements().len() + 1
        );
        assert_eq!(resp.body_content(), body.as_bytes());
        check_response_headers(&req, &resp, Origin::ClientProxy).unwrap();
        verify_request_hash(req.bytes(), &resp, Origin::ClientProxy).unwrap();
        assert_eq!(
            resp.header().request_hash.as_ref().unwrap().value,
            request_hash(REQUEST, alg)
        );
        // A provider response that already carries a (wrong) hash gets it overwritten.
        let again = build_response_from(&req, &resp, alg);
        let SoapResponse::Message(again) = parse_response(again, &limits()).unwrap() else {
            panic!("expected a message")
        };
        assert_eq!(again.header_elements().len(), resp.header_elements().len());
        verify_request_hash(req.bytes(), &again, Origin::ClientProxy).unwrap();
    }
    let SoapResponse::Message(given) = parse_response(RESPONSE, &limits()).unwrap() else {
        panic!("expected a message")
    };
    let fixed = build_response_from(&req, &given, HashAlgorithm::Sha512);
    let SoapResponse::Message(fixed) = parse_response(fixed, &limits()).unwrap() else {
        panic!("expected a message")
    };
    verify_request_hash(req.bytes(), &fixed, Origin::ClientProxy).unwrap();
}

#[test]
fn inconsistent_responses_are_detected() {
    let req = parse_request(REQUEST, &limits()).unwrap();
    let text = std::str::from_utf8(RESPONSE).unwrap();
    for (from, to) in [
        ("<x:id>4c7b", "<x:id>ffff"),
        ("<x:userId>EE38001085718</x:userId>", ""),
        (
            "<i:memberCode>1234</i:memberCode>",
            "<i:memberCode>9999</i:memberCode>",
        ),
    ] {
        let changed = text.replacen(from, to, 1);
        let SoapResponse::Message(m) = parse_response(changed.as_bytes(), &limits()).unwrap()
        else {
            panic!("expected a message")
        };
        let f = check_response_headers(&req, &m, Origin::ClientProxy).unwrap_err();
        assert_eq!(
            f.code.to_string(),
            "Server.ClientProxy.InconsistentResponse",
            "{from}"
        );
    }
    // Same fields in another order.
    let swapped = text.replacen(
        "<x:userId>EE38001085718</x:userId>\n    <x:issue>case &amp; file 12</x:issue>",
        "<x:issue>case &amp; file 12</x:issue>\n    <x:userId>EE38001085718</x:userId>",
        1,
    );
    assert_ne!(swapped, text);
    let SoapResponse::Message(m) = parse_response(swapped.as_bytes(), &limits()).unwrap() else {
        panic!("expected a message")
    };
    assert!(check_response_headers(&req, &m, Origin::ClientProxy).is_err());
}

#[test]
fn faults_render_and_parse_back() {
    let f = crate::Fault::of(
        Origin::Client,
        crate::ErrorKind::InvalidBody,
        "bad <body> & \"more\"",
    )
    .with_correlation_id("c0ffee");
    let bytes = render_fault(&f, FaultDialect::Classic);
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert_eq!(
        text,
        r#"<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"><SOAP-ENV:Body><SOAP-ENV:Fault><faultcode>Client.InvalidBody</faultcode><faultstring>bad &lt;body&gt; &amp; &quot;more&quot;</faultstring><detail><faultDetail xmlns="">c0ffee</faultDetail></detail></SOAP-ENV:Fault></SOAP-ENV:Body></SOAP-ENV:Envelope>"#
    );
    let back = parse_fault(&bytes, &limits()).unwrap();
    assert_eq!(back.to_fault().unwrap(), f);
    let lower = render_fault(&f, FaultDialect::Lowercase);
    let back = parse_fault(&lower, &limits()).unwrap();
    assert_eq!(back.code, "client.invalid_body");
    assert_eq!(back.to_fault().unwrap(), f);

    let given = parse_fault(FAULT, &limits()).unwrap();
    assert_eq!(given.code, "Server.ServerProxy.AccessDenied");
    assert_eq!(given.actor.as_deref(), Some(""));
    assert_eq!(
        given.detail.as_deref(),
        Some("1e9c1b4a-7c1f-4f6e-8a55-0c3a2b7d9e10")
    );
    let mapped = given.to_fault().unwrap();
    assert_eq!(mapped.code.to_string(), "Server.ServerProxy.AccessDenied");
    // A service's own code is kept as text but does not map to an X-Road fault.
    let own = r#"<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body><e:Fault><faultcode>e:Server</faultcode><faultstring>boom</faultstring></e:Fault></e:Body></e:Envelope>"#;
    let own = parse_fault(own.as_bytes(), &limits()).unwrap();
    assert_eq!(
        (own.code.as_str(), own.string.as_str()),
        ("e:Server", "boom")
    );
    assert_eq!(own.to_fault(), None);
    // A response that is a fault keeps its bytes.
    match parse_response(FAULT, &limits()).unwrap() {
        SoapResponse::Fault { bytes, .. } => assert_eq!(bytes, FAULT),
        SoapResponse::Message(_) => panic!("expected a fault"),
    }
    assert_eq!(
        parse_fault(RESPONSE, &limits())
            .unwrap_err()
            .code
            .to_string(),
        "Client.InvalidSoap"
    );
    let empty = r#"<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body><e:Fault/></e:Body></e:Envelope>"#;
    assert_eq!(
        parse_fault(empty.as_bytes(), &limits())
            .unwrap_err()
            .code
            .to_string(),
        "Client.MalformedSoap"
    );
    let not_alone = r#"<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body><e:Fault><faultcode>x</faultcode></e:Fault><x/></e:Body></e:Envelope>"#;
    assert_eq!(
        parse_fault(not_alone.as_bytes(), &limits())
            .unwrap_err()
            .code
            .to_string(),
        "Client.MalformedSoap"
    );
    let no_code = r#"<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body><e:Fault><faultstring>x</faultstring></e:Fault></e:Body></e:Envelope>"#;
    assert_eq!(
        parse_fault(no_code.as_bytes(), &limits())
            .unwrap_err()
            .code
            .to_string(),
        "Client.MalformedSoap"
    );
}

fn sample_builder() -> SoapRequestBuilder {
    let client = ClientId::subsystem("DEV", "GOV", "1234", "portal").unwrap();
    let provider = ClientId::subsystem("DEV", "COM", "5678", "registry").unwrap();
    SoapRequestBuilder::new(
        client,
        ServiceId::new(provider, "getPerson", Some("v1")).unwrap(),
    )
}

#[test]
fn builder_output_parses_back() {
    let owner = ClientId::member("DEV", "COM", "5678").unwrap();
    let b = sample_builder()
        .id("abc")
        .user_id("EE1<2>")
        .issue("x & y")
        .security_server(SecurityServerId::new(&owner, "ss1").unwrap())
        .represented_party(RepresentedParty::new(Some("GOV"), "42").unwrap())
        .body(r#"<p:getPerson xmlns:p="urn:p"><p:code>1</p:code></p:getPerson>"#);
    let m = parse_request(b.build(), &limits()).unwrap();
    let h = m.header();
    assert_eq!(h.id, "abc");
    assert_eq!(h.user_id.as_deref(), Some("EE1<2>"));
    assert_eq!(h.issue.as_deref(), Some("x & y"));
    assert_eq!(h.security_server.as_ref().unwrap().server_code(), "ss1");
    assert_eq!(h.represented_party.as_ref().unwrap().party_code(), "42");
    // Default body is the empty wrapper element.
    let m = parse_request(sample_builder().build(), &limits()).unwrap();
    assert_eq!(m.body_element().unwrap().local_name, "getPerson");
    assert_eq!(m.header().id.len(), 36);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parsers_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_request(bytes.clone(), &limits());
        let _ = parse_response(bytes.clone(), &limits());
        let _ = parse_fault(&bytes, &limits());
    }

    #[test]
    fn parsers_never_panic_on_mutated_messages(
        pos in 0usize..REQUEST.len(), len in 0usize..40, insert in "[<>/&;:=\" a-z#x0-9]{0,12}"
    ) {
        let mut bytes = REQUEST.to_vec();
        let end = (pos + len).min(bytes.len());
        bytes.splice(pos..end, insert.bytes());
        if let Ok(m) = parse_request(bytes.clone(), &limits()) {
            // Whatever is accepted still yields a consistent response.
            let resp = build_response(&m, "<r/>", HashAlgorithm::Sha256);
            let parsed = parse_response(resp, &limits());
            prop_assert!(matches!(parsed, Ok(SoapResponse::Message(_))));
        }
        let _ = parse_response(bytes, &limits());
    }

    #[test]
    fn built_requests_parse_back(
        id in "[ -~]{1,40}", user in proptest::option::of("[ -~\u{e9}\u{20ac}]{0,30}"),
        issue in proptest::option::of("[ -~]{0,30}"),
        code in "[A-Za-z][A-Za-z0-9-]{0,20}",
    ) {
        prop_assume!(!id.trim().is_empty());
        let client = ClientId::member("DEV", "GOV", "1").unwrap();
        let service = ServiceId::new(ClientId::member("DEV", "COM", "2").unwrap(), &code, None).unwrap();
        let mut b = SoapRequestBuilder::new(client.clone(), service.clone()).id(id.clone());
        if let Some(u) = &user { b = b.user_id(u.clone()); }
        if let Some(i) = &issue { b = b.issue(i.clone()); }
        let m = parse_request(b.build(), &limits()).unwrap();
        let h = m.header();
        prop_assert_eq!(&h.client, &client);
        prop_assert_eq!(&h.service, &service);
        prop_assert_eq!(&h.id, &id);
        prop_assert_eq!(&h.user_id, &user);
        prop_assert_eq!(&h.issue, &issue);
    }
}
