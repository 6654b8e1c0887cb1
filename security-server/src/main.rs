//! `security-server`: the per-agency server that signs, verifies, logs and exchanges messages.

use clap::Parser;

/// Trustbus security server.
///
/// Runs next to an agency's information systems: its client proxy accepts X-Road SOAP and REST
/// requests, signs them and sends them over mutual TLS to the provider's security server, whose
/// server proxy verifies them, checks access rights, calls the backend and signs the response.
/// Subcommands arrive with the security-server issue (see docs/).
#[derive(Parser)]
#[command(version, about, long_about)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
    eprintln!("security-server: no subcommands yet; see `security-server --help` and docs/");
    std::process::exit(2);
}
