//! A security server of the development instance, set up with the same commands an operator
//! runs (docs/operator-guide.md): `security-server init`, certificates from the development CA
//! for its CSRs, `import-cert`, `register` (auto-approved by the development central server),
//! and `serve`.

use std::path::Path;
use std::time::Duration;

use trustbus_pki::Certificate;
use trustbus_pki::devca::{DevCa, IssueRequest, SubjectKey};
use trustbus_pki::profile::CertProfile;
use trustbus_sdk::id::ClientId;

use super::UpError;
use super::children::{self, Children};
use super::layout::{Layout, SsPorts, State, write_file};
use super::plan::{self, Kind, SsPlan};

/// Environment variable the security server reads its token PIN from (its default).
pub(crate) const PIN_ENV: &str = "TRUSTBUS_SS_PIN";

/// `init`, certificates and `import-cert` on the first run; the configuration file on every
/// run. Returns the name of the setup step it completed, for the caller to record.
pub(crate) async fn prepare(
    layout: &Layout,
    state: &State,
    ca: &DevCa,
    ss: &SsPlan,
    ports: &SsPorts,
    binary: &Path,
    options: &super::Options,
) -> Result<Option<String>, UpError> {
    let examples_port = state.ports.examples;
    let dir = layout.security_server(ss.code);
    let setup_log = layout.logs().join("setup.log");
    let pin = pin(state, ss)?;
    let env = [(PIN_ENV, pin.as_str())];
    let config = dir.join("security-server.toml");
    let config_s = config.to_string_lossy().into_owned();
    let step = format!("{}-init", ss.code);
    let mut completed = None;
    if !state.is_done(&step) {
        let _ = std::fs::remove_dir_all(&dir);
        let dir_s = dir.to_string_lossy().into_owned();
        let anchor = layout.anchor().to_string_lossy().into_owned();
        children::run_once(
            binary,
            &[
                "init",
                "--dir",
                &dir_s,
                "--owner",
                ss.owner,
                "--server-code",
                ss.code,
                "--anchor",
                &anchor,
                "--name",
                ss.owner_name,
            ],
            &env,
            &setup_log,
        )
        .await?;
        for (profile, csr, out) in [
            (CertProfile::Auth, "auth.csr.pem", "auth-issued.pem"),
            (CertProfile::Sign, "sign.csr.pem", "sign-issued.pem"),
        ] {
            let cert = certify(ca, ss, profile, &dir.join("data/certs").join(csr))?;
            let out = dir.join(out);
            Certificate::write_pem_file(&out, &[cert])
                .map_err(|e| UpError::Setup(format!("{}: {e}", out.display())))?;
            let out_s = out.to_string_lossy().into_owned();
            children::run_once(
                binary,
                &["import-cert", &out_s, "--config", &config_s],
                &env,
                &setup_log,
            )
            .await?;
        }
        completed = Some(step);
    }
    let admin_key = state.secrets.ss_admin_keys.get(ss.code).ok_or_else(|| {
        UpError::Setup(format!("state.json has no admin API key for {}", ss.code))
    })?;
    let auditor_key = state
        .secrets
        .auditor_key
        .as_deref()
        .ok_or_else(|| UpError::Setup("state.json has no auditor API key".into()))?;
    write_file(
        &config,
        config_text(ss, ports, examples_port, admin_key, auditor_key, options).as_bytes(),
    )?;
    Ok(completed)
}

/// `security-server register` once: the authentication certificate and the hosted client.
/// Returns the name of the setup step it completed, for the caller to record.
pub(crate) async fn register(
    layout: &Layout,
    state: &State,
    ss: &SsPlan,
    ports: &SsPorts,
    binary: &Path,
) -> Result<Option<String>, UpError> {
    let step = format!("{}-registered", ss.code);
    if state.is_done(&step) {
        return Ok(None);
    }
    let pin = pin(state, ss)?;
    let config = layout
        .security_server(ss.code)
        .join("security-server.toml")
        .to_string_lossy()
        .into_owned();
    let address = format!("127.0.0.1:{}", ports.server_proxy);
    let out = children::run_once(
        binary,
        &["register", "--config", &config, "--address", &address],
        &[(PIN_ENV, pin.as_str())],
        &layout.logs().join("setup.log"),
    )
    .await?;
    // `register` prints one line per request; a refused one does not fail the command.
    if out.contains("refused") || !out.contains("approved") {
        return Err(UpError::Setup(format!(
            "registering {} with the central server failed:\n{}",
            ss.code,
            out.trim_end()
        )));
    }
    Ok(Some(step))
}

