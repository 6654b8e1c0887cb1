//! `trustbus up`: a complete development instance on loopback, with its state in one directory.
//!
//! In this process: the development CA's OCSP responder and TSA, the example services and the
//! example OpenID provider. As child processes (the binaries built next to `trustbus`): the
//! central server and two security servers, set up with the same commands an operator uses.
//! The first run creates everything; later runs reuse the directory (same ports, keys and
//! identifiers) and only start the servers.

mod central;
mod children;
mod endpoints;
mod evidence;
mod examples;
mod layout;
mod oidc;
mod plan;
mod secserver;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::watch;
use trustbus_pki::devca::DevCa;

use children::Children;
use layout::{Layout, State};

/// Why `trustbus up` could not start or keep the instance running.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpError {
    /// A setup step failed; the message says which and what to do.
    #[error("{0}")]
    Setup(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}

impl UpError {
    /// Maps an I/O error on `path`.
    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> UpError + '_ {
        move |source| UpError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// Settings of the instance given on the command line.
#[derive(Debug, Clone, Default)]
pub(crate) struct Options {
    /// `[message_log.timestamping] failure_window_seconds` of the security servers (their
    /// default, 600 s, when `None`).
    pub(crate) timestamping_failure_window: Option<u64>,
    /// `--message-log off`: `[message_log] enabled = false` in the security servers' files.
    pub(crate) message_log_off: bool,
    /// `--worker-threads`: `[server] worker_threads` of each security server.
    pub(crate) worker_threads: Option<usize>,
    /// `--echo-backend`: the URL the `echo` service calls instead of the instance's own echo.
    pub(crate) echo_backend: Option<String>,
}

/// An `http://` URL with nothing that would need quoting in the TOML file it is written to.
fn valid_echo_backend(url: &str) -> bool {
    url.strip_prefix("http://").is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .chars()
                .all(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\\'))
    })
}

/// Runs the instance in `dir` until Ctrl-C or SIGTERM.
pub(crate) fn run(dir: &Path, options: &Options) -> Result<(), UpError> {
    if let Some(url) = &options.echo_backend
        && !valid_echo_backend(url)
    {
        return Err(UpError::Setup(format!(
            "--echo-backend {url}: expected an http:// URL (the development servers call it \
             without TLS)"
        )));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| UpError::Setup(format!("cannot start the runtime: {e}")))?;
    rt.block_on(async {
        // Handlers first, so a signal during setup also stops the children started so far.
        let mut signals = Signals::new()?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut children = Children::default();
        let result = tokio::select! {
            r = up(dir, options, &mut children, stop_rx) => r.map(|()| true),
            () = signals.recv() => Ok(false),
        };
        if let Ok(true) = result {
            watch_children(&mut children, &mut signals).await;
        }
        if !children.is_empty() {
            eprintln!("trustbus up: stopping");
        }
        // Every exit path, success, error or signal, stops the children before returning.
        children.stop_all().await;
        let _ = stop_tx.send(true);
        result.map(|_| ())
    })
}

