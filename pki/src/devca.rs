//! The development trust service provider's CA, kept in one directory.
//!
//! For running a complete instance on one machine only: the keys are stored **unencrypted**
//! (PKCS#8 PEM, file mode 0600) so that `trustbus pki serve` can start without a PIN.
//!
//! Directory layout:
//!
//! | file | content |
//! |---|---|
//! | `devca.json` | `{"format": "trustbus-devca/1", "instance": "DEV"}` |
//! | `ca.pem`, `ca.key` | self-signed root CA (P-256, 10 years) and its key |
//! | `ocsp.pem`, `ocsp.key` | OCSP responder certificate (EKU `id-kp-OCSPSigning`) and key |
//! | `tsa.pem`, `tsa.key` | TSA certificate (EKU `id-kp-timeStamping`, critical) and key |
//! | `index.json` | every certificate issued: serial, subject, profile, notAfter, fingerprint, status |
//! | `issued/<serial>.pem` | a copy of every issued certificate |
//!
//! `index.json` is rewritten atomically (temp file + rename) on every change. The
//! [`RevocationSource`] implementation re-reads it when it changes on disk, so a
//! `revoke` from another process is visible to a running OCSP responder on its next lookup.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration as StdDuration, SystemTime};

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};
use trustbus_sdk::id::{ClientId, SecurityServerId};

use crate::cert::{CertError, Certificate, to_hex};
use crate::key::{KeyError, KeyKind, KeyPair, RcgenKey, rcgen_algorithm};
use crate::profile::{CertProfile, ProfileError, auth_subject, sign_subject};
use crate::revocation::{CertStatus, CrlReason, IssuerRef, RevocationSource, trim_serial};
use crate::signature::{KeyType, PublicKeyRef, SignatureAlgorithm, Signer};
use crate::token::write_private;

/// The `format` of `devca.json`.
pub const FORMAT: &str = "trustbus-devca/1";
/// Default validity of issued member and server certificates.
pub const DEFAULT_VALIDITY: Duration = Duration::days(730);
/// Backdating of notBefore, to tolerate clock skew between machines.
pub const BACKDATE: Duration = Duration::minutes(5);

