//! Per-message crypto cost: raw ECDSA P-256 sign/verify and CMS detached sign/verify.
//!
//! Run with `cargo bench -p trustbus-pki --bench sign_verify`. Prints ns/op; a plain timing
//! loop, no statistics beyond the mean, so later work has an order of magnitude to plan with.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../tests/fixtures/mod.rs"]
mod fixtures;

use std::hint::black_box;
use std::time::Instant;

use time::OffsetDateTime;
use trustbus_pki::cms::{CmsSigner, verify_detached};
use trustbus_pki::signature::{self, SignatureAlgorithm};

fn bench(name: &str, iterations: u32, mut f: impl FnMut()) {
    for _ in 0..iterations / 10 {
        f();
    }
    let start = Instant::now();
    for _ in 0..iterations {
        f();
    }
    let ns = start.elapsed().as_nanos() / u128::from(iterations);
    println!("{name:<40} {ns:>10} ns/op  ({iterations} iterations)");
}

fn main() {
    let ca = fixtures::Ca::new("Bench CA");
    let member = ca.issue_signer("bench member");
    let signer = member.signer();
    let msg = vec![0x5a; 1024];
    let spki = signer.public_key_der().to_vec();
    let sig = signer.sign(&msg).unwrap();

    bench("ecdsa-p256 sign (1 KiB)", 2000, || {
        black_box(signer.sign(black_box(&msg)).unwrap());
    });
    bench("ecdsa-p256 verify (1 KiB)", 2000, || {
        signature::verify(&spki, SignatureAlgorithm::EcdsaP256Sha256, &msg, &sig).unwrap();
    });

    let manifest = vec![b'x'; 1200]; // about one ASiC manifest for a few parts
    let cms = CmsSigner::new(signer.as_ref(), &member.cert_der)
        .unwrap()
        .with_chain(std::slice::from_ref(&ca.id.cert_der))
        .unwrap()
        .with_ocsp_response(vec![0x30, 0x03, 0x0a, 0x01, 0x00]);
    let now = OffsetDateTime::now_utc();
    let signed = cms.sign_detached(&manifest, now, None).unwrap();
    bench("cms detached sign (manifest)", 1000, || {
        black_box(cms.sign_detached(black_box(&manifest), now, None).unwrap());
    });
    bench("cms detached verify (manifest)", 1000, || {
        black_box(verify_detached(black_box(&signed), &manifest, now).unwrap());
    });
}
