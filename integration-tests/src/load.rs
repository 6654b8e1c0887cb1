//! The closed-loop load generator behind `trustbus-loadgen`: N keep-alive HTTP/1.1 connections
//! on one thread, each sending its next request as soon as the previous answer is checked.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use trustbus_sdk::id::{ClientId, ServiceId};
use trustbus_sdk::soap::{Limits, SoapRequestBuilder, SoapResponse, parse_response};

use crate::hist::{Histogram, LatencySummary};
use crate::procstat;

/// What the requests look like on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// `POST` of the payload to the URL as given (the perf-anchors baseline).
    Plain,
    /// X-Road REST: `POST /r1/{service}{path}` with `X-Road-Client`.
    Rest,
    /// X-Road SOAP 4.0: an envelope `POST`ed to the URL as given.
    Soap,
}

impl FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "plain" => Ok(Self::Plain),
            "rest" => Ok(Self::Rest),
            "soap" => Ok(Self::Soap),
            o => Err(format!("unknown protocol `{o}` (plain, rest or soap)")),
        }
    }
}

impl Protocol {
    /// The lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "plain",
            Self::Rest => "rest",
            Self::Soap => "soap",
        }
    }
}

/// Everything one load run needs.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// `http://host:port[/path]`: the client proxy for REST, the full URL otherwise.
    pub url: String,
    /// Request format.
    pub protocol: Protocol,
    /// Connections, each with one request in flight.
    pub concurrency: usize,
    /// Measured time, after the warm-up.
    pub duration: Duration,
    /// Time before measuring starts, to fill caches and pools.
    pub warmup: Duration,
    /// Body size in bytes (for SOAP, the size of the data inside the body wrapper).
    pub payload: usize,
    /// Client id in slash form (`INSTANCE/CLASS/MEMBER[/SUBSYSTEM]`).
    pub client: String,
    /// Service id in slash form (`INSTANCE/CLASS/MEMBER/SUBSYSTEM/SERVICE[/VERSION]`).
    pub service: String,
    /// Appended to the REST service path.
    pub rest_path: String,
    /// Send `GET` without a body instead of `POST` (REST and plain), for services that only
    /// answer GET.
    pub get: bool,
    /// Require the bus's `X-Road-Request-Hash` and `X-Road-Id` response headers (REST).
    pub bus: bool,
    /// Require the response body to be as long as the request body (REST and plain).
    pub check_echo: bool,
    /// Longest wait for one response; a slower one counts as a `timeout` error.
    pub timeout: Duration,
    /// Total requests per second to aim at, spread evenly over the connections; `None` sends
    /// as fast as responses come back. With a rate, a request held back because its connection
    /// was still waiting for the previous response counts from when it was due, not when it
    /// left, so a stalled server is not hidden (coordinated omission).
    pub rate: Option<f64>,
}

/// The JSON the load generator prints.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadReport {
    /// The URL requests went to.
    pub target: String,
    /// Request format.
    pub protocol: Protocol,
    /// Connections.
    pub concurrency: usize,
    /// Length of the measured window in seconds.
    pub duration_s: f64,
    /// Warm-up in seconds.
    pub warmup_s: f64,
    /// Body size in bytes.
    pub payload_bytes: usize,
    /// Successful requests that started and finished inside the measured window.
    pub requests: u64,
    /// All successful requests, warm-up and the tail after the window included (CPU is divided
    /// by this, because the processes did that work).
    pub requests_total: u64,
    /// `requests / duration_s`.
    pub requests_per_second: f64,
    /// The target rate, if the run was paced.
    pub target_rate: Option<f64>,
    /// Paced runs: measured requests that left more than 2 ms after they were due although
    /// their connection was free (the load generator's own thread woke late); their latency
    /// counts from when they left.
    #[serde(default)]
    pub late_sends: u64,
    /// Failed requests over the whole run.
    pub errors: u64,
    /// Failed requests by kind (`io`, `timeout`, `http_502`, `soap_fault`, ...).
    pub errors_by_kind: BTreeMap<String, u64>,
    /// The first error's detail, for diagnosis.
    pub first_error: Option<String>,
    /// Latency of the measured requests, in microseconds.
    pub latency_us: LatencySummary,
    /// The load generator's own user+system CPU seconds.
    pub loadgen_cpu_s: f64,
    /// The load generator's peak RSS in KiB.
    pub loadgen_peak_rss_kib: u64,
}

