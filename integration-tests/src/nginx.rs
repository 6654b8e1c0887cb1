//! The baseline an agency would build without a bus: two nginx reverse proxies joined by mutual
//! TLS 1.3 (perf-anchors §1), with its own throw-away ECDSA P-256 PKI made by openssl.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Ports of the chain: `entry` is nginx1's plain-HTTP listener, `tls` nginx2's mTLS listener.
#[derive(Debug, Clone, Copy)]
pub struct ChainPorts {
    /// nginx1, plain HTTP in (stands in for the consumer's security server).
    pub entry: u16,
    /// nginx2, HTTPS with `ssl_verify_client on` (stands in for the provider's).
    pub tls: u16,
    /// The backend nginx2 forwards to.
    pub backend: u16,
}

/// A started chain; [`Chain::stop`] (or dropping it) stops both masters with `SIGQUIT`.
#[derive(Debug)]
pub struct Chain {
    /// The two master pids, nginx1 first.
    pub masters: [u32; 2],
    /// Where load goes in.
    pub url: String,
    stopped: bool,
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{:?}: {e}", cmd.get_program()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{:?} {:?} failed: {}",
            cmd.get_program(),
            cmd.get_args().collect::<Vec<_>>(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The nginx binary, installing Debian's `nginx` package with apt-get when it is missing.
/// Returns the path and whether it was installed now.
pub fn ensure_nginx() -> Result<(PathBuf, bool), String> {
    let find = || {
        ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
    };
    if let Some(p) = find() {
        return Ok((p, false));
    }
    eprintln!("nginx is missing: installing Debian's nginx package with apt-get");
    let install = || {
        run(Command::new("apt-get")
            .args(["install", "-y", "-qq", "nginx"])
            .env("DEBIAN_FRONTEND", "noninteractive"))
    };
    if install().is_err() {
        run(Command::new("apt-get").args(["update", "-qq"]))?;
        install()?;
    }
    find()
        .map(|p| (p, true))
        .ok_or_else(|| "apt-get installed nginx but no nginx binary was found".into())
}

/// Makes a CA, a server certificate for `localhost`/127.0.0.1 and a client certificate (all
/// ECDSA P-256) in `dir` with openssl.
pub fn make_pki(dir: &Path) -> Result<(), String> {
    fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let ossl = |args: &[&str]| run(Command::new("openssl").args(args).current_dir(dir));
    ossl(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        "ca.key",
    ])?;
    ossl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        "ca.key",
        "-sha256",
        "-days",
        "30",
        "-subj",
        "/CN=trustbus-bench-ca",
        "-out",
        "ca.crt",
    ])?;
    for (name, ext) in [
        (
            "server",
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        ),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ] {
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        let crt = format!("{name}.crt");
        let extf = format!("{name}.ext");
        fs::write(dir.join(&extf), ext).map_err(|e| format!("{extf}: {e}"))?;
        ossl(&[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            &key,
        ])?;
        ossl(&[
            "req",
            "-new",
            "-key",
            &key,
            "-subj",
            &format!("/CN=bench-{name}"),
            "-out",
            &csr,
        ])?;
        ossl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "30",
            "-sha256",
            "-extfile",
            &extf,
            "-out",
            &crt,
        ])?;
    }
    Ok(())
}

/// Settings both proxies share: one worker, no access log, connections never recycled during a
/// run, and temp paths inside the bench directory (the defaults under /var need root).
fn common(dir: &Path, name: &str) -> String {
    let d = dir.join(name);
    let d = d.display();
    format!(
        "worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections 4096; }}\nhttp {{\n    access_log off;\n\
         client_body_temp_path {d}/tmp_body;\n    proxy_temp_path {d}/tmp_proxy;\n\
         fastcgi_temp_path {d}/tmp_fcgi;\n    uwsgi_temp_path {d}/tmp_uwsgi;\n\
         scgi_temp_path {d}/tmp_scgi;\n    keepalive_requests 1000000;\n    keepalive_timeout 75s;\n\
         client_body_buffer_size 16k;\n    # the large-payload run sends 1 GiB\n\
         client_max_body_size 0;\n"
    )
}

