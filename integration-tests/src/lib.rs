//! Helpers for the end-to-end tests that start the real Trustbus binaries on loopback: finding
//! (or building) the binaries, running `trustbus up` and reading its `endpoints.json`, a small
//! HTTP/1.1 client, and the `sh` blocks of docs/operator-guide.md; and the benchmark harness
//! (`trustbus-loadgen`, `trustbus-echo`, `trustbus-bench`) in the modules below.

#![forbid(unsafe_code)]

pub mod bus;
pub mod echo;
pub mod hist;
pub mod load;
pub mod nginx;
pub mod procstat;
pub mod promtext;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The binaries the suite runs.
pub const BINARIES: [&str; 3] = ["trustbus", "central-server", "security-server"];

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The directory holding `trustbus`, `central-server` and `security-server`.
///
/// `TRUSTBUS_BIN_DIR` wins when set. Otherwise the cargo target directory this test was built
/// into (`target/debug/deps/<test>` → `target/debug`). `cargo test --workspace` builds all
/// three binaries before running tests; when one is missing (for example with
/// `cargo test -p trustbus-integration-tests`) this builds them with `cargo build` first.
pub fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("TRUSTBUS_BIN_DIR") {
        return PathBuf::from(d);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    if BINARIES.iter().any(|b| !dir.join(b).is_file()) {
        eprintln!(
            "end-to-end tests: building the binaries (cargo build -p trustbus \
             -p trustbus-central-server -p trustbus-security-server --bins)"
        );
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(workspace_root())
            .args([
                "build",
                "-p",
                "trustbus",
                "-p",
                "trustbus-central-server",
                "-p",
                "trustbus-security-server",
                "--bins",
            ])
            .status();
        assert!(
            matches!(status, Ok(s) if s.success()),
            "building the binaries failed ({status:?}); run `cargo build --workspace` and retry"
        );
    }
    for b in BINARIES {
        assert!(
            dir.join(b).is_file(),
            "{} is missing: run `cargo build --workspace`",
            dir.join(b).display()
        );
    }
    dir
}

/// Whether the `security-server` binary has the commands `trustbus up` drives (`init`,
/// `register`, `serve`): a binary from another worktree or an older build may not.
pub fn security_server_available() -> bool {
    Command::new(bin_dir().join("security-server"))
        .arg("--help")
        .output()
        .map(|o| {
            let help = String::from_utf8_lossy(&o.stdout);
            help.contains("register") && help.contains("serve")
        })
        .unwrap_or(false)
}

/// `PATH` with [`bin_dir`] first, for commands copied from the docs.
pub fn path_with_binaries() -> String {
    let old = std::env::var("PATH").unwrap_or_default();
    format!("{}:{old}", bin_dir().display())
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

/// Sends `signal` (`TERM`, `INT`, `KILL`) to `pid` with the system's `kill`.
pub fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status();
}

