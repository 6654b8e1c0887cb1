//! What the client proxy and the server proxy listeners share: the connection cap and the
//! HTTP/1.1 settings every connection is served with.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper::server::conn::http1;
use tokio::net::{TcpListener, TcpStream};

use crate::state::AppState;

/// Accepts connections on `listener` and runs `on_conn` for each in its own task, with at
/// most `limits.max_connections` (read at start) open at once: further connections wait in
/// the kernel's backlog instead of being accepted and starved.
pub(crate) async fn accept_limited<F, Fut>(
    state: &AppState,
    listener: TcpListener,
    on_conn: F,
) -> std::io::Result<()>
where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let permits = Arc::new(tokio::sync::Semaphore::new(
        state.cfg().limits.max_connections.max(1),
    ));
    loop {
        let (tcp, remote) = listener.accept().await?;
        let Ok(permit) = permits.clone().acquire_owned().await else {
            continue;
        };
        let conn = on_conn(tcp, remote);
        tokio::spawn(async move {
            let _permit = permit;
            conn.await;
        });
    }
}

/// HTTP/1.1 with keep-alive and the header read timeout; with `max_header`, the read buffer
/// (and so the largest header block) is capped at that many bytes, 8 KiB at least.
pub(crate) fn http1_builder(max_header: Option<usize>) -> http1::Builder {
    let mut b = http1::Builder::new();
    b.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(crate::HEADER_READ_TIMEOUT)
        .keep_alive(true);
    if let Some(max) = max_header {
        b.max_buf_size(max.max(8192));
    }
    b
}
