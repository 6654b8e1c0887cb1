//! `trustbus pki …`: the development CA, its OCSP responder and TSA.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Subcommand, ValueEnum};
use trustbus_pki::Certificate;
use trustbus_pki::devca::{DevCa, DevCaError, IssueRequest, SubjectKey};
use trustbus_pki::key::{KeyKind, KeyPair};
use trustbus_pki::profile::CertProfile;
use trustbus_pki::revocation::CrlReason;
use trustbus_pki::signature::Signer;
use trustbus_sdk::id::ClientId;

/// Errors of the pki commands.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PkiCliError {
    #[error(transparent)]
    DevCa(#[from] DevCaError),
    /// The OCSP responder or TSA could not be set up from the CA directory.
    #[error(transparent)]
    Services(#[from] trustbus_pki::serve::DevServicesError),
    #[error(transparent)]
    Cert(#[from] trustbus_pki::cert::CertError),
    #[error(transparent)]
    Key(#[from] trustbus_pki::key::KeyError),
    #[error("invalid member identifier {0:?}: {1}")]
    Member(String, trustbus_sdk::id::IdError),
    #[error("{0}")]
    Usage(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PkiCliError + '_ {
    move |source| PkiCliError::Io {
        path: path.display().to_string(),
        source,
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum ProfileArg {
    /// Member signing certificate.
    Sign,
    /// Security server authentication certificate.
    Auth,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum KeyTypeArg {
    /// ECDSA P-256 (default).
    EcP256,
    /// ECDSA P-384.
    EcP384,
    /// Ed25519.
    Ed25519,
}

/// `trustbus pki` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum PkiCommand {
    /// Create a development CA (root, OCSP responder and TSA certificates) in DIR.
    Init {
        /// CA directory (created if missing; must not hold a CA yet).
        #[arg(long)]
        dir: PathBuf,
        /// Instance identifier, e.g. DEV.
        #[arg(long)]
        instance: String,
    },
    /// Issue a signing or authentication certificate.
    Issue {
        /// CA directory.
        #[arg(long)]
        dir: PathBuf,
        /// Certificate profile.
        #[arg(long, value_enum)]
        profile: ProfileArg,
        /// The member, INSTANCE/CLASS/CODE.
        #[arg(long)]
        member: String,
        /// Security server code (auth profile only).
        #[arg(long)]
        server: Option<String>,
        /// Member name for the subject's O attribute (default: the member code).
        #[arg(long)]
        name: Option<String>,
        /// Certify the key of this PKCS#10 request (PEM or DER) instead of generating one.
        #[arg(long)]
        csr: Option<PathBuf>,
        /// Key type to generate when no --csr is given.
        #[arg(long, value_enum, default_value = "ec-p256")]
        key_type: KeyTypeArg,
        /// Output prefix: writes PREFIX.pem (and PREFIX.key unless --csr).
        #[arg(long)]
        out: PathBuf,
    },
    /// Revoke a certificate issued by the CA.
    Revoke {
        /// CA directory.
        #[arg(long)]
        dir: PathBuf,
        /// The certificate (PEM or DER).
        #[arg(long)]
        cert: PathBuf,
        /// CRLReason: unspecified, keyCompromise, cACompromise, affiliationChanged, superseded,
        /// cessationOfOperation, certificateHold, privilegeWithdrawn, aACompromise.
        #[arg(long, default_value = "unspecified")]
        reason: String,
    },
    /// Serve OCSP, TSA and the CA certificate over HTTP.
    Serve {
        /// CA directory.
        #[arg(long)]
        dir: PathBuf,
        /// Listen address.
        #[arg(long, default_value = "127.0.0.1:8899")]
        listen: SocketAddr,
    },
}

pub(crate) fn run(cmd: PkiCommand) -> Result<(), PkiCliError> {
    match cmd {
        PkiCommand::Init { dir, instance } => {
            let ca = DevCa::init(&dir, &instance)?;
            println!(
                "development CA for instance {instance} created in {}",
                dir.display()
            );
            println!("  CA certificate   {}", dir.join("ca.pem").display());
            println!("  OCSP responder   {}", dir.join("ocsp.pem").display());
            println!("  TSA              {}", dir.join("tsa.pem").display());
            println!(
                "  CA fingerprint   sha256:{}",
                ca.ca_cert().fingerprint_hex()
            );
            Ok(())
        }
        PkiCommand::Issue {
            dir,
            profile,
            member,
            server,
            name,
            csr,
            key_type,
            out,
        } => issue(&dir, profile, &member, server, name, csr, key_type, &out),
        PkiCommand::Revoke { dir, cert, reason } => {
            let reason: CrlReason =
                reason
                    .parse()
                    .map_err(|e: trustbus_pki::revocation::UnknownReason| {
                        PkiCliError::Usage(e.to_string())
                    })?;
            let ca = DevCa::open(&dir)?;
            let certs = Certificate::read_file(&cert)?;
            let c = certs.first().ok_or_else(|| {
                PkiCliError::Usage(format!("{} holds no certificate", cert.display()))
            })?;
            ca.revoke(c, reason)?;
            println!(
                "revoked serial {} ({}): {reason}",
                c.serial_hex(),
                c.subject()
            );
            Ok(())
        }
        PkiCommand::Serve { dir, listen } => serve(&dir, listen),
    }
}

fn with_ext(prefix: &Path, ext: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

#[allow(clippy::too_many_arguments)]
fn issue(
    dir: &Path,
    profile: ProfileArg,
    member: &str,
    server: Option<String>,
    name: Option<String>,
    csr: Option<PathBuf>,
    key_type: KeyTypeArg,
    out: &Path,
) -> Result<(), PkiCliError> {
    let ca = DevCa::open(dir)?;
    let member_id =
        ClientId::from_slash(member).map_err(|e| PkiCliError::Member(member.into(), e))?;
    if member_id.subsystem_code().is_some() {
        return Err(PkiCliError::Usage(format!(
            "--member must be INSTANCE/CLASS/CODE, not a subsystem: {member}"
        )));
    }
    let member_name = name.unwrap_or_else(|| member_id.member_code().to_owned());
    let profile = match profile {
        ProfileArg::Sign => CertProfile::Sign,
        ProfileArg::Auth => CertProfile::Auth,
    };
    let (key, csr_der) = match &csr {
        Some(path) => {
            let bytes = std::fs::read(path).map_err(io(path))?;
            let der = match std::str::from_utf8(&bytes)
                .ok()
                .and_then(|t| pem::parse(t).ok())
            {
                Some(p)
                    if p.tag() == "CERTIFICATE REQUEST" || p.tag() == "NEW CERTIFICATE REQUEST" =>
                {
                    p.into_contents()
                }
                Some(p) => {
                    return Err(PkiCliError::Usage(format!(
                        "{}: expected a CERTIFICATE REQUEST block, found {}",
                        path.display(),
                        p.tag()
                    )));
                }
                None => bytes,
            };
            (None, Some(der))
        }
        None => {
            let kind = match key_type {
                KeyTypeArg::EcP256 => KeyKind::EcdsaP256,
                KeyTypeArg::EcP384 => KeyKind::EcdsaP384,
                KeyTypeArg::Ed25519 => KeyKind::Ed25519,
            };
            (Some(KeyPair::generate(kind)?), None)
        }
    };
    let subject_key = match (&key, &csr_der) {
        (Some(k), _) => SubjectKey::Spki(k.public_key_der()),
        (None, Some(c)) => SubjectKey::Csr(c),
        (None, None) => return Err(PkiCliError::Usage("no key".into())),
    };
    let cert = ca.issue(&IssueRequest {
        profile,
        member: member_id,
        member_name,
        server_code: server,
        key: subject_key,
        not_before: None,
        not_after: None,
    })?;
    let cert_path = with_ext(out, "pem");
    std::fs::write(&cert_path, cert.to_pem()).map_err(io(&cert_path))?;
    println!("issued {}", cert.subject());
    println!("  serial        {}", cert.serial_hex());
    println!("  fingerprint   sha256:{}", cert.fingerprint_hex());
    println!(
        "  not after     {}",
        cert.not_after()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    );
    println!("  certificate   {}", cert_path.display());
    if let Some(k) = key {
        let key_path = with_ext(out, "key");
        write_private(&key_path, k.to_pkcs8_pem().as_bytes()).map_err(io(&key_path))?;
        println!(
            "  private key   {} (unencrypted PKCS#8, mode 0600)",
            key_path.display()
        );
    }
    Ok(())
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)?.write_all(data)
}

fn serve(dir: &Path, listen: SocketAddr) -> Result<(), PkiCliError> {
    let ca = std::sync::Arc::new(DevCa::open(dir)?);
    let services = trustbus_pki::serve::dev_services(ca.clone())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(io(dir))?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|source| PkiCliError::Io {
                path: listen.to_string(),
                source,
            })?;
        let addr = listener.local_addr().map_err(io(dir))?;
        println!(
            "trustbus pki serve: instance {} from {}",
            ca.instance(),
            dir.display()
        );
        println!("  OCSP        POST http://{addr}/ocsp, GET http://{addr}/ocsp/{{base64}}");
        println!("  TSA         POST http://{addr}/tsa");
        println!("  CA cert     GET  http://{addr}/ca.pem");
        println!("  health      GET  http://{addr}/healthz");
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        trustbus_pki::serve::serve(listener, services, shutdown)
            .await
            .map_err(|source| PkiCliError::Io {
                path: addr.to_string(),
                source,
            })
    })
}