/// Starts `security-server serve`; the caller waits for its listeners.
pub(crate) fn start(
    layout: &Layout,
    state: &State,
    ss: &SsPlan,
    binary: &Path,
    children: &mut Children,
) -> Result<children::Lines, UpError> {
    let pin = pin(state, ss)?;
    let config = layout
        .security_server(ss.code)
        .join("security-server.toml")
        .to_string_lossy()
        .into_owned();
    children.spawn(
        ss.code,
        binary,
        &["serve", "--config", &config],
        &[(PIN_ENV, pin.as_str())],
        &layout.logs(),
    )
}

/// Waits for the three listeners of a started security server.
pub(crate) async fn wait_started(
    layout: &Layout,
    ss: &SsPlan,
    lines: &mut children::Lines,
) -> Result<(), UpError> {
    children::wait_listening(ss.code, lines, 3, Duration::from_secs(20), &layout.logs()).await?;
    Ok(())
}

fn pin(state: &State, ss: &SsPlan) -> Result<String, UpError> {
    state
        .secrets
        .ss_pins
        .get(ss.code)
        .cloned()
        .ok_or_else(|| UpError::Setup(format!("state.json has no PIN for {}", ss.code)))
}

/// Issues the certificate for the key of the CSR at `csr_path`.
fn certify(
    ca: &DevCa,
    ss: &SsPlan,
    profile: CertProfile,
    csr_path: &Path,
) -> Result<Certificate, UpError> {
    let text = std::fs::read_to_string(csr_path).map_err(UpError::io(csr_path))?;
    let csr =
        pem::parse(&text).map_err(|e| UpError::Setup(format!("{}: {e}", csr_path.display())))?;
    let member =
        ClientId::from_slash(ss.owner).map_err(|e| UpError::Setup(format!("{}: {e}", ss.owner)))?;
    ca.issue(&IssueRequest {
        profile,
        member,
        member_name: ss.owner_name.to_owned(),
        server_code: (profile == CertProfile::Auth).then(|| ss.code.to_owned()),
        key: SubjectKey::Csr(csr.contents()),
        not_before: None,
        not_after: None,
    })
    .map_err(|e| UpError::Setup(format!("development CA: {e}")))
}

