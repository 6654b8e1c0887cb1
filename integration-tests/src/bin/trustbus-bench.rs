//! `trustbus-bench`: the same closed-loop load through the bus, a two-hop nginx mTLS chain and
//! the backend directly, in one run on one machine, printed as one table (or JSON).

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use serde::Serialize;
use trustbus_integration_tests::bus::{self, BusEndpoints};
use trustbus_integration_tests::load::{LargeReport, LoadReport};
use trustbus_integration_tests::nginx::{self, Chain, ChainPorts};
use trustbus_integration_tests::procstat;
use trustbus_integration_tests::promtext;

type Error = Box<dyn std::error::Error>;

/// Benchmark the bus against a direct call and a two-hop nginx mTLS chain, in the same run.
#[derive(Parser, Debug, Clone)]
#[command(name = "trustbus-bench")]
struct Args {
    /// Connections of the closed loop.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Measured seconds per target.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before measuring, per target.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Request body bytes.
    #[arg(long, default_value_t = 1024)]
    payload: usize,
    /// rest or soap (the baselines get the same request bytes).
    #[arg(long, default_value = "rest")]
    protocol: String,
    /// Run only these targets: bus, nginx, direct, bus-log-off (repeat or comma-separate).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Pace every target at this many requests/s instead of running flat out (for latency at
    /// a given load, e.g. half of the bus's maximum).
    #[arg(long)]
    rate: Option<f64>,
    /// After the bus row (flat out), run the bus again paced at half the rate it reached: the
    /// latency at half of the bus's maximum (issue #9 asks for a p99 under 5 ms there).
    #[arg(long)]
    half_load: bool,
    /// Print JSON instead of the table.
    #[arg(long)]
    json: bool,
    /// Also send one streamed body of this size (e.g. 1GiB) through each target and report
    /// time and peak RSS growth of every process.
    #[arg(long)]
    large: Option<String>,
    /// The `trustbus` command that provides `up` (default: next to this binary, then PATH).
    #[arg(long)]
    trustbus: Option<PathBuf>,
    /// Extra arguments for `trustbus up`; `{echo}` is replaced by the echo backend's URL.
    #[arg(long = "up-arg", allow_hyphen_values = true)]
    up_args: Vec<String>,
    /// Use an already running instance described by this endpoints.json instead of starting one.
    #[arg(long)]
    bus_endpoints: Option<PathBuf>,
    /// Override: the client proxy URL.
    #[arg(long)]
    bus_url: Option<String>,
    /// Override: the client id (slash form).
    #[arg(long)]
    bus_client: Option<String>,
    /// Override: the REST service id (slash form).
    #[arg(long)]
    bus_service: Option<String>,
    /// Override: the SOAP service id (slash form).
    #[arg(long)]
    bus_soap_service: Option<String>,
    /// The REST service given with --bus-service echoes POST bodies (so the bus row POSTs the
    /// same payload as the baselines).
    #[arg(long)]
    bus_echoes: bool,
    /// A process of an instance started elsewhere, as NAME=PID, whose CPU and RSS belong to
    /// the bus row (repeatable).
    #[arg(long = "bus-pid")]
    bus_pids: Vec<String>,
    /// When the instance has no echo service, the REST row calls its example register with GET
    /// on this path below the service (and the baselines get the same GET).
    #[arg(long, default_value = "/38001085718")]
    bus_rest_path: String,
    /// Seconds to rest between targets so one target's tail does not land in the next.
    #[arg(long, default_value_t = 2.0)]
    settle: f64,
    /// Keep the work directory (configs, PKI, logs, raw JSON).
    #[arg(long)]
    keep: bool,
}

/// A child process killed when dropped.
struct Guard {
    child: Child,
    name: &'static str,
}

