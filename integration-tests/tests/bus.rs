//! The whole bus, end to end: `trustbus up` (development CA/OCSP/TSA, central server, two
//! security servers, example services, example OpenID provider) as real processes on loopback
//! with real TLS between the servers, driven the way a newcomer and an operator use it.
//!
//! One instance serves the steps in order, because starting one costs seconds; destructive
//! steps (revocation, expiry) come last.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use trustbus_integration_tests::{
    Guard, Resp, Up, alive, eventually, free_port, http, operator_guide_blocks, path_with_binaries,
};
use trustbus_sdk::identity::{IdTokenVerifier, JwkSet, TrustedIssuer, VerifyOptions};

const CONSUMER: &str = "DEV/GOV/1001/tax-portal";
const PERSON: &str = "38001085718";

/// The `X-Road-Error` code of a bus error response (REST).
fn bus_error(r: &Resp) -> String {
    match r.header("x-road-error") {
        Some(code) => code.to_owned(),
        None => format!("(no X-Road-Error; HTTP {}: {})", r.status, r.text()),
    }
}

fn rest(client_proxy: &str, client: &str, path: &str) -> Resp {
    http(
        "GET",
        &format!("{client_proxy}/r1/{path}"),
        &[("X-Road-Client", client)],
        b"",
    )
    .unwrap()
}