/// nginx1: plain HTTP in, HTTPS with a client certificate out (TLS 1.3, server verified).
pub fn nginx1_conf(dir: &Path, pki: &Path, p: ChainPorts) -> String {
    let pki = pki.display();
    format!(
        "# nginx1 stands in for the consumer's security server: plain HTTP in, mTLS out\n{}\
    upstream ss_b {{\n        server 127.0.0.1:{tls};\n        keepalive 256;\n\
        keepalive_requests 1000000;\n        keepalive_timeout 75s;\n    }}\n\
    server {{\n        listen 127.0.0.1:{entry};\n        location / {{\n\
            proxy_pass https://ss_b;\n            proxy_http_version 1.1;\n\
            proxy_set_header Connection \"\";\n            proxy_ssl_protocols TLSv1.3;\n\
            proxy_ssl_certificate {pki}/client.crt;\n            proxy_ssl_certificate_key {pki}/client.key;\n\
            proxy_ssl_trusted_certificate {pki}/ca.crt;\n            proxy_ssl_verify on;\n\
            proxy_ssl_verify_depth 2;\n            proxy_ssl_name localhost;\n\
            proxy_ssl_server_name on;\n            proxy_ssl_session_reuse on;\n        }}\n    }}\n}}\n",
        common(dir, "nginx1"),
        tls = p.tls,
        entry = p.entry,
    )
}

/// nginx2: HTTPS in with `ssl_verify_client on`, plain HTTP to the backend.
pub fn nginx2_conf(dir: &Path, pki: &Path, p: ChainPorts) -> String {
    let pki = pki.display();
    format!(
        "# nginx2 stands in for the provider's security server: mTLS in, plain HTTP to the backend\n{}\
    upstream backend {{\n        server 127.0.0.1:{backend};\n        keepalive 256;\n\
        keepalive_requests 1000000;\n        keepalive_timeout 75s;\n    }}\n\
    server {{\n        listen 127.0.0.1:{tls} ssl;\n        ssl_protocols TLSv1.3;\n\
        ssl_certificate {pki}/server.crt;\n        ssl_certificate_key {pki}/server.key;\n\
        ssl_client_certificate {pki}/ca.crt;\n        ssl_verify_client on;\n\
        ssl_verify_depth 2;\n        ssl_session_cache shared:SSL:1m;\n        location / {{\n\
            proxy_pass http://backend;\n            proxy_http_version 1.1;\n\
            proxy_set_header Connection \"\";\n        }}\n    }}\n}}\n",
        common(dir, "nginx2"),
        backend = p.backend,
        tls = p.tls,
    )
}

fn wait_for_pid(file: &Path, deadline: Instant) -> Result<u32, String> {
    loop {
        if let Some(pid) = fs::read_to_string(file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            return Ok(pid);
        }
        if Instant::now() > deadline {
            return Err(format!("nginx wrote no pid file {}", file.display()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Chain {
    /// Writes the PKI and both configs under `dir` and starts both nginx masters (which
    /// daemonise and write pid files).
    pub fn start(nginx: &Path, dir: &Path, ports: ChainPorts) -> Result<Self, String> {
        let pki = dir.join("pki");
        make_pki(&pki)?;
        let mut masters = [0u32; 2];
        for (i, name) in ["nginx2", "nginx1"].iter().enumerate() {
            let d = dir.join(name);
            fs::create_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
            let conf = if *name == "nginx1" {
                nginx1_conf(dir, &pki, ports)
            } else {
                nginx2_conf(dir, &pki, ports)
            };
            let cf = d.join("nginx.conf");
            fs::write(&cf, conf).map_err(|e| format!("{}: {e}", cf.display()))?;
            let cfs = cf.display().to_string();
            let ds = d.display().to_string();
            // -e: nginx opens its default error log before reading the config otherwise.
            let err_log = format!("{ds}/error.log");
            run(Command::new(nginx).args(["-t", "-q", "-p", &ds, "-e", &err_log, "-c", &cfs]))?;
            run(Command::new(nginx).args(["-p", &ds, "-e", &err_log, "-c", &cfs]))?;
            // nginx2 first, so nginx1's upstream is up when load starts; masters[0] is nginx1.
            masters[1 - i] = wait_for_pid(
                &d.join("nginx.pid"),
                Instant::now() + Duration::from_secs(10),
            )?;
        }
        Ok(Self {
            masters,
            url: format!("http://127.0.0.1:{}", ports.entry),
            stopped: false,
        })
    }

    /// Every nginx process (masters and workers) with a label.
    pub fn processes(&self) -> Vec<(String, u32)> {
        let mut out = Vec::new();
        for (i, m) in self.masters.iter().enumerate() {
            out.push((format!("nginx{}-master", i + 1), *m));
            for w in crate::procstat::descendants(*m) {
                out.push((format!("nginx{}-worker", i + 1), w));
            }
        }
        out
    }

    /// Graceful shutdown of both masters (`kill -QUIT`), waiting up to 5 s for them to exit.
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        for m in self.masters {
            let _ = Command::new("kill")
                .args(["-QUIT", &m.to_string()])
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline
            && self
                .masters
                .iter()
                .any(|m| Path::new(&format!("/proc/{m}")).exists())
        {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Chain {
    fn drop(&mut self) {
        self.stop();
    }
}
