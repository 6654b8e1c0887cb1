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
    /// Server id → index into `servers` (the first server listed with that id).
    by_id: HashMap<SecurityServerId, usize>,
    /// Client → indexes into `servers` of the servers where it is registered and enabled, in
    /// configuration order. Every exchange looks up its client's and its provider's servers;
    /// indexed once per version, that costs the same in a federation of thousands of servers.
    hosting: HashMap<ClientId, Vec<usize>>,
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
        let mut by_id = HashMap::new();
        let mut hosting: HashMap<ClientId, Vec<usize>> = HashMap::new();
        for (i, s) in servers.iter().enumerate() {
            for fp in &s.auth_cert_sha256 {
                let mut b = [0u8; 32];
                if hex_to(fp, &mut b) {
                    by_fingerprint.insert(b, i);
                }
            }
            by_id.entry(s.id.clone()).or_insert(i);
            for c in s.clients.iter().filter(|c| c.enabled) {
                let on = hosting.entry(c.id.clone()).or_default();
                if on.last() != Some(&i) {
                    on.push(i);
                }
            }
        }
        let secs = i64::try_from(conf.shared.settings.ocsp_freshness_seconds).unwrap_or(i64::MAX);
        Self {
            trust: Arc::new(trust),
            ocsp_freshness: time::Duration::seconds(secs),
            trusted_issuers: crate::citizen::trusted_issuers(&conf.shared.trusted_oidc_issuers),
            by_fingerprint,
            by_id,
            hosting,
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
        self.by_id.get(id).map(|&i| &self.servers[i])
    }

    /// Servers on which `client` is registered and enabled, in configuration order.
    pub fn servers_hosting(&self, client: &ClientId) -> Vec<&SecurityServer> {
        self.hosting
            .get(client)
            .map(|on| on.iter().map(|&i| &self.servers[i]).collect())
            .unwrap_or_default()
    }

    /// Whether `server` hosts `client` (registered and enabled) in this configuration. Servers
    /// are told apart by id, which is unique in a configuration (the central server keys them
    /// by it).
    pub fn hosts(&self, server: &SecurityServer, client: &ClientId) -> bool {
        self.hosting
            .get(client)
            .is_some_and(|on| on.iter().any(|&i| self.servers[i].id == server.id))
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

#[cfg(test)]
mod tests {
    use super::*;
    use trustbus_central_server::model::HostedClient;

    fn server(code: &str, clients: &[(&str, bool)]) -> SecurityServer {
        serde_json::from_value(serde_json::json!({
            "id": format!("DEV/GOV/1000/{code}"),
            "owner": "DEV/GOV/1000",
            "server_code": code,
        }))
        .map(|mut s: SecurityServer| {
            s.clients = clients
                .iter()
                .map(|(c, enabled)| HostedClient {
                    id: ClientId::from_slash(c).unwrap(),
                    enabled: *enabled,
                })
                .collect();
            s
        })
        .unwrap()
    }

    fn view(servers: Vec<SecurityServer>) -> GcView {
        let ca = serde_json::from_value(serde_json::json!({"name": "ca", "roots": []})).unwrap();
        let shared = crate::testkit::shared_params(&[], servers, ca);
        let expires = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
        GcView::new(crate::testkit::global_conf(shared, 1, expires))
    }

    fn codes(servers: Vec<&SecurityServer>) -> Vec<&str> {
        servers.iter().map(|s| s.server_code.as_str()).collect()
    }

    /// The indexes answer what scanning the configuration would: enabled registrations only,
    /// in configuration order, each server once.
    #[test]
    fn routing_lookups_follow_the_configuration() {
        let a = "DEV/GOV/2000/a";
        let b = "DEV/GOV/2000/b";
        let v = view(vec![
            server("ss3", &[(a, true), (b, false)]),
            server("ss1", &[(a, true), (a, true), (b, true)]),
            server("ss2", &[(b, true)]),
        ]);
        let id = |c: &str| ClientId::from_slash(c).unwrap();
        assert_eq!(codes(v.servers_hosting(&id(a))), ["ss3", "ss1"]);
        assert_eq!(codes(v.servers_hosting(&id(b))), ["ss1", "ss2"]);
        assert!(v.servers_hosting(&id("DEV/GOV/2000/c")).is_empty());

        let ss1 = v.server(&SecurityServerId::from_slash("DEV/GOV/1000/ss1").unwrap());
        assert_eq!(ss1.map(|s| s.clients.len()), Some(3));
        let ss3 = v
            .server(&SecurityServerId::from_slash("DEV/GOV/1000/ss3").unwrap())
            .unwrap();
        assert!(v.hosts(ss3, &id(a)));
        assert!(!v.hosts(ss3, &id(b)), "registered but disabled");
        let ss2 = v
            .server(&SecurityServerId::from_slash("DEV/GOV/1000/ss2").unwrap())
            .unwrap();
        assert!(!v.hosts(ss2, &id(a)));
        assert!(
            v.server(&SecurityServerId::from_slash("DEV/GOV/1000/ss9").unwrap())
                .is_none()
        );
    }
}