/// The printed curl commands work as printed.
fn printed_commands_work(up: &Up) {
    let curls: Vec<&str> = up
        .banner
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("curl ") && !l.contains("/api/v1/audit/"))
        .collect();
    assert_eq!(curls.len(), 2, "two exchange commands in:\n{}", up.banner);
    for c in curls {
        let out = Command::new("sh").args(["-c", c]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{c}: {out:?}");
        assert!(text.contains("Maasikas"), "{c} answered: {text}");
    }
    // The third: export the first exchange's evidence through the auditor API and verify it.
    let evidence = up
        .banner
        .lines()
        .map(str::trim)
        .find(|l| l.contains(" verify evidence.asice "))
        .expect("an evidence export and verify command");
    assert!(
        evidence.starts_with("curl -sf -H @") && evidence.contains("/api/v1/audit/records/"),
        "{evidence}"
    );
    let cwd = tempfile::tempdir().unwrap();
    let out = Command::new("sh")
        .args(["-c", evidence])
        .current_dir(cwd.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{evidence}: {out:?}");
    assert!(
        text.ends_with("VALID: every check passed\n"),
        "{evidence}: {text}"
    );
}

/// A GET of the auditor API of security server `ss` (0: consumer, 1: provider).
fn auditor_get(up: &Up, ss: usize, path: &str, key: &str) -> Resp {
    let base = up.get(&format!("/security_servers/{ss}/auditor_url"));
    let auth = format!("Bearer {key}");
    http(
        "GET",
        &format!("{base}{path}"),
        &[("Authorization", &auth)],
        b"",
    )
    .unwrap()
}

/// The log records of request `rid` on security server `ss`, once all are timestamped:
/// `(id, kind)` in id order.
fn timestamped_records(up: &Up, ss: usize, rid: &str) -> Vec<(u64, String)> {
    let key = up.get("/api_keys/auditor");
    eventually(Duration::from_secs(60), "records timestamped", || {
        let r = auditor_get(up, ss, &format!("/records?request_id={rid}"), &key);
        if r.status != 200 {
            return Err(format!("HTTP {}: {}", r.status, r.text()));
        }
        let v = r.json();
        let recs = v["records"].as_array().cloned().unwrap_or_default();
        if recs.len() < 2 || recs.iter().any(|x| x["timestamped"] != true) {
            return Err(format!("not yet: {v}"));
        }
        Ok(recs
            .iter()
            .map(|x| {
                (
                    x["id"].as_u64().unwrap(),
                    x["kind"].as_str().unwrap().to_owned(),
                )
            })
            .collect())
    })
}

/// `trustbus verify FILE --conf CONF`: exit success and the output.
fn trustbus_verify(file: &std::path::Path, conf: &std::path::Path) -> (bool, String) {
    let out = Command::new(trustbus_integration_tests::bin_dir().join("trustbus"))
        .arg("verify")
        .arg(file)
        .arg("--conf")
        .arg(conf)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The ```sh block after `<!-- auditor-guide-test: NAME -->` in docs/auditor-guide.md.
fn guide_block(name: &str) -> String {
    let guide = std::fs::read_to_string(
        trustbus_integration_tests::workspace_root().join("docs/auditor-guide.md"),
    )
    .unwrap();
    let marker = format!("<!-- auditor-guide-test: {name} -->");
    let after = &guide[guide.find(&marker).expect("marker in the guide") + marker.len()..];
    let start = after.find("```sh\n").unwrap() + 6;
    let end = after[start..].find("\n```").unwrap();
    after[start..start + end].to_owned()
}

/// A copy of an evidence container with one byte of one data file flipped (the zip stays
/// well-formed, so only the manifest digest can tell).
fn flip_byte(container: &[u8], file: &str) -> Vec<u8> {
    use trustbus_pki::asic::{AsicContainer, AsicLimits, MIMETYPE, write_unchecked_zip};
    let c = AsicContainer::read(container, &AsicLimits::default()).unwrap();
    let mut entries = vec![("mimetype".to_owned(), MIMETYPE.as_bytes().to_vec())];
    for f in &c.data_files {
        let mut data = f.data.clone();
        if f.name == file {
            data[0] ^= 0x01;
        }
        entries.push((f.name.clone(), data));
    }
    entries.push(("META-INF/ASiCManifest.xml".into(), c.manifest.clone()));
    entries.push(("META-INF/signature001.p7s".into(), c.signature.clone()));
    entries.extend(c.meta_inf.iter().cloned());
    write_unchecked_zip(&entries).unwrap()
}

/// The evidence of one real exchange, exported through the auditor API of both security
/// servers, verifies with `trustbus verify` and with the guide's openssl recipe; a flipped
/// byte is named; the roles are kept apart; and every auditor query is in the trail.
fn evidence_through_auditor_api(up: &Up, work: &std::path::Path) {
    let cp = up.get("/client_proxy_url");
    let r = rest(
        &cp,
        CONSUMER,
        &format!("DEV/GOV/1002/registry/persons/{PERSON}"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let rid = r.header("x-road-request-id").unwrap().to_owned();
    let key = up.get("/api_keys/auditor");
    std::fs::create_dir_all(work).unwrap();
    let mut exported = Vec::new();
    for (ss, kinds) in [
        (0, ["request_sent", "response_received"]),
        (1, ["request_received", "response_sent"]),
    ] {
        let records = timestamped_records(up, ss, &rid);
        let got: Vec<&str> = records.iter().map(|(_, k)| k.as_str()).collect();
        assert_eq!(got, kinds, "server {ss}");
        let conf = auditor_get(up, ss, "/verificationconf", &key);
        assert_eq!(conf.status, 200, "{}", conf.text());
        assert_eq!(conf.header("content-type"), Some("application/zip"));
        let conf_path = work.join(format!("verificationconf-{ss}.zip"));
        std::fs::write(&conf_path, &conf.body).unwrap();
        for (id, kind) in records {
            let r = auditor_get(up, ss, &format!("/records/{id}/evidence"), &key);
            assert_eq!(r.status, 200, "{}", r.text());
            assert_eq!(
                r.header("content-type"),
                Some("application/vnd.etsi.asic-e+zip")
            );
            let file = work.join(format!("ss{ss}-{kind}.asice"));
            std::fs::write(&file, &r.body).unwrap();
            let (ok, text) = trustbus_verify(&file, &conf_path);
            assert!(ok, "{kind} on server {ss}: {text}");
            assert!(text.ends_with("VALID: every check passed\n"), "{text}");
            exported.push((file, conf_path.clone()));
        }
        // The whole exchange as one zip, too.
        let r = auditor_get(up, ss, &format!("/exchanges/{rid}/evidence"), &key);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("content-type"), Some("application/zip"));
    }

    // The guide's recipes, run exactly as written, on the request the consumer sent and the
    // response the provider sent.
    let path = path_with_binaries();
    for (file, conf) in [&exported[0], &exported[3]] {
        let dir = work.join(format!(
            "guide-{}",
            file.file_stem().unwrap().to_string_lossy()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(file, dir.join("evidence.asice")).unwrap();
        std::fs::copy(conf, dir.join("verificationconf.zip")).unwrap();
        for block in ["trustbus", "openssl"] {
            let out = Command::new("bash")
                .args(["-euo", "pipefail", "-c", &guide_block(block)])
                .env("PATH", &path)
                .current_dir(&dir)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "guide block {block} on {}:\n{}\n{}",
                file.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    // One flipped byte of the payload: exit 1, the manifest digest named.
    let (file, conf) = &exported[0];
    let bad = work.join("tampered.asice");
    std::fs::write(
        &bad,
        flip_byte(&std::fs::read(file).unwrap(), "payload-head"),
    )
    .unwrap();
    let (ok, text) = trustbus_verify(&bad, conf);
    assert!(!ok, "{text}");
    assert_eq!(
        text.lines().last(),
        Some(
            "INVALID: manifest digests failed: digest of \"payload-head\" does not match the manifest"
        ),
        "{text}"
    );

    // Roles: the admin key may not use the auditor API, the auditor key not the admin API.
    let admin_key = up.get("/api_keys/security_servers/ss1");
    let r = auditor_get(up, 0, "/records?limit=1", &admin_key);
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["code"], "forbidden");
    let r = auditor_get(up, 0, "/records?limit=1", "not-a-key");
    assert_eq!(r.status, 401, "{}", r.text());
    let ss1_admin = up.get("/security_servers/0/admin_api_url");
    let r = http(
        "GET",
        &format!("{ss1_admin}/server"),
        &[("Authorization", &format!("Bearer {key}"))],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["code"], "forbidden");

    // Every auditor query, refused ones too, is in the consumer's hash-chained trail.
    let trail =
        std::fs::read_to_string(up.dir.join("ss1/data/messagelog/auditor-trail.jsonl")).unwrap();
    let entries: Vec<serde_json::Value> = trail
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for w in entries.windows(2) {
        assert_eq!(w[1]["prev"], w[0]["hash"], "the trail is chained");
    }
    let last = &entries[entries.len() - 1];
    assert_eq!(last["action"], "search");
    assert_eq!(last["status"], 401);
    assert_eq!(last["actor"], "anonymous");
    let refused = &entries[entries.len() - 2];
    assert_eq!(refused["status"], 403);
    assert!(
        refused["actor"]
            .as_str()
            .unwrap()
            .ends_with("(system-administrator)"),
        "{refused}"
    );
    let exports: Vec<&serde_json::Value> = entries
        .iter()
        .filter(|e| e["action"] == "export_record" && e["status"] == 200)
        .collect();
    assert!(exports.len() >= 3, "the banner's export and ours: {trail}");
    assert!(
        exports
            .iter()
            .all(|e| e["actor"].as_str().unwrap().starts_with("api-key#2:")),
        "{trail}"
    );
    assert!(
        entries
            .iter()
            .any(|e| e["action"] == "export_exchange" && e["target"] == rid.as_str()),
        "{trail}"
    );
}

/// Replaces the approved TSA's URL in global configuration (through the central server's admin
/// API) and waits for the central server to publish it.
fn set_tsa_url(up: &Up, url: &str) {
    let admin = up.get("/central_server/admin_api_url");
    let key = format!("Bearer {}", up.get("/api_keys/central_admin"));
    let list = http(
        "GET",
        &format!("{admin}/tsas"),
        &[("Authorization", &key)],
        b"",
    )
    .unwrap();
    assert_eq!(list.status, 200, "{}", list.text());
    let mut tsa = list.json()[0].clone();
    let name = tsa["name"].as_str().unwrap().replace(' ', "%20");
    let r = http(
        "DELETE",
        &format!("{admin}/tsas/{name}"),
        &[("Authorization", &key)],
        b"",
    )
    .unwrap();
    assert!(r.status < 300, "{} {}", r.status, r.text());
    tsa["url"] = serde_json::Value::String(url.to_owned());
    let r = http(
        "POST",
        &format!("{admin}/tsas"),
        &[
            ("Authorization", &key),
            ("Content-Type", "application/json"),
        ],
        tsa.to_string().as_bytes(),
    )
    .unwrap();
    assert!(r.status < 300, "{} {}", r.status, r.text());
    let _ = http(
        "POST",
        &format!("{admin}/globalconf/regenerate"),
        &[("Authorization", &key)],
        b"",
    );
}

/// The TSA goes away: exchanges continue inside the failure window (20 s in this run), are
/// refused with `TimestamperFailed` after it, and once the TSA is back they flow again and the
/// backlog is timestamped.
fn tsa_outage(up: &Up) {
    let admin = up.get("/central_server/admin_api_url");
    let key = format!("Bearer {}", up.get("/api_keys/central_observer"));
    let list = http(
        "GET",
        &format!("{admin}/tsas"),
        &[("Authorization", &key)],
        b"",
    )
    .unwrap();
    let tsa_url = list.json()[0]["url"].as_str().unwrap().to_owned();
    let log = up.dir.join("logs/ss1.log");
    let failures = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .matches("message log timestamping failed")
            .count()
    };
    let before = failures();
    let t0 = Instant::now();
    let cp = up.get("/client_proxy_url");
    let path = format!("DEV/GOV/1002/registry/persons/{PERSON}");
    // A loopback port nobody listens on: the TSA is unreachable.
    set_tsa_url(up, &format!("http://127.0.0.1:{}/tsa", free_port()));
    eventually(
        Duration::from_secs(60),
        "the consumer's timestamping fails",
        || {
            if failures() > before {
                Ok(())
            } else {
                // A round only calls the TSA when records are pending (the development
                // instance timestamps every second): keep exchanging until the security
                // server has the new configuration and its round fails.
                let _ = rest(&cp, CONSUMER, &path);
                Err("no failure logged yet".into())
            }
        },
    );
    // Inside the window: still served, and logged.
    let r = rest(&cp, CONSUMER, &path);
    assert_eq!(r.status, 200, "inside the window: {}", r.text());
    let backlog = r.header("x-road-request-id").unwrap().to_owned();
    // After it: refused by the consumer's security server (the provider's may refuse first).
    let code = eventually(
        Duration::from_secs(60),
        "TimestamperFailed",
        || match bus_error(&rest(&cp, CONSUMER, &path)) {
            c if c == "Server.ClientProxy.LoggingFailed.TimestamperFailed" => Ok(c),
            c => Err(c),
        },
    );
    assert_eq!(code, "Server.ClientProxy.LoggingFailed.TimestamperFailed");
    eprintln!(
        "TSA outage: refused with TimestamperFailed after {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    set_tsa_url(up, &tsa_url);
    eventually(
        Duration::from_secs(60),
        "exchanges after the TSA returns",
        || {
            let r = rest(&cp, CONSUMER, &path);
            if r.status == 200 {
                Ok(())
            } else {
                Err(bus_error(&r))
            }
        },
    );
    // The exchange made during the outage is timestamped now and its evidence verifies.
    let records = timestamped_records(up, 0, &backlog);
    let key = up.get("/api_keys/auditor");
    let r = auditor_get(up, 0, &format!("/records/{}/evidence", records[0].0), &key);
    assert_eq!(r.status, 200, "{}", r.text());
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("backlog.asice");
    std::fs::write(&file, &r.body).unwrap();
    let (ok, text) = trustbus_verify(
        &file,
        &std::path::PathBuf::from(up.get("/files/verification_config")),
    );
    assert!(ok, "{text}");
    eprintln!(
        "TSA outage: backlog timestamped and verified after {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

fn rest_and_soap(up: &Up) {
    let cp = up.get("/client_proxy_url");
    let r = rest(
        &cp,
        CONSUMER,
        &format!("DEV/GOV/1002/registry/persons/{PERSON}"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let person = r.json();
    assert_eq!(person["family_name"], "Maasikas");
    assert_eq!(
        person["requested_by"], CONSUMER,
        "the provider saw the verified client"
    );
    assert!(r.header("x-road-request-hash").is_some(), "{:?}", r.headers);
    assert!(r.header("x-road-id").is_some());

    let soap = std::fs::read(up.get("/files/soap_request")).unwrap();
    let r = http(
        "POST",
        &format!("{cp}/"),
        &[("Content-Type", "text/xml; charset=utf-8")],
        &soap,
    )
    .unwrap();
    let text = r.text();
    assert_eq!(r.status, 200, "{text}");
    assert!(
        text.contains("getPersonResponse") && text.contains("Maasikas"),
        "{text}"
    );
    assert!(text.contains("requestHash"), "{text}");

    // The echo service the benchmark uses returns exactly what it was sent.
    assert_eq!(
        up.get("/services/echo"),
        "DEV/GOV/1002/registry/echo",
        "endpoints.json names the echo service"
    );
    let body: Vec<u8> = (0..1024u32).map(|i| (i % 251) as u8).collect();
    let r = http(
        "POST",
        &format!("{cp}/r1/DEV/GOV/1002/registry/echo"),
        &[
            ("X-Road-Client", CONSUMER),
            ("Content-Type", "application/octet-stream"),
        ],
        &body,
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body, body, "echoed byte for byte");
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    assert!(r.header("x-road-request-hash").is_some(), "{:?}", r.headers);

    // Default deny: statistics is not granted to anyone.
    let r = rest(&cp, CONSUMER, "DEV/GOV/1002/registry/statistics");
    assert_eq!(
        bus_error(&r),
        "Server.ServerProxy.AccessDenied",
        "{}",
        r.text()
    );
    // A client the consumer's server does not host.
    let r = rest(
        &cp,
        "DEV/COM/12345678/erp",
        &format!("DEV/GOV/1002/registry/persons/{PERSON}"),
    );
    assert!(r.status >= 400, "{}", r.text());
}

/// The admin APIs answer with the keys from endpoints.json.
fn admin_apis(up: &Up) {
    let central = up.get("/central_server/admin_api_url");
    let key = format!("Bearer {}", up.get("/api_keys/central_observer"));
    let r = http(
        "GET",
        &format!("{central}/security-servers"),
        &[("Authorization", &key)],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    for id in ["DEV/GOV/1001/ss1", "DEV/GOV/1002/ss2"] {
        assert!(r.text().contains(id), "{id} registered: {}", r.text());
    }
    let ss1 = up.get("/security_servers/0/admin_api_url");
    let key = format!("Bearer {}", up.get("/api_keys/security_servers/ss1"));
    let r = http(
        "GET",
        &format!("{ss1}/server"),
        &[("Authorization", &key)],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let r = http("GET", &format!("{ss1}/server"), &[], b"").unwrap();
    assert_eq!(r.status, 401, "{}", r.text());
}

/// docs/endpoints.md "Reading it", executed as written from the directory holding
/// `trustbus-dev/`: the client proxy URL, the registered security servers, auditor records.
fn endpoints_doc(up: &Up, cwd: &std::path::Path) {
    let script = trustbus_integration_tests::doc_blocks("endpoints.md", "endpoints").join("\n");
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .env("PATH", path_with_binaries())
        .current_dir(cwd)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cp = up.get("/client_proxy_url");
    assert!(text.starts_with(&format!("{cp}\n")), "{text}");
    for id in ["DEV/GOV/1001/ss1", "DEV/GOV/1002/ss2"] {
        assert!(text.contains(id), "{id} listed: {text}");
    }
    assert!(text.contains("\"request_sent\""), "auditor records: {text}");
}

/// docs/operator-guide.md §4, executed as written against the running instance (from the
/// directory holding `trustbus-dev/`): access to `statistics` is denied, granted, revoked;
/// then a new service is published for a local group, disabled and enabled, a client added
/// and the diagnostics run.
fn operator_guide_access(up: &Up, cwd: &std::path::Path) {
    assert_eq!(
        up.dir,
        cwd.join("trustbus-dev"),
        "the guide names the directory"
    );
    let prelude = operator_guide_blocks("admin-env").join("\n");
    let run = |tag: &str| -> String {
        let script = format!("{prelude}\n{}", operator_guide_blocks(tag).join("\n"));
        let out = Command::new("bash")
            .args(["-euo", "pipefail", "-c", &script])
            .env("PATH", path_with_binaries())
            .env_remove("TRUSTBUS_ADMIN_URL")
            .env_remove("TRUSTBUS_ADMIN_API_KEY")
            .current_dir(cwd)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "guide block {tag}:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let cp = up.get("/client_proxy_url");
    let statistics = || rest(&cp, CONSUMER, "DEV/GOV/1002/registry/statistics");

    let text = run("access");
    // What the comments promise, in order: no grant, denied, granted and answered.
    let at = |needle: &str, from: usize| -> usize {
        text[from..]
            .find(needle)
            .map(|i| from + i)
            .unwrap_or_else(|| panic!("{needle:?} after byte {from} of:\n{text}"))
    };
    let listed = at("\"id\": \"DEV/GOV/1002/registry/statistics\"", 0);
    // `access list` prints no grant, then curl the refusal.
    let denied = at(
        "\n]\n[]\n{\"type\":\"Server.ServerProxy.AccessDenied\"",
        listed,
    );
    let granted = at("\"subject\": \"SUBSYSTEM:DEV/GOV/1001/tax-portal\"", denied);
    let answered = at("{\"population\":", granted);
    // `access revoke` prints the grants left: none.
    assert!(text[answered..].ends_with("}[]\n"), "{text}");
    // The revoke applies at once.
    assert_eq!(bus_error(&statistics()), "Server.ServerProxy.AccessDenied");

    let text = run("publish");
    assert!(
        text.contains("\"family_name\":\"Maasikas\""),
        "the person through the new service:\n{text}"
    );
    for promised in [
        "\"disabled_notice\": \"upgrade until 14:00\",\n  \"enabled\": false",
        "\"connection\": \"https-auth\"",
        "\"peer_certificate\": \"C=DEV, O=Ministry of Finance, businessCategory=GOV, serialNumber=1001, CN=ss1\"",
        "\"name\": \"Trustbus development TSA\",\n      \"ok\": true",
    ] {
        assert!(text.contains(promised), "{promised:?} in:\n{text}");
    }
    let r = rest(
        &cp,
        CONSUMER,
        &format!("DEV/GOV/1002/registry/people/{PERSON}"),
    );
    assert_eq!(r.status, 200, "enabled again: {}", r.text());
    let key = format!("Bearer {}", up.get("/api_keys/security_servers/ss2"));
    let ss2 = up.get("/security_servers/1/admin_api_url");
    let r = http(
        "GET",
        &format!("{ss2}/clients"),
        &[("Authorization", &key)],
        b"",
    )
    .unwrap();
    assert!(r.text().contains("DEV/GOV/1002/archive"), "{}", r.text());
}

/// Logs the citizen in at the example OpenID provider (authorization code + PKCE), verifies
/// the ID token the way the bus does, and calls the citizen service with it.
fn g2c(up: &Up) {
    let issuer = up.get("/oidc_issuer");
    let secret = up.get("/oidc_client/client_secret");
    let redirect = up.get("/oidc_client/redirect_uri");
    let disc = http(
        "GET",
        &format!("{issuer}/.well-known/openid-configuration"),
        &[],
        b"",
    )
    .unwrap()
    .json();
    assert_eq!(disc["issuer"], issuer.as_str());

    let verifier = "a-pkce-code-verifier-of-enough-length-0123456789";
    let challenge = URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        verifier.as_bytes(),
    ));
    let r = http(
        "GET",
        &format!(
            "{issuer}/authorize?response_type=code&client_id=citizen-portal&redirect_uri={}\
             &scope=openid&state=s1&nonce=n1&code_challenge={challenge}\
             &code_challenge_method=S256&acr_values=substantial",
            redirect.replace(':', "%3A").replace('/', "%2F")
        ),
        &[],
        b"",
    )
    .unwrap();
    assert!((300..400).contains(&r.status), "{} {}", r.status, r.text());
    let location = r.header("location").unwrap().to_owned();
    assert!(
        location.starts_with(&redirect) && location.ends_with("&state=s1"),
        "{location}"
    );
    let code = location
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("code="))
        .unwrap()
        .to_owned();
    let form = format!(
        "grant_type=authorization_code&code={code}&redirect_uri={}&code_verifier={verifier}",
        redirect.replace(':', "%3A").replace('/', "%2F")
    );
    let basic = STANDARD.encode(format!("citizen-portal:{secret}"));
    let auth = format!("Basic {basic}");
    let token = http(
        "POST",
        &format!("{issuer}/token"),
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Authorization", &auth),
        ],
        form.as_bytes(),
    )
    .unwrap();
    assert_eq!(token.status, 200, "{}", token.text());
    let id_token = token.json()["id_token"].as_str().unwrap().to_owned();

    // The same verifier (and rules) as the bus uses for trusted issuers.
    let jwks = http("GET", &format!("{issuer}/jwks"), &[], b"").unwrap();
    let set = JwkSet::parse(&jwks.body).unwrap();
    let v = IdTokenVerifier::new(vec![
        TrustedIssuer::with_pinned_keys(&issuer, vec!["citizen-portal".into()], set)
            .acr_levels(["low", "substantial", "high"])
            .min_acr("substantial"),
    ]);
    let now = i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap();
    let id = v
        .verify_cached(
            &id_token,
            &VerifyOptions {
                nonce: Some("n1"),
                ..VerifyOptions::default()
            },
            now,
        )
        .unwrap();
    assert_eq!(id.subject, "EE38001085718");
    assert_eq!(id.acr.as_deref(), Some("substantial"));
    // A code is single use.
    let again = http(
        "POST",
        &format!("{issuer}/token"),
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Authorization", &auth),
        ],
        form.as_bytes(),
    )
    .unwrap();
    assert_eq!(again.status, 400);

    // Through the bus with the ID token: the consumer's security server verifies it and signs
    // the subject in; the citizen service (VerifiedUser) answers with that citizen's records.
    let cp = up.get("/client_proxy_url");
    let records = format!("{cp}/r1/DEV/GOV/1002/registry/citizen/my-records");
    let r = http(
        "GET",
        &records,
        &[
            ("X-Road-Client", CONSUMER),
            ("Trustbus-Id-Token", &id_token),
        ],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["subject"], "EE38001085718", "{}", r.text());

    // Without a token, or with a user id the portal merely asserts, the provider's security
    // server refuses: the service requires a verified citizen.
    for headers in [
        vec![("X-Road-Client", CONSUMER)],
        vec![
            ("X-Road-Client", CONSUMER),
            ("X-Road-UserId", "EE38001085718"),
            ("Trustbus-User-Verified", "true"),
        ],
    ] {
        let r = http("GET", &records, &headers, b"").unwrap();
        assert_eq!(bus_error(&r), "Client.InvalidUserIdentity", "{headers:?}");
    }
    // A token whose signature does not verify is refused by the consumer's security server.
    let (head, sig) = id_token.rsplit_once('.').unwrap();
    let flipped = if sig.starts_with('A') { "B" } else { "A" };
    let tampered = format!("{head}.{flipped}{}", &sig[1..]);
    let r = http(
        "GET",
        &records,
        &[
            ("X-Road-Client", CONSUMER),
            ("Trustbus-Id-Token", &tampered),
        ],
        b"",
    )
    .unwrap();
    assert_eq!(bus_error(&r), "Client.InvalidUserIdentity");
    assert!(r.text().contains("invalid_signature"), "{}", r.text());
}

/// docs/operator-guide.md §3, executed as written: a third security server from scratch.
fn third_server(up: &Up, work: &std::path::Path) -> Guard {
    let env = [
        ("DEV", up.dir.to_string_lossy().into_owned()),
        ("SS3_CLIENT_PROXY", format!("127.0.0.1:{}", free_port())),
        ("SS3_SERVER_PROXY", format!("127.0.0.1:{}", free_port())),
        ("SS3_ADMIN", format!("127.0.0.1:{}", free_port())),
        ("PATH", path_with_binaries()),
    ];
    let prelude = operator_guide_blocks("ss3-env").join("\n");
    let sh = |script: &str| {
        let mut c = Command::new("bash");
        c.current_dir(work)
            .args(["-euo", "pipefail", "-c", &format!("{prelude}\n{script}")])
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        c
    };
    for block in operator_guide_blocks("ss3-setup") {
        let out = sh(&block).output().unwrap();
        assert!(
            out.status.success(),
            "{block}\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let serve = operator_guide_blocks("ss3-serve").join("\n");
    let log = std::fs::File::create(work.join("ss3.log")).unwrap();
    let guard = Guard(
        sh(&format!("exec {serve}"))
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap(),
    );
    let check = operator_guide_blocks("ss3-check").join("\n");
    eventually(
        Duration::from_secs(45),
        "the documented call through ss3",
        || {
            let out = sh(&check).output().map_err(|e| e.to_string())?;
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            if text.contains("Maasikas") {
                Ok(())
            } else {
                Err(format!(
                    "{text} {}",
                    std::fs::read_to_string(work.join("ss3.log")).unwrap_or_default()
                ))
            }
        },
    );
    guard
}

/// Revoking ss3's signing certificate with `trustbus pki revoke` stops its exchanges.
fn revoked_certificate(up: &Up, work: &std::path::Path, ss3_client_proxy: &str) {
    let out = Command::new(trustbus_integration_tests::bin_dir().join("trustbus"))
        .args(["pki", "revoke", "--dir"])
        .arg(up.get("/files/pki_dir"))
        .arg("--cert")
        .arg(work.join("ss3/sign.pem"))
        .args(["--reason", "keyCompromise"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let code = eventually(
        Duration::from_secs(15),
        "ss3 refused after revocation",
        || {
            let r = http(
                "GET",
                &format!("http://{ss3_client_proxy}/r1/DEV/GOV/1002/registry/persons/{PERSON}"),
                &[("X-Road-Client", "DEV/COM/12345678/erp")],
                b"",
            )?;
            if r.status == 200 {
                Err("still answered".into())
            } else {
                Ok(bus_error(&r))
            }
        },
    );
    // ss3's own OCSP refresh sees the revocation first, and it refuses to sign with a
    // certificate whose status is not good.
    assert_eq!(
        code,
        "Server.ClientProxy.CannotCreateSignature.CertValidation"
    );
}

/// With the central server gone, configuration expires and the bus fails closed.
fn expired_configuration(up: &Up) {
    let admin = up.get("/central_server/admin_api_url");
    let key = format!("Bearer {}", up.get("/api_keys/central_admin"));
    let settings = serde_json::json!({
        "ocsp_freshness_seconds": 20,
        "timestamping_interval_seconds": 10,
        "configuration_validity_seconds": 4
    });
    let r = http(
        "PUT",
        &format!("{admin}/settings"),
        &[
            ("Authorization", &key),
            ("Content-Type", "application/json"),
        ],
        settings.to_string().as_bytes(),
    )
    .unwrap();
    assert!(r.status < 300, "{} {}", r.status, r.text());
    // Let the security servers fetch a version with the short validity, then stop the
    // central server and wait for that version to expire.
    std::thread::sleep(Duration::from_secs(3));
    let cs = up.pid("central-server");
    trustbus_integration_tests::signal(cs, "TERM");
    let cp = up.get("/client_proxy_url");
    let code = eventually(Duration::from_secs(15), "fail closed", || {
        let r = rest(
            &cp,
            CONSUMER,
            &format!("DEV/GOV/1002/registry/persons/{PERSON}"),
        );
        match bus_error(&r) {
            c if c == "Server.ClientProxy.OutdatedGlobalConf" => Ok(c),
            c => Err(c),
        }
    });
    assert_eq!(code, "Server.ClientProxy.OutdatedGlobalConf");
}

#[test]
fn development_instance_end_to_end() {
    assert!(
        trustbus_integration_tests::security_server_available(),
        "the security-server binary found has no init/register/serve commands: it is not this \
         workspace's build (see integration-tests/README.md on finding the binaries)"
    );
    let t0 = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("trustbus-dev");

    // First run: creates everything.
    let up = Up::start(&dir);
    eprintln!("first run ready in {:.1} s", up.ready_in.as_secs_f64());
    {
        use std::os::unix::fs::PermissionsExt;
        for f in ["endpoints.json", "state.json"] {
            let mode = std::fs::metadata(dir.join(f)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{f} holds secrets");
        }
    }
    printed_commands_work(&up);
    rest_and_soap(&up);
    admin_apis(&up);
    endpoints_doc(&up, tmp.path());
    operator_guide_access(&up, tmp.path());
    g2c(&up);
    evidence_through_auditor_api(&up, &tmp.path().join("evidence"));

    // Ctrl-C stops every child.
    let pids: Vec<u32> = ["central-server", "ss1", "ss2"]
        .iter()
        .map(|n| up.pid(n))
        .collect();
    let first_keys = up.endpoints["api_keys"].clone();
    let first_proxy = up.get("/client_proxy_url");
    assert!(up.stop("INT"), "trustbus up exits with success on Ctrl-C");
    for pid in pids {
        assert!(
            !alive(pid),
            "child {pid} still runs after trustbus up stopped"
        );
    }

    // Second run: reuses the directory (no new keys, same addresses); a short timestamping
    // failure window for the TSA outage below.
    let up = Up::start_with(&dir, &["--timestamping-failure-window", "20"]);
    eprintln!("second run ready in {:.1} s", up.ready_in.as_secs_f64());
    assert_eq!(up.endpoints["api_keys"], first_keys);
    assert_eq!(up.get("/client_proxy_url"), first_proxy);
    let setup_log = std::fs::read_to_string(dir.join("logs/setup.log")).unwrap();
    assert_eq!(
        setup_log.matches("central-server init").count(),
        1,
        "{setup_log}"
    );
    assert_eq!(
        setup_log.matches("security-server init").count(),
        2,
        "{setup_log}"
    );
    let cp = up.get("/client_proxy_url");
    let r = rest(
        &cp,
        CONSUMER,
        &format!("DEV/GOV/1002/registry/persons/{PERSON}"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    tsa_outage(&up);

    // A third security server by the operator guide, then its certificate revoked.
    let work = tmp.path().join("operator");
    std::fs::create_dir_all(&work).unwrap();
    let ss3 = third_server(&up, &work);
    let ss3_cp = std::fs::read_to_string(work.join("ss3/security-server.toml"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("client_proxy = \""))
        .map(|v| v.trim_end_matches('"').to_owned())
        .unwrap();
    revoked_certificate(&up, &work, &ss3_cp);
    drop(ss3);

    expired_configuration(&up);
    let ss_pids = [up.pid("ss1"), up.pid("ss2")];
    let instance = up.dir.clone();
    assert!(up.stop("TERM"), "trustbus up exits with success on SIGTERM");
    for pid in ss_pids {
        assert!(
            !alive(pid),
            "child {pid} still runs after trustbus up stopped"
        );
    }
    // A clean stop seals each journal: the last segment ends with a sync mark, without the
    // zero-filled space the open segment keeps ahead of its data (message-log.md §3).
    for ss in ["ss1", "ss2"] {
        let jdir = instance.join(ss).join("data/messagelog/journal");
        let mut segs: Vec<_> = std::fs::read_dir(&jdir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "seg"))
            .collect();
        segs.sort();
        let last = std::fs::read(segs.last().unwrap()).unwrap();
        assert!(last.len() > 56, "{ss}: {} bytes", last.len());
        assert_eq!(
            &last[last.len() - 56..last.len() - 48],
            b"STBSYNC1",
            "{ss}: the last segment does not end with a sync mark"
        );
    }
    eprintln!("end-to-end suite took {:.1} s", t0.elapsed().as_secs_f64());
}
