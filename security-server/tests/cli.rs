//! The onboarding commands of the real binary (init, import-cert, status) and the admin
//! subcommands' local errors (their calls to a running server are in exchange.rs).

// Test code: a failed setup step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use trustbus_pki::Certificate;
use trustbus_pki::devca::{IssueRequest, SubjectKey};
use trustbus_pki::profile::CertProfile;
use trustbus_sdk::id::ClientId;
use trustbus_security_server::testkit::TestPki;

fn ss(args: &[&str]) -> (bool, String) {
    let out = Command::new(common::ss_exe())
        .args(args)
        .env("TRUSTBUS_SS_PIN", "correct horse")
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn init_import_status() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(&dir.path().join("ca")).unwrap();
    let anchor = trustbus_central_server::anchor::Anchor::new(
        "DEV",
        vec!["http://127.0.0.1:1/globalconf".into()],
        &[pki.ca.ca_cert().der().to_vec()],
    );
    let anchor_path = dir.path().join("anchor.json");
    std::fs::write(&anchor_path, anchor.to_bytes().unwrap()).unwrap();
    let ssdir = dir.path().join("ss");
    let s = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let (ok, out) = ss(&[
        "init",
        "--dir",
        &s(&ssdir),
        "--owner",
        "DEV/GOV/1234",
        "--server-code",
        "ss1",
        "--anchor",
        &s(&anchor_path),
        "--name",
        "Tax Board",
    ]);
    assert!(ok, "{out}");
    let (ok, out) = ss(&[
        "init",
        "--dir",
        &s(&ssdir),
        "--owner",
        "DEV/GOV/1234",
        "--server-code",
        "ss1",
        "--anchor",
        &s(&anchor_path),
    ]);
    assert!(!ok, "a second init must not overwrite: {out}");

    // The CA certifies both CSRs; import them.
    let member = ClientId::from_slash("DEV/GOV/1234").unwrap();
    let config = ssdir.join("security-server.toml");
    for (csr, profile, server) in [
        ("auth.csr.pem", CertProfile::Auth, Some("ss1")),
        ("sign.csr.pem", CertProfile::Sign, None),
    ] {
        let pem_text = std::fs::read_to_string(ssdir.join("data/certs").join(csr)).unwrap();
        let der = pem::parse(pem_text).unwrap().into_contents();
        let cert = pki
            .ca
            .issue(&IssueRequest {
                profile,
                member: member.clone(),
                member_name: "Tax Board".into(),
                server_code: server.map(str::to_owned),
                key: SubjectKey::Csr(&der),
                not_before: None,
                not_after: None,
            })
            .unwrap();
        let f = dir.path().join(format!("{csr}.crt"));
        Certificate::write_pem_file(&f, &[cert]).unwrap();
        let (ok, out) = ss(&["import-cert", &s(&f), "--config", &s(&config)]);
        assert!(ok, "{out}");
    }
    // A second member's signing key for hosted subsystems of that member.
    let other = ClientId::from_slash("DEV/GOV/3000").unwrap();
    let (ok, out) = ss(&[
        "add-member",
        "--config",
        &s(&config),
        "--member",
        "DEV/GOV/3000",
    ]);
    assert!(ok, "{out}");
    let id = trustbus_security_server::identity::member_key_id(&other);
    let pem_text = std::fs::read_to_string(ssdir.join(format!("data/certs/{id}.csr.pem"))).unwrap();
    let der = pem::parse(pem_text).unwrap().into_contents();
    let cert = pki
        .ca
        .issue(&IssueRequest {
            profile: CertProfile::Sign,
            member: other,
            member_name: "Other".into(),
            server_code: None,
            key: SubjectKey::Csr(&der),
            not_before: None,
            not_after: None,
        })
        .unwrap();
    let f = dir.path().join("member.crt");
    Certificate::write_pem_file(&f, &[cert]).unwrap();
    let (ok, out) = ss(&["import-cert", &s(&f), "--config", &s(&config)]);
    assert!(ok, "{out}");
    assert!(ssdir.join(format!("data/certs/{id}.pem")).exists());

    // A certificate for no key of the token is refused.
    let (_, other) = pki.sign_cert(&member).unwrap();
    let f = dir.path().join("other.crt");
    Certificate::write_pem_file(&f, &[other]).unwrap();
    let (ok, out) = ss(&["import-cert", &s(&f), "--config", &s(&config)]);
    assert!(!ok && out.contains("not for a key"), "{out}");

    let (ok, out) = ss(&["api-key", "--role", "observer"]);
    assert!(
        ok && out.contains("[[api_keys]]") && out.lines().next().unwrap().len() == 64,
        "{out}"
    );
    let (ok, _) = ss(&["api-key", "--role", "root"]);
    assert!(!ok);

    let (ok, out) = ss(&["status", "--config", &s(&config)]);
    assert!(ok, "{out}");
    assert!(out.contains("server DEV/GOV/1234/ss1"), "{out}");
    assert!(out.contains("auth.pem: C=DEV"), "{out}");
    assert!(
        out.contains("OutdatedGlobalConf"),
        "no configuration downloaded yet: {out}"
    );
}

