//! The token keys and certificate files behind the server's identity: listing keys, generating
//! a new key with its CSR, and checking and installing a certificate issued for one of them.
//! Shared by the offline `import-cert` command and the admin API ([`crate::adminkeys`]).
//!
//! Certificate files are slots: `certs/auth.pem`, `certs/sign.pem` (the owner member) and
//! `certs/sign-<hash>.pem` (hosted members, [`member_key_id`]). The key a slot uses is the
//! token key with the certificate's public key, so rotating a key means generating a new key
//! (ids `auth.<stamp>` / `sign.<stamp>`), having it certified, and installing its certificate
//! in the slot; the old key stays in the token.

use std::path::{Path, PathBuf};

use time::OffsetDateTime;
use trustbus_pki::chain::Purpose;
use trustbus_pki::token::{KeyInfo, SoftToken};
use trustbus_pki::{Certificate, KeyKind, KeyPair};
use trustbus_sdk::id::{ClientId, SecurityServerId};

use crate::confstore::ChangeError;
use crate::gcview::GcView;
use crate::identity::{
    AUTH_CERT_FILE, AUTH_KEY_ID, Identity, KeyCert, SIGN_CERT_FILE, SIGN_KEY_ID, member_key_id,
};

/// What a key is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// The security server's TLS authentication key.
    Auth,
    /// A member's message signing key.
    Sign,
}

impl Usage {
    /// `auth` or `sign`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Auth => "auth",
            Self::Sign => "sign",
        }
    }

    fn purpose(self) -> Purpose {
        match self {
            Self::Auth => Purpose::Auth,
            Self::Sign => Purpose::Sign,
        }
    }
}

/// A token key with what is known about it.
#[derive(Debug, Clone)]
pub struct KeyEntry {
    /// Token key id.
    pub id: String,
    /// Key type as stored (`ec-p256`, …).
    pub key_type: String,
    /// Auth or sign.
    pub usage: Usage,
    /// The member of a signing key.
    pub member: Option<ClientId>,
    /// The installed certificate chain of this key, if its slot holds one for it.
    pub installed: Option<Vec<Certificate>>,
    /// DER SPKI.
    pub public_key: Vec<u8>,
}

/// Where a certificate goes once checked.
#[derive(Debug, Clone)]
pub struct Import {
    /// The token key it is for.
    pub key_id: String,
    /// Auth or sign.
    pub usage: Usage,
    /// For a signing certificate, the member it names.
    pub member: Option<ClientId>,
    /// The chain, end-entity first.
    pub chain: Vec<Certificate>,
    /// Slot file name under the certificate directory.
    pub file: String,
}

/// The token, the certificate directory and (in a running server) the PIN.
pub struct KeyStore {
    server: SecurityServerId,
    token: SoftToken,
    token_dir: PathBuf,
    cert_dir: PathBuf,
    /// Retained by `serve`: the decrypted keys are in this process anyway, and the PIN never
    /// has to cross the admin listener.
    pin: Option<String>,
    /// Key generation and certificate installs run one at a time.
    pub lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore")
            .field("cert_dir", &self.cert_dir)
            .finish_non_exhaustive()
    }
}

fn internal(e: impl std::fmt::Display) -> ChangeError {
    ChangeError::new(500, "key_store_error", e.to_string())
}

fn bad(code: &'static str, m: impl Into<String>) -> ChangeError {
    ChangeError::new(400, code, m)
}

impl KeyStore {
    /// The key store of `server` (token in `token_dir`, certificates in `cert_dir`).
    pub fn open(
        server: SecurityServerId,
        token_dir: &Path,
        cert_dir: &Path,
        pin: Option<String>,
    ) -> Result<Self, String> {
        Ok(Self {
            server,
            token: SoftToken::open(token_dir).map_err(|e| e.to_string())?,
            token_dir: token_dir.to_owned(),
            cert_dir: cert_dir.to_owned(),
            pin,
            lock: tokio::sync::Mutex::new(()),
        })
    }

    /// The certificate directory.
    pub fn cert_dir(&self) -> &Path {
        &self.cert_dir
    }

    /// This server.
    pub fn server(&self) -> &SecurityServerId {
        &self.server
    }

    fn pin(&self) -> Result<&str, ChangeError> {
        self.pin
            .as_deref()
            .ok_or_else(|| ChangeError::new(503, "token_locked", "the server holds no token PIN"))
    }

