//! `trustbus up --message-log off`: the security servers run with `[message_log] enabled =
//! false`. Exchanges still work, nothing is written under either server's message-log
//! directory, and every place an operator or auditor looks says that logging is off.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use trustbus_integration_tests::{Up, http};

const CONSUMER: &str = "DEV/GOV/1001/tax-portal";
const PERSON: &str = "38001085718";

/// `DIR/<code>/data/messagelog` of security server `ss` (its `data_dir` is `data`, next to
/// its configuration file).
fn message_log_dir(up: &Up, ss: usize) -> PathBuf {
    let config = PathBuf::from(up.get(&format!("/security_servers/{ss}/config")));
    config.parent().unwrap().join("data").join("messagelog")
}

#[test]
fn exchanges_work_and_nothing_is_logged_with_the_message_log_off() {
    assert!(
        trustbus_integration_tests::security_server_available(),
        "the security-server binary found is not this workspace's build"
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("trustbus-dev");
    let up = Up::start_with(&dir, &["--message-log", "off"]);
    assert!(
        up.banner.contains("WARNING: --message-log off"),
        "{}",
        up.banner
    );
    assert!(!up.banner.contains("evidence.asice"), "{}", up.banner);

    // An exchange through both security servers still works.
    let cp = up.get("/client_proxy_url");
    let r = http(
        "GET",
        &format!("{cp}/r1/DEV/GOV/1002/registry/persons/{PERSON}"),
        &[("X-Road-Client", CONSUMER)],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["family_name"], "Maasikas");
    assert!(r.header("x-road-request-hash").is_some(), "{:?}", r.headers);

    let auditor_key = format!("Bearer {}", up.get("/api_keys/auditor"));
    for ss in 0..2 {
        // Nothing under the message-log directory: it is not even created.
        let log_dir = message_log_dir(&up, ss);
        assert!(
            log_dir.parent().unwrap().is_dir(),
            "{} exists",
            log_dir.parent().unwrap().display()
        );
        assert!(!log_dir.exists(), "{} was created", log_dir.display());

        // The auditor API says why there is nothing, instead of an empty search.
        let auditor = up.get(&format!("/security_servers/{ss}/auditor_url"));
        let r = http(
            "GET",
            &format!("{auditor}/records"),
            &[("Authorization", &auditor_key)],
            b"",
        )
        .unwrap();
        assert_eq!(r.status, 503, "{}", r.text());
        assert_eq!(r.json()["code"], "message_log_disabled", "{}", r.text());

        // /diagnostics, the admin API's diagnostics and /metrics show it.
        let admin = up.get(&format!("/security_servers/{ss}/admin_url"));
        let r = http("GET", &format!("{admin}/diagnostics"), &[], b"").unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["message_log"]["enabled"], false, "{}", r.text());
        assert!(
            r.json()["message_log"]["warning"]
                .as_str()
                .unwrap()
                .contains("cannot be proven"),
            "{}",
            r.text()
        );
        let code = ["ss1", "ss2"][ss];
        let key = format!(
            "Bearer {}",
            up.get(&format!("/api_keys/security_servers/{code}"))
        );
        let api = up.get(&format!("/security_servers/{ss}/admin_api_url"));
        let r = http(
            "GET",
            &format!("{api}/diagnostics"),
            &[("Authorization", &key)],
            b"",
        )
        .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["message_log"]["enabled"], false, "{}", r.text());
        let r = http("GET", &format!("{admin}/metrics"), &[], b"").unwrap();
        assert_eq!(r.status, 200);
        assert!(
            r.text()
                .lines()
                .any(|l| l == "trustbus_ss_message_log_enabled 0"),
            "{}",
            r.text()
        );
    }
    // The servers said so loudly at start.
    let logs = PathBuf::from(up.get("/files/logs"));
    for code in ["ss1", "ss2"] {
        let text = std::fs::read_to_string(logs.join(format!("{code}.log"))).unwrap();
        assert!(text.contains("MESSAGE LOG SWITCHED OFF"), "{code}: {text}");
    }
    assert!(up.stop("TERM"), "trustbus up stops cleanly");
}