/// SIGINT (Ctrl-C) and SIGTERM.
struct Signals {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Self, UpError> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let err = |e: std::io::Error| UpError::Setup(format!("cannot handle signals: {e}"));
            Ok(Self {
                int: signal(SignalKind::interrupt()).map_err(err)?,
                term: signal(SignalKind::terminate()).map_err(err)?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Resolves when `rx` turns true (shutdown of the in-process servers).
async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

async fn up(
    dir: &Path,
    options: &Options,
    children: &mut Children,
    stop: watch::Receiver<bool>,
) -> Result<(), UpError> {
    let started = Instant::now();
    // Before anything is created: without the server binaries there is nothing to run.
    let central_bin = children::sibling_binary("central-server")?;
    let ss_bin = children::sibling_binary("security-server")?;
    children::check_commands(&ss_bin, &["init", "import-cert", "register", "serve"]).await?;
    let layout = Layout::new(dir)?;
    let codes: Vec<&str> = plan::SECURITY_SERVERS.iter().map(|s| s.code).collect();
    let (mut state, fresh) = State::load_or_create(&layout, &codes)?;
    state.check_ports_free()?;
    std::fs::create_dir_all(layout.logs()).map_err(UpError::io(&layout.logs()))?;
    eprintln!(
        "trustbus up: {} instance in {}",
        if fresh {
            "creating a new"
        } else {
            "starting the"
        },
        layout.dir.display()
    );

    let ca = Arc::new(dev_ca(&layout, &mut state)?);
    start_in_process(&layout, &state, ca.clone(), stop.clone()).await?;

    tracing::debug!(elapsed = ?started.elapsed(), "in-process services started");
    central::prepare(&layout, &mut state, &ca, &central_bin).await?;
    tracing::debug!(elapsed = ?started.elapsed(), "central server prepared");
    central::start(&layout, &state, &central_bin, children).await?;

    tracing::debug!(elapsed = ?started.elapsed(), "central server started");
    // The two security servers are set up side by side: most of the time goes into their
    // key derivations (PBKDF2), which run in separate processes.
    let ports = state.ports.security_servers.clone();
    for ss in &plan::SECURITY_SERVERS {
        state.ss_admin_key(&layout, ss.code)?;
    }
    state.auditor_key(&layout)?;
    let [(ss1, p1), (ss2, p2)] = [0, 1].map(|i| (&plan::SECURITY_SERVERS[i], &ports[i]));
    let (a, b) = tokio::join!(
        secserver::prepare(&layout, &state, &ca, ss1, p1, &ss_bin, options),
        secserver::prepare(&layout, &state, &ca, ss2, p2, &ss_bin, options),
    );
    record(&layout, &mut state, [a?, b?])?;
    tracing::debug!(elapsed = ?started.elapsed(), "security servers prepared");
    let (a, b) = tokio::join!(
        secserver::register(&layout, &state, ss1, p1, &ss_bin),
        secserver::register(&layout, &state, ss2, p2, &ss_bin),
    );
    record(&layout, &mut state, [a?, b?])?;
    tracing::debug!(elapsed = ?started.elapsed(), "security servers registered");
    let mut outputs = Vec::new();
    for ss in &plan::SECURITY_SERVERS {
        outputs.push(secserver::start(&layout, &state, ss, &ss_bin, children)?);
    }
    for (ss, lines) in plan::SECURITY_SERVERS.iter().zip(outputs.iter_mut()) {
        secserver::wait_started(&layout, ss, lines).await?;
    }

    tracing::debug!(elapsed = ?started.elapsed(), "security servers started");
    layout::write_file(
        &layout.soap_request(),
        &examples::soap_request().map_err(UpError::Setup)?,
    )?;
    let endpoints = endpoints::build(&layout, &state, children.pids());
    let json = serde_json::to_vec_pretty(&endpoints)
        .map_err(|e| UpError::Setup(format!("endpoints.json: {e}")))?;
    // API keys are inside, so the file is private to the user.
    layout::write_private(&layout.endpoints(), &json)?;
    if let Some(k) = &endpoints.api_keys.auditor {
        layout::write_private(
            &layout.auditor_header(),
            format!("Authorization: Bearer {k}\n").as_bytes(),
        )?;
    }

    let (client, request_id) = ready(&endpoints, Duration::from_secs(30)).await?;
    tracing::debug!(elapsed = ?started.elapsed(), "first exchange answered");
    // The third printed command exports this exchange's evidence: wait until it can (the
    // first timestamping round runs one interval after the servers start).
    // With the log off there is no evidence to wait for (and none to export).
    let record = if options.message_log_off {
        None
    } else {
        Some(
            evidence::prepare(
                &layout,
                &endpoints,
                &client,
                &request_id,
                Duration::from_secs(60),
            )
            .await?,
        )
    };
    tracing::debug!(elapsed = ?started.elapsed(), "first exchange timestamped");
    print_banner(&layout, &endpoints, record, started.elapsed());
    Ok(())
}

/// Records completed setup steps in `state.json`.
fn record<const N: usize>(
    layout: &Layout,
    state: &mut State,
    steps: [Option<String>; N],
) -> Result<(), UpError> {
    for step in steps.into_iter().flatten() {
        state.mark_done(layout, &step)?;
    }
    Ok(())
}

/// The development CA: created on the first run, opened afterwards.
fn dev_ca(layout: &Layout, state: &mut State) -> Result<DevCa, UpError> {
    let ca = if state.is_done("pki") {
        DevCa::open(&layout.pki())
    } else {
        let _ = std::fs::remove_dir_all(layout.pki());
        DevCa::init(&layout.pki(), plan::INSTANCE)
    }
    .map_err(|e| UpError::Setup(format!("development CA in {}: {e}", layout.pki().display())))?;
    state.mark_done(layout, "pki")?;
    Ok(ca)
}

/// Binds a loopback port chosen on the first run.
async fn bind(port: u16, what: &str) -> Result<TcpListener, UpError> {
    TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| UpError::Setup(format!("cannot listen on 127.0.0.1:{port} ({what}): {e}")))
}

/// Starts the trust services, example services and OpenID provider in this process.
async fn start_in_process(
    layout: &Layout,
    state: &State,
    ca: Arc<DevCa>,
    stop: watch::Receiver<bool>,
) -> Result<(), UpError> {
    let p = &state.ports;
    let services = trustbus_pki::serve::dev_services(ca)
        .map_err(|e| UpError::Setup(format!("development OCSP responder and TSA: {e}")))?;
    let l = bind(p.trust_services, "OCSP and TSA").await?;
    let s = stop.clone();
    tokio::spawn(async move {
        if let Err(e) = trustbus_pki::serve::serve(l, services, stopped(s)).await {
            tracing::error!(error = %e, "development trust services stopped");
        }
    });

    let l = bind(p.examples, "example services").await?;
    let s = stop.clone();
    tokio::spawn(async move {
        let r = axum::serve(l, examples::router())
            .with_graceful_shutdown(stopped(s))
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "example services stopped");
        }
    });

