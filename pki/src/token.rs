//! The software token: private keys at rest, encrypted under a PIN.
//!
//! Each key is one JSON file `<dir>/<id>.key.json` (mode 0600 on Unix):
//!
//! ```json
//! {
//!   "format": "trustbus-soft-token-key/1",
//!   "id": "sign-1",
//!   "label": "signing key of DEV/GOV/1234",
//!   "key_type": "ec-p256",
//!   "public_key": "<base64 DER SubjectPublicKeyInfo>",
//!   "kdf": { "alg": "pbkdf2-hmac-sha256", "iterations": 310000, "salt": "<base64, 16 bytes>" },
//!   "pin_check": "<base64, 32 bytes>",
//!   "cipher": { "alg": "aes-256-gcm", "nonce": "<base64, 12 bytes>" },
//!   "ciphertext": "<base64 of AES-256-GCM(PKCS#8 DER) including the 16-byte tag>"
//! }
//! ```
//!
//! Key derivation: `master = PBKDF2-HMAC-SHA256(PIN (UTF-8), salt, iterations, 32 bytes)`,
//! `aes_key = HMAC-SHA256(master, "trustbus token v1 aes-256-gcm key")`,
//! `pin_check = HMAC-SHA256(master, "trustbus token v1 pin check")`.
//! The GCM associated data binds every other field:
//! `format \n id \n label \n key_type \n public_key \n iterations \n salt` (the base64 strings as
//! stored). A wrong PIN fails the `pin_check` ([`TokenError::PinIncorrect`]); with the right PIN,
//! a changed id, label, key type, public key, nonce or ciphertext fails GCM authentication
//! ([`TokenError::Tampered`]). Changing the salt, the iteration count or `pin_check` itself
//! changes what the PIN derives, which cannot be told apart from a wrong PIN and is reported as
//! one. After decryption the public key in the file must match the decrypted private key.
//!
//! Decrypted keys live in process memory only as long as their [`KeyPair`]; there is no
//! zeroisation on drop (ring keys cannot be zeroised from outside).

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::aead;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use crate::key::{KeyError, KeyPair};
use crate::signature::{KeyType, Signer};

/// The `format` value of token key files.
pub const FORMAT: &str = "trustbus-soft-token-key/1";
/// Default PBKDF2 iteration count (OWASP's 2023 figure for PBKDF2-HMAC-SHA256).
pub const DEFAULT_ITERATIONS: u32 = 310_000;
/// Largest iteration count accepted from a file, so a crafted file cannot stall the process.
pub const MAX_ITERATIONS: u32 = 10_000_000;

/// Why a token operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The PIN does not open this key.
    #[error("PIN incorrect")]
    PinIncorrect,
    /// The file was modified: it decrypts under the PIN's key check but fails authentication.
    #[error("key file {0} has been tampered with or is corrupt")]
    Tampered(String),
    /// The file is not a token key file we understand.
    #[error("key file {path} is malformed: {reason}")]
    Malformed {
        /// The file (or key id).
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// No key with this id.
    #[error("no key with id {0:?} in the token")]
    NotFound(String),
    /// A key with this id exists already.
    #[error("a key with id {0:?} exists already")]
    AlreadyExists(String),
    /// Key ids are 1–64 characters of `A–Z a–z 0–9 . _ -`, not starting with `.`.
    #[error("invalid key id {0:?}: use 1-64 characters of A-Z a-z 0-9 . _ - (not starting with .)")]
    InvalidId(String),
    /// The decrypted key could not be loaded.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Encryption failed (should not happen).
    #[error("encryption failed")]
    Crypto,
    /// Reading or writing the token directory failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TokenError + '_ {
    move |source| TokenError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// KDF parameters as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KdfParams {
    /// Always `pbkdf2-hmac-sha256`.
    pub alg: String,
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// Base64 salt.
    pub salt: String,
}

/// Cipher parameters as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CipherParams {
    /// Always `aes-256-gcm`.
    pub alg: String,
    /// Base64 nonce.
    pub nonce: String,
}

