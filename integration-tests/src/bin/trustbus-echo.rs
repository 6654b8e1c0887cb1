//! `trustbus-echo`: the benchmark backend. Echoes every POST body with status 200 on one
//! thread (like nginx `worker_processes 1`); answers `*xml*` bodies as X-Road SOAP requests.

use std::process::ExitCode;

use clap::Parser;
use std::io::Write as _;

/// HTTP/1.1 keep-alive echo backend.
#[derive(Parser, Debug)]
#[command(name = "trustbus-echo")]
struct Args {
    /// Address to listen on; port 0 picks a free one. The first line printed is
    /// `listening on ADDR`.
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("trustbus-echo: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async {
        match trustbus_integration_tests::echo::bind(&args.listen).await {
            Ok((listener, addr)) => {
                println!("listening on {addr}");
                // The parent reads this line through a pipe to learn the port.
                let _ = std::io::stdout().flush();
                trustbus_integration_tests::echo::serve(listener).await;
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("trustbus-echo: listen on {}: {e}", args.listen);
                ExitCode::FAILURE
            }
        }
    })
}