    let issuer = format!("http://127.0.0.1:{}", p.oidc);
    let provider = oidc::Provider::new(
        issuer,
        state.secrets.oidc_client_secret.clone(),
        &layout.oidc_key(),
    )?;
    let l = bind(p.oidc, "OpenID provider").await?;
    tokio::spawn(async move {
        let r = axum::serve(l, oidc::router(provider))
            .with_graceful_shutdown(stopped(stop))
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "example OpenID provider stopped");
        }
    });
    Ok(())
}

/// Waits until a REST call through both security servers succeeds: the instance is ready
/// when the first printed command works. Returns the client and the call's request id.
async fn ready(
    e: &endpoints::Endpoints,
    timeout: Duration,
) -> Result<
    (
        trustbus_sdk::client::BusClient<trustbus_sdk::client::HyperTransport>,
        String,
    ),
    UpError,
> {
    let client = trustbus_sdk::client::BusClient::builder(&e.client_proxy_url, plan::CONSUMER)
        .build()
        .map_err(|err| UpError::Setup(format!("readiness probe: {err}")))?;
    let service = plan::SERVICES[0].id;
    let path = format!("/{}", plan::EXAMPLE_PERSON);
    let deadline = Instant::now() + timeout;
    loop {
        let last = match client
            .rest(service, trustbus_sdk::client::Method::GET, &path)
            .send()
            .await
        {
            Ok(r) if r.is_success() => {
                return Ok((client, r.request_id.unwrap_or_default()));
            }
            Ok(r) => format!("HTTP {}: {}", r.status, r.text()),
            Err(err) => err.to_string(),
        };
        if Instant::now() > deadline {
            return Err(UpError::Setup(format!(
                "the instance did not become ready within {} s; the last probe answered: {last}\n\
                 (logs: {})",
                timeout.as_secs(),
                e.files.logs
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs until a signal; reports children that stop on their own meanwhile.
async fn watch_children(children: &mut Children, signals: &mut Signals) {
    loop {
        tokio::select! {
            () = signals.recv() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {
                for gone in children.exited() {
                    eprintln!("trustbus up: {gone}; the rest keeps running (see the logs)");
                }
            }
        }
    }
}

/// Prints what runs where and the commands to try; `record` is the consumer's log record of
/// the first exchange, whose evidence the third command exports (`None`: message log off).
fn print_banner(layout: &Layout, e: &endpoints::Endpoints, record: Option<u64>, took: Duration) {
    let cs = &e.central_server;
    let consumer = &e.security_servers[0];
    let person = plan::SERVICES[0].id;
    let mut out = format!(
        "\nTrustbus development instance {} is ready ({:.1} s). State: {}\n\n",
        e.instance,
        took.as_secs_f64(),
        e.dir
    );
    out.push_str(&format!(
        "  central server     admin API {}  global configuration {}\n\
         \x20                    management (mTLS) {}\n",
        cs.admin_api_url, cs.globalconf_url, cs.management_url
    ));
    for s in &e.security_servers {
        out.push_str(&format!(
            "  security server    {}  client proxy {}  admin {}\n",
            s.id, s.client_proxy_url, s.admin_url
        ));
    }
    out.push_str(&format!(
        "  development CA     OCSP {}  TSA {}\n\
         \x20 example services   {} (REST persons, SOAP getPerson) behind {}\n\
         \x20 OpenID provider    {} (development only: logs in {} without asking)\n\n\
         Machine-readable: {} (mode 0600: it holds the API keys). Logs: {}\n\n",
        e.trust_services.ocsp_url,
        e.trust_services.tsa_url,
        e.example_backends_url,
        e.security_servers[plan::PROVIDER].id,
        e.oidc_issuer,
        plan::CITIZEN,
        layout.endpoints().display(),
        e.files.logs,
    ));
    out.push_str(&format!(
        "Try:\n\n\
         \x20 # REST: the Ministry of Finance reads a person from the Population Register\n\
         \x20 curl -s -H 'X-Road-Client: {client}' {cp}/r1/{person}/{id}\n\n\
         \x20 # SOAP (X-Road message protocol 4.0): the same as getPerson\n\
         \x20 curl -s -H 'Content-Type: text/xml; charset=utf-8' --data-binary @{soap} {cp}/\n\n\
         {evidence}\
         Press Ctrl-C to stop.\n",
        client = plan::CONSUMER,
        cp = consumer.client_proxy_url,
        id = plan::EXAMPLE_PERSON,
        soap = e.files.soap_request,
        evidence = match record {
            Some(record) => format!(
                "\x20 # Evidence: export the first request from the consumer's message log through its\n\
                 \x20 # auditor API (signed, hash-chained, timestamped) and verify it offline\n\
                 \x20 curl -sf -H @{header} {auditor}/records/{record}/evidence -o evidence.asice && {trustbus} verify evidence.asice --conf {conf}\n\n",
                trustbus = std::env::current_exe()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|_| "trustbus".into()),
                header = e.files.auditor_header,
                auditor = consumer.auditor_url.as_deref().unwrap_or_default(),
                conf = layout.verification_conf().display(),
            ),
            None => "WARNING: --message-log off: the security servers record NOTHING; no exchange \
                     can be proven and there is no evidence to export.\n\n"
                .to_owned(),
        },
    ));
    println!("{out}");
}

#[cfg(test)]
mod option_tests {
    use super::valid_echo_backend;

    #[test]
    fn echo_backend_must_be_a_plain_http_url() {
        assert!(valid_echo_backend("http://127.0.0.1:8080/"));
        assert!(valid_echo_backend("http://localhost:1/echo"));
        for bad in [
            "https://127.0.0.1:8080/",
            "127.0.0.1:8080",
            "http://",
            "http://a b",
            "http://a\"b",
            "http://a\\b",
        ] {
            assert!(!valid_echo_backend(bad), "{bad}");
        }
    }
}
