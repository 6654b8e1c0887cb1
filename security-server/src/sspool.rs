//! Connections to other security servers: TLS 1.3 with authentication certificates, HTTP/1.1
//! keep-alive, pooled per server address. When several servers host a provider, new
//! connections are opened to all of them at once and the first handshake that completes wins
//! (the others are kept for later requests); a server that fails is skipped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use trustbus_central_server::model::SecurityServer;
use trustbus_pki::Certificate;
use trustbus_pki::chain::TrustStore;
use trustbus_pki::tls::{PeerPolicy, PeerRejected, TlsIdentity, ss_client_config};
use trustbus_sdk::fault::{ErrorKind, Fault, Origin};

use crate::gcview::GcView;
use crate::httpc::OutBody;
use crate::identity::Identity;

/// Default server proxy port when an address has none.
pub const DEFAULT_PORT: u16 = 5500;

/// A pooled connection and the peer's authentication certificate.
struct Conn {
    sender: SendRequest<OutBody>,
    peer: Certificate,
}

/// The connection pool.
pub struct SsPool {
    idle: Mutex<HashMap<String, Vec<Conn>>>,
    connect_timeout: Duration,
}

impl std::fmt::Debug for SsPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SsPool")
    }
}

/// Trusts exactly the registered certificates of one server.
struct OneServer {
    trust: Arc<TrustStore>,
    fingerprints: Vec<String>,
}

impl PeerPolicy for OneServer {
    fn trust_store(&self) -> Arc<TrustStore> {
        self.trust.clone()
    }
    fn is_registered(&self, fp: &[u8; 32]) -> bool {
        trustbus_pki::cert::fingerprint_listed(&self.fingerprints, fp)
    }
}

fn address(s: &SecurityServer) -> String {
    let a = s.address.trim();
    // `host:port`, `[v6]:port`, or a bare host.
    if a.rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        && !a.ends_with(']')
    {
        a.to_owned()
    } else {
        format!("{a}:{DEFAULT_PORT}")
    }
}

/// Pool key: the server identity and address, so a connection checked against one server's
/// registered certificates is never reused for another server at the same address.
fn pool_key(s: &SecurityServer) -> String {
    format!("{}|{}", s.id.to_slash(), address(s))
}

fn ssl_failed(m: String) -> Fault {
    Fault::of(Origin::ClientProxy, ErrorKind::SslAuthenticationFailed, m)
}

/// A request in flight with the peer it went to.
pub struct Sent {
    /// The response head and streaming body.
    pub response: http::Response<Incoming>,
    /// The peer's authentication certificate.
    pub peer: Certificate,
    /// The server that answered.
    pub server: SecurityServer,
}

impl SsPool {
    /// An empty pool.
    pub fn new(connect_timeout: Duration) -> Self {
        Self {
            idle: Mutex::new(HashMap::new()),
            connect_timeout,
        }
    }