/// One encrypted key, exactly as stored in a token file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EncryptedKey {
    /// [`FORMAT`].
    pub format: String,
    /// The key id (also the file name).
    pub id: String,
    /// A free-text label.
    pub label: String,
    /// `ec-p256`, `ec-p384`, `ed25519` or `rsa`.
    pub key_type: String,
    /// Base64 DER `SubjectPublicKeyInfo`, readable without the PIN.
    pub public_key: String,
    /// Key derivation.
    pub kdf: KdfParams,
    /// Base64 PIN check value.
    pub pin_check: String,
    /// Encryption.
    pub cipher: CipherParams,
    /// Base64 ciphertext with tag.
    pub ciphertext: String,
}

fn key_type_name(t: KeyType) -> &'static str {
    match t {
        KeyType::EcP256 => "ec-p256",
        KeyType::EcP384 => "ec-p384",
        KeyType::Ed25519 => "ed25519",
        KeyType::Rsa => "rsa",
    }
}

const PIN_CHECK_LABEL: &[u8] = b"trustbus token v1 pin check";

struct Derived {
    aes: aead::LessSafeKey,
    master: hmac::Key,
}

fn derive(pin: &str, salt: &[u8], iterations: NonZeroU32) -> Result<Derived, TokenError> {
    let mut master = [0u8; 32];
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        iterations,
        salt,
        pin.as_bytes(),
        &mut master,
    );
    let mk = hmac::Key::new(hmac::HMAC_SHA256, &master);
    let aes_bytes = hmac::sign(&mk, b"trustbus token v1 aes-256-gcm key");
    let unbound = aead::UnboundKey::new(&aead::AES_256_GCM, aes_bytes.as_ref())
        .map_err(|_| TokenError::Crypto)?;
    Ok(Derived {
        aes: aead::LessSafeKey::new(unbound),
        master: mk,
    })
}

fn aad(f: &EncryptedKey) -> Vec<u8> {
    [
        f.format.as_str(),
        &f.id,
        &f.label,
        &f.key_type,
        &f.public_key,
        &f.kdf.iterations.to_string(),
        &f.kdf.salt,
    ]
    .join("\n")
    .into_bytes()
}

impl EncryptedKey {
    /// Encrypts `key` under `pin`.
    pub fn seal(
        key: &KeyPair,
        id: &str,
        label: &str,
        pin: &str,
        iterations: NonZeroU32,
    ) -> Result<Self, TokenError> {
        validate_id(id)?;
        let rng = SystemRandom::new();
        let mut salt = [0u8; 16];
        let mut nonce = [0u8; 12];
        rng.fill(&mut salt).map_err(|_| TokenError::Crypto)?;
        rng.fill(&mut nonce).map_err(|_| TokenError::Crypto)?;
        let mut f = EncryptedKey {
            format: FORMAT.to_owned(),
            id: id.to_owned(),
            label: label.to_owned(),
            key_type: key_type_name(key.key_type()).to_owned(),
            public_key: B64.encode(key.public_key_der()),
            kdf: KdfParams {
                alg: "pbkdf2-hmac-sha256".to_owned(),
                iterations: iterations.get(),
                salt: B64.encode(salt),
            },
            pin_check: String::new(),
            cipher: CipherParams {
                alg: "aes-256-gcm".to_owned(),
                nonce: B64.encode(nonce),
            },
            ciphertext: String::new(),
        };
        let d = derive(pin, &salt, iterations)?;
        let ad = aad(&f);
        let mut buf = key.pkcs8_der().to_vec();
        d.aes
            .seal_in_place_append_tag(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(&ad),
                &mut buf,
            )
            .map_err(|_| TokenError::Crypto)?;
        f.pin_check = B64.encode(hmac::sign(&d.master, PIN_CHECK_LABEL).as_ref());
        f.ciphertext = B64.encode(&buf);
        Ok(f)
    }