/// Host, port and path of an `http://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `host:port`, sent as `Host`.
    pub authority: String,
    /// Path with leading `/`, no trailing `/` unless it is the root.
    pub path: String,
}

/// Splits an `http://` URL; `https` is refused because the bus's client proxy and both
/// baselines take plain HTTP on loopback.
pub fn parse_url(url: &str) -> Result<Target, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("`{url}`: only http:// URLs are supported"))?;
    let (auth, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if auth.is_empty() {
        return Err(format!("`{url}` has no host"));
    }
    let authority = if auth.contains(':') && !auth.ends_with(']') {
        auth.to_owned()
    } else {
        format!("{auth}:80")
    };
    Ok(Target {
        authority,
        path: path.to_owned(),
    })
}

/// What every worker shares: the prepared request parts.
struct Prepared {
    cfg: LoadConfig,
    addr: SocketAddr,
    host: String,
    path: String,
    content_type: &'static str,
    body: Bytes,
    /// Where the 16 hex digits of the SOAP message id sit in `body`.
    soap_id_at: Option<usize>,
}

/// How late a paced request may leave, on a free connection, before it counts as a late send
/// (tokio's timer wakes up to about a millisecond late).
const TIMER_SLACK: Duration = Duration::from_millis(2);

/// The id placeholder written into the SOAP template and overwritten per request.
const SOAP_ID_PREFIX: &str = "bench-";
const SOAP_ID_DIGITS: usize = 16;

fn prepare(cfg: &LoadConfig, addr: SocketAddr, t: &Target) -> Result<Prepared, String> {
    let base = t.path.trim_end_matches('/');
    let payload = if cfg.get { 0 } else { cfg.payload };
    let (path, content_type, body, soap_id_at) = match cfg.protocol {
        Protocol::Plain => (
            t.path.clone(),
            "application/octet-stream",
            Bytes::from(vec![b'x'; payload]),
            None,
        ),
        Protocol::Rest => {
            ServiceId::from_slash(&cfg.service)
                .map_err(|e| format!("service `{}`: {e}", cfg.service))?;
            (
                format!("{base}/r1/{}{}", cfg.service, cfg.rest_path),
                "application/octet-stream",
                Bytes::from(vec![b'x'; payload]),
                None,
            )
        }
        Protocol::Soap => {
            let client = ClientId::from_slash(&cfg.client)
                .map_err(|e| format!("client `{}`: {e}", cfg.client))?;
            let service = ServiceId::from_slash(&cfg.service)
                .map_err(|e| format!("service `{}`: {e}", cfg.service))?;
            let code = service.code().to_owned();
            let placeholder = format!("{SOAP_ID_PREFIX}{}", "0".repeat(SOAP_ID_DIGITS));
            let data = "x".repeat(cfg.payload);
            let env = SoapRequestBuilder::new(client, service)
                .id(placeholder.clone())
                .body(format!(
                    r#"<tb:{code} xmlns:tb="urn:trustbus:bench"><tb:data>{data}</tb:data></tb:{code}>"#
                ))
                .build();
            let at = env
                .windows(placeholder.len())
                .position(|w| w == placeholder.as_bytes())
                .ok_or("the SOAP template lost its id")?
                + SOAP_ID_PREFIX.len();
            (
                t.path.clone(),
                "text/xml; charset=utf-8",
                Bytes::from(env),
                Some(at),
            )
        }
    };
    Ok(Prepared {
        cfg: cfg.clone(),
        addr,
        host: t.authority.clone(),
        path,
        content_type,
        body,
        soap_id_at,
    })
}

