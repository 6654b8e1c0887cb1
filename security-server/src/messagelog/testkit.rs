//! Test fixtures for the message log's evidence tests (feature `testkit`; never in a
//! production build): a development CA with client and provider signing certificates, an OCSP
//! responder, a TSA served over HTTP that can be switched off, a verification configuration,
//! and signed exchange messages built the way the exchange path builds them.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use time::OffsetDateTime;
use trustbus_pki::asic::AsicBuilder;
use trustbus_pki::cms::CmsSigner;
use trustbus_pki::devca::{DevCa, IssueRequest, SubjectKey};
use trustbus_pki::key::{KeyKind, KeyPair};
use trustbus_pki::ocsp::{self, OcspResponder};
use trustbus_pki::profile::CertProfile;
use trustbus_pki::revocation::{CertStatus, MemoryRevocationSource};
use trustbus_pki::serve::DEV_TSA_POLICY;
use trustbus_pki::tsa::TsaResponder;
use trustbus_pki::{Certificate, DigestAlgorithm, Signer};
use trustbus_sdk::id::{ClientId, ServiceId};
use uuid::Uuid;

use super::exchange::{self, Direction, ExchangeMessage, PayloadKind, Side};
use super::record::{NewRecord, Outcome, UserRef};
use super::tsa_client::TsaEndpoint;

/// A boxed error for fixtures.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A member's signing identity.
pub struct Party {
    /// The member.
    pub member: ClientId,
    /// Its signing certificate.
    pub cert: Certificate,
    /// Its signing key.
    pub key: KeyPair,
}

/// The trust services of a test instance.
pub struct Pki {
    /// The development CA.
    pub ca: DevCa,
    /// The client member (`DEV/GOV/1234`).
    pub client: Party,
    /// The provider member (`DEV/COM/5678`).
    pub provider: Party,
    /// A third member that is registered but takes no part (`DEV/GOV/9999`).
    pub other: Party,
    /// OCSP answers for the signing certificates.
    pub ocsp: OcspResponder<MemoryRevocationSource>,
    /// The TSA.
    pub tsa: Arc<TsaResponder>,
    /// The TSA certificate.
    pub tsa_cert: Certificate,
}

fn party(ca: &DevCa, member: ClientId, name: &str) -> Result<Party, BoxError> {
    let key = KeyPair::generate(KeyKind::EcdsaP256)?;
    let cert = ca.issue(&IssueRequest {
        profile: CertProfile::Sign,
        member: member.clone(),
        member_name: name.into(),
        server_code: None,
        key: SubjectKey::Spki(key.public_key_der()),
        not_before: None,
        not_after: None,
    })?;
    Ok(Party { member, cert, key })
}

impl Pki {
    /// A new CA in `dir` with three members' signing certificates, all good.
    pub fn new(dir: &Path) -> Result<Self, BoxError> {
        let ca = DevCa::init(dir, "DEV")?;
        let client = party(&ca, ClientId::member("DEV", "GOV", "1234")?, "Tax Board")?;
        let provider = party(&ca, ClientId::member("DEV", "COM", "5678")?, "Registry Ltd")?;
        let other = party(&ca, ClientId::member("DEV", "GOV", "9999")?, "Other Agency")?;
        let (ocsp_cert, ocsp_key) = ca.ocsp_signer()?;
        let source = MemoryRevocationSource::new();
        for p in [&client, &provider, &other] {
            source.set(p.cert.serial(), CertStatus::Good);
        }
        let ocsp = OcspResponder::new(
            ca.ca_cert().der(),
            ocsp_cert.der(),
            Arc::new(ocsp_key),
            source,
        )?;
        let (tsa_cert, tsa_key) = ca.tsa_signer()?;
        let tsa = Arc::new(TsaResponder::new(
            tsa_cert.der(),
            Arc::new(tsa_key),
            DEV_TSA_POLICY,
        )?);
        Ok(Self {
            ca,
            client,
            provider,
            other,
            ocsp,
            tsa,
            tsa_cert,
        })
    }

    /// A current OCSP response for `cert`.
    pub fn ocsp_for(&self, cert: &Certificate) -> Result<Vec<u8>, BoxError> {
        let req = ocsp::build_request(cert.der(), self.ca.ca_cert().der(), DigestAlgorithm::Sha1)?;
        Ok(self.ocsp.respond(&req, OffsetDateTime::now_utc()))
    }

    /// `shared-params.json` listing the CA, the TSA at `tsa_url` and the three members.
    pub fn shared_params(&self, tsa_url: &str) -> Vec<u8> {
        let b64 = |d: &[u8]| base64::engine::general_purpose::STANDARD.encode(d);
        let v = serde_json::json!({
            "format_version": 1,
            "instance": "DEV",
            "member_classes": [{"code": "GOV", "description": "government"}, {"code": "COM", "description": "companies"}],
            "members": [
                {"id": "DEV/COM/5678", "name": "Registry Ltd", "subsystems": []},
                {"id": "DEV/GOV/1234", "name": "Tax Board", "subsystems": []},
                {"id": "DEV/GOV/9999", "name": "Other Agency", "subsystems": []},
            ],
            "security_servers": [],
            "global_groups": [],
            "approved_cas": [{"name": "dev-ca", "authentication_only": false, "roots": [b64(self.ca.ca_cert().der())], "intermediates": [], "ocsp_responders": [], "certificate_profile": "trustbus-default"}],
            "approved_tsas": [{"name": "dev-tsa", "url": tsa_url, "cert": b64(self.tsa_cert.der())}],
            "trusted_oidc_issuers": [],
            "settings": {"ocsp_freshness_seconds": 3600, "timestamping_interval_seconds": 60, "configuration_validity_seconds": 600},
            "configuration_signing_certs": [],
        });
        serde_json::to_vec_pretty(&v).unwrap_or_default()
    }

