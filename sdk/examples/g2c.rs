//! G2C: a citizen portal logs a citizen in with OpenID Connect and fetches the citizen's own
//! records; the provider sees the subject the bus verified from the ID token.
//!
//! cargo run -p trustbus-sdk --features oidc --example g2c -- --endpoints DIR
//!
//! The example prints the login URL; open it, log in, and paste the URL the browser was sent
//! back to (the redirect URI with `?code=…&state=…`).

#[path = "common/mod.rs"]
mod common;

use std::process::ExitCode;

use trustbus_sdk::client::Method;
use trustbus_sdk::oidc::{ClientAuth, OidcConfig, PortalLogin};

const USAGE: &str =
    "usage: g2c (--endpoints DIR | --url URL --client ID --service ID --issuer URL)";

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<ExitCode, String> {
    let args = common::parse_args(USAGE)?;
    let issuer = args
        .endpoints
        .oidc_issuer
        .clone()
        .ok_or("no identity provider: set oidc_issuer or pass --issuer")?;
    let reg = args
        .endpoints
        .oidc_client
        .clone()
        .ok_or("no portal registration: set oidc_client in endpoints.json")?;
    let mut cfg = OidcConfig::new(
        &issuer,
        &reg.client_id,
        ClientAuth::ClientSecretBasic(reg.client_secret),
        &reg.redirect_uri,
    );
    cfg.scopes = vec!["profile".into()];
    cfg.acr_values = vec!["substantial".into()];
    let login = PortalLogin::discover(cfg).await.map_err(|e| {
        format!("{e}\n(is the identity provider at {issuer} running? start one with `trustbus up`)")
    })?;
    let (url, state) = login.start();
    println!(
        "Open this URL in a browser and log in:\n\n  {url}\n\nThen paste the URL you were redirected to:"
    );
    let mut callback = String::new();
    std::io::stdin()
        .read_line(&mut callback)
        .map_err(|e| e.to_string())?;
    let session = login
        .finish(&state, callback.trim())
        .await
        .map_err(|e| e.to_string())?;
    println!("logged in as {} (acr {:?})", session.subject, session.acr);

    let client = args.bus_client("portal")?;
    let service = args.service_for("citizen_records")?;
    let result = client
        .rest(service.as_str(), Method::GET, "/my-records")
        .id_token(session.id_token())
        .send()
        .await;
    Ok(match result {
        Ok(r) => {
            println!("HTTP {}\n{}", r.status, r.text());
            if r.is_success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => common::report(&args.endpoints.client_proxy_url, &e),
    })
}