async fn connect<B>(addr: SocketAddr) -> Result<SendRequest<B>, String>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    // Small requests must leave at once; Nagle plus delayed ACK would add tens of ms.
    tcp.set_nodelay(true)
        .map_err(|e| format!("TCP_NODELAY: {e}"))?;
    let (send, conn) = http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("handshake {addr}: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(send)
}

/// One worker's tallies, merged at the end so no state is shared while running.
#[derive(Default)]
struct Tally {
    hist: Histogram,
    measured: u64,
    late_sends: u64,
    total: u64,
    errors: BTreeMap<String, u64>,
    first_error: Option<String>,
}

impl Tally {
    fn error(&mut self, kind: impl Into<String>, detail: impl FnOnce() -> String) {
        *self.errors.entry(kind.into()).or_default() += 1;
        if self.first_error.is_none() {
            self.first_error = Some(detail());
        }
    }
}

fn build_request(p: &Prepared, id: u64) -> Result<(Request<Full<Bytes>>, Option<String>), String> {
    let (body, soap_id) = match p.soap_id_at {
        Some(at) => {
            let mut b = BytesMut::from(&p.body[..]);
            let digits = format!("{id:016x}");
            b[at..at + SOAP_ID_DIGITS].copy_from_slice(digits.as_bytes());
            (b.freeze(), Some(format!("{SOAP_ID_PREFIX}{digits}")))
        }
        None => (p.body.clone(), None),
    };
    let get = p.cfg.get && p.cfg.protocol != Protocol::Soap;
    let mut rb = Request::builder()
        .method(if get { Method::GET } else { Method::POST })
        .uri(p.path.as_str())
        .header(hyper::header::HOST, p.host.as_str());
    if !get {
        rb = rb.header(hyper::header::CONTENT_TYPE, p.content_type);
    }
    if p.cfg.protocol == Protocol::Rest {
        rb = rb.header("X-Road-Client", p.cfg.client.as_str());
    }
    let req = rb
        .body(Full::new(body))
        .map_err(|e| format!("building the request: {e}"))?;
    Ok((req, soap_id))
}

/// Checks one response; `Err` is (kind, detail).
fn check(
    p: &Prepared,
    status: u16,
    headers: &hyper::HeaderMap,
    body: Bytes,
    soap_id: Option<&str>,
) -> Result<(), (String, String)> {
    if status != 200 {
        let code = headers
            .get("x-road-error")
            .and_then(|v| v.to_str().ok())
            .map(|c| format!(" X-Road-Error {c}"))
            .unwrap_or_default();
        let snippet = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        return Err((
            format!("http_{status}"),
            format!("HTTP {status}{code}: {snippet}"),
        ));
    }
    match p.cfg.protocol {
        Protocol::Soap => match parse_response(body.to_vec(), &Limits::default()) {
            Ok(SoapResponse::Message(m)) => {
                if Some(m.header().id.as_str()) != soap_id {
                    return Err((
                        "soap_id_mismatch".into(),
                        format!("sent id {soap_id:?}, got {}", m.header().id),
                    ));
                }
            }
            Ok(SoapResponse::Fault { fault, .. }) => {
                return Err((
                    "soap_fault".into(),
                    format!("{} {}", fault.code, fault.string),
                ));
            }
            Err(f) => return Err(("soap_parse".into(), f.message)),
        },
        Protocol::Rest | Protocol::Plain => {
            if p.cfg.bus
                && p.cfg.protocol == Protocol::Rest
                && (!headers.contains_key("x-road-request-hash")
                    || !headers.contains_key("x-road-id"))
            {
                return Err((
                    "missing_xroad_headers".into(),
                    "no X-Road-Request-Hash or X-Road-Id on the response".into(),
                ));
            }
            if p.cfg.check_echo && body.len() != p.body.len() {
                return Err((
                    "body_mismatch".into(),
                    format!("sent {} bytes, got {}", p.body.len(), body.len()),
                ));
            }
        }
    }
    Ok(())
}

