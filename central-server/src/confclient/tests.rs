//! Configuration client tests over an in-memory source, with real signatures.

use std::collections::HashMap;
use std::sync::Mutex;

use time::OffsetDateTime;
use trustbus_sdk::fault::ErrorKind;

use super::*;
use crate::globalconf::cms_signing::{CmsDirectorySigner, CmsDirectoryVerifier};
use crate::globalconf::{Generated, build, shared_params, to_canonical_json};
use crate::keys::{SharedKey, self_signed_cert};
use crate::registry::RegistryState;
use trustbus_pki::key::{KeyKind, KeyPair};

#[derive(Default)]
struct MemFetcher {
    files: Mutex<HashMap<String, Vec<u8>>>,
}

impl Fetcher for MemFetcher {
    async fn get(&self, url: &str, _etag: Option<&str>) -> Result<FetchResponse, String> {
        self.files
            .lock()
            .unwrap()
            .get(url)
            .map(|b| FetchResponse::Ok {
                body: b.clone(),
                etag: None,
            })
            .ok_or_else(|| "HTTP 404".to_string())
    }
}

const BASE: &str = "mem://cs/globalconf";

fn key() -> (CmsDirectorySigner<SharedKey>, Vec<u8>) {
    let key = KeyPair::generate(KeyKind::EcdsaP256).unwrap();
    let cert = self_signed_cert(&key, "test signing").unwrap();
    (
        CmsDirectorySigner::new(SharedKey(Arc::new(key)), cert.clone()),
        cert,
    )
}

fn generate(
    instance: &str,
    version: u64,
    at: OffsetDateTime,
    validity: u64,
    signer: &CmsDirectorySigner<SharedKey>,
    announced: &[Vec<u8>],
) -> Generated {
    let shared = shared_params(&RegistryState::default(), instance, announced);
    let files = vec![(
        SHARED_PARAMS.to_owned(),
        to_canonical_json(&shared).unwrap(),
    )];
    build(instance, version, at, validity, files, signer).unwrap()
}

fn serve(f: &MemFetcher, g: &Generated) {
    let mut m = f.files.lock().unwrap();
    m.clear();
    m.insert(format!("{BASE}/directory"), g.directory_bytes.clone());
    m.insert(format!("{BASE}/directory.p7s"), g.signature.clone());
    for (n, b) in &g.files {
        m.insert(format!("{BASE}/v{}/{n}", g.directory.version), b.clone());
    }
}

fn client(dir: &std::path::Path, anchor_cert: &[u8]) -> ConfClient<MemFetcher> {
    let anchor = Anchor::new("DEV", vec![BASE.into()], &[anchor_cert.to_vec()]);
    ConfClient::new(
        anchor,
        dir,
        MemFetcher::default(),
        Box::new(CmsDirectoryVerifier),
    )
    .unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Serves `first`'s directory on the first request for it and `then`'s afterwards, and `then`'s
/// signature and files throughout: a version published between the client's two downloads.
struct PublishedInBetween {
    first: Generated,
    then: Generated,
    directory_requests: Mutex<u32>,
}

impl Fetcher for PublishedInBetween {
    async fn get(&self, url: &str, _etag: Option<&str>) -> Result<FetchResponse, String> {
        let body = if url == format!("{BASE}/directory") {
            let mut n = self.directory_requests.lock().unwrap();
            *n += 1;
            if *n == 1 {
                self.first.directory_bytes.clone()
            } else {
                self.then.directory_bytes.clone()
            }
        } else if url == format!("{BASE}/directory.p7s") {
            self.then.signature.clone()
        } else {
            let v = self.then.directory.version;
            self.then
                .files
                .iter()
                .find(|(n, _)| url == format!("{BASE}/v{v}/{n}"))
                .map(|(_, b)| b.clone())
                .ok_or_else(|| "HTTP 404".to_string())?
        };
        Ok(FetchResponse::Ok { body, etag: None })
    }
}

#[test]
fn a_version_published_between_directory_and_signature_is_fetched_again() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let (signer, cert) = key();
    let now = util::now();
    let anchor = Anchor::new("DEV", vec![BASE.into()], std::slice::from_ref(&cert));
    let c = ConfClient::new(
        anchor,
        dir.path(),
        PublishedInBetween {
            first: generate("DEV", 6, now, 600, &signer, std::slice::from_ref(&cert)),
            then: generate("DEV", 7, now, 600, &signer, std::slice::from_ref(&cert)),
            directory_requests: Mutex::new(0),
        },
        Box::new(CmsDirectoryVerifier),
    )
    .unwrap();
    assert_eq!(rt.block_on(c.poll()).unwrap(), PollOutcome::Updated(7));
    assert_eq!(*c.fetcher.directory_requests.lock().unwrap(), 2);
}