impl Guard {
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        // SIGTERM first, so `trustbus up` can stop what it started; SIGKILL after 10 s.
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("{} did not stop on SIGTERM; killing it", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU and memory of one process over one cell.
#[derive(Debug, Clone, Serialize)]
struct ProcUsage {
    name: String,
    pid: u32,
    cpu_s: f64,
    cpu_s_per_1k: f64,
    peak_rss_mib: f64,
    rss_before_mib: f64,
}

/// One target's results.
#[derive(Debug, Clone, Serialize)]
struct Cell {
    target: String,
    load: LoadReport,
    processes: Vec<ProcUsage>,
    /// Busy CPU of the whole machine (all processes and the kernel) per 1,000 exchanges.
    machine_cpu_s_per_1k: f64,
    machine_busy_pct: f64,
    /// The security servers' own histograms over the load (bus rows only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    server_view: Vec<ServerHist>,
}

/// One histogram series of a security server, over one load (warm-up included).
#[derive(Debug, Clone, Serialize)]
struct ServerHist {
    /// `ss1`, `ss2`.
    server: String,
    /// What was timed: `exchange, consumer` or `log wait, provider request`.
    measure: String,
    count: u64,
    mean_ms: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Share of the observations above 5 ms (the p99 target), percent.
    over_5ms_pct: f64,
    /// The histogram's smallest bucket bound: a quantile at or below it only says "this or less".
    first_bucket_ms: f64,
}

/// The histogram families a security server's `/metrics` is read for, with how a series of
/// each is named.
const SERVER_HISTOGRAMS: [(&str, &str); 2] = [
    ("trustbus_ss_request_duration_seconds", "exchange"),
    ("trustbus_ss_message_log_wait_seconds", "log wait"),
];

/// Each security server's `/metrics` text (empty if it cannot be read).
fn scrape(metrics: &[(String, String)]) -> Vec<String> {
    metrics
        .iter()
        .map(|(_, url)| {
            trustbus_integration_tests::http("GET", url, &[], &[])
                .ok()
                .filter(|r| r.status == 200)
                .map(|r| r.text())
                .unwrap_or_default()
        })
        .collect()
}

/// What the security servers observed between two scrapes.
fn server_view(
    metrics: &[(String, String)],
    before: &[String],
    after: &[String],
) -> Vec<ServerHist> {
    let mut rows = Vec::new();
    for (((server, _), b), a) in metrics.iter().zip(before).zip(after) {
        for (family, what) in SERVER_HISTOGRAMS {
            let earlier = promtext::histograms(b, family);
            for (labels, h) in promtext::histograms(a, family) {
                let d = h.since(earlier.get(&labels));
                let (Some(mean), Some(p50), Some(p99), Some(over)) = (
                    d.mean(),
                    d.quantile(0.5),
                    d.quantile(0.99),
                    d.share_over(0.005),
                ) else {
                    continue;
                };
                let label: Vec<&str> = ["side", "record"]
                    .iter()
                    .filter_map(|k| labels.get(*k).map(String::as_str))
                    .collect();
                rows.push(ServerHist {
                    server: server.clone(),
                    measure: format!("{what}, {}", label.join(" ")),
                    count: d.count as u64,
                    mean_ms: mean * 1000.0,
                    p50_ms: p50 * 1000.0,
                    p99_ms: p99 * 1000.0,
                    over_5ms_pct: over * 100.0,
                    first_bucket_ms: d.buckets.first().map_or(0.0, |b| b.0) * 1000.0,
                });
            }
        }
    }
    rows
}

/// One target's large-body result.
#[derive(Debug, Clone, Serialize)]
struct LargeCell {
    target: String,
    report: LargeReport,
    processes: Vec<ProcUsage>,
}

#[derive(Debug, Serialize)]
struct Output {
    machine: String,
    protocol: String,
    concurrency: usize,
    rate: Option<f64>,
    duration_s: f64,
    payload_bytes: usize,
    cells: Vec<Cell>,
    missing: BTreeMap<String, String>,
    ratios: BTreeMap<String, f64>,
    large: Vec<LargeCell>,
    notes: Vec<String>,
    /// The backend behind the bus row's echo service: `trustbus-echo` (the baselines' process),
    /// `instance` (an older `trustbus up`'s own echo), `chosen with --up-arg` or `external`.
    bus_backend: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match real_main(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("trustbus-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn sibling(name: &str) -> Result<PathBuf, Error> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().ok_or("the executable has no directory")?;
    let p = dir.join(name);
    if p.exists() {
        Ok(p)
    } else {
        Err(format!(
            "{} not found; build it with `cargo build --release -p trustbus-integration-tests`",
            p.display()
        )
        .into())
    }
}

fn free_port() -> Result<u16, Error> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn start_echo(bin: &Path) -> Result<(Guard, String), Error> {
    let mut child = Command::new(bin)
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting {}: {e}", bin.display()))?;
    let out = child.stdout.take().ok_or("echo backend has no stdout")?;
    let guard = Guard {
        child,
        name: "trustbus-echo",
    };
    let mut line = String::new();
    BufReader::new(out).read_line(&mut line)?;
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .ok_or_else(|| format!("echo backend said `{}`", line.trim()))?
        .to_owned();
    Ok((guard, format!("http://{addr}")))
}

/// A started (or found) bus instance.
struct Bus {
    guard: Option<Guard>,
    endpoints: BusEndpoints,
    /// Which backend the bus's echo service calls (`Output::bus_backend`).
    backend: &'static str,
}

impl Bus {
    fn processes(&self) -> Vec<(String, u32)> {
        let mut p = match &self.guard {
            // `trustbus up` itself serves the example backends, OCSP and the TSA, so its CPU
            // belongs to the bus row too.
            Some(g) => {
                let mut v = vec![("trustbus-up".to_owned(), g.pid())];
                v.extend(bus::instance_processes(g.pid()));
                v
            }
            None => Vec::new(),
        };
        for (name, pid) in &self.endpoints.pids {
            // endpoints.json names the servers (`ss1`, `central-server`); prefer its names.
            if let Some(entry) = p.iter_mut().find(|(_, q)| q == pid) {
                entry.0 = name.clone();
            } else if Path::new(&format!("/proc/{pid}")).exists() {
                p.push((name.clone(), *pid));
            }
        }
        p
    }
}

fn find_trustbus(args: &Args) -> Option<PathBuf> {
    if let Some(p) = &args.trustbus {
        return Some(p.clone());
    }
    if let Ok(p) = sibling("trustbus") {
        return Some(p);
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("trustbus"))
            .find(|p| p.exists())
    })
}

fn apply_overrides(args: &Args, mut e: BusEndpoints) -> BusEndpoints {
    if let Some(v) = &args.bus_url {
        e.client_proxy = Some(v.trim_end_matches('/').to_owned());
    }
    if let Some(v) = &args.bus_client {
        e.client = Some(v.clone());
    }
    if let Some(v) = &args.bus_service {
        e.rest_service = Some(v.clone());
        e.rest_service_echoes = args.bus_echoes;
    }
    for np in &args.bus_pids {
        if let Some((name, pid)) = np.split_once('=')
            && let Ok(pid) = pid.parse()
        {
            e.pids.push((name.to_owned(), pid));
        }
    }
    if let Some(v) = &args.bus_soap_service {
        e.soap_service = Some(v.clone());
    }
    e
}

/// Starts `trustbus up --dir WORK/instance` (or reads a given endpoints.json); `Err` says why
/// the bus row will be missing.
fn start_bus(args: &Args, work: &Path, echo_url: &str) -> Result<Bus, String> {
    if let Some(f) = &args.bus_endpoints {
        let text = fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
        let doc = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", f.display()))?;
        return Ok(Bus {
            guard: None,
            endpoints: apply_overrides(args, bus::parse_up_endpoints(&doc)),
            backend: "external",
        });
    }
    if args.bus_url.is_some() {
        return Ok(Bus {
            guard: None,
            endpoints: apply_overrides(args, BusEndpoints::default()),
            backend: "external",
        });
    }
    let tb = find_trustbus(args).ok_or(
        "no `trustbus` binary (build `cargo build --release -p trustbus`, or pass --trustbus)",
    )?;
    let help = Command::new(&tb)
        .args(["up", "--help"])
        .output()
        .map_err(|e| format!("{}: {e}", tb.display()))?;
    if !help.status.success() {
        return Err(format!(
            "{} has no `up` command yet (the `up` branch is not merged into this build)",
            tb.display()
        ));
    }
    let dir = work.join("instance");
    let log = fs::File::create(work.join("trustbus-up.log")).map_err(|e| e.to_string())?;
    let log2 = log.try_clone().map_err(|e| e.to_string())?;
    let mut cmd = Command::new(&tb);
    cmd.arg("up").arg("--dir").arg(&dir);
    // The bus's echo service calls the same backend process as the baselines (unless the
    // caller chose one), so that every row does the same backend work.
    let help_text = String::from_utf8_lossy(&help.stdout);
    let backend = if args.up_args.iter().any(|a| a == "--echo-backend") {
        "chosen with --up-arg"
    } else if help_text.contains("--echo-backend") {
        cmd.arg("--echo-backend").arg(echo_url);
        "trustbus-echo"
    } else {
        "instance"
    };
    for a in &args.up_args {
        cmd.arg(a.replace("{echo}", echo_url));
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .spawn()
        .map_err(|e| format!("starting trustbus up: {e}"))?;
    let mut guard = Guard {
        child,
        name: "trustbus up",
    };
    let file = dir.join("endpoints.json");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(Some(st)) = guard.child.try_wait() {
            let tail = fs::read_to_string(work.join("trustbus-up.log")).unwrap_or_default();
            let lines: Vec<&str> = tail.lines().collect();
            let tail = lines[lines.len().saturating_sub(15)..].join("\n");
            return Err(format!(
                "`trustbus up` exited ({st}) before it was ready:\n{tail}"
            ));
        }
        if let Some(doc) = fs::read_to_string(&file)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        {
            let endpoints = apply_overrides(args, bus::parse_up_endpoints(&doc));
            return Ok(Bus {
                guard: Some(guard),
                endpoints,
                backend,
            });
        }
        if Instant::now() > deadline {
            return Err("`trustbus up` wrote no endpoints.json within 120 s".into());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Arguments for one loadgen run against `target`.
#[derive(Clone)]
struct Run<'a> {
    name: &'a str,
    url: String,
    client: String,
    service: String,
    bus: bool,
    check_echo: bool,
    procs: Vec<(String, u32)>,
    /// The run sends SOAP envelopes.
    service_is_soap: bool,
    /// The security servers' `/metrics` endpoints (bus rows), by name.
    metrics: Vec<(String, String)>,
}

/// The request shape shared by every target of a run.
struct Shape {
    get: bool,
    rest_path: String,
    payload: usize,
}

fn sample_before(procs: &[(String, u32)]) -> Vec<(f64, u64)> {
    procs
        .iter()
        .map(|(_, p)| {
            let cpu = procstat::cpu_seconds(*p).unwrap_or(0.0);
            let rss = procstat::rss_kib(*p).unwrap_or(0);
            // Peak RSS then covers this cell only; without the right to do it, the lifetime
            // peak is reported.
            procstat::reset_peak_rss(*p);
            (cpu, rss)
        })
        .collect()
}

fn usage_after(procs: &[(String, u32)], before: &[(f64, u64)], exchanges: u64) -> Vec<ProcUsage> {
    procs
        .iter()
        .zip(before)
        .map(|((name, pid), (cpu0, rss0))| {
            let cpu = procstat::cpu_seconds(*pid).unwrap_or(*cpu0) - cpu0;
            ProcUsage {
                name: name.clone(),
                pid: *pid,
                cpu_s: cpu,
                cpu_s_per_1k: per_1k(cpu, exchanges),
                peak_rss_mib: procstat::peak_rss_kib(*pid).unwrap_or(0) as f64 / 1024.0,
                rss_before_mib: *rss0 as f64 / 1024.0,
            }
        })
        .collect()
}

fn per_1k(cpu: f64, n: u64) -> f64 {
    if n == 0 { 0.0 } else { cpu / n as f64 * 1000.0 }
}

fn loadgen_cmd(bin: &Path, args: &Args, shape: &Shape, r: &Run<'_>) -> Command {
    let mut c = Command::new(bin);
    if shape.get {
        c.arg("--get");
    }
    c.args(["--rest-path", &shape.rest_path]);
    c.arg("--url")
        .arg(&r.url)
        .args(["--protocol", &args.protocol])
        .args(["--concurrency", &args.concurrency.to_string()])
        .args(["--duration", &args.duration.to_string()])
        .args(["--warmup", &args.warmup.to_string()])
        .args(["--payload", &shape.payload.to_string()])
        .args(["--client", &r.client])
        .args(["--service", &r.service]);
    if let Some(rate) = args.rate {
        c.args(["--rate", &rate.to_string()]);
    }
    if r.bus {
        c.arg("--bus");
    }
    if r.check_echo {
        c.arg("--check-echo");
    }
    c
}

fn run_cell(bin: &Path, args: &Args, shape: &Shape, r: &Run<'_>) -> Result<Cell, Error> {
    let before = sample_before(&r.procs);
    let scraped = scrape(&r.metrics);
    let m0 = procstat::machine_jiffies().unwrap_or((0, 0));
    let out = loadgen_cmd(bin, args, shape, r)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("running the load generator: {e}"))?;
    let m1 = procstat::machine_jiffies().unwrap_or((0, 0));
    let server_view = server_view(&r.metrics, &scraped, &scrape(&r.metrics));
    if !out.status.success() {
        return Err(format!(
            "the load generator failed against {} ({})",
            r.name, out.status
        )
        .into());
    }
    let load: LoadReport = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("load generator output for {}: {e}", r.name))?;
    let n = load.requests_total;
    let mut processes = usage_after(&r.procs, &before, n);
    processes.push(ProcUsage {
        name: "loadgen".into(),
        pid: 0,
        cpu_s: load.loadgen_cpu_s,
        cpu_s_per_1k: per_1k(load.loadgen_cpu_s, n),
        peak_rss_mib: load.loadgen_peak_rss_kib as f64 / 1024.0,
        rss_before_mib: 0.0,
    });
    let busy = m1.0.saturating_sub(m0.0) as f64;
    let total = m1.1.saturating_sub(m0.1) as f64;
    Ok(Cell {
        target: r.name.to_owned(),
        machine_cpu_s_per_1k: per_1k(busy / procstat::clock_ticks(), n),
        machine_busy_pct: if total > 0.0 {
            100.0 * busy / total
        } else {
            0.0
        },
        load,
        processes,
        server_view,
    })
}

/// Sends single requests until one succeeds (a fresh instance may still be propagating its
/// registrations through global configuration), for at most 90 s.
fn wait_ready(bin: &Path, shape: &Shape, r: &Run<'_>) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut last = String::new();
    while Instant::now() < deadline {
        let mut c = Command::new(bin);
        c.arg("--url")
            .arg(&r.url)
            .args(["--concurrency", "1", "--duration", "0.3", "--warmup", "0"])
            .args(["--payload", &shape.payload.to_string()])
            .args(["--rest-path", &shape.rest_path])
            .args(["--client", &r.client, "--service", &r.service, "--bus"]);
        if shape.get {
            c.arg("--get");
        }
        // The protocol of the probe is REST unless the run is SOAP.
        if r.service_is_soap {
            c.args(["--protocol", "soap"]);
        } else {
            c.args(["--protocol", "rest"]);
        }
        if let Ok(out) = c.stderr(Stdio::null()).output()
            && let Ok(rep) = serde_json::from_slice::<LoadReport>(&out.stdout)
        {
            if rep.errors == 0 && rep.requests_total > 0 {
                return Ok(());
            }
            last = rep.first_error.unwrap_or_default();
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Err(format!(
        "the bus never answered a request within 90 s; last error: {last}"
    ))
}

fn run_large(
    bin: &Path,
    args: &Args,
    shape: &Shape,
    r: &Run<'_>,
    size: &str,
) -> Result<LargeCell, Error> {
    let before = sample_before(&r.procs);
    let out = loadgen_cmd(bin, args, shape, r)
        .args(["--large", size, "--timeout", "900"])
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("running the load generator: {e}"))?;
    let report: LargeReport = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("load generator output for {} (large): {e}", r.name))?;
    let processes = usage_after(&r.procs, &before, 1);
    Ok(LargeCell {
        target: r.name.to_owned(),
        report,
        processes,
    })
}

fn machine() -> String {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores, {cpu}")
}

fn real_main(args: &Args) -> Result<(), Error> {
    if args.protocol != "rest" && args.protocol != "soap" {
        return Err(format!("--protocol {}: use rest or soap", args.protocol).into());
    }
    for o in &args.only {
        if !["bus", "nginx", "direct", LOG_OFF].contains(&o.as_str()) {
            return Err(format!("--only {o}: use bus, nginx, direct or {LOG_OFF}").into());
        }
    }
    let want = |t: &str| args.only.is_empty() || args.only.iter().any(|o| o == t);
    let loadgen = sibling("trustbus-loadgen")?;
    let echo_bin = sibling("trustbus-echo")?;
    let work = std::env::temp_dir().join(format!("trustbus-bench-{}", std::process::id()));
    fs::create_dir_all(&work)?;
    let mut notes = Vec::new();
    let mut missing = BTreeMap::new();

    let (echo, echo_url) = start_echo(&echo_bin)?;
    let echo_procs = vec![("echo".to_owned(), echo.pid())];
    eprintln!("echo backend at {echo_url}");

    let mut chain = None;
    if want("nginx") {
        match nginx::ensure_nginx() {
            Ok((bin, installed)) => {
                if installed {
                    notes.push("nginx was installed with apt-get for this run".to_owned());
                }
                let backend = echo_url
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.parse().ok())
                    .ok_or("echo URL has no port")?;
                let ports = ChainPorts {
                    entry: free_port()?,
                    tls: free_port()?,
                    backend,
                };
                match Chain::start(&bin, &work.join("nginx"), ports) {
                    Ok(c) => {
                        eprintln!("nginx chain at {}", c.url);
                        chain = Some(c);
                    }
                    Err(e) => {
                        missing.insert("nginx".to_owned(), e);
                    }
                }
            }
            Err(e) => {
                missing.insert("nginx".to_owned(), e);
            }
        }
    }

    let mut bus_inst = None;
    if want("bus") {
        eprintln!("starting the bus instance");
        match start_bus(args, &work, &echo_url) {
            Ok(b) => bus_inst = Some(b),
            Err(e) => {
                eprintln!("bus row missing: {e}");
                missing.insert("bus".to_owned(), e);
            }
        }
    }

    let bus_backend = bus_inst.as_ref().map(|b| b.backend.to_owned());
    if bus_backend.as_deref() == Some("instance") {
        notes.push(
            "this trustbus up has no --echo-backend: the bus row's backend is the instance's \
             own echo (in the trustbus-up process), not the baselines' trustbus-echo"
                .to_owned(),
        );
    }
    let (client, service) = ("BENCH/GOV/1000/client", "BENCH/GOV/2000/server/echo");
    let soap = args.protocol == "soap";
    let mut shape = Shape {
        get: false,
        rest_path: String::new(),
        payload: args.payload,
    };
    if let Some(b) = &bus_inst
        && !soap
        && !b.endpoints.rest_service_echoes
    {
        shape = Shape {
            get: true,
            rest_path: args.bus_rest_path.clone(),
            payload: 0,
        };
        notes.push(format!(
            "the instance has no echo service: every target was sent GET {} without a body \
             (the bus row's backend is the instance's example register, which answers with \
             a small JSON document; the baselines' backend is the echo server)",
            args.bus_rest_path
        ));
    }
    // One large body is a POST whatever the load's shape; the bus row then needs an echo
    // service or it measures the example register's refusal.
    let large_shape = Shape {
        get: false,
        rest_path: String::new(),
        payload: 0,
    };
    let mut runs: Vec<Run<'_>> = Vec::new();
    if want("direct") {
        runs.push(Run {
            name: "direct",
            url: echo_url.clone(),
            client: client.into(),
            service: service.into(),
            bus: false,
            check_echo: true,
            procs: echo_procs.clone(),
            service_is_soap: soap,
            metrics: Vec::new(),
        });
    }
    if let Some(c) = &chain {
        let mut procs = echo_procs.clone();
        procs.extend(c.processes());
        runs.push(Run {
            name: "nginx",
            url: c.url.clone(),
            client: client.into(),
            service: service.into(),
            bus: false,
            check_echo: true,
            procs,
            service_is_soap: soap,
            metrics: Vec::new(),
        });
    }
    if let Some(b) = &bus_inst {
        let e = &b.endpoints;
        let svc = if soap {
            &e.soap_service
        } else {
            &e.rest_service
        };
        match (&e.client_proxy, &e.client, svc) {
            (Some(url), Some(cl), Some(svc)) => {
                let mut procs = echo_procs;
                procs.extend(b.processes());
                eprintln!("bus: client proxy {url}, client {cl}, service {svc}");
                runs.push(Run {
                    name: "bus",
                    url: url.clone(),
                    client: cl.clone(),
                    service: svc.clone(),
                    bus: true,
                    // The example service may not be our echo backend; status and X-Road
                    // headers are still checked.
                    check_echo: false,
                    procs,
                    service_is_soap: soap,
                    metrics: e.metrics.clone(),
                });
            }
            _ => {
                missing.insert(
                    "bus".to_owned(),
                    format!(
                        "the instance's endpoints lack a client proxy, client or {} service \
                         (found {e:?}); pass --bus-url/--bus-client/--bus-service",
                        args.protocol
                    ),
                );
            }
        }
    }

    let mut cells = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        if i > 0 {
            std::thread::sleep(Duration::from_secs_f64(args.settle.max(0.0)));
        }
        if r.bus
            && let Err(e) = wait_ready(&loadgen, &shape, r)
        {
            missing.insert(r.name.to_owned(), e);
            continue;
        }
        eprintln!(
            "load: {} ({}s warm-up + {}s, c{}, {} B, {})",
            r.name, args.warmup, args.duration, args.concurrency, args.payload, args.protocol
        );
        match run_cell(&loadgen, args, &shape, r) {
            Ok(c) => cells.push(c),
            Err(e) => {
                missing.insert(r.name.to_owned(), e.to_string());
            }
        }
    }