    fn usage_of(&self, k: &KeyInfo) -> Option<(Usage, Option<ClientId>)> {
        let id = k.id.as_str();
        if id == AUTH_KEY_ID || id.starts_with("auth.") {
            return Some((Usage::Auth, None));
        }
        if id == SIGN_KEY_ID {
            return Some((Usage::Sign, Some(self.server.owner().clone())));
        }
        if id.starts_with("sign-") || id.starts_with("sign.") {
            // `add-member` and key generation label member keys "signing key of MEMBER".
            let member = k
                .label
                .strip_prefix("signing key of ")
                .and_then(|m| ClientId::from_slash(m.trim()).ok())
                .filter(|m| m.subsystem_code().is_none());
            return Some((Usage::Sign, member));
        }
        None
    }

    fn slot_files(&self) -> Vec<PathBuf> {
        let mut v = vec![
            self.cert_dir.join(AUTH_CERT_FILE),
            self.cert_dir.join(SIGN_CERT_FILE),
        ];
        if let Ok(rd) = std::fs::read_dir(&self.cert_dir) {
            let mut m: Vec<_> = rd
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                        n.starts_with("sign-") && n.ends_with(".pem") && !n.ends_with(".csr.pem")
                    })
                })
                .collect();
            m.sort();
            v.extend(m);
        }
        v
    }

    /// The authentication and signing keys of the token, with their installed certificates.
    pub fn list(&self) -> Result<Vec<KeyEntry>, ChangeError> {
        let installed: Vec<Vec<Certificate>> = self
            .slot_files()
            .iter()
            .filter_map(|f| Certificate::read_file(f).ok())
            .filter(|c| !c.is_empty())
            .collect();
        let mut out = Vec::new();
        for k in self.token.list().map_err(internal)? {
            let Some((usage, mut member)) = self.usage_of(&k) else {
                continue;
            };
            let chain = installed
                .iter()
                .find(|c| c[0].spki_der() == k.public_key)
                .cloned();
            if let (Usage::Sign, Some(c)) = (usage, &chain)
                && let Ok(s) = trustbus_pki::profile::sign_cert_member(&c[0])
            {
                member = Some(s.member);
            }
            out.push(KeyEntry {
                id: k.id,
                key_type: k.key_type,
                usage,
                member,
                installed: chain,
                public_key: k.public_key,
            });
        }
        Ok(out)
    }

    /// Generates a key for `usage` (a signing key for `member`, default the owner) in the
    /// token and returns its id and a CSR (PEM) with the subject the certificate profile wants;
    /// the CSR is also written to `certs/<id>.csr.pem`.
    pub fn generate(
        &self,
        usage: Usage,
        member: Option<ClientId>,
        name: Option<String>,
    ) -> Result<(String, ClientId, String), ChangeError> {
        let pin = self.pin()?;
        let member = member.unwrap_or_else(|| self.server.owner().clone());
        if member.subsystem_code().is_some() {
            return Err(bad(
                "invalid_identifier",
                "a signing key is for a member, not a subsystem",
            ));
        }
        if usage == Usage::Auth && &member != self.server.owner() {
            return Err(bad(
                "invalid_request",
                "the authentication key belongs to the server; give no member",
            ));
        }
        if member.instance() != self.server.owner().instance() {
            return Err(bad(
                "invalid_identifier",
                format!("member {} is of another instance", member.to_slash()),
            ));
        }
        let name = name.unwrap_or_else(|| member.member_code().to_owned());
        let (subject, label) = match usage {
            Usage::Auth => (
                trustbus_pki::profile::auth_subject(&self.server, &name),
                format!("auth key of {}", self.server.to_slash()),
            ),
            Usage::Sign => (
                trustbus_pki::profile::sign_subject(&member, &name),
                format!("signing key of {}", member.to_slash()),
            ),
        };
        let subject = subject.map_err(|e| bad("invalid_request", e.to_string()))?;
        let stamp = OffsetDateTime::now_utc().unix_timestamp_nanos();
        let id = format!("{}.{stamp:x}", usage.name());
        let key = KeyPair::generate(KeyKind::EcdsaP256).map_err(internal)?;
        let csr = key.csr_pem(&subject).map_err(internal)?;
        self.token.store(&id, &label, &key, pin).map_err(internal)?;
        std::fs::create_dir_all(&self.cert_dir).map_err(internal)?;
        std::fs::write(self.cert_dir.join(format!("{id}.csr.pem")), &csr).map_err(internal)?;
        Ok((id, member, csr))
    }

    /// Checks `chain` (end-entity first) for installation: it must be for a key of the token,
    /// name this server (authentication) or the key's member (signing), carry the key usage
    /// of its profile, and, when `view` is given, chain to a CA approved in global
    /// configuration for that usage at `now`.
    pub fn check_import(
        &self,
        chain: Vec<Certificate>,
        view: Option<&GcView>,
        now: OffsetDateTime,
    ) -> Result<Import, ChangeError> {
        let first = chain
            .first()
            .ok_or_else(|| bad("invalid_certificate", "no certificate given"))?
            .clone();
        let keys = self.list()?;
        let key = keys
            .iter()
            .find(|k| k.public_key == first.spki_der())
            .ok_or_else(|| {
                bad(
                    "certificate_not_for_a_key",
                    format!(
                        "{} is not for a key in the token (generate the key first)",
                        first.subject()
                    ),
                )
            })?;
        let profile = |e: String| bad("certificate_profile_mismatch", e);
        let (member, file) = match key.usage {
            Usage::Auth => {
                let s = trustbus_pki::profile::auth_cert_server(&first)
                    .map_err(|e| profile(format!("authentication certificate: {e}")))?;
                if s.server != self.server {
                    return Err(profile(format!(
                        "the certificate names server {}, this is {}",
                        s.server.to_slash(),
                        self.server.to_slash()
                    )));
                }
                (None, AUTH_CERT_FILE.to_owned())
            }
            Usage::Sign => {
                let s = trustbus_pki::profile::sign_cert_member(&first)
                    .map_err(|e| profile(format!("signing certificate: {e}")))?;
                if let Some(m) = key.member.as_ref().filter(|m| **m != s.member) {
                    return Err(profile(format!(
                        "key {} is {}'s signing key but the certificate names {}",
                        key.id,
                        m.to_slash(),
                        s.member.to_slash()
                    )));
                }
                let file = if &s.member == self.server.owner() {
                    SIGN_CERT_FILE.to_owned()
                } else {
                    format!("{}.pem", member_key_id(&s.member))
                };
                (Some(s.member), file)
            }
        };
        if let Some(view) = view {
            view.trust
                .validate(&first, &chain[1..], key.usage.purpose(), now)
                .map_err(|e| {
                    bad(
                        "certificate_not_trusted",
                        format!(
                            "{} does not chain to a CA approved for {} certificates: {e}",
                            first.subject(),
                            key.usage.name()
                        ),
                    )
                })?;
        }
        Ok(Import {
            key_id: key.id.clone(),
            usage: key.usage,
            member,
            chain,
            file,
        })
    }

    /// Writes the certificate into its slot (the previous file is kept as `<file>.<serial>.old`).
    pub fn install(&self, import: &Import) -> Result<PathBuf, ChangeError> {
        std::fs::create_dir_all(&self.cert_dir).map_err(internal)?;
        let path = self.cert_dir.join(&import.file);
        if let Ok(old) = Certificate::read_file(&path)
            && let Some(c) = old.first()
        {
            let keep = self
                .cert_dir
                .join(format!("{}.{}.old", import.file, c.serial_hex()));
            std::fs::copy(&path, keep).map_err(internal)?;
        }
        let tmp = self.cert_dir.join(format!("{}.tmp", import.file));
        Certificate::write_pem_file(&tmp, &import.chain).map_err(internal)?;
        std::fs::rename(&tmp, &path).map_err(internal)?;
        Ok(path)
    }

    /// The key of `import` with its certificate, ready to be part of an identity.
    pub fn key_cert(&self, import: &Import) -> Result<KeyCert, ChangeError> {
        let key = self
            .token
            .load(&import.key_id, self.pin()?)
            .map_err(internal)?;
        Ok(KeyCert::new(key, import.chain.clone()))
    }

    /// The identity as the files say (what a restart would load).
    pub fn load_identity(&self) -> Result<Identity, ChangeError> {
        Identity::load(
            self.server.clone(),
            &self.token_dir,
            self.pin()?,
            &self.cert_dir,
        )
        .map_err(|e| ChangeError::new(500, "identity_unloadable", e.to_string()))
    }
}