/// The admin subcommands need a key, and say so; an unreachable server is reported as such;
/// a bad endpoint argument is refused before anything is sent.
#[test]
fn admin_subcommands_report_missing_key_and_unreachable_server() {
    let run = |key: Option<&str>, args: &[&str]| {
        let mut c = Command::new(common::ss_exe());
        c.args(args)
            .env_remove("TRUSTBUS_ADMIN_API_KEY")
            .env_remove("TRUSTBUS_ADMIN_URL")
            .env("RUST_LOG", "error");
        if let Some(k) = key {
            c.env("TRUSTBUS_ADMIN_API_KEY", k);
        }
        let out = c.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, err) = run(
        None,
        &["clients", "list", "--admin-url", "http://127.0.0.1:1"],
    );
    assert!(!ok);
    assert_eq!(
        err.trim(),
        "security-server: give --api-key or set TRUSTBUS_ADMIN_API_KEY"
    );
    let (ok, err) = run(
        Some("k"),
        &["access", "list", "--admin-url", "http://127.0.0.1:1"],
    );
    assert!(
        !ok && err.starts_with("security-server: unreachable: "),
        "{err}"
    );
    let (ok, err) = run(
        Some("k"),
        &[
            "access",
            "grant",
            "--admin-url",
            "http://127.0.0.1:1",
            "--service",
            "DEV/GOV/1/p/s",
            "--subject",
            "MEMBER:DEV/GOV/2",
            "--endpoint",
            "/no-method",
        ],
    );
    assert!(!ok && err.contains("write METHOD /path"), "{err}");
}

/// operator-guide.md §6, run as written: `api-key --role auditor` prints a key and the
/// `[[api_keys]]` entry; with that entry in the configuration the key opens the auditor API
/// and is refused by the admin API, and a key it did not print opens nothing.
#[test]
fn auditor_key_command_from_the_operator_guide() {
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/operator-guide.md"),
    )
    .unwrap();
    let marker = "<!-- cli-doc-test: auditor-key -->\n```sh\n";
    let start = doc.find(marker).expect("marker in docs/operator-guide.md") + marker.len();
    let block = &doc[start..start + doc[start..].find("\n```").unwrap()];
    assert!(
        block.starts_with("security-server api-key --role auditor"),
        "{block}"
    );
    let out = Command::new("bash")
        .arg("-euo")
        .arg("pipefail")
        .arg("-c")
        .arg(format!(
            "security-server() {{ \"$SS_EXE\" \"$@\"; }}\n{block}"
        ))
        .env("SS_EXE", common::ss_exe())
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    let key = stdout.trim();
    assert_eq!(key.len(), 64, "{stdout}");
    let entry = &stderr[stderr.find("[[api_keys]]").expect("entry printed")..];
    assert!(entry.contains("role = \"auditor\""), "{entry}");

    let cfg = trustbus_security_server::config::Config::parse(&format!(
        "[server]\nowner = \"DEV/GOV/1\"\nserver_code = \"s\"\ndata_dir = \"d\"\n\
         [globalconf]\nanchor = \"a\"\n{entry}"
    ))
    .unwrap();
    let headers = |k: &str| {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            format!("Bearer {k}").parse().unwrap(),
        );
        h
    };
    use trustbus_security_server::auditorapi::{decide, is_auditor_key};
    use trustbus_security_server::messagelog::auditor::AuthDecision;
    assert!(matches!(
        decide(&cfg, &headers(key), &http::Extensions::new()),
        AuthDecision::Auditor(who) if who.starts_with("api-key#1:")
    ));
    // The admin API refuses exactly the keys this says are auditor keys.
    assert!(is_auditor_key(&cfg, &headers(key)));
    let other = "0".repeat(64);
    assert_eq!(
        decide(&cfg, &headers(&other), &http::Extensions::new()),
        AuthDecision::Unauthenticated
    );
    assert!(!is_auditor_key(&cfg, &headers(&other)));
}