    /// The approved TSA endpoint at `url`.
    pub fn tsa_endpoint(&self, url: &str) -> TsaEndpoint {
        TsaEndpoint {
            name: "dev-tsa".into(),
            url: url.into(),
            cert_der: self.tsa_cert.der().to_vec(),
        }
    }
}

/// The TSA served over HTTP on loopback; `up` switches it on and off (off answers 503).
pub struct TsaServer {
    /// `http://127.0.0.1:PORT/tsa`.
    pub url: String,
    /// Whether it answers.
    pub up: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TsaServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TsaServer {
    /// Serves `tsa` on an ephemeral loopback port.
    pub async fn start(tsa: Arc<TsaResponder>) -> Result<Self, BoxError> {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let up = Arc::new(AtomicBool::new(true));
        let up2 = up.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let tsa = tsa.clone();
                let up = up2.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let tsa = tsa.clone();
                        let up = up.clone();
                        async move {
                            let body = match req.into_body().collect().await {
                                Ok(b) => b.to_bytes(),
                                Err(_) => Bytes::new(),
                            };
                            let resp = if up.load(Ordering::SeqCst) {
                                http::Response::builder()
                                    .header("content-type", "application/timestamp-reply")
                                    .body(Full::new(Bytes::from(
                                        tsa.respond(&body, OffsetDateTime::now_utc()),
                                    )))
                            } else {
                                http::Response::builder()
                                    .status(503)
                                    .body(Full::new(Bytes::from_static(b"down")))
                            };
                            Ok::<_, std::convert::Infallible>(resp.unwrap_or_default())
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(Self {
            url: format!("http://{addr}/tsa"),
            up,
            task,
        })
    }
}

/// What one test exchange message is.
pub struct MessageSpec<'a> {
    /// Logging side.
    pub side: Side,
    /// Request or response.
    pub direction: Direction,
    /// Request id.
    pub request_id: Uuid,
    /// Who signs.
    pub signer: &'a Party,
    /// The OCSP response to embed (a current good one when `None`).
    pub ocsp: Option<Vec<u8>>,
    /// The payload body.
    pub body: Option<Vec<u8>>,
}

/// The test exchange's client subsystem.
pub const CLIENT: &str = "DEV/GOV/1234/CLIENT";
/// The test exchange's service.
pub const SERVICE: &str = "DEV/COM/5678/REGISTRY/getPerson";

/// A signed REST message as the exchange path would hand it to the log.
pub fn exchange_message(pki: &Pki, spec: MessageSpec<'_>) -> Result<NewRecord, BoxError> {
    let direction = match spec.direction {
        Direction::Request => "request",
        Direction::Response => "response",
    };
    let message_json = serde_json::to_vec(&serde_json::json!({
        "protocol": "trustbus/1", "kind": "rest", "direction": direction,
        "message_id": "msg-1", "request_id": spec.request_id.to_string(),
        "client": CLIENT, "service": SERVICE,
        "user": {"id": "EE12345678901", "verified": true},
    }))?;
    let head = match spec.direction {
        Direction::Request => b"GET /r1/DEV/COM/5678/REGISTRY/getPerson HTTP/1.1\r\n\r\n".to_vec(),
        Direction::Response => {
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n".to_vec()
        }
    };
    let objects = exchange::data_objects(
        PayloadKind::Rest,
        spec.direction,
        message_json.clone(),
        head.clone(),
        spec.body.clone(),
    );
    let mut b = AsicBuilder::new(DigestAlgorithm::Sha256);
    for o in &objects {
        b.add_file(&o.name, &o.mime_type, o.data.clone())?;
    }
    let manifest = b.manifest();
    let ocsp = match spec.ocsp {
        Some(o) => o,
        None => pki.ocsp_for(&spec.signer.cert)?,
    };
    let signature = CmsSigner::new(&spec.signer.key, spec.signer.cert.der())?
        .with_chain(&[pki.ca.ca_cert().der().to_vec()])?
        .with_ocsp_response(ocsp.clone())
        .sign_detached(&manifest, OffsetDateTime::now_utc(), None)?;
    let message = ExchangeMessage {
        side: spec.side,
        direction: spec.direction,
        kind: PayloadKind::Rest,
        message_id: "msg-1".into(),
        request_id: spec.request_id,
        client: ClientId::from_slash(CLIENT)?,
        service: ServiceId::from_slash(SERVICE)?,
        user: Some(UserRef {
            id: "EE12345678901".into(),
            verified: true,
        }),
        issue: None,
        message_json,
        payload_head: head,
        payload_body: spec.body,
        manifest,
        signature,
        ocsp_response: ocsp,
        outcome: Outcome::Ok,
    };
    if !message.manifest_matches() {
        return Err("the signed manifest does not list the data objects".into());
    }
    Ok(NewRecord::from_exchange(message)?)
}