/// Whether a process with this id still exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(s) => s
            .rsplit(") ")
            .next()
            .is_some_and(|rest| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// A running `trustbus up`.
pub struct Up {
    child: Child,
    /// The instance directory.
    pub dir: PathBuf,
    /// `endpoints.json`.
    pub endpoints: serde_json::Value,
    /// From start until the banner was printed.
    pub ready_in: Duration,
    /// Everything printed on standard output up to the banner's end.
    pub banner: String,
}

impl Up {
    /// Runs `trustbus up --dir DIR` and waits (up to 120 s) until it prints that it is ready.
    pub fn start(dir: &Path) -> Self {
        Self::start_with(dir, &[])
    }

    /// [`Up::start`] with more arguments for `trustbus up`.
    pub fn start_with(dir: &Path, args: &[&str]) -> Self {
        let started = Instant::now();
        let log = std::fs::File::create(dir.with_extension("stderr.log"))
            .unwrap_or_else(|e| panic!("stderr log: {e}"));
        let mut child = Command::new(bin_dir().join("trustbus"))
            .args(["up", "--dir"])
            .arg(dir)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start trustbus up: {e}"));
        let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    // Keep draining so the child never blocks on a full pipe.
                    continue;
                }
            }
        });
        let mut banner = String::new();
        let mut up = None;
        while up.is_none() {
            match rx.recv_timeout(Duration::from_secs(120)) {
                Ok(line) => {
                    banner.push_str(&line);
                    banner.push('\n');
                    if line.starts_with("Press Ctrl-C") {
                        up = Some(started.elapsed());
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let err = std::fs::read_to_string(dir.with_extension("stderr.log"))
                        .unwrap_or_default();
                    panic!("trustbus up did not become ready:\n{banner}\n{err}");
                }
            }
        }
        let text = std::fs::read_to_string(dir.join("endpoints.json"))
            .unwrap_or_else(|e| panic!("endpoints.json: {e}"));
        Self {
            child,
            dir: dir.to_path_buf(),
            endpoints: serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("endpoints.json: {e}")),
            ready_in: up.unwrap_or_default(),
            banner,
        }
    }

    /// `endpoints.json` string at a JSON pointer (`/central_server/admin_api_url`).
    pub fn get(&self, pointer: &str) -> String {
        self.endpoints
            .pointer(pointer)
            .and_then(|v| v.as_str())
            .unwrap_or_else(|| panic!("endpoints.json has no string at {pointer}"))
            .to_owned()
    }

    /// The process id of `trustbus up` itself.
    pub fn up_pid(&self) -> u32 {
        self.child.id()
    }

    /// The pid of a child by name (`central-server`, `ss1`, ...).
    pub fn pid(&self, name: &str) -> u32 {
        self.endpoints["processes"]
            .as_array()
            .and_then(|a| a.iter().find(|p| p["name"] == name))
            .and_then(|p| p["pid"].as_u64())
            .and_then(|p| u32::try_from(p).ok())
            .unwrap_or_else(|| panic!("no process {name} in endpoints.json"))
    }

    /// Sends `sig` to `trustbus up` and waits (up to 15 s) for it to exit; returns whether it
    /// exited successfully.
    pub fn stop(mut self, sig: &str) -> bool {
        signal(self.child.id(), sig);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("trustbus up did not stop within 15 s of SIG{sig}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            signal(self.child.id(), "TERM");
            let _ = self.child.wait();
        }
    }
}

/// A child process killed when dropped.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        signal(self.0.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An HTTP response.
#[derive(Debug, Clone)]
pub struct Resp {
    /// Status code.
    pub status: u16,
    /// Headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// Body (de-chunked).
    pub body: Vec<u8>,
}

impl Resp {
    /// The last value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// One HTTP/1.1 request over plain TCP (`http://host:port/path`), `Connection: close`.
pub fn http(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Resp, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or(format!("not an http URL: {url}"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut s = TcpStream::connect(authority).map_err(|e| format!("{authority}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    s.write_all(body).map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or(format!("no HTTP response ({} bytes)", raw.len()))?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or(format!("bad status line in {head}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"))
    {
        body = dechunk(&body);
    }
    Ok(Resp {
        status,
        headers,
        body,
    })
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = b.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&b[..i])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 || b.len() < i + 2 + size {
            break;
        }
        out.extend_from_slice(&b[i + 2..i + 2 + size]);
        b = &b[(i + 4 + size).min(b.len())..];
    }
    out
}

/// Polls `f` every 200 ms until it returns `Some`, for up to `timeout`.
pub fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match f() {
            Ok(v) => return v,
            Err(last) if Instant::now() > deadline => {
                panic!("{what}: not within {} s; last: {last}", timeout.as_secs())
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// The bodies of the fenced `sh` blocks of docs/operator-guide.md that follow a line
/// `<!-- e2e: TAG -->`, in order.
pub fn operator_guide_blocks(tag: &str) -> Vec<String> {
    doc_blocks("operator-guide.md", tag)
}

/// The bodies of the fenced `sh` blocks of `docs/FILE` that follow a line
/// `<!-- e2e: TAG -->`, in order.
pub fn doc_blocks(file: &str, tag: &str) -> Vec<String> {
    let path = workspace_root().join("docs").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let marker = format!("<!-- e2e: {tag} -->");
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(l) = lines.next() {
        if l.trim() != marker {
            continue;
        }
        let fence = lines.next().unwrap_or_default();
        assert_eq!(
            fence.trim(),
            "```sh",
            "{marker} must be followed by a ```sh block"
        );
        let block: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
        out.push(block.join("\n"));
    }
    assert!(!out.is_empty(), "no block marked {marker} in docs/{file}");
    out
}
