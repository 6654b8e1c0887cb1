//! `trustbus message`: exact outputs and fault codes of the offline checks.

// Test helpers outside #[test] fns may unwrap: a panic is the test failure we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn trustbus(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_trustbus"))
        .args(args)
        .output()
        .expect("run trustbus");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn data(name: &str) -> String {
    format!("{}/../sdk/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn id_prints_all_forms() {
    let (rc, out, _) = trustbus(&["message", "id", "DEV/GOV/12?4/tax-board"]);
    assert_eq!(rc, 0);
    assert!(
        out.contains("display: SUBSYSTEM:DEV/GOV/12?4/tax-board\n"),
        "{out}"
    );
    assert!(out.contains("slash:   DEV/GOV/12%3F4/tax-board\n"), "{out}");
    let (rc, _, err) = trustbus(&["message", "id", "DEV/GOV/12 34"]);
    assert_eq!(rc, 1);
    assert!(err.contains("not allow"), "{err}");
}

#[test]
fn soap_request_accepted_with_attachments() {
    let swa = std::fs::read(data("request-swa.mime")).unwrap();
    let first = swa.split(|b| *b == b'\n').next().unwrap();
    let boundary = String::from_utf8_lossy(first)
        .trim()
        .trim_start_matches("--")
        .to_owned();
    let ct = format!("multipart/related; type=\"text/xml\"; boundary=\"{boundary}\"");
    let (rc, out, err) = trustbus(&[
        "message",
        "soap",
        &data("request-swa.mime"),
        "--content-type",
        &ct,
    ]);
    assert_eq!(rc, 0, "{err}");
    assert!(
        out.contains("service:  SERVICE:DEV/COM/5678/registry/getPerson/v1"),
        "{out}"
    );
    assert!(out.contains("attachments: "), "{out}");
    assert!(!out.contains("attachments: 0"), "{out}");
}

#[test]
fn soap_rejections_carry_the_exact_code() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.xml");
    let req = std::fs::read_to_string(data("request.xml")).unwrap();
    std::fs::write(&f, req.replace(">4.0<", ">3.1<")).unwrap();
    let (rc, _, err) = trustbus(&["message", "soap", f.to_str().unwrap()]);
    assert_eq!(rc, 1);
    assert!(
        err.contains("rejected: Client.InvalidProtocolVersion"),
        "{err}"
    );
    let (rc, _, err) = trustbus(&["message", "soap", f.to_str().unwrap(), "--lowercase"]);
    assert_eq!(rc, 1);
    assert!(
        err.contains("rejected: client.invalid_protocol_version"),
        "{err}"
    );
    std::fs::write(&f, "<!DOCTYPE x [<!ENTITY a \"b\">]><x/>").unwrap();
    let (_, _, err) = trustbus(&["message", "soap", f.to_str().unwrap()]);
    assert!(err.contains("rejected: Client.InvalidXml"), "{err}");
}

#[test]
fn rest_prints_header_part_and_hash() {
    let (rc, out, err) = trustbus(&[
        "message",
        "rest",
        "GET",
        "/r1/DEV/GOV/1234/tax-board/persons/42?x=1",
        "-H",
        "X-Road-Client: DEV/GOV/5678/portal",
        "-H",
        "X-Road-Id: m-1",
        "-H",
        "Host: ss1",
    ]);
    assert_eq!(rc, 0, "{err}");
    let expected_part = "  GET\\r\\n\n  /r1/DEV/GOV/1234/tax-board/persons/42?x=1\\r\\n\n  \
                         X-Road-Client:DEV/GOV/5678/portal\\r\\n\n  X-Road-Id:m-1\\r\\n\n  \
                         x-road-request-id:00000000-0000-0000-0000-000000000000\\r\\n\n";
    assert!(out.contains(expected_part), "{out}");
    assert!(!out.contains("Host"), "hop-by-hop header leaked: {out}");
    let (rc, _, err) = trustbus(&["message", "rest", "GET", "/r1/DEV/GOV/1234/tax-board/x"]);
    assert_eq!(rc, 1);
    assert!(err.contains("rejected: Client.MissingHeaderField"), "{err}");
    assert!(err.contains("HTTP 400"), "{err}");
}
