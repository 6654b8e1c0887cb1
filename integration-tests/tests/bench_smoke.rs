//! Smoke test of the benchmark tools: `trustbus-loadgen` against `trustbus-echo` for 1 s at
//! concurrency 2. Checks the report's shape and that nothing failed; never timings.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn echo() -> (Kill, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_trustbus-echo"))
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start trustbus-echo");
    let out = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(out).read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_owned();
    (Kill(child), format!("http://{addr}"))
}

fn loadgen(url: &str, protocol: &str) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_trustbus-loadgen"))
        .args(["--url", url, "--protocol", protocol])
        .args(["--concurrency", "2", "--duration", "1", "--warmup", "0.2"])
        .args(["--payload", "1024", "--check-echo"])
        .output()
        .expect("run trustbus-loadgen");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON report")
}

fn check(r: &serde_json::Value, protocol: &str) {
    for f in [
        "target",
        "concurrency",
        "duration_s",
        "payload_bytes",
        "requests",
        "requests_total",
        "requests_per_second",
        "errors",
        "errors_by_kind",
        "loadgen_cpu_s",
        "loadgen_peak_rss_kib",
    ] {
        assert!(r.get(f).is_some(), "{protocol}: no `{f}` in {r}");
    }
    for f in ["p50", "p99", "p999", "max", "count"] {
        assert!(
            r["latency_us"].get(f).is_some(),
            "{protocol}: no latency `{f}`"
        );
    }
    assert_eq!(r["protocol"], protocol);
    assert_eq!(r["concurrency"], 2);
    assert_eq!(r["errors"], 0, "{protocol}: {r}");
    assert!(r["requests"].as_u64().unwrap() > 0, "{protocol}: {r}");
}

#[test]
fn loadgen_against_echo() {
    let (_echo, url) = echo();
    for protocol in ["plain", "rest", "soap"] {
        let r = loadgen(&url, protocol);
        check(&r, protocol);
    }
}

#[test]
fn large_body_is_streamed() {
    let (_echo, url) = echo();
    let out = Command::new(env!("CARGO_BIN_EXE_trustbus-loadgen"))
        .args(["--url", &url, "--large", "32MiB", "--check-echo"])
        .output()
        .expect("run trustbus-loadgen");
    assert!(out.status.success());
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["bytes_received"], 32u64 << 20);
}

/// `trustbus-bench` with the bus (durable message log), the bus again at half the rate it
/// reached, and the bus with the message log off, in one short run: every row is measured
/// without errors and the ratio "logging on / logging off" is reported. Checks the shape only,
/// never the numbers' size.
#[test]
fn bench_measures_the_cost_of_the_message_log() {
    assert!(
        trustbus_integration_tests::security_server_available(),
        "the security-server binary found is not this workspace's build"
    );
    let trustbus = trustbus_integration_tests::bin_dir().join("trustbus");
    let out = Command::new(env!("CARGO_BIN_EXE_trustbus-bench"))
        .arg("--trustbus")
        .arg(&trustbus)
        .args(["--only", "bus,bus-log-off", "--half-load", "--json"])
        .args(["--concurrency", "2", "--duration", "1", "--warmup", "0.2"])
        .args(["--settle", "0"])
        .stderr(Stdio::inherit())
        .output()
        .expect("run trustbus-bench");
    assert!(out.status.success(), "{out:?}");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(r["missing"], serde_json::json!({}), "{r}");
    // The bus calls the same backend process as the baselines.
    assert_eq!(r["bus_backend"], "trustbus-echo", "{r}");
    let targets: Vec<&str> = r["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["target"].as_str().unwrap())
        .collect();
    assert_eq!(targets, ["bus", "bus-half-load", "bus-log-off"], "{r}");
    // The half-load row is paced at half of what the flat-out bus row reached.
    let max = r["cells"][0]["load"]["requests_per_second"]
        .as_f64()
        .unwrap();
    assert_eq!(
        r["cells"][1]["load"]["target_rate"].as_f64(),
        Some((max / 2.0).round()),
        "{r}"
    );
    assert_eq!(r["rate"], serde_json::Value::Null);
    for c in r["cells"].as_array().unwrap() {
        check(&c["load"], "rest");
        assert!(c["load"]["requests_per_second"].as_f64().unwrap() > 0.0);
        // Each security server's own histograms, read before and after the load: every
        // exchange the load generator completed was timed once by each server, and so was each
        // record it waited for (the consumer's request record rides on its response's sync).
        let total = c["load"]["requests_total"].as_u64().unwrap();
        let mut seen: Vec<(String, String, u64)> = c["server_view"]
            .as_array()
            .unwrap_or_else(|| panic!("no server_view in {c}"))
            .iter()
            .map(|h| {
                let (mean, p50, p99) = (&h["mean_ms"], &h["p50_ms"], &h["p99_ms"]);
                assert!(
                    mean.as_f64().unwrap() >= 0.0 && p50.as_f64() <= p99.as_f64(),
                    "{h}"
                );
                (
                    h["server"].as_str().unwrap().to_owned(),
                    h["measure"].as_str().unwrap().to_owned(),
                    h["count"].as_u64().unwrap(),
                )
            })
            .collect();
        seen.sort();
        let want = |s: &str, m: &str| (s.to_owned(), m.to_owned(), total);
        assert_eq!(
            seen,
            [
                want("ss1", "exchange, consumer"),
                want("ss1", "log wait, consumer response"),
                want("ss2", "exchange, provider"),
                want("ss2", "log wait, provider request"),
                want("ss2", "log wait, provider response"),
            ],
            "{}",
            c["target"]
        );
    }
    for k in [
        "bus/bus-log-off throughput",
        "bus/bus-log-off p50 latency",
        "bus/bus-log-off machine CPU per exchange",
    ] {
        let v = r["ratios"][k]
            .as_f64()
            .unwrap_or_else(|| panic!("no {k} in {r}"));
        assert!(v.is_finite() && v > 0.0, "{k}: {v}");
    }
}