    /// Decrypts with `pin`.
    pub fn open(&self, pin: &str) -> Result<KeyPair, TokenError> {
        let bad = |reason: &str| TokenError::Malformed {
            path: self.id.clone(),
            reason: reason.to_owned(),
        };
        if self.format != FORMAT {
            return Err(bad("unknown format"));
        }
        if self.kdf.alg != "pbkdf2-hmac-sha256" || self.cipher.alg != "aes-256-gcm" {
            return Err(bad("unsupported algorithm"));
        }
        let iterations = NonZeroU32::new(self.kdf.iterations)
            .filter(|n| n.get() <= MAX_ITERATIONS)
            .ok_or_else(|| bad("iteration count out of range"))?;
        let salt = B64
            .decode(&self.kdf.salt)
            .map_err(|_| bad("salt is not base64"))?;
        let nonce: [u8; 12] = B64
            .decode(&self.cipher.nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or_else(|| bad("nonce is not 12 bytes of base64"))?;
        let check = B64
            .decode(&self.pin_check)
            .map_err(|_| bad("pin_check is not base64"))?;
        let mut buf = B64
            .decode(&self.ciphertext)
            .map_err(|_| bad("ciphertext is not base64"))?;
        let spki = B64
            .decode(&self.public_key)
            .map_err(|_| bad("public_key is not base64"))?;

        let d = derive(pin, &salt, iterations)?;
        let ad = aad(self);
        // The check value depends only on the PIN, salt and iteration count (constant-time compare).
        if hmac::verify(&d.master, PIN_CHECK_LABEL, &check).is_err() {
            return Err(TokenError::PinIncorrect);
        }
        let plain = d
            .aes
            .open_in_place(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(&ad),
                &mut buf,
            )
            .map_err(|_| TokenError::Tampered(self.id.clone()))?;
        let key = KeyPair::from_pkcs8_der(plain)?;
        if key.public_key_der() != spki.as_slice() || key_type_name(key.key_type()) != self.key_type
        {
            return Err(TokenError::Tampered(self.id.clone()));
        }
        Ok(key)
    }

    /// The public key (DER SPKI), readable without the PIN.
    pub fn public_key_der(&self) -> Option<Vec<u8>> {
        B64.decode(&self.public_key).ok()
    }
}

fn validate_id(id: &str) -> Result<(), TokenError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(TokenError::InvalidId(id.to_owned()))
    }
}

/// Writes `data` to `path` readable by the owner only, atomically (temp file + rename).
pub(crate) fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

/// A directory of PIN-encrypted keys.
#[derive(Debug, Clone)]
pub struct SoftToken {
    dir: PathBuf,
    iterations: NonZeroU32,
}

/// A key as listed by [`SoftToken::list`], without its private part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// The key id.
    pub id: String,
    /// The label.
    pub label: String,
    /// The key type name as stored.
    pub key_type: String,
    /// DER SPKI.
    pub public_key: Vec<u8>,
}

