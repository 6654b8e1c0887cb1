//! Test support (used by unit and integration tests): a development CA with an in-process
//! OCSP responder, certificates for members and servers, and global configurations built in
//! memory. Not for production use.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use time::OffsetDateTime;
use trustbus_central_server::confclient::GlobalConfiguration;
use trustbus_central_server::globalconf::Directory;
use trustbus_central_server::model::{
    ApprovedCa, HostedClient, Maintenance, Member, OcspResponder as OcspEntry, SecurityServer,
    Settings, SharedParams, Subsystem,
};
use trustbus_pki::devca::{DevCa, IssueRequest, SubjectKey};
use trustbus_pki::ocsp::OcspResponder;
use trustbus_pki::profile::CertProfile;
use trustbus_pki::{Certificate, DigestAlgorithm, KeyKind, KeyPair, Signer};
use trustbus_sdk::id::{ClientId, SecurityServerId};

/// A development CA with an OCSP responder.
pub struct TestPki {
    /// The CA.
    pub ca: Arc<DevCa>,
    responder: OcspResponder<Arc<DevCa>>,
}

impl std::fmt::Debug for TestPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TestPki")
    }
}

fn b64(d: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(d)
}

impl TestPki {
    /// Creates a CA for instance `DEV` in `dir`.
    pub fn new(dir: &Path) -> Result<Self, String> {
        let ca = Arc::new(DevCa::init(dir, "DEV").map_err(|e| e.to_string())?);
        let (ocert, okey) = ca.ocsp_signer().map_err(|e| e.to_string())?;
        let signer: Arc<dyn Signer> = Arc::new(okey);
        let responder = OcspResponder::new(ca.ca_cert().der(), ocert.der(), signer, ca.clone())
            .map_err(|e| e.to_string())?;
        Ok(Self { ca, responder })
    }

    /// A signing key and certificate for `member`.
    pub fn sign_cert(&self, member: &ClientId) -> Result<(KeyPair, Certificate), String> {
        self.issue(CertProfile::Sign, member, None)
    }

    /// An authentication key and certificate for `server`.
    pub fn auth_cert(&self, server: &SecurityServerId) -> Result<(KeyPair, Certificate), String> {
        self.issue(
            CertProfile::Auth,
            server.owner(),
            Some(server.server_code()),
        )
    }

    fn issue(
        &self,
        profile: CertProfile,
        member: &ClientId,
        server: Option<&str>,
    ) -> Result<(KeyPair, Certificate), String> {
        let key = KeyPair::generate(KeyKind::EcdsaP256).map_err(|e| e.to_string())?;
        let cert = self
            .ca
            .issue(&IssueRequest {
                profile,
                member: member.clone(),
                member_name: format!("Member {}", member.member_code()),
                server_code: server.map(str::to_owned),
                key: SubjectKey::Spki(key.public_key_der()),
                not_before: None,
                not_after: None,
            })
            .map_err(|e| e.to_string())?;
        Ok((key, cert))
    }

    /// An OCSP response for `cert` produced at `at`.
    pub fn ocsp(&self, cert: &Certificate, at: OffsetDateTime) -> Vec<u8> {
        let req = trustbus_pki::ocsp::build_request(
            cert.der(),
            self.ca.ca_cert().der(),
            DigestAlgorithm::Sha1,
        )
        .unwrap_or_default();
        self.responder.respond(&req, at)
    }

    /// The approved-CA entry for this CA, with `ocsp_url` as its responder.
    pub fn approved_ca(&self, ocsp_url: &str) -> ApprovedCa {
        ApprovedCa {
            name: "dev".into(),
            authentication_only: false,
            roots: vec![b64(self.ca.ca_cert().der())],
            intermediates: vec![],
            ocsp_responders: vec![OcspEntry {
                url: ocsp_url.into(),
                cert: None,
            }],
            certificate_profile: "trustbus-default".into(),
        }
    }
}

/// A security server entry hosting `clients`.
pub fn server_entry(
    id: &SecurityServerId,
    address: &str,
    auth: &Certificate,
    clients: &[ClientId],
) -> SecurityServer {
    SecurityServer {
        id: id.clone(),
        owner: id.owner().clone(),
        server_code: id.server_code().into(),
        address: address.into(),
        auth_cert_sha256: vec![auth.fingerprint_hex()],
        clients: clients
            .iter()
            .map(|c| HostedClient {
                id: c.clone(),
                enabled: true,
            })
            .collect(),
        maintenance: Maintenance::default(),
    }
}

/// Shared parameters with these members (their subsystems derived from `clients`), servers and CA.
pub fn shared_params(
    clients: &[ClientId],
    servers: Vec<SecurityServer>,
    ca: ApprovedCa,
) -> SharedParams {
    let mut members: BTreeMap<String, Member> = BTreeMap::new();
    for c in clients {
        let m = members
            .entry(c.owner().to_slash())
            .or_insert_with(|| Member {
                id: c.owner(),
                name: format!("Member {}", c.member_code()),
                subsystems: vec![],
            });
        if c.subsystem_code().is_some() {
            m.subsystems.push(Subsystem {
                id: c.clone(),
                name: None,
            });
        }
    }
    SharedParams {
        format_version: 1,
        instance: "DEV".into(),
        member_classes: vec![],
        members: members.into_values().collect(),
        security_servers: servers,
        global_groups: vec![],
        approved_cas: vec![ca],
        approved_tsas: vec![],
        trusted_oidc_issuers: vec![],
        settings: Settings::default(),
        configuration_signing_certs: vec![],
    }
}

/// A verified-looking configuration holding `shared` (for in-process tests only).
pub fn global_conf(
    shared: SharedParams,
    version: u64,
    expires_at: OffsetDateTime,
) -> Arc<GlobalConfiguration> {
    Arc::new(GlobalConfiguration {
        directory: Directory {
            format_version: 1,
            instance: "DEV".into(),
            version,
            generated_at: String::new(),
            expires_at: String::new(),
            files: vec![],
        },
        directory_bytes: vec![],
        signature: vec![],
        expires_at,
        shared,
        private: None,
        files: BTreeMap::new(),
    })
}
