//! `trustbus verify`, `trustbus verify-log`: offline checks of evidence containers and of a
//! message log's hash chain. Exit status 0 when valid, 1 naming the first failure.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use trustbus_security_server::messagelog::archive::verify_archive;
use trustbus_security_server::messagelog::verify::verify_container;
use trustbus_security_server::messagelog::verifyconf::VerificationConf;
use trustbus_security_server::messagelog::{
    ChainReport, parse_head, verify_chain, verify_chain_from,
};

/// Arguments of `trustbus verify`.
#[derive(Debug, clap::Args)]
pub(crate) struct VerifyArgs {
    /// The evidence container (`.asice`).
    pub(crate) evidence: PathBuf,
    /// The verification configuration: a directory holding `shared-params.json`, or the zip
    /// the auditor API serves.
    #[arg(long)]
    pub(crate) conf: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Arguments of `trustbus verify-log`.
#[derive(Debug, clap::Args)]
pub(crate) struct VerifyLogArgs {
    /// The message log directory (holding `journal/`).
    pub(crate) dir: PathBuf,
    /// Print the result as JSON.
    #[arg(long)]
    pub(crate) json: bool,
    /// The journal's older segments were archived: the chain continues after this head,
    /// `<record id>:<entry hash hex>` (as `trustbus verify-archive` prints it).
    #[arg(long)]
    pub(crate) anchor: Option<String>,
}

/// Arguments of `trustbus verify-archive`.
#[derive(Debug, clap::Args)]
pub(crate) struct VerifyArchiveArgs {
    /// The archive file (`archive-<first>-<last>.asice`).
    pub(crate) archive: PathBuf,
    /// The verification configuration (directory or zip).
    #[arg(long)]
    pub(crate) conf: PathBuf,
    /// Print the result as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

fn fail(json: bool, check: &str, reason: &str) -> ExitCode {
    if json {
        let v = serde_json::json!({"valid": false, "first_failure": {"check": check, "reason": reason}});
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        println!("INVALID: {check} failed: {reason}");
    }
    ExitCode::FAILURE
}

/// Runs `trustbus verify`.
pub(crate) fn verify(args: &VerifyArgs) -> ExitCode {
    let conf = match VerificationConf::load(&args.conf) {
        Ok(c) => c,
        Err(e) => return fail(args.json, "verification_configuration", &e.to_string()),
    };
    let bytes = match std::fs::read(&args.evidence) {
        Ok(b) => b,
        Err(e) => {
            let reason = format!("{}: {e}", args.evidence.display());
            return fail(args.json, "structure", &reason);
        }
    };
    let report = verify_container(&bytes, &conf);
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
    if report.valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn chain_json(r: &ChainReport) -> serde_json::Value {
    serde_json::json!({
        "valid": true,
        "segments": r.segments,
        "records": r.records,
        "first_id": r.first_id.map(|i| i.0),
        "head": {"last_id": r.head.last_id.0, "hash": r.head.hash.to_hex()},
        "torn_tail": r.torn_tail.as_ref().map(|t| t.reason.clone()),
    })
}

/// Runs `trustbus verify-log`.
pub(crate) fn verify_log(args: &VerifyLogArgs) -> ExitCode {
    if !Path::new(&args.dir).join("journal").is_dir() {
        let reason = format!("{} has no journal/ directory", args.dir.display());
        return fail(args.json, "chain", &reason);
    }
    let result = match &args.anchor {
        None => verify_chain(&args.dir),
        Some(a) => match parse_head(a) {
            Some(head) => verify_chain_from(&args.dir, head),
            None => return fail(args.json, "anchor", "expected <record id>:<64 hex digits>"),
        },
    };
    match result {
        Ok(r) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&chain_json(&r)).unwrap_or_default()
                );
            } else {
                println!(
                    "VALID: {} records in {} segments, chain head {} at record {}",
                    r.records,
                    r.segments,
                    r.head.hash.to_hex(),
                    r.head.last_id
                );
                if let Some(t) = &r.torn_tail {
                    println!("note: torn tail at the end ({} bytes): {}", t.len, t.reason);
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(args.json, "chain", &e.to_string()),
    }
}

/// Runs `trustbus verify-archive`.
pub(crate) fn verify_archive_file(args: &VerifyArchiveArgs) -> ExitCode {
    let conf = match VerificationConf::load(&args.conf) {
        Ok(c) => c,
        Err(e) => return fail(args.json, "verification_configuration", &e.to_string()),
    };
    let bytes = match std::fs::read(&args.archive) {
        Ok(b) => b,
        Err(e) => {
            return fail(
                args.json,
                "archive",
                &format!("{}: {e}", args.archive.display()),
            );
        }
    };
    match verify_archive(&bytes, &conf) {
        Ok(s) => {
            let anchor = s.chain_head.replacen(' ', ":", 1);
            if args.json {
                let v = serde_json::json!({
                    "valid": true, "first_record": s.first_record, "last_record": s.last_record,
                    "head": s.head, "previous_archive": s.previous_archive,
                    "chain_head": anchor, "signer": s.signer,
                });
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                println!(
                    "VALID: records {} to {}, signed by {}, archive head {}{}",
                    s.first_record,
                    s.last_record,
                    s.signer,
                    s.head,
                    s.previous_archive
                        .map(|p| format!(", continues {p}"))
                        .unwrap_or_default()
                );
                println!("the live journal continues after: --anchor {anchor}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(args.json, "archive", &e.to_string()),
    }
}
