//! Crash test of the whole security server (issue #6): under concurrent load through a
//! `trustbus up` instance, the provider's and then the consumer's security server process is
//! killed with SIGKILL and started again. Every exchange a client saw answered (200) must be in
//! the killed server's message log (both of its records), and the journal's hash chain must
//! verify (`trustbus verify-log`) right after the kill.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use trustbus_integration_tests::{Guard, Up, alive, bin_dir, eventually, http, signal};

const CONSUMER: &str = "DEV/GOV/1001/tax-portal";
const PATH: &str = "r1/DEV/GOV/1002/registry/persons/38001085718";

/// Runs `threads` clients against the consumer's client proxy until `stop`; returns the
/// request ids of the exchanges answered with 200.
fn load(
    client_proxy: &str,
    threads: usize,
    stop: Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<Vec<String>>> {
    (0..threads)
        .map(|t| {
            let url = format!("{client_proxy}/{PATH}");
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let id = format!("crash-{t}-{n}");
                    match http(
                        "GET",
                        &url,
                        &[("X-Road-Client", CONSUMER), ("X-Road-Id", &id)],
                        b"",
                    ) {
                        Ok(r) if r.status == 200 => {
                            assert_eq!(r.header("x-road-id"), Some(id.as_str()));
                            acked.push(r.header("x-road-request-id").unwrap().to_owned());
                        }
                        // Refused or cut off while a server is down: not acknowledged.
                        _ => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
                acked
            })
        })
        .collect()
}

/// Every record kind per request id in the message log of security server `ss`, through its
/// auditor API (all pages).
fn logged(up: &Up, ss: usize) -> BTreeMap<String, BTreeSet<String>> {
    let base = up.get(&format!("/security_servers/{ss}/auditor_url"));
    let auth = format!("Bearer {}", up.get("/api_keys/auditor"));
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut after = String::new();
    loop {
        let r = http(
            "GET",
            &format!("{base}/records?limit=1000{after}"),
            &[("Authorization", &auth)],
            b"",
        )
        .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        for rec in v["records"].as_array().unwrap() {
            out.entry(rec["request_id"].as_str().unwrap().to_owned())
                .or_default()
                .insert(rec["kind"].as_str().unwrap().to_owned());
        }
        match v["next"].as_str() {
            Some(n) => after = format!("&after={n}"),
            None => return out,
        }
    }
}

/// `trustbus verify-log DIR`: the chain verifies.
fn verify_log(dir: &std::path::Path) {
    let out = Command::new(bin_dir().join("trustbus"))
        .arg("verify-log")
        .arg(dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}: {text}", dir.display());
    assert!(text.starts_with("VALID: "), "{text}");
}

/// Starts `security-server serve` for `code` as `trustbus up` does, and waits until healthy.
fn restart(up: &Up, ss: usize, code: &str) -> Guard {
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(up.dir.join("state.json")).unwrap()).unwrap();
    let pin = state["secrets"]["ss_pins"][code]
        .as_str()
        .unwrap()
        .to_owned();
    let log = std::fs::File::create(up.dir.join(format!("logs/{code}-restarted.log"))).unwrap();
    let guard = Guard(
        Command::new(bin_dir().join("security-server"))
            .args(["serve", "--config"])
            .arg(up.dir.join(code).join("security-server.toml"))
            .env("TRUSTBUS_SS_PIN", pin)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap(),
    );
    let healthz = up.get(&format!("/security_servers/{ss}/healthz_url"));
    eventually(
        Duration::from_secs(30),
        "restarted server healthy",
        || match http("GET", &healthz, &[], b"") {
            Ok(r) if r.status == 200 => Ok(()),
            Ok(r) => Err(r.text()),
            Err(e) => Err(e),
        },
    );
    guard
}

