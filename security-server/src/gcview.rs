//! What the exchange needs from global configuration, indexed once per configuration version:
//! the approved CAs as a trust store, the OCSP freshness, the registered authentication
//! certificates, which servers host which clients, and global groups.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine;
use trustbus_central_server::confclient::GlobalConfiguration;
use trustbus_central_server::model::SecurityServer;
use trustbus_pki::Certificate;
use trustbus_pki::chain::TrustStore;
use trustbus_sdk::id::{ClientId, GlobalGroupId, SecurityServerId};

use crate::access::GroupLookup;

/// An indexed global configuration version.
pub struct GcView {
    /// The configuration itself.
    pub conf: Arc<GlobalConfiguration>,
    /// Approved CAs and intermediates.
    pub trust: Arc<TrustStore>,
    /// Maximum OCSP response age.
    pub ocsp_freshness: time::Duration,
    /// The identity providers trusted to vouch for end users (`trusted_oidc_issuers`).
    pub trusted_issuers: Vec<trustbus_sdk::identity::TrustedIssuer>,
    /// Auth certificate fingerprint → index into `servers`.
    by_fingerprint: HashMap<[u8; 32], usize>,
    /// The security servers.
    servers: Vec<SecurityServer>,
}

impl std::fmt::Debug for GcView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcView")
            .field("version", &self.conf.directory.version)
            .finish_non_exhaustive()
    }
}

fn b64(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

impl GcView {
    /// Indexes `conf`. Unreadable certificates are skipped (and logged): one bad entry must not
    /// stop the whole bus.
    pub fn new(conf: Arc<GlobalConfiguration>) -> Self {
        let mut trust = TrustStore::new();
        for ca in &conf.shared.approved_cas {
            for r in &ca.roots {
                match b64(r).map(Certificate::from_der) {
                    Some(Ok(c)) => trust.add_ca(c, ca.authentication_only),
                    _ => tracing::warn!(ca = %ca.name, "skipping an unreadable CA certificate"),
                }
            }
            for i in &ca.intermediates {
                if let Some(Ok(c)) = b64(i).map(Certificate::from_der) {
                    trust.add_intermediate(c);
                }
            }
        }
        let servers = conf.shared.security_servers.clone();
        let mut by_fingerprint = HashMap::new();
        for (i, s) in servers.iter().enumerate() {
            for fp in &s.auth_cert_sha256 {
                let mut b = [0u8; 32];
                if hex_to(fp, &mut b) {
                    by_fingerprint.insert(b, i);
                }
            }
        }
        let secs = i64::try_from(conf.shared.settings.ocsp_freshness_seconds).unwrap_or(i64::MAX);
        Self {
            trust: Arc::new(trust),
            ocsp_freshness: time::Duration::seconds(secs),
            trusted_issuers: crate::citizen::trusted_issuers(&conf.shared.trusted_oidc_issuers),
            by_fingerprint,
            servers,
            conf,
        }
    }

    /// The configuration version.
    pub fn version(&self) -> u64 {
        self.conf.directory.version
    }

    /// The server whose authentication certificate has this fingerprint.
    pub fn server_by_fingerprint(&self, fp: &[u8; 32]) -> Option<&SecurityServer> {
        self.by_fingerprint.get(fp).map(|&i| &self.servers[i])
    }

    /// A server by id.
    pub fn server(&self, id: &SecurityServerId) -> Option<&SecurityServer> {
        self.servers.iter().find(|s| &s.id == id)
    }

    /// Servers on which `client` is registered and enabled.
    pub fn servers_hosting(&self, client: &ClientId) -> Vec<&SecurityServer> {
        self.servers
            .iter()
            .filter(|s| s.clients.iter().any(|c| &c.id == client && c.enabled))
            .collect()
    }

    /// Whether `server` hosts `client` (registered and enabled).
    pub fn hosts(&self, server: &SecurityServer, client: &ClientId) -> bool {
        server.clients.iter().any(|c| &c.id == client && c.enabled)
    }

    /// Whether `client` (member or subsystem) is a registered member or subsystem.
    pub fn client_exists(&self, client: &ClientId) -> bool {
        let owner = client.owner();
        self.conf.shared.members.iter().any(|m| {
            m.id == owner
                && (client.subsystem_code().is_none()
                    || m.subsystems.iter().any(|s| &s.id == client))
        })
    }

    /// The issuer certificate of `cert` among the approved CAs and intermediates, for OCSP.
    pub fn issuer_of(&self, cert: &Certificate, extra: &[Certificate]) -> Option<Certificate> {
        self.trust
            .cas()
            .iter()
            .map(|c| &c.cert)
            .chain(extra.iter())
            .find(|c| c.subject_der() == cert.issuer_der())
            .cloned()
    }
}

impl GroupLookup for GcView {
    fn in_global_group(&self, group: &GlobalGroupId, client: &ClientId) -> bool {
        group.instance() == self.conf.shared.instance
            && self
                .conf
                .shared
                .global_groups
                .iter()
                .any(|g| g.code == group.group_code() && g.members.contains(client))
    }
}

fn hex_to(s: &str, out: &mut [u8; 32]) -> bool {
    if s.len() != 64 {
        return false;
    }
    for (i, b) in out.iter_mut().enumerate() {
        match u8::from_str_radix(s.get(2 * i..2 * i + 2).unwrap_or("zz"), 16) {
            Ok(v) => *b = v,
            Err(_) => return false,
        }
    }
    true
}

/// Caches the view of the current configuration version.
#[derive(Debug, Default)]
pub struct ViewCache {
    current: Mutex<Option<Arc<GcView>>>,
}

impl ViewCache {
    /// The view for `conf`, rebuilt only when the version changes.
    pub fn view(&self, conf: Arc<GlobalConfiguration>) -> Arc<GcView> {
        let mut cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = cur.as_ref()
            && v.version() == conf.directory.version
            && Arc::ptr_eq(&v.conf, &conf)
        {
            return v.clone();
        }
        let v = Arc::new(GcView::new(conf));
        *cur = Some(v.clone());
        v
    }
}