    if args.half_load {
        let max = cells
            .iter()
            .find(|c| c.target == "bus")
            .map(|c| c.load.requests_per_second);
        match (runs.iter().find(|r| r.name == "bus"), max) {
            _ if args.rate.is_some() => {
                missing.insert(
                    HALF_LOAD.to_owned(),
                    "--half-load paces the bus at half of its flat-out rate: leave out --rate"
                        .to_owned(),
                );
            }
            (Some(r), Some(max)) if max >= 2.0 => {
                std::thread::sleep(Duration::from_secs_f64(args.settle.max(0.0)));
                let mut paced = args.clone();
                paced.rate = Some((max / 2.0).round());
                let half = Run {
                    name: HALF_LOAD,
                    ..r.clone()
                };
                eprintln!(
                    "load: {HALF_LOAD} ({}s warm-up + {}s, c{}, paced at {} req/s)",
                    args.warmup,
                    args.duration,
                    args.concurrency,
                    paced.rate.unwrap_or_default()
                );
                match run_cell(&loadgen, &paced, &shape, &half) {
                    Ok(c) => cells.push(c),
                    Err(e) => {
                        missing.insert(HALF_LOAD.to_owned(), e.to_string());
                    }
                }
            }
            _ => {
                missing.insert(
                    HALF_LOAD.to_owned(),
                    "needs the bus row's flat-out rate, and the bus row did not run".to_owned(),
                );
            }
        }
    }

