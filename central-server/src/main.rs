//! `central-server`: the governing authority's member registry and global configuration publisher.

use clap::Parser;

/// Trustbus central server.
///
/// Keeps the member registry and publishes the signed global configuration that every security
/// server trusts. Subcommands arrive with the central-server issue (see docs/).
#[derive(Parser)]
#[command(version, about, long_about)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
    eprintln!("central-server: no subcommands yet; see `central-server --help` and docs/");
    std::process::exit(2);
}
