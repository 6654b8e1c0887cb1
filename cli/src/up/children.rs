//! Child processes: the server binaries next to `trustbus`, one-shot setup commands, and the
//! long-running servers with their output in `DIR/logs/`. Every child is stopped on every exit
//! path: [`Children::stop_all`] on a normal or signalled shutdown, and `kill_on_drop` as the
//! last resort when `trustbus up` fails half-way or panics. If `trustbus up` itself is killed
//! (SIGKILL, OOM), the servers see their standard input closed and stop on their own.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use super::UpError;

/// Finds a server binary next to the running `trustbus` (same build directory).
pub(crate) fn sibling_binary(name: &str) -> Result<PathBuf, UpError> {
    let exe = std::env::current_exe()
        .map_err(|e| UpError::Setup(format!("cannot locate the trustbus binary: {e}")))?;
    let path = exe.with_file_name(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(UpError::Setup(format!(
            "{} not found next to {}: build the whole workspace first \
             (`cargo build --release`, then run target/release/trustbus up)",
            path.display(),
            exe.display()
        )))
    }
}

/// Fails with a clear message when `program --help` does not list every one of `commands`
/// (for example a security-server build from before its commands existed).
pub(crate) async fn check_commands(program: &Path, commands: &[&str]) -> Result<(), UpError> {
    let out = Command::new(program)
        .arg("--help")
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| UpError::Setup(format!("cannot run {}: {e}", program.display())))?;
    let help = String::from_utf8_lossy(&out.stdout);
    let missing: Vec<&str> = commands
        .iter()
        .copied()
        .filter(|c| !help.lines().any(|l| l.trim_start().starts_with(c)))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(UpError::Setup(format!(
            "{} has no {} command: this build does not contain the finished server yet",
            program.display(),
            missing.join(", ")
        )))
    }
}

/// Runs a setup command to completion; its output goes to `log` and, on failure, into the
/// error. Returns standard output.
pub(crate) async fn run_once(
    program: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    log: &Path,
) -> Result<String, UpError> {
    let name = program
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let started = std::time::Instant::now();
    let out = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| UpError::Setup(format!("cannot run {}: {e}", program.display())))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let mut f = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .await
        .map_err(UpError::io(log))?;
    let entry = format!(
        "$ {name} {}\n{stdout}{stderr}({}, {:.2} s)\n\n",
        args.join(" "),
        out.status,
        started.elapsed().as_secs_f64()
    );
    f.write_all(entry.as_bytes())
        .await
        .map_err(UpError::io(log))?;
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(UpError::Setup(format!(
            "`{name} {}` failed ({}):\n{}{}",
            args.join(" "),
            out.status,
            stdout.trim_end(),
            stderr.trim_end()
        )))
    }
}

/// Makes `central-server serve` and `security-server serve` stop when their standard input
/// reaches end of file (`trustbus_central_server::supervised`).
const EXIT_WITH_PARENT_ENV: &str = "TRUSTBUS_EXIT_WITH_PARENT";

/// A long-running child (its `stdin` pipe stays open as long as this does).
struct Running {
    name: String,
    child: Child,
}

/// The long-running children of this instance.
#[derive(Default)]
pub(crate) struct Children {
    running: Vec<Running>,
}

/// What a child printed on standard output, line by line (it is also in its log file).
pub(crate) type Lines = mpsc::UnboundedReceiver<String>;

impl Children {
    /// Starts `program` with `args`; standard output is copied to `DIR/logs/NAME.log` and
    /// returned line by line, standard error goes to the same file.
    pub(crate) fn spawn(
        &mut self,
        name: &str,
        program: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        logs: &Path,
    ) -> Result<Lines, UpError> {
        std::fs::create_dir_all(logs).map_err(UpError::io(logs))?;
        let log_path = logs.join(format!("{name}.log"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(UpError::io(&log_path))?;
        let stderr = log.try_clone().map_err(UpError::io(&log_path))?;
        // The child's standard input is a pipe this process holds open and never writes: when
        // `trustbus up` dies by any means (SIGKILL included) the kernel closes it, and the
        // servers, told by TRUSTBUS_EXIT_WITH_PARENT, stop at its end of file.
        let mut child = Command::new(program)
            .args(args)
            .envs(env.iter().copied())
            .env(EXIT_WITH_PARENT_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| UpError::Setup(format!("cannot start {}: {e}", program.display())))?;
        let (tx, rx) = mpsc::unbounded_channel();
        if let Some(out) = child.stdout.take() {
            let mut log = tokio::fs::File::from_std(log);
            tokio::spawn(async move {
                let mut lines = BufReader::new(out).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let _ = log.write_all(format!("{line}\n").as_bytes()).await;
                    let _ = tx.send(line);
                }
            });
        }
        self.running.push(Running {
            name: name.to_owned(),
            child,
        });
        Ok(rx)
    }

    /// Whether no child runs.
    pub(crate) fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    /// The process ids, by name (published in `endpoints.json` for scripts and tests).
    pub(crate) fn pids(&self) -> Vec<(String, u32)> {
        self.running
            .iter()
            .filter_map(|r| r.child.id().map(|p| (r.name.clone(), p)))
            .collect()
    }

    /// Names of children that have exited since the last call, with their status.
    pub(crate) fn exited(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        self.running.retain_mut(|r| match r.child.try_wait() {
            Ok(Some(status)) => {
                out.push(format!("{} exited ({status})", r.name));
                false
            }
            _ => true,
        });
        out
    }

    /// Stops every child: SIGTERM (their clean shutdown path), then SIGKILL after a grace
    /// period. Newest first, so the security servers go before the central server.
    pub(crate) async fn stop_all(&mut self) {
        for r in self.running.iter().rev() {
            if let Some(pid) = r.child.id() {
                terminate(pid).await;
            }
        }
        for mut r in self.running.drain(..).rev() {
            match tokio::time::timeout(Duration::from_secs(5), r.child.wait()).await {
                Ok(_) => {}
                Err(_) => {
                    tracing::warn!(name = %r.name, "did not stop within 5 s; killing it");
                    let _ = r.child.kill().await;
                }
            }
        }
    }
}

/// Waits until `lines` has produced `n` lines starting with `listening ` and returns them;
/// fails when the child closes its output first or `timeout` passes.
pub(crate) async fn wait_listening(
    name: &str,
    lines: &mut Lines,
    n: usize,
    timeout: Duration,
    logs: &Path,
) -> Result<Vec<String>, UpError> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while seen.len() < n {
        match tokio::time::timeout_at(deadline, lines.recv()).await {
            Ok(Some(line)) => {
                if line.starts_with("listening ") {
                    seen.push(line);
                }
            }
            Ok(None) => {
                return Err(UpError::Setup(format!(
                    "{name} stopped during start-up; see {}",
                    logs.join(format!("{name}.log")).display()
                )));
            }
            Err(_) => {
                return Err(UpError::Setup(format!(
                    "{name} did not start within {} s; see {}",
                    timeout.as_secs(),
                    logs.join(format!("{name}.log")).display()
                )));
            }
        }
    }
    Ok(seen)
}

/// Sends SIGTERM with the system's `kill` (the workspace forbids `unsafe`, so no libc call).
async fn terminate(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
}
