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
        // The two fixed slots are listed even when the directory cannot be read.
        v.extend(crate::identity::member_cert_files(&self.cert_dir).unwrap_or_default());
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
        // The key usage tells the profiles apart (an authentication certificate must never be
        // taken for a signing one), also offline when no approved CAs are at hand.
        trustbus_pki::chain::check_purpose(&first, key.usage.purpose())
            .map_err(|e| profile(format!("not a {} certificate: {e}", key.usage.name())))?;
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

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use trustbus_pki::Signer;
    use trustbus_pki::devca::{IssueRequest, SubjectKey};
    use trustbus_pki::profile::CertProfile;

    use super::*;
    use crate::testkit::TestPki;

    fn cid(s: &str) -> ClientId {
        ClientId::from_slash(s).unwrap()
    }

    fn certify(pki: &TestPki, profile: CertProfile, member: &str, csr: &str) -> Certificate {
        let der = pem::parse(csr).unwrap().into_contents();
        pki.ca
            .issue(&IssueRequest {
                profile,
                member: cid(member),
                member_name: "Name".into(),
                server_code: (profile == CertProfile::Auth).then(|| "ss1".to_owned()),
                key: SubjectKey::Csr(&der),
                not_before: None,
                not_after: None,
            })
            .unwrap()
    }

    /// A server directory as `init` + `import-cert` leave it, and its key store.
    fn setup(dir: &Path, pki: &TestPki) -> KeyStore {
        let server = SecurityServerId::from_slash("DEV/GOV/1000/ss1").unwrap();
        let token = SoftToken::open(dir.join("token"))
            .unwrap()
            .with_iterations(NonZeroU32::new(1000).unwrap());
        let (sk, sc) = pki.sign_cert(server.owner()).unwrap();
        let (ak, ac) = pki.auth_cert(&server).unwrap();
        token.store(SIGN_KEY_ID, "sign", &sk, "pin").unwrap();
        token.store(AUTH_KEY_ID, "auth", &ak, "pin").unwrap();
        let certs = dir.join("certs");
        std::fs::create_dir_all(&certs).unwrap();
        Certificate::write_pem_file(&certs.join(SIGN_CERT_FILE), &[sc]).unwrap();
        Certificate::write_pem_file(&certs.join(AUTH_CERT_FILE), &[ac]).unwrap();
        KeyStore::open(server, &dir.join("token"), &certs, Some("pin".into())).unwrap()
    }

    #[test]
    fn a_new_signing_key_is_certified_installed_and_loaded_by_public_key() {
        let dir = tempfile::tempdir().unwrap();
        let pki = TestPki::new(&dir.path().join("ca")).unwrap();
        let ks = setup(dir.path(), &pki);
        let before = ks.list().unwrap();
        assert_eq!(before.len(), 2);
        assert!(before.iter().all(|k| k.installed.is_some()));

        let (id, member, csr) = ks.generate(Usage::Sign, None, None).unwrap();
        assert!(id.starts_with("sign."), "{id}");
        assert_eq!(member, cid("DEV/GOV/1000"));
        assert!(ks.cert_dir().join(format!("{id}.csr.pem")).exists());
        let new = ks.list().unwrap().into_iter().find(|k| k.id == id).unwrap();
        assert_eq!(
            (new.usage, new.member.clone(), new.installed.is_none()),
            (Usage::Sign, Some(member), true)
        );

        // A certificate naming another member, or of the authentication profile, is refused.
        let other = certify(&pki, CertProfile::Sign, "DEV/GOV/2000", &csr);
        let e = ks
            .check_import(vec![other], None, crate::now())
            .unwrap_err();
        assert_eq!(
            (e.status, e.code),
            (400, "certificate_profile_mismatch"),
            "{e:?}"
        );
        let auth = certify(&pki, CertProfile::Auth, "DEV/GOV/1000", &csr);
        let e = ks.check_import(vec![auth], None, crate::now()).unwrap_err();
        assert_eq!(
            (e.status, e.code),
            (400, "certificate_profile_mismatch"),
            "{e:?}"
        );
        let e = ks.check_import(vec![], None, crate::now()).unwrap_err();
        assert_eq!(e.code, "invalid_certificate");

        let old = Certificate::read_file(&ks.cert_dir().join(SIGN_CERT_FILE)).unwrap();
        let cert = certify(&pki, CertProfile::Sign, "DEV/GOV/1000", &csr);
        let plan = ks
            .check_import(vec![cert.clone()], None, crate::now())
            .unwrap();
        assert_eq!(
            (plan.key_id.as_str(), plan.file.as_str()),
            (id.as_str(), SIGN_CERT_FILE)
        );
        ks.install(&plan).unwrap();
        let kept = ks
            .cert_dir()
            .join(format!("{SIGN_CERT_FILE}.{}.old", old[0].serial_hex()));
        assert_eq!(Certificate::read_file(&kept).unwrap(), old);
        // What a restart loads: the new key, found by the certificate's public key.
        let identity = ks.load_identity().unwrap();
        assert_eq!(identity.sign.cert(), &cert);
        assert_eq!(identity.sign.key.public_key_der(), cert.spki_der());
    }

    #[test]
    fn member_keys_and_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let pki = TestPki::new(&dir.path().join("ca")).unwrap();
        let ks = setup(dir.path(), &pki);
        let m = cid("DEV/GOV/3000");
        let (id, _, csr) = ks.generate(Usage::Sign, Some(m.clone()), None).unwrap();
        let listed = ks.list().unwrap().into_iter().find(|k| k.id == id).unwrap();
        assert_eq!(listed.member, Some(m.clone()));
        let cert = certify(&pki, CertProfile::Sign, "DEV/GOV/3000", &csr);
        let plan = ks.check_import(vec![cert], None, crate::now()).unwrap();
        assert_eq!(plan.file, format!("{}.pem", member_key_id(&m)));
        ks.install(&plan).unwrap();
        let identity = ks.load_identity().unwrap();
        assert!(identity.signer(&m).is_some());

        for (usage, member, code) in [
            (Usage::Auth, Some("DEV/GOV/3000"), "invalid_request"),
            (Usage::Sign, Some("DEV/GOV/3000/sub"), "invalid_identifier"),
            (Usage::Sign, Some("OTHER/GOV/3000"), "invalid_identifier"),
        ] {
            let e = ks.generate(usage, member.map(cid), None).unwrap_err();
            assert_eq!((e.status, e.code), (400, code), "{member:?}");
        }
        let locked = KeyStore::open(
            ks.server().clone(),
            &dir.path().join("token"),
            ks.cert_dir(),
            None,
        )
        .unwrap();
        let e = locked.generate(Usage::Sign, None, None).unwrap_err();
        assert_eq!((e.status, e.code), (503, "token_locked"));
    }
}
