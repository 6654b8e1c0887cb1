//! The central server of the development instance: `central-server init` once, then on every
//! run its configuration, `central-server apply` of `configs/dev-up.toml` completed with
//! this instance's trust services, API keys (created once), the anchor, and `serve`.

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use trustbus_pki::devca::DevCa;

use super::UpError;
use super::children::{self, Children};
use super::layout::{Layout, State, write_file};
use super::plan;

/// The instance description shipped in the repository (members, subsystems, settings).
const DEV_INSTANCE: &str = include_str!("../../../configs/dev-up.toml");

/// Environment variable the central server reads its PIN from (its default `[keys] pin_env`).
pub(crate) const PIN_ENV: &str = "TRUSTBUS_CENTRAL_PIN";

/// The request types the development instance approves on receipt.
const AUTO_APPROVE: &str = r#"["auth_cert_registration", "client_registration", "address_change", "client_enable", "client_disable"]"#;

/// Prepares the central server's directory; returns nothing but fails with the command's
/// output when a step fails.
pub(crate) async fn prepare(
    layout: &Layout,
    state: &mut State,
    ca: &DevCa,
    binary: &Path,
) -> Result<(), UpError> {
    let setup_log = layout.logs().join("setup.log");
    let pin = state.secrets.central_pin.clone();
    let env = [(PIN_ENV, pin.as_str())];
    let config = layout.central_config();
    let config_s = config.to_string_lossy().into_owned();
    if !state.is_done("central-init") {
        // A half-made directory from an interrupted first run is started over.
        let _ = std::fs::remove_dir_all(layout.central());
        let dir = layout.central().to_string_lossy().into_owned();
        children::run_once(
            binary,
            &["init", "--dir", &dir, "--instance", plan::INSTANCE],
            &env,
            &setup_log,
        )
        .await?;
        state.mark_done(layout, "central-init")?;
    }
    write_file(&config, central_config(state).as_bytes())?;

    let instance_file = layout.central().join("instance.toml");
    write_file(&instance_file, instance_description(state, ca)?.as_bytes())?;
    let instance_s = instance_file.to_string_lossy().into_owned();
    children::run_once(
        binary,
        &["apply", &instance_s, "--config", &config_s],
        &[],
        &setup_log,
    )
    .await?;

    if state.secrets.central_admin_key.is_none() {
        let key = api_key(binary, "system-administrator", &config_s, &setup_log).await?;
        state.secrets.central_admin_key = Some(key);
        state.save(layout)?;
    }
    if state.secrets.central_observer_key.is_none() {
        let key = api_key(binary, "observer", &config_s, &setup_log).await?;
        state.secrets.central_observer_key = Some(key);
        state.save(layout)?;
    }

    let anchor = layout.anchor().to_string_lossy().into_owned();
    children::run_once(
        binary,
        &["anchor", "--out", &anchor, "--config", &config_s],
        &[],
        &setup_log,
    )
    .await?;
    Ok(())
}

/// Creates an API key with `central-server api-key create` (the server is stopped here).
async fn api_key(binary: &Path, role: &str, config: &str, log: &Path) -> Result<String, UpError> {
    let out = children::run_once(
        binary,
        &["api-key", "create", "--role", role, "--config", config],
        &[],
        log,
    )
    .await?;
    let key = out.trim();
    if key.is_empty() || key.contains(char::is_whitespace) {
        return Err(UpError::Setup(format!(
            "unexpected output of `central-server api-key create`: {out:?}"
        )));
    }
    Ok(key.to_owned())
}

/// Starts `central-server serve` and waits for its three listeners.
pub(crate) async fn start(
    layout: &Layout,
    state: &State,
    binary: &Path,
    children: &mut Children,
) -> Result<(), UpError> {
    let config = layout.central_config().to_string_lossy().into_owned();
    let pin = state.secrets.central_pin.clone();
    let mut lines = children.spawn(
        "central-server",
        binary,
        &["serve", "--config", &config],
        &[(PIN_ENV, pin.as_str())],
        &layout.logs(),
    )?;
    children::wait_listening(
        "central-server",
        &mut lines,
        3,
        Duration::from_secs(20),
        &layout.logs(),
    )
    .await?;
    Ok(())
}

/// The central server's configuration: fixed loopback ports, quick publication (a registration
/// shows up in global configuration within a second) and auto-approval of registrations.
fn central_config(state: &State) -> String {
    let p = &state.ports;
    format!(
        "# Written by `trustbus up` on every start; every option is described in\n\
         # configs/central-server.example.toml.\n\
         instance = \"{instance}\"\n\
         data_dir = \"data\"\n\n\
         [globalconf]\n\
         listen = \"127.0.0.1:{gc}\"\n\
         # Publish a registry change within a second, so new registrations reach the\n\
         # security servers quickly.\n\
         check_interval_seconds = 1\n\
         refresh_interval_seconds = 2\n\n\
         [admin]\n\
         listen = \"127.0.0.1:{admin}\"\n\n\
         [management]\n\
         listen = \"127.0.0.1:{mgmt}\"\n\
         # Development only: registrations are approved on receipt.\n\
         auto_approve = {AUTO_APPROVE}\n",
        instance = plan::INSTANCE,
        gc = p.central_globalconf,
        admin = p.central_admin,
        mgmt = p.central_management,
    )
}

/// `configs/dev-up.toml` plus this instance's approved CA (with its OCSP responder), TSA
/// and the example OpenID provider, which only exist once the instance directory does.
fn instance_description(state: &State, ca: &DevCa) -> Result<String, UpError> {
    let p = &state.ports;
    let (tsa_cert, _) = ca
        .tsa_signer()
        .map_err(|e| UpError::Setup(format!("development TSA: {e}")))?;
    Ok(format!(
        "{DEV_INSTANCE}\n\
         # ---- added by `trustbus up` for the trust services of this instance directory ----\n\n\
         [[approved_cas]]\n\
         name = \"Trustbus development CA\"\n\
         roots = [\"{root}\"]\n\
         ocsp_responders = [{{ url = \"http://127.0.0.1:{ts}/ocsp\" }}]\n\n\
         [[approved_tsas]]\n\
         name = \"Trustbus development TSA\"\n\
         url = \"http://127.0.0.1:{ts}/tsa\"\n\
         cert = \"{tsa}\"\n\n\
         [[trusted_oidc_issuers]]\n\
         issuer = \"http://127.0.0.1:{op}\"\n\
         audiences = [\"{aud}\"]\n\
         jwks_url = \"http://127.0.0.1:{op}/jwks\"\n\
         acr_levels = [\"low\", \"substantial\", \"high\"]\n\
         min_acr = {{ default = \"substantial\" }}\n",
        root = STANDARD.encode(ca.ca_cert().der()),
        tsa = STANDARD.encode(tsa_cert.der()),
        ts = p.trust_services,
        op = p.oidc,
        aud = plan::OIDC_CLIENT_ID,
    ))
}
