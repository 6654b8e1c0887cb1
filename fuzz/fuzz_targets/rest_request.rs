//! REST r1 parsing on arbitrary input: the request line, the X-Road headers built from
//! `Name: value` lines, and both header-part parsers, plus their round trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trustbus_sdk::rest::{
    EndpointPattern, Headers, RequestHeaderPart, ResponseHeaderPart, RestRequest, XRoadHeaders,
    normalize_endpoint_path, parse_error_body,
};

fuzz_target!(|data: &[u8]| {
    // Request line and headers, as an HTTP/1.1 head would arrive.
    if let Ok(text) = std::str::from_utf8(data) {
        let mut lines = text.split("\r\n");
        let line = lines.next().unwrap_or_default();
        let mut headers = Headers::new();
        for l in lines {
            if let Some((n, v)) = l.split_once(':') {
                headers.push(n, v.trim().as_bytes());
            }
        }
        if let Ok(req) = RestRequest::parse_line(line) {
            let path = req.endpoint_path();
            if let Ok(p) = &path {
                assert_eq!(normalize_endpoint_path(p).as_ref(), Ok(p));
            }
            let pattern = EndpointPattern::new("*", "/**").unwrap();
            assert_eq!(pattern.matches(req.method(), req.path()), path.is_ok());
            if let Ok(x) = XRoadHeaders::from_headers(&headers) {
                let part = RequestHeaderPart::for_transport(&req, &headers, &x, "fuzz");
                if let Ok(bytes) = part.to_bytes() {
                    assert_eq!(RequestHeaderPart::parse(&bytes).unwrap(), part);
                }
            }
        }
    }

    // Header parts as read back from a transport message.
    if let Ok(part) = RequestHeaderPart::parse(data) {
        let bytes = part.to_bytes().unwrap();
        assert_eq!(RequestHeaderPart::parse(&bytes).unwrap(), part);
        let _ = part.rest_request();
    }
    if let Ok(part) = ResponseHeaderPart::parse(data) {
        let bytes = part.to_bytes().unwrap();
        assert_eq!(ResponseHeaderPart::parse(&bytes).unwrap(), part);
    }
    let _ = parse_error_body(data);
});
