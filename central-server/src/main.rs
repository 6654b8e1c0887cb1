//! `central-server`: the governing authority's member registry and global configuration publisher.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use trustbus_central_server::api::{self, AppState};
use trustbus_central_server::config::Config;
use trustbus_central_server::globalconf::{GlobalConf, Publisher};
use trustbus_central_server::keys::KeyStore;
use trustbus_central_server::management::AutoApprove;
use trustbus_central_server::model::ManagementService;
use trustbus_central_server::registry::{Registry, Role};
use trustbus_central_server::tlsconf;
use trustbus_central_server::{Error, anchor, apply, util};

/// Trustbus central server.
///
/// Keeps the member registry, receives signed management requests and publishes the signed
/// global configuration that every security server trusts.
#[derive(Parser)]
#[command(version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a configuration file, a data directory and the first configuration-signing key.
    Init {
        /// Directory to create the configuration in (`central-server.toml`, `data/`).
        #[arg(long)]
        dir: PathBuf,
        /// Instance identifier.
        #[arg(long)]
        instance: String,
    },
    /// Run the server.
    Serve {
        /// Configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Make the registry match a whole-instance description (the server must be stopped: the
    /// registry is opened directly). Prints what changed; a second run prints no changes.
    Apply {
        /// Instance description (TOML).
        file: PathBuf,
        /// Configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Write the configuration anchor and print its SHA-256.
    Anchor {
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        /// Configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// API key management (the server must be stopped; with a running server use the API).
    ApiKey {
        #[command(subcommand)]
        command: ApiKeyCommand,
    },
}

#[derive(Subcommand)]
enum ApiKeyCommand {
    /// Create a key and print it once.
    Create {
        /// observer, registration-officer or system-administrator.
        #[arg(long)]
        role: String,
        /// Configuration file.
        #[arg(long)]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
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
            eprintln!("central-server: {e} ({})", e.code());
            ExitCode::FAILURE
        }
    }
}

/// Opens the registry and makes sure the active signing key exists.
fn open(config: &Config) -> Result<(Arc<Registry>, KeyStore), Error> {
    let registry = Arc::new(Registry::open(&config.registry_path(), &config.instance)?);
    let keys = config.key_store()?;
    let signing = registry.snapshot().signing;
    if signing.active == 0 {
        keys.generate(1, &config.instance)?;
        registry.mutate(|s| {
            s.signing.active = 1;
            Ok(())
        })?;
    } else if !keys.exists(signing.active) {
        return Err(Error::Config(format!(
            "the active signing key {} is missing from {}",
            signing.active,
            config.keys_path().display()
        )));
    }
    Ok((registry, keys))
}

fn run(cmd: Command) -> Result<(), Error> {
    match cmd {
        Command::Init { dir, instance } => init(&dir, &instance),
        Command::Serve { config } => serve(&Config::load(&config)?),
        Command::Apply { file, config } => {
            let config = Config::load(&config)?;
            let text = std::fs::read_to_string(&file)
                .map_err(|e| Error::Config(format!("cannot read {}: {e}", file.display())))?;
            let desc = apply::InstanceFile::parse(&text)?;
            let (registry, _) = open(&config)?;
            let changes = apply::apply(&registry, &desc)?;
            if changes.is_empty() {
                println!("no changes");
            } else {
                for c in &changes {
                    println!("{c}");
                }
                println!("{} change(s) applied", changes.len());
            }
            Ok(())
        }
        Command::Anchor { out, config } => {
            let config = Config::load(&config)?;
            let (registry, keys) = open(&config)?;
            let signing = registry.snapshot().signing;
            let mut certs = vec![keys.certificate(signing.active)?];
            if let Some(n) = signing.next {
                certs.push(keys.certificate(n)?);
            }
            let a = anchor::Anchor::new(&config.instance, config.download_urls(), &certs);
            let bytes = a.to_bytes()?;
            trustbus_central_server::globalconf::publish::write_file_durably(&out, &bytes)?;
            println!("anchor written to {}", out.display());
            println!("sha256 {}", util::sha256_hex(&bytes));
            Ok(())
        }
        Command::ApiKey {
            command: ApiKeyCommand::Create { role, config },
        } => {
            let role = Role::parse(&role).ok_or_else(|| {
                Error::BadRequest(format!(
                    "unknown role {role}: use observer, registration-officer or system-administrator"
                ))
            })?;
            let config = Config::load(&config)?;
            let (registry, _) = open(&config)?;
            let (key, rec) = api::new_api_key(role)?;
            registry.mutate(|s| {
                s.api_keys.insert(rec.id.clone(), rec.clone());
                Ok(())
            })?;
            let _ = registry
                .audit()
                .record(trustbus_central_server::registry::AuditEntry {
                    id: 0,
                    at: util::rfc3339(util::now()),
                    actor: "cli".into(),
                    action: "api_key.create".into(),
                    target: rec.id,
                    result: "ok".into(),
                    detail: role.as_str().into(),
                    correlation_id: String::new(),
                });
            println!("{key}");
            Ok(())
        }
    }
}

fn init(dir: &Path, instance: &str) -> Result<(), Error> {
    trustbus_sdk::id::validate_segment("instance", instance)
        .map_err(|e| Error::BadRequest(e.to_string()))?;
    std::fs::create_dir_all(dir)?;
    let path = dir.join("central-server.toml");
    if path.exists() {
        return Err(Error::AlreadyExists(format!("{}", path.display())));
    }
    let text = format!(
        "# Generated by `central-server init`; every option is described in\n\
         # configs/central-server.example.toml.\n\
         instance = \"{instance}\"\n\
         data_dir = \"data\"\n"
    );
    // Check the PIN before writing anything, so a missing PIN leaves no half-made directory.
    let probe: Config = toml::from_str(&text).map_err(|e| Error::Internal(e.to_string()))?;
    if std::env::var_os(&probe.keys.pin_env).is_none_or(|v| v.is_empty()) {
        return Err(Error::Config(format!(
            "set the key token PIN in the environment variable {} first; \
             the same variable must be set for `serve`",
            probe.keys.pin_env
        )));
    }
    trustbus_central_server::globalconf::publish::write_file_durably(&path, text.as_bytes())?;
    let config = Config::load(&path)?;
    open(&config)?;
    println!(
        "configuration-signing key 1 created, encrypted with the PIN from {}",
        config.keys.pin_env
    );
    println!("created {}", path.display());
    println!(
        "next: central-server apply INSTANCE.toml --config {}",
        path.display()
    );
    println!(
        "      central-server api-key create --role system-administrator --config {}",
        path.display()
    );
    println!("      central-server serve --config {}", path.display());
    Ok(())
}

async fn shutdown_signal(mut rx: tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

fn serve(config: &Config) -> Result<(), Error> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let (registry, keys) = open(config)?;
        // Decrypt the active signing key first: a wrong PIN stops here, before anything is
        // generated. Then the management TLS identity (generated on first start) and the
        // optional HTTPS ones.
        keys.load_signer(registry.snapshot().signing.active)?;
        let mgmt = keys.management_tls(&config.instance)?;
        let mgmt_tls = tlsconf::management_server_config(registry.clone(), &mgmt.key, &mgmt.cert)?;
        let https = |section: &str, cert: &Option<PathBuf>, key: &Option<PathBuf>| {
            Ok::<_, Error>(
                match trustbus_central_server::config::https_pair(section, cert, key)? {
                    Some((c, k)) => api::Transport::Https(tlsconf::https_server_config(c, k)?),
                    None => api::Transport::Http,
                },
            )
        };
        let admin_transport = https(
            "admin",
            &config.admin.tls_cert_file,
            &config.admin.tls_key_file,
        )?;
        let public_transport = https(
            "globalconf",
            &config.globalconf.tls_cert_file,
            &config.globalconf.tls_key_file,
        )?;
        let publisher = Publisher::open(&config.publish_path(), config.globalconf.keep_versions)?;
        let auto: Vec<String> = config
            .management
            .auto_approve
            .iter()
            .map(|t| t.as_str().to_owned())
            .collect();
        let globalconf = Arc::new(GlobalConf::new(
            registry.clone(),
            keys,
            publisher,
            ManagementService {
                address: config.management_address(),
                tls_cert: Some(util::b64(&mgmt.cert)),
                tls_ca_cert: Some(util::b64(&mgmt.ca)),
            },
            auto,
        ));
        // Always publish a fresh version on start: the registry may have been changed by
        // `apply` while the server was stopped, and the old version may be close to expiry.
        globalconf.regenerate()?;
        let state = AppState {
            registry,
            globalconf: globalconf.clone(),
            auto_approve: Arc::new(AutoApprove(config.management.auto_approve.clone())),
            refresh_interval_seconds: config.globalconf.refresh_interval_seconds,
            max_management_body: config.management.max_body_bytes,
        };
        let (tx, rx) = tokio::sync::watch::channel(false);
        let check = Duration::from_secs(config.globalconf.check_interval_seconds.max(1));
        let gc = globalconf.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(check).await;
                let gc = gc.clone();
                match tokio::task::spawn_blocking(move || gc.refresh()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::error!(error = %e, "re-signing failed"),
                    Err(e) => tracing::error!(error = %e, "re-signing task failed"),
                }
            }
        });
        let servers = [
            (
                "globalconf",
                config.globalconf.listen.clone(),
                api::public_router(state.clone()),
                public_transport,
                false,
            ),
            (
                "admin",
                config.admin.listen.clone(),
                api::admin_router(state.clone()),
                admin_transport,
                false,
            ),
            (
                "management",
                config.management.listen.clone(),
                api::management_router(state.clone()),
                api::Transport::Https(mgmt_tls),
                true,
            ),
        ];
        let mut tasks = tokio::task::JoinSet::new();
        for (name, addr, router, transport, peer_info) in servers {
            let rx = rx.clone();
            tasks.spawn(async move {
                api::serve(
                    name,
                    &addr,
                    router,
                    transport,
                    peer_info,
                    shutdown_signal(rx),
                )
                .await
            });
        }
        tokio::spawn(async move {
            let ctrl_c = tokio::signal::ctrl_c();
            #[cfg(unix)]
            {
                let mut term =
                    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    {
                        Ok(t) => t,
                        Err(_) => {
                            let _ = ctrl_c.await;
                            let _ = tx.send(true);
                            return;
                        }
                    };
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                    () = trustbus_central_server::supervised::parent_gone() => {}
                }
            }
            #[cfg(not(unix))]
            tokio::select! {
                _ = ctrl_c => {}
                () = trustbus_central_server::supervised::parent_gone() => {}
            }
            let _ = tx.send(true);
        });
        // The first listener that fails (for example a port in use) stops the server.
        while let Some(r) = tasks.join_next().await {
            r.map_err(|e| Error::Internal(e.to_string()))??;
        }
        Ok(())
    })
}
