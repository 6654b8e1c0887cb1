//! ASiC-E evidence containers: round trip, openssl check after unzip, and the reader's refusals.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly by design

mod fixtures;

use fixtures::{Ca, Scratch, openssl};
use time::OffsetDateTime;
use trustbus_pki::DigestAlgorithm;
use trustbus_pki::asic::{
    self, AsicBuilder, AsicContainer, AsicError, AsicLimits, MANIFEST_PATH, MIMETYPE,
    SIGNATURE_PATH,
};
use trustbus_pki::cms::{CmsError, CmsSigner};
use trustbus_pki::merkle::{InclusionProof, MerkleTree};

fn builder() -> AsicBuilder {
    let mut b = AsicBuilder::new(DigestAlgorithm::Sha256);
    b.add_file(
        "message.xml",
        "text/xml",
        b"<Envelope>hello</Envelope>".to_vec(),
    )
    .unwrap();
    b.add_file(
        "attachments/a 1.bin",
        "application/octet-stream",
        vec![7; 3000],
    )
    .unwrap();
    b
}

fn signed_container(ca: &Ca) -> (Vec<u8>, fixtures::Identity) {
    let member = ca.issue_signer("member");
    let mut b = builder();
    // evidence add-ons: a Merkle proof for this record
    let records: Vec<Vec<u8>> = (0..5u8)
        .map(|i| DigestAlgorithm::Sha256.digest(&[i]))
        .collect();
    let tree = MerkleTree::new(DigestAlgorithm::Sha256, &records).unwrap();
    b.add_meta_inf(
        "merkle-proof.json",
        tree.proof(2).unwrap().to_json(tree.root()),
    )
    .unwrap();
    let signer = member.signer();
    let cms = CmsSigner::new(signer.as_ref(), &member.cert_der)
        .unwrap()
        .with_chain(std::slice::from_ref(&ca.id.cert_der))
        .unwrap();
    (
        b.sign(&cms, OffsetDateTime::now_utc(), None).unwrap(),
        member,
    )
}

#[test]
fn round_trip_and_openssl_after_unzip() {
    let ca = Ca::new("ASiC CA");
    let (zip, member) = signed_container(&ca);
    let c = AsicContainer::read(&zip, &AsicLimits::default()).unwrap();
    assert_eq!(c.data_files.len(), 2);
    assert_eq!(
        c.data_file("attachments/a 1.bin").unwrap().data,
        vec![7; 3000]
    );
    assert_eq!(c.data_file("message.xml").unwrap().mime_type, "text/xml");
    let v = c.verify_signature(OffsetDateTime::now_utc()).unwrap();
    v.expect_signer(&member.cert_der).unwrap();
    let (proof, root) =
        InclusionProof::from_json(c.meta_inf("merkle-proof.json").unwrap()).unwrap();
    proof
        .verify(&DigestAlgorithm::Sha256.digest(&[2]), &root)
        .unwrap();

    // standard tools: unzip lists mimetype first and extracts; openssl checks the signature
    let s = Scratch::new();
    s.write("c.asice", &zip);
    s.write("ca.pem", &ca.id.cert_pem);
    let out = std::process::Command::new("unzip")
        .args(["-Z1", "c.asice"])
        .current_dir(s.dir.path())
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(listing.lines().next(), Some("mimetype"), "{listing}");
    let out = std::process::Command::new("unzip")
        .args(["-q", "c.asice", "-d", "x"])
        .current_dir(s.dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(s.read("x/mimetype"), MIMETYPE.as_bytes());
    let (ok, text) = openssl(
        s.dir.path(),
        &[
            "cms",
            "-verify",
            "-binary",
            "-inform",
            "DER",
            "-in",
            &format!("x/{SIGNATURE_PATH}"),
            "-content",
            &format!("x/{MANIFEST_PATH}"),
            "-CAfile",
            "ca.pem",
            "-purpose",
            "any",
            "-out",
            "/dev/null",
        ],
    );
    assert!(ok && text.contains("Verification successful"), "{text}");
    // and the data file digests in the manifest match what unzip extracted
    let manifest = String::from_utf8(s.read(&format!("x/{MANIFEST_PATH}"))).unwrap();
    let (ok, dgst) = openssl(
        s.dir.path(),
        &[
            "dgst",
            "-sha256",
            "-binary",
            "-out",
            "d.bin",
            "x/message.xml",
        ],
    );
    assert!(ok, "{dgst}");
    let b64 = base64_std(&s.read("d.bin"));
    assert!(manifest.contains(&b64), "{manifest}");

    // docs/trust-services.md §5, as written, in a fresh directory
    let s = Scratch::new();
    s.write("evidence.asice", &zip);
    s.write("ca.pem", &ca.id.cert_pem);
    let (ok, out) = fixtures::run_doc_block(s.dir.path(), "asic", &[]);
    assert!(ok, "{out}");
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("mimetype"), "{out}");
    assert_eq!(lines.next(), Some(b64.as_str()), "{out}");
    assert!(out.contains("Verification successful"), "{out}");
}