/// Why a dev CA operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DevCaError {
    /// `init` on a directory that already holds a CA.
    #[error("{0} already holds a development CA")]
    AlreadyInitialised(String),
    /// `open` on a directory without a CA.
    #[error("{0} holds no development CA (run `trustbus pki init` first)")]
    NotInitialised(String),
    /// The subject could not be built from the identifiers.
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// An identifier is invalid.
    #[error("invalid identifier: {0}")]
    Id(#[from] trustbus_sdk::id::IdError),
    /// An authentication certificate needs a server code.
    #[error("an authentication certificate needs a security server code")]
    ServerCodeRequired,
    /// A signing certificate cannot have a server code.
    #[error("a signing certificate is issued to a member, not to a security server")]
    ServerCodeNotAllowed,
    /// The CSR does not parse or its signature does not verify.
    #[error("certification request rejected: {0}")]
    BadCsr(String),
    /// The public key is not one we support.
    #[error("unsupported public key: {0}")]
    BadKey(String),
    /// No issued certificate has this serial.
    #[error("no certificate with serial {0} was issued by this CA")]
    UnknownSerial(String),
    /// The certificate was not issued by this CA.
    #[error("certificate {0} was not issued by this CA")]
    NotOurs(String),
    /// The certificate is already revoked.
    #[error("certificate with serial {0} is already revoked")]
    AlreadyRevoked(String),
    /// Certificate generation failed.
    #[error("certificate generation failed: {0}")]
    Generate(String),
    /// A key file is bad.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A certificate file is bad.
    #[error(transparent)]
    Cert(#[from] CertError),
    /// A state file is malformed.
    #[error("{path} is malformed: {reason}")]
    Malformed {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// File I/O failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DevCaError + '_ {
    move |source| DevCaError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn gen_err(e: rcgen::Error) -> DevCaError {
    DevCaError::Generate(e.to_string())
}

/// Status of an index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryStatus {
    /// Not revoked.
    Good,
    /// Revoked.
    Revoked,
}

/// One issued certificate in `index.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexEntry {
    /// Serial number, lower-case hex without leading zero bytes.
    pub serial: String,
    /// Subject, for people.
    pub subject: String,
    /// `sign`, `auth`, `ocsp` or `tsa`.
    pub profile: String,
    /// notAfter, RFC 3339.
    pub not_after: String,
    /// SHA-256 fingerprint, lower-case hex.
    pub fingerprint: String,
    /// good or revoked.
    pub status: EntryStatus,
    /// Revocation time, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    /// CRLReason name (`keyCompromise`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The content of `index.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Index {
    /// Every certificate issued, oldest first.
    pub entries: Vec<IndexEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Meta {
    format: String,
    instance: String,
}

/// Where an issued certificate's public key comes from.
#[derive(Debug, Clone, Copy)]
pub enum SubjectKey<'a> {
    /// A DER `SubjectPublicKeyInfo`.
    Spki(&'a [u8]),
    /// A DER PKCS#10 request; its signature is checked, only its key is used (the subject
    /// comes from the profile).
    Csr(&'a [u8]),
}

/// What to issue.
#[derive(Debug, Clone)]
pub struct IssueRequest<'a> {
    /// sign or auth.
    pub profile: CertProfile,
    /// The member (for auth: the server's owner).
    pub member: ClientId,
    /// The member's name for `O`.
    pub member_name: String,
    /// The server code (auth only).
    pub server_code: Option<String>,
    /// The subject's key.
    pub key: SubjectKey<'a>,
    /// notBefore; default now minus [`BACKDATE`].
    pub not_before: Option<OffsetDateTime>,
    /// notAfter; default notBefore plus [`DEFAULT_VALIDITY`].
    pub not_after: Option<OffsetDateTime>,
}

/// The development CA. Cheap to clone; clones share the index.
#[derive(Clone)]
pub struct DevCa {
    dir: PathBuf,
    instance: String,
    ca_cert: Certificate,
    ca_key: Arc<KeyPair>,
    index: Arc<IndexCell>,
}

impl std::fmt::Debug for DevCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCa")
            .field("dir", &self.dir)
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct IndexCell {
    path: PathBuf,
    state: RwLock<(Option<FileStamp>, Index)>,
}

impl IndexCell {
    fn load(path: PathBuf) -> Result<Self, DevCaError> {
        let (mtime, index) = read_index(&path)?;
        Ok(Self {
            path,
            state: RwLock::new((mtime, index)),
        })
    }

    /// Re-reads the file if it changed since the last read; errors keep the old copy.
    ///
    /// A change is a different modification time, size or inode (every write renames a new
    /// file into place). Because modification times can be coarse, a file changed within the
    /// last two seconds is re-read regardless.
    fn refresh(&self) {
        let now = FileStamp::of(&self.path);
        let stale = match (&now, self.state.read()) {
            (Some(n), Ok(s)) => s.0.as_ref() != Some(n) || n.is_recent(),
            _ => true,
        };
        if stale
            && let Ok((m, idx)) = read_index(&self.path)
            && let Ok(mut s) = self.state.write()
        {
            *s = (m, idx);
        }
    }

    fn snapshot(&self) -> Index {
        self.refresh();
        self.state.read().map(|s| s.1.clone()).unwrap_or_default()
    }

    /// Applies `f` to the freshly read index and writes it back.
    fn update<T>(
        &self,
        f: impl FnOnce(&mut Index) -> Result<T, DevCaError>,
    ) -> Result<T, DevCaError> {
        let mut guard = self
            .state
            .write()
            .map_err(|_| DevCaError::Generate("index lock poisoned".into()))?;
        let (_, mut index) = read_index(&self.path)?;
        let out = f(&mut index)?;
        let json = serde_json::to_vec_pretty(&index).map_err(|e| DevCaError::Malformed {
            path: self.path.display().to_string(),
            reason: e.to_string(),
        })?;
        write_private(&self.path, &json).map_err(io_err(&self.path))?;
        *guard = (FileStamp::of(&self.path), index);
        Ok(out)
    }
}

/// What identifies one version of the index file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl FileStamp {
    fn of(path: &Path) -> Option<Self> {
        let m = std::fs::metadata(path).ok()?;
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&m);
        #[cfg(not(unix))]
        let inode = 0;
        Some(Self {
            modified: m.modified().ok(),
            len: m.len(),
            inode,
        })
    }

    fn is_recent(&self) -> bool {
        self.modified
            .and_then(|t| t.elapsed().ok())
            .is_none_or(|age| age < StdDuration::from_secs(2))
    }
}