/// The server's configuration: loopback listeners, development mode (plain-HTTP clients), a
/// short poll interval, the hosted client and, on the provider, the example services with
/// their access rights.
fn config_text(
    ss: &SsPlan,
    ports: &SsPorts,
    examples_port: u16,
    admin_key: &str,
    auditor_key: &str,
    options: &super::Options,
) -> String {
    let sha256 = |k: &str| -> String {
        ring::digest::digest(&ring::digest::SHA256, k.as_bytes())
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let key_sha256 = sha256(admin_key);
    let auditor_sha256 = sha256(auditor_key);
    let mut t = format!(
        "# Written by `trustbus up` on every start; every option is described in\n\
         # configs/security-server.example.toml.\n\n\
         [server]\n\
         owner = \"{owner}\"\n\
         server_code = \"{code}\"\n\
         data_dir = \"data\"\n\
         # Development only: lets information systems connect over plain HTTP.\n\
         development = true\n\
         # 0: one per CPU core (`trustbus up --worker-threads N` to change).\n\
         worker_threads = {workers}\n\n\
         [listen]\n\
         client_proxy = \"127.0.0.1:{cp}\"\n\
         server_proxy = \"127.0.0.1:{sp}\"\n\
         admin = \"127.0.0.1:{admin}\"\n\n\
         [globalconf]\n\
         anchor = \"anchor.json\"\n\
         # Pick up registrations and setting changes within two seconds.\n\
         poll_interval_seconds = 2\n\n\
         # The admin API key (the key itself is in DIR/endpoints.json).\n\
         [[api_keys]]\n\
         sha256 = \"{key_sha256}\"\n\
         role = \"system-administrator\"\n\n\
         # The auditor API key (api_keys.auditor in DIR/endpoints.json): the auditor API only.\n\
         [[api_keys]]\n\
         sha256 = \"{auditor_sha256}\"\n\
         role = \"auditor\"\n\n\
         [[clients]]\n\
         id = \"{client}\"\n\
         connection = \"http\"\n",
        owner = ss.owner,
        code = ss.code,
        cp = ports.client_proxy,
        sp = ports.server_proxy,
        admin = ports.admin,
        client = ss.client,
        workers = options.worker_threads.unwrap_or(0),
    );
    if options.message_log_off {
        t.push_str(
            "\n# trustbus up --message-log off: NOTHING IS LOGGED; exchanges cannot be proven.\n\
             # For the benchmark's cost-of-logging measurement only.\n\
             [message_log]\nenabled = false\n",
        );
    }
    if let Some(w) = options.timestamping_failure_window {
        t.push_str(&format!(
            "\n# trustbus up --timestamping-failure-window: refuse exchanges once timestamping\n\
             # has failed this long (production default 600 s).\n\
             [message_log.timestamping]\nfailure_window_seconds = {w}\n"
        ));
    }
    if ss.code == plan::SECURITY_SERVERS[plan::PROVIDER].code {
        for s in plan::SERVICES {
            let kind = match s.kind {
                Kind::Rest => "rest",
                Kind::Soap => "soap",
            };
            match (&options.echo_backend, s.name) {
                (Some(url), "echo") => t.push_str(&format!(
                    "\n# trustbus up --echo-backend: an outside backend instead of the example echo.\n\
                     [[services]]\nid = \"{}\"\nkind = \"{kind}\"\nurl = \"{url}\"\n",
                    s.id
                )),
                _ => t.push_str(&format!(
                    "\n[[services]]\nid = \"{}\"\nkind = \"{kind}\"\nurl = \"http://127.0.0.1:{examples_port}{}\"\n",
                    s.id, s.backend_path
                )),
            }
            if let Some(acr) = s.verified_user_acr {
                t.push_str(&format!(
                    "# Only for citizens whose ID token the consumer's security server verified.\n\
                     require_verified_user = true\nmin_acr = \"{acr}\"\n"
                ));
            }
            for client in s.granted_to {
                t.push_str(&format!(
                    "\n[[access]]\nservice = \"{}\"\nsubject = \"SUBSYSTEM:{client}\"\n",
                    s.id
                ));
            }
        }
    }
    t
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_citizen_service_requires_a_verified_citizen() {
        let ports = SsPorts {
            client_proxy: 1,
            server_proxy: 2,
            admin: 3,
        };
        let ss = &plan::SECURITY_SERVERS[plan::PROVIDER];
        let text = config_text(
            ss,
            &ports,
            4,
            "key",
            "auditor-key",
            &crate::up::Options::default(),
        );
        let cfg = trustbus_security_server::config::Config::parse(&text).unwrap();
        for s in plan::SERVICES {
            let id = trustbus_sdk::id::ServiceId::from_slash(s.id).unwrap();
            let svc = cfg.service(&id).unwrap();
            assert_eq!(
                svc.require_verified_user,
                s.verified_user_acr.is_some(),
                "{}",
                s.id
            );
            assert_eq!(svc.min_acr.as_deref(), s.verified_user_acr, "{}", s.id);
        }
        let citizen = plan::SERVICES
            .iter()
            .find(|s| s.name == "citizen_records")
            .unwrap();
        assert_eq!(citizen.verified_user_acr, Some("substantial"));
    }

    #[test]
    fn command_line_options_reach_the_server_configuration() {
        let ports = SsPorts {
            client_proxy: 1,
            server_proxy: 2,
            admin: 3,
        };
        let parse = |ss: usize, options: &crate::up::Options| {
            let ss = &plan::SECURITY_SERVERS[ss];
            let text = config_text(ss, &ports, 4, "key", "auditor-key", options);
            trustbus_security_server::config::Config::parse(&text).unwrap()
        };
        let default = parse(0, &crate::up::Options::default());
        assert!(default.message_log.enabled);
        assert_eq!(default.server.worker_threads, 0);
        // All flags: `[message_log]` must come before `[message_log.timestamping]`.
        let cfg = parse(
            0,
            &crate::up::Options {
                timestamping_failure_window: Some(20),
                message_log_off: true,
                worker_threads: Some(3),
                echo_backend: None,
            },
        );
        assert!(!cfg.message_log.enabled);
        assert_eq!(cfg.message_log.timestamping.failure_window_seconds, 20);
        assert_eq!(cfg.server.worker_threads, 3);
        let cfg = parse(
            plan::PROVIDER,
            &crate::up::Options {
                echo_backend: Some("http://127.0.0.1:9/".into()),
                ..Default::default()
            },
        );
        let url = |name: &str| {
            let id = plan::SERVICES.iter().find(|s| s.name == name).unwrap().id;
            let svc = cfg.services.iter().find(|s| s.id.to_slash() == id).unwrap();
            svc.url.clone()
        };
        assert_eq!(url("echo"), "http://127.0.0.1:9/");
        assert_eq!(url("not_granted"), "http://127.0.0.1:4/statistics");
    }
}