/// Loads the instance, kills server `ss` (`code`), verifies its journal, restarts it (with
/// `extra_config` appended to its configuration) and checks that every acknowledged exchange
/// is in its log.
fn kill_under_load(up: &Up, ss: usize, code: &str, kinds: [&str; 2], extra_config: &str) -> Guard {
    let cp = up.get("/client_proxy_url");
    let stop = Arc::new(AtomicBool::new(false));
    let workers = load(&cp, 6, stop.clone());
    std::thread::sleep(Duration::from_secs(3));
    let pid = up.pid(code);
    signal(pid, "KILL");
    eventually(Duration::from_secs(5), "killed", || {
        if alive(pid) {
            Err("still alive".into())
        } else {
            Ok(())
        }
    });
    // Let the clients see the failures for a moment, then stop them.
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    let acked: Vec<String> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    assert!(
        acked.len() >= 20,
        "only {} exchanges under load before the kill",
        acked.len()
    );
    eprintln!(
        "{code}: {} exchanges acknowledged before SIGKILL",
        acked.len()
    );
    verify_log(&up.dir.join(code).join("data/messagelog"));

    if !extra_config.is_empty() {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(up.dir.join(code).join("security-server.toml"))
            .unwrap();
        f.write_all(extra_config.as_bytes()).unwrap();
    }
    let guard = restart(up, ss, code);
    let log = logged(up, ss);
    let want: BTreeSet<String> = kinds.iter().map(|k| (*k).to_owned()).collect();
    let missing: Vec<&String> = acked
        .iter()
        .filter(|rid| log.get(*rid) != Some(&want))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged exchanges are not fully in {code}'s log, e.g. {:?}: {:?}",
        missing.len(),
        acked.len(),
        missing[..missing.len().min(3)].to_vec(),
        missing.first().and_then(|m| log.get(*m))
    );
    // The restarted server serves again.
    eventually(
        Duration::from_secs(30),
        "exchanges after restart",
        || match http(
            "GET",
            &format!("{cp}/{PATH}"),
            &[("X-Road-Client", CONSUMER)],
            b"",
        ) {
            Ok(r) if r.status == 200 => Ok(()),
            Ok(r) => Err(r.text()),
            Err(e) => Err(e),
        },
    );
    guard
}

#[test]
fn sigkill_of_either_security_server_loses_no_acknowledged_exchange() {
    assert!(
        trustbus_integration_tests::security_server_available(),
        "the security-server binary found is not this workspace's build"
    );
    let tmp = tempfile::tempdir().unwrap();
    let up = Up::start(&tmp.path().join("trustbus-dev"));
    // The provider comes back with payload encryption at rest and relaxed durability, which
    // the [message_log] section of its configuration turns on.
    let ss2 = kill_under_load(
        &up,
        1,
        "ss2",
        ["request_received", "response_sent"],
        "\n[message_log]\ndurability = \"relaxed\"\nrelaxed_max_delay_ms = 5\nencrypt_payloads = true\n",
    );
    encrypted_at_rest(&up);
    // And once more with archiving on: the server archives by itself, and the archive verifies.
    drop(ss2);
    let _ss2 = archived(&up);
    let _ss1 = kill_under_load(&up, 0, "ss1", ["request_sent", "response_received"], "");
}

