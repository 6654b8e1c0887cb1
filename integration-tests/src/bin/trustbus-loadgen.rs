//! `trustbus-loadgen`: a light closed-loop HTTP/1.1 load generator that speaks the X-Road
//! client protocol (REST r1 or SOAP 4.0) or plain POST, and prints its results as JSON.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use trustbus_integration_tests::load::{self, LoadConfig, Protocol};

/// Closed-loop load: every connection sends its next request as soon as the previous response
/// has been checked. One thread, keep-alive connections, TCP_NODELAY.
#[derive(Parser, Debug)]
#[command(name = "trustbus-loadgen")]
struct Args {
    /// `http://host:port[/path]`: the client proxy for REST, the full URL for SOAP and plain.
    #[arg(long)]
    url: String,
    /// plain, rest or soap.
    #[arg(long, default_value = "plain")]
    protocol: Protocol,
    /// Connections, each with one request in flight.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Request body bytes (SOAP: bytes of data inside the body wrapper).
    #[arg(long, default_value_t = 1024)]
    payload: usize,
    /// Client id in slash form (REST `X-Road-Client`, SOAP `xrd:client`).
    #[arg(long, default_value = "BENCH/GOV/1000/client")]
    client: String,
    /// Service id in slash form.
    #[arg(long, default_value = "BENCH/GOV/2000/server/echo")]
    service: String,
    /// Appended to the REST service path.
    #[arg(long, default_value = "")]
    rest_path: String,
    /// Send GET without a body instead of POST (REST and plain).
    #[arg(long)]
    get: bool,
    /// The target is the bus: REST responses must carry X-Road-Request-Hash and X-Road-Id.
    #[arg(long)]
    bus: bool,
    /// The backend echoes: REST and plain responses must be as long as the request body.
    #[arg(long)]
    check_echo: bool,
    /// Seconds to wait for one response before counting a timeout.
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
    /// Pace the load at this many requests per second in total (latency then counts from
    /// when each request was due); without it, the loop runs flat out.
    #[arg(long)]
    rate: Option<f64>,
    /// Instead of the loop, send one streamed body of this many bytes (e.g. 1GiB) and report.
    #[arg(long, value_parser = parse_size)]
    large: Option<u64>,
}

/// Bytes with an optional KiB/MiB/GiB (or K/M/G) suffix.
fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("`{s}` is not a size"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        u => return Err(format!("unknown unit `{u}` (use KiB, MiB or GiB)")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{s}` is too large"))
}

fn secs(v: f64, what: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(v).map_err(|_| format!("--{what} {v} is not a duration"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    match real_main(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("trustbus-loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

fn real_main(a: Args) -> Result<(), String> {
    let cfg = LoadConfig {
        url: a.url,
        protocol: a.protocol,
        concurrency: a.concurrency,
        duration: secs(a.duration, "duration")?,
        warmup: secs(a.warmup, "warmup")?,
        payload: a.payload,
        client: a.client,
        service: a.service,
        rest_path: a.rest_path,
        get: a.get,
        bus: a.bus,
        check_echo: a.check_echo,
        timeout: secs(a.timeout, "timeout")?,
        rate: a.rate,
    };
    // One thread: the generator shares the 2 cores with what it measures, so it must be cheap.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let json = match a.large {
        Some(len) => {
            let r = rt.block_on(load::run_large(&cfg, len))?;
            serde_json::to_string_pretty(&r)
        }
        None => {
            let r = rt.block_on(load::run(&cfg))?;
            serde_json::to_string_pretty(&r)
        }
    }
    .map_err(|e| format!("JSON: {e}"))?;
    println!("{json}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("100MiB"), Ok(100 << 20));
        assert_eq!(parse_size("1024"), Ok(1024));
        assert!(parse_size("1TB").is_err());
    }
}
