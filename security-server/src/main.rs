//! `security-server`: the per-agency server that signs, verifies, logs and exchanges messages.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use trustbus_central_server::anchor::Anchor;
use trustbus_central_server::confclient::{ConfClient, HttpFetcher};
use trustbus_central_server::globalconf::cms_signing::CmsDirectoryVerifier;
use trustbus_pki::token::SoftToken;
use trustbus_pki::{Certificate, KeyKind, KeyPair};
use trustbus_sdk::id::{ClientId, SecurityServerId};
use trustbus_security_server::config::Config;
use trustbus_security_server::identity::{self, Identity};
use trustbus_security_server::logsink::{JournalLog, MessageLogSink, NoLog};
use trustbus_security_server::messagelog::archive;
use trustbus_security_server::messagelog::settings::{self, TimestampSettings};
use trustbus_security_server::messagelog::timestamp::Timestamper;
use trustbus_security_server::messagelog::verifyconf::VerificationConf;
use trustbus_security_server::messagelog::{MessageLog, MessageLogConfig};
use trustbus_security_server::state::AppState;

/// mimalloc instead of glibc malloc: the exchange path allocates and frees many short-lived
/// buffers across threads, where glibc's arenas spent about a tenth of a security server's CPU
/// (docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Trustbus security server.
///
/// Runs next to an agency's information systems: its client proxy accepts X-Road SOAP and REST
/// requests, signs them and sends them over mutual TLS to the provider's security server, whose
/// server proxy verifies them, checks access rights, calls the backend and signs the response.
#[derive(Parser)]
#[command(version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a configuration, a PIN-protected token with the authentication and signing keys,
    /// and certificate signing requests. The PIN is read from TRUSTBUS_SS_PIN.
    Init {
        /// Directory to create (`security-server.toml`, `data/`).
        #[arg(long)]
        dir: PathBuf,
        /// Owner member, `INSTANCE/CLASS/CODE`.
        #[arg(long)]
        owner: String,
        /// Server code.
        #[arg(long)]
        server_code: String,
        /// Global configuration anchor (copied into the directory).
        #[arg(long)]
        anchor: PathBuf,
        /// The owner's name for the certificate subjects (default: the member code).
        #[arg(long)]
        name: Option<String>,
    },
    /// Create a signing key and CSR for another member whose subsystems this server hosts (each
    /// request is signed with its client member's key).
    AddMember {
        /// Configuration file.
        #[arg(long)]
        config: PathBuf,
        /// The member, `INSTANCE/CLASS/CODE`.
        #[arg(long)]
        member: String,
        /// The member's name for the certificate subject (default: the member code).
        #[arg(long)]
        name: Option<String>,
    },
    /// Install a certificate issued for the authentication or the signing key.
    ImportCert {
        /// PEM file, end-entity certificate first, then intermediates.
        file: PathBuf,
        /// Configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Run the server.
    Serve {
        /// Configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Send the management requests that register this server's authentication certificate
    /// (at `--address`) and every configured client with the central server.
    Register {
        /// Configuration file.
        #[arg(long)]
        config: PathBuf,
        /// The address other security servers reach this server proxy at (`host:port`).
        #[arg(long)]
        address: String,
        /// Management service base URL (default: from global configuration).
        #[arg(long)]
        management_url: Option<String>,
    },
    /// Make an API key: prints the key once and the `[[api_keys]]` entry (its SHA-256) to add
    /// to the configuration. Role `auditor` opens only the auditor API (`/api/v1/audit/`).
    ApiKey {
        /// `observer`, `system-administrator` or `auditor`.
        #[arg(long, default_value = "observer")]
        role: String,
    },
    /// Show keys, certificates and the global configuration held.
    Status {
        /// Configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Hosted clients of a running server (admin API).
    Clients {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        action: ClientsAction,
    },
    /// Services of a running server (admin API).
    Services {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        action: ServicesAction,
    },
    /// Access rights of a running server (admin API).
    Access {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        action: AccessAction,
    },
    /// Local groups of a running server (admin API).
    LocalGroups {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        action: GroupsAction,
    },
    /// Token keys of a running server (admin API): list, or generate a key and its CSR.
    Keys {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Certificates of a running server (admin API): install one issued for a token key; a
    /// signing certificate is used for the next message, without a restart.
    Certificates {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        action: CertificatesAction,
    },
    /// Registration with the central server, through a running server (admin API).
    Registration {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        action: RegistrationAction,
    },
    /// Diagnostics of a running server (admin API): configuration, certificates, clients;
    /// optionally a connection test to another security server and the TSAs.
    Diagnostics {
        #[command(flatten)]
        admin: AdminArgs,
        /// Test a mutual TLS connection to this security server (`INSTANCE/CLASS/MEMBER/CODE`).
        #[arg(long)]
        connection: Option<String>,
        /// Ask every TSA of global configuration for a timestamp.
        #[arg(long)]
        timestamping: bool,
    },
}

/// Where the admin API is and the key for it.
#[derive(clap::Args)]
struct AdminArgs {
    /// The admin listener (default: $TRUSTBUS_ADMIN_URL, else http://127.0.0.1:5588).
    #[arg(long, global = true)]
    admin_url: Option<String>,
    /// The API key (default: $TRUSTBUS_ADMIN_API_KEY).
    #[arg(long, global = true)]
    api_key: Option<String>,
}

#[derive(Subcommand)]
enum KeysAction {
    /// List the token's keys with their certificates and which are active.
    List,
    /// Generate a key in the server's token and print its CSR (JSON field `csr`).
    Generate {
        /// `auth` or `sign`.
        #[arg(long)]
        usage: String,
        /// For a signing key: the member, `INSTANCE/CLASS/CODE` (default: the owner).
        #[arg(long)]
        member: Option<String>,
        /// The name in the certificate subject (default: the member code).
        #[arg(long)]
        name: Option<String>,
        /// Also write the CSR (PEM) to this file.
        #[arg(long)]
        csr_out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum CertificatesAction {
    /// List the active certificates with their OCSP status.
    List,
    /// Install a certificate (PEM file, end-entity first) issued for a token key.
    Import {
        /// The PEM file.
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum RegistrationAction {
    /// Send the management request registering the installed authentication certificate
    /// (with --address), or a hosted client (with --client).
    Submit {
        /// The address other security servers reach this server proxy at (`host:port`).
        #[arg(long, required_unless_present = "client", conflicts_with = "client")]
        address: Option<String>,
        /// The client, `INSTANCE/CLASS/MEMBER/SUBSYSTEM`.
        #[arg(long)]
        client: Option<String>,
    },
    /// Whether the server, its certificates and clients are in global configuration.
    Status {
        /// Only this client.
        #[arg(long)]
        client: Option<String>,
    },
}

#[derive(Subcommand)]
enum ClientsAction {
    /// List the hosted clients.
    List,
    /// Add a hosted client.
    Add {
        /// `INSTANCE/CLASS/MEMBER[/SUBSYSTEM]`.
        id: String,
        /// `http` (development servers only), `https` or `https-auth` (default).
        #[arg(long)]
        connection: Option<String>,
        /// SHA-256 (hex) of an information system's TLS certificate (repeatable).
        #[arg(long = "is-cert")]
        is_certs: Vec<String>,
        /// Refuse user ids information systems assert (REST header dropped, SOAP refused).
        #[arg(long)]
        no_unverified_user_id: bool,
    },
    /// Change a client's connection mode or certificates.
    Update {
        /// The client.
        id: String,
        /// `http`, `https` or `https-auth`.
        #[arg(long)]
        connection: Option<String>,
        /// SHA-256 (hex) of an information system's TLS certificate; replaces the list.
        #[arg(long = "is-cert")]
        is_certs: Vec<String>,
    },
    /// Remove a client that provides no services.
    Remove {
        /// The client.
        id: String,
    },
}

#[derive(Subcommand)]
enum ServicesAction {
    /// List the services.
    List,
    /// Add a REST service, a SOAP service, or every operation of a WSDL.
    Add {
        /// `rest` or `soap`.
        #[arg(long)]
        kind: String,
        /// The service, `INSTANCE/CLASS/MEMBER/SUBSYSTEM/CODE`.
        #[arg(long)]
        id: Option<String>,
        /// SOAP with --wsdl-url: the provider; every WSDL operation becomes a service.
        #[arg(long)]
        provider: Option<String>,
        /// Backend URL (REST: base URL; SOAP: endpoint, default the WSDL's soap:address).
        #[arg(long)]
        url: Option<String>,
        /// REST endpoint `METHOD /path/*` (repeatable).
        #[arg(long = "endpoint")]
        endpoints: Vec<String>,
        /// REST: OpenAPI 3 JSON document (URL or absolute path); its paths become endpoints.
        #[arg(long)]
        openapi_url: Option<String>,
        /// SOAP: WSDL document (URL or absolute path).
        #[arg(long)]
        wsdl_url: Option<String>,
        /// PEM file to trust for https:// backends and description URLs (absolute path).
        #[arg(long)]
        tls_ca: Option<PathBuf>,
    },
    /// Change a service's URL or endpoints.
    Update {
        /// The service.
        id: String,
        /// New backend URL.
        #[arg(long)]
        url: Option<String>,
        /// REST endpoint `METHOD /path` (repeatable); replaces the list.
        #[arg(long = "endpoint")]
        endpoints: Vec<String>,
    },
    /// Remove a service and its access rights.
    Remove {
        /// The service.
        id: String,
    },
    /// Enable a service.
    Enable {
        /// The service.
        id: String,
    },
    /// Disable a service; callers get Server.ServerProxy.ServiceDisabled with the notice.
    Disable {
        /// The service.
        id: String,
        /// Shown to callers.
        #[arg(long)]
        notice: Option<String>,
    },
    /// Read the service's WSDL or OpenAPI document again.
    Refresh {
        /// The service.
        id: String,
    },
}

#[derive(Subcommand)]
enum AccessAction {
    /// List the access rights.
    List {
        /// Only those to this service.
        #[arg(long)]
        service: Option<String>,
    },
    /// Grant access to a service (or only to some of its REST endpoints).
    Grant {
        /// The service.
        #[arg(long)]
        service: String,
        /// `SUBSYSTEM:I/C/M/S`, `MEMBER:I/C/M`, `GLOBALGROUP:I/code` or `LOCALGROUP:code`.
        #[arg(long)]
        subject: String,
        /// REST endpoint `METHOD /path/*` (repeatable); none = the whole service.
        #[arg(long = "endpoint")]
        endpoints: Vec<String>,
    },
    /// Revoke access to a service (or to some of its endpoints).
    Revoke {
        /// The service.
        #[arg(long)]
        service: String,
        /// The subject, as for grant.
        #[arg(long)]
        subject: String,
        /// REST endpoint `METHOD /path` (repeatable); none = every right to the service.
        #[arg(long = "endpoint")]
        endpoints: Vec<String>,
    },
}

#[derive(Subcommand)]
enum GroupsAction {
    /// List the local groups.
    List,
    /// Create a local group.
    Create {
        /// Group code.
        code: String,
        /// A member, `INSTANCE/CLASS/MEMBER[/SUBSYSTEM]` (repeatable).
        #[arg(long = "member")]
        members: Vec<String>,
    },
    /// Delete a local group and the access rights granted to it.
    Delete {
        /// Group code.
        code: String,
    },
    /// Add members.
    AddMembers {
        /// Group code.
        code: String,
        /// A member (repeatable).
        #[arg(long = "member", required = true)]
        members: Vec<String>,
    },
    /// Remove a member.
    RemoveMember {
        /// Group code.
        code: String,
        /// The member.
        member: String,
    },
}

/// The mimalloc setting the server runs with unless the operator set it: arenas committed on
/// demand, so that memory freed after a burst goes back to the system.
const ALLOCATOR_ENV: (&str, &str) = ("MIMALLOC_ARENA_EAGER_COMMIT", "0");

/// mimalloc reserves its first arena before `main` and, on Linux, commits it eagerly by default,
/// which keeps freed memory resident: peak RSS under load was 160 MiB per security server
/// against 92 MiB with on-demand commit, at the same throughput (docs/performance.md). The option
/// is read from the environment only at that point, and this crate forbids the unsafe code a
/// constructor would need, so the process replaces itself once (same pid) with the variable set.
fn reexec_with_allocator_options() {
    use std::os::unix::process::CommandExt;
    let (var, value) = ALLOCATOR_ENV;
    if std::env::var_os(var).is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let mut cmd = std::process::Command::new(exe);
    if let Some(arg0) = args.next() {
        cmd.arg0(arg0);
    }
    let err = cmd.args(args).env(var, value).exec();
    eprintln!("warning: could not restart with {var}={value} ({err}); using mimalloc's defaults");
}

fn main() -> ExitCode {
    reexec_with_allocator_options();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    trustbus_pki::tls::install_ring_provider();
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("security-server: {e}");
            ExitCode::FAILURE
        }
    }
}

fn pin(env: &str) -> Result<String, String> {
    std::env::var(env).map_err(|_| format!("set the token PIN in the environment variable {env}"))
}

fn run(cmd: Command) -> Result<(), String> {
    match cmd {
        Command::Init {
            dir,
            owner,
            server_code,
            anchor,
            name,
        } => init(&dir, &owner, &server_code, &anchor, name),
        Command::AddMember {
            config,
            member,
            name,
        } => add_member(
            &Config::load(&config).map_err(|e| e.to_string())?,
            &member,
            name,
        ),
        Command::ImportCert { file, config } => {
            import_cert(&file, &Config::load(&config).map_err(|e| e.to_string())?)
        }
        Command::Serve { config } => serve(&config),
        Command::Register {
            config,
            address,
            management_url,
        } => register(
            Config::load(&config).map_err(|e| e.to_string())?,
            &address,
            management_url,
        ),
        Command::ApiKey { role } => api_key(&role),
        Command::Status { config } => status(&Config::load(&config).map_err(|e| e.to_string())?),
        Command::Clients { admin, action } => admin_call(&admin, clients_request(action)?),
        Command::Services { admin, action } => admin_call(&admin, services_request(action)?),
        Command::Access { admin, action } => admin_call(&admin, access_request(action)?),
        Command::LocalGroups { admin, action } => admin_call(&admin, groups_request(action)),
        Command::Keys { admin, action } => keys_command(&admin, action),
        Command::Certificates { admin, action } => {
            use http::Method;
            let req = match action {
                CertificatesAction::List => (Method::GET, "certificates".into(), None),
                CertificatesAction::Import { file } => {
                    let pem = std::fs::read_to_string(&file)
                        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
                    (
                        Method::POST,
                        "certificates".into(),
                        Some(serde_json::json!({ "pem": pem })),
                    )
                }
            };
            admin_call(&admin, req)
        }
        Command::Registration { admin, action } => {
            use http::Method;
            let req = match action {
                RegistrationAction::Submit {
                    client: Some(c), ..
                } => (Method::POST, format!("clients/{c}/registration"), None),
                RegistrationAction::Submit { address, .. } => (
                    Method::POST,
                    "registration".into(),
                    Some(serde_json::json!({ "address": address })),
                ),
                RegistrationAction::Status { client: Some(c) } => {
                    (Method::GET, format!("clients/{c}/registration"), None)
                }
                RegistrationAction::Status { client: None } => {
                    (Method::GET, "registration".into(), None)
                }
            };
            admin_call(&admin, req)
        }
        Command::Diagnostics {
            admin,
            connection,
            timestamping,
        } => {
            let path = match (connection, timestamping) {
                (Some(s), _) => format!("diagnostics/connection?server={s}"),
                (None, true) => "diagnostics/timestamping".to_owned(),
                (None, false) => "diagnostics".to_owned(),
            };
            admin_call(&admin, (http::Method::GET, path, None))
        }
    }
}

/// One admin API call: method, path below `/api/v1/`, JSON body.
type AdminRequest = (http::Method, String, Option<serde_json::Value>);

/// `keys list|generate`; `generate --csr-out` also writes the CSR to a file.
fn keys_command(args: &AdminArgs, action: KeysAction) -> Result<(), String> {
    use http::Method;
    match action {
        KeysAction::List => admin_call(args, (Method::GET, "keys".into(), None)),
        KeysAction::Generate {
            usage,
            member,
            name,
            csr_out,
        } => {
            let body = serde_json::json!({ "usage": usage, "member": member, "name": name });
            let v = admin_value(args, (Method::POST, "keys".into(), Some(body)))?;
            if let Some(f) = csr_out {
                let csr = v["csr"].as_str().unwrap_or_default();
                std::fs::write(&f, csr)
                    .map_err(|e| format!("cannot write {}: {e}", f.display()))?;
                eprintln!("wrote the CSR to {}", f.display());
            }
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            Ok(())
        }
    }
}

/// Makes the call and prints the JSON answer; an error answer is printed to stderr and fails
/// the command (a failed diagnostics test prints its JSON too).
fn admin_call(args: &AdminArgs, req: AdminRequest) -> Result<(), String> {
    let v = admin_value(args, req)?;
    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    Ok(())
}

/// Makes the call; the JSON answer.
fn admin_value(
    args: &AdminArgs,
    (method, path, body): AdminRequest,
) -> Result<serde_json::Value, String> {
    use trustbus_security_server::adminclient::{
        ADMIN_URL_ENV, API_KEY_ENV, AdminClient, DEFAULT_ADMIN_URL,
    };
    let url = args
        .admin_url
        .clone()
        .or_else(|| std::env::var(ADMIN_URL_ENV).ok())
        .unwrap_or_else(|| DEFAULT_ADMIN_URL.to_owned());
    let key = args
        .api_key
        .clone()
        .or_else(|| std::env::var(API_KEY_ENV).ok())
        .ok_or_else(|| format!("give --api-key or set {API_KEY_ENV}"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let client = AdminClient::new(&url, &key);
    match rt.block_on(client.call(method, &path, body.as_ref())) {
        Ok(v) => Ok(v),
        Err(e) => {
            if let Some(b) = e.body.as_ref().filter(|b| b.get("ok").is_some()) {
                println!("{}", serde_json::to_string_pretty(b).unwrap_or_default());
            }
            Err(e.to_string())
        }
    }
}

/// `METHOD /path` → `{"method", "path"}`.
fn endpoint_args(v: &[String]) -> Result<Vec<serde_json::Value>, String> {
    v.iter()
        .map(|e| {
            let (m, p) = e.trim().split_once(' ').ok_or_else(|| {
                format!("endpoint {e:?}: write METHOD /path, e.g. \"GET /persons/*\"")
            })?;
            Ok(serde_json::json!({ "method": m, "path": p.trim() }))
        })
        .collect()
}

fn connection_arg(c: &str) -> Result<serde_json::Value, String> {
    match c {
        "http" | "https" | "https-auth" => Ok(c.into()),
        _ => Err(format!("--connection {c}: use http, https or https-auth")),
    }
}

fn clients_request(a: ClientsAction) -> Result<AdminRequest, String> {
    use http::Method;
    use serde_json::json;
    Ok(match a {
        ClientsAction::List => (Method::GET, "clients".into(), None),
        ClientsAction::Add {
            id,
            connection,
            is_certs,
            no_unverified_user_id,
        } => {
            let mut b = json!({ "id": id, "is_certs": is_certs, "allow_unverified_user_id": !no_unverified_user_id });
            if let Some(c) = connection {
                b["connection"] = connection_arg(&c)?;
            }
            (Method::POST, "clients".into(), Some(b))
        }
        ClientsAction::Update {
            id,
            connection,
            is_certs,
        } => {
            let mut b = json!({});
            if let Some(c) = connection {
                b["connection"] = connection_arg(&c)?;
            }
            if !is_certs.is_empty() {
                b["is_certs"] = json!(is_certs);
            }
            (Method::PUT, format!("clients/{id}"), Some(b))
        }
        ClientsAction::Remove { id } => (Method::DELETE, format!("clients/{id}"), None),
    })
}

fn services_request(a: ServicesAction) -> Result<AdminRequest, String> {
    use http::Method;
    use serde_json::json;
    Ok(match a {
        ServicesAction::List => (Method::GET, "services".into(), None),
        ServicesAction::Add {
            kind,
            id,
            provider,
            url,
            endpoints,
            openapi_url,
            wsdl_url,
            tls_ca,
        } => {
            let mut b = json!({ "kind": kind });
            for (k, v) in [
                ("id", id),
                ("provider", provider),
                ("url", url),
                ("openapi_url", openapi_url),
                ("wsdl_url", wsdl_url),
                ("tls_ca", tls_ca.map(|p| p.display().to_string())),
            ] {
                if let Some(v) = v {
                    b[k] = v.into();
                }
            }
            if !endpoints.is_empty() {
                b["endpoints"] = endpoint_args(&endpoints)?.into();
            }
            (Method::POST, "services".into(), Some(b))
        }
        ServicesAction::Update { id, url, endpoints } => {
            let mut b = json!({});
            if let Some(u) = url {
                b["url"] = u.into();
            }
            if !endpoints.is_empty() {
                b["endpoints"] = endpoint_args(&endpoints)?.into();
            }
            (Method::PUT, format!("services/{id}"), Some(b))
        }
        ServicesAction::Remove { id } => (Method::DELETE, format!("services/{id}"), None),
        ServicesAction::Enable { id } => (Method::POST, format!("services/{id}/enable"), None),
        ServicesAction::Disable { id, notice } => (
            Method::POST,
            format!("services/{id}/disable"),
            Some(json!({ "notice": notice })),
        ),
        ServicesAction::Refresh { id } => (Method::POST, format!("services/{id}/refresh"), None),
    })
}

fn access_request(a: AccessAction) -> Result<AdminRequest, String> {
    use http::Method;
    use serde_json::json;
    let body = |service: String, subject: String, endpoints: Vec<String>| {
        Ok::<_, String>(
            json!({ "service": service, "subject": subject, "endpoints": endpoint_args(&endpoints)? }),
        )
    };
    Ok(match a {
        AccessAction::List { service } => (
            Method::GET,
            match service {
                Some(s) => format!("access-rights?service={s}"),
                None => "access-rights".into(),
            },
            None,
        ),
        AccessAction::Grant {
            service,
            subject,
            endpoints,
        } => (
            Method::POST,
            "access-rights".into(),
            Some(body(service, subject, endpoints)?),
        ),
        AccessAction::Revoke {
            service,
            subject,
            endpoints,
        } => (
            Method::POST,
            "access-rights/revoke".into(),
            Some(body(service, subject, endpoints)?),
        ),
    })
}

fn groups_request(a: GroupsAction) -> AdminRequest {
    use http::Method;
    use serde_json::json;
    match a {
        GroupsAction::List => (Method::GET, "local-groups".into(), None),
        GroupsAction::Create { code, members } => (
            Method::POST,
            "local-groups".into(),
            Some(json!({ "code": code, "members": members })),
        ),
        GroupsAction::Delete { code } => (Method::DELETE, format!("local-groups/{code}"), None),
        GroupsAction::AddMembers { code, members } => (
            Method::POST,
            format!("local-groups/{code}/members"),
            Some(json!({ "members": members })),
        ),
        GroupsAction::RemoveMember { code, member } => (
            Method::DELETE,
            format!("local-groups/{code}/members/{member}"),
            None,
        ),
    }
}

fn write_new(path: &Path, data: &[u8]) -> Result<(), String> {
    if path.exists() {
        return Err(format!("{} already exists", path.display()));
    }
    std::fs::write(path, data).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn init(
    dir: &Path,
    owner: &str,
    server_code: &str,
    anchor: &Path,
    name: Option<String>,
) -> Result<(), String> {
    let owner = ClientId::from_slash(owner).map_err(|e| format!("--owner: {e}"))?;
    let server =
        SecurityServerId::new(&owner, server_code).map_err(|e| format!("--server-code: {e}"))?;
    let pin = pin("TRUSTBUS_SS_PIN")?;
    let anchor_bytes =
        std::fs::read(anchor).map_err(|e| format!("cannot read {}: {e}", anchor.display()))?;
    Anchor::from_bytes(&anchor_bytes).map_err(|e| format!("anchor: {e}"))?;
    let data = dir.join("data");
    let certs = data.join("certs");
    std::fs::create_dir_all(&certs).map_err(|e| e.to_string())?;
    write_new(&dir.join("anchor.json"), &anchor_bytes)?;
    let token = SoftToken::open(data.join("token")).map_err(|e| e.to_string())?;
    let name = name.unwrap_or_else(|| owner.member_code().to_owned());
    for (id, subject, file) in [
        (
            identity::AUTH_KEY_ID,
            trustbus_pki::profile::auth_subject(&server, &name).map_err(|e| e.to_string())?,
            "auth.csr.pem",
        ),
        (
            identity::SIGN_KEY_ID,
            trustbus_pki::profile::sign_subject(&owner, &name).map_err(|e| e.to_string())?,
            "sign.csr.pem",
        ),
    ] {
        let key = KeyPair::generate(KeyKind::EcdsaP256).map_err(|e| e.to_string())?;
        token
            .store(
                id,
                &format!("{id} key of {}", server.to_slash()),
                &key,
                &pin,
            )
            .map_err(|e| e.to_string())?;
        let csr = key.csr_pem(&subject).map_err(|e| e.to_string())?;
        write_new(&certs.join(file), csr.as_bytes())?;
        println!("wrote {}", certs.join(file).display());
    }
    // The internal TLS certificate for the HTTPS client proxy (self-signed; information
    // systems pin it).
    let (ikey, icert) = identity::internal_tls_cert(vec!["localhost".into()])?;
    token
        .store(identity::INTERNAL_KEY_ID, "internal TLS key", &ikey, &pin)
        .map_err(|e| e.to_string())?;
    Certificate::write_pem_file(&certs.join(identity::INTERNAL_CERT_FILE), &[icert])
        .map_err(|e| e.to_string())?;
    let cfg = format!(
        "# Generated by `security-server init`; every option is described in\n\
         # configs/security-server.example.toml.\n\
         [server]\nowner = \"{}\"\nserver_code = \"{server_code}\"\ndata_dir = \"data\"\n\n\
         [globalconf]\nanchor = \"anchor.json\"\n",
        owner.to_slash()
    );
    write_new(&dir.join("security-server.toml"), cfg.as_bytes())?;
    println!("created {}", dir.join("security-server.toml").display());
    println!(
        "next: have the CSRs certified, then `security-server import-cert CERT.pem --config {}`",
        dir.join("security-server.toml").display()
    );
    Ok(())
}

fn add_member(cfg: &Config, member: &str, name: Option<String>) -> Result<(), String> {
    let member = ClientId::from_slash(member).map_err(|e| format!("--member: {e}"))?;
    if member.subsystem_code().is_some() {
        return Err("--member must be a member, not a subsystem".into());
    }
    let pin = pin(&cfg.token.pin_env)?;
    let token = SoftToken::open(cfg.token_dir()).map_err(|e| e.to_string())?;
    let id = identity::member_key_id(&member);
    let name = name.unwrap_or_else(|| member.member_code().to_owned());
    let subject = trustbus_pki::profile::sign_subject(&member, &name).map_err(|e| e.to_string())?;
    let key = KeyPair::generate(KeyKind::EcdsaP256).map_err(|e| e.to_string())?;
    let certs = cfg.server.data_dir.join("certs");
    std::fs::create_dir_all(&certs).map_err(|e| e.to_string())?;
    let csr_path = certs.join(format!("{id}.csr.pem"));
    let csr = key.csr_pem(&subject).map_err(|e| e.to_string())?;
    write_new(&csr_path, csr.as_bytes())?;
    token
        .store(
            &id,
            &format!("signing key of {}", member.to_slash()),
            &key,
            &pin,
        )
        .map_err(|e| e.to_string())?;
    println!("wrote {}", csr_path.display());
    println!("next: have it certified, then `security-server import-cert CERT.pem --config …`");
    Ok(())
}

fn import_cert(file: &Path, cfg: &Config) -> Result<(), String> {
    let certs = Certificate::read_file(file).map_err(|e| e.to_string())?;
    let server = cfg.server_id().map_err(|e| e.to_string())?;
    let ks = trustbus_security_server::keystore::KeyStore::open(
        server,
        &cfg.token_dir(),
        &cfg.server.data_dir.join("certs"),
        None,
    )?;
    // The chain is checked against the approved CAs when a global configuration copy is at
    // hand (before the first start there may be none).
    let view = global_conf_copy(cfg).map(trustbus_security_server::gcview::GcView::new);
    if view.is_none() {
        eprintln!(
            "warning: no global configuration downloaded yet; the issuing CA was not checked"
        );
    }
    let plan = ks
        .check_import(certs, view.as_ref(), trustbus_security_server::now())
        .map_err(|e| format!("{}: {}", e.code, e.message))?;
    let path = ks
        .install(&plan)
        .map_err(|e| format!("{}: {}", e.code, e.message))?;
    println!(
        "installed {} (key {}) as {}",
        plan.chain[0].subject(),
        plan.key_id,
        path.display()
    );
    Ok(())
}

/// The last verified global configuration in the data directory, if any.
fn global_conf_copy(
    cfg: &Config,
) -> Option<Arc<trustbus_central_server::confclient::GlobalConfiguration>> {
    let anchor = std::fs::read(&cfg.globalconf.anchor).ok()?;
    let anchor = Anchor::from_bytes(&anchor).ok()?;
    ConfClient::new(
        anchor,
        &cfg.globalconf_dir(),
        HttpFetcher::new(Duration::from_secs(10)),
        Box::new(CmsDirectoryVerifier),
    )
    .ok()?
    .current()
    .ok()
}

fn api_key(role: &str) -> Result<(), String> {
    use ring::rand::SecureRandom;
    if !matches!(role, "observer" | "system-administrator" | "auditor") {
        return Err(format!(
            "unknown role {role}: use observer, system-administrator or auditor"
        ));
    }
    let mut raw = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut raw)
        .map_err(|_| "no randomness".to_owned())?;
    let key = trustbus_pki::cert::to_hex(&raw);
    let hash = trustbus_pki::cert::to_hex(
        ring::digest::digest(&ring::digest::SHA256, key.as_bytes()).as_ref(),
    );
    println!("{key}");
    eprintln!("add to the configuration (the key above is shown only once):");
    eprintln!("[[api_keys]]\nsha256 = \"{hash}\"\nrole = \"{role}\"");
    Ok(())
}

fn status(cfg: &Config) -> Result<(), String> {
    let server = cfg.server_id().map_err(|e| e.to_string())?;
    println!("server {}", server.to_slash());
    for f in [identity::AUTH_CERT_FILE, identity::SIGN_CERT_FILE] {
        let p = cfg.server.data_dir.join("certs").join(f);
        match Certificate::read_file(&p) {
            Ok(c) if !c.is_empty() => println!(
                "{f}: {} (valid until {}, sha256 {})",
                c[0].subject(),
                c[0].not_after(),
                c[0].fingerprint_hex()
            ),
            _ => println!("{f}: missing"),
        }
    }
    let anchor = std::fs::read(&cfg.globalconf.anchor).map_err(|e| e.to_string())?;
    let anchor = Anchor::from_bytes(&anchor).map_err(|e| e.to_string())?;
    let client = ConfClient::new(
        anchor,
        &cfg.globalconf_dir(),
        HttpFetcher::new(Duration::from_secs(10)),
        Box::new(CmsDirectoryVerifier),
    )
    .map_err(|e| e.to_string())?;
    match client.current() {
        Ok(c) => println!(
            "global configuration version {} (expires {})",
            c.directory.version, c.directory.expires_at
        ),
        Err(f) => println!("global configuration: {} ({})", f.message, f.code),
    }
    Ok(())
}

fn register(cfg: Config, address: &str, management_url: Option<String>) -> Result<(), String> {
    use trustbus_security_server::management;
    let pin = pin(&cfg.token.pin_env)?;
    let server = cfg.server_id().map_err(|e| e.to_string())?;
    let identity = Identity::load(
        server,
        &cfg.token_dir(),
        &pin,
        &cfg.server.data_dir.join("certs"),
    )
    .map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        // The management service's address and TLS certificate, and the approved CAs' OCSP
        // responders, all come from global configuration.
        let anchor = std::fs::read(&cfg.globalconf.anchor).map_err(|e| e.to_string())?;
        let anchor = Anchor::from_bytes(&anchor).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(cfg.globalconf_dir()).map_err(|e| e.to_string())?;
        let client = ConfClient::new(
            anchor,
            &cfg.globalconf_dir(),
            HttpFetcher::new(Duration::from_secs(10)),
            Box::new(CmsDirectoryVerifier),
        )
        .map_err(|e| e.to_string())?;
        if let Err(e) = client.poll().await {
            tracing::warn!(error = %e, "global configuration download failed; using the last good copy");
        }
        let conf = client.current().map_err(|f| f.message)?;
        let service = conf
            .private
            .as_ref()
            .map(|p| p.management_service.clone())
            .ok_or("global configuration names no management service")?;
        let base = management_url.unwrap_or_else(|| service.address.clone());
        let http = trustbus_security_server::httpc::HttpClient::new(Duration::from_secs(10));
        let view = trustbus_security_server::gcview::GcView::new(conf);
        identity
            .refresh_ocsp(&view, &http)
            .await
            .map_err(|e| format!("OCSP for our certificates: {e}"))?;
        let tls = trustbus_central_server::tlsconf::management_client_config(
            &service,
            &identity.auth.chain,
            &identity.auth.key,
        )
        .map_err(|e| e.to_string())?;
        let mut requests = vec![management::auth_cert_registration(&identity, address)];
        requests.extend(
            cfg.clients
                .iter()
                .map(|c| management::client_registration(&identity, &c.id)),
        );
        for r in requests {
            let what = format!("{:?}", r.request_type());
            let env = match management::envelope(&identity, r) {
                Ok(e) => e,
                Err(e) => {
                    println!("{what}: not sent: {e}");
                    continue;
                }
            };
            match management::submit(tls.clone(), &base, &env).await {
                Ok(answer) => println!("{what}: {answer}"),
                Err(e) => println!("{what}: refused: {e}"),
            }
        }
        Ok(())
    })
}

fn serve(path: &Path) -> Result<(), String> {
    // The text is kept so admin API changes can tell whether the file was edited since.
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let cfg = Config::from_file_text(&text, path).map_err(|e| e.to_string())?;
    let config_file = trustbus_security_server::confstore::ConfigFile::new(path, text);
    let pin = pin(&cfg.token.pin_env)?;
    let server = cfg.server_id().map_err(|e| e.to_string())?;
    let identity = Identity::load(
        server,
        &cfg.token_dir(),
        &pin,
        &cfg.server.data_dir.join("certs"),
    )
    .map_err(|e| e.to_string())?;
    let anchor = std::fs::read(&cfg.globalconf.anchor)
        .map_err(|e| format!("anchor {}: {e}", cfg.globalconf.anchor.display()))?;
    let anchor = Anchor::from_bytes(&anchor).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(cfg.globalconf_dir()).map_err(|e| e.to_string())?;
    // The durable message log; opening it runs crash recovery (blocking, before serving).
    // With `enabled = false` nothing is opened or created under `log_dir`.
    let log_dir = cfg.server.data_dir.join("messagelog");
    let ml = &cfg.message_log;
    let (log, payload_key) = if ml.enabled {
        let mut log_cfg = MessageLogConfig::new(&log_dir);
        log_cfg.durability = ml.durability.to_durability(ml.relaxed_max_delay_ms);
        if let Some(risk) = ml.durability.risk(ml.relaxed_max_delay_ms) {
            tracing::warn!("{risk}");
        }
        if ml.encrypt_payloads {
            let token = SoftToken::open(cfg.token_dir()).map_err(|e| e.to_string())?;
            let (key, created) = settings::payload_key_from_token(&token, &pin)?;
            if created {
                tracing::warn!(
                    key = key.id(),
                    "created the message-log payload key in the token; back the token up: \
                     without it the encrypted payloads cannot be read"
                );
            }
            tracing::info!(key = key.id(), "message-log payloads are encrypted at rest");
            log_cfg.payload_key = Some(Arc::new(key));
        }
        let payload_key = log_cfg.payload_key.clone();
        let log = Arc::new(MessageLog::open(log_cfg).map_err(|e| format!("message log: {e}"))?);
        (Some(log), payload_key)
    } else {
        tracing::warn!(
            "MESSAGE LOG SWITCHED OFF ([message_log] enabled = false): exchanges are NOT \
             recorded, no evidence exists and no exchange through this server can be proven; \
             no timestamping, no archiving, the auditor API answers 503. For benchmarks and \
             test environments only"
        );
        (None, None)
    };
    let identity = Arc::new(identity);
    // The PIN stays in memory for key generation through the admin API (see keystore.rs).
    let keys = trustbus_security_server::keystore::KeyStore::open(
        identity.server.clone(),
        &cfg.token_dir(),
        &cfg.server.data_dir.join("certs"),
        Some(pin),
    )?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.server.effective_worker_threads())
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let client = Arc::new(
            ConfClient::new(
                anchor,
                &cfg.globalconf_dir(),
                HttpFetcher::new(Duration::from_secs(10)),
                Box::new(CmsDirectoryVerifier),
            )
            .map_err(|e| e.to_string())?,
        );
        if let Err(e) = client.poll().await {
            tracing::warn!(error = %e, "first global configuration download failed");
        }
        let interval = Duration::from_secs(cfg.globalconf.poll_interval_seconds.max(1));
        tokio::spawn(client.clone().run(interval));
        let cfg = Arc::new(cfg);
        let journal = log.clone();
        let (sink, auditor): (Arc<dyn MessageLogSink>, _) = match log {
            Some(log) => {
                let (sink, auditor) = start_message_log(
                    &cfg,
                    &client,
                    &identity,
                    log,
                    &log_dir,
                    payload_key,
                    interval,
                )?;
                (sink, Some(auditor))
            }
            None => (Arc::new(NoLog), None),
        };
        let mut state = AppState::new(cfg, identity, client, sink)
            .with_config_file(config_file)
            .with_keys(keys);
        state.auditor = auditor;
        let state = Arc::new(state);
        let (_, mut tasks) = trustbus_security_server::run::start(state)
            .await
            .map_err(|e| e.to_string())?;
        let outcome = tokio::select! {
            r = tasks.join_next() => match r {
                Some(Ok(Err(e))) => Err(e.to_string()),
                Some(Err(e)) => Err(e.to_string()),
                _ => Ok(()),
            },
            _ = shutdown() => Ok(()),
        };
        // Stop serving, then seal the journal: what was handed to the log is synced and ends
        // with a sync mark (message-log.md §6), instead of the process ending while the writer
        // thread still works.
        tasks.abort_all();
        if let Some(log) = journal
            && let Err(e) = log.shutdown().await
        {
            tracing::error!(error = %e, "message log did not close cleanly");
        }
        outcome
    })
}

/// Starts what runs on the durable message log (timestamping, archiving when configured) and
/// builds the sink the proxies log through and the auditor API over the log.
fn start_message_log(
    cfg: &Arc<Config>,
    client: &Arc<ConfClient<HttpFetcher>>,
    identity: &Arc<Identity>,
    log: Arc<MessageLog>,
    log_dir: &Path,
    payload_key: Option<Arc<trustbus_security_server::messagelog::PayloadKey>>,
    interval: Duration,
) -> Result<(Arc<dyn MessageLogSink>, axum::Router), String> {
    let settings = cfg.message_log.timestamping.clone();
    let timestamper = Arc::new(Timestamper::new(
        log.store().clone(),
        settings.to_config(&verification_conf(client)),
    ));
    tokio::spawn(timestamper.spawn());
    tokio::spawn(follow_globalconf(
        client.clone(),
        timestamper.clone(),
        settings,
        interval,
    ));
    if let Some(a) = &cfg.message_log.archive {
        let key = archive::ArchiveKey {
            signer: Arc::new(OwnerKey(identity.clone())),
            cert_der: identity.sign.cert().der().to_vec(),
            chain: identity.sign.chain[1..]
                .iter()
                .map(|c| c.der().to_vec())
                .collect(),
        };
        let every = Duration::from_secs(a.interval_seconds.max(1));
        tokio::spawn(archive::archive_periodically(
            log_dir.to_path_buf(),
            log.store().clone(),
            payload_key.clone(),
            a.to_config(),
            Arc::new(key),
            every.min(Duration::from_secs(60)),
            every,
        ));
    }
    let gc = client.clone();
    let auditor = trustbus_security_server::auditorapi::build(
        cfg.clone(),
        log.store().clone(),
        payload_key,
        Arc::new(move || {
            gc.current()
                .map(|c| {
                    c.files
                        .iter()
                        .map(|(n, b)| (n.clone(), b.clone()))
                        .collect()
                })
                .unwrap_or_default()
        }),
        &log_dir.join(trustbus_security_server::auditorapi::TRAIL_FILE),
    )
    .map_err(|e| format!("auditor trail: {e}"))?;
    Ok((Arc::new(JournalLog::new(log, timestamper.guard())), auditor))
}

/// The owner's signing key as the archiver's signer (the key stays in the identity).
struct OwnerKey(Arc<Identity>);

impl trustbus_pki::Signer for OwnerKey {
    fn algorithm(&self) -> trustbus_pki::SignatureAlgorithm {
        self.0.sign.key.algorithm()
    }
    fn public_key_der(&self) -> &[u8] {
        trustbus_pki::Signer::public_key_der(&self.0.sign.key)
    }
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, trustbus_pki::SignatureError> {
        self.0.sign.key.sign(message)
    }
}

/// The TSAs and timestamping interval of the current global configuration (none yet: an empty
/// set, so timestamping fails and, after its window, exchanges are refused: fail closed).
fn verification_conf(client: &ConfClient<HttpFetcher>) -> VerificationConf {
    client
        .current()
        .ok()
        .and_then(|c| c.files.get("shared-params.json").cloned())
        .and_then(|b| VerificationConf::from_shared_params(&b).ok())
        .unwrap_or_else(|| VerificationConf {
            instance: String::new(),
            ca_roots: Vec::new(),
            ca_intermediates: Vec::new(),
            tsas: Vec::new(),
            members: Vec::new(),
            ocsp_freshness_seconds: 0,
            // Retry soon: the first configuration may simply not have arrived yet.
            timestamping_interval_seconds: 10,
        })
}

/// Keeps the timestamper's TSAs and interval in step with global configuration.
async fn follow_globalconf(
    client: Arc<ConfClient<HttpFetcher>>,
    timestamper: Arc<Timestamper>,
    settings: TimestampSettings,
    every: Duration,
) {
    let mut seen = None;
    loop {
        tokio::time::sleep(every).await;
        let version = client.current().ok().map(|c| c.directory.version);
        if version.is_some() && version != seen {
            seen = version;
            timestamper.set_config(settings.to_config(&verification_conf(&client)));
        }
    }
}

/// Ctrl-C, SIGTERM, or (under `trustbus up`) the supervising process gone.
async fn shutdown() {
    let parent_gone = trustbus_central_server::supervised::parent_gone();
    #[cfg(unix)]
    {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
                () = parent_gone => {}
            }
            return;
        }
    }
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = parent_gone => {}
    }
}
