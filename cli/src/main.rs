//! `trustbus`: the command for a local instance, evidence verification, pki and admin helpers.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod message;
mod pki;
mod up;
mod verify;

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
    /// Offline checks of identifiers and X-Road SOAP/REST messages, with the exact fault code
    /// a security server would answer.
    #[command(subcommand)]
    Message(message::MessageCommand),
    /// Verifies an evidence container offline against a verification configuration.
    Verify(verify::VerifyArgs),
    /// Verifies a message log's hash chain and reports the first broken link.
    VerifyLog(verify::VerifyLogArgs),
    /// Verifies one message-log archive file on its own.
    VerifyArchive(verify::VerifyArchiveArgs),
    /// Starts a complete development instance on loopback: development CA/OCSP/TSA, central
    /// server, two security servers, example REST and SOAP services and an example OpenID
    /// provider. The first run creates DIR; later runs reuse it.
    Up {
        /// Directory for the instance's state.
        #[arg(long, default_value = "trustbus-dev")]
        dir: std::path::PathBuf,
        /// Seconds the security servers keep accepting exchanges while timestamping fails,
        /// before refusing them with `TimestamperFailed` (default 600, as in production);
        /// shorter to try the fail-closed behaviour.
        #[arg(long, value_name = "SECONDS")]
        timestamping_failure_window: Option<u64>,
        /// `off` starts the security servers with the message log switched off (for the
        /// benchmark's cost-of-logging row only): exchanges are then not recorded or provable.
        #[arg(long, value_name = "on|off", default_value = "on", value_parser = ["on", "off"])]
        message_log: String,
        /// `[server] worker_threads` of each security server (default 0: one per CPU core).
        #[arg(long, value_name = "N")]
        worker_threads: Option<usize>,
        /// The example `echo` service calls this backend (`http://...`) instead of the
        /// instance's own echo; the benchmark points it at the backend its baselines call.
        #[arg(long, value_name = "URL")]
        echo_backend: Option<String>,
    },
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
        Command::Verify(args) => return verify::verify(&args),
        Command::VerifyLog(args) => return verify::verify_log(&args),
        Command::VerifyArchive(args) => return verify::verify_archive_file(&args),
        Command::Pki(cmd) => pki::run(cmd).map_err(|e| e.to_string()),
        Command::Message(cmd) => message::run(cmd).map_err(|e| e.to_string()),
        Command::Up {
            dir,
            timestamping_failure_window,
            message_log,
            worker_threads,
            echo_backend,
        } => up::run(
            &dir,
            &up::Options {
                timestamping_failure_window,
                message_log_off: message_log == "off",
                worker_threads,
                echo_backend,
            },
        )
        .map_err(|e| e.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("trustbus: {e}");
            ExitCode::FAILURE
        }
    }
}