/// The restarted provider said what relaxed durability risks, keeps its payload key in the
/// token, and exports the evidence of a new (encrypted) record that verifies.
fn encrypted_at_rest(up: &Up) {
    let log = std::fs::read_to_string(up.dir.join("logs/ss2-restarted.log")).unwrap();
    assert!(
        log.contains("message log durability is relaxed") && log.contains("last 5 ms"),
        "{log}"
    );
    assert!(log.contains("created the message-log payload key"), "{log}");
    assert!(
        up.dir
            .join("ss2/data/token/msglog-payload.key.json")
            .is_file()
    );
    let cp = up.get("/client_proxy_url");
    let r = http(
        "GET",
        &format!("{cp}/{PATH}"),
        &[("X-Road-Client", CONSUMER)],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let rid = r.header("x-road-request-id").unwrap().to_owned();
    let base = up.get("/security_servers/1/auditor_url");
    let auth = format!("Bearer {}", up.get("/api_keys/auditor"));
    let id = eventually(Duration::from_secs(60), "timestamped", || {
        let r = http(
            "GET",
            &format!("{base}/records?request_id={rid}"),
            &[("Authorization", &auth)],
            b"",
        )?;
        let v = r.json();
        match v["records"].as_array().and_then(|a| a.first()) {
            Some(rec) if rec["timestamped"] == true => Ok(rec["id"].as_u64().unwrap()),
            _ => Err(v.to_string()),
        }
    });
    let r = http(
        "GET",
        &format!("{base}/records/{id}/evidence"),
        &[("Authorization", &auth)],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let c = trustbus_pki::asic::AsicContainer::read(
        &r.body,
        &trustbus_pki::asic::AsicLimits::default(),
    )
    .unwrap();
    assert!(
        c.meta_inf.iter().any(|(n, _)| n == "META-INF/payload.enc"),
        "an encrypted record carries its ciphertext"
    );
    let file = up.dir.join("encrypted.asice");
    std::fs::write(&file, &r.body).unwrap();
    let out = Command::new(bin_dir().join("trustbus"))
        .arg("verify")
        .arg(&file)
        .arg("--conf")
        .arg(up.get("/files/verification_config"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
}

/// Restarts the provider with `[message_log.archive]` (everything timestamped is due, a round
/// every second); its archive file appears and `trustbus verify-archive` accepts it. It also
/// gets the auditor HTTPS listener, where an auditor's pinned client certificate (made with
/// openssl, used with curl) opens the auditor API.
fn archived(up: &Up) -> Guard {
    let work = up.dir.join("auditor-cert");
    std::fs::create_dir_all(&work).unwrap();
    let sh = |script: &str| {
        let out = Command::new("bash")
            .args(["-euo", "pipefail", "-c", script])
            .current_dir(&work)
            .output()
            .unwrap();
        assert!(out.status.success(), "{script}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    sh(
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout a.key \
        -out a.pem -subj /CN=alice -days 1 2>/dev/null",
    );
    let fp = sh("openssl x509 -in a.pem -outform der | sha256sum | cut -d' ' -f1");
    let port = trustbus_integration_tests::free_port();
    let config = up.dir.join("ss2/security-server.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let admin = text
        .lines()
        .find(|l| l.starts_with("admin = "))
        .unwrap()
        .to_owned();
    let text = text.replacen(
        &admin,
        &format!("{admin}\nauditor_tls = \"127.0.0.1:{port}\""),
        1,
    );
    std::fs::write(
        &config,
        format!(
            "{text}\n[message_log.archive]\ndir = \"data/messagelog-archive\"\n\
             retention_days = 0\ninterval_seconds = 1\n\n\
             [[auditor_certs]]\nsha256 = \"{fp}\"\nname = \"alice\"\n"
        ),
    )
    .unwrap();
    let guard = restart(up, 1, "ss2");
    let url = format!("https://127.0.0.1:{port}/api/v1/audit/records?limit=1");
    let code = |cert: &str| {
        sh(&format!(
            "curl -sk -o /dev/null -w '%{{http_code}}' {cert} '{url}'"
        ))
    };
    assert_eq!(code("--cert a.pem --key a.key"), "200");
    assert_eq!(code(""), "401");
    let dir = up.dir.join("ss2/data/messagelog-archive");
    let file = eventually(Duration::from_secs(30), "an archive file", || {
        std::fs::read_dir(&dir)
            .map_err(|e| e.to_string())?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "asice"))
            .ok_or_else(|| "none yet".to_owned())
    });
    let out = Command::new(bin_dir().join("trustbus"))
        .arg("verify-archive")
        .arg(&file)
        .arg("--conf")
        .arg(up.get("/files/verification_config"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}: {text}", file.display());
    assert!(text.starts_with("VALID: records 1 to "), "{text}");
    guard
}
