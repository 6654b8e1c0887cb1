//! Helpers shared by the pki integration tests.
#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::path::Path;
use std::process::Command;

use trustbus_pki::Certificate;
use trustbus_pki::devca::{DevCa, IssueRequest, SubjectKey};
use trustbus_pki::key::{KeyKind, KeyPair};
use trustbus_pki::profile::CertProfile;
use trustbus_pki::signature::Signer;
use trustbus_sdk::id::ClientId;

pub fn member() -> ClientId {
    ClientId::member("DEV", "GOV", "1234").unwrap()
}

pub fn new_ca(dir: &Path) -> DevCa {
    DevCa::init(dir, "DEV").unwrap()
}

pub fn issue(ca: &DevCa, profile: CertProfile, server: Option<&str>) -> (Certificate, KeyPair) {
    let key = KeyPair::generate(KeyKind::EcdsaP256).unwrap();
    let cert = ca
        .issue(&IssueRequest {
            profile,
            member: member(),
            member_name: "Tax Board".into(),
            server_code: server.map(str::to_owned),
            key: SubjectKey::Spki(key.public_key_der()),
            not_before: None,
            not_after: None,
        })
        .unwrap();
    (cert, key)
}

/// Runs openssl; returns (success, stdout + stderr).
pub fn openssl(args: &[&str], cwd: &Path) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("openssl runs");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}
