//! `trustbus`: the command for a local instance, evidence verification, pki and admin helpers.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod pki;

/// Trustbus command-line tool.
#[derive(Debug, Parser)]
#[command(name = "trustbus", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Development trust service provider: CA, OCSP responder and TSA.
    #[command(subcommand)]
    Pki(pki::PkiCommand),
}

fn main() -> ExitCode {
    trustbus_pki::tls::install_ring_provider();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Pki(cmd) => pki::run(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("trustbus: {e}");
            ExitCode::FAILURE
        }
    }
}
