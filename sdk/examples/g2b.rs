//! G2B: a business queries the business register.
//!
//! cargo run -p trustbus-sdk --features client --example g2b -- --endpoints DIR [REGISTRY_CODE]

#[path = "common/mod.rs"]
mod common;

use std::process::ExitCode;

use trustbus_sdk::client::Method;

const USAGE: &str =
    "usage: g2b (--endpoints DIR | --url URL --client ID --service ID) [REGISTRY_CODE]";

#[tokio::main]
async fn main() -> ExitCode {
    let args = match common::parse_args(USAGE) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let (client, service) = match (
        args.bus_client("business"),
        args.service_for("business_register"),
    ) {
        (Ok(c), Ok(s)) => (c, s),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let code = args.rest.first().map_or("10000001", String::as_str);
    let result = client
        .rest(
            service.as_str(),
            Method::GET,
            &format!("/companies?registry_code={code}"),
        )
        .send()
        .await
        .and_then(|r| r.json::<serde_json::Value>());
    match result {
        Ok(company) => {
            println!("{company:#}");
            ExitCode::SUCCESS
        }
        Err(e) => common::report(&args.endpoints.client_proxy_url, &e),
    }
}
