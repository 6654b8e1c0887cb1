//! Running under a supervisor such as `trustbus up`: with `TRUSTBUS_EXIT_WITH_PARENT=1` in the
//! environment, a server stops when its standard input reaches end of file. The supervisor
//! keeps the write end of a pipe open and never writes to it; the kernel closes it when the
//! supervisor dies by any means (SIGKILL included), so its servers never outlive it. Shared by
//! `central-server serve` and `security-server serve`.

use std::io::Read;
use std::time::Duration;

/// The environment variable that turns the watch on (value `1`).
pub const EXIT_WITH_PARENT_ENV: &str = "TRUSTBUS_EXIT_WITH_PARENT";

/// How long a graceful shutdown may take after the parent is gone before the process exits
/// anyway (a stuck connection must not keep an orphan alive).
const GRACE: Duration = Duration::from_secs(10);

/// Resolves when standard input reaches end of file (the parent is gone) if
/// `TRUSTBUS_EXIT_WITH_PARENT=1`; never resolves otherwise. After it resolves the process
/// exits within [`GRACE`] even if the graceful shutdown does not finish.
pub async fn parent_gone() {
    if std::env::var_os(EXIT_WITH_PARENT_ENV).is_none_or(|v| v != "1") {
        return std::future::pending().await;
    }
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    // A plain thread: a blocking read of stdin must not occupy a runtime worker.
    let spawned = std::thread::Builder::new()
        .name("parent-watch".into())
        .spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut buf = [0u8; 256];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            tracing::warn!("standard input closed: the supervising process is gone; stopping");
            let _ = tx.send(());
            std::thread::sleep(GRACE);
            tracing::error!("graceful shutdown took too long; exiting");
            std::process::exit(1);
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot watch standard input; the server will not stop with its parent");
        return std::future::pending().await;
    }
    let _ = rx.await;
}
