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
        .filter(|l| l.starts_with("curl "))
        .collect();
    assert_eq!(curls.len(), 2, "two curl commands in:\n{}", up.banner);
    for c in curls {
        let out = Command::new("sh").args(["-c", c]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{c}: {out:?}");
        assert!(text.contains("Maasikas"), "{c} answered: {text}");
    }
    let verify = up
        .banner
        .lines()
        .map(str::trim)
        .find(|l| l.contains(" verify-log "))
        .expect("a verify-log command");
    let out = Command::new("sh").args(["-c", verify]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{verify}: {out:?}");
    assert!(text.starts_with("VALID"), "{verify}: {text}");
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

    // Through the bus with the ID token. The citizen service answers only for an end user the
    // consumer's security server verified. Until the security server verifies
    // `Trustbus-Id-Token` (docs/security-server.md, "Not implemented yet"), the provider
    // refuses with Client.InvalidUserIdentity; once it does, the citizen's records come back.
    let cp = up.get("/client_proxy_url");
    let r = http(
        "GET",
        &format!("{cp}/r1/DEV/GOV/1002/registry/citizen/my-records"),
        &[
            ("X-Road-Client", CONSUMER),
            ("Trustbus-Id-Token", &id_token),
        ],
        b"",
    )
    .unwrap();
    if r.status == 200 {
        assert_eq!(r.json()["subject"], "EE38001085718", "{}", r.text());
    } else {
        assert!(
            r.text().contains("InvalidUserIdentity"),
            "{} {}",
            r.status,
            r.text()
        );
        eprintln!(
            "G2C: the security server does not verify ID tokens yet ({})",
            r.text()
        );
    }
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
    g2c(&up);

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

    // Second run: reuses the directory (no new keys, same addresses).
    let up = Up::start(&dir);
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
    assert!(up.stop("TERM"), "trustbus up exits with success on SIGTERM");
    for pid in ss_pids {
        assert!(
            !alive(pid),
            "child {pid} still runs after trustbus up stopped"
        );
    }
    eprintln!("end-to-end suite took {:.1} s", t0.elapsed().as_secs_f64());
}
