//! The central server's private keys: configuration-signing keys and the management service's
//! TLS key, held in a PIN-encrypted software token ([`trustbus_pki::token::SoftToken`],
//! PBKDF2-HMAC-SHA256 + AES-256-GCM, format in `docs/pki.md` §1.2).
//!
//! Layout of `<data_dir>/keys/`:
//!
//! | file | content |
//! |---|---|
//! | `conf-signing-N.key.json` | configuration-signing key N (token file, mode 0600) |
//! | `conf-signing-N.der` | its self-signed certificate (a key container, as in X-Road) |
//! | `management-tls.key.json` | the management listener's TLS key (token file) |
//! | `management-tls.der`, `management-tls-ca.der` | its certificate and the one-off CA that issued it |
//!
//! The PIN comes from the environment variable named by `[keys] pin_env` in the configuration
//! (default `TRUSTBUS_CENTRAL_PIN`); it is never written anywhere or printed. Decrypted keys are
//! cached in memory after their first use, so PBKDF2 runs once per key per process.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use trustbus_pki::key::{KeyKind, KeyPair};
use trustbus_pki::token::{SoftToken, TokenError};
use trustbus_pki::{SignatureAlgorithm, SignatureError, Signer};

use crate::Error;
use crate::globalconf::cms_signing::CmsDirectorySigner;

/// Default name of the environment variable that holds the token PIN.
pub const DEFAULT_PIN_ENV: &str = "TRUSTBUS_CENTRAL_PIN";

/// Token key id of the management listener's TLS key.
pub const MANAGEMENT_TLS_KEY: &str = "management-tls";

/// A decrypted key shared between its users (the directory signer, the TLS configuration).
#[derive(Debug, Clone)]
pub struct SharedKey(pub Arc<KeyPair>);

impl Signer for SharedKey {
    fn algorithm(&self) -> SignatureAlgorithm {
        self.0.algorithm()
    }
    fn public_key_der(&self) -> &[u8] {
        self.0.public_key_der()
    }
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignatureError> {
        self.0.sign(message)
    }
}

/// A self-signed certificate for `key` with common name `cn`, valid from a day ago for ten
/// years (configuration-signing certificates are key containers: no chain, no validity check).
pub fn self_signed_cert(key: &KeyPair, cn: &str) -> Result<Vec<u8>, Error> {
    let kp = rcgen::KeyPair::try_from(key.pkcs8_der()).map_err(|e| Error::Crypto(e.to_string()))?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
        .map_err(|e| Error::Crypto(e.to_string()))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(3650);
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&random_serial()?));
    let cert = params
        .self_signed(&kp)
        .map_err(|e| Error::Crypto(e.to_string()))?;
    Ok(cert.der().to_vec())
}

/// 16 random bytes, positive as a DER INTEGER.
pub(crate) fn random_serial() -> Result<[u8; 16], Error> {
    let mut serial = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut serial)
        .map_err(|_| Error::Crypto("no randomness".into()))?;
    serial[0] &= 0x7f;
    serial[0] |= 0x01;
    Ok(serial)
}

fn token_err(e: TokenError) -> Error {
    match e {
        TokenError::PinIncorrect => Error::Config(
            "the key token PIN is incorrect (check the variable named by [keys] pin_env)".into(),
        ),
        TokenError::Io { path, source } => Error::Io(std::io::Error::new(
            source.kind(),
            format!("{path}: {source}"),
        )),
        other => Error::Crypto(other.to_string()),
    }
}

/// The management listener's TLS key, its certificate (DER) and the CA certificate (DER) that
/// issued it.
#[derive(Debug, Clone)]
pub struct ManagementTls {
    /// The key.
    pub key: Arc<KeyPair>,
    /// The certificate.
    pub cert: Vec<u8>,
    /// The one-off CA's certificate.
    pub ca: Vec<u8>,
}

/// The key token of the central server.
#[derive(Clone)]
pub struct KeyStore {
    dir: PathBuf,
    token: SoftToken,
    pin: Option<Arc<str>>,
    pin_env: String,
    cache: Arc<Mutex<HashMap<String, Arc<KeyPair>>>>,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore")
            .field("dir", &self.dir)
            .field("pin_set", &self.pin.is_some())
            .finish_non_exhaustive()
    }
}

impl KeyStore {
    /// Opens (creating) the token in `dir`. `pin` is `None` when the environment variable
    /// `pin_env` is not set: then reading certificates works, and anything that needs a private
    /// key fails with a configuration error naming the variable (also when the PIN is empty). New keys are encrypted with
    /// `iterations` PBKDF2 iterations.
    pub fn open(
        dir: &Path,
        pin: Option<String>,
        pin_env: &str,
        iterations: NonZeroU32,
    ) -> Result<Self, Error> {
        let token = SoftToken::open(dir)
            .map_err(token_err)?
            .with_iterations(iterations);
        Ok(Self {
            dir: dir.to_path_buf(),
            token,
            pin: pin.map(Arc::from),
            pin_env: pin_env.to_owned(),
            cache: Arc::default(),
        })
    }