    let mut large = Vec::new();
    if let Some(size) = &args.large {
        let bus_echoes = bus_inst
            .as_ref()
            .is_some_and(|b| b.endpoints.rest_service_echoes);
        for r in &runs {
            if r.bus && !bus_echoes {
                missing.insert(
                    "large bus".to_owned(),
                    "the instance has no echo service, and its example register refuses a POST; \
                     pass --bus-service with an echoing REST service and --bus-echoes"
                        .to_owned(),
                );
                continue;
            }
            eprintln!("large: one {size} body through {}", r.name);
            match run_large(&loadgen, args, &large_shape, r, size) {
                Ok(c) => large.push(c),
                Err(e) => {
                    missing.insert(format!("large {}", r.name), e.to_string());
                }
            }
        }
    }

    if want(LOG_OFF) {
        // Sequentially: the logging instance is stopped first, so the two never compete.
        drop(bus_inst.take());
        std::thread::sleep(Duration::from_secs_f64(args.settle.max(0.0)));
        match measure_log_off(args, &work, &echo_url, &loadgen, echo.pid()) {
            Ok((cell, note)) => {
                cells.push(cell);
                // The bus row may already have said the same about its instance.
                if !notes.iter().any(|n| n.contains("no echo service")) {
                    notes.extend(note);
                }
            }
            Err(e) => {
                eprintln!("{LOG_OFF} row missing: {e}");
                missing.insert(LOG_OFF.to_owned(), e);
            }
        }
    }

