//! OCSP: the responder's request parser and the response verifier on arbitrary bytes.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use time::{Duration, OffsetDateTime};
use trustbus_pki::ocsp::{self, MemoryRevocationSource, OcspResponder};
use trustbus_pki_fuzz::fixture;

fuzz_target!(|data: &[u8]| {
    static R: OnceLock<OcspResponder<Arc<MemoryRevocationSource>>> = OnceLock::new();
    let f = fixture();
    let responder = R.get_or_init(|| {
        OcspResponder::new(
            &f.ca,
            &f.ca,
            f.ca_signer.clone(),
            Arc::new(MemoryRevocationSource::new()),
        )
        .unwrap()
    });
    let now = OffsetDateTime::now_utc();
    let _ = responder.respond(data, now);
    let _ = ocsp::verify_response(data, &f.leaf, &f.ca, now, Duration::minutes(20));
    let _ = ocsp::response_status(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = ocsp::request_from_get_path(s);
    }
});