impl SoftToken {
    /// Opens (creating if needed) a token directory. New keys use [`DEFAULT_ITERATIONS`].
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, TokenError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        Ok(Self {
            dir,
            iterations: NonZeroU32::new(DEFAULT_ITERATIONS).unwrap_or(NonZeroU32::MIN),
        })
    }

    /// Uses `n` PBKDF2 iterations for keys stored from now on (tests use few).
    pub fn with_iterations(mut self, n: NonZeroU32) -> Self {
        self.iterations = n;
        self
    }

    fn path(&self, id: &str) -> Result<PathBuf, TokenError> {
        validate_id(id)?;
        Ok(self.dir.join(format!("{id}.key.json")))
    }

    /// Stores `key` under `id`, encrypted with `pin`. Fails if `id` exists.
    pub fn store(&self, id: &str, label: &str, key: &KeyPair, pin: &str) -> Result<(), TokenError> {
        let path = self.path(id)?;
        if path.exists() {
            return Err(TokenError::AlreadyExists(id.to_owned()));
        }
        let sealed = EncryptedKey::seal(key, id, label, pin, self.iterations)?;
        let json = serde_json::to_vec_pretty(&sealed).map_err(|e| TokenError::Malformed {
            path: id.to_owned(),
            reason: e.to_string(),
        })?;
        write_private(&path, &json).map_err(io_err(&path))
    }

    /// Reads the stored (encrypted) form of `id`.
    pub fn read(&self, id: &str) -> Result<EncryptedKey, TokenError> {
        let path = self.path(id)?;
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(TokenError::NotFound(id.to_owned()));
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        let f: EncryptedKey =
            serde_json::from_slice(&bytes).map_err(|e| TokenError::Malformed {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
        if f.id != id {
            return Err(TokenError::Tampered(id.to_owned()));
        }
        Ok(f)
    }

    /// Loads and decrypts `id` with `pin`.
    pub fn load(&self, id: &str, pin: &str) -> Result<KeyPair, TokenError> {
        self.read(id)?.open(pin)
    }

    /// Lists the keys (no PIN needed).
    pub fn list(&self) -> Result<Vec<KeyInfo>, TokenError> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(io_err(&self.dir))? {
            let entry = entry.map_err(io_err(&self.dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(id) = name.strip_suffix(".key.json") {
                let f = self.read(id)?;
                out.push(KeyInfo {
                    public_key: f.public_key_der().unwrap_or_default(),
                    id: f.id,
                    label: f.label,
                    key_type: f.key_type,
                });
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// Deletes `id`.
    pub fn delete(&self, id: &str) -> Result<(), TokenError> {
        let path = self.path(id)?;
        std::fs::remove_file(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                TokenError::NotFound(id.to_owned())
            } else {
                io_err(&path)(e)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::KeyKind;

    fn few() -> NonZeroU32 {
        NonZeroU32::new(1000).unwrap()
    }

    #[test]
    fn store_load_round_trip_and_pin_errors() {
        let dir = tempfile::tempdir().unwrap();
        let token = SoftToken::open(dir.path()).unwrap().with_iterations(few());
        let key = KeyPair::generate(KeyKind::EcdsaP256).unwrap();
        token.store("sign-1", "test key", &key, "1234").unwrap();
        let loaded = token.load("sign-1", "1234").unwrap();
        assert_eq!(loaded.public_key_der(), key.public_key_der());
        assert!(matches!(
            token.load("sign-1", "4321"),
            Err(TokenError::PinIncorrect)
        ));
        assert!(matches!(
            token.load("nope", "1234"),
            Err(TokenError::NotFound(_))
        ));
        assert!(matches!(
            token.store("sign-1", "again", &key, "1234"),
            Err(TokenError::AlreadyExists(_))
        ));
        assert!(matches!(
            token.store("../evil", "x", &key, "1"),
            Err(TokenError::InvalidId(_))
        ));
        let list = token.list().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].key_type, "ec-p256");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("sign-1.key.json"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        token.delete("sign-1").unwrap();
        assert!(token.list().unwrap().is_empty());
    }

    #[test]
    fn tampering_is_detected() {
        let key = KeyPair::generate(KeyKind::Ed25519).unwrap();
        let sealed = EncryptedKey::seal(&key, "k", "label", "pin", few()).unwrap();

        // Flip one ciphertext byte.
        let mut ct = B64.decode(&sealed.ciphertext).unwrap();
        ct[3] ^= 1;
        let f = EncryptedKey {
            ciphertext: B64.encode(&ct),
            ..sealed.clone()
        };
        assert!(matches!(f.open("pin"), Err(TokenError::Tampered(_))));

        // Swap in another public key or label: bound as associated data.
        let other = KeyPair::generate(KeyKind::Ed25519).unwrap();
        let f = EncryptedKey {
            public_key: B64.encode(other.public_key_der()),
            ..sealed.clone()
        };
        assert!(matches!(f.open("pin"), Err(TokenError::Tampered(_))));
        let f = EncryptedKey {
            label: "relabelled".into(),
            ..sealed.clone()
        };
        assert!(matches!(f.open("pin"), Err(TokenError::Tampered(_))));
        assert!(matches!(f.open("wrong"), Err(TokenError::PinIncorrect)));

        // Truncated nonce: malformed, not a PIN problem.
        let f = EncryptedKey {
            cipher: CipherParams {
                alg: "aes-256-gcm".into(),
                nonce: "AAAA".into(),
            },
            ..sealed.clone()
        };
        assert!(matches!(f.open("pin"), Err(TokenError::Malformed { .. })));

        assert_eq!(
            sealed.open("pin").unwrap().public_key_der(),
            key.public_key_der()
        );
    }
}