    /// Opens the token with the PIN from the environment variable `pin_env`.
    pub fn open_env(dir: &Path, pin_env: &str, iterations: NonZeroU32) -> Result<Self, Error> {
        Self::open(dir, std::env::var(pin_env).ok(), pin_env, iterations)
    }

    fn pin(&self) -> Result<&str, Error> {
        match self.pin.as_deref() {
            Some(p) if !p.is_empty() => Ok(p),
            Some(_) => Err(Error::Config(format!(
                "the key token PIN in {} must not be empty",
                self.pin_env
            ))),
            None => Err(Error::Config(format!(
                "the key token PIN is not set: export {} (named by [keys] pin_env)",
                self.pin_env
            ))),
        }
    }

    fn conf_id(n: u32) -> String {
        format!("conf-signing-{n}")
    }

    fn cert_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.der"))
    }

    /// Whether key `id` exists in the token.
    pub fn has_key(&self, id: &str) -> bool {
        self.dir.join(format!("{id}.key.json")).exists()
    }

    /// Whether configuration-signing key `n` exists.
    pub fn exists(&self, n: u32) -> bool {
        self.has_key(&Self::conf_id(n))
    }

    /// Generates a P-256 key `id` with `label`, stores it encrypted and returns it. If the
    /// token already holds keys, the PIN is checked against one of them first, so a wrong PIN
    /// can never create a key that the others' PIN does not open.
    fn generate_key(&self, id: &str, label: &str) -> Result<Arc<KeyPair>, Error> {
        let pin = self.pin()?;
        if let Some(existing) = self.token.list().map_err(token_err)?.first() {
            self.load_key(&existing.id)?;
        }
        let key =
            KeyPair::generate(KeyKind::EcdsaP256).map_err(|e| Error::Crypto(e.to_string()))?;
        self.token.store(id, label, &key, pin).map_err(token_err)?;
        let key = Arc::new(key);
        self.cache_lock().insert(id.to_owned(), key.clone());
        Ok(key)
    }

    fn cache_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<KeyPair>>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Decrypts key `id` (once per process; later calls use the cached key).
    pub fn load_key(&self, id: &str) -> Result<Arc<KeyPair>, Error> {
        if let Some(k) = self.cache_lock().get(id) {
            return Ok(k.clone());
        }
        if !self.has_key(id) && self.dir.join(format!("{id}.p8")).exists() {
            return Err(Error::Config(format!(
                "{} holds an unencrypted pre-release key; initialise a new data directory",
                self.dir.display()
            )));
        }
        let key = Arc::new(self.token.load(id, self.pin()?).map_err(token_err)?);
        self.cache_lock().insert(id.to_owned(), key.clone());
        Ok(key)
    }

    /// Generates configuration-signing key `n` for `instance` with its self-signed certificate
    /// (does nothing if it exists).
    pub fn generate(&self, n: u32, instance: &str) -> Result<(), Error> {
        if self.exists(n) {
            return Ok(());
        }
        let id = Self::conf_id(n);
        let cn = format!("Trustbus {instance} configuration signing {n}");
        let key = self.generate_key(&id, &cn)?;
        let cert = self_signed_cert(&key, &cn)?;
        crate::globalconf::publish::write_file_durably(&self.cert_path(&id), &cert)?;
        Ok(())
    }

    /// The certificate (DER) of configuration-signing key `n` (no PIN needed).
    pub fn certificate(&self, n: u32) -> Result<Vec<u8>, Error> {
        self.read_cert(&Self::conf_id(n))
    }

    fn read_cert(&self, id: &str) -> Result<Vec<u8>, Error> {
        let p = self.cert_path(id);
        std::fs::read(&p).map_err(|e| Error::Config(format!("cannot read {}: {e}", p.display())))
    }

    /// Loads configuration-signing key `n` as a directory signer.
    pub fn load_signer(&self, n: u32) -> Result<CmsDirectorySigner<SharedKey>, Error> {
        let cert = self.certificate(n)?;
        let key = self.load_key(&Self::conf_id(n))?;
        let spki = crate::util::cert_spki(&cert)?;
        if spki != key.public_key_der() {
            return Err(Error::Config(format!(
                "certificate {} does not match its key",
                self.cert_path(&Self::conf_id(n)).display()
            )));
        }
        Ok(CmsDirectorySigner::new(SharedKey(key), cert))
    }

    /// The management listener's TLS identity, generated on first use (see
    /// [`crate::tlsconf::issue_management_cert`]).
    pub fn management_tls(&self, instance: &str) -> Result<ManagementTls, Error> {
        let id = MANAGEMENT_TLS_KEY;
        let ca_path = self.cert_path("management-tls-ca");
        if self.has_key(id) {
            let key = self.load_key(id)?;
            let cert = self.read_cert(id)?;
            let ca = std::fs::read(&ca_path)
                .map_err(|e| Error::Config(format!("cannot read {}: {e}", ca_path.display())))?;
            return Ok(ManagementTls { key, cert, ca });
        }
        let label = format!("Trustbus {instance} central server management TLS");
        let key = self.generate_key(id, &label)?;
        let (cert, ca) = crate::tlsconf::issue_management_cert(&key, instance)?;
        crate::globalconf::publish::write_file_durably(&ca_path, &ca)?;
        crate::globalconf::publish::write_file_durably(&self.cert_path(id), &cert)?;
        Ok(ManagementTls { key, cert, ca })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::globalconf::cms_signing::CmsDirectoryVerifier;
    use crate::globalconf::signing::{DirectorySignatureError, DirectorySigner, DirectoryVerifier};

    fn few() -> NonZeroU32 {
        NonZeroU32::new(1000).unwrap()
    }

    #[test]
    fn sign_verify_tamper_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let ks = KeyStore::open(dir.path(), Some("1234".into()), "X", few()).unwrap();
        ks.generate(1, "DEV").unwrap();
        ks.generate(2, "DEV").unwrap();
        let s1 = ks.load_signer(1).unwrap();
        let sig = s1.sign(b"directory").unwrap();
        let c1 = ks.certificate(1).unwrap();
        let c2 = ks.certificate(2).unwrap();
        CmsDirectoryVerifier
            .verify(b"directory", &sig, &[c2.clone(), c1.clone()])
            .unwrap();
        assert!(matches!(
            CmsDirectoryVerifier.verify(b"directorz", &sig, std::slice::from_ref(&c1)),
            Err(DirectorySignatureError::BadSignature(_))
        ));
        assert_eq!(
            CmsDirectoryVerifier.verify(b"directory", &sig, &[c2]),
            Err(DirectorySignatureError::UnknownSigner)
        );
        assert!(matches!(
            CmsDirectoryVerifier.verify(b"directory", b"\x30\x03junk", &[c1]),
            Err(DirectorySignatureError::Malformed(_))
        ));
    }

    #[test]
    fn keys_are_encrypted_and_need_the_pin() {
        let dir = tempfile::tempdir().unwrap();
        let ks = KeyStore::open(dir.path(), Some("right pin".into()), "X", few()).unwrap();
        ks.generate(1, "DEV").unwrap();
        // No PKCS#8 on disk: the key file is the token format, and it does not contain the
        // key's plaintext.
        let file = std::fs::read(dir.path().join("conf-signing-1.key.json")).unwrap();
        let text = String::from_utf8(file).unwrap();
        assert!(text.contains("\"aes-256-gcm\""), "{text}");
        let key = ks.load_key("conf-signing-1").unwrap();
        let p8 = crate::util::b64(key.pkcs8_der());
        assert!(!text.contains(&p8[..40]));
        assert!(!dir.path().join("conf-signing-1.p8").exists());

        // A fresh process with the right PIN signs; with a wrong or missing PIN it cannot.
        let again = KeyStore::open(dir.path(), Some("right pin".into()), "X", few()).unwrap();
        again.load_signer(1).unwrap().sign(b"d").unwrap();
        let wrong = KeyStore::open(dir.path(), Some("wrong".into()), "X", few()).unwrap();
        let e = wrong.load_signer(1).err().unwrap();
        assert!(
            matches!(&e, Error::Config(m) if m.contains("incorrect")),
            "{e}"
        );
        let none = KeyStore::open(dir.path(), None, "MY_PIN_VAR", few()).unwrap();
        let e = none.load_signer(1).err().unwrap();
        assert!(
            matches!(&e, Error::Config(m) if m.contains("MY_PIN_VAR")),
            "{e}"
        );
        // Certificates are readable without the PIN.
        assert_eq!(none.certificate(1).unwrap(), ks.certificate(1).unwrap());
        let empty = KeyStore::open(dir.path(), Some(String::new()), "X", few()).unwrap();
        assert!(empty.load_signer(1).is_err());
        // A wrong PIN cannot add a key to the token either.
        let e = wrong.management_tls("DEV").err().unwrap();
        assert!(
            matches!(&e, Error::Config(m) if m.contains("incorrect")),
            "{e}"
        );
        assert!(!wrong.has_key(MANAGEMENT_TLS_KEY));
        ks.management_tls("DEV").unwrap();
        assert!(ks.has_key(MANAGEMENT_TLS_KEY));
    }
}