    let rps = |t: &str| {
        cells.iter().find(|c| c.target == t).map(|c| {
            (
                c.load.requests_per_second,
                c.load.latency_us.p50,
                c.machine_cpu_s_per_1k,
            )
        })
    };
    let mut ratios = BTreeMap::new();
    if let Some(b) = rps("bus") {
        for base in ["direct", "nginx"] {
            if let Some(o) = rps(base)
                && o.0 > 0.0
                && o.1 > 0.0
                && o.2 > 0.0
            {
                ratios.insert(format!("bus/{base} throughput"), b.0 / o.0);
                ratios.insert(format!("bus/{base} p50 latency"), b.1 / o.1);
                ratios.insert(format!("bus/{base} machine CPU per exchange"), b.2 / o.2);
            }
        }
    }
    if let (Some(on), Some(off)) = (rps("bus"), rps(LOG_OFF))
        && off.0 > 0.0
        && off.1 > 0.0
        && off.2 > 0.0
    {
        // Logging on / logging off: the cost of the durable message log.
        ratios.insert(format!("bus/{LOG_OFF} throughput"), on.0 / off.0);
        ratios.insert(format!("bus/{LOG_OFF} p50 latency"), on.1 / off.1);
        ratios.insert(
            format!("bus/{LOG_OFF} machine CPU per exchange"),
            on.2 / off.2,
        );
    }
    if let (Some(n), Some(d)) = (rps("nginx"), rps("direct"))
        && d.0 > 0.0
    {
        ratios.insert("nginx/direct throughput".to_owned(), n.0 / d.0);
    }
    notes.push(
        "everything shares one machine: the load generator, the backend and the proxies compete \
         for the same cores, so compare rows of one run, not across runs"
            .to_owned(),
    );
    for c in &cells {
        if c.load.late_sends > 0 {
            notes.push(format!(
                "{}: {} of {} measured requests left more than 2 ms after they were due on a free \
                 connection (the load generator's thread woke late); they count from when they left",
                c.target, c.load.late_sends, c.load.requests
            ));
        }
    }

