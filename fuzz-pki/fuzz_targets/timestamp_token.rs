//! RFC 3161: the TSA's request parser, the reply parser and token verification.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use time::OffsetDateTime;
use trustbus_pki::DigestAlgorithm;
use trustbus_pki::tsa::{self, MessageImprint, TsaResponder};
use trustbus_pki_fuzz::fixture;

fuzz_target!(|data: &[u8]| {
    static T: OnceLock<TsaResponder> = OnceLock::new();
    let f = fixture();
    let tsa = T.get_or_init(|| {
        TsaResponder::new(&f.tsa, f.tsa_signer.clone(), const_oid_policy()).unwrap()
    });
    let _ = tsa.respond(data, OffsetDateTime::now_utc());
    let _ = tsa::parse_reply(data);
    let imprint = MessageImprint::of(DigestAlgorithm::Sha256, b"fuzz");
    let _ = tsa::verify_token(data, &imprint, std::slice::from_ref(&f.tsa));
});

fn const_oid_policy() -> trustbus_pki::tsa::ObjectIdentifier {
    trustbus_pki::tsa::ObjectIdentifier::new_unwrap("1.3.6.1.4.1.99999.1.1")
}
