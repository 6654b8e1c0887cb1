//! Feeds arbitrary bytes to the SOAP request, response and fault parsers; anything accepted as a
//! request must also produce a response that parses back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trustbus_sdk::soap::{
    HashAlgorithm, Limits, SoapResponse, build_response, parse_fault, parse_request, parse_response,
};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    if let Ok(req) = parse_request(data, &limits) {
        let resp = build_response(&req, "<r/>", HashAlgorithm::Sha512);
        assert!(matches!(
            parse_response(resp, &limits),
            Ok(SoapResponse::Message(_))
        ));
    }
    let _ = parse_response(data, &limits);
    let _ = parse_fault(data, &limits);
});
