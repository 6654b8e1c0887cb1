//! Feeds arbitrary bytes to the Content-Type and multipart parsers. The first line of the input
//! is used as the Content-Type, the rest as the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trustbus_sdk::multipart::{SoapContentType, check_content_type, parse_multipart};
use trustbus_sdk::soap::Limits;

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let (head, body) = data.split_at(split);
    let Ok(ct) = std::str::from_utf8(head) else {
        return;
    };
    if let Ok(SoapContentType::Multipart(ty)) = check_content_type(ct) {
        if let Ok(mp) = parse_multipart(body, &ty, &Limits::default()) {
            // Every located range lies inside the message.
            for p in mp.parts() {
                assert!(p.body_range.end <= mp.bytes().len());
                assert!(p.header_range.end <= p.body_range.start);
            }
            let _ = mp.soap_bytes();
        }
    }
});