    // Stop everything before printing so the report is the last thing on the terminal.
    drop(bus_inst);
    if let Some(mut c) = chain {
        c.stop();
    }
    drop(echo);

    let out = Output {
        machine: machine(),
        protocol: args.protocol.clone(),
        concurrency: args.concurrency,
        rate: args.rate,
        duration_s: args.duration,
        payload_bytes: shape.payload,
        cells,
        missing,
        ratios,
        large,
        notes,
        bus_backend,
    };
    let json = serde_json::to_string_pretty(&out)?;
    fs::write(work.join("result.json"), &json)?;
    if args.json {
        println!("{json}");
    } else {
        print_table(&out);
    }
    if args.keep {
        eprintln!("work directory kept: {}", work.display());
    } else {
        let _ = fs::remove_dir_all(&work);
    }
    Ok(())
}

/// The target name of the bus with its message log switched off.
const LOG_OFF: &str = "bus-log-off";
/// The bus row paced at half the rate the flat-out bus row reached.
const HALF_LOAD: &str = "bus-half-load";
/// Issue #9's bound for the p99 at half load, milliseconds.
const HALF_LOAD_P99_TARGET_MS: f64 = 5.0;

/// The cost-of-logging row: a second `trustbus up` instance (in `WORK/log-off`, with the
/// user's `--up-arg`s plus `--message-log off`) measured with the same load as the bus row.
/// Returns the cell and a note when the request shape had to change.
fn measure_log_off(
    args: &Args,
    work: &Path,
    echo_url: &str,
    loadgen: &Path,
    echo_pid: u32,
) -> Result<(Cell, Option<String>), String> {
    if args.bus_endpoints.is_some() || args.bus_url.is_some() {
        return Err(
            "needs an instance the benchmark starts itself (not --bus-endpoints/--bus-url)".into(),
        );
    }
    let dir = work.join("log-off");
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut a = args.clone();
    a.up_args
        .extend(["--message-log".to_owned(), "off".to_owned()]);
    eprintln!("starting the bus instance with the message log off");
    let b = start_bus(&a, &dir, echo_url)?;
    let soap = args.protocol == "soap";
    let e = &b.endpoints;
    let svc = if soap {
        &e.soap_service
    } else {
        &e.rest_service
    };
    let (Some(url), Some(client), Some(service)) = (&e.client_proxy, &e.client, svc) else {
        return Err(format!(
            "the instance's endpoints lack a client proxy, client or {} service (found {e:?})",
            args.protocol
        ));
    };
    // The same shape the bus row gets: GET on the example register without an echo service.
    let (shape, note) = if !soap && !e.rest_service_echoes {
        (
            Shape {
                get: true,
                rest_path: args.bus_rest_path.clone(),
                payload: 0,
            },
            Some(format!(
                "{LOG_OFF}: the instance has no echo service: sent GET {}",
                args.bus_rest_path
            )),
        )
    } else {
        (
            Shape {
                get: false,
                rest_path: String::new(),
                payload: args.payload,
            },
            None,
        )
    };
    let mut procs = vec![("echo".to_owned(), echo_pid)];
    procs.extend(b.processes());
    let run = Run {
        name: LOG_OFF,
        url: url.clone(),
        client: client.clone(),
        service: service.clone(),
        bus: true,
        check_echo: false,
        procs,
        service_is_soap: soap,
        metrics: e.metrics.clone(),
    };
    wait_ready(loadgen, &shape, &run)?;
    eprintln!(
        "load: {LOG_OFF} ({}s warm-up + {}s, c{}, {} B, {})",
        args.warmup, args.duration, args.concurrency, args.payload, args.protocol
    );
    let cell = run_cell(loadgen, args, &shape, &run).map_err(|e| e.to_string())?;
    Ok((cell, note))
}

