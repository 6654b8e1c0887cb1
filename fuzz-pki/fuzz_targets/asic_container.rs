//! ASiC-E: the container reader (zip, names, manifest) and signature check.
#![no_main]

use libfuzzer_sys::fuzz_target;
use time::OffsetDateTime;
use trustbus_pki::asic::{AsicContainer, AsicLimits};

fuzz_target!(|data: &[u8]| {
    let limits = AsicLimits {
        max_entries: 64,
        max_entry_size: 1 << 20,
        max_total_size: 4 << 20,
    };
    if let Ok(c) = AsicContainer::read(data, &limits) {
        let _ = c.verify_signature(OffsetDateTime::now_utc());
    }
});