fn read_index(path: &Path) -> Result<(Option<FileStamp>, Index), DevCaError> {
    let stamp = FileStamp::of(path);
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    let index = serde_json::from_slice(&bytes).map_err(|e| DevCaError::Malformed {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    Ok((stamp, index))
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// A public key given as SPKI, for rcgen.
struct SpkiKey {
    bits: Vec<u8>,
    alg: &'static rcgen::SignatureAlgorithm,
}

impl SpkiKey {
    fn new(spki: &[u8]) -> Result<Self, DevCaError> {
        let k = PublicKeyRef::from_spki_der(spki).map_err(|e| DevCaError::BadKey(e.to_string()))?;
        let alg = match k.key_type {
            KeyType::EcP256 => SignatureAlgorithm::EcdsaP256Sha256,
            KeyType::EcP384 => SignatureAlgorithm::EcdsaP384Sha384,
            KeyType::Ed25519 => SignatureAlgorithm::Ed25519,
            KeyType::Rsa => SignatureAlgorithm::RsaPkcs1Sha256,
        };
        Ok(Self {
            bits: k.key.to_vec(),
            alg: rcgen_algorithm(alg),
        })
    }
}

impl rcgen::PublicKeyData for SpkiKey {
    fn der_bytes(&self) -> &[u8] {
        &self.bits
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.alg
    }
}

/// Checks a PKCS#10 request's self-signature and returns its SPKI.
pub fn verify_csr(csr_der: &[u8]) -> Result<Vec<u8>, DevCaError> {
    use x509_parser::prelude::FromDer;
    let (rest, csr) =
        x509_parser::certification_request::X509CertificationRequest::from_der(csr_der)
            .map_err(|e| DevCaError::BadCsr(e.to_string()))?;
    if !rest.is_empty() {
        return Err(DevCaError::BadCsr("trailing data".into()));
    }
    let oid: const_oid::ObjectIdentifier = csr
        .signature_algorithm
        .algorithm
        .to_id_string()
        .parse()
        .map_err(|_| DevCaError::BadCsr("bad signature algorithm".into()))?;
    let alg = SignatureAlgorithm::from_oid(&oid).map_err(|e| DevCaError::BadCsr(e.to_string()))?;
    let spki = csr.certification_request_info.subject_pki.raw;
    crate::signature::verify(
        spki,
        alg,
        csr.certification_request_info.raw,
        &csr.signature_value.data,
    )
    .map_err(|e| DevCaError::BadCsr(format!("signature: {e}")))?;
    Ok(spki.to_vec())
}

fn random_serial() -> Result<Vec<u8>, DevCaError> {
    use ring::rand::SecureRandom;
    let mut s = vec![0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut s)
        .map_err(|_| DevCaError::Generate("no randomness".into()))?;
    s[0] = (s[0] & 0x7f) | 0x01; // positive, no leading zero byte
    Ok(s)
}

/// The DER of an EKU extension value with one purpose.
fn eku_der(oid: &[u8]) -> Vec<u8> {
    let mut inner = vec![0x06, oid.len() as u8];
    inner.extend_from_slice(oid);
    let mut out = vec![0x30, inner.len() as u8];
    out.extend(inner);
    out
}

const ID_KP_TIME_STAMPING: [u8; 8] = [0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x08];

fn load_key(path: &Path) -> Result<KeyPair, DevCaError> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    Ok(KeyPair::from_pkcs8_pem(&text)?)
}

fn load_cert(path: &Path) -> Result<Certificate, DevCaError> {
    Certificate::read_file(path)?
        .into_iter()
        .next()
        .ok_or_else(|| DevCaError::Malformed {
            path: path.display().to_string(),
            reason: "no certificate".into(),
        })
}

fn write_public(path: &Path, data: &[u8]) -> Result<(), DevCaError> {
    std::fs::write(path, data).map_err(io_err(path))
}

impl DevCa {
    /// Creates a new CA in `dir` (created if missing) for `instance`, with an OCSP responder
    /// and a TSA certificate.
    pub fn init(dir: &Path, instance: &str) -> Result<Self, DevCaError> {
        trustbus_sdk::id::validate_segment("xRoadInstance", instance)?;
        std::fs::create_dir_all(dir.join("issued")).map_err(io_err(dir))?;
        if dir.join("ca.pem").exists() || dir.join("devca.json").exists() {
            return Err(DevCaError::AlreadyInitialised(dir.display().to_string()));
        }
        let now = OffsetDateTime::now_utc();
        let ca_key = KeyPair::generate(KeyKind::EcdsaP256)?;
        let mut params = rcgen::CertificateParams::default();
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::OrganizationName, "Trustbus development TSP");
        dn.push(
            rcgen::DnType::CommonName,
            format!("Trustbus {instance} development root CA"),
        );
        params.distinguished_name = dn;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = now - BACKDATE;
        params.not_after = now + Duration::days(3650);
        params.serial_number = Some(random_serial()?.into());
        let ca_der = params
            .self_signed(&RcgenKey(&ca_key))
            .map_err(gen_err)?
            .der()
            .to_vec();
        let ca_cert = Certificate::from_der(ca_der)?;

        write_private(&dir.join("ca.key"), ca_key.to_pkcs8_pem().as_bytes())
            .map_err(io_err(dir))?;
        write_public(&dir.join("ca.pem"), ca_cert.to_pem().as_bytes())?;
        let index_path = dir.join("index.json");
        write_private(&index_path, b"{\"entries\": []}\n").map_err(io_err(&index_path))?;
        let meta = serde_json::to_vec_pretty(&Meta {
            format: FORMAT.into(),
            instance: instance.into(),
        })
        .map_err(|e| DevCaError::Generate(e.to_string()))?;
        write_public(&dir.join("devca.json"), &meta)?;

        let ca = Self {
            dir: dir.to_owned(),
            instance: instance.to_owned(),
            ca_cert,
            ca_key: Arc::new(ca_key),
            index: Arc::new(IndexCell::load(index_path)?),
        };
        // OCSP responder and TSA, valid as long as the CA minus a day.
        for (name, cn) in [
            (
                "ocsp",
                format!("Trustbus {instance} development OCSP responder"),
            ),
            ("tsa", format!("Trustbus {instance} development TSA")),
        ] {
            let key = KeyPair::generate(KeyKind::EcdsaP256)?;
            let mut p = rcgen::CertificateParams::default();
            let mut dn = rcgen::DistinguishedName::new();
            dn.push(rcgen::DnType::OrganizationName, "Trustbus development TSP");
            dn.push(rcgen::DnType::CommonName, cn);
            p.distinguished_name = dn;
            p.is_ca = rcgen::IsCa::ExplicitNoCa;
            p.not_before = now - BACKDATE;
            p.not_after = now + Duration::days(3649);
            if name == "ocsp" {
                p.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
                p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::OcspSigning];
            } else {
                p.key_usages = vec![
                    rcgen::KeyUsagePurpose::DigitalSignature,
                    rcgen::KeyUsagePurpose::ContentCommitment,
                ];
                // RFC 3161 §2.3: the EKU must be critical and timeStamping only; rcgen writes
                // EKU non-critical, so it goes in as a custom extension.
                let mut ext = rcgen::CustomExtension::from_oid_content(
                    &[2, 5, 29, 37],
                    eku_der(&ID_KP_TIME_STAMPING),
                );
                ext.set_criticality(true);
                p.custom_extensions = vec![ext];
            }
            let cert = ca.sign_params(p, &SpkiKey::new(key.public_key_der())?, name)?;
            write_private(
                &dir.join(format!("{name}.key")),
                key.to_pkcs8_pem().as_bytes(),
            )
            .map_err(io_err(dir))?;
            write_public(&dir.join(format!("{name}.pem")), cert.to_pem().as_bytes())?;
        }
        Ok(ca)
    }

    /// Opens an existing CA directory.
    pub fn open(dir: &Path) -> Result<Self, DevCaError> {
        let meta_path = dir.join("devca.json");
        if !meta_path.exists() {
            return Err(DevCaError::NotInitialised(dir.display().to_string()));
        }
        let meta: Meta =
            serde_json::from_slice(&std::fs::read(&meta_path).map_err(io_err(&meta_path))?)
                .map_err(|e| DevCaError::Malformed {
                    path: meta_path.display().to_string(),
                    reason: e.to_string(),
                })?;
        if meta.format != FORMAT {
            return Err(DevCaError::Malformed {
                path: meta_path.display().to_string(),
                reason: format!("unknown format {}", meta.format),
            });
        }
        Ok(Self {
            dir: dir.to_owned(),
            instance: meta.instance,
            ca_cert: load_cert(&dir.join("ca.pem"))?,
            ca_key: Arc::new(load_key(&dir.join("ca.key"))?),
            index: Arc::new(IndexCell::load(dir.join("index.json"))?),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The instance identifier the CA was made for.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The root CA certificate.
    pub fn ca_cert(&self) -> &Certificate {
        &self.ca_cert
    }

    /// The OCSP responder certificate and key.
    pub fn ocsp_signer(&self) -> Result<(Certificate, KeyPair), DevCaError> {
        Ok((
            load_cert(&self.dir.join("ocsp.pem"))?,
            load_key(&self.dir.join("ocsp.key"))?,
        ))
    }

    /// The TSA certificate and key.
    pub fn tsa_signer(&self) -> Result<(Certificate, KeyPair), DevCaError> {
        Ok((
            load_cert(&self.dir.join("tsa.pem"))?,
            load_key(&self.dir.join("tsa.key"))?,
        ))
    }

    /// A snapshot of the index.
    pub fn index(&self) -> Index {
        self.index.snapshot()
    }

    fn sign_params(
        &self,
        mut params: rcgen::CertificateParams,
        key: &SpkiKey,
        profile: &str,
    ) -> Result<Certificate, DevCaError> {
        params.serial_number = Some(random_serial()?.into());
        params.use_authority_key_identifier_extension = true;
        let issuer = rcgen::Issuer::from_ca_cert_der(
            &rustls_pki_types::CertificateDer::from(self.ca_cert.der()),
            RcgenKey(self.ca_key.as_ref()),
        )
        .map_err(gen_err)?;
        let der = params
            .signed_by(key, &issuer)
            .map_err(gen_err)?
            .der()
            .to_vec();
        let cert = Certificate::from_der(der)?;
        let issued = self
            .dir
            .join("issued")
            .join(format!("{}.pem", cert.serial_hex()));
        write_public(&issued, cert.to_pem().as_bytes())?;
        let entry = IndexEntry {
            serial: cert.serial_hex(),
            subject: cert.subject().to_owned(),
            profile: profile.to_owned(),
            not_after: rfc3339(cert.not_after()),
            fingerprint: cert.fingerprint_hex(),
            status: EntryStatus::Good,
            revoked_at: None,
            reason: None,
        };
        self.index.update(|idx| {
            idx.entries.push(entry);
            Ok(())
        })?;
        Ok(cert)
    }

    /// Issues a signing or authentication certificate.
    pub fn issue(&self, req: &IssueRequest<'_>) -> Result<Certificate, DevCaError> {
        let subject = match (req.profile, &req.server_code) {
            (CertProfile::Sign, None) => sign_subject(&req.member, &req.member_name)?,
            (CertProfile::Sign, Some(_)) => return Err(DevCaError::ServerCodeNotAllowed),
            (CertProfile::Auth, Some(code)) => {
                auth_subject(&SecurityServerId::new(&req.member, code)?, &req.member_name)?
            }
            (CertProfile::Auth, None) => return Err(DevCaError::ServerCodeRequired),
        };
        let spki = match req.key {
            SubjectKey::Spki(s) => s.to_vec(),
            SubjectKey::Csr(c) => verify_csr(c)?,
        };
        let key = SpkiKey::new(&spki)?;
        let now = OffsetDateTime::now_utc();
        let mut p = rcgen::CertificateParams::default();
        p.distinguished_name = subject.to_rcgen().map_err(gen_err)?;
        p.is_ca = rcgen::IsCa::ExplicitNoCa;
        p.not_before = req.not_before.unwrap_or(now - BACKDATE);
        p.not_after = req.not_after.unwrap_or(p.not_before + DEFAULT_VALIDITY);
        let profile = match req.profile {
            CertProfile::Sign => {
                p.key_usages = vec![
                    rcgen::KeyUsagePurpose::DigitalSignature,
                    rcgen::KeyUsagePurpose::ContentCommitment,
                ];
                "sign"
            }
            CertProfile::Auth => {
                p.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
                p.extended_key_usages = vec![
                    rcgen::ExtendedKeyUsagePurpose::ClientAuth,
                    rcgen::ExtendedKeyUsagePurpose::ServerAuth,
                ];
                "auth"
            }
        };
        self.sign_params(p, &key, profile)
    }

    /// Revokes the certificate with `serial` (hex, leading zeros ignored).
    pub fn revoke_serial(&self, serial_hex: &str, reason: CrlReason) -> Result<(), DevCaError> {
        let want = serial_hex.trim_start_matches('0').to_ascii_lowercase();
        self.index.update(|idx| {
            let e = idx
                .entries
                .iter_mut()
                .find(|e| e.serial.trim_start_matches('0') == want)
                .ok_or_else(|| DevCaError::UnknownSerial(serial_hex.to_owned()))?;
            if e.status == EntryStatus::Revoked {
                return Err(DevCaError::AlreadyRevoked(serial_hex.to_owned()));
            }
            e.status = EntryStatus::Revoked;
            e.revoked_at = Some(rfc3339(OffsetDateTime::now_utc()));
            e.reason = Some(reason.name().to_owned());
            Ok(())
        })
    }

    /// Revokes `cert`, which must have been issued by this CA.
    pub fn revoke(&self, cert: &Certificate, reason: CrlReason) -> Result<(), DevCaError> {
        if cert.issuer_der() != self.ca_cert.subject_der()
            || crate::chain::verify_signed_by(cert, &self.ca_cert).is_err()
        {
            return Err(DevCaError::NotOurs(cert.subject().to_owned()));
        }
        self.revoke_serial(&cert.serial_hex(), reason)
    }
}

impl RevocationSource for DevCa {
    fn status(&self, issuer: &IssuerRef<'_>, serial: &[u8]) -> CertStatus {
        if !issuer.matches(&self.ca_cert) {
            return CertStatus::Unknown;
        }
        self.index.refresh();
        let want = to_hex(trim_serial(serial));
        let Ok(state) = self.index.state.read() else {
            return CertStatus::Unknown;
        };
        match state.1.entries.iter().find(|e| e.serial == want) {
            None => CertStatus::Unknown,
            Some(e) if e.status == EntryStatus::Good => CertStatus::Good,
            Some(e) => CertStatus::Revoked {
                at: e
                    .revoked_at
                    .as_deref()
                    .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
                    .unwrap_or(OffsetDateTime::UNIX_EPOCH),
                reason: e
                    .reason
                    .as_deref()
                    .and_then(|r| r.parse::<CrlReason>().ok())
                    .map(CrlReason::code),
            },
        }
    }
}