fn ms(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

fn print_table(o: &Output) {
    let pace = o
        .rate
        .map(|r| format!(", paced at {r} req/s"))
        .unwrap_or_default();
    println!(
        "trustbus-bench: {} protocol, concurrency {}{pace}, {} s measured, {} B payload; {}",
        o.protocol, o.concurrency, o.duration_s, o.payload_bytes, o.machine
    );
    println!();
    println!(
        "| target | process | req/s | p50 | p99 | p99.9 | errors | CPU s per 1k exchanges | peak RSS MiB |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for c in &o.cells {
        let l = &c.load;
        println!(
            "| **{}** | whole machine ({:.0} % busy) | {:.0} | {} | {} | {} | {} | {:.4} | |",
            c.target,
            c.machine_busy_pct,
            l.requests_per_second,
            ms(l.latency_us.p50),
            ms(l.latency_us.p99),
            ms(l.latency_us.p999),
            l.errors,
            c.machine_cpu_s_per_1k,
        );
        for p in &c.processes {
            println!(
                "| {} | {} | | | | | | {:.4} | {:.1} |",
                c.target, p.name, p.cpu_s_per_1k, p.peak_rss_mib
            );
        }
    }
    for (t, why) in &o.missing {
        println!(
            "| **{t}** | MISSING: {} | | | | | | | |",
            why.replace('\n', " / ")
        );
    }
    println!();
    if o.ratios.is_empty() {
        println!("ratios: none (a ratio needs two of the rows, and the bus row for most)");
    }
    for (k, v) in &o.ratios {
        println!("{k}: {v:.3}");
    }
    if let Some(c) = o.cells.iter().find(|c| c.target == HALF_LOAD) {
        let p99 = c.load.latency_us.p99 / 1000.0;
        println!(
            "{HALF_LOAD}: p99 {p99:.2} ms at {} req/s, half of the bus row's maximum (issue #9: \
             under {HALF_LOAD_P99_TARGET_MS} ms: {})",
            c.load.target_rate.unwrap_or_default(),
            if p99 < HALF_LOAD_P99_TARGET_MS {
                "met"
            } else {
                "not met"
            }
        );
    }
    if o.cells.iter().any(|c| !c.server_view.is_empty()) {
        println!();
        println!(
            "The security servers' own histograms over the whole load, warm-up included \
             (quantiles interpolated within their buckets):"
        );
        println!();
        println!("| target | server | timed | count | mean | p50 | p99 | over 5 ms |");
        println!("|---|---|---|---:|---:|---:|---:|---:|");
        for c in &o.cells {
            for h in &c.server_view {
                let q = |v: f64| {
                    if v <= h.first_bucket_ms {
                        format!("≤ {}", ms(h.first_bucket_ms * 1000.0))
                    } else {
                        ms(v * 1000.0)
                    }
                };
                println!(
                    "| {} | {} | {} | {} | {} | {} | {} | {:.1} % |",
                    c.target,
                    h.server,
                    h.measure,
                    h.count,
                    ms(h.mean_ms * 1000.0),
                    q(h.p50_ms),
                    q(h.p99_ms),
                    h.over_5ms_pct
                );
            }
        }
    }
    for c in &o.cells {
        if c.load.errors > 0 {
            println!(
                "errors for {}: {:?} first: {}",
                c.target,
                c.load.errors_by_kind,
                c.load.first_error.as_deref().unwrap_or("")
            );
        }
    }
    if !o.large.is_empty() {
        println!();
        println!(
            "| large body | target | seconds | MiB/s | ok | process | RSS before MiB | peak RSS MiB | growth MiB |"
        );
        println!("|---|---|---:|---:|---|---|---:|---:|---:|");
        for c in &o.large {
            let r = &c.report;
            let mibs = if r.seconds > 0.0 {
                r.bytes_sent as f64 / 1048576.0 / r.seconds
            } else {
                0.0
            };
            println!(
                "| {} MiB | {} | {:.2} | {:.0} | {} | loadgen | | {:.1} | |",
                r.bytes_sent >> 20,
                c.target,
                r.seconds,
                mibs,
                if r.ok {
                    "yes".to_owned()
                } else {
                    format!("NO: {}", r.error.as_deref().unwrap_or(""))
                },
                r.loadgen_peak_rss_kib as f64 / 1024.0
            );
            for p in &c.processes {
                println!(
                    "| | {} | | | | {} | {:.1} | {:.1} | {:.1} |",
                    c.target,
                    p.name,
                    p.rss_before_mib,
                    p.peak_rss_mib,
                    p.peak_rss_mib - p.rss_before_mib
                );
            }
        }
    }
    for n in &o.notes {
        println!("note: {n}");
    }
}
