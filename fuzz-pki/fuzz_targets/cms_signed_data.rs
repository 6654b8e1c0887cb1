//! CMS: detached signature verification on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use time::OffsetDateTime;
use trustbus_pki::cms;

fuzz_target!(|data: &[u8]| {
    let _ = cms::verify_detached(data, b"content", OffsetDateTime::now_utc());
});
