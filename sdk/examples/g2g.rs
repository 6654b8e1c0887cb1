//! G2G: a ministry reads a person from another agency's population register.
//!
//! cargo run -p trustbus-sdk --features client --example g2g -- --endpoints DIR [PERSON_ID]

#[path = "common/mod.rs"]
mod common;

use std::process::ExitCode;

use trustbus_sdk::client::Method;

const USAGE: &str = "usage: g2g (--endpoints DIR | --url URL --client ID --service ID) [PERSON_ID]";

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
        args.bus_client("ministry"),
        args.service_for("population_register"),
    ) {
        (Ok(c), Ok(s)) => (c, s),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let person = args.rest.first().map_or("EE38001085718", String::as_str);
    let result = client
        .rest(service.as_str(), Method::GET, &format!("/persons/{person}"))
        .issue("g2g-example")
        .send()
        .await;
    match result {
        Ok(r) => {
            println!(
                "HTTP {} (message id {}, request id {:?})",
                r.status, r.message_id, r.request_id
            );
            println!("{}", r.text());
            if r.is_success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => common::report(&args.endpoints.client_proxy_url, &e),
    }
}