fn base64_std(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn read(zip: &[u8]) -> Result<AsicContainer, AsicError> {
    AsicContainer::read(zip, &AsicLimits::default())
}

/// The parts of a good container, to rebuild with changes.
fn parts(ca: &Ca) -> Vec<(String, Vec<u8>)> {
    let (zip, _) = signed_container(ca);
    let c = read(&zip).unwrap();
    let mut v = vec![("mimetype".to_owned(), MIMETYPE.as_bytes().to_vec())];
    v.extend(
        c.data_files
            .iter()
            .map(|f| (f.name.clone(), f.data.clone())),
    );
    v.push((MANIFEST_PATH.to_owned(), c.manifest.clone()));
    v.push((SIGNATURE_PATH.to_owned(), c.signature.clone()));
    v
}

fn raw(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    asic::write_unchecked_zip(entries).unwrap()
}

#[test]
fn reader_refusals() {
    let ca = Ca::new("ASiC CA");
    let good = parts(&ca);
    read(&raw(&good)).unwrap();

    for evil in [
        "../evil.sh",
        "/etc/passwd",
        "a\\..\\b",
        "x/../../y",
        "C:evil",
    ] {
        let mut p = good.clone();
        p.push((evil.to_owned(), b"x".to_vec()));
        assert_eq!(
            read(&raw(&p)),
            Err(AsicError::UnsafeName(evil.to_owned())),
            "{evil}"
        );
    }
    // missing mimetype
    let p: Vec<_> = good[1..].to_vec();
    assert_eq!(read(&raw(&p)), Err(AsicError::MissingMimetype));
    // mimetype not first
    let mut p = good.clone();
    p.swap(0, 1);
    assert_eq!(read(&raw(&p)), Err(AsicError::MisplacedMimetype));
    // wrong mimetype
    let mut p = good.clone();
    p[0].1 = b"application/zip".to_vec();
    assert_eq!(
        read(&raw(&p)),
        Err(AsicError::WrongMimetype("application/zip".into()))
    );
    // a data file the manifest does not cover
    let mut p = good.clone();
    p.push(("smuggled.txt".to_owned(), b"not signed".to_vec()));
    assert_eq!(
        read(&raw(&p)),
        Err(AsicError::UncoveredFile("smuggled.txt".into()))
    );
    // duplicate entries (exact and case-insensitive)
    let mut p = good.clone();
    p.push(("message.xml".to_owned(), b"second copy".to_vec()));
    assert_eq!(
        read(&raw(&p)),
        Err(AsicError::DuplicateEntry("message.xml".into()))
    );
    let mut p = good.clone();
    p.push(("MESSAGE.xml".to_owned(), b"second copy".to_vec()));
    assert_eq!(
        read(&raw(&p)),
        Err(AsicError::DuplicateEntry("MESSAGE.xml".into()))
    );
    // a data file changed after signing: manifest digest mismatch
    let mut p = good.clone();
    p[1].1 = b"<Envelope>changed</Envelope>".to_vec();
    assert_eq!(
        read(&raw(&p)),
        Err(AsicError::DigestMismatch("message.xml".into()))
    );
    // a data file removed
    let p: Vec<_> = good
        .iter()
        .filter(|(n, _)| n != "message.xml")
        .cloned()
        .collect();
    assert_eq!(
        read(&raw(&p)),
        Err(AsicError::MissingDataFile("message.xml".into()))
    );
    // manifest rewritten to match changed data: the signature no longer covers it
    let mut b = AsicBuilder::new(DigestAlgorithm::Sha256);
    b.add_file(
        "message.xml",
        "text/xml",
        b"<Envelope>forged</Envelope>".to_vec(),
    )
    .unwrap();
    b.add_file(
        "attachments/a 1.bin",
        "application/octet-stream",
        vec![7; 3000],
    )
    .unwrap();
    let forged = b.build_with_signature(&good[4].1).unwrap();
    let c = read(&forged).unwrap();
    assert_eq!(
        c.verify_signature(OffsetDateTime::now_utc()),
        Err(AsicError::Signature(CmsError::DigestMismatch))
    );
    // missing manifest / signature
    let p: Vec<_> = good
        .iter()
        .filter(|(n, _)| n != MANIFEST_PATH)
        .cloned()
        .collect();
    assert_eq!(read(&raw(&p)), Err(AsicError::MissingManifest));
    let p: Vec<_> = good
        .iter()
        .filter(|(n, _)| n != SIGNATURE_PATH)
        .cloned()
        .collect();
    assert_eq!(
        read(&raw(&p)),
        Err(AsicError::MissingSignature(SIGNATURE_PATH.into()))
    );
}

#[test]
fn compressed_mimetype_and_limits() {
    let ca = Ca::new("ASiC CA");
    let good = raw(&parts(&ca));
    // mark the first entry as DEFLATE in both headers
    let mut z = good.clone();
    z[8] = 8;
    let cd = z
        .windows(4)
        .position(|w| w == [0x50, 0x4b, 0x01, 0x02])
        .unwrap();
    z[cd + 10] = 8;
    assert_eq!(read(&z), Err(AsicError::CompressedMimetype));

    // oversize entries and too many entries
    let tight = AsicLimits {
        max_entries: 1000,
        max_entry_size: 1000,
        max_total_size: 1 << 20,
    };
    assert!(matches!(
        AsicContainer::read(&good, &tight),
        Err(AsicError::TooLarge(_))
    ));
    let few = AsicLimits {
        max_entries: 3,
        ..AsicLimits::default()
    };
    assert!(matches!(
        AsicContainer::read(&good, &few),
        Err(AsicError::TooLarge(_))
    ));
    let total = AsicLimits {
        max_total_size: 2000,
        ..AsicLimits::default()
    };
    assert!(matches!(
        AsicContainer::read(&good, &total),
        Err(AsicError::TooLarge(_))
    ));
    // truncations never panic and never succeed
    for n in (0..good.len()).step_by(7) {
        assert!(read(&good[..n]).is_err());
    }
    // not a zip
    assert!(matches!(
        read(b"PK\x03\x04 nonsense"),
        Err(AsicError::Zip(_))
    ));
}

#[test]
fn builder_refuses_unsafe_names() {
    let mut b = AsicBuilder::new(DigestAlgorithm::Sha512);
    assert!(matches!(
        b.add_file("../x", "text/plain", vec![]),
        Err(AsicError::UnsafeName(_))
    ));
    assert!(matches!(
        b.add_file("META-INF/manifest.xml", "text/plain", vec![]),
        Err(AsicError::UnsafeName(_))
    ));
    b.add_file("a", "text/plain", vec![]).unwrap();
    assert!(matches!(
        b.add_file("A", "text/plain", vec![]),
        Err(AsicError::DuplicateEntry(_))
    ));
    assert!(matches!(
        b.add_meta_inf("ASiCManifest.xml", vec![]),
        Err(AsicError::DuplicateEntry(_))
    ));
}