#[test]
fn accepts_then_rejects_each_kind_of_bad_configuration() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let (signer, cert) = key();
    let c = client(dir.path(), &cert);
    // Nothing yet: fail closed.
    assert_eq!(
        c.current().unwrap_err().code.kind,
        ErrorKind::OutdatedGlobalConf
    );

    let now = util::now();
    let good = generate("DEV", 5, now, 600, &signer, std::slice::from_ref(&cert));
    serve(&c.fetcher, &good);
    assert_eq!(rt.block_on(c.poll()).unwrap(), PollOutcome::Updated(5));
    assert_eq!(rt.block_on(c.poll()).unwrap(), PollOutcome::Unchanged(5));

    // Tampered file: same signed directory, one byte changed in the file.
    let mut bad = generate("DEV", 6, now, 600, &signer, std::slice::from_ref(&cert));
    bad.files[0].1[10] ^= 1;
    serve(&c.fetcher, &bad);
    assert_eq!(
        rt.block_on(c.poll()).unwrap_err(),
        ConfClientError::TamperedFile {
            name: SHARED_PARAMS.into()
        }
    );

    // Tampered directory: the signature no longer covers it.
    let mut bad = generate("DEV", 6, now, 600, &signer, std::slice::from_ref(&cert));
    let pos = bad.directory_bytes.iter().position(|b| *b == b'6').unwrap();
    bad.directory_bytes[pos] = b'9';
    serve(&c.fetcher, &bad);
    assert!(matches!(
        rt.block_on(c.poll()).unwrap_err(),
        ConfClientError::TamperedDirectory(_)
    ));

    // Signed by a key neither in the anchor nor announced.
    let (other, other_cert) = key();
    serve(
        &c.fetcher,
        &generate("DEV", 6, now, 600, &other, &[other_cert]),
    );
    assert_eq!(
        rt.block_on(c.poll()).unwrap_err(),
        ConfClientError::UnknownSigner
    );

    // Expired on arrival.
    let old = now - time::Duration::seconds(1000);
    serve(
        &c.fetcher,
        &generate("DEV", 6, old, 10, &signer, std::slice::from_ref(&cert)),
    );
    assert!(matches!(
        rt.block_on(c.poll()).unwrap_err(),
        ConfClientError::Expired { .. }
    ));

    // Rollback.
    serve(
        &c.fetcher,
        &generate("DEV", 4, now, 600, &signer, std::slice::from_ref(&cert)),
    );
    assert_eq!(
        rt.block_on(c.poll()).unwrap_err(),
        ConfClientError::VersionRollback {
            accepted: 5,
            offered: 4
        }
    );

    // Another instance.
    serve(
        &c.fetcher,
        &generate("EE", 7, now, 600, &signer, std::slice::from_ref(&cert)),
    );
    assert!(matches!(
        rt.block_on(c.poll()).unwrap_err(),
        ConfClientError::InstanceMismatch { .. }
    ));

    // None of the failures replaced the good copy.
    assert_eq!(c.current().unwrap().directory.version, 5);
    // Once it expires, fail closed with OutdatedGlobalConf.
    let fault = c
        .current_at(now + time::Duration::seconds(601))
        .unwrap_err();
    assert_eq!(
        fault.code.to_string(),
        "Server.ClientProxy.OutdatedGlobalConf"
    );

    // A restarted client loads the last good copy from disk.
    drop(c);
    let c2 = client(dir.path(), &cert);
    assert_eq!(c2.current().unwrap().directory.version, 5);
}

#[test]
fn follows_key_rotation_without_a_new_anchor() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let (old, old_cert) = key();
    let (new, new_cert) = key();
    let c = client(dir.path(), &old_cert);
    let now = util::now();
    // Version 1 announces the next key; version 2 is signed with it.
    serve(
        &c.fetcher,
        &generate(
            "DEV",
            1,
            now,
            600,
            &old,
            &[old_cert.clone(), new_cert.clone()],
        ),
    );
    assert_eq!(rt.block_on(c.poll()).unwrap(), PollOutcome::Updated(1));
    serve(
        &c.fetcher,
        &generate("DEV", 2, now, 600, &new, std::slice::from_ref(&new_cert)),
    );
    assert_eq!(rt.block_on(c.poll()).unwrap(), PollOutcome::Updated(2));
    // And after a restart the stored copy (signed by the new key) still loads.
    drop(c);
    let c2 = client(dir.path(), &old_cert);
    assert_eq!(c2.current().unwrap().directory.version, 2);
    // A fresh client with only the old anchor cannot take version 2 directly.
    let fresh_dir = tempfile::tempdir().unwrap();
    let fresh = client(fresh_dir.path(), &old_cert);
    serve(
        &fresh.fetcher,
        &generate("DEV", 2, now, 600, &new, std::slice::from_ref(&new_cert)),
    );
    assert_eq!(
        rt.block_on(fresh.poll()).unwrap_err(),
        ConfClientError::UnknownSigner
    );
}