async fn worker(
    p: Arc<Prepared>,
    n: u64,
    start: Instant,
    measure_from: Instant,
    end: Instant,
) -> Tally {
    let mut t = Tally::default();
    let mut conn: Option<SendRequest<Full<Bytes>>> = None;
    let mut seq: u64 = 0;
    // When the previous response on this connection arrived (`None` on a new connection).
    let mut prev_done: Option<Instant> = None;
    // Each connection sends every `interval`, offset so the connections do not fire together.
    let interval = p
        .cfg
        .rate
        .filter(|r| *r > 0.0)
        .map(|r| Duration::from_secs_f64(p.cfg.concurrency as f64 / r));
    let mut due = interval.map(|i| start + i.mul_f64(n as f64 / p.cfg.concurrency as f64));
    while Instant::now() < end {
        if let Some(d) = due {
            if d >= end {
                break;
            }
            tokio::time::sleep_until(d.into()).await;
        }
        let sender = match conn.as_mut() {
            Some(s) => s,
            None => match connect(p.addr).await {
                Ok(s) => conn.insert(s),
                Err(e) => {
                    t.error("connect", || e);
                    // Without a pause a refused connect would spin the only thread.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        if sender.ready().await.is_err() {
            conn = None;
            continue;
        }
        seq += 1;
        let (req, soap_id) = match build_request(&p, (n << 40) | seq) {
            Ok(r) => r,
            Err(e) => {
                t.error("request", || e);
                break;
            }
        };
        // A request the server held back (its connection's previous response came after it was
        // due) is charged from its due time. One that left late on a free connection was held
        // back by this process's own thread, which shares the cores with what it measures: it
        // is charged from when it left, and counted.
        let now = Instant::now();
        let (t0, late_send) = match due {
            Some(d) if prev_done.is_some_and(|p| p > d) => (d, false),
            Some(d) => (now, now.saturating_duration_since(d) > TIMER_SLACK),
            None => (now, false),
        };
        if let (Some(d), Some(i)) = (due.as_mut(), interval) {
            *d += i;
        }
        let outcome = tokio::time::timeout(p.cfg.timeout, async {
            let res = sender.send_request(req).await.map_err(|e| e.to_string())?;
            let (parts, body) = res.into_parts();
            let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
            Ok::<_, String>((parts, body))
        })
        .await;
        let t1 = Instant::now();
        prev_done = Some(t1);
        match outcome {
            Err(_) => {
                t.error("timeout", || {
                    format!("no response within {:?}", p.cfg.timeout)
                });
                conn = None;
            }
            Ok(Err(e)) => {
                t.error("io", || e);
                conn = None;
            }
            Ok(Ok((parts, body))) => {
                match check(
                    &p,
                    parts.status.as_u16(),
                    &parts.headers,
                    body,
                    soap_id.as_deref(),
                ) {
                    Ok(()) => {
                        t.total += 1;
                        if t0 >= measure_from && t1 <= end {
                            t.measured += 1;
                            t.late_sends += u64::from(late_send);
                            t.hist.record(t1.duration_since(t0).as_nanos() as u64);
                        }
                    }
                    Err((kind, detail)) => t.error(kind, || detail),
                }
            }
        }
    }
    t
}

async fn resolve(authority: &str) -> Result<SocketAddr, String> {
    tokio::net::lookup_host(authority)
        .await
        .map_err(|e| format!("resolving {authority}: {e}"))?
        .next()
        .ok_or_else(|| format!("{authority} resolves to nothing"))
}

/// Runs the closed loop and reports; must run inside a tokio runtime (one thread is enough and
/// keeps the generator light).
pub async fn run(cfg: &LoadConfig) -> Result<LoadReport, String> {
    if cfg.concurrency == 0 {
        return Err("concurrency must be at least 1".into());
    }
    let target = parse_url(&cfg.url)?;
    let addr = resolve(&target.authority).await?;
    let p = Arc::new(prepare(cfg, addr, &target)?);
    let start = Instant::now();
    let measure_from = start + cfg.warmup;
    let end = measure_from + cfg.duration;
    let tasks: Vec<_> = (0..cfg.concurrency as u64)
        .map(|n| tokio::spawn(worker(p.clone(), n, start, measure_from, end)))
        .collect();
    let mut all = Tally::default();
    for task in tasks {
        let t = task.await.map_err(|e| format!("a worker died: {e}"))?;
        all.hist.merge(&t.hist);
        all.measured += t.measured;
        all.late_sends += t.late_sends;
        all.total += t.total;
        for (k, v) in t.errors {
            *all.errors.entry(k).or_default() += v;
        }
        if all.first_error.is_none() {
            all.first_error = t.first_error;
        }
    }
    let (cpu, rss) = procstat::own_usage();
    let secs = cfg.duration.as_secs_f64();
    Ok(LoadReport {
        target: cfg.url.clone(),
        protocol: cfg.protocol,
        concurrency: cfg.concurrency,
        duration_s: secs,
        warmup_s: cfg.warmup.as_secs_f64(),
        payload_bytes: cfg.payload,
        requests: all.measured,
        requests_total: all.total,
        target_rate: cfg.rate,
        requests_per_second: if secs > 0.0 {
            all.measured as f64 / secs
        } else {
            0.0
        },
        late_sends: all.late_sends,
        errors: all.errors.values().sum(),
        errors_by_kind: all.errors,
        first_error: all.first_error,
        latency_us: all.hist.summary_us(),
        loadgen_cpu_s: cpu,
        loadgen_peak_rss_kib: rss,
    })
}

/// A request body of `left` bytes made on the fly from one repeated chunk, so a 1 GiB body
/// costs 64 KiB of memory.
#[derive(Debug)]
pub struct Generated {
    left: u64,
    chunk: Bytes,
}

impl Generated {
    /// A body of exactly `len` bytes.
    pub fn new(len: u64) -> Self {
        let chunk: Vec<u8> = (0..64 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
        Self {
            left: len,
            chunk: Bytes::from(chunk),
        }
    }
}

impl Body for Generated {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.left == 0 {
            return Poll::Ready(None);
        }
        let n = this.left.min(this.chunk.len() as u64);
        this.left -= n;
        Poll::Ready(Some(Ok(Frame::data(this.chunk.slice(..n as usize)))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

/// What one large-body request did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LargeReport {
    /// The URL.
    pub target: String,
    /// Request body length.
    pub bytes_sent: u64,
    /// Response body length (equal to `bytes_sent` through an echo).
    pub bytes_received: u64,
    /// From sending the request head to the last response byte.
    pub seconds: f64,
    /// Response status, 0 if none came.
    pub status: u16,
    /// Status 200 and, when `check_echo`, the whole body came back.
    pub ok: bool,
    /// What went wrong, if anything.
    pub error: Option<String>,
    /// The load generator's peak RSS in KiB (shows the body was streamed, not held).
    pub loadgen_peak_rss_kib: u64,
}

/// Sends one body of `len` bytes (REST when `cfg.protocol` is REST, plain otherwise), streaming
/// both ways, and reports its time.
pub async fn run_large(cfg: &LoadConfig, len: u64) -> Result<LargeReport, String> {
    let target = parse_url(&cfg.url)?;
    let addr = resolve(&target.authority).await?;
    let p = prepare(
        &LoadConfig {
            payload: 0,
            get: false,
            rate: None,
            protocol: if cfg.protocol == Protocol::Rest {
                Protocol::Rest
            } else {
                Protocol::Plain
            },
            ..cfg.clone()
        },
        addr,
        &target,
    )?;
    let mut sender: SendRequest<Generated> = connect(addr).await?;
    let mut rb = Request::builder()
        .method(Method::POST)
        .uri(p.path.as_str())
        .header(hyper::header::HOST, p.host.as_str())
        .header(hyper::header::CONTENT_TYPE, "application/octet-stream");
    if p.cfg.protocol == Protocol::Rest {
        rb = rb.header("X-Road-Client", p.cfg.client.as_str());
    }
    let req = rb
        .body(Generated::new(len))
        .map_err(|e| format!("building the request: {e}"))?;
    let t0 = Instant::now();
    let mut report = LargeReport {
        target: cfg.url.clone(),
        bytes_sent: len,
        bytes_received: 0,
        seconds: 0.0,
        status: 0,
        ok: false,
        error: None,
        loadgen_peak_rss_kib: 0,
    };
    let outcome = tokio::time::timeout(cfg.timeout, async {
        sender.ready().await.map_err(|e| e.to_string())?;
        let res = sender.send_request(req).await.map_err(|e| e.to_string())?;
        report.status = res.status().as_u16();
        let mut body = res.into_body();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| e.to_string())?;
            if let Some(d) = frame.data_ref() {
                report.bytes_received += d.len() as u64;
            }
        }
        Ok::<_, String>(())
    })
    .await;
    report.seconds = t0.elapsed().as_secs_f64();
    match outcome {
        Err(_) => report.error = Some(format!("not finished within {:?}", cfg.timeout)),
        Ok(Err(e)) => report.error = Some(e),
        Ok(Ok(())) => {
            let echoed = !cfg.check_echo || report.bytes_received == len;
            report.ok = report.status == 200 && echoed;
            if !report.ok {
                report.error = Some(format!(
                    "HTTP {}, {} of {len} bytes came back",
                    report.status, report.bytes_received
                ));
            }
        }
    }
    report.loadgen_peak_rss_kib = procstat::own_usage().1;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("http://127.0.0.1:8080/x/y"),
            Ok(Target {
                authority: "127.0.0.1:8080".into(),
                path: "/x/y".into()
            })
        );
        assert_eq!(
            parse_url("http://localhost").map(|t| t.authority),
            Ok("localhost:80".into())
        );
        assert!(parse_url("https://a:1/").is_err());
    }

    /// A plain HTTP server on 127.0.0.1 that answers `ok`, except that the request numbered
    /// `stall_at` (from 1) is answered only after `stall`.
    async fn stalling_server(stall_at: u64, stall: Duration) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let count = Arc::new(std::sync::atomic::AtomicU64::new(0));
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let count = count.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |_req| {
                        let n = count.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                        async move {
                            if n == stall_at {
                                tokio::time::sleep(stall).await;
                            }
                            Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from("ok"))))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        addr
    }

    /// Paced load: requests held back behind a stalled response count from when they were due
    /// (coordinated omission), so a 600 ms stall on the only connection shows in the median.
    #[tokio::test]
    async fn requests_held_back_by_a_stall_count_from_when_they_were_due() {
        let addr = stalling_server(6, Duration::from_millis(600)).await;
        let cfg = LoadConfig {
            url: format!("http://{addr}/"),
            protocol: Protocol::Plain,
            concurrency: 1,
            duration: Duration::from_millis(1000),
            warmup: Duration::ZERO,
            payload: 16,
            client: String::new(),
            service: String::new(),
            rest_path: String::new(),
            get: false,
            bus: false,
            check_echo: false,
            timeout: Duration::from_secs(5),
            rate: Some(50.0),
        };
        let r = run(&cfg).await.unwrap();
        assert_eq!(r.errors, 0, "{:?}", r.first_error);
        // Due every 20 ms; the 6th (due at 100 ms) is answered at about 700 ms, and the 29 due
        // in between leave right after it: with their waiting counted, more than half of the
        // ~50 measured requests took tens of milliseconds or more.
        assert!(r.requests >= 40, "{} requests", r.requests);
        assert!(r.latency_us.max >= 550_000.0, "{:?}", r.latency_us);
        assert!(r.latency_us.p50 >= 20_000.0, "{:?}", r.latency_us);
    }

    #[test]
    fn generated_body_has_exact_length() {
        let mut g = Generated::new(200_000);
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut n = 0;
        while let Poll::Ready(Some(Ok(f))) = Pin::new(&mut g).poll_frame(&mut cx) {
            n += f.data_ref().map_or(0, |d| d.len());
        }
        assert_eq!(n, 200_000);
    }
}