    fn take_idle(&self, servers: &[SecurityServer]) -> Option<(Conn, SecurityServer)> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        for s in servers {
            if let Some(list) = idle.get_mut(&pool_key(s)) {
                // Drop closed connections and those whose peer certificate is no longer
                // registered for this server in the current configuration.
                list.retain(|c| {
                    !c.sender.is_closed()
                        && trustbus_pki::cert::fingerprint_listed(
                            &s.auth_cert_sha256,
                            c.peer.fingerprint(),
                        )
                });
                // Connections still reading a previous response are left in the pool.
                if let Some(i) = list.iter().position(|c| c.sender.is_ready()) {
                    return Some((list.swap_remove(i), s.clone()));
                }
            }
        }
        None
    }

    fn put_idle(&self, addr: String, c: Conn) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.entry(addr).or_default();
        if list.len() < 32 {
            list.push(c);
        }
    }

    async fn connect(
        view: Arc<GcView>,
        identity: Arc<Identity>,
        server: SecurityServer,
        timeout: Duration,
    ) -> Result<(Conn, SecurityServer), Fault> {
        let addr = address(&server);
        let policy = Arc::new(OneServer {
            trust: view.trust.clone(),
            fingerprints: server.auth_cert_sha256.clone(),
        });
        let tls_id = TlsIdentity::new(&identity.auth.chain, &identity.auth.key)
            .map_err(|e| Fault::of(Origin::ClientProxy, ErrorKind::InternalError, e.to_string()))?;
        let cfg = ss_client_config(tls_id, policy)
            .map_err(|e| Fault::of(Origin::ClientProxy, ErrorKind::InternalError, e.to_string()))?;
        let net = |m: String| Fault::of(Origin::ClientProxy, ErrorKind::NetworkError, m);
        let tcp = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&addr))
            .await
            .map_err(|_| net(format!("connecting to {addr} timed out")))?
            .map_err(|e| net(format!("cannot connect to {addr}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from("trustbus-security-server")
            .map_err(|e| net(e.to_string()))?
            .to_owned();
        let tls = tokio::time::timeout(
            timeout,
            tokio_rustls::TlsConnector::from(cfg).connect(name, tcp),
        )
        .await
        .map_err(|_| net(format!("TLS handshake with {addr} timed out")))?
        .map_err(|e| {
            let rej = e
                .get_ref()
                .and_then(|i| i.downcast_ref::<rustls::Error>())
                .and_then(PeerRejected::from_rustls)
                .map(|r| r.to_string());
            match rej {
                Some(r) => ssl_failed(format!("security server {}: {r}", server.id.to_slash())),
                None => ssl_failed(format!("TLS with {addr} failed: {e}")),
            }
        })?;
        let peer = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .and_then(|c| Certificate::from_der(c.as_ref()).ok())
            .ok_or_else(|| ssl_failed("peer sent no certificate".into()))?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| net(e.to_string()))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "security server connection closed");
            }
        });
        Ok((Conn { sender, peer }, server))
    }

    /// Connection test: a TLS handshake with `server` under the same trust rules as an exchange.
    /// Returns the subject of the certificate the peer presented.
    pub async fn probe(
        &self,
        view: &Arc<GcView>,
        identity: &Arc<Identity>,
        server: &SecurityServer,
    ) -> Result<String, Fault> {
        let (conn, _) = Self::connect(
            view.clone(),
            identity.clone(),
            server.clone(),
            self.connect_timeout,
        )
        .await?;
        Ok(conn.peer.subject().to_owned())
    }

    /// A connection to one of `servers`: an idle pooled one, or the first new one whose
    /// handshake completes.
    async fn get(
        &self,
        view: &Arc<GcView>,
        identity: &Arc<Identity>,
        servers: &[SecurityServer],
    ) -> Result<(Conn, SecurityServer), Fault> {
        if let Some(c) = self.take_idle(servers) {
            return Ok(c);
        }
        let mut set = tokio::task::JoinSet::new();
        for s in servers {
            set.spawn(Self::connect(
                view.clone(),
                identity.clone(),
                s.clone(),
                self.connect_timeout,
            ));
        }
        let mut last = None;
        while let Some(r) = set.join_next().await {
            match r {
                // Dropping the set aborts the slower handshakes.
                Ok(Ok(c)) => return Ok(c),
                Ok(Err(f)) => {
                    tracing::warn!(code = %f.code.render(trustbus_sdk::FaultDialect::Classic), msg = %f.message, "cannot reach security server");
                    // Prefer reporting a trust failure over a network one.
                    if last.as_ref().is_none_or(|l: &Fault| {
                        !l.code
                            .render(trustbus_sdk::FaultDialect::Classic)
                            .contains("Ssl")
                    }) {
                        last = Some(f);
                    }
                }
                Err(e) => {
                    last = Some(Fault::of(
                        Origin::ClientProxy,
                        ErrorKind::InternalError,
                        e.to_string(),
                    ))
                }
            }
        }
        Err(last.unwrap_or_else(|| {
            Fault::of(
                Origin::ClientProxy,
                ErrorKind::NetworkError,
                "no security server to connect to",
            )
        }))
    }

    /// Sends the request built by `make` to one of `servers`. `make` is called again (after a
    /// stale pooled connection failed before sending anything) only if it can rebuild the body.
    pub async fn send(
        &self,
        view: &Arc<GcView>,
        identity: &Arc<Identity>,
        servers: &[SecurityServer],
        req: http::Request<OutBody>,
    ) -> Result<Sent, Fault> {
        let (mut conn, server) = self.get(view, identity, servers).await?;
        if conn.sender.ready().await.is_err() {
            let c = Self::connect(
                view.clone(),
                identity.clone(),
                server.clone(),
                self.connect_timeout,
            )
            .await?;
            conn = c.0;
        }
        let map_err = |e: hyper::Error, server: &SecurityServer| {
            let text = format!("{e} {:?}", std::error::Error::source(&e));
            if text.contains("AlertReceived") || text.contains("Certificate") {
                Fault::of(
                    Origin::ServerProxy,
                    ErrorKind::SslAuthenticationFailed,
                    format!(
                        "security server {} refused our authentication certificate",
                        server.id.to_slash()
                    ),
                )
            } else {
                Fault::of(
                    Origin::ClientProxy,
                    ErrorKind::NetworkError,
                    format!("exchange with {} failed: {e}", server.id.to_slash()),
                )
            }
        };
        let response = match conn.sender.try_send_request(req).await {
            Ok(r) => r,
            Err(mut e) => match e.take_message() {
                // A pooled connection the peer had closed: nothing was sent, so the request
                // goes once more over a fresh connection to the same server.
                Some(req) => {
                    let (fresh, _) = Self::connect(
                        view.clone(),
                        identity.clone(),
                        server.clone(),
                        self.connect_timeout,
                    )
                    .await?;
                    conn = fresh;
                    conn.sender
                        .send_request(req)
                        .await
                        .map_err(|e| map_err(e, &server))?
                }
                None => return Err(map_err(e.into_error(), &server)),
            },
        };
        let peer = conn.peer.clone();
        // hyper queues a next request behind the response still being read, so the
        // connection can go back to the pool at once.
        self.put_idle(pool_key(&server), conn);
        Ok(Sent {
            response,
            peer,
            server,
        })
    }
}
